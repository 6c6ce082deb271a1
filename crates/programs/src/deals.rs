//! Deal registration: a partner claims a customer deal; the vendor decides; an approval protects
//! the deal for the programme's window and then expires by itself.
//!
//! States: `submitted` or `conflict` (the same customer already registered by another partner or
//! by the vendor within the window) → `approved` (protected until a date) or `rejected`;
//! `approved` → `expired` (the sweep, and at read time). Every transition is audited with its
//! before/after fields. Only the vendor decides: the policy engine forbids partner roles, and a
//! partner-scope transaction is refused here again whatever permit it holds.

use approvals::money::{Currency, MAX_MINOR};
use audit::{Changes, Entity, Event, Who};
use authz::{Action, Permit};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use store::{ProgramScope, Store, TenantId, TenantTx};
use uuid::Uuid;

use crate::{ProgramError, Scope, invalid, parse_domain, parse_name, scope};

/// Default protection window (days) when the programme has no settings row.
pub const DEFAULT_PROTECTION_DAYS: i32 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DealStatus {
    Submitted,
    Conflict,
    Approved,
    Rejected,
    Expired,
}

impl DealStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Conflict => "conflict",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, ProgramError> {
        [Self::Submitted, Self::Conflict, Self::Approved, Self::Rejected, Self::Expired]
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| invalid("status", format!("unknown deal status {s}")))
    }
}

/// What the vendor decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

/// The state machine: the status a transition leads to, or `None` when it is not allowed.
#[must_use]
pub fn next(from: DealStatus, decision: Decision) -> Option<DealStatus> {
    match (from, decision) {
        (DealStatus::Submitted | DealStatus::Conflict, Decision::Approve) => Some(DealStatus::Approved),
        (DealStatus::Submitted | DealStatus::Conflict, Decision::Reject) => Some(DealStatus::Rejected),
        _ => None,
    }
}

