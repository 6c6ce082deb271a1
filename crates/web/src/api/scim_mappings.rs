//! `/api/v1/settings/scim-group-mappings`: owners and admins say which identity-provider group
//! gives its people a role and/or a department (`Guard::Org(settings.manage)`), over
//! `identity::admin::scim::mappings`. Never owner (403 `role_not_mappable`); applied at once to the
//! people already in the group, and from then on as people join and leave it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use identity::admin::scim::mappings::{self, NewMapping};
use serde::Serialize;

use crate::plumbing::access::{json, path_id};
use crate::{ApiError, AppState, Principal};

/// `GET /api/v1/settings/scim-group-mappings` → {items: [...]}, oldest (strongest) first
pub async fn list(State(state): State<AppState>, p: Principal) -> Result<Json<impl Serialize>, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let all = mappings::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(crate::plumbing::access::ListPage::all(all)))
}

/// `POST /api/v1/settings/scim-group-mappings` {match_on, group, role?, department?} → 201
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: NewMapping = json(&body)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let made = mappings::create(&mut tx, &p.who, p.permit()?, p.role, &req).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(made)).into_response())
}

/// `DELETE /api/v1/settings/scim-group-mappings/{id}` → 204; another organisation's is 404.
pub async fn delete(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    mappings::remove(&mut tx, &p.who, p.permit()?, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
