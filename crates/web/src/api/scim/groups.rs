//! `/scim/v2/Groups`: create, read, list (filter on `displayName`, `externalId`, `id`,
//! `members[value eq "…"]`), replace, PATCH and delete, over `identity::admin::scim::groups`.
//! Members are provisioned people of the organisation, shown as `{value, $ref, type: "User"}`.
//!
//! PATCH in the dialects identity providers send:
//! - Okta: `{"op": "replace", "value": {"id": "…", "displayName": "…"}}` (the id is its own, and
//!   ignored), `{"op": "add", "path": "members", "value": [{"value": "…", "display": "…"}]}`,
//!   `{"op": "remove", "path": "members[value eq \"…\"]"}`, `replace` of the whole member list.
//! - Entra: capitalised ops (`"Add"`, `"Remove"`), `{"op": "Remove", "path": "members",
//!   "value": [{"value": "…"}]}` (removes those listed, not everyone), `"Replace"` of displayName.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use identity::admin::scim::filter::{self, Schema};
use identity::admin::scim::groups::{self, GroupInput, ScimGroup};
use serde_json::{Value, json};

use super::patch::{Kind, Operation};
use super::users::{ListQuery, Shape, body_json, field, id, shaped, text};
use super::{base_url, etag, if_match, list_response, scim_json, still_at};
use crate::AppState;
use crate::plumbing::scim::{Scim, ScimError};

pub(crate) const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const GROUP_PREFIX: &str = "urn:ietf:params:scim:schemas:core:2.0:group:";
/// The resource as SCIM shows it; no `members` key when there are none.
pub(crate) fn to_json(g: &ScimGroup, base: &str) -> Value {
    let mut v = json!({
        "schemas": [GROUP_SCHEMA],
        "id": g.id,
        "displayName": g.display_name,
        "meta": {
            "resourceType": "Group",
            "created": g.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "lastModified": g.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "location": format!("{base}/scim/v2/Groups/{}", g.id),
            "version": etag(g.version),
        },
    });
    if let Some(x) = &g.external_id {
        v["externalId"] = x.clone().into();
    }
    if !g.members.is_empty() {
        v["members"] = g
            .members
            .iter()
            .map(|m| json!({"value": m, "$ref": format!("{base}/scim/v2/Users/{m}"), "type": "User"}))
            .collect();
    }
    v
}

fn invalid_path(why: impl Into<String>) -> ScimError {
    ScimError::new(StatusCode::BAD_REQUEST, Some("invalidPath"), why)
}

/// The member ids a value lists: `[{"value": "…"}, …]` or one such object. An id that is no
/// UUID can name no person: 400 `invalidValue`.
fn member_ids(v: &Value) -> Result<Vec<uuid::Uuid>, ScimError> {
    let items = match v {
        Value::Array(a) => a.iter().collect::<Vec<_>>(),
        Value::Object(_) => vec![v],
        Value::Null => Vec::new(),
        _ => return Err(ScimError::invalid_value("members must be a list of {\"value\": id}")),
    };
    items
        .into_iter()
        .map(|item| {
            let o = item.as_object().ok_or_else(|| ScimError::invalid_value("members[] must be objects"))?;
            let raw = text(o, "value")?.ok_or_else(|| ScimError::invalid_value("members[].value is required"))?;
            uuid::Uuid::try_parse(raw.trim())
                .map_err(|_| ScimError::invalid_value("every member must be a person provisioned in this organisation"))
        })
        .collect()
}

/// Reads a Group body (POST, PUT).
pub(crate) fn input_from(v: &Value) -> Result<GroupInput, ScimError> {
    let o = v.as_object().ok_or_else(|| ScimError::invalid_value("the body must be a JSON object"))?;
    Ok(GroupInput {
        display_name: text(o, "displayName")?.ok_or_else(|| ScimError::invalid_value("displayName is required"))?,
        external_id: text(o, "externalId")?,
        members: field(o, "members").map(member_ids).transpose()?.unwrap_or_default(),
    })
}

/// One attribute a PATCH names: ours, another schema's (ignored), or read-only (400).
enum Target {
    DisplayName,
    ExternalId,
    Members,
    /// `members[value eq "…"]`: one member.
    Member(uuid::Uuid),
    Ignored,
}

