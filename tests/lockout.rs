//! The one lockout, attacked: as an oracle (does 429 say an address exists?), as a weapon (can
//! an outsider keep a member out?), across organisations, and inside a session (MFA management
//! and password change honour `--lockout-after`).

mod common;

use common::{PASSWORD, org, spawn_state, who, with_password};
use identity::login_policy::{LockAfter, LoginPolicy};
use identity::sessions;
use identity::tokens::TokenKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use store::testing::TestDb;
use web::limits::Limits;

const WRONG: &str = "not the password at all";

/// A server behind a trusted proxy on loopback (the test chooses the client address), with a
/// per-address sign-in budget large enough that the lockout is what answers.
async fn server(db: &TestDb, policy: LoginPolicy) -> String {
    let proxies = web::TrustedProxies::new(vec!["127.0.0.0/8".parse().expect("cidr")]);
    let state = web::AppState::new(db.store.clone(), proxies, TokenKey::from_seed([9; 32])).expect("state");
    let limits = Limits { login: "1000/15m".parse().expect("limit"), policy, ..Limits::default() };
    spawn_state(state.with_limits(limits)).await
}

async fn login(base: &str, from: &str, org: &str, email: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .header("x-forwarded-for", from)
        .json(&json!({"organisation": org, "email": email, "password": password, "token_delivery": "body"}))
        .send()
        .await
        .expect("request")
}

/// What a client can observe of one answer: status, body, and every header but the ones that
/// differ per request by construction; `Retry-After` as present/absent and rounded to minutes.
async fn observed(r: reqwest::Response) -> (u16, Vec<(String, String)>, Value) {
    let status = r.status().as_u16();
    let mut headers: Vec<(String, String)> = r
        .headers()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "date" | "x-request-id"))
        .map(|(k, v)| {
            let v = v.to_str().unwrap_or_default().to_owned();
            let v = if k == "retry-after" {
                format!("~{} min", v.parse::<u64>().expect("seconds").div_ceil(60))
            } else {
                v
            };
            (k.as_str().to_owned(), v)
        })
        .collect();
    headers.sort();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

#[tokio::test]
async fn lockout_answers_unknown_emails_non_members_and_members_alike() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "beta").await;
    with_password(&db, a.users[0]).await;
    with_password(&db, b.users[0]).await;
    let base = server(&db, LoginPolicy::default()).await;
    let mut sequences = Vec::new();
    for organisation in ["acme", "no-such-organisation"] {
        for email in ["user0@acme.example", "user0@beta.example", "nobody@acme.example"] {
            let mut seen = Vec::new();
            for _ in 0..8 {
                seen.push(observed(login(&base, "198.51.100.1", organisation, email, WRONG).await).await);
            }
            sequences.push((format!("{email} at {organisation}"), seen));
        }
    }
    let (first_name, first) = &sequences[0];
    let statuses: Vec<u16> = first.iter().map(|o| o.0).collect();
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429], "{first_name}");
    assert_eq!(first[5].2["error"]["code"], "too_many_attempts");
    assert!(first[5].1.iter().any(|(k, _)| k == "retry-after"), "{:?}", first[5].1);
    for (name, seen) in &sequences[1..] {
        assert_eq!(seen, first, "{name} is told apart from {first_name}");
    }
}

