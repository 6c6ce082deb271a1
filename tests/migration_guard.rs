//! The migration guard: a migration that weakens isolation rolls back, naming the table.

mod common;

use sqlx::Connection;
use store::migrate::{self, MigrationSource};
use store::testing::TestDb;

async fn try_migration(db: &TestDb, sql: &str) -> Result<(), String> {
    let mut conn = db.admin_conn().await;
    let mut all = migrate::embedded();
    all.push(MigrationSource { version: 9_999_999, description: "attack".into(), sql: sql.into() });
    let r = migrate::apply(&mut conn, &all, None).await.map(|_| ()).map_err(|e| e.to_string());
    conn.close().await.expect("close");
    r
}

async fn policy_count(db: &TestDb, table: &str) -> i64 {
    let mut conn = db.admin_conn().await;
    sqlx::query_scalar("select count(*) from pg_policy where polrelid = $1::regclass")
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .expect("policies")
}

#[tokio::test]
async fn migration_that_drops_a_policy_is_rejected() {
    let db = TestDb::new().await;
    let before = policy_count(&db, "departments").await;
    let e = try_migration(&db, "drop policy tenant_isolation on departments").await.expect_err("must be refused");
    assert!(e.contains("table departments") && e.contains("tenant_isolation"), "{e}");
    assert_eq!(policy_count(&db, "departments").await, before, "the drop was rolled back");
    let mut conn = db.admin_conn().await;
    let v: i64 =
        sqlx::query_scalar("select max(version) from schema_migrations").fetch_one(&mut conn).await.expect("v");
    assert!(v < 9_999_999, "the refused migration was not recorded");
}

#[tokio::test]
async fn weakening_migrations_are_rejected_naming_the_table() {
    let db = TestDb::new().await;
    for (sql, table, words) in [
        (
            "create table invoices (tenant_id uuid not null, id uuid not null, primary key (tenant_id, id))",
            "invoices",
            "not enabled",
        ),
        ("alter table memberships no force row level security", "memberships", "not forced"),
        ("alter table departments disable row level security", "departments", "not enabled"),
        ("create policy everyone on departments for select using (true)", "departments", "widen access"),
        (
            "drop policy tenant_isolation on memberships; create policy tenant_isolation on memberships using (true)",
            "memberships",
            "tenant_isolation",
        ),
        ("drop policy tenant_isolation on tenants", "tenants", "tenant_isolation"),
        // Migrations run as the owner role, which is no superuser: it cannot grant BYPASSRLS at all.
        ("alter role countersign_app bypassrls", "bypassrls", "superuser"),
    ] {
        let e = try_migration(&db, sql).await.expect_err(sql);
        assert!(e.contains(table) && e.contains(words), "{sql}: {e}");
    }
    // And a well-formed new tenant table passes.
    try_migration(
        &db,
        "create table invoices (tenant_id uuid not null references tenants(id), id uuid not null, primary key (tenant_id, id));
         select countersign_protect('invoices');",
    )
    .await
    .expect("a protected table is accepted");
}

#[tokio::test]
async fn edited_applied_migration_is_refused() {
    let db = TestDb::new().await;
    let mut conn = db.admin_conn().await;
    let mut all = migrate::embedded();
    all[0].sql.push_str("\n-- edited after release");
    let e = migrate::apply(&mut conn, &all, None).await.expect_err("checksum mismatch");
    assert!(e.to_string().contains("changed after it was applied"), "{e}");
}

#[tokio::test]
async fn new_global_table_not_on_the_list_fails_the_migration() {
    let db = TestDb::new().await;
    for sql in [
        // A plain global table: no RLS at all.
        "create table lockout_counters (k text primary key, n integer not null)",
        // Guarded like an identity table, but nobody listed it in GLOBAL_TABLES.
        "create table lockout_counters (k text primary key); select countersign_identity_only('lockout_counters')",
    ] {
        let e = try_migration(&db, sql).await.expect_err(sql);
        assert!(e.contains("table lockout_counters") && e.contains("GLOBAL_TABLES"), "{sql}: {e}");
    }
    let mut conn = db.admin_conn().await;
    let exists: bool = sqlx::query_scalar("select to_regclass('lockout_counters') is not null")
        .fetch_one(&mut conn)
        .await
        .expect("exists");
    assert!(!exists, "the refused migration was rolled back");
}

#[tokio::test]
async fn weakening_a_global_tables_guard_is_rejected_naming_the_table() {
    let db = TestDb::new().await;
    for (sql, table, words) in [
        // Back to the raw setting anyone could set.
        (
            "drop policy identity_scope on user_credentials;
             create policy identity_scope on user_credentials using (current_setting('app.scope', true) = 'identity')",
            "user_credentials",
            "widen access",
        ),
        ("create policy peek on users for select using (true)", "users", "widen access"),
        ("alter table mail_outbox no force row level security", "mail_outbox", "not forced"),
        ("alter table user_totp disable row level security", "user_totp", "not enabled"),
        ("grant select on platform_bypass_secrets to countersign_app", "platform_bypass_secrets", "grants privileges"),
        ("create policy peek on platform_proof_key using (true)", "platform_proof_key", "widen access"),
        (
            "alter policy platform_sign on platform_audit_checkpoints with check (true)",
            "platform_audit_checkpoints",
            "widen access",
        ),
        (
            "drop policy identity_scope on login_failures; drop policy platform_bypass on login_failures",
            "login_failures",
            "no guarded policy",
        ),
    ] {
        let e = try_migration(&db, sql).await.expect_err(sql);
        assert!(e.contains(&format!("table {table}")) && e.contains(words), "{sql}: {e}");
    }
}

