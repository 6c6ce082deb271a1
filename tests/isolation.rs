//! Catalog-driven proof of tenant isolation. The table list comes from pg_catalog, not from a
//! hand-written list: a table added later is attacked automatically, and fails the test if the
//! fixture gives it no rows to attack.

mod common;

use common::{org, sqlstate};
use sqlx::{Connection, Executor, PgConnection, Row};
use store::testing::TestDb;

async fn tenant_tables(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = 'public' and c.relkind in ('r','p')
            and exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped)
          order by 1",
    )
    .fetch_all(conn)
    .await
    .expect("catalog")
}

/// Runs `sql` as the app role in a transaction with `tenant` in force, rolling back afterwards.
/// The partner-programme scope is `vendor`, so the tenant dimension is attacked on its own on the
/// partner tables too (their partner dimension: `partner_tables_*` below).
async fn as_tenant(
    conn: &mut PgConnection,
    tenant: &str,
    sql: &str,
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    as_partner(conn, tenant, "vendor", sql).await
}

/// Runs `sql` as the app role with `tenant` and the partner-programme scope `scope` in force.
async fn as_partner(
    conn: &mut PgConnection,
    tenant: &str,
    scope: &str,
    sql: &str,
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("select set_config('app.tenant_id', $1, true)").bind(tenant).execute(&mut *tx).await?;
    sqlx::query("select set_config('app.partner_scope', $1, true)").bind(scope).execute(&mut *tx).await?;
    // The organisation's side of the portal relation dimension (attacked on its own below).
    sqlx::query("select set_config('app.relation_scope', 'internal', true)").execute(&mut *tx).await?;
    let r = sqlx::query(sql).fetch_all(&mut *tx).await;
    tx.rollback().await?;
    r
}

/// Tables carrying the partner dimension, from the catalog (the restrictive policy), with the
/// column that names the owning partner.
async fn partner_tables(conn: &mut PgConnection) -> Vec<(String, String)> {
    sqlx::query_as(
        "select c.relname::text, case when c.relname = 'partners' then 'id' else 'partner_id' end
           from pg_policy p join pg_class c on c.oid = p.polrelid
          where p.polname = 'partner_isolation' and not p.polpermissive
          order by 1",
    )
    .fetch_all(conn)
    .await
    .expect("catalog")
}

