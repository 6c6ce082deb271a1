//! Invitations: created by admins, accepted once by whoever holds the token, refused when
//! replayed, expired, revoked or forged.

mod common;

use common::{PASSWORD, audit_count, org, spawn_with_key, with_password};
use identity::tokens::TokenKey;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::testing::TestDb;
use uuid::Uuid;

const NEW_PASSWORD: &str = "quiet harbour maple 2041";

async fn login_status(base: &str, org: &str, email: &str, password: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"organisation": org, "email": email, "password": password, "token_delivery": "body"}))
        .send()
        .await
        .expect("request")
        .status()
}

async fn admin_token(db: &TestDb, base: &str, org: &str, admin: Uuid) -> String {
    with_password(db, admin).await;
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"organisation": org, "email": format!("user0@{org}.example"), "password": PASSWORD, "token_delivery": "body"}))
        .send()
        .await
        .expect("login");
    let v: Value = r.json().await.expect("json");
    v["access_token"].as_str().expect("access").to_owned()
}

async fn call(method: Method, url: String, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn invite(base: &str, admin: &str, body: Value) -> Value {
    let (s, v) = call(Method::POST, format!("{base}/api/v1/invitations"), Some(admin), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

async fn accept(base: &str, body: Value) -> (StatusCode, Value) {
    call(Method::POST, format!("{base}/api/v1/invitations/accept"), None, Some(body)).await
}

fn key() -> TokenKey {
    TokenKey::from_seed([9; 32])
}

#[tokio::test]
async fn a_new_person_accepts_once_and_gets_a_verified_account_and_a_guest_membership() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let base = spawn_with_key(&db, key()).await;
    let admin = admin_token(&db, &base, "acme", a.users[0]).await;
    let until = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let inv = invite(
        &base,
        &admin,
        json!({"email": "Board.Member@Elsewhere.example", "role": "auditor", "department_id": a.department, "membership_valid_until": until}),
    )
    .await;
    let token = inv["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with(&format!("csi_{}_", a.id.as_uuid().simple())));
    let (_, list) = call(Method::GET, format!("{base}/api/v1/invitations"), Some(&admin), None).await;
    assert!(!list.to_string().contains(&token[token.len() - 64..]), "the list must not reveal tokens");
    let listed =
        list["items"].as_array().expect("items").iter().find(|i| i["id"] == inv["id"]).expect("listed").clone();
    assert_eq!(
        (listed["status"].as_str(), listed["email"].as_str()),
        (Some("open"), Some("board.member@elsewhere.example"))
    );

    // A new account needs a password, and a good one; a refusal does not use the invitation up.
    let (s, e) = accept(&base, json!({"token": token})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_field")));
    let (s, e) = accept(&base, json!({"token": token, "password": "password1234"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("weak_password")));
    let (s, r) = accept(&base, json!({"token": token, "name": "Bea Board", "password": NEW_PASSWORD})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!((r["new_account"].as_bool(), r["role"].as_str()), (Some(true), Some("auditor")));
    assert_eq!(login_status(&base, "acme", "board.member@elsewhere.example", NEW_PASSWORD).await, StatusCode::OK);

    // Replayed: gone.
    let (s, e) = accept(&base, json!({"token": token, "password": NEW_PASSWORD})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::GONE, Some("invitation_expired")));

    let user: Uuid = r["user_id"].as_str().expect("user").parse().expect("uuid");
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
    let (_, list) = call(Method::GET, format!("{base}/api/v1/invitations"), Some(&admin), None).await;
    let listed =
        list["items"].as_array().expect("items").iter().find(|i| i["id"] == inv["id"]).expect("listed").clone();
    assert_eq!(listed["status"], "accepted");
}

#[tokio::test]
async fn an_existing_user_accepts_only_with_their_own_password() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "beta").await;
    with_password(&db, b.users[1]).await;
    let base = spawn_with_key(&db, key()).await;
    let admin = admin_token(&db, &base, "acme", a.users[0]).await;
    let inv = invite(&base, &admin, json!({"email": "user1@beta.example", "role": "finance"})).await;
    let token = inv["token"].as_str().expect("token");
    // Whoever intercepted the mail cannot take over the account with a password of their own.
    let (s, e) = accept(&base, json!({"token": token, "password": NEW_PASSWORD})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthenticated")));
    assert_eq!(login_status(&base, "acme", "user1@beta.example", PASSWORD).await, StatusCode::UNAUTHORIZED);
    let (s, r) = accept(&base, json!({"token": token, "password": PASSWORD})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!((r["new_account"].as_bool(), r["user_id"].clone()), (Some(false), json!(b.users[1])));
    assert_eq!(login_status(&base, "acme", "user1@beta.example", PASSWORD).await, StatusCode::OK);
    assert_eq!(login_status(&base, "beta", "user1@beta.example", PASSWORD).await, StatusCode::OK);
    // Inviting someone who is already a member is refused.
    let (s, e) = call(
        Method::POST,
        format!("{base}/api/v1/invitations"),
        Some(&admin),
        Some(json!({"email": "user1@beta.example", "role": "staff"})),
    )
    .await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("already_member")));
}

#[tokio::test]
async fn revoked_expired_superseded_and_forged_invitation_tokens_are_refused() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "beta").await;
    let base = spawn_with_key(&db, key()).await;
    let admin = admin_token(&db, &base, "acme", a.users[0]).await;

    // Revoked.
    let revoked = invite(&base, &admin, json!({"email": "r@x.example", "role": "staff"})).await;
    let (s, _) = call(
        Method::DELETE,
        format!("{base}/api/v1/invitations/{}", revoked["id"].as_str().expect("id")),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, e) = accept(&base, json!({"token": revoked["token"], "password": NEW_PASSWORD})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::GONE, Some("invitation_expired")));

    // Expired.
    let expired = invite(&base, &admin, json!({"email": "e@x.example", "role": "staff"})).await;
    let mut admin_db = db.admin_conn().await;
    sqlx::query(
        "update invitations set created_at = now() - interval '8 days', expires_at = now() - interval '1 day' where id = $1",
    )
    .bind(expired["id"].as_str().expect("id").parse::<Uuid>().expect("uuid"))
    .execute(&mut admin_db)
    .await
    .expect("expire");
    let (s, e) = accept(&base, json!({"token": expired["token"], "password": NEW_PASSWORD})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::GONE, Some("invitation_expired")));

    // Superseded: a second invitation to the same address kills the first token.
    let first = invite(&base, &admin, json!({"email": "s@x.example", "role": "staff"})).await;
    let second = invite(&base, &admin, json!({"email": "s@x.example", "role": "staff"})).await;
    let (s, _) = accept(&base, json!({"token": first["token"], "password": NEW_PASSWORD})).await;
    assert_eq!(s, StatusCode::GONE);

    // Forged: a wrong secret, another organisation named in the token, garbage.
    let good = second["token"].as_str().expect("token").to_owned();
    let flipped = format!("{}{}", &good[..good.len() - 1], if good.ends_with('0') { '1' } else { '0' });
    let other_tenant = good.replacen(&a.id.as_uuid().simple().to_string(), &b.id.as_uuid().simple().to_string(), 1);
    for forged in [flipped.as_str(), other_tenant.as_str(), "csi_garbage", ""] {
        let (s, e) = accept(&base, json!({"token": forged, "password": NEW_PASSWORD})).await;
        assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthenticated")), "{forged}");
    }
    // None of that used the good token up.
    let (s, r) = accept(&base, json!({"token": good, "password": NEW_PASSWORD})).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(audit_count(&db, a.id, "invitation.accept_refused").await, 3);
    assert_eq!(audit_count(&db, b.id, "invitation.accept_refused").await, 0);
    // An accepted invitation cannot be revoked afterwards.
    let (s, e) = call(
        Method::DELETE,
        format!("{base}/api/v1/invitations/{}", second["id"].as_str().expect("id")),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("invitation_used")));
}

