//! Deny-by-default authorisation.
//!
//! Rules are Cedar policies in `policies/*.cedar`, validated (strict mode) against
//! `policies/countersign.cedarschema` when the [`Engine`] loads — a policy naming an attribute or
//! action that does not exist fails start-up instead of silently denying. The files are compiled
//! into the binary, so what was reviewed is what runs. A decision evaluates only the policies whose
//! action scope can match its action and that do not start by testing for another role than the
//! asker's ([`roles_tested_first`]); within that slice an `action in [...]` scope is narrowed to
//! `action == it` (same answers, validated again); conditions run as written.
//!
//! The questions themselves (the Cedar entities and request a decision builds) are proven against
//! the same schema once, at load: every action is asked about every shape of resource its kind
//! has, and each question is validated strictly. A mismatch fails start-up. Decisions then skip
//! Cedar's per-call validation; a question that somehow lacked an attribute a policy reads would
//! make that policy error, and any evaluation error denies.
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
    ActionConstraint, Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy,
    PolicyId, PolicySet, RestrictedExpression, Schema, ValidationMode, Validator,
};
use uuid::Uuid;

mod role;
pub use role::{Role, UnknownRole};

const SCHEMA: &str = include_str!("../policies/countersign.cedarschema");
/// Policy files, in the order they are read. Every policy carries an `@id` annotation.
pub const POLICY_FILES: &[(&str, &str)] = &[
    ("tenant.cedar", include_str!("../policies/tenant.cedar")),
    ("documents.cedar", include_str!("../policies/documents.cedar")),
    ("files.cedar", include_str!("../policies/files.cedar")),
    ("programs.cedar", include_str!("../policies/programs.cedar")),
    ("portals.cedar", include_str!("../policies/portals.cedar")),
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
    /// A question the engine builds does not conform to the schema (the schema and
    /// [`Engine::decide`]'s entity shapes drifted apart): refused at load, not per decision.
    #[error("authorisation question does not conform to the schema: {0}")]
    Question(String),
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
    DocumentEdit,
    PeriodRead,
    PeriodOpen,
    PeriodClose,
    PeriodReopen,
    AuditRead,
    MembersRead,
    MembersManage,
    SettingsManage,
    ApiKeysManage,
    DepartmentsRead,
    /// See (list, link to, download) a file attached to a document.
    AttachmentRead,
    /// Change who outside the organisation may see an attachment (its visibility flag).
    AttachmentShare,
    /// Delete (softly) or restore an attached file.
    AttachmentRemove,
    ProgramPartnersRead,
    ProgramPartnersManage,
    /// Invite a person by email into a partner company (vendor staff: any partner; a partner's
    /// administrator: agents of their own company only, decided by the domain and the database).
    PartnerInvite,
    /// List the invitations into a partner company (vendor staff: every partner's; a partner's
    /// administrator: their own company's, decided by the domain from the database's scope).
    PartnerInvitationsRead,
    /// Revoke an open invitation into a partner company (same reach as the list).
    PartnerInvitationRevoke,
    DealRegister,
    DealRead,
    DealDecide,
    LeadRegister,
    LeadRead,
    LeadExport,
    /// Open an opportunity from a lead or an approved deal registration.
    OpportunityCreate,
    OpportunityRead,
    /// Move an opportunity to its next stage (closing it won computes the commission).
    OpportunityAdvance,
    CommissionPlanRead,
    CommissionPlanManage,
    CommissionRead,
    /// A partner disputes its commission.
    CommissionDispute,
    /// A statement of commissions per partner and period (CSV).
    CommissionStatement,
    /// Finance approves a calculated commission (asked about the commission: never its closer).
    CommissionApprove,
    /// Finance marks an approved commission payable, then paid.
    CommissionPay,
    /// Finance resolves a dispute (asked about the commission: never its closer).
    CommissionResolve,
    /// See MDF budgets, requests, claims and their proofs (a partner: its own, by the database).
    MdfRead,
    /// Set MDF allowances per tier and partners' budgets per period (the vendor).
    MdfBudgetManage,
    /// A partner requests funds for an activity.
    MdfRequest,
    /// A partner files a claim against an approved request, with proof-of-performance files.
    MdfClaim,
    /// A channel manager approves or rejects a request (asked about it: never its requester).
    MdfRequestDecide,
    /// Finance approves or rejects a claim (asked about it: never its filer).
    MdfClaimDecide,
    /// Finance pays an approved claim (asked about it: never its filer).
    MdfClaimPay,
    /// See the organisation's relations (vendors, clients) and their people and links.
    RelationsRead,
    /// Create and end relations, invite their people, address documents, mint and revoke links.
    RelationsManage,
    /// Use the portal at all (vendor and client people only).
    PortalUse,
    /// A relation's person reads a document addressed to their relation.
    PortalDocumentRead,
    /// A relation's person adds a file to a document addressed to their relation.
    PortalContribute,
    /// A member of the organisation asks a relation a question about a document addressed to it.
    PortalAsk,
    /// A relation's person answers a question addressed to their relation.
    PortalAnswer,
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
        Self::DocumentEdit,
        Self::PeriodRead,
        Self::PeriodOpen,
        Self::PeriodClose,
        Self::PeriodReopen,
        Self::AuditRead,
        Self::MembersRead,
        Self::MembersManage,
        Self::SettingsManage,
        Self::ApiKeysManage,
        Self::DepartmentsRead,
        Self::AttachmentRead,
        Self::AttachmentShare,
        Self::AttachmentRemove,
        Self::ProgramPartnersRead,
        Self::ProgramPartnersManage,
        Self::PartnerInvite,
        Self::PartnerInvitationsRead,
        Self::PartnerInvitationRevoke,
        Self::DealRegister,
        Self::DealRead,
        Self::DealDecide,
        Self::LeadRegister,
        Self::LeadRead,
        Self::LeadExport,
        Self::OpportunityCreate,
        Self::OpportunityRead,
        Self::OpportunityAdvance,
        Self::CommissionPlanRead,
        Self::CommissionPlanManage,
        Self::CommissionRead,
        Self::CommissionDispute,
        Self::CommissionStatement,
        Self::CommissionApprove,
        Self::CommissionPay,
        Self::CommissionResolve,
        Self::MdfRead,
        Self::MdfBudgetManage,
        Self::MdfRequest,
        Self::MdfClaim,
        Self::MdfRequestDecide,
        Self::MdfClaimDecide,
        Self::MdfClaimPay,
        Self::RelationsRead,
        Self::RelationsManage,
        Self::PortalUse,
        Self::PortalDocumentRead,
        Self::PortalContribute,
        Self::PortalAsk,
        Self::PortalAnswer,
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
            Self::DocumentEdit => "document.edit",
            Self::PeriodRead => "period.read",
            Self::PeriodOpen => "period.open",
            Self::PeriodClose => "period.close",
            Self::PeriodReopen => "period.reopen",
            Self::AuditRead => "audit.read",
            Self::MembersRead => "members.read",
            Self::MembersManage => "members.manage",
            Self::SettingsManage => "settings.manage",
            Self::ApiKeysManage => "api_keys.manage",
            Self::DepartmentsRead => "departments.read",
            Self::AttachmentRead => "attachment.read",
            Self::AttachmentShare => "attachment.share",
            Self::AttachmentRemove => "attachment.remove",
            Self::ProgramPartnersRead => "program.partners_read",
            Self::ProgramPartnersManage => "program.partners_manage",
            Self::PartnerInvite => "program.partner_invite",
            Self::PartnerInvitationsRead => "program.partner_invitations_read",
            Self::PartnerInvitationRevoke => "program.partner_invitation_revoke",
            Self::DealRegister => "deal.register",
            Self::DealRead => "deal.read",
            Self::DealDecide => "deal.decide",
            Self::LeadRegister => "lead.register",
            Self::LeadRead => "lead.read",
            Self::LeadExport => "lead.export",
            Self::OpportunityCreate => "opportunity.create",
            Self::OpportunityRead => "opportunity.read",
            Self::OpportunityAdvance => "opportunity.advance",
            Self::CommissionPlanRead => "commission_plan.read",
            Self::CommissionPlanManage => "commission_plan.manage",
            Self::CommissionRead => "commission.read",
            Self::CommissionDispute => "commission.dispute",
            Self::CommissionStatement => "commission.statement",
            Self::CommissionApprove => "commission.approve",
            Self::CommissionPay => "commission.pay",
            Self::CommissionResolve => "commission.resolve",
            Self::MdfRead => "mdf.read",
            Self::MdfBudgetManage => "mdf.budget_manage",
            Self::MdfRequest => "mdf.request",
            Self::MdfClaim => "mdf.claim",
            Self::MdfRequestDecide => "mdf_request.decide",
            Self::MdfClaimDecide => "mdf_claim.decide",
            Self::MdfClaimPay => "mdf_claim.pay",
            Self::RelationsRead => "relations.read",
            Self::RelationsManage => "relations.manage",
            Self::PortalUse => "portal.use",
            Self::PortalDocumentRead => "portal.document_read",
            Self::PortalContribute => "portal.contribute",
            Self::PortalAsk => "portal.ask",
            Self::PortalAnswer => "portal.answer",
        }
    }

    fn kind(self) -> ResourceKind {
        if matches!(self, Self::CommissionApprove | Self::CommissionPay | Self::CommissionResolve) {
            return ResourceKind::Commission;
        }
        if matches!(self, Self::MdfRequestDecide | Self::MdfClaimDecide | Self::MdfClaimPay) {
            return ResourceKind::Mdf;
        }
        if matches!(self, Self::PortalDocumentRead | Self::PortalContribute | Self::PortalAsk | Self::PortalAnswer) {
            return ResourceKind::Shared;
        }
        match self.as_str().split_once('.').map(|(k, _)| k) {
            Some("document") => ResourceKind::Document,
            Some("period") => ResourceKind::Period,
            Some("attachment") => ResourceKind::Attachment,
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
    Attachment,
    Commission,
    Mdf,
    Shared,
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

/// Who outside the organisation may see an attachment. Members see every attachment of a
/// document they may read; the flag decides for vendors, clients and partners (portals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    Internal,
    Vendor,
    Client,
    Partner,
}

impl Visibility {
    pub const ALL: &'static [Visibility] = &[Self::Internal, Self::Vendor, Self::Client, Self::Partner];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::Vendor => "vendor",
            Self::Client => "client",
            Self::Partner => "partner",
        }
    }
}

