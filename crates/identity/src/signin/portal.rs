//! Portal links (issue 16): how a vendor's or client's person signs in without a password. A
//! link opens one short session for the one person it names, in the one relation it names,
//! once, before it expires, unless it was revoked.
//!
//! Token: `csp_<tenant>_<link>_<secret>` (32, 32 and 64 hex digits); only its SHA-256 is stored.
//! Consuming it is one `UPDATE … WHERE consumed_at IS NULL AND revoked_at IS NULL AND
//! expires_at > now()` in the organisation's transaction (of two concurrent uses exactly one
//! finds it unconsumed), followed in that same transaction by the ordinary session
//! ([`Authenticator`]'s, with its membership checks) and the audit events: a failure anywhere
//! rolls the consumption back. Links are made and revoked by the administration layer's `relations` module.

use std::fmt;
use std::str::FromStr;

use audit::{Actor, Changes, Entity, Event, Origin, Who};
use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use store::{RelationScope, Store, TenantId};
use uuid::Uuid;

use crate::IdentityError;
use crate::signin::sessions::{Authenticator, Issued};

/// Default lifetime of a portal link.
pub const DEFAULT_TTL_DAYS: i64 = 7;
/// The longest lifetime a link may be given.
pub const MAX_TTL_DAYS: i64 = 30;
/// A session opened by a portal link ends this long after it began (or earlier, idle).
pub const PORTAL_SESSION_HOURS: i32 = 8;

/// A portal link as presented: the organisation and link it names, and its hash.
#[derive(Clone)]
pub struct PresentedLink {
    pub tenant: TenantId,
    pub link: Uuid,
    hash: [u8; 32],
}

impl fmt::Debug for PresentedLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedLink").field("tenant", &self.tenant).field("link", &self.link).finish()
    }
}

impl FromStr for PresentedLink {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdentityError::Unauthenticated;
        let rest = s.strip_prefix("csp_").ok_or_else(bad)?;
        let mut parts = rest.split('_');
        let (t, id, secret) =
            (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
        if parts.next().is_some() || t.len() != 32 || id.len() != 32 || secret.len() != 64 {
            return Err(bad());
        }
        if !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let tenant = Uuid::try_parse(t).ok().and_then(|u| TenantId::from_uuid(u).ok()).ok_or_else(bad)?;
        let link = Uuid::try_parse(id).map_err(|_| bad())?;
        Ok(Self { tenant, link, hash: Sha256::digest(s.as_bytes()).into() })
    }
}

/// A fresh token for link `link` of `tenant`, and the hash to store.
pub(crate) fn new_token(tenant: TenantId, link: Uuid) -> (SecretString, [u8; 32]) {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("csp_{}_{}_{}", tenant.as_uuid().simple(), link.simple(), hex::encode(secret));
    let hash = Sha256::digest(token.as_bytes()).into();
    (SecretString::from(token), hash)
}

fn gone(code: &'static str, reason: &str) -> IdentityError {
    IdentityError::Gone { code, reason: reason.to_owned() }
}

