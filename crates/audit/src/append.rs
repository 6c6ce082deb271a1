//! The one append path. An event is written by the database function
//! `countersign_audit_append` inside the caller's transaction: if the change rolls back, so does
//! the event; if the event cannot be written, the caller's transaction fails with it.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use sqlx::PgConnection;
use store::{BypassTx, TenantId, TenantTx};

use crate::{Actor, AuditError, Event, Origin, Who};

/// Where an event landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub seq: i64,
    pub hash: [u8; 32],
}

static APPENDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Events this process appended to any chain (an append whose transaction later rolled back
/// is counted too: the figure is work done, for `/metrics`).
#[must_use]
pub fn appended_total() -> u64 {
    APPENDED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Records `event` in the transaction's tenant chain on behalf of `who`.
pub async fn record_by(tx: &mut TenantTx, who: &Who, event: &Event) -> Result<Receipt, AuditError> {
    record(tx, &who.actor, &who.origin, event).await
}

/// Records `event` in the transaction's tenant chain.
pub async fn record(tx: &mut TenantTx, actor: &Actor, origin: &Origin, event: &Event) -> Result<Receipt, AuditError> {
    let tenant = tx.tenant();
    let r = append(tx.conn(), Some(tenant), actor, origin, event).await?;
    dirty().lock().map(|mut d| d.insert(tenant)).ok();
    Ok(r)
}

/// Records `event` in `tenant`'s chain from a platform (bypass) transaction.
pub async fn record_for(
    tx: &mut BypassTx,
    tenant: TenantId,
    actor: &Actor,
    origin: &Origin,
    event: &Event,
) -> Result<Receipt, AuditError> {
    let r = append(tx.conn(), Some(tenant), actor, origin, event).await?;
    dirty().lock().map(|mut d| d.insert(tenant)).ok();
    Ok(r)
}

/// Records `event` in the platform chain (global identity changes, platform-admin acts). Works
/// in any transaction; pass `GlobalTx::conn()` or `BypassTx::conn()`.
pub async fn record_platform(
    conn: &mut PgConnection,
    actor: &Actor,
    origin: &Origin,
    event: &Event,
) -> Result<Receipt, AuditError> {
    append(conn, None, actor, origin, event).await
}

async fn append(
    conn: &mut PgConnection,
    tenant: Option<TenantId>,
    actor: &Actor,
    origin: &Origin,
    event: &Event,
) -> Result<Receipt, AuditError> {
    let ip = origin.ip.map(|ip| ip.to_string());
    let changes = event.changes.to_json();
    let (seq, hash) = match tenant {
        Some(t) => {
            let r = sqlx::query!(
                r#"select o_seq as "seq!", o_hash as "hash!"
                     from countersign_audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, ($11::text)::inet, $12)"#,
                t.as_uuid(),
                actor.kind.as_str(),
                &actor.id,
                actor.role.as_deref(),
                event.action.as_str(),
                &event.entity.kind,
                event.entity.id.as_deref(),
                &changes,
                event.reason.as_deref(),
                origin.request_id.as_deref(),
                ip,
                origin.user_agent.as_deref()
            )
            .fetch_one(conn)
            .await?;
            (r.seq, r.hash)
        }
        None => {
            let r = sqlx::query!(
                r#"select o_seq as "seq!", o_hash as "hash!"
                     from countersign_platform_audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, ($10::text)::inet, $11)"#,
                actor.kind.as_str(),
                &actor.id,
                actor.role.as_deref(),
                event.action.as_str(),
                &event.entity.kind,
                event.entity.id.as_deref(),
                &changes,
                event.reason.as_deref(),
                origin.request_id.as_deref(),
                ip,
                origin.user_agent.as_deref()
            )
            .fetch_one(conn)
            .await?;
            (r.seq, r.hash)
        }
    };
    let hash: [u8; 32] = hash.try_into().map_err(|_| AuditError::Malformed("hash is not 32 bytes".into()))?;
    APPENDED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(Receipt { seq, hash })
}

/// Tenants this process appended to since the checkpointer last looked (it re-reads the head, so
/// a rolled-back append costs one no-op check).
pub(crate) fn dirty() -> &'static Mutex<HashSet<TenantId>> {
    static DIRTY: OnceLock<Mutex<HashSet<TenantId>>> = OnceLock::new();
    DIRTY.get_or_init(|| Mutex::new(HashSet::new()))
}
