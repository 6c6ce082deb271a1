//! Deprovisioning propagation (issue 18): two `countersign serve` processes on one database; an
//! identity provider's SCIM `PATCH active: false` sent to node A, timed until node B refuses the
//! person's session token (401) — next to the floor that propagation stands on, a raw `NOTIFY` →
//! `LISTEN` round trip on two plain connections, measured in the same run
//! (`crate::propagation`, shared with `revocation`).
//!
//! Per person (setup, not timed): created through SCIM on node A; a live session inserted and its
//! access token signed with the deployment's session key (both nodes share it, as every node of one
//! deployment must); node B answers `GET /api/v1/me` with it (200, and caches the session). Timed:
//! the PATCH sent to A (until its 200: A's transaction suspends the membership, revokes the
//! sessions and announces it), then node B asked again and again until it answers 401. The
//! resolution of "refused" is one request to B; its own time is reported beside the figures. Each
//! person's requests to B come from their own client address (X-Forwarded-For, believed from
//! loopback on B) so the per-address budget of failed credentials is not what answers.
//! Target (issue 18): p99 <= 50 ms from the PATCH to B's refusal.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use identity::signin::tokens::{Claims, TokenKey};
use sqlx::{ConnectOptions, Connection};
use store::testing::TestDb;
use uuid::Uuid;

use crate::propagation::{ms, notify_round_trips, print_table, stats};
use crate::server::{self, Server, data_dir, load_average, verdict};

#[derive(clap::Parser)]
pub struct Args {
    /// People deprovisioned and measured (after 10 unmeasured ones).
    #[arg(long, default_value_t = 300)]
    people: u32,
    /// The server binary (default: `countersign` next to this executable).
    #[arg(long)]
    server: Option<std::path::PathBuf>,
}

const TARGET_P99: Duration = Duration::from_millis(50);
const WARMUP: u32 = 10;

pub async fn run(args: Args) -> anyhow::Result<()> {
    let bin = server::binary(args.server.as_deref())?;
    let n = args.people.max(1);
    println!("deprovision: {n} people; load average {}", load_average());
    let db = TestDb::try_with_pool(4).await.context("creating the benchmark database")?;
    let (tenant, scim) = crate::scim::organisation_with_token(&db).await?;
    let (data_a, data_b) = (data_dir("deprovision-a")?, data_dir("deprovision-b")?);
    let node_a = Server::start(&bin, "serve", &db, &data_a).await?;
    // One deployment: node B signs and checks tokens with A's session key (and opens A's MFA seals).
    let keys = data_a.join("keys");
    let (session_key, mfa_key) = (keys.join("session-ed25519.key"), keys.join("mfa-aes256.key"));
    let node_b = Server::start_with(
        &bin,
        "serve",
        &db,
        &data_b,
        &[
            "--session-key-file",
            &session_key.display().to_string(),
            "--mfa-key-file",
            &mfa_key.display().to_string(),
            "--trusted-proxies",
            "127.0.0.1/32",
        ],
    )
    .await?;
    let result = measure(&db, &node_a, &node_b, tenant, &scim, &TokenKey::load(&session_key)?, n).await;
    node_a.stop().await?;
    node_b.stop().await?;
    let _ = std::fs::remove_dir_all(&data_a);
    let _ = std::fs::remove_dir_all(&data_b);
    result
}

/// The client address person `i` asks node B from (198.18.0.0/15, the benchmarking range).
fn address(i: u32) -> String {
    format!("198.18.{}.{}", (i / 250) % 250, 1 + i % 250)
}

async fn me(http: &reqwest::Client, base: &str, token: &str, from: &str) -> anyhow::Result<reqwest::StatusCode> {
    let r = http.get(format!("{base}/api/v1/me")).bearer_auth(token).header("x-forwarded-for", from).send().await?;
    let status = r.status();
    r.bytes().await?;
    Ok(status)
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    db: &TestDb,
    a: &Server,
    b: &Server,
    tenant: store::TenantId,
    scim: &str,
    key: &TokenKey,
    n: u32,
) -> anyhow::Result<()> {
    println!("deprovision: baseline, {n} raw NOTIFY -> LISTEN round trips ...");
    let baseline = notify_round_trips(db, n).await?;

    println!("deprovision: {n} people deprovisioned through node A's SCIM, awaited on node B ...");
    let http = reqwest::Client::builder().pool_max_idle_per_host(4).build()?;
    let mut admin = db.admin_options().connect().await?;
    let run = Uuid::new_v4().simple().to_string();
    let (mut end_to_end, mut after_ack, mut polls) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n + WARMUP {
        let email = format!("d{}-{i}@scim.bench.example", &run[..10]);
        let user = crate::scim::create(&http, &a.base, scim, &email).await?;
        let membership: Uuid = sqlx::query_scalar("select id from memberships where tenant_id = $1 and user_id = $2")
            .bind(tenant.as_uuid())
            .bind(user)
            .fetch_one(&mut admin)
            .await?;
        let sid = Uuid::now_v7();
        sqlx::query(
            "insert into sessions (tenant_id, id, user_id, membership_id, role, user_epoch, expires_at)
             select $1, $2, $3, $4, 'staff', session_epoch, now() + interval '1 hour' from users where id = $3",
        )
        .bind(tenant.as_uuid())
        .bind(sid)
        .bind(user)
        .bind(membership)
        .execute(&mut admin)
        .await?;
        let now = chrono::Utc::now().timestamp();
        let token =
            key.sign(&Claims { sub: user, tid: tenant.as_uuid(), sid, role: "staff".into(), iat: now, exp: now + 600 });
        let from = address(i);
        let status = me(&http, &b.base, &token, &from).await?;
        if status != reqwest::StatusCode::OK {
            bail!("person {i}: node B answered {status} to a live session");
        }

        let started = Instant::now();
        crate::scim::deactivate(&http, &a.base, scim, user).await?;
        let acked = Instant::now();
        let mut asked = 0u32;
        loop {
            let t = Instant::now();
            let status = me(&http, &b.base, &token, &from).await?;
            asked += 1;
            if i >= WARMUP {
                polls.push(t.elapsed());
            }
            match status {
                reqwest::StatusCode::UNAUTHORIZED => break,
                reqwest::StatusCode::OK if started.elapsed() < Duration::from_secs(5) => {}
                other => bail!("person {i}: node B answered {other} after {asked} requests"),
            }
        }
        let refused = Instant::now();
        if i >= WARMUP {
            end_to_end.push(refused - started);
            after_ack.push(refused - acked);
        }
    }
    admin.close().await?;

    let (e2e, ack, base, poll) = (stats(end_to_end), stats(after_ack), stats(baseline), stats(polls));
    print_table(&[
        ("raw NOTIFY -> LISTEN (baseline)", &base),
        ("SCIM PATCH sent to A -> B answers 401", &e2e),
        ("  of which: A's 200 received -> B answers 401", &ack),
        ("  one request to B (the resolution)", &poll),
    ]);
    println!(
        "  ratio to baseline: p50 {:.1}x, p99 {:.1}x",
        ms(e2e.p50) / ms(base.p50).max(1e-6),
        ms(e2e.p99) / ms(base.p99).max(1e-6)
    );
    println!("  target p99 <= {} ms: {}", TARGET_P99.as_millis(), verdict(e2e.p99 <= TARGET_P99));
    println!("  load average at the end: {}", load_average());
    Ok(())
}
