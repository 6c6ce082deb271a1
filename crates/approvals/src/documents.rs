//! Vouchers and purchase orders in the database: create, read, transition, fiscal periods.
//!
//! Every write runs in the caller's `TenantTx` and follows one order: load the row `FOR UPDATE`,
//! compare the version the caller read (optimistic concurrency: two approvers racing cannot both
//! win), refuse documents dated in a closed fiscal period, ask the state machine what the
//! transition leads to, ask the authorisation engine for a permit, write, audit — all in the
//! same transaction, so nothing is half-applied.
//!
//! Closed periods are enforced by the database (migration 0014): every write to a document or
//! its rows takes the organisation's period lock shared and refuses a date in a closed period
//! (SQLSTATE `CSPC1`, mapped to [`ApprovalError::PeriodClosed`]); opening, closing and reopening
//! take it exclusively. The check here only answers early.
//!
//! Members, departments and MD thresholds belong to `identity`: this crate asks it.
//!
//! A refusal is an `Err`; the caller audits denials in a transaction of its own (this one rolls
//! back).

use audit::{Actor, Changes, Entity, Event, Who};
use authz::{Action, DocumentFacts, Engine, Level, Permit, Resource, Subject};
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use identity::Role;
use identity::directory::{departments, memberships, tenants};
use serde::Serialize;
use store::TenantTx;
use uuid::Uuid;

