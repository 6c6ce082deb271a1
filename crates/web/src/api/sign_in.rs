//! How every way of signing in answers (password, email code, second factor, refresh): the new
//! session's tokens — as cookies (browsers, `crate::plumbing::cookies`) or in the body (API
//! clients) — or the challenge for a second factor.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use identity::Role;
use identity::signin::mfa::{self, Challenge, Factors, LoginOutcome};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::plumbing::cookies;
use crate::{ApiError, AppState};

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

/// The answer to a new session: its ids, and its tokens as `delivery` says.
pub(crate) fn issued_response(
    state: &AppState,
    issued: identity::signin::sessions::Issued,
    delivery: Delivery,
) -> Response {
    let in_body = delivery == Delivery::Body;
    let body = TokenResponse {
        session_id: issued.session_id,
        user_id: issued.user_id,
        organisation_id: issued.tenant.as_uuid(),
        role: issued.role,
        token_type: "Bearer",
        expires_in: issued.access_expires_in,
        access_token: in_body.then(|| issued.access_token.clone()),
        refresh_token: in_body.then(|| issued.refresh_token.expose_secret().to_owned()),
    };
    let mut r = (StatusCode::OK, Json(body)).into_response();
    if delivery == Delivery::Cookie {
        cookies::set_session(&mut r, &issued, state.secure_cookies);
    }
    r
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct MfaRequired<'a> {
    mfa_required: bool,
    mfa_token: &'a str,
    methods: &'a [mfa::Method],
    expires_in: i64,
}

fn challenge_response(c: &Challenge) -> Response {
    let body = MfaRequired {
        mfa_required: true,
        mfa_token: c.token.expose_secret(),
        methods: &c.methods,
        expires_in: c.expires_in,
    };
    (StatusCode::OK, Json(body)).into_response()
}

/// Answers a finished first factor: tokens, or the challenge for a second factor.
pub(crate) fn outcome_response(state: &AppState, outcome: LoginOutcome, delivery: Delivery) -> Response {
    match outcome {
        LoginOutcome::Issued(issued) => issued_response(state, issued, delivery),
        LoginOutcome::MfaRequired(c) => challenge_response(&c),
    }
}

/// What the second-factor steps need from the server: the sealing keys and the mailer.
pub(crate) fn factors(state: &AppState) -> Factors<'_> {
    Factors { keys: &state.mfa_keys, mailer: &state.mailer }
}

/// The organisation a sign-in names (by slug or name), if it exists.
pub(crate) async fn resolve(state: &AppState, organisation: &str) -> Result<Option<store::TenantId>, ApiError> {
    Ok(state.store.resolve_tenant(organisation.trim()).await?)
}

/// The organisation a single sign-on start names, and whether it exists: for an unknown or
/// malformed name, this process's decoy instead — a random tenant id no organisation has, the same
/// one for every such request — so the rest of the start (the allowlist, cached per tenant like any
/// organisation's; the provider configuration read in a tenant transaction) does the same work for
/// it as for an organisation without single sign-on, and answers the same. No organisation-exists
/// oracle by content or by time.
pub(crate) async fn resolve_or_decoy(
    state: &AppState,
    organisation: &str,
) -> Result<(store::TenantId, bool), ApiError> {
    static DECOY: std::sync::OnceLock<store::TenantId> = std::sync::OnceLock::new();
    let named = if identity::Slug::parse(organisation).is_ok() { resolve(state, organisation).await? } else { None };
    Ok(match named {
        Some(tenant) => (tenant, true),
        None => (*DECOY.get_or_init(store::TenantId::new_random), false),
    })
}
