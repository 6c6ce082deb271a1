//! Requests to relations (issue 16's portals): a member asks the vendor or client a document is
//! addressed to a question ("a file is requested", optionally); that relation's people answer it
//! in the portal with text and/or one of their own uploads on the document, which closes it.
//!
//! Same two locks as [`crate::portal`]: the database shows a portal transaction only its own
//! relation's requests (`relation_isolation` on `relation_requests`, migration 0032) and lets
//! only the organisation's side insert them; the engine decides `portal.ask` (members who work
//! on documents, who must also be able to read the document) and `portal.answer` (the
//! relation's own people, on a document addressed to them as their kind). The organisation's
//! internal discussion (`document_notes`) is never read here. Refusals of outside people are
//! `NotFound`; an answered request is `Conflict` (closed for good, also by a trigger).

use audit::{Changes, Entity, Event};
use authz::{Action, Engine, Resource, SharedFacts};
use chrono::{DateTime, Utc};
use serde::Serialize;
use store::TenantTx;
use uuid::Uuid;

use crate::documents::{self, ApprovalError, Member};
use crate::portal::{addressing, own_relation, shared_with};

/// The longest question, in characters.
pub const QUESTION_MAX: usize = 2000;
/// The longest written answer, in characters.
pub const ANSWER_MAX: usize = 4000;

/// A question to a relation about a document addressed to it, and its answer once given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RelationRequest {
    pub id: Uuid,
    pub relation_id: Uuid,
    pub document_id: Uuid,
    pub question: String,
    /// The asker would like a file with the answer.
    pub file_requested: bool,
    pub asked_by: Uuid,
    pub created_at: DateTime<Utc>,
    /// `open` or `answered` (closed for good).
    pub status: String,
    pub answer: Option<String>,
    /// The relation's upload on the document that answers it.
    pub answer_attachment_id: Option<Uuid>,
    pub answered_by: Option<Uuid>,
    pub answered_at: Option<DateTime<Utc>>,
}

impl RelationRequest {
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.status == "open"
    }
}

/// Text a person wrote: trimmed, not empty, at most `max` characters, no control characters but
/// tab and line breaks (Postgres refuses NUL; the rest is noise on a page).
fn text(field: &'static str, raw: &str, max: usize) -> Result<String, ApprovalError> {
    let t = raw.trim();
    let invalid = |reason: &str| ApprovalError::Invalid { field, reason: reason.to_owned() };
    if t.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if t.chars().count() > max {
        return Err(invalid(&format!("at most {max} characters")));
    }
    if t.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        return Err(invalid("control characters are not allowed"));
    }
    Ok(t.to_owned())
}

macro_rules! select_requests {
    ($where:literal, $($arg:expr),*) => {
        sqlx::query_as!(
            RelationRequest,
            "select id, relation_id, document_id, question, file_requested, asked_by, created_at, status,
                    answer, answer_attachment_id, answered_by, answered_at
               from relation_requests where " + $where,
            $($arg),*
        )
    };
}

/// A member asks `relation` a question about `document` (addressed to it): the member must be
/// able to read the document and be let `portal.ask`. Audited on the document
/// (`relation_request.asked`).
///
/// # Errors
/// `Invalid` (`question`); `NotFound` (document not readable by the member, not addressed to
/// that relation, or the relation ended); `Denied` (a member who may not ask, e.g. an auditor).
pub async fn ask(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    relation: Uuid,
    document: Uuid,
    question: &str,
    file_requested: bool,
) -> Result<RelationRequest, ApprovalError> {
    let question = text("question", question, QUESTION_MAX)?;
    let doc = documents::load(tx, document, false).await?;
    let _read = engine
        .decide(&m.subject, Action::DocumentRead, &Resource::Document(&doc.facts(m.subject.tenant)))
        .map_err(|_| ApprovalError::NotFound)?;
    let a = addressing(tx, document, relation).await?.ok_or(ApprovalError::NotFound)?;
    let facts = SharedFacts {
        tenant: m.subject.tenant,
        document,
        relation: a.relation,
        kind: a.kind,
        asker_relation: own_relation(tx).await?,
    };
    let permit = engine.decide(&m.subject, Action::PortalAsk, &Resource::Shared(&facts))?;
    permit.require(Action::PortalAsk, document)?;
    let id = Uuid::now_v7();
    sqlx::query!(
        "insert into relation_requests (tenant_id, id, relation_id, document_id, question, file_requested, asked_by)
         values ($1, $2, $3, $4, $5, $6, $7)",
        tx.tenant().as_uuid(),
        id,
        relation,
        document,
        question,
        file_requested,
        permit.user()
    )
    .execute(tx.conn())
    .await?;
    let event = Event::new(
        "relation_request.asked",
        Entity::of("document", document)?,
        Changes::none()
            .field("request_id", None::<String>, id.to_string())
            .field("relation_id", None::<String>, relation.to_string())
            .field("file_requested", None::<bool>, file_requested),
    )?;
    audit::record_by(tx, &m.who, &event).await?;
    get(tx, id).await?.ok_or(ApprovalError::NotFound)
}

async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Option<RelationRequest>, ApprovalError> {
    Ok(select_requests!("id = $1", id).fetch_optional(tx.conn()).await?)
}

/// The requests about `document` (the organisation's side: every relation's, oldest first),
/// for a member who may read the document.
///
/// # Errors
/// `NotFound` when the member may not read the document.
pub async fn for_document(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    document: Uuid,
) -> Result<Vec<RelationRequest>, ApprovalError> {
    let doc = documents::load(tx, document, false).await?;
    let _read = engine
        .decide(&m.subject, Action::DocumentRead, &Resource::Document(&doc.facts(m.subject.tenant)))
        .map_err(|_| ApprovalError::NotFound)?;
    Ok(select_requests!("document_id = $1 order by created_at, id", document).fetch_all(tx.conn()).await?)
}

