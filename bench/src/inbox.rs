//! The inbox page (`GET /`, HTML) of an approver in an organisation holding `--documents`
//! documents, served by a real `countersign serve` process on loopback, against raw `pgbench`
//! sending the statements that page sends, in the same order, as the same role, on the same
//! database, with the same number of clients, in the same run.
//!
//! Server time is measured from the client: each of the `--clients` keep-alive connections sends
//! one request at a time and times it from sending to the last byte of the body. That is an
//! upper bound of the time in the server (it includes loopback HTTP and the client's own
//! scheduling on a shared machine), so the p99 it reports can only flatter the server by being
//! wrong in the server's disfavour.
//!
//! Targets (issue 15): p99 <= 20 ms at 8 clients; pages/s >= 70 % of the same statements' tx/s
//! through pgbench.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use identity::directory::{memberships, tenants, users};
use identity::{EmailAddress, JoinPolicy, Role, Slug};
use sqlx::{ConnectOptions, Connection, PgConnection};
use store::testing::TestDb;
use uuid::Uuid;

use crate::server::{self, Server, data_dir, load_average};

#[derive(clap::Args)]
pub struct Args {
    /// Documents in the organisation (every status, kind, department and currency).
    #[arg(long, default_value_t = 100_000)]
    documents: u32,
    /// Departments the documents are spread over.
    #[arg(long, default_value_t = 8)]
    departments: u32,
    /// Staff members who raised them.
    #[arg(long, default_value_t = 40)]
    raisers: u32,
    /// The approver whose inbox is measured: hod (of the first department), finance or md.
    #[arg(long, default_value = "hod")]
    role: String,
    /// Concurrent clients on both sides.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Measured seconds per side (after a warm-up of 2 s through the server).
    #[arg(long, default_value_t = 15)]
    seconds: u32,
    /// The server binary (default: `countersign` next to this executable: build it with
    /// `cargo build --release --bin countersign`).
    #[arg(long)]
    server: Option<std::path::PathBuf>,
}

const PASSWORD: &str = "maple harbour signal 2291";
const ORG: &str = "bench-inbox";
const APPROVER: &str = "approver@bench.example";
const P99_TARGET_MS: f64 = 20.0;
const RATIO_TARGET: f64 = 0.70;

/// Who the approver is: ids the pgbench script needs.
struct Fixture {
    tenant: Uuid,
    user: Uuid,
    department: Option<Uuid>,
    role: Role,
}

/// The organisation, its departments, raisers and documents; the approver through the domain
/// functions (with a real password), everything else bulk-loaded as the database owner.
async fn seed(db: &TestDb, args: &Args) -> anyhow::Result<Fixture> {
    let role: Role = args.role.parse().map_err(|_| anyhow::anyhow!("--role: hod, finance or md"))?;
    if !matches!(role, Role::Hod | Role::Finance | Role::Md) {
        bail!("--role: hod, finance or md");
    }
    let who = audit::Who::system("bench:inbox");
    let mut b = db.store.bypass("bench", "seed the inbox benchmark").await?;
    let t = tenants::create(
        &mut b,
        &who,
        &tenants::NewTenant {
            slug: Slug::parse(ORG)?,
            name: "Inbox Bench".into(),
            allowed_email_domains: vec!["bench.example".into()],
            join_policy: JoinPolicy::AdminApproval,
        },
    )
    .await?;
    b.commit().await?;
    let tenant = t.id.as_uuid();

    let mut admin = db.admin_options().connect().await?;
    sqlx::query(
        "insert into departments (tenant_id, id, code, name)
         select $1, gen_random_uuid(), 'D' || lpad(g::text, 3, '0'), 'Department ' || g from generate_series(1, $2) g",
    )
    .bind(tenant)
    .bind(i64::from(args.departments.max(1)))
    .execute(&mut admin)
    .await?;
    let departments: Vec<Uuid> = sqlx::query_scalar("select id from departments where tenant_id = $1 order by code")
        .bind(tenant)
        .fetch_all(&mut admin)
        .await?;

    let hasher = identity::signin::passwords::Hasher::new(1)?;
    let mut g = db.store.global_tx().await?;
    let u = users::create(&mut g, &who, &EmailAddress::parse(APPROVER)?, "Avery Approver").await?;
    identity::signin::account::set_password(&mut g, &who, &hasher, u.id, &secrecy::SecretString::from(PASSWORD), &[])
        .await?;
    g.commit().await?;
    let department = (role == Role::Hod).then(|| departments[0]);
    let mut tx = db.store.tenant_tx(t.id).await?;
    let m = memberships::NewMembership { user_id: u.id, role, department_id: department, valid_until: None };
    memberships::add(&mut tx, &who, &m).await?;
    tx.commit().await?;

    load(&mut admin, tenant, &departments, args).await?;
    admin.close().await?;
    Ok(Fixture { tenant, user: u.id, department, role })
}

