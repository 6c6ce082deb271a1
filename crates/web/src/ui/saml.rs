//! SAML 2.0 single sign-on in a browser (`identity::signin::saml`):
//! `GET /saml/{organisation}/metadata` is the organisation's SP metadata (entity id, ACS) for its
//! IdP's administrator; `GET /sign-in/saml?organisation=…` sends the browser to the IdP with an
//! AuthnRequest (HTTP-Redirect); `POST /saml/{organisation}/acs` takes the IdP's response
//! (HTTP-POST) into the same session cookies a password sign-in sets (or the second step).
//!
//! The request's browser binding travels only in the `cs_saml` cookie: `HttpOnly`, limited to
//! `/saml` and to the request's ten minutes. The IdP's POST back is a cross-site request, which a
//! `Lax` cookie does not accompany, so over HTTPS it is `SameSite=None; Secure` (it carries no
//! authority of its own: it only names requests this browser started); over plain HTTP (a
//! loopback development server, where the IdP is same-site) `Lax`. A response without it (another
//! browser: login CSRF) is refused. IdP-initiated responses are refused. Every refusal is the
//! sign-in page with the words and the stable code, never a 5xx.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use identity::signin::saml::{self, SpEndpoints};
use secrecy::ExposeSecret;

use crate::plumbing::client::ServedOverTls;
use crate::plumbing::cookies::cookie;
use crate::ui::form::{Fields, encode, local_path};
use crate::ui::sign_in::signed_in;
use crate::{ApiError, AppState, ClientContext};

/// The cookie binding a started request to this browser.
pub(crate) const SAML_COOKIE: &str = "cs_saml";
/// The only path the binding cookie is sent to (the ACS is under it).
const COOKIE_PATH: &str = "/saml";
/// Where the sign-in page's button starts a SAML sign-in.
pub(crate) const START_PATH: &str = "/sign-in/saml";

/// This deployment's base URL: the configured public URL, else the request's own host.
fn base(state: &AppState, headers: &HeaderMap, tls: bool) -> String {
    if let Some(u) = &state.public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let base = crate::api::scim::base_url(state, headers);
    if tls { base.replacen("http://", "https://", 1) } else { base }
}

/// The organisation's SP: its entity id is its metadata URL; its ACS is beside it.
pub(crate) fn endpoints(state: &AppState, headers: &HeaderMap, tls: bool, organisation: &str) -> SpEndpoints {
    let base = base(state, headers, tls);
    SpEndpoints {
        entity_id: format!("{base}/saml/{organisation}/metadata"),
        acs_url: format!("{base}/saml/{organisation}/acs"),
    }
}

fn binding_cookie(value: &str, max_age: i64, secure: bool) -> Option<HeaderValue> {
    let site = if secure { "SameSite=None; Secure" } else { "SameSite=Lax" };
    HeaderValue::from_str(&format!("{SAML_COOKIE}={value}; Path={COOKIE_PATH}; HttpOnly; {site}; Max-Age={max_age}"))
        .ok()
}

/// The sign-in page refusing the sign-in: the words, and the stable code beside them.
fn refusal(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    organisation: &str,
    code: &str,
    words: &str,
) -> Response {
    let ended = binding_cookie("", 0, state.secure_cookies);
    crate::ui::sso::refused_sign_in(state, headers, status, (organisation, code, words), ended)
}

/// A refused sign-in in words, by its code.
fn words(e: &ApiError) -> String {
    match e.code {
        "saml_not_configured" => "This organisation does not sign in with SAML single sign-on. Sign in with your \
                                  email and password."
            .to_owned(),
        "saml_request_invalid" => "This single sign-on was not started in this browser, was already used or took too \
                                   long. Start again from the sign-in page."
            .to_owned(),
        "saml_assertion_replayed" => {
            "This sign-in answer was already used, so nobody was signed in. Start again from the sign-in page."
                .to_owned()
        }
        "saml_email_domain_not_allowed" => {
            "Your email address is not at a domain this organisation signs in with. Ask its administrator.".to_owned()
        }
        "saml_identity_conflict" => "Your account is already linked to another identity at this provider. Ask your \
                                     administrator."
            .to_owned(),
        "saml_membership_pending" => "Your request to join waits for an administrator's approval.".to_owned(),
        "saml_no_membership" => {
            "You are not a member of this organisation. Ask its administrator to invite you.".to_owned()
        }
        "saml_idp_refused" => "Your organisation's identity provider did not sign you in. Try again.".to_owned(),
        "unauthenticated" => "Single sign-on cannot sign this account in to this organisation: it is disabled, or \
                              the organisation's sign-in rules do not allow it. Ask its administrator."
            .to_owned(),
        c if c.starts_with("saml_") => "The identity provider's answer could not be verified, so nobody was signed \
                                        in. Ask your administrator."
            .to_owned(),
        _ => crate::ui::sign_in::refusal_words(e),
    }
}

