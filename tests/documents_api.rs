//! Vouchers and purchase orders over HTTP, attacked: versions (ETag / If-Match), idempotency
//! keys, bulk approval, inbox queries, fiscal periods, refusals audited, other organisations'
//! ids 404, bad input 422 naming the field.

mod common;

use common::{Answer, Client, TestApp, audit_count, member, org};
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
    app: TestApp,
    acme: common::Org,
    admin: Client,
    staff: Client,
    hod: Client,
    finance: Client,
    finance2: Client,
    md: Client,
    vendor: Client,
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
    let app = TestApp::setup(db).roomy().start().await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    // EUR documents up to 100,000.00 need no MD (a currency without a threshold always does).
    let t = admin.put("/api/v1/settings/approvals", json!({"thresholds": {"EUR": 10_000_000}})).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    World {
        admin,
        staff: app.sign_in("acme", "user1@acme.example").await,
        hod: app.sign_in("acme", "user2@acme.example").await,
        finance: app.sign_in("acme", "fin@acme.example").await,
        finance2: app.sign_in("acme", "fin2@acme.example").await,
        md: app.sign_in("acme", "md@acme.example").await,
        vendor: app.sign_in("acme", "vendor@acme.example").await,
        app,
        acme,
    }
}

impl World {
    async fn create(&self, who: &Client, body: Value) -> Answer {
        who.post("/api/v1/documents", body).await
    }

    async fn step(&self, who: &Client, id: &str, t: &str, if_match: Option<&str>, note: Option<&str>) -> Answer {
        let mut body = json!({"transition": t});
        if let Some(n) = note {
            body["note"] = json!(n);
        }
        let headers: Vec<(&str, &str)> = if_match.map(|v| vec![("if-match", v)]).unwrap_or_default();
        self.transition(who, id, body, &headers).await
    }

    /// `POST /documents/{id}/transitions` with this body and these headers, as sent.
    async fn transition(&self, who: &Client, id: &str, body: Value, headers: &[(&str, &str)]) -> Answer {
        who.request(Method::POST, &format!("/api/v1/documents/{id}/transitions"), Some(body), headers).await
    }

    /// Creates and submits a voucher as `who`; returns (id, etag after submit).
    async fn submitted(&self, who: &Client, amounts: &[i64]) -> (String, String) {
        let c = self.create(who, voucher(self.acme.department, amounts)).await;
        assert_eq!(c.status, StatusCode::CREATED, "{}", c.body);
        let id = c.body["id"].as_str().expect("id").to_owned();
        let s = self.step(who, &id, "submit", Some("\"1\""), None).await;
        assert_eq!(s.status, StatusCode::OK, "{}", s.body);
        (id, s.header("etag").expect("etag").to_owned())
    }

    /// `POST /periods` as finance: a period named `name` from `starts_on` to `ends_on`.
    async fn open_period(&self, who: &Client, name: &str, starts_on: &str, ends_on: &str) -> Answer {
        who.post("/api/v1/periods", json!({"name": name, "starts_on": starts_on, "ends_on": ends_on})).await
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

    // HOD, then finance: approved (below the EUR threshold). The HOD may not also approve as finance.
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
    let g = w.finance2.get(&format!("/api/v1/documents/{id}")).await;
    assert_eq!((g.status, g.header("etag")), (StatusCode::OK, Some("\"5\"")));
    let v = w.vendor.get(&format!("/api/v1/documents/{id}")).await;
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
    let key = w.admin.post("/api/v1/api-keys", json!({"name": "bot", "role": "admin", "scopes": []})).await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.body);
    let secret = key.body["secret"].as_str().expect("secret").to_owned();
    let a = w.create(&w.app.bearer(&secret), voucher(dept, &[100])).await;
    assert_eq!((a.status, a.code()), (StatusCode::FORBIDDEN, "user_required"));
}

