//! A user's password credential: setting one (policy-checked; replacing one ends every session
//! through [`crate::revocation::bump_epoch`]) and a signed-in user changing their own.
//!
//! Changing a password needs the current one (a stolen access token alone cannot take the account
//! over); wrong guesses count in the one lockout against the user's own key, at the configured
//! threshold ([`crate::signin::lockout`]); the new password passes the policy; and the change
//! bumps the user's session epoch, ending every session everywhere — the caller's included, so a
//! client signs in again with the new password.

use audit::{Changes, Entity, Event, Who};
use secrecy::{ExposeSecret, SecretString};
use store::GlobalTx;
use uuid::Uuid;

use crate::IdentityError;
use crate::revocation;
use crate::signin::lockout::{self, LockKey, Lockout};
use crate::signin::passwords::{self, Hasher};
use crate::signin::sessions::Authenticator;

/// What a credential check of an existing user found.
pub(crate) struct Credentials {
    pub email: String,
    pub status: String,
    pub hash: Option<String>,
}

pub(crate) async fn credentials(g: &mut GlobalTx, user: Uuid) -> Result<Credentials, IdentityError> {
    let r = sqlx::query!(
        r#"select u.email::text as "email!", u.status, c.password_hash as "hash?"
             from users u left join user_credentials c on c.user_id = u.id where u.id = $1"#,
        user
    )
    .fetch_optional(g.conn())
    .await?
    .ok_or(IdentityError::NotFound)?;
    Ok(Credentials { email: r.email, status: r.status, hash: r.hash })
}

/// Checks `password` for an existing user against lock key `key` ([`crate::signin::lockout`]).
/// `Ok(false)` means wrong (the failure is already counted; commit `g` to keep the count).
pub(crate) async fn verify_password(
    g: &mut GlobalTx,
    hasher: &Hasher,
    lockout: &Lockout,
    key: &LockKey,
    creds: &Credentials,
    password: &SecretString,
) -> Result<bool, IdentityError> {
    lockout.ensure_open(g, key).await?;
    let verified = hasher.verify(password, creds.hash.as_deref()).await?;
    if !verified.ok {
        lockout.failed(g, key).await?;
        return Ok(false);
    }
    Ok(true)
}

/// Replaces the user's password after verifying the current one. `identity` is what the new
/// password must not contain (email, organisation name). Commits its own transaction, so that a
/// wrong guess is counted even though the call fails. The guesses count in `auth`'s lockout.
pub async fn change_password(
    store: &store::Store,
    who: &Who,
    auth: &Authenticator,
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
    let (hasher, lockout) = (&auth.hasher, auth.lockout());
    if !verify_password(&mut g, hasher, &lockout, &lockout.account(user), &creds, current).await? {
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
    set_password(&mut g, who, hasher, user, new, &names).await.map_err(|e| match e {
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
    passwords::check(password.expose_secret(), identity)
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
        revocation::bump_epoch(g, user).await?;
        // Guesses at the old password count for nothing now.
        lockout::clear_user(g, user).await?;
    }
    let action = if replaced { "user.password_changed" } else { "user.password_set" };
    let event = Event::new(action, Entity::of("user", user)?, Changes::none().field("password", "", "x"))?;
    audit::record_platform(g.conn(), &who.actor, &who.origin, &event).await?;
    Ok(())
}
