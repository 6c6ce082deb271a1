//! Commission plans and the commissions they compute.
//!
//! A plan is the vendor's rate for a partner tier, a product and a currency: a base rate in basis
//! points, optional graduated volume bands (the part of the amount above a band's threshold earns
//! the band's rate) and a fixed bonus. When an opportunity closes won, the plan for its partner's
//! tier, its product and its currency computes the commission, exactly ([`compute`]):
//!
//! > every slice of the amount is multiplied by its rate in basis points in exact integer
//! > arithmetic; the sum is divided by 10 000 once, rounding half up (a remainder of 5 000 or
//! > more rounds up) to the currency's minor unit; the fixed bonus is added.
//!
//! No plan for that tier, product and currency: no commission (the opportunity is still won).
//!
//! Statuses: `calculated` → `approved` → `payable` → `paid`; the partner may dispute one that is
//! not yet paid (`disputed`), and finance resolves the dispute back to `calculated` (optionally
//! with a corrected amount), to be approved again. Finance (or the organisation's owners and
//! admins) approve, pay and resolve, never a partner person and never whoever closed the
//! opportunity: the policy engine's `closer-never-approves-commission`, the check in
//! [`approve`]/[`resolve`], and the table check `commissions_closer_never_approves`.

use audit::{Changes, Entity, Event, Who};
use authz::{Action, CommissionFacts, Engine, Permit, Resource, Subject};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use store::TenantTx;
use uuid::Uuid;

use crate::leads::neutralise;
use crate::opportunities::{Opportunity, parse_product};
use crate::partners::Tier;
use crate::{ProgramError, Scope, invalid, scope};

/// Basis points in one whole (100 %).
pub const BP_WHOLE: i64 = 10_000;
/// The largest fixed bonus (minor units), as the table check.
pub const MAX_BONUS: i64 = 1_000_000_000_000_000;

/// A graduated volume band: the part of an amount above `from_minor` (up to the next band's
/// threshold) earns `rate_bp` instead of the plan's base rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = CommissionBand)]
pub struct Band {
    pub from_minor: i64,
    pub rate_bp: i64,
}

/// Validates bands: at most 20, thresholds from 1 strictly increasing, rates 0-10 000.
pub fn check_bands(bands: &[Band]) -> Result<(), ProgramError> {
    if bands.len() > 20 {
        return Err(invalid("bands", "at most 20 bands"));
    }
    let mut last = 0;
    for b in bands {
        if b.from_minor <= last || b.from_minor > approvals::money::MAX_MINOR {
            return Err(invalid("bands", "thresholds must be positive and strictly increasing"));
        }
        if !(0..=BP_WHOLE).contains(&b.rate_bp) {
            return Err(invalid("bands", "rates are 0-10000 basis points"));
        }
        last = b.from_minor;
    }
    Ok(())
}

/// The commission on `amount_minor` (see the module's rounding rule). `None` when the terms are
/// out of range (refused before they are stored, so never for a stored plan).
#[must_use]
pub fn compute(amount_minor: i64, rate_bp: i64, bands: &[Band], bonus_minor: i64) -> Option<i64> {
    if amount_minor < 0 || !(0..=BP_WHOLE).contains(&rate_bp) || !(0..=MAX_BONUS).contains(&bonus_minor) {
        return None;
    }
    let amount = i128::from(amount_minor);
    // Slices [0, b1), [b1, b2), ..., [bn, amount], each at its rate.
    let mut numerator: i128 = 0;
    let mut lower: i128 = 0;
    let mut rate = i128::from(rate_bp);
    for b in bands {
        let upper = i128::from(b.from_minor).min(amount);
        if upper > lower {
            numerator += (upper - lower) * rate;
            lower = upper;
        }
        rate = i128::from(b.rate_bp);
    }
    if amount > lower {
        numerator += (amount - lower) * rate;
    }
    let whole = i128::from(BP_WHOLE);
    let rounded = (numerator + whole / 2) / whole;
    i64::try_from(rounded + i128::from(bonus_minor)).ok()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CommissionPlan)]
