//! The one lockout, attacked: as an oracle (does 429 say an address exists?), as a weapon (can
//! an outsider keep a member out?), across organisations, and inside a session (MFA management
//! and password change honour `--lockout-after`).

mod common;

use common::{Answer, Client, PASSWORD, TestApp, org, roomy_limits, who, with_password};
use identity::signin::lockout::{self, LockAfter};
use identity::signin::sessions::LoginPolicy;
use reqwest::StatusCode;
use serde_json::{Value, json};
use store::testing::TestDb;
use web::limits::Limits;

const WRONG: &str = "not the password at all";

/// A server behind a trusted proxy on loopback (the test chooses the client address), with a
/// per-address sign-in budget large enough that the lockout is what answers.
async fn server(db: &TestDb, policy: LoginPolicy) -> TestApp {
    TestApp::setup(db).behind_proxy().limits(Limits { policy, ..roomy_limits() }).start().await
}

/// What a client can observe of one answer: status, body, and every header but the ones that
/// differ per request by construction; `Retry-After` as present/absent and rounded to minutes.
fn observed(r: Answer) -> (u16, Vec<(String, String)>, Value) {
    let mut headers: Vec<(String, String)> = r
        .headers
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
    (r.status.as_u16(), headers, r.body)
}

#[tokio::test]
async fn lockout_answers_unknown_emails_non_members_and_members_alike() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "beta").await;
    with_password(&db, a.users[0]).await;
    with_password(&db, b.users[0]).await;
    let app = server(&db, LoginPolicy::default()).await;
    let attacker = app.anonymous().from("198.51.100.1");
    let mut sequences = Vec::new();
    for organisation in ["acme", "no-such-organisation"] {
        for email in ["user0@acme.example", "user0@beta.example", "nobody@acme.example"] {
            let mut seen = Vec::new();
            for _ in 0..8 {
                seen.push(observed(attacker.login(organisation, email, WRONG).await));
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
    let app = server(&db, LoginPolicy::default()).await;
    let client = app.anonymous().from("198.51.100.2");
    for organisation in ["beta", "made-up-organisation", "ACME-typo"] {
        for _ in 0..8 {
            client.login(organisation, "user0@acme.example", WRONG).await;
        }
        let r = client.login(organisation, "user0@acme.example", WRONG).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{organisation}: locked there");
    }
    // Same address, same email, the member's own organisation (typed in any case): still open.
    let r = client.login(" Acme ", "user0@acme.example", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn an_outsider_hammering_a_members_pair_locks_only_their_own_address() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    let app = server(&db, LoginPolicy::default()).await;
    let member = "user0@acme.example";
    for outsider in ["203.0.113.66", "2001:db8:66:66::1"] {
        for _ in 0..8 {
            app.anonymous().from(outsider).login("acme", member, WRONG).await;
        }
    }
    // The outsider's own addresses stay locked, even with the right password — the
    // `repeated_failures_lock_the_account_with_retry_after` behaviour, for the attacker only.
    for outsider in ["203.0.113.66", "2001:db8:66:66::1", "2001:db8:66:66:ffff::2"] {
        let r = app.anonymous().from(outsider).login("acme", member, PASSWORD).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{outsider}");
        assert!(r.headers.contains_key("retry-after"));
    }
    // The member, from their own address, signs in.
    let r = app.anonymous().from("198.51.100.20").login("acme", member, PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK);
    // An admin unlock clears what was locked, every address of it.
    let mut g = db.store.global_tx().await.expect("tx");
    assert!(lockout::is_locked(&mut g, a.users[0]).await.expect("locked?"));
    assert!(lockout::unlock(&mut g, &who(), a.users[0]).await.expect("unlock"));
    assert!(!lockout::is_locked(&mut g, a.users[0]).await.expect("locked?"));
    g.commit().await.expect("commit");
    let r = app.anonymous().from("203.0.113.66").login("acme", member, PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn lock_rows_hold_neither_emails_nor_addresses() {
    let db = TestDb::new().await;
    org(&db, "acme").await;
    let app = server(&db, LoginPolicy::default()).await;
    app.anonymous().from("198.51.100.9").login("acme", "nobody@acme.example", WRONG).await;
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

/// Acme's staff member, signed in from their own address, on a server that locks after 2.
async fn staff_locked_after_two(db: &TestDb) -> (TestApp, Client, common::Org) {
    let a = org(db, "acme").await;
    with_password(db, a.users[1]).await;
    let policy = LoginPolicy { lock_after: LockAfter::new(2).expect("threshold"), ..LoginPolicy::default() };
    let app = server(db, policy).await;
    let staff = app.anonymous().from("198.51.100.30").sign_in("acme", "user1@acme.example").await;
    (app, staff, a)
}

#[tokio::test]
async fn mfa_management_honours_the_configured_lockout_threshold() {
    let db = TestDb::new().await;
    let (app, staff, a) = staff_locked_after_two(&db).await;
    assert_eq!(staff.post("/api/v1/me/mfa/totp", json!({})).await.status, StatusCode::OK);
    let confirm = || staff.post("/api/v1/me/mfa/totp/confirm", json!({"code": "000000"}));
    for _ in 0..2 {
        let r = confirm().await;
        assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_code"), "{}", r.body);
    }
    // Locked after 2, not the default 5: even a code would now be refused unseen.
    let r = confirm().await;
    assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"), "{}", r.body);
    // Their own checks lock their own key: signing in from their address is not affected.
    let own_address = app.anonymous().from("198.51.100.30");
    assert_eq!(own_address.login("acme", "user1@acme.example", PASSWORD).await.status, StatusCode::OK);
    // An admin unlock clears it.
    let mut g = db.store.global_tx().await.expect("tx");
    assert!(lockout::unlock(&mut g, &who(), a.users[1]).await.expect("unlock"));
    g.commit().await.expect("commit");
    let r = confirm().await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_code"), "{}", r.body);
}

#[tokio::test]
async fn password_change_guesses_honour_the_configured_lockout_threshold() {
    let db = TestDb::new().await;
    let (_app, staff, _) = staff_locked_after_two(&db).await;
    let change = |current: &'static str| {
        staff.post(
            "/api/v1/me/password",
            json!({"current_password": current, "new_password": "a brand new passphrase 42"}),
        )
    };
    for _ in 0..2 {
        let r = change(WRONG).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "wrong_password"), "{}", r.body);
    }
    let r = change(PASSWORD).await;
    assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"), "{}", r.body);
}
