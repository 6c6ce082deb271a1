//! `GET /api/v1/security`: the security matrix from `security/controls.toml` (the `claims`
//! crate) with live figures — the commit this server was built from, today's tenant
//! transactions and cross-tenant refusals, this node's audit checkpoints and its newest
//! recomputation of every audit chain. Counters and claims
//! only: no tenant id, name or row.
//!
//! Pages call [`matrix`] for the same data.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{ApiError, AppState};

/// The matrix and the live figures.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SecurityMatrix {
    /// The git commit this server was built from, or `unknown` (built outside a checkout).
    pub commit: String,
    pub version: String,
    /// The seed pages' controls per status.
    pub counts: StatusCounts,
    pub live: LiveFigures,
    pub areas: Vec<AreaView>,
    /// Countersign's own guarantees, each with the tests that attack it.
    pub guarantees: Vec<GuaranteeView>,
    /// Every control the five seed security pages state, with our status.
    pub controls: Vec<ControlView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    InPlace,
    Partial,
    NotYet,
}

impl From<claims::Status> for ClaimStatus {
    fn from(s: claims::Status) -> Self {
        match s {
            claims::Status::InPlace => Self::InPlace,
            claims::Status::Partial => Self::Partial,
            claims::Status::NotYet => Self::NotYet,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct StatusCounts {
    pub in_place: usize,
    pub partial: usize,
    pub not_yet: usize,
    pub total: usize,
}

/// Figures read when the request is answered.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct LiveFigures {
    /// The UTC day the daily figures count.
    pub day: NaiveDate,
    /// Tenant-scoped transactions opened today by this node.
    pub tenant_transactions_today: u64,
    /// Attempts refused today because they crossed tenants, by every node on this database.
    pub cross_tenant_refused_today: u64,
    /// `false` when the shared figure could not be read: `cross_tenant_refused_today` is then
    /// this node's own count.
    pub shared: bool,
    /// Audit checkpoints this node signed since it started.
    pub checkpoints_signed: u64,
    /// When this node last signed one (`null`: not since it started).
    pub last_checkpoint_at: Option<DateTime<Utc>>,
    /// This node's newest recomputation of every audit chain (`null`: none finished since it
    /// started; `serve --chain-watch-interval`).
    pub chains: Option<ChainWatch>,
    pub uptime_seconds: u64,
}

/// The outcome of the newest pass that recomputed every audit chain.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct ChainWatch {
    pub verified_at: DateTime<Utc>,
    /// Chains recomputed: every organisation's and the platform's.
    pub chains: u64,
    pub events: u64,
    /// Chains found broken (an edited, missing or reordered event; a head or signed checkpoint
    /// that disagrees).
    pub broken: u64,
    /// Chains with checkpoints by a key this server does not hold.
    pub unverified: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AreaView {
    pub id: String,
    pub title: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GuaranteeView {
    pub id: String,
    pub area: String,
    pub status: ClaimStatus,
    /// Markdown.
    pub claim: String,
    /// Markdown: where in the code.
    pub how: String,
    /// `<file>.rs::<test fn>`.
    pub tests: Vec<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ControlView {
    /// `s<seed>-<nn>`.
    pub id: String,
    pub seed: String,
    pub topic: String,
    pub claim: String,
    pub status: ClaimStatus,
    pub how: String,
    /// Guarantees that back it.
    pub guarantees: Vec<String>,
    /// Every test that attacks it: its own and its guarantees'.
    pub tests: Vec<String>,
    /// The issue that plans what is missing.
    pub issue: Option<u32>,
}

/// The matrix with today's figures.
///
/// # Errors
/// 500 `internal` if the embedded manifest does not parse (tests/security_manifest.rs keeps it
/// parsing).
pub async fn matrix(state: &AppState) -> Result<SecurityMatrix, ApiError> {
    let m = claims::manifest().map_err(|e| {
        tracing::error!(error = %e, "the security manifest does not parse");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the security manifest could not be read")
    })?;
    let iso = state.store.isolation().await;
    let ledger = audit::checkpoint::activity();
    let counts = m.counts();
    Ok(SecurityMatrix {
        commit: claims::COMMIT.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        counts: StatusCounts {
            in_place: counts.in_place,
            partial: counts.partial,
            not_yet: counts.not_yet,
            total: counts.total(),
        },
        live: LiveFigures {
            day: iso.day,
            tenant_transactions_today: iso.tenant_tx_today,
            cross_tenant_refused_today: iso.cross_tenant_refused_today,
            shared: iso.shared,
            checkpoints_signed: ledger.signed,
            last_checkpoint_at: ledger.last_signed_at,
            chains: audit::watch::last().map(|w| ChainWatch {
                verified_at: w.at,
                chains: w.chains,
                events: w.events,
                broken: w.broken,
                unverified: w.unverified,
            }),
            uptime_seconds: state.started.elapsed().as_secs(),
        },
        areas: m.areas.iter().map(|a| AreaView { id: a.id.clone(), title: a.title.clone() }).collect(),
        guarantees: m
            .guarantees
            .iter()
            .map(|g| GuaranteeView {
                id: g.id.clone(),
                area: g.area.clone(),
                status: g.status.into(),
                claim: g.claim.clone(),
                how: g.how.clone(),
                tests: g.tests.clone(),
                note: g.note.clone(),
            })
            .collect(),
        controls: m
            .controls
            .iter()
            .map(|c| ControlView {
                id: c.id.clone(),
                seed: c.seed.clone(),
                topic: c.topic.clone(),
                claim: c.claim.clone(),
                status: c.status.into(),
                how: c.how.clone(),
                guarantees: c.guarantees.clone(),
                tests: m.tests_of(c).into_iter().map(str::to_owned).collect(),
                issue: c.issue,
            })
            .collect(),
    })
}

/// `GET /api/v1/security`.
pub async fn security(State(state): State<AppState>) -> Result<Json<SecurityMatrix>, ApiError> {
    matrix(&state).await.map(Json)
}
