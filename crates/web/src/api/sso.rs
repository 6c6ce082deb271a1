//! `POST /api/v1/auth/sso/start`: the browser single sign-on flow begun by a script (an SPA, the
//! CLI) instead of the sign-in page's link. It runs the page's own start (`crate::ui::sso::begin`,
//! `crate::ui::saml::begin`): the same flow, the same binding cookie (`cs_sso` for OpenID Connect,
//! `cs_saml` for SAML), the same refusals — an unknown organisation answered exactly as one
//! without that provider, after the same database work — and the same per-address sign-in budget
//! (`Guard::SignIn`). The caller sends the browser to `redirect_url`; the provider brings it back
//! to the page callback, which finishes into session cookies and lands on `return_to`.
//!
//! `return_to` must be a path on this site; anything else (another host, `//host`, a backslash,
//! the sign-in pages) is refused with 422 `invalid_field`, never quietly followed or replaced.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::plumbing::access::json;
use crate::plumbing::client::ServedOverTls;
use crate::ui::form::local_path;
use crate::{ApiError, AppState, ClientContext};

/// Which of the organisation's single sign-on providers to start.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SsoProvider {
    /// OpenID Connect (Authorization Code with PKCE).
    Oidc,
    /// SAML 2.0 (HTTP-Redirect AuthnRequest, HTTP-POST response).
    Saml,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SsoStartRequest {
    /// The organisation's short name, as on the sign-in page.
    organisation: String,
    provider: SsoProvider,
    /// Where the browser lands once signed in: a path on this site (default `/`). Another
    /// site, `//host`, a backslash or the sign-in pages are refused (422 `invalid_field`).
    #[serde(default)]
    #[schema(max_length = 2000)]
    return_to: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SsoStarted {
    /// Send the browser here (the identity provider's authorisation or SSO address).
    redirect_url: String,
    /// Seconds the flow may take at the provider.
    expires_in: i64,
}

/// `POST /api/v1/auth/sso/start`
pub async fn start(
    State(state): State<AppState>,
    ctx: ClientContext,
    headers: HeaderMap,
    tls: Option<axum::Extension<ServedOverTls>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: SsoStartRequest = json(&body)?;
    let next = match req.return_to.as_deref() {
        None | Some("") => "/".to_owned(),
        Some(asked) if local_path(asked) == asked => asked.to_owned(),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "return_to must be a path on this site (starting with a single /), not a sign-in page",
            )
            .with_details(serde_json::json!({ "field": "return_to" })));
        }
    };
    let organisation = req.organisation.trim().to_ascii_lowercase();
    let tls = tls.is_some();
    let started = match req.provider {
        SsoProvider::Oidc => crate::ui::sso::begin(&state, &ctx, &headers, tls, &organisation, &next).await?,
        SsoProvider::Saml => crate::ui::saml::begin(&state, &ctx, &headers, tls, &organisation, &next).await?,
    };
    let body = SsoStarted { redirect_url: started.redirect_url, expires_in: started.expires_in };
    let mut r = (StatusCode::OK, Json(body)).into_response();
    if let Some(cookie) = started.cookie {
        r.headers_mut().append(header::SET_COOKIE, cookie);
    }
    // A flow is single use: no cache keeps its address.
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
