//! Market development funds (MDF): budgets per partner and quarter, requests for an activity,
//! claims with proof-of-performance files, approvals and payment.
//!
//! Guarantees, and where they live:
//! - a budget never goes negative and claims never exceed their request's approved amount:
//!   database checks on totals the database keeps itself (migration 0027), serialised on the
//!   parent row's lock, so two racing approvals or claims for the last of it cannot both win
//!   (the loser is 409 `budget_exceeded` / `claim_exceeds_approval`);
//! - a partner person sees only its own company's MDF rows: the `partner_isolation` policy;
//! - requests are decided by the vendor's channel managers, claims approved and paid by finance,
//!   never by whoever requested or filed them and never by a partner person: the policy engine
//!   (asked about the row: [`authz::MdfFacts`]), the checks here, and table checks;
//! - every change is an audit event with its before/after deltas; an illegal move is 409
//!   `transition_not_allowed` ([`next_request`], [`next_claim`]).

use audit::{Changes, Entity, Event, Who};
use authz::{Action, Engine, MdfFacts, Permit, Resource, Subject};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use store::TenantTx;
use uuid::Uuid;

use crate::partners::Tier;
use crate::{ProgramError, Scope, invalid, scope};

/// A budget period: a calendar quarter, `YYYY-Qn` (2000-2999).
pub fn parse_period(raw: &str) -> Result<String, ProgramError> {
    let p = raw.trim().to_ascii_uppercase();
    let ok = p.len() == 7
        && p.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && p.starts_with('2')
        && &p[4..6] == "-Q"
        && matches!(p.as_bytes()[6], b'1'..=b'4');
    if !ok {
        return Err(invalid("period", "a quarter as YYYY-Qn, such as 2026-Q4"));
    }
    Ok(p)
}

fn currency(raw: &str) -> Result<String, ProgramError> {
    let c: approvals::money::Currency =
        raw.parse().map_err(|_| invalid("currency", "expected an ISO 4217 code such as EUR or USD"))?;
    Ok(c.code().to_owned())
}

fn amount(field: &'static str, v: i64, min: i64) -> Result<i64, ProgramError> {
    if !(min..=approvals::money::MAX_MINOR).contains(&v) {
        return Err(invalid(field, format!("{min}-{} minor units", approvals::money::MAX_MINOR)));
    }
    Ok(v)
}

fn text(field: &'static str, raw: &str, max: usize) -> Result<String, ProgramError> {
    let r = raw.trim();
    let n = r.chars().count();
    if !(3..=max).contains(&n) || r.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(field, format!("must be 3-{max} characters")));
    }
    Ok(r.to_owned())
}

fn vendor_only(s: Scope) -> Result<(), ProgramError> {
    match s {
        Scope::Vendor => Ok(()),
        Scope::Partner(_) => Err(ProgramError::Forbidden {
            code: "partners_never_decide",
            reason: "MDF budgets, approvals and payments are the vendor's".into(),
        }),
    }
}

fn partner_only(s: Scope) -> Result<Uuid, ProgramError> {
    match s {
        Scope::Partner(p) => Ok(p),
        Scope::Vendor => Err(ProgramError::Forbidden {
            code: "partners_only",
            reason: "MDF is requested and claimed by the partner's own people".into(),
        }),
    }
}

/// Maps the MDF table checks a write can trip to their stable refusals.
fn constraint(e: sqlx::Error) -> ProgramError {
    let name = e.as_database_error().and_then(|d| d.constraint()).map(str::to_owned);
    match name.as_deref() {
        Some("mdf_budgets_never_negative") => ProgramError::Conflict {
            code: "budget_exceeded",
            reason: "approving this would take the partner's MDF budget below zero".into(),
        },
        Some("mdf_requests_claims_within_approval") => ProgramError::Conflict {
            code: "claim_exceeds_approval",
            reason: "claims may not exceed the request's approved amount".into(),
        },
        Some("mdf_requests_claims_only_when_approved") => ProgramError::Conflict {
            code: "request_not_approved",
            reason: "claims are filed against an approved request only".into(),
        },
        Some("mdf_budgets_tenant_id_partner_id_period_currency_key") => ProgramError::Conflict {
            code: "budget_exists",
            reason: "this partner already has a budget for that period and currency".into(),
        },
        Some(
            "mdf_requests_requester_never_decides" | "mdf_claims_filer_never_decides" | "mdf_claims_filer_never_pays",
        ) => ProgramError::Forbidden {
            code: "separation_of_duties",
            reason: "whoever requested or filed it never decides or pays it".into(),
        },
        _ => e.into(),
    }
}

