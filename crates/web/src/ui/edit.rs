//! Editing a draft or queried document (`/documents/{id}/edit`): the raise form, filled from the
//! document, saved through `approvals::documents::edit` — the call `PATCH /api/v1/documents/{id}`
//! makes — with the version the form was filled from (the API's `If-Match`). The Edit link shows
//! only when `approvals::documents::may_edit` says so; posting anyway is refused by `edit`
//! itself. A stale form (someone acted first) is told so, with what was typed kept.

use approvals::Status;
use approvals::documents::{self, ApprovalError, Document, Edit, Kind, Member};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use store::TenantTx;
use uuid::Uuid;

use crate::api::documents::member;
use crate::plumbing::access::path_id;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::documents::{
    FieldError, LineInput, ORDER, RaisePage, Typed, current_with, domain_error, field_id, money_words, parse,
    raise_departments, refused, unprocessable,
};
use crate::ui::form::Fields;
use crate::ui::format;
use crate::ui::refusals::RefusalPage;
use crate::{ApiError, AppState, Principal};

const ROUTE: &str = "POST /documents/{id}/edit";

/// The form's fields as the document has them now (amounts as the page shows them).
fn typed_from(doc: &Document) -> Typed {
    let mut lines: Vec<LineInput> = doc
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| LineInput {
            number: i + 1,
            description: l.description.clone(),
            amount: format::amount(l.amount_minor, &doc.currency),
        })
        .collect();
    lines.push(LineInput { number: lines.len() + 1, ..LineInput::default() });
    Typed {
        voucher: doc.kind == Kind::Voucher,
        title: doc.title.clone(),
        department: doc.department_id.to_string(),
        currency: doc.currency.clone(),
        date: doc.document_date.to_string(),
        lines,
    }
}

/// "This document is waiting for finance: only drafts and queried documents can be edited."
fn not_editable_words(status: Status) -> String {
    format!(
        "This document is “{}”: only drafts, and documents an approver has queried, can be edited. \
Nothing was changed.",
        format::status(status).to_lowercase()
    )
}

/// The page for a document that cannot be edited (its status), 409 like the API's `not_editable`.
fn not_editable(status: Status, headers: &HeaderMap) -> Response {
    let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let hint = if matches!(status, Status::Submitted | Status::HodApproved | Status::FinanceApproved) {
        "To change it, take it back to draft with “Take back to change” on the document page, if you raised it."
    } else {
        "Go back to the document to see where it is."
    };
    let page = RefusalPage {
        chrome: Chrome::public(String::new()),
        heading: "This document can no longer be edited".into(),
        explanation: not_editable_words(status),
        hint: hint.to_owned(),
        request_id,
    };
    (StatusCode::CONFLICT, page).into_response()
}

/// The edit form with `typed`, `errors` and `notice`, answered with `status`.
#[allow(clippy::too_many_arguments)]
async fn form_page(
    state: &AppState,
    p: &Principal,
    mut tx: TenantTx,
    m: &Member,
    headers: &HeaderMap,
    doc: &Document,
    typed: Typed,
    mut errors: Vec<FieldError>,
    notice: String,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let departments = raise_departments(state, &mut tx, m, &typed.department).await?;
    let chrome = Chrome::member(state, &mut tx, m, headers, Section::Documents).await?;
    p.checked.mark();
    tx.commit().await?;
    errors.sort_by_key(|e| ORDER.iter().position(|f| *f == e.field).unwrap_or(ORDER.len()));
    let focus = errors.first().map_or("title", |e| field_id(e.field));
    let page = RaisePage {
        chrome,
        voucher: typed.voucher,
        title: typed.title,
        departments,
        currency: typed.currency,
        date: typed.date,
        lines: typed.lines,
        errors,
        focus,
        edit_id: doc.id.to_string(),
        reference: doc.number.clone(),
        version: doc.version,
        notice,
    };
    Ok((status, page).into_response())
}

/// Whether a document can be edited by this person now.
enum Editable {
    Yes(Box<Document>),
    /// Not by its status (whoever asks): the 409 page, like the API's `not_editable`.
    NotNow(Status),
    /// Not by this person (only the raiser edits): 403.
    NotYours,
}

/// Reads the document for editing (not readable: `NotFound`, the not-found page). A refusal by
/// status is a decision taken, so it is reported.
async fn editable(
    state: &AppState,
    p: &Principal,
    tx: &mut TenantTx,
    m: &Member,
    id: Uuid,
) -> Result<Editable, ApprovalError> {
    let doc = documents::get(tx, &state.authz, m, id).await?;
    if documents::may_edit(&state.authz, m, &doc) {
        return Ok(Editable::Yes(Box::new(doc)));
    }
    if !matches!(doc.status, Status::Draft | Status::Queried) {
        p.checked.mark();
        return Ok(Editable::NotNow(doc.status));
    }
    Ok(Editable::NotYours)
}

fn not_yours() -> ApiError {
    ApiError::forbidden().with_details(serde_json::json!({ "action": "document.edit" }))
}

/// `GET /documents/{id}/edit`
pub async fn form(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let doc = match editable(&state, &p, &mut tx, &m, id).await {
        Ok(Editable::Yes(doc)) => *doc,
        Ok(Editable::NotNow(status)) => return Ok(not_editable(status, &headers)),
        Ok(Editable::NotYours) => return Err(not_yours()),
        Err(e) => return Err(refused(&state, &p, "GET /documents/{id}/edit", tx, e).await),
    };
    let typed = typed_from(&doc);
    let notice = if doc.status == Status::Queried {
        "An approver asked a question. Changing the amount, currency, department or date sends the document back to the head of department; answer the question on the document page after saving.".to_owned()
    } else {
        String::new()
    };
    form_page(&state, &p, tx, &m, &headers, &doc, typed, Vec::new(), notice, StatusCode::OK).await
}

