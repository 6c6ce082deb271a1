//! SAML 2.0 single sign-on against a real IdP (PyPI `pysaml2` with `xmlsec1`, started per test
//! on loopback), over HTTP as a browser does it, attacked with responses the IdP signed or the
//! test crafted from a genuine signed one: signature wrapping (a second, unsigned assertion; the
//! signed one moved aside), a comment splitting the NameID, a tampered NameID, an unsigned
//! assertion inside a signed response, SHA-1, an audience of another SP, a response for another
//! organisation, an expired assertion, a response to another request or from another browser,
//! and an assertion replayed to a second node. And what should work: the IdP's metadata
//! accepted only with a signing certificate, the SP metadata, a sign-in linked once, on record.

mod common;

use common::app::{Client, TestApp};
use common::saml::{Idp, Posted, post, refusal_code, signed_in, start};
use common::{audit_count, org, with_password};
use reqwest::StatusCode;
use serde_json::json;
use store::TenantId;
use store::testing::TestDb;

/// Configures `organisation`'s IdP through the API as its administrator.
async fn configure(app: &TestApp, organisation: &str, metadata: &str) -> common::Answer {
    let admin = app.sign_in(organisation, &format!("user0@{organisation}.example")).await;
    admin
        .put(
            "/api/v1/settings/saml",
            json!({"metadata_xml": metadata, "allowed_domains": [format!("{organisation}.example")]}),
        )
        .await
}

async fn sp_metadata(app: &TestApp, organisation: &str) -> String {
    let r = app.anonymous().get(&format!("/saml/{organisation}/metadata")).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(r.header("content-type"), Some("application/samlmetadata+xml"));
    r.text
}

/// Another service provider the IdP knows.
const OTHER_SP: &str = "https://other-sp.example/metadata";

struct World {
    db: TestDb,
    app: TestApp,
    idp: Idp,
    acme: common::Org,
    beta: common::Org,
}

/// Two organisations, `acme` with the IdP configured; the IdP knows both SPs.
async fn world() -> World {
    let db = TestDb::new().await;
    let (acme, beta) = (org(&db, "acme").await, org(&db, "beta").await);
    for u in [acme.users[0], beta.users[0], beta.users[1]] {
        with_password(&db, u).await;
    }
    let app = TestApp::setup(&db).roomy().start().await;
    // A third SP the IdP also serves (another service entirely), for assertions addressed to it.
    let other = sp_metadata(&app, "acme").await.replace(&format!("{}/saml/acme/metadata", app.base), OTHER_SP);
    let idp = Idp::start(&[sp_metadata(&app, "acme").await, sp_metadata(&app, "beta").await, other]);
    let r = configure(&app, "acme", &idp.metadata().await).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    World { db, app, idp, acme, beta }
}

/// A browser's genuine response: started at `organisation`, signed in at the IdP as `user`.
async fn genuine(browser: &Client, idp: &Idp, organisation: &str, user: &str, variant: &str) -> (String, Posted) {
    let s = start(browser, organisation).await;
    let posted = idp.respond(&s.authn_request_url, user, variant, "").await;
    (s.cookie, posted)
}

#[track_caller]
fn refused(a: &common::Answer, code: &str) {
    assert!(!signed_in(a), "{code}: a session was opened: {a}");
    assert!(a.status.is_client_error(), "{code}: {a}");
    assert_eq!(refusal_code(a), code, "{a}");
}

