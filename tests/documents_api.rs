//! Vouchers and purchase orders over HTTP, attacked: versions (ETag / If-Match), idempotency
//! keys, bulk approval, inbox queries, fiscal periods, refusals audited, other organisations'
//! ids 404, bad input 422 naming the field.

mod common;

use common::{Answer, audit_count, member, org, send, sign_in, spawn_roomy};
use identity::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::testing::TestDb;
use uuid::Uuid;

fn voucher(dept: Uuid, amounts: &[i64]) -> Value {
    json!({
        "kind": "voucher",
        "department_id": dept,
        "title": "Office chairs",
        "document_date": "2026-03-10",
        "currency": "EUR",
        "lines": amounts.iter().map(|a| json!({"description": "chair", "amount_minor": a})).collect::<Vec<_>>(),
        "attachments": [{"name": "quote.pdf", "reference": "s3://quotes/q-1.pdf", "media_type": "application/pdf"}],
    })
}

struct World {
    base: String,
    acme: common::Org,
    admin: String,
    staff: String,
    hod: String,
    finance: String,
    finance2: String,
    md: String,
    vendor: String,
}

async fn world(db: &TestDb) -> World {
    let acme = org(db, "acme").await;
    common::with_password(db, acme.users[0]).await;
    common::with_password(db, acme.users[1]).await;
    common::with_password(db, acme.users[2]).await;
    member(db, acme.id, "acme", "fin", Role::Finance, None, true).await;
    member(db, acme.id, "acme", "fin2", Role::Finance, None, true).await;
    member(db, acme.id, "acme", "md", Role::Md, None, true).await;
    member(db, acme.id, "acme", "vendor", Role::Vendor, None, true).await;
    let base = spawn_roomy(db).await;
    World {
        admin: sign_in(&base, "acme", "user0@acme.example").await,
        staff: sign_in(&base, "acme", "user1@acme.example").await,
        hod: sign_in(&base, "acme", "user2@acme.example").await,
        finance: sign_in(&base, "acme", "fin@acme.example").await,
        finance2: sign_in(&base, "acme", "fin2@acme.example").await,
        md: sign_in(&base, "acme", "md@acme.example").await,
        vendor: sign_in(&base, "acme", "vendor@acme.example").await,
        base,
        acme,
    }
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    async fn create(&self, token: &str, body: Value) -> Answer {
        send(Method::POST, &self.url("/documents"), Some(token), Some(body), &[]).await
    }

    async fn step(&self, token: &str, id: &str, t: &str, if_match: Option<&str>, note: Option<&str>) -> Answer {
        let mut body = json!({"transition": t});
        if let Some(n) = note {
            body["note"] = json!(n);
        }
        let headers: Vec<(&str, &str)> = if_match.map(|v| vec![("if-match", v)]).unwrap_or_default();
        self.transition(token, id, body, &headers).await
    }

    /// `POST /documents/{id}/transitions` with this body and these headers, as sent.
    async fn transition(&self, token: &str, id: &str, body: Value, headers: &[(&str, &str)]) -> Answer {
        send(Method::POST, &self.url(&format!("/documents/{id}/transitions")), Some(token), Some(body), headers).await
    }

    /// Creates and submits a voucher as `token`; returns (id, etag after submit).
    async fn submitted(&self, token: &str, amounts: &[i64]) -> (String, String) {
        let c = self.create(token, voucher(self.acme.department, amounts)).await;
        assert_eq!(c.status, StatusCode::CREATED, "{}", c.body);
        let id = c.body["id"].as_str().expect("id").to_owned();
        let s = self.step(token, &id, "submit", Some("\"1\""), None).await;
        assert_eq!(s.status, StatusCode::OK, "{}", s.body);
        (id, s.header("etag").expect("etag").to_owned())
    }
}

