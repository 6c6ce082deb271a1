//! `TenantId`: the one identifier that decides what a transaction may see.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(Uuid);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("malformed identifier: expected a UUID")]
    Malformed,
    #[error("the nil UUID is not a valid identifier")]
    Nil,
}

impl TenantId {
    /// Wraps a UUID read from the database or another trusted source.
    pub fn from_uuid(id: Uuid) -> Result<Self, IdError> {
        if id.is_nil() { Err(IdError::Nil) } else { Ok(Self(id)) }
    }

    #[must_use]
    pub fn new_random() -> Self {
        Self(Uuid::now_v7())
    }

    #[must_use]
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl FromStr for TenantId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let id = Uuid::try_parse(s.trim()).map_err(|_| IdError::Malformed)?;
        Self::from_uuid(id)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hyphenated lowercase: also the exact form placed into SQL by TenantTx.
        write!(f, "{}", self.0.hyphenated())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_sql_injection_and_garbage() {
        for bad in ["", "x", "1' or '1'='1", "00000000-0000-0000-0000-00000000000g", "';drop table t;--"] {
            assert_eq!(bad.parse::<TenantId>(), Err(IdError::Malformed), "{bad}");
        }
        assert_eq!("00000000-0000-0000-0000-000000000000".parse::<TenantId>(), Err(IdError::Nil));
    }

    #[test]
    fn display_is_canonical_hyphenated() {
        let t: TenantId = "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11".parse().expect("valid uuid");
        assert_eq!(t.to_string(), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    }
}
