//! Sign-in throughput and memory of a real server process: `countersign serve` started on a fresh
//! database, logins and refreshes through HTTP on loopback, the process's resident memory read
//! from `/proc`, and raw argon2id at the server's parameters and thread count measured in the
//! same run (the floor a login cannot beat). Then `countersign demo`'s memory after seeding.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use identity::directory::{memberships, tenants, users};
use identity::signin::passwords::{ITERATIONS, LANES, MEMORY_KIB, SERVER_THREADS};
use identity::{EmailAddress, JoinPolicy, Role, Slug};
use sqlx::{ConnectOptions, Connection};
use store::testing::TestDb;

use crate::server::{self, Server, data_dir, load_average};

#[derive(clap::Args)]
pub struct Args {
    /// Members seeded in the benchmark organisation (logins cycle through them).
    #[arg(long, default_value_t = 64)]
    members: u32,
    /// Concurrent HTTP clients (each one request at a time, keep-alive).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds of sustained logins (after a warm-up of two logins per client).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds of refreshes (after one unmeasured second).
    #[arg(long, default_value_t = 10)]
    refresh_seconds: u64,
    /// Seconds of raw argon2id per variant.
    #[arg(long, default_value_t = 5)]
    raw_seconds: u64,
    /// Seconds after the login load stops at which the server's RSS must be back down.
    #[arg(long, default_value_t = 30)]
    settle: u64,
    /// The server binary (default: `countersign` next to this executable: build it with
    /// `cargo build --release --bin countersign`).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Skip the `countersign demo` measurement.
    #[arg(long)]
    no_demo: bool,
}

const PASSWORD: &str = "tulip lantern orbit 1987";
const ORG: &str = "bench-login";
const MIB: f64 = 1024.0 * 1024.0;

const IDLE_RSS_MIB: f64 = 40.0;
const LOAD_RSS_MIB: f64 = 150.0;
const SETTLED_RSS_MIB: f64 = 60.0;
const LOGIN_RATIO: f64 = 0.90;
const REFRESH_PER_CORE: f64 = 1000.0;

/// Resident memory of a process, from `/proc/<pid>/status` (bytes).
#[derive(Clone, Copy, Default)]
struct Rss {
    rss: u64,
    anon: u64,
    file: u64,
    /// High-water mark since the process started.
    hwm: u64,
}

fn rss(pid: u32) -> anyhow::Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/<pid>/status")?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    Ok(Rss { rss: kib("VmRSS:"), anon: kib("RssAnon:"), file: kib("RssFile:"), hwm: kib("VmHWM:") })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat` (USER_HZ = 100).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU seconds of the threads of `pid` whose name starts with `prefix` (the hashing threads are
/// named `argon2-<n>`).
fn threads_cpu_secs(pid: u32, prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0.0 };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| {
            let tid = t.file_name().to_string_lossy().into_owned();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
            if comm.trim().starts_with(prefix) { cpu_secs(&format!("{pid}/task/{tid}")) } else { None }
        })
        .sum()
}

/// CPU of the benchmark's own process, the server process and the database's backends.
#[derive(Clone, Default)]
struct Cpu {
    bench: f64,
    server: f64,
    /// The server's hashing threads (part of `server`).
    hashing: f64,
    backends: std::collections::HashMap<String, f64>,
}

impl Cpu {
    async fn now(server: u32, admin: &mut sqlx::PgConnection, db: &str) -> anyhow::Result<Self> {
        let pids: Vec<i32> =
            sqlx::query_scalar("select pid from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()")
                .bind(db)
                .fetch_all(admin)
                .await?;
        let backends = pids.iter().filter_map(|p| cpu_secs(&p.to_string()).map(|c| (p.to_string(), c))).collect();
        Ok(Self {
            bench: cpu_secs("self").unwrap_or_default(),
            server: cpu_secs(&server.to_string()).unwrap_or_default(),
            hashing: threads_cpu_secs(server, "argon2-"),
            backends,
        })
    }

