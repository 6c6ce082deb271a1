use super::*;

fn engine() -> Engine {
    Engine::load().expect("shipped policies load and validate")
}

struct World {
    tenant: Uuid,
    ops: Uuid,
    sales: Uuid,
}

impl World {
    fn new() -> Self {
        Self { tenant: Uuid::now_v7(), ops: Uuid::now_v7(), sales: Uuid::now_v7() }
    }

    fn member(&self, role: Role, department: Option<Uuid>) -> Subject {
        Subject { tenant: self.tenant, user: Uuid::now_v7(), role, department }
    }

    fn doc(&self, raiser: &Subject, status: &'static str, level: Option<Level>) -> DocumentFacts {
        DocumentFacts {
            tenant: self.tenant,
            id: Uuid::now_v7(),
            kind: "voucher",
            department: self.ops,
            raiser: raiser.user,
            status,
            amount_minor: 125_000,
            approvers: Vec::new(),
            level,
        }
    }
}

#[test]
fn shipped_policies_validate_and_every_action_is_in_the_schema() {
    let e = engine();
    assert!(e.policy_count() >= 15, "{}", e.policy_count());
}

#[test]
fn policies_that_do_not_match_the_schema_are_refused_at_load() {
    // A misspelt attribute: strict validation refuses it instead of letting it silently deny.
    let typo = r#"@id("typo") permit (principal, action == Countersign::Action::"document.read", resource)
                  when { principal.rol == "finance" };"#;
    assert!(matches!(Engine::from_sources(SCHEMA, &[("typo.cedar", typo)]), Err(LoadError::Validation(_))));
    // An unknown action.
    let unknown = r#"@id("x") permit (principal, action == Countersign::Action::"document.teleport", resource);"#;
    assert!(Engine::from_sources(SCHEMA, &[("x.cedar", unknown)]).is_err());
    // A policy without an @id cannot be named in audit records.
    let anonymous = r#"permit (principal, action == Countersign::Action::"document.read", resource);"#;
    assert!(matches!(Engine::from_sources(SCHEMA, &[("a.cedar", anonymous)]), Err(LoadError::Policy { .. })));
    // Syntax errors name the file.
    let Err(LoadError::Policy { file, .. }) = Engine::from_sources(SCHEMA, &[("broken.cedar", "permit (")]) else {
        panic!("broken policy accepted")
    };
    assert_eq!(file, "broken.cedar");
}

#[test]
fn nothing_is_permitted_without_a_policy() {
    // An empty policy set denies everything, for every role.
    let e = Engine::from_sources(SCHEMA, &[]).expect("empty set loads");
    let w = World::new();
    for role in Role::ALL {
        let s = w.member(*role, Some(w.ops));
        let d = w.doc(&s, "draft", None);
        for a in Action::ALL.iter().filter(|a| a.kind() == ResourceKind::Document) {
            assert!(e.decide(&s, *a, &Resource::Document(&d)).is_err(), "{role:?} {a}");
        }
    }
}

#[test]
fn approval_levels_go_to_their_roles_and_departments() {
    let e = engine();
    let w = World::new();
    let raiser = w.member(Role::Staff, Some(w.ops));
    let hod_ops = w.member(Role::Hod, Some(w.ops));
    let hod_sales = w.member(Role::Hod, Some(w.sales));
    let fin = w.member(Role::Finance, None);
    let md = w.member(Role::Md, None);
    let admin = w.member(Role::Admin, None);

    let at_hod = w.doc(&raiser, "submitted", Some(Level::Hod));
    let p = e.decide(&hod_ops, Action::DocumentApprove, &Resource::Document(&at_hod)).expect("HOD of ops approves");
    assert_eq!(p.policies(), ["decide-hod-level"]);
    assert!(p.require(Action::DocumentApprove, at_hod.id).is_ok());
    assert!(p.require(Action::DocumentReject, at_hod.id).is_err(), "a permit is for one action");
    assert!(p.require(Action::DocumentApprove, Uuid::now_v7()).is_err(), "and one resource");
    // A head of another department, finance, the MD and admins cannot decide the HOD level.
    for s in [&hod_sales, &fin, &md, &admin] {
        assert!(e.decide(s, Action::DocumentApprove, &Resource::Document(&at_hod)).is_err(), "{:?}", s.role);
    }

    let at_fin = w.doc(&raiser, "hod_approved", Some(Level::Finance));
    assert!(e.decide(&fin, Action::DocumentApprove, &Resource::Document(&at_fin)).is_ok());
    assert!(e.decide(&hod_ops, Action::DocumentApprove, &Resource::Document(&at_fin)).is_err());
    assert!(e.decide(&md, Action::DocumentApprove, &Resource::Document(&at_fin)).is_err());

    let at_md = w.doc(&raiser, "finance_approved", Some(Level::Md));
    assert!(e.decide(&md, Action::DocumentApprove, &Resource::Document(&at_md)).is_ok());
    assert!(e.decide(&fin, Action::DocumentApprove, &Resource::Document(&at_md)).is_err());

    // A document not waiting for a decision cannot be approved by anyone.
    let draft = w.doc(&raiser, "draft", None);
    for s in [&hod_ops, &fin, &md, &admin, &raiser] {
        assert!(e.decide(s, Action::DocumentApprove, &Resource::Document(&draft)).is_err());
    }
}