async fn record(
    tx: &mut TenantTx,
    who: &Who,
    action: &str,
    kind: &str,
    id: Uuid,
    changes: Changes,
    reason: Option<&str>,
) -> Result<(), ProgramError> {
    let mut event = Event::new(action, Entity::of(kind, id)?, changes)?;
    if let Some(r) = reason {
        event = event.with_reason(r)?;
    }
    audit::record_by(tx, who, &event).await?;
    Ok(())
}

// ---- Allowances (per tier) ------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MdfAllowance)]
pub struct Allowance {
    pub tier: Tier,
    pub currency: String,
    /// What a new budget of a partner of this tier gets per quarter, minor units.
    pub amount_minor: i64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = NewMdfAllowance)]
pub struct NewAllowance {
    pub tier: Tier,
    /// ISO 4217 code.
    pub currency: String,
    pub amount_minor: i64,
}

#[derive(sqlx::FromRow)]
struct AllowanceRow {
    tier: String,
    currency: String,
    amount_minor: i64,
    updated_at: DateTime<Utc>,
}

impl TryFrom<AllowanceRow> for Allowance {
    type Error = ProgramError;

    fn try_from(r: AllowanceRow) -> Result<Self, ProgramError> {
        Ok(Self {
            tier: Tier::parse(&r.tier)?,
            currency: r.currency,
            amount_minor: r.amount_minor,
            updated_at: r.updated_at,
        })
    }
}

/// Sets (or changes) the allowance of a tier in a currency. Existing budgets keep their amount.
pub async fn set_allowance(
    tx: &mut TenantTx,
    who: &Who,
    permit: &Permit,
    by: Uuid,
    new: &NewAllowance,
) -> Result<Allowance, ProgramError> {
    permit.require(Action::MdfBudgetManage, tx.tenant().as_uuid())?;
    vendor_only(scope(tx).await?)?;
    let cur = currency(&new.currency)?;
    let amount = amount("amountMinor", new.amount_minor, 0)?;
    let before: Option<i64> = sqlx::query_scalar(
        "select amount_minor from mdf_allowances where tenant_id = $1 and tier = $2 and currency = $3 for update",
    )
    .bind(tx.tenant().as_uuid())
    .bind(new.tier.as_str())
    .bind(&cur)
    .fetch_optional(tx.conn())
    .await?;
    let id = Uuid::now_v7();
    let row: AllowanceRow = sqlx::query_as(
        "insert into mdf_allowances (tenant_id, id, tier, currency, amount_minor, created_by)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (tenant_id, tier, currency) do update set amount_minor = excluded.amount_minor, updated_at = now()
         returning tier, currency, amount_minor, updated_at",
    )
    .bind(tx.tenant().as_uuid())
    .bind(id)
    .bind(new.tier.as_str())
    .bind(&cur)
    .bind(amount)
    .bind(by)
    .fetch_one(tx.conn())
    .await?;
    let changes = Changes::none()
        .field("tier", None::<String>, new.tier.as_str())
        .field("currency", None::<String>, &cur)
        .field("amount_minor", before, amount);
    let entity = format!("{}:{cur}", new.tier.as_str());
    let event = Event::new("mdf_allowance.set", Entity::new("mdf_allowance", Some(entity))?, changes)?;
    audit::record_by(tx, who, &event).await?;
    row.try_into()
}

/// The organisation's allowances (vendor staff).
pub async fn list_allowances(tx: &mut TenantTx) -> Result<Vec<Allowance>, ProgramError> {
    vendor_only(scope(tx).await?)?;
    let rows: Vec<AllowanceRow> = sqlx::query_as(
        "select tier, currency, amount_minor, updated_at from mdf_allowances where tenant_id = $1 order by tier, currency",
    )
    .bind(tx.tenant().as_uuid())
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(Allowance::try_from).collect()
}

// ---- Budgets --------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MdfBudget)]
pub struct Budget {
    pub id: Uuid,
    pub partner_id: Uuid,
    /// `YYYY-Qn`.
    pub period: String,
    pub currency: String,
    pub amount_minor: i64,
    /// The sum of the approved requests (kept by the database).
    pub committed_minor: i64,
    pub created_at: DateTime<Utc>,
}

impl Budget {
    /// What is left to approve.
    #[must_use]
    pub fn remaining_minor(&self) -> i64 {
        self.amount_minor - self.committed_minor
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = NewMdfBudget)]
pub struct NewBudget {
    pub partner_id: Uuid,
    /// `YYYY-Qn`.
    pub period: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Absent: the allowance of the partner's tier in that currency.
    #[serde(default)]
    pub amount_minor: Option<i64>,
}

