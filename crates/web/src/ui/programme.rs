//! `/programme`: the partner programme's opportunities and commissions, for vendor staff (every
//! partner's), finance (commissions) and partner people (their own company's only). The rows are
//! read in a `Store::program_tx` opened with the person's own id, so the database decides which
//! partner's rows exist for them, exactly as for `/api/v1/programme/…`.

use askama::Template;
use askama_web::WebTemplate;
use authz::{Action, Resource};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use programs::commissions::CommissionStatus;
use programs::opportunities::Stage;
use store::ProgramScope;

use crate::api::documents::member;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::format;
use crate::{ApiError, AppState, Principal};

#[derive(Debug, Clone)]
pub(crate) struct OpportunityRow {
    pub name: String,
    pub product: String,
    pub amount: String,
    pub expected_close: String,
    pub stage: &'static str,
    pub tone: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct CommissionRow {
    pub id: String,
    pub base: String,
    pub amount: String,
    pub status: &'static str,
    pub tone: &'static str,
    pub calculated: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "programme.html")]
pub(crate) struct ProgrammePage {
    pub chrome: Chrome,
    pub show_opportunities: bool,
    pub opportunities: Vec<OpportunityRow>,
    pub commissions: Vec<CommissionRow>,
}

fn stage(s: Stage) -> (&'static str, &'static str) {
    match s {
        Stage::Qualified => ("Qualified", "neutral"),
        Stage::Proposal => ("Proposal", "waiting"),
        Stage::Negotiation => ("Negotiation", "waiting"),
        Stage::Won => ("Won", "done"),
        Stage::Lost => ("Lost", "refused"),
    }
}

fn status(s: CommissionStatus) -> (&'static str, &'static str) {
    match s {
        CommissionStatus::Calculated => ("Calculated", "waiting"),
        CommissionStatus::Approved => ("Approved", "waiting"),
        CommissionStatus::Payable => ("Payable", "waiting"),
        CommissionStatus::Paid => ("Paid", "done"),
        CommissionStatus::Disputed => ("Disputed", "attention"),
    }
}

/// `GET /programme` (whoever may read commissions; opportunities shown to those who may read them).
pub async fn show(State(state): State<AppState>, p: Principal, headers: HeaderMap) -> Result<Response, ApiError> {
    let user = p.person().map_or(uuid::Uuid::nil(), |person| person.user);
    let mut tx = state.store.program_tx(p.tenant, ProgramScope::Member(user)).await?;
    let m = member(&p, &mut tx).await?;
    let org = Resource::Organisation { tenant: m.subject.tenant };
    let show_opportunities = state.authz.decide(&m.subject, Action::OpportunityRead, &org).is_ok();
    let opportunities = if show_opportunities {
        programs::opportunities::list(&mut tx, 200).await.map_err(ApiError::from)?
    } else {
        Vec::new()
    };
    let commissions = programs::commissions::list(&mut tx, 200).await.map_err(ApiError::from)?;
    let chrome = Chrome::member(&state, &mut tx, &m, &headers, Section::Programme).await?;
    tx.commit().await?;
    let opportunities = opportunities
        .into_iter()
        .map(|o| {
            let (stage, tone) = stage(o.stage);
            OpportunityRow {
                amount: format::amount(o.amount_minor, &o.currency),
                expected_close: format::date(o.expected_close),
                name: o.name,
                product: o.product,
                stage,
                tone,
            }
        })
        .collect();
    let commissions = commissions
        .into_iter()
        .map(|c| {
            let (status, tone) = status(c.status);
            CommissionRow {
                id: c.id.to_string(),
                base: format::amount(c.base_minor, &c.currency),
                amount: format::amount(c.amount_minor, &c.currency),
                status,
                tone,
                calculated: format::moment(c.created_at),
            }
        })
        .collect();
    Ok((StatusCode::OK, ProgrammePage { chrome, show_opportunities, opportunities, commissions }).into_response())
}
