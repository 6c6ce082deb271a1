//! Files on the document page: the Attachments section, upload, preview, download, remove and
//! restore — another face of `crate::api::files`, through the same functions.
//!
//! - The section lists what `approvals::attachments::list_permitting` says this person may see,
//!   each with whether the policy engine lets them remove (and restore) it; the upload form shows
//!   when `approvals::attachments::may_attach` says they may attach, with the visibilities it
//!   allows. Attachments by reference (before files were stored) are listed read-only.
//! - Preview and Download never show a file's address in the page: `GET /attachments/{id}/preview`
//!   and `/download` mint a fresh link for this person (`crate::api::files::mint`: the engine is
//!   asked, the link names the person, lives five minutes) and send the browser there (`303`); an
//!   image's preview is a page showing it from such a link. Another person's link is refused by
//!   the download route, which also asks the engine again.
//! - The upload form is `multipart/form-data` with `csrf_token` first (checked by
//!   `crate::plumbing::cookies::form_token` from the start of the body), then `name`,
//!   `visibility` and `file`. The file part streams into `crate::api::files::receive` — the size
//!   limit enforced while reading, the type sniffed from the content — and is never buffered.
//!   Without script the form posts and the page comes back (`303`); with script
//!   (`static/attach.js`) the same form goes by XMLHttpRequest with a progress bar and the
//!   answer is the new row.
//! - Remove asks for a confirmation on a page of its own; both it and Restore are plain forms.

use approvals::attachments::{self, AttachmentRow};
use approvals::documents::Member;
use askama::Template;
use askama_web::WebTemplate;
use authz::{Action, Visibility};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use files::{Disposition, FileName, MediaType};
use store::TenantTx;
use uuid::Uuid;

use crate::api::documents::{member, refusal};
use crate::api::files::{approval_error, mint, not_a_file, receive};
use crate::plumbing::access::path_id;
use crate::plumbing::cookies::multipart_boundary;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::format;
use crate::{ApiError, AppState, Principal};

/// One row of the Attachments section.
#[derive(Debug, Clone)]
pub(crate) struct AttachmentItem {
    pub id: String,
    pub name: String,
    /// The file's type in words (empty for a reference).
    pub kind: &'static str,
    pub size: String,
    pub visibility: &'static str,
    pub added_by: String,
    pub when: String,
    /// Whether a file is stored (else: an attachment by reference).
    pub stored: bool,
    /// For a reference: where the file lives, as typed when it was attached.
    pub reference: String,
    /// Removed (restorable during the retention period).
    pub removed: bool,
    /// Shown in the browser (images and PDFs); other types are downloaded.
    pub previewable: bool,
    /// The policy engine lets this person remove it (and restore it once removed).
    pub may_remove: bool,
    /// The form token (restore is a form in the row).
    pub csrf: String,
}

/// A visibility the upload form offers.
#[derive(Debug, Clone)]
pub(crate) struct VisibilityOption {
    pub value: &'static str,
    pub label: &'static str,
}

/// The Attachments section of the document page.
#[derive(Debug, Clone, Default)]
pub(crate) struct AttachmentsView {
    pub items: Vec<AttachmentItem>,
    /// The visibilities this person may attach a file with now (empty: no upload form).
    pub visibilities: Vec<VisibilityOption>,
    /// The upload limit in words (`25 MiB`).
    pub limit: String,
}

fn visibility_words(v: Visibility) -> &'static str {
    match v {
        Visibility::Internal => "Internal",
        Visibility::Vendor => "Shared with vendors",
        Visibility::Client => "Shared with clients",
        Visibility::Partner => "Shared with partners",
    }
}

fn kind_words(media_type: &str) -> &'static str {
    match MediaType::parse(media_type) {
        Some(MediaType::Pdf) => "PDF",
        Some(MediaType::Png) => "PNG image",
        Some(MediaType::Jpeg) => "JPEG image",
        Some(MediaType::Gif) => "GIF image",
        Some(MediaType::Webp) => "WebP image",
        Some(MediaType::Docx) => "Word document",
        Some(MediaType::Xlsx) => "Excel workbook",
        Some(MediaType::Pptx) => "PowerPoint presentation",
        Some(MediaType::Odt) => "OpenDocument text",
        Some(MediaType::Ods) => "OpenDocument spreadsheet",
        Some(MediaType::Csv) => "CSV table",
        Some(MediaType::Text) => "Plain text",
        None => "File",
    }
}

fn is_image(media_type: &str) -> bool {
    matches!(MediaType::parse(media_type), Some(MediaType::Png | MediaType::Jpeg | MediaType::Gif | MediaType::Webp))
}

fn previewable(media_type: &str) -> bool {
    is_image(media_type) || MediaType::parse(media_type) == Some(MediaType::Pdf)
}

/// `2048` → `2.0 KiB`.
pub(crate) fn size_words(bytes: i64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let b = bytes.max(0) as f64;
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else if bytes < 1_048_576 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{:.1} MiB", b / 1_048_576.0)
    }
}

