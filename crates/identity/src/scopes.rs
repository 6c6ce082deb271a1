//! The permissions an API key can carry. A scope that no code checks would be a promise nobody
//! keeps, so keys may only name scopes from this list, and each one is enforced somewhere.

use crate::IdentityError;

/// Every scope the server enforces, and where.
pub const KNOWN: &[(&str, &str)] = &[
    ("audit:read", "read and export the audit ledger (web::audit_api)"),
    ("api_keys:manage", "create, list and revoke API keys (web::api_keys_api)"),
    ("members:read", "list members, their sessions and invitations (web::members_api, web::invitations_api)"),
    ("members:manage", "administer members and invitations (web::members_api, web::invitations_api)"),
];

/// Refuses any scope not in [`KNOWN`] with 422 `unknown_scope`.
pub fn check_known(scopes: &[String]) -> Result<(), IdentityError> {
    match scopes.iter().find(|s| !KNOWN.iter().any(|(k, _)| k == s)) {
        Some(s) => Err(IdentityError::Unprocessable {
            code: "unknown_scope",
            reason: format!(
                "'{}' is not a scope; known: {}",
                s.chars().take(64).collect::<String>(),
                KNOWN.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
            ),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_enforced_scopes_are_accepted() {
        assert!(check_known(&["audit:read".into(), "members:manage".into()]).is_ok());
        for bad in ["audit:write", "admin:all", "", "AUDIT:READ"] {
            assert!(check_known(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