/// The requests addressed to the asker's relation (all of them, or those about `document`),
/// newest first, on documents the engine lets them read. Empty for anyone without a relation.
///
/// # Errors
/// Database failures.
pub async fn mine(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    document: Option<Uuid>,
) -> Result<Vec<RelationRequest>, ApprovalError> {
    let Some(relation) = own_relation(tx).await? else { return Ok(Vec::new()) };
    let rows = select_requests!(
        "relation_id = $1 and ($2::uuid is null or document_id = $2) order by created_at desc, id",
        relation,
        document
    )
    .fetch_all(tx.conn())
    .await?;
    let mut readable: Vec<(Uuid, bool)> = Vec::new();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let ok = if let Some((_, ok)) = readable.iter().find(|(d, _)| *d == r.document_id) {
            *ok
        } else {
            let ok = match shared_with(tx, engine, m, r.document_id, Action::PortalDocumentRead, false).await {
                Ok(_) => true,
                Err(ApprovalError::NotFound) => false,
                Err(e) => return Err(e),
            };
            readable.push((r.document_id, ok));
            ok
        };
        if ok {
            out.push(r);
        }
    }
    Ok(out)
}

/// A relation's person answers request `id` with `answer` text and/or `attachment` (one of their
/// relation's own uploads on the same document), closing it. Audited on the document, by the
/// outside person (`relation_request.answered`).
///
/// # Errors
/// `NotFound` (not their relation's, or the document is no longer shared with them);
/// `Conflict` (already answered); `Invalid` (`answer`, `attachment_id`).
pub async fn answer(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    id: Uuid,
    answer: Option<&str>,
    attachment: Option<Uuid>,
) -> Result<RelationRequest, ApprovalError> {
    let relation = own_relation(tx).await?.ok_or(ApprovalError::NotFound)?;
    let request = select_requests!("id = $1 and relation_id = $2 for update", id, relation)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(ApprovalError::NotFound)?;
    let (_doc, _a, permit) = shared_with(tx, engine, m, request.document_id, Action::PortalAnswer, false).await?;
    permit.require(Action::PortalAnswer, request.document_id)?;
    if !request.is_open() {
        return Err(ApprovalError::Conflict("this request has already been answered".into()));
    }
    let answer = match answer.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => Some(text("answer", t, ANSWER_MAX)?),
        None => None,
    };
    if answer.is_none() && attachment.is_none() {
        return Err(ApprovalError::Invalid { field: "answer", reason: "write an answer or send a file".into() });
    }
    if let Some(file) = attachment {
        let own = sqlx::query_scalar!(
            "select id from document_attachments
              where id = $1 and document_id = $2 and relation_id = $3 and removed_at is null",
            file,
            request.document_id,
            relation
        )
        .fetch_optional(tx.conn())
        .await?;
        if own.is_none() {
            return Err(ApprovalError::Invalid {
                field: "attachment_id",
                reason: "not a file your company sent on this document".into(),
            });
        }
    }
    let updated = sqlx::query!(
        "update relation_requests
            set status = 'answered', answer = $2, answer_attachment_id = $3, answered_by = $4, answered_at = now()
          where id = $1 and status = 'open'",
        id,
        answer,
        attachment,
        permit.user()
    )
    .execute(tx.conn())
    .await?;
    if updated.rows_affected() != 1 {
        return Err(ApprovalError::Conflict("this request has already been answered".into()));
    }
    let mut changes = Changes::none()
        .field("request_id", None::<String>, id.to_string())
        .field("relation_id", None::<String>, relation.to_string())
        .field("status", Some("open"), "answered");
    if let Some(file) = attachment {
        changes = changes.field("attachment_id", None::<String>, file.to_string());
    }
    let event = Event::new("relation_request.answered", Entity::of("document", request.document_id)?, changes)?;
    audit::record_by(tx, &m.who, &event).await?;
    get(tx, id).await?.ok_or(ApprovalError::NotFound)
}

/// The active relations `document` is addressed to that this member may ask (`portal.ask`),
/// with their company names, for the organisation's document page.
///
/// # Errors
/// Database failures.
pub async fn askable(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    document: Uuid,
) -> Result<Vec<(Uuid, String)>, ApprovalError> {
    let rows = sqlx::query!(
        "select r.id, r.kind, r.company_name
           from relation_documents rd join relations r on r.tenant_id = rd.tenant_id and r.id = rd.relation_id
          where rd.document_id = $1 and r.status = 'active'
          order by r.company_name, r.id",
        document
    )
    .fetch_all(tx.conn())
    .await?;
    let asker = own_relation(tx).await?;
    Ok(rows
        .into_iter()
        .filter(|r| {
            let facts = SharedFacts {
                tenant: m.subject.tenant,
                document,
                relation: r.id,
                kind: if r.kind == "client" { "client" } else { "vendor" },
                asker_relation: asker,
            };
            engine.decide(&m.subject, Action::PortalAsk, &Resource::Shared(&facts)).is_ok()
        })
        .map(|r| (r.id, r.company_name))
        .collect())
}

/// The company names of relations, by id (the organisation's side).
///
/// # Errors
/// Database failures.
pub async fn companies(tx: &mut TenantTx, ids: &[Uuid]) -> Result<Vec<(Uuid, String)>, ApprovalError> {
    Ok(sqlx::query!("select id, company_name from relations where id = any($1)", ids)
        .fetch_all(tx.conn())
        .await?
        .into_iter()
        .map(|r| (r.id, r.company_name))
        .collect())
}