const BUDGET_COLUMNS: &str = "id, partner_id, period, currency, amount_minor, committed_minor, created_at";

/// The vendor gives a partner a budget for a quarter: the amount named, or its tier's allowance.
pub async fn create_budget(
    tx: &mut TenantTx,
    who: &Who,
    permit: &Permit,
    by: Uuid,
    new: &NewBudget,
) -> Result<Budget, ProgramError> {
    permit.require(Action::MdfBudgetManage, tx.tenant().as_uuid())?;
    vendor_only(scope(tx).await?)?;
    let period = parse_period(&new.period)?;
    let cur = currency(&new.currency)?;
    let partner = crate::partners::get(tx, new.partner_id).await?;
    let amount_minor = match new.amount_minor {
        Some(a) => amount("amountMinor", a, 0)?,
        None => sqlx::query_scalar(
            "select amount_minor from mdf_allowances where tenant_id = $1 and tier = $2 and currency = $3",
        )
        .bind(tx.tenant().as_uuid())
        .bind(partner.tier.as_str())
        .bind(&cur)
        .fetch_optional(tx.conn())
        .await?
        .ok_or_else(|| {
            invalid(
                "amountMinor",
                format!("no MDF allowance for {} partners in {cur}: name the amount", partner.tier.as_str()),
            )
        })?,
    };
    let id = Uuid::now_v7();
    let b: Budget = sqlx::query_as(&format!(
        "insert into mdf_budgets (tenant_id, id, partner_id, period, currency, amount_minor, created_by)
         values ($1, $2, $3, $4, $5, $6, $7)
         returning {BUDGET_COLUMNS}"
    ))
    .bind(tx.tenant().as_uuid())
    .bind(id)
    .bind(partner.id)
    .bind(&period)
    .bind(&cur)
    .bind(amount_minor)
    .bind(by)
    .fetch_one(tx.conn())
    .await
    .map_err(constraint)?;
    let changes = Changes::none()
        .field("partner_id", None::<String>, b.partner_id.to_string())
        .field("period", None::<String>, &b.period)
        .field("currency", None::<String>, &b.currency)
        .field("amount_minor", None::<i64>, b.amount_minor)
        .field("tier", None::<String>, partner.tier.as_str());
    record(tx, who, "mdf_budget.created", "mdf_budget", id, changes, None).await?;
    Ok(b)
}

/// The budgets the caller may see (a partner: its own), newest period first.
pub async fn list_budgets(tx: &mut TenantTx, limit: i64) -> Result<Vec<Budget>, ProgramError> {
    scope(tx).await?;
    Ok(sqlx::query_as(&format!(
        "select {BUDGET_COLUMNS} from mdf_budgets where tenant_id = $1
          order by period desc, created_at desc, id desc limit $2"
    ))
    .bind(tx.tenant().as_uuid())
    .bind(limit.clamp(1, 500))
    .fetch_all(tx.conn())
    .await?)
}

/// One budget; another partner's is [`ProgramError::NotFound`].
pub async fn get_budget(tx: &mut TenantTx, id: Uuid) -> Result<Budget, ProgramError> {
    scope(tx).await?;
    sqlx::query_as(&format!("select {BUDGET_COLUMNS} from mdf_budgets where tenant_id = $1 and id = $2"))
        .bind(tx.tenant().as_uuid())
        .bind(id)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(ProgramError::NotFound)
}

// ---- Requests -------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = MdfRequestStatus)]
pub enum RequestStatus {
    Requested,
    Approved,
    Rejected,
}

impl RequestStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Result<Self, ProgramError> {
        match s {
            "requested" => Ok(Self::Requested),
            "approved" => Ok(Self::Approved),
            "rejected" => Ok(Self::Rejected),
            _ => Err(invalid("status", format!("unknown status {s}"))),
        }
    }
}

/// A decision on a request or a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = MdfDecision)]
pub enum Decision {
    Approve,
    Reject,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
        }
    }
}

/// The request state machine: `requested` → `approved` | `rejected`, both final.
#[must_use]
pub fn next_request(from: RequestStatus, d: Decision) -> Option<RequestStatus> {
    match (from, d) {
        (RequestStatus::Requested, Decision::Approve) => Some(RequestStatus::Approved),
        (RequestStatus::Requested, Decision::Reject) => Some(RequestStatus::Rejected),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MdfRequest)]