use crate::machine::{self, NotAllowed, State, Status, Transition};
use crate::money::{Currency, Money, MoneyError};

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// Not there, or another organisation's (indistinguishable on purpose).
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Denied(#[from] authz::Denied),
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    /// The caller read an older version than the one stored.
    #[error("stale version: the document is at version {current}")]
    Stale { current: i32 },
    #[error("fiscal period {period} is closed")]
    PeriodClosed { period: String },
    /// Only drafts and queried documents can be edited.
    #[error("a {status} document cannot be edited")]
    NotEditable { status: Status },
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Permit(#[from] authz::Mismatch),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("database: {0}")]
    Database(sqlx::Error),
}

/// The closed-period trigger's refusal (SQLSTATE `CSPC1`, the period's name in `DETAIL`) is the
/// domain's `PeriodClosed`, wherever in a write it strikes.
impl From<sqlx::Error> for ApprovalError {
    fn from(e: sqlx::Error) -> Self {
        let closed = e.as_database_error().filter(|d| d.code().as_deref() == Some("CSPC1")).map(|d| {
            d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|p| p.detail())
                .unwrap_or("(unnamed)")
                .to_owned()
        });
        match closed {
            Some(period) => Self::PeriodClosed { period },
            None => Self::Database(e),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ApprovalError {
    ApprovalError::Invalid { field, reason: reason.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Voucher,
    PurchaseOrder,
}

impl Kind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Voucher => "voucher",
            Self::PurchaseOrder => "purchase_order",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = ApprovalError;

    /// `voucher` or `purchase_order`; anything else is `Invalid` naming the field `kind`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "voucher" => Ok(Self::Voucher),
            "purchase_order" => Ok(Self::PurchaseOrder),
            _ => Err(invalid("kind", "voucher or purchase_order")),
        }
    }
}

/// A status read back from the database; one the code does not know is a conflict, not a panic.
pub(crate) fn stored_status(s: &str) -> Result<Status, ApprovalError> {
    s.parse().map_err(|_| ApprovalError::Conflict("stored document has an unknown status".into()))
}

/// The calling member as policies see them: loaded from their membership in this organisation.
#[derive(Debug, Clone)]
pub struct Member {
    pub subject: Subject,
    /// The member as audit records them (user id and role), with the request's origin.
    pub who: Who,
}

impl Member {
    /// Loads the active membership of `user`; none (or another organisation's user) → `NotFound`.
    ///
    /// # Errors
    /// `NotFound` without an active membership.
    pub async fn load(tx: &mut TenantTx, user: Uuid, origin: audit::Origin) -> Result<Self, ApprovalError> {
        let row = memberships::active(tx, user).await?.ok_or(ApprovalError::NotFound)?;
        let role: Role = row.role;
        let subject = Subject { tenant: tx.tenant().as_uuid(), user, role, department: row.department_id };
        Ok(Self { who: Who::new(Actor::user(user, Some(role.as_str())), origin), subject })
    }
}

#[derive(Debug, Clone)]
pub struct NewLine {
    pub description: String,
    pub amount_minor: i64,
}

/// A supporting paper named by reference (a URI or storage key); the file itself lives elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewAttachment {
    pub name: String,
    pub reference: String,
    pub media_type: Option<String>,
    /// Hex SHA-256 of the file, when the client knows it.
    pub sha256: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewDocument {
    pub kind: Kind,
    pub department_id: Uuid,
    pub title: String,
    pub document_date: NaiveDate,
    pub currency: Currency,
    pub lines: Vec<NewLine>,
    pub attachments: Vec<NewAttachment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Line {
    pub line_no: i32,
    pub description: String,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Attachment {
    pub id: Uuid,
    pub name: String,
    pub reference: String,
    pub media_type: Option<String>,
    pub sha256: Option<String>,
    pub added_by: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Approval {
    pub level: String,
    pub approver: Uuid,
    pub approver_role: String,
    pub approved_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Document {
    pub id: Uuid,
    /// The human number, `PV-2026-0184` or `PO-2026-0031`: per organisation, kind and year of
    /// raising, gap-free, given by the database when the document is raised (migration 0019).
    pub number: String,
    pub kind: Kind,
    pub department_id: Uuid,
    pub raised_by: Uuid,
    pub title: String,
    pub document_date: NaiveDate,
    pub currency: String,
    pub amount_minor: i64,
    pub status: Status,
    pub queried_from: Option<Status>,
    pub version: i32,
    pub round: i32,
    pub created_at: DateTime<Utc>,
    /// Approvals of the current round.
    pub approvals: Vec<Approval>,
    pub lines: Vec<Line>,
    pub attachments: Vec<Attachment>,
    /// The questions queries asked, the raiser's answers and other transitions' notes, oldest
    /// first.
    pub discussion: Vec<Remark>,
    /// What the document's state allows next (whoever may do it).
    pub allowed: Vec<Transition>,
}

/// What a remark in a document's discussion is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RemarkKind {
    /// The question an approver asked (transition `query`).
    Query,
    /// The raiser's answer (transition `answer`).
    Answer,
    /// The note of any other transition (a rejection's reason, an amendment's...).
    Note,
}

impl RemarkKind {
    fn of(t: Transition) -> Self {
        match t {
            Transition::Query => Self::Query,
            Transition::Answer => Self::Answer,
            _ => Self::Note,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Answer => "answer",
            Self::Note => "note",
        }
    }
}

/// One remark of a document's discussion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Remark {
    /// The member who wrote it.
    pub who: Uuid,
    /// Their role when they wrote it.
    pub role: String,
    pub kind: RemarkKind,
    pub text: String,
    pub at: DateTime<Utc>,
}

impl Document {
    pub(crate) fn facts(&self, tenant: Uuid) -> DocumentFacts {
        DocumentFacts {
            tenant,
            id: self.id,
            kind: self.kind.as_str(),
            department: self.department_id,
            raiser: self.raised_by,
            status: self.status.as_str(),
            amount_minor: self.amount_minor,
            approvers: self.approvals.iter().map(|a| a.approver).collect(),
            level: self.status.level(),
        }
    }
}

fn level_str(l: Level) -> &'static str {
    match l {
        Level::Hod => "hod",
        Level::Finance => "finance",
        Level::Md => "md",
    }
}

/// The document's row and this round's approvals: everything a decision about it reads
/// ([`Document::facts`]), in two statements (three when locking). Its lines, attachments and discussion are left
/// empty — only for deciding (an attachment's download, link or listing asks this on every
/// request); [`load`] reads them too.
pub(crate) async fn load_head(tx: &mut TenantTx, id: Uuid, for_update: bool) -> Result<Document, ApprovalError> {
    if for_update {
        // Writers serialise on the row; the read below then sees the locked version.
        sqlx::query!("select id from documents where id = $1 for update", id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(ApprovalError::NotFound)?;
    }
    let r = sqlx::query!(
        "select id, number, kind, department_id, raised_by, title, document_date, currency, amount_minor, status,
                queried_from, version, round, created_at
           from documents where id = $1",
        id
    )
    .fetch_optional(tx.conn())
    .await?
    .ok_or(ApprovalError::NotFound)?;
    let status = stored_status(&r.status)?;
    let queried_from = r.queried_from.as_deref().map(stored_status).transpose()?;
    let approvals = sqlx::query_as!(
        Approval,
        "select level, approver, approver_role, approved_at from document_approvals
          where document_id = $1 and round = $2 order by approved_at",
        id,
        r.round
    )
    .fetch_all(tx.conn())
    .await?;
    Ok(Document {
        id: r.id,
        number: r.number,
        kind: r.kind.parse()?,
        department_id: r.department_id,
        raised_by: r.raised_by,
        title: r.title,
        document_date: r.document_date,
        currency: r.currency,
        amount_minor: r.amount_minor,
        status,
        queried_from,
        version: r.version,
        round: r.round,
        created_at: r.created_at,
        approvals,
        lines: Vec::new(),
        attachments: Vec::new(),
        discussion: Vec::new(),
        allowed: machine::allowed(status),
    })
}

pub(crate) async fn load(tx: &mut TenantTx, id: Uuid, for_update: bool) -> Result<Document, ApprovalError> {
    let mut doc = load_head(tx, id, for_update).await?;
    let lines = sqlx::query_as!(
        Line,
        "select line_no, description, amount_minor from document_lines where document_id = $1 order by line_no",
        id
    )
    .fetch_all(tx.conn())
    .await?;
    let attachments = sqlx::query!(
        "select id, name, reference, media_type, sha256, added_by from document_attachments
          where document_id = $1 and removed_at is null order by created_at, id",
        id
    )
    .fetch_all(tx.conn())
    .await?
    .into_iter()
    .map(|a| Attachment {
        id: a.id,
        name: a.name,
        reference: a.reference,
        media_type: a.media_type,
        sha256: a.sha256.map(hex::encode),
        added_by: a.added_by,
    })
    .collect();
    let discussion = sqlx::query!(
        "select author, author_role, kind, body, created_at from document_notes
          where document_id = $1 order by created_at, id",
        id
    )
    .fetch_all(tx.conn())
    .await?
    .into_iter()
    .map(|n| Remark {
        who: n.author,
        role: n.author_role,
        kind: match n.kind.as_str() {
            "query" => RemarkKind::Query,
            "answer" => RemarkKind::Answer,
            _ => RemarkKind::Note,
        },
        text: n.body,
        at: n.created_at,
    })
    .collect();
    doc.lines = lines;
    doc.attachments = attachments;
    doc.discussion = discussion;
    Ok(doc)
}

/// Refuses any change to a document dated inside a closed fiscal period. The database function
/// the triggers call: it takes the organisation's period lock (shared) now, before anything is
/// written, so a close that starts later waits for this transaction.
pub(crate) async fn ensure_period_open(tx: &mut TenantTx, date: NaiveDate) -> Result<(), ApprovalError> {
    let tenant = tx.tenant().as_uuid();
    sqlx::query_scalar!(r#"select countersign_refuse_closed_period($1, $2) as "open!""#, tenant, date)
        .fetch_one(tx.conn())
        .await?;
    Ok(())
}

/// Takes the organisation's period lock exclusively: period changes wait for document writes in
/// flight, and writes after them see the change. Taken before any period row is locked (the
/// order every writer follows).
async fn lock_periods(tx: &mut TenantTx) -> Result<(), ApprovalError> {
    let tenant = tx.tenant().as_uuid();
    sqlx::query!("select pg_advisory_xact_lock(countersign_period_lock_key($1))", tenant).execute(tx.conn()).await?;
    Ok(())
}

/// Dates documents and periods may carry: 2000-01-01 to 2099-12-31. A voucher dated in year 1
/// (or 9999) is a typo, not a voucher; the window is fixed so a date valid today stays valid.
fn check_date(field: &'static str, d: NaiveDate) -> Result<(), ApprovalError> {
    let (first, last) = date_window();
    if d < first || d > last {
        return Err(invalid(field, format!("a date from {first} to {last}")));
    }
    Ok(())
}

#[must_use]
pub fn date_window() -> (NaiveDate, NaiveDate) {
    (NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default(), NaiveDate::from_ymd_opt(2099, 12, 31).unwrap_or_default())
}

fn validate(new: &NewDocument) -> Result<Money, ApprovalError> {
    let title = new.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(invalid("title", "1-200 characters"));
    }
    if new.lines.is_empty() || new.lines.len() > 1000 {
        return Err(invalid("lines", "1-1000 lines"));
    }
    check_date("document_date", new.document_date)?;
    for (i, l) in new.lines.iter().enumerate() {
        let d = l.description.trim();
        if d.is_empty() || d.chars().count() > 500 {
            return Err(invalid("lines", format!("line {}: description 1-500 characters", i + 1)));
        }
        if l.amount_minor == 0 {
            return Err(invalid("lines.amount_minor", format!("line {}: amount must be above zero", i + 1)));
        }
    }
    if new.attachments.len() > 50 {
        return Err(invalid("attachments", "at most 50"));
    }
    for (i, a) in new.attachments.iter().enumerate() {
        let n = i + 1;
        if a.name.trim().is_empty() || a.name.trim().chars().count() > 200 {
            return Err(invalid("attachments", format!("attachment {n}: name 1-200 characters")));
        }
        if a.reference.trim().is_empty()
            || a.reference.chars().count() > 1000
            || a.reference.chars().any(char::is_control)
        {
            return Err(invalid("attachments", format!("attachment {n}: reference 1-1000 printable characters")));
        }
        if a.media_type.as_deref().is_some_and(|m| !(3..=100).contains(&m.len()) || !m.contains('/')) {
            return Err(invalid("attachments", format!("attachment {n}: media_type like application/pdf")));
        }
        if a.sha256.as_deref().is_some_and(|h| h.len() != 64 || hex::decode(h).is_err()) {
            return Err(invalid("attachments", format!("attachment {n}: sha256 is 64 hex digits")));
        }
    }
    let amounts = new.lines.iter().map(|l| Money::new(l.amount_minor, new.currency)).collect::<Result<Vec<_>, _>>()?;
    Ok(Money::sum(new.currency, amounts)?)
}

/// Raises a draft. The raiser is the caller; the department must exist in this organisation.
///
/// # Errors
/// `Invalid`/`Money` for bad input, `NotFound` for an unknown department, `Denied`,
/// `PeriodClosed`.
#[tracing::instrument(skip_all, fields(kind = new.kind.as_str()))]
pub async fn create(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    new: &NewDocument,
) -> Result<Document, ApprovalError> {
    let total = validate(new)?;
    if !departments::exists(tx, new.department_id).await? {
        return Err(invalid("department_id", "no such department"));
    }
    ensure_period_open(tx, new.document_date).await?;
    let id = Uuid::now_v7();
    let draft = DocumentFacts {
        tenant: m.subject.tenant,
        id,
        kind: new.kind.as_str(),
        department: new.department_id,
        raiser: m.subject.user,
        status: Status::Draft.as_str(),
        amount_minor: total.minor,
        approvers: Vec::new(),
        level: None,
    };
    let permit = engine.decide(&m.subject, Action::DocumentCreate, &Resource::Document(&draft))?;
    permit.require(Action::DocumentCreate, id)?;
    sqlx::query!(
        "insert into documents (tenant_id, id, kind, department_id, raised_by, title, document_date, currency, amount_minor)
         values (current_setting('app.tenant_id')::uuid, $1, $2, $3, $4, $5, $6, $7, $8)",
        id,
        new.kind.as_str(),
        new.department_id,
        m.subject.user,
        new.title.trim(),
        new.document_date,
        new.currency.code(),
        total.minor
    )
    .execute(tx.conn())
    .await?;
    for (i, l) in new.lines.iter().enumerate() {
        sqlx::query!(
            "insert into document_lines (tenant_id, document_id, line_no, description, amount_minor)
             values (current_setting('app.tenant_id')::uuid, $1, $2, $3, $4)",
            id,
            i32::try_from(i + 1).unwrap_or(i32::MAX),
            l.description.trim(),
            l.amount_minor
        )
        .execute(tx.conn())
        .await?;
    }
    for a in &new.attachments {
        sqlx::query!(
            "insert into document_attachments (tenant_id, document_id, id, name, reference, media_type, sha256, added_by)
             values (current_setting('app.tenant_id')::uuid, $1, $2, $3, $4, $5, $6, $7)",
            id,
            Uuid::now_v7(),
            a.name.trim(),
            a.reference.trim(),
            a.media_type.as_deref(),
            a.sha256.as_deref().and_then(|h| hex::decode(h).ok()),
            m.subject.user
        )
        .execute(tx.conn())
        .await?;
    }
    let doc = load(tx, id, false).await?;
    let changes = Changes::diff(None, Some(&summary(&doc)))?;
    let event = Event::new(&format!("{}.created", new.kind.as_str()), Entity::of(ENTITY, id)?, changes)?;
    audit::record_by(tx, &m.who, &event).await?;
    Ok(doc)
}

/// The ledger's `entity_type` for vouchers and purchase orders, as the API calls them. Events
/// before migration 0014 say `voucher` or `purchase_order` (the ledger is never rewritten);
/// `audit::query` filters accept either name for either era. The action keeps the kind
/// (`voucher.approved`).
pub const ENTITY: &str = "document";

/// The audited fields of a document (lines are summarised by count and total).
#[derive(Serialize)]
struct Summary<'a> {
    number: &'a str,
    title: &'a str,
    department_id: Uuid,
    document_date: NaiveDate,
    currency: &'a str,
    amount_minor: i64,
    lines: usize,
    attachments: usize,
    status: &'static str,
    version: i32,
}

fn summary(d: &Document) -> Summary<'_> {
    Summary {
        number: &d.number,
        title: &d.title,
        department_id: d.department_id,
        document_date: d.document_date,
        currency: &d.currency,
        amount_minor: d.amount_minor,
        lines: d.lines.len(),
        attachments: d.attachments.len(),
        status: d.status.as_str(),
        version: d.version,
    }
}

/// Reads one document the caller may read; otherwise `NotFound` (never "forbidden": whether a
/// document exists is itself information).
///
/// # Errors
/// `NotFound`.
pub async fn get(tx: &mut TenantTx, engine: &Engine, m: &Member, id: Uuid) -> Result<Document, ApprovalError> {
    let doc = load(tx, id, false).await?;
    let _read = engine
        .decide(&m.subject, Action::DocumentRead, &Resource::Document(&doc.facts(m.subject.tenant)))
        .map_err(|_| ApprovalError::NotFound)?;
    Ok(doc)
}

/// The transitions `m` may take on `doc` now: those its state allows ([`Document::allowed`])
/// that the policy engine permits this member (the actions box of the document page). Asking
/// is not acting: [`transition`] decides again, under the row lock, when one is taken.
#[must_use]
pub fn permitted(engine: &Engine, m: &Member, doc: &Document) -> Vec<Transition> {
    let facts = doc.facts(m.subject.tenant);
    doc.allowed
        .iter()
        .copied()
        .filter(|t| engine.decide(&m.subject, t.action(), &Resource::Document(&facts)).is_ok())
        .collect()
}

/// Whether `m` may edit `doc` now (drafts and queried documents, by their raiser).
#[must_use]
pub fn may_edit(engine: &Engine, m: &Member, doc: &Document) -> bool {
    matches!(doc.status, Status::Draft | Status::Queried)
        && engine.decide(&m.subject, Action::DocumentEdit, &Resource::Document(&doc.facts(m.subject.tenant))).is_ok()
}

/// Whether `m` may raise a document in `department` (the departments a raise form offers): the
/// question [`create`] asks, about a draft raised by `m` there.
#[must_use]
pub fn may_raise_in(engine: &Engine, m: &Member, department: Uuid) -> bool {
    let draft = DocumentFacts {
        tenant: m.subject.tenant,
        id: Uuid::nil(),
        kind: Kind::Voucher.as_str(),
        department,
        raiser: m.subject.user,
        status: Status::Draft.as_str(),
        amount_minor: 0,
        approvers: Vec::new(),
        level: None,
    };
    engine.decide(&m.subject, Action::DocumentCreate, &Resource::Document(&draft)).is_ok()
}

/// The preamble of every change to one document: loads it locked (`FOR UPDATE`, so concurrent
/// changes queue), refuses as `NotFound` when `m` may not even read it, and as `Stale` unless the
/// caller read `expected_version`.
async fn lock_current(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    id: Uuid,
    expected_version: i32,
) -> Result<Document, ApprovalError> {
    let doc = load(tx, id, true).await?;
    if engine.decide(&m.subject, Action::DocumentRead, &Resource::Document(&doc.facts(m.subject.tenant))).is_err() {
        return Err(ApprovalError::NotFound);
    }
    if doc.version != expected_version {
        return Err(ApprovalError::Stale { current: doc.version });
    }
    Ok(doc)
}

/// The policy engine's permit for `m` to take `action` on `doc` (`Denied` otherwise), checked to
/// name that action and document.
fn permit_on(engine: &Engine, m: &Member, action: Action, doc: &Document) -> Result<Permit, ApprovalError> {
    let permit = engine.decide(&m.subject, action, &Resource::Document(&doc.facts(m.subject.tenant)))?;
    permit.require(action, doc.id)?;
    Ok(permit)
}

/// Applies `t` to document `id` as `m`, if `expected_version` is still current. `note` is the
/// question (query), the answer, or the reason (reject, cancel, amend: required).
///
/// # Errors
/// `NotFound` (also when the caller may not even read it), `Stale`, `PeriodClosed`,
/// `NotAllowed` (with the allowed transitions), `Denied`, `Invalid` (missing note).
#[tracing::instrument(skip_all, fields(document_id = %id, transition = %t))]
pub async fn transition(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    id: Uuid,
    t: Transition,
    expected_version: i32,
    note: Option<&str>,
) -> Result<Document, ApprovalError> {
    let before = lock_current(tx, engine, m, id, expected_version).await?;
    ensure_period_open(tx, before.document_date).await?;
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    if matches!(t, Transition::Reject | Transition::Query | Transition::Answer | Transition::Amend | Transition::Cancel)
        && note.is_none_or(|n| n.len() < 3 || n.len() > 2000)
    {
        return Err(invalid("note", format!("{t} needs a note of 3-2000 characters")));
    }
    if note.is_some_and(|n| n.chars().count() > 2000) {
        return Err(invalid("note", "at most 2000 characters"));
    }
    // In the document's currency; none set for it: the MD decides (machine::step).
    let threshold = tenants::md_threshold(tx, &before.currency).await?;
    let state = State { status: before.status, queried_from: before.queried_from, amount_minor: before.amount_minor };
    let step = machine::step(&state, t, threshold)?;
    let _permit = permit_on(engine, m, t.action(), &before)?;

    let round = if step.resets_approvals { before.round + 1 } else { before.round };
    sqlx::query!(
        "update documents set status = $2, queried_from = $3, version = version + 1, round = $4, updated_at = now()
          where id = $1",
        id,
        step.to.as_str(),
        step.queried_from.map(Status::as_str),
        round
    )
    .execute(tx.conn())
    .await?;
    if let Some(level) = step.records_approval {
        sqlx::query!(
            "insert into document_approvals (tenant_id, document_id, round, level, approver, approver_role)
             values (current_setting('app.tenant_id')::uuid, $1, $2, $3, $4, $5)",
            id,
            round,
            level_str(level),
            m.subject.user,
            m.subject.role.as_str()
        )
        .execute(tx.conn())
        .await?;
    }
    if let Some(n) = note {
        sqlx::query!(
            "insert into document_notes (tenant_id, document_id, id, author, author_role, kind, body)
             values (current_setting('app.tenant_id')::uuid, $1, $2, $3, $4, $5, $6)",
            id,
            Uuid::now_v7(),
            m.subject.user,
            m.subject.role.as_str(),
            RemarkKind::of(t).as_str(),
            n
        )
        .execute(tx.conn())
        .await?;
    }
    let after = load(tx, id, false).await?;
    let mut changes = Changes::none()
        .field("status", before.status.as_str(), after.status.as_str())
        .field("version", before.version, after.version)
        .field("round", before.round, after.round);
    if let Some(level) = step.records_approval {
        changes = changes.field("approved_level", None::<&str>, level_str(level)).field(
            "approver_role",
            None::<&str>,
            m.subject.role.as_str(),
        );
    }
    let action = match t {
        Transition::Submit => "submitted",
        Transition::Approve => "approved",
        Transition::Reject => "rejected",
        Transition::Query => "queried",
        Transition::Answer => "answered",
        Transition::Amend => "amended",
        Transition::Cancel => "cancelled",
        Transition::MarkPaid => "paid",
    };
    let kind = before.kind.as_str();
    let mut event = Event::new(&format!("{kind}.{action}"), Entity::of(ENTITY, id)?, changes)?;
    if let Some(n) = note {
        event = event.with_reason(n)?;
    }
    audit::record_by(tx, &m.who, &event).await?;
    Ok(after)
}

/// Changes to an editable document; absent fields stay as they are. `lines` and `attachments`
/// replace the whole list (attachments that stay keep their id; dropped ones are withdrawn, not
/// deleted).
#[derive(Debug, Clone, Default)]
pub struct Edit {
    pub title: Option<String>,
    pub department_id: Option<Uuid>,
    pub document_date: Option<NaiveDate>,
    pub currency: Option<Currency>,
    pub lines: Option<Vec<NewLine>>,
    pub attachments: Option<Vec<NewAttachment>>,
}

/// The audited picture of a document's editable content: lines in full when there are few,
/// otherwise their count, total and a SHA-256 over them.
#[derive(Serialize)]
struct Content<'a> {
    title: &'a str,
    department_id: Uuid,
    document_date: NaiveDate,
    currency: &'a str,
    amount_minor: i64,
    lines: serde_json::Value,
    attachments: Vec<(&'a str, &'a str)>,
    version: i32,
    round: i32,
}

