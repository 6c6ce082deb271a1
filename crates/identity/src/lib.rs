//! Identity: organisations (tenants), global users, departments and memberships.
//!
//! Tenant-scoped functions take `&mut TenantTx`; global identity functions take `&mut GlobalTx`;
//! creating an organisation is a platform act and takes `&mut BypassTx`.

pub mod account;
pub mod api_keys;
pub mod departments;
pub mod email_codes;
mod error;
mod guest_expiry;
pub mod invitations;
pub mod ip_allowlist;
pub mod joining;
pub mod lockout;
pub mod login_policy;
pub mod mail;
pub mod members;
pub mod memberships;
pub mod mfa;
pub mod model;
pub mod passwords;
pub mod retention;
pub mod scopes;
pub mod secret_box;
pub mod sessions;
pub mod suspicious;
pub mod tenants;
pub mod tokens;
pub mod users;

pub use error::IdentityError;
pub use model::{DepartmentCode, EmailAddress, JoinPolicy, MembershipStatus, Role, Slug};

/// Organisation-level changes (members, invitations, API keys, settings) take the policy engine's
/// permit for their action in the transaction's organisation: `authz::Engine::decide`'s answer,
/// or for the command line `authz::Permit::operator`. A permit for anything else is refused.
pub(crate) fn permitted(
    permit: &authz::Permit,
    action: authz::Action,
    tx: &store::TenantTx,
) -> Result<(), IdentityError> {
    permit
        .require(action, tx.tenant().as_uuid())
        .map_err(|e| IdentityError::Forbidden { code: "permit_mismatch", reason: e.to_string() })
}
