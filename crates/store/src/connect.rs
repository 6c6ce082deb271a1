//! Opening the store: pick the server (DATABASE_URL or the embedded cluster), migrate as the
//! owner, register this process's bypass secret, then connect the pool as the app role.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::bypass::{self, BypassTx};
use crate::embedded::EmbeddedPg;
use crate::migrate::{self, APP_ROLE};
use crate::{GlobalTx, SnapshotId, StoreError, TenantId, TenantTx, metrics};

/// Where the database is and how to reach it. Secrets stay wrapped.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// Owner/administrator URL used for migrations and the bypass registration. `None` starts
    /// the embedded cluster under `data_dir`.
    pub database_url: Option<SecretString>,
    /// URL for the app role; by default derived from `database_url` with user `countersign_app`.
    pub app_database_url: Option<SecretString>,
    /// Password to set on, and use for, the app role when deriving its URL.
    pub app_password: Option<SecretString>,
    pub data_dir: PathBuf,
    pub max_connections: u32,
    /// How long the process secret stays valid without renewal (the live process renews it every
    /// fifth of this). A process killed without withdrawing its secret loses it after this long.
    pub secret_lease: Duration,
    /// How long a request waits for a database connection before it is refused (503 with
    /// `Retry-After`): with the database down, callers learn it within this bound.
    pub db_wait: Duration,
}

/// The app pool's connections now; [`Store::pool_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub size: u32,
    pub idle: usize,
    pub max: u32,
}

/// The default bound on waiting for a database connection: 2 seconds.
pub const DEFAULT_DB_WAIT: Duration = Duration::from_secs(2);

/// How the app pool behaves; [`Store::open_tuned`].
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    pub max_connections: u32,
    /// The process secret's lease ([`DEFAULT_SECRET_LEASE`]).
    pub lease: Duration,
    /// The bound on waiting for a connection ([`DEFAULT_DB_WAIT`]).
    pub db_wait: Duration,
}

impl Tuning {
    #[must_use]
    pub fn new(max_connections: u32) -> Self {
        Self { max_connections, lease: DEFAULT_SECRET_LEASE, db_wait: DEFAULT_DB_WAIT }
    }
}

/// The default lease of a process secret: 5 minutes, renewed every minute.
pub const DEFAULT_SECRET_LEASE: Duration = Duration::from_secs(300);

/// The longest the readiness check waits for the database before reporting it down.
pub const READINESS_BOUND: Duration = Duration::from_millis(800);

/// A pooled connection idle at least this long is pinged before it is handed out.
const PING_IDLE_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    admin: PgConnectOptions,
    secret: SecretString,
    lease: Duration,
    embedded: Mutex<Option<EmbeddedPg>>,
    /// Renews the process secret's lease; aborted on shutdown.
    renewer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Writes this process's cross-tenant refusals to the shared daily figure.
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Readiness {
    pub database: bool,
    pub schema_version: Option<i64>,
    pub expected_version: Option<i64>,
    /// The schema is the one this binary expects, or newer and declared compatible with it.
    pub schema_compatible: bool,
    /// Later migrations applied that declare themselves compatible with this binary.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub newer_compatible: Vec<i64>,
    /// Why the schema is not runnable (behind, or newer and incompatible).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_problem: Option<String>,
}

impl Readiness {
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.database && self.schema_compatible
    }
}

/// Whether opening the store applies pending migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// Apply them (`countersign migrate`, `serve --migrate`, `demo`).
    Apply,
    /// Apply nothing; refuse to open a schema this binary cannot run against (behind, or newer
    /// without a compatibility declaration), naming `countersign migrate`.
    Require,
}

fn parse_url(url: &SecretString, what: &str) -> Result<PgConnectOptions, StoreError> {
    let raw = url.expose_secret();
    if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
        return Err(StoreError::Config(format!("{what} must start with postgres:// or postgresql://")));
    }
    // The parse error text may echo the URL (and its password): never include it.
    PgConnectOptions::from_str(raw).map_err(|_| StoreError::Config(format!("{what} is not a valid postgres:// URL")))
}