pub struct Plan {
    pub id: Uuid,
    pub tier: Tier,
    pub product: String,
    pub currency: String,
    pub rate_bp: i64,
    pub bands: Vec<Band>,
    pub bonus_minor: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = NewCommissionPlan)]
pub struct NewPlan {
    pub tier: Tier,
    pub product: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Base rate, 0-10000 basis points (10000 = 100 %).
    pub rate_bp: i64,
    #[serde(default)]
    pub bands: Vec<Band>,
    /// Fixed bonus per won opportunity, minor units.
    #[serde(default)]
    pub bonus_minor: i64,
}

#[derive(sqlx::FromRow)]
struct PlanRow {
    id: Uuid,
    tier: String,
    product: String,
    currency: String,
    rate_bp: i32,
    bands: sqlx::types::Json<Vec<Band>>,
    bonus_minor: i64,
    created_at: DateTime<Utc>,
}

impl TryFrom<PlanRow> for Plan {
    type Error = ProgramError;

    fn try_from(r: PlanRow) -> Result<Self, ProgramError> {
        Ok(Self {
            id: r.id,
            tier: Tier::parse(&r.tier)?,
            product: r.product,
            currency: r.currency,
            rate_bp: i64::from(r.rate_bp),
            bands: r.bands.0,
            bonus_minor: r.bonus_minor,
            created_at: r.created_at,
        })
    }
}

const PLAN_COLUMNS: &str = "id, tier, product, currency, rate_bp, bands, bonus_minor, created_at";

fn vendor_only(s: Scope) -> Result<(), ProgramError> {
    match s {
        Scope::Vendor => Ok(()),
        Scope::Partner(_) => {
            Err(ProgramError::Forbidden { code: "vendor_only", reason: "only the vendor's staff do this".into() })
        }
    }
}

/// Vendor staff configure a plan (one per tier, product and currency).
pub async fn create_plan(
    tx: &mut TenantTx,
    who: &Who,
    permit: &Permit,
    by: Uuid,
    new: &NewPlan,
) -> Result<Plan, ProgramError> {
    permit.require(Action::CommissionPlanManage, tx.tenant().as_uuid())?;
    vendor_only(scope(tx).await?)?;
    let product = parse_product(&new.product)?;
    let currency: approvals::money::Currency =
        new.currency.parse().map_err(|_| invalid("currency", "expected an ISO 4217 code such as EUR or USD"))?;
    if !(0..=BP_WHOLE).contains(&new.rate_bp) {
        return Err(invalid("rateBp", "0-10000 basis points"));
    }
    if !(0..=MAX_BONUS).contains(&new.bonus_minor) {
        return Err(invalid("bonusMinor", format!("0-{MAX_BONUS} minor units")));
    }
    check_bands(&new.bands)?;
    let rate = i32::try_from(new.rate_bp).map_err(|_| invalid("rateBp", "0-10000 basis points"))?;
    let id = Uuid::now_v7();
    let row: PlanRow = sqlx::query_as(&format!(
        "insert into commission_plans (tenant_id, id, tier, product, currency, rate_bp, bands, bonus_minor, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         on conflict (tenant_id, tier, product, currency) do nothing
         returning {PLAN_COLUMNS}"
    ))
    .bind(tx.tenant().as_uuid())
    .bind(id)
    .bind(new.tier.as_str())
    .bind(&product)
    .bind(currency.code())
    .bind(rate)
    .bind(sqlx::types::Json(&new.bands))
    .bind(new.bonus_minor)
    .bind(by)
    .fetch_optional(tx.conn())
    .await?
    .ok_or_else(|| ProgramError::Conflict {
        code: "plan_exists",
        reason: "a plan for this tier, product and currency already exists".into(),
    })?;
    let plan = Plan::try_from(row)?;
    let changes = Changes::none()
        .field("tier", None::<String>, plan.tier.as_str())
        .field("product", None::<String>, &plan.product)
        .field("currency", None::<String>, &plan.currency)
        .field("rate_bp", None::<i64>, plan.rate_bp)
        .field("bands", None::<Vec<Band>>, &plan.bands)
        .field("bonus_minor", None::<i64>, plan.bonus_minor);
    audit::record_by(tx, who, &Event::new("commission_plan.created", Entity::of("commission_plan", id)?, changes)?)
        .await?;
    Ok(plan)
}

