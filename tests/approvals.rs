//! Vouchers in the database, attacked: the approval chain with MD escalation, separation of
//! duties, stale versions, closed fiscal periods, other organisations' documents, and the audit
//! trail each transition leaves.

mod common;

use approvals::documents::{self, ApprovalError, Kind, Member, NewDocument, NewLine};
use approvals::{Status, Transition};
use audit::Origin;
use authz::Engine;
use chrono::NaiveDate;
use common::{member, org};
use identity::Role;
use store::TenantId;
use store::testing::TestDb;
use uuid::Uuid;

fn date(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

async fn as_member(db: &TestDb, tenant: TenantId, user: Uuid) -> (store::TenantTx, Member) {
    let mut tx = db.store.tenant_tx(tenant).await.expect("tx");
    let m = Member::load(&mut tx, user, Origin::default()).await.expect("member");
    (tx, m)
}

fn voucher(dept: Uuid, day: &str, amounts: &[i64]) -> NewDocument {
    NewDocument {
        kind: Kind::Voucher,
        department_id: dept,
        title: "Office chairs".into(),
        document_date: date(day),
        currency: "EUR".parse().expect("EUR"),
        lines: amounts.iter().map(|a| NewLine { description: "chair".into(), amount_minor: *a }).collect(),
        attachments: Vec::new(),
    }
}

async fn step(
    db: &TestDb,
    w: &World,
    user: Uuid,
    id: Uuid,
    t: Transition,
    version: i32,
    note: Option<&str>,
) -> Result<documents::Document, ApprovalError> {
    let (mut tx, m) = as_member(db, w.tenant, user).await;
    let r = documents::transition(&mut tx, &w.engine, &m, id, t, version, note).await;
    if r.is_ok() {
        tx.commit().await.expect("commit");
    }
    r
}

async fn audit_actions(db: &TestDb, tenant: TenantId, entity: Uuid) -> Vec<(String, String)> {
    let mut admin = db.admin_conn().await;
    sqlx::query_as(
        "select action, coalesce(actor_role, '') from audit_events where tenant_id = $1 and entity_id = $2 order by seq",
    )
    .bind(tenant.as_uuid())
    .bind(entity.to_string())
    .fetch_all(&mut admin)
    .await
    .expect("audit")
}

struct World {
    engine: Engine,
    tenant: TenantId,
    dept: Uuid,
    staff: Uuid,
    hod: Uuid,
    fin: Uuid,
    md: Uuid,
    admin: Uuid,
}

async fn world(db: &TestDb) -> World {
    let a = org(db, "acme").await;
    let (t, d) = (a.id, a.department);
    World {
        engine: Engine::load().expect("policies"),
        tenant: t,
        dept: d,
        staff: member(db, t, "acme", "sara", Role::Staff, Some(d), false).await,
        hod: member(db, t, "acme", "hugo", Role::Hod, Some(d), false).await,
        fin: member(db, t, "acme", "fiona", Role::Finance, None, false).await,
        md: member(db, t, "acme", "max", Role::Md, None, false).await,
        admin: a.users[0],
    }
}

#[tokio::test]
async fn a_voucher_over_the_threshold_climbs_to_the_md_and_every_step_is_audited() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    // The organisation's MD threshold: 1,000.00 EUR.
    let (mut tx, admin) = as_member(&db, w.tenant, w.admin).await;
    documents::set_md_threshold(&mut tx, &w.engine, &admin, Some(100_000)).await.expect("threshold");
    tx.commit().await.expect("commit");

    let (mut tx, staff) = as_member(&db, w.tenant, w.staff).await;
    let doc = documents::create(&mut tx, &w.engine, &staff, &voucher(w.dept, "2026-03-10", &[60_000, 65_000]))
        .await
        .expect("create");
    tx.commit().await.expect("commit");
    assert_eq!((doc.status, doc.amount_minor, doc.version), (Status::Draft, 125_000, 1));

    let d = step(&db, &w, w.staff, doc.id, Transition::Submit, 1, None).await.expect("submit");
    let d = step(&db, &w, w.hod, d.id, Transition::Approve, d.version, None).await.expect("hod");
    let d = step(&db, &w, w.fin, d.id, Transition::Approve, d.version, None).await.expect("fin");
    // Over the threshold: finance's approval escalates to the MD instead of approving.
    assert_eq!(d.status, Status::FinanceApproved);
    let d = step(&db, &w, w.md, d.id, Transition::Approve, d.version, None).await.expect("md");
    assert_eq!(d.status, Status::Approved);
    assert_eq!(d.approvals.iter().map(|a| a.level.as_str()).collect::<Vec<_>>(), ["hod", "finance", "md"]);
    let d = step(&db, &w, w.fin, d.id, Transition::MarkPaid, d.version, None).await.expect("paid");
    assert_eq!((d.status, d.version), (Status::Paid, 6));

    let trail = audit_actions(&db, w.tenant, doc.id).await;
    let expected = [
        ("voucher.created", "staff"),
        ("voucher.submitted", "staff"),
        ("voucher.approved", "hod"),
        ("voucher.approved", "finance"),
        ("voucher.approved", "md"),
        ("voucher.paid", "finance"),
    ];
    assert_eq!(trail, expected.map(|(a, r)| (a.to_owned(), r.to_owned())));
}

