//! The suspicious-login signal: one account failing from many distinct addresses within an hour
//! is a password spray or a credential-stuffing run, not a user who forgot their password.
//!
//! Failures live in the database (`login_failures`, identity scope), so every server process
//! contributes to the count; the once-per-hour decision is a single conditional upsert on
//! `login_signals`, so two nodes seeing the same burst emit one event between them.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use audit::{Actor, Changes, Entity, Event, Origin};
use store::{GlobalTx, Store, TenantId};
use uuid::Uuid;

use crate::IdentityError;

/// Distinct client addresses failing against one account within an hour that make it
/// "suspicious" (2-1000): one address is a user who forgot their password, many are a spray.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuspiciousIps(u16);

/// The default number of distinct failing addresses that raise the signal.
pub const SUSPICIOUS_IPS: u16 = 5;

impl SuspiciousIps {
    /// # Errors
    /// Outside 2-1000.
    pub fn new(n: u32) -> Result<Self, String> {
        u16::try_from(n)
            .ok()
            .filter(|n| (2..=1000).contains(n))
            .map(Self)
            .ok_or_else(|| format!("{n} is not a distinct-address threshold (2-1000)"))
    }

    #[must_use]
    pub fn get(self) -> i64 {
        i64::from(self.0)
    }
}

impl Default for SuspiciousIps {
    fn default() -> Self {
        Self(SUSPICIOUS_IPS)
    }
}

impl FromStr for SuspiciousIps {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::new(number(s)?)
    }
}

impl fmt::Display for SuspiciousIps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

fn number(s: &str) -> Result<u32, String> {
    s.trim().parse::<u32>().map_err(|_| format!("'{}' is not a whole number", s.trim()))
}

static DETECTED: AtomicU64 = AtomicU64::new(0);

/// Signals raised by this process (for `/metrics`).
#[must_use]
pub fn detected_total() -> u64 {
    DETECTED.load(Ordering::Relaxed)
}

/// Records one failed password check of `user` from `origin` and, when the account has now
/// failed from `threshold` distinct addresses within the hour and no signal fired for it in the
/// last hour, records `auth.suspicious_login` on the platform chain in the same transaction.
/// Returns the distinct-address count when the signal fired.
pub(crate) async fn record_failure(
    g: &mut GlobalTx,
    user: Uuid,
    origin: &Origin,
    threshold: SuspiciousIps,
) -> Result<Option<i64>, IdentityError> {
    let Some(ip) = origin.ip else { return Ok(None) };
    let ip = ip.to_canonical().to_string();
    // Old rows go first: the table only ever holds a day of failures.
    sqlx::query!("delete from login_failures where at < now() - interval '1 day'").execute(g.conn()).await?;
    let distinct = sqlx::query_scalar!(
        r#"with added as (insert into login_failures (user_id, ip) values ($1, $2::text::inet) returning ip)
           select count(distinct ip) as "n!" from (
               select ip from login_failures where user_id = $1 and at > now() - interval '1 hour'
               union all select ip from added) f"#,
        user,
        ip
    )
    .fetch_one(g.conn())
    .await?;
    if distinct < threshold.get() {
        return Ok(None);
    }
    let fired = sqlx::query_scalar!(
        "insert into login_signals (user_id, suspicious_at) values ($1, now())
         on conflict (user_id) do update set suspicious_at = excluded.suspicious_at
          where login_signals.suspicious_at <= now() - interval '1 hour'
         returning user_id",
        user
    )
    .fetch_optional(g.conn())
    .await?;
    if fired.is_none() {
        return Ok(None);
    }
    audit::record_platform(g.conn(), &Actor::system("auth:login"), origin, &event(user, distinct)?).await?;
    DETECTED.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%user, distinct_ips = distinct, "suspicious login: one account failing from many addresses");
    Ok(Some(distinct))
}

fn event(user: Uuid, distinct: i64) -> Result<Event, IdentityError> {
    Ok(Event::new(
        "auth.suspicious_login",
        Entity::of("user", user)?,
        Changes::none().field("distinct_ips", 0, distinct),
    )?
    .with_reason("failed logins from many distinct addresses within one hour")?)
}

/// The tenant-chain copy of the signal, for the organisation the attempt named — only when the
/// account is a member there: otherwise that organisation's auditors would learn that a
/// stranger's account exists and is under attack.
pub(crate) async fn record_in_tenant(store: &Store, tenant: TenantId, user: Uuid, origin: &Origin, distinct: i64) {
    let result = async {
        let mut tx = store.tenant_tx(tenant).await?;
        let member = sqlx::query_scalar!("select exists(select 1 from memberships where user_id = $1)", user)
            .fetch_one(tx.conn())
            .await?
            .unwrap_or(false);
        if member {
            audit::record(&mut tx, &Actor::system("auth:login"), origin, &event(user, distinct)?).await?;
            tx.commit().await?;
        }
        Ok::<(), IdentityError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not record the suspicious-login signal in the organisation");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_strictly() {
        assert_eq!(SuspiciousIps::default().get(), 5);
        assert_eq!("7".parse::<SuspiciousIps>().map(SuspiciousIps::get), Ok(7));
        for bad in ["0", "1", "1001", "x"] {
            assert!(bad.parse::<SuspiciousIps>().is_err(), "{bad}");
        }
        assert!("1".parse::<SuspiciousIps>().err().is_some_and(|e| e.contains("2-1000")));
    }
}
