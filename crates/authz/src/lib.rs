//! Deny-by-default authorisation.
//!
//! Rules are Cedar policies in `policies/*.cedar`, validated (strict mode) against
//! `policies/countersign.cedarschema` when the [`Engine`] loads — a policy naming an attribute or
//! action that does not exist fails start-up instead of silently denying. The files are compiled
//! into the binary, so what was reviewed is what runs.
//!
//! Every decision yields either a [`Permit`] or a [`Denied`]. A `Permit` cannot be built outside
//! this crate; domain writes take one and check it names their action and resource, so a write
//! path that forgot to ask cannot compile, and one that asked about something else fails.
//!
//! Cedar answers *who* may do something. *What* may happen next (which transitions a document's
//! state allows, which approval level it waits for) is the state machine's business; it tells the
//! engine the level through the request context.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use identity::Role;
use uuid::Uuid;

const SCHEMA: &str = include_str!("../policies/countersign.cedarschema");
/// Policy files, in the order they are read. Every policy carries an `@id` annotation.
pub const POLICY_FILES: &[(&str, &str)] = &[
    ("tenant.cedar", include_str!("../policies/tenant.cedar")),
    ("documents.cedar", include_str!("../policies/documents.cedar")),
];

/// Why the engine could not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("authorisation schema: {0}")]
    Schema(String),
    #[error("policy file {file}: {message}")]
    Policy { file: String, message: String },
    #[error("policies do not validate against the schema: {0}")]
    Validation(String),
}

/// Everything that can be asked. The names are the schema's action ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    DocumentRead,
    DocumentCreate,
    DocumentSubmit,
    DocumentApprove,
    DocumentReject,
    DocumentQuery,
    DocumentAnswer,
    DocumentCancel,
    DocumentAmend,
    DocumentMarkPaid,
    PeriodRead,
    PeriodOpen,
    PeriodClose,
    PeriodReopen,
    AuditRead,
    MembersRead,
    MembersManage,
    SettingsManage,
    ApiKeysManage,
}

impl Action {
    pub const ALL: &'static [Action] = &[
        Self::DocumentRead,
        Self::DocumentCreate,
        Self::DocumentSubmit,
        Self::DocumentApprove,
        Self::DocumentReject,
        Self::DocumentQuery,
        Self::DocumentAnswer,
        Self::DocumentCancel,
        Self::DocumentAmend,
        Self::DocumentMarkPaid,
        Self::PeriodRead,
        Self::PeriodOpen,
        Self::PeriodClose,
        Self::PeriodReopen,
        Self::AuditRead,
        Self::MembersRead,
        Self::MembersManage,
        Self::SettingsManage,
        Self::ApiKeysManage,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DocumentRead => "document.read",
            Self::DocumentCreate => "document.create",
            Self::DocumentSubmit => "document.submit",
            Self::DocumentApprove => "document.approve",
            Self::DocumentReject => "document.reject",
            Self::DocumentQuery => "document.query",
            Self::DocumentAnswer => "document.answer",
            Self::DocumentCancel => "document.cancel",
            Self::DocumentAmend => "document.amend",
            Self::DocumentMarkPaid => "document.mark_paid",
            Self::PeriodRead => "period.read",
            Self::PeriodOpen => "period.open",
            Self::PeriodClose => "period.close",
            Self::PeriodReopen => "period.reopen",
            Self::AuditRead => "audit.read",
            Self::MembersRead => "members.read",
            Self::MembersManage => "members.manage",
            Self::SettingsManage => "settings.manage",
            Self::ApiKeysManage => "api_keys.manage",
        }
    }

    fn kind(self) -> ResourceKind {
        match self.as_str().split_once('.').map(|(k, _)| k) {
            Some("document") => ResourceKind::Document,
            Some("period") => ResourceKind::Period,
            _ => ResourceKind::Organisation,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResourceKind {
    Document,
    Period,
    Organisation,
}

/// Who asks: a member of one organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub tenant: Uuid,
    pub user: Uuid,
    pub role: Role,
    pub department: Option<Uuid>,
}

/// The approval level a document waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Hod,
    Finance,
    Md,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hod => "hod",
            Self::Finance => "finance",
            Self::Md => "md",
        }
    }
}

