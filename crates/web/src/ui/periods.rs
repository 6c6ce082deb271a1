//! `/periods`: the organisation's fiscal periods (finance, MD, admins, auditors), read through
//! `approvals::documents::periods`; opened (`POST /periods`), closed and reopened
//! (`POST /periods/{id}/close|reopen`) through `open_period` and `set_period_status`, the calls
//! `/api/v1/periods` makes. Each form shows only where the policy engine would permit this
//! person (finance opens and closes; only the MD reopens, with a reason); the domain decides
//! again, and a refusal is a page in words.

use askama::Template;
use askama_web::WebTemplate;
use authz::{Action, Resource};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::NaiveDate;
use uuid::Uuid;

use approvals::documents::{ApprovalError, Member};

use crate::api::documents::member;
use crate::plumbing::access::path_id;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::documents::refused;
use crate::ui::form::Fields;
use crate::ui::format;
use crate::ui::refusals::RefusalPage;
use crate::{ApiError, AppState, Principal};

#[derive(Debug, Clone)]
pub(crate) struct PeriodRow {
    pub id: String,
    pub name: String,
    pub starts: String,
    pub ends: String,
    pub status: &'static str,
    pub tone: &'static str,
    pub may_close: bool,
    pub may_reopen: bool,
    /// The reason typed into this row's form, and its error (after a refusal).
    pub reason: String,
    pub reason_error: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "periods.html")]
pub(crate) struct PeriodsPage {
    pub chrome: Chrome,
    pub periods: Vec<PeriodRow>,
    pub may_open: bool,
    pub name: String,
    pub starts_on: String,
    pub ends_on: String,
    /// Errors of the open form: `(field id, words)`.
    pub errors: Vec<(&'static str, String)>,
    pub notice: String,
    /// `success`, `warning` or `error`.
    pub notice_tone: &'static str,
}

impl PeriodsPage {
    pub(crate) fn error_of(&self, id: &str) -> String {
        self.errors.iter().find(|(f, _)| *f == id).map(|(_, w)| w.clone()).unwrap_or_default()
    }

    pub(crate) fn focus(&self, id: &str) -> bool {
        self.errors.first().is_some_and(|(f, _)| *f == id)
    }
}

/// Whether the engine would let `m` take `action` on a period in `status` (the forms shown; a
/// reopen is asked with a reason, which it needs).
fn may(state: &AppState, m: &Member, action: Action, id: Uuid, status: &'static str) -> bool {
    let reason = if action == Action::PeriodReopen { "a reason" } else { "" };
    let r = Resource::Period { tenant: m.subject.tenant, id, status, reason };
    state.authz.decide(&m.subject, action, &r).is_ok()
}

/// What the page shows besides the list; `fill` adjusts it after a refusal.
struct Extra {
    name: String,
    starts_on: String,
    ends_on: String,
    errors: Vec<(&'static str, String)>,
    notice: String,
    notice_tone: &'static str,
    /// A row's reason and its error: `(period id, typed, error)`.
    row: Option<(Uuid, String, String)>,
}

impl Extra {
    fn none() -> Self {
        Self {
            name: String::new(),
            starts_on: String::new(),
            ends_on: String::new(),
            errors: Vec::new(),
            notice: String::new(),
            notice_tone: "success",
            row: None,
        }
    }
}

async fn render(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    extra: Extra,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    let any = Resource::Period { tenant: m.subject.tenant, id: Uuid::nil(), status: "open", reason: "" };
    if state.authz.decide(&m.subject, Action::PeriodRead, &any).is_err() {
        return Err(ApiError::forbidden().with_details(serde_json::json!({ "action": Action::PeriodRead.as_str() })));
    }
    let periods = match approvals::documents::periods(&mut tx, &state.authz, &m).await {
        Ok(list) => list,
        Err(e) => return Err(refused(state, p, "GET /periods", tx, e).await),
    };
    let chrome = Chrome::member(state, &mut tx, &m, headers, Section::Periods).await?;
    p.checked.mark();
    tx.commit().await?;
    let periods = periods
        .into_iter()
        .map(|x| {
            let closed = x.status == "closed";
            let (reason, reason_error) = match &extra.row {
                Some((id, typed, error)) if *id == x.id => (typed.clone(), error.clone()),
                _ => (String::new(), String::new()),
            };
            PeriodRow {
                id: x.id.to_string(),
                may_close: !closed && may(state, &m, Action::PeriodClose, x.id, "open"),
                may_reopen: closed && may(state, &m, Action::PeriodReopen, x.id, "closed"),
                name: x.name,
                starts: format::date(x.starts_on),
                ends: format::date(x.ends_on),
                status: if closed { "Closed" } else { "Open" },
                tone: if closed { "neutral" } else { "done" },
                reason,
                reason_error,
            }
        })
        .collect();
    let page = PeriodsPage {
        chrome,
        periods,
        may_open: may(state, &m, Action::PeriodOpen, Uuid::nil(), "open"),
        name: extra.name,
        starts_on: extra.starts_on,
        ends_on: extra.ends_on,
        errors: extra.errors,
        notice: extra.notice,
        notice_tone: extra.notice_tone,
    };
    Ok((status, page).into_response())
}

/// `GET /periods`
pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let notice = match q.get("done") {
        "opened" => "The period is open: documents dated in it can be raised and decided.",
        "closed" => "The period is closed: documents dated in it can no longer change. Only the MD can reopen it.",
        "reopened" => "The period is open again; your reason is in the audit trail.",
        _ => "",
    };
    let extra = Extra { notice: notice.to_owned(), ..Extra::none() };
    render(&state, &p, &headers, extra, StatusCode::OK).await
}

fn day(field: &'static str, text: &str, errors: &mut Vec<(&'static str, String)>) -> Option<NaiveDate> {
    let d = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
    if d.is_none() {
        errors.push((field, "Enter a real date, like 2026-01-01.".to_owned()));
    }
    d
}

