//! "N tenant transactions today, 0 cross-tenant": the cross-tenant figure counts attempts refused
//! because they crossed tenants (not refused ledger writes), per UTC day, shared by every node
//! on the database and kept across restarts.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{org, sqlstate};
use serde_json::Value;
use store::testing::TestDb;

const PORT: u16 = 18320;

fn start_node(db: &TestDb, dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["serve", "--migrate", "--listen", &format!("127.0.0.1:{PORT}"), "--data-dir"])
        .arg(dir)
        .env("DATABASE_URL", db.url())
        .env_remove("COUNTERSIGN_LISTEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

async fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::get(format!("{base}/readyz")).await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "{base} never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn refused_today(base: &str) -> u64 {
    let s: Value = reqwest::get(format!("{base}/api/v1/status")).await.expect("status").json().await.expect("json");
    assert_eq!(s["isolation"]["shared"], true, "{s}");
    assert_eq!(s["isolation"]["day"], chrono::Utc::now().date_naive().to_string(), "{s}");
    s["isolation"]["cross_tenant_refused_today"].as_u64().expect("figure")
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

#[tokio::test]
async fn cross_tenant_refusals_are_shared_by_nodes_exclude_ledger_refusals_and_survive_restarts() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let b = org(&db, "beta").await;
    let dir = std::env::temp_dir().join(format!("countersign-figure-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    // Node 1: this process (store + router). Node 2: the real binary on the same database.
    let node1 = common::TestApp::new(&db).await.base;
    let node2 = format!("http://127.0.0.1:{PORT}");
    let child = start_node(&db, &dir);
    wait_ready(&node2).await;
    assert_eq!(refused_today(&node1).await, 0);
    assert_eq!(refused_today(&node2).await, 0);

    // A cross-tenant write through node 1: alpha's transaction inserting a row for beta.
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let e = sqlx::query("insert into departments (tenant_id, id, code, name) values ($1, gen_random_uuid(), 'X', 'x')")
        .bind(b.id.as_uuid())
        .execute(tx.conn())
        .await
        .expect_err("refused");
    assert!(matches!(store::StoreError::from(e), store::StoreError::CrossTenant));
    drop(tx);
    assert_eq!(refused_today(&node1).await, 1, "node 1 counts it");
    assert_eq!(refused_today(&node2).await, 1, "node 2 sees node 1's refusal");

    // Refusals that are not cross-tenant do not count: the app role rewriting the ledger
    // (a privilege error), and a tenant transaction creating a global identity.
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let e = sqlx::query("update audit_events set reason = 'rewritten'").execute(tx.conn()).await.expect_err("ledger");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    let _ = store::StoreError::from(e);
    drop(tx);
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let e = sqlx::query("insert into users (id, email, display_name) values (gen_random_uuid(), 'x@y.example', 'X')")
        .execute(tx.conn())
        .await
        .expect_err("user from a tenant tx");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    let _ = store::StoreError::from(e);
    drop(tx);
    assert_eq!(refused_today(&node1).await, 1, "refused ledger and identity writes are not cross-tenant");
    assert_eq!(refused_today(&node2).await, 1);

    // Node 2 restarts: the day's figure is kept.
    stop(child);
    let child = start_node(&db, &dir);
    wait_ready(&node2).await;
    assert_eq!(refused_today(&node2).await, 1, "a restart keeps the day's count");
    let metrics = reqwest::get(format!("{node2}/metrics")).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("countersign_cross_tenant_refused_today 1"), "{metrics}");
    stop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
