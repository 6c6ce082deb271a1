//! SCIM PATCH (RFC 7644 §3.5.2) applied to the User document as it is now, in the dialects
//! identity providers really send:
//!
//! - Okta: `{"op": "replace", "value": {"active": false}}` (no path, a value object) and
//!   `{"op": "replace", "path": "name.givenName", "value": "Ann"}`.
//! - Entra: capitalised ops (`"Replace"`, `"Add"`), booleans as strings (`"False"`), value
//!   filters with a sub-attribute (`emails[type eq "work"].value`), a path-less object whose keys
//!   are paths (`{"name.familyName": "Lee"}`).
//!
//! The result is read back by `super::users::input_from`, so a PATCH can produce only what a PUT
//! could. Unknown attributes (other schemas, extensions) are ignored; read-only ones (`id`,
//! `meta`) are 400 `mutability`; a path we cannot read is 400 `invalidPath`.

use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::users::{boolean, field};
use crate::plumbing::scim::ScimError;

const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER_PREFIX: &str = "urn:ietf:params:scim:schemas:core:2.0:user:";
const MAX_OPERATIONS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Add,
    Replace,
    Remove,
}

#[derive(Debug, Clone)]
pub(crate) struct Operation {
    pub(crate) kind: Kind,
    pub(crate) path: Option<String>,
    pub(crate) value: Option<Value>,
}

fn invalid_path(why: impl Into<String>) -> ScimError {
    ScimError::new(StatusCode::BAD_REQUEST, Some("invalidPath"), why)
}

/// Reads a PatchOp body; ops compare case-insensitively (Entra capitalises them).
pub(crate) fn parse(body: &Value) -> Result<Vec<Operation>, ScimError> {
    let o = body.as_object().ok_or_else(|| ScimError::invalid_value("the body must be a PatchOp object"))?;
    let schemas = field(o, "schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| s.iter().any(|u| u.as_str() == Some(PATCH_URN))) {
        return Err(ScimError::invalid_value(format!("schemas must name {PATCH_URN}")));
    }
    let ops = field(o, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_value("Operations must be a list"))?;
    if ops.is_empty() || ops.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid_value(format!("1-{MAX_OPERATIONS} operations")));
    }
    ops.iter()
        .map(|op| {
            let op = op.as_object().ok_or_else(|| ScimError::invalid_value("each operation must be an object"))?;
            let kind = match field(op, "op").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
                Some("add") => Kind::Add,
                Some("replace") => Kind::Replace,
                Some("remove") => Kind::Remove,
                _ => return Err(ScimError::invalid_value("op must be add, replace or remove")),
            };
            let path = match field(op, "path") {
                None => None,
                Some(Value::String(p)) if !p.trim().is_empty() => Some(p.trim().to_owned()),
                Some(_) => return Err(invalid_path("path must be a non-empty string")),
            };
            let value = field(op, "value").cloned();
            match (kind, &path, &value) {
                (Kind::Remove, None, _) => {
                    Err(ScimError::new(StatusCode::BAD_REQUEST, Some("noTarget"), "remove needs a path"))
                }
                (Kind::Add | Kind::Replace, _, None) => Err(ScimError::invalid_value("add and replace need a value")),
                (Kind::Add | Kind::Replace, None, Some(v)) if !v.is_object() => {
                    Err(ScimError::invalid_value("without a path, the value must be an object"))
                }
                _ => Ok(Operation { kind, path, value }),
            }
        })
        .collect()
}

/// A parsed path: attribute, optional value filter (`sub eq value`), optional sub-attribute.
#[derive(Debug, PartialEq)]
struct Target {
    attr: &'static str,
    filter: Option<(String, Value)>,
    sub: Option<String>,
}

/// Our attributes' canonical names. `None`: an attribute of no schema we serve (ignored).
fn canonical(name: &str) -> Result<Option<&'static str>, ScimError> {
    Ok(Some(match name.to_ascii_lowercase().as_str() {
        "username" => "userName",
        "externalid" => "externalId",
        "displayname" => "displayName",
        "name" => "name",
        "emails" => "emails",
        "active" => "active",
        "id" | "meta" | "schemas" => {
            return Err(ScimError::new(StatusCode::BAD_REQUEST, Some("mutability"), format!("{name} is read-only")));
        }
        _ => return Ok(None),
    }))
}

fn sub_name(attr: &str, sub: &str) -> Result<String, ScimError> {
    let known: &[&str] = match attr {
        "name" => &["givenName", "familyName"],
        "emails" => &["value", "type", "primary", "display"],
        _ => &[],
    };
    known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(sub))
        .map(|k| (*k).to_owned())
        .ok_or_else(|| invalid_path(format!("{attr} has no sub-attribute {sub}")))
}

