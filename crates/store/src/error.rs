//! The store's one error type. Database refusals that mean "another tenant" are classified
//! here (and counted), so no caller can mistake them for an ordinary failure.

use crate::metrics;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database (RLS `WITH CHECK`, composite FK) or the batch guard refused a cross-tenant
    /// write or reference.
    #[error("cross-tenant access refused")]
    CrossTenant,
    /// A bulk request named rows outside the transaction's tenant (or rows that do not exist);
    /// nothing was applied.
    #[error("batch refused: {requested} ids requested, {matched} belong to this tenant")]
    CrossTenantBatch { requested: usize, matched: usize },
    #[error("bypass refused: {0}")]
    BypassRefused(String),
    #[error("unique constraint {constraint} violated")]
    Conflict { constraint: String },
    #[error("check or foreign-key constraint {constraint} violated")]
    Invalid { constraint: String },
    #[error("not found")]
    NotFound,
    #[error("embedded postgres: {0}")]
    Embedded(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    pub(crate) fn cross_tenant_batch(requested: usize, matched: usize) -> Self {
        metrics::global().cross_tenant_refused();
        Self::CrossTenantBatch { requested, matched }
    }
}

/// Did this refusal happen because the statement named another tenant? Row-level security's
/// `WITH CHECK` on a tenant table (not on a global or owner-only table, where it means "no
/// scope"), or the audit append refusing another tenant's chain. Privilege errors ("permission
/// denied for table audit_events") are not cross-tenant.
fn crosses_tenants(message: &str) -> bool {
    if message.starts_with("audit: tenant ") {
        return true;
    }
    let Some(rest) = message.strip_prefix("new row violates row-level security policy") else { return false };
    let table = rest.rsplit("for table ").next().unwrap_or_default().trim_matches(|c| c == '"' || c == ' ');
    !crate::migrate::GLOBAL_TABLES.iter().any(|g| g.name == table)
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => Self::NotFound,
            sqlx::Error::Database(db) => {
                let constraint = db.constraint().unwrap_or_default().to_owned();
                match db.code().as_deref() {
                    // insufficient_privilege: RLS WITH CHECK, a refused bypass or identity scope,
                    // an audit append aimed at another tenant's chain, or a plain privilege error.
                    Some("42501") => {
                        let msg = db.message();
                        if msg.contains("bypass refused") || msg.contains("identity scope refused") {
                            Self::BypassRefused(msg.to_owned())
                        } else {
                            if crosses_tenants(msg) {
                                metrics::global().cross_tenant_refused();
                            }
                            Self::CrossTenant
                        }
                    }
                    Some("23505") => Self::Conflict { constraint },
                    // A composite FK that points into another tenant is indistinguishable from a
                    // dangling one: both are cross-tenant from the caller's point of view. Not
                    // counted: nothing shows that another tenant's row was named.
                    Some("23503") if constraint.contains("tenant_id") => Self::CrossTenant,
                    Some("23503" | "23514" | "23502" | "22P02" | "22001") => Self::Invalid { constraint },
                    _ => Self::Database(e),
                }
            }
            sqlx::Error::PoolTimedOut => {
                metrics::pool_timed_out();
                Self::Database(e)
            }
            _ => Self::Database(e),
        }
    }
}