#[test]
fn separation_of_duties_is_a_forbid_that_beats_any_permit() {
    let e = engine();
    let w = World::new();
    // A head of department raises a voucher in their own department: they may not approve it.
    let hod = w.member(Role::Hod, Some(w.ops));
    let own = w.doc(&hod, "submitted", Some(Level::Hod));
    let d = e.decide(&hod, Action::DocumentApprove, &Resource::Document(&own)).expect_err("own document");
    assert_eq!(d.forbidden_by, ["sod-raiser-never-decides"]);
    assert!(e.decide(&hod, Action::DocumentReject, &Resource::Document(&own)).is_err());

    // Someone who approved one level cannot approve another (a HOD who is also finance, say).
    let raiser = w.member(Role::Staff, Some(w.ops));
    let fin = w.member(Role::Finance, None);
    let mut at_fin = w.doc(&raiser, "hod_approved", Some(Level::Finance));
    at_fin.approvers.push(fin.user);
    let d = e.decide(&fin, Action::DocumentApprove, &Resource::Document(&at_fin)).expect_err("second level");
    assert_eq!(d.forbidden_by, ["sod-one-level-per-person"]);

    // Finance never marks their own document paid.
    let own_fin = w.doc(&fin, "approved", None);
    assert!(e.decide(&fin, Action::DocumentMarkPaid, &Resource::Document(&own_fin)).is_err());
    let other = w.doc(&raiser, "approved", None);
    assert!(e.decide(&fin, Action::DocumentMarkPaid, &Resource::Document(&other)).is_ok());
}

#[test]
fn auditors_read_everything_and_change_nothing() {
    let e = engine();
    let w = World::new();
    let auditor = w.member(Role::Auditor, Some(w.ops));
    let raiser = w.member(Role::Staff, Some(w.ops));
    let doc = w.doc(&raiser, "submitted", Some(Level::Hod));
    assert!(e.decide(&auditor, Action::DocumentRead, &Resource::Document(&doc)).is_ok());
    assert!(e.decide(&auditor, Action::AuditRead, &Resource::Organisation { tenant: w.tenant }).is_ok());
    // Even a document the auditor "raised" (impossible in practice) stays read-only.
    let theirs = w.doc(&auditor, "draft", None);
    for a in [
        Action::DocumentCreate,
        Action::DocumentSubmit,
        Action::DocumentAmend,
        Action::DocumentCancel,
        Action::DocumentEdit,
    ] {
        let d = e.decide(&auditor, a, &Resource::Document(&theirs)).expect_err("auditor writes");
        assert_eq!(d.forbidden_by, ["auditor-read-only"], "{a}");
    }
    let period = Resource::Period { tenant: w.tenant, id: Uuid::now_v7(), status: "open", reason: "x" };
    assert!(e.decide(&auditor, Action::PeriodRead, &period).is_ok());
    assert!(e.decide(&auditor, Action::PeriodClose, &period).is_err());
    assert!(e.decide(&auditor, Action::MembersManage, &Resource::Organisation { tenant: w.tenant }).is_err());
}

#[test]
fn nothing_crosses_organisations() {
    let e = engine();
    let w = World::new();
    let other = World::new();
    let admin = w.member(Role::Admin, None);
    let fin = w.member(Role::Finance, None);
    let raiser = other.member(Role::Staff, Some(other.ops));
    let foreign = other.doc(&raiser, "hod_approved", Some(Level::Finance));
    for (s, a) in [(&fin, Action::DocumentApprove), (&fin, Action::DocumentRead), (&admin, Action::DocumentRead)] {
        let d = e.decide(s, a, &Resource::Document(&foreign)).expect_err("cross-tenant");
        assert_eq!(d.forbidden_by, ["tenant-wall"]);
    }
    let d = e
        .decide(&admin, Action::MembersManage, &Resource::Organisation { tenant: other.tenant })
        .expect_err("other org");
    assert_eq!(d.forbidden_by, ["tenant-wall"]);
}

