//! The JSON API under `/api/v1`.

pub(crate) mod api_keys;
pub(crate) mod audit;
pub(crate) mod commissions;
pub(crate) mod departments;
pub(crate) mod documents;
pub(crate) mod files;
pub(crate) mod health;
pub(crate) mod idempotency;
pub(crate) mod invitations;
pub(crate) mod ip_allowlist;
pub(crate) mod joining;
pub(crate) mod mdf;
pub(crate) mod me;
pub(crate) mod members;
pub(crate) mod mfa;
pub(crate) mod oidc;
pub mod openapi;
pub(crate) mod portals;
pub(crate) mod programs;
pub(crate) mod saml;
pub(crate) mod scim;
pub(crate) mod scim_mappings;
pub(crate) mod scim_tokens;
pub mod security;
pub(crate) mod sessions;
pub(crate) mod sign_in;
