//! Files on the document page, attacked as a browser would: the upload form (multipart, CSRF
//! token first), Preview and Download (a fresh link per person behind a `303`, never a naked
//! URL), Remove with its confirmation and Restore. Another organisation's attachment, one on a
//! document the member may not read, a form without its token, an executable renamed `.pdf`, an
//! oversized file, a document that moved on while the file streamed, and one person's preview
//! link used by another: each refused with a page and the right status, nothing stored.

mod common;

use std::path::{Path, PathBuf};

use common::{Client, Org, TestApp, audit_count, member, org};
use identity::Role;
use reqwest::StatusCode;
use serde_json::json;
use store::testing::TestDb;

struct World {
    db: TestDb,
    app: TestApp,
    acme: Org,
    blobs: PathBuf,
    _dir: tempfile::TempDir,
}

/// acme (admin, staff, HOD, finance, a vendor) and beta; uploads limited to `max_upload` bytes.
async fn world(max_upload: u64) -> World {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    let beta = org(&db, "beta").await;
    for u in &acme.users {
        common::with_password(&db, *u).await;
    }
    common::with_password(&db, beta.users[0]).await;
    member(&db, acme.id, "acme", "fin", Role::Finance, None, true).await;
    member(&db, acme.id, "acme", "vendor", Role::Vendor, None, true).await;
    // The fixture's file rows name a data key no master key here opens: start without them.
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
    let blobs = dir.path().join("blobs");
    let files = files::Files {
        storage: files::Storage::local(&blobs).expect("storage"),
        keys: files::Keyring::load_or_create(&dir.path().join("keys")).expect("keys"),
        links: files::LinkKey::ephemeral(),
        max_upload,
    };
    let app = TestApp::serve(TestApp::setup(&db).roomy().state().with_files(files)).await;
    World { db, app, acme, blobs, _dir: dir }
}

impl World {
    async fn browser(&self, org: &str, email: &str) -> Client {
        self.app.anonymous().sign_in_browser(org, email).await.0
    }

    /// A draft voucher raised by staff through the API, with one attachment by reference (as
    /// before files were stored). Its id.
    async fn draft(&self) -> String {
        let staff = self.app.sign_in("acme", "user1@acme.example").await;
        let body = json!({"kind": "voucher", "department_id": self.acme.department.to_string(), "title": "Chairs",
            "document_date": "2000-03-01", "currency": "EUR", "lines": [{"description": "chair", "amount_minor": 1000}],
            "attachments": [{"name": "Quote from the shop", "reference": "dms://quotes/2000/17"}]});
        let r = staff.post("/api/v1/documents", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{r}");
        r.body["id"].as_str().expect("id").to_owned()
    }

    async fn blob_rows(&self) -> i64 {
        let mut admin = self.db.admin_conn().await;
        sqlx::query_scalar("select count(*) from blobs").fetch_one(&mut admin).await.expect("count")
    }

    fn objects(&self) -> usize {
        files_on_disk(&self.blobs)
    }
}

fn files_on_disk(dir: &Path) -> usize {
    fn walk(d: &Path, n: &mut usize) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, n);
            } else {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(dir, &mut n);
    n
}

const BOUNDARY: &str = "----countersign-test-7f3a";

/// The upload form's body: `csrf_token` first (when given), then name, visibility and the file.
fn form(csrf: Option<&str>, name: &str, visibility: &str, filename: &str, bytes: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    let mut text = |field: &str, value: &str| {
        b.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    };
    if let Some(c) = csrf {
        text("csrf_token", c);
    }
    text("name", name);
    text("visibility", visibility);
    b.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    b.extend_from_slice(bytes);
    b.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    b
}

async fn upload(who: &Client, doc: &str, filename: &str, bytes: &[u8], headers: &[(&str, &str)]) -> common::Answer {
    let body = form(who.csrf(), "", "internal", filename, bytes);
    who.post_multipart(&format!("/documents/{doc}/attachments"), BOUNDARY, body, headers).await
}

/// A real 1×1 PNG.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\0\x05\0\x01\xff\x89\x99=\x1d\0\0\0\0IEND\xaeB`\x82";

fn pdf(n: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n".to_vec();
    while v.len() < n {
        v.extend_from_slice(b"a line of a statement\n");
    }
    v.truncate(n);
    v
}

