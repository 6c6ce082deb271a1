//! Isolation counters: tenant transactions opened and cross-tenant attempts refused.
//!
//! "Cross-tenant attempts refused" counts what its words say: writes row-level security refused
//! on a tenant table because the row named another tenant (`WITH CHECK`), appends to another
//! tenant's audit chain, and batches the batch guard refused for naming rows outside their
//! tenant. Privilege errors (the app role updating the ledger, reading an owner-only table) and
//! dangling references are not counted. The figure is kept per UTC day in the database
//! (`platform_isolation_daily`), so every node adds to and reads the same number and a restart
//! keeps it. Transaction counts stay per process.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{NaiveDate, Utc};
use serde::Serialize;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct IsolationMetrics {
    tenant_tx_total: AtomicU64,
    global_tx_total: AtomicU64,
    bypass_tx_total: AtomicU64,
    cross_tenant_refused_total: AtomicU64,
    /// Refusals counted here and not yet written to the database.
    pending: AtomicU64,
    wake: Notify,
    today: std::sync::Mutex<Daily>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Daily {
    day: Option<NaiveDate>,
    tenant_tx: u64,
    cross_tenant_refused: u64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct IsolationSnapshot {
    pub tenant_tx_total: u64,
    pub global_tx_total: u64,
    pub bypass_tx_total: u64,
    /// Refused by this process since it started.
    pub cross_tenant_refused_total: u64,
    pub tenant_tx_today: u64,
    /// Refused today (UTC) by every node sharing the database, restarts included.
    pub cross_tenant_refused_today: u64,
    pub day: NaiveDate,
    /// `false` when the database could not be read: `cross_tenant_refused_today` is then this
    /// process's own count only.
    pub shared: bool,
}

static POOL_WAITS: AtomicU64 = AtomicU64::new(0);
static POOL_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// Called before a transaction takes a connection from the application pool: when none is idle
/// and the pool is at its size limit, the caller has to wait for one, and that is counted.
pub(crate) fn acquiring(pool: &sqlx::PgPool) {
    if pool.num_idle() == 0 && pool.size() >= pool.options().get_max_connections() {
        POOL_WAITS.fetch_add(1, Ordering::Relaxed);
    }
}

/// A caller gave up waiting for a connection (`--db-wait-ms` passed): answered 503.
pub(crate) fn pool_timed_out() {
    POOL_TIMEOUTS.fetch_add(1, Ordering::Relaxed);
}

/// Transactions of this process that found the application pool exhausted and waited.
#[must_use]
pub fn pool_waits_total() -> u64 {
    POOL_WAITS.load(Ordering::Relaxed)
}

/// Transactions of this process that waited past `--db-wait-ms` and were refused.
#[must_use]
pub fn pool_timeouts_total() -> u64 {
    POOL_TIMEOUTS.load(Ordering::Relaxed)
}

static GLOBAL: OnceLock<IsolationMetrics> = OnceLock::new();

/// The process-wide counters.
pub fn global() -> &'static IsolationMetrics {
    GLOBAL.get_or_init(IsolationMetrics::default)
}

impl IsolationMetrics {
    fn bump_today(&self, f: impl FnOnce(&mut Daily)) {
        let today = Utc::now().date_naive();
        // A poisoned lock only means another thread panicked mid-increment; the counts are
        // still meaningful, so keep counting.
        let mut d = self.today.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if d.day != Some(today) {
            *d = Daily { day: Some(today), ..Daily::default() };
        }
        f(&mut d);
    }

    pub(crate) fn tenant_tx(&self) {
        self.tenant_tx_total.fetch_add(1, Ordering::Relaxed);
        self.bump_today(|d| d.tenant_tx += 1);
    }

    pub(crate) fn global_tx(&self) {
        self.global_tx_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bypass_tx(&self) {
        self.bypass_tx_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn cross_tenant_refused(&self) {
        self.cross_tenant_refused_total.fetch_add(1, Ordering::Relaxed);
        self.bump_today(|d| d.cross_tenant_refused += 1);
        self.pending.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// Resolves when refusals are waiting to be written.
    pub(crate) async fn refused_pending(&self) {
        self.wake.notified().await;
    }

    /// This process's counters only (no database); see [`crate::Store::isolation`] for the
    /// shared daily figure.
    #[must_use]
    pub fn snapshot(&self) -> IsolationSnapshot {
        let today = Utc::now().date_naive();
        let d = *self.today.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tenant_tx_today, refused_today) =
            if d.day == Some(today) { (d.tenant_tx, d.cross_tenant_refused) } else { (0, 0) };
        IsolationSnapshot {
            tenant_tx_total: self.tenant_tx_total.load(Ordering::Relaxed),
            global_tx_total: self.global_tx_total.load(Ordering::Relaxed),
            bypass_tx_total: self.bypass_tx_total.load(Ordering::Relaxed),
            cross_tenant_refused_total: self.cross_tenant_refused_total.load(Ordering::Relaxed),
            tenant_tx_today,
            cross_tenant_refused_today: refused_today,
            day: today,
            shared: false,
        }
    }
}

/// One flush at a time per process: a reader that flushes before reading today's figure waits
/// for a flush in flight (the background task's) to commit, instead of finding nothing pending
/// and reading the row before that insert is visible.
static FLUSHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Adds this process's pending refusals to today's shared figure. On failure they stay pending.
pub(crate) async fn flush(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    let _one_at_a_time = FLUSHING.lock().await;
    let m = global();
    let n = m.pending.swap(0, Ordering::AcqRel);
    if n == 0 {
        return Ok(());
    }
    let r = sqlx::query!("select countersign_count_cross_tenant($1)", i64::try_from(n).unwrap_or(i64::MAX))
        .execute(pool)
        .await;
    if r.is_err() {
        m.pending.fetch_add(n, Ordering::AcqRel);
        m.wake.notify_one();
    }
    r.map(|_| ())
}

/// The process counters with today's shared cross-tenant figure from the database.
pub(crate) async fn persisted_snapshot(pool: &sqlx::PgPool) -> IsolationSnapshot {
    let mut s = global().snapshot();
    let read = async {
        flush(pool).await?;
        sqlx::query!(r#"select o_day as "day!", o_refused as "refused!" from countersign_cross_tenant_today()"#)
            .fetch_one(pool)
            .await
    };
    match read.await {
        Ok(row) => {
            s.day = row.day;
            s.cross_tenant_refused_today = u64::try_from(row.refused).unwrap_or(0);
            s.shared = true;
        }
        Err(e) => tracing::warn!(error = %e, "shared cross-tenant figure unavailable; showing this process's"),
    }
    s
}