/// `POST /documents/{id}/edit` {version, title, department_id, currency, document_date,
/// line_description*, line_amount*, (add_line | save), csrf_token}
pub async fn save(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let f = Fields::parse(&body)?;
    let Ok(version) = f.get("version").parse::<i32>() else {
        return Err(unprocessable("version", "version: the form did not say which version you saw"));
    };
    let mut typed = Typed::from_form(&f)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    // Whether this person may edit it now is `edit`'s to decide (and audit); the document is
    // read here for its kind and number only.
    let doc = match documents::get(&mut tx, &state.authz, &m, id).await {
        Ok(doc) => doc,
        Err(e) => return Err(refused(&state, &p, ROUTE, tx, e).await),
    };
    if !documents::may_edit(&state.authz, &m, &doc) {
        // Not this person's, or not in a state to edit: `edit` itself refuses (a denial is
        // audited like the API's), before it looks at any field.
        let e = match documents::edit(&mut tx, &state.authz, &m, id, doc.version, &Edit::default()).await {
            Err(ApprovalError::NotEditable { status }) => {
                drop(tx);
                let words = not_editable_words(status);
                return current_with(&state, &p, &headers, id, StatusCode::CONFLICT, words, "warning", |_| {}).await;
            }
            Err(e) => e,
            Ok(_) => ApprovalError::Conflict("the policy engine and may_edit disagree".into()),
        };
        return Err(refused(&state, &p, ROUTE, tx, e).await);
    }
    // The kind is the document's own: the form does not send it.
    typed.voucher = doc.kind == Kind::Voucher;
    let shown = Document { version, ..doc };
    if f.has("add_line") {
        return form_page(&state, &p, tx, &m, &headers, &shown, typed, Vec::new(), String::new(), StatusCode::OK).await;
    }
    let (new, mut errors) = parse(&typed);
    let Some(new) = new.filter(|_| errors.is_empty()) else {
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        return form_page(&state, &p, tx, &m, &headers, &shown, typed, errors, String::new(), status).await;
    };
    let changes = Edit {
        title: Some(new.title),
        department_id: Some(new.department_id),
        document_date: Some(new.document_date),
        currency: Some(new.currency),
        lines: Some(new.lines),
        attachments: None,
    };
    let lines_typed = typed.filled_lines();
    let error = match documents::edit(&mut tx, &state.authz, &m, id, version, &changes).await {
        Ok(_) => {
            p.checked.mark();
            tx.commit().await?;
            return Ok(Redirect::to(&format!("/documents/{id}?done=edited")).into_response());
        }
        Err(ApprovalError::Invalid { field, reason }) => {
            (StatusCode::UNPROCESSABLE_ENTITY, domain_error(field, &reason, &lines_typed))
        }
        Err(ApprovalError::Money(e)) => {
            let field = if matches!(e, approvals::MoneyError::OutOfRange) { "lines" } else { "currency" };
            (StatusCode::UNPROCESSABLE_ENTITY, FieldError { field, message: money_words(&e) })
        }
        Err(ApprovalError::PeriodClosed { period }) => (
            StatusCode::CONFLICT,
            FieldError {
                field: "date",
                message: format!("The fiscal period {period} is closed: documents dated in it cannot change"),
            },
        ),
        Err(ApprovalError::Stale { .. }) => {
            drop(tx);
            return stale(&state, &p, &headers, id, typed).await;
        }
        Err(ApprovalError::NotEditable { status }) => {
            drop(tx);
            let words = not_editable_words(status);
            return current_with(&state, &p, &headers, id, StatusCode::CONFLICT, words, "warning", |_| {}).await;
        }
        Err(e) => return Err(refused(&state, &p, ROUTE, tx, e).await),
    };
    drop(tx);
    let (status, e) = error;
    errors.push(e);
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    form_page(&state, &p, tx, &m, &headers, &shown, typed, errors, String::new(), status).await
}

/// Someone changed the document after this form was filled: nothing was saved. Still editable:
/// the form again with what was typed and the current version (saving again overwrites what
/// they changed, knowingly). No longer editable: the document as it is now.
async fn stale(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    id: Uuid,
    typed: Typed,
) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    match editable(state, p, &mut tx, &m, id).await {
        Ok(Editable::Yes(doc)) => {
            let notice = format!(
                "Someone changed this document while you were editing it (it is now at version {}). Nothing you typed was saved: \
it is kept below. Check the document, then save again to replace their changes with yours.",
                doc.version
            );
            form_page(state, p, tx, &m, headers, &doc, typed, Vec::new(), notice, StatusCode::CONFLICT).await
        }
        Ok(Editable::NotNow(status)) => {
            drop(tx);
            let notice = format!(
                "Someone acted on this first — here is what it looks like now. Nothing you typed was saved. {}",
                not_editable_words(status)
            );
            current_with(state, p, headers, id, StatusCode::CONFLICT, notice, "warning", |_| {}).await
        }
        Ok(Editable::NotYours) => Err(not_yours()),
        Err(e) => Err(refused(state, p, ROUTE, tx, e).await),
    }
}

/// Whether the document page offers Edit (`may_edit`), and what it says about it.
pub(crate) fn edit_offer(state: &AppState, m: &Member, doc: &Document) -> (String, &'static str) {
    if !documents::may_edit(&state.authz, m, doc) {
        return (String::new(), "");
    }
    let words = if doc.status == Status::Queried {
        "Change the lines, amounts, department or date before you answer; a change to the money sends it back to the head of department."
    } else {
        "Change the lines, amounts, department or date while it is a draft."
    };
    (format!("/documents/{}/edit", doc.id), words)
}
