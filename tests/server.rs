//! The HTTP server: health, readiness, metrics, status, errors, request ids.

mod common;

use common::TestApp;
use reqwest::Method;
use store::testing::TestDb;

#[tokio::test]
async fn health_ready_metrics_and_status_answer() {
    let db = TestDb::new().await;
    let app = TestApp::new(&db).await;
    let c = app.anonymous();

    let r = c.get("/healthz").await;
    assert_eq!(r.status, 200);
    assert!(r.headers.contains_key("x-request-id"), "a request id is assigned");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");

    let r = c.get("/readyz").await.body;
    assert_eq!(r["ready"], true);
    assert_eq!(r["checks"]["schema_version"], r["checks"]["expected_version"]);

    // Open a tenant transaction so the counters move, then read them back.
    let t = store::TenantId::new_random();
    db.store.tenant_tx(t).await.expect("tx").commit().await.expect("commit");
    let m = app.metrics().await;
    let line = m.lines().find(|l| l.starts_with("countersign_tenant_transactions_total ")).expect("counter line");
    assert!(line.split(' ').nth(1).and_then(|v| v.parse::<u64>().ok()).is_some_and(|v| v >= 1), "{line}");
    assert!(m.contains("# TYPE countersign_cross_tenant_refused counter"), "{m}");
    // OpenMetrics from the Prometheus client: the build, the pool, per-route requests by template.
    assert!(m.ends_with("# EOF\n"), "{m}");
    assert!(
        m.contains(&format!("countersign_build_info{{version=\"{}\",git_sha=\"", env!("CARGO_PKG_VERSION"))),
        "{m}"
    );
    assert!(m.lines().any(|l| l.starts_with("countersign_db_pool_max_connections ")), "{m}");
    for series in [
        "countersign_db_pool_waits_total ",
        "countersign_db_pool_timeouts_total ",
        "countersign_audit_events_appended_total ",
        "countersign_audit_verify_passes_total ",
        "countersign_audit_events_verified_total ",
    ] {
        assert!(m.lines().any(|l| l.starts_with(series)), "no {series}in:\n{m}");
    }
    assert!(
        m.lines()
            .any(|l| l.starts_with(r#"countersign_http_requests_total{method="GET",route="/readyz",status="2xx"} "#)),
        "{m}"
    );
    assert!(
        m.lines().any(
            |l| l.starts_with(r#"countersign_http_request_duration_seconds_count{method="GET",route="/healthz"} "#)
        ),
        "{m}"
    );
    // A made-up method or path adds no series of its own.
    let odd = reqwest::Client::new()
        .request(reqwest::Method::from_bytes(b"BREW").expect("method"), app.url("/no/such/path/12345"))
        .send()
        .await
        .expect("send");
    assert!(odd.status().is_client_error());
    let m = app.metrics().await;
    assert!(!m.contains("BREW") && !m.contains("12345"), "{m}");

    let s = c.get("/api/v1/status").await.body;
    assert!(s["isolation"]["tenant_tx_today"].as_u64().is_some_and(|v| v >= 1), "{s}");
    assert!(s["summary"].as_str().is_some_and(|t| t.contains("cross-tenant")));
    assert!(s["commit"].as_str().is_some_and(|c| !c.is_empty()), "{s}");
}

#[tokio::test]
async fn request_id_is_propagated_and_errors_are_json() {
    let db = TestDb::new().await;
    let c = TestApp::new(&db).await.anonymous();
    let r = c.request(Method::GET, "/no/such/thing", None, &[("x-request-id", "trace-me-42")]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.headers["x-request-id"], "trace-me-42");
    assert_eq!(r.body["error"]["code"], "not_found");

    let r = c.delete("/healthz").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let db = TestDb::new().await;
    let c = TestApp::new(&db).await.anonymous();
    db.store.shutdown().await; // closes the pool: the database is unreachable for this server
    assert_eq!(c.get("/readyz").await.status, 503);
    assert_eq!(c.get("/healthz").await.status, 200, "liveness does not depend on the database");
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_server_while_idle_is_replaced() {
    // The pool skips the ping for connections handed out again at once (sqlx pinged them on their
    // way back), but pings one that sat idle: one the server closed meanwhile (a restart, an idle
    // timeout, a terminated backend) is dropped and a new one opened instead of failing a request.
    let db = TestDb::try_with_pool(1).await.expect("database");
    let tenant = store::TenantId::new_random();
    db.store.tenant_tx(tenant).await.expect("tx").commit().await.expect("commit");
    let mut admin = db.admin_conn().await;
    let killed: i64 = sqlx::query_scalar(
        "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity
          where datname = current_database() and usename = 'countersign_app') t",
    )
    .fetch_one(&mut admin)
    .await
    .expect("terminate");
    assert_eq!(killed, 1, "the pool's one connection");
    tokio::time::sleep(std::time::Duration::from_millis(5_500)).await;
    let mut tx = db.store.tenant_tx(tenant).await.expect("a live connection replaces the dead one");
    let one: i32 = sqlx::query_scalar("select 1").fetch_one(tx.conn()).await.expect("query");
    assert_eq!(one, 1);
    tx.commit().await.expect("commit");
}

/// A counter's value in an OpenMetrics text.
fn counter(m: &str, name: &str) -> u64 {
    m.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{m}"))
}

/// The counters an operator watches the ledger and the pool with move with the work done: audit
/// appends (a failed login is one), chain-watch passes and the events they recomputed, and
/// transactions that found the pool exhausted and had to wait.
#[tokio::test]
async fn metrics_count_audit_appends_verification_passes_and_pool_waits() {
    let db = TestDb::new().await;
    let acme = common::org(&db, "acme").await;
    common::with_password(&db, acme.users[0]).await;
    let app = TestApp::new(&db).await;
    let before = app.metrics().await;

    let wrong = app
        .anonymous()
        .post(
            "/api/v1/auth/login",
            serde_json::json!({"organisation": "acme", "email": "user0@acme.example", "password": "not the password"}),
        )
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let w = audit::watch::pass(&db.store, &audit::TrustedKeys::of([common::test_key().public()])).await.expect("pass");
    assert!(w.events > 0);

    // A one-connection store of this process (the counters are per process, as /metrics is):
    // its connection is held, so one more transaction waits for it.
    let admin = db.admin_options();
    let one = store::Store::open_tuned(admin.clone(), admin.username("countersign_app"), None, store::Tuning::new(1))
        .await
        .expect("a one-connection store");
    let held = one.tenant_tx(acme.id).await.expect("tx");
    let waiting = one.clone();
    let waiter = tokio::spawn(async move { waiting.tenant_tx(store::TenantId::new_random()).await.map(drop) });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    held.commit().await.expect("commit");
    waiter.await.expect("join").expect("the waiter got the connection");

    let after = app.metrics().await;
    let moved = |name: &str| counter(&after, name) - counter(&before, name);
    assert!(moved("countersign_audit_events_appended_total") >= 1, "{after}");
    assert_eq!(moved("countersign_audit_verify_passes_total"), 1, "{after}");
    assert!(moved("countersign_audit_events_verified_total") >= w.events, "{after}");
    assert!(moved("countersign_db_pool_waits_total") >= 1, "{after}");
    assert_eq!(moved("countersign_db_pool_timeouts_total"), 0, "{after}");
}
