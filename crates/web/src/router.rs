//! The router and its middleware stack. Order (outermost first): request id → trace span →
//! client context → security headers → body limit → timeout → handler.

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use axum::routing::{delete, get, post, put};
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use std::sync::Arc;

use identity::tokens::TokenKey;

use crate::client::{self, TrustedProxies};
use crate::session_cache::SessionCache;
use crate::{
    ApiError, api_keys_api, audit_api, health, invitations_api, ip_allowlist, me_api, members_api, mfa_api, session_api,
};

#[derive(Clone, Debug)]
pub struct AppState {
    pub store: store::Store,
    pub proxies: TrustedProxies,
    pub started: Instant,
    pub auth: Arc<identity::sessions::Authenticator>,
    pub sessions: SessionCache,
    /// Send cookies with `Secure` (off only for plain-HTTP local development).
    pub secure_cookies: bool,
    /// Per-client-address budget of the sign-in routes.
    pub sign_in_limiter: crate::limits::SignInLimiter,
    /// Organisations' IP allowlists, cached per node and cleared by `NOTIFY`.
    pub allowlist: crate::ip_allowlist::AllowlistCache,
    /// Outgoing mail (default: the `mail_outbox` table). Set with [`AppState::with_mailer`].
    pub mailer: Arc<dyn identity::mail::Mailer>,
    /// Seals TOTP secrets at rest. Default: a key that lives only in this process; servers set
    /// the key files with [`AppState::with_mfa_keys`].
    pub mfa_keys: Arc<identity::secret_box::SecretBox>,
    /// Route `GET /api/v1/dev/outbox` (development only).
    pub dev_outbox: bool,
}

impl AppState {
    /// State for one server process; starts the revocation listener.
    ///
    /// # Errors
    /// If the password hasher cannot be prepared.
    pub fn new(store: store::Store, proxies: TrustedProxies, key: TokenKey) -> Result<Self, identity::IdentityError> {
        // Two argon2 computations at a time per node (each ~19 MiB, one core).
        let hasher = identity::passwords::Hasher::new(2)?;
        let sessions = SessionCache::default();
        sessions.spawn_listener(store.clone());
        let allowlist = crate::ip_allowlist::AllowlistCache::default();
        allowlist.spawn_listener(store.clone());
        Ok(Self {
            proxies,
            started: Instant::now(),
            auth: Arc::new(identity::sessions::Authenticator { hasher, key, policy: Default::default() }),
            sessions,
            secure_cookies: true,
            sign_in_limiter: crate::limits::SignInLimiter::default(),
            allowlist,
            mailer: Arc::new(identity::mail::OutboxMailer::new(store.clone())),
            mfa_keys: Arc::new(identity::secret_box::SecretBox::ephemeral()),
            dev_outbox: false,
            store,
        })
    }

    /// Applies configured sign-in limits (per-address budget, lockout and suspicious-login
    /// thresholds) in place of the defaults.
    #[must_use]
    pub fn with_limits(mut self, limits: crate::limits::Limits) -> Self {
        self.sign_in_limiter = crate::limits::SignInLimiter::new(limits.login);
        self.auth = Arc::new(identity::sessions::Authenticator { policy: limits.policy, ..(*self.auth).clone() });
        self
    }

    #[must_use]
    pub fn with_mailer(mut self, mailer: Arc<dyn identity::mail::Mailer>) -> Self {
        self.mailer = mailer;
        self
    }

    #[must_use]
    pub fn with_mfa_keys(mut self, keys: identity::secret_box::SecretBox) -> Self {
        self.mfa_keys = Arc::new(keys);
        self
    }

    #[must_use]
    pub fn with_dev_outbox(mut self, on: bool) -> Self {
        self.dev_outbox = on;
        self
    }
}

/// Self-service, member administration, API keys and invitations (issue 6).
fn members_routes() -> Router<AppState> {
    Router::new()
        .route("/me", get(me_api::me))
        .route("/me/sessions", get(me_api::sessions))
        .route("/me/sessions/{id}", delete(me_api::revoke_session))
        .route("/me/password", post(me_api::change_password))
        .route("/members", get(members_api::list))
        .route("/members/{user_id}/sessions", get(members_api::sessions))
        .route("/members/{user_id}/sessions/revoke", post(members_api::revoke_sessions))
        .route("/members/{user_id}/deactivate", post(members_api::deactivate))
        .route("/members/{user_id}/reactivate", post(members_api::reactivate))
        .route("/members/{user_id}/unlock", post(members_api::unlock))
        .route("/members/{user_id}/role", put(members_api::change_role))
        .route("/members/{user_id}/approve", post(members_api::approve))
        .route("/members/{user_id}/decline", post(members_api::decline))
        .route("/api-keys", post(api_keys_api::create).get(api_keys_api::list))
        .route("/api-keys/{id}", delete(api_keys_api::revoke))
        .route("/invitations", post(invitations_api::create).get(invitations_api::list))
        .route("/invitations/{id}", delete(invitations_api::revoke))
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    // Sign-in routes spend the caller's per-address budget (crate::limits) before anything else.
    let sign_in = Router::new()
        .route("/auth/login", post(session_api::login))
        .route("/auth/email-code", post(mfa_api::request_code))
        .route("/auth/email-code/verify", post(mfa_api::verify_code))
        .route("/auth/mfa", post(mfa_api::complete))
        .route("/invitations/accept", post(invitations_api::accept))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::limits::sign_in));
    let api = Router::new()
        .merge(sign_in)
        .route("/settings/ip-allowlist", get(ip_allowlist::get).put(ip_allowlist::put))
        .route("/status", get(health::status))
        .route("/audit/events", get(audit_api::events))
        .route("/audit/export", get(audit_api::export))
        .route("/auth/refresh", post(session_api::refresh))
        .route("/auth/logout", post(session_api::logout))
        .route("/sessions/revoke", post(session_api::revoke))
        .route("/me/mfa/totp", post(mfa_api::enrol).delete(mfa_api::disable))
        .route("/me/mfa/totp/confirm", post(mfa_api::confirm))
        .route("/me/mfa/recovery-codes", post(mfa_api::regenerate))
        .route("/settings/mfa", put(mfa_api::set_required))
        .merge(members_routes());
    // Reads every message, codes included: never routed unless asked for at start-up.
    let api = if state.dev_outbox { api.route("/dev/outbox", get(mfa_api::dev_outbox)) } else { api };
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .nest("/api/v1", api)
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this method is not allowed here")
        })
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id, client_ip = tracing::field::Empty)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(axum::middleware::from_fn_with_state(state.proxies.clone(), client::capture))
                .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
                .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
                .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
                .layer(SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
                .layer(RequestBodyLimitLayer::new(1024 * 1024))
                .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30))),
        )
        .with_state(state)
}
