//! Partner programmes (issue 17). A vendor organisation (the tenant) runs a programme: partner
//! companies, their people (members of the vendor with a partner role and a `partner_id`), the
//! leads and deal registrations they submit.
//!
//! Isolation between partners of one vendor is enforced by Postgres, not here: every function
//! takes a [`store::TenantTx`] opened by [`store::Store::program_tx`], whose partner scope the
//! database derived from the caller's own membership. A query below that forgot its `WHERE` would
//! still return only the caller's partner's rows (tests/isolation.rs, tests/programs.rs).
//! Writes require the policy engine's [`authz::Permit`] for their action.

pub mod commissions;
pub mod deals;
pub mod leads;
pub mod mdf;
pub mod opportunities;
pub mod partners;
mod scope;

pub use scope::{Scope, scope};

/// Everything a programme operation can refuse.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// Not there, or not visible to the caller (another partner's, another organisation's):
    /// indistinguishable on purpose.
    #[error("not found")]
    NotFound,
    /// The caller may not do this (stable `code` for the API).
    #[error("{reason}")]
    Forbidden { code: &'static str, reason: String },
    /// The resource is not in a state that allows this transition.
    #[error("{reason}")]
    Conflict { code: &'static str, reason: String },
    #[error(transparent)]
    Permit(#[from] authz::Mismatch),
    /// The policy engine said no (a decision about one resource, made by the domain).
    #[error(transparent)]
    Denied(#[from] authz::Denied),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
}

impl From<sqlx::Error> for ProgramError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ProgramError {
    ProgramError::Invalid { field, reason: reason.into() }
}

/// A DNS domain as partners and customers are keyed by: lower case, labels of letters, digits
/// and inner hyphens, at least two labels, at most 253 characters (mirrors the table checks).
pub fn parse_domain(field: &'static str, raw: &str) -> Result<String, ProgramError> {
    let d = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if d.len() > 253 || d.split('.').count() < 2 || !d.split('.').all(label_ok) {
        return Err(invalid(field, "must be a domain name such as example.com"));
    }
    Ok(d)
}

/// A required display text of 1-200 characters, trimmed, without control characters.
pub fn parse_name(field: &'static str, raw: &str) -> Result<String, ProgramError> {
    let s = raw.trim();
    if s.is_empty() || s.chars().count() > 200 || s.chars().any(char::is_control) {
        return Err(invalid(field, "must be 1-200 characters without control characters"));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_normalised_or_refused() {
        assert_eq!(parse_domain("d", " Example.COM. ").ok().as_deref(), Some("example.com"));
        for bad in
            ["", "example", "-a.com", "a-.com", "a..com", "a b.com", "a'.com", &format!("{}.com", "a".repeat(64))]
        {
            assert!(parse_domain("d", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_refuse_empty_long_and_control_characters() {
        assert!(parse_name("n", "  ").is_err());
        assert!(parse_name("n", &"x".repeat(201)).is_err());
        assert!(parse_name("n", "a\u{0}b").is_err());
        assert_eq!(parse_name("n", " Acme Ltd ").ok().as_deref(), Some("Acme Ltd"));
    }
}
