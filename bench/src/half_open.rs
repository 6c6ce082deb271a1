//! Half-open connections against a real server (issue 19's reliability figure): a normal client's
//! latency with nobody else connected, then with `--half-open` connections (500 by default) that
//! each sent half a request head and then nothing, held open for the whole measurement. The
//! target: those connections do not slow the normal client's p99 by more than 2×.
//!
//! The normal client opens a fresh TCP connection for every request (`GET /api/v1/status`, which
//! answers from the server's memory), so the accept path, where idle connections would hurt, is
//! in every sample. The server runs with a 300 s head timeout so that no half-open connection is
//! cut off during the run (the worst case: the default 20 s would free them sooner). Both phases
//! run in one process against one server, one after the other, so the baseline is measured on the
//! same machine under the same load.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use store::testing::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::server::{self, Server};

#[derive(clap::Parser)]
pub struct Args {
    /// Connections that send half a request head and nothing more.
    #[arg(long, default_value_t = 500)]
    half_open: usize,
    /// Requests the normal client makes in each phase (after 50 unmeasured ones).
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// The `countersign` binary (default: target/release/countersign, then target/debug).
    #[arg(long)]
    server: Option<PathBuf>,
}

const TARGET_RATIO: f64 = 2.0;

/// One request on a fresh connection; its latency in microseconds.
async fn one(addr: SocketAddr) -> anyhow::Result<u64> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").await?;
    let mut answer = Vec::with_capacity(1024);
    s.read_to_end(&mut answer).await?;
    let took = started.elapsed().as_micros() as u64;
    if !answer.starts_with(b"HTTP/1.1 200") {
        bail!("the normal client was answered: {}", String::from_utf8_lossy(&answer[..answer.len().min(200)]));
    }
    Ok(took)
}

/// The normal client's sorted latencies over `n` requests (after a warm-up).
async fn phase(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<u64>> {
    for _ in 0..50 {
        one(addr).await?;
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(one(addr).await?);
    }
    v.sort_unstable();
    Ok(v)
}

/// A connection that sent half a request head and then nothing.
async fn half_open(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: ben").await?;
    Ok(s)
}

/// Whether the server has left `s` open (it neither answered nor closed it).
fn still_open(s: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Runs the benchmark and prints its report.
///
/// # Errors
/// The server does not start, or answers the normal client anything but 200, or closes a
/// half-open connection during the run.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let bin = server::binary(args.server.as_deref())?;
    let db = TestDb::new().await;
    let data = server::data_dir("half-open")?;
    let srv = Server::start_with(&bin, "serve", &db, &data, &["--head-timeout", "300"]).await?;
    let addr: SocketAddr = srv.base.trim_start_matches("http://").parse().context("server address")?;
    println!("half-open: {} connections, {} requests per phase, {}", args.half_open, args.requests, bin.display());
    println!("  load average before: {}", server::load_average());

    let quiet = phase(addr, args.requests).await?;
    let mut held = Vec::with_capacity(args.half_open);
    for _ in 0..args.half_open {
        held.push(half_open(addr).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let loaded = phase(addr, args.requests).await?;
    let open = held.iter().filter(|s| still_open(s)).count();
    if open != held.len() {
        bail!("the server closed {} of the {} half-open connections during the run", held.len() - open, held.len());
    }
    drop(held);
    srv.stop().await?;
    let _ = std::fs::remove_dir_all(&data);

    let p = |v: &[u64], q: f64| server::percentile_ms(v, q);
    println!(
        "  alone:            p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        p(&quiet, 0.5),
        p(&quiet, 0.99),
        p(&quiet, 1.0)
    );
    println!(
        "  beside {:>4} half-open: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        args.half_open,
        p(&loaded, 0.5),
        p(&loaded, 0.99),
        p(&loaded, 1.0)
    );
    let ratio = p(&loaded, 0.99) / p(&quiet, 0.99).max(0.001);
    println!("  p99 ratio {ratio:.2}x (target <= {TARGET_RATIO}x): {}", server::verdict(ratio <= TARGET_RATIO));
    println!("  load average after: {}", server::load_average());
    Ok(())
}
