//! The router and its middleware stack. Order (outermost first): request id → trace span →
//! client context (and HSTS) → security headers → edge (URI/header limits, content type, query
//! text, JSON shape of framework refusals) → body limit → timeout → handler.

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode, header};
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use std::sync::Arc;

use identity::tokens::TokenKey;

use crate::plumbing::client::{self, TrustedProxies};
use crate::plumbing::guard::{Guard, RouteInfo, Routes};
use crate::plumbing::session_cache::SessionCache;
use crate::ApiError;
use crate::api::{
    api_keys as api_keys_api, audit as audit_api, departments as departments_api, documents as documents_api, health,
    invitations as invitations_api, me as me_api, members as members_api, mfa as mfa_api, sessions as session_api,
};
use crate::plumbing::ip_allowlist;
use authz::Action;

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
    pub sign_in_limiter: crate::plumbing::limits::SignInLimiter,
    /// Per-client-address budget of failed credentials (API keys, access and refresh tokens).
    pub credential_failures: crate::plumbing::limits::FailureLimiter,
    /// Refusal events (`auth.api_key_rejected`, `access.denied`), aggregated per organisation,
    /// kind and address per minute; its flusher writes the counts of closed windows.
    pub refusals: crate::plumbing::refusals::RefusalLog,
    /// Organisations' IP allowlists, cached per node and cleared by `NOTIFY`.
    pub allowlist: crate::plumbing::ip_allowlist::AllowlistCache,
    /// Outgoing mail (default: the `mail_outbox` table). Set with [`AppState::with_mailer`].
    pub mailer: Arc<dyn identity::mail::Mailer>,
    /// Seals TOTP secrets at rest. Default: a key that lives only in this process; servers set
    /// the key files with [`AppState::with_mfa_keys`].
    pub mfa_keys: Arc<identity::secret_box::SecretBox>,
    /// Route `GET /api/v1/dev/outbox` (development only).
    pub dev_outbox: bool,
    /// The mailer is the default outbox, sealing with `mfa_keys` (re-made when they change).
    default_mailer: bool,
    /// The policy engine (Cedar policies compiled into the binary, validated at start-up).
    pub authz: Arc<authz::Engine>,
}

impl AppState {
    /// State for one server process; starts the revocation listener.
    ///
    /// # Errors
    /// If the password hasher cannot be prepared.
    pub fn new(store: store::Store, proxies: TrustedProxies, key: TokenKey) -> Result<Self, identity::IdentityError> {
        // Two argon2 computations at a time per node (each ~19 MiB, one core).
        let hasher = identity::passwords::Hasher::new(identity::passwords::SERVER_THREADS)?;
        let sessions = SessionCache::default();
        sessions.spawn_listener(store.clone());
        let authz = authz::Engine::load().map_err(|e| identity::IdentityError::Internal(e.to_string()))?;
        let allowlist = crate::plumbing::ip_allowlist::AllowlistCache::default();
        allowlist.spawn_listener(store.clone());
        let refusals = crate::plumbing::refusals::RefusalLog::default();
        refusals.spawn_flusher(store.clone());
        let mfa_keys = Arc::new(identity::secret_box::SecretBox::ephemeral());
        Ok(Self {
            proxies,
            started: Instant::now(),
            auth: Arc::new(identity::sessions::Authenticator { hasher, key, policy: Default::default() }),
            sessions,
            secure_cookies: true,
            sign_in_limiter: crate::plumbing::limits::SignInLimiter::default(),
            credential_failures: crate::plumbing::limits::FailureLimiter::default(),
            refusals,
            allowlist,
            mailer: Arc::new(identity::mail::OutboxMailer::new(store.clone(), mfa_keys.clone())),
            mfa_keys,
            dev_outbox: false,
            default_mailer: true,
            authz: Arc::new(authz),
            store,
        })
    }

    /// Applies configured sign-in limits (per-address budget, lockout and suspicious-login
    /// thresholds) in place of the defaults.
    #[must_use]
    pub fn with_limits(mut self, limits: crate::plumbing::limits::Limits) -> Self {
        self.sign_in_limiter = crate::plumbing::limits::SignInLimiter::new(limits.login);
        self.credential_failures = crate::plumbing::limits::FailureLimiter::new(limits.credential_failures);
        self.auth = Arc::new(identity::sessions::Authenticator { policy: limits.policy, ..(*self.auth).clone() });
        self
    }

