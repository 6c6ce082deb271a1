//! Revocation propagation: a session revoked through node A, timed until node B's session cache
//! has dropped it (B then refuses the access token — checked every round, not timed), next to
//! the floor the design stands on: a raw `NOTIFY` → `LISTEN` round trip on two plain
//! connections, measured in the same run.
//!
//! Both nodes are full `web::AppState`s on one database, each with its own `LISTEN` connection;
//! requests reach node B's router in-process (no TCP), so what is measured is the database path:
//! the revoking transaction (UPDATE, audit append, `pg_notify`, COMMIT), delivery to B's
//! listener, and B applying it.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use identity::revocation::{self, Scope};
use identity::signin::tokens::{Claims, TokenKey};
use sqlx::{ConnectOptions, Connection};
use store::testing::TestDb;
use tower::ServiceExt;
use uuid::Uuid;

use crate::fixture;
use crate::propagation::{ms, notify_round_trips, print_table, stats};

#[derive(clap::Args)]
pub struct Args {
    /// Revocations measured (after 20 unmeasured warm-up rounds).
    #[arg(long, default_value_t = 500)]
    revocations: u32,
}

const TARGET_P99: Duration = Duration::from_millis(50);

async fn status(app: &axum::Router, token: &str) -> anyhow::Result<StatusCode> {
    let req = Request::get("/api/v1/audit/events?limit=1")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())?;
    Ok(app.clone().oneshot(req).await?.status())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let n = args.revocations.max(1);
    let db = TestDb::try_with_pool(8).await.context("creating the benchmark database")?;
    let mut admin = db.admin_options().connect().await?;
    fixture::insert_tenants(&mut admin, 1).await?;
    let tenant = fixture::tenant_id(1)?;
    let user = Uuid::now_v7();
    let membership = Uuid::now_v7();
    sqlx::query("insert into users (id, email, display_name) values ($1, 'bench@bench.example', 'Bench')")
        .bind(user)
        .execute(&mut admin)
        .await?;
    sqlx::query("insert into memberships (tenant_id, id, user_id, role) values ($1, $2, $3, 'admin')")
        .bind(tenant.as_uuid())
        .bind(membership)
        .bind(user)
        .execute(&mut admin)
        .await?;

    let key = TokenKey::from_seed([7; 32]);
    let node_a = web::AppState::new(db.store.clone(), web::TrustedProxies::default(), key.clone())?;
    let node_b = web::AppState::new(db.store.clone(), web::TrustedProxies::default(), key.clone())?;
    let app_b = web::router(node_b.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(node_a.sessions.is_listening() && node_b.sessions.is_listening()) {
        if Instant::now() > deadline {
            bail!("revocation listeners did not connect");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    println!("revocation: baseline, {n} raw NOTIFY -> LISTEN round trips ...");
    let baseline = notify_round_trips(&db, n).await?;

    println!("revocation: {n} sessions revoked on node A, awaited on node B ...");
    let who = audit::Who::system("bench:revocation");
    let (mut end_to_end, mut after_commit) = (Vec::new(), Vec::new());
    let mut not_refused = 0u32;
    for round in 0..n + 20 {
        let sid = Uuid::now_v7();
        sqlx::query(
            "insert into sessions (tenant_id, id, user_id, membership_id, role, user_epoch, expires_at)
             values ($1, $2, $3, $4, 'admin', 0, now() + interval '1 hour')",
        )
        .bind(tenant.as_uuid())
        .bind(sid)
        .bind(user)
        .bind(membership)
        .execute(&mut admin)
        .await?;
        let now = chrono::Utc::now().timestamp();
        let token =
            key.sign(&Claims { sub: user, tid: tenant.as_uuid(), sid, role: "admin".into(), iat: now, exp: now + 600 });
        // Node B accepts the token and caches the session.
        if status(&app_b, &token).await? != StatusCode::OK || node_b.sessions.get(sid).is_none() {
            bail!("round {round}: node B did not accept and cache a live session");
        }

        let applied = node_b.sessions.next_applied();
        let started = Instant::now();
        let mut tx = db.store.tenant_tx(tenant).await?;
        revocation::revoke(&mut tx, &who, Scope::Session(sid), "benchmark").await?;
        tx.commit().await?;
        let committed = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), applied).await.context("node B never heard the revocation")?;
        let dropped = Instant::now();
        if node_b.sessions.get(sid).is_some() {
            bail!("round {round}: node B applied a revocation but kept the session");
        }
        if status(&app_b, &token).await? != StatusCode::UNAUTHORIZED {
            not_refused += 1;
        }
        if round >= 20 {
            end_to_end.push(dropped - started);
            after_commit.push(dropped.saturating_duration_since(committed));
        }
    }
    admin.close().await?;

    let (e2e, commit, base) = (stats(end_to_end), stats(after_commit), stats(baseline));
    print_table(&[
        ("raw NOTIFY -> LISTEN (baseline)", &base),
        ("revoke on A -> dropped on B", &e2e),
        ("  of which: A's COMMIT returned -> dropped", &commit),
    ]);
    println!(
        "  ratio to baseline: p50 {:.1}x, p99 {:.1}x",
        ms(e2e.p50) / ms(base.p50).max(1e-6),
        ms(e2e.p99) / ms(base.p99).max(1e-6)
    );
    println!(
        "  target p99 <= {} ms: {}",
        TARGET_P99.as_millis(),
        if e2e.p99 <= TARGET_P99 { "met" } else { "NOT met" }
    );
    println!("  node B refused the revoked token: {}/{n}", n - not_refused.min(n));
    if not_refused > 0 {
        bail!("{not_refused} revoked sessions were still accepted by node B");
    }
    Ok(())
}