#[tokio::test]
async fn a_member_signs_in_through_a_real_idp_and_is_linked_once_on_record() {
    let World { db, app, idp, acme, .. } = world().await;
    let acme: TenantId = acme.id;
    // The SP metadata names this organisation's entity id and ACS.
    let sp = sp_metadata(&app, "acme").await;
    assert!(sp.contains(&format!("entityID=\"{}/saml/acme/metadata\"", app.base)), "{sp}");
    assert!(sp.contains(&format!("Location=\"{}/saml/acme/acs\"", app.base)), "{sp}");
    // The settings answer the IdP and the SP.
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let s = admin.get("/api/v1/settings/saml").await;
    assert_eq!(s.status, StatusCode::OK, "{s}");
    assert_eq!(s.body["identity_provider"]["idp_entity_id"], json!(format!("{}/metadata", idp.base)));
    assert_eq!(s.body["identity_provider"]["signing_certificates"], json!(1));
    assert_eq!(s.body["service_provider"]["acs_url"], json!(format!("{}/saml/acme/acs", app.base)));
    // The sign-in page offers it.
    let page = app.anonymous().get("/sign-in?organisation=acme").await;
    assert!(page.text.contains("/sign-in/saml?organisation=acme"), "{}", page.text);

    let before = audit_count(&db, acme, "auth.login_succeeded").await;
    let browser = app.anonymous();
    for _ in 0..2 {
        let (cookie, posted) = genuine(&browser, &idp, "acme", "user0@acme.example", "good").await;
        assert_eq!(posted.acs, format!("{}/saml/acme/acs", app.base));
        let r = post(&browser, &cookie, &posted).await;
        assert_eq!(r.status, StatusCode::OK, "{r}");
        assert!(signed_in(&r), "{r}");
    }
    assert_eq!(audit_count(&db, acme, "auth.login_succeeded").await, before + 2);
    assert_eq!(audit_count(&db, acme, "auth.sso_linked").await, 1);
    assert_eq!(audit_count(&db, acme, "saml.config_changed").await, 1);
    assert_eq!(audit_count(&db, acme, "auth.sso_failed").await, 0);
}

