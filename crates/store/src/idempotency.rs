//! Idempotency keys: a retried write returns the first result instead of running twice.
//!
//! The key is claimed inside the transaction of the write it guards ([`claim`] first, the write,
//! then [`complete`] with the response, then commit). If the write fails the claim rolls back
//! with it; a concurrent retry blocks on the key's unique index until the first transaction ends
//! and then sees its stored result. Keys live 24 hours.

use sqlx::Row;

use crate::{StoreError, TenantTx};

/// What a claimed key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First use: run the write, then [`complete`].
    New,
    /// Used before for this same request: answer with the stored result.
    Replay { status: u16, response: serde_json::Value, location: Option<String> },
    /// Used before for a different request (other route or body).
    Mismatch,
}

/// Hours a key is remembered.
pub const TTL_HOURS: i32 = 24;

/// Claims `key` for `principal` in the transaction's tenant.
///
/// # Errors
/// Database errors.
pub async fn claim(
    tx: &mut TenantTx,
    principal: &str,
    key: &str,
    route: &str,
    request_hash: &[u8; 32],
) -> Result<Claim, StoreError> {
    // An expired key is forgotten before it is claimed again.
    sqlx::query(
        "delete from idempotency_keys where principal = $1 and key = $2
            and created_at < now() - make_interval(hours => $3)",
    )
    .bind(principal)
    .bind(key)
    .bind(TTL_HOURS)
    .execute(tx.conn())
    .await?;
    let inserted = sqlx::query(
        "insert into idempotency_keys (tenant_id, principal, key, route, request_hash)
         values ((select countersign_current_tenant()), $1, $2, $3, $4)
         on conflict do nothing",
    )
    .bind(principal)
    .bind(key)
    .bind(route)
    .bind(&request_hash[..])
    .execute(tx.conn())
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::New);
    }
    let row = sqlx::query(
        "select route, request_hash, status, response, location from idempotency_keys where principal = $1 and key = $2",
    )
    .bind(principal)
    .bind(key)
    .fetch_one(tx.conn())
    .await?;
    let same = row.try_get::<String, _>("route")? == route
        && row.try_get::<Vec<u8>, _>("request_hash")?.as_slice() == request_hash;
    let status: Option<i16> = row.try_get("status")?;
    let response: Option<serde_json::Value> = row.try_get("response")?;
    match (same, status, response) {
        (true, Some(status), Some(response)) => {
            let location = row.try_get("location")?;
            Ok(Claim::Replay { status: u16::try_from(status).unwrap_or(500), response, location })
        }
        _ => Ok(Claim::Mismatch),
    }
}

/// Stores the result of the write a claimed key guarded (same transaction).
///
/// # Errors
/// Database errors.
pub async fn complete(
    tx: &mut TenantTx,
    principal: &str,
    key: &str,
    status: u16,
    response: &serde_json::Value,
    location: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "update idempotency_keys set status = $3, response = $4, location = $5 where principal = $1 and key = $2",
    )
    .bind(principal)
    .bind(key)
    .bind(i16::try_from(status).unwrap_or(500))
    .bind(response)
    .bind(location)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Deletes every organisation's keys older than [`TTL_HOURS`]; returns how many. A logged
/// bypass only lists the organisations that have some; each is purged in its own `TenantTx`.
///
/// # Errors
/// Database errors (listing); a failure in one organisation is logged and skipped.
pub async fn purge_expired(store: &crate::Store) -> Result<u64, StoreError> {
    let mut b = store.bypass("system:idempotency-purge", "find organisations with expired idempotency keys").await?;
    let tenants: Vec<uuid::Uuid> = sqlx::query_scalar(
        "select distinct tenant_id from idempotency_keys where created_at < now() - make_interval(hours => $1)",
    )
    .bind(TTL_HOURS)
    .fetch_all(b.conn())
    .await?;
    b.commit().await?;
    let mut purged = 0;
    for t in tenants {
        let Ok(tenant) = crate::TenantId::from_uuid(t) else { continue };
        let result = async {
            let mut tx = store.tenant_tx(tenant).await?;
            let n = sqlx::query("delete from idempotency_keys where created_at < now() - make_interval(hours => $1)")
                .bind(TTL_HOURS)
                .execute(tx.conn())
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok::<u64, StoreError>(n)
        }
        .await;
        match result {
            Ok(n) => purged += n,
            Err(e) => tracing::warn!(%tenant, error = %e, "could not purge idempotency keys"),
        }
    }
    Ok(purged)
}
