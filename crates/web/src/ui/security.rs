//! `/security` (public): the security matrix — every control the seed pages state, with its
//! status and, for those in place, the tests that attack it — with the build's commit and live
//! figures. The same data as `GET /api/v1/security` (`crate::security::matrix`); no tenant data.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::api::security::{ClaimStatus, SecurityMatrix, matrix};
use crate::ui::chrome::Chrome;
use crate::ui::format;
use crate::{ApiError, AppState};

#[derive(Debug, Clone)]
pub(crate) struct ControlRow {
    pub id: String,
    pub seed: String,
    pub topic: String,
    pub claim: String,
    pub status: &'static str,
    pub tone: &'static str,
    pub how: String,
    pub tests: Vec<String>,
    pub issue: String,
}

#[derive(Debug, Clone)]
pub(crate) struct GuaranteeRow {
    pub id: String,
    pub claim: String,
    pub status: &'static str,
    pub tone: &'static str,
    pub tests: Vec<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "security.html")]
pub(crate) struct SecurityPage {
    pub chrome: Chrome,
    pub commit: String,
    pub version: String,
    pub in_place: usize,
    pub partial: usize,
    pub not_yet: usize,
    pub total: usize,
    pub day: String,
    pub tenant_transactions: u64,
    pub cross_tenant_refused: u64,
    pub shared: bool,
    pub checkpoints_signed: u64,
    pub last_checkpoint: String,
    /// "12 of 12 chains intact (48,210 events), 5 Dec 2026, 10:04 UTC", or why there is none.
    pub chains: String,
    pub guarantees: Vec<GuaranteeRow>,
    pub controls: Vec<ControlRow>,
}

fn status(s: ClaimStatus) -> (&'static str, &'static str) {
    match s {
        ClaimStatus::InPlace => ("In place", "done"),
        ClaimStatus::Partial => ("Partial", "attention"),
        ClaimStatus::NotYet => ("Not yet", "neutral"),
    }
}

/// The page for a matrix (tests render it with fixed figures).
pub(crate) fn render(m: SecurityMatrix) -> SecurityPage {
    SecurityPage {
        chrome: Chrome::public(String::new()),
        commit: m.commit,
        version: m.version,
        in_place: m.counts.in_place,
        partial: m.counts.partial,
        not_yet: m.counts.not_yet,
        total: m.counts.total,
        day: format::date(m.live.day),
        tenant_transactions: m.live.tenant_transactions_today,
        cross_tenant_refused: m.live.cross_tenant_refused_today,
        shared: m.live.shared,
        checkpoints_signed: m.live.checkpoints_signed,
        last_checkpoint: m
            .live
            .last_checkpoint_at
            .map_or_else(|| "none since this server started".to_owned(), format::moment),
        chains: m.live.chains.map_or_else(
            || "not yet recomputed since this server started".to_owned(),
            |c| {
                let intact = c.chains.saturating_sub(c.broken);
                let broken = if c.broken > 0 { format!(" — {} BROKEN", c.broken) } else { String::new() };
                format!(
                    "{intact} of {} chains intact ({} events), {}{broken}",
                    c.chains,
                    c.events,
                    format::moment(c.verified_at)
                )
            },
        ),
        guarantees: m
            .guarantees
            .into_iter()
            .map(|g| {
                let (status, tone) = status(g.status);
                GuaranteeRow { id: g.id, claim: g.claim, status, tone, tests: g.tests }
            })
            .collect(),
        controls: m
            .controls
            .into_iter()
            .map(|c| {
                let (status, tone) = status(c.status);
                ControlRow {
                    id: c.id,
                    seed: c.seed,
                    topic: c.topic,
                    claim: c.claim,
                    status,
                    tone,
                    how: c.how,
                    tests: c.tests,
                    issue: c.issue.map(|i| format!("issue {i}")).unwrap_or_default(),
                }
            })
            .collect(),
    }
}

/// `GET /security`
pub async fn page(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(render(matrix(&state).await?).into_response())
}
