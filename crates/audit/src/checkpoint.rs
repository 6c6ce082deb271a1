//! Signed checkpoints: Ed25519 over (chain, seq, head hash, time). A chain rewritten by someone
//! who can disable triggers still disagrees with the checkpoints they cannot re-sign.
//!
//! Signed message (version 1), UTF-8, each line ending in `\n`:
//! `countersign-checkpoint-v1`, chain (tenant UUID or `platform`), seq (decimal), head hash
//! (64 lowercase hex), signed_at (microseconds since the Unix epoch, decimal).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use store::{Store, TenantId, TenantTx};

use crate::append::dirty;
use crate::{AuditError, CheckpointKey};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    pub chain: String,
    pub seq: i64,
    #[serde(serialize_with = "hex_ser")]
    pub hash: Vec<u8>,
    pub signed_at: DateTime<Utc>,
    pub key_id: String,
    #[serde(serialize_with = "hex_ser")]
    pub signature: Vec<u8>,
}

fn hex_ser<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v))
}

#[must_use]
pub fn message(chain: &str, seq: i64, hash: &[u8], signed_at_us: i64) -> Vec<u8> {
    format!("countersign-checkpoint-v1\n{chain}\n{seq}\n{}\n{signed_at_us}\n", hex::encode(hash)).into_bytes()
}

fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn sign(key: &CheckpointKey, chain: &str, seq: i64, hash: Vec<u8>) -> Checkpoint {
    let signed_at = now_micros();
    let signature = key.sign(&message(chain, seq, &hash, signed_at.timestamp_micros())).to_vec();
    Checkpoint { chain: chain.to_owned(), seq, hash, signed_at, key_id: key.key_id().to_owned(), signature }
}

