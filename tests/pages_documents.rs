//! The documents side of the web application over HTTP: editing a draft or queried document,
//! the inbox's filters, keyset pages and bulk approval with one confirmation, a document's
//! timeline and audit trail (and its CSV), and the periods page's open / close / reopen. Each
//! test is named after what it stops: another person's edit, a stale form, a bad filter turned
//! into a 500, a bulk approval that approves what was not confirmed, a reopen without the MD.

mod common;

use common::{Client, Org, TestApp, audit_count, member, org};
use identity::Role;
use reqwest::StatusCode;
use serde_json::json;
use store::testing::TestDb;

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
    async fn browser(&self, email: &str) -> Client {
        self.app.anonymous().sign_in_browser("acme", email).await.0
    }

    /// Staff raise a document through the API (dated in the fixture's open period 2000);
    /// `submit` sends it to the HOD. Returns its id.
    async fn raise(&self, api: &Client, kind: &str, title: &str, amount_minor: i64, submit: bool) -> String {
        let body = json!({"kind": kind, "department_id": self.acme.department.to_string(), "title": title,
            "document_date": "2000-03-01", "currency": "EUR", "lines": [{"description": "Item", "amount_minor": amount_minor}]});
        let created = api.post("/api/v1/documents", body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let id = created.body["id"].as_str().expect("id").to_owned();
        if submit {
            let r = api
                .post(&format!("/api/v1/documents/{id}/transitions"), json!({"transition": "submit", "version": 1}))
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
        id
    }

    async fn version(&self, id: &str) -> i32 {
        let mut tx = self.db.store.tenant_tx(self.acme.id).await.expect("tx");
        let v: i32 = sqlx::query_scalar("select version from documents where id = $1::uuid")
            .bind(id)
            .fetch_one(tx.conn())
            .await
            .expect("version");
        tx.commit().await.expect("commit");
        v
    }

    async fn fixture_document(&self, o: &Org) -> uuid::Uuid {
        let mut tx = self.db.store.tenant_tx(o.id).await.expect("tx");
        let id: uuid::Uuid = sqlx::query_scalar("select id from documents where title = 'fixture'")
            .fetch_one(tx.conn())
            .await
            .expect("doc");
        tx.commit().await.expect("commit");
        id
    }
}

/// The edit form sent with one line.
async fn save(c: &Client, path: &str, dept: &str, title: &str, amount: &str, version: i32) -> common::Answer {
    let version = version.to_string();
    let fields = [
        ("version", version.as_str()),
        ("title", title),
        ("department_id", dept),
        ("currency", "EUR"),
        ("document_date", "2000-03-02"),
        ("line_description", "Taxi"),
        ("line_amount", amount),
        ("save", "1"),
    ];
    c.post_form(path, &fields).await
}

fn hidden(html: &str, name: &str) -> String {
    html.split(&format!(r#"name="{name}" value=""#))
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        .to_owned()
}

/// `html` with its named references written as numeric ones.
fn numeric(html: &str) -> String {
    html.replace("&#x27;", "&#39;").replace("&quot;", "&#34;").replace("&amp;", "&#38;")
}

fn filters() -> Vec<(&'static str, &'static str)> {
    common::page_filters(&[(r"\b(PV|PO)-20\d{2}-(\d{4,})\b", "$1-[year]-$2")])
}

macro_rules! snapshot {
    ($name:expr, $html:expr) => {
        insta::with_settings!({ filters => filters() }, {
            insta::assert_snapshot!($name, $html);
        })
    };
}

#[tokio::test]
async fn only_the_raiser_edits_a_draft_and_a_stale_or_submitted_form_is_told_not_crashed() {
    let w = world().await;
    let api = w.app.sign_in("acme", "user1@acme.example").await;
    let id = w.raise(&api, "voucher", "Taxi to the airport", 4550, false).await;
    let page = format!("/documents/{id}");
    let edit = format!("/documents/{id}/edit");
    let staff = w.browser("user1@acme.example").await;
    let shown = staff.get(&page).await;
    assert!(shown.text.contains(&format!(r#"href="{edit}""#)), "the raiser is offered Edit: {}", shown.text);

    // The form is the raise form, filled from the document.
    let form = staff.get(&edit).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert!(form.text.contains(r#"value="Taxi to the airport""#) && form.text.contains(r#"value="45.50""#));
    assert!(form.text.contains(r#"name="version" value="1""#) && form.text.contains(r#"value="2000-03-01""#));
    snapshot!("document_edit", form.text);

    // Someone else (an administrator reads every document): no Edit link, the form and the
    // save refused, the attempt audited, nothing changed.
    let dept = w.acme.department.to_string();
    let admin = w.browser("user0@acme.example").await;
    assert!(!admin.get(&page).await.text.contains(&edit));
    assert_eq!(admin.get(&edit).await.status, StatusCode::FORBIDDEN);
    let denied_before = audit_count(&w.db, w.acme.id, "access.denied").await;
    let r = save(&admin, &edit, &dept, "Hijacked", "1", 1).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(w.version(&id).await, 1, "nothing changed");
    assert_eq!(audit_count(&w.db, w.acme.id, "access.denied").await, denied_before + 1, "the attempt is audited");

    // A wrong amount: the form again, the field named, what was typed kept, nothing saved.
    let r = save(&staff, &edit, &dept, "Taxi, both ways", "12,5x", 1).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("Line 1: enter the amount as a number"), "{}", r.text);
    assert!(r.text.contains(r#"value="Taxi, both ways""#) && r.text.contains(r#"value="12,5x""#));
    assert_eq!(w.version(&id).await, 1);

    // Someone changed it meanwhile (the API, another tab): told so, what was typed kept.
    let patched = api.patch(&format!("/api/v1/documents/{id}"), json!({"title": "Taxi (API)", "version": 1})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let r = save(&staff, &edit, &dept, "Taxi, both ways", "91.00", 1).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.text.contains("Someone changed this document while you were editing it"), "{}", r.text);
    assert!(r.text.contains(r#"value="Taxi, both ways""#) && r.text.contains(r#"name="version" value="2""#));
    assert_eq!(w.version(&id).await, 2, "the stale form saved nothing");

    // Saved with the version it now shows.
    let r = save(&staff, &edit, &dept, "Taxi, both ways", "91.00", 2).await;
    assert!(r.path.ends_with("?done=edited") && r.text.contains("Your changes were saved."), "{}", r.text);
    assert!(r.text.contains("Taxi, both ways") && r.text.contains("91.00"));
    assert!(r.text.split("Timeline").nth(1).is_some_and(|t| t.contains("Edited")), "the timeline has the edit");

    // Submitted: the form is refused in words, and a save sent anyway changes nothing.
    let v = w.version(&id).await;
    let sub =
        api.post(&format!("/api/v1/documents/{id}/transitions"), json!({"transition": "submit", "version": v})).await;
    assert_eq!(sub.status, StatusCode::OK);
    let r = staff.get(&edit).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.text.contains("This document can no longer be edited"), "{}", r.text);
    assert!(!staff.get(&page).await.text.contains(&edit), "no Edit link once submitted");
    let v = w.version(&id).await;
    let r = save(&staff, &edit, &dept, "Too late", "1", v).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(
        numeric(&r.text).contains("only drafts, and documents an approver has queried, can be edited"),
        "{}",
        r.text
    );
    assert_eq!(w.version(&id).await, v);

    // Another organisation's document: the not-found page, for the form and the save.
    let theirs = w.fixture_document(&w.beta).await;
    assert_eq!(staff.get(&format!("/documents/{theirs}/edit")).await.status, StatusCode::NOT_FOUND);
    let r = staff.post_form(&format!("/documents/{theirs}/edit"), &[("version", "1"), ("title", "x")]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_queried_document_is_edited_by_its_raiser_then_answered() {
    let w = world().await;
    let api = w.app.sign_in("acme", "user1@acme.example").await;
    let id = w.raise(&api, "voucher", "Team lunch", 12000, true).await;
    let hod_api = w.app.sign_in("acme", "user2@acme.example").await;
    let q = hod_api
        .post(
            &format!("/api/v1/documents/{id}/transitions"),
            json!({"transition": "query", "version": 2, "note": "Only 100 allowed"}),
        )
        .await;
    assert_eq!(q.status, StatusCode::OK, "{}", q.body);
    let staff = w.browser("user1@acme.example").await;
    let form = staff.get(&format!("/documents/{id}/edit")).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert!(form.text.contains("An approver asked a question"));
    let dept = w.acme.department.to_string();
    let r = staff
        .post_form(
            &format!("/documents/{id}/edit"),
            &[
                ("version", "3"),
                ("title", "Team lunch"),
                ("department_id", &dept),
                ("currency", "EUR"),
                ("document_date", "2000-03-01"),
                ("line_description", "Lunch"),
                ("line_amount", "100.00"),
                ("save", "1"),
            ],
        )
        .await;
    assert!(r.path.ends_with("?done=edited"), "{}", r.text);
    assert!(r.text.contains("100.00") && r.text.contains("Queried"), "still queried, to be answered: {}", r.text);
    let version = hidden(&r.text, "version");
    let answered = staff
        .post_form(
            &format!("/documents/{id}/transitions"),
            &[("transition", "answer"), ("version", &version), ("note", "Cut to 100")],
        )
        .await;
    assert!(answered.text.contains("Your answer was sent"), "{}", answered.text);
    // The timeline tells it in order, with the level each step was taken at.
    let timeline = answered.text.split("Timeline").nth(1).unwrap_or_default();
    let order = [
        "Raised as a draft",
        "Submitted for approval",
        "Asked the raiser a question",
        "Edited",
        "Answered the question",
    ];
    let at: Vec<usize> = order.iter().map(|s| timeline.find(s).unwrap_or_else(|| panic!("{s}: {timeline}"))).collect();
    assert!(at.windows(2).all(|p| p[0] < p[1]), "{timeline}");
    assert!(timeline.contains("Head of department") && timeline.contains("Only 100 allowed"));
    assert!(!timeline.contains("IP address"), "addresses only for readers of the audit");
}

#[tokio::test]
async fn the_timeline_shows_addresses_to_auditors_and_the_trail_downloads_as_csv_for_this_organisation_only() {
    let w = world().await;
    let api = w.app.sign_in("acme", "user1@acme.example").await;
    let id = w.raise(&api, "purchase_order", "Printer toner", 9900, true).await;
    let admin = w.browser("user0@acme.example").await;
    let page = admin.get(&format!("/documents/{id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let timeline = page.text.split(r#"id="timeline-heading""#).nth(1).unwrap_or_default();
    assert!(timeline.contains("IP address") && timeline.contains("<code>127.0.0.1</code>"), "{timeline}");
    let trail = page.text.split(r#"id="trail-heading""#).nth(1).expect("an audit trail for an admin");
    assert!(trail.contains("purchase_order.submitted") && trail.contains("purchase_order.created"), "{trail}");
    assert!(trail.contains(&format!(r#"href="/documents/{id}/audit.csv""#)));

    let csv = admin.get(&format!("/documents/{id}/audit.csv")).await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.text);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert!(csv.header("content-disposition").is_some_and(|d| d.starts_with("attachment; filename=\"audit-PO-")));
    let mut lines = csv.text.lines();
    assert!(lines.next().is_some_and(|h| h.starts_with("chain,seq,occurred_at")));
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() >= 2 && rows.iter().all(|r| r.contains(&id)), "only this document's events: {rows:?}");
    assert!(rows.iter().any(|r| r.contains("purchase_order.submitted")));
    assert_eq!(audit_count(&w.db, w.acme.id, "audit.exported").await, 1, "the download is audited");

    // Staff read the document and its timeline, not the audit: no trail, no addresses, no CSV.
    let staff = w.browser("user1@acme.example").await;
    let theirs = staff.get(&format!("/documents/{id}")).await;
    assert!(theirs.text.contains("Timeline") && !theirs.text.contains("trail-heading"));
    assert!(!theirs.text.contains("127.0.0.1"));
    assert_eq!(staff.get(&format!("/documents/{id}/audit.csv")).await.status, StatusCode::FORBIDDEN);
    // Another organisation's document id: the not-found page, nothing exported.
    let foreign = w.fixture_document(&w.beta).await;
    let r = admin.get(&format!("/documents/{foreign}/audit.csv")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!r.text.contains("chain,seq"));
}

#[tokio::test]
async fn inbox_filters_are_a_bookmarkable_get_and_bad_values_are_a_readable_422_never_a_500() {
    let w = world().await;
    let api = w.app.sign_in("acme", "user1@acme.example").await;
    w.raise(&api, "voucher", "Small voucher", 1000, true).await;
    w.raise(&api, "voucher", "Large voucher", 250_000, true).await;
    w.raise(&api, "purchase_order", "Chairs order", 50_000, true).await;
    let hod = w.browser("user2@acme.example").await;
    let inbox = hod.get("/").await;
    assert!(inbox.text.contains("Payment vouchers: <strong>2</strong>"), "{}", inbox.text);
    assert!(inbox.text.contains("Purchase orders: <strong>1</strong>"));

    let orders = hod.get("/?kind=purchase_order").await;
    assert_eq!(orders.status, StatusCode::OK);
    assert!(orders.text.contains("Chairs order") && !orders.text.contains("Small voucher"));
    assert!(orders.text.contains("Kind: Purchase order"), "the filter is a removable chip");
    let big = hod.get("/?min=100&currency=eur").await;
    assert!(
        big.text.contains("Large voucher") && big.text.contains("Chairs order") && !big.text.contains("Small voucher")
    );
    let range = hod.get("/?min=100&max=1%2C000.00&currency=EUR&from=2000-01-01&to=2000-12-31").await;
    assert_eq!(range.status, StatusCode::OK);
    assert!(range.text.contains("Chairs order") && !range.text.contains("Large voucher"), "{}", range.text);
    let dept = w.acme.department.to_string();
    let by_dept = hod.get(&format!("/documents?department={dept}&kind=voucher")).await;
    assert!(by_dept.text.contains("Large voucher") && !by_dept.text.contains("Chairs order"));
    let none = hod.get("/?from=2001-01-01").await;
    assert!(none.text.contains("No documents here are in this selection"), "{}", none.text);
    snapshot!("inbox_filtered", range.text);

    // Bad values: a 422 page naming the field, what was typed kept, no rows.
    for (query, words) in [
        ("/?min=abc&currency=EUR", "Enter an amount as a number"),
        ("/?from=2026-13-45", "Enter a real date"),
        ("/?min=10", "Amounts are in one currency"),
        ("/?kind=cheque", "Choose payment voucher or purchase order"),
        ("/documents?department=nope", "Choose a department from the list"),
        ("/?currency=EURO", "Enter a currency code"),
        ("/?from=2000-05-01&to=2000-04-01", "The last day must not be before the first day"),
        ("/?min=500&max=100&currency=EUR", "The largest amount must not be below the smallest"),
    ] {
        let r = hod.get(query).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {}", r.text);
        assert!(r.text.contains(words), "{query}: {}", r.text);
        assert!(r.text.contains(r#"aria-invalid="true""#) && r.text.contains("autofocus"), "{query}");
        assert!(!r.text.contains("Small voucher"), "{query}: no rows under a refused filter");
    }
    let r = hod.get("/?from=2026-13-45").await;
    assert!(r.text.contains(r#"value="2026-13-45""#), "what was typed is kept");
}

#[tokio::test]
async fn keyset_pages_go_forward_and_back_with_the_filter_kept() {
    let w = world().await;
    let api = w.app.sign_in("acme", "user1@acme.example").await;
    for i in 0..52 {
        w.raise(&api, "voucher", &format!("Taxi {i:02}"), 1000 + i, false).await;
    }
    let staff = w.browser("user1@acme.example").await;
    let link = |html: &str, rel: &str| {
        html.split(&format!(r#"rel="{rel}""#))
            .next()
            .and_then(|s| s.rsplit(r#"href=""#).next())
            .and_then(|s| s.split('"').next())
            .map(|s| s.replace("&amp;", "&").replace("&#38;", "&"))
            .filter(|_| html.contains(&format!(r#"rel="{rel}""#)))
    };
    let first = staff.get("/?view=raised&kind=voucher").await;
    assert!(first.text.contains("Taxi 51") && link(&first.text, "prev").is_none());
    let second = staff.get(&link(&first.text, "next").expect("next")).await;
    assert!(second.text.contains("Taxi 26") && !second.text.contains("Taxi 51"), "{}", second.text);
    let third = staff.get(&link(&second.text, "next").expect("next")).await;
    assert!(third.text.contains("Taxi 00") && link(&third.text, "next").is_none());
    let prev = link(&third.text, "prev").expect("prev");
    assert!(prev.contains("view=raised") && prev.contains("kind=voucher"), "{prev}");
    let back = staff.get(&prev).await;
    assert!(back.text.contains("Taxi 26") && !back.text.contains("Taxi 51") && !back.text.contains("Taxi 00"));
    let front = staff.get(&link(&back.text, "prev").expect("prev")).await;
    assert!(front.text.contains("Taxi 51") && link(&front.text, "prev").is_none());
}

#[tokio::test]
async fn bulk_approval_confirms_first_and_a_stale_document_is_named_while_nothing_is_approved() {
    let w = world().await;
    let api = w.app.sign_in("acme", "user1@acme.example").await;
    let a = w.raise(&api, "voucher", "Alpha", 1000, true).await;
    let b = w.raise(&api, "voucher", "Bravo", 2000, true).await;
    let c = w.raise(&api, "purchase_order", "Charlie", 3000, true).await;
    let hod = w.browser("user2@acme.example").await;
    let inbox = hod.get("/").await;
    for id in [&a, &b, &c] {
        assert!(inbox.text.contains(&format!(r#"name="document" value="{id}:2""#)), "{}", inbox.text);
    }
    let all = [("document", format!("{a}:2")), ("document", format!("{b}:2")), ("document", format!("{c}:2"))];
    let pairs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let confirm = hod.post_form("/documents/bulk-approve", &pairs).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text);
    assert!(
        confirm.text.contains("Approve 3 documents?")
            && confirm.text.contains("Charlie")
            && confirm.text.contains("30.00")
    );
    assert_eq!((w.version(&a).await, w.version(&b).await), (2, 2), "a confirmation page approves nothing");
    snapshot!("bulk_confirm", confirm.text);

    // Someone approves Bravo first: nothing in the batch is approved, Bravo is named, and the
    // other two are offered again.
    let hod_api = w.app.sign_in("acme", "user2@acme.example").await;
    let r = hod_api
        .post(&format!("/api/v1/documents/{b}/transitions"), json!({"transition": "approve", "version": 2}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let result = hod.post_form("/documents/bulk-approve/confirm", &pairs).await;
    assert_eq!(result.status, StatusCode::CONFLICT, "{}", result.text);
    assert!(
        result.text.contains("Nothing was approved") && result.text.contains("someone acted on it first"),
        "{}",
        result.text
    );
    assert!(result.text.contains("Changed since your list was shown"));
    assert_eq!((w.version(&a).await, w.version(&c).await), (2, 2), "all or nothing");
    assert!(result.text.contains("Approve 2 documents"));
    let again: Vec<String> = result
        .text
        .split(r#"<input type="hidden" name="document" value=""#)
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_owned))
        .collect();
    assert_eq!(again.len(), 2, "{again:?}");
    let pairs: Vec<(&str, &str)> = again.iter().map(|v| ("document", v.as_str())).collect();
    let done = hod.post_form("/documents/bulk-approve/confirm", &pairs).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert!(done.text.contains("2 documents approved") && done.text.contains("Alpha") && done.text.contains("Charlie"));
    assert_eq!((w.version(&a).await, w.version(&c).await), (3, 3));

    // Nothing selected; a forged row; someone who may not approve.
    let r = hod.post_form("/documents/bulk-approve", &[]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("Nothing was selected"));
    let r = hod.post_form("/documents/bulk-approve/confirm", &[("document", "not-a-row")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let d = w.raise(&api, "voucher", "Delta", 4000, true).await;
    let staff = w.browser("user1@acme.example").await;
    let before = audit_count(&w.db, w.acme.id, "access.denied").await;
    let value = format!("{d}:2");
    let r = staff.post_form("/documents/bulk-approve/confirm", &[("document", &value)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("it is not yours to approve"));
    assert_eq!(w.version(&d).await, 2);
    assert!(audit_count(&w.db, w.acme.id, "access.denied").await > before, "the refusal is audited");
    // Another organisation's document in a batch: nothing approved.
    let foreign = w.fixture_document(&w.beta).await;
    let mixed = [("document", format!("{d}:2")), ("document", format!("{foreign}:1"))];
    let pairs: Vec<(&str, &str)> = mixed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = hod.post_form("/documents/bulk-approve/confirm", &pairs).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("Not a document you can see"));
    assert_eq!(w.version(&d).await, 2);
}

#[tokio::test]
async fn periods_are_opened_and_closed_by_finance_and_reopened_only_by_the_md_with_a_reason() {
    let w = world().await;
    let finance = w.browser("fin@acme.example").await;
    let page = finance.get("/periods").await;
    assert!(page.text.contains("Open a period") && page.text.contains("Close FY-fixture"), "{}", page.text);
    assert!(!page.text.contains("Reopen"));
    let bad = finance
        .post_form("/periods", &[("name", "2001"), ("starts_on", "2001-13-01"), ("ends_on", "2001-12-31")])
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains("Enter a real date") && bad.text.contains(r#"value="2001-13-01""#));
    let inverted = finance
        .post_form("/periods", &[("name", "2001"), ("starts_on", "2001-12-01"), ("ends_on", "2001-01-31")])
        .await;
    assert_eq!(inverted.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(inverted.text.contains("The last day must not be before the first day"), "{}", inverted.text);
    let overlap = finance
        .post_form("/periods", &[("name", "Overlap"), ("starts_on", "2000-06-01"), ("ends_on", "2001-05-31")])
        .await;
    assert_eq!(overlap.status, StatusCode::CONFLICT);
    assert!(
        overlap.text.contains("Nothing was opened") && overlap.text.contains("overlaps fiscal period FY-fixture"),
        "{}",
        overlap.text
    );
    let opened = finance
        .post_form("/periods", &[("name", "FY-2001"), ("starts_on", "2001-01-01"), ("ends_on", "2001-12-31")])
        .await;
    assert!(opened.path.ends_with("?done=opened") && opened.text.contains("FY-2001"), "{}", opened.text);

    let id = hidden_action(&opened.text, "FY-fixture");
    let closed = finance.post_form(&format!("/periods/{id}/close"), &[("reason", "Year-end sign-off")]).await;
    assert!(closed.path.ends_with("?done=closed"), "{}", closed.text);
    assert!(closed.text.contains("The period is closed"));
    snapshot!("periods_finance", closed.text);
    let again = finance.post_form(&format!("/periods/{id}/close"), &[]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "already closed: {}", again.text);
    // Finance may not reopen: said in words, audited.
    let before = audit_count(&w.db, w.acme.id, "access.denied").await;
    let r = finance.post_form(&format!("/periods/{id}/reopen"), &[("reason", "Missed an invoice")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains("Only the MD can reopen a closed period"), "{}", r.text);
    assert_eq!(audit_count(&w.db, w.acme.id, "access.denied").await, before + 1);
    // Staff may not open one.
    let staff = w.browser("user1@acme.example").await;
    let r = staff.post_form("/periods", &[("name", "x"), ("starts_on", "2002-01-01"), ("ends_on", "2002-12-31")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The MD reopens it, and only with a reason.
    let md = w.browser("md@acme.example").await;
    let page = md.get("/periods").await;
    assert!(
        page.text.contains("Reopen FY-fixture")
            && !page.text.contains("Open a period")
            && !page.text.contains("Close FY")
    );
    let r = md.post_form(&format!("/periods/{id}/reopen"), &[("reason", "")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("Say why it must reopen") && r.text.contains("autofocus"), "{}", r.text);
    let r = md.post_form(&format!("/periods/{id}/reopen"), &[("reason", "A late invoice from March")]).await;
    assert!(r.path.ends_with("?done=reopened"), "{}", r.text);
    assert_eq!(audit_count(&w.db, w.acme.id, "fiscal_period.reopened").await, 1);
}

/// The id in the close or reopen form of period `name` on the periods page.
fn hidden_action(html: &str, name: &str) -> String {
    let row = html.split("<tr>").find(|r| r.contains(&format!("<td>{name}</td>"))).expect("the period's row");
    row.split(r#"action="/periods/"#).nth(1).and_then(|s| s.split('/').next()).expect("a form").to_owned()
}