impl FromStr for Visibility {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| "internal, vendor, client or partner".into())
    }
}

/// The facts about an attached file that policies may look at. `document_readable` is the
/// `document.read` decision for the same person, made first: an attachment is never more
/// visible than its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentFacts {
    pub tenant: Uuid,
    pub id: Uuid,
    pub visibility: Visibility,
    pub uploader: Uuid,
    pub document_raiser: Uuid,
    pub document_readable: bool,
}

/// The facts about a partner's commission that policies may look at: who closed the opportunity
/// it was computed for (separation of duties: never its approver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommissionFacts {
    pub tenant: Uuid,
    pub id: Uuid,
    pub partner: Uuid,
    pub closer: Uuid,
}

/// The facts about an MDF request or claim that policies may look at: whose partner it is and
/// who filed it (separation of duties: the filer never decides or pays it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MdfFacts {
    pub tenant: Uuid,
    pub id: Uuid,
    pub partner: Uuid,
    pub filer: Uuid,
}

/// The facts about a document addressed to a relation (a portal question): the addressing
/// row's relation and its kind, and the asking person's own relation (from their membership, in
/// the database; `None` for someone who belongs to none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFacts {
    pub tenant: Uuid,
    pub document: Uuid,
    pub relation: Uuid,
    /// `vendor` or `client`.
    pub kind: &'static str,
    pub asker_relation: Option<Uuid>,
}

