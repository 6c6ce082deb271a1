//! Test support: a fresh database per test, cloned from a migrated template.
//!
//! Server: `DATABASE_URL` when set, else the local server at 127.0.0.1:5432 (user `postgres`),
//! else an embedded cluster under `target/countersign-test-pg`. The template is named after a
//! digest of the migrations, so changing a migration builds a new one; test processes (nextest
//! runs one per test) coordinate through an advisory lock.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::embedded::EmbeddedPg;
use crate::{Store, StoreError, migrate};

/// A database that exists for one test and is dropped afterwards.
#[derive(Debug)]
pub struct TestDb {
    pub store: Store,
    name: String,
    server: PgConnectOptions,
}

async fn server_options() -> Result<PgConnectOptions, StoreError> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return PgConnectOptions::from_str(&url).map_err(|_| StoreError::Config("DATABASE_URL is invalid".into()));
    }
    let local = PgConnectOptions::new().host("127.0.0.1").port(5432).username("postgres").database("postgres");
    if local.connect().await.is_ok() {
        return Ok(local);
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/countersign-test-pg");
    let pg = EmbeddedPg::start(&dir).await?;
    Ok(pg.connect_options().database("postgres"))
}

impl TestDb {
    pub async fn new() -> Self {
        match Self::try_new().await {
            Ok(db) => db,
            Err(e) => panic!("test database setup failed: {e}"),
        }
    }

    /// A test database whose app pool holds at most `max_connections`.
    pub async fn try_with_pool(max_connections: u32) -> Result<Self, StoreError> {
        Self::create(max_connections).await
    }

    async fn try_new() -> Result<Self, StoreError> {
        Self::create(8).await
    }

    async fn create(max_connections: u32) -> Result<Self, StoreError> {
        let server = server_options().await?;
        let template = format!("countersign_tmpl_{}", migrate::fingerprint());
        let mut conn = server.clone().database("postgres").connect().await?;
        sqlx::query("select pg_advisory_lock(hashtext($1))").bind(&template).execute(&mut conn).await?;
        let exists: bool = sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
            .bind(&template)
            .fetch_one(&mut conn)
            .await?;
        if !exists {
            let building = format!("{template}_building");
            // Separate statements: DROP/CREATE DATABASE refuse to run in an implicit transaction.
            sqlx::raw_sql(&format!("drop database if exists {building} with (force)")).execute(&mut conn).await?;
            sqlx::raw_sql(&format!("create database {building}")).execute(&mut conn).await?;
            let mut t = server.clone().database(&building).connect().await?;
            migrate::run(&mut t, None).await?;
            t.close().await?;
            sqlx::raw_sql(&format!("alter database {building} rename to {template}")).execute(&mut conn).await?;
        }
        sqlx::query("select pg_advisory_unlock(hashtext($1))").bind(&template).execute(&mut conn).await?;
        let name = format!("countersign_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::raw_sql(&format!("create database {name} template {template}")).execute(&mut conn).await?;
        conn.close().await?;

        let admin = server.clone().database(&name);
        let app = admin.clone().username(migrate::APP_ROLE).password("");
        // Tests share a busy machine and some saturate small pools on purpose: a connection may
        // take longer than the server's 2 s default to come free (tests/degrade.rs checks that
        // bound with a store of its own).
        let tuning =
            crate::Tuning { db_wait: std::time::Duration::from_secs(10), ..crate::Tuning::new(max_connections) };
        let store = Store::open_tuned(admin, app, None, tuning).await?;
        Ok(Self { store, name, server })
    }

    /// Superuser (or owner) options for this test's database: the attacker's seat.
    #[must_use]
    pub fn admin_options(&self) -> PgConnectOptions {
        self.server.clone().database(&self.name)
    }

    /// A connection as the application role that bypasses `TenantTx`: a "forgotten db.query()".
    pub async fn raw_app_conn(&self) -> PgConnection {
        match self.admin_options().username(migrate::APP_ROLE).connect().await {
            Ok(c) => c,
            Err(e) => panic!("app role connection failed: {e}"),
        }
    }

    pub async fn admin_conn(&self) -> PgConnection {
        match self.admin_options().connect().await {
            Ok(c) => c,
            Err(e) => panic!("admin connection failed: {e}"),
        }
    }

    /// A libpq-style URL for this test's database as the admin user (for running the binary).
    /// Test servers use trust authentication, so the URL carries no password.
    #[must_use]
    pub fn url(&self) -> String {
        url_of(&self.admin_options(), &self.name)
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        drop_database(&self.server, &self.name, Some(self.store.clone()));
    }
}

/// Drops a test database on a thread of its own: dropping must not depend on the test's runtime
/// still being alive.
fn drop_database(server: &PgConnectOptions, name: &str, store: Option<Store>) {
    let server = server.clone().database("postgres");
    let name = name.to_owned();
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            drop(store);
            if let Ok(mut c) = server.connect().await {
                let _ = sqlx::raw_sql(&format!("drop database if exists {name} with (force)")).execute(&mut c).await;
            }
        });
    })
    .join();
}

/// An empty database (no schema at all) on the test server, for what starts from nothing: a
/// first `countersign migrate`. Dropped afterwards.
#[derive(Debug)]
pub struct EmptyDb {
    name: String,
    server: PgConnectOptions,
}

impl EmptyDb {
    pub async fn new() -> Self {
        let created = async {
            let server = server_options().await?;
            let name = format!("countersign_test_{}_empty", uuid::Uuid::new_v4().simple());
            let mut conn = server.clone().database("postgres").connect().await?;
            sqlx::raw_sql(&format!("create database {name}")).execute(&mut conn).await?;
            conn.close().await?;
            Ok::<_, StoreError>(Self { name, server })
        };
        match created.await {
            Ok(db) => db,
            Err(e) => panic!("empty test database setup failed: {e}"),
        }
    }

    /// Owner options for it.
    #[must_use]
    pub fn options(&self) -> PgConnectOptions {
        self.server.clone().database(&self.name)
    }

    /// A URL for the binary, as [`TestDb::url`].
    #[must_use]
    pub fn url(&self) -> String {
        url_of(&self.options(), &self.name)
    }
}

impl Drop for EmptyDb {
    fn drop(&mut self) {
        drop_database(&self.server, &self.name, None);
    }
}

fn url_of(o: &PgConnectOptions, name: &str) -> String {
    let host = o.get_host().to_owned();
    if host.starts_with('/') {
        format!("postgres:///{name}?host={host}&port={}&user={}", o.get_port(), o.get_username())
    } else {
        format!("postgres://{}@{host}:{}/{name}", o.get_username(), o.get_port())
    }
}
