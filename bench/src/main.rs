//! `countersign-bench`: throughput of Countersign's data paths against raw `pgbench` running the
//! same SQL on the same database in the same run. Prints ratios; targets are checked here, never
//! in unit tests (shared machines are noisy).

mod approvals;
mod audit_ledger;
mod authz_decision;
mod fixture;
mod inbox;
mod login;
mod pgbench;
mod revocation;
mod server;
mod tenant_read;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "countersign-bench")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Audited approval transitions (hot tenant and many tenants) vs pgbench (target: >= 80%).
    Approvals(approvals::Args),
    /// Tenant-scoped page read through TenantTx vs pgbench (target: >= 60% at 8 clients).
    TenantRead(tenant_read::Args),
    /// Audit appends, verification (target >= 1M events/s) and export (target >= 500k rows/s).
    AuditLedger(audit_ledger::Args),
    /// One authorisation decision, per call (target: p99 <= 20 µs).
    Authz(authz_decision::Args),
    /// Logins and refreshes through a real server vs raw argon2id, and the server's memory
    /// (targets: logins >= 90% of the hash rate, refreshes >= 1,000/s per core, RSS <= 40 MiB idle).
    Login(login::Args),
    /// The inbox page of an approver among 100,000 documents through a real server vs pgbench
    /// (targets: p99 <= 20 ms at 8 clients, >= 70% of the same statements' rate).
    Inbox(inbox::Args),
    /// Session revoked on node A until node B drops it, vs raw NOTIFY->LISTEN (target p99 <= 50 ms).
    Revocation(revocation::Args),
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Approvals(args) => approvals::run(args).await,
        Bench::TenantRead(args) => tenant_read::run(args).await,
        Bench::AuditLedger(args) => audit_ledger::run(args).await,
        Bench::Authz(args) => authz_decision::run(args),
        Bench::Revocation(args) => revocation::run(args).await,
        Bench::Login(args) => login::run(args).await,
        Bench::Inbox(args) => inbox::run(args).await,
    }
}
