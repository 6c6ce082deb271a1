//! `kill -9` under write load (issue 19's reliability figure): writers raise vouchers through a
//! real server as fast as it answers, the server is killed with SIGKILL at a random moment in
//! the middle of it, a new server is started on the same database and data directory, and then
//! every voucher whose creation was acknowledged (a `201` reached the writer) must exist, and
//! `countersign audit verify` must pass. Repeated `--runs` times (3 by default); the figure is the
//! number of acknowledged writes lost, whose target is 0.
//!
//! A request in flight when the server dies may or may not have committed: it was never
//! acknowledged, so either outcome is correct, and only acknowledged ones are checked.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use identity::directory::{memberships, tenants, users};
use identity::{EmailAddress, JoinPolicy, Role, Slug};
use sqlx::ConnectOptions;
use store::testing::TestDb;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::server::{self, Server};

#[derive(clap::Parser)]
pub struct Args {
    /// Kill-and-restart rounds.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Concurrent writers.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// The kill comes at a random moment between this and twice this many seconds of load.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// The `countersign` binary (default: target/release/countersign, then target/debug).
    #[arg(long)]
    server: Option<PathBuf>,
}

const ORG: &str = "crash-bench";
const WRITER: &str = "writer@crash.example";
const PASSWORD: &str = "crash-bench-password-1";

/// The organisation, one department and a staff member with a password; the department's id.
async fn seed(db: &TestDb) -> anyhow::Result<Uuid> {
    let who = audit::Who::system("bench:crash");
    let mut b = db.store.bypass("bench", "seed the crash benchmark").await?;
    let t = tenants::create(
        &mut b,
        &who,
        &tenants::NewTenant {
            slug: Slug::parse(ORG)?,
            name: "Crash Bench".into(),
            allowed_email_domains: vec![],
            join_policy: JoinPolicy::AdminApproval,
        },
    )
    .await?;
    b.commit().await?;
    let department = Uuid::now_v7();
    let mut admin = db.admin_options().connect().await?;
    sqlx::query("insert into departments (tenant_id, id, code, name) values ($1, $2, 'OPS', 'Operations')")
        .bind(t.id.as_uuid())
        .bind(department)
        .execute(&mut admin)
        .await?;
    let hasher = identity::signin::passwords::Hasher::new(1)?;
    let mut g = db.store.global_tx().await?;
    let u = users::create(&mut g, &who, &EmailAddress::parse(WRITER)?, "Wren Writer").await?;
    identity::signin::account::set_password(&mut g, &who, &hasher, u.id, &secrecy::SecretString::from(PASSWORD), &[])
        .await?;
    g.commit().await?;
    let mut tx = db.store.tenant_tx(t.id).await?;
    let m = memberships::NewMembership {
        user_id: u.id,
        role: Role::Staff,
        department_id: Some(department),
        valid_until: None,
    };
    memberships::add(&mut tx, &who, &m).await?;
    tx.commit().await?;
    Ok(department)
}

/// Writers raising vouchers until the server stops answering; the ids acknowledged with `201`.
async fn load(base: &str, token: &str, department: Uuid, clients: usize) -> Arc<Mutex<Vec<Uuid>>> {
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
    for w in 0..clients {
        let (http, acked, base, token) = (http.clone(), acknowledged.clone(), base.to_owned(), token.to_owned());
        tokio::spawn(async move {
            for n in 0u64.. {
                let body = serde_json::json!({
                    "kind": "voucher", "department_id": department, "title": format!("Crash bench {w}-{n}"),
                    "document_date": "2026-01-15", "currency": "EUR",
                    "lines": [{"description": "Load", "amount_minor": 100}],
                });
                let sent = http.post(format!("{base}/api/v1/documents")).bearer_auth(&token).json(&body).send().await;
                let Ok(r) = sent else { break };
                if r.status() != reqwest::StatusCode::CREATED {
                    break;
                }
                let Ok(v) = r.json::<serde_json::Value>().await else { break };
                if let Some(id) = v["id"].as_str().and_then(|s| s.parse().ok()) {
                    acked.lock().await.push(id);
                }
            }
        });
    }
    acknowledged
}

/// `countersign audit verify` against the database: whether it passed, and what it said.
fn verify(bin: &std::path::Path, db: &TestDb, data: &std::path::Path) -> anyhow::Result<(bool, String)> {
    let o = std::process::Command::new(bin)
        .args(["audit", "verify", "--data-dir"])
        .arg(data)
        .env("DATABASE_URL", db.url())
        .env_remove("COUNTERSIGN_LISTEN")
        .output()
        .context("running audit verify")?;
    let said = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    Ok((o.status.success(), said))
}

/// Runs the benchmark and prints its report.
///
/// # Errors
/// A server that does not start or restart, writers that never get an acknowledgement, and —
/// the point of it — an acknowledged voucher missing after the restart or a ledger that does not
/// verify.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let bin = server::binary(args.server.as_deref())?;
    let db = TestDb::new().await;
    let department = seed(&db).await?;
    let data = server::data_dir("crash")?;
    println!("crash: {} runs, {} writers, {}", args.runs, args.clients, bin.display());
    println!("  load average before: {}", server::load_average());
    let http = reqwest::Client::new();
    let mut lost_total = 0usize;
    for run in 1..=args.runs {
        let srv = Server::start(&bin, "serve", &db, &data).await?;
        let token = server::sign_in(&http, &srv.base, ORG, WRITER, PASSWORD).await?;
        let acknowledged = load(&srv.base, &token, department, args.clients).await;
        let wait = args.seconds * (1.0 + rand::random::<f64>());
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        let killed_at = Instant::now();
        srv.kill().await?;
        // Writers notice the dead server and stop; nothing more is acknowledged after the kill.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ids = acknowledged.lock().await.clone();
        if ids.is_empty() {
            bail!("run {run}: no write was acknowledged in {wait:.1} s");
        }
        let restarted = Server::start(&bin, "serve", &db, &data).await?;
        let ready_after = killed_at.elapsed();
        let mut admin = db.admin_options().connect().await?;
        let found: i64 = sqlx::query_scalar("select count(*) from documents where id = any($1)")
            .bind(&ids)
            .fetch_one(&mut admin)
            .await?;
        let lost = ids.len() - usize::try_from(found).unwrap_or(0);
        lost_total += lost;
        restarted.stop().await?;
        let (verified, said) = verify(&bin, &db, &data)?;
        println!(
            "  run {run}: killed after {wait:.1} s, {} acknowledged, {lost} lost, listening again {:.0} ms after the kill, \
             audit verify {}",
            ids.len(),
            ready_after.as_secs_f64() * 1000.0,
            if verified { "passed" } else { "FAILED" }
        );
        if !verified {
            bail!("run {run}: the ledger does not verify after the kill:\n{said}");
        }
    }
    let _ = std::fs::remove_dir_all(&data);
    println!("  acknowledged writes lost: {lost_total} (target 0): {}", server::verdict(lost_total == 0));
    println!("  load average after: {}", server::load_average());
    if lost_total > 0 {
        bail!("{lost_total} acknowledged writes were lost");
    }
    Ok(())
}
