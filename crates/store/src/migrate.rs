//! Forward-only migrations applied as the owner role, all pending ones in one transaction,
//! followed — in that same transaction — by the isolation guard. A migration that leaves any
//! tenant table without RLS enabled + forced + the standard policies rolls back, naming the table,
//! and so does one that adds a global table (no `tenant_id`) not listed in [`GLOBAL_TABLES`] or
//! listed without its guard.

use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};

use crate::StoreError;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The owner of every table. Never logs in; the migrator switches to it with `SET LOCAL ROLE`.
pub const OWNER_ROLE: &str = "countersign_owner";
/// The role the server connects as: owns nothing, no BYPASSRLS, DML grants only.
pub const APP_ROLE: &str = "countersign_app";

#[derive(Debug, Clone)]
pub struct MigrationSource {
    pub version: i64,
    pub description: String,
    pub sql: String,
}

impl MigrationSource {
    fn checksum(&self) -> Vec<u8> {
        Sha256::digest(self.sql.as_bytes()).to_vec()
    }

    /// The `-- compatible-with: <version>` header line: the oldest binary schema version (the
    /// newest migration that binary knows) that still runs correctly once this migration is
    /// applied (an expand step). Only comment lines before the first statement count.
    #[must_use]
    pub fn compatible_with(&self) -> Option<i64> {
        self.sql
            .lines()
            .map(str::trim)
            .take_while(|l| l.is_empty() || l.starts_with("--"))
            .find_map(|l| l.strip_prefix("--")?.trim().strip_prefix("compatible-with:")?.trim().parse().ok())
    }
}

/// How the database's schema stands against the migrations a binary knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// Exactly the known migrations are applied.
    Current,
    /// Known migrations are missing (none at all on a fresh database): `countersign migrate`.
    Behind { missing: Vec<i64> },
    /// Later migrations are applied, and each declares itself compatible with this binary.
    NewerCompatible { newer: Vec<i64> },
    /// A later migration is applied that does not declare itself compatible with this binary.
    NewerIncompatible { version: i64, compatible_with: Option<i64> },
}

impl SchemaState {
    /// Whether a server of this binary may run against the schema.
    #[must_use]
    pub fn runnable(&self) -> bool {
        matches!(self, Self::Current | Self::NewerCompatible { .. })
    }

    /// What is wrong, for logs, readiness and the refusal to start (`None` when runnable).
    #[must_use]
    pub fn problem(&self) -> Option<String> {
        match self {
            Self::Current | Self::NewerCompatible { .. } => None,
            Self::Behind { missing } => Some(format!(
                "the database schema is behind this binary (missing migration(s) {missing:?}); \
                 run `countersign migrate` (or start with `serve --migrate`)"
            )),
            Self::NewerIncompatible { version, compatible_with: Some(c) } => Some(format!(
                "the database schema has migration {version}, which is compatible only with binaries at schema \
                 version {c} or later; this binary knows up to {}: upgrade the binary",
                known_latest()
            )),
            Self::NewerIncompatible { version, compatible_with: None } => Some(format!(
                "the database schema has migration {version}, which this binary does not know and which does not \
                 declare itself compatible with older binaries: upgrade the binary"
            )),
        }
    }
}

/// The newest migration compiled into this binary.
#[must_use]
pub fn known_latest() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Compares `applied` (version, declared compatible-with) with the `known` versions.
#[must_use]
pub fn assess(applied: &[(i64, Option<i64>)], known: &[i64]) -> SchemaState {
    let missing: Vec<i64> = known.iter().copied().filter(|k| !applied.iter().any(|(v, _)| v == k)).collect();
    if !missing.is_empty() {
        return SchemaState::Behind { missing };
    }
    let latest = known.iter().copied().max().unwrap_or(0);
    let mut newer = Vec::new();
    for &(version, compatible_with) in applied.iter().filter(|(v, _)| !known.contains(v)) {
        match compatible_with {
            Some(c) if c <= latest => newer.push(version),
            _ => return SchemaState::NewerIncompatible { version, compatible_with },
        }
    }
    if newer.is_empty() { SchemaState::Current } else { SchemaState::NewerCompatible { newer } }
}