impl Store {
    /// Opens the store described by `settings` without migrating (starting the embedded cluster
    /// if needed): a schema this binary cannot run against is refused ([`Migrations::Require`]).
    pub async fn open(settings: &DbSettings) -> Result<Self, StoreError> {
        Self::open_as(settings, Migrations::Require).await
    }

    /// Opens the store described by `settings`, applying pending migrations first.
    pub async fn open_migrating(settings: &DbSettings) -> Result<Self, StoreError> {
        Self::open_as(settings, Migrations::Apply).await
    }

    /// Opens the store described by `settings`, migrating or not as `migrations` says.
    pub async fn open_as(settings: &DbSettings, migrations: Migrations) -> Result<Self, StoreError> {
        let (admin, embedded) = match &settings.database_url {
            Some(url) => (parse_url(url, "DATABASE_URL")?, None),
            None => {
                let pg = EmbeddedPg::start(&settings.data_dir).await?;
                (pg.connect_options(), Some(pg))
            }
        };
        let app = match &settings.app_database_url {
            Some(url) => parse_url(url, "COUNTERSIGN_APP_DATABASE_URL")?,
            None => {
                let app = admin.clone().username(APP_ROLE);
                match &settings.app_password {
                    Some(pw) => app.password(pw.expose_secret()),
                    None => app,
                }
            }
        };
        let opened = Self::open_inner(
            admin,
            app,
            settings.app_password.as_ref().map(|p| p.expose_secret().to_owned()).as_deref(),
            Tuning {
                max_connections: settings.max_connections,
                lease: settings.secret_lease,
                db_wait: settings.db_wait,
            },
            migrations,
        )
        .await;
        match opened {
            Ok(store) => {
                *store.inner.embedded.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = embedded;
                Ok(store)
            }
            Err(e) => {
                if let Some(pg) = embedded {
                    let _ = pg.stop();
                }
                Err(e)
            }
        }
    }

    /// Migrates through `admin`, registers the bypass secret, and connects the pool as `app`.
    pub async fn open_with(
        admin: PgConnectOptions,
        app: PgConnectOptions,
        app_password: Option<&str>,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        Self::open_tuned(admin, app, app_password, Tuning::new(max_connections)).await
    }

    /// [`Store::open_with`] with a process-secret lease other than [`DEFAULT_SECRET_LEASE`].
    pub async fn open_with_lease(
        admin: PgConnectOptions,
        app: PgConnectOptions,
        app_password: Option<&str>,
        max_connections: u32,
        lease: Duration,
    ) -> Result<Self, StoreError> {
        Self::open_tuned(admin, app, app_password, Tuning { lease, ..Tuning::new(max_connections) }).await
    }

    /// Migrates through `admin`, registers the bypass secret, and connects the pool as `app`
    /// with the given [`Tuning`].
    pub async fn open_tuned(
        admin: PgConnectOptions,
        app: PgConnectOptions,
        app_password: Option<&str>,
        tuning: Tuning,
    ) -> Result<Self, StoreError> {
        Self::open_inner(admin, app, app_password, tuning, Migrations::Apply).await
    }