/// `GET /saml/{organisation}/metadata`: the organisation's SP metadata (XML), for its IdP.
pub async fn metadata(
    State(state): State<AppState>,
    headers: HeaderMap,
    tls: Option<axum::Extension<ServedOverTls>>,
    Path(organisation): Path<String>,
) -> Result<Response, ApiError> {
    let organisation = organisation.to_ascii_lowercase();
    let missing = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such organisation");
    if identity::Slug::parse(&organisation).is_err() {
        return Err(missing());
    }
    crate::api::sign_in::resolve(&state, &organisation).await?.ok_or_else(missing)?;
    let xml = endpoints(&state, &headers, tls.is_some(), &organisation).metadata_xml()?;
    Ok(([(header::CONTENT_TYPE, "application/samlmetadata+xml")], xml).into_response())
}

/// Starts `organisation`'s SAML sign-in, for the page below and the JSON API (`crate::api::sso`):
/// the AuthnRequest's address at the IdP, and the `cs_saml` cookie binding it to this browser
/// (with `next`, a local path). As for OpenID Connect (`crate::ui::sso::begin`), an unknown or
/// malformed name walks the same path as an organisation without SAML, with a decoy tenant
/// (`crate::api::sign_in::resolve_or_decoy`), and gets the same refusal.
///
/// # Errors
/// 403 `saml_not_configured`, 403 `ip_not_allowed`; 5xx for ours.
pub(crate) async fn begin(
    state: &AppState,
    ctx: &ClientContext,
    headers: &HeaderMap,
    tls: bool,
    organisation: &str,
    next: &str,
) -> Result<crate::ui::sso::Started, ApiError> {
    let (tenant, exists) = crate::api::sign_in::resolve_or_decoy(state, organisation).await?;
    let subject = crate::plumbing::ip_allowlist::Subject::Login("saml");
    crate::plumbing::ip_allowlist::enforce(state, tenant, ctx, subject).await?;
    let sp = endpoints(state, headers, tls, organisation);
    let begun = saml::begin(&state.store, tenant, &sp).await.map_err(ApiError::from)?;
    if !exists {
        // Unreachable: the decoy has no IdP. Refused all the same.
        return Err(ApiError::from(identity::IdentityError::Forbidden {
            code: "saml_not_configured",
            reason: "this organisation has no SAML single sign-on".into(),
        }));
    }
    let value = format!("{}.{}", begun.binding.expose_secret(), encode(next));
    Ok(crate::ui::sso::Started {
        redirect_url: begun.redirect_url,
        cookie: binding_cookie(&value, begun.expires_in, state.secure_cookies),
        expires_in: begun.expires_in,
    })
}

/// `GET /sign-in/saml?organisation=…&next=…`: starts the organisation's SAML sign-in.
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

/// `POST /saml/{organisation}/acs` {SAMLResponse, RelayState}: the IdP's answer to a request
/// this browser started, into a session.
pub async fn acs(
    State(state): State<AppState>,
    ctx: ClientContext,
    headers: HeaderMap,
    tls: Option<axum::Extension<ServedOverTls>>,
    Path(organisation): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let organisation = organisation.to_ascii_lowercase();
    // The response is a whole document, bounded and parsed by `saml::acs`.
    let f = Fields::parse_with_documents(&body, &["SAMLResponse"])?;
    let kept = cookie(&headers, SAML_COOKIE).unwrap_or_default();
    let (binding, next) = kept.split_once('.').unwrap_or((kept.as_str(), ""));
    let next = local_path(&crate::plumbing::edge::decode(next));
    let refuse = |e: &ApiError| refusal(&state, &headers, e.status, &organisation, e.code, &words(e));
    let tenant = if identity::Slug::parse(&organisation).is_ok() {
        crate::api::sign_in::resolve(&state, &organisation).await?
    } else {
        None
    };
    let Some(tenant) = tenant else {
        let e = ApiError::from(identity::IdentityError::Forbidden {
            code: "saml_not_configured",
            reason: "this organisation has no SAML single sign-on".into(),
        });
        return Ok(refuse(&e));
    };
    let sp = endpoints(&state, &headers, tls.is_some(), &organisation);
    let outcome = saml::acs(
        &state.auth,
        &state.store,
        crate::api::sign_in::factors(&state),
        tenant,
        &sp,
        f.get("SAMLResponse"),
        Some(binding),
        &ctx.origin(),
    )
    .await
    .map_err(ApiError::from);
    match outcome {
        Ok(outcome) => {
            let mut r =
                crate::ui::sso::continue_same_site(signed_in(&state, &headers, &organisation, &next, outcome).await?);
            if let Some(v) = binding_cookie("", 0, state.secure_cookies) {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(r)
        }
        Err(e) if e.status.is_server_error() => Err(e),
        Err(e) => Ok(refuse(&e)),
    }
}