fn content(d: &Document) -> Content<'_> {
    use sha2::Digest;
    let lines = if d.lines.len() <= 20 {
        serde_json::json!(d.lines.iter().map(|l| (&l.description, l.amount_minor)).collect::<Vec<_>>())
    } else {
        let mut h = sha2::Sha256::new();
        for l in &d.lines {
            h.update(l.description.as_bytes());
            h.update([0]);
            h.update(l.amount_minor.to_be_bytes());
        }
        serde_json::json!({ "count": d.lines.len(), "sha256": hex::encode(h.finalize()) })
    };
    Content {
        title: &d.title,
        department_id: d.department_id,
        document_date: d.document_date,
        currency: &d.currency,
        amount_minor: d.amount_minor,
        lines,
        attachments: d.attachments.iter().map(|a| (a.name.as_str(), a.reference.as_str())).collect(),
        version: d.version,
        round: d.round,
    }
}

fn same_attachment(a: &Attachment, n: &NewAttachment) -> bool {
    a.name == n.name.trim()
        && a.reference == n.reference.trim()
        && a.media_type == n.media_type
        && a.sha256.as_deref() == n.sha256.as_deref().map(str::to_ascii_lowercase).as_deref()
}

/// Edits a draft or queried document (the raiser only), if `expected_version` is still current.
/// Editing the money of a queried document (lines, currency, department, date) discards the
/// round's approvals and sends the answer back to the first level: nobody's approval stands
/// for an amount they did not see. Audited with the content before and after.
///
/// # Errors
/// `NotFound` (also when the caller may not read it), `Stale`, `NotEditable` (other statuses),
/// `Denied` (not the raiser; or a department the raiser may not raise in), `Invalid`/`Money`
/// (as for `create`), `PeriodClosed` (old or new date).
#[tracing::instrument(skip_all, fields(document_id = %id))]
pub async fn edit(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    id: Uuid,
    expected_version: i32,
    edit: &Edit,
) -> Result<Document, ApprovalError> {
    let before = lock_current(tx, engine, m, id, expected_version).await?;
    if !matches!(before.status, Status::Draft | Status::Queried) {
        return Err(ApprovalError::NotEditable { status: before.status });
    }
    let _permit = permit_on(engine, m, Action::DocumentEdit, &before)?;
    let tenant = m.subject.tenant;
    if edit.title.is_none()
        && edit.department_id.is_none()
        && edit.document_date.is_none()
        && edit.currency.is_none()
        && edit.lines.is_none()
        && edit.attachments.is_none()
    {
        return Err(invalid("body", "name at least one field to change"));
    }
    let currency = match edit.currency {
        Some(c) => c,
        None => before.currency.parse()?,
    };
    let new = NewDocument {
        kind: before.kind,
        department_id: edit.department_id.unwrap_or(before.department_id),
        title: edit.title.clone().unwrap_or_else(|| before.title.clone()),
        document_date: edit.document_date.unwrap_or(before.document_date),
        currency,
        lines: edit.lines.clone().unwrap_or_else(|| {
            before
                .lines
                .iter()
                .map(|l| NewLine { description: l.description.clone(), amount_minor: l.amount_minor })
                .collect()
        }),
        attachments: edit.attachments.clone().unwrap_or_default(),
    };
    let total = validate(&new)?;
    ensure_period_open(tx, before.document_date).await?;
    ensure_period_open(tx, new.document_date).await?;
    if new.department_id != before.department_id {
        if !departments::exists(tx, new.department_id).await? {
            return Err(invalid("department_id", "no such department"));
        }
        // Moving a document is raising it elsewhere: the raiser must be allowed to raise there.
        let moved = DocumentFacts { department: new.department_id, ..before.facts(tenant) };
        let _raise_there: Permit = engine.decide(&m.subject, Action::DocumentCreate, &Resource::Document(&moved))?;
    }
    let new_lines: Vec<(&str, i64)> = new.lines.iter().map(|l| (l.description.trim(), l.amount_minor)).collect();
    let old_lines: Vec<(&str, i64)> = before.lines.iter().map(|l| (l.description.as_str(), l.amount_minor)).collect();
    let lines_changed = new_lines != old_lines;
    let money_changed = lines_changed
        || new.currency.code() != before.currency
        || new.department_id != before.department_id
        || new.document_date != before.document_date;
    let restart = before.status == Status::Queried && money_changed;
    let (round, queried_from) =
        if restart { (before.round + 1, Some(Status::Submitted)) } else { (before.round, before.queried_from) };
    sqlx::query!(
        "update documents set title = $2, department_id = $3, document_date = $4, currency = $5, amount_minor = $6,
                queried_from = $7, round = $8, version = version + 1, updated_at = now()
          where id = $1",
        id,
        new.title.trim(),
        new.department_id,
        new.document_date,
        new.currency.code(),
        total.minor,
        queried_from.map(Status::as_str),
        round
    )
    .execute(tx.conn())
    .await?;
    if lines_changed {
        sqlx::query!("delete from document_lines where document_id = $1", id).execute(tx.conn()).await?;
        for (i, (description, amount)) in new_lines.iter().enumerate() {
            sqlx::query!(
                "insert into document_lines (tenant_id, document_id, line_no, description, amount_minor)
                 values (current_setting('app.tenant_id')::uuid, $1, $2, $3, $4)",
                id,
                i32::try_from(i + 1).unwrap_or(i32::MAX),
                description,
                amount
            )
            .execute(tx.conn())
            .await?;
        }
    }
    if let Some(wanted) = &edit.attachments {
        for a in before.attachments.iter().filter(|a| !wanted.iter().any(|n| same_attachment(a, n))) {
            sqlx::query!(
                "update document_attachments set removed_at = now(), removed_by = $3
                  where document_id = $1 and id = $2 and removed_at is null",
                id,
                a.id,
                m.subject.user
            )
            .execute(tx.conn())
            .await?;
        }
        for n in wanted.iter().filter(|n| !before.attachments.iter().any(|a| same_attachment(a, n))) {
            sqlx::query!(
                "insert into document_attachments (tenant_id, document_id, id, name, reference, media_type, sha256, added_by)
                 values (current_setting('app.tenant_id')::uuid, $1, $2, $3, $4, $5, $6, $7)",
                id,
                Uuid::now_v7(),
                n.name.trim(),
                n.reference.trim(),
                n.media_type.as_deref(),
                n.sha256.as_deref().and_then(|h| hex::decode(h).ok()),
                m.subject.user
            )
            .execute(tx.conn())
            .await?;
        }
    }
    let after = load(tx, id, false).await?;
    let changes = Changes::diff(Some(&content(&before)), Some(&content(&after)))?;
    let kind = before.kind.as_str();
    let event = Event::new(&format!("{kind}.edited"), Entity::of(ENTITY, id)?, changes)?;
    audit::record_by(tx, &m.who, &event).await?;
    Ok(after)
}

