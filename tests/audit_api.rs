//! The audit API over HTTP, attacked: no key, garbage keys, a staff key, a key without the
//! scope, another organisation's key, a revoked key, an expired one; plus filters, cursors,
//! bad input and the streamed export.

mod common;

use common::{TestApp, org, who};
use identity::Role;
use identity::admin::api_keys;
use reqwest::StatusCode;
use serde_json::Value;
use store::TenantId;
use store::testing::TestDb;

async fn key(db: &TestDb, t: TenantId, role: Role, scopes: &[&str]) -> (uuid::Uuid, String) {
    common::api_key(db, t, &format!("{role} key"), role, scopes).await
}

#[tokio::test]
async fn only_admins_and_auditors_with_the_scope_read_their_own_ledger() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let b = org(&db, "beta").await;
    let app = TestApp::new(&db).await;
    let (_, auditor) = key(&db, a.id, Role::Auditor, &["audit:read"]).await;
    let (_, staff) = key(&db, a.id, Role::Staff, &["audit:read"]).await;
    let (_, unscoped) = key(&db, a.id, Role::Admin, &[]).await;
    let (_, b_admin) = key(&db, b.id, Role::Admin, &["audit:read"]).await;

    let r = app.anonymous().get("/api/v1/audit/events").await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    // Right organisation and key id, wrong secret: refused and recorded in alpha's ledger.
    let last = if auditor.ends_with('0') { "1" } else { "0" };
    let wrong_secret = format!("{}{last}", &auditor[..auditor.len() - 1]);
    for garbage in ["x", "csk_", &auditor.replace('a', "b"), &format!("{auditor}0"), &wrong_secret] {
        let r = app.bearer(garbage).get("/api/v1/audit/events").await;
        assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{garbage}");
    }
    for k in [&staff, &unscoped] {
        let r = app.bearer(k).get("/api/v1/audit/events").await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));
    }

    let r = app.bearer(&auditor).get("/api/v1/audit/events?limit=200").await;
    assert_eq!(r.status, 200, "{r}");
    let events = r.body["items"].as_array().expect("events");
    // Denials were audited, and so was the refused garbage key that named alpha.
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    // (Aggregated: both denials came from one address within a minute — one event, counting.)
    assert!(actions.contains(&"access.denied"), "{actions:?}");
    assert!(actions.contains(&"auth.api_key_rejected"), "{actions:?}");
    // Nothing of beta's: B's memberships never appear in A's ledger.
    let b_ids: Vec<String> = b.memberships.iter().map(ToString::to_string).collect();
    assert!(events.iter().all(|e| !b_ids.iter().any(|id| e["entity_id"].as_str() == Some(id))));

    // B's admin key reads B's ledger only, and A's membership id is simply absent.
    let path = format!("/api/v1/audit/events?entity_id={}", a.memberships[0]);
    let r = app.bearer(&b_admin).get(&path).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn revoked_and_expired_keys_stop_working_at_once() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let app = TestApp::new(&db).await;
    let (id, k) = key(&db, a.id, Role::Auditor, &["audit:read"]).await;
    assert_eq!(app.bearer(&k).get("/api/v1/audit/events").await.status, 200);
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    api_keys::revoke(&mut tx, &who(), &common::operator(authz::Action::ApiKeysManage, a.id), id).await.expect("revoke");
    tx.commit().await.expect("commit");
    assert_eq!(app.bearer(&k).get("/api/v1/audit/events").await.status, 401);

    let (id2, k2) = key(&db, a.id, Role::Auditor, &["audit:read"]).await;
    let mut admin = db.admin_conn().await;
    sqlx::query("update api_keys set expires_at = now() - interval '1 second' where id = $1")
        .bind(id2)
        .execute(&mut admin)
        .await
        .expect("expire");
    assert_eq!(app.bearer(&k2).get("/api/v1/audit/events").await.status, 401);
}

#[tokio::test]
async fn filters_cursors_and_bad_input() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let app = TestApp::new(&db).await;
    let (_, k) = key(&db, a.id, Role::Admin, &["audit:read"]).await;

    let mut seqs = Vec::new();
    let mut path = "/api/v1/audit/events?entity_type=membership&limit=2".to_owned();
    loop {
        let r = app.bearer(&k).get(&path).await;
        assert_eq!(r.status, 200, "{r}");
        seqs.extend(r.body["items"].as_array().expect("events").iter().filter_map(|e| e["seq"].as_i64()));
        match r.body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/audit/events?entity_type=membership&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seqs, vec![5, 4, 3], "newest first, each once");

    for (bad, code) in [
        ("?cursor=garbage", "invalid_field"),
        ("?cursor=v1.-1", "invalid_field"),
        ("?limit=0", "invalid_field"),
        ("?limit=100000", "invalid_field"),
        ("?limit=abc", "invalid_field"),
        ("?limit=201", "invalid_field"),
        ("?from=yesterday", "invalid_field"),
        ("?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "invalid_field"),
        ("?action=DROP%20TABLE", "invalid_field"),
        ("?surprise=1", "invalid_query"),
    ] {
        let r = app.bearer(&k).get(&format!("/api/v1/audit/events{bad}")).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, code), "{bad}: {r}");
    }
}

#[tokio::test]
async fn export_streams_csv_and_ndjson_and_is_itself_audited() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let app = TestApp::new(&db).await;
    let (_, k) = key(&db, a.id, Role::Auditor, &["audit:read"]).await;
    let auditor = app.bearer(&k);
    let r = auditor.get("/api/v1/audit/export?format=csv").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "text/csv; charset=utf-8");
    let text = r.text;
    assert!(text.starts_with("chain,seq,"));
    // 6 fixture events + this test's api_key.created + audit.exported.
    assert_eq!(text.lines().count(), 1 + 8, "{text}");

    let text = auditor.get("/api/v1/audit/export?format=ndjson&action=membership.created").await.text;
    assert_eq!(text.lines().count(), 3);
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("ndjson");
        assert_eq!(v["action"], "membership.created");
    }
    assert_eq!(auditor.get("/api/v1/audit/export?format=xml").await.status, 422);
}
