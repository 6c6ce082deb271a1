//! `/scim/v2`: the SCIM 2.0 face of provisioning (issue 18) for an organisation's identity
//! provider. Every route is `Guard::Scim` (the organisation's SCIM token, `crate::plumbing::scim`);
//! the domain is `identity::admin::scim`. Answers are `application/scim+json`; refusals are SCIM
//! error bodies; writes honour `If-Match` (412 on a stale version) and answer an `ETag`.

pub(crate) mod discovery;
pub(crate) mod groups;
pub(crate) mod patch;
pub(crate) mod users;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::plumbing::scim::{SCIM_JSON, ScimError};

/// The largest page a list answers (claimed in the ServiceProviderConfig).
pub(crate) const MAX_RESULTS: i64 = 200;

/// A SCIM answer: the body as `application/scim+json`, with an `ETag` for a versioned resource.
pub(crate) fn scim_json(status: StatusCode, body: &serde_json::Value, version: Option<i64>) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    if let Some(v) = version
        && let Ok(h) = HeaderValue::from_str(&etag(v))
    {
        r.headers_mut().insert(header::ETAG, h);
    }
    r
}

/// A version as SCIM shows it (`meta.version` and `ETag`): weak, since the representation may
/// vary with `attributes`.
pub(crate) fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The version `If-Match` asks for: none without the header (or with `*`); a value that is no
/// version of ours can match nothing (412).
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ScimError> {
    let Some(raw) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let raw = raw.to_str().unwrap_or_default().trim();
    if raw == "*" {
        return Ok(None);
    }
    raw.trim_start_matches("W/").trim_matches('"').parse::<i64>().map(Some).map_err(|_| {
        ScimError::new(StatusCode::PRECONDITION_FAILED, None, "If-Match names no version of this resource")
    })
}

/// The check a replace or PATCH makes once it holds the row: the version `If-Match` named (if
/// any) must be the version stored now, else 412 and nothing changes.
pub(crate) fn still_at(expected: Option<i64>, now: i64) -> Result<(), ScimError> {
    match expected {
        Some(v) if v != now => {
            Err(ScimError::new(StatusCode::PRECONDITION_FAILED, None, format!("the resource is at version {now}")))
        }
        _ => Ok(()),
    }
}

/// The URN of a SCIM ListResponse.
pub(crate) const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// A ListResponse holding one page of `items` out of `total`, starting at `start` (1-based).
pub(crate) fn list_response(total: i64, start: i64, items: Vec<serde_json::Value>) -> Response {
    let body = serde_json::json!({
        "schemas": [LIST], "totalResults": total, "startIndex": start, "itemsPerPage": items.len(), "Resources": items,
    });
    scim_json(StatusCode::OK, &body, None)
}

/// Where this server is reached, for `meta.location`: the configured public URL, else the
/// request's own host.
pub(crate) fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &state.public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']')))
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// Anything under `/scim/v2` that is no route: a SCIM 404.
pub async fn not_found() -> ScimError {
    ScimError::new(StatusCode::NOT_FOUND, None, "no such SCIM endpoint")
}
