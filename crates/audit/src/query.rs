//! Reading a tenant's ledger: filter by entity, actor, action and time; newest first; opaque
//! cursor pagination. Runs in the caller's `TenantTx`, so RLS limits it to that tenant.

use chrono::{DateTime, Utc};
use serde::Serialize;
use store::TenantTx;

use crate::{Action, AuditError, Entity};

/// `entity_type` filters (here and in `export`) treat the two names documents have had as one:
/// events before migration 0014 say `voucher` / `purchase_order`, later ones `document` (with
/// the kind still in the action, `voucher.approved`). The ledger is never rewritten, so a filter
/// on `document` also finds the old names, and one on `voucher` finds `document` events whose
/// action starts with `voucher.`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl Filter {
    /// Checks every part; the web layer and CLI build filters only through this.
    pub fn validated(self) -> Result<Self, AuditError> {
        if let Some(t) = &self.entity_type {
            Entity::new(t, None)?;
        }
        if let Some(a) = &self.action {
            Action::parse(a)?;
        }
        if self.entity_id.as_ref().is_some_and(|i| i.is_empty() || i.len() > 200) {
            return Err(AuditError::invalid("entity_id", "must be 1-200 bytes"));
        }
        if self.actor_id.as_ref().is_some_and(|i| i.is_empty() || i.len() > 200) {
            return Err(AuditError::invalid("actor_id", "must be 1-200 bytes"));
        }
        if let (Some(f), Some(t)) = (self.from, self.to)
            && f > t
        {
            return Err(AuditError::invalid("from", "must not be after `to`"));
        }
        Ok(self)
    }
}

/// Position after which the next (older) page starts. Opaque to clients: `v1.<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(i64);

impl Cursor {
    pub fn parse(s: &str) -> Result<Self, AuditError> {
        s.strip_prefix("v1.")
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n > 0 && !s[3..].starts_with('+') && !s[3..].starts_with('0'))
            .map(Self)
            .ok_or_else(|| AuditError::invalid("cursor", "not a cursor returned by this API"))
    }

    #[must_use]
    pub fn encode(self) -> String {
        format!("v1.{}", self.0)
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventRow {
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor_kind: String,
    pub actor_id: String,
    pub actor_role: Option<String>,
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    /// The before/after delta of the change: free-form by design (its keys are the entity's).
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub events: Vec<EventRow>,
    pub next_cursor: Option<String>,
}

pub const MAX_PAGE: i64 = 500;

pub async fn query(tx: &mut TenantTx, filter: &Filter, after: Option<Cursor>, limit: i64) -> Result<Page, AuditError> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AuditError::invalid("limit", format!("must be 1-{MAX_PAGE}")));
    }
    let rows = sqlx::query!(
        r#"select seq, occurred_at, actor_kind, actor_id, actor_role, action, entity_type, entity_id,
                  changes::jsonb as "changes!", reason, request_id, host(ip) as ip, user_agent, hash
             from audit_events
            where tenant_id = $1
              and ($2::text is null or entity_type = $2
                   or ($2 = 'document' and entity_type in ('voucher', 'purchase_order'))
                   or ($2 in ('voucher', 'purchase_order') and entity_type = 'document'
                       and split_part(action, '.', 1) = $2))
              and ($3::text is null or entity_id = $3)
              and ($4::text is null or actor_id = $4)
              and ($5::text is null or action = $5)
              and ($6::timestamptz is null or occurred_at >= $6)
              and ($7::timestamptz is null or occurred_at < $7)
              and ($8::bigint is null or seq < $8)
            order by seq desc
            limit $9"#,
        tx.tenant().as_uuid(),
        filter.entity_type.as_deref(),
        filter.entity_id.as_deref(),
        filter.actor_id.as_deref(),
        filter.action.as_deref(),
        filter.from,
        filter.to,
        after.map(|c| c.0),
        limit + 1
    )
    .fetch_all(tx.conn())
    .await?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    let mut events: Vec<EventRow> = rows
        .into_iter()
        .map(|r| EventRow {
            seq: r.seq,
            occurred_at: r.occurred_at,
            actor_kind: r.actor_kind,
            actor_id: r.actor_id,
            actor_role: r.actor_role,
            action: r.action,
            entity_type: r.entity_type,
            entity_id: r.entity_id,
            changes: r.changes,
            reason: r.reason,
            request_id: r.request_id,
            ip: r.ip,
            user_agent: r.user_agent,
            hash: hex::encode(r.hash),
        })
        .collect();
    if more {
        events.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    let next_cursor = if more { events.last().map(|e| Cursor(e.seq).encode()) } else { None };
    Ok(Page { events, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = Cursor::parse("v1.42").expect("cursor");
        assert_eq!(Cursor::parse(&c.encode()).expect("again"), c);
        for bad in
            ["", "42", "v1.", "v1.-3", "v1.0", "v1.+4", "v1.007", "v2.5", "v1.99999999999999999999", "v1.1 or 1=1"]
        {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_are_validated() {
        assert!(Filter { action: Some("Drop table".into()), ..Filter::default() }.validated().is_err());
        assert!(Filter { entity_type: Some("x y".into()), ..Filter::default() }.validated().is_err());
        let (from, to) = (Utc::now(), Utc::now() - chrono::Duration::days(1));
        assert!(Filter { from: Some(from), to: Some(to), ..Filter::default() }.validated().is_err());
        assert!(Filter { action: Some("voucher.approved".into()), ..Filter::default() }.validated().is_ok());
    }
}
