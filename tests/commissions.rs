//! Opportunities and commissions of partner programmes (issue 17), attacked: partner A reading,
//! moving, disputing or approving partner B's (domain, raw SQL and HTTP); the closer approving
//! their own commission; partners and channel managers approving; illegal stage jumps; a disputed
//! commission paid; exact arithmetic; statements holding only the caller's rows. And the journey
//! the issue names: deal registered → approved → won → commission approved → paid.

mod common;

use authz::{Action, Engine, Permit, Role, Subject};
use common::{TestApp, org, partner_person, who, with_password};
use identity::EmailAddress;
use identity::directory::{memberships, users};
use programs::commissions::{self, Band, CommissionStatus, NewPlan, Step};
use programs::deals::{self, Decision, NewDeal};
use programs::opportunities::{self, NewOpportunity, Opportunity, Stage};
use programs::partners::{self, PartnerChange, Tier};
use programs::{ProgramError, leads};
use reqwest::StatusCode;
use serde_json::json;
use store::testing::TestDb;
use store::{ProgramScope, TenantId, TenantTx};
use uuid::Uuid;

fn operator(action: Action, t: TenantId) -> Permit {
    Permit::operator(action, t.as_uuid())
}

async fn new_user(db: &TestDb, email: &str) -> Uuid {
    let mut g = db.store.global_tx().await.expect("global tx");
    let u = users::create(&mut g, &who(), &EmailAddress::parse(email).expect("email"), email).await.expect("user");
    g.commit().await.expect("commit");
    u.id
}

async fn staff(db: &TestDb, t: TenantId, email: &str, role: Role) -> Uuid {
    let u = new_user(db, email).await;
    let mut tx = db.store.tenant_tx(t).await.expect("tx");
    memberships::add(
        &mut tx,
        &who(),
        &memberships::NewMembership { user_id: u, role, department_id: None, valid_until: None },
    )
    .await
    .expect("membership");
    tx.commit().await.expect("commit");
    u
}

async fn as_member(db: &TestDb, t: TenantId, user: Uuid) -> TenantTx {
    db.store.program_tx(t, ProgramScope::Member(user)).await.expect("program tx")
}

struct World {
    db: TestDb,
    t: TenantId,
    admin: Uuid,
    finance: Uuid,
    channel: Uuid,
    pa: Uuid,
    pb: Uuid,
    alice: Uuid,
    bob: Uuid,
    engine: Engine,
}

impl World {
    fn subject(&self, user: Uuid, role: Role) -> Subject {
        Subject { tenant: self.t.as_uuid(), user, role, department: None }
    }
}

/// A vendor with two partners (A: alice, B: bob), finance and a channel manager, and a plan for
/// registered partners selling `suite` in EUR: 5 %, 10 % above 10 000.00, 100.00 bonus.
async fn world() -> World {
    let db = TestDb::new().await;
    let o = org(&db, "vendor").await;
    let (pa, pb) = (o.partners[0], o.partners[1]);
    let alice = partner_person(&db, o.id, pa, "alice@partner-a.example", Role::PartnerAdmin).await;
    let bob = partner_person(&db, o.id, pb, "bob@partner-b.example", Role::PartnerAgent).await;
    let finance = staff(&db, o.id, "fin@vendor.example", Role::Finance).await;
    let channel = staff(&db, o.id, "cm@vendor.example", Role::ChannelManager).await;
    let mut tx = db.store.program_tx(o.id, ProgramScope::Vendor).await.expect("tx");
    commissions::create_plan(
        &mut tx,
        &who(),
        &operator(Action::CommissionPlanManage, o.id),
        o.users[0],
        &NewPlan {
            tier: Tier::Registered,
            product: "suite".into(),
            currency: "EUR".into(),
            rate_bp: 500,
            bands: vec![Band { from_minor: 1_000_000, rate_bp: 1_000 }],
            bonus_minor: 10_000,
        },
    )
    .await
    .expect("plan");
    tx.commit().await.expect("commit");
    World {
        t: o.id,
        admin: o.users[0],
        db,
        finance,
        channel,
        pa,
        pb,
        alice,
        bob,
        engine: Engine::load().expect("policies"),
    }
}

fn new_opportunity(lead: Option<Uuid>, deal: Option<Uuid>, name: &str, amount: i64, currency: &str) -> NewOpportunity {
    NewOpportunity {
        lead_id: lead,
        deal_id: deal,
        name: name.into(),
        product: "suite".into(),
        amount_minor: amount,
        currency: currency.into(),
        expected_close: chrono::Utc::now().date_naive() + chrono::Days::new(30),
    }
}

