//! An organisation's OpenID Connect provider, over HTTP: `GET|PUT /api/v1/settings/oidc` and
//! `POST /api/v1/settings/oidc/test` (owner, admin: `SettingsManage`). The rules are
//! `identity::signin::oidc_config::put`'s; the client secret is write-only (never answered).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use identity::IdentityError;
use identity::signin::oidc_config::{self, NewOidcConfig};

use crate::plumbing::access::json;
use crate::{ApiError, AppState, Principal};

fn not_configured() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "oidc_not_configured", "this organisation has no single sign-on provider")
}

/// `GET /api/v1/settings/oidc` → the provider's settings (without the secret), or 404.
pub async fn get(State(state): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let config = oidc_config::get(&mut tx).await?;
    tx.commit().await?;
    let config = config.ok_or_else(not_configured)?;
    Ok((StatusCode::OK, Json(config)).into_response())
}

/// `PUT /api/v1/settings/oidc` {preset, issuer, client_id, client_secret?, allowed_domains, …}
/// → the settings now in force. `client_secret` may be left out to keep the stored one.
pub async fn put(State(state): State<AppState>, p: Principal, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let req: NewOidcConfig = json(&body)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let config = oidc_config::put(&mut tx, &p.who, p.permit()?, &state.mfa_keys, &req).await?;
    tx.commit().await?;
    Ok((StatusCode::OK, Json(config)).into_response())
}

/// `POST /api/v1/settings/oidc/test` → what the configured issuer's discovery document says now
/// (its issuer must equal the configured one), or `502 oidc_provider_failed` naming what failed.
pub async fn test(State(state): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let config = oidc_config::get(&mut tx).await?;
    tx.commit().await?;
    let config = config.ok_or_else(not_configured)?;
    match state.sso.test_connection(&config.issuer).await {
        Ok(found) => Ok((StatusCode::OK, Json(found)).into_response()),
        Err(IdentityError::Forbidden { code, reason }) => Err(ApiError::new(StatusCode::BAD_GATEWAY, code, reason)),
        Err(e) => Err(e.into()),
    }
}
