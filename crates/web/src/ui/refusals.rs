//! Refusals, worded as pages. The guard and the handlers refuse with the one `ApiError` (which
//! rides on its response); on a page route this layer turns it into what a person can act on:
//!
//! - not signed in (401) → the session resume (`crate::ui::resume`), or `303 /sign-in?next=<this
//!   page>` for a browser without a session to resume;
//! - 403 → a page saying what is missing (the role, the network, a stale form);
//! - 404 → the not-found page (another organisation's document looks exactly like none);
//! - 429 → when to try again; 5xx → the request id to quote.
//!
//! Status codes stay what the API would answer; only the body changes.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::ApiError;
use crate::plumbing::cookies::{CSRF_COOKIE, RESUMED_COOKIE, cookie};
use crate::ui::chrome::Chrome;
use crate::ui::form;

#[derive(Template, WebTemplate)]
#[template(path = "refusal.html")]
pub(crate) struct RefusalPage {
    pub chrome: Chrome,
    pub heading: String,
    pub explanation: String,
    pub hint: String,
    pub request_id: String,
}

/// Middleware of the page routes.
pub(crate) async fn as_pages(req: Request, next: Next) -> Response {
    let path = req.uri().path_and_query().map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    let is_get = req.method() == Method::GET;
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    // A browser that may still hold a session (it has the CSRF cookie every sign-in sets) and
    // has not just resumed one.
    let just_resumed = cookie(req.headers(), RESUMED_COOKIE).is_some_and(|c| !c.is_empty());
    let may_resume = cookie(req.headers(), CSRF_COOKIE).is_some_and(|c| !c.is_empty()) && !just_resumed;
    let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut r = next.run(req).await;
    let status = r.status();
    if just_resumed && status != StatusCode::UNAUTHORIZED {
        // The resume worked (this page answered): the next expiry may resume again.
        r.headers_mut().append(header::SET_COOKIE, HeaderValue::from_static("cs_resumed=; Path=/; Max-Age=0"));
    }
    if !(status.is_client_error() || status.is_server_error()) {
        return r;
    }
    let is_html = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    if is_html {
        return r;
    }
    let refusal =
        r.extensions().get::<ApiError>().cloned().unwrap_or_else(|| {
            ApiError::new(status, "refused", status.canonical_reason().unwrap_or("refused").to_owned())
        });
    if status == StatusCode::UNAUTHORIZED {
        return signed_out(&path, safe, may_resume);
    }
    let mut page = render(&refusal, request_id, !is_get).into_response();
    *page.status_mut() = status;
    if let Some(wait) = r.headers().get(header::RETRY_AFTER) {
        page.headers_mut().insert(header::RETRY_AFTER, wait.clone());
    }
    if r.headers().get(header::CONNECTION).is_some() {
        page.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    page
}

/// Where a page request without a valid session goes. A browser that may still hold a session
/// (it has the CSRF cookie every sign-in sets) resumes it first (`crate::ui::resume`: `303` for
/// a read, `307` for a form post so the form is sent again after the refresh); a browser that
/// has none — or has just resumed and is still refused (the `cs_resumed` marker, which the
/// first page answered after a resume clears: no loop) —
/// goes to sign in, back to this page afterwards (a form post goes home: its page may have
/// moved on).
fn signed_out(path: &str, safe: bool, may_resume: bool) -> Response {
    let sign_in =
        if safe { format!("/sign-in?next={}", form::encode(&form::local_path(path))) } else { "/sign-in".to_owned() };
    if !may_resume {
        return Redirect::to(&sign_in).into_response();
    }
    if safe {
        return Redirect::to(&crate::ui::resume::target(path)).into_response();
    }
    // Only a form posted to a page can be sent again to it.
    if form::local_path(path) != path {
        return Redirect::to(&sign_in).into_response();
    }
    Redirect::temporary(&crate::ui::resume::target(path)).into_response()
}

/// The page for a refusal (`write`: the request would have changed something, and did not).
pub(crate) fn render(e: &ApiError, request_id: String, write: bool) -> RefusalPage {
    let (heading, mut explanation, hint) = words(e);
    if write && e.status == StatusCode::FORBIDDEN {
        explanation.push_str(" Nothing was changed.");
    }
    RefusalPage { chrome: Chrome::public(String::new()), heading, explanation, hint, request_id }
}

/// What to tell a person about a refusal: a heading, what happened, what they can do.
fn words(e: &ApiError) -> (String, String, String) {
    let own = |h: &str, x: &str, t: &str| (h.to_owned(), x.to_owned(), t.to_owned());
    let detail = |key: &str| e.details.as_ref().and_then(|d| d.get(key)).and_then(|v| v.as_str()).map(str::to_owned);
    match (e.status, e.code) {
        (StatusCode::NOT_FOUND, _) => own(
            "Page not found",
            "There is nothing here, or nothing you may see: a document of another organisation, or one your role does not cover, looks exactly like one that does not exist.",
            "Check the address, or go back to your inbox.",
        ),
        (_, "csrf_failed") => own(
            "This form has expired",
            "The form was sent without the security token of your session.",
            "Go back, reload the page and send the form again.",
        ),
        (_, "ip_not_allowed") => own(
            "Your network is not allowed",
            "This organisation only admits sign-ins and requests from the networks it has listed, and yours is not one of them.",
            "Connect from your office network or VPN, or ask an administrator to add this network.",
        ),
        (_, "file_too_large") => (
            "The file is too large".to_owned(),
            format!("{}. Nothing was stored.", capitalised(&e.message)),
            "Choose a smaller file, or split it, and attach it again.".to_owned(),
        ),
        (_, "file_type_refused") => (
            "This kind of file is not accepted".to_owned(),
            format!(
                "{}. The type is read from the file's content, not its name. Nothing was stored.",
                capitalised(&e.message)
            ),
            "Save the file as PDF (or one of the types listed) and attach it again.".to_owned(),
        ),
        (_, "file_empty") => own(
            "The file is empty",
            "The file you chose has no content. Nothing was stored.",
            "Choose the file again and attach it.",
        ),
        (_, "not_editable") => own(
            "This document can no longer change",
            "Files can be attached only while a document is a draft or queried, and this one has moved on. Nothing was stored.",
            "Go back to the document to see where it is now.",
        ),
        (_, "period_closed") => (
            "The period is closed".to_owned(),
            format!("{}. Nothing was changed.", capitalised(&e.message)),
            "Only the MD can reopen the period.".to_owned(),
        ),
        (_, "file_deleted") => own(
            "This file was removed",
            "The file was removed from the document. If it is still within the retention period, it can be restored from the document page.",
            "Go back to the document.",
        ),
        (_, "link_invalid" | "link_expired") => (
            "This link is not for you".to_owned(),
            capitalised(&e.message),
            "Open the file again from the document page: each person gets a link of their own.".to_owned(),
        ),
        (StatusCode::FORBIDDEN, _) => {
            let action = detail("action").map(|a| format!(" (needed: permission to {})", a.replace(['.', '_'], " ")));
            (
                "You may not do this".to_owned(),
                format!("Your role does not allow this{}.", action.unwrap_or_default()),
                "If you think you should, ask an administrator of your organisation.".to_owned(),
            )
        }
        (StatusCode::TOO_MANY_REQUESTS, _) => {
            let wait = e.retry_after.map_or_else(|| "a few minutes".to_owned(), wait_words);
            (
                "Too many attempts".to_owned(),
                "There have been too many attempts from your address or for this account, so it is paused for now."
                    .to_owned(),
                format!("Try again in {wait}."),
            )
        }
        (s, _) if s.is_server_error() => own(
            "Something went wrong on our side",
            "The request could not be completed. Nothing you did caused this.",
            "Try again in a moment. If it keeps happening, quote the request id below to your administrator.",
        ),
        _ => ("This request was refused".to_owned(), e.message.clone(), "Go back and check what was sent.".to_owned()),
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// `75` → `2 minutes`; `30` → `30 seconds`.
pub(crate) fn wait_words(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds} seconds"),
        60..=119 => "a minute".to_owned(),
        s => format!("{} minutes", s.div_ceil(60)),
    }
}

/// The answer to a path nothing is routed at: the not-found page for a browser asking for a page
/// (`Accept: text/html`, outside `/api/`), the JSON refusal for everyone else.
pub(crate) async fn not_found(req: Request) -> Response {
    let path = req.uri().path();
    let wants_page =
        req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
            && path != "/api"
            && !path.starts_with("/api/");
    if !wants_page {
        return ApiError::not_found().into_response();
    }
    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut r = (StatusCode::NOT_FOUND, render(&ApiError::not_found(), id, false)).into_response();
    r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(crate::ui::PAGE_CSP));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_said_in_words() {
        assert_eq!(wait_words(30), "30 seconds");
        assert_eq!(wait_words(60), "a minute");
        assert_eq!(wait_words(900), "15 minutes");
    }
}
