//! Per-address sign-in budget, configurable lockout and the suspicious-login signal, attacked.

mod common;

use common::{PASSWORD, TestApp, org, who, with_password};
use identity::signin::lockout::{self, LockAfter};
use identity::signin::sessions::LoginPolicy;
use identity::signin::suspicious::SuspiciousIps;
use reqwest::StatusCode;
use serde_json::{Value, json};
use store::testing::TestDb;
use web::limits::Limits;

/// A server on loopback; with `trust_loopback` it believes X-Forwarded-For from 127.0.0.0/8
/// (as behind a reverse proxy), so the test chooses the client address.
async fn server(db: &TestDb, trust_loopback: bool, limits: Limits) -> TestApp {
    let setup = TestApp::setup(db).limits(limits);
    if trust_loopback { setup.behind_proxy() } else { setup }.start().await
}

fn limits(login: &str) -> Limits {
    Limits { login: login.parse().expect("limit"), ..Limits::default() }
}

#[tokio::test]
async fn one_address_gets_ten_attempts_then_429_rate_limited_even_with_the_right_password() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    let app = server(&db, true, Limits::default()).await;
    let me = app.anonymous().from("198.51.100.7");
    for i in 0..10 {
        let r = me.login("acme", &format!("nobody{i}@acme.example"), "wrong password!!").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let r = me.login("acme", "user0@acme.example", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert!((1..=15 * 60).contains(&retry), "{retry}");
    assert_eq!(r.code(), "rate_limited");
    // Counted in /metrics, not written to the ledger (no audit flood).
    let metrics = app.metrics().await;
    let line = metrics.lines().find(|l| l.starts_with("countersign_sign_in_rate_limited_total ")).expect("metric");
    assert!(line.split(' ').nth(1).and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 1), "{line}");
    let mut admin = db.admin_conn().await;
    let n: i64 = sqlx::query_scalar(
        "select (select count(*) from audit_events where action like 'auth.rate%')
              + (select count(*) from platform_audit_events where action like 'auth.rate%')",
    )
    .fetch_one(&mut admin)
    .await
    .expect("count");
    assert_eq!(n, 0);
    // The limited attempt never reached the password check: no login_failed for it.
    let failed: i64 =
        sqlx::query_scalar("select count(*) from audit_events where tenant_id = $1 and action = 'auth.login_failed'")
            .bind(a.id.as_uuid())
            .fetch_one(&mut admin)
            .await
            .expect("count");
    assert_eq!(failed, 10);
    // Another client is unaffected.
    let r = app.anonymous().from("198.51.100.8").login("acme", "user0@acme.example", PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn spoofed_forwarded_for_from_an_untrusted_peer_does_not_buy_a_new_budget() {
    let db = TestDb::new().await;
    org(&db, "acme").await;
    // No trusted proxies: the peer (127.0.0.1) is the client, whatever the header says.
    let app = server(&db, false, limits("3/1h")).await;
    for i in 0..3 {
        let xff = format!("203.0.113.{i}");
        let r = app.anonymous().from(&xff).login("acme", "x@acme.example", "wrong password!!").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    for xff in ["203.0.113.50", "10.9.9.9, 203.0.113.51", "garbage"] {
        let r = app.anonymous().from(xff).login("acme", "x@acme.example", "wrong password!!").await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{xff}");
        assert_eq!(r.code(), "rate_limited");
    }
}

#[tokio::test]
async fn each_client_behind_a_trusted_proxy_has_its_own_budget() {
    let db = TestDb::new().await;
    org(&db, "acme").await;
    let app = server(&db, true, limits("3/1h")).await;
    for _ in 0..3 {
        let r = app.anonymous().from("203.0.113.1").login("acme", "x@acme.example", "wrong password!!").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // The client forges a left-hand entry; the proxy appended its real address, which is spent.
    for xff in ["203.0.113.1", "6.6.6.6, 203.0.113.1", "::ffff:203.0.113.1"] {
        let r = app.anonymous().from(xff).login("acme", "x@acme.example", "wrong password!!").await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{xff}");
    }
    // A different client behind the same proxy still has its whole budget.
    for _ in 0..3 {
        let r = app.anonymous().from("203.0.113.2").login("acme", "x@acme.example", "wrong password!!").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // IPv6 clients are budgeted per /64: rotating the interface id does not help.
    for i in 0..3 {
        let r = app
            .anonymous()
            .from(&format!("2001:db8:7:7::{i}"))
            .login("acme", "x@acme.example", "wrong password!!")
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = app.anonymous().from("2001:db8:7:7:abcd::1").login("acme", "x@acme.example", "wrong password!!").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn lockout_threshold_comes_from_configuration() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    let policy = LoginPolicy { lock_after: LockAfter::new(2).expect("threshold"), ..LoginPolicy::default() };
    let app = server(&db, true, Limits { policy, ..Limits::default() }).await;
    for _ in 0..2 {
        let r = app.anonymous().from("198.51.100.1").login("acme", "user0@acme.example", "not the password!").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = app.anonymous().from("198.51.100.1").login("acme", "user0@acme.example", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "locked after 2, not the default 5");
    assert_eq!(r.code(), "too_many_attempts");
}

async fn platform_signals(db: &TestDb, user: uuid::Uuid) -> Vec<(String, Option<String>)> {
    let mut admin = db.admin_conn().await;
    sqlx::query_as(
        "select changes, host(ip) from platform_audit_events
          where action = 'auth.suspicious_login' and entity_id = $1 order by seq",
    )
    .bind(user.to_string())
    .fetch_all(&mut admin)
    .await
    .expect("platform events")
}

async fn tenant_signals(db: &TestDb, tenant: store::TenantId) -> i64 {
    let mut admin = db.admin_conn().await;
    sqlx::query_scalar("select count(*) from audit_events where tenant_id = $1 and action = 'auth.suspicious_login'")
        .bind(tenant.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("count")
}

#[tokio::test]
async fn failures_from_five_addresses_raise_one_suspicious_login_per_hour() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "beta").await;
    with_password(&db, a.users[0]).await;
    with_password(&db, b.users[0]).await;
    let app = server(&db, true, Limits::default()).await;
    // Four addresses, several failures each: not yet suspicious (one user on four devices).
    for i in 1..=4 {
        for _ in 0..2 {
            let xff = format!("192.0.2.{i}");
            app.anonymous().from(&xff).login("acme", "user0@acme.example", "not the password!").await;
        }
        let mut g = db.store.global_tx().await.expect("tx");
        lockout::unlock(&mut g, &who(), a.users[0]).await.expect("unlock");
        g.commit().await.expect("commit");
    }
    assert!(platform_signals(&db, a.users[0]).await.is_empty());
    // The fifth distinct address raises it, on the platform chain and in the organisation.
    app.anonymous().from("2001:db8::5").login("acme", "user0@acme.example", "not the password!").await;
    let signals = platform_signals(&db, a.users[0]).await;
    assert_eq!(signals.len(), 1, "{signals:?}");
    assert_eq!(signals[0].0, r#"{"distinct_ips":{"from":0,"to":5}}"#);
    assert_eq!(signals[0].1.as_deref(), Some("2001:db8::5"));
    assert_eq!(tenant_signals(&db, a.id).await, 1);
    // More failures from more addresses within the hour: no second event.
    let mut g = db.store.global_tx().await.expect("tx");
    lockout::unlock(&mut g, &who(), a.users[0]).await.expect("unlock");
    g.commit().await.expect("commit");
    for i in 6..=8 {
        app.anonymous().from(&format!("192.0.2.{i}")).login("acme", "user0@acme.example", "not the password!").await;
    }
    assert_eq!(platform_signals(&db, a.users[0]).await.len(), 1);
    assert_eq!(tenant_signals(&db, a.id).await, 1);
    let metrics = app.metrics().await;
    assert!(metrics.lines().any(|l| l.starts_with("countersign_suspicious_logins_total ") && !l.ends_with(" 0")));

    // Beta's admin attacked through acme's sign-in: the platform sees it, acme's auditors do
    // not learn that a stranger's account exists.
    for i in 1..=5 {
        app.anonymous().from(&format!("198.51.100.{i}")).login("acme", "user0@beta.example", "not the password!").await;
    }
    assert_eq!(platform_signals(&db, b.users[0]).await.len(), 1);
    assert_eq!(tenant_signals(&db, a.id).await, 1, "no event about beta's user in acme");
    assert_eq!(tenant_signals(&db, b.id).await, 0, "beta was not the organisation named");
}

#[tokio::test]
async fn distinct_address_threshold_is_configurable_and_old_failures_are_pruned() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    let policy = LoginPolicy { suspicious_ips: SuspiciousIps::new(2).expect("threshold"), ..LoginPolicy::default() };
    let app = server(&db, true, Limits { policy, ..Limits::default() }).await;
    let mut admin = db.admin_conn().await;
    // Failures older than the hour do not count; older than a day are deleted.
    sqlx::query(
        "insert into login_failures (user_id, ip, at) values
           ($1, '10.0.0.1', now() - interval '2 hours'), ($1, '10.0.0.2', now() - interval '2 days')",
    )
    .bind(a.users[0])
    .execute(&mut admin)
    .await
    .expect("old failures");
    app.anonymous().from("192.0.2.1").login("acme", "user0@acme.example", "not the password!").await;
    assert!(platform_signals(&db, a.users[0]).await.is_empty(), "a 2-hour-old failure is not in the window");
    let left: Vec<String> = sqlx::query_scalar("select host(ip) from login_failures where user_id = $1 order by at")
        .bind(a.users[0])
        .fetch_all(&mut admin)
        .await
        .expect("rows");
    assert_eq!(left, ["10.0.0.1", "192.0.2.1"]);
    app.anonymous().from("192.0.2.2").login("acme", "user0@acme.example", "not the password!").await;
    assert_eq!(platform_signals(&db, a.users[0]).await.len(), 1, "two addresses, threshold 2");
}

/// Every unauthenticated sign-in route (password, email code request and redemption, second
/// factor, invitation acceptance) spends the same per-address budget: an attacker cannot switch
/// routes to keep guessing.
#[tokio::test]
async fn every_sign_in_route_spends_one_shared_budget() {
    let db = TestDb::new().await;
    let _a = org(&db, "acme").await;
    let app = server(&db, true, limits("8/15m")).await;
    let client = app.anonymous().from("203.0.113.9");
    let post = |path: &'static str, body: Value| client.post(path, body);
    let routes: [(&str, Value); 4] = [
        (
            "/api/v1/auth/email-code",
            json!({"organisation": "acme", "email": "nobody@acme.example", "purpose": "login"}),
        ),
        (
            "/api/v1/auth/email-code/verify",
            json!({"organisation": "acme", "email": "nobody@acme.example", "code": "12345678"}),
        ),
        ("/api/v1/auth/mfa", json!({"mfa_token": "csm_not_a_real_token", "totp_code": "123456"})),
        ("/api/v1/invitations/accept", json!({"token": "csi_not_a_real_token", "password": "x"})),
    ];
    // Two rounds over the four routes: 8 attempts, each answered on its merits (never 429).
    for round in 0..2 {
        for (path, body) in &routes {
            let r = post(path, body.clone()).await;
            assert_ne!(r.status, StatusCode::TOO_MANY_REQUESTS, "{path} round {round}");
        }
    }
    // The budget is spent: every sign-in route, password login included, now answers 429.
    for (path, body) in &routes {
        let r = post(path, body.clone()).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(r.code(), "rate_limited");
    }
    let r = app.anonymous().from("203.0.113.9").login("acme", "user0@acme.example", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
}
