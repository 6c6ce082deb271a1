//! API keys: created by tenant admins and shown once; stored as SHA-256 of 32 random bytes;
//! scoped to one organisation, a role and a set of permissions; optionally expiring; revoked
//! instantly; last use recorded. Every change is audited.
//!
//! Presented form: `csk_<tenant>_<key id>_<secret>` (UUIDs as 32 hex digits, secret as 64). The
//! key names its organisation, so it is looked up inside that organisation's RLS context.

use std::fmt;
use std::str::FromStr;

use audit::{Changes, Entity, Event, Who};
use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use store::{TenantId, TenantTx};
use uuid::Uuid;

use crate::admin::members::may_grant;
use crate::directory::scopes;
use crate::{IdentityError, Role};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub scopes: Vec<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A freshly created key: `secret` is the only copy of the presentable key.
#[derive(Debug)]
pub struct IssuedKey {
    pub key: ApiKey,
    pub secret: SecretString,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub role: Role,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Who is minting a key, and so the most the key may carry. Every face (HTTP, command line)
/// goes through [`create`], which applies the same limits.
#[derive(Debug, Clone, Copy)]
pub enum Minter<'a> {
    /// The host operator on the command line: any role, any known scope.
    Operator,
    /// A person signed in with this role: no role above their own (sessions hold every scope
    /// their role allows).
    Person { role: Role },
    /// An API key: no role above its own and no scope it lacks.
    Key { role: Role, scopes: &'a [String] },
}

impl Minter<'_> {
    /// 403 `role_escalation` for a role above the minter's, 403 `scope_escalation` for a scope
    /// a minting key lacks.
    fn allows(&self, role: Role, scopes: &[String]) -> Result<(), IdentityError> {
        let escalation = || IdentityError::Forbidden {
            code: "role_escalation",
            reason: "you cannot mint a key above your own role".into(),
        };
        match self {
            Self::Operator => Ok(()),
            Self::Person { role: mine } if may_grant(*mine, role) => Ok(()),
            Self::Person { .. } => Err(escalation()),
            Self::Key { role: mine, .. } if !may_grant(*mine, role) => Err(escalation()),
            Self::Key { scopes: mine, .. } => match scopes.iter().find(|s| !mine.contains(s)) {
                Some(s) => Err(IdentityError::Forbidden {
                    code: "scope_escalation",
                    reason: format!("you cannot grant scope {s}, which you do not hold"),
                }),
                None => Ok(()),
            },
        }
    }
}

pub(crate) fn digest(secret: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Compares without an early exit, so timing does not reveal how much of a hash matched.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Mints a key. Refused, before anything is written: a name outside 1-100 characters, a role
/// or scope above the minter's (403 `role_escalation` / `scope_escalation`), more than 50
/// scopes, a scope the server does not enforce (422 `unknown_scope`), an expiry in the past.
pub async fn create(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    by: Minter<'_>,
    new: &NewApiKey,
) -> Result<IssuedKey, IdentityError> {
    crate::permitted(permit, authz::Action::ApiKeysManage, tx)?;
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(IdentityError::invalid("name", "must be 1-100 characters"));
    }
    // The role first (then the scopes): the order the HTTP answers have always had.
    by.allows(new.role, &[])?;
    if new.scopes.len() > 50 {
        return Err(IdentityError::invalid("scopes", "at most 50"));
    }
    scopes::check_known(&new.scopes)?;
    by.allows(new.role, &new.scopes)?;
    let mut scopes = new.scopes.clone();
    scopes.sort();
    scopes.dedup();
    if new.expires_at.is_some_and(|e| e <= Utc::now()) {
        return Err(IdentityError::invalid("expires_at", "must be in the future"));
    }
    let id = Uuid::now_v7();
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let created_by = format!("{}:{}", who.actor.kind.as_str(), who.actor.id);
    let row = sqlx::query!(
        "insert into api_keys (tenant_id, id, name, role, scopes, secret_hash, created_by, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning created_at",
        tx.tenant().as_uuid(),
        id,
        name,
        new.role.as_str(),
        &scopes,
        &digest(&secret)[..],
        created_by,
        new.expires_at
    )
    .fetch_one(tx.conn())
    .await
    .map_err(IdentityError::from_store("api key"))?;
    let key = ApiKey {
        id,
        name: name.to_owned(),
        role: new.role.as_str().to_owned(),
        scopes,
        created_by,
        created_at: row.created_at,
        expires_at: new.expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    let event = Event::new("api_key.created", Entity::of("api_key", id)?, Changes::diff(None, Some(&key))?)?;
    audit::record_by(tx, who, &event).await?;
    let presented = PresentedKey { tenant: tx.tenant(), id, secret };
    Ok(IssuedKey { key, secret: SecretString::from(presented.to_string()) })
}

pub async fn list(tx: &mut TenantTx) -> Result<Vec<ApiKey>, IdentityError> {
    let rows = sqlx::query_as!(
        ApiKey,
        "select id, name, role, scopes, created_by, created_at, expires_at, revoked_at, last_used_at
           from api_keys where tenant_id = $1 order by created_at desc",
        tx.tenant().as_uuid()
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("api key"))?;
    Ok(rows)
}

/// Revokes a key at once; later presentations fail. Revoking twice is a no-op reported as found.
pub async fn revoke(tx: &mut TenantTx, who: &Who, permit: &authz::Permit, id: Uuid) -> Result<(), IdentityError> {
    crate::permitted(permit, authz::Action::ApiKeysManage, tx)?;
    let revoked = sqlx::query_scalar!(
        "update api_keys set revoked_at = coalesce(revoked_at, now()), updated_at = now()
          where tenant_id = $1 and id = $2 returning revoked_at",
        tx.tenant().as_uuid(),
        id
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(IdentityError::from_store("api key"))?
    .ok_or(IdentityError::NotFound)?;
    let changes = Changes::none().field("revoked_at", None::<DateTime<Utc>>, revoked);
    let event = Event::new("api_key.revoked", Entity::of("api_key", id)?, changes)?;
    audit::record_by(tx, who, &event).await?;
    Ok(())
}

/// A key as presented by a client, parsed but not yet checked.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedKey {
    pub tenant: TenantId,
    pub id: Uuid,
    secret: [u8; 32],
}

impl fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedKey").field("tenant", &self.tenant).field("id", &self.id).finish_non_exhaustive()
    }
}

