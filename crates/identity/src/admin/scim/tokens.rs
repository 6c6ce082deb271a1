//! SCIM bearer tokens: one organisation's identity provider presents one to provision its people.
//! Minted by the organisation's administrators and shown once; stored as SHA-256 of 32 random
//! bytes; revoked at once; last use recorded. Every change is audited.
//!
//! Presented form: `cssc_<tenant>_<token id>_<secret>` (UUIDs as 32 hex digits, secret as 64). The
//! token names its organisation, so it is looked up inside that organisation's RLS context.

use std::fmt;
use std::str::FromStr;

use audit::{Actor, Changes, Entity, Event, Origin, Who};
use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::SecretString;
use serde::Serialize;
use store::{TenantId, TenantTx};
use uuid::Uuid;

use crate::IdentityError;
use crate::admin::api_keys::{digest, same};

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ScimToken {
    pub id: Uuid,
    pub name: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A freshly minted token: `secret` is the only copy of the presentable token.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: ScimToken,
    pub secret: SecretString,
}

/// Mints a token (settings.manage: owners and admins). A name outside 1-100 characters is 422.
pub async fn create(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    name: &str,
) -> Result<IssuedToken, IdentityError> {
    crate::permitted(permit, authz::Action::SettingsManage, tx)?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(IdentityError::invalid("name", "must be 1-100 characters"));
    }
    let id = Uuid::now_v7();
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let created_by = format!("{}:{}", who.actor.kind.as_str(), who.actor.id);
    let created_at = sqlx::query_scalar!(
        "insert into scim_tokens (tenant_id, id, name, secret_hash, created_by)
         values ($1, $2, $3, $4, $5) returning created_at",
        tx.tenant().as_uuid(),
        id,
        name,
        &digest(&secret)[..],
        created_by
    )
    .fetch_one(tx.conn())
    .await
    .map_err(IdentityError::from_store("scim token"))?;
    let token = ScimToken { id, name: name.to_owned(), created_by, created_at, revoked_at: None, last_used_at: None };
    let event = Event::new("scim_token.created", Entity::of("scim_token", id)?, Changes::diff(None, Some(&token))?)?;
    audit::record_by(tx, who, &event).await?;
    let presented = PresentedToken { tenant: tx.tenant(), id, secret };
    Ok(IssuedToken { token, secret: SecretString::from(presented.to_string()) })
}

pub async fn list(tx: &mut TenantTx) -> Result<Vec<ScimToken>, IdentityError> {
    let rows = sqlx::query_as!(
        ScimToken,
        "select id, name, created_by, created_at, revoked_at, last_used_at
           from scim_tokens where tenant_id = $1 order by created_at desc",
        tx.tenant().as_uuid()
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("scim token"))?;
    Ok(rows)
}

/// Revokes a token at once; later presentations fail. Revoking twice is a no-op reported as found.
pub async fn revoke(tx: &mut TenantTx, who: &Who, permit: &authz::Permit, id: Uuid) -> Result<(), IdentityError> {
    crate::permitted(permit, authz::Action::SettingsManage, tx)?;
    let revoked = sqlx::query_scalar!(
        "update scim_tokens set revoked_at = coalesce(revoked_at, now())
          where tenant_id = $1 and id = $2 returning revoked_at",
        tx.tenant().as_uuid(),
        id
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(IdentityError::from_store("scim token"))?
    .ok_or(IdentityError::NotFound)?;
    let changes = Changes::none().field("revoked_at", None::<DateTime<Utc>>, revoked);
    let event = Event::new("scim_token.revoked", Entity::of("scim_token", id)?, changes)?;
    audit::record_by(tx, who, &event).await?;
    Ok(())
}

/// A token as presented by an identity provider, parsed but not yet checked.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedToken {
    pub tenant: TenantId,
    pub id: Uuid,
    secret: [u8; 32],
}

impl fmt::Debug for PresentedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedToken").field("tenant", &self.tenant).field("id", &self.id).finish_non_exhaustive()
    }
}

impl fmt::Display for PresentedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cssc_{}_{}_{}", self.tenant.as_uuid().simple(), self.id.simple(), hex::encode(self.secret))
    }
}

impl FromStr for PresentedToken {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdentityError::Unauthenticated;
        let rest = s.strip_prefix("cssc_").ok_or_else(bad)?;
        let mut parts = rest.split('_');
        let (Some(t), Some(i), Some(sec), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        if t.len() != 32 || i.len() != 32 || sec.len() != 64 {
            return Err(bad());
        }
        let tenant = Uuid::try_parse(t).ok().and_then(|u| TenantId::from_uuid(u).ok()).ok_or_else(bad)?;
        let id = Uuid::try_parse(i).map_err(|_| bad())?;
        let secret: [u8; 32] = hex::decode(sec).ok().and_then(|v| v.try_into().ok()).ok_or_else(bad)?;
        Ok(Self { tenant, id, secret })
    }
}

/// The identity provider of one organisation, proven by a live token. Only [`authenticate`]
/// makes one, and every provisioning write takes it: there is no way to provision without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioner {
    tenant: TenantId,
    token: Uuid,
    who: Who,
}

impl Provisioner {
    #[must_use]
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    #[must_use]
    pub fn token(&self) -> Uuid {
        self.token
    }

    /// The actor every provisioning change is audited as: the identity provider (its token).
    #[must_use]
    pub fn who(&self) -> &Who {
        &self.who
    }
}

/// Checks a presented token inside its own organisation's transaction (`tx` must be for
/// `token.tenant`). Unknown, wrong and revoked tokens all fail the same way.
pub async fn authenticate(
    tx: &mut TenantTx,
    token: &PresentedToken,
    origin: Origin,
) -> Result<Provisioner, IdentityError> {
    if tx.tenant() != token.tenant {
        return Err(IdentityError::Unauthenticated);
    }
    let row = sqlx::query!(
        r#"select secret_hash, (revoked_at is null) as "live!" from scim_tokens where tenant_id = $1 and id = $2"#,
        token.tenant.as_uuid(),
        token.id
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(IdentityError::from_store("scim token"))?;
    // Hash even when the token is unknown, so both paths cost the same.
    let presented = digest(&token.secret);
    let Some(row) = row else { return Err(IdentityError::Unauthenticated) };
    if !same(&presented, &row.secret_hash) || !row.live {
        return Err(IdentityError::Unauthenticated);
    }
    sqlx::query!(
        "update scim_tokens set last_used_at = now()
          where tenant_id = $1 and id = $2 and (last_used_at is null or last_used_at < now() - interval '1 minute')",
        token.tenant.as_uuid(),
        token.id
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("scim token"))?;
    Ok(Provisioner { tenant: token.tenant, token: token.id, who: Who::new(Actor::identity_provider(token.id), origin) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_tokens_round_trip_and_garbage_is_refused() {
        let k = PresentedToken { tenant: TenantId::new_random(), id: Uuid::now_v7(), secret: [9; 32] };
        let s = k.to_string();
        assert_eq!(s.parse::<PresentedToken>().ok(), Some(k.clone()));
        assert!(!format!("{k:?}").contains(&hex::encode([9u8; 32])), "Debug leaks the secret");
        let api_key_form = s.replacen("cssc_", "csk_", 1);
        for bad in
            ["", "cssc_", "Bearer x", &api_key_form, &format!("{s}_extra"), &s[..s.len() - 1], &s.replace('0', "g")]
        {
            assert!(bad.parse::<PresentedToken>().is_err(), "{bad}");
        }
    }
}
