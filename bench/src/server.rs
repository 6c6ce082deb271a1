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
        let mut child = tokio::process::Command::new(bin)
            .arg(command)
            .args(["--listen", "127.0.0.1:0", "--login-limit", "100000/1s", "--data-dir"])
            .arg(data)
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
