//! SCIM 2.0 provisioning (issue 18): an organisation's identity provider creates, changes,
//! suspends and removes its people. `tokens` (the provider's credential, shown once, revocable;
//! a live one is the [`tokens::Provisioner`] every write takes), `filter` (the SCIM filter
//! grammar as a closed tree), `people` (the User resource over memberships; suspension through
//! the members' own path, so sessions end on every node), `groups` (the Group resource: its members
//! are provisioned people), `mappings` (the organisation's setting that gives a group's people a
//! role and/or a department, applied as they join and leave).
//!
//! The HTTP face (`/scim/v2`, `application/scim+json`, PATCH dialects, ETags) is `web::scim`.

pub mod filter;
pub mod groups;
pub mod mappings;
pub mod people;
pub mod tokens;

/// The ceiling the identity provider acts under: an administrator's, so it never touches an owner
/// (`admin::members::may_grant`), nor suspends or demotes the last administrator.
pub(crate) const PROVISIONER_ROLE: crate::Role = crate::Role::Admin;
