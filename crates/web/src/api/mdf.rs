//! `/api/v1/programme/mdf/…`: market development funds of partner programmes (issue 17).
//!
//! As everywhere in the programme, each handler opens `Store::program_tx` with the signed-in
//! person's own id, so the database decides which partner's budgets, requests, claims and proofs
//! exist for the caller: another partner's answers 404 exactly as one that does not exist.
//! Deciding a request and approving, rejecting or paying a claim are decided per row (its filer
//! never decides it): the domain asks the policy engine (`Guard::Domain`) and a refusal is
//! audited as `access.denied`. Proof files stream into crates/files (never buffered whole).

use ::programs::ProgramError;
use ::programs::mdf::{
    self, Allowance, Budget, Claim, ClaimStep, Decision, NewAllowance, NewBudget, NewClaim, NewRequest, Proof, Request,
};
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use files::FileName;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use store::{ProgramScope, TenantTx};
use uuid::Uuid;

use crate::plumbing::access::{ListPage, json, limit, path_id};
use crate::plumbing::guard::denied;
use crate::{ApiError, AppState, Principal};

pub(crate) fn acting_user(p: &Principal) -> Uuid {
    p.person().map_or(Uuid::nil(), |person| person.user)
}

pub(crate) async fn program_tx(state: &AppState, p: &Principal) -> Result<TenantTx, ApiError> {
    Ok(state.store.program_tx(p.tenant, ProgramScope::Member(acting_user(p))).await?)
}

fn query_error(e: &QueryRejection) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", e.body_text())
}

