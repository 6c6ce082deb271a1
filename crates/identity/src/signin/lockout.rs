//! One lockout for every credential check: password sign-in, second factors, an existing user's
//! password when accepting an invitation, and a signed-in user's own checks (password change,
//! MFA management) — all counting against the configured `--lockout-after`.
//!
//! What is locked is a *lock key*, never the account as a whole:
//! - a sign-in attempt is keyed by the organisation as named (its id when the name resolves,
//!   else the name as typed, normalised like the slug lookup), the email, and the source
//!   address (IPv4 as is, IPv6 by its /64). Unknown emails, non-members and members are counted
//!   and locked exactly alike, so `429 too_many_attempts` says nothing about who exists;
//!   failures aimed at one organisation never lock another; and an outsider hammering a member's
//!   pair locks only their own address out of it — the member, from their own address, still
//!   signs in (the per-address budget in `web::limits` bounds what each outsider address tries);
//! - a signed-in user's own checks are keyed by the user alone (any address): only someone who
//!   already holds one of their sessions can count there, and rotating addresses gains nothing.
//!
//! Rows (`credential_failures`) hold only an HMAC-SHA-256 of the key under a secret derived from
//! the token key, plus the user id when the key belongs to a known user — so an admin unlock
//! ([`unlock`]) clears every lock of that user, everywhere.
//!
//! This is the only code that writes `credential_failures` and judges its rows ([`Lockout::judge`];
//! password sign-in reads a key's row in the statement that reads the account, to save a round
//! trip), and a [`Lockout`] is only obtained from `Authenticator::lockout` — so every check counts
//! at the configured threshold.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use audit::{Changes, Entity, Event, Who};
use chrono::Utc;
use store::{GlobalTx, TenantId};
use uuid::Uuid;

use crate::signin::hmac::hmac_sha256;
use crate::{EmailAddress, IdentityError};

/// Failures before a lock key locks, unless configured otherwise ([`LockAfter`]); each further
/// failure doubles the lock.
pub const LOCK_AFTER: i32 = 5;
/// The longest a lock lasts (each failure past the threshold doubles it up to this).
pub const MAX_LOCK_MINUTES: i32 = 60;

/// Failed checks before a lock key locks (1-100), configured per deployment (`--lockout-after`).
/// The constructor is the only place the number is checked, so the lockout can never run with a
/// threshold of zero (which would lock every account on its first mistake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockAfter(u8);

impl LockAfter {
    /// # Errors
    /// Outside 1-100.
    pub fn new(n: u32) -> Result<Self, String> {
        u8::try_from(n)
            .ok()
            .filter(|n| (1..=100).contains(n))
            .map(Self)
            .ok_or_else(|| format!("{n} is not a lockout threshold (1-100 failed attempts)"))
    }

    #[must_use]
    pub fn get(self) -> i32 {
        i32::from(self.0)
    }
}

impl Default for LockAfter {
    fn default() -> Self {
        Self(u8::try_from(LOCK_AFTER).unwrap_or(5))
    }
}

/// A whole number as typed on the command line (thresholds).
fn number(s: &str) -> Result<u32, String> {
    s.trim().parse::<u32>().map_err(|_| format!("'{}' is not a whole number", s.trim()))
}

impl FromStr for LockAfter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::new(number(s)?)
    }
}

impl fmt::Display for LockAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The organisation a sign-in attempt named: the text as typed and what it resolved to.
#[derive(Debug, Clone, Copy)]
pub struct NamedOrganisation<'a> {
    pub typed: &'a str,
    pub tenant: Option<TenantId>,
}

impl NamedOrganisation<'_> {
    /// An organisation known by id (a challenge or an invitation names it).
    #[must_use]
    pub fn resolved(tenant: TenantId) -> Self {
        Self { typed: "", tenant: Some(tenant) }
    }
}

/// What one failure counter is about (see the module comment).
#[derive(Debug, Clone)]
pub struct LockKey {
    hash: [u8; 32],
    user: Option<Uuid>,
}

impl LockKey {
    /// The HMAC the key's row is stored under (for a statement that reads it beside other things).
    pub(crate) fn digest(&self) -> &[u8] {
        &self.hash
    }

    /// The same key, naming `user` as the account it belongs to (only so that an unlock can
    /// find the row; the digest does not depend on it).
    #[must_use]
    pub(crate) fn for_user(self, user: Option<Uuid>) -> Self {
        Self { user, ..self }
    }
}

