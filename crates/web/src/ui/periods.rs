//! `/periods`: the organisation's fiscal periods (finance, MD, admins, auditors), read through
//! `approvals::documents::periods`. Opening, closing and reopening are not on this page yet:
//! they are the API's (`/api/v1/periods`).

use askama::Template;
use askama_web::WebTemplate;
use authz::{Action, Resource};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::api::documents::member;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::documents::refused;
use crate::ui::format;
use crate::{ApiError, AppState, Principal};

#[derive(Debug, Clone)]
pub(crate) struct PeriodRow {
    pub name: String,
    pub starts: String,
    pub ends: String,
    pub status: &'static str,
    pub tone: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "periods.html")]
pub(crate) struct PeriodsPage {
    pub chrome: Chrome,
    pub periods: Vec<PeriodRow>,
}

/// `GET /periods`
pub async fn list(State(state): State<AppState>, p: Principal, headers: HeaderMap) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let any = Resource::Period { tenant: m.subject.tenant, id: uuid::Uuid::nil(), status: "open", reason: "" };
    if state.authz.decide(&m.subject, Action::PeriodRead, &any).is_err() {
        return Err(ApiError::forbidden().with_details(serde_json::json!({ "action": Action::PeriodRead.as_str() })));
    }
    let periods = match approvals::documents::periods(&mut tx, &state.authz, &m).await {
        Ok(list) => list,
        Err(e) => return Err(refused(&state, &p, "GET /periods", tx, e).await),
    };
    let chrome = Chrome::member(&state, &mut tx, &m, &headers, Section::Periods).await?;
    p.checked.mark();
    tx.commit().await?;
    let periods = periods
        .into_iter()
        .map(|x| {
            let closed = x.status == "closed";
            PeriodRow {
                name: x.name,
                starts: format::date(x.starts_on),
                ends: format::date(x.ends_on),
                status: if closed { "Closed" } else { "Open" },
                tone: if closed { "neutral" } else { "done" },
            }
        })
        .collect();
    Ok(PeriodsPage { chrome, periods }.into_response())
}
