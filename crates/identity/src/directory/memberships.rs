//! Memberships: a user's role, department and validity window in one organisation. A change that
//! takes access away (a role change, a suspension) revokes the member's sessions in the same
//! transaction ([`crate::revocation`]), so no node serves the old access once it commits.

use audit::{Changes, Entity, Event, Who};
use chrono::{DateTime, Utc};
use serde::Serialize;
use store::TenantTx;
use uuid::Uuid;

use crate::revocation::{self, Scope};
use crate::{IdentityError, MembershipStatus, Role};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Membership {
    pub id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub role: String,
    pub department_id: Option<Uuid>,
    pub status: String,
    pub valid_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewMembership {
    pub user_id: Uuid,
    pub role: Role,
    pub department_id: Option<Uuid>,
    /// Time-bound guests (auditors, board members) lose access at this instant.
    pub valid_until: Option<DateTime<Utc>>,
}

pub async fn add(tx: &mut TenantTx, who: &Who, new: &NewMembership) -> Result<Uuid, IdentityError> {
    insert(tx, who, new, None).await
}

/// A partner person's membership: `new.role` is `partner_admin` or `partner_agent` and the
/// membership names the partner company (a table check makes one imply the other). Reached only
/// through a partner invitation (the admin layer issues it; this layer does not name it).
pub(crate) async fn add_partner_person(
    tx: &mut TenantTx,
    who: &Who,
    new: &NewMembership,
    partner: Uuid,
) -> Result<Uuid, IdentityError> {
    if !new.role.is_partner_person() {
        return Err(IdentityError::invalid("role", "expected partner_admin or partner_agent"));
    }
    insert(tx, who, new, Some(partner)).await
}

async fn insert(
    tx: &mut TenantTx,
    who: &Who,
    new: &NewMembership,
    partner: Option<Uuid>,
) -> Result<Uuid, IdentityError> {
    if new.valid_until.is_some_and(|u| u <= Utc::now()) {
        return Err(IdentityError::invalid("valid_until", "must be in the future"));
    }
    let id = Uuid::now_v7();
    sqlx::query!(
        "insert into memberships (tenant_id, id, user_id, role, department_id, valid_until, partner_id)
         values ($1, $2, $3, $4, $5, $6, $7)",
        tx.tenant().as_uuid(),
        id,
        new.user_id,
        new.role.as_str(),
        new.department_id,
        new.valid_until,
        partner
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("membership for this user"))?;
    let mut changes = Changes::none()
        .field("user_id", None::<Uuid>, new.user_id)
        .field("role", None::<&str>, new.role.as_str())
        .field("department_id", None::<Uuid>, new.department_id)
        .field("valid_until", None::<DateTime<Utc>>, new.valid_until)
        .field("status", None::<&str>, "active");
    if let Some(partner) = partner {
        changes = changes.field("partner_id", None::<Uuid>, partner);
    }
    let event = Event::new("membership.created", Entity::of("membership", id)?, changes)?;
    audit::record_by(tx, who, &event).await?;
    Ok(id)
}

/// Changes a member's role. A reason is required and recorded; the change and its audit event
/// commit together or not at all.
pub async fn change_role(
    tx: &mut TenantTx,
    who: &Who,
    id: Uuid,
    role: Role,
    reason: &str,
) -> Result<Role, IdentityError> {
    let event = Event::new("membership.role_changed", Entity::of("membership", id)?, Changes::none())?
        .with_reason(reason)
        .map_err(|_| IdentityError::invalid("reason", "a reason of 3-2000 characters is required"))?;
    let old = sqlx::query!(
        r#"with old as (select id, role from memberships
                         where tenant_id = $1 and id = $2 and deleted_at is null for update)
           update memberships m set role = $3, updated_at = now()
             from old where m.tenant_id = $1 and m.id = old.id
           returning old.role as "old_role!", m.user_id"#,
        tx.tenant().as_uuid(),
        id,
        role.as_str()
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(IdentityError::from_store("membership"))?
    .ok_or(IdentityError::NotFound)?;
    let (old, user) = (old.old_role, old.user_id);
    let event = Event { changes: Changes::none().field("role", &old, role.as_str()), ..event };
    audit::record_by(tx, who, &event).await?;
    // Sessions carry the role they were issued under: end them on every node.
    if old != role.as_str() {
        revocation::revoke(tx, who, Scope::User(user), "role_changed").await?;
    }
    old.parse().map_err(|_| IdentityError::invalid("role", "stored role is unknown"))
}

pub async fn list(tx: &mut TenantTx) -> Result<Vec<Membership>, IdentityError> {
    let rows = sqlx::query_as!(
        Membership,
        r#"select m.id, m.user_id, u.email::text as "email!", m.role, m.department_id, m.status, m.valid_until
             from memberships m join users u on u.id = m.user_id
            where m.tenant_id = $1 and m.deleted_at is null
            order by u.email"#,
        tx.tenant().as_uuid()
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("membership"))?;
    Ok(rows)
}

/// Sets the status of many memberships at once: all or nothing. Ids of another tenant (or of no
/// membership) make the whole batch fail and nothing is applied.
pub async fn bulk_set_status(
    tx: &mut TenantTx,
    who: &Who,
    ids: &[Uuid],
    status: MembershipStatus,
) -> Result<usize, IdentityError> {
    let mut unique = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let updated = sqlx::query!(
        r#"with old as (select id, status from memberships
                         where tenant_id = $1 and id = any($2) and deleted_at is null for update)
           update memberships m set status = $3, updated_at = now()
             from old where m.tenant_id = $1 and m.id = old.id
           returning m.id, m.user_id, old.status as "old_status!""#,
        tx.tenant().as_uuid(),
        &unique,
        status.as_str()
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("membership"))?;
    tx.ensure_batch_complete(unique.len(), updated.len())?;
    for row in &updated {
        let changes = Changes::none().field("status", &row.old_status, status.as_str());
        if changes.is_empty() {
            continue;
        }
        let event = Event::new("membership.status_changed", Entity::of("membership", row.id)?, changes)?;
        audit::record_by(tx, who, &event).await?;
        if status != MembershipStatus::Active {
            revocation::revoke(tx, who, Scope::User(row.user_id), "membership_status_changed").await?;
        }
    }
    Ok(updated.len())
}

