//! What every request passes through before and around a handler: client address and context,
//! edge limits, the session cookies, authentication (`Principal`), the route guard, rate limits,
//! refusal aggregation, the per-node session and IP-allowlist caches, the shared state, and the
//! transport (our accept loop over hyper) beneath them all.
//!
//! Nothing here names a handler: `plumbing` depends only on itself, `crate::error` and the
//! domain crates, so the JSON API (`crate::api`) and the HTML pages (`crate::ui`) sit on top of
//! it side by side. Within it the order is client, cookies, edge, limits, refusals, caches →
//! auth → guard → access.

pub(crate) mod access;
pub(crate) mod auth;
pub(crate) mod client;
pub(crate) mod cookies;
pub mod edge;
pub mod guard;
pub mod ip_allowlist;
pub mod limits;
pub(crate) mod metrics;
pub mod refusals;
pub mod scim;
pub mod session_cache;
pub(crate) mod state;
pub mod tls;
pub mod transport;
