//! Email one-time codes: 8 random digits, 10 minutes, single use, dead after 5 wrong guesses,
//! stored only as SHA-256(salt ‖ code), at most 5 per address and purpose per hour.
//!
//! Requesting a code never reveals whether the address belongs to anyone: every request writes a
//! row (unknown addresses get one with no user and a code nobody receives), is rate-limited the
//! same way, and answers the same; mail goes out in the background, so timing says nothing
//! either. Purposes: `login` (passwordless sign-in to one organisation), `verify_email` (proves
//! the address; joining plugs in at [`after_email_verified`]) and `mfa` (the second factor mailed
//! by password login; only `/auth/mfa` accepts it, bound to its challenge).

use std::sync::Arc;

use audit::{Actor, Changes, Entity, Event, Origin};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::{GlobalTx, Store, TenantId};
use uuid::Uuid;

use crate::directory::{joining, memberships};
use crate::signin::mail::{Mail, Mailer, send_detached};
use crate::{EmailAddress, IdentityError};

pub const CODE_DIGITS: usize = 8;
pub const CODE_TTL_MINUTES: i32 = 10;
/// Wrong guesses after which a code is dead.
pub const MAX_ATTEMPTS: i32 = 5;
/// Codes per address and purpose per rolling hour.
pub const MAX_PER_HOUR: i64 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Login,
    VerifyEmail,
    /// Mailed by password login as the second factor; never requested directly.
    Mfa,
}

impl Purpose {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::VerifyEmail => "verify_email",
            Self::Mfa => "mfa",
        }
    }
}

fn new_code() -> String {
    let n: u32 = rand::rng().random_range(0..100_000_000);
    format!("{n:08}")
}

pub(crate) fn code_hash(salt: &[u8], code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"countersign-email-code-v1\0");
    h.update(salt);
    h.update(code.as_bytes());
    h.finalize().into()
}

/// Constant-time equality for two digests.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A code is 8 ASCII digits; anything else cannot match (and is not worth a database trip).
pub(crate) fn well_formed(code: &str) -> bool {
    code.len() == CODE_DIGITS && code.bytes().all(|b| b.is_ascii_digit())
}

/// Writes a code row (rate-limited per address and purpose) and returns its id and the code.
pub(crate) async fn issue(
    g: &mut GlobalTx,
    email: &EmailAddress,
    user: Option<Uuid>,
    organisation: Option<TenantId>,
    purpose: Purpose,
) -> Result<(Uuid, String), IdentityError> {
    // Serialise requests for one address so two at once cannot both pass the limit.
    let lock_key = format!("email_code:{}:{}", email.as_str(), purpose.as_str());
    sqlx::query!("select pg_advisory_xact_lock(hashtextextended($1, 0))", lock_key).execute(g.conn()).await?;
    let recent = sqlx::query!(
        r#"select count(*) as "n!", extract(epoch from min(created_at) + interval '1 hour' - now())::bigint as wait
             from email_codes
            where email = $1::text::citext and purpose = $2 and created_at > now() - interval '1 hour'"#,
        email.as_str(),
        purpose.as_str()
    )
    .fetch_one(g.conn())
    .await?;
    if recent.n >= MAX_PER_HOUR {
        let retry_after = u64::try_from(recent.wait.unwrap_or(1).max(1)).unwrap_or(1);
        return Err(IdentityError::RateLimited { retry_after });
    }
    let code = new_code();
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
    let id = Uuid::now_v7();
    sqlx::query!(
        "insert into email_codes (id, email, user_id, organisation_id, purpose, salt, code_hash, expires_at)
         values ($1, $2::text::citext, $3, $4, $5, $6, $7, now() + make_interval(mins => $8::int))",
        id,
        email.as_str(),
        user,
        organisation.map(|t| t.as_uuid()),
        purpose.as_str(),
        &salt[..],
        &code_hash(&salt, &code)[..],
        CODE_TTL_MINUTES,
    )
    .execute(g.conn())
    .await?;
    Ok((id, code))
}

pub(crate) fn mail_for(to: &EmailAddress, code: &str, purpose: Purpose) -> Mail {
    let (subject, what) = match purpose {
        Purpose::Login => ("Your Countersign sign-in code", "sign in"),
        Purpose::VerifyEmail => ("Verify your email address for Countersign", "verify your email address"),
        Purpose::Mfa => ("Your Countersign verification code", "finish signing in"),
    };
    Mail {
        to: to.clone(),
        subject: subject.into(),
        text: format!(
            "Your code to {what} is: {code}\n\nIt expires in {CODE_TTL_MINUTES} minutes and works once.\n\
             If you did not ask for it, ignore this message; nobody can use it without your mailbox.\n"
        ),
    }
}

