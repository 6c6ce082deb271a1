//! Vouchers in the database, attacked: the approval chain with MD escalation, separation of
//! duties, stale versions, closed fiscal periods, other organisations' documents, and the audit
//! trail each transition leaves.

mod common;

use approvals::documents::{self, ApprovalError, Kind, MdThresholds, Member, NewDocument, NewLine};
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

async fn set_thresholds(db: &TestDb, w: &World, t: &[(&str, i64)]) {
    let (mut tx, admin) = as_member(db, w.tenant, w.admin).await;
    let new = MdThresholds { thresholds: t.iter().map(|(c, m)| ((*c).to_owned(), *m)).collect() };
    documents::set_md_thresholds(&mut tx, &w.engine, &admin, &new).await.expect("thresholds");
    tx.commit().await.expect("commit");
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
    set_thresholds(&db, &w, &[("EUR", 100_000)]).await;

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

fn priced(dept: Uuid, day: &str, currency: &str, amounts: &[i64]) -> NewDocument {
    NewDocument { currency: currency.parse().expect("currency"), ..voucher(dept, day, amounts) }
}

/// Raises, submits and has the HOD and finance approve; returns where finance's approval led.
async fn through_finance(db: &TestDb, w: &World, doc: NewDocument) -> Status {
    let (mut tx, staff) = as_member(db, w.tenant, w.staff).await;
    let d = documents::create(&mut tx, &w.engine, &staff, &doc).await.expect("create");
    tx.commit().await.expect("commit");
    let d = step(db, w, w.staff, d.id, Transition::Submit, 1, None).await.expect("submit");
    let d = step(db, w, w.hod, d.id, Transition::Approve, d.version, None).await.expect("hod");
    step(db, w, w.fin, d.id, Transition::Approve, d.version, None).await.expect("finance").status
}

#[tokio::test]
async fn a_pound_voucher_under_a_euro_threshold_goes_to_the_md() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    // 10,000.00 EUR. The old single threshold compared raw minor units, so 9,000.00 GBP (900000)
    // was "below" it and skipped the MD.
    set_thresholds(&db, &w, &[("EUR", 1_000_000)]).await;
    let pounds = through_finance(&db, &w, priced(w.dept, "2026-03-10", "GBP", &[900_000])).await;
    assert_eq!(pounds, Status::FinanceApproved, "GBP has no threshold: the MD decides");
    let euros = through_finance(&db, &w, priced(w.dept, "2026-03-10", "EUR", &[900_000])).await;
    assert_eq!(euros, Status::Approved, "below the EUR threshold");
}

#[tokio::test]
async fn a_currency_without_a_threshold_goes_to_the_md_and_thresholds_read_back() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    // Nothing set: even one cent goes to the MD (fail safe).
    assert_eq!(through_finance(&db, &w, priced(w.dept, "2026-03-10", "USD", &[1])).await, Status::FinanceApproved);
    set_thresholds(&db, &w, &[("EUR", 1_000_000), ("GBP", 800_000)]).await;
    assert_eq!(through_finance(&db, &w, priced(w.dept, "2026-03-10", "GBP", &[700_000])).await, Status::Approved);
    assert_eq!(
        through_finance(&db, &w, priced(w.dept, "2026-03-10", "GBP", &[900_000])).await,
        Status::FinanceApproved
    );
    assert_eq!(through_finance(&db, &w, priced(w.dept, "2026-03-10", "JPY", &[5])).await, Status::FinanceApproved);

    // Read back (owner/admin only), exactly as set; the change is audited before -> after.
    let (mut tx, admin) = as_member(&db, w.tenant, w.admin).await;
    let back = documents::md_thresholds(&mut tx, &w.engine, &admin).await.expect("read");
    assert_eq!(back.thresholds.into_iter().collect::<Vec<_>>(), [("EUR".into(), 1_000_000), ("GBP".into(), 800_000)]);
    // Codes are ISO 4217 and amounts in range, or nothing changes.
    for bad in [("EURO", 1), ("eur", 1), ("XXX", 1), ("EUR", -1), ("EUR", 1_000_000_000_000_001)] {
        let new = MdThresholds { thresholds: [(bad.0.to_owned(), bad.1)].into_iter().collect() };
        let e = documents::set_md_thresholds(&mut tx, &w.engine, &admin, &new).await;
        assert!(matches!(e, Err(ApprovalError::Invalid { field: "thresholds", .. })), "{bad:?}: {e:?}");
    }
    drop(tx);
    let (mut tx, fin) = as_member(&db, w.tenant, w.fin).await;
    assert!(matches!(documents::md_thresholds(&mut tx, &w.engine, &fin).await, Err(ApprovalError::Denied(_))));
    let new = MdThresholds { thresholds: [("GBP".to_owned(), i64::from(i32::MAX))].into_iter().collect() };
    let e = documents::set_md_thresholds(&mut tx, &w.engine, &fin, &new).await;
    assert!(matches!(e, Err(ApprovalError::Denied(_))), "{e:?}");
    drop(tx);
    let mut admin_conn = db.admin_conn().await;
    let changes: Vec<String> = sqlx::query_scalar(
        "select changes from audit_events where tenant_id = $1 and action = 'tenant.md_thresholds_changed' order by seq",
    )
    .bind(w.tenant.as_uuid())
    .fetch_all(&mut admin_conn)
    .await
    .expect("audit");
    assert_eq!(changes.len(), 1, "refused changes leave nothing");
    let c: serde_json::Value = serde_json::from_str(&changes[0]).expect("json");
    assert_eq!(c["md_thresholds"]["from"], serde_json::json!({"CHF": 100_000_000}), "the fixture's");
    assert_eq!(c["md_thresholds"]["to"], serde_json::json!({"EUR": 1_000_000, "GBP": 800_000}));
}

