//! Vendor and client portals (issue 16), attacked over HTTP and in the database: portal links
//! replayed, expired, revoked, forged or used for another relation; a vendor asking for an
//! internal document, another vendor's document or another vendor's upload; another
//! organisation; sessions that must end with their link or their relation; the relation
//! boundary held by Postgres itself, whatever a query forgets to filter.

mod common;

use common::{Client, TestApp, audit_count, org};
use reqwest::StatusCode;
use serde_json::{Value, json};
use store::testing::TestDb;
use uuid::Uuid;

struct World {
    app: TestApp,
    acme: common::Org,
    admin: Client,
    staff: Client,
    beta_admin: Client,
    _dir: tempfile::TempDir,
}

async fn world(db: &TestDb) -> World {
    let acme = org(db, "acme").await;
    let beta = org(db, "beta").await;
    for u in &acme.users {
        common::with_password(db, *u).await;
    }
    common::with_password(db, beta.users[0]).await;
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
    let dir = tempfile::tempdir().expect("tempdir");
    let files = files::Files {
        storage: files::Storage::local(&dir.path().join("blobs")).expect("storage"),
        keys: files::Keyring::load_or_create(&dir.path().join("keys")).expect("keys"),
        links: files::LinkKey::ephemeral(),
        max_upload: files::DEFAULT_MAX_UPLOAD,
    };
    let state = TestApp::setup(db).roomy().state().with_files(files);
    let app = TestApp::serve(state).await;
    World {
        admin: app.sign_in("acme", "user0@acme.example").await,
        staff: app.sign_in("acme", "user1@acme.example").await,
        beta_admin: app.sign_in("beta", "user0@beta.example").await,
        app,
        acme,
        _dir: dir,
    }
}