#[tokio::test]
async fn a_listed_and_guarded_global_table_passes() {
    let db = TestDb::new().await;
    let mut conn = db.admin_conn().await;
    let mut tx = conn.begin().await.expect("begin");
    sqlx::raw_sql(
        "set local role countersign_owner;
         create table lockout_counters (k text primary key);
         select countersign_identity_only('lockout_counters');
         create table platform_jobs (id bigint primary key);
         select countersign_owner_only('platform_jobs');",
    )
    .execute(&mut *tx)
    .await
    .expect("create");
    let problems = |v: Vec<migrate::Violation>| {
        v.into_iter().filter(|v| v.table == "lockout_counters" || v.table == "platform_jobs").count()
    };
    assert_eq!(problems(migrate::global_violations(&mut tx, migrate::GLOBAL_TABLES).await.expect("guard")), 2);
    let mut list = migrate::GLOBAL_TABLES.to_vec();
    list.push(migrate::GlobalTable { name: "lockout_counters", guard: migrate::GlobalGuard::Identity });
    list.push(migrate::GlobalTable { name: "platform_jobs", guard: migrate::GlobalGuard::OwnerOnly });
    let v = migrate::global_violations(&mut tx, &list).await.expect("guard");
    assert!(v.is_empty(), "{v:?}");
    tx.rollback().await.expect("rollback");
}

/// The checks every policy starts with and the audit encoding are inlined into the statements
/// that use them (migration 0042): a SECURITY DEFINER or SET function, or an IMMUTABLE one that
/// calls something STABLE, would be parsed and planned again on every call. The proofs behind
/// the checks stay SECURITY DEFINER with a fixed search_path.
#[tokio::test]
async fn policy_checks_and_the_audit_encoding_stay_inlinable() {
    let db = TestDb::new().await;
    let mut conn = db.admin_conn().await;
    let rows: Vec<(String, bool, bool, String)> = sqlx::query_as(
        "select proname::text, prosecdef, proconfig is not null, provolatile::text from pg_proc
          where proname = any($1) order by proname",
    )
    .bind(
        &[
            "countersign_audit_encode",
            "countersign_audit_field",
            "countersign_bypass_active",
            "countersign_bypass_proven",
            "countersign_identity_active",
            "countersign_identity_proven",
        ][..],
    )
    .fetch_all(&mut conn)
    .await
    .expect("functions");
    assert_eq!(rows.len(), 6, "{rows:?}");
    for (name, definer, set, volatility) in rows {
        let proof = name.ends_with("_proven");
        assert_eq!((definer, set), (proof, proof), "{name}: definer and SET only on the proofs");
        assert_eq!(volatility, "s", "{name} is STABLE");
    }
    for (call, inlined) in [
        ("countersign_bypass_active()", "current_setting('app.bypass'"),
        ("countersign_identity_active()", "current_setting('app.identity'"),
        ("countersign_audit_field('x')", "convert_to('x'"),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(&format!("explain (verbose, costs off) select {call}"))
            .fetch_all(&mut conn)
            .await
            .expect("explain");
        assert!(plan.iter().any(|l| l.contains(inlined)), "{call} is not inlined: {plan:?}");
    }
    conn.close().await.expect("close");
}

/// The index every scan of `relation` in `plan` uses (`Seq Scan` for a scan without one).
fn indexes_used(plan: &serde_json::Value, relation: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![plan];
    while let Some(p) = stack.pop() {
        let scan = p.get("Node Type").and_then(|n| n.as_str()).is_some_and(|n| n.contains("Scan"));
        if scan && p.get("Relation Name").and_then(|r| r.as_str()) == Some(relation) {
            let index = p.get("Index Name").and_then(|i| i.as_str());
            found.push(index.map_or_else(|| p["Node Type"].as_str().unwrap_or("?").to_owned(), str::to_owned));
        }
        if let Some(children) = p.get("Plans").and_then(|c| c.as_array()) {
            stack.extend(children);
        }
        if let Some(child) = p.get("Plan") {
            stack.push(child);
        }
    }
    found
}

