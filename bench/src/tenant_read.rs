//! Tenant-scoped page read: `TenantTx` (BEGIN + set_config in one round trip, a prepared page
//! query under RLS, COMMIT) vs pgbench sending the same statements as the same role.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::fixture;
use anyhow::Context;
use rand::Rng;
use sqlx::{ConnectOptions, Connection};
use store::TenantId;
use store::testing::TestDb;

#[derive(clap::Args)]
pub struct Args {
    /// Organisations to load.
    #[arg(long, default_value_t = 50)]
    tenants: u32,
    /// Rows (departments) per organisation.
    #[arg(long, default_value_t = 2000)]
    rows: u32,
    /// Concurrent clients on both sides.
    #[arg(long, default_value_t = 8)]
    clients: u32,
    /// Seconds measured per side (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u32,
}

const PAGE_SQL: &str = "select id, code, name from departments \
     where tenant_id = $1 and deleted_at is null and code > '' order by code limit 50";

pub async fn run(args: Args) -> anyhow::Result<()> {
    let clients = args.clients.max(1);
    let db = TestDb::try_with_pool(clients).await.context("creating the benchmark database")?;
    println!("tenant-read: loading {} tenants x {} rows ...", args.tenants, args.rows);
    let mut admin = db.admin_options().connect().await?;
    fixture::insert_tenants(&mut admin, args.tenants).await?;
    sqlx::query(
        "insert into departments (tenant_id, id, code, name)
         select t.id, gen_random_uuid(), 'D' || lpad(g::text, 6, '0'), 'Department ' || g
           from tenants t, generate_series(1, $1) g",
    )
    .bind(i64::from(args.rows))
    .execute(&mut admin)
    .await?;
    sqlx::query("analyze").execute(&mut admin).await?;
    admin.close().await?;

    let script = format!(
        "\\set n random(1, {n})\n\
         BEGIN;\n\
         SELECT set_config('app.tenant_id', '00000000-0000-4000-8000-' || lpad(to_hex(:n::int), 12, '0'), true);\n\
         SELECT id, code, name FROM departments WHERE tenant_id = ('00000000-0000-4000-8000-' || lpad(to_hex(:n::int), 12, '0'))::uuid \
         AND deleted_at IS NULL AND code > '' ORDER BY code LIMIT 50;\n\
         COMMIT;\n",
        n = args.tenants
    );
    let options = db.admin_options();
    let pg = super::pgbench::Run {
        options: &options,
        user: store::migrate::APP_ROLE,
        script: &script,
        clients,
        seconds: args.seconds,
        per_client: None,
        defines: &[],
    };
    println!("raw pgbench ({clients} clients, {} s, prepared, as {}) ...", args.seconds, store::migrate::APP_ROLE);
    let raw = super::pgbench::run(&pg)?;

    println!("countersign TenantTx ({clients} clients, {} s) ...", args.seconds);
    let ours = drive(&db.store, args.tenants, clients, Duration::from_secs(2)).await?;
    let _ = ours;
    let ours = drive(&db.store, args.tenants, clients, Duration::from_secs(u64::from(args.seconds))).await?;

    let ratio = ours / raw * 100.0;
    println!();
    println!("  raw pgbench, same SQL       {raw:>10.0} tx/s");
    println!("  countersign TenantTx        {ours:>10.0} tx/s");
    println!(
        "  ratio                       {ratio:>9.1} %   (target >= 60 %: {})",
        if ratio >= 60.0 { "met" } else { "NOT met" }
    );
    Ok(())
}

/// Runs `clients` loops of tenant page reads for `dur`; returns transactions per second.
async fn drive(store: &store::Store, tenants: u32, clients: u32, dur: Duration) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + dur;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let store = store.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let n = rand::rng().random_range(1..=tenants);
                let tenant: TenantId = fixture::tenant_id(n)?;
                let mut tx = store.tenant_tx(tenant).await?;
                let rows = sqlx::query(PAGE_SQL).bind(tenant.as_uuid()).fetch_all(tx.conn()).await?;
                anyhow::ensure!(!rows.is_empty(), "tenant {n} has no rows");
                tx.commit().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}