#[tokio::test]
async fn invitations_refuse_role_escalation_bad_input_and_non_admins() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let base = spawn_with_key(&db, key()).await;
    let admin = admin_token(&db, &base, "acme", a.users[0]).await;
    let url = format!("{base}/api/v1/invitations");
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
        let (s, e) = call(Method::POST, url.clone(), Some(&admin), Some(body.clone())).await;
        assert_eq!((s, e["error"]["code"].as_str()), (status, Some(code)), "{body}");
    }
    // Staff cannot invite, and nobody unauthenticated can.
    with_password(&db, a.users[1]).await;
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"organisation": "acme", "email": "user1@acme.example", "password": PASSWORD, "token_delivery": "body"}))
        .send()
        .await
        .expect("login");
    let staff = r.json::<Value>().await.expect("json")["access_token"].as_str().expect("access").to_owned();
    let body = json!({"email": "o@x.example", "role": "staff"});
    assert_eq!(call(Method::POST, url.clone(), Some(&staff), Some(body.clone())).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(Method::POST, url.clone(), None, Some(body)).await.0, StatusCode::UNAUTHORIZED);
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let n: i64 = sqlx::query_scalar("select count(*) from invitations").fetch_one(tx.conn()).await.expect("count");
    assert_eq!(n, 1, "only the fixture's invitation exists");
}

#[test]
fn the_invitation_mail_is_rendered_in_one_place() {
    let (subject, text) =
        identity::invitations::invitation_mail("Acme Ltd", "auditor", "csi_token", chrono::Utc::now(), None);
    assert!(subject.contains("Acme Ltd") && text.contains("csi_token") && text.contains("auditor"));
}