#[tokio::test]
async fn separation_of_duties_stale_versions_and_unknown_transitions_are_refused() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    // The head of department raises a voucher in their own department.
    let (mut tx, hod) = as_member(&db, w.tenant, w.hod).await;
    let doc =
        documents::create(&mut tx, &w.engine, &hod, &voucher(w.dept, "2026-03-10", &[5_000])).await.expect("create");
    tx.commit().await.expect("commit");
    let d = step(&db, &w, w.hod, doc.id, Transition::Submit, 1, None).await.expect("submit");
    // They may not approve their own voucher.
    let e = step(&db, &w, w.hod, d.id, Transition::Approve, d.version, None).await.expect_err("self");
    assert!(matches!(&e, ApprovalError::Denied(d) if d.forbidden_by == ["sod-raiser-never-decides"]), "{e:?}");
    // Finance cannot skip the HOD level.
    let e = step(&db, &w, w.fin, d.id, Transition::Approve, d.version, None).await.expect_err("skip");
    assert!(matches!(e, ApprovalError::Denied(_)), "{e:?}");
    // A stale version loses: two approvers read version 2; the first wins, the second is refused.
    let staff_doc = {
        let (mut tx, staff) = as_member(&db, w.tenant, w.staff).await;
        let x =
            documents::create(&mut tx, &w.engine, &staff, &voucher(w.dept, "2026-03-11", &[7_000])).await.expect("c");
        tx.commit().await.expect("commit");
        step(&db, &w, w.staff, x.id, Transition::Submit, 1, None).await.expect("submit")
    };
    let v = staff_doc.version;
    let won = step(&db, &w, w.hod, staff_doc.id, Transition::Approve, v, None).await.expect("first");
    let e = step(&db, &w, w.hod, staff_doc.id, Transition::Reject, v, Some("too late")).await;
    assert!(matches!(e, Err(ApprovalError::Stale { current }) if current == won.version), "{e:?}");
    // A transition the state does not allow names the ones it does.
    let e = step(&db, &w, w.staff, staff_doc.id, Transition::Submit, won.version, None).await;
    let Err(ApprovalError::NotAllowed(n)) = e else { panic!("{e:?}") };
    assert_eq!(
        n.allowed,
        [Transition::Approve, Transition::Reject, Transition::Query, Transition::Amend, Transition::Cancel]
    );
    // Rejecting needs a reason.
    let e = step(&db, &w, w.fin, staff_doc.id, Transition::Reject, won.version, None).await;
    assert!(matches!(e, Err(ApprovalError::Invalid { field: "note", .. })), "{e:?}");
}

#[tokio::test]
async fn queries_go_back_to_the_raiser_and_amendments_reset_approvals() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let (mut tx, staff) = as_member(&db, w.tenant, w.staff).await;
    let doc = documents::create(&mut tx, &w.engine, &staff, &voucher(w.dept, "2026-04-01", &[9_000])).await.expect("c");
    tx.commit().await.expect("commit");
    let d = step(&db, &w, w.staff, doc.id, Transition::Submit, 1, None).await.expect("submit");
    let d = step(&db, &w, w.hod, d.id, Transition::Approve, d.version, None).await.expect("hod");
    let d = step(&db, &w, w.fin, d.id, Transition::Query, d.version, Some("Which supplier?")).await.expect("query");
    assert_eq!((d.status, d.queried_from), (Status::Queried, Some(Status::HodApproved)));
    // Only the raiser answers.
    let e = step(&db, &w, w.fin, d.id, Transition::Answer, d.version, Some("me")).await;
    assert!(e.is_err());
    let d = step(&db, &w, w.staff, d.id, Transition::Answer, d.version, Some("Chairs Ltd")).await.expect("answer");
    assert_eq!((d.status, d.approvals.len()), (Status::HodApproved, 1));
    // An amendment discards the HOD's approval: the next round starts from draft.
    let d = step(&db, &w, w.staff, d.id, Transition::Amend, d.version, Some("price changed")).await.expect("amend");
    assert_eq!((d.status, d.round, d.approvals.len()), (Status::Draft, 2, 0));
    let d = step(&db, &w, w.staff, d.id, Transition::Submit, d.version, None).await.expect("resubmit");
    let d = step(&db, &w, w.hod, d.id, Transition::Approve, d.version, None).await.expect("hod again");
    assert_eq!(d.approvals.len(), 1, "only this round's approvals count");
}

