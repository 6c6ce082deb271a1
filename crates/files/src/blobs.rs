//! The `blobs` rows: recording an upload, soft delete and restore (by permit), downloads in the
//! ledger, and the purge of blobs deleted longer ago than the retention period (which removes
//! the object). Every one of these is an audit event carrying the file's SHA-256.

use audit::{Changes, Entity, Event, Who};
use authz::{Action, Permit};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use store::{BypassTx, TenantId, TenantTx};
use uuid::Uuid;

use crate::FilesError;
use crate::links::Disposition;
use crate::storage::Storage;
use crate::upload::Stored;

/// A stored file as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Blob {
    pub id: Uuid,
    /// Bytes of plaintext.
    pub size: i64,
    /// SHA-256 of the plaintext, hex.
    pub sha256: String,
    /// Sniffed from the content at upload.
    pub media_type: String,
    /// The uploader's file name, sanitised.
    pub name: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_by: Option<Uuid>,
    pub purged_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub key_id: Uuid,
}

fn entity(id: Uuid) -> Result<Entity, FilesError> {
    Ok(Entity::of("file", id)?)
}

/// Records an upload stored by [`crate::upload::put`] as a blob attached to `document`, in the
/// caller's transaction, with its `file.uploaded` event. The permit is the `document.edit` the
/// policy engine gave for that document.
///
/// # Errors
/// `Permit` for any other permit; database and audit failures.
pub async fn record(
    tx: &mut TenantTx,
    permit: &Permit,
    document: Uuid,
    who: &Who,
    stored: &Stored,
) -> Result<Blob, FilesError> {
    record_for(tx, permit, document, who, stored, permit.user()).await
}

/// As [`record`], the blob credited to `owner` (a member) rather than the permit's holder: the
/// host operator storing the file of an attachment made by reference credits the member who
/// attached it (`countersign admin attach-reference`); the ledger event names the operator.
///
/// # Errors
/// As [`record`].
pub async fn record_for(
    tx: &mut TenantTx,
    permit: &Permit,
    document: Uuid,
    who: &Who,
    stored: &Stored,
    owner: Uuid,
) -> Result<Blob, FilesError> {
    // A member editing the document, or an outside party adding to a document addressed to
    // their relation (issue 16's portals).
    permit.require(Action::DocumentEdit, document).or_else(|_| permit.require(Action::PortalContribute, document))?;
    insert(tx, who, stored, owner, ("document_id", document)).await
}

/// Records an upload stored by [`crate::upload::put`] as proof of performance of an MDF claim
/// (issue 17), in the caller's transaction, with its `file.uploaded` event. The permit is the
/// partner person's `mdf.claim`; the programmes crate checked the claim is theirs and open.
///
/// # Errors
/// `Permit` for any other permit; database and audit failures.
pub async fn record_proof(
    tx: &mut TenantTx,
    permit: &Permit,
    claim: Uuid,
    who: &Who,
    stored: &Stored,
) -> Result<Blob, FilesError> {
    permit.require(Action::MdfClaim, tx.tenant().as_uuid())?;
    insert(tx, who, stored, permit.user(), ("mdf_claim_id", claim)).await
}

async fn insert(
    tx: &mut TenantTx,
    who: &Who,
    stored: &Stored,
    owner: Uuid,
    (held_by, holder): (&str, Uuid),
) -> Result<Blob, FilesError> {
    if stored.tenant != tx.tenant().as_uuid() {
        return Err(FilesError::NotFound);
    }
    let tenant = stored.tenant;
    let size = i64::try_from(stored.size).map_err(|_| crate::error::invalid("size", "too large"))?;
    let row = sqlx::query!(
        "insert into blobs (tenant_id, id, key_id, size_bytes, sha256, media_type, name, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         returning created_at",
        tenant,
        stored.id,
        stored.key_id,
        size,
        &stored.sha256[..],
        stored.media_type.as_str(),
        stored.name.as_str(),
        owner
    )
    .fetch_one(tx.conn())
    .await?;
    let sha = hex::encode(stored.sha256);
    let changes = Changes::none()
        .field(held_by, None::<Uuid>, holder)
        .field("name", None::<&str>, stored.name.as_str())
        .field("size", None::<i64>, size)
        .field("sha256", None::<&str>, &sha)
        .field("media_type", None::<&str>, stored.media_type.as_str());
    audit::record_by(tx, who, &Event::new("file.uploaded", entity(stored.id)?, changes)?).await?;
    Ok(Blob {
        id: stored.id,
        size,
        sha256: sha,
        media_type: stored.media_type.as_str().to_owned(),
        name: stored.name.as_str().to_owned(),
        created_by: owner,
        created_at: row.created_at,
        deleted_at: None,
        deleted_by: None,
        purged_at: None,
        key_id: stored.key_id,
    })
}

