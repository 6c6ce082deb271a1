//! Sign-in, rotating refresh tokens, revocation across nodes, lockout, CSRF: each rule attacked.

mod common;

use std::time::{Duration, Instant};

use common::{Client, PASSWORD, TestApp, org, who, with_password};
use identity::signin::lockout;
use reqwest::StatusCode;
use serde_json::json;
use store::testing::TestDb;

async fn events(who: &Client) -> StatusCode {
    who.get("/api/v1/audit/events?limit=1").await.status
}

async fn refresh(app: &TestApp, token: &str) -> common::Answer {
    app.anonymous().post("/api/v1/auth/refresh", json!({"refresh_token": token})).await
}

#[tokio::test]
async fn login_does_not_reveal_which_part_was_wrong() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    let app = TestApp::new(&db).await;
    let mut bodies = Vec::new();
    for (org, email, pw) in [
        ("acme", "user0@acme.example", "wrong password entirely"),
        ("acme", "nobody@acme.example", PASSWORD),
        ("no-such-org", "user0@acme.example", PASSWORD),
        ("acme", "user1@acme.example", PASSWORD), // exists, has no password
    ] {
        let r = app.anonymous().login(org, email, pw).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{org} {email}");
        bodies.push(r.text);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    // Malformed input is a 422 naming the problem, not a 500.
    let r = app.anonymous().post("/api/v1/auth/login", json!({"organisation": 1})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // The failures are in the organisation's audit log.
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let n: i64 = sqlx::query_scalar("select count(*) from audit_events where action = 'auth.login_failed'")
        .fetch_one(tx.conn())
        .await
        .expect("count");
    assert_eq!(n, 3);
}

#[tokio::test]
async fn replayed_refresh_token_revokes_the_whole_family() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await; // admin
    let app = TestApp::new(&db).await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let first = admin.refresh_token().to_owned();
    assert_eq!(events(&admin).await, StatusCode::OK);

    let r2 = refresh(&app, &first).await.body;
    let second = r2["refresh_token"].as_str().expect("second").to_owned();
    assert_ne!(first, second);
    // The attacker replays the first token: refused, and the family is dead.
    assert_eq!(refresh(&app, &first).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&app, &second).await.status, StatusCode::UNAUTHORIZED);
    let access2 = app.bearer(r2["access_token"].as_str().expect("access2"));
    assert_eq!(events(&access2).await, StatusCode::UNAUTHORIZED, "access tokens die with the session");
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let n: i64 = sqlx::query_scalar("select count(*) from audit_events where action = 'auth.refresh_reused'")
        .fetch_one(tx.conn())
        .await
        .expect("count");
    assert_eq!(n, 1);
    // A forged or foreign-tenant refresh token is a plain 401.
    let b = org(&db, "beta").await;
    let forged = first.replacen(&a.id.as_uuid().simple().to_string(), &b.id.as_uuid().simple().to_string(), 1);
    assert_eq!(refresh(&app, &forged).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&app, "csr_garbage").await.status, StatusCode::UNAUTHORIZED);
}

/// One refresh token sent eight times at once: the rotation is one statement that marks the token
/// used only if it was unused, so exactly one use rotates; the others find it used — a replay —
/// and the family dies, the winner's new tokens with it. Nothing answers 5xx (no deadlock between
/// the rotation and the revocations).
#[tokio::test]
async fn a_refresh_token_used_concurrently_rotates_once_and_revokes_the_family() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    let app = TestApp::new(&db).await;
    let r = app.anonymous().login("acme", "user0@acme.example", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let token = r.body["refresh_token"].as_str().expect("refresh").to_owned();
    let session = r.body["session_id"].as_str().expect("session").to_owned();

    let uses = (0..8).map(|_| {
        let (app, token) = (app.clone(), token.clone());
        tokio::spawn(async move {
            let r = refresh(&app, &token).await;
            (r.status, r.body["refresh_token"].as_str().map(str::to_owned))
        })
    });
    let mut rotated = Vec::new();
    for u in uses {
        let (status, next) = u.await.expect("task");
        assert!(status == StatusCode::OK || status == StatusCode::UNAUTHORIZED, "{status}");
        if status == StatusCode::OK {
            rotated.push(next.expect("a rotated token"));
        }
    }
    assert_eq!(rotated.len(), 1, "exactly one use rotates the token");
    assert_eq!(refresh(&app, &rotated[0]).await.status, StatusCode::UNAUTHORIZED, "the family is revoked");
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let (unused, revoked): (i64, bool) = sqlx::query_as(
        "select (select count(*) from refresh_tokens where session_id = s.id and used_at is null),
                s.revoked_at is not null
           from sessions s where s.id = $1::uuid",
    )
    .bind(&session)
    .fetch_one(tx.conn())
    .await
    .expect("session");
    assert_eq!((unused, revoked), (1, true), "one successor token was issued, and its session is revoked");
}

