//! Member administration in one organisation: list, suspend, reactivate, approve, decline, move.
//!
//! Guarantees: every function takes the organisation's `TenantTx`, so a user of another
//! organisation is simply not found; an organisation never loses its last active owner
//! (`last_owner`) nor its last active owner/admin (`last_admin`); nobody grants or touches a role above their own (`role_escalation`); every
//! change is audited with its field delta and reason, and removing access revokes the member's
//! sessions on every node in the same transaction.

use audit::{Changes, Entity, Event, Who};
use chrono::{DateTime, Utc};
use serde::Serialize;
use store::TenantTx;
use uuid::Uuid;

use crate::directory::memberships;
use crate::revocation::{self, Scope};
use crate::signin::lockout;
use crate::{IdentityError, MembershipStatus, Role};

/// Roles that administer the organisation; at least one active member must hold one.
#[must_use]
pub fn is_admin(role: Role) -> bool {
    matches!(role, Role::Owner | Role::Admin)
}

/// May a caller in role `caller` grant `role` (or act on a member who holds it)? Owners may do
/// anything; admins anything but owner; nobody else administers members; partner roles are
/// granted only by the partner programme.
#[must_use]
pub fn may_grant(caller: Role, role: Role) -> bool {
    // Partner people belong to a partner company: granted only through the partner programme
    // (which sets the membership's partner_id), never through the generic member machinery.
    if role.is_partner_person() {
        return false;
    }
    match caller {
        Role::Owner => true,
        Role::Admin => role != Role::Owner,
        _ => false,
    }
}

fn escalation(role: &str) -> IdentityError {
    IdentityError::Forbidden { code: "role_escalation", reason: format!("your role cannot grant or manage {role}") }
}

/// One member as administrators see them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Member {
    pub membership_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub department_id: Option<Uuid>,
    pub status: String,
    pub valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// One page of members in membership-id order (ids are UUIDv7, so roughly oldest first), after
