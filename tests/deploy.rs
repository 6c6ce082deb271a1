//! The files an operator deploys with (issue 19): the systemd unit in `dist/systemd` is accepted
//! by `systemd-analyze verify` and stays hardened (`systemd-analyze security --offline` exposure at
//! most 2.0 of 10); the example configuration in `dist/` is one `config check` accepts.

#[path = "common/tools.rs"]
mod tools;

use tools::{certificate, free_port, tool};

use std::path::Path;
use std::process::Command;

const UNIT: &str = "dist/systemd/countersign.service";
/// The exposure `systemd-analyze security` gives the unit today is 1.2 ("OK"); this is the bound.
const MOST_EXPOSURE: f64 = 2.0;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The unit, with its ExecStart pointed at the binary under test (verify checks it exists).
fn unit_under_test(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(root().join(UNIT)).expect("unit");
    assert!(text.contains("ExecStart=/usr/local/bin/countersign serve --config /etc/countersign/countersign.toml"));
    let path = dir.join("countersign.service");
    std::fs::write(&path, text.replace("/usr/local/bin/countersign", env!("CARGO_BIN_EXE_countersign")))
        .expect("write");
    path
}

#[test]
fn the_systemd_unit_verifies_and_stays_hardened() {
    assert!(
        Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success()),
        "this test needs systemd-analyze (Debian's systemd package)"
    );
    let dir = tempfile::tempdir().expect("dir");
    let unit = unit_under_test(dir.path());
    let verify = Command::new("systemd-analyze").arg("verify").arg(&unit).output().expect("verify");
    let said = String::from_utf8_lossy(&verify.stderr).into_owned() + &String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");

    let security =
        Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&unit).output().expect("security");
    let report = String::from_utf8_lossy(&security.stdout).into_owned();
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for countersign.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure figure in:\n{report}{}", String::from_utf8_lossy(&security.stderr)));
    println!("systemd-analyze security: exposure {exposure} of 10");
    assert!(exposure <= MOST_EXPOSURE, "the unit's exposure rose to {exposure}:\n{report}");
    for must in
        ["DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "UMask=0077"]
    {
        assert!(std::fs::read_to_string(&unit).expect("unit").contains(must), "the unit lost {must:?}");
    }
}

#[test]
fn the_example_configuration_is_accepted_by_config_check() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("database-url");
    std::fs::write(&secret, "postgres://countersign:s3cret-example@db.internal/countersign\n").expect("write");
    let example = std::fs::read_to_string(root().join("dist/countersign.example.toml")).expect("example");
    let config = dir.path().join("countersign.toml");
    std::fs::write(&config, example.replace("/etc/countersign/database-url", secret.to_str().expect("utf-8")))
        .expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["config", "check", "--config"])
        .arg(&config)
        .env_remove("DATABASE_URL")
        .env_remove("COUNTERSIGN_LISTEN")
        .output()
        .expect("run");
    let said = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("database-url = (set, redacted)  # secret file"), "{said}");
    assert!(said.contains("public-url = \"https://approvals.example.com\"  # configuration file"), "{said}");
    assert!(!said.contains("s3cret-example"), "{said}");
}

