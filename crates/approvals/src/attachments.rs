//! Files attached to vouchers and purchase orders: the questions the policy engine answers
//! about them, and the `document_attachments` rows that point at blobs (`crates/files` stores
//! the blobs themselves and requires the permits made here).
//!
//! An attachment is never more visible than its document: every decision first asks
//! `document.read` (a document the member may not read is `NotFound`, as everywhere), then the
//! `attachment.*` action with the attachment's visibility flag. Attaching needs `document.edit`
//! on an editable document (drafts and queried ones) in an open period; flagging a new file for
//! outside eyes also needs `attachment.share`.

use audit::{Changes, Entity, Event, Who};
use authz::{Action, AttachmentFacts, Engine, Permit, Resource, Visibility};
use chrono::{DateTime, Utc};
use serde::Serialize;
use store::TenantTx;
use uuid::Uuid;

use crate::documents::{self, ApprovalError, Document, Member};
use crate::machine::Status;

/// An attachment as the API shows it (a file's size, hash and type come from its blob).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AttachmentRow {
    pub id: Uuid,
    pub document_id: Uuid,
    pub name: String,
    /// The stored file, or `None` for an attachment by reference.
    pub blob_id: Option<Uuid>,
    /// For attachments by reference: where the file lives.
    pub reference: String,
    pub visibility: Visibility,
    pub added_by: Uuid,
    pub created_at: DateTime<Utc>,
}

fn facts(doc: &Document, tenant: Uuid, row: &AttachmentRow, readable: bool) -> AttachmentFacts {
    AttachmentFacts {
        tenant,
        id: row.id,
        visibility: row.visibility,
        uploader: row.added_by,
        document_raiser: doc.raised_by,
        document_readable: readable,
    }
}

fn visibility(s: &str) -> Result<Visibility, ApprovalError> {
    s.parse().map_err(|_| ApprovalError::Conflict("stored attachment has an unknown visibility".into()))
}

async fn rows(tx: &mut TenantTx, document: Uuid, only: Option<Uuid>) -> Result<Vec<AttachmentRow>, ApprovalError> {
    let rows = sqlx::query!(
        "select id, document_id, name, blob_id, reference, visibility, added_by, created_at
           from document_attachments
          where document_id = $1 and removed_at is null and ($2::uuid is null or id = $2)
          order by created_at, id",
        document,
        only
    )
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(AttachmentRow {
                id: r.id,
                document_id: r.document_id,
                name: r.name,
                blob_id: r.blob_id,
                reference: r.reference,
                visibility: visibility(&r.visibility)?,
                added_by: r.added_by,
                created_at: r.created_at,
            })
        })
        .collect()
}

/// The document's head ([`documents::load_head`]: no lines, attachments or discussion), if `m`
/// may read it (else `NotFound`).
async fn readable(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    id: Uuid,
    lock: bool,
) -> Result<Document, ApprovalError> {
    // The head is all the decisions here read (none of them needs the lines or the discussion).
    let doc = documents::load_head(tx, id, lock).await?;
    let _read = engine
        .decide(&m.subject, Action::DocumentRead, &Resource::Document(&doc.facts(m.subject.tenant)))
        .map_err(|_| ApprovalError::NotFound)?;
    Ok(doc)
}

/// Whether `m` may attach a file with `visibility` to `document` now: the `document.edit`
/// permit every write of the attachment requires. Asked before the upload streams (nothing is
/// stored for someone who may not attach) and again, with the row locked, before it is recorded.
///
/// # Errors
/// `NotFound` (unreadable or another organisation's), `NotEditable`, `PeriodClosed`, `Denied`.
pub async fn may_attach(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    document: Uuid,
    visibility: Visibility,
    lock: bool,
) -> Result<Permit, ApprovalError> {
    let doc = readable(tx, engine, m, document, lock).await?;
    if !matches!(doc.status, Status::Draft | Status::Queried) {
        return Err(ApprovalError::NotEditable { status: doc.status });
    }
    documents::ensure_period_open(tx, doc.document_date).await?;
    let tenant = m.subject.tenant;
    let permit = engine.decide(&m.subject, Action::DocumentEdit, &Resource::Document(&doc.facts(tenant)))?;
    if visibility != Visibility::Internal {
        let prospective = AttachmentFacts {
            tenant,
            id: Uuid::nil(),
            visibility,
            uploader: m.subject.user,
            document_raiser: doc.raised_by,
            document_readable: true,
        };
        let _share = engine.decide(&m.subject, Action::AttachmentShare, &Resource::Attachment(&prospective))?;
    }
    Ok(permit)
}

