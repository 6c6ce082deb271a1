//! The inbox (home, `/`) and the documents list (`/documents`): "waiting for me" with counts per
//! kind, "raised by me", everything this person may read; filters by status, kind, department,
//! dates and amounts as a GET form (a bookmarkable URL; a wrong value is a 422 page saying which);
//! keyset "next" from the domain's cursor and "previous" from the cursors carried in the URL;
//! checkboxes for bulk approval (`crate::ui::bulk`).
//! The rows are `approvals::inbox::list`'s, which puts every row to the policy engine: a list can
//! never show what the document page would refuse.

use std::collections::HashMap;

use approvals::documents::{ApprovalError, Kind};
use approvals::inbox::{self, Filter, View};
use approvals::{Currency, Status};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
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
    pub id: String,
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
    /// `id:version` when this row can be approved in bulk (empty otherwise).
    pub bulk: String,
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

#[derive(Debug, Clone)]
pub(crate) struct FilterOption {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// An active filter as a removable chip.
#[derive(Debug, Clone)]
pub(crate) struct Chip {
    pub label: String,
    pub remove: String,
}

/// "Payment vouchers: 3", linking to the waiting list of that kind.
#[derive(Debug, Clone)]
pub(crate) struct KindCount {
    pub label: &'static str,
    pub count: String,
    pub href: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "inbox.html")]
pub(crate) struct InboxPage {
    pub chrome: Chrome,
    pub heading: &'static str,
    pub tabs: Vec<Tab>,
    /// "3 payment vouchers and 1 purchase order wait for you" (the waiting view only).
    pub summary: String,
    pub counts: Vec<KindCount>,
    pub view: &'static str,
    pub base: &'static str,
    pub statuses: Vec<StatusOption>,
    pub kinds: Vec<FilterOption>,
    pub departments: Vec<FilterOption>,
    /// The filters as typed (kept on a refusal).
    pub from: String,
    pub to: String,
    pub min: String,
    pub max: String,
    pub currency: String,
    pub chips: Vec<Chip>,
    pub clear_filters: String,
    /// A filter's error: `(field id, words)`; the first wrong field has the focus.
    pub errors: Vec<(&'static str, String)>,
    pub rows: Vec<Row>,
    /// Whether the rows carry bulk-approval checkboxes.
    pub bulk: bool,
    pub empty: String,
    pub next: String,
    pub prev: String,
}

impl InboxPage {
    /// The error under field `id`, or `""`.
    pub(crate) fn error_of(&self, id: &str) -> String {
        self.errors.iter().find(|(f, _)| *f == id).map(|(_, w)| w.clone()).unwrap_or_default()
    }

