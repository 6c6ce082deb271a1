//! Upgrades (issue 19): migrations are a step of their own (`countersign migrate`, or
//! `serve --migrate`); plain `serve` applies none and refuses a schema behind it, naming the
//! step; a schema newer than the binary is served when its later migrations declare themselves
//! compatible (expand/contract), and refused, clearly, when one does not.

#[path = "common/tools.rs"]
mod tools;

use tools::free_port;

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection;
use store::migrate::{self, MigrationSource};
use store::testing::{EmptyDb, TestDb};

fn countersign(db_url: &str, data: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_countersign"));
    c.env("DATABASE_URL", db_url)
        .env_remove("COUNTERSIGN_LISTEN")
        .env_remove("COUNTERSIGN_APP_DATABASE_URL")
        .env_remove("COUNTERSIGN_MIGRATE")
        .env("COUNTERSIGN_LOG_FORMAT", "json")
        .arg("--data-dir")
        .arg(data);
    c
}

fn data_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("countersign-upgrade-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).expect("dir");
    d
}

/// A running server and where it answers.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(db_url: &str, data: &std::path::Path, extra: &[&str]) -> Self {
        let port = free_port();
        let child = countersign(db_url, data)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        Self { child, base: format!("http://127.0.0.1:{port}") }
    }

    /// `/readyz` once the server answers it: (status, body).
    async fn readyz(&mut self) -> (u16, Value) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.base)).await {
                let status = r.status().as_u16();
                return (status, r.json().await.expect("readyz json"));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited ({status}) before answering:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "the server never answered /readyz");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "SIGTERM should exit cleanly ({status}):\n{}", self.log());
    }

    fn log(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

/// Runs `serve` expecting it to refuse to start: its output.
fn refused_start(db_url: &str, data: &std::path::Path, extra: &[&str]) -> Output {
    let out = countersign(db_url, data)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .args(extra)
        .stdout(Stdio::null())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve should have refused to start:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    out
}

#[tokio::test]
async fn plain_serve_refuses_an_unmigrated_database_naming_countersign_migrate_which_then_lets_it_start() {
    let empty = EmptyDb::new().await;
    let url = empty.url();
    let data = data_dir();

    // Plain `serve` applies nothing: the empty schema is refused, naming the step to run.
    let out = refused_start(&url, &data, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("schema is behind") && stderr.contains("countersign migrate"), "{stderr}");
    let mut owner = sqlx::PgConnection::connect(&url).await.expect("owner");
    let tables: bool = sqlx::query_scalar("select to_regclass('public.schema_migrations') is not null")
        .fetch_one(&mut owner)
        .await
        .expect("schema");
    assert!(!tables, "plain serve must not migrate");

    // `countersign migrate` is the step; then plain serve starts and is ready.
    let out = countersign(&url, &data).arg("migrate").output().expect("migrate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrations current"));
    let mut server = Server::start(&url, &data, &[]);
    let (status, body) = server.readyz().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["schema_version"], body["checks"]["expected_version"], "{body}");
    server.stop();
    owner.close().await.expect("close");
    drop(empty);

    // `serve --migrate` does both on a fresh database (small installs).
    let empty = EmptyDb::new().await;
    let mut server = Server::start(&empty.url(), &data, &["--migrate"]);
    let (status, body) = server.readyz().await;
    assert_eq!(status, 200, "{body}");
    server.stop();
    let _ = std::fs::remove_dir_all(&data);
}

/// What the next release would ship: the embedded migrations plus `extra`.
fn with(extra: &[(i64, &str)]) -> Vec<MigrationSource> {
    let mut all = migrate::embedded();
    all.extend(extra.iter().map(|(version, sql)| MigrationSource {
        version: *version,
        description: format!("test {version}"),
        sql: (*sql).to_owned(),
    }));
    all
}

/// An expand step: a nullable column nothing of this binary reads or writes.
const COMPATIBLE: &str = "-- An expand step of a later release.\n-- compatible-with: 35\n\
    alter table documents add column upgrade_probe text;\n";
/// A contract step without a declaration: binaries that do not know it must not run.
const INCOMPATIBLE: &str = "-- A contract step of a later release.\nalter table documents drop column upgrade_probe;\n";

#[tokio::test]
async fn a_newer_compatible_schema_is_served_and_ready_and_an_incompatible_one_is_refused_clearly() {
    let db = TestDb::new().await;
    let data = data_dir();
    let url = db.url();
    assert!(migrate::known_latest() >= 35, "the compatibility declaration names this binary's version");

    // A later release migrated the database with an expand step declared compatible with us.
    let mut owner = db.admin_conn().await;
    let report = migrate::apply(&mut owner, &with(&[(9001, COMPATIBLE)]), None).await.expect("expand");
    assert_eq!(report.applied, vec![9001]);
    let recorded: Option<i64> =
        sqlx::query_scalar("select compatible_with from schema_migrations where version = 9001")
            .fetch_one(&mut owner)
            .await
            .expect("recorded");
    assert_eq!(recorded, Some(35), "the header is recorded");

    // This (older) binary starts without migrating and is ready: the rolling upgrade keeps it.
    let mut server = Server::start(&url, &data, &[]);
    let (status, body) = server.readyz().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["checks"]["schema_version"], 9001, "{body}");
    assert_eq!(body["checks"]["newer_compatible"], serde_json::json!([9001]), "{body}");
    // And it works against the expanded schema (a read through RLS as the app role).
    let r = reqwest::get(format!("{}/api/v1/status", server.base)).await.expect("status");
    assert_eq!(r.status(), 200);
    // `serve --migrate` of this binary accepts it too (it has nothing to apply).
    let mut second = Server::start(&url, &data, &["--migrate"]);
    assert_eq!(second.readyz().await.0, 200);
    second.stop();

    // Then a contract step that does not declare itself compatible: the running server is no
    // longer ready, and says why.
    migrate::apply(&mut owner, &with(&[(9001, COMPATIBLE), (9002, INCOMPATIBLE)]), None).await.expect("contract");
    let (status, body) = server.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"]["database"], true, "the database is up; the schema is the problem: {body}");
    let problem = body["checks"]["schema_problem"].as_str().unwrap_or_default();
    assert!(problem.contains("9002") && problem.contains("does not declare"), "{body}");
    server.stop();

    // A restart is refused, naming the migration; so is `serve --migrate`.
    let out = refused_start(&url, &data, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("migration 9002") && stderr.contains("upgrade the binary"), "{stderr}");
    let out = refused_start(&url, &data, &["--migrate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("migration 9002") && stderr.contains("refusing to run an older binary"), "{stderr}");

    // A later migration declared compatible only with binaries newer than this one: refused too.
    let mut owner2 = db.admin_conn().await;
    sqlx::query("set role countersign_owner").execute(&mut owner2).await.expect("owner role");
    sqlx::query("delete from schema_migrations where version = 9002").execute(&mut owner2).await.expect("forget");
    sqlx::query("update schema_migrations set compatible_with = 9000 where version = 9001")
        .execute(&mut owner2)
        .await
        .expect("raise");
    let out = refused_start(&url, &data, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("compatible only with binaries at schema version 9000"), "{stderr}");
    let _ = std::fs::remove_dir_all(&data);
}