/// Consumes a portal link for relation `relation` (the relation the link was opened for, from
/// the URL) and opens the session of the person it names.
///
/// # Errors
/// `Unauthenticated` for an unknown or forged token, a token of another relation (not consumed),
/// or a person no longer active; `Gone` with `portal_link_used` (a replay, audited),
/// `portal_link_revoked` or `portal_link_expired`.
pub async fn consume(
    store: &Store,
    auth: &Authenticator,
    presented: &PresentedLink,
    relation: Uuid,
    origin: &Origin,
) -> Result<Issued, IdentityError> {
    // The link is found by its hash alone; no person is signed in yet, so the organisation's
    // side of the relation dimension is in force for this one statement's purpose.
    let mut tx = store.relation_tx(presented.tenant, RelationScope::Internal).await?;
    let taken = sqlx::query!(
        r#"update portal_links l set consumed_at = now()
             from memberships m, relations r
            where l.token_hash = $1 and l.id = $2 and l.relation_id = $3
              and l.consumed_at is null and l.revoked_at is null and l.expires_at > now()
              and m.tenant_id = l.tenant_id and m.id = l.membership_id
              and r.tenant_id = l.tenant_id and r.id = l.relation_id and r.status = 'active'
           returning m.user_id, m.role, l.relation_id"#,
        &presented.hash[..],
        presented.link,
        relation
    )
    .fetch_optional(tx.conn())
    .await?;
    let Some(taken) = taken else {
        let found = sqlx::query!(
            r#"select l.relation_id, l.consumed_at is not null as "consumed!", l.revoked_at is not null as "revoked!",
                      l.expires_at <= now() as "expired!", m.user_id, m.role, r.status as relation_status
                 from portal_links l
                 join memberships m on m.tenant_id = l.tenant_id and m.id = l.membership_id
                 join relations r on r.tenant_id = l.tenant_id and r.id = l.relation_id
                where l.token_hash = $1 and l.id = $2"#,
            &presented.hash[..],
            presented.link
        )
        .fetch_optional(tx.conn())
        .await?;
        let Some(f) = found else { return Err(IdentityError::Unauthenticated) };
        // A link of another relation opens nothing and stays usable where it belongs.
        if f.relation_id != relation {
            return Err(IdentityError::Unauthenticated);
        }
        if f.consumed {
            let who = Who::new(Actor::user(f.user_id, Some(f.role.as_str())), origin.clone());
            let event = Event::new(
                "portal.link_replayed",
                Entity::of("portal_link", presented.link)?,
                Changes::none().field("relation_id", None::<String>, relation.to_string()),
            )?;
            audit::record_by(&mut tx, &who, &event).await?;
            tx.commit().await?;
            return Err(gone("portal_link_used", "this portal link has already been used; ask for a new one"));
        }
        if f.revoked || f.relation_status != "active" {
            return Err(gone("portal_link_revoked", "this portal link has been withdrawn; ask for a new one"));
        }
        if f.expired {
            return Err(gone("portal_link_expired", "this portal link has expired; ask for a new one"));
        }
        return Err(IdentityError::Unauthenticated);
    };
    let issued = auth.open_session_within(&mut tx, taken.user_id, origin, "portal_link").await?;
    sqlx::query!(
        "update sessions set expires_at = least(expires_at, now() + make_interval(hours => $2)) where id = $1",
        issued.session_id,
        PORTAL_SESSION_HOURS
    )
    .execute(tx.conn())
    .await?;
    sqlx::query!("update portal_links set session_id = $2 where id = $1", presented.link, issued.session_id)
        .execute(tx.conn())
        .await?;
    let who = Who::new(Actor::user(taken.user_id, Some(taken.role.as_str())), origin.clone());
    let event = Event::new(
        "portal.link_consumed",
        Entity::of("portal_link", presented.link)?,
        Changes::none().field("relation_id", None::<String>, taken.relation_id.to_string()).field(
            "session_id",
            None::<String>,
            issued.session_id.to_string(),
        ),
    )?;
    audit::record_by(&mut tx, &who, &event).await?;
    tx.commit().await?;
    Ok(issued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn portal_tokens_parse_strictly() {
        let t = TenantId::new_random();
        let l = Uuid::now_v7();
        let (tok, hash) = new_token(t, l);
        let p: PresentedLink = tok.expose_secret().parse().expect("parses");
        assert_eq!((p.tenant, p.link, p.hash), (t, l, hash));
        for bad in [
            "",
            "csp_",
            "csi_x_y_z",
            &tok.expose_secret().replace("csp_", "csr_"),
            &format!("{}_x", tok.expose_secret()),
            &tok.expose_secret()[..tok.expose_secret().len() - 1],
        ] {
            assert!(bad.parse::<PresentedLink>().is_err(), "{bad}");
        }
    }
}