/// A draft purchase order raised by the staff member; its id.
async fn purchase_order(w: &World, title: &str) -> String {
    let r = w
        .staff
        .post(
            "/api/v1/documents",
            json!({
                "kind": "purchase_order", "department_id": w.acme.department, "title": title,
                "document_date": "2026-03-10", "currency": "EUR",
                "lines": [{"description": "chairs", "amount_minor": 250_000}],
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    r.body["id"].as_str().expect("id").to_owned()
}

async fn relation(w: &World, kind: &str, name: &str) -> String {
    let r = w.admin.post("/api/v1/relations", json!({"kind": kind, "company_name": name})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    assert_eq!(r.body["status"], "active");
    r.body["id"].as_str().expect("id").to_owned()
}

/// Invites `email` to `relation`; the answer (person, link, token, url).
async fn invite(w: &World, relation: &str, email: &str) -> Value {
    let r = w.admin.post(&format!("/api/v1/relations/{relation}/invite"), json!({"email": email})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    assert!(r.body["url"].as_str().expect("url").starts_with(&format!("/portal/{relation}/enter?token=csp_")));
    r.body
}

async fn address(w: &World, relation: &str, document: &str) {
    let r = w.admin.post(&format!("/api/v1/relations/{relation}/documents"), json!({"document_id": document})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r}");
}

async fn enter(w: &World, token: &str, relation: &str) -> common::Answer {
    w.app
        .anonymous()
        .post("/api/v1/portal/enter", json!({"token": token, "relation_id": relation, "token_delivery": "body"}))
        .await
}

/// Enters the portal with `token`; the signed-in outside person.
async fn portal_session(w: &World, token: &str, relation: &str) -> Client {
    let r = enter(w, token, relation).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(r.body["role"], "vendor");
    w.app.bearer(r.body["access_token"].as_str().expect("access token"))
}

fn token(issued: &Value) -> String {
    issued["token"].as_str().expect("token").to_owned()
}

fn pdf(text: &str) -> Vec<u8> {
    format!("%PDF-1.7\n{text}\n").into_bytes()
}

async fn raw_upload(w: &World, who: &Client, path: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(w.app.url(path))
        .bearer_auth(who.access_token())
        .header("content-type", "application/pdf")
        .body(bytes)
        .send()
        .await
        .expect("send");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The organisation's own upload (the raiser, on the draft) with `visibility`; the attachment id.
async fn staff_file(w: &World, doc: &str, name: &str, visibility: &str) -> String {
    let path = format!("/api/v1/documents/{doc}/attachments/files?name={name}&visibility={visibility}");
    let (status, body) = raw_upload(w, &w.staff, &path, pdf(name)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().expect("id").to_owned()
}

/// A vendor's upload to a shared document; status and answer.
async fn vendor_file(w: &World, vendor: &Client, doc: &str, name: &str) -> (StatusCode, Value) {
    raw_upload(w, vendor, &format!("/api/v1/portal/documents/{doc}/files?name={name}"), pdf(name)).await
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v["attachments"]
        .as_array()
        .expect("attachments")
        .iter()
        .map(|a| a["name"].as_str().expect("name").to_owned())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn a_portal_link_opens_one_short_session_and_a_replay_is_refused_and_audited() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let supplies = relation(&w, "vendor", "Acme Supplies").await;
    let issued = invite(&w, &supplies, "sam@supplies.example").await;
    assert_eq!(issued["link"]["status"], "open");
    let t = token(&issued);

    let r = enter(&w, &t, &supplies).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(r.body["role"], "vendor");
    let session: Uuid = r.body["session_id"].as_str().expect("session").parse().expect("uuid");
    // An ordinary session, short: hours, not the thirty days of a password sign-in.
    let mut admin = db.admin_conn().await;
    let hours: f64 = sqlx::query_scalar(
        "select extract(epoch from expires_at - created_at)::float8 / 3600 from sessions where id = $1",
    )
    .bind(session)
    .fetch_one(&mut admin)
    .await
    .expect("session");
    assert!(hours <= 8.01, "a portal session lasts {hours} hours");
    let vendor = w.app.bearer(r.body["access_token"].as_str().expect("token"));
    assert_eq!(vendor.get("/api/v1/portal/documents").await.status, StatusCode::OK);

    // The same link again: refused, and the attempt is on the ledger with the outside actor.
    let replay = enter(&w, &t, &supplies).await;
    assert_eq!(replay.status, StatusCode::GONE, "{replay}");
    assert_eq!(replay.code(), "portal_link_used");
    assert_eq!(audit_count(&db, w.acme.id, "portal.link_replayed").await, 1);
    assert_eq!(audit_count(&db, w.acme.id, "portal.link_consumed").await, 1);
    let actor: String = sqlx::query_scalar(
        "select actor_role from audit_events where tenant_id = $1 and action = 'portal.link_consumed'",
    )
    .bind(w.acme.id.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("event");
    assert_eq!(actor, "vendor");

    // Two concurrent uses of a fresh link: exactly one session.
    let again = w
        .admin
        .post(
            &format!("/api/v1/relations/{supplies}/links"),
            json!({"user_id": issued["person"]["user_id"], "expires_in_days": 1}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{again}");
    let t2 = token(&again.body);
    let (a, b) = tokio::join!(enter(&w, &t2, &supplies), enter(&w, &t2, &supplies));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::GONE], "{a} / {b}");
}

#[tokio::test]
async fn expired_revoked_forged_and_other_relations_links_open_nothing() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let supplies = relation(&w, "vendor", "Acme Supplies").await;
    let other = relation(&w, "vendor", "Other Supplies").await;
    let issued = invite(&w, &supplies, "sam@supplies.example").await;
    let t = token(&issued);

    // Used for another relation: refused, and not consumed (it still works where it belongs).
    let r = enter(&w, &t, &other).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{r}");
    // Forged: another secret, another organisation, garbage.
    let forged = format!("{}{}", &t[..t.len() - 4], if t.ends_with("0000") { "1111" } else { "0000" });
    assert_eq!(enter(&w, &forged, &supplies).await.status, StatusCode::UNAUTHORIZED);
    let beta = common::org(&db, "gamma").await;
    let moved = t.replacen(&w.acme.id.as_uuid().simple().to_string(), &beta.id.as_uuid().simple().to_string(), 1);
    assert_eq!(enter(&w, &moved, &supplies).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(enter(&w, "csp_nonsense", &supplies).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(enter(&w, &t, &supplies).await.status, StatusCode::OK, "the link was left unused");

    // Expired.
    let person = issued["person"]["user_id"].clone();
    let fresh = w.admin.post(&format!("/api/v1/relations/{supplies}/links"), json!({"user_id": person})).await;
    assert_eq!(fresh.status, StatusCode::CREATED, "{fresh}");
    let mut admin = db.admin_conn().await;
    sqlx::query(
        "update portal_links set created_at = now() - interval '8 days', expires_at = now() - interval '1 day'
          where id = $1",
    )
    .bind(fresh.body["link"]["id"].as_str().expect("id").parse::<Uuid>().expect("uuid"))
    .execute(&mut admin)
    .await
    .expect("age the link");
    let r = enter(&w, &token(&fresh.body), &supplies).await;
    assert_eq!((r.status, r.code()), (StatusCode::GONE, "portal_link_expired"), "{r}");

    // Revoked before use.
    let fresh = w.admin.post(&format!("/api/v1/relations/{supplies}/links"), json!({"user_id": person})).await;
    let link = fresh.body["link"]["id"].as_str().expect("id").to_owned();
    let revoked = w.admin.post(&format!("/api/v1/relations/{supplies}/links/{link}/revoke"), ()).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{revoked}");
    let r = enter(&w, &token(&fresh.body), &supplies).await;
    assert_eq!((r.status, r.code()), (StatusCode::GONE, "portal_link_revoked"), "{r}");

    // Lifetimes outside 1-30 days are refused.
    for days in [0, 31, -1] {
        let r = w
            .admin
            .post(&format!("/api/v1/relations/{supplies}/links"), json!({"user_id": person, "expires_in_days": days}))
            .await;
        assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"), "{days}: {r}");
    }
}

#[tokio::test]
async fn revoking_a_used_link_or_ending_the_relation_ends_the_portal_session() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let supplies = relation(&w, "vendor", "Acme Supplies").await;
    let issued = invite(&w, &supplies, "sam@supplies.example").await;
    let vendor = portal_session(&w, &token(&issued), &supplies).await;
    let link = issued["link"]["id"].as_str().expect("id");
    let r = w.admin.post(&format!("/api/v1/relations/{supplies}/links/{link}/revoke"), ()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r}");
    let r = vendor.get("/api/v1/portal/documents").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the link's session outlived its revocation: {r}");

    // A second link, used; then the relation ends: the session dies, open links are withdrawn.
    let person = issued["person"]["user_id"].clone();
    let used = w.admin.post(&format!("/api/v1/relations/{supplies}/links"), json!({"user_id": person})).await;
    let unused = w.admin.post(&format!("/api/v1/relations/{supplies}/links"), json!({"user_id": person})).await;
    let vendor = portal_session(&w, &token(&used.body), &supplies).await;
    assert_eq!(vendor.get("/api/v1/portal/documents").await.status, StatusCode::OK);
    let ended = w.admin.post(&format!("/api/v1/relations/{supplies}/end"), ()).await;
    assert_eq!((ended.status, ended.body["status"].as_str()), (StatusCode::OK, Some("ended")), "{ended}");
    assert_eq!(vendor.get("/api/v1/portal/documents").await.status, StatusCode::UNAUTHORIZED);
    let r = enter(&w, &token(&unused.body), &supplies).await;
    assert_eq!((r.status, r.code()), (StatusCode::GONE, "portal_link_revoked"), "{r}");
    assert_eq!(audit_count(&db, w.acme.id, "relation.ended").await, 1);
    // Nothing more can be minted for an ended relation.
    let r = w.admin.post(&format!("/api/v1/relations/{supplies}/links"), json!({"user_id": person})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "relation_ended"), "{r}");
}

#[tokio::test]
async fn a_vendor_sees_only_what_is_addressed_to_its_relation_and_flagged_for_vendors() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let a = relation(&w, "vendor", "Vendor A").await;
    let b = relation(&w, "vendor", "Vendor B").await;
    let po = purchase_order(&w, "Chairs").await;
    let internal_doc = purchase_order(&w, "Internal budget").await;
    let b_doc = purchase_order(&w, "Desks for B").await;
    staff_file(&w, &po, "internal-notes.pdf", "internal").await;
    staff_file(&w, &po, "drawing.pdf", "vendor").await;
    staff_file(&w, &po, "client-terms.pdf", "client").await;
    let internal_file = staff_file(&w, &internal_doc, "budget.pdf", "vendor").await;
    address(&w, &a, &po).await;
    address(&w, &b, &b_doc).await;
    let vendor_a = portal_session(&w, &token(&invite(&w, &a, "ann@vendor-a.example").await), &a).await;

    let list = vendor_a.get("/api/v1/portal/documents").await;
    assert_eq!(list.status, StatusCode::OK, "{list}");
    let ids: Vec<&str> =
        list.body["items"].as_array().expect("items").iter().filter_map(|d| d["id"].as_str()).collect();
    assert_eq!(ids, vec![po.as_str()], "only the PO addressed to A");
    let got = vendor_a.get(&format!("/api/v1/portal/documents/{po}")).await;
    assert_eq!(got.status, StatusCode::OK, "{got}");
    assert_eq!(got.body["number"].as_str().map(|n| n.starts_with("PO-")), Some(true));
    assert_eq!(names(&got.body), vec!["drawing.pdf"], "never internal, never the client's");
    assert!(got.body.get("discussion").is_none(), "the organisation's discussion stays inside");
    assert_eq!(audit_count(&db, w.acme.id, "portal.document_viewed").await, 1);

    // An internal document, vendor B's document, a guessed id: all 404, through every door.
    for doc in [&internal_doc, &b_doc, &Uuid::now_v7().to_string()] {
        let r = vendor_a.get(&format!("/api/v1/portal/documents/{doc}")).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{doc}: {r}");
        let r = vendor_a.get(&format!("/api/v1/documents/{doc}")).await;
        assert!(matches!(r.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN), "{doc}: {r}");
        let (status, _) = vendor_file(&w, &vendor_a, doc, "invoice.pdf").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "upload to {doc}");
    }
    // A file of a document not shared with A (even one flagged for vendors): 404.
    let r = vendor_a.post(&format!("/api/v1/portal/attachments/{internal_file}/links"), json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{r}");
    // The organisation's own document routes refuse an outside party outright.
    assert_eq!(vendor_a.get(&format!("/api/v1/documents/{po}/attachments")).await.status, StatusCode::NOT_FOUND);
    // And the organisation's side of portals is not theirs.
    assert_eq!(vendor_a.get("/api/v1/relations").await.status, StatusCode::FORBIDDEN);
    assert_eq!(vendor_a.get(&format!("/api/v1/relations/{a}")).await.status, StatusCode::FORBIDDEN);
    // Members never use a portal (a forbid), whatever they can read otherwise.
    assert_eq!(w.admin.get("/api/v1/portal/documents").await.status, StatusCode::FORBIDDEN);
    assert_eq!(w.staff.get(&format!("/api/v1/portal/documents/{po}")).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_vendors_upload_reaches_staff_and_never_another_vendor() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let a = relation(&w, "vendor", "Vendor A").await;
    let b = relation(&w, "vendor", "Vendor B").await;
    let po = purchase_order(&w, "Chairs").await;
    staff_file(&w, &po, "drawing.pdf", "vendor").await;
    // The same PO goes to two vendors (a tender): each sees the drawing, never the other's reply.
    address(&w, &a, &po).await;
    address(&w, &b, &po).await;
    let vendor_a = portal_session(&w, &token(&invite(&w, &a, "ann@vendor-a.example").await), &a).await;
    let vendor_b = portal_session(&w, &token(&invite(&w, &b, "bob@vendor-b.example").await), &b).await;

    let (status, up) = vendor_file(&w, &vendor_a, &po, "invoice-a.pdf").await;
    assert_eq!(status, StatusCode::CREATED, "{up}");
    assert_eq!(up["visibility"], "vendor");
    let a_file = up["id"].as_str().expect("id").to_owned();
    assert_eq!(audit_count(&db, w.acme.id, "portal.file_added").await, 1);
    assert_eq!(audit_count(&db, w.acme.id, "file.uploaded").await, 2);

    // Staff see it on the document; A sees it; B does not, by listing, link or download.
    let staff_list = w.staff.get(&format!("/api/v1/documents/{po}/attachments")).await;
    assert_eq!(staff_list.status, StatusCode::OK, "{staff_list}");
    assert!(staff_list.text.contains("invoice-a.pdf"), "{staff_list}");
    assert_eq!(
        names(&vendor_a.get(&format!("/api/v1/portal/documents/{po}")).await.body),
        ["drawing.pdf", "invoice-a.pdf"]
    );
    assert_eq!(names(&vendor_b.get(&format!("/api/v1/portal/documents/{po}")).await.body), ["drawing.pdf"]);
    let r = vendor_b.post(&format!("/api/v1/portal/attachments/{a_file}/links"), json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{r}");
    // A's own link is A's alone: B presenting it is refused, A downloads.
    let minted = vendor_a.post(&format!("/api/v1/portal/attachments/{a_file}/links"), json!({})).await;
    assert_eq!(minted.status, StatusCode::CREATED, "{minted}");
    let url = minted.body["url"].as_str().expect("url");
    let (status, _, body) = vendor_a.get_bytes(url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with(b"%PDF-1.7\ninvoice-a.pdf"));
    let (status, _, _) = vendor_b.get_bytes(url).await;
    assert_ne!(status, StatusCode::OK, "another vendor downloaded A's invoice");
    assert_eq!(audit_count(&db, w.acme.id, "file.downloaded").await, 1);
}

#[tokio::test]
async fn another_organisation_and_members_without_the_right_get_nothing() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let a = relation(&w, "vendor", "Vendor A").await;
    let issued = invite(&w, &a, "ann@vendor-a.example").await;
    let link = issued["link"]["id"].as_str().expect("id");
    let po = purchase_order(&w, "Chairs").await;
    for r in [
        w.beta_admin.get(&format!("/api/v1/relations/{a}")).await,
        w.beta_admin.post(&format!("/api/v1/relations/{a}/links/{link}/revoke"), ()).await,
        w.beta_admin.post(&format!("/api/v1/relations/{a}/end"), ()).await,
        w.beta_admin.post(&format!("/api/v1/relations/{a}/invite"), json!({"email": "x@evil.example"})).await,
    ] {
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{r}");
    }
    let listed = w.beta_admin.get("/api/v1/relations").await;
    assert!(!listed.text.contains(&a), "another organisation lists A's relation");
    // Beta cannot address its relation to acme's document either.
    let beta_rel = w.beta_admin.post("/api/v1/relations", json!({"kind": "vendor", "company_name": "B's"})).await;
    let beta_rel = beta_rel.body["id"].as_str().expect("id").to_owned();
    let r = w.beta_admin.post(&format!("/api/v1/relations/{beta_rel}/documents"), json!({"document_id": po})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    // Nor acme address a document to beta's relation.
    let r = w.admin.post(&format!("/api/v1/relations/{beta_rel}/documents"), json!({"document_id": po})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    // Staff may look but not invite or mint (relations.manage: owners, admins, finance).
    assert_eq!(w.staff.get("/api/v1/relations").await.status, StatusCode::OK);
    let r = w.staff.post(&format!("/api/v1/relations/{a}/invite"), json!({"email": "y@vendor-a.example"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    let r = w.staff.post("/api/v1/relations", json!({"kind": "vendor", "company_name": "Mine"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    // A member of the organisation cannot be made a relation's person.
    let r = w.admin.post(&format!("/api/v1/relations/{a}/invite"), json!({"email": "user1@acme.example"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "already_member"), "{r}");
    // Bad input is a 422, not a 5xx.
    for body in [
        json!({"kind": "partner", "company_name": "X"}),
        json!({"kind": "vendor", "company_name": ""}),
        json!({"kind": "vendor"}),
    ] {
        let r = w.admin.post("/api/v1/relations", body.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {r}");
    }
    let r = w.admin.post(&format!("/api/v1/relations/{a}/invite"), json!({"email": "not an address"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
}

/// Runs `sql` as the application role with `tenant` and the relation scope `scope` in force.
async fn as_relation(
    db: &TestDb,
    tenant: &str,
    scope: Option<&str>,
    sql: &str,
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    use sqlx::Connection;
    let mut conn = db.raw_app_conn().await;
    let mut tx = conn.begin().await?;
    sqlx::query("select set_config('app.tenant_id', $1, true)").bind(tenant).execute(&mut *tx).await?;
    if let Some(s) = scope {
        sqlx::query("select set_config('app.relation_scope', $1, true)").bind(s).execute(&mut *tx).await?;
    }
    let r = sqlx::query(sql).fetch_all(&mut *tx).await;
    tx.rollback().await?;
    r
}

#[tokio::test]
async fn postgres_hides_other_relations_rows_even_without_a_where() {
    use sqlx::Row;
    let db = TestDb::new().await;
    let w = world(&db).await;
    let a = relation(&w, "vendor", "Vendor A").await;
    let b = relation(&w, "vendor", "Vendor B").await;
    let po = purchase_order(&w, "Chairs").await;
    let b_doc = purchase_order(&w, "Desks").await;
    address(&w, &a, &po).await;
    address(&w, &b, &b_doc).await;
    invite(&w, &a, "ann@vendor-a.example").await;
    invite(&w, &b, "bob@vendor-b.example").await;
    let t = w.acme.id.to_string();
    let count = |rows: Vec<sqlx::postgres::PgRow>| rows[0].get::<i64, _>(0);

    // The scope is derived from the person's own membership in the database.
    let ann: Uuid = {
        let mut admin = db.admin_conn().await;
        sqlx::query_scalar("select id from users where email = 'ann@vendor-a.example'")
            .fetch_one(&mut admin)
            .await
            .expect("ann")
    };
    let mut tx = db.store.relation_tx(w.acme.id, store::RelationScope::Member(ann)).await.expect("tx");
    assert_eq!(tx.relation_scope().await.expect("scope"), Some(a.clone()));
    for (table, expected) in [("relations", 1), ("relation_documents", 1), ("portal_links", 1), ("documents", 1)] {
        let n: i64 =
            sqlx::query_scalar(&format!("select count(*) from {table}")).fetch_one(tx.conn()).await.expect(table);
        assert_eq!(n, expected, "{table} as vendor A");
    }
    drop(tx);
    let staff_user = w.acme.users[1];
    let mut tx = db.store.relation_tx(w.acme.id, store::RelationScope::Member(staff_user)).await.expect("tx");
    assert_eq!(tx.relation_scope().await.expect("scope").as_deref(), Some("internal"));
    drop(tx);

    // Raw settings: no scope, 'none', garbage, another relation's id, another tenant's scope.
    for table in ["relations", "relation_documents", "portal_links"] {
        for scope in [None, Some("none"), Some("vendor"), Some("' or true --")] {
            let n = count(as_relation(&db, &t, scope, &format!("select count(*) from {table}")).await.expect(table));
            assert_eq!(n, 0, "{table} under {scope:?}");
        }
        let col = if table == "relations" { "id" } else { "relation_id" };
        let sql = format!(
            "select count(*) filter (where {col} <> '{a}'), count(*) filter (where {col} = '{a}') from {table}"
        );
        let rows = as_relation(&db, &t, Some(&a), &sql).await.expect(table);
        let (other, mine): (i64, i64) = (rows[0].get(0), rows[0].get(1));
        assert_eq!((other, mine), (0, 1), "{table}: A sees another relation's rows, or not its own");
    }
    // Documents: A's scope reaches only what is addressed to A.
    let n = count(as_relation(&db, &t, Some(&a), "select count(*) from documents").await.expect("documents"));
    assert_eq!(n, 1);
    // A relation's person writes none of the relation tables: not an addressing of B's document
    // to A, not a link, not a relation.
    for sql in [
        format!(
            "insert into relation_documents (tenant_id, relation_id, document_id, addressed_by)
             select tenant_id, '{a}', '{b_doc}', addressed_by from relation_documents"
        ),
        format!("update relations set company_name = 'Mine' where id = '{a}'"),
        "delete from relation_documents".to_owned(),
        "update portal_links set revoked_at = null".to_owned(),
    ] {
        let e = as_relation(&db, &t, Some(&a), &sql).await;
        match e {
            Err(e) => assert_eq!(common::sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}"),
            Ok(rows) => assert!(rows.is_empty(), "{sql}"),
        }
    }
    let mut admin = db.admin_conn().await;
    let (names, addressed): (i64, i64) = sqlx::query_as(
        "select (select count(*) from relations where company_name = 'Mine'),
                (select count(*) from relation_documents where document_id = $1)",
    )
    .bind(b_doc.parse::<Uuid>().expect("uuid"))
    .fetch_one(&mut admin)
    .await
    .expect("state");
    assert_eq!((names, addressed), (0, 1), "a relation's person changed the organisation's rows");
    let e = as_relation(
        &db,
        &t,
        Some(&a),
        &format!("update portal_links set revoked_at = now() where relation_id = '{b}' returning id"),
    )
    .await
    .expect("update");
    assert!(e.is_empty(), "A touched B's links");
    let e = as_relation(&db, &t, Some(&a), &format!("update relations set id = id where id = '{b}' returning id"))
        .await
        .expect("update");
    assert!(e.is_empty(), "A touched B's relation");
    // Another tenant with A's relation id as scope: nothing of acme.
    let other = common::org(&db, "delta").await;
    let n = count(
        as_relation(&db, &other.id.to_string(), Some(&a), "select count(*) from relations").await.expect("relations"),
    );
    assert_eq!(n, 0);
}

// --- Requests to relations (questions a relation answers in the portal) --------------------

/// Staff (the PO's raiser) ask `relation` a question about `doc`; the request.
async fn ask(w: &World, relation: &str, doc: &str, question: &str, file: bool) -> Value {
    let r = w
        .staff
        .post(
            &format!("/api/v1/documents/{doc}/requests"),
            json!({"relation_id": relation, "question": question, "file_requested": file}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    assert_eq!(r.body["status"], "open");
    r.body
}

async fn actor_of(db: &TestDb, tenant: &common::Org, action: &str) -> (String, String) {
    let mut admin = db.admin_conn().await;
    sqlx::query_as("select actor_id, actor_role from audit_events where tenant_id = $1 and action = $2")
        .bind(tenant.id.as_uuid())
        .bind(action)
        .fetch_one(&mut admin)
        .await
        .expect("event")
}

#[tokio::test]
async fn a_relations_person_answers_only_their_own_relations_open_requests_once() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let a = relation(&w, "vendor", "Vendor A").await;
    let b = relation(&w, "vendor", "Vendor B").await;
    let po = purchase_order(&w, "Chairs").await;
    address(&w, &a, &po).await;
    address(&w, &b, &po).await;
    let vendor_a = portal_session(&w, &token(&invite(&w, &a, "ann@vendor-a.example").await), &a).await;
    let vendor_b = portal_session(&w, &token(&invite(&w, &b, "bob@vendor-b.example").await), &b).await;
    let asked = ask(&w, &a, &po, "When can you deliver the chairs?", false).await;
    let id = asked["id"].as_str().expect("id").to_owned();
    assert_eq!(audit_count(&db, w.acme.id, "relation_request.asked").await, 1);

    // A sees it; B neither lists it nor answers it.
    let listed = vendor_a.get("/api/v1/portal/requests").await;
    assert_eq!(listed.status, StatusCode::OK, "{listed}");
    assert_eq!(listed.body["items"].as_array().expect("items").len(), 1, "{listed}");
    assert_eq!(listed.body["items"][0]["question"], "When can you deliver the chairs?");
    let listed = vendor_b.get("/api/v1/portal/requests").await;
    assert_eq!(listed.body["items"].as_array().expect("items").len(), 0, "B sees A's request: {listed}");
    let r = vendor_b.post(&format!("/api/v1/portal/requests/{id}/answer"), json!({"answer": "Tomorrow"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{r}");

    // A answers; the request closes; a second answer is 409.
    let r = vendor_a.post(&format!("/api/v1/portal/requests/{id}/answer"), json!({"answer": "Friday, 9am"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!((r.body["status"].as_str(), r.body["answer"].as_str()), (Some("answered"), Some("Friday, 9am")));
    let r = vendor_a.post(&format!("/api/v1/portal/requests/{id}/answer"), json!({"answer": "Saturday"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "request_closed"), "{r}");
    let (actor, role) = actor_of(&db, &w.acme, "relation_request.answered").await;
    assert_eq!(role, "vendor");
    let ann: Uuid = sqlx::query_scalar("select id from users where email = 'ann@vendor-a.example'")
        .fetch_one(&mut db.admin_conn().await)
        .await
        .expect("ann");
    assert_eq!(actor, ann.to_string(), "the answer is on the ledger with the outside person");

    // The organisation sees the answer on the document; the outside people cannot use that route.
    let org_side = w.staff.get(&format!("/api/v1/documents/{po}/requests")).await;
    assert_eq!(org_side.status, StatusCode::OK, "{org_side}");
    assert_eq!(org_side.body["items"][0]["answer"], "Friday, 9am");
    assert_eq!(org_side.body["items"][0]["status"], "answered");
    let r = vendor_a.get(&format!("/api/v1/documents/{po}/requests")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    let r = vendor_a
        .post(&format!("/api/v1/documents/{po}/requests"), json!({"relation_id": a, "question": "Self-addressed?"}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "a relation's person asked: {r}");
}

#[tokio::test]
async fn requests_refuse_bad_text_other_organisations_and_unaddressed_relations() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let a = relation(&w, "vendor", "Vendor A").await;
    let b = relation(&w, "vendor", "Vendor B").await;
    let po = purchase_order(&w, "Chairs").await;
    address(&w, &a, &po).await;
    let vendor_a = portal_session(&w, &token(&invite(&w, &a, "ann@vendor-a.example").await), &a).await;
    let path = format!("/api/v1/documents/{po}/requests");
    // Bad questions: 422, never a 5xx.
    for (question, code) in [("nul \u{0} here", "invalid_text"), ("", "invalid_field"), ("   ", "invalid_field")] {
        let r = w.staff.post(&path, json!({"relation_id": a, "question": question})).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, code), "{question:?}: {r}");
    }
    let r = w.staff.post(&path, json!({"relation_id": a, "question": "x".repeat(2001)})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    // A relation the document is not addressed to; another organisation's document and relation.
    let r = w.staff.post(&path, json!({"relation_id": b, "question": "Hello?"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{r}");
    let r = w.beta_admin.post(&path, json!({"relation_id": a, "question": "Hello?"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{r}");
    let r = w.beta_admin.get(&path).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    // Another organisation's request (beta's fixture question) is not there for acme's vendor.
    let beta_request: Uuid = {
        let mut admin = db.admin_conn().await;
        sqlx::query_scalar(
            "select r.id from relation_requests r join tenants t on t.id = r.tenant_id where t.slug = 'beta'",
        )
        .fetch_one(&mut admin)
        .await
        .expect("beta's request")
    };
    let r = vendor_a.post(&format!("/api/v1/portal/requests/{beta_request}/answer"), json!({"answer": "Mine"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{r}");
    // Bad answers: 422, and the request stays open.
    let id = ask(&w, &a, &po, "Your delivery date?", false).await["id"].as_str().expect("id").to_owned();
    let answer = format!("/api/v1/portal/requests/{id}/answer");
    for body in [
        json!({"answer": "a\u{0}b"}),
        json!({"answer": "x".repeat(4001)}),
        json!({}),
        json!({"answer": "  "}),
        json!({"answer": "ok", "attachment_id": Uuid::now_v7()}),
        json!({"answer": "ok", "extra": true}),
    ] {
        let r = vendor_a.post(&answer, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {r}");
    }
    let r = vendor_a.post("/api/v1/portal/requests/not-a-uuid/answer", json!({"answer": "x"})).await;
    assert!(r.status.is_client_error(), "{r}");
    let open = w.staff.get(&path).await;
    assert_eq!(open.body["items"][0]["status"], "open", "{open}");
}

#[tokio::test]
async fn an_answer_with_a_file_reaches_the_document_and_internal_remarks_never_reach_the_portal() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let a = relation(&w, "vendor", "Vendor A").await;
    let b = relation(&w, "vendor", "Vendor B").await;
    let po = purchase_order(&w, "Chairs").await;
    address(&w, &a, &po).await;
    address(&w, &b, &po).await;
    // An internal remark on the document (the raiser's note on submitting).
    let r = w
        .staff
        .post(
            &format!("/api/v1/documents/{po}/transitions"),
            json!({"transition": "submit", "note": "INTERNAL: vendor A overcharged last year", "version": 1}),
        )
        .await;
    assert!(r.status.is_success(), "{r}");
    let internal = w.staff.get(&format!("/api/v1/documents/{po}")).await;
    assert!(internal.text.contains("INTERNAL: vendor A overcharged"), "the remark is in the discussion: {internal}");
    let vendor_a = portal_session(&w, &token(&invite(&w, &a, "ann@vendor-a.example").await), &a).await;
    let vendor_b = portal_session(&w, &token(&invite(&w, &b, "bob@vendor-b.example").await), &b).await;
    let id =
        ask(&w, &a, &po, "Please send the signed delivery note.", true).await["id"].as_str().expect("id").to_owned();
    assert_eq!(ask(&w, &a, &po, "And the warranty?", false).await["file_requested"], false);

    // Another vendor's upload (or the organisation's file) does not answer A's request.
    let (status, b_up) = vendor_file(&w, &vendor_b, &po, "b-note.pdf").await;
    assert_eq!(status, StatusCode::CREATED, "{b_up}");
    let answer = format!("/api/v1/portal/requests/{id}/answer");
    let r = vendor_a.post(&answer, json!({"attachment_id": b_up["id"]})).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"), "{r}");

    let (status, up) = vendor_file(&w, &vendor_a, &po, "delivery-note.pdf").await;
    assert_eq!(status, StatusCode::CREATED, "{up}");
    let r = vendor_a.post(&answer, json!({"answer": "Signed copy attached.", "attachment_id": up["id"]})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(r.body["answer_attachment_id"], up["id"]);
    let org_side = w.staff.get(&format!("/api/v1/documents/{po}/requests")).await;
    let answered = org_side.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|x| x["id"] == id.as_str())
        .cloned()
        .expect("the request");
    assert_eq!(
        (answered["status"].as_str(), answered["answer_attachment_id"].clone()),
        (Some("answered"), up["id"].clone())
    );
    let files = w.staff.get(&format!("/api/v1/documents/{po}/attachments")).await;
    assert!(files.text.contains("delivery-note.pdf"), "{files}");

    // What the portal shows A: the question, the answer, never the internal remark.
    for path in [format!("/api/v1/portal/documents/{po}"), "/api/v1/portal/requests".to_owned()] {
        let seen = vendor_a.get(&path).await;
        assert_eq!(seen.status, StatusCode::OK, "{seen}");
        assert!(!seen.text.contains("INTERNAL"), "{path} leaks the internal discussion: {seen}");
        assert!(seen.body.get("discussion").is_none(), "{path}");
    }
    let page = vendor_a.get(&format!("/portal/documents/{po}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("Please send the signed delivery note."), "{page}");
    assert!(!page.text.contains("INTERNAL"), "the portal page leaks the internal discussion");
    // B sees neither A's question nor A's answer.
    let b_seen = vendor_b.get("/api/v1/portal/requests").await;
    assert_eq!(b_seen.body["items"].as_array().expect("items").len(), 0, "{b_seen}");
    let b_page = vendor_b.get(&format!("/portal/documents/{po}")).await;
    assert!(!b_page.text.contains("signed delivery note"), "B sees A's question");
}

#[tokio::test]
async fn postgres_hides_other_relations_requests_and_lets_only_the_organisation_ask() {
    use sqlx::Row;
    let db = TestDb::new().await;
    let w = world(&db).await;
    let a = relation(&w, "vendor", "Vendor A").await;
    let b = relation(&w, "vendor", "Vendor B").await;
    let po = purchase_order(&w, "Chairs").await;
    address(&w, &a, &po).await;
    address(&w, &b, &po).await;
    ask(&w, &a, &po, "For A", false).await;
    let b_request = ask(&w, &b, &po, "For B", false).await["id"].as_str().expect("id").to_owned();
    let t = w.acme.id.to_string();
    let sql = format!(
        "select count(*) filter (where relation_id <> '{a}'), count(*) filter (where relation_id = '{a}') from relation_requests"
    );
    let rows = as_relation(&db, &t, Some(&a), &sql).await.expect("requests");
    assert_eq!((rows[0].get::<i64, _>(0), rows[0].get::<i64, _>(1)), (0, 1), "A sees another relation's requests");
    for scope in [None, Some("none"), Some("' or true --")] {
        let rows = as_relation(&db, &t, scope, "select count(*) from relation_requests").await.expect("count");
        assert_eq!(rows[0].get::<i64, _>(0), 0, "{scope:?}");
    }
    // A's scope neither answers B's request, nor asks, nor deletes, nor rewrites a question.
    let touched = as_relation(
        &db,
        &t,
        Some(&a),
        &format!("update relation_requests set status = 'answered', answer = 'x', answered_at = now(), answered_by = asked_by where id = '{b_request}' returning id"),
    )
    .await
    .expect("update");
    assert!(touched.is_empty(), "A answered B's request");
    for sql in [
        format!(
            "insert into relation_requests (tenant_id, id, relation_id, document_id, question, asked_by)
             select tenant_id, gen_random_uuid(), '{a}', document_id, 'forged', asked_by from relation_requests"
        ),
        "update relation_requests set question = 'rewritten'".to_owned(),
        "delete from relation_requests".to_owned(),
    ] {
        let e = as_relation(&db, &t, Some(&a), &sql).await.expect_err(&sql);
        assert_eq!(common::sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
    }
    // An answered request is closed even for the organisation's side.
    let mut admin = db.admin_conn().await;
    sqlx::query("update relation_requests set status = 'answered', answer = 'ok', answered_at = now(), answered_by = asked_by where id = $1")
        .bind(b_request.parse::<Uuid>().expect("uuid"))
        .execute(&mut admin)
        .await
        .expect("answer as the owner");
    let e = sqlx::query("update relation_requests set answer = 'changed' where id = $1")
        .bind(b_request.parse::<Uuid>().expect("uuid"))
        .execute(&mut admin)
        .await
        .expect_err("an answered request changed");
    assert_eq!(common::sqlstate(&e).as_deref(), Some("P0001"), "{e}");
}

/// An organisation member making a portal link may have it mailed: the mail lands in the outbox
/// with the absolute link (the server's public URL), the answer says it was queued, and the link
/// in the mail opens the portal. Without `send_mail` nothing is mailed.
#[tokio::test]
async fn a_portal_link_is_mailed_through_the_outbox_when_asked() {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    common::with_password(&db, acme.users[0]).await;
    let app = TestApp::serve(
        TestApp::setup(&db).dev_outbox().state().with_public_url(Some("https://approvals.acme.example".into())),
    )
    .await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let rel = admin.post("/api/v1/relations", json!({"kind": "vendor", "company_name": "Chair Makers"})).await;
    let rel = rel.body["id"].as_str().expect("id").to_owned();
    let r = admin
        .post(&format!("/api/v1/relations/{rel}/invite"), json!({"email": "vera@chairs.example", "send_mail": true}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    assert_eq!(r.body["mail_queued"], true, "{r}");
    let path = r.body["url"].as_str().expect("url").to_owned();
    let mail = app.anonymous().get("/api/v1/dev/outbox?to=vera@chairs.example").await.body;
    let items = mail["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{mail}");
    let body = items[0]["body"].as_str().expect("body");
    assert!(body.contains(&format!("https://approvals.acme.example{path}")), "{body}");
    assert!(items[0]["subject"].as_str().expect("subject").contains("Chair Makers"), "{mail}");
    // The mailed link is the one that works (once).
    let token = r.body["token"].as_str().expect("token");
    let entered = app
        .anonymous()
        .post("/api/v1/portal/enter", json!({"token": token, "relation_id": rel, "token_delivery": "body"}))
        .await;
    assert_eq!(entered.status, StatusCode::OK, "{entered}");

    // Without send_mail: a link, no mail; a fresh link for the same person may be mailed.
    let quiet = admin.post(&format!("/api/v1/relations/{rel}/invite"), json!({"email": "quiet@chairs.example"})).await;
    assert_eq!(quiet.status, StatusCode::CREATED, "{quiet}");
    assert_eq!(quiet.body["mail_queued"], false);
    let none = app.anonymous().get("/api/v1/dev/outbox?to=quiet@chairs.example").await.body;
    assert_eq!(none["items"].as_array().expect("items").len(), 0, "{none}");
    let user = quiet.body["person"]["user_id"].as_str().expect("user").to_owned();
    let again =
        admin.post(&format!("/api/v1/relations/{rel}/links"), json!({"user_id": user, "send_mail": true})).await;
    assert_eq!((again.status, again.body["mail_queued"].as_bool()), (StatusCode::CREATED, Some(true)), "{again}");
    let mailed = app.anonymous().get("/api/v1/dev/outbox?to=quiet@chairs.example").await.body;
    let body = mailed["items"][0]["body"].as_str().expect("a mail").to_owned();
    assert!(body.contains(again.body["token"].as_str().expect("token")), "{body}");

    // Each mail is in the ledger, by the member who asked, for the link mailed (two mails, two
    // events; the unmailed link has none), and the address itself is not written there.
    let mut conn = db.admin_conn().await;
    let events: Vec<(String, String, String)> = sqlx::query_as(
        "select entity_id, actor_id, changes from audit_events
          where tenant_id = $1 and action = 'portal.link_mailed' order by seq",
    )
    .bind(acme.id.as_uuid())
    .fetch_all(&mut conn)
    .await
    .expect("events");
    let links: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        links,
        [r.body["link"]["id"].as_str().expect("link"), again.body["link"]["id"].as_str().expect("link")],
        "{events:?}"
    );
    assert!(events.iter().all(|e| e.1 == acme.users[0].to_string()), "{events:?}");
    assert!(!format!("{events:?}").contains("@chairs.example"), "{events:?}");
    assert_eq!(audit_count(&db, acme.id, "portal.link_mail_failed").await, 0);
}

/// When the mailer refuses a portal link's mail, the answer says it was not queued (the member
/// still holds the link) and the ledger records both the attempt and its failure.
#[tokio::test]
async fn a_portal_link_mail_the_mailer_refuses_is_reported_and_recorded() {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    common::with_password(&db, acme.users[0]).await;
    // An SMTP server that is not there: the port was free a moment ago and nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let mailer = identity::signin::mail::SmtpMailer::new(&format!("smtp://127.0.0.1:{port}"), "no-reply@acme.example")
        .expect("mailer");
    let app = TestApp::serve(TestApp::setup(&db).state().with_mailer(std::sync::Arc::new(mailer))).await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let rel = admin.post("/api/v1/relations", json!({"kind": "client", "company_name": "Lamp Buyers"})).await;
    let rel = rel.body["id"].as_str().expect("id").to_owned();
    let r = admin
        .post(&format!("/api/v1/relations/{rel}/invite"), json!({"email": "lou@lamps.example", "send_mail": true}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    assert_eq!(r.body["mail_queued"], false, "{r}");
    assert!(r.body["token"].as_str().is_some_and(|t| !t.is_empty()), "{r}");
    assert_eq!(audit_count(&db, acme.id, "portal.link_mailed").await, 1);
    assert_eq!(audit_count(&db, acme.id, "portal.link_mail_failed").await, 1);
}
