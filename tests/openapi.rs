//! The OpenAPI 3.1 description: generated from the route table (every route appears, with its
//! security and error schema), and fuzzed by schemathesis against a live server: no 5xx, no
//! response that violates the schema.

mod common;

use std::process::Command;

use common::{TestApp, member, org};
use identity::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use store::testing::TestDb;

#[tokio::test]
async fn the_description_lists_every_route_with_its_errors() {
    let db = TestDb::new().await;
    let app = TestApp::new(&db).await;
    let a = app.anonymous().get("/api/openapi.json").await;
    assert_eq!(a.status, StatusCode::OK);
    let spec = a.body;
    assert_eq!(spec["openapi"], "3.1.0");
    for r in web::route_table(false) {
        let op = &spec["paths"][&r.path][r.method.as_str().to_lowercase()];
        // Pages are another face of the same capabilities, not API: they stay out of it. SCIM is
        // described by its own discovery endpoints (ServiceProviderConfig, Schemas), as RFC 7643 has it.
        if matches!(r.face, web::guard::Face::Page | web::guard::Face::Scim) {
            assert!(op.is_null(), "{:?} {} {} in the API description", r.face, r.method, r.path);
            continue;
        }
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
    for schema in ["Document", "ItemList", "Period", "ErrorBody", "Status", "Transition"] {
        assert!(spec["components"]["schemas"][schema].is_object(), "schema {schema}");
    }
}

/// Schemas that are free-form on purpose, by `Schema.property` (or operation, for this
/// description itself): everything else a request or answer carries is typed.
const FREE_FORM: &[&str] = &[
    "EventRow.changes",        // the audit delta: its keys are the changed entity's
    "ErrorInner.details",      // specifics of a refusal (field, allowed transitions, version...)
    "Readiness.checks",        // one entry per readiness check
    "ServiceStatus.isolation", // the isolation counters
    "getOpenApi",              // this description
];

/// Finds bare `{"type": "object"}` schemas (no properties, no composition) under `schema`.
fn bare_objects(spec: &Value, schema: &Value, at: &str, seen: &mut Vec<String>, out: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        if seen.iter().any(|s| s == name) {
            return;
        }
        seen.push(name.to_owned());
        let target = &spec["components"]["schemas"][name];
        assert!(target.is_object(), "{at}: dangling $ref {r}");
        return bare_objects(spec, target, name, seen, out);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for alt in schema.get(key).and_then(Value::as_array).into_iter().flatten() {
            bare_objects(spec, alt, at, seen, out);
        }
    }
    if let Some(items) = schema.get("items") {
        bare_objects(spec, items, at, seen, out);
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            let here = format!("{}.{k}", at.split('.').next().unwrap_or(at));
            if !FREE_FORM.contains(&here.as_str()) {
                bare_objects(spec, v, &here, seen, out);
            }
        }
        return;
    }
    let typed = schema
        .get("type")
        .is_some_and(|t| t != "object" && !t.as_array().is_some_and(|a| a.contains(&json!("object"))))
        || schema.get("enum").is_some()
        || ["oneOf", "anyOf", "allOf"].iter().any(|k| schema.get(*k).is_some())
        || schema.get("additionalProperties").is_some_and(|a| a.is_object());
    if !typed && !FREE_FORM.contains(&at) {
        out.push(format!("{at}: {schema}"));
    }
}

#[tokio::test]
async fn every_request_body_and_answer_is_typed_and_every_operation_has_a_camel_case_id() {
    let db = TestDb::new().await;
    let app = TestApp::new(&db).await;
    let spec = app.anonymous().get("/api/openapi.json").await.body;
    let mut ids = Vec::new();
    let mut bare = Vec::new();
    for (path, ops) in spec["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("ops") {
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            let camel = id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && id.chars().all(|c| c.is_ascii_alphanumeric());
            assert!(camel, "{method} {path}: operationId {id:?} is not camelCase");
            ids.push(id.clone());
            if FREE_FORM.contains(&id.as_str()) {
                continue;
            }
            let at = id.clone();
            if let Some(schema) = op.pointer("/requestBody/content/application~1json/schema") {
                bare_objects(&spec, schema, &format!("{at} request"), &mut Vec::new(), &mut bare);
            }
            for (status, response) in op["responses"].as_object().expect("responses") {
                if let Some(schema) = response.pointer("/content/application~1json/schema") {
                    bare_objects(&spec, schema, &format!("{at} {status}"), &mut Vec::new(), &mut bare);
                }
                if status.starts_with('2') && status != "204" {
                    assert!(response.get("content").is_some(), "{id} {status}: no content described");
                }
            }
            if matches!(method.as_str(), "post" | "put")
                && ![
                    "logout",
                    "enrolTotp",
                    "unlockMember",
                    "resumeSessionForm",
                    "testOidcConnection",
                    "testSamlConnection",
                ]
                .contains(&id.as_str())
            {
                assert!(op.get("requestBody").is_some(), "{id}: no request body described");
            }
        }
    }
    assert!(bare.is_empty(), "bare objects in the description:\n{}", bare.join("\n"));
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "operationIds repeat: {ids:?}");
    for id in ["login", "createDocument", "listDocuments", "getMfaSetting", "listDepartments"] {
        assert!(ids.iter().any(|i| i == id), "{id} missing");
    }
}

