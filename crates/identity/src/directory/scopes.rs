//! The permissions an API key can carry: the one table of organisation-level actions and the
//! scope a key needs for each. A scope that no code checks would be a promise nobody keeps, so
//! keys may only name scopes from this table, and the route guard enforces each one
//! (`web::guard` asks [`for_action`]; there is no second table).

use authz::Action;

use crate::IdentityError;

/// A scope an API key may hold, the organisation-level action it allows, and where it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub name: &'static str,
    /// The organisation-level actions this scope allows.
    pub actions: &'static [Action],
    pub enforced_in: &'static str,
}

/// Every scope the server enforces. An organisation-level action missing here (settings) is
/// taken by people only: no key can be given it.
pub const KNOWN: &[Scope] = &[
    Scope {
        name: "audit:read",
        actions: &[Action::AuditRead],
        enforced_in: "read and export the audit ledger (web::api::audit)",
    },
    Scope {
        name: "api_keys:manage",
        actions: &[Action::ApiKeysManage],
        enforced_in: "create, list and revoke API keys (web::api::api_keys)",
    },
    Scope {
        name: "members:read",
        actions: &[Action::MembersRead, Action::DepartmentsRead],
        enforced_in: "list members, their sessions and invitations, and departments (web::api::members, web::api::invitations, web::api::departments)",
    },
    Scope {
        name: "members:manage",
        actions: &[Action::MembersManage],
        enforced_in: "administer members and invitations (web::api::members, web::api::invitations)",
    },
];

/// The scope an API key needs for an organisation-level `action`; `None`: no key may take it.
#[must_use]
pub fn for_action(action: Action) -> Option<&'static str> {
    KNOWN.iter().find(|s| s.actions.contains(&action)).map(|s| s.name)
}

/// Refuses any scope not in [`KNOWN`] with 422 `unknown_scope`.
pub fn check_known(scopes: &[String]) -> Result<(), IdentityError> {
    match scopes.iter().find(|s| !KNOWN.iter().any(|k| k.name == s.as_str())) {
        Some(s) => Err(IdentityError::Unprocessable {
            code: "unknown_scope",
            reason: format!(
                "'{}' is not a scope; known: {}",
                s.chars().take(64).collect::<String>(),
                KNOWN.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
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
        for bad in ["audit:write", "admin:all", "", "AUDIT:READ", "settings:manage"] {
            assert!(check_known(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_action_has_at_most_one_scope_and_settings_have_none() {
        for s in KNOWN {
            for a in s.actions {
                assert_eq!(for_action(*a), Some(s.name));
                assert_eq!(KNOWN.iter().filter(|k| k.actions.contains(a)).count(), 1, "{}", s.name);
            }
        }
        assert_eq!(for_action(Action::DepartmentsRead), Some("members:read"));
        assert_eq!(for_action(Action::SettingsManage), None);
        assert_eq!(for_action(Action::DocumentApprove), None);
    }
}