/// The organisation's plans (vendor staff).
pub async fn list_plans(tx: &mut TenantTx) -> Result<Vec<Plan>, ProgramError> {
    vendor_only(scope(tx).await?)?;
    let rows: Vec<PlanRow> = sqlx::query_as(&format!(
        "select {PLAN_COLUMNS} from commission_plans where tenant_id = $1 order by tier, product, currency"
    ))
    .bind(tx.tenant().as_uuid())
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(Plan::try_from).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommissionStatus {
    Calculated,
    Approved,
    Payable,
    Paid,
    Disputed,
}

impl CommissionStatus {
    pub const ALL: [Self; 5] = [Self::Calculated, Self::Approved, Self::Payable, Self::Paid, Self::Disputed];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Calculated => "calculated",
            Self::Approved => "approved",
            Self::Payable => "payable",
            Self::Paid => "paid",
            Self::Disputed => "disputed",
        }
    }

    fn parse(s: &str) -> Result<Self, ProgramError> {
        Self::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| invalid("status", format!("unknown status {s}")))
    }
}

/// What may happen to a commission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Approve,
    MarkPayable,
    Pay,
    Dispute,
    Resolve,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::MarkPayable => "mark_payable",
            Self::Pay => "pay",
            Self::Dispute => "dispute",
            Self::Resolve => "resolve",
        }
    }
}