/// A refresh and a session check find the session and the presented token by primary key even
/// while the tables have never been analysed with rows in them (a new deployment's first minute,
/// before autovacuum; migration 0044). Before, the planner then took the partial
/// `sessions_user` index and filtered every live session of the organisation, and
/// `refresh_tokens_session` and filtered every token of the family: each refresh cost more than
/// the last. The statements' conditions are those of `identity::signin::sessions` (`check`,
/// `refresh`): by tenant and id, live; by tenant, hash and session, unused.
#[tokio::test]
async fn sessions_and_refresh_tokens_are_found_by_primary_key_before_any_statistics() {
    let db = TestDb::new().await;
    let a = common::org(&db, "alpha").await;
    let mut admin = db.admin_conn().await;
    sqlx::query("vacuum analyze sessions, refresh_tokens").execute(&mut admin).await.expect("analyse while empty");
    let mut tx = db.store.bypass("test", "seeding sessions and a long token family").await.expect("bypass");
    let (session, token): (uuid::Uuid, Vec<u8>) = sqlx::query_as(
        "with s as (
             insert into sessions (tenant_id, id, user_id, membership_id, role, user_epoch, expires_at)
             select m.tenant_id, gen_random_uuid(), m.user_id, m.id, m.role, 0, now() + interval '1 day'
               from memberships m, generate_series(1, 300)
              where m.tenant_id = $1 and m.deleted_at is null
             returning tenant_id, id
         ), one as (select * from s limit 1),
         t as (
             insert into refresh_tokens (tenant_id, token_hash, session_id, used_at)
             select one.tenant_id, sha256(int4send(g)), one.id, case when g < 2000 then now() end
               from one, generate_series(1, 2000) g
             returning session_id, token_hash, used_at
         )
         select session_id, token_hash from t where used_at is null",
    )
    .bind(a.id.as_uuid())
    .fetch_one(tx.conn())
    .await
    .expect("seed");
    tx.commit().await.expect("commit");

    let mut tx = db.store.tenant_tx(a.id).await.expect("tenant tx");
    let explain = |sql: &'static str| sqlx::query_scalar::<_, serde_json::Value>(sql);
    let plan = explain(
        "explain (format json) select s.user_id from sessions s
          where s.tenant_id = $1 and s.id = $2 and s.revoked_at is null and s.expires_at > now()",
    )
    .bind(a.id.as_uuid())
    .bind(session)
    .fetch_one(tx.conn())
    .await
    .expect("explain the session");
    let used = indexes_used(&plan[0]["Plan"], "sessions");
    // The primary key, or the index on `id` alone (0018): either is one probe.
    assert!(matches!(used.as_slice(), [i] if i == "sessions_pkey" || i == "sessions_id"), "{used:?}: {plan}");
    let plan = explain(
        "explain (format json) update refresh_tokens set used_at = now()
          where tenant_id = $1 and token_hash = $2 and session_id = $3 and used_at is null returning session_id",
    )
    .bind(a.id.as_uuid())
    .bind(&token)
    .bind(session)
    .fetch_one(tx.conn())
    .await
    .expect("explain the token");
    assert_eq!(indexes_used(&plan[0]["Plan"], "refresh_tokens"), ["refresh_tokens_pkey"], "{plan}");
    // Revoking one person's sessions (`identity::revocation::revoke`, Scope::User) walks theirs.
    let plan = explain(
        "explain (format json) update sessions set revoked_at = now(), revoked_reason = 'x'
          where tenant_id = $1 and user_id = $2 and revoked_at is null",
    )
    .bind(a.id.as_uuid())
    .bind(a.users[0])
    .fetch_one(tx.conn())
    .await
    .expect("explain the revocation");
    assert_eq!(indexes_used(&plan[0]["Plan"], "sessions"), ["sessions_user"], "{plan}");
}

/// A person is found by email with one index probe under row-level security, however many people
/// the deployment holds (migration 0045): citext's `=` is not leakproof, so `email = $1::citext`
/// filtered every row of `users` after the policies; the statements compare the generated
/// `email_key` (text, leakproof) instead, as sign-in, email codes, SCIM and invitations do.
#[tokio::test]
async fn a_person_is_found_by_email_through_an_index_under_row_level_security() {
    let db = TestDb::new().await;
    let mut tx = db.store.bypass("test", "seeding many people").await.expect("bypass");
    sqlx::query(
        "insert into users (id, email, display_name)
         select gen_random_uuid(), 'Person' || g || '@Many.example', 'P' from generate_series(1, 3000) g",
    )
    .execute(tx.conn())
    .await
    .expect("seed");
    tx.commit().await.expect("commit");
    let mut admin = db.admin_conn().await;
    sqlx::query("analyze users").execute(&mut admin).await.expect("analyze");

    let mut g = db.store.global_tx().await.expect("identity tx");
    let plan: serde_json::Value =
        sqlx::query_scalar("explain (format json) select id, status from users where email_key = lower($1)")
            .bind("person17@many.EXAMPLE")
            .fetch_one(g.conn())
            .await
            .expect("explain");
    assert_eq!(indexes_used(&plan[0]["Plan"], "users"), ["users_email_key_lookup"], "{plan}");
    // Case-insensitive as citext was: the stored 'Person17@Many.example' answers either spelling.
    let found: Option<String> = sqlx::query_scalar("select email::text from users where email_key = lower($1)")
        .bind("PERSON17@many.example")
        .fetch_optional(g.conn())
        .await
        .expect("lookup");
    assert_eq!(found.as_deref(), Some("Person17@Many.example"));
}
