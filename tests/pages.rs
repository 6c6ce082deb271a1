//! The web application's pages over HTTP (the browser-level flows are tests/browser.rs): a page
//! is another face of a guarded route, never a second way in. Each test is named after what it
//! stops: anonymous readers, cross-site forms, other organisations' URLs, forbidden actions sent
//! anyway, stale forms, script in a title. Snapshots (tests/snapshots) pin each page's markup
//! with ids, times, tokens and asset hashes redacted.

mod common;

use common::{Answer, Client, Org, TestApp, audit_count, member, org};
use identity::Role;
use reqwest::StatusCode;
use serde_json::json;
use sha2::Digest;
use store::testing::TestDb;

/// An organisation with staff (user1), HOD (user2), admin (user0), finance and MD, passwords set.
struct World {
    db: TestDb,
    app: TestApp,
    acme: Org,
    beta: Org,
}

async fn world() -> World {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    let beta = org(&db, "beta").await;
    for u in &acme.users {
        common::with_password(&db, *u).await;
    }
    member(&db, acme.id, "acme", "fin", Role::Finance, None, true).await;
    member(&db, acme.id, "acme", "md", Role::Md, None, true).await;
    let app = TestApp::setup(&db).roomy().start().await;
    World { db, app, acme, beta }
}

impl World {
    /// A browser signed in as `email` of acme (session cookies, CSRF known).
    async fn browser(&self, email: &str) -> Client {
        self.app.anonymous().sign_in_browser("acme", email).await.0
    }

    /// The fixture document of `o` (raised by its staff member, waiting for finance).
    async fn fixture_document(&self, o: &Org) -> uuid::Uuid {
        let mut tx = self.db.store.tenant_tx(o.id).await.expect("tx");
        let id: uuid::Uuid = sqlx::query_scalar("select id from documents where title = 'fixture'")
            .fetch_one(tx.conn())
            .await
            .expect("doc");
        tx.commit().await.expect("commit");
        id
    }

    async fn version(&self, id: uuid::Uuid) -> i32 {
        let mut tx = self.db.store.tenant_tx(self.acme.id).await.expect("tx");
        let v: i32 = sqlx::query_scalar("select version from documents where id = $1")
            .bind(id)
            .fetch_one(tx.conn())
            .await
            .expect("version");
        tx.commit().await.expect("commit");
        v
    }
}

/// `s` as HTML text with numeric character references (`<` → `&#60;`).
fn numeric_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' | '>' | '"' | '\'' | '&' => format!("&#{};", u32::from(c)),
            c => c.to_string(),
        })
        .collect()
}

/// `html` with its named references written as numeric ones, whichever the escaper chose.
fn numeric(html: &str) -> String {
    html.replace("&lt;", "&#60;")
        .replace("&gt;", "&#62;")
        .replace("&quot;", "&#34;")
        .replace("&#x27;", "&#39;")
        .replace("&amp;", "&#38;")
}

fn is_html(a: &Answer) -> bool {
    a.header("content-type").is_some_and(|c| c.starts_with("text/html"))
}

