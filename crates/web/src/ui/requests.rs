//! Requests to relations on pages (issue 16): on the organisation's document page, the
//! "Questions to vendors and clients" section (what was asked of whom, the answers, and the form
//! to ask); in the portal, the open questions on the shared document with their answer form
//! (text and/or a file, streamed by the portal's own upload path), and the count on its home.
//!
//! The same domain calls as `/api/v1/documents/{id}/requests` and `/api/v1/portal/requests…`
//! (`crate::api::portals`), in a relation transaction opened with the person's own id.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use files::FileName;
use store::RelationScope;
use uuid::Uuid;

use crate::api::documents::member;
use crate::api::files::approval_error;
use crate::api::portals::{self as api, relation_tx, request_refusal};
use crate::plumbing::access::path_id;
use crate::ui::form::Fields;
use crate::ui::format;
use crate::{ApiError, AppState, Principal};

/// One question as the organisation's document page shows it.
pub(crate) struct AskedItem {
    pub company: String,
    pub question: String,
    pub asked_by: String,
    pub asked_when: String,
    pub file_requested: bool,
    pub open: bool,
    pub answer: String,
    pub answered_when: String,
    pub file_name: String,
}

/// The section on the organisation's document page; `shown` only when the document is addressed
/// to a relation or was asked about (so documents nobody shares look as before).
#[derive(Default)]
pub(crate) struct AskedView {
    pub shown: bool,
    /// The relations this member may ask: (id, company).
    pub ask_to: Vec<(String, String)>,
    pub items: Vec<AskedItem>,
}

/// Reads the section in a relation transaction of the member's own (the document page's plain
/// tenant transaction sees no relation rows, by design of migration 0028).
pub(crate) async fn section(
    state: &AppState,
    tenant: store::TenantId,
    m: &approvals::documents::Member,
    doc: &approvals::documents::Document,
) -> Result<AskedView, ApiError> {
    let mut tx = state.store.relation_tx(tenant, RelationScope::Member(m.subject.user)).await?;
    let asked = approvals::requests::for_document(&mut tx, &state.authz, m, doc.id).await.map_err(approval_error)?;
    let ask_to = approvals::requests::askable(&mut tx, &state.authz, m, doc.id).await.map_err(approval_error)?;
    let mut relation_ids: Vec<Uuid> = asked.iter().map(|r| r.relation_id).collect();
    relation_ids.dedup();
    let companies = approvals::requests::companies(&mut tx, &relation_ids).await.map_err(approval_error)?;
    let people = asked.iter().flat_map(|r| std::iter::once(r.asked_by).chain(r.answered_by)).collect::<Vec<_>>();
    let names = crate::ui::documents::names(&mut tx, people).await;
    tx.commit().await?;
    let company = |id: Uuid| companies.iter().find(|(c, _)| *c == id).map(|(_, n)| n.clone()).unwrap_or_default();
    let items = asked
        .iter()
        .map(|r| AskedItem {
            company: company(r.relation_id),
            question: r.question.clone(),
            asked_by: names.get(&r.asked_by).cloned().unwrap_or_default(),
            asked_when: format::moment(r.created_at),
            file_requested: r.file_requested,
            open: r.is_open(),
            answer: r.answer.clone().unwrap_or_default(),
            answered_when: r.answered_at.map(format::moment).unwrap_or_default(),
            file_name: r
                .answer_attachment_id
                .and_then(|a| doc.attachments.iter().find(|x| x.id == a))
                .map(|a| a.name.clone())
                .unwrap_or_default(),
        })
        .collect::<Vec<_>>();
    Ok(AskedView {
        shown: !ask_to.is_empty() || !items.is_empty(),
        ask_to: ask_to.into_iter().map(|(id, c)| (id.to_string(), c)).collect(),
        items,
    })
}

