//! The market development funds page (`/programme/mdf`), driven as a browser would: the vendor
//! gives a budget, the partner requests funds, the channel manager approves, the partner claims
//! and attaches proof through the multipart form, finance approves and pays. Attacked: partner B
//! sees none of A's rows and gets a refusal page for A's claim; a partner posting the decision
//! form is refused; the filer sees no decision form; a form without its CSRF token is refused;
//! too much is a page that says why, nothing changed.

mod common;

use authz::Role;
use common::{Client, TestApp, audit_count, org, partner_person, with_password};
use identity::EmailAddress;
use identity::directory::{memberships, users};
use reqwest::StatusCode;
use store::testing::TestDb;
use uuid::Uuid;

struct World {
    db: TestDb,
    app: TestApp,
    t: store::TenantId,
    pa: Uuid,
    _dir: tempfile::TempDir,
}

async fn staff(db: &TestDb, t: store::TenantId, email: &str, role: Role) -> Uuid {
    let mut g = db.store.global_tx().await.expect("global tx");
    let u =
        users::create(&mut g, &common::who(), &EmailAddress::parse(email).expect("email"), email).await.expect("user");
    g.commit().await.expect("commit");
    let mut tx = db.store.tenant_tx(t).await.expect("tx");
    let new = memberships::NewMembership { user_id: u.id, role, department_id: None, valid_until: None };
    memberships::add(&mut tx, &common::who(), &new).await.expect("membership");
    tx.commit().await.expect("commit");
    with_password(db, u.id).await;
    u.id
}

async fn world() -> World {
    let db = TestDb::new().await;
    let o = org(&db, "vendor").await;
    let mut admin = db.admin_conn().await;
    for sql in [
        "update document_attachments set blob_id = null",
        "delete from mdf_claim_proofs",
        "delete from blobs",
        "delete from blob_keys",
    ] {
        sqlx::query(sql).execute(&mut admin).await.expect(sql);
    }
    let (pa, pb) = (o.partners[0], o.partners[1]);
    for (p, email) in [(pa, "alice@partner-a.example"), (pb, "bob@partner-b.example")] {
        let u = partner_person(&db, o.id, p, email, Role::PartnerAdmin).await;
        with_password(&db, u).await;
    }
    staff(&db, o.id, "fin@vendor.example", Role::Finance).await;
    staff(&db, o.id, "cm@vendor.example", Role::ChannelManager).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let files = files::Files {
        storage: files::Storage::local(&dir.path().join("blobs")).expect("storage"),
        keys: files::Keyring::load_or_create(&dir.path().join("keys")).expect("keys"),
        links: files::LinkKey::ephemeral(),
        max_upload: files::DEFAULT_MAX_UPLOAD,
    };
    let app = TestApp::serve(TestApp::setup(&db).roomy().state().with_files(files)).await;
    World { db, app, t: o.id, pa, _dir: dir }
}

impl World {
    async fn browser(&self, email: &str) -> Client {
        self.app.anonymous().sign_in_browser("vendor", email).await.0
    }
}

const BOUNDARY: &str = "----countersign-mdf-9c1e";

