//! `/api/v1/programme/opportunities…`, `/api/v1/programme/commission-plans`,
//! `/api/v1/programme/commissions…`: opportunities and commissions of partner programmes (issue 17).
//!
//! As in `crate::api::programs`, every handler opens `Store::program_tx` with the signed-in
//! person's own id, so the database decides which partner's rows exist for the caller: another
//! partner's opportunity or commission answers 404, exactly as one that does not exist. Approving,
//! paying and resolving are decided per commission (its closer never approves it): the domain asks
//! the policy engine (`Guard::Domain`) and a refusal is audited as `access.denied`.

use ::programs::ProgramError;
use ::programs::commissions::{self, Commission, NewPlan, Plan, Step};
use ::programs::opportunities::{self, NewOpportunity, Opportunity, Stage};
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use store::{ProgramScope, TenantTx};
use uuid::Uuid;

use crate::plumbing::access::{ListPage, json, limit, path_id};
use crate::plumbing::guard::denied;
use crate::{ApiError, AppState, Principal};

fn acting_user(p: &Principal) -> Uuid {
    p.person().map_or(Uuid::nil(), |person| person.user)
}

async fn program_tx(state: &AppState, p: &Principal) -> Result<TenantTx, ApiError> {
    Ok(state.store.program_tx(p.tenant, ProgramScope::Member(acting_user(p))).await?)
}

fn query_error(e: &QueryRejection) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", e.body_text())
}

/// A domain refusal; a policy denial (decided per commission) is audited first.
async fn refusal(state: &AppState, p: &Principal, route: &str, e: ProgramError) -> ApiError {
    if let ProgramError::Denied(d) = &e
        && let Err(err) = denied(state, p, route, d.action, Some(("commission", d.resource)), &d.forbidden_by).await
    {
        return err;
    }
    e.into()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1-200, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

/// `GET /api/v1/programme/opportunities`: the caller's (a partner: its own), newest first.
pub async fn list_opportunities(
    State(state): State<AppState>,
    p: Principal,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ListPage<Opportunity>>, ApiError> {
    let Query(q) = q.map_err(|e| query_error(&e))?;
    let limit = limit(q.limit.as_deref())?;
    let mut tx = program_tx(&state, &p).await?;
    let items = opportunities::list(&mut tx, limit).await?;
    tx.commit().await?;
    Ok(Json(ListPage::all(items)))
}

/// `POST /api/v1/programme/opportunities` → 201 (from a lead or an approved deal registration).
pub async fn create_opportunity(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let new: NewOpportunity = json(&body)?;
    let mut tx = program_tx(&state, &p).await?;
    let o = opportunities::create(&mut tx, &p.who, p.permit()?, acting_user(&p), &new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(o)).into_response())
}

/// `GET /api/v1/programme/opportunities/{id}`: 404 for another partner's, exactly as for none.
pub async fn get_opportunity(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Opportunity>, ApiError> {
    let id = path_id(&id)?;
    let mut tx = program_tx(&state, &p).await?;
    let o = opportunities::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(o))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OpportunityStageBody)]
pub(crate) struct StageBody {
    /// The stage to move to: one step forward, or `lost` (see the state machine).
    stage: Stage,
}

/// `POST /api/v1/programme/opportunities/{id}/stage`: 409 `transition_not_allowed` for a move
/// the state machine refuses. Closing it `won` computes the commission.
pub async fn advance_opportunity(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Opportunity>, ApiError> {
    let id = path_id(&id)?;
    let req: StageBody = json(&body)?;
    let mut tx = program_tx(&state, &p).await?;
    let o = opportunities::advance(&mut tx, &p.who, p.permit()?, acting_user(&p), id, req.stage).await?;
    tx.commit().await?;
    Ok(Json(o))
}

/// `GET /api/v1/programme/commission-plans` (vendor staff, finance).
pub async fn list_plans(State(state): State<AppState>, p: Principal) -> Result<Json<ListPage<Plan>>, ApiError> {
    let mut tx = program_tx(&state, &p).await?;
    let items = commissions::list_plans(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(ListPage::all(items)))
}

/// `POST /api/v1/programme/commission-plans` → 201 (owners, admins, channel managers).
pub async fn create_plan(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let new: NewPlan = json(&body)?;
    let mut tx = program_tx(&state, &p).await?;
    let plan = commissions::create_plan(&mut tx, &p.who, p.permit()?, acting_user(&p), &new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(plan)).into_response())
}

