//! The HTTP server: health, readiness, metrics, status, errors, request ids.

mod common;

use common::spawn;
use store::testing::TestDb;

#[tokio::test]
async fn health_ready_metrics_and_status_answer() {
    let db = TestDb::new().await;
    let base = spawn(&db).await;
    let c = reqwest::Client::new();

    let r = c.get(format!("{base}/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"), "a request id is assigned");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");

    let r: serde_json::Value =
        c.get(format!("{base}/readyz")).send().await.expect("readyz").json().await.expect("json");
    assert_eq!(r["ready"], true);
    assert_eq!(r["checks"]["schema_version"], r["checks"]["expected_version"]);

    // Open a tenant transaction so the counters move, then read them back.
    let t = store::TenantId::new_random();
    db.store.tenant_tx(t).await.expect("tx").commit().await.expect("commit");
    let m = c.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    let line = m.lines().find(|l| l.starts_with("countersign_tenant_transactions_total ")).expect("counter line");
    assert!(line.split(' ').nth(1).and_then(|v| v.parse::<u64>().ok()).is_some_and(|v| v >= 1), "{line}");
    assert!(m.contains("# TYPE countersign_cross_tenant_refused_total counter"));

    let s: serde_json::Value =
        c.get(format!("{base}/api/v1/status")).send().await.expect("status").json().await.expect("json");
    assert!(s["isolation"]["tenant_tx_today"].as_u64().is_some_and(|v| v >= 1), "{s}");
    assert!(s["summary"].as_str().is_some_and(|t| t.contains("cross-tenant")));
}

#[tokio::test]
async fn request_id_is_propagated_and_errors_are_json() {
    let db = TestDb::new().await;
    let base = spawn(&db).await;
    let c = reqwest::Client::new();
    let r = c.get(format!("{base}/no/such/thing")).header("x-request-id", "trace-me-42").send().await.expect("404");
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");

    let r = c.delete(format!("{base}/healthz")).send().await.expect("405");
    assert_eq!(r.status(), 405);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let db = TestDb::new().await;
    let base = spawn(&db).await;
    db.store.shutdown().await; // closes the pool: the database is unreachable for this server
    let r = reqwest::get(format!("{base}/readyz")).await.expect("readyz");
    assert_eq!(r.status(), 503);
    let r = reqwest::get(format!("{base}/healthz")).await.expect("healthz");
    assert_eq!(r.status(), 200, "liveness does not depend on the database");
}