async fn store_tenant_checkpoint(
    conn: &mut PgConnection,
    tenant: uuid::Uuid,
    cp: &Checkpoint,
) -> Result<(), AuditError> {
    sqlx::query!(
        "insert into audit_checkpoints (tenant_id, seq, hash, signed_at, key_id, signature)
         values ($1, $2, $3, $4, $5, $6) on conflict do nothing",
        tenant,
        cp.seq,
        &cp.hash,
        cp.signed_at,
        &cp.key_id,
        &cp.signature
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Signs the tenant's head if it moved since the last checkpoint. `None` when nothing is new.
pub async fn checkpoint_tenant(tx: &mut TenantTx, key: &CheckpointKey) -> Result<Option<Checkpoint>, AuditError> {
    let tenant = tx.tenant();
    let head = sqlx::query!(
        r#"select h.seq, h.hash, (select max(c.seq) from audit_checkpoints c where c.tenant_id = h.tenant_id) as last
             from audit_heads h where h.tenant_id = $1"#,
        tenant.as_uuid()
    )
    .fetch_optional(tx.conn())
    .await?;
    let Some(head) = head else { return Ok(None) };
    if head.last.is_some_and(|last| last >= head.seq) {
        return Ok(None);
    }
    let cp = sign(key, &tenant.to_string(), head.seq, head.hash);
    store_tenant_checkpoint(tx.conn(), tenant.as_uuid(), &cp).await?;
    Ok(Some(cp))
}

/// Signs the platform chain's head if it moved. Needs no bypass, but the identity scope: pass
/// `GlobalTx::conn()` (the platform checkpoints' insert policy admits only that; a bypass
/// transaction is refused).
pub async fn checkpoint_platform(
    conn: &mut PgConnection,
    key: &CheckpointKey,
) -> Result<Option<Checkpoint>, AuditError> {
    let head = sqlx::query!(
        r#"select o_seq as "seq!", o_hash as "hash!", o_checkpointed as last from countersign_platform_audit_head()"#
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(head) = head else { return Ok(None) };
    if head.last.is_some_and(|last| last >= head.seq) {
        return Ok(None);
    }
    let cp = sign(key, "platform", head.seq, head.hash);
    sqlx::query!(
        "insert into platform_audit_checkpoints (seq, hash, signed_at, key_id, signature)
         values ($1, $2, $3, $4, $5) on conflict do nothing",
        cp.seq,
        &cp.hash,
        cp.signed_at,
        &cp.key_id,
        &cp.signature
    )
    .execute(&mut *conn)
    .await?;
    Ok(Some(cp))
}

/// Every chain whose head moved, now (`countersign audit checkpoint`): the organisations are
/// listed in an audited bypass, each chain is signed in its own tenant transaction (as the
/// server's checkpointer does), and the platform chain in a global transaction (its checkpoints
/// admit only the identity scope).
pub async fn checkpoint_all(store: &Store, key: &CheckpointKey) -> Result<Vec<Checkpoint>, AuditError> {
    let mut b = store.bypass("cli:audit-checkpoint", "list the organisations whose chains to sign").await?;
    let tenants: Vec<uuid::Uuid> =
        sqlx::query_scalar::<_, uuid::Uuid>("select id from tenants order by id").fetch_all(b.conn()).await?;
    b.commit().await?;
    let mut out = Vec::with_capacity(tenants.len() + 1);
    for t in tenants {
        let tenant = TenantId::from_uuid(t).map_err(|e| AuditError::Malformed(e.to_string()))?;
        let mut tx = store.tenant_tx(tenant).await?;
        let cp = checkpoint_tenant(&mut tx, key).await?;
        tx.commit().await?;
        out.extend(cp);
    }
    let mut g = store.global_tx().await?;
    let cp = checkpoint_platform(g.conn(), key).await?;
    g.commit().await?;
    out.extend(cp);
    Ok(out)
}

/// One pass over the tenants this process wrote to, plus the platform chain.
pub async fn checkpoint_dirty(store: &Store, key: &CheckpointKey) -> Result<usize, AuditError> {
    let tenants: Vec<TenantId> = dirty().lock().map(|mut d| d.drain().collect()).unwrap_or_default();
    let mut signed = 0;
    for tenant in tenants {
        let mut tx = store.tenant_tx(tenant).await?;
        let cp = checkpoint_tenant(&mut tx, key).await?;
        tx.commit().await?;
        if let Some(cp) = cp {
            committed(&cp);
            signed += 1;
        }
    }
    let mut g = store.global_tx().await?;
    let cp = checkpoint_platform(g.conn(), key).await?;
    g.commit().await?;
    if let Some(cp) = cp {
        committed(&cp);
        signed += 1;
    }
    Ok(signed)
}

/// What this process's checkpointer ([`checkpoint_dirty`]) has committed since the process
/// started: a live figure for `GET /api/v1/security`, nothing about any tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Activity {
    /// Checkpoints signed and committed (tenant chains and the platform chain).
    pub signed: u64,
    /// When the newest of them was signed; `None` before the first.
    pub last_signed_at: Option<DateTime<Utc>>,
}

static SIGNED: AtomicU64 = AtomicU64::new(0);
/// Microseconds since the epoch of the newest committed checkpoint; `i64::MIN`: none yet.
static LAST_SIGNED_US: AtomicI64 = AtomicI64::new(i64::MIN);

fn committed(cp: &Checkpoint) {
    SIGNED.fetch_add(1, Ordering::Relaxed);
    LAST_SIGNED_US.fetch_max(cp.signed_at.timestamp_micros(), Ordering::Relaxed);
}

/// This process's checkpointing so far.
#[must_use]
pub fn activity() -> Activity {
    let last = LAST_SIGNED_US.load(Ordering::Relaxed);
    Activity {
        signed: SIGNED.load(Ordering::Relaxed),
        last_signed_at: (last != i64::MIN).then(|| DateTime::from_timestamp_micros(last)).flatten(),
    }
}

/// Runs `checkpoint_dirty` every `every` until the task is dropped or aborted.
pub fn spawn_checkpointer(store: Store, key: Arc<CheckpointKey>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match checkpoint_dirty(&store, &key).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(signed = n, "audit checkpoints signed"),
                Err(e) => tracing::warn!(error = %e, "audit checkpoint pass failed"),
            }
        }
    })
}
