//! `/api/v1/members…`: owners and admins administer the organisation's members; auditors (and API
//! keys with `members:read`) may read the lists. A user id of another organisation is 404 on
//! every route (the lookup runs under this organisation's RLS). Every response that revokes
//! sessions reports `{revoked, elapsed_ms}`; revocation reaches every node through NOTIFY.

use std::time::Instant;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use identity::revocation::Revocation;
use identity::{MembershipStatus, Role};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::plumbing::access::{ListPage, json, path_id, reason};
use crate::{ApiError, AppState, Principal};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    status: Option<String>,
    cursor: Option<String>,
    /// 1-200, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

/// `GET /api/v1/members?status=&cursor=&limit=` (1-200, default 50). The cursor is opaque: pass
/// `next_cursor` back.
pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<impl Serialize>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", e.body_text()))?;
    let status = q.status.as_deref().map(str::parse::<MembershipStatus>).transpose()?;
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| {
            Uuid::try_parse(c)
                .map_err(|_| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_cursor", "bad cursor"))
        })
        .transpose()?;
    let limit = crate::plumbing::access::limit(q.limit.as_deref())?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let items = identity::admin::members::page(&mut tx, status, cursor, limit).await?;
    tx.commit().await?;
    let next_cursor =
        (items.len() as i64 == limit).then(|| items.last().map(|m| m.membership_id.to_string())).flatten();
    Ok(Json(ListPage { items, next_cursor }))
}

/// `GET /api/v1/members/{user_id}/sessions`
pub async fn sessions(
    State(state): State<AppState>,
    p: Principal,
    Path(user): Path<String>,
) -> Result<Json<impl Serialize>, ApiError> {
    let user = path_id(&user)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    identity::admin::members::lock(&mut tx, user).await?;
    let items = identity::admin::members::sessions_of(&mut tx, user, p.person().map(|me| me.session)).await?;
    tx.commit().await?;
    Ok(Json(ListPage::all(items)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MemberReasonBody)]
pub(crate) struct ReasonBody {
    reason: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = MemberSessionsRevoked)]
pub(crate) struct Revoked {
    revoked: u64,
    elapsed_ms: f64,
}

fn revoked(n: u64, started: Instant) -> Json<Revoked> {
    Json(Revoked { revoked: n, elapsed_ms: started.elapsed().as_secs_f64() * 1000.0 })
}

fn forget(state: &AppState, p: &Principal, user: Uuid) {
    state.sessions.apply(&Revocation { tenant: Some(p.tenant.as_uuid()), user: Some(user), session: None });
}

