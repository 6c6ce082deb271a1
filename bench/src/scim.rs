//! SCIM provisioning through a real `countersign serve` process on loopback (issue 18): an
//! identity provider's user create (`POST /scim/v2/Users`) and PATCH (`active: false` with a new
//! family name: the membership suspended, the person's sessions revoked and announced, the record
//! renamed), `--clients` concurrent connections with the organisation's SCIM bearer token.
//!
//! Each client creates a person, then PATCHes that person, in a loop; every answer must be 201 /
//! 200 with the values sent. A *pair* is one create and its PATCH (two SCIM requests). Baseline in
//! the same run: `pgbench` with as many clients sending the writes of a pair — the same INSERT and
//! UPDATE statements, audit appends and `pg_notify` the server sends, in its three transactions
//! (the account in the identity scope, proven with a process secret as the server proves its own;
//! the membership and SCIM record in the organisation; the PATCH) — as the app role. The server's
//! reads (lookups, row locks, read-backs) are not in the baseline, so the ratio is against the
//! writes alone. Two rounds, alternating which side goes first. Target (issue 18): >= 500 SCIM
//! requests/s at 8 clients.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sqlx::{ConnectOptions, Connection};
use store::testing::TestDb;
use uuid::Uuid;

use crate::fixture;
use crate::server::{self, Server, data_dir, load_average, percentile_ms, verdict};

#[derive(clap::Parser)]
pub struct Args {
    /// Concurrent clients on both sides.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Measured seconds per side and round.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Unmeasured seconds through the server before each measured period.
    #[arg(long, default_value_t = 2.0)]
    warmup_seconds: f64,
    /// The server binary (default: `countersign` next to this executable).
    #[arg(long)]
    server: Option<std::path::PathBuf>,
}

const TARGET_REQUESTS: f64 = 500.0;
pub(crate) const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// A benchmark organisation (`bench-1`) with a SCIM token: the organisation's id and the token.
pub(crate) async fn organisation_with_token(db: &TestDb) -> anyhow::Result<(store::TenantId, String)> {
    let mut admin = db.admin_options().connect().await?;
    fixture::insert_tenants(&mut admin, 1).await?;
    admin.close().await?;
    let tenant = fixture::tenant_id(1)?;
    let mut tx = db.store.tenant_tx(tenant).await?;
    let permit = authz::Permit::operator(authz::Action::SettingsManage, tenant.as_uuid());
    let token =
        identity::admin::scim::tokens::create(&mut tx, &audit::Who::system("bench:scim"), &permit, "bench").await?;
    tx.commit().await?;
    Ok((tenant, secrecy::ExposeSecret::expose_secret(&token.secret).to_owned()))
}

/// `POST /scim/v2/Users` for `email`; the new person's id (checked: 201, the userName sent).
pub(crate) async fn create(http: &reqwest::Client, base: &str, token: &str, email: &str) -> anyhow::Result<Uuid> {
    let body = json!({
        "schemas": [USER_SCHEMA], "userName": email, "name": {"givenName": "Bench", "familyName": "Person"},
        "emails": [{"value": email, "primary": true, "type": "work"}], "active": true,
    });
    let r = http.post(format!("{base}/scim/v2/Users")).bearer_auth(token).json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if status != reqwest::StatusCode::CREATED || v["userName"] != email {
        bail!("POST /scim/v2/Users answered {status}: {v}");
    }
    Ok(Uuid::parse_str(v["id"].as_str().context("no id")?)?)
}

/// `PATCH /scim/v2/Users/{id}`: `active: false` and a new family name (checked: 200, both applied).
pub(crate) async fn deactivate(http: &reqwest::Client, base: &str, token: &str, id: Uuid) -> anyhow::Result<()> {
    let body = json!({
        "schemas": [PATCH_OP],
        "Operations": [
            {"op": "replace", "path": "active", "value": false},
            {"op": "replace", "path": "name.familyName", "value": "Departed"},
        ],
    });
    let r = http.patch(format!("{base}/scim/v2/Users/{id}")).bearer_auth(token).json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if status != reqwest::StatusCode::OK || v["active"] != false || v["name"]["familyName"] != "Departed" {
        bail!("PATCH /scim/v2/Users/{id} answered {status}: {v}");
    }
    Ok(())
}

