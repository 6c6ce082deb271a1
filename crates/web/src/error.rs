//! The web layer's error: a status and a stable snake_case `code` in a JSON body. Internal
//! details are logged with the request id, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Seconds a client is asked to wait after a 503 `unavailable`.
pub const UNAVAILABLE_RETRY_AFTER: u64 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, sent as `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
    /// Machine-readable specifics (e.g. the transitions a document allows), sent as `details`.
    pub details: Option<Box<serde_json::Value>>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None, details: None }
    }

    #[must_use]
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    #[must_use]
    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", "a valid credential is required")
    }

    #[must_use]
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "your role does not allow this")
    }

    /// 429 with `Retry-After`.
    #[must_use]
    pub fn too_many(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts", "too many attempts; try again later")
        }
    }

    #[must_use]
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// 503 `unavailable` with `Retry-After`: the database (or another dependency) did not answer
    /// within its bound (`--db-wait`). Nothing was done; the same request may simply be sent again.
    #[must_use]
    pub fn unavailable() -> Self {
        Self {
            retry_after: Some(UNAVAILABLE_RETRY_AFTER),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the service cannot complete this request now")
        }
    }

    /// 500 `authorisation_missing`: a route acted or answered without the decision its guard
    /// owed (`crate::plumbing::guard`); it fails closed.
    #[must_use]
    pub fn authorisation_missing(message: &'static str) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "authorisation_missing", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body { error: Inner { code: self.code, message: &self.message, details: self.details.as_deref() } };
        let mut r = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(s));
        }
        // The refusal itself rides along, so the pages' layer (`crate::ui::refusals`) can word it
        // as a page without parsing the body. Extensions never leave the server.
        r.extensions_mut().insert(self);
        r
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        use store::StoreError as S;
        match e {
            // Another tenant's rows are indistinguishable from missing ones.
            S::CrossTenant | S::NotFound => Self::not_found(),
            S::CrossTenantBatch { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "batch_refused",
                "the batch names records outside this organisation; nothing was applied",
            ),
            S::Conflict { .. } => {
                Self::new(StatusCode::CONFLICT, "conflict", "a record with these values already exists")
            }
            S::Invalid { constraint } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", format!("rejected by rule {constraint}"))
            }
            other => {
                tracing::error!(error = %other, "store error");
                Self::unavailable()
            }
        }
    }
}

impl From<authz::UnknownRole> for ApiError {
    fn from(e: authz::UnknownRole) -> Self {
        identity::IdentityError::from(e).into()
    }
}

impl From<identity::IdentityError> for ApiError {
    fn from(e: identity::IdentityError) -> Self {
        use identity::IdentityError as I;
        match e {
            I::Invalid { field, reason } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", format!("{field}: {reason}"))
            }
            I::Duplicate(what) => Self::new(StatusCode::CONFLICT, "duplicate", format!("{what} already exists")),
            I::NotFound => Self::not_found(),
            I::Unauthenticated => Self::unauthenticated(),
            I::Locked { retry_after } => Self::too_many(retry_after),
            I::InvalidCode => Self::new(StatusCode::UNAUTHORIZED, "invalid_code", "the code is wrong, expired or used"),
            I::RateLimited { retry_after } => Self {
                retry_after: Some(retry_after),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; try again later")
            },
            I::PasswordRequired => Self::new(
                StatusCode::FORBIDDEN,
                "password_required",
                "this account needs a second factor: sign in with your password",
            ),
            I::Internal(why) => {
                tracing::error!(error = %why, "identity internal error");
                Self::unavailable()
            }
            I::Conflict { code, reason } => Self::new(StatusCode::CONFLICT, code, reason),
            I::Gone { code, reason } => Self::new(StatusCode::GONE, code, reason),
            I::Forbidden { code, reason } => Self::new(StatusCode::FORBIDDEN, code, reason),
            I::Unprocessable { code, reason } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, reason),
            I::Store(s) => s.into(),
            I::Audit(a) => a.into(),
        }
    }
}

impl From<audit::AuditError> for ApiError {
    fn from(e: audit::AuditError) -> Self {
        use audit::AuditError as A;
        match e {
            A::Invalid { field, reason } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", format!("{field}: {reason}"))
            }
            A::NotFound => Self::not_found(),
            A::Store(s) => s.into(),
            other => {
                tracing::error!(error = %other, "audit error");
                Self::unavailable()
            }
        }
    }
}

impl From<files::FilesError> for ApiError {
    fn from(e: files::FilesError) -> Self {
        use files::FilesError as F;
        match e {
            F::TooLarge { limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file_too_large",
                format!("the file is larger than the limit of {limit} bytes"),
            )
            .with_details(serde_json::json!({ "limit_bytes": limit })),
            F::TypeRefused(why) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "file_type_refused",
                format!("{why}; allowed: PDF, PNG, JPEG, GIF, WebP, DOCX, XLSX, PPTX, ODT, ODS, CSV, plain text"),
            ),
            F::Empty => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "file_empty", "the file is empty"),
            F::Invalid { field, reason } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", format!("{field}: {reason}"))
                    .with_details(serde_json::json!({ "field": field }))
            }
            F::NotFound => Self::not_found(),
            F::LinkInvalid => Self::new(
                StatusCode::FORBIDDEN,
                "link_invalid",
                "this link is not valid for you: ask for a new one from the document",
            ),
            F::LinkExpired => Self::new(
                StatusCode::FORBIDDEN,
                "link_expired",
                "this link has expired: ask for a new one from the document",
            ),
            F::Deleted => Self::new(StatusCode::GONE, "file_deleted", "the file was deleted"),
            F::Range { size } => Self::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the range is outside the file ({size} bytes)"),
            )
            .with_details(serde_json::json!({ "size": size })),
            F::Body(why) => {
                Self::new(StatusCode::BAD_REQUEST, "upload_interrupted", format!("the upload failed: {why}"))
            }
            F::Integrity(why) => {
                tracing::error!(error = %why, "a stored file failed its integrity check; not served");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "file_integrity",
                    "the stored file failed its integrity check and is not served",
                )
            }
            F::Permit(m) => {
                tracing::error!(error = %m, "permit mismatch");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
            F::Audit(a) => a.into(),
            F::Store(s) => s.into(),
            F::Database(d) => store::StoreError::from(d).into(),
            other => {
                tracing::error!(error = %other, "files error");
                Self::unavailable()
            }
        }
    }
}
