//! Interactive sessions: password login, rotating refresh tokens in families, revocation.
//!
//! A session is one user in one organisation. Its refresh tokens are opaque
//! (`csr_<tenant>_<session>_<secret>`), stored as SHA-256, used once each; presenting a used one
//! again revokes the whole session (the family) and is audited. Access tokens are short-lived
//! JWTs, but they are not trusted on their own: every request checks the session (through a
//! cache that `NOTIFY` on [`REVOCATION_CHANNEL`] clears on every node), so revocation — a role
//! change, deactivation, password change, an expired guest membership, "revoke all" — takes
//! effect everywhere within a second.

use std::fmt;
use std::str::FromStr;

use audit::{Actor, Changes, Entity, Event, Origin, Who};
use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::{Store, TenantId, TenantTx};
use uuid::Uuid;

use crate::lockout::{Lockout, NamedOrganisation};
use crate::passwords::Hasher;
use crate::tokens::{ACCESS_TTL_SECS, Claims, TokenKey};
use crate::{EmailAddress, IdentityError, Role};

/// Postgres channel on which revocations are announced (payload: [`Revocation`] as JSON).
pub const REVOCATION_CHANNEL: &str = "countersign_revocation";
/// Absolute session lifetime.
pub const SESSION_TTL_DAYS: i64 = 30;
/// A session unused for this long is dead (checked server-side on every request and refresh).
pub const IDLE_TIMEOUT_MINUTES: i64 = 30;
/// Failures before a lock key locks, unless configured otherwise
/// ([`crate::login_policy::LoginPolicy`]); each further failure doubles the lock.
pub const LOCK_AFTER: i32 = 5;

/// What a revocation covers: a tenant (all its sessions), a user (in one tenant or, without a
/// tenant, everywhere) or one session. Nodes drop every cached session it matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Uuid>,
}

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

/// Everything login needs besides the database.
#[derive(Debug, Clone)]
pub struct Authenticator {
    pub hasher: Hasher,
    pub key: TokenKey,
    /// Lockout threshold and suspicious-login threshold (configurable; defaults as before).
    pub policy: crate::login_policy::LoginPolicy,
}

struct Account {
    id: Uuid,
    status: String,
    hash: Option<String>,
    /// A TOTP is confirmed or the user is a platform admin: a second factor follows the password.
    second_factor: bool,
}

impl Authenticator {
    /// The one lockout ([`crate::lockout`]) at this deployment's threshold.
    #[must_use]
    pub fn lockout(&self) -> Lockout {
        Lockout::new(self.key.derive("countersign-lockout-v1"), self.policy.lock_after)
    }