/// A new lead of `user`'s partner and an opportunity from it (opened by `user`).
async fn opportunity(w: &World, user: Uuid, name: &str, amount: i64, currency: &str) -> Opportunity {
    let mut tx = as_member(&w.db, w.t, user).await;
    let lead = leads::register(
        &mut tx,
        &who(),
        &operator(Action::LeadRegister, w.t),
        user,
        &leads::NewLead {
            company_name: format!("Lead for {name}"),
            customer_domain: None,
            contact_name: None,
            contact_email: None,
            notes: None,
        },
    )
    .await
    .expect("lead");
    let o = opportunities::create(
        &mut tx,
        &who(),
        &operator(Action::OpportunityCreate, w.t),
        user,
        &new_opportunity(Some(lead.id), None, name, amount, currency),
    )
    .await
    .expect("opportunity");
    tx.commit().await.expect("commit");
    o
}

async fn advance(w: &World, user: Uuid, id: Uuid, to: Stage) -> Result<Opportunity, ProgramError> {
    let mut tx = as_member(&w.db, w.t, user).await;
    let r = opportunities::advance(&mut tx, &who(), &operator(Action::OpportunityAdvance, w.t), user, id, to).await;
    if r.is_ok() {
        tx.commit().await.expect("commit");
    }
    r
}

/// Moves through proposal and negotiation to won, as `closer`; returns the commission id.
async fn win(w: &World, closer: Uuid, id: Uuid) -> Option<Uuid> {
    for s in [Stage::Proposal, Stage::Negotiation, Stage::Won] {
        advance(w, closer, id, s).await.expect("advance");
    }
    let mut tx = as_member(&w.db, w.t, closer).await;
    opportunities::get(&mut tx, id).await.expect("opportunity").commission_id
}

async fn settle(
    w: &World,
    user: Uuid,
    role: Role,
    id: Uuid,
    step: Step,
) -> Result<commissions::Commission, ProgramError> {
    let mut tx = as_member(&w.db, w.t, user).await;
    let s = w.subject(user, role);
    let r = match step {
        Step::Approve => commissions::approve(&mut tx, &w.engine, &s, &who(), id, Some("checked the deal")).await,
        Step::Resolve => {
            commissions::resolve(&mut tx, &w.engine, &s, &who(), id, "partner was right", Some(123_456)).await
        }
        _ => commissions::pay_step(&mut tx, &w.engine, &s, &who(), id, step, None).await,
    };
    if r.is_ok() {
        tx.commit().await.expect("commit");
    }
    r
}

async fn dispute(w: &World, user: Uuid, id: Uuid) -> Result<commissions::Commission, ProgramError> {
    let mut tx = as_member(&w.db, w.t, user).await;
    let r = commissions::dispute(&mut tx, &who(), &operator(Action::CommissionDispute, w.t), id, "rate is wrong").await;
    if r.is_ok() {
        tx.commit().await.expect("commit");
    }
    r
}

#[tokio::test]
async fn partner_a_never_reads_moves_disputes_or_settles_partner_bs_opportunity_or_commission() {
    let w = world().await;
    let b = opportunity(&w, w.bob, "Bee deal", 500_000, "EUR").await;
    let b_commission = win(&w, w.bob, b.id).await.expect("commission");
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    assert!(matches!(opportunities::get(&mut tx, b.id).await, Err(ProgramError::NotFound)));
    assert!(matches!(commissions::get(&mut tx, b_commission).await, Err(ProgramError::NotFound)));
    assert!(opportunities::list(&mut tx, 500).await.expect("list").iter().all(|o| o.partner_id == w.pa));
    assert!(commissions::list(&mut tx, 500).await.expect("list").iter().all(|c| c.partner_id == w.pa));
    drop(tx);
    let e = dispute(&w, w.alice, b_commission).await.expect_err("B's commission");
    assert!(matches!(e, ProgramError::NotFound), "{e:?}");
    // Even holding a (forged) finance subject, alice's transaction cannot find B's commission.
    let e = settle(&w, w.alice, Role::Finance, b_commission, Step::Approve).await.expect_err("B's");
    assert!(matches!(e, ProgramError::NotFound), "{e:?}");
    // Nor open an opportunity on B's lead.
    let mut tx = as_member(&w.db, w.t, w.bob).await;
    let b_lead = leads::page(&mut tx, None, 10).await.expect("leads")[0].id;
    drop(tx);
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    let e = opportunities::create(
        &mut tx,
        &who(),
        &operator(Action::OpportunityCreate, w.t),
        w.alice,
        &new_opportunity(Some(b_lead), None, "Stolen", 1_000, "EUR"),
    )
    .await
    .expect_err("B's lead");
    assert!(matches!(e, ProgramError::NotFound), "{e:?}");
    drop(tx);
    // B's rows are untouched.
    let mut tx = as_member(&w.db, w.t, w.bob).await;
    assert_eq!(commissions::get(&mut tx, b_commission).await.expect("own").status, CommissionStatus::Calculated);
}

