//! OpenID Connect single sign-on against a real provider (npm `oidc-provider`, started per test),
//! attacked: a wrong, replayed or other-browser `state`; an ID token with another nonce, signed
//! by a key the provider never published, for another audience, or expired; an unverified
//! address; an address outside the organisation's domains; one organisation's provider used to
//! reach another's members; passwords in an SSO-only organisation; an account linked twice. And
//! what should work: linking by verified email (once, audited), just-in-time provisioning by the
//! joining rules with the group mapping, key rotation, the provider's MFA honoured.

mod common;

use std::sync::Arc;

use common::oidc::{CLIENT_ID, CLIENT_SECRET, Provider, account, code_and_state};
use common::{PASSWORD, audit_count, operator, org, with_password};
use identity::signin::lockout::NamedOrganisation;
use identity::signin::mail::{Mailer, OutboxMailer};
use identity::signin::mfa::{Factors, LoginOutcome};
use identity::signin::oidc::Sso;
use identity::signin::oidc_config::{self, GroupGrant, NewOidcConfig, Preset};
use identity::signin::secret_box::SecretBox;
use identity::signin::sessions::{Authenticator, LoginPolicy};
use identity::{EmailAddress, IdentityError, Role};
use secrecy::SecretString;
use serde_json::json;
use store::TenantId;
use store::testing::TestDb;

const CALLBACK: &str = "http://127.0.0.1:9/auth/oidc/callback";

struct World {
    db: TestDb,
    sso: Sso,
    auth: Authenticator,
    keys: SecretBox,
    mailer: Arc<dyn Mailer>,
}

impl World {
    async fn new() -> Self {
        let db = TestDb::new().await;
        let keys = SecretBox::ephemeral();
        let mailer: Arc<dyn Mailer> = Arc::new(OutboxMailer::new(db.store.clone(), Arc::new(keys.clone())));
        let auth = Authenticator {
            hasher: identity::signin::passwords::Hasher::new(1).expect("hasher"),
            key: common::app::token_key(),
            policy: LoginPolicy::default(),
        };
        Self { db, sso: Sso::new().expect("sso"), auth, keys, mailer }
    }

    fn factors(&self) -> Factors<'_> {
        Factors { keys: &self.keys, mailer: &self.mailer }
    }

    async fn configure(
        &self,
        tenant: TenantId,
        provider: &Provider,
        change: impl FnOnce(&mut NewOidcConfig),
    ) -> Result<(), IdentityError> {
        let domain = {
            let mut tx = self.db.store.tenant_tx(tenant).await.expect("tx");
            let j = identity::directory::tenants::joining(&mut tx).await.expect("joining");
            tx.commit().await.expect("commit");
            j.domains
        };
        let mut new = NewOidcConfig {
            preset: Preset::Generic,
            issuer: provider.issuer.clone(),
            client_id: CLIENT_ID.into(),
            client_secret: Some(SecretString::from(CLIENT_SECRET)),
            allowed_domains: domain,
            email_claim: None,
            name_claim: None,
            groups_claim: None,
            group_mapping: Default::default(),
            mfa_acr_values: vec![],
            sso_only: false,
            break_glass_user: None,
            enabled: true,
        };
        change(&mut new);
        let mut tx = self.db.store.tenant_tx(tenant).await.expect("tx");
        oidc_config::put(&mut tx, &common::who(), &operator(authz::Action::SettingsManage, tenant), &self.keys, &new)
            .await?;
        tx.commit().await.expect("commit");
        Ok(())
    }

    /// A full sign-in: begin, the provider's login page as `login`, the callback.
    async fn sso(&self, tenant: TenantId, provider: &Provider, login: &str) -> Result<LoginOutcome, IdentityError> {
        let begun = self.sso.begin(&self.db.store, tenant, CALLBACK).await?;
        let back = provider.sign_in(&begun.authorize_url, login, "provider-pass").await;
        let (code, state) = code_and_state(&back);
        let binding = secrecy::ExposeSecret::expose_secret(&begun.binding).to_owned();
        self.sso
            .callback(&self.auth, &self.db.store, self.factors(), &state, &code, Some(&binding), &audit::Origin::none())
            .await
    }

    async fn password(&self, tenant: TenantId, email: &str) -> Result<LoginOutcome, IdentityError> {
        self.auth
            .login(
                &self.db.store,
                self.factors(),
                NamedOrganisation::resolved(tenant),
                &EmailAddress::parse(email).expect("email"),
                &SecretString::from(PASSWORD),
                &audit::Origin::none(),
            )
            .await
    }

    async fn sql(&self, q: &str) {
        let mut admin = self.db.admin_conn().await;
        sqlx::query(q).execute(&mut admin).await.expect(q);
    }

    async fn count(&self, q: &str) -> i64 {
        let mut admin = self.db.admin_conn().await;
        sqlx::query_scalar(q).fetch_one(&mut admin).await.expect(q)
    }
}

