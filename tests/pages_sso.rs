//! Single sign-on through the pages, against a real provider (npm `oidc-provider`, started per
//! test like tests/oidc.rs): configured on the settings page (the secret never shown back, "test
//! connection" answering its outcome), offered on the sign-in page, completed into the same
//! session cookies as a password. Attacked: a forged state, a replayed callback, a callback from
//! another browser (no binding cookie), the provider's error, an unverified address, and an
//! organisation without single sign-on — each a readable sign-in page with its code, never a 5xx.

mod common;

use common::oidc::{CLIENT_ID, CLIENT_SECRET, Provider, account};
use common::{Client, TestApp, audit_count, org, with_password};
use reqwest::StatusCode;
use store::testing::TestDb;

struct World {
    db: TestDb,
    app: TestApp,
    idp: Provider,
    admin: Client,
    acme: common::Org,
}

async fn world() -> World {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    org(&db, "beta").await;
    with_password(&db, acme.users[0]).await;
    // Served as over TLS (`Secure` cookies); reqwest sends them over loopback HTTP regardless.
    let app = TestApp::setup(&db).roomy().start().await;
    let idp = Provider::start(
        &format!("{}/sign-in/sso/callback", app.base),
        vec![
            account("ada", "sub-ada", "user0@acme.example", true),
            account("mallory", "sub-mallory", "user1@acme.example", false),
        ],
    );
    let (admin, _) = app.anonymous().sign_in_browser("acme", "user0@acme.example").await;
    World { db, app, idp, admin, acme }
}

impl World {
    /// Saves the provider on the settings page, as an administrator does.
    async fn configure(&self) -> common::Answer {
        common::oidc::configure_on_settings_page(&self.admin, &self.idp.issuer).await
    }

    /// Starts single sign-on as a fresh browser: the provider's address and the binding cookie.
    async fn start(&self, organisation: &str) -> (String, String) {
        let r =
            self.app.anonymous().without_redirects().get(&format!("/sign-in/sso?organisation={organisation}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let location = r.header("location").expect("location").to_owned();
        assert!(location.starts_with(&self.idp.issuer), "{location}");
        let set = r.header("set-cookie").expect("binding cookie").to_owned();
        let pair = set.split(';').next().expect("pair").to_owned();
        assert!(pair.starts_with("cs_sso="), "{set}");
        (location, pair)
    }

    /// The provider's redirect back (path and query on our server) after `login` signs in there.
    async fn at_provider(&self, authorize: &str, login: &str) -> String {
        let back = self.idp.sign_in(authorize, login, "provider-pass").await;
        let url = back.as_str().to_owned();
        url.strip_prefix(&self.app.base).unwrap_or_else(|| panic!("not back to us: {url}")).to_owned()
    }

    fn browser(&self, cookie: &str) -> Client {
        self.app.anonymous().browser(cookie, None).without_redirects()
    }
}

#[track_caller]
fn refused_page(r: &common::Answer, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")), "a page");
    assert!(r.text.contains("Sign in to Countersign"), "the sign-in page: {}", r.text);
    assert!(r.text.contains(&format!("<code>{code}</code>")), "names {code}: {}", r.text);
    let cleared = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("cs_sso=;") && c.contains("Max-Age=0") && c.contains("Path=/sign-in/sso"));
    assert!(cleared, "the flow's cookie is cleared: {:?}", r.headers);
}

#[tokio::test]
async fn an_administrator_sets_up_sso_on_the_settings_page_and_the_secret_is_never_shown_back() {
    let w = world().await;
    let page = w.admin.get("/settings").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("Single sign-on") && page.text.contains("<strong>not set up</strong>"));
    assert!(!page.text.contains("Test connection"), "nothing to test yet");

