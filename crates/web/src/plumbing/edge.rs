//! What every request meets before routing, and every answer on its way out: the URI and header
//! limits (414, 431), the content type of a body (415), the text rule for query strings, the
//! project's JSON error shape for refusals the framework makes itself (413 from the body limit,
//! 408 from the timeout, extractor rejections), and `Connection: close` on a refusal sent before
//! the request's body was read. The text rule for JSON bodies lives with the body parser
//! (`crate::plumbing::access::json`), which every handler uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::ApiError;

/// The longest request target (path and query) answered: longer ones get 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Header limits: more headers, or more bytes of names and values, get 431. (The transport's
/// own limits — 100 headers, ~400 KiB — are far above these, so this layer answers first.)
pub const MAX_HEADERS: usize = 64;
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The longest string accepted in a JSON body or a query parameter, in characters.
pub const MAX_TEXT_CHARS: usize = 10_000;

/// Text refused in any JSON string or query parameter: control characters (C0, DEL, C1).
/// Tab, line feed and carriage return are allowed in JSON strings (free text such as notes and
/// reasons may span lines); query parameters are single-line and allow none.
#[must_use]
pub fn bad_char(s: &str, multiline: bool) -> bool {
    s.chars().any(|c| c.is_control() && !(multiline && matches!(c, '\t' | '\n' | '\r')))
}

/// 422 `invalid_text` (a control character) or `text_too_long`, naming the field.
#[must_use]
pub fn text_error(field: &str, s: &str, multiline: bool) -> Option<ApiError> {
    if bad_char(s, multiline) {
        return Some(
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_text",
                format!("{field}: control characters are not allowed"),
            )
            .with_details(serde_json::json!({ "field": field })),
        );
    }
    if s.chars().count() > MAX_TEXT_CHARS {
        return Some(
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "text_too_long",
                format!("{field}: at most {MAX_TEXT_CHARS} characters"),
            )
            .with_details(serde_json::json!({ "field": field })),
        );
    }
    None
}

/// Percent-decodes one `application/x-www-form-urlencoded` component (`+` is a space). Bytes
/// that are not UTF-8 are replaced (the typed query parser refuses such input anyway).
pub(crate) fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: u8| char::from(c).to_digit(16);
                match (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
                    (Some(h), Some(l)) => {
                        out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first query parameter breaking the text rule.
fn query_error(query: &str) -> Option<ApiError> {
    query.split('&').filter(|kv| !kv.is_empty()).find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let (k, v) = (decode(k), decode(v));
        text_error(&k, &k, false).or_else(|| text_error(&k, &v, false))
    })
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else { return false };
    let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// An HTML form post to a page (any path outside `/api/`): the one body that may be something
/// other than JSON. The API keeps refusing it, so a cross-site form can never reach it — except
/// the session resume (`crate::ui::resume`), which passes a page's form on to its page after
/// refreshing the session, and does nothing with it but read its CSRF token.
fn page_form(req: &Request) -> bool {
    let path = req.uri().path();
    let is_form = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        ct.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case(crate::plumbing::cookies::FORM_TYPE)
    });
    (is_form && ((path != "/api" && !path.starts_with("/api/")) || path == crate::ui::resume::PATH))
        || (page_upload(req) && crate::plumbing::cookies::multipart_boundary(req.headers()).is_some())
}

/// The document page's upload form (`POST /documents/{id}/attachments`, `multipart/form-data`,
/// `crate::ui::attachments`), the MDF claim's proof form (`POST /programme/mdf/claims/{id}/proofs`,
/// `crate::ui::mdf`), the portal's upload and question-answer forms (`crate::ui::portal`,
/// `crate::ui::requests`): pages, so their bodies are forms, but ones that carry a file.
fn page_upload(req: &Request) -> bool {
    let parts: Vec<&str> = req.uri().path().split('/').collect();
    req.method() == axum::http::Method::POST
        && (matches!(parts.as_slice(), ["", "documents", id, "attachments"] if !id.is_empty())
            || matches!(parts.as_slice(), ["", "programme", "mdf", "claims", id, "proofs"] if !id.is_empty())
            || matches!(parts.as_slice(), ["", "portal", "documents", id, "files"] if !id.is_empty())
            || matches!(parts.as_slice(), ["", "portal", "requests", id, "answer"] if !id.is_empty()))
}

/// The API routes whose body is a file, not JSON: streamed uploads (any content type; the
/// type is sniffed from the content). They and the pages' upload forms are the routes
/// without the 1 MiB framework body limit: their handlers enforce the upload limit while the
/// body streams.
#[must_use]
pub fn streams_upload(req: &Request) -> bool {
    if req.method() != axum::http::Method::POST {
        return false;
    }
    let parts: Vec<&str> = req.uri().path().split('/').collect();
    matches!(parts.as_slice(), ["", "api", "v1", "documents", id, "attachments", "files"] if !id.is_empty())
        || matches!(parts.as_slice(), ["", "api", "v1", "programme", "mdf", "claims", id, "proofs"] if !id.is_empty())
        || matches!(parts.as_slice(), ["", "api", "v1", "portal", "documents", id, "files"] if !id.is_empty())
        || page_upload(req)
}

