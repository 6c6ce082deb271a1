//! The inbox (home, `/`) and the documents list (`/documents`): "waiting for me" with counts per
//! kind, "raised by me", everything this person may read; a status filter; keyset "next".
//! The rows are `approvals::inbox::list`'s, which puts every row to the policy engine: a list can
//! never show what the document page would refuse.

use std::collections::HashMap;

use approvals::Status;
use approvals::documents::Kind;
use approvals::inbox::{self, Filter, View};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use identity::Role;
use uuid::Uuid;

use crate::api::documents::member;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::documents::refused;
use crate::ui::form::{Fields, encode};
use crate::ui::format;
use crate::{ApiError, AppState, Principal};

/// Rows per page.
const PAGE: i64 = 25;
/// How far the "waiting" counts look (beyond it they say "200+").
const COUNT_LIMIT: i64 = 200;

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub href: String,
    pub reference: String,
    pub title: String,
    pub kind: &'static str,
    pub department: String,
    pub date: String,
    pub amount: String,
    pub currency: String,
    pub status: &'static str,
    pub tone: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct Tab {
    pub label: String,
    pub href: String,
    pub current: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct StatusOption {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "inbox.html")]
pub(crate) struct InboxPage {
    pub chrome: Chrome,
    pub heading: &'static str,
    pub tabs: Vec<Tab>,
    /// "3 payment vouchers and 1 purchase order wait for you" (the waiting view only).
    pub summary: String,
    pub view: &'static str,
    pub statuses: Vec<StatusOption>,
    /// The active status filter in words, and the link that removes it.
    pub filter_label: String,
    pub clear_filter: String,
    pub rows: Vec<Row>,
    pub empty: String,
    pub next: String,
}

/// `GET /?view=waiting|raised&status=&cursor=` — the inbox.
pub async fn home(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    list_page(&state, &p, &headers, q.as_deref(), Section::Inbox).await
}

/// `GET /documents?status=&cursor=` — every document this person may read.
pub async fn all(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    list_page(&state, &p, &headers, q.as_deref(), Section::Documents).await
}

fn unprocessable(field: &str, message: &str) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", format!("{field}: {message}"))
}

async fn list_page(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    query: Option<&str>,
    section: Section,
) -> Result<Response, ApiError> {
    let q = Fields::parse(query.unwrap_or_default().as_bytes())?;
    let (view, base) = match (section, q.get("view")) {
        (Section::Documents, _) => (View::All, "/documents"),
        (_, "raised") => (View::Raised, "/"),
        _ => (View::Waiting, "/"),
    };
    let status = match q.get("status") {
        "" => None,
        s => Some(s.parse::<Status>().map_err(|_| unprocessable("status", "not a document status"))?),
    };
    let cursor = match q.get("cursor") {
        "" => None,
        c => Some(Uuid::try_parse(c).map_err(|_| unprocessable("cursor", "not a page of this list"))?),
    };
    let route = if section == Section::Documents { "GET /documents" } else { "GET /" };
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    let filter = Filter { view, status, cursor, limit: PAGE, ..Filter::default() };
    let page = match inbox::list(&mut tx, &state.authz, &m, &filter).await {
        Ok(page) => page,
        Err(e) => return Err(refused(state, p, route, tx, e).await),
    };
    let waiting = if view == View::Waiting {
        let all_waiting = Filter { view: View::Waiting, limit: COUNT_LIMIT, ..Filter::default() };
        match inbox::list(&mut tx, &state.authz, &m, &all_waiting).await {
            Ok(w) => Some(w),
            Err(e) => return Err(refused(state, p, route, tx, e).await),
        }
    } else {
        None
    };
    let departments: HashMap<Uuid, String> =
        identity::departments::list(&mut tx, None, 500).await?.into_iter().map(|d| (d.id, d.name)).collect();
    let chrome = Chrome::member(state, &mut tx, &m, headers, section).await?;
    p.checked.mark();
    tx.commit().await?;

    let view_name = match view {
        View::Waiting => "waiting",
        View::Raised => "raised",
        View::All => "all",
    };
    let status_param = status.map(|s| format!("&status={}", s.as_str())).unwrap_or_default();
    let next = page
        .next_cursor
        .map(|c| format!("{base}?view={view_name}{status_param}&cursor={}", encode(&c.to_string())))
        .unwrap_or_default();
    let rows = page
        .items
        .iter()
        .map(|d| Row {
            href: format!("/documents/{}", d.id),
            reference: format::reference(d.kind, d.id),
            title: d.title.clone(),
            kind: format::kind(d.kind),
            department: departments.get(&d.department_id).cloned().unwrap_or_default(),
            date: format::date(d.document_date),
            amount: format::amount(d.amount_minor, &d.currency),
            currency: d.currency.clone(),
            status: format::status(d.status),
            tone: format::status_tone(d.status),
        })
        .collect();
    let summary = waiting.map(|w| summary(&w.items, w.next_cursor.is_some())).unwrap_or_default();
    let tabs = if section == Section::Inbox {
        vec![
            Tab { label: "Waiting for me".into(), href: "/".into(), current: view == View::Waiting },
            Tab { label: "Raised by me".into(), href: "/?view=raised".into(), current: view == View::Raised },
        ]
    } else {
        Vec::new()
    };
    let statuses = Status::ALL
        .iter()
        .map(|s| StatusOption { value: s.as_str(), label: format::status(*s), selected: Some(*s) == status })
        .collect();
    let empty = empty_words(view, status, m.subject.role, chrome.may_raise);
    let page = InboxPage {
        chrome,
        heading: if section == Section::Inbox { "Inbox" } else { "Documents" },
        tabs,
        summary,
        view: view_name,
        statuses,
        filter_label: status.map(|s| format!("Status: {}", format::status(s))).unwrap_or_default(),
        clear_filter: if view == View::All { base.to_owned() } else { format!("{base}?view={view_name}") },
        rows,
        empty,
        next,
    };
    Ok(page.into_response())
}

