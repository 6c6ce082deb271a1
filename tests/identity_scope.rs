//! The identity scope needs the process secret: an app-role connection that sets every setting
//! it can (with guessed and with copied values) finds no row in any global table and cannot
//! update `users`. The tables come from the catalog, not from a hand list.

mod common;

use common::{org, sqlstate, with_password};
use sqlx::{Connection, Executor, PgConnection};
use store::testing::TestDb;

/// Every table without `tenant_id` except `tenants` (which is tenant-protected on `id`).
async fn global_tables(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = 'public' and c.relkind in ('r', 'p') and c.relname <> 'tenants'
            and not exists (select 1 from pg_attribute a
                             where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped)
          order by 1",
    )
    .fetch_all(conn)
    .await
    .expect("global tables")
}

/// Every `app.*` setting any function or policy reads (catalog-driven too).
async fn app_settings(conn: &mut PgConnection) -> Vec<String> {
    let mut names: Vec<String> = sqlx::query_scalar(
        r"select distinct m[1] from (
              select regexp_matches(p.prosrc, '(app\.[a-z_]+)', 'g') as m
                from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public'
              union all
              select regexp_matches(coalesce(pg_get_expr(polqual, polrelid), '') || ' '
                                    || coalesce(pg_get_expr(polwithcheck, polrelid), ''), '(app\.[a-z_]+)', 'g')
                from pg_policy) s",
    )
    .fetch_all(conn)
    .await
    .expect("settings");
    for known in ["app.scope", "app.tenant_id", "app.bypass", "app.identity"] {
        if !names.iter().any(|n| n == known) {
            names.push(known.into());
        }
    }
    names.sort();
    names
}

