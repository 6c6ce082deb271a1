//! Partner programmes (issue 17), attacked at the domain and database level: partner A never
//! sees partner B's rows (even through SQL without a WHERE), no partner decides a deal, a partner
//! of one vendor sees nothing of another, conflicts are flagged without telling the partner whose,
//! exports hold only the caller's rows, and approvals expire by themselves.

mod common;

use authz::{Action, Engine, Permit, Resource, Role, Subject};
use common::{org, partner_person, who};
use programs::deals::{self, DealStatus, Decision, NewDeal};
use programs::leads::{self, NewLead};
use programs::partners;
use programs::{ProgramError, Scope};
use store::testing::TestDb;
use store::{ProgramScope, TenantId, TenantTx};
use uuid::Uuid;

fn operator(action: Action, t: TenantId) -> Permit {
    Permit::operator(action, t.as_uuid())
}

async fn as_member(db: &TestDb, t: TenantId, user: Uuid) -> TenantTx {
    db.store.program_tx(t, ProgramScope::Member(user)).await.expect("program tx")
}

fn deal(company: &str, domain: &str) -> NewDeal {
    NewDeal {
        customer_company: company.into(),
        customer_domain: domain.into(),
        amount_minor: 1_234_500,
        currency: "EUR".into(),
        expected_close: chrono::Utc::now().date_naive() + chrono::Days::new(30),
    }
}

async fn register(db: &TestDb, t: TenantId, user: Uuid, d: &NewDeal) -> deals::Deal {
    let mut tx = as_member(db, t, user).await;
    let r = deals::register(&mut tx, &who(), &operator(Action::DealRegister, t), user, d).await.expect("register");
    tx.commit().await.expect("commit");
    r
}

struct World {
    db: TestDb,
    t: TenantId,
    admin: Uuid,
    pa: Uuid,
    pb: Uuid,
    alice: Uuid,
    bob: Uuid,
}

async fn world() -> World {
    let db = TestDb::new().await;
    let o = org(&db, "vendor").await;
    let (pa, pb) = (o.partners[0], o.partners[1]);
    let alice = partner_person(&db, o.id, pa, "alice@partner-a.example", Role::PartnerAdmin).await;
    let bob = partner_person(&db, o.id, pb, "bob@partner-b.example", Role::PartnerAgent).await;
    World { t: o.id, admin: o.users[0], db, pa, pb, alice, bob }
}

#[tokio::test]
async fn the_scope_follows_the_callers_own_membership() {
    let w = world().await;
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    assert_eq!(programs::scope(&mut tx).await.expect("scope"), Scope::Partner(w.pa));
    drop(tx);
    let mut tx = as_member(&w.db, w.t, w.admin).await;
    assert_eq!(programs::scope(&mut tx).await.expect("scope"), Scope::Vendor);
    drop(tx);
    // A stranger (no membership here): no scope, nothing visible.
    let mut tx = as_member(&w.db, w.t, Uuid::now_v7()).await;
    assert!(matches!(programs::scope(&mut tx).await, Err(ProgramError::NotFound)));
    assert!(deals::list(&mut tx, 500).await.expect("list").is_empty());
    drop(tx);
    // An ended partner membership sees nothing either.
    let mut admin = w.db.admin_conn().await;
    sqlx::query("update memberships set status = 'ended' where user_id = $1")
        .bind(w.bob)
        .execute(&mut admin)
        .await
        .expect("end");
    let mut tx = as_member(&w.db, w.t, w.bob).await;
    assert!(deals::list(&mut tx, 500).await.expect("list").is_empty());
    assert!(partners::list(&mut tx).await.expect("list").is_empty());
}