/// The organisation's MD thresholds: above `thresholds[currency]` (minor units of that currency)
/// the managing director approves after finance. A currency without a threshold always goes to
/// the MD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MdThresholds {
    /// ISO 4217 code → minor units, e.g. `{"EUR": 1000000, "GBP": 850000}`.
    pub thresholds: BTreeMap<String, i64>,
}

/// Reads the organisation's MD thresholds (owner, admin: the same decision as changing them).
///
/// # Errors
/// `Denied`.
pub async fn md_thresholds(tx: &mut TenantTx, engine: &Engine, m: &Member) -> Result<MdThresholds, ApprovalError> {
    let tenant = m.subject.tenant;
    engine
        .decide(&m.subject, Action::SettingsManage, &Resource::Organisation { tenant })?
        .require(Action::SettingsManage, tenant)?;
    Ok(MdThresholds { thresholds: tenants::md_thresholds(tx).await? })
}

/// Replaces the organisation's MD thresholds; audited with the thresholds before and after.
///
/// # Errors
/// `Denied` unless an owner/admin asks; `Invalid` (field `thresholds`) for a code that is not an
/// ISO 4217 currency or an amount outside 0-10^15 minor units.
pub async fn set_md_thresholds(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    new: &MdThresholds,
) -> Result<MdThresholds, ApprovalError> {
    check_thresholds(new)?;
    let tenant = m.subject.tenant;
    let permit = engine.decide(&m.subject, Action::SettingsManage, &Resource::Organisation { tenant })?;
    apply_md_thresholds(tx, &permit, &m.who, new).await
}

