//! Guest expiry: memberships with a `valid_until` in the past end, and their sessions die.
//!
//! `signin::sessions::check` already refuses such memberships on every request; the sweeper makes the
//! end explicit (status `ended`, an audit event in the organisation, sessions revoked with reason
//! `membership_expired` and announced to every node). The bypass is used only to learn which
//! organisations have due memberships; the work happens in each organisation's own `TenantTx`.

use audit::{Changes, Entity, Event, Who};
use store::{Store, TenantId, TenantTx};

use crate::IdentityError;
use crate::revocation::{self, Scope};

const ACTOR: &str = "system:membership-expiry";

/// Ends every due membership in every organisation; returns how many ended. A failure in one
/// organisation is logged and does not stop the others.
pub async fn expire_due(store: &Store) -> Result<u64, IdentityError> {
    let mut b = store.bypass(ACTOR, "find organisations with guest memberships past valid_until").await?;
    let tenants = sqlx::query_scalar!(
        "select distinct tenant_id from memberships
          where status = 'active' and deleted_at is null and valid_until <= now()"
    )
    .fetch_all(b.conn())
    .await?;
    b.commit().await?;
    let who = Who::system(ACTOR);
    let mut ended = 0;
    for t in tenants {
        let Ok(tenant) = TenantId::from_uuid(t) else { continue };
        let result = async {
            let mut tx = store.tenant_tx(tenant).await?;
            let n = expire_in(&mut tx, &who).await?;
            tx.commit().await?;
            Ok::<u64, IdentityError>(n)
        }
        .await;
        match result {
            Ok(n) => ended += n,
            Err(e) => tracing::warn!(%tenant, error = %e, "could not expire memberships"),
        }
    }
    Ok(ended)
}

/// Ends the due memberships of the transaction's organisation.
pub async fn expire_in(tx: &mut TenantTx, who: &Who) -> Result<u64, IdentityError> {
    let due = sqlx::query!(
        "update memberships set status = 'ended', updated_at = now()
          where tenant_id = $1 and status = 'active' and deleted_at is null and valid_until <= now()
         returning id, user_id, valid_until",
        tx.tenant().as_uuid()
    )
    .fetch_all(tx.conn())
    .await?;
    for m in &due {
        let event = Event::new(
            "membership.expired",
            Entity::of("membership", m.id)?,
            Changes::none().field("status", "active", "ended"),
        )?
        .with_reason(&format!("valid_until {} passed", m.valid_until.map(|u| u.to_rfc3339()).unwrap_or_default()))?;
        audit::record_by(tx, who, &event).await?;
        revocation::revoke(tx, who, Scope::User(m.user_id), "membership_expired").await?;
    }
    Ok(due.len() as u64)
}