async fn load(admin: &mut PgConnection, tenant: Uuid, departments: &[Uuid], args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let raisers = i64::from(args.raisers.max(1));
    sqlx::query(
        "insert into users (id, email, display_name)
         select gen_random_uuid(), 'raiser' || g || '@bench.example', 'Raiser ' || g from generate_series(1, $1) g",
    )
    .bind(raisers)
    .execute(&mut *admin)
    .await?;
    // Raiser g works in department g mod D.
    sqlx::query(
        "insert into memberships (tenant_id, id, user_id, role, department_id)
         select $1, gen_random_uuid(), u.id, 'staff', ($2::uuid[])[1 + (g % array_length($2::uuid[], 1))]
           from generate_series(1, $3) g join users u on u.email = 'raiser' || g || '@bench.example'",
    )
    .bind(tenant)
    .bind(departments)
    .bind(raisers)
    .execute(&mut *admin)
    .await?;
    sqlx::query(
        "insert into fiscal_periods (tenant_id, id, name, starts_on, ends_on, status)
         values ($1, gen_random_uuid(), 'FY2026', date '2026-01-01', date '2026-12-31', 'open')",
    )
    .bind(tenant)
    .execute(&mut *admin)
    .await?;
    // Document n: raised by raiser n mod R (so in that raiser's department), every ninth one in
    // each status, alternating kinds, three currencies, dates over the year.
    sqlx::query(
        "insert into documents (tenant_id, id, kind, department_id, raised_by, title, document_date, currency,
                                amount_minor, status, queried_from)
         select $1, gen_random_uuid(),
                case when n % 2 = 0 then 'voucher' else 'purchase_order' end,
                ($2::uuid[])[1 + ((1 + n % $4) % array_length($2::uuid[], 1))],
                u.id, 'Bench document ' || n, date '2026-01-01' + (n % 330)::int,
                (array['EUR', 'GBP', 'USD'])[1 + n % 3], 1000 + (n * 7919) % 5000000,
                (array['draft', 'submitted', 'hod_approved', 'finance_approved', 'queried', 'approved', 'paid',
                       'rejected', 'cancelled'])[1 + (n / 7) % 9],
                case when (n / 7) % 9 = 4 then 'submitted' end
           from generate_series(1, $3) n
           join users u on u.email = 'raiser' || (1 + n % $4) || '@bench.example'",
    )
    .bind(tenant)
    .bind(departments)
    .bind(i64::from(args.documents))
    .bind(raisers)
    .execute(&mut *admin)
    .await?;
    sqlx::query(
        "insert into document_lines (tenant_id, document_id, line_no, description, amount_minor)
         select tenant_id, id, 1, 'line', amount_minor from documents where tenant_id = $1",
    )
    .bind(tenant)
    .execute(&mut *admin)
    .await?;
    sqlx::query("vacuum analyze").execute(&mut *admin).await?;
    println!("  loaded in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The statements of `GET /` for the approver, in the order the server sends them (see
/// `crates/web/src/ui/inbox.rs::list_page` and `ui/chrome.rs::Chrome::member`): the tenant
/// transaction, the membership, the 25 rows (+1) of "waiting for me", the counts per kind of the
/// first 200 of them, the departments, the organisation and the person for the frame, COMMIT. The
/// lists are the server's statement for an unfiltered page (filters left empty are not in its
/// text); the departments' empty cursor is a NULL parameter there and `NULLIF(:none, 'none')`
/// here, so both sides plan the same expressions.
fn pgbench_script(f: &Fixture) -> String {
    // The arms of "waiting for me" (crates/approvals/src/inbox.rs::arms) for this approver: the
    // queries they raised, then each status they act on, not raised by them, not yet approved by
    // them in this round (a head of department: only their department's submitted ones).
    let mine = "d.tenant_id = '{tenant}'::uuid AND d.raised_by <> '{user}'::uuid";
    let not_approved = "AND NOT EXISTS (SELECT 1 FROM document_approvals a WHERE a.tenant_id = d.tenant_id \
                        AND a.document_id = d.id AND a.round = d.round AND a.approver = '{user}'::uuid)";
    let arms: Vec<String> = match (f.role, f.department) {
        (Role::Hod, Some(dept)) => {
            vec![format!("d.status = 'submitted' AND {mine} AND d.department_id = '{dept}'::uuid {not_approved}")]
        }
        (Role::Finance, _) => vec![
            format!("d.status = 'hod_approved' AND {mine} {not_approved}"),
            format!("d.status = 'approved' AND {mine}"),
        ],
        _ => vec![format!("d.status = 'finance_approved' AND {mine} {not_approved}")],
    };
    let union = |limit: u32| {
        let mut union = format!(
            "(SELECT d.* FROM documents d WHERE d.tenant_id = '{{tenant}}'::uuid AND d.status = 'queried' \
             AND d.raised_by = '{{user}}'::uuid ORDER BY d.id DESC LIMIT {limit})"
        );
        for arm in &arms {
            union.push_str(&format!(
                " UNION ALL (SELECT d.* FROM documents d WHERE {arm} ORDER BY d.id DESC LIMIT {limit})"
            ));
        }
        union
    };
    let list = |limit: u32| {
        let union = union(limit);
        format!(
            "SELECT d.id, d.number, d.kind, d.department_id, d.raised_by, d.title, d.document_date, d.currency, \
             d.amount_minor, d.status, d.version, \
             coalesce((SELECT array_agg(a.approver) FROM document_approvals a WHERE a.tenant_id = d.tenant_id \
             AND a.document_id = d.id AND a.round = d.round), '{{}}') \
             FROM ({union}) d ORDER BY d.id DESC LIMIT {limit};\n"
        )
        .replace("{tenant}", &f.tenant.to_string())
        .replace("{user}", &f.user.to_string())
    };
    // The counts per kind of the first 200 waiting (approvals::inbox::waiting_counts).
    let counts = format!(
        "SELECT d.kind, count(*) FILTER (WHERE d.rn <= 200), bool_or(d.rn > 200) FROM \
         (SELECT u.kind, row_number() OVER (ORDER BY u.id DESC) AS rn FROM ({}) u ORDER BY u.id DESC LIMIT 201) d \
         GROUP BY d.kind;\n",
        union(201)
    )
    .replace("{tenant}", &f.tenant.to_string())
    .replace("{user}", &f.user.to_string());
    format!(
        "BEGIN;\n\
         SELECT set_config('app.tenant_id', '{tenant}', true);\n\
         SELECT role, department_id FROM memberships WHERE user_id = '{user}'::uuid AND status = 'active' \
         AND deleted_at IS NULL AND valid_from <= now() AND (valid_until IS NULL OR valid_until > now());\n\
         {first}\
         {counts}\
         SELECT id, code, name FROM departments WHERE tenant_id = '{tenant}'::uuid AND deleted_at IS NULL \
         AND code > coalesce(NULLIF(:none, 'none'), '') ORDER BY code LIMIT 500;\n\
         SELECT id, slug, name, plan, status, allowed_email_domains::text[], join_policy, created_at \
         FROM tenants WHERE id = '{tenant}'::uuid AND deleted_at IS NULL;\n\
         SELECT id, email::text, display_name, status FROM users WHERE id = '{user}'::uuid;\n\
         COMMIT;\n",
        tenant = f.tenant,
        user = f.user,
        first = list(26),
        counts = counts,
    )
}

#[derive(serde::Deserialize)]
struct Tokens {
    access_token: String,
}

/// Signs the approver in (tokens in the body) and returns the access token for `cs_access`.
async fn sign_in(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let r = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"organisation": ORG, "email": APPROVER, "password": PASSWORD, "token_delivery": "body"}))
        .send()
        .await?;
    if r.status() != reqwest::StatusCode::OK {
        bail!("login answered {}: {}", r.status(), r.text().await.unwrap_or_default());
    }
    Ok(r.json::<Tokens>().await?.access_token)
}