#[tokio::test]
async fn a_voucher_goes_through_its_approvals_over_http() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let c = w.create(&w.staff, voucher(w.acme.department, &[12_000, 3_050])).await;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.body);
    assert_eq!(c.header("etag"), Some("\"1\""));
    let id = c.body["id"].as_str().expect("id").to_owned();
    assert_eq!(c.header("location"), Some(format!("/api/v1/documents/{id}").as_str()));
    assert_eq!((c.body["amount_minor"].as_i64(), c.body["status"].as_str()), (Some(15_050), Some("draft")));
    assert_eq!(c.body["attachments"][0]["reference"], json!("s3://quotes/q-1.pdf"));

    // No version named: 428. A stale If-Match: 412 with the current ETag. Body version works too.
    assert_eq!(w.step(&w.staff, &id, "submit", None, None).await.status, StatusCode::PRECONDITION_REQUIRED);
    let s = w.step(&w.staff, &id, "submit", Some("\"1\""), None).await;
    assert_eq!((s.status, s.header("etag")), (StatusCode::OK, Some("\"2\"")));
    let stale = w.step(&w.hod, &id, "approve", Some("\"1\""), None).await;
    assert_eq!(
        (stale.status, stale.code(), stale.header("etag")),
        (StatusCode::PRECONDITION_FAILED, "precondition_failed", Some("\"2\""))
    );
    let stale_body = w.transition(&w.hod, &id, json!({"transition": "approve", "version": 1}), &[]).await;
    assert_eq!((stale_body.status, stale_body.code()), (StatusCode::CONFLICT, "stale_version"));
    assert_eq!(stale_body.body["error"]["details"]["current_version"], json!(2));

    // The raiser may not approve their own document: 403, and the refusal is in the ledger.
    let before = audit_count(&db, w.acme.id, "access.denied").await;
    let own = w.step(&w.staff, &id, "approve", Some("\"2\""), None).await;
    assert_eq!((own.status, own.code()), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(audit_count(&db, w.acme.id, "access.denied").await, before + 1);

    // A transition the state does not allow: 409 listing what it does allow.
    let wrong = w.step(&w.staff, &id, "mark_paid", Some("\"2\""), None).await;
    assert_eq!((wrong.status, wrong.code()), (StatusCode::CONFLICT, "transition_not_allowed"));
    assert_eq!(wrong.body["error"]["details"]["allowed"], json!(["approve", "reject", "query", "amend", "cancel"]));
    let unknown = w.step(&w.staff, &id, "teleport", Some("\"2\""), None).await;
    assert_eq!(
        (unknown.status, unknown.body["error"]["details"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("transition"))
    );

    // HOD, then finance: approved (no MD threshold). The HOD may not also approve as finance.
    let h = w.step(&w.hod, &id, "approve", Some("\"2\""), None).await;
    assert_eq!((h.status, h.body["status"].as_str()), (StatusCode::OK, Some("hod_approved")));
    let f = w.step(&w.finance, &id, "approve", Some("W/\"3\""), None).await;
    assert_eq!((f.status, f.body["status"].as_str()), (StatusCode::OK, Some("approved")));
    assert_eq!(f.body["approvals"].as_array().map(Vec::len), Some(2));
    let p = w.step(&w.finance, &id, "mark_paid", Some("\"4\""), None).await;
    assert_eq!((p.status, p.body["status"].as_str()), (StatusCode::OK, Some("paid")));
    assert_eq!(audit_count(&db, w.acme.id, "voucher.approved").await, 2);
    assert_eq!(audit_count(&db, w.acme.id, "voucher.paid").await, 1);

    // Reading it: ETag is the version; a vendor cannot see it at all.
    let g = send(Method::GET, &w.url(&format!("/documents/{id}")), Some(&w.finance2), None, &[]).await;
    assert_eq!((g.status, g.header("etag")), (StatusCode::OK, Some("\"5\"")));
    let v = send(Method::GET, &w.url(&format!("/documents/{id}")), Some(&w.vendor), None, &[]).await;
    assert_eq!(v.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_is_422_naming_the_field_and_nothing_is_created() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let dept = w.acme.department;
    let mut cases = vec![
        ("currency", {
            let mut v = voucher(dept, &[100]);
            v["currency"] = json!("EURO");
            v
        }),
        ("document_date", {
            let mut v = voucher(dept, &[100]);
            v["document_date"] = json!("31/03/2026");
            v
        }),
        ("lines[0].amount_minor", {
            let mut v = voucher(dept, &[100]);
            v["lines"][0]["amount_minor"] = json!("12.50");
            v
        }),
        ("lines.amount_minor", voucher(dept, &[-5])),
        ("lines", voucher(dept, &[])),
        ("department_id", {
            let mut v = voucher(dept, &[100]);
            v["department_id"] = json!(Uuid::now_v7());
            v
        }),
        ("kind", {
            let mut v = voucher(dept, &[100]);
            v["kind"] = json!("invoice");
            v
        }),
        ("attachments", {
            let mut v = voucher(dept, &[100]);
            v["attachments"][0]["sha256"] = json!("xyz");
            v
        }),
    ];
    // JPY has no minor unit digits; a fraction cannot be expressed, but whole yen can.
    let mut yen = voucher(dept, &[1500]);
    yen["currency"] = json!("JPY");
    cases.push(("ok", yen));
    for (field, body) in cases {
        let a = w.create(&w.staff, body).await;
        if field == "ok" {
            assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
            continue;
        }
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {}", a.body);
        assert_eq!(a.body["error"]["details"]["field"].as_str(), Some(field), "{}", a.body);
    }
    let mut tx = db.store.tenant_tx(w.acme.id).await.expect("tx");
    let n: i64 = sqlx::query_scalar("select count(*) from documents where title = 'Office chairs'")
        .fetch_one(tx.conn())
        .await
        .expect("count");
    assert_eq!(n, 1, "only the valid JPY voucher exists");
    // API keys cannot raise or decide documents.
    let key = send(
        Method::POST,
        &w.url("/api-keys"),
        Some(&w.admin),
        Some(json!({"name": "bot", "role": "admin", "scopes": []})),
        &[],
    )
    .await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.body);
    let secret = key.body["secret"].as_str().expect("secret").to_owned();
    let a = w.create(&secret, voucher(dept, &[100])).await;
    assert_eq!((a.status, a.code()), (StatusCode::FORBIDDEN, "user_required"));
}

#[tokio::test]
async fn amounts_over_the_threshold_need_the_md() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let t = send(
        Method::PUT,
        &w.url("/settings/approvals"),
        Some(&w.admin),
        Some(json!({"md_threshold_minor": 100_000})),
        &[],
    )
    .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let denied = send(
        Method::PUT,
        &w.url("/settings/approvals"),
        Some(&w.finance),
        Some(json!({"md_threshold_minor": null})),
        &[],
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let (id, _) = w.submitted(&w.staff, &[250_000]).await;
    assert_eq!(w.step(&w.hod, &id, "approve", Some("\"2\""), None).await.status, StatusCode::OK);
    let f = w.step(&w.finance, &id, "approve", Some("\"3\""), None).await;
    assert_eq!(f.body["status"].as_str(), Some("finance_approved"));
    // Finance cannot take the MD's level; the MD can.
    assert_eq!(w.step(&w.finance2, &id, "approve", Some("\"4\""), None).await.status, StatusCode::FORBIDDEN);
    let m = w.step(&w.md, &id, "approve", Some("\"4\""), None).await;
    assert_eq!((m.status, m.body["status"].as_str()), (StatusCode::OK, Some("approved")));
    assert_eq!(m.body["approvals"][2]["approver_role"], json!("md"));
}

#[tokio::test]
async fn two_approvers_racing_cannot_both_win() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let (id, _) = w.submitted(&w.staff, &[500]).await;
    assert_eq!(w.step(&w.hod, &id, "approve", Some("\"2\""), None).await.status, StatusCode::OK);
    let (a, b) = tokio::join!(
        w.step(&w.finance, &id, "approve", Some("\"3\""), None),
        w.step(&w.finance2, &id, "approve", Some("\"3\""), None)
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::PRECONDITION_FAILED], "{} / {}", a.body, b.body);
    let mut tx = db.store.tenant_tx(w.acme.id).await.expect("tx");
    let n: i64 = sqlx::query_scalar("select count(*) from document_approvals where document_id = $1")
        .bind(Uuid::parse_str(&id).expect("id"))
        .fetch_one(tx.conn())
        .await
        .expect("count");
    assert_eq!(n, 2, "one HOD and exactly one finance approval");
}

