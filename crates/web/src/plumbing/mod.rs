//! What every request passes through before and around a handler.

pub(crate) mod access;
pub(crate) mod auth;
pub(crate) mod client;
pub mod edge;
pub mod guard;
pub mod ip_allowlist;
pub mod limits;
pub mod refusals;
pub mod session_cache;