    /// (bench, server, database) CPU seconds spent since `before`.
    fn since(&self, before: &Self) -> (f64, f64, f64) {
        let db = self.backends.iter().map(|(p, c)| c - before.backends.get(p).copied().unwrap_or(0.0)).sum();
        (self.bench - before.bench, self.server - before.server, db)
    }

    /// CPU seconds of the server's hashing threads since `before`.
    fn hashing_since(&self, before: &Self) -> f64 {
        self.hashing - before.hashing
    }
}

/// A fresh organisation with `n` members, each with [`PASSWORD`], through the domain functions.
async fn seed(db: &TestDb, n: u32) -> anyhow::Result<Vec<String>> {
    let who = audit::Who::system("bench:login");
    let mut b = db.store.bypass("bench", "seed the login benchmark").await?;
    let t = tenants::create(
        &mut b,
        &who,
        &tenants::NewTenant {
            slug: Slug::parse(ORG)?,
            name: "Login Bench".into(),
            allowed_email_domains: vec!["bench.example".into()],
            join_policy: JoinPolicy::AdminApproval,
        },
    )
    .await?;
    b.commit().await?;
    let hasher = identity::signin::passwords::Hasher::new(SERVER_THREADS)?;
    let mut emails = Vec::new();
    let mut work = Vec::new();
    for i in 0..n {
        let email = format!("member{i}@bench.example");
        emails.push(email.clone());
        let (store, hasher, who) = (db.store.clone(), hasher.clone(), who.clone());
        work.push(tokio::spawn(async move {
            let addr = EmailAddress::parse(&email)?;
            let mut g = store.global_tx().await?;
            let u = users::create(&mut g, &who, &addr, &format!("Member {i}")).await?;
            let pw = secrecy::SecretString::from(PASSWORD);
            identity::signin::account::set_password(&mut g, &who, &hasher, u.id, &pw, &[]).await?;
            g.commit().await?;
            let mut tx = store.tenant_tx(t.id).await?;
            let m =
                memberships::NewMembership { user_id: u.id, role: Role::Staff, department_id: None, valid_until: None };
            memberships::add(&mut tx, &who, &m).await?;
            tx.commit().await?;
            Ok::<_, anyhow::Error>(())
        }));
    }
    for w in work {
        w.await??;
    }
    Ok(emails)
}

/// argon2id hashes per second on `threads` threads at the server's parameters: with one reused
/// memory per thread (what the server's hashing threads do), or through the crate's
/// `hash_password` (19 MiB allocated per hash).
fn raw_rate(threads: usize, seconds: u64, reuse: bool) -> anyhow::Result<(f64, f64)> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let counts = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let params = params.clone();
                s.spawn(move || {
                    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
                    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
                    let mut memory = vec![Block::default(); params.block_count()];
                    let mut out = [0u8; 32];
                    let mut n = 0u64;
                    let cpu_before = cpu_secs("thread-self").unwrap_or_default();
                    while Instant::now() < deadline {
                        let ok = if reuse {
                            argon
                                .hash_password_into_with_memory(
                                    PASSWORD.as_bytes(),
                                    b"sixteen byte salt",
                                    &mut out,
                                    &mut memory,
                                )
                                .is_ok()
                        } else {
                            argon.hash_password(PASSWORD.as_bytes(), &salt).is_ok()
                        };
                        n += u64::from(ok);
                    }
                    (n, Instant::now(), cpu_secs("thread-self").unwrap_or_default() - cpu_before)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
    });
    let (mut total, mut cpu) = (0, 0.0);
    let mut end = started;
    for c in counts {
        let (n, at, used) = c.map_err(|_| anyhow::anyhow!("a hashing thread panicked"))?;
        total += n;
        cpu += used;
        end = end.max(at);
    }
    Ok((total as f64 / (end - started).as_secs_f64(), cpu * 1000.0 / total.max(1) as f64))
}

#[derive(serde::Deserialize)]
struct Tokens {
    refresh_token: String,
}

