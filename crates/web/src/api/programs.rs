//! `/api/v1/programme/…`, `/api/v1/deals…`, `/api/v1/leads…`: partner programmes (issue 17).
//!
//! Every handler opens `Store::program_tx` with the signed-in person's own user id: the database
//! derives the partner scope from that person's membership (an API key, which is no person, gets
//! the scope `none` and sees an empty programme). No request field names a partner. Another
//! partner's (or organisation's) deal is 404, the same answer as an id that does not exist.

use ::programs::ProgramError;
use ::programs::deals::{self, Deal, Decision, NewDeal};
use ::programs::leads::{self, Lead, NewLead};
use ::programs::partners::{self, NewPartner, Partner, PartnerChange};
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use store::{ProgramScope, TenantTx};
use uuid::Uuid;

use crate::plumbing::access::{ListPage, json, limit, path_id};
use crate::{ApiError, AppState, Principal};

impl From<ProgramError> for ApiError {
    fn from(e: ProgramError) -> Self {
        match e {
            ProgramError::Invalid { field, reason } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", format!("{field}: {reason}"))
                    .with_details(serde_json::json!({ "field": field }))
            }
            ProgramError::NotFound => Self::not_found(),
            ProgramError::Forbidden { code, reason } => Self::new(StatusCode::FORBIDDEN, code, reason),
            ProgramError::Conflict { code, reason } => Self::new(StatusCode::CONFLICT, code, reason),
            ProgramError::Permit(m) => {
                tracing::error!(error = %m, "programme write with a permit for something else");
                Self::authorisation_missing("this route made a change without a matching authorisation decision")
            }
            ProgramError::Denied(d) => Self::forbidden()
                .with_details(serde_json::json!({ "action": d.action.as_str(), "forbidden_by": d.forbidden_by })),
            ProgramError::Store(s) => s.into(),
            ProgramError::Audit(a) => a.into(),
        }
    }
}

/// The signed-in person's id (nil for an API key: no membership, so the scope `none`).
fn acting_user(p: &Principal) -> Uuid {
    p.person().map_or(Uuid::nil(), |person| person.user)
}

async fn program_tx(state: &AppState, p: &Principal) -> Result<TenantTx, ApiError> {
    Ok(state.store.program_tx(p.tenant, ProgramScope::Member(acting_user(p))).await?)
}

fn query_error(e: &QueryRejection) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", e.body_text())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1-200, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

/// `GET /api/v1/programme/partners` (vendor staff).
pub async fn list_partners(State(state): State<AppState>, p: Principal) -> Result<Json<ListPage<Partner>>, ApiError> {
    let mut tx = program_tx(&state, &p).await?;
    let items = partners::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(ListPage::all(items)))
}

/// `POST /api/v1/programme/partners` → 201 the partner.
pub async fn create_partner(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let new: NewPartner = json(&body)?;
    let mut tx = program_tx(&state, &p).await?;
    let partner = partners::create(&mut tx, &p.who, p.permit()?, &new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(partner)).into_response())
}

/// `GET /api/v1/programme/partners/{id}`
pub async fn get_partner(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Partner>, ApiError> {
    let id = path_id(&id)?;
    let mut tx = program_tx(&state, &p).await?;
    let partner = partners::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(partner))
}

/// `PATCH /api/v1/programme/partners/{id}`: tier and/or status.
pub async fn update_partner(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Partner>, ApiError> {
    let id = path_id(&id)?;
    let change: PartnerChange = json(&body)?;
    let mut tx = program_tx(&state, &p).await?;
    let partner = partners::update(&mut tx, &p.who, p.permit()?, id, &change).await?;
    tx.commit().await?;
    Ok(Json(partner))
}

/// `GET /api/v1/deals`: the deals the caller may see (a partner: its own), newest first.
pub async fn list_deals(
    State(state): State<AppState>,
    p: Principal,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ListPage<Deal>>, ApiError> {
    let Query(q) = q.map_err(|e| query_error(&e))?;
    let limit = limit(q.limit.as_deref())?;
    let mut tx = program_tx(&state, &p).await?;
    let items = deals::list(&mut tx, limit).await?;
    tx.commit().await?;
    Ok(Json(ListPage::all(items)))
}

/// `POST /api/v1/deals` → 201 the registration (status `submitted` or `conflict`).
pub async fn register_deal(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let new: NewDeal = json(&body)?;
    let mut tx = program_tx(&state, &p).await?;
    let deal = deals::register(&mut tx, &p.who, p.permit()?, acting_user(&p), &new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(deal)).into_response())
}

/// `GET /api/v1/deals/{id}`: 404 for another partner's, exactly as for none.
pub async fn get_deal(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Deal>, ApiError> {
    let id = path_id(&id)?;
    let mut tx = program_tx(&state, &p).await?;
    let deal = deals::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(deal))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DealDecisionBody)]
