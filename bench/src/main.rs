//! `countersign-bench`: see the library's documentation and `bench/README.md`.

use clap::{Parser, Subcommand};
use countersign_bench::{
    approvals, audit_ledger, authz_decision, crash, deals, deprovision, files, half_open, inbox, login, revocation,
    scim, sso_callback, tenant_read,
};

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
    /// A 100 MiB file uploaded and downloaded through a real server, encrypted, vs `cp` on the same
    /// disk (targets: >= 70% of cp each way, first byte <= 5 ms, RSS growth <= 16 MiB).
    Files(files::Args),
    /// Deal registration with its conflict check through a real server vs pgbench, and the leads
    /// CSV export (targets: p99 <= 20 ms at 8 clients, >= 70% of pgbench, export >= 300k rows/s).
    Deals(deals::Args),
    /// A normal client's latency beside 500 connections that sent half a request head, vs alone
    /// in the same run (target: p99 no more than 2x).
    HalfOpen(half_open::Args),
    /// `kill -9` of a real server under write load, then a restart: acknowledged writes lost
    /// (target: 0 over 3 runs) and `audit verify` after each.
    Crash(crash::Args),
    /// OpenID Connect callback through a real server against an in-process issuer, the IdP's
    /// time taken out (target: p99 <= 30 ms).
    SsoCallback(sso_callback::Args),
    /// SCIM user create + PATCH (active, name) through a real server vs the same writes in pgbench
    /// (target: >= 500 requests/s at 8 clients).
    Scim(scim::Args),
    /// SCIM `active: false` on node A until node B refuses the person's token, vs raw
    /// NOTIFY->LISTEN (target: p99 <= 50 ms).
    Deprovision(deprovision::Args),
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
        Bench::Files(args) => files::run(args).await,
        Bench::Deals(args) => deals::run(args).await,
        Bench::HalfOpen(args) => half_open::run(args).await,
        Bench::Crash(args) => crash::run(args).await,
        Bench::SsoCallback(args) => sso_callback::run(args).await,
        Bench::Scim(args) => scim::run(args).await,
        Bench::Deprovision(args) => deprovision::run(args).await,
    }
}