#[test]
fn raising_reading_and_periods() {
    let e = engine();
    let w = World::new();
    let staff = w.member(Role::Staff, Some(w.ops));
    let staff_sales = w.member(Role::Staff, Some(w.sales));
    let no_dept = w.member(Role::Staff, None);
    let vendor = w.member(Role::Vendor, Some(w.ops));
    let doc = w.doc(&staff, "draft", None);
    assert!(e.decide(&staff, Action::DocumentCreate, &Resource::Document(&doc)).is_ok());
    assert!(e.decide(&staff, Action::DocumentSubmit, &Resource::Document(&doc)).is_ok());
    // Raising in another department, or in someone else's name, or without a department: no.
    let sales_doc = DocumentFacts { department: w.sales, ..w.doc(&staff_sales, "draft", None) };
    assert!(e.decide(&staff_sales, Action::DocumentCreate, &Resource::Document(&sales_doc)).is_ok());
    let mine_in_sales = DocumentFacts { department: w.sales, ..w.doc(&staff, "draft", None) };
    assert!(e.decide(&staff, Action::DocumentCreate, &Resource::Document(&mine_in_sales)).is_err());
    assert!(e.decide(&staff, Action::DocumentCreate, &Resource::Document(&sales_doc)).is_err());
    assert!(e.decide(&no_dept, Action::DocumentCreate, &Resource::Document(&w.doc(&no_dept, "draft", None))).is_err());
    // Others' documents are invisible to staff and to external roles.
    assert!(e.decide(&staff_sales, Action::DocumentRead, &Resource::Document(&doc)).is_err());
    assert!(e.decide(&staff_sales, Action::DocumentSubmit, &Resource::Document(&doc)).is_err());
    assert!(e.decide(&vendor, Action::DocumentRead, &Resource::Document(&doc)).is_err());
    // The HOD reads their department only.
    let hod_sales = w.member(Role::Hod, Some(w.sales));
    assert!(e.decide(&hod_sales, Action::DocumentRead, &Resource::Document(&doc)).is_err());
    assert!(e.decide(&hod_sales, Action::DocumentRead, &Resource::Document(&sales_doc)).is_ok());

    let fin = w.member(Role::Finance, None);
    // Only the raiser edits: not the HOD who reads it, not finance or the owner who read
    // everything.
    assert!(e.decide(&staff, Action::DocumentEdit, &Resource::Document(&doc)).is_ok());
    let hod = w.member(Role::Hod, Some(w.ops));
    let owner = w.member(Role::Owner, None);
    for other in [&hod, &fin, &owner, &staff_sales] {
        let d = e.decide(other, Action::DocumentEdit, &Resource::Document(&doc)).expect_err("not the raiser");
        assert_eq!(d.action, Action::DocumentEdit);
    }
    let md = w.member(Role::Md, None);
    let id = Uuid::now_v7();
    let period = |reason| Resource::Period { tenant: w.tenant, id, status: "closed", reason };
    assert!(e.decide(&fin, Action::PeriodClose, &period("")).is_ok());
    assert!(e.decide(&fin, Action::PeriodReopen, &period("late invoice")).is_err(), "finance cannot reopen");
    assert!(e.decide(&md, Action::PeriodReopen, &period("  ")).is_err(), "reopening needs a reason");
    assert!(e.decide(&md, Action::PeriodReopen, &period("late invoice")).is_ok());
    // Asking about a period with a document action is malformed: denied, never an error path.
    assert!(e.decide(&md, Action::DocumentRead, &period("x")).is_err());
}

/// The schema with `from` replaced by `to` (which must occur).
fn schema_with(from: &str, to: &str) -> String {
    assert!(SCHEMA.contains(from), "{from}");
    SCHEMA.replacen(from, to, 1)
}

#[test]
fn every_question_shape_is_proven_against_the_schema_at_load() {
    // Decisions do not validate their entities and request against the schema; instead loading
    // builds every shape of question for every action and validates each one strictly.
    let e = engine();
    let checked = e.check_question_shapes().expect("shipped questions conform");
    assert!(checked >= Action::ALL.len(), "{checked}");

    // If the schema and the questions drift apart, the engine refuses to start rather than
    // evaluate questions the schema would refuse.
    let drifted = [
        // The user gains a required attribute the engine does not send.
        schema_with("role: String,", "role: String,\n    email: String,"),
        // An attribute changes type.
        schema_with("amount_minor: Long,", "amount_minor: String,"),
        // A context gains a field.
        schema_with(
            "type DocumentContext = { level: String };",
            "type DocumentContext = { level: String, channel: String };",
        ),
        schema_with("context: { reason: String }", "context: { reason: String, note: String }"),
        // Organisation actions start taking a context.
        schema_with(
            "appliesTo { principal: [User], resource: [Organisation] };",
            "appliesTo { principal: [User], resource: [Organisation], context: { why: String } };",
        ),
    ];
    for schema in &drifted {
        let result = Engine::from_sources(schema, POLICY_FILES);
        assert!(matches!(result, Err(LoadError::Question(_))), "{result:?}\n{schema}");
    }

    // Evaluation without the schema's action entities is only sound for a flat action hierarchy.
    let grouped =
        schema_with("\"departments.read\"\n    appliesTo", "\"departments.read\" in [\"org\"]\n    appliesTo")
            .replacen("namespace Countersign {", "namespace Countersign {\n  action \"org\";", 1);
    let Err(LoadError::Schema(message)) = Engine::from_sources(&grouped, POLICY_FILES) else {
        panic!("action groups accepted")
    };
    assert!(message.contains("action groups"), "{message}");
}

