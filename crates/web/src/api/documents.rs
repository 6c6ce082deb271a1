//! `/api/v1/documents`, `/api/v1/periods`, `/api/v1/settings/approvals`: payment vouchers and
//! purchase orders over HTTP.
//!
//! Routes are `Guard::Domain`: the decision needs the document, so `approvals` asks the policy
//! engine and its write requires the permit. These handlers translate: strict bodies (422 naming
//! the field), versions (`ETag` / `If-Match` → 412, body `version` → 409), idempotency keys
//! (`crate::api::idempotency`), refusals (403 audited in a transaction of their own; other organisations' ids 404).

use approvals::documents::{
    self, ApprovalError, Document, Edit, Kind, MdThresholds, Member, NewAttachment, NewDocument, NewLine,
};
use approvals::inbox::{self, BulkError, BulkItem, Filter, View};
use approvals::{Currency, MoneyError, Status, Transition};
use authz::Action;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::TenantTx;
use uuid::Uuid;

use crate::api::idempotency::{self, Claimed, IdempotencyKey, etag, json_response};
use crate::plumbing::access::{ListPage, json, path_id};
use crate::plumbing::guard::denied;
use crate::{ApiError, AppState, Principal};

/// Every action the transitions route may ask for.
pub const TRANSITION_ACTIONS: &[Action] = &[
    Action::DocumentSubmit,
    Action::DocumentApprove,
    Action::DocumentReject,
    Action::DocumentQuery,
    Action::DocumentAnswer,
    Action::DocumentCancel,
    Action::DocumentAmend,
    Action::DocumentMarkPaid,
];

fn unprocessable(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_details(json!({ "field": field }))
}

/// Documents are raised and decided by people: an API key has no department, no seat in the
/// separation of duties, and is refused here.
pub(crate) async fn member(p: &Principal, tx: &mut TenantTx) -> Result<Member, ApiError> {
    let Some(person) = p.person() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "user_required",
            "documents are raised and decided by signed-in people, not API keys",
        ));
    };
    Member::load(tx, person.user, p.who.origin.clone()).await.map_err(|_| ApiError::forbidden())
}

/// Turns a domain refusal into a response; policy denials are audited first (own transaction).
/// The pages (`crate::ui::documents`) word the same refusals in HTML.
pub(crate) async fn refusal(state: &AppState, p: &Principal, route: &str, e: ApprovalError) -> ApiError {
    match e {
        ApprovalError::Invalid { field, reason } => unprocessable(field, format!("{field}: {reason}")),
        ApprovalError::Money(m) => {
            let field = match m {
                MoneyError::OutOfRange => "lines.amount_minor",
                MoneyError::UnknownCurrency | MoneyError::MixedCurrencies => "currency",
            };
            unprocessable(field, m.to_string())
        }
        ApprovalError::NotFound => ApiError::not_found(),
        ApprovalError::Denied(d) => {
            let resource = match d.action {
                Action::PeriodOpen | Action::PeriodClose | Action::PeriodReopen | Action::PeriodRead => "fiscal_period",
                Action::SettingsManage => "tenant",
                _ => "document",
            };
            if let Err(err) = denied(state, p, route, d.action, Some((resource, d.resource)), &d.forbidden_by).await {
                return err;
            }
            ApiError::forbidden().with_details(json!({ "action": d.action.as_str(), "forbidden_by": d.forbidden_by }))
        }
        ApprovalError::NotAllowed(n) => ApiError::new(
            StatusCode::CONFLICT,
            "transition_not_allowed",
            format!("a {} document cannot {}", n.from, n.transition),
        )
        .with_details(json!({ "status": n.from, "transition": n.transition, "allowed": n.allowed })),
        ApprovalError::Stale { current } => ApiError::new(
            StatusCode::CONFLICT,
            "stale_version",
            format!("the document changed: it is at version {current}; reload and retry"),
        )
        .with_details(json!({ "current_version": current })),
        ApprovalError::PeriodClosed { period } => ApiError::new(
            StatusCode::CONFLICT,
            "period_closed",
            format!("fiscal period {period} is closed: documents dated in it cannot change"),
        )
        .with_details(json!({ "period": period })),
        ApprovalError::NotEditable { status } => ApiError::new(
            StatusCode::CONFLICT,
            "not_editable",
            format!("a {status} document cannot be edited: only drafts and queried documents can"),
        )
        .with_details(json!({ "status": status })),
        ApprovalError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
        ApprovalError::Identity(i) => i.into(),
        ApprovalError::Audit(a) => a.into(),
        ApprovalError::Store(s) => s.into(),
        ApprovalError::Database(d) => store::StoreError::from(d).into(),
        ApprovalError::Permit(m) => {
            tracing::error!(error = %m, "permit mismatch");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
        }
    }
}

