//! Documents addressed to relations (issue 16's portals): the organisation addresses a document
//! to a vendor or client; that relation's people read it, see the files flagged for them, and
//! add their own (a vendor's invoice against a purchase order).
//!
//! Two locks, each enough alone for what it guards. The database: a portal transaction
//! (`Store::relation_tx` for a relation's person) shows only its own relation's addressings,
//! the documents addressed to it and, of their attachments, none uploaded by another relation
//! (`relation_isolation`, `relation_reach`, migration 0028). The policy engine: every read and
//! every upload asks `portal.document_read` / `portal.contribute` about the addressing (the
//! relation and its kind against the asker's role and own relation, read back from the
//! database), then `attachment.read` per file (internal files never leave the organisation).
//! A refusal is `NotFound`: what is not shared does not exist for the asker.

use audit::{Changes, Entity, Event, Who};
use authz::{Action, AttachmentFacts, Engine, Permit, Resource, SharedFacts, Visibility};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use store::TenantTx;
use uuid::Uuid;

use crate::attachments::{AttachmentRow, NewFile};
use crate::documents::{self, ApprovalError, Kind, Line, Member};
use crate::machine::Status;

/// A document as a relation's person sees it: what was addressed to them, without the
/// organisation's discussion, approvals or internal files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SharedDocument {
    pub id: Uuid,
    pub number: String,
    pub kind: Kind,
    pub title: String,
    pub document_date: NaiveDate,
    pub currency: String,
    pub amount_minor: i64,
    pub status: Status,
    pub lines: Vec<Line>,
    pub relation_id: Uuid,
    pub addressed_at: DateTime<Utc>,
}

/// The relation the transaction's database scope names (a relation's person's own), if any.
pub(crate) async fn own_relation(tx: &mut TenantTx) -> Result<Option<Uuid>, ApprovalError> {
    Ok(tx.relation_scope().await?.and_then(|s| s.parse::<Uuid>().ok()))
}

pub(crate) struct Addressing {
    pub(crate) relation: Uuid,
    pub(crate) kind: &'static str,
    pub(crate) addressed_at: DateTime<Utc>,
}

pub(crate) async fn addressing(
    tx: &mut TenantTx,
    document: Uuid,
    relation: Uuid,
) -> Result<Option<Addressing>, ApprovalError> {
    let row = sqlx::query!(
        "select rd.relation_id, r.kind, rd.created_at
           from relation_documents rd join relations r on r.tenant_id = rd.tenant_id and r.id = rd.relation_id
          where rd.document_id = $1 and rd.relation_id = $2 and r.status = 'active'",
        document,
        relation
    )
    .fetch_optional(tx.conn())
    .await?;
    Ok(row.map(|r| Addressing {
        relation: r.relation_id,
        kind: if r.kind == "client" { "client" } else { "vendor" },
        addressed_at: r.created_at,
    }))
}

/// The document addressed to the asker's relation, with the engine's `action` permit on it.
pub(crate) async fn shared_with(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    document: Uuid,
    action: Action,
    lock: bool,
) -> Result<(documents::Document, Addressing, Permit), ApprovalError> {
    let mine = own_relation(tx).await?.ok_or(ApprovalError::NotFound)?;
    let a = addressing(tx, document, mine).await?.ok_or(ApprovalError::NotFound)?;
    let doc = documents::load(tx, document, lock).await?;
    let facts = SharedFacts {
        tenant: m.subject.tenant,
        document,
        relation: a.relation,
        kind: a.kind,
        asker_relation: Some(mine),
    };
    let permit = engine.decide(&m.subject, action, &Resource::Shared(&facts)).map_err(|_| ApprovalError::NotFound)?;
    Ok((doc, a, permit))
}

fn view(doc: documents::Document, a: &Addressing) -> SharedDocument {
    SharedDocument {
        id: doc.id,
        number: doc.number,
        kind: doc.kind,
        title: doc.title,
        document_date: doc.document_date,
        currency: doc.currency,
        amount_minor: doc.amount_minor,
        status: doc.status,
        lines: doc.lines,
        relation_id: a.relation,
        addressed_at: a.addressed_at,
    }
}