pub struct Request {
    pub id: Uuid,
    pub partner_id: Uuid,
    pub budget_id: Uuid,
    pub currency: String,
    pub activity: String,
    pub amount_minor: i64,
    pub status: RequestStatus,
    /// The sum of its live claims (claimed, approved, paid), kept by the database.
    pub claimed_minor: i64,
    pub requested_by: Uuid,
    pub decided_by: Option<Uuid>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decision_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RequestRow {
    id: Uuid,
    partner_id: Uuid,
    budget_id: Uuid,
    currency: String,
    activity: String,
    amount_minor: i64,
    status: String,
    claimed_minor: i64,
    requested_by: Uuid,
    decided_by: Option<Uuid>,
    decided_at: Option<DateTime<Utc>>,
    decision_reason: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<RequestRow> for Request {
    type Error = ProgramError;

    fn try_from(r: RequestRow) -> Result<Self, ProgramError> {
        Ok(Self {
            id: r.id,
            partner_id: r.partner_id,
            budget_id: r.budget_id,
            currency: r.currency,
            activity: r.activity,
            amount_minor: r.amount_minor,
            status: RequestStatus::parse(&r.status)?,
            claimed_minor: r.claimed_minor,
            requested_by: r.requested_by,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            decision_reason: r.decision_reason,
            created_at: r.created_at,
        })
    }
}

const REQUEST_COLUMNS: &str = "id, partner_id, budget_id, currency, activity, amount_minor, status, claimed_minor,
    requested_by, decided_by, decided_at, decision_reason, created_at";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = NewMdfRequest)]
pub struct NewRequest {
    pub budget_id: Uuid,
    /// What the funds are for (3-500 characters).
    pub activity: String,
    /// Minor units of the budget's currency.
    pub amount_minor: i64,
}

/// A partner person requests funds from its own company's budget (another partner's budget is
/// not found). More than the budget has left is refused at once; the binding check is at
/// approval, in the database.
pub async fn request(
    tx: &mut TenantTx,
    who: &Who,
    permit: &Permit,
    by: Uuid,
    new: &NewRequest,
) -> Result<Request, ProgramError> {
    permit.require(Action::MdfRequest, tx.tenant().as_uuid())?;
    partner_only(scope(tx).await?)?;
    let activity = text("activity", &new.activity, 500)?;
    let amount = amount("amountMinor", new.amount_minor, 1)?;
    let budget = get_budget(tx, new.budget_id).await?;
    if amount > budget.remaining_minor() {
        return Err(ProgramError::Conflict {
            code: "budget_exceeded",
            reason: format!("the budget has {} {} left", budget.remaining_minor(), budget.currency),
        });
    }
    let id = Uuid::now_v7();
    let row: RequestRow = sqlx::query_as(&format!(
        "insert into mdf_requests (tenant_id, id, partner_id, budget_id, currency, activity, amount_minor, requested_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         returning {REQUEST_COLUMNS}"
    ))
    .bind(tx.tenant().as_uuid())
    .bind(id)
    .bind(budget.partner_id)
    .bind(budget.id)
    .bind(&budget.currency)
    .bind(&activity)
    .bind(amount)
    .bind(by)
    .fetch_one(tx.conn())
    .await
    .map_err(constraint)?;
    let r = Request::try_from(row)?;
    let changes = Changes::none()
        .field("budget_id", None::<String>, r.budget_id.to_string())
        .field("activity", None::<String>, &r.activity)
        .field("amount_minor", None::<i64>, r.amount_minor)
        .field("currency", None::<String>, &r.currency)
        .field("status", None::<String>, r.status.as_str());
    record(tx, who, "mdf_request.created", "mdf_request", id, changes, None).await?;
    Ok(r)
}

/// The requests the caller may see, newest first.
pub async fn list_requests(tx: &mut TenantTx, limit: i64) -> Result<Vec<Request>, ProgramError> {
    scope(tx).await?;
    let rows: Vec<RequestRow> = sqlx::query_as(&format!(
        "select {REQUEST_COLUMNS} from mdf_requests where tenant_id = $1 order by created_at desc, id desc limit $2"
    ))
    .bind(tx.tenant().as_uuid())
    .bind(limit.clamp(1, 500))
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(Request::try_from).collect()
}

async fn load_request(tx: &mut TenantTx, id: Uuid, lock: bool) -> Result<Request, ProgramError> {
    scope(tx).await?;
    let lock = if lock { " for update" } else { "" };
    let row: RequestRow =
        sqlx::query_as(&format!("select {REQUEST_COLUMNS} from mdf_requests where tenant_id = $1 and id = $2{lock}"))
            .bind(tx.tenant().as_uuid())
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(ProgramError::NotFound)?;
    row.try_into()
}

/// One request; another partner's is [`ProgramError::NotFound`].
pub async fn get_request(tx: &mut TenantTx, id: Uuid) -> Result<Request, ProgramError> {
    load_request(tx, id, false).await
}

fn refused(what: &str, from: &str, step: &str) -> ProgramError {
    ProgramError::Conflict { code: "transition_not_allowed", reason: format!("a {from} {what} cannot {step}") }
}

/// A channel manager approves or rejects a request (a reason is required to reject). Approving
/// commits the amount to the budget, in the database: 409 `budget_exceeded` when it has not that
/// much left (also when another approval took it a moment before).
pub async fn decide_request(
    tx: &mut TenantTx,
    engine: &Engine,
    subject: &Subject,
    who: &Who,
    id: Uuid,
    decision: Decision,
    reason: Option<&str>,
) -> Result<Request, ProgramError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty()).map(|r| text("reason", r, 2000)).transpose()?;
    if decision == Decision::Reject && reason.is_none() {
        return Err(invalid("reason", "say why the request is rejected"));
    }
    let r = load_request(tx, id, true).await?;
    let facts = MdfFacts { tenant: tx.tenant().as_uuid(), id: r.id, partner: r.partner_id, filer: r.requested_by };
    let permit = engine.decide(subject, Action::MdfRequestDecide, &Resource::Mdf(&facts))?;
    permit.require(Action::MdfRequestDecide, r.id)?;
    vendor_only(scope(tx).await?)?;
    if subject.user == r.requested_by {
        return Err(ProgramError::Forbidden {
            code: "separation_of_duties",
            reason: "whoever requested MDF never decides the request".into(),
        });
    }
    let to =
        next_request(r.status, decision).ok_or_else(|| refused("request", r.status.as_str(), decision.as_str()))?;
    sqlx::query(
        "update mdf_requests set status = $3, decided_by = $4, decided_at = now(), decision_reason = $5,
                updated_at = now()
          where tenant_id = $1 and id = $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(id)
    .bind(to.as_str())
    .bind(subject.user)
    .bind(&reason)
    .execute(tx.conn())
    .await
    .map_err(constraint)?;
    let changes = Changes::none().field("status", r.status.as_str(), to.as_str()).field(
        "decided_by",
        None::<String>,
        subject.user.to_string(),
    );
    let action = if to == RequestStatus::Approved { "mdf_request.approved" } else { "mdf_request.rejected" };
    record(tx, who, action, "mdf_request", id, changes, reason.as_deref()).await?;
    get_request(tx, id).await
}

// ---- Claims ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = MdfClaimStatus)]
pub enum ClaimStatus {
    Claimed,
    Approved,
    Rejected,
    Paid,
}

impl ClaimStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Paid => "paid",
        }
    }

    fn parse(s: &str) -> Result<Self, ProgramError> {
        match s {
            "claimed" => Ok(Self::Claimed),
            "approved" => Ok(Self::Approved),
            "rejected" => Ok(Self::Rejected),
            "paid" => Ok(Self::Paid),
            _ => Err(invalid("status", format!("unknown status {s}"))),
        }
    }
}

