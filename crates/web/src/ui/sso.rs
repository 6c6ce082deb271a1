//! Single sign-on in a browser: `GET /sign-in/sso?organisation=…` starts the organisation's
//! OpenID Connect flow (`identity::signin::oidc::Sso::begin`) and sends the browser to its
//! provider; `GET /sign-in/sso/callback` completes it (`Sso::callback`) into the same session
//! cookies a password sign-in sets (or the second step), then home.
//!
//! The flow's browser binding travels only in the `cs_sso` cookie: `HttpOnly`, `Secure` when the
//! session cookies are, limited to `/sign-in/sso` and to the flow's ten minutes, and
//! `SameSite=Lax` — the provider's redirect back is a cross-site top-level GET, which a `Strict`
//! cookie would not accompany. A callback without it (another browser: login CSRF) is refused.
//! Every refusal is the sign-in page with the words and the stable code, never a 5xx.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use identity::IdentityError;
use identity::signin::oidc_config::{self, Preset};
use secrecy::ExposeSecret;

use crate::plumbing::client::ServedOverTls;
use crate::plumbing::cookies::cookie;
use crate::ui::chrome::Chrome;
use crate::ui::form::{Fields, encode, local_path};
use crate::ui::sign_in::{SignInPage, answer, signed_in};
use crate::{ApiError, AppState, ClientContext};

/// The cookie binding a started flow to this browser (see the module comment).
pub(crate) const SSO_COOKIE: &str = "cs_sso";
/// The only path the binding cookie is sent to.
pub(crate) const SSO_PATH: &str = "/sign-in/sso";
/// Where the provider sends the browser back (registered at the provider).
pub(crate) const CALLBACK_PATH: &str = "/sign-in/sso/callback";

/// The words on the sign-in page's button for an organisation with single sign-on and the path
/// that starts it (OpenID Connect first, else SAML), or `None` when it has none (or no such
/// organisation exists: the same answer).
pub(crate) async fn offer(state: &AppState, organisation: &str) -> Option<(String, &'static str)> {
    let slug = organisation.trim();
    if slug.is_empty() || slug.len() > 100 {
        return None;
    }
    let tenant = state.store.resolve_tenant(slug).await.ok().flatten()?;
    let mut tx = state.store.tenant_tx(tenant).await.ok()?;
    let config = oidc_config::get(&mut tx).await.ok().flatten();
    let saml = identity::signin::saml_config::get(&mut tx).await.ok().flatten();
    tx.commit().await.ok()?;
    let Some(config) = config.filter(|c| c.enabled) else {
        let saml = saml.filter(|c| c.enabled)?;
        let host = saml.sso_url.split_once("://").map_or(saml.sso_url.as_str(), |(_, r)| r);
        let host = host.split(['/', '?', '#']).next().unwrap_or(host);
        return Some((format!("Sign in with SAML single sign-on ({host})"), crate::ui::saml::START_PATH));
    };
    let words = match config.preset {
        Preset::Google => "Sign in with Google".to_owned(),
        Preset::Entra => "Sign in with Microsoft".to_owned(),
        Preset::Generic => {
            // The issuer's host (and port), as people know their provider.
            let rest = config.issuer.split_once("://").map_or(config.issuer.as_str(), |(_, r)| r);
            let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
            format!("Sign in with single sign-on ({host})")
        }
    };
    Some((words, SSO_PATH))
}

/// This server's callback URL: under the configured public URL, else the request's own host
/// (`https` when it came over our TLS). A forged `Host` only names a callback the provider has
/// not registered, so the provider refuses it.
fn callback_url(state: &AppState, headers: &HeaderMap, tls: bool) -> String {
    if let Some(u) = &state.public_url {
        return format!("{}{CALLBACK_PATH}", u.trim_end_matches('/'));
    }
    let base = crate::api::scim::base_url(state, headers);
    let base = if tls { base.replacen("http://", "https://", 1) } else { base };
    format!("{base}{CALLBACK_PATH}")
}

/// "Signed in", then on to the page: a page of ours that moves on by itself (a meta refresh,
/// and a link), for the redirect a finished sign-in would answer. The callback is the end of a
/// navigation another site started (the provider's redirect), and a browser sends no
/// `SameSite=Strict` cookie — every session cookie is one — on any step of such a chain: a
/// redirect from here would reach the inbox without the session just set, and land on the
/// sign-in page. A navigation this page starts is our own site's. The cookies are kept.
#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "sso_continue.html")]
struct ContinuePage {
    chrome: Chrome,
    next: String,
}