#[test]
fn malformed_questions_are_denied_without_per_call_validation() {
    let e = engine();
    let w = World::new();
    let fin = w.member(Role::Finance, None);
    let raiser = w.member(Role::Staff, Some(w.ops));
    let doc = w.doc(&raiser, "hod_approved", Some(Level::Finance));
    let period = Resource::Period { tenant: w.tenant, id: Uuid::now_v7(), status: "open", reason: "x" };
    let org = Resource::Organisation { tenant: w.tenant };

    // Every action asked about a resource of the wrong kind: denied before Cedar is asked.
    for action in Action::ALL {
        for resource in [Resource::Document(&doc), period.clone(), org.clone()] {
            if resource.kind() != action.kind() {
                let d = e.decide(&fin, *action, &resource).expect_err("wrong kind");
                assert!(d.forbidden_by.is_empty(), "{action}");
            }
        }
    }

    // A question that lacks attributes (which per-call validation used to refuse) is denied: a
    // policy reading a missing attribute errors, and any error denies.
    let allowed = e.question(&fin, Action::DocumentApprove, &Resource::Document(&doc)).expect("question");
    assert_eq!(e.evaluate(Action::DocumentApprove, allowed.clone()).0, Decision::Allow);
    assert!(e.validate_question(&allowed).is_ok());
    for bare in [allowed.principal.clone(), allowed.resource.clone()] {
        let mut q = allowed.clone();
        for en in &mut q.entities {
            if en.uid() == bare {
                *en = Entity::with_uid(bare.clone());
            }
        }
        assert!(e.validate_question(&q).is_err(), "validation refuses {bare} without attributes");
        assert_eq!(e.evaluate(Action::DocumentApprove, q).0, Decision::Deny, "{bare} without attributes");
    }
    // The asking user or the resource missing altogether.
    for missing in [allowed.principal.clone(), allowed.resource.clone()] {
        let mut q = allowed.clone();
        q.entities.retain(|en| en.uid() != missing);
        assert_eq!(e.evaluate(Action::DocumentApprove, q).0, Decision::Deny, "{missing} missing");
    }
    // A context without the level.
    let mut q = allowed.clone();
    q.context = Context::empty();
    assert!(e.validate_question(&q).is_err());
    assert_eq!(e.evaluate(Action::DocumentApprove, q).0, Decision::Deny);
}

/// The shipped policies as written, under the ids the engine gives them (`file:@id`).
fn shipped_policies() -> PolicySet {
    let mut all = PolicySet::new();
    for (file, text) in POLICY_FILES {
        for p in PolicySet::from_str(text).expect("parses").policies() {
            let id = format!("{file}:{}", p.annotation("id").expect("@id"));
            all.add(p.new_id(PolicyId::new(id))).expect("unique ids");
        }
    }
    all
}

/// The question as the engine used to build it: users a document refers to (other than the asker)
/// were entities in the store, with the document's tenant and empty role and department.
fn with_referenced_users(e: &Engine, subject: &Subject, resource: &Resource<'_>, mut question: Question) -> Question {
    if let Resource::Document(d) = resource {
        let mut seen = Vec::new();
        for u in std::iter::once(d.raiser).chain(d.approvers.iter().copied()) {
            if u != subject.user && !seen.contains(&u) {
                seen.push(u);
                let uid = e.uid(&e.types.user, u);
                question.entities.push(user_entity(uid, uuid_string(d.tenant), "", String::new()).expect("entity"));
            }
        }
    }
    question
}

/// Cedar's answer the slow way: the whole policy set, entities and request validated against the
/// schema on the call (with the schema's action entities in the store).
fn validated_answer(e: &Engine, all: &PolicySet, question: Question) -> (Decision, Vec<String>) {
    let entities = Entities::from_entities(question.entities, Some(&e.schema)).expect("entities conform");
    let request = cedar_policy::Request::new(
        question.principal,
        question.action,
        question.resource,
        question.context,
        Some(&e.schema),
    )
    .expect("request conforms");
    let response = Authorizer::new().is_authorized(&request, all, &entities);
    assert!(response.diagnostics().errors().next().is_none());
    let mut reasons: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
    reasons.sort();
    (response.decision(), reasons)
}

#[test]
fn answers_match_cedar_with_per_call_validation_and_every_policy() {
    // The fast path (the action's slice, no per-call validation, no action entities, no entities
    // for the users a document refers to) gives the same decision for the same reasons as
    // validating every call against the full policy set, with those users in the store.
    let e = engine();
    let all = shipped_policies();
    assert_eq!(all.policies().count(), e.policy_count());

    let w = World::new();
    let other = World::new();
    let mut subjects = Vec::new();
    for role in Role::ALL {
        for department in [Some(w.ops), Some(w.sales), None] {
            subjects.push(w.member(*role, department));
        }
    }
    subjects.push(other.member(Role::Admin, None));
    let raiser = w.member(Role::Staff, Some(w.ops));
    let mut compared = 0;
    for s in &subjects {
        let mut docs = Vec::new();
        for level in [None, Some(Level::Hod), Some(Level::Finance), Some(Level::Md)] {
            for by in [s, &raiser] {
                let mut d = w.doc(by, "submitted", level);
                docs.push(d.clone());
                d.approvers.push(s.user);
                docs.push(d);
            }
        }
        let mut resources: Vec<Resource<'_>> = docs.iter().map(Resource::Document).collect();
        for reason in ["", "late invoice"] {
            resources.push(Resource::Period { tenant: w.tenant, id: Uuid::now_v7(), status: "closed", reason });
        }
        resources.push(Resource::Organisation { tenant: w.tenant });
        resources.push(Resource::Organisation { tenant: other.tenant });
        for action in Action::ALL {
            for r in resources.iter().filter(|r| r.kind() == action.kind()) {
                let question = e.question(s, *action, r).expect("question");
                let (decision, reasons) = e.evaluate(*action, question.clone());
                let mut reasons: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                reasons.sort();
                let reference = validated_answer(&e, &all, with_referenced_users(&e, s, r, question));
                assert_eq!((decision, reasons), reference, "{:?} {action} {r:?}", s.role);
                assert_eq!(e.decide(s, *action, r).is_ok(), decision == Decision::Allow);
                compared += 1;
            }
        }
    }
    assert!(compared > 1000, "{compared}");
}

