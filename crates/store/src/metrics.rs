//! Isolation counters: tenant transactions opened and cross-tenant attempts refused.
//!
//! Process-wide, because refusals are detected where errors are classified (anywhere a
//! `sqlx::Error` becomes a `StoreError`). Counters are kept for the process lifetime and for the
//! current UTC day ("N tenant queries today, 0 cross-tenant").

use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{NaiveDate, Utc};
use serde::Serialize;

#[derive(Debug, Default)]
pub struct IsolationMetrics {
    tenant_tx_total: AtomicU64,
    global_tx_total: AtomicU64,
    bypass_tx_total: AtomicU64,
    cross_tenant_refused_total: AtomicU64,
    today: Mutex<Daily>,
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
    pub cross_tenant_refused_total: u64,
    pub tenant_tx_today: u64,
    pub cross_tenant_refused_today: u64,
    pub day: NaiveDate,
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
    }

    #[must_use]
    pub fn snapshot(&self) -> IsolationSnapshot {
        let today = Utc::now().date_naive();
        let d = *self.today.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tenant_tx_today, cross_today) =
            if d.day == Some(today) { (d.tenant_tx, d.cross_tenant_refused) } else { (0, 0) };
        IsolationSnapshot {
            tenant_tx_total: self.tenant_tx_total.load(Ordering::Relaxed),
            global_tx_total: self.global_tx_total.load(Ordering::Relaxed),
            bypass_tx_total: self.bypass_tx_total.load(Ordering::Relaxed),
            cross_tenant_refused_total: self.cross_tenant_refused_total.load(Ordering::Relaxed),
            tenant_tx_today,
            cross_tenant_refused_today: cross_today,
            day: today,
        }
    }
}