#[track_caller]
fn refused(r: Result<LoginOutcome, IdentityError>, want: &str) -> String {
    match r {
        Err(IdentityError::Forbidden { code, reason }) if code == want => reason,
        Err(e) => panic!("expected {want}, got {e:?}"),
        Ok(o) => panic!("expected {want}, got a sign-in: {o:?}"),
    }
}

#[track_caller]
fn issued(r: Result<LoginOutcome, IdentityError>) -> identity::signin::sessions::Issued {
    match r {
        Ok(LoginOutcome::Issued(i)) => i,
        other => panic!("expected a session, got {other:?}"),
    }
}

#[tokio::test]
async fn a_member_signs_in_with_a_verified_email_and_is_linked_once_on_record() {
    let w = World::new().await;
    let acme = org(&w.db, "acme").await;
    let idp = Provider::start(CALLBACK, vec![account("ada", "sub-ada", "user0@acme.example", true)]);
    w.configure(acme.id, &idp, |_| {}).await.expect("configure");

    let first = issued(w.sso(acme.id, &idp, "ada").await);
    assert_eq!((first.tenant, first.user_id, first.role), (acme.id, acme.users[0], Role::Admin));
    let second = issued(w.sso(acme.id, &idp, "ada").await);
    assert_eq!(second.user_id, acme.users[0]);
    assert_ne!(first.session_id, second.session_id);
    // Linked by the verified address once: one link, one event in the organisation's chain.
    assert_eq!(audit_count(&w.db, acme.id, "auth.sso_linked").await, 1);
    assert_eq!(w.count("select count(*) from oidc_identities").await, 1);
    assert_eq!(audit_count(&w.db, acme.id, "auth.login_succeeded").await, 2);
    // The same sessions password sign-in mints: revocation applies to them.
    let mut tx = w.db.store.tenant_tx(acme.id).await.expect("tx");
    assert!(identity::signin::sessions::check(&mut tx, second.session_id).await.expect("check").is_some());
    tx.commit().await.expect("commit");
    // The client secret is sealed: the database never holds it in the clear.
    let clear = w
        .count(&format!(
            "select count(*) from oidc_configs where position('{CLIENT_SECRET}'::bytea in secret_ciphertext) > 0"
        ))
        .await;
    assert_eq!(clear, 0);
}

