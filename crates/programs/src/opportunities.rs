//! Opportunities: a partner's lead (or approved deal registration) being sold.
//!
//! Stages: `qualified` → `proposal` → `negotiation` → `won` | `lost`, one step forward at a time;
//! any open stage may be lost. Decided: skipping stages is refused (`qualified` → `won` included:
//! a sale is won at the end of a negotiation, so every won opportunity went through a proposal
//! and a negotiation), nothing moves backwards, and `won` and `lost` are final (`won` → `lost` is
//! refused; a clawback would be a new commission process, not a stage). Every move is audited
//! with its before/after stage; closing it won computes the partner's commission in the same
//! transaction ([`crate::commissions`]).

use approvals::money::{Currency, MAX_MINOR};
use audit::{Changes, Entity, Event, Who};
use authz::{Action, Permit};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use store::TenantTx;
use uuid::Uuid;

use crate::deals::{DealStatus, effective};
use crate::{ProgramError, commissions, invalid, parse_name};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = OpportunityStage)]
pub enum Stage {
    Qualified,
    Proposal,
    Negotiation,
    Won,
    Lost,
}

impl Stage {
    pub const ALL: [Stage; 5] = [Self::Qualified, Self::Proposal, Self::Negotiation, Self::Won, Self::Lost];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qualified => "qualified",
            Self::Proposal => "proposal",
            Self::Negotiation => "negotiation",
            Self::Won => "won",
            Self::Lost => "lost",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, ProgramError> {
        Self::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| invalid("stage", format!("unknown stage {s}")))
    }

    /// Won or lost: nothing follows.
    #[must_use]
    pub fn is_closed(self) -> bool {
        matches!(self, Self::Won | Self::Lost)
    }
}

/// The state machine: whether an opportunity at `from` may move to `to`.
#[must_use]
pub fn may_move(from: Stage, to: Stage) -> bool {
    matches!(
        (from, to),
        (Stage::Qualified, Stage::Proposal)
            | (Stage::Proposal, Stage::Negotiation)
            | (Stage::Negotiation, Stage::Won)
            | (Stage::Qualified | Stage::Proposal | Stage::Negotiation, Stage::Lost)
    )
}