async fn login(http: &reqwest::Client, base: &str, email: &str) -> anyhow::Result<String> {
    let r = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"organisation": ORG, "email": email, "password": PASSWORD, "token_delivery": "body"}))
        .send()
        .await?;
    if r.status() != reqwest::StatusCode::OK {
        bail!("login answered {}: {}", r.status(), r.text().await.unwrap_or_default());
    }
    Ok(r.json::<Tokens>().await?.refresh_token)
}

async fn refresh(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<String> {
    let r = http
        .post(format!("{base}/api/v1/auth/refresh"))
        .json(&serde_json::json!({"refresh_token": token}))
        .send()
        .await?;
    if r.status() != reqwest::StatusCode::OK {
        bail!("refresh answered {}: {}", r.status(), r.text().await.unwrap_or_default());
    }
    Ok(r.json::<Tokens>().await?.refresh_token)
}

/// What one timed phase did.
struct Phase {
    done: u64,
    secs: f64,
    /// Each client's last refresh token (a live session).
    tokens: Vec<String>,
}

/// `clients` loops of logins (cycling through `emails`) until `seconds` have passed.
async fn logins(
    http: &reqwest::Client,
    base: &str,
    emails: &Arc<Vec<String>>,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<Phase> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, base, emails, next) = (http.clone(), base.to_owned(), emails.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut n, mut last) = (0u64, String::new());
            while Instant::now() < deadline {
                let i = usize::try_from(next.fetch_add(1, Ordering::Relaxed)).unwrap_or(0) % emails.len();
                last = login(&http, &base, &emails[i]).await?;
                n += 1;
            }
            Ok::<_, anyhow::Error>((n, last))
        }));
    }
    let mut phase = Phase { done: 0, secs: 0.0, tokens: Vec::new() };
    for t in tasks {
        let (n, last) = t.await??;
        phase.done += n;
        phase.tokens.push(last);
    }
    phase.secs = started.elapsed().as_secs_f64();
    Ok(phase)
}

/// Each client rotates its own session's refresh token until `seconds` have passed.
async fn refreshes(http: &reqwest::Client, base: &str, tokens: Vec<String>, seconds: f64) -> anyhow::Result<Phase> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for mut token in tokens {
        let (http, base) = (http.clone(), base.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                token = refresh(&http, &base, &token).await?;
                n += 1;
            }
            Ok::<_, anyhow::Error>((n, token))
        }));
    }
    let mut phase = Phase { done: 0, secs: 0.0, tokens: Vec::new() };
    for t in tasks {
        let (n, token) = t.await??;
        phase.done += n;
        phase.tokens.push(token);
    }
    phase.secs = started.elapsed().as_secs_f64();
    Ok(phase)
}

