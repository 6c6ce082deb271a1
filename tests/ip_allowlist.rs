//! The per-organisation IP allowlist, attacked: outside addresses (IPv4 and IPv6) with a session,
//! an API key, a login or a refresh; forged X-Forwarded-For; other organisations; a second node.

mod common;

use std::time::{Duration, Instant};

use common::{Answer, Client, PASSWORD, TestApp, org, who, with_password};
use identity::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use store::TenantId;
use store::testing::TestDb;

const INSIDE: &str = "203.0.113.5";
const LIST: &str = "/api/v1/settings/ip-allowlist";

/// A node that believes X-Forwarded-For from loopback (as behind a reverse proxy) when
/// `trust_loopback`, so the test chooses the client address.
async fn node(db: &TestDb, trust_loopback: bool) -> TestApp {
    let setup = TestApp::setup(db);
    if trust_loopback { setup.behind_proxy() } else { setup }.start().await
}

async fn get_list(who: &Client, from: &str) -> Answer {
    who.from(from).get(LIST).await
}

async fn put_list(who: &Client, from: &str, body: Value) -> Answer {
    who.from(from).put(LIST, body).await
}

fn code(r: Answer) -> (StatusCode, String) {
    (r.status, r.code().to_owned())
}

async fn refusals(db: &TestDb, tenant: TenantId) -> Vec<(String, Option<String>, String)> {
    let mut admin = db.admin_conn().await;
    sqlx::query_as(
        "select entity_type, entity_id, host(ip) from audit_events
          where tenant_id = $1 and action = 'auth.ip_refused' order by seq",
    )
    .bind(tenant.as_uuid())
    .fetch_all(&mut admin)
    .await
    .expect("events")
}

/// Acme with the admin's password set; its list replaced by `cidrs` directly in the database layer.
async fn acme_with_list(db: &TestDb, cidrs: &[&str]) -> common::Org {
    let a = org(db, "acme").await;
    with_password(db, a.users[0]).await;
    with_password(db, a.users[1]).await;
    let entries: Vec<_> =
        cidrs.iter().map(|c| identity::directory::ip_allowlist::NewEntry::parse(c, "test").expect("entry")).collect();
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let permit = common::operator(authz::Action::SettingsManage, a.id);
    identity::directory::ip_allowlist::replace(&mut tx, &who(), &permit, &entries, "test setup")
        .await
        .expect("replace");
    tx.commit().await.expect("commit");
    a
}

