//! `/scim/v2/Users`: create, read, list (filter, startIndex/count, attributes), replace, PATCH
//! (`super::patch`) and delete, over `identity::admin::scim::people`.
//!
//! Bodies are read leniently, as identity providers send them: unknown attributes (another
//! schema's, an extension's) are ignored, attribute names match case-insensitively, and the
//! booleans Entra sends as strings (`"True"`, `"False"`) are booleans. Shapes are not lenient: a
//! string where an object belongs is 400 `invalidValue`.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use identity::admin::scim::filter;
use identity::admin::scim::people::{self, Email, ScimUser, UserInput};
use serde_json::{Map, Value, json};

use super::discovery::USER_SCHEMA;
use super::{MAX_RESULTS, base_url, etag, if_match, list_response, scim_json, still_at};
use crate::AppState;
use crate::plumbing::access;
use crate::plumbing::scim::{Scim, ScimError};

/// The resource as SCIM shows it.
pub(crate) fn to_json(u: &ScimUser, base: &str) -> Value {
    let mut v = json!({
        "schemas": [USER_SCHEMA],
        "id": u.id,
        "userName": u.user_name,
        "active": u.active,
        "meta": {
            "resourceType": "User",
            "created": u.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "lastModified": u.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "location": format!("{base}/scim/v2/Users/{}", u.id),
            "version": etag(u.version),
        },
    });
    if let Some(x) = &u.external_id {
        v["externalId"] = x.clone().into();
    }
    if let Some(d) = &u.display_name {
        v["displayName"] = d.clone().into();
    }
    let mut name = Map::new();
    if let Some(g) = &u.given_name {
        name.insert("givenName".into(), g.clone().into());
    }
    if let Some(f) = &u.family_name {
        name.insert("familyName".into(), f.clone().into());
    }
    if !name.is_empty() {
        v["name"] = Value::Object(name);
    }
    if !u.emails.0.is_empty() {
        v["emails"] = serde_json::to_value(&u.emails.0).unwrap_or(Value::Null);
    }
    v
}

/// The value of `key` in `obj`, matched case-insensitively (SCIM attribute names are).
pub(crate) fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v).filter(|v| !v.is_null())
}

pub(crate) fn text(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, ScimError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::invalid_value(format!("{key} must be a string"))),
    }
}

/// A boolean, or the strings identity providers send for one (Entra: `"True"`, `"False"`).
pub(crate) fn boolean(v: &Value, what: &str) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::invalid_value(format!("{what} must be a boolean"))),
    }
}

fn emails(v: Option<&Value>) -> Result<Vec<Email>, ScimError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let items = v.as_array().ok_or_else(|| ScimError::invalid_value("emails must be a list"))?;
    items
        .iter()
        .map(|item| {
            let o = item.as_object().ok_or_else(|| ScimError::invalid_value("emails[] must be objects"))?;
            Ok(Email {
                value: text(o, "value")?.ok_or_else(|| ScimError::invalid_value("emails[].value is required"))?,
                kind: text(o, "type")?,
                primary: field(o, "primary").map(|p| boolean(p, "emails[].primary")).transpose()?,
                display: text(o, "display")?,
            })
        })
        .collect()
}

