//! Parse, don't validate: the only constructors of identity values check their input.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::IdentityError;

/// A lower-cased, syntactically plausible email address (verification proves the rest).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let s = s.trim().to_lowercase();
        let bad = |r: &str| IdentityError::invalid("email", r);
        if s.len() > 254 {
            return Err(bad("longer than 254 characters"));
        }
        let (local, domain) = s.split_once('@').ok_or_else(|| bad("missing @"))?;
        if local.is_empty() || local.len() > 64 || domain.contains('@') {
            return Err(bad("malformed local part"));
        }
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return Err(bad("malformed domain"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace"));
        }
        Ok(Self(s))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    #[must_use]
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An organisation's URL name: lower-case letters, digits and inner hyphens, 1–63 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdentityError::invalid("slug", "use 1-63 of a-z, 0-9 and inner hyphens"))
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A department code: upper-case letters, digits, `_` and `-`, 1–32 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DepartmentCode(String);

impl DepartmentCode {
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok { Ok(Self(s.to_owned())) } else { Err(IdentityError::invalid("code", "use 1-32 of A-Z, 0-9, _ and -")) }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident, $field:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = IdentityError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(IdentityError::invalid($field, format!(
                        "expected one of: {}", [$($text),+].join(", ")))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

/// What a member is to an organisation: defined with the policies that read it (`authz`).
pub use authz::Role;

impl From<authz::UnknownRole> for IdentityError {
    fn from(e: authz::UnknownRole) -> Self {
        IdentityError::invalid("role", e.to_string())
    }
}

text_enum!(MembershipStatus, "status" {
    Invited => "invited", Pending => "pending", Active => "active", Suspended => "suspended", Ended => "ended",
});

text_enum!(
    /// How people with a verified email at one of the organisation's domains get in.
    JoinPolicy, "join_policy" { AutoJoin => "auto_join", AdminApproval => "admin_approval" }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(
            EmailAddress::parse(" Ada@Example.COM ").map(|e| e.to_string()).ok(),
            Some("ada@example.com".into())
        );
        for bad in ["", "ada", "@x.com", "ada@", "ada@x", "ada@@x.com", "a b@x.com", "ada@.x.com", "ada@x..com"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
        assert!(EmailAddress::parse(&format!("{}@x.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn slug_and_code_reject_injection() {
        assert!(Slug::parse("acme-2").is_ok());
        for bad in ["", "-acme", "acme-", "Acme", "a'b", "a b", &"a".repeat(64)] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
        assert!(DepartmentCode::parse("FIN_OPS").is_ok());
        assert!(DepartmentCode::parse("fin").is_err());
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().ok(), Some(*r));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
