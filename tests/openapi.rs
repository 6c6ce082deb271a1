//! The OpenAPI 3.1 description: generated from the route table (every route appears, with its
//! security and error schema), and fuzzed by schemathesis against a live server: no 5xx, no
//! response that violates the schema.

mod common;

use std::process::Command;

use common::{member, org, send, sign_in, spawn_roomy};
use identity::Role;
use reqwest::{Method, StatusCode};
use store::testing::TestDb;

#[tokio::test]
async fn the_description_lists_every_route_with_its_errors() {
    let db = TestDb::new().await;
    let base = common::spawn(&db).await;
    let a = send(Method::GET, &format!("{base}/api/openapi.json"), None, None, &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let spec = a.body;
    assert_eq!(spec["openapi"], "3.1.0");
    for r in web::route_table(false) {
        let op = &spec["paths"][&r.path][r.method.as_str().to_lowercase()];
        assert!(op.is_object(), "{} {} missing from the description", r.method, r.path);
        assert_eq!(
            op["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        assert_eq!(op["security"].is_array(), r.guard.needs_credential(), "{} {}", r.method, r.path);
    }
    let create = &spec["paths"]["/api/v1/documents"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CreateBody"
    );
    assert_eq!(
        create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Document"
    );
    for schema in ["Document", "Page", "Period", "ErrorBody", "Status", "Transition"] {
        assert!(spec["components"]["schemas"][schema].is_object(), "schema {schema}");
    }
}

/// Runs schemathesis against `base` with `auth` (an `Authorization` value) and `filters`; fails
/// the test on any finding; returns how many operations it tested.
async fn fuzz(base: &str, auth: String, filters: &'static [&'static str], who: &str) -> usize {
    let (st, base) = (common::venv::bin("st"), base.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .args(["run", &format!("{base}/api/openapi.json"), "--url", &base])
            .args(["-H", &format!("Authorization: {auth}")])
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            .args(["--max-examples", "12", "--workers", "2", "--seed", "7", "--no-color"])
            .args(["--generation-database", "none", "--request-timeout", "20"])
            .args(filters)
            .output()
            .expect("run schemathesis")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis ({who}) found problems:\n{stdout}\n{stderr}");
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0)
}

/// Operations that end the credential the run uses are fuzzed apart (a signed-out fuzzer finds
/// nothing); operations are named by method and path, which do not change with operation ids.
const KEEPS_ITS_SESSION: &[&str] = &[
    "--exclude-name",
    "POST /api/v1/auth/logout",
    "--exclude-name",
    "POST /api/v1/sessions/revoke",
    "--exclude-name",
    "PUT /api/v1/settings/ip-allowlist",
    "--exclude-name",
    "POST /api/v1/me/password",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    common::with_password(&db, a.users[0]).await;
    member(&db, a.id, "acme", "fin", Role::Finance, None, true).await;
    let base = spawn_roomy(&db).await;
    // A finance member reaches the documents and periods routes; an admin the organisation's.
    for email in ["fin@acme.example", "user0@acme.example"] {
        let token = sign_in(&base, "acme", email).await;
        let tested = fuzz(&base, format!("Bearer {token}"), KEEPS_ITS_SESSION, email).await;
        // It really ran: most operations were exercised.
        assert!(tested >= 40, "schemathesis ({email}) tested only {tested} operations");
    }
    // `sessions/revoke` with a credential it cannot revoke: an admin API key holding
    // members:manage. Every example reaches the handler (revoking everyone, one member, or being
    // refused), and the next example still authenticates.
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let key = identity::api_keys::create(
        &mut tx,
        &common::who(),
        &common::operator(authz::Action::ApiKeysManage, a.id),
        identity::api_keys::Minter::Operator,
        &identity::api_keys::NewApiKey {
            name: "schemathesis".into(),
            role: Role::Admin,
            scopes: vec!["members:manage".into()],
            expires_at: None,
        },
    )
    .await
    .expect("key");
    tx.commit().await.expect("commit");
    use secrecy::ExposeSecret;
    let denied = common::audit_count(&db, a.id, "access.denied").await;
    let tested = fuzz(
        &base,
        format!("Bearer {}", key.secret.expose_secret()),
        &["--include-name", "POST /api/v1/sessions/revoke"],
        "sessions/revoke",
    )
    .await;
    assert_eq!(tested, 1, "sessions/revoke was not fuzzed");
    // Every example passed the guard (no refusal was audited), and the key still works: the run
    // reached the handler throughout instead of fuzzing a signed-out client.
    assert_eq!(common::audit_count(&db, a.id, "access.denied").await, denied);
    let r = send(
        Method::POST,
        &format!("{base}/api/v1/sessions/revoke"),
        Some(key.secret.expose_secret()),
        Some(serde_json::json!({"reason": "after the fuzz run"})),
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
