//! The administration and account pages over HTTP (members, audit, my account): another face of
//! the organisation-level routes, never a second way in. Each test is named after what it stops
//! or proves: anonymous readers, roles without the right, other organisations' ids, cross-site
//! forms, destructive actions without a reason, script in a member's name; and that each action
//! really happened and is on record. Snapshots (tests/snapshots) pin each page's markup with ids,
//! times, tokens and asset hashes redacted.

mod common;

use common::{Answer, Client, Org, TestApp, audit_count, member, org};
use identity::Role;
use reqwest::StatusCode;
use store::testing::TestDb;
use uuid::Uuid;

/// acme: admin (user0), staff (user1), HOD (user2), an auditor and a pending joiner; beta.
struct World {
    db: TestDb,
    app: TestApp,
    acme: Org,
    beta: Org,
    joiner: Uuid,
}

async fn world() -> World {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    let beta = org(&db, "beta").await;
    for u in &acme.users {
        common::with_password(&db, *u).await;
    }
    member(&db, acme.id, "acme", "auditor", Role::Auditor, None, true).await;
    let joiner = member(&db, acme.id, "acme", "joiner", Role::Staff, None, false).await;
    let mut tx = db.store.tenant_tx(acme.id).await.expect("tx");
    sqlx::query("update memberships set status = 'pending' where user_id = $1")
        .bind(joiner)
        .execute(tx.conn())
        .await
        .expect("pending");
    tx.commit().await.expect("commit");
    let keys = identity::signin::secret_box::SecretBox::new(&[5; 32], &[]);
    let app = TestApp::setup(&db).roomy().mfa_keys(keys).start().await;
    World { db, app, acme, beta, joiner }
}

impl World {
    /// A browser signed in as `email` of acme (session cookies, CSRF known).
    async fn browser(&self, email: &str) -> Client {
        self.app.anonymous().sign_in_browser("acme", email).await.0
    }

    fn staff(&self) -> Uuid {
        self.acme.users[1]
    }

    /// `user`'s role and status in `o`, read in the database under its RLS.
    async fn membership(&self, o: &Org, user: Uuid) -> (String, String) {
        let mut tx = self.db.store.tenant_tx(o.id).await.expect("tx");
        let row: (String, String) = sqlx::query_as("select role, status from memberships where user_id = $1")
            .bind(user)
            .fetch_one(tx.conn())
            .await
            .expect("membership");
        tx.commit().await.expect("commit");
        row
    }

    async fn audited(&self, action: &str) -> i64 {
        audit_count(&self.db, self.acme.id, action).await
    }
}

fn is_html(a: &Answer) -> bool {
    a.header("content-type").is_some_and(|c| c.starts_with("text/html"))
}

/// `html` with its named references written as numeric ones, whichever the escaper chose.
fn numeric(html: &str) -> String {
    html.replace("&lt;", "&#60;")
        .replace("&gt;", "&#62;")
        .replace("&quot;", "&#34;")
        .replace("&#x27;", "&#39;")
        .replace("&amp;", "&#38;")
}