/// 412 for a stale `If-Match`, with the document's current version and `ETag`.
fn if_match_failed(current: i32) -> Response {
    let mut r = ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        format!("If-Match does not match: the document is at version {current}"),
    )
    .with_details(json!({ "current_version": current }))
    .into_response();
    r.headers_mut().insert(header::ETAG, etag(current));
    r
}

fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(|e| {
        tracing::error!(error = %e, "response encoding");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    })
}

fn date(field: &str, s: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| unprocessable(field, format!("{field}: a date like 2026-03-31")))
}

fn uuid_field(field: &str, s: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(s).map_err(|_| unprocessable(field, format!("{field}: a UUID")))
}

fn kind(s: &str) -> Result<Kind, ApiError> {
    s.parse().map_err(|_| unprocessable("kind", "kind: voucher or purchase_order"))
}

fn currency(field: &str, s: &str) -> Result<Currency, ApiError> {
    s.parse().map_err(|_| unprocessable(field, format!("{field}: an ISO 4217 code such as EUR")))
}

// --- Create --------------------------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineBody {
    description: String,
    amount_minor: i64,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttachmentBody {
    name: String,
    reference: String,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    kind: String,
    department_id: String,
    title: String,
    document_date: String,
    currency: String,
    lines: Vec<LineBody>,
    #[serde(default)]
    attachments: Vec<AttachmentBody>,
}

const CREATE_ROUTE: &str = "POST /api/v1/documents";

/// `POST /api/v1/documents` (`Idempotency-Key` optional) → 201 with the draft, `ETag`, `Location`.
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateBody = json(&body)?;
    let new = NewDocument {
        kind: kind(&req.kind)?,
        department_id: uuid_field("department_id", &req.department_id)?,
        title: req.title,
        document_date: date("document_date", &req.document_date)?,
        currency: currency("currency", &req.currency)?,
        lines: req
            .lines
            .into_iter()
            .map(|l| NewLine { description: l.description, amount_minor: l.amount_minor })
            .collect(),
        attachments: req
            .attachments
            .into_iter()
            .map(|a| NewAttachment { name: a.name, reference: a.reference, media_type: a.media_type, sha256: a.sha256 })
            .collect(),
    };
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let key = IdempotencyKey::from_headers(&headers)?;
    let claim = match idempotency::claim(&mut tx, &p, key, CREATE_ROUTE, &body).await? {
        Claimed::Replay(r) => return Ok(r),
        Claimed::Go(c) => c,
    };
    match documents::create(&mut tx, &state.authz, &m, &new).await {
        Ok(doc) => {
            p.checked.mark();
            let location = format!("/api/v1/documents/{}", doc.id);
            claim.finish_at(tx, StatusCode::CREATED, to_json(&doc)?, Some(&location)).await
        }
        Err(e) => {
            drop(tx);
            Err(refusal(&state, &p, CREATE_ROUTE, e).await)
        }
    }
}

// --- Read ----------------------------------------------------------------------------------

