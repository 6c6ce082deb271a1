//! Retention: soft-deleted records are purged for good once their retention period has passed.
//! Only tables that hold user-deletable records are swept; the audit ledger is never among
//! them (and its triggers would refuse anyway).

use std::collections::BTreeMap;

use audit::{Changes, Entity, Event, Who};
use chrono::{Duration, Utc};
use serde::Serialize;
use store::{BypassTx, TenantId};
use uuid::Uuid;

use crate::IdentityError;

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Purged {
    pub memberships: u64,
    pub departments: u64,
}

/// Purges records soft-deleted more than `older_than` ago, across organisations, recording one
/// `retention.purged` event per organisation affected.
pub async fn sweep(tx: &mut BypassTx, who: &Who, older_than: Duration) -> Result<Purged, IdentityError> {
    if older_than < Duration::days(1) {
        return Err(IdentityError::invalid("older_than", "retention must be at least one day"));
    }
    let cutoff = Utc::now() - older_than;
    let memberships = sqlx::query_scalar!(
        "delete from memberships where deleted_at is not null and deleted_at < $1 returning tenant_id",
        cutoff
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("membership"))?;
    // A department still referenced by a live membership stays until that membership goes.
    let departments = sqlx::query_scalar!(
        "delete from departments d where d.deleted_at is not null and d.deleted_at < $1
            and not exists (select 1 from memberships m where m.tenant_id = d.tenant_id and m.department_id = d.id)
         returning d.tenant_id",
        cutoff
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("department"))?;

    let mut per_tenant: BTreeMap<Uuid, (u64, u64)> = BTreeMap::new();
    for t in &memberships {
        per_tenant.entry(*t).or_default().0 += 1;
    }
    for t in &departments {
        per_tenant.entry(*t).or_default().1 += 1;
    }
    for (tenant, (m, d)) in per_tenant {
        let tenant = TenantId::from_uuid(tenant).map_err(|_| IdentityError::NotFound)?;
        let changes = Changes::none().field("memberships_purged", 0, m).field("departments_purged", 0, d);
        let event = Event::new("retention.purged", Entity::new("tenant", Some(tenant.to_string()))?, changes)?;
        audit::record_for(tx, tenant, &who.actor, &who.origin, &event).await?;
    }
    Ok(Purged { memberships: memberships.len() as u64, departments: departments.len() as u64 })
}