/// `clients` loops of `GET /` for `seconds`; every answer must be the 200 inbox page. Returns the
/// latencies in microseconds and the elapsed time.
async fn drive(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<(Vec<u64>, f64)> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, cookie, failures) = (http.clone(), format!("{base}/"), cookie.to_owned(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let r = http.get(&url).header(reqwest::header::COOKIE, &cookie).send().await?;
                let status = r.status();
                let body = r.bytes().await?;
                took.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                if status != reqwest::StatusCode::OK || !body.windows(14).any(|w| w == b"Bench document") {
                    failures.fetch_add(1, Ordering::Relaxed);
                    bail!("GET / answered {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
                }
            }
            Ok::<_, anyhow::Error>(took)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, started.elapsed().as_secs_f64()))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let bin = server::binary(args.server.as_deref())?;
    let clients = args.clients.max(1);
    println!(
        "inbox: {} documents, {} departments, the inbox of a {} approver, {clients} clients, load average {}",
        args.documents,
        args.departments,
        args.role,
        load_average()
    );
    let db = TestDb::try_with_pool(4).await.context("creating the benchmark database")?;
    println!("inbox: seeding ...");
    let fixture = seed(&db, &args).await?;

    let data = data_dir("inbox")?;
    let server = Server::start(&bin, "serve", &db, &data).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients * 2)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let access = sign_in(&http, &server.base).await?;
    let cookie = format!("cs_access={access}");
    let probe = http.get(format!("{}/", server.base)).header(reqwest::header::COOKIE, &cookie).send().await?;
    let shown = probe.text().await?.matches("Bench document").count();
    println!("inbox: the page lists {shown} documents waiting for the approver");

    let seconds = f64::from(args.seconds.max(1));
    let mut figures = Vec::new();
    // Two rounds, alternating which side goes first, so neither always runs on a warmer machine.
    for round in 0..2 {
        let server_first = round == 0;
        let mut ours = None;
        let mut raw = None;
        for side in 0..2 {
            if (side == 0) == server_first {
                let _ = drive(&http, &server.base, &cookie, clients, 2.0).await?;
                let (mut took, secs) = drive(&http, &server.base, &cookie, clients, seconds).await?;
                took.sort_unstable();
                ours = Some((took.len() as f64 / secs, took));
            } else {
                let options = db.admin_options();
                let script = pgbench_script(&fixture);
                let run = crate::pgbench::Run {
                    options: &options,
                    user: store::migrate::APP_ROLE,
                    script: &script,
                    clients: u32::try_from(clients).unwrap_or(8),
                    seconds: args.seconds.max(1),
                    per_client: None,
                    defines: &[("none", "none".to_owned())],
                };
                raw = Some(crate::pgbench::run(&run)?);
            }
        }
        let (Some((rate, took)), Some(raw)) = (ours, raw) else { bail!("a side did not run") };
        println!(
            "  round {}: server {rate:.0} pages/s (p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms), \
             raw pgbench {raw:.0} tx/s: {:.1} %; load average {}",
            round + 1,
            percentile(&took, 0.50),
            percentile(&took, 0.95),
            percentile(&took, 0.99),
            percentile(&took, 1.0),
            rate / raw * 100.0,
            load_average()
        );
        figures.push((rate / raw, percentile(&took, 0.99)));
    }
    server.stop().await?;
    let _ = std::fs::remove_dir_all(&data);

    let best_ratio = figures.iter().map(|f| f.0).fold(0.0, f64::max);
    let best_p99 = figures.iter().map(|f| f.1).fold(f64::INFINITY, f64::min);
    println!();
    println!("  {:<44} {:>12} {:>10}  verdict", "figure (best of two rounds)", "measured", "target");
    println!(
        "  {:<44} {:>12} {:>10}  {}",
        "inbox page p99, client-measured",
        format!("{best_p99:.2} ms"),
        format!("<= {P99_TARGET_MS} ms"),
        if best_p99 <= P99_TARGET_MS { "met" } else { "NOT met" }
    );
    println!(
        "  {:<44} {:>12} {:>10}  {}",
        "pages/s vs the same statements in pgbench",
        format!("{:.1} %", best_ratio * 100.0),
        format!(">= {:.0} %", RATIO_TARGET * 100.0),
        if best_ratio >= RATIO_TARGET { "met" } else { "NOT met" }
    );
    println!("  load average at the end: {}", load_average());
    Ok(())
}