/// `GET /api/v1/documents/{id}` → the document with `ETag: "<version>"`. Documents the caller
/// may not read, and other organisations' ids, are 404.
pub async fn get(State(state): State<AppState>, p: Principal, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let r = documents::get(&mut tx, &state.authz, &m, id).await;
    reply(&state, &p, "GET /api/v1/documents/{id}", tx, StatusCode::OK, r).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// `waiting`, `raised` or `all` (default)
    view: Option<String>,
    /// A document status.
    status: Option<String>,
    /// `voucher` or `purchase_order`.
    kind: Option<String>,
    /// A department id (UUID).
    department_id: Option<String>,
    /// YYYY-MM-DD.
    date_from: Option<String>,
    /// YYYY-MM-DD.
    date_to: Option<String>,
    /// Minor units of `currency`.
    min_amount_minor: Option<String>,
    /// Minor units of `currency`.
    max_amount_minor: Option<String>,
    /// ISO 4217 code (required with an amount filter).
    currency: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1-200, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

fn number(field: &str, s: Option<&str>) -> Result<Option<i64>, ApiError> {
    s.map(|v| v.parse::<i64>().map_err(|_| unprocessable(field, format!("{field}: a whole number")))).transpose()
}

impl ListQuery {
    fn filter(&self) -> Result<Filter, ApiError> {
        let view = match self.view.as_deref() {
            None | Some("all") => View::All,
            Some("waiting") => View::Waiting,
            Some("raised") => View::Raised,
            Some(_) => return Err(unprocessable("view", "view: waiting, raised or all")),
        };
        let status = self
            .status
            .as_deref()
            .map(|s| s.parse::<Status>().map_err(|_| unprocessable("status", "status: unknown document status")))
            .transpose()?;
        let kind = self.kind.as_deref().map(kind).transpose()?;
        Ok(Filter {
            view,
            status,
            kind,
            department_id: self.department_id.as_deref().map(|d| uuid_field("department_id", d)).transpose()?,
            date_from: self.date_from.as_deref().map(|d| date("date_from", d)).transpose()?,
            date_to: self.date_to.as_deref().map(|d| date("date_to", d)).transpose()?,
            min_amount_minor: number("min_amount_minor", self.min_amount_minor.as_deref())?,
            max_amount_minor: number("max_amount_minor", self.max_amount_minor.as_deref())?,
            currency: self.currency.as_deref().map(|c| currency("currency", c)).transpose()?,
            cursor: self.cursor.as_deref().map(|c| uuid_field("cursor", c)).transpose()?,
            limit: crate::plumbing::access::limit(self.limit.as_deref())?,
        })
    }
}

/// `GET /api/v1/documents?view=waiting|raised|all&status=&kind=&department_id=&date_from=&date_to=
/// &min_amount_minor=&max_amount_minor=&currency=&cursor=&limit=` → `{items, next_cursor}`.
pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", e.body_text()))?;
    let filter = q.filter()?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let r = inbox::list(&mut tx, &state.authz, &m, &filter)
        .await
        .map(|page| ListPage { items: page.items, next_cursor: page.next_cursor.map(|c| c.to_string()) });
    reply(&state, &p, "GET /api/v1/documents", tx, StatusCode::OK, r).await
}

// --- Transitions ---------------------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransitionBody {
    transition: String,
    #[serde(default)]
    note: Option<String>,
    /// The version the caller read (alternative to `If-Match`).
    #[serde(default)]
    version: Option<i32>,
}

/// The version named by `If-Match` (`"3"` or `W/"3"`), `Err` when present but unusable.
fn if_match(headers: &HeaderMap) -> Result<Option<i32>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let failed = || {
        ApiError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", "If-Match must name one version: \"<n>\"")
    };
    let s = v.to_str().map_err(|_| failed())?.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).and_then(|n| n.parse().ok()).map(Some).ok_or_else(failed)
}

/// The version the caller read: `If-Match` or the body's `version` (both: they must agree).
fn expected_version(header: Option<i32>, body: Option<i32>) -> Result<i32, ApiError> {
    match (header, body) {
        (Some(h), Some(b)) if h != b => Err(unprocessable("version", "version: differs from If-Match")),
        (Some(v), _) | (None, Some(v)) => Ok(v),
        (None, None) => Err(ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            "name the version you read: If-Match: \"<version>\" (the document's ETag) or \"version\" in the body",
        )),
    }
}