#[test]
fn users_a_document_refers_to_are_references_not_entities() {
    // The raiser and approvers are compared with the principal, never read. A policy that read
    // them would find no entity: it errors, and the decision is denied rather than evaluated
    // against made-up attributes.
    let reads_raiser = r#"@id("raiser-role") permit (principal, action == Countersign::Action::"document.read", resource)
                          when { resource.raiser.role == "staff" };"#;
    let e = Engine::from_sources(SCHEMA, &[("r.cedar", reads_raiser)]).expect("validates");
    let w = World::new();
    let reader = w.member(Role::Staff, Some(w.ops));
    let raiser = w.member(Role::Staff, Some(w.ops));
    let doc = w.doc(&raiser, "draft", None);
    let d = e.decide(&reader, Action::DocumentRead, &Resource::Document(&doc)).expect_err("raiser not in the store");
    assert!(d.forbidden_by.is_empty());
    // The asker's own document: the raiser is the principal, whose attributes are sent.
    let own = w.doc(&reader, "draft", None);
    let p = e.decide(&reader, Action::DocumentRead, &Resource::Document(&own)).expect("raiser is the principal");
    assert_eq!(p.policies(), ["raiser-role"]);
}

/// The roles each shipped policy is left to (by `@id`); a policy not listed is in every role's slice.
const ROLE_SLICED: &[(&str, &[&str])] = &[
    ("read-organisation-wide", &["owner", "admin", "finance", "md", "auditor"]),
    ("read-own-department", &["hod"]),
    ("raise-in-own-department", &["staff", "hod"]),
    ("raise-anywhere", &["finance", "md", "owner", "admin"]),
    ("decide-hod-level", &["hod"]),
    ("decide-finance-level", &["finance"]),
    ("decide-md-level", &["md"]),
    ("finance-pays", &["finance"]),
    ("periods-read", &["finance", "md", "owner", "admin", "auditor"]),
    ("finance-opens-and-closes-periods", &["finance"]),
    ("md-reopens-with-reason", &["md"]),
    ("auditor-read-only", &["auditor"]),
    ("org-admins", &["owner", "admin"]),
    ("auditors-read-audit-and-members", &["auditor"]),
    ("members-read-departments", &["owner", "admin", "staff", "hod", "finance", "md", "auditor"]),
    ("attachment-read-by-members", &["owner", "admin", "staff", "hod", "finance", "md", "auditor"]),
    ("attachment-read-by-flag", &["vendor", "client", "partner"]),
    ("attachment-outsiders-change-nothing", &["vendor", "client", "partner", "agent"]),
    ("partners-never-decide", &["partner_admin", "partner_agent"]),
    ("vendor-runs-programme", &["owner", "admin", "channel_manager"]),
    ("partner-people-invited", &["owner", "admin", "channel_manager", "partner_admin"]),
    ("partners-work-their-own", &["partner_admin", "partner_agent"]),
    ("opportunities-by-programme-people", &["owner", "admin", "channel_manager", "partner_admin", "partner_agent"]),
    ("finance-reads-commissions", &["finance"]),
    ("vendor-configures-commission-plans", &["owner", "admin", "channel_manager"]),
    ("partners-dispute-commissions", &["partner_admin", "partner_agent"]),
    ("finance-settles-commissions", &["finance", "owner", "admin"]),
    ("partners-never-settle-commissions", &["partner_admin", "partner_agent"]),
    ("programme-people-read-mdf", &["owner", "admin", "channel_manager", "finance", "partner_admin", "partner_agent"]),
    ("vendor-sets-mdf-budgets", &["owner", "admin", "channel_manager"]),
    ("partners-request-and-claim-mdf", &["partner_admin", "partner_agent"]),
    ("channel-decides-mdf-requests", &["channel_manager", "owner", "admin"]),
    ("finance-settles-mdf-claims", &["finance", "owner", "admin"]),
    ("partners-never-decide-mdf", &["partner_admin", "partner_agent"]),
    ("partner-invitations-kept-by-inviters", &["owner", "admin", "channel_manager", "partner_admin"]),
    ("relations-read-by-members", &["owner", "admin", "finance", "md", "hod", "staff", "auditor"]),
    ("relations-managed-by-finance-and-admins", &["owner", "admin", "finance"]),
    ("portal-used-by-relations", &["vendor", "client"]),
    ("relation-reads-what-is-addressed-to-it", &["vendor", "client"]),
    ("relation-contributes-to-what-is-addressed-to-it", &["vendor", "client"]),
    ("members-ask-relations", &["owner", "admin", "finance", "md", "hod", "staff"]),
    ("relation-answers-what-is-asked-of-it", &["vendor", "client"]),
    ("outsiders-never-ask", &["vendor", "client", "partner", "partner_admin", "partner_agent", "agent"]),
];

