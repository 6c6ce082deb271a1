//! A signed-in user managing their own credentials.
//!
//! Changing a password needs the current one (a stolen access token alone cannot take the account
//! over); wrong guesses count toward the same lockout as failed logins; the new password passes
//! the policy; and the change bumps the user's session epoch, ending every session everywhere —
//! the caller's included, so a client signs in again with the new password.

use audit::{Changes, Entity, Event, Who};
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use store::GlobalTx;
use uuid::Uuid;

use crate::passwords::Hasher;
use crate::{IdentityError, sessions};

/// What a credential check of an existing user found.
pub(crate) struct Credentials {
    pub email: String,
    pub status: String,
    pub hash: Option<String>,
    pub locked_until: Option<chrono::DateTime<Utc>>,
}

pub(crate) async fn credentials(g: &mut GlobalTx, user: Uuid) -> Result<Credentials, IdentityError> {
    let r = sqlx::query!(
        r#"select u.email::text as "email!", u.status, c.password_hash as "hash?", c.locked_until
             from users u left join user_credentials c on c.user_id = u.id where u.id = $1"#,
        user
    )
    .fetch_optional(g.conn())
    .await?
    .ok_or(IdentityError::NotFound)?;
    Ok(Credentials { email: r.email, status: r.status, hash: r.hash, locked_until: r.locked_until })
}

/// Is the account locked out now (for reporting an unlock)?
pub async fn is_locked(g: &mut GlobalTx, user: Uuid) -> Result<bool, IdentityError> {
    let locked = sqlx::query_scalar!(
        r#"select exists(select 1 from user_credentials where user_id = $1 and locked_until > now()) as "locked!""#,
        user
    )
    .fetch_one(g.conn())
    .await?;
    Ok(locked)
}

/// Same counting as a failed login: five failures lock the account, then the lock doubles.
pub(crate) async fn record_failure(g: &mut GlobalTx, user: Uuid) -> Result<(), IdentityError> {
    sqlx::query!(
        "update user_credentials
            set failed_attempts = failed_attempts + 1,
                locked_until = case when failed_attempts + 1 >= $2
                    then now() + make_interval(mins => least(60, power(2, failed_attempts + 1 - $2)::int))
                    else locked_until end,
                updated_at = now()
          where user_id = $1",
        user,
        sessions::LOCK_AFTER,
    )
    .execute(g.conn())
    .await?;
    Ok(())
}

/// Checks `password` for an existing user, with lockout. `Ok(false)` means wrong (the failure is
/// already counted; commit `g` to keep the count).
pub(crate) async fn verify_password(
    g: &mut GlobalTx,
    hasher: &Hasher,
    user: Uuid,
    creds: &Credentials,
    password: &SecretString,
) -> Result<bool, IdentityError> {
    if let Some(until) = creds.locked_until.filter(|u| *u > Utc::now()) {
        let retry_after = u64::try_from((until - Utc::now()).num_seconds().max(1)).unwrap_or(1);
        return Err(IdentityError::Locked { retry_after });
    }
    let verified = hasher.verify(password, creds.hash.as_deref()).await?;
    if !verified.ok {
        record_failure(g, user).await?;
        return Ok(false);
    }
    Ok(true)
}

/// Replaces the user's password after verifying the current one. `identity` is what the new
/// password must not contain (email, organisation name). Commits its own transaction, so that a
/// wrong guess is counted even though the call fails.
pub async fn change_password(
    store: &store::Store,
    who: &Who,
    hasher: &Hasher,
    user: Uuid,
    current: &SecretString,
    new: &SecretString,
    identity: &[&str],
) -> Result<(), IdentityError> {
    if current.expose_secret() == new.expose_secret() {
        return Err(IdentityError::invalid("new_password", "must differ from the current password"));
    }
    let mut g = store.global_tx().await?;
    let creds = credentials(&mut g, user).await?;
    if creds.status != "active" {
        return Err(IdentityError::Unauthenticated);
    }
    if !verify_password(&mut g, hasher, user, &creds, current).await? {
        let event = Event::new("user.password_change_failed", Entity::of("user", user)?, Changes::none())?
            .with_reason("wrong current password")?;
        audit::record_platform(g.conn(), &who.actor, &who.origin, &event).await?;
        g.commit().await?;
        return Err(IdentityError::Forbidden {
            code: "wrong_password",
            reason: "the current password is not correct".into(),
        });
    }
    let mut names: Vec<&str> = vec![creds.email.as_str()];
    names.extend_from_slice(identity);
    sessions::set_password(&mut g, who, hasher, user, new, &names).await.map_err(|e| match e {
        IdentityError::Invalid { field: "password", reason } => weak("new_password", &reason),
        other => other,
    })?;
    g.commit().await?;
    Ok(())
}

/// A password the policy refuses: 422 `weak_password`, naming the field and why.
pub(crate) fn weak(field: &str, reason: &str) -> IdentityError {
    IdentityError::Unprocessable { code: "weak_password", reason: format!("{field}: {reason}") }
}