/// The schema's state as the owner sees it (before any migration: the bookkeeping table may be
/// missing, or predate the `compatible_with` column).
pub async fn state(conn: &mut PgConnection) -> Result<SchemaState, StoreError> {
    let known: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    let mut tx = conn.begin().await?;
    let exists: bool =
        sqlx::query_scalar("select to_regclass('public.schema_migrations') is not null").fetch_one(&mut *tx).await?;
    let applied: Vec<(i64, Option<i64>)> = if exists {
        // The table is owner-only (forced RLS): read it as the owner, as migrations do.
        sqlx::query("set local role countersign_owner").execute(&mut *tx).await?;
        sqlx::query_as("select version, (to_jsonb(s) ->> 'compatible_with')::bigint from schema_migrations s")
            .fetch_all(&mut *tx)
            .await?
    } else {
        Vec::new()
    };
    tx.rollback().await?;
    Ok(assess(&applied, &known))
}

/// The migrations compiled into this binary.
#[must_use]
pub fn embedded() -> Vec<MigrationSource> {
    MIGRATOR
        .iter()
        .map(|m| MigrationSource { version: m.version, description: m.description.to_string(), sql: m.sql.to_string() })
        .collect()
}

/// A digest over every embedded migration: names the template database tests clone.
#[must_use]
pub fn fingerprint() -> String {
    let mut h = Sha256::new();
    for m in embedded() {
        h.update(m.version.to_be_bytes());
        h.update(m.sql.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub applied: Vec<i64>,
    pub latest: Option<i64>,
}

/// Creates the roles and schema grants migrations rely on. Idempotent and safe to race: every
/// deployment on a cluster shares the two roles (roles are cluster-wide).
async fn bootstrap(conn: &mut PgConnection, app_password: Option<&str>) -> Result<(), StoreError> {
    sqlx::raw_sql(
        r"
        DO $$ BEGIN
            CREATE ROLE countersign_owner NOLOGIN NOSUPERUSER NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
        DO $$ BEGIN
            CREATE ROLE countersign_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
        DO $$ BEGIN
            EXECUTE format('GRANT countersign_owner TO %I', current_user);
        EXCEPTION WHEN duplicate_object OR unique_violation OR invalid_grant_operation THEN NULL; END $$;
        CREATE EXTENSION IF NOT EXISTS citext;
        GRANT USAGE, CREATE ON SCHEMA public TO countersign_owner;
        GRANT USAGE ON SCHEMA public TO countersign_app;
        ",
    )
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        StoreError::Migration(format!(
            "bootstrap of roles failed (the migration user needs CREATEROLE or superuser): {e}"
        ))
    })?;
    if let Some(pw) = app_password {
        // ALTER ROLE takes no bind parameters; quote_literal is done by the server.
        let sql: String = sqlx::query_scalar("select format('ALTER ROLE countersign_app PASSWORD %L', $1::text)")
            .bind(pw)
            .fetch_one(&mut *conn)
            .await?;
        sqlx::raw_sql(&sql).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Applies the embedded migrations.
pub async fn run(conn: &mut PgConnection, app_password: Option<&str>) -> Result<Report, StoreError> {
    apply(conn, &embedded(), app_password).await
}

/// Applies `migrations` (sorted by version) that are not yet recorded, then runs the guard.
pub async fn apply(
    conn: &mut PgConnection,
    migrations: &[MigrationSource],
    app_password: Option<&str>,
) -> Result<Report, StoreError> {
    // One migrator at a time per database (several servers may start together).
    sqlx::query("select pg_advisory_lock(hashtext('countersign.migrate'))").execute(&mut *conn).await?;
    let result = apply_locked(conn, migrations, app_password).await;
    sqlx::query("select pg_advisory_unlock(hashtext('countersign.migrate'))").execute(&mut *conn).await?;
    result
}

async fn apply_locked(
    conn: &mut PgConnection,
    migrations: &[MigrationSource],
    app_password: Option<&str>,
) -> Result<Report, StoreError> {
    bootstrap(conn, app_password).await?;
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(
        r"
        SET LOCAL ROLE countersign_owner;
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version     bigint primary key,
            description text not null,
            checksum    bytea not null,
            applied_at  timestamptz not null default now()
        );
        ",
    )
    .execute(&mut *tx)
    .await?;

    let recorded: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("select version, checksum from schema_migrations order by version").fetch_all(&mut *tx).await?;
    let mut report = Report::default();
    for m in migrations {
        match recorded.iter().find(|(v, _)| *v == m.version) {
            Some((_, sum)) if *sum == m.checksum() => {}
            Some(_) => {
                return Err(StoreError::Migration(format!(
                    "migration {} ({}) was changed after it was applied; migrations are forward-only",
                    m.version, m.description
                )));
            }
            None => {
                sqlx::raw_sql(&m.sql)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| StoreError::Migration(format!("migration {} ({}): {e}", m.version, m.description)))?;
                sqlx::query("insert into schema_migrations (version, description, checksum) values ($1, $2, $3)")
                    .bind(m.version)
                    .bind(&m.description)
                    .bind(m.checksum())
                    .execute(&mut *tx)
                    .await?;
                // The column exists from migration 35 on; earlier migrations declare nothing.
                if let Some(c) = m.compatible_with() {
                    sqlx::query("update schema_migrations set compatible_with = $2 where version = $1")
                        .bind(m.version)
                        .bind(c)
                        .execute(&mut *tx)
                        .await?;
                }
                report.applied.push(m.version);
            }
        }
    }
    if recorded.iter().any(|(v, _)| !migrations.iter().any(|m| m.version == *v)) {
        // Newer migrations than these: fine only when each declared itself compatible.
        let applied: Vec<(i64, Option<i64>)> =
            sqlx::query_as("select version, (to_jsonb(s) ->> 'compatible_with')::bigint from schema_migrations s")
                .fetch_all(&mut *tx)
                .await?;
        let known: Vec<i64> = migrations.iter().map(|m| m.version).collect();
        if let SchemaState::NewerIncompatible { version, .. } = assess(&applied, &known) {
            return Err(StoreError::Migration(format!(
                "database has migration {version} that this binary does not know and that does not declare \
                 itself compatible with it; refusing to run an older binary"
            )));
        }
    }
    guard(&mut tx).await?;
    tx.commit().await?;
    report.latest = migrations.iter().map(|m| m.version).max();
    Ok(report)
}

