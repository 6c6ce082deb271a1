//! Enforcing the per-organisation IP allowlist (its admin API: `crate::api::ip_allowlist`).
//!
//! [`enforce`] runs for every authenticated request (inside the `Principal` extractor), every
//! login and every refresh that names an organisation. The organisation's networks come from a
//! per-node cache (a few seconds' TTL) that a `LISTEN` on `countersign_ip_allowlist` clears the
//! moment any node changes a list; while that listener is down the cache is not used at all, so
//! a change is never missed, only paid for with a query per request. A refusal is 403
//! `ip_not_allowed`, counted in `/metrics`, and audited as `auth.ip_refused` — at most once per
//! address per minute and 30 times per minute per organisation per node, so an attacker cannot
//! grow the ledger by hammering the door.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use governor::{DefaultKeyedRateLimiter, Quota};

use identity::directory::ip_allowlist as list;
use ipnet::IpNet;
use store::TenantId;
use uuid::Uuid;

use crate::{ApiError, AppState, ClientContext};

/// How long a node trusts its copy of a list without hearing of a change.
pub const TTL: Duration = Duration::from_secs(5);

static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Requests refused by an allowlist in this process (for `/metrics`).
#[must_use]
pub fn refused_total() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// Who was refused: the subject of the `auth.ip_refused` event.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A signed access token's user (cookie or bearer).
    User(Uuid),
    /// The API key id the request presented (not yet verified: the address is checked first,
    /// so an outsider learns nothing about the key).
    ApiKey(Uuid),
    /// A login attempt for this email (checked before the password, so no password oracle).
    Login(&'a str),
    /// A refresh of this session.
    Session(Uuid),
}

impl Subject<'_> {
    fn entity(&self) -> Result<audit::Entity, audit::AuditError> {
        match self {
            Self::User(u) => audit::Entity::of("user", u),
            Self::ApiKey(k) => audit::Entity::of("api_key", k),
            Self::Login(email) => audit::Entity::of("login", email),
            Self::Session(s) => audit::Entity::of("session", s),
        }
    }
}

type Cached = (Arc<[IpNet]>, Instant);

struct Inner {
    map: Mutex<HashMap<Uuid, Cached>>,
    generation: AtomicU64,
    listening: AtomicBool,
    audit_per_ip: DefaultKeyedRateLimiter<(Uuid, IpAddr)>,
    audit_per_tenant: DefaultKeyedRateLimiter<Uuid>,
}

/// Per-node cache of organisations' allowlists.
#[derive(Clone)]
pub struct AllowlistCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AllowlistCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllowlistCache").field("listening", &self.is_listening()).finish_non_exhaustive()
    }
}

impl Default for AllowlistCache {
    fn default() -> Self {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self {
            inner: Arc::new(Inner {
                map: Mutex::default(),
                generation: AtomicU64::new(0),
                listening: AtomicBool::new(false),
                audit_per_ip: DefaultKeyedRateLimiter::keyed(per_minute(1)),
                audit_per_tenant: DefaultKeyedRateLimiter::keyed(per_minute(30)),
            }),
        }
    }
}

impl AllowlistCache {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Cached>> {
        self.inner.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[must_use]
    pub fn is_listening(&self) -> bool {
        self.inner.listening.load(Ordering::Acquire)
    }

    /// Forgets one organisation's list (or all, with `None`) on this node.
    pub fn invalidate(&self, tenant: Option<Uuid>) {
        let mut map = self.map();
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        match tenant {
            Some(t) => {
                map.remove(&t);
            }
            None => map.clear(),
        }
    }

    fn set_listening(&self, on: bool) {
        self.invalidate(None);
        self.inner.listening.store(on, Ordering::Release);
    }

    /// The organisation's networks (empty: unrestricted).
    async fn networks(&self, store: &store::Store, tenant: TenantId) -> Result<Arc<[IpNet]>, ApiError> {
        let key = tenant.as_uuid();
        if self.is_listening()
            && let Some((nets, at)) = self.map().get(&key)
            && at.elapsed() < TTL
        {
            return Ok(nets.clone());
        }
        let generation = self.inner.generation.load(Ordering::Acquire);
        let mut tx = store.tenant_tx(tenant).await?;
        let nets: Arc<[IpNet]> = list::networks(&mut tx).await?.into();
        tx.commit().await?;
        let mut map = self.map();
        // A change announced while we read is not overwritten by what we read before it.
        if self.inner.generation.load(Ordering::Acquire) == generation && self.is_listening() {
            if map.len() > 10_000 {
                map.clear();
            }
            map.insert(key, (nets.clone(), Instant::now()));
        }
        Ok(nets)
    }

    /// Runs the change listener until the process ends, reconnecting after a lost connection.
    pub fn spawn_listener(&self, store: store::Store) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            loop {
                match store.listener(list::CHANNEL).await {
                    Ok(mut l) => {
                        cache.set_listening(true);
                        while let Ok(Some(n)) = l.try_recv().await {
                            cache.invalidate(Uuid::try_parse(n.payload()).ok());
                        }
                        cache.set_listening(false);
                        tracing::warn!("ip allowlist listener lost its connection; reconnecting");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ip allowlist listener cannot connect");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    }

    fn should_audit(&self, tenant: Uuid, ip: IpAddr) -> bool {
        if self.inner.audit_per_ip.len() > 10_000 {
            self.inner.audit_per_ip.retain_recent();
        }
        self.inner.audit_per_ip.check_key(&(tenant, ip)).is_ok()
            && self.inner.audit_per_tenant.check_key(&tenant).is_ok()
    }
}

fn not_allowed() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "ip_not_allowed", "your network address is not allowed for this organisation")
}

/// Refuses `ctx.ip` unless `tenant`'s allowlist is empty or contains it.
///
/// # Errors
/// 403 `ip_not_allowed`; 503 when the list cannot be read (fails closed).
pub async fn enforce(
    state: &AppState,
    tenant: TenantId,
    ctx: &ClientContext,
    subject: Subject<'_>,
) -> Result<(), ApiError> {
    let nets = state.allowlist.networks(&state.store, tenant).await?;
    if list::allows(&nets, ctx.ip) {
        return Ok(());
    }
    REFUSED.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%tenant, ip = %ctx.ip, ?subject, "address outside the organisation's ip allowlist");
    if state.allowlist.should_audit(tenant.as_uuid(), ctx.ip.to_canonical()) {
        let result = async {
            let mut tx = state.store.tenant_tx(tenant).await?;
            let event = audit::Event::new("auth.ip_refused", subject.entity()?, audit::Changes::none())?
                .with_reason("address outside the organisation's IP allowlist")?;
            audit::record(&mut tx, &audit::Actor::system("web:ip_allowlist"), &ctx.origin(), &event).await?;
            tx.commit().await?;
            Ok::<(), ApiError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = ?e, "could not audit an ip allowlist refusal");
        }
    }
    Err(not_allowed())
}
