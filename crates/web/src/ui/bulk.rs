//! Bulk approval from the inbox, with one confirmation: the checked rows
//! (`POST /documents/bulk-approve`) → a page listing what will be approved (number, title,
//! amount) and what cannot be → confirm (`POST /documents/bulk-approve/confirm`) →
//! `approvals::inbox::approve_many`, the call `POST /api/v1/documents/bulk-approve` makes.
//!
//! `approve_many` is all or nothing: when one document is refused (someone acted first, or it
//! is not this person's to approve), nothing is approved. The result page says which one and
//! why, and offers the others again in a new confirmation — never approving anything the
//! person did not confirm.

use approvals::documents::{self, ApprovalError, Document, Member};
use approvals::inbox::{self, BulkError, BulkItem};
use approvals::{Status, Transition};
use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use store::TenantTx;
use uuid::Uuid;

use crate::api::documents::{member, refusal};
use crate::ui::chrome::{Chrome, Section};
use crate::ui::form::Fields;
use crate::ui::format;
use crate::{ApiError, AppState, Principal};

/// At most this many in one approval (the domain's limit).
const MAX: usize = 100;

#[derive(Debug, Clone)]
pub(crate) struct BulkRow {
    pub href: String,
    pub reference: String,
    pub title: String,
    pub amount: String,
    pub currency: String,
    /// What happens or happened to it, in words.
    pub outcome: String,
    /// `id:version` for the confirmation form (empty: not in it).
    pub value: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "bulk.html")]
pub(crate) struct BulkPage {
    pub chrome: Chrome,
    pub heading: String,
    pub notice: String,
    /// `success`, `warning` or `error`.
    pub notice_tone: &'static str,
    /// Will be (or were) approved.
    pub ready: Vec<BulkRow>,
    /// Cannot be, and why.
    pub left_out: Vec<BulkRow>,
    /// Whether `ready` is offered for confirmation (else it is the result).
    pub confirm: bool,
}

/// The `document` fields (`id:version`), in order; a malformed one is a 422.
fn selected(f: &Fields) -> Result<Vec<BulkItem>, ApiError> {
    let mut out: Vec<BulkItem> = Vec::new();
    for v in f.all("document") {
        let item = v
            .split_once(':')
            .and_then(|(id, version)| Some(BulkItem { id: Uuid::try_parse(id).ok()?, version: version.parse().ok()? }))
            .ok_or_else(|| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "document: not a row of the inbox")
                    .with_details(serde_json::json!({ "field": "document" }))
            })?;
        if !out.iter().any(|o| o.id == item.id) {
            out.push(item);
        }
    }
    if out.len() > MAX {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("document: at most {MAX} documents in one approval"),
        ));
    }
    Ok(out)
}

fn row(doc: &Document, outcome: String, value: String) -> BulkRow {
    BulkRow {
        href: format!("/documents/{}", doc.id),
        reference: doc.number.clone(),
        title: doc.title.clone(),
        amount: format::amount(doc.amount_minor, &doc.currency),
        currency: doc.currency.clone(),
        outcome,
        value,
    }
}

/// The level `m` would approve `doc` at, in words.
fn approve_words(doc: &Document) -> String {
    match doc.status {
        Status::Submitted => "Approve as head of department".into(),
        Status::HodApproved => "Approve as finance".into(),
        _ => "Approve as managing director".into(),
    }
}

/// Sorts `items` into what `m` may approve now at the version selected, and what not (why).
async fn sort(
    state: &AppState,
    p: &Principal,
    tx: &mut TenantTx,
    m: &Member,
    items: &[BulkItem],
) -> Result<(Vec<BulkRow>, Vec<BulkRow>), ApiError> {
    let (mut ready, mut left_out) = (Vec::new(), Vec::new());
    for item in items {
        let doc = match documents::get(tx, &state.authz, m, item.id).await {
            Ok(d) => d,
            Err(ApprovalError::NotFound) => {
                left_out.push(BulkRow {
                    href: String::new(),
                    reference: "Unknown document".into(),
                    title: String::new(),
                    amount: String::new(),
                    currency: String::new(),
                    outcome: "Not a document you can see.".into(),
                    value: String::new(),
                });
                continue;
            }
            Err(e) => return Err(refusal(state, p, "POST /documents/bulk-approve", e).await),
        };
        if doc.version != item.version {
            let why = format!(
                "Changed since your list was shown (it is now “{}”): open it to check.",
                format::status(doc.status).to_lowercase()
            );
            left_out.push(row(&doc, why, String::new()));
        } else if documents::permitted(&state.authz, m, &doc).contains(&Transition::Approve) {
            let value = format!("{}:{}", doc.id, doc.version);
            ready.push(row(&doc, approve_words(&doc), value));
        } else {
            left_out.push(row(&doc, "Not yours to approve at its current level.".into(), String::new()));
        }
    }
    Ok((ready, left_out))
}