/// Bytes a request body may carry ([`streams_upload`] aside).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The framework body limit: a declared length over [`MAX_BODY_BYTES`] is refused before the
/// handler runs, and a body that streams past it fails when read (413 either way). Uploads are
/// left to their handler's own, configurable limit.
pub async fn body_limit(req: Request, next: Next) -> Response {
    if streams_upload(&req) {
        return next.run(req).await;
    }
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    next.run(req.map(|b| Body::new(http_body_util::Limited::new(b, MAX_BODY_BYTES)))).await
}

fn has_body(req: &Request) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0")
}

/// The stable code of a refusal the framework made without our error body.
fn code_of(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed"),
        StatusCode::NOT_FOUND => ("not_found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "this method is not allowed here"),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::URI_TOO_LONG => ("uri_too_long", "the request target is too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "the body must be application/json"),
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid_body", "the request cannot be processed"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ("headers_too_large", "the request headers are too large"),
        s if s.is_server_error() => ("unavailable", "the service cannot complete this request now"),
        _ => ("refused", "the request was refused"),
    }
}

/// Refusals made before the request reached a handler.
fn early_refusal(req: &Request) -> Option<ApiError> {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_URI_BYTES {
        let (code, msg) = code_of(StatusCode::URI_TOO_LONG);
        return Some(ApiError::new(StatusCode::URI_TOO_LONG, code, format!("{msg} (at most {MAX_URI_BYTES} bytes)")));
    }
    let headers = req.headers();
    let header_bytes: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        let (code, msg) = code_of(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        return Some(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            code,
            format!("{msg} (at most {MAX_HEADERS} headers, {MAX_HEADER_BYTES} bytes)"),
        ));
    }
    if has_body(req) && !is_json(headers.get(header::CONTENT_TYPE)) && !page_form(req) && !streams_upload(req) {
        let (code, msg) = code_of(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        return Some(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, code, msg));
    }
    req.uri().query().and_then(query_error)
}

/// Middleware (outside the body limit and the timeout, so it sees their answers).
pub async fn guard(req: Request, next: Next) -> Response {
    let carries_body = has_body(&req);
    if let Some(refusal) = early_refusal(&req) {
        let mut r = refusal.into_response();
        if carries_body {
            close(&mut r);
        }
        return r;
    }
    // Notes whether the handler read the body to its end.
    let read = Arc::new(AtomicBool::new(!carries_body));
    let req = if carries_body {
        let flag = read.clone();
        req.map(|b| {
            let mut done = false;
            Body::from_stream(b.into_data_stream().chain(futures_util::stream::poll_fn(move |_| {
                if !done {
                    done = true;
                    flag.store(true, Ordering::Relaxed);
                }
                std::task::Poll::Ready(None)
            })))
        })
    } else {
        req
    };
    let mut r = next.run(req).await;
    if r.status().is_client_error() || r.status().is_server_error() {
        r = json_shaped(r);
        if !read.load(Ordering::Relaxed) {
            close(&mut r);
        }
    }
    r
}

fn close(r: &mut Response) {
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// A refusal without the project's JSON body (413 from the body limit, 408 from the timeout,
/// an extractor's plain-text rejection) gets it, keeping status and headers. Pages' own refusals
/// (`text/html`, rendered by `crate::ui`) are left as they are.
fn json_shaped(r: Response) -> Response {
    let content_type = r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    // SCIM answers its refusals in its own body (`crate::plumbing::scim`).
    if content_type == "application/json"
        || content_type == crate::plumbing::scim::SCIM_JSON
        || content_type.starts_with("text/html")
    {
        return r;
    }
    let (parts, _) = r.into_parts();
    let (code, msg) = code_of(parts.status);
    let mut shaped = ApiError::new(parts.status, code, msg).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            shaped.headers_mut().insert(name, value.clone());
        }
    }
    shaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_are_percent_decoded_before_the_text_rule() {
        assert_eq!(decode("a%00b+c%2"), "a\0b c%2");
        assert!(query_error("status=a%00").is_some_and(|e| e.code == "invalid_text"));
        assert!(query_error("status=ok&cursor=%0a").is_some_and(|e| e.code == "invalid_text"));
        assert!(query_error("status=ok&limit=5").is_none());
    }

    #[test]
    fn tabs_and_newlines_are_text_only_in_bodies() {
        assert!(!bad_char("a\tb\nc\r", true));
        assert!(bad_char("a\tb", false));
        assert!(bad_char("a\u{1b}b", true));
        assert!(bad_char("a\u{85}b", true));
    }

    #[test]
    fn only_pages_take_form_posts() {
        let form = |path: &str| {
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::CONTENT_LENGTH, "3")
                .body(Body::from("a=b"))
                .expect("request")
        };
        assert!(early_refusal(&form("/documents/new")).is_none());
        assert!(early_refusal(&form("/sign-in")).is_none());
        for api in ["/api/v1/documents", "/api", "/api/openapi.json"] {
            let refused = early_refusal(&form(api)).map(|e| e.status);
            assert_eq!(refused, Some(StatusCode::UNSUPPORTED_MEDIA_TYPE), "{api}");
        }
    }

    #[test]
    fn framework_timeouts_get_the_error_shape() {
        let r = json_shaped(StatusCode::REQUEST_TIMEOUT.into_response());
        assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()), Some("application/json"));
    }
}
