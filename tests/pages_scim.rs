//! The SCIM settings page and its API (`/settings/scim`, `/api/v1/settings/scim-tokens`) over
//! HTTP: only owners and admins, the token shown once and working at once, listed without its
//! secret, revoked for every server, another organisation's token not found, a cross-site form
//! refused, a name with markup shown as text.

mod common;

use common::{TestApp, audit_count, org, with_password};
use reqwest::StatusCode;
use serde_json::json;
use store::testing::TestDb;

#[tokio::test]
async fn scim_tokens_are_made_shown_once_listed_and_revoked_by_admins_only() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "beta").await;
    // The fixture gives every organisation a token (for the isolation proofs): start without.
    let mut admin_conn = db.admin_conn().await;
    sqlx::query("delete from scim_tokens").execute(&mut admin_conn).await.expect("no tokens");
    for u in &a.users {
        with_password(&db, *u).await;
    }
    let app = TestApp::setup(&db).roomy().start().await;
    // Anonymous: sign in first; staff: the forbidden page, and no token.
    let anon = app.anonymous().without_redirects().get("/settings/scim").await;
    assert_eq!(anon.header("location"), Some("/sign-in?next=/settings/scim"));
    let (staff, _) = app.anonymous().sign_in_browser("acme", "user1@acme.example").await;
    let r = staff.get("/settings/scim").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = staff.post_form("/settings/scim", &[("name", "mine")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let staff_api = app.sign_in("acme", "user1@acme.example").await;
    assert_eq!(
        staff_api.post("/api/v1/settings/scim-tokens", json!({"name": "x"})).await.status,
        StatusCode::FORBIDDEN
    );

    let (admin, _) = app.anonymous().sign_in_browser("acme", "user0@acme.example").await;
    let page = admin.get("/settings/scim").await;
    assert_eq!(page.status, StatusCode::OK, "{page}");
    assert!(page.text.contains("No SCIM tokens yet"), "the empty state says what would appear");
    assert!(page.text.contains(&format!("{}/scim/v2", app.url(""))), "the base URL to give the provider");
    // A name out of bounds is said under the field; a form without the CSRF token changes nothing.
    let r = admin.post_form("/settings/scim", &[("name", "")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text.contains("token-name-error"), "{}", r.text);
    let r = admin.post_form("/settings/scim", &[("name", "x"), ("csrf_token", "")]).await;
    assert!(r.status.is_client_error() || r.path.starts_with("/sign-in"), "{r}");
    assert_eq!(audit_count(&db, a.id, "scim_token.created").await, 0);

    let r = admin.post_form("/settings/scim", &[("name", "<b>Okta</b>")]).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let numeric = r.text.replace("&lt;", "&#60;").replace("&gt;", "&#62;");
    assert!(numeric.contains("&#60;b&#62;Okta&#60;/b&#62;") && !r.text.contains("<b>Okta</b>"), "markup is text");
    let secret = r
        .text
        .split(r#"<code id="scim-token-secret">"#)
        .nth(1)
        .and_then(|s| s.split("</code>").next())
        .expect("the secret, shown once")
        .to_owned();
    assert!(secret.starts_with("cssc_"), "{secret}");
    // It works at once, and is never shown again.
    let idp = app.bearer(&secret);
    assert_eq!(idp.get("/scim/v2/ServiceProviderConfig").await.status, StatusCode::OK);
    let list = admin.get("/settings/scim").await;
    assert!(!list.text.contains(&secret), "shown only once");
    let api = app.sign_in("acme", "user0@acme.example").await;
    let tokens = api.get("/api/v1/settings/scim-tokens").await;
    assert_eq!(tokens.body["items"].as_array().map(Vec::len), Some(1), "{tokens}");
    assert!(!tokens.text.contains(&secret[40..]), "the API never lists a secret");
    let id = tokens.body["items"][0]["id"].as_str().expect("id").to_owned();

    // Another organisation's token is not found, from the page and the API.
    let (theirs, _) = common::scim_token(&db, b.id, "Beta's Okta").await;
    let r = admin.post_form(&format!("/settings/scim/{theirs}/revoke"), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(api.delete(&format!("/api/v1/settings/scim-tokens/{theirs}")).await.status, StatusCode::NOT_FOUND);

    // Revoked from the page: refused at once.
    let r = admin.post_form(&format!("/settings/scim/{id}/revoke"), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert!(r.text.contains("Revoked"), "{}", r.text);
    assert_eq!(idp.get("/scim/v2/Users").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(audit_count(&db, a.id, "scim_token.created").await, 1);
    assert_eq!(audit_count(&db, a.id, "scim_token.revoked").await, 1);

    // The API face: created with the secret once, then listed without it.
    let made = api.post("/api/v1/settings/scim-tokens", json!({"name": "Entra"})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{made}");
    let s = made.body["secret"].as_str().expect("secret");
    assert_eq!(app.bearer(s).get("/scim/v2/Users").await.status, StatusCode::OK);
    let bad = api.post("/api/v1/settings/scim-tokens", json!({"name": "x", "role": "owner"})).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"));
}

#[tokio::test]
async fn group_mappings_are_made_and_removed_on_the_scim_page_and_never_make_an_owner() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "beta").await;
    with_password(&db, a.users[0]).await;
    // The fixture maps a group in every organisation: start without, for the empty state.
    let mut admin_conn = db.admin_conn().await;
    let theirs: uuid::Uuid = sqlx::query_scalar("select id from scim_group_mappings where tenant_id = $1")
        .bind(b.id.as_uuid())
        .fetch_one(&mut admin_conn)
        .await
        .expect("beta's mapping");
    sqlx::query("delete from scim_group_mappings where tenant_id = $1")
        .bind(a.id.as_uuid())
        .execute(&mut admin_conn)
        .await
        .expect("no mappings");
    let app = TestApp::setup(&db).roomy().start().await;
    let (admin, _) = app.anonymous().sign_in_browser("acme", "user0@acme.example").await;
    let page = admin.get("/settings/scim").await;
    assert_eq!(page.status, StatusCode::OK, "{page}");
    assert!(page.text.contains("No group mappings yet"), "the empty state says what would appear");
    assert!(!page.text.contains(r#"<option value="owner">"#), "owner is never offered");

    // Owner typed in by hand: refused in words under the form, nothing stored.
    let form = |role: &'static str| {
        [("match_on", "display_name"), ("group", "Finance"), ("role", role), ("department", "OPS")]
    };
    let r = admin.post_form("/settings/scim/mappings", &form("owner")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(r.text.contains("never make someone an owner"), "{}", r.text);
    assert_eq!(audit_count(&db, a.id, "scim_group_mapping.created").await, 0);

    let r = admin.post_form("/settings/scim/mappings", &form("finance")).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert!(r.text.contains("Mapped:") && r.text.contains("Named Finance"), "{}", r.text);
    assert_eq!(audit_count(&db, a.id, "scim_group_mapping.created").await, 1);
    let r = admin.post_form("/settings/scim/mappings", &form("hod")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(r.text.contains("mapped already"), "{}", r.text);

    // Another organisation's mapping is not found; our own is removed.
    let r = admin.post_form(&format!("/settings/scim/mappings/{theirs}/delete"), &[]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let api = app.sign_in("acme", "user0@acme.example").await;
    let listed = api.get("/api/v1/settings/scim-group-mappings").await;
    let mine = listed.body["items"][0]["id"].as_str().expect("our mapping").to_owned();
    let r = admin.post_form(&format!("/settings/scim/mappings/{mine}/delete"), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert!(r.text.contains("Mapping removed") && r.text.contains("No group mappings yet"), "{}", r.text);
    assert_eq!(audit_count(&db, a.id, "scim_group_mapping.deleted").await, 1);
    assert_eq!(audit_count(&db, b.id, "scim_group_mapping.deleted").await, 0);
}