/// `POST /documents/bulk-approve` {document=id:version*, csrf_token} — the confirmation page.
/// Changes nothing.
pub async fn confirm(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let items = selected(&f)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let (ready, left_out) = sort(&state, &p, &mut tx, &m, &items).await?;
    let chrome = Chrome::member(&state, &mut tx, &m, &headers, Section::Inbox).await?;
    p.checked.mark();
    tx.commit().await?;
    let (status, notice, tone) = if items.is_empty() {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "Nothing was selected: tick the documents to approve in your inbox first.".to_owned(),
            "error",
        )
    } else if ready.is_empty() {
        (StatusCode::CONFLICT, "None of these can be approved by you now; nothing was approved.".to_owned(), "warning")
    } else {
        (StatusCode::OK, String::new(), "success")
    };
    let page = BulkPage {
        chrome,
        heading: format!("Approve {} {}?", ready.len(), if ready.len() == 1 { "document" } else { "documents" }),
        notice,
        notice_tone: tone,
        ready,
        left_out,
        confirm: true,
    };
    Ok((status, page).into_response())
}

/// `POST /documents/bulk-approve/confirm` {document=id:version*, note?, csrf_token} — approves
/// them all, or none (`approve_many`).
pub async fn approve(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let items = selected(&f)?;
    let note = Some(f.get("note")).filter(|n| !n.is_empty());
    let route = "POST /documents/bulk-approve/confirm";
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    match inbox::approve_many(&mut tx, &state.authz, &m, &items, note).await {
        Ok(approved) => {
            let chrome = Chrome::member(&state, &mut tx, &m, &headers, Section::Inbox).await?;
            p.checked.mark();
            tx.commit().await?;
            let ready: Vec<BulkRow> = approved
                .iter()
                .map(|d| row(d, format!("Approved: now “{}”.", format::status(d.status).to_lowercase()), String::new()))
                .collect();
            let n = ready.len();
            let page = BulkPage {
                chrome,
                heading: format!("{n} {} approved", if n == 1 { "document" } else { "documents" }),
                notice: "Approved. Each has moved on to its next level.".into(),
                notice_tone: "success",
                ready,
                left_out: Vec::new(),
                confirm: false,
            };
            Ok(page.into_response())
        }
        Err(BulkError::Invalid(_)) => {
            drop(tx);
            refused_batch(&state, &p, &headers, &items, None, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(BulkError::Refused { id, error, .. }) => {
            drop(tx);
            let (status, why) = match error {
                ApprovalError::Stale { .. } | ApprovalError::NotAllowed(_) => {
                    (StatusCode::CONFLICT, "someone acted on it first".to_owned())
                }
                ApprovalError::PeriodClosed { period } => {
                    (StatusCode::CONFLICT, format!("its fiscal period {period} is closed"))
                }
                ApprovalError::NotFound => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "it is not a document you can see".into())
                }
                e @ ApprovalError::Denied(_) => {
                    // Audited like the API's refusal; the page words it.
                    let _ = refusal(&state, &p, route, e).await;
                    (StatusCode::FORBIDDEN, "it is not yours to approve".to_owned())
                }
                e => return Err(refusal(&state, &p, route, e).await),
            };
            refused_batch(&state, &p, &headers, &items, Some((id, why)), status).await
        }
    }
}

/// Nothing was approved: says which document stopped the batch and why, and offers the others
/// (as they are now) for a new confirmation.
async fn refused_batch(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    items: &[BulkItem],
    culprit: Option<(Uuid, String)>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    let (ready, left_out) = sort(state, p, &mut tx, &m, items).await?;
    let chrome = Chrome::member(state, &mut tx, &m, headers, Section::Inbox).await?;
    p.checked.mark();
    tx.commit().await?;
    let which = match &culprit {
        Some((id, why)) => {
            let reference = left_out
                .iter()
                .chain(ready.iter())
                .find(|r| r.href.ends_with(&id.to_string()))
                .map_or_else(|| "One document".to_owned(), |r| r.reference.clone());
            format!("{reference} could not be approved: {why}.")
        }
        None => "The selection could not be approved as sent.".to_owned(),
    };
    let again = if ready.is_empty() {
        String::new()
    } else {
        format!(" You can approve the {} below that still can be, or go back to your inbox.", ready.len())
    };
    let page = BulkPage {
        chrome,
        heading: "Nothing was approved".into(),
        notice: format!("{which} Approvals in one batch are all or nothing, so none of them was approved.{again}"),
        notice_tone: "warning",
        ready,
        left_out,
        confirm: true,
    };
    Ok((status, page).into_response())
}
