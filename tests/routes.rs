//! Every route is guarded: the test walks the router's own table (the only way to register a
//! route) and attacks each entry — no credential, a member whose role allows nothing, an admin —
//! and proves that a handler which forgets to ask is refused rather than served.

mod common;

use authz::Action;
use common::{TestApp, audit_count, member, org};
use identity::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;
use store::testing::TestDb;
use web::Principal;
use web::guard::{Face, Guard, Routes};

fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { uuid::Uuid::now_v7().to_string() } else { s.to_owned() })
        .collect::<Vec<_>>()
        .join("/")
}

fn method(m: &axum::http::Method) -> Method {
    Method::from_bytes(m.as_str().as_bytes()).expect("method")
}

#[tokio::test]
async fn every_registered_route_is_guarded() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    common::with_password(&db, a.users[0]).await;
    member(&db, a.id, "acme", "vendor", Role::Vendor, None, true).await;
    let app = TestApp::setup(&db).roomy().start().await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let vendor = app.sign_in("acme", "vendor@acme.example").await;

    let table = web::route_table(false);
    assert!(table.len() >= 50, "{} routes", table.len());
    assert!(web::route_table(true).iter().any(|r| r.path == "/api/v1/dev/outbox"));
    let mut org_routes = 0;
    for r in &table {
        let path = concrete(&r.path);
        let m = method(&r.method);
        let body = matches!(r.method.as_str(), "POST" | "PUT").then(|| json!({}));
        let what = format!("{} {}", r.method, r.path);
        if !r.guard.needs_credential() {
            let ans = app.anonymous().request(m, &path, body, &[]).await;
            assert!(ans.status.as_u16() < 500, "{what}: {}", ans.status);
            continue;
        }
        // 1. No credential: 401 from the API, and a page sends the browser to sign in first.
        if r.face == Face::Page {
            let anon = app.anonymous().without_redirects().request(m.clone(), &path, body.clone(), &[]).await;
            assert_eq!(anon.status, StatusCode::SEE_OTHER, "{what}");
            assert!(anon.header("location").is_some_and(|l| l.starts_with("/sign-in")), "{what}");
        } else if r.face == Face::Scim {
            // SCIM answers in its own error body. A person's session is no SCIM token either (a
            // failed credential, which spends the address's budget: asked on one route only).
            let anon = app.anonymous().request(m.clone(), &path, body.clone(), &[]).await;
            assert_eq!((anon.status, anon.body["status"].as_str()), (StatusCode::UNAUTHORIZED, Some("401")), "{what}");
            if r.path == "/scim/v2/Users" && r.method == "GET" {
                for who in [&vendor, &admin] {
                    let refused = who.request(m.clone(), &path, body.clone(), &[]).await;
                    assert_eq!(
                        (refused.status, refused.body["status"].as_str()),
                        (StatusCode::UNAUTHORIZED, Some("401")),
                        "{what}"
                    );
                }
            }
            continue;
        } else {
            let anon = app.anonymous().request(m.clone(), &path, body.clone(), &[]).await;
            assert_eq!((anon.status, anon.code()), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{what}");
        }
        // Signing out ends the session it is called with: use a throwaway one.
        let (vendor_token, admin_token) = if r.path == "/api/v1/auth/logout" || r.path == "/sign-out" {
            (app.sign_in("acme", "vendor@acme.example").await, app.sign_in("acme", "user0@acme.example").await)
        } else {
            (vendor.clone(), admin.clone())
        };
        // 2. A vendor (no organisation permissions, no documents of their own).
        let denied_before = web::refusals::refusals_total();
        let v = vendor_token.request(m.clone(), &path, body.clone(), &[]).await;
        match r.guard {
            // Pages: the same guards; a refusal is a page, an allowed list a page with nothing in it.
            Guard::Domain(_) if r.face == Face::Page && v.status.is_success() => {
                assert!(r.method == "GET", "{what}: vendor got {} {}", v.status, v.text);
                assert!(!v.text.contains("<tbody>"), "{what}: a vendor's list shows no rows");
            }
            // The portal is the outside roles' own: a vendor with no relation passes the guard
            // and finds nothing shared (an empty list or page, or 404 for any id).
            Guard::Org(Action::PortalUse) if v.status.is_success() => {
                let empty = v.body["items"].as_array().is_some_and(Vec::is_empty)
                    || (r.face == Face::Page && !v.text.contains("<tbody>"));
                assert!(r.method == "GET" && empty, "{what}: vendor got {} {}", v.status, v.text);
            }
            Guard::Org(Action::PortalUse) => {
                assert!(v.status.is_client_error(), "{what}: vendor got {} {}", v.status, v.text);
            }
            Guard::Domain(_) | Guard::Org(_) if r.face == Face::Page => {
                assert!(v.status.is_client_error(), "{what}: vendor got {} {}", v.status, v.text);
                assert!(v.header("content-type").is_some_and(|c| c.starts_with("text/html")), "{what}: a page");
            }
            Guard::Org(_) => {
                org_routes += 1;
                assert_eq!((v.status, v.code()), (StatusCode::FORBIDDEN, "forbidden"), "{what}");
                // Counted every time; in the ledger as aggregated `access.denied` events (one per
                // organisation, address and minute, carrying the count: tests/refusals.rs).
                assert_eq!(web::refusals::refusals_total(), denied_before + 1, "{what}: refusal counted");
                assert!(audit_count(&db, a.id, "access.denied").await >= 1, "{what}: refusal audited");
            }
            Guard::Domain(_) if v.status.is_success() => {
                // Lists answer, but with nothing in them.
                let empty = ["items", "periods"].iter().any(|k| v.body[k].as_array().is_some_and(Vec::is_empty));
                assert!(r.method == "GET" && empty, "{what}: vendor got {} {}", v.status, v.body);
            }
            Guard::Domain(_) => {
                assert!(v.status.is_client_error(), "{what}: vendor got {} {}", v.status, v.body);
            }
            _ => assert!(v.status.as_u16() < 500, "{what}: {} {}", v.status, v.body),
        }
        // 3. An admin: never a server error (never `authorisation_missing`).
        let ad = admin_token.request(m, &path, body, &[]).await;
        assert!(ad.status.as_u16() < 500, "{what}: admin got {} {}", ad.status, ad.body);
    }
    assert!(org_routes >= 20, "{org_routes} organisation-level routes");
    // The vendor's GET of the list succeeds but shows nothing; the admin still works.
    let list = vendor.get("/api/v1/documents").await;
    assert_eq!((list.status, list.body["items"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
}

async fn forgot(_p: Principal) -> &'static str {
    "secret data"
}

async fn asked(p: Principal) -> &'static str {
    p.checked.mark();
    "data"
}

async fn fails(_p: Principal) -> (axum::http::StatusCode, &'static str) {
    (axum::http::StatusCode::NOT_FOUND, "nothing")
}

#[tokio::test]
async fn a_handler_that_forgets_to_ask_is_refused_not_served() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    common::with_password(&db, a.users[0]).await;
    let state = TestApp::setup(&db).state();
    let routes = Routes::new(Some(state.clone()), "")
        .get("/forgot", Guard::Domain(&[Action::DocumentRead]), forgot)
        .get("/asked", Guard::Domain(&[Action::DocumentRead]), asked)
        .get("/fails", Guard::Domain(&[Action::DocumentRead]), fails)
        .get("/mine", Guard::Own, forgot)
        .get("/org", Guard::Org(Action::MembersManage), forgot)
        .into_router();
    let custom = TestApp::serve_router(state.clone(), web::with_middleware(state, routes)).await;
    // Same database and token key: a token from the real server is valid here.
    let real = TestApp::setup(&db).roomy().start().await;
    let admin = real.sign_in("acme", "user0@acme.example").await.on(&custom);
    let get = |path: &'static str| admin.get(path);
    let f = get("/forgot").await;
    assert_eq!((f.status, f.code()), (StatusCode::INTERNAL_SERVER_ERROR, "authorisation_missing"));
    assert_eq!(get("/asked").await.status, StatusCode::OK);
    assert_eq!(get("/fails").await.status, StatusCode::NOT_FOUND, "refusals pass through");
    assert_eq!(get("/mine").await.status, StatusCode::OK);
    assert_eq!(get("/org").await.status, StatusCode::OK, "the org guard decided before the handler");
    let anon = custom.anonymous().get("/forgot").await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
}