/// The database proof: in partner A's transaction, SQL with no WHERE sees only A's opportunities
/// and commissions, and an UPDATE of everything changes none of B's.
#[tokio::test]
async fn raw_sql_in_partner_scope_sees_and_changes_only_that_partners_opportunities_and_commissions() {
    let w = world().await;
    let b = opportunity(&w, w.bob, "Bee deal", 500_000, "EUR").await;
    let b_commission = win(&w, w.bob, b.id).await.expect("commission");
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    for table in ["partner_opportunities", "commissions"] {
        let owners: Vec<Uuid> =
            sqlx::query_scalar(&format!("select partner_id from {table}")).fetch_all(tx.conn()).await.expect("select");
        assert!(!owners.is_empty() && owners.iter().all(|o| *o == w.pa), "{table}: {owners:?}");
    }
    let n = sqlx::query("update commissions set status = 'paid', paid_at = now(), approved_by = $1")
        .bind(w.finance)
        .execute(tx.conn())
        .await
        .expect("update")
        .rows_affected();
    assert!(n >= 1, "A's own fixture commission is visible");
    drop(tx);
    let mut admin = w.db.admin_conn().await;
    let status: String = sqlx::query_scalar("select status from commissions where id = $1")
        .bind(b_commission)
        .fetch_one(&mut admin)
        .await
        .expect("row");
    assert_eq!(status, "calculated");
}

#[tokio::test]
async fn the_closer_never_approves_their_own_commission() {
    let w = world().await;
    let o = opportunity(&w, w.alice, "Closed by the admin", 100_000, "EUR").await;
    // The vendor admin closes it won, then tries to approve its commission.
    let c = win(&w, w.admin, o.id).await.expect("commission");
    let e = settle(&w, w.admin, Role::Admin, c, Step::Approve).await.expect_err("closer");
    match e {
        ProgramError::Denied(d) => assert_eq!(d.forbidden_by, ["closer-never-approves-commission"]),
        other => panic!("{other:?}"),
    }
    // Nor as finance (a role change does not wash the hands), nor by resolving a dispute.
    let e = settle(&w, w.admin, Role::Finance, c, Step::Approve).await.expect_err("closer");
    assert!(matches!(e, ProgramError::Denied(_)), "{e:?}");
    // The table refuses it too, whatever the application does.
    let mut admin = w.db.admin_conn().await;
    let e = sqlx::query(
        "update commissions set status = 'approved', approved_by = closed_by, approved_at = now() where id = $1",
    )
    .bind(c)
    .execute(&mut admin)
    .await
    .expect_err("check");
    assert!(e.to_string().contains("commissions_closer_never_approves"), "{e}");
    // Someone else in finance approves.
    let ok = settle(&w, w.finance, Role::Finance, c, Step::Approve).await.expect("finance approves");
    assert_eq!((ok.status, ok.approved_by), (CommissionStatus::Approved, Some(w.finance)));
}

#[tokio::test]
async fn partners_and_channel_managers_never_approve_or_pay() {
    let w = world().await;
    // Closed by the vendor admin, so a partner's refusal is for being a partner, not the closer.
    let o = opportunity(&w, w.alice, "Vendor closed", 100_000, "EUR").await;
    let c = win(&w, w.admin, o.id).await.expect("commission");
    let e = settle(&w, w.alice, Role::PartnerAdmin, c, Step::Approve).await.expect_err("partner");
    match e {
        ProgramError::Denied(d) => assert_eq!(d.forbidden_by, ["partners-never-settle-commissions"]),
        other => panic!("{other:?}"),
    }
    for step in [Step::Approve, Step::MarkPayable, Step::Pay] {
        let e = settle(&w, w.channel, Role::ChannelManager, c, step).await.expect_err("channel manager");
        assert!(matches!(e, ProgramError::Denied(ref d) if d.forbidden_by.is_empty()), "{step:?}: {e:?}");
    }
    // Another partner's people cannot even find it.
    let e = settle(&w, w.bob, Role::Finance, c, Step::Approve).await.expect_err("B");
    assert!(matches!(e, ProgramError::NotFound), "{e:?}");
    // A partner person's transaction with a forged finance subject (not the closer): the
    // transaction's partner scope still refuses.
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    let s = w.subject(Uuid::now_v7(), Role::Finance);
    let e = commissions::approve(&mut tx, &w.engine, &s, &who(), c, None).await.expect_err("partner scope");
    assert!(matches!(e, ProgramError::Forbidden { code: "partners_never_settle", .. }), "{e:?}");
    drop(tx);
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    assert_eq!(commissions::get(&mut tx, c).await.expect("own").status, CommissionStatus::Calculated);
    // And the vendor never disputes (the partner does).
    let mut tx2 = as_member(&w.db, w.t, w.admin).await;
    let e = commissions::dispute(&mut tx2, &who(), &operator(Action::CommissionDispute, w.t), c, "not mine")
        .await
        .expect_err("vendor");
    assert!(matches!(e, ProgramError::Forbidden { code: "partners_only", .. }), "{e:?}");
    drop(tx);
}

