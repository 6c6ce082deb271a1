//! Joining organisations by verified email domain.
//!
//! Organisations list `allowed_email_domains` and a `join_policy`. Once a user's address is
//! verified, [`after_email_verified`] gives them a membership in every active organisation that
//! lists the address's exact domain and where they have none yet: `active` staff under
//! `auto_join`, `pending` (no access until an admin approves) under `admin_approval`. The lookup
//! across organisations happens in one SECURITY DEFINER function (migration 0008) that acts only
//! for a verified, active user and audits each membership in its organisation's chain.

use store::{GlobalTx, TenantId};
use uuid::Uuid;

use crate::{IdentityError, MembershipStatus};

/// Call in the identity transaction that verified `user`'s email (after setting
/// `users.email_verified_at`). Returns the organisations joined and the status in each; an
/// unverified or disabled user joins nothing.
pub async fn after_email_verified(
    g: &mut GlobalTx,
    user: Uuid,
) -> Result<Vec<(TenantId, MembershipStatus)>, IdentityError> {
    let rows = sqlx::query!(
        r#"select o_tenant as "tenant!", o_status as "status!" from countersign_join_by_verified_email($1)"#,
        user
    )
    .fetch_all(g.conn())
    .await?;
    rows.into_iter()
        .map(|r| {
            let tenant = TenantId::from_uuid(r.tenant).map_err(|_| IdentityError::Internal("nil tenant id".into()))?;
            Ok((tenant, r.status.parse()?))
        })
        .collect()
}
