//! The binary: configuration errors name the setting; the embedded cluster starts, is reused,
//! and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn countersign() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_countersign"));
    c.env_remove("DATABASE_URL").env_remove("COUNTERSIGN_LISTEN").env("COUNTERSIGN_LOG_FORMAT", "json");
    c
}

#[test]
fn bad_configuration_names_the_setting_and_exits_nonzero() {
    for (args, env, needle) in [
        (vec!["serve", "--listen", "not-an-address"], None, "--listen"),
        (vec!["serve", "--trusted-proxies", "10.0.0.0/8,banana"], None, "banana"),
        (vec!["serve", "--db-max-connections", "0"], None, "--db-max-connections"),
        (vec!["migrate"], Some(("DATABASE_URL", "mysql://root:hunter2@localhost/x")), "DATABASE_URL"),
        (vec!["serve"], Some(("COUNTERSIGN_LOG_FORMAT", "xml")), "log-format"),
    ] {
        let mut c = countersign();
        c.args(&args);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let out = c.output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "a password was printed: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

fn wait_ready(base: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(out) = Command::new("curl").args(["-sf", &format!("{base}/readyz")]).output()
            && out.status.success()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn serve_once(data: &Path, port: u16) -> String {
    let mut child = countersign()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let base = format!("http://127.0.0.1:{port}");
    let ready = wait_ready(&base);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().expect("wait");
    let mut log = String::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            log.push_str(&line);
            log.push('\n');
        }
    }
    assert!(ready, "server never became ready:\n{log}");
    assert!(status.success(), "SIGTERM should exit cleanly ({status}):\n{log}");
    log
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

#[test]
fn embedded_cluster_starts_is_reused_and_stops_on_sigterm() {
    if countersign_has_no_pg_binaries() {
        panic!("PostgreSQL server binaries are required for this test (apt-get install postgresql)");
    }
    let dir = std::env::temp_dir().join(format!("countersign-embedded-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");

    let first = serve_once(&dir, free_port());
    assert!(first.contains("initialising embedded PostgreSQL cluster"), "{first}");
    assert!(first.contains("stopped embedded PostgreSQL"), "{first}");
    assert!(!dir.join("pg/cluster/postmaster.pid").exists(), "postgres still running after shutdown");

    let second = serve_once(&dir, free_port());
    assert!(!second.contains("initialising"), "the cluster should be reused:\n{second}");
    assert!(second.contains("started embedded PostgreSQL"), "{second}");
    assert!(!dir.join("pg/cluster/postmaster.pid").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

fn countersign_has_no_pg_binaries() -> bool {
    store::embedded::find_binaries().is_err()
}

#[test]
fn missing_postgres_binaries_give_an_install_hint() {
    let dir = std::env::temp_dir().join(format!("countersign-nobin-{}", std::process::id()));
    let out = countersign()
        .args(["migrate", "--data-dir"])
        .arg(&dir)
        .env("COUNTERSIGN_PG_BIN", "/nonexistent/bin")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("COUNTERSIGN_PG_BIN") && stderr.contains("no initdb"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
