//! Signing in with a code mailed to you instead of a password ("Email me a code instead"):
//! organisation and email → "if that address has an account there, we sent a code" (the same
//! words, status and work whether or not it has: `crate::api::mfa::send_code`, no oracle) → the
//! code → signed in, or on to the second step when the organisation or person requires one (the
//! same `crate::api::mfa::redeem_code` as `POST /api/v1/auth/email-code/verify`). A wrong,
//! expired or used code is said on the form (401), never a server error.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use identity::signin::email_codes::Purpose;

use crate::api::mfa::{Redeemed, redeem_code, send_code};
use crate::ui::chrome::Chrome;
use crate::ui::form::{Fields, local_path};
use crate::ui::sign_in::{answer, form_token_matches, refusal_words, signed_in};
use crate::{ApiError, AppState, ClientContext};

#[derive(Template, WebTemplate)]
#[template(path = "email_code.html")]
pub(crate) struct EmailCodePage {
    pub chrome: Chrome,
    pub organisation: String,
    pub email: String,
    pub next: String,
    /// The code was (or may have been) sent: the page asks for it.
    pub sent: bool,
    pub problem: String,
    pub organisation_error: String,
    pub email_error: String,
    pub code_error: String,
}

impl EmailCodePage {
    fn new(csrf: String, organisation: &str, email: &str, next: &str) -> Self {
        Self {
            chrome: Chrome::public(csrf),
            organisation: organisation.to_owned(),
            email: email.to_owned(),
            next: next.to_owned(),
            sent: false,
            problem: String::new(),
            organisation_error: String::new(),
            email_error: String::new(),
            code_error: String::new(),
        }
    }
}

fn with_retry(mut r: Response, e: &ApiError) -> Response {
    if let Some(s) = e.retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// `GET /sign-in/email-code?organisation=…&next=…`
pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let next = local_path(q.get("next"));
    let organisation = q.get("organisation").chars().take(100).collect::<String>();
    Ok(answer(&headers, state.secure_cookies, StatusCode::OK, |csrf| {
        EmailCodePage::new(csrf, &organisation, "", &next)
    }))
}

/// `POST /sign-in/email-code` {organisation, email, next, csrf_token}: mails a code (or does the
/// same work for an address with no account) and asks for it.
pub async fn send(
    State(state): State<AppState>,
    ctx: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let (organisation, email, next) = (f.get("organisation"), f.get("email"), local_path(f.get("next")));
    let secure = state.secure_cookies;
    let again = |status: StatusCode, fill: &dyn Fn(&mut EmailCodePage)| {
        answer(&headers, secure, status, |csrf| {
            let mut page = EmailCodePage::new(csrf, organisation, email, &next);
            fill(&mut page);
            page
        })
    };
    if !form_token_matches(&headers, &f) {
        return Ok(again(StatusCode::FORBIDDEN, &|p| {
            p.problem = "This form had expired, so nothing was sent. Please try again.".into();
        }));
    }
    if organisation.is_empty() || email.is_empty() {
        return Ok(again(StatusCode::UNPROCESSABLE_ENTITY, &|p| {
            if p.organisation.is_empty() {
                p.organisation_error = "Enter your organisation's short name, like acme".into();
            }
            if p.email.is_empty() {
                p.email_error = "Enter the email address you sign in with".into();
            }
        }));
    }
    match send_code(&state, &ctx, organisation, email, Purpose::Login).await {
        Ok(()) => Ok(again(StatusCode::OK, &|p| p.sent = true)),
        Err(e) if e.code == "invalid_field" || e.code == "invalid_email" => {
            Ok(again(StatusCode::UNPROCESSABLE_ENTITY, &|p| {
                p.email_error = "Enter an email address like name@example.com".into();
            }))
        }
        Err(e) => Ok(with_retry(again(e.status, &|p| p.problem = code_refusal_words(&e)), &e)),
    }
}

/// `POST /sign-in/email-code/verify` {organisation, email, code, next, csrf_token}
pub async fn verify(
    State(state): State<AppState>,
    ctx: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let (organisation, email, next) = (f.get("organisation"), f.get("email"), local_path(f.get("next")));
    let code: String = f.get("code").chars().filter(|c| !c.is_whitespace()).take(33).collect();
    let secure = state.secure_cookies;
    let again = |status: StatusCode, fill: &dyn Fn(&mut EmailCodePage)| {
        answer(&headers, secure, status, |csrf| {
            let mut page = EmailCodePage::new(csrf, organisation, email, &next);
            page.sent = true;
            fill(&mut page);
            page
        })
    };
    if !form_token_matches(&headers, &f) {
        return Ok(again(StatusCode::FORBIDDEN, &|p| {
            p.problem = "This form had expired. Please enter the code again.".into();
        }));
    }
    if code.is_empty() {
        return Ok(again(StatusCode::UNPROCESSABLE_ENTITY, &|p| p.code_error = "Enter the code from the email".into()));
    }
    match redeem_code(&state, &ctx, organisation, email, &code).await {
        Ok(Redeemed::SignedIn(outcome)) => signed_in(&state, &headers, organisation, &next, outcome).await,
        // A code of another purpose (verify_email) signs nobody in: the same words as a wrong one.
        Ok(Redeemed::Verified) => Ok(again(StatusCode::UNAUTHORIZED, &|p| p.code_error = wrong_code().into())),
        Err(e) if matches!(e.code, "invalid_code" | "invalid_field" | "unauthenticated") => {
            Ok(again(StatusCode::UNAUTHORIZED, &|p| p.code_error = wrong_code().into()))
        }
        Err(e) if e.code == "password_required" => Ok(answer(&headers, secure, e.status, |csrf| {
            let mut p = crate::ui::sign_in::SignInPage::new(Chrome::public(csrf), organisation, email, &next);
            p.problem = "Your organisation asks for a second step when you sign in, and a mailed code cannot be both: sign in with your password (and then the code we mail you).".into();
            p
        })),
        Err(e) => Ok(with_retry(again(e.status, &|p| p.problem = code_refusal_words(&e)), &e)),
    }
}

fn wrong_code() -> &'static str {
    "That code is wrong, expired or already used. Check the latest email, or ask for a new code."
}

fn code_refusal_words(e: &ApiError) -> String {
    match e.code {
        "rate_limited" | "too_many_codes" => format!(
            "Too many codes were asked for. Try again in {}.",
            crate::ui::refusals::wait_words(e.retry_after.unwrap_or(300))
        ),
        _ => refusal_words(e),
    }
}
