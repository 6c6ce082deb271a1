//! Lists of documents: "waiting for me", "raised by me", everything the caller may read — with
//! filters and keyset pagination — and bulk approval.
//!
//! The SQL narrows candidates the way the policies would (status per role, department for heads
//! of department, separation of duties); every row is then put to the authorisation engine, so
//! a list can never show what `get` would refuse. Rows the engine refuses are dropped (and
//! logged: it means the SQL and the policies disagree).

use authz::{Action, DocumentFacts, Engine, Resource};
use chrono::NaiveDate;
use identity::Role;
use serde::Serialize;
use store::TenantTx;
use uuid::Uuid;

use crate::documents::{self, ApprovalError, Document, Kind, Member, transition};
use crate::machine::{Status, Transition};
use crate::money::Currency;

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// Documents whose next step is the caller's: approvals at their level (not their own, not a
    /// second level of one they approved), payments for finance, queries they must answer.
    Waiting,
    /// Documents the caller raised.
    Raised,
    /// Everything the caller may read.
    #[default]
    All,
}

impl View {
    fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Raised => "raised",
            Self::All => "all",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub view: View,
    pub status: Option<Status>,
    pub kind: Option<Kind>,
    pub department_id: Option<Uuid>,
    pub date_from: Option<NaiveDate>,
    pub date_to: Option<NaiveDate>,
    /// Amount bounds are in minor units of `currency`, which they require.
    pub min_amount_minor: Option<i64>,
    pub max_amount_minor: Option<i64>,
    pub currency: Option<Currency>,
    /// The last id of the previous page.
    pub cursor: Option<Uuid>,
    /// 1-100.
    pub limit: i64,
}

/// One row of a list (no lines or approvals: `get` has those).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Item {
    pub id: Uuid,
    /// `PV-2026-0184`: see [`crate::documents::Document::number`].
    pub number: String,
    pub kind: Kind,
    pub department_id: Uuid,
    pub raised_by: Uuid,
    pub title: String,
    pub document_date: NaiveDate,
    pub currency: String,
    pub amount_minor: i64,
    pub status: Status,
    pub version: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Page {
    pub items: Vec<Item>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ApprovalError {
    ApprovalError::Invalid { field, reason: reason.into() }
}

/// The statuses whose next step a member in `role` takes (besides answering their own queries).
fn waiting_statuses(role: Role) -> Vec<&'static str> {
    let mut s = vec![Status::Queried.as_str()];
    match role {
        Role::Hod => s.push(Status::Submitted.as_str()),
        Role::Finance => s.extend([Status::HodApproved.as_str(), Status::Approved.as_str()]),
        Role::Md => s.push(Status::FinanceApproved.as_str()),
        _ => {}
    }
    s
}

/// What the caller would do next to a document in `status` (for the "waiting" check).
fn next_action(status: Status) -> Action {
    match status {
        Status::Queried => Action::DocumentAnswer,
        Status::Approved => Action::DocumentMarkPaid,
        _ => Action::DocumentApprove,
    }
}

/// Roles that read every document of the organisation (mirrors `read-organisation-wide`).
fn reads_everything(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin | Role::Finance | Role::Md | Role::Auditor)
}