/// What may happen to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimStep {
    Approve,
    Reject,
    Pay,
}

impl ClaimStep {
    fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
            Self::Pay => "pay",
        }
    }
}

/// The claim state machine: `claimed` → `approved` | `rejected`; `approved` → `paid`.
#[must_use]
pub fn next_claim(from: ClaimStatus, step: ClaimStep) -> Option<ClaimStatus> {
    match (from, step) {
        (ClaimStatus::Claimed, ClaimStep::Approve) => Some(ClaimStatus::Approved),
        (ClaimStatus::Claimed, ClaimStep::Reject) => Some(ClaimStatus::Rejected),
        (ClaimStatus::Approved, ClaimStep::Pay) => Some(ClaimStatus::Paid),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MdfClaim)]
pub struct Claim {
    pub id: Uuid,
    pub partner_id: Uuid,
    pub request_id: Uuid,
    pub currency: String,
    pub amount_minor: i64,
    pub description: String,
    pub status: ClaimStatus,
    pub claimed_by: Uuid,
    pub decided_by: Option<Uuid>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decision_reason: Option<String>,
    pub paid_by: Option<Uuid>,
    pub paid_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: Uuid,
    partner_id: Uuid,
    request_id: Uuid,
    currency: String,
    amount_minor: i64,
    description: String,
    status: String,
    claimed_by: Uuid,
    decided_by: Option<Uuid>,
    decided_at: Option<DateTime<Utc>>,
    decision_reason: Option<String>,
    paid_by: Option<Uuid>,
    paid_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl TryFrom<ClaimRow> for Claim {
    type Error = ProgramError;

    fn try_from(r: ClaimRow) -> Result<Self, ProgramError> {
        Ok(Self {
            id: r.id,
            partner_id: r.partner_id,
            request_id: r.request_id,
            currency: r.currency,
            amount_minor: r.amount_minor,
            description: r.description,
            status: ClaimStatus::parse(&r.status)?,
            claimed_by: r.claimed_by,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            decision_reason: r.decision_reason,
            paid_by: r.paid_by,
            paid_at: r.paid_at,
            created_at: r.created_at,
        })
    }
}

const CLAIM_COLUMNS: &str = "id, partner_id, request_id, currency, amount_minor, description, status, claimed_by,
    decided_by, decided_at, decision_reason, paid_by, paid_at, created_at";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = NewMdfClaim)]
pub struct NewClaim {
    pub request_id: Uuid,
    /// Minor units of the request's currency; all live claims together stay within the
    /// approved amount.
    pub amount_minor: i64,
    /// What was done (3-2000 characters); the proof files follow.
    pub description: String,
}

/// A partner person files a claim against its company's approved request. More than the
/// request has left is 409 `claim_exceeds_approval`, decided by the database under the request's
/// row lock (two racing claims for the last of it: one wins).
pub async fn claim(
    tx: &mut TenantTx,
    who: &Who,
    permit: &Permit,
    by: Uuid,
    new: &NewClaim,
) -> Result<Claim, ProgramError> {
    permit.require(Action::MdfClaim, tx.tenant().as_uuid())?;
    partner_only(scope(tx).await?)?;
    let description = text("description", &new.description, 2000)?;
    let amount = amount("amountMinor", new.amount_minor, 1)?;
    let r = get_request(tx, new.request_id).await?;
    if r.status != RequestStatus::Approved {
        return Err(ProgramError::Conflict {
            code: "request_not_approved",
            reason: format!("a {} request takes no claims", r.status.as_str()),
        });
    }
    let id = Uuid::now_v7();
    let row: ClaimRow = sqlx::query_as(&format!(
        "insert into mdf_claims (tenant_id, id, partner_id, request_id, currency, amount_minor, description, claimed_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         returning {CLAIM_COLUMNS}"
    ))
    .bind(tx.tenant().as_uuid())
    .bind(id)
    .bind(r.partner_id)
    .bind(r.id)
    .bind(&r.currency)
    .bind(amount)
    .bind(&description)
    .bind(by)
    .fetch_one(tx.conn())
    .await
    .map_err(constraint)?;
    let c = Claim::try_from(row)?;
    let changes = Changes::none()
        .field("request_id", None::<String>, c.request_id.to_string())
        .field("amount_minor", None::<i64>, c.amount_minor)
        .field("currency", None::<String>, &c.currency)
        .field("status", None::<String>, c.status.as_str());
    record(tx, who, "mdf_claim.filed", "mdf_claim", id, changes, None).await?;
    Ok(c)
}

/// The claims the caller may see, newest first.
pub async fn list_claims(tx: &mut TenantTx, limit: i64) -> Result<Vec<Claim>, ProgramError> {
    scope(tx).await?;
    let rows: Vec<ClaimRow> = sqlx::query_as(&format!(
        "select {CLAIM_COLUMNS} from mdf_claims where tenant_id = $1 order by created_at desc, id desc limit $2"
    ))
    .bind(tx.tenant().as_uuid())
    .bind(limit.clamp(1, 500))
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(Claim::try_from).collect()
}

async fn load_claim(tx: &mut TenantTx, id: Uuid, lock: bool) -> Result<Claim, ProgramError> {
    scope(tx).await?;
    let lock = if lock { " for update" } else { "" };
    let row: ClaimRow =
        sqlx::query_as(&format!("select {CLAIM_COLUMNS} from mdf_claims where tenant_id = $1 and id = $2{lock}"))
            .bind(tx.tenant().as_uuid())
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(ProgramError::NotFound)?;
    row.try_into()
}

/// One claim; another partner's is [`ProgramError::NotFound`].
pub async fn get_claim(tx: &mut TenantTx, id: Uuid) -> Result<Claim, ProgramError> {
    load_claim(tx, id, false).await
}

/// Finance approves, rejects (with a reason) or pays a claim; never its filer, never a partner
/// person. Approving needs at least one proof file.
pub async fn settle_claim(
    tx: &mut TenantTx,
    engine: &Engine,
    subject: &Subject,
    who: &Who,
    id: Uuid,
    step: ClaimStep,
    reason: Option<&str>,
) -> Result<Claim, ProgramError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty()).map(|r| text("reason", r, 2000)).transpose()?;
    if step == ClaimStep::Reject && reason.is_none() {
        return Err(invalid("reason", "say why the claim is rejected"));
    }
    let c = load_claim(tx, id, true).await?;
    let action = if step == ClaimStep::Pay { Action::MdfClaimPay } else { Action::MdfClaimDecide };
    let facts = MdfFacts { tenant: tx.tenant().as_uuid(), id: c.id, partner: c.partner_id, filer: c.claimed_by };
    let permit = engine.decide(subject, action, &Resource::Mdf(&facts))?;
    permit.require(action, c.id)?;
    vendor_only(scope(tx).await?)?;
    if subject.user == c.claimed_by {
        return Err(ProgramError::Forbidden {
            code: "separation_of_duties",
            reason: "whoever filed a claim never approves or pays it".into(),
        });
    }
    let to = next_claim(c.status, step).ok_or_else(|| refused("claim", c.status.as_str(), step.as_str()))?;
    if step == ClaimStep::Approve && list_proofs(tx, id).await?.is_empty() {
        return Err(ProgramError::Conflict {
            code: "proof_required",
            reason: "a claim is approved on its proof of performance: none is attached".into(),
        });
    }
    let sql = if step == ClaimStep::Pay {
        "update mdf_claims set status = $3, paid_by = $4, paid_at = now(), updated_at = now()
          where tenant_id = $1 and id = $2"
    } else {
        "update mdf_claims set status = $3, decided_by = $4, decided_at = now(), decision_reason = $5, updated_at = now()
          where tenant_id = $1 and id = $2"
    };
    let mut q = sqlx::query(sql).bind(tx.tenant().as_uuid()).bind(id).bind(to.as_str()).bind(subject.user);
    if step != ClaimStep::Pay {
        q = q.bind(&reason);
    }
    q.execute(tx.conn()).await.map_err(constraint)?;
    let by = if step == ClaimStep::Pay { "paid_by" } else { "decided_by" };
    let changes = Changes::none().field("status", c.status.as_str(), to.as_str()).field(
        by,
        None::<String>,
        subject.user.to_string(),
    );
    let event = match to {
        ClaimStatus::Approved => "mdf_claim.approved",
        ClaimStatus::Rejected => "mdf_claim.rejected",
        _ => "mdf_claim.paid",
    };
    record(tx, who, event, "mdf_claim", id, changes, reason.as_deref()).await?;
    get_claim(tx, id).await
}

