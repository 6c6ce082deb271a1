//! What a first API user relies on: one list envelope and one `limit` rule on every list,
//! settings that read back, and staff who can find their department.

mod common;

use common::{TestApp, member, org};
use identity::Role;
use reqwest::StatusCode;
use serde_json::json;
use store::testing::TestDb;

#[tokio::test]
async fn every_list_answers_one_envelope_and_refuses_a_limit_outside_one_range_naming_it() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    common::with_password(&db, a.users[0]).await;
    member(&db, a.id, "acme", "fin", Role::Finance, Some(a.department), true).await;
    let app = TestApp::setup(&db).roomy().start().await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let finance = app.sign_in("acme", "fin@acme.example").await;
    let staff_user = a.users[1];
    // (path, who may read it, whether it takes `limit`)
    let lists = [
        ("/api/v1/documents".to_owned(), &finance, true),
        ("/api/v1/periods".to_owned(), &finance, false),
        ("/api/v1/audit/events".to_owned(), &admin, true),
        ("/api/v1/members".to_owned(), &admin, true),
        (format!("/api/v1/members/{staff_user}/sessions"), &admin, false),
        ("/api/v1/me/sessions".to_owned(), &admin, false),
        ("/api/v1/api-keys".to_owned(), &admin, false),
        ("/api/v1/invitations".to_owned(), &admin, false),
        ("/api/v1/departments".to_owned(), &admin, true),
    ];
    for (path, token, paged) in &lists {
        let r = token.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        let keys: Vec<&String> = r.body.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["items", "next_cursor"], "{path}: {}", r.body);
        assert!(r.body["items"].is_array(), "{path}");
        if !paged {
            continue;
        }
        for ok in ["1", "50", "200"] {
            let r = token.get(&format!("{path}?limit={ok}")).await;
            assert_eq!(r.status, StatusCode::OK, "{path}?limit={ok}: {}", r.body);
        }
        for bad in ["0", "-1", "100000", "201", "500", "abc", "1.5"] {
            let r = token.get(&format!("{path}?limit={bad}")).await;
            assert_eq!(
                (r.status, r.code(), r.body["error"]["details"]["field"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", Some("limit")),
                "{path}?limit={bad}: {}",
                r.body
            );
        }
    }
    // Paging follows next_cursor to the end, where it is null.
    let first = admin.get("/api/v1/audit/events?limit=1").await;
    let cursor = first.body["next_cursor"].as_str().expect("more than one event").to_owned();
    let next = admin.get(&format!("/api/v1/audit/events?limit=200&cursor={cursor}")).await;
    assert_eq!(next.body["next_cursor"], serde_json::Value::Null, "{}", next.body);
}

#[tokio::test]
async fn the_mfa_setting_reads_back_for_admins_only() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    common::with_password(&db, a.users[0]).await;
    common::with_password(&db, a.users[1]).await;
    let app = TestApp::setup(&db).roomy().start().await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let staff = app.sign_in("acme", "user1@acme.example").await;
    let url = "/api/v1/settings/mfa";
    let r = admin.get(url).await;
    assert_eq!((r.status, r.body.clone()), (StatusCode::OK, json!({"required": false})));
    let r = admin.put(url, json!({"required": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = admin.get(url).await;
    assert_eq!((r.status, r.body.clone()), (StatusCode::OK, json!({"required": true})));
    // The guard of its PUT: staff may neither change nor read it.
    let r = staff.get(url).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));
}

#[tokio::test]
async fn staff_find_their_department_and_outside_parties_do_not() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "beta").await;
    common::with_password(&db, a.users[1]).await;
    member(&db, a.id, "acme", "vend", Role::Vendor, None, true).await;
    let app = TestApp::setup(&db).roomy().start().await;
    let staff = app.sign_in("acme", "user1@acme.example").await;
    let vendor = app.sign_in("acme", "vend@acme.example").await;

    let r = staff.get("/api/v1/departments").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["items"], json!([{"id": a.department, "code": "OPS", "name": "Operations"}]));
    // Only this organisation's: beta's department (also OPS) is not listed.
    assert!(!r.body.to_string().contains(&b.department.to_string()));

    let me = staff.get("/api/v1/me").await;
    assert_eq!(me.body["departments"], json!([{"id": a.department, "code": "OPS", "name": "Operations"}]));
    let me = vendor.get("/api/v1/me").await;
    assert_eq!(me.body["departments"], json!([]));

    let r = vendor.get("/api/v1/departments").await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));
}
