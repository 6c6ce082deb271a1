//! Identity's one error type, beneath every layer: each answers with it, so `web` maps one enum to
//! a status and a stable `code`.

use store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0} already exists")]
    Duplicate(&'static str),
    #[error("not found")]
    NotFound,
    /// Missing, malformed, unknown, wrong, revoked or expired credentials: deliberately one case.
    #[error("authentication required")]
    Unauthenticated,
    /// Too many attempts: try again after this many seconds.
    #[error("too many attempts; retry after {retry_after} s")]
    Locked { retry_after: u64 },
    /// A one-time code (email, TOTP, recovery) that is wrong, expired, used or dead: one case.
    #[error("invalid or expired code")]
    InvalidCode,
    /// Too many requests of this kind (e.g. email codes per address per hour).
    #[error("rate limited; retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// The account needs a second factor that this sign-in method cannot provide.
    #[error("sign in with your password: this account needs a second factor")]
    PasswordRequired,
    #[error("internal: {0}")]
    Internal(String),
    /// The request is valid but the current state forbids it (e.g. `last_admin`).
    #[error("{code}: {reason}")]
    Conflict { code: &'static str, reason: String },
    /// A one-time thing (an invitation) that was valid once and no longer is.
    #[error("{code}: {reason}")]
    Gone { code: &'static str, reason: String },
    /// The caller may not do this (e.g. grant a role or scope above their own).
    #[error("{code}: {reason}")]
    Forbidden { code: &'static str, reason: String },
    /// Well-formed input that names something unknown (e.g. `unknown_scope`).
    #[error("{code}: {reason}")]
    Unprocessable { code: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
}

impl IdentityError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { field, reason: reason.into() }
    }

    /// Maps unique violations to `Duplicate(what)`; everything else stays a store error.
    pub(crate) fn from_store(what: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |e| match StoreError::from(e) {
            StoreError::Conflict { .. } => Self::Duplicate(what),
            StoreError::NotFound => Self::NotFound,
            other => Self::Store(other),
        }
    }
}

impl From<sqlx::Error> for IdentityError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::from(e))
    }
}