#[tokio::test]
async fn every_partner_table_hides_other_partners_rows_even_without_a_where() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let b = org(&db, "beta").await;
    let ta = a.id.to_string();
    let (pa, pb) = (a.partners[0].to_string(), a.partners[1].to_string());
    let mut admin = db.admin_conn().await;
    let mut app = db.raw_app_conn().await;

    // Every tenant table with a partner_id (but the two naming a person's company) is covered.
    let uncovered: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = 'public' and c.relkind in ('r','p')
            and exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'partner_id' and not a.attisdropped)
            and c.relname not in ('memberships', 'invitations')
            and not exists (select 1 from pg_policy p where p.polrelid = c.oid and p.polname = 'partner_isolation' and not p.polpermissive)",
    )
    .fetch_all(&mut admin)
    .await
    .expect("catalog");
    assert!(uncovered.is_empty(), "partner tables without partner_isolation: {uncovered:?}");
    let tables = partner_tables(&mut admin).await;
    let names: Vec<&str> = tables.iter().map(|(t, _)| t.as_str()).collect();
    for expected in [
        "commissions",
        "deal_conflicts",
        "deal_registrations",
        "mdf_budgets",
        "mdf_claim_proofs",
        "mdf_claims",
        "mdf_requests",
        "partner_leads",
        "partner_opportunities",
        "partners",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }

    for (t, col) in &tables {
        // The fixture gives both partners (or, for the vendor-only deal_conflicts, the vendor) rows.
        let n: i64 = sqlx::query_scalar(&format!("select count(*) from {t} where tenant_id = $1"))
            .bind(a.id.as_uuid())
            .fetch_one(&mut admin)
            .await
            .expect("count");
        assert!(n >= 1, "table {t}: extend tests/common program_rows()");

        // 1. Partner A's scope, a SELECT with no WHERE at all: only A's rows.
        let rows = as_partner(
            &mut app,
            &ta,
            &pa,
            &format!(
                "select count(*) filter (where {col} = '{pa}') as mine,
                        count(*) filter (where {col} is distinct from '{pa}') as other from {t}"
            ),
        )
        .await
        .expect("select as partner A");
        let (mine, other): (i64, i64) = (rows[0].get("mine"), rows[0].get("other"));
        assert_eq!(other, 0, "table {t}: partner A sees rows that are not A's");
        if *t != "deal_conflicts" {
            assert!(mine > 0, "table {t}: partner A cannot see its own rows");
        }

        // 2. No scope, the scope 'none', an unknown partner, garbage: nothing, in A's tenant.
        for scope in ["", "none", "00000000-0000-0000-0000-000000000000", "' or 1=1 --", "VENDOR"] {
            let rows = as_partner(&mut app, &ta, scope, &format!("select 1 from {t}")).await.expect("select");
            assert!(rows.is_empty(), "table {t}: rows visible with partner scope {scope:?}");
        }
        let rows = as_tenant(&mut app, "", &format!("select 1 from {t}")).await.expect("no tenant");
        assert!(rows.is_empty(), "table {t}: vendor scope without a tenant shows rows");

        // 3. Partner A writes a row labelled partner B: refused by WITH CHECK.
        let clone = clone_sql(t, &format!("jsonb_build_object('{col}', '{pb}', 'id', gen_random_uuid())"));
        if *t != "deal_conflicts" {
            let e = as_partner(&mut app, &ta, &pa, &clone).await.expect_err("insert as B must fail");
            assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "table {t}: {e}");
            // 4. Partner A moves its own row to B: refused.
            let e = as_partner(&mut app, &ta, &pa, &format!("update {t} set {col} = '{pb}'"))
                .await
                .expect_err("move must fail");
            assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "table {t}: {e}");
        }

        // 5. Partner A updates or deletes B's rows (or all rows): B's are untouched.
        for dml in [
            format!("update {t} set tenant_id = tenant_id where {col} = '{pb}' returning 1"),
            format!("delete from {t} where {col} is distinct from '{pa}' returning 1"),
        ] {
            match as_partner(&mut app, &ta, &pa, &dml).await {
                Ok(rows) => assert!(rows.is_empty(), "table {t}: A touched B's rows with {dml}"),
                Err(e) => assert_eq!(sqlstate(&e).as_deref(), Some("23503"), "table {t}: {dml}: {e}"),
            }
        }

        // 6. A partner id of organisation A used in organisation B's tenant: nothing.
        let rows = as_partner(&mut app, &b.id.to_string(), &pa, &format!("select 1 from {t}")).await.expect("select");
        assert!(rows.is_empty(), "table {t}: A's partner scope sees rows in another tenant");
    }
}

