//! Signing in and out in a browser: organisation, email and password; the second factor
//! (authenticator code, recovery code, or the code mailed for an organisation that requires
//! MFA); sign-out. The same calls as the API's (`crate::api::sessions::password_login`,
//! `identity::signin::mfa::complete`, `crate::api::sessions::end_session`) and the same session cookies;
//! refusals (wrong credentials, lockout, rate limit, network refused) are said in words on the
//! form, with the API's status code.
//!
//! The forms are double-submit protected like every other: the sign-in page sets a CSRF cookie
//! before any session exists, so a cross-site form cannot sign a browser in (login CSRF).

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use identity::signin::mfa::{Answer, LoginOutcome, Method};
use secrecy::{ExposeSecret, SecretString};

use crate::plumbing::cookies::{self, CSRF_COOKIE, cookie, csrf_for_form, same_token};
use crate::ui::authenticator::landing;
use crate::ui::chrome::Chrome;
use crate::ui::form::{Fields, local_path};
use crate::ui::refusals::wait_words;
use crate::{ApiError, AppState, ClientContext, Principal};

#[derive(Template, WebTemplate)]
#[template(path = "sign_in.html")]
pub(crate) struct SignInPage {
    pub chrome: Chrome,
    pub organisation: String,
    pub email: String,
    pub next: String,
    /// A refusal of the whole attempt (wrong credentials, lockout...).
    pub problem: String,
    pub organisation_error: String,
    pub email_error: String,
    pub password_error: String,
    /// Which field gets the focus: the first with an error, else the first empty one.
    pub focus: &'static str,
    /// A word of welcome above the form (after accepting an invitation).
    pub notice: String,
    /// The stable code of `problem`, shown beside the words (single sign-on's refusals).
    pub problem_code: String,
    /// The button's words when the organisation signs in with single sign-on
    /// (`crate::ui::sso::offer`); empty: no button.
    pub sso_button: String,
    /// Where the button starts the sign-in: `/sign-in/sso` (OpenID Connect) or `/sign-in/saml`.
    pub sso_path: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "second_factor.html")]
pub(crate) struct SecondFactorPage {
    pub chrome: Chrome,
    pub mfa_token: String,
    pub next: String,
    pub totp: bool,
    pub email_code: bool,
    pub problem: String,
}

impl SignInPage {
    pub(crate) fn new(chrome: Chrome, organisation: &str, email: &str, next: &str) -> Self {
        let focus = if organisation.is_empty() {
            "organisation"
        } else if email.is_empty() {
            "email"
        } else {
            "password"
        };
        Self {
            chrome,
            organisation: organisation.to_owned(),
            email: email.to_owned(),
            next: next.to_owned(),
            problem: String::new(),
            organisation_error: String::new(),
            email_error: String::new(),
            password_error: String::new(),
            focus,
            notice: String::new(),
            problem_code: String::new(),
            sso_button: String::new(),
            sso_path: crate::ui::sso::SSO_PATH,
        }
    }
}

/// Renders `page` with `status`, setting the CSRF cookie when the browser had none.
pub(crate) fn answer<T: IntoResponse>(
    headers: &HeaderMap,
    secure: bool,
    status: StatusCode,
    page: impl FnOnce(String) -> T,
) -> Response {
    let mut probe = Response::new(axum::body::Body::empty());
    let csrf = csrf_for_form(headers, &mut probe, secure);
    let mut r = (status, page(csrf)).into_response();
    for c in probe.headers().get_all(header::SET_COOKIE) {
        r.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    r
}

/// `GET /sign-in?next=…&organisation=…`
pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let next = local_path(q.get("next"));
    let organisation = q.get("organisation").chars().take(100).collect::<String>();
    let (sso_button, sso_path) = crate::ui::sso::offer(&state, &organisation).await.unwrap_or_default();
    Ok(answer(&headers, state.secure_cookies, StatusCode::OK, |csrf| {
        let mut page = SignInPage::new(Chrome::public(csrf), &organisation, "", &next);
        page.sso_button = sso_button;
        if !sso_path.is_empty() {
            page.sso_path = sso_path;
        }
        page
    }))
}

