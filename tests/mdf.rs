//! Market development funds (issue 17), attacked: partner B reading, requesting from, claiming
//! against or adding proof to partner A's MDF (404, as for nothing); another organisation (404);
//! a partner approving its own request (403); a channel manager settling claims (403); the filer
//! approving their own claim (403, policy and table check); claiming more than approved (409
//! `claim_exceeds_approval`); approving past the budget (409 `budget_exceeded`); racing approvals
//! and racing claims for the last of a budget (exactly one wins); the totals written by hand
//! (refused by the database); raw SQL in a partner's scope (only its rows). And the journey:
//! budget from the tier's allowance → request → approved → claim with a proof file → approved →
//! paid, every step audited.

mod common;

use authz::{Action, Engine, Permit, Role, Subject};
use common::{TestApp, audit_count, org, partner_person, sqlstate, who, with_password};
use identity::EmailAddress;
use identity::directory::{memberships, users};
use programs::ProgramError;
use programs::mdf::{self, ClaimStep, Decision, NewBudget, NewClaim, NewRequest};
use reqwest::StatusCode;
use serde_json::json;
use store::testing::TestDb;
use store::{ProgramScope, TenantId, TenantTx};
use uuid::Uuid;

fn operator(action: Action, t: TenantId) -> Permit {
    Permit::operator(action, t.as_uuid())
}

async fn staff(db: &TestDb, t: TenantId, email: &str, role: Role) -> Uuid {
    let mut g = db.store.global_tx().await.expect("global tx");
    let u = users::create(&mut g, &who(), &EmailAddress::parse(email).expect("email"), email).await.expect("user");
    g.commit().await.expect("commit");
    let mut tx = db.store.tenant_tx(t).await.expect("tx");
    memberships::add(
        &mut tx,
        &who(),
        &memberships::NewMembership { user_id: u.id, role, department_id: None, valid_until: None },
    )
    .await
    .expect("membership");
    tx.commit().await.expect("commit");
    u.id
}

async fn as_member(db: &TestDb, t: TenantId, user: Uuid) -> TenantTx {
    db.store.program_tx(t, ProgramScope::Member(user)).await.expect("program tx")
}

struct World {
    db: TestDb,
    t: TenantId,
    other_admin: Uuid,
    finance: Uuid,
    channel: Uuid,
    channel2: Uuid,
    pa: Uuid,
    alice: Uuid,
    alan: Uuid,
    bob: Uuid,
    engine: Engine,
}

impl World {
    fn subject(&self, user: Uuid, role: Role) -> Subject {
        Subject { tenant: self.t.as_uuid(), user, role, department: None }
    }
}

/// A vendor with two partners (A: alice and alan, B: bob), finance and two channel managers; and
/// another organisation. The fixture's file rows (a data key no master key here opens) are
/// cleared, so uploads start from a fresh key.
async fn world() -> World {
    let db = TestDb::new().await;
    let o = org(&db, "vendor").await;
    let other = org(&db, "other").await;
    let mut admin = db.admin_conn().await;
    for sql in [
        "update document_attachments set blob_id = null",
        "delete from mdf_claim_proofs",
        "delete from blobs",
        "delete from blob_keys",
    ] {
        sqlx::query(sql).execute(&mut admin).await.expect(sql);
    }
    let (pa, pb) = (o.partners[0], o.partners[1]);
    let alice = partner_person(&db, o.id, pa, "alice@partner-a.example", Role::PartnerAdmin).await;
    let alan = partner_person(&db, o.id, pa, "alan@partner-a.example", Role::PartnerAgent).await;
    let bob = partner_person(&db, o.id, pb, "bob@partner-b.example", Role::PartnerAgent).await;
    let finance = staff(&db, o.id, "fin@vendor.example", Role::Finance).await;
    let channel = staff(&db, o.id, "cm@vendor.example", Role::ChannelManager).await;
    let channel2 = staff(&db, o.id, "cm2@vendor.example", Role::ChannelManager).await;
    World {
        db,
        t: o.id,
        other_admin: other.users[0],
        finance,
        channel,
        channel2,
        pa,
        alice,
        alan,
        bob,
        engine: Engine::load().expect("policies"),
    }
}

