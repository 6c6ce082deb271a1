//! `/account`: a signed-in person's own account here (`Guard::Own`, like `/api/v1/me…`): their
//! sessions with a way to end each, the password change, and the authenticator app (TOTP):
//! enrol with a QR code, confirm, remove, and new recovery codes — shown once.
//!
//! The same calls as `crate::api::me` and `crate::api::mfa`. The QR code is the SVG
//! `identity::signin::mfa::enrol` renders, shown as an `<img>` data URI (the pages' CSP allows
//! `img-src data:`; an image runs nothing). A wrong code or password is said under its field.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use identity::revocation::Revocation;
use secrecy::{ExposeSecret, SecretString};

use crate::api::documents::member;
use crate::plumbing::access::{path_id, require_person};
use crate::ui::chrome::{Chrome, Section};
use crate::ui::form::Fields;
use crate::ui::format;
use crate::{ApiError, AppState, Principal};

#[derive(Debug, Clone)]
pub(crate) struct OwnSession {
    pub id: String,
    pub started: String,
    pub last_seen: String,
    pub ip: String,
    pub agent: String,
    pub current: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "account.html")]
pub(crate) struct AccountPage {
    pub chrome: Chrome,
    pub name: String,
    pub email: String,
    pub role: String,
    pub sessions: Vec<OwnSession>,
    pub current_password_error: String,
    pub new_password_error: String,
    /// A started enrolment: the QR code as a data URI and the secret to type instead.
    pub qr: String,
    pub secret: String,
    pub confirm_error: String,
    pub remove_error: String,
    pub regenerate_error: String,
    /// Recovery codes, shown once after they are made.
    pub recovery_codes: Vec<String>,
    pub notice: String,
    pub notice_tone: &'static str,
    /// When the authenticator app was turned on (empty: it is off).
    pub totp_on_since: String,
    pub recovery_codes_left: i64,
}

async fn account_page(state: &AppState, p: &Principal, headers: &HeaderMap) -> Result<AccountPage, ApiError> {
    let me = require_person(p)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    let u = identity::directory::users::get_member(&mut tx, me.user).await?;
    let sessions = identity::admin::members::sessions_of(&mut tx, me.user, Some(me.session)).await?;
    let chrome = Chrome::member(state, &mut tx, &m, headers, Section::Account).await?;
    tx.commit().await?;
    let mut g = state.store.global_tx().await?;
    let totp = identity::signin::mfa::status(&mut g, me.user).await?;
    g.commit().await?;
    Ok(AccountPage {
        totp_on_since: totp.on_since.map(format::moment).unwrap_or_default(),
        recovery_codes_left: totp.recovery_codes_left,
        chrome,
        name: u.display_name,
        email: u.email,
        role: format::role(p.role).to_owned(),
        sessions: sessions
            .into_iter()
            .map(|s| OwnSession {
                id: s.id.to_string(),
                started: format::moment(s.created_at),
                last_seen: format::moment(s.last_seen_at),
                ip: s.ip.unwrap_or_default(),
                agent: s.user_agent.unwrap_or_default(),
                current: s.current,
            })
            .collect(),
        current_password_error: String::new(),
        new_password_error: String::new(),
        qr: String::new(),
        secret: String::new(),
        confirm_error: String::new(),
        remove_error: String::new(),
        regenerate_error: String::new(),
        recovery_codes: Vec::new(),
        notice: String::new(),
        notice_tone: "success",
    })
}

fn done_words(done: &str) -> &'static str {
    match done {
        "session" => "That session was ended: whoever used it signs in again.",
        "totp_off" => {
            "The authenticator app was removed, with its recovery codes. Sign-ins ask for a mailed code when a second step is needed."
        }
        _ => "",
    }
}

/// Our own account page, answered with `status` after `fill`.
async fn again(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    status: StatusCode,
    fill: impl FnOnce(&mut AccountPage),
) -> Result<Response, ApiError> {
    let mut page = account_page(state, p, headers).await?;
    fill(&mut page);
    Ok((status, page).into_response())
}

/// The words for a refused code (wrong, or a field too long); other refusals stay pages.
fn code_words(e: &ApiError) -> Option<String> {
    match e.code {
        "invalid_code" => Some("This code is not right, or was already used. Enter the 6 digits your app shows now, or an unused recovery code.".to_owned()),
        "duplicate" => Some("The authenticator app is already on. Remove it first (with a code) to set up another one.".to_owned()),
        "invalid_field" | "text_too_long" => Some("Enter the 6-digit code, or a recovery code.".to_owned()),
        _ => None,
    }
}

fn code_of(f: &Fields) -> Result<String, ApiError> {
    let code = f.get("code");
    if code.len() > 32 {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "code: at most 32 characters"));
    }
    Ok(code.replace(' ', ""))
}

/// `GET /account`
pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let mut page = account_page(&state, &p, &headers).await?;
    page.notice = done_words(q.get("done")).to_owned();
    Ok(page.into_response())
}

/// `POST /account/sessions/{id}/revoke`: one of my sessions (anyone else's is not found).
pub async fn revoke_session(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let me = require_person(&p)?;
    let id = path_id(&id)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    identity::admin::members::revoke_own_session(&mut tx, &p.who, me.user, id).await?;
    tx.commit().await?;
    state.sessions.apply(&Revocation { tenant: Some(p.tenant.as_uuid()), user: None, session: Some(id) });
    let to = if id == me.session { "/sign-in" } else { "/account?done=session" };
    Ok(Redirect::to(to).into_response())
}