/// The state machine: where `step` leads from `from`, or `None` when it is not allowed.
#[must_use]
pub fn next(from: CommissionStatus, step: Step) -> Option<CommissionStatus> {
    use CommissionStatus::{Approved, Calculated, Disputed, Paid, Payable};
    match (from, step) {
        (Calculated, Step::Approve) => Some(Approved),
        (Approved, Step::MarkPayable) => Some(Payable),
        (Payable, Step::Pay) => Some(Paid),
        (Calculated | Approved | Payable, Step::Dispute) => Some(Disputed),
        (Disputed, Step::Resolve) => Some(Calculated),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Commission {
    pub id: Uuid,
    pub partner_id: Uuid,
    pub opportunity_id: Uuid,
    pub plan_id: Uuid,
    pub currency: String,
    /// The won opportunity's amount, minor units.
    pub base_minor: i64,
    pub rate_bp: i64,
    pub bands: Vec<Band>,
    pub bonus_minor: i64,
    /// The commission, minor units (rate, bands and rounding, plus the bonus).
    pub amount_minor: i64,
    pub status: CommissionStatus,
    pub dispute_reason: Option<String>,
    pub resolution: Option<String>,
    pub closed_by: Uuid,
    pub approved_by: Option<Uuid>,
    pub approved_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    partner_id: Uuid,
    opportunity_id: Uuid,
    plan_id: Uuid,
    currency: String,
    base_minor: i64,
    rate_bp: i32,
    bands: sqlx::types::Json<Vec<Band>>,
    bonus_minor: i64,
    amount_minor: i64,
    status: String,
    dispute_reason: Option<String>,
    resolution: Option<String>,
    closed_by: Uuid,
    approved_by: Option<Uuid>,
    approved_at: Option<DateTime<Utc>>,
    paid_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl TryFrom<Row> for Commission {
    type Error = ProgramError;

    fn try_from(r: Row) -> Result<Self, ProgramError> {
        Ok(Self {
            id: r.id,
            partner_id: r.partner_id,
            opportunity_id: r.opportunity_id,
            plan_id: r.plan_id,
            currency: r.currency,
            base_minor: r.base_minor,
            rate_bp: i64::from(r.rate_bp),
            bands: r.bands.0,
            bonus_minor: r.bonus_minor,
            amount_minor: r.amount_minor,
            status: CommissionStatus::parse(&r.status)?,
            dispute_reason: r.dispute_reason,
            resolution: r.resolution,
            closed_by: r.closed_by,
            approved_by: r.approved_by,
            approved_at: r.approved_at,
            paid_at: r.paid_at,
            created_at: r.created_at,
        })
    }
}

const COLUMNS: &str = "id, partner_id, opportunity_id, plan_id, currency, base_minor, rate_bp, bands, bonus_minor,
    amount_minor, status, dispute_reason, resolution, closed_by, approved_by, approved_at, paid_at, created_at";

/// Computes and records the commission of an opportunity that just closed won (called by
/// [`crate::opportunities::advance`] in its transaction). `None` when no plan matches.
pub(crate) async fn compute_for(
    tx: &mut TenantTx,
    who: &Who,
    o: &Opportunity,
    closer: Uuid,
) -> Result<Option<Commission>, ProgramError> {
    let tenant = tx.tenant().as_uuid();
    let plan: Option<PlanRow> = sqlx::query_as(&format!(
        "select {PLAN_COLUMNS} from commission_plans
          where tenant_id = $1 and product = $2 and currency = $3
            and tier = (select p.tier from partners p where p.tenant_id = $1 and p.id = $4)"
    ))
    .bind(tenant)
    .bind(&o.product)
    .bind(&o.currency)
    .bind(o.partner_id)
    .fetch_optional(tx.conn())
    .await?;
    let Some(plan) = plan.map(Plan::try_from).transpose()? else {
        tracing::info!(opportunity = %o.id, "won without a matching commission plan: no commission");
        return Ok(None);
    };
    let amount = compute(o.amount_minor, plan.rate_bp, &plan.bands, plan.bonus_minor)
        .ok_or_else(|| invalid("plan", "the plan's terms are out of range"))?;
    let id = Uuid::now_v7();
    let row: Row = sqlx::query_as(&format!(
        "insert into commissions (tenant_id, id, partner_id, opportunity_id, plan_id, currency, base_minor, rate_bp,
                                  bands, bonus_minor, amount_minor, closed_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         returning {COLUMNS}"
    ))
    .bind(tenant)
    .bind(id)
    .bind(o.partner_id)
    .bind(o.id)
    .bind(plan.id)
    .bind(&o.currency)
    .bind(o.amount_minor)
    .bind(i32::try_from(plan.rate_bp).map_err(|_| invalid("plan", "rate out of range"))?)
    .bind(sqlx::types::Json(&plan.bands))
    .bind(plan.bonus_minor)
    .bind(amount)
    .bind(closer)
    .fetch_one(tx.conn())
    .await?;
    let c = Commission::try_from(row)?;
    let changes = Changes::none()
        .field("opportunity_id", None::<String>, o.id.to_string())
        .field("plan_id", None::<String>, plan.id.to_string())
        .field("base_minor", None::<i64>, c.base_minor)
        .field("amount_minor", None::<i64>, c.amount_minor)
        .field("currency", None::<String>, &c.currency)
        .field("status", None::<String>, c.status.as_str());
    audit::record_by(tx, who, &Event::new("commission.calculated", Entity::of("commission", id)?, changes)?).await?;
    Ok(Some(c))
}

/// One commission as the caller may see it; another partner's is [`ProgramError::NotFound`].
pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Commission, ProgramError> {
    let row: Row = sqlx::query_as(&format!("select {COLUMNS} from commissions where tenant_id = $1 and id = $2"))
        .bind(tx.tenant().as_uuid())
        .bind(id)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(ProgramError::NotFound)?;
    row.try_into()
}

/// The commissions the caller may see, newest first (1-500).
pub async fn list(tx: &mut TenantTx, limit: i64) -> Result<Vec<Commission>, ProgramError> {
    // No partner filter on purpose: the partner_isolation policy is the filter.
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "select {COLUMNS} from commissions where tenant_id = $1 order by created_at desc, id desc limit $2"
    ))
    .bind(tx.tenant().as_uuid())
    .bind(limit.clamp(1, 500))
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(Commission::try_from).collect()
}

/// The commission locked for a change, with its status.
async fn lock(tx: &mut TenantTx, id: Uuid) -> Result<Commission, ProgramError> {
    let row: Row =
        sqlx::query_as(&format!("select {COLUMNS} from commissions where tenant_id = $1 and id = $2 for update"))
            .bind(tx.tenant().as_uuid())
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(ProgramError::NotFound)?;
    row.try_into()
}

fn refused(from: CommissionStatus, step: Step) -> ProgramError {
    ProgramError::Conflict {
        code: "transition_not_allowed",
        reason: format!("a {} commission cannot {}", from.as_str(), step.as_str().replace('_', " ")),
    }
}

fn reason_text(field: &'static str, raw: &str) -> Result<String, ProgramError> {
    let r = raw.trim();
    let n = r.chars().count();
    if !(3..=2000).contains(&n) || r.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(field, "must be 3-2000 characters"));
    }
    Ok(r.to_owned())
}

