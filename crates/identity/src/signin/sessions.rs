//! Sessions: one user in one organisation, opened only once every factor has passed, kept alive by
//! rotating refresh tokens in families, and checked against the database on every request.
//!
//! Refresh tokens are opaque (`csr_<tenant>_<session>_<secret>`), stored as SHA-256, used once
//! each; presenting a used one again revokes the whole session (the family, through
//! [`crate::revocation`]) and is audited. Access tokens are short-lived JWTs, but they are not
//! trusted on their own: every request asks [`check`] (through a cache that `NOTIFY` on
//! [`crate::revocation::REVOCATION_CHANNEL`] clears on every node), so revocation takes effect
//! everywhere within a second. Password sign-in itself is [`crate::signin::login`].

use std::fmt;
use std::str::FromStr;

use audit::{Actor, Changes, Entity, Event, Origin, Who};
use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use store::{Store, TenantId, TenantTx};
use uuid::Uuid;

use crate::revocation::{self, Scope};
use crate::signin::lockout::{LockAfter, Lockout};
use crate::signin::passwords::Hasher;
use crate::signin::suspicious::SuspiciousIps;
use crate::signin::tokens::{ACCESS_TTL_SECS, Claims, TokenKey};
use crate::{IdentityError, Role};

/// Absolute session lifetime.
pub const SESSION_TTL_DAYS: i64 = 30;
/// A session unused for this long is dead (checked server-side on every request and refresh).
pub const IDLE_TIMEOUT_MINUTES: i64 = 30;

/// Tokens handed to a client after login or refresh.
#[derive(Debug, Clone)]
pub struct Issued {
    pub session_id: Uuid,
    pub tenant: TenantId,
    pub user_id: Uuid,
    pub role: Role,
    pub access_token: String,
    pub access_expires_in: i64,
    pub refresh_token: SecretString,
}

/// A refresh token as presented: the tenant it names, its session, the whole token for hashing.
#[derive(Clone)]
pub struct PresentedRefresh {
    pub tenant: TenantId,
    pub session: Uuid,
    hash: [u8; 32],
}

impl fmt::Debug for PresentedRefresh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedRefresh").field("tenant", &self.tenant).field("session", &self.session).finish()
    }
}

impl FromStr for PresentedRefresh {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdentityError::Unauthenticated;
        let rest = s.strip_prefix("csr_").ok_or_else(bad)?;
        let mut parts = rest.split('_');
        let (t, sid, secret) =
            (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
        if parts.next().is_some() || t.len() != 32 || sid.len() != 32 || secret.len() != 64 {
            return Err(bad());
        }
        if !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let tenant = Uuid::try_parse(t).ok().and_then(|u| TenantId::from_uuid(u).ok()).ok_or_else(bad)?;
        let session = Uuid::try_parse(sid).map_err(|_| bad())?;
        Ok(Self { tenant, session, hash: Sha256::digest(s.as_bytes()).into() })
    }
}

fn new_refresh(tenant: TenantId, session: Uuid) -> (SecretString, [u8; 32]) {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("csr_{}_{}_{}", tenant.as_uuid().simple(), session.simple(), hex::encode(secret));
    let hash = Sha256::digest(token.as_bytes()).into();
    (SecretString::from(token), hash)
}

/// What `Authenticator::login` enforces per account, configurable per deployment
/// (`--lockout-after`, `--suspicious-ips`). The thresholds' constructors are the only place the
/// numbers are checked, so an `Authenticator` can never run with a threshold of zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginPolicy {
    pub lock_after: LockAfter,
    pub suspicious_ips: SuspiciousIps,
}

/// Everything sign-in needs besides the database.
#[derive(Debug, Clone)]
pub struct Authenticator {
    pub hasher: Hasher,
    pub key: TokenKey,
    /// Lockout threshold and suspicious-login threshold (configurable; defaults as before).
    pub policy: LoginPolicy,
}