/// The stages `from` may move to (for refusals: what would have been allowed).
#[must_use]
pub fn allowed_from(from: Stage) -> Vec<Stage> {
    Stage::ALL.into_iter().filter(|to| may_move(from, *to)).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Opportunity {
    pub id: Uuid,
    pub partner_id: Uuid,
    pub lead_id: Option<Uuid>,
    pub deal_id: Option<Uuid>,
    pub name: String,
    pub product: String,
    pub amount_minor: i64,
    pub currency: String,
    pub expected_close: NaiveDate,
    pub stage: Stage,
    pub closed_by: Option<Uuid>,
    pub closed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The commission computed when it closed won (absent otherwise, or when no plan matched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commission_id: Option<Uuid>,
}

/// Opens an opportunity from exactly one of a lead and an approved deal registration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewOpportunity {
    #[serde(default)]
    pub lead_id: Option<Uuid>,
    #[serde(default)]
    pub deal_id: Option<Uuid>,
    pub name: String,
    /// Product code: lower-case letters, digits, `-` and `_` (1-64), as commission plans name it.
    pub product: String,
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    pub expected_close: NaiveDate,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    partner_id: Uuid,
    lead_id: Option<Uuid>,
    deal_id: Option<Uuid>,
    name: String,
    product: String,
    amount_minor: i64,
    currency: String,
    expected_close: NaiveDate,
    stage: String,
    closed_by: Option<Uuid>,
    closed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    commission_id: Option<Uuid>,
}

impl TryFrom<Row> for Opportunity {
    type Error = ProgramError;

    fn try_from(r: Row) -> Result<Self, ProgramError> {
        Ok(Self {
            id: r.id,
            partner_id: r.partner_id,
            lead_id: r.lead_id,
            deal_id: r.deal_id,
            name: r.name,
            product: r.product,
            amount_minor: r.amount_minor,
            currency: r.currency,
            expected_close: r.expected_close,
            stage: Stage::parse(&r.stage)?,
            closed_by: r.closed_by,
            closed_at: r.closed_at,
            created_at: r.created_at,
            commission_id: r.commission_id,
        })
    }
}

const SELECT: &str = "select o.id, o.partner_id, o.lead_id, o.deal_id, o.name, o.product, o.amount_minor, o.currency,
        o.expected_close, o.stage, o.closed_by, o.closed_at, o.created_at,
        (select c.id from commissions c where c.tenant_id = o.tenant_id and c.opportunity_id = o.id) as commission_id
   from partner_opportunities o";

/// A product code as plans and opportunities name it.
pub fn parse_product(raw: &str) -> Result<String, ProgramError> {
    let p = raw.trim();
    let ok = !p.is_empty()
        && p.len() <= 64
        && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !p.starts_with(['-', '_']);
    if ok { Ok(p.to_owned()) } else { Err(invalid("product", "1-64 lower-case letters, digits, - or _")) }
}

/// Opens an opportunity. A partner person may name only its own lead or deal (another partner's is
/// not found: the database hides it); vendor staff any partner's. The opportunity belongs to the
/// source's partner (a key makes the two agree).
pub async fn create(
    tx: &mut TenantTx,
    who: &Who,
    permit: &Permit,
    by: Uuid,
    new: &NewOpportunity,
) -> Result<Opportunity, ProgramError> {
    permit.require(Action::OpportunityCreate, tx.tenant().as_uuid())?;
    crate::scope(tx).await?;
    let name = parse_name("name", &new.name)?;
    let product = parse_product(&new.product)?;
    if !(1..=MAX_MINOR).contains(&new.amount_minor) {
        return Err(invalid("amountMinor", format!("must be a whole number of minor units from 1 to {MAX_MINOR}")));
    }
    let currency: Currency =
        new.currency.parse().map_err(|_| invalid("currency", "expected an ISO 4217 code such as EUR or USD"))?;
    let today = Utc::now().date_naive();
    if new.expected_close > today + chrono::Days::new(3660) {
        return Err(invalid("expectedClose", "must be within ten years"));
    }
    let tenant = tx.tenant().as_uuid();
    let partner = match (new.lead_id, new.deal_id) {
        (Some(lead), None) => {
            sqlx::query_scalar::<_, Uuid>("select partner_id from partner_leads where tenant_id = $1 and id = $2")
                .bind(tenant)
                .bind(lead)
                .fetch_optional(tx.conn())
                .await?
                .ok_or(ProgramError::NotFound)?
        }
        (None, Some(deal)) => {
            let row: Option<(Option<Uuid>, String, Option<DateTime<Utc>>)> = sqlx::query_as(
                "select partner_id, status, protected_until from deal_registrations where tenant_id = $1 and id = $2",
            )
            .bind(tenant)
            .bind(deal)
            .fetch_optional(tx.conn())
            .await?;
            let (partner, status, until) = row.ok_or(ProgramError::NotFound)?;
            let status = effective(DealStatus::parse(&status)?, until, Utc::now());
            if status != DealStatus::Approved {
                return Err(ProgramError::Conflict {
                    code: "deal_not_approved",
                    reason: format!(
                        "only an approved deal registration becomes an opportunity (this one is {})",
                        status.as_str()
                    ),
                });
            }
            partner.ok_or_else(|| ProgramError::Conflict {
                code: "partner_deal_required",
                reason: "the vendor's own registrations earn no partner commission".into(),
            })?
        }
        _ => return Err(invalid("leadId", "name exactly one of leadId and dealId")),
    };
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "insert into partner_opportunities (tenant_id, id, partner_id, lead_id, deal_id, name, product, amount_minor,
                                            currency, expected_close, created_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         on conflict do nothing",
    )
    .bind(tenant)
    .bind(id)
    .bind(partner)
    .bind(new.lead_id)
    .bind(new.deal_id)
    .bind(&name)
    .bind(&product)
    .bind(new.amount_minor)
    .bind(currency.code())
    .bind(new.expected_close)
    .bind(by)
    .execute(tx.conn())
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ProgramError::Conflict {
            code: "opportunity_exists",
            reason: "this lead or deal registration already has an opportunity".into(),
        });
    }
    let o = get(tx, id).await?;
    let changes = Changes::none()
        .field("partner_id", None::<String>, partner.to_string())
        .field("lead_id", None::<String>, o.lead_id.map(|l| l.to_string()))
        .field("deal_id", None::<String>, o.deal_id.map(|d| d.to_string()))
        .field("name", None::<String>, &o.name)
        .field("product", None::<String>, &o.product)
        .field("amount_minor", None::<i64>, o.amount_minor)
        .field("currency", None::<String>, &o.currency)
        .field("stage", None::<String>, o.stage.as_str());
    audit::record_by(tx, who, &Event::new("opportunity.created", Entity::of("opportunity", id)?, changes)?).await?;
    Ok(o)
}