#[tokio::test]
async fn failures_aimed_at_another_organisation_never_lock_the_members_own() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    org(&db, "beta").await;
    with_password(&db, a.users[0]).await;
    let base = server(&db, LoginPolicy::default()).await;
    for organisation in ["beta", "made-up-organisation", "ACME-typo"] {
        for _ in 0..8 {
            login(&base, "198.51.100.2", organisation, "user0@acme.example", WRONG).await;
        }
        let r = login(&base, "198.51.100.2", organisation, "user0@acme.example", WRONG).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{organisation}: locked there");
    }
    // Same address, same email, the member's own organisation (typed in any case): still open.
    let r = login(&base, "198.51.100.2", " Acme ", "user0@acme.example", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_outsider_hammering_a_members_pair_locks_only_their_own_address() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    let base = server(&db, LoginPolicy::default()).await;
    let member = "user0@acme.example";
    for outsider in ["203.0.113.66", "2001:db8:66:66::1"] {
        for _ in 0..8 {
            login(&base, outsider, "acme", member, WRONG).await;
        }
    }
    // The outsider's own addresses stay locked, even with the right password — the
    // `repeated_failures_lock_the_account_with_retry_after` behaviour, for the attacker only.
    for outsider in ["203.0.113.66", "2001:db8:66:66::1", "2001:db8:66:66:ffff::2"] {
        let r = login(&base, outsider, "acme", member, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{outsider}");
        assert!(r.headers().contains_key("retry-after"));
    }
    // The member, from their own address, signs in.
    let r = login(&base, "198.51.100.20", "acme", member, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    // An admin unlock clears what was locked, every address of it.
    let mut g = db.store.global_tx().await.expect("tx");
    assert!(identity::lockout::is_locked(&mut g, a.users[0]).await.expect("locked?"));
    assert!(sessions::unlock(&mut g, &who(), a.users[0]).await.expect("unlock"));
    assert!(!identity::lockout::is_locked(&mut g, a.users[0]).await.expect("locked?"));
    g.commit().await.expect("commit");
    let r = login(&base, "203.0.113.66", "acme", member, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn lock_rows_hold_neither_emails_nor_addresses() {
    let db = TestDb::new().await;
    org(&db, "acme").await;
    let base = server(&db, LoginPolicy::default()).await;
    login(&base, "198.51.100.9", "acme", "nobody@acme.example", WRONG).await;
    let mut admin = db.admin_conn().await;
    let rows: Vec<(Vec<u8>, Option<uuid::Uuid>, i32)> =
        sqlx::query_as("select lock_key, user_id, failures from credential_failures")
            .fetch_all(&mut admin)
            .await
            .expect("rows");
    assert_eq!(rows.len(), 1, "an unknown email is counted like any other");
    assert_eq!((rows[0].0.len(), rows[0].1, rows[0].2), (32, None, 1));
    let text = String::from_utf8_lossy(&rows[0].0).to_string();
    assert!(!text.contains("nobody") && !text.contains("198.51"), "{text}");
}

async fn call(base: &str, method: reqwest::Method, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{base}/api/v1{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn access_token(base: &str, email: &str) -> String {
    let r = login(base, "198.51.100.30", "acme", email, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    v["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn mfa_management_honours_the_configured_lockout_threshold() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[1]).await;
    let policy = LoginPolicy { lock_after: LockAfter::new(2).expect("threshold"), ..LoginPolicy::default() };
    let base = server(&db, policy).await;
    let token = access_token(&base, "user1@acme.example").await;
    let (s, _) = call(&base, reqwest::Method::POST, "/me/mfa/totp", &token, json!({})).await;
    assert_eq!(s, StatusCode::OK);
    for _ in 0..2 {
        let (s, e) =
            call(&base, reqwest::Method::POST, "/me/mfa/totp/confirm", &token, json!({"code": "000000"})).await;
        assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_code")), "{e}");
    }
    // Locked after 2, not the default 5: even a code would now be refused unseen.
    let (s, e) = call(&base, reqwest::Method::POST, "/me/mfa/totp/confirm", &token, json!({"code": "000000"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("too_many_attempts")), "{e}");
    // Their own checks lock their own key: signing in from their address is not affected.
    assert_eq!(login(&base, "198.51.100.30", "acme", "user1@acme.example", PASSWORD).await.status(), StatusCode::OK);
    // An admin unlock clears it.
    let mut g = db.store.global_tx().await.expect("tx");
    assert!(sessions::unlock(&mut g, &who(), a.users[1]).await.expect("unlock"));
    g.commit().await.expect("commit");
    let (s, e) = call(&base, reqwest::Method::POST, "/me/mfa/totp/confirm", &token, json!({"code": "000000"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_code")), "{e}");
}

#[tokio::test]
async fn password_change_guesses_honour_the_configured_lockout_threshold() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[1]).await;
    let policy = LoginPolicy { lock_after: LockAfter::new(2).expect("threshold"), ..LoginPolicy::default() };
    let base = server(&db, policy).await;
    let token = access_token(&base, "user1@acme.example").await;
    let change =
        |current: &'static str| json!({"current_password": current, "new_password": "a brand new passphrase 42"});
    for _ in 0..2 {
        let (s, e) = call(&base, reqwest::Method::POST, "/me/password", &token, change(WRONG)).await;
        assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("wrong_password")), "{e}");
    }
    let (s, e) = call(&base, reqwest::Method::POST, "/me/password", &token, change(PASSWORD)).await;
    assert_eq!((s, e["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("too_many_attempts")), "{e}");
}
