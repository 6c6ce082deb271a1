//! Benchmark organisations with deterministic ids, so SQL (and pgbench scripts) can compute the
//! id of organisation `n` from the integer alone.

use sqlx::PgConnection;
use store::TenantId;

/// The id of benchmark organisation `n` (1-based).
pub fn tenant_uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

pub fn tenant_id(n: u32) -> anyhow::Result<TenantId> {
    tenant_uuid(n).parse().map_err(|e| anyhow::anyhow!("benchmark tenant {n}: {e}"))
}

/// Inserts organisations 1..=n (as the admin connection: no tenant context needed).
pub async fn insert_tenants(admin: &mut PgConnection, n: u32) -> anyhow::Result<()> {
    sqlx::query(
        "insert into tenants (id, slug, name)
         select ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, 'bench-' || g, 'Bench ' || g
           from generate_series(1, $1) g",
    )
    .bind(i64::from(n))
    .execute(admin)
    .await?;
    Ok(())
}
