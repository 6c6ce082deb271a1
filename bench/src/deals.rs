//! Deal registration with its conflict check, and the leads CSV export, through a real
//! `countersign serve` process on loopback (issue 17).
//!
//! Fixture (`--scale 1`, the "1,000 vendors × 1,000 partners × 1M leads"): 1,000 vendor
//! organisations, each running a programme of 1,000 partner companies (1,000,000 partner rows: a
//! company in two programmes is two rows, as the schema models it); the measured vendor (the
//! first) holds the 1,000,000 leads (1,000 per partner) and 10 earlier deal registrations per
//! partner, every other vendor 10 registrations. `--scale s` multiplies the vendors, the partners
//! per vendor and the leads by `s` (at least 2 vendors, 16 partners, 1,000 leads). Everything is
//! bulk-loaded as the database owner with set-based `INSERT … SELECT generate_series`; the people
//! who sign in are created with real passwords through the domain functions.
//!
//! Registration: `--clients` partner people (`partner_agent`, each of a different partner of
//! the measured vendor, each with its own session) `POST /api/v1/deals` in a loop; one in four
//! names the customer domain and company of an earlier registration by another partner (so the
//! conflict check finds it and flags the deal), the rest a new customer. Each request is timed
//! from sending to the last byte of its 201 answer. Baseline in the same run: `pgbench` with as
//! many clients sending the statements the handler sends, in order, as the app role (the
//! programme transaction's BEGIN and two `set_config`s, the scope read, the partner check, the
//! INSERT, `countersign_deal_conflicts`, the read-back with its scope read, the audit append,
//! COMMIT). Two rounds, alternating which side goes first.
//!
//! Export: the vendor's administrator `GET /api/v1/leads/export` (every partner's leads), read
//! to the end or for at most `--export-seconds`; rows/s = CSV records received ÷ time to the last
//! byte. For reference, the same rows through a raw `COPY … TO STDOUT (FORMAT csv)` as the app
//! role (the export walks `partner_leads_export`, migration 0026, in its order).
//!
//! Targets (issue 17): registration p99 <= 20 ms at 8 clients and >= 70 % of the same statements'
//! rate through pgbench; export >= 300,000 rows/s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use identity::directory::{memberships, users};
use identity::{EmailAddress, Role};
use sqlx::{ConnectOptions, Connection};
use store::testing::TestDb;
use uuid::Uuid;

use crate::fixture;
use crate::server::{self, Server, data_dir, load_average, percentile_ms, verdict};

/// (`Parser` as well as `Args`: the suite builds these from argument lists.)
#[derive(clap::Parser)]
pub struct Args {
    /// Multiplies the fixture: vendors (1,000), partners per vendor (1,000) and leads (1,000,000).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Concurrent clients on both sides.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Measured seconds per side and round.
    #[arg(long, default_value_t = 15)]
    seconds: u32,
    /// Unmeasured seconds of registrations through the server before each measured period.
    #[arg(long, default_value_t = 2.0)]
    warmup_seconds: f64,
    /// The most seconds one export is read for (the rate is taken over what arrived).
    #[arg(long, default_value_t = 60)]
    export_seconds: u64,
    /// The server binary (default: `countersign` next to this executable).
    #[arg(long)]
    server: Option<std::path::PathBuf>,
}

const PASSWORD: &str = "maple harbour signal 2291";
const ADMIN: &str = "vendor-admin@bench.example";
const P99_TARGET_MS: f64 = 20.0;
const RATIO_TARGET: f64 = 0.70;
const EXPORT_TARGET: f64 = 300_000.0;
/// Earlier registrations per partner of the measured vendor, and per other vendor.
const DEALS_PER_PARTNER: i64 = 10;
const DEALS_PER_OTHER_VENDOR: i64 = 10;

struct Sizes {
    vendors: u32,
    partners: u32,
    leads: i64,
}

impl Sizes {
    fn of(scale: f64) -> Self {
        let s = if scale.is_finite() && scale > 0.0 { scale } else { 1.0 };
        Self {
            vendors: ((1000.0 * s).round() as u32).max(2),
            partners: ((1000.0 * s).round() as u32).max(16),
            leads: ((1_000_000.0 * s).round() as i64).max(1000),
        }
    }

