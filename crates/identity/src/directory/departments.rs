//! Departments of one organisation: created, listed and checked only in its `TenantTx` (another
//! organisation's department is simply not there), each creation audited; codes are unique per organisation.

use audit::{Changes, Entity, Event, Who};
use serde::Serialize;
use store::TenantTx;
use uuid::Uuid;

use crate::{DepartmentCode, IdentityError};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Department {
    pub id: Uuid,
    pub code: String,
    pub name: String,
}

pub async fn create(
    tx: &mut TenantTx,
    who: &Who,
    code: &DepartmentCode,
    name: &str,
) -> Result<Department, IdentityError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(IdentityError::invalid("name", "must be 1-200 characters"));
    }
    let id = Uuid::now_v7();
    sqlx::query!(
        "insert into departments (tenant_id, id, code, name) values ($1, $2, $3, $4)",
        tx.tenant().as_uuid(),
        id,
        code.as_str(),
        name
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("department code"))?;
    let dept = Department { id, code: code.as_str().to_owned(), name: name.to_owned() };
    let event = Event::new("department.created", Entity::of("department", id)?, Changes::diff(None, Some(&dept))?)?;
    audit::record_by(tx, who, &event).await?;
    Ok(dept)
}

/// One page of departments, ordered by code, after `after` (keyset pagination).
pub async fn list(tx: &mut TenantTx, after: Option<&str>, limit: i64) -> Result<Vec<Department>, IdentityError> {
    let rows = sqlx::query_as!(
        Department,
        "select id, code, name from departments
          where tenant_id = $1 and deleted_at is null and code > coalesce($2, '')
          order by code limit $3",
        tx.tenant().as_uuid(),
        after,
        limit.clamp(1, 500)
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("department"))?;
    Ok(rows)
}

/// The departments `user`'s membership of this organisation belongs to (none, or one today).
pub async fn of_user(tx: &mut TenantTx, user: Uuid) -> Result<Vec<Department>, IdentityError> {
    let rows = sqlx::query_as!(
        Department,
        "select d.id, d.code, d.name
           from memberships m join departments d on d.tenant_id = m.tenant_id and d.id = m.department_id
          where m.tenant_id = $1 and m.user_id = $2 and m.deleted_at is null and d.deleted_at is null
          order by d.code",
        tx.tenant().as_uuid(),
        user
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("department"))?;
    Ok(rows)
}

/// Whether `id` is a live department of this transaction's organisation.
///
/// # Errors
/// Database errors only.
pub async fn exists(tx: &mut TenantTx, id: Uuid) -> Result<bool, IdentityError> {
    let found = sqlx::query_scalar!("select id from departments where id = $1 and deleted_at is null", id)
        .fetch_optional(tx.conn())
        .await
        .map_err(IdentityError::from_store("department"))?;
    Ok(found.is_some())
}