    #[must_use]
    pub fn with_mailer(mut self, mailer: Arc<dyn identity::mail::Mailer>) -> Self {
        self.mailer = mailer;
        self.default_mailer = false;
        self
    }

    /// The MFA keys; they also seal the default outbox (which `dev_outbox` opens with them).
    #[must_use]
    pub fn with_mfa_keys(mut self, keys: identity::secret_box::SecretBox) -> Self {
        self.mfa_keys = Arc::new(keys);
        if self.default_mailer {
            self.mailer = Arc::new(identity::mail::OutboxMailer::new(self.store.clone(), self.mfa_keys.clone()));
        }
        self
    }

    #[must_use]
    pub fn with_dev_outbox(mut self, on: bool) -> Self {
        self.dev_outbox = on;
        self
    }
}

/// Every API route with its guard (see `crate::plumbing::guard`), under `/api/v1`.
fn api_routes(r: Routes, dev_outbox: bool) -> Routes {
    use Guard::{Domain, Org, Own, Public, SignIn};
    let r = r
        .post("/auth/login", SignIn, session_api::login)
        .post("/auth/email-code", SignIn, mfa_api::request_code)
        .post("/auth/email-code/verify", SignIn, mfa_api::verify_code)
        .post("/auth/mfa", SignIn, mfa_api::complete)
        .post("/invitations/accept", SignIn, invitations_api::accept)
        .post("/auth/refresh", Public("the refresh cookie is the credential"), session_api::refresh)
        .get("/status", Public("counters only, no tenant data"), health::status)
        .get(
            "/security",
            Public("the published security claims and counters, no tenant data"),
            crate::api::security::security,
        )
        .post("/auth/logout", Own, session_api::logout)
        .get("/settings/ip-allowlist", Org(Action::SettingsManage), ip_allowlist::get)
        .put("/settings/ip-allowlist", Org(Action::SettingsManage), ip_allowlist::put)
        .get("/settings/mfa", Org(Action::SettingsManage), mfa_api::get_required)
        .put("/settings/mfa", Org(Action::SettingsManage), mfa_api::set_required)
        .get("/settings/approvals", Domain(&[Action::SettingsManage]), documents_api::get_thresholds)
        .put("/settings/approvals", Domain(&[Action::SettingsManage]), documents_api::set_threshold)
        .get("/audit/events", Org(Action::AuditRead), audit_api::events)
        .get("/audit/export", Org(Action::AuditRead), audit_api::export)
        .post("/sessions/revoke", Org(Action::MembersManage), session_api::revoke)
        .post("/me/mfa/totp", Own, mfa_api::enrol)
        .delete("/me/mfa/totp", Own, mfa_api::disable)
        .post("/me/mfa/totp/confirm", Own, mfa_api::confirm)
        .post("/me/mfa/recovery-codes", Own, mfa_api::regenerate)
        .get("/me", Own, me_api::me)
        .get("/me/sessions", Own, me_api::sessions)
        .delete("/me/sessions/{id}", Own, me_api::revoke_session)
        .post("/me/password", Own, me_api::change_password)
        .get("/departments", Org(Action::DepartmentsRead), departments_api::list)
        .get("/members", Org(Action::MembersRead), members_api::list)
        .get("/members/{user_id}/sessions", Org(Action::MembersRead), members_api::sessions)
        .post("/members/{user_id}/sessions/revoke", Org(Action::MembersManage), members_api::revoke_sessions)
        .post("/members/{user_id}/deactivate", Org(Action::MembersManage), members_api::deactivate)
        .post("/members/{user_id}/reactivate", Org(Action::MembersManage), members_api::reactivate)
        .post("/members/{user_id}/unlock", Org(Action::MembersManage), members_api::unlock)
        .put("/members/{user_id}/role", Org(Action::MembersManage), members_api::change_role)
        .post("/members/{user_id}/approve", Org(Action::MembersManage), members_api::approve)
        .post("/members/{user_id}/decline", Org(Action::MembersManage), members_api::decline)
        .post("/api-keys", Org(Action::ApiKeysManage), api_keys_api::create)
        .get("/api-keys", Org(Action::ApiKeysManage), api_keys_api::list)
        .delete("/api-keys/{id}", Org(Action::ApiKeysManage), api_keys_api::revoke)
        .post("/invitations", Org(Action::MembersManage), invitations_api::create)
        .get("/invitations", Org(Action::MembersRead), invitations_api::list)
        .delete("/invitations/{id}", Org(Action::MembersManage), invitations_api::revoke)
        .post("/documents", Domain(&[Action::DocumentCreate]), documents_api::create)
        .get("/documents", Domain(&[Action::DocumentRead]), documents_api::list)
        .get("/documents/{id}", Domain(&[Action::DocumentRead]), documents_api::get)
        .add(axum::http::Method::PATCH, "/documents/{id}", Domain(&[Action::DocumentEdit]), documents_api::edit)
        .post("/documents/{id}/transitions", Domain(documents_api::TRANSITION_ACTIONS), documents_api::transition)
        .post("/documents/bulk-approve", Domain(&[Action::DocumentApprove]), documents_api::bulk_approve)
        .get("/periods", Domain(&[Action::PeriodRead]), documents_api::periods)
        .post("/periods", Domain(&[Action::PeriodOpen]), documents_api::open_period)
        .get("/periods/{id}", Domain(&[Action::PeriodRead]), documents_api::get_period)
        .post("/periods/{id}/close", Domain(&[Action::PeriodClose]), documents_api::close_period)
        .post("/periods/{id}/reopen", Domain(&[Action::PeriodReopen]), documents_api::reopen_period);
    // Reads every message, codes included: never routed unless asked for at start-up.
    if dev_outbox {
        r.get("/dev/outbox", Public("development only: routed only with --dev-outbox"), mfa_api::dev_outbox)
    } else {
        r
    }
}

