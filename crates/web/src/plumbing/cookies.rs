//! The session cookies of browsers: reading them, the CSRF double submit, setting them after a
//! sign-in and clearing them at sign-out.
//!
//! The access token, the refresh token and a CSRF token travel as cookies (`HttpOnly` except the
//! CSRF one, `Secure` unless the server runs plain HTTP for development, `SameSite=Strict`; the
//! refresh cookie only travels to `/api/v1/auth`). Every state-changing request authenticated
//! by cookie must echo the CSRF cookie in `X-CSRF-Token`.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use rand::RngCore;
use secrecy::ExposeSecret;

use crate::ApiError;

pub(crate) const ACCESS_COOKIE: &str = "cs_access";
pub(crate) const REFRESH_COOKIE: &str = "cs_refresh";
pub(crate) const CSRF_COOKIE: &str = "cs_csrf";
const CSRF_HEADER: &str = "x-csrf-token";
/// The only path the refresh cookie is sent to.
const REFRESH_PATH: &str = "/api/v1/auth";

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
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let expected = cookie(headers, CSRF_COOKIE).unwrap_or_default();
    let same = !expected.is_empty()
        && sent.len() == expected.len()
        && sent.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "csrf_failed", "missing or wrong X-CSRF-Token header"))
    }
}

/// Sets the three cookies of a new session (a fresh CSRF token each time) on `r`.
pub(crate) fn set_session(r: &mut Response, issued: &identity::signin::sessions::Issued, secure: bool) {
    let mut csrf = [0u8; 32];
    rand::rng().fill_bytes(&mut csrf);
    let secure = if secure { "; Secure" } else { "" };
    let ttl = issued.access_expires_in;
    let days = identity::signin::sessions::SESSION_TTL_DAYS * 86_400;
    for c in [
        format!("{ACCESS_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={ttl}{secure}", issued.access_token),
        format!(
            "{REFRESH_COOKIE}={}; Path={REFRESH_PATH}; HttpOnly; SameSite=Strict; Max-Age={days}{secure}",
            issued.refresh_token.expose_secret()
        ),
        format!("{CSRF_COOKIE}={}; Path=/; SameSite=Strict; Max-Age={days}{secure}", hex::encode(csrf)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

/// Clears the session cookies on `r` (sign-out).
pub(crate) fn clear_session(r: &mut Response) {
    for name in [ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE] {
        let path = if name == REFRESH_COOKIE { REFRESH_PATH } else { "/" };
        if let Ok(v) = HeaderValue::from_str(&format!("{name}=; Path={path}; Max-Age=0")) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}