#[tokio::test]
async fn illegal_stage_jumps_are_refused_and_closed_opportunities_are_final() {
    let w = world().await;
    let o = opportunity(&w, w.alice, "Jumpy", 100_000, "EUR").await;
    assert_eq!(o.stage, Stage::Qualified);
    for to in [Stage::Won, Stage::Negotiation, Stage::Qualified] {
        let e = advance(&w, w.alice, o.id, to).await.expect_err("jump");
        assert!(matches!(e, ProgramError::Conflict { code: "transition_not_allowed", .. }), "{to:?}: {e:?}");
    }
    assert!(win(&w, w.alice, o.id).await.is_some());
    for to in [Stage::Lost, Stage::Won, Stage::Proposal] {
        let e = advance(&w, w.alice, o.id, to).await.expect_err("closed");
        assert!(matches!(e, ProgramError::Conflict { code: "transition_not_allowed", .. }), "{to:?}: {e:?}");
    }
    // Lost from an open stage is allowed, and final.
    let l = opportunity(&w, w.alice, "Lost one", 100_000, "EUR").await;
    advance(&w, w.alice, l.id, Stage::Proposal).await.expect("proposal");
    let lost = advance(&w, w.alice, l.id, Stage::Lost).await.expect("lost");
    assert_eq!((lost.stage, lost.closed_by, lost.commission_id), (Stage::Lost, Some(w.alice), None));
    let e = advance(&w, w.alice, l.id, Stage::Won).await.expect_err("lost is final");
    assert!(matches!(e, ProgramError::Conflict { .. }));
    // Every move is audited with its before/after stage.
    let mut admin = w.db.admin_conn().await;
    let moves: Vec<String> = sqlx::query_scalar(
        "select changes from audit_events where entity_id = $1 and action like 'opportunity.%' order by seq",
    )
    .bind(o.id.to_string())
    .fetch_all(&mut admin)
    .await
    .expect("events");
    assert_eq!(moves.len(), 4, "created + 3 moves: {moves:?}");
    assert!(moves[3].contains("negotiation") && moves[3].contains("won"), "{moves:?}");
}

#[tokio::test]
async fn a_disputed_commission_is_never_paid_until_resolved_and_approved_again() {
    let w = world().await;
    let o = opportunity(&w, w.alice, "Disputed", 100_000, "EUR").await;
    let c = win(&w, w.alice, o.id).await.expect("commission");
    settle(&w, w.finance, Role::Finance, c, Step::Approve).await.expect("approve");
    settle(&w, w.finance, Role::Finance, c, Step::MarkPayable).await.expect("payable");
    let d = dispute(&w, w.alice, c).await.expect("dispute");
    assert_eq!(d.status, CommissionStatus::Disputed);
    for step in [Step::Pay, Step::MarkPayable, Step::Approve] {
        let e = settle(&w, w.finance, Role::Finance, c, step).await.expect_err("disputed");
        assert!(matches!(e, ProgramError::Conflict { code: "transition_not_allowed", .. }), "{step:?}: {e:?}");
    }
    let r = settle(&w, w.finance, Role::Finance, c, Step::Resolve).await.expect("resolve");
    assert_eq!((r.status, r.amount_minor, r.approved_by), (CommissionStatus::Calculated, 123_456, None));
    for step in [Step::Approve, Step::MarkPayable, Step::Pay] {
        settle(&w, w.finance, Role::Finance, c, step).await.expect("settle");
    }
    let e = dispute(&w, w.alice, c).await.expect_err("paid is final");
    assert!(matches!(e, ProgramError::Conflict { code: "transition_not_allowed", .. }), "{e:?}");
    let e = settle(&w, w.finance, Role::Finance, c, Step::Pay).await.expect_err("paid twice");
    assert!(matches!(e, ProgramError::Conflict { .. }));
    let mut admin = w.db.admin_conn().await;
    let actions: Vec<String> = sqlx::query_scalar(
        "select action from audit_events where entity_id = $1 and action like 'commission.%' order by seq",
    )
    .bind(c.to_string())
    .fetch_all(&mut admin)
    .await
    .expect("events");
    assert_eq!(
        actions,
        [
            "commission.calculated",
            "commission.approved",
            "commission.payable",
            "commission.disputed",
            "commission.resolved",
            "commission.approved",
            "commission.payable",
            "commission.paid"
        ]
    );
}

