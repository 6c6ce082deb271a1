//! Joining by verified email domain, attacked: an organisation claiming a domain it has no
//! verified people at (to collect another company's staff as pending joiners), public mail
//! providers, malformed and too many domains, staff and other organisations trying to change it;
//! and the settings doing what they say: a person verifying an address at a listed domain joins
//! that organisation only, pending or at once, and every change is on record.

mod common;

use common::{TestApp, audit_count, org, with_password};
use identity::MembershipStatus;
use reqwest::StatusCode;
use serde_json::json;
use store::testing::TestDb;
use uuid::Uuid;

const JOINING: &str = "/api/v1/settings/joining";

async fn verify_address(db: &TestDb, user: Uuid) {
    let mut admin = db.admin_conn().await;
    sqlx::query("update users set email_verified_at = now() where id = $1")
        .bind(user)
        .execute(&mut admin)
        .await
        .expect("verify");
}

/// A new person whose address at `domain` is verified now: the organisations they joined.
async fn newcomer_verifies(db: &TestDb, name: &str, domain: &str) -> Vec<(store::TenantId, MembershipStatus)> {
    let mut g = db.store.global_tx().await.expect("tx");
    let email = identity::EmailAddress::parse(&format!("{name}@{domain}")).expect("email");
    let u = identity::directory::users::create(&mut g, &common::who(), &email, name).await.expect("user");
    g.commit().await.expect("commit");
    verify_address(db, u.id).await;
    let mut g = db.store.global_tx().await.expect("tx");
    let joined = identity::directory::joining::after_email_verified(&mut g, u.id).await.expect("join");
    g.commit().await.expect("commit");
    joined
}

