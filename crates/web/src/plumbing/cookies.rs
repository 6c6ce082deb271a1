//! The session cookies of browsers: reading them, the CSRF double submit, setting them after a
//! sign-in and clearing them at sign-out.
//!
//! The access token, the refresh token and a CSRF token travel as cookies (`HttpOnly` except the
//! CSRF one, `Secure` unless the server runs plain HTTP for development, `SameSite=Strict`; the
//! refresh cookie only travels to `/api/v1/auth`). Every state-changing request authenticated
//! by cookie must echo the CSRF cookie: in `X-CSRF-Token` (scripts, the API), or — for a page's
//! plain HTML form, which cannot set headers — in the form field `csrf_token`, which
//! [`form_token`] lifts out of the body before authentication runs. It is the same double
//! submit, compared in the same place ([`require_csrf_of`]).

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use secrecy::ExposeSecret;

use crate::ApiError;

pub(crate) const ACCESS_COOKIE: &str = "cs_access";
pub(crate) const REFRESH_COOKIE: &str = "cs_refresh";
pub(crate) const CSRF_COOKIE: &str = "cs_csrf";
const CSRF_HEADER: &str = "x-csrf-token";
/// The form field a page's forms carry the CSRF token in.
pub(crate) const CSRF_FIELD: &str = "csrf_token";
/// The only path the refresh cookie is sent to (pages resume a session through
/// `/api/v1/auth/resume`, under it: `crate::ui::resume`).
pub(crate) const REFRESH_PATH: &str = "/api/v1/auth";
/// The organisations this browser has signed in to (short names, most recent first): the
/// organisation switcher's list. Kept across sign-outs, like a browser's history; never
/// authority for anything (a switch is a sign-in).
pub(crate) const ORGS_COOKIE: &str = "cs_orgs";
/// How many organisations the switcher remembers.
const REMEMBERED: usize = 8;

/// The value of cookie `name`, if the request carries it.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Double-submit check: the header must repeat the CSRF cookie (compared in constant time).
pub(crate) fn require_csrf(headers: &HeaderMap) -> Result<(), ApiError> {
    require_csrf_of(headers, None)
}

/// The CSRF token a form post carried in its body (see [`form_token`]).
#[derive(Debug, Clone)]
pub(crate) struct FormToken(pub(crate) String);

/// Double-submit check: `X-CSRF-Token`, or else the form's `csrf_token` field, must repeat the
/// CSRF cookie (compared in constant time).
pub(crate) fn require_csrf_of(headers: &HeaderMap, form: Option<&FormToken>) -> Result<(), ApiError> {
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| form.map(|f| f.0.as_str()))
        .unwrap_or_default();
    let expected = cookie(headers, CSRF_COOKIE).unwrap_or_default();
    if same_token(sent, &expected) {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "csrf_failed", "missing or wrong X-CSRF-Token header"))
    }
}

/// Constant-time comparison of a presented token with the expected one (never equal when empty).
pub(crate) fn same_token(sent: &str, expected: &str) -> bool {
    !expected.is_empty()
        && sent.len() == expected.len()
        && sent.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The largest form body a page accepts (the raise form with many lines stays far below it).
pub(crate) const MAX_FORM_BYTES: usize = 256 * 1024;

/// Middleware of the page routes (outside their guards): a form post
/// (`application/x-www-form-urlencoded`) is read, its `csrf_token` field noted as a
/// [`FormToken`] for the authentication's double-submit check, and the body passed on intact.
/// Other requests pass untouched.
pub(crate) async fn form_token(req: Request, next: Next) -> Response {
    if let Some(boundary) = multipart_boundary(req.headers()) {
        return multipart_token(req, &boundary, next).await;
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case(FORM_TYPE));
    if !is_form {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the form is too large")
            .into_response();
    };
    if let Some(token) = form_fields(&bytes).into_iter().find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v) {
        parts.extensions.insert(FormToken(token));
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// The boundary of a `multipart/form-data` body (a page's file upload form), if that is what
/// the request carries.
pub(crate) fn multipart_boundary(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())?;
    let (essence, params) = ct.split_once(';').unwrap_or((ct, ""));
    if !essence.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim().eq_ignore_ascii_case("boundary") && !v.is_empty() && v.len() <= 70).then(|| v.to_owned())
    })
}

