//! Shared request helpers: "me" endpoints need a person, strict JSON bodies, reasons, bounded
//! strings, path ids. (Who may call a route is decided by its guard: crate::plumbing::guard.)

use axum::http::StatusCode;

use crate::plumbing::auth::Person;
use crate::{ApiError, Principal};

/// Endpoints about "me" need a person: an interactive session, not an API key.
pub(crate) fn require_person(p: &Principal) -> Result<Person, ApiError> {
    p.person()
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "not_a_session", "this endpoint needs a signed-in user"))
}

/// Parses a JSON body strictly (types with `deny_unknown_fields`); malformed → 422 `invalid_body`
/// naming the offending field's path (`details.field`, e.g. `lines[0].amount_minor`).
///
/// Before the typed parse, every string (and key) of the body meets the text rule
/// (`crate::plumbing::edge::text_error`): control characters other than tab, line feed and carriage return
/// → 422 `invalid_text`, more than `MAX_TEXT_CHARS` → 422 `text_too_long`, both naming the field.
/// A lone surrogate (`"\ud800"`) is not JSON text: 422 `invalid_body`.
pub(crate) fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Parsed twice: untyped for the text rule, then strictly typed (which refuses duplicate keys).
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(e) = text_errors(&v, &mut String::new())
    {
        return Err(e);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let mut err =
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", format!("request body: {path}: {inner}"));
        if path != "." {
            err = err.with_details(serde_json::json!({ "field": path }));
        }
        err
    })?;
    de.end()
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", format!("request body: {e}")))?;
    Ok(value)
}

/// The first string or key under `v` that breaks the text rule; `path` names it like
/// `serde_path_to_error` does (`lines[0].description`).
fn text_errors(v: &serde_json::Value, path: &mut String) -> Option<ApiError> {
    use serde_json::Value as V;
    match v {
        V::String(s) => crate::plumbing::edge::text_error(if path.is_empty() { "." } else { path }, s, true),
        V::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let e = text_errors(item, path);
            path.truncate(len);
            e
        }),
        V::Object(map) => map.iter().find_map(|(k, item)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(k);
            let e = crate::plumbing::edge::text_error(path, k, false).or_else(|| text_errors(item, path));
            path.truncate(len);
            e
        }),
        _ => None,
    }
}

/// A required reason of 3-200 characters (it is stored with the audit event).
pub(crate) fn reason(r: Option<&str>) -> Result<&str, ApiError> {
    let r = r.map(str::trim).unwrap_or_default();
    let n = r.chars().count();
    if (3..=200).contains(&n) {
        Ok(r)
    } else {
        Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "reason_required", "reason: 3-200 characters are required"))
    }
}

/// A string field with a length limit (characters).
pub(crate) fn bounded<'a>(field: &str, v: &'a str, max: usize) -> Result<&'a str, ApiError> {
    if v.chars().count() > max {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{field}: at most {max} characters"),
        ));
    }
    Ok(v)
}

/// The one envelope of every list: `{"items": [...], "next_cursor": "…" | null}`. Pass
/// `next_cursor` back as `cursor` for the next page; `null` on the last page (and on lists that
/// are never paged).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ListPage<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> ListPage<T> {
    /// A list that is never paged.
    pub fn all(items: Vec<T>) -> Self {
        Self { items, next_cursor: None }
    }
}

/// The page size when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: i64 = 50;
/// The largest page any list serves.
pub(crate) const MAX_LIMIT: i64 = 200;

/// The one `limit` rule of every list: default [`DEFAULT_LIMIT`], a whole number in
/// 1..=[`MAX_LIMIT`]; anything else is 422 `invalid_field` with `details.field = "limit"`.
pub(crate) fn limit(raw: Option<&str>) -> Result<i64, ApiError> {
    let Some(raw) = raw else { return Ok(DEFAULT_LIMIT) };
    match raw.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("limit: a whole number from 1 to {MAX_LIMIT}"),
        )
        .with_details(serde_json::json!({ "field": "limit" }))),
    }
}

/// A path id that is not a UUID names nothing: 404, like an id of another organisation.
pub(crate) fn path_id(s: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::try_parse(s).map_err(|_| ApiError::not_found())
}
