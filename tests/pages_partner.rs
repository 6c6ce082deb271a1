//! The partner portal's deal and commission pages (`/programme`, `/programme/deals/{id}`), driven
//! as a browser would: a partner agent registers a deal (and is told in words what the conflict
//! check found), the channel manager approves it, the agent opens an opportunity and closes it
//! won, finance approves the commission and the agent sees it approved and downloads the
//! statement. Attacked: partner B typing A's deal URL gets a 404 page; another organisation's
//! person too; the partner agent posting the decision form on its own deal is refused (a page);
//! a channel manager settling a commission is refused; a form without its CSRF token is refused;
//! a conflicting registration never names the other partner.

mod common;

use authz::Role;
use common::{Client, TestApp, audit_count, org, partner_person, with_password};
use identity::EmailAddress;
use identity::directory::{memberships, users};
use reqwest::StatusCode;
use store::testing::TestDb;
use uuid::Uuid;

struct World {
    db: TestDb,
    app: TestApp,
    t: store::TenantId,
}

async fn staff(db: &TestDb, t: store::TenantId, email: &str, role: Role) -> Uuid {
    let mut g = db.store.global_tx().await.expect("global tx");
    let u =
        users::create(&mut g, &common::who(), &EmailAddress::parse(email).expect("email"), email).await.expect("user");
    g.commit().await.expect("commit");
    let mut tx = db.store.tenant_tx(t).await.expect("tx");
    let new = memberships::NewMembership { user_id: u.id, role, department_id: None, valid_until: None };
    memberships::add(&mut tx, &common::who(), &new).await.expect("membership");
    tx.commit().await.expect("commit");
    with_password(db, u.id).await;
    u.id
}

async fn world() -> World {
    let db = TestDb::new().await;
    let o = org(&db, "vendor").await;
    let other = org(&db, "other").await;
    with_password(&db, other.users[0]).await;
    let (pa, pb) = (o.partners[0], o.partners[1]);
    for (p, email, role) in
        [(pa, "agent@partner-a.example", Role::PartnerAgent), (pb, "bob@partner-b.example", Role::PartnerAdmin)]
    {
        let u = partner_person(&db, o.id, p, email, role).await;
        with_password(&db, u).await;
    }
    staff(&db, o.id, "fin@vendor.example", Role::Finance).await;
    staff(&db, o.id, "cm@vendor.example", Role::ChannelManager).await;
    let app = TestApp::serve(TestApp::setup(&db).roomy().state()).await;
    World { db, app, t: o.id }
}

impl World {
    async fn browser(&self, email: &str) -> Client {
        self.app.anonymous().sign_in_browser("vendor", email).await.0
    }
}

fn location(a: &common::Answer) -> String {
    a.header("location").unwrap_or_else(|| panic!("no location: {a}")).to_owned()
}

fn is_html(a: &common::Answer) -> bool {
    a.header("content-type").is_some_and(|c| c.starts_with("text/html"))
}

/// The deal id of a `/programme/deals/{id}?done=…` location.
fn deal_of(location: &str) -> String {
    location
        .strip_prefix("/programme/deals/")
        .and_then(|s| s.split('?').next())
        .unwrap_or_else(|| panic!("not a deal page: {location}"))
        .to_owned()
}

/// The ids in `action="/programme/{kind}/{id}/{verb}"` forms of a page.
fn form_ids(html: &str, kind: &str, verb: &str) -> Vec<String> {
    html.split(&format!("action=\"/programme/{kind}/"))
        .skip(1)
        .filter_map(|s| s.split_once(&format!("/{verb}\"")).map(|(id, _)| id.to_owned()))
        .filter(|id| !id.contains('"'))
        .collect()
}

/// The table row of `html` that contains `marker`.
fn row<'a>(html: &'a str, marker: &str) -> &'a str {
    let at = html.find(marker).unwrap_or_else(|| panic!("{marker} not in page: {html}"));
    let start = html[..at].rfind("<tr>").unwrap_or(0);
    let end = html[at..].find("</tr>").map_or(html.len(), |e| at + e);
    &html[start..end]
}

async fn register(c: &Client, company: &str, domain: &str) -> common::Answer {
    c.without_redirects()
        .post_form(
            "/programme/deals",
            &[
                ("customer_company", company),
                ("customer_domain", domain),
                ("amount", "20,000.00"),
                ("currency", "EUR"),
                ("expected_close", "2030-06-30"),
            ],
        )
        .await
}