/// Opens 2026-Q1 as finance; returns its id.
async fn q1(db: &TestDb, w: &World) -> Uuid {
    let (mut tx, fin) = as_member(db, w.tenant, w.fin).await;
    let p = documents::open_period(&mut tx, &w.engine, &fin, "2026-Q1", date("2026-01-01"), date("2026-03-31"))
        .await
        .expect("open");
    tx.commit().await.expect("commit");
    p.id
}

async fn close(store: store::Store, tenant: TenantId, fin: Uuid, period: Uuid) {
    let engine = Engine::load().expect("policies");
    let mut tx = store.tenant_tx(tenant).await.expect("tx");
    let m = Member::load(&mut tx, fin, Origin::default()).await.expect("member");
    documents::set_period_status(&mut tx, &engine, &m, period, true, None).await.expect("close");
    tx.commit().await.expect("commit");
}

#[tokio::test]
async fn closing_a_period_waits_for_a_document_write_in_flight() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let period = q1(&db, &w).await;
    let (mut tx, staff) = as_member(&db, w.tenant, w.staff).await;
    let doc = documents::create(&mut tx, &w.engine, &staff, &voucher(w.dept, "2026-02-14", &[1_000])).await.expect("c");
    tx.commit().await.expect("commit");

    // A change in flight: written, not yet committed (the old check had passed long before).
    let mut writer = db.store.tenant_tx(w.tenant).await.expect("tx");
    sqlx::query("update documents set title = 'changed in flight', version = version + 1 where id = $1")
        .bind(doc.id)
        .execute(writer.conn())
        .await
        .expect("write in flight");
    let closing = tokio::spawn(close(db.store.clone(), w.tenant, w.fin, period));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!closing.is_finished(), "the close must wait for the write in flight");
    writer.commit().await.expect("the write in flight commits before the close");
    tokio::time::timeout(std::time::Duration::from_secs(10), closing).await.expect("close finishes").expect("task");

    // After the close nothing dated in the period changes, however it is written.
    let mut late = db.store.tenant_tx(w.tenant).await.expect("tx");
    let e = sqlx::query("update documents set title = 'too late' where id = $1")
        .bind(doc.id)
        .execute(late.conn())
        .await
        .expect_err("refused");
    assert_eq!(common::sqlstate(&e).as_deref(), Some("CSPC1"), "{e}");
}