fn target(path: &str) -> Result<Option<Target>, ScimError> {
    let lower = path.to_ascii_lowercase();
    // Another schema's attribute (an extension): not ours to store.
    if lower.starts_with("urn:") && !lower.starts_with(USER_PREFIX) {
        return Ok(None);
    }
    let path = if lower.starts_with(USER_PREFIX) { &path[USER_PREFIX.len()..] } else { path };
    let (head, filter, rest) = match path.find('[') {
        Some(open) => {
            let close = path.rfind(']').filter(|c| *c > open).ok_or_else(|| invalid_path("unbalanced ["))?;
            let rest = path[close + 1..].strip_prefix('.').map(str::to_owned);
            if rest.is_none() && close + 1 != path.len() {
                return Err(invalid_path("unexpected text after ]"));
            }
            (&path[..open], Some(&path[open + 1..close]), rest)
        }
        None => match path.split_once('.') {
            Some((h, s)) => (h, None, Some(s.to_owned())),
            None => (path, None, None),
        },
    };
    let Some(attr) = canonical(head)? else { return Ok(None) };
    let sub = rest.map(|s| sub_name(attr, &s)).transpose()?;
    let filter = filter
        .map(|f| {
            if attr != "emails" {
                return Err(invalid_path("value filters apply to emails only"));
            }
            let mut words = f.splitn(3, ' ');
            let (Some(s), Some(op), Some(v)) = (words.next(), words.next(), words.next()) else {
                return Err(invalid_path("a value filter is: sub-attribute eq value"));
            };
            if !op.eq_ignore_ascii_case("eq") {
                return Err(invalid_path("value filters support eq only"));
            }
            let v = v.trim();
            let v = match v {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                q if q.len() >= 2 && q.starts_with('"') && q.ends_with('"') => {
                    Value::String(q[1..q.len() - 1].to_owned())
                }
                _ => return Err(invalid_path("a filter value is a quoted string, true or false")),
            };
            Ok((sub_name(attr, s)?, v))
        })
        .transpose()?;
    Ok(Some(Target { attr, filter, sub }))
}