/// How much of a multipart body is read to find its first field (the CSRF token).
const MULTIPART_PEEK: usize = 8 * 1024;

/// A page's file upload (`multipart/form-data`): the form's first field must be `csrf_token`.
/// Only the start of the body is read (at most [`MULTIPART_PEEK`] bytes) to find it; the body
/// then goes on, whole and still streaming, to the handler — a file is never buffered here.
async fn multipart_token(req: Request, boundary: &str, next: Next) -> Response {
    use futures_util::StreamExt;
    let (mut parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut head: Vec<u8> = Vec::new();
    let mut failed = None;
    while head.len() < MULTIPART_PEEK && first_field(&head, boundary).is_none() {
        match stream.next().await {
            Some(Ok(b)) => head.extend_from_slice(&b),
            Some(Err(e)) => {
                failed = Some(e);
                break;
            }
            None => break,
        }
    }
    if let Some((name, value)) = first_field(&head, boundary)
        && name == CSRF_FIELD
    {
        parts.extensions.insert(FormToken(value));
    }
    let start = futures_util::stream::iter([Ok::<_, axum::Error>(axum::body::Bytes::from(head))]);
    let rest = futures_util::stream::iter(failed.map(Err)).chain(stream);
    next.run(Request::from_parts(parts, axum::body::Body::from_stream(start.chain(rest)))).await
}

/// The name and (text) value of the first field of a multipart body starting with `head`, once
/// the field is complete in it.
fn first_field(head: &[u8], boundary: &str) -> Option<(String, String)> {
    // The file's bytes may follow and not be UTF-8: the field is in the text before them.
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
    };
    let delimiter = format!("--{boundary}\r\n");
    let rest = text.strip_prefix(&delimiter)?;
    let (headers, rest) = rest.split_once("\r\n\r\n")?;
    let (value, _) = rest.split_once(&format!("\r\n--{boundary}"))?;
    let disposition =
        headers.split("\r\n").find(|h| h.to_ascii_lowercase().starts_with("content-disposition:"))?.to_owned();
    let name = disposition.split(';').find_map(|p| p.trim().strip_prefix("name=").map(|n| n.trim_matches('"')))?;
    (value.len() <= 256).then(|| (name.to_owned(), value.to_owned()))
}

/// The content type of an HTML form post.
pub(crate) const FORM_TYPE: &str = "application/x-www-form-urlencoded";

/// The fields of an `application/x-www-form-urlencoded` body, in order, percent-decoded.
pub(crate) fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (crate::plumbing::edge::decode(k), crate::plumbing::edge::decode(v))
        })
        .collect()
}

/// Sets the three cookies of a new session (a fresh CSRF token each time) on `r`.
pub(crate) fn set_session(r: &mut Response, issued: &identity::signin::sessions::Issued, secure: bool) {
    let mut csrf = [0u8; 32];
    rand::rng().fill_bytes(&mut csrf);
    set_tokens(r, issued, secure);
    append(
        r,
        &format!("{CSRF_COOKIE}={}; Path=/; SameSite=Strict; Max-Age={}{}", hex::encode(csrf), days(), flag(secure)),
    );
    // A fresh sign-in starts without the marker of a resumed session (see [`RESUMED_COOKIE`]).
    append(r, &format!("{RESUMED_COOKIE}=; Path=/; Max-Age=0"));
}

/// Sets the access and refresh cookies of a rotated session on `r`, keeping the browser's CSRF
/// cookie: a page's form sent before the rotation still carries the right token (the session
/// resume, `crate::ui::resume`).
pub(crate) fn set_tokens(r: &mut Response, issued: &identity::signin::sessions::Issued, secure: bool) {
    let secure = flag(secure);
    let ttl = issued.access_expires_in;
    append(
        r,
        &format!("{ACCESS_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={ttl}{secure}", issued.access_token),
    );
    append(
        r,
        &format!(
            "{REFRESH_COOKIE}={}; Path={REFRESH_PATH}; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            issued.refresh_token.expose_secret(),
            days()
        ),
    );
}