#[tokio::test]
async fn the_deal_and_commission_journey_on_the_pages_with_each_party_doing_only_its_own() {
    let w = world().await;
    let agent = w.browser("agent@partner-a.example").await;
    let bob = w.browser("bob@partner-b.example").await;
    let cm = w.browser("cm@vendor.example").await;
    let finance = w.browser("fin@vendor.example").await;

    // The agent sees its own company's programme: a registration form, its fixture deal and
    // lead, never partner B's.
    let page = agent.get("/programme").await;
    assert_eq!(page.status, StatusCode::OK, "{page}");
    assert!(page.text.contains("Register a deal") && page.text.contains("Lead of Fixture One"), "{}", page.text);
    assert!(!page.text.contains("Lead of Fixture Two") && !page.text.contains("fixture-customer-1"), "{}", page.text);

    // A fresh customer: no conflict, said in words.
    let r = register(&agent, "Globex", "globex.example").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{r}");
    let deal = deal_of(&location(&r));
    let page = agent.get(&format!("/programme/deals/{deal}?done=registered")).await;
    assert_eq!(page.status, StatusCode::OK, "{page}");
    assert!(page.text.contains("No other registration for this customer was found"), "{}", page.text);
    assert!(page.text.contains("Waiting for the channel manager"), "{}", page.text);
    assert!(!page.text.contains("Approve registration"), "a partner sees no decision form");

    // Partner B's customer: a conflict, said in words, without naming B.
    let r = register(&agent, "Fixture customer", "fixture-customer-1.vendor.example").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{r}");
    let conflicting = deal_of(&location(&r));
    let page = agent.get(&format!("/programme/deals/{conflicting}")).await;
    assert!(page.text.contains("is already registered by another partner"), "{}", page.text);
    assert!(page.text.contains("Conflict: waiting for the channel manager"), "{}", page.text);
    assert!(!page.text.contains("Fixture Two") && !page.text.contains("Collides with"), "{}", page.text);
    // The channel manager sees which registration it collides with.
    let page = cm.get(&format!("/programme/deals/{conflicting}")).await;
    assert!(page.text.contains("Collides with") && page.text.contains("Approve registration"), "{}", page.text);

    // Bad input is a page that says why, nothing registered.
    let r = agent
        .post_form(
            "/programme/deals",
            &[
                ("customer_company", "Initech"),
                ("customer_domain", "initech.example"),
                ("amount", "lots"),
                ("currency", "EUR"),
                ("expected_close", "2030-06-30"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(is_html(&r) && r.text.contains("enter an amount such as 1,250.00"), "{}", r.text);

    // Partner B typing A's deal URL: a 404 page, as for a deal that does not exist.
    let r = bob.get(&format!("/programme/deals/{deal}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    assert!(is_html(&r) && r.text.contains("Page not found"), "{}", r.text);
    assert!(!r.text.contains("Globex"));
    let page = bob.get("/programme").await;
    assert!(!page.text.contains("Globex"), "{}", page.text);
    let r =
        bob.post_form(&format!("/programme/deals/{deal}/decide"), &[("decision", "approve"), ("reason", "mine")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");

    // The agent approving its own deal: refused, a page; nothing changed.
    let r = agent
        .post_form(&format!("/programme/deals/{deal}/decide"), &[("decision", "approve"), ("reason", "looks good")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    assert!(is_html(&r), "{r}");
    assert_eq!(audit_count(&w.db, w.t, "deal.approved").await, 0);

    // The channel manager: no CSRF token refused; too short a reason said; then approved.
    let r = cm
        .with_csrf(None)
        .post_form(&format!("/programme/deals/{deal}/decide"), &[("decision", "approve"), ("reason", "fine by us")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no token: {r}");
    let r =
        cm.post_form(&format!("/programme/deals/{deal}/decide"), &[("decision", "approve"), ("reason", "ok")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(r.text.contains("must be 3-2000 characters"), "{}", r.text);
    assert_eq!(audit_count(&w.db, w.t, "deal.approved").await, 0);
    let r = cm
        .without_redirects()
        .post_form(&format!("/programme/deals/{deal}/decide"), &[("decision", "approve"), ("reason", "new logo")])
        .await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, format!("/programme/deals/{deal}?done=approved")));
    let r =
        cm.post_form(&format!("/programme/deals/{deal}/decide"), &[("decision", "reject"), ("reason", "late")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "someone acted first: {r}");
    assert!(r.text.contains("someone acted on it first"), "{}", r.text);

    // The agent sees it approved, opens an opportunity and closes it won.
    let page = agent.get(&format!("/programme/deals/{deal}")).await;
    assert!(page.text.contains("Approved: the deal is protected") && page.text.contains("new logo"), "{}", page.text);
    assert!(page.text.contains("Open an opportunity"), "{}", page.text);
    let r = agent
        .without_redirects()
        .post_form(
            "/programme/opportunities",
            &[
                ("deal_id", &deal),
                ("name", "Globex rollout"),
                ("product", "fixture"),
                ("amount", "20,000.00"),
                ("expected_close", "2030-06-30"),
            ],
        )
        .await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, format!("/programme/deals/{deal}?done=opened")));
    let page = agent.get("/programme").await;
    let opportunity =
        form_ids(row(&page.text, "Globex rollout"), "opportunities", "stage").into_iter().next().expect("stage form");
    let r = agent.post_form(&format!("/programme/opportunities/{opportunity}/stage"), &[("stage", "won")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "qualified cannot jump to won: {r}");
    for stage in ["proposal", "negotiation", "won"] {
        let r = agent
            .without_redirects()
            .post_form(&format!("/programme/opportunities/{opportunity}/stage"), &[("stage", stage)])
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{stage}: {r}");
    }
    let page = agent.get("/programme").await;
    let commission_row = &page.text[page.text.find("commissions-heading").expect("commissions")..];
    let commission_row = row(commission_row, "Globex rollout");
    assert!(commission_row.contains("Calculated, waiting for finance"), "{commission_row}");
    assert!(commission_row.contains("1,000.00 EUR"), "5 % of 20,000.00: {commission_row}");
    assert!(!commission_row.contains("/settle"), "a partner settles nothing: {commission_row}");

    // Finance (who reads no opportunities: the row is known by its amount) sees the approve
    // form; the channel manager and the agent are refused.
    let page = finance.get("/programme").await;
    let fin_row = &page.text[page.text.find("commissions-heading").expect("commissions")..];
    let commission =
        form_ids(row(fin_row, "20,000.00 EUR"), "commissions", "settle").into_iter().next().expect("settle form");
    for c in [&cm, &agent] {
        let r = c.post_form(&format!("/programme/commissions/{commission}/settle"), &[("step", "approve")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
        assert!(is_html(&r), "{r}");
    }
    let r = finance
        .with_csrf(None)
        .post_form(&format!("/programme/commissions/{commission}/settle"), &[("step", "approve")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no token: {r}");
    let r = finance.post_form(&format!("/programme/commissions/{commission}/settle"), &[("step", "pay")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "not payable yet: {r}");
    assert_eq!(audit_count(&w.db, w.t, "commission.approved").await, 0);
    let r = finance
        .without_redirects()
        .post_form(&format!("/programme/commissions/{commission}/settle"), &[("step", "approve")])
        .await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/programme?done=approve".to_owned()), "{r}");
    assert_eq!(audit_count(&w.db, w.t, "commission.approved").await, 1);

    // The agent sees it approved; bob sees nothing of it, and the statement holds only the
    // caller's own rows.
    let page = agent.get("/programme").await;
    let agent_row = &page.text[page.text.find("commissions-heading").expect("commissions")..];
    assert!(row(agent_row, "Globex rollout").contains("<span class=\"chip waiting\">Approved</span>"), "{agent_row}");
    let page = bob.get("/programme").await;
    assert!(!page.text.contains("Globex rollout"), "{}", page.text);
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    let (s, h, body) = agent.get_bytes(&format!("/programme/commissions/statement?period={month}")).await;
    let csv = String::from_utf8(body).expect("utf-8");
    assert_eq!(s, StatusCode::OK, "{csv}");
    assert!(h.get("content-disposition").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("attachment")));
    assert!(csv.contains("approved") && csv.contains("Globex rollout") && csv.contains("2000000"), "{csv}");
    let (s, _, body) = bob.get_bytes(&format!("/programme/commissions/statement?period={month}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!String::from_utf8(body).expect("utf-8").contains("Globex rollout"), "B's statement holds none of A's");
}

#[tokio::test]
async fn another_organisations_deal_is_a_404_page_and_its_forms_refused() {
    let w = world().await;
    let agent = w.browser("agent@partner-a.example").await;
    let r = register(&agent, "Umbrella", "umbrella.example").await;
    let deal = deal_of(&location(&r));
    let outsider = w.app.anonymous().sign_in_browser("other", "user0@other.example").await.0;
    let r = outsider.get(&format!("/programme/deals/{deal}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    assert!(is_html(&r) && !r.text.contains("Umbrella"), "{}", r.text);
    let r = outsider
        .post_form(&format!("/programme/deals/{deal}/decide"), &[("decision", "approve"), ("reason", "not ours")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    let page = outsider.get("/programme").await;
    assert_eq!(page.status, StatusCode::OK, "{page}");
    assert!(!page.text.contains("Umbrella"), "{}", page.text);
    // A malformed id is refused as a page too, never a 5xx.
    let r = agent.get("/programme/deals/not-a-uuid").await;
    assert!(r.status.is_client_error(), "{r}");
    assert_eq!(audit_count(&w.db, w.t, "deal.approved").await, 0);
}