/// A stored file to attach (from `files::upload`).
#[derive(Debug, Clone)]
pub struct NewFile<'a> {
    pub blob_id: Uuid,
    pub name: &'a str,
    pub media_type: &'a str,
    pub sha256: &'a [u8; 32],
    pub visibility: Visibility,
}

/// Inserts the attachment row for a recorded blob (`permit`: from [`may_attach`]).
///
/// # Errors
/// `Permit` for another permit; database failures.
pub async fn add_file(
    tx: &mut TenantTx,
    permit: &Permit,
    document: Uuid,
    file: &NewFile<'_>,
) -> Result<AttachmentRow, ApprovalError> {
    permit.require(Action::DocumentEdit, document)?;
    let tenant = tx.tenant().as_uuid();
    let id = Uuid::now_v7();
    let name: String = file.name.chars().take(200).collect();
    let row = sqlx::query!(
        "insert into document_attachments
                (tenant_id, document_id, id, name, reference, media_type, sha256, added_by, blob_id, visibility)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         returning created_at",
        tenant,
        document,
        id,
        name,
        format!("blob:{}", file.blob_id),
        file.media_type,
        &file.sha256[..],
        permit.user(),
        file.blob_id,
        file.visibility.as_str()
    )
    .fetch_one(tx.conn())
    .await?;
    Ok(AttachmentRow {
        id,
        document_id: document,
        name,
        blob_id: Some(file.blob_id),
        reference: format!("blob:{}", file.blob_id),
        visibility: file.visibility,
        added_by: permit.user(),
        created_at: row.created_at,
    })
}

/// An attachment by reference (no stored file yet), for the operator who stores its file
/// (`countersign admin attach-reference`). `None` when there is no such attachment in the
/// transaction's organisation, or when it already holds a stored file.
///
/// # Errors
/// Database failures.
pub async fn reference(tx: &mut TenantTx, id: Uuid) -> Result<Option<AttachmentRow>, ApprovalError> {
    let Some(document) =
        sqlx::query_scalar!("select document_id from document_attachments where id = $1 and removed_at is null", id)
            .fetch_optional(tx.conn())
            .await?
    else {
        return Ok(None);
    };
    Ok(rows(tx, document, Some(id)).await?.pop().filter(|r| r.blob_id.is_none()))
}

/// Makes attachment `row` (by reference) hold the stored `file`: its `blob_id`, type and hash
/// are set and its reference becomes `blob:<id>`; `attachment.reference_stored` records the old
/// reference and the file's SHA-256. `permit`: `document.edit` on the row's document (the host
/// operator's, from the command line).
///
/// # Errors
/// `Permit`; `Conflict` when the row gained a file meanwhile; database and audit failures.
pub async fn store_reference(
    tx: &mut TenantTx,
    permit: &Permit,
    who: &Who,
    row: &AttachmentRow,
    file: &NewFile<'_>,
) -> Result<AttachmentRow, ApprovalError> {
    permit.require(Action::DocumentEdit, row.document_id)?;
    let reference = format!("blob:{}", file.blob_id);
    let updated = sqlx::query!(
        "update document_attachments set blob_id = $3, reference = $4, media_type = $5, sha256 = $6
          where document_id = $1 and id = $2 and blob_id is null and removed_at is null",
        row.document_id,
        row.id,
        file.blob_id,
        reference,
        file.media_type,
        &file.sha256[..]
    )
    .execute(tx.conn())
    .await?
    .rows_affected();
    if updated != 1 {
        return Err(ApprovalError::Conflict("the attachment is no longer a reference without a stored file".into()));
    }
    let changes = Changes::none()
        .field("reference", row.reference.as_str(), reference.as_str())
        .field("blob_id", None::<Uuid>, file.blob_id)
        .field("sha256", None::<&str>, hex::encode(file.sha256).as_str())
        .field("document_id", None::<Uuid>, row.document_id);
    audit::record_by(tx, who, &Event::new("attachment.reference_stored", Entity::of("attachment", row.id)?, changes)?)
        .await?;
    Ok(AttachmentRow { blob_id: Some(file.blob_id), reference, ..row.clone() })
}

