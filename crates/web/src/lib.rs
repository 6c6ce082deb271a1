//! The HTTP layer. Every request passes the same middleware stack (request id, client context,
//! body limit, timeout, trace) before it reaches a handler; handlers reach data only through the
//! domain crates, which take a `TenantTx`.

mod api;
mod error;
mod plumbing;
mod router;

pub use api::{openapi, security};
pub use error::ApiError;
pub use plumbing::auth::Principal;
pub use plumbing::client::{ClientContext, TrustedProxies};
pub use plumbing::{edge, guard, ip_allowlist, limits, refusals, session_cache};
pub use router::{AppState, route_table, router, with_middleware};
