//! Field-level before/after deltas: only fields that changed, secrets redacted, keys sorted so
//! the same change always yields the same JSON text.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::AuditError;

/// Field names whose values never enter the ledger (the fact that they changed does).
const SECRET_MARKERS: &[&str] =
    &["password", "secret", "token", "hash", "totp", "recovery", "api_key", "private", "otp", "cookie"];

pub const REDACTED: &str = "[redacted]";

#[must_use]
pub fn is_secret_field(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|m| lower.contains(m))
}

/// `{"field": {"from": old, "to": new}, ...}` for changed fields only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes(BTreeMap<String, (Value, Value)>);

impl Changes {
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Records one field; a field whose value did not change is left out.
    #[must_use]
    pub fn field(mut self, name: &str, from: impl Serialize, to: impl Serialize) -> Self {
        let from = serde_json::to_value(from).unwrap_or(Value::Null);
        let to = serde_json::to_value(to).unwrap_or(Value::Null);
        if from != to {
            let (from, to) = if is_secret_field(name) { (redact(&from), redact(&to)) } else { (from, to) };
            self.0.insert(name.to_owned(), (from, to));
        }
        self
    }

    /// Compares two serialisable records field by field (top level). Either side may be absent
    /// (creation, deletion).
    pub fn diff<T: Serialize>(before: Option<&T>, after: Option<&T>) -> Result<Self, AuditError> {
        let as_map = |v: Option<&T>| -> Result<serde_json::Map<String, Value>, AuditError> {
            match v.map(serde_json::to_value).transpose().map_err(|e| AuditError::invalid("changes", e.to_string()))? {
                None => Ok(serde_json::Map::new()),
                Some(Value::Object(m)) => Ok(m),
                Some(_) => Err(AuditError::invalid("changes", "records must serialise to JSON objects")),
            }
        };
        let (before, after) = (as_map(before)?, as_map(after)?);
        let mut out = Self::none();
        for name in before.keys().chain(after.keys()) {
            let from = before.get(name).cloned().unwrap_or(Value::Null);
            let to = after.get(name).cloned().unwrap_or(Value::Null);
            out = out.field(name, from, to);
        }
        Ok(out)
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Canonical JSON text: sorted keys, no whitespace. This exact text is hashed and stored.
    #[must_use]
    pub fn to_json(&self) -> String {
        let map: BTreeMap<&str, Value> =
            self.0.iter().map(|(k, (from, to))| (k.as_str(), json!({"from": from, "to": to}))).collect();
        serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_owned())
    }
}

fn redact(v: &Value) -> Value {
    if v.is_null() { Value::Null } else { Value::String(REDACTED.to_owned()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Member {
        role: &'static str,
        status: &'static str,
        password_hash: &'static str,
    }

    #[test]
    fn only_changed_fields_and_secrets_redacted() {
        let a = Member { role: "staff", status: "active", password_hash: "$argon2id$old" };
        let b = Member { role: "hod", status: "active", password_hash: "$argon2id$new" };
        let c = Changes::diff(Some(&a), Some(&b)).expect("diff");
        let text = c.to_json();
        assert_eq!(
            text,
            r#"{"password_hash":{"from":"[redacted]","to":"[redacted]"},"role":{"from":"staff","to":"hod"}}"#
        );
        assert!(!text.contains("argon2"), "secret leaked into the ledger");
    }

    #[test]
    fn creation_lists_every_field_from_null() {
        let b = Member { role: "hod", status: "active", password_hash: "x" };
        let c = Changes::diff(None, Some(&b)).expect("diff");
        assert!(c.to_json().contains(r#""status":{"from":null,"to":"active"}"#));
    }

    #[test]
    fn non_object_records_are_refused() {
        assert!(Changes::diff(Some(&1), Some(&2)).is_err());
    }
}
