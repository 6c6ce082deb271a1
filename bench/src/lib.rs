//! `countersign-bench`: throughput of Countersign's data paths against raw `pgbench` running the
//! same SQL on the same database in the same run. Prints ratios; targets are checked here, never
//! in unit tests (shared machines are noisy).
//!
//! A library so the suite can run benchmarks at a tiny size (`tests/bench_smoke.rs`: `files`,
//! `deals`, `half-open`, `crash`, `scim`, `deprovision` and `sso-callback`): a benchmark that no longer runs against today's schema and routes fails there,
//! not on the day someone wants its figures.

pub mod approvals;
pub mod audit_ledger;
pub mod authz_decision;
pub mod crash;
pub mod deals;
pub mod deprovision;
pub mod files;
pub mod fixture;
pub mod half_open;
pub mod inbox;
pub mod login;
pub mod pgbench;
pub mod propagation;
pub mod revocation;
pub mod scim;
pub mod server;
pub mod sso_callback;
pub mod tenant_read;
