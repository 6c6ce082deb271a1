//! The files crate's one error type; `web` maps each to a status and a stable code.

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The body passed the size limit while it streamed in (nothing was kept).
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The content is not one of the allowed types (whatever the name or declared type says).
    #[error("file type refused: {0}")]
    TypeRefused(String),
    #[error("the file is empty")]
    Empty,
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// Not there, or another organisation's (indistinguishable on purpose).
    #[error("not found")]
    NotFound,
    /// A link that was altered, minted for someone else, or is not a link at all.
    #[error("the link is not valid")]
    LinkInvalid,
    #[error("the link has expired")]
    LinkExpired,
    /// Soft-deleted (restorable during retention) or purged.
    #[error("the file was deleted")]
    Deleted,
    #[error("range not satisfiable: the file has {size} bytes")]
    Range { size: u64 },
    /// What storage returned does not authenticate: tampered, truncated, reordered, or sealed
    /// for another organisation or blob. Never served.
    #[error("stored file failed its integrity check: {0}")]
    Integrity(String),
    #[error("key: {0}")]
    Key(String),
    #[error("storage: {0}")]
    Storage(#[from] object_store::Error),
    /// The client's body stream failed (disconnect, transport error).
    #[error("the upload stream failed: {0}")]
    Body(String),
    #[error(transparent)]
    Permit(#[from] authz::Mismatch),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> FilesError {
    FilesError::Invalid { field, reason: reason.into() }
}
