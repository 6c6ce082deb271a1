//! Vouchers and purchase orders in the database: create, read, transition, fiscal periods.
//!
//! Every write runs in the caller's `TenantTx` and follows one order: load the row `FOR UPDATE`,
//! compare the version the caller read (optimistic concurrency: two approvers racing cannot both
//! win), refuse documents dated in a closed fiscal period, ask the state machine what the
//! transition leads to, ask the authorisation engine for a permit, write, audit — all in the
//! same transaction, so nothing is half-applied.
//!
//! A refusal is an `Err`; the caller audits denials in a transaction of its own (this one rolls
//! back).

use audit::{Actor, Changes, Entity, Event, Who};
use authz::{Action, DocumentFacts, Engine, Level, Permit, Resource, Subject};
use chrono::NaiveDate;
use identity::Role;
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
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Permit(#[from] authz::Mismatch),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
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
        let row = sqlx::query!(
            "select role, department_id from memberships
              where user_id = $1 and status = 'active' and deleted_at is null
                and valid_from <= now() and (valid_until is null or valid_until > now())",
            user
        )
        .fetch_optional(tx.conn())
        .await?
        .ok_or(ApprovalError::NotFound)?;
        let role: Role = row.role.parse().map_err(|_| ApprovalError::NotFound)?;
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Document {
    pub id: Uuid,
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
    /// Approvals of the current round.
    pub approvals: Vec<Approval>,
    pub lines: Vec<Line>,
    pub attachments: Vec<Attachment>,
    /// What the document's state allows next (whoever may do it).
    pub allowed: Vec<Transition>,
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

pub(crate) async fn load(tx: &mut TenantTx, id: Uuid, for_update: bool) -> Result<Document, ApprovalError> {
    if for_update {
        // Writers serialise on the row; the read below then sees the locked version.
        sqlx::query!("select id from documents where id = $1 for update", id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(ApprovalError::NotFound)?;
    }
    let r = sqlx::query!(
        "select id, kind, department_id, raised_by, title, document_date, currency, amount_minor, status,
                queried_from, version, round
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
        "select level, approver, approver_role from document_approvals
          where document_id = $1 and round = $2 order by approved_at",
        id,
        r.round
    )
    .fetch_all(tx.conn())
    .await?;
    let lines = sqlx::query_as!(
        Line,
        "select line_no, description, amount_minor from document_lines where document_id = $1 order by line_no",
        id
    )
    .fetch_all(tx.conn())
    .await?;
    let attachments = sqlx::query!(
        "select id, name, reference, media_type, sha256, added_by from document_attachments
          where document_id = $1 order by created_at, id",
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
    Ok(Document {
        id: r.id,
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
        approvals,
        lines,
        attachments,
        allowed: machine::allowed(status),
    })
}

/// Refuses any change to a document dated inside a closed fiscal period.
async fn ensure_period_open(tx: &mut TenantTx, date: NaiveDate) -> Result<(), ApprovalError> {
    let closed = sqlx::query_scalar!(
        "select name from fiscal_periods where status = 'closed' and $1 between starts_on and ends_on limit 1",
        date
    )
    .fetch_optional(tx.conn())
    .await?;
    match closed {
        Some(period) => Err(ApprovalError::PeriodClosed { period }),
        None => Ok(()),
    }
}

fn validate(new: &NewDocument) -> Result<Money, ApprovalError> {
    let title = new.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(invalid("title", "1-200 characters"));
    }
    if new.lines.is_empty() || new.lines.len() > 1000 {
        return Err(invalid("lines", "1-1000 lines"));
    }
    for (i, l) in new.lines.iter().enumerate() {
        let d = l.description.trim();
        if d.is_empty() || d.chars().count() > 500 {
            return Err(invalid("lines", format!("line {}: description 1-500 characters", i + 1)));
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
pub async fn create(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    new: &NewDocument,
) -> Result<Document, ApprovalError> {
    let total = validate(new)?;
    let dept =
        sqlx::query_scalar!("select id from departments where id = $1 and deleted_at is null", new.department_id)
            .fetch_optional(tx.conn())
            .await?;
    if dept.is_none() {
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
    let event = Event::new(&format!("{}.created", new.kind.as_str()), Entity::of(new.kind.as_str(), id)?, changes)?;
    audit::record_by(tx, &m.who, &event).await?;
    Ok(doc)
}

/// The audited fields of a document (lines are summarised by count and total).
#[derive(Serialize)]
struct Summary<'a> {
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

/// Applies `t` to document `id` as `m`, if `expected_version` is still current. `note` is the
/// question (query), the answer, or the reason (reject, cancel, amend: required).
///
/// # Errors
/// `NotFound` (also when the caller may not even read it), `Stale`, `PeriodClosed`,
/// `NotAllowed` (with the allowed transitions), `Denied`, `Invalid` (missing note).
pub async fn transition(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    id: Uuid,
    t: Transition,
    expected_version: i32,
    note: Option<&str>,
) -> Result<Document, ApprovalError> {
    let before = load(tx, id, true).await?;
    let tenant = m.subject.tenant;
    if engine.decide(&m.subject, Action::DocumentRead, &Resource::Document(&before.facts(tenant))).is_err() {
        return Err(ApprovalError::NotFound);
    }
    if before.version != expected_version {
        return Err(ApprovalError::Stale { current: before.version });
    }
    ensure_period_open(tx, before.document_date).await?;
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    if matches!(t, Transition::Reject | Transition::Query | Transition::Answer | Transition::Amend | Transition::Cancel)
        && note.is_none_or(|n| n.len() < 3 || n.len() > 2000)
    {
        return Err(invalid("note", format!("{t} needs a note of 3-2000 characters")));
    }
    let threshold = sqlx::query_scalar!("select md_threshold_minor from tenants where id = $1", tenant)
        .fetch_one(tx.conn())
        .await?;
    let state = State { status: before.status, queried_from: before.queried_from, amount_minor: before.amount_minor };
    let step = machine::step(&state, t, threshold)?;
    let permit: Permit = engine.decide(&m.subject, t.action(), &Resource::Document(&before.facts(tenant)))?;
    permit.require(t.action(), id)?;

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
    let mut event = Event::new(&format!("{kind}.{action}"), Entity::of(kind, id)?, changes)?;
    if let Some(n) = note {
        event = event.with_reason(n)?;
    }
    audit::record_by(tx, &m.who, &event).await?;
    Ok(after)
}

/// Sets the organisation's MD threshold (minor units; `None`: no MD level).
///
/// # Errors
/// `Denied` unless an owner/admin asks; `Invalid` for a negative amount.
pub async fn set_md_threshold(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    threshold: Option<i64>,
) -> Result<(), ApprovalError> {
    if threshold.is_some_and(|t| t < 0) {
        return Err(invalid("md_threshold_minor", "must not be negative"));
    }
    let tenant = m.subject.tenant;
    engine
        .decide(&m.subject, Action::SettingsManage, &Resource::Organisation { tenant })?
        .require(Action::SettingsManage, tenant)?;
    let before = sqlx::query_scalar!("select md_threshold_minor from tenants where id = $1", tenant)
        .fetch_one(tx.conn())
        .await?;
    sqlx::query!("update tenants set md_threshold_minor = $2, updated_at = now() where id = $1", tenant, threshold)
        .execute(tx.conn())
        .await?;
    let event = Event::new(
        "tenant.md_threshold_changed",
        Entity::of("tenant", tenant)?,
        Changes::none().field("md_threshold_minor", before, threshold),
    )?;
    audit::record_by(tx, &m.who, &event).await?;
    Ok(())
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
    if ends_on < starts_on {
        return Err(invalid("ends_on", "must not be before starts_on"));
    }
    let id = Uuid::now_v7();
    let resource = Resource::Period { tenant: m.subject.tenant, id, status: "open", reason: "" };
    engine.decide(&m.subject, Action::PeriodOpen, &resource)?.require(Action::PeriodOpen, id)?;
    // Serialise period changes of this organisation so the overlap check cannot race.
    sqlx::query!("select id from tenants where id = $1 for update", m.subject.tenant).fetch_one(tx.conn()).await?;
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
pub async fn set_period_status(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    id: Uuid,
    close: bool,
    reason: Option<&str>,
) -> Result<Period, ApprovalError> {
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