/// Finance's side: the policy engine is asked about this commission (its closer), the permit
/// must be for it, the transaction must be the vendor's, and the closer is refused again here.
async fn settle(
    tx: &mut TenantTx,
    engine: &Engine,
    subject: &Subject,
    action: Action,
    id: Uuid,
) -> Result<(Commission, Permit), ProgramError> {
    let c = lock(tx, id).await?;
    let facts = CommissionFacts { tenant: tx.tenant().as_uuid(), id: c.id, partner: c.partner_id, closer: c.closed_by };
    let permit = engine.decide(subject, action, &Resource::Commission(&facts))?;
    permit.require(action, c.id)?;
    match scope(tx).await? {
        Scope::Vendor => {}
        Scope::Partner(_) => {
            return Err(ProgramError::Forbidden {
                code: "partners_never_settle",
                reason: "commissions are approved and paid by the vendor's finance".into(),
            });
        }
    }
    if matches!(action, Action::CommissionApprove | Action::CommissionResolve) && subject.user == c.closed_by {
        return Err(ProgramError::Forbidden {
            code: "separation_of_duties",
            reason: "whoever closed the opportunity does not approve its commission".into(),
        });
    }
    Ok((c, permit))
}

async fn record(
    tx: &mut TenantTx,
    who: &Who,
    action: &str,
    id: Uuid,
    changes: Changes,
    reason: Option<&str>,
) -> Result<(), ProgramError> {
    let mut event = Event::new(action, Entity::of("commission", id)?, changes)?;
    if let Some(r) = reason {
        event = event.with_reason(r)?;
    }
    audit::record_by(tx, who, &event).await?;
    Ok(())
}

/// An optional note finance adds to a step (recorded as the audit event's reason).
fn note_text(note: Option<&str>) -> Result<Option<String>, ProgramError> {
    note.map(str::trim).filter(|n| !n.is_empty()).map(|n| reason_text("note", n)).transpose()
}