fn check_thresholds(new: &MdThresholds) -> Result<(), ApprovalError> {
    for (code, minor) in &new.thresholds {
        let currency: Currency =
            code.parse().map_err(|_| invalid("thresholds", format!("{code:?} is not an ISO 4217 currency code")))?;
        Money::new(*minor, currency)
            .map_err(|_| invalid("thresholds", format!("{code}: 0-{} minor units", crate::money::MAX_MINOR)))?;
    }
    Ok(())
}

/// Replaces the MD thresholds with a permit already issued (`set_md_thresholds` asks the
/// engine; the command line and `demo` act as the host operator).
///
/// # Errors
/// `Permit` unless `permit` is `settings.manage` on this organisation; `Invalid` as above.
pub async fn apply_md_thresholds(
    tx: &mut TenantTx,
    permit: &Permit,
    who: &Who,
    new: &MdThresholds,
) -> Result<MdThresholds, ApprovalError> {
    check_thresholds(new)?;
    let tenant = tx.tenant().as_uuid();
    permit.require(Action::SettingsManage, tenant)?;
    let before = tenants::replace_md_thresholds(tx, &new.thresholds).await?;
    let event = Event::new(
        "tenant.md_thresholds_changed",
        Entity::of("tenant", tenant)?,
        Changes::none().field("md_thresholds", &before, &new.thresholds),
    )?;
    audit::record_by(tx, who, &event).await?;
    Ok(new.clone())
}