    fn seeded_deals(&self) -> i64 {
        i64::from(self.partners) * DEALS_PER_PARTNER
    }
}

/// The id of partner `p` of vendor `v` (deterministic, so SQL and pgbench compute it).
fn partner_sql(v: &str, p: &str) -> String {
    format!("('00000000-0000-4000-9' || lpad(to_hex({v}), 3, '0') || '-' || lpad(to_hex({p}), 12, '0'))::uuid")
}

/// The id of the partner person who is client `c` (1-based).
fn person_uuid(c: usize) -> String {
    format!("00000000-0000-4000-b000-{c:012x}")
}

fn person_sql(c: &str) -> String {
    format!("('00000000-0000-4000-b000-' || lpad(to_hex({c}), 12, '0'))::uuid")
}

fn person_email(c: usize) -> String {
    format!("agent{c}@partner{c}.bench.example")
}

async fn seed(db: &TestDb, sizes: &Sizes, clients: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut admin = db.admin_options().connect().await?;
    fixture::insert_tenants(&mut admin, sizes.vendors).await?;
    let tenant = fixture::tenant_uuid(1);
    let step = |what: &str, t: Instant| println!("  {what} in {:.1}s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    sqlx::query(&format!(
        "insert into partners (tenant_id, id, company_name, domain, tier)
         select ('00000000-0000-4000-8000-' || lpad(to_hex(v), 12, '0'))::uuid, {id}, 'Partner ' || p || ' of vendor ' || v,
                'p' || p || '.v' || v || '.partners.example', (array['registered', 'silver', 'gold'])[1 + p % 3]
           from generate_series(1, $1) v, generate_series(1, $2) p",
        id = partner_sql("v", "p")
    ))
    .bind(i64::from(sizes.vendors))
    .bind(i64::from(sizes.partners))
    .execute(&mut admin)
    .await?;
    step(&format!("{} partners", u64::from(sizes.vendors) * u64::from(sizes.partners)), t);

    // The people who sign in: the vendor's administrator and one partner agent per client, each
    // of partner c of the measured vendor. Users by SQL (fixed ids), passwords and the
    // administrator's membership through the domain functions.
    let who = audit::Who::system("bench:deals");
    sqlx::query(&format!(
        "insert into users (id, email, display_name)
         select {id}, 'agent' || c || '@partner' || c || '.bench.example', 'Agent ' || c from generate_series(1, $1) c",
        id = person_sql("c")
    ))
    .bind(i64::try_from(clients)?)
    .execute(&mut admin)
    .await?;
    sqlx::query(&format!(
        "insert into memberships (tenant_id, id, user_id, role, partner_id)
         select $1, gen_random_uuid(), {user}, 'partner_agent', {partner} from generate_series(1, $2) c",
        user = person_sql("c"),
        partner = partner_sql("1", "c")
    ))
    .bind(Uuid::parse_str(&tenant)?)
    .bind(i64::try_from(clients)?)
    .execute(&mut admin)
    .await?;
    let hasher = identity::signin::passwords::Hasher::new(1)?;
    let mut g = db.store.global_tx().await?;
    let vendor_admin = users::create(&mut g, &who, &EmailAddress::parse(ADMIN)?, "Val Vendor").await?;
    let password = secrecy::SecretString::from(PASSWORD);
    identity::signin::account::set_password(&mut g, &who, &hasher, vendor_admin.id, &password, &[]).await?;
    for c in 1..=clients {
        let id = Uuid::parse_str(&person_uuid(c))?;
        identity::signin::account::set_password(&mut g, &who, &hasher, id, &password, &[]).await?;
    }
    g.commit().await?;
    let mut tx = db.store.tenant_tx(fixture::tenant_id(1)?).await?;
    let m = memberships::NewMembership {
        user_id: vendor_admin.id,
        role: Role::Admin,
        department_id: None,
        valid_until: None,
    };
    memberships::add(&mut tx, &who, &m).await?;
    tx.commit().await?;

    // Earlier registrations: deal k of the measured vendor by partner clients + 1 + k mod (P -
    // clients) (never a client's own partner, so naming its customer is always a conflict), a
    // third of them approved and protected; 10 by partners of every other vendor.
    let t = Instant::now();
    let others = i64::from(sizes.partners) - i64::try_from(clients)?;
    if others < 1 {
        bail!("--scale leaves {} partners per vendor, fewer than the {clients} clients + 1", sizes.partners);
    }
    sqlx::query(&format!(
        "insert into deal_registrations (tenant_id, id, partner_id, customer_company, customer_domain, amount_minor,
                                         currency, expected_close, status, decision_reason, decided_by, decided_at,
                                         protected_until, registered_by, created_at)
         select $1::uuid, gen_random_uuid(), {partner}, 'Deal Customer ' || k, 'deal' || k || '.customers.example',
                1000 + (k * 7919) % 5000000, (array['EUR', 'GBP', 'USD'])[1 + k % 3], current_date + 30 + (k % 200)::int,
                case when k % 3 = 0 then 'approved' else 'submitted' end,
                case when k % 3 = 0 then 'bench: approved' end, case when k % 3 = 0 then $4::uuid end,
                case when k % 3 = 0 then now() - interval '1 day' end,
                case when k % 3 = 0 then now() + interval '60 days' end,
                $4::uuid, now() - make_interval(hours => (k % 1900)::int)
           from generate_series(1, $2) k",
        partner = partner_sql("1", &format!("({clients} + 1 + k % $3)"))
    ))
    .bind(Uuid::parse_str(&tenant)?)
    .bind(sizes.seeded_deals())
    .bind(others)
    .bind(vendor_admin.id)
    .execute(&mut admin)
    .await?;
    sqlx::query(&format!(
        "insert into deal_registrations (tenant_id, id, partner_id, customer_company, customer_domain, amount_minor,
                                         currency, expected_close, registered_by, created_at)
         select ('00000000-0000-4000-8000-' || lpad(to_hex(v), 12, '0'))::uuid, gen_random_uuid(), {partner},
                'Customer ' || k || ' of vendor ' || v, 'c' || k || '.v' || v || '.customers.example', 50000, 'EUR',
                current_date + 60, $3::uuid, now() - make_interval(hours => k::int)
           from generate_series(2, $1) v, generate_series(1, $2) k",
        partner = partner_sql("v", &format!("(1 + k % {})", sizes.partners))
    ))
    .bind(i64::from(sizes.vendors))
    .bind(DEALS_PER_OTHER_VENDOR)
    .bind(vendor_admin.id)
    .execute(&mut admin)
    .await?;
    step("deal registrations", t);

    // The leads, all the measured vendor's: lead n by partner 1 + n mod P, one second apart,
    // every tenth with notes, a few with a comma or a leading '=' (quoted and neutralised).
    let t = Instant::now();
    sqlx::query(&format!(
        "insert into partner_leads (tenant_id, id, partner_id, company_name, customer_domain, contact_name,
                                    contact_email, notes, created_by, created_at)
         select $1::uuid, gen_random_uuid(), {partner},
                case when n % 97 = 0 then '=Customer ' || n else 'Customer ' || n || case when n % 13 = 0 then ', Ltd' else '' end end,
                'customer' || n || '.example', 'Contact ' || n, 'contact' || n || '@customer' || n || '.example',
                case when n % 10 = 0 then 'Met at the trade fair; follow up next quarter' end,
                $3::uuid, now() - make_interval(secs => n)
           from generate_series(1, $2) n",
        partner = partner_sql("1", &format!("(1 + n % {})", sizes.partners))
    ))
    .bind(Uuid::parse_str(&tenant)?)
    .bind(sizes.leads)
    .bind(vendor_admin.id)
    .execute(&mut admin)
    .await?;
    step(&format!("{} leads", sizes.leads), t);
    let t = Instant::now();
    sqlx::query("vacuum analyze").execute(&mut admin).await?;
    step("vacuum analyze", t);
    admin.close().await?;
    println!("  fixture loaded in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `clients` partner agents registering deals for `seconds`; every answer must be 201. Returns
/// the latencies (µs), the elapsed time and how many were flagged as conflicts.
async fn drive(
    http: &reqwest::Client,
    base: &str,
    tokens: &[String],
    seeded: i64,
    seconds: f64,
) -> anyhow::Result<(Vec<u64>, f64, u64)> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let conflicts = Arc::new(AtomicU64::new(0));
    let close = (chrono::Utc::now().date_naive() + chrono::Days::new(30)).to_string();
    let run = Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::new();
    for (c, token) in tokens.iter().enumerate() {
        let (http, url, token, conflicts) =
            (http.clone(), format!("{base}/api/v1/deals"), token.clone(), conflicts.clone());
        let (close, run) = (close.clone(), run[..8].to_owned());
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::new();
            let mut n: u64 = 0;
            while Instant::now() < deadline {
                n += 1;
                let (company, domain) = if n.is_multiple_of(4) {
                    let k = 1 + (n * 7919 + c as u64 * 104_729) % seeded.max(1) as u64;
                    (format!("Deal Customer {k}"), format!("deal{k}.customers.example"))
                } else {
                    (format!("New Customer {run} {c} {n}"), format!("n{run}-{c}-{n}.new.example"))
                };
                let body = serde_json::json!({
                    "customerCompany": company, "customerDomain": domain, "amountMinor": 125_000,
                    "currency": "EUR", "expectedClose": close,
                });
                let sent = Instant::now();
                let r = http.post(&url).bearer_auth(&token).json(&body).send().await?;
                let status = r.status();
                let answer = r.bytes().await?;
                took.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                if status != reqwest::StatusCode::CREATED {
                    bail!("POST /api/v1/deals answered {status}: {}", String::from_utf8_lossy(&answer));
                }
                if answer.windows(19).any(|w| w == b"\"status\":\"conflict\"") {
                    conflicts.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<_, anyhow::Error>(took)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, started.elapsed().as_secs_f64(), conflicts.load(Ordering::Relaxed)))
}

/// The statements of `POST /api/v1/deals` for a partner agent, in the order the server sends them
/// (`store::TenantTx::begin_program`, `programs::deals::register` and `get`, `audit::record_by`).
/// The server's programme BEGIN and its two `set_config`s are one round trip (a simple-protocol
/// string); pgbench sends them as three prepared statements. The deal id is a UUIDv7 made in SQL
/// (the server makes it in Rust) so both sides insert in time order.
fn pgbench_script(tenant: &str, seeded: i64) -> String {
    let user = person_sql("(:c)::bigint");
    let partner = partner_sql("1", "(:c)::bigint");
    format!(
        "\\set c :client_id + 1\n\
         \\set n random(1, 1000000000)\n\
         \\set hit random(0, 3)\n\
         \\set k random(1, {seeded})\n\
         BEGIN;\n\
         SELECT set_config('app.tenant_id', '{tenant}', true);\n\
         SELECT set_config('app.partner_scope', countersign_program_scope({user}), true);\n\
         SELECT countersign_partner_scope();\n\
         SELECT status = 'active' AS active FROM partners WHERE tenant_id = '{tenant}'::uuid AND id = {partner};\n\
         INSERT INTO deal_registrations (tenant_id, id, partner_id, customer_company, customer_domain, amount_minor, \
         currency, expected_close, registered_by) VALUES ('{tenant}'::uuid, \
         (lpad(to_hex((extract(epoch from clock_timestamp()) * 1000)::bigint), 12, '0') || '7' || substr(md5(random()::text), 1, 3) \
         || '8' || substr(md5(random()::text), 1, 15))::uuid, {partner}, \
         CASE WHEN :hit = 0 THEN 'Deal Customer ' || :k ELSE 'New Customer pg ' || :c || ' ' || :n END, \
         CASE WHEN :hit = 0 THEN 'deal' || :k || '.customers.example' ELSE 'pg' || :c || '-' || :n || '.new.example' END, \
         125000, 'EUR', current_date + 30, {user}) RETURNING id \\gset\n\
         SELECT countersign_deal_conflicts(:id::uuid) AS conflict;\n\
         SELECT id, partner_id, customer_company, customer_domain::text, amount_minor, currency, expected_close, status, \
         decision_reason, decided_at, protected_until, created_at FROM deal_registrations \
         WHERE tenant_id = '{tenant}'::uuid AND id = :id::uuid;\n\
         SELECT countersign_partner_scope();\n\
         SELECT o_seq, o_hash FROM countersign_audit_append('{tenant}'::uuid, 'user', {user}::text, 'partner_agent', \
         'deal.registered', 'deal', :id, :changes, NULL, :req, (:ip::text)::inet, :ua);\n\
         COMMIT;\n"
    )
}

/// Reads the leads export to the end (or for `limit`); returns CSV records (header excluded),
/// bytes and seconds to the last byte read, and whether it was read whole.
async fn export(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    limit: Duration,
) -> anyhow::Result<(u64, u64, f64, bool)> {
    let started = Instant::now();
    let mut r = http.get(format!("{base}/api/v1/leads/export")).bearer_auth(token).send().await?;
    if r.status() != reqwest::StatusCode::OK {
        bail!("the export answered {}: {}", r.status(), r.text().await.unwrap_or_default());
    }
    let (mut lines, mut bytes) = (0u64, 0u64);
    let mut whole = true;
    while let Some(chunk) = r.chunk().await? {
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        bytes += chunk.len() as u64;
        if started.elapsed() > limit {
            whole = false;
            break;
        }
    }
    Ok((lines.saturating_sub(1), bytes, started.elapsed().as_secs_f64(), whole))
}

/// The same rows, columns and order as the export's pages, as one raw `COPY … TO STDOUT` in the
/// vendor's programme scope as the app role: records/s.
async fn raw_copy(db: &TestDb, tenant: &str) -> anyhow::Result<(u64, f64)> {
    let mut conn = db.admin_options().username(store::migrate::APP_ROLE).connect().await?;
    sqlx::query("begin").execute(&mut conn).await?;
    sqlx::query("select set_config('app.tenant_id', $1, true), set_config('app.partner_scope', 'vendor', true)")
        .bind(tenant)
        .execute(&mut conn)
        .await?;
    let started = Instant::now();
    let mut lines = 0u64;
    {
        let mut out = conn
            .copy_out_raw(&format!(
                "copy (select id, partner_id, company_name, customer_domain::text, contact_name, contact_email::text, notes, \
                 created_at from partner_leads where tenant_id = '{tenant}' order by created_at desc, id desc) \
                 to stdout (format csv)"
            ))
            .await?;
        while let Some(chunk) = out.next().await {
            lines += chunk?.iter().filter(|b| **b == b'\n').count() as u64;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    sqlx::query("commit").execute(&mut conn).await?;
    conn.close().await?;
    Ok((lines, secs))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let bin = server::binary(args.server.as_deref())?;
    let clients = args.clients.max(1);
    let sizes = Sizes::of(args.scale);
    println!(
        "deals: scale {}: {} vendors × {} partners each, {} leads and {} earlier registrations in the measured vendor; \
         {clients} clients; load average {}",
        args.scale,
        sizes.vendors,
        sizes.partners,
        sizes.leads,
        sizes.seeded_deals(),
        load_average()
    );
    let db = TestDb::try_with_pool(4).await.context("creating the benchmark database")?;
    println!("deals: loading the fixture ...");
    seed(&db, &sizes, clients).await?;
    let data = data_dir("deals")?;
    let server = Server::start(&bin, "serve", &db, &data).await?;
    let result = measure(&args, &db, &server, &sizes, clients).await;
    server.stop().await?;
    let _ = std::fs::remove_dir_all(&data);
    result
}

async fn measure(args: &Args, db: &TestDb, server: &Server, sizes: &Sizes, clients: usize) -> anyhow::Result<()> {
    let base = &server.base;
    let org = "bench-1";
    let tenant = fixture::tenant_uuid(1);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients * 2)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut tokens = Vec::new();
    for c in 1..=clients {
        tokens.push(server::sign_in(&http, base, org, &person_email(c), PASSWORD).await?);
    }
    let admin_token = server::sign_in(&http, base, org, ADMIN, PASSWORD).await?;

    let seconds = f64::from(args.seconds.max(1));
    let seeded = sizes.seeded_deals();
    let mut figures = Vec::new();
    for round in 0..2 {
        let server_first = round == 0;
        let (mut ours, mut raw) = (None, None);
        for side in 0..2 {
            if (side == 0) == server_first {
                let _ = drive(&http, base, &tokens, seeded, args.warmup_seconds.max(0.1)).await?;
                let (mut took, secs, conflicts) = drive(&http, base, &tokens, seeded, seconds).await?;
                took.sort_unstable();
                ours = Some((took.len() as f64 / secs, took, conflicts));
            } else {
                raw = Some(pgbench(db, &tenant, seeded, clients, args.seconds.max(1)).await?);
            }
        }
        let (Some((rate, took, conflicts)), Some(raw)) = (ours, raw) else { bail!("a side did not run") };
        println!(
            "  round {}: server {rate:.0} registrations/s ({} of {} flagged as conflicts; p50 {:.2} ms, p95 {:.2} ms, \
             p99 {:.2} ms, max {:.2} ms), raw pgbench {raw:.0} tx/s: {:.1} %; load average {}",
            round + 1,
            conflicts,
            took.len(),
            percentile_ms(&took, 0.50),
            percentile_ms(&took, 0.95),
            percentile_ms(&took, 0.99),
            percentile_ms(&took, 1.0),
            rate / raw * 100.0,
            load_average()
        );
        figures.push((rate / raw, percentile_ms(&took, 0.99)));
    }

    let limit = Duration::from_secs(args.export_seconds.max(1));
    let (rows, bytes, secs, whole) = export(&http, base, &admin_token, limit).await?;
    let export_rate = rows as f64 / secs;
    println!(
        "  export: {rows} rows ({:.1} MiB) in {secs:.2} s{}: {export_rate:.0} rows/s; load average {}",
        bytes as f64 / 1024.0 / 1024.0,
        if whole { "" } else { " (stopped at the time limit)" },
        load_average()
    );
    if whole && rows != u64::try_from(sizes.leads)? {
        bail!("the export had {rows} rows, the vendor {} leads", sizes.leads);
    }
    let (copied, copy_secs) = raw_copy(db, &tenant).await?;
    println!(
        "  for reference, raw COPY of the same rows as CSV (app role, vendor scope): {copied} rows in {copy_secs:.2} s = {:.0} rows/s",
        copied as f64 / copy_secs
    );

    let best_ratio = figures.iter().map(|f| f.0).fold(0.0, f64::max);
    let best_p99 = figures.iter().map(|f| f.1).fold(f64::INFINITY, f64::min);
    println!();
    println!("  {:<52} {:>14} {:>14}  verdict", "figure (best of two rounds)", "measured", "target");
    println!(
        "  {:<52} {:>14} {:>14}  {}",
        format!("deal registration p99 at {clients} clients, client-measured"),
        format!("{best_p99:.2} ms"),
        format!("<= {P99_TARGET_MS} ms"),
        verdict(best_p99 <= P99_TARGET_MS)
    );
    println!(
        "  {:<52} {:>14} {:>14}  {}",
        "registrations/s vs the same statements in pgbench",
        format!("{:.1} %", best_ratio * 100.0),
        format!(">= {:.0} %", RATIO_TARGET * 100.0),
        verdict(best_ratio >= RATIO_TARGET)
    );
    println!(
        "  {:<52} {:>14} {:>14}  {}",
        "leads CSV export through GET /api/v1/leads/export",
        format!("{export_rate:.0} rows/s"),
        format!(">= {EXPORT_TARGET:.0}/s"),
        verdict(export_rate >= EXPORT_TARGET)
    );
    println!("  load average at the end: {}", load_average());
    Ok(())
}

/// pgbench on the registration statements, with the audit event's fields taken from one the
/// server recorded (same sizes on both sides).
async fn pgbench(db: &TestDb, tenant: &str, seeded: i64, clients: usize, seconds: u32) -> anyhow::Result<f64> {
    let mut admin = db.admin_options().connect().await?;
    let (changes, req, ip, ua): (String, Option<String>, Option<String>, Option<String>) = sqlx::query_as(
        "select changes::text, request_id, host(ip), user_agent from audit_events
          where action = 'deal.registered' order by occurred_at desc limit 1",
    )
    .fetch_optional(&mut admin)
    .await?
    .context("no deal.registered event yet: the server side runs first in round 1")?;
    admin.close().await?;
    let options = db.admin_options();
    let script = pgbench_script(tenant, seeded);
    let defines = [
        ("changes", changes),
        ("req", req.unwrap_or_else(|| "bench".into())),
        ("ip", ip.unwrap_or_else(|| "127.0.0.1".into())),
        ("ua", ua.unwrap_or_else(|| "countersign-bench".into())),
    ];
    let run = crate::pgbench::Run {
        options: &options,
        user: store::migrate::APP_ROLE,
        script: &script,
        clients: u32::try_from(clients)?,
        seconds,
        per_client: None,
        defines: &defines,
    };
    crate::pgbench::run(&run)
}