/// Samples the server's RSS every 100 ms until stopped; returns the largest VmRSS seen.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(rss(pid).map(|r| r.rss).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    })
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let bin = server::binary(args.server.as_deref())?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let clients = args.clients.max(1);
    println!(
        "login: {cores} cores, argon2id m={MEMORY_KIB} KiB t={ITERATIONS} p={LANES}, {SERVER_THREADS} hashing threads, \
         {clients} clients, load average {}",
        load_average()
    );

    let db = TestDb::try_with_pool(4).await.context("creating the benchmark database")?;
    println!("login: seeding {} members ...", args.members);
    let emails = Arc::new(seed(&db, args.members.max(1)).await?);
    let mut admin = db.admin_options().connect().await?;
    sqlx::query("vacuum analyze").execute(&mut admin).await?;

    let data = data_dir("login")?;
    let server = Server::start(&bin, "serve", &db, &data).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss(server.pid)?;
    println!(
        "login: server {} (pid {}) idle: VmRSS {:.1} MiB (anon {:.1}, file {:.1})",
        server.base,
        server.pid,
        mib(idle.rss),
        mib(idle.anon),
        mib(idle.file)
    );

    println!("login: raw argon2id on {SERVER_THREADS} threads, {} s each ...", args.raw_seconds);
    let seconds = args.raw_seconds.max(1);
    let (raw_reused, raw_cpu) = tokio::task::spawn_blocking(move || raw_rate(SERVER_THREADS, seconds, true)).await??;
    let (raw_stock, _) = tokio::task::spawn_blocking(move || raw_rate(SERVER_THREADS, seconds, false)).await??;
    println!("  reused memory {raw_reused:.1} hashes/s, argon2 hash_password (allocating) {raw_stock:.1} hashes/s");

    let http = reqwest::Client::builder().pool_max_idle_per_host(clients * 2).build()?;
    // Warm-up: every pool connection of the server, every client's connection, plans.
    let _ = logins(&http, &server.base, &emails, clients, 2).await?;
    println!("login: {} s of logins, {clients} clients (load average {}) ...", args.seconds, load_average());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(server.pid, stop.clone());
    let before = Cpu::now(server.pid, &mut admin, db.name()).await?;
    let phase = logins(&http, &server.base, &emails, clients, args.seconds.max(1)).await?;
    let after = Cpu::now(server.pid, &mut admin, db.name()).await?;
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.await?;
    let stopped = Instant::now();
    let under_load = rss(server.pid)?;
    let login_rate = phase.done as f64 / phase.secs;
    let (bench_cpu, server_cpu, db_cpu) = after.since(&before);
    let hashing_cpu = after.hashing_since(&before);
    let per = |cpu: f64| cpu * 1000.0 / phase.done.max(1) as f64;
    println!(
        "  {} logins in {:.1} s: {login_rate:.1}/s; CPU per login: server {:.2} ms (hashing threads {:.2}, the rest {:.2}), \
         database {:.2} ms, clients {:.2} ms; load average {}",
        phase.done,
        phase.secs,
        per(server_cpu),
        per(hashing_cpu),
        per(server_cpu - hashing_cpu),
        per(db_cpu),
        per(bench_cpu),
        load_average()
    );
    let overhead = per(server_cpu - hashing_cpu) + per(db_cpu) + per(bench_cpu);
    let cpu_bound = per(hashing_cpu) / (per(hashing_cpu) + overhead);
    println!(
        "  raw argon2id used {raw_cpu:.2} ms of CPU per hash; a login used {overhead:.2} ms besides its hashing \
         (server outside the hashing threads, database, clients): with every core busy, logins can reach \
         {:.1}% of the hash rate",
        cpu_bound * 100.0
    );
    println!(
        "  server RSS: peak sampled {:.1} MiB, VmHWM {:.1} MiB, at the end {:.1} MiB",
        mib(peak),
        mib(under_load.hwm),
        mib(under_load.rss)
    );

    let mut timeline = Vec::new();
    for at in [1, 5, 10, args.settle.max(10)] {
        let wait = Duration::from_secs(at).saturating_sub(stopped.elapsed());
        tokio::time::sleep(wait).await;
        timeline.push((at, rss(server.pid)?));
    }
    let line: Vec<String> = timeline.iter().map(|(at, r)| format!("+{at} s {:.1}", mib(r.rss))).collect();
    println!("  server RSS after the load stopped (MiB): {}", line.join(", "));
    let settled = timeline.last().map(|(_, r)| *r).unwrap_or_default();

    println!("login: {} s of refreshes, {clients} clients (load average {}) ...", args.refresh_seconds, load_average());
    let warm = refreshes(&http, &server.base, phase.tokens, 1.0).await?;
    let before = Cpu::now(server.pid, &mut admin, db.name()).await?;
    let rphase = refreshes(&http, &server.base, warm.tokens, args.refresh_seconds.max(1) as f64).await?;
    let after = Cpu::now(server.pid, &mut admin, db.name()).await?;
    let refresh_rate = rphase.done as f64 / rphase.secs;
    let (bench_cpu, server_cpu, db_cpu) = after.since(&before);
    let per = |cpu: f64| cpu * 1000.0 / rphase.done.max(1) as f64;
    println!(
        "  {} refreshes in {:.1} s: {refresh_rate:.1}/s ({:.1}/s per core); CPU per refresh: server {:.3} ms, \
         database {:.3} ms, clients {:.3} ms; load average {}",
        rphase.done,
        rphase.secs,
        refresh_rate / cores as f64,
        per(server_cpu),
        per(db_cpu),
        per(bench_cpu),
        load_average()
    );
    println!(
        "  with every core busy, {:.2} ms of CPU per refresh allows {:.0}/s per core",
        per(server_cpu + db_cpu + bench_cpu),
        1000.0 / per(server_cpu + db_cpu + bench_cpu).max(0.001)
    );
    server.stop().await?;
    let _ = std::fs::remove_dir_all(&data);

    let demo = if args.no_demo {
        None
    } else {
        println!("login: countersign demo on another fresh database ...");
        let demo_db = TestDb::try_with_pool(2).await?;
        let demo_data = data_dir("demo")?;
        let demo = Server::start(&bin, "demo", &demo_db, &demo_data).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let r = rss(demo.pid)?;
        println!(
            "  demo after seeding: VmRSS {:.1} MiB (anon {:.1}, file {:.1}), VmHWM {:.1} MiB",
            mib(r.rss),
            mib(r.anon),
            mib(r.file),
            mib(r.hwm)
        );
        demo.stop().await?;
        let _ = std::fs::remove_dir_all(&demo_data);
        Some(r)
    };
    admin.close().await?;

    println!();
    println!("  {:<46} {:>14} {:>16}  verdict", "figure", "measured", "target");
    let row = |name: &str, got: String, target: String, met: bool| {
        println!("  {name:<46} {got:>14} {target:>16}  {}", verdict(met));
    };
    row(
        "idle RSS, serve",
        format!("{:.1} MiB", mib(idle.rss)),
        format!("<= {IDLE_RSS_MIB} MiB"),
        mib(idle.rss) <= IDLE_RSS_MIB,
    );
    if let Some(d) = demo {
        row(
            "idle RSS, demo after seeding",
            format!("{:.1} MiB", mib(d.rss)),
            format!("<= {IDLE_RSS_MIB} MiB"),
            mib(d.rss) <= IDLE_RSS_MIB,
        );
    }
    let peak_mib = mib(peak.max(under_load.hwm));
    row(
        "RSS peak under sustained logins (VmHWM)",
        format!("{peak_mib:.1} MiB"),
        format!("<= {LOAD_RSS_MIB} MiB"),
        peak_mib <= LOAD_RSS_MIB,
    );
    row(
        &format!("RSS {} s after the load stopped", args.settle.max(10)),
        format!("{:.1} MiB", mib(settled.rss)),
        format!("<= {SETTLED_RSS_MIB} MiB"),
        mib(settled.rss) <= SETTLED_RSS_MIB,
    );
    let busy = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
        .unwrap_or(0.0);
    if busy > cores as f64 + 1.0 {
        println!(
            "  WARNING: load average {busy:.1} on {cores} cores: other processes share the CPU, so the rates and their \
             ratios below say little; compare the CPU per login and per refresh printed above"
        );
    }
    let ratio = login_rate / raw_reused;
    row(
        "logins/s vs raw argon2id (reused memory)",
        format!("{:.1}%", ratio * 100.0),
        format!(">= {:.0}%", LOGIN_RATIO * 100.0),
        ratio >= LOGIN_RATIO,
    );
    println!(
        "  {:<46} {:>14}",
        "  (vs argon2 hash_password, allocating)",
        format!("{:.1}%", login_rate / raw_stock * 100.0)
    );
    let per_core = refresh_rate / cores as f64;
    row(
        "refreshes/s per core",
        format!("{per_core:.0}/s"),
        format!(">= {REFRESH_PER_CORE:.0}/s"),
        per_core >= REFRESH_PER_CORE,
    );
    println!("  load average at the end: {}", load_average());
    Ok(())
}
