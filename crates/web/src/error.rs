//! The web layer's error: a status and a stable snake_case `code` in a JSON body. Internal
//! details are logged with the request id, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, sent as `Retry-After` (429).
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
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service cannot complete this request now",
                )
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
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service cannot complete this request now",
                )
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
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service cannot complete this request now",
                )
            }
        }
    }
}