/// `POST /account/password` {current_password, new_password}: every session ends (this one
/// too); sign in again with the new password.
pub async fn change_password(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let me = require_person(&p)?;
    let f = Fields::parse(&body)?;
    let (current, new) = (f.get("current_password").to_owned(), f.get("new_password").to_owned());
    if current.len() > 1024 || new.len() > 1024 {
        return again(&state, &p, &headers, StatusCode::UNPROCESSABLE_ENTITY, |page| {
            page.new_password_error = "A password may have at most 1024 characters.".into();
        })
        .await;
    }
    let org = {
        let mut tx = state.store.tenant_tx(p.tenant).await?;
        let t = identity::directory::tenants::current(&mut tx).await?;
        tx.commit().await?;
        t
    };
    let result = identity::signin::account::change_password(
        &state.store,
        &p.who,
        &state.auth,
        me.user,
        &SecretString::from(current),
        &SecretString::from(new),
        &[&org.name, &org.slug],
    )
    .await;
    match result {
        Ok(()) => {
            state.sessions.apply(&Revocation { tenant: None, user: Some(me.user), session: None });
            Ok(Redirect::to("/sign-in").into_response())
        }
        Err(e) => {
            let e = ApiError::from(e);
            let (current_error, new_error) = match e.code {
                "wrong_password" => ("Your current password is not right.".to_owned(), String::new()),
                "weak_password" => (
                    String::new(),
                    format!("Choose a stronger password: {}.", e.message.trim_start_matches("new_password: ")),
                ),
                "invalid_field" => (String::new(), "The new password must differ from the current one.".to_owned()),
                _ => return Err(e),
            };
            again(&state, &p, &headers, StatusCode::UNPROCESSABLE_ENTITY, |page| {
                page.current_password_error = current_error;
                page.new_password_error = new_error;
            })
            .await
        }
    }
}

/// `POST /account/totp`: starts enrolment; the page shows the QR code and the secret once.
pub async fn enrol(State(state): State<AppState>, p: Principal, headers: HeaderMap) -> Result<Response, ApiError> {
    let me = require_person(&p)?;
    match identity::signin::mfa::enrol(&state.store, &state.mfa_keys, me.user).await {
        Ok(e) => {
            let qr = format!(
                "data:image/svg+xml;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(e.qr_svg.as_bytes())
            );
            let secret = e.secret_base32.expose_secret().to_owned();
            again(&state, &p, &headers, StatusCode::OK, |page| {
                page.qr = qr;
                page.secret = secret;
            })
            .await
        }
        Err(e) => {
            let e = ApiError::from(e);
            let Some(w) = code_words(&e) else { return Err(e) };
            again(&state, &p, &headers, e.status, |page| {
                page.notice = w;
                page.notice_tone = "warning";
            })
            .await
        }
    }
}

/// `POST /account/totp/confirm` {code}: turns the app on; recovery codes shown once.
pub async fn confirm(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let me = require_person(&p)?;
    let code = code_of(&Fields::parse(&body)?)?;
    match identity::signin::mfa::confirm(&state.store, &state.mfa_keys, &state.auth, &p.who, me.user, &code).await {
        Ok(codes) => {
            again(&state, &p, &headers, StatusCode::OK, |page| {
                page.notice = "The authenticator app is on: sign-ins now ask for its code.".into();
                page.recovery_codes = codes;
            })
            .await
        }
        Err(e) => {
            let e = ApiError::from(e);
            let Some(w) = code_words(&e) else { return Err(e) };
            again(&state, &p, &headers, StatusCode::UNPROCESSABLE_ENTITY, |page| page.confirm_error = w).await
        }
    }
}

/// `POST /account/totp/remove` {code}
pub async fn remove(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let me = require_person(&p)?;
    let code = code_of(&Fields::parse(&body)?)?;
    match identity::signin::mfa::disable(&state.store, &state.mfa_keys, &state.auth, &p.who, me.user, &code).await {
        Ok(()) => Ok(Redirect::to("/account?done=totp_off").into_response()),
        Err(e) => {
            let e = ApiError::from(e);
            let Some(w) = code_words(&e) else { return Err(e) };
            again(&state, &p, &headers, StatusCode::UNPROCESSABLE_ENTITY, |page| page.remove_error = w).await
        }
    }
}

/// `POST /account/recovery-codes` {code}: new recovery codes, shown once; the old ones stop working.
pub async fn regenerate(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let me = require_person(&p)?;
    let code = code_of(&Fields::parse(&body)?)?;
    match identity::signin::mfa::regenerate_recovery_codes(
        &state.store,
        &state.mfa_keys,
        &state.auth,
        &p.who,
        me.user,
        &code,
    )
    .await
    {
        Ok(codes) => {
            again(&state, &p, &headers, StatusCode::OK, |page| {
                page.notice = "New recovery codes: the old ones no longer work.".into();
                page.recovery_codes = codes;
            })
            .await
        }
        Err(e) => {
            let e = ApiError::from(e);
            let Some(w) = code_words(&e) else { return Err(e) };
            again(&state, &p, &headers, StatusCode::UNPROCESSABLE_ENTITY, |page| page.regenerate_error = w).await
        }
    }
}
