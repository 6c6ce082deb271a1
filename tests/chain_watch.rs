//! The server recomputes every audit chain on its own (the "chains verified" figure of
//! /security): an untouched ledger counts as verified, a row edited by a superuser with the
//! append-only trigger switched off shows as a broken chain — that organisation's, not the
//! other's — and the binary runs the watch without being asked.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::org;
use serde_json::Value;
use sqlx::Executor;
use store::testing::TestDb;

const PORT: u16 = 18352;

fn keys() -> audit::TrustedKeys {
    audit::TrustedKeys::of([common::test_key().public()])
}

async fn live(base: &str) -> Value {
    let s: Value = reqwest::get(format!("{base}/api/v1/security")).await.expect("security").json().await.expect("json");
    s["live"].clone()
}

#[tokio::test]
async fn an_edited_ledger_row_shows_as_a_broken_chain_on_the_next_pass() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let b = org(&db, "beta").await;
    let app = common::TestApp::new(&db).await;
    assert!(live(&app.base).await["chains"].is_null(), "no pass yet: no figure, not a zero");

    let w = audit::watch::pass(&db.store, &keys()).await.expect("pass");
    assert!(w.chains >= 3, "both organisations and the platform chain: {w:?}");
    assert_eq!((w.broken, w.unverified), (0, 0), "{w:?}");
    let figure = live(&app.base).await;
    assert_eq!(figure["chains"]["broken"], 0, "{figure}");
    assert_eq!(figure["chains"]["chains"], w.chains, "{figure}");
    assert!(figure["chains"]["events"].as_u64().unwrap_or(0) > 0, "{figure}");

    // A superuser rewrites one of alpha's events behind the trigger's back.
    let mut admin = db.admin_conn().await;
    admin.execute("alter table audit_events disable trigger audit_events_append_only").await.expect("disable");
    let edited = sqlx::query("update audit_events set reason = 'nothing to see' where tenant_id = $1 and seq = 1")
        .bind(a.id.as_uuid())
        .execute(&mut admin)
        .await
        .expect("tamper")
        .rows_affected();
    admin.execute("alter table audit_events enable trigger audit_events_append_only").await.expect("enable");
    assert_eq!(edited, 1);

    let w = audit::watch::pass(&db.store, &keys()).await.expect("pass");
    assert_eq!(w.broken, 1, "{w:?}");
    let (_, alpha) = audit::watch::chain(&a.id.to_string()).expect("alpha's chain was checked");
    let (_, beta) = audit::watch::chain(&b.id.to_string()).expect("beta's chain was checked");
    assert!(!alpha.intact, "alpha's edited chain must not count as verified");
    assert!(beta.intact, "beta's untouched chain stays verified");
    let figure = live(&app.base).await;
    assert_eq!(figure["chains"]["broken"], 1, "the public figure shows the break: {figure}");
}

/// The audit page's chain status: the organisation's own head and checkpoint, and what the
/// newest pass found for that chain — for auditors (the `audit:read` scope), not for staff.
#[tokio::test]
async fn an_auditor_reads_the_chain_status_of_their_own_organisation_only() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let b = org(&db, "beta").await;
    let app = common::TestApp::new(&db).await;
    let (_, auditor) = common::api_key(&db, a.id, "auditor", identity::Role::Auditor, &["audit:read"]).await;
    // The scope without the role, and the role without the scope.
    let (_, staff) = common::api_key(&db, a.id, "staff", identity::Role::Staff, &["audit:read"]).await;
    let (_, unscoped) = common::api_key(&db, a.id, "unscoped", identity::Role::Auditor, &["members:read"]).await;

    let before = app.bearer(&auditor).get("/api/v1/audit/chain").await;
    assert_eq!(before.status, 200, "{}", before.text);
    assert!(before.body["verified"].is_null(), "no pass yet: {}", before.body);
    let mut admin = db.admin_conn().await;
    let (seq, hash): (i64, Vec<u8>) = sqlx::query_as("select seq, hash from audit_heads where tenant_id = $1")
        .bind(a.id.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("head");
    assert!(before.body["head_seq"].as_i64().is_some_and(|s| s >= seq), "{}", before.body);

    audit::watch::pass(&db.store, &keys()).await.expect("pass");
    let after = app.bearer(&auditor).get("/api/v1/audit/chain").await;
    assert_eq!(after.body["verified"]["intact"], true, "{}", after.body);
    assert!(after.body["verified"]["seq"].as_i64().is_some_and(|s| s >= seq), "{}", after.body);
    // Alpha's head, never beta's.
    let (b_hash,): (Vec<u8>,) = sqlx::query_as("select hash from audit_heads where tenant_id = $1")
        .bind(b.id.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("beta head");
    let shown = after.body["head_hash"].as_str().unwrap_or_default().to_owned();
    assert_ne!(shown, hex::encode(&b_hash));
    if after.body["head_seq"] == seq {
        assert_eq!(shown, hex::encode(&hash));
    }

    for key in [&staff, &unscoped] {
        let refused = app.bearer(key).get("/api/v1/audit/chain").await;
        assert_eq!(refused.status, 403, "{}", refused.text);
    }
}

#[tokio::test]
async fn the_server_watches_the_chains_without_being_asked() {
    let db = TestDb::new().await;
    org(&db, "alpha").await;
    let dir = std::env::temp_dir().join(format!("countersign-watch-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args([
            "serve",
            "--migrate",
            "--listen",
            &format!("127.0.0.1:{PORT}"),
            "--chain-watch-interval",
            "1",
            "--data-dir",
        ])
        .arg(&dir)
        .env("DATABASE_URL", db.url())
        .env_remove("COUNTERSIGN_LISTEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let base = format!("http://127.0.0.1:{PORT}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let figure = loop {
        if let Ok(r) = reqwest::get(format!("{base}/api/v1/security")).await
            && let Ok(s) = r.json::<Value>().await
            && !s["live"]["chains"].is_null()
        {
            break s["live"]["chains"].clone();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server never reported a chain pass");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(figure["chains"].as_u64().unwrap_or(0) >= 2, "{figure}");
    assert_eq!(figure["broken"], 0, "{figure}");
}