/// A fiscal period as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Period {
    pub id: Uuid,
    pub name: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub status: String,
}

/// The periods the caller may read, newest first (finance, MD, admins, auditors; others none).
///
/// # Errors
/// Database errors only.
pub async fn periods(tx: &mut TenantTx, engine: &Engine, m: &Member) -> Result<Vec<Period>, ApprovalError> {
    let rows = sqlx::query_as!(
        Period,
        "select id, name, starts_on, ends_on, status from fiscal_periods order by starts_on desc limit 500"
    )
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .filter(|p| {
            let status = if p.status == "closed" { "closed" } else { "open" };
            let r = Resource::Period { tenant: m.subject.tenant, id: p.id, status, reason: "" };
            engine.decide(&m.subject, Action::PeriodRead, &r).is_ok()
        })
        .collect())
}

/// One period, if the caller may read periods; otherwise (or another organisation's) `NotFound`.
///
/// # Errors
/// `NotFound`.
pub async fn period(tx: &mut TenantTx, engine: &Engine, m: &Member, id: Uuid) -> Result<Period, ApprovalError> {
    let p =
        sqlx::query_as!(Period, "select id, name, starts_on, ends_on, status from fiscal_periods where id = $1", id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(ApprovalError::NotFound)?;
    let status = if p.status == "closed" { "closed" } else { "open" };
    let r = Resource::Period { tenant: m.subject.tenant, id: p.id, status, reason: "" };
    let _read: Permit = engine.decide(&m.subject, Action::PeriodRead, &r).map_err(|_| ApprovalError::NotFound)?;
    Ok(p)
}

/// Opens a new period (finance). Periods of one organisation never overlap.
///
/// # Errors
/// `Denied`, `Invalid` (dates, name), `Conflict` (overlap or duplicate name).
pub async fn open_period(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    name: &str,
    starts_on: NaiveDate,
    ends_on: NaiveDate,
) -> Result<Period, ApprovalError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(invalid("name", "1-100 characters"));
    }
    check_date("starts_on", starts_on)?;
    check_date("ends_on", ends_on)?;
    if ends_on < starts_on {
        return Err(invalid("ends_on", "must not be before starts_on"));
    }
    let id = Uuid::now_v7();
    let resource = Resource::Period { tenant: m.subject.tenant, id, status: "open", reason: "" };
    engine.decide(&m.subject, Action::PeriodOpen, &resource)?.require(Action::PeriodOpen, id)?;
    // Serialise period changes of this organisation so the overlap check cannot race (and so a
    // document write in flight finishes first).
    lock_periods(tx).await?;
    let overlap = sqlx::query_scalar!(
        "select name from fiscal_periods where starts_on <= $2 and ends_on >= $1 limit 1",
        starts_on,
        ends_on
    )
    .fetch_optional(tx.conn())
    .await?;
    if let Some(other) = overlap {
        return Err(ApprovalError::Conflict(format!("overlaps fiscal period {other}")));
    }
    sqlx::query!(
        "insert into fiscal_periods (tenant_id, id, name, starts_on, ends_on)
         values (current_setting('app.tenant_id')::uuid, $1, $2, $3, $4)",
        id,
        name,
        starts_on,
        ends_on
    )
    .execute(tx.conn())
    .await
    .map_err(|e| match e.as_database_error().and_then(|d| d.code()).as_deref() {
        Some("23505") => ApprovalError::Conflict(format!("a period named {name} exists")),
        _ => ApprovalError::Database(e),
    })?;
    let period = Period { id, name: name.to_owned(), starts_on, ends_on, status: "open".into() };
    let event =
        Event::new("fiscal_period.opened", Entity::of("fiscal_period", id)?, Changes::diff(None, Some(&period))?)?;
    audit::record_by(tx, &m.who, &event).await?;
    Ok(period)
}