    // Refused input: the section says why, the rest of the page stays.
    let r = w.admin.post_form("/settings/sso", &[("preset", "generic"), ("issuer", &w.idp.issuer)]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("id=\"sso-error\""), "{}", r.text);
    let r = w
        .admin
        .post_form(
            "/settings/sso",
            &[
                ("preset", "generic"),
                ("issuer", &w.idp.issuer),
                ("client_id", "x"),
                ("client_secret", "y"),
                ("domains", "acme.example"),
                ("group_mapping", "finance-team = emperor"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("is not a role"), "{}", r.text);
    // SSO-only needs a break-glass account.
    let r = w
        .admin
        .post_form(
            "/settings/sso",
            &[
                ("preset", "generic"),
                ("issuer", &w.idp.issuer),
                ("client_id", "x"),
                ("client_secret", "y"),
                ("domains", "acme.example"),
                ("sso_only", "yes"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("break-glass"), "{}", r.text);
    assert_eq!(audit_count(&w.db, w.acme.id, "oidc.config_changed").await, 0);

    let r = w.configure().await;
    assert_eq!((r.status, r.path.as_str()), (StatusCode::OK, "/settings?done=sso"), "{}", r.text);
    assert!(r.text.contains("Saved: single sign-on"), "{}", r.text);
    assert!(r.text.contains("A secret is set; it is never shown."), "{}", r.text);
    assert!(!r.text.contains(CLIENT_SECRET), "the secret is never shown back");
    assert!(r.text.contains(&w.idp.issuer) && r.text.contains(CLIENT_ID));
    assert_eq!(audit_count(&w.db, w.acme.id, "oidc.config_changed").await, 1);

    // Saving again without a secret keeps the stored one (the sign-in still works below).
    let r = w.configure_without_secret().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // Test connection: worked.
    let r = w.admin.post_form("/settings/sso/test", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("Connected:") && r.text.contains("1 signing key"), "{}", r.text);

    // Staff may not see or change it (the same guard as the API).
    let (staff, _) = {
        with_password(&w.db, w.acme.users[1]).await;
        w.app.anonymous().sign_in_browser("acme", "user1@acme.example").await
    };
    assert_eq!(staff.post_form("/settings/sso", &[("preset", "generic")]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(staff.post_form("/settings/sso/test", &[]).await.status, StatusCode::FORBIDDEN);

    // A provider that is down: the test's answer on the page, not an error page.
    let issuer = w.idp.issuer.clone();
    drop(w.idp);
    let r = w.admin.post_form("/settings/sso/test", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("could not be reached") && r.text.contains("oidc_provider_failed"), "{}", r.text);
    assert!(r.text.contains(&issuer));
}

impl World {
    async fn configure_without_secret(&self) -> common::Answer {
        self.admin
            .post_form(
                "/settings/sso",
                &[
                    ("preset", "generic"),
                    ("issuer", &self.idp.issuer),
                    ("client_id", CLIENT_ID),
                    ("client_secret", ""),
                    ("domains", "acme.example"),
                ],
            )
            .await
    }
}

#[tokio::test]
async fn a_member_signs_in_through_the_provider_into_an_ordinary_session() {
    let w = world().await;
    assert_eq!(w.configure().await.status, StatusCode::OK);
    // The sign-in page offers it once the organisation is known.
    let page = w.app.anonymous().get("/sign-in?organisation=acme").await;
    let host = w.idp.issuer.trim_start_matches("http://");
    assert!(page.text.contains(&format!("Sign in with single sign-on ({host})")), "{}", page.text);
    assert!(
        page.text.contains("hx-boost=\"false\" href=\"/sign-in/sso?organisation=acme&amp;next=/\""),
        "{}",
        page.text
    );

    let r = w.app.anonymous().without_redirects().get("/sign-in/sso?organisation=acme").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let set = r.header("set-cookie").expect("cookie");
    for attribute in ["Path=/sign-in/sso", "HttpOnly", "SameSite=Lax", "Max-Age=600", "Secure"] {
        assert!(set.split("; ").any(|a| a == attribute), "{attribute} in {set}");
    }
    let authorize = r.header("location").expect("location");
    assert!(authorize.contains("code_challenge_method=S256") && authorize.contains("nonce="), "{authorize}");
    assert!(
        authorize.contains(&format!(
            "redirect_uri={}",
            url::form_urlencoded::byte_serialize(format!("{}/sign-in/sso/callback", w.app.base).as_bytes())
                .collect::<String>()
        )),
        "{authorize}"
    );
    let cookie = set.split(';').next().expect("pair").to_owned();
    let back = w.at_provider(authorize, "ada").await;
    let r = w.browser(&cookie).get(&back).await;
    // Not a redirect: a page of ours that moves on by itself, so the next navigation is our own
    // site's and carries the SameSite=Strict session cookies set here (a redirect would still be
    // part of the provider's cross-site chain, and the browser would send none of them).
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains(r#"<meta http-equiv="refresh" content="0;url=/">"#), "{}", r.text);
    assert!(r.text.contains(r#"<a href="/" hx-boost="false">Continue</a>"#), "{}", r.text);
    let set: Vec<&str> = r.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).collect();
    for name in ["cs_access=", "cs_refresh=", "cs_csrf="] {
        assert!(set.iter().any(|c| c.starts_with(name) && c.contains("SameSite=Strict")), "{name}: {set:?}");
    }
    assert!(set.iter().any(|c| c.starts_with("cs_sso=;") && c.contains("Max-Age=0")), "{set:?}");
    let cookies = set.iter().filter_map(|c| c.split(';').next()).filter(|c| !c.ends_with('=')).collect::<Vec<_>>();
    let home = w.app.anonymous().browser(&cookies.join("; "), None).get("/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.text);
    assert!(home.text.contains("Sign out"), "signed in: {}", home.text);
    // The administrator's password sign-in, and this one.
    assert_eq!(audit_count(&w.db, w.acme.id, "auth.login_succeeded").await, 2);
    assert_eq!(audit_count(&w.db, w.acme.id, "auth.sso_linked").await, 1);

    // Replayed: the same callback again, with the same cookie.
    let again = w.browser(&cookie).get(&back).await;
    refused_page(&again, StatusCode::FORBIDDEN, "oidc_state_invalid");
    assert!(again.text.contains("Start again"), "{}", again.text);
    assert_eq!(audit_count(&w.db, w.acme.id, "auth.login_succeeded").await, 2);
}

#[tokio::test]
async fn forged_state_another_browser_provider_errors_and_unverified_addresses_are_refused_readably() {
    let w = world().await;
    assert_eq!(w.configure().await.status, StatusCode::OK);

    // A state we never issued, with a genuine code and this browser's cookie.
    let (authorize, cookie) = w.start("acme").await;
    let back = w.at_provider(&authorize, "ada").await;
    let forged = with_state(&back, "forged-state-0000");
    refused_page(&w.browser(&cookie).get(&forged).await, StatusCode::FORBIDDEN, "oidc_state_invalid");

    // The genuine callback in another browser (no binding cookie: login CSRF), then a made-up one.
    let (authorize, _) = w.start("acme").await;
    let back = w.at_provider(&authorize, "ada").await;
    refused_page(&w.app.anonymous().without_redirects().get(&back).await, StatusCode::FORBIDDEN, "oidc_state_invalid");
    let wrong = format!("cs_sso={}.acme.%2F", "0".repeat(64));
    refused_page(&w.browser(&wrong).get(&back).await, StatusCode::FORBIDDEN, "oidc_state_invalid");

    // The provider's own refusal: the flow is spent, its text is never shown.
    let (authorize, cookie) = w.start("acme").await;
    let state = url::Url::parse(&authorize)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let path = format!("/sign-in/sso/callback?state={state}&error=access_denied&error_description=Call+555-0100+now");
    let r = w.browser(&cookie).get(&path).await;
    refused_page(&r, StatusCode::FORBIDDEN, "oidc_provider_failed");
    assert!(r.text.contains("declined the sign-in") && !r.text.contains("555-0100"), "{}", r.text);
    refused_page(&w.browser(&cookie).get(&path).await, StatusCode::FORBIDDEN, "oidc_state_invalid");

    // An address the provider has not verified.
    let (authorize, cookie) = w.start("acme").await;
    let back = w.at_provider(&authorize, "mallory").await;
    let r = w.browser(&cookie).get(&back).await;
    refused_page(&r, StatusCode::FORBIDDEN, "oidc_email_unverified");
    assert!(r.text.contains("has not verified your email address"), "{}", r.text);

    // Garbage at the callback: a readable refusal, never a 5xx.
    for path in [
        "/sign-in/sso/callback",
        "/sign-in/sso/callback?state=&code=",
        "/sign-in/sso/callback?state=%3Cscript%3E&code=abc",
    ] {
        let r = w.browser("cs_sso=..").get(path).await;
        refused_page(&r, StatusCode::FORBIDDEN, "oidc_state_invalid");
    }
    // Only the administrator's password sign-in.
    assert_eq!(audit_count(&w.db, w.acme.id, "auth.login_succeeded").await, 1);
}

#[tokio::test]
async fn an_organisation_without_sso_shows_no_button_and_refuses_to_start_one_readably() {
    let w = world().await;
    assert_eq!(w.configure().await.status, StatusCode::OK);
    let page = w.app.anonymous().get("/sign-in?organisation=beta").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.text.contains("Single sign-on") && !page.text.contains("/sign-in/sso"), "{}", page.text);
    let page = w.app.anonymous().get("/sign-in").await;
    assert!(!page.text.contains("/sign-in/sso"), "{}", page.text);
    // beta has none; nobody has "nosuch"; a malformed name: the same refusal for each.
    for organisation in ["beta", "nosuch", "%3Cscript%3E"] {
        let r = w.app.anonymous().without_redirects().get(&format!("/sign-in/sso?organisation={organisation}")).await;
        refused_page(&r, StatusCode::FORBIDDEN, "oidc_not_configured");
        assert!(r.text.contains("does not sign in with single sign-on"), "{}", r.text);
        assert!(!r.text.contains("<script>"));
    }
}

/// `path` with its `state` parameter replaced by `state`.
fn with_state(path: &str, state: &str) -> String {
    let url = url::Url::parse(&format!("http://x{path}")).expect("url");
    let mut out = url::Url::parse(&format!("http://x{}", url.path())).expect("url");
    for (k, v) in url.query_pairs() {
        out.query_pairs_mut().append_pair(&k, if k == "state" { state } else { &v });
    }
    format!("{}?{}", out.path(), out.query().unwrap_or_default())
}
