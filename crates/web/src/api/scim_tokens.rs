//! `/api/v1/settings/scim-tokens`: owners and admins mint, list and revoke the SCIM tokens their
//! identity provider provisions people with (`Guard::Org(settings.manage)`). A token is shown
//! once, at creation; a revoked one is refused by every server at once (it is checked against the
//! database on every SCIM request).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use identity::admin::scim::tokens::{self, ScimToken};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::plumbing::access::{bounded, json, path_id};
use crate::{ApiError, AppState, Principal};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ScimTokenCreateBody)]
pub(crate) struct CreateBody {
    /// What the token is for, e.g. "Okta production".
    name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ScimToken)]
pub(crate) struct TokenView {
    id: Uuid,
    name: String,
    /// The non-secret start of the presented token (`cssc_<tenant>_<id>`), to recognise it.
    prefix: String,
    created_by: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

pub(crate) fn view(tenant: store::TenantId, t: ScimToken) -> TokenView {
    TokenView {
        prefix: format!("cssc_{}_{}", tenant.as_uuid().simple(), t.id.simple()),
        id: t.id,
        name: t.name,
        created_by: t.created_by,
        created_at: t.created_at,
        revoked_at: t.revoked_at,
        last_used_at: t.last_used_at,
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ScimTokenCreated)]
pub(crate) struct Created {
    #[serde(flatten)]
    token: TokenView,
    /// The token itself (the identity provider's bearer token); it is not stored and cannot be
    /// shown again.
    secret: String,
    /// The SCIM base URL to give the identity provider, when the server knows its public URL.
    base_url: Option<String>,
}

/// `POST /api/v1/settings/scim-tokens` {name} → 201 {…, secret}
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: CreateBody = json(&body)?;
    bounded("name", &req.name, 100)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let issued = tokens::create(&mut tx, &p.who, p.permit()?, &req.name).await?;
    tx.commit().await?;
    let secret = issued.secret.expose_secret().to_owned();
    let base_url = state.public_url.as_ref().map(|u| format!("{}/scim/v2", u.trim_end_matches('/')));
    Ok((StatusCode::CREATED, Json(Created { token: view(p.tenant, issued.token), secret, base_url })).into_response())
}

/// `GET /api/v1/settings/scim-tokens` → {items: [...]} (never a secret)
pub async fn list(State(state): State<AppState>, p: Principal) -> Result<Json<impl Serialize>, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let all = tokens::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(crate::plumbing::access::ListPage::all(all.into_iter().map(|t| view(p.tenant, t)).collect())))
}

/// `DELETE /api/v1/settings/scim-tokens/{id}` → 204; another organisation's token is 404.
pub async fn revoke(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    tokens::revoke(&mut tx, &p.who, p.permit()?, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