/// At least one row in every global table, so "zero rows" below means something.
async fn fill_every_global_table(db: &TestDb) {
    let a = org(db, "alpha").await;
    with_password(db, a.users[0]).await;
    // A bypass writes the bypass log and the platform chain; the signer checkpoints it.
    db.store.bypass("test", "fill the platform chain").await.expect("bypass").commit().await.expect("commit");
    let mut g = db.store.global_tx().await.expect("global");
    audit::checkpoint::checkpoint_platform(g.conn(), &common::test_key()).await.expect("checkpoint");
    g.commit().await.expect("commit");
    let mut admin = db.admin_conn().await;
    let u = a.users[0];
    for sql in [
        "insert into user_totp (user_id, key_id, nonce, ciphertext) values ($1, '0123456789abcdef', '\\x000000000000000000000000', '\\x0000000000000000000000000000000000')",
        "insert into user_recovery_codes (user_id, code_hash) values ($1, sha256('x'))",
        "insert into email_codes (id, email, user_id, purpose, salt, code_hash, expires_at)
           values (gen_random_uuid(), 'a@alpha.example', $1, 'login', '\\x00000000000000000000000000000000', sha256('1'), now() + interval '1 hour')",
        "insert into mfa_challenges (id, token_hash, user_id, organisation_id, methods, expires_at)
           select gen_random_uuid(), sha256('t'), $1, m.tenant_id, '{totp}', now() + interval '1 hour' from memberships m where m.user_id = $1",
        "insert into mail_outbox (id, to_address, subject, key_id, nonce, ciphertext, expires_at)
           select gen_random_uuid(), 'a@alpha.example', 'code', '0123456789abcdef', '\\x000000000000000000000000', '\\x0000000000000000000000000000000000', now() + interval '1 day' where $1::uuid is not null",
        "insert into login_failures (user_id, ip) values ($1, '192.0.2.1')",
        "insert into login_signals (user_id, suspicious_at) values ($1, now())",
        "insert into credential_failures (lock_key, user_id, failures) values (sha256('k'), $1, 1)",
        "insert into platform_isolation_daily (day, cross_tenant_refused) select '2000-01-01', 1 where $1::uuid is not null",
        "insert into oidc_flows (id, state_hash, binding_hash, organisation_id, nonce, pkce_verifier, redirect_uri, expires_at)
           select gen_random_uuid(), sha256('s'), sha256('b'), m.tenant_id, repeat('n', 32), repeat('v', 43), 'http://127.0.0.1/cb', now() + interval '10 minutes'
             from memberships m where m.user_id = $1 limit 1",
        "insert into oidc_identities (issuer, subject, user_id, organisation_id)
           select 'https://idp.example', 'subject-1', $1, m.tenant_id from memberships m where m.user_id = $1 limit 1",
    ] {
        sqlx::query(sql).bind(u).execute(&mut admin).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    for t in global_tables(&mut admin).await {
        let n: i64 =
            sqlx::query_scalar(&format!("select count(*) from {t}")).fetch_one(&mut admin).await.expect("count");
        assert!(n > 0, "{t} is empty: add a fixture row for it in tests/identity_scope.rs");
    }
}

/// Counts `table` as the app role; a refusal is zero rows too: permission denied (owner-only
/// tables), or a tenant setting that is no UUID (the members policy on `users` reads it).
async fn visible(app: &mut PgConnection, table: &str) -> i64 {
    match sqlx::query_scalar::<_, i64>(&format!("select count(*) from {table}")).fetch_one(&mut *app).await {
        Ok(n) => n,
        Err(e) => {
            let code = sqlstate(&e);
            assert!(matches!(code.as_deref(), Some("42501" | "22P02")), "{table}: {e}");
            0
        }
    }
}

/// A proof and a bypass nonce the real process used, copied out of its transactions.
async fn copied_values(db: &TestDb) -> Vec<String> {
    let mut g = db.store.global_tx().await.expect("global");
    let proof: String =
        sqlx::query_scalar("select current_setting('app.identity')").fetch_one(g.conn()).await.expect("proof");
    g.commit().await.expect("commit");
    let mut b = db.store.bypass("test", "copy my nonce").await.expect("bypass");
    let nonce: String =
        sqlx::query_scalar("select current_setting('app.bypass')").fetch_one(b.conn()).await.expect("nonce");
    b.commit().await.expect("commit");
    assert_eq!(proof.len(), 64);
    vec![proof, nonce]
}

#[tokio::test]
async fn app_role_without_the_secret_sees_no_global_row_whatever_it_sets() {
    let db = TestDb::new().await;
    fill_every_global_table(&db).await;
    let mut admin = db.admin_conn().await;
    let tables = global_tables(&mut admin).await;
    let settings = app_settings(&mut admin).await;
    assert!(settings.iter().any(|s| s == "app.identity"), "{settings:?}");

    let mut guesses: Vec<String> =
        ["identity", "on", "true", "1", "global", "platform", &"0".repeat(64), &"f".repeat(64)]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
    guesses.push(uuid::Uuid::new_v4().to_string());
    guesses.extend(copied_values(&db).await);

    let mut app = db.raw_app_conn().await;
    for guess in &guesses {
        // Session-level settings (they outlive the statement), and transaction-level ones.
        for name in &settings {
            sqlx::query("select set_config($1, $2, false)")
                .bind(name)
                .bind(guess)
                .execute(&mut app)
                .await
                .expect("set");
        }
        for t in &tables {
            assert_eq!(visible(&mut app, t).await, 0, "{t} visible with every app.* setting = {guess}");
        }
        let r = sqlx::query("update users set platform_admin = true").execute(&mut app).await;
        assert_eq!(r.map(|r| r.rows_affected()).unwrap_or(0), 0, "users updated with settings = {guess}");
        let mut tx = app.begin().await.expect("begin");
        for name in &settings {
            sqlx::query("select set_config($1, $2, true)").bind(name).bind(guess).execute(&mut *tx).await.expect("set");
        }
        let n: i64 =
            sqlx::query_scalar("select count(*) from user_credentials").fetch_one(&mut *tx).await.expect("count");
        assert_eq!(n, 0, "credentials visible in a transaction with settings = {guess}");
        tx.rollback().await.expect("rollback");
    }
    // Nor can it mint a proof or read the key it is made with.
    for attack in ["select countersign_identity_proof()", "select * from platform_proof_key"] {
        let e = app.execute(attack).await.expect_err(attack);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{attack}: {e}");
    }
    // Nor open the scope with a guessed secret.
    let e = sqlx::query("select countersign_begin_identity($1)")
        .bind("0".repeat(64))
        .execute(&mut app)
        .await
        .expect_err("guessed secret");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
}

#[tokio::test]
async fn app_role_with_a_real_tenant_id_sees_only_members_and_no_identity_secrets() {
    let db = TestDb::new().await;
    fill_every_global_table(&db).await;
    let mut admin = db.admin_conn().await;
    let tables = global_tables(&mut admin).await;
    let tenant: uuid::Uuid =
        sqlx::query_scalar("select id from tenants where slug = 'alpha'").fetch_one(&mut admin).await.expect("tenant");
    let mut app = db.raw_app_conn().await;
    // Tenant ids are not secret; the tenant context is the app's to set. It shows that
    // organisation's members (as every tenant transaction does) and nothing else global.
    sqlx::query("select set_config('app.tenant_id', $1, false), set_config('app.scope', 'identity', false)")
        .bind(tenant.to_string())
        .execute(&mut app)
        .await
        .expect("set");
    for t in &tables {
        let n = visible(&mut app, t).await;
        if t == "users" {
            // Three members, and the fixture's former vendor person (a soft-deleted membership).
            assert_eq!(n, 4, "users: exactly alpha's members");
        } else {
            assert_eq!(n, 0, "{t} visible with a real tenant id");
        }
    }
    let r = sqlx::query("update users set platform_admin = true").execute(&mut app).await;
    assert_eq!(r.map(|r| r.rows_affected()).unwrap_or(0), 0, "members' users rows are read-only to a tenant");
    let admins: i64 = sqlx::query_scalar("select count(*) from users where platform_admin")
        .fetch_one(&mut admin)
        .await
        .expect("admins");
    assert_eq!(admins, 0);
}

#[tokio::test]
async fn the_process_global_tx_still_reaches_identity_rows() {
    let db = TestDb::new().await;
    fill_every_global_table(&db).await;
    let mut g = db.store.global_tx().await.expect("global");
    for t in ["users", "user_credentials", "user_totp", "email_codes", "mail_outbox", "login_failures"] {
        let n: i64 = sqlx::query_scalar(&format!("select count(*) from {t}")).fetch_one(g.conn()).await.expect("count");
        assert!(n > 0, "{t} not visible to the process's GlobalTx");
    }
    let updated = sqlx::query("update users set display_name = display_name").execute(g.conn()).await.expect("update");
    assert!(updated.rows_affected() > 0);
    g.commit().await.expect("commit");
}
