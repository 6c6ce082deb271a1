//! How sessions end without anyone logging out: the server-side inactivity expiry, and "revoke
//! everyone" reaching every node. Each claim attacked with the real server.

mod common;

use std::time::{Duration, Instant};

use common::{Client, TestApp, org, with_password};
use identity::signin::sessions::IDLE_TIMEOUT_MINUTES;
use reqwest::StatusCode;
use serde_json::json;
use store::testing::TestDb;
use uuid::Uuid;

async fn me(who: &Client) -> StatusCode {
    who.get("/api/v1/me").await.status
}

/// Presents `who`'s refresh token (alone, as a client refreshing does) to `app`.
async fn refresh(app: &TestApp, who: &Client) -> StatusCode {
    app.anonymous().post("/api/v1/auth/refresh", json!({"refresh_token": who.refresh_token()})).await.status
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
    let app = TestApp::new(&db).await;
    let active_member = app.sign_in("acme", "user0@acme.example").await;
    let idle_member = app.sign_in("acme", "user1@acme.example").await;
    // No request yet, so no node has either session cached.
    idle_for(&db, active, IDLE_TIMEOUT_MINUTES - 1).await;
    idle_for(&db, idle, IDLE_TIMEOUT_MINUTES + 1).await;

    assert_eq!(me(&active_member).await, StatusCode::OK, "used within the timeout");
    assert!(idle_minutes(&db, active).await < 1.0, "the use was recorded, restarting the idle clock");

    assert_eq!(me(&idle_member).await, StatusCode::UNAUTHORIZED, "idle past the timeout");
    assert_eq!(refresh(&app, &idle_member).await, StatusCode::UNAUTHORIZED, "its refresh token is dead too");
    assert!(
        idle_minutes(&db, idle).await > f64::from(i32::try_from(IDLE_TIMEOUT_MINUTES).expect("minutes")),
        "a refused request must not revive the session"
    );
    assert_eq!(me(&idle_member).await, StatusCode::UNAUTHORIZED, "still dead");
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
    let node_a = TestApp::new(&db).await;
    let node_b = TestApp::new(&db).await;
    let admin = node_a.sign_in("acme", "user0@acme.example").await;
    let mut members = Vec::new();
    for email in ["user1@acme.example", "user2@acme.example"] {
        members.push(node_a.sign_in("acme", email).await.on(&node_b));
    }
    let outsider = node_a.sign_in("beta", "user1@beta.example").await.on(&node_b);
    // Every session is live on node B, and now cached there.
    for member in &members {
        assert_eq!(me(member).await, StatusCode::OK);
    }
    assert_eq!(me(&admin.on(&node_b)).await, StatusCode::OK);
    assert_eq!(me(&outsider).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await; // let both listeners connect

    let r = admin.post("/api/v1/sessions/revoke", json!({"reason": "laptop stolen: everyone out"})).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.body;
    assert!(body["revoked"].as_u64().is_some_and(|n| n >= 3), "{body}");
    let revoked_at = Instant::now();
    for who in members.iter().chain([&admin.on(&node_b)]) {
        while me(who).await != StatusCode::UNAUTHORIZED {
            assert!(revoked_at.elapsed() < Duration::from_secs(1), "node B still accepts a revoked session");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Refresh tokens died with their sessions, on either node.
    for member in &members {
        assert_eq!(refresh(&node_b, member).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(me(&outsider).await, StatusCode::OK, "another organisation is untouched");
    assert_eq!(common::audit_count(&db, a.id, "session.revoked_for_tenant").await, 1);
    assert_eq!(common::audit_count(&db, b.id, "session.revoked_for_tenant").await, 0);
}
