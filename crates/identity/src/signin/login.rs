//! Password sign-in, the orchestration: the account and its lock key, the password (one argon2
//! computation whatever the outcome), the membership, then a session or an MFA challenge.
//!
//! Every refusal of an (organisation, email, address) attempt is the same refusal and counts in
//! the one lockout ([`crate::signin::lockout`]); failures of a real account also feed the
//! suspicious-login signal ([`crate::signin::suspicious`]); every outcome is audited in the
//! organisation named.

use audit::{Actor, Changes, Entity, Event, Origin};
use secrecy::SecretString;
use store::{Store, TenantId};
use uuid::Uuid;

use crate::directory::tenants;
use crate::signin::lockout::{Lockout, NamedOrganisation};
use crate::signin::mfa::{self, Factors, FirstFactor, LoginOutcome};
use crate::signin::sessions::Authenticator;
use crate::signin::suspicious;
use crate::{EmailAddress, IdentityError};

struct Account {
    id: Uuid,
    status: String,
    hash: Option<String>,
    /// A TOTP is confirmed or the user is a platform admin: a second factor follows the password.
    second_factor: bool,
}

impl Authenticator {
    /// Password login to one organisation. Unknown organisation, unknown email, wrong password,
    /// disabled user and missing membership all answer `Unauthenticated` after the same argon2
    /// work and count alike against the attempt's lock key (organisation as named, email,
    /// source address); a locked key answers `Locked` to members and strangers alike — checked
    /// before the hash and again after it, so failures counted while it ran (guesses sent in
    /// parallel) lock the key for this attempt too. Every outcome is audited in the organisation.
    /// A correct password yields tokens only when no second factor is needed; otherwise an MFA
    /// challenge (see [`mfa::after_first_factor`]).
    ///
    /// Round trips are what a login costs besides its one argon2 computation: the common case
    /// (a member without a second factor and without counted failures) is one identity
    /// transaction (the account with the lock key's state in one statement, the lock key again
    /// after the hash) and one organisation
    /// transaction (membership and the organisation's MFA rule, then the session, its first
    /// refresh token and the audit event).
    pub async fn login(
        &self,
        store: &Store,
        factors: Factors<'_>,
        organisation: NamedOrganisation<'_>,
        email: &EmailAddress,
        password: &SecretString,
        origin: &Origin,
    ) -> Result<LoginOutcome, IdentityError> {
        let tenant = organisation.tenant;
        let lockout = self.lockout();
        // The lock key does not depend on the account (only the row it writes names the user),
        // so the account and the key's lock state are read in one statement.
        let probe = lockout.sign_in(organisation, email, origin.ip, None);
        let mut g = store.global_tx().await?;
        let row = sqlx::query!(
            r#"select u.id as "id?", u.status as "status?", c.password_hash as "hash?",
                      u.platform_admin as "platform_admin?",
                      exists(select 1 from user_totp t where t.user_id = u.id and t.confirmed_at is not null) as "totp!",
                      f.lock_key is not null as "counted!", f.locked_until as "locked_until?"
                 from (select) as one
                 left join (users u left join user_credentials c on c.user_id = u.id) on u.email_key = lower($1)
                 left join credential_failures f on f.lock_key = $2"#,
            email.as_str(),
            probe.digest(),
        )
        .fetch_one(g.conn())
        .await
        .map_err(IdentityError::from_store("user"))?;
        let account = match (row.id, row.status) {
            (Some(id), Some(status)) => Some(Account {
                id,
                status,
                hash: row.hash,
                second_factor: row.totp || row.platform_admin.unwrap_or(false),
            }),
            _ => None,
        };
        let key = probe.for_user(account.as_ref().map(|a| a.id));

        match Lockout::judge(row.counted.then_some(row.locked_until)) {
            Ok(_) => {}
            Err(locked @ IdentityError::Locked { .. }) => {
                g.commit().await?;
                if let Some(t) = tenant {
                    self.audit_failure(store, t, email, origin, "locked").await;
                }
                return Err(locked);
            }
            Err(e) => return Err(e),
        }
        let verified = self.hasher.verify(password, account.as_ref().and_then(|a| a.hash.as_deref())).await?;
        let account = match account {
            Some(a) if verified.ok => a,
            other => {
                lockout.failed(&mut g, &key).await?;
                let mut suspicious = None;
                if let Some(a) = &other {
                    let n = suspicious::record_failure(&mut g, a.id, origin, self.policy.suspicious_ips).await?;
                    suspicious = n.map(|n| (a.id, n));
                }
                g.commit().await?;
                if let Some(t) = tenant {
                    self.audit_failure(store, t, email, origin, "bad_credentials").await;
                    if let Some((user, n)) = suspicious {
                        suspicious::record_in_tenant(store, t, user, origin, n).await;
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
                              exists(select 1 from sso_only_rules r
                                      where r.break_glass_user is distinct from $2) as "sso_only!",
                              exists(select 1 from sso_only_rules r where r.break_glass_user = $2) as "break_glass!",
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
                    // SSO-only: the right password of a member is refused like a wrong one
                    // (audited as `sso_only`); the break-glass account always meets a second factor.
                    Some(f) if f.member && f.sso_only => Some(Some("sso_only")),
                    Some(f) if f.member => {
                        if !(f.require_mfa || account.second_factor || f.break_glass) {
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
            return Ok(LoginOutcome::Issued(issued));
        }
        // The count starts again only when a session opens (`after_first_factor`): a user who
        // will face a second factor keeps it until that is passed, so a known password does not
        // buy fresh guesses at the code with every login.
        mfa::after_first_factor(self, store, factors, tenant, account.id, FirstFactor::Password, origin).await
    }

    async fn audit_failure(&self, store: &Store, tenant: TenantId, email: &EmailAddress, origin: &Origin, why: &str) {
        let result = async {
            let mut tx = store.tenant_tx(tenant).await?;
            if tenants::current(&mut tx).await.is_err() {
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
