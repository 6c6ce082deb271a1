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

/// An invitation is a promise made while the partner was in good standing: suspended (or ended)
/// before the invited person accepts, the acceptance is refused with a stable code, audited, and
/// no membership is made; reactivated, the same token works again (the refusal is the status's).
#[tokio::test]
async fn an_invitation_sent_before_its_partner_was_suspended_is_refused_at_accept_and_audited() {
    let w = world().await;
    let cm = w.app.sign_in("acme", "cm@acme.example").await;
    let r = invite(&cm, w.pa, "late@partner-a.example", "partner_agent").await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    let token = r.body["token"].as_str().expect("token").to_owned();
    let invitation = r.body["id"].as_str().expect("id").to_owned();
    for status in ["suspended", "ended"] {
        let s = cm.patch(&format!("/api/v1/programme/partners/{}", w.pa), json!({"status": status})).await;
        assert_eq!(s.status, StatusCode::OK, "{s}");
        let refused = accept(&w.app, &token).await;
        assert_eq!((refused.status, refused.code()), (StatusCode::GONE, "partner_inactive"), "{refused}");
        assert!(refused.body["error"]["message"].as_str().unwrap_or_default().contains(status), "{refused}");
    }
    let mut admin = w.db.admin_conn().await;
    let reasons: Vec<String> = sqlx::query_scalar(
        "select reason from audit_events where tenant_id = $1 and action = 'invitation.accept_refused'
            and entity_id = $2 order by seq",
    )
    .bind(w.t.as_uuid())
    .bind(&invitation)
    .fetch_all(&mut admin)
    .await
    .expect("refusals");
    assert_eq!(
        reasons,
        ["the partner company is suspended in the programme", "the partner company is ended in the programme"]
    );
    let joined: i64 = sqlx::query_scalar(
        "select count(*) from memberships m join users u on u.id = m.user_id
          where m.tenant_id = $1 and u.email = 'late@partner-a.example'",
    )
    .bind(w.t.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("count");
    assert_eq!(joined, 0, "no membership in a suspended partner");
    // Reactivated: the very same token is accepted (it was refused for the status, not spent).
    let s = cm.patch(&format!("/api/v1/programme/partners/{}", w.pa), json!({"status": "active"})).await;
    assert_eq!(s.status, StatusCode::OK, "{s}");
    let done = accept(&w.app, &token).await;
    assert_eq!((done.status, done.body["role"].as_str()), (StatusCode::OK, Some("partner_agent")), "{done}");
}

fn listed(list: &common::Answer) -> Vec<(String, String)> {
    list.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| (i["id"].as_str().expect("id").to_owned(), i["status"].as_str().expect("status").to_owned()))
        .collect()
}

/// Partner A's administrator lists and revokes A's invitations only: B's (by B's path or smuggled
/// under A's) is a 404 like one that does not exist, an administrator's invitation is not theirs to
/// revoke, an agent lists nothing; the channel manager sees and revokes every partner's. A revoked
/// token cannot be accepted; an accepted invitation cannot be revoked.
#[tokio::test]
async fn partner_a_admin_lists_and_revokes_only_a_invitations_and_a_revoked_one_cannot_be_accepted() {
    let w = world().await;
    let cm = w.app.sign_in("acme", "cm@acme.example").await;
    let alice = w.app.sign_in("acme", "alice@partner-a.example").await;
    let agent = w.app.sign_in("acme", "agent@partner-a.example").await;
    let made = |r: common::Answer| {
        assert_eq!(r.status, StatusCode::CREATED, "{r}");
        (r.body["id"].as_str().expect("id").to_owned(), r.body["token"].as_str().expect("token").to_owned())
    };
    let (a1, a1_token) = made(invite(&alice, w.pa, "one@partner-a.example", "partner_agent").await);
    let (a_boss, _) = made(invite(&cm, w.pa, "boss@partner-a.example", "partner_admin").await);
    let (b1, b1_token) = made(invite(&cm, w.pb, "one@partner-b.example", "partner_agent").await);
    let list = |p: Uuid| format!("/api/v1/programme/partners/{p}/invitations");
    let one = |p: Uuid, i: &str| format!("/api/v1/programme/partners/{p}/invitations/{i}");

    // Listing: A's administrator sees A's two, never a token; B's or another organisation's
    // partner (or none) is a 404; an agent is refused by the policy; the channel manager sees both.
    let r = alice.get(&list(w.pa)).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(listed(&r), [(a_boss.clone(), "open".to_owned()), (a1.clone(), "open".to_owned())]);
    assert!(!r.body.to_string().contains("csi_"), "no token in a list: {r}");
    for p in [w.pb, w.foreign, Uuid::now_v7()] {
        let r = alice.get(&list(p)).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{r}");
    }
    let r = agent.get(&list(w.pa)).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"), "{r}");
    assert_eq!(listed(&cm.get(&list(w.pb)).await), [(b1.clone(), "open".to_owned())]);
    let r = cm.get(&list(w.foreign)).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{r}");

    // Revoking across partners: B's invitation by B's path or under A's is a 404, and B's stays open.
    for path in [one(w.pb, &b1), one(w.pa, &b1)] {
        let r = alice.delete(&path).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{path}: {r}");
    }
    let r = cm.delete(&one(w.pa, &b1)).await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "not A's: {r}");
    assert_eq!(listed(&cm.get(&list(w.pb)).await), [(b1.clone(), "open".to_owned())]);
    // An administrator's invitation is not for a partner's administrator to revoke; an agent revokes nothing.
    let r = alice.delete(&one(w.pa, &a_boss)).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "role_escalation"), "{r}");
    let r = agent.delete(&one(w.pa, &a1)).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"), "{r}");
    assert_eq!(audit_count(&w.db, w.t, "invitation.revoked").await, 0);

    // Alice revokes her agent's invitation: audited once with the partner, the token refused,
    // a second revocation changes nothing.
    let r = alice.delete(&one(w.pa, &a1)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r}");
    let mut admin = w.db.admin_conn().await;
    let changes: String = sqlx::query_scalar(
        "select changes from audit_events where tenant_id = $1 and action = 'invitation.revoked' and entity_id = $2",
    )
    .bind(w.t.as_uuid())
    .bind(&a1)
    .fetch_one(&mut admin)
    .await
    .expect("invitation.revoked");
    assert!(changes.contains("revoked") && changes.contains(&w.pa.to_string()), "{changes}");
    let r = accept(&w.app, &a1_token).await;
    assert_eq!((r.status, r.code()), (StatusCode::GONE, "invitation_expired"), "{r}");
    let r = alice.delete(&one(w.pa, &a1)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r}");
    assert_eq!(audit_count(&w.db, w.t, "invitation.revoked").await, 1);
    assert_eq!(listed(&alice.get(&list(w.pa)).await)[1], (a1.clone(), "revoked".to_owned()));

    // The channel manager revokes the administrator's invitation; B's, accepted, cannot be revoked.
    let r = cm.delete(&one(w.pa, &a_boss)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r}");
    let r = accept(&w.app, &b1_token).await;
    assert_eq!(r.status, StatusCode::OK, "B's invitation was never touched: {r}");
    let r = cm.delete(&one(w.pb, &b1)).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "invitation_used"), "{r}");
    assert_eq!(audit_count(&w.db, w.t, "invitation.revoked").await, 2);
}
