//! Audited approval transitions per second through the real domain path
//! (`approvals::documents::transition` in a `TenantTx`: row lock, version check, fiscal-period
//! check, threshold read, state machine, Cedar permit, UPDATE, INSERT approval, reload,
//! hash-chained audit append, COMMIT) vs pgbench sending the same statements, in the same order,
//! as the same role, on the same database, with the same client count.
//!
//! Two shapes: `hot` (every client approves documents of one organisation, so all of them queue
//! on that organisation's audit chain head) and `many` (documents spread over `--tenants`
//! organisations). Every measured transaction is "the head of department approves a submitted
//! voucher" (submitted -> hod_approved) on a document no other transaction touches, so row locks
//! never serialise clients: only the audit chain head does.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use crate::fixture;
use ::approvals::documents::{self, Member};
use ::approvals::{Status, Transition};
use anyhow::Context;
use audit::Origin;
use authz::Engine;
use sqlx::{ConnectOptions, Connection, PgConnection};
use store::testing::TestDb;
use store::{Store, TenantId};
use uuid::Uuid;

#[derive(clap::Args)]
pub struct Args {
    /// Organisations of the `many` shape (the `hot` shape uses the first of them).
    #[arg(long, default_value_t = 50)]
    tenants: u32,
    /// Concurrent clients on both sides.
    #[arg(long, default_value_t = 8)]
    clients: u32,
    /// Size of countersign's connection pool (default: as many as `--clients`, the connections
    /// pgbench opens). At most `--clients` of them are in a transaction at once; with more, the
    /// others are idle or on their way back into the pool (`serve` defaults to 20).
    #[arg(long)]
    pool: Option<u32>,
    /// Measured transitions per client, per side, shape and round (pgbench `-t`).
    #[arg(long, default_value_t = 100)]
    per_client: u32,
    /// Rounds per shape; each measures both sides, alternating which goes first.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Unmeasured warm-up transitions per client through the Rust path before each shape.
    #[arg(long, default_value_t = 20)]
    warmup: u32,
    /// Extra documents (paid, two lines each) spread over the organisations: the history a
    /// real database carries. No benchmark transaction touches them.
    #[arg(long, default_value_t = 0)]
    padding: u32,
    /// Have the server log every statement of this run (`log_statement = all` on the benchmark
    /// database), to compare what both sides send. Use with tiny counts.
    #[arg(long)]
    log_statements: bool,
}

// Deterministic ids, so the pgbench script computes them from integers (like `fixture::tenant_uuid`).
const RAISER: &str = "00000000-0000-4000-9000-";
const DEPARTMENT: &str = "00000000-0000-4000-a000-";
const HOD: &str = "00000000-0000-4000-b000-";
const DOCUMENT: &str = "00000000-0000-7000-8000-";
const TENANT: &str = "00000000-0000-4000-8000-";

/// The documents' date (in the open period) and amount (below the MD threshold).
const DAY: &str = "2026-03-10";
const REQUEST_ID: &str = "bench-request";
const USER_AGENT: &str = "countersign-bench";
const IP: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn id(prefix: &str, n: u32) -> anyhow::Result<Uuid> {
    format!("{prefix}{n:012x}").parse().context("benchmark id")
}

/// SQL for the id `prefix` + the 12-hex-digit integer `expr` (as text).
fn id_sql(prefix: &str, expr: &str) -> String {
    format!("'{prefix}' || lpad(to_hex({expr}), 12, '0')")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Hot,
    Many,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Self::Hot => "hot single tenant",
            Self::Many => "many tenants",
        }
    }

    /// The organisation of document `n` (1-based), for `tenants` organisations.
    fn tenant_of(self, n: u32, tenants: u32) -> u32 {
        match self {
            Self::Hot => 1,
            Self::Many => 1 + n % tenants,
        }
    }

    /// The same mapping in SQL (and in pgbench expressions) over an integer `n`.
    fn tenant_sql(self, n: &str, tenants: u32) -> String {
        match self {
            Self::Hot => "1".into(),
            Self::Many => format!("1 + {n} % {tenants}"),
        }
    }
}