/// One blob of the transaction's organisation.
///
/// # Errors
/// Database failures.
pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<Blob>, FilesError> {
    Ok(many(tx, &[id]).await?.pop())
}

/// The blobs with these ids (others' and unknown ids are simply absent).
///
/// # Errors
/// Database failures.
pub async fn many(tx: &mut TenantTx, ids: &[Uuid]) -> Result<Vec<Blob>, FilesError> {
    let rows = sqlx::query!(
        "select id, size_bytes, sha256, media_type, name, created_by, created_at, deleted_at, deleted_by, purged_at,
                key_id
           from blobs where id = any($1) order by created_at, id",
        ids
    )
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Blob {
            id: r.id,
            size: r.size_bytes,
            sha256: hex::encode(r.sha256),
            media_type: r.media_type,
            name: r.name,
            created_by: r.created_by,
            created_at: r.created_at,
            deleted_at: r.deleted_at,
            deleted_by: r.deleted_by,
            purged_at: r.purged_at,
            key_id: r.key_id,
        })
        .collect())
}

/// The blob an attachment holds (`None`: no such attachment, or one by reference).
///
/// # Errors
/// Database failures.
pub async fn of_attachment(tx: &mut TenantTx, attachment: Uuid) -> Result<Option<Uuid>, FilesError> {
    Ok(sqlx::query_scalar!("select blob_id from document_attachments where id = $1", attachment)
        .fetch_optional(tx.conn())
        .await?
        .flatten())
}

/// Soft-deletes the blob of the permit's attachment (`attachment.remove`); restorable until
/// purged. Deleting a deleted blob changes nothing.
///
/// # Errors
/// `Permit`, `NotFound`, `Deleted` (purged), database and audit failures.
pub async fn delete(tx: &mut TenantTx, permit: &Permit, who: &Who) -> Result<Blob, FilesError> {
    set_deleted(tx, permit, who, true, None).await
}

/// Undoes [`delete`] (`attachment.remove`), unless the blob was purged.
///
/// # Errors
/// As [`delete`].
pub async fn restore(tx: &mut TenantTx, permit: &Permit, who: &Who, reason: Option<&str>) -> Result<Blob, FilesError> {
    set_deleted(tx, permit, who, false, reason).await
}

async fn set_deleted(
    tx: &mut TenantTx,
    permit: &Permit,
    who: &Who,
    delete: bool,
    reason: Option<&str>,
) -> Result<Blob, FilesError> {
    permit.require(Action::AttachmentRemove, permit.resource())?;
    let id = of_attachment(tx, permit.resource()).await?.ok_or(FilesError::NotFound)?;
    let before = sqlx::query!("select deleted_at, purged_at from blobs where id = $1 for update", id)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(FilesError::NotFound)?;
    if before.purged_at.is_some() {
        return Err(FilesError::Deleted);
    }
    if before.deleted_at.is_some() != delete {
        if delete {
            sqlx::query!("update blobs set deleted_at = now(), deleted_by = $2 where id = $1", id, permit.user())
                .execute(tx.conn())
                .await?;
        } else {
            sqlx::query!("update blobs set deleted_at = null, deleted_by = null where id = $1", id)
                .execute(tx.conn())
                .await?;
        }
    }
    let blob = get(tx, id).await?.ok_or(FilesError::NotFound)?;
    if before.deleted_at.is_some() != delete {
        let action = if delete { "file.deleted" } else { "file.restored" };
        let changes = Changes::none()
            .field("attachment_id", None::<Uuid>, permit.resource())
            .field("deleted", !delete, delete)
            .field("sha256", None::<&str>, &blob.sha256);
        let mut event = Event::new(action, entity(id)?, changes)?;
        if let Some(r) = reason.map(str::trim).filter(|r| !r.is_empty()) {
            event = event.with_reason(r)?;
        }
        audit::record_by(tx, who, &event).await?;
    }
    Ok(blob)
}

