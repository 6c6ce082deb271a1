//! `/invitations/accept?token=…`: the page an invitation's link opens. The invited person sets
//! their name and password (a new account; the same password rules as the API: at least 12
//! characters, not the address or the organisation) or gives the password of the account they
//! already have, and joins; then they sign in. The same call as
//! `POST /api/v1/invitations/accept` (`identity::admin::invitations::accept`); the token is the
//! credential (`Guard::SignIn`: the per-address budget). A forged, expired, revoked or used link
//! is a readable 4xx page, never a server error.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use identity::admin::invitations::{self, Acceptance, PresentedInvitation};
use secrecy::SecretString;

use crate::ui::chrome::Chrome;
use crate::ui::form::Fields;
use crate::ui::sign_in::{SignInPage, answer, form_token_matches};
use crate::{ApiError, AppState, ClientContext};

#[derive(Template, WebTemplate)]
#[template(path = "invitation.html")]
pub(crate) struct InvitationPage {
    pub chrome: Chrome,
    pub token: String,
    pub name: String,
    /// The form shows (false: the link cannot be used; `problem` says why).
    pub usable: bool,
    pub problem: String,
    pub password_error: String,
}

impl InvitationPage {
    fn new(csrf: String, token: &str, name: &str) -> Self {
        Self {
            chrome: Chrome::public(csrf),
            token: token.to_owned(),
            name: name.to_owned(),
            usable: true,
            problem: String::new(),
            password_error: String::new(),
        }
    }
}

fn forged() -> &'static str {
    "This invitation link is not valid. Open the link from the invitation email exactly as it was sent, or ask for a new invitation."
}

/// `GET /invitations/accept?token=…`
pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let token = q.get("token").chars().take(200).collect::<String>();
    let usable = token.parse::<PresentedInvitation>().is_ok();
    let status = if usable { StatusCode::OK } else { StatusCode::NOT_FOUND };
    Ok(answer(&headers, state.secure_cookies, status, |csrf| {
        let mut p = InvitationPage::new(csrf, &token, "");
        if !usable {
            p.usable = false;
            p.problem = forged().into();
        }
        p
    }))
}

/// `POST /invitations/accept` {token, name, password, csrf_token}: joins, then the sign-in page
/// (organisation filled in) says so.
pub async fn accept(
    State(state): State<AppState>,
    ctx: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let (token, name) = (f.get("token"), f.get("name"));
    let password = f.all("password").first().map(|p| (*p).to_owned()).unwrap_or_default();
    let secure = state.secure_cookies;
    let again = |status: StatusCode, fill: &dyn Fn(&mut InvitationPage)| {
        answer(&headers, secure, status, |csrf| {
            let mut page = InvitationPage::new(csrf, token, name);
            fill(&mut page);
            page
        })
    };
    if !form_token_matches(&headers, &f) {
        return Ok(again(StatusCode::FORBIDDEN, &|p| {
            p.problem = "This form had expired, so nothing was sent. Please try again.".into();
        }));
    }
    if token.len() > 200 || name.chars().count() > 200 || password.len() > 1024 {
        return Ok(again(StatusCode::UNPROCESSABLE_ENTITY, &|p| {
            p.password_error = "A name may have at most 200 characters, a password 1024.".into();
        }));
    }
    if password.is_empty() {
        return Ok(again(StatusCode::UNPROCESSABLE_ENTITY, &|p| p.password_error = "Enter a password".into()));
    }
    let Ok(presented) = token.parse::<PresentedInvitation>() else {
        return Ok(again(StatusCode::NOT_FOUND, &|p| {
            p.usable = false;
            p.problem = forged().into();
        }));
    };
    let acceptance =
        Acceptance { name: (!name.is_empty()).then(|| name.to_owned()), password: Some(SecretString::from(password)) };
    match invitations::accept(&state.store, &state.auth, &presented, &acceptance, &ctx.origin()).await {
        Ok(done) => {
            let mut tx = state.store.tenant_tx(done.tenant).await?;
            let org = identity::directory::tenants::current(&mut tx).await?;
            tx.commit().await?;
            Ok(answer(&headers, secure, StatusCode::OK, |csrf| {
                let mut p = SignInPage::new(Chrome::public(csrf), &org.slug, "", "/");
                p.notice = format!("Welcome to {}: you have joined. Sign in to start.", org.name);
                p
            }))
        }
        Err(e) => {
            let e = ApiError::from(e);
            match (e.status, e.code) {
                (StatusCode::GONE, "partner_inactive") => Ok(again(StatusCode::GONE, &|p| {
                    p.usable = false;
                    p.problem = format!(
                        "This invitation cannot be used: it is {}. Ask the vendor's channel manager about the partner programme.",
                        e.message.trim_start_matches("this invitation is ")
                    );
                })),
                (StatusCode::GONE, _) => Ok(again(StatusCode::GONE, &|p| {
                    p.usable = false;
                    p.problem = format!(
                        "This invitation cannot be used any more: {}. Ask whoever invited you for a new one.",
                        e.message.trim_start_matches("this invitation is ")
                    );
                })),
                (_, "weak_password" | "invalid_field") => Ok(again(StatusCode::UNPROCESSABLE_ENTITY, &|p| {
                    p.password_error = format!(
                        "Choose a stronger password: {}.",
                        e.message.trim_start_matches("password: ").trim_end_matches('.')
                    );
                })),
                (StatusCode::UNAUTHORIZED, _) => Ok(again(StatusCode::UNAUTHORIZED, &|p| {
                    p.problem = "This invitation link is not valid, or — if you already have a Countersign account — the password is not that account's.".into();
                })),
                (_, _) => Ok(again(e.status, &|p| p.problem = crate::ui::sign_in::refusal_words(&e))),
            }
        }
    }
}
