//! The data kernel: the only owner of the connection pool and of SQL that sets tenant context.
//!
//! Tenant-scoped work happens in a [`TenantTx`]; identity work on global tables in a
//! [`GlobalTx`]; cross-tenant platform work in a [`BypassTx`], which the database only honours
//! with this process's registered secret and logs. There is no public way to reach the pool.

mod bypass;
mod connect;
pub mod embedded;
mod error;
pub mod idempotency;
mod ids;
pub mod metrics;
pub mod migrate;
#[cfg(feature = "testing")]
pub mod testing;
mod tx;

pub use bypass::BypassTx;
pub use connect::{
    DEFAULT_DB_WAIT, DEFAULT_SECRET_LEASE, DbSettings, Migrations, PoolStats, READINESS_BOUND, Store, Tuning,
};
pub use error::StoreError;
pub use ids::{IdError, TenantId};
pub use tx::{GlobalTx, ProgramScope, RelationScope, SnapshotId, TenantTx};

/// Re-exported so domain crates name the same driver types the store hands out.
pub use sqlx;