/// Redactions that make a page's markup the same on every run.
fn filters() -> Vec<(&'static str, &'static str)> {
    common::page_filters(&[
        (r#"<code id="invitation-token">[^<]+</code>"#, r#"<code id="invitation-token">[token]</code>"#),
        (r"<td>(127\.0\.0\.1|::1)</td>", "<td>[ip]</td>"),
        (r"<td>reqwest[^<]*</td>", "<td>[agent]</td>"),
        (r"\?cursor=[A-Za-z0-9.\-]+", "?cursor=[cursor]"),
        (r"<td class=.num.>\d+</td>", r#"<td class="num">[seq]</td>"#),
        (r"up to event \d+", "up to event [seq]"),
        (r"data:image/svg\+xml;base64,[A-Za-z0-9+/=]+", "data:image/svg+xml;base64,[qr]"),
        (r"<code>[A-Z2-7]{32}</code>", "<code>[secret]</code>"),
        (r"<li><code>[^<]+</code></li>", "<li><code>[recovery code]</code></li>"),
        (r"csk_[0-9a-f]{32}_[0-9a-f]{32}(_[0-9a-f]{64})?", "csk_[key]"),
        (r"<dd>Event \d+", "<dd>Event [seq]"),
    ])
}

macro_rules! snapshot {
    ($name:expr, $html:expr) => {
        insta::with_settings!({ filters => filters() }, {
            insta::assert_snapshot!($name, $html);
        })
    };
}

fn before_request_id(a: &Answer) -> String {
    a.text.split("Request id").next().unwrap_or_default().to_owned()
}

// --- Members ----------------------------------------------------------------------------------

#[tokio::test]
async fn anonymous_readers_of_the_members_pages_are_sent_to_sign_in() {
    let w = world().await;
    let anon = w.app.anonymous().without_redirects();
    let one = format!("/members/{}", w.staff());
    for (path, location) in
        [("/members", "/sign-in?next=/members".to_owned()), (one.as_str(), format!("/sign-in?next={one}"))]
    {
        let r = anon.get(path).await;
        assert_eq!((r.status, r.header("location")), (StatusCode::SEE_OTHER, Some(location.as_str())), "{path}");
    }
    let r = anon.get("/audit?action=membership.role_changed").await;
    assert_eq!(r.header("location"), Some("/sign-in?next=/audit%3Faction%3Dmembership.role_changed"));
    let r = anon.post_form(&format!("{one}/role"), &[("role", "hod"), ("reason", "promotion")]).await;
    assert_eq!((r.status, r.header("location")), (StatusCode::SEE_OTHER, Some("/sign-in")));
    assert_eq!(w.membership(&w.acme, w.staff()).await.0, "staff", "nothing changed");
}

#[tokio::test]
async fn staff_get_the_forbidden_page_and_no_members_entry_in_the_navigation() {
    let w = world().await;
    let staff = w.browser("user1@acme.example").await;
    let home = staff.get("/").await;
    assert!(!home.text.contains(r#"href="/members""#), "staff are not offered the members page");
    let denied_before = w.audited("access.denied").await;
    assert!(!home.text.contains(r#"href="/audit""#), "nor the audit trail");
    assert!(
        !home.text.contains(r#"href="/settings/api-keys""#) && !home.text.contains(r#"href="/settings""#),
        "nor settings"
    );
    for path in [
        "/members".to_owned(),
        format!("/members/{}", w.acme.users[2]),
        "/audit".to_owned(),
        "/settings/api-keys".to_owned(),
        "/settings".to_owned(),
    ] {
        let r = staff.get(&path).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert!(is_html(&r) && r.text.contains("You may not do this"), "{path}: {}", r.text);
        assert!(r.text.contains("Your role does not allow this."), "{path}");
    }
    // Posting an administrator's form anyway changes nothing and is on record.
    let r = staff
        .post_form(&format!("/members/{}/role", w.acme.users[2]), &[("role", "staff"), ("reason", "mine now")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(w.membership(&w.acme, w.acme.users[2]).await.0, "hod");
    assert!(w.audited("access.denied").await > denied_before, "the attempts are audited");
    // Admins and auditors see the entry; auditors read without the forms.
    let admin = w.browser("user0@acme.example").await;
    assert!(admin.get("/").await.text.contains(r#"<a href="/members">Members</a>"#));
    let auditor = w.browser("auditor@acme.example").await;
    let page = auditor.get("/members").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("User 1") && !page.text.contains("Invite someone"), "read only: {}", page.text);
    assert!(!page.text.contains("Waiting for approval</h2>"), "auditors do not approve joiners");
    snapshot!("members_auditor", page.text);
}

#[tokio::test]
async fn another_organisations_member_is_the_not_found_page_and_stays_untouched() {
    let w = world().await;
    let admin = w.browser("user0@acme.example").await;
    let theirs = w.beta.users[1];
    let r = admin.get(&format!("/members/{theirs}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(is_html(&r) && r.text.contains("Page not found") && !r.text.contains("User 1"), "{}", r.text);
    let none = admin.get(&format!("/members/{}", Uuid::now_v7())).await;
    assert_eq!(before_request_id(&none), before_request_id(&r), "another organisation's id looks like none");
    for (action, fields) in [
        ("role", vec![("role", "admin"), ("reason", "take over")]),
        ("deactivate", vec![("reason", "take over")]),
        ("sessions/revoke", vec![("reason", "take over")]),
        ("unlock", vec![]),
        ("approve", vec![]),
    ] {
        let r = admin.post_form(&format!("/members/{theirs}/{action}"), &fields).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{action}: {}", r.text);
    }
    assert_eq!(w.membership(&w.beta, theirs).await, ("staff".to_owned(), "active".to_owned()));
}

#[tokio::test]
async fn a_members_form_without_the_sessions_csrf_token_changes_nothing() {
    let w = world().await;
    let admin = w.browser("user0@acme.example").await;
    let path = format!("/members/{}/role", w.staff());
    for token in ["", "0000000000000000000000000000000000000000000000000000000000000000"] {
        let r = admin.post_form(&path, &[("role", "hod"), ("reason", "promotion"), ("csrf_token", token)]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{token:?}");
        assert!(is_html(&r) && r.text.contains("This form has expired"), "{}", r.text);
    }
    let r = admin.post_form("/members/sign-out-everyone", &[("reason", "incident"), ("csrf_token", "")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(w.membership(&w.acme, w.staff()).await.0, "staff");
    assert_eq!(admin.get("/members").await.status, StatusCode::OK, "nobody was signed out");
}

#[tokio::test]
async fn changing_a_role_is_applied_audited_and_ends_the_members_open_sessions() {
    let w = world().await;
    let staff = w.browser("user1@acme.example").await;
    assert_eq!(staff.get("/").await.status, StatusCode::OK);
    let admin = w.browser("user0@acme.example").await;
    let before = w.audited("membership.role_changed").await;
    let page = admin.get(&format!("/members/{}", w.staff())).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("Sign User 1 out everywhere"), "their session is listed with a way to end it");
    let r = admin
        .without_redirects()
        .post_form(
            &format!("/members/{}/role", w.staff()),
            &[("role", "hod"), ("reason", "Promoted to run Operations")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.header("location"), Some(format!("/members/{}?done=role", w.staff()).as_str()));
    assert_eq!(w.membership(&w.acme, w.staff()).await.0, "hod");
    assert_eq!(w.audited("membership.role_changed").await, before + 1);
    // The JSON API sees the same.
    let api = w.app.sign_in("acme", "user0@acme.example").await;
    let list = api.get("/api/v1/members").await;
    let row = list.body["items"].as_array().expect("items").iter().find(|m| m["user_id"] == w.staff().to_string());
    assert_eq!(row.map(|m| m["role"].clone()), Some(serde_json::json!("hod")));
    // The member's open page is signed out on its next request.
    // (It tries to resume the session first; the role change revoked it, so: sign in.)
    let next = staff.without_redirects().get("/").await;
    assert_eq!((next.status, next.header("location")), (StatusCode::SEE_OTHER, Some("/api/v1/auth/resume?next=/")));
    let resumed = staff.without_redirects().get("/api/v1/auth/resume?next=/").await;
    assert_eq!((resumed.status, resumed.header("location")), (StatusCode::SEE_OTHER, Some("/sign-in?next=/")));
    let done = admin.get(&format!("/members/{}?done=role", w.staff())).await;
    assert!(done.text.contains("Role changed.") && done.text.contains("Head of department"), "{}", done.text);
    snapshot!("member", done.text);
}

#[tokio::test]
async fn destructive_actions_without_a_reason_are_refused_under_their_field() {
    let w = world().await;
    let admin = w.browser("user0@acme.example").await;
    let staff = w.staff();
    let cases = [
        (format!("/members/{staff}/role"), vec![("role", "hod"), ("reason", " ")], "role-reason"),
        (format!("/members/{staff}/deactivate"), vec![("reason", "no")], "status-reason"),
        (format!("/members/{staff}/sessions/revoke"), vec![], "sessions-reason"),
        (format!("/members/{}/decline", w.joiner), vec![("reason", "")], "decline-reason-"),
        ("/members/sign-out-everyone".to_owned(), vec![("reason", "x")], "everyone-reason"),
    ];
    for (path, fields, field) in cases {
        let r = admin.post_form(&path, &fields).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {}", r.text);
        assert!(r.text.contains("Give a reason of 3 to 200 characters"), "{path}: {}", r.text);
        let textarea = r.text.split(&format!(r#"<textarea id="{field}"#)).nth(1).and_then(|s| s.split('>').next());
        let textarea = textarea.unwrap_or_else(|| panic!("{path}: no {field} field"));
        assert!(textarea.contains(r#"aria-invalid="true""#) && textarea.contains("autofocus"), "{path}: {textarea}");
    }
    assert_eq!(w.membership(&w.acme, staff).await, ("staff".to_owned(), "active".to_owned()));
    assert_eq!(w.membership(&w.acme, w.joiner).await.1, "pending");
    assert_eq!(admin.get("/members").await.status, StatusCode::OK, "nobody was signed out");
    // A refusal of the domain (the last administrator) is said in words under the role.
    let r = admin
        .post_form(&format!("/members/{}/role", w.acme.users[0]), &[("role", "staff"), ("reason", "stepping down")])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.text.contains("last active administrator"), "{}", r.text);
    snapshot!("member_errors", r.text);
}

#[tokio::test]
async fn deactivating_reactivating_unlocking_and_ending_sessions_happen_and_are_on_record() {
    let w = world().await;
    let staff_browser = w.browser("user1@acme.example").await;
    let admin = w.browser("user0@acme.example").await;
    let staff = w.staff();
    let r = admin.post_form(&format!("/members/{staff}/sessions/revoke"), &[("reason", "lost laptop")]).await;
    assert!(r.status == StatusCode::OK && r.text.contains("Their sessions were ended"), "{}", r.text);
    assert_eq!(w.audited("session.revoked_for_user").await, 1);
    assert_eq!(staff_browser.without_redirects().get("/").await.status, StatusCode::SEE_OTHER);

    let r = admin.post_form(&format!("/members/{staff}/deactivate"), &[("reason", "left the company")]).await;
    assert!(r.status == StatusCode::OK && r.text.contains("Deactivated"), "{}", r.text);
    assert_eq!(w.membership(&w.acme, staff).await.1, "suspended");
    assert_eq!(w.audited("membership.deactivated").await, 1);
    let login = w.app.anonymous().login("acme", "user1@acme.example", common::PASSWORD).await;
    assert!(login.status.is_client_error(), "a deactivated member cannot sign in: {}", login.status);

    let r = admin.post_form(&format!("/members/{staff}/reactivate"), &[("reason", "came back")]).await;
    assert!(r.status == StatusCode::OK && r.text.contains("Reactivated"), "{}", r.text);
    assert_eq!(w.membership(&w.acme, staff).await.1, "active");
    assert_eq!(w.audited("membership.reactivated").await, 1);

    let r = admin.post_form(&format!("/members/{staff}/unlock"), &[]).await;
    assert!(r.status == StatusCode::OK && r.text.contains("Unlocked"), "{}", r.text);
    assert_eq!(w.audited("member.unlocked").await, 1);
}

#[tokio::test]
async fn an_admin_approves_and_declines_joiners_and_invites_by_email() {
    let w = world().await;
    let second = member(&w.db, w.acme.id, "acme", "second", Role::Staff, None, false).await;
    let mut tx = w.db.store.tenant_tx(w.acme.id).await.expect("tx");
    sqlx::query("update memberships set status = 'pending' where user_id = $1")
        .bind(second)
        .execute(tx.conn())
        .await
        .expect("pending");
    tx.commit().await.expect("commit");
    let admin = w.browser("user0@acme.example").await;
    let page = admin.get("/members").await;
    assert!(page.text.contains("Waiting for approval") && page.text.contains("Approve joiner"), "{}", page.text);
    snapshot!("members_admin", page.text);

    let r =
        admin.without_redirects().post_form(&format!("/members/{}/approve", w.joiner), &[("role", "finance")]).await;
    assert_eq!((r.status, r.header("location")), (StatusCode::SEE_OTHER, Some("/members?done=approved")));
    assert_eq!(w.membership(&w.acme, w.joiner).await, ("finance".to_owned(), "active".to_owned()));
    assert_eq!(w.audited("membership.approved").await, 1);
    let r = admin.post_form(&format!("/members/{second}/decline"), &[("reason", "not one of ours")]).await;
    assert!(r.status == StatusCode::OK && r.text.contains("Declined"), "{}", r.text);
    assert_eq!(w.membership(&w.acme, second).await.1, "ended");
    assert_eq!(w.audited("membership.declined").await, 1);
    // Approving twice: said in words, nothing changes.
    let r = admin.post_form(&format!("/members/{}/approve", w.joiner), &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.text.contains("This cannot be done now"), "{}", r.text);

    // Invitations: a wrong address is named under its field; a right one is sent, its token once.
    let r = admin.post_form("/members/invitations", &[("email", "not an address"), ("role", "staff")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains(r#"<p class="field-error" id="invite-email-error">Enter an email address"#), "{}", r.text);
    assert!(r.text.contains(r#"value="not an address""#), "what was typed is kept");
    let r = admin.post_form("/members/invitations", &[("email", "user1@acme.example"), ("role", "staff")]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.text.contains("already belongs to a member"), "{}", r.text);
    let r = admin.post_form("/members/invitations", &[("email", "new.person@acme.example"), ("role", "finance")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("Invitation sent to new.person@acme.example as Finance"), "{}", r.text);
    assert!(r.text.contains(r#"<code id="invitation-token">"#));
    assert_eq!(w.audited("invitation.created").await, 1);
    let api = w.app.sign_in("acme", "user0@acme.example").await;
    let list = api.get("/api/v1/invitations").await;
    assert!(list.body["items"].as_array().expect("items").iter().any(|i| i["email"] == "new.person@acme.example"));
    // An admin may not invite an owner (the option is not offered; posted anyway, refused).
    assert!(!r.text.contains(r#"<option value="owner""#));
    let r = admin.post_form("/members/invitations", &[("email", "boss@acme.example"), ("role", "owner")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains(r#"id="invite-role-error">Your role cannot grant this role"#), "{}", r.text);
}

#[tokio::test]
async fn a_member_name_with_markup_is_shown_as_text_never_run() {
    let w = world().await;
    let name = r#"<script>alert("x")</script>"#;
    let mut g = w.db.store.global_tx().await.expect("tx");
    let email = identity::EmailAddress::parse("markup@acme.example").expect("email");
    let u = identity::directory::users::create(&mut g, &common::who(), &email, name).await.expect("user");
    g.commit().await.expect("commit");
    let mut tx = w.db.store.tenant_tx(w.acme.id).await.expect("tx");
    identity::directory::memberships::add(
        &mut tx,
        &common::who(),
        &identity::directory::memberships::NewMembership {
            user_id: u.id,
            role: Role::Staff,
            department_id: None,
            valid_until: None,
        },
    )
    .await
    .expect("membership");
    tx.commit().await.expect("commit");
    let admin = w.browser("user0@acme.example").await;
    for path in ["/members".to_owned(), format!("/members/{}", u.id), "/members?q=script".to_owned()] {
        let page = admin.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(!page.text.contains("<script>alert"), "{path}: {}", page.text);
        assert!(numeric(&page.text).contains("&#60;script&#62;alert(&#34;x&#34;)&#60;/script&#62;"), "{path}");
    }
    let found = admin.get("/members?q=SCRIPT").await;
    assert!(found.text.contains("markup@acme.example") && !found.text.contains("user1@acme.example"));
    let none = admin.get("/members?q=nobody-at-all").await;
    assert!(none.text.contains("Nobody matches this search"), "{}", none.text);
}

// --- Audit ------------------------------------------------------------------------------------

#[tokio::test]
async fn the_audit_trail_filters_pages_and_exports_what_was_done_with_the_chains_status_in_words() {
    let w = world().await;
    let admin = w.browser("user0@acme.example").await;
    let reason = r#"Promoted <script>alert("x")</script>"#;
    let r = admin.post_form(&format!("/members/{}/role", w.staff()), &[("role", "hod"), ("reason", reason)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // More events than a page holds.
    let mut tx = w.db.store.tenant_tx(w.acme.id).await.expect("tx");
    for _ in 0..55 {
        let e =
            audit::Event::new("test.noted", audit::Entity::new("thing", None).expect("entity"), audit::Changes::none())
                .expect("event");
        audit::record_by(&mut tx, &common::who(), &e).await.expect("record");
    }
    tx.commit().await.expect("commit");
    audit::watch::pass(&w.db.store, &audit::TrustedKeys::of([common::test_key().public()])).await.expect("pass");

    let auditor = w.browser("auditor@acme.example").await;
    let home = auditor.get("/").await;
    assert!(home.text.contains(r#"<a href="/audit">Audit</a>"#), "auditors are offered the audit trail");
    let page = auditor.get("/audit").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text.contains("<strong>Intact.</strong>") && page.text.contains("every event matched"),
        "{}",
        page.text
    );
    assert_eq!(page.text.matches("<tr><td class=\"num\">").count(), 50, "one page of 50");
    let next = page.text.split(r#"<a href=""#).find(|s| s.contains(r#"rel="next">Older events"#)).expect("next link");
    let next = next.split('"').next().expect("href").replace("&#38;", "&").replace("&amp;", "&");
    let older = auditor.get(&next).await;
    assert_eq!(older.status, StatusCode::OK, "{next}");
    assert!(older.text.contains("membership.role_changed"), "the older page holds the earlier events");

    // Filtered by action and person: the role change, its reason as text.
    let filtered = auditor.get(&format!("/audit?action=membership.role_changed&actor={}", w.acme.users[0])).await;
    assert_eq!(filtered.status, StatusCode::OK);
    assert_eq!(filtered.text.matches("<tr><td class=\"num\">").count(), 1, "{}", filtered.text);
    assert!(!filtered.text.contains("<script>alert"), "a reason is shown as text");
    assert!(numeric(&filtered.text).contains("Promoted &#60;script&#62;"), "{}", filtered.text);
    assert!(filtered.text.contains("User 0") && filtered.text.contains("Administrator"));
    snapshot!("audit_filtered", filtered.text);
    let nobody = auditor.get("/audit?from=2099-01-01").await;
    assert!(nobody.text.contains("No events match these filters"), "{}", nobody.text);

    // Wrong filters are named under their field, the first focused.
    let bad = auditor.get("/audit?action=Not+an+action%21&from=2026-02-30").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text.contains(r#"<p class="field-error" id="from-error">Enter a date"#), "{}", bad.text);
    let from = bad.text.split(r#"<input id="from""#).nth(1).and_then(|s| s.split('>').next()).unwrap_or_default();
    assert!(from.contains("autofocus") && from.contains(r#"aria-invalid="true""#), "{from}");
    let bad = auditor.get("/audit?action=Not+an+action%21").await;
    assert!(bad.text.contains(r#"id="action-error">Enter an action like"#), "{}", bad.text);

    // The export links are the API's, which take the session cookie; the export is on record.
    assert!(
        filtered.text.contains(r#"href="/api/v1/audit/export?format=csv&#38;action=membership.role_changed""#)
            || filtered.text.contains(r#"href="/api/v1/audit/export?format=csv&amp;action=membership.role_changed""#),
        "{}",
        filtered.text
    );
    let csv = auditor.get("/api/v1/audit/export?format=csv&action=membership.role_changed").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.header("content-type").is_some_and(|c| c.starts_with("text/csv"))
            && csv.text.contains("membership.role_changed")
    );
    let nd = auditor.get("/api/v1/audit/export?format=ndjson").await;
    assert_eq!((nd.status, nd.header("content-type")), (StatusCode::OK, Some("application/x-ndjson")));
    assert_eq!(w.audited("audit.exported").await, 2);
    // So is the regulator bundle's (tests/audit_bundle_http.rs verifies its contents).
    assert!(filtered.text.contains(r#"href="/api/v1/audit/bundle""#), "{}", filtered.text);
    let bundle = auditor.get("/api/v1/audit/bundle").await;
    assert_eq!((bundle.status, bundle.header("content-type")), (StatusCode::OK, Some("application/x-tar")));
    assert_eq!(w.audited("audit.bundle_exported").await, 1);
}

// --- My account -------------------------------------------------------------------------------

/// The TOTP code of the current step for a base32 `secret` (waits out a step about to end).
async fn totp_now(secret: &str) -> String {
    let now = || u64::try_from(chrono::Utc::now().timestamp()).expect("time");
    if 30 - now() % 30 < 5 {
        tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    }
    let bytes = totp_rs::Secret::Encoded(secret.to_owned()).to_bytes().expect("base32");
    let t = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes, None, String::new());
    t.generate(now())
}

async fn platform_count(db: &TestDb, action: &str) -> i64 {
    let mut admin = db.admin_conn().await;
    sqlx::query_scalar("select count(*) from platform_audit_events where action = $1")
        .bind(action)
        .fetch_one(&mut admin)
        .await
        .expect("count")
}

#[tokio::test]
async fn my_account_ends_my_sessions_only_and_changes_my_password_with_the_errors_in_words() {
    let w = world().await;
    let anon = w.app.anonymous().without_redirects().get("/account").await;
    assert_eq!((anon.status, anon.header("location")), (StatusCode::SEE_OTHER, Some("/sign-in?next=/account")));
    let other_tab = w.browser("user1@acme.example").await;
    let staff = w.browser("user1@acme.example").await;
    let page = staff.get("/account").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains(r#"<a href="/account" aria-current="page">My account</a>"#));
    assert!(page.text.contains("This browser") && page.text.contains("End this session"), "{}", page.text);
    assert!(!page.text.contains(r#"href="/members""#) && !page.text.contains(r#"href="/audit""#));
    snapshot!("account", page.text);

    // Someone else's session (here, of acme's admin, and of beta) is not found; nothing ends.
    let mut tx = w.db.store.tenant_tx(w.acme.id).await.expect("tx");
    let admins: Uuid = sqlx::query_scalar("select id from sessions where user_id = $1 limit 1")
        .bind(w.acme.users[0])
        .fetch_one(tx.conn())
        .await
        .expect("admin session");
    tx.commit().await.expect("commit");
    let r = staff.post_form(&format!("/account/sessions/{admins}/revoke"), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(r.text.contains("Page not found"));
    // Without the CSRF token, nothing.
    let ids: Vec<String> = page
        .text
        .split(r#"action="/account/sessions/"#)
        .skip(1)
        .filter_map(|s| s.split('/').next().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 2, "two browsers signed in");
    for id in &ids {
        let r = staff.post_form(&format!("/account/sessions/{id}/revoke"), &[("csrf_token", "")]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(other_tab.get("/").await.status, StatusCode::OK, "nothing ended");
    // Ending the other tab's session: it is signed out; this one is not.
    let before = w.audited("session.revoked").await;
    let r = staff.without_redirects().post_form(&format!("/account/sessions/{}/revoke", ids[0]), &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(w.audited("session.revoked").await, before + 1);
    let other = other_tab.without_redirects().get("/").await.status;
    let this = staff.without_redirects().get("/").await.status;
    assert!(
        [other, this].contains(&StatusCode::SEE_OTHER) && [other, this].contains(&StatusCode::OK),
        "{other} {this}"
    );
    let (staff, _gone) = if this == StatusCode::OK { (staff, other_tab) } else { (other_tab, staff) };
    let _ = _gone;

    // The password: a wrong current one, a weak new one, each under its field.
    let r = staff
        .post_form(
            "/account/password",
            &[("current_password", "not it at all"), ("new_password", "a brand new passphrase 42")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains(r#"id="current-password-error">Your current password is not right."#), "{}", r.text);
    let input =
        r.text.split(r#"<input id="current-password""#).nth(1).and_then(|s| s.split('>').next()).unwrap_or_default();
    assert!(input.contains("autofocus"), "{input}");
    let r = staff
        .post_form("/account/password", &[("current_password", common::PASSWORD), ("new_password", "short")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains(r#"id="new-password-error">Choose a stronger password"#), "{}", r.text);
    snapshot!("account_password_errors", r.text);
    let new = "marble harbour quietly 4412";
    let r = staff
        .without_redirects()
        .post_form("/account/password", &[("current_password", common::PASSWORD), ("new_password", new)])
        .await;
    assert_eq!((r.status, r.header("location")), (StatusCode::SEE_OTHER, Some("/sign-in")));
    assert_eq!(staff.without_redirects().get("/").await.status, StatusCode::SEE_OTHER, "signed out everywhere");
    let login = w.app.anonymous().login("acme", "user1@acme.example", new).await;
    assert_eq!(login.status, StatusCode::OK, "the new password works");
}

#[tokio::test]
async fn my_account_enrols_an_authenticator_with_a_qr_image_and_shows_recovery_codes_once() {
    let w = world().await;
    let staff = w.browser("user1@acme.example").await;
    let r = staff.post_form("/account/totp", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains(r#"<img src="data:image/svg+xml;base64,"#), "the QR code as an image");
    assert!(!r.text.contains("<svg") && !r.text.contains(" style="), "no inline SVG or style in the page");
    assert_eq!(r.header("content-security-policy"), Some(web::PAGE_CSP));
    let secret = r.text.split("Key: <code>").nth(1).and_then(|s| s.split('<').next()).expect("key").to_owned();
    let confirm =
        r.text.split(r#"<input id="confirm-code""#).nth(1).and_then(|s| s.split('>').next()).unwrap_or_default();
    assert!(!confirm.contains("aria-invalid"));
    snapshot!("account_enrol", r.text);
    // A wrong code: said under the field, the field focused.
    let r = staff.post_form("/account/totp/confirm", &[("code", "000000")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains(r#"id="confirm-code-error">This code is not right"#), "{}", r.text);
    // The right one: on, with ten recovery codes shown once, and on the platform's record.
    let before = platform_count(&w.db, "auth.mfa_enrolled").await;
    let r = staff.post_form("/account/totp/confirm", &[("code", &totp_now(&secret).await)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("The authenticator app is on"), "{}", r.text);
    let codes: Vec<String> =
        r.text.split("<li><code>").skip(1).filter_map(|s| s.split('<').next().map(str::to_owned)).collect();
    assert_eq!(codes.len(), 10, "{}", r.text);
    assert_eq!(platform_count(&w.db, "auth.mfa_enrolled").await, before + 1);
    assert!(!staff.get("/account").await.text.contains(&codes[0]), "shown only once");
    // Enrolling again is refused in words while it is on.
    let r = staff.post_form("/account/totp", &[]).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.text.contains("already on"), "{}", r.text);
    // New recovery codes need a code; a recovery code works and the old ones stop working.
    let r = staff.post_form("/account/recovery-codes", &[("code", "")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains(r#"id="regenerate-code-error">"#), "{}", r.text);
    let r = staff.post_form("/account/recovery-codes", &[("code", &codes[0])]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("New recovery codes") && r.text.matches("<li><code>").count() == 10);
    assert_eq!(platform_count(&w.db, "auth.recovery_codes_regenerated").await, 1);
    let r = staff.post_form("/account/totp/remove", &[("code", &codes[1])]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "an old recovery code no longer works");
    // Removing it with a current code.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let r = staff.without_redirects().post_form("/account/totp/remove", &[("code", &totp_now(&secret).await)]).await;
    // A code already used in this step is refused (replay): wait for the next step then.
    let r = if r.status == StatusCode::UNPROCESSABLE_ENTITY {
        let left = 30 - u64::try_from(chrono::Utc::now().timestamp()).expect("time") % 30;
        tokio::time::sleep(std::time::Duration::from_secs(left + 1)).await;
        staff.without_redirects().post_form("/account/totp/remove", &[("code", &totp_now(&secret).await)]).await
    } else {
        r
    };
    assert_eq!((r.status, r.header("location")), (StatusCode::SEE_OTHER, Some("/account?done=totp_off")), "{}", r.text);
    assert_eq!(platform_count(&w.db, "auth.mfa_disabled").await, 1);
}

// --- API keys ---------------------------------------------------------------------------------

#[tokio::test]
async fn api_keys_are_made_with_the_secret_shown_once_listed_and_revoked_for_every_server() {
    let w = world().await;
    let anon = w.app.anonymous().without_redirects().get("/settings/api-keys").await;
    assert_eq!(anon.header("location"), Some("/sign-in?next=/settings/api-keys"));
    let (theirs, _) = common::api_key(&w.db, w.beta.id, "beta's", Role::Auditor, &["audit:read"]).await;
    let (created, revoked) = (w.audited("api_key.created").await, w.audited("api_key.revoked").await);
    let admin = w.browser("user0@acme.example").await;
    let page = admin.get("/settings/api-keys").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        page.text.contains("<caption class=\"visually-hidden\">API keys of the organisation</caption>"),
        "the fixture's key"
    );
    assert!(!page.text.contains(r#"<option value="owner""#), "an admin is not offered an owner key");

    // Wrong forms: a missing name, an owner key, each under its field.
    let r = admin.post_form("/settings/api-keys", &[("name", ""), ("role", "auditor")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains(r#"id="key-name-error">Give the key a name"#), "{}", r.text);
    let r = admin.post_form("/settings/api-keys", &[("name", "boss"), ("role", "owner")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text.contains(r#"id="key-role-error">Your role cannot make a key with this role."#), "{}", r.text);
    let r =
        admin.post_form("/settings/api-keys", &[("name", "x"), ("role", "auditor"), ("scope", "everything:all")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains(r#"id="key-scopes-error">"#));
    // Without the CSRF token: nothing made.
    let r = admin.post_form("/settings/api-keys", &[("name", "x"), ("role", "auditor"), ("csrf_token", "")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(w.audited("api_key.created").await, created, "nothing made");

    // Made: the secret once, and it works.
    let name = r#"Export <script>alert("x")</script>"#;
    let r =
        admin.post_form("/settings/api-keys", &[("name", name), ("role", "auditor"), ("scope", "audit:read")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!r.text.contains("<script>alert"), "a key's name is shown as text");
    let secret =
        r.text.split(r#"<code id="api-key-secret">"#).nth(1).and_then(|s| s.split('<').next()).expect("secret");
    assert_eq!(w.audited("api_key.created").await, created + 1);
    let key = w.app.bearer(secret);
    assert_eq!(key.get("/api/v1/audit/events").await.status, StatusCode::OK);
    snapshot!("api_keys_made", r.text);
    let list = admin.get("/settings/api-keys").await;
    assert!(!list.text.contains(secret) && !list.text.contains("api-key-secret"), "shown only once");
    let api = w.app.sign_in("acme", "user0@acme.example").await;
    let keys = api.get("/api/v1/api-keys").await;
    let made =
        keys.body["items"].as_array().expect("items").iter().find(|k| k["name"] == name).expect("listed by the API");
    let id = made["id"].as_str().expect("id").to_owned();
    assert!(list.text.contains(&format!(r#"action="/settings/api-keys/{id}/revoke""#)));

    // Another organisation's key: not found, and it still works.
    let r = admin.post_form(&format!("/settings/api-keys/{theirs}/revoke"), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text.contains("Page not found"));
    // Revoked: refused at once.
    let r = admin.post_form(&format!("/settings/api-keys/{id}/revoke"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text.contains("Revoked: every server refuses the key")
            && r.text.contains(r#"<span class="chip refused">Revoked</span>"#)
    );
    assert_eq!(w.audited("api_key.revoked").await, revoked + 1);
    assert_eq!(key.get("/api/v1/audit/events").await.status, StatusCode::UNAUTHORIZED);
}

// --- Settings ---------------------------------------------------------------------------------

#[tokio::test]
async fn settings_change_the_second_step_the_allowlist_with_its_lockout_confirmation_and_the_md_thresholds() {
    let w = world().await;
    let anon = w.app.anonymous().without_redirects().get("/settings").await;
    assert_eq!(anon.header("location"), Some("/sign-in?next=/settings"));
    let admin = w.browser("user0@acme.example").await;
    let page = admin.get("/settings").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains(r#"<a href="/settings" aria-current="page">Settings</a>"#));
    assert!(page.text.contains("0.0.0.0/0 fixture"), "the current list: {}", page.text);
    snapshot!("settings", page.text);
    let api = w.app.sign_in("acme", "user0@acme.example").await;

    // The second step: not without the CSRF token; then required, on record.
    let r = admin.post_form("/settings/mfa", &[("required", "yes"), ("csrf_token", "")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(api.get("/api/v1/settings/mfa").await.body["required"], false);
    let r = admin.post_form("/settings/mfa", &[("required", "yes")]).await;
    assert!(r.status == StatusCode::OK && r.text.contains("required for everyone"), "{}", r.text);
    assert_eq!(api.get("/api/v1/settings/mfa").await.body["required"], true);
    assert_eq!(w.audited("tenant.mfa_requirement_changed").await, 1);

    // Thresholds: a wrong row is named; right ones are saved in minor units.
    let r = admin.post_form("/settings/thresholds", &[("currency", "EURO"), ("amount", "10")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains(r#"id="thresholds-error">Row 1: enter a currency code"#), "{}", r.text);
    let r = admin
        .post_form(
            "/settings/thresholds",
            &[("currency", "eur"), ("amount", "10,000.00"), ("currency", ""), ("amount", "")],
        )
        .await;
    assert!(r.status == StatusCode::OK && r.text.contains("Saved: the MD thresholds"), "{}", r.text);
    assert_eq!(api.get("/api/v1/settings/approvals").await.body["thresholds"]["EUR"], 1_000_000);
    assert_eq!(w.audited("tenant.md_thresholds_changed").await, 1);

    // The allowlist: a wrong network, a missing reason, then a list without this address.
    let r = admin
        .post_form("/settings/ip-allowlist", &[("networks", "203.0.113.0/24\nnot-a-net"), ("reason", "office")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains(r#"id="networks-error">Line 2: “not-a-net” is not a network"#), "{}", numeric(&r.text));
    let r =
        admin.post_form("/settings/ip-allowlist", &[("networks", "203.0.113.0/24 Head office"), ("reason", "")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains(r#"id="allowlist-reason-error">Give a reason"#));
    let fields = [("networks", "203.0.113.0/24 Head office"), ("reason", "Office only from now on")];
    let r = admin.post_form("/settings/ip-allowlist", &fields).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.text.contains("does not include your address 127.0.0.1"), "{}", r.text);
    let confirm =
        r.text.split(r#"<input type="checkbox" id="confirm-lockout""#).nth(1).and_then(|s| s.split('>').next());
    assert!(confirm.is_some_and(|c| c.contains("autofocus")), "the confirmation box has the focus");
    assert!(r.text.contains("203.0.113.0/24 Head office"), "what was typed is kept");
    assert_eq!(w.audited("settings.ip_allowlist_changed").await, 0, "nothing saved");
    // With this address in the list: saved, on record, and the person is still in.
    let fields =
        [("networks", "203.0.113.0/24 Head office\n127.0.0.1/32 This test"), ("reason", "Office only from now on")];
    let r = admin.post_form("/settings/ip-allowlist", &fields).await;
    assert!(r.status == StatusCode::OK && r.text.contains("Saved: the allowlist"), "{}", r.text);
    assert_eq!(w.audited("settings.ip_allowlist_changed").await, 1);
    let list = api.get("/api/v1/settings/ip-allowlist").await;
    assert_eq!(list.body["entries"].as_array().map(Vec::len), Some(2), "{}", list.body);
}
