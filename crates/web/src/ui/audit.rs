//! `/audit`: the organisation's ledger for owners, admins and auditors (`Guard::Org(audit.read)`,
//! like `/api/v1/audit/*`): events filtered by entity, person, action and date, newest first,
//! with a keyset "next"; the chain's status (`audit::watch::status`, as `/api/v1/audit/chain`);
//! links to the API's streamed CSV and NDJSON export, which browsers reach with the session
//! cookie (a GET needs no CSRF token).

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use store::TenantTx;
use uuid::Uuid;

use crate::api::documents::member;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::form::{Fields, encode};
use crate::ui::format;
use crate::ui::members::Choice;
use crate::{ApiError, AppState, Principal};

/// Events per page.
const PAGE: i64 = 50;

#[derive(Debug, Clone)]
pub(crate) struct EventView {
    pub seq: i64,
    pub when: String,
    pub who: String,
    pub role: String,
    pub action: String,
    pub entity: String,
    pub reason: String,
    pub ip: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
pub(crate) struct AuditPage {
    pub chrome: Chrome,
    pub entity_type: String,
    pub entity_id: String,
    pub action: String,
    pub from: String,
    pub to: String,
    pub people: Vec<Choice>,
    pub filtered: bool,
    pub events: Vec<EventView>,
    pub next: String,
    pub export_csv: String,
    pub export_ndjson: String,
    /// `intact`, `broken` or `unknown` (a CSS class; the words say it too).
    pub chain_state: &'static str,
    pub chain_words: String,
    pub head: String,
    pub checkpoint: String,
    /// A field's error: `(field id, words)`; the first wrong field has the focus.
    pub errors: Vec<(String, String)>,
}

impl AuditPage {
    /// The error under field `id`, or `""`.
    pub(crate) fn error_of(&self, id: &str) -> String {
        self.errors.iter().find(|(f, _)| f == id).map(|(_, w)| w.clone()).unwrap_or_default()
    }