/// `POST /periods` {name, starts_on, ends_on, csrf_token} (finance)
pub async fn open(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let mut extra = Extra {
        name: f.get("name").to_owned(),
        starts_on: f.get("starts_on").to_owned(),
        ends_on: f.get("ends_on").to_owned(),
        ..Extra::none()
    };
    if extra.name.is_empty() {
        extra.errors.push(("period-name", "Name the period, like 2026-Q2 or March 2026.".to_owned()));
    }
    let starts = day("period-starts", &extra.starts_on, &mut extra.errors);
    let ends = day("period-ends", &extra.ends_on, &mut extra.errors);
    let (Some(starts), Some(ends), true) = (starts, ends, extra.errors.is_empty()) else {
        return render(&state, &p, &headers, extra, StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    match approvals::documents::open_period(&mut tx, &state.authz, &m, &extra.name, starts, ends).await {
        Ok(_) => {
            p.checked.mark();
            tx.commit().await?;
            Ok(Redirect::to("/periods?done=opened").into_response())
        }
        Err(ApprovalError::Invalid { field, reason }) => {
            drop(tx);
            let id = match field {
                "name" => "period-name",
                "ends_on" => "period-ends",
                _ => "period-starts",
            };
            let words = match field {
                "ends_on" if reason.contains("before") => "The last day must not be before the first day.".to_owned(),
                "name" => "Name the period in 1 to 100 characters.".to_owned(),
                _ => format!("This date cannot be used: {reason}."),
            };
            extra.errors.push((id, words));
            render(&state, &p, &headers, extra, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(ApprovalError::Conflict(message)) => {
            drop(tx);
            extra.notice = format!("Nothing was opened: this period {message}. Periods never overlap.");
            extra.notice_tone = "error";
            render(&state, &p, &headers, extra, StatusCode::CONFLICT).await
        }
        Err(e) => Err(refused(&state, &p, "POST /periods", tx, e).await),
    }
}

/// `POST /periods/{id}/close` {reason?, csrf_token} (finance)
pub async fn close(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    set_status(&state, &p, &headers, &id, &body, true).await
}

/// `POST /periods/{id}/reopen` {reason, csrf_token} (MD only)
pub async fn reopen(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    set_status(&state, &p, &headers, &id, &body, false).await
}

async fn set_status(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
    close: bool,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let f = Fields::parse(body)?;
    let reason = f.get("reason").to_owned();
    let route = if close { "POST /periods/{id}/close" } else { "POST /periods/{id}/reopen" };
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    let given = (!reason.is_empty()).then_some(reason.as_str());
    match approvals::documents::set_period_status(&mut tx, &state.authz, &m, id, close, given).await {
        Ok(_) => {
            p.checked.mark();
            tx.commit().await?;
            Ok(Redirect::to(if close { "/periods?done=closed" } else { "/periods?done=reopened" }).into_response())
        }
        Err(ApprovalError::Invalid { .. }) => {
            drop(tx);
            let extra = Extra {
                notice: "Nothing was changed: see the reason below.".into(),
                notice_tone: "error",
                row: Some((id, reason, "Say why it must reopen, in 3 to 500 characters.".into())),
                ..Extra::none()
            };
            render(state, p, headers, extra, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(ApprovalError::Conflict(message)) => {
            drop(tx);
            let extra = Extra {
                notice: format!("Nothing was changed: {message} (someone may have acted first)."),
                notice_tone: "warning",
                ..Extra::none()
            };
            render(state, p, headers, extra, StatusCode::CONFLICT).await
        }
        Err(e @ ApprovalError::Denied(_)) => {
            // Audited like the API's refusal, then said in words.
            let e = refused(state, p, route, tx, e).await;
            let (heading, why) = if close {
                ("Only finance can close a period", "Closing a fiscal period is finance's sign-off.")
            } else {
                (
                    "Only the MD can reopen a closed period",
                    "Reopening a closed period needs the managing director, with a reason.",
                )
            };
            let page = RefusalPage {
                chrome: Chrome::public(String::new()),
                heading: heading.into(),
                explanation: format!("{why} Nothing was changed, and the attempt was recorded."),
                hint: "Ask them if the period must change.".into(),
                request_id: headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned(),
            };
            Ok((e.status, page).into_response())
        }
        Err(e) => Err(refused(state, p, route, tx, e).await),
    }
}
