//! How sessions end without anyone logging out: the server-side inactivity expiry, and "revoke
//! everyone" reaching every node. Each claim attacked with the real server.

mod common;

use std::time::{Duration, Instant};

use common::{PASSWORD, org, spawn_with_key, with_password};
use identity::sessions::IDLE_TIMEOUT_MINUTES;
use identity::tokens::TokenKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use store::testing::TestDb;
use uuid::Uuid;

fn key() -> TokenKey {
    TokenKey::from_seed([9; 32])
}

/// (access token, refresh token) of a fresh password login.
async fn login(base: &str, org: &str, email: &str) -> (String, String) {
    let r: Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"organisation": org, "email": email, "password": PASSWORD, "token_delivery": "body"}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    (r["access_token"].as_str().expect("access").to_owned(), r["refresh_token"].as_str().expect("refresh").to_owned())
}

async fn me(base: &str, access: &str) -> StatusCode {
    reqwest::Client::new().get(format!("{base}/api/v1/me")).bearer_auth(access).send().await.expect("me").status()
}

async fn refresh(base: &str, token: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/refresh"))
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .expect("refresh")
        .status()
}

/// Pretends `user`'s sessions were last used `minutes` ago (as an idle browser would leave them).
async fn idle_for(db: &TestDb, user: Uuid, minutes: i64) {
    let mut admin = db.admin_conn().await;
    sqlx::query("update sessions set last_seen_at = now() - make_interval(mins => $2::int) where user_id = $1")
        .bind(user)
        .bind(i32::try_from(minutes).expect("minutes"))
        .execute(&mut admin)
        .await
        .expect("backdate");
}

async fn idle_minutes(db: &TestDb, user: Uuid) -> f64 {
    let mut admin = db.admin_conn().await;
    sqlx::query_scalar(
        "select extract(epoch from now() - max(last_seen_at))::float8 / 60 from sessions where user_id = $1",
    )
    .bind(user)
    .fetch_one(&mut admin)
    .await
    .expect("last seen")
}

/// A session used within the idle timeout lives on (and its use is recorded); one idle past it is
/// refused for both its access token and its refresh token, and a refused request does not
/// revive it. Without sleeping: the last use is backdated in the database.
#[tokio::test]
async fn a_session_idle_past_the_timeout_is_refused_with_its_refresh_token() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let (active, idle) = (a.users[0], a.users[1]);
    with_password(&db, active).await;
    with_password(&db, idle).await;
    let base = spawn_with_key(&db, key()).await;
    let (active_access, _) = login(&base, "acme", "user0@acme.example").await;
    let (idle_access, idle_refresh) = login(&base, "acme", "user1@acme.example").await;
    // No request yet, so no node has either session cached.
    idle_for(&db, active, IDLE_TIMEOUT_MINUTES - 1).await;
    idle_for(&db, idle, IDLE_TIMEOUT_MINUTES + 1).await;

    assert_eq!(me(&base, &active_access).await, StatusCode::OK, "used within the timeout");
    assert!(idle_minutes(&db, active).await < 1.0, "the use was recorded, restarting the idle clock");

    assert_eq!(me(&base, &idle_access).await, StatusCode::UNAUTHORIZED, "idle past the timeout");
    assert_eq!(refresh(&base, &idle_refresh).await, StatusCode::UNAUTHORIZED, "its refresh token is dead too");
    assert!(
        idle_minutes(&db, idle).await > f64::from(i32::try_from(IDLE_TIMEOUT_MINUTES).expect("minutes")),
        "a refused request must not revive the session"
    );
    assert_eq!(me(&base, &idle_access).await, StatusCode::UNAUTHORIZED, "still dead");
}

/// Two server processes on one database: an administrator revokes every session of the
/// organisation through node A; node B, which had them cached, refuses all of them within a
/// second (the administrator's own included). Another organisation's sessions are untouched.
#[tokio::test]
async fn revoking_everyone_reaches_the_other_node_within_a_second() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "beta").await;
    for u in [a.users[0], a.users[1], a.users[2], b.users[1]] {
        with_password(&db, u).await;
    }
    let node_a = spawn_with_key(&db, key()).await;
    let node_b = spawn_with_key(&db, key()).await;
    let (admin, _) = login(&node_a, "acme", "user0@acme.example").await;
    let mut members = Vec::new();
    for email in ["user1@acme.example", "user2@acme.example"] {
        members.push(login(&node_a, "acme", email).await);
    }
    let (outsider, _) = login(&node_a, "beta", "user1@beta.example").await;
    // Every session is live on node B, and now cached there.
    for (access, _) in &members {
        assert_eq!(me(&node_b, access).await, StatusCode::OK);
    }
    assert_eq!(me(&node_b, &admin).await, StatusCode::OK);
    assert_eq!(me(&node_b, &outsider).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await; // let both listeners connect

    let r = reqwest::Client::new()
        .post(format!("{node_a}/api/v1/sessions/revoke"))
        .bearer_auth(&admin)
        .json(&json!({"reason": "laptop stolen: everyone out"}))
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert!(body["revoked"].as_u64().is_some_and(|n| n >= 3), "{body}");
    let revoked_at = Instant::now();
    for access in members.iter().map(|(a, _)| a).chain([&admin]) {
        while me(&node_b, access).await != StatusCode::UNAUTHORIZED {
            assert!(revoked_at.elapsed() < Duration::from_secs(1), "node B still accepts a revoked session");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Refresh tokens died with their sessions, on either node.
    for (_, refresh_token) in &members {
        assert_eq!(refresh(&node_b, refresh_token).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(me(&node_b, &outsider).await, StatusCode::OK, "another organisation is untouched");
    assert_eq!(common::audit_count(&db, a.id, "session.revoked_for_tenant").await, 1);
    assert_eq!(common::audit_count(&db, b.id, "session.revoked_for_tenant").await, 0);
}
