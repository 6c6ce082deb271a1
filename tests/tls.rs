//! TLS terminated by the server (`serve --tls-cert --tls-key`, issue 19): HTTPS with HSTS, no
//! plain HTTP on the TLS port, the certificate read again on SIGHUP (a broken pair on disk keeps
//! the old one in service), and bad settings refused by name before anything listens.
//!
//! Certificates are made by `openssl` and fetched with `curl --cacert`, both installed by
//! `.ci/run`; the test fails (never skips) without them.

#[path = "common/tools.rs"]
mod tools;

use tools::{certificate, free_port, tool};

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use store::testing::TestDb;

/// `curl` trusting only `ca`: the answer's head and body, or the failure.
fn fetch(ca: &Path, url: &str) -> Output {
    tool("curl").args(["-sS", "-i", "--max-time", "5", "--cacert"]).arg(ca).arg(url).output().expect("curl")
}

fn serve(db: &TestDb, dir: &Path, port: u16, crt: &Path, key: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["serve", "--migrate", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.join("data"))
        .arg("--tls-cert")
        .arg(crt)
        .arg("--tls-key")
        .arg(key)
        .env("DATABASE_URL", db.url())
        .env_remove("COUNTERSIGN_LISTEN")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("server.log")).expect("log"))
        .spawn()
        .expect("spawn")
}

#[tokio::test]
async fn https_with_hsts_and_a_certificate_renewed_on_sighup() {
    let db = TestDb::new().await;
    let dir = std::env::temp_dir().join(format!("cs-tls-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (first, first_key) = certificate(&dir, "first");
    let (live_crt, live_key) = (dir.join("live.crt"), dir.join("live.key"));
    std::fs::copy(&first, &live_crt).expect("copy");
    std::fs::copy(&first_key, &live_key).expect("copy");
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}/readyz");
    let mut server = serve(&db, &dir, port, &live_crt, &live_key);
    let log = || std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();

    let started = Instant::now();
    let answer = loop {
        let o = fetch(&first, &url);
        if o.status.success() {
            break String::from_utf8_lossy(&o.stdout).into_owned();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never served HTTPS:\n{}", log());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("strict-transport-security: max-age=31536000; includesubdomains"),
        "HSTS over the server's own TLS:\n{answer}"
    );
    // Plain HTTP on the TLS port gets no answer from the application.
    let plain = tool("curl")
        .args(["-sS", "--max-time", "5", &format!("http://127.0.0.1:{port}/readyz")])
        .output()
        .expect("curl");
    assert!(!plain.status.success(), "plain HTTP was served: {}", String::from_utf8_lossy(&plain.stdout));

    // A renewed certificate is served after SIGHUP, without a restart.
    let (second, second_key) = certificate(&dir, "second");
    std::fs::copy(&second, &live_crt).expect("copy");
    std::fs::copy(&second_key, &live_key).expect("copy");
    let _ = Command::new("kill").args(["-HUP", &server.id().to_string()]).status();
    let renewed = Instant::now();
    while !fetch(&second, &url).status.success() {
        assert!(renewed.elapsed() < Duration::from_secs(10), "the renewed certificate was never served:\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!fetch(&first, &url).status.success(), "the old certificate is still served after the reload");

    // A broken pair on disk: the reload fails loudly and the current certificate stays.
    std::fs::write(&live_key, "not a key").expect("write");
    let _ = Command::new("kill").args(["-HUP", &server.id().to_string()]).status();
    let waited = Instant::now();
    while !log().contains("TLS certificate reload failed") {
        assert!(waited.elapsed() < Duration::from_secs(10), "no reload failure logged:\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(fetch(&second, &url).status.success(), "a failed reload took the certificate out of service");
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let _ = server.wait();

    // Bad settings are refused by name before anything listens.
    let refused = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(["serve", "--migrate", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
            .arg(dir.join("data"))
            .args(args)
            .env("DATABASE_URL", db.url())
            .env_remove("COUNTERSIGN_LISTEN")
            .output()
            .expect("run");
        assert!(!o.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let crt = live_crt.to_str().expect("utf-8");
    assert!(refused(&["--tls-cert", crt]).contains("--tls-key"), "a certificate without a key");
    let missing = refused(&["--tls-cert", "/nonexistent/c.pem", "--tls-key", crt]);
    assert!(missing.contains("/nonexistent/c.pem") && missing.contains("--tls-cert"), "{missing}");
    let mismatched =
        refused(&["--tls-cert", second.to_str().expect("utf-8"), "--tls-key", first_key.to_str().expect("utf-8")]);
    assert!(mismatched.contains("does not fit the certificate"), "{mismatched}");
    assert!(!mismatched.contains("panicked"), "{mismatched}");
    let _ = std::fs::remove_dir_all(&dir);
}
