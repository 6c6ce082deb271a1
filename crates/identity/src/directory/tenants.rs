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

/// An organisation's display name, trimmed: 1-200 characters.
///
/// # Errors
/// `Invalid` naming `name` otherwise.
pub fn check_name(name: &str) -> Result<&str, IdentityError> {
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

/// How people join the organisation by their verified address: the domains it lists and whether
/// such a person becomes a member at once (`auto_join`) or waits for an administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Joining {
    pub domains: Vec<String>,
    pub policy: JoinPolicy,
}

/// The most domains an organisation lists.
pub const MAX_JOIN_DOMAINS: usize = 20;

/// Providers anyone can get an address at: listing one would let the whole world join.
const PUBLIC_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "yahoo.com",
    "ymail.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "pm.me",
    "gmx.com",
    "gmx.net",
    "gmx.de",
    "web.de",
    "mail.com",
    "zoho.com",
    "yandex.com",
    "yandex.ru",
    "mail.ru",
    "qq.com",
    "163.com",
    "126.com",
    "fastmail.com",
    "tutanota.com",
    "hey.com",
    "example.com",
];

/// This organisation's joining settings.
///
/// # Errors
/// `NotFound` for a deleted organisation; database errors.
pub async fn joining(tx: &mut TenantTx) -> Result<Joining, IdentityError> {
    let r = current(tx).await?;
    Ok(Joining { domains: r.allowed_email_domains, policy: r.join_policy.parse()? })
}

/// Replaces the organisation's joining settings (owner/admin: `SettingsManage`) and returns the
/// previous ones; audited as `tenant.joining_changed` when anything changed.
///
/// A domain is accepted only when it is well formed, not a public mail provider, and **an active
/// member of this organisation already has a verified address at it**: an organisation cannot
/// claim a domain it has no people at (otherwise it could list `bigcorp.com` and collect, as
/// pending joiners, everyone there who verifies an address).
///
/// # Errors
/// `Invalid` naming `domains` (malformed, public, unproven, too many); `Forbidden`.
pub async fn set_joining(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    domains: &[String],
    policy: JoinPolicy,
) -> Result<Joining, IdentityError> {
    crate::permitted(permit, authz::Action::SettingsManage, tx)?;
    let mut clean: Vec<String> = Vec::with_capacity(domains.len());
    for d in domains {
        let d = d.trim().trim_start_matches('@').to_lowercase();
        if d.is_empty() {
            continue;
        }
        let parsed = crate::EmailAddress::parse(&format!("joiner@{d}"))
            .map_err(|_| IdentityError::invalid("domains", format!("{d}: not a domain name")))?;
        if parsed.domain() != d
            || d.len() > 253
            || !d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(IdentityError::invalid("domains", format!("{d}: not a domain name")));
        }
        if PUBLIC_MAIL_DOMAINS.contains(&d.as_str()) {
            return Err(IdentityError::invalid(
                "domains",
                format!("{d}: a public mail provider; anyone can have an address there"),
            ));
        }
        if !clean.contains(&d) {
            clean.push(d);
        }
    }
    if clean.len() > MAX_JOIN_DOMAINS {
        return Err(IdentityError::invalid("domains", format!("at most {MAX_JOIN_DOMAINS} domains")));
    }
    clean.sort();
    let tenant = tx.tenant().as_uuid();
    sqlx::query!("select id from tenants where id = $1 for update", tenant)
        .fetch_one(tx.conn())
        .await
        .map_err(IdentityError::from_store("organisation"))?;
    let before = joining(tx).await?;
    for d in clean.iter().filter(|d| !before.domains.contains(d)) {
        let proven = sqlx::query_scalar!(
            r#"select exists(
                 select 1 from memberships m join users u on u.id = m.user_id
                  where m.status = 'active' and m.deleted_at is null and u.email_verified_at is not null
                    and lower(split_part(u.email::text, '@', 2)) = $1) as "proven!""#,
            d
        )
        .fetch_one(tx.conn())
        .await
        .map_err(IdentityError::from_store("membership"))?;
        if !proven {
            return Err(IdentityError::invalid(
                "domains",
                format!("{d}: no active member of this organisation has a verified address there"),
            ));
        }
    }
    let after = Joining { domains: clean, policy };
    if after != before {
        sqlx::query!(
            "update tenants set allowed_email_domains = $2::text[]::citext[], join_policy = $3, updated_at = now()
              where id = $1",
            tenant,
            &after.domains,
            after.policy.as_str()
        )
        .execute(tx.conn())
        .await
        .map_err(IdentityError::from_store("organisation"))?;
        let event = Event::new(
            "tenant.joining_changed",
            Entity::of("tenant", tx.tenant())?,
            Changes::none().field("allowed_email_domains", before.domains.clone(), after.domains.clone()).field(
                "join_policy",
                before.policy.as_str(),
                after.policy.as_str(),
            ),
        )?;
        audit::record_by(tx, who, &event).await?;
    }
    Ok(before)
}