/// Closes (finance, signed off in the audit log) or reopens (MD, with a reason) a period.
///
/// # Errors
/// `NotFound`, `Denied`, `Conflict` (already in that state), `Invalid` (reopen without reason).
#[tracing::instrument(skip_all, fields(period_id = %id, close))]
pub async fn set_period_status(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    id: Uuid,
    close: bool,
    reason: Option<&str>,
) -> Result<Period, ApprovalError> {
    // First the organisation's period lock (waits for document writes in flight), then the row.
    lock_periods(tx).await?;
    let row = sqlx::query_as!(
        Period,
        "select id, name, starts_on, ends_on, status from fiscal_periods where id = $1 for update",
        id
    )
    .fetch_optional(tx.conn())
    .await?
    .ok_or(ApprovalError::NotFound)?;
    let reason = reason.map(str::trim).unwrap_or_default();
    let status: &'static str = if row.status == "closed" { "closed" } else { "open" };
    let resource = Resource::Period { tenant: m.subject.tenant, id, status, reason };
    let action = if close { Action::PeriodClose } else { Action::PeriodReopen };
    if engine.decide(&m.subject, Action::PeriodRead, &resource).is_err() {
        return Err(ApprovalError::NotFound);
    }
    if !close && (reason.len() < 3 || reason.len() > 500) {
        return Err(invalid("reason", "reopening a period needs a reason of 3-500 characters"));
    }
    engine.decide(&m.subject, action, &resource)?.require(action, id)?;
    let to = if close { "closed" } else { "open" };
    if row.status == to {
        return Err(ApprovalError::Conflict(format!("period {} is already {to}", row.name)));
    }
    sqlx::query!(
        "update fiscal_periods
            set status = $2,
                closed_at = case when $2 = 'closed' then now() else null end,
                closed_by = case when $2 = 'closed' then $3::uuid else null end,
                reopened_reason = case when $2 = 'open' then $4 else reopened_reason end,
                updated_at = now()
          where id = $1",
        id,
        to,
        m.subject.user,
        (!close).then_some(reason)
    )
    .execute(tx.conn())
    .await?;
    let verb = if close { "closed" } else { "reopened" };
    let mut event = Event::new(
        &format!("fiscal_period.{verb}"),
        Entity::of("fiscal_period", id)?,
        Changes::none().field("status", &row.status, to),
    )?;
    if !reason.is_empty() {
        event = event.with_reason(reason)?;
    }
    audit::record_by(tx, &m.who, &event).await?;
    Ok(Period { status: to.into(), ..row })
}