/// How a global table (one without `tenant_id`) is guarded. Each kind names the only permissive
/// policies such a table may carry (policies OR together, so any other would widen access).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalGuard {
    /// Global identity rows: `identity_scope` (a GlobalTx that proved the process secret) and
    /// `platform_bypass`. Made by `countersign_identity_only(table)`.
    Identity,
    /// `users`: as [`GlobalGuard::Identity`], plus `tenant_members` (read-only: a tenant
    /// transaction sees the users who are its members).
    IdentityAndMembers,
    /// The platform audit chain: the owner (append functions) writes, a bypass reads, and a
    /// process that proved its secret may insert a checkpoint.
    PlatformChain,
    /// Owner only (`countersign_owner_only(table)`): the app role holds no privilege on it and
    /// the one policy admits only the owner (migrations, SECURITY DEFINER functions).
    OwnerOnly,
}

impl GlobalGuard {
    fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::IdentityAndMembers => "identity_and_members",
            Self::PlatformChain => "platform_chain",
            Self::OwnerOnly => "owner_only",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalTable {
    pub name: &'static str,
    pub guard: GlobalGuard,
}

const fn global(name: &'static str, guard: GlobalGuard) -> GlobalTable {
    GlobalTable { name, guard }
}

/// Every table without `tenant_id` (except `tenants`, protected on `id`), with its guard. THE one
/// place to add a new global table: a migration that creates a table missing from this list, or
/// listed but not guarded as listed, is refused and rolled back.
pub const GLOBAL_TABLES: &[GlobalTable] = &[
    global("users", GlobalGuard::IdentityAndMembers),
    global("user_credentials", GlobalGuard::Identity),
    global("user_totp", GlobalGuard::Identity),
    global("user_recovery_codes", GlobalGuard::Identity),
    global("email_codes", GlobalGuard::Identity),
    global("mfa_challenges", GlobalGuard::Identity),
    global("oidc_flows", GlobalGuard::Identity),
    global("oidc_identities", GlobalGuard::Identity),
    global("mail_outbox", GlobalGuard::Identity),
    global("login_failures", GlobalGuard::Identity),
    global("login_signals", GlobalGuard::Identity),
    global("credential_failures", GlobalGuard::Identity),
    global("platform_audit_head", GlobalGuard::PlatformChain),
    global("platform_audit_events", GlobalGuard::PlatformChain),
    global("platform_audit_checkpoints", GlobalGuard::PlatformChain),
    global("platform_bypass_secrets", GlobalGuard::OwnerOnly),
    global("platform_bypass_log", GlobalGuard::OwnerOnly),
    global("platform_proof_key", GlobalGuard::OwnerOnly),
    global("platform_isolation_daily", GlobalGuard::OwnerOnly),
    global("schema_migrations", GlobalGuard::OwnerOnly),
];

/// A table that breaks the isolation rules, and why.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Violation {
    pub table: String,
    pub problem: String,
}

