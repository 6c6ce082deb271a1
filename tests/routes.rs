//! Every route is guarded: the test walks the router's own table (the only way to register a
//! route) and attacks each entry — no credential, a member whose role allows nothing, an admin —
//! and proves that a handler which forgets to ask is refused rather than served.

mod common;

use authz::Action;
use common::{audit_count, member, org, send, sign_in, spawn_roomy};
use identity::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;
use store::testing::TestDb;
use web::guard::{Guard, Routes};
use web::{AppState, Principal};

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
    let base = spawn_roomy(&db).await;
    let admin = sign_in(&base, "acme", "user0@acme.example").await;
    let vendor = sign_in(&base, "acme", "vendor@acme.example").await;

    let table = web::route_table(false);
    assert!(table.len() >= 50, "{} routes", table.len());
    assert!(web::route_table(true).iter().any(|r| r.path == "/api/v1/dev/outbox"));
    let mut org_routes = 0;
    for r in &table {
        let url = format!("{base}{}", concrete(&r.path));
        let m = method(&r.method);
        let body = matches!(r.method.as_str(), "POST" | "PUT").then(|| json!({}));
        let what = format!("{} {}", r.method, r.path);
        if !r.guard.needs_credential() {
            let ans = send(m, &url, None, body, &[]).await;
            assert!(ans.status.as_u16() < 500, "{what}: {}", ans.status);
            continue;
        }
        // 1. No credential: 401, whatever the route.
        let anon = send(m.clone(), &url, None, body.clone(), &[]).await;
        assert_eq!((anon.status, anon.code()), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{what}");
        // Signing out ends the session it is called with: use a throwaway one.
        let (vendor_token, admin_token) = if r.path == "/api/v1/auth/logout" {
            (sign_in(&base, "acme", "vendor@acme.example").await, sign_in(&base, "acme", "user0@acme.example").await)
        } else {
            (vendor.clone(), admin.clone())
        };
        // 2. A vendor (no organisation permissions, no documents of their own).
        let denied_before = audit_count(&db, a.id, "access.denied").await;
        let v = send(m.clone(), &url, Some(&vendor_token), body.clone(), &[]).await;
        match r.guard {
            Guard::Org(_) => {
                org_routes += 1;
                assert_eq!((v.status, v.code()), (StatusCode::FORBIDDEN, "forbidden"), "{what}");
                assert_eq!(audit_count(&db, a.id, "access.denied").await, denied_before + 1, "{what}: refusal audited");
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
        let ad = send(m, &url, Some(&admin_token), body, &[]).await;
        assert!(ad.status.as_u16() < 500, "{what}: admin got {} {}", ad.status, ad.body);
    }
    assert!(org_routes >= 20, "{org_routes} organisation-level routes");
    // The vendor's GET of the list succeeds but shows nothing; the admin still works.
    let list = send(Method::GET, &format!("{base}/api/v1/documents"), Some(&vendor), None, &[]).await;
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
    let key = identity::tokens::TokenKey::from_seed([9; 32]);
    let state = AppState::new(db.store.clone(), web::TrustedProxies::default(), key).expect("state");
    let routes = Routes::new(Some(state.clone()), "")
        .get("/forgot", Guard::Domain(&[Action::DocumentRead]), forgot)
        .get("/asked", Guard::Domain(&[Action::DocumentRead]), asked)
        .get("/fails", Guard::Domain(&[Action::DocumentRead]), fails)
        .get("/mine", Guard::Own, forgot)
        .get("/org", Guard::Org(Action::MembersManage), forgot)
        .into_router();
    let base = spawn_state_router(web::with_middleware(state, routes)).await;
    // Same database and token key: a token from the real server is valid here.
    let admin = sign_in(&spawn_roomy(&db).await, "acme", "user0@acme.example").await;
    let get = |path: &str| {
        let url = format!("{base}{path}");
        let admin = admin.clone();
        async move { send(Method::GET, &url, Some(&admin), None, &[]).await }
    };
    let f = get("/forgot").await;
    assert_eq!((f.status, f.code()), (StatusCode::INTERNAL_SERVER_ERROR, "authorisation_missing"));
    assert_eq!(get("/asked").await.status, StatusCode::OK);
    assert_eq!(get("/fails").await.status, StatusCode::NOT_FOUND, "refusals pass through");
    assert_eq!(get("/mine").await.status, StatusCode::OK);
    assert_eq!(get("/org").await.status, StatusCode::OK, "the org guard decided before the handler");
    let anon = send(Method::GET, &format!("{base}/forgot"), None, None, &[]).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
}

async fn spawn_state_router(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}