/// The documents addressed to the asker's relation that the engine lets them read, newest
/// addressing first. Empty for anyone without a relation.
///
/// # Errors
/// Database failures.
pub async fn list(tx: &mut TenantTx, engine: &Engine, m: &Member) -> Result<Vec<SharedDocument>, ApprovalError> {
    let Some(mine) = own_relation(tx).await? else { return Ok(Vec::new()) };
    let ids = sqlx::query_scalar!(
        "select document_id from relation_documents where relation_id = $1 order by created_at desc, document_id",
        mine
    )
    .fetch_all(tx.conn())
    .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match shared_with(tx, engine, m, id, Action::PortalDocumentRead, false).await {
            Ok((doc, a, _)) => out.push(view(doc, &a)),
            Err(ApprovalError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn row_facts(m: &Member, row: &AttachmentRow, raiser: Uuid) -> AttachmentFacts {
    AttachmentFacts {
        tenant: m.subject.tenant,
        id: row.id,
        visibility: row.visibility,
        uploader: row.added_by,
        document_raiser: raiser,
        document_readable: true,
    }
}

async fn attachment_rows(tx: &mut TenantTx, document: Uuid) -> Result<Vec<AttachmentRow>, ApprovalError> {
    let rows = sqlx::query!(
        "select id, document_id, name, blob_id, reference, visibility, added_by, created_at
           from document_attachments
          where document_id = $1 and removed_at is null
          order by created_at, id",
        document
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
                visibility: r
                    .visibility
                    .parse()
                    .map_err(|_| ApprovalError::Conflict("stored attachment has an unknown visibility".into()))?,
                added_by: r.added_by,
                created_at: r.created_at,
            })
        })
        .collect()
}

/// One shared document and the files of it the asker may see; the view is audited
/// (`portal.document_viewed`, by the outside person).
///
/// # Errors
/// `NotFound` when it is not addressed to the asker's relation.
pub async fn get(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    document: Uuid,
) -> Result<(SharedDocument, Vec<AttachmentRow>), ApprovalError> {
    let (doc, a, _permit) = shared_with(tx, engine, m, document, Action::PortalDocumentRead, false).await?;
    let raiser = doc.raised_by;
    let files = attachment_rows(tx, document)
        .await?
        .into_iter()
        .filter(|r| {
            engine.decide(&m.subject, Action::AttachmentRead, &Resource::Attachment(&row_facts(m, r, raiser))).is_ok()
        })
        .collect();
    let event = Event::new(
        "portal.document_viewed",
        Entity::of("document", document)?,
        Changes::none().field("relation_id", None::<String>, a.relation.to_string()),
    )?;
    audit::record_by(tx, &m.who, &event).await?;
    Ok((view(doc, &a), files))
}