/// Routes outside `/api/v1`.
fn root_routes(r: Routes) -> Routes {
    use Guard::Public;
    r.get("/healthz", Public("liveness probe"), health::healthz)
        .get("/readyz", Public("readiness probe"), health::readyz)
        .get("/metrics", Public("process counters, no tenant data"), health::metrics)
        .get("/api/openapi.json", Public("the API description"), crate::api::openapi::serve)
}

/// Every route the server answers, with its guard (tests walk this list).
#[must_use]
pub fn route_table(dev_outbox: bool) -> Vec<RouteInfo> {
    let mut t = root_routes(Routes::new(None, "")).table;
    t.extend(api_routes(Routes::new(None, "/api/v1"), dev_outbox).table);
    t
}

/// Every powerful browser feature denied to anything the API answers.
const PERMISSIONS_POLICY: &str = "accelerometer=(), autoplay=(), camera=(), clipboard-read=(), clipboard-write=(), \
display-capture=(), encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), hid=(), idle-detection=(), \
magnetometer=(), microphone=(), midi=(), payment=(), picture-in-picture=(), publickey-credentials-get=(), \
screen-wake-lock=(), serial=(), usb=(), xr-spatial-tracking=()";

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let api = api_routes(Routes::new(Some(state.clone()), "/api/v1"), state.dev_outbox).router;
    let routes = root_routes(Routes::new(Some(state.clone()), "")).router.nest("/api/v1", api);
    with_middleware(state, routes)
}

/// Wraps routes in the server's middleware stack and fallbacks (the real router uses it; tests
/// use it to serve routes of their own through the same stack).
pub fn with_middleware(state: AppState, routes: Router<AppState>) -> Router {
    routes
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
                // The API serves data, never pages: nothing may load, frame or run from it.
                .layer(SetResponseHeaderLayer::overriding(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
                ))
                .layer(SetResponseHeaderLayer::overriding(
                    HeaderName::from_static("permissions-policy"),
                    HeaderValue::from_static(PERMISSIONS_POLICY),
                ))
                .layer(axum::middleware::from_fn(crate::plumbing::edge::guard))
                .layer(RequestBodyLimitLayer::new(1024 * 1024))
                .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30))),
        )
        .with_state(state)
}