/// What is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource<'a> {
    Document(&'a DocumentFacts),
    Commission(&'a CommissionFacts),
    Mdf(&'a MdfFacts),
    Attachment(&'a AttachmentFacts),
    /// A document as addressed to one relation; its permits are for the document's id.
    Shared(&'a SharedFacts),
    Period {
        tenant: Uuid,
        id: Uuid,
        status: &'static str,
        reason: &'a str,
    },
    Organisation {
        tenant: Uuid,
    },
}

impl Resource<'_> {
    fn id(&self) -> Uuid {
        match self {
            Self::Document(d) => d.id,
            Self::Attachment(a) => a.id,
            Self::Commission(c) => c.id,
            Self::Mdf(m) => m.id,
            Self::Shared(d) => d.document,
            Self::Period { id, .. } => *id,
            Self::Organisation { tenant } => *tenant,
        }
    }

    fn kind(&self) -> ResourceKind {
        match self {
            Self::Document(_) => ResourceKind::Document,
            Self::Attachment(_) => ResourceKind::Attachment,
            Self::Commission(_) => ResourceKind::Commission,
            Self::Mdf(_) => ResourceKind::Mdf,
            Self::Shared(_) => ResourceKind::Shared,
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

    /// The host operator's authority, for the command line (and demo seeding): it acts on an
    /// organisation without being one of its members, so there is no subject to ask the policies
    /// about. The permit names `operator` as its policy; callers record the change in the audit log
    /// under a system actor. Nothing reachable over HTTP makes one (tests/routes.rs checks the web
    /// crate's source).
    pub fn operator(action: Action, resource: Uuid) -> Permit {
        Permit { action, resource, user: Uuid::nil(), policies: vec!["operator".to_owned()] }
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
    /// Used at load to validate the policies and every shape of question; decisions do not
    /// validate against it again.
    schema: Schema,
    /// The validated policies sliced by action (those whose action scope can match it, plus those
    /// with no action constraint), each `action in [...]` scope narrowed to `action == it`
    /// ([`specialise`]), and again by the asker's role (leaving out policies whose condition
    /// first tests for other roles, [`roles_tested_first`]): a decision evaluates only these.
    /// Same answers, less work.
    slices: HashMap<(Action, Role), PolicySet>,
    authorizer: Authorizer,
    types: Types,
    actions: HashMap<Action, EntityUid>,
    /// A document question's context for each level (none, hod, finance, md), built once.
    document_contexts: [Context; 4],
    /// `@id` of every policy, by Cedar's policy id.
    names: HashMap<PolicyId, String>,
    forbids: HashSet<PolicyId>,
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
    attachment: EntityTypeName,
    commission: EntityTypeName,
    mdf: EntityTypeName,
    shared: EntityTypeName,
}

fn type_name(s: &str) -> Result<EntityTypeName, LoadError> {
    EntityTypeName::from_str(s).map_err(|e| LoadError::Schema(e.to_string()))
}

impl Engine {
    /// The shipped schema and policies.
    ///
    /// # Errors
    /// If a file does not parse, a policy does not validate against the schema, the schema has
    /// action groups, or a question [`Engine::decide`] can ask does not conform to the schema.
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
                let id = PolicyId::new(format!("{file}:{name}"));
                let policy = p.new_id(id.clone());
                if policy.effect() == cedar_policy::Effect::Forbid {
                    forbids.insert(id.clone());
                }
                names.insert(id, name);
                policies
                    .add(policy)
                    .map_err(|e| LoadError::Policy { file: (*file).to_owned(), message: e.to_string() })?;
            }
        }
        let validator = Validator::new(schema.clone());
        let result = validator.validate(&policies, ValidationMode::Strict);
        if !result.validation_passed() {
            let errors: Vec<String> = result.validation_errors().map(ToString::to_string).collect();
            return Err(LoadError::Validation(errors.join("; ")));
        }
        let types = Types {
            user: type_name("Countersign::User")?,
            document: type_name("Countersign::Document")?,
            period: type_name("Countersign::FiscalPeriod")?,
            organisation: type_name("Countersign::Organisation")?,
            attachment: type_name("Countersign::Attachment")?,
            commission: type_name("Countersign::Commission")?,
            mdf: type_name("Countersign::MdfItem")?,
            shared: type_name("Countersign::SharedDocument")?,
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
        // Slicing by action scope (below) and evaluating without the schema's action entities both
        // rely on a flat action hierarchy: with action groups, `action in Group` would need them.
        if let Some(group) = schema.action_groups().next() {
            return Err(LoadError::Schema(format!("action groups are not supported: {group}")));
        }
        let slice_error = |message: String| LoadError::Policy { file: "(slice)".into(), message };
        let roles: HashMap<PolicyId, Option<Vec<String>>> = policies
            .policies()
            .map(|p| roles_tested_first(p).map(|r| (p.id().clone(), r)))
            .collect::<Result<_, _>>()
            .map_err(slice_error)?;
        let mut slices = HashMap::new();
        for (action, uid) in &actions {
            // The policies whose action scope can match, narrowed to this action, with the roles
            // they start by testing for: built once per action, then picked per role.
            let applicable = policies
                .policies()
                .filter(|p| match p.action_constraint() {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(a) => a == *uid,
                    ActionConstraint::In(list) => list.contains(uid),
                })
                .map(|p| Ok((specialise(p, uid).map_err(slice_error)?, roles.get(p.id()).and_then(Option::as_ref))))
                .collect::<Result<Vec<_>, LoadError>>()?;
            // Roles whose slices hold the same policies share one (built and validated once).
            let mut built: HashMap<Vec<&PolicyId>, PolicySet> = HashMap::new();
            for role in Role::ALL {
                let members: Vec<&Policy> = applicable
                    .iter()
                    .filter(|(_, tested)| tested.is_none_or(|t| t.iter().any(|r| r == role.as_str())))
                    .map(|(p, _)| p)
                    .collect();
                let key: Vec<&PolicyId> = members.iter().map(|p| p.id()).collect();
                if let Some(slice) = built.get(&key) {
                    slices.insert((*action, *role), slice.clone());
                    continue;
                }
                let mut slice = PolicySet::new();
                for p in members {
                    slice.add(p.clone()).map_err(|e| slice_error(e.to_string()))?;
                }
                // What is evaluated is validated like the files were.
                let result = validator.validate(&slice, ValidationMode::Strict);
                if !result.validation_passed() {
                    let errors: Vec<String> = result.validation_errors().map(ToString::to_string).collect();
                    return Err(LoadError::Validation(format!("slice for {action} by {role}: {}", errors.join("; "))));
                }
                slices.insert((*action, *role), slice.clone());
                built.insert(key, slice);
            }
        }
        let level = |l: Option<Level>| {
            Context::from_pairs([("level".to_owned(), string(l.map(Level::as_str).unwrap_or_default()))])
                .map_err(|e| LoadError::Schema(e.to_string()))
        };
        let document_contexts =
            [level(None)?, level(Some(Level::Hod))?, level(Some(Level::Finance))?, level(Some(Level::Md))?];
        let engine =
            Self { schema, slices, authorizer: Authorizer::new(), types, actions, document_contexts, names, forbids };
        engine.check_question_shapes()?;
        Ok(engine)
    }

    /// Number of loaded policies.
    #[must_use]
    pub fn policy_count(&self) -> usize {
        self.names.len()
    }

    /// Asks whether `subject` may perform `action` on `resource`. Anything not permitted —
    /// including a malformed question (an action asked about the wrong kind of resource, or one
    /// whose evaluation errors) — is denied.
    ///
    /// # Errors
    /// [`Denied`] when the answer is no.
    pub fn decide(&self, subject: &Subject, action: Action, resource: &Resource<'_>) -> Result<Permit, Denied> {
        let deny = |forbidden_by: Vec<String>| Denied { action, resource: resource.id(), forbidden_by };
        if action.kind() != resource.kind() {
            return Err(deny(Vec::new()));
        }
        let Some(question) = self.question(subject, action, resource) else { return Err(deny(Vec::new())) };
        let (decision, reasons) = self.evaluate(action, question);
        if decision == Decision::Allow {
            let named = reasons.iter().filter_map(|r| self.names.get(r).cloned()).collect();
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
        EntityUid::from_type_name_and_id(
            ty.clone(),
            EntityId::new(id.hyphenated().encode_lower(&mut Uuid::encode_buffer())),
        )
    }

    /// Builds the question in Cedar's terms: the entities (the asking user and the resource), the
    /// request's uids and its context. `None` if Cedar refuses to build an entity (which the caller
    /// treats as a denial).
    ///
    /// Users a document refers to (raiser, approvers) are references only, not entities in the
    /// store: policies compare them with the principal and never read their attributes. A policy
    /// that did (`resource.raiser.role`) would error whenever that part is evaluated, and errors
    /// deny.
    ///
    /// The attribute names and types here do not depend on the values asked about; the only
    /// branches are the resource kind, a document's level, and which users a document refers to.
    /// [`Engine::check_question_shapes`] builds every one of those shapes for every action at load
    /// and validates it against the schema, so a decision does not validate it again.
    fn question(&self, subject: &Subject, action: Action, resource: &Resource<'_>) -> Option<Question> {
        let principal = self.uid(&self.types.user, subject.user);
        let department = subject.department.map(uuid_string).unwrap_or_default();
        let mut entities = Vec::with_capacity(2);
        entities.push(user_entity(principal.clone(), uuid_string(subject.tenant), subject.role.as_str(), department)?);
        let (resource, context) = match resource {
            Resource::Document(d) => {
                let uid = self.uid(&self.types.document, d.id);
                let user = |u: Uuid| RestrictedExpression::new_entity_uid(self.uid(&self.types.user, u));
                entities.push(entity(
                    uid.clone(),
                    [
                        ("tenant", RestrictedExpression::new_string(uuid_string(d.tenant))),
                        ("kind", string(d.kind)),
                        ("department", RestrictedExpression::new_string(uuid_string(d.department))),
                        ("raiser", user(d.raiser)),
                        ("status", string(d.status)),
                        ("amount_minor", RestrictedExpression::new_long(d.amount_minor)),
                        ("approvers", RestrictedExpression::new_set(d.approvers.iter().map(|a| user(*a)))),
                    ],
                )?);
                (uid, self.document_context(d.level).clone())
            }
            Resource::Attachment(a) => {
                let uid = self.uid(&self.types.attachment, a.id);
                let user = |u: Uuid| RestrictedExpression::new_entity_uid(self.uid(&self.types.user, u));
                entities.push(entity(
                    uid.clone(),
                    [
                        ("tenant", RestrictedExpression::new_string(uuid_string(a.tenant))),
                        ("visibility", string(a.visibility.as_str())),
                        ("uploader", user(a.uploader)),
                        ("document_raiser", user(a.document_raiser)),
                    ],
                )?);
                let context = Context::from_pairs([(
                    "document_readable".to_owned(),
                    RestrictedExpression::new_bool(a.document_readable),
                )])
                .ok()?;
                (uid, context)
            }
            Resource::Commission(c) => {
                let uid = self.uid(&self.types.commission, c.id);
                entities.push(entity(
                    uid.clone(),
                    [
                        ("tenant", RestrictedExpression::new_string(uuid_string(c.tenant))),
                        ("partner", RestrictedExpression::new_string(uuid_string(c.partner))),
                        ("closer", RestrictedExpression::new_entity_uid(self.uid(&self.types.user, c.closer))),
                    ],
                )?);
                (uid, Context::empty())
            }
            Resource::Mdf(m) => {
                let uid = self.uid(&self.types.mdf, m.id);
                entities.push(entity(
                    uid.clone(),
                    [
                        ("tenant", RestrictedExpression::new_string(uuid_string(m.tenant))),
                        ("partner", RestrictedExpression::new_string(uuid_string(m.partner))),
                        ("filer", RestrictedExpression::new_entity_uid(self.uid(&self.types.user, m.filer))),
                    ],
                )?);
                (uid, Context::empty())
            }
            Resource::Shared(d) => {
                let uid = self.uid(&self.types.shared, d.document);
                entities.push(entity(
                    uid.clone(),
                    [
                        ("tenant", RestrictedExpression::new_string(uuid_string(d.tenant))),
                        ("relation", RestrictedExpression::new_string(uuid_string(d.relation))),
                        ("kind", string(d.kind)),
                    ],
                )?);
                let asker = d.asker_relation.map(uuid_string).unwrap_or_default();
                (uid, Context::from_pairs([("relation".to_owned(), RestrictedExpression::new_string(asker))]).ok()?)
            }
            Resource::Period { tenant, id, status, reason } => {
                let uid = self.uid(&self.types.period, *id);
                entities.push(entity(
                    uid.clone(),
                    [("tenant", RestrictedExpression::new_string(uuid_string(*tenant))), ("status", string(status))],
                )?);
                (uid, Context::from_pairs([("reason".to_owned(), string(reason.trim()))]).ok()?)
            }
            Resource::Organisation { tenant } => {
                let uid = self.uid(&self.types.organisation, *tenant);
                entities
                    .push(entity(uid.clone(), [("tenant", RestrictedExpression::new_string(uuid_string(*tenant)))])?);
                (uid, Context::empty())
            }
        };
        Some(Question {
            entities,
            principal,
            action: self.actions.get(&action)?.clone(),
            resource,
            context,
            role: subject.role,
        })
    }

    /// The context of a document question, built once per level at load.
    fn document_context(&self, level: Option<Level>) -> &Context {
        match level {
            None => &self.document_contexts[0],
            Some(Level::Hod) => &self.document_contexts[1],
            Some(Level::Finance) => &self.document_contexts[2],
            Some(Level::Md) => &self.document_contexts[3],
        }
    }

    /// Evaluates a question built by [`Engine::question`] against the action's policies.
    ///
    /// Neither the entities nor the request are validated against the schema here: their shapes
    /// were proven at load ([`Engine::check_question_shapes`]). What validation would have caught
    /// at run time cannot slip through anyway: a policy reading an attribute that is not there
    /// errors, and any evaluation error denies.
    fn evaluate(&self, action: Action, question: Question) -> (Decision, Vec<PolicyId>) {
        let Some(slice) = self.slices.get(&(action, question.role)) else { return (Decision::Deny, Vec::new()) };
        let Question { entities, principal, action: action_uid, resource, context, role: _ } = question;
        // No schema: that would validate every entity again and add the schema's action entities
        // to the store. The action hierarchy is flat (checked at load), so `action in [...]` is
        // plain equality and needs no action entities. Adding to an empty store gives the same
        // store as `from_entities` for entities without parents, and its transitive-closure repair
        // is cheaper than the full computation `from_entities` runs (measured: ~3 µs a decision).
        let Ok(entities) = Entities::empty().add_entities(entities, None) else { return (Decision::Deny, Vec::new()) };
        let Ok(request) = cedar_policy::Request::new(principal, action_uid, resource, context, None) else {
            return (Decision::Deny, Vec::new());
        };
        let response = self.authorizer.is_authorized(&request, slice, &entities);
        if response.diagnostics().errors().next().is_some() {
            // A policy that errors is skipped by Cedar; an erroring forbid must not turn into an
            // allow, so any evaluation error denies.
            return (Decision::Deny, Vec::new());
        }
        (response.decision(), response.diagnostics().reason().cloned().collect())
    }

    /// Validates a question strictly against the schema, as Cedar would if given the schema per
    /// call: the entities conform to their types and the request to the action's signature.
    fn validate_question(&self, question: &Question) -> Result<(), String> {
        Entities::from_entities(question.entities.iter().cloned(), Some(&self.schema)).map_err(|e| e.to_string())?;
        cedar_policy::Request::new(
            question.principal.clone(),
            question.action.clone(),
            question.resource.clone(),
            question.context.clone(),
            Some(&self.schema),
        )
        .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Load-time proof that [`Engine::question`] only builds questions the schema accepts: every
    /// action, asked by a member with and without a department, about every shape of resource its
    /// kind has (documents at each level or none, raised by the asker or someone else, with no,
    /// one or several approvers, the asker among them or not; periods with and without a reason).
    /// The attribute names and types `question` produces do not depend on the values, so these
    /// cover every question `decide` can ask. Returns how many were checked.
    fn check_question_shapes(&self) -> Result<usize, LoadError> {
        let tenant = Uuid::from_u128(1);
        let (other, another, department) = (Uuid::from_u128(2), Uuid::from_u128(3), Uuid::from_u128(4));
        let subjects = [
            Subject { tenant, user: Uuid::from_u128(5), role: Role::Staff, department: Some(department) },
            Subject { tenant, user: Uuid::from_u128(6), role: Role::Finance, department: None },
        ];
        let mut checked = 0;
        for subject in &subjects {
            let mut documents = Vec::new();
            for level in [None, Some(Level::Hod), Some(Level::Finance), Some(Level::Md)] {
                for raiser in [subject.user, other] {
                    for approvers in [vec![], vec![another], vec![subject.user, other, another]] {
                        documents.push(DocumentFacts {
                            tenant,
                            id: Uuid::from_u128(7),
                            kind: "voucher",
                            department,
                            raiser,
                            status: "submitted",
                            amount_minor: 1,
                            approvers,
                            level,
                        });
                    }
                }
            }
            let mut attachments = Vec::new();
            for visibility in Visibility::ALL {
                for (uploader, raiser) in [(subject.user, subject.user), (other, another)] {
                    for document_readable in [true, false] {
                        attachments.push(AttachmentFacts {
                            tenant,
                            id: Uuid::from_u128(9),
                            visibility: *visibility,
                            uploader,
                            document_raiser: raiser,
                            document_readable,
                        });
                    }
                }
            }
            let mut resources: Vec<Resource<'_>> = documents.iter().map(Resource::Document).collect();
            for reason in ["", "late invoice"] {
                resources.push(Resource::Period { tenant, id: Uuid::from_u128(8), status: "open", reason });
            }
            resources.push(Resource::Organisation { tenant });
            resources.extend(attachments.iter().map(Resource::Attachment));
            let commissions = [subject.user, other].map(|closer| CommissionFacts {
                tenant,
                id: Uuid::from_u128(10),
                partner: another,
                closer,
            });
            resources.extend(commissions.iter().map(Resource::Commission));
            let mdf = [subject.user, other].map(|filer| MdfFacts {
                tenant,
                id: Uuid::from_u128(11),
                partner: another,
                filer,
            });
            resources.extend(mdf.iter().map(Resource::Mdf));
            let shared = [None, Some(other)].map(|asker_relation| SharedFacts {
                tenant,
                document: Uuid::from_u128(11),
                relation: other,
                kind: "vendor",
                asker_relation,
            });
            resources.extend(shared.iter().map(Resource::Shared));
            for action in Action::ALL {
                for resource in resources.iter().filter(|r| r.kind() == action.kind()) {
                    let question = self
                        .question(subject, *action, resource)
                        .ok_or_else(|| LoadError::Question(format!("{action}: Cedar refused to build the entities")))?;
                    self.validate_question(&question).map_err(|e| LoadError::Question(format!("{action}: {e}")))?;
                    checked += 1;
                }
            }
        }
        Ok(checked)
    }
}

/// `policy` as it applies to `action` alone. A slice only ever answers questions about its one
/// action, so there an `action in [a, b, c]` scope that lists it means `action == it`; Cedar then
/// compares one uid instead of building the list as a set on every evaluation (measured: ~1 µs per
/// such policy per decision). Only the action scope changes: id, annotations, effect, principal
/// and resource scopes and conditions are kept as written (tested).
fn specialise(policy: &Policy, action: &EntityUid) -> Result<Policy, String> {
    if !matches!(policy.action_constraint(), ActionConstraint::In(_)) {
        return Ok(policy.clone());
    }
    let mut json = policy.to_json().map_err(|e| e.to_string())?;
    let scope = json.get_mut("action").ok_or_else(|| format!("{}: no action scope in its JSON", policy.id()))?;
    *scope = serde_json::json!({
        "op": "==",
        "entity": { "type": action.type_name().to_string(), "id": action.id().unescaped() },
    });
    let specialised = Policy::from_json(Some(policy.id().clone()), json).map_err(|e| e.to_string())?;
    if specialised.action_constraint() != ActionConstraint::Eq(action.clone()) {
        return Err(format!("{}: specialising its action scope to {action} failed", policy.id()));
    }
    Ok(specialised)
}

/// One authorisation question in Cedar's terms. Only [`Engine::question`] builds one.
#[derive(Debug, Clone)]
struct Question {
    entities: Vec<Entity>,
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    context: Context,
    /// The principal's `role` attribute, which picks the slice evaluated.
    role: Role,
}

/// The roles `policy` can apply to, when that is the first thing its conditions test: its first
/// condition is a `when` whose leftmost conjunct compares `principal.role` with string literals
/// (`principal.role == "finance"`, `["owner", "admin"].contains(principal.role)`). `None` when it
/// does not start that way (the policy then goes into every role's slice).
///
/// Leaving such a policy out of the slices of other roles changes no answer: Cedar evaluates the
/// scope (which cannot error), then the conditions in order, and `&&` from the left, stopping at
/// the first `false`. The role test therefore runs first; it cannot error, because every question
/// carries the asker as an entity with a `role` (the shapes are proven at load); and for another
/// role it is `false`. The policy is then unsatisfied without an error — exactly what leaving it
/// out gives: the same decision, the same determining policies, the same (no) errors.
fn roles_tested_first(policy: &Policy) -> Result<Option<Vec<String>>, String> {
    let json = policy.to_json().map_err(|e| format!("{}: {e}", policy.id()))?;
    let first = json.get("conditions").and_then(serde_json::Value::as_array).and_then(|c| c.first());
    let Some(first) = first.filter(|c| c.get("kind").and_then(serde_json::Value::as_str) == Some("when")) else {
        return Ok(None);
    };
    let Some(mut leftmost) = first.get("body") else { return Ok(None) };
    while let Some(left) = leftmost.get("&&").and_then(|and| and.get("left")) {
        leftmost = left;
    }
    Ok(role_test(leftmost))
}

/// The role literals of `principal.role == "x"` (either way round) or `[..].contains(principal.role)`
/// in Cedar's JSON form; `None` for anything else.
fn role_test(expr: &serde_json::Value) -> Option<Vec<String>> {
    let is_role = |v: &serde_json::Value| {
        v.get(".").is_some_and(|get| {
            get.get("left") == Some(&serde_json::json!({ "Var": "principal" }))
                && get.get("attr").and_then(serde_json::Value::as_str) == Some("role")
        })
    };
    let literal = |v: &serde_json::Value| v.get("Value").and_then(serde_json::Value::as_str).map(str::to_owned);
    if let Some(eq) = expr.get("==") {
        let (left, right) = (eq.get("left")?, eq.get("right")?);
        return if is_role(left) {
            literal(right).map(|r| vec![r])
        } else if is_role(right) {
            literal(left).map(|r| vec![r])
        } else {
            None
        };
    }
    let contains = expr.get("contains")?;
    if !is_role(contains.get("right")?) {
        return None;
    }
    contains.get("left")?.get("Set")?.as_array()?.iter().map(literal).collect()
}

fn uuid_string(id: Uuid) -> String {
    id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).to_owned()
}

fn string(v: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(v.to_owned())
}

/// An entity with these attributes, no parents and no tags.
fn entity<const N: usize>(uid: EntityUid, attrs: [(&str, RestrictedExpression); N]) -> Option<Entity> {
    Entity::new_with_tags(uid, attrs.map(|(k, v)| (k.to_owned(), v)), std::iter::empty(), std::iter::empty()).ok()
}

fn user_entity(uid: EntityUid, tenant: String, role: &str, department: String) -> Option<Entity> {
    entity(
        uid,
        [
            ("tenant", RestrictedExpression::new_string(tenant)),
            ("role", string(role)),
            ("department", RestrictedExpression::new_string(department)),
        ],
    )
}

#[cfg(test)]
mod tests;