/// What the authorisation engine needs of a member: their role and department.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveMember {
    pub role: Role,
    pub department_id: Option<Uuid>,
}

/// The active membership of `user` in this transaction's organisation, if any: not deactivated,
/// not deleted, inside its validity window. A stored role the code does not know counts as none.
///
/// # Errors
/// Database errors only.
pub async fn active(tx: &mut TenantTx, user: Uuid) -> Result<Option<ActiveMember>, IdentityError> {
    let row = sqlx::query!(
        "select role, department_id from memberships
          where user_id = $1 and status = 'active' and deleted_at is null
            and valid_from <= now() and (valid_until is null or valid_until > now())",
        user
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(IdentityError::from_store("membership"))?;
    Ok(row.and_then(|r| Some(ActiveMember { role: r.role.parse().ok()?, department_id: r.department_id })))
}

/// Whether `user` holds an active membership in this transaction's organisation now (the
/// conditions of [`active`], whatever the role). Asked with a nil id for unknown users, so both
/// paths cost the same query.
///
/// # Errors
/// Database errors only.
pub async fn is_active(tx: &mut TenantTx, user: Uuid) -> Result<bool, IdentityError> {
    Ok(sqlx::query_scalar!(
        r#"select exists(select 1 from memberships
             where user_id = $1 and status = 'active' and deleted_at is null
               and valid_from <= now() and (valid_until is null or valid_until > now())) as "e!""#,
        user
    )
    .fetch_one(tx.conn())
    .await?)
}
