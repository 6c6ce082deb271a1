//! Refusal events, aggregated: at most one ledger event per (organisation, kind, client address)
//! per window (a minute), carrying how many refusals it stands for.
//!
//! A refused API key (`auth.api_key_rejected`) names an organisation anyone can name, and an
//! authenticated refusal (`access.denied`) costs its caller nothing; one event per request would
//! let either grow a ledger without bound. So the first refusal of a window is written at once
//! (the attack is on record immediately, with `refusals: 1`); later ones in the window are only
//! counted here, and the count is written when the window closes — by the flusher task, or by
//! the next refusal after it — as one event whose `refusals` field is the number of refusals
//! since the previous event (`rate_limited` of them answered 429 before any database work). The
//! same counts are in `/metrics`. A node that dies loses at most one window's counts of its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::{Store, TenantId};

/// How long one event stands for the refusals after it.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Entries beyond this many are dropped when quiet (their counts stay in `/metrics`).
const MAX_ENTRIES: usize = 10_000;

static REFUSALS: AtomicU64 = AtomicU64::new(0);
static EVENTS: AtomicU64 = AtomicU64::new(0);

/// Refusals seen by this process (for `/metrics`).
#[must_use]
pub fn refusals_total() -> u64 {
    REFUSALS.load(Ordering::Relaxed)
}

/// Refusal events this process wrote (for `/metrics`).
#[must_use]
pub fn events_total() -> u64 {
    EVENTS.load(Ordering::Relaxed)
}

type Key = (TenantId, &'static str, IpAddr);

struct Entry {
    opened: Instant,
    /// Refusals since the last event, and how many of them were rate limited.
    pending: u64,
    rate_limited: u64,
    /// The latest checked refusal's actor and event: what the window's event describes.
    last: (audit::Who, audit::Event),
}

/// One event to write: who, what, and the counts it carries.
struct Due {
    tenant: TenantId,
    who: audit::Who,
    event: audit::Event,
    refusals: u64,
    rate_limited: u64,
}

/// The per-node aggregation of refusal events.
#[derive(Clone, Default)]
pub struct RefusalLog {
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
}

impl std::fmt::Debug for RefusalLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefusalLog").finish_non_exhaustive()
    }
}

/// What one refusal contributes.
pub(crate) enum Refusal {
    /// Reached the credential or policy check; `who` and `event` describe it.
    Checked(Box<(audit::Who, audit::Event)>),
    /// Answered 429 before any database work: counted into an open record only.
    RateLimited,
}

impl RefusalLog {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one refusal of `kind` in `tenant` from `ip`; writes an event when none was written
    /// for that key within the window. Failures to write are logged, never the caller's error.
    pub(crate) async fn record(&self, store: &Store, tenant: TenantId, kind: &'static str, ip: IpAddr, r: Refusal) {
        REFUSALS.fetch_add(1, Ordering::Relaxed);
        if let Some(d) = self.count(tenant, kind, ip, r) {
            write(store, d).await;
        }
    }

    fn count(&self, tenant: TenantId, kind: &'static str, ip: IpAddr, r: Refusal) -> Option<Due> {
        let mut map = self.entries();
        let key = (tenant, kind, ip.to_canonical());
        let now = Instant::now();
        let limited = u64::from(matches!(r, Refusal::RateLimited));
        match map.get_mut(&key) {
            Some(e) => {
                e.pending += 1;
                e.rate_limited += limited;
                if let Refusal::Checked(checked) = r {
                    e.last = *checked;
                }
                if now.duration_since(e.opened) < WINDOW {
                    return None;
                }
                // The window closed without the flusher: its count goes out with this refusal.
                let d = Due {
                    tenant,
                    who: e.last.0.clone(),
                    event: e.last.1.clone(),
                    refusals: e.pending,
                    rate_limited: e.rate_limited,
                };
                (e.opened, e.pending, e.rate_limited) = (now, 0, 0);
                Some(d)
            }
            None => {
                // Rate limited with nothing on record to attach it to: `/metrics` only.
                let Refusal::Checked(checked) = r else { return None };
                let (who, event) = *checked;
                if map.len() >= MAX_ENTRIES {
                    map.retain(|_, e| e.pending > 0 || now.duration_since(e.opened) < WINDOW);
                }
                if map.len() >= MAX_ENTRIES {
                    tracing::warn!(kind, "refusal aggregation table full; counted in /metrics only");
                    return None;
                }
                map.insert(key, Entry { opened: now, pending: 0, rate_limited: 0, last: (who.clone(), event.clone()) });
                Some(Due { tenant, who, event, refusals: 1, rate_limited: 0 })
            }
        }
    }

    fn take(&self, all: bool) -> Vec<Due> {
        let mut map = self.entries();
        let mut due = Vec::new();
        let now = Instant::now();
        map.retain(|(tenant, _, _), e| {
            let closed = now.duration_since(e.opened) >= WINDOW;
            if (closed || all) && e.pending > 0 {
                due.push(Due {
                    tenant: *tenant,
                    who: e.last.0.clone(),
                    event: e.last.1.clone(),
                    refusals: e.pending,
                    rate_limited: e.rate_limited,
                });
                (e.opened, e.pending, e.rate_limited) = (now, 0, 0);
                return true;
            }
            // A closed, quiet window is forgotten: the next refusal is written at once again.
            !closed
        });
        due
    }

    /// Writes the counts of every closed window (the flusher task calls this).
    pub async fn flush_due(&self, store: &Store) {
        for d in self.take(false) {
            write(store, d).await;
        }
    }

    /// Writes every pending count now, closed window or not (shutdown, tests).
    pub async fn flush_all(&self, store: &Store) {
        for d in self.take(true) {
            write(store, d).await;
        }
    }

    /// Runs [`Self::flush_due`] every few seconds until the process ends.
    pub fn spawn_flusher(&self, store: Store) -> tokio::task::JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                log.flush_due(&store).await;
            }
        })
    }
}

async fn write(store: &Store, d: Due) {
    let result = async {
        let mut tx = store.tenant_tx(d.tenant).await?;
        // A key can name an organisation that does not exist: nothing to record there.
        if identity::directory::tenants::current(&mut tx).await.is_err() {
            return Ok::<(), crate::ApiError>(());
        }
        let mut event = d.event;
        event.changes = event.changes.field("refusals", 0, d.refusals).field("rate_limited", 0, d.rate_limited);
        audit::record_by(&mut tx, &d.who, &event).await?;
        tx.commit().await?;
        EVENTS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = ?e, tenant = %d.tenant, "could not record an aggregated refusal event");
    }
}
