//! The HTTP layer. Every request passes the same middleware stack (request id, trace span, client
//! context, security headers, edge limits, body limit, timeout) and then its route's guard
//! before it reaches a handler; handlers reach data only through the domain crates, which take
//! a `TenantTx`.
//!
//! Laid out by what a file is for, in layers that only look down:
//!
//! - `router.rs`: the route table (every route with its guard) and the middleware stack. The
//!   one place that names handlers.
//! - `api/`: the JSON API under `/api/v1`, one file per resource (sessions, mfa, me, members,
//!   api keys, invitations, departments, documents, audit, ip allowlist, health), the sign-in
//!   answer they share, idempotency for write routes, and the OpenAPI description.
//! - `ui/`: the HTML pages (DESIGN.md: `web/ui`), beside `api/` and built on the same plumbing:
//!   the same `Principal`, guard, cookies and limits.
//! - `plumbing/`: what every request passes through whatever answers it — client context, edge
//!   limits, cookies, authentication (`Principal`), the guard, rate limits, refusal aggregation,
//!   the session and IP-allowlist caches, the shared `AppState`. It never imports a handler, so
//!   security code cannot come to depend on what a page or an endpoint does.
//! - `error.rs`: `ApiError`, the one error shape (stable snake_case codes).
//!
//! The public paths (`web::guard`, `web::limits`, `web::refusals`, `web::Principal`, ...) are
//! re-exported here; the folders are private.

mod api;
mod error;
mod plumbing;
mod router;
mod ui;

pub use api::{openapi, security};
pub use error::ApiError;
pub use plumbing::auth::{Caller, Person, Principal};
pub use plumbing::client::{ClientContext, TrustedProxies};
pub use plumbing::state::AppState;
pub use plumbing::transport::{serve, serve_with};
pub use plumbing::{edge, guard, ip_allowlist, limits, refusals, session_cache, tls, transport};
pub use router::{API_CSP, management_router, route_table, router, with_middleware};
pub use ui::PAGE_CSP;
/// The pages' static files (tests check the vendored htmx against its pin).
pub mod assets {
    pub use crate::ui::assets::{APP_CSS, Asset, CSS, HTMX, HTMX_JS, HTMX_VERSION};
}