pub(crate) struct DecisionBody {
    /// Why (3-2000 characters); recorded in the audit log.
    reason: String,
}

async fn decide(state: &AppState, p: &Principal, id: &str, body: &[u8], d: Decision) -> Result<Json<Deal>, ApiError> {
    let id = path_id(id)?;
    let req: DecisionBody = json(body)?;
    let mut tx = program_tx(state, p).await?;
    let deal = deals::decide(&mut tx, &p.who, p.permit()?, acting_user(p), id, d, &req.reason).await?;
    tx.commit().await?;
    Ok(Json(deal))
}

/// `POST /api/v1/deals/{id}/approve` (channel manager, admin, owner; never a partner).
pub async fn approve_deal(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Deal>, ApiError> {
    decide(&state, &p, &id, &body, Decision::Approve).await
}

/// `POST /api/v1/deals/{id}/reject` (channel manager, admin, owner; never a partner).
pub async fn reject_deal(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Deal>, ApiError> {
    decide(&state, &p, &id, &body, Decision::Reject).await
}

/// `GET /api/v1/leads`: the caller's leads (vendor staff: every partner's), newest first.
pub async fn list_leads(
    State(state): State<AppState>,
    p: Principal,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ListPage<Lead>>, ApiError> {
    let Query(q) = q.map_err(|e| query_error(&e))?;
    let limit = limit(q.limit.as_deref())?;
    let mut tx = program_tx(&state, &p).await?;
    let items = leads::page(&mut tx, None, limit).await?;
    tx.commit().await?;
    Ok(Json(ListPage::all(items)))
}

/// `POST /api/v1/leads` → 201 (partner people).
pub async fn register_lead(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let new: NewLead = json(&body)?;
    let mut tx = program_tx(&state, &p).await?;
    let lead = leads::register(&mut tx, &p.who, p.permit()?, acting_user(&p), &new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(lead)).into_response())
}

/// Rows per database round trip of an export.
const EXPORT_PAGE: i64 = 1000;

/// `GET /api/v1/leads/export`: CSV, streamed page by page in one read-only transaction of the
/// caller's scope (a partner gets only its own rows: the database's filter), formulas neutralised,
/// as a download (`Content-Disposition: attachment`).
pub async fn export_leads(State(state): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    // Recorded (and committed) before the download starts, whether or not the client reads it all.
    let mut tx = program_tx(&state, &p).await?;
    let event = audit::Event::new("lead.exported", audit::Entity::new("lead", None)?, audit::Changes::none())?;
    audit::record_by(&mut tx, &p.who, &event).await?;
    tx.commit().await?;
    let mut tx = program_tx(&state, &p).await?;
    let first = leads::page(&mut tx, None, EXPORT_PAGE).await?;
    let header_line = leads::csv_header()?;
    let (send, recv) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
    tokio::spawn(async move {
        let result = async {
            if send.send(Ok(header_line)).await.is_err() {
                return Ok(());
            }
            let mut page = first;
            while let Some(last) = page.last().map(|l| (l.created_at, l.id)) {
                let mut chunk = Vec::new();
                for l in &page {
                    chunk.extend(leads::csv_record(l)?);
                }
                if send.send(Ok(chunk)).await.is_err() {
                    return Ok(());
                }
                if (page.len() as i64) < EXPORT_PAGE {
                    break;
                }
                page = leads::page(&mut tx, Some(last), EXPORT_PAGE).await?;
            }
            tx.commit().await?;
            Ok::<(), ProgramError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "lead export stopped early");
            let _ = send.send(Err(std::io::Error::other("export failed"))).await;
        }
    });
    let stream = futures_util::stream::unfold(recv, |mut r| async move { r.recv().await.map(|item| (item, r)) });
    let filename = format!("leads-{}-{}.csv", p.tenant.as_uuid(), Utc::now().format("%Y%m%dT%H%M%SZ"));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
