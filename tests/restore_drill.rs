//! The restore drill (issue 19, docs/OPERATIONS.md "Rehearsing a restore"): rehearsed by the
//! suite, not only written down.
//!
//! A private PostgreSQL cluster with continuous WAL archiving runs the real server (`countersign
//! demo`); a base backup is taken with `pg_basebackup`; documents are raised through the API
//! before and after a recorded instant; the cluster is then lost. A fresh cluster is restored
//! from the base backup and the WAL archive to that instant (point-in-time recovery), and then
//! `countersign audit verify` passes on it and exactly the documents acknowledged before the
//! instant exist. The drill prints how long the restore took.

#[path = "common/tools.rs"]
mod tools;

use tools::free_port;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

/// The unprivileged account PostgreSQL runs as when the tests run as root.
#[derive(Clone, Copy)]
struct Account {
    uid: u32,
    gid: u32,
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        })
        .is_some_and(|uid| uid == "0")
}

fn postgres_account() -> Option<Account> {
    if !running_as_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let found = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() > 3 && f[0] == "postgres" {
            Some(Account { uid: f[2].parse().ok()?, gid: f[3].parse().ok()? })
        } else {
            None
        }
    });
    Some(found.expect("running as root: the drill runs PostgreSQL as the `postgres` account, which is missing"))
}

/// A directory the PostgreSQL account may write.
fn pg_dir(path: &Path, account: Option<Account>) -> PathBuf {
    std::fs::create_dir_all(path).expect("create dir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    if let Some(a) = account {
        chown(path, Some(a.uid), Some(a.gid)).expect("chown");
    }
    path.to_owned()
}

/// Runs a PostgreSQL tool as the PostgreSQL account; panics with its output on failure.
fn pg_tool(bin: &Path, account: Option<Account>, tool: &str, args: &[&str]) -> Output {
    let mut c = Command::new(bin.join(tool));
    c.args(args).env("LC_ALL", "C.UTF-8").env_remove("PGDATA").current_dir("/");
    if let Some(a) = account {
        c.uid(a.uid).gid(a.gid);
    }
    let out = c.output().unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A cluster directory with its socket directory and port.
struct Cluster {
    data: PathBuf,
    socket: PathBuf,
    port: u16,
}

impl Cluster {
    fn options(&self) -> PgConnectOptions {
        PgConnectOptions::new().socket(&self.socket).port(self.port).username("countersign").database("countersign")
    }

    fn url(&self) -> String {
        format!("postgres:///countersign?host={}&port={}&user=countersign", self.socket.display(), self.port)
    }

    async fn conn(&self) -> PgConnection {
        self.options().connect().await.expect("connect to the drill cluster")
    }

    fn start(&self, bin: &Path, account: Option<Account>) {
        let log = self.socket.join("postgres.log");
        let (d, l) = (self.data.to_str().expect("utf-8"), log.to_str().expect("utf-8"));
        pg_tool(bin, account, "pg_ctl", &["start", "-w", "-t", "120", "-D", d, "-l", l]);
    }

    fn stop(&self, bin: &Path, account: Option<Account>) {
        pg_tool(bin, account, "pg_ctl", &["stop", "-w", "-m", "fast", "-D", self.data.to_str().expect("utf-8")]);
    }

    /// Settings appended to `postgresql.auto.conf` (they override postgresql.conf).
    fn configure(&self, lines: &[String]) {
        use std::io::Write;
        let path = self.data.join("postgresql.auto.conf");
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("postgresql.auto.conf");
        for line in lines {
            writeln!(f, "{line}").expect("write setting");
        }
    }
}

fn quoted(p: &Path) -> String {
    p.display().to_string().replace('\'', "''")
}

/// `countersign demo` on the cluster: its address and its accounts' password.
struct Demo {
    child: Child,
    base: String,
    password: String,
}

fn start_demo(cluster: &Cluster, data_dir: &Path) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("DATABASE_URL", cluster.url())
        .env_remove("COUNTERSIGN_LISTEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(data_dir.join("demo.log")).expect("log file"))
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let (mut base, mut password) = (None, None);
    while base.is_none() || password.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!(
                "the demo printed no banner within 180 s:\n{}",
                std::fs::read_to_string(data_dir.join("demo.log")).unwrap_or_default()
            );
        };
        if let Some(url) = line.split("open ").nth(1).and_then(|rest| rest.split_whitespace().next()) {
            base = Some(url.to_owned());
        }
        if let Some(rest) = line.split("signs in with the password ").nth(1) {
            password = rest.split_whitespace().next().map(str::to_owned);
        }
    }
    Demo { child, base: base.unwrap_or_default(), password: password.unwrap_or_default() }
}

