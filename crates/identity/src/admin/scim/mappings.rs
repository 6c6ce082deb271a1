//! Group mappings: an organisation setting (`scim_group_mappings`, settings.manage) that makes the
//! people of an identity-provider group hold a role and/or belong to a department. Deny by
//! default: a mapping never names owner nor a partner person's role (refused here, and by the
//! table's CHECK), and is applied with the identity provider's administrator ceiling, so an owner
//! is never changed by a group.
//!
//! [`reconcile`] is the one place a person's groups become their role and department: when the
//! first mapped group takes over, what the person held is kept (`scim_users.groups_*`); when the
//! last one lets go, it is given back. Several mapped groups: the oldest mapping wins. Role changes
//! go through the members' own path ([`crate::admin::members`]), which audits them and revokes
//! the person's sessions on every node, since sessions carry their role.

use audit::{Changes, Entity, Event, Who};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use store::TenantTx;
use uuid::Uuid;

use super::PROVISIONER_ROLE;
use crate::admin::members::{self, may_grant};
use crate::{DepartmentCode, IdentityError, Role};

/// Which attribute of a group a mapping names it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchOn {
    DisplayName,
    ExternalId,
}

impl MatchOn {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DisplayName => "display_name",
            Self::ExternalId => "external_id",
        }
    }

    fn parse(s: &str) -> Result<Self, IdentityError> {
        match s {
            "display_name" => Ok(Self::DisplayName),
            "external_id" => Ok(Self::ExternalId),
            _ => Err(IdentityError::Internal(format!("stored match_on {s}"))),
        }
    }
}

/// One mapping as administrators see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct GroupMapping {
    pub id: Uuid,
    pub match_on: MatchOn,
    /// The group's displayName (compared case-insensitively) or externalId (exactly).
    pub group: String,
    pub role: Option<Role>,
    /// The department's code.
    pub department: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// What an administrator sets: at least one of `role` and `department` (a department code).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMapping {
    pub match_on: MatchOn,
    pub group: String,
    #[serde(default)]
    pub role: Option<Role>,
    #[serde(default)]
    pub department: Option<String>,
}

/// The organisation's mappings, oldest (strongest) first.
pub async fn list(tx: &mut TenantTx) -> Result<Vec<GroupMapping>, IdentityError> {
    let rows = sqlx::query!(
        "select mp.id, mp.match_on, mp.group_key, mp.role, d.code as \"department?\", mp.created_by, mp.created_at
           from scim_group_mappings mp
           left join departments d on d.tenant_id = mp.tenant_id and d.id = mp.department_id
          where mp.tenant_id = $1 order by mp.created_at, mp.id",
        tx.tenant().as_uuid()
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("group mapping"))?;
    rows.into_iter()
        .map(|r| {
            Ok(GroupMapping {
                id: r.id,
                match_on: MatchOn::parse(&r.match_on)?,
                group: r.group_key,
                role: r.role.map(|x| x.parse()).transpose()?,
                department: r.department,
                created_by: r.created_by,
                created_at: r.created_at,
            })
        })
        .collect()
}

fn not_mappable(role: Role) -> IdentityError {
    IdentityError::Forbidden {
        code: "role_not_mappable",
        reason: format!("an identity provider's group can never make someone {}", role.as_str()),
    }
}

/// The people now in the groups `mapping` names (its effect to apply).
async fn people_of(tx: &mut TenantTx, mapping: Uuid) -> Result<Vec<Uuid>, IdentityError> {
    sqlx::query_scalar!(
        r#"select distinct gm.user_id as "user_id!" from scim_group_mappings mp
           join scim_groups g on g.tenant_id = mp.tenant_id
            and ((mp.match_on = 'display_name' and lower(g.display_name) = lower(mp.group_key))
              or (mp.match_on = 'external_id' and g.external_id = mp.group_key))
           join scim_group_members gm on gm.tenant_id = g.tenant_id and gm.group_id = g.id
          where mp.tenant_id = $1 and mp.id = $2"#,
        tx.tenant().as_uuid(),
        mapping
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("group mapping"))
}

