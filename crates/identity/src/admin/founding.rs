//! Founding an organisation: the platform creates it and invites its first owner through the
//! ordinary invitation machinery, so every organisation made this way has a way to its owner.

use audit::Who;

use crate::admin::invitations::{self, IssuedInvitation, NewInvitation};
use crate::directory::tenants::{self, NewTenant, Tenant};
use crate::{EmailAddress, IdentityError, Role};

/// A new organisation and the one-time invitation of its first owner.
#[derive(Debug)]
pub struct Founded {
    pub tenant: Tenant,
    pub owner_invitation: IssuedInvitation,
}

/// Creates an organisation for an operator (`countersign admin create-organisation`) and invites
/// its first owner through the ordinary invitation machinery (single use, expiring, SHA-256
/// stored, audited), so every organisation made this way has a way to its owner. A slug already
/// taken is `Duplicate("organisation slug")`, refused before the platform bypass is opened (and
/// by the unique constraint should two operators race).
pub async fn found(
    store: &store::Store,
    who: &Who,
    new: &NewTenant,
    owner: &EmailAddress,
) -> Result<Founded, IdentityError> {
    tenants::check_name(&new.name)?;
    let mut g = store.global_tx().await?;
    let taken = g.resolve_tenant(new.slug.as_str()).await?.is_some();
    g.commit().await?;
    if taken {
        return Err(IdentityError::Duplicate("organisation slug"));
    }
    let mut b = store.bypass(&who.actor.id, "create an organisation (admin create-organisation)").await?;
    let tenant = tenants::create(&mut b, who, new).await?;
    b.commit().await?;
    let mut tx = store.tenant_tx(tenant.id).await?;
    // The host operator's authority: nobody in the new organisation can ask yet.
    let permit = authz::Permit::operator(authz::Action::MembersManage, tenant.id.as_uuid());
    let owner_invitation = invitations::create(
        &mut tx,
        who,
        &permit,
        Role::Owner,
        &NewInvitation { email: owner.clone(), role: Role::Owner, department_id: None, membership_valid_until: None },
    )
    .await?;
    tx.commit().await?;
    Ok(Founded { tenant, owner_invitation })
}
