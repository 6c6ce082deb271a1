//! Partner invitations (issue 17): a vendor's channel manager invites a person by email into a
//! partner company, the person accepts through the ordinary invitation route and becomes a
//! partner person of that company only. Attacked: a partner administrator inviting into another
//! partner, or inviting an administrator; a partner agent inviting at all; a partner of another
//! organisation; an unknown partner; a staff role through the partner route; the token replayed;
//! the new person reading the other partner's deal.

mod common;

use authz::Role;
use common::{Client, PASSWORD, TestApp, audit_count, member, org, partner_person, with_password};
use reqwest::StatusCode;
use serde_json::{Value, json};
use store::testing::TestDb;
use uuid::Uuid;

struct World {
    db: TestDb,
    app: TestApp,
    t: store::TenantId,
    pa: Uuid,
    pb: Uuid,
    /// A partner of another organisation.
    foreign: Uuid,
}

async fn world() -> World {
    let db = TestDb::new().await;
    let o = org(&db, "acme").await;
    let other = org(&db, "beta").await;
    member(&db, o.id, "acme", "cm", Role::ChannelManager, None, true).await;
    let (pa, pb) = (o.partners[0], o.partners[1]);
    for (p, email, role) in [
        (pa, "alice@partner-a.example", Role::PartnerAdmin),
        (pa, "agent@partner-a.example", Role::PartnerAgent),
        (pb, "bob@partner-b.example", Role::PartnerAdmin),
    ] {
        let u = partner_person(&db, o.id, p, email, role).await;
        with_password(&db, u).await;
    }
    with_password(&db, o.users[1]).await;
    let app = TestApp::new(&db).await;
    World { db, app, t: o.id, pa, pb, foreign: other.partners[0] }
}

async fn invite(c: &Client, partner: Uuid, email: &str, role: &str) -> common::Answer {
    c.post(&format!("/api/v1/programme/partners/{partner}/invitations"), json!({"email": email, "role": role})).await
}

async fn accept(app: &TestApp, token: &str) -> common::Answer {
    app.anonymous()
        .post("/api/v1/invitations/accept", json!({"token": token, "name": "New Person", "password": PASSWORD}))
        .await
}

fn ids(list: &Value) -> Vec<String> {
    list["items"].as_array().expect("items").iter().map(|d| d["id"].as_str().expect("id").to_owned()).collect()
}

#[tokio::test]
async fn an_invitation_into_partner_a_accepted_once_sees_only_a_and_cannot_be_replayed() {
    let w = world().await;
    let cm = w.app.sign_in("acme", "cm@acme.example").await;
    let r = invite(&cm, w.pa, "New.Admin@Partner-A.example", "partner_admin").await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    assert_eq!(
        (r.body["role"].as_str(), r.body["partnerId"].as_str()),
        (Some("partner_admin"), Some(&*w.pa.to_string()))
    );
    let token = r.body["token"].as_str().expect("token").to_owned();
    // Audited with the partner it is for.
    let mut admin = w.db.admin_conn().await;
    let changes: String = sqlx::query_scalar(
        "select changes from audit_events where tenant_id = $1 and action = 'invitation.created' and entity_id = $2",
    )
    .bind(w.t.as_uuid())
    .bind(r.body["id"].as_str().expect("id"))
    .fetch_one(&mut admin)
    .await
    .expect("invitation.created");
    assert!(changes.contains(&w.pa.to_string()) && changes.contains("partner_id"), "{changes}");

    let done = accept(&w.app, &token).await;
    assert_eq!(done.status, StatusCode::OK, "{done}");
    assert_eq!(done.body["role"].as_str(), Some("partner_admin"));
    let user: Uuid = done.body["user_id"].as_str().expect("user").parse().expect("uuid");
    let (role, partner): (String, Option<Uuid>) =
        sqlx::query_as("select role, partner_id from memberships where tenant_id = $1 and user_id = $2")
            .bind(w.t.as_uuid())
            .bind(user)
            .fetch_one(&mut admin)
            .await
            .expect("membership");
    assert_eq!((role.as_str(), partner), ("partner_admin", Some(w.pa)));

    // Replayed: gone, and no second membership.
    let again = accept(&w.app, &token).await;
    assert_eq!((again.status, again.code()), (StatusCode::GONE, "invitation_expired"), "{again}");

    // The new person sees partner A's deals only; B's deal is a 404, as one that does not exist.
    let all = ids(&cm.get("/api/v1/deals").await.body);
    let newcomer = w.app.sign_in("acme", "new.admin@partner-a.example").await;
    let mine = newcomer.get("/api/v1/deals").await;
    assert_eq!(mine.status, StatusCode::OK, "{mine}");
    let mine_text = mine.body.to_string();
    assert!(mine_text.contains("fixture-customer-0.acme.example"), "{mine_text}");
    assert!(!mine_text.contains("fixture-customer-1.acme.example"), "{mine_text}");
    let bs = cm.get("/api/v1/deals").await.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|d| d.to_string().contains("fixture-customer-1.acme.example"))
        .and_then(|d| d["id"].as_str())
        .expect("B's deal")
        .to_owned();
    assert!(all.contains(&bs));
    let r = newcomer.get(&format!("/api/v1/deals/{bs}")).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{r}");
    let commissions = newcomer.get("/api/v1/programme/commissions").await;
    assert_eq!(commissions.status, StatusCode::OK, "{commissions}");
    let partners: Vec<&str> = commissions.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["partnerId"].as_str().expect("partnerId"))
        .collect();
    assert!(!partners.is_empty() && partners.iter().all(|p| *p == w.pa.to_string()), "{partners:?} vs B {}", w.pb);
}

