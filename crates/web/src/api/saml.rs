//! An organisation's SAML 2.0 identity provider, over HTTP: `GET|PUT /api/v1/settings/saml` and
//! `POST /api/v1/settings/saml/test` (owner, admin: `SettingsManage`). The rules are
//! `identity::signin::saml_config::put`'s: IdP metadata without a signing certificate is refused.
//! The answer also names this organisation's service provider (entity id, ACS, metadata URL) for
//! the IdP's administrator. As for OIDC, a test that reaches no IdP is the test's outcome: 200
//! with `ok: false` and what failed.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use identity::signin::saml_check::{self, SamlConnectionTest};
use identity::signin::saml_config::{self, NewSamlConfig, SamlConfig};

use crate::plumbing::access::json;
use crate::plumbing::client::ServedOverTls;
use crate::{ApiError, AppState, Principal};

/// This organisation's service provider, as its IdP must be told.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ServiceProvider {
    /// The SP's entity id (the audience assertions must name); also its metadata URL.
    pub entity_id: String,
    /// The assertion consumer service (HTTP-POST binding).
    pub acs_url: String,
    /// The SP metadata document (public).
    pub metadata_url: String,
}

/// The organisation's SAML settings: its IdP (absent until configured) and its SP.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SamlSettings {
    pub identity_provider: Option<SamlConfig>,
    pub service_provider: ServiceProvider,
}

pub(crate) async fn service_provider(
    state: &AppState,
    headers: &HeaderMap,
    tls: bool,
    tx: &mut store::TenantTx,
) -> Result<ServiceProvider, ApiError> {
    let slug = identity::directory::tenants::current(tx).await?.slug;
    let sp = crate::ui::saml::endpoints(state, headers, tls, &slug);
    Ok(ServiceProvider { metadata_url: sp.entity_id.clone(), entity_id: sp.entity_id, acs_url: sp.acs_url })
}

/// `GET /api/v1/settings/saml` → the IdP's settings (or `null`) and this organisation's SP.
pub async fn get(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    tls: Option<axum::Extension<ServedOverTls>>,
) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let identity_provider = saml_config::get(&mut tx).await?;
    let service_provider = service_provider(&state, &headers, tls.is_some(), &mut tx).await?;
    tx.commit().await?;
    Ok((StatusCode::OK, Json(SamlSettings { identity_provider, service_provider })).into_response())
}

/// `PUT /api/v1/settings/saml` {metadata_xml, allowed_domains, enabled?} → the settings now in
/// force; 422 naming `metadata_xml` for metadata without a signing certificate.
pub async fn put(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    tls: Option<axum::Extension<ServedOverTls>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: NewSamlConfig = json(&body)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let config = saml_config::put(&mut tx, &p.who, p.permit()?, &req).await?;
    let service_provider = service_provider(&state, &headers, tls.is_some(), &mut tx).await?;
    tx.commit().await?;
    Ok((StatusCode::OK, Json(SamlSettings { identity_provider: Some(config), service_provider })).into_response())
}

/// Tests the organisation's stored IdP now (the API's and the settings page's "test
/// connection"). `Ok(None)` when the organisation has none.
pub(crate) async fn run_test(state: &AppState, p: &Principal) -> Result<Option<SamlConnectionTest>, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let outcome = saml_check::test_connection(&state.sso, &mut tx).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// `POST /api/v1/settings/saml/test` → 200 with the test's outcome: the IdP's entity id, whether
/// its single sign-on URL answers, its signing certificates' subjects and expiry (an expired one
/// fails the test; one expiring within 30 days is a warning); 404 `saml_not_configured` when
/// there is nothing to test.
pub async fn test(State(state): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    let outcome = run_test(&state, &p).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "saml_not_configured", "this organisation has no SAML identity provider")
    })?;
    Ok((StatusCode::OK, Json(outcome)).into_response())
}