/// `POST /documents/{id}/requests` {relation, question, file_requested?} → `303` back to the
/// document's questions; a refusal is a page (422 with the reason, 404, 403).
pub async fn ask(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let f = Fields::parse(&body)?;
    let Ok(relation) = f.get("relation").parse::<Uuid>() else {
        return Err(crate::ui::documents::unprocessable("relation", "Choose whom to ask."));
    };
    let mut tx = relation_tx(&state, &p).await?;
    let m = member(&p, &mut tx).await?;
    let asked = approvals::requests::ask(
        &mut tx,
        &state.authz,
        &m,
        relation,
        id,
        f.get("question"),
        f.get("file_requested") == "yes",
    )
    .await;
    if let Err(e) = asked {
        drop(tx);
        return Err(request_refusal(&state, &p, "POST /documents/{id}/requests", e).await);
    }
    tx.commit().await?;
    p.checked.mark();
    Ok(Redirect::to(&format!("/documents/{id}?done=asked#requests")).into_response())
}

/// One question as the portal shows it.
pub(crate) struct QuestionItem {
    pub id: String,
    pub question: String,
    pub asked_when: String,
    pub file_requested: bool,
    pub open: bool,
    pub answer: String,
    pub answered_when: String,
    pub file_name: String,
}

/// The questions on a shared document for the portal page (newest first).
pub(crate) async fn portal_questions(
    tx: &mut store::TenantTx,
    state: &AppState,
    m: &approvals::documents::Member,
    document: Uuid,
    files: &[approvals::attachments::AttachmentRow],
) -> Result<Vec<QuestionItem>, ApiError> {
    let rows = approvals::requests::mine(tx, &state.authz, m, Some(document)).await.map_err(approval_error)?;
    Ok(rows
        .into_iter()
        .map(|r| QuestionItem {
            id: r.id.to_string(),
            open: r.is_open(),
            asked_when: format::moment(r.created_at),
            file_requested: r.file_requested,
            answer: r.answer.clone().unwrap_or_default(),
            answered_when: r.answered_at.map(format::moment).unwrap_or_default(),
            file_name: r
                .answer_attachment_id
                .and_then(|a| files.iter().find(|x| x.id == a))
                .map(|a| a.name.clone())
                .unwrap_or_default(),
            question: r.question,
        })
        .collect())
}

/// `POST /portal/requests/{id}/answer` (`multipart/form-data`: csrf_token, answer, file?) →
/// `303` back to the document; the file (if any) goes through the portal's upload path first.
pub async fn answer(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let boundary = crate::plumbing::cookies::multipart_boundary(&headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the answer form is sent as multipart/form-data",
        )
    })?;
    // The request's document first: an unknown or another relation's request reads nothing.
    let document = {
        let mut tx = relation_tx(&state, &p).await?;
        let m = member(&p, &mut tx).await?;
        let mine = approvals::requests::mine(&mut tx, &state.authz, &m, None).await.map_err(approval_error)?;
        tx.commit().await?;
        mine.into_iter().find(|r| r.id == id).map(|r| r.document_id).ok_or_else(ApiError::not_found)?
    };
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["csrf_token", "answer", "file"])
        .size_limit(multer::SizeLimit::new().for_field("csrf_token", 256).for_field("answer", 64 * 1024));
    let mut form = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let mut text = String::new();
    let mut attachment = None;
    while let Some(field) = form.next_field().await.map_err(|e| crate::ui::attachments::form_error(&e))? {
        match field.name().unwrap_or_default() {
            "answer" => text = field.text().await.map_err(|e| crate::ui::attachments::form_error(&e))?,
            "file" => {
                let label = field.file_name().unwrap_or_default().to_owned();
                if label.is_empty() {
                    // No file chosen: the browser sends an empty part.
                    field.bytes().await.map_err(|e| crate::ui::attachments::form_error(&e))?;
                    continue;
                }
                crate::plumbing::access::bounded("name", &label, 1000)?;
                let sent = api::receive(&state, &p, document, FileName::sanitise(&label), field).await?;
                attachment = Some(sent.attachment.id);
            }
            // The CSRF token: checked before the handler ran.
            _ => {
                field.text().await.map_err(|e| crate::ui::attachments::form_error(&e))?;
            }
        }
    }
    crate::plumbing::access::bounded("answer", &text, approvals::requests::ANSWER_MAX)?;
    api::answer_request(&state, &p, id, Some(&text), attachment).await?;
    Ok(Redirect::to(&format!("/portal/documents/{document}?done=answered#questions")).into_response())
}