/// The section as this person may see it, read in the page's transaction.
pub(crate) async fn section(
    state: &AppState,
    tx: &mut TenantTx,
    m: &Member,
    document: Uuid,
    csrf: &str,
) -> Result<AttachmentsView, ApiError> {
    let rows = attachments::list_permitting(tx, &state.authz, m, document, Action::AttachmentRemove)
        .await
        .map_err(approval_error)?;
    let ids: Vec<Uuid> = rows.iter().filter_map(|(r, _)| r.blob_id).collect();
    let blobs = files::blobs::many(tx, &ids).await?;
    let people = crate::ui::documents::names(tx, rows.iter().map(|(r, _)| r.added_by).collect::<Vec<_>>()).await;
    let items = rows
        .iter()
        .map(|(r, may_remove)| {
            let blob = r.blob_id.and_then(|b| blobs.iter().find(|x| x.id == b));
            item(r, blob, *may_remove, people.get(&r.added_by).cloned().unwrap_or_default(), csrf)
        })
        .collect();
    let mut visibilities = Vec::new();
    for v in [Visibility::Internal, Visibility::Vendor, Visibility::Client, Visibility::Partner] {
        if attachments::may_attach(tx, &state.authz, m, document, v, false).await.is_ok() {
            visibilities.push(VisibilityOption { value: v.as_str(), label: visibility_words(v) });
        }
    }
    Ok(AttachmentsView { items, visibilities, limit: size_words(i64::try_from(state.files.max_upload).unwrap_or(0)) })
}

fn item(
    r: &AttachmentRow,
    blob: Option<&files::blobs::Blob>,
    may_remove: bool,
    added_by: String,
    csrf: &str,
) -> AttachmentItem {
    AttachmentItem {
        id: r.id.to_string(),
        name: r.name.clone(),
        kind: blob.map_or("", |b| kind_words(&b.media_type)),
        size: blob.map(|b| size_words(b.size)).unwrap_or_default(),
        visibility: visibility_words(r.visibility),
        added_by,
        when: format::moment(r.created_at),
        stored: blob.is_some(),
        reference: if blob.is_some() { String::new() } else { r.reference.clone() },
        removed: blob.is_some_and(|b| b.deleted_at.is_some()),
        previewable: blob.is_some_and(|b| previewable(&b.media_type)),
        may_remove,
        csrf: csrf.to_owned(),
    }
}

// --- Upload --------------------------------------------------------------------------------

const UPLOAD_ROUTE: &str = "POST /documents/{id}/attachments";

/// The answer the upload script asks for (`X-Upload: row`): the new row, not the whole page.
#[derive(Template, WebTemplate)]
#[template(path = "attachment_row.html")]
pub(crate) struct RowFragment {
    pub a: AttachmentItem,
}

fn unprocessable(field: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message)
        .with_details(serde_json::json!({ "field": field }))
}

pub(crate) fn form_error(e: &multer::Error) -> ApiError {
    match e {
        multer::Error::FieldSizeExceeded { field_name, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the field {} is too long", field_name.as_deref().unwrap_or("?")),
        ),
        multer::Error::UnknownField { field_name } => {
            unprocessable("form", &format!("the form has an unknown field {}", field_name.as_deref().unwrap_or("?")))
        }
        other => ApiError::new(StatusCode::BAD_REQUEST, "bad_form", format!("the form could not be read: {other}")),
    }
}

/// `POST /documents/{id}/attachments` (`multipart/form-data`: csrf_token, name?, visibility?,
/// file) → `303` back to the document, or (`X-Upload: row`) `201` with the new row. Too large
/// → 413, a type outside the allow list → 415, not permitted → 403/404, a document that can no
/// longer change → 409: nothing stored in each case.
pub async fn upload(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let boundary = multipart_boundary(&headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the upload form is sent as multipart/form-data",
        )
    })?;
    let constraints =
        multer::Constraints::new().allowed_fields(vec!["csrf_token", "name", "visibility", "file"]).size_limit(
            multer::SizeLimit::new().for_field("csrf_token", 256).for_field("name", 4096).for_field("visibility", 64),
        );
    let mut form = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let (mut name, mut visibility) = (String::new(), Visibility::Internal);
    let uploaded = loop {
        let Some(field) = form.next_field().await.map_err(|e| form_error(&e))? else {
            return Err(unprocessable("file", "file: choose a file to attach"));
        };
        let field_name = field.name().unwrap_or_default().to_owned();
        match field_name.as_str() {
            "file" => {
                let typed = name.trim();
                let label =
                    if typed.is_empty() { field.file_name().unwrap_or_default().to_owned() } else { typed.to_owned() };
                if label.is_empty() {
                    return Err(unprocessable("file", "file: choose a file to attach"));
                }
                crate::plumbing::access::bounded("name", &label, 1000)?;
                let name = FileName::sanitise(&label);
                break receive(&state, &p, UPLOAD_ROUTE, id, name, visibility, field).await?;
            }
            "name" => name = field.text().await.map_err(|e| form_error(&e))?,
            "visibility" => {
                let v = field.text().await.map_err(|e| form_error(&e))?;
                visibility = v
                    .trim()
                    .parse()
                    .map_err(|_| unprocessable("visibility", "visibility: internal, vendor, client or partner"))?;
            }
            // The CSRF token: checked before the handler ran.
            _ => {
                field.text().await.map_err(|e| form_error(&e))?;
            }
        }
    };
    let wants_row = headers.get("x-upload").and_then(|v| v.to_str().ok()) == Some("row");
    if !wants_row {
        return Ok(Redirect::to(&format!("/documents/{id}?done=attached#attachments")).into_response());
    }
    // The new row as the section shows it (with what this person may do to it).
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let csrf = crate::plumbing::cookies::cookie(&headers, crate::plumbing::cookies::CSRF_COOKIE).unwrap_or_default();
    let view = section(&state, &mut tx, &m, id, &csrf).await?;
    tx.commit().await?;
    let a =
        view.items.into_iter().find(|a| a.id == uploaded.attachment.id.to_string()).ok_or_else(ApiError::not_found)?;
    Ok((StatusCode::CREATED, RowFragment { a }).into_response())
}