#[tokio::test]
async fn every_tenant_table_refuses_cross_tenant_reads_and_writes() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let b = org(&db, "beta").await;
    let (ta, tb) = (a.id.to_string(), b.id.to_string());
    let mut admin = db.admin_conn().await;
    let mut app = db.raw_app_conn().await;

    // An OIDC provider configuration per organisation (rows only; a placeholder sealed secret).
    // Here, not in the shared fixture: a configured provider changes what sign-in and the settings
    // API do in every other test (tests/oidc.rs configures its own).
    for t in [&a.id, &b.id] {
        sqlx::query(
            "insert into oidc_configs (tenant_id, id, preset, issuer, client_id, secret_key_id, secret_nonce, secret_ciphertext)
             values ($1, $2, 'generic', 'https://idp.example', 'fixture', '0123456789abcdef',
                     '\\x000000000000000000000000', '\\x0000000000000000000000000000000000')",
        )
        .bind(t.as_uuid())
        .bind(uuid::Uuid::now_v7())
        .execute(&mut admin)
        .await
        .expect("oidc config");
        // SAML (rows only): an IdP, a request in flight, an assertion seen.
        for sql in [
            "insert into saml_configs (tenant_id, id, idp_entity_id, sso_url, metadata_xml, signing_certs, allowed_domains)
             values ($1, gen_random_uuid(), 'https://idp.example/metadata', 'https://idp.example/sso', '<md/>', 1, '{x.example}')",
            "insert into saml_requests (tenant_id, id, request_id, binding_hash, expires_at)
             values ($1, gen_random_uuid(), '_' || encode(sha256(gen_random_uuid()::text::bytea), 'hex'), sha256('b'), now() + interval '10 minutes')",
            "insert into saml_assertions_seen (tenant_id, id, issuer, assertion_id, keep_until)
             values ($1, gen_random_uuid(), 'https://idp.example/metadata', 'id-1', now() + interval '10 minutes')",
        ] {
            sqlx::query(sql).bind(t.as_uuid()).execute(&mut admin).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    let tables = tenant_tables(&mut admin).await;
    assert!(tables.len() >= 2, "expected tenant tables, found {tables:?}");
    for t in &tables {
        // The fixture must put rows of both tenants in every tenant table, or nothing is proven.
        let per_tenant: Vec<(uuid::Uuid, i64)> =
            sqlx::query_as(&format!("select tenant_id, count(*) from {t} where tenant_id in ($1, $2) group by 1"))
                .bind(a.id.as_uuid())
                .bind(b.id.as_uuid())
                .fetch_all(&mut admin)
                .await
                .expect("count");
        assert_eq!(per_tenant.len(), 2, "table {t}: extend tests/common org() so both tenants have rows");

        // 1. No tenant context: zero rows, and inserts fail.
        let n: i64 =
            sqlx::query_scalar(&format!("select count(*) from {t}")).fetch_one(&mut app).await.expect("select");
        assert_eq!(n, 0, "table {t}: rows visible without tenant context");

        // 2. Tenant A's context: A's rows, never B's.
        let rows = as_tenant(&mut app, &ta, &format!("select count(*) filter (where tenant_id = '{ta}') as mine, count(*) filter (where tenant_id <> '{ta}') as other from {t}"))
            .await
            .expect("select as A");
        let (mine, other): (i64, i64) = (rows[0].get("mine"), rows[0].get("other"));
        assert!(mine > 0, "table {t}: A cannot see its own rows");
        assert_eq!(other, 0, "table {t}: A sees another tenant's rows");

        // 3. Insert a row into B from A's context (a copy of A's row re-labelled B): refused by
        //    the WITH CHECK policy before any other constraint.
        let clone = clone_sql(t, &format!("jsonb_build_object('tenant_id', '{tb}', 'id', gen_random_uuid())"));
        let e = as_tenant(&mut app, &ta, &clone).await.expect_err("cross-tenant insert must fail");
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "table {t}: {e}");

        // 4. Move A's row into B: refused.
        let e =
            as_tenant(&mut app, &ta, &format!("update {t} set tenant_id = '{tb}'")).await.expect_err("move must fail");
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "table {t}: {e}");

        // 5. Update or delete B's rows from A's context: they do not exist for A (or, on the
        //    append-only audit tables, the app role may not update or delete at all).
        for dml in [
            format!("update {t} set tenant_id = tenant_id where tenant_id = '{tb}' returning 1"),
            format!("delete from {t} where tenant_id = '{tb}' returning 1"),
        ] {
            match as_tenant(&mut app, &ta, &dml).await {
                Ok(rows) => assert!(rows.is_empty(), "table {t}: A touched B's rows with {dml}"),
                Err(e) => assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "table {t}: {dml}: {e}"),
            }
        }

        // 6. A context that names no tenant, or garbage: nothing, or an error — never rows.
        let rows = as_tenant(&mut app, "", &format!("select 1 from {t}")).await.expect("empty context");
        assert!(rows.is_empty(), "table {t}: rows visible with empty tenant");
        assert!(as_tenant(&mut app, "' or 1=1 --", &format!("select 1 from {t}")).await.is_err());
    }
    let bn: i64 = sqlx::query_scalar("select count(*) from memberships where tenant_id = $1")
        .bind(b.id.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("count");
    // Three members and the fixture's former (soft-deleted) vendor person.
    assert_eq!(bn, 4, "B's rows survived every attack");
}

