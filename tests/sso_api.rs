//! `POST /api/v1/auth/sso/start`: single sign-on begun by a script (an SPA, the CLI) rather than
//! the sign-in page's link. What should work: the answer's `redirect_url` and binding cookie start
//! a flow a real OpenID Connect provider (npm `oidc-provider`, as in tests/oidc.rs) completes into
//! an ordinary session that lands on `return_to`. Attacked: an open redirect through `return_to`;
//! probing which organisations exist (unknown, malformed, without single sign-on, with it
//! disabled: one refusal, the same database work); a flood (the shared sign-in budget).

mod common;

use common::oidc::{Provider, account, configure_on_settings_page};
use common::{Client, TestApp, audit_count, org, with_password};
use reqwest::StatusCode;
use serde_json::json;
use store::testing::TestDb;
use web::limits::Limits;

const START: &str = "/api/v1/auth/sso/start";

struct World {
    db: TestDb,
    app: TestApp,
    idp: Provider,
    acme: common::Org,
}

/// acme with OpenID Connect set up on its settings page; beta without single sign-on.
async fn world(limits: Limits) -> World {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    org(&db, "beta").await;
    with_password(&db, acme.users[0]).await;
    let app = TestApp::setup(&db).limits(limits).start().await;
    let idp = Provider::start(
        &format!("{}/sign-in/sso/callback", app.base),
        vec![account("ada", "sub-ada", "user0@acme.example", true)],
    );
    let (admin, _) = app.anonymous().sign_in_browser("acme", "user0@acme.example").await;
    let r = configure_on_settings_page(&admin, &idp.issuer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    World { db, app, idp, acme }
}

fn set_cookies(r: &common::Answer) -> Vec<String> {
    r.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
}

async fn flows(db: &TestDb) -> i64 {
    let mut admin = db.admin_conn().await;
    sqlx::query_scalar("select count(*) from oidc_flows").fetch_one(&mut admin).await.expect("flows")
}

#[tokio::test]
async fn a_script_starts_the_flow_the_provider_completes_into_a_session_that_lands_on_return_to() {
    let w = world(common::roomy_limits()).await;
    let r = w
        .app
        .anonymous()
        .post(START, json!({"organisation": "ACME", "provider": "oidc", "return_to": "/documents?status=draft"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let redirect = r.body["redirect_url"].as_str().expect("redirect_url").to_owned();
    assert!(redirect.starts_with(&w.idp.issuer), "{redirect}");
    assert!(redirect.contains("code_challenge_method=S256") && redirect.contains("nonce="), "{redirect}");
    assert_eq!(r.body["expires_in"], 600);
    // The page route's own binding cookie: HttpOnly, only for the callback's path.
    let cookies = set_cookies(&r);
    let binding = cookies.iter().find(|c| c.starts_with("cs_sso=")).expect("binding cookie");
    for attribute in ["Path=/sign-in/sso", "HttpOnly", "SameSite=Lax", "Max-Age=600"] {
        assert!(binding.split("; ").any(|a| a == attribute), "{attribute} in {binding}");
    }
    let pair = binding.split(';').next().expect("pair").to_owned();

    // The browser goes to the provider, signs in there, and comes back to the page callback.
    let back = w.idp.sign_in(&redirect, "ada", "provider-pass").await;
    let back = back.as_str().strip_prefix(&w.app.base).expect("back to us").to_owned();
    let browser = w.app.anonymous().browser(&pair, None).without_redirects();
    let done = browser.get(&back).await;
    assert_eq!(done.status, StatusCode::OK, "{done}");
    assert!(
        done.text.contains(r#"<meta http-equiv="refresh" content="0;url=/documents?status=draft">"#),
        "lands on return_to: {}",
        done.text
    );
    let set = set_cookies(&done);
    for name in ["cs_access=", "cs_refresh=", "cs_csrf="] {
        assert!(set.iter().any(|c| c.starts_with(name)), "{name}: {set:?}");
    }
    // The administrator's password sign-in, and this one.
    assert_eq!(audit_count(&w.db, w.acme.id, "auth.login_succeeded").await, 2);

    // The flow is single use, and a cookie from another start does not finish it.
    let again = browser.get(&back).await;
    assert!(again.text.contains("<code>oidc_state_invalid</code>"), "{again}");
    let other = w.app.anonymous().post(START, json!({"organisation": "acme", "provider": "oidc"})).await;
    assert_eq!(other.status, StatusCode::OK, "{other}");
    let other_pair = set_cookies(&other)
        .iter()
        .find(|c| c.starts_with("cs_sso="))
        .and_then(|c| c.split(';').next().map(str::to_owned))
        .expect("cookie");
    let redirect = other.body["redirect_url"].as_str().expect("redirect_url").to_owned();
    let back = w.idp.sign_in(&redirect, "ada", "provider-pass").await;
    let back = back.as_str().strip_prefix(&w.app.base).expect("back to us").to_owned();
    let wrong = format!("cs_sso={}.acme.%2F", "0".repeat(64));
    let r = w.app.anonymous().browser(&wrong, None).without_redirects().get(&back).await;
    assert!(r.text.contains("<code>oidc_state_invalid</code>"), "{r}");
    assert_ne!(other_pair, pair);
    assert_eq!(audit_count(&w.db, w.acme.id, "auth.login_succeeded").await, 2);
}

#[tokio::test]
async fn an_open_redirect_through_return_to_is_refused_and_starts_no_flow() {
    let w = world(common::roomy_limits()).await;
    for return_to in [
        "https://evil.example/",
        "//evil.example/inbox",
        "/\\evil.example",
        "evil.example",
        "javascript:alert(1)",
        "/sign-in?next=//evil.example",
        "/sign-out",
        " /documents",
        "/documents\u{7f}",
    ] {
        let r = w
            .app
            .anonymous()
            .post(START, json!({"organisation": "acme", "provider": "oidc", "return_to": return_to}))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{return_to}: {r}");
        assert!(matches!(r.code(), "invalid_field" | "invalid_body" | "invalid_text"), "{return_to}: {r}");
        assert!(set_cookies(&r).is_empty(), "{return_to}: no cookie");
    }
    assert_eq!(flows(&w.db).await, 0, "no flow was started");
    let r = w
        .app
        .anonymous()
        .post(START, json!({"organisation": "acme", "provider": "oidc", "return_to": "https://evil.example/"}))
        .await;
    assert_eq!((r.code(), r.body["error"]["details"]["field"].as_str()), ("invalid_field", Some("return_to")));
    // Bad shapes: a stable 422, never a 5xx.
    for body in [
        json!({"organisation": "acme", "provider": "ldap"}),
        json!({"organisation": "acme"}),
        json!({"organisation": "acme", "provider": "oidc", "extra": 1}),
        json!({"organisation": 7, "provider": "oidc"}),
    ] {
        let r = w.app.anonymous().post(START, body.clone()).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {r}");
    }
}

/// Tenant and global transactions this process opened so far.
fn transactions() -> (u64, u64) {
    let s = store::metrics::global().snapshot();
    (s.tenant_tx_total, s.global_tx_total)
}

async fn refused(c: &Client, organisation: &str, provider: &str) -> (common::Answer, (u64, u64)) {
    let before = transactions();
    let r = c.post(START, json!({"organisation": organisation, "provider": provider})).await;
    let after = transactions();
    (r, (after.0 - before.0, after.1 - before.1))
}

#[tokio::test]
async fn unknown_malformed_unconfigured_and_disabled_organisations_get_one_refusal_after_the_same_work() {
    let w = world(common::roomy_limits()).await;
    // gamma has OpenID Connect configured but disabled.
    let gamma = org(&w.db, "gamma").await;
    {
        let mut admin = w.db.admin_conn().await;
        sqlx::query(
            "insert into oidc_configs (tenant_id, id, preset, issuer, client_id, secret_key_id, secret_nonce,
                                       secret_ciphertext, allowed_domains, enabled)
             select $1, gen_random_uuid(), preset, issuer, client_id, secret_key_id, secret_nonce, secret_ciphertext,
                    allowed_domains, false
               from oidc_configs limit 1",
        )
        .bind(gamma.id.as_uuid())
        .execute(&mut admin)
        .await
        .expect("a disabled configuration");
    }
    let c = w.app.anonymous();
    // Warm: the first request of a process pays for connections and caches.
    for _ in 0..3 {
        refused(&c, "beta", "oidc").await;
        refused(&c, "nosuch", "oidc").await;
    }
    for provider in ["oidc", "saml"] {
        let (first, _) = refused(&c, "beta", provider).await;
        assert_eq!(first.status, StatusCode::FORBIDDEN, "{first}");
        assert_eq!(first.code(), format!("{provider}_not_configured"));
        let work = least_work(&c, "beta", provider).await;
        assert_eq!(work, (1, 0), "one tenant transaction (the configuration), no global one");
        for organisation in ["nosuch", "gamma", "no such organisation", "<script>"] {
            let (r, _) = refused(&c, organisation, provider).await;
            assert_eq!((r.status, &r.text), (first.status, &first.text), "{organisation} answers as beta does");
            assert!(set_cookies(&r).is_empty(), "{organisation}: no cookie");
            // The same database work.
            assert_eq!(least_work(&c, organisation, provider).await, work, "{organisation} ({provider})");
        }
    }
    assert_eq!(flows(&w.db).await, 0);
    // Time is not asserted here (shared machines are noisy): the same statuses, bytes and
    // database work above are what make the paths alike.
}

/// The transactions one refused start opens: the least of three (the IP allowlist cache, shared
/// by both paths, is refreshed every few seconds with a transaction of its own).
async fn least_work(c: &Client, organisation: &str, provider: &str) -> (u64, u64) {
    let mut least = (u64::MAX, u64::MAX);
    for _ in 0..3 {
        least = least.min(refused(c, organisation, provider).await.1);
    }
    least
}

#[tokio::test]
async fn starting_spends_the_shared_sign_in_budget() {
    let limits = Limits { login: "4/15m".parse().expect("limit"), ..Limits::default() };
    let w = world(limits).await;
    // The administrator's sign-in in `world` spent one.
    let c = w.app.anonymous();
    for _ in 0..3 {
        let r = c.post(START, json!({"organisation": "acme", "provider": "oidc"})).await;
        assert_eq!(r.status, StatusCode::OK, "{r}");
    }
    let r = c.post(START, json!({"organisation": "acme", "provider": "oidc"})).await;
    assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{r}");
    assert!(r.header("retry-after").is_some());
    let r = c.post(START, json!({"organisation": "nosuch", "provider": "saml"})).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let r = c.login("acme", "user0@acme.example", common::PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "password sign-in shares the budget");
    assert_eq!(flows(&w.db).await, 3);
}

#[tokio::test]
async fn the_start_is_typed_in_the_api_description() {
    let db = TestDb::new().await;
    let app = TestApp::new(&db).await;
    let spec = app.anonymous().get("/api/openapi.json").await.body;
    let op = &spec["paths"][START]["post"];
    assert_eq!(op["operationId"], "startSso", "{op}");
    assert_eq!(
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SsoStartRequest"
    );
    let ok = &op["responses"]["200"];
    assert_eq!(ok["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/SsoStarted");
    assert!(ok["headers"]["Set-Cookie"]["description"].as_str().is_some_and(|d| d.contains("cs_sso")), "{ok}");
    assert!(op["responses"]["429"]["headers"]["Retry-After"].is_object(), "{op}");
    assert!(op.get("security").is_none(), "no credential: {op}");
    let request = &spec["components"]["schemas"]["SsoStartRequest"];
    let required: Vec<&str> =
        request["required"].as_array().expect("required").iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(required, ["organisation", "provider"], "{request}");
    assert!(
        request["properties"]["return_to"]["description"].as_str().is_some_and(|d| d.contains("path on this site"))
    );
}
