//! Memberships: a user's role, department and validity window in one organisation.

use chrono::{DateTime, Utc};
use serde::Serialize;
use store::TenantTx;
use uuid::Uuid;

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

pub async fn add(tx: &mut TenantTx, new: &NewMembership) -> Result<Uuid, IdentityError> {
    if new.valid_until.is_some_and(|u| u <= Utc::now()) {
        return Err(IdentityError::invalid("valid_until", "must be in the future"));
    }
    let id = Uuid::now_v7();
    sqlx::query!(
        "insert into memberships (tenant_id, id, user_id, role, department_id, valid_until)
         values ($1, $2, $3, $4, $5, $6)",
        tx.tenant().as_uuid(),
        id,
        new.user_id,
        new.role.as_str(),
        new.department_id,
        new.valid_until
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("membership for this user"))?;
    Ok(id)
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
    ids: &[Uuid],
    status: MembershipStatus,
) -> Result<usize, IdentityError> {
    let mut unique = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let updated = sqlx::query_scalar!(
        "update memberships set status = $3, updated_at = now()
          where tenant_id = $1 and id = any($2) and deleted_at is null
          returning id",
        tx.tenant().as_uuid(),
        &unique,
        status.as_str()
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("membership"))?;
    tx.ensure_batch_complete(unique.len(), updated.len())?;
    Ok(updated.len())
}