/// Every table in `public` with a `tenant_id` column (plus `tenants` itself) must have RLS enabled
/// and forced, the standard `tenant_isolation` and `platform_bypass` policies with their exact
/// expressions, and no other permissive policy (which would widen access, as policies OR together)
/// except the owner's read-only `owner_definer_read` on `tenants`. Every other table must be in
/// [`GLOBAL_TABLES`], with RLS enabled and forced and only the policies its guard allows (at
/// least one). The app role must own nothing and must not bypass RLS.
pub async fn violations(conn: &mut PgConnection) -> Result<Vec<Violation>, StoreError> {
    let mut v = tenant_violations(conn).await?;
    v.extend(global_violations(conn, GLOBAL_TABLES).await?);
    v.sort_by(|a, b| (&a.table, &a.problem).cmp(&(&b.table, &b.problem)));
    Ok(v)
}

/// The global-table half of [`violations`], against a given list (tests pass their own).
pub async fn global_violations(conn: &mut PgConnection, list: &[GlobalTable]) -> Result<Vec<Violation>, StoreError> {
    let names: Vec<&str> = list.iter().map(|g| g.name).collect();
    let kinds: Vec<&str> = list.iter().map(|g| g.guard.as_str()).collect();
    Ok(sqlx::query_as::<_, Violation>(
        r"
        with listed as (
            select * from unnest($1::text[], $2::text[]) as l(name, kind)
        ), global_tables as (
            select c.oid, c.relname::text as tbl, c.relrowsecurity, c.relforcerowsecurity, l.kind
              from pg_class c join pg_namespace n on n.oid = c.relnamespace
              left join listed l on l.name = c.relname::text
             where n.nspname = 'public' and c.relkind in ('r', 'p') and c.relname <> 'tenants'
               and not exists (select 1 from pg_attribute a
                                where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped)
        ), allowed (kind, name, cmd, qual, chk) as (values
            ('identity', 'identity_scope', '*', 'ID', 'ID'),
            ('identity', 'platform_bypass', '*', 'BY', 'BY'),
            ('identity_and_members', 'identity_scope', '*', 'ID', 'ID'),
            ('identity_and_members', 'platform_bypass', '*', 'BY', 'BY'),
            ('identity_and_members', 'tenant_members', 'r', 'MEMBERS', ''),
            ('platform_chain', 'owner_only', '*', 'OWN', 'OWN'),
            ('platform_chain', 'platform_read', 'r', 'BY', ''),
            ('platform_chain', 'platform_sign', 'a', '', 'ID'),
            ('owner_only', 'owner_only', '*', 'OWN', 'OWN')
        ), expr (token, text) as (values
            ('ID', '( SELECT countersign_identity_active() AS countersign_identity_active)'),
            ('BY', '( SELECT countersign_bypass_active() AS countersign_bypass_active)'),
            ('OWN', '(CURRENT_USER = ''countersign_owner''::name)'),
            ('MEMBERS', E'(EXISTS ( SELECT 1
   FROM memberships m
  WHERE (m.user_id = users.id)))'),
            ('', '')
        ), allowed_text as (
            select a.kind, a.name, a.cmd, q.text as qual, k.text as chk
              from allowed a join expr q on q.token = a.qual join expr k on k.token = a.chk
        ), pol as (
            select p.polrelid, p.polname::text as name, p.polpermissive, p.polcmd::text as cmd,
                   coalesce(pg_get_expr(p.polqual, p.polrelid), '') as qual,
                   coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '') as chk
              from pg_policy p
        )
        select tbl as table,
               'global table (no tenant_id) not listed in store::migrate::GLOBAL_TABLES with its guard' as problem
          from global_tables where kind is null
        union all
        select tbl, 'row level security is not enabled' from global_tables where kind is not null and not relrowsecurity
        union all
        select tbl, 'row level security is not forced' from global_tables where kind is not null and not relforcerowsecurity
        union all
        select g.tbl, 'no guarded policy (' || g.kind || ')'
          from global_tables g
         where g.kind is not null
           and not exists (select 1 from pol join allowed_text a
                             on a.kind = g.kind and a.name = pol.name and a.cmd = pol.cmd
                            and a.qual = pol.qual and a.chk = pol.chk
                            where pol.polrelid = g.oid and pol.polpermissive)
        union all
        select g.tbl, 'unexpected permissive policy ' || pol.name || ' for a ' || g.kind || ' table would widen access'
          from global_tables g join pol on pol.polrelid = g.oid
         where g.kind is not null and pol.polpermissive
           and not exists (select 1 from allowed_text a
                            where a.kind = g.kind and a.name = pol.name and a.cmd = pol.cmd
                              and a.qual = pol.qual and a.chk = pol.chk)
        union all
        select g.tbl, 'owner-only table grants privileges to the application role'
          from global_tables g
         where g.kind = 'owner_only'
           and has_table_privilege('countersign_app', g.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
        ",
    )
    .bind(&names)
    .bind(&kinds)
    .fetch_all(&mut *conn)
    .await?)
}

