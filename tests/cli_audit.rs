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

/// `audit checkpoint` signs every head that moved: tenant chains (in an audited bypass) and the
/// platform chain (whose checkpoints only an identity-scope transaction may insert: a bypass is
/// refused there, which once made the whole command fail with "cross-tenant access refused"),
/// and a second run signs nothing that did not move.
#[tokio::test]
async fn audit_checkpoint_signs_the_moved_tenant_and_platform_heads_and_only_what_moved_again() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let cli = Cli::new(&db);
    let who = common::who();
    let event = |kind: &str| {
        audit::Event::new(kind, audit::Entity::new("test", Some("x".into())).expect("entity"), audit::Changes::none())
            .expect("event")
    };
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    audit::record_by(&mut tx, &who, &event("test.moved")).await.expect("tenant event");
    tx.commit().await.expect("commit");
    let mut g = db.store.global_tx().await.expect("global");
    audit::record_platform(g.conn(), &who.actor, &who.origin, &event("test.platform_moved")).await.expect("platform");
    g.commit().await.expect("commit");

    let mut admin = db.admin_conn().await;
    let (head, signed): (i64, Option<i64>) = sqlx::query_as(
        "select h.seq, (select max(c.seq) from audit_checkpoints c where c.tenant_id = h.tenant_id)
           from audit_heads h where h.tenant_id = $1",
    )
    .bind(a.id.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("head");
    assert!(signed.is_none_or(|s| s < head), "the head {head} is already signed ({signed:?})");

    let o = cli.run(&["audit", "checkpoint"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains(&format!("signed {} seq", a.id)), "{}", text(&o));
    assert!(out.contains("signed platform seq"), "{out}");
    let again = cli.run(&["audit", "checkpoint"]);
    assert!(again.status.success(), "{}", text(&again));
    // Nothing moved in alpha's chain since; the platform chain did (the bypass that listed the
    // organisations is itself on record there), so only it may be signed again.
    let again_out = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(!again_out.contains(&a.id.to_string()), "{again_out}");
    let verify = cli.run(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", text(&verify));
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

/// The one JSON object `--json` prints: standard output holds it and nothing else, and standard
/// error (not a terminal here) carries no progress bar bytes.
fn summary(o: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stdout: {}", text(o));
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("stdout is JSON");
    assert!(v.is_object(), "{v}");
    assert!(!stderr.contains('\u{1b}') && !stderr.contains('\r'), "progress bytes on a non-terminal: {stderr:?}");
    v
}

async fn ledger_events(db: &TestDb) -> u64 {
    let mut admin = db.admin_conn().await;
    let n: i64 =
        sqlx::query_scalar("select (select count(*) from audit_events) + (select count(*) from platform_audit_events)")
            .fetch_one(&mut admin)
            .await
            .expect("count");
    u64::try_from(n).expect("count")
}

/// `audit verify --json` counts what it verified (every event of the seeded ledger, one per
/// tenant chain plus the platform chain); a tampered ledger is `ok: false` with exit 3, the code
/// `tampered` and the tenant and first bad sequence number; nothing but the object is on stdout
/// and no bar reaches a standard error that is not a terminal.
#[tokio::test]
async fn audit_verify_json_counts_the_ledger_and_reports_tampering_with_exit_3() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let _b = org(&db, "beta").await;
    let cli = Cli::new(&db);

    let o = cli.run(&["audit", "verify", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = summary(&o);
    assert_eq!(v["command"], "audit verify", "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["exit_status"], 0, "{v}");
    assert_eq!(v["tenants"], 2, "{v}");
    assert_eq!(v["chains"], 3, "two tenants and the platform: {v}");
    assert_eq!(v["events"], ledger_events(&db).await, "{v}");
    assert!(v["seconds"].as_f64().is_some_and(|s| s >= 0.0), "{v}");
    assert_eq!(v["broken"], serde_json::json!([]), "{v}");
    assert!(v.get("error").is_none(), "{v}");

    let o = cli.run(&["audit", "verify", "--json", "--tenant", "beta"]);
    let v = summary(&o);
    assert!(o.status.success() && v["tenants"] == 1 && v["chains"] == 1 && v["tenant"] == "beta", "{v}");

    let mut admin = db.admin_conn().await;
    admin.execute("alter table audit_events disable trigger audit_events_append_only").await.expect("disable");
    sqlx::query("update audit_events set actor_id = 'mallory' where tenant_id = $1 and seq = 4")
        .bind(a.id.as_uuid())
        .execute(&mut admin)
        .await
        .expect("edit");
    let o = cli.run(&["audit", "verify", "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let v = summary(&o);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["exit_status"], 3, "{v}");
    assert_eq!(v["error"]["code"], "tampered", "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("alpha at seq 4")), "{v}");
    assert_eq!(v["broken"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["broken"][0]["tenant"], "alpha", "{v}");
    assert_eq!(v["broken"][0]["chain"], a.id.to_string(), "{v}");
    assert_eq!(v["broken"][0]["seq"], 4, "{v}");
    // The text form says it once too, on stderr, and stdout keeps its lines.
    let o = cli.run(&["audit", "verify"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stderr).matches("verification FAILED").count(), 1, "{}", text(&o));
}

/// `audit export --json` and `audit verify-bundle --json`: the counts of what was written (CSV
/// and NDJSON files, a bundle) and verified; without a file the events would share standard
/// output with the object, so `--json` then needs `--out` or `--bundle` (exit 2).
#[tokio::test]
async fn audit_export_json_reports_what_was_written() {
    let db = TestDb::new().await;
    let _a = org(&db, "alpha").await;
    let cli = Cli::new(&db);

    for (format, lines) in [("csv", 7), ("ndjson", 6)] {
        let file = cli.dir.join(format!("alpha.{format}"));
        let o = cli.run(&[
            "audit",
            "export",
            "--tenant",
            "alpha",
            "--format",
            format,
            "--json",
            "--out",
            file.to_str().expect("p"),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let v = summary(&o);
        assert_eq!((v["command"].as_str(), v["ok"].as_bool()), (Some("audit export"), Some(true)), "{v}");
        assert_eq!(
            (v["events"].as_u64(), v["format"].as_str(), v["tenant"].as_str()),
            (Some(6), Some(format), Some("alpha")),
            "{v}"
        );
        assert_eq!(v["out"], file.display().to_string(), "{v}");
        assert_eq!(std::fs::read_to_string(&file).expect("file").lines().count(), lines, "{format}");
    }
    let o = cli.run(&[
        "audit",
        "export",
        "--tenant",
        "alpha",
        "--json",
        "--action",
        "membership.created",
        "--out",
        cli.dir.join("m.ndjson").to_str().expect("p"),
    ]);
    assert_eq!(summary(&o)["events"], 3, "{}", text(&o));

    let bundle = cli.dir.join("bundle");
    let o = cli.run(&["audit", "export", "--tenant", "alpha", "--json", "--bundle", bundle.to_str().expect("p")]);
    assert!(o.status.success(), "{}", text(&o));
    let v = summary(&o);
    let signer = common::test_key().key_id().to_owned();
    assert_eq!((v["format"].as_str(), v["events"].as_u64()), (Some("bundle"), Some(6)), "{v}");
    assert!(v["checkpoints"].as_u64().is_some_and(|n| n >= 1) && v["key_id"] == signer.as_str(), "{v}");
    let o = cli.run(&["audit", "verify-bundle", bundle.to_str().expect("p"), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = summary(&o);
    assert_eq!(
        (v["command"].as_str(), v["events"].as_u64(), v["chains"].as_u64()),
        (Some("audit verify-bundle"), Some(6), Some(1)),
        "{v}"
    );

    let o = cli.run(&["audit", "export", "--tenant", "alpha", "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--out") && o.stdout.is_empty(), "{}", text(&o));
}

/// An error is printed exactly once: as one line on standard error (not also as a log event),
/// or with `--json` as the object's `error` (code and message) and not on standard error; the
/// exit status is the same either way, and nothing reaches the ledger or the files.
#[tokio::test]
async fn an_error_is_printed_once_as_text_or_as_the_json_objects_error() {
    let db = TestDb::new().await;
    let _a = org(&db, "alpha").await;
    let cli = Cli::new(&db);
    for (args, needle, code) in [
        (vec!["audit", "verify", "--tenant", "no-such-org"], "no such organisation", "not_found"),
        (
            vec!["audit", "export", "--tenant", "nowhere", "--out", "/nonexistent/x.csv"],
            "no such organisation",
            "not_found",
        ),
        (
            vec!["audit", "export", "--tenant", "alpha", "--out", "/nonexistent/dir/x.csv"],
            "/nonexistent/dir/x.csv",
            "io",
        ),
        (
            vec!["audit", "export", "--tenant", "alpha", "--format", "xml", "--out", "/tmp/x"],
            "expected csv or ndjson",
            "invalid_argument",
        ),
    ] {
        let o = cli.run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(stderr.matches(needle).count(), 1, "{args:?}: printed once: {stderr}");
        assert!(o.stdout.is_empty() && !stderr.contains("stopped with an error"), "{args:?}: {}", text(&o));

        let o = cli.run(&[&args[..], &["--json"]].concat());
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        let v = summary(&o);
        assert_eq!((v["ok"].as_bool(), v["exit_status"].as_u64()), (Some(false), Some(1)), "{v}");
        assert_eq!(v["error"]["code"], code, "{args:?}: {v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains(needle)), "{v}");
        assert!(!String::from_utf8_lossy(&o.stderr).contains(needle), "{args:?}: printed twice: {}", text(&o));
    }
}

/// The admin commands' `--json`: what retention purged, how many files `purge-files` removed,
/// how many TOTP secrets and file data keys a rotation re-sealed (and under which key).
#[tokio::test]
async fn admin_json_summaries_count_what_was_purged_and_resealed() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let cli = Cli::new(&db);
    let mut admin = db.admin_conn().await;

    sqlx::query("update memberships set deleted_at = now() - interval '40 days' where tenant_id = $1 and id = $2")
        .bind(a.id.as_uuid())
        .bind(a.memberships[1])
        .execute(&mut admin)
        .await
        .expect("soft delete");
    let o = cli.run(&["admin", "retention", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = summary(&o);
    assert_eq!((v["command"].as_str(), v["ok"].as_bool()), (Some("admin retention"), Some(true)), "{v}");
    assert_eq!(
        (v["memberships"].as_u64(), v["departments"].as_u64(), v["older_than_days"].as_u64()),
        (Some(1), Some(0), Some(30)),
        "{v}"
    );

    let aged = sqlx::query(
        "update blobs set deleted_at = now() - interval '40 days', deleted_by = created_by where tenant_id = $1",
    )
    .bind(a.id.as_uuid())
    .execute(&mut admin)
    .await
    .expect("age deletions")
    .rows_affected();
    assert!(aged >= 1, "the fixture has files");
    let o = cli.run(&["admin", "purge-files", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = summary(&o);
    assert_eq!((v["command"].as_str(), v["files"].as_u64()), (Some("admin purge-files"), Some(aged)), "{v}");
    assert_eq!(summary(&cli.run(&["admin", "purge-files", "--json"]))["files"], 0, "purged once");

    // Two TOTP secrets sealed under an old MFA key; the command runs with the new one current.
    let old = identity::signin::secret_box::SecretBox::new(&[5; 32], &[]);
    for u in &a.users[..2] {
        identity::signin::mfa::enrol(&db.store, &old, *u).await.expect("enrol");
    }
    let (new_key, old_key) = (cli.dir.join("mfa-new.key"), cli.dir.join("mfa-old.key"));
    std::fs::write(&new_key, hex::encode([6u8; 32])).expect("key");
    std::fs::write(&old_key, hex::encode([5u8; 32])).expect("key");
    let (n, o_) = (new_key.to_str().expect("p"), old_key.to_str().expect("p"));
    let o = cli.run(&["admin", "rotate-mfa-key", "--json", "--mfa-key-file", n, "--mfa-old-key-file", o_]);
    assert!(o.status.success(), "{}", text(&o));
    let v = summary(&o);
    let current = identity::signin::secret_box::SecretBox::new(&[6; 32], &[]).current_key_id().to_owned();
    assert_eq!((v["command"].as_str(), v["resealed"].as_u64()), (Some("admin rotate-mfa-key"), Some(2)), "{v}");
    assert_eq!(v["key_id"], current.as_str(), "{v}");

    // The fixture's file data keys name a master key that is not here: start from one that is.
    for sql in [
        "update document_attachments set blob_id = null",
        "delete from mdf_claim_proofs",
        "delete from blobs",
        "delete from blob_keys",
    ] {
        sqlx::query(sql).execute(&mut admin).await.expect(sql);
    }
    let ring = files::Keyring::load_or_create(&cli.dir.join("keys").join("blob-master")).expect("keyring");
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    files::keys::current(&mut tx, &ring).await.expect("a data key");
    tx.commit().await.expect("commit");
    let o = cli.run(&["admin", "rotate-blob-key", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = summary(&o);
    assert_eq!((v["command"].as_str(), v["resealed"].as_u64()), (Some("admin rotate-blob-key"), Some(1)), "{v}");
    let now = files::Keyring::load(&cli.dir.join("keys").join("blob-master")).expect("keyring").current_id();
    assert_ne!(now, ring.current_id(), "a new master key");
    assert_eq!(v["master_key_id"], now.as_str(), "{v}");
}

/// Under a pseudo-terminal (util-linux `script`) the same command draws its bar on standard
/// error, and still prints its JSON object; the bar is cleared when it ends.
#[tokio::test]
async fn on_a_terminal_the_progress_bar_is_drawn() {
    let db = TestDb::new().await;
    let _a = org(&db, "alpha").await;
    let cli = Cli::new(&db);
    let bin = env!("CARGO_BIN_EXE_countersign");
    // However short the work, the bar is drawn once when it starts.
    let o = Command::new("script")
        .args(["-qfec", &format!("{bin} audit verify --json"), "/dev/null"])
        .env("DATABASE_URL", &cli.url)
        .env("COUNTERSIGN_AUDIT_KEY_FILE", cli.dir.join("audit.key"))
        .env("COUNTERSIGN_DATA_DIR", &cli.dir)
        .env("COUNTERSIGN_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .env("TERM", "xterm")
        .output()
        .expect("util-linux `script` runs the command under a pseudo-terminal");
    let screen = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{screen}{}", String::from_utf8_lossy(&o.stderr));
    assert!(screen.contains("verifying every chain"), "no bar on the terminal: {screen:?}");
    assert!(screen.contains('\u{1b}'), "the bar is drawn and cleared with escape sequences: {screen:?}");
    assert!(screen.contains(r#""command":"audit verify""#), "{screen:?}");
}

/// Copies a (flat) bundle directory.
fn copy_bundle(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("dir");
    for e in std::fs::read_dir(from).expect("bundle").flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// Rewrites one file of a bundle and its digest in the manifest, as a forger would (the manifest
/// itself is not signed: only the checkpoints are).
fn forge(dir: &std::path::Path, name: &str, body: &str) {
    use sha2::{Digest, Sha256};
    std::fs::write(dir.join(name), body).expect("write");
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("manifest")).expect("json");
    m["files"][name] = serde_json::Value::String(hex::encode(Sha256::digest(body.as_bytes())));
    std::fs::write(&path, serde_json::to_vec_pretty(&m).expect("json")).expect("write manifest");
}

fn python_verify(dir: &std::path::Path) -> Output {
    Command::new("python3").arg(dir.join("verify.py")).arg(dir).output().expect("python3")
}

#[tokio::test]
async fn a_bundle_spanning_an_audit_key_rotation_verifies_and_a_missing_or_relabelled_key_is_refused() {
    let db = TestDb::new().await;
    let _a = org(&db, "alpha").await;
    let cli = Cli::new(&db);
    let p = |p: &std::path::Path| p.to_str().expect("utf-8").to_owned();
    let (fixture, k1, k2) = (cli.dir.join("audit.key"), cli.dir.join("audit-1.key"), cli.dir.join("audit-2.key"));
    let keygen = |k: &std::path::Path| {
        let o = cli.run(&["keygen", "audit", "--out", &p(k)]);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    let (id1, id2, id0) = (keygen(&k1), keygen(&k2), common::test_key().key_id().to_owned());
    let event = |name: &str| {
        let o = cli.run(&["admin", "api-key", "create", "--tenant", "alpha", "--name", name, "--role", "auditor"]);
        assert!(o.status.success(), "{}", text(&o));
    };

    // The fixture's checkpoints are the test key's (key 0); then key 1 signs one (an export
    // signs the moved head with the current key); then the rotation to key 2, more events, and
    // the export signs the head with key 2.
    event("before rotation");
    let by_key_1 = p(&cli.dir.join("by-key-1"));
    let o = cli.run(&["audit", "export", "--tenant", "alpha", "--bundle", &by_key_1, "--audit-key-file", &p(&k1)]);
    assert!(o.status.success(), "{}", text(&o));
    event("after rotation");
    let export = |dir: &std::path::Path, previous: &[&std::path::PathBuf]| {
        let mut args = vec!["audit".to_owned(), "export".into(), "--tenant".into(), "alpha".into()];
        args.extend(["--bundle".into(), p(dir), "--audit-key-file".into(), p(&k2)]);
        for k in previous {
            args.extend(["--previous-audit-key-file".into(), p(k)]);
        }
        cli.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let bundle = cli.dir.join("rotated");
    let o = export(&bundle, &[&k1, &fixture]);
    assert!(o.status.success(), "{}", text(&o));
    let signers: std::collections::BTreeSet<String> = std::fs::read_to_string(bundle.join("checkpoints.ndjson"))
        .expect("checkpoints")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["key_id"].as_str().expect("id").to_owned())
        .collect();
    let three: std::collections::BTreeSet<String> = [id0.clone(), id1.clone(), id2.clone()].into_iter().collect();
    assert_eq!(signers, three, "three keys signed");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).expect("manifest")).expect("json");
    let mut carried: Vec<String> =
        manifest["key_ids"].as_array().expect("key_ids").iter().map(|v| v.as_str().expect("id").to_owned()).collect();
    assert_eq!(carried[0], id2, "the current key first: {manifest}");
    carried.sort();
    let mut all = vec![id0.clone(), id1.clone(), id2.clone()];
    all.sort();
    assert_eq!(carried, all, "{manifest}");

    // Verified with the keys it carries, with pinned keys, and by the stand-alone verifier.
    let o = cli.run(&["audit", "verify-bundle", &p(&bundle)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("ok      alpha"), "{}", text(&o));
    let pins: Vec<String> = [&fixture, &k1, &k2]
        .iter()
        .map(|k| {
            let o = cli.run(&["audit", "public-key", "--audit-key-file", &p(k)]);
            let pin = cli.dir.join(format!("{}.pub", k.file_name().and_then(|n| n.to_str()).expect("name")));
            std::fs::write(&pin, &o.stdout).expect("pin");
            p(&pin)
        })
        .collect();
    let mut args = vec!["audit", "verify-bundle", bundle.to_str().expect("utf-8")];
    for pin in &pins {
        args.extend(["--public-key", pin.as_str()]);
    }
    let o = cli.run(&args);
    assert_eq!(o.status.code(), Some(0), "pinned keys: {}", text(&o));
    let py = python_verify(&bundle);
    assert_eq!(py.status.code(), Some(0), "verify.py: {}", text(&py));
    assert!(text(&py).contains("OK chain alpha"), "{}", text(&py));

    // Exported without key 1: the bundle cannot carry it, the exporter warns, and both verifiers
    // refuse to call its checkpoint verified (exit 4, naming the key).
    let short = cli.dir.join("without-key-1");
    let o = export(&short, &[&fixture]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("signed by key(s) {id1} that were not given")), "{}", text(&o));
    let o = cli.run(&["audit", "verify-bundle", &p(&short)]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains(&format!("signed by key {id1}, which this verifier does not hold")), "{}", text(&o));
    let py = python_verify(&short);
    assert_eq!(py.status.code(), Some(4), "verify.py: {}", text(&py));
    assert!(text(&py).contains(&format!("key {id1}, which the bundle does not carry")), "{}", text(&py));

    // A checkpoint of key 1 relabelled as key 2's: its signature does not verify under key 2.
    let relabelled = cli.dir.join("relabelled-checkpoint");
    copy_bundle(&bundle, &relabelled);
    let cps = std::fs::read_to_string(relabelled.join("checkpoints.ndjson")).expect("checkpoints");
    let needle = format!("\"key_id\":\"{id1}\"");
    assert!(cps.contains(&needle), "{cps}");
    forge(&relabelled, "checkpoints.ndjson", &cps.replace(&needle, &format!("\"key_id\":\"{id2}\"")));
    let o = cli.run(&["audit", "verify-bundle", &p(&relabelled)]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("checkpoint signature is invalid (forged)"), "{}", text(&o));
    let py = python_verify(&relabelled);
    assert_eq!(py.status.code(), Some(1), "verify.py: {}", text(&py));
    assert!(text(&py).contains("checkpoint signature is invalid (forged)"), "{}", text(&py));

    // A stranger's key carried under key 1's id: refused before any checkpoint is trusted.
    let substituted = cli.dir.join("substituted-key");
    copy_bundle(&bundle, &substituted);
    let keys = std::fs::read_to_string(substituted.join("public-keys.pem")).expect("keys");
    let own = audit::public_pem(&audit::CheckpointKey::load(&k1).expect("key 1").public()).expect("pem");
    let stranger = audit::public_pem(&audit::CheckpointKey::from_seed([9; 32]).public()).expect("pem");
    assert!(keys.contains(&format!("# key id {id1}\n{own}")), "{keys}");
    forge(&substituted, "public-keys.pem", &keys.replace(&own, &stranger));
    let o = cli.run(&["audit", "verify-bundle", &p(&substituted)]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&format!("the key labelled {id1} has key id")), "{}", text(&o));
    assert!(text(&o).contains("its key id label is forged") && !text(&o).contains("panicked"), "{}", text(&o));
    let py = python_verify(&substituted);
    assert_eq!(py.status.code(), Some(1), "verify.py: {}", text(&py));
    assert!(text(&py).contains("its key id label is forged"), "{}", text(&py));
}