    /// Whether field `id` has the focus (the first wrong field).
    pub(crate) fn focus(&self, id: &str) -> bool {
        self.errors.first().is_some_and(|(f, _)| *f == id)
    }
}

/// `GET /?view=waiting|raised&status=&kind=&department=&from=&to=&min=&max=&currency=&cursor=&trail=`
/// — the inbox.
pub async fn home(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    list_page(&state, &p, &headers, q.as_deref(), Section::Inbox).await
}

/// `GET /documents?…` (the same filters) — every document this person may read.
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

/// The filter parameters, in the order of the form (`cursor` and `trail` are the pager's).
const PARAMS: [&str; 9] = ["view", "status", "kind", "department", "from", "to", "min", "max", "currency"];

/// The filters of one list, as typed and as parsed.
struct Filters {
    typed: Vec<(&'static str, String)>,
    filter: Filter,
    errors: Vec<(&'static str, String)>,
}

impl Filters {
    fn get(&self, name: &str) -> &str {
        self.typed.iter().find(|(k, _)| *k == name).map_or("", |(_, v)| v.as_str())
    }

    /// The list's URL with these filters, less `without`, plus `extra`.
    fn url(&self, base: &str, without: &[&str], extra: &[(&str, String)]) -> String {
        let q: Vec<String> = self
            .typed
            .iter()
            .filter(|(k, v)| !(v.is_empty() || without.contains(k) || (*k == "view" && v == "waiting")))
            .map(|(k, v)| (*k, v.as_str()))
            .chain(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        if q.is_empty() { base.to_owned() } else { format!("{base}?{}", q.join("&")) }
    }
}

fn day(field: &'static str, text: &str, errors: &mut Vec<(&'static str, String)>) -> Option<NaiveDate> {
    if text.is_empty() {
        return None;
    }
    let d = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
    if d.is_none() {
        errors.push((field, "Enter a real date, like 2026-03-31.".to_owned()));
    }
    d
}

/// Reads the filters from the query; wrong values become words under their field.
fn filters(q: &Fields, view: View) -> Result<Filters, ApiError> {
    let typed: Vec<(&'static str, String)> = PARAMS.iter().map(|k| (*k, q.get(k).to_owned())).collect();
    let get = |k: &str| typed.iter().find(|(n, _)| *n == k).map_or("", |(_, v)| v.as_str());
    let mut errors = Vec::new();
    let status = match get("status") {
        "" => None,
        s => s.parse::<Status>().map(Some).unwrap_or_else(|_| {
            errors.push(("status", "Choose a status from the list.".to_owned()));
            None
        }),
    };
    let kind = match get("kind") {
        "" => None,
        k => k.parse::<Kind>().map(Some).unwrap_or_else(|_| {
            errors.push(("kind", "Choose payment voucher or purchase order.".to_owned()));
            None
        }),
    };
    let department_id = match get("department") {
        "" => None,
        d => Uuid::try_parse(d).map(Some).unwrap_or_else(|_| {
            errors.push(("department", "Choose a department from the list.".to_owned()));
            None
        }),
    };
    let date_from = day("from", get("from"), &mut errors);
    let date_to = day("to", get("to"), &mut errors);
    let currency = match get("currency").to_ascii_uppercase().as_str() {
        "" => None,
        c => c.parse::<Currency>().map(Some).unwrap_or_else(|_| {
            errors.push(("currency", "Enter a currency code such as EUR, USD or GBP.".to_owned()));
            None
        }),
    };
    let mut amount = |field: &'static str| match get(field) {
        "" => None,
        text => match format::parse_amount(text, currency) {
            Some(minor) if minor >= 0 => Some(minor),
            _ => {
                errors.push((field, "Enter an amount as a number, like 1,250.00.".to_owned()));
                None
            }
        },
    };
    let min_amount_minor = amount("min");
    let max_amount_minor = amount("max");
    if (!get("min").is_empty() || !get("max").is_empty()) && get("currency").is_empty() {
        errors.push(("currency", "Amounts are in one currency: enter it, like EUR.".to_owned()));
    }
    let cursor = match q.get("cursor") {
        "" => None,
        c => Some(Uuid::try_parse(c).map_err(|_| unprocessable("cursor", "not a page of this list"))?),
    };
    let filter = Filter {
        view,
        status,
        kind,
        department_id,
        date_from,
        date_to,
        min_amount_minor,
        max_amount_minor,
        currency,
        cursor,
        limit: PAGE,
    };
    Ok(Filters { typed, filter, errors })
}

/// A domain refusal of a filter (`approvals::inbox::list`'s `Invalid`) under its field.
fn filter_error(field: &str) -> (&'static str, String) {
    match field {
        "currency" => ("currency", "Amounts are in one currency: enter it, like EUR.".to_owned()),
        "min_amount_minor" => ("min", "The smallest amount must not be negative.".to_owned()),
        "max_amount_minor" => ("max", "The largest amount must not be below the smallest.".to_owned()),
        "date_to" => ("to", "The last day must not be before the first day.".to_owned()),
        _ => ("status", "This filter is not valid.".to_owned()),
    }
}

/// The pages before this one: `trail` is the cursors of the earlier pages (`0` for the first).
fn trail_of(q: &Fields) -> Vec<String> {
    q.get("trail").split(',').filter(|c| *c == "0" || Uuid::try_parse(c).is_ok()).map(str::to_owned).collect()
}

/// How many earlier pages the "previous" links remember (the URL grows by one id per page).
const TRAIL: usize = 40;

#[allow(clippy::too_many_lines)]
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
    let mut f = filters(&q, view)?;
    if let Some(v) = f.typed.iter_mut().find(|(k, _)| *k == "view") {
        v.1 = match view {
            View::Raised => "raised".to_owned(),
            _ => String::new(),
        };
    }
    let route = if section == Section::Documents { "GET /documents" } else { "GET /" };
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    let page = if f.errors.is_empty() {
        match inbox::list(&mut tx, &state.authz, &m, &f.filter).await {
            Ok(page) => page,
            Err(ApprovalError::Invalid { field, .. }) => {
                f.errors.push(filter_error(field));
                inbox::Page { items: Vec::new(), next_cursor: None }
            }
            Err(e) => return Err(refused(state, p, route, tx, e).await),
        }
    } else {
        inbox::Page { items: Vec::new(), next_cursor: None }
    };
    let waiting = if view == View::Waiting {
        match inbox::waiting_counts(&mut tx, &m, COUNT_LIMIT).await {
            Ok(w) => Some(w),
            Err(e) => return Err(refused(state, p, route, tx, e).await),
        }
    } else {
        None
    };
    let all_departments = identity::directory::departments::list(&mut tx, None, 500).await?;
    let departments: HashMap<Uuid, String> = all_departments.iter().map(|d| (d.id, d.name.clone())).collect();
    let chrome = Chrome::member(state, &mut tx, &m, headers, section).await?;
    p.checked.mark();
    tx.commit().await?;

    let view_name = match view {
        View::Waiting => "waiting",
        View::Raised => "raised",
        View::All => "all",
    };
    // Keyset pages: "next" from the domain's cursor; "previous" from the cursors of the pages
    // before, carried in the URL.
    let trail = trail_of(&q);
    let here = f.filter.cursor.map_or_else(|| "0".to_owned(), |c| c.to_string());
    let next = page.next_cursor.map_or_else(String::new, |c| {
        let mut t = trail.clone();
        t.push(here.clone());
        let t = t[t.len().saturating_sub(TRAIL)..].join(",");
        f.url(base, &[], &[("cursor", c.to_string()), ("trail", t)])
    });
    let prev = match trail.split_last() {
        Some((last, before)) => {
            let mut extra = Vec::new();
            if last != "0" {
                extra.push(("cursor", last.clone()));
            }
            if !before.is_empty() {
                extra.push(("trail", before.join(",")));
            }
            f.url(base, &[], &extra)
        }
        None if f.filter.cursor.is_some() => f.url(base, &[], &[]),
        None => String::new(),
    };
    let bulk = view == View::Waiting;
    let rows = page
        .items
        .iter()
        .map(|d| Row {
            id: d.id.to_string(),
            href: format!("/documents/{}", d.id),
            reference: d.number.clone(),
            title: d.title.clone(),
            kind: format::kind(d.kind),
            department: departments.get(&d.department_id).cloned().unwrap_or_default(),
            date: format::date(d.document_date),
            amount: format::amount(d.amount_minor, &d.currency),
            currency: d.currency.clone(),
            status: format::status(d.status),
            tone: format::status_tone(d.status),
            bulk: if bulk && matches!(d.status, Status::Submitted | Status::HodApproved | Status::FinanceApproved) {
                format!("{}:{}", d.id, d.version)
            } else {
                String::new()
            },
        })
        .collect::<Vec<_>>();
    let summary = waiting.as_ref().map(summary).unwrap_or_default();
    let counts = waiting
        .as_ref()
        .map(|w| {
            let more = if w.more { "+" } else { "" };
            [
                (Kind::Voucher, "Payment vouchers", w.vouchers),
                (Kind::PurchaseOrder, "Purchase orders", w.purchase_orders),
            ]
            .into_iter()
            .map(|(k, label, n)| KindCount {
                label,
                count: format!("{n}{more}"),
                href: format!("/?kind={}", k.as_str()),
            })
            .collect()
        })
        .unwrap_or_default();
    let tabs = if section == Section::Inbox {
        vec![
            Tab { label: "Waiting for me".into(), href: "/".into(), current: view == View::Waiting },
            Tab { label: "Raised by me".into(), href: "/?view=raised".into(), current: view == View::Raised },
        ]
    } else {
        Vec::new()
    };
    let status = f.filter.status;
    let statuses = Status::ALL
        .iter()
        .map(|s| StatusOption { value: s.as_str(), label: format::status(*s), selected: Some(*s) == status })
        .collect();
    let kinds = [Kind::Voucher, Kind::PurchaseOrder]
        .into_iter()
        .map(|k| FilterOption {
            value: k.as_str().to_owned(),
            label: format::kind(k).to_owned(),
            selected: f.filter.kind == Some(k),
        })
        .collect();
    let department_options = all_departments
        .iter()
        .map(|d| FilterOption {
            value: d.id.to_string(),
            label: d.name.clone(),
            selected: f.filter.department_id == Some(d.id),
        })
        .collect();
    let mut chips = Vec::new();
    if f.errors.is_empty() {
        let mut chip = |label: String, keys: &[&str]| chips.push(Chip { label, remove: f.url(base, keys, &[]) });
        if let Some(s) = status {
            chip(format!("Status: {}", format::status(s)), &["status"]);
        }
        if let Some(k) = f.filter.kind {
            chip(format!("Kind: {}", format::kind(k)), &["kind"]);
        }
        if let Some(d) = f.filter.department_id {
            chip(format!("Department: {}", departments.get(&d).cloned().unwrap_or_default()), &["department"]);
        }
        if let Some(d) = f.filter.date_from {
            chip(format!("From {}", format::date(d)), &["from"]);
        }
        if let Some(d) = f.filter.date_to {
            chip(format!("To {}", format::date(d)), &["to"]);
        }
        let code = f.filter.currency.as_ref().map(|c| c.code().to_owned()).unwrap_or_default();
        if let Some(a) = f.filter.min_amount_minor {
            chip(format!("At least {} {code}", format::amount(a, &code)), &["min"]);
        }
        if let Some(a) = f.filter.max_amount_minor {
            chip(format!("At most {} {code}", format::amount(a, &code)), &["max"]);
        }
        if f.filter.currency.is_some() && f.filter.min_amount_minor.is_none() && f.filter.max_amount_minor.is_none() {
            chip(format!("Currency: {code}"), &["currency"]);
        }
    }
    let others = PARAMS[2..].iter().any(|k| !f.get(k).is_empty());
    let empty = empty_words(view, status, others, m.subject.role, chrome.may_raise);
    let status_code = if f.errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let page = InboxPage {
        chrome,
        heading: if section == Section::Inbox { "Inbox" } else { "Documents" },
        tabs,
        summary,
        counts,
        view: view_name,
        base,
        statuses,
        kinds,
        departments: department_options,
        from: f.get("from").to_owned(),
        to: f.get("to").to_owned(),
        min: f.get("min").to_owned(),
        max: f.get("max").to_owned(),
        currency: f.get("currency").to_owned(),
        clear_filters: f.url(base, &PARAMS[1..], &[]),
        chips,
        errors: f.errors,
        bulk: bulk && rows.iter().any(|r| !r.bulk.is_empty()),
        rows,
        empty,
        next,
        prev,
    };
    Ok((status_code, page).into_response())
}

/// "2 payment vouchers and 1 purchase order wait for you."
fn summary(w: &inbox::WaitingCounts) -> String {
    let (vouchers, orders, more) = (w.vouchers, w.purchase_orders, w.more);
    if vouchers + orders == 0 {
        return "Nothing waits for you.".to_owned();
    }
    let plus = if more { "+" } else { "" };
    let count = |n: i64, one: &str, many: &str| format!("{n}{plus} {}", if n == 1 { one } else { many });
    let parts: Vec<String> =
        [(vouchers, "payment voucher", "payment vouchers"), (orders, "purchase order", "purchase orders")]
            .into_iter()
            .filter(|(n, ..)| *n > 0)
            .map(|(n, one, many)| count(n, one, many))
            .collect();
    let verb = if vouchers + orders == 1 && !more { "waits" } else { "wait" };
    format!("{} {verb} for you.", parts.join(" and "))
}

/// What would appear in an empty list, and how.
fn empty_words(view: View, status: Option<Status>, other_filters: bool, role: Role, may_raise: bool) -> String {
    match (status, other_filters) {
        (Some(s), false) => {
            return format!("No documents here are “{}”. Clear the filter to see them all.", format::status(s));
        }
        (_, true) => {
            return "No documents here are in this selection. Remove a filter to see more.".to_owned();
        }
        (None, false) => {}
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

    fn counts(vouchers: i64, purchase_orders: i64, more: bool) -> inbox::WaitingCounts {
        inbox::WaitingCounts { vouchers, purchase_orders, more }
    }

    #[test]
    fn the_summary_counts_each_kind_in_words() {
        assert_eq!(summary(&counts(0, 0, false)), "Nothing waits for you.");
        assert_eq!(summary(&counts(1, 0, false)), "1 payment voucher waits for you.");
        assert_eq!(summary(&counts(2, 1, false)), "2 payment vouchers and 1 purchase order wait for you.");
        assert_eq!(summary(&counts(1, 0, true)), "1+ payment voucher wait for you.");
    }
}
