//! Shared gates for the member-management APIs: who may call (role + API-key scope, refusals
//! audited), strict JSON bodies, and reasons.

use axum::http::StatusCode;
use identity::Role;

use crate::{ApiError, AppState, Principal};

/// Owner and admin manage; auditors may additionally read lists.
pub(crate) const MANAGERS: &[Role] = &[Role::Owner, Role::Admin];
pub(crate) const READERS: &[Role] = &[Role::Owner, Role::Admin, Role::Auditor];

/// Lets the caller through if their role is in `roles` and (for API keys) they hold `scope`;
/// otherwise records `access.denied` in the organisation and answers 403.
pub(crate) async fn require(
    state: &AppState,
    p: &Principal,
    roles: &[Role],
    scope: &str,
    attempted: &str,
) -> Result<(), ApiError> {
    if roles.contains(&p.role) && p.has_scope(scope) {
        return Ok(());
    }
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let event = audit::Event::new(
        "access.denied",
        audit::Entity::new("endpoint", Some(attempted.to_owned()))?,
        audit::Changes::none().field("attempted", None::<&str>, attempted),
    )?;
    audit::record_by(&mut tx, &p.who, &event).await?;
    tx.commit().await?;
    Err(ApiError::forbidden())
}

/// Endpoints about "me" need a person: an interactive session, not an API key.
pub(crate) fn require_user(p: &Principal) -> Result<(uuid::Uuid, uuid::Uuid), ApiError> {
    match (p.user, p.session) {
        (Some(u), Some(s)) => Ok((u, s)),
        _ => Err(ApiError::new(StatusCode::BAD_REQUEST, "not_a_session", "this endpoint needs a signed-in user")),
    }
}

/// Parses a JSON body strictly (types with `deny_unknown_fields`); malformed → 422 `invalid_body`.
pub(crate) fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", format!("request body: {e}")))
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
