//! `/api/v1/settings/ip-allowlist`: reading and replacing the organisation's IP allowlist (owner,
//! admin). Enforcing it is plumbing: `crate::plumbing::ip_allowlist`.

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use identity::directory::ip_allowlist::{self as list, NewEntry};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::plumbing::access::json;
use crate::{ApiError, AppState, ClientContext, Principal};

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = IpAllowlist)]
pub(crate) struct ListResponse {
    entries: Vec<list::Entry>,
    /// The address this request came from, as the server sees it (what the list must admit).
    #[schema(value_type = String)]
    your_ip: IpAddr,
    /// Whether the list restricts anything (it has at least one entry).
    enforced: bool,
}

/// `GET /api/v1/settings/ip-allowlist`
pub async fn get(State(state): State<AppState>, p: Principal, ctx: ClientContext) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let entries = list::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(ListResponse { enforced: !entries.is_empty(), entries, your_ip: ctx.ip }).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IpAllowlistEntryBody)]
pub(crate) struct EntryBody {
    cidr: String,
    #[serde(default)]
    note: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IpAllowlistBody)]
pub(crate) struct PutBody {
    entries: Vec<EntryBody>,
    reason: String,
    /// Accept a list that does not admit the caller's own address.
    #[serde(default)]
    confirm_lockout: bool,
}

/// `PUT /api/v1/settings/ip-allowlist`: replaces the list (`entries: []` lifts the restriction).
pub async fn put(
    State(state): State<AppState>,
    p: Principal,
    ctx: ClientContext,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: PutBody = json(&body)?;
    let invalid = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", m);
    if req.entries.len() > list::MAX_ENTRIES {
        return Err(invalid(format!("entries: at most {}", list::MAX_ENTRIES)));
    }
    let reason = req.reason.trim();
    if reason.len() < 3 || reason.len() > 200 {
        return Err(invalid("reason: 3-200 characters".into()));
    }
    let mut entries = Vec::with_capacity(req.entries.len());
    for e in &req.entries {
        if e.cidr.len() > 64 {
            return Err(invalid("cidr: at most 64 characters".into()));
        }
        entries.push(NewEntry::parse(&e.cidr, &e.note)?);
    }
    let nets: Vec<IpNet> = entries.iter().map(|e| e.cidr).collect();
    if !list::allows(&nets, ctx.ip) && !req.confirm_lockout {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "would_lock_out",
            format!("the list does not include your address {}; add it, or send \"confirm_lockout\": true", ctx.ip),
        ));
    }
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let stored = list::replace(&mut tx, &p.who, p.permit()?, &entries, reason).await?;
    tx.commit().await?;
    // This node at once; the others when the NOTIFY arrives (the same commit).
    state.allowlist.invalidate(Some(p.tenant.as_uuid()));
    Ok(Json(ListResponse { enforced: !stored.is_empty(), entries: stored, your_ip: ctx.ip }).into_response())
}