#[tokio::test]
async fn partner_a_fetching_partner_bs_deal_gets_the_same_not_found_as_a_missing_one() {
    let w = world().await;
    let b_deal = register(&w.db, w.t, w.bob, &deal("Bee Customer", "bee-customer.example")).await;
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    assert!(matches!(deals::get(&mut tx, b_deal.id).await, Err(ProgramError::NotFound)));
    assert!(matches!(deals::get(&mut tx, Uuid::now_v7()).await, Err(ProgramError::NotFound)));
    // Nor can A decide, re-register over, or see B's partner record.
    assert!(matches!(partners::get(&mut tx, w.pb).await, Err(ProgramError::NotFound)));
    assert_eq!(partners::list(&mut tx).await.expect("list").iter().map(|p| p.id).collect::<Vec<_>>(), [w.pa]);
    drop(tx);
    // B sees it.
    let mut tx = as_member(&w.db, w.t, w.bob).await;
    assert_eq!(deals::get(&mut tx, b_deal.id).await.expect("own").id, b_deal.id);
}

#[tokio::test]
async fn partner_lists_only_its_own_deals_and_leads() {
    let w = world().await;
    let a = register(&w.db, w.t, w.alice, &deal("Ay Customer", "ay-customer.example")).await;
    let b = register(&w.db, w.t, w.bob, &deal("Bee Customer", "bee-customer.example")).await;
    for (user, lead) in [(w.alice, "Lead A"), (w.bob, "Lead B")] {
        let mut tx = as_member(&w.db, w.t, user).await;
        let new = NewLead {
            company_name: lead.into(),
            customer_domain: None,
            contact_name: None,
            contact_email: None,
            notes: None,
        };
        leads::register(&mut tx, &who(), &operator(Action::LeadRegister, w.t), user, &new).await.expect("lead");
        tx.commit().await.expect("commit");
    }
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    let ds = deals::list(&mut tx, 500).await.expect("list");
    assert!(ds.iter().all(|d| d.partner_id == Some(w.pa)), "{ds:?}");
    assert!(ds.iter().any(|d| d.id == a.id) && !ds.iter().any(|d| d.id == b.id));
    let ls = leads::page(&mut tx, None, 1000).await.expect("leads");
    assert!(!ls.is_empty() && ls.iter().all(|l| l.partner_id == w.pa), "{ls:?}");
    drop(tx);
    // The vendor sees everyone's, including its own sales' registration from the fixture.
    let mut tx = as_member(&w.db, w.t, w.admin).await;
    let ds = deals::list(&mut tx, 500).await.expect("list");
    assert!(ds.iter().any(|d| d.id == a.id) && ds.iter().any(|d| d.id == b.id));
    assert!(ds.iter().any(|d| d.partner_id.is_none()));
}

/// The database proof: SQL with no WHERE clause at all, in partner A's transaction, returns only
/// partner A's rows on every partner table.
#[tokio::test]
async fn raw_sql_without_where_in_partner_scope_returns_only_that_partners_rows() {
    let w = world().await;
    register(&w.db, w.t, w.bob, &deal("Bee Customer", "bee-customer.example")).await;
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    for (table, col) in [
        ("partners", "id"),
        ("partner_leads", "partner_id"),
        ("deal_registrations", "partner_id"),
        ("deal_conflicts", "partner_id"),
    ] {
        let owners: Vec<Option<Uuid>> =
            sqlx::query_scalar(&format!("select {col} from {table}")).fetch_all(tx.conn()).await.expect("select");
        assert!(owners.iter().all(|o| *o == Some(w.pa)), "{table}: {owners:?}");
        if table != "deal_conflicts" {
            assert!(!owners.is_empty(), "{table}: A's own rows are visible");
        }
    }
    // And the scope cannot be widened from inside by a forged setting of another partner's id
    // while the transaction keeps the tenant: a raw set_config is the only way, and the
    // application never issues one (the store sets it once, from the membership).
}

#[tokio::test]
async fn no_partner_person_can_approve_a_deal_not_even_with_a_permit() {
    let w = world().await;
    let d = register(&w.db, w.t, w.alice, &deal("Ay Customer", "ay-customer.example")).await;
    // The policy engine says no to partner roles (a forbid, whatever else permits).
    let engine = Engine::load().expect("policies");
    for role in [Role::PartnerAdmin, Role::PartnerAgent] {
        let s = Subject { user: w.alice, tenant: w.t.as_uuid(), role, department: None };
        let denied = engine
            .decide(&s, Action::DealDecide, &Resource::Organisation { tenant: w.t.as_uuid() })
            .expect_err("partners never decide");
        assert_eq!(denied.forbidden_by, ["partners-never-decide"]);
    }
    // And the domain refuses a partner-scope transaction even holding a (forged) permit.
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    let e =
        deals::decide(&mut tx, &who(), &operator(Action::DealDecide, w.t), w.alice, d.id, Decision::Approve, "mine")
            .await
            .expect_err("refused");
    assert!(matches!(e, ProgramError::Forbidden { code: "partners_never_decide", .. }), "{e:?}");
    drop(tx);
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    assert_eq!(deals::get(&mut tx, d.id).await.expect("deal").status, DealStatus::Submitted);
}