#[tokio::test]
async fn composite_foreign_keys_refuse_cross_tenant_references() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let b = org(&db, "beta").await;
    let mut admin = db.admin_conn().await;

    // Every FK between tenant tables must carry tenant_id (catalog check, not a hand list).
    let fks: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "select c.conrelid::regclass::text, c.confrelid::regclass::text,
                (select a.attname::text from pg_attribute a where a.attrelid = c.conrelid and a.attnum = c.conkey[array_length(c.conkey,1)]),
                coalesce((select a.attname::text from pg_attribute a where a.attrelid = c.confrelid and a.attname = 'id'),
                         (select a.attname::text from pg_attribute a where a.attrelid = c.confrelid and a.attnum = c.confkey[array_length(c.confkey,1)])),
                array_to_string(array(select a.attname::text from pg_attribute a join unnest(c.conkey) k on k = a.attnum where a.attrelid = c.conrelid), ',')
           from pg_constraint c
          where c.contype = 'f'
            and exists (select 1 from pg_attribute a where a.attrelid = c.conrelid and a.attname = 'tenant_id')
            and exists (select 1 from pg_attribute a where a.attrelid = c.confrelid and a.attname = 'tenant_id')",
    )
    .fetch_all(&mut admin)
    .await
    .expect("fks");
    assert!(!fks.is_empty(), "expected composite foreign keys between tenant tables");
    for (table, target, col, key, cols) in &fks {
        assert!(cols.split(',').any(|c| c == "tenant_id"), "{table} -> {target} ({cols}) does not include tenant_id");
        // Point A's row at B's target row (by its `id`, or for a table without one, e.g.
        // scim_users, by the key referenced). Even the superuser (no RLS) is stopped by the key.
        let b_target: uuid::Uuid =
            sqlx::query_scalar(&format!("select {key} from {target} where tenant_id = $1 limit 1"))
                .bind(b.id.as_uuid())
                .fetch_one(&mut admin)
                .await
                .expect("b target");
        // A partner id needs a partner role beside it (a check constraint that runs first).
        let also = if col == "partner_id" && table == "memberships" {
            // (and no relation: the fixture's former vendor person has one)
            ", role = 'partner_agent', relation_id = null"
        } else if col == "partner_id" && table == "invitations" {
            ", role = 'partner_agent'"
        } else if col == "session_id" && table == "portal_links" {
            // A link names a session only once it was used.
            ", consumed_at = now()"
        } else if col == "relation_id" && table == "memberships" {
            // Likewise a relation id needs the relation's kind as the role.
            ", role = 'vendor'"
        } else {
            ""
        };
        let e = sqlx::query(&format!("update {table} set {col} = $1{also} where tenant_id = $2"))
            .bind(b_target)
            .bind(a.id.as_uuid())
            .execute(&mut admin)
            .await
            .expect_err("cross-tenant reference must fail");
        assert_eq!(sqlstate(&e).as_deref(), Some("23503"), "{table}.{col}: {e}");
    }
    let _ = a.department;
}

