//! An organisation's SAML 2.0 identity provider, over HTTP: `GET|PUT /api/v1/settings/saml`
//! (owner, admin: `SettingsManage`). The rules are `identity::signin::saml_config::put`'s: IdP
//! metadata without a signing certificate is refused. The answer also names this organisation's
//! service provider (entity id, ACS, metadata URL) for the IdP's administrator.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
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