#[tokio::test]
async fn closed_periods_refuse_changes_and_reopening_needs_the_md_and_a_reason() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let (mut tx, fin) = as_member(&db, w.tenant, w.fin).await;
    let q1 = documents::open_period(&mut tx, &w.engine, &fin, "2026-Q1", date("2026-01-01"), date("2026-03-31"))
        .await
        .expect("open");
    tx.commit().await.expect("commit");
    // Overlapping periods are refused; staff cannot open periods.
    let (mut tx, fin) = as_member(&db, w.tenant, w.fin).await;
    let e = documents::open_period(&mut tx, &w.engine, &fin, "overlap", date("2026-03-01"), date("2026-04-30")).await;
    assert!(matches!(e, Err(ApprovalError::Conflict(_))), "{e:?}");
    drop(tx);
    let (mut tx, staff) = as_member(&db, w.tenant, w.staff).await;
    let e = documents::open_period(&mut tx, &w.engine, &staff, "Q2", date("2026-04-01"), date("2026-06-30")).await;
    assert!(matches!(e, Err(ApprovalError::Denied(_))), "{e:?}");
    drop(tx);

    let (mut tx, staff) = as_member(&db, w.tenant, w.staff).await;
    let doc = documents::create(&mut tx, &w.engine, &staff, &voucher(w.dept, "2026-02-14", &[1_000])).await.expect("c");
    tx.commit().await.expect("commit");
    let (mut tx, fin) = as_member(&db, w.tenant, w.fin).await;
    documents::set_period_status(&mut tx, &w.engine, &fin, q1.id, true, None).await.expect("close");
    tx.commit().await.expect("commit");
    // Nothing dated in the closed period changes; nothing new is raised in it.
    let e = step(&db, &w, w.staff, doc.id, Transition::Submit, 1, None).await;
    assert!(matches!(e, Err(ApprovalError::PeriodClosed { ref period }) if period == "2026-Q1"), "{e:?}");
    let (mut tx, staff) = as_member(&db, w.tenant, w.staff).await;
    let e = documents::create(&mut tx, &w.engine, &staff, &voucher(w.dept, "2026-03-01", &[1])).await;
    assert!(matches!(e, Err(ApprovalError::PeriodClosed { .. })), "{e:?}");
    drop(tx);
    // Finance cannot reopen; the MD cannot without a reason; with one, they can.
    let (mut tx, fin) = as_member(&db, w.tenant, w.fin).await;
    let e = documents::set_period_status(&mut tx, &w.engine, &fin, q1.id, false, Some("late invoice")).await;
    assert!(matches!(e, Err(ApprovalError::Denied(_))), "{e:?}");
    drop(tx);
    let (mut tx, md) = as_member(&db, w.tenant, w.md).await;
    let e = documents::set_period_status(&mut tx, &w.engine, &md, q1.id, false, None).await;
    assert!(matches!(e, Err(ApprovalError::Invalid { field: "reason", .. })), "{e:?}");
    documents::set_period_status(&mut tx, &w.engine, &md, q1.id, false, Some("late supplier invoice"))
        .await
        .expect("reopen");
    tx.commit().await.expect("commit");
    step(&db, &w, w.staff, doc.id, Transition::Submit, 1, None).await.expect("open again");
    let trail = audit_actions(&db, w.tenant, q1.id).await;
    let actions: Vec<&str> = trail.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["fiscal_period.opened", "fiscal_period.closed", "fiscal_period.reopened"]);
}

#[tokio::test]
async fn another_organisations_documents_do_not_exist_and_outsiders_see_nothing() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let b = org(&db, "bright").await;
    let b_fin = member(&db, b.id, "bright", "bea", Role::Finance, None, false).await;
    let (mut tx, staff) = as_member(&db, w.tenant, w.staff).await;
    let doc = documents::create(&mut tx, &w.engine, &staff, &voucher(w.dept, "2026-05-05", &[3_000])).await.expect("c");
    tx.commit().await.expect("commit");
    // From Bright's context the document does not exist (RLS): read and transition alike.
    let (mut tx, bea) = as_member(&db, b.id, b_fin).await;
    assert!(matches!(documents::get(&mut tx, &w.engine, &bea, doc.id).await, Err(ApprovalError::NotFound)));
    let e = documents::transition(&mut tx, &w.engine, &bea, doc.id, Transition::Approve, 1, None).await;
    assert!(matches!(e, Err(ApprovalError::NotFound)), "{e:?}");
    drop(tx);
    // A Bright user is not a member of Acme.
    let mut tx = db.store.tenant_tx(w.tenant).await.expect("tx");
    assert!(matches!(Member::load(&mut tx, b_fin, Origin::default()).await, Err(ApprovalError::NotFound)));
    drop(tx);
    // Within Acme, another department's staff member cannot even see it.
    let other_staff = member(&db, w.tenant, "acme", "olga", Role::Staff, None, false).await;
    let (mut tx, olga) = as_member(&db, w.tenant, other_staff).await;
    assert!(matches!(documents::get(&mut tx, &w.engine, &olga, doc.id).await, Err(ApprovalError::NotFound)));
    // Bad money is refused before anything is written.
    let mut bad = voucher(w.dept, "2026-05-05", &[-1]);
    assert!(matches!(documents::create(&mut tx, &w.engine, &olga, &bad).await, Err(ApprovalError::Money(_))));
    bad.lines.clear();
    assert!(matches!(
        documents::create(&mut tx, &w.engine, &olga, &bad).await,
        Err(ApprovalError::Invalid { field: "lines", .. })
    ));
}
