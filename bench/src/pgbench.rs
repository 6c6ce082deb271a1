//! Running the installed `pgbench` against the benchmark database and reading its TPS.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use sqlx::postgres::PgConnectOptions;

pub struct Run<'a> {
    pub options: &'a PgConnectOptions,
    pub user: &'a str,
    pub script: &'a str,
    pub clients: u32,
    /// Run length, unless `per_client` is set.
    pub seconds: u32,
    /// Run exactly this many transactions per client (`-t`) instead of `seconds` (`-T`): for
    /// scripts whose transactions consume rows, so a run never runs out of them.
    pub per_client: Option<u32>,
    /// Variables set in every client before its first transaction (`-D name=value`).
    pub defines: &'a [(&'a str, String)],
}

/// Returns transactions per second (excluding connection time).
pub fn run(r: &Run<'_>) -> anyhow::Result<f64> {
    let bin = store::embedded::find_binaries().context("pgbench comes with the PostgreSQL server binaries")?;
    let script = std::env::temp_dir().join(format!("countersign-bench-{}.sql", std::process::id()));
    std::fs::write(&script, r.script)?;
    let host = match r.options.get_socket() {
        Some(dir) => dir.display().to_string(),
        None => r.options.get_host().to_owned(),
    };
    let length = match r.per_client {
        Some(n) => ["-t".to_owned(), n.to_string()],
        None => ["-T".to_owned(), r.seconds.to_string()],
    };
    let out = Command::new(Path::new(&bin).join("pgbench"))
        .args(["-n", "-M", "prepared", "-f"])
        .arg(&script)
        .args(["-c", &r.clients.to_string(), "-j", "2"])
        .args(length)
        .args(r.defines.iter().flat_map(|(k, v)| ["-D".to_owned(), format!("{k}={v}")]))
        .args(["-h", &host, "-p", &r.options.get_port().to_string(), "-U", r.user])
        .arg(r.options.get_database().unwrap_or("postgres"))
        .output()
        .context("running pgbench")?;
    let _ = std::fs::remove_file(&script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("pgbench failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    }
    stdout
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no tps in pgbench output: {stdout}"))
}
