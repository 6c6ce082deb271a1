//! Who is calling. `Principal` is an extractor: a handler that names it cannot run for an
//! unauthenticated request. The credential is an access token (a signed-in person: cookie or
//! `Authorization: Bearer eyJ…`) or an API key (`Authorization: Bearer csk_…`); SSO arrives as a
//! further way to produce the same `Principal`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use authz::Subject;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use identity::Role;
use identity::admin::api_keys::{self, PresentedKey};
use store::TenantId;
use uuid::Uuid;

use crate::plumbing::cookies::{self, ACCESS_COOKIE};
use crate::plumbing::ip_allowlist::{self, Subject as Refused};
use crate::plumbing::refusals::Refusal;
use crate::plumbing::session_cache;
use crate::{ApiError, AppState, ClientContext};

/// An authenticated caller, bound to one organisation: who they are ([`Caller`]), the role they
/// act in, and what every audited write of this request records ([`Principal::who`]).
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: TenantId,
    pub role: Role,
    pub caller: Caller,
    /// The actor and request origin every audited write of this request records.
    pub who: audit::Who,
    /// Whether this request's authorisation decision was taken (see `crate::plumbing::guard`).
    pub checked: Checked,
    /// On an organisation-level route, the policy engine's permit the guard obtained: the
    /// identity writes that route makes require it ([`Principal::permit`]).
    pub(crate) permit: Option<authz::Permit>,
    /// A person whose organisation requires a second factor and who has no authenticator app
    /// yet (and did not bring the identity provider's): the organisation's pages send them to
    /// its setup first (`crate::plumbing::guard`).
    pub(crate) enrolment_due: bool,
}

/// The two kinds of caller: a person in a session, or an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A signed-in person: their session (access token by cookie or bearer).
    Person(Person),
    /// An API key, limited to its scopes; it has no session and is no person.
    ApiKey { id: Uuid, scopes: Vec<String> },
}

/// A signed-in person and the session they act in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Person {
    pub user: Uuid,
    pub session: Uuid,
}

/// Whether the request's authorisation decision was taken (shared by the guard and handler).
#[derive(Debug, Clone, Default)]
pub struct Checked(Arc<AtomicBool>);

impl Checked {
    pub fn mark(&self) {
        self.0.store(true, Ordering::Release);
    }

    #[must_use]
    pub fn is_marked(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Principal {
    fn new(tenant: TenantId, role: Role, caller: Caller, ctx: &ClientContext) -> Self {
        let actor = match &caller {
            Caller::Person(p) => audit::Actor::user(p.user, Some(role.as_str())),
            Caller::ApiKey { id, .. } => audit::Actor::api_key(*id, Some(role.as_str())),
        };
        Self {
            tenant,
            role,
            caller,
            who: audit::Who::new(actor, ctx.origin()),
            checked: Checked::default(),
            permit: None,
            enrolment_due: false,
        }
    }

    /// The person calling, if it is one (API keys are not).
    #[must_use]
    pub fn person(&self) -> Option<Person> {
        match self.caller {
            Caller::Person(p) => Some(p),
            Caller::ApiKey { .. } => None,
        }
    }

    /// People act with their role; API keys are limited to their scopes as well.
    #[must_use]
    pub fn has_scope(&self, scope: &str) -> bool {
        match &self.caller {
            Caller::Person(_) => true,
            Caller::ApiKey { scopes, .. } => scopes.iter().any(|s| s == scope),
        }
    }

    /// The caller as the policy engine sees them (API keys act under their own id and role).
    #[must_use]
    pub fn subject(&self) -> Subject {
        let id = match &self.caller {
            Caller::Person(p) => p.user,
            Caller::ApiKey { id, .. } => *id,
        };
        Subject { tenant: self.tenant.as_uuid(), user: id, role: self.role, department: None }
    }

    /// The permit of this organisation-level route's decision, for the identity write it makes.
    ///
    /// # Errors
    /// 500 `authorisation_missing` on a route whose guard took no organisation-level decision
    /// (a handler registered under the wrong guard): it fails closed.
    pub fn permit(&self) -> Result<&authz::Permit, ApiError> {
        self.permit.as_ref().ok_or_else(|| {
            tracing::error!("an organisation-level write on a route without an organisation-level decision; refused");
            ApiError::authorisation_missing("this route made a change without an authorisation decision")
        })
    }

    /// Writes the organisation and the caller's id on the request's span (declared empty where
    /// the span is made, `crate::router::with_middleware`), so every log line of the request
    /// carries them. Ids only: never an email, token or body.
    fn record_on_span(&self) {
        let span = tracing::Span::current();
        span.record("tenant_id", tracing::field::display(self.tenant));
        match &self.caller {
            Caller::Person(p) => span.record("user_id", tracing::field::display(p.user)),
            Caller::ApiKey { id, .. } => span.record("api_key_id", tracing::field::display(id)),
        };
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    /// The caller the route's guard authenticated (every route with a credential has one).
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Self>() {
            Some(p) => Ok(p.clone()),
            None => Self::authenticate(parts, state).await,
        }
    }
}

impl Principal {
    /// Checks the request's credential: an API key or access token in `Authorization`, else the
    /// access-token cookie (with the CSRF double submit on unsafe methods). A request that
    /// presents one first reserves an attempt of its address's failed-credential budget
    /// ([`crate::plumbing::limits::FailureLimiter`]): past the budget it is answered 429 `rate_limited`
    /// before any database work; a good credential gives the attempt back.
    ///
    /// # Errors
    /// 401 without a valid credential; 429 past the budget; 403 from the organisation's IP
    /// allowlist.
    pub async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ctx = ClientContext::from_request_parts(parts, state).await?;
        let presented = parts.headers.contains_key(header::AUTHORIZATION)
            || cookies::cookie(&parts.headers, ACCESS_COOKIE).is_some();
        if !presented {
            return Err(ApiError::unauthenticated());
        }
        if let Err(wait) = state.credential_failures.reserve(ctx.ip) {
            // A forged key names its organisation: the refusal is counted there (memory only).
            if let Some(key) = bearer(parts).and_then(|t| t.parse::<PresentedKey>().ok()) {
                state.refusals.record(&state.store, key.tenant, REJECTED, ctx.ip, Refusal::RateLimited).await;
            }
            return Err(crate::plumbing::limits::credential_rate_limited(ctx.ip, wait));
        }
        let result = Self::check_credential(parts, state, &ctx).await;
        if !matches!(&result, Err(e) if e.status == axum::http::StatusCode::UNAUTHORIZED) {
            state.credential_failures.refund(ctx.ip);
        }
        if let Ok(p) = &result {
            p.record_on_span();
        }
        result
    }

    async fn check_credential(parts: &mut Parts, state: &AppState, ctx: &ClientContext) -> Result<Self, ApiError> {
        let Some(token) = bearer(parts) else {
            if parts.headers.contains_key(header::AUTHORIZATION) {
                return Err(ApiError::unauthenticated());
            }
            // Browsers: the access token cookie, with the CSRF double-submit on unsafe methods.
            let token = cookies::cookie(&parts.headers, ACCESS_COOKIE).ok_or_else(ApiError::unauthenticated)?;
            if !parts.method.is_safe() {
                cookies::require_csrf_of(&parts.headers, parts.extensions.get::<cookies::FormToken>())?;
            }
            return from_access_token(state, &token, ctx).await;
        };
        if token.starts_with("eyJ") {
            return from_access_token(state, &token, ctx).await;
        }
        let key: PresentedKey = token.parse().map_err(|_| ApiError::unauthenticated())?;
        ip_allowlist::enforce(state, key.tenant, ctx, Refused::ApiKey(key.id)).await?;
        let mut tx = state.store.tenant_tx(key.tenant).await?;
        match api_keys::authenticate(&mut tx, &key).await {
            Ok(p) => {
                tx.commit().await?;
                Ok(Self::new(p.tenant, p.role, Caller::ApiKey { id: p.key_id, scopes: p.scopes }, ctx))
            }
            Err(identity::IdentityError::Unauthenticated) => {
                drop(tx);
                rejected(state, &key, ctx).await;
                Err(ApiError::unauthenticated())
            }
            Err(e) => Err(e.into()),
        }
    }
}

const REJECTED: &str = "auth.api_key_rejected";

/// The bearer token of the `Authorization` header, if it carries one.
fn bearer(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_owned())
}

