//! SCIM 2.0 provisioning (issue 18): an organisation's identity provider creates, changes,
//! suspends and removes its people. `tokens` (the provider's credential, shown once, revocable;
//! a live one is the [`tokens::Provisioner`] every write takes), `filter` (the SCIM filter
//! grammar as a closed tree), `people` (the User resource over memberships; suspension through
//! the members' own path, so sessions end on every node).
//!
//! The HTTP face (`/scim/v2`, `application/scim+json`, PATCH dialects, ETags) is `web::scim`.

pub mod filter;
pub mod people;
pub mod tokens;