fn matches(item: &Value, (sub, want): &(String, Value)) -> bool {
    let Some(have) = item.as_object().and_then(|o| field(o, sub)) else { return false };
    match (have, want) {
        (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
        (a, Value::Bool(b)) => boolean(a, sub).is_ok_and(|a| a == *b),
        _ => false,
    }
}

fn as_items(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

/// Applies the operations in order to `doc` (the resource's JSON).
pub(crate) fn apply(doc: &mut Value, ops: &[Operation]) -> Result<(), ScimError> {
    let Some(o) = doc.as_object_mut() else { return Err(ScimError::invalid_value("no document")) };
    for op in ops {
        match (&op.path, &op.value) {
            (Some(p), v) => {
                if let Some(t) = target(p)? {
                    apply_one(o, op.kind, &t, v.as_ref())?;
                }
            }
            // Path-less: each key of the value object is a path (Okta, Entra).
            (None, Some(Value::Object(values))) => {
                for (k, v) in values {
                    if let Some(t) = target(k)? {
                        apply_one(o, op.kind, &t, Some(v))?;
                    }
                }
            }
            (None, _) => return Err(ScimError::invalid_value("without a path, the value must be an object")),
        }
    }
    Ok(())
}

fn apply_one(o: &mut Map<String, Value>, kind: Kind, t: &Target, value: Option<&Value>) -> Result<(), ScimError> {
    // Remove every casing of the attribute: the canonical key is the one written back.
    let existing = o.keys().find(|k| k.eq_ignore_ascii_case(t.attr)).cloned();
    let mut current = existing.and_then(|k| o.remove(&k)).unwrap_or(Value::Null);
    let value = value.cloned().unwrap_or(Value::Null);
    match (t.attr, &t.filter, &t.sub) {
        ("emails", Some(f), sub) => {
            let mut items = as_items(&current).into_iter().filter(|v| !v.is_null()).collect::<Vec<_>>();
            let hits = items.iter().filter(|i| matches(i, f)).count();
            match (kind, sub) {
                (Kind::Remove, None) => items.retain(|i| !matches(i, f)),
                (Kind::Remove, Some(s)) => {
                    for i in items.iter_mut().filter(|i| matches(i, f)) {
                        if let Some(m) = i.as_object_mut() {
                            m.remove(s);
                        }
                    }
                }
                // Entra: `emails[type eq "work"].value` on a person without one creates it.
                (_, Some(s)) if hits == 0 => {
                    let mut m = Map::new();
                    m.insert(f.0.clone(), f.1.clone());
                    m.insert(s.clone(), value);
                    items.push(Value::Object(m));
                }
                (_, Some(s)) => {
                    for i in items.iter_mut().filter(|i| matches(i, f)) {
                        if let Some(m) = i.as_object_mut() {
                            m.insert(s.clone(), value.clone());
                        }
                    }
                }
                (_, None) => {
                    for i in items.iter_mut().filter(|i| matches(i, f)) {
                        *i = value.clone();
                    }
                }
            }
            current = Value::Array(items);
        }
        ("emails", None, None) => {
            current = match kind {
                Kind::Remove => Value::Null,
                Kind::Replace => Value::Array(as_items(&value)),
                Kind::Add => {
                    let mut items = as_items(&current).into_iter().filter(|v| !v.is_null()).collect::<Vec<_>>();
                    for new in as_items(&value) {
                        let same = |i: &Value| i.get("value").is_some() && i.get("value") == new.get("value");
                        match items.iter_mut().find(|i| same(i)) {
                            Some(i) => *i = new,
                            None => items.push(new),
                        }
                    }
                    Value::Array(items)
                }
            };
        }
        (_, None, Some(s)) => {
            // name.givenName, emails.type (every address): a sub-attribute in place.
            if t.attr == "emails" {
                let mut items = as_items(&current).into_iter().filter(|v| !v.is_null()).collect::<Vec<_>>();
                for i in &mut items {
                    if let Some(m) = i.as_object_mut() {
                        set_or_remove(m, s, kind, value.clone());
                    }
                }
                current = Value::Array(items);
            } else {
                let mut m = current.as_object().cloned().unwrap_or_default();
                set_or_remove(&mut m, s, kind, value);
                current = Value::Object(m);
            }
        }
        ("name", None, None) => {
            current = match (kind, value) {
                (Kind::Remove, _) => Value::Null,
                (Kind::Add, Value::Object(new)) => {
                    let mut m = current.as_object().cloned().unwrap_or_default();
                    m.extend(new);
                    Value::Object(m)
                }
                (_, v) => v,
            };
        }
        (_, None, None) => current = if kind == Kind::Remove { Value::Null } else { value },
        _ => return Err(invalid_path("value filters apply to emails only")),
    }
    let empty = current.is_null()
        || current.as_array().is_some_and(Vec::is_empty)
        || current.as_object().is_some_and(|m| m.values().all(Value::is_null));
    if !empty {
        o.insert(t.attr.to_owned(), current);
    }
    Ok(())
}

fn set_or_remove(m: &mut Map<String, Value>, key: &str, kind: Kind, value: Value) {
    m.retain(|k, _| !k.eq_ignore_ascii_case(key));
    if kind != Kind::Remove && !value.is_null() {
        m.insert(key.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patched(doc: Value, body: Value) -> Result<Value, ScimError> {
        let mut doc = doc;
        apply(&mut doc, &parse(&body)?)?;
        Ok(doc)
    }

    fn ops(list: Value) -> Value {
        json!({"schemas": [PATCH_URN], "Operations": list})
    }

    #[test]
    fn okta_and_entra_dialects_give_the_same_document() {
        let doc = json!({"userName": "ann@acme.example", "active": true, "emails": [{"value": "a@x.example", "type": "work", "primary": true}]});
        let okta = patched(doc.clone(), ops(json!([{"op": "replace", "value": {"active": false}}]))).expect("okta");
        let entra =
            patched(doc.clone(), ops(json!([{"op": "Replace", "path": "active", "value": "False"}]))).expect("entra");
        assert_eq!(okta["active"], false);
        assert_eq!(entra["active"], "False", "the string is read as a boolean by input_from");
        let e = patched(
            doc.clone(),
            ops(json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "b@x.example"}])),
        )
        .expect("filter");
        assert_eq!(e["emails"], json!([{"value": "b@x.example", "type": "work", "primary": true}]));
        let n = patched(doc.clone(), ops(json!([{"op": "replace", "value": {"name.familyName": "Lee", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Ops"}}])))
            .expect("dotted");
        assert_eq!(n["name"], json!({"familyName": "Lee"}));
        let r =
            patched(doc, ops(json!([{"op": "remove", "path": "emails[value eq \"a@x.example\"]"}]))).expect("remove");
        assert!(r.get("emails").is_none(), "{r}");
    }

    #[test]
    fn bad_patches_are_refused_with_scim_types() {
        let doc = json!({"userName": "ann"});
        let code = |body: Value| patched(doc.clone(), body).err().map(|e| (e.status.as_u16(), e.scim_type));
        assert_eq!(code(json!({"Operations": []})), Some((400, Some("invalidValue"))));
        assert_eq!(code(ops(json!([{"op": "remove"}]))), Some((400, Some("noTarget"))));
        assert_eq!(code(ops(json!([{"op": "replace", "path": "id", "value": "x"}]))), Some((400, Some("mutability"))));
        assert_eq!(
            code(ops(json!([{"op": "replace", "path": "emails[type eq work", "value": "x"}]))),
            Some((400, Some("invalidPath")))
        );
        assert_eq!(
            code(ops(json!([{"op": "move", "path": "userName", "value": "x"}]))),
            Some((400, Some("invalidValue")))
        );
        assert_eq!(
            code(ops(json!([{"op": "replace", "path": "name.middle", "value": "x"}]))),
            Some((400, Some("invalidPath")))
        );
    }
}
