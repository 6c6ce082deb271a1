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
    for a in [Action::DocumentCreate, Action::DocumentSubmit, Action::DocumentAmend, Action::DocumentCancel] {
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