impl Authenticator {
    /// The one lockout ([`crate::signin::lockout`]) at this deployment's threshold: the only way
    /// to obtain a [`Lockout`], so no credential check can count at another threshold.
    #[must_use]
    pub fn lockout(&self) -> Lockout {
        Lockout::new(self.key.derive("countersign-lockout-v1"), self.policy.lock_after)
    }

    /// Opens a session for a user who has passed every factor the login needs (password, email
    /// code, second factor): re-checks the user and the membership now, writes the session and
    /// its first refresh token, and audits `auth.login_succeeded` with the method, all in one
    /// organisation transaction.
    pub async fn open_session(
        &self,
        store: &Store,
        tenant: TenantId,
        user: Uuid,
        origin: &Origin,
        method: &str,
    ) -> Result<Issued, IdentityError> {
        let tx = store.tenant_tx(tenant).await?;
        self.open_session_in(tx, user, origin, method).await
    }

    /// [`Self::open_session`] in `tx` (which it commits): one statement checks the user and the
    /// membership and inserts the session and its first refresh token, then the audit event.
    pub(crate) async fn open_session_in(
        &self,
        mut tx: TenantTx,
        user: Uuid,
        origin: &Origin,
        method: &str,
    ) -> Result<Issued, IdentityError> {
        let issued = self.open_session_within(&mut tx, user, origin, method).await?;
        tx.commit().await?;
        Ok(issued)
    }