    /// Whether field `id` has the focus (the first wrong field).
    pub(crate) fn focus(&self, id: &str) -> bool {
        self.errors.first().is_some_and(|(f, _)| f == id)
    }
}

/// What a person typed into the filters, kept as typed.
#[derive(Debug, Default)]
struct Typed {
    entity_type: String,
    entity_id: String,
    actor: String,
    action: String,
    from: String,
    to: String,
    cursor: String,
}

fn day(field: &str, text: &str, errors: &mut Vec<(String, String)>) -> Option<NaiveDate> {
    if text.is_empty() {
        return None;
    }
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            errors.push((field.to_owned(), "Enter a date, like 2026-03-31.".to_owned()));
            None
        }
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// The filter field an `audit::Filter` refusal names, and the words for it.
fn field_words(field: &str) -> (&'static str, &'static str) {
    match field {
        "entity_type" => {
            ("entity-type", "Enter a kind of record like document, membership or session (letters, digits and _).")
        }
        "entity_id" => ("entity-id", "Enter a record id of at most 200 characters."),
        "actor_id" => ("actor", "Choose a person from the list."),
        "action" => ("action", "Enter an action like document.approved or membership.role_changed."),
        "from" => ("from", "The first day must not be after the last day."),
        _ => ("entity-type", "This filter is not valid."),
    }
}

async fn names(tx: &mut TenantTx, ids: impl IntoIterator<Item = String>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for id in ids {
        if out.contains_key(&id) {
            continue;
        }
        let name = match Uuid::try_parse(&id) {
            Ok(u) => {
                identity::directory::users::get_member(tx, u).await.map_or_else(|_| id.clone(), |m| m.display_name)
            }
            Err(_) => id.clone(),
        };
        out.insert(id, name);
    }
    out
}

/// `GET /audit?entity_type=&entity_id=&actor=&action=&from=&to=&cursor=`
pub async fn page(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let f = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let t = Typed {
        entity_type: f.get("entity_type").to_owned(),
        entity_id: f.get("entity_id").to_owned(),
        actor: f.get("actor").to_owned(),
        action: f.get("action").to_owned(),
        from: f.get("from").to_owned(),
        to: f.get("to").to_owned(),
        cursor: f.get("cursor").to_owned(),
    };
    let mut errors = Vec::new();
    let from = day("from", &t.from, &mut errors).map(midnight);
    let to = day("to", &t.to, &mut errors).and_then(|d| d.succ_opt()).map(midnight);
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let filter = audit::query::Filter {
        entity_type: some(&t.entity_type),
        entity_id: some(&t.entity_id),
        actor_id: some(&t.actor),
        action: some(&t.action),
        from,
        to,
    };
    let filter = match filter.validated() {
        Ok(f) => Some(f),
        Err(audit::AuditError::Invalid { field, .. }) => {
            let (id, words) = field_words(field);
            errors.push((id.to_owned(), words.to_owned()));
            None
        }
        Err(e) => return Err(e.into()),
    };
    let cursor = match t.cursor.as_str() {
        "" => None,
        c => Some(audit::query::Cursor::parse(c)?),
    };
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let (rows, next_cursor) = match (&filter, errors.is_empty()) {
        (Some(filter), true) => {
            let page = audit::query::query(&mut tx, filter, cursor, PAGE).await?;
            (page.events, page.next_cursor)
        }
        _ => (Vec::new(), None),
    };
    let who = names(&mut tx, rows.iter().map(|r| r.actor_id.clone()).collect::<Vec<_>>()).await;
    let chain = audit::watch::status(&mut tx).await?;
    let people = identity::admin::members::page(&mut tx, None, None, 200).await?;
    let chrome = Chrome::member(&state, &mut tx, &m, &headers, Section::Audit).await?;
    tx.commit().await?;

    let mut people_choices =
        vec![Choice { value: String::new(), label: "Anyone".into(), selected: t.actor.is_empty() }];
    people_choices.extend(people.into_iter().map(|x| {
        let id = x.user_id.to_string();
        Choice { selected: id == t.actor, value: id, label: format!("{} ({})", x.display_name, x.email) }
    }));
    // The filters as query parameters (`actor` only for the page: the export has no such filter).
    let mut params = Vec::new();
    for (k, v) in [("entity_type", &t.entity_type), ("entity_id", &t.entity_id), ("action", &t.action)] {
        if !v.is_empty() {
            params.push(format!("{k}={}", encode(v)));
        }
    }
    let mut export_params = params.clone();
    if let Some(f) = from {
        export_params.push(format!("from={}", encode(&f.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))));
    }
    if let Some(t) = to {
        export_params.push(format!("to={}", encode(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))));
    }
    for (k, v) in [("actor", &t.actor), ("from", &t.from), ("to", &t.to)] {
        if !v.is_empty() {
            params.push(format!("{k}={}", encode(v)));
        }
    }
    let export = |format: &str| {
        let mut q = vec![format!("format={format}")];
        q.extend(export_params.iter().cloned());
        format!("/api/v1/audit/export?{}", q.join("&"))
    };
    let next = next_cursor.map_or_else(String::new, |c| {
        let mut q = params.clone();
        q.push(format!("cursor={}", encode(&c)));
        format!("/audit?{}", q.join("&"))
    });
    let (chain_state, chain_words) = match chain.verified {
        None => (
            "unknown",
            "The server has not checked the chain since it started; it checks every chain regularly.".to_owned(),
        ),
        Some(v) if v.intact => (
            "intact",
            format!(
                "The server recomputed the chain{} on {} and every event matched.",
                v.seq.map(|s| format!(" up to event {s}")).unwrap_or_default(),
                format::moment(v.at)
            ),
        ),
        Some(v) => (
            "broken",
            format!(
                "The server's recomputation on {} did not match the stored chain. Run `countersign audit verify` to see where, and tell your security contact.",
                format::moment(v.at)
            ),
        ),
    };
    let events = rows
        .into_iter()
        .map(|r| EventView {
            seq: r.seq,
            when: format::moment(r.occurred_at),
            who: who.get(&r.actor_id).cloned().unwrap_or_else(|| r.actor_id.clone()),
            role: r.actor_role.as_deref().map(format::role_name).unwrap_or_default(),
            action: r.action,
            entity: match r.entity_id {
                Some(id) => format!("{} {id}", r.entity_type),
                None => r.entity_type,
            },
            reason: r.reason.unwrap_or_default(),
            ip: r.ip.unwrap_or_default(),
        })
        .collect();
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let filtered = [&t.entity_type, &t.entity_id, &t.actor, &t.action, &t.from, &t.to].iter().any(|s| !s.is_empty());
    let view = AuditPage {
        chrome,
        entity_type: t.entity_type.clone(),
        entity_id: t.entity_id.clone(),
        action: t.action.clone(),
        from: t.from.clone(),
        to: t.to.clone(),
        people: people_choices,
        filtered,
        events,
        next,
        export_csv: export("csv"),
        export_ndjson: export("ndjson"),
        chain_state,
        chain_words,
        head: chain.head_seq.map_or_else(|| "No events yet".to_owned(), |s| format!("Event {s}")),
        checkpoint: chain.last_checkpoint.map_or_else(
            || "None signed yet".to_owned(),
            |c| format!("Event {} signed on {}", c.seq, format::moment(c.signed_at)),
        ),
        errors,
    };
    Ok((status, view).into_response())
}