/// Applies a changed mapping to the people of its groups, with the identity provider's ceiling;
/// an owner among them stops the change (409 `group_has_owner`).
async fn apply_to(tx: &mut TenantTx, who: &Who, people: Vec<Uuid>) -> Result<(), IdentityError> {
    for user in people {
        match reconcile(tx, who, PROVISIONER_ROLE, user).await {
            Err(IdentityError::Forbidden { code: "role_escalation", .. }) => {
                return Err(IdentityError::Conflict {
                    code: "group_has_owner",
                    reason: "an owner is in this group, and groups never change an owner; take them out of the group in the identity provider first".into(),
                });
            }
            other => other?,
        }
    }
    Ok(())
}

/// Adds a mapping (settings.manage) and applies it at once to the people already in the group.
/// Owner and partner roles are refused (403 `role_not_mappable`), as is a role above the
/// caller's own (403 `role_escalation`); an unknown department is 422; a group mapped already is
/// 409.
pub async fn create(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    caller: Role,
    new: &NewMapping,
) -> Result<GroupMapping, IdentityError> {
    crate::permitted(permit, authz::Action::SettingsManage, tx)?;
    let group = new.group.trim();
    if group.is_empty() || group.chars().count() > 254 {
        return Err(IdentityError::invalid("group", "must be 1-254 characters"));
    }
    if let Some(role) = new.role {
        if role == Role::Owner || !may_grant(PROVISIONER_ROLE, role) {
            return Err(not_mappable(role));
        }
        if !may_grant(caller, role) {
            return Err(IdentityError::Forbidden {
                code: "role_escalation",
                reason: format!("your role cannot grant {}", role.as_str()),
            });
        }
    }
    let department = match new.department.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        None => None,
        Some(code) => {
            let code = DepartmentCode::parse(code)?;
            let id = sqlx::query_scalar!(
                "select id from departments where tenant_id = $1 and code = $2 and deleted_at is null",
                tx.tenant().as_uuid(),
                code.as_str()
            )
            .fetch_optional(tx.conn())
            .await
            .map_err(IdentityError::from_store("department"))?
            .ok_or_else(|| IdentityError::invalid("department", format!("{}: no such department", code.as_str())))?;
            Some((id, code.as_str().to_owned()))
        }
    };
    if new.role.is_none() && department.is_none() {
        return Err(IdentityError::invalid("role", "a mapping gives a role, a department or both"));
    }
    let id = Uuid::now_v7();
    let created_by = format!("{}:{}", who.actor.kind.as_str(), who.actor.id);
    let created_at = sqlx::query_scalar!(
        "insert into scim_group_mappings (tenant_id, id, match_on, group_key, role, department_id, created_by)
         values ($1, $2, $3, $4, $5, $6, $7) returning created_at",
        tx.tenant().as_uuid(),
        id,
        new.match_on.as_str(),
        group,
        new.role.map(Role::as_str),
        department.as_ref().map(|d| d.0),
        created_by
    )
    .fetch_one(tx.conn())
    .await
    .map_err(IdentityError::from_store("mapping for this group"))?;
    let mapping = GroupMapping {
        id,
        match_on: new.match_on,
        group: group.to_owned(),
        role: new.role,
        department: department.map(|d| d.1),
        created_by,
        created_at,
    };
    let event = Event::new(
        "scim_group_mapping.created",
        Entity::of("scim_group_mapping", id)?,
        Changes::diff(None, Some(&mapping))?,
    )?;
    audit::record_by(tx, who, &event).await?;
    let people = people_of(tx, id).await?;
    apply_to(tx, who, people).await?;
    Ok(mapping)
}