/// `calculated` → `approved` (finance, owners, admins; never the closer).
pub async fn approve(
    tx: &mut TenantTx,
    engine: &Engine,
    subject: &Subject,
    who: &Who,
    id: Uuid,
    note: Option<&str>,
) -> Result<Commission, ProgramError> {
    let note = note_text(note)?;
    let (c, _permit) = settle(tx, engine, subject, Action::CommissionApprove, id).await?;
    let to = next(c.status, Step::Approve).ok_or_else(|| refused(c.status, Step::Approve))?;
    sqlx::query(
        "update commissions set status = $3, approved_by = $4, approved_at = now(), updated_at = now()
          where tenant_id = $1 and id = $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(id)
    .bind(to.as_str())
    .bind(subject.user)
    .execute(tx.conn())
    .await?;
    let changes = Changes::none().field("status", c.status.as_str(), to.as_str()).field(
        "approved_by",
        None::<String>,
        subject.user.to_string(),
    );
    record(tx, who, "commission.approved", id, changes, note.as_deref()).await?;
    get(tx, id).await
}

/// `approved` → `payable`, and `payable` → `paid` (finance, owners, admins). A disputed
/// commission is neither: the dispute is resolved (and approved again) first.
pub async fn pay_step(
    tx: &mut TenantTx,
    engine: &Engine,
    subject: &Subject,
    who: &Who,
    id: Uuid,
    step: Step,
    note: Option<&str>,
) -> Result<Commission, ProgramError> {
    if !matches!(step, Step::MarkPayable | Step::Pay) {
        return Err(invalid("step", "mark_payable or pay"));
    }
    let note = note_text(note)?;
    let (c, _permit) = settle(tx, engine, subject, Action::CommissionPay, id).await?;
    let to = next(c.status, step).ok_or_else(|| refused(c.status, step))?;
    sqlx::query(
        "update commissions set status = $3, updated_at = now(), paid_at = case when $3 = 'paid' then now() end
          where tenant_id = $1 and id = $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(id)
    .bind(to.as_str())
    .execute(tx.conn())
    .await?;
    let action = if to == CommissionStatus::Paid { "commission.paid" } else { "commission.payable" };
    record(tx, who, action, id, Changes::none().field("status", c.status.as_str(), to.as_str()), note.as_deref())
        .await?;
    get(tx, id).await
}

/// The partner disputes its commission (not yet paid), with a reason.
pub async fn dispute(
    tx: &mut TenantTx,
    who: &Who,
    permit: &Permit,
    id: Uuid,
    reason: &str,
) -> Result<Commission, ProgramError> {
    permit.require(Action::CommissionDispute, tx.tenant().as_uuid())?;
    let Scope::Partner(_) = scope(tx).await? else {
        return Err(ProgramError::Forbidden {
            code: "partners_only",
            reason: "a commission is disputed by its partner".into(),
        });
    };
    let reason = reason_text("reason", reason)?;
    let c = lock(tx, id).await?;
    let to = next(c.status, Step::Dispute).ok_or_else(|| refused(c.status, Step::Dispute))?;
    sqlx::query(
        "update commissions set status = 'disputed', disputed_from = status, dispute_reason = $3, updated_at = now()
          where tenant_id = $1 and id = $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(id)
    .bind(&reason)
    .execute(tx.conn())
    .await?;
    record(
        tx,
        who,
        "commission.disputed",
        id,
        Changes::none().field("status", c.status.as_str(), to.as_str()),
        Some(&reason),
    )
    .await?;
    get(tx, id).await
}

/// Finance resolves a dispute: back to `calculated` (to be approved again), with the resolution
/// and, when the partner was right, a corrected amount.
pub async fn resolve(
    tx: &mut TenantTx,
    engine: &Engine,
    subject: &Subject,
    who: &Who,
    id: Uuid,
    resolution: &str,
    amount_minor: Option<i64>,
) -> Result<Commission, ProgramError> {
    let resolution = reason_text("resolution", resolution)?;
    if amount_minor.is_some_and(|a| !(0..=2 * MAX_BONUS).contains(&a)) {
        return Err(invalid("amountMinor", "0-2000000000000000 minor units"));
    }
    let (c, _permit) = settle(tx, engine, subject, Action::CommissionResolve, id).await?;
    let to = next(c.status, Step::Resolve).ok_or_else(|| refused(c.status, Step::Resolve))?;
    let amount = amount_minor.unwrap_or(c.amount_minor);
    sqlx::query(
        "update commissions set status = $3, disputed_from = null, resolution = $4, amount_minor = $5,
                approved_by = null, approved_at = null, updated_at = now()
          where tenant_id = $1 and id = $2",
    )
    .bind(tx.tenant().as_uuid())
    .bind(id)
    .bind(to.as_str())
    .bind(&resolution)
    .bind(amount)
    .execute(tx.conn())
    .await?;
    let mut changes = Changes::none().field("status", c.status.as_str(), to.as_str());
    if amount != c.amount_minor {
        changes = changes.field("amount_minor", c.amount_minor, amount);
    }
    record(tx, who, "commission.resolved", id, changes, Some(&resolution)).await?;
    get(tx, id).await
}

/// A calendar month, `YYYY-MM`, as the half-open UTC interval it covers.
pub fn parse_period(raw: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), ProgramError> {
    let bad = || invalid("period", "a month as YYYY-MM");
    let (y, m) = raw.trim().split_once('-').ok_or_else(bad)?;
    if y.len() != 4 || m.len() != 2 {
        return Err(bad());
    }
    let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let start = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)?;
    let end = start.checked_add_months(chrono::Months::new(1)).ok_or_else(bad)?;
    let at = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default());
    if start.year() < 2000 {
        return Err(bad());
    }
    Ok((at(start), at(end)))
}

/// One line of a statement.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StatementLine {
    pub id: Uuid,
    pub partner_id: Uuid,
    pub opportunity_id: Uuid,
    pub opportunity_name: String,
    pub product: String,
    pub currency: String,
    pub base_minor: i64,
    pub rate_bp: i32,
    pub bonus_minor: i64,
    pub amount_minor: i64,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub approved_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
}