    /// [`Self::open_session_in`] without committing: the caller's transaction also holds what
    /// made the session possible (a portal link consumed in the same transaction).
    pub(crate) async fn open_session_within(
        &self,
        tx: &mut TenantTx,
        user: Uuid,
        origin: &Origin,
        method: &str,
    ) -> Result<Issued, IdentityError> {
        let tenant = tx.tenant();
        let session_id = Uuid::now_v7();
        let (refresh, hash) = new_refresh(tenant, session_id);
        let Some(role) = sqlx::query_scalar!(
            "with m as (
                 select m.id, m.role, u.session_epoch from memberships m join users u on u.id = m.user_id
                  where m.user_id = $1 and m.status = 'active' and m.deleted_at is null and u.status = 'active'
                    and m.valid_from <= now() and (m.valid_until is null or m.valid_until > now())
             ), s as (
                 insert into sessions (tenant_id, id, user_id, membership_id, role, user_epoch, expires_at, ip, user_agent, method)
                 select current_setting('app.tenant_id')::uuid, $2, $1, m.id, m.role, m.session_epoch,
                        now() + make_interval(days => $3::int), $4::text::inet, $5, $7
                   from m
                 returning role
             ), r as (
                 insert into refresh_tokens (tenant_id, token_hash, session_id)
                 select current_setting('app.tenant_id')::uuid, $6, $2 from s
             )
             select role from s",
            user,
            session_id,
            i32::try_from(SESSION_TTL_DAYS).unwrap_or(30),
            origin.ip.map(|ip| ip.to_string()),
            origin.user_agent.as_deref(),
            &hash[..],
            method,
        )
        .fetch_optional(tx.conn())
        .await?
        else {
            return Err(IdentityError::Unauthenticated);
        };
        let role: Role = role.parse()?;
        let who = Who::new(Actor::user(user, Some(role.as_str())), origin.clone());
        let event = Event::new(
            "auth.login_succeeded",
            Entity::of("session", session_id)?,
            Changes::none().field("method", None::<&str>, method),
        )?;
        audit::record_by(tx, &who, &event).await?;
        Ok(self.tokens(tenant, session_id, user, role, refresh))
    }

    /// The answer to a client: `refresh` (already stored) and a freshly signed access token.
    fn tokens(&self, tenant: TenantId, session_id: Uuid, user: Uuid, role: Role, refresh: SecretString) -> Issued {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            tid: tenant.as_uuid(),
            sid: session_id,
            role: role.as_str().to_owned(),
            iat: now,
            exp: now + ACCESS_TTL_SECS,
        };
        Issued {
            session_id,
            tenant,
            user_id: user,
            role,
            access_token: self.key.sign(&claims),
            access_expires_in: ACCESS_TTL_SECS,
            refresh_token: refresh,
        }
    }

    /// Rotates a refresh token. A token already used is a replay: the session (every token of
    /// the family) is revoked, the reuse audited, and the caller refused.
    ///
    /// One statement does the rotation: it marks the presented token used (only if it was not:
    /// of two concurrent uses, one finds it unused, the other waits for its row lock and then
    /// finds it used), checks the session with [`check`]'s conditions, records the session's use,
    /// and inserts the next token only when the session is alive; a dead session leaves the
    /// transaction uncommitted, so nothing of it stays. Then one COMMIT. Every row is named by
    /// its full primary key (the tenant too, which RLS also enforces) so the cached plan is one
    /// unique probe each whatever the table statistics say (see [`check`]).
    pub async fn refresh(
        &self,
        store: &Store,
        presented: &PresentedRefresh,
        origin: &Origin,
    ) -> Result<Issued, IdentityError> {
        let (next, next_hash) = new_refresh(presented.tenant, presented.session);
        let mut tx = store.tenant_tx(presented.tenant).await?;
        let row = sqlx::query!(
            r#"with used as (
                   update refresh_tokens set used_at = now()
                    where tenant_id = $5 and token_hash = $1 and session_id = $2 and used_at is null
                   returning session_id
               ), live as (
                   -- The conditions of `check`.
                   select s.user_id, s.role, m.valid_until, s.last_seen_at < now() - interval '1 minute' as stale
                     from used
                     join sessions s on s.tenant_id = $5 and s.id = used.session_id
                     join memberships m on m.tenant_id = s.tenant_id and m.id = s.membership_id
                     join users u on u.id = s.user_id
                    where s.id = $2 and s.revoked_at is null and s.expires_at > now()
                      and s.last_seen_at > now() - make_interval(mins => $4::int)
                      and u.status = 'active' and u.session_epoch = s.user_epoch
                      and m.status = 'active' and m.deleted_at is null and m.role = s.role
                      and m.valid_from <= now() and (m.valid_until is null or m.valid_until > now())
               ), seen as (
                   update sessions set last_seen_at = now()
                    where tenant_id = $5 and id = $2 and exists(select 1 from live where stale)
               ), issued as (
                   insert into refresh_tokens (tenant_id, token_hash, session_id)
                   select current_setting('app.tenant_id')::uuid, $3, $2 from live
               )
               select exists(select 1 from used) as "used!",
                      exists(select 1 from refresh_tokens
                              where tenant_id = $5 and token_hash = $1 and session_id = $2) as "known!",
                      live.user_id as "user_id?", live.role as "role?"
                 from (select) as one left join live on true"#,
            &presented.hash[..],
            presented.session,
            &next_hash[..],
            i32::try_from(IDLE_TIMEOUT_MINUTES).unwrap_or(30),
            presented.tenant.as_uuid(),
        )
        .fetch_one(tx.conn())
        .await?;
        if !row.used {
            // Nothing was written. A token of this family that exists but was used: a replay.
            if row.known {
                let who = Who::new(Actor::system("auth:refresh"), origin.clone());
                revocation::revoke(&mut tx, &who, Scope::Session(presented.session), "refresh_token_reused").await?;
                let event =
                    Event::new("auth.refresh_reused", Entity::of("session", presented.session)?, Changes::none())?;
                audit::record_by(&mut tx, &who, &event).await?;
                tx.commit().await?;
                tracing::warn!(tenant = %presented.tenant, session = %presented.session, "refresh token replayed; family revoked");
            }
            return Err(IdentityError::Unauthenticated);
        }
        // Used but the session is dead: dropping the transaction rolls the use back.
        let (Some(user), Some(role)) = (row.user_id, row.role) else {
            return Err(IdentityError::Unauthenticated);
        };
        let role: Role = role.parse()?;
        tx.commit().await?;
        Ok(self.tokens(presented.tenant, presented.session, user, role, next))
    }
}