fn target(path: &str) -> Result<Target, ScimError> {
    let lower = path.trim().to_ascii_lowercase();
    if lower.starts_with("urn:") && !lower.starts_with(GROUP_PREFIX) {
        return Ok(Target::Ignored);
    }
    let name = lower.strip_prefix(GROUP_PREFIX).unwrap_or(&lower);
    if let Some(rest) = name.strip_prefix("members[") {
        // members[value eq "…"] (a sub-attribute after the bracket is not ours to change alone).
        let inner =
            rest.strip_suffix(']').ok_or_else(|| invalid_path("a member filter is members[value eq \"id\"]"))?;
        let mut words = inner.splitn(3, ' ');
        let (Some("value"), Some("eq"), Some(v)) = (words.next(), words.next(), words.next()) else {
            return Err(invalid_path("a member filter is members[value eq \"id\"]"));
        };
        let v = v.trim().trim_matches('"');
        return uuid::Uuid::try_parse(v).map(Target::Member).map_err(|_| invalid_path("no such member"));
    }
    Ok(match name {
        "displayname" => Target::DisplayName,
        "externalid" => Target::ExternalId,
        "members" => Target::Members,
        "id" | "meta" | "schemas" => {
            return Err(ScimError::new(StatusCode::BAD_REQUEST, Some("mutability"), format!("{path} is read-only")));
        }
        _ => Target::Ignored,
    })
}

fn apply_one(doc: &mut GroupInput, kind: Kind, t: Target, value: Option<&Value>) -> Result<(), ScimError> {
    let string = |v: Option<&Value>, what: &str| match v {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(ScimError::invalid_value(format!("{what} must be a string"))),
    };
    match (t, kind) {
        (Target::Ignored, _) => {}
        (Target::DisplayName, Kind::Remove) => {
            return Err(ScimError::invalid_value("displayName is required"));
        }
        (Target::DisplayName, _) => doc.display_name = string(value, "displayName")?,
        (Target::ExternalId, Kind::Remove) => doc.external_id = None,
        (Target::ExternalId, _) => doc.external_id = Some(string(value, "externalId")?),
        (Target::Members, Kind::Add) => {
            for m in member_ids(value.unwrap_or(&Value::Null))? {
                if !doc.members.contains(&m) {
                    doc.members.push(m);
                }
            }
        }
        (Target::Members, Kind::Replace) => doc.members = member_ids(value.unwrap_or(&Value::Null))?,
        // Entra names the members to remove in the value; without one, every member goes.
        (Target::Members, Kind::Remove) => match value {
            Some(v) if !v.is_null() => {
                let gone = member_ids(v)?;
                doc.members.retain(|m| !gone.contains(m));
            }
            _ => doc.members.clear(),
        },
        (Target::Member(m), Kind::Remove) => doc.members.retain(|x| *x != m),
        (Target::Member(_), _) => return Err(invalid_path("add or replace members through the members path")),
    }
    Ok(())
}

/// Applies PATCH operations in order to the group as it is now.
pub(crate) fn apply(doc: &mut GroupInput, ops: &[Operation]) -> Result<(), ScimError> {
    for op in ops {
        match (&op.path, &op.value) {
            (Some(p), v) => apply_one(doc, op.kind, target(p)?, v.as_ref())?,
            (None, Some(Value::Object(values))) => {
                for (k, v) in values {
                    // Okta repeats the group's own id in a path-less replace: not a change.
                    if k.eq_ignore_ascii_case("id")
                        || k.eq_ignore_ascii_case("schemas")
                        || k.eq_ignore_ascii_case("meta")
                    {
                        continue;
                    }
                    apply_one(doc, op.kind, target(k)?, Some(v))?;
                }
            }
            (None, _) => return Err(ScimError::invalid_value("without a path, the value must be an object")),
        }
    }
    Ok(())
}

fn location(base: &str, g: &ScimGroup) -> Option<axum::http::HeaderValue> {
    axum::http::HeaderValue::from_str(&format!("{base}/scim/v2/Groups/{}", g.id)).ok()
}