/// `POST /auth/email-code`: always `Ok(())` for a well-formed request (unless rate-limited),
/// whether or not the address belongs to a member; mail is sent only to real members (`login`)
/// or existing active users (`verify_email`, which precedes joining).
pub async fn request(
    store: &Store,
    mailer: &Arc<dyn Mailer>,
    tenant: Option<TenantId>,
    email: &EmailAddress,
    purpose: Purpose,
    origin: &Origin,
) -> Result<(), IdentityError> {
    if purpose == Purpose::Mfa {
        return Err(IdentityError::invalid("purpose", "expected one of: login, verify_email"));
    }
    let mut g = store.global_tx().await?;
    let user = sqlx::query!("select id, status from users where email_key = lower($1)", email.as_str())
        .fetch_optional(g.conn())
        .await?;
    // Asked whether or not the user exists (nil id), so both paths cost the same queries.
    let member = match tenant {
        Some(t) => {
            let mut tx = store.tenant_tx(t).await?;
            let m = memberships::is_active(&mut tx, user.as_ref().map_or(Uuid::nil(), |u| u.id)).await?;
            tx.commit().await?;
            m
        }
        None => false,
    };
    let deliver = user.as_ref().filter(|u| {
        u.status == "active"
            && tenant.is_some()
            && match purpose {
                Purpose::Login => member,
                Purpose::VerifyEmail | Purpose::Mfa => true,
            }
    });
    let (_, code) = issue(&mut g, email, deliver.map(|u| u.id), tenant, purpose).await?;
    if let Some(u) = deliver {
        let event = Event::new(
            "auth.email_code_sent",
            Entity::of("user", u.id)?,
            Changes::none().field("purpose", None::<&str>, purpose.as_str()).field(
                "organisation_id",
                None::<Uuid>,
                tenant.map(|t| t.as_uuid()),
            ),
        )?;
        audit::record_platform(g.conn(), &Actor::system("auth:email_code"), origin, &event).await?;
    }
    g.commit().await?;
    if deliver.is_some() {
        send_detached(mailer.clone(), mail_for(email, &code, purpose));
    }
    Ok(())
}

/// A code that matched and is now used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redeemed {
    pub user: Uuid,
    pub purpose: Purpose,
}

/// Redeems a `login` or `verify_email` code for `email` in `tenant`. Wrong, expired, used, dead
/// and unknown codes are one error, [`IdentityError::InvalidCode`]; a wrong guess counts against
/// every live code of the address there (so guesses spread over several codes gain nothing).
/// A `verify_email` code marks the address verified and runs [`after_email_verified`] in the
/// same transaction.
pub async fn redeem(
    store: &Store,
    tenant: Option<TenantId>,
    email: &EmailAddress,
    code: &str,
    origin: &Origin,
) -> Result<Redeemed, IdentityError> {
    let Some(tenant) = tenant else { return Err(IdentityError::InvalidCode) };
    if !well_formed(code) {
        return Err(IdentityError::InvalidCode);
    }
    let mut g = store.global_tx().await?;
    let lock_key = format!("email_code_redeem:{}", email.as_str());
    sqlx::query!("select pg_advisory_xact_lock(hashtextextended($1, 0))", lock_key).execute(g.conn()).await?;
    let live = sqlx::query!(
        "select id, user_id, purpose, salt, code_hash from email_codes
          where email = $1::text::citext and organisation_id = $2 and purpose in ('login', 'verify_email')
            and used_at is null and expires_at > now() and attempts < $3
          order by created_at desc
          for update",
        email.as_str(),
        tenant.as_uuid(),
        MAX_ATTEMPTS
    )
    .fetch_all(g.conn())
    .await?;
    let hit = live.iter().find(|r| same(&code_hash(&r.salt, code), &r.code_hash));
    let Some(hit) = hit else {
        if !live.is_empty() {
            let ids: Vec<Uuid> = live.iter().map(|r| r.id).collect();
            sqlx::query!("update email_codes set attempts = attempts + 1 where id = any($1)", &ids)
                .execute(g.conn())
                .await?;
            if let Some(user) = live.iter().find_map(|r| r.user_id) {
                let event = Event::new("auth.email_code_failed", Entity::of("user", user)?, Changes::none())?;
                audit::record_platform(g.conn(), &Actor::system("auth:email_code"), origin, &event).await?;
            }
            g.commit().await?;
        }
        return Err(IdentityError::InvalidCode);
    };
    sqlx::query!("update email_codes set used_at = now() where id = $1", hit.id).execute(g.conn()).await?;
    let Some(user) = hit.user_id else {
        g.commit().await?;
        return Err(IdentityError::InvalidCode);
    };
    let purpose = if hit.purpose == "verify_email" { Purpose::VerifyEmail } else { Purpose::Login };
    if purpose == Purpose::VerifyEmail {
        let changed = sqlx::query!(
            "update users set email_verified_at = now(), updated_at = now() where id = $1 and email_verified_at is null",
            user
        )
        .execute(g.conn())
        .await?
        .rows_affected();
        if changed > 0 {
            after_email_verified(&mut g, user, origin).await?;
        }
    }
    g.commit().await?;
    Ok(Redeemed { user, purpose })
}

/// Runs once, in the transaction that first marks `user`'s address verified: audits it, then
/// joins the organisations that list the address's domain ([`joining`]: active staff
/// under `auto_join`, pending under `admin_approval`), each audited in its own chain.
pub async fn after_email_verified(g: &mut GlobalTx, user: Uuid, origin: &Origin) -> Result<(), IdentityError> {
    let event = Event::new(
        "user.email_verified",
        Entity::of("user", user)?,
        Changes::none().field("email_verified", false, true),
    )?;
    audit::record_platform(g.conn(), &Actor::user(user, None), origin, &event).await?;
    let joined = joining::after_email_verified(g, user).await?;
    if !joined.is_empty() {
        tracing::info!(%user, organisations = joined.len(), "verified email joined organisations by domain");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_digits_and_hashes_are_salted() {
        for _ in 0..200 {
            let c = new_code();
            assert!(well_formed(&c), "{c}");
        }
        let code = "01234567";
        assert_ne!(code_hash(&[1; 16], code), code_hash(&[2; 16], code), "salt must matter");
        assert!(same(&code_hash(&[1; 16], code), &code_hash(&[1; 16], code)));
        for bad in ["", "1234567", "123456789", "1234567a", "١٢٣٤٥٦٧٨"] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}