async fn budget(w: &World, partner: Uuid, period: &str, amount: i64) -> mdf::Budget {
    let mut tx = w.db.store.program_tx(w.t, ProgramScope::Vendor).await.expect("tx");
    let b = mdf::create_budget(
        &mut tx,
        &who(),
        &operator(Action::MdfBudgetManage, w.t),
        w.channel,
        &NewBudget { partner_id: partner, period: period.into(), currency: "EUR".into(), amount_minor: Some(amount) },
    )
    .await
    .expect("budget");
    tx.commit().await.expect("commit");
    b
}

async fn request(w: &World, user: Uuid, budget: Uuid, amount: i64) -> Result<mdf::Request, ProgramError> {
    let mut tx = as_member(&w.db, w.t, user).await;
    let r = mdf::request(
        &mut tx,
        &who(),
        &operator(Action::MdfRequest, w.t),
        user,
        &NewRequest { budget_id: budget, activity: "Partner webinar".into(), amount_minor: amount },
    )
    .await?;
    tx.commit().await.expect("commit");
    Ok(r)
}

async fn decide(w: &World, user: Uuid, role: Role, id: Uuid, d: Decision) -> Result<mdf::Request, ProgramError> {
    let mut tx = as_member(&w.db, w.t, user).await;
    let r =
        mdf::decide_request(&mut tx, &w.engine, &w.subject(user, role), &who(), id, d, Some("fits the plan")).await?;
    tx.commit().await.expect("commit");
    Ok(r)
}

async fn claim(w: &World, user: Uuid, request: Uuid, amount: i64) -> Result<mdf::Claim, ProgramError> {
    let mut tx = as_member(&w.db, w.t, user).await;
    let c = mdf::claim(
        &mut tx,
        &who(),
        &operator(Action::MdfClaim, w.t),
        user,
        &NewClaim { request_id: request, amount_minor: amount, description: "Webinar held, 40 attendees".into() },
    )
    .await?;
    tx.commit().await.expect("commit");
    Ok(c)
}

fn code(e: &ProgramError) -> &'static str {
    match e {
        ProgramError::Conflict { code, .. } | ProgramError::Forbidden { code, .. } => code,
        ProgramError::NotFound => "not_found",
        ProgramError::Denied(_) => "denied",
        ProgramError::Invalid { .. } => "invalid",
        _ => "other",
    }
}

// ---- The database's money rules, under concurrency. ----------------------------------------

