//! The audit crate's one error type.

use store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("not found")]
    NotFound,
    #[error("signing key: {0}")]
    Key(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed ledger data: {0}")]
    Malformed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuditError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { field, reason: reason.into() }
    }
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::from(e))
    }
}