/// `clients` identity-provider connections creating and PATCHing people for `seconds`. Returns
/// the create and PATCH latencies (µs), the pairs completed and the elapsed seconds.
async fn drive(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<(Vec<u64>, Vec<u64>, u64, f64)> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let run = Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base, token, run) = (http.clone(), base.to_owned(), token.to_owned(), run[..10].to_owned());
        tasks.push(tokio::spawn(async move {
            let (mut creates, mut patches) = (Vec::new(), Vec::new());
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let email = format!("p{run}-{c}-{n}@scim.bench.example");
                let t = Instant::now();
                let id = create(&http, &base, &token, &email).await?;
                creates.push(t.elapsed().as_micros() as u64);
                let t = Instant::now();
                deactivate(&http, &base, &token, id).await?;
                patches.push(t.elapsed().as_micros() as u64);
            }
            Ok::<_, anyhow::Error>((creates, patches))
        }));
    }
    let (mut creates, mut patches) = (Vec::new(), Vec::new());
    for t in tasks {
        let (c, p) = t.await??;
        creates.extend(c);
        patches.extend(p);
    }
    let pairs = patches.len() as u64;
    Ok((creates, patches, pairs, started.elapsed().as_secs_f64()))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let bin = server::binary(args.server.as_deref())?;
    let clients = args.clients.max(1);
    println!("scim: {clients} clients, {} s per side and round; load average {}", args.seconds, load_average());
    let db = TestDb::try_with_pool(4).await.context("creating the benchmark database")?;
    let (tenant, token) = organisation_with_token(&db).await?;
    let data = data_dir("scim")?;
    let server = Server::start(&bin, "serve", &db, &data).await?;
    let result = measure(&args, &db, &server, tenant, &token, clients).await;
    server.stop().await?;
    let _ = std::fs::remove_dir_all(&data);
    result
}

async fn measure(
    args: &Args,
    db: &TestDb,
    server: &Server,
    tenant: store::TenantId,
    token: &str,
    clients: usize,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients * 2).build()?;
    let seconds = f64::from(args.seconds.max(1));
    let mut figures = Vec::new();
    for round in 0..2 {
        let server_first = round == 0;
        let (mut ours, mut raw) = (None, None);
        for side in 0..2 {
            if (side == 0) == server_first {
                drive(&http, &server.base, token, clients, args.warmup_seconds.max(0.1)).await?;
                let (mut creates, mut patches, pairs, secs) =
                    drive(&http, &server.base, token, clients, seconds).await?;
                creates.sort_unstable();
                patches.sort_unstable();
                ours = Some((pairs as f64 / secs, creates, patches));
            } else {
                raw = Some(pgbench(db, tenant, clients, args.seconds.max(1)).await?);
            }
        }
        let (Some((pairs, creates, patches)), Some(raw)) = (ours, raw) else { bail!("a side did not run") };
        println!(
            "  round {}: server {:.0} SCIM requests/s ({pairs:.0} create+PATCH pairs/s; create p50 {:.2} ms, p99 {:.2} ms; \
             PATCH p50 {:.2} ms, p99 {:.2} ms), raw pgbench {raw:.0} pairs/s: {:.1} %; load average {}",
            round + 1,
            pairs * 2.0,
            percentile_ms(&creates, 0.50),
            percentile_ms(&creates, 0.99),
            percentile_ms(&patches, 0.50),
            percentile_ms(&patches, 0.99),
            pairs / raw * 100.0,
            load_average()
        );
        figures.push((pairs * 2.0, pairs / raw));
    }
    let best = figures.iter().map(|f| f.0).fold(0.0, f64::max);
    let best_ratio = figures.iter().map(|f| f.1).fold(0.0, f64::max);
    println!();
    println!("  {:<56} {:>14} {:>14}  verdict", "figure (best of two rounds)", "measured", "target");
    println!(
        "  {:<56} {:>14} {:>14}  {}",
        format!("SCIM requests/s (create, PATCH) at {clients} clients"),
        format!("{best:.0}/s"),
        format!(">= {TARGET_REQUESTS:.0}/s"),
        verdict(best >= TARGET_REQUESTS)
    );
    println!(
        "  {:<56} {:>14} {:>14}",
        "pairs/s vs the same writes through pgbench",
        format!("{:.1} %", best_ratio * 100.0),
        "(reported)"
    );
    println!("  load average at the end: {}", load_average());
    Ok(())
}

