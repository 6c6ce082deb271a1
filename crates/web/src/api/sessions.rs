//! Sign-in and sessions over HTTP: password login, refresh, logout, revoking sessions.
//!
//! Browsers get the session as cookies (`crate::plumbing::cookies`); API clients ask for
//! `"token_delivery": "body"` and send `Authorization: Bearer <access token>`.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use identity::EmailAddress;
use identity::revocation::{Revocation, Scope};
use identity::signin::sessions::PresentedRefresh;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::sign_in::{Delivery, factors, issued_response, outcome_response, resolve};
use crate::plumbing::access::json;
use crate::plumbing::cookies::{self, REFRESH_COOKIE, cookie, require_csrf};
use crate::plumbing::ip_allowlist::{self, Subject};
use crate::{ApiError, AppState, ClientContext, Principal};

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

/// `POST /api/v1/auth/login`
pub async fn login(
    State(state): State<AppState>,
    ctx: ClientContext,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: LoginRequest = json(&body)?;
    let outcome = password_login(&state, &ctx, &req.organisation, &req.email, SecretString::from(req.password)).await?;
    Ok(outcome_response(&state, outcome, req.token_delivery))
}

/// A password sign-in, whichever face asks (the API above, the sign-in page): field limits, the
/// organisation's IP allowlist before the password is looked at, then the authenticator (lockout,
/// suspicious-login checks, the second-factor challenge).
///
/// # Errors
/// 422 for malformed fields, 403 `ip_not_allowed`, 401 for wrong credentials, 429 when locked.
pub(crate) async fn password_login(
    state: &AppState,
    ctx: &ClientContext,
    organisation: &str,
    email: &str,
    password: SecretString,
) -> Result<identity::signin::mfa::LoginOutcome, ApiError> {
    use secrecy::ExposeSecret;
    if organisation.len() > 100 || email.len() > 254 || password.expose_secret().len() > 1024 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "a field is too long"));
    }
    let email = EmailAddress::parse(email)?;
    let tenant = resolve(state, organisation).await?;
    if let Some(t) = tenant {
        ip_allowlist::enforce(state, t, ctx, Subject::Login(email.as_str())).await?;
    }
    let named = identity::signin::lockout::NamedOrganisation { typed: organisation, tenant };
    Ok(state.auth.login(&state.store, factors(state), named, &email, &password, &ctx.origin()).await?)
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
    let req: RefreshRequest = if body.is_empty() { RefreshRequest::default() } else { json(&body)? };
    let (token, delivery) = match req.refresh_token {
        Some(t) => (t, Delivery::Body),
        None => {
            require_csrf(&headers)?;
            (cookie(&headers, REFRESH_COOKIE).ok_or_else(ApiError::unauthenticated)?, Delivery::Cookie)
        }
    };
    Ok(issued_response(&state, rotate(&state, &ctx, &token).await?, delivery))
}

/// Rotates a presented refresh token, whichever face asks (`refresh` above; the pages' session
/// resume, `crate::ui::resume`): the token reserves an attempt of the address's failed-credential
/// budget first (429 `rate_limited` past it, before any database work; a good one gives it
/// back), the organisation's IP allowlist is enforced for the session, then the authenticator
/// rotates within the family (a replayed token revokes the family; both audited by identity).
///
/// # Errors
/// 401 for a malformed, unknown, used or dead token; 403 `ip_not_allowed`; 429 `rate_limited`.
pub(crate) async fn rotate(
    state: &AppState,
    ctx: &ClientContext,
    token: &str,
) -> Result<identity::signin::sessions::Issued, ApiError> {
    let limited = |wait| crate::plumbing::limits::credential_rate_limited(ctx.ip, wait);
    state.credential_failures.reserve(ctx.ip).map_err(limited)?;
    let mut family = None;
    let result = async {
        let presented: PresentedRefresh = token.parse()?;
        family = Some((presented.tenant, presented.session));
        ip_allowlist::enforce(state, presented.tenant, ctx, Subject::Session(presented.session)).await?;
        Ok::<_, ApiError>(state.auth.refresh(&state.store, &presented, &ctx.origin()).await?)
    }
    .await;
    if !matches!(&result, Err(e) if e.status == StatusCode::UNAUTHORIZED) {
        state.credential_failures.refund(ctx.ip);
    }
    if let (Err(e), Some((tenant, session))) = (&result, family)
        && e.status == StatusCode::UNAUTHORIZED
    {
        // A refused refresh may have revoked its family (a replayed token): effective on this
        // node at once, as logout is, not only when our own NOTIFY comes back — an access token of
        // the family must not be served from this node's cache meanwhile. Dropping an entry that
        // is still live costs one database check, never access.
        state.sessions.apply(&Revocation { tenant: Some(tenant.as_uuid()), user: None, session: Some(session) });
    }
    result
}

/// `POST /api/v1/auth/logout`: revokes the caller's session and clears the cookies.
pub async fn logout(State(state): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    end_session(&state, &p).await?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    cookies::clear_session(&mut r);
    Ok(r)
}

/// Revokes the caller's own session (sign-out, from the API or the pages).
///
/// # Errors
/// 400 `not_a_session` for an API key.
pub(crate) async fn end_session(state: &AppState, p: &Principal) -> Result<(), ApiError> {
    let Some(person) = p.person() else {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "not_a_session", "API keys do not log out; revoke the key"));
    };
    let session = person.session;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    identity::revocation::revoke(&mut tx, &p.who, Scope::Session(session), "logout").await?;
    tx.commit().await?;
    // Effective on this node at once; other nodes hear it through NOTIFY.
    state.sessions.apply(&Revocation { tenant: Some(p.tenant.as_uuid()), user: None, session: Some(session) });
    Ok(())
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
    let req: RevokeRequest = json(&body)?;
    let reason = req.reason.trim();
    if reason.len() < 3 || reason.len() > 200 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "reason: 3-200 characters"));
    }
    let started = Instant::now();
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    // Another organisation's user is not found, not forbidden.
    let n = identity::admin::members::revoke_sessions(&mut tx, &p.who, p.permit()?, req.user_id, reason).await?;
    tx.commit().await?;
    state.sessions.apply(&Revocation { tenant: Some(p.tenant.as_uuid()), user: req.user_id, session: None });
    Ok(Json(Revoked { revoked: n, elapsed_ms: started.elapsed().as_secs_f64() * 1000.0 }).into_response())
}
