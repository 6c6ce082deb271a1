//! SCIM discovery (RFC 7644 §4): what this server claims. Everything claimed here is what the
//! peer test (`tests/scim.rs`, scim2-tester) checks with zero failures: PATCH, filter (up to
//! [`super::MAX_RESULTS`]), ETags, the User and the Group resources; not bulk, sort or password
//! change.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::groups::GROUP_SCHEMA;
use super::{LIST, base_url, scim_json};
use crate::AppState;
use crate::plumbing::scim::{Scim, ScimError};

pub(crate) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn meta(base: &str, kind: &str, path: &str) -> Value {
    json!({ "resourceType": kind, "location": format!("{base}/scim/v2/{path}") })
}

fn config(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/countersign/countersign/blob/main/docs/ARCHITECTURE.md#scim-provisioning-issue-18",
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": super::MAX_RESULTS },
        "changePassword": { "supported": false },
        "sort": { "supported": false },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "SCIM bearer token",
            "description": "A SCIM token of the organisation (Settings → SCIM provisioning), sent as Authorization: Bearer cssc_…",
            "primary": true
        }],
        "meta": meta(base, "ServiceProviderConfig", "ServiceProviderConfig"),
    })
}

fn attr(name: &str, kind: &str, required: bool, mutability: &str, uniqueness: &str, case_exact: bool) -> Value {
    json!({
        "name": name, "type": kind, "multiValued": false, "description": name, "required": required,
        "caseExact": case_exact, "mutability": mutability, "returned": "default", "uniqueness": uniqueness,
    })
}

fn user_schema(base: &str) -> Value {
    let sub = |name: &str, kind: &str| attr(name, kind, false, "readWrite", "none", false);
    let mut name = attr("name", "complex", false, "readWrite", "none", false);
    name["subAttributes"] = json!([sub("givenName", "string"), sub("familyName", "string")]);
    // Required here: a person's account is named by an address (the primary one, at creation).
    let mut emails = attr("emails", "complex", true, "readWrite", "none", false);
    emails["multiValued"] = true.into();
    let mut kind = sub("type", "string");
    kind["canonicalValues"] = json!(["work", "home", "other"]);
    let value = attr("value", "string", true, "readWrite", "none", false);
    emails["subAttributes"] = json!([value, sub("display", "string"), kind, sub("primary", "boolean")]);
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "A person of the organisation (a membership)",
        "attributes": [
            attr("userName", "string", true, "readWrite", "server", false),
            name,
            attr("displayName", "string", false, "readWrite", "none", false),
            emails,
            // Required here: a person's access follows it (false suspends the membership).
            attr("active", "boolean", true, "readWrite", "none", false),
        ],
        "meta": meta(base, "Schema", &format!("Schemas/{USER_SCHEMA}")),
    })
}

fn group_schema(base: &str) -> Value {
    // Members are provisioned people: `value` is the person's id, `$ref` their User.
    let mut members = attr("members", "complex", false, "readWrite", "none", false);
    members["multiValued"] = true.into();
    let mut value = attr("value", "string", false, "immutable", "none", true);
    value["description"] = "The id of a User of this organisation".into();
    let mut reference = attr("$ref", "reference", false, "immutable", "none", true);
    reference["referenceTypes"] = json!(["User"]);
    let mut kind = attr("type", "string", false, "immutable", "none", false);
    kind["canonicalValues"] = json!(["User"]);
    members["subAttributes"] = json!([value, reference, kind]);
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": GROUP_SCHEMA,
        "name": "Group",
        "description": "A group of the identity provider; a mapped one gives its people a role and/or a department",
        "attributes": [attr("displayName", "string", true, "readWrite", "server", false), members],
        "meta": meta(base, "Schema", &format!("Schemas/{GROUP_SCHEMA}")),
    })
}

fn group_type(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "Groups of people of the organisation",
        "schema": GROUP_SCHEMA,
        "meta": meta(base, "ResourceType", "ResourceTypes/Group"),
    })
}

fn user_type(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "People of the organisation",
        "schema": USER_SCHEMA,
        "meta": meta(base, "ResourceType", "ResourceTypes/User"),
    })
}

fn list(items: Vec<Value>) -> Value {
    json!({ "schemas": [LIST], "totalResults": items.len(), "startIndex": 1, "itemsPerPage": items.len(), "Resources": items })
}

/// `GET /scim/v2/ServiceProviderConfig`
pub async fn service_provider_config(State(state): State<AppState>, _: Scim, headers: HeaderMap) -> Response {
    scim_json(axum::http::StatusCode::OK, &config(&base_url(&state, &headers)), None)
}

/// `GET /scim/v2/ResourceTypes`
pub async fn resource_types(State(state): State<AppState>, _: Scim, headers: HeaderMap) -> Response {
    let base = base_url(&state, &headers);
    scim_json(axum::http::StatusCode::OK, &list(vec![user_type(&base), group_type(&base)]), None)
}

/// `GET /scim/v2/ResourceTypes/{id}`
pub async fn resource_type(
    State(state): State<AppState>,
    _: Scim,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let base = base_url(&state, &headers);
    let found = match id.as_str() {
        "User" => user_type(&base),
        "Group" => group_type(&base),
        _ => return Err(ScimError::not_found()),
    };
    Ok(scim_json(axum::http::StatusCode::OK, &found, None))
}

/// `GET /scim/v2/Schemas`
pub async fn schemas(State(state): State<AppState>, _: Scim, headers: HeaderMap) -> Response {
    let base = base_url(&state, &headers);
    scim_json(axum::http::StatusCode::OK, &list(vec![user_schema(&base), group_schema(&base)]), None)
}

/// `GET /scim/v2/Schemas/{id}`
pub async fn schema(
    State(state): State<AppState>,
    _: Scim,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let base = base_url(&state, &headers);
    let found = match id.as_str() {
        USER_SCHEMA => user_schema(&base),
        GROUP_SCHEMA => group_schema(&base),
        _ => return Err(ScimError::not_found()),
    };
    Ok(scim_json(axum::http::StatusCode::OK, &found, None))
}

/// `POST /scim/v2/.search`: searching several resource types at once is not offered (501).
pub async fn search_all(_: Scim) -> ScimError {
    ScimError::new(axum::http::StatusCode::NOT_IMPLEMENTED, None, "search across resource types is not supported")
}