    /// [`Store::open_tuned`] with the choice of [`Migrations`].
    pub async fn open_inner(
        admin: PgConnectOptions,
        app: PgConnectOptions,
        app_password: Option<&str>,
        tuning: Tuning,
        migrations: Migrations,
    ) -> Result<Self, StoreError> {
        let Tuning { max_connections, lease, db_wait } = tuning;
        let lease = lease.clamp(Duration::from_secs(1), Duration::from_secs(3600));
        let mut conn = admin.connect().await.map_err(|e| {
            StoreError::Config(format!(
                "cannot connect to the database (DATABASE_URL: user {}, database {}): {e}",
                admin.get_username(),
                admin.get_database().unwrap_or("(default)")
            ))
        })?;
        match migrations {
            Migrations::Apply => {
                let report = migrate::run(&mut conn, app_password).await?;
                if !report.applied.is_empty() {
                    tracing::info!(applied = ?report.applied, "migrations applied");
                }
            }
            Migrations::Require => {
                let state = migrate::state(&mut conn).await?;
                if let Some(problem) = state.problem() {
                    let _ = conn.close().await;
                    return Err(StoreError::Config(problem));
                }
                if let migrate::SchemaState::NewerCompatible { newer } = &state {
                    tracing::warn!(
                        ?newer,
                        "the database schema is newer than this binary; its later migrations declare \
                         themselves compatible (expand/contract): serving"
                    );
                }
            }
        }
        let secret = bypass::generate_secret();
        // The secrets table is owner-only (forced RLS): act as the owner, as migrations do.
        let mut tx = conn.begin().await?;
        sqlx::query("set local role countersign_owner").execute(&mut *tx).await?;
        sqlx::query!("delete from platform_bypass_secrets where expires_at < now()").execute(&mut *tx).await?;
        sqlx::query!(
            "insert into platform_bypass_secrets (secret_hash, label, expires_at)
             values (sha256(convert_to($1, 'UTF8')), $2, now() + make_interval(secs => $3))",
            secret.expose_secret(),
            format!("pid {} on {}", std::process::id(), hostname()),
            lease.as_secs_f64(),
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        conn.close().await?;

        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(db_wait.clamp(Duration::from_millis(100), Duration::from_secs(60)))
            // sqlx already pings every connection on its way back into the pool. Pinging again on
            // the way out only tells something for a connection that sat idle (the server may
            // have closed it since): ping those, and spare busy ones a round trip per transaction.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE_AFTER {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(app.clone())
            .await
            .map_err(|e| {
                StoreError::Config(format!(
                    "cannot connect as the application role {} (set COUNTERSIGN_APP_DATABASE_URL or \
                     COUNTERSIGN_APP_DB_PASSWORD if the server requires a password): {e}",
                    app.get_username()
                ))
            })?;
        let role: String = sqlx::query_scalar("select current_user::text").fetch_one(&pool).await?;
        if role != APP_ROLE {
            return Err(StoreError::Config(format!("the app pool must connect as {APP_ROLE}, not {role}")));
        }
        let inner = Arc::new(Inner {
            pool,
            admin,
            secret,
            lease,
            embedded: Mutex::new(None),
            renewer: Mutex::new(None),
            flusher: Mutex::new(None),
        });
        *lock(&inner.renewer) = Some(spawn_renewer(Arc::downgrade(&inner)));
        *lock(&inner.flusher) = Some(spawn_flusher(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// Renews the process secret's lease now. `false`: the lease had already lapsed (or the
    /// secret was withdrawn), and bypass and identity transactions are refused from now on.
    pub async fn renew_secret(&self) -> Result<bool, StoreError> {
        renew(&self.inner).await
    }

    /// Stops renewing the process secret without withdrawing it: what `kill -9` leaves behind.
    #[cfg(feature = "testing")]
    pub fn stop_renewing(&self) {
        if let Some(h) = lock(&self.inner.renewer).take() {
            h.abort();
        }
    }

    /// Today's isolation figures. The cross-tenant figure is the shared one in the database
    /// (every node, every restart, per UTC day), after writing this process's pending refusals.
    pub async fn isolation(&self) -> metrics::IsolationSnapshot {
        metrics::persisted_snapshot(&self.inner.pool).await
    }

    /// A transaction in which only `tenant`'s rows exist.
    pub async fn tenant_tx(&self, tenant: TenantId) -> Result<TenantTx, StoreError> {
        TenantTx::begin(&self.inner.pool, tenant).await
    }

    /// A tenant transaction with a partner-programme scope (issue 17); see
    /// [`TenantTx::begin_program`]. Every partner-programme handler uses this, never
    /// [`Store::tenant_tx`] (under which partner tables show nothing).
    pub async fn program_tx(&self, tenant: TenantId, scope: crate::ProgramScope) -> Result<TenantTx, StoreError> {
        TenantTx::begin_program(&self.inner.pool, tenant, scope).await
    }

    /// A tenant transaction with a portal relation scope (issue 16); see
    /// [`TenantTx::begin_relation`]. Every portal handler uses this; under [`Store::tenant_tx`]
    /// relation tables show nothing.
    pub async fn relation_tx(&self, tenant: TenantId, scope: crate::RelationScope) -> Result<TenantTx, StoreError> {
        TenantTx::begin_relation(&self.inner.pool, tenant, scope).await
    }

    /// A read-only, REPEATABLE READ transaction in which only `tenant`'s rows exist. With a
    /// snapshot exported by another open transaction, it sees exactly what that one sees.
    pub async fn tenant_reader(&self, tenant: TenantId, snapshot: Option<&SnapshotId>) -> Result<TenantTx, StoreError> {
        TenantTx::begin_reader(&self.inner.pool, tenant, snapshot).await
    }

    /// A transaction without tenant context (global identity tables only).
    pub async fn global_tx(&self) -> Result<GlobalTx, StoreError> {
        GlobalTx::begin(&self.inner.pool, &self.inner.secret).await
    }

    /// Resolves an active organisation's slug, as [`GlobalTx::resolve_tenant`] does, in one
    /// statement outside any transaction (sign-in speed): `countersign_resolve_tenant` is a
    /// definer function that reveals only the id of an active slug and needs no identity scope.
    pub async fn resolve_tenant(&self, slug: &str) -> Result<Option<TenantId>, StoreError> {
        let id: Option<uuid::Uuid> =
            sqlx::query_scalar!("select countersign_resolve_tenant($1)", slug).fetch_one(&self.inner.pool).await?;
        id.map(TenantId::from_uuid).transpose().map_err(|_| StoreError::NotFound)
    }

    /// A cross-tenant transaction, logged in `platform_bypass_log` with `actor` and `reason`.
    pub async fn bypass(&self, actor: &str, reason: &str) -> Result<BypassTx, StoreError> {
        BypassTx::begin(&self.inner.pool, &self.inner.secret, actor, reason).await
    }

    /// Like [`Store::bypass`], in a REPEATABLE READ transaction whose snapshot can be exported.
    pub async fn bypass_repeatable(&self, actor: &str, reason: &str) -> Result<BypassTx, StoreError> {
        BypassTx::begin_repeatable(&self.inner.pool, &self.inner.secret, actor, reason).await
    }

    /// The app pool's open, idle and most connections (for `/metrics`).
    #[must_use]
    pub fn pool_stats(&self) -> PoolStats {
        let p = &self.inner.pool;
        PoolStats { size: p.size(), idle: p.num_idle(), max: p.options().get_max_connections() }
    }

    /// The most connections the app pool opens (parallel readers must leave one spare).
    #[must_use]
    pub fn max_connections(&self) -> u32 {
        self.inner.pool.options().get_max_connections()
    }

    /// A dedicated connection (outside the pool's count) listening on `channel`. Notifications
    /// sent with `pg_notify` arrive when the sending transaction commits.
    pub async fn listener(&self, channel: &str) -> Result<sqlx::postgres::PgListener, StoreError> {
        let mut l = sqlx::postgres::PgListener::connect_with(&self.inner.pool).await?;
        l.listen(channel).await?;
        Ok(l)
    }

    /// Database reachable and schema at the version this binary expects, decided within
    /// [`READINESS_BOUND`]: a database that does not answer in time counts as down, so a probe
    /// with a short timeout gets an answer rather than a timeout of its own.
    pub async fn readiness(&self) -> Readiness {
        let expected_version = migrate::MIGRATOR.iter().map(|m| m.version).max();
        let known: Vec<i64> = migrate::MIGRATOR.iter().map(|m| m.version).collect();
        let rows = tokio::time::timeout(
            READINESS_BOUND,
            sqlx::query_as::<_, (Option<i64>, Option<i64>)>(
                "select version, compatible_with from countersign_schema_versions()",
            )
            .fetch_all(&self.inner.pool),
        )
        .await;
        match rows {
            Ok(Ok(rows)) => {
                let applied: Vec<(i64, Option<i64>)> =
                    rows.into_iter().filter_map(|(v, c)| v.map(|v| (v, c))).collect();
                let state = migrate::assess(&applied, &known);
                Readiness {
                    database: true,
                    schema_version: applied.iter().map(|(v, _)| *v).max(),
                    expected_version,
                    schema_compatible: state.runnable(),
                    newer_compatible: match &state {
                        migrate::SchemaState::NewerCompatible { newer } => newer.clone(),
                        _ => Vec::new(),
                    },
                    schema_problem: state.problem(),
                }
            }
            Ok(Err(_)) | Err(_) => Readiness {
                database: false,
                schema_version: None,
                expected_version,
                schema_compatible: false,
                newer_compatible: Vec::new(),
                schema_problem: None,
            },
        }
    }

    /// Owner connection options, for tools (benchmarks) that need them.
    #[must_use]
    pub fn admin_options(&self) -> &PgConnectOptions {
        &self.inner.admin
    }

    /// Closes the pool, withdraws the bypass secret and stops an embedded cluster we started.
    pub async fn shutdown(&self) {
        if let Some(h) = lock(&self.inner.renewer).take() {
            h.abort();
        }
        if let Some(h) = lock(&self.inner.flusher).take() {
            h.abort();
        }
        if let Err(e) = metrics::flush(&self.inner.pool).await {
            tracing::warn!(error = %e, "cross-tenant refusals not written before shutdown");
        }
        self.inner.pool.close().await;
        if let Ok(mut conn) = self.inner.admin.connect().await {
            let withdraw = async {
                let mut tx = conn.begin().await?;
                sqlx::query("set local role countersign_owner").execute(&mut *tx).await?;
                sqlx::query!(
                    "delete from platform_bypass_secrets where secret_hash = sha256(convert_to($1, 'UTF8'))",
                    self.inner.secret.expose_secret()
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            };
            if let Err(e) = withdraw.await {
                tracing::warn!(error = %e, "process secret not withdrawn (it expires with its lease)");
            }
            let _ = conn.close().await;
        }
        let pg = self.inner.embedded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(pg) = pg
            && let Err(e) = pg.stop()
        {
            tracing::error!(error = %e, "embedded PostgreSQL did not stop cleanly");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn renew(inner: &Inner) -> Result<bool, StoreError> {
    let secs = i32::try_from(inner.lease.as_secs().max(1)).unwrap_or(3600);
    let renewed: Option<bool> =
        sqlx::query_scalar!("select countersign_renew_process_secret($1, $2)", inner.secret.expose_secret(), secs)
            .fetch_one(&inner.pool)
            .await?;
    Ok(renewed.unwrap_or(false))
}

/// Renews the lease every fifth of its length while the store lives. Holds only a weak
/// reference, so a dropped store stops renewing (and its secret expires with the lease).
fn spawn_renewer(inner: std::sync::Weak<Inner>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = match inner.upgrade() {
            Some(i) => (i.lease / 5).max(Duration::from_millis(200)),
            None => return,
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            match renew(&inner).await {
                Ok(true) => {}
                Ok(false) => tracing::error!(
                    "process secret lease lapsed or withdrawn: bypass and identity transactions are refused"
                ),
                Err(e) => tracing::warn!(error = %e, "process secret lease not renewed (will retry)"),
            }
        }
    })
}

/// Writes refusals to the shared figure shortly after they happen (the refusal itself is
/// classified where no connection is at hand: see [`crate::StoreError`]).
fn spawn_flusher(inner: std::sync::Weak<Inner>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            metrics::global().refused_pending().await;
            let Some(inner) = inner.upgrade() else { return };
            if let Err(e) = metrics::flush(&inner.pool).await {
                tracing::warn!(error = %e, "cross-tenant refusals not yet written (will retry)");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_owned()).unwrap_or_else(|_| "unknown".into())
}
