//! Second factors and email codes, attacked: replayed and stale TOTP codes, guessing past the
//! limits, reused recovery and email codes, sealed secrets copied between users, key rotation,
//! address enumeration, MFA-required organisations, and the dev outbox staying off.

mod common;

use std::time::{Duration, Instant};

use common::app::Setup;
use common::{Answer, Client, PASSWORD, TestApp, audit_count, bare_org, org, who, with_password};
use identity::signin::lockout;
use identity::signin::mfa;
use identity::signin::secret_box::SecretBox;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::testing::TestDb;
use totp_rs::TOTP;
use uuid::Uuid;

/// These tests sign in far more than 10 times from 127.0.0.1: the per-address budget is raised so
/// the per-code, per-challenge and per-account limits under test are what answers (the budget
/// itself, on these routes too, is tests/limits.rs's business).
fn setup(db: &TestDb) -> Setup {
    TestApp::setup(db).roomy().mfa_keys(SecretBox::new(&[5; 32], &[]))
}

async fn login(app: &TestApp, org: &str, email: &str) -> Answer {
    app.anonymous().login(org, email, PASSWORD).await
}

/// Answers a second-factor challenge with `code` in `field`.
async fn mfa_with(app: &TestApp, token: &str, field: &str, code: &str) -> Answer {
    app.anonymous().post("/api/v1/auth/mfa", json!({"mfa_token": token, field: code, "token_delivery": "body"})).await
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("{k} missing in {v}"))
}

fn now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).expect("time")
}

/// The code of the step `offset` steps from now.
fn code(t: &TOTP, offset: i64) -> String {
    let step = i64::try_from(now() / 30).expect("step") + offset;
    t.generate(u64::try_from(step).expect("step") * 30)
}

/// Waits (at most a few seconds) until the current 30 s step has at least 5 s left, so a code
/// computed here is judged in the same step by the server.
async fn fresh_step() {
    let left = 30 - now() % 30;
    if left < 5 {
        tokio::time::sleep(Duration::from_secs(left + 1)).await;
    }
}

/// A six-digit code that no step in the ±2 window produces.
fn wrong_code(t: &TOTP) -> String {
    let window: Vec<String> = (-2..=2).map(|o| code(t, o)).collect();
    (0..1000).map(|i| format!("{:06}", 123_457 + i)).find(|c| !window.contains(c)).expect("a wrong code")
}

async fn platform_count(db: &TestDb, action: &str) -> i64 {
    let mut admin = db.admin_conn().await;
    sqlx::query_scalar("select count(*) from platform_audit_events where action = $1")
        .bind(action)
        .fetch_one(&mut admin)
        .await
        .expect("count")
}

