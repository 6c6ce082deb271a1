//! Transactions that carry their context.
//!
//! `TenantTx` sets `app.tenant_id` with `set_config(.., true)` in the same simple-query message
//! as `BEGIN` (one round trip), so the setting lives exactly as long as the transaction and can
//! never leak to the next user of a pooled connection. Row-level security does the filtering.

use secrecy::{ExposeSecret, SecretString};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::{StoreError, TenantId, metrics};

/// A transaction bound to one tenant. Every tenant-scoped query function takes `&mut TenantTx`.
#[derive(Debug)]
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    tenant: TenantId,
}

impl TenantTx {
    pub(crate) async fn begin(pool: &sqlx::PgPool, tenant: TenantId) -> Result<Self, StoreError> {
        // TenantId's Display is a validated, hyphenated UUID: no quoting is possible inside it.
        let sql = format!("BEGIN; SELECT set_config('app.tenant_id', '{tenant}', true)");
        metrics::acquiring(pool);
        let tx = pool.begin_with(sql).await?;
        metrics::global().tenant_tx();
        Ok(Self { tx, tenant })
    }

    /// A tenant transaction with a partner-programme scope (`app.partner_scope`, issue 17).
    ///
    /// For [`ProgramScope::Member`] the scope is derived in the database, in the same round trip,
    /// from that user's own active membership of `tenant` (`countersign_program_scope`): vendor
    /// staff get `vendor`, a partner person gets their partner's id, anyone else `none`. The
    /// caller passes only the authenticated user id; no request input can name a partner.
    /// [`ProgramScope::Vendor`] is for operator and system work (CLI, the `serve` sweep).
    /// A plain [`TenantTx::begin`] sets no scope, and partner tables then show nothing.
    pub(crate) async fn begin_program(
        pool: &sqlx::PgPool,
        tenant: TenantId,
        scope: ProgramScope,
    ) -> Result<Self, StoreError> {
        // Both values are typed UUIDs (validated Display): no quoting is possible inside them.
        let scope_sql = match scope {
            ProgramScope::Member(user) => format!("countersign_program_scope('{user}'::uuid)"),
            ProgramScope::Vendor => "'vendor'".to_owned(),
        };
        let sql = format!(
            "BEGIN; SELECT set_config('app.tenant_id', '{tenant}', true); \
             SELECT set_config('app.partner_scope', {scope_sql}, true)"
        );
        metrics::acquiring(pool);
        let tx = pool.begin_with(sql).await?;
        metrics::global().tenant_tx();
        Ok(Self { tx, tenant })
    }

    /// A tenant transaction with a portal relation scope (`app.relation_scope`, issue 16).
    ///
    /// For [`RelationScope::Member`] the scope is derived in the database, in the same round
    /// trip, from that user's own active membership of `tenant` (`countersign_relation_scope`):
    /// the organisation's own roles get `internal`, a vendor's or client's person their
    /// relation's id, anyone else `none`. The caller passes only the authenticated user id; no
    /// request input can name a relation. [`RelationScope::Internal`] is for the organisation's
    /// side where no person is signed in yet (a portal link being consumed, found by its hash).
    /// Under a plain [`TenantTx::begin`] relation tables show nothing.
    pub(crate) async fn begin_relation(
        pool: &sqlx::PgPool,
        tenant: TenantId,
        scope: RelationScope,
    ) -> Result<Self, StoreError> {
        // Both values are typed UUIDs (validated Display): no quoting is possible inside them.
        let scope_sql = match scope {
            RelationScope::Member(user) => format!("countersign_relation_scope('{user}'::uuid)"),
            RelationScope::Internal => "'internal'".to_owned(),
        };
        let sql = format!(
            "BEGIN; SELECT set_config('app.tenant_id', '{tenant}', true); \
             SELECT set_config('app.relation_scope', {scope_sql}, true)"
        );
        metrics::acquiring(pool);
        let tx = pool.begin_with(sql).await?;
        metrics::global().tenant_tx();
        Ok(Self { tx, tenant })
    }