// ---- Proof of performance -------------------------------------------------------------------

/// A proof file of a claim (the blob's size, hash and type come from crates/files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MdfProof)]
pub struct Proof {
    pub id: Uuid,
    pub claim_id: Uuid,
    pub blob_id: Uuid,
    pub name: String,
    pub media_type: String,
    pub size: i64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    pub added_by: Uuid,
    pub created_at: DateTime<Utc>,
}

/// Whether the caller may add proof to claim `id` now: a partner person of the claim's partner
/// (another partner's claim is not found), while the claim waits for finance. Asked before the
/// upload streams and again, with the claim locked, before the file is recorded.
pub async fn may_add_proof(tx: &mut TenantTx, permit: &Permit, id: Uuid, lock: bool) -> Result<Claim, ProgramError> {
    permit.require(Action::MdfClaim, tx.tenant().as_uuid())?;
    partner_only(scope(tx).await?)?;
    let c = load_claim(tx, id, lock).await?;
    if c.status != ClaimStatus::Claimed {
        return Err(ProgramError::Conflict {
            code: "transition_not_allowed",
            reason: format!("a {} claim takes no more proof", c.status.as_str()),
        });
    }
    Ok(c)
}

/// Records a stored blob as proof of claim `c` (from [`may_add_proof`], in this transaction).
pub async fn add_proof(
    tx: &mut TenantTx,
    who: &Who,
    permit: &Permit,
    c: &Claim,
    blob: Uuid,
    by: Uuid,
) -> Result<Proof, ProgramError> {
    permit.require(Action::MdfClaim, tx.tenant().as_uuid())?;
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into mdf_claim_proofs (tenant_id, id, partner_id, claim_id, blob_id, added_by)
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tx.tenant().as_uuid())
    .bind(id)
    .bind(c.partner_id)
    .bind(c.id)
    .bind(blob)
    .bind(by)
    .execute(tx.conn())
    .await?;
    let p = list_proofs(tx, c.id).await?.into_iter().find(|p| p.id == id).ok_or(ProgramError::NotFound)?;
    let changes = Changes::none()
        .field("proof_id", None::<String>, id.to_string())
        .field("file_id", None::<String>, blob.to_string())
        .field("name", None::<String>, &p.name)
        .field("sha256", None::<String>, &p.sha256);
    record(tx, who, "mdf_claim.proof_added", "mdf_claim", c.id, changes, None).await?;
    Ok(p)
}