/// The one lockout: the threshold and the secret lock keys are hashed under.
#[derive(Clone)]
pub struct Lockout {
    secret: [u8; 32],
    lock_after: LockAfter,
}

impl std::fmt::Debug for Lockout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lockout").field("lock_after", &self.lock_after).finish_non_exhaustive()
    }
}

/// IPv4 as is (IPv4-mapped IPv6 included); IPv6 by its /64, as the per-address budget does.
fn source_bucket(ip: Option<IpAddr>) -> String {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V6(v6)) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o).to_string()
        }
        Some(v4) => v4.to_string(),
        None => "-".to_owned(),
    }
}

impl Lockout {
    /// Only `Authenticator::lockout` builds one (at the deployment's threshold).
    #[must_use]
    pub(crate) fn new(secret: [u8; 32], lock_after: LockAfter) -> Self {
        Self { secret, lock_after }
    }

    #[must_use]
    pub fn lock_after(&self) -> LockAfter {
        self.lock_after
    }

    /// The key of a sign-in attempt: (organisation as named, email) from `source`. `user` is the
    /// account the email belongs to, if any (only so that an unlock can find the row).
    #[must_use]
    pub fn sign_in(
        &self,
        organisation: NamedOrganisation<'_>,
        email: &EmailAddress,
        source: Option<IpAddr>,
        user: Option<Uuid>,
    ) -> LockKey {
        let org = match organisation.tenant {
            Some(t) => format!("id:{}", t.as_uuid()),
            None => format!("typed:{}", organisation.typed.trim().to_lowercase()),
        };
        let source = source_bucket(source);
        let hash = hmac_sha256(
            &self.secret,
            &[b"sign-in\0".as_slice(), org.as_bytes(), b"\0", email.as_str().as_bytes(), b"\0", source.as_bytes()],
        );
        LockKey { hash, user }
    }

    /// The key of a signed-in user's own credential checks (any address).
    #[must_use]
    pub fn account(&self, user: Uuid) -> LockKey {
        LockKey { hash: hmac_sha256(&self.secret, &[b"account\0".as_slice(), user.as_bytes()]), user: Some(user) }
    }

    /// `Locked` (with the seconds left) while `key` is locked.
    ///
    /// # Errors
    /// [`IdentityError::Locked`], or a store error.
    pub async fn ensure_open(&self, g: &mut GlobalTx, key: &LockKey) -> Result<(), IdentityError> {
        self.ensure_open_counted(g, key).await.map(|_| ())
    }

    /// [`Self::ensure_open`], answering whether failures are counted against `key` (when not,
    /// a passed check has nothing to reset: [`Self::passed`] can be skipped).
    ///
    /// # Errors
    /// [`IdentityError::Locked`], or a store error.
    pub async fn ensure_open_counted(&self, g: &mut GlobalTx, key: &LockKey) -> Result<bool, IdentityError> {
        let row =
            sqlx::query_scalar!("select locked_until from credential_failures where lock_key = $1", &key.hash[..])
                .fetch_optional(g.conn())
                .await?;
        Self::judge(row)
    }

    /// What a key's row says, as read (`None`: no row; else its `locked_until`): `Locked` (with
    /// the seconds left) while locked, else whether failures are counted. For a statement that
    /// reads the row beside other things (password sign-in reads it with the account).
    ///
    /// # Errors
    /// [`IdentityError::Locked`].
    pub(crate) fn judge(row: Option<Option<chrono::DateTime<Utc>>>) -> Result<bool, IdentityError> {
        let Some(until) = row else {
            return Ok(false);
        };
        match until {
            Some(until) if until > Utc::now() => {
                let retry_after = u64::try_from((until - Utc::now()).num_seconds().max(1)).unwrap_or(1);
                Err(IdentityError::Locked { retry_after })
            }
            _ => Ok(true),
        }
    }

    /// Counts one failure of `key`: at the threshold the key locks for a minute, and each
    /// further failure doubles the lock, up to [`MAX_LOCK_MINUTES`]. Commit `g` to keep it.
    ///
    /// # Errors
    /// A store error.
    pub async fn failed(&self, g: &mut GlobalTx, key: &LockKey) -> Result<(), IdentityError> {
        // Rows quiet for a day are forgotten (unknown pairs would otherwise pile up).
        sqlx::query!(
            "delete from credential_failures
              where last_failure_at < now() - interval '1 day' and (locked_until is null or locked_until < now())"
        )
        .execute(g.conn())
        .await?;
        sqlx::query!(
            "insert into credential_failures as f (lock_key, user_id, failures, locked_until)
             values ($1, $2, 1, case when 1 >= $3 then now() + interval '1 minute' end)
             on conflict (lock_key) do update
                set failures = f.failures + 1,
                    user_id = coalesce(f.user_id, excluded.user_id),
                    locked_until = case when f.failures + 1 >= $3
                        then now() + make_interval(mins => least($4, power(2, least(f.failures + 1 - $3, 6))::int))
                        else f.locked_until end,
                    last_failure_at = now()",
            &key.hash[..],
            key.user,
            self.lock_after.get(),
            MAX_LOCK_MINUTES,
        )
        .execute(g.conn())
        .await?;
        Ok(())
    }