/// A page of `filter.view` for `m`.
///
/// # Errors
/// `Invalid` naming the field (limit, amounts without currency, inverted ranges).
pub async fn list(tx: &mut TenantTx, engine: &Engine, m: &Member, filter: &Filter) -> Result<Page, ApprovalError> {
    if !(1..=200).contains(&filter.limit) {
        return Err(invalid("limit", "1-200"));
    }
    if (filter.min_amount_minor.is_some() || filter.max_amount_minor.is_some()) && filter.currency.is_none() {
        return Err(invalid("currency", "amount filters are in minor units of a currency: name it"));
    }
    if filter.min_amount_minor.is_some_and(|a| a < 0) {
        return Err(invalid("min_amount_minor", "must not be negative"));
    }
    if let (Some(lo), Some(hi)) = (filter.min_amount_minor, filter.max_amount_minor)
        && hi < lo
    {
        return Err(invalid("max_amount_minor", "must not be below min_amount_minor"));
    }
    if let (Some(from), Some(to)) = (filter.date_from, filter.date_to)
        && to < from
    {
        return Err(invalid("date_to", "must not be before date_from"));
    }
    let s = &m.subject;
    let rows = candidates(tx, s, filter).await?;
    let more = rows.len() as i64 > filter.limit;
    let mut items = Vec::with_capacity(rows.len());
    let mut last = None;
    for r in rows.into_iter().take(usize::try_from(filter.limit).unwrap_or(200)) {
        last = Some(r.id);
        let status = documents::stored_status(&r.status)?;
        let kind: Kind = r.kind.parse()?;
        let facts = DocumentFacts {
            tenant: s.tenant,
            id: r.id,
            kind: kind.as_str(),
            department: r.department_id,
            raiser: r.raised_by,
            status: status.as_str(),
            amount_minor: r.amount_minor,
            approvers: r.approvers,
            level: status.level(),
        };
        let action = if filter.view == View::Waiting { next_action(status) } else { Action::DocumentRead };
        if engine.decide(s, action, &Resource::Document(&facts)).is_err() {
            tracing::warn!(document = %r.id, view = filter.view.as_str(), "list row refused by policy: SQL and policies disagree");
            continue;
        }
        items.push(Item {
            id: r.id,
            number: r.number,
            kind,
            department_id: r.department_id,
            raised_by: r.raised_by,
            title: r.title,
            document_date: r.document_date,
            currency: r.currency,
            amount_minor: r.amount_minor,
            status,
            version: r.version,
        });
    }
    Ok(Page { items, next_cursor: if more { last } else { None } })
}

/// A row as the list query returns it (before the policy engine sees it).
#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    number: String,
    kind: String,
    department_id: Uuid,
    raised_by: Uuid,
    title: String,
    document_date: NaiveDate,
    currency: String,
    amount_minor: i64,
    status: String,
    version: i32,
    approvers: Vec<Uuid>,
}

/// One arm of a list: a conjunction the candidates must meet, beside the filters every arm shares.
struct Arm {
    /// The one status this arm reads (lets it use the `(tenant, status, …, id desc)` indexes).
    status: Option<&'static str>,
    raised_by_me: Option<bool>,
    department: Option<Uuid>,
    /// Not a document the caller already approved in its current round.
    not_approved_by_me: bool,
}

/// The arms of `view` for `s`: their union is what the policies would let the caller see (or
/// act on, for "waiting"), narrowed the way the policies narrow it.
fn arms(view: View, s: &authz::Subject) -> Vec<Arm> {
    let hod_department = if s.role == Role::Hod { s.department } else { None };
    let arm = |status, raised_by_me, department, not_approved_by_me| Arm {
        status,
        raised_by_me,
        department,
        not_approved_by_me,
    };
    match view {
        View::Raised => vec![arm(None, Some(true), None, false)],
        View::All if reads_everything(s.role) => vec![arm(None, None, None, false)],
        View::All => {
            let mut v = vec![arm(None, Some(true), None, false)];
            if let Some(d) = hod_department {
                v.push(arm(None, Some(false), Some(d), false));
            }
            v
        }
        View::Waiting => {
            // Queries wait on the person who raised the document; every other step waits on an
            // approver who did not raise it and has not yet approved it in this round.
            let mut v = vec![arm(Some(Status::Queried.as_str()), Some(true), None, false)];
            for status in waiting_statuses(s.role).into_iter().filter(|st| *st != Status::Queried.as_str()) {
                let department = if status == Status::Submitted.as_str() {
                    match hod_department {
                        Some(d) => Some(d),
                        None => continue,
                    }
                } else {
                    None
                };
                v.push(arm(Some(status), Some(false), department, status != Status::Approved.as_str()));
            }
            v
        }
    }
}