/// The engine's `attachment.read` permit for an outside person's download of attachment `id`
/// (after `portal.document_read` on its document).
///
/// # Errors
/// `NotFound` for anything not shared with the asker.
pub async fn attachment(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    id: Uuid,
) -> Result<(AttachmentRow, Permit), ApprovalError> {
    let document =
        sqlx::query_scalar!("select document_id from document_attachments where id = $1 and removed_at is null", id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(ApprovalError::NotFound)?;
    let (doc, _a, _read) = shared_with(tx, engine, m, document, Action::PortalDocumentRead, false).await?;
    let row = attachment_rows(tx, document).await?.into_iter().find(|r| r.id == id).ok_or(ApprovalError::NotFound)?;
    let permit = engine
        .decide(&m.subject, Action::AttachmentRead, &Resource::Attachment(&row_facts(m, &row, doc.raised_by)))
        .map_err(|_| ApprovalError::NotFound)?;
    Ok((row, permit))
}

/// Whether the asker may add a file to `document` now: the `portal.contribute` permit every
/// write of the upload requires, and the visibility the file gets (the relation's kind). Asked
/// before the upload streams and again, with the document locked, before it is recorded.
///
/// # Errors
/// `NotFound`; `PeriodClosed`.
pub async fn may_contribute(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    document: Uuid,
    lock: bool,
) -> Result<(Permit, Visibility), ApprovalError> {
    let (doc, a, permit) = shared_with(tx, engine, m, document, Action::PortalContribute, lock).await?;
    documents::ensure_period_open(tx, doc.document_date).await?;
    let visibility = if a.kind == "client" { Visibility::Client } else { Visibility::Vendor };
    Ok((permit, visibility))
}

/// Records an outside person's file on a shared document (`permit` from [`may_contribute`]):
/// the attachment names the uploader's relation, so no other relation ever sees it.
///
/// # Errors
/// `Permit`; `NotFound` without a relation; database failures.
pub async fn add_file(
    tx: &mut TenantTx,
    permit: &Permit,
    who: &Who,
    document: Uuid,
    file: &NewFile<'_>,
) -> Result<AttachmentRow, ApprovalError> {
    permit.require(Action::PortalContribute, document)?;
    let relation = own_relation(tx).await?.ok_or(ApprovalError::NotFound)?;
    let tenant = tx.tenant().as_uuid();
    let id = Uuid::now_v7();
    let name: String = file.name.chars().take(200).collect();
    let created_at = sqlx::query_scalar!(
        "insert into document_attachments
                (tenant_id, document_id, id, name, reference, media_type, sha256, added_by, blob_id, visibility, relation_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
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
        file.visibility.as_str(),
        relation
    )
    .fetch_one(tx.conn())
    .await?;
    let event = Event::new(
        "portal.file_added",
        Entity::of("attachment", id)?,
        Changes::none()
            .field("document_id", None::<String>, document.to_string())
            .field("relation_id", None::<String>, relation.to_string())
            .field("sha256", None::<&str>, hex::encode(file.sha256).as_str()),
    )?;
    audit::record_by(tx, who, &event).await?;
    Ok(AttachmentRow {
        id,
        document_id: document,
        name,
        blob_id: Some(file.blob_id),
        reference: format!("blob:{}", file.blob_id),
        visibility: file.visibility,
        added_by: permit.user(),
        created_at,
    })
}

/// The organisation addresses `document` to `relation` (`permit`: `relations.manage`); the
/// member must also be able to read the document. Idempotent.
///
/// # Errors
/// `NotFound` (document not readable by the member, relation unknown); `Conflict` for an ended
/// relation.
pub async fn address(
    tx: &mut TenantTx,
    engine: &Engine,
    permit: &Permit,
    m: &Member,
    relation: Uuid,
    document: Uuid,
) -> Result<(), ApprovalError> {
    permit.require(Action::RelationsManage, m.subject.tenant)?;
    let doc = documents::load(tx, document, false).await?;
    let _read = engine
        .decide(&m.subject, Action::DocumentRead, &Resource::Document(&doc.facts(m.subject.tenant)))
        .map_err(|_| ApprovalError::NotFound)?;
    let status = sqlx::query_scalar!("select status from relations where id = $1", relation)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(ApprovalError::NotFound)?;
    if status != "active" {
        return Err(ApprovalError::Conflict("this relation has ended".into()));
    }
    let inserted = sqlx::query_scalar!(
        "insert into relation_documents (tenant_id, relation_id, document_id, addressed_by)
         values ($1, $2, $3, $4) on conflict do nothing returning document_id",
        tx.tenant().as_uuid(),
        relation,
        document,
        m.subject.user
    )
    .fetch_optional(tx.conn())
    .await?;
    if inserted.is_some() {
        let event = Event::new(
            "document.addressed",
            Entity::of("document", document)?,
            Changes::none().field("relation_id", None::<String>, relation.to_string()),
        )?;
        audit::record_by(tx, &m.who, &event).await?;
    }
    Ok(())
}

/// The documents addressed to `relation` (the organisation's side), with when.
///
/// # Errors
/// Database failures.
pub async fn addressed(tx: &mut TenantTx, relation: Uuid) -> Result<Vec<(Uuid, DateTime<Utc>)>, ApprovalError> {
    Ok(sqlx::query!(
        "select document_id, created_at from relation_documents where relation_id = $1 order by created_at desc",
        relation
    )
    .fetch_all(tx.conn())
    .await?
    .into_iter()
    .map(|r| (r.document_id, r.created_at))
    .collect())
}

/// A document's id from its human number (`PO-2026-0031`), if the transaction shows it.
///
/// # Errors
/// Database failures.
pub async fn id_by_number(tx: &mut TenantTx, number: &str) -> Result<Option<Uuid>, ApprovalError> {
    Ok(sqlx::query_scalar!("select id from documents where number = $1", number).fetch_optional(tx.conn()).await?)
}