/// `POST /scim/v2/Groups` → 201; a displayName or externalId taken here is 409 `uniqueness`; a
/// member who is no provisioned person here (another organisation's included) is 400.
pub async fn create(
    State(state): State<AppState>,
    Scim(p): Scim,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ScimError> {
    let input = input_from(&body_json(&body)?)?;
    let mut tx = state.store.tenant_tx(p.tenant()).await?;
    let g = groups::create(&mut tx, &p, &input).await?;
    tx.commit().await?;
    let base = base_url(&state, &headers);
    let mut r = scim_json(StatusCode::CREATED, &to_json(&g, &base), Some(g.version));
    if let Some(loc) = location(&base, &g) {
        r.headers_mut().insert(axum::http::header::LOCATION, loc);
    }
    Ok(r)
}

/// `GET /scim/v2/Groups/{id}`; another organisation's group (or none) is 404.
pub async fn get(
    State(state): State<AppState>,
    Scim(p): Scim,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(shape): Query<Shape>,
) -> Result<Response, ScimError> {
    let id = id(&raw)?;
    let mut tx = state.store.tenant_tx(p.tenant()).await?;
    let g = groups::get(&mut tx, id).await?;
    tx.commit().await?;
    Ok(scim_json(StatusCode::OK, &shaped(to_json(&g, &base_url(&state, &headers)), &shape), Some(g.version)))
}

/// `GET /scim/v2/Groups?filter=…&startIndex=…&count=…` → a ListResponse; the filter becomes SQL
/// with every value bound (`identity::admin::scim::filter`, Group attributes only).
pub async fn list(
    State(state): State<AppState>,
    Scim(p): Scim,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Result<Response, ScimError> {
    let filter = q.filter.as_deref().map(|f| filter::parse_for(f, Schema::Group)).transpose()?;
    let (start, count) = q.window()?;
    let mut tx = state.store.tenant_tx(p.tenant()).await?;
    let (total, rows) = groups::list(&mut tx, filter.as_ref(), start, count).await?;
    tx.commit().await?;
    let base = base_url(&state, &headers);
    let items: Vec<Value> = rows.iter().map(|g| shaped(to_json(g, &base), &q.shape)).collect();
    Ok(list_response(total, start, items))
}

/// `PUT /scim/v2/Groups/{id}`: the name, externalId and whole member list. `If-Match` stale → 412.
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
    let g = groups::replace(&mut tx, &p, id, &input, expected).await?;
    tx.commit().await?;
    Ok(scim_json(StatusCode::OK, &to_json(&g, &base_url(&state, &headers)), Some(g.version)))
}

/// `PATCH /scim/v2/Groups/{id}`: the operations are applied to the group as it is now, then
/// stored like a replace, in one transaction holding the row.
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
    let mut tx = state.store.tenant_tx(p.tenant()).await?;
    let now = groups::lock_for_change(&mut tx, id).await?;
    still_at(expected, now.version)?;
    let mut doc = GroupInput {
        display_name: now.display_name.clone(),
        external_id: now.external_id.clone(),
        members: now.members.clone(),
    };
    apply(&mut doc, &ops)?;
    let g = groups::replace(&mut tx, &p, id, &doc, Some(now.version)).await?;
    tx.commit().await?;
    Ok(scim_json(StatusCode::OK, &to_json(&g, &base_url(&state, &headers)), Some(g.version)))
}

/// `DELETE /scim/v2/Groups/{id}` → 204; its former members get what the mappings now say.
pub async fn delete(
    State(state): State<AppState>,
    Scim(p): Scim,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<StatusCode, ScimError> {
    let id = id(&raw)?;
    let expected = if_match(&headers)?;
    let mut tx = state.store.tenant_tx(p.tenant()).await?;
    groups::remove(&mut tx, &p, id, expected).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patched(body: Value) -> Result<GroupInput, ScimError> {
        let (a, b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let mut doc = GroupInput { display_name: "Finance".into(), external_id: None, members: vec![a, b] };
        apply(&mut doc, &super::super::patch::parse(&body)?)?;
        Ok(doc)
    }

    fn ops(list: Value) -> Value {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": list})
    }

    #[test]
    fn okta_and_entra_member_dialects() {
        let (a, b, c) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2), uuid::Uuid::from_u128(3));
        // Entra: capitalised Add with a value array; Remove naming the members in the value.
        let e =
            patched(ops(json!([{"op": "Add", "path": "members", "value": [{"value": c.to_string()}]}]))).expect("add");
        assert_eq!(e.members, vec![a, b, c]);
        let e = patched(ops(json!([{"op": "Remove", "path": "members", "value": [{"value": a.to_string()}]}])))
            .expect("remove listed");
        assert_eq!(e.members, vec![b]);
        // Okta: remove by value filter; replace of the whole list; path-less replace with its id.
        let o = patched(ops(json!([{"op": "remove", "path": format!("members[value eq \"{b}\"]")}]))).expect("filter");
        assert_eq!(o.members, vec![a]);
        let o = patched(ops(
            json!([{"op": "replace", "path": "members", "value": [{"value": c.to_string(), "display": "C"}]}]),
        ))
        .expect("replace");
        assert_eq!(o.members, vec![c]);
        let o = patched(ops(json!([{"op": "replace", "value": {"id": "whatever", "displayName": "Finance EU"}}])))
            .expect("rename");
        assert_eq!(o.display_name, "Finance EU");
        let all = patched(ops(json!([{"op": "remove", "path": "members"}]))).expect("remove all");
        assert!(all.members.is_empty());
    }

    #[test]
    fn bad_group_patches_are_scim_400s() {
        let code = |body: Value| patched(body).err().map(|e| (e.status.as_u16(), e.scim_type));
        assert_eq!(code(ops(json!([{"op": "remove", "path": "displayName"}]))), Some((400, Some("invalidValue"))));
        assert_eq!(code(ops(json!([{"op": "replace", "path": "id", "value": "x"}]))), Some((400, Some("mutability"))));
        assert_eq!(
            code(ops(json!([{"op": "add", "path": "members", "value": [{"value": "not-a-uuid"}]}]))),
            Some((400, Some("invalidValue")))
        );
        assert_eq!(
            code(ops(json!([{"op": "remove", "path": "members[value eq \"x\" or 1=1]"}]))),
            Some((400, Some("invalidPath")))
        );
    }
}