/// Two partner people claim the last of an approved request at the same moment, many times:
/// exactly one wins each time, the loser is `claim_exceeds_approval`, and the request's total
/// never passes its approved amount.
#[tokio::test]
async fn two_claims_racing_for_the_last_of_a_request_exactly_one_wins() {
    let w = world().await;
    let b = budget(&w, w.pa, "2026-Q4", 1_000_000).await;
    for round in 0..8 {
        let r = request(&w, w.alice, b.id, 100_000).await.expect("request");
        decide(&w, w.channel, Role::ChannelManager, r.id, Decision::Approve).await.expect("approve");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = [w.alice, w.alan]
            .into_iter()
            .map(|user| {
                let (store, t, barrier, rid) = (w.db.store.clone(), w.t, barrier.clone(), r.id);
                tokio::spawn(async move {
                    let mut tx = store.program_tx(t, ProgramScope::Member(user)).await.expect("tx");
                    barrier.wait().await;
                    let c = mdf::claim(
                        &mut tx,
                        &who(),
                        &Permit::operator(Action::MdfClaim, t.as_uuid()),
                        user,
                        &NewClaim { request_id: rid, amount_minor: 60_000, description: "Booth at the fair".into() },
                    )
                    .await;
                    match c {
                        Ok(c) => tx.commit().await.map(|()| c.id).map_err(|e| e.to_string()),
                        Err(e) => Err(code(&e).to_owned()),
                    }
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.expect("task"));
        }
        let wins = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {outcomes:?}");
        assert!(outcomes.iter().any(|o| o.as_ref().err().map(String::as_str) == Some("claim_exceeds_approval")));
        let mut tx = as_member(&w.db, w.t, w.alice).await;
        let after = mdf::get_request(&mut tx, r.id).await.expect("request");
        assert_eq!(after.claimed_minor, 60_000, "round {round}");
    }
}

/// The same, deterministically: the first claim holds the request's row lock (uncommitted); the
/// second waits for it, then sees its total and is refused.
#[tokio::test]
async fn a_claim_waiting_on_a_racing_claim_sees_its_total_and_is_refused() {
    let w = world().await;
    let b = budget(&w, w.pa, "2026-Q4", 1_000_000).await;
    let r = request(&w, w.alice, b.id, 100_000).await.expect("request");
    decide(&w, w.channel, Role::ChannelManager, r.id, Decision::Approve).await.expect("approve");
    let mut first = as_member(&w.db, w.t, w.alice).await;
    let new = NewClaim { request_id: r.id, amount_minor: 70_000, description: "Print run".into() };
    mdf::claim(&mut first, &who(), &operator(Action::MdfClaim, w.t), w.alice, &new).await.expect("first");
    let (store, t, alan, rid) = (w.db.store.clone(), w.t, w.alan, r.id);
    let second = tokio::spawn(async move {
        let mut tx = store.program_tx(t, ProgramScope::Member(alan)).await.expect("tx");
        let new = NewClaim { request_id: rid, amount_minor: 40_000, description: "Mailing".into() };
        mdf::claim(&mut tx, &who(), &Permit::operator(Action::MdfClaim, t.as_uuid()), alan, &new).await.map(|_| ())
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the second claim must wait for the first's row lock");
    first.commit().await.expect("commit");
    let e = second.await.expect("task").expect_err("the second claim exceeds what is left");
    assert_eq!(code(&e), "claim_exceeds_approval", "{e}");
}

/// Two channel managers approve two requests that together exceed the budget, at once: exactly
/// one wins (`budget_exceeded` for the other) and the budget is never below zero.
#[tokio::test]
async fn two_approvals_racing_for_the_last_of_a_budget_exactly_one_wins() {
    let w = world().await;
    for round in 0..6 {
        let b = budget(&w, w.pa, &format!("202{}-Q{}", 7 + round / 4, round % 4 + 1), 100_000).await;
        let r1 = request(&w, w.alice, b.id, 60_000).await.expect("request 1");
        let r2 = request(&w, w.alan, b.id, 60_000).await.expect("request 2");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = [(w.channel, r1.id), (w.channel2, r2.id)]
            .into_iter()
            .map(|(user, id)| {
                let (store, t, barrier, engine) =
                    (w.db.store.clone(), w.t, barrier.clone(), Engine::load().expect("e"));
                tokio::spawn(async move {
                    let mut tx = store.program_tx(t, ProgramScope::Member(user)).await.expect("tx");
                    barrier.wait().await;
                    let s = Subject { tenant: t.as_uuid(), user, role: Role::ChannelManager, department: None };
                    match mdf::decide_request(&mut tx, &engine, &s, &who(), id, Decision::Approve, None).await {
                        Ok(_) => tx.commit().await.map_err(|e| e.to_string()),
                        Err(e) => Err(code(&e).to_owned()),
                    }
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.expect("task"));
        }
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "round {round}: {outcomes:?}");
        assert!(outcomes.iter().any(|o| o.as_ref().err().map(String::as_str) == Some("budget_exceeded")));
        let mut tx = as_member(&w.db, w.t, w.channel).await;
        let after = mdf::get_budget(&mut tx, b.id).await.expect("budget");
        assert_eq!((after.committed_minor, after.remaining_minor()), (60_000, 40_000), "round {round}");
    }
}

/// The totals are the database's: written by hand (even by the vendor's transaction) they are
/// refused; a claim inserted past the approved amount or against an unapproved request, or a
/// decision by the filer, is refused by the table checks even without the application.
#[tokio::test]
async fn the_totals_and_limits_hold_in_the_database_without_the_application() {
    let w = world().await;
    let b = budget(&w, w.pa, "2026-Q4", 100_000).await;
    let r = request(&w, w.alice, b.id, 50_000).await.expect("request");
    let pending = request(&w, w.alice, b.id, 10_000).await.expect("pending request");
    decide(&w, w.channel, Role::ChannelManager, r.id, Decision::Approve).await.expect("approve");
    let c = claim(&w, w.alice, r.id, 20_000).await.expect("claim");

    let mut tx = w.db.store.program_tx(w.t, ProgramScope::Vendor).await.expect("tx");
    for sql in [
        format!("update mdf_budgets set committed_minor = 0 where id = '{}'", b.id),
        format!("update mdf_requests set claimed_minor = 0 where id = '{}'", r.id),
    ] {
        let e = sqlx::query(&sql).execute(tx.conn()).await.expect_err("totals are not written");
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
        tx = w.db.store.program_tx(w.t, ProgramScope::Vendor).await.expect("tx");
    }
    // Budget shrunk below what is committed: refused.
    let e = sqlx::query("update mdf_budgets set amount_minor = 10000 where id = $1")
        .bind(b.id)
        .execute(tx.conn())
        .await
        .expect_err("never negative");
    assert_eq!(e.as_database_error().and_then(|d| d.constraint()), Some("mdf_budgets_never_negative"), "{e}");
    drop(tx);
    let cases = [
        (r.id, 30_001, "mdf_requests_claims_within_approval"),
        (pending.id, 1, "mdf_requests_claims_only_when_approved"),
    ];
    for (request, amount, constraint) in cases {
        let mut tx = as_member(&w.db, w.t, w.alice).await;
        let e = sqlx::query(
            "insert into mdf_claims (tenant_id, id, partner_id, request_id, currency, amount_minor, description, claimed_by)
             values ($1, gen_random_uuid(), $2, $3, 'EUR', $4, 'raw insert', $5)",
        )
        .bind(w.t.as_uuid())
        .bind(w.pa)
        .bind(request)
        .bind(amount)
        .bind(w.alice)
        .execute(tx.conn())
        .await
        .expect_err("refused");
        assert_eq!(e.as_database_error().and_then(|d| d.constraint()), Some(constraint), "{e}");
    }
    let mut tx = w.db.store.program_tx(w.t, ProgramScope::Vendor).await.expect("tx");
    let e = sqlx::query(
        "update mdf_claims set status = 'approved', decided_by = claimed_by, decided_at = now() where id = $1",
    )
    .bind(c.id)
    .execute(tx.conn())
    .await
    .expect_err("filer never decides");
    assert_eq!(e.as_database_error().and_then(|d| d.constraint()), Some("mdf_claims_filer_never_decides"), "{e}");
    drop(tx);
    // A rejected claim gives its amount back; the totals follow.
    let mut tx = as_member(&w.db, w.t, w.finance).await;
    let s = w.subject(w.finance, Role::Finance);
    mdf::settle_claim(&mut tx, &w.engine, &s, &who(), c.id, ClaimStep::Reject, Some("no attendee list"))
        .await
        .expect("reject");
    tx.commit().await.expect("commit");
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    assert_eq!(mdf::get_request(&mut tx, r.id).await.expect("request").claimed_minor, 0);
    assert_eq!(mdf::get_budget(&mut tx, b.id).await.expect("budget").committed_minor, 50_000);
}

/// Raw SQL in partner B's scope, without a WHERE: none of A's MDF rows; and B cannot write a row
/// for A (the WITH CHECK of partner_isolation).
#[tokio::test]
async fn raw_sql_in_partner_scope_sees_only_that_partners_mdf() {
    let w = world().await;
    let b = budget(&w, w.pa, "2026-Q4", 100_000).await;
    let r = request(&w, w.alice, b.id, 50_000).await.expect("request");
    decide(&w, w.channel, Role::ChannelManager, r.id, Decision::Approve).await.expect("approve");
    claim(&w, w.alice, r.id, 20_000).await.expect("claim");
    let pa = w.pa.to_string();
    for t in ["mdf_budgets", "mdf_requests", "mdf_claims", "mdf_claim_proofs"] {
        let mut tx = as_member(&w.db, w.t, w.bob).await;
        let theirs: i64 = sqlx::query_scalar(&format!("select count(*) from {t} where partner_id = '{pa}'"))
            .fetch_one(tx.conn())
            .await
            .expect("count");
        assert_eq!(theirs, 0, "{t}: bob sees partner A's rows");
        let mut tx = as_member(&w.db, w.t, w.alice).await;
        let mine: i64 =
            sqlx::query_scalar(&format!("select count(*) from {t}")).fetch_one(tx.conn()).await.expect("count");
        let other: i64 = sqlx::query_scalar(&format!("select count(*) from {t} where partner_id <> '{pa}'"))
            .fetch_one(tx.conn())
            .await
            .expect("count");
        assert_eq!(other, 0, "{t}");
        if t != "mdf_claim_proofs" {
            assert!(mine > 0, "{t}: alice sees her own");
        }
    }
    let mut tx = as_member(&w.db, w.t, w.bob).await;
    let e = sqlx::query(
        "insert into mdf_requests (tenant_id, id, partner_id, budget_id, currency, activity, amount_minor, requested_by)
         values ($1, gen_random_uuid(), $2, $3, 'EUR', 'on their budget', 100, $4)",
    )
    .bind(w.t.as_uuid())
    .bind(w.pa)
    .bind(b.id)
    .bind(w.bob)
    .execute(tx.conn())
    .await
    .expect_err("with check");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    // In the domain: B's person reading, requesting from or claiming against A's is not found.
    let mut tx = as_member(&w.db, w.t, w.bob).await;
    assert!(matches!(mdf::get_budget(&mut tx, b.id).await, Err(ProgramError::NotFound)));
    assert!(matches!(mdf::get_request(&mut tx, r.id).await, Err(ProgramError::NotFound)));
    drop(tx);
    assert!(matches!(request(&w, w.bob, b.id, 10).await, Err(ProgramError::NotFound)));
    assert!(matches!(claim(&w, w.bob, r.id, 10).await, Err(ProgramError::NotFound)));
}

/// Separation of duties in the domain: a partner person never decides (even its own company's
/// request), and the filer is refused by the policy engine whatever role they are given.
#[tokio::test]
async fn partners_and_filers_never_decide_and_the_state_machine_holds() {
    let w = world().await;
    let b = budget(&w, w.pa, "2026-Q4", 100_000).await;
    let r = request(&w, w.alice, b.id, 50_000).await.expect("request");
    let e = decide(&w, w.alice, Role::PartnerAdmin, r.id, Decision::Approve).await.expect_err("partner");
    let ProgramError::Denied(d) = &e else { panic!("{e}") };
    assert!(d.forbidden_by.contains(&"partners-never-decide-mdf".to_owned()), "{d:?}");
    assert!(d.forbidden_by.contains(&"filer-never-decides-mdf".to_owned()), "{d:?}");
    // The requester, had they a vendor role, is still refused by the filer rule.
    let mut tx = w.db.store.program_tx(w.t, ProgramScope::Vendor).await.expect("tx");
    let e = mdf::decide_request(
        &mut tx,
        &w.engine,
        &w.subject(w.alice, Role::ChannelManager),
        &who(),
        r.id,
        Decision::Approve,
        None,
    )
    .await
    .expect_err("filer");
    let ProgramError::Denied(d) = &e else { panic!("{e}") };
    assert_eq!(d.forbidden_by, vec!["filer-never-decides-mdf".to_owned()]);
    drop(tx);
    // Finance does not decide requests; channel managers do not settle claims.
    let e = decide(&w, w.finance, Role::Finance, r.id, Decision::Approve).await.expect_err("finance");
    assert!(matches!(e, ProgramError::Denied(_)), "{e}");
    decide(&w, w.channel, Role::ChannelManager, r.id, Decision::Approve).await.expect("approve");
    let e = decide(&w, w.channel, Role::ChannelManager, r.id, Decision::Reject).await.expect_err("final");
    assert_eq!(code(&e), "transition_not_allowed");
    let c = claim(&w, w.alan, r.id, 10_000).await.expect("claim");
    let mut tx = as_member(&w.db, w.t, w.channel).await;
    let s = w.subject(w.channel, Role::ChannelManager);
    let e = mdf::settle_claim(&mut tx, &w.engine, &s, &who(), c.id, ClaimStep::Approve, None).await.expect_err("cm");
    assert!(matches!(e, ProgramError::Denied(_)), "{e}");
    drop(tx);
    // The filer as finance: refused by the policy engine.
    let mut tx = w.db.store.program_tx(w.t, ProgramScope::Vendor).await.expect("tx");
    let s = w.subject(w.alan, Role::Finance);
    let e = mdf::settle_claim(&mut tx, &w.engine, &s, &who(), c.id, ClaimStep::Approve, None).await.expect_err("filer");
    let ProgramError::Denied(d) = &e else { panic!("{e}") };
    assert_eq!(d.forbidden_by, vec!["filer-never-decides-mdf".to_owned()]);
    drop(tx);
    // Finance: no proof, no approval; not approved, no payment.
    let mut tx = as_member(&w.db, w.t, w.finance).await;
    let s = w.subject(w.finance, Role::Finance);
    let e = mdf::settle_claim(&mut tx, &w.engine, &s, &who(), c.id, ClaimStep::Pay, None).await.expect_err("pay");
    assert_eq!(code(&e), "transition_not_allowed");
    let e = mdf::settle_claim(&mut tx, &w.engine, &s, &who(), c.id, ClaimStep::Approve, None).await.expect_err("proof");
    assert_eq!(code(&e), "proof_required");
    let e = mdf::settle_claim(&mut tx, &w.engine, &s, &who(), c.id, ClaimStep::Reject, None).await.expect_err("reason");
    assert_eq!(code(&e), "invalid");
}

// ---- Over HTTP: the journey, and the same attacks through the API's guards. -----------------

async fn upload_proof(
    app: &TestApp,
    who: &common::Client,
    claim: &str,
    name: &str,
    bytes: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(app.url(&format!("/api/v1/programme/mdf/claims/{claim}/proofs?name={name}")))
        .bearer_auth(who.access_token())
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("send");
    let status = r.status();
    (status, r.json().await.unwrap_or_default())
}

fn pdf(n: usize) -> Vec<u8> {
    let mut b = b"%PDF-1.7\n".to_vec();
    b.resize(n, b'x');
    b
}

#[tokio::test]
async fn over_http_budget_request_claim_with_proof_approved_and_paid_with_the_attacks_refused() {
    let w = world().await;
    for u in [w.alice, w.bob, w.finance, w.channel] {
        with_password(&w.db, u).await;
    }
    let app = TestApp::setup(&w.db).roomy().start().await;
    let alice = app.sign_in("vendor", "alice@partner-a.example").await;
    let bob = app.sign_in("vendor", "bob@partner-b.example").await;
    let finance = app.sign_in("vendor", "fin@vendor.example").await;
    let channel = app.sign_in("vendor", "cm@vendor.example").await;
    with_password(&w.db, w.other_admin).await;
    let outsider = app.sign_in("other", "user0@other.example").await;

    // The vendor sets the registered tier's allowance; a budget without an amount takes it.
    let r = alice
        .put(
            "/api/v1/programme/mdf/allowances",
            json!({"tier": "registered", "currency": "EUR", "amountMinor": 100_000}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "partners set no allowance: {r}");
    let r = channel
        .put(
            "/api/v1/programme/mdf/allowances",
            json!({"tier": "registered", "currency": "EUR", "amountMinor": 100_000}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let r = channel
        .post("/api/v1/programme/mdf/budgets", json!({"partnerId": w.pa, "period": "2026-Q4", "currency": "EUR"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    assert_eq!(r.body["amountMinor"], 100_000, "from the tier's allowance: {r}");
    let bid = r.body["id"].as_str().expect("id").to_owned();
    let again = channel
        .post(
            "/api/v1/programme/mdf/budgets",
            json!({"partnerId": w.pa, "period": "2026-Q4", "currency": "EUR", "amountMinor": 5}),
        )
        .await;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "budget_exists"), "{again}");
    let bad = channel
        .post("/api/v1/programme/mdf/budgets", json!({"partnerId": w.pa, "period": "2026-Q5", "currency": "EUR"}))
        .await;
    assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"), "{bad}");

    // B and another organisation: A's budget does not exist for them.
    let theirs = bob.get(&format!("/api/v1/programme/mdf/budgets/{bid}")).await;
    let none = bob.get(&format!("/api/v1/programme/mdf/budgets/{}", Uuid::now_v7())).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{theirs}");
    assert_eq!((theirs.status, theirs.body.clone()), (none.status, none.body.clone()), "indistinguishable");
    assert_eq!(outsider.get(&format!("/api/v1/programme/mdf/budgets/{bid}")).await.status, StatusCode::NOT_FOUND);
    let list = bob.get("/api/v1/programme/mdf/budgets").await;
    assert!(!list.text.contains(&bid), "{list}");
    let r = bob
        .post("/api/v1/programme/mdf/requests", json!({"budgetId": bid, "activity": "Theirs", "amountMinor": 10}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");

    // Alice requests; she cannot approve her own request; finance cannot either.
    let r = alice
        .post(
            "/api/v1/programme/mdf/requests",
            json!({"budgetId": bid, "activity": "Partner summit booth", "amountMinor": 60_000}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    let rid = r.body["id"].as_str().expect("id").to_owned();
    let r2 = alice
        .post(
            "/api/v1/programme/mdf/requests",
            json!({"budgetId": bid, "activity": "Direct mail", "amountMinor": 50_000}),
        )
        .await;
    assert_eq!(r2.status, StatusCode::CREATED, "{r2}");
    let rid2 = r2.body["id"].as_str().expect("id").to_owned();
    let over = alice
        .post(
            "/api/v1/programme/mdf/requests",
            json!({"budgetId": bid, "activity": "Too much", "amountMinor": 100_001}),
        )
        .await;
    assert_eq!((over.status, over.code()), (StatusCode::CONFLICT, "budget_exceeded"), "{over}");
    let own = alice.post(&format!("/api/v1/programme/mdf/requests/{rid}/approve"), json!({})).await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{own}");
    let forbidden = own.body["error"]["details"]["forbidden_by"].as_array().cloned().unwrap_or_default();
    assert!(
        forbidden.contains(&json!("filer-never-decides-mdf"))
            && forbidden.contains(&json!("partners-never-decide-mdf")),
        "{own}"
    );
    let r = finance.post(&format!("/api/v1/programme/mdf/requests/{rid}/approve"), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    let r = outsider.post(&format!("/api/v1/programme/mdf/requests/{rid}/approve"), json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another organisation: {r}");

    // The channel manager approves the first; the second no longer fits; it is rejected.
    let r =
        channel.post(&format!("/api/v1/programme/mdf/requests/{rid}/approve"), json!({"reason": "fits Q4 plan"})).await;
    assert_eq!((r.status, r.body["status"].clone()), (StatusCode::OK, json!("approved")), "{r}");
    let r = channel.post(&format!("/api/v1/programme/mdf/requests/{rid2}/approve"), ()).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "budget_exceeded"), "{r}");
    let r = channel.post(&format!("/api/v1/programme/mdf/requests/{rid2}/reject"), json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"), "a reason: {r}");
    let r =
        channel.post(&format!("/api/v1/programme/mdf/requests/{rid2}/reject"), json!({"reason": "budget spent"})).await;
    assert_eq!((r.status, r.body["status"].clone()), (StatusCode::OK, json!("rejected")), "{r}");
    let r = channel
        .post(&format!("/api/v1/programme/mdf/requests/{rid}/reject"), json!({"reason": "changed my mind"}))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "transition_not_allowed"), "{r}");
    let b = alice.get(&format!("/api/v1/programme/mdf/budgets/{bid}")).await;
    assert_eq!(
        (b.body["committedMinor"].clone(), b.body["amountMinor"].clone()),
        (json!(60_000), json!(100_000)),
        "{b}"
    );

    // Claims: more than approved, or against the rejected request: 409 with stable codes.
    let claim_body = |request: &str, amount: i64| json!({"requestId": request, "amountMinor": amount, "description": "Booth staffed two days"});
    let r = alice.post("/api/v1/programme/mdf/claims", claim_body(&rid, 60_001)).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "claim_exceeds_approval"), "{r}");
    let r = alice.post("/api/v1/programme/mdf/claims", claim_body(&rid2, 1)).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "request_not_approved"), "{r}");
    let r = bob.post("/api/v1/programme/mdf/claims", claim_body(&rid, 1)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    let r = channel.post("/api/v1/programme/mdf/claims", claim_body(&rid, 1)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "only partners claim: {r}");
    let r = alice.post("/api/v1/programme/mdf/claims", claim_body(&rid, 60_000)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    let cid = r.body["id"].as_str().expect("id").to_owned();

    // Proof: B cannot add to A's claim; finance cannot approve without proof.
    let (s, _) = upload_proof(&app, &bob, &cid, "theirs.pdf", pdf(2_000)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let r = finance.post(&format!("/api/v1/programme/mdf/claims/{cid}/approve"), json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "proof_required"), "{r}");
    let (s, exe) = upload_proof(&app, &alice, &cid, "photo.pdf", b"MZ\x90\x00\x03\x00\x00\x00".repeat(100)).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{exe}");
    let proof_bytes = pdf(5_000);
    let (s, proof) = upload_proof(&app, &alice, &cid, "booth photos.pdf", proof_bytes.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{proof}");
    let pid = proof["id"].as_str().expect("proof id").to_owned();
    let c = finance.get(&format!("/api/v1/programme/mdf/claims/{cid}")).await;
    assert_eq!(c.body["proofs"][0]["name"], "booth photos.pdf", "{c}");
    let (s, _, got) = finance.get_bytes(&format!("/api/v1/programme/mdf/claims/{cid}/proofs/{pid}")).await;
    assert_eq!((s, got == proof_bytes), (StatusCode::OK, true));
    let (s, _, _) = bob.get_bytes(&format!("/api/v1/programme/mdf/claims/{cid}/proofs/{pid}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(bob.get(&format!("/api/v1/programme/mdf/claims/{cid}")).await.status, StatusCode::NOT_FOUND);

    // The filer and the channel manager never settle; finance pays only what is approved.
    let r = alice.post(&format!("/api/v1/programme/mdf/claims/{cid}/approve"), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    assert!(r.text.contains("filer-never-decides-mdf"), "{r}");
    let r = channel.post(&format!("/api/v1/programme/mdf/claims/{cid}/approve"), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    let r = finance.post(&format!("/api/v1/programme/mdf/claims/{cid}/pay"), json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "transition_not_allowed"), "{r}");
    let r =
        finance.post(&format!("/api/v1/programme/mdf/claims/{cid}/approve"), json!({"reason": "photos match"})).await;
    assert_eq!((r.status, r.body["status"].clone()), (StatusCode::OK, json!("approved")), "{r}");
    let r = finance.post(&format!("/api/v1/programme/mdf/claims/{cid}/pay"), ()).await;
    assert_eq!((r.status, r.body["status"].clone()), (StatusCode::OK, json!("paid")), "{r}");
    let r = alice.get(&format!("/api/v1/programme/mdf/claims/{cid}")).await;
    assert_eq!(r.body["status"], "paid", "{r}");
    let (s, _) = upload_proof(&app, &alice, &cid, "late.pdf", pdf(100)).await;
    assert_eq!(s, StatusCode::CONFLICT, "a paid claim takes no more proof");

    // Every step is in the ledger, with its deltas.
    for (action, n) in [
        ("mdf_allowance.set", 1),
        ("mdf_budget.created", 1),
        ("mdf_request.created", 2),
        ("mdf_request.approved", 1),
        ("mdf_request.rejected", 1),
        ("mdf_claim.filed", 1),
        ("mdf_claim.proof_added", 1),
        ("mdf_claim.approved", 1),
        ("mdf_claim.paid", 1),
        ("file.uploaded", 1),
    ] {
        assert_eq!(audit_count(&w.db, w.t, action).await, n, "{action}");
    }
    let mut admin = w.db.admin_conn().await;
    let changes: String = sqlx::query_scalar(
        "select changes::text from audit_events where tenant_id = $1 and action = 'mdf_claim.paid' and entity_id = $2",
    )
    .bind(w.t.as_uuid())
    .bind(&cid)
    .fetch_one(&mut admin)
    .await
    .expect("paid event");
    assert!(changes.contains("approved") && changes.contains("paid"), "{changes}");

    // The request's status there too; rows unchanged by all the refusals.
    let r = alice.get(&format!("/api/v1/programme/mdf/requests/{rid}")).await;
    assert_eq!((r.body["status"].clone(), r.body["claimedMinor"].clone()), (json!("approved"), json!(60_000)), "{r}");
}