#[tokio::test]
async fn a_partner_admin_invites_agents_into_its_own_company_only_and_an_agent_invites_no_one() {
    let w = world().await;
    let alice = w.app.sign_in("acme", "alice@partner-a.example").await;
    // Into partner B: 404, the same answer as a partner that does not exist.
    let r = invite(&alice, w.pb, "x@partner-b.example", "partner_agent").await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{r}");
    let r = invite(&alice, Uuid::now_v7(), "x@partner-a.example", "partner_agent").await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{r}");
    // An administrator of their own company: not theirs to grant.
    let r = invite(&alice, w.pa, "boss@partner-a.example", "partner_admin").await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "role_escalation"), "{r}");
    // A staff role through the partner route: refused as input.
    let r = invite(&alice, w.pa, "staff@partner-a.example", "admin").await;
    assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"), "{r}");
    let r = invite(&alice, w.pa, "not an address", "partner_agent").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert_eq!(audit_count(&w.db, w.t, "invitation.created").await, 0);
    // An agent of their own company: yes.
    let r = invite(&alice, w.pa, "second.agent@partner-a.example", "partner_agent").await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    assert_eq!(audit_count(&w.db, w.t, "invitation.created").await, 1);

    // A partner agent invites no one (the policy), into its own company or any other.
    let agent = w.app.sign_in("acme", "agent@partner-a.example").await;
    for p in [w.pa, w.pb] {
        let r = invite(&agent, p, "friend@partner-a.example", "partner_agent").await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"), "{r}");
    }
    // Vendor staff without the programme (a staff member): refused too.
    let staff = w.app.sign_in("acme", "user1@acme.example").await;
    let r = invite(&staff, w.pa, "friend@partner-a.example", "partner_agent").await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"), "{r}");
    assert!(audit_count(&w.db, w.t, "access.denied").await >= 1);
    assert_eq!(audit_count(&w.db, w.t, "invitation.created").await, 1);
}

#[tokio::test]
async fn another_organisations_partner_is_a_404_even_for_the_channel_manager() {
    let w = world().await;
    let cm = w.app.sign_in("acme", "cm@acme.example").await;
    let r = invite(&cm, w.foreign, "someone@partner.example", "partner_agent").await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{r}");
    let r = cm
        .post(
            "/api/v1/programme/partners/not-a-uuid/invitations",
            json!({"email": "a@b.example", "role": "partner_agent"}),
        )
        .await;
    assert!(r.status.is_client_error(), "{r}");
    let r = cm
        .post(
            &format!("/api/v1/programme/partners/{}/invitations", w.pa),
            json!({"email": "a@b.example", "role": "partner_agent", "partner_id": w.pb}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "unknown fields are refused: {r}");
    assert_eq!(audit_count(&w.db, w.t, "invitation.created").await, 0);
    // The same address invited again: only the newest token works.
    let first = invite(&cm, w.pb, "twice@partner-b.example", "partner_agent").await;
    let second = invite(&cm, w.pb, "twice@partner-b.example", "partner_agent").await;
    assert_eq!((first.status, second.status), (StatusCode::CREATED, StatusCode::CREATED));
    let old = accept(&w.app, first.body["token"].as_str().expect("token")).await;
    assert_eq!((old.status, old.code()), (StatusCode::GONE, "invitation_expired"), "{old}");
    let new = accept(&w.app, second.body["token"].as_str().expect("token")).await;
    assert_eq!(new.status, StatusCode::OK, "{new}");
    // Already a member now: a third invitation is refused.
    let r = invite(&cm, w.pa, "twice@partner-b.example", "partner_agent").await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "already_member"), "{r}");
}
