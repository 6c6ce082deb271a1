//! What the benchmarks that time a change on one node until another node acts on it share
//! (`revocation`, `deprovision`): latency percentiles, their table, and the floor both stand on —
//! a raw `NOTIFY` → `LISTEN` round trip on two plain connections, measured in the same run.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::{ConnectOptions, Connection};
use store::testing::TestDb;

/// Nearest-rank percentiles of a set of latencies.
pub struct Stats {
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

#[must_use]
pub fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |p: f64| {
        let rank = (p * v.len() as f64).ceil() as usize;
        v.get(rank.saturating_sub(1)).copied().unwrap_or_default()
    };
    Stats { p50: at(0.50), p95: at(0.95), p99: at(0.99), max: v.last().copied().unwrap_or_default() }
}

#[must_use]
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints `rows` as a table of p50, p95, p99 and max in milliseconds.
pub fn print_table(rows: &[(&str, &Stats)]) {
    println!();
    println!("  {:<48} {:>8} {:>8} {:>8} {:>8}", "ms", "p50", "p95", "p99", "max");
    for (name, s) in rows {
        println!("  {:<48} {:>8.2} {:>8.2} {:>8.2} {:>8.2}", name, ms(s.p50), ms(s.p95), ms(s.p99), ms(s.max));
    }
    println!();
}

/// `n` round trips (after 20 unmeasured ones) of `SELECT pg_notify(...)` on one plain connection
/// until a second plain connection, listening, receives it.
///
/// # Errors
/// A connection failing, or a notification lost (5 s) or garbled.
pub async fn notify_round_trips(db: &TestDb, n: u32) -> anyhow::Result<Vec<Duration>> {
    let options = db.admin_options();
    let mut listener =
        sqlx::postgres::PgListener::connect_with(&sqlx::PgPool::connect_with(options.clone()).await?).await?;
    listener.listen("countersign_bench_baseline").await?;
    let mut sender = options.connect().await?;
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n + 20 {
        let started = Instant::now();
        sqlx::query("select pg_notify('countersign_bench_baseline', $1)")
            .bind(i.to_string())
            .execute(&mut sender)
            .await?;
        let got =
            tokio::time::timeout(Duration::from_secs(5), listener.recv()).await.context("baseline NOTIFY lost")??;
        if got.payload() != i.to_string() {
            bail!("baseline: unexpected payload {}", got.payload());
        }
        if i >= 20 {
            out.push(started.elapsed());
        }
    }
    sender.close().await?;
    Ok(out)
}
