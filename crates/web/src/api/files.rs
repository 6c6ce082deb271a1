//! Files attached to vouchers and purchase orders, over HTTP: upload (a streamed body, never
//! buffered whole), list, a signed link per person, the download behind it (single ranges),
//! soft delete, restore, visibility.
//!
//! Every route is `Guard::Domain`: the approvals crate asks the policy engine about the
//! document and the attachment (`document.edit`, `attachment.read|share|remove`), and the files
//! crate requires the permit it returns. A download needs both a valid link naming the caller
//! and the caller's own session, and asks the engine again: a link minted before access was lost
//! fails. Uploads, downloads, deletes and restores are audited with the file's SHA-256.

use approvals::attachments::{self, AttachmentRow, NewFile};
use approvals::documents::ApprovalError;
use authz::{Action, Visibility};
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use files::download::Want;
use files::{Disposition, FileName, FilesError};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::api::documents::{member, refusal};
use crate::api::idempotency::json_response;
use crate::plumbing::access::{ListPage, json, path_id};
use crate::{ApiError, AppState, Principal};

fn encode<T: Serialize>(v: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(|e| {
        tracing::error!(error = %e, "response encoding");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    })
}

fn visibility(s: Option<&str>) -> Result<Visibility, ApiError> {
    s.map_or(Ok(Visibility::Internal), |v| {
        v.parse().map_err(|_| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "visibility: internal, vendor, client or partner",
            )
            .with_details(serde_json::json!({ "field": "visibility" }))
        })
    })
}

fn people_only(p: &Principal) -> Result<crate::plumbing::auth::Person, ApiError> {
    p.person().ok_or_else(|| {
        ApiError::new(StatusCode::FORBIDDEN, "user_required", "files are handled by signed-in people, not API keys")
    })
}

/// An attachment with its stored file (absent for attachments by reference).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AttachmentFile {
    #[serde(flatten)]
    pub(crate) attachment: AttachmentRow,
    pub(crate) file: Option<files::blobs::Blob>,
}

// --- Upload --------------------------------------------------------------------------------

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadQuery {
    /// The file's name: a label only (sanitised; never part of a storage path).
    name: String,
    /// `internal` (default), `vendor`, `client` or `partner`.
    visibility: Option<String>,
}

const UPLOAD_ROUTE: &str = "POST /api/v1/documents/{id}/attachments/files";

/// `POST /api/v1/documents/{id}/attachments/files?name=&visibility=` with the file as the body
/// (`application/octet-stream`) → 201 with the attachment and its file. The body streams: past
/// the limit (`--max-upload-mib`, default 25) the answer is 413 `file_too_large` at once; content
/// outside the allow list (sniffed, whatever the name or `Content-Type`) is 415
/// `file_type_refused`.
pub async fn upload(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<UploadQuery>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", e.body_text()))?;
    crate::plumbing::access::bounded("name", &q.name, 1000)?;
    let name = FileName::sanitise(&q.name);
    let visibility = visibility(q.visibility.as_deref())?;
    let v = receive(&state, &p, UPLOAD_ROUTE, id, name, visibility, body.into_data_stream()).await?;
    Ok(json_response(StatusCode::CREATED, encode(&v)?))
}