async fn tenant_violations(conn: &mut PgConnection) -> Result<Vec<Violation>, StoreError> {
    Ok(sqlx::query_as::<_, Violation>(
        r"
        with tenant_tables as (
            select c.oid, c.relname::text as tbl, c.relrowsecurity, c.relforcerowsecurity,
                   pg_get_userbyid(c.relowner) as owner,
                   case when c.relname = 'tenants'
                        then '(id = ( SELECT countersign_current_tenant() AS countersign_current_tenant))'
                        else '(tenant_id = ( SELECT countersign_current_tenant() AS countersign_current_tenant))'
                   end as expected
              from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = 'public' and c.relkind in ('r', 'p')
               and (c.relname = 'tenants' or exists (
                    select 1 from pg_attribute a
                     where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped))
        ), pol as (
            select p.polrelid, p.polname::text as name, p.polpermissive, p.polcmd,
                   coalesce(pg_get_expr(p.polqual, p.polrelid), '') as qual,
                   coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '') as chk
              from pg_policy p
        )
        select tbl as table, 'row level security is not enabled' as problem from tenant_tables where not relrowsecurity
        union all
        select tbl, 'row level security is not forced' from tenant_tables where not relforcerowsecurity
        union all
        select t.tbl, 'missing policy tenant_isolation (USING and WITH CHECK on (select countersign_current_tenant()))'
          from tenant_tables t
         where not exists (select 1 from pol where pol.polrelid = t.oid and pol.name = 'tenant_isolation'
                             and pol.polpermissive
                             and pol.qual = t.expected and pol.chk = t.expected)
        union all
        select t.tbl, 'unexpected permissive policy ' || pol.name || ' would widen access'
          from tenant_tables t join pol on pol.polrelid = t.oid
         where pol.polpermissive
           and not (pol.name = 'tenant_isolation'
                    and pol.qual = t.expected and pol.chk = t.expected)
           and not (pol.name = 'platform_bypass'
                    and pol.qual = '( SELECT countersign_bypass_active() AS countersign_bypass_active)'
                    and pol.chk = '( SELECT countersign_bypass_active() AS countersign_bypass_active)')
           -- The one exception, read-only and on tenants only: SECURITY DEFINER functions (run
           -- as the owner) resolve a slug before any tenant context exists.
           and not (t.tbl = 'tenants' and pol.name = 'owner_definer_read' and pol.polcmd = 'r'
                    and pol.qual = '(CURRENT_USER = ''countersign_owner''::name)' and pol.chk = '')
        union all
        select tbl, 'owned by the application role' from tenant_tables where owner = 'countersign_app'
        union all
        -- The partner dimension (issue 17): partners itself (on id) and every other tenant table
        -- with a partner_id column, except the two where partner_id names a person's company
        -- (memberships, invitations), carry the restrictive partner_isolation policy exactly.
        select t.tbl, 'missing restrictive policy partner_isolation (countersign_protect_partner)'
          from tenant_tables t
         where (t.tbl = 'partners' or (t.tbl not in ('memberships', 'invitations') and exists (
                    select 1 from pg_attribute a
                     where a.attrelid = t.oid and a.attname = 'partner_id' and not a.attisdropped)))
           and not exists (
                select 1 from pol where pol.polrelid = t.oid and pol.name = 'partner_isolation'
                   and not pol.polpermissive and pol.polcmd = '*'
                   and pol.qual = replace(
                       '(( SELECT countersign_bypass_active() AS countersign_bypass_active) OR '
                       '(( SELECT countersign_partner_scope() AS countersign_partner_scope) = ''vendor''::text) OR '
                       '(COL = ( SELECT countersign_partner_scope_id() AS countersign_partner_scope_id)))',
                       'COL', case when t.tbl = 'partners' then 'id' else 'partner_id' end)
                   and pol.chk = pol.qual)
        union all
        -- The relation dimension (issue 16, portals): relations itself (on id) and every other
        -- tenant table with a relation_id column, except memberships (the column says whose
        -- person a member is) and document_attachments (relation_reach, below), carry the
        -- restrictive relation_isolation policy exactly; documents and document_attachments
        -- carry relation_reach.
        select t.tbl, 'missing restrictive policy relation_isolation (countersign_protect_relation)'
          from tenant_tables t
         where (t.tbl = 'relations' or (t.tbl not in ('memberships', 'document_attachments') and exists (
                    select 1 from pg_attribute a
                     where a.attrelid = t.oid and a.attname = 'relation_id' and not a.attisdropped)))
           and not exists (
                select 1 from pol where pol.polrelid = t.oid and pol.name = 'relation_isolation'
                   and not pol.polpermissive and pol.polcmd = '*'
                   and pol.qual = replace(
                       '(( SELECT countersign_bypass_active() AS countersign_bypass_active) OR '
                       '(( SELECT countersign_relation_scope_text() AS countersign_relation_scope_text) = ''internal''::text) OR '
                       '(COL = ( SELECT countersign_relation_scope_id() AS countersign_relation_scope_id)))',
                       'COL', case when t.tbl = 'relations' then 'id' else 'relation_id' end)
                   and pol.chk = pol.qual)
        union all
        select t.tbl, 'missing restrictive policy relation_reach'
          from tenant_tables t
         where t.tbl in ('documents', 'document_attachments')
           and exists (select 1 from pg_proc where proname = 'countersign_relation_scope_text')
           and not exists (select 1 from pol where pol.polrelid = t.oid and pol.name = 'relation_reach'
                              and not pol.polpermissive and pol.polcmd = '*')
        union all
        select 'role countersign_app', 'application role can bypass row level security'
          from pg_roles where rolname = 'countersign_app' and (rolbypassrls or rolsuper)
        order by 1, 2
        ",
    )
    .fetch_all(&mut *conn)
    .await?)
}