/// `POST /api/v1/documents/{id}/transitions` {transition, note?, version?} with `If-Match`
/// (or `version`), `Idempotency-Key` optional → 200 with the document and its new `ETag`.
/// A stale `If-Match` is 412, a stale `version` 409; a transition the state does not allow is
/// 409 listing the allowed ones.
pub async fn transition(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let req: TransitionBody = json(&body)?;
    let Some(t) = Transition::ALL.iter().copied().find(|t| t.as_str() == req.transition) else {
        let names: Vec<&str> = Transition::ALL.iter().map(|t| t.as_str()).collect();
        return Err(unprocessable("transition", format!("transition: one of {}", names.join(", "))));
    };
    let header_version = if_match(&headers)?;
    let version = expected_version(header_version, req.version)?;
    let route = format!("POST /api/v1/documents/{id}/transitions");
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let key = IdempotencyKey::from_headers(&headers)?;
    let claim = match idempotency::claim(&mut tx, &p, key, &route, &body).await? {
        Claimed::Replay(r) => return Ok(r),
        Claimed::Go(c) => c,
    };
    match documents::transition(&mut tx, &state.authz, &m, id, t, version, req.note.as_deref()).await {
        Ok(doc) => {
            p.checked.mark();
            claim.finish(tx, StatusCode::OK, to_json(&doc)?).await
        }
        Err(ApprovalError::Stale { current }) if header_version.is_some() => {
            drop(tx);
            Ok(if_match_failed(current))
        }
        Err(e) => {
            drop(tx);
            Err(refusal(&state, &p, "POST /api/v1/documents/{id}/transitions", e).await)
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkEntry {
    id: String,
    version: i32,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkBody {
    documents: Vec<BulkEntry>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct BulkApproved {
    approved: Vec<Document>,
}

const BULK_ROUTE: &str = "POST /api/v1/documents/bulk-approve";

/// `POST /api/v1/documents/bulk-approve` {documents: [{id, version}], note?} → 200
/// {approved: [...]}, all or nothing. Any refusal refuses the whole batch (`details.index` and
/// `details.id` name the first); ids outside this organisation: 422 `batch_refused`.
pub async fn bulk_approve(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: BulkBody = json(&body)?;
    let mut items = Vec::with_capacity(req.documents.len());
    for (i, d) in req.documents.iter().enumerate() {
        items.push(BulkItem { id: uuid_field(&format!("documents[{i}].id"), &d.id)?, version: d.version });
    }
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let key = IdempotencyKey::from_headers(&headers)?;
    let claim = match idempotency::claim(&mut tx, &p, key, BULK_ROUTE, &body).await? {
        Claimed::Replay(r) => return Ok(r),
        Claimed::Go(c) => c,
    };
    match inbox::approve_many(&mut tx, &state.authz, &m, &items, req.note.as_deref()).await {
        Ok(approved) => {
            p.checked.mark();
            claim.finish(tx, StatusCode::OK, to_json(&BulkApproved { approved })?).await
        }
        Err(BulkError::Invalid(e)) => {
            drop(tx);
            Err(refusal(&state, &p, BULK_ROUTE, e).await)
        }
        Err(BulkError::Refused { index, id, error }) => {
            drop(tx);
            let e = match error {
                ApprovalError::NotFound => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "batch_refused",
                    format!("documents[{index}] ({id}) is not a document of this organisation; nothing was approved"),
                ),
                other => {
                    let mut e = refusal(&state, &p, BULK_ROUTE, other).await;
                    e.message = format!("documents[{index}] ({id}): {}; nothing was approved", e.message);
                    e
                }
            };
            let mut details = e.details.clone().map_or_else(|| json!({}), |d| *d);
            if let Some(o) = details.as_object_mut() {
                o.insert("index".into(), json!(index));
                o.insert("id".into(), json!(id));
            }
            Err(e.with_details(details))
        }
    }
}

// --- Fiscal periods and the MD threshold ---------------------------------------------------

/// `GET /api/v1/periods` → the periods the caller may read.
pub async fn periods(State(state): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let r = documents::periods(&mut tx, &state.authz, &m).await.map(ListPage::all);
    reply(&state, &p, "GET /api/v1/periods", tx, StatusCode::OK, r).await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenBody {
    name: String,
    starts_on: String,
    ends_on: String,
}

/// Answers a domain result: on success the decision is reported, the transaction committed and
/// the value sent; a refusal rolls back and is translated (and audited when it is a denial).
async fn reply<T: Serialize>(
    state: &AppState,
    p: &Principal,
    route: &str,
    tx: TenantTx,
    status: StatusCode,
    r: Result<T, ApprovalError>,
) -> Result<Response, ApiError> {
    match r {
        Ok(value) => {
            p.checked.mark();
            tx.commit().await?;
            Ok(json_response(status, to_json(&value)?))
        }
        Err(e) => {
            drop(tx);
            Err(refusal(state, p, route, e).await)
        }
    }
}

/// `POST /api/v1/periods` {name, starts_on, ends_on} (finance) → 201.
pub async fn open_period(State(state): State<AppState>, p: Principal, body: Bytes) -> Result<Response, ApiError> {
    let req: OpenBody = json(&body)?;
    let (starts, ends) = (date("starts_on", &req.starts_on)?, date("ends_on", &req.ends_on)?);
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let r = documents::open_period(&mut tx, &state.authz, &m, &req.name, starts, ends).await;
    reply(&state, &p, "POST /api/v1/periods", tx, StatusCode::CREATED, r).await
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) { Ok(T::default()) } else { json(body) }
}

/// `POST /api/v1/periods/{id}/close` {reason?} (finance; signed off in the audit log).
pub async fn close_period(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let req: ReasonBody = optional_body(&body)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let r = documents::set_period_status(&mut tx, &state.authz, &m, id, true, req.reason.as_deref()).await;
    reply(&state, &p, "POST /api/v1/periods/{id}/close", tx, StatusCode::OK, r).await
}

/// `POST /api/v1/periods/{id}/reopen` {reason} (MD only, reason required).
pub async fn reopen_period(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let req: ReasonBody = optional_body(&body)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let r = documents::set_period_status(&mut tx, &state.authz, &m, id, false, req.reason.as_deref()).await;
    reply(&state, &p, "POST /api/v1/periods/{id}/reopen", tx, StatusCode::OK, r).await
}

/// `GET /api/v1/settings/approvals` (owner, admin) → `{thresholds: {"EUR": 1000000, ...}}`.
pub async fn get_thresholds(State(state): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let r = documents::md_thresholds(&mut tx, &state.authz, &m).await;
    reply(&state, &p, "GET /api/v1/settings/approvals", tx, StatusCode::OK, r).await
}

/// `PUT /api/v1/settings/approvals` {thresholds: {"EUR": 1000000, "GBP": 850000}} (owner,
/// admin) → the new setting. Minor units per ISO 4217 currency; a currency left out goes to
/// the MD whatever the amount.
pub async fn set_threshold(State(state): State<AppState>, p: Principal, body: Bytes) -> Result<Response, ApiError> {
    let req: MdThresholds = json(&body)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let r = documents::set_md_thresholds(&mut tx, &state.authz, &m, &req).await;
    reply(&state, &p, "PUT /api/v1/settings/approvals", tx, StatusCode::OK, r).await
}

/// `GET /api/v1/periods/{id}` → the period (finance, MD, admins, auditors; others and other
/// organisations' ids 404).
pub async fn get_period(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let r = documents::period(&mut tx, &state.authz, &m, id).await;
    reply(&state, &p, "GET /api/v1/periods/{id}", tx, StatusCode::OK, r).await
}

// --- Editing -------------------------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EditBody {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    department_id: Option<String>,
    #[serde(default)]
    document_date: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    /// Replaces every line.
    #[serde(default)]
    lines: Option<Vec<LineBody>>,
    /// Replaces the attachment list (unchanged ones keep their id; dropped ones are withdrawn).
    #[serde(default)]
    attachments: Option<Vec<AttachmentBody>>,
    /// The version the caller read (alternative to `If-Match`).
    #[serde(default)]
    version: Option<i32>,
}

/// `PATCH /api/v1/documents/{id}` {title?, department_id?, document_date?, currency?, lines?,
/// attachments?, version?} with `If-Match` (or `version`), `Idempotency-Key` optional → 200 with
/// the document and its new `ETag`. Drafts and queried documents only (else 409
/// `not_editable`), by their raiser only (else 403); stale versions as for transitions.
pub async fn edit(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let req: EditBody = json(&body)?;
    let changes = Edit {
        title: req.title,
        department_id: req.department_id.as_deref().map(|d| uuid_field("department_id", d)).transpose()?,
        document_date: req.document_date.as_deref().map(|d| date("document_date", d)).transpose()?,
        currency: req.currency.as_deref().map(|c| currency("currency", c)).transpose()?,
        lines: req.lines.map(|ls| {
            ls.into_iter().map(|l| NewLine { description: l.description, amount_minor: l.amount_minor }).collect()
        }),
        attachments: req.attachments.map(|a| {
            a.into_iter()
                .map(|a| NewAttachment {
                    name: a.name,
                    reference: a.reference,
                    media_type: a.media_type,
                    sha256: a.sha256,
                })
                .collect()
        }),
    };
    let header_version = if_match(&headers)?;
    let version = expected_version(header_version, req.version)?;
    let route = format!("PATCH /api/v1/documents/{id}");
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let key = IdempotencyKey::from_headers(&headers)?;
    let claim = match idempotency::claim(&mut tx, &p, key, &route, &body).await? {
        Claimed::Replay(r) => return Ok(r),
        Claimed::Go(c) => c,
    };
    match documents::edit(&mut tx, &state.authz, &m, id, version, &changes).await {
        Ok(doc) => {
            p.checked.mark();
            claim.finish(tx, StatusCode::OK, to_json(&doc)?).await
        }
        Err(ApprovalError::Stale { current }) if header_version.is_some() => {
            drop(tx);
            Ok(if_match_failed(current))
        }
        Err(e) => {
            drop(tx);
            Err(refusal(&state, &p, "PATCH /api/v1/documents/{id}", e).await)
        }
    }
}
