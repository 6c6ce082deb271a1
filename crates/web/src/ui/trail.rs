//! A document's history from the audit ledger: the timeline of its steps on the document page
//! (who, role, level, time; the client address to those who may read the audit), its full audit
//! trail (every ledger event for the document, refused attempts included) for owners, admins
//! and auditors, and that trail as CSV (`/documents/{id}/audit.csv`, `Guard::Org(audit.read)`
//! like `/api/v1/audit/export`, through the same `audit::export::export_tenant`).
//!
//! The ledger is read with `audit::query::query` (the audit page's query) filtered to the
//! document, in the request's `TenantTx`: another organisation's events are not there to read.

use std::collections::HashMap;

use approvals::documents;
use authz::{Action, Resource};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::Value;
use store::TenantTx;
use uuid::Uuid;

use crate::api::documents::member;
use crate::plumbing::access::path_id;
use crate::ui::documents::refused;
use crate::ui::format;
use crate::{ApiError, AppState, Principal};

/// How many ledger events of one document a page shows (the CSV has them all).
const SHOWN: i64 = 200;

/// One step of the timeline.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub when: String,
    pub who: String,
    pub role: String,
    pub what: &'static str,
    pub level: &'static str,
    /// Empty when not recorded, or not shown to this reader.
    pub ip: String,
    pub note: String,
}

/// One ledger event of the audit trail.
#[derive(Debug, Clone)]
pub(crate) struct TrailRow {
    pub seq: i64,
    pub when: String,
    pub who: String,
    pub role: String,
    pub action: String,
    pub changes: String,
    pub reason: String,
    pub ip: String,
}

/// What the document page shows of the ledger.
#[derive(Debug, Clone, Default)]
pub(crate) struct History {
    pub steps: Vec<Step>,
    /// Only for readers of the audit (`audit.read`); else empty and `audit_reader` false.
    pub trail: Vec<TrailRow>,
    pub audit_reader: bool,
    /// There were more events than the page shows.
    pub more: bool,
}

/// The step an action of the document records, in words (`voucher.approved` → "Approved").
fn step_words(action: &str) -> Option<&'static str> {
    let (kind, verb) = action.split_once('.')?;
    if !matches!(kind, "voucher" | "purchase_order" | "document") {
        return None;
    }
    Some(match verb {
        "created" => "Raised as a draft",
        "submitted" => "Submitted for approval",
        "approved" => "Approved",
        "rejected" => "Rejected",
        "queried" => "Asked the raiser a question",
        "answered" => "Answered the question",
        "amended" => "Took it back to draft",
        "cancelled" => "Cancelled",
        "paid" => "Marked as paid",
        "edited" => "Edited",
        _ => return None,
    })
}

fn level_words(level: &str) -> &'static str {
    match level {
        "hod" | "submitted" => "Head of department",
        "finance" | "hod_approved" => "Finance",
        "md" | "finance_approved" => "Managing director",
        "approved" => "Payment",
        "draft" => "Raiser",
        _ => "",
    }
}

fn change<'a>(changes: &'a Value, field: &str, side: &str) -> Option<&'a str> {
    changes.get(field)?.get(side)?.as_str()
}

/// The level a step was taken at: the level approved, else the level the document was waiting
/// at (for a queried document, the level that asked).
fn level_of(action: &str, changes: &Value) -> &'static str {
    if let Some(level) = change(changes, "approved_level", "to") {
        return level_words(level);
    }
    if action.ends_with(".created") || action.ends_with(".edited") {
        return "Raiser";
    }
    match change(changes, "status", "from") {
        Some("queried") => "Raiser",
        Some(from) => level_words(from),
        None => "",
    }
}

