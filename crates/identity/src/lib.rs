//! Identity: organisations (tenants), global users, departments and memberships; signing in;
//! administering members — in layers whose imports point down only:
//!
//! ```text
//! admin      members, invitations, API keys, guest expiry, founding an organisation
//!   ↓
//! signin     passwords, TOTP, email codes, the one lockout, tokens, sessions, login
//!   ↓
//! directory  tenants, users, departments, memberships, scopes, IP allowlist, joining, retention
//!   ↓
//! revocation ending sessions and bumping epochs, announced with NOTIFY
//! ```
//!
//! `tests/layers.rs` fails when a lower layer names a higher one. Tenant-scoped functions take
//! `&mut TenantTx`; global identity functions take `&mut GlobalTx`; creating an organisation is a
//! platform act and takes `&mut BypassTx`.

pub mod admin;
pub mod directory;
mod error;
pub mod revocation;
pub mod signin;

pub use directory::model::{DepartmentCode, EmailAddress, JoinPolicy, MembershipStatus, Role, Slug};
pub use error::IdentityError;

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