/// The attachment ids in a page (`id="attachment-<uuid>"`), in order.
fn attachment_ids(html: &str) -> Vec<String> {
    html.split("id=\"attachment-").skip(1).filter_map(|s| s.split('"').next()).map(str::to_owned).collect()
}

/// Uploads `bytes` as `filename` through the page form; the new attachment's id.
async fn attached(who: &Client, doc: &str, filename: &str, bytes: &[u8]) -> String {
    let r = upload(who, doc, filename, bytes, &[("x-upload", "row")]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    assert!(r.text.trim_start().starts_with("<tr"), "the script gets the new row: {}", r.text);
    attachment_ids(&r.text).pop().expect("the row names its attachment")
}

fn location(a: &common::Answer) -> String {
    a.header("location").unwrap_or_else(|| panic!("no location: {a}")).to_owned()
}

fn is_page(a: &common::Answer) -> bool {
    a.header("content-type").is_some_and(|c| c.starts_with("text/html"))
}

#[tokio::test]
async fn a_file_attached_on_the_page_is_previewed_downloaded_removed_and_restored_through_fresh_links() {
    let w = world(files::DEFAULT_MAX_UPLOAD).await;
    let doc = w.draft().await;
    let staff = w.browser("acme", "user1@acme.example").await;

    // Without script: the form posts and the document page comes back with the file listed.
    let r = upload(&staff.without_redirects(), &doc, "receipt.png", PNG, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{r}");
    assert_eq!(location(&r), format!("/documents/{doc}?done=attached#attachments"));
    let page = staff.get(&format!("/documents/{doc}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("receipt.png") && page.text.contains("PNG image"), "{}", page.text);
    // The by-reference attachment: read-only, marked as having no stored file.
    assert!(page.text.contains("Quote from the shop") && page.text.contains("No stored file"), "{}", page.text);
    assert!(page.text.contains("enctype=\"multipart/form-data\"") && page.text.contains("<progress"));
    let ids = attachment_ids(&page.text);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let (reference, png) = (ids[0].clone(), ids[1].clone());
    assert!(!page.text.contains(&format!("/attachments/{reference}/download")), "a reference has no download");
    assert!(!page.text.contains("/api/v1/files/"), "no naked file URL in the page");

    // The image's preview page shows it from a link minted for this person, inline.
    let preview = staff.get(&format!("/attachments/{png}/preview")).await;
    assert_eq!(preview.status, StatusCode::OK, "{preview}");
    let src = preview.text.split("src=\"/api/v1/files/").nth(1).and_then(|s| s.split('"').next()).expect("img src");
    let (status, headers, bytes) = staff.get_bytes(&format!("/api/v1/files/{src}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, PNG);
    assert_eq!(headers["content-type"], "image/png");
    assert!(headers["content-disposition"].to_str().expect("cd").starts_with("inline"));

    // A PDF (the XHR answer is its row): its preview is a 303 to an inline link; its download a
    // 303 to a link that saves it. Each request mints a new link.
    let statement = pdf(70_000);
    let pdf_id = attached(&staff, &doc, "statement.pdf", &statement).await;
    let nav = staff.without_redirects();
    let first = location(&nav.get(&format!("/attachments/{pdf_id}/preview")).await);
    assert!(first.starts_with("/api/v1/files/v1."), "{first}");
    let (status, headers, bytes) = staff.get_bytes(&first).await;
    assert_eq!((status, headers["content-type"].to_str().expect("ct")), (StatusCode::OK, "application/pdf"));
    assert!(headers["content-disposition"].to_str().expect("cd").starts_with("inline"));
    assert_eq!(bytes, statement);
    let save = location(&nav.get(&format!("/attachments/{pdf_id}/download")).await);
    assert_ne!(save, first);
    let (status, headers, bytes) = staff.get_bytes(&save).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-disposition"].to_str().expect("cd").starts_with("attachment"));
    assert_eq!(bytes, statement);
    // A reference has nothing to preview.
    let none = staff.get(&format!("/attachments/{reference}/preview")).await;
    assert_eq!(none.status, StatusCode::CONFLICT, "{none}");
    assert!(is_page(&none));

    // Remove asks first; the form without its token is refused; with it the file goes.
    let ask = staff.get(&format!("/attachments/{pdf_id}/remove")).await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.text.contains("Remove “statement.pdf”?"), "{}", ask.text);
    let forged = staff.post_form(&format!("/attachments/{pdf_id}/remove"), &[("csrf_token", "0")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{forged}");
    assert!(forged.text.contains("This form has expired"));
    let gone = nav.post_form(&format!("/attachments/{pdf_id}/remove"), &[]).await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER, "{gone}");
    let page = staff.get(&format!("/documents/{doc}")).await;
    assert!(page.text.contains("Removed") && page.text.contains(&format!("/attachments/{pdf_id}/restore")));
    let refused = staff.get(&format!("/attachments/{pdf_id}/download")).await;
    assert_eq!(refused.status, StatusCode::GONE, "{refused}");
    let (status, _, _) = staff.get_bytes(&save).await;
    assert_eq!(status, StatusCode::GONE, "a link minted before the removal is refused too");

    let back = nav.post_form(&format!("/attachments/{pdf_id}/restore"), &[]).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{back}");
    let (status, _, bytes) =
        staff.get_bytes(&location(&nav.get(&format!("/attachments/{pdf_id}/download")).await)).await;
    assert_eq!((status, bytes), (StatusCode::OK, statement));

    assert_eq!(audit_count(&w.db, w.acme.id, "file.uploaded").await, 2);
    assert_eq!(audit_count(&w.db, w.acme.id, "file.deleted").await, 1);
    assert_eq!(audit_count(&w.db, w.acme.id, "file.restored").await, 1);
}

#[tokio::test]
async fn another_organisations_attachment_and_one_on_an_unreadable_document_are_not_found() {
    let w = world(files::DEFAULT_MAX_UPLOAD).await;
    let doc = w.draft().await;
    let staff = w.browser("acme", "user1@acme.example").await;
    let id = attached(&staff, &doc, "statement.pdf", &pdf(2000)).await;

    let beta = w.browser("beta", "user0@beta.example").await;
    let vendor = w.browser("acme", "vendor@acme.example").await;
    for (who, c) in [("beta's admin", &beta), ("acme's vendor", &vendor)] {
        for path in [
            format!("/attachments/{id}/preview"),
            format!("/attachments/{id}/download"),
            format!("/attachments/{id}/remove"),
            format!("/documents/{doc}"),
        ] {
            let r = c.without_redirects().get(&path).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{who} {path}: {r}");
            assert!(is_page(&r) && r.text.contains("Page not found"), "{who} {path}");
        }
        let r = c.without_redirects().post_form(&format!("/attachments/{id}/remove"), &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{who}: {r}");
        let r = upload(c, &doc, "mine.pdf", &pdf(2000), &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{who} uploads: {r}");
    }
    // Still there for its owner, and nothing else was stored.
    assert_eq!(
        staff.without_redirects().get(&format!("/attachments/{id}/download")).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!((w.blob_rows().await, w.objects()), (1, 1));
}

#[tokio::test]
async fn an_upload_without_the_csrf_token_first_is_refused_and_nothing_is_stored() {
    let w = world(files::DEFAULT_MAX_UPLOAD).await;
    let doc = w.draft().await;
    let staff = w.browser("acme", "user1@acme.example").await;
    let path = format!("/documents/{doc}/attachments");
    let csrf = staff.csrf().expect("csrf").to_owned();

    let without = form(None, "", "internal", "statement.pdf", &pdf(5000));
    let wrong = form(Some(&"0".repeat(64)), "", "internal", "statement.pdf", &pdf(5000));
    // The right token, but after the file: the start of the body is all that is read for it.
    let mut late = form(None, "", "internal", "statement.pdf", &pdf(5000));
    let tail = format!("--{BOUNDARY}--\r\n");
    late.truncate(late.len() - tail.len());
    late.extend_from_slice(
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{csrf}\r\n{tail}")
            .as_bytes(),
    );
    for (what, body) in [("no token", without), ("a wrong token", wrong), ("the token last", late)] {
        let r = staff.post_multipart(&path, BOUNDARY, body, &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {r}");
        assert!(is_page(&r) && r.text.contains("This form has expired"), "{what}: {}", r.text);
    }
    assert_eq!((w.blob_rows().await, w.objects()), (0, 0));
    assert_eq!(audit_count(&w.db, w.acme.id, "file.uploaded").await, 0);
}

#[tokio::test]
async fn an_executable_renamed_pdf_is_a_415_page_and_nothing_is_stored() {
    let w = world(files::DEFAULT_MAX_UPLOAD).await;
    let doc = w.draft().await;
    let staff = w.browser("acme", "user1@acme.example").await;
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec();
    exe.extend_from_slice(b"%PDF-1.7 pretending");
    exe.resize(150_000, 0x90);
    for headers in [&[][..], &[("x-upload", "row")][..]] {
        let r = upload(&staff, &doc, "invoice.pdf", &exe, headers).await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{r}");
        assert!(is_page(&r) && r.text.contains("This kind of file is not accepted"), "{}", r.text);
        assert!(r.text.contains("Nothing was stored"));
    }
    assert_eq!((w.blob_rows().await, w.objects()), (0, 0));
    assert_eq!(audit_count(&w.db, w.acme.id, "file.uploaded").await, 0);
}

#[tokio::test]
async fn an_oversized_upload_is_a_413_page_and_nothing_is_stored() {
    let w = world(64 * 1024).await;
    let doc = w.draft().await;
    let staff = w.browser("acme", "user1@acme.example").await;
    let r = upload(&staff, &doc, "statement.pdf", &pdf(300 * 1024), &[]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r}");
    assert!(is_page(&r) && r.text.contains("The file is too large"), "{}", r.text);
    assert!(r.text.contains("65536 bytes"), "the page says the limit: {}", r.text);
    assert_eq!((w.blob_rows().await, w.objects()), (0, 0));
    // Just under the limit is fine.
    attached(&staff, &doc, "statement.pdf", &pdf(60 * 1024)).await;
    assert_eq!((w.blob_rows().await, w.objects()), (1, 1));
}

#[tokio::test]
async fn a_preview_link_minted_for_one_person_is_refused_to_another() {
    let w = world(files::DEFAULT_MAX_UPLOAD).await;
    let doc = w.draft().await;
    let staff = w.browser("acme", "user1@acme.example").await;
    let id = attached(&staff, &doc, "receipt.png", PNG).await;
    let preview = staff.get(&format!("/attachments/{id}/preview")).await;
    let src = preview.text.split("<img id=\"preview-image\" src=\"").nth(1).and_then(|s| s.split('"').next());
    let src = src.expect("img src").to_owned();
    assert!(src.starts_with("/api/v1/files/"), "{src}");
    assert_eq!(staff.get_bytes(&src).await.0, StatusCode::OK);

    // Finance may read the document (and so the file), but not through staff's link.
    let finance = w.browser("acme", "fin@acme.example").await;
    let r = finance.get(&src).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "link_invalid"), "{r}");
    let own = finance.get(&format!("/attachments/{id}/preview")).await;
    assert_eq!(own.status, StatusCode::OK, "{own}");
    assert!(!own.text.contains(&src), "finance gets a link of their own");
    // And finance may not remove what staff attached to staff's draft.
    let r = finance.get(&format!("/attachments/{id}/remove")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    assert_eq!(audit_count(&w.db, w.acme.id, "file.downloaded").await, 1);
}

#[tokio::test]
async fn an_upload_to_a_document_that_moved_on_is_a_409_page_and_nothing_is_stored() {
    let w = world(files::DEFAULT_MAX_UPLOAD).await;
    let doc = w.draft().await;
    let staff = w.browser("acme", "user1@acme.example").await;
    let page = staff.get(&format!("/documents/{doc}")).await;
    assert!(page.text.contains("Attach a file"));
    // Submitted in another tab: the form on the old page is stale.
    let api = w.app.sign_in("acme", "user1@acme.example").await;
    let r =
        api.post(&format!("/api/v1/documents/{doc}/transitions"), json!({"transition": "submit", "version": 1})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let r = upload(&staff, &doc, "late.pdf", &pdf(5000), &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r}");
    assert!(is_page(&r) && r.text.contains("This document can no longer change"), "{}", r.text);
    assert_eq!((w.blob_rows().await, w.objects()), (0, 0));
    let page = staff.get(&format!("/documents/{doc}")).await;
    assert!(!page.text.contains("Attach a file"), "no upload form on a submitted document");
}