/// The candidate rows of a page: one `SELECT … ORDER BY id DESC LIMIT n` per arm, merged.
///
/// The statement carries `tenant_id = $tenant` although row-level security already enforces it:
/// the policies (tenant OR platform bypass) are a filter the planner cannot use as an index
/// condition, and without the explicit predicate every `(tenant_id, …)` index is out of reach.
/// Each arm pins one status (and department or raiser) so it walks one index range in id order
/// and stops after `n` rows; filters the caller left empty are left out of the text rather than
/// written as `$n IS NULL OR …`, which a cached generic plan cannot use.
async fn candidates(tx: &mut TenantTx, s: &authz::Subject, filter: &Filter) -> Result<Vec<Row>, ApprovalError> {
    let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
        "select d.id, d.number, d.kind, d.department_id, d.raised_by, d.title, d.document_date, d.currency, \
         d.amount_minor, d.status, d.version, \
         coalesce((select array_agg(a.approver) from document_approvals a \
                    where a.tenant_id = d.tenant_id and a.document_id = d.id and a.round = d.round), '{}') as approvers \
         from (",
    );
    if !push_arms(&mut q, s, filter) {
        return Ok(Vec::new());
    }
    q.push(") d order by d.id desc limit ").push_bind(filter.limit + 1);
    Ok(q.build_query_as::<Row>().fetch_all(tx.conn()).await?)
}

/// How many of the first `limit` documents waiting for `m` are of each kind, and whether more
/// wait: the inbox's counts. The same arms as [`list`] (the SQL narrowing the policies mirror)
/// counted in the database: the rows themselves are put to the engine only when listed.
///
/// # Errors
/// Database errors.
pub async fn waiting_counts(tx: &mut TenantTx, m: &Member, limit: i64) -> Result<WaitingCounts, ApprovalError> {
    let filter = Filter { view: View::Waiting, limit: limit.clamp(1, 1000), ..Filter::default() };
    let n = filter.limit;
    let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new("select d.kind, count(*) filter (where d.rn <= ");
    q.push_bind(n).push("), bool_or(d.rn > ").push_bind(n);
    q.push(") from (select u.kind, row_number() over (order by u.id desc) as rn from (");
    if !push_arms(&mut q, &m.subject, &filter) {
        return Ok(WaitingCounts::default());
    }
    q.push(") u order by u.id desc limit ").push_bind(n + 1).push(") d group by d.kind");
    let rows: Vec<(String, i64, Option<bool>)> = q.build_query_as().fetch_all(tx.conn()).await?;
    let mut c = WaitingCounts::default();
    for (kind, count, beyond) in rows {
        match kind.parse::<Kind>()? {
            Kind::Voucher => c.vouchers = count,
            Kind::PurchaseOrder => c.purchase_orders = count,
        }
        c.more |= beyond.unwrap_or(false);
    }
    Ok(c)
}

/// See [`waiting_counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitingCounts {
    pub vouchers: i64,
    pub purchase_orders: i64,
    /// More than the limit wait (the counts are of the first `limit`).
    pub more: bool,
}