/// The newest code mailed to `email` after `seen` messages (mail goes out in the background).
/// Bodies are sealed in the table: read them as the operator does, opened with the MFA key.
async fn mailed_code(db: &TestDb, email: &str, seen: i64) -> String {
    let started = Instant::now();
    let keys = SecretBox::new(&[5; 32], &[]);
    let to = identity::EmailAddress::parse(email).expect("email");
    loop {
        let mut g = db.store.global_tx().await.expect("global");
        let rows = identity::signin::mail::outbox(&mut g, &keys, Some(&to), 1000).await.expect("outbox");
        g.commit().await.expect("commit");
        if i64::try_from(rows.len()).expect("len") > seen {
            let body = &rows[0].body;
            let start = body.find(": ").expect("code in body") + 2;
            return body[start..start + 8].to_owned();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no mail to {email}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn outbox_len(db: &TestDb, email: &str) -> i64 {
    let mut admin = db.admin_conn().await;
    sqlx::query_scalar("select count(*) from mail_outbox where to_address = $1::text::citext")
        .bind(email)
        .fetch_one(&mut admin)
        .await
        .expect("count")
}

/// Enrols and confirms TOTP over HTTP; returns the authenticator and the recovery codes.
async fn enrol(access: &Client) -> (TOTP, Vec<String>) {
    let e = access.post("/api/v1/me/mfa/totp", json!({})).await;
    assert_eq!(e.status, StatusCode::OK, "{e}");
    let t = TOTP::from_url(str_of(&e.body, "otpauth_uri")).expect("otpauth uri");
    fresh_step().await;
    let r = access.post("/api/v1/me/mfa/totp/confirm", json!({"code": code(&t, 0)})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let codes = r.body["recovery_codes"].as_array().expect("codes").iter().map(|c| c.as_str().expect("str").to_owned());
    (t, codes.collect())
}

#[tokio::test]
async fn totp_codes_are_single_use_within_one_step_of_now_and_recovery_codes_work_once() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    let app = setup(&db).start().await;
    let r = login(&app, "acme", "user0@acme.example").await;
    assert_eq!(r.status, StatusCode::OK);
    let access = app.bearer(str_of(&r.body, "access_token"));

    let e = access.post("/api/v1/me/mfa/totp", json!({})).await;
    assert_eq!(e.status, StatusCode::OK, "{e}");
    let secret = str_of(&e.body, "secret_base32").to_owned();
    assert!(str_of(&e.body, "otpauth_uri").starts_with("otpauth://totp/Countersign:"), "{e}");
    assert!(str_of(&e.body, "qr_svg").contains("<svg"), "QR code is SVG");
    let t = TOTP::from_url(str_of(&e.body, "otpauth_uri")).expect("uri");
    assert_eq!(t.get_secret_base32(), secret);

    // The secret is not in the database in any readable form.
    let mut admin = db.admin_conn().await;
    let row: String = sqlx::query_scalar("select row_to_json(t)::text from user_totp t where user_id = $1")
        .bind(a.users[0])
        .fetch_one(&mut admin)
        .await
        .expect("row");
    let raw: Vec<u8> = sqlx::query_scalar("select ciphertext from user_totp where user_id = $1")
        .bind(a.users[0])
        .fetch_one(&mut admin)
        .await
        .expect("ciphertext");
    let secret_bytes = totp_rs::Secret::Encoded(secret.clone()).to_bytes().expect("base32");
    assert!(!row.to_uppercase().contains(&secret), "base32 secret stored in clear: {row}");
    assert!(!raw.windows(secret_bytes.len()).any(|w| w == secret_bytes.as_slice()), "raw secret stored");

    // Three steps ago: outside the window. The previous step: accepted.
    fresh_step().await;
    let r = access.post("/api/v1/me/mfa/totp/confirm", json!({"code": code(&t, -3)})).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_code"));
    let previous = code(&t, -1);
    let r = access.post("/api/v1/me/mfa/totp/confirm", json!({"code": previous})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let recovery: Vec<String> =
        r.body["recovery_codes"].as_array().expect("codes").iter().map(|c| c.as_str().expect("s").to_owned()).collect();
    assert_eq!(recovery.len(), 10);
    assert_eq!(platform_count(&db, "auth.mfa_enrolled").await, 1);
    assert_eq!(platform_count(&db, "auth.mfa_failed").await, 1);

    // The password alone no longer yields tokens.
    let r = login(&app, "acme", "user0@acme.example").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["mfa_required"], true, "{r}");
    assert_eq!(r.body["methods"], json!(["totp", "recovery_code"]));
    assert!(r.body.get("access_token").is_none() && r.body.get("refresh_token").is_none(), "{r}");
    let token = str_of(&r.body, "mfa_token").to_owned();
    // The code that confirmed enrolment is spent.
    let r = mfa_with(&app, &token, "totp_code", &previous).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_code"));
    fresh_step().await;
    let current = code(&t, 0);
    let r = mfa_with(&app, &token, "totp_code", &current).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert!(r.body["access_token"].is_string());
    // The challenge token is single use.
    let r = mfa_with(&app, &token, "totp_code", &code(&t, 0)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Replaying the same code in a new challenge is refused.
    let r = login(&app, "acme", "user0@acme.example").await;
    let token = str_of(&r.body, "mfa_token").to_owned();
    let r = mfa_with(&app, &token, "totp_code", &current).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_code"));
    // A recovery code works (written in upper case with spaces) ...
    let typed = recovery[0].to_uppercase().replace('-', " ");
    let r = mfa_with(&app, &token, "recovery_code", &typed).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(platform_count(&db, "auth.recovery_code_used").await, 1);
    // ... once.
    let r = login(&app, "acme", "user0@acme.example").await;
    let token = str_of(&r.body, "mfa_token").to_owned();
    let r = mfa_with(&app, &token, "recovery_code", &recovery[0]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(platform_count(&db, "auth.recovery_code_used").await, 1);
    assert_eq!(platform_count(&db, "auth.mfa_succeeded").await, 2);
    assert_eq!(audit_count(&db, a.id, "auth.login_succeeded").await, 3);

    // Disabling needs a valid code; a recovery code will do.
    let disable = |code: Value| access.request(Method::DELETE, "/api/v1/me/mfa/totp", Some(json!({"code": code})), &[]);
    let r = disable(json!("000000")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = access.post("/api/v1/me/mfa/recovery-codes", json!({"code": recovery[1]})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let fresh = r.body["recovery_codes"][0].as_str().expect("new code").to_owned();
    let r = disable(json!(recovery[2])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "old recovery codes died with the regeneration");
    let r = disable(json!(fresh)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(platform_count(&db, "auth.mfa_disabled").await, 1);
    let r = login(&app, "acme", "user0@acme.example").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["access_token"].is_string(), "no second factor any more: {r}");
}

#[tokio::test]
async fn five_wrong_codes_kill_the_challenge_and_lock_the_account() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    let app = setup(&db).start().await;
    let r = login(&app, "acme", "user0@acme.example").await;
    let (t, _) = enrol(&app.bearer(str_of(&r.body, "access_token"))).await;

    let r = login(&app, "acme", "user0@acme.example").await;
    let token = str_of(&r.body, "mfa_token").to_owned();
    for i in 0..mfa::MAX_CHALLENGE_ATTEMPTS {
        let r = mfa_with(&app, &token, "totp_code", &wrong_code(&t)).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_code"), "try {i}");
    }
    // Even the right code is refused now, with Retry-After.
    let r = app.anonymous().post("/api/v1/auth/mfa", json!({"mfa_token": token, "totp_code": code(&t, 0)})).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key("retry-after"));
    // The wrong codes counted toward the account lockout: the password is refused too.
    let r = login(&app, "acme", "user0@acme.example").await;
    assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"));
    assert_eq!(platform_count(&db, "auth.mfa_failed").await, 5);
    // A method the challenge does not offer, or none, is a 422, not a guess.
    let mut g = db.store.global_tx().await.expect("tx");
    assert!(lockout::unlock(&mut g, &who(), a.users[0]).await.expect("unlock"));
    g.commit().await.expect("commit");
    let r = login(&app, "acme", "user0@acme.example").await;
    let token = str_of(&r.body, "mfa_token").to_owned();
    let r = mfa_with(&app, &token, "email_code", "12345678").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app.anonymous().post("/api/v1/auth/mfa", json!({"mfa_token": token})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = mfa_with(&app, "csm_forged", "totp_code", "123456").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn email_login_codes_work_once_expire_and_reveal_no_addresses() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let _b = org(&db, "beta").await;
    let app = setup(&db).start().await;
    let member = "user1@acme.example";
    let anonymous = app.anonymous();
    let request = |email: &'static str, purpose: &'static str| {
        let body = json!({"organisation": "acme", "email": email, "purpose": purpose});
        let r = anonymous.post("/api/v1/auth/email-code", body);
        async move {
            let r = r.await;
            (r.status, r.text)
        }
    };
    let verify = |code: String| {
        anonymous.post(
            "/api/v1/auth/email-code/verify",
            json!({"organisation": "acme", "email": member, "code": code, "token_delivery": "body"}),
        )
    };

    // Unknown address, member of another organisation, real member: one answer.
    let unknown = request("nobody@acme.example", "login").await;
    let foreign = request("user1@beta.example", "login").await;
    let real = request(member, "login").await;
    assert_eq!(real.0, StatusCode::ACCEPTED);
    assert_eq!(unknown, real);
    assert_eq!(foreign, real);
    let first = mailed_code(&db, member, 0).await;
    assert_eq!(outbox_len(&db, "nobody@acme.example").await, 0);
    assert_eq!(outbox_len(&db, "user1@beta.example").await, 0);

    let r = verify(first.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert!(r.body["access_token"].is_string() && r.body["refresh_token"].is_string(), "{r}");
    assert_eq!(platform_count(&db, "auth.email_code_sent").await, 1);
    // Used once: refused after.
    let r = verify(first).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_code"));

    // Expired.
    request(member, "login").await;
    let second = mailed_code(&db, member, 1).await;
    let mut admin = db.admin_conn().await;
    sqlx::query("update email_codes set expires_at = now() - interval '1 second' where email = $1::text::citext")
        .bind(member)
        .execute(&mut admin)
        .await
        .expect("expire");
    let r = verify(second).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_code"));

    // Five wrong guesses kill a code.
    request(member, "login").await;
    let third = mailed_code(&db, member, 2).await;
    let wrong = if third == "00000000" { "00000001" } else { "00000000" };
    for _ in 0..identity::signin::email_codes::MAX_ATTEMPTS {
        let r = verify(wrong.to_owned()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = verify(third).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "dead after five wrong guesses");
    assert_eq!(platform_count(&db, "auth.email_code_failed").await, 5);

    // Five codes per address per hour, for unknown addresses too (same answer).
    for _ in 0..2 {
        assert_eq!(request(member, "login").await.0, StatusCode::ACCEPTED);
    }
    for _ in 0..4 {
        assert_eq!(request("nobody@acme.example", "login").await.0, StatusCode::ACCEPTED);
    }
    let limited = request(member, "login").await;
    assert_eq!(limited.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(request("nobody@acme.example", "login").await, limited);

    // verify_email: 204, the address marked verified, audited.
    let email = "user2@acme.example";
    assert_eq!(request(email, "verify_email").await.0, StatusCode::ACCEPTED);
    let code = mailed_code(&db, email, 0).await;
    let r = app
        .anonymous()
        .post("/api/v1/auth/email-code/verify", json!({"organisation": "acme", "email": email, "code": code}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let verified: bool = sqlx::query_scalar("select email_verified_at is not null from users where id = $1")
        .bind(a.users[2])
        .fetch_one(&mut admin)
        .await
        .expect("user");
    assert!(verified);
    assert_eq!(platform_count(&db, "user.email_verified").await, 1);
    // Unknown purposes and fields are refused.
    assert_eq!(request(email, "mfa").await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(request(email, "reset").await.0, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn an_organisation_requiring_mfa_gets_no_tokens_for_a_password_alone() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await; // admin
    with_password(&db, a.users[1]).await; // staff
    let app = setup(&db).start().await;
    let admin = login(&app, "acme", "user0@acme.example").await;
    let staff = login(&app, "acme", "user1@acme.example").await;
    let put = |access: Client, required: bool| async move {
        access.put("/api/v1/settings/mfa", json!({"required": required})).await
    };
    // Staff may not change it; the refusal is audited.
    let r = put(app.bearer(str_of(&staff.body, "access_token")), true).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(audit_count(&db, a.id, "access.denied").await, 1);
    let r = put(app.bearer(str_of(&admin.body, "access_token")), true).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(audit_count(&db, a.id, "tenant.mfa_requirement_changed").await, 1);

    let r = login(&app, "acme", "user1@acme.example").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["mfa_required"], true, "{r}");
    assert_eq!(r.body["methods"], json!(["email_code"]));
    assert!(r.body.get("access_token").is_none() && r.body.get("refresh_token").is_none(), "{r}");
    let token = str_of(&r.body, "mfa_token").to_owned();
    let code = mailed_code(&db, "user1@acme.example", 0).await;
    // The mailed second factor is not a passwordless login code.
    let r = app
        .anonymous()
        .post(
            "/api/v1/auth/email-code/verify",
            json!({"organisation": "acme", "email": "user1@acme.example", "code": code}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = mfa_with(&app, &token, "totp_code", "123456").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "not offered");
    let r = mfa_with(&app, &token, "email_code", &code).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert!(r.body["access_token"].is_string());
    assert_eq!(platform_count(&db, "auth.mfa_challenged").await, 1);

    // A passwordless email login cannot stand in for two factors.
    app.anonymous()
        .post(
            "/api/v1/auth/email-code",
            json!({"organisation": "acme", "email": "user1@acme.example", "purpose": "login"}),
        )
        .await;
    let code = mailed_code(&db, "user1@acme.example", 1).await;
    let r = app
        .anonymous()
        .post(
            "/api/v1/auth/email-code/verify",
            json!({"organisation": "acme", "email": "user1@acme.example", "code": code, "token_delivery": "body"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "password_required"), "{r}");
    assert!(r.body.get("access_token").is_none());
}

#[tokio::test]
async fn sealed_secrets_are_bound_to_their_user_and_survive_key_rotation() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let (u1, u2) = (a.users[0], a.users[1]);
    let old = SecretBox::new(&[5; 32], &[]);
    let e1 = mfa::enrol(&db.store, &old, u1).await.expect("enrol 1");
    mfa::enrol(&db.store, &old, u2).await.expect("enrol 2");
    let secret1 = totp_rs::Secret::Encoded(secrecy::ExposeSecret::expose_secret(&e1.secret_base32).to_owned())
        .to_bytes()
        .expect("b32");

    // A new current key: the old one still opens, and the first successful use re-seals.
    let rotated = SecretBox::new(&[6; 32], &[[5; 32]]);
    let mut g = db.store.global_tx().await.expect("tx");
    assert_eq!(mfa::open_secret(&mut g, &rotated, u1).await.expect("old key opens"), secret1);
    g.commit().await.expect("commit");
    let t = TOTP::from_url(secrecy::ExposeSecret::expose_secret(&e1.otpauth_uri)).expect("uri");
    fresh_step().await;
    let auth = identity::signin::sessions::Authenticator {
        hasher: identity::signin::passwords::Hasher::new(1).expect("hasher"),
        key: common::app::token_key(),
        policy: identity::signin::sessions::LoginPolicy::default(),
    };
    mfa::confirm(&db.store, &rotated, &auth, &who(), u1, &code(&t, 0)).await.expect("confirm");
    let mut admin = db.admin_conn().await;
    let key_of = |u: Uuid| sqlx::query_scalar::<_, String>("select key_id from user_totp where user_id = $1").bind(u);
    assert_eq!(key_of(u1).fetch_one(&mut admin).await.expect("k"), rotated.current_key_id());
    assert_eq!(key_of(u2).fetch_one(&mut admin).await.expect("k"), old.current_key_id());
    // The rotate command re-seals the rest; afterwards the new key alone opens everything.
    let mut g = db.store.global_tx().await.expect("tx");
    assert_eq!(mfa::rotate_all(&mut g, &rotated, &who()).await.expect("rotate"), 1);
    g.commit().await.expect("commit");
    assert_eq!(key_of(u2).fetch_one(&mut admin).await.expect("k"), rotated.current_key_id());
    let new_only = SecretBox::new(&[6; 32], &[]);
    let mut g = db.store.global_tx().await.expect("tx");
    assert_eq!(mfa::open_secret(&mut g, &new_only, u1).await.expect("opens"), secret1);
    mfa::open_secret(&mut g, &new_only, u2).await.expect("opens");
    assert!(mfa::open_secret(&mut g, &old, u1).await.is_err(), "the retired key opens nothing");
    g.commit().await.expect("commit");
    assert_eq!(platform_count(&db, "platform.mfa_key_rotated").await, 1);

    // A ciphertext copied into another user's row does not open there.
    sqlx::query(
        "update user_totp d set key_id = s.key_id, nonce = s.nonce, ciphertext = s.ciphertext
           from user_totp s where s.user_id = $1 and d.user_id = $2",
    )
    .bind(u1)
    .bind(u2)
    .execute(&mut admin)
    .await
    .expect("copy");
    let mut g = db.store.global_tx().await.expect("tx");
    assert!(mfa::open_secret(&mut g, &new_only, u2).await.is_err(), "copied ciphertext opened for another user");
    assert!(mfa::open_secret(&mut g, &new_only, u1).await.is_ok());
    g.commit().await.expect("commit");
    // The tables are invisible to tenant transactions.
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    for table in ["user_totp", "user_recovery_codes", "email_codes", "mfa_challenges", "mail_outbox"] {
        let n: i64 =
            sqlx::query_scalar(&format!("select count(*) from {table}")).fetch_one(tx.conn()).await.expect("count");
        assert_eq!(n, 0, "{table} visible to a tenant transaction");
    }
}

#[tokio::test]
async fn dev_outbox_is_not_routed_unless_enabled() {
    let db = TestDb::new().await;
    org(&db, "acme").await;
    let off = setup(&db).start().await;
    let r = off.anonymous().get("/api/v1/dev/outbox?to=user1@acme.example").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let on = setup(&db).dev_outbox().start().await;
    on.anonymous()
        .post(
            "/api/v1/auth/email-code",
            json!({"organisation": "acme", "email": "user1@acme.example", "purpose": "login"}),
        )
        .await;
    mailed_code(&db, "user1@acme.example", 0).await;
    let r = on.anonymous().get("/api/v1/dev/outbox?to=user1@acme.example").await;
    assert_eq!(r.status, StatusCode::OK);
    let mail = r.body;
    assert_eq!(mail["items"].as_array().map(Vec::len), Some(1), "{mail}");
    assert_eq!(mail["items"][0]["to"], "user1@acme.example");
}

/// Platform administrators always face a second factor, whatever their organisation requires.
#[tokio::test]
async fn platform_admins_always_need_a_second_factor() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[2]).await;
    let app = setup(&db).start().await;
    // An ordinary member of an organisation without require_mfa: tokens at once.
    let r = login(&app, "acme", "user2@acme.example").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.get("access_token").is_some(), "{r}");
    // The same account as a platform admin (set by the operator, not through any tenant API).
    let mut admin = db.admin_conn().await;
    sqlx::query("update users set platform_admin = true where id = $1")
        .bind(a.users[2])
        .execute(&mut admin)
        .await
        .expect("platform admin");
    let r = login(&app, "acme", "user2@acme.example").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["mfa_required"], true, "{r}");
    assert!(r.body.get("access_token").is_none() && r.body.get("refresh_token").is_none(), "{r}");
    let token = str_of(&r.body, "mfa_token").to_owned();
    // A wrong mailed code does not pass; the right one does.
    let r = mfa_with(&app, &token, "email_code", "00000000").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let code = mailed_code(&db, "user2@acme.example", 0).await;
    let r = mfa_with(&app, &token, "email_code", &code).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert!(r.body.get("access_token").is_some(), "{r}");
}

/// Verifying an address by emailed code joins the organisations that list its domain: active
/// staff where they auto-join, pending where an admin approves; nothing anywhere else.
#[tokio::test]
async fn a_verified_email_joins_organisations_listing_its_domain() {
    use identity::JoinPolicy;
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let _other = org(&db, "beta").await;
    let mut ids = Vec::new();
    for (slug, policy) in [("partners", JoinPolicy::AutoJoin), ("board", JoinPolicy::AdminApproval)] {
        ids.push(bare_org(&db, slug, &["acme.example"], policy).await.as_uuid());
    }
    let app = setup(&db).start().await;
    let email = "user2@acme.example";
    let r = app
        .anonymous()
        .post("/api/v1/auth/email-code", json!({"organisation": "acme", "email": email, "purpose": "verify_email"}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let code = mailed_code(&db, email, 0).await;
    let r = app
        .anonymous()
        .post("/api/v1/auth/email-code/verify", json!({"organisation": "acme", "email": email, "code": code}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let mut admin = db.admin_conn().await;
    let joined: Vec<(uuid::Uuid, String, String)> = sqlx::query_as(
        "select tenant_id, status, role from memberships where user_id = $1 and tenant_id <> $2 order by tenant_id",
    )
    .bind(a.users[2])
    .bind(a.id.as_uuid())
    .fetch_all(&mut admin)
    .await
    .expect("memberships");
    let mut expected =
        vec![(ids[0], "active".to_owned(), "staff".to_owned()), (ids[1], "pending".to_owned(), "staff".to_owned())];
    expected.sort();
    assert_eq!(joined, expected, "joined exactly the two organisations listing acme.example");
    let audited: i64 =
        sqlx::query_scalar("select count(*) from audit_events where action = 'membership.joined_by_domain'")
            .fetch_one(&mut admin)
            .await
            .expect("count");
    assert_eq!(audited, 2);
}
