//! Sign-in and sessions over HTTP.
//!
//! Browsers get the access token, the refresh token and a CSRF token as cookies (`HttpOnly`
//! except the CSRF one, `Secure`, `SameSite=Strict`; the refresh cookie only travels to
//! `/api/v1/auth`); every state-changing request authenticated by cookie must echo the CSRF
//! cookie in `X-CSRF-Token`. API clients ask for `"token_delivery": "body"` and send
//! `Authorization: Bearer <access token>`.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use identity::sessions::{PresentedRefresh, Revocation, Scope};
use identity::{EmailAddress, Role};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::plumbing::auth::origin;
use crate::{ApiError, AppState, ClientContext, Principal};

pub(crate) const ACCESS_COOKIE: &str = "cs_access";
const REFRESH_COOKIE: &str = "cs_refresh";
const CSRF_COOKIE: &str = "cs_csrf";
const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name`, if the request carries it.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Double-submit check: the header must repeat the CSRF cookie (compared in constant time).
pub(crate) fn require_csrf(headers: &HeaderMap) -> Result<(), ApiError> {
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let expected = cookie(headers, CSRF_COOKIE).unwrap_or_default();
    let same = !expected.is_empty()
        && sent.len() == expected.len()
        && sent.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "csrf_failed", "missing or wrong X-CSRF-Token header"))
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    organisation: String,
    email: String,
    password: String,
    /// `cookie` (default): the tokens arrive as cookies; `body`: as `access_token` and
    /// `refresh_token` in the answer (API clients, then `Authorization: Bearer`).
    #[serde(default)]
    token_delivery: Delivery,
}

/// How a sign-in answers its tokens: `cookie` (browsers, the default) or `body` (API clients).
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Delivery {
    #[default]
    Cookie,
    Body,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TokenResponse {
    session_id: Uuid,
    user_id: Uuid,
    organisation_id: Uuid,
    role: Role,
    token_type: &'static str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    crate::plumbing::access::json(body)
}

pub(crate) fn issued_response(state: &AppState, issued: identity::sessions::Issued, delivery: Delivery) -> Response {
    let refresh = issued.refresh_token.expose_secret().to_owned();
    let body = TokenResponse {
        session_id: issued.session_id,
        user_id: issued.user_id,
        organisation_id: issued.tenant.as_uuid(),
        role: issued.role,
        token_type: "Bearer",
        expires_in: issued.access_expires_in,
        access_token: (delivery == Delivery::Body).then(|| issued.access_token.clone()),
        refresh_token: (delivery == Delivery::Body).then(|| refresh.clone()),
    };
    let mut r = (StatusCode::OK, Json(body)).into_response();
    if delivery == Delivery::Cookie {
        let mut csrf = [0u8; 32];
        rand::rng().fill_bytes(&mut csrf);
        let secure = if state.secure_cookies { "; Secure" } else { "" };
        let ttl = issued.access_expires_in;
        let days = identity::sessions::SESSION_TTL_DAYS * 86_400;
        for c in [
            format!(
                "{ACCESS_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={ttl}{secure}",
                issued.access_token
            ),
            format!("{REFRESH_COOKIE}={refresh}; Path=/api/v1/auth; HttpOnly; SameSite=Strict; Max-Age={days}{secure}"),
            format!("{CSRF_COOKIE}={}; Path=/; SameSite=Strict; Max-Age={days}{secure}", hex::encode(csrf)),
        ] {
            if let Ok(v) = HeaderValue::from_str(&c) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
        }
    }
    r
}

/// `POST /api/v1/auth/login`
pub async fn login(
    State(state): State<AppState>,
    ctx: ClientContext,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: LoginRequest = json_body(&body)?;
    if req.organisation.len() > 100 || req.email.len() > 254 || req.password.len() > 1024 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "a field is too long"));
    }
    let email = EmailAddress::parse(&req.email)?;
    let password = SecretString::from(req.password);
    let tenant = state.store.resolve_tenant(req.organisation.trim()).await?;
    if let Some(t) = tenant {
        crate::plumbing::ip_allowlist::enforce(&state, t, &ctx, crate::plumbing::ip_allowlist::Subject::Login(email.as_str())).await?;
    }
    let factors = crate::api::mfa::factors(&state);
    let named = identity::lockout::NamedOrganisation { typed: &req.organisation, tenant };
    let outcome = state.auth.login(&state.store, factors, named, &email, &password, &origin(&ctx)).await?;
    Ok(crate::api::mfa::outcome_response(&state, outcome, req.token_delivery))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshRequest {
    /// The refresh token of a `"token_delivery": "body"` sign-in: the new tokens are answered in
    /// the body too. Omitted: the `cs_refresh` cookie is used (with `X-CSRF-Token`) and the
    /// answer sets cookies.
    #[serde(default)]
    refresh_token: Option<String>,
}

/// `POST /api/v1/auth/refresh`: the refresh token from the body (API clients, answered in the
/// body) or from the cookie (browsers, CSRF-checked, answered with cookies). A presented token
/// reserves an attempt of the address's failed-credential budget first (429 `rate_limited` past
/// it, before any database work); a good one gives it back.
pub async fn refresh(
    State(state): State<AppState>,
    ctx: ClientContext,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: RefreshRequest = if body.is_empty() { RefreshRequest::default() } else { json_body(&body)? };
    let (token, delivery) = match req.refresh_token {
        Some(t) => (t, Delivery::Body),
        None => {
            require_csrf(&headers)?;
            (cookie(&headers, REFRESH_COOKIE).ok_or_else(ApiError::unauthenticated)?, Delivery::Cookie)
        }
    };
    state.credential_failures.reserve(ctx.ip).map_err(|wait| crate::plumbing::limits::credential_rate_limited(ctx.ip, wait))?;
    let result = async {
        let presented: PresentedRefresh = token.parse()?;
        let subject = crate::plumbing::ip_allowlist::Subject::Session(presented.session);
        crate::plumbing::ip_allowlist::enforce(&state, presented.tenant, &ctx, subject).await?;
        Ok::<_, ApiError>(state.auth.refresh(&state.store, &presented, &origin(&ctx)).await?)
    }
    .await;
    if !matches!(&result, Err(e) if e.status == StatusCode::UNAUTHORIZED) {
        state.credential_failures.refund(ctx.ip);
    }
    Ok(issued_response(&state, result?, delivery))
}

/// `POST /api/v1/auth/logout`: revokes the caller's session and clears the cookies.
pub async fn logout(State(state): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    let session = p.session.ok_or_else(|| {
        ApiError::new(StatusCode::BAD_REQUEST, "not_a_session", "API keys do not log out; revoke the key")
    })?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    identity::sessions::revoke(&mut tx, &p.who, Scope::Session(session), "logout").await?;
    tx.commit().await?;
    // Effective on this node at once; other nodes hear it through NOTIFY.
    state.sessions.apply(&Revocation { tenant: Some(p.tenant.as_uuid()), user: None, session: Some(session) });
    let mut r = StatusCode::NO_CONTENT.into_response();
    for name in [ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE] {
        let path = if name == REFRESH_COOKIE { "/api/v1/auth" } else { "/" };
        if let Ok(v) = HeaderValue::from_str(&format!("{name}=; Path={path}; Max-Age=0")) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(r)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRequest {
    /// One member's sessions; omitted: every session of the organisation.
    #[serde(default)]
    user_id: Option<Uuid>,
    reason: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SessionsRevoked)]
pub(crate) struct Revoked {
    revoked: u64,
    elapsed_ms: f64,
}

/// `POST /api/v1/sessions/revoke` (owner, admin): revokes one member's sessions or all of the
/// organisation's, and reports how many and how long it took.
pub async fn revoke(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: RevokeRequest = json_body(&body)?;
    let reason = req.reason.trim();
    if reason.len() < 3 || reason.len() > 200 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "reason: 3-200 characters"));
    }
    let started = Instant::now();
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    // Another organisation's user is not found, not forbidden.
    let n = identity::members::revoke_sessions(&mut tx, &p.who, p.permit()?, req.user_id, reason).await?;
    tx.commit().await?;
    state.sessions.apply(&Revocation { tenant: Some(p.tenant.as_uuid()), user: req.user_id, session: None });
    Ok(Json(Revoked { revoked: n, elapsed_ms: started.elapsed().as_secs_f64() * 1000.0 }).into_response())
}