/// Reads a User body (POST, PUT, or the document a PATCH produced).
pub(crate) fn input_from(v: &Value) -> Result<UserInput, ScimError> {
    let o = v.as_object().ok_or_else(|| ScimError::invalid_value("the body must be a JSON object"))?;
    let user_name = text(o, "userName")?.ok_or_else(|| ScimError::invalid_value("userName is required"))?;
    let (given_name, family_name) = match field(o, "name") {
        None => (None, None),
        Some(Value::Object(n)) => (text(n, "givenName")?, text(n, "familyName")?),
        Some(_) => return Err(ScimError::invalid_value("name must be an object")),
    };
    Ok(UserInput {
        user_name,
        external_id: text(o, "externalId")?,
        display_name: text(o, "displayName")?,
        given_name,
        family_name,
        emails: emails(field(o, "emails"))?,
        // Identity providers that leave it out mean an active person.
        active: field(o, "active").map(|a| boolean(a, "active")).transpose()?.unwrap_or(true),
    })
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5): `id` and `schemas` always stay.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Shape {
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

fn names(list: &str) -> Vec<String> {
    list.split(',')
        .map(|a| {
            let a = a.trim().to_ascii_lowercase();
            // `urn:…:User:name.givenName`, `urn:…:Group:members`: the attribute after the URN.
            let a = if a.starts_with("urn:") { a.rsplit(':').next().unwrap_or_default().to_owned() } else { a };
            a.split('.').next().unwrap_or_default().to_owned()
        })
        .filter(|a| !a.is_empty())
        .collect()
}

pub(crate) fn shaped(mut v: Value, shape: &Shape) -> Value {
    let Some(o) = v.as_object_mut() else { return v };
    if let Some(keep) = shape.attributes.as_deref().map(names) {
        o.retain(|k, _| k == "id" || k == "schemas" || keep.contains(&k.to_ascii_lowercase()));
    } else if let Some(drop) = shape.excluded_attributes.as_deref().map(names) {
        o.retain(|k, _| k == "id" || k == "schemas" || !drop.contains(&k.to_ascii_lowercase()));
    }
    v
}

pub(crate) fn id(raw: &str) -> Result<uuid::Uuid, ScimError> {
    uuid::Uuid::try_parse(raw).map_err(|_| ScimError::not_found())
}

pub(crate) fn body_json(body: &[u8]) -> Result<Value, ScimError> {
    access::json::<Value>(body).map_err(|e| ScimError::new(StatusCode::BAD_REQUEST, Some("invalidSyntax"), e.message))
}

/// `POST /scim/v2/Users` → 201 with the resource; a userName or externalId taken here, or a
/// person already provisioned here, is 409 `uniqueness`.
pub async fn create(
    State(state): State<AppState>,
    Scim(p): Scim,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ScimError> {
    let input = input_from(&body_json(&body)?)?;
    let mut g = state.store.global_tx().await?;
    let user = people::account_for(&mut g, &p, &input).await?;
    g.commit().await?;
    let mut tx = state.store.tenant_tx(p.tenant()).await?;
    let u = people::provision(&mut tx, &p, user, &input).await?;
    tx.commit().await?;
    let base = base_url(&state, &headers);
    let mut r = scim_json(StatusCode::CREATED, &to_json(&u, &base), Some(u.version));
    if let Ok(loc) = axum::http::HeaderValue::from_str(&format!("{base}/scim/v2/Users/{}", u.id)) {
        r.headers_mut().insert(axum::http::header::LOCATION, loc);
    }
    Ok(r)
}

/// `GET /scim/v2/Users/{id}`; another organisation's person (or none) is 404.
pub async fn get(
    State(state): State<AppState>,
    Scim(p): Scim,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(shape): Query<Shape>,
) -> Result<Response, ScimError> {
    let id = id(&raw)?;
    let mut tx = state.store.tenant_tx(p.tenant()).await?;
    let u = people::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(scim_json(StatusCode::OK, &shaped(to_json(&u, &base_url(&state, &headers)), &shape), Some(u.version)))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    pub(crate) filter: Option<String>,
    pub(crate) start_index: Option<String>,
    pub(crate) count: Option<String>,
    #[serde(flatten)]
    pub(crate) shape: Shape,
}

impl ListQuery {
    /// The page asked for: `startIndex` (1-based; less than 1 reads as 1) and `count` (at most
    /// `MAX_RESULTS`; 0 asks for the total only).
    pub(crate) fn window(&self) -> Result<(i64, i64), ScimError> {
        let start = number(self.start_index.as_deref(), "startIndex", 1)?.max(1);
        let count = number(self.count.as_deref(), "count", 100)?.clamp(0, MAX_RESULTS);
        Ok((start, count))
    }
}

pub(crate) fn number(raw: Option<&str>, what: &str, default: i64) -> Result<i64, ScimError> {
    raw.map_or(Ok(default), |r| {
        r.trim().parse::<i64>().map_err(|_| ScimError::invalid_value(format!("{what} must be a whole number")))
    })
}

/// `GET /scim/v2/Users?filter=…&startIndex=…&count=…` → a ListResponse. The filter is parsed
/// into a closed tree and becomes SQL with every value bound (`identity::admin::scim::filter`).
pub async fn list(
    State(state): State<AppState>,
    Scim(p): Scim,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ScimError> {
    let filter = q.filter.as_deref().map(filter::parse).transpose()?;
    let (start, count) = q.window()?;
    let mut tx = state.store.tenant_tx(p.tenant()).await?;
    let (total, rows) = people::list(&mut tx, filter.as_ref(), start, count).await?;
    tx.commit().await?;
    let base = base_url(&state, &headers);
    let items: Vec<Value> = rows.iter().map(|u| shaped(to_json(u, &base), &q.shape)).collect();
    Ok(list_response(total, start, items))
}

/// `PUT /scim/v2/Users/{id}`: replaces what the identity provider says (`active: false` suspends
/// the membership and ends the person's sessions on every node). `If-Match` stale → 412.
pub async fn replace(
    State(state): State<AppState>,
    Scim(p): Scim,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ScimError> {
    let id = id(&raw)?;
    let expected = if_match(&headers)?;
    let input = input_from(&body_json(&body)?)?;
    let mut tx = state.store.tenant_tx(p.tenant()).await?;
    let u = people::replace(&mut tx, &p, id, &input, expected).await?;
    tx.commit().await?;
    Ok(scim_json(StatusCode::OK, &to_json(&u, &base_url(&state, &headers)), Some(u.version)))
}

/// `PATCH /scim/v2/Users/{id}`: the operations are applied to the resource as it is now
/// (`super::patch`, both Okta's and Entra's dialects), then stored like a replace, in one
/// transaction holding the row, so two PATCHes cannot interleave.
pub async fn modify(
    State(state): State<AppState>,
    Scim(p): Scim,
    headers: HeaderMap,
    Path(raw): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ScimError> {
    let id = id(&raw)?;
    let expected = if_match(&headers)?;
    let ops = super::patch::parse(&body_json(&body)?)?;
    let base = base_url(&state, &headers);
    let mut tx = state.store.tenant_tx(p.tenant()).await?;
    let now = people::lock_for_change(&mut tx, id).await?;
    still_at(expected, now.version)?;
    let mut doc = to_json(&now, &base);
    super::patch::apply(&mut doc, &ops)?;
    let input = input_from(&doc)?;
    let u = people::replace(&mut tx, &p, id, &input, Some(now.version)).await?;
    tx.commit().await?;
    Ok(scim_json(StatusCode::OK, &to_json(&u, &base), Some(u.version)))
}

/// `DELETE /scim/v2/Users/{id}` → 204: the membership is suspended and every session of the
/// person here revoked on every node; the resource is gone from SCIM.
pub async fn delete(
    State(state): State<AppState>,
    Scim(p): Scim,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<StatusCode, ScimError> {
    let id = id(&raw)?;
    let expected = if_match(&headers)?;
    let mut tx = state.store.tenant_tx(p.tenant()).await?;
    people::remove(&mut tx, &p, id, expected).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