#[tokio::test]
async fn amounts_over_the_threshold_need_the_md() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let t = w.admin.put("/api/v1/settings/approvals", json!({"thresholds": {"EUR": 100_000}})).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let denied = w.finance.put("/api/v1/settings/approvals", json!({"thresholds": {}})).await;
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
    let first = w.staff.request(Method::POST, "/api/v1/documents", Some(body.clone()), &key).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = w.staff.request(Method::POST, "/api/v1/documents", Some(body.clone()), &key).await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (StatusCode::CREATED, Some("true")));
    assert_eq!(again.body["id"], first.body["id"]);
    // The whole first answer, Location included (a client that retried still learns where it is).
    let location = format!("/api/v1/documents/{}", first.body["id"].as_str().expect("id"));
    assert_eq!(first.header("location"), Some(location.as_str()));
    assert_eq!(again.header("location"), Some(location.as_str()), "the replay keeps Location");
    assert_eq!(again.header("etag"), first.header("etag"));
    // Concurrent retries with a fresh key: still one document.
    let key2 = [("idempotency-key", "create-race")];
    let docs = "/api/v1/documents";
    let (a, b) = tokio::join!(
        w.staff.request(Method::POST, docs, Some(body.clone()), &key2),
        w.staff.request(Method::POST, docs, Some(body.clone()), &key2)
    );
    assert_eq!((a.status, b.status), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(a.body["id"], b.body["id"]);
    // The same key for a different request is refused, not answered with the wrong document.
    let other =
        w.staff.request(Method::POST, "/api/v1/documents", Some(voucher(w.acme.department, &[701])), &key).await;
    assert_eq!((other.status, other.code()), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"));
    // Keys are per person: the HOD's identical key is a different key.
    let hod = w.hod.request(Method::POST, "/api/v1/documents", Some(body.clone()), &key).await;
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
        w.staff.request(Method::POST, "/api/v1/documents", Some(body), &[("idempotency-key", "has space")]).await;
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
        w.staff.request(Method::POST, "/api/v1/documents", Some(voucher(w.acme.department, &[701])), &key).await;
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
    let refused = w.hod.post("/api/v1/documents/bulk-approve", batch(&[&ids[0], &own, &ids[1]])).await;
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
    let cross = w.hod.post("/api/v1/documents/bulk-approve", batch(&[&ids[0], &foreign])).await;
    assert_eq!((cross.status, cross.code()), (StatusCode::UNPROCESSABLE_ENTITY, "batch_refused"), "{}", cross.body);
    // Nothing was applied by either refusal.
    for id in &ids {
        let g = w.hod.get(&format!("/api/v1/documents/{id}")).await;
        assert_eq!((g.body["status"].as_str(), g.body["version"].as_i64()), (Some("submitted"), Some(2)));
    }
    let dup = w.hod.post("/api/v1/documents/bulk-approve", batch(&[&ids[0], &ids[0]])).await;
    assert_eq!(
        (dup.status, dup.body["error"]["details"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("documents"))
    );

    let ok = w.hod.post("/api/v1/documents/bulk-approve", batch(&[&ids[2], &ids[0], &ids[1]])).await;
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
    let list = |who: &Client, query: &str| {
        let (who, path) = (who.clone(), format!("/api/v1/documents?{query}"));
        async move { who.get(&path).await }
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
    let hod = list(&w.hod, "view=waiting").await;
    assert_eq!(hod.status, StatusCode::OK, "{}", hod.body);
    let mut expected = submitted.clone();
    expected.reverse();
    assert_eq!(ids(&hod), expected);
    assert!(!ids(&hod).contains(&hods_own));
    // Finance waits on nothing yet (plus the fixture's hod-approved voucher).
    let fin = list(&w.finance, "view=waiting").await;
    assert_eq!(ids(&fin).len(), 1, "{}", fin.body);
    // Pagination: 2 + 2 + 1, no repeats, same order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let q = match &cursor {
            Some(c) => format!("view=waiting&limit=2&cursor={c}"),
            None => "view=waiting&limit=2".to_owned(),
        };
        let page = list(&w.hod, &q).await;
        seen.extend(ids(&page));
        cursor = page.body["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, expected);
    // Raised by me, and filters by amount (with currency), status and date.
    assert_eq!(ids(&list(&w.staff, "view=raised").await).len(), 6, "five plus the fixture's");
    let big = list(&w.staff, "view=raised&currency=EUR&min_amount_minor=3000&max_amount_minor=4000").await;
    assert_eq!(ids(&big), [submitted[3].clone(), submitted[2].clone()]);
    let dated = list(&w.finance, "date_from=2026-01-01&date_to=2026-12-31&status=submitted").await;
    assert_eq!(ids(&dated).len(), 6);
    let no_currency = list(&w.staff, "min_amount_minor=5").await;
    assert_eq!(
        (no_currency.status, no_currency.body["error"]["details"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("currency"))
    );
    let bad_limit = list(&w.staff, "limit=1000").await;
    assert_eq!(bad_limit.body["error"]["details"]["field"].as_str(), Some("limit"));
    // A vendor sees nothing; staff see only their own.
    assert!(ids(&list(&w.vendor, "").await).is_empty());
    let staff_all = list(&w.staff, "view=all").await;
    assert!(!ids(&staff_all).contains(&hods_own));

    // After the HOD approves one, it waits for finance and leaves the HOD's inbox.
    assert_eq!(w.step(&w.hod, &submitted[0], "approve", Some("\"2\""), None).await.status, StatusCode::OK);
    assert!(!ids(&list(&w.hod, "view=waiting").await).contains(&submitted[0]));
    assert!(ids(&list(&w.finance, "view=waiting").await).contains(&submitted[0]));
    // A query goes back to the raiser's inbox.
    let q = w.step(&w.finance, &submitted[0], "query", Some("\"3\""), Some("Which cost centre?")).await;
    assert_eq!(q.status, StatusCode::OK, "{}", q.body);
    assert_eq!(ids(&list(&w.staff, "view=waiting").await), [submitted[0].clone()]);
}

#[tokio::test]
async fn closed_periods_refuse_changes_over_http() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let (id, _) = w.submitted(&w.staff, &[800]).await;
    let open = w.open_period(&w.finance, "FY26-Q1", "2026-01-01", "2026-03-31").await;
    assert_eq!(open.status, StatusCode::CREATED, "{}", open.body);
    let pid = open.body["id"].as_str().expect("id").to_owned();
    let staff_open = w.open_period(&w.staff, "X", "2027-01-01", "2027-03-31").await;
    assert_eq!(staff_open.status, StatusCode::FORBIDDEN);
    let overlap = w.open_period(&w.finance, "Y", "2026-03-01", "2026-04-30").await;
    assert_eq!(overlap.status, StatusCode::CONFLICT);
    let close = w.finance.post(&format!("/api/v1/periods/{pid}/close"), ()).await;
    assert_eq!((close.status, close.body["status"].as_str()), (StatusCode::OK, Some("closed")));

    let a = w.step(&w.hod, &id, "approve", Some("\"2\""), None).await;
    assert_eq!((a.status, a.code()), (StatusCode::CONFLICT, "period_closed"));
    let c = w.create(&w.staff, voucher(w.acme.department, &[1])).await;
    assert_eq!((c.status, c.code()), (StatusCode::CONFLICT, "period_closed"));

    let no_reason = w.md.post(&format!("/api/v1/periods/{pid}/reopen"), json!({})).await;
    assert_eq!(
        (no_reason.status, no_reason.body["error"]["details"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("reason"))
    );
    let fin_reopen = w.finance.post(&format!("/api/v1/periods/{pid}/reopen"), json!({"reason": "late invoice"})).await;
    assert_eq!(fin_reopen.status, StatusCode::FORBIDDEN);
    let reopen =
        w.md.post(&format!("/api/v1/periods/{pid}/reopen"), json!({"reason": "late invoice from supplier"})).await;
    assert_eq!((reopen.status, reopen.body["status"].as_str()), (StatusCode::OK, Some("open")));
    assert_eq!(w.step(&w.hod, &id, "approve", Some("\"2\""), None).await.status, StatusCode::OK);
    let periods = w.finance.get("/api/v1/periods").await;
    assert_eq!(periods.body["items"].as_array().map(Vec::len), Some(2), "{}", periods.body);
    assert!(w.staff.get("/api/v1/periods").await.body["items"].as_array().is_some_and(Vec::is_empty));
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
        let g = token.get(&format!("/api/v1/documents/{foreign}")).await;
        assert_eq!((g.status, g.code()), (StatusCode::NOT_FOUND, "not_found"));
        let t = w.step(token, &foreign.to_string(), "approve", Some("\"1\""), None).await;
        assert_eq!((t.status, t.code()), (StatusCode::NOT_FOUND, "not_found"));
        let c = token.post(&format!("/api/v1/periods/{foreign_period}/close"), ()).await;
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

#[tokio::test]
async fn approval_thresholds_are_per_currency_and_read_back() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let url = "/api/v1/settings/approvals";
    let t = w.admin.put(url, json!({"thresholds": {"EUR": 1_000_000, "GBP": 850_000}})).await;
    assert_eq!((t.status, &t.body), (StatusCode::OK, &json!({"thresholds": {"EUR": 1_000_000, "GBP": 850_000}})));
    // Read back (it was 405): the same guard as writing it.
    let g = w.admin.get(url).await;
    assert_eq!((g.status, &g.body), (StatusCode::OK, &json!({"thresholds": {"EUR": 1_000_000, "GBP": 850_000}})));
    for token in [&w.finance, &w.staff, &w.md] {
        assert_eq!(token.get(url).await.status, StatusCode::FORBIDDEN);
    }
    // Not a currency, out of range, or the old currency-less shape: 422 naming the field.
    for (body, field) in [
        (json!({"thresholds": {"EURO": 1}}), "thresholds"),
        (json!({"thresholds": {"EUR": -5}}), "thresholds"),
        (json!({"thresholds": {"EUR": 1_000_000_000_000_001_i64}}), "thresholds"),
    ] {
        let r = w.admin.put(url, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", r.body);
        assert_eq!(r.body["error"]["details"]["field"].as_str(), Some(field), "{body}: {}", r.body);
    }
    let old = w.admin.put(url, json!({"md_threshold_minor": 100_000})).await;
    assert_eq!(old.status, StatusCode::UNPROCESSABLE_ENTITY, "the currency-less shape is gone: {}", old.body);
    let g = w.admin.get(url).await;
    assert_eq!(g.body["thresholds"]["GBP"], json!(850_000), "refused writes changed nothing");
    // £9,000 under a €10,000 threshold... GBP has its own now: 900000 > 850000, so the MD.
    let mut gbp = voucher(w.acme.department, &[900_000]);
    gbp["currency"] = json!("GBP");
    let c = w.create(&w.staff, gbp).await;
    let id = c.body["id"].as_str().expect("id").to_owned();
    w.step(&w.staff, &id, "submit", Some("\"1\""), None).await;
    w.step(&w.hod, &id, "approve", Some("\"2\""), None).await;
    let f = w.step(&w.finance, &id, "approve", Some("\"3\""), None).await;
    assert_eq!(f.body["status"].as_str(), Some("finance_approved"));
    assert_eq!(audit_count(&db, w.acme.id, "tenant.md_thresholds_changed").await, 2, "world + this test");
}

#[tokio::test]
async fn periods_are_read_by_id_by_those_who_read_periods() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let open = w.open_period(&w.finance, "FY26-Q1", "2026-01-01", "2026-03-31").await;
    let pid = open.body["id"].as_str().expect("id").to_owned();
    let g = w.md.get(&format!("/api/v1/periods/{pid}")).await;
    assert_eq!((g.status, &g.body), (StatusCode::OK, &open.body));
    for token in [&w.staff, &w.vendor] {
        let r = token.get(&format!("/api/v1/periods/{pid}")).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    }
    let unknown = w.md.get(&format!("/api/v1/periods/{}", Uuid::now_v7())).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    // Another organisation's period id is 404 too.
    let b = org(&db, "bright").await;
    common::with_password(&db, b.users[0]).await;
    let bea = w.app.sign_in("bright", "user0@bright.example").await;
    let r = bea.get(&format!("/api/v1/periods/{pid}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

async fn patch(who: &Client, id: &str, body: Value, if_match: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = if_match.map(|v| vec![("if-match", v)]).unwrap_or_default();
    who.request(Method::PATCH, &format!("/api/v1/documents/{id}"), Some(body), &headers).await
}

#[tokio::test]
async fn only_the_raiser_edits_drafts_and_queried_documents_and_the_delta_is_audited() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let c = w.create(&w.staff, voucher(w.acme.department, &[12_000])).await;
    let id = c.body["id"].as_str().expect("id").to_owned();
    let lines =
        json!([{"description": "desk", "amount_minor": 40_000}, {"description": "lamp", "amount_minor": 2_500}]);
    let attachments = json!([{"name": "invoice.pdf", "reference": "s3://invoices/i-7.pdf"}]);
    let body = json!({"title": "Desks and lamps", "lines": lines, "attachments": attachments});

    // Without a version: 428; stale: 412 with the current ETag.
    assert_eq!(patch(&w.staff, &id, body.clone(), None).await.status, StatusCode::PRECONDITION_REQUIRED);
    let stale = patch(&w.staff, &id, body.clone(), Some("\"7\"")).await;
    assert_eq!((stale.status, stale.header("etag")), (StatusCode::PRECONDITION_FAILED, Some("\"1\"")));
    // Not the raiser: the HOD who reads it, the owner-level admin, finance: 403, audited.
    let denied_before = audit_count(&db, w.acme.id, "access.denied").await;
    for token in [&w.hod, &w.admin, &w.finance] {
        let r = patch(token, &id, body.clone(), Some("\"1\"")).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"), "{}", r.body);
    }
    assert!(audit_count(&db, w.acme.id, "access.denied").await > denied_before, "refusals audited");
    // Bad content: 422 naming the field, as on create.
    let r = patch(&w.staff, &id, json!({"lines": [{"description": "x", "amount_minor": 0}]}), Some("\"1\"")).await;
    assert_eq!(r.body["error"]["details"]["field"].as_str(), Some("lines.amount_minor"), "{}", r.body);
    let r = patch(&w.staff, &id, json!({"version": 1}), None).await;
    assert_eq!(r.body["error"]["details"]["field"].as_str(), Some("body"), "{}", r.body);

    // The raiser edits the draft: new total, lines and attachments; version and ETag move on.
    let e = patch(&w.staff, &id, body.clone(), Some("\"1\"")).await;
    assert_eq!((e.status, e.header("etag")), (StatusCode::OK, Some("\"2\"")), "{}", e.body);
    assert_eq!((e.body["title"].as_str(), e.body["amount_minor"].as_i64()), (Some("Desks and lamps"), Some(42_500)));
    assert_eq!(e.body["lines"][1]["description"], json!("lamp"));
    let names: Vec<&str> =
        e.body["attachments"].as_array().expect("a").iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names, ["invoice.pdf"], "quote.pdf withdrawn, invoice.pdf added");
    let g = w.staff.get(&format!("/api/v1/documents/{id}")).await;
    assert_eq!(g.body, e.body);
    // The ledger has the delta: before and after of what changed.
    let mut admin = db.admin_conn().await;
    let changes: String = sqlx::query_scalar(
        "select changes from audit_events where tenant_id = $1 and action = 'voucher.edited' and entity_id = $2",
    )
    .bind(w.acme.id.as_uuid())
    .bind(&id)
    .fetch_one(&mut admin)
    .await
    .expect("edited event");
    let changes: Value = serde_json::from_str(&changes).expect("json");
    assert_eq!(changes["title"], json!({"from": "Office chairs", "to": "Desks and lamps"}));
    assert_eq!(changes["amount_minor"], json!({"from": 12_000, "to": 42_500}));
    assert_eq!(changes["lines"]["from"], json!([["chair", 12_000]]));
    assert_eq!(changes["attachments"]["to"], json!([["invoice.pdf", "s3://invoices/i-7.pdf"]]));

    // Submitted: not editable (409), even by the raiser.
    let s = w.step(&w.staff, &id, "submit", Some("\"2\""), None).await;
    assert_eq!(s.status, StatusCode::OK);
    let r = patch(&w.staff, &id, json!({"title": "Sneaky"}), Some("\"3\"")).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "not_editable"), "{}", r.body);
    // Queried after the HOD approved: editable; changing the money restarts the approvals, so
    // the answer goes back to the HOD, whose approval was for another amount.
    let h = w.step(&w.hod, &id, "approve", Some("\"3\""), None).await;
    assert_eq!(h.status, StatusCode::OK);
    let q = w.step(&w.finance, &id, "query", Some("\"4\""), Some("Why two lamps?")).await;
    assert_eq!(q.body["status"].as_str(), Some("queried"));
    let title_only = patch(&w.staff, &id, json!({"title": "Desks and a lamp"}), Some("\"5\"")).await;
    assert_eq!(
        (title_only.body["round"].as_i64(), title_only.body["approvals"].as_array().map(Vec::len)),
        (Some(1), Some(1))
    );
    let money =
        patch(&w.staff, &id, json!({"lines": [{"description": "desk", "amount_minor": 40_000}]}), Some("\"6\"")).await;
    assert_eq!(money.status, StatusCode::OK, "{}", money.body);
    assert_eq!((money.body["round"].as_i64(), money.body["approvals"].as_array().map(Vec::len)), (Some(2), Some(0)));
    let a = w.step(&w.staff, &id, "answer", Some("\"7\""), Some("One lamp only now")).await;
    assert_eq!(a.body["status"].as_str(), Some("submitted"), "{}", a.body);
}

#[tokio::test]
async fn the_raiser_sees_the_question_a_query_asked_and_their_answer() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let (id, _) = w.submitted(&w.staff, &[5_000]).await;
    let q = w.step(&w.hod, &id, "query", Some("\"2\""), Some("Which supplier is this from?")).await;
    assert_eq!(q.status, StatusCode::OK, "{}", q.body);
    let g = w.staff.get(&format!("/api/v1/documents/{id}")).await;
    let d = &g.body["discussion"];
    assert_eq!(d.as_array().map(Vec::len), Some(1), "{}", g.body);
    assert_eq!((d[0]["kind"].as_str(), d[0]["role"].as_str()), (Some("query"), Some("hod")));
    assert_eq!(d[0]["text"], json!("Which supplier is this from?"));
    assert_eq!(d[0]["who"], json!(w.acme.users[2]));
    assert!(d[0]["at"].as_str().is_some_and(|t| t.starts_with("20")));
    let a = w.step(&w.staff, &id, "answer", Some("\"3\""), Some("Chairs Ltd, quote attached")).await;
    let d = &a.body["discussion"];
    assert_eq!(d.as_array().map(Vec::len), Some(2));
    assert_eq!((d[1]["kind"].as_str(), d[1]["text"].as_str()), (Some("answer"), Some("Chairs Ltd, quote attached")));
    let r = w.step(&w.hod, &id, "reject", Some("\"4\""), Some("Over budget this quarter")).await;
    assert_eq!(r.body["discussion"][2]["kind"], json!("note"));
    // A note past 2000 characters is refused naming it (not a 5xx from the database).
    let (other, _) = w.submitted(&w.staff, &[5_000]).await;
    let long = "x".repeat(2001);
    let l = w.step(&w.hod, &other, "approve", Some("\"2\""), Some(&long)).await;
    assert_eq!(
        (l.status, l.body["error"]["details"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("note"))
    );
}

#[tokio::test]
async fn audit_says_document_and_old_voucher_events_still_match_either_name() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let (id, _) = w.submitted(&w.staff, &[5_000]).await;
    // An event written before the rename (entity_type `voucher`), as the ledger holds them.
    let old = Uuid::now_v7().to_string();
    let mut tx = db.store.tenant_tx(w.acme.id).await.expect("tx");
    sqlx::query(
        "select o_seq from countersign_audit_append($1, 'user', $2, 'staff', 'voucher.created', 'voucher', $3, '{}',
                                                    null, null, null, null)",
    )
    .bind(w.acme.id.as_uuid())
    .bind(w.acme.users[1].to_string())
    .bind(&old)
    .execute(tx.conn())
    .await
    .expect("old event");
    tx.commit().await.expect("commit");
    let mut admin = db.admin_conn().await;
    let kinds: Vec<String> =
        sqlx::query_scalar("select distinct entity_type from audit_events where tenant_id = $1 and entity_id = $2")
            .bind(w.acme.id.as_uuid())
            .bind(&id)
            .fetch_all(&mut admin)
            .await
            .expect("kinds");
    assert_eq!(kinds, ["document"]);
    for filter in ["document", "voucher"] {
        let r = w.admin.get(&format!("/api/v1/audit/events?entity_type={filter}&action=voucher.created")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let mut ids: Vec<&str> =
            r.body["items"].as_array().expect("items").iter().filter_map(|e| e["entity_id"].as_str()).collect();
        ids.sort_unstable();
        let mut want = vec![id.as_str(), old.as_str()];
        want.sort_unstable();
        assert_eq!(ids, want, "{filter}");
    }
    let po = w.admin.get("/api/v1/audit/events?entity_type=purchase_order").await;
    assert_eq!(po.body["items"].as_array().map(Vec::len), Some(0), "{}", po.body);
    // Old and new events form one chain that still verifies.
    let keys = audit::TrustedKeys::of([common::test_key().public()]);
    let report =
        audit::verify::verify_tenant(&db.store, w.acme.id, &keys, audit::verify::Options::default(), &mut |_, _| {})
            .await
            .expect("verify runs");
    assert!(report.ok(), "{report:?}");
}

#[tokio::test]
async fn a_document_exports_alone_as_a_named_attachment() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let (id, _) = w.submitted(&w.staff, &[5_000]).await;
    w.submitted(&w.staff, &[6_000]).await;
    let r = w.admin.get(&format!("/api/v1/audit/export?format=csv&entity_id={id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    let disposition = r.header("content-disposition").unwrap_or_default().to_owned();
    assert!(disposition.starts_with("attachment; filename=\"audit-"), "{disposition}");
    assert!(disposition.contains(&id) && disposition.ends_with(".csv\""), "{disposition}");
    let csv = r.text;
    let rows: Vec<&str> = csv.lines().skip(1).filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 2, "created and submitted, nothing of the other document: {csv}");
    assert!(rows.iter().all(|l| l.contains(&id)), "{csv}");
    let all = w.admin.get("/api/v1/audit/export").await;
    let d = all.header("content-disposition").unwrap_or_default();
    assert!(d.contains("-all-") && d.ends_with(".ndjson\""), "{d}");
    // An id that could break out of the query (or the header) is refused before anything starts.
    // (Control characters are refused by the edge, for every query parameter, as invalid_text.)
    for (bad, code) in
        [("x'%20or%20'1'='1", "invalid_field"), ("a%22b", "invalid_field"), ("%0d%0aSet-Cookie:x", "invalid_text")]
    {
        let r = w.admin.get(&format!("/api/v1/audit/export?entity_id={bad}")).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, code), "{bad}: {}", r.body);
        assert!(r.body["error"]["message"].as_str().is_some_and(|m| m.starts_with("entity_id")), "{bad}: {}", r.body);
    }
}