/// `after`, optionally only those with `status`.
pub async fn page(
    tx: &mut TenantTx,
    status: Option<MembershipStatus>,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Member>, IdentityError> {
    let rows = sqlx::query_as!(
        Member,
        r#"select m.id as membership_id, m.user_id, u.email::text as "email!", u.display_name, m.role,
                  m.department_id, m.status, m.valid_until, m.created_at
             from memberships m join users u on u.id = m.user_id
            where m.tenant_id = $1 and m.deleted_at is null
              and ($2::text is null or m.status = $2) and ($3::uuid is null or m.id > $3)
            order by m.id limit $4"#,
        tx.tenant().as_uuid(),
        status.map(MembershipStatus::as_str),
        after,
        limit.clamp(1, 200)
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("membership"))?;
    Ok(rows)
}

/// A membership locked for change, found by user id in this organisation.
#[derive(Debug, Clone)]
pub struct Target {
    pub membership_id: Uuid,
    pub user_id: Uuid,
    pub role: Role,
    pub status: MembershipStatus,
    pub department_id: Option<Uuid>,
}

/// Finds and locks `user`'s membership here; another organisation's user is `NotFound`.
pub async fn lock(tx: &mut TenantTx, user: Uuid) -> Result<Target, IdentityError> {
    let r = sqlx::query!(
        "select id, role, status, department_id from memberships
          where tenant_id = $1 and user_id = $2 and deleted_at is null for update",
        tx.tenant().as_uuid(),
        user
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(IdentityError::from_store("membership"))?
    .ok_or(IdentityError::NotFound)?;
    Ok(Target {
        membership_id: r.id,
        user_id: user,
        role: r.role.parse()?,
        status: r.status.parse()?,
        department_id: r.department_id,
    })
}

/// Refuses a change that would leave the organisation without an active owner (409
/// `last_owner`): the last owner cannot be demoted or deactivated, not even by themselves. Locks
/// the other owners' rows, so two owners stepping down at once cannot both succeed.
async fn ensure_not_last_owner(tx: &mut TenantTx, target: &Target) -> Result<(), IdentityError> {
    if !(target.role == Role::Owner && target.status == MembershipStatus::Active) {
        return Ok(());
    }
    let others = sqlx::query_scalar!(
        "select id from memberships
          where tenant_id = $1 and id <> $2 and role = 'owner' and status = 'active'
            and deleted_at is null and (valid_until is null or valid_until > now())
          for update",
        tx.tenant().as_uuid(),
        target.membership_id
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("membership"))?;
    if others.is_empty() {
        return Err(IdentityError::Conflict {
            code: "last_owner",
            reason: "this is the organisation's last active owner; make someone else owner first".into(),
        });
    }
    Ok(())
}

/// Refuses a change that would leave the organisation without an active owner/admin. Locks the
/// other administrators' rows, so two admins demoting each other at once cannot both succeed.
async fn ensure_not_last_admin(tx: &mut TenantTx, target: &Target) -> Result<(), IdentityError> {
    if !(is_admin(target.role) && target.status == MembershipStatus::Active) {
        return Ok(());
    }
    let others = sqlx::query_scalar!(
        "select id from memberships
          where tenant_id = $1 and id <> $2 and role in ('owner', 'admin') and status = 'active'
            and deleted_at is null and (valid_until is null or valid_until > now())
          for update",
        tx.tenant().as_uuid(),
        target.membership_id
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("membership"))?;
    if others.is_empty() {
        return Err(IdentityError::Conflict {
            code: "last_admin",
            reason: "this is the organisation's last active owner/admin".into(),
        });
    }
    Ok(())
}

async fn set_status(
    tx: &mut TenantTx,
    who: &Who,
    target: &Target,
    to: MembershipStatus,
    action: &str,
    reason: &str,
) -> Result<(), IdentityError> {
    let event = Event::new(
        action,
        Entity::of("membership", target.membership_id)?,
        Changes::none().field("status", target.status.as_str(), to.as_str()),
    )?
    .with_reason(reason)?;
    sqlx::query!(
        "update memberships set status = $3, updated_at = now() where tenant_id = $1 and id = $2",
        tx.tenant().as_uuid(),
        target.membership_id,
        to.as_str()
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("membership"))?;
    audit::record_by(tx, who, &event).await?;
    Ok(())
}

fn wrong_state(target: &Target, expected: &str) -> IdentityError {
    IdentityError::Conflict {
        code: "invalid_state",
        reason: format!("the membership is {}, not {expected}", target.status.as_str()),
    }
}

/// Suspends `user`'s membership in this organisation (not their global account) and revokes
/// their sessions here. Returns how many sessions were revoked.
pub async fn deactivate(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    caller: Role,
    user: Uuid,
    reason: &str,
) -> Result<u64, IdentityError> {
    crate::permitted(permit, authz::Action::MembersManage, tx)?;
    suspend(tx, who, caller, user, reason).await
}

/// [`deactivate`] after its permit: also the path of SCIM provisioning (`active: false`, DELETE),
/// whose identity provider acts with an administrator's ceiling.
pub(crate) async fn suspend(
    tx: &mut TenantTx,
    who: &Who,
    caller: Role,
    user: Uuid,
    reason: &str,
) -> Result<u64, IdentityError> {
    let target = lock(tx, user).await?;
    if !may_grant(caller, target.role) {
        return Err(escalation(target.role.as_str()));
    }
    if target.status != MembershipStatus::Active {
        return Err(wrong_state(&target, "active"));
    }
    ensure_not_last_owner(tx, &target).await?;
    ensure_not_last_admin(tx, &target).await?;
    set_status(tx, who, &target, MembershipStatus::Suspended, "membership.deactivated", reason).await?;
    revocation::revoke(tx, who, Scope::User(user), "membership_deactivated").await
}

/// Lifts a suspension.
pub async fn reactivate(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    caller: Role,
    user: Uuid,
    reason: &str,
) -> Result<(), IdentityError> {
    crate::permitted(permit, authz::Action::MembersManage, tx)?;
    resume(tx, who, caller, user, reason).await
}

/// [`reactivate`] after its permit: also the path of SCIM provisioning (`active: true`).
pub(crate) async fn resume(
    tx: &mut TenantTx,
    who: &Who,
    caller: Role,
    user: Uuid,
    reason: &str,
) -> Result<(), IdentityError> {
    let target = lock(tx, user).await?;
    if !may_grant(caller, target.role) {
        return Err(escalation(target.role.as_str()));
    }
    if target.status != MembershipStatus::Suspended {
        return Err(wrong_state(&target, "suspended"));
    }
    set_status(tx, who, &target, MembershipStatus::Active, "membership.reactivated", reason).await
}

/// Revokes one member's sessions here (`user`), or every session of the organisation (`None`),
/// with a reason. Another organisation's user is not found.
pub async fn revoke_sessions(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    user: Option<Uuid>,
    reason: &str,
) -> Result<u64, IdentityError> {
    crate::permitted(permit, authz::Action::MembersManage, tx)?;
    let scope = match user {
        Some(u) => {
            lock(tx, u).await?;
            Scope::User(u)
        }
        None => Scope::Tenant,
    };
    revocation::revoke(tx, who, scope, reason).await
}

/// Clears the sign-in lockout of `user`, a member here the caller may manage. Returns whether it
/// was locked. Two records, each in the transaction of what it records: `member.unlocked` in the
/// organisation's `tx` (which holds the membership row locked), and — the account being global —
/// the clearing with its `user.unlocked` in `g` ([`lockout::unlock`]). Commit `g`, then `tx`.
pub async fn unlock(
    tx: &mut TenantTx,
    g: &mut store::GlobalTx,
    who: &Who,
    permit: &authz::Permit,
    caller: Role,
    user: Uuid,
) -> Result<bool, IdentityError> {
    crate::permitted(permit, authz::Action::MembersManage, tx)?;
    let target = lock(tx, user).await?;
    if !may_grant(caller, target.role) {
        return Err(escalation(target.role.as_str()));
    }
    let was_locked = lockout::is_locked(g, user).await?;
    lockout::unlock(g, who, user).await?;
    let event = Event::new(
        "member.unlocked",
        Entity::of("user", user)?,
        Changes::none().field("was_locked", None::<bool>, was_locked),
    )?;
    audit::record_by(tx, who, &event).await?;
    Ok(was_locked)
}

/// The outcome of a role change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleChanged {
    pub previous: Role,
    pub revoked: u64,
}

/// A role to hold and, optionally, the department to hold it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub role: Role,
    pub department: Option<Uuid>,
}