/// The status as of `now`: an approval whose protection has run out reads as expired even
/// before the sweep has written it.
#[must_use]
pub fn effective(status: DealStatus, protected_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DealStatus {
    match (status, protected_until) {
        (DealStatus::Approved, Some(until)) if until <= now => DealStatus::Expired,
        (s, _) => s,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deal {
    pub id: Uuid,
    /// The registering partner; absent for the vendor's own registrations.
    pub partner_id: Option<Uuid>,
    pub customer_company: String,
    pub customer_domain: String,
    pub amount_minor: i64,
    pub currency: String,
    pub expected_close: NaiveDate,
    pub status: DealStatus,
    pub decision_reason: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub protected_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The registrations this one collides with. Vendor staff only: never present for a
    /// partner (who is told `conflict`, never whose).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicts_with: Option<Vec<Uuid>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewDeal {
    pub customer_company: String,
    pub customer_domain: String,
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    pub expected_close: NaiveDate,
}

struct Row {
    id: Uuid,
    partner_id: Option<Uuid>,
    customer_company: String,
    customer_domain: String,
    amount_minor: i64,
    currency: String,
    expected_close: NaiveDate,
    status: String,
    decision_reason: Option<String>,
    decided_at: Option<DateTime<Utc>>,
    protected_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl Row {
    fn into_deal(self, now: DateTime<Utc>) -> Result<Deal, ProgramError> {
        let status = effective(DealStatus::parse(&self.status)?, self.protected_until, now);
        Ok(Deal {
            id: self.id,
            partner_id: self.partner_id,
            customer_company: self.customer_company,
            customer_domain: self.customer_domain,
            amount_minor: self.amount_minor,
            currency: self.currency,
            expected_close: self.expected_close,
            status,
            decision_reason: self.decision_reason,
            decided_at: self.decided_at,
            protected_until: self.protected_until,
            created_at: self.created_at,
            conflicts_with: None,
        })
    }
}

/// Registers a deal for the caller's partner (a partner person) or for the vendor's own sales
/// (vendor staff). Which partner is never an input: it is the transaction's scope.
pub async fn register(
    tx: &mut TenantTx,
    who: &Who,
    permit: &Permit,
    registered_by: Uuid,
    new: &NewDeal,
) -> Result<Deal, ProgramError> {
    permit.require(Action::DealRegister, tx.tenant().as_uuid())?;
    let company = parse_name("customerCompany", &new.customer_company)?;
    let domain = parse_domain("customerDomain", &new.customer_domain)?;
    if company.chars().all(|c| !c.is_alphanumeric()) {
        return Err(invalid("customerCompany", "must contain letters or digits"));
    }
    if !(1..=MAX_MINOR).contains(&new.amount_minor) {
        return Err(invalid("amountMinor", format!("must be a whole number of minor units from 1 to {MAX_MINOR}")));
    }
    let currency: Currency =
        new.currency.parse().map_err(|_| invalid("currency", "expected an ISO 4217 code such as EUR or USD"))?;
    let today = Utc::now().date_naive();
    if new.expected_close < today || new.expected_close > today + chrono::Days::new(3660) {
        return Err(invalid("expectedClose", "must be between today and ten years from now"));
    }
    let partner = match scope(tx).await? {
        Scope::Vendor => None,
        Scope::Partner(p) => {
            // The partner's own row (the only one it can see) must be active.
            let active = sqlx::query_scalar!(
                "select status = 'active' as \"active!\" from partners where tenant_id = $1 and id = $2",
                tx.tenant().as_uuid(),
                p
            )
            .fetch_optional(tx.conn())
            .await?;
            if active != Some(true) {
                return Err(ProgramError::Forbidden {
                    code: "partner_inactive",
                    reason: "your partner company is not active in this programme".into(),
                });
            }
            Some(p)
        }
    };
    let id = Uuid::now_v7();
    sqlx::query!(
        "insert into deal_registrations (tenant_id, id, partner_id, customer_company, customer_domain,
                                         amount_minor, currency, expected_close, registered_by)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        tx.tenant().as_uuid(),
        id,
        partner,
        company,
        domain,
        new.amount_minor,
        currency.code(),
        new.expected_close,
        registered_by
    )
    .execute(tx.conn())
    .await?;
    let conflict =
        sqlx::query_scalar!("select countersign_deal_conflicts($1) as \"conflict!\"", id).fetch_one(tx.conn()).await?;
    let deal = get(tx, id).await?;
    let changes = Changes::none()
        .field("partner_id", None::<String>, partner.map(|p| p.to_string()))
        .field("customer_company", None::<String>, &deal.customer_company)
        .field("customer_domain", None::<String>, &deal.customer_domain)
        .field("amount_minor", None::<i64>, deal.amount_minor)
        .field("currency", None::<String>, &deal.currency)
        .field("expected_close", None::<String>, deal.expected_close.to_string())
        .field("status", None::<String>, deal.status.as_str());
    audit::record_by(tx, who, &Event::new("deal.registered", Entity::of("deal", id)?, changes)?).await?;
    if conflict {
        tracing::info!(deal = %id, "deal registration flagged as a conflict");
    }
    Ok(deal)
}

/// One deal as the caller may see it; another partner's (or organisation's) is [`ProgramError::NotFound`].
pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Deal, ProgramError> {
    let row = sqlx::query_as!(
        Row,
        r#"select id, partner_id, customer_company, customer_domain::text as "customer_domain!", amount_minor,
                  currency, expected_close, status, decision_reason, decided_at, protected_until, created_at
             from deal_registrations where tenant_id = $1 and id = $2"#,
        tx.tenant().as_uuid(),
        id
    )
    .fetch_optional(tx.conn())
    .await?
    .ok_or(ProgramError::NotFound)?;
    let now = Utc::now();
    let mut deal = row.into_deal(now)?;
    if scope(tx).await? == Scope::Vendor {
        deal.conflicts_with = Some(conflicts(tx, id).await?);
    }
    Ok(deal)
}

/// The deals the caller may see, newest first (at most `limit`, 1-500).
pub async fn list(tx: &mut TenantTx, limit: i64) -> Result<Vec<Deal>, ProgramError> {
    // No partner filter on purpose: the partner_isolation policy is the filter.
    let rows = sqlx::query_as!(
        Row,
        r#"select id, partner_id, customer_company, customer_domain::text as "customer_domain!", amount_minor,
                  currency, expected_close, status, decision_reason, decided_at, protected_until, created_at
             from deal_registrations where tenant_id = $1
            order by created_at desc, id desc limit $2"#,
        tx.tenant().as_uuid(),
        limit.clamp(1, 500)
    )
    .fetch_all(tx.conn())
    .await?;
    let now = Utc::now();
    rows.into_iter().map(|r| r.into_deal(now)).collect()
}

/// The registrations `id` collides with. In a partner's scope the table shows nothing.
async fn conflicts(tx: &mut TenantTx, id: Uuid) -> Result<Vec<Uuid>, ProgramError> {
    Ok(sqlx::query_scalar!(
        "select other_id from deal_conflicts where tenant_id = $1 and deal_id = $2 order by created_at, other_id",
        tx.tenant().as_uuid(),
        id
    )
    .fetch_all(tx.conn())
    .await?)
}

/// The programme's protection window in days.
pub async fn protection_days(tx: &mut TenantTx) -> Result<i32, ProgramError> {
    let days = sqlx::query_scalar!(
        "select deal_protection_days from program_settings where tenant_id = $1",
        tx.tenant().as_uuid()
    )
    .fetch_optional(tx.conn())
    .await?;
    Ok(days.unwrap_or(DEFAULT_PROTECTION_DAYS))
}

/// The vendor approves or rejects a registration, with a reason (3-2000 characters).
pub async fn decide(
    tx: &mut TenantTx,
    who: &Who,
    permit: &Permit,
    decided_by: Uuid,
    id: Uuid,
    decision: Decision,
    reason: &str,
) -> Result<Deal, ProgramError> {
    permit.require(Action::DealDecide, tx.tenant().as_uuid())?;
    if scope(tx).await? != Scope::Vendor {
        return Err(ProgramError::Forbidden {
            code: "partners_never_decide",
            reason: "deal registrations are decided by the vendor".into(),
        });
    }
    let reason = reason.trim();
    if reason.chars().count() < 3 || reason.chars().count() > 2000 {
        return Err(invalid("reason", "must be 3-2000 characters"));
    }
    // Lock the row: two decisions racing on one deal apply one after the other.
    let row = sqlx::query!(
        "select status, protected_until from deal_registrations where tenant_id = $1 and id = $2 for update",
        tx.tenant().as_uuid(),
        id
    )
    .fetch_optional(tx.conn())
    .await?
    .ok_or(ProgramError::NotFound)?;
    let from = effective(DealStatus::parse(&row.status)?, row.protected_until, Utc::now());
    let to = next(from, decision).ok_or_else(|| ProgramError::Conflict {
        code: "transition_not_allowed",
        reason: format!(
            "a {} deal registration cannot be {}d",
            from.as_str(),
            match decision {
                Decision::Approve => "approve",
                Decision::Reject => "reject",
            }
        ),
    })?;
    let days = protection_days(tx).await?;
    let protected_until = sqlx::query_scalar!(
        "update deal_registrations
            set status = $3, decision_reason = $4, decided_by = $5, decided_at = now(), updated_at = now(),
                protected_until = case when $3 = 'approved' then now() + make_interval(days => $6) end
          where tenant_id = $1 and id = $2
         returning protected_until",
        tx.tenant().as_uuid(),
        id,
        to.as_str(),
        reason,
        decided_by,
        days
    )
    .fetch_one(tx.conn())
    .await?;
    let action = match decision {
        Decision::Approve => "deal.approved",
        Decision::Reject => "deal.rejected",
    };
    let changes = Changes::none().field("status", from.as_str(), to.as_str()).field(
        "protected_until",
        row.protected_until,
        protected_until,
    );
    let event = Event::new(action, Entity::of("deal", id)?, changes)?.with_reason(reason)?;
    audit::record_by(tx, who, &event).await?;
    get(tx, id).await
}

const SWEEP_ACTOR: &str = "system:deal-expiry";

/// Expires every approval whose protection has run out, in every organisation; returns how
/// many. The bypass only finds the organisations; each is handled in its own vendor-scope
/// transaction. A failure in one organisation is logged and does not stop the others.
pub async fn expire_due(store: &Store) -> Result<u64, ProgramError> {
    let mut b = store.bypass(SWEEP_ACTOR, "find organisations with deal protections past their end").await?;
    let tenants = sqlx::query_scalar!(
        "select distinct tenant_id from deal_registrations where status = 'approved' and protected_until <= now()"
    )
    .fetch_all(b.conn())
    .await?;
    b.commit().await?;
    let who = Who::system(SWEEP_ACTOR);
    let mut n = 0;
    for t in tenants {
        let Ok(tenant) = TenantId::from_uuid(t) else { continue };
        let result = async {
            let mut tx = store.program_tx(tenant, ProgramScope::Vendor).await?;
            let n = expire_in(&mut tx, &who).await?;
            tx.commit().await?;
            Ok::<u64, ProgramError>(n)
        }
        .await;
        match result {
            Ok(k) => n += k,
            Err(e) => tracing::warn!(%tenant, error = %e, "could not expire deal registrations"),
        }
    }
    Ok(n)
}

/// Expires the due approvals of the transaction's organisation (visible to its scope).
pub async fn expire_in(tx: &mut TenantTx, who: &Who) -> Result<u64, ProgramError> {
    let due = sqlx::query!(
        "update deal_registrations set status = 'expired', updated_at = now()
          where tenant_id = $1 and status = 'approved' and protected_until <= now()
         returning id, protected_until",
        tx.tenant().as_uuid()
    )
    .fetch_all(tx.conn())
    .await?;
    for d in &due {
        let event = Event::new(
            "deal.expired",
            Entity::of("deal", d.id)?,
            Changes::none().field("status", "approved", "expired"),
        )?
        .with_reason(&format!("protection ended {}", d.protected_until.map(|u| u.to_rfc3339()).unwrap_or_default()))?;
        audit::record_by(tx, who, &event).await?;
    }
    Ok(due.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_status() -> impl Strategy<Value = DealStatus> {
        prop_oneof![
            Just(DealStatus::Submitted),
            Just(DealStatus::Conflict),
            Just(DealStatus::Approved),
            Just(DealStatus::Rejected),
            Just(DealStatus::Expired),
        ]
    }

    proptest! {
        /// Only open registrations are decided; decided ones never change by a decision.
        #[test]
        fn decisions_apply_only_to_open_registrations(from in any_status(), approve in any::<bool>()) {
            let d = if approve { Decision::Approve } else { Decision::Reject };
            let open = matches!(from, DealStatus::Submitted | DealStatus::Conflict);
            prop_assert_eq!(next(from, d).is_some(), open);
            if let Some(to) = next(from, d) {
                prop_assert_eq!(to, if approve { DealStatus::Approved } else { DealStatus::Rejected });
            }
        }
    }

    #[test]
    fn an_approval_past_its_protection_reads_as_expired() {
        let now = Utc::now();
        let past = now - chrono::Duration::seconds(1);
        let future = now + chrono::Duration::days(1);
        assert_eq!(effective(DealStatus::Approved, Some(past), now), DealStatus::Expired);
        assert_eq!(effective(DealStatus::Approved, Some(future), now), DealStatus::Approved);
        assert_eq!(effective(DealStatus::Rejected, None, now), DealStatus::Rejected);
        assert_eq!(next(DealStatus::Expired, Decision::Approve), None);
    }
}