#[tokio::test]
async fn zero_amounts_and_year_one_dates_are_refused_naming_the_field() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let dept = w.acme.department;
    let mut zero = voucher(dept, &[0]);
    let r = w.create(&w.staff, zero.clone()).await;
    assert_eq!(
        (r.status, r.body["error"]["details"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("lines.amount_minor"))
    );
    zero["lines"] = json!([{"description": "a", "amount_minor": 5}, {"description": "b", "amount_minor": 0}]);
    assert_eq!(w.create(&w.staff, zero).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    for day in ["0001-01-01", "1999-12-31", "2100-01-01", "9999-12-31"] {
        let mut v = voucher(dept, &[100]);
        v["document_date"] = json!(day);
        let r = w.create(&w.staff, v).await;
        assert_eq!(
            (r.status, r.body["error"]["details"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("document_date")),
            "{day}: {}",
            r.body
        );
        let p = w.open_period(&w.finance, "odd", day, "2026-12-31").await;
        assert_eq!(p.body["error"]["details"]["field"].as_str(), Some("starts_on"), "{day}: {}", p.body);
    }
    for day in ["2000-01-01", "2099-12-31"] {
        let mut v = voucher(dept, &[100]);
        v["document_date"] = json!(day);
        assert_eq!(w.create(&w.staff, v).await.status, StatusCode::CREATED, "{day}");
    }
    let mut admin = db.admin_conn().await;
    let n: i64 = sqlx::query_scalar("select count(*) from documents where title = 'Office chairs'")
        .fetch_one(&mut admin)
        .await
        .expect("count");
    assert_eq!(n, 2, "only the two dates inside the window were raised");
}