#[tokio::test]
async fn tenants_and_users_are_visible_only_within_their_tenant() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    let b = org(&db, "beta").await;
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let tenants: Vec<uuid::Uuid> =
        sqlx::query_scalar("select id from tenants").fetch_all(tx.conn()).await.expect("tenants");
    assert_eq!(tenants, vec![a.id.as_uuid()]);
    let users: Vec<uuid::Uuid> =
        sqlx::query_scalar("select id from users order by id").fetch_all(tx.conn()).await.expect("users");
    let mut expected = a.users.clone();
    // A former vendor person keeps a (soft-deleted) membership, so A still sees who they were.
    expected.push(a.former_vendor);
    expected.sort();
    assert_eq!(users, expected, "A sees exactly its members");
    assert!(
        identity::directory::users::get_member(&mut tx, b.users[0]).await.is_err(),
        "B's user must be invisible to A"
    );
    // A tenant transaction cannot create identities (that is GlobalTx's job).
    let e = sqlx::query("insert into users (id, email, display_name) values (gen_random_uuid(), 'x@y.example', 'X')")
        .execute(tx.conn())
        .await
        .expect_err("insert user from tenant tx");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
}

#[tokio::test]
async fn tenant_setting_never_leaks_to_the_next_user_of_a_pooled_connection() {
    let db = TestDb::new().await;
    let a = org(&db, "alpha").await;
    for _ in 0..20 {
        let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
        let n: i64 = sqlx::query_scalar("select count(*) from memberships").fetch_one(tx.conn()).await.expect("count");
        // Three members and the fixture's former (soft-deleted) vendor person.
        assert_eq!(n, 4);
        tx.commit().await.expect("commit");
        let mut g = db.store.global_tx().await.expect("global");
        let setting: Option<String> = sqlx::query_scalar("select nullif(current_setting('app.tenant_id', true), '')")
            .fetch_one(g.conn())
            .await
            .expect("setting");
        assert_eq!(setting, None, "tenant context survived the transaction");
        let n: i64 = sqlx::query_scalar("select count(*) from memberships").fetch_one(g.conn()).await.expect("count");
        assert_eq!(n, 0);
        g.commit().await.expect("commit");
    }
    // A rolled-back (dropped) transaction also leaves nothing behind.
    {
        let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
        let _ = sqlx::query("select 1").execute(tx.conn()).await;
    }
    let mut g = db.store.global_tx().await.expect("global");
    let n: i64 = sqlx::query_scalar("select count(*) from departments").fetch_one(g.conn()).await.expect("count");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn app_role_cannot_escape_row_level_security() {
    let db = TestDb::new().await;
    let mut app = db.raw_app_conn().await;
    for attack in [
        "alter table departments disable row level security",
        "alter table departments no force row level security",
        "drop policy tenant_isolation on departments",
        "set role countersign_owner",
        "set role postgres",
        "create table sneaky (tenant_id uuid)",
        "select * from platform_bypass_secrets",
        "select * from platform_bypass_log",
        "insert into platform_bypass_secrets (secret_hash, label, expires_at) values ('\\x00', 'x', now() + interval '1 day')",
    ] {
        let e = app.execute(attack).await.expect_err(attack);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{attack}: {e}");
    }
    let (bypass, superuser): (bool, bool) =
        sqlx::query_as("select rolbypassrls, rolsuper from pg_roles where rolname = current_user")
            .fetch_one(&mut app)
            .await
            .expect("role");
    assert!(!bypass && !superuser);
}

/// An INSERT of a copy of one of `t`'s visible rows with `changes` (a jsonb expression) applied,
/// naming only the columns a row may be given: generated columns (e.g. the deal keys of
/// migration 0043) are the database's to compute and cannot be inserted.
fn clone_sql(t: &str, changes: &str) -> String {
    format!(
        "do $do$ declare c text; begin
           select string_agg(quote_ident(attname), ', ' order by attnum) into c from pg_attribute
            where attrelid = '{t}'::regclass and attnum > 0 and not attisdropped and attgenerated = '';
           execute format($f$insert into {t} (%s) select %s from (select (jsonb_populate_record(null::{t}, to_jsonb(r) || {changes})).* from {t} r limit 1) x$f$, c, c);
         end $do$"
    )
}