/// The partner a statement is for: a partner person's is always its own (naming another is not
/// found); vendor staff name one.
pub async fn statement_partner(tx: &mut TenantTx, named: Option<Uuid>) -> Result<Uuid, ProgramError> {
    match (scope(tx).await?, named) {
        (Scope::Partner(p), None) => Ok(p),
        (Scope::Partner(p), Some(n)) if n == p => Ok(p),
        (Scope::Partner(_), Some(_)) => Err(ProgramError::NotFound),
        (Scope::Vendor, Some(n)) => {
            crate::partners::get(tx, n).await?;
            Ok(n)
        }
        (Scope::Vendor, None) => Err(invalid("partnerId", "name the partner the statement is for")),
    }
}

/// A page of a statement: `partner`'s commissions created in `[from, to)`, oldest first, after
/// `after` (keyset pagination for streaming).
pub async fn statement_page(
    tx: &mut TenantTx,
    partner: Uuid,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<StatementLine>, ProgramError> {
    let (at, id) = after.map_or((None, None), |(a, i)| (Some(a), Some(i)));
    // The partner filter picks the statement's partner; the partner_isolation policy still
    // decides what the caller may see at all.
    Ok(sqlx::query_as(
        "select c.id, c.partner_id, c.opportunity_id, o.name as opportunity_name, o.product, c.currency, c.base_minor,
                c.rate_bp, c.bonus_minor, c.amount_minor, c.status, c.created_at, c.approved_at, c.paid_at
           from commissions c
           join partner_opportunities o on o.tenant_id = c.tenant_id and o.id = c.opportunity_id
          where c.tenant_id = $1 and c.partner_id = $2 and c.created_at >= $3 and c.created_at < $4
            and ($5::timestamptz is null or (c.created_at, c.id) > ($5, $6))
          order by c.created_at, c.id limit $7",
    )
    .bind(tx.tenant().as_uuid())
    .bind(partner)
    .bind(from)
    .bind(to)
    .bind(at)
    .bind(id)
    .bind(limit.clamp(1, 1000))
    .fetch_all(tx.conn())
    .await?)
}

/// The CSV header of a statement.
pub const CSV_HEADER: [&str; 14] = [
    "commission_id",
    "partner_id",
    "opportunity_id",
    "opportunity_name",
    "product",
    "currency",
    "base_minor",
    "rate_bp",
    "bonus_minor",
    "amount_minor",
    "status",
    "closed_at",
    "approved_at",
    "paid_at",
];

fn write_record<S: AsRef<[u8]>>(cells: &[S]) -> Result<Vec<u8>, ProgramError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(cells).map_err(|e| invalid("csv", e.to_string()))?;
    w.into_inner().map_err(|e| invalid("csv", e.to_string()))
}

/// The header line as CSV bytes.
pub fn csv_header() -> Result<Vec<u8>, ProgramError> {
    write_record(&CSV_HEADER)
}