/// "2 payment vouchers and 1 purchase order wait for you."
fn summary(items: &[inbox::Item], more: bool) -> String {
    let vouchers = items.iter().filter(|i| i.kind == Kind::Voucher).count();
    let orders = items.len() - vouchers;
    if items.is_empty() {
        return "Nothing waits for you.".to_owned();
    }
    let plus = if more { "+" } else { "" };
    let count = |n: usize, one: &str, many: &str| format!("{n}{plus} {}", if n == 1 { one } else { many });
    let parts: Vec<String> =
        [(vouchers, "payment voucher", "payment vouchers"), (orders, "purchase order", "purchase orders")]
            .into_iter()
            .filter(|(n, ..)| *n > 0)
            .map(|(n, one, many)| count(n, one, many))
            .collect();
    let verb = if items.len() == 1 && !more { "waits" } else { "wait" };
    format!("{} {verb} for you.", parts.join(" and "))
}

/// What would appear in an empty list, and how.
fn empty_words(view: View, status: Option<Status>, role: Role, may_raise: bool) -> String {
    if let Some(s) = status {
        return format!("No documents here are “{}”. Clear the filter to see them all.", format::status(s));
    }
    match view {
        View::Waiting => {
            let yours = match role {
                Role::Hod => "As head of department, documents your department submits appear here for your approval.",
                Role::Finance => {
                    "As finance, documents a head of department approved appear here for your review, and approved ones for payment."
                }
                Role::Md => "As managing director, documents above your organisation's MD threshold appear here after finance.",
                _ => "Documents you raised appear here when an approver asks you a question.",
            };
            format!("Nothing waits for you. {yours}")
        }
        View::Raised if may_raise => {
            "You have not raised any documents yet. Raise a payment voucher or purchase order with “Raise a document”.".to_owned()
        }
        View::Raised => "You have not raised any documents, and your role does not raise them.".to_owned(),
        View::All => "There are no documents you may see yet. Documents raised in your organisation appear here as your role allows.".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: Kind) -> inbox::Item {
        inbox::Item {
            id: Uuid::nil(),
            kind,
            department_id: Uuid::nil(),
            raised_by: Uuid::nil(),
            title: String::new(),
            document_date: chrono::NaiveDate::default(),
            currency: "EUR".into(),
            amount_minor: 1,
            status: Status::Submitted,
            version: 1,
            number: String::new(),
        }
    }

    #[test]
    fn the_summary_counts_each_kind_in_words() {
        assert_eq!(summary(&[], false), "Nothing waits for you.");
        assert_eq!(summary(&[item(Kind::Voucher)], false), "1 payment voucher waits for you.");
        let mixed = [item(Kind::Voucher), item(Kind::Voucher), item(Kind::PurchaseOrder)];
        assert_eq!(summary(&mixed, false), "2 payment vouchers and 1 purchase order wait for you.");
        assert_eq!(summary(&mixed[..1], true), "1+ payment voucher wait for you.");
    }
}