/// A block of submitted vouchers: `per` for each client; client `c`'s `i`-th is number
/// `base + c * per + i + 1`. Every block is used by one side of one round only.
#[derive(Clone, Copy)]
struct Set {
    shape: Shape,
    base: u32,
    per: u32,
}

impl Set {
    fn document(self, client: u32, i: u32) -> u32 {
        self.base + client * self.per + i + 1
    }
}

/// The sides measured in every round, in the order of a round's blocks.
const PGBENCH: usize = 0;
const COUNTERSIGN: usize = 1;
const REPLAY: usize = 2;
const SIDES: usize = 3;

/// Lays out the blocks: per shape a warm-up block, then one block per side and round.
fn plan(clients: u32, per_client: u32, warmup: u32, rounds: u32) -> anyhow::Result<Vec<(Set, Vec<[Set; SIDES]>)>> {
    let mut next = 0u32;
    let mut take = |shape: Shape, per: u32| -> anyhow::Result<Set> {
        let set = Set { shape, base: next, per };
        next = clients
            .checked_mul(per)
            .and_then(|n| n.checked_add(next))
            .filter(|n| *n < i32::MAX as u32 / 2)
            .context("too many documents")?;
        Ok(set)
    };
    let mut shapes = Vec::new();
    for shape in [Shape::Hot, Shape::Many] {
        let w = take(shape, warmup)?;
        let mut rs = Vec::new();
        for _ in 0..rounds {
            rs.push([take(shape, per_client)?, take(shape, per_client)?, take(shape, per_client)?]);
        }
        shapes.push((w, rs));
    }
    Ok(shapes)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let clients = args.clients.max(1);
    let tenants = args.tenants.max(1);
    let per_client = args.per_client.max(1);
    let rounds = args.rounds.max(1);
    let shapes = plan(clients, per_client, args.warmup, rounds)?;
    let sets: Vec<Set> =
        shapes.iter().flat_map(|(w, rs)| std::iter::once(*w).chain(rs.iter().flatten().copied())).collect();
    let documents: u32 = sets.iter().map(|s| s.per * clients).sum();

    let pool = args.pool.unwrap_or(clients).max(1);
    let db = TestDb::try_with_pool(pool).await.context("creating the benchmark database")?;
    println!(
        "approvals: loading {tenants} organisations, {documents} submitted vouchers, {} padding documents ...",
        args.padding
    );
    let started = Instant::now();
    let mut admin = db.admin_options().connect().await?;
    load(&mut admin, tenants, clients, &sets, args.padding).await?;
    println!("  loaded in {:.1}s", started.elapsed().as_secs_f64());

    let store = if args.log_statements {
        sqlx::query(&format!("alter database {} set log_statement = 'all'", db.name())).execute(&mut admin).await?;
        // New sessions pick the setting up; the test pool has one open already.
        let app = db.admin_options().username(store::migrate::APP_ROLE).password("");
        Store::open_with(db.admin_options(), app, None, pool).await?
    } else {
        db.store.clone()
    };
    let engine = Arc::new(Engine::load()?);
    let origin = Origin::new(Some(REQUEST_ID), Some(IpAddr::V4(IP)), Some(USER_AGENT));
    let mut members = Vec::new();
    for t in 1..=tenants {
        let mut tx = store.tenant_tx(fixture::tenant_id(t)?).await?;
        members.push(Member::load(&mut tx, id(HOD, t)?, origin.clone()).await?);
        tx.commit().await?;
    }
    let ctx = Arc::new(Ctx { store: store.clone(), engine, members, tenants, clients });

    let mut results = Vec::new();
    for (warm, rs) in shapes {
        let shape = warm.shape;
        if warm.per > 0 {
            println!("{}: warm-up ({clients} clients x {}, countersign path) ...", shape.name(), warm.per);
            drive(&ctx, warm).await?;
            check_set(&mut admin, clients, warm).await?;
        }
        // The load analysed the tables before any approval existed. Connections that planned a
        // statement then keep a plan made for an empty `document_approvals` (a sequential scan)
        // until statistics change; autovacuum would re-analyse within its next minute, long
        // after this run. Analyse now, as it would have, so every side plans from the same,
        // current statistics (pgbench's connections are new each round and plan afresh anyway).
        sqlx::query("analyze").execute(&mut admin).await?;
        // What the Rust path wrote to the audit log, so the other sides append identical events.
        let changes: String = sqlx::query_scalar(
            "select changes from audit_events where action = 'voucher.approved' order by occurred_at desc limit 1",
        )
        .fetch_one(&mut admin)
        .await
        .context("the other sides need a countersign transition first (warm-up > 0)")?;
        let mut measured = Vec::new();
        for (r, sets) in rs.into_iter().enumerate() {
            let mut sides = [Side::default(); SIDES];
            let transactions = f64::from(per_client) * f64::from(clients);
            // Each round starts with another side: the table and chains grow as a run goes on.
            for k in 0..SIDES {
                let side = (r + k) % SIDES;
                let set = sets[side];
                let cpu = cpu_seconds();
                // pgbench's CPU is a child's; the Rust sides' is this process's own.
                let (rate, child) = match side {
                    PGBENCH => (pgbench(&db, clients, tenants, set, &changes)?, true),
                    COUNTERSIGN => (drive(&ctx, set).await?, false),
                    _ => (replay(&ctx, set, &changes).await?, false),
                };
                let cpu_us = cpu
                    .zip(cpu_seconds())
                    .map(|(a, b)| (if child { b.1 - a.1 } else { b.0 - a.0 }) * 1e6 / transactions);
                sides[side] = Side { rate, cpu_us };
                check_set(&mut admin, clients, set).await?;
            }
            let [raw, ours, replayed] = sides;
            println!(
                "{}: round {}: raw pgbench {:.0} tx/s, countersign {:.0} tx/s ({:.1} %), sqlx replay {:.0} tx/s; \
                 client CPU per transition: pgbench {}, countersign {}, sqlx replay {}",
                shape.name(),
                r + 1,
                raw.rate,
                ours.rate,
                ours.rate / raw.rate * 100.0,
                replayed.rate,
                micros(raw.cpu_us),
                micros(ours.cpu_us),
                micros(replayed.cpu_us),
            );
            measured.push(sides);
        }
        results.push((shape, measured));
    }

    // Both sides' events are in the chains: they must all verify, and carry the same payload.
    let report = audit::verify::verify_all(
        &store,
        "bench",
        &audit::TrustedKeys::default(),
        audit::verify::Options::default(),
        &mut |_, _| {},
    )
    .await?;
    anyhow::ensure!(report.ok(), "an audit chain failed verification: {:?}", report.broken().next());
    let payloads: i64 = sqlx::query_scalar(
        "select count(distinct (actor_kind, actor_role, entity_type, changes, reason, request_id, ip, user_agent))
           from audit_events where action = 'voucher.approved'",
    )
    .fetch_one(&mut admin)
    .await?;
    anyhow::ensure!(payloads == 1, "pgbench and countersign wrote {payloads} different audit payloads");
    admin.close().await?;
    println!("  audit chains verified: {} events, one payload shape for both sides", report.events);

    println!();
    println!(
        "  audited approval transitions: {clients} clients (countersign pool: {pool} connections), {per_client} per \
         client per side, mean of {rounds} round(s), {} documents in the database",
        documents + args.padding
    );
    for (shape, measured) in results {
        let n = measured.len() as f64;
        let rate = |side: usize| measured.iter().map(|m| m[side].rate).sum::<f64>() / n;
        let cpu = |side: usize| measured.iter().map(|m| m[side].cpu_us).sum::<Option<f64>>().map(|s| s / n);
        let (raw, ours, replayed) = (rate(PGBENCH), rate(COUNTERSIGN), rate(REPLAY));
        let ratio = ours / raw * 100.0;
        println!(
            "  {:<18} raw pgbench {raw:>6.0} tx/s   countersign {ours:>6.0} tx/s   ratio {ratio:>5.1} %   (target >= 80 %: {})",
            shape.name(),
            if ratio >= 80.0 { "met" } else { "NOT met" }
        );
        println!(
            "  {:<18} sqlx replay of the same statements {replayed:.0} tx/s ({:.1} % of pgbench); \
             client CPU per transition: pgbench {}, countersign {}, sqlx replay {}",
            "",
            replayed / raw * 100.0,
            micros(cpu(PGBENCH)),
            micros(cpu(COUNTERSIGN)),
            micros(cpu(REPLAY))
        );
    }
    Ok(())
}