/// Redactions that make a page's markup the same on every run.
fn filters() -> Vec<(&'static str, &'static str)> {
    common::page_filters(&[
        // Human numbers carry the year they were raised in.
        (r"\b(PV|PO)-20\d{2}-(\d{4,})\b", "$1-[year]-$2"),
        (r#"value="\d{4}-\d{2}-\d{2}""#, r#"value="[today]""#),
    ])
}

macro_rules! snapshot {
    ($name:expr, $html:expr) => {
        insta::with_settings!({ filters => filters() }, {
            insta::assert_snapshot!($name, $html);
        })
    };
}

#[tokio::test]
async fn anonymous_readers_are_sent_to_sign_in_and_come_back_to_the_page_they_asked_for() {
    let w = world().await;
    let anon = w.app.anonymous().without_redirects();
    let doc = w.fixture_document(&w.acme).await;
    let page = format!("/documents/{doc}");
    for (path, location) in [("/", "/sign-in?next=/".to_owned()), (page.as_str(), format!("/sign-in?next={page}"))] {
        let r = anon.get(path).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.header("location"), Some(location.as_str()), "{path}");
    }
    let r = anon.get("/?view=raised&status=queried").await;
    assert_eq!(r.header("location"), Some("/sign-in?next=/%3Fview%3Draised%26status%3Dqueried"));
    // A posted form without a session goes to sign in too, never runs.
    let r =
        anon.post_form(&format!("/documents/{doc}/transitions"), &[("transition", "approve"), ("version", "1")]).await;
    assert_eq!((r.status, r.header("location")), (StatusCode::SEE_OTHER, Some("/sign-in")));

    // The sign-in page sets a CSRF cookie before any session and puts it in its form.
    let form = anon.get(&format!("/sign-in?next=%2Fdocuments%2F{doc}")).await;
    assert_eq!(form.status, StatusCode::OK);
    let set_cookie = form.header("set-cookie").expect("a CSRF cookie before any session").to_owned();
    assert!(set_cookie.contains("SameSite=Strict") && set_cookie.contains("Secure"), "{set_cookie}");
    let csrf = set_cookie.split(';').next().and_then(|c| c.strip_prefix("cs_csrf=")).expect("cs_csrf").to_owned();
    assert!(form.text.contains(&format!(r#"name="csrf_token" value="{csrf}""#)));
    assert!(form.text.contains(&format!(r#"name="next" value="/documents/{doc}""#)));
    let browser = anon.browser(&format!("cs_csrf={csrf}"), Some(&csrf));
    let fields = [
        ("organisation", "acme"),
        ("email", "user0@acme.example"),
        ("password", common::PASSWORD),
        ("next", &format!("/documents/{doc}") as &str),
    ];
    let r = browser.post_form("/sign-in", &fields).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.header("location"), Some(format!("/documents/{doc}").as_str()));
    let cookies: Vec<&str> = r.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("cs_access=") && c.contains("HttpOnly") && c.contains("SameSite=Strict"))
    );

    // Without the pre-session token (a cross-site form), nothing is signed in.
    let r = anon.post_form("/sign-in", &fields).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let set: Vec<&str> = r.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).collect();
    assert!(set.iter().all(|c| !c.starts_with("cs_access")), "no session for a form without the token: {set:?}");
    assert!(r.text.contains("This sign-in form had expired"));

    // `next` is only ever a path on this site.
    for evil in ["https%3A%2F%2Fevil.example%2F", "%2F%2Fevil.example", "%2F%5Cevil.example"] {
        let f = anon.get(&format!("/sign-in?next={evil}")).await;
        assert!(f.text.contains(r#"name="next" value="/""#), "{evil}");
    }

    // Wrong credentials: the form again, in words, with the API's status.
    let csrf_browser = anon.browser(&format!("cs_csrf={csrf}"), Some(&csrf));
    let wrong = [("organisation", "acme"), ("email", "user0@acme.example"), ("password", "not the password")];
    let r = csrf_browser.post_form("/sign-in", &wrong).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text.contains("The organisation, email or password is not right"), "{}", r.text);
    assert!(!r.text.contains("not the password"), "a password is never echoed");
}

#[tokio::test]
async fn pages_carry_the_page_policy_and_the_api_keeps_its_own() {
    let w = world().await;
    let anon = w.app.anonymous();
    let page = anon.get("/sign-in").await;
    assert_eq!(page.header("content-security-policy"), Some(web::PAGE_CSP));
    assert!(web::PAGE_CSP.contains("script-src 'self'") && !web::PAGE_CSP.contains("unsafe"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    for api in ["/api/v1/status", "/api/v1/me", "/healthz"] {
        assert_eq!(anon.get(api).await.header("content-security-policy"), Some(web::API_CSP), "{api}");
    }
    // No inline script or style anywhere in the markup; the two static files carry SRI.
    assert!(!page.text.contains("<style") && !page.text.contains(" style="));
    assert!(page.text.matches("<script").count() == 1 && page.text.contains(r#"<script src="/static/htmx-"#));
    let css = &web::assets::CSS.href;
    assert!(page.text.contains(&format!(r#"href="{css}" integrity="sha384-"#)));
    let sheet = anon.get(css).await;
    assert_eq!(sheet.status, StatusCode::OK);
    assert_eq!(sheet.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(sheet.header("cache-control"), Some("public, max-age=31536000, immutable"));
    let js = anon.get(&web::assets::HTMX.href).await;
    assert_eq!((js.status, js.text.as_bytes()), (StatusCode::OK, web::assets::HTMX_JS));
    assert!(page.text.contains(&web::assets::HTMX.integrity));
    assert_eq!(anon.get("/static/htmx.min.js").await.status, StatusCode::NOT_FOUND, "only hashed names");

    // A browser asking for a page nothing answers gets the not-found page; other clients JSON.
    let html = anon.request(reqwest::Method::GET, "/no/such/page", None, &[("accept", "text/html")]).await;
    assert_eq!((html.status, is_html(&html)), (StatusCode::NOT_FOUND, true));
    assert_eq!(html.header("content-security-policy"), Some(web::PAGE_CSP));
    let json = anon.get("/no/such/page").await;
    assert_eq!((json.status, json.code()), (StatusCode::NOT_FOUND, "not_found"));
    // The API never takes a form (a cross-site form cannot reach it).
    let admin = w.browser("user0@acme.example").await;
    let r = admin.post_form("/api/v1/auth/logout", &[]).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn a_form_post_without_the_sessions_csrf_token_changes_nothing() {
    let w = world().await;
    let doc = w.fixture_document(&w.acme).await;
    let finance = w.browser("fin@acme.example").await;
    let before = w.version(doc).await;
    let version = before.to_string();
    for token in ["", "0000000000000000000000000000000000000000000000000000000000000000"] {
        let r = finance
            .without_redirects()
            .post_form(
                &format!("/documents/{doc}/transitions"),
                &[("transition", "approve"), ("version", &version), ("csrf_token", token)],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "token {token:?}");
        assert!(is_html(&r) && r.text.contains("This form has expired"), "{}", r.text);
        assert_eq!(w.version(doc).await, before, "nothing was changed");
    }
    // The same form with the session's token goes through.
    let r = finance
        .without_redirects()
        .post_form(&format!("/documents/{doc}/transitions"), &[("transition", "approve"), ("version", &version)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.header("location"), Some(format!("/documents/{doc}?done=approve").as_str()));
    assert_eq!(w.version(doc).await, before + 1);
}

#[tokio::test]
async fn another_organisations_document_url_is_the_not_found_page_like_no_document_at_all() {
    let w = world().await;
    let theirs = w.fixture_document(&w.beta).await;
    let admin = w.browser("user0@acme.example").await;
    let strip = |a: &Answer| a.text.split("Request id").next().unwrap_or_default().to_owned();
    let foreign = admin.get(&format!("/documents/{theirs}")).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert!(is_html(&foreign) && foreign.text.contains("Page not found"), "{}", foreign.text);
    assert!(!foreign.text.contains("fixture"), "nothing of the other organisation's document");
    for other in [uuid::Uuid::now_v7().to_string(), "not-an-id".to_owned()] {
        let missing = admin.get(&format!("/documents/{other}")).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(strip(&missing), strip(&foreign), "another organisation's id looks like none");
    }
    // Acting on it is the same answer, and changes nothing there.
    let r = admin
        .post_form(
            &format!("/documents/{theirs}/transitions"),
            &[("transition", "cancel"), ("version", "1"), ("note", "mine now")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    snapshot!("not_found", strip(&foreign));
}

#[tokio::test]
async fn an_action_the_page_does_not_offer_is_still_refused_when_posted() {
    let w = world().await;
    let doc = w.fixture_document(&w.acme).await;
    // The staff member raised the fixture document: the page offers them no approval...
    let staff = w.browser("user1@acme.example").await;
    let page = staff.get(&format!("/documents/{doc}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(!page.text.contains(r#"name="transition" value="approve""#), "no approve button for the raiser");
    // ... and posting one anyway is refused by the domain, audited, and said in words.
    let version = w.version(doc).await;
    let denied_before = audit_count(&w.db, w.acme.id, "access.denied").await;
    let r = staff
        .post_form(
            &format!("/documents/{doc}/transitions"),
            &[("transition", "approve"), ("version", &version.to_string())],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(is_html(&r) && r.text.contains("You raised this document"), "{}", r.text);
    assert_eq!(w.version(doc).await, version, "nothing was changed");
    assert!(audit_count(&w.db, w.acme.id, "access.denied").await > denied_before, "the attempt is on record");
    snapshot!("forbidden", r.text.split("Request id").next().unwrap_or_default());
    // Whoever approved one level may not approve the next (the HOD approved this one)...
    let hod = w.browser("user2@acme.example").await;
    let r = hod
        .post_form(
            &format!("/documents/{doc}/transitions"),
            &[("transition", "approve"), ("version", &version.to_string())],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("You already approved this document at another level"), "{}", r.text);
    // ... and a role without the level (an administrator, at finance level) is told so.
    let admin = w.browser("user0@acme.example").await;
    let r = admin
        .post_form(
            &format!("/documents/{doc}/transitions"),
            &[("transition", "approve"), ("version", &version.to_string())],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("does not allow you to approve"), "{}", r.text);
}

#[tokio::test]
async fn a_stale_form_shows_that_someone_acted_first_and_the_document_as_it_is_now() {
    let w = world().await;
    let doc = w.fixture_document(&w.acme).await;
    let finance = w.browser("fin@acme.example").await;
    let shown = w.version(doc).await.to_string();
    let page = finance.get(&format!("/documents/{doc}")).await;
    assert!(page.text.contains(&format!(r#"name="version" value="{shown}""#)));
    assert!(page.text.contains("Approve as finance — next: MD sanction."), "no EUR threshold: the MD decides");
    let first = finance
        .post_form(&format!("/documents/{doc}/transitions"), &[("transition", "approve"), ("version", &shown)])
        .await;
    assert_eq!(first.status, StatusCode::OK, "followed to the document");
    assert!(
        first.path.ends_with("?done=approve") && first.text.contains("Approved. It has moved on"),
        "{}",
        first.path
    );
    // The same form again (a second tab, a double click): nothing applied, the page says why.
    let second = finance
        .post_form(&format!("/documents/{doc}/transitions"), &[("transition", "approve"), ("version", &shown)])
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT);
    assert!(second.text.contains("Someone acted on this first — here is what it looks like now"), "{}", second.text);
    assert!(second.text.contains("Waiting for MD"), "the current state is shown");
    assert_eq!(w.version(doc).await, shown.parse::<i32>().expect("version") + 1, "applied once");
    snapshot!("document_stale", second.text);
}

#[tokio::test]
async fn a_title_with_markup_is_shown_as_text_never_run() {
    let w = world().await;
    let staff = w.app.sign_in("acme", "user1@acme.example").await;
    let title = r#"<script>alert("x")</script><img src=x onerror=alert(1)>"#;
    let body = json!({"kind": "voucher", "department_id": w.acme.department.to_string(), "title": title,
        "document_date": "2000-03-01", "currency": "EUR", "lines": [{"description": "<b>bold</b>", "amount_minor": 1250}]});
    let created = staff.post("/api/v1/documents", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let browser = w.browser("user1@acme.example").await;
    for path in [format!("/documents/{id}"), "/?view=raised".to_owned(), "/documents".to_owned()] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text);
        assert!(!page.text.contains("<script>alert") && !page.text.contains("<img src=x"), "{path}: {}", page.text);
        assert!(numeric(&page.text).contains(&numeric_escape(title)), "{path}: the title is shown as text");
    }
    let page = browser.get(&format!("/documents/{id}")).await;
    assert!(numeric(&page.text).contains(&numeric_escape("<b>bold</b>")));
    snapshot!("document_draft", page.text);
}

#[tokio::test]
async fn the_raise_form_names_each_wrong_field_and_focuses_the_first() {
    let w = world().await;
    let staff = w.browser("user1@acme.example").await;
    let form = staff.get("/documents/new").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    snapshot!("raise_form", form.text);
    let dept = w.acme.department.to_string();
    let bad = [
        ("kind", "voucher"),
        ("title", ""),
        ("department_id", &dept as &str),
        ("currency", "EURO"),
        ("document_date", "2000-02-30"),
        ("line_description", "Taxi"),
        ("line_amount", "12,5x"),
        ("line_description", ""),
        ("line_amount", ""),
        ("submit", "1"),
    ];
    let r = staff.post_form("/documents", &bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    for words in ["Enter a title", "Enter a currency code", "Enter the document's date", "Line 1: enter the amount"] {
        assert!(numeric(&r.text).contains(&numeric_escape(words)), "{words}: {}", r.text);
    }
    assert!(r.text.contains(r#"id="title""#) && r.text.contains(r#"aria-invalid="true""#));
    let title_input = r.text.split(r#"<input id="title""#).nth(1).and_then(|s| s.split('>').next()).unwrap_or_default();
    assert!(title_input.contains("autofocus"), "the first wrong field has the focus: {title_input}");
    assert!(r.text.contains(r#"value="Taxi""#), "what was typed is kept");
    snapshot!("raise_form_errors", r.text);

    // A line of zero is refused in words under the lines.
    let zero = [
        ("kind", "voucher"),
        ("title", "Taxi"),
        ("department_id", &dept),
        ("currency", "EUR"),
        ("document_date", "2000-02-03"),
        ("line_description", "Taxi"),
        ("line_amount", "0"),
        ("submit", "1"),
    ];
    let r = staff.post_form("/documents", &zero).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("Line 1: the amount must be above zero"), "{}", r.text);
    // The domain's own rules (the API's 422 `invalid_field`) arrive under their field the same way.
    let long = "t".repeat(201);
    let too_long = [
        ("kind", "voucher"),
        ("title", &long as &str),
        ("department_id", &dept),
        ("currency", "EUR"),
        ("document_date", "2000-02-03"),
        ("line_description", "Taxi"),
        ("line_amount", "10"),
        ("submit", "1"),
    ];
    let r = staff.post_form("/documents", &too_long).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains(r#"<p class="field-error" id="title-error">Title: 1-200 characters</p>"#), "{}", r.text);

    // Right: raised and submitted, then shown.
    let good = [
        ("kind", "purchase_order"),
        ("title", "Printer toner"),
        ("department_id", &dept),
        ("currency", "eur"),
        ("document_date", "2000-02-03"),
        ("line_description", "Toner"),
        ("line_amount", "1,234.50"),
        ("line_description", "Delivery"),
        ("line_amount", "15"),
        ("submit", "1"),
    ];
    let r = staff.without_redirects().post_form("/documents", &good).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let location = r.header("location").expect("location").to_owned();
    assert!(location.ends_with("?done=submit"), "{location}");
    let page = staff.get(&location).await;
    assert!(page.text.contains("Submitted: the head of department has it now."));
    assert!(page.text.contains("1,249.50") && page.text.contains("Purchase order"), "{}", page.text);
    // The HOD finds it waiting.
    let hod = w.browser("user2@acme.example").await;
    let inbox = hod.get("/").await;
    assert!(
        inbox.text.contains("Printer toner") && inbox.text.contains("1 purchase order waits for you."),
        "{}",
        inbox.text
    );
    snapshot!("inbox_hod", inbox.text);
}

#[tokio::test]
async fn the_inbox_lists_what_waits_for_each_person_with_words_for_an_empty_list() {
    let w = world().await;
    let finance = w.browser("fin@acme.example").await;
    let inbox = finance.get("/").await;
    assert_eq!(inbox.status, StatusCode::OK);
    assert!(
        inbox.text.contains("1 payment voucher waits for you.") && inbox.text.contains("fixture"),
        "{}",
        inbox.text
    );
    assert!(inbox.text.contains(r#"<a href="/" aria-current="page">Inbox</a>"#));
    assert!(inbox.text.contains(r#"href="/periods""#), "finance may open periods");
    let raised = finance.get("/?view=raised").await;
    assert!(raised.text.contains("You have not raised any documents yet"), "{}", raised.text);
    let filtered = finance.get("/?status=paid").await;
    assert!(
        filtered.text.contains("Status: Paid") && filtered.text.contains("No documents here are"),
        "{}",
        filtered.text
    );
    let bad = finance.get("/?status=nonsense").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Staff see no periods link, and the page refuses them in words.
    let staff = w.browser("user1@acme.example").await;
    let home = staff.get("/").await;
    assert!(!home.text.contains(r#"href="/periods""#));
    assert!(home.text.contains("Documents you raised appear here when an approver asks you a question"));
    let periods = staff.get("/periods").await;
    assert_eq!(periods.status, StatusCode::FORBIDDEN);
    assert!(periods.text.contains("You may not do this"));
    let fp = finance.get("/periods").await;
    assert!(fp.status == StatusCode::OK && fp.text.contains("FY-fixture"), "{}", fp.text);
    snapshot!("inbox_finance", inbox.text);
    snapshot!("periods", fp.text);
}

#[tokio::test]
async fn signing_out_ends_the_session_the_page_was_using() {
    let w = world().await;
    let admin = w.browser("user0@acme.example").await;
    assert_eq!(admin.get("/").await.status, StatusCode::OK);
    let r = admin.without_redirects().post_form("/sign-out", &[]).await;
    assert_eq!((r.status, r.header("location")), (StatusCode::SEE_OTHER, Some("/sign-in")));
    let after = admin.without_redirects().get("/").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER, "the session is gone");
    let page = w.app.anonymous().get("/sign-in").await;
    snapshot!("sign_in", page.text);
}

#[tokio::test]
async fn the_security_page_lists_every_control_with_its_tests_and_live_figures() {
    let w = world().await;
    let page = w.app.anonymous().get("/security").await;
    assert_eq!(page.status, StatusCode::OK);
    let m = web::security::matrix(&w.app.state).await.expect("matrix");
    assert!(page.text.contains(&format!("<code>{}</code>", m.commit)));
    for c in &m.controls {
        assert!(page.text.contains(&format!(r#"<tr id="{}">"#, c.id)), "{}", c.id);
        for t in &c.tests {
            assert!(page.text.contains(&format!("<code>{t}</code>")), "{}: {t}", c.id);
        }
    }
    assert!(page.text.contains("Cross-tenant attempts refused today"));
    let head = page.text.split("<table").next().unwrap_or_default().to_owned();
    insta::with_settings!({ filters => [filters(), vec![
        (r"<code>[0-9a-f]{7,40}</code>|<code>unknown</code>", "<code>[commit]</code>"),
        (r#"<dd class="num">\d+</dd>"#, r#"<dd class="num">[n]</dd>"#),
        (r"\d{1,2} [A-Z][a-z]{2} \d{4}", "[day]"),
        (r"\(version [^)]+\)", "(version [v])"),
        (r"none since this server started|\[moment\]", "[last checkpoint]"),
        (r"controls</h2>", "controls</h2>"),
        (r"The seed pages' \d+ controls", "The seed pages' [n] controls"),
        (r"</span> \d+</li>", "</span> [n]</li>"),
    ]].concat() }, {
        insta::assert_snapshot!("security_head", head);
    });
}

/// The vendored htmx is the pinned npm package's file, byte for byte: with `node_modules` present
/// the two files are compared; always, the pin in `package-lock.json` (version and the tarball's
/// sha512) must be the one recorded beside the copy, and the copy must hash to the recorded value.
#[test]
fn the_vendored_htmx_is_the_pinned_package() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("package-lock.json")).expect("package-lock.json"))
            .expect("lock JSON");
    let pinned = &lock["packages"]["node_modules/htmx.org"];
    let pin = std::fs::read_to_string(root.join("crates/web/src/ui/static/htmx.min.js.pin")).expect("the pin file");
    let field = |name: &str| {
        pin.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("pin: {name}"))
            .trim()
            .to_owned()
    };
    assert_eq!(pinned["version"].as_str(), Some(field("version").as_str()), "package-lock.json pins another htmx");
    assert_eq!(pinned["version"].as_str(), Some(web::assets::HTMX_VERSION));
    assert_eq!(pinned["integrity"].as_str(), Some(field("tarball").as_str()), "package-lock.json pins another tarball");
    let file = format!(
        "sha512-{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sha2::Sha512::digest(web::assets::HTMX_JS))
    );
    assert_eq!(file, field("file"), "the vendored htmx.min.js was changed");
    let installed = root.join("node_modules/htmx.org/dist/htmx.min.js");
    if installed.exists() {
        assert_eq!(
            std::fs::read(installed).expect("installed htmx"),
            web::assets::HTMX_JS,
            "vendored copy differs from node_modules"
        );
    }
}

/// A browser on the sign-in page: the pre-session CSRF cookie it was given, as a client.
async fn at_sign_in(app: &TestApp) -> Client {
    let anon = app.anonymous().without_redirects();
    let form = anon.get("/sign-in").await;
    let cookie = form.header("set-cookie").and_then(|c| c.split(';').next()).expect("cs_csrf").to_owned();
    let csrf = cookie.strip_prefix("cs_csrf=").expect("cs_csrf").to_owned();
    anon.browser(&cookie, Some(&csrf))
}

fn credentials<'a>(email: &'a str, password: &'a str) -> [(&'a str, &'a str); 3] {
    [("organisation", "acme"), ("email", email), ("password", password)]
}

fn hidden(html: &str, name: &str) -> String {
    html.split(&format!(r#"name="{name}" value=""#))
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        .to_owned()
}

#[tokio::test]
async fn an_account_with_an_authenticator_signs_in_in_two_steps_and_a_wrong_code_is_said_so() {
    let w = world().await;
    // user0 enrols TOTP through the API.
    let api = w.app.sign_in("acme", "user0@acme.example").await;
    let e = api.post("/api/v1/me/mfa/totp", json!({})).await;
    let totp = totp_rs::TOTP::from_url(e.body["otpauth_uri"].as_str().expect("uri")).expect("totp");
    let now = u64::try_from(chrono::Utc::now().timestamp()).expect("time");
    if 30 - now % 30 < 5 {
        tokio::time::sleep(std::time::Duration::from_secs(30 - now % 30 + 1)).await;
    }
    let now = u64::try_from(chrono::Utc::now().timestamp()).expect("time");
    let confirmed = api.post("/api/v1/me/mfa/totp/confirm", json!({"code": totp.generate(now)})).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{confirmed}");
    let recovery = confirmed.body["recovery_codes"][0].as_str().expect("a recovery code").to_owned();

    let browser = at_sign_in(&w.app).await;
    let mut fields = credentials("user0@acme.example", common::PASSWORD).to_vec();
    fields.push(("next", "/periods"));
    let step = browser.post_form("/sign-in", &fields).await;
    assert_eq!(step.status, StatusCode::OK, "{}", step.text);
    assert!(
        step.text.contains("Code from your authenticator app") && step.text.contains("Use a recovery code instead")
    );
    assert!(
        step.headers.get_all("set-cookie").iter().all(|c| !c.to_str().unwrap_or_default().starts_with("cs_access")),
        "no session yet"
    );
    let token = hidden(&step.text, "mfa_token");
    snapshot!("second_factor", step.text.replace(&token, "[mfa token]"));

    let wrong = browser
        .post_form(
            "/sign-in/second-factor",
            &[("mfa_token", &token), ("method", "totp"), ("code", "000000"), ("next", "/periods")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text.contains("That code is wrong, expired or already used"), "{}", wrong.text);
    assert_eq!(hidden(&wrong.text, "mfa_token"), token, "the same challenge, to try again");

    let done = browser
        .post_form(
            "/sign-in/second-factor",
            &[("mfa_token", &token), ("method", "recovery_code"), ("code", &recovery), ("next", "/periods")],
        )
        .await;
    assert_eq!((done.status, done.header("location")), (StatusCode::SEE_OTHER, Some("/periods")), "{}", done.text);
    assert!(
        done.headers.get_all("set-cookie").iter().any(|c| c.to_str().unwrap_or_default().starts_with("cs_access="))
    );
    // The challenge is spent.
    let again = browser
        .post_form("/sign-in/second-factor", &[("mfa_token", &token), ("method", "recovery_code"), ("code", &recovery)])
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert!(again.text.contains("Please sign in again"), "{}", again.text);
}

#[tokio::test]
async fn refused_sign_ins_say_why_and_when_to_try_again() {
    let w = world().await;
    // A locked account: five wrong passwords, then even the right one waits, and the page says so.
    let browser = at_sign_in(&w.app).await;
    let mut locked = None;
    for _ in 0..8 {
        let r = browser.post_form("/sign-in", &credentials("user1@acme.example", "wrong password 1")).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            locked = Some(r);
            break;
        }
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }
    let locked = locked.expect("the account locks");
    assert!(locked.text.contains("Too many failed sign-ins for this account: it is locked for"), "{}", locked.text);
    assert!(locked.header("retry-after").is_some());

    // The network: an organisation that admits only its office refuses this address, in words
    // (beta's list, which no request has read yet, so no node has it cached).
    let mut admin = w.db.admin_conn().await;
    sqlx::query("delete from tenant_ip_allowlist where tenant_id = $1")
        .bind(w.beta.id.as_uuid())
        .execute(&mut admin)
        .await
        .expect("clear");
    sqlx::query("insert into tenant_ip_allowlist (tenant_id, id, cidr, note, created_by) values ($1, gen_random_uuid(), '203.0.113.0/24', 'office', 'test')")
        .bind(w.beta.id.as_uuid())
        .execute(&mut admin)
        .await
        .expect("office only");
    let outside = [("organisation", "beta"), ("email", "user0@beta.example"), ("password", "any password at all")];
    let r = browser.post_form("/sign-in", &outside).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("Your network address is not allowed for this organisation"), "{}", r.text);

    // The per-address budget of the sign-in routes: past it, a page saying when to come back.
    let limits = web::limits::Limits { login: "2/15m".parse().expect("limit"), ..web::limits::Limits::default() };
    let tight = TestApp::setup(&w.db).limits(limits).start().await;
    let browser = at_sign_in(&tight).await;
    let mut last = None;
    for _ in 0..3 {
        last = Some(browser.post_form("/sign-in", &credentials("user0@acme.example", "wrong password 2")).await);
    }
    let r = last.expect("answers");
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert!(is_html(&r) && r.text.contains("Too many attempts") && r.text.contains("Try again in"), "{}", r.text);
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn a_query_goes_back_to_the_raiser_and_the_answer_returns_it_with_both_in_the_discussion() {
    let w = world().await;
    let staff = w.browser("user1@acme.example").await;
    let dept = w.acme.department.to_string();
    let raise = [
        ("kind", "voucher"),
        ("title", "Client dinner"),
        ("department_id", &dept as &str),
        ("currency", "EUR"),
        ("document_date", "2000-04-04"),
        ("line_description", "Dinner for four"),
        ("line_amount", "212.40"),
        ("submit", "1"),
    ];
    let r = staff.without_redirects().post_form("/documents", &raise).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let page = r.header("location").expect("location").split('?').next().expect("path").to_owned();
    let transitions = format!("{page}/transitions");

    let hod = w.browser("user2@acme.example").await;
    let shown = hod.get(&page).await;
    assert!(
        shown.text.contains("Ask the raiser a question")
            && shown.text.contains("Approve as head of department — next: finance review.")
    );
    let version = hidden(&shown.text, "version");
    let asked = hod
        .post_form(
            &transitions,
            &[("transition", "query"), ("version", &version), ("note", "Which client was this for?")],
        )
        .await;
    assert!(
        asked.path.ends_with("?done=query") && asked.text.contains("Your question was sent to the raiser."),
        "{}",
        asked.text
    );

    // The raiser finds it waiting, with the question.
    let inbox = staff.get("/").await;
    assert!(
        inbox.text.contains("Client dinner") && inbox.text.contains("1 payment voucher waits for you."),
        "{}",
        inbox.text
    );
    let theirs = staff.get(&page).await;
    assert!(theirs.text.contains("Which client was this for?"), "{}", theirs.text);
    assert!(
        numeric(&theirs.text).contains(&numeric_escape("queried: waiting for the raiser's answer")),
        "{}",
        theirs.text
    );
    let version = hidden(&theirs.text, "version");
    // An empty answer is refused under its own field, nothing changed.
    let empty = staff.post_form(&transitions, &[("transition", "answer"), ("version", &version), ("note", "")]).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        empty.text.contains(r#"id="note-answer-error">Write your answer: at least 3 characters</p>"#),
        "{}",
        empty.text
    );
    let answered = staff
        .post_form(
            &transitions,
            &[("transition", "answer"), ("version", &version), ("note", "Northwind, the Q2 renewal")],
        )
        .await;
    assert!(answered.text.contains("Your answer was sent"), "{}", answered.text);
    assert!(answered.text.contains("Waiting for head of department"));
    let discussion = answered.text.split("Discussion").nth(1).unwrap_or_default();
    let (q, a) = (discussion.find("Which client was this for?"), discussion.find("Northwind, the Q2 renewal"));
    assert!(q.is_some() && a.is_some() && q < a, "question, then answer: {discussion}");
    assert!(discussion.contains("asked") && discussion.contains("answered"));
}

#[tokio::test]
async fn long_lists_page_with_a_next_link_that_keeps_the_filter() {
    let w = world().await;
    let api = w.app.sign_in("acme", "user1@acme.example").await;
    for i in 0..27 {
        let body = json!({"kind": "voucher", "department_id": w.acme.department.to_string(), "title": format!("Taxi {i:02}"),
            "document_date": "2000-05-05", "currency": "EUR", "lines": [{"description": "Taxi", "amount_minor": 1000 + i}]});
        assert_eq!(api.post("/api/v1/documents", body).await.status, StatusCode::CREATED);
    }
    let staff = w.browser("user1@acme.example").await;
    let first = staff.get("/?view=raised&status=draft").await;
    assert_eq!(first.text.matches("<tr>").count() - 1, 25, "a page of 25 rows (and the header)");
    let next = first
        .text
        .split(r#"<p class="pager"><a href=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a next link")
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    assert!(next.starts_with("/?view=raised&status=draft&cursor="), "{next}");
    let second = staff.get(&next).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert_eq!(second.text.matches("<tr>").count() - 1, 2, "the rest");
    assert!(!second.text.contains(r#"rel="next""#), "the last page has no next link");
    assert!(first.text.contains("Taxi 26") && second.text.contains("Taxi 00"), "newest first");
}

#[tokio::test]
async fn the_members_page_is_behind_the_same_organisation_guard_as_the_api() {
    let w = world().await;
    let admin = w.browser("user0@acme.example").await;
    let page = admin.get("/members").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    for who in ["User 0", "user1@acme.example", "Head of department", "Operations"] {
        assert!(page.text.contains(who), "{who}: {}", page.text);
    }
    assert!(!page.text.contains("beta.example"), "only this organisation's members");
    assert!(page.text.contains(r#"<a href="/members" aria-current="page">Members</a>"#));
    snapshot!("members", page.text);
    // Staff: no link, and the guard refuses the page before it runs, audited like the API's.
    let staff = w.browser("user1@acme.example").await;
    assert!(!staff.get("/").await.text.contains(r#"href="/members""#));
    let denied_before = audit_count(&w.db, w.acme.id, "access.denied").await;
    let r = staff.get("/members").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(is_html(&r) && r.text.contains("You may not do this"), "{}", r.text);
    assert!(audit_count(&w.db, w.acme.id, "access.denied").await > denied_before);
}

#[tokio::test]
async fn an_organisation_that_requires_a_second_factor_gets_the_mailed_code_step() {
    use identity::signin::secret_box::SecretBox;
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    common::with_password(&db, acme.users[1]).await;
    let mut admin = db.admin_conn().await;
    sqlx::query("update tenants set require_mfa = true where id = $1")
        .bind(acme.id.as_uuid())
        .execute(&mut admin)
        .await
        .expect("require");
    let app = TestApp::setup(&db).roomy().mfa_keys(SecretBox::new(&[5; 32], &[])).start().await;

    let browser = at_sign_in(&app).await;
    let step = browser.post_form("/sign-in", &credentials("user1@acme.example", common::PASSWORD)).await;
    assert_eq!(step.status, StatusCode::OK, "{}", step.text);
    assert!(
        step.text.contains("We have emailed you a code") && !step.text.contains("authenticator app"),
        "{}",
        step.text
    );
    let token = hidden(&step.text, "mfa_token");
    // The code goes out in the background; the operator's view of the outbox opens it.
    let started = std::time::Instant::now();
    let to = identity::EmailAddress::parse("user1@acme.example").expect("email");
    let code = loop {
        let mut g = db.store.global_tx().await.expect("global");
        let rows = identity::signin::mail::outbox(&mut g, &SecretBox::new(&[5; 32], &[]), Some(&to), 10)
            .await
            .expect("outbox");
        g.commit().await.expect("commit");
        if let Some(m) = rows.first() {
            let start = m.body.find(": ").expect("a code in the mail") + 2;
            break m.body[start..start + 8].to_owned();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "no mail");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let done = browser
        .post_form("/sign-in/second-factor", &[("mfa_token", &token), ("method", "email_code"), ("code", &code)])
        .await;
    // Signed in, and — the organisation requiring a second factor, the member having no app —
    // sent to set one up first (tests/pages_signin.rs walks the setup).
    assert_eq!(
        (done.status, done.header("location")),
        (StatusCode::SEE_OTHER, Some("/account/authenticator?next=/")),
        "{}",
        done.text
    );
    assert!(
        done.headers.get_all("set-cookie").iter().any(|c| c.to_str().unwrap_or_default().starts_with("cs_access="))
    );
}
