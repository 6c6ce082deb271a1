//! Joining by verified email domain, over HTTP: `GET|PUT /api/v1/settings/joining` (owner,
//! admin). The rules (well-formed, no public mail provider, a member already verified at the
//! domain) are `identity::directory::tenants::set_joining`'s; the page (`ui::settings`) calls the
//! same function.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use identity::JoinPolicy;
use identity::directory::tenants::{self, Joining};
use serde::{Deserialize, Serialize};

use crate::plumbing::access::json;
use crate::{ApiError, AppState, Principal};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoiningSetting {
    /// Domains whose verified addresses join (at most 20; lower-cased, duplicates dropped). Each
    /// must already be the domain of a verified address of an active member; public mail
    /// providers are refused.
    domains: Vec<String>,
    /// `auto_join`: such people become staff at once; `admin_approval`: they wait, pending,
    /// until an administrator approves them.
    policy: JoinPolicy,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct JoiningBody {
    domains: Vec<String>,
    policy: JoinPolicy,
}

impl From<Joining> for JoiningBody {
    fn from(j: Joining) -> Self {
        Self { domains: j.domains, policy: j.policy }
    }
}

/// `GET /api/v1/settings/joining` → {domains, policy}.
pub async fn get(State(state): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let j = tenants::joining(&mut tx).await?;
    tx.commit().await?;
    Ok((StatusCode::OK, Json(JoiningBody::from(j))).into_response())
}

/// `PUT /api/v1/settings/joining` {domains, policy} → the settings now in force.
pub async fn put(State(state): State<AppState>, p: Principal, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let req: JoiningSetting = json(&body)?;
    if req.domains.len() > 100 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "domains: at most 20"));
    }
    let joining = apply(&state, &p, &req.domains, req.policy).await?;
    Ok((StatusCode::OK, Json(JoiningBody::from(joining))).into_response())
}

/// Sets the organisation's joining settings in one tenant transaction (the API above and the
/// settings page) and returns what is now in force.
pub(crate) async fn apply(
    state: &AppState,
    p: &Principal,
    domains: &[String],
    policy: JoinPolicy,
) -> Result<Joining, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    tenants::set_joining(&mut tx, &p.who, p.permit()?, domains, policy).await?;
    let now = tenants::joining(&mut tx).await?;
    tx.commit().await?;
    Ok(now)
}