#[tokio::test]
async fn a_partner_of_vendor_x_sees_nothing_of_vendor_y() {
    let w = world().await;
    let y = org(&w.db, "othervendor").await;
    // Alice holds no membership in Y: her scope there is none.
    let mut tx = as_member(&w.db, y.id, w.alice).await;
    assert!(deals::list(&mut tx, 500).await.expect("list").is_empty());
    assert!(partners::list(&mut tx).await.expect("list").is_empty());
    assert!(leads::page(&mut tx, None, 1000).await.expect("leads").is_empty());
    let n: i64 = sqlx::query_scalar("select count(*) from deal_registrations").fetch_one(tx.conn()).await.expect("n");
    assert_eq!(n, 0);
    drop(tx);
    // Even a partner id of X forced as Y's scope: the tenant wall holds (no row of Y has it).
    let mut tx = w.db.store.tenant_tx(y.id).await.expect("tx");
    sqlx::query("select set_config('app.partner_scope', $1, true)")
        .bind(w.pa.to_string())
        .execute(tx.conn())
        .await
        .expect("set");
    let n: i64 = sqlx::query_scalar("select count(*) from deal_registrations").fetch_one(tx.conn()).await.expect("n");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_conflicting_registration_is_flagged_and_the_partner_is_not_told_whose() {
    let w = world().await;
    let first = register(&w.db, w.t, w.alice, &deal("Contoso Ltd.", "contoso.example")).await;
    assert_eq!(first.status, DealStatus::Submitted);
    // Same domain by partner B; and the same company name spelt differently by B.
    let by_domain = register(&w.db, w.t, w.bob, &deal("Whatever Inc", "contoso.example")).await;
    let by_name = register(&w.db, w.t, w.bob, &deal("CONTOSO LTD", "other-contoso.example")).await;
    for d in [&by_domain, &by_name] {
        assert_eq!(d.status, DealStatus::Conflict);
        assert_eq!(d.conflicts_with, None, "the partner is never told whose");
        let json = serde_json::to_value(d).expect("json");
        assert!(json.get("conflictsWith").is_none(), "{json}");
        assert!(!json.to_string().contains(&first.id.to_string()));
    }
    // The partner's own transaction cannot find the conflict records at all.
    let mut tx = as_member(&w.db, w.t, w.bob).await;
    let n: i64 = sqlx::query_scalar("select count(*) from deal_conflicts").fetch_one(tx.conn()).await.expect("n");
    assert_eq!(n, 0);
    drop(tx);
    // The vendor sees which.
    let mut tx = as_member(&w.db, w.t, w.admin).await;
    let seen = deals::get(&mut tx, by_domain.id).await.expect("vendor");
    assert_eq!(seen.conflicts_with, Some(vec![first.id]));
    drop(tx);
    // The same partner registering the same customer again is no conflict with itself.
    let again = register(&w.db, w.t, w.alice, &deal("Contoso", "contoso.example")).await;
    let mut tx = as_member(&w.db, w.t, w.admin).await;
    let seen = deals::get(&mut tx, again.id).await.expect("vendor");
    assert!(seen.conflicts_with.as_ref().is_some_and(|c| !c.contains(&first.id)), "{seen:?}");
    drop(tx);
    // The vendor's own sales count too.
    let mut tx = as_member(&w.db, w.t, w.admin).await;
    let own = deals::register(
        &mut tx,
        &who(),
        &operator(Action::DealRegister, w.t),
        w.admin,
        &deal("Fabrikam", "fabrikam.example"),
    )
    .await
    .expect("own");
    tx.commit().await.expect("commit");
    assert_eq!(own.partner_id, None);
    let late = register(&w.db, w.t, w.alice, &deal("Fabrikam", "fabrikam.example")).await;
    assert_eq!(late.status, DealStatus::Conflict);
}

#[tokio::test]
async fn csv_export_holds_only_the_callers_rows_and_neutralises_formulas() {
    let w = world().await;
    for (user, name) in [(w.alice, "=cmd|' /C calc'!A0"), (w.bob, "Bee Lead")] {
        let mut tx = as_member(&w.db, w.t, user).await;
        let new = NewLead {
            company_name: name.into(),
            customer_domain: None,
            contact_name: Some("@SUM(A1)".into()),
            contact_email: None,
            notes: Some("+1+1".into()),
        };
        leads::register(&mut tx, &who(), &operator(Action::LeadRegister, w.t), user, &new).await.expect("lead");
        tx.commit().await.expect("commit");
    }
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    let mut out = leads::csv_header().expect("header");
    for l in leads::page(&mut tx, None, 1000).await.expect("page") {
        out.extend(leads::csv_record(&l).expect("record"));
    }
    let text = String::from_utf8(out).expect("utf8");
    assert!(text.starts_with("id,partner_id,company_name"), "{text}");
    assert!(!text.contains("Bee Lead") && !text.contains(&w.pb.to_string()), "{text}");
    assert!(text.contains("'=cmd|"), "{text}");
    assert!(text.contains("'@SUM(A1)") && text.contains("'+1+1"), "{text}");
    for line in text.lines().skip(1) {
        for cell in line.split(',') {
            let c = cell.trim_start_matches('"');
            assert!(!c.starts_with(['=', '+', '@']), "unneutralised cell {cell} in {line}");
        }
    }
}

#[tokio::test]
async fn an_approval_protects_for_the_programme_window_and_then_expires_by_itself() {
    let w = world().await;
    let mut admin = w.db.admin_conn().await;
    sqlx::query("update program_settings set deal_protection_days = 30 where tenant_id = $1")
        .bind(w.t.as_uuid())
        .execute(&mut admin)
        .await
        .expect("settings");
    let d = register(&w.db, w.t, w.alice, &deal("Northwind", "northwind.example")).await;
    let mut tx = as_member(&w.db, w.t, w.admin).await;
    let permit = operator(Action::DealDecide, w.t);
    let e = deals::decide(&mut tx, &who(), &permit, w.admin, d.id, Decision::Approve, "")
        .await
        .expect_err("reason required");
    assert!(matches!(e, ProgramError::Invalid { field: "reason", .. }));
    let approved = deals::decide(&mut tx, &who(), &permit, w.admin, d.id, Decision::Approve, "known account")
        .await
        .expect("approve");
    tx.commit().await.expect("commit");
    assert_eq!(approved.status, DealStatus::Approved);
    let until = approved.protected_until.expect("protected");
    let days = (until - chrono::Utc::now()).num_hours();
    assert!((29 * 24..=30 * 24).contains(&days), "{days} hours");
    // Deciding twice is refused.
    let mut tx = as_member(&w.db, w.t, w.admin).await;
    let e = deals::decide(&mut tx, &who(), &permit, w.admin, d.id, Decision::Reject, "changed my mind")
        .await
        .expect_err("decided");
    assert!(matches!(e, ProgramError::Conflict { code: "transition_not_allowed", .. }));
    drop(tx);
    // Time passes (the protection ends in the past): it reads as expired at once...
    sqlx::query("update deal_registrations set protected_until = now() - interval '1 second' where id = $1")
        .bind(d.id)
        .execute(&mut admin)
        .await
        .expect("age");
    let mut tx = as_member(&w.db, w.t, w.alice).await;
    assert_eq!(deals::get(&mut tx, d.id).await.expect("deal").status, DealStatus::Expired);
    drop(tx);
    // ...and the sweep writes it, audited.
    assert_eq!(deals::expire_due(&w.db.store).await.expect("sweep"), 1);
    let (status, events): (String, i64) = sqlx::query_as(
        "select d.status, (select count(*) from audit_events e where e.tenant_id = d.tenant_id
                             and e.action in ('deal.expired', 'deal.approved') and e.entity_id = d.id::text)
           from deal_registrations d where d.id = $1",
    )
    .bind(d.id)
    .fetch_one(&mut admin)
    .await
    .expect("row");
    assert_eq!((status.as_str(), events), ("expired", 2));
    assert_eq!(deals::expire_due(&w.db.store).await.expect("sweep"), 0);
    // An expired registration is no longer protected: another partner's is no conflict.
    let later = register(&w.db, w.t, w.bob, &deal("Northwind", "northwind.example")).await;
    assert_eq!(later.status, DealStatus::Submitted);
}