/// One statement line as CSV bytes (text cells neutralised against formula injection).
pub fn csv_record(l: &StatementLine) -> Result<Vec<u8>, ProgramError> {
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    write_record(&[
        l.id.to_string(),
        l.partner_id.to_string(),
        l.opportunity_id.to_string(),
        neutralise(&l.opportunity_name),
        neutralise(&l.product),
        l.currency.clone(),
        l.base_minor.to_string(),
        l.rate_bp.to_string(),
        l.bonus_minor.to_string(),
        l.amount_minor.to_string(),
        l.status.clone(),
        l.created_at.to_rfc3339(),
        time(l.approved_at),
        time(l.paid_at),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn band(from_minor: i64, rate_bp: i64) -> Band {
        Band { from_minor, rate_bp }
    }

    #[test]
    fn rounding_is_half_up_once_on_the_total() {
        // 123.45 at 2.5 % = 3.08625 → 3.09.
        assert_eq!(compute(12_345, 250, &[], 0), Some(309));
        // Exactly half a minor unit rounds up; just under rounds down.
        assert_eq!(compute(2, 2_500, &[], 0), Some(1));
        assert_eq!(compute(1, 4_999, &[], 0), Some(0));
        assert_eq!(compute(1, 5_000, &[], 0), Some(1));
        // Rounded once on the sum, not per slice: 3 slices of 0.4 each → 1.2 → 1 (not 0).
        assert_eq!(compute(3, 4_000, &[band(1, 4_000), band(2, 4_000)], 0), Some(1));
        assert_eq!(compute(0, 1_000, &[], 0), Some(0));
        assert_eq!(compute(1_000, 10_000, &[], 0), Some(1_000));
    }

    #[test]
    fn bands_are_graduated_and_the_bonus_is_added() {
        let bands = [band(1_000_000, 1_000), band(5_000_000, 1_500)];
        // Below the first threshold: base rate only. 5 000.00 at 5 % = 250.00.
        assert_eq!(compute(500_000, 500, &bands, 0), Some(25_000));
        // 15 000.00: 10 000.00 at 5 % + 5 000.00 at 10 % = 500.00 + 500.00.
        assert_eq!(compute(1_500_000, 500, &bands, 0), Some(100_000));
        // 60 000.00: 500.00 + 4 000.00 + 1 500.00 = 6 000.00; plus a 250.00 bonus.
        assert_eq!(compute(6_000_000, 500, &bands, 25_000), Some(625_000));
        // At a threshold exactly: nothing at the band's rate yet.
        assert_eq!(compute(1_000_000, 500, &bands, 0), Some(50_000));
        // The largest amounts stay exact (i128 inside).
        assert_eq!(compute(1_000_000_000_000_000, 10_000, &[], MAX_BONUS), Some(2_000_000_000_000_000));
        assert_eq!(compute(1, 10_001, &[], 0), None);
    }

    #[test]
    fn bands_must_increase() {
        assert!(check_bands(&[band(10, 100), band(20, 200)]).is_ok());
        assert!(check_bands(&[band(20, 100), band(10, 200)]).is_err());
        assert!(check_bands(&[band(0, 100)]).is_err());
        assert!(check_bands(&[band(10, 10_001)]).is_err());
    }

    #[test]
    fn periods_are_calendar_months() {
        let (a, b) = parse_period("2026-12").expect("month");
        assert_eq!(a.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(b.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", "", "1999-01", "2026-00"] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_disputed_commission_is_never_paid_and_paid_is_final() {
        use CommissionStatus::*;
        for step in [Step::Approve, Step::MarkPayable, Step::Pay, Step::Dispute] {
            assert_eq!(next(Paid, step), None, "{step:?}");
        }
        assert_eq!(next(Disputed, Step::Pay), None);
        assert_eq!(next(Disputed, Step::MarkPayable), None);
        assert_eq!(next(Disputed, Step::Approve), None);
        assert_eq!(next(Disputed, Step::Resolve), Some(Calculated));
        assert_eq!(next(Calculated, Step::Pay), None, "approval first");
    }

    proptest! {
        /// Against a plain rational reference: floor((Σ slice × rate) / 10 000 + 1/2) + bonus.
        #[test]
        fn compute_matches_the_reference(amount in 0i64..=10_000_000_000, rate in 0i64..=10_000,
                                         t1 in 1i64..1_000_000, r1 in 0i64..=10_000, bonus in 0i64..1_000_000) {
            let bands = [band(t1, r1)];
            let a = i128::from(amount);
            let below = a.min(i128::from(t1));
            let above = (a - i128::from(t1)).max(0);
            let num = below * i128::from(rate) + above * i128::from(r1);
            let reference = (2 * num + 10_000) / 20_000 + i128::from(bonus);
            prop_assert_eq!(compute(amount, rate, &bands, bonus).map(i128::from), Some(reference));
            // Never more than the amount plus the bonus.
            prop_assert!(compute(amount, rate, &bands, bonus).unwrap_or(0) <= amount + bonus);
        }
    }
}
