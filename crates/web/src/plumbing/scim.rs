//! The SCIM face's plumbing: its credential (an organisation's SCIM token, checked by the route's
//! `Guard::Scim` before any handler runs) and its refusal shape (RFC 7644 §3.12: the SCIM error
//! body as `application/scim+json`), which every `/scim/v2` answer uses, the guard's 401 included.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use identity::IdentityError;
use identity::admin::scim::tokens::{self, PresentedToken, Provisioner};

use crate::{AppState, ClientContext};

/// The SCIM media type (RFC 7644 §8.1).
pub const SCIM_JSON: &str = "application/scim+json";
const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A SCIM refusal: the status, the RFC's `scimType` where one applies, and words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    #[must_use]
    pub fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self { status, scim_type, detail: detail.into() }
    }

    #[must_use]
    pub fn unauthenticated() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, None, "a valid SCIM token of this organisation is required")
    }

    #[must_use]
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidValue"), detail)
    }

    #[must_use]
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, None, "no such resource")
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "schemas": [ERROR_URN],
            "status": self.status.as_str(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = t.into();
        }
        let mut r = (self.status, body.to_string()).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"scim\""));
        }
        r
    }
}

impl From<IdentityError> for ScimError {
    fn from(e: IdentityError) -> Self {
        use IdentityError as I;
        match e {
            I::Invalid { field, reason } => Self::invalid_value(format!("{field}: {reason}")),
            I::Duplicate(what) => Self::new(StatusCode::CONFLICT, Some("uniqueness"), format!("{what} already exists")),
            I::NotFound => Self::not_found(),
            I::Unauthenticated => Self::unauthenticated(),
            I::Conflict { code: "precondition_failed", reason } => {
                Self::new(StatusCode::PRECONDITION_FAILED, None, reason)
            }
            I::Conflict { reason, .. } => Self::new(StatusCode::CONFLICT, None, reason),
            I::Forbidden { reason, .. } => Self::new(StatusCode::FORBIDDEN, None, reason),
            I::Unprocessable { code: "invalidFilter", reason } => {
                Self::new(StatusCode::BAD_REQUEST, Some("invalidFilter"), reason)
            }
            I::Unprocessable { reason, .. } => Self::invalid_value(reason),
            other => {
                tracing::error!(error = %other, "scim: identity error");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, None, "the service cannot complete this request now")
            }
        }
    }
}

impl From<store::StoreError> for ScimError {
    fn from(e: store::StoreError) -> Self {
        IdentityError::Store(e).into()
    }
}

/// The organisation's identity provider, proven by the request's SCIM token. Put in the request
/// by `Guard::Scim`; a handler that takes it cannot run without a live token.
#[derive(Debug, Clone)]
pub struct Scim(pub Provisioner);

impl FromRequestParts<AppState> for Scim {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(ScimError::unauthenticated)
    }
}

/// Checks `Authorization: Bearer cssc_…` inside the organisation the token names. A request that
/// presents a credential spends an attempt of its address's failed-credential budget (429 past
/// it), refunded when the token is good — the same budget as API keys and sessions.
///
/// # Errors
/// 401 (SCIM body) for a missing, malformed, unknown, wrong or revoked token.
pub async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Scim, Response> {
    let ctx = ClientContext::from_request_parts(parts, state).await.map_err(IntoResponse::into_response)?;
    let Some(raw) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    else {
        return Err(ScimError::unauthenticated().into_response());
    };
    if let Err(wait) = state.credential_failures.reserve(ctx.ip) {
        return Err(ScimError::new(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            format!("too many failed credentials; retry after {wait} s"),
        )
        .into_response());
    }
    let token: PresentedToken = raw.trim().parse().map_err(|_| ScimError::unauthenticated().into_response())?;
    let mut tx = state.store.tenant_tx(token.tenant).await.map_err(|e| ScimError::from(e).into_response())?;
    match tokens::authenticate(&mut tx, &token, ctx.origin()).await {
        Ok(p) => {
            tx.commit().await.map_err(|e| ScimError::from(e).into_response())?;
            state.credential_failures.refund(ctx.ip);
            let span = tracing::Span::current();
            span.record("tenant_id", tracing::field::display(p.tenant()));
            Ok(Scim(p))
        }
        Err(e) => {
            tracing::info!(tenant = %token.tenant, token_id = %token.id, ip = %ctx.ip, "scim token rejected");
            Err(ScimError::from(e).into_response())
        }
    }
}