/// Changes `user`'s role (and optionally department) with a required reason; sessions issued
/// under the old role are revoked by [`memberships::change_role`].
pub async fn change_role(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    caller: Role,
    user: Uuid,
    to: Assignment,
    reason: &str,
) -> Result<RoleChanged, IdentityError> {
    crate::permitted(permit, authz::Action::MembersManage, tx)?;
    let Assignment { role, department } = to;
    let previous = assign(tx, who, caller, user, Some(role), department.map(Some), reason).await?;
    // `revoke` stamps `now()`, which is fixed for the transaction: these are the ones just revoked.
    let revoked = sqlx::query_scalar!(
        r#"select count(*) as "n!" from sessions
            where tenant_id = $1 and user_id = $2 and revoked_at = now() and revoked_reason = 'role_changed'"#,
        tx.tenant().as_uuid(),
        user
    )
    .fetch_one(tx.conn())
    .await?;
    Ok(RoleChanged { previous, revoked: u64::try_from(revoked).unwrap_or(0) })
}

/// [`change_role`] after its permit: also the path of SCIM group mappings
/// (`crate::admin::scim::groups`), whose identity provider acts with an administrator's ceiling.
/// `role: None` keeps the role; `department: Some(None)` clears the department. Returns the
/// role held before.
pub(crate) async fn assign(
    tx: &mut TenantTx,
    who: &Who,
    caller: Role,
    user: Uuid,
    role: Option<Role>,
    department: Option<Option<Uuid>>,
    reason: &str,
) -> Result<Role, IdentityError> {
    let target = lock(tx, user).await?;
    if !may_grant(caller, target.role) {
        return Err(escalation(target.role.as_str()));
    }
    if let Some(role) = role {
        if !may_grant(caller, role) {
            return Err(escalation(role.as_str()));
        }
        if role != Role::Owner {
            ensure_not_last_owner(tx, &target).await?;
        }
        if !is_admin(role) {
            ensure_not_last_admin(tx, &target).await?;
        }
    }
    if let Some(d) = department.filter(|d| *d != target.department_id) {
        let event = Event::new(
            "membership.department_changed",
            Entity::of("membership", target.membership_id)?,
            Changes::none().field("department_id", target.department_id, d),
        )?
        .with_reason(reason)?;
        sqlx::query!(
            "update memberships set department_id = $3, updated_at = now() where tenant_id = $1 and id = $2",
            tx.tenant().as_uuid(),
            target.membership_id,
            d
        )
        .execute(tx.conn())
        .await
        .map_err(IdentityError::from_store("department"))?;
        audit::record_by(tx, who, &event).await?;
    }
    match role {
        Some(role) => memberships::change_role(tx, who, target.membership_id, role, reason).await,
        None => Ok(target.role),
    }
}