pub(crate) fn continue_same_site(r: Response) -> Response {
    if !r.status().is_redirection() {
        return r;
    }
    let next =
        r.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map_or_else(|| "/".to_owned(), local_path);
    let mut page = ContinuePage { chrome: Chrome::public(String::new()), next }.into_response();
    for v in r.headers().get_all(header::SET_COOKIE) {
        page.headers_mut().append(header::SET_COOKIE, v.clone());
    }
    page
}

fn binding_cookie(value: &str, max_age: i64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SSO_COOKIE}={value}; Path={SSO_PATH}; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// The sign-in page refusing single sign-on: the words, and the stable code beside them.
fn refusal(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    organisation: &str,
    code: &str,
    words: &str,
) -> Response {
    refused_sign_in(state, headers, status, (organisation, code, words), binding_cookie("", 0, state.secure_cookies))
}

/// The sign-in page refusing a single sign-on of either provider: the organisation, the words and
/// the stable code beside them, and `ended`, the provider's binding cookie cleared: whatever
/// happened, the flow in this browser is over.
pub(crate) fn refused_sign_in(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    (organisation, code, words): (&str, &str, &str),
    ended: Option<HeaderValue>,
) -> Response {
    let mut r = answer(headers, state.secure_cookies, status, |csrf| {
        let mut page = SignInPage::new(Chrome::public(csrf), organisation, "", "/");
        page.problem = words.to_owned();
        page.problem_code = code.to_owned();
        page
    });
    if let Some(v) = ended {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// A refused sign-in in words, by its code.
fn words(e: &ApiError) -> String {
    match e.code {
        "oidc_not_configured" => {
            "This organisation does not sign in with single sign-on. Sign in with your email and password.".to_owned()
        }
        "oidc_state_invalid" => "This single sign-on was not started in this browser, was already used or took too \
                                 long. Start again from the sign-in page."
            .to_owned(),
        "oidc_provider_failed" => format!(
            "Your organisation's identity provider could not complete the sign-in ({}). Try again, or ask your \
             administrator.",
            e.message
        ),
        "oidc_token_invalid" => "The identity provider's answer could not be verified, so nobody was signed in. Ask \
                                 your administrator."
            .to_owned(),
        "oidc_email_unverified" => "Your identity provider has not verified your email address, so it cannot sign \
                                    you in here. Verify it at the provider, or ask your administrator."
            .to_owned(),
        "oidc_email_domain_not_allowed" => {
            "Your email address is not at a domain this organisation signs in with. Ask its administrator.".to_owned()
        }
        "oidc_identity_conflict" => "Your account is already linked to another identity at this provider. Ask your \
                                     administrator."
            .to_owned(),
        "oidc_membership_pending" => "Your request to join waits for an administrator's approval.".to_owned(),
        "oidc_no_membership" => {
            "You are not a member of this organisation. Ask its administrator to invite you.".to_owned()
        }
        "unauthenticated" => "Single sign-on cannot sign this account in to this organisation: it is disabled, or \
                              the organisation's sign-in rules do not allow it. Ask its administrator."
            .to_owned(),
        _ => crate::ui::sign_in::refusal_words(e),
    }
}

/// A flow started for either face: where to send the browser, and the binding cookie to set.
pub(crate) struct Started {
    pub redirect_url: String,
    pub cookie: Option<HeaderValue>,
    pub expires_in: i64,
}

impl Started {
    /// The page's answer: off to the provider, with the cookie binding the flow to this browser.
    pub(crate) fn into_redirect(self) -> Response {
        let mut r = Redirect::to(&self.redirect_url).into_response();
        if let Some(v) = self.cookie {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    }
}

/// The refusal for an organisation that does not sign in with OpenID Connect — or does not
/// exist, or was named malformed: one answer for all three.
fn not_configured() -> ApiError {
    ApiError::from(IdentityError::Forbidden {
        code: "oidc_not_configured",
        reason: "this organisation has no single sign-on".into(),
    })
}

/// Starts `organisation`'s OpenID Connect sign-in, for the page below and the JSON API
/// (`crate::api::sso`): the flow, and the `cs_sso` cookie binding it to this browser (with the
/// organisation and `next`, a local path, for the callback).
///
/// No organisation-exists oracle: an unknown (or malformed) name walks the same path as a known
/// organisation without single sign-on, with a decoy tenant
/// (`crate::api::sign_in::resolve_or_decoy`), so both are refused with `oidc_not_configured`
/// after the same work.
///
/// # Errors
/// 403 `oidc_not_configured`, 403 `ip_not_allowed`, 403 `oidc_provider_failed`; 5xx for ours.
pub(crate) async fn begin(
    state: &AppState,
    ctx: &ClientContext,
    headers: &HeaderMap,
    tls: bool,
    organisation: &str,
    next: &str,
) -> Result<Started, ApiError> {
    let (tenant, exists) = crate::api::sign_in::resolve_or_decoy(state, organisation).await?;
    // The organisation's allowlist, as for a password sign-in (before its provider is asked).
    let subject = crate::plumbing::ip_allowlist::Subject::Login("oidc");
    crate::plumbing::ip_allowlist::enforce(state, tenant, ctx, subject).await?;
    let callback = callback_url(state, headers, tls);
    let begun = state.sso.begin(&state.store, tenant, &callback).await.map_err(ApiError::from)?;
    if !exists {
        // Unreachable: the decoy has no provider. Refused all the same.
        return Err(not_configured());
    }
    let value = format!("{}.{organisation}.{}", begun.binding.expose_secret(), encode(next));
    Ok(Started {
        redirect_url: begun.authorize_url,
        cookie: binding_cookie(&value, begun.expires_in, state.secure_cookies),
        expires_in: begun.expires_in,
    })
}

/// `GET /sign-in/sso?organisation=…&next=…`: starts the organisation's single sign-on.
pub async fn start(
    State(state): State<AppState>,
    ctx: ClientContext,
    headers: HeaderMap,
    tls: Option<axum::Extension<ServedOverTls>>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let organisation = q.get("organisation").trim().to_ascii_lowercase();
    let next = local_path(q.get("next"));
    match begin(&state, &ctx, &headers, tls.is_some(), &organisation, &next).await {
        Ok(started) => Ok(started.into_redirect()),
        Err(e) if e.status.is_server_error() => Err(e),
        Err(e) => Ok(refusal(&state, &headers, e.status, &organisation, e.code, &words(&e))),
    }
}

/// The provider's own refusals (RFC 6749 §4.1.2.1) we put in words; anything else is named
/// only as "refused" (its text is the provider's, or anyone's who crafted the link: never shown).
fn provider_error_words(error: &str) -> &'static str {
    match error {
        "access_denied" => "you or the provider declined the sign-in",
        "login_required" | "interaction_required" | "consent_required" => "the provider needs you to sign in again",
        "temporarily_unavailable" | "server_error" => "the provider is unavailable just now",
        _ => "the provider refused the sign-in",
    }
}

/// `GET /sign-in/sso/callback?state=…&code=…` (or `error=…`): completes the flow this browser
/// started, into a session.
pub async fn callback(
    State(state): State<AppState>,
    ctx: ClientContext,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let (flow_state, code) = (q.get("state"), q.get("code"));
    let kept = cookie(&headers, SSO_COOKIE).unwrap_or_default();
    let mut parts = kept.splitn(3, '.');
    let binding = parts.next().filter(|b| !b.is_empty());
    let organisation = parts.next().filter(|o| identity::Slug::parse(o).is_ok()).map(str::to_owned).unwrap_or_default();
    let next = local_path(&crate::plumbing::edge::decode(parts.next().unwrap_or_default()));
    let flow_state = if flow_state.len() > 512 { "" } else { flow_state };
    // The provider's refusal still spends the flow (an empty code is refused after the state and
    // the binding are checked, and audited), so the link cannot be used afterwards.
    let provider_error = q.has("error").then(|| provider_error_words(q.get("error")));
    let code = if provider_error.is_some() { "" } else { code };
    let outcome = state
        .sso
        .callback(
            &state.auth,
            &state.store,
            crate::api::sign_in::factors(&state),
            flow_state,
            code,
            binding,
            &ctx.origin(),
        )
        .await
        .map_err(ApiError::from);
    match outcome {
        Ok(outcome) => {
            let mut r = continue_same_site(signed_in(&state, &headers, &organisation, &next, outcome).await?);
            if let Some(v) = binding_cookie("", 0, state.secure_cookies) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(r)
        }
        Err(e) if e.status.is_server_error() => Err(e),
        Err(e) => {
            let text = match provider_error {
                Some(what) if e.code == "oidc_provider_failed" => {
                    format!("Your organisation's identity provider did not sign you in: {what}. Try again.")
                }
                _ => words(&e),
            };
            Ok(refusal(&state, &headers, e.status, &organisation, e.code, &text))
        }
    }
}