#[tokio::test]
async fn close_racing_approvals_commits_nothing_dated_in_the_period_after_it() {
    let db = TestDb::try_with_pool(24).await.expect("db");
    let w = world(&db).await;
    let period = q1(&db, &w).await;
    let mut docs = Vec::new();
    for i in 0..40 {
        let (mut tx, staff) = as_member(&db, w.tenant, w.staff).await;
        let day = format!("2026-03-{:02}", 1 + i % 28);
        let d = documents::create(&mut tx, &w.engine, &staff, &voucher(w.dept, &day, &[1_000])).await.expect("c");
        tx.commit().await.expect("commit");
        docs.push(step(&db, &w, w.staff, d.id, Transition::Submit, 1, None).await.expect("submit").id);
    }
    // Every approval at once, and the close while they are under way.
    let mut approvals = Vec::new();
    for (i, id) in docs.iter().copied().enumerate() {
        let (store, tenant, hod) = (db.store.clone(), w.tenant, w.hod);
        approvals.push(tokio::spawn(async move {
            let engine = Engine::load().expect("policies");
            let mut tx = store.tenant_tx(tenant).await.expect("tx");
            let m = Member::load(&mut tx, hod, Origin::default()).await.expect("member");
            let r = documents::transition(&mut tx, &engine, &m, id, Transition::Approve, 2, None).await;
            match r {
                Ok(_) => tx.commit().await.map(|()| true).map_err(|e| format!("{i}: commit {e}")),
                Err(ApprovalError::PeriodClosed { .. }) => Ok(false),
                Err(e) => Err(format!("{i}: {e:?}")),
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let closing = tokio::spawn(close(db.store.clone(), w.tenant, w.fin, period));
    let mut approved = 0;
    for a in approvals {
        if a.await.expect("task").expect("only period_closed refusals") {
            approved += 1;
        }
    }
    closing.await.expect("close");
    println!("{approved} of {} approvals committed before the close", docs.len());

    // The ledger is in commit order (each append holds the chain head until commit): every
    // approval of a document dated in the period precedes the close, and the approvals in the
    // database are exactly the ones that say so.
    let mut admin = db.admin_conn().await;
    let close_seq: i64 = sqlx::query_scalar(
        "select seq from audit_events where tenant_id = $1 and action = 'fiscal_period.closed' and entity_id = $2",
    )
    .bind(w.tenant.as_uuid())
    .bind(period.to_string())
    .fetch_one(&mut admin)
    .await
    .expect("close event");
    let ids: Vec<String> = docs.iter().map(ToString::to_string).collect();
    let (events, last): (i64, Option<i64>) = sqlx::query_as(
        "select count(*), max(seq) from audit_events
          where tenant_id = $1 and action = 'voucher.approved' and entity_id = any($2)",
    )
    .bind(w.tenant.as_uuid())
    .bind(&ids)
    .fetch_one(&mut admin)
    .await
    .expect("approvals");
    assert_eq!(events, approved);
    assert!(last.is_none_or(|s| s < close_seq), "an approval committed after the close: {last:?} > {close_seq}");
    let rows: i64 = sqlx::query_scalar("select count(*) from document_approvals where document_id = any($1)")
        .bind(&docs)
        .fetch_one(&mut admin)
        .await
        .expect("rows");
    assert_eq!(rows, approved);
    let moved: i64 =
        sqlx::query_scalar("select count(*) from documents where id = any($1) and status = 'hod_approved'")
            .bind(&docs)
            .fetch_one(&mut admin)
            .await
            .expect("statuses");
    assert_eq!(moved, approved, "refused approvals left their documents as they were");
}

#[tokio::test]
async fn the_app_role_cannot_write_into_a_closed_period_even_with_direct_sql() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let period = q1(&db, &w).await;
    let (mut tx, staff) = as_member(&db, w.tenant, w.staff).await;
    let inside =
        documents::create(&mut tx, &w.engine, &staff, &voucher(w.dept, "2026-02-14", &[1_000])).await.expect("c");
    let outside =
        documents::create(&mut tx, &w.engine, &staff, &voucher(w.dept, "2026-05-14", &[1_000])).await.expect("c");
    tx.commit().await.expect("commit");
    close(db.store.clone(), w.tenant, w.fin, period).await;

    let attacks: [(&str, &str); 7] = [
        ("update documents set title = 'rewritten' where id = $1", "document"),
        ("update documents set document_date = '2026-05-01' where id = $1", "moved out of the period"),
        ("insert into document_lines (tenant_id, document_id, line_no, description, amount_minor)
          values (current_setting('app.tenant_id')::uuid, $1, 2, 'extra', 5)", "line"),
        ("update document_lines set amount_minor = 1 where document_id = $1", "line amount"),
        ("insert into document_approvals (tenant_id, document_id, round, level, approver, approver_role)
          values (current_setting('app.tenant_id')::uuid, $1, 1, 'hod', $2, 'hod')", "approval"),
        ("insert into document_notes (tenant_id, document_id, id, author, author_role, kind, body)
          values (current_setting('app.tenant_id')::uuid, $1, gen_random_uuid(), $2, 'hod', 'note', 'x')", "note"),
        ("insert into documents (tenant_id, id, kind, department_id, raised_by, title, document_date, currency, amount_minor)
          select tenant_id, gen_random_uuid(), kind, department_id, raised_by, title, document_date, currency, amount_minor
            from documents where id = $1", "new document"),
    ];
    for (sql, what) in attacks {
        let mut tx = db.store.tenant_tx(w.tenant).await.expect("tx");
        let mut q = sqlx::query(sql).bind(inside.id);
        if sql.contains("$2") {
            q = q.bind(w.hod);
        }
        let e = q.execute(tx.conn()).await.expect_err(what);
        assert_eq!(common::sqlstate(&e).as_deref(), Some("CSPC1"), "{what}: {e}");
    }
    // Outside the period the same app role writes as usual.
    let mut tx = db.store.tenant_tx(w.tenant).await.expect("tx");
    sqlx::query("update documents set title = 'fine' where id = $1")
        .bind(outside.id)
        .execute(tx.conn())
        .await
        .expect("ok");
    tx.commit().await.expect("commit");
    // A snapshot older than a close could miss it: writes outside READ COMMITTED are refused.
    let mut raw = db.raw_app_conn().await;
    sqlx::query("begin isolation level repeatable read").execute(&mut raw).await.expect("begin");
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(w.tenant.as_uuid().to_string())
        .execute(&mut raw)
        .await
        .expect("tenant");
    let e = sqlx::query("update documents set title = 'rr' where id = $1")
        .bind(outside.id)
        .execute(&mut raw)
        .await
        .expect_err("repeatable read");
    assert_eq!(common::sqlstate(&e).as_deref(), Some("CSPC2"), "{e}");
    // And nothing changed inside.
    let mut admin = db.admin_conn().await;
    let title: String = sqlx::query_scalar("select title from documents where id = $1")
        .bind(inside.id)
        .fetch_one(&mut admin)
        .await
        .expect("t");
    assert_eq!(title, "Office chairs");
}

/// Human numbers (`PV-2026-0001`) are given by the database: per organisation, kind and year,
/// gap-free under concurrent raises and rolled-back ones, and nobody can choose or change one.
#[tokio::test]
async fn document_numbers_are_gap_free_per_organisation_and_cannot_be_chosen_or_changed() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let year = chrono::Utc::now().format("%Y").to_string();
    // The fixture organisation holds one voucher already (PV-<year>-0001).
    let (mut tx, staff) = as_member(&db, w.tenant, w.staff).await;
    let fixture: Vec<String> =
        sqlx::query_scalar("select number from documents").fetch_all(tx.conn()).await.expect("fixture numbers");
    assert_eq!(fixture, vec![format!("PV-{year}-0001")]);

    // A raise that rolls back gives its number back.
    documents::create(&mut tx, &w.engine, &staff, &voucher(w.dept, "2026-03-10", &[100])).await.expect("create");
    tx.rollback().await.expect("rollback");

    // Eight concurrent raises queue on the counter: 0002..0009, no gap, no repeat.
    let engine = std::sync::Arc::new(Engine::load().expect("policies"));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, engine, tenant, staff, dept) = (db.store.clone(), engine.clone(), w.tenant, w.staff, w.dept);
        tasks.push(tokio::spawn(async move {
            let mut tx = store.tenant_tx(tenant).await.expect("tx");
            let m = Member::load(&mut tx, staff, Origin::default()).await.expect("member");
            let d =
                documents::create(&mut tx, &engine, &m, &voucher(dept, "2026-03-10", &[100])).await.expect("create");
            tx.commit().await.expect("commit");
            d.number
        }));
    }
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.expect("task"));
    }
    numbers.sort();
    let expected: Vec<String> = (2..=9).map(|n| format!("PV-{year}-{n:04}")).collect();
    assert_eq!(numbers, expected);

    // Purchase orders count apart; another organisation counts its own (after its fixture).
    let (mut tx, staff) = as_member(&db, w.tenant, w.staff).await;
    let po = documents::create(
        &mut tx,
        &w.engine,
        &staff,
        &NewDocument { kind: Kind::PurchaseOrder, ..voucher(w.dept, "2026-03-10", &[100]) },
    )
    .await
    .expect("po");
    tx.commit().await.expect("commit");
    assert_eq!(po.number, format!("PO-{year}-0001"));
    let b = org(&db, "bravo").await;
    let b_staff = member(&db, b.id, "bravo", "bo", Role::Staff, Some(b.department), false).await;
    let (mut tx, bm) = as_member(&db, b.id, b_staff).await;
    let other =
        documents::create(&mut tx, &w.engine, &bm, &voucher(b.department, "2026-03-10", &[100])).await.expect("b");
    tx.commit().await.expect("commit");
    assert_eq!(other.number, format!("PV-{year}-0002"));

    // The app role can neither pick a number on insert nor rewrite one.
    let mut tx = db.store.tenant_tx(w.tenant).await.expect("tx");
    let id = Uuid::now_v7();
    sqlx::query(
        "insert into documents (tenant_id, id, number, kind, department_id, raised_by, title, document_date, currency, amount_minor)
         values ($1, $2, 'PV-1999-0042', 'voucher', $3, $4, 'x', '2026-03-10', 'EUR', 100)",
    )
    .bind(w.tenant.as_uuid())
    .bind(id)
    .bind(w.dept)
    .bind(w.staff)
    .execute(tx.conn())
    .await
    .expect("insert");
    let given: String = sqlx::query_scalar("select number from documents where id = $1")
        .bind(id)
        .fetch_one(tx.conn())
        .await
        .expect("n");
    assert_eq!(given, format!("PV-{year}-0010"), "the database numbers it, whatever the writer says");
    let e = sqlx::query("update documents set number = 'PV-2026-0001' where id = $1")
        .bind(id)
        .execute(tx.conn())
        .await
        .expect_err("renumbering is refused");
    assert!(e.to_string().contains("never changes"), "{e}");
}