/// Records a download (`file.downloaded`: the person, disposition, range and SHA-256).
///
/// # Errors
/// Audit failures.
pub async fn record_download(
    tx: &mut TenantTx,
    who: &Who,
    blob: &Blob,
    disposition: Disposition,
    range: Option<(u64, u64)>,
) -> Result<(), FilesError> {
    let mut changes = Changes::none()
        .field("sha256", None::<&str>, &blob.sha256)
        .field("disposition", None::<&str>, disposition.as_str())
        .field("name", None::<&str>, &blob.name);
    if let Some((a, b)) = range {
        changes = changes.field("range", None::<&str>, format!("bytes={a}-{b}"));
    }
    audit::record_by(tx, who, &Event::new("file.downloaded", entity(blob.id)?, changes)?).await?;
    Ok(())
}

/// Purges blobs soft-deleted more than `older_than` ago, across organisations: removes each
/// object from storage, stamps `purged_at` and records `file.purged` in its organisation's
/// ledger. Returns how many were purged.
///
/// # Errors
/// `Invalid` for a retention under a day; storage, database and audit failures (objects removed
/// before a failure are purged again, harmlessly, by the next run).
pub async fn purge(tx: &mut BypassTx, storage: &Storage, who: &Who, older_than: Duration) -> Result<u64, FilesError> {
    purge_with_progress(tx, storage, who, older_than, &mut |_, _| {}).await
}

/// [`purge`], telling `progress` (files purged so far, files due) after each file.
///
/// # Errors
/// As [`purge`].
pub async fn purge_with_progress(
    tx: &mut BypassTx,
    storage: &Storage,
    who: &Who,
    older_than: Duration,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<u64, FilesError> {
    if older_than < Duration::days(1) {
        return Err(crate::error::invalid("older_than", "retention must be at least one day"));
    }
    purge_due(tx, storage, who, Utc::now() - older_than, progress).await
}

/// [`purge`] with the cut-off given (tests use a cut-off in the future).
///
/// # Errors
/// As [`purge`].
pub async fn purge_before(
    tx: &mut BypassTx,
    storage: &Storage,
    who: &Who,
    cutoff: DateTime<Utc>,
) -> Result<u64, FilesError> {
    purge_due(tx, storage, who, cutoff, &mut |_, _| {}).await
}

async fn purge_due(
    tx: &mut BypassTx,
    storage: &Storage,
    who: &Who,
    cutoff: DateTime<Utc>,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<u64, FilesError> {
    let due = sqlx::query!(
        "select tenant_id, id, sha256 from blobs
          where deleted_at is not null and deleted_at < $1 and purged_at is null
          order by tenant_id, id for update",
        cutoff
    )
    .fetch_all(tx.conn())
    .await?;
    let total = due.len() as u64;
    progress(0, total);
    for (done, b) in (1..).zip(&due) {
        storage.remove(b.tenant_id, b.id).await?;
        sqlx::query!("update blobs set purged_at = now() where tenant_id = $1 and id = $2", b.tenant_id, b.id)
            .execute(tx.conn())
            .await?;
        let tenant = TenantId::from_uuid(b.tenant_id).map_err(|_| FilesError::NotFound)?;
        let changes =
            Changes::none().field("purged", false, true).field("sha256", None::<&str>, hex::encode(&b.sha256));
        let event = Event::new("file.purged", entity(b.id)?, changes)?;
        audit::record_for(tx, tenant, &who.actor, &who.origin, &event).await?;
        progress(done, total);
    }
    Ok(total)
}