#[tokio::test]
async fn a_wrong_replayed_or_other_browser_state_is_refused() {
    let w = World::new().await;
    let acme = org(&w.db, "acme").await;
    let idp = Provider::start(CALLBACK, vec![account("ada", "sub-ada", "user0@acme.example", true)]);
    w.configure(acme.id, &idp, |_| {}).await.expect("configure");
    let cb = |state: String, code: String, binding: Option<String>| {
        let w = &w;
        async move {
            w.sso
                .callback(&w.auth, &w.db.store, w.factors(), &state, &code, binding.as_deref(), &audit::Origin::none())
                .await
        }
    };

    // A state we never issued.
    let begun = w.sso.begin(&w.db.store, acme.id, CALLBACK).await.expect("begin");
    let binding = secrecy::ExposeSecret::expose_secret(&begun.binding).to_owned();
    let (code, state) = code_and_state(&idp.sign_in(&begun.authorize_url, "ada", "provider-pass").await);
    refused(cb("made-up-state".into(), code.clone(), Some(binding.clone())).await, "oidc_state_invalid");
    // The right state from another browser (login CSRF: an attacker's flow finished in the
    // victim's browser): refused, and the flow is spent.
    refused(cb(state.clone(), code.clone(), Some("0".repeat(64))).await, "oidc_state_invalid");
    refused(cb(state.clone(), code.clone(), None).await, "oidc_state_invalid");
    refused(cb(state.clone(), code.clone(), Some(binding.clone())).await, "oidc_state_invalid");

    // A completed sign-in replayed (state and code again): refused.
    let begun = w.sso.begin(&w.db.store, acme.id, CALLBACK).await.expect("begin");
    let binding = secrecy::ExposeSecret::expose_secret(&begun.binding).to_owned();
    let (code, state) = code_and_state(&idp.sign_in(&begun.authorize_url, "ada", "provider-pass").await);
    issued(cb(state.clone(), code.clone(), Some(binding.clone())).await);
    refused(cb(state, code.clone(), Some(binding)).await, "oidc_state_invalid");
    // The spent code under a fresh flow of our own: the provider refuses it (and PKCE differs).
    let begun = w.sso.begin(&w.db.store, acme.id, CALLBACK).await.expect("begin");
    let binding = secrecy::ExposeSecret::expose_secret(&begun.binding).to_owned();
    let (_, fresh_state) = code_and_state(&idp.sign_in(&begun.authorize_url, "ada", "provider-pass").await);
    refused(cb(fresh_state, code, Some(binding)).await, "oidc_provider_failed");
    // An expired flow.
    let begun = w.sso.begin(&w.db.store, acme.id, CALLBACK).await.expect("begin");
    let binding = secrecy::ExposeSecret::expose_secret(&begun.binding).to_owned();
    let (code, state) = code_and_state(&idp.sign_in(&begun.authorize_url, "ada", "provider-pass").await);
    w.sql("update oidc_flows set expires_at = now() - interval '1 second' where used_at is null").await;
    refused(cb(state, code, Some(binding)).await, "oidc_state_invalid");
    // Every refusal after a flow was found is on record in its organisation.
    // (the other browser's attempt and the spent code; the others never found a flow).
    assert_eq!(audit_count(&w.db, acme.id, "auth.sso_failed").await, 2);
    assert_eq!(audit_count(&w.db, acme.id, "auth.login_succeeded").await, 1);
}

#[tokio::test]
async fn forged_misaddressed_expired_or_other_nonce_id_tokens_are_refused_and_rotation_is_followed() {
    let w = World::new().await;
    let acme = org(&w.db, "acme").await;
    let idp = Provider::start(CALLBACK, vec![account("ada", "sub-ada", "user0@acme.example", true)]);
    w.configure(acme.id, &idp, |_| {}).await.expect("configure");
    for (mode, says) in [("forge", "signature"), ("aud", "audience"), ("nonce", "nonce"), ("expired", "expire")] {
        idp.mode(Some(mode)).await;
        let reason = refused(w.sso(acme.id, &idp, "ada").await, "oidc_token_invalid");
        assert!(reason.to_lowercase().contains(says), "{mode}: {reason}");
    }
    // Nothing was linked or opened by any of them.
    assert_eq!(w.count("select count(*) from oidc_identities").await, 0);
    assert_eq!(audit_count(&w.db, acme.id, "auth.login_succeeded").await, 0);
    assert_eq!(audit_count(&w.db, acme.id, "auth.sso_failed").await, 4);
    // The provider rotates its key: the new key is fetched once and the sign-in succeeds.
    idp.mode(Some("rotate")).await;
    issued(w.sso(acme.id, &idp, "ada").await);
}

#[tokio::test]
async fn an_unverified_address_is_not_linked_and_one_outside_the_domains_is_refused() {
    let w = World::new().await;
    let acme = org(&w.db, "acme").await;
    let idp = Provider::start(
        CALLBACK,
        vec![
            account("mallory", "sub-mallory", "user0@acme.example", false),
            account("outsider", "sub-outsider", "someone@globex.example", true),
        ],
    );
    w.configure(acme.id, &idp, |_| {}).await.expect("configure");
    let reason = refused(w.sso(acme.id, &idp, "mallory").await, "oidc_email_unverified");
    assert!(reason.contains("user0@acme.example"), "{reason}");
    refused(w.sso(acme.id, &idp, "outsider").await, "oidc_email_domain_not_allowed");
    assert_eq!(w.count("select count(*) from oidc_identities").await, 0);
    assert_eq!(w.count("select count(*) from users where email = 'someone@globex.example'").await, 0);
    // Nor can the provider be allowed a domain the organisation has not proven.
    let e = w
        .configure(acme.id, &idp, |c| c.allowed_domains = vec!["globex.example".into()])
        .await
        .expect_err("unproven domain");
    assert!(matches!(e, IdentityError::Invalid { field: "allowed_domains", .. }), "{e:?}");
}