#[tokio::test]
async fn idp_metadata_without_a_signing_certificate_is_refused_and_only_admins_configure() {
    let World { db, app, idp, beta, .. } = world().await;
    let metadata = idp.metadata().await;
    // The same document with its KeyDescriptor removed: nothing to verify responses with.
    let start = metadata.find("<ns0:KeyDescriptor").expect("a KeyDescriptor");
    let end = metadata.find("</ns0:KeyDescriptor>").expect("its end") + "</ns0:KeyDescriptor>".len();
    let stripped = format!("{}{}", &metadata[..start], &metadata[end..]);
    let r = configure(&app, "beta", &stripped).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(r.text.contains("metadata_xml") && r.text.contains("signing certificate"), "{r}");
    // Not metadata at all, and a domain the organisation has not proven.
    assert_eq!(configure(&app, "beta", "<hello/>").await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let admin = app.sign_in("beta", "user0@beta.example").await;
    let r = admin
        .put("/api/v1/settings/saml", json!({"metadata_xml": metadata, "allowed_domains": ["acme.example"]}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    // Staff may not change it; nothing was stored for beta.
    let staff = app.sign_in("beta", "user1@beta.example").await;
    let r = staff
        .put("/api/v1/settings/saml", json!({"metadata_xml": metadata, "allowed_domains": ["beta.example"]}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    assert_eq!(audit_count(&db, beta.id, "saml.config_changed").await, 0);
    let s = admin.get("/api/v1/settings/saml").await;
    assert_eq!(s.body["identity_provider"], json!(null), "{s}");
    // A sign-in to beta is refused: it has no IdP.
    let r = app.anonymous().get("/sign-in/saml?organisation=beta").await;
    assert_eq!(refusal_code(&r), "saml_not_configured", "{r}");
}

/// The response with its assertion's `<Signature>…</Signature>` removed.
fn unsigned(assertion: &str) -> String {
    let start = assertion.find("<ns2:Signature").expect("signature");
    let end = assertion.find("</ns2:Signature>").expect("its end") + "</ns2:Signature>".len();
    format!("{}{}", &assertion[..start], &assertion[end..])
}

/// (before the assertion, the signed assertion, after it).
fn split_assertion(xml: &str) -> (String, String, String) {
    let start = xml.find("<ns1:Assertion").expect("assertion");
    let end = xml.find("</ns1:Assertion>").expect("its end") + "</ns1:Assertion>".len();
    (xml[..start].to_owned(), xml[start..end].to_owned(), xml[end..].to_owned())
}

#[tokio::test]
async fn signature_wrapping_comments_and_tampering_are_refused() {
    let World { db, app, idp, acme, .. } = world().await;
    let acme: TenantId = acme.id;
    let browser = app.anonymous();
    // The administrator's password sign-in that configured the IdP.
    let before = audit_count(&db, acme, "auth.login_succeeded").await;

    // The attacker's own genuine sign-in, as a person at the IdP with an address of their own.
    let (cookie, posted) = genuine(&browser, &idp, "acme", "user1@acme.example", "good").await;
    let xml = posted.xml();
    let (head, signed, tail) = split_assertion(&xml);
    let id = signed.split("ID=\"").nth(1).and_then(|r| r.split('"').next()).expect("assertion id").to_owned();
    let evil = unsigned(&signed).replace("user1@acme.example", "user0@acme.example").replace(&id, "evil-1");

    // XSW: an unsigned assertion for the administrator beside the signed one (before, after).
    for crafted in [format!("{head}{evil}{signed}{tail}"), format!("{head}{signed}{evil}{tail}")] {
        refused(&post(&browser, &cookie, &posted.with_xml(&crafted)).await, "saml_wrapping_refused");
    }
    // XSW: the signed assertion moved into the response's Extensions, the evil one in its place.
    let moved = format!("{head}<ns0:Extensions>{signed}</ns0:Extensions>{evil}{tail}");
    refused(&post(&browser, &cookie, &posted.with_xml(&moved)).await, "saml_wrapping_refused");
    // XSW: the evil assertion wrapped inside the signed one (an ID the signature does not name).
    let inside = signed.replacen("</ns1:Issuer>", &format!("</ns1:Issuer>{evil}"), 1);
    refused(
        &post(&browser, &cookie, &posted.with_xml(&format!("{head}{inside}{tail}"))).await,
        "saml_wrapping_refused",
    );
    // The NameID changed without re-signing: the signature fails.
    let tampered = xml.replace(">user1@acme.example<", ">user0@acme.example<");
    refused(&post(&browser, &cookie, &posted.with_xml(&tampered)).await, "saml_signature_invalid");

    // A comment inside a genuinely signed NameID (exclusive c14n drops it, so the signature
    // still verifies): `user0@acme.example<!---->.evil.example` would read as the administrator
    // to a parser that takes the first text node.
    let (cookie, posted) = genuine(&browser, &idp, "acme", "user0@acme.example.evil.example", "good").await;
    let commented =
        posted.xml().replace(">user0@acme.example.evil.example<", ">user0@acme.example<!---->.evil.example<");
    refused(&post(&browser, &cookie, &posted.with_xml(&commented)).await, "saml_xml_refused");
    // The genuine one itself is refused too: that address is not at the organisation's domain.
    refused(&post(&browser, &cookie, &posted).await, "saml_email_domain_not_allowed");

    // An unsigned assertion inside a signed response: the assertion itself must be signed.
    let (cookie, posted) = genuine(&browser, &idp, "acme", "user0@acme.example", "response_only").await;
    refused(&post(&browser, &cookie, &posted).await, "saml_signature_missing");
    // SHA-1 (signature and digests): refused whatever else is right.
    let (cookie, posted) = genuine(&browser, &idp, "acme", "user0@acme.example", "sha1").await;
    refused(&post(&browser, &cookie, &posted).await, "saml_algorithm_refused");

    assert_eq!(audit_count(&db, acme, "auth.login_succeeded").await, before);
    // Every refusal is on record (four wrappings, the tampering, the comment, the domain,
    // the unsigned assertion, SHA-1).
    assert_eq!(audit_count(&db, acme, "auth.sso_failed").await, 9);
}

#[tokio::test]
async fn audience_expiry_in_response_to_browser_and_replay_across_nodes_are_enforced() {
    let World { db, app, idp, acme, .. } = world().await;
    let acme: TenantId = acme.id;
    let browser = app.anonymous();
    // The administrator's password sign-in that configured the IdP.
    let before = audit_count(&db, acme, "auth.login_succeeded").await;

    // An assertion for another SP (signed by the right IdP, for the right ACS).
    let s = start(&browser, "acme").await;
    let posted = idp
        .respond(
            &s.authn_request_url,
            "user0@acme.example",
            "good",
            "&audience=https%3A%2F%2Fother-sp.example%2Fmetadata",
        )
        .await;
    refused(&post(&browser, &s.cookie, &posted).await, "saml_audience_mismatch");
    // An expired assertion.
    let (cookie, posted) = genuine(&browser, &idp, "acme", "user0@acme.example", "expired").await;
    refused(&post(&browser, &cookie, &posted).await, "saml_expired");
    // A response to another request: this browser's first request answered, posted with the
    // cookie of its second.
    let (_first, posted) = genuine(&browser, &idp, "acme", "user0@acme.example", "good").await;
    let second = start(&browser, "acme").await;
    refused(&post(&browser, &second.cookie, &posted).await, "saml_in_response_to_mismatch");
    // A genuine response posted from another browser (no binding cookie, or another's): login CSRF.
    let (_, posted) = genuine(&browser, &idp, "acme", "user0@acme.example", "good").await;
    refused(&post(&browser, "cs_saml=", &posted).await, "saml_request_invalid");
    refused(&post(&browser, &format!("cs_saml={}", "0".repeat(64)), &posted).await, "saml_request_invalid");

    // A response for acme posted to beta's ACS with a beta request of this browser (beta uses
    // the same IdP): not for beta's SP.
    let r = configure(&app, "beta", &idp.metadata().await).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let (_, for_acme) = genuine(&browser, &idp, "acme", "user0@acme.example", "good").await;
    let beta_flow = start(&browser, "beta").await;
    let to_beta =
        Posted { acs: for_acme.acs.replace("/saml/acme/", "/saml/beta/"), response: for_acme.response.clone() };
    refused(&post(&browser, &beta_flow.cookie, &to_beta).await, "saml_recipient_mismatch");

    // Replayed to a second node of the same deployment (behind one public URL): the replay
    // cache is in the database.
    let second_node = TestApp::serve(TestApp::setup(&db).roomy().state().with_public_url(Some(app.base.clone()))).await;
    let (cookie, posted) = genuine(&browser, &idp, "acme", "user0@acme.example", "good").await;
    let first = post(&browser, &cookie, &posted).await;
    assert!(signed_in(&first), "{first}");
    let again = post(&browser.on(&second_node), &cookie, &posted).await;
    refused(&again, "saml_assertion_replayed");
    // And to the same node.
    refused(&post(&browser, &cookie, &posted).await, "saml_assertion_replayed");
    assert_eq!(audit_count(&db, acme, "auth.login_succeeded").await, before + 1);
}

#[tokio::test]
async fn an_administrator_uploads_idp_metadata_on_the_settings_page_and_the_sign_in_page_offers_it() {
    let World { db, app, idp, beta, .. } = world().await;
    let (admin, _) = app.anonymous().sign_in_browser("beta", "user0@beta.example").await;
    let page = admin.get("/settings").await;
    assert_eq!(page.status, StatusCode::OK, "{page}");
    assert!(page.text.contains("SAML single sign-on"), "{}", page.text);
    assert!(page.text.contains(&format!("{}/saml/beta/metadata", app.base)), "the SP metadata URL: {}", page.text);
    // The sign-in page offers nothing yet.
    let signin = app.anonymous().get("/sign-in?organisation=beta").await;
    assert!(!signin.text.contains("/sign-in/saml"), "{}", signin.text);

    // Metadata without a signing certificate: refused on the page, in words, nothing stored.
    let metadata = idp.metadata().await;
    let start = metadata.find("<ns0:KeyDescriptor").expect("a KeyDescriptor");
    let end = metadata.find("</ns0:KeyDescriptor>").expect("its end") + "</ns0:KeyDescriptor>".len();
    let stripped = format!("{}{}", &metadata[..start], &metadata[end..]);
    let r = admin.post_form("/settings/saml", &[("metadata_xml", &stripped), ("domains", "beta.example")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("id=\"saml-error\"") && r.text.contains("signing certificate"), "{}", r.text);
    assert_eq!(audit_count(&db, beta.id, "saml.config_changed").await, 0);

    // The real metadata: saved, on record, and the sign-in page offers SAML.
    let r = admin
        .without_redirects()
        .post_form("/settings/saml", &[("metadata_xml", &metadata), ("domains", "beta.example")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(audit_count(&db, beta.id, "saml.config_changed").await, 1);
    let page = admin.get("/settings?done=saml").await;
    assert!(page.text.contains(&format!("{}/metadata", idp.base)), "{}", page.text);
    let signin = app.anonymous().get("/sign-in?organisation=beta").await;
    assert!(signin.text.contains("/sign-in/saml?organisation=beta"), "{}", signin.text);
    // A staff member cannot reach the section.
    let (staff, _) = app.anonymous().sign_in_browser("beta", "user1@beta.example").await;
    let r = staff.post_form("/settings/saml", &[("metadata_xml", &metadata), ("domains", "beta.example")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(audit_count(&db, beta.id, "saml.config_changed").await, 1);
}

#[tokio::test]
async fn a_saml_sso_only_organisation_refuses_member_passwords_as_oidc_does_except_its_break_glass_owner() {
    let World { db, app, idp, acme, .. } = world().await;
    with_password(&db, acme.users[1]).await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    // Before SSO-only: staff sign in with a password; a wrong one answers this code.
    let before = app.anonymous().login("acme", "user1@acme.example", common::PASSWORD).await;
    assert_eq!(before.status, StatusCode::OK, "{before}");
    let wrong = app.anonymous().login("acme", "user1@acme.example", "not the password at all").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{wrong}");

    // SSO-only needs a break-glass account, and only an active owner or administrator can be it.
    // (The metadata is left out: the stored one is kept.)
    let set = |extra: serde_json::Value| {
        let mut body = json!({"allowed_domains": ["acme.example"]});
        body.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        admin.put("/api/v1/settings/saml", body)
    };
    let r = set(json!({"sso_only": true})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(r.text.contains("break_glass_user"), "{r}");
    let r = set(json!({"sso_only": true, "break_glass_user": acme.users[1]})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(r.text.contains("break_glass_user"), "{r}");
    let r = set(json!({"sso_only": true, "break_glass_user": acme.users[0]})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(r.body["identity_provider"]["sso_only"], json!(true), "{r}");
    assert_eq!(r.body["identity_provider"]["idp_entity_id"], json!(format!("{}/metadata", idp.base)), "{r}");

    // A member's right password: refused exactly like a wrong one (OIDC's SSO-only refusal), on
    // record as `sso_only`.
    let refused_right = app.anonymous().login("acme", "user1@acme.example", common::PASSWORD).await;
    assert_eq!(refused_right.status, wrong.status, "{refused_right}");
    assert_eq!(refused_right.code(), wrong.code(), "{refused_right}");
    assert!(refused_right.body.get("access_token").is_none(), "{refused_right}");
    let mut tx = db.store.tenant_tx(acme.id).await.expect("tx");
    let why: i64 = sqlx::query_scalar(
        "select count(*) from audit_events where action = 'auth.login_failed' and reason = 'sso_only'",
    )
    .fetch_one(tx.conn())
    .await
    .expect("count");
    tx.commit().await.expect("commit");
    assert_eq!(why, 1);
    // The break-glass owner signs in with a password, and always meets a second factor.
    let glass = app.anonymous().login("acme", "user0@acme.example", common::PASSWORD).await;
    assert_eq!(glass.status, StatusCode::OK, "{glass}");
    assert_eq!(glass.body["mfa_required"], json!(true), "{glass}");
    assert!(glass.body.get("access_token").is_none(), "{glass}");
    // Staff sign in through the IdP.
    let browser = app.anonymous();
    let (cookie, posted) = genuine(&browser, &idp, "acme", "user1@acme.example", "good").await;
    let r = post(&browser, &cookie, &posted).await;
    assert!(signed_in(&r), "{r}");

    // The rule is the enabled IdP's: disabled, passwords work again.
    let r = set(json!({"sso_only": true, "break_glass_user": acme.users[0], "enabled": false})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let again = app.anonymous().login("acme", "user1@acme.example", common::PASSWORD).await;
    assert_eq!(again.status, StatusCode::OK, "{again}");
}

#[tokio::test]
async fn a_person_in_a_mapped_saml_group_is_provisioned_with_its_role_and_a_group_never_makes_an_owner() {
    let World { db, app, idp, acme, .. } = world().await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    const ENTRA_GROUPS: &str = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups";
    let r = admin
        .put(
            "/api/v1/settings/saml",
            json!({"allowed_domains": ["acme.example"], "groups_attribute": ENTRA_GROUPS,
                   "group_mapping": {"root": {"role": "owner"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    assert!(r.text.contains("group_mapping"), "{r}");
    let r = admin
        .put(
            "/api/v1/settings/saml",
            json!({"allowed_domains": ["acme.example"], "groups_attribute": ENTRA_GROUPS,
                   "group_mapping": {"finance-team": {"role": "finance", "department": "OPS"}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(r.body["identity_provider"]["groups_attribute"], json!(ENTRA_GROUPS), "{r}");
    let mut admin_conn = db.admin_conn().await;
    sqlx::query("update tenants set join_policy = 'auto_join'").execute(&mut admin_conn).await.expect("auto join");

    let browser = app.anonymous();
    let entra = url::form_urlencoded::byte_serialize(ENTRA_GROUPS.as_bytes()).collect::<String>();
    // Pat's groups under the configured attribute: provisioned as finance in OPS.
    let s = start(&browser, "acme").await;
    let posted = idp
        .respond(
            &s.authn_request_url,
            "pat@acme.example",
            "good",
            &format!("&groups=ap-clerks,finance-team&groups_attribute={entra}"),
        )
        .await;
    assert!(posted.xml().contains("finance-team"), "the IdP sent the groups");
    let r = post(&browser, &s.cookie, &posted).await;
    assert!(signed_in(&r), "{r}");
    // Nat has the same group under another attribute name: not this organisation's, not mapped.
    let s = start(&browser, "acme").await;
    let posted = idp
        .respond(&s.authn_request_url, "nat@acme.example", "good", "&groups=finance-team&groups_attribute=memberOf")
        .await;
    let r = post(&browser, &s.cookie, &posted).await;
    assert!(signed_in(&r), "{r}");

    let role_of = |email: &'static str| {
        let db = &db;
        async move {
            let mut admin = db.admin_conn().await;
            sqlx::query_as::<_, (String, Option<uuid::Uuid>)>(
                "select m.role::text, m.department_id from memberships m join users u on u.id = m.user_id
                  where u.email = $1 and m.status = 'active'",
            )
            .bind(email)
            .fetch_one(&mut admin)
            .await
            .expect(email)
        }
    };
    assert_eq!(role_of("pat@acme.example").await, ("finance".to_owned(), Some(acme.department)));
    assert_eq!(role_of("nat@acme.example").await.0, "staff");
    assert_eq!(audit_count(&db, acme.id, "membership.sso_mapped").await, 1);
}

#[tokio::test]
async fn test_connection_reports_the_real_idp_and_fails_clearly_for_a_dead_sso_url() {
    let World { db: _db, app, idp, .. } = world().await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let r = admin.post("/api/v1/settings/saml/test", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(r.body["ok"], json!(true), "{r}");
    assert_eq!(r.body["idp_entity_id"], json!(format!("{}/metadata", idp.base)), "{r}");
    assert_eq!(r.body["sso_url"], json!(format!("{}/sso", idp.base)), "{r}");
    assert_eq!(r.body["sso_url_reachable"], json!(true), "{r}");
    assert_eq!(r.body["sso_url_status"], json!(400), "a bare GET, no request: {r}");
    let cert = &r.body["certificates"][0];
    assert_eq!(cert["subject"], json!("CN=test-idp"), "{r}");
    // The test IdP's certificate is made for two days: valid, and warned about.
    assert_eq!(cert["expired"], json!(false), "{r}");
    assert_eq!(cert["expiring_soon"], json!(true), "{r}");
    assert!(cert["days_left"].as_i64().is_some_and(|d| (0..=2).contains(&d)), "{r}");
    assert!(r.body["warnings"].to_string().contains("CN=test-idp"), "{r}");
    // Staff may not run it; another organisation without an IdP has nothing to test.
    let staff_beta = app.sign_in("beta", "user1@beta.example").await;
    assert_eq!(staff_beta.post("/api/v1/settings/saml/test", json!({})).await.status, StatusCode::FORBIDDEN);
    let beta = app.sign_in("beta", "user0@beta.example").await;
    let r = beta.post("/api/v1/settings/saml/test", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    assert_eq!(r.code(), "saml_not_configured", "{r}");

    // The same IdP, its SSO URL a port where nothing listens: a clear failure, not a 5xx.
    let dead = format!("http://127.0.0.1:{}/sso", common::tools::free_port());
    let metadata = idp.metadata().await.replace(&format!("{}/sso", idp.base), &dead);
    let r = configure(&app, "beta", &metadata).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let r = beta.post("/api/v1/settings/saml/test", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(r.body["ok"], json!(false), "{r}");
    assert_eq!(r.body["code"], json!("saml_idp_unreachable"), "{r}");
    assert_eq!(r.body["sso_url_reachable"], json!(false), "{r}");
    assert!(r.body["error"].as_str().is_some_and(|e| e.contains(&dead)), "{r}");

    // The settings page runs it too and says what it found.
    let (page_admin, _) = app.anonymous().sign_in_browser("acme", "user0@acme.example").await;
    let page = page_admin.post_form("/settings/saml/test", &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("id=\"saml-test-result\""), "{}", page.text);
    assert!(page.text.contains("Connected:") && page.text.contains("CN=test-idp"), "{}", page.text);
    assert!(page.text.contains("Warning:"), "{}", page.text);
}

#[tokio::test]
async fn the_settings_page_sets_saml_sso_only_and_group_mapping_keeping_the_stored_metadata() {
    let World { db, app, acme, .. } = world().await;
    let (admin, _) = app.anonymous().sign_in_browser("acme", "user0@acme.example").await;
    let page = admin.get("/settings").await;
    assert!(page.text.contains("Test SAML connection"), "{}", page.text);
    // A group that would make an owner: refused in words, nothing changed.
    let r = admin
        .post_form(
            "/settings/saml",
            &[("metadata_xml", ""), ("domains", "acme.example"), ("group_mapping", "root = owner")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("id=\"saml-error\"") && r.text.contains("owner"), "{}", r.text);
    assert_eq!(audit_count(&db, acme.id, "saml.config_changed").await, 1);
    let r = admin
        .without_redirects()
        .post_form(
            "/settings/saml",
            &[
                ("metadata_xml", ""),
                ("domains", "acme.example"),
                ("groups_attribute", "memberOf"),
                ("group_mapping", "finance-team = finance, OPS"),
                ("sso_only", "yes"),
                ("break_glass", "user0@acme.example"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    // (The administrator is now the break-glass account: a new sign-in would meet a second factor.)
    let api = admin.get("/api/v1/settings/saml").await;
    let idp = &api.body["identity_provider"];
    assert_eq!(idp["sso_only"], json!(true), "{api}");
    assert_eq!(idp["break_glass_user"], json!(acme.users[0]), "{api}");
    assert_eq!(idp["groups_attribute"], json!("memberOf"), "{api}");
    assert_eq!(idp["group_mapping"]["finance-team"]["role"], json!("finance"), "{api}");
    assert_eq!(idp["signing_certificates"], json!(1), "the stored metadata was kept: {api}");
    let page = admin.get("/settings?done=saml").await;
    assert!(
        page.text.contains("finance-team = finance, OPS") && page.text.contains("single sign-on only"),
        "{}",
        page.text
    );
}