/// `POST /api/v1/members/{user_id}/sessions/revoke` {reason} → {revoked, elapsed_ms}
pub async fn revoke_sessions(
    State(state): State<AppState>,
    p: Principal,
    Path(user): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<impl Serialize>, ApiError> {
    let user = path_id(&user)?;
    let req: ReasonBody = json(&body)?;
    let why = reason(req.reason.as_deref())?;
    let started = Instant::now();
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let n = identity::admin::members::revoke_sessions(&mut tx, &p.who, p.permit()?, Some(user), why).await?;
    tx.commit().await?;
    forget(&state, &p, user);
    Ok(revoked(n, started))
}

/// `POST /api/v1/members/{user_id}/deactivate` {reason} → {revoked, elapsed_ms}. Suspends the
/// membership here (the global account is untouched) and revokes the member's sessions here.
pub async fn deactivate(
    State(state): State<AppState>,
    p: Principal,
    Path(user): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<impl Serialize>, ApiError> {
    let user = path_id(&user)?;
    let req: ReasonBody = json(&body)?;
    let why = reason(req.reason.as_deref())?;
    let started = Instant::now();
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let n = identity::admin::members::deactivate(&mut tx, &p.who, p.permit()?, p.role, user, why).await?;
    tx.commit().await?;
    forget(&state, &p, user);
    Ok(revoked(n, started))
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = MemberStatus)]
pub(crate) struct Status {
    user_id: Uuid,
    status: MembershipStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
}

/// `POST /api/v1/members/{user_id}/reactivate` {reason} → {user_id, status}
pub async fn reactivate(
    State(state): State<AppState>,
    p: Principal,
    Path(user): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<impl Serialize>, ApiError> {
    let user = path_id(&user)?;
    let req: ReasonBody = json(&body)?;
    let why = reason(req.reason.as_deref())?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    identity::admin::members::reactivate(&mut tx, &p.who, p.permit()?, p.role, user, why).await?;
    tx.commit().await?;
    Ok(Json(Status { user_id: user, status: MembershipStatus::Active, role: None }))
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = MemberUnlocked)]
pub(crate) struct Unlocked {
    user_id: Uuid,
    was_locked: bool,
}

/// `POST /api/v1/members/{user_id}/unlock` → {user_id, was_locked}. Only for members of the
/// caller's organisation; audited in the organisation and on the platform chain (by identity).
pub async fn unlock(
    State(state): State<AppState>,
    p: Principal,
    Path(user): Path<String>,
) -> Result<Json<impl Serialize>, ApiError> {
    let user = path_id(&user)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let mut g = state.store.global_tx().await?;
    let was_locked = identity::admin::members::unlock(&mut tx, &mut g, &p.who, p.permit()?, p.role, user).await?;
    g.commit().await?;
    tx.commit().await?;
    Ok(Json(Unlocked { user_id: user, was_locked }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MemberRoleBody)]
pub(crate) struct RoleBody {
    role: String,
    reason: Option<String>,
    #[serde(default)]
    department_id: Option<Uuid>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = MemberRoleChanged)]
pub(crate) struct RoleChanged {
    user_id: Uuid,
    role: Role,
    previous_role: Role,
    revoked: u64,
    elapsed_ms: f64,
}

/// `PUT /api/v1/members/{user_id}/role` {role, reason (3-200), department_id?}
/// → {user_id, role, previous_role, revoked, elapsed_ms}
pub async fn change_role(
    State(state): State<AppState>,
    p: Principal,
    Path(user): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<impl Serialize>, ApiError> {
    let user = path_id(&user)?;
    let req: RoleBody = json(&body)?;
    let why = reason(req.reason.as_deref())?;
    let role: Role = req.role.parse()?;
    let to = identity::admin::members::Assignment { role, department: req.department_id };
    let started = Instant::now();
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let changed = identity::admin::members::change_role(&mut tx, &p.who, p.permit()?, p.role, user, to, why).await?;
    tx.commit().await?;
    forget(&state, &p, user);
    Ok(Json(RoleChanged {
        user_id: user,
        role,
        previous_role: changed.previous,
        revoked: changed.revoked,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
    }))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MemberApproveBody)]
pub(crate) struct ApproveBody {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    department_id: Option<Uuid>,
}

/// `POST /api/v1/members/{user_id}/approve` {role?, department_id?} → {user_id, status, role}
pub async fn approve(
    State(state): State<AppState>,
    p: Principal,
    Path(user): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<impl Serialize>, ApiError> {
    let user = path_id(&user)?;
    let req: ApproveBody = if body.is_empty() { ApproveBody::default() } else { json(&body)? };
    let role = req.role.as_deref().map(str::parse::<Role>).transpose()?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let role =
        identity::admin::members::approve(&mut tx, &p.who, p.permit()?, p.role, user, role, req.department_id).await?;
    tx.commit().await?;
    Ok(Json(Status { user_id: user, status: MembershipStatus::Active, role: Some(role) }))
}

/// `POST /api/v1/members/{user_id}/decline` {reason} → {user_id, status: "ended"}
pub async fn decline(
    State(state): State<AppState>,
    p: Principal,
    Path(user): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<impl Serialize>, ApiError> {
    let user = path_id(&user)?;
    let req: ReasonBody = json(&body)?;
    let why = reason(req.reason.as_deref())?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    identity::admin::members::decline(&mut tx, &p.who, p.permit()?, user, why).await?;
    tx.commit().await?;
    Ok(Json(Status { user_id: user, status: MembershipStatus::Ended, role: None }))
}
