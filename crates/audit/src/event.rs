//! What an audit event says: who (actor + role), what (action on an entity, field deltas, reason)
//! and where from (request id, IP, user agent). Constructors are the only place input is checked.

use std::net::IpAddr;

use serde::Serialize;

use crate::AuditError;
use crate::delta::Changes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    ApiKey,
    System,
    /// An organisation's identity provider provisioning through SCIM, named by its token id.
    IdentityProvider,
}

impl ActorKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::ApiKey => "api_key",
            Self::System => "system",
            Self::IdentityProvider => "identity_provider",
        }
    }
}

/// Who acted, and in which role. A user or API key is named by id; `System` by a component name
/// (`system:checkpointer`, `cli:demo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
    pub role: Option<String>,
}

impl Actor {
    #[must_use]
    pub fn user(id: uuid::Uuid, role: Option<&str>) -> Self {
        Self { kind: ActorKind::User, id: id.to_string(), role: role.map(str::to_owned) }
    }

    #[must_use]
    pub fn api_key(id: uuid::Uuid, role: Option<&str>) -> Self {
        Self { kind: ActorKind::ApiKey, id: id.to_string(), role: role.map(str::to_owned) }
    }

    /// An organisation's identity provider, named by the SCIM token it presented.
    #[must_use]
    pub fn identity_provider(token: uuid::Uuid) -> Self {
        Self { kind: ActorKind::IdentityProvider, id: token.to_string(), role: Some("identity_provider".to_owned()) }
    }

    /// A named process component. Names are short, stable identifiers.
    #[must_use]
    pub fn system(component: &str) -> Self {
        Self { kind: ActorKind::System, id: component.to_owned(), role: None }
    }
}

/// Where a request came from. All optional: jobs and the CLI have none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub request_id: Option<String>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl Origin {
    #[must_use]
    pub fn none() -> Self {
        Self::default()
    }

    /// Trims over-long values instead of failing the change they describe.
    #[must_use]
    pub fn new(request_id: Option<&str>, ip: Option<IpAddr>, user_agent: Option<&str>) -> Self {
        Self { request_id: request_id.map(|r| truncate(r, 200)), ip, user_agent: user_agent.map(|u| truncate(u, 1000)) }
    }
}

fn truncate(s: &str, max_bytes: usize) -> String {
    if s.len() <= max_bytes {
        return s.to_owned();
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Everything an audited write needs to say on whose behalf it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub actor: Actor,
    pub origin: Origin,
}

impl Who {
    #[must_use]
    pub fn new(actor: Actor, origin: Origin) -> Self {
        Self { actor, origin }
    }

    /// A process component acting on its own (CLI commands, jobs, the demo seeder).
    #[must_use]
    pub fn system(component: &str) -> Self {
        Self { actor: Actor::system(component), origin: Origin::none() }
    }
}

/// A stable dotted action name, e.g. `voucher.approved`, `auth.login_failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Action(String);

impl Action {
    pub fn parse(s: &str) -> Result<Self, AuditError> {
        let ok = s.len() <= 100
            && s.split('.').count() >= 2
            && s.split('.').all(|part| {
                let mut chars = part.chars();
                chars.next().is_some_and(|c| c.is_ascii_lowercase())
                    && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            });
        if ok { Ok(Self(s.to_owned())) } else { Err(AuditError::invalid("action", "expected dotted lowercase name")) }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The thing acted on: a type (`membership`) and, usually, an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entity {
    pub kind: String,
    pub id: Option<String>,
}

impl Entity {
    pub fn new(kind: &str, id: Option<String>) -> Result<Self, AuditError> {
        let ok = !kind.is_empty()
            && kind.len() <= 64
            && kind.starts_with(|c: char| c.is_ascii_lowercase())
            && kind.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(AuditError::invalid("entity_type", "expected lowercase identifier"));
        }
        if id.as_ref().is_some_and(|i| i.len() > 200) {
            return Err(AuditError::invalid("entity_id", "at most 200 bytes"));
        }
        Ok(Self { kind: kind.to_owned(), id })
    }

    pub fn of(kind: &str, id: impl ToString) -> Result<Self, AuditError> {
        Self::new(kind, Some(id.to_string()))
    }
}

/// One event to append.
#[derive(Debug, Clone)]
pub struct Event {
    pub action: Action,
    pub entity: Entity,
    pub changes: Changes,
    pub reason: Option<String>,
}

impl Event {
    /// `action` is a literal from the calling code, checked here; a typo fails loudly in tests.
    pub fn new(action: &str, entity: Entity, changes: Changes) -> Result<Self, AuditError> {
        Ok(Self { action: Action::parse(action)?, entity, changes, reason: None })
    }

    /// Attaches a reason (required for role changes and bypass; see `require_reason`).
    pub fn with_reason(mut self, reason: &str) -> Result<Self, AuditError> {
        let reason = reason.trim();
        if reason.len() < 3 || reason.len() > 2000 {
            return Err(AuditError::invalid("reason", "must be 3-2000 characters"));
        }
        self.reason = Some(reason.to_owned());
        Ok(self)
    }

    /// For actions whose policy demands a stated reason.
    pub fn require_reason(&self) -> Result<(), AuditError> {
        if self.reason.is_some() { Ok(()) } else { Err(AuditError::invalid("reason", "a reason is required")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_dotted_lowercase() {
        for ok in ["voucher.approved", "auth.login_failed", "membership.role_changed", "a.b.c2"] {
            assert!(Action::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "voucher", "Voucher.approved", "voucher..x", ".x", "x.", "x.1a", "x.y z", "x.y;drop"] {
            assert!(Action::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origin_truncates_on_char_boundaries() {
        let ua = "é".repeat(600);
        let o = Origin::new(Some("r"), None, Some(&ua));
        assert!(o.user_agent.as_deref().is_some_and(|u| u.len() <= 1000 && u.chars().all(|c| c == 'é')));
    }
}
