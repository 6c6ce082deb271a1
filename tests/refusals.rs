//! Flooding the ledger, attacked: forged API keys (tenant ids are not secret) and an
//! authenticated caller hammering a route they may not use. Failed credentials spend a
//! per-address budget before any database work; refusal events are aggregated per
//! organisation, kind and address per minute, and carry the count.

mod common;

use common::{TestApp, org, roomy_limits, with_password};
use identity::Role;
use reqwest::StatusCode;
use serde_json::json;
use store::TenantId;
use store::testing::TestDb;
use web::limits::Limits;

/// A server behind a trusted proxy on loopback (the test chooses the client address); the state
/// is kept so the test can close the aggregation windows (`flush_all`) instead of waiting.
async fn server(db: &TestDb) -> TestApp {
    let limits = Limits {
        // The default's 20 (a minute), refilled slowly enough that the counts are exact.
        credential_failures: "20/1h".parse().expect("limit"),
        ..roomy_limits()
    };
    TestApp::setup(db).behind_proxy().limits(limits).start().await
}

/// The `refusals` (and `rate_limited`) counts of every `action` event of the organisation.
async fn counted(db: &TestDb, tenant: TenantId, action: &str) -> Vec<(i64, i64)> {
    let mut admin = db.admin_conn().await;
    sqlx::query_as(
        "select (changes::jsonb -> 'refusals' ->> 'to')::bigint, coalesce((changes::jsonb -> 'rate_limited' ->> 'to')::bigint, 0)
           from audit_events where tenant_id = $1 and action = $2 order by seq",
    )
    .bind(tenant.as_uuid())
    .bind(action)
    .fetch_all(&mut admin)
    .await
    .expect("events")
}

fn forged(tenant: TenantId, i: usize) -> String {
    format!("csk_{}_{:032x}_{}", tenant.as_uuid().simple(), i + 1, "0".repeat(64))
}

async fn valid_key(db: &TestDb, t: TenantId) -> String {
    common::api_key(db, t, "auditor", Role::Auditor, &["audit:read"]).await.1
}

#[tokio::test]
async fn two_hundred_forged_keys_leave_at_most_two_events_and_the_count() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let good = valid_key(&db, a.id).await;
    let app = server(&db).await;
    let attacker = "198.51.100.50";
    let mut statuses = Vec::new();
    for i in 0..200 {
        let r = app.bearer(&forged(a.id, i)).from(attacker).get("/api/v1/audit/events").await;
        let status = r.status;
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = r.headers["retry-after"].to_str().expect("ascii").parse().expect("seconds");
            assert!((1..=180).contains(&retry), "one attempt refills every 3 minutes: {retry}");
            assert_eq!(r.body["error"]["code"], "rate_limited");
        }
        statuses.push(status);
    }
    let rejected = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(rejected + limited, 200, "{statuses:?}");
    assert_eq!(rejected, 20, "the budget is 20: only they reached the check");
    assert!(statuses[..20].iter().all(|s| *s == StatusCode::UNAUTHORIZED));

    // Past the budget nothing reaches the database: no transaction is even opened.
    let before = store::metrics::global().snapshot();
    for i in 200..250 {
        assert_eq!(
            app.bearer(&forged(a.id, i)).from(attacker).get("/api/v1/audit/events").await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    let after = store::metrics::global().snapshot();
    assert_eq!(
        (after.tenant_tx_total, after.global_tx_total),
        (before.tenant_tx_total, before.global_tx_total),
        "a rate-limited request opened a transaction"
    );
    // Even the right key is refused from that address for now (no validity oracle past the budget).
    assert_eq!(
        app.bearer(&good).from(attacker).get("/api/v1/audit/events").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // So far one event: the first refusal, on record at once.
    assert_eq!(counted(&db, a.id, "auth.api_key_rejected").await, vec![(1, 0)]);
    // The window closes: one more event carries everything since.
    app.state.refusals.flush_all(&app.state.store).await;
    let events = counted(&db, a.id, "auth.api_key_rejected").await;
    assert!(events.len() <= 2, "{events:?}");
    let total: i64 = events.iter().map(|e| e.0).sum();
    let total_limited: i64 = events.iter().map(|e| e.1).sum();
    assert_eq!(total, 251, "every refusal is counted: {events:?}");
    assert_eq!(total_limited, i64::try_from(limited + 51).expect("count"), "{events:?}");
    let metrics = app.metrics().await;
    assert!(metrics.contains("countersign_credential_rate_limited_total "), "{metrics}");

    // Another address is unaffected: its forged key is a plain 401, its real key works.
    let other = "198.51.100.51";
    assert_eq!(
        app.bearer(&forged(a.id, 999)).from(other).get("/api/v1/audit/events").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.bearer(&good).from(other).get("/api/v1/audit/events").await.status, StatusCode::OK);
    // Good credentials give their reservation back: a busy client never runs out.
    for _ in 0..40 {
        assert_eq!(app.bearer(&good).from("198.51.100.52").get("/api/v1/audit/events").await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn forged_access_and_refresh_tokens_spend_the_same_budget() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let app = server(&db).await;
    let from = "198.51.100.60";
    let forged_jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.AAAA";
    let mut statuses = Vec::new();
    for i in 0..15 {
        statuses.push(app.bearer(forged_jwt).from(from).get("/api/v1/me").await.status);
        let token = format!("csr_{}_{:032x}_{}", a.id.as_uuid().simple(), i + 1, "0".repeat(64));
        let r = app.anonymous().from(from).post("/api/v1/auth/refresh", json!({"refresh_token": token})).await;
        statuses.push(r.status);
    }
    let first_limited = statuses.iter().position(|s| *s == StatusCode::TOO_MANY_REQUESTS).expect("limited");
    assert_eq!(first_limited, 20, "{statuses:?}");
    assert!(statuses[first_limited..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
}

#[tokio::test]
async fn a_staff_member_hammering_an_admin_route_leaves_at_most_two_access_denied_events_with_the_count() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[1]).await;
    let app = server(&db).await;
    let from = "198.51.100.70";
    let staff = app.anonymous().from(from).sign_in("acme", "user1@acme.example").await;
    for _ in 0..200 {
        assert_eq!(staff.get("/api/v1/api-keys").await.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(counted(&db, a.id, "access.denied").await, vec![(1, 0)], "the first refusal is on record at once");
    app.state.refusals.flush_all(&app.state.store).await;
    let events = counted(&db, a.id, "access.denied").await;
    assert!(events.len() <= 2, "{events:?}");
    assert_eq!(events.iter().map(|e| e.0).sum::<i64>(), 200, "{events:?}");
    // The events still say who and what.
    let mut admin = db.admin_conn().await;
    let (actor, entity): (String, String) = sqlx::query_as(
        "select actor_id, entity_id from audit_events where tenant_id = $1 and action = 'access.denied' order by seq desc limit 1",
    )
    .bind(a.id.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("event");
    assert_eq!((actor, entity), (a.users[1].to_string(), "GET /api/v1/api-keys".to_owned()));
}
