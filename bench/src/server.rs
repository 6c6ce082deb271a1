//! A real `countersign` server process for the benchmarks that measure through HTTP (`login`,
//! `inbox`): started on a fresh database on a loopback port it picks itself, its pipes drained.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use store::testing::TestDb;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A `countersign` process listening on a loopback port it chose itself.
pub struct Server {
    child: tokio::process::Child,
    pub pid: u32,
    /// `http://127.0.0.1:<port>`
    pub base: String,
}

impl Server {
    /// Starts `bin <command>` on `db` with its data under `data`, and waits until it listens.
    pub async fn start(bin: &Path, command: &str, db: &TestDb, data: &Path) -> anyhow::Result<Self> {
        Self::start_with(bin, command, db, data, &[]).await
    }

    /// [`Server::start`] with more flags (e.g. `--max-upload-mib`).
    pub async fn start_with(
        bin: &Path,
        command: &str,
        db: &TestDb,
        data: &Path,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new(bin)
            .arg(command)
            .args(["--listen", "127.0.0.1:0", "--login-limit", "100000/1s", "--data-dir"])
            .arg(data)
            .args(extra)
            .env("DATABASE_URL", db.url())
            .env("COUNTERSIGN_LOG_FORMAT", "json")
            .env_remove("COUNTERSIGN_LISTEN")
            .env_remove("COUNTERSIGN_APP_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("server pid")?;
        // Drain both pipes for the process's whole life (a full pipe would stall it), and
        // hand over the address from its "listening" log line.
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel::<String>();
        let stderr = child.stderr.take().context("server stderr")?;
        let stdout = child.stdout.take().context("server stdout")?;
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(_)) = lines.next_line().await {}
        });
        tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // Once the address is known only errors matter: every other line (one access line
                // per request) is skipped unparsed, so draining costs the measured clients' side
                // as little CPU as it can.
                if addr_tx.is_none() && !line.contains(r#""level":"ERROR""#) {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                if let Some(addr) = v.get("addr").and_then(|a| a.as_str())
                    && v.get("message").and_then(|m| m.as_str()) == Some("countersign listening")
                    && let Some(tx) = addr_tx.take()
                {
                    let _ = tx.send(addr.to_owned());
                } else if v.get("level").and_then(|l| l.as_str()) == Some("ERROR") {
                    eprintln!("  server: {line}");
                }
            }
        });
        let addr = tokio::time::timeout(Duration::from_secs(120), addr_rx)
            .await
            .context("the server did not start listening within 120 s")?
            .context("the server exited before listening")?;
        Ok(Self { child, pid, base: format!("http://{addr}") })
    }

    /// `kill -9`: the process gets no chance to finish anything.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        let _ = std::process::Command::new("kill").args(["-KILL", &self.pid.to_string()]).status();
        self.child.wait().await?;
        Ok(())
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await.is_err() {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// The server binary: `path`, or `countersign` next to this executable.
pub fn binary(path: Option<&Path>) -> anyhow::Result<PathBuf> {
    let bin = match path {
        Some(p) => p.to_owned(),
        None => std::env::current_exe()?.with_file_name("countersign"),
    };
    if !bin.exists() {
        bail!("{} not found: build it first (cargo build --release --bin countersign) or pass --server", bin.display());
    }
    Ok(bin)
}

/// A fresh data directory for one server.
pub fn data_dir(what: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("countersign-bench-{what}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The machine's load average (1, 5, 15 minutes), for the report.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Signs `email` in to organisation `org` (tokens in the body) and returns the access token
/// (`Authorization: Bearer …`, or the `cs_access` cookie).
pub async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    org: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    #[derive(serde::Deserialize)]
    struct Tokens {
        access_token: String,
    }
    let r = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"organisation": org, "email": email, "password": password, "token_delivery": "body"}))
        .send()
        .await?;
    if r.status() != reqwest::StatusCode::OK {
        bail!("login of {email} answered {}: {}", r.status(), r.text().await.unwrap_or_default());
    }
    Ok(r.json::<Tokens>().await?.access_token)
}

/// The `p` quantile (0..=1, nearest rank) of sorted microseconds, in milliseconds.
pub fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// A process's `VmRSS` in bytes (`/proc/<pid>/status`).
pub fn vm_rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .context("no VmRSS in /proc/<pid>/status")
}

/// Samples a process's `VmRSS` every `every` on its own thread (so a busy runtime cannot delay
/// it) until stopped; [`RssSampler::stop`] returns the largest value seen and the sample count.
pub struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut max, mut n) = (0u64, 0u64);
            loop {
                if let Ok(v) = vm_rss(pid) {
                    max = max.max(v);
                    n += 1;
                }
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(every);
            }
            (max, n)
        });
        Self { stop, thread }
    }

    pub fn stop(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or((0, 0))
    }
}

/// "met" or "NOT met".
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}