/// A server process on `127.0.0.1:port` (killed on drop), logging at info into `dir/server.log`.
struct Server {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Server {
    fn start(db: &store::testing::TestDb, dir: &Path, port: u16, extra: &[&str]) -> Self {
        let log = dir.join("server.log");
        let child = Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir.join("data"))
            .args(extra)
            .env("DATABASE_URL", db.url())
            .env_remove("COUNTERSIGN_LISTEN")
            .env_remove("COUNTERSIGN_TRUSTED_PROXIES")
            .env_remove("COUNTERSIGN_MANAGEMENT_LISTEN")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn");
        let s = Self { child, log };
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < std::time::Duration::from_secs(60), "never listened:\n{}", s.log());
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// `curl -i` from the loopback address `from`, with extra arguments: head and body.
fn curl(from: &str, args: &[&str]) -> String {
    let o =
        tool("curl").args(["-sS", "-i", "--max-time", "10", "--interface", from]).args(args).output().expect("curl");
    assert!(o.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The client address the server's access log line recorded for the request with this id.
fn logged_client(server: &Server, request_id: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let log = server.log();
        // The log is JSON lines; the access line carries the request's span.
        let access = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "access" && v["span"]["request_id"].as_str() == Some(request_id));
        if let Some(v) = access {
            return v["span"]["client_ip"].as_str().unwrap_or_else(|| panic!("no client_ip in {v}")).to_owned();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "no access line for {request_id}:\n{log}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// nginx (Debian's) in front of the server with `dist/nginx/countersign.conf`: TLS ends at nginx,
/// the server believes only that proxy (`--trusted-proxies 127.0.0.1/32`). The client connects
/// from another loopback address (127.0.0.2), so the addresses can be told apart:
///
/// - through nginx, the server records the client's address (not nginx's, not one the client
///   claims in its own `X-Forwarded-For`) and, seeing `X-Forwarded-Proto: https` from its proxy,
///   sends HSTS;
/// - straight to the server, the same spoofed headers are ignored: the peer's address is
///   recorded and no HSTS is sent for a plain-HTTP request claiming to be HTTPS.
#[tokio::test]
async fn nginx_in_front_passes_the_client_address_and_https_and_a_spoofed_header_is_ignored() {
    let db = store::testing::TestDb::new().await;
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    let (crt, key) = certificate(d, "proxy");

    let (app, tls, plain) = (free_port(), free_port(), free_port());
    let server = Server::start(&db, d, app, &["--trusted-proxies", "127.0.0.1/32"]);

    let site = std::fs::read_to_string(root().join("dist/nginx/countersign.conf")).expect("example");
    let site = site
        .replace("server 127.0.0.1:8080;", &format!("server 127.0.0.1:{app};"))
        .replace("listen 443 ssl http2;", &format!("listen 127.0.0.1:{tls} ssl http2;"))
        .replace("listen 80;", &format!("listen 127.0.0.1:{plain};"))
        .replace("/etc/ssl/countersign/fullchain.pem", crt.to_str().expect("utf-8"))
        .replace("/etc/ssl/countersign/privkey.pem", key.to_str().expect("utf-8"));
    assert!(site.contains(&format!("127.0.0.1:{tls} ssl")), "the example's listen line changed: update this test");
    std::fs::write(d.join("site.conf"), site).expect("site");
    let p = d.display();
    let main = format!(
        "daemon off; master_process off; pid {p}/nginx.pid; error_log {p}/nginx-error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{ access_log off; client_body_temp_path {p}/body; proxy_temp_path {p}/proxy;\n\
         fastcgi_temp_path {p}/fcgi; uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;\n\
         include {p}/site.conf; }}\n"
    );
    std::fs::write(d.join("nginx.conf"), main).expect("conf");
    let test = tool("nginx").args(["-t", "-p"]).arg(d).arg("-c").arg(d.join("nginx.conf")).output().expect("nginx -t");
    assert!(test.status.success(), "nginx -t: {}", String::from_utf8_lossy(&test.stderr));
    let _nginx = Killed(
        tool("nginx")
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx"),
    );
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", tls)).is_err() {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "nginx never listened");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // Through the proxy, over TLS, with a spoofed address of the client's own.
    let via = curl(
        "127.0.0.2",
        &[
            "--cacert",
            crt.to_str().expect("utf-8"),
            "-H",
            "X-Forwarded-For: 203.0.113.7",
            "-H",
            "X-Request-Id: via-nginx",
            &format!("https://127.0.0.1:{tls}/healthz"),
        ],
    );
    assert!(via.starts_with("HTTP/"), "{via}");
    assert!(via.lines().next().is_some_and(|l| l.contains(" 200")), "{via}");
    assert!(via.to_ascii_lowercase().contains("strict-transport-security: max-age="), "HSTS through the proxy:\n{via}");
    assert_eq!(
        logged_client(&server, "via-nginx"),
        "127.0.0.2",
        "the client's address, not nginx's nor the spoofed one"
    );
    // Plain HTTP at the proxy only redirects to HTTPS.
    let redirect = curl("127.0.0.2", &[&format!("http://127.0.0.1:{plain}/healthz")]);
    assert!(redirect.contains(" 301") && redirect.contains("Location: https://"), "{redirect}");

    // Straight to the server, the same claims from a client that is no proxy are ignored.
    let direct = curl(
        "127.0.0.2",
        &[
            "-H",
            "X-Forwarded-For: 203.0.113.7",
            "-H",
            "X-Forwarded-Proto: https",
            "-H",
            "X-Request-Id: direct-spoof",
            &format!("http://127.0.0.1:{app}/healthz"),
        ],
    );
    assert!(direct.lines().next().is_some_and(|l| l.contains(" 200")), "{direct}");
    assert!(!direct.to_ascii_lowercase().contains("strict-transport-security"), "HSTS over plain HTTP:\n{direct}");
    assert_eq!(logged_client(&server, "direct-spoof"), "127.0.0.2", "the spoofed X-Forwarded-For was believed");
}

/// A child process killed when the test ends, passed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `serve --management-listen`: the probes and the metrics on their own address, nothing of the
/// application there, and `/metrics` no longer on the public listener. An address already taken
/// is refused by name before anything is served.
#[tokio::test]
async fn the_management_listener_serves_probes_and_metrics_and_the_public_one_no_metrics() {
    let db = store::testing::TestDb::new().await;
    let dir = tempfile::tempdir().expect("dir");
    let (public, management) = (free_port(), free_port());
    let server = Server::start(&db, dir.path(), public, &["--management-listen", &format!("127.0.0.1:{management}")]);
    let get = |port: u16, path: &str| {
        let url = format!("http://127.0.0.1:{port}{path}");
        async move {
            let r = reqwest::get(&url).await.expect("get");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    let started = std::time::Instant::now();
    while get(management, "/healthz").await.0 != 200 {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{}", server.log());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, metrics) = get(management, "/metrics").await;
    assert_eq!(status, 200, "{metrics}");
    assert!(metrics.contains("countersign_build_info"), "{metrics}");
    assert_eq!(get(management, "/readyz").await.0, 200);
    for path in ["/api/v1/status", "/sign-in", "/api/openapi.json"] {
        assert_eq!(get(management, path).await.0, 404, "{path} on the management listener");
    }
    let (status, body) = get(public, "/metrics").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains(r#""code":"not_found""#), "{body}");
    assert_eq!(get(public, "/healthz").await.0, 200);
    assert_eq!(get(public, "/readyz").await.0, 200);
    assert!(server.log().contains("management listening"), "{}", server.log());

    // The management address taken: refused by name, exit non-zero.
    let o = Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(dir.path().join("data2"))
        .args(["--management-listen", &format!("127.0.0.1:{management}")])
        .env("DATABASE_URL", db.url())
        .env_remove("COUNTERSIGN_LISTEN")
        .output()
        .expect("run");
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{said}");
    assert!(said.contains("--management-listen"), "{said}");
}
