//! `countersign-bench`: throughput of Countersign's data paths against raw `pgbench` running the
//! same SQL on the same database in the same run. Prints ratios; targets are checked here, never
//! in unit tests (shared machines are noisy).
//!
//! A library so the suite can run benchmarks at a tiny size (`tests/bench_smoke.rs`: `files`,
//! `deals`, `half-open` and `crash`): a benchmark that no longer runs against today's schema and routes fails there,
//! not on the day someone wants its figures.

pub mod approvals;
pub mod audit_ledger;
pub mod authz_decision;
pub mod crash;
pub mod deals;
pub mod files;
pub mod fixture;
pub mod half_open;
pub mod inbox;
pub mod login;
pub mod pgbench;
pub mod revocation;
pub mod server;
pub mod tenant_read;
