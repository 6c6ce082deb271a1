//! The partner portal's deal and commission pages (`/programme`, `/programme/deals/{id}`), driven
//! as a browser would: a partner agent registers a deal (and is told in words what the conflict
//! check found), the channel manager approves it, the agent opens an opportunity and closes it
//! won, finance approves the commission and the agent sees it approved and downloads the
//! statement. Attacked: partner B typing A's deal URL gets a 404 page; another organisation's
//! person too; the partner agent posting the decision form on its own deal is refused (a page);
//! a channel manager settling a commission is refused; a form without its CSRF token is refused;
//! a conflicting registration never names the other partner. Disputes: the partner disputes its
//! commission with a reason, finance resolves it with a corrected amount; partner B disputing A's,
//! a channel manager or the closer resolving, and bad input (the page again, what was typed kept)
//! are refused. Invitations: vendor staff and a partner's administrator invite from the page; a
//! partner administrator naming another partner or an administrator role is refused; an agent
//! sees no form and is refused; the invited person joins their company and sees only its rows.

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
    pa: Uuid,
    pb: Uuid,
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
    with_password(&db, o.users[0]).await;
    World { db, app, t: o.id, pa, pb }
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

/// The commissions section of a page.
fn commissions_section(html: &str) -> &str {
    &html[html.find("commissions-heading").expect("commissions section")..]
}

