//! Portal pages (issue 16) as a browser uses them: the organisation's `/relations` pages (add a
//! vendor, share a document by its number, make a link shown once, withdraw it) and the vendor's
//! side (the link's page consumes nothing until its button is pressed; `/portal` lists what is
//! shared; the document page offers its files and the upload form). Attacks: a replayed link, a
//! link for another relation, a forged one, the form without its CSRF token, another
//! relation's document, members on portal pages and vendors on the organisation's.

mod common;

use common::{Client, Org, TestApp, org};
use reqwest::StatusCode;
use serde_json::json;
use store::testing::TestDb;

struct World {
    app: TestApp,
    acme: Org,
    _dir: tempfile::TempDir,
}

async fn world() -> (TestDb, World) {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    for u in &acme.users {
        common::with_password(&db, *u).await;
    }
    let mut admin = db.admin_conn().await;
    for sql in [
        "update document_attachments set blob_id = null",
        "delete from mdf_claim_proofs",
        "delete from blobs",
        "delete from blob_keys",
    ] {
        sqlx::query(sql).execute(&mut admin).await.expect(sql);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let files = files::Files {
        storage: files::Storage::local(&dir.path().join("blobs")).expect("storage"),
        keys: files::Keyring::load_or_create(&dir.path().join("keys")).expect("keys"),
        links: files::LinkKey::ephemeral(),
        max_upload: files::DEFAULT_MAX_UPLOAD,
    };
    let mut state = TestApp::setup(&db).roomy().dev_outbox().state().with_files(files);
    state.secure_cookies = false;
    let app = TestApp::serve(state).await;
    (db, World { app, acme, _dir: dir })
}

impl World {
    async fn browser(&self, email: &str) -> Client {
        self.app.anonymous().sign_in_browser("acme", email).await.0
    }

    /// A draft purchase order raised by staff; its id and number.
    async fn purchase_order(&self, title: &str) -> (String, String) {
        let staff = self.app.sign_in("acme", "user1@acme.example").await;
        let body = json!({"kind": "purchase_order", "department_id": self.acme.department.to_string(), "title": title,
            "document_date": "2000-03-01", "currency": "EUR", "lines": [{"description": "Four chairs", "amount_minor": 48000}]});
        let r = staff.post("/api/v1/documents", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{r}");
        (r.body["id"].as_str().expect("id").to_owned(), r.body["number"].as_str().expect("number").to_owned())
    }
}

fn location(a: &common::Answer) -> String {
    a.header("location").unwrap_or_else(|| panic!("no location: {a}")).to_owned()
}

/// The link the relation page shows once (`id="fresh-link" href="…"`).
fn fresh_link(html: &str) -> String {
    let start = html.find("id=\"fresh-link\" href=\"").expect("the page shows the new link") + 22;
    html[start..].split('"').next().expect("href").replace("&#x3d;", "=").replace("&#61;", "=")
}

/// Adds a vendor through the page; its id.
async fn vendor(admin: &Client, name: &str) -> String {
    let r = admin.without_redirects().post_form("/relations", &[("kind", "vendor"), ("company_name", name)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{r}");
    location(&r).trim_start_matches("/relations/").to_owned()
}

/// Makes a link for `email` through the page; the link's path.
async fn link_for(admin: &Client, relation: &str, email: &str) -> String {
    let r = admin.post_form(&format!("/relations/{relation}/invite"), &[("email", email), ("name", "Vera")]).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    fresh_link(&r.text)
}

/// Opens `link` as a new browser: the page, then its button. The answer to the button, and the
/// browser (its cookies: the CSRF one, and the session's when the link worked).
async fn open(w: &World, link: &str) -> (common::Answer, Client) {
    let anon = w.app.anonymous().without_redirects();
    let page = anon.get(link).await;
    assert_eq!(page.status, StatusCode::OK, "{page}");
    assert!(page.text.contains("Open the portal"), "{page}");
    let cookie = |a: &common::Answer| -> Vec<String> {
        a.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|c| c.split(';').next().unwrap_or_default().to_owned())
            .collect()
    };
    let set = cookie(&page);
    let csrf = set.iter().find_map(|c| c.strip_prefix("cs_csrf=")).expect("csrf cookie").to_owned();
    let token = link.split("token=").nth(1).expect("token").to_owned();
    let action = link.split('?').next().expect("path").to_owned();
    let browser = anon.browser(&set.join("; "), Some(&csrf));
    let r = browser.post_form(&action, &[("token", &token)]).await;
    // The session's cookies replace the anonymous ones of the same name (a fresh CSRF token).
    let mut jar: Vec<(String, String)> = Vec::new();
    for c in set.iter().chain(cookie(&r).iter()) {
        let (name, value) = c.split_once('=').unwrap_or((c, ""));
        jar.retain(|(n, _)| n != name);
        if !value.is_empty() {
            jar.push((name.to_owned(), value.to_owned()));
        }
    }
    let csrf = jar.iter().find(|(n, _)| n == "cs_csrf").map(|(_, v)| v.clone());
    let header = jar.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ");
    let signed_in = w.app.anonymous().browser(&header, csrf.as_deref());
    (r, signed_in)
}

#[tokio::test]
async fn staff_share_a_po_and_a_vendor_enters_once_sees_it_and_sends_an_invoice() {
    let (db, w) = world().await;
    let admin = w.browser("user0@acme.example").await;
    let (po, number) = w.purchase_order("Office chairs").await;
    let (other_po, _) = w.purchase_order("Desks").await;

    let list = admin.get("/relations").await;
    assert_eq!(list.status, StatusCode::OK);
    // The fixture's own vendor and client.
    assert!(list.text.contains("Fixture Supplies") && list.text.contains("Add a vendor or client"), "{list}");
    let supplies = vendor(&admin, "Chair Makers Ltd").await;
    let shared = admin
        .without_redirects()
        .post_form(&format!("/relations/{supplies}/documents"), &[("document", &number)])
        .await;
    assert_eq!(location(&shared), format!("/relations/{supplies}?done=shared"));
    let unknown = admin.post_form(&format!("/relations/{supplies}/documents"), &[("document", "PO-1999-9999")]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.text.contains("No document you can read has that number."), "{unknown}");
    let link = link_for(&admin, &supplies, "vera@chairmakers.example").await;
    assert!(link.starts_with(&format!("/portal/{supplies}/enter?token=csp_")), "{link}");
    // The token is shown once: the page after it does not carry it.
    let again = admin.get(&format!("/relations/{supplies}")).await;
    assert!(!again.text.contains("csp_"), "the relation page shows a token again");
    assert!(again.text.contains("vera@chairmakers.example") && again.text.contains(&number), "{again}");

    // Opening the page consumes nothing: a mail scanner fetching the link twice changes nothing.
    let scanner = w.app.anonymous().get(&link).await;
    assert_eq!(scanner.status, StatusCode::OK);
    let (entered, vera) = open(&w, &link).await;
    assert_eq!((entered.status, location(&entered)), (StatusCode::SEE_OTHER, "/portal".to_owned()), "{entered}");
    let home = vera.get("/portal").await;
    assert_eq!(home.status, StatusCode::OK, "{home}");
    assert!(home.text.contains(&number) && home.text.contains("Shared with you"), "{home}");
    assert!(!home.text.contains("Desks"), "another document shows in the portal");
    assert!(!home.text.contains("href=\"/members\""), "the portal navigation offers the organisation's pages");
    let doc = vera.get(&format!("/portal/documents/{po}")).await;
    assert_eq!(doc.status, StatusCode::OK, "{doc}");
    assert!(doc.text.contains("Four chairs") && doc.text.contains("data-upload"), "{doc}");

    // The invoice, through the form with the progress script's header: the new row comes back.
    let body = form(vera.csrf(), "invoice-117.pdf", b"%PDF-1.7\ninvoice 117\n");
    let r = vera.post_multipart(&format!("/portal/documents/{po}/files"), BOUNDARY, body, &[("x-upload", "row")]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    assert!(r.text.trim_start().starts_with("<tr") && r.text.contains("invoice-117.pdf"), "{r}");
    // Without the CSRF token first: refused, nothing stored.
    let body = form(None, "sneaky.pdf", b"%PDF-1.7\nsneaky\n");
    let r = vera.post_multipart(&format!("/portal/documents/{po}/files"), BOUNDARY, body, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    // Another document (not shared): the not-found page, for reading and for sending.
    assert_eq!(vera.get(&format!("/portal/documents/{other_po}")).await.status, StatusCode::NOT_FOUND);
    let body = form(vera.csrf(), "x.pdf", b"%PDF-1.7\nx\n");
    let r = vera.post_multipart(&format!("/portal/documents/{other_po}/files"), BOUNDARY, body, &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    // The organisation's pages are not the vendor's.
    assert_eq!(vera.get("/relations").await.status, StatusCode::FORBIDDEN);
    assert_eq!(vera.get(&format!("/documents/{po}")).await.status, StatusCode::NOT_FOUND);

    // Staff see the invoice on the document; the vendor downloads it through a fresh link.
    let staff = w.browser("user1@acme.example").await;
    let page = staff.get(&format!("/documents/{po}")).await;
    assert!(page.text.contains("invoice-117.pdf"), "staff do not see the vendor's invoice");
    let id = doc_file_id(&vera.get(&format!("/portal/documents/{po}")).await.text, "invoice-117.pdf");
    let dl = vera.without_redirects().get(&format!("/portal/attachments/{id}/download")).await;
    assert_eq!(dl.status, StatusCode::SEE_OTHER, "{dl}");
    assert!(location(&dl).starts_with("/api/v1/files/v1."), "{dl}");
    // Members never use portal pages.
    assert_eq!(staff.get("/portal").await.status, StatusCode::FORBIDDEN);
    assert_eq!(common::audit_count(&db, w.acme.id, "portal.file_added").await, 1);
}

#[tokio::test]
async fn a_replayed_forged_or_foreign_link_is_a_page_in_words_and_withdrawing_signs_out() {
    let (_db, w) = world().await;
    let admin = w.browser("user0@acme.example").await;
    let supplies = vendor(&admin, "Chair Makers Ltd").await;
    let other = vendor(&admin, "Table Makers Ltd").await;
    let link = link_for(&admin, &supplies, "vera@chairmakers.example").await;

    // Another relation's page with this token: not valid, and the link still works afterwards.
    let foreign = link.replacen(&supplies, &other, 1);
    let (r, _) = open(&w, &foreign).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r}");
    assert!(r.text.contains("This portal link is not valid."), "{r}");
    let forged = w.app.anonymous().get(&format!("/portal/{supplies}/enter?token=csp_nothing")).await;
    assert_eq!(forged.status, StatusCode::NOT_FOUND);
    assert!(forged.text.contains("This portal link is not valid."), "{forged}");
    assert!(!forged.text.contains("Open the portal</button>"), "a forged link offers the button");

    let (ok, vera) = open(&w, &link).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{ok}");
    assert_eq!(vera.get("/portal").await.status, StatusCode::OK);
    let (replayed, replayer) = open(&w, &link).await;
    assert_eq!(replayed.status, StatusCode::GONE, "{replayed}");
    assert!(replayed.text.contains("This link has already been used."), "{replayed}");
    assert_eq!(replayer.without_redirects().get("/portal").await.status, StatusCode::SEE_OTHER, "no session");

    // Withdrawing the used link from the relation page signs the vendor out.
    let page = admin.get(&format!("/relations/{supplies}")).await;
    let link_id = page
        .text
        .split(&format!("/relations/{supplies}/links/"))
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("a link row")
        .to_owned();
    let r = admin.without_redirects().post_form(&format!("/relations/{supplies}/links/{link_id}/revoke"), &[]).await;
    assert_eq!(location(&r), format!("/relations/{supplies}?done=revoked"));
    let after = vera.without_redirects().get("/portal").await;
    assert_ne!(after.status, StatusCode::OK, "the withdrawn link's session still works");
}

/// The relation page's "Also send the link to them by email" box: ticked, the link goes to the
/// outbox (the same link the page shows once) and the ledger says who mailed it; unticked, the page
/// says to send it and nothing is mailed.
#[tokio::test]
async fn the_relation_page_mails_a_link_only_when_its_box_is_ticked() {
    let (db, w) = world().await;
    let admin = w.browser("user0@acme.example").await;
    let supplies = vendor(&admin, "Chair Makers Ltd").await;
    let outbox = |to: &'static str| {
        let anon = w.app.anonymous();
        async move { anon.get(&format!("/api/v1/dev/outbox?to={to}")).await.body["items"].as_array().cloned() }
    };

    let r = admin
        .post_form(
            &format!("/relations/{supplies}/invite"),
            &[("email", "vera@chairmakers.example"), ("send_mail", "yes")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert!(r.text.contains("was made and emailed to them"), "{r}");
    let link = fresh_link(&r.text);
    let mails = outbox("vera@chairmakers.example").await.expect("items");
    assert_eq!(mails.len(), 1, "{mails:?}");
    let body = mails[0]["body"].as_str().expect("body");
    assert!(body.contains(&link), "the mail carries another link than the page showed:\n{body}\n{link}");
    assert_eq!(common::audit_count(&db, w.acme.id, "portal.link_mailed").await, 1);

    let r = admin.post_form(&format!("/relations/{supplies}/invite"), &[("email", "quiet@chairmakers.example")]).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert!(r.text.contains("Send it to them; it works once."), "{r}");
    assert_eq!(outbox("quiet@chairmakers.example").await.expect("items").len(), 0);
    assert_eq!(common::audit_count(&db, w.acme.id, "portal.link_mailed").await, 1);
}

const BOUNDARY: &str = "----countersign-portal-3c1d";

fn form(csrf: Option<&str>, filename: &str, bytes: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    if let Some(c) = csrf {
        b.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{c}\r\n").as_bytes(),
        );
    }
    b.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/pdf\r\n\r\n"
        )
        .as_bytes(),
    );
    b.extend_from_slice(bytes);
    b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    b
}

/// The id of the file row named `name` on a portal document page.
fn doc_file_id(html: &str, name: &str) -> String {
    html.split("id=\"file-")
        .skip(1)
        .find(|s| s.contains(&format!(">{name}<")))
        .and_then(|s| s.split('"').next())
        .expect("the file's row")
        .to_owned()
}

/// The answer form of a portal question (`multipart/form-data`: csrf_token first, the text, an
/// optional file).
fn answer_form(csrf: Option<&str>, text: &str, file: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut b = Vec::new();
    let mut part = |head: String, value: &[u8]| {
        b.extend_from_slice(format!("--{BOUNDARY}\r\n{head}\r\n\r\n").as_bytes());
        b.extend_from_slice(value);
        b.extend_from_slice(b"\r\n");
    };
    if let Some(c) = csrf {
        part("Content-Disposition: form-data; name=\"csrf_token\"".into(), c.as_bytes());
    }
    part("Content-Disposition: form-data; name=\"answer\"".into(), text.as_bytes());
    let (name, bytes) = file.unwrap_or(("", b""));
    part(
        format!(
            "Content-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/{}",
            if name.is_empty() { "octet-stream" } else { "pdf" }
        ),
        bytes,
    );
    b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    b
}

/// The id of the open question on a portal document page (its answer form's action).
fn question_id(html: &str) -> String {
    html.split("action=\"/portal/requests/")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .expect("an answer form")
        .to_owned()
}

#[tokio::test]
async fn staff_ask_a_vendor_on_the_document_page_and_the_vendor_answers_with_a_file_in_the_portal() {
    let (db, w) = world().await;
    let admin = w.browser("user0@acme.example").await;
    let staff = w.browser("user1@acme.example").await;
    let (po, number) = w.purchase_order("Office chairs").await;
    let (quiet, _) = w.purchase_order("Desks").await;
    // A document shared with nobody has no questions section.
    let page = staff.get(&format!("/documents/{quiet}")).await;
    assert!(!page.text.contains("Questions to vendors and clients"), "{page}");

    let supplies = vendor(&admin, "Chair Makers Ltd").await;
    admin.post_form(&format!("/relations/{supplies}/documents"), &[("document", &number)]).await;
    let link = link_for(&admin, &supplies, "vera@chairmakers.example").await;
    let (_, vera) = open(&w, &link).await;
    // An internal remark: the raiser's note when submitting.
    let api_staff = w.app.sign_in("acme", "user1@acme.example").await;
    let r = api_staff
        .post(
            &format!("/api/v1/documents/{po}/transitions"),
            json!({"transition": "submit", "note": "INTERNAL: haggle hard", "version": 1}),
        )
        .await;
    assert!(r.status.is_success(), "{r}");

    // Staff ask on the document page.
    let page = staff.get(&format!("/documents/{po}")).await;
    assert!(page.text.contains("Questions to vendors and clients") && page.text.contains("Chair Makers Ltd"), "{page}");
    let asked = staff
        .without_redirects()
        .post_form(
            &format!("/documents/{po}/requests"),
            &[
                ("relation", &supplies),
                ("question", "Please send the signed delivery note."),
                ("file_requested", "yes"),
            ],
        )
        .await;
    assert_eq!(
        (asked.status, location(&asked)),
        (StatusCode::SEE_OTHER, format!("/documents/{po}?done=asked#requests"))
    );
    let page = staff.get(&format!("/documents/{po}?done=asked")).await;
    assert!(page.text.contains("Your question was sent.") && page.text.contains("Waiting for an answer"), "{page}");
    // Bad questions are pages in words, not 5xx.
    for question in ["", &"x".repeat(2001)] {
        let r = staff
            .post_form(&format!("/documents/{po}/requests"), &[("relation", &supplies), ("question", question)])
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{question:?}: {r}");
        assert!(r.text.contains("<html"), "not a page: {r}");
    }
    let r = staff
        .post_form(&format!("/documents/{po}/requests"), &[("relation", &supplies), ("question", "a\u{0}b")])
        .await;
    assert!(r.status.is_client_error(), "{r}");

    // The vendor sees the count at home and the question on the document, never the remark.
    let home = vera.get("/portal").await;
    assert!(home.text.contains("1 question from") && home.text.contains("1 open question"), "{home}");
    let doc = vera.get(&format!("/portal/documents/{po}")).await;
    assert!(
        doc.text.contains("Please send the signed delivery note.") && doc.text.contains("they ask for a file"),
        "{doc}"
    );
    assert!(!doc.text.contains("INTERNAL"), "the portal shows the internal discussion");
    let id = question_id(&doc.text);

    // Without the CSRF token: refused, nothing answered.
    let body = answer_form(None, "Here it is", None);
    let r = vera.post_multipart(&format!("/portal/requests/{id}/answer"), BOUNDARY, body, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    // The answer with the file.
    let body = answer_form(vera.csrf(), "Signed copy attached.", Some(("delivery-note.pdf", b"%PDF-1.7\nsigned\n")));
    let r =
        vera.without_redirects().post_multipart(&format!("/portal/requests/{id}/answer"), BOUNDARY, body, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{r}");
    assert_eq!(location(&r), format!("/portal/documents/{po}?done=answered#questions"));
    let doc = vera.get(&format!("/portal/documents/{po}?done=answered")).await;
    assert!(doc.text.contains("Your answer was sent.") && doc.text.contains("Signed copy attached."), "{doc}");
    assert!(!doc.text.contains("action=\"/portal/requests/"), "an answered question still offers its form");
    // Answering again: closed, in words.
    let body = answer_form(vera.csrf(), "Again", None);
    let r = vera.post_multipart(&format!("/portal/requests/{id}/answer"), BOUNDARY, body, &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r}");

    // Staff see the answer and its file on the document.
    let page = staff.get(&format!("/documents/{po}")).await;
    assert!(page.text.contains("Signed copy attached.") && page.text.contains("delivery-note.pdf"), "{page}");
    assert!(page.text.contains("Answered"), "{page}");
    // A vendor cannot ask; members do not answer.
    let r = vera.post_form(&format!("/documents/{po}/requests"), &[("relation", &supplies), ("question", "Me?")]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    let body = answer_form(staff.csrf(), "Inside job", None);
    let r = staff.post_multipart(&format!("/portal/requests/{id}/answer"), BOUNDARY, body, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    assert_eq!(common::audit_count(&db, w.acme.id, "relation_request.answered").await, 1);
}