#[tokio::test]
async fn commissions_are_computed_exactly_from_the_plan_of_the_partners_tier() {
    let w = world().await;
    // 15 000.00: 10 000.00 at 5 % + 5 000.00 at 10 % + 100.00 bonus = 1 100.00.
    let o = opportunity(&w, w.alice, "Banded", 1_500_000, "EUR").await;
    let c = win(&w, w.alice, o.id).await.expect("commission");
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    let got = commissions::get(&mut tx, c).await.expect("commission");
    drop(tx);
    assert_eq!((got.base_minor, got.amount_minor, got.currency.as_str()), (1_500_000, 110_000, "EUR"));
    // Partner B moves up to silver: the silver plan (2.5 %, no bonus) applies, rounded half up:
    // 123.45 at 2.5 % = 3.08625 → 3.09.
    let mut tx = as_member(&w.db, w.t, w.admin).await;
    partners::update(
        &mut tx,
        &who(),
        &operator(Action::ProgramPartnersManage, w.t),
        w.pb,
        &PartnerChange { tier: Some(Tier::Silver), status: None },
    )
    .await
    .expect("tier");
    commissions::create_plan(
        &mut tx,
        &who(),
        &operator(Action::CommissionPlanManage, w.t),
        w.admin,
        &NewPlan {
            tier: Tier::Silver,
            product: "suite".into(),
            currency: "EUR".into(),
            rate_bp: 250,
            bands: vec![],
            bonus_minor: 0,
        },
    )
    .await
    .expect("silver plan");
    tx.commit().await.expect("commit");
    let o = opportunity(&w, w.bob, "Silver", 12_345, "EUR").await;
    let c = win(&w, w.bob, o.id).await.expect("commission");
    let mut tx = as_member(&w.db, w.t, w.bob).await;
    assert_eq!(commissions::get(&mut tx, c).await.expect("commission").amount_minor, 309);
    drop(tx);
    // No plan for USD: won, without a commission.
    let o = opportunity(&w, w.alice, "Dollars", 100_000, "USD").await;
    assert_eq!(win(&w, w.alice, o.id).await, None);
    // Bad plans are refused before they are stored.
    let mut tx = as_member(&w.db, w.t, w.admin).await;
    for (rate, bands) in
        [(10_001, vec![]), (500, vec![Band { from_minor: 10, rate_bp: 1 }, Band { from_minor: 5, rate_bp: 1 }])]
    {
        let e = commissions::create_plan(
            &mut tx,
            &who(),
            &operator(Action::CommissionPlanManage, w.t),
            w.admin,
            &NewPlan {
                tier: Tier::Gold,
                product: "suite".into(),
                currency: "EUR".into(),
                rate_bp: rate,
                bands,
                bonus_minor: 0,
            },
        )
        .await
        .expect_err("bad plan");
        assert!(matches!(e, ProgramError::Invalid { .. }), "{e:?}");
    }
}

#[tokio::test]
async fn an_opportunity_comes_from_an_approved_partner_deal_registration_once() {
    let w = world().await;
    let close = chrono::Utc::now().date_naive() + chrono::Days::new(30);
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    let d = deals::register(
        &mut tx,
        &who(),
        &operator(Action::DealRegister, w.t),
        w.alice,
        &NewDeal {
            customer_company: "Northwind".into(),
            customer_domain: "northwind.example".into(),
            amount_minor: 100_000,
            currency: "EUR".into(),
            expected_close: close,
        },
    )
    .await
    .expect("deal");
    let from_deal = new_opportunity(None, Some(d.id), "Northwind", 100_000, "EUR");
    let permit = operator(Action::OpportunityCreate, w.t);
    let e = opportunities::create(&mut tx, &who(), &permit, w.alice, &from_deal).await.expect_err("not approved");
    assert!(matches!(e, ProgramError::Conflict { code: "deal_not_approved", .. }), "{e:?}");
    tx.commit().await.expect("commit");
    let mut tx = as_member(&w.db, w.t, w.admin).await;
    deals::decide(&mut tx, &who(), &operator(Action::DealDecide, w.t), w.admin, d.id, Decision::Approve, "known")
        .await
        .expect("approve");
    tx.commit().await.expect("commit");
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    let o = opportunities::create(&mut tx, &who(), &permit, w.alice, &from_deal).await.expect("from deal");
    assert_eq!((o.partner_id, o.deal_id), (w.pa, Some(d.id)));
    tx.commit().await.expect("commit");
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    let e = opportunities::create(&mut tx, &who(), &permit, w.alice, &from_deal).await.expect_err("twice");
    assert!(matches!(e, ProgramError::Conflict { code: "opportunity_exists", .. }), "{e:?}");
    let both = NewOpportunity { lead_id: Some(Uuid::now_v7()), ..from_deal };
    let e = opportunities::create(&mut tx, &who(), &permit, w.alice, &both).await.expect_err("both");
    assert!(matches!(e, ProgramError::Invalid { .. }), "{e:?}");
}