#[tokio::test]
async fn a_partner_disputes_its_commission_on_the_page_and_finance_resolves_it_with_a_corrected_amount() {
    let w = world().await;
    let agent = w.browser("agent@partner-a.example").await;
    let bob = w.browser("bob@partner-b.example").await;
    let cm = w.browser("cm@vendor.example").await;
    let finance = w.browser("fin@vendor.example").await;
    let closer = w.browser("user0@vendor.example").await;

    // The agent's own fixture commission carries a dispute form; finance's page shows none.
    let page = agent.get("/programme").await;
    let own = row(commissions_section(&page.text), "Fixture opportunity").to_owned();
    let commission = form_ids(&own, "commissions", "dispute").into_iter().next().expect("dispute form");
    assert!(own.contains("Why do you dispute it?"), "{own}");
    let page = finance.get("/programme").await;
    assert!(form_ids(&page.text, "commissions", "dispute").is_empty(), "finance disputes nothing");

    // Too short a reason: the page again, the words under the field, what was typed kept.
    let r = agent.post_form(&format!("/programme/commissions/{commission}/dispute"), &[("reason", "no")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(is_html(&r) && r.text.contains("Say why in 3 to 2,000 characters"), "{}", r.text);
    assert!(r.text.contains(">no</textarea>") && r.text.contains("aria-invalid=\"true\""), "{}", r.text);
    // Partner B disputing A's commission: a 404, as one that does not exist.
    let r = bob
        .post_form(&format!("/programme/commissions/{commission}/dispute"), &[("reason", "not ours to dispute")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    // No CSRF token: refused.
    let r = agent
        .with_csrf(None)
        .post_form(&format!("/programme/commissions/{commission}/dispute"), &[("reason", "the rate is wrong")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    assert_eq!(audit_count(&w.db, w.t, "commission.disputed").await, 0);

    let r = agent
        .without_redirects()
        .post_form(
            &format!("/programme/commissions/{commission}/dispute"),
            &[("reason", "Gold tier applies since May")],
        )
        .await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/programme?done=disputed".to_owned()), "{r}");
    assert_eq!(audit_count(&w.db, w.t, "commission.disputed").await, 1);
    let page = agent.get("/programme?done=disputed").await;
    assert!(page.text.contains("Your dispute is recorded"), "{}", page.text);
    let own = row(commissions_section(&page.text), "Fixture opportunity").to_owned();
    assert!(own.contains("Disputed") && own.contains("Gold tier applies since May"), "{own}");
    assert!(!own.contains("/dispute\""), "disputed once: {own}");
    let page = bob.get("/programme").await;
    assert!(!page.text.contains("Gold tier applies since May"), "{}", page.text);

    // The channel manager sees no resolve form and is refused; so is the closer (the admin who
    // closed the fixture's opportunity), whatever their role.
    let page = cm.get("/programme").await;
    assert!(form_ids(&page.text, "commissions", "resolve").is_empty(), "{}", page.text);
    let page = closer.get("/programme").await;
    assert!(!form_ids(&page.text, "commissions", "resolve").contains(&commission), "the closer resolves nothing");
    for c in [&cm, &closer, &agent] {
        let r = c
            .post_form(&format!("/programme/commissions/{commission}/resolve"), &[("resolution", "settled as is")])
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
        assert!(is_html(&r), "{r}");
    }

    // Finance: bad input is the page again with the words and what was typed.
    let page = finance.get("/programme").await;
    assert!(form_ids(&page.text, "commissions", "resolve").contains(&commission), "{}", page.text);
    let r = finance
        .post_form(
            &format!("/programme/commissions/{commission}/resolve"),
            &[("resolution", "ok"), ("amount", "60.00")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(r.text.contains("Say how it was settled in 3 to 2,000 characters"), "{}", r.text);
    assert!(r.text.contains("value=\"60.00\""), "the amount typed is kept: {}", r.text);
    let r = finance
        .post_form(
            &format!("/programme/commissions/{commission}/resolve"),
            &[("resolution", "Gold tier confirmed"), ("amount", "sixty")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(r.text.contains("Enter the corrected amount in EUR"), "{}", r.text);
    assert!(r.text.contains(">Gold tier confirmed</textarea>"), "the text typed is kept: {}", r.text);
    assert_eq!(audit_count(&w.db, w.t, "commission.resolved").await, 0);

    let r = finance
        .without_redirects()
        .post_form(
            &format!("/programme/commissions/{commission}/resolve"),
            &[("resolution", "Gold tier confirmed"), ("amount", "60.00")],
        )
        .await;
    assert_eq!((r.status, location(&r)), (StatusCode::SEE_OTHER, "/programme?done=resolved".to_owned()), "{r}");
    assert_eq!(audit_count(&w.db, w.t, "commission.resolved").await, 1);
    let page = agent.get("/programme").await;
    let own = row(commissions_section(&page.text), "Fixture opportunity").to_owned();
    assert!(own.contains("Calculated, waiting for finance") && own.contains("60.00 EUR"), "{own}");
    assert!(own.contains("Resolved: Gold tier confirmed"), "{own}");
    // Resolved once: a second resolve is a conflict said in words.
    let r = finance
        .post_form(&format!("/programme/commissions/{commission}/resolve"), &[("resolution", "again, later")])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r}");
    assert!(r.text.contains("someone acted on it first"), "{}", r.text);
}

#[tokio::test]
async fn partner_people_are_invited_from_the_programme_page_and_join_only_their_own_company() {
    let w = world().await;
    let cm = w.browser("cm@vendor.example").await;
    let bob = w.browser("bob@partner-b.example").await;
    let agent = w.browser("agent@partner-a.example").await;

    // The channel manager may invite into either partner, as an agent or an administrator; the
    // partner administrator only into their own company, agents only; an agent sees no form.
    let page = cm.get("/programme").await;
    assert!(page.text.contains("Invite a partner person"), "{}", page.text);
    assert!(page.text.contains(&w.pa.to_string()) && page.text.contains(&w.pb.to_string()));
    assert!(page.text.contains("value=\"partner_admin\""), "{}", page.text);
    let page = bob.get("/programme").await;
    let form = &page.text[page.text.find("invite-heading").expect("bob's invite form")..];
    assert!(form.contains(&w.pb.to_string()) && !form.contains(&w.pa.to_string()), "{form}");
    assert!(!form.contains("value=\"partner_admin\""), "{form}");
    let page = agent.get("/programme").await;
    assert!(!page.text.contains("invite-heading"), "{}", page.text);

    // Bad input: the page again, the words under the field, what was typed kept.
    let pb = w.pb.to_string();
    let r = cm
        .post_form(
            "/programme/invitations",
            &[("partner_id", &pb), ("email", "not an address"), ("role", "partner_agent")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(r.text.contains("Enter an email address") && r.text.contains("value=\"not an address\""), "{}", r.text);
    // Bob naming partner A: the 404 page; naming an administrator: refused with words.
    let pa = w.pa.to_string();
    let r = bob
        .post_form(
            "/programme/invitations",
            &[("partner_id", &pa), ("email", "x@partner-a.example"), ("role", "partner_agent")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    assert!(is_html(&r), "{r}");
    let r = bob
        .post_form(
            "/programme/invitations",
            &[("partner_id", &pb), ("email", "boss@partner-b.example"), ("role", "partner_admin")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    assert!(r.text.contains("A partner administrator invites agents only"), "{}", r.text);
    let r = agent
        .post_form(
            "/programme/invitations",
            &[("partner_id", &pa), ("email", "pal@partner-a.example"), ("role", "partner_agent")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    assert_eq!(audit_count(&w.db, w.t, "invitation.created").await, 0);

    // Bob invites an agent of his own: the code is shown once; accepted, the person sees B only.
    let r = bob
        .post_form(
            "/programme/invitations",
            &[("partner_id", &pb), ("email", "new.agent@partner-b.example"), ("role", "partner_agent")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert!(r.text.contains("new.agent@partner-b.example as"), "{}", r.text);
    let token = r.text.split("<code id=\"invitation-token\">").nth(1).and_then(|s| s.split('<').next()).expect("token");
    assert_eq!(audit_count(&w.db, w.t, "invitation.created").await, 1);
    let done = w
        .app
        .anonymous()
        .post("/api/v1/invitations/accept", serde_json::json!({"token": token, "password": common::PASSWORD}))
        .await;
    assert_eq!((done.status, done.body["role"].as_str()), (StatusCode::OK, Some("partner_agent")), "{done}");
    let newcomer = w.browser("new.agent@partner-b.example").await;
    let page = newcomer.get("/programme").await;
    assert_eq!(page.status, StatusCode::OK, "{page}");
    assert!(page.text.contains("Lead of Fixture Two") && !page.text.contains("Lead of Fixture One"), "{}", page.text);
}

/// A browser holding only the CSRF cookie a first visit sets (someone opening an invitation link).
async fn visitor(app: &TestApp) -> Client {
    let r = app.anonymous().without_redirects().get("/sign-in").await;
    let csrf = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.split(';').next().and_then(|p| p.strip_prefix("cs_csrf=")).map(str::to_owned))
        .expect("a csrf cookie");
    app.anonymous().without_redirects().browser(&format!("cs_csrf={csrf}"), Some(&csrf))
}

#[tokio::test]
async fn an_invitation_into_a_partner_suspended_since_is_a_readable_refusal_on_the_accept_page() {
    let w = world().await;
    let cm = w.app.sign_in("vendor", "cm@vendor.example").await;
    let r = cm
        .post(
            &format!("/api/v1/programme/partners/{}/invitations", w.pb),
            serde_json::json!({"email": "late@partner-b.example", "role": "partner_agent"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    let token = r.body["token"].as_str().expect("token").to_owned();
    let s = cm.patch(&format!("/api/v1/programme/partners/{}", w.pb), serde_json::json!({"status": "suspended"})).await;
    assert_eq!(s.status, StatusCode::OK, "{s}");
    let c = visitor(&w.app).await;
    let r = c
        .post_form(
            "/invitations/accept",
            &[("token", &token), ("name", "Late Agent"), ("password", "a long enough passphrase")],
        )
        .await;
    assert_eq!(r.status, StatusCode::GONE, "{r}");
    assert!(is_html(&r), "{r}");
    assert!(
        r.text
            .contains("This invitation cannot be used: it is for a partner company that is suspended in the programme"),
        "{}",
        r.text
    );
    assert_eq!(audit_count(&w.db, w.t, "invitation.accept_refused").await, 1);
}

#[tokio::test]
async fn the_programme_page_lists_partner_invitations_to_those_who_invite_and_revokes_only_ones_own() {
    let w = world().await;
    let cm_api = w.app.sign_in("vendor", "cm@vendor.example").await;
    let invite = |p: Uuid, email: &'static str, role: &'static str| {
        let c = cm_api.clone();
        async move {
            let r = c
                .post(
                    &format!("/api/v1/programme/partners/{p}/invitations"),
                    serde_json::json!({"email": email, "role": role}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{r}");
            r.body["id"].as_str().expect("id").to_owned()
        }
    };
    let a_inv = invite(w.pa, "invited@partner-a.example", "partner_agent").await;
    let b_inv = invite(w.pb, "invited@partner-b.example", "partner_agent").await;
    let b_boss = invite(w.pb, "boss@partner-b.example", "partner_admin").await;
    let cm = w.browser("cm@vendor.example").await;
    let bob = w.browser("bob@partner-b.example").await;
    let agent = w.browser("agent@partner-a.example").await;

    // The channel manager sees every partner's; Bob, B's administrator, B's only, with a revoke
    // button for the agent's invitation and none for the administrator's; the agent no section.
    let page = cm.get("/programme").await;
    assert!(page.text.contains("partner-invitations-heading"), "{}", page.text);
    assert!(page.text.contains("invited@partner-a.example") && page.text.contains("invited@partner-b.example"));
    let page = bob.get("/programme").await;
    let section = &page.text[page.text.find("partner-invitations-heading").expect("bob's list")..];
    assert!(
        section.contains("invited@partner-b.example") && !section.contains("invited@partner-a.example"),
        "{section}"
    );
    assert_eq!(
        form_ids(section, &format!("partners/{}/invitations", w.pb), "revoke"),
        std::slice::from_ref(&b_inv),
        "{section}"
    );
    assert!(row(section, "boss@partner-b.example").contains("Waiting to be accepted"));
    let page = agent.get("/programme").await;
    assert!(!page.text.contains("partner-invitations-heading"), "{}", page.text);

    // Bob revoking A's invitation (by A's path or under B's): the 404 page, nothing revoked; the
    // administrator's invitation: refused in words; his agent's: revoked, back to the page.
    for path in [
        format!("/programme/partners/{}/invitations/{a_inv}/revoke", w.pa),
        format!("/programme/partners/{}/invitations/{a_inv}/revoke", w.pb),
    ] {
        let r = bob.without_redirects().post_form(&path, &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {r}");
        assert!(is_html(&r), "{r}");
    }
    let r = bob.post_form(&format!("/programme/partners/{}/invitations/{b_boss}/revoke", w.pb), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    assert!(r.text.contains("a partner administrator revokes invitations of agents only"), "{}", r.text);
    let r = agent.post_form(&format!("/programme/partners/{}/invitations/{a_inv}/revoke", w.pa), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    assert_eq!(audit_count(&w.db, w.t, "invitation.revoked").await, 0);
    let r = bob
        .without_redirects()
        .post_form(&format!("/programme/partners/{}/invitations/{b_inv}/revoke", w.pb), &[])
        .await;
    assert_eq!(location(&r), "/programme?done=revoked", "{r}");
    let page = bob.get("/programme?done=revoked").await;
    assert!(page.text.contains("The invitation is revoked"), "{}", page.text);
    assert!(row(&page.text, "invited@partner-b.example").contains("Revoked"), "{}", page.text);
    assert_eq!(audit_count(&w.db, w.t, "invitation.revoked").await, 1);
    let page = cm.get("/programme").await;
    assert!(row(&page.text, "invited@partner-a.example").contains("Waiting to be accepted"), "{}", page.text);
}
