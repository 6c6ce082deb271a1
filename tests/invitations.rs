//! Invitations: created by admins, accepted once by whoever holds the token, refused when
//! replayed, expired, revoked or forged.

mod common;

use common::{Answer, Client, PASSWORD, TestApp, audit_count, org, with_password};
use reqwest::StatusCode;
use serde_json::{Value, json};
use store::testing::TestDb;
use uuid::Uuid;

const NEW_PASSWORD: &str = "quiet harbour maple 2041";

async fn login_status(app: &TestApp, org: &str, email: &str, password: &str) -> StatusCode {
    app.anonymous().login(org, email, password).await.status
}

/// The organisation's first fixture user (an admin), given a password and signed in.
async fn signed_in_admin(db: &TestDb, app: &TestApp, org: &str, admin: Uuid) -> Client {
    with_password(db, admin).await;
    app.sign_in(org, &format!("user0@{org}.example")).await
}

async fn invite(admin: &Client, body: Value) -> Value {
    let r = admin.post("/api/v1/invitations", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    r.body
}

async fn accept(app: &TestApp, body: Value) -> Answer {
    app.anonymous().post("/api/v1/invitations/accept", body).await
}

#[tokio::test]
async fn a_new_person_accepts_once_and_gets_a_verified_account_and_a_guest_membership() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let app = TestApp::new(&db).await;
    let admin = signed_in_admin(&db, &app, "acme", a.users[0]).await;
    let until = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let inv = invite(
        &admin,
        json!({"email": "Board.Member@Elsewhere.example", "role": "auditor", "department_id": a.department, "membership_valid_until": until}),
    )
    .await;
    let token = inv["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with(&format!("csi_{}_", a.id.as_uuid().simple())));
    let list = admin.get("/api/v1/invitations").await;
    assert!(!list.body.to_string().contains(&token[token.len() - 64..]), "the list must not reveal tokens");
    let listed =
        list.body["items"].as_array().expect("items").iter().find(|i| i["id"] == inv["id"]).expect("listed").clone();
    assert_eq!(
        (listed["status"].as_str(), listed["email"].as_str()),
        (Some("open"), Some("board.member@elsewhere.example"))
    );

    // A new account needs a password, and a good one; a refusal does not use the invitation up.
    let e = accept(&app, json!({"token": token})).await;
    assert_eq!((e.status, e.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"));
    let e = accept(&app, json!({"token": token, "password": "password1234"})).await;
    assert_eq!((e.status, e.code()), (StatusCode::UNPROCESSABLE_ENTITY, "weak_password"));
    let r = accept(&app, json!({"token": token, "name": "Bea Board", "password": NEW_PASSWORD})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!((r.body["new_account"].as_bool(), r.body["role"].as_str()), (Some(true), Some("auditor")));
    assert_eq!(login_status(&app, "acme", "board.member@elsewhere.example", NEW_PASSWORD).await, StatusCode::OK);

    // Replayed: gone.
    let e = accept(&app, json!({"token": token, "password": NEW_PASSWORD})).await;
    assert_eq!((e.status, e.code()), (StatusCode::GONE, "invitation_expired"));

    let user: Uuid = r.body["user_id"].as_str().expect("user").parse().expect("uuid");
    let mut admin_db = db.admin_conn().await;
    let (verified, name): (bool, String) =
        sqlx::query_as("select email_verified_at is not null, display_name from users where id = $1")
            .bind(user)
            .fetch_one(&mut admin_db)
            .await
            .expect("user");
    assert_eq!((verified, name.as_str()), (true, "Bea Board"));
    let (role, dept, valid_until): (String, Option<Uuid>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("select role, department_id, valid_until from memberships where user_id = $1")
            .bind(user)
            .fetch_one(&mut admin_db)
            .await
            .expect("membership");
    assert_eq!((role.as_str(), dept), ("auditor", Some(a.department)));
    assert!(valid_until.is_some(), "guest membership keeps its end");
    assert_eq!(audit_count(&db, a.id, "invitation.accepted").await, 1);
    assert_eq!(audit_count(&db, a.id, "invitation.accept_refused").await, 1);
    let list = admin.get("/api/v1/invitations").await;
    let listed =
        list.body["items"].as_array().expect("items").iter().find(|i| i["id"] == inv["id"]).expect("listed").clone();
    assert_eq!(listed["status"], "accepted");
}

#[tokio::test]
async fn an_existing_user_accepts_only_with_their_own_password() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "beta").await;
    with_password(&db, b.users[1]).await;
    let app = TestApp::new(&db).await;
    let admin = signed_in_admin(&db, &app, "acme", a.users[0]).await;
    let inv = invite(&admin, json!({"email": "user1@beta.example", "role": "finance"})).await;
    let token = inv["token"].as_str().expect("token");
    // Whoever intercepted the mail cannot take over the account with a password of their own.
    let e = accept(&app, json!({"token": token, "password": NEW_PASSWORD})).await;
    assert_eq!((e.status, e.code()), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    assert_eq!(login_status(&app, "acme", "user1@beta.example", PASSWORD).await, StatusCode::UNAUTHORIZED);
    let r = accept(&app, json!({"token": token, "password": PASSWORD})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!((r.body["new_account"].as_bool(), r.body["user_id"].clone()), (Some(false), json!(b.users[1])));
    assert_eq!(login_status(&app, "acme", "user1@beta.example", PASSWORD).await, StatusCode::OK);
    assert_eq!(login_status(&app, "beta", "user1@beta.example", PASSWORD).await, StatusCode::OK);
    // Inviting someone who is already a member is refused.
    let e = admin.post("/api/v1/invitations", json!({"email": "user1@beta.example", "role": "staff"})).await;
    assert_eq!((e.status, e.code()), (StatusCode::CONFLICT, "already_member"));
}

#[tokio::test]
async fn revoked_expired_superseded_and_forged_invitation_tokens_are_refused() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "beta").await;
    let app = TestApp::new(&db).await;
    let admin = signed_in_admin(&db, &app, "acme", a.users[0]).await;

    // Revoked.
    let revoked = invite(&admin, json!({"email": "r@x.example", "role": "staff"})).await;
    let r = admin.delete(&format!("/api/v1/invitations/{}", revoked["id"].as_str().expect("id"))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let e = accept(&app, json!({"token": revoked["token"], "password": NEW_PASSWORD})).await;
    assert_eq!((e.status, e.code()), (StatusCode::GONE, "invitation_expired"));

    // Expired.
    let expired = invite(&admin, json!({"email": "e@x.example", "role": "staff"})).await;
    let mut admin_db = db.admin_conn().await;
    sqlx::query(
        "update invitations set created_at = now() - interval '8 days', expires_at = now() - interval '1 day' where id = $1",
    )
    .bind(expired["id"].as_str().expect("id").parse::<Uuid>().expect("uuid"))
    .execute(&mut admin_db)
    .await
    .expect("expire");
    let e = accept(&app, json!({"token": expired["token"], "password": NEW_PASSWORD})).await;
    assert_eq!((e.status, e.code()), (StatusCode::GONE, "invitation_expired"));

    // Superseded: a second invitation to the same address kills the first token.
    let first = invite(&admin, json!({"email": "s@x.example", "role": "staff"})).await;
    let second = invite(&admin, json!({"email": "s@x.example", "role": "staff"})).await;
    let r = accept(&app, json!({"token": first["token"], "password": NEW_PASSWORD})).await;
    assert_eq!(r.status, StatusCode::GONE);

    // Forged: a wrong secret, another organisation named in the token, garbage.
    let good = second["token"].as_str().expect("token").to_owned();
    let flipped = format!("{}{}", &good[..good.len() - 1], if good.ends_with('0') { '1' } else { '0' });
    let other_tenant = good.replacen(&a.id.as_uuid().simple().to_string(), &b.id.as_uuid().simple().to_string(), 1);
    for forged in [flipped.as_str(), other_tenant.as_str(), "csi_garbage", ""] {
        let e = accept(&app, json!({"token": forged, "password": NEW_PASSWORD})).await;
        assert_eq!((e.status, e.code()), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{forged}");
    }
    // None of that used the good token up.
    let r = accept(&app, json!({"token": good, "password": NEW_PASSWORD})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(audit_count(&db, a.id, "invitation.accept_refused").await, 3);
    assert_eq!(audit_count(&db, b.id, "invitation.accept_refused").await, 0);
    // An accepted invitation cannot be revoked afterwards.
    let e = admin.delete(&format!("/api/v1/invitations/{}", second["id"].as_str().expect("id"))).await;
    assert_eq!((e.status, e.code()), (StatusCode::CONFLICT, "invitation_used"));
}

#[tokio::test]
async fn invitations_refuse_role_escalation_bad_input_and_non_admins() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let app = TestApp::new(&db).await;
    let admin = signed_in_admin(&db, &app, "acme", a.users[0]).await;
    let url = "/api/v1/invitations";
    for (body, status, code) in [
        (json!({"email": "o@x.example", "role": "owner"}), StatusCode::FORBIDDEN, "role_escalation"),
        (json!({"email": "not-an-email", "role": "staff"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
        (json!({"email": "o@x.example", "role": "emperor"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
        (
            json!({"email": "o@x.example", "role": "staff", "token": "mine"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"email": "o@x.example", "role": "auditor", "membership_valid_until": "2001-01-01T00:00:00Z"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
    ] {
        let e = admin.post(url, body.clone()).await;
        assert_eq!((e.status, e.code()), (status, code), "{body}");
    }
    // Staff cannot invite, and nobody unauthenticated can.
    with_password(&db, a.users[1]).await;
    let staff = app.sign_in("acme", "user1@acme.example").await;
    let body = json!({"email": "o@x.example", "role": "staff"});
    assert_eq!(staff.post(url, body.clone()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(app.anonymous().post(url, body).await.status, StatusCode::UNAUTHORIZED);
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let n: i64 = sqlx::query_scalar("select count(*) from invitations").fetch_one(tx.conn()).await.expect("count");
    assert_eq!(n, 1, "only the fixture's invitation exists");
}

#[test]
fn the_invitation_mail_is_rendered_in_one_place() {
    let (subject, text) =
        identity::admin::invitations::invitation_mail("Acme Ltd", "auditor", "csi_token", chrono::Utc::now(), None);
    assert!(subject.contains("Acme Ltd") && text.contains("csi_token") && text.contains("auditor"));
}

/// With a public URL configured, the mailed invitation carries a link to the acceptance page
/// (token in its query), and that link opens the page on this server; without one the mail says
/// how to accept through the API and holds no link.
#[tokio::test]
async fn the_invitation_mail_links_to_the_acceptance_page_when_the_public_url_is_set() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let linked = TestApp::serve(
        TestApp::setup(&db).dev_outbox().state().with_public_url(Some("https://approvals.acme.example".into())),
    )
    .await;
    let admin = signed_in_admin(&db, &linked, "acme", a.users[0]).await;
    let inv = invite(&admin, json!({"email": "new.person@elsewhere.example", "role": "staff"})).await;
    let token = inv["token"].as_str().expect("token");
    let mail = linked.anonymous().get("/api/v1/dev/outbox?to=new.person@elsewhere.example").await.body;
    let body = mail["items"][0]["body"].as_str().expect("an invitation mail").to_owned();
    let link = format!("https://approvals.acme.example/invitations/accept?token={token}");
    assert!(body.contains(&link), "{body}");
    let page = linked.anonymous().get(link.trim_start_matches("https://approvals.acme.example")).await;
    assert_eq!(page.status, StatusCode::OK, "{page}");

    let plain = TestApp::serve(TestApp::setup(&db).dev_outbox().state()).await;
    let admin = signed_in_admin(&db, &plain, "acme", a.users[0]).await;
    let inv = invite(&admin, json!({"email": "other.person@elsewhere.example", "role": "staff"})).await;
    let mail = plain.anonymous().get("/api/v1/dev/outbox?to=other.person@elsewhere.example").await.body;
    let body = mail["items"][0]["body"].as_str().expect("an invitation mail").to_owned();
    assert!(body.contains(inv["token"].as_str().expect("token")) && body.contains("POST /api/v1/invitations/accept"));
    assert!(!body.contains("http"), "no link without a public URL: {body}");
}