#[tokio::test]
async fn a_statement_holds_only_the_callers_rows_and_neutralises_formulas() {
    let w = world().await;
    let a = opportunity(&w, w.alice, "=cmd|' /C calc'!A0", 100_000, "EUR").await;
    win(&w, w.alice, a.id).await.expect("commission");
    let b = opportunity(&w, w.bob, "Bee secret", 100_000, "EUR").await;
    win(&w, w.bob, b.id).await.expect("commission");
    let now = chrono::Utc::now();
    let period = commissions::parse_period(&now.format("%Y-%m").to_string()).expect("period");
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    assert_eq!(commissions::statement_partner(&mut tx, None).await.expect("own"), w.pa);
    assert!(matches!(commissions::statement_partner(&mut tx, Some(w.pb)).await, Err(ProgramError::NotFound)));
    // Even asked for B's rows directly, the database gives A's transaction none.
    assert!(commissions::statement_page(&mut tx, w.pb, period, None, 1000).await.expect("page").is_empty());
    let mut out = commissions::csv_header().expect("header");
    for l in commissions::statement_page(&mut tx, w.pa, period, None, 1000).await.expect("page") {
        out.extend(commissions::csv_record(&l).expect("record"));
    }
    let text = String::from_utf8(out).expect("utf8");
    assert!(text.starts_with("commission_id,partner_id,"), "{text}");
    assert!(!text.contains("Bee secret") && !text.contains(&w.pb.to_string()), "{text}");
    assert!(text.contains("'=cmd|"), "{text}");
    // The fixture's commission (this month too) and the new one.
    assert_eq!(text.lines().count(), 3, "{text}");
    drop(tx);
    // Vendor staff name the partner.
    let mut tx = as_member(&w.db, w.t, w.finance).await;
    assert!(matches!(commissions::statement_partner(&mut tx, None).await, Err(ProgramError::Invalid { .. })));
    assert_eq!(commissions::statement_partner(&mut tx, Some(w.pb)).await.expect("named"), w.pb);
}

// ---- Over HTTP: the journey of the issue, and the same attacks through the API's guards. ----