/// A live session as the request path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub user_id: Uuid,
    pub role: Role,
    /// The membership ends then (guests): no cache may keep the session past it.
    pub valid_until: Option<DateTime<Utc>>,
    /// The organisation requires a second factor and this session's sign-in did not bring one
    /// from elsewhere (the identity provider's, or a portal link's): whether an authenticator
    /// app must be set up first is then [`crate::signin::mfa::enrolment_due`]'s question.
    pub factor_required: bool,
}

/// Sign-in methods whose session needs no authenticator app of its own in an organisation that
/// requires a second factor: the identity provider asserted one, or the session is a portal's
/// (an outside party's person, who never sees the organisation's pages).
const FACTOR_FROM_ELSEWHERE: [&str; 2] = ["oidc+idp_mfa", "portal_link"];

/// Is the session alive? Not revoked, not expired, not idle, issued under the user's current
/// epoch, the user active, the membership active and still holding the session's role. Records
/// use at most once a minute (for the idle timeout).
///
/// The session is named by its primary key `(tenant_id, id)` although RLS enforces the tenant:
/// with `id` alone, a generic plan made while the table's statistics were stale (a fresh
/// organisation, a burst of sign-ins) was seen to AND the `id` index with a whole scan of the
/// partial index of live sessions (`revoked_at is null`), a cost that grows with every session.
pub async fn check(tx: &mut TenantTx, session: Uuid) -> Result<Option<SessionState>, IdentityError> {
    let row = sqlx::query!(
        r#"select s.user_id, s.role, m.valid_until, s.last_seen_at < now() - interval '1 minute' as "stale!",
                  t.require_mfa, s.method
             from sessions s
             join memberships m on m.tenant_id = s.tenant_id and m.id = s.membership_id
             join users u on u.id = s.user_id
             join tenants t on t.id = s.tenant_id
            where s.tenant_id = $3 and s.id = $1 and s.revoked_at is null and s.expires_at > now()
              and s.last_seen_at > now() - make_interval(mins => $2::int)
              and u.status = 'active' and u.session_epoch = s.user_epoch
              and m.status = 'active' and m.deleted_at is null and m.role = s.role
              and m.valid_from <= now() and (m.valid_until is null or m.valid_until > now())"#,
        session,
        i32::try_from(IDLE_TIMEOUT_MINUTES).unwrap_or(30),
        tx.tenant().as_uuid(),
    )
    .fetch_optional(tx.conn())
    .await?;
    let Some(r) = row else { return Ok(None) };
    if r.stale {
        sqlx::query!(
            "update sessions set last_seen_at = now() where tenant_id = $2 and id = $1",
            session,
            tx.tenant().as_uuid()
        )
        .execute(tx.conn())
        .await?;
    }
    let factor_required = r.require_mfa && !r.method.as_deref().is_some_and(|m| FACTOR_FROM_ELSEWHERE.contains(&m));
    Ok(Some(SessionState { user_id: r.user_id, role: r.role.parse()?, valid_until: r.valid_until, factor_required }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_parse_strictly() {
        let t = TenantId::new_random();
        let s = Uuid::now_v7();
        let (tok, hash) = new_refresh(t, s);
        use secrecy::ExposeSecret;
        let p: PresentedRefresh = tok.expose_secret().parse().expect("parses");
        assert_eq!((p.tenant, p.session, p.hash), (t, s, hash));
        for bad in [
            "",
            "csr_",
            "csk_x_y_z",
            &tok.expose_secret().replace("csr_", "csk_"),
            &format!("{}_x", tok.expose_secret()),
        ] {
            assert!(bad.parse::<PresentedRefresh>().is_err(), "{bad}");
        }
    }
}