/// Streams `body` into a new file attached to document `id` with `visibility`, asking the
/// policy engine before a byte is read (nothing is stored for someone who may not attach) and
/// again, with the document locked, before it is recorded (it may have moved on meanwhile; the
/// stored blob is then removed again). The API's upload and the document page's form
/// (`crate::ui::attachments`) both come here. Marks the request checked on success.
pub(crate) async fn receive<S, E>(
    state: &AppState,
    p: &Principal,
    route: &str,
    id: uuid::Uuid,
    name: FileName,
    visibility: Visibility,
    body: S,
) -> Result<AttachmentFile, ApiError>
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let svc = state.files.clone();

    // Before a byte is read: may this person attach here at all? (Nothing stored otherwise.)
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    if let Err(e) = attachments::may_attach(&mut tx, &state.authz, &m, id, visibility, false).await {
        drop(tx);
        return Err(refusal(state, p, route, e).await);
    }
    let key = files::keys::current(&mut tx, &svc.keys).await?;
    tx.commit().await?;

    let stored = files::upload::put(&svc.storage, &key, name, body, svc.max_upload).await?;

    // Recorded under the row lock, after asking again (the document may have moved on).
    let recorded = async {
        let mut tx = state.store.tenant_tx(p.tenant).await?;
        let permit = match attachments::may_attach(&mut tx, &state.authz, &m, id, visibility, true).await {
            Ok(permit) => permit,
            Err(e) => {
                drop(tx);
                return Err(refusal(state, p, route, e).await);
            }
        };
        let blob = files::blobs::record(&mut tx, &permit, id, &m.who, &stored).await?;
        let file = NewFile {
            blob_id: blob.id,
            name: &blob.name,
            media_type: &blob.media_type,
            sha256: &stored.sha256,
            visibility,
        };
        let row = attachments::add_file(&mut tx, &permit, id, &file).await.map_err(approval_error)?;
        tx.commit().await?;
        Ok::<_, ApiError>(AttachmentFile { attachment: row, file: Some(blob) })
    }
    .await;
    match recorded {
        Ok(v) => {
            p.checked.mark();
            Ok(v)
        }
        Err(e) => {
            if let Err(rm) = svc.storage.remove(stored.tenant, stored.id).await {
                tracing::warn!(error = %rm, blob = %stored.id, "removing an unrecorded upload failed");
            }
            Err(e)
        }
    }
}

/// Errors that are not refusals (database, audit) from the approvals crate.
pub(crate) fn approval_error(e: ApprovalError) -> ApiError {
    match e {
        ApprovalError::NotFound => ApiError::not_found(),
        ApprovalError::Audit(a) => a.into(),
        ApprovalError::Store(s) => s.into(),
        ApprovalError::Database(d) => store::StoreError::from(d).into(),
        other => {
            tracing::error!(error = %other, "attachment write");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
        }
    }
}

// --- List ----------------------------------------------------------------------------------

/// `GET /api/v1/documents/{id}/attachments` → `{items, next_cursor: null}`: the attachments of
/// the document the caller may see (files with size, SHA-256, type and whether deleted).
pub async fn list(State(state): State<AppState>, p: Principal, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let rows = match attachments::list(&mut tx, &state.authz, &m, id).await {
        Ok(r) => r,
        Err(e) => {
            drop(tx);
            return Err(refusal(&state, &p, "GET /api/v1/documents/{id}/attachments", e).await);
        }
    };
    let ids: Vec<uuid::Uuid> = rows.iter().filter_map(|r| r.blob_id).collect();
    let mut blobs = files::blobs::many(&mut tx, &ids).await?;
    tx.commit().await?;
    let items = rows
        .into_iter()
        .map(|r| {
            let file = r.blob_id.and_then(|b| blobs.iter().position(|x| x.id == b)).map(|i| blobs.swap_remove(i));
            AttachmentFile { attachment: r, file }
        })
        .collect();
    p.checked.mark();
    Ok(json_response(StatusCode::OK, encode(&ListPage::all(items))?))
}