/// One side of one round: transactions per second, and the CPU its client process used per
/// transaction (the benchmark process itself for countersign, the pgbench child for pgbench).
#[derive(Clone, Copy, Default)]
struct Side {
    rate: f64,
    cpu_us: Option<f64>,
}

fn micros(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |us| format!("{us:.0} µs"))
}

/// CPU seconds used so far by this process and by its waited-for children, from Linux
/// `/proc/self/stat` (`None` elsewhere); clock ticks are USER_HZ, 100 per second, so totals are
/// exact to 10 ms (over hundreds of transactions, a few µs per transaction).
fn cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // After the command name: state is field 3; utime, stime, cutime, cstime are fields 14-17.
    let f: Vec<f64> = rest.split_whitespace().skip(11).take(4).map(|v| v.parse().ok()).collect::<Option<_>>()?;
    match f[..] {
        [ut, st, cut, cst] => Some(((ut + st) / 100.0, (cut + cst) / 100.0)),
        _ => None,
    }
}

/// Runs the pgbench side on `set`; returns its transactions per second.
fn pgbench(db: &TestDb, clients: u32, tenants: u32, set: Set, changes: &str) -> anyhow::Result<f64> {
    let script = pgbench_script(set, tenants);
    let defines = [
        ("i", "0".to_owned()),
        ("day", DAY.to_owned()),
        ("to", Status::HodApproved.as_str().to_owned()),
        ("round", "1".to_owned()),
        ("changes", changes.to_owned()),
        ("req", REQUEST_ID.to_owned()),
        ("ip", IP.to_string()),
        ("ua", USER_AGENT.to_owned()),
    ];
    let options = db.admin_options();
    let pg = crate::pgbench::Run {
        options: &options,
        user: store::migrate::APP_ROLE,
        script: &script,
        clients,
        seconds: 0,
        per_client: Some(set.per),
        defines: &defines,
    };
    crate::pgbench::run(&pg)
}

