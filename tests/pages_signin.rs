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
    let app = TestApp::setup(&db).roomy().start().await;
    World { db, app, acme }
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
    let id = sqlx::query_scalar("select id from documents where title = 'fixture'")
        .fetch_one(tx.conn())
        .await
        .expect("doc");
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
    assert!(refresh_cookie.contains("Path=/api/v1/auth;"), "the refresh cookie stays on /api/v1/auth: {refresh_cookie}");
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
    let page = page_cookies(&browser).client(&w.app).get("/account").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let again = browser.client(&w.app).get(page.header("location").expect("to resume")).await;
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
