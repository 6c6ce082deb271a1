//! The benchmarks that go through a real server (`files`, `deals`, `half-open`, `crash`, `scim`,
//! `deprovision`, `sso-callback`), run at a tiny
//! size against the `countersign` binary Cargo built for this test: a benchmark that no longer
//! matches today's schema, routes or answers fails here (each checks what the server answers:
//! statuses, sizes, SHA-256, every downloaded byte, the export's row count, pgbench's exit). Only that it runs is tested; the
//! figures are meaningless at this size and in a debug build (see `bench/README.md`).

use clap::Parser;

fn server() -> &'static str {
    env!("CARGO_BIN_EXE_countersign")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_files_benchmark_runs_at_a_tiny_size() {
    let args = countersign_bench::files::Args::parse_from([
        "files",
        "--size-mib",
        "2",
        "--rounds",
        "2",
        "--downloads",
        "3",
        "--server",
        server(),
    ]);
    countersign_bench::files::run(args).await.expect("the files benchmark runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deals_benchmark_runs_at_a_tiny_size() {
    let args = countersign_bench::deals::Args::parse_from([
        "deals",
        "--scale",
        "0.002",
        "--clients",
        "2",
        "--seconds",
        "1",
        "--warmup-seconds",
        "0.5",
        "--export-seconds",
        "30",
        "--server",
        server(),
    ]);
    countersign_bench::deals::run(args).await.expect("the deals benchmark runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_half_open_benchmark_runs_at_a_tiny_size() {
    let args = countersign_bench::half_open::Args::parse_from([
        "half-open",
        "--half-open",
        "20",
        "--requests",
        "20",
        "--server",
        server(),
    ]);
    countersign_bench::half_open::run(args).await.expect("the half-open benchmark runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_crash_benchmark_loses_no_acknowledged_write_at_a_tiny_size() {
    let args = countersign_bench::crash::Args::parse_from([
        "crash",
        "--runs",
        "2",
        "--clients",
        "2",
        "--seconds",
        "1",
        "--server",
        server(),
    ]);
    countersign_bench::crash::run(args).await.expect("no acknowledged write is lost and the ledger verifies");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scim_benchmark_runs_at_a_tiny_size() {
    let args = countersign_bench::scim::Args::parse_from([
        "scim",
        "--clients",
        "2",
        "--seconds",
        "1",
        "--warmup-seconds",
        "0.2",
        "--server",
        server(),
    ]);
    countersign_bench::scim::run(args).await.expect("the scim benchmark runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deprovision_benchmark_sees_node_b_refuse_every_deprovisioned_person() {
    let args = countersign_bench::deprovision::Args::parse_from(["deprovision", "--people", "3", "--server", server()]);
    countersign_bench::deprovision::run(args).await.expect("node B refuses each person after the PATCH on node A");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sso_callback_benchmark_signs_in_through_its_own_issuer_at_a_tiny_size() {
    let args = countersign_bench::sso_callback::Args::parse_from([
        "sso-callback",
        "--clients",
        "2",
        "--rounds",
        "3",
        "--server",
        server(),
    ]);
    countersign_bench::sso_callback::run(args).await.expect("the sso-callback benchmark runs");
}