impl fmt::Display for PresentedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "csk_{}_{}_{}", self.tenant.as_uuid().simple(), self.id.simple(), hex::encode(self.secret))
    }
}

impl FromStr for PresentedKey {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdentityError::Unauthenticated;
        let rest = s.strip_prefix("csk_").ok_or_else(bad)?;
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

impl PresentedKey {
    pub fn parse_secret(s: &SecretString) -> Result<Self, IdentityError> {
        s.expose_secret().parse()
    }
}

/// Who a valid key speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrincipal {
    pub tenant: TenantId,
    pub key_id: Uuid,
    pub role: Role,
    pub scopes: Vec<String>,
}

/// Checks a presented key inside its own organisation's transaction (`tx` must be for
/// `key.tenant`). Unknown, wrong, revoked and expired keys all fail the same way.
pub async fn authenticate(tx: &mut TenantTx, key: &PresentedKey) -> Result<KeyPrincipal, IdentityError> {
    if tx.tenant() != key.tenant {
        return Err(IdentityError::Unauthenticated);
    }
    let row = sqlx::query!(
        r#"select role, scopes, secret_hash, (revoked_at is null and (expires_at is null or expires_at > now())) as "live!"
             from api_keys where tenant_id = $1 and id = $2"#,
        key.tenant.as_uuid(),
        key.id
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(IdentityError::from_store("api key"))?;
    // Hash even when the key is unknown, so both paths cost the same.
    let presented = digest(&key.secret);
    let Some(row) = row else { return Err(IdentityError::Unauthenticated) };
    if !same(&presented, &row.secret_hash) || !row.live {
        return Err(IdentityError::Unauthenticated);
    }
    // Last use, at most once a minute per key (no write amplification on busy keys).
    sqlx::query!(
        "update api_keys set last_used_at = now()
          where tenant_id = $1 and id = $2 and (last_used_at is null or last_used_at < now() - interval '1 minute')",
        key.tenant.as_uuid(),
        key.id
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("api key"))?;
    Ok(KeyPrincipal { tenant: key.tenant, key_id: key.id, role: row.role.parse()?, scopes: row.scopes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_keys_round_trip_and_garbage_is_refused() {
        let k = PresentedKey { tenant: TenantId::new_random(), id: Uuid::now_v7(), secret: [7; 32] };
        let s = k.to_string();
        assert_eq!(s.parse::<PresentedKey>().ok(), Some(k.clone()));
        assert!(!format!("{k:?}").contains(&hex::encode([7u8; 32])), "Debug leaks the secret");
        for bad in [
            "",
            "csk_",
            "Bearer x",
            &s.replacen("csk_", "csx_", 1),
            &format!("{s}_extra"),
            &s[..s.len() - 1],
            &s.replace('0', "g"),
            "csk_00000000000000000000000000000000_00000000000000000000000000000000_00",
        ] {
            assert!(bad.parse::<PresentedKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn minters_never_exceed_themselves() {
        let scopes = ["audit:read".to_owned()];
        assert!(Minter::Operator.allows(Role::Owner, &scopes).is_ok());
        assert!(Minter::Person { role: Role::Admin }.allows(Role::Admin, &scopes).is_ok());
        let code = |r: Result<(), IdentityError>| match r {
            Err(IdentityError::Forbidden { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(Minter::Person { role: Role::Admin }.allows(Role::Owner, &[])), "role_escalation");
        let held = ["api_keys:manage".to_owned()];
        let key = Minter::Key { role: Role::Admin, scopes: &held };
        assert_eq!(code(key.allows(Role::Owner, &[])), "role_escalation");
        assert_eq!(code(key.allows(Role::Auditor, &scopes)), "scope_escalation");
        assert!(key.allows(Role::Staff, &held).is_ok());
    }
}