#[tokio::test]
async fn the_description_names_token_delivery_and_the_headers_clients_must_send_and_read() {
    let db = TestDb::new().await;
    let app = TestApp::new(&db).await;
    let spec = app.anonymous().get("/api/openapi.json").await.body;
    let schemas = &spec["components"]["schemas"];
    for body in ["LoginRequest", "VerifyRequest", "MfaRequest"] {
        let td = &schemas[body]["properties"]["token_delivery"];
        assert!(td.is_object(), "{body} lacks token_delivery");
    }
    assert_eq!(schemas["Delivery"]["enum"], json!(["cookie", "body"]));
    assert!(
        schemas["RefreshRequest"]["properties"]["refresh_token"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("body"))
    );
    let op = |path: &str, method: &str| spec["paths"][path][method].clone();
    let params = |o: &Value| -> Vec<String> {
        o["parameters"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str().map(str::to_owned)).collect()
    };
    let create = op("/api/v1/documents", "post");
    assert!(params(&create).contains(&"Idempotency-Key".to_owned()), "{create}");
    assert!(params(&create).contains(&"X-CSRF-Token".to_owned()));
    assert!(create["responses"]["201"]["headers"]["ETag"].is_object());
    let transition = op("/api/v1/documents/{id}/transitions", "post");
    assert!(params(&transition).contains(&"If-Match".to_owned()));
    assert!(op("/api/v1/documents/{id}", "get")["responses"]["200"]["headers"]["ETag"].is_object());
    let login = op("/api/v1/auth/login", "post");
    assert!(login["responses"]["429"]["headers"]["Retry-After"].is_object(), "{login}");
    assert!(login["responses"]["200"]["headers"]["Set-Cookie"].is_object());
    assert!(params(&op("/api/v1/auth/refresh", "post")).contains(&"cs_refresh".to_owned()));
    assert_eq!(spec["components"]["securitySchemes"]["session_cookie"]["in"], "cookie");
    assert_eq!(spec["components"]["securitySchemes"]["session_cookie"]["name"], "cs_access");
    // Query parameters are typed from the handler's query type, limit with its one range.
    let limit = params(&op("/api/v1/members", "get"));
    assert_eq!(limit, ["status", "cursor", "limit"]);
    let members = op("/api/v1/members", "get");
    let l =
        members["parameters"].as_array().expect("params").iter().find(|p| p["name"] == "limit").expect("limit").clone();
    assert_eq!((l["schema"]["minimum"].as_i64(), l["schema"]["maximum"].as_i64()), (Some(1), Some(200)), "{l}");
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
    // The fuzzer sends credentials that must fail (refresh tokens, keys, cookies it makes up)
    // from this one address; the failed-credential budget (20 a minute) is not what this test
    // is about, and would otherwise refuse the checks that follow the runs.
    let limits = web::limits::Limits {
        credential_failures: web::limits::LoginLimit::new(100_000, std::time::Duration::from_secs(60)).expect("limit"),
        ..common::roomy_limits()
    };
    // Behind a (loopback) proxy, so the last run can come from an address of its own.
    let app = TestApp::setup(&db).behind_proxy().limits(limits).start().await;
    // A finance member reaches the documents and periods routes; an admin the organisation's.
    for email in ["fin@acme.example", "user0@acme.example"] {
        let token = app.sign_in("acme", email).await;
        let tested = fuzz(&app.base, format!("Bearer {}", token.access_token()), KEEPS_ITS_SESSION, email).await;
        // It really ran: most operations were exercised.
        assert!(tested >= 40, "schemathesis ({email}) tested only {tested} operations");
    }
    // `sessions/revoke` with a credential it cannot revoke: an admin API key holding
    // members:manage. Every example reaches the handler (revoking everyone, one member, or being
    // refused), and the next example still authenticates.
    // From an address of its own: refusals are aggregated per organisation and address per
    // minute, and the first of a window is written at once, so a refusal of this run would be on
    // record right after it (the earlier runs' windows, flushed later, are another address's).
    let (_, key) = common::api_key(&db, a.id, "schemathesis", Role::Admin, &["members:manage"]).await;
    let tested = fuzz(
        &app.base,
        format!("Bearer {key}"),
        &["--include-name", "POST /api/v1/sessions/revoke", "-H", "X-Forwarded-For: 203.0.113.9"],
        "sessions/revoke",
    )
    .await;
    assert_eq!(tested, 1, "sessions/revoke was not fuzzed");
    // Every example passed the guard (no refusal was audited), and the key still works: the run
    // reached the handler throughout instead of fuzzing a signed-out client.
    let mut admin = db.admin_conn().await;
    let denied: i64 = sqlx::query_scalar(
        "select count(*) from audit_events where tenant_id = $1 and action = 'access.denied' and ip = '203.0.113.9'",
    )
    .bind(a.id.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("count");
    assert_eq!(denied, 0, "the sessions/revoke run was refused by the guard");
    let r = app.bearer(&key).post("/api/v1/sessions/revoke", serde_json::json!({"reason": "after the fuzz run"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