#[tokio::test]
async fn idempotency_keys_return_the_first_result() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let body = voucher(w.acme.department, &[700]);
    let key = [("idempotency-key", "create-7f3a")];
    let first = send(Method::POST, &w.url("/documents"), Some(&w.staff), Some(body.clone()), &key).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = send(Method::POST, &w.url("/documents"), Some(&w.staff), Some(body.clone()), &key).await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (StatusCode::CREATED, Some("true")));
    assert_eq!(again.body["id"], first.body["id"]);
    // Concurrent retries with a fresh key: still one document.
    let key2 = [("idempotency-key", "create-race")];
    let docs = w.url("/documents");
    let (a, b) = tokio::join!(
        send(Method::POST, &docs, Some(&w.staff), Some(body.clone()), &key2),
        send(Method::POST, &docs, Some(&w.staff), Some(body.clone()), &key2)
    );
    assert_eq!((a.status, b.status), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(a.body["id"], b.body["id"]);
    // The same key for a different request is refused, not answered with the wrong document.
    let other =
        send(Method::POST, &w.url("/documents"), Some(&w.staff), Some(voucher(w.acme.department, &[701])), &key).await;
    assert_eq!((other.status, other.code()), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"));
    // Keys are per person: the HOD's identical key is a different key.
    let hod = send(Method::POST, &w.url("/documents"), Some(&w.hod), Some(body.clone()), &key).await;
    assert_eq!(hod.status, StatusCode::CREATED);
    assert_ne!(hod.body["id"], first.body["id"]);
    let mut tx = db.store.tenant_tx(w.acme.id).await.expect("tx");
    let n: i64 = sqlx::query_scalar("select count(*) from documents where title = 'Office chairs'")
        .fetch_one(tx.conn())
        .await
        .expect("count");
    assert_eq!(n, 3, "one per key and person");
    drop(tx);

    // A retried transition returns the first answer instead of a 412.
    let id = first.body["id"].as_str().expect("id");
    let k = [("idempotency-key", "submit-1"), ("if-match", "\"1\"")];
    let s1 = w.transition(&w.staff, id, json!({"transition": "submit"}), &k).await;
    let s2 = w.transition(&w.staff, id, json!({"transition": "submit"}), &k).await;
    assert_eq!((s1.status, s2.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!((s2.body["version"].as_i64(), s2.header("etag")), (Some(2), Some("\"2\"")));
    assert_eq!(audit_count(&db, w.acme.id, "voucher.submitted").await, 1);
    // A failed write does not burn its key: it runs again when retried.
    let bad = [("idempotency-key", "approve-once"), ("if-match", "\"2\"")];
    let own = w.transition(&w.staff, id, json!({"transition": "approve"}), &bad).await;
    assert_eq!(own.status, StatusCode::FORBIDDEN);
    let bad_key =
        send(Method::POST, &w.url("/documents"), Some(&w.staff), Some(body), &[("idempotency-key", "has space")]).await;
    assert_eq!((bad_key.status, bad_key.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_idempotency_key"));

    // Keys are forgotten after 24 hours (the sweeper purges them in every organisation).
    let mut tx = db.store.tenant_tx(w.acme.id).await.expect("tx");
    sqlx::query("update idempotency_keys set created_at = now() - interval '25 hours' where key = 'create-7f3a'")
        .execute(tx.conn())
        .await
        .expect("age");
    tx.commit().await.expect("commit");
    assert_eq!(store::idempotency::purge_expired(&db.store).await.expect("purge"), 2, "the staff's and the HOD's");
    let reused =
        send(Method::POST, &w.url("/documents"), Some(&w.staff), Some(voucher(w.acme.department, &[701])), &key).await;
    assert_eq!(reused.status, StatusCode::CREATED, "{}", reused.body);
}

#[tokio::test]
async fn bulk_approval_is_all_or_nothing_and_stays_in_its_organisation() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let mut ids = Vec::new();
    for amount in [100, 200, 300] {
        ids.push(w.submitted(&w.staff, &[amount]).await.0);
    }
    // The HOD's own document is in the set: separation of duties refuses the whole batch.
    let (own, _) = w.submitted(&w.hod, &[400]).await;
    let batch =
        |list: &[&str]| json!({"documents": list.iter().map(|id| json!({"id": id, "version": 2})).collect::<Vec<_>>()});
    let refused = send(
        Method::POST,
        &w.url("/documents/bulk-approve"),
        Some(&w.hod),
        Some(batch(&[&ids[0], &own, &ids[1]])),
        &[],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(
        (refused.body["error"]["details"]["index"].as_u64(), refused.body["error"]["details"]["id"].as_str()),
        (Some(1), Some(own.as_str()))
    );

    // Another organisation's document in the set: refused whole, as not of this organisation.
    let beta = org(&db, "beta").await;
    let foreign = {
        let mut tx = db.store.tenant_tx(beta.id).await.expect("tx");
        let id: Uuid = sqlx::query_scalar("select id from documents limit 1").fetch_one(tx.conn()).await.expect("doc");
        id.to_string()
    };
    let cross =
        send(Method::POST, &w.url("/documents/bulk-approve"), Some(&w.hod), Some(batch(&[&ids[0], &foreign])), &[])
            .await;
    assert_eq!((cross.status, cross.code()), (StatusCode::UNPROCESSABLE_ENTITY, "batch_refused"), "{}", cross.body);
    // Nothing was applied by either refusal.
    for id in &ids {
        let g = send(Method::GET, &w.url(&format!("/documents/{id}")), Some(&w.hod), None, &[]).await;
        assert_eq!((g.body["status"].as_str(), g.body["version"].as_i64()), (Some("submitted"), Some(2)));
    }
    let dup =
        send(Method::POST, &w.url("/documents/bulk-approve"), Some(&w.hod), Some(batch(&[&ids[0], &ids[0]])), &[])
            .await;
    assert_eq!(
        (dup.status, dup.body["error"]["details"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("documents"))
    );

    let ok = send(
        Method::POST,
        &w.url("/documents/bulk-approve"),
        Some(&w.hod),
        Some(batch(&[&ids[2], &ids[0], &ids[1]])),
        &[],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let approved = ok.body["approved"].as_array().expect("approved");
    assert_eq!(
        approved.iter().map(|d| d["id"].as_str().unwrap_or_default()).collect::<Vec<_>>(),
        [&ids[2], &ids[0], &ids[1]]
    );
    assert!(approved.iter().all(|d| d["status"] == json!("hod_approved")));
    assert_eq!(audit_count(&db, w.acme.id, "voucher.approved").await, 3);
}

#[tokio::test]
async fn inboxes_show_what_waits_for_whom() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let mut submitted = Vec::new();
    for amount in [1_000, 2_000, 3_000, 4_000, 5_000] {
        submitted.push(w.submitted(&w.staff, &[amount]).await.0);
    }
    let (hods_own, _) = w.submitted(&w.hod, &[9_000]).await;
    let list = |token: String, query: &str| {
        let url = w.url(&format!("/documents?{query}"));
        async move { send(Method::GET, &url, Some(&token), None, &[]).await }
    };
    let ids = |a: &Answer| {
        a.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|d| d["id"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };

    // The HOD waits on the five staff vouchers, not on their own; newest first.
    let hod = list(w.hod.clone(), "view=waiting").await;
    assert_eq!(hod.status, StatusCode::OK, "{}", hod.body);
    let mut expected = submitted.clone();
    expected.reverse();
    assert_eq!(ids(&hod), expected);
    assert!(!ids(&hod).contains(&hods_own));
    // Finance waits on nothing yet (plus the fixture's hod-approved voucher).
    let fin = list(w.finance.clone(), "view=waiting").await;
    assert_eq!(ids(&fin).len(), 1, "{}", fin.body);
    // Pagination: 2 + 2 + 1, no repeats, same order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let q = match &cursor {
            Some(c) => format!("view=waiting&limit=2&cursor={c}"),
            None => "view=waiting&limit=2".to_owned(),
        };
        let page = list(w.hod.clone(), &q).await;
        seen.extend(ids(&page));
        cursor = page.body["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, expected);
    // Raised by me, and filters by amount (with currency), status and date.
    assert_eq!(ids(&list(w.staff.clone(), "view=raised").await).len(), 6, "five plus the fixture's");
    let big = list(w.staff.clone(), "view=raised&currency=EUR&min_amount_minor=3000&max_amount_minor=4000").await;
    assert_eq!(ids(&big), [submitted[3].clone(), submitted[2].clone()]);
    let dated = list(w.finance.clone(), "date_from=2026-01-01&date_to=2026-12-31&status=submitted").await;
    assert_eq!(ids(&dated).len(), 6);
    let no_currency = list(w.staff.clone(), "min_amount_minor=5").await;
    assert_eq!(
        (no_currency.status, no_currency.body["error"]["details"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("currency"))
    );
    let bad_limit = list(w.staff.clone(), "limit=1000").await;
    assert_eq!(bad_limit.body["error"]["details"]["field"].as_str(), Some("limit"));
    // A vendor sees nothing; staff see only their own.
    assert!(ids(&list(w.vendor.clone(), "").await).is_empty());
    let staff_all = list(w.staff.clone(), "view=all").await;
    assert!(!ids(&staff_all).contains(&hods_own));

    // After the HOD approves one, it waits for finance and leaves the HOD's inbox.
    assert_eq!(w.step(&w.hod, &submitted[0], "approve", Some("\"2\""), None).await.status, StatusCode::OK);
    assert!(!ids(&list(w.hod.clone(), "view=waiting").await).contains(&submitted[0]));
    assert!(ids(&list(w.finance.clone(), "view=waiting").await).contains(&submitted[0]));
    // A query goes back to the raiser's inbox.
    let q = w.step(&w.finance, &submitted[0], "query", Some("\"3\""), Some("Which cost centre?")).await;
    assert_eq!(q.status, StatusCode::OK, "{}", q.body);
    assert_eq!(ids(&list(w.staff.clone(), "view=waiting").await), [submitted[0].clone()]);
}

#[tokio::test]
async fn closed_periods_refuse_changes_over_http() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let (id, _) = w.submitted(&w.staff, &[800]).await;
    let open = send(
        Method::POST,
        &w.url("/periods"),
        Some(&w.finance),
        Some(json!({"name": "FY26-Q1", "starts_on": "2026-01-01", "ends_on": "2026-03-31"})),
        &[],
    )
    .await;
    assert_eq!(open.status, StatusCode::CREATED, "{}", open.body);
    let pid = open.body["id"].as_str().expect("id").to_owned();
    let staff_open = send(
        Method::POST,
        &w.url("/periods"),
        Some(&w.staff),
        Some(json!({"name": "X", "starts_on": "2027-01-01", "ends_on": "2027-03-31"})),
        &[],
    )
    .await;
    assert_eq!(staff_open.status, StatusCode::FORBIDDEN);
    let overlap = send(
        Method::POST,
        &w.url("/periods"),
        Some(&w.finance),
        Some(json!({"name": "Y", "starts_on": "2026-03-01", "ends_on": "2026-04-30"})),
        &[],
    )
    .await;
    assert_eq!(overlap.status, StatusCode::CONFLICT);
    let close = send(Method::POST, &w.url(&format!("/periods/{pid}/close")), Some(&w.finance), None, &[]).await;
    assert_eq!((close.status, close.body["status"].as_str()), (StatusCode::OK, Some("closed")));

    let a = w.step(&w.hod, &id, "approve", Some("\"2\""), None).await;
    assert_eq!((a.status, a.code()), (StatusCode::CONFLICT, "period_closed"));
    let c = w.create(&w.staff, voucher(w.acme.department, &[1])).await;
    assert_eq!((c.status, c.code()), (StatusCode::CONFLICT, "period_closed"));

    let no_reason =
        send(Method::POST, &w.url(&format!("/periods/{pid}/reopen")), Some(&w.md), Some(json!({})), &[]).await;
    assert_eq!(
        (no_reason.status, no_reason.body["error"]["details"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("reason"))
    );
    let fin_reopen = send(
        Method::POST,
        &w.url(&format!("/periods/{pid}/reopen")),
        Some(&w.finance),
        Some(json!({"reason": "late invoice"})),
        &[],
    )
    .await;
    assert_eq!(fin_reopen.status, StatusCode::FORBIDDEN);
    let reopen = send(
        Method::POST,
        &w.url(&format!("/periods/{pid}/reopen")),
        Some(&w.md),
        Some(json!({"reason": "late invoice from supplier"})),
        &[],
    )
    .await;
    assert_eq!((reopen.status, reopen.body["status"].as_str()), (StatusCode::OK, Some("open")));
    assert_eq!(w.step(&w.hod, &id, "approve", Some("\"2\""), None).await.status, StatusCode::OK);
    let periods = send(Method::GET, &w.url("/periods"), Some(&w.finance), None, &[]).await;
    assert_eq!(periods.body["items"].as_array().map(Vec::len), Some(2), "{}", periods.body);
    assert!(
        send(Method::GET, &w.url("/periods"), Some(&w.staff), None, &[]).await.body["items"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    assert_eq!(audit_count(&db, w.acme.id, "fiscal_period.closed").await, 1);
    assert_eq!(audit_count(&db, w.acme.id, "fiscal_period.reopened").await, 1);
}

#[tokio::test]
async fn other_organisations_documents_are_404() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let beta = org(&db, "beta").await;
    let (foreign, foreign_period) = {
        let mut tx = db.store.tenant_tx(beta.id).await.expect("tx");
        let d: Uuid = sqlx::query_scalar("select id from documents limit 1").fetch_one(tx.conn()).await.expect("doc");
        let p: Uuid =
            sqlx::query_scalar("select id from fiscal_periods limit 1").fetch_one(tx.conn()).await.expect("period");
        (d, p)
    };
    for token in [&w.admin, &w.finance, &w.md] {
        let g = send(Method::GET, &w.url(&format!("/documents/{foreign}")), Some(token), None, &[]).await;
        assert_eq!((g.status, g.code()), (StatusCode::NOT_FOUND, "not_found"));
        let t = w.step(token, &foreign.to_string(), "approve", Some("\"1\""), None).await;
        assert_eq!((t.status, t.code()), (StatusCode::NOT_FOUND, "not_found"));
        let c = send(Method::POST, &w.url(&format!("/periods/{foreign_period}/close")), Some(token), None, &[]).await;
        assert_eq!(c.status, StatusCode::NOT_FOUND);
    }
    // Raising a document in another organisation's department is refused as an unknown department.
    let c = w.create(&w.staff, voucher(beta.department, &[1])).await;
    assert_eq!(
        (c.status, c.body["error"]["details"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("department_id"))
    );
    let mut tx = db.store.tenant_tx(beta.id).await.expect("tx");
    let status: String = sqlx::query_scalar("select status from documents where id = $1")
        .bind(foreign)
        .fetch_one(tx.conn())
        .await
        .expect("status");
    assert_eq!(status, "hod_approved", "untouched");
}