/// The attachments of `document` that `m` may see.
///
/// # Errors
/// `NotFound` when `m` may not read the document.
pub async fn list(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    document: Uuid,
) -> Result<Vec<AttachmentRow>, ApprovalError> {
    let doc = readable(tx, engine, m, document, false).await?;
    let tenant = m.subject.tenant;
    Ok(rows(tx, document, None)
        .await?
        .into_iter()
        .filter(|r| {
            engine
                .decide(&m.subject, Action::AttachmentRead, &Resource::Attachment(&facts(&doc, tenant, r, true)))
                .is_ok()
        })
        .collect())
}

/// The attachments of `document` that `m` may see (as [`list`]), each with whether the policy
/// engine also permits `action` on it (the document page offers Remove and Restore by it).
///
/// # Errors
/// `NotFound` when `m` may not read the document.
pub async fn list_permitting(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    document: Uuid,
    action: Action,
) -> Result<Vec<(AttachmentRow, bool)>, ApprovalError> {
    let doc = readable(tx, engine, m, document, false).await?;
    let tenant = m.subject.tenant;
    Ok(rows(tx, document, None)
        .await?
        .into_iter()
        .filter_map(|r| {
            let f = facts(&doc, tenant, &r, true);
            let _read = engine.decide(&m.subject, Action::AttachmentRead, &Resource::Attachment(&f)).ok()?;
            let may = engine.decide(&m.subject, action, &Resource::Attachment(&f)).is_ok();
            Some((r, may))
        })
        .collect())
}

/// The policy engine's answer for `action` on attachment `id`, with the attachment. A read
/// refused is `NotFound` (the file does not exist for this person); other refusals are `Denied`.
///
/// # Errors
/// `NotFound`, `Denied`.
pub async fn decide(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    id: Uuid,
    action: Action,
) -> Result<(AttachmentRow, Permit), ApprovalError> {
    let document =
        sqlx::query_scalar!("select document_id from document_attachments where id = $1 and removed_at is null", id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(ApprovalError::NotFound)?;
    let doc = readable(tx, engine, m, document, action != Action::AttachmentRead).await?;
    let row = rows(tx, document, Some(id)).await?.pop().ok_or(ApprovalError::NotFound)?;
    let tenant = m.subject.tenant;
    let f = facts(&doc, tenant, &row, true);
    let read = engine.decide(&m.subject, Action::AttachmentRead, &Resource::Attachment(&f));
    if action == Action::AttachmentRead {
        return read.map(|p| (row, p)).map_err(|_| ApprovalError::NotFound);
    }
    let _read = read.map_err(|_| ApprovalError::NotFound)?;
    let permit = engine.decide(&m.subject, action, &Resource::Attachment(&f))?;
    Ok((row, permit))
}

/// The attachment holding `blob` (`None`: no attachment of this organisation holds it).
///
/// # Errors
/// Database failures.
pub async fn of_blob(tx: &mut TenantTx, blob: Uuid) -> Result<Option<Uuid>, ApprovalError> {
    Ok(sqlx::query_scalar!("select id from document_attachments where blob_id = $1 and removed_at is null", blob)
        .fetch_optional(tx.conn())
        .await?)
}

/// Changes an attachment's visibility (`permit`: `attachment.share` from [`decide`]), audited.
///
/// # Errors
/// `Permit`; database and audit failures.
pub async fn set_visibility(
    tx: &mut TenantTx,
    permit: &Permit,
    who: &Who,
    row: &AttachmentRow,
    to: Visibility,
) -> Result<AttachmentRow, ApprovalError> {
    permit.require(Action::AttachmentShare, row.id)?;
    if row.visibility == to {
        return Ok(row.clone());
    }
    sqlx::query!(
        "update document_attachments set visibility = $3 where document_id = $1 and id = $2",
        row.document_id,
        row.id,
        to.as_str()
    )
    .execute(tx.conn())
    .await?;
    let changes = Changes::none().field("visibility", row.visibility.as_str(), to.as_str()).field(
        "document_id",
        None::<Uuid>,
        row.document_id,
    );
    audit::record_by(
        tx,
        who,
        &Event::new("attachment.visibility_changed", Entity::of("attachment", row.id)?, changes)?,
    )
    .await?;
    Ok(AttachmentRow { visibility: to, ..row.clone() })
}