fn proof_form(csrf: Option<&str>, filename: &str, bytes: &[u8]) -> Vec<u8> {
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

fn pdf(n: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n".to_vec();
    v.resize(n, b'x');
    v
}

fn location(a: &common::Answer) -> String {
    a.header("location").unwrap_or_else(|| panic!("no location: {a}")).to_owned()
}

/// The value of the `<option value="…">` whose label contains `label`, in the select after
/// `marker` in `html`.
fn option_after(html: &str, marker: &str, label: &str) -> String {
    let rest = html.split(marker).nth(1).unwrap_or_else(|| panic!("{marker} not in page: {html}"));
    let select = rest.split("</select>").next().unwrap_or_default();
    select
        .split("<option value=\"")
        .skip(1)
        .find(|o| o.contains(label))
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no option {label} in {select}"))
        .to_owned()
}

/// The ids in `action="/programme/mdf/{kind}/{id}/…"` forms of a page.
fn form_ids(html: &str, kind: &str, verb: &str) -> Vec<String> {
    html.split(&format!("action=\"/programme/mdf/{kind}/"))
        .skip(1)
        .filter_map(|s| s.split_once(&format!("/{verb}\"")).map(|(id, _)| id.to_owned()))
        .filter(|id| !id.contains('"'))
        .collect()
}

#[tokio::test]
async fn the_mdf_journey_on_the_pages_with_each_party_seeing_and_doing_only_its_own() {
    let w = world().await;
    let cm = w.browser("cm@vendor.example").await;
    let alice = w.browser("alice@partner-a.example").await;
    let bob = w.browser("bob@partner-b.example").await;
    let finance = w.browser("fin@vendor.example").await;

    // The channel manager gives partner A a budget for 2026-Q4.
    let page = cm.get("/programme/mdf").await;
    assert_eq!(page.status, StatusCode::OK, "{page}");
    assert!(page.text.contains("Give a partner a budget") && page.text.contains("Market funds"), "{}", page.text);
    let r = cm
        .without_redirects()
        .post_form(
            "/programme/mdf/budgets",
            &[("partner_id", &w.pa.to_string()), ("period", "2026-Q4"), ("currency", "EUR"), ("amount", "1,000.00")],
        )
        .await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/programme/mdf?done=budget".to_owned()), "{r}");

    // Alice sees it (and no budget form); bob sees nothing of A's.
    let page = alice.get("/programme/mdf").await;
    assert!(page.text.contains("2026-Q4") && page.text.contains("Request funds"), "{}", page.text);
    assert!(!page.text.contains("Give a partner a budget"));
    let budget = option_after(&page.text, "id=\"request-budget\"", "2026-Q4");
    let theirs = bob.get("/programme/mdf").await;
    assert!(!theirs.text.contains("2026-Q4") && !theirs.text.contains(&budget), "{}", theirs.text);

    // Too much: the page again, saying why; nothing requested.
    let r = alice
        .post_form(
            "/programme/mdf/requests",
            &[("budget_id", &budget), ("activity", "Summit booth"), ("amount", "1,000.01")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r}");
    assert!(r.text.contains("the budget does not have that much left"), "{}", r.text);
    let r = alice
        .without_redirects()
        .post_form(
            "/programme/mdf/requests",
            &[("budget_id", &budget), ("activity", "Summit booth"), ("amount", "600")],
        )
        .await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/programme/mdf?done=requested".to_owned()), "{r}");
    let page = alice.get("/programme/mdf").await;
    assert!(page.text.contains("Summit booth") && page.text.contains("Waiting for the channel manager"));
    assert!(form_ids(&page.text, "requests", "decide").is_empty(), "the requester sees no decision form");

    // The channel manager sees the decision form; alice posting it is refused (a page).
    let page = cm.get("/programme/mdf").await;
    // Newest first: the request just made (the fixture's are decided already).
    let request = form_ids(&page.text, "requests", "decide").into_iter().next().expect("decision form");
    let r = alice.post_form(&format!("/programme/mdf/requests/{request}/decide"), &[("decision", "approve")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")), "{r}");
    let r = cm
        .with_csrf(None)
        .post_form(&format!("/programme/mdf/requests/{request}/decide"), &[("decision", "approve"), ("csrf_token", "")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no token: {r}");
    let r = cm
        .without_redirects()
        .post_form(&format!("/programme/mdf/requests/{request}/decide"), &[("decision", "approve"), ("reason", "")])
        .await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/programme/mdf?done=approved".to_owned()), "{r}");
    let r = cm
        .post_form(&format!("/programme/mdf/requests/{request}/decide"), &[("decision", "reject"), ("reason", "late")])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "someone acted first: {r}");
    assert!(r.text.contains("someone acted on it first"), "{}", r.text);

    // Alice claims and attaches proof through the multipart form.
    let page = alice.get("/programme/mdf").await;
    let req = option_after(&page.text, "id=\"claim-request\"", "Summit booth");
    assert_eq!(req, request);
    let r = alice
        .without_redirects()
        .post_form(
            "/programme/mdf/claims",
            &[("request_id", &req), ("amount", "550.00"), ("description", "Booth staffed two days")],
        )
        .await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/programme/mdf?done=claimed".to_owned()), "{r}");
    let page = alice.get("/programme/mdf").await;
    // Newest first: the claim just filed (the fixture's own claim waits too, further down).
    let claim = form_ids(&page.text, "claims", "proofs").into_iter().next().expect("proof form");
    assert!(page.text.contains("Booth staffed two days"));
    assert!(page.text.contains("enctype=\"multipart/form-data\""));
    // Bob: A's claim does not exist for him (page and upload).
    let r = bob
        .post_multipart(
            &format!("/programme/mdf/claims/{claim}/proofs"),
            BOUNDARY,
            proof_form(bob.csrf(), "x.pdf", &pdf(100)),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    let r = alice
        .without_redirects()
        .post_multipart(
            &format!("/programme/mdf/claims/{claim}/proofs"),
            BOUNDARY,
            proof_form(None, "x.pdf", &pdf(100)),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no token: {r}");
    let proof = pdf(3_000);
    let r = alice
        .without_redirects()
        .post_multipart(
            &format!("/programme/mdf/claims/{claim}/proofs"),
            BOUNDARY,
            proof_form(alice.csrf(), "booth.pdf", &proof),
            &[],
        )
        .await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/programme/mdf?done=proof".to_owned()), "{r}");

    // Finance sees the proof, downloads it, approves and pays; alice sees it paid.
    let page = finance.get("/programme/mdf").await;
    assert!(page.text.contains("booth.pdf"), "{}", page.text);
    assert!(form_ids(&page.text, "requests", "decide").is_empty(), "finance decides no requests");
    let href =
        page.text.split("href=\"/programme/mdf/claims/").nth(1).and_then(|s| s.split('"').next()).expect("proof link");
    let (s, _, bytes) = finance.get_bytes(&format!("/programme/mdf/claims/{href}")).await;
    assert_eq!((s, bytes == proof), (StatusCode::OK, true));
    let (s, _, _) = bob.get_bytes(&format!("/programme/mdf/claims/{href}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let r = cm.post_form(&format!("/programme/mdf/claims/{claim}/settle"), &[("step", "approve")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "channel managers settle no claims: {r}");
    let r = finance.post_form(&format!("/programme/mdf/claims/{claim}/settle"), &[("step", "pay")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r}");
    for (step, done) in [("approve", "claim-approved"), ("pay", "paid")] {
        let r = finance
            .without_redirects()
            .post_form(&format!("/programme/mdf/claims/{claim}/settle"), &[("step", step)])
            .await;
        assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, format!("/programme/mdf?done={done}")), "{r}");
    }
    let page = alice.get("/programme/mdf").await;
    let row = page.text.split("Booth staffed two days").nth(1).and_then(|r| r.split("</tr>").next()).expect("row");
    assert!(row.contains("<span class=\"chip done\">Paid</span>") && row.contains("booth.pdf"), "{row}");
    assert_eq!(audit_count(&w.db, w.t, "mdf_claim.paid").await, 1);
    assert_eq!(audit_count(&w.db, w.t, "mdf_claim.proof_added").await, 1);
}