/// The proof files of a claim the caller may see (another partner's: none).
pub async fn list_proofs(tx: &mut TenantTx, claim: Uuid) -> Result<Vec<Proof>, ProgramError> {
    Ok(sqlx::query_as(
        "select p.id, p.claim_id, p.blob_id, b.name, b.media_type, b.size_bytes as size,
                encode(b.sha256, 'hex') as sha256, p.added_by, p.created_at
           from mdf_claim_proofs p
           join blobs b on b.tenant_id = p.tenant_id and b.id = p.blob_id
          where p.tenant_id = $1 and p.claim_id = $2 and b.deleted_at is null
          order by p.created_at, p.id",
    )
    .bind(tx.tenant().as_uuid())
    .bind(claim)
    .fetch_all(tx.conn())
    .await?)
}

/// The proof `proof` of claim `claim`, if the caller may see it.
pub async fn get_proof(tx: &mut TenantTx, claim: Uuid, proof: Uuid) -> Result<Proof, ProgramError> {
    get_claim(tx, claim).await?;
    list_proofs(tx, claim).await?.into_iter().find(|p| p.id == proof).ok_or(ProgramError::NotFound)
}

/// The partner companies the caller may see (a partner person: its own), by name: for labels.
pub async fn partner_names(tx: &mut TenantTx) -> Result<Vec<(Uuid, String)>, ProgramError> {
    scope(tx).await?;
    Ok(sqlx::query_as("select id, company_name from partners where tenant_id = $1 order by company_name, id")
        .bind(tx.tenant().as_uuid())
        .fetch_all(tx.conn())
        .await?)
}