/// The identity writes behind organisation-level routes take the guard's permit and check it names
/// their action and the transaction's organisation: a permit for reading, or another organisation's
/// permit to manage, is refused before anything is read or written.
#[tokio::test]
async fn organisation_writes_refuse_a_permit_for_another_action_or_organisation() {
    use authz::{Engine, Resource, Subject};
    use identity::IdentityError;
    use identity::admin::{api_keys, invitations, members};
    use identity::directory::ip_allowlist;
    use identity::signin::mfa;
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "beta").await;
    let engine = Engine::load().expect("engine");
    let decide = |o: &common::Org, action: Action| {
        let admin = Subject { tenant: o.id.as_uuid(), user: o.users[0], role: Role::Admin, department: None };
        engine.decide(&admin, action, &Resource::Organisation { tenant: o.id.as_uuid() }).expect("admins may")
    };
    let who = common::who();
    let staff = a.users[1];
    let to = members::Assignment { role: Role::Md, department: None };
    let entries = vec![ip_allowlist::NewEntry::parse("203.0.113.0/24", "office").expect("entry")];
    let new_key = api_keys::NewApiKey { name: "k".into(), role: Role::Auditor, scopes: vec![], expires_at: None };
    let invite = invitations::NewInvitation {
        email: identity::EmailAddress::parse("new@acme.example").expect("email"),
        role: Role::Staff,
        department_id: None,
        membership_valid_until: None,
    };
    let refused = |r: Result<(), IdentityError>, what: &str| match r {
        Err(IdentityError::Forbidden { code: "permit_mismatch", .. }) => {}
        other => panic!("{what}: expected permit_mismatch, got {other:?}"),
    };
    let mut admin = db.admin_conn().await;
    let events = "select count(*) from audit_events where tenant_id = $1";
    let events_before: i64 =
        sqlx::query_scalar(events).bind(a.id.as_uuid()).fetch_one(&mut admin).await.expect("events");
    for (name, wrong) in [
        ("a permit to read members", decide(&a, Action::MembersRead)),
        ("another organisation's permit", decide(&b, Action::MembersManage)),
    ] {
        let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
        let p = &wrong;
        refused(members::deactivate(&mut tx, &who, p, Role::Admin, staff, "test").await.map(drop), name);
        refused(members::reactivate(&mut tx, &who, p, Role::Admin, staff, "test").await, name);
        refused(members::change_role(&mut tx, &who, p, Role::Admin, staff, to, "test").await.map(drop), name);
        refused(members::approve(&mut tx, &who, p, Role::Admin, staff, None, None).await.map(drop), name);
        refused(members::decline(&mut tx, &who, p, staff, "test").await, name);
        refused(invitations::create(&mut tx, &who, p, Role::Admin, &invite).await.map(drop), name);
        refused(invitations::revoke(&mut tx, &who, p, uuid::Uuid::now_v7()).await, name);
        refused(ip_allowlist::replace(&mut tx, &who, p, &entries, "test").await.map(drop), name);
        refused(mfa::set_required(&mut tx, &who, p, true).await.map(drop), name);
        refused(api_keys::create(&mut tx, &who, p, api_keys::Minter::Operator, &new_key).await.map(drop), name);
        refused(api_keys::revoke(&mut tx, &who, p, uuid::Uuid::now_v7()).await, name);
        refused(members::revoke_sessions(&mut tx, &who, p, Some(staff), "test").await.map(drop), name);
        refused(members::revoke_sessions(&mut tx, &who, p, None, "test").await.map(drop), name);
        let mut g = db.store.global_tx().await.expect("global tx");
        refused(members::unlock(&mut tx, &mut g, &who, p, Role::Admin, staff).await.map(drop), name);
        g.commit().await.expect("nothing was written");
        tx.commit().await.expect("nothing was written");
    }
    // Nothing changed, nothing was audited; the right permit works.
    let events_after: i64 =
        sqlx::query_scalar(events).bind(a.id.as_uuid()).fetch_one(&mut admin).await.expect("events");
    assert_eq!(events_after, events_before, "a refused write records nothing");
    let state: (String, String, i64) = sqlx::query_as(
        "select m.status, m.role, (select count(*) from api_keys k where k.tenant_id = m.tenant_id)
           from memberships m where m.tenant_id = $1 and m.user_id = $2",
    )
    .bind(a.id.as_uuid())
    .bind(staff)
    .fetch_one(&mut admin)
    .await
    .expect("member");
    assert_eq!((state.0.as_str(), state.1.as_str()), ("active", "staff"));
    let live: i64 = sqlx::query_scalar("select count(*) from sessions where tenant_id = $1 and revoked_at is null")
        .bind(a.id.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("sessions");
    assert!(live >= 1, "the fixture's session was not revoked");
    let keys_before = state.2;
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    api_keys::create(&mut tx, &who, &decide(&a, Action::ApiKeysManage), api_keys::Minter::Operator, &new_key)
        .await
        .expect("the right permit");
    members::deactivate(&mut tx, &who, &decide(&a, Action::MembersManage), Role::Admin, staff, "test")
        .await
        .expect("the right permit");
    tx.commit().await.expect("commit");
    let keys: i64 = sqlx::query_scalar("select count(*) from api_keys where tenant_id = $1")
        .bind(a.id.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("keys");
    assert_eq!(keys, keys_before + 1);
}

/// Operator permits (the command line's authority) are never minted where a request could reach.
#[test]
fn the_web_crate_never_mints_an_operator_permit() {
    fn scan(dir: &std::path::Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                scan(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source");
                if text.contains("::operator(") {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    let mut found = Vec::new();
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/web/src");
    scan(&web, &mut found);
    assert!(found.is_empty(), "operator permits minted in the web crate: {found:?}");
}