/// Set by a successful session resume (`crate::ui::resume`) until the first page answers
/// (`crate::ui::refusals` clears it; at most a minute): a page that still answers 401 with it
/// present is sent to sign in instead of resuming again, so a browser whose new access cookie did
/// not stick cannot loop between the page and the resume route.
pub(crate) const RESUMED_COOKIE: &str = "cs_resumed";

/// Marks `r` as the answer of a resumed session ([`RESUMED_COOKIE`]).
pub(crate) fn set_resumed(r: &mut Response, secure: bool) {
    append(r, &format!("{RESUMED_COOKIE}=1; Path=/; HttpOnly; SameSite=Strict; Max-Age=60{}", flag(secure)));
}

fn flag(secure: bool) -> &'static str {
    if secure { "; Secure" } else { "" }
}

fn days() -> i64 {
    identity::signin::sessions::SESSION_TTL_DAYS * 86_400
}

fn append(r: &mut Response, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The CSRF token a page puts in its forms: the browser's `cs_csrf` cookie, or — before any
/// session (the sign-in form) — a fresh one, which `r` then sets, so that even the sign-in post
/// is a double submit a cross-site form cannot make (login CSRF).
pub(crate) fn csrf_for_form(headers: &HeaderMap, r: &mut Response, secure: bool) -> String {
    if let Some(t) = cookie(headers, CSRF_COOKIE).filter(|t| !t.is_empty()) {
        return t;
    }
    let mut csrf = [0u8; 32];
    rand::rng().fill_bytes(&mut csrf);
    let token = hex::encode(csrf);
    let secure = if secure { "; Secure" } else { "" };
    let days = identity::signin::sessions::SESSION_TTL_DAYS * 86_400;
    if let Ok(v) =
        HeaderValue::from_str(&format!("{CSRF_COOKIE}={token}; Path=/; SameSite=Strict; Max-Age={days}{secure}"))
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    token
}

/// Clears the session cookies on `r` (sign-out).
pub(crate) fn clear_session(r: &mut Response) {
    for name in [ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE, RESUMED_COOKIE] {
        let path = if name == REFRESH_COOKIE { REFRESH_PATH } else { "/" };
        if let Ok(v) = HeaderValue::from_str(&format!("{name}=; Path={path}; Max-Age=0")) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

/// The organisations this browser has signed in to, most recent first (see [`ORGS_COOKIE`]);
/// anything that is not a well-formed short name is dropped.
pub(crate) fn remembered_organisations(headers: &HeaderMap) -> Vec<String> {
    cookie(headers, ORGS_COOKIE)
        .unwrap_or_default()
        .split('.')
        .filter(|s| identity::Slug::parse(s).is_ok())
        .take(REMEMBERED)
        .map(str::to_owned)
        .collect()
}

/// Puts `organisation` (as typed at a sign-in whose password or code was right) first in the
/// browser's list of organisations; a typed name that is not a short name is not remembered.
pub(crate) fn remember_organisation(r: &mut Response, headers: &HeaderMap, organisation: &str, secure: bool) {
    let typed = organisation.trim().to_ascii_lowercase();
    if identity::Slug::parse(&typed).is_err() {
        return;
    }
    let mut list = vec![typed.clone()];
    list.extend(remembered_organisations(headers).into_iter().filter(|s| *s != typed));
    list.truncate(REMEMBERED);
    let secure = if secure { "; Secure" } else { "" };
    let value = format!(
        "{ORGS_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        list.join("."),
        400 * 86_400
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_multipart_field_is_found_only_when_complete() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\nabc123\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n\x89PNG\xff\xfe";
        assert_eq!(first_field(body, "XyZ"), Some(("csrf_token".to_owned(), "abc123".to_owned())));
        assert_eq!(first_field(&body[..60], "XyZ"), None);
        assert_eq!(first_field(body, "other"), None);
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("multipart/form-data; boundary=\"XyZ\""));
        assert_eq!(multipart_boundary(&h).as_deref(), Some("XyZ"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        assert_eq!(multipart_boundary(&h), None);
    }
}
