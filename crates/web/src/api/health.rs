//! Liveness, readiness, Prometheus metrics and the JSON isolation status.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::AppState;

/// Marks a request that came in on the management listener (`serve --management-listen`).
#[derive(Debug, Clone, Copy)]
pub struct Management;

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// The process is up (no dependencies checked).
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Readiness {
    ready: bool,
    /// One entry per check (database, schema version): free-form by design.
    #[schema(value_type = Object)]
    checks: serde_json::Value,
}

/// The database answers as the app role and the schema is at the version this binary expects.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let r = state.store.readiness().await;
    let status = if r.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let checks = serde_json::to_value(&r).unwrap_or_default();
    (status, Json(Readiness { ready: r.is_ready(), checks })).into_response()
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ServiceStatus)]
pub(crate) struct Status {
    version: &'static str,
    /// The git commit this server was built from (`unknown` outside a checkout).
    commit: &'static str,
    uptime_seconds: u64,
    /// The isolation counters (tenant transactions, refused cross-tenant attempts).
    #[schema(value_type = Object)]
    isolation: store::metrics::IsolationSnapshot,
    summary: String,
}

/// "N tenant queries today, 0 cross-tenant": counters only, no tenant data. The cross-tenant
/// figure is today's (UTC) across every node and restart (see `store::metrics`).
pub async fn status(State(state): State<AppState>) -> Json<Status> {
    let iso = state.store.isolation().await;
    Json(Status {
        version: env!("CARGO_PKG_VERSION"),
        commit: claims::COMMIT,
        uptime_seconds: state.started.elapsed().as_secs(),
        summary: format!(
            "{} tenant transactions today (this node), {} cross-tenant attempts refused today (all nodes)",
            iso.tenant_tx_today, iso.cross_tenant_refused_today
        ),
        isolation: iso,
    })
}

/// OpenMetrics text (Prometheus scrapes it), encoded by the Prometheus client: the isolation and
/// refusal counters, the build, the database pool, the process, and per-route requests.
pub async fn metrics(State(state): State<AppState>, management: Option<axum::Extension<Management>>) -> Response {
    if state.metrics_on_management_only && management.is_none() {
        return crate::ApiError::not_found().into_response();
    }
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;
    use prometheus_client::metrics::info::Info;
    let s = state.store.isolation().await;
    let mut r = prometheus_client::registry::Registry::default();
    // Counters are named without `_total`: the encoder appends it.
    let (verify_passes, verified) = audit::watch::verified_totals();
    let counters: [(&str, &str, u64); 15] = [
        ("countersign_tenant_transactions", "Tenant-scoped transactions opened.", s.tenant_tx_total),
        (
            "countersign_cross_tenant_refused",
            "Cross-tenant writes and batches refused by this process since it started.",
            s.cross_tenant_refused_total,
        ),
        ("countersign_bypass_transactions", "Audited platform bypass transactions.", s.bypass_tx_total),
        ("countersign_global_transactions", "Identity transactions without tenant context.", s.global_tx_total),
        (
            "countersign_sign_in_rate_limited",
            "Sign-in attempts refused by the per-address budget.",
            crate::plumbing::limits::rate_limited_total(),
        ),
        (
            "countersign_credential_rate_limited",
            "Requests refused by the per-address budget of failed credentials.",
            crate::plumbing::limits::credential_rate_limited_total(),
        ),
        (
            "countersign_refusals",
            "Refused API keys and access denials, each counted (audited in aggregate).",
            crate::plumbing::refusals::refusals_total(),
        ),
        (
            "countersign_refusal_events",
            "Aggregated refusal events written to the ledger.",
            crate::plumbing::refusals::events_total(),
        ),
        (
            "countersign_suspicious_logins",
            "Accounts flagged for failed logins from many addresses.",
            identity::signin::suspicious::detected_total(),
        ),
        (
            "countersign_ip_allowlist_refused",
            "Requests refused by an organisation's IP allowlist.",
            crate::plumbing::ip_allowlist::refused_total(),
        ),
        (
            "countersign_db_pool_waits",
            "Transactions that found the application pool exhausted and waited for a connection.",
            store::metrics::pool_waits_total(),
        ),
        (
            "countersign_db_pool_timeouts",
            "Transactions that waited past --db-wait-ms for a connection and were answered 503.",
            store::metrics::pool_timeouts_total(),
        ),
        ("countersign_audit_events_appended", "Audit events this process appended.", audit::appended_total()),
        ("countersign_audit_verify_passes", "Chain-watch passes this process completed.", verify_passes),
        ("countersign_audit_events_verified", "Events recomputed by this process's chain-watch passes.", verified),
    ];
    for (name, help, value) in counters {
        r.register(name, help, ConstCounter::new(value));
    }
    let pool = state.store.pool_stats();
    let watch = audit::watch::last();
    let gauges: [(&str, &str, i64); 9] = [
        (
            "countersign_audit_chains_checked",
            "Audit chains recomputed by the newest chain-watch pass of this process.",
            gauge(watch.as_ref().map_or(0, |w| w.chains)),
        ),
        (
            "countersign_audit_chains_broken",
            "Audit chains the newest chain-watch pass found broken (0 is the only good value).",
            gauge(watch.as_ref().map_or(0, |w| w.broken)),
        ),
        (
            "countersign_tenant_transactions_today",
            "Tenant-scoped transactions since UTC midnight.",
            gauge(s.tenant_tx_today),
        ),
        (
            "countersign_cross_tenant_refused_today",
            "Cross-tenant attempts refused since UTC midnight, all nodes (shared in the database).",
            gauge(s.cross_tenant_refused_today),
        ),
        ("countersign_uptime_seconds", "Seconds since the server started.", gauge(state.started.elapsed().as_secs())),
        ("countersign_db_pool_connections", "Open connections in the application pool.", i64::from(pool.size)),
        ("countersign_db_pool_idle_connections", "Idle connections in the application pool.", gauge(pool.idle as u64)),
        ("countersign_db_pool_max_connections", "The application pool's size limit.", i64::from(pool.max)),
        ("process_resident_memory_bytes", "Resident memory of this process.", gauge(resident_bytes())),
    ];
    for (name, help, value) in gauges {
        r.register(name, help, ConstGauge::new(value));
    }
    r.register(
        "countersign_build",
        "The build this server runs: version and source commit.",
        Info::new([("version", env!("CARGO_PKG_VERSION")), ("git_sha", claims::COMMIT)]),
    );
    crate::plumbing::metrics::register(&mut r);
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &r).is_err() {
        return crate::ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "metrics could not be encoded")
            .into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out).into_response()
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Resident set size from /proc (0 where there is none).
fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .unwrap_or(0);
    pages * 4096
}
