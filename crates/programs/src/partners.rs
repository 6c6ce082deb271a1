//! Partner companies of a vendor's programme, and the people who act for them.
//!
//! A partner person is a member of the vendor organisation with role `partner_admin` or
//! `partner_agent` and the partner's id on the membership (a table check makes one imply the
//! other). Only this module grants those roles; the generic member machinery refuses them.

use audit::{Changes, Entity, Event, Who};
use authz::{Action, Permit, Role};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use store::TenantTx;
use uuid::Uuid;

use crate::{ProgramError, Scope, invalid, parse_domain, parse_name, scope};

/// Tiers drive commission rates and MDF budgets (later); stored as text with a table check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Registered,
    Silver,
    Gold,
}

impl Tier {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Silver => "silver",
            Self::Gold => "gold",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, ProgramError> {
        match s {
            "registered" => Ok(Self::Registered),
            "silver" => Ok(Self::Silver),
            "gold" => Ok(Self::Gold),
            _ => Err(invalid("tier", "expected registered, silver or gold")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartnerStatus {
    Active,
    Suspended,
    Ended,
}

impl PartnerStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Ended => "ended",
        }
    }

    fn parse(s: &str) -> Result<Self, ProgramError> {
        match s {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "ended" => Ok(Self::Ended),
            _ => Err(invalid("status", "expected active, suspended or ended")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Partner {
    pub id: Uuid,
    pub company_name: String,
    pub domain: String,
    pub tier: Tier,
    pub status: PartnerStatus,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewPartner {
    pub company_name: String,
    pub domain: String,
    #[serde(default)]
    pub tier: Option<Tier>,
}

/// What may change on a partner (absent fields stay).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartnerChange {
    #[serde(default)]
    pub tier: Option<Tier>,
    #[serde(default)]
    pub status: Option<PartnerStatus>,
}

struct Row {
    id: Uuid,
    company_name: String,
    domain: String,
    tier: String,
    status: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<Row> for Partner {
    type Error = ProgramError;

    fn try_from(r: Row) -> Result<Self, ProgramError> {
        Ok(Self {
            id: r.id,
            company_name: r.company_name,
            domain: r.domain,
            tier: Tier::parse(&r.tier)?,
            status: PartnerStatus::parse(&r.status)?,
            created_at: r.created_at,
        })
    }
}

/// Vendor-side writes: the permit, and a vendor-scope transaction (a partner person's
/// transaction is refused even with a permit in hand).
async fn vendor_only(tx: &mut TenantTx, permit: &Permit, action: Action) -> Result<(), ProgramError> {
    permit.require(action, tx.tenant().as_uuid())?;
    match scope(tx).await? {
        Scope::Vendor => Ok(()),
        Scope::Partner(_) => Err(ProgramError::Forbidden {
            code: "vendor_only",
            reason: "only the vendor's staff manage the partner programme".into(),
        }),
    }
}

pub async fn create(tx: &mut TenantTx, who: &Who, permit: &Permit, new: &NewPartner) -> Result<Partner, ProgramError> {
    vendor_only(tx, permit, Action::ProgramPartnersManage).await?;
    let name = parse_name("companyName", &new.company_name)?;
    let domain = parse_domain("domain", &new.domain)?;
    let tier = new.tier.unwrap_or(Tier::Registered);
    let id = Uuid::now_v7();
    let row = sqlx::query_as!(
        Row,
        r#"insert into partners (tenant_id, id, company_name, domain, tier)
           values ($1, $2, $3, $4, $5)
           on conflict (tenant_id, domain) do nothing
           returning id, company_name, domain::text as "domain!", tier, status, created_at"#,
        tx.tenant().as_uuid(),
        id,
        name,
        domain,
        tier.as_str()
    )
    .fetch_optional(tx.conn())
    .await?
    .ok_or_else(|| ProgramError::Conflict {
        code: "partner_exists",
        reason: "a partner with this domain is already in the programme".into(),
    })?;
    let p = Partner::try_from(row)?;
    let event = Event::new(
        "partner.created",
        Entity::of("partner", p.id)?,
        Changes::none()
            .field("company_name", None::<String>, &p.company_name)
            .field("domain", None::<String>, &p.domain)
            .field("tier", None::<String>, p.tier.as_str()),
    )?;
    audit::record_by(tx, who, &event).await?;
    Ok(p)
}

/// The partners the caller may see: all of them for vendor staff, its own for a partner person.
pub async fn list(tx: &mut TenantTx) -> Result<Vec<Partner>, ProgramError> {
    // No partner filter here on purpose: the partner_isolation policy is the filter.
    let rows = sqlx::query_as!(
        Row,
        r#"select id, company_name, domain::text as "domain!", tier, status, created_at
             from partners where tenant_id = $1 order by company_name, id"#,
        tx.tenant().as_uuid()
    )
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(Partner::try_from).collect()
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Partner, ProgramError> {
    let row = sqlx::query_as!(
        Row,
        r#"select id, company_name, domain::text as "domain!", tier, status, created_at
             from partners where tenant_id = $1 and id = $2"#,
        tx.tenant().as_uuid(),
        id
    )
    .fetch_optional(tx.conn())
    .await?
    .ok_or(ProgramError::NotFound)?;
    Partner::try_from(row)
}

pub async fn update(
    tx: &mut TenantTx,
    who: &Who,
    permit: &Permit,
    id: Uuid,
    change: &PartnerChange,
) -> Result<Partner, ProgramError> {
    vendor_only(tx, permit, Action::ProgramPartnersManage).await?;
    let before = get(tx, id).await?;
    let tier = change.tier.unwrap_or(before.tier);
    let status = change.status.unwrap_or(before.status);
    let row = sqlx::query_as!(
        Row,
        r#"update partners set tier = $3, status = $4, updated_at = now()
            where tenant_id = $1 and id = $2
           returning id, company_name, domain::text as "domain!", tier, status, created_at"#,
        tx.tenant().as_uuid(),
        id,
        tier.as_str(),
        status.as_str()
    )
    .fetch_optional(tx.conn())
    .await?
    .ok_or(ProgramError::NotFound)?;
    let after = Partner::try_from(row)?;
    let mut changes = Changes::none();
    if before.tier != after.tier {
        changes = changes.field("tier", before.tier.as_str(), after.tier.as_str());
    }
    if before.status != after.status {
        changes = changes.field("status", before.status.as_str(), after.status.as_str());
    }
    if !changes.is_empty() {
        audit::record_by(tx, who, &Event::new("partner.updated", Entity::of("partner", id)?, changes)?).await?;
    }
    Ok(after)
}

/// Makes an existing user a partner person of `partner` (a new membership of the vendor with a
/// partner role and the partner's id). The operator's path (CLI) and vendor administrators'.
pub async fn add_member(
    tx: &mut TenantTx,
    who: &Who,
    permit: &Permit,
    partner: Uuid,
    user: Uuid,
    role: Role,
) -> Result<Uuid, ProgramError> {
    vendor_only(tx, permit, Action::ProgramPartnersManage).await?;
    if !role.is_partner_person() {
        return Err(invalid("role", "expected partner_admin or partner_agent"));
    }
    let p = get(tx, partner).await?;
    if p.status != PartnerStatus::Active {
        return Err(ProgramError::Conflict { code: "partner_inactive", reason: "the partner is not active".into() });
    }
    let id = Uuid::now_v7();
    let inserted = sqlx::query_scalar!(
        "insert into memberships (tenant_id, id, user_id, role, partner_id)
         values ($1, $2, $3, $4, $5)
         on conflict (tenant_id, user_id) do nothing
         returning id",
        tx.tenant().as_uuid(),
        id,
        user,
        role.as_str(),
        partner
    )
    .fetch_optional(tx.conn())
    .await;
    // An unknown user is refused by the foreign key (users are not visible here: not members yet).
    let inserted = inserted?;
    let Some(id) = inserted else {
        return Err(ProgramError::Conflict {
            code: "already_member",
            reason: "this person is already a member of the organisation".into(),
        });
    };
    let event = Event::new(
        "membership.partner_added",
        Entity::of("membership", id)?,
        Changes::none()
            .field("user_id", None::<String>, user.to_string())
            .field("role", None::<String>, role.as_str())
            .field("partner_id", None::<String>, partner.to_string()),
    )?;
    audit::record_by(tx, who, &event).await?;
    Ok(id)
}