async fn guard(conn: &mut PgConnection) -> Result<(), StoreError> {
    let v = violations(conn).await?;
    if v.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = v.iter().map(|v| format!("table {}: {}", v.table, v.problem)).collect();
    Err(StoreError::Migration(format!("isolation guard refused the migration: {}", list.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(sql: &str) -> MigrationSource {
        MigrationSource { version: 40, description: "t".into(), sql: sql.into() }
    }

    #[test]
    fn the_compatibility_header_is_read_only_before_the_first_statement() {
        assert_eq!(source("-- expand\n-- compatible-with: 35\nalter table t add c int;").compatible_with(), Some(35));
        assert_eq!(source("\n--compatible-with:7\nselect 1;").compatible_with(), Some(7));
        assert_eq!(source("alter table t add c int;\n-- compatible-with: 35\n").compatible_with(), None);
        assert_eq!(source("-- compatible-with: soon\nselect 1;").compatible_with(), None);
        assert_eq!(source("select 1;").compatible_with(), None);
    }

    #[test]
    fn schema_states_behind_current_newer_compatible_and_incompatible() {
        let known = [1, 2, 3];
        assert_eq!(assess(&[], &known), SchemaState::Behind { missing: vec![1, 2, 3] });
        assert_eq!(assess(&[(1, None), (2, None)], &known), SchemaState::Behind { missing: vec![3] });
        assert_eq!(assess(&[(1, None), (2, None), (3, None)], &known), SchemaState::Current);
        let newer = assess(&[(1, None), (2, None), (3, None), (4, Some(3)), (5, Some(2))], &known);
        assert_eq!(newer, SchemaState::NewerCompatible { newer: vec![4, 5] });
        assert!(newer.runnable() && newer.problem().is_none());
        let undeclared = assess(&[(1, None), (2, None), (3, None), (4, Some(3)), (5, None)], &known);
        assert_eq!(undeclared, SchemaState::NewerIncompatible { version: 5, compatible_with: None });
        assert!(!undeclared.runnable());
        let too_new = assess(&[(1, None), (2, None), (3, None), (4, Some(4))], &known);
        assert_eq!(too_new, SchemaState::NewerIncompatible { version: 4, compatible_with: Some(4) });
        let behind = assess(&[(1, None)], &known).problem().unwrap_or_default();
        assert!(behind.contains("countersign migrate"), "{behind}");
    }
}