/// The facts about a document that policies may look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentFacts {
    pub tenant: Uuid,
    pub id: Uuid,
    pub kind: &'static str,
    pub department: Uuid,
    pub raiser: Uuid,
    pub status: &'static str,
    pub amount_minor: i64,
    pub approvers: Vec<Uuid>,
    /// Set by the state machine when the document waits for a decision.
    pub level: Option<Level>,
}

/// What is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource<'a> {
    Document(&'a DocumentFacts),
    Period { tenant: Uuid, id: Uuid, status: &'static str, reason: &'a str },
    Organisation { tenant: Uuid },
}

impl Resource<'_> {
    fn id(&self) -> Uuid {
        match self {
            Self::Document(d) => d.id,
            Self::Period { id, .. } => *id,
            Self::Organisation { tenant } => *tenant,
        }
    }

    fn kind(&self) -> ResourceKind {
        match self {
            Self::Document(_) => ResourceKind::Document,
            Self::Period { .. } => ResourceKind::Period,
            Self::Organisation { .. } => ResourceKind::Organisation,
        }
    }
}

/// Proof that `user` may perform `action` on `resource`. Only [`Engine::decide`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Permit {
    action: Action,
    resource: Uuid,
    user: Uuid,
    policies: Vec<String>,
}

impl Permit {
    #[must_use]
    pub fn action(&self) -> Action {
        self.action
    }

    #[must_use]
    pub fn resource(&self) -> Uuid {
        self.resource
    }

    #[must_use]
    pub fn user(&self) -> Uuid {
        self.user
    }

    /// The `@id`s of the policies that allowed it.
    #[must_use]
    pub fn policies(&self) -> &[String] {
        &self.policies
    }

    /// What a domain write calls first: the permit must be for this action on this resource.
    ///
    /// # Errors
    /// [`Mismatch`] when the permit was issued for something else.
    pub fn require(&self, action: Action, resource: Uuid) -> Result<(), Mismatch> {
        if self.action == action && self.resource == resource {
            Ok(())
        } else {
            Err(Mismatch { wanted: action, had: self.action })
        }
    }
}

/// A permit presented for the wrong action or resource: a programming error, refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("permit for {had} presented for {wanted}")]
pub struct Mismatch {
    pub wanted: Action,
    pub had: Action,
}

/// A refusal: no policy permitted it, or a `forbid` matched (named in `forbidden_by`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{action} denied")]
pub struct Denied {
    pub action: Action,
    pub resource: Uuid,
    /// `@id`s of forbid policies that matched; empty when nothing permitted it.
    pub forbidden_by: Vec<String>,
}

/// The loaded, validated policy set.
pub struct Engine {
    schema: Schema,
    /// The validated policies sliced by action (those whose action scope can match it, plus those
    /// with no action constraint): a decision evaluates only these. Same answers, less work.
    by_action: HashMap<Action, PolicySet>,
    authorizer: Authorizer,
    types: Types,
    actions: HashMap<Action, EntityUid>,
    /// `@id` of every policy, by Cedar's policy id.
    names: HashMap<String, String>,
    forbids: HashSet<String>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").field("policies", &self.names.len()).finish_non_exhaustive()
    }
}

struct Types {
    user: EntityTypeName,
    document: EntityTypeName,
    period: EntityTypeName,
    organisation: EntityTypeName,
}

fn type_name(s: &str) -> Result<EntityTypeName, LoadError> {
    EntityTypeName::from_str(s).map_err(|e| LoadError::Schema(e.to_string()))
}

impl Engine {
    /// The shipped schema and policies.
    ///
    /// # Errors
    /// If a file does not parse or a policy does not validate against the schema.
    pub fn load() -> Result<Self, LoadError> {
        Self::from_sources(SCHEMA, POLICY_FILES)
    }

