//! The process secret: a lease the live process renews, so a process killed with SIGKILL leaves
//! no secret that outlives it; and only a process holding it may insert platform checkpoints.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::sqlstate;
use store::testing::TestDb;
use store::{Store, StoreError, migrate};

/// A second "process" on the test's database, with a short lease.
async fn store_with_lease(db: &TestDb, lease: Duration) -> Store {
    let app = db.admin_options().username(migrate::APP_ROLE).password("");
    Store::open_with_lease(db.admin_options(), app, None, 2, lease).await.expect("store")
}

#[tokio::test]
async fn a_killed_processs_secret_stops_working_after_its_lease() {
    let db = TestDb::new().await;
    let crashed = store_with_lease(&db, Duration::from_secs(2)).await;
    crashed.bypass("ops", "before the crash").await.expect("bypass").commit().await.expect("commit");
    crashed.global_tx().await.expect("identity scope").commit().await.expect("commit");
    // What SIGKILL leaves: nobody renews, nobody withdraws.
    crashed.stop_renewing();
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let e = crashed.bypass("ops", "after the crash").await.expect_err("expired secret");
    assert!(matches!(e, StoreError::BypassRefused(_)), "{e:?}");
    let e = crashed.global_tx().await.expect_err("expired secret");
    assert!(matches!(e, StoreError::BypassRefused(_)), "{e:?}");
    assert!(!crashed.renew_secret().await.expect("renew"), "an expired lease cannot be renewed");
    // The test's own store (default lease) is untouched.
    db.store.bypass("ops", "still alive").await.expect("other process").commit().await.expect("commit");
}

#[tokio::test]
async fn a_live_process_keeps_its_secret_past_the_lease_by_renewing() {
    let db = TestDb::new().await;
    let live = store_with_lease(&db, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    live.bypass("ops", "two leases later").await.expect("renewed bypass").commit().await.expect("commit");
    live.global_tx().await.expect("renewed identity scope").commit().await.expect("commit");
    let mut admin = db.admin_conn().await;
    let longest: f64 =
        sqlx::query_scalar("select max(extract(epoch from expires_at - now()))::float8 from platform_bypass_secrets")
            .fetch_one(&mut admin)
            .await
            .expect("leases");
    assert!(longest < 400.0, "no secret is registered for longer than a lease (default 300 s): {longest}");
}

const PORT: u16 = 18310;

fn serve(db: &TestDb, dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args([
            "serve",
            "--migrate",
            "--listen",
            &format!("127.0.0.1:{PORT}"),
            "--process-secret-lease",
            "2",
            "--data-dir",
        ])
        .arg(dir)
        .env("DATABASE_URL", db.url())
        .env_remove("COUNTERSIGN_LISTEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

async fn live_leases(db: &TestDb, pid: u32) -> i64 {
    let mut admin = db.admin_conn().await;
    sqlx::query_scalar("select count(*) from platform_bypass_secrets where label like $1 and expires_at > now()")
        .bind(format!("pid {pid} on %"))
        .fetch_one(&mut admin)
        .await
        .expect("count")
}

#[tokio::test]
async fn sigkilled_server_leaves_no_live_secret_behind() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("countersign-lease-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut child = serve(&db, &dir);
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::get(format!("http://127.0.0.1:{PORT}/readyz")).await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "server never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Alive for more than two leases: it renews.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(live_leases(&db, pid).await, 1, "the live server's secret must stay valid");
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    let _ = child.wait();
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(live_leases(&db, pid).await, 0, "the killed server's secret must expire by itself");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn app_role_cannot_insert_a_forged_platform_checkpoint() {
    let db = TestDb::new().await;
    let mut app = db.raw_app_conn().await;
    for setting in ["", "identity"] {
        sqlx::query("select set_config('app.scope', $1, false), set_config('app.identity', $1, false)")
            .bind(setting)
            .execute(&mut app)
            .await
            .expect("set");
        let e = sqlx::query(
            "insert into platform_audit_checkpoints (seq, hash, signed_at, key_id, signature)
             values (1000000, sha256('forged'), now(), '0123456789abcdef', decode(repeat('00', 64), 'hex'))",
        )
        .execute(&mut app)
        .await
        .expect_err("forged checkpoint");
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    }
    let mut admin = db.admin_conn().await;
    let forged: i64 = sqlx::query_scalar("select count(*) from platform_audit_checkpoints where seq = 1000000")
        .fetch_one(&mut admin)
        .await
        .expect("count");
    assert_eq!(forged, 0);
    // The signer (this process, holding the secret) still checkpoints the platform chain.
    db.store.bypass("ops", "move the platform head").await.expect("bypass").commit().await.expect("commit");
    let mut g = db.store.global_tx().await.expect("global");
    let cp = audit::checkpoint::checkpoint_platform(g.conn(), &common::test_key()).await.expect("sign");
    g.commit().await.expect("commit");
    assert!(cp.is_some(), "the signer must still insert checkpoints");
}