/// One pair's writes, in the server's three transactions (`identity::admin::scim::people::
/// account_for` → `users::create`; `provision` → `memberships::add`, the SCIM record; `replace`
/// → `members::suspend` → `revocation::revoke`, the record's update), each audited as the server
/// audits it. Variables: `secret` (the identity-scope proof), the actor, and every event's changes
/// and origin taken from events the server recorded (so both sides append rows of the same size).
fn pgbench_script(tenant: &str) -> String {
    let append = |action: &str, entity: &str, id: &str, changes: &str, reason: &str| {
        format!(
            "SELECT o_seq FROM countersign_audit_append('{tenant}'::uuid, :akind, :aid, :arole, '{action}', '{entity}', \
             {id}, :{changes}, {reason}, :req, (:ip::text)::inet, :ua);\n"
        )
    };
    format!(
        "\\set n random(1, 2000000000)\n\
         \\set m random(1, 2000000000)\n\
         BEGIN;\n\
         SELECT countersign_begin_identity(:secret);\n\
         INSERT INTO users (id, email, display_name) VALUES (gen_random_uuid(), \
         ('pg' || :client_id || '-' || :n || '-' || :m || '@scim.bench.example')::text::citext, 'Bench Person') \
         RETURNING id AS uid \\gset\n\
         SELECT o_seq FROM countersign_platform_audit_append(:akind, :aid, :arole, 'user.created', 'user', :uid, \
         :c_user, NULL, :req, (:ip::text)::inet, :ua);\n\
         COMMIT;\n\
         BEGIN;\n\
         SELECT set_config('app.tenant_id', '{tenant}', true);\n\
         INSERT INTO memberships (tenant_id, id, user_id, role, department_id, valid_until, partner_id) \
         VALUES ('{tenant}'::uuid, gen_random_uuid(), :uid, 'staff', NULL, NULL, NULL) RETURNING id AS mid \\gset\n\
         {member}\
         INSERT INTO scim_users (tenant_id, user_id, user_name, external_id, display_name, given_name, family_name, emails) \
         VALUES ('{tenant}'::uuid, :uid, 'pg' || :client_id || '-' || :n || '-' || :m || '@scim.bench.example', NULL, NULL, \
         'Bench', 'Person', :emails::jsonb);\n\
         {provisioned}\
         COMMIT;\n\
         BEGIN;\n\
         SELECT set_config('app.tenant_id', '{tenant}', true);\n\
         UPDATE memberships SET status = 'suspended', updated_at = now() WHERE tenant_id = '{tenant}'::uuid AND id = :mid;\n\
         {deactivated}\
         UPDATE sessions SET revoked_at = now(), revoked_reason = 'membership_deactivated' \
         WHERE tenant_id = '{tenant}'::uuid AND user_id = :uid AND revoked_at IS NULL;\n\
         SELECT pg_notify('countersign_revocation', '{{\"tenant\":\"{tenant}\",\"user\":\"' || :uid || '\"}}');\n\
         {revoked}\
         UPDATE scim_users SET user_name = user_name, external_id = NULL, display_name = NULL, given_name = 'Bench', \
         family_name = 'Departed', emails = :emails::jsonb, version = version + 1, updated_at = now() \
         WHERE tenant_id = '{tenant}'::uuid AND user_id = :uid;\n\
         {updated}\
         COMMIT;\n",
        member = append("membership.created", "membership", ":mid", "c_member", "NULL"),
        provisioned = append("scim.user_provisioned", "user", ":uid", "c_provisioned", "NULL"),
        deactivated = append(
            "membership.deactivated",
            "membership",
            ":mid",
            "c_deactivated",
            "'deprovisioned by the identity provider'"
        ),
        revoked = append("session.revoked_for_user", "user", ":uid", "c_revoked", "'membership_deactivated'"),
        updated = append("scim.user_updated", "user", ":uid", "c_updated", "NULL"),
    )
}

/// pgbench on a pair's writes (see [`pgbench_script`]); pairs per second.
async fn pgbench(db: &TestDb, tenant: store::TenantId, clients: usize, seconds: u32) -> anyhow::Result<f64> {
    let mut admin = db.admin_options().connect().await?;
    // The identity scope's proof: a process secret registered as the server registers its own.
    let secret = Uuid::new_v4().simple().to_string();
    sqlx::query(
        "insert into platform_bypass_secrets (secret_hash, label, expires_at)
         values (sha256(convert_to($1, 'UTF8')), 'countersign-bench scim baseline', now() + interval '1 hour')
         on conflict do nothing",
    )
    .bind(&secret)
    .execute(&mut admin)
    .await?;
    let event = |action: &'static str| {
        sqlx::query_as::<_, (String, String, Option<String>, String, Option<String>, Option<String>, Option<String>)>(
            "select actor_kind, actor_id, actor_role, changes, request_id, host(ip), user_agent from audit_events
              where action = $1 order by occurred_at desc limit 1",
        )
        .bind(action)
    };
    let mut defines: Vec<(&str, String)> = vec![("secret", secret)];
    let (kind, id, role, _, req, ip, ua) = event("scim.user_provisioned")
        .fetch_optional(&mut admin)
        .await?
        .context("no scim.user_provisioned event yet: the server side runs first in round 1")?;
    defines.extend([
        ("akind", kind),
        ("aid", id),
        ("arole", role.unwrap_or_default()),
        ("req", req.unwrap_or_else(|| "bench".into())),
        ("ip", ip.unwrap_or_else(|| "127.0.0.1".into())),
        ("ua", ua.unwrap_or_else(|| "countersign-bench".into())),
        ("emails", r#"[{"value":"p@scim.bench.example","primary":true,"type":"work"}]"#.to_owned()),
    ]);
    for (name, action) in [
        ("c_member", "membership.created"),
        ("c_provisioned", "scim.user_provisioned"),
        ("c_deactivated", "membership.deactivated"),
        ("c_revoked", "session.revoked_for_user"),
        ("c_updated", "scim.user_updated"),
    ] {
        let row = event(action).fetch_optional(&mut admin).await?.with_context(|| format!("no {action} event"))?;
        defines.push((name, row.3));
    }
    let user_created: String = sqlx::query_scalar(
        "select changes from platform_audit_events where action = 'user.created' order by seq desc limit 1",
    )
    .fetch_optional(&mut admin)
    .await?
    .context("no user.created event")?;
    defines.push(("c_user", user_created));
    admin.close().await?;
    let options = db.admin_options();
    let script = pgbench_script(&tenant.as_uuid().to_string());
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
