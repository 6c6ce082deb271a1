//! The HTTP layer. Every request passes the same middleware stack (request id, client context,
//! body limit, timeout, trace) before it reaches a handler; handlers reach data only through the
//! domain crates, which take a `TenantTx`.

mod access;
mod api_keys_api;
mod audit_api;
mod auth;
mod client;
mod departments_api;
mod documents_api;
pub mod edge;
mod error;
pub mod guard;
mod health;
mod invitations_api;
pub mod ip_allowlist;
pub mod limits;
mod me_api;
mod members_api;
mod mfa_api;
pub mod openapi;
pub mod refusals;
mod router;
pub mod security;
mod session_api;
pub mod session_cache;

pub use auth::Principal;
pub use client::{ClientContext, TrustedProxies};
pub use error::ApiError;
pub use router::{AppState, route_table, router, with_middleware};
