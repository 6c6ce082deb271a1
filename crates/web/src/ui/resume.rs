//! `GET|POST /api/v1/auth/resume?next=<path>`: a page keeps its session past the access token's
//! ten minutes. The refresh cookie only travels to `/api/v1/auth` (never to pages), so a page
//! whose access cookie expired answers 401, which `crate::ui::refusals` turns into a redirect
//! here; this route rotates the refresh cookie exactly as `POST /api/v1/auth/refresh` does (the
//! same `crate::api::sessions::rotate`: budget, IP allowlist, replay revoking the family, drop
//! from this node's cache) and sends the browser back to `next` with the new cookies — `303` for
//! a GET, `307` for a form post, so the browser sends the same form body again to the page
//! route it belongs to and nothing typed is lost.
//!
//! The CSRF cookie is kept (a replayed form's `csrf_token` still matches), and a form post is
//! only replayed when its own token repeats that cookie. Cross-site requests cannot use this:
//! every session cookie is `SameSite=Strict`, so they arrive with none and are sent to sign in.
//! No refresh cookie, or a refused one (revoked, replayed, expired, another network): `303` to
//! sign in (`next` kept for a GET; a form post's page is unknown). A page that still refuses
//! right after a resume is sent to sign in by `refusals` (the `cs_resumed` marker): no loop.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::plumbing::cookies::{
    self, CSRF_COOKIE, CSRF_FIELD, FORM_TYPE, REFRESH_COOKIE, REFRESH_PATH, cookie, form_fields, same_token,
};
use crate::ui::form::{self, local_path};
use crate::{AppState, ClientContext};

/// The route's path, which `refusals` redirects to.
pub(crate) const PATH: &str = "/api/v1/auth/resume";

/// Where `refusals` sends a page request that answered 401: here, with the page to come back to.
pub(crate) fn target(page: &str) -> String {
    format!("{PATH}?next={}", form::encode(&local_path(page)))
}

/// `GET|POST /api/v1/auth/resume?next=<local path>`
pub async fn resume(
    State(state): State<AppState>,
    ctx: ClientContext,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let wanted = form_fields(q.unwrap_or_default().as_bytes())
        .into_iter()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let next = local_path(&wanted);
    let replay = method == Method::POST;
    let sign_in = if replay { "/sign-in".to_owned() } else { format!("/sign-in?next={}", form::encode(&next)) };
    // A form is replayed only to the page it was posted to (`local_path` keeps it as it was),
    // and only when it carries this browser's own CSRF token: the double submit, checked once
    // more before anything rotates.
    if replay && (next != wanted || !form_token_matches(&headers, &body)) {
        return redirect(StatusCode::SEE_OTHER, &sign_in);
    }
    let Some(token) = cookie(&headers, REFRESH_COOKIE).filter(|t| !t.is_empty()) else {
        return redirect(StatusCode::SEE_OTHER, &sign_in);
    };
    match crate::api::sessions::rotate(&state, &ctx, &token).await {
        Ok(issued) => {
            let status = if replay { StatusCode::TEMPORARY_REDIRECT } else { StatusCode::SEE_OTHER };
            let mut r = redirect(status, &next);
            cookies::set_tokens(&mut r, &issued, state.secure_cookies);
            cookies::set_resumed(&mut r, state.secure_cookies);
            r
        }
        Err(e) => {
            let mut r = redirect(StatusCode::SEE_OTHER, &sign_in);
            if e.status == StatusCode::UNAUTHORIZED {
                // Dead for good (revoked, replayed, expired): the browser stops presenting it.
                if let Ok(v) = HeaderValue::from_str(&format!("{REFRESH_COOKIE}=; Path={REFRESH_PATH}; Max-Age=0")) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            r
        }
    }
}

/// Whether a replayed form post repeats the `cs_csrf` cookie: in its `csrf_token` field (a plain
/// form, htmx's too) or the `X-CSRF-Token` header.
fn form_token_matches(headers: &HeaderMap, body: &[u8]) -> bool {
    let expected = cookie(headers, CSRF_COOKIE).unwrap_or_default();
    if let Some(sent) = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        return same_token(sent, &expected);
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case(FORM_TYPE));
    let sent = if is_form {
        form_fields(body).into_iter().find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v).unwrap_or_default()
    } else {
        String::new()
    };
    same_token(&sent, &expected)
}

fn redirect(status: StatusCode, to: &str) -> Response {
    let mut r = status.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}