    /// Password login to one organisation. Unknown organisation, unknown email, wrong password,
    /// disabled user and missing membership all answer `Unauthenticated` after the same argon2
    /// work and count alike against the attempt's lock key (organisation as named, email,
    /// source address); a locked key answers `Locked` to members and strangers alike — checked
    /// before the hash and again after it, so failures counted while it ran (guesses sent in
    /// parallel) lock the key for this attempt too. Every outcome is audited in the organisation.
    /// A correct password yields tokens only when no second factor is needed; otherwise an MFA
    /// challenge (see [`crate::mfa::after_first_factor`]).
    ///
    /// Round trips are what a login costs besides its one argon2 computation: the common case
    /// (a member without a second factor and without counted failures) is one identity
    /// transaction (the account, the lock key before and after the hash) and one organisation
    /// transaction (membership and the organisation's MFA rule, then the session, its first
    /// refresh token and the audit event).
    pub async fn login(
        &self,
        store: &Store,
        factors: crate::mfa::Factors<'_>,
        organisation: NamedOrganisation<'_>,
        email: &EmailAddress,
        password: &SecretString,
        origin: &Origin,
    ) -> Result<crate::mfa::LoginOutcome, IdentityError> {
        let tenant = organisation.tenant;
        let lockout = self.lockout();
        let mut g = store.global_tx().await?;
        let account = sqlx::query!(
            r#"select u.id, u.status, c.password_hash as "hash?", u.platform_admin,
                      exists(select 1 from user_totp t where t.user_id = u.id and t.confirmed_at is not null) as "totp!"
                 from users u left join user_credentials c on c.user_id = u.id
                where u.email = $1::text::citext"#,
            email.as_str()
        )
        .fetch_optional(g.conn())
        .await
        .map_err(IdentityError::from_store("user"))?
        .map(|r| Account {
            id: r.id,
            status: r.status,
            hash: r.hash,
            second_factor: r.totp || r.platform_admin,
        });
        let key = lockout.sign_in(organisation, email, origin.ip, account.as_ref().map(|a| a.id));

        match lockout.ensure_open(&mut g, &key).await {
            Err(locked @ IdentityError::Locked { .. }) => {
                g.commit().await?;
                if let Some(t) = tenant {
                    self.audit_failure(store, t, email, origin, "locked").await;
                }
                return Err(locked);
            }
            other => other?,
        }
        let verified = self.hasher.verify(password, account.as_ref().and_then(|a| a.hash.as_deref())).await?;
        let account = match account {
            Some(a) if verified.ok => a,
            other => {
                lockout.failed(&mut g, &key).await?;
                let mut suspicious = None;
                if let Some(a) = &other {
                    let n = crate::suspicious::record_failure(&mut g, a.id, origin, self.policy.suspicious_ips).await?;
                    suspicious = n.map(|n| (a.id, n));
                }
                g.commit().await?;
                if let Some(t) = tenant {
                    self.audit_failure(store, t, email, origin, "bad_credentials").await;
                    if let Some((user, n)) = suspicious {
                        crate::suspicious::record_in_tenant(store, t, user, origin, n).await;
                    }
                }
                return Err(IdentityError::Unauthenticated);
            }
        };
        // Checked again after the hash: a key that other attempts locked while it ran refuses
        // this one too, as one more failure answered like a wrong password (a 429 here would say
        // that this password was right). Otherwise: whether failures are counted against the key
        // (forgotten when a session opens).
        let counted = match lockout.ensure_open_counted(&mut g, &key).await {
            Ok(counted) => Some(counted),
            Err(IdentityError::Locked { .. }) => None,
            Err(e) => return Err(e),
        };
        if counted.is_some() && verified.rehash {
            let upgraded = self.hasher.hash(password).await?;
            sqlx::query!("update user_credentials set password_hash = $2 where user_id = $1", account.id, upgraded)
                .execute(g.conn())
                .await?;
        }
        g.commit().await?;
        // The right password where it opens nothing (no such organisation, a disabled user, no
        // membership) counts like a wrong one: every refusal of this pair is the same refusal.
        let mut opening = None;
        let refusal = match tenant {
            _ if counted.is_none() => Some(Some("locked")),
            None => Some(None),
            Some(_) if account.status != "active" => Some(Some("user_disabled")),
            Some(t) => {
                let mut tx = store.tenant_tx(t).await?;
                let found = sqlx::query!(
                    r#"select t.require_mfa,
                              exists(select 1 from memberships
                                      where user_id = $2 and status = 'active' and deleted_at is null
                                        and valid_from <= now() and (valid_until is null or valid_until > now())) as "member!"
                         from tenants t where t.id = $1"#,
                    t.as_uuid(),
                    account.id
                )
                .fetch_optional(tx.conn())
                .await?;
                match found {
                    Some(f) if f.member => {
                        if !(f.require_mfa || account.second_factor) {
                            opening = Some(tx);
                        }
                        None
                    }
                    _ => Some(Some("no_membership")),
                }
            }
        };
        if let Some(why) = refusal {
            let mut g = store.global_tx().await?;
            lockout.failed(&mut g, &key).await?;
            g.commit().await?;
            if let (Some(t), Some(why)) = (tenant, why) {
                self.audit_failure(store, t, email, origin, why).await;
            }
            return Err(IdentityError::Unauthenticated);
        }
        let Some(tenant) = tenant else { return Err(IdentityError::Unauthenticated) };
        if let Some(tx) = opening {
            // No second factor: every factor this sign-in needs is passed, and the count starts
            // again (what `after_first_factor` does, without asking again for what is known) —
            // after the session's transaction, so no connection is held while taking another.
            let issued = self.open_session_in(tx, account.id, origin, "password").await?;
            if counted == Some(true) {
                let reset = async {
                    let mut g = store.global_tx().await?;
                    lockout.passed(&mut g, &key).await?;
                    g.commit().await?;
                    Ok::<_, IdentityError>(())
                }
                .await;
                if let Err(e) = reset {
                    // The count stays: stricter, never looser.
                    tracing::warn!(error = %e, "could not reset a lock key's count after a login");
                }
            }
            return Ok(crate::mfa::LoginOutcome::Issued(issued));
        }
        // The count starts again only when a session opens (`after_first_factor`): a user who
        // will face a second factor keeps it until that is passed, so a known password does not
        // buy fresh guesses at the code with every login.
        crate::mfa::after_first_factor(
            self,
            store,
            factors,
            tenant,
            account.id,
            crate::mfa::FirstFactor::Password,
            origin,
        )
        .await
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
    async fn open_session_in(
        &self,
        mut tx: TenantTx,
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
                 insert into sessions (tenant_id, id, user_id, membership_id, role, user_epoch, expires_at, ip, user_agent)
                 select current_setting('app.tenant_id')::uuid, $2, $1, m.id, m.role, m.session_epoch,
                        now() + make_interval(days => $3::int), $4::text::inet, $5
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
        audit::record_by(&mut tx, &who, &event).await?;
        tx.commit().await?;
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
    /// transaction uncommitted, so nothing of it stays. Then one COMMIT.
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
                    where token_hash = $1 and session_id = $2 and used_at is null
                   returning session_id
               ), live as (
                   -- The conditions of `check`.
                   select s.user_id, s.role, m.valid_until, s.last_seen_at < now() - interval '1 minute' as stale
                     from used
                     join sessions s on s.id = used.session_id
                     join memberships m on m.tenant_id = s.tenant_id and m.id = s.membership_id
                     join users u on u.id = s.user_id
                    where s.id = $2 and s.revoked_at is null and s.expires_at > now()
                      and s.last_seen_at > now() - make_interval(mins => $4::int)
                      and u.status = 'active' and u.session_epoch = s.user_epoch
                      and m.status = 'active' and m.deleted_at is null and m.role = s.role
                      and m.valid_from <= now() and (m.valid_until is null or m.valid_until > now())
               ), seen as (
                   update sessions set last_seen_at = now() where id = $2 and exists(select 1 from live where stale)
               ), issued as (
                   insert into refresh_tokens (tenant_id, token_hash, session_id)
                   select current_setting('app.tenant_id')::uuid, $3, $2 from live
               )
               select exists(select 1 from used) as "used!",
                      exists(select 1 from refresh_tokens where token_hash = $1 and session_id = $2) as "known!",
                      live.user_id as "user_id?", live.role as "role?"
                 from (select) as one left join live on true"#,
            &presented.hash[..],
            presented.session,
            &next_hash[..],
            i32::try_from(IDLE_TIMEOUT_MINUTES).unwrap_or(30),
        )
        .fetch_one(tx.conn())
        .await?;
        if !row.used {
            // Nothing was written. A token of this family that exists but was used: a replay.
            if row.known {
                let who = Who::new(Actor::system("auth:refresh"), origin.clone());
                revoke(&mut tx, &who, Scope::Session(presented.session), "refresh_token_reused").await?;
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

impl Authenticator {
    async fn audit_failure(&self, store: &Store, tenant: TenantId, email: &EmailAddress, origin: &Origin, why: &str) {
        let result = async {
            let mut tx = store.tenant_tx(tenant).await?;
            if crate::tenants::current(&mut tx).await.is_err() {
                return Ok::<(), IdentityError>(());
            }
            let event = Event::new("auth.login_failed", Entity::of("login", email.as_str())?, Changes::none())?
                .with_reason(why)?;
            audit::record(&mut tx, &Actor::system("auth:login"), origin, &event).await?;
            tx.commit().await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not audit a failed login");
        }
    }
}

/// A live session as the request path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub user_id: Uuid,
    pub role: Role,
    /// The membership ends then (guests): no cache may keep the session past it.
    pub valid_until: Option<DateTime<Utc>>,
}

/// Is the session alive? Not revoked, not expired, not idle, issued under the user's current
/// epoch, the user active, the membership active and still holding the session's role. Records
/// use at most once a minute (for the idle timeout).
pub async fn check(tx: &mut TenantTx, session: Uuid) -> Result<Option<SessionState>, IdentityError> {
    let row = sqlx::query!(
        r#"select s.user_id, s.role, m.valid_until, s.last_seen_at < now() - interval '1 minute' as "stale!"
             from sessions s
             join memberships m on m.tenant_id = s.tenant_id and m.id = s.membership_id
             join users u on u.id = s.user_id
            where s.id = $1 and s.revoked_at is null and s.expires_at > now()
              and s.last_seen_at > now() - make_interval(mins => $2::int)
              and u.status = 'active' and u.session_epoch = s.user_epoch
              and m.status = 'active' and m.deleted_at is null and m.role = s.role
              and m.valid_from <= now() and (m.valid_until is null or m.valid_until > now())"#,
        session,
        i32::try_from(IDLE_TIMEOUT_MINUTES).unwrap_or(30),
    )
    .fetch_optional(tx.conn())
    .await?;
    let Some(r) = row else { return Ok(None) };
    if r.stale {
        sqlx::query!("update sessions set last_seen_at = now() where id = $1", session).execute(tx.conn()).await?;
    }
    Ok(Some(SessionState { user_id: r.user_id, role: r.role.parse()?, valid_until: r.valid_until }))
}

/// Which sessions of the transaction's tenant to revoke.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    Session(Uuid),
    User(Uuid),
    Tenant,
}

/// Revokes sessions in the transaction's tenant, audits it, and announces it (delivered to every
/// node when the transaction commits). Returns how many sessions were live and are now revoked.
pub async fn revoke(tx: &mut TenantTx, who: &Who, scope: Scope, reason: &str) -> Result<u64, IdentityError> {
    let (session, user) = match scope {
        Scope::Session(s) => (Some(s), None),
        Scope::User(u) => (None, Some(u)),
        Scope::Tenant => (None, None),
    };
    let n = sqlx::query!(
        "update sessions set revoked_at = now(), revoked_reason = $3
          where revoked_at is null and ($1::uuid is null or id = $1) and ($2::uuid is null or user_id = $2)",
        session,
        user,
        reason
    )
    .execute(tx.conn())
    .await?
    .rows_affected();
    let payload = Revocation { tenant: Some(tx.tenant().as_uuid()), user, session };
    notify(tx.conn(), &payload).await?;
    let (entity, action) = match scope {
        Scope::Session(s) => (Entity::of("session", s)?, "session.revoked"),
        Scope::User(u) => (Entity::of("user", u)?, "session.revoked_for_user"),
        Scope::Tenant => (Entity::of("tenant", tx.tenant())?, "session.revoked_for_tenant"),
    };
    let event = Event::new(action, entity, Changes::none().field("revoked_sessions", 0, n))?.with_reason(reason)?;
    audit::record_by(tx, who, &event).await?;
    Ok(n)
}

pub(crate) async fn notify(conn: &mut sqlx::PgConnection, r: &Revocation) -> Result<(), IdentityError> {
    let payload = serde_json::to_string(r).map_err(|e| IdentityError::Internal(e.to_string()))?;
    sqlx::query!("select pg_notify($1, $2)", REVOCATION_CHANNEL, payload).execute(conn).await?;
    Ok(())
}

/// Sets (or replaces) a user's password after checking the policy. Replacing one bumps the
/// user's session epoch: every session of theirs, in every organisation, stops working.
pub async fn set_password(
    g: &mut store::GlobalTx,
    who: &Who,
    hasher: &Hasher,
    user: Uuid,
    password: &SecretString,
    identity: &[&str],
) -> Result<(), IdentityError> {
    use secrecy::ExposeSecret;
    crate::passwords::check(password.expose_secret(), identity)
        .map_err(|w| IdentityError::invalid("password", w.message()))?;
    let hash = hasher.hash(password).await?;
    let replaced = sqlx::query_scalar!(
        "insert into user_credentials (user_id, password_hash) values ($1, $2)
         on conflict (user_id) do update
            set password_hash = excluded.password_hash, password_changed_at = now(), updated_at = now()
         returning (xmax <> 0) as replaced",
        user,
        hash
    )
    .fetch_one(g.conn())
    .await
    .map_err(IdentityError::from_store("credentials"))?
    .unwrap_or(false);
    if replaced {
        bump_epoch(g, user).await?;
        // Guesses at the old password count for nothing now.
        crate::lockout::clear_user(g, user).await?;
    }
    let action = if replaced { "user.password_changed" } else { "user.password_set" };
    let event = Event::new(action, Entity::of("user", user)?, Changes::none().field("password", "", "x"))?;
    audit::record_platform(g.conn(), &who.actor, &who.origin, &event).await?;
    Ok(())
}

/// Ends every session of `user` everywhere (password change, deactivation).
pub async fn bump_epoch(g: &mut store::GlobalTx, user: Uuid) -> Result<(), IdentityError> {
    sqlx::query!("update users set session_epoch = session_epoch + 1, updated_at = now() where id = $1", user)
        .execute(g.conn())
        .await?;
    notify(g.conn(), &Revocation { tenant: None, user: Some(user), session: None }).await
}

/// Admin unlock: clears every lock counted against the user ([`crate::lockout::clear_user`]:
/// every organisation, every address). Audited when something was counted. Returns whether
/// anything was counted.
pub async fn unlock(g: &mut store::GlobalTx, who: &Who, user: Uuid) -> Result<bool, IdentityError> {
    let counted =
        sqlx::query_scalar!(r#"select exists(select 1 from credential_failures where user_id = $1) as "e!""#, user)
            .fetch_one(g.conn())
            .await?;
    crate::lockout::clear_user(g, user).await?;
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
        let json = serde_json::to_string(&Revocation { tenant: None, user: Some(s), session: None }).expect("json");
        assert_eq!(json, format!(r#"{{"user":"{s}"}}"#));
    }
}