#[tokio::test]
async fn an_organisation_lists_only_domains_its_verified_members_are_at_and_newcomers_there_join_it_alone() {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    let globex = org(&db, "globex").await;
    for u in acme.users.iter().chain(&globex.users) {
        with_password(&db, *u).await;
    }
    // Globex's people have verified addresses at globex.example; acme's admin at acme.example.
    verify_address(&db, globex.users[0]).await;
    let app = TestApp::setup(&db).roomy().start().await;
    let admin = app.anonymous().sign_in("acme", "user0@acme.example").await;

    // The fixture lists acme.example (set when the organisation was made); an administrator can
    // always narrow the list: removing needs no proof.
    let before = admin.get(JOINING).await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.body);
    assert_eq!(before.body, json!({"domains": ["acme.example"], "policy": "admin_approval"}));
    let r = admin.put(JOINING, json!({"domains": [], "policy": "admin_approval"})).await;
    assert_eq!(r.body, json!({"domains": [], "policy": "admin_approval"}));
    assert_eq!(audit_count(&db, acme.id, "tenant.joining_changed").await, 1);

    // Acme claims globex.example, where it has nobody: refused, naming why. (Otherwise every
    // Globex employee verifying an address would land in Acme's pending list.)
    let r = admin.put(JOINING, json!({"domains": ["globex.example"], "policy": "admin_approval"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"), "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap_or_default().contains("no active member"), "{}", r.body);
    // Its admin's address is not verified yet: acme.example is not proven either.
    let r = admin.put(JOINING, json!({"domains": ["acme.example"], "policy": "admin_approval"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    // Public providers, malformed names, too many: refused; nothing changed, nothing on record.
    verify_address(&db, acme.users[0]).await;
    for (domains, why) in [
        (json!(["gmail.com"]), "public mail provider"),
        (json!(["Outlook.com"]), "public mail provider"),
        (json!(["not a domain"]), "not a domain"),
        (json!(["acme.example/evil"]), "not a domain"),
        (json!(["x@acme.example"]), "not a domain"),
        (json!(["acme..example"]), "not a domain"),
        (json!((0..21).map(|i| format!("d{i}.acme.example")).collect::<Vec<_>>()), "at most 20"),
        (json!(["acme.example\u{0}"]), ""),
    ] {
        let r = admin.put(JOINING, json!({"domains": domains, "policy": "auto_join"})).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{domains}: {}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap_or_default().contains(why), "{domains}: {}", r.body);
    }
    let r = admin.put(JOINING, json!({"domains": ["acme.example"], "policy": "sometimes"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(admin.get(JOINING).await.body, json!({"domains": [], "policy": "admin_approval"}));
    assert_eq!(audit_count(&db, acme.id, "tenant.joining_changed").await, 1);

    // Staff may not change it, nor read it; globex's admin changes only globex.
    let staff = app.anonymous().sign_in("acme", "user1@acme.example").await;
    let r = staff.put(JOINING, json!({"domains": ["acme.example"], "policy": "auto_join"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(staff.get(JOINING).await.status, StatusCode::FORBIDDEN);

    // The proven domain, written as people type it: saved lower-cased, once, on record.
    let r =
        admin.put(JOINING, json!({"domains": [" ACME.example ", "@acme.example"], "policy": "admin_approval"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({"domains": ["acme.example"], "policy": "admin_approval"}));
    assert_eq!(audit_count(&db, acme.id, "tenant.joining_changed").await, 2);
    // The same again changes nothing and records nothing.
    let r = admin.put(JOINING, json!({"domains": ["acme.example"], "policy": "admin_approval"})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(audit_count(&db, acme.id, "tenant.joining_changed").await, 2);
    assert_eq!(audit_count(&db, globex.id, "tenant.joining_changed").await, 0);

    // A newcomer at acme.example joins acme, pending; one at globex.example joins globex (which
    // lists it) and not acme.
    let joined = newcomer_verifies(&db, "newbie", "acme.example").await;
    assert_eq!(joined, vec![(acme.id, MembershipStatus::Pending)]);
    assert_eq!(newcomer_verifies(&db, "other", "globex.example").await, vec![(globex.id, MembershipStatus::Pending)]);

    // Auto-join: the next newcomer is a member at once.
    let r = admin.put(JOINING, json!({"domains": ["acme.example"], "policy": "auto_join"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(audit_count(&db, acme.id, "tenant.joining_changed").await, 3);
    assert_eq!(newcomer_verifies(&db, "keen", "acme.example").await, vec![(acme.id, MembershipStatus::Active)]);

    // Emptying the list stops joining by domain.
    let r = admin.put(JOINING, json!({"domains": [], "policy": "admin_approval"})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(newcomer_verifies(&db, "late", "acme.example").await.is_empty());
}

#[tokio::test]
async fn the_settings_page_changes_joining_and_names_a_refused_domain_keeping_what_was_typed() {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    with_password(&db, acme.users[0]).await;
    with_password(&db, acme.users[1]).await;
    verify_address(&db, acme.users[0]).await;
    let app = TestApp::setup(&db).roomy().start().await;
    let admin = app.anonymous().sign_in_browser("acme", "user0@acme.example").await.0;

    let page = admin.get("/settings").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains(r#"<h2 id="joining-heading">Joining by email domain</h2>"#), "{}", page.text);

    // A cross-site form (no CSRF token) changes nothing.
    let r = admin.post_form("/settings/joining", &[("domains", "acme.example"), ("csrf_token", "")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(audit_count(&db, acme.id, "tenant.joining_changed").await, 0);

    let r = admin.post_form("/settings/joining", &[("domains", "acme.example\ngmail.com"), ("auto_join", "yes")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains(r#"id="join-domains-error">gmail.com: a public mail provider"#), "{}", r.text);
    assert!(r.text.contains("acme.example\ngmail.com</textarea>"), "what was typed stays: {}", r.text);
    assert!(r.text.contains(r#"id="auto-join" name="auto_join" value="yes" checked"#), "{}", r.text);

    let r = admin.post_form("/settings/joining", &[("domains", "Acme.example"), ("auto_join", "yes")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("Saved: people who verify an address at these domains join"), "{}", r.text);
    assert!(r.text.contains("acme.example</textarea>"), "{}", r.text);
    assert_eq!(audit_count(&db, acme.id, "tenant.joining_changed").await, 1);

    // Staff get the refusal page, and nothing changes.
    let staff = app.anonymous().sign_in_browser("acme", "user1@acme.example").await.0;
    let r = staff.post_form("/settings/joining", &[("domains", "")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("You may not do this"), "{}", r.text);
    assert_eq!(audit_count(&db, acme.id, "tenant.joining_changed").await, 1);
}