/// Two server processes (same database, same token key): a session revoked through one is
/// refused by the other within a second, although the other had it cached.
#[tokio::test]
async fn revocation_reaches_the_other_node_within_a_second() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await; // admin
    with_password(&db, a.users[1]).await; // staff
    let node_a = TestApp::new(&db).await;
    let node_b = TestApp::new(&db).await;
    let staff = node_a.sign_in("acme", "user1@acme.example").await;
    let admin = node_a.sign_in("acme", "user0@acme.example").await;
    let (staff_on_b, admin_on_b) = (staff.on(&node_b), admin.on(&node_b));
    // Staff may not read audit (403), but the session is live on node B — and now cached there.
    assert_eq!(events(&staff_on_b).await, StatusCode::FORBIDDEN);
    tokio::time::sleep(Duration::from_millis(200)).await; // let both listeners connect

    let r = admin.post("/api/v1/sessions/revoke", json!({"user_id": a.users[1], "reason": "left the company"})).await;
    assert_eq!(r.body["revoked"], 1, "{r}");
    let revoked_at = Instant::now();
    loop {
        if events(&staff_on_b).await == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(revoked_at.elapsed() < Duration::from_secs(1), "node B still accepts a revoked session");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The admin's own session is untouched; staff cannot revoke anything.
    assert_eq!(events(&admin_on_b).await, StatusCode::OK);
    // A role change ends the member's sessions too.
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    identity::directory::memberships::change_role(
        &mut tx,
        &who(),
        a.memberships[0],
        identity::Role::Auditor,
        "moved to audit",
    )
    .await
    .expect("role");
    tx.commit().await.expect("commit");
    let changed = Instant::now();
    while events(&admin_on_b).await != StatusCode::UNAUTHORIZED {
        assert!(changed.elapsed() < Duration::from_secs(1), "old role still accepted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn repeated_failures_lock_the_account_with_retry_after() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    let app = TestApp::new(&db).await;
    let client = app.anonymous();
    for _ in 0..lockout::LOCK_AFTER {
        assert_eq!(
            client.login("acme", "user0@acme.example", "not the password!").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = client.login("acme", "user0@acme.example", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "locked even with the right password");
    let retry: u64 = r.headers["retry-after"].to_str().expect("header").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    // An admin unlocks.
    let mut g = db.store.global_tx().await.expect("tx");
    assert!(lockout::unlock(&mut g, &who(), a.users[0]).await.expect("unlock"));
    g.commit().await.expect("commit");
    assert_eq!(client.login("acme", "user0@acme.example", PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_header_for_changes() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    let app = TestApp::new(&db).await;
    let (browser, r) = app.anonymous().sign_in_browser("acme", "user0@acme.example").await;
    let cookies: Vec<&str> = r.headers.get_all("set-cookie").iter().map(|v| v.to_str().expect("ascii")).collect();
    assert!(
        r.body.get("access_token").is_none() && r.body.get("refresh_token").is_none(),
        "browser tokens stay in cookies"
    );
    let access = cookies.iter().find(|c| c.starts_with("cs_access=")).expect("access cookie");
    assert!(access.contains("HttpOnly") && access.contains("Secure") && access.contains("SameSite=Strict"), "{access}");
    let refresh = cookies.iter().find(|c| c.starts_with("cs_refresh=")).expect("refresh cookie");
    assert!(refresh.contains("HttpOnly") && refresh.contains("Path=/api/v1/auth"), "{refresh}");
    assert!(cookies.iter().any(|c| c.starts_with("cs_csrf=")), "csrf cookie");
    // Reads work with the cookie alone.
    assert_eq!(browser.with_csrf(None).get("/api/v1/audit/events").await.status, StatusCode::OK);
    // A cross-site form post carries the cookie but cannot know the token.
    let logout = |b: Client| async move { b.post("/api/v1/auth/logout", ()).await.status };
    assert_eq!(logout(browser.with_csrf(None)).await, StatusCode::FORBIDDEN);
    assert_eq!(logout(browser.with_csrf(Some(&"0".repeat(64)))).await, StatusCode::FORBIDDEN);
    assert_eq!(logout(browser.clone()).await, StatusCode::NO_CONTENT);
    assert_eq!(browser.get("/api/v1/audit/events").await.status, StatusCode::UNAUTHORIZED, "logged out");
}
