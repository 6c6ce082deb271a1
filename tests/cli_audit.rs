//! `countersign audit …` as an operator runs it: verify names the tenant and first bad seq with
//! a distinct exit status; export and bundles work end to end; bad input is a clear error.

mod common;

use std::process::{Command, Output};

use common::org;
use sqlx::Executor;
use store::testing::TestDb;

struct Cli {
    url: String,
    dir: std::path::PathBuf,
}

impl Cli {
    fn new(db: &TestDb) -> Self {
        let dir = std::env::temp_dir().join(format!("cs-cli-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("dir");
        // The fixture signs checkpoints with the test key: give the CLI the same key file.
        std::fs::write(dir.join("audit.key"), hex::encode([42u8; 32])).expect("key");
        Self { url: db.url(), dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(args)
            .env("DATABASE_URL", &self.url)
            .env("COUNTERSIGN_AUDIT_KEY_FILE", self.dir.join("audit.key"))
            .env("COUNTERSIGN_DATA_DIR", &self.dir)
            .env("COUNTERSIGN_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run countersign")
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test]
async fn audit_verify_exits_3_naming_tenant_and_first_bad_seq() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let _b = org(&db, "beta").await;
    let cli = Cli::new(&db);

    let ok = cli.run(&["audit", "verify"]);
    assert!(ok.status.success(), "{}", text(&ok));
    let out = text(&ok);
    assert!(out.contains("ok      alpha") && out.contains("ok      beta") && out.contains("platform"), "{out}");

    let mut admin = db.admin_conn().await;
    admin.execute("alter table audit_events disable trigger audit_events_append_only").await.expect("disable");
    sqlx::query("update audit_events set actor_id = 'mallory' where tenant_id = $1 and seq = 4")
        .bind(a.id.as_uuid())
        .execute(&mut admin)
        .await
        .expect("edit");

    let bad = cli.run(&["audit", "verify"]);
    assert_eq!(bad.status.code(), Some(3), "{}", text(&bad));
    let out = text(&bad);
    assert!(out.contains("BROKEN  alpha") && out.contains("at seq 4"), "{out}");
    assert!(out.contains("ok      beta"), "other tenants still verify: {out}");

    let one = cli.run(&["audit", "verify", "--tenant", "alpha"]);
    assert_eq!(one.status.code(), Some(3), "{}", text(&one));
    let other = cli.run(&["audit", "verify", "--tenant", "beta"]);
    assert!(other.status.success(), "{}", text(&other));
}

#[tokio::test]
async fn audit_export_and_bundle_round_trip_through_the_binary() {
    let db = TestDb::new().await;
    let _a = org(&db, "alpha").await;
    let cli = Cli::new(&db);

    let csv = cli.dir.join("alpha.csv");
    let o = cli.run(&["audit", "export", "--tenant", "alpha", "--format", "csv", "--out", csv.to_str().expect("path")]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&csv).expect("csv").lines().count(), 7, "header + 6 events");

    let o = cli.run(&["audit", "export", "--tenant", "alpha", "--action", "membership.created"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 3);

    let bundle = cli.dir.join("bundle");
    let o = cli.run(&["audit", "export", "--tenant", "alpha", "--bundle", bundle.to_str().expect("path")]);
    assert!(o.status.success(), "{}", text(&o));
    let pk = cli.run(&["audit", "public-key"]);
    assert!(String::from_utf8_lossy(&pk.stdout).contains("BEGIN PUBLIC KEY"));
    let pem = cli.dir.join("pub.pem");
    std::fs::write(&pem, &pk.stdout).expect("pem");
    let o =
        cli.run(&["audit", "verify-bundle", bundle.to_str().expect("path"), "--public-key", pem.to_str().expect("p")]);
    assert!(o.status.success(), "{}", text(&o));

    // A bundle checked against somebody else's key is not verified: its checkpoints are signed by
    // a key the verifier was not given (exit 4, naming that key), which is not proof of tampering.
    // (This expected exit 3, "unknown key": the false alarm of issue 14 item 17.)
    let other = cli.dir.join("other.pub");
    std::fs::write(&other, hex::encode(audit::CheckpointKey::from_seed([1; 32]).public().as_bytes())).expect("w");
    let o = cli.run(&[
        "audit",
        "verify-bundle",
        bundle.to_str().expect("path"),
        "--public-key",
        other.to_str().expect("p"),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let signer = common::test_key().key_id().to_owned();
    assert!(text(&o).contains(&format!("signed by key {signer}, which this verifier does not hold")), "{}", text(&o));
}

#[tokio::test]
async fn audit_commands_refuse_bad_input_clearly() {
    let db = TestDb::new().await;
    let _a = org(&db, "alpha").await;
    let cli = Cli::new(&db);
    for (args, needle) in [
        (vec!["audit", "verify", "--tenant", "no-such-org"], "no such organisation"),
        (vec!["audit", "verify", "--tenant", "00000000-0000-4000-8000-000000000000"], "no such organisation"),
        (vec!["audit", "export", "--tenant", "alpha", "--format", "xml"], "format"),
        (vec!["audit", "export", "--tenant", "alpha", "--from", "yesterday"], "--from"),
        (vec!["audit", "export", "--tenant", "alpha", "--from", "2026-02-01", "--to", "2026-01-01"], "from"),
        (vec!["audit", "export", "--tenant", "alpha", "--action", "DROP TABLE"], "action"),
        (vec!["audit", "verify-bundle", "/nonexistent/bundle"], "public key"),
        (vec!["admin", "retention", "--older-than-days", "0"], "older-than-days"),
    ] {
        let o = cli.run(&args);
        let out = text(&o);
        assert!(!o.status.success(), "{args:?} should fail: {out}");
        assert!(out.contains(needle), "{args:?}: {out}");
        assert!(!out.contains("panicked"), "{args:?}: {out}");
    }
}
