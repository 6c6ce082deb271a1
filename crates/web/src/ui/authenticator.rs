//! `/account/authenticator`: the authenticator-app setup a sign-in walks a person through when
//! their organisation requires a second factor and they have none yet (`landing`): why, the QR
//! code (the SVG `identity::signin::mfa::enrol` renders, as an `<img>` data URI: the pages' CSP
//! allows `img-src data:` and an image runs nothing) with the key to type instead, the code to
//! confirm, the recovery codes once, then on to the page they were going to. The same calls as
//! `/api/v1/me/mfa/totp*` (`Guard::Own`); a wrong code is said under the field.
//!
//! Until the app is on, such a person signs in with the code mailed to them (the API's second
//! factor for them), and every sign-in brings them back here.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use secrecy::ExposeSecret;

use crate::api::documents::member;
use crate::plumbing::access::require_person;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::form::{self, Fields, local_path};
use crate::{ApiError, AppState, Principal};

#[derive(Template, WebTemplate)]
#[template(path = "authenticator.html")]
pub(crate) struct AuthenticatorPage {
    pub chrome: Chrome,
    pub next: String,
    /// Whether the organisation requires it (the words differ).
    pub required: bool,
    /// A started enrolment: the QR code as a data URI and the key to type instead.
    pub qr: String,
    pub secret: String,
    /// The confirm form shows (an enrolment was started).
    pub confirming: bool,
    pub code_error: String,
    /// Shown once, after the app is on.
    pub recovery_codes: Vec<String>,
}

/// Where a finished sign-in goes: `next`, or first the authenticator setup when the
/// organisation requires a second factor and this person has no app yet.
///
/// # Errors
/// Database errors.
pub(crate) async fn landing(
    state: &AppState,
    issued: &identity::signin::sessions::Issued,
    next: &str,
) -> Result<String, ApiError> {
    let mut tx = state.store.tenant_tx(issued.tenant).await?;
    let required = identity::directory::tenants::requires_mfa(&mut tx).await?;
    tx.commit().await?;
    if !required {
        return Ok(next.to_owned());
    }
    let mut g = state.store.global_tx().await?;
    let status = identity::signin::mfa::status(&mut g, issued.user_id).await?;
    g.commit().await?;
    Ok(if status.on_since.is_some() {
        next.to_owned()
    } else {
        format!("/account/authenticator?next={}", form::encode(next))
    })
}

/// Where an organisation's page sends a member who must set up an authenticator app first
/// (`Principal::enrolment_due`, checked by `crate::plumbing::guard` on every page but their own
/// account's): the setup, then back to the page asked for (a form's target is no page to come
/// back to: the inbox then). Their own account's pages (`Guard::Own`: this setup, sessions,
/// sign-out) stay open; the API answers as before, its second factor for them being the mailed
/// code.
pub(crate) fn setup_first(parts: &axum::http::request::Parts) -> Response {
    let next = if parts.method == axum::http::Method::GET {
        local_path(parts.uri.path_and_query().map_or("/", axum::http::uri::PathAndQuery::as_str))
    } else {
        "/".to_owned()
    };
    Redirect::to(&format!("/account/authenticator?next={}", form::encode(&next))).into_response()
}

async fn page(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    next: &str,
) -> Result<(AuthenticatorPage, bool), ApiError> {
    let me = require_person(p)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    let required = identity::directory::tenants::requires_mfa(&mut tx).await?;
    let chrome = Chrome::member(state, &mut tx, &m, headers, Section::Account).await?;
    tx.commit().await?;
    let mut g = state.store.global_tx().await?;
    let on = identity::signin::mfa::status(&mut g, me.user).await?.on_since.is_some();
    g.commit().await?;
    let page = AuthenticatorPage {
        chrome,
        next: next.to_owned(),
        required,
        qr: String::new(),
        secret: String::new(),
        confirming: false,
        code_error: String::new(),
        recovery_codes: Vec::new(),
    };
    Ok((page, on))
}

/// `GET /account/authenticator?next=…`: why, and the button that starts the setup.
pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let next = local_path(q.get("next"));
    let (page, on) = page(&state, &p, &headers, &next).await?;
    if on {
        return Ok(Redirect::to(&next).into_response());
    }
    Ok(page.into_response())
}

/// `POST /account/authenticator` {next}: a new pending enrolment, its QR code and key shown once.
pub async fn start(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let me = require_person(&p)?;
    let next = local_path(Fields::parse(&body)?.get("next"));
    let (mut page, on) = page(&state, &p, &headers, &next).await?;
    if on {
        return Ok(Redirect::to(&next).into_response());
    }
    let e = identity::signin::mfa::enrol(&state.store, &state.mfa_keys, me.user).await?;
    page.qr =
        format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(e.qr_svg.as_bytes()));
    page.secret = e.secret_base32.expose_secret().to_owned();
    page.confirming = true;
    Ok(page.into_response())
}

/// `POST /account/authenticator/confirm` {code, next}: the app is on; recovery codes shown once.
pub async fn confirm(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let me = require_person(&p)?;
    let f = Fields::parse(&body)?;
    let next = local_path(f.get("next"));
    let code = f.get("code").replace(' ', "");
    let (mut page, _) = page(&state, &p, &headers, &next).await?;
    let result = if code.len() > 32 {
        Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "code: at most 32 characters"))
    } else {
        identity::signin::mfa::confirm(&state.store, &state.mfa_keys, &state.auth, &p.who, me.user, &code)
            .await
            .map_err(ApiError::from)
    };
    match result {
        Ok(codes) => {
            page.recovery_codes = codes;
            Ok(page.into_response())
        }
        Err(e) if matches!(e.code, "invalid_code" | "invalid_field") => {
            page.confirming = true;
            page.code_error =
                "This code is not right. Enter the 6 digits your app shows now (they change every 30 seconds).".into();
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        Err(e) => Err(e),
    }
}
