//! Shared request helpers: "me" endpoints need a person, strict JSON bodies, reasons, bounded
//! strings, path ids. (Who may call a route is decided by its guard: crate::guard.)

use axum::http::StatusCode;

use crate::{ApiError, Principal};

/// Endpoints about "me" need a person: an interactive session, not an API key.
pub(crate) fn require_user(p: &Principal) -> Result<(uuid::Uuid, uuid::Uuid), ApiError> {
    match (p.user, p.session) {
        (Some(u), Some(s)) => Ok((u, s)),
        _ => Err(ApiError::new(StatusCode::BAD_REQUEST, "not_a_session", "this endpoint needs a signed-in user")),
    }
}

/// Parses a JSON body strictly (types with `deny_unknown_fields`); malformed → 422 `invalid_body`
/// naming the offending field's path (`details.field`, e.g. `lines[0].amount_minor`).
pub(crate) fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
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

/// A path id that is not a UUID names nothing: 404, like an id of another organisation.
pub(crate) fn path_id(s: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::try_parse(s).map_err(|_| ApiError::not_found())
}