#[tokio::test]
async fn one_organisations_provider_cannot_sign_anyone_into_another() {
    let w = World::new().await;
    let acme = org(&w.db, "acme").await;
    let globex = org(&w.db, "globex").await;
    // Globex's provider (its administrators control it) asserts an Acme address, verified.
    let globex_idp = Provider::start(CALLBACK, vec![account("fake", "sub-fake", "user0@acme.example", true)]);
    w.configure(globex.id, &globex_idp, |_| {}).await.expect("configure");
    let e = w
        .configure(globex.id, &globex_idp, |c| c.allowed_domains = vec!["acme.example".into()])
        .await
        .expect_err("acme");
    assert!(matches!(e, IdentityError::Invalid { field: "allowed_domains", .. }), "{e:?}");
    refused(w.sso(globex.id, &globex_idp, "fake").await, "oidc_email_domain_not_allowed");
    // Acme has no provider: its members cannot be reached through SSO at all.
    assert!(matches!(
        w.sso.begin(&w.db.store, acme.id, CALLBACK).await,
        Err(IdentityError::Forbidden { code: "oidc_not_configured", .. })
    ));
    // A Globex flow whose state is presented while Acme configures the same provider: the flow
    // stays Globex's, so an Acme member gets nothing there.
    w.configure(acme.id, &globex_idp, |_| {}).await.expect("acme configure");
    refused(w.sso(globex.id, &globex_idp, "fake").await, "oidc_email_domain_not_allowed");
    assert_eq!(w.count("select count(*) from oidc_identities").await, 0);
    assert_eq!(w.count("select count(*) from sessions").await, 2, "only the fixtures' sessions");
}

#[tokio::test]
async fn an_sso_only_organisation_refuses_passwords_except_its_break_glass_owner_with_mfa() {
    let w = World::new().await;
    let acme = org(&w.db, "acme").await;
    for u in &acme.users {
        with_password(&w.db, *u).await;
    }
    let idp = Provider::start(CALLBACK, vec![account("sam", "sub-sam", "user1@acme.example", true)]);
    // Before SSO-only: staff sign in with a password.
    issued(w.password(acme.id, "user1@acme.example").await);
    // SSO-only needs a break-glass account, and only an owner or administrator can be it.
    let e = w.configure(acme.id, &idp, |c| c.sso_only = true).await.expect_err("no break-glass");
    assert!(matches!(e, IdentityError::Invalid { field: "break_glass_user", .. }), "{e:?}");
    let e = w
        .configure(acme.id, &idp, |c| {
            c.sso_only = true;
            c.break_glass_user = Some(acme.users[1]);
        })
        .await
        .expect_err("staff break-glass");
    assert!(matches!(e, IdentityError::Invalid { field: "break_glass_user", .. }), "{e:?}");
    w.configure(acme.id, &idp, |c| {
        c.sso_only = true;
        c.break_glass_user = Some(acme.users[0]);
    })
    .await
    .expect("sso only");

    // The right password of a member: refused like a wrong one, on record as `sso_only`.
    assert!(matches!(w.password(acme.id, "user1@acme.example").await, Err(IdentityError::Unauthenticated)));
    assert!(matches!(w.password(acme.id, "user2@acme.example").await, Err(IdentityError::Unauthenticated)));
    let mut tx = w.db.store.tenant_tx(acme.id).await.expect("tx");
    let why: i64 = sqlx::query_scalar(
        "select count(*) from audit_events where action = 'auth.login_failed' and reason = 'sso_only'",
    )
    .fetch_one(tx.conn())
    .await
    .expect("count");
    tx.commit().await.expect("commit");
    assert_eq!(why, 2);
    // The break-glass owner signs in with a password, and always meets a second factor.
    assert!(matches!(w.password(acme.id, "user0@acme.example").await, Ok(LoginOutcome::MfaRequired(_))));
    // Staff sign in through the provider.
    let s = issued(w.sso(acme.id, &idp, "sam").await);
    assert_eq!(s.user_id, acme.users[1]);
}