// --- Links and downloads -------------------------------------------------------------------

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkBody {
    /// `inline` (preview) or `attachment` (save; default).
    #[serde(default)]
    disposition: Option<Disposition>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct LinkMinted {
    /// Relative URL of the download; valid for the caller only, with their session.
    url: String,
    expires_at: DateTime<Utc>,
    disposition: Disposition,
}

/// `POST /api/v1/attachments/{id}/links` {disposition?} → 201 {url, expires_at}: a download link
/// for the caller alone, valid five minutes.
pub async fn link(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let req: LinkBody = if body.iter().all(u8::is_ascii_whitespace) { LinkBody::default() } else { json(&body)? };
    let disposition = req.disposition.unwrap_or(Disposition::Attachment);
    let m = mint(&state, &p, "POST /api/v1/attachments/{id}/links", id, disposition).await?;
    let minted = LinkMinted { url: m.url, expires_at: m.link.expires_at, disposition };
    Ok(json_response(StatusCode::CREATED, encode(&minted)?))
}

/// A fresh link to attachment `id`'s file for the caller alone (`/api/v1/files/<token>`), valid
/// five minutes, after the policy engine let them read the attachment; with the file's row.
/// The API's links and the document page's Preview and Download (`crate::ui::attachments`)
/// both come here. Marks the request checked.
pub(crate) async fn mint(
    state: &AppState,
    p: &Principal,
    route: &str,
    id: uuid::Uuid,
    disposition: Disposition,
) -> Result<Minted, ApiError> {
    let person = people_only(p)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    let row = match attachments::decide(&mut tx, &state.authz, &m, id, Action::AttachmentRead).await {
        Ok((row, _permit)) => row,
        Err(e) => {
            drop(tx);
            return Err(refusal(state, p, route, e).await);
        }
    };
    let blob_id = row.blob_id.ok_or_else(not_a_file)?;
    let blob = files::blobs::get(&mut tx, blob_id).await?.ok_or_else(ApiError::not_found)?;
    if blob.deleted_at.is_some() {
        return Err(FilesError::Deleted.into());
    }
    tx.commit().await?;
    let (token, link) = state.files.links.mint(
        p.tenant.as_uuid(),
        blob_id,
        person.user,
        disposition,
        Utc::now(),
        files::links::DEFAULT_LIFETIME,
    )?;
    p.checked.mark();
    Ok(Minted { url: format!("/api/v1/files/{token}"), link, blob, document: row.document_id })
}

/// A link minted for the caller: its URL, what it grants, the file, and the document the file
/// is attached to.
pub(crate) struct Minted {
    pub(crate) url: String,
    pub(crate) link: files::Link,
    pub(crate) blob: files::blobs::Blob,
    pub(crate) document: uuid::Uuid,
}

/// `GET /api/v1/files/{token}` (with `Range: bytes=a-b` for one range) → the file (200, or 206
/// with `Content-Range`). The link must verify, name the caller and their organisation, be
/// unexpired, and the policy engine must still let the caller see the attachment.
pub async fn download(
    State(state): State<AppState>,
    p: Principal,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let person = people_only(&p)?;
    let link = state.files.links.verify(&token, Utc::now())?;
    if link.person != person.user || link.tenant != p.tenant.as_uuid() {
        return Err(FilesError::LinkInvalid.into());
    }
    let want = Want::parse(headers.get(header::RANGE).and_then(|v| v.to_str().ok()));
    // A vendor's or client's person reads through their relation (the database shows them only
    // what is addressed to it; the engine asks `portal.document_read`, not `document.read`).
    let outside = matches!(p.role, identity::Role::Vendor | identity::Role::Client);
    let mut tx = if outside {
        crate::api::portals::relation_tx(&state, &p).await?
    } else {
        state.store.tenant_tx(p.tenant).await?
    };
    let m = member(&p, &mut tx).await?;
    let attachment =
        attachments::of_blob(&mut tx, link.blob).await.map_err(approval_error)?.ok_or_else(ApiError::not_found)?;
    let decided = if outside {
        approvals::portal::attachment(&mut tx, &state.authz, &m, attachment).await
    } else {
        attachments::decide(&mut tx, &state.authz, &m, attachment, Action::AttachmentRead).await
    };
    let permit = match decided {
        Ok((_, permit)) => permit,
        Err(e) => {
            drop(tx);
            return Err(refusal(&state, &p, "GET /api/v1/files/{token}", e).await);
        }
    };
    let svc = state.files.clone();
    let opened = match files::download::open(&mut tx, &svc.storage, &svc.keys, &link, &permit, want).await {
        Ok(d) => d,
        Err(FilesError::Range { size }) => {
            // 416 carries the size the client may ask within.
            let mut r = ApiError::from(FilesError::Range { size }).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
        Err(e) => return Err(e.into()),
    };
    files::blobs::record_download(&mut tx, &m.who, &opened.blob, link.disposition, opened.range).await?;
    tx.commit().await?;
    p.checked.mark();

    let media = files::MediaType::parse(&opened.blob.media_type).unwrap_or(files::MediaType::Text);
    let name = FileName::stored(opened.blob.name.clone());
    let status = if opened.range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    let body = Body::from_stream(opened.body.map_err(|e| {
        tracing::error!(error = %e, "a download stopped: the stored file failed its integrity check");
        std::io::Error::other(e.to_string())
    }));
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media.content_type()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(opened.len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    if let Ok(v) = HeaderValue::from_str(&name.content_disposition(link.disposition)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some((a, b)) = opened.range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{}", opened.blob.size))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    // Nothing in a file may run: a sandbox on top of the API's policy, even for inline previews.
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    Ok(r)
}

// --- Delete, restore, visibility -----------------------------------------------------------

/// Decides `action` on attachment `id` and hands the permit to `then` in the same transaction.
async fn with_permit<T: Serialize>(
    state: &AppState,
    p: &Principal,
    route: &str,
    id: uuid::Uuid,
    action: Action,
    then: impl AsyncFnOnce(&mut store::TenantTx, &AttachmentRow, &authz::Permit, &audit::Who) -> Result<T, ApiError>,
) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    let (row, permit) = match attachments::decide(&mut tx, &state.authz, &m, id, action).await {
        Ok(v) => v,
        Err(e) => {
            drop(tx);
            return Err(refusal(state, p, route, e).await);
        }
    };
    let value = then(&mut tx, &row, &permit, &m.who).await?;
    tx.commit().await?;
    p.checked.mark();
    Ok(json_response(StatusCode::OK, encode(&value)?))
}

pub(crate) fn not_a_file() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "not_a_file", "this attachment names a file by reference; nothing is stored")
}

/// `DELETE /api/v1/attachments/{id}` → 200 with the attachment and its file, now deleted
/// (restorable until purged after the retention period).
pub async fn delete(State(state): State<AppState>, p: Principal, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    with_permit(
        &state,
        &p,
        "DELETE /api/v1/attachments/{id}",
        id,
        Action::AttachmentRemove,
        async |tx, row, permit, who| {
            row.blob_id.ok_or_else(not_a_file)?;
            let blob = files::blobs::delete(tx, permit, who).await?;
            Ok(AttachmentFile { attachment: row.clone(), file: Some(blob) })
        },
    )
    .await
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestoreBody {
    /// Why it comes back (kept in the audit event).
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/v1/attachments/{id}/restore` {reason?} → 200 with the attachment and its file,
/// restored (410 `file_deleted` once purged).
pub async fn restore(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let req: RestoreBody = if body.iter().all(u8::is_ascii_whitespace) { RestoreBody::default() } else { json(&body)? };
    if let Some(r) = &req.reason {
        crate::plumbing::access::bounded("reason", r, 200)?;
    }
    with_permit(
        &state,
        &p,
        "POST /api/v1/attachments/{id}/restore",
        id,
        Action::AttachmentRemove,
        async |tx, row, permit, who| {
            row.blob_id.ok_or_else(not_a_file)?;
            let blob = files::blobs::restore(tx, permit, who, req.reason.as_deref()).await?;
            Ok(AttachmentFile { attachment: row.clone(), file: Some(blob) })
        },
    )
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VisibilityBody {
    visibility: Visibility,
}

/// `PUT /api/v1/attachments/{id}/visibility` {visibility} → 200 with the attachment.
pub async fn set_visibility(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let req: VisibilityBody = json(&body)?;
    with_permit(
        &state,
        &p,
        "PUT /api/v1/attachments/{id}/visibility",
        id,
        Action::AttachmentShare,
        async |tx, row, permit, who| {
            attachments::set_visibility(tx, permit, who, row, req.visibility).await.map_err(approval_error)
        },
    )
    .await
}