/// Raises a draft voucher titled `title`; its id once the server acknowledged it (201).
async fn raise(http: &reqwest::Client, demo: &Demo, token: &str, department: &str, title: &str) -> String {
    let body = json!({
        "kind": "voucher", "department_id": department, "title": title, "document_date": "2026-12-01",
        "currency": "EUR", "lines": [{"description": "drill", "amount_minor": 1234}],
    });
    let r = http
        .post(format!("{}/api/v1/documents", demo.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("raise");
    assert_eq!(r.status(), reqwest::StatusCode::CREATED, "raising {title}");
    let v: Value = r.json().await.expect("json");
    v["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_point_in_time_restore_brings_back_exactly_the_acknowledged_documents_and_a_verifying_ledger() {
    let bin = store::embedded::find_binaries()
        .unwrap_or_else(|e| panic!("the restore drill needs the PostgreSQL server binaries: {e}"));
    let account = postgres_account();
    let root = std::env::temp_dir().join(format!("cs-drill-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&root).expect("root");
    let keys = root.join("countersign"); // the server's data dir: its keys must be backed up too
    std::fs::create_dir_all(&keys).expect("keys dir");
    let archive = pg_dir(&root.join("wal-archive"), account);
    let base_backup = root.join("base");

    // The live cluster, archiving every WAL segment.
    let live = Cluster { data: root.join("live"), socket: pg_dir(&root.join("live-run"), account), port: free_port() };
    pg_dir(&live.data, account);
    let d = live.data.to_str().expect("utf-8");
    pg_tool(
        &bin,
        account,
        "initdb",
        &["-D", d, "-U", "countersign", "--auth=trust", "--encoding=UTF8", "--no-instructions"],
    );
    live.configure(&[
        "listen_addresses = ''".into(),
        format!("unix_socket_directories = '{}'", quoted(&live.socket)),
        format!("port = {}", live.port),
        "wal_level = replica".into(),
        "archive_mode = on".into(),
        format!("archive_command = 'test ! -f {0}/%f && cp %p {0}/%f'", quoted(&archive)),
        "archive_timeout = 60".into(),
    ]);
    live.start(&bin, account);
    {
        let mut c = live.options().database("postgres").connect().await.expect("connect");
        sqlx::raw_sql("create database countersign").execute(&mut c).await.expect("create database");
    }

    // The server seeds the demo; then the base backup.
    let demo = start_demo(&live, &keys);
    pg_dir(&base_backup, account);
    let live_sock = live.socket.to_str().expect("utf-8").to_owned();
    let port = live.port.to_string();
    pg_tool(
        &bin,
        account,
        "pg_basebackup",
        &[
            "-h",
            &live_sock,
            "-p",
            &port,
            "-U",
            "countersign",
            "-D",
            base_backup.to_str().expect("utf-8"),
            "-X",
            "stream",
            "-c",
            "fast",
        ],
    );

    // Documents acknowledged before the instant, then the instant, then documents after it.
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{}/api/v1/auth/login", demo.base))
        .json(&json!({"organisation": "acme", "email": "finn@acme.example", "password": demo.password, "token_delivery": "body"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login json");
    let token = login["access_token"].as_str().unwrap_or_else(|| panic!("finn signs in: {login}")).to_owned();
    let departments: Value = http
        .get(format!("{}/api/v1/departments", demo.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("departments")
        .json()
        .await
        .expect("departments json");
    let department =
        departments["items"][0]["id"].as_str().unwrap_or_else(|| panic!("a department: {departments}")).to_owned();
    let mut before = Vec::new();
    for i in 0..5 {
        before.push(raise(&http, &demo, &token, &department, &format!("drill before {i}")).await);
    }
    // A segment of their own, so the archive holds at least one segment between the base
    // backup's and the newest (backup-check is then shown to catch a gap in the middle).
    let mut c = live.conn().await;
    sqlx::query("select pg_switch_wal()").execute(&mut c).await.expect("switch wal");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let instant: String =
        sqlx::query_scalar("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
            .fetch_one(&mut c)
            .await
            .expect("instant");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut after = Vec::new();
    for i in 0..5 {
        after.push(raise(&http, &demo, &token, &department, &format!("drill after {i}")).await);
    }
    // Everything written so far reaches the archive.
    let segment: String =
        sqlx::query_scalar("select pg_walfile_name(pg_switch_wal())").fetch_one(&mut c).await.expect("switch wal");
    // Archived once the archiver says so (`archive_command` returned 0): the file appears as soon
    // as `cp` starts, and backup-check rightly calls a half-copied segment truncated.
    let archived = Instant::now();
    loop {
        let last: Option<String> = sqlx::query_scalar("select last_archived_wal from pg_stat_archiver")
            .fetch_one(&mut c)
            .await
            .expect("pg_stat_archiver");
        if last.is_some_and(|l| l.as_str() >= segment.as_str()) {
            break;
        }
        assert!(archived.elapsed() < Duration::from_secs(60), "WAL segment {segment} was never archived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(c);

    // The archive is complete for this base backup, and the base backup verifies.
    let check = backup_check(&archive, &base_backup, true);
    assert_eq!(check.status.code(), Some(0), "backup-check on the real archive: {}", said(&check));
    let report: Value = serde_json::from_slice(&check.stdout).expect("backup-check --json");
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["missing_count"], 0, "{report}");
    let needed = report["segments_needed"].as_u64().unwrap_or(0);
    assert!(needed >= 3, "the drill archives at least three segments from the base backup on: {report}");
    if bin.join("pg_verifybackup").is_file() {
        assert_eq!(report["pg_verifybackup"]["status"], "passed", "{report}");
    } else {
        assert_eq!(
            report["pg_verifybackup"]["detail"],
            "skipped: pg_verifybackup not found (looked in /usr/lib/postgresql/*/bin and PATH)"
        );
    }
    let (start_segment, end_segment) = (
        report["start_segment"].as_str().expect("start").to_owned(),
        report["end_segment"].as_str().expect("end").to_owned(),
    );

    let _ = Command::new("kill").args(["-TERM", &demo.child.id().to_string()]).status();
    let mut child = demo.child;
    let _ = child.wait();

    // The cluster is lost.
    live.stop(&bin, account);
    std::fs::remove_dir_all(&live.data).expect("lose the live cluster");

    // Restore into a fresh cluster: the base backup, then the archive replayed to the instant.
    let restore_started = Instant::now();
    let restored =
        Cluster { data: root.join("restored"), socket: pg_dir(&root.join("restored-run"), account), port: free_port() };
    let copied = Command::new("cp").arg("-a").arg(&base_backup).arg(&restored.data).status().expect("cp");
    assert!(copied.success(), "copying the base backup");
    pg_dir(&restored.data, account);
    restored.configure(&[
        format!("unix_socket_directories = '{}'", quoted(&restored.socket)),
        format!("port = {}", restored.port),
        "archive_mode = off".into(),
        format!("restore_command = 'cp {}/%f %p'", quoted(&archive)),
        format!("recovery_target_time = '{instant}+00'"),
        "recovery_target_action = 'promote'".into(),
    ]);
    std::fs::write(restored.data.join("recovery.signal"), "").expect("recovery.signal");
    if let Some(a) = account {
        chown(restored.data.join("recovery.signal"), Some(a.uid), Some(a.gid)).expect("chown");
    }
    restored.start(&bin, account);
    let mut c = restored.conn().await;
    loop {
        let recovering: bool = sqlx::query_scalar("select pg_is_in_recovery()").fetch_one(&mut c).await.expect("state");
        if !recovering {
            break;
        }
        assert!(restore_started.elapsed() < Duration::from_secs(120), "recovery never reached its target");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let restore_took = restore_started.elapsed();

    // Exactly the documents acknowledged before the instant.
    let drill: Vec<(String, String)> =
        sqlx::query_as("select id::text, title from documents where title like 'drill %' order by title")
            .fetch_all(&mut c)
            .await
            .expect("documents");
    let mut found: Vec<String> = drill.iter().map(|(id, _)| id.clone()).collect();
    found.sort();
    before.sort();
    assert_eq!(found, before, "restored drill documents: {drill:?}; after the instant: {after:?}");
    drop(c);

    // The ledger verifies on the restored cluster with the server's key.
    let verify = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&keys)
        .env("DATABASE_URL", restored.url())
        .env("RUST_LOG", "warn")
        .output()
        .expect("audit verify");
    let verified = said(&verify);
    assert!(verify.status.success(), "audit verify on the restored cluster: {verified}");
    println!("restore drill: base backup + WAL replay to {instant} UTC took {restore_took:?}; {verified}");

    restored.stop(&bin, account);

    // The archive damaged after the fact: a segment in the middle deleted, then one truncated.
    let mut middle: Vec<String> = std::fs::read_dir(&archive)
        .expect("archive")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && n.as_str() > start_segment.as_str() && n.as_str() < end_segment.as_str())
        .collect();
    middle.sort();
    let victim =
        middle.first().unwrap_or_else(|| panic!("a segment between {start_segment} and {end_segment}")).clone();
    let aside = root.join(&victim);
    std::fs::rename(archive.join(&victim), &aside).expect("set the segment aside");
    let gap = backup_check(&archive, &base_backup, false);
    assert_eq!(gap.status.code(), Some(5), "a missing segment: {}", said(&gap));
    assert!(
        said(&gap).contains(&format!("INCOMPLETE: first missing segment {victim}")),
        "names the missing segment {victim}: {}",
        said(&gap)
    );
    let json = backup_check(&archive, &base_backup, true);
    let report: Value = serde_json::from_slice(&json.stdout).expect("backup-check --json");
    assert_eq!((json.status.code(), &report["first_missing"]), (Some(5), &json!(victim)), "{report}");

    std::fs::rename(&aside, archive.join(&victim)).expect("put the segment back");
    std::fs::OpenOptions::new()
        .write(true)
        .open(archive.join(&victim))
        .expect("open")
        .set_len(1 << 20)
        .expect("truncate");
    let short = backup_check(&archive, &base_backup, false);
    assert_eq!(short.status.code(), Some(5), "a truncated segment: {}", said(&short));
    assert!(said(&short).contains(&format!("TRUNCATED  {victim}: 1048576 bytes")), "{}", said(&short));
    let _ = std::fs::remove_dir_all(&root);
}

/// `countersign admin backup-check` on the drill's archive and base backup (no database).
fn backup_check(archive: &Path, base: &Path, json: bool) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_countersign"));
    c.args(["admin", "backup-check", "--archive"]).arg(archive).arg("--base-backup").arg(base);
    if json {
        c.arg("--json");
    }
    c.env_remove("DATABASE_URL").env("RUST_LOG", "warn").output().expect("backup-check")
}

fn said(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}