/// One opportunity as the caller may see it; another partner's is [`ProgramError::NotFound`].
pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Opportunity, ProgramError> {
    let row: Row = sqlx::query_as(&format!("{SELECT} where o.tenant_id = $1 and o.id = $2"))
        .bind(tx.tenant().as_uuid())
        .bind(id)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(ProgramError::NotFound)?;
    row.try_into()
}

/// The opportunities the caller may see, newest first (1-500).
pub async fn list(tx: &mut TenantTx, limit: i64) -> Result<Vec<Opportunity>, ProgramError> {
    // No partner filter on purpose: the partner_isolation policy is the filter.
    let rows: Vec<Row> =
        sqlx::query_as(&format!("{SELECT} where o.tenant_id = $1 order by o.created_at desc, o.id desc limit $2"))
            .bind(tx.tenant().as_uuid())
            .bind(limit.clamp(1, 500))
            .fetch_all(tx.conn())
            .await?;
    rows.into_iter().map(Opportunity::try_from).collect()
}

/// Moves an opportunity to `to` if the state machine allows it (else `transition_not_allowed`).
/// Closing it records who closed it; closing it won computes the commission.
pub async fn advance(
    tx: &mut TenantTx,
    who: &Who,
    permit: &Permit,
    by: Uuid,
    id: Uuid,
    to: Stage,
) -> Result<Opportunity, ProgramError> {
    permit.require(Action::OpportunityAdvance, tx.tenant().as_uuid())?;
    let tenant = tx.tenant().as_uuid();
    // Lock the row: two moves racing on one opportunity apply one after the other.
    let stage: String =
        sqlx::query_scalar("select stage from partner_opportunities where tenant_id = $1 and id = $2 for update")
            .bind(tenant)
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(ProgramError::NotFound)?;
    let from = Stage::parse(&stage)?;
    if !may_move(from, to) {
        let allowed: Vec<&str> = allowed_from(from).into_iter().map(Stage::as_str).collect();
        return Err(ProgramError::Conflict {
            code: "transition_not_allowed",
            reason: format!(
                "an opportunity at {} cannot move to {} (allowed: {})",
                from.as_str(),
                to.as_str(),
                if allowed.is_empty() { "nothing, it is closed".to_owned() } else { allowed.join(", ") }
            ),
        });
    }
    let closing = to.is_closed();
    sqlx::query(
        "update partner_opportunities
            set stage = $3, updated_at = now(),
                closed_by = case when $4 then $5 end, closed_at = case when $4 then now() end
          where tenant_id = $1 and id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(to.as_str())
    .bind(closing)
    .bind(by)
    .execute(tx.conn())
    .await?;
    let mut changes = Changes::none().field("stage", from.as_str(), to.as_str());
    if closing {
        changes = changes.field("closed_by", None::<String>, by.to_string());
    }
    let action = match to {
        Stage::Won => "opportunity.won",
        Stage::Lost => "opportunity.lost",
        _ => "opportunity.advanced",
    };
    audit::record_by(tx, who, &Event::new(action, Entity::of("opportunity", id)?, changes)?).await?;
    if to == Stage::Won {
        let o = get(tx, id).await?;
        commissions::compute_for(tx, who, &o, by).await?;
    }
    get(tx, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_move_one_step_forward_or_to_lost_and_closed_ones_never_move() {
        use Stage::{Lost, Negotiation, Proposal, Qualified, Won};
        for from in Stage::ALL {
            for to in Stage::ALL {
                let expected = matches!(
                    (from, to),
                    (Qualified, Proposal)
                        | (Proposal, Negotiation)
                        | (Negotiation, Won)
                        | (Qualified | Proposal | Negotiation, Lost)
                );
                assert_eq!(may_move(from, to), expected, "{from:?} -> {to:?}");
            }
        }
        assert!(!may_move(Qualified, Won), "no skipping to won");
        assert!(!may_move(Won, Lost), "won is final");
        assert!(allowed_from(Won).is_empty() && allowed_from(Lost).is_empty());
    }

    #[test]
    fn products_are_codes() {
        assert_eq!(parse_product(" cloud-suite_2 ").ok().as_deref(), Some("cloud-suite_2"));
        for bad in ["", "Cloud", "-x", "a b", "=cmd", &"x".repeat(65)] {
            assert!(parse_product(bad).is_err(), "{bad}");
        }
    }
}