/// `{"status": {"from": "submitted", "to": "hod_approved"}}` → `status: submitted → hod_approved`.
fn changes_words(changes: &Value) -> String {
    let Some(map) = changes.as_object() else { return String::new() };
    let short = |v: &Value| {
        let s = match v {
            Value::Null => "—".to_owned(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if s.chars().count() > 60 { format!("{}…", s.chars().take(60).collect::<String>()) } else { s }
    };
    map.iter()
        .map(|(k, v)| match (v.get("from"), v.get("to")) {
            (Some(f), Some(t)) => format!("{k}: {} → {}", short(f), short(t)),
            _ => format!("{k}: {}", short(v)),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

async fn names(tx: &mut TenantTx, ids: impl IntoIterator<Item = String>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for id in ids {
        if out.contains_key(&id) {
            continue;
        }
        let name = match Uuid::try_parse(&id) {
            Ok(u) => identity::directory::users::get_member(tx, u)
                .await
                .map_or_else(|_| "A former member".to_owned(), |m| m.display_name),
            Err(_) => id.clone(),
        };
        out.insert(id, name);
    }
    out
}

/// Whether `m` may read the organisation's audit (the `/audit` page's and the CSV's guard).
pub(crate) fn reads_audit(state: &AppState, m: &documents::Member) -> bool {
    let org = Resource::Organisation { tenant: m.subject.tenant };
    state.authz.decide(&m.subject, Action::AuditRead, &org).is_ok()
}

/// The document's history as `m` may see it.
///
/// # Errors
/// Database errors.
pub(crate) async fn history(
    state: &AppState,
    tx: &mut TenantTx,
    m: &documents::Member,
    id: Uuid,
) -> Result<History, ApiError> {
    let filter = audit::query::Filter {
        entity_type: Some(documents::ENTITY.to_owned()),
        entity_id: Some(id.to_string()),
        ..audit::query::Filter::default()
    }
    .validated()?;
    let page = audit::query::query(tx, &filter, None, SHOWN).await?;
    let who = names(tx, page.events.iter().map(|e| e.actor_id.clone()).collect::<Vec<_>>()).await;
    let audit_reader = reads_audit(state, m);
    let name = |id: &str| who.get(id).cloned().unwrap_or_else(|| id.to_owned());
    // Oldest first, as a story is told.
    let mut events = page.events;
    events.reverse();
    let steps = events
        .iter()
        .filter_map(|e| {
            let what = step_words(&e.action)?;
            Some(Step {
                when: format::moment(e.occurred_at),
                who: name(&e.actor_id),
                role: e.actor_role.as_deref().map(format::role_name).unwrap_or_default(),
                what,
                level: level_of(&e.action, &e.changes),
                ip: if audit_reader { e.ip.clone().unwrap_or_default() } else { String::new() },
                note: e.reason.clone().unwrap_or_default(),
            })
        })
        .collect();
    let trail = if audit_reader {
        events
            .iter()
            .rev()
            .map(|e| TrailRow {
                seq: e.seq,
                when: format::moment(e.occurred_at),
                who: name(&e.actor_id),
                role: e.actor_role.as_deref().map(format::role_name).unwrap_or_default(),
                action: e.action.clone(),
                changes: changes_words(&e.changes),
                reason: e.reason.clone().unwrap_or_default(),
                ip: e.ip.clone().unwrap_or_default(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(History { steps, trail, audit_reader, more: page.next_cursor.is_some() })
}

/// `GET /documents/{id}/audit.csv` — every ledger event of the document, oldest first, in the
/// export's CSV columns (chain, seq, hashes…). Downloading it is itself audited, as the API's
/// export is. Another organisation's id, or none: the not-found page.
pub async fn csv(State(state): State<AppState>, p: Principal, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let doc = match documents::get(&mut tx, &state.authz, &m, id).await {
        Ok(d) => d,
        Err(e) => return Err(refused(&state, &p, "GET /documents/{id}/audit.csv", tx, e).await),
    };
    let filter = audit::export::ExportFilter {
        entity_type: Some(documents::ENTITY.to_owned()),
        entity_id: Some(id.to_string()),
        ..audit::export::ExportFilter::default()
    };
    filter.validate()?;
    let event = audit::Event::new(
        "audit.exported",
        audit::Entity::new("audit_log", None)?,
        audit::Changes::none().field("format", None::<&str>, "csv").field("entity_id", None::<&str>, id.to_string()),
    )?;
    audit::record_by(&mut tx, &p.who, &event).await?;
    // One document's events are few: gathered in memory, then sent whole.
    let mut out = Vec::new();
    let mut sink = audit::export::FnSink(|chunk: &[u8]| {
        out.extend_from_slice(chunk);
        Ok::<(), std::io::Error>(())
    });
    audit::export::export_tenant(&mut tx, &filter, audit::export::Format::Csv, &mut sink).await?;
    p.checked.mark();
    tx.commit().await?;
    let filename = format!("audit-{}-{}.csv", doc.number, Utc::now().format("%Y%m%dT%H%M%SZ"));
    let disposition = format!("attachment; filename=\"{filename}\"");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_step_is_said_at_its_level() {
        let approved = json!({"approved_level": {"from": null, "to": "finance"}, "status": {"from": "hod_approved", "to": "finance_approved"}});
        assert_eq!(level_of("voucher.approved", &approved), "Finance");
        let queried = json!({"status": {"from": "submitted", "to": "queried"}});
        assert_eq!(level_of("voucher.queried", &queried), "Head of department");
        let answered = json!({"status": {"from": "queried", "to": "submitted"}});
        assert_eq!(level_of("voucher.answered", &answered), "Raiser");
        assert_eq!(step_words("purchase_order.paid"), Some("Marked as paid"));
        assert_eq!(step_words("access.denied"), None);
        assert_eq!(changes_words(&queried), "status: submitted → queried");
    }
}