/// Removes a mapping (settings.manage); the people of its groups get back what they held before
/// (or what another mapping of theirs says). Another organisation's mapping is `NotFound`.
pub async fn remove(tx: &mut TenantTx, who: &Who, permit: &authz::Permit, id: Uuid) -> Result<(), IdentityError> {
    crate::permitted(permit, authz::Action::SettingsManage, tx)?;
    let before = list(tx).await?.into_iter().find(|m| m.id == id).ok_or(IdentityError::NotFound)?;
    let people = people_of(tx, id).await?;
    sqlx::query!("delete from scim_group_mappings where tenant_id = $1 and id = $2", tx.tenant().as_uuid(), id)
        .execute(tx.conn())
        .await
        .map_err(IdentityError::from_store("group mapping"))?;
    let event = Event::new(
        "scim_group_mapping.deleted",
        Entity::of("scim_group_mapping", id)?,
        Changes::diff(Some(&before), None)?,
    )?;
    audit::record_by(tx, who, &event).await?;
    apply_to(tx, who, people).await
}

/// Gives `user` (a provisioned person here) the role and department their mapped groups say now,
/// keeping what they held before the first mapped group and giving it back after the last. A
/// change goes through [`members::assign`] with `caller`'s ceiling; nothing to change, nothing
/// written.
pub(crate) async fn reconcile(tx: &mut TenantTx, who: &Who, caller: Role, user: Uuid) -> Result<(), IdentityError> {
    let grants = sqlx::query!(
        "select mp.role, mp.department_id from scim_group_mappings mp
           join scim_groups g on g.tenant_id = mp.tenant_id
            and ((mp.match_on = 'display_name' and lower(g.display_name) = lower(mp.group_key))
              or (mp.match_on = 'external_id' and g.external_id = mp.group_key))
           join scim_group_members gm on gm.tenant_id = g.tenant_id and gm.group_id = g.id
          where mp.tenant_id = $1 and gm.user_id = $2
          order by mp.created_at, mp.id",
        tx.tenant().as_uuid(),
        user
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("group mapping"))?;
    let mapped_role: Option<Role> =
        grants.iter().find_map(|g| g.role.as_deref()).map(str::parse::<Role>).transpose()?;
    let mapped_department = grants.iter().find_map(|g| g.department_id);
    let Some(now) = sqlx::query!(
        "select s.groups_role_from, s.groups_department_from, s.groups_department_held, m.role, m.department_id
           from scim_users s join memberships m on m.tenant_id = s.tenant_id and m.user_id = s.user_id
          where s.tenant_id = $1 and s.user_id = $2 and m.deleted_at is null
          for update of s",
        tx.tenant().as_uuid(),
        user
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(IdentityError::from_store("provisioned user"))?
    else {
        return Ok(());
    };
    let current: Role = now.role.parse()?;
    let (want_role, role_from) = match (mapped_role, now.groups_role_from.as_deref()) {
        (Some(r), from) => (r, Some(from.unwrap_or(now.role.as_str()).to_owned())),
        (None, Some(from)) => (from.parse()?, None),
        (None, None) => (current, None),
    };
    let (want_department, department_from, held) = match (mapped_department, now.groups_department_held) {
        (Some(d), true) => (Some(d), now.groups_department_from, true),
        (Some(d), false) => (Some(d), now.department_id, true),
        (None, true) => (now.groups_department_from, None, false),
        (None, false) => (now.department_id, None, false),
    };
    let role_change = (want_role != current).then_some(want_role);
    let department_change = (want_department != now.department_id).then_some(want_department);
    if role_change.is_some() || department_change.is_some() {
        members::assign(
            tx,
            who,
            caller,
            user,
            role_change,
            department_change,
            "group membership in the identity provider",
        )
        .await?;
    }
    if role_from != now.groups_role_from
        || department_from != now.groups_department_from
        || held != now.groups_department_held
    {
        sqlx::query!(
            "update scim_users set groups_role_from = $3, groups_department_from = $4, groups_department_held = $5
              where tenant_id = $1 and user_id = $2",
            tx.tenant().as_uuid(),
            user,
            role_from,
            department_from,
            held
        )
        .execute(tx.conn())
        .await
        .map_err(IdentityError::from_store("provisioned user"))?;
    }
    Ok(())
}