/// `GET /api/v1/programme/commissions`: the caller's (a partner: its own), newest first.
pub async fn list_commissions(
    State(state): State<AppState>,
    p: Principal,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ListPage<Commission>>, ApiError> {
    let Query(q) = q.map_err(|e| query_error(&e))?;
    let limit = limit(q.limit.as_deref())?;
    let mut tx = program_tx(&state, &p).await?;
    let items = commissions::list(&mut tx, limit).await?;
    tx.commit().await?;
    Ok(Json(ListPage::all(items)))
}

/// `GET /api/v1/programme/commissions/{id}`: 404 for another partner's, exactly as for none.
pub async fn get_commission(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Commission>, ApiError> {
    let id = path_id(&id)?;
    let mut tx = program_tx(&state, &p).await?;
    let c = commissions::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(c))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CommissionStepBody)]
pub(crate) struct StepBody {
    /// An optional note (3-2000 characters), recorded as the audit event's reason.
    #[serde(default)]
    note: Option<String>,
}

/// The finance steps, decided per commission by the domain.
async fn settle(
    state: &AppState,
    p: &Principal,
    route: &str,
    id: &str,
    body: &[u8],
    step: Step,
) -> Result<Json<Commission>, ApiError> {
    let id = path_id(id)?;
    let resolution: Option<ResolveBody> = if step == Step::Resolve { Some(json(body)?) } else { None };
    let note: StepBody = if step == Step::Resolve || body.is_empty() { StepBody::default() } else { json(body)? };
    let resolution = resolution.as_ref().map(|b| (b.resolution.as_str(), b.amount_minor));
    settle_step(state, p, route, id, step, note.note.as_deref(), resolution).await.map(Json)
}

/// One finance step on commission `id`, decided per commission by the domain (also the page's,
/// `crate::ui::programme`): a policy denial is audited as `access.denied`.
pub(crate) async fn settle_step(
    state: &AppState,
    p: &Principal,
    route: &str,
    id: Uuid,
    step: Step,
    note: Option<&str>,
    resolution: Option<(&str, Option<i64>)>,
) -> Result<Commission, ApiError> {
    let mut tx = program_tx(state, p).await?;
    let subject = p.subject();
    let r = match (step, resolution) {
        (Step::Approve, _) => commissions::approve(&mut tx, &state.authz, &subject, &p.who, id, note).await,
        (Step::Resolve, Some((text, amount))) => {
            commissions::resolve(&mut tx, &state.authz, &subject, &p.who, id, text, amount).await
        }
        (Step::MarkPayable | Step::Pay, _) => {
            commissions::pay_step(&mut tx, &state.authz, &subject, &p.who, id, step, note).await
        }
        _ => return Err(ApiError::not_found()),
    };
    match r {
        Ok(c) => {
            p.checked.mark();
            tx.commit().await?;
            Ok(c)
        }
        Err(e) => {
            drop(tx);
            Err(refusal(state, p, route, e).await)
        }
    }
}

/// `POST /api/v1/programme/commissions/{id}/approve` (finance, owners, admins; never the closer).
pub async fn approve_commission(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Commission>, ApiError> {
    settle(&state, &p, "/api/v1/programme/commissions/{id}/approve", &id, &body, Step::Approve).await
}

/// `POST /api/v1/programme/commissions/{id}/payable`
pub async fn payable_commission(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Commission>, ApiError> {
    settle(&state, &p, "/api/v1/programme/commissions/{id}/payable", &id, &body, Step::MarkPayable).await
}

/// `POST /api/v1/programme/commissions/{id}/pay`: 409 for a disputed (or unapproved) one.
pub async fn pay_commission(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Commission>, ApiError> {
    settle(&state, &p, "/api/v1/programme/commissions/{id}/pay", &id, &body, Step::Pay).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = CommissionResolveBody)]
pub(crate) struct ResolveBody {
    /// How the dispute was settled (3-2000 characters); recorded in the audit log.
    resolution: String,
    /// A corrected amount (minor units), when the partner was right.
    #[serde(default)]
    amount_minor: Option<i64>,
}

/// `POST /api/v1/programme/commissions/{id}/resolve`: back to `calculated`, to approve again.
pub async fn resolve_commission(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Commission>, ApiError> {
    settle(&state, &p, "/api/v1/programme/commissions/{id}/resolve", &id, &body, Step::Resolve).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CommissionDisputeBody)]
pub(crate) struct DisputeBody {
    /// Why (3-2000 characters); recorded in the audit log.
    reason: String,
}

/// `POST /api/v1/programme/commissions/{id}/dispute` (the partner's people).
pub async fn dispute_commission(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Commission>, ApiError> {
    let id = path_id(&id)?;
    let req: DisputeBody = json(&body)?;
    let mut tx = program_tx(&state, &p).await?;
    let c = commissions::dispute(&mut tx, &p.who, p.permit()?, id, &req.reason).await?;
    tx.commit().await?;
    Ok(Json(c))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatementQuery {
    /// The calendar month, `YYYY-MM` (UTC), by the date each commission was calculated.
    period: String,
    /// The partner (vendor staff must name one; a partner person gets its own).
    #[param(value_type = Option<uuid::Uuid>)]
    partner_id: Option<String>,
}

/// Rows per database round trip of a statement.
const STATEMENT_PAGE: i64 = 1000;

/// The statement's partner (the caller's own, or the one vendor staff named) and month, the
/// export audited and committed before any row is read, and a fresh transaction of the caller's
/// scope to read the rows in (the CSV's and the PDF's one path: same checks, same rows).
async fn open_statement(
    state: &AppState,
    p: &Principal,
    q: &StatementQuery,
    format: &str,
) -> Result<(Uuid, (DateTime<Utc>, DateTime<Utc>), TenantTx), ApiError> {
    let period = commissions::parse_period(&q.period)?;
    let named = match q.partner_id.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<Uuid>().map_err(|_| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "partnerId: not a UUID")
                .with_details(json!({ "field": "partnerId" }))
        })?),
    };
    let mut tx = program_tx(state, p).await?;
    let partner = commissions::statement_partner(&mut tx, named).await?;
    // Recorded (and committed) before the download starts, whether or not the client reads it all.
    let mut changes = audit::Changes::none().field("period", None::<&str>, q.period.trim());
    if format != "csv" {
        changes = changes.field("format", None::<&str>, format);
    }
    let event = audit::Event::new("commission.statement_exported", audit::Entity::of("partner", partner)?, changes)?;
    audit::record_by(&mut tx, &p.who, &event).await?;
    tx.commit().await?;
    Ok((partner, period, program_tx(state, p).await?))
}