/// Whether `subject` may decide request `r` (the page shows the form only then; the domain asks
/// again when it is sent).
#[must_use]
pub fn may_decide_request(engine: &Engine, subject: &Subject, tenant: Uuid, r: &Request) -> bool {
    let facts = MdfFacts { tenant, id: r.id, partner: r.partner_id, filer: r.requested_by };
    engine.decide(subject, Action::MdfRequestDecide, &Resource::Mdf(&facts)).is_ok()
}

/// Whether `subject` may take `action` (`mdf_claim.decide` or `mdf_claim.pay`) on claim `c`.
#[must_use]
pub fn may_settle_claim(engine: &Engine, subject: &Subject, tenant: Uuid, c: &Claim, action: Action) -> bool {
    let facts = MdfFacts { tenant, id: c.id, partner: c.partner_id, filer: c.claimed_by };
    engine.decide(subject, action, &Resource::Mdf(&facts)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_quarters() {
        assert_eq!(parse_period(" 2026-q4 ").ok().as_deref(), Some("2026-Q4"));
        for bad in ["2026-Q5", "2026-Q0", "2026-4", "26-Q1", "2026/Q1", "", "1999-Q1", "2026-Q12"] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decided_requests_and_paid_or_rejected_claims_are_final() {
        for d in [Decision::Approve, Decision::Reject] {
            assert_eq!(next_request(RequestStatus::Approved, d), None);
            assert_eq!(next_request(RequestStatus::Rejected, d), None);
        }
        for s in [ClaimStep::Approve, ClaimStep::Reject, ClaimStep::Pay] {
            assert_eq!(next_claim(ClaimStatus::Paid, s), None);
            assert_eq!(next_claim(ClaimStatus::Rejected, s), None);
        }
        assert_eq!(next_claim(ClaimStatus::Claimed, ClaimStep::Pay), None, "approval first");
        assert_eq!(next_claim(ClaimStatus::Approved, ClaimStep::Pay), Some(ClaimStatus::Paid));
    }
}
