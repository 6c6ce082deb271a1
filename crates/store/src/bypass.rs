//! The guarded bypass: cross-tenant work for platform jobs and platform admins.
//!
//! The database honours a bypass only for a transaction that called
//! `countersign_begin_bypass(secret, actor, reason)` with a secret this process generated at
//! start-up and registered (as a SHA-256 digest) through the owner connection. The call writes
//! `platform_bypass_log` (who, why, when) before any row becomes visible. Setting `app.bypass`
//! by hand matches no log row and shows nothing.

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::{StoreError, metrics};

/// 32 random bytes, hex-encoded, held only in this process's memory.
pub(crate) fn generate_secret() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(hex::encode(bytes))
}

#[derive(Debug)]
pub struct BypassTx {
    tx: Transaction<'static, Postgres>,
}

impl BypassTx {
    pub(crate) async fn begin(
        pool: &sqlx::PgPool,
        secret: &SecretString,
        actor: &str,
        reason: &str,
    ) -> Result<Self, StoreError> {
        Self::begin_with(pool, "BEGIN", secret, actor, reason).await
    }

    /// A bypass in a REPEATABLE READ transaction: one fixed snapshot, which
    /// [`BypassTx::export_snapshot`] can share with tenant readers on other connections.
    pub(crate) async fn begin_repeatable(
        pool: &sqlx::PgPool,
        secret: &SecretString,
        actor: &str,
        reason: &str,
    ) -> Result<Self, StoreError> {
        // The grant locks the platform chain head; a head advanced after our snapshot was taken
        // is a serialization failure in REPEATABLE READ. It is transient: try again.
        let mut attempts = 0;
        loop {
            match Self::begin_with(pool, "BEGIN ISOLATION LEVEL REPEATABLE READ", secret, actor, reason).await {
                Err(StoreError::Database(sqlx::Error::Database(e)))
                    if e.code().as_deref() == Some("40001") && attempts < 5 =>
                {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    async fn begin_with(
        pool: &sqlx::PgPool,
        begin: &'static str,
        secret: &SecretString,
        actor: &str,
        reason: &str,
    ) -> Result<Self, StoreError> {
        if actor.trim().is_empty() || reason.trim().len() < 3 {
            return Err(StoreError::BypassRefused("an actor and a reason (3+ characters) are required".into()));
        }
        metrics::acquiring(pool);
        let mut tx = pool.begin_with(begin).await?;
        sqlx::query!("select countersign_begin_bypass($1, $2, $3)", secret.expose_secret(), actor, reason)
            .execute(&mut *tx)
            .await?;
        metrics::global().bypass_tx();
        tracing::info!(actor, reason, "platform bypass granted");
        Ok(Self { tx })
    }

    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Exports this transaction's snapshot (see [`crate::Store::bypass_repeatable`]).
    pub async fn export_snapshot(&mut self) -> Result<crate::SnapshotId, StoreError> {
        crate::tx::export_snapshot(&mut self.tx).await
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(StoreError::from)
    }
}