#[test]
fn slices_hold_the_policies_that_can_apply_with_only_the_action_scope_narrowed() {
    let e = engine();
    let all = shipped_policies();
    let without_action = |p: &Policy| {
        let mut json = p.to_json().expect("json");
        json.as_object_mut().expect("object").remove("action");
        json
    };
    for (action, role) in Action::ALL.iter().flat_map(|a| Role::ALL.iter().map(move |r| (a, r))) {
        let uid = &e.actions[action];
        let slice = &e.slices[&(*action, *role)];
        for original in all.policies() {
            let name = original.annotation("id").expect("@id");
            let for_role =
                ROLE_SLICED.iter().find(|(n, _)| *n == name).is_none_or(|(_, roles)| roles.contains(&role.as_str()));
            let applies = for_role
                && match original.action_constraint() {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(a) => a == *uid,
                    ActionConstraint::In(list) => list.contains(uid),
                };
            let Some(p) = slice.policy(original.id()) else {
                assert!(!applies, "{action} by {role}: {} missing", original.id());
                continue;
            };
            assert!(applies, "{action} by {role}: {} should not be in the slice", original.id());
            assert_eq!(without_action(p), without_action(original), "{action}: {}", original.id());
            assert_eq!(p.annotation("id"), original.annotation("id"));
            let expected = match original.action_constraint() {
                ActionConstraint::In(_) => ActionConstraint::Eq(uid.clone()),
                other => other,
            };
            assert_eq!(p.action_constraint(), expected, "{action}: {}", original.id());
        }
    }
}