#[tokio::test]
async fn newcomers_are_provisioned_by_the_joining_rules_with_their_groups_mapped() {
    let w = World::new().await;
    let acme = org(&w.db, "acme").await;
    let mut pat = account("pat", "sub-pat", "pat@acme.example", true);
    pat.1["claims"]["groups"] = json!(["ap-clerks", "finance-team"]);
    let idp = Provider::start(CALLBACK, vec![account("nat", "sub-nat", "nat@acme.example", true), pat]);
    w.configure(acme.id, &idp, |c| {
        c.group_mapping
            .insert("finance-team".into(), GroupGrant { role: Role::Finance, department: Some("OPS".into()) });
    })
    .await
    .expect("configure");
    let e = w
        .configure(acme.id, &idp, |c| {
            c.group_mapping.insert("root".into(), GroupGrant { role: Role::Owner, department: None });
        })
        .await
        .expect_err("owner by group");
    assert!(matches!(e, IdentityError::Invalid { field: "group_mapping", .. }), "{e:?}");

    // Admin approval (the fixture's rule): the newcomer exists, waits, and gets no session.
    refused(w.sso(acme.id, &idp, "nat").await, "oidc_membership_pending");
    assert_eq!(w.count("select count(*) from memberships where status = 'pending'").await, 1);
    assert_eq!(
        w.count("select count(*) from users where email = 'nat@acme.example' and email_verified_at is not null").await,
        1
    );
    // Auto-join: in at once, with the role and department of the mapped group.
    w.sql("update tenants set join_policy = 'auto_join'").await;
    let s = issued(w.sso(acme.id, &idp, "pat").await);
    assert_eq!(s.role, Role::Finance);
    assert_eq!(
        w.count(&format!(
            "select count(*) from memberships where user_id = '{}' and department_id = '{}' and status = 'active'",
            s.user_id, acme.department
        ))
        .await,
        1
    );
    assert_eq!(audit_count(&w.db, acme.id, "membership.sso_mapped").await, 1);
    assert_eq!(audit_count(&w.db, acme.id, "membership.joined_by_domain").await, 2);
}

#[tokio::test]
async fn the_providers_mfa_is_honoured_otherwise_a_local_second_factor_is_required() {
    let w = World::new().await;
    let acme = org(&w.db, "acme").await;
    let mut strong = account("strong", "sub-strong", "user1@acme.example", true);
    strong.1["amr"] = json!(["pwd", "mfa"]);
    let idp = Provider::start(CALLBACK, vec![strong, account("weak", "sub-weak", "user2@acme.example", true)]);
    w.configure(acme.id, &idp, |_| {}).await.expect("configure");
    w.sql("update tenants set require_mfa = true").await;
    issued(w.sso(acme.id, &idp, "strong").await);
    assert!(matches!(w.sso(acme.id, &idp, "weak").await, Ok(LoginOutcome::MfaRequired(_))));
}

#[tokio::test]
async fn an_account_is_linked_to_one_subject_per_provider() {
    let w = World::new().await;
    let acme = org(&w.db, "acme").await;
    let idp = Provider::start(
        CALLBACK,
        vec![
            account("one", "sub-one", "user1@acme.example", true),
            account("two", "sub-two", "user1@acme.example", true),
        ],
    );
    w.configure(acme.id, &idp, |_| {}).await.expect("configure");
    issued(w.sso(acme.id, &idp, "one").await);
    // A second provider account claiming the same verified address does not take the account over.
    refused(w.sso(acme.id, &idp, "two").await, "oidc_identity_conflict");
    assert_eq!(w.count("select count(*) from oidc_identities").await, 1);
    assert_eq!(audit_count(&w.db, acme.id, "auth.sso_linked").await, 1);
}

