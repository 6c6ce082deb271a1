//! Per-node cache of live sessions, so an access token costs no database round trip on most
//! requests — and revocation still reaches this node within a second: a task `LISTEN`s on
//! `countersign_revocation` and drops every entry a revocation matches.
//!
//! Safety rules: the cache is used only while the listener is connected (a lost connection
//! clears it and sends every request to the database until it is back); an entry lives at most
//! [`TTL`] and never past the membership's end; and an entry computed from a database read is
//! kept only if no revocation arrived while that read was in flight (generation check).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use identity::Role;
use identity::revocation::{REVOCATION_CHANNEL, Revocation};
use uuid::Uuid;

pub const TTL: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub tenant: Uuid,
    pub user: Uuid,
    pub role: Role,
    pub valid_until: Option<DateTime<Utc>>,
    /// See `Principal::enrolment_due`. An entry lives [`TTL`] at most, and setting up the app
    /// drops the session's entry at once (`SessionCache::forget`).
    pub enrolment_due: bool,
}

#[derive(Debug, Default)]
struct Inner {
    map: Mutex<HashMap<Uuid, (Entry, Instant)>>,
    generation: AtomicU64,
    listening: AtomicBool,
    notifications: AtomicU64,
    /// Woken after every revocation applied (the revocation benchmark waits on it).
    applied: tokio::sync::Notify,
}

#[derive(Debug, Clone, Default)]
pub struct SessionCache {
    inner: Arc<Inner>,
}

impl SessionCache {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Entry, Instant)>> {
        self.inner.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[must_use]
    pub fn get(&self, session: Uuid) -> Option<Entry> {
        if !self.inner.listening.load(Ordering::Acquire) {
            return None;
        }
        let map = self.map();
        let (e, at) = map.get(&session)?;
        let alive = at.elapsed() < TTL && e.valid_until.is_none_or(|u| u > Utc::now());
        alive.then(|| e.clone())
    }

    /// Read before a database check; pass to [`SessionCache::insert`].
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    pub fn insert(&self, generation: u64, session: Uuid, entry: Entry) {
        let mut map = self.map();
        // Checked under the lock that `apply` also takes: a revocation that raced the database
        // read has either bumped the generation (we skip) or will remove what we insert.
        if self.generation() == generation && self.inner.listening.load(Ordering::Acquire) {
            if map.len() > 100_000 {
                map.clear();
            }
            map.insert(session, (entry, Instant::now()));
        }
    }

    pub fn apply(&self, r: &Revocation) {
        let mut map = self.map();
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        map.retain(|sid, (e, _)| {
            let hit = r.session.is_none_or(|s| s == *sid)
                && r.user.is_none_or(|u| u == e.user)
                && r.tenant.is_none_or(|t| t == e.tenant);
            !hit
        });
        drop(map);
        self.inner.applied.notify_waiters();
    }

    /// Resolves after the next revocation is applied on this node. Create it *before* causing
    /// the revocation: it counts as waiting from creation, not from its first poll.
    pub fn next_applied(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.applied.notified()
    }

    fn set_listening(&self, on: bool) {
        let mut map = self.map();
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        map.clear();
        self.inner.listening.store(on, Ordering::Release);
    }

    /// Notifications received so far (for tests and metrics).
    #[must_use]
    pub fn notifications(&self) -> u64 {
        self.inner.notifications.load(Ordering::Relaxed)
    }

    #[must_use]
    pub fn is_listening(&self) -> bool {
        self.inner.listening.load(Ordering::Acquire)
    }

    /// Runs the listener until the process ends, reconnecting after a lost connection.
    pub fn spawn_listener(&self, store: store::Store) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            loop {
                match store.listener(REVOCATION_CHANNEL).await {
                    Ok(mut l) => {
                        cache.set_listening(true);
                        // `Ok(None)` or an error: the connection is gone.
                        while let Ok(Some(n)) = l.try_recv().await {
                            cache.inner.notifications.fetch_add(1, Ordering::Relaxed);
                            match serde_json::from_str::<Revocation>(n.payload()) {
                                Ok(r) => cache.apply(&r),
                                Err(_) => cache.apply(&Revocation::default()),
                            }
                        }
                        cache.set_listening(false);
                        tracing::warn!("revocation listener lost its connection; reconnecting");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "revocation listener cannot connect");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tenant: Uuid, user: Uuid) -> Entry {
        Entry { tenant, user, role: Role::Staff, valid_until: None, enrolment_due: false }
    }

    #[test]
    fn revocations_drop_what_they_match_and_stale_reads_are_not_cached() {
        let c = SessionCache::default();
        let (t1, t2, u1, u2) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let (s1, s2, s3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        // Not listening: nothing is cached.
        c.insert(c.generation(), s1, entry(t1, u1));
        assert_eq!(c.get(s1), None);
        c.set_listening(true);
        let g = c.generation();
        c.insert(g, s1, entry(t1, u1));
        c.insert(g, s2, entry(t1, u2));
        c.insert(g, s3, entry(t2, u1));
        assert!(c.get(s1).is_some());
        // User u1 in tenant t1 only.
        c.apply(&Revocation { tenant: Some(t1), user: Some(u1), session: None });
        assert!(c.get(s1).is_none() && c.get(s2).is_some() && c.get(s3).is_some());
        // User everywhere.
        c.apply(&Revocation { tenant: None, user: Some(u1), session: None });
        assert!(c.get(s3).is_none() && c.get(s2).is_some());
        // A read that started before a revocation is not cached after it.
        let before = c.generation();
        c.apply(&Revocation { tenant: Some(t1), user: None, session: None });
        c.insert(before, s2, entry(t1, u2));
        assert!(c.get(s2).is_none());
        // Expired guest memberships are never served from the cache.
        let g = c.generation();
        c.insert(g, s1, Entry { valid_until: Some(Utc::now() - chrono::Duration::seconds(1)), ..entry(t1, u1) });
        assert!(c.get(s1).is_none());
    }
}