/// The most lines a PDF statement lays out (a month of one partner's commissions is far fewer);
/// beyond, 422 `statement_too_large` points to the CSV, which streams any number.
const PDF_MAX_LINES: usize = 5_000;

/// `GET /api/v1/programme/commissions/statement.pdf`: the same statement as the CSV (same
/// query, same checks, same rows of the caller's scope) as a PDF download, with totals per
/// currency. Another partner's: 404, as for the CSV.
pub async fn statement_pdf(
    State(state): State<AppState>,
    p: Principal,
    q: Result<Query<StatementQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| query_error(&e))?;
    let (partner, period, mut tx) = open_statement(&state, &p, &q, "pdf").await?;
    let mut lines: Vec<commissions::StatementLine> = Vec::new();
    loop {
        let after = lines.last().map(|l| (l.created_at, l.id));
        let page = commissions::statement_page(&mut tx, partner, period, after, STATEMENT_PAGE).await?;
        let more = page.len() as i64 == STATEMENT_PAGE;
        lines.extend(page);
        if lines.len() > PDF_MAX_LINES {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "statement_too_large",
                format!("a PDF statement holds at most {PDF_MAX_LINES} commissions; download the CSV statement"),
            ));
        }
        if !more {
            break;
        }
    }
    let heading = crate::api::statement_pdf::Heading {
        organisation: identity::directory::tenants::current(&mut tx).await?.name,
        partner: ::programs::partners::get(&mut tx, partner).await?.company_name,
        period: q.period.trim().to_owned(),
        generated: Utc::now(),
    };
    tx.commit().await?;
    let pdf = tokio::task::spawn_blocking(move || crate::api::statement_pdf::render(&heading, &lines))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "statement PDF task failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
        })?
        .map_err(|e| {
            tracing::error!(error = %e, "statement PDF not written");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
        })?;
    let filename = format!("commissions-{partner}-{}-{}.pdf", q.period.trim(), Utc::now().format("%Y%m%dT%H%M%SZ"));
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        pdf,
    )
        .into_response())
}

/// `GET /api/v1/programme/commissions/statement`: one partner's commissions of one month as
/// CSV, streamed page by page in one transaction of the caller's scope (a partner's only ever
/// holds its own rows: the database's filter), formulas neutralised, as a download.
pub async fn statement(
    State(state): State<AppState>,
    p: Principal,
    q: Result<Query<StatementQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| query_error(&e))?;
    let (partner, period, mut tx) = open_statement(&state, &p, &q, "csv").await?;
    let first = commissions::statement_page(&mut tx, partner, period, None, STATEMENT_PAGE).await?;
    let header_line = commissions::csv_header()?;
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
                    chunk.extend(commissions::csv_record(l)?);
                }
                if send.send(Ok(chunk)).await.is_err() {
                    return Ok(());
                }
                if (page.len() as i64) < STATEMENT_PAGE {
                    break;
                }
                page = commissions::statement_page(&mut tx, partner, period, Some(last), STATEMENT_PAGE).await?;
            }
            tx.commit().await?;
            Ok::<(), ProgramError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "commission statement stopped early");
            let _ = send.send(Err(std::io::Error::other("statement failed"))).await;
        }
    });
    let stream = futures_util::stream::unfold(recv, |mut r| async move { r.recv().await.map(|item| (item, r)) });
    let filename = format!("commissions-{partner}-{}-{}.csv", q.period.trim(), Utc::now().format("%Y%m%dT%H%M%SZ"));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
