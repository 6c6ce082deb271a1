//! `/api/v1/me…`: a signed-in user looks at and manages their own account in this organisation.
//! Only the caller's own sessions are visible or revocable: anyone else's session id is 404.
//!
//! Password change answers 204 and ends every session of the user, this one included (the epoch
//! is bumped): the client signs in again with the new password. One rule, no exceptions: after a
//! password change, every live session was created with the new password.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use identity::revocation::Revocation;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::plumbing::access::{bounded, json, path_id, require_person};
use crate::plumbing::auth::Person;
use crate::{ApiError, AppState, Principal};

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct MeUser {
    id: Uuid,
    email: String,
    display_name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct MeOrg {
    id: Uuid,
    slug: String,
    name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Me {
    user: MeUser,
    organisation: MeOrg,
    role: identity::Role,
    /// The departments the caller's membership belongs to (empty when none).
    departments: Vec<crate::api::departments::DepartmentView>,
    session_id: Uuid,
}

/// `GET /api/v1/me`
pub async fn me(State(state): State<AppState>, p: Principal) -> Result<Json<impl Serialize>, ApiError> {
    let Person { user, session } = require_person(&p)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let u = identity::directory::users::get_member(&mut tx, user).await?;
    let t = identity::directory::tenants::current(&mut tx).await?;
    let departments = identity::directory::departments::of_user(&mut tx, user).await?;
    tx.commit().await?;
    Ok(Json(Me {
        departments: departments.into_iter().map(Into::into).collect(),
        user: MeUser { id: u.id, email: u.email, display_name: u.display_name },
        organisation: MeOrg { id: t.id.as_uuid(), slug: t.slug, name: t.name },
        role: p.role,
        session_id: session,
    }))
}

/// `GET /api/v1/me/sessions`: the caller's live sessions in this organisation.
pub async fn sessions(State(state): State<AppState>, p: Principal) -> Result<Json<impl Serialize>, ApiError> {
    let Person { user, session } = require_person(&p)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let items = identity::admin::members::sessions_of(&mut tx, user, Some(session)).await?;
    tx.commit().await?;
    Ok(Json(crate::plumbing::access::ListPage::all(items)))
}

/// `DELETE /api/v1/me/sessions/{id}`: 204; a session that is not the caller's (or not live) 404.
pub async fn revoke_session(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = require_person(&p)?.user;
    let id = path_id(&id)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    identity::admin::members::revoke_own_session(&mut tx, &p.who, user, id).await?;
    tx.commit().await?;
    state.sessions.apply(&Revocation { tenant: Some(p.tenant.as_uuid()), user: None, session: Some(id) });
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// `POST /api/v1/me/password` {current_password, new_password} → 204 (sign in again).
/// Wrong current password: 403 `wrong_password` (counts toward lockout); weak new one: 422
/// `weak_password`.
pub async fn change_password(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let user = require_person(&p)?.user;
    let req: PasswordChange = json(&body)?;
    bounded("current_password", &req.current_password, 1024)?;
    bounded("new_password", &req.new_password, 1024)?;
    let org = {
        let mut tx = state.store.tenant_tx(p.tenant).await?;
        let t = identity::directory::tenants::current(&mut tx).await?;
        tx.commit().await?;
        t
    };
    identity::signin::account::change_password(
        &state.store,
        &p.who,
        &state.auth,
        user,
        &SecretString::from(req.current_password),
        &SecretString::from(req.new_password),
        &[&org.name, &org.slug],
    )
    .await?;
    // The epoch bump's NOTIFY reaches every node; drop this node's entries at once.
    state.sessions.apply(&Revocation { tenant: None, user: Some(user), session: None });
    Ok(StatusCode::NO_CONTENT.into_response())
}