struct Ctx {
    store: Store,
    engine: Arc<Engine>,
    /// The head of department of organisation `n` at index `n - 1`.
    members: Vec<Member>,
    tenants: u32,
    clients: u32,
}

/// Each client approves its own documents of `set` through the domain path; returns transitions/s.
async fn drive(ctx: &Arc<Ctx>, set: Set) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..ctx.clients {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..set.per {
                let n = set.document(c, i);
                let t = set.shape.tenant_of(n, ctx.tenants);
                let member = ctx.members.get(t as usize - 1).context("member")?;
                let tenant: TenantId = fixture::tenant_id(t)?;
                let doc = id(DOCUMENT, n)?;
                let mut tx = ctx.store.tenant_tx(tenant).await?;
                let d = documents::transition(&mut tx, &ctx.engine, member, doc, Transition::Approve, 1, None).await?;
                anyhow::ensure!(d.status == Status::HodApproved && d.version == 2, "document {n} did not move");
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(f64::from(set.per) * f64::from(ctx.clients) / start.elapsed().as_secs_f64())
}

/// The statements `documents::transition` sends (the same SQL text, parameter types and order),
/// sent by plain sqlx on the same pool with no domain logic around them: no Cedar, no state
/// machine, no row decoding into documents, no audit JSON building. Where countersign trails
/// pgbench, this side tells the driver's share from the domain's.
async fn replay(ctx: &Arc<Ctx>, set: Set, changes: &str) -> anyhow::Result<f64> {
    let day: chrono::NaiveDate = DAY.parse()?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..ctx.clients {
        let ctx = ctx.clone();
        let changes = changes.to_owned();
        tasks.push(tokio::spawn(async move {
            let ip = IP.to_string();
            for i in 0..set.per {
                let n = set.document(c, i);
                let t = set.shape.tenant_of(n, ctx.tenants);
                let member = ctx.members.get(t as usize - 1).context("member")?;
                let (user, role) = (member.subject.user, member.subject.role.as_str());
                let tenant: TenantId = fixture::tenant_id(t)?;
                let doc = id(DOCUMENT, n)?;
                let mut tx = ctx.store.tenant_tx(tenant).await?;
                let conn = tx.conn();
                sqlx::query("select id from documents where id = $1 for update")
                    .bind(doc)
                    .fetch_optional(&mut *conn)
                    .await?
                    .context("document")?;
                reload(conn, doc).await?;
                sqlx::query("select countersign_refuse_closed_period($1, $2)")
                    .bind(tenant.as_uuid())
                    .bind(day)
                    .fetch_one(&mut *conn)
                    .await?;
                sqlx::query("select threshold_minor from md_thresholds where currency = 'EUR'")
                    .fetch_optional(&mut *conn)
                    .await?;
                sqlx::query(
                    "update documents set status = $2, queried_from = $3, version = version + 1, round = $4, updated_at = now()
                      where id = $1",
                )
                .bind(doc)
                .bind(Status::HodApproved.as_str())
                .bind(None::<&str>)
                .bind(1_i32)
                .execute(&mut *conn)
                .await?;
                sqlx::query(
                    "insert into document_approvals (tenant_id, document_id, round, level, approver, approver_role)
                     values (current_setting('app.tenant_id')::uuid, $1, $2, $3, $4, $5)",
                )
                .bind(doc)
                .bind(1_i32)
                .bind("hod")
                .bind(user)
                .bind(role)
                .execute(&mut *conn)
                .await?;
                reload(conn, doc).await?;
                sqlx::query(
                    r#"select o_seq as "seq!", o_hash as "hash!"
                         from countersign_audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, ($11::text)::inet, $12)"#,
                )
                .bind(tenant.as_uuid())
                .bind("user")
                .bind(user.to_string())
                .bind(role)
                .bind("voucher.approved")
                .bind("document")
                .bind(doc.to_string())
                .bind(&changes)
                .bind(None::<&str>)
                .bind(REQUEST_ID)
                .bind(&ip)
                .bind(USER_AGENT)
                .fetch_one(&mut *conn)
                .await?;
                tx.commit().await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(f64::from(set.per) * f64::from(ctx.clients) / start.elapsed().as_secs_f64())
}

/// `documents::load` without the lock: the document, its approvals of round 1, its lines.
async fn reload(conn: &mut PgConnection, doc: Uuid) -> anyhow::Result<()> {
    sqlx::query(
        "select id, number, kind, department_id, raised_by, title, document_date, currency, amount_minor, status,
                queried_from, version, round, created_at
           from documents where id = $1",
    )
    .bind(doc)
    .fetch_optional(&mut *conn)
    .await?
    .context("document")?;
    sqlx::query(
        "select level, approver, approver_role, approved_at from document_approvals
          where document_id = $1 and round = $2 order by approved_at",
    )
    .bind(doc)
    .bind(1_i32)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query(
        "select line_no, description, amount_minor from document_lines where document_id = $1 order by line_no",
    )
    .bind(doc)
    .fetch_all(&mut *conn)
    .await?;
    Ok(())
}

/// Every document of `set` is approved exactly once, with its approval row and audit event.
async fn check_set(admin: &mut PgConnection, clients: u32, set: Set) -> anyhow::Result<()> {
    let expected = i64::from(set.per) * i64::from(clients);
    let (docs, approvals, events): (i64, i64, i64) = sqlx::query_as(&format!(
        "with mine as (select ({doc})::uuid as id from generate_series($1 + 1, $1 + $2) n)
         select (select count(*) from documents d join mine using (id) where d.status = 'hod_approved' and d.version = 2),
                (select count(*) from document_approvals a join mine on a.document_id = mine.id where a.level = 'hod'),
                (select count(*) from audit_events e join mine on e.entity_id = mine.id::text
                  where e.action = 'voucher.approved')",
        doc = id_sql(DOCUMENT, "n::int")
    ))
    .bind(i64::from(set.base))
    .bind(expected)
    .fetch_one(admin)
    .await?;
    anyhow::ensure!(
        (docs, approvals, events) == (expected, expected, expected),
        "{} documents {}..: {docs} approved, {approvals} approval rows, {events} events; expected {expected} each",
        set.shape.name(),
        set.base + 1
    );
    Ok(())
}

/// Organisations, each with a department, a raiser and a head of department, fiscal periods (a
/// closed one and the open one the documents fall in), the submitted vouchers of every set, and
/// `padding` paid ones.
async fn load(admin: &mut PgConnection, tenants: u32, clients: u32, sets: &[Set], padding: u32) -> anyhow::Result<()> {
    fixture::insert_tenants(admin, tenants).await?;
    let tenant = id_sql(TENANT, "g");
    let raiser = id_sql(RAISER, "g");
    let dept = id_sql(DEPARTMENT, "g");
    let hod = id_sql(HOD, "g");
    let statements = [
        "insert into md_thresholds (tenant_id, currency, threshold_minor) select id, 'EUR', 100000000 from tenants"
            .to_owned(),
        format!(
            "insert into users (id, email, display_name)
             select ({raiser})::uuid, 'raiser' || g || '@bench.example', 'Raiser ' || g from generate_series(1, $1) g
             union all
             select ({hod})::uuid, 'hod' || g || '@bench.example', 'Head ' || g from generate_series(1, $1) g"
        ),
        format!(
            "insert into departments (tenant_id, id, code, name)
             select ({tenant})::uuid, ({dept})::uuid, 'OPS', 'Operations' from generate_series(1, $1) g"
        ),
        format!(
            "insert into memberships (tenant_id, id, user_id, role, department_id)
             select ({tenant})::uuid, gen_random_uuid(), ({raiser})::uuid, 'staff', ({dept})::uuid from generate_series(1, $1) g
             union all
             select ({tenant})::uuid, gen_random_uuid(), ({hod})::uuid, 'hod', ({dept})::uuid from generate_series(1, $1) g"
        ),
        format!(
            "insert into fiscal_periods (tenant_id, id, name, starts_on, ends_on, status, closed_at, closed_by)
             select ({tenant})::uuid, gen_random_uuid(), 'FY2025', date '2025-01-01', date '2025-12-31', 'closed', now(), ({hod})::uuid
               from generate_series(1, $1) g
             union all
             select ({tenant})::uuid, gen_random_uuid(), 'FY2026', date '2026-01-01', date '2026-12-31', 'open', null, null
               from generate_series(1, $1) g"
        ),
    ];
    for sql in statements {
        sqlx::query(&sql).bind(i64::from(tenants)).execute(&mut *admin).await?;
    }
    let insert = |g: String, status: &str| {
        format!(
            "insert into documents (tenant_id, id, kind, department_id, raised_by, title, document_date, currency,
                                    amount_minor, status)
             select ({tenant})::uuid, ({doc})::uuid, 'voucher', ({dept})::uuid, ({raiser})::uuid, 'Office chairs',
                    date '{DAY}', 'EUR', 125000, '{status}'
               from generate_series($1::int, $2::int) n, lateral (select ({g})::int as g) t",
            doc = id_sql(DOCUMENT, "n")
        )
    };
    let mut end = 0;
    for set in sets {
        end = set.base + set.per * clients;
        sqlx::query(&insert(set.shape.tenant_sql("n", tenants), "submitted"))
            .bind(i64::from(set.base + 1))
            .bind(i64::from(end))
            .execute(&mut *admin)
            .await?;
    }
    if padding > 0 {
        sqlx::query(&insert(Shape::Many.tenant_sql("n", tenants), "paid"))
            .bind(i64::from(end + 1))
            .bind(i64::from(end + padding))
            .execute(&mut *admin)
            .await?;
    }
    sqlx::query(
        "insert into document_lines (tenant_id, document_id, line_no, description, amount_minor)
         select tenant_id, id, l.no, 'chair', l.amount from documents, (values (1, 60000), (2, 65000)) l (no, amount)",
    )
    .execute(&mut *admin)
    .await?;
    sqlx::query("vacuum analyze").execute(&mut *admin).await?;
    Ok(())
}

/// The statements `documents::transition` sends for "HOD approves a submitted voucher", in order
/// (see bench/README.md), with the document and organisation computed from the client's counter.
fn pgbench_script(set: Set, tenants: u32) -> String {
    let doc_text = id_sql(DOCUMENT, ":n::int");
    let doc = format!("({doc_text})::uuid");
    let tenant_text = id_sql(TENANT, ":t::int");
    let tenant = format!("({tenant_text})::uuid");
    let hod_text = id_sql(HOD, ":t::int");
    let hod = format!("({hod_text})::uuid");
    let load = format!(
        "SELECT id, number, kind, department_id, raised_by, title, document_date, currency, amount_minor, status, queried_from, version, round, created_at FROM documents WHERE id = {doc};\n\
         SELECT level, approver, approver_role, approved_at FROM document_approvals WHERE document_id = {doc} AND round = :round ORDER BY approved_at;\n\
         SELECT line_no, description, amount_minor FROM document_lines WHERE document_id = {doc} ORDER BY line_no;\n"
    );
    format!(
        "\\set n {base} + 1 + :client_id * {per} + :i\n\
         \\set i :i + 1\n\
         \\set t {t}\n\
         BEGIN;\n\
         SELECT set_config('app.tenant_id', {tenant_text}, true);\n\
         SELECT id FROM documents WHERE id = {doc} FOR UPDATE;\n\
         {load}\
         SELECT countersign_refuse_closed_period({tenant}, :day::date);\n\
         SELECT threshold_minor FROM md_thresholds WHERE currency = 'EUR';\n\
         UPDATE documents SET status = :to, queried_from = NULL, version = version + 1, round = :round, updated_at = now() WHERE id = {doc};\n\
         INSERT INTO document_approvals (tenant_id, document_id, round, level, approver, approver_role) \
         VALUES (current_setting('app.tenant_id')::uuid, {doc}, :round, 'hod', {hod}, 'hod');\n\
         {load}\
         SELECT o_seq, o_hash FROM countersign_audit_append({tenant}, 'user', {hod_text}, 'hod', 'voucher.approved', \
         'document', {doc_text}, :changes, NULL, :req, (:ip::text)::inet, :ua);\n\
         COMMIT;\n",
        base = set.base,
        per = set.per,
        t = set.shape.tenant_sql(":n", tenants),
    )
}
