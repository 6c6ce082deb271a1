//! The directory: who exists and where they belong — organisations, global users, departments,
//! memberships and the organisation's settings (IP allowlist, API-key scopes, joining by domain).
//!
//! Imports only [`crate::revocation`] beneath it (and the store, audit, authz crates): nothing
//! here knows how anyone signs in or who administers them.

pub mod departments;
pub mod ip_allowlist;
pub mod joining;
pub mod memberships;
pub mod model;
pub mod retention;
pub mod scopes;
pub mod tenants;
pub mod users;
