//! The guarded bypass: only this process's registered secret opens it, and every use is logged.

mod common;

use common::{org, sqlstate};
use store::testing::TestDb;

#[tokio::test]
async fn guessed_bypass_setting_sees_nothing() {
    let db = TestDb::new().await;
    org(&db, "alpha").await;
    let mut app = db.raw_app_conn().await;
    let mut tx = sqlx::Connection::begin(&mut app).await.expect("begin");
    for guess in ["on", "true", "1", "bypass", "00000000000000000000000000000000"] {
        sqlx::query("select set_config('app.bypass', $1, true)").bind(guess).execute(&mut *tx).await.expect("set");
        let n: i64 = sqlx::query_scalar("select count(*) from memberships").fetch_one(&mut *tx).await.expect("count");
        assert_eq!(n, 0, "guessed bypass value {guess} opened the tables");
    }
}

#[tokio::test]
async fn bypass_with_unregistered_secret_is_refused_and_not_logged() {
    let db = TestDb::new().await;
    let mut app = db.raw_app_conn().await;
    let e = sqlx::query("select countersign_begin_bypass($1, 'mallory', 'just looking')")
        .bind("f".repeat(64))
        .execute(&mut app)
        .await
        .expect_err("unknown secret");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    let mut admin = db.admin_conn().await;
    let n: i64 = sqlx::query_scalar("select count(*) from platform_bypass_log where actor = 'mallory'")
        .fetch_one(&mut admin)
        .await
        .expect("log");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn bypass_sees_all_tenants_and_records_who_why_when() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let b = org(&db, "beta").await;
    let mut bx = db.store.bypass("platform-admin:ops@example", "quarterly tenant report").await.expect("bypass");
    let tenants: Vec<uuid::Uuid> =
        sqlx::query_scalar("select tenant_id from departments order by 1").fetch_all(bx.conn()).await.expect("all");
    let mut want = vec![a.id.as_uuid(), b.id.as_uuid()];
    want.sort();
    assert_eq!(tenants, want);
    bx.commit().await.expect("commit");

    let mut admin = db.admin_conn().await;
    let (actor, reason): (String, String) = sqlx::query_as(
        "select actor, reason from platform_bypass_log where reason = 'quarterly tenant report' and granted_at > now() - interval '1 minute'",
    )
    .fetch_one(&mut admin)
    .await
    .expect("logged");
    assert_eq!(actor, "platform-admin:ops@example");
    assert_eq!(reason, "quarterly tenant report");

    // The grant lives for one transaction only.
    let mut g = db.store.global_tx().await.expect("global");
    let n: i64 = sqlx::query_scalar("select count(*) from departments").fetch_one(g.conn()).await.expect("count");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn bypass_needs_actor_and_reason() {
    let db = TestDb::new().await;
    assert!(matches!(db.store.bypass("", "reason").await, Err(store::StoreError::BypassRefused(_))));
    assert!(matches!(db.store.bypass("ops", " ").await, Err(store::StoreError::BypassRefused(_))));
}

#[tokio::test]
async fn nonce_copied_from_another_transaction_does_not_open_the_bypass() {
    let db = TestDb::new().await;
    org(&db, "alpha").await;
    let bx = db.store.bypass("ops", "steal my nonce").await.expect("bypass");
    bx.commit().await.expect("commit");
    let mut admin = db.admin_conn().await;
    let nonce: String = sqlx::query_scalar("select nonce from platform_bypass_log where reason = 'steal my nonce'")
        .fetch_one(&mut admin)
        .await
        .expect("nonce");
    let mut app = db.raw_app_conn().await;
    let mut tx = sqlx::Connection::begin(&mut app).await.expect("begin");
    sqlx::query("select set_config('app.bypass', $1, true)").bind(&nonce).execute(&mut *tx).await.expect("set");
    let n: i64 = sqlx::query_scalar("select count(*) from memberships").fetch_one(&mut *tx).await.expect("count");
    assert_eq!(n, 0, "a replayed nonce must not open another transaction");
}

#[tokio::test]
async fn secret_withdrawn_at_shutdown_stops_working() {
    let db = TestDb::new().await;
    db.store.bypass("ops", "before shutdown").await.expect("bypass works").commit().await.expect("commit");
    db.store.shutdown().await;
    assert!(db.store.bypass("ops", "after shutdown").await.is_err());
}