/// Admits a member who asked to join (admin-approval organisations).
pub async fn approve(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    caller: Role,
    user: Uuid,
    role: Option<Role>,
    department: Option<Uuid>,
) -> Result<Role, IdentityError> {
    crate::permitted(permit, authz::Action::MembersManage, tx)?;
    let target = lock(tx, user).await?;
    if target.status != MembershipStatus::Pending {
        return Err(wrong_state(&target, "pending"));
    }
    let role = role.unwrap_or(target.role);
    if !may_grant(caller, role) {
        return Err(escalation(role.as_str()));
    }
    let changes = Changes::none()
        .field("status", target.status.as_str(), MembershipStatus::Active.as_str())
        .field("role", target.role.as_str(), role.as_str())
        .field("department_id", target.department_id, department.or(target.department_id));
    let event = Event::new("membership.approved", Entity::of("membership", target.membership_id)?, changes)?;
    sqlx::query!(
        "update memberships set status = 'active', role = $3, department_id = coalesce($4, department_id),
                valid_from = now(), updated_at = now()
          where tenant_id = $1 and id = $2",
        tx.tenant().as_uuid(),
        target.membership_id,
        role.as_str(),
        department
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("department"))?;
    audit::record_by(tx, who, &event).await?;
    Ok(role)
}

/// Turns down a request to join: the membership ends (kept as history; the user cannot ask again
/// by re-verifying, because a membership row exists).
pub async fn decline(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    user: Uuid,
    reason: &str,
) -> Result<(), IdentityError> {
    crate::permitted(permit, authz::Action::MembersManage, tx)?;
    let target = lock(tx, user).await?;
    if target.status != MembershipStatus::Pending {
        return Err(wrong_state(&target, "pending"));
    }
    set_status(tx, who, &target, MembershipStatus::Ended, "membership.declined", reason).await
}

/// A session as its owner or an administrator sees it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SessionInfo {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub current: bool,
}

/// `user`'s live sessions in this organisation; `current` marks the caller's own session.
pub async fn sessions_of(
    tx: &mut TenantTx,
    user: Uuid,
    current: Option<Uuid>,
) -> Result<Vec<SessionInfo>, IdentityError> {
    let rows = sqlx::query_as!(
        SessionInfo,
        r#"select id, created_at, last_seen_at, expires_at, host(ip) as ip, user_agent,
                  (id = $3::uuid) is true as "current!"
             from sessions
            where tenant_id = $1 and user_id = $2 and revoked_at is null and expires_at > now()
            order by created_at desc limit 200"#,
        tx.tenant().as_uuid(),
        user,
        current
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("session"))?;
    Ok(rows)
}

/// Revokes one of `user`'s own sessions; a session of anyone else is `NotFound`.
pub async fn revoke_own_session(tx: &mut TenantTx, who: &Who, user: Uuid, session: Uuid) -> Result<(), IdentityError> {
    let mine = sqlx::query_scalar!(
        r#"select exists(select 1 from sessions where tenant_id = $1 and id = $2 and user_id = $3
                           and revoked_at is null) as "mine!""#,
        tx.tenant().as_uuid(),
        session,
        user
    )
    .fetch_one(tx.conn())
    .await?;
    if !mine {
        return Err(IdentityError::NotFound);
    }
    revocation::revoke(tx, who, Scope::Session(session), "revoked_by_user").await?;
    Ok(())
}