/// An access token is checked twice: its signature and expiry, then its session (cache, else
/// the database) — so a revoked session stops working before the token expires.
async fn from_access_token(state: &AppState, token: &str, ctx: &ClientContext) -> Result<Principal, ApiError> {
    let claims = state.auth.key.verify(token, chrono::Utc::now().timestamp()).ok_or_else(ApiError::unauthenticated)?;
    let tenant = TenantId::from_uuid(claims.tid).map_err(|_| ApiError::unauthenticated())?;
    ip_allowlist::enforce(state, tenant, ctx, Refused::User(claims.sub)).await?;
    let entry = match state.sessions.get(claims.sid) {
        // Only the few people still due are asked again on every request: once their app is
        // on, no node's cached answer sends them back to the setup.
        Some(mut e) if e.enrolment_due => {
            let mut g = state.store.global_tx().await?;
            e.enrolment_due = identity::signin::mfa::enrolment_due(&mut g, e.user).await?;
            g.commit().await?;
            e
        }
        Some(e) => e,
        None => {
            let generation = state.sessions.generation();
            let mut tx = state.store.tenant_tx(tenant).await?;
            let live = identity::signin::sessions::check(&mut tx, claims.sid).await?;
            tx.commit().await?;
            let live = live.ok_or_else(ApiError::unauthenticated)?;
            let enrolment_due = if live.factor_required {
                let mut g = state.store.global_tx().await?;
                let due = identity::signin::mfa::enrolment_due(&mut g, live.user_id).await?;
                g.commit().await?;
                due
            } else {
                false
            };
            let e = session_cache::Entry {
                tenant: claims.tid,
                user: live.user_id,
                role: live.role,
                valid_until: live.valid_until,
                enrolment_due,
            };
            state.sessions.insert(generation, claims.sid, e.clone());
            e
        }
    };
    if entry.tenant != claims.tid || entry.user != claims.sub || entry.role.as_str() != claims.role {
        return Err(ApiError::unauthenticated());
    }
    let person = Person { user: entry.user, session: claims.sid };
    let mut p = Principal::new(tenant, entry.role, Caller::Person(person), ctx);
    p.enrolment_due = entry.enrolment_due;
    Ok(p)
}

/// Records a refused key in the organisation it names (aggregated: [`crate::plumbing::refusals`]); a key
/// for no organisation leaves only a log line.
async fn rejected(state: &AppState, key: &PresentedKey, ctx: &ClientContext) {
    tracing::info!(tenant = %key.tenant, key_id = %key.id, ip = %ctx.ip, "api key rejected");
    let event = match audit::Entity::of("api_key", key.id)
        .and_then(|entity| audit::Event::new(REJECTED, entity, audit::Changes::none()))
    {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = ?e, "could not describe a rejected api key");
            return;
        }
    };
    let who = audit::Who::new(audit::Actor::system("web:auth"), ctx.origin());
    let refusal = Refusal::Checked(Box::new((who, event)));
    state.refusals.record(&state.store, key.tenant, REJECTED, ctx.ip, refusal).await;
}