    /// The check passed: `key` starts from zero again.
    ///
    /// # Errors
    /// A store error.
    pub async fn passed(&self, g: &mut GlobalTx, key: &LockKey) -> Result<(), IdentityError> {
        sqlx::query!("delete from credential_failures where lock_key = $1", &key.hash[..]).execute(g.conn()).await?;
        Ok(())
    }
}

/// Is any key of `user` locked now?
///
/// # Errors
/// A store error.
pub async fn is_locked(g: &mut GlobalTx, user: Uuid) -> Result<bool, IdentityError> {
    Ok(sqlx::query_scalar!(
        r#"select exists(select 1 from credential_failures where user_id = $1 and locked_until > now()) as "locked!""#,
        user
    )
    .fetch_one(g.conn())
    .await?)
}

/// Admin unlock: forgets every failure counted against `user` (every organisation, every
/// address, their own checks). Returns whether anything was locked.
///
/// # Errors
/// A store error.
pub async fn clear_user(g: &mut GlobalTx, user: Uuid) -> Result<bool, IdentityError> {
    let locked = is_locked(g, user).await?;
    sqlx::query!("delete from credential_failures where user_id = $1", user).execute(g.conn()).await?;
    Ok(locked)
}

/// Admin unlock: forgets every failure counted against `user` ([`clear_user`]: every
/// organisation, every address), audited on the platform chain in `g` when something was counted.
/// Returns whether anything was counted.
///
/// # Errors
/// A store or audit error.
pub async fn unlock(g: &mut GlobalTx, who: &Who, user: Uuid) -> Result<bool, IdentityError> {
    let counted =
        sqlx::query_scalar!(r#"select exists(select 1 from credential_failures where user_id = $1) as "e!""#, user)
            .fetch_one(g.conn())
            .await?;
    clear_user(g, user).await?;
    if counted {
        let event = Event::new("user.unlocked", Entity::of("user", user)?, Changes::none())?;
        audit::record_platform(g.conn(), &who.actor, &who.origin, &event).await?;
    }
    Ok(counted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_organisations_sources_and_scopes() {
        let l = Lockout::new([7; 32], LockAfter::default());
        let email = EmailAddress::parse("a@b.example").expect("email");
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("ip"));
        let typed = |t: &'static str| NamedOrganisation { typed: t, tenant: None };
        let k = |o, s| l.sign_in(o, &email, s, None).hash;
        assert_eq!(k(typed("Acme "), ip("192.0.2.1")), k(typed("acme"), ip("192.0.2.1")), "typed like the lookup");
        assert_ne!(k(typed("acme"), ip("192.0.2.1")), k(typed("beta"), ip("192.0.2.1")));
        assert_ne!(k(typed("acme"), ip("192.0.2.1")), k(typed("acme"), ip("192.0.2.2")));
        assert_eq!(k(typed("acme"), ip("2001:db8::1")), k(typed("acme"), ip("2001:db8::ffff")), "same /64");
        assert_eq!(k(typed("acme"), ip("::ffff:192.0.2.1")), k(typed("acme"), ip("192.0.2.1")));
        let t = TenantId::new_random();
        assert_ne!(k(NamedOrganisation::resolved(t), ip("192.0.2.1")), k(typed("acme"), ip("192.0.2.1")));
        assert_ne!(Lockout::new([8; 32], LockAfter::default()).account(Uuid::nil()).hash, l.account(Uuid::nil()).hash);
    }

    #[test]
    fn thresholds_parse_strictly() {
        assert_eq!(LockAfter::default().get(), LOCK_AFTER);
        assert_eq!("7".parse::<LockAfter>().map(LockAfter::get), Ok(7));
        for bad in ["0", "101", "-1", "five", "", "5.5", "99999999999"] {
            assert!(bad.parse::<LockAfter>().is_err(), "{bad}");
        }
    }
}
