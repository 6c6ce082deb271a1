//! Organisations. Creating one is a platform act (needs a logged bypass); a tenant transaction
//! can read and configure only its own organisation. Founding one with its first owner's
//! invitation is administration: `admin::founding`.

use audit::{Changes, Entity, Event, Who};
use chrono::{DateTime, Utc};
use serde::Serialize;
use store::{BypassTx, TenantId, TenantTx};
use uuid::Uuid;

use crate::{IdentityError, JoinPolicy, Slug};

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub plan: String,
    pub status: String,
    pub allowed_email_domains: Vec<String>,
    pub join_policy: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub slug: Slug,
    pub name: String,
    pub allowed_email_domains: Vec<String>,
    pub join_policy: JoinPolicy,
}

pub(crate) fn check_name(name: &str) -> Result<&str, IdentityError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(IdentityError::invalid("name", "must be 1-200 characters"));
    }
    Ok(name)
}

/// Creates an organisation. Audited twice: on the new tenant's own chain (its history starts
/// with its creation) and on the platform chain (a platform act).
pub async fn create(tx: &mut BypassTx, who: &Who, new: &NewTenant) -> Result<Tenant, IdentityError> {
    let name = check_name(&new.name)?;
    let domains: Vec<String> = new.allowed_email_domains.iter().map(|d| d.trim().to_lowercase()).collect();
    if domains.iter().any(|d| d.is_empty() || !d.contains('.') || d.contains('@')) {
        return Err(IdentityError::invalid("allowed_email_domains", "each must be a domain like example.com"));
    }
    let id = TenantId::new_random();
    let row = sqlx::query!(
        r#"insert into tenants (id, slug, name, allowed_email_domains, join_policy)
           values ($1, $2, $3, $4::text[]::citext[], $5)
           returning created_at"#,
        id.as_uuid(),
        new.slug.as_str(),
        name,
        &domains,
        new.join_policy.as_str()
    )
    .fetch_one(tx.conn())
    .await
    .map_err(IdentityError::from_store("organisation slug"))?;
    let tenant = Tenant {
        id,
        slug: new.slug.as_str().to_owned(),
        name: name.to_owned(),
        plan: "standard".into(),
        status: "active".into(),
        allowed_email_domains: domains,
        join_policy: new.join_policy.as_str().into(),
        created_at: row.created_at,
    };
    let event = Event::new("tenant.created", Entity::of("tenant", id)?, Changes::diff(None, Some(&tenant))?)?;
    audit::record_for(tx, id, &who.actor, &who.origin, &event).await?;
    audit::record_platform(tx.conn(), &who.actor, &who.origin, &event).await?;
    Ok(tenant)
}

/// The organisation of this transaction.
pub async fn current(tx: &mut TenantTx) -> Result<Tenant, IdentityError> {
    let r = sqlx::query!(
        r#"select id, slug, name, plan, status, allowed_email_domains::text[] as "domains!", join_policy, created_at
             from tenants where id = $1 and deleted_at is null"#,
        tx.tenant().as_uuid()
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(IdentityError::from_store("organisation"))?
    .ok_or(IdentityError::NotFound)?;
    Ok(Tenant {
        id: tenant_id(r.id)?,
        slug: r.slug,
        name: r.name,
        plan: r.plan,
        status: r.status,
        allowed_email_domains: r.domains,
        join_policy: r.join_policy,
        created_at: r.created_at,
    })
}

/// Every organisation (platform view).
pub async fn list_all(tx: &mut BypassTx) -> Result<Vec<(TenantId, String, String)>, IdentityError> {
    let rows = sqlx::query!("select id, slug, name from tenants where deleted_at is null order by slug")
        .fetch_all(tx.conn())
        .await
        .map_err(IdentityError::from_store("organisation"))?;
    rows.into_iter().map(|r| Ok((tenant_id(r.id)?, r.slug, r.name))).collect()
}

fn tenant_id(id: Uuid) -> Result<TenantId, IdentityError> {
    TenantId::from_uuid(id).map_err(|_| IdentityError::NotFound)
}

/// Whether this organisation requires a second factor at sign-in (`PUT /settings/mfa` sets it).
pub async fn requires_mfa(tx: &mut TenantTx) -> Result<bool, IdentityError> {
    sqlx::query_scalar!("select require_mfa from tenants where id = $1 and deleted_at is null", tx.tenant().as_uuid())
        .fetch_optional(tx.conn())
        .await
        .map_err(IdentityError::from_store("organisation"))?
        .ok_or(IdentityError::NotFound)
}

/// The organisation's MD thresholds: currency code → minor units above which the MD approves.
/// A currency without an entry has no threshold (approvals sends such documents to the MD).
///
/// # Errors
/// Database errors only.
pub async fn md_thresholds(tx: &mut TenantTx) -> Result<std::collections::BTreeMap<String, i64>, IdentityError> {
    let rows = sqlx::query!("select currency, threshold_minor from md_thresholds order by currency")
        .fetch_all(tx.conn())
        .await
        .map_err(IdentityError::from_store("md threshold"))?;
    Ok(rows.into_iter().map(|r| (r.currency, r.threshold_minor)).collect())
}

/// The MD threshold for one currency (`None`: none set).
///
/// # Errors
/// Database errors only.
pub async fn md_threshold(tx: &mut TenantTx, currency: &str) -> Result<Option<i64>, IdentityError> {
    sqlx::query_scalar!("select threshold_minor from md_thresholds where currency = $1", currency)
        .fetch_optional(tx.conn())
        .await
        .map_err(IdentityError::from_store("md threshold"))
}

/// Replaces the organisation's MD thresholds with `thresholds` (codes already validated by the
/// caller) and returns the previous ones. Serialised per organisation (the tenant row is
/// locked), so two concurrent replacements cannot interleave. The caller authorises and audits.
///
/// # Errors
/// `Invalid` when the database refuses a code or amount; database errors.
pub async fn replace_md_thresholds(
    tx: &mut TenantTx,
    thresholds: &std::collections::BTreeMap<String, i64>,
) -> Result<std::collections::BTreeMap<String, i64>, IdentityError> {
    let tenant = tx.tenant().as_uuid();
    sqlx::query!("select id from tenants where id = $1 for update", tenant)
        .fetch_one(tx.conn())
        .await
        .map_err(IdentityError::from_store("organisation"))?;
    let before = md_thresholds(tx).await?;
    sqlx::query!("delete from md_thresholds where tenant_id = $1", tenant)
        .execute(tx.conn())
        .await
        .map_err(IdentityError::from_store("md threshold"))?;
    for (currency, minor) in thresholds {
        sqlx::query!(
            "insert into md_thresholds (tenant_id, currency, threshold_minor) values ($1, $2, $3)",
            tenant,
            currency,
            minor
        )
        .execute(tx.conn())
        .await
        .map_err(|e| match e.as_database_error().and_then(|d| d.code()).as_deref() {
            Some("23514") => IdentityError::invalid("thresholds", "an ISO 4217 code and 0-10^15 minor units"),
            _ => IdentityError::from_store("md threshold")(e),
        })?;
    }
    Ok(before)
}