/// `POST /sign-in` {organisation, email, password, next, csrf_token}
pub async fn submit(
    State(state): State<AppState>,
    ctx: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let (organisation, email, next) = (f.get("organisation"), f.get("email"), local_path(f.get("next")));
    let password = f.all("password").first().map(|p| (*p).to_owned()).unwrap_or_default();
    let secure = state.secure_cookies;
    let (sso_button, sso_path) = crate::ui::sso::offer(&state, organisation).await.unwrap_or_default();
    let again = |status: StatusCode, fill: &dyn Fn(&mut SignInPage)| {
        answer(&headers, secure, status, |csrf| {
            let mut page = SignInPage::new(Chrome::public(csrf), organisation, email, &next);
            page.sso_button.clone_from(&sso_button);
            if !sso_path.is_empty() {
                page.sso_path = sso_path;
            }
            fill(&mut page);
            page
        })
    };
    if !form_token_matches(&headers, &f) {
        return Ok(again(StatusCode::FORBIDDEN, &|p| {
            p.problem = "This sign-in form had expired, so nothing was sent. Please sign in again.".into();
        }));
    }
    if organisation.is_empty() || email.is_empty() || password.is_empty() {
        return Ok(again(StatusCode::UNPROCESSABLE_ENTITY, &|p| {
            if p.organisation.is_empty() {
                p.organisation_error = "Enter your organisation's short name, like acme".into();
            }
            if p.email.is_empty() {
                p.email_error = "Enter the email address you sign in with".into();
            }
            if password.is_empty() {
                p.password_error = "Enter your password".into();
            }
            p.focus = if !p.organisation_error.is_empty() {
                "organisation"
            } else if !p.email_error.is_empty() {
                "email"
            } else {
                "password"
            };
        }));
    }
    match crate::api::sessions::password_login(&state, &ctx, organisation, email, SecretString::from(password)).await {
        Ok(outcome) => signed_in(&state, &headers, organisation, &next, outcome).await,
        Err(e) if e.code == "invalid_field" => Ok(again(StatusCode::UNPROCESSABLE_ENTITY, &|p| {
            p.email_error = "Enter an email address like name@example.com".into();
            p.focus = "email";
        })),
        Err(e) => {
            let mut r = again(e.status, &|p| p.problem = refusal_words(&e));
            if let Some(s) = e.retry_after {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            Ok(r)
        }
    }
}

/// A page sign-in whose password or mailed code was right (`ui::sign_in`, `ui::email_code`): into
/// the app with the session's cookies, or on to the second step. Either way the browser
/// remembers the organisation for the switcher (`cookies::remember_organisation`).
pub(crate) async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    organisation: &str,
    next: &str,
    outcome: LoginOutcome,
) -> Result<Response, ApiError> {
    let secure = state.secure_cookies;
    let mut r = match outcome {
        LoginOutcome::Issued(issued) => {
            let mut r = Redirect::to(&landing(state, &issued, next).await?).into_response();
            cookies::set_session(&mut r, &issued, secure);
            r
        }
        LoginOutcome::MfaRequired(c) => answer(headers, secure, StatusCode::OK, |csrf| SecondFactorPage {
            chrome: Chrome::public(csrf),
            mfa_token: c.token.expose_secret().to_owned(),
            next: next.to_owned(),
            totp: c.methods.contains(&Method::Totp),
            email_code: c.methods.contains(&Method::EmailCode),
            problem: String::new(),
        }),
    };
    cookies::remember_organisation(&mut r, headers, organisation, secure);
    Ok(r)
}

/// `POST /sign-in/second-factor` {mfa_token, method, code, next, csrf_token}
pub async fn second_factor(
    State(state): State<AppState>,
    ctx: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let (token, code, next) = (f.get("mfa_token"), f.get("code"), local_path(f.get("next")));
    let secure = state.secure_cookies;
    let start_again = |status: StatusCode, problem: String| {
        answer(&headers, secure, status, |csrf| {
            let mut p = SignInPage::new(Chrome::public(csrf), "", "", &next);
            p.problem = problem;
            p
        })
    };
    if !form_token_matches(&headers, &f) {
        return Ok(start_again(StatusCode::FORBIDDEN, "This sign-in form had expired. Please sign in again.".into()));
    }
    let code = SecretString::from(code.chars().take(32).collect::<String>());
    let answer_of = match f.get("method") {
        "recovery_code" => Answer::RecoveryCode(code),
        "email_code" => Answer::EmailCode(code),
        _ => Answer::Totp(code),
    };
    let outcome =
        identity::signin::mfa::complete(&state.auth, &state.store, &state.mfa_keys, token, &answer_of, &ctx.origin())
            .await;
    match outcome.map_err(ApiError::from) {
        Ok(issued) => {
            let mut r = Redirect::to(&landing(&state, &issued, &next).await?).into_response();
            cookies::set_session(&mut r, &issued, secure);
            Ok(r)
        }
        Err(e) if e.code == "invalid_code" || e.code == "invalid_field" => {
            let email_code = f.get("method") == "email_code";
            Ok(answer(&headers, secure, StatusCode::UNAUTHORIZED, |csrf| SecondFactorPage {
                chrome: Chrome::public(csrf),
                mfa_token: token.to_owned(),
                next: next.clone(),
                totp: !email_code,
                email_code,
                problem: "That code is wrong, expired or already used. Try the current code.".into(),
            }))
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED => Ok(start_again(
            StatusCode::UNAUTHORIZED,
            "This sign-in took too long or was already used. Please sign in again.".into(),
        )),
        Err(e) => Ok(start_again(e.status, refusal_words(&e))),
    }
}

/// `POST /sign-out`: ends this session and clears the cookies.
pub async fn sign_out(State(state): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    crate::api::sessions::end_session(&state, &p).await?;
    let mut r = Redirect::to("/sign-in").into_response();
    cookies::clear_session(&mut r);
    Ok(r)
}

/// The double submit of a form that runs before any session (sign-in): the field must repeat the
/// `cs_csrf` cookie.
pub(crate) fn form_token_matches(headers: &HeaderMap, f: &Fields) -> bool {
    same_token(f.get(cookies::CSRF_FIELD), &cookie(headers, CSRF_COOKIE).unwrap_or_default())
}

/// A refused sign-in in words.
pub(crate) fn refusal_words(e: &ApiError) -> String {
    match (e.status, e.code) {
        (StatusCode::UNAUTHORIZED, _) => {
            "The organisation, email or password is not right. Check them and try again.".to_owned()
        }
        (_, "too_many_attempts") => format!(
            "Too many failed sign-ins for this account: it is locked for {}. An administrator can unlock it sooner.",
            wait_words(e.retry_after.unwrap_or(900))
        ),
        (_, "rate_limited") => format!(
            "Too many sign-in attempts from your network address. Try again in {}.",
            wait_words(e.retry_after.unwrap_or(60))
        ),
        (_, "ip_not_allowed") => {
            "Your network address is not allowed for this organisation. Connect from an allowed network (your office or VPN), or ask an administrator.".to_owned()
        }
        (_, "unavailable") => "Signing in is not possible right now. Try again in a moment.".to_owned(),
        _ => e.message.clone(),
    }
}