/// Pushes the union of the arms of `filter.view` for `s` (each `order by id desc limit n + 1`);
/// `false` when no arm can match (nothing pushed).
fn push_arms(q: &mut sqlx::QueryBuilder<'_, sqlx::Postgres>, s: &authz::Subject, filter: &Filter) -> bool {
    let limit = filter.limit + 1;
    let arms: Vec<Arm> = arms(filter.view, s)
        .into_iter()
        .filter(|a| match (a.status, filter.status) {
            (Some(fixed), Some(wanted)) => fixed == wanted.as_str(),
            _ => true,
        })
        .collect();
    if arms.is_empty() {
        return false;
    }
    for (i, a) in arms.iter().enumerate() {
        if i > 0 {
            q.push(" union all ");
        }
        q.push("(select d.* from documents d where d.tenant_id = ").push_bind(s.tenant);
        match (a.status, filter.status) {
            (Some(fixed), _) => {
                q.push(" and d.status = ").push_bind(fixed);
            }
            (None, Some(wanted)) => {
                q.push(" and d.status = ").push_bind(wanted.as_str());
            }
            (None, None) => {}
        }
        match a.raised_by_me {
            Some(true) => {
                q.push(" and d.raised_by = ").push_bind(s.user);
            }
            Some(false) => {
                q.push(" and d.raised_by <> ").push_bind(s.user);
            }
            None => {}
        }
        if let Some(d) = a.department {
            q.push(" and d.department_id = ").push_bind(d);
        }
        if a.not_approved_by_me {
            q.push(
                " and not exists (select 1 from document_approvals a \
                   where a.tenant_id = d.tenant_id and a.document_id = d.id and a.round = d.round and a.approver = ",
            )
            .push_bind(s.user)
            .push(")");
        }
        if let Some(c) = filter.cursor {
            q.push(" and d.id < ").push_bind(c);
        }
        if let Some(k) = filter.kind {
            q.push(" and d.kind = ").push_bind(k.as_str());
        }
        if let Some(d) = filter.department_id {
            q.push(" and d.department_id = ").push_bind(d);
        }
        if let Some(from) = filter.date_from {
            q.push(" and d.document_date >= ").push_bind(from);
        }
        if let Some(to) = filter.date_to {
            q.push(" and d.document_date <= ").push_bind(to);
        }
        if let Some(lo) = filter.min_amount_minor {
            q.push(" and d.amount_minor >= ").push_bind(lo);
        }
        if let Some(hi) = filter.max_amount_minor {
            q.push(" and d.amount_minor <= ").push_bind(hi);
        }
        if let Some(c) = &filter.currency {
            q.push(" and d.currency = ").push_bind(c.code().to_owned());
        }
        q.push(" order by d.id desc limit ").push_bind(limit).push(")");
    }
    true
}

/// One document of a bulk approval: the id and the version the approver saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkItem {
    pub id: Uuid,
    pub version: i32,
}

/// Why a bulk approval was refused. Nothing was applied.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    /// The request itself is malformed.
    #[error(transparent)]
    Invalid(ApprovalError),
    /// The first document that could not be approved (its position in the request) and why.
    #[error("document {id} (item {index}): {error}")]
    Refused {
        index: usize,
        id: Uuid,
        #[source]
        error: ApprovalError,
    },
}

/// Approves every document in `items` as `m`, all or nothing: the caller commits `tx` only on
/// `Ok`. Rows are locked in id order (two bulk approvals over overlapping sets cannot deadlock).
/// An id that is not in this organisation fails the whole batch like any other refusal.
///
/// # Errors
/// [`BulkError::Invalid`] (empty, more than 100, duplicates) or [`BulkError::Refused`] naming
/// the first failure.
#[tracing::instrument(skip_all, fields(documents = items.len()))]
pub async fn approve_many(
    tx: &mut TenantTx,
    engine: &Engine,
    m: &Member,
    items: &[BulkItem],
    note: Option<&str>,
) -> Result<Vec<Document>, BulkError> {
    if items.is_empty() || items.len() > 100 {
        return Err(BulkError::Invalid(invalid("documents", "1-100 documents")));
    }
    let mut order: Vec<(usize, BulkItem)> = items.iter().copied().enumerate().collect();
    order.sort_by_key(|(_, i)| i.id);
    if order.windows(2).any(|w| w[0].1.id == w[1].1.id) {
        return Err(BulkError::Invalid(invalid("documents", "an id appears twice")));
    }
    let mut done = Vec::with_capacity(items.len());
    for (index, item) in order {
        match transition(tx, engine, m, item.id, Transition::Approve, item.version, note).await {
            Ok(d) => done.push((index, d)),
            Err(error) => return Err(BulkError::Refused { index, id: item.id, error }),
        }
    }
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, d)| d).collect())
}
