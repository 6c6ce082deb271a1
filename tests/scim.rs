//! SCIM 2.0 provisioning (issue 18), attacked: tokens that are missing, forged, revoked or of
//! another organisation; filters carrying SQL; deprovisioning (Okta's and Entra's PATCH, DELETE)
//! that must end the person's open session on another node within a second; stale ETags; the
//! identity provider's ceiling; and the real peer, scim2-tester, against what we claim.

mod common;

use std::time::{Duration, Instant};

use common::{Answer, Client, TestApp, org, scim_token, with_password};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::testing::TestDb;

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn user(name: &str) -> Value {
    json!({
        "schemas": [USER],
        "userName": name,
        "externalId": format!("ext-{name}"),
        "name": {"givenName": "Ann", "familyName": "Lee"},
        "emails": [{"value": name, "type": "work", "primary": true}],
        "active": true,
    })
}

/// A SCIM refusal: the status, the SCIM error body and media type.
fn assert_scim_error(a: &Answer, status: StatusCode) {
    assert_eq!(a.status, status, "{a}");
    assert_eq!(a.header("content-type"), Some("application/scim+json"), "{a}");
    assert_eq!(a.body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:Error"]), "{a}");
    assert_eq!(a.body["status"], status.as_str(), "{a}");
}

async fn create(idp: &Client, name: &str) -> Value {
    let a = idp.post("/scim/v2/Users", user(name)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a}");
    a.body
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

async fn patch(idp: &Client, id: &str, ops: Value, headers: &[(&str, &str)]) -> Answer {
    idp.request(
        Method::PATCH,
        &format!("/scim/v2/Users/{id}"),
        Some(json!({"schemas": [PATCH_OP], "Operations": ops})),
        headers,
    )
    .await
}

async fn me(who: &Client) -> StatusCode {
    who.get("/api/v1/me").await.status
}

/// Polls `who` on another node until its session is refused; fails after a second.
async fn refused_within_a_second(who: &Client, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        if me(who).await == StatusCode::UNAUTHORIZED {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(1), "{what}: the other node still accepts the session");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn scim_without_a_live_token_of_the_organisation_is_401_with_a_scim_error() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "globex").await;
    let app = TestApp::new(&db).await;
    let (token_id, token) = scim_token(&db, a.id, "Okta").await;
    let (_, api_key) = common::api_key(&db, a.id, "ci", identity::Role::Admin, &["members:manage"]).await;
    with_password(&db, a.users[0]).await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    // The token's organisation part swapped for another's: the secret does not live there.
    let forged = token.replacen(&a.id.as_uuid().simple().to_string(), &b.id.as_uuid().simple().to_string(), 1);
    let mut flipped = token.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    for (what, client) in [
        ("no credential", app.anonymous()),
        ("garbage", app.bearer("cssc_nonsense")),
        ("an api key", app.bearer(&api_key)),
        ("a session's access token", app.bearer(admin.access_token())),
        ("another organisation named in the token", app.bearer(&forged)),
        ("a wrong secret", app.bearer(&flipped)),
    ] {
        for path in ["/scim/v2/Users", "/scim/v2/ServiceProviderConfig"] {
            let r = client.get(path).await;
            assert_scim_error(&r, StatusCode::UNAUTHORIZED);
            assert!(r.header("www-authenticate").is_some(), "{what}");
        }
    }
    let idp = app.bearer(&token);
    assert_eq!(idp.get("/scim/v2/Users").await.status, StatusCode::OK);
    // Revoked through the admin API: refused at once.
    let r = admin.delete(&format!("/api/v1/settings/scim-tokens/{token_id}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r}");
    assert_scim_error(&idp.get("/scim/v2/Users").await, StatusCode::UNAUTHORIZED);
    assert_scim_error(&idp.post("/scim/v2/Users", user("late@acme.example")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(common::audit_count(&db, a.id, "scim_token.revoked").await, 1);
}

#[tokio::test]
async fn organisation_a_token_finds_nothing_of_organisation_b() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "globex").await;
    let app = TestApp::new(&db).await;
    let idp_a = app.bearer(&scim_token(&db, a.id, "Okta A").await.1);
    let idp_b = app.bearer(&scim_token(&db, b.id, "Okta B").await.1);
    let theirs = id(&create(&idp_b, "zed@globex.example").await);
    let path = format!("/scim/v2/Users/{theirs}");
    assert_scim_error(&idp_a.get(&path).await, StatusCode::NOT_FOUND);
    assert_scim_error(&idp_a.put(&path, user("zed@globex.example")).await, StatusCode::NOT_FOUND);
    let p = patch(&idp_a, &theirs, json!([{"op": "replace", "value": {"active": false}}]), &[]).await;
    assert_scim_error(&p, StatusCode::NOT_FOUND);
    assert_scim_error(&idp_a.delete(&path).await, StatusCode::NOT_FOUND);
    let found = idp_a.get("/scim/v2/Users?filter=userName%20eq%20%22zed%40globex.example%22").await;
    assert_eq!(found.body["totalResults"], 0, "{found}");
    // B's person is untouched and still active.
    let still = idp_b.get(&path).await;
    assert_eq!((still.status, still.body["active"].clone()), (StatusCode::OK, json!(true)), "{still}");
    // The same address provisioned in A is A's own membership of the shared account.
    let mine = create(&idp_a, "zed@globex.example").await;
    assert_eq!(id(&mine), theirs, "one global account");
    assert_scim_error(&idp_a.post("/scim/v2/Users", user("zed@globex.example")).await, StatusCode::CONFLICT);
    let dup = idp_a.post("/scim/v2/Users", user("zed@globex.example")).await;
    assert_eq!(dup.body["scimType"], "uniqueness", "{dup}");
    assert_eq!(idp_a.delete(&format!("/scim/v2/Users/{theirs}")).await.status, StatusCode::NO_CONTENT);
    let b_view = idp_b.get(&path).await;
    assert_eq!(b_view.body["active"], true, "deprovisioning in A leaves B's membership alone: {b_view}");
}

#[tokio::test]
async fn filter_injection_strings_are_bound_values_not_sql() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let app = TestApp::new(&db).await;
    let idp = app.bearer(&scim_token(&db, a.id, "Okta").await.1);
    create(&idp, "ann@acme.example").await;
    create(&idp, "bob@acme.example").await;
    let q = |f: &str| format!("/scim/v2/Users?filter={}", urlencode(f));
    for f in [
        r#"userName eq "x\" or \"1\"=\"1""#,
        r#"userName eq "' or '1'='1""#,
        r#"userName eq "ann@acme.example' --""#,
        r#"userName co "%""#,
        r#"userName sw "_""#,
        r#"displayName eq "x'); delete from scim_users; --""#,
        r#"emails.value ew "' or true) --""#,
    ] {
        let r = idp.get(&q(f)).await;
        assert_eq!((r.status, r.body["totalResults"].clone()), (StatusCode::OK, json!(0)), "{f}: {r}");
    }
    for f in ["userName eq", r#"userName eq "a" or 1=1"#, r#"password eq "x""#, "userName eq \"a\"; select 1"] {
        let r = idp.get(&q(f)).await;
        assert_scim_error(&r, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["scimType"], "invalidFilter", "{f}");
    }
    // Both people are still there, and real filters find exactly what they name.
    let all = idp.get("/scim/v2/Users").await;
    assert_eq!(all.body["totalResults"], 2, "{all}");
    for (f, n) in [
        (r#"userName eq "ANN@acme.example""#, 1),
        (r#"emails.value sw "bob""#, 1),
        (r#"externalId eq "ext-ann@acme.example" and active eq true"#, 1),
        (r#"not (userName ew "acme.example")"#, 0),
        (r#"userName co "@" or displayName pr"#, 2),
    ] {
        let r = idp.get(&q(f)).await;
        assert_eq!(r.body["totalResults"], n, "{f}: {r}");
    }
    // Pagination: startIndex is 1-based; count bounds the page, not the total.
    let page = idp.get("/scim/v2/Users?startIndex=2&count=1").await;
    assert_eq!((page.body["totalResults"].clone(), page.body["itemsPerPage"].clone()), (json!(2), json!(1)), "{page}");
    assert_scim_error(&idp.get("/scim/v2/Users?count=many").await, StatusCode::BAD_REQUEST);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Two servers on one database: an Okta-style PATCH (`{"active": false}`, no path) and an
/// Entra-style one (`"path": "active", "value": "False"`) through node A each end the person's
/// session, which node B had cached, within a second.
#[tokio::test]
async fn deprovisioning_by_patch_in_both_dialects_ends_the_session_on_the_other_node_within_a_second() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let staff = a.users[1];
    with_password(&db, staff).await;
    let node_a = TestApp::new(&db).await;
    let node_b = TestApp::new(&db).await;
    let idp = node_a.bearer(&scim_token(&db, a.id, "Okta").await.1);
    // The identity provider takes over the existing member (same address).
    let taken = create(&idp, "user1@acme.example").await;
    assert_eq!(id(&taken), staff.to_string());
    for (dialect, ops) in [
        ("okta", json!([{"op": "replace", "value": {"active": false}}])),
        ("entra", json!([{"op": "Replace", "path": "active", "value": "False"}])),
    ] {
        let person = node_a.sign_in("acme", "user1@acme.example").await.on(&node_b);
        assert_eq!(me(&person).await, StatusCode::OK, "{dialect}: live and cached on node B");
        tokio::time::sleep(Duration::from_millis(200)).await; // both listeners connected
        let r = patch(&idp, &id(&taken), ops, &[]).await;
        assert_eq!((r.status, r.body["active"].clone()), (StatusCode::OK, json!(false)), "{dialect}: {r}");
        let took = refused_within_a_second(&person, dialect).await;
        eprintln!("{dialect}: refused on node B after {took:?}");
        // A suspended person cannot sign in again.
        let again = node_a.anonymous().login("acme", "user1@acme.example", common::PASSWORD).await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{dialect}: {again}");
        // Reactivated (Entra's string boolean again) for the next round.
        let r = patch(&idp, &id(&taken), json!([{"op": "replace", "path": "active", "value": "True"}]), &[]).await;
        assert_eq!(r.body["active"], true, "{r}");
    }
    let idp_actor = sqlx::query_scalar::<_, i64>(
        "select count(*) from audit_events where actor_kind = 'identity_provider' and action = 'membership.deactivated'",
    );
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    assert_eq!(idp_actor.fetch_one(tx.conn()).await.expect("count"), 2, "audited as the identity provider");
}

#[tokio::test]
async fn delete_suspends_the_membership_ends_sessions_and_the_resource_is_gone() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[2]).await;
    let node_a = TestApp::new(&db).await;
    let node_b = TestApp::new(&db).await;
    let (token_id, token) = scim_token(&db, a.id, "Entra").await;
    let idp = node_a.bearer(&token);
    let hod = id(&create(&idp, "user2@acme.example").await);
    let person = node_a.sign_in("acme", "user2@acme.example").await.on(&node_b);
    assert_eq!(me(&person).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = idp.delete(&format!("/scim/v2/Users/{hod}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r}");
    refused_within_a_second(&person, "delete").await;
    assert_scim_error(&idp.get(&format!("/scim/v2/Users/{hod}")).await, StatusCode::NOT_FOUND);
    assert_scim_error(&idp.delete(&format!("/scim/v2/Users/{hod}")).await, StatusCode::NOT_FOUND);
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let status: String = sqlx::query_scalar("select status from memberships where user_id = $1")
        .bind(a.users[2])
        .fetch_one(tx.conn())
        .await
        .expect("membership");
    assert_eq!(status, "suspended", "the membership stays, suspended, for the audit trail");
    let actors: Vec<(String, String)> = sqlx::query_as(
        "select distinct actor_kind, actor_id from audit_events
          where action in ('scim.user_deprovisioned', 'membership.deactivated', 'session.revoked_for_user')",
    )
    .fetch_all(tx.conn())
    .await
    .expect("events");
    assert_eq!(actors, vec![("identity_provider".to_owned(), token_id.to_string())]);
    drop(tx);
    // Provisioned again later: the same person comes back, active.
    let back = create(&idp, "user2@acme.example").await;
    assert_eq!((id(&back), back["active"].clone()), (hod, json!(true)));
}

#[tokio::test]
async fn a_stale_etag_is_412_and_nothing_changes() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let app = TestApp::new(&db).await;
    let idp = app.bearer(&scim_token(&db, a.id, "Okta").await.1);
    let created = idp.post("/scim/v2/Users", user("ann@acme.example")).await;
    let etag = created.header("etag").expect("etag").to_owned();
    assert_eq!(created.body["meta"]["version"], etag.as_str());
    let path = format!("/scim/v2/Users/{}", id(&created.body));
    let stale = [("if-match", "W/\"999\"")];
    let mut renamed = user("ann@acme.example");
    renamed["displayName"] = "Ann Lee".into();
    assert_scim_error(
        &idp.request(Method::PUT, &path, Some(renamed.clone()), &stale).await,
        StatusCode::PRECONDITION_FAILED,
    );
    let p =
        patch(&idp, &id(&created.body), json!([{"op": "replace", "path": "displayName", "value": "X"}]), &stale).await;
    assert_scim_error(&p, StatusCode::PRECONDITION_FAILED);
    assert_scim_error(&idp.request(Method::DELETE, &path, None, &stale).await, StatusCode::PRECONDITION_FAILED);
    assert_scim_error(
        &idp.request(Method::DELETE, &path, None, &[("if-match", "nonsense")]).await,
        StatusCode::PRECONDITION_FAILED,
    );
    let unchanged = idp.get(&path).await;
    assert_eq!(
        (unchanged.header("etag"), unchanged.body.get("displayName")),
        (Some(etag.as_str()), None),
        "{unchanged}"
    );
    // The current ETag is accepted, and the version moves on.
    let ok = idp.request(Method::PUT, &path, Some(renamed), &[("if-match", &etag)]).await;
    assert_eq!((ok.status, ok.body["displayName"].clone()), (StatusCode::OK, json!("Ann Lee")), "{ok}");
    assert_ne!(ok.header("etag"), Some(etag.as_str()));
    assert_scim_error(
        &idp.request(Method::DELETE, &path, None, &[("if-match", &etag)]).await,
        StatusCode::PRECONDITION_FAILED,
    );
}

#[tokio::test]
async fn the_identity_provider_cannot_touch_owners_or_remove_the_last_admin() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let app = TestApp::new(&db).await;
    let idp = app.bearer(&scim_token(&db, a.id, "Okta").await.1);
    // user0 is the organisation's only admin.
    let admin = id(&create(&idp, "user0@acme.example").await);
    let r = patch(&idp, &admin, json!([{"op": "replace", "value": {"active": false}}]), &[]).await;
    assert_scim_error(&r, StatusCode::CONFLICT);
    assert_scim_error(&idp.delete(&format!("/scim/v2/Users/{admin}")).await, StatusCode::CONFLICT);
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let status: String = sqlx::query_scalar("select status from memberships where user_id = $1")
        .bind(a.users[0])
        .fetch_one(tx.conn())
        .await
        .expect("membership");
    assert_eq!(status, "active");
    // Bad bodies are SCIM 400s, never a 5xx.
    drop(tx);
    for body in [
        json!([]),
        json!({"userName": 7}),
        json!({"userName": "x@acme.example", "active": "maybe"}),
        json!({"name": "Ann"}),
    ] {
        let r = idp.post("/scim/v2/Users", body.clone()).await;
        assert_scim_error(&r, StatusCode::BAD_REQUEST);
    }
}

/// The real peer: scim2-tester (pinned in tests/requirements.txt) runs every check it has
/// against this server on loopback, for Users and for Groups (whose members are Users it makes). Any check that fails, of anything the
/// ServiceProviderConfig claims, fails this test; skipped checks are only those of features we
/// do not claim (bulk, sort, searching across resource types).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_finds_no_failure_in_what_the_server_claims() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let app = TestApp::new(&db).await;
    let (_, token) = scim_token(&db, a.id, "scim2-tester").await;
    let python = common::venv::bin("python");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scim/peer.py");
    let url = app.url("/scim/v2");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(url)
            .env("SCIM_TOKEN", token)
            .output()
            .expect("run scim2-tester")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "scim2-tester crashed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("a result line")).collect();
    let failed: Vec<&Value> =
        results.iter().filter(|r| !matches!(r["status"].as_str(), Some("SUCCESS" | "SKIPPED"))).collect();
    assert!(
        failed.is_empty(),
        "scim2-tester failures:\n{}",
        failed.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    );
    let passed = results.iter().filter(|r| r["status"] == "SUCCESS").count();
    let titles =
        |s: &str| results.iter().filter(|r| r["status"] == s).filter_map(|r| r["title"].as_str()).collect::<Vec<_>>();
    eprintln!("scim2-tester: {passed} passed; skipped: {:?}", titles("SKIPPED"));
    // What we claim was exercised, not skipped, for both resources we serve: PATCH, filtering,
    // create/read/replace/delete of Users and of Groups.
    for kind in ["User", "Group"] {
        let passed_for = |title: &str| {
            results.iter().any(|r| r["status"] == "SUCCESS" && r["resource_type"] == kind && r["title"] == title)
        };
        for claimed in ["object_creation", "object_query", "object_replacement", "object_deletion"] {
            assert!(passed_for(claimed), "{kind}: {claimed} did not pass: {results:?}");
        }
        for patch in ["check_add_attribute", "check_replace_attribute", "check_remove_attribute"] {
            assert!(passed_for(patch), "{kind}: PATCH {patch} did not pass: {results:?}");
        }
    }
    assert!(passed >= 20, "only {passed} checks passed: {results:?}");
}