#[tokio::test]
async fn outside_ipv4_and_ipv6_addresses_are_refused_and_audited_once_per_minute() {
    let db = TestDb::new().await;
    let a = acme_with_list(&db, &["203.0.113.0/24", "2001:db8:1::/48"]).await;
    let app = node(&db, true).await;
    let access = app.anonymous().from(INSIDE).sign_in("acme", "user0@acme.example").await;
    for (from, expected) in [
        ("203.0.113.77", StatusCode::OK),
        ("2001:db8:1:42::9", StatusCode::OK),
        ("::ffff:203.0.113.9", StatusCode::OK),
        ("198.51.100.1", StatusCode::FORBIDDEN),
        ("2001:db8:2::1", StatusCode::FORBIDDEN),
        ("198.51.100.1", StatusCode::FORBIDDEN),
    ] {
        let (status, c) = code(get_list(&access, from).await);
        assert_eq!(status, expected, "{from}");
        if status == StatusCode::FORBIDDEN {
            assert_eq!(c, "ip_not_allowed", "{from}");
        }
    }
    let user = a.users[0].to_string();
    assert_eq!(
        refusals(&db, a.id).await,
        vec![
            ("user".to_owned(), Some(user.clone()), "198.51.100.1".to_owned()),
            ("user".to_owned(), Some(user.clone()), "2001:db8:2::1".to_owned()),
        ],
        "one event per address per minute: the repeat from 198.51.100.1 is not recorded again"
    );
    // A burst from one address cannot grow the ledger.
    for _ in 0..20 {
        assert_eq!(get_list(&access, "198.51.100.1").await.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(refusals(&db, a.id).await.len(), 2);
    let metrics = app.metrics().await;
    assert!(metrics.lines().any(|l| l.starts_with("countersign_ip_allowlist_refused_total ") && !l.ends_with(" 0")));
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let db = TestDb::new().await;
    let a = acme_with_list(&db, &["203.0.113.0/24"]).await;
    let trusting = node(&db, true).await;
    let access = trusting.anonymous().from(INSIDE).sign_in("acme", "user0@acme.example").await;
    // A server with no trusted proxies sees the peer (127.0.0.1), whatever the header claims.
    let direct = node(&db, false).await;
    let (status, c) = code(get_list(&access.on(&direct), INSIDE).await);
    assert_eq!((status, c.as_str()), (StatusCode::FORBIDDEN, "ip_not_allowed"));
    assert_eq!(
        direct.anonymous().from(INSIDE).login("acme", "user0@acme.example", PASSWORD).await.status,
        StatusCode::FORBIDDEN
    );
    // Behind the trusted proxy, the right-most untrusted hop is the client: a forged left entry
    // does not get an outsider in, and does not lock an insider out.
    assert_eq!(get_list(&access, "203.0.113.1, 198.51.100.9").await.status, StatusCode::FORBIDDEN);
    assert_eq!(get_list(&access, "198.51.100.9, 203.0.113.1").await.status, StatusCode::OK);
    assert_eq!(get_list(&access, "198.51.100.9, 203.0.113.1, 127.0.0.2").await.status, StatusCode::OK);
    let ips: Vec<String> = refusals(&db, a.id).await.into_iter().map(|r| r.2).collect();
    assert!(ips.contains(&"127.0.0.1".to_owned()) && ips.contains(&"198.51.100.9".to_owned()), "{ips:?}");
}

#[tokio::test]
async fn api_key_from_outside_is_refused_before_it_is_checked() {
    let db = TestDb::new().await;
    let a = acme_with_list(&db, &["203.0.113.0/24"]).await;
    let (key_id, secret) = common::api_key(&db, a.id, "auditor", Role::Auditor, &["audit:read"]).await;
    let app = node(&db, true).await;
    let auditor = app.bearer(&secret);
    let events = |from: &'static str| auditor.from(from);
    assert_eq!(events(INSIDE).get("/api/v1/audit/events?limit=1").await.status, StatusCode::OK);
    let (status, c) = code(events("198.51.100.3").get("/api/v1/audit/events?limit=1").await);
    assert_eq!((status, c.as_str()), (StatusCode::FORBIDDEN, "ip_not_allowed"));
    assert_eq!(
        refusals(&db, a.id).await,
        vec![("api_key".to_owned(), Some(key_id.to_string()), "198.51.100.3".to_owned())]
    );
}

#[tokio::test]
async fn login_and_refresh_from_outside_are_refused_and_audited() {
    let db = TestDb::new().await;
    let a = acme_with_list(&db, &["203.0.113.0/24", "2001:db8:1::/48"]).await;
    let app = node(&db, true).await;
    // The right password from outside: refused before the password is looked at.
    let (status, c) = code(app.anonymous().from("198.51.100.4").login("acme", "user0@acme.example", PASSWORD).await);
    assert_eq!((status, c.as_str()), (StatusCode::FORBIDDEN, "ip_not_allowed"));
    let (status, _) = code(app.anonymous().from("2001:db8:9::1").login("acme", "user0@acme.example", PASSWORD).await);
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut admin = db.admin_conn().await;
    let sessions: i64 = sqlx::query_scalar("select count(*) from sessions where tenant_id = $1 and ip is not null")
        .bind(a.id.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("count");
    assert_eq!(sessions, 0, "no session was created");
    // A refresh token taken outside the office is refused there, and not burnt by the attempt.
    let member = app.anonymous().from("2001:db8:1::7").sign_in("acme", "user0@acme.example").await;
    let refresh = json!({"refresh_token": member.refresh_token()});
    let refresh_from = |from: &'static str| app.anonymous().from(from);
    // (Another outside address: a second refusal of 198.51.100.4 within the minute is not re-audited.)
    let (status, c) = code(refresh_from("198.51.100.44").post("/api/v1/auth/refresh", refresh.clone()).await);
    assert_eq!((status, c.as_str()), (StatusCode::FORBIDDEN, "ip_not_allowed"));
    assert_eq!(refresh_from(INSIDE).post("/api/v1/auth/refresh", refresh).await.status, StatusCode::OK);
    let r = refusals(&db, a.id).await;
    assert_eq!(r.len(), 3, "{r:?}");
    assert_eq!((r[0].0.as_str(), r[0].1.as_deref()), ("login", Some("user0@acme.example")));
    assert_eq!(r[1].2, "2001:db8:9::1");
    assert_eq!(r[2].0, "session");
}

#[tokio::test]
async fn other_organisations_are_unaffected() {
    let db = TestDb::new().await;
    acme_with_list(&db, &["203.0.113.0/24"]).await;
    let b = org(&db, "beta").await;
    with_password(&db, b.users[0]).await;
    let app = node(&db, true).await;
    let access = app.anonymous().from("198.51.100.5").sign_in("beta", "user0@beta.example").await;
    let r = get_list(&access, "198.51.100.5").await.body;
    assert_eq!(r["your_ip"], "198.51.100.5");
    assert_eq!(r["enforced"], true, "beta's fixture list (0.0.0.0/0, ::/0) is in force and admits everyone");
    assert!(refusals(&db, b.id).await.is_empty());
}

#[tokio::test]
async fn replacing_the_list_is_admin_only_validated_audited_and_refuses_self_lockout() {
    let db = TestDb::new().await;
    let a = acme_with_list(&db, &[]).await;
    let app = node(&db, true).await;
    let admin = app.anonymous().from(INSIDE).sign_in("acme", "user0@acme.example").await;
    let staff = app.anonymous().from(INSIDE).sign_in("acme", "user1@acme.example").await;
    let office = json!({"entries": [{"cidr": "203.0.113.0/24", "note": "office"}], "reason": "office only"});
    // Staff may not read or change it.
    assert_eq!(code(get_list(&staff, INSIDE).await), (StatusCode::FORBIDDEN, "forbidden".into()));
    assert_eq!(code(put_list(&staff, INSIDE, office.clone()).await).0, StatusCode::FORBIDDEN);
    // Bad input: 422 with a stable code, nothing stored.
    for body in [
        json!({"entries": [{"cidr": "203.0.113.1/24"}], "reason": "host bits"}),
        json!({"entries": [{"cidr": "not an address"}], "reason": "garbage"}),
        json!({"entries": [{"cidr": "203.0.113.0/24"}, {"cidr": "203.0.113.0/24"}], "reason": "twice"}),
        json!({"entries": (0..101).map(|i| json!({"cidr": format!("10.0.{i}.0/24")})).collect::<Vec<_>>(), "reason": "too many"}),
        json!({"entries": [], "reason": "x"}),
        json!({"entries": [], "reason": "unknown field", "extra": 1}),
        json!({"entries": [{"cidr": "10.0.0.0/8", "note": "n".repeat(201)}], "reason": "long note"}),
    ] {
        let (status, c) = code(put_list(&admin, INSIDE, body.clone()).await);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(c == "invalid_field" || c == "invalid_body", "{c}");
    }
    // A list that excludes the caller: 409 unless confirmed.
    let elsewhere = json!({"entries": [{"cidr": "2001:db8:1::/48"}], "reason": "vpn only"});
    assert_eq!(code(put_list(&admin, INSIDE, elsewhere).await), (StatusCode::CONFLICT, "would_lock_out".into()));
    let r = put_list(&admin, INSIDE, office).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.body;
    assert_eq!((v["entries"][0]["cidr"].as_str(), v["enforced"].as_bool()), (Some("203.0.113.0/24"), Some(true)));
    let r = get_list(&admin, "203.0.113.200").await.body;
    assert_eq!(r["entries"][0]["note"], "office");
    // Audited with before and after.
    let mut conn = db.admin_conn().await;
    let (changes, reason): (String, String) = sqlx::query_as(
        "select changes, reason from audit_events where tenant_id = $1 and action = 'settings.ip_allowlist_changed'
          order by seq desc limit 1",
    )
    .bind(a.id.as_uuid())
    .fetch_one(&mut conn)
    .await
    .expect("event");
    assert_eq!(changes, r#"{"entries":{"from":[],"to":[{"cidr":"203.0.113.0/24","note":"office"}]}}"#);
    assert_eq!(reason, "office only");
    // Confirmed lockout: the admin's own next request is refused.
    let vpn = json!({"entries": [{"cidr": "2001:db8:1::/48"}], "reason": "vpn only", "confirm_lockout": true});
    assert_eq!(put_list(&admin, INSIDE, vpn).await.status, StatusCode::OK);
    assert_eq!(code(get_list(&admin, INSIDE).await), (StatusCode::FORBIDDEN, "ip_not_allowed".into()));
    assert_eq!(get_list(&admin, "2001:db8:1::1").await.status, StatusCode::OK);
    // Lifting the restriction.
    let open = json!({"entries": [], "reason": "restriction lifted"});
    assert_eq!(put_list(&admin, "2001:db8:1::1", open).await.status, StatusCode::OK);
    assert_eq!(get_list(&admin, "198.51.100.1").await.status, StatusCode::OK);
}

/// Two nodes: node B has the list cached; a change through node A reaches B within a second
/// (the cache TTL is 5 s, so only the NOTIFY can make this pass).
#[tokio::test]
async fn a_change_takes_effect_on_the_other_node_at_once() {
    let db = TestDb::new().await;
    let _a = acme_with_list(&db, &["203.0.113.0/24", "198.51.100.0/24"]).await;
    let node_a = node(&db, true).await;
    let node_b = node(&db, true).await;
    let admin = node_a.anonymous().from(INSIDE).sign_in("acme", "user0@acme.example").await;
    let admin_on_b = admin.on(&node_b);
    assert_eq!(get_list(&admin_on_b, "198.51.100.20").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await; // let both listeners connect
    assert_eq!(get_list(&admin_on_b, "198.51.100.20").await.status, StatusCode::OK, "cached on B");
    let narrowed = json!({"entries": [{"cidr": "203.0.113.0/24"}], "reason": "drop the branch office"});
    assert_eq!(put_list(&admin, INSIDE, narrowed).await.status, StatusCode::OK);
    let changed = Instant::now();
    while get_list(&admin_on_b, "198.51.100.20").await.status != StatusCode::FORBIDDEN {
        assert!(changed.elapsed() < Duration::from_secs(1), "node B still admits a removed network");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(get_list(&admin_on_b, INSIDE).await.status, StatusCode::OK);
}