    /// A schema and policy files given as text (tests use this to prove bad policies are refused).
    ///
    /// # Errors
    /// See [`Engine::load`].
    pub fn from_sources(schema: &str, files: &[(&str, &str)]) -> Result<Self, LoadError> {
        let (schema, _warnings) = Schema::from_cedarschema_str(schema).map_err(|e| LoadError::Schema(e.to_string()))?;
        let mut policies = PolicySet::new();
        let mut names = HashMap::new();
        let mut forbids = HashSet::new();
        for (file, text) in files {
            let set = PolicySet::from_str(text)
                .map_err(|e| LoadError::Policy { file: (*file).to_owned(), message: e.to_string() })?;
            for p in set.policies() {
                let Some(name) = p.annotation("id").map(str::to_owned) else {
                    return Err(LoadError::Policy {
                        file: (*file).to_owned(),
                        message: format!("every policy needs an @id annotation: {p}"),
                    });
                };
                if names.values().any(|n| *n == name) {
                    return Err(LoadError::Policy {
                        file: (*file).to_owned(),
                        message: format!("duplicate @id {name}"),
                    });
                }
                let id = format!("{file}:{name}");
                let policy = p.new_id(cedar_policy::PolicyId::new(&id));
                if policy.effect() == cedar_policy::Effect::Forbid {
                    forbids.insert(id.clone());
                }
                names.insert(id, name);
                policies
                    .add(policy)
                    .map_err(|e| LoadError::Policy { file: (*file).to_owned(), message: e.to_string() })?;
            }
        }
        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if !result.validation_passed() {
            let errors: Vec<String> = result.validation_errors().map(ToString::to_string).collect();
            return Err(LoadError::Validation(errors.join("; ")));
        }
        let types = Types {
            user: type_name("Countersign::User")?,
            document: type_name("Countersign::Document")?,
            period: type_name("Countersign::FiscalPeriod")?,
            organisation: type_name("Countersign::Organisation")?,
        };
        let action_type = type_name("Countersign::Action")?;
        let actions: HashMap<Action, EntityUid> = Action::ALL
            .iter()
            .map(|a| (*a, EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(a.as_str()))))
            .collect();
        // Every action must exist in the schema: ask the schema, not a hand-kept list.
        let known: HashSet<String> = schema.actions().map(|a| a.id().unescaped().to_owned()).collect();
        for a in Action::ALL {
            if !known.contains(a.as_str()) {
                return Err(LoadError::Schema(format!("action {a} is not in the schema")));
            }
        }
        let mut by_action = HashMap::new();
        for (action, uid) in &actions {
            let mut slice = PolicySet::new();
            for p in policies.policies() {
                let applies = match p.action_constraint() {
                    cedar_policy::ActionConstraint::Any => true,
                    cedar_policy::ActionConstraint::Eq(a) => a == *uid,
                    cedar_policy::ActionConstraint::In(list) => list.contains(uid),
                };
                if applies {
                    slice
                        .add(p.clone())
                        .map_err(|e| LoadError::Policy { file: "(slice)".into(), message: e.to_string() })?;
                }
            }
            by_action.insert(*action, slice);
        }
        Ok(Self { schema, by_action, authorizer: Authorizer::new(), types, actions, names, forbids })
    }

    /// Number of loaded policies.
    #[must_use]
    pub fn policy_count(&self) -> usize {
        self.names.len()
    }

    /// Asks whether `subject` may perform `action` on `resource`. Anything not permitted —
    /// including a malformed question — is denied.
    ///
    /// # Errors
    /// [`Denied`] when the answer is no.
    pub fn decide(&self, subject: &Subject, action: Action, resource: &Resource<'_>) -> Result<Permit, Denied> {
        let deny = |forbidden_by: Vec<String>| Denied { action, resource: resource.id(), forbidden_by };
        if action.kind() != resource.kind() {
            return Err(deny(Vec::new()));
        }
        let Some(answer) = self.ask(subject, action, resource) else { return Err(deny(Vec::new())) };
        let (decision, reasons) = answer;
        let named: Vec<String> = reasons.iter().filter_map(|r| self.names.get(r).cloned()).collect();
        if decision == Decision::Allow {
            Ok(Permit { action, resource: resource.id(), user: subject.user, policies: named })
        } else {
            let forbidden_by = reasons
                .iter()
                .filter(|r| self.forbids.contains(*r))
                .filter_map(|r| self.names.get(r).cloned())
                .collect();
            Err(deny(forbidden_by))
        }
    }

    fn uid(&self, ty: &EntityTypeName, id: Uuid) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id.to_string()))
    }

    /// Builds the entities and request and evaluates them; `None` if Cedar refuses the question
    /// (which the caller treats as a denial).
    fn ask(&self, subject: &Subject, action: Action, resource: &Resource<'_>) -> Option<(Decision, Vec<String>)> {
        let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
        let principal = self.uid(&self.types.user, subject.user);
        let mut entities = vec![
            Entity::new(
                principal.clone(),
                HashMap::from([
                    ("tenant".to_owned(), s(&subject.tenant.to_string())),
                    ("role".to_owned(), s(subject.role.as_str())),
                    ("department".to_owned(), s(&subject.department.map(|d| d.to_string()).unwrap_or_default())),
                ]),
                HashSet::new(),
            )
            .ok()?,
        ];
        let (resource_uid, context) = match resource {
            Resource::Document(d) => {
                let uid = self.uid(&self.types.document, d.id);
                let user = |u: Uuid| RestrictedExpression::new_entity_uid(self.uid(&self.types.user, u));
                // Users referenced by the document but not asking exist as plain entities.
                for u in std::iter::once(d.raiser).chain(d.approvers.iter().copied()) {
                    if u != subject.user && !entities.iter().any(|e| e.uid() == self.uid(&self.types.user, u)) {
                        entities.push(
                            Entity::new(
                                self.uid(&self.types.user, u),
                                HashMap::from([
                                    ("tenant".to_owned(), s(&d.tenant.to_string())),
                                    ("role".to_owned(), s("")),
                                    ("department".to_owned(), s("")),
                                ]),
                                HashSet::new(),
                            )
                            .ok()?,
                        );
                    }
                }
                entities.push(
                    Entity::new(
                        uid.clone(),
                        HashMap::from([
                            ("tenant".to_owned(), s(&d.tenant.to_string())),
                            ("kind".to_owned(), s(d.kind)),
                            ("department".to_owned(), s(&d.department.to_string())),
                            ("raiser".to_owned(), user(d.raiser)),
                            ("status".to_owned(), s(d.status)),
                            ("amount_minor".to_owned(), RestrictedExpression::new_long(d.amount_minor)),
                            (
                                "approvers".to_owned(),
                                RestrictedExpression::new_set(d.approvers.iter().map(|a| user(*a))),
                            ),
                        ]),
                        HashSet::new(),
                    )
                    .ok()?,
                );
                let level = d.level.map(Level::as_str).unwrap_or_default();
                (uid, Context::from_pairs([("level".to_owned(), s(level))]).ok()?)
            }
            Resource::Period { tenant, id, status, reason } => {
                let uid = self.uid(&self.types.period, *id);
                entities.push(
                    Entity::new(
                        uid.clone(),
                        HashMap::from([
                            ("tenant".to_owned(), s(&tenant.to_string())),
                            ("status".to_owned(), s(status)),
                        ]),
                        HashSet::new(),
                    )
                    .ok()?,
                );
                (uid, Context::from_pairs([("reason".to_owned(), s(reason.trim()))]).ok()?)
            }
            Resource::Organisation { tenant } => {
                let uid = self.uid(&self.types.organisation, *tenant);
                entities.push(
                    Entity::new(
                        uid.clone(),
                        HashMap::from([("tenant".to_owned(), s(&tenant.to_string()))]),
                        HashSet::new(),
                    )
                    .ok()?,
                );
                (uid, Context::empty())
            }
        };
        // Validated against the schema on every call: a shape mismatch is refused (denied) here
        // rather than evaluated. (Measured: it costs nothing noticeable; see bench/README.md.)
        let entities = Entities::from_entities(entities, Some(&self.schema)).ok()?;
        let action_uid = self.actions.get(&action)?.clone();
        let request =
            cedar_policy::Request::new(principal, action_uid, resource_uid, context, Some(&self.schema)).ok()?;
        let slice = self.by_action.get(&action)?;
        let response = self.authorizer.is_authorized(&request, slice, &entities);
        if response.diagnostics().errors().next().is_some() {
            // A policy that errors is skipped by Cedar; an erroring forbid must not turn into an
            // allow, so any evaluation error denies.
            return Some((Decision::Deny, Vec::new()));
        }
        Some((response.decision(), response.diagnostics().reason().map(ToString::to_string).collect()))
    }
}

#[cfg(test)]
mod tests;