#[test]
fn presets_give_strict_issuers_and_entra_common_is_refused() {
    assert_eq!(Preset::Google.issuer("anything").expect("google"), "https://accounts.google.com");
    assert_eq!(
        Preset::Entra.issuer("72f988bf-86f1-41af-91ab-2d7cd011db47").expect("entra"),
        "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"
    );
    for t in ["common", "organizations", "consumers", "https://login.microsoftonline.com/common/v2.0"] {
        assert!(matches!(Preset::Entra.issuer(t), Err(IdentityError::Invalid { field: "issuer", .. })), "{t}");
    }
    for bad in ["http://idp.example", "ftp://idp.example", "https://idp.example/?x=1", "not a url"] {
        assert!(Preset::Generic.issuer(bad).is_err(), "{bad}");
    }
    assert!(Preset::Generic.issuer("http://127.0.0.1:8080").is_ok(), "loopback http for local providers");
}

#[tokio::test]
async fn the_settings_api_keeps_the_secret_write_only_and_to_administrators_of_the_organisation() {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    let globex = org(&db, "globex").await;
    for u in acme.users.iter().chain(&globex.users) {
        with_password(&db, *u).await;
    }
    let idp = Provider::start(CALLBACK, vec![]);
    let app = common::TestApp::setup(&db).roomy().start().await;
    let admin = app.anonymous().sign_in("acme", "user0@acme.example").await;
    let staff = app.anonymous().sign_in("acme", "user1@acme.example").await;
    let other = app.anonymous().sign_in("globex", "user0@globex.example").await;
    const PATH: &str = "/api/v1/settings/oidc";

    let r = admin.get(PATH).await;
    assert_eq!((r.status.as_u16(), r.code()), (404, "oidc_not_configured"), "{}", r.body);
    let body = json!({
        "preset": "generic", "issuer": idp.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "allowed_domains": ["acme.example"],
        "group_mapping": {"finance-team": {"role": "finance", "department": "OPS"}},
    });
    // Staff may not; bad input is a 4xx naming the field; unknown fields are refused.
    assert_eq!(staff.put(PATH, body.clone()).await.status.as_u16(), 403);
    let r = admin.put(PATH, json!({"preset": "entra", "issuer": "common", "client_id": "x", "client_secret": "y", "allowed_domains": ["acme.example"]})).await;
    assert_eq!((r.status.as_u16(), r.code()), (422, "invalid_field"), "{}", r.body);
    let r = admin
        .put(
            PATH,
            json!({"preset": "generic", "issuer": idp.issuer, "client_id": "x", "allowed_domains": ["acme.example"]}),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (422, "invalid_field"), "first configuration needs a secret: {}", r.body);
    let r = admin.put(PATH, json!({"preset": "generic", "surprise": 1})).await;
    assert_eq!(r.status.as_u16(), 422, "{}", r.body);

    let r = admin.put(PATH, body).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    assert_eq!(r.body["issuer"], json!(idp.issuer));
    assert!(!r.body.to_string().contains(CLIENT_SECRET), "the secret is never answered: {}", r.body);
    let r = admin.get(PATH).await;
    assert_eq!(r.body["group_mapping"]["finance-team"]["role"], json!("finance"));
    assert!(!r.body.to_string().contains(CLIENT_SECRET));
    assert_eq!(audit_count(&db, acme.id, "oidc.config_changed").await, 1);
    // Another organisation's administrator sees only their own (none).
    assert_eq!(other.get(PATH).await.code(), "oidc_not_configured");
    assert_eq!(audit_count(&db, globex.id, "oidc.config_changed").await, 0);

    // "Test connection": the provider's discovery document, fetched now.
    let r = admin.post("/api/v1/settings/oidc/test", json!({})).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    assert_eq!(r.body["ok"], json!(true), "{}", r.body);
    assert_eq!(r.body["issuer"], json!(idp.issuer));
    assert_eq!(r.body["signing_keys"], json!(1));
    drop(idp);
    // A provider that cannot be reached is the test's outcome, answered as such (not a 5xx).
    let r = admin.post("/api/v1/settings/oidc/test", json!({})).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    assert_eq!((&r.body["ok"], &r.body["code"]), (&json!(false), &json!("oidc_provider_failed")), "{}", r.body);
    assert!(r.body["error"].as_str().is_some_and(|e| e.contains("discovery")), "{}", r.body);
    assert!(r.body.get("issuer").is_none(), "{}", r.body);
}