#[tokio::test]
async fn over_http_deal_approved_won_commission_approved_and_paid_with_the_attacks_refused() {
    let w = world().await;
    for u in [w.alice, w.bob, w.admin, w.finance, w.channel] {
        with_password(&w.db, u).await;
    }
    let app = TestApp::new(&w.db).await;
    let alice = app.anonymous().sign_in("vendor", "alice@partner-a.example").await;
    let bob = app.anonymous().sign_in("vendor", "bob@partner-b.example").await;
    let admin = app.anonymous().sign_in("vendor", "user0@vendor.example").await;
    let finance = app.anonymous().sign_in("vendor", "fin@vendor.example").await;
    let channel = app.anonymous().sign_in("vendor", "cm@vendor.example").await;
    let close = (chrono::Utc::now().date_naive() + chrono::Days::new(30)).to_string();

    // Register a deal; the vendor approves it.
    let deal = alice
        .post(
            "/api/v1/deals",
            json!({"customerCompany": "Contoso", "customerDomain": "contoso.example", "amountMinor": 2_000_000,
                   "currency": "EUR", "expectedClose": close}),
        )
        .await;
    assert_eq!(deal.status, StatusCode::CREATED, "{deal}");
    let deal_id = deal.body["id"].as_str().expect("id").to_owned();
    let r = admin.post(&format!("/api/v1/deals/{deal_id}/approve"), json!({"reason": "known account"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");

    // It becomes an opportunity, and is won.
    let o = alice
        .post(
            "/api/v1/programme/opportunities",
            json!({"dealId": deal_id, "name": "Contoso rollout", "product": "suite", "amountMinor": 2_000_000,
                   "currency": "EUR", "expectedClose": close}),
        )
        .await;
    assert_eq!(o.status, StatusCode::CREATED, "{o}");
    let oid = o.body["id"].as_str().expect("id").to_owned();
    let jump = alice.post(&format!("/api/v1/programme/opportunities/{oid}/stage"), json!({"stage": "won"})).await;
    assert_eq!(jump.status, StatusCode::CONFLICT, "{jump}");
    assert_eq!(jump.body["error"]["code"], "transition_not_allowed", "{jump}");
    assert_eq!(bob.get(&format!("/api/v1/programme/opportunities/{oid}")).await.status, StatusCode::NOT_FOUND);
    let r = bob.post(&format!("/api/v1/programme/opportunities/{oid}/stage"), json!({"stage": "proposal"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    let mut won = None;
    for stage in ["proposal", "negotiation", "won"] {
        let r = alice.post(&format!("/api/v1/programme/opportunities/{oid}/stage"), json!({"stage": stage})).await;
        assert_eq!(r.status, StatusCode::OK, "{stage}: {r}");
        won = Some(r);
    }
    let won = won.expect("won");
    assert_eq!(won.body["stage"], "won");
    let cid = won.body["commissionId"].as_str().expect("commission").to_owned();
    // 20 000.00: 10 000.00 at 5 % + 10 000.00 at 10 % + 100.00 = 1 600.00.
    let c = alice.get(&format!("/api/v1/programme/commissions/{cid}")).await;
    assert_eq!(
        (c.status, c.body["amountMinor"].clone(), c.body["status"].clone()),
        (StatusCode::OK, json!(160_000), json!("calculated")),
        "{c}"
    );

    // Attacks: B reads or disputes it (404, as for nothing); a partner, a channel manager approve
    // (403); nobody pays what is not approved (409).
    let theirs = bob.get(&format!("/api/v1/programme/commissions/{cid}")).await;
    let none = bob.get(&format!("/api/v1/programme/commissions/{}", Uuid::now_v7())).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{theirs}");
    assert_eq!((theirs.status, theirs.body.clone()), (none.status, none.body.clone()), "indistinguishable");
    let r = bob.post(&format!("/api/v1/programme/commissions/{cid}/dispute"), json!({"reason": "mine now"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    for (who, client) in [("partner", &alice), ("channel manager", &channel)] {
        let r = client.post(&format!("/api/v1/programme/commissions/{cid}/approve"), json!({})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who}: {r}");
    }
    let r = finance.post(&format!("/api/v1/programme/commissions/{cid}/pay"), json!({})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("transition_not_allowed")),
        "{r}"
    );

    // Finance approves, marks payable, pays.
    for (step, status) in [("approve", "approved"), ("payable", "payable"), ("pay", "paid")] {
        let r = finance.post(&format!("/api/v1/programme/commissions/{cid}/{step}"), json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{step}: {r}");
        assert_eq!(r.body["status"], status, "{r}");
    }

    // Statements: alice's holds her rows only, as a download; the vendor names the partner.
    let period = chrono::Utc::now().format("%Y-%m").to_string();
    let csv = alice.get(&format!("/api/v1/programme/commissions/statement?period={period}")).await;
    assert_eq!(csv.status, StatusCode::OK, "{csv}");
    assert!(csv.header("content-type").is_some_and(|c| c.starts_with("text/csv")));
    assert!(csv.header("content-disposition").is_some_and(|c| c.starts_with("attachment; filename=\"commissions-")));
    assert!(csv.text.contains(&cid) && csv.text.contains(",paid,"), "{}", csv.text);
    assert!(!csv.text.contains(&w.pb.to_string()), "{}", csv.text);
    let csv = bob.get(&format!("/api/v1/programme/commissions/statement?period={period}")).await;
    assert!(!csv.text.contains(&cid) && !csv.text.contains(&w.pa.to_string()), "{}", csv.text);
    let r = bob.get(&format!("/api/v1/programme/commissions/statement?period={period}&partnerId={}", w.pa)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    let r = finance.get(&format!("/api/v1/programme/commissions/statement?period={period}")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    let r = finance.get(&format!("/api/v1/programme/commissions/statement?period={period}&partnerId={}", w.pa)).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert!(r.text.contains(&cid), "{}", r.text);
    let r = finance.get("/api/v1/programme/commissions/statement?period=2026-13").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    // The same statement as a PDF: a download of alice's rows with the amounts, read back with
    // poppler; bob's holds none of hers, and naming her partner is a 404 as for the CSV.
    let pdf_url = format!("/api/v1/programme/commissions/statement.pdf?period={period}");
    let (status, headers, pdf) = alice.get_bytes(&pdf_url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/pdf"));
    let disposition = headers.get("content-disposition").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(disposition.starts_with("attachment; filename=\"commissions-") && disposition.ends_with(".pdf\""));
    let (pages, text) = read_pdf(&pdf);
    assert_eq!(pages, 1, "{text}");
    for expected in ["Commission statement", "Contoso rollout", "20,000.00 EUR", "1,600.00 EUR", "Paid"] {
        assert!(text.contains(expected), "{expected} not in: {text}");
    }
    let (status, _, pdf) = bob.get_bytes(&pdf_url).await;
    assert_eq!(status, StatusCode::OK);
    let (_, text) = read_pdf(&pdf);
    assert!(!text.contains("Contoso rollout") && text.contains("Commission statement"), "{text}");
    let r = bob.get(&format!("{pdf_url}&partnerId={}", w.pa)).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{r}");
    let r = finance.get("/api/v1/programme/commissions/statement.pdf?period=2026-13").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    let (status, _, pdf) = finance.get_bytes(&format!("{pdf_url}&partnerId={}", w.pa)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(read_pdf(&pdf).1.contains("1,600.00 EUR"));
    // Plans are the vendor's: partners neither read nor write them.
    assert_eq!(alice.get("/api/v1/programme/commission-plans").await.status, StatusCode::FORBIDDEN);
    let plans = channel.get("/api/v1/programme/commission-plans").await;
    assert_eq!(plans.status, StatusCode::OK, "{plans}");
    assert_eq!(plans.body["items"].as_array().map(Vec::len), Some(2), "{plans}");
}

#[tokio::test]
async fn over_http_the_closer_approving_their_own_commission_is_refused_403_and_audited() {
    let w = world().await;
    for u in [w.alice, w.admin] {
        with_password(&w.db, u).await;
    }
    let app = TestApp::new(&w.db).await;
    let alice = app.anonymous().sign_in("vendor", "alice@partner-a.example").await;
    let admin = app.anonymous().sign_in("vendor", "user0@vendor.example").await;
    let close = (chrono::Utc::now().date_naive() + chrono::Days::new(30)).to_string();
    // The vendor admin opens an opportunity on alice's lead, closes it won, approves: refused.
    let lead = alice.post("/api/v1/leads", json!({"companyName": "Fabrikam"})).await;
    let lead_id = lead.body["id"].as_str().expect("lead").to_owned();
    let o2 = admin
        .post(
            "/api/v1/programme/opportunities",
            json!({"leadId": lead_id, "name": "Fabrikam", "product": "suite", "amountMinor": 100_000,
                   "currency": "EUR", "expectedClose": close}),
        )
        .await;
    assert_eq!(o2.status, StatusCode::CREATED, "{o2}");
    let o2id = o2.body["id"].as_str().expect("id").to_owned();
    let mut last = None;
    for stage in ["proposal", "negotiation", "won"] {
        last =
            Some(admin.post(&format!("/api/v1/programme/opportunities/{o2id}/stage"), json!({"stage": stage})).await);
    }
    let c2 = last.expect("won").body["commissionId"].as_str().expect("commission").to_owned();
    let r = admin.post(&format!("/api/v1/programme/commissions/{c2}/approve"), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    assert_eq!(r.body["error"]["details"]["forbidden_by"], json!(["closer-never-approves-commission"]), "{r}");
    let mut admin_conn = w.db.admin_conn().await;
    // Refusals are aggregated, then written; give the recorder a moment.
    for _ in 0..50 {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from audit_events where tenant_id = $1 and action = 'access.denied' and entity_id = $2",
        )
        .bind(w.t.as_uuid())
        .bind(&c2)
        .fetch_one(&mut admin_conn)
        .await
        .expect("count");
        if n > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let changes: String = sqlx::query_scalar(
        "select changes from audit_events where tenant_id = $1 and action = 'access.denied' and entity_id = $2",
    )
    .bind(w.t.as_uuid())
    .bind(&c2)
    .fetch_one(&mut admin_conn)
    .await
    .expect("denial");
    assert!(changes.contains("closer-never-approves-commission"), "{changes}");
    let r = alice.get(&format!("/api/v1/programme/commissions/{c2}")).await;
    assert_eq!(r.body["status"], "calculated", "{r}");
}

/// The page: a partner person sees their own company's opportunities and commissions only;
/// finance sees commissions (not opportunities); the vendor admin sees everyone's.
#[tokio::test]
async fn the_programme_page_lists_only_what_the_database_shows_the_person() {
    let w = world().await;
    let a = opportunity(&w, w.alice, "Ay rollout", 1_500_000, "EUR").await;
    let a_commission = win(&w, w.alice, a.id).await.expect("commission");
    let b = opportunity(&w, w.bob, "Bee secret rollout", 100_000, "EUR").await;
    let b_commission = win(&w, w.bob, b.id).await.expect("commission");
    for u in [w.alice, w.bob, w.admin, w.finance] {
        with_password(&w.db, u).await;
    }
    let app = TestApp::new(&w.db).await;
    let page = |email: &'static str| {
        let app = &app;
        async move {
            let (browser, _) = app.anonymous().sign_in_browser("vendor", email).await;
            let r = browser.get("/programme").await;
            assert_eq!(r.status, StatusCode::OK, "{email}: {}", r.text);
            assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")), "{email}");
            r.text
        }
    };
    let alice = page("alice@partner-a.example").await;
    assert!(alice.contains("Ay rollout") && alice.contains(&a_commission.to_string()), "{alice}");
    assert!(alice.contains("1,100.00"), "A commission amount: {alice}");
    assert!(!alice.contains("Bee secret rollout") && !alice.contains(&b_commission.to_string()), "{alice}");
    assert!(alice.contains("href=\"/programme\""), "the navigation offers the page");
    let finance = page("fin@vendor.example").await;
    assert!(finance.contains(&a_commission.to_string()) && finance.contains(&b_commission.to_string()));
    assert!(!finance.contains("Ay rollout") && !finance.contains("opportunities-heading"), "{finance}");
    let admin = page("user0@vendor.example").await;
    assert!(admin.contains("Ay rollout") && admin.contains("Bee secret rollout"), "{admin}");
    // A member who may not read commissions is refused (staff, from the fixture).
    with_password(&w.db, staff(&w.db, w.t, "staffer@vendor.example", Role::Staff).await).await;
    let (browser, _) = app.anonymous().sign_in_browser("vendor", "staffer@vendor.example").await;
    let r = browser.get("/programme").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(!r.text.contains("Ay rollout"));
}

/// A PDF's page count (`pdfinfo`) and its text (`pdftotext -layout`), from poppler-utils, which
/// `.ci/run` installs: the file must parse as a PDF, not only start like one.
fn read_pdf(pdf: &[u8]) -> (u32, String) {
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF: {:?}", &pdf[..pdf.len().min(16)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("statement.pdf");
    std::fs::write(&path, pdf).expect("write");
    let info = std::process::Command::new("pdfinfo").arg(&path).output().expect("pdfinfo (poppler-utils)");
    assert!(info.status.success(), "pdfinfo: {}", String::from_utf8_lossy(&info.stderr));
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    let pages = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no page count: {info}"));
    let text =
        std::process::Command::new("pdftotext").args(["-layout"]).arg(&path).arg("-").output().expect("pdftotext");
    assert!(text.status.success(), "pdftotext: {}", String::from_utf8_lossy(&text.stderr));
    (pages, String::from_utf8_lossy(&text.stdout).into_owned())
}