// --- Preview and download ------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "attachment_preview.html")]
pub(crate) struct PreviewPage {
    pub chrome: Chrome,
    pub name: String,
    pub kind: &'static str,
    pub size: String,
    pub document_href: String,
    pub download_href: String,
    /// The freshly minted inline link (images only; empty otherwise).
    pub src: String,
}

/// `GET /attachments/{id}/preview`: a PDF → `303` to a fresh inline link for this person; an
/// image → a page showing it from such a link; any other type → a page offering the download.
pub async fn preview(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let minted = mint(&state, &p, "GET /attachments/{id}/preview", id, Disposition::Inline).await?;
    let media = minted.blob.media_type.clone();
    if MediaType::parse(&media) == Some(MediaType::Pdf) {
        return Ok(Redirect::to(&minted.url).into_response());
    }
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let chrome = Chrome::member(&state, &mut tx, &m, &headers, Section::Documents).await?;
    tx.commit().await?;
    let page = PreviewPage {
        chrome,
        name: minted.blob.name.clone(),
        kind: kind_words(&media),
        size: size_words(minted.blob.size),
        document_href: format!("/documents/{}#attachments", minted.document),
        download_href: format!("/attachments/{id}/download"),
        src: if is_image(&media) { minted.url } else { String::new() },
    };
    Ok(page.into_response())
}

/// `GET /attachments/{id}/download` → `303` to a fresh link for this person that saves the file.
pub async fn download(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let minted = mint(&state, &p, "GET /attachments/{id}/download", id, Disposition::Attachment).await?;
    Ok(Redirect::to(&minted.url).into_response())
}

// --- Remove and restore --------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "attachment_remove.html")]
pub(crate) struct RemovePage {
    pub chrome: Chrome,
    pub id: String,
    pub name: String,
    pub document_href: String,
}

/// The attachment `id` with the engine's permit to remove it, in `tx` (a refusal is audited after
/// `tx` is dropped, in its own transaction, as everywhere).
async fn removable(
    state: &AppState,
    p: &Principal,
    mut tx: TenantTx,
    m: &Member,
    route: &str,
    id: Uuid,
) -> Result<(TenantTx, AttachmentRow, authz::Permit), ApiError> {
    match attachments::decide(&mut tx, &state.authz, m, id, Action::AttachmentRemove).await {
        Ok((row, permit)) => {
            row.blob_id.ok_or_else(not_a_file)?;
            Ok((tx, row, permit))
        }
        Err(e) => {
            drop(tx);
            Err(refusal(state, p, route, e).await)
        }
    }
}

/// `GET /attachments/{id}/remove`: asks before removing.
pub async fn confirm_remove(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let (mut tx, row, _permit) = removable(&state, &p, tx, &m, "GET /attachments/{id}/remove", id).await?;
    let chrome = Chrome::member(&state, &mut tx, &m, &headers, Section::Documents).await?;
    p.checked.mark();
    tx.commit().await?;
    let page = RemovePage {
        chrome,
        id: id.to_string(),
        name: row.name,
        document_href: format!("/documents/{}#attachments", row.document_id),
    };
    Ok(page.into_response())
}

/// `POST /attachments/{id}/remove` {csrf_token} → `303` back to the document.
pub async fn remove(State(state): State<AppState>, p: Principal, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    change(&state, &p, "POST /attachments/{id}/remove", id, true).await
}

/// `POST /attachments/{id}/restore` {csrf_token} → `303` back to the document.
pub async fn restore(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    change(&state, &p, "POST /attachments/{id}/restore", id, false).await
}

async fn change(state: &AppState, p: &Principal, route: &str, id: Uuid, remove: bool) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    let (mut tx, row, permit) = removable(state, p, tx, &m, route, id).await?;
    if remove {
        files::blobs::delete(&mut tx, &permit, &m.who).await?;
    } else {
        files::blobs::restore(&mut tx, &permit, &m.who, None).await?;
    }
    p.checked.mark();
    tx.commit().await?;
    let done = if remove { "removed" } else { "restored" };
    Ok(Redirect::to(&format!("/documents/{}?done={done}#attachments", row.document_id)).into_response())
}
