//! Self-service and member administration over HTTP, API keys, guest expiry and joining by email
//! domain: each rule attacked through the API, with the status, error code and audit row checked.

mod common;

use common::{Client, PASSWORD, TestApp, audit_count, org, who, with_password};
use identity::directory::tenants;
use identity::signin::{account, lockout};
use identity::{JoinPolicy, MembershipStatus, Role, Slug};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use store::TenantId;
use store::testing::TestDb;
use uuid::Uuid;
use web::limits::Limits;

#[tokio::test]
async fn users_cannot_see_or_revoke_other_users_sessions() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await; // admin
    with_password(&db, a.users[1]).await; // staff
    let app = TestApp::new(&db).await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let staff = app.sign_in("acme", "user1@acme.example").await;
    let staff_second = app.sign_in("acme", "user1@acme.example").await;

    let me = staff.get("/api/v1/me").await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!((me.body["role"].as_str(), me.body["organisation"]["slug"].as_str()), (Some("staff"), Some("acme")));
    assert_eq!(me.body["user"]["id"], json!(a.users[1]));

    let mine = staff.get("/api/v1/me/sessions").await;
    let items = mine.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "exactly the staff member's two sessions: {mine}");
    assert_eq!(items.iter().filter(|s| s["current"] == json!(true)).count(), 1);
    let theirs = admin.get("/api/v1/me/sessions").await;
    let admin_session = theirs.body["items"][0]["id"].as_str().expect("admin session").to_owned();
    assert!(items.iter().all(|s| s["id"] != json!(admin_session)), "another user's session is listed");

    // The staff member tries to kill the admin's session: it does not exist for them.
    let e = staff.delete(&format!("/api/v1/me/sessions/{admin_session}")).await;
    assert_eq!((e.status, e.code()), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(admin.get("/api/v1/me").await.status, StatusCode::OK);
    let r = staff.delete("/api/v1/me/sessions/not-a-uuid").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Their own other session: revoked, and its token is refused at once.
    let other = items.iter().find(|s| s["current"] == json!(false)).expect("other")["id"].as_str().expect("id");
    let r = staff.delete(&format!("/api/v1/me/sessions/{other}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(staff.get("/api/v1/me").await.status, StatusCode::OK);
    assert_eq!(staff_second.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(audit_count(&db, a.id, "session.revoked").await, 1);
}

#[tokio::test]
async fn cross_tenant_member_ids_are_404_on_every_admin_endpoint() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "beta").await;
    with_password(&db, a.users[0]).await;
    let app = TestApp::new(&db).await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let victim = b.users[1];
    let m = |path: &str| format!("/api/v1/members/{victim}/{path}");
    for (method, url, body) in [
        (Method::GET, m("sessions"), None),
        (Method::POST, m("sessions/revoke"), Some(json!({"reason": "attack"}))),
        (Method::POST, m("deactivate"), Some(json!({"reason": "attack"}))),
        (Method::POST, m("reactivate"), Some(json!({"reason": "attack"}))),
        (Method::POST, m("unlock"), None),
        (Method::PUT, m("role"), Some(json!({"role": "staff", "reason": "attack"}))),
        (Method::POST, m("approve"), Some(json!({}))),
        (Method::POST, m("decline"), Some(json!({"reason": "attack"}))),
    ] {
        let e = admin.request(method.clone(), &url, body, &[]).await;
        assert_eq!((e.status, e.code()), (StatusCode::NOT_FOUND, "not_found"), "{method} {url}");
    }
    // B's API key and invitation do not exist for A either.
    let mut tx = db.store.tenant_tx(b.id).await.expect("tx");
    let (b_key, b_inv): (Uuid, Uuid) =
        sqlx::query_as("select (select id from api_keys limit 1), (select id from invitations limit 1)")
            .fetch_one(tx.conn())
            .await
            .expect("b rows");
    drop(tx);
    assert_eq!(admin.delete(&format!("/api/v1/api-keys/{b_key}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(admin.delete(&format!("/api/v1/invitations/{b_inv}")).await.status, StatusCode::NOT_FOUND);
    // Nothing of B changed, and A's list shows only A's members.
    let mut tx = db.store.tenant_tx(b.id).await.expect("tx");
    let (active, revoked_keys): (i64, i64) = sqlx::query_as(
        "select (select count(*) from memberships where status = 'active'),
                (select count(*) from api_keys where revoked_at is not null)",
    )
    .fetch_one(tx.conn())
    .await
    .expect("b state");
    assert_eq!((active, revoked_keys), (3, 0));
    drop(tx);
    let list = admin.get("/api/v1/members").await;
    let ids: Vec<&Value> = list.body["items"].as_array().expect("items").iter().map(|m| &m["user_id"]).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|id| a.users.iter().any(|u| json!(u) == **id)), "{list}");
}

#[tokio::test]
async fn staff_calling_admin_endpoints_get_403_and_the_refusal_is_audited() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[1]).await; // staff
    let app = TestApp::new(&db).await;
    let staff = app.sign_in("acme", "user1@acme.example").await;
    let target = a.users[0];
    let m = |path: &str| format!("/api/v1/members/{target}/{path}");
    let calls = [
        (Method::GET, "/api/v1/members".to_owned(), None),
        (Method::GET, m("sessions"), None),
        (Method::POST, m("sessions/revoke"), Some(json!({"reason": "coup"}))),
        (Method::POST, m("deactivate"), Some(json!({"reason": "coup"}))),
        (Method::POST, m("unlock"), None),
        (Method::PUT, m("role"), Some(json!({"role": "staff", "reason": "coup"}))),
        (Method::PUT, format!("/api/v1/members/{}/role", a.users[1]), Some(json!({"role": "owner", "reason": "coup"}))),
        (Method::POST, m("approve"), Some(json!({}))),
        (Method::POST, "/api/v1/api-keys".to_owned(), Some(json!({"name": "x", "role": "staff", "scopes": []}))),
        (Method::GET, "/api/v1/api-keys".to_owned(), None),
        (Method::POST, "/api/v1/invitations".to_owned(), Some(json!({"email": "x@y.example", "role": "staff"}))),
        (Method::GET, "/api/v1/invitations".to_owned(), None),
    ];
    let n = calls.len() as u64;
    let counted_before = web::refusals::refusals_total();
    for (method, url, body) in calls {
        let e = staff.request(method.clone(), &url, body, &[]).await;
        assert_eq!((e.status, e.code()), (StatusCode::FORBIDDEN, "forbidden"), "{method} {url}");
    }
    // Every refusal is counted; the ledger holds them aggregated (one event per organisation,
    // address and minute carrying the count, tests/refusals.rs), not one row each.
    assert_eq!(web::refusals::refusals_total() - counted_before, n);
    assert_eq!(audit_count(&db, a.id, "access.denied").await, 1);
    // The admin is untouched.
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let role: String = sqlx::query_scalar("select role from memberships where user_id = $1")
        .bind(target)
        .fetch_one(tx.conn())
        .await
        .expect("role");
    assert_eq!(role, "admin");
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_or_deactivated() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await; // the only admin
    let app = TestApp::new(&db).await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let me = a.users[0];
    let e = admin.put(&format!("/api/v1/members/{me}/role"), json!({"role": "staff", "reason": "stepping down"})).await;
    assert_eq!((e.status, e.code()), (StatusCode::CONFLICT, "last_admin"));
    let e = admin.post(&format!("/api/v1/members/{me}/deactivate"), json!({"reason": "bye"})).await;
    assert_eq!((e.status, e.code()), (StatusCode::CONFLICT, "last_admin"));
    // An admin cannot create an owner either.
    let e = admin
        .put(&format!("/api/v1/members/{}/role", a.users[2]), json!({"role": "owner", "reason": "promotion"}))
        .await;
    assert_eq!((e.status, e.code()), (StatusCode::FORBIDDEN, "role_escalation"));
    // With a second admin, stepping down works.
    let r = admin
        .put(&format!("/api/v1/members/{}/role", a.users[2]), json!({"role": "admin", "reason": "new head of admin"}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = admin.put(&format!("/api/v1/members/{me}/role"), json!({"role": "staff", "reason": "stepping down"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    // The caller's own sessions end with the role: this login and the fixture's session row.
    assert_eq!(r.body["revoked"], 2, "{r}");
    assert_eq!(admin.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
}

/// An organisation never loses its last owner: not by demotion, not by deactivation, not even
/// at the owner's own hand, and admins (who may not manage owners) cannot either. With a second
/// owner, stepping down works; the rule then protects the one who remains.
#[tokio::test]
async fn the_last_owner_cannot_be_demoted_or_deactivated() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await; // an admin
    let first = common::member(&db, a.id, "acme", "olive", identity::Role::Owner, None, true).await;
    let app = TestApp::new(&db).await;
    let owner = app.sign_in("acme", "olive@acme.example").await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let role = |u: Uuid| format!("/api/v1/members/{u}/role");
    let deactivate = |u: Uuid| format!("/api/v1/members/{u}/deactivate");
    // Plenty of admins exist, so this is the owner rule, not the admin rule.
    for to in ["admin", "staff"] {
        let e = owner.put(&role(first), json!({"role": to, "reason": "stepping down"})).await;
        assert_eq!((e.status, e.code()), (StatusCode::CONFLICT, "last_owner"), "{to}: {e}");
    }
    let e = owner.post(&deactivate(first), json!({"reason": "leaving"})).await;
    assert_eq!((e.status, e.code()), (StatusCode::CONFLICT, "last_owner"), "{e}");
    let e = admin.post(&deactivate(first), json!({"reason": "coup"})).await;
    assert_eq!((e.status, e.code()), (StatusCode::FORBIDDEN, "role_escalation"), "{e}");
    // A second owner: now the first may step down, and the second is protected in turn.
    let second = common::member(&db, a.id, "acme", "oscar", identity::Role::Owner, None, true).await;
    let e = owner.put(&role(first), json!({"role": "admin", "reason": "handing over"})).await;
    assert_eq!(e.status, StatusCode::OK, "{e}");
    let heir = app.sign_in("acme", "oscar@acme.example").await;
    let e = heir.post(&deactivate(second), json!({"reason": "leaving"})).await;
    assert_eq!((e.status, e.code()), (StatusCode::CONFLICT, "last_owner"), "{e}");
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let owners: Vec<Uuid> =
        sqlx::query_scalar("select user_id from memberships where role = 'owner' and status = 'active'")
            .fetch_all(tx.conn())
            .await
            .expect("owners");
    assert_eq!(owners, vec![second]);
    drop(tx);
    assert_eq!(audit_count(&db, a.id, "membership.deactivated").await, 0);
}

#[tokio::test]
async fn role_change_needs_a_reason_and_revokes_sessions_with_an_audited_delta() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    with_password(&db, a.users[1]).await;
    let app = TestApp::new(&db).await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let staff = app.sign_in("acme", "user1@acme.example").await;
    let url = format!("/api/v1/members/{}/role", a.users[1]);
    for body in [
        json!({"role": "finance"}),
        json!({"role": "finance", "reason": "  "}),
        json!({"role": "finance", "reason": "x".repeat(201)}),
    ] {
        let e = admin.put(&url, body).await;
        assert_eq!((e.status, e.code()), (StatusCode::UNPROCESSABLE_ENTITY, "reason_required"));
    }
    let e = admin.put(&url, json!({"role": "root", "reason": "because"})).await;
    assert_eq!((e.status, e.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"));
    let e = admin.put(&url, json!({"role": "finance", "reason": "ok", "x": 1})).await;
    assert_eq!((e.status, e.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"));
    assert_eq!(audit_count(&db, a.id, "membership.role_changed").await, 0, "refused changes record nothing");
    assert_eq!(staff.get("/api/v1/me").await.status, StatusCode::OK);

    let r = admin.put(&url, json!({"role": "finance", "reason": "moved to the finance team"})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(
        (r.body["previous_role"].as_str(), r.body["role"].as_str(), &r.body["revoked"]),
        (Some("staff"), Some("finance"), &json!(1))
    );
    assert!(r.body["elapsed_ms"].as_f64().is_some());
    assert_eq!(staff.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let (changes, reason, actor): (String, String, String) =
        sqlx::query_as("select changes, reason, actor_id from audit_events where action = 'membership.role_changed'")
            .fetch_one(tx.conn())
            .await
            .expect("audit row");
    assert_eq!(changes, r#"{"role":{"from":"staff","to":"finance"}}"#);
    assert_eq!((reason.as_str(), actor), ("moved to the finance team", a.users[0].to_string()));
    drop(tx);
    // The member signs in again and holds the new role.
    let finance = app.sign_in("acme", "user1@acme.example").await;
    let me = finance.get("/api/v1/me").await;
    assert_eq!(me.body["role"], "finance");
}

#[tokio::test]
async fn deactivation_kills_the_members_access_token_immediately() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    with_password(&db, a.users[1]).await;
    // This test signs in more than the default 10 times from one address: raise the per-address
    // budget so only the account lockout is exercised here (tests/limits.rs covers the budget).
    let limits = Limits { login: "100/15m".parse().expect("limit"), ..Limits::default() };
    let app = TestApp::setup(&db).limits(limits).start().await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let staff = app.sign_in("acme", "user1@acme.example").await;
    // Cached on this node.
    assert_eq!(staff.get("/api/v1/me").await.status, StatusCode::OK);
    let url = |what: &str| format!("/api/v1/members/{}/{what}", a.users[1]);
    let e = admin.post(&url("deactivate"), json!({})).await;
    assert_eq!((e.status, e.code()), (StatusCode::UNPROCESSABLE_ENTITY, "reason_required"));
    let r = admin.post(&url("deactivate"), json!({"reason": "left the company"})).await;
    assert_eq!((r.status, &r.body["revoked"]), (StatusCode::OK, &json!(1)), "{r}");
    assert_eq!(staff.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.anonymous().login("acme", "user1@acme.example", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    // Suspended here only: the global account is still active.
    let mut g = db.store.global_tx().await.expect("tx");
    let status: String = sqlx::query_scalar("select status from users where id = $1")
        .bind(a.users[1])
        .fetch_one(g.conn())
        .await
        .expect("user");
    assert_eq!(status, "active");
    drop(g);
    let e = admin.post(&url("deactivate"), json!({"reason": "again"})).await;
    assert_eq!((e.status, e.code()), (StatusCode::CONFLICT, "invalid_state"));
    assert_eq!(audit_count(&db, a.id, "membership.deactivated").await, 1);
    let r = admin.post(&url("reactivate"), json!({"reason": "came back"})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.anonymous().login("acme", "user1@acme.example", PASSWORD).await.status, StatusCode::OK);
    // Someone guesses the member's password until the account locks; an admin unlocks it.
    for _ in 0..lockout::LOCK_AFTER {
        app.anonymous().login("acme", "user1@acme.example", "a wrong guess 123").await;
    }
    assert_eq!(
        app.anonymous().login("acme", "user1@acme.example", PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let r = admin.post(&url("unlock"), ()).await;
    assert_eq!((r.status, &r.body["was_locked"]), (StatusCode::OK, &json!(true)));
    assert_eq!(app.anonymous().login("acme", "user1@acme.example", PASSWORD).await.status, StatusCode::OK);
    assert_eq!(audit_count(&db, a.id, "member.unlocked").await, 1);
}

/// The unlock writes its own `member.unlocked` in the organisation transaction it runs in (not the
/// web handler): rolled back, neither the unlock nor either record stays; committed, all do.
#[tokio::test]
async fn an_unlock_and_its_audit_records_commit_together() {
    async fn locked(db: &TestDb, user: Uuid) -> bool {
        let mut g = db.store.global_tx().await.expect("tx");
        lockout::is_locked(&mut g, user).await.expect("locked?")
    }
    async fn platform_unlocks(db: &TestDb) -> i64 {
        let mut admin = db.admin_conn().await;
        sqlx::query_scalar("select count(*) from platform_audit_events where action = 'user.unlocked'")
            .fetch_one(&mut admin)
            .await
            .expect("count")
    }
    async fn unlock(db: &TestDb, tenant: TenantId, user: Uuid) -> (store::TenantTx, store::GlobalTx) {
        let permit = common::operator(authz::Action::MembersManage, tenant);
        let mut tx = db.store.tenant_tx(tenant).await.expect("tx");
        let mut g = db.store.global_tx().await.expect("tx");
        let was_locked = identity::admin::members::unlock(&mut tx, &mut g, &who(), &permit, Role::Owner, user)
            .await
            .expect("unlock");
        assert!(was_locked);
        // Written in the caller's organisation transaction, before anything commits.
        let seen: i64 = sqlx::query_scalar("select count(*) from audit_events where action = 'member.unlocked'")
            .fetch_one(tx.conn())
            .await
            .expect("count");
        assert_eq!(seen, 1);
        (tx, g)
    }

    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let user = a.users[1];
    with_password(&db, user).await;
    let app = TestApp::new(&db).await;
    for _ in 0..lockout::LOCK_AFTER {
        app.anonymous().login("acme", "user1@acme.example", "a wrong guess 123").await;
    }
    assert!(locked(&db, user).await);

    let (tx, g) = unlock(&db, a.id, user).await;
    drop(g);
    drop(tx);
    assert!(locked(&db, user).await, "a rolled-back unlock unlocked");
    assert_eq!(audit_count(&db, a.id, "member.unlocked").await, 0, "a rolled-back unlock left its record");
    assert_eq!(platform_unlocks(&db).await, 0);

    let (tx, g) = unlock(&db, a.id, user).await;
    g.commit().await.expect("commit");
    tx.commit().await.expect("commit");
    assert!(!locked(&db, user).await);
    assert_eq!(audit_count(&db, a.id, "member.unlocked").await, 1);
    assert_eq!(platform_unlocks(&db).await, 1);
}

#[tokio::test]
async fn password_change_ends_every_session_and_refuses_weak_passwords() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[1]).await;
    let app = TestApp::new(&db).await;
    let first = app.sign_in("acme", "user1@acme.example").await;
    let second = app.sign_in("acme", "user1@acme.example").await;
    let url = "/api/v1/me/password".to_owned();
    for weak in ["password1234", "short", "user1@acme.example is me", "welcome to Org acme"] {
        let e = first.post(&url, json!({"current_password": PASSWORD, "new_password": weak})).await;
        assert_eq!(
            (e.status, e.body["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("weak_password")),
            "{weak}"
        );
    }
    let e = first
        .post(&url, json!({"current_password": "not my password", "new_password": "a brand new passphrase 42"}))
        .await;
    assert_eq!((e.status, e.code()), (StatusCode::FORBIDDEN, "wrong_password"));
    assert_eq!(second.get("/api/v1/me").await.status, StatusCode::OK);

    let r = first.post(&url, json!({"current_password": PASSWORD, "new_password": "a brand new passphrase 42"})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for t in [&first, &second] {
        assert_eq!(t.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.anonymous().login("acme", "user1@acme.example", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.anonymous().login("acme", "user1@acme.example", "a brand new passphrase 42").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn api_keys_are_shown_once_and_a_revoked_key_is_refused_at_once_on_every_node() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    let node_a = TestApp::new(&db).await;
    let node_b = TestApp::new(&db).await;
    let admin = node_a.sign_in("acme", "user0@acme.example").await;
    let k = admin.post("/api/v1/api-keys", json!({"name": "SIEM export", "role": "auditor", "scopes": ["audit:read"], "expires_at": "2999-01-01T00:00:00Z"}))
    .await;
    assert_eq!(k.status, StatusCode::CREATED, "{k}");
    let secret = k.body["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with(k.body["prefix"].as_str().expect("prefix")));
    let list = admin.get("/api/v1/api-keys").await;
    let text = list.body.to_string();
    assert!(!text.contains(&secret[secret.len() - 64..]) && !text.contains("\"secret\""), "{text}");
    let listed =
        list.body["items"].as_array().expect("items").iter().find(|i| i["id"] == k.body["id"]).expect("listed").clone();
    assert_eq!((listed["scopes"].clone(), listed["revoked_at"].clone()), (json!(["audit:read"]), Value::Null));

    let events = "/api/v1/audit/events?limit=1";
    let key_on_b = node_b.bearer(&secret);
    assert_eq!(key_on_b.get(events).await.status, StatusCode::OK);
    let r = admin.delete(&format!("/api/v1/api-keys/{}", k.body["id"].as_str().expect("id"))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(key_on_b.get(events).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(key_on_b.on(&node_a).get(events).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(audit_count(&db, a.id, "api_key.revoked").await, 1);
}

#[tokio::test]
async fn key_minting_refuses_role_and_scope_escalation_and_unknown_scopes() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    let app = TestApp::new(&db).await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let mint = |who: Client, body: Value| async move { who.post("/api/v1/api-keys", body).await };
    let e = mint(admin.clone(), json!({"name": "root", "role": "owner", "scopes": []})).await;
    assert_eq!((e.status, e.code()), (StatusCode::FORBIDDEN, "role_escalation"));
    let e = mint(admin.clone(), json!({"name": "x", "role": "auditor", "scopes": ["audit:write"]})).await;
    assert_eq!((e.status, e.code()), (StatusCode::UNPROCESSABLE_ENTITY, "unknown_scope"));
    let e = mint(
        admin.clone(),
        json!({"name": "x", "role": "auditor", "scopes": [], "expires_at": "2001-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!((e.status, e.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"));
    // An admin key that may manage keys but not read the audit log cannot mint one that can.
    let k = mint(admin.clone(), json!({"name": "provisioner", "role": "admin", "scopes": ["api_keys:manage"]})).await;
    assert_eq!(k.status, StatusCode::CREATED);
    let provisioner = app.bearer(k.body["secret"].as_str().expect("secret"));
    let e = mint(provisioner.clone(), json!({"name": "x", "role": "auditor", "scopes": ["audit:read"]})).await;
    assert_eq!((e.status, e.code()), (StatusCode::FORBIDDEN, "scope_escalation"));
    let e = mint(provisioner.clone(), json!({"name": "x", "role": "owner", "scopes": []})).await;
    assert_eq!((e.status, e.code()), (StatusCode::FORBIDDEN, "role_escalation"));
    let r = mint(provisioner, json!({"name": "child", "role": "staff", "scopes": ["api_keys:manage"]})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    // A key without api_keys:manage cannot mint at all (the fixture's auditor key).
    let k = mint(admin, json!({"name": "reader", "role": "admin", "scopes": ["audit:read"]})).await;
    assert_eq!(k.status, StatusCode::CREATED);
    let e = mint(
        app.bearer(k.body["secret"].as_str().expect("secret")),
        json!({"name": "x", "role": "staff", "scopes": []}),
    )
    .await;
    assert_eq!((e.status, e.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let n: i64 = sqlx::query_scalar("select count(*) from api_keys").fetch_one(tx.conn()).await.expect("count");
    assert_eq!(n, 4, "fixture key + provisioner + child + reader");
}

#[tokio::test]
async fn guest_membership_expiry_ends_the_membership_and_revokes_its_sessions() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "beta").await;
    with_password(&db, a.users[1]).await;
    let app = TestApp::new(&db).await;
    let guest = app.sign_in("acme", "user1@acme.example").await;
    assert_eq!(guest.get("/api/v1/me").await.status, StatusCode::OK);
    // Nothing is due: nothing changes.
    assert_eq!(identity::admin::guest_expiry::expire_due(&db.store).await.expect("sweep"), 0);
    let mut admin = db.admin_conn().await;
    sqlx::query(
        "update memberships set valid_from = now() - interval '1 day', valid_until = now() - interval '1 second'
          where user_id = $1",
    )
    .bind(a.users[1])
    .execute(&mut admin)
    .await
    .expect("backdate");
    assert_eq!(identity::admin::guest_expiry::expire_due(&db.store).await.expect("sweep"), 1);
    assert_eq!(identity::admin::guest_expiry::expire_due(&db.store).await.expect("sweep"), 0, "idempotent");
    assert_eq!(guest.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
    let (status, revoked): (String, i64) = sqlx::query_as(
        "select m.status, (select count(*) from sessions s where s.user_id = m.user_id and s.tenant_id = m.tenant_id
                             and s.revoked_reason = 'membership_expired')
           from memberships m where m.user_id = $1",
    )
    .bind(a.users[1])
    .fetch_one(&mut admin)
    .await
    .expect("state");
    assert_eq!((status.as_str(), revoked), ("ended", 1));
    assert_eq!(audit_count(&db, a.id, "membership.expired").await, 1);
    assert_eq!(audit_count(&db, b.id, "membership.expired").await, 0, "other organisations untouched");
    // The bypass that found the organisation is on record.
    let logged: i64 =
        sqlx::query_scalar("select count(*) from platform_bypass_log where actor = 'system:membership-expiry'")
            .fetch_one(&mut admin)
            .await
            .expect("log");
    assert_eq!(logged, 3);
}

async fn new_user(db: &TestDb, email: &str, verified: bool) -> Uuid {
    let mut g = db.store.global_tx().await.expect("tx");
    let u = identity::directory::users::create(
        &mut g,
        &who(),
        &identity::EmailAddress::parse(email).expect("email"),
        "New Person",
    )
    .await
    .expect("user");
    account::set_password(
        &mut g,
        &who(),
        &identity::signin::passwords::Hasher::new(1).expect("h"),
        u.id,
        &SecretString::from(PASSWORD),
        &[],
    )
    .await
    .expect("password");
    g.commit().await.expect("commit");
    if verified {
        let mut admin = db.admin_conn().await;
        sqlx::query("update users set email_verified_at = now() where id = $1")
            .bind(u.id)
            .execute(&mut admin)
            .await
            .expect("verify");
    }
    u.id
}

async fn join(db: &TestDb, user: Uuid) -> Vec<(TenantId, MembershipStatus)> {
    let mut g = db.store.global_tx().await.expect("tx");
    let joined = identity::directory::joining::after_email_verified(&mut g, user).await.expect("join");
    g.commit().await.expect("commit");
    joined
}

#[tokio::test]
async fn verified_domain_joins_auto_join_orgs_and_asks_admin_approval_orgs() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await; // admin_approval, acme.example
    let _other = org(&db, "beta").await;
    let mut bp = db.store.bypass("test fixture", "an auto-join organisation").await.expect("bypass");
    let open = tenants::create(
        &mut bp,
        &who(),
        &tenants::NewTenant {
            slug: Slug::parse("open").expect("slug"),
            name: "Open Org".into(),
            allowed_email_domains: vec!["ACME.example".into()],
            join_policy: JoinPolicy::AutoJoin,
        },
    )
    .await
    .expect("tenant");
    bp.commit().await.expect("commit");

    // Unverified: nothing. A look-alike domain: nothing.
    let unverified = new_user(&db, "pending@acme.example", false).await;
    assert!(join(&db, unverified).await.is_empty());
    let lookalike = new_user(&db, "eve@evilacme.example", true).await;
    assert!(join(&db, lookalike).await.is_empty());

    let newbie = new_user(&db, "newbie@Acme.Example", true).await;
    let mut joined = join(&db, newbie).await;
    joined.sort_by_key(|(t, _)| *t);
    let mut expected = vec![(a.id, MembershipStatus::Pending), (open.id, MembershipStatus::Active)];
    expected.sort_by_key(|(t, _)| *t);
    assert_eq!(joined, expected);
    assert!(join(&db, newbie).await.is_empty(), "a second verification joins nothing new");
    assert_eq!(audit_count(&db, a.id, "membership.joined_by_domain").await, 1);
    assert_eq!(audit_count(&db, open.id, "membership.joined_by_domain").await, 1);
    // The function refuses to run outside an identity transaction.
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let e = sqlx::query("select * from countersign_join_by_verified_email($1)")
        .bind(newbie)
        .fetch_all(tx.conn())
        .await
        .expect_err("tenant tx");
    assert_eq!(common::sqlstate(&e).as_deref(), Some("42501"));
    drop(tx);

    let app = TestApp::new(&db).await;
    // Auto-join: in at once. Admin approval: not until approved.
    assert_eq!(app.anonymous().login("open", "newbie@acme.example", PASSWORD).await.status, StatusCode::OK);
    assert_eq!(app.anonymous().login("acme", "newbie@acme.example", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    with_password(&db, a.users[0]).await;
    with_password(&db, a.users[1]).await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let staff = app.sign_in("acme", "user1@acme.example").await;
    let pending = admin.get("/api/v1/members?status=pending").await;
    let items = pending.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{pending}");
    assert_eq!(items[0]["user_id"], json!(newbie));
    let approve = format!("/api/v1/members/{newbie}/approve");
    let r = staff.post(&approve, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let e = admin.post(&approve, json!({"role": "owner"})).await;
    assert_eq!((e.status, e.code()), (StatusCode::FORBIDDEN, "role_escalation"));
    let r = admin.post(&approve, json!({"role": "hod", "department_id": a.department})).await;
    assert_eq!((r.status, r.body["role"].as_str()), (StatusCode::OK, Some("hod")), "{r}");
    let e = admin.post(&approve, json!({})).await;
    assert_eq!((e.status, e.code()), (StatusCode::CONFLICT, "invalid_state"));
    assert_eq!(app.anonymous().login("acme", "newbie@acme.example", PASSWORD).await.status, StatusCode::OK);
    assert_eq!(audit_count(&db, a.id, "membership.approved").await, 1);

    // Decline: the request ends, and signing in stays impossible.
    let declined = new_user(&db, "declined@acme.example", true).await;
    assert_eq!(join(&db, declined).await.len(), 2);
    let e = admin.post(&format!("/api/v1/members/{declined}/decline"), json!({})).await;
    assert_eq!((e.status, e.code()), (StatusCode::UNPROCESSABLE_ENTITY, "reason_required"));
    let r = admin.post(&format!("/api/v1/members/{declined}/decline"), json!({"reason": "not an employee"})).await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("ended")));
    assert_eq!(app.anonymous().login("acme", "declined@acme.example", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    assert!(join(&db, declined).await.is_empty(), "re-verifying does not ask again");
    assert_eq!(audit_count(&db, a.id, "membership.declined").await, 1);
}

#[tokio::test]
async fn auditors_and_read_scoped_keys_may_read_member_lists_but_change_nothing() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    identity::directory::memberships::change_role(
        &mut tx,
        &who(),
        a.memberships[2],
        identity::Role::Auditor,
        "external audit",
    )
    .await
    .expect("role");
    tx.commit().await.expect("commit");
    with_password(&db, a.users[0]).await;
    with_password(&db, a.users[2]).await;
    let app = TestApp::new(&db).await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let auditor = app.sign_in("acme", "user2@acme.example").await;
    let k =
        admin.post("/api/v1/api-keys", json!({"name": "hr sync", "role": "admin", "scopes": ["members:read"]})).await;
    assert_eq!(k.status, StatusCode::CREATED);
    let reader_key = app.bearer(k.body["secret"].as_str().expect("secret"));
    let staff = a.users[1];
    for token in [&auditor, &reader_key] {
        for url in [
            "/api/v1/members".to_owned(),
            format!("/api/v1/members/{staff}/sessions"),
            "/api/v1/invitations".to_owned(),
        ] {
            assert_eq!(token.get(&url).await.status, StatusCode::OK, "{url}");
        }
        let e = token.post(&format!("/api/v1/members/{staff}/deactivate"), json!({"reason": "overreach"})).await;
        assert_eq!((e.status, e.code()), (StatusCode::FORBIDDEN, "forbidden"));
    }
    assert_eq!(auditor.get("/api/v1/api-keys").await.status, StatusCode::FORBIDDEN);
    // Pagination: a page of one, then the rest through the cursor, no member twice.
    let p1 = admin.get("/api/v1/members?limit=1").await;
    let cursor = p1.body["next_cursor"].as_str().expect("cursor").to_owned();
    let p2 = admin.get(&format!("/api/v1/members?limit=10&cursor={cursor}")).await;
    assert_eq!(
        (p1.body["items"].as_array().map(Vec::len), p2.body["items"].as_array().map(Vec::len)),
        (Some(1), Some(2))
    );
    assert!(p2.body["items"].as_array().expect("items").iter().all(|m| m["user_id"] != p1.body["items"][0]["user_id"]));
    assert_eq!(p2.body["next_cursor"], Value::Null);
    let e = admin.get("/api/v1/members?status=emperor").await;
    assert_eq!((e.status, e.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"));
}

#[tokio::test]
async fn admin_expire_memberships_command_ends_due_guests() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let mut admin = db.admin_conn().await;
    sqlx::query(
        "update memberships set valid_from = now() - interval '1 day', valid_until = now() - interval '1 minute'
          where user_id = $1",
    )
    .bind(a.users[2])
    .execute(&mut admin)
    .await
    .expect("backdate");
    let dir = std::env::temp_dir().join(format!("cs-expire-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["admin", "expire-memberships"])
        .env("DATABASE_URL", db.url())
        .env("COUNTERSIGN_DATA_DIR", &dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run countersign");
    std::fs::remove_dir_all(&dir).ok();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ended 1 membership"), "{stdout}");
    let status: String = sqlx::query_scalar("select status from memberships where user_id = $1")
        .bind(a.users[2])
        .fetch_one(&mut admin)
        .await
        .expect("status");
    assert_eq!(status, "ended");
    assert_eq!(audit_count(&db, a.id, "membership.expired").await, 1);
}