#[tokio::test]
async fn partner_roles_are_granted_only_with_a_partner() {
    let w = world().await;
    let mut admin = w.db.admin_conn().await;
    let e = sqlx::query("update memberships set partner_id = null where user_id = $1")
        .bind(w.alice)
        .execute(&mut admin)
        .await
        .expect_err("check");
    assert!(e.to_string().contains("memberships_partner_role"), "{e}");
    assert!(!identity::admin::members::may_grant(Role::Owner, Role::PartnerAdmin));
    assert!(!identity::admin::members::may_grant(Role::Admin, Role::PartnerAgent));
    assert!(identity::admin::members::may_grant(Role::Admin, Role::ChannelManager));
}

// ---- Over HTTP: the same attacks through the API's guards. ----

use common::{TestApp, with_password};
use reqwest::StatusCode;
use serde_json::json;

fn deal_body(company: &str, domain: &str) -> serde_json::Value {
    let close = (chrono::Utc::now().date_naive() + chrono::Days::new(30)).to_string();
    json!({"customerCompany": company, "customerDomain": domain, "amountMinor": 500_000, "currency": "EUR", "expectedClose": close})
}

#[tokio::test]
async fn over_http_partner_a_gets_404_for_partner_bs_deal_and_lists_only_its_own() {
    let w = world().await;
    for u in [w.alice, w.bob, w.admin] {
        with_password(&w.db, u).await;
    }
    let app = TestApp::new(&w.db).await;
    let alice = app.anonymous().sign_in("vendor", "alice@partner-a.example").await;
    let bob = app.anonymous().sign_in("vendor", "bob@partner-b.example").await;
    let r = bob.post("/api/v1/deals", deal_body("Bee Customer", "bee-customer.example")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    let b_id = r.body["id"].as_str().expect("id").to_owned();
    let r = alice.post("/api/v1/deals", deal_body("Ay Customer", "ay-customer.example")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");

    let theirs = alice.get(&format!("/api/v1/deals/{b_id}")).await;
    let none = alice.get(&format!("/api/v1/deals/{}", Uuid::now_v7())).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{theirs}");
    assert_eq!((theirs.status, theirs.body.clone()), (none.status, none.body.clone()), "indistinguishable");
    let list = alice.get("/api/v1/deals").await;
    assert_eq!(list.status, StatusCode::OK, "{list}");
    let items = list.body["items"].as_array().expect("items");
    assert!(!items.is_empty());
    assert!(items.iter().all(|d| d["partnerId"] == json!(w.pa.to_string())), "{list}");
    // Partners do not manage the programme.
    assert_eq!(alice.get("/api/v1/programme/partners").await.status, StatusCode::FORBIDDEN);
    // The vendor admin sees both and the partners.
    let admin = app.anonymous().sign_in("vendor", "user0@vendor.example").await;
    let all = admin.get("/api/v1/deals").await;
    assert!(all.body["items"].as_array().expect("items").iter().any(|d| d["id"] == json!(b_id)), "{all}");
    let ps = admin.get("/api/v1/programme/partners").await;
    assert_eq!(ps.body["items"].as_array().expect("items").len(), 2, "{ps}");
}

#[tokio::test]
async fn over_http_a_partner_approving_a_deal_is_refused_403_and_audited() {
    let w = world().await;
    for u in [w.alice, w.bob, w.admin] {
        with_password(&w.db, u).await;
    }
    let app = TestApp::new(&w.db).await;
    let alice = app.anonymous().sign_in("vendor", "alice@partner-a.example").await;
    let bob = app.anonymous().sign_in("vendor", "bob@partner-b.example").await;
    let id = alice.post("/api/v1/deals", deal_body("Ay Customer", "ay-customer.example")).await.body["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for (who, client) in [("partner admin", &alice), ("partner agent", &bob)] {
        let r = client.post(&format!("/api/v1/deals/{id}/approve"), json!({"reason": "looks good to me"})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who}: {r}");
    }
    let mut admin_conn = w.db.admin_conn().await;
    // Refusals are aggregated, then written; give the recorder a moment.
    let mut denied = 0i64;
    for _ in 0..50 {
        denied =
            sqlx::query_scalar("select count(*) from audit_events where tenant_id = $1 and action = 'access.denied'")
                .bind(w.t.as_uuid())
                .fetch_one(&mut admin_conn)
                .await
                .expect("count");
        if denied > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(denied > 0, "the refusal is audited");
    // The channel manager's side: the admin approves with a reason.
    let admin = app.anonymous().sign_in("vendor", "user0@vendor.example").await;
    let r = admin.post(&format!("/api/v1/deals/{id}/approve"), json!({"reason": "known account"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(r.body["status"], "approved");
    let again = admin.post(&format!("/api/v1/deals/{id}/reject"), json!({"reason": "changed"})).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again}");
}

#[tokio::test]
async fn over_http_a_conflict_is_flagged_without_naming_the_other_registration() {
    let w = world().await;
    for u in [w.alice, w.bob, w.admin] {
        with_password(&w.db, u).await;
    }
    let app = TestApp::new(&w.db).await;
    let alice = app.anonymous().sign_in("vendor", "alice@partner-a.example").await;
    let bob = app.anonymous().sign_in("vendor", "bob@partner-b.example").await;
    let first = alice.post("/api/v1/deals", deal_body("Contoso", "contoso.example")).await;
    let first_id = first.body["id"].as_str().expect("id").to_owned();
    let second = bob.post("/api/v1/deals", deal_body("Contoso Ltd", "contoso.example")).await;
    assert_eq!(second.status, StatusCode::CREATED, "{second}");
    assert_eq!(second.body["status"], "conflict");
    assert!(!second.text.contains(&first_id) && second.body.get("conflictsWith").is_none(), "{second}");
    let second_id = second.body["id"].as_str().expect("id").to_owned();
    let again = bob.get(&format!("/api/v1/deals/{second_id}")).await;
    assert!(!again.text.contains(&first_id), "{again}");
    let admin = app.anonymous().sign_in("vendor", "user0@vendor.example").await;
    let seen = admin.get(&format!("/api/v1/deals/{second_id}")).await;
    assert_eq!(seen.body["conflictsWith"], json!([first_id]), "{seen}");
}

#[tokio::test]
async fn over_http_the_leads_export_is_a_csv_download_of_the_callers_rows_only() {
    let w = world().await;
    for u in [w.alice, w.bob] {
        with_password(&w.db, u).await;
    }
    let app = TestApp::new(&w.db).await;
    let alice = app.anonymous().sign_in("vendor", "alice@partner-a.example").await;
    let bob = app.anonymous().sign_in("vendor", "bob@partner-b.example").await;
    let r = alice.post("/api/v1/leads", json!({"companyName": "=cmd|' /C calc'!A0", "notes": "-2+3"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    let r = bob.post("/api/v1/leads", json!({"companyName": "Bee Secret Lead"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    let csv = alice.get("/api/v1/leads/export").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.header("content-type").is_some_and(|c| c.starts_with("text/csv")));
    assert!(csv.header("content-disposition").is_some_and(|c| c.starts_with("attachment; filename=\"leads-")));
    assert!(csv.text.starts_with("id,partner_id,"), "{}", csv.text);
    assert!(!csv.text.contains("Bee Secret Lead") && !csv.text.contains(&w.pb.to_string()), "{}", csv.text);
    assert!(csv.text.contains("'=cmd|") && csv.text.contains("'-2+3"), "{}", csv.text);
    // Lines: header + the fixture's lead of partner A + the new one.
    assert_eq!(csv.text.lines().count(), 3, "{}", csv.text);
}