#[test]
fn only_a_leading_role_test_leaves_a_policy_out_of_other_roles_slices() {
    let roles = |condition: &str| {
        let text =
            format!(r#"permit (principal, action == Countersign::Action::"document.read", resource) {condition};"#);
        roles_tested_first(&Policy::from_str(&text).expect("parses")).expect("json")
    };
    let some = |r: &[&str]| Some(r.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    assert_eq!(roles(r#"when { principal.role == "hod" }"#), some(&["hod"]));
    assert_eq!(roles(r#"when { "hod" == principal.role && context.level == "hod" }"#), some(&["hod"]));
    assert_eq!(
        roles(r#"when { ["md", "finance"].contains(principal.role) && resource.raiser == principal }"#),
        some(&["md", "finance"])
    );
    assert_eq!(
        roles(
            r#"when { principal.role == "md" && context.level == "md" && resource.raiser != principal } unless { false }"#
        ),
        some(&["md"])
    );
    // Not first, not a conjunct, not a literal, not the principal's role, not a `when`: every slice.
    for condition in [
        r#"when { resource.raiser.role == "staff" && principal.role == "hod" }"#,
        r#"when { principal.role == "hod" || principal.role == "md" }"#,
        r#"when { principal.role == principal.department }"#,
        r#"when { resource.kind == "hod" }"#,
        r#"when { !(principal.role == "hod") }"#,
        r#"when { principal.role != "hod" }"#,
        r#"when { [principal.department].contains(principal.role) }"#,
        r#"unless { principal.role == "hod" }"#,
        r#"unless { principal.role == "hod" } when { principal.role == "hod" }"#,
        "",
    ] {
        assert_eq!(roles(condition), None, "{condition}");
    }

    // A policy whose first conjunct errors (the raiser is a reference, not an entity) still
    // errors, and so denies, for every role: it is in every slice.
    let errs_first = r#"@id("e") permit (principal, action == Countersign::Action::"document.read", resource)
                        when { resource.raiser.role == "staff" && principal.role == "hod" };
                        @id("finance-reads") permit (principal, action == Countersign::Action::"document.read", resource)
                        when { principal.role == "finance" };"#;
    let e = Engine::from_sources(SCHEMA, &[("e.cedar", errs_first)]).expect("validates");
    let w = World::new();
    let raiser = w.member(Role::Staff, Some(w.ops));
    let doc = w.doc(&raiser, "draft", None);
    for role in Role::ALL {
        assert!(e.slices[&(Action::DocumentRead, *role)].policy(&PolicyId::new("e.cedar:e")).is_some(), "{role}");
        let d = e.decide(&w.member(*role, Some(w.ops)), Action::DocumentRead, &Resource::Document(&doc));
        assert!(d.is_err(), "{role}: the erroring policy denies");
    }
}

#[test]
fn attachments_follow_their_document_and_their_visibility_flag() {
    let e = engine();
    let w = World::new();
    let raiser = w.member(Role::Staff, Some(w.ops));
    let file = |visibility: Visibility, readable: bool| AttachmentFacts {
        tenant: w.tenant,
        id: Uuid::now_v7(),
        visibility,
        uploader: raiser.user,
        document_raiser: raiser.user,
        document_readable: readable,
    };
    let may = |s: &Subject, a: Action, f: &AttachmentFacts| e.decide(s, a, &Resource::Attachment(f)).is_ok();
    // Members: every attachment of a document they may read, none of one they may not.
    for role in [Role::Owner, Role::Admin, Role::Staff, Role::Hod, Role::Finance, Role::Md, Role::Auditor] {
        let m = w.member(role, Some(w.ops));
        for v in Visibility::ALL {
            assert!(may(&m, Action::AttachmentRead, &file(*v, true)), "{role} {v:?}");
            assert!(!may(&m, Action::AttachmentRead, &file(*v, false)), "{role} {v:?} without the document");
        }
    }
    // Outside parties: only what is flagged for their kind, never internal, never changing it.
    for (role, flag) in
        [(Role::Vendor, Visibility::Vendor), (Role::Client, Visibility::Client), (Role::Partner, Visibility::Partner)]
    {
        let o = w.member(role, None);
        for v in Visibility::ALL {
            assert_eq!(may(&o, Action::AttachmentRead, &file(*v, true)), *v == flag, "{role} {v:?}");
        }
        assert!(!may(&o, Action::AttachmentShare, &file(flag, true)));
        assert!(!may(&o, Action::AttachmentRemove, &file(flag, true)));
    }
    assert!(!may(&w.member(Role::Agent, None), Action::AttachmentRead, &file(Visibility::Vendor, true)));
    // Sharing: the raiser, finance, owners and admins; removing: uploader, raiser, owners, admins.
    assert!(may(&raiser, Action::AttachmentShare, &file(Visibility::Internal, true)));
    assert!(!may(&w.member(Role::Hod, Some(w.ops)), Action::AttachmentShare, &file(Visibility::Internal, true)));
    assert!(may(&w.member(Role::Finance, None), Action::AttachmentShare, &file(Visibility::Internal, true)));
    assert!(!may(&w.member(Role::Finance, None), Action::AttachmentRemove, &file(Visibility::Internal, true)));
    assert!(may(&w.member(Role::Admin, None), Action::AttachmentRemove, &file(Visibility::Internal, true)));
    assert!(!may(&w.member(Role::Auditor, None), Action::AttachmentRemove, &file(Visibility::Internal, true)));
    // Another organisation's attachment: nothing.
    let other = Subject { tenant: Uuid::now_v7(), ..w.member(Role::Owner, None) };
    assert!(!may(&other, Action::AttachmentRead, &file(Visibility::Internal, true)));
}

#[test]
fn partner_programme_permits_by_role_and_no_partner_person_decides_a_deal() {
    let e = engine();
    let w = World::new();
    let other = World::new();
    let org = Resource::Organisation { tenant: w.tenant };
    let vendor = ["owner", "admin", "channel_manager"];
    let partner = ["partner_admin", "partner_agent"];
    for role in Role::ALL {
        let s = w.member(*role, None);
        for action in [
            Action::ProgramPartnersRead,
            Action::ProgramPartnersManage,
            Action::DealRegister,
            Action::DealRead,
            Action::DealDecide,
            Action::LeadRegister,
            Action::LeadRead,
            Action::LeadExport,
        ] {
            let vendor_action =
                matches!(action, Action::ProgramPartnersRead | Action::ProgramPartnersManage | Action::DealDecide);
            let expected = vendor.contains(&role.as_str()) || (!vendor_action && partner.contains(&role.as_str()));
            let d = e.decide(&s, action, &org);
            assert_eq!(d.is_ok(), expected, "{role} {action}");
            // Never across organisations.
            let cross = e.decide(&s, action, &Resource::Organisation { tenant: other.tenant });
            assert!(cross.is_err(), "{role} {action} across organisations");
        }
    }
    let d = e.decide(&w.member(Role::PartnerAdmin, None), Action::DealDecide, &org).expect_err("denied");
    assert_eq!(d.forbidden_by, ["partners-never-decide"]);
}

#[test]
fn partner_people_are_invited_by_vendor_staff_and_partner_admins_never_by_agents() {
    let e = engine();
    let w = World::new();
    let other = World::new();
    let org = Resource::Organisation { tenant: w.tenant };
    for role in Role::ALL {
        let s = w.member(*role, None);
        let expected = ["owner", "admin", "channel_manager", "partner_admin"].contains(&role.as_str());
        assert_eq!(e.decide(&s, Action::PartnerInvite, &org).is_ok(), expected, "{role}");
        let cross = Resource::Organisation { tenant: other.tenant };
        assert!(e.decide(&s, Action::PartnerInvite, &cross).is_err(), "{role} across organisations");
    }
}

#[test]
fn partner_invitations_are_listed_and_revoked_by_those_who_invite_never_by_agents_nor_across_organisations() {
    let e = engine();
    let w = World::new();
    let other = World::new();
    let org = Resource::Organisation { tenant: w.tenant };
    let cross = Resource::Organisation { tenant: other.tenant };
    for role in Role::ALL {
        let s = w.member(*role, None);
        let expected = ["owner", "admin", "channel_manager", "partner_admin"].contains(&role.as_str());
        for action in [Action::PartnerInvitationsRead, Action::PartnerInvitationRevoke] {
            assert_eq!(e.decide(&s, action, &org).is_ok(), expected, "{role} {action}");
            assert!(e.decide(&s, action, &cross).is_err(), "{role} {action} across organisations");
        }
    }
}

#[test]
fn commissions_are_settled_by_finance_never_by_their_closer_nor_a_partner_nor_a_channel_manager() {
    let e = engine();
    let w = World::new();
    let other = World::new();
    let org = Resource::Organisation { tenant: w.tenant };
    let settle = [Action::CommissionApprove, Action::CommissionPay, Action::CommissionResolve];
    for role in Role::ALL {
        let s = w.member(*role, None);
        // Closed by someone else.
        let c =
            CommissionFacts { tenant: w.tenant, id: Uuid::now_v7(), partner: Uuid::now_v7(), closer: Uuid::now_v7() };
        for action in settle {
            let expected = ["finance", "owner", "admin"].contains(&role.as_str());
            assert_eq!(e.decide(&s, action, &Resource::Commission(&c)).is_ok(), expected, "{role} {action}");
            let cross = CommissionFacts { tenant: other.tenant, ..c };
            assert!(e.decide(&s, action, &Resource::Commission(&cross)).is_err(), "{role} {action} across");
        }
        // Closed by the asker: never approved nor resolved by them, paying is another step.
        let own = CommissionFacts { closer: s.user, ..c };
        for action in [Action::CommissionApprove, Action::CommissionResolve] {
            let d = e.decide(&s, action, &Resource::Commission(&own)).expect_err("closer");
            assert!(d.forbidden_by.contains(&"closer-never-approves-commission".to_owned()), "{role} {action}");
        }
        let dispute = e.decide(&s, Action::CommissionDispute, &org).is_ok();
        assert_eq!(dispute, ["partner_admin", "partner_agent"].contains(&role.as_str()), "{role} dispute");
        let manage = e.decide(&s, Action::CommissionPlanManage, &org).is_ok();
        assert_eq!(manage, ["owner", "admin", "channel_manager"].contains(&role.as_str()), "{role} plans");
        let read = e.decide(&s, Action::CommissionRead, &org).is_ok();
        let readers = ["owner", "admin", "channel_manager", "finance", "partner_admin", "partner_agent"];
        assert_eq!(read, readers.contains(&role.as_str()), "{role} read");
    }
    let partner = w.member(Role::PartnerAdmin, None);
    let c = CommissionFacts { tenant: w.tenant, id: Uuid::now_v7(), partner: Uuid::now_v7(), closer: Uuid::now_v7() };
    let d = e.decide(&partner, Action::CommissionApprove, &Resource::Commission(&c)).expect_err("partner");
    assert_eq!(d.forbidden_by, ["partners-never-settle-commissions"]);
}

#[test]
fn mdf_requests_are_decided_by_channel_managers_claims_by_finance_never_by_their_filer_nor_a_partner() {
    let e = engine();
    let w = World::new();
    let other = World::new();
    let org = Resource::Organisation { tenant: w.tenant };
    for role in Role::ALL {
        let s = w.member(*role, None);
        let item = MdfFacts { tenant: w.tenant, id: Uuid::now_v7(), partner: Uuid::now_v7(), filer: Uuid::now_v7() };
        let r = role.as_str();
        for (action, deciders) in [
            (Action::MdfRequestDecide, ["channel_manager", "owner", "admin"]),
            (Action::MdfClaimDecide, ["finance", "owner", "admin"]),
            (Action::MdfClaimPay, ["finance", "owner", "admin"]),
        ] {
            assert_eq!(e.decide(&s, action, &Resource::Mdf(&item)).is_ok(), deciders.contains(&r), "{role} {action}");
            let cross = MdfFacts { tenant: other.tenant, ..item };
            assert!(e.decide(&s, action, &Resource::Mdf(&cross)).is_err(), "{role} {action} across");
            // Filed by the asker: never theirs to decide or pay, whatever the role.
            let own = MdfFacts { filer: s.user, ..item };
            let d = e.decide(&s, action, &Resource::Mdf(&own)).expect_err("filer");
            assert!(d.forbidden_by.contains(&"filer-never-decides-mdf".to_owned()), "{role} {action}");
        }
        let partner = ["partner_admin", "partner_agent"].contains(&r);
        assert_eq!(e.decide(&s, Action::MdfRequest, &org).is_ok(), partner, "{role} request");
        assert_eq!(e.decide(&s, Action::MdfClaim, &org).is_ok(), partner, "{role} claim");
        let managers = ["owner", "admin", "channel_manager"];
        assert_eq!(e.decide(&s, Action::MdfBudgetManage, &org).is_ok(), managers.contains(&r), "{role} budgets");
        let readers = ["owner", "admin", "channel_manager", "finance", "partner_admin", "partner_agent"];
        assert_eq!(e.decide(&s, Action::MdfRead, &org).is_ok(), readers.contains(&r), "{role} read");
    }
    let partner = w.member(Role::PartnerAdmin, None);
    let item = MdfFacts { tenant: w.tenant, id: Uuid::now_v7(), partner: Uuid::now_v7(), filer: Uuid::now_v7() };
    let d = e.decide(&partner, Action::MdfRequestDecide, &Resource::Mdf(&item)).expect_err("partner");
    assert_eq!(d.forbidden_by, ["partners-never-decide-mdf"]);
}
