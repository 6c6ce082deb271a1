//! The server's own chain watch: every few minutes it recomputes every audit chain (the same
//! [`verify::verify_all`] as `countersign audit verify`, under a logged bypass) and keeps the
//! outcome, so "chains verified" on the security page is a measurement, not a promise. A broken
//! chain is logged at ERROR on every pass until it is dealt with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use store::{Store, TenantTx};

use crate::verify::{self, Report};
use crate::{AuditError, TrustedKeys};

/// The outcome of this process's newest pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Watch {
    /// When the pass finished.
    pub at: DateTime<Utc>,
    /// Chains recomputed (every organisation's and the platform's).
    pub chains: u64,
    pub events: u64,
    /// Chains with a break (tampering, a missing event, a head or checkpoint disagreeing).
    pub broken: u64,
    /// Chains with checkpoints signed by a key this server does not hold (not verified, not
    /// evidence of tampering either).
    pub unverified: u64,
    /// Per chain (tenant id or `platform`): the head it verified up to and whether it was intact.
    #[serde(skip)]
    pub heads: HashMap<String, ChainHead>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChainHead {
    pub seq: Option<i64>,
    pub intact: bool,
}

static LAST: Mutex<Option<Watch>> = Mutex::new(None);
static PASSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static EVENTS_VERIFIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Chain-watch passes this process completed, and the events they recomputed (for `/metrics`).
#[must_use]
pub fn verified_totals() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (PASSES.load(Relaxed), EVENTS_VERIFIED.load(Relaxed))
}

/// This process's newest pass, if one finished.
#[must_use]
pub fn last() -> Option<Watch> {
    LAST.lock().ok().and_then(|w| w.clone())
}

/// What the newest pass found for one chain (a tenant id, or `platform`).
#[must_use]
pub fn chain(chain: &str) -> Option<(DateTime<Utc>, ChainHead)> {
    let w = LAST.lock().ok()?;
    let w = w.as_ref()?;
    w.heads.get(chain).map(|h| (w.at, *h))
}

fn summarise(r: &Report) -> Watch {
    Watch {
        at: Utc::now(),
        chains: r.chains.len() as u64,
        events: r.events,
        broken: r.broken().count() as u64,
        unverified: r.unverified().count() as u64,
        heads: r
            .chains
            .iter()
            .map(|c| (c.chain.clone(), ChainHead { seq: c.head_seq, intact: c.first_break.is_none() }))
            .collect(),
    }
}

/// One pass: verifies every chain and records the outcome.
///
/// # Errors
/// The verifier's (database) errors; the previous outcome is kept.
pub async fn pass(store: &Store, keys: &TrustedKeys) -> Result<Watch, AuditError> {
    let opts = verify::Options { workers: 2, ..verify::Options::default() };
    let report = verify::verify_all(store, "server:chain-watch", keys, opts, &mut |_, _| {}).await?;
    let w = summarise(&report);
    for c in report.broken() {
        if let Some(b) = &c.first_break {
            tracing::error!(chain = %c.chain, seq = b.seq, problem = %b.problem, "audit chain broken");
        }
    }
    PASSES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    EVENTS_VERIFIED.fetch_add(w.events, std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut last) = LAST.lock() {
        *last = Some(w.clone());
    }
    Ok(w)
}

/// One organisation's chain as its auditors see it: the head, the newest signed checkpoint, and
/// what this server's newest pass found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChainStatus {
    /// The newest event's sequence number (`null`: no event yet).
    pub head_seq: Option<i64>,
    /// Its hash, hex.
    pub head_hash: Option<String>,
    pub last_checkpoint: Option<CheckpointSummary>,
    /// This server's newest recomputation of the chain (`null`: none since it started).
    pub verified: Option<Verified>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CheckpointSummary {
    pub seq: i64,
    pub signed_at: DateTime<Utc>,
    /// The signing key's id (`countersign audit public-key` prints it).
    pub key_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Verified {
    pub at: DateTime<Utc>,
    /// The head the pass verified up to (events after it arrived since).
    pub seq: Option<i64>,
    /// `false`: the chain is broken (see `countersign audit verify` for where).
    pub intact: bool,
}

/// The transaction's organisation's [`ChainStatus`].
///
/// # Errors
/// Database errors.
pub async fn status(tx: &mut TenantTx) -> Result<ChainStatus, AuditError> {
    let tenant = tx.tenant().as_uuid();
    let head = sqlx::query!("select seq, hash from audit_heads where tenant_id = $1", tenant)
        .fetch_optional(tx.conn())
        .await?;
    let checkpoint = sqlx::query_as!(
        CheckpointSummary,
        "select seq, signed_at, key_id from audit_checkpoints where tenant_id = $1 order by seq desc limit 1",
        tenant
    )
    .fetch_optional(tx.conn())
    .await?;
    Ok(ChainStatus {
        head_seq: head.as_ref().map(|h| h.seq),
        head_hash: head.map(|h| hex::encode(h.hash)),
        last_checkpoint: checkpoint,
        verified: chain(&tenant.to_string()).map(|(at, h)| Verified { at, seq: h.seq, intact: h.intact }),
    })
}

/// Runs [`pass`] after `first` and then every `every` until the task is aborted.
pub fn spawn(store: Store, keys: Arc<TrustedKeys>, first: Duration, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(first).await;
        loop {
            match pass(&store, &keys).await {
                Ok(w) => {
                    tracing::info!(chains = w.chains, events = w.events, broken = w.broken, "audit chains verified")
                }
                Err(e) => tracing::warn!(error = %e, "audit chain watch pass failed"),
            }
            tokio::time::sleep(every).await;
        }
    })
}
