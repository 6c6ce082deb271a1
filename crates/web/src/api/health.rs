//! Liveness, readiness, Prometheus metrics and the JSON isolation status.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::AppState;

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
        uptime_seconds: state.started.elapsed().as_secs(),
        summary: format!(
            "{} tenant transactions today (this node), {} cross-tenant attempts refused today (all nodes)",
            iso.tenant_tx_today, iso.cross_tenant_refused_today
        ),
        isolation: iso,
    })
}

/// Prometheus text exposition format 0.0.4.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let s = state.store.isolation().await;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    metric("countersign_tenant_transactions_total", "counter", "Tenant-scoped transactions opened.", s.tenant_tx_total);
    metric(
        "countersign_cross_tenant_refused_total",
        "counter",
        "Cross-tenant writes and batches refused by this process since it started.",
        s.cross_tenant_refused_total,
    );
    metric(
        "countersign_bypass_transactions_total",
        "counter",
        "Audited platform bypass transactions.",
        s.bypass_tx_total,
    );
    metric(
        "countersign_global_transactions_total",
        "counter",
        "Identity transactions without tenant context.",
        s.global_tx_total,
    );
    metric(
        "countersign_tenant_transactions_today",
        "gauge",
        "Tenant-scoped transactions since UTC midnight.",
        s.tenant_tx_today,
    );
    metric(
        "countersign_cross_tenant_refused_today",
        "gauge",
        "Cross-tenant attempts refused since UTC midnight, all nodes (shared in the database).",
        s.cross_tenant_refused_today,
    );
    metric(
        "countersign_sign_in_rate_limited_total",
        "counter",
        "Sign-in attempts refused by the per-address budget.",
        crate::plumbing::limits::rate_limited_total(),
    );
    metric(
        "countersign_credential_rate_limited_total",
        "counter",
        "Requests refused by the per-address budget of failed credentials.",
        crate::plumbing::limits::credential_rate_limited_total(),
    );
    metric(
        "countersign_refusals_total",
        "counter",
        "Refused API keys and access denials, each counted (audited in aggregate).",
        crate::plumbing::refusals::refusals_total(),
    );
    metric(
        "countersign_refusal_events_total",
        "counter",
        "Aggregated refusal events written to the ledger.",
        crate::plumbing::refusals::events_total(),
    );
    metric(
        "countersign_suspicious_logins_total",
        "counter",
        "Accounts flagged for failed logins from many addresses.",
        identity::signin::suspicious::detected_total(),
    );
    metric(
        "countersign_ip_allowlist_refused_total",
        "counter",
        "Requests refused by an organisation's IP allowlist.",
        crate::plumbing::ip_allowlist::refused_total(),
    );
    metric(
        "countersign_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        state.started.elapsed().as_secs(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response()
}