/// A domain refusal; a policy denial (decided per request or claim) is audited first.
pub(crate) async fn refusal(state: &AppState, p: &Principal, route: &str, kind: &str, e: ProgramError) -> ApiError {
    if let ProgramError::Denied(d) = &e
        && let Err(err) = denied(state, p, route, d.action, Some((kind, d.resource)), &d.forbidden_by).await
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

fn list_limit(q: Result<Query<ListQuery>, QueryRejection>) -> Result<i64, ApiError> {
    let Query(q) = q.map_err(|e| query_error(&e))?;
    limit(q.limit.as_deref())
}

// ---- Allowances and budgets (the vendor) ---------------------------------------------------

/// `GET /api/v1/programme/mdf/allowances` (owners, admins, channel managers).
pub async fn list_allowances(
    State(state): State<AppState>,
    p: Principal,
) -> Result<Json<ListPage<Allowance>>, ApiError> {
    let mut tx = program_tx(&state, &p).await?;
    let items = mdf::list_allowances(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(ListPage::all(items)))
}

/// `PUT /api/v1/programme/mdf/allowances` {tier, currency, amountMinor}: the quarterly amount a
/// new budget of a partner of that tier gets.
pub async fn set_allowance(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Json<Allowance>, ApiError> {
    let new: NewAllowance = json(&body)?;
    let mut tx = program_tx(&state, &p).await?;
    let a = mdf::set_allowance(&mut tx, &p.who, p.permit()?, acting_user(&p), &new).await?;
    tx.commit().await?;
    Ok(Json(a))
}

/// `GET /api/v1/programme/mdf/budgets`: the caller's (a partner: its own).
pub async fn list_budgets(
    State(state): State<AppState>,
    p: Principal,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ListPage<Budget>>, ApiError> {
    let limit = list_limit(q)?;
    let mut tx = program_tx(&state, &p).await?;
    let items = mdf::list_budgets(&mut tx, limit).await?;
    tx.commit().await?;
    Ok(Json(ListPage::all(items)))
}

/// `POST /api/v1/programme/mdf/budgets` → 201; 409 `budget_exists` for a second one of the
/// same partner, quarter and currency.
pub async fn create_budget(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let new: NewBudget = json(&body)?;
    let mut tx = program_tx(&state, &p).await?;
    let b = mdf::create_budget(&mut tx, &p.who, p.permit()?, acting_user(&p), &new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(b)).into_response())
}

/// `GET /api/v1/programme/mdf/budgets/{id}`: 404 for another partner's.
pub async fn get_budget(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Budget>, ApiError> {
    let id = path_id(&id)?;
    let mut tx = program_tx(&state, &p).await?;
    let b = mdf::get_budget(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(b))
}

// ---- Requests --------------------------------------------------------------------------------

/// `GET /api/v1/programme/mdf/requests`: the caller's (a partner: its own), newest first.
pub async fn list_requests(
    State(state): State<AppState>,
    p: Principal,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ListPage<Request>>, ApiError> {
    let limit = list_limit(q)?;
    let mut tx = program_tx(&state, &p).await?;
    let items = mdf::list_requests(&mut tx, limit).await?;
    tx.commit().await?;
    Ok(Json(ListPage::all(items)))
}

/// `POST /api/v1/programme/mdf/requests` → 201 (partner people, from their own budget).
pub async fn create_request(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let new: NewRequest = json(&body)?;
    let mut tx = program_tx(&state, &p).await?;
    let r = mdf::request(&mut tx, &p.who, p.permit()?, acting_user(&p), &new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

/// `GET /api/v1/programme/mdf/requests/{id}`: 404 for another partner's.
pub async fn get_request(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<Request>, ApiError> {
    let id = path_id(&id)?;
    let mut tx = program_tx(&state, &p).await?;
    let r = mdf::get_request(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(r))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MdfReasonBody)]
pub(crate) struct ReasonBody {
    /// Why (3-2000 characters): required to reject, optional otherwise; kept in the audit event.
    #[serde(default)]
    pub(crate) reason: Option<String>,
}

fn reason_body(body: &[u8]) -> Result<ReasonBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) { Ok(ReasonBody::default()) } else { json(body) }
}

/// Decides a request (channel managers); the page's form comes here too.
pub(crate) async fn decide_request(
    state: &AppState,
    p: &Principal,
    route: &str,
    id: Uuid,
    decision: Decision,
    reason: Option<&str>,
) -> Result<Request, ApiError> {
    let mut tx = program_tx(state, p).await?;
    match mdf::decide_request(&mut tx, &state.authz, &p.subject(), &p.who, id, decision, reason).await {
        Ok(r) => {
            p.checked.mark();
            tx.commit().await?;
            Ok(r)
        }
        Err(e) => {
            drop(tx);
            Err(refusal(state, p, route, "mdf_request", e).await)
        }
    }
}

/// `POST /api/v1/programme/mdf/requests/{id}/approve` {reason?}: 409 `budget_exceeded` when the
/// budget has not that much left; 403 for a partner person or the requester.
pub async fn approve_request(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Request>, ApiError> {
    let id = path_id(&id)?;
    let b = reason_body(&body)?;
    let route = "POST /api/v1/programme/mdf/requests/{id}/approve";
    Ok(Json(decide_request(&state, &p, route, id, Decision::Approve, b.reason.as_deref()).await?))
}

/// `POST /api/v1/programme/mdf/requests/{id}/reject` {reason}
pub async fn reject_request(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Request>, ApiError> {
    let id = path_id(&id)?;
    let b = reason_body(&body)?;
    let route = "POST /api/v1/programme/mdf/requests/{id}/reject";
    Ok(Json(decide_request(&state, &p, route, id, Decision::Reject, b.reason.as_deref()).await?))
}

// ---- Claims ----------------------------------------------------------------------------------

/// A claim with its proof files.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClaimWithProofs {
    #[serde(flatten)]
    pub(crate) claim: Claim,
    pub(crate) proofs: Vec<Proof>,
}

/// `GET /api/v1/programme/mdf/claims`: the caller's (a partner: its own), newest first.
pub async fn list_claims(
    State(state): State<AppState>,
    p: Principal,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ListPage<Claim>>, ApiError> {
    let limit = list_limit(q)?;
    let mut tx = program_tx(&state, &p).await?;
    let items = mdf::list_claims(&mut tx, limit).await?;
    tx.commit().await?;
    Ok(Json(ListPage::all(items)))
}

/// `POST /api/v1/programme/mdf/claims` → 201 (partner people, against their approved
/// request); 409 `claim_exceeds_approval` past the approved amount, `request_not_approved`.
pub async fn create_claim(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let new: NewClaim = json(&body)?;
    let mut tx = program_tx(&state, &p).await?;
    let c = mdf::claim(&mut tx, &p.who, p.permit()?, acting_user(&p), &new).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(ClaimWithProofs { claim: c, proofs: Vec::new() })).into_response())
}

/// `GET /api/v1/programme/mdf/claims/{id}`: with its proofs; 404 for another partner's.
pub async fn get_claim(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<ClaimWithProofs>, ApiError> {
    let id = path_id(&id)?;
    let mut tx = program_tx(&state, &p).await?;
    let claim = mdf::get_claim(&mut tx, id).await?;
    let proofs = mdf::list_proofs(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(ClaimWithProofs { claim, proofs }))
}

/// Approves, rejects or pays a claim (finance); the page's form comes here too.
pub(crate) async fn settle_claim(
    state: &AppState,
    p: &Principal,
    route: &str,
    id: Uuid,
    step: ClaimStep,
    reason: Option<&str>,
) -> Result<Claim, ApiError> {
    let mut tx = program_tx(state, p).await?;
    match mdf::settle_claim(&mut tx, &state.authz, &p.subject(), &p.who, id, step, reason).await {
        Ok(c) => {
            p.checked.mark();
            tx.commit().await?;
            Ok(c)
        }
        Err(e) => {
            drop(tx);
            Err(refusal(state, p, route, "mdf_claim", e).await)
        }
    }
}

/// `POST /api/v1/programme/mdf/claims/{id}/approve` {reason?}: 409 `proof_required` without a
/// proof file; 403 for the filer, a partner person or a channel manager.
pub async fn approve_claim(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Claim>, ApiError> {
    let id = path_id(&id)?;
    let b = reason_body(&body)?;
    let route = "POST /api/v1/programme/mdf/claims/{id}/approve";
    Ok(Json(settle_claim(&state, &p, route, id, ClaimStep::Approve, b.reason.as_deref()).await?))
}

/// `POST /api/v1/programme/mdf/claims/{id}/reject` {reason}
pub async fn reject_claim(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Claim>, ApiError> {
    let id = path_id(&id)?;
    let b = reason_body(&body)?;
    let route = "POST /api/v1/programme/mdf/claims/{id}/reject";
    Ok(Json(settle_claim(&state, &p, route, id, ClaimStep::Reject, b.reason.as_deref()).await?))
}

/// `POST /api/v1/programme/mdf/claims/{id}/pay`: 409 `transition_not_allowed` unless approved.
pub async fn pay_claim(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Claim>, ApiError> {
    let id = path_id(&id)?;
    let b = reason_body(&body)?;
    let route = "POST /api/v1/programme/mdf/claims/{id}/pay";
    Ok(Json(settle_claim(&state, &p, route, id, ClaimStep::Pay, b.reason.as_deref()).await?))
}

// ---- Proof of performance --------------------------------------------------------------------

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ProofQuery {
    /// The file's name: a label only (sanitised; never part of a storage path).
    name: String,
}

/// `POST /api/v1/programme/mdf/claims/{id}/proofs?name=` with the file as the body → 201 with
/// the proof. As document uploads: streamed, 413 `file_too_large`, 415 `file_type_refused`.
pub async fn upload_proof(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<ProofQuery>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let Query(q) = q.map_err(|e| query_error(&e))?;
    crate::plumbing::access::bounded("name", &q.name, 1000)?;
    let proof = receive_proof(&state, &p, id, FileName::sanitise(&q.name), body.into_data_stream()).await?;
    Ok((StatusCode::CREATED, Json(proof)).into_response())
}

/// Streams `body` into a new proof file of claim `id`: asked before a byte is read (nothing is
/// stored for someone who may not add proof) and again, with the claim locked, before it is
/// recorded (the stored object is removed again when that fails). The page's form comes here.
pub(crate) async fn receive_proof<S, E>(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    name: FileName,
    body: S,
) -> Result<Proof, ApiError>
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let svc = state.files.clone();
    let permit = p.permit()?.clone();
    let mut tx = program_tx(state, p).await?;
    mdf::may_add_proof(&mut tx, &permit, id, false).await?;
    let key = files::keys::current(&mut tx, &svc.keys).await?;
    tx.commit().await?;

    let stored = files::upload::put(&svc.storage, &key, name, body, svc.max_upload).await?;

    let recorded = async {
        let mut tx = program_tx(state, p).await?;
        let claim = mdf::may_add_proof(&mut tx, &permit, id, true).await?;
        let blob = files::blobs::record_proof(&mut tx, &permit, claim.id, &p.who, &stored).await?;
        let proof = mdf::add_proof(&mut tx, &p.who, &permit, &claim, blob.id, acting_user(p)).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(proof)
    }
    .await;
    if recorded.is_err()
        && let Err(rm) = svc.storage.remove(stored.tenant, stored.id).await
    {
        tracing::warn!(error = %rm, blob = %stored.id, "removing an unrecorded proof upload failed");
    }
    recorded
}

/// `GET /api/v1/programme/mdf/claims/{id}/proofs/{proof}`: the file (404 for another
/// partner's claim, exactly as for none); the download is audited with the file's SHA-256.
pub async fn download_proof(
    State(state): State<AppState>,
    p: Principal,
    Path((id, proof)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (id, proof) = (path_id(&id)?, path_id(&proof)?);
    let permit = p.permit()?.clone();
    let mut tx = program_tx(&state, &p).await?;
    let proof = mdf::get_proof(&mut tx, id, proof).await?;
    let svc = state.files.clone();
    let opened = files::download::open_held(&mut tx, &svc.storage, &svc.keys, &permit, proof.blob_id).await?;
    files::blobs::record_download(&mut tx, &p.who, &opened.blob, files::Disposition::Attachment, None).await?;
    tx.commit().await?;
    let media = files::MediaType::parse(&opened.blob.media_type).unwrap_or(files::MediaType::Text);
    let name = FileName::stored(opened.blob.name.clone());
    let body = Body::from_stream(opened.body.map_err(|e| {
        tracing::error!(error = %e, "a proof download stopped: the stored file failed its integrity check");
        std::io::Error::other(e.to_string())
    }));
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media.content_type()));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(opened.len));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    if let Ok(v) = HeaderValue::from_str(&name.content_disposition(files::Disposition::Attachment)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    Ok((StatusCode::OK, headers, body).into_response())
}
