//! An organisation's OpenID Connect provider, over HTTP: `GET|PUT /api/v1/settings/oidc` and
//! `POST /api/v1/settings/oidc/test` (owner, admin: `SettingsManage`). The rules are
//! `identity::signin::oidc_config::put`'s; the client secret is write-only (never answered).
//! A test that reaches no provider is a test's outcome, not the server's failure: it answers
//! 200 with `ok: false` and what failed.

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

/// The outcome of "test connection": `ok` and what the issuer's discovery document says, or
/// `ok: false` and what failed (`error`, in words; `code`, stable).
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct ConnectionTest {
    pub ok: bool,
    /// Set when `ok` is false: `oidc_provider_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_keys: Option<usize>,
}

/// Tests the organisation's configured provider now (the API's and the settings page's
/// "test connection"). `Ok(None)` when the organisation has no provider.
pub(crate) async fn run_test(state: &AppState, p: &Principal) -> Result<Option<ConnectionTest>, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let config = oidc_config::get(&mut tx).await?;
    tx.commit().await?;
    let Some(config) = config else { return Ok(None) };
    Ok(Some(match state.sso.test_connection(&config.issuer).await {
        Ok(found) => ConnectionTest {
            ok: true,
            issuer: Some(found.issuer),
            authorization_endpoint: Some(found.authorization_endpoint),
            token_endpoint: found.token_endpoint,
            userinfo_endpoint: found.userinfo_endpoint,
            signing_keys: Some(found.signing_keys),
            ..ConnectionTest::default()
        },
        Err(IdentityError::Forbidden { code, reason }) => {
            ConnectionTest { ok: false, code: Some(code.to_owned()), error: Some(reason), ..ConnectionTest::default() }
        }
        Err(e) => return Err(e.into()),
    }))
}

/// `POST /api/v1/settings/oidc/test` → 200 with the test's outcome: `ok` and what the configured
/// issuer's discovery document says now (its issuer must equal the configured one), or `ok: false`
/// with what failed; 404 `oidc_not_configured` when there is nothing to test.
pub async fn test(State(state): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    let outcome = run_test(&state, &p).await?.ok_or_else(not_configured)?;
    Ok((StatusCode::OK, Json(outcome)).into_response())
}
