//! `/api/v1/api-keys`: owners and admins mint, list and revoke the organisation's API keys.
//!
//! A key is shown once, at creation. Scopes must be ones the server enforces (422
//! `unknown_scope`); nobody mints a key stronger than themselves: not a role above their own
//! (403 `role_escalation`, so an admin cannot mint an owner key) and, for a caller that is itself
//! an API key, no scope it lacks (403 `scope_escalation`). Keys are checked against the database
//! on every request, so a revoked key is refused at once by every server.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use identity::Role;
use identity::admin::api_keys::{self, Minter, NewApiKey};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::plumbing::access::{bounded, json, path_id};
use crate::plumbing::auth::Caller;
use crate::{ApiError, AppState, Principal};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApiKeyCreateBody)]
pub(crate) struct CreateBody {
    name: String,
    role: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ApiKey)]
pub(crate) struct KeyView {
    id: Uuid,
    name: String,
    /// The non-secret start of the presented key (`csk_<tenant>_<id>`), to recognise it.
    prefix: String,
    role: String,
    scopes: Vec<String>,
    created_by: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

fn view(tenant: store::TenantId, k: api_keys::ApiKey) -> KeyView {
    KeyView {
        prefix: format!("csk_{}_{}", tenant.as_uuid().simple(), k.id.simple()),
        id: k.id,
        name: k.name,
        role: k.role,
        scopes: k.scopes,
        created_by: k.created_by,
        created_at: k.created_at,
        expires_at: k.expires_at,
        revoked_at: k.revoked_at,
        last_used_at: k.last_used_at,
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ApiKeyCreated)]
pub(crate) struct Created {
    #[serde(flatten)]
    key: KeyView,
    /// The key itself; it is not stored and cannot be shown again.
    secret: String,
}

/// `POST /api/v1/api-keys` {name, role, scopes[], expires_at?} → 201 {…, secret}
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: CreateBody = json(&body)?;
    bounded("name", &req.name, 100)?;
    let role: Role = req.role.parse()?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    // The limits (role and scope escalation, unknown scopes) are the domain's, shared with the CLI.
    let by = match &p.caller {
        Caller::Person(_) => Minter::Person { role: p.role },
        Caller::ApiKey { scopes, .. } => Minter::Key { role: p.role, scopes },
    };
    let issued = api_keys::create(
        &mut tx,
        &p.who,
        p.permit()?,
        by,
        &NewApiKey { name: req.name, role, scopes: req.scopes, expires_at: req.expires_at },
    )
    .await?;
    tx.commit().await?;
    let secret = issued.secret.expose_secret().to_owned();
    Ok((StatusCode::CREATED, Json(Created { key: view(p.tenant, issued.key), secret })).into_response())
}

/// `GET /api/v1/api-keys` → {items: [...]} (never a secret)
pub async fn list(State(state): State<AppState>, p: Principal) -> Result<Json<impl Serialize>, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let keys = api_keys::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(crate::plumbing::access::ListPage::all(keys.into_iter().map(|k| view(p.tenant, k)).collect())))
}

/// `DELETE /api/v1/api-keys/{id}` → 204; another organisation's key is 404.
pub async fn revoke(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    api_keys::revoke(&mut tx, &p.who, p.permit()?, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
