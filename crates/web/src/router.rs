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
use crate::{ApiError, api_keys_api, audit_api, health, invitations_api, me_api, members_api, session_api};

#[derive(Clone, Debug)]
pub struct AppState {
    pub store: store::Store,
    pub proxies: TrustedProxies,
    pub started: Instant,
    pub auth: Arc<identity::sessions::Authenticator>,
    pub sessions: SessionCache,
    /// Send cookies with `Secure` (off only for plain-HTTP local development).
    pub secure_cookies: bool,
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
        Ok(Self {
            store,
            proxies,
            started: Instant::now(),
            auth: Arc::new(identity::sessions::Authenticator { hasher, key }),
            sessions,
            secure_cookies: true,
        })
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
        .route("/invitations/accept", post(invitations_api::accept))
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/status", get(health::status))
        .route("/audit/events", get(audit_api::events))
        .route("/audit/export", get(audit_api::export))
        .route("/auth/login", post(session_api::login))
        .route("/auth/refresh", post(session_api::refresh))
        .route("/auth/logout", post(session_api::logout))
        .route("/sessions/revoke", post(session_api::revoke))
        .merge(members_routes());
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
