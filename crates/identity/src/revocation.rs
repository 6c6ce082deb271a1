//! Revocation, beneath every other layer: ending sessions (by session, user or organisation) and
//! bumping a user's session epoch, each announced with `NOTIFY` on [`REVOCATION_CHANNEL`] in the
//! caller's transaction, so every node drops what it cached as soon as — and only if — it commits.
//!
//! Everything that takes access away (a role change, a suspension, an expired guest, a password
//! change, a replayed refresh token, "revoke all") calls here; this module calls no other layer.

use audit::{Changes, Entity, Event, Who};
use serde::{Deserialize, Serialize};
use store::TenantTx;
use uuid::Uuid;

use crate::IdentityError;

/// Postgres channel on which revocations are announced (payload: [`Revocation`] as JSON).
pub const REVOCATION_CHANNEL: &str = "countersign_revocation";

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
    let tenant = tx.tenant().as_uuid();
    // One statement per scope, each naming the tenant (which RLS enforces anyway) so that it is
    // one primary-key probe or one walk of a person's or the organisation's sessions. A single
    // statement with `($1 is null or id = $1) and ($2 is null or user_id = $2)` was planned
    // generically once cached: a scan of every session of every organisation on every sign-out.
    let (done, session, user) = match scope {
        Scope::Session(s) => {
            let done = sqlx::query!(
                "update sessions set revoked_at = now(), revoked_reason = $3
                  where tenant_id = $1 and id = $2 and revoked_at is null",
                tenant,
                s,
                reason
            )
            .execute(tx.conn())
            .await?;
            (done, Some(s), None)
        }
        Scope::User(u) => {
            let done = sqlx::query!(
                "update sessions set revoked_at = now(), revoked_reason = $3
                  where tenant_id = $1 and user_id = $2 and revoked_at is null",
                tenant,
                u,
                reason
            )
            .execute(tx.conn())
            .await?;
            (done, None, Some(u))
        }
        Scope::Tenant => {
            let done = sqlx::query!(
                "update sessions set revoked_at = now(), revoked_reason = $2 where tenant_id = $1 and revoked_at is null",
                tenant,
                reason
            )
            .execute(tx.conn())
            .await?;
            (done, None, None)
        }
    };
    let n = done.rows_affected();
    let payload = Revocation { tenant: Some(tenant), user, session };
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

/// Announces `r` on [`REVOCATION_CHANNEL`]; Postgres delivers it when the transaction commits.
pub(crate) async fn notify(conn: &mut sqlx::PgConnection, r: &Revocation) -> Result<(), IdentityError> {
    let payload = serde_json::to_string(r).map_err(|e| IdentityError::Internal(e.to_string()))?;
    sqlx::query!("select pg_notify($1, $2)", REVOCATION_CHANNEL, payload).execute(conn).await?;
    Ok(())
}

/// Ends every session of `user` everywhere (password change, deactivation).
pub async fn bump_epoch(g: &mut store::GlobalTx, user: Uuid) -> Result<(), IdentityError> {
    sqlx::query!("update users set session_epoch = session_epoch + 1, updated_at = now() where id = $1", user)
        .execute(g.conn())
        .await?;
    notify(g.conn(), &Revocation { tenant: None, user: Some(user), session: None }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_name_only_what_they_cover() {
        let s = Uuid::now_v7();
        let json = serde_json::to_string(&Revocation { tenant: None, user: Some(s), session: None }).expect("json");
        assert_eq!(json, format!(r#"{{"user":"{s}"}}"#));
    }
}
