//! The sign-in side of the pages over HTTP (the browser flows are tests/browser/signin.mjs): a
//! page's session outlives its 10-minute access cookie through `/api/v1/auth/resume`, without
//! the refresh cookie ever travelling to a page, without a redirect off this site, without a
//! loop, and without giving a cross-site request anything. Each test is named after what it stops.

mod common;

use common::{Answer, Client, Org, TestApp, audit_count, member, org};
use identity::Role;
use reqwest::StatusCode;
use store::testing::TestDb;

struct World {
    db: TestDb,
    app: TestApp,
    acme: Org,
}

async fn world() -> World {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    for u in &acme.users {
        common::with_password(&db, *u).await;
    }
    member(&db, acme.id, "acme", "fin", Role::Finance, None, true).await;
    let app = TestApp::setup(&db).roomy().dev_outbox().start().await;
    World { db, app, acme }
}

/// Redactions that make a page's markup the same on every run (as tests/pages.rs).
fn filters() -> Vec<(&'static str, &'static str)> {
    common::page_filters(&[
        (r#"value="csi_[0-9a-f_]+""#, r#"value="[invitation]""#),
        (r"data:image/svg\+xml;base64,[A-Za-z0-9+/=]+", "data:image/svg+xml;base64,[qr]"),
        (r#"<code class="secret">[A-Z2-7=]+</code>"#, r#"<code class="secret">[key]</code>"#),
    ])
}

macro_rules! snapshot {
    ($name:expr, $html:expr) => {
        insta::with_settings!({ filters => filters() }, {
            insta::assert_snapshot!($name, $html);
        })
    };
}

/// An anonymous browser that opened the sign-in page: it holds the pre-session CSRF cookie.
async fn visitor(w: &World) -> Jar {
    let r = w.app.anonymous().without_redirects().get("/sign-in").await;
    let mut jar = Jar::default();
    jar.apply(&r);
    assert!(jar.get("cs_csrf").is_some());
    jar
}

/// The newest 8-digit code mailed to `to` (mail leaves in the background: waits for it).
async fn mailed_code(w: &World, to: &str, after: usize) -> String {
    for _ in 0..200 {
        let items = w.app.anonymous().get(&format!("/api/v1/dev/outbox?to={to}")).await.body["items"].clone();
        let items = items.as_array().cloned().unwrap_or_default();
        if items.len() > after {
            let body = items[0]["body"].as_str().unwrap_or_default().to_owned();
            let start = body.find(": ").expect("code in body") + 2;
            return body[start..start + 8].to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no code mailed to {to}");
}

async fn mail_count(w: &World, to: &str) -> usize {
    w.app.anonymous().get(&format!("/api/v1/dev/outbox?to={to}")).await.body["items"].as_array().map_or(0, Vec::len)
}

/// A browser's cookie jar, by hand: the `name=value` pairs it holds.
#[derive(Clone, Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn without(&self, name: &str) -> Self {
        Self(self.0.iter().filter(|(k, _)| k != name).cloned().collect())
    }

    fn header(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    /// Applies an answer's `Set-Cookie` headers (`Max-Age=0` deletes).
    fn apply(&mut self, a: &Answer) {
        for c in set_cookies(a) {
            let pair = c.split(';').next().unwrap_or_default();
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            self.0.retain(|(name, _)| name != k);
            if !c.contains("Max-Age=0") {
                self.0.push((k.to_owned(), v.to_owned()));
            }
        }
    }

    /// A browser client (no redirects followed) holding these cookies.
    fn client(&self, app: &TestApp) -> Client {
        app.anonymous().without_redirects().browser(&self.header(), self.get("cs_csrf"))
    }
}

fn set_cookies(a: &Answer) -> Vec<String> {
    a.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
}

/// Signs `email` in as a browser does; the jar holds the three session cookies.
async fn signed_in(w: &World, email: &str) -> Jar {
    let (_, r) = w.app.anonymous().sign_in_browser("acme", email).await;
    let mut jar = Jar::default();
    jar.apply(&r);
    assert!(jar.get("cs_access").is_some() && jar.get("cs_refresh").is_some() && jar.get("cs_csrf").is_some());
    jar
}

/// What the browser does with the refresh cookie, whose `Path=/api/v1/auth` keeps it from pages.
fn page_cookies(jar: &Jar) -> Jar {
    jar.without("cs_refresh")
}

async fn fixture_document(w: &World) -> uuid::Uuid {
    let mut tx = w.db.store.tenant_tx(w.acme.id).await.expect("tx");
    let id =
        sqlx::query_scalar("select id from documents where title = 'fixture'").fetch_one(tx.conn()).await.expect("doc");
    tx.commit().await.expect("commit");
    id
}

async fn version(w: &World, id: uuid::Uuid) -> i32 {
    let mut tx = w.db.store.tenant_tx(w.acme.id).await.expect("tx");
    let v = sqlx::query_scalar("select version from documents where id = $1")
        .bind(id)
        .fetch_one(tx.conn())
        .await
        .expect("version");
    tx.commit().await.expect("commit");
    v
}

#[tokio::test]
async fn an_expired_access_cookie_with_a_live_refresh_cookie_resumes_and_the_page_renders() {
    let w = world().await;
    let jar = signed_in(&w, "user0@acme.example").await;
    let refresh_cookie = set_cookies(&w.app.anonymous().sign_in_browser("acme", "user0@acme.example").await.1)
        .into_iter()
        .find(|c| c.starts_with("cs_refresh="))
        .expect("refresh cookie");
    assert!(
        refresh_cookie.contains("Path=/api/v1/auth;"),
        "the refresh cookie stays on /api/v1/auth: {refresh_cookie}"
    );
    // The access cookie expired (the browser dropped it at its Max-Age).
    let mut browser = jar.without("cs_access");
    let r = page_cookies(&browser).client(&w.app).get("/documents?status=queried").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let to = r.header("location").expect("location").to_owned();
    assert_eq!(to, "/api/v1/auth/resume?next=/documents%3Fstatus%3Dqueried");

    let resumed = browser.client(&w.app).get(&to).await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    assert_eq!(resumed.header("location"), Some("/documents?status=queried"));
    let set = set_cookies(&resumed);
    assert!(set.iter().any(|c| c.starts_with("cs_access=") && c.contains("HttpOnly") && c.contains("Path=/;")));
    assert!(set.iter().any(|c| c.starts_with("cs_refresh=") && c.contains("Path=/api/v1/auth;")));
    assert!(!set.iter().any(|c| c.starts_with("cs_csrf=")), "the CSRF cookie is kept: {set:?}");
    let csrf_before = browser.get("cs_csrf").map(str::to_owned);
    let refresh_before = browser.get("cs_refresh").map(str::to_owned);
    browser.apply(&resumed);
    assert_eq!(browser.get("cs_csrf").map(str::to_owned), csrf_before);
    assert_ne!(browser.get("cs_refresh").map(str::to_owned), refresh_before, "rotated");

    let page = page_cookies(&browser).client(&w.app).get("/documents?status=queried").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("User 0"), "signed in as before");
    assert!(
        set_cookies(&page).iter().any(|c| c.starts_with("cs_resumed=;") && c.contains("Max-Age=0")),
        "the page that answered clears the resume marker, so the next expiry resumes again"
    );
}

#[tokio::test]
async fn a_form_posted_after_the_access_cookie_expired_lands_once_after_the_resume() {
    let w = world().await;
    let doc = fixture_document(&w).await;
    let before = version(&w, doc).await;
    let mut browser = signed_in(&w, "fin@acme.example").await.without("cs_access");
    let v = before.to_string();
    let form = [("transition", "approve"), ("version", v.as_str())];
    let action = format!("/documents/{doc}/transitions");

    // The page answers 307 to the resume, which a browser follows with the same method and body.
    let r = page_cookies(&browser).client(&w.app).post_form(&action, &form).await;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT, "{}", r.text);
    let to = r.header("location").expect("location").to_owned();
    assert_eq!(to, format!("/api/v1/auth/resume?next=/documents/{doc}/transitions"));
    assert_eq!(version(&w, doc).await, before, "nothing happened yet");

    let stale = browser.clone();
    let resumed = browser.client(&w.app).post_form(&to, &form).await;
    assert_eq!(resumed.status, StatusCode::TEMPORARY_REDIRECT, "{}", resumed.text);
    assert_eq!(resumed.header("location"), Some(action.as_str()));
    browser.apply(&resumed);

    // The same form, re-sent to its page with the new access cookie and the kept CSRF token.
    let landed = page_cookies(&browser).client(&w.app).post_form(&action, &form).await;
    assert_eq!(landed.status, StatusCode::SEE_OTHER, "{}", landed.text);
    assert_eq!(landed.header("location"), Some(format!("/documents/{doc}?done=approve").as_str()));
    assert_eq!(version(&w, doc).await, before + 1, "the approval happened, once");
    assert_eq!(audit_count(&w.db, w.acme.id, "voucher.approved").await, 1);

    // The pre-rotation cookie sent again is a replay: sign in, the family revoked.
    let replayed = stale.client(&w.app).post_form(&to, &form).await;
    assert_eq!((replayed.status, replayed.header("location")), (StatusCode::SEE_OTHER, Some("/sign-in")));
    assert_eq!(version(&w, doc).await, before + 1, "still once");
}

#[tokio::test]
async fn a_replayed_refresh_cookie_ends_on_the_sign_in_page_and_revokes_the_family() {
    let w = world().await;
    let mut browser = signed_in(&w, "user0@acme.example").await.without("cs_access");
    let old = browser.clone();
    let first = browser.client(&w.app).get("/api/v1/auth/resume?next=/account").await;
    assert_eq!(first.header("location"), Some("/account"));
    browser.apply(&first);

    // Someone replays the cookie the browser had before (stolen, or an old copy).
    let replay = old.client(&w.app).get("/api/v1/auth/resume?next=/account").await;
    assert_eq!(replay.status, StatusCode::SEE_OTHER);
    assert_eq!(replay.header("location"), Some("/sign-in?next=/account"));
    assert!(
        set_cookies(&replay).iter().any(|c| c.starts_with("cs_refresh=;") && c.contains("Max-Age=0")),
        "the dead refresh cookie is cleared"
    );
    assert!(audit_count(&w.db, w.acme.id, "auth.refresh_reused").await >= 1);
    // The whole family is gone: the rotated tokens the browser holds no longer work either.
    // (It resumed a moment ago, so the page sends it straight to sign in: `cs_resumed`.)
    let page = page_cookies(&browser).client(&w.app).get("/account").await;
    assert_eq!((page.status, page.header("location")), (StatusCode::SEE_OTHER, Some("/sign-in?next=/account")));
    let again = browser.client(&w.app).get("/api/v1/auth/resume?next=/account").await;
    assert_eq!(again.header("location"), Some("/sign-in?next=/account"));
    let me = w.app.anonymous().browser(&browser.header(), browser.get("cs_csrf")).get("/api/v1/me").await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn resume_never_sends_the_browser_off_this_site() {
    let w = world().await;
    let mut browser = signed_in(&w, "user0@acme.example").await.without("cs_access");
    for evil in ["https%3A%2F%2Fevil.example%2F", "%2F%2Fevil.example", "%2F%5Cevil.example", "javascript%3Aalert(1)"] {
        let r = browser.client(&w.app).get(&format!("/api/v1/auth/resume?next={evil}")).await;
        assert_eq!((r.status, r.header("location")), (StatusCode::SEE_OTHER, Some("/")), "{evil}");
        browser.apply(&r);
        // Without a session to resume: sign in, still with a local `next`.
        let anon = w.app.anonymous().without_redirects().get(&format!("/api/v1/auth/resume?next={evil}")).await;
        assert_eq!(anon.header("location"), Some("/sign-in?next=/"), "{evil}");
    }
    // A form is never replayed anywhere but the page it names.
    let r = browser.client(&w.app).post_form("/api/v1/auth/resume?next=%2F%2Fevil.example", &[]).await;
    assert_eq!((r.status, r.header("location")), (StatusCode::SEE_OTHER, Some("/sign-in")));
}

#[tokio::test]
async fn a_cross_site_post_to_resume_rotates_nothing_and_replays_nothing() {
    let w = world().await;
    let doc = fixture_document(&w).await;
    let before = version(&w, doc).await;
    let browser = signed_in(&w, "fin@acme.example").await.without("cs_access");
    let to = format!("/api/v1/auth/resume?next=/documents/{doc}/transitions");
    let form = [("transition", "approve"), ("version", "1")];
    // SameSite=Strict: a cross-site form arrives without any cookie.
    let r = w.app.anonymous().without_redirects().post_form(&to, &form).await;
    assert_eq!((r.status, r.header("location")), (StatusCode::SEE_OTHER, Some("/sign-in")));
    assert!(set_cookies(&r).is_empty(), "{:?}", set_cookies(&r));
    // Even holding the cookies, a form without this browser's CSRF token is not replayed.
    let forged = browser.client(&w.app).post_form(&to, &[("transition", "approve"), ("csrf_token", "0")]).await;
    assert_eq!((forged.status, forged.header("location")), (StatusCode::SEE_OTHER, Some("/sign-in")));
    assert!(set_cookies(&forged).is_empty(), "nothing rotated");
    assert_eq!(version(&w, doc).await, before);
    // The refresh cookie was not spent: the browser itself still resumes.
    let ok = browser.client(&w.app).get("/api/v1/auth/resume?next=/").await;
    assert_eq!(ok.header("location"), Some("/"));
}

#[tokio::test]
async fn a_revoked_session_ends_on_the_sign_in_page_without_a_loop() {
    let w = world().await;
    let browser = signed_in(&w, "user1@acme.example").await;
    // Signed out elsewhere (sign-out, an admin's revocation, a role change all revoke it).
    let api = w.app.anonymous().browser(&browser.header(), browser.get("cs_csrf"));
    assert_eq!(api.post("/api/v1/auth/logout", ()).await.status, StatusCode::NO_CONTENT);
    // The page refuses the access cookie, the resume refuses the refresh cookie: sign in.
    let r = page_cookies(&browser).client(&w.app).get("/documents").await;
    assert_eq!(r.header("location"), Some("/api/v1/auth/resume?next=/documents"));
    let r = browser.client(&w.app).get("/api/v1/auth/resume?next=/documents").await;
    assert_eq!(r.header("location"), Some("/sign-in?next=/documents"));

    // Just resumed and still refused (the new access cookie did not stick): straight to sign
    // in, not back to the resume.
    let mut marked = page_cookies(&browser);
    marked.0.push(("cs_resumed".to_owned(), "1".to_owned()));
    let r = marked.client(&w.app).get("/documents").await;
    assert_eq!(r.header("location"), Some("/sign-in?next=/documents"));
    let r = marked.client(&w.app).post_form("/documents", &[("title", "x")]).await;
    assert_eq!((r.status, r.header("location")), (StatusCode::SEE_OTHER, Some("/sign-in")));

    // A browser that never signed in (no CSRF cookie) goes to sign in directly.
    let r = w.app.anonymous().without_redirects().get("/documents").await;
    assert_eq!(r.header("location"), Some("/sign-in?next=/documents"));
    // Signing out is not replayed after a resume (its page is the sign-in page).
    let r = page_cookies(&browser).client(&w.app).post_form("/sign-out", &[]).await;
    assert_eq!((r.status, r.header("location")), (StatusCode::SEE_OTHER, Some("/sign-in")));
}

#[tokio::test]
async fn an_email_code_request_answers_the_same_whether_or_not_the_account_exists() {
    let w = world().await;
    let jar = visitor(&w).await;
    let form = jar.client(&w.app).get("/sign-in/email-code?organisation=acme&next=%2Fdocuments").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.text.contains(r#"name="next" value="/documents""#));
    snapshot!("email_code_form", form.text);
    let ask = |email: &'static str, organisation: &'static str| {
        let c = jar.client(&w.app);
        async move {
            let r = c.post_form("/sign-in/email-code", &[("organisation", organisation), ("email", email)]).await;
            (r.status, r.text.replace(email, "[email]").replace(organisation, "[organisation]"))
        }
    };
    let member = ask("user1@acme.example", "acme").await;
    assert_eq!(member.0, StatusCode::OK);
    assert!(member.1.contains("we have emailed it a code"), "{}", member.1);
    assert_eq!(ask("nobody@acme.example", "acme").await, member, "an unknown address: the same answer");
    assert_eq!(ask("user1@acme.example", "nosuchorg").await, member, "an unknown organisation: the same answer");
    snapshot!("email_code_sent", member.1);
    // A cross-site form (no pre-session token) sends nothing.
    let before = mail_count(&w, "user1@acme.example").await;
    let r = w
        .app
        .anonymous()
        .without_redirects()
        .post_form("/sign-in/email-code", &[("organisation", "acme"), ("email", "user1@acme.example")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(mail_count(&w, "user1@acme.example").await, before);
}

#[tokio::test]
async fn a_wrong_expired_or_replayed_email_code_is_said_on_the_form_and_the_right_one_signs_in() {
    let w = world().await;
    let jar = visitor(&w).await;
    let c = jar.client(&w.app);
    let before = mail_count(&w, "user1@acme.example").await;
    let sent = c
        .post_form(
            "/sign-in/email-code",
            &[("organisation", "acme"), ("email", "user1@acme.example"), ("next", "/documents")],
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK);
    let code = mailed_code(&w, "user1@acme.example", before).await;
    let verify = |code: String| {
        let c = c.clone();
        async move {
            c.post_form(
                "/sign-in/email-code/verify",
                &[("organisation", "acme"), ("email", "user1@acme.example"), ("code", &code), ("next", "/documents")],
            )
            .await
        }
    };
    let wrong = if code == "00000000" { "11111111" } else { "00000000" };
    for bad in [wrong, "not a code", &"9".repeat(40)] {
        let r = verify(bad.to_owned()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad}: {}", r.text);
        assert!(r.text.contains("That code is wrong, expired or already used"), "{bad}");
        assert!(r.text.contains(r#"value="user1@acme.example""#), "what was typed is kept");
    }
    let ok = verify(code.clone()).await;
    assert_eq!((ok.status, ok.header("location")), (StatusCode::SEE_OTHER, Some("/documents")), "{}", ok.text);
    assert!(set_cookies(&ok).iter().any(|c| c.starts_with("cs_access=")));
    let replay = verify(code).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "a code works once");
    assert!(replay.text.contains("That code is wrong, expired or already used"));
}

fn totp_now(key: &str) -> String {
    let secret = totp_rs::Secret::Encoded(key.to_owned()).to_bytes().expect("base32 key");
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, secret, None, String::new())
        .generate_current()
        .expect("code")
}

#[tokio::test]
async fn an_organisation_that_requires_a_second_factor_walks_a_member_without_one_through_the_setup() {
    let w = world().await;
    let mut admin = w.db.admin_conn().await;
    sqlx::query("update tenants set require_mfa = true where id = $1")
        .bind(w.acme.id.as_uuid())
        .execute(&mut admin)
        .await
        .expect("require MFA");
    let mut jar = visitor(&w).await;
    let before = mail_count(&w, "user1@acme.example").await;
    let first = jar
        .client(&w.app)
        .post_form(
            "/sign-in",
            &[
                ("organisation", "acme"),
                ("email", "user1@acme.example"),
                ("password", common::PASSWORD),
                ("next", "/documents"),
            ],
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    assert!(first.text.contains("We have emailed you a code"), "{}", first.text);
    let token = first
        .text
        .split(r#"name="mfa_token" value=""#)
        .nth(1)
        .and_then(|t| t.split('"').next())
        .expect("mfa token")
        .to_owned();
    let code = mailed_code(&w, "user1@acme.example", before).await;
    let second = jar
        .client(&w.app)
        .post_form(
            "/sign-in/second-factor",
            &[("mfa_token", &token), ("method", "email_code"), ("code", &code), ("next", "/documents")],
        )
        .await;
    assert_eq!(second.status, StatusCode::SEE_OTHER, "{}", second.text);
    assert_eq!(second.header("location"), Some("/account/authenticator?next=/documents"));
    jar.apply(&second);

    // Until the app is on, every page of the organisation sends them back to the setup, and then
    // on to the page they asked for; a form posted elsewhere does nothing and lands there too.
    for (asked, setup) in [
        ("/documents", "/account/authenticator?next=/documents"),
        ("/", "/account/authenticator?next=/"),
        ("/documents?status=draft", "/account/authenticator?next=/documents%3Fstatus%3Ddraft"),
        ("/periods", "/account/authenticator?next=/periods"),
    ] {
        let r = jar.client(&w.app).get(asked).await;
        assert_eq!((r.status, r.header("location")), (StatusCode::SEE_OTHER, Some(setup)), "{asked}");
    }
    let raised = jar
        .client(&w.app)
        .post_form(
            "/documents",
            &[("kind", "voucher"), ("title", "Before the app"), ("currency", "GBP"), ("date", "2026-12-07")],
        )
        .await;
    assert_eq!(
        (raised.status, raised.header("location")),
        (StatusCode::SEE_OTHER, Some("/account/authenticator?next=/")),
        "{}",
        raised.text
    );
    let mut c = w.db.admin_conn().await;
    let drafts: i64 = sqlx::query_scalar("select count(*) from documents where title = 'Before the app'")
        .fetch_one(&mut c)
        .await
        .expect("count");
    assert_eq!(drafts, 0, "the form did nothing");
    // Their own account stays open (the setup, their sessions, signing out).
    assert_eq!(jar.client(&w.app).get("/account").await.status, StatusCode::OK);

    let intro = jar.client(&w.app).get("/account/authenticator?next=/documents").await;
    assert_eq!(intro.status, StatusCode::OK);
    assert!(intro.text.contains("asks everyone for a second step"));
    snapshot!("authenticator_required", intro.text);
    let started = jar.client(&w.app).post_form("/account/authenticator", &[("next", "/documents")]).await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);
    assert!(started.text.contains(r#"<img src="data:image/svg+xml;base64,"#), "the QR code is an SVG image");
    snapshot!("authenticator_scan", started.text);
    let key = started
        .text
        .split(r#"<code class="secret">"#)
        .nth(1)
        .and_then(|t| t.split('<').next())
        .expect("key")
        .to_owned();
    let wrong = jar
        .client(&w.app)
        .post_form("/account/authenticator/confirm", &[("code", "12345x"), ("next", "/documents")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.text.contains("This code is not right"));
    let done = jar
        .client(&w.app)
        .post_form("/account/authenticator/confirm", &[("code", &totp_now(&key)), ("next", "/documents")])
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_eq!(done.text.matches("<li><code>").count(), 10, "ten recovery codes, once");
    assert!(done.text.contains(r#"href="/documents""#), "then on to where they were going");
    // With the app on, the setup page sends them on, and the account page says it is on.
    let again = jar.client(&w.app).get("/account/authenticator?next=/documents").await;
    assert_eq!((again.status, again.header("location")), (StatusCode::SEE_OTHER, Some("/documents")));
    let account = jar.client(&w.app).get("/account").await;
    assert!(account.text.contains(r#"<span class="chip done">On</span> since"#), "{}", account.text);
    // With the app on, the pages open at once (no cached answer sends them back).
    assert_eq!(jar.client(&w.app).get("/documents").await.status, StatusCode::OK);
    assert_eq!(jar.client(&w.app).get("/").await.status, StatusCode::OK);
    assert!(account.text.contains("10 of 10"));
}

#[tokio::test]
async fn the_account_page_says_whether_the_authenticator_app_is_on() {
    let w = world().await;
    let jar = signed_in(&w, "user1@acme.example").await;
    let page = jar.client(&w.app).get("/account").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains(r#"<dt>Authenticator app</dt><dd><span class="chip neutral">Off</span>"#),
        "{}",
        page.text
    );
    assert!(!page.text.contains("Recovery codes left"));
    assert!(!page.text.contains("Remove the authenticator app"), "nothing to remove while it is off");
}

#[tokio::test]
async fn an_invitation_link_opens_a_page_and_a_forged_expired_or_used_one_is_a_readable_refusal() {
    let w = world().await;
    let admin = w.app.sign_in("acme", "user0@acme.example").await;
    let created =
        admin.post("/api/v1/invitations", serde_json::json!({"email": "new@acme.example", "role": "staff"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let token = created.body["token"].as_str().expect("token").to_owned();
    let jar = visitor(&w).await;
    let c = jar.client(&w.app);

    let page = c.get(&format!("/invitations/accept?token={token}")).await;
    assert_eq!(page.status, StatusCode::OK);
    snapshot!("invitation_form", page.text);
    for forged in ["nonsense", "csi_00000000000000000000000000000000_00000000000000000000000000000000_00"] {
        let r = c.get(&format!("/invitations/accept?token={forged}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{forged}");
        assert!(r.text.contains("This invitation link is not valid"));
    }
    // A well-formed token nobody issued: refused on accept, in words.
    let made_up = format!("{}{}", &token[..token.len() - 4], "0000");
    let r = c
        .post_form(
            "/invitations/accept",
            &[("token", &made_up), ("name", "New"), ("password", "a long enough passphrase")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(r.text.contains("This invitation link is not valid"));

    let weak =
        c.post_form("/invitations/accept", &[("token", &token), ("name", "New Person"), ("password", "short")]).await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", weak.text);
    assert!(weak.text.contains("Choose a stronger password"), "{}", weak.text);
    assert!(weak.text.contains(r#"value="New Person""#), "what was typed is kept");

    let joined = c
        .post_form(
            "/invitations/accept",
            &[("token", &token), ("name", "New Person"), ("password", "a long enough passphrase")],
        )
        .await;
    assert_eq!(joined.status, StatusCode::OK, "{}", joined.text);
    assert!(joined.text.contains("you have joined. Sign in to start."), "{}", joined.text);
    assert!(joined.text.contains(r#"name="organisation" type="text" value="acme""#));

    let used = c
        .post_form(
            "/invitations/accept",
            &[("token", &token), ("name", "New Person"), ("password", "a long enough passphrase")],
        )
        .await;
    assert_eq!(used.status, StatusCode::GONE);
    assert!(used.text.contains("This invitation cannot be used any more: already used."), "{}", used.text);
    snapshot!("invitation_used", used.text);
    // And the new member signs in with the password they chose.
    let signed = w.app.anonymous().login("acme", "new@acme.example", "a long enough passphrase").await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
}

/// The organisation switcher: a browser that signed in to acme and then to beta offers, on
/// beta's pages, a sign-in to acme (and to another organisation) — never a session in acme
/// without signing in there; the list is the browser's own (a cookie), so a forged entry is at
/// most a link to a sign-in page, and anything that is not a short name is dropped.
#[tokio::test]
async fn a_browser_signed_in_to_two_organisations_offers_the_other_in_the_top_bar() {
    let w = world().await;
    let beta = org(&w.db, "beta").await;
    common::with_password(&w.db, beta.users[0]).await;
    let mut jar = visitor(&w).await;
    for (organisation, email) in [("acme", "user0@acme.example"), ("Beta", "user0@beta.example")] {
        let fields = [("organisation", organisation), ("email", email), ("password", common::PASSWORD)];
        let r = jar.client(&w.app).post_form("/sign-in", &fields).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{organisation}: {}", r.text);
        jar.apply(&r);
    }
    assert_eq!(jar.get("cs_orgs"), Some("beta.acme"), "most recent first, as short names");
    let home = page_cookies(&jar).client(&w.app).get("/").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.text);
    assert!(home.text.contains(r#"<details class="organisation switcher">"#), "{}", home.text);
    assert!(home.text.contains(r#"<a href="/sign-in?organisation=acme">Sign in to acme</a>"#), "{}", home.text);
    assert!(!home.text.contains("Sign in to beta"), "the current organisation is not offered");

    // Switching is signing in: the link is the sign-in page with the organisation filled in.
    let form = w.app.anonymous().get("/sign-in?organisation=acme").await;
    assert!(form.text.contains(r#"value="acme""#), "{}", form.text);

    // A tampered list: markup and non-names are dropped, never shown.
    let forged = Jar(page_cookies(&jar)
        .without("cs_orgs")
        .0
        .into_iter()
        .chain([("cs_orgs".to_owned(), "acme.<script>.x%22y.ACME.gamma".to_owned())])
        .collect());
    let home = forged.client(&w.app).get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.text.contains("Sign in to acme") && home.text.contains("Sign in to gamma"), "{}", home.text);
    assert!(
        !home.text.contains("<script>") && !home.text.contains("x%22y") && !home.text.contains("ACME"),
        "{}",
        home.text
    );

    // A browser that only ever signed in to one organisation shows no switcher.
    let single = signed_in(&w, "user1@acme.example").await;
    let home = page_cookies(&single).client(&w.app).get("/").await;
    assert!(!home.text.contains("switcher"), "{}", home.text);
}