    /// The portal relation scope in force: `Some("internal")`, `Some(relation id)`,
    /// `Some("none")`, or `None` outside a relation transaction.
    pub async fn relation_scope(&mut self) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<String>>("select countersign_relation_scope_text()")
            .fetch_one(&mut *self.tx)
            .await?)
    }

    /// The partner-programme scope in force: `Some("vendor")`, `Some(partner id)`,
    /// `Some("none")`, or `None` outside a programme transaction.
    pub async fn partner_scope(&mut self) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<String>>("select countersign_partner_scope()")
            .fetch_one(&mut *self.tx)
            .await?)
    }

    /// A read-only REPEATABLE READ transaction; with `snapshot`, it sees exactly what the
    /// transaction that exported it sees (parallel scans of one consistent state).
    pub(crate) async fn begin_reader(
        pool: &sqlx::PgPool,
        tenant: TenantId,
        snapshot: Option<&SnapshotId>,
    ) -> Result<Self, StoreError> {
        let import = snapshot.map(|s| format!("SET TRANSACTION SNAPSHOT '{}'; ", s.0)).unwrap_or_default();
        let sql = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; {import}SELECT set_config('app.tenant_id', '{tenant}', true)"
        );
        metrics::acquiring(pool);
        let tx = pool.begin_with(sql).await?;
        metrics::global().tenant_tx();
        Ok(Self { tx, tenant })
    }

    /// Exports this transaction's snapshot for [`crate::Store::tenant_reader`] on other connections.
    /// Meaningful for REPEATABLE READ transactions, whose snapshot is fixed.
    pub async fn export_snapshot(&mut self) -> Result<SnapshotId, StoreError> {
        export_snapshot(&mut self.tx).await
    }

    #[must_use]
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The connection to run this tenant's queries on (the tenant setting is already in force).
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Refuses, as a whole, a batch whose items name more than one tenant (or another tenant).
    /// Call before applying anything; the counter records the attempt.
    pub fn guard_batch(&self, tenants: impl IntoIterator<Item = TenantId>) -> Result<(), StoreError> {
        let (mut requested, mut matched) = (0usize, 0usize);
        for t in tenants {
            requested += 1;
            if t == self.tenant {
                matched += 1;
            }
        }
        if requested == matched { Ok(()) } else { Err(StoreError::cross_tenant_batch(requested, matched)) }
    }

    /// After a bulk statement filtered by RLS: if fewer rows were touched than ids requested, some
    /// ids belong to another tenant (or to nobody). The caller drops the transaction on `Err`, so
    /// nothing is applied.
    pub fn ensure_batch_complete(&self, requested: usize, affected: usize) -> Result<(), StoreError> {
        if requested == affected { Ok(()) } else { Err(StoreError::cross_tenant_batch(requested, affected)) }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(StoreError::from)
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await.map_err(StoreError::from)
    }
}

/// Who a programme transaction acts for; see [`TenantTx::begin_program`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramScope {
    /// An authenticated person: the scope follows their own membership, looked up in the database.
    Member(uuid::Uuid),
    /// The vendor side as a whole, for operator and system work (never scoped by request
    /// input): the CLI, the `serve` sweep, and accepting an invitation, which reads back the
    /// partner its locked invitation row names.
    Vendor,
}

/// Who a relation transaction acts for; see [`TenantTx::begin_relation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationScope {
    /// An authenticated person: the scope follows their own membership, looked up in the database.
    Member(uuid::Uuid),
    /// The organisation's side as a whole (every relation's rows of this organisation).
    Internal,
}

/// The name of an exported snapshot (`pg_export_snapshot()`), valid while its exporting
/// transaction is open. Only hex digits and dashes: safe to place in `SET TRANSACTION SNAPSHOT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotId(String);

impl SnapshotId {
    fn parse(s: String) -> Result<Self, StoreError> {
        if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            Ok(Self(s))
        } else {
            Err(StoreError::Config(format!("unexpected snapshot id {s:?}")))
        }
    }
}

pub(crate) async fn export_snapshot(conn: &mut PgConnection) -> Result<SnapshotId, StoreError> {
    let id: Option<String> = sqlx::query_scalar!("select pg_export_snapshot()").fetch_one(conn).await?;
    SnapshotId::parse(id.unwrap_or_default())
}

/// A transaction with no tenant context, for global identity tables (users, credentials, MFA,
/// the outbox) and tenant resolution. It begins by proving this process's registered secret
/// (`countersign_begin_identity`), which sets a proof bound to this backend and this
/// transaction; the identity-scope policies test the proof, so an app-role connection without
/// the secret sees none of those rows whatever it sets. Tenant tables answer it with zero rows
/// and refuse its inserts. Unlike [`crate::BypassTx`] it writes no log row (sign-in speed).
#[derive(Debug)]
pub struct GlobalTx {
    tx: Transaction<'static, Postgres>,
}

impl GlobalTx {
    pub(crate) async fn begin(pool: &sqlx::PgPool, secret: &SecretString) -> Result<Self, StoreError> {
        metrics::acquiring(pool);
        let mut tx = pool.begin().await?;
        // A bind parameter, never SQL text: query texts are visible in pg_stat_activity to every
        // session of the same role.
        sqlx::query!("select countersign_begin_identity($1)", secret.expose_secret()).execute(&mut *tx).await?;
        metrics::global().global_tx();
        Ok(Self { tx })
    }

    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Resolves an active tenant's slug without revealing anything else about it.
    pub async fn resolve_tenant(&mut self, slug: &str) -> Result<Option<TenantId>, StoreError> {
        let id: Option<uuid::Uuid> =
            sqlx::query_scalar!("select countersign_resolve_tenant($1)", slug).fetch_one(&mut *self.tx).await?;
        id.map(TenantId::from_uuid).transpose().map_err(|_| StoreError::NotFound)
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(StoreError::from)
    }
}
