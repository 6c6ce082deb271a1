//! The per-organisation IP allowlist: IPv4 and IPv6 CIDRs. An empty list admits every address;
//! a non-empty one admits only addresses inside one of its CIDRs (enforced by the web layer on
//! sign-in, refresh and every authenticated request). Replacing the list is audited with the
//! whole before/after and announced on [`CHANNEL`], so every node drops its cached copy at once.

use std::net::IpAddr;

use audit::{Changes, Entity, Event, Who};
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::Serialize;
use store::TenantTx;
use uuid::Uuid;

use crate::IdentityError;

/// Postgres channel announcing a changed list (payload: the organisation's id).
pub const CHANNEL: &str = "countersign_ip_allowlist";
/// Entries one organisation may hold.
pub const MAX_ENTRIES: usize = 100;
const MAX_NOTE: usize = 200;

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Entry {
    pub id: Uuid,
    /// A network in canonical CIDR form, e.g. `203.0.113.0/24`.
    #[schema(value_type = String)]
    pub cidr: IpNet,
    pub note: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// A checked entry to store: a network in canonical form (no host bits) and a short note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewEntry {
    pub cidr: IpNet,
    pub note: String,
}

impl NewEntry {
    /// Accepts `10.0.0.0/8`, `2001:db8::/32`, or a bare address (one host). Refuses host bits
    /// (`10.0.0.1/8`): the admin meant either the host or the network, and guessing is how a
    /// list ends up wider than intended.
    ///
    /// # Errors
    /// `Invalid` naming the problem.
    pub fn parse(cidr: &str, note: &str) -> Result<Self, IdentityError> {
        let s = cidr.trim();
        let net = s
            .parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| IdentityError::invalid("cidr", format!("'{s}' is not an IPv4/IPv6 address or CIDR")))?;
        if net.trunc() != net {
            return Err(IdentityError::invalid(
                "cidr",
                format!("'{s}' has host bits set; did you mean {}?", net.trunc()),
            ));
        }
        let note = note.trim();
        if note.chars().count() > MAX_NOTE || note.chars().any(char::is_control) {
            return Err(IdentityError::invalid("note", format!("at most {MAX_NOTE} printable characters")));
        }
        Ok(Self { cidr: net, note: note.to_owned() })
    }
}

/// Is `ip` admitted by `cidrs`? An empty list admits everyone. IPv4-mapped IPv6 addresses
/// (`::ffff:192.0.2.1`, what a dual-stack socket reports) are matched as the IPv4 they are.
#[must_use]
pub fn allows(cidrs: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    cidrs.is_empty() || cidrs.iter().any(|n| n.contains(&ip))
}

/// The organisation's list, oldest first.
pub async fn list(tx: &mut TenantTx) -> Result<Vec<Entry>, IdentityError> {
    let rows = sqlx::query!(
        r#"select id, cidr::text as "cidr!", note, created_at, created_by
             from tenant_ip_allowlist order by created_at, cidr"#
    )
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter()
        .map(|r| {
            let cidr = r.cidr.parse().map_err(|_| IdentityError::Internal(format!("stored cidr {}", r.cidr)))?;
            Ok(Entry { id: r.id, cidr, note: r.note, created_at: r.created_at, created_by: r.created_by })
        })
        .collect()
}

/// Just the networks, for the request path's cache.
pub async fn networks(tx: &mut TenantTx) -> Result<Vec<IpNet>, IdentityError> {
    let rows =
        sqlx::query_scalar!(r#"select cidr::text as "cidr!" from tenant_ip_allowlist"#).fetch_all(tx.conn()).await?;
    rows.iter().map(|c| c.parse().map_err(|_| IdentityError::Internal(format!("stored cidr {c}")))).collect()
}

/// Replaces the whole list (an empty `entries` removes the restriction), records
/// `settings.ip_allowlist_changed` with the before and after lists and the reason, and announces
/// the change to every node (delivered when the transaction commits).
///
/// # Errors
/// `Invalid` for more than [`MAX_ENTRIES`] entries or a network listed twice.
pub async fn replace(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    entries: &[NewEntry],
    reason: &str,
) -> Result<Vec<Entry>, IdentityError> {
    crate::permitted(permit, authz::Action::SettingsManage, tx)?;
    if entries.len() > MAX_ENTRIES {
        return Err(IdentityError::invalid("entries", format!("at most {MAX_ENTRIES} entries")));
    }
    for (i, e) in entries.iter().enumerate() {
        if entries[..i].iter().any(|o| o.cidr == e.cidr) {
            return Err(IdentityError::invalid("entries", format!("{} is listed twice", e.cidr)));
        }
    }
    let before = list(tx).await?;
    sqlx::query!("delete from tenant_ip_allowlist").execute(tx.conn()).await?;
    let by = who.actor.id.clone();
    for e in entries {
        sqlx::query!(
            "insert into tenant_ip_allowlist (tenant_id, id, cidr, note, created_by)
             values (current_setting('app.tenant_id')::uuid, $1, $2::text::cidr, $3, $4)",
            Uuid::now_v7(),
            e.cidr.to_string(),
            e.note,
            by
        )
        .execute(tx.conn())
        .await
        .map_err(IdentityError::from_store("allowlist entry"))?;
    }
    let after = list(tx).await?;
    let summary = |l: &[Entry]| l.iter().map(|e| NewEntry { cidr: e.cidr, note: e.note.clone() }).collect::<Vec<_>>();
    let event = Event::new(
        "settings.ip_allowlist_changed",
        Entity::new("ip_allowlist", None)?,
        Changes::none().field("entries", summary(&before), summary(&after)),
    )?
    .with_reason(reason)?;
    audit::record_by(tx, who, &event).await?;
    let tenant = tx.tenant().as_uuid().to_string();
    sqlx::query!("select pg_notify($1, $2)", CHANNEL, tenant).execute(tx.conn()).await?;
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn entries_parse_strictly_and_match_both_families() {
        let v4 = NewEntry::parse("203.0.113.0/24", "office").expect("v4");
        let v6 = NewEntry::parse(" 2001:db8:1::/48 ", "").expect("v6");
        let host = NewEntry::parse("198.51.100.7", "vpn").expect("host");
        assert_eq!(host.cidr.to_string(), "198.51.100.7/32");
        for bad in ["", "10.0.0.1/8", "2001:db8::1/32", "300.1.1.1/32", "10.0.0.0/33", "example.com", "10.0.0.0/8,"] {
            assert!(NewEntry::parse(bad, "").is_err(), "{bad}");
        }
        assert!(NewEntry::parse("10.0.0.0/8", &"x".repeat(201)).is_err());
        assert!(NewEntry::parse("10.0.0.0/8", "line\nbreak").is_err());
        let nets = [v4.cidr, v6.cidr, host.cidr];
        assert!(allows(&nets, ip("203.0.113.200")));
        assert!(allows(&nets, ip("::ffff:203.0.113.9")), "IPv4-mapped IPv6 is the IPv4 address");
        assert!(allows(&nets, ip("2001:db8:1:ffff::1")));
        assert!(!allows(&nets, ip("203.0.114.1")));
        assert!(!allows(&nets, ip("2001:db8:2::1")));
        assert!(!allows(&nets, ip("198.51.100.8")));
        assert!(allows(&[], ip("192.0.2.1")), "an empty list restricts nothing");
    }
}
