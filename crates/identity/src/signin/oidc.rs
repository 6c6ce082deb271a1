//! OpenID Connect sign-in: the Authorization Code flow with PKCE (S256), `state` and `nonce`,
//! ending in the same session (or MFA challenge) a password sign-in gives.
//!
//! [`Sso::begin`] stores the flow server side — hashes of the `state` and of a random browser
//! binding (the caller puts it in a cookie), the nonce and the PKCE verifier — for ten minutes.
//! [`Sso::callback`] consumes the flow in one statement (a replayed `state` finds it used), checks
//! the browser binding, exchanges the code, and verifies the ID token with the provider's keys
//! (signature, `iss`, `aud`, `exp`, `nonce`; an unknown key refetches the keys once, for rotation).
//! The email counts only when the provider says it is verified (ID token, else UserInfo) and it
//! is at one of the organisation's allowed domains. A provider identity (issuer, subject) is
//! linked to an existing account by that verified email once, audited; a new person is created
//! and joins by the organisation's joining rules. The HTTP client follows no redirects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit::{Actor, Changes, Entity, Event, Origin};
use base64::Engine as _;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use store::{Store, TenantId};
use uuid::Uuid;

use crate::directory::{joining, users};
use crate::signin::mfa::{self, Factors, FirstFactor, LoginOutcome};
use crate::signin::oidc_config::{self, OidcConfig};
use crate::signin::sessions::Authenticator;
use crate::{DepartmentCode, EmailAddress, IdentityError, MembershipStatus, Role};

/// How long a started sign-in may take at the provider.
pub const FLOW_TTL_SECS: i32 = 600;
/// How long discovery metadata and keys are reused (an unknown key refetches them sooner).
const DISCOVERY_TTL: Duration = Duration::from_secs(900);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer to [`Sso::begin`]: where to send the browser, and the binding the caller stores in
/// a cookie for the callback (never in the URL).
pub struct Begun {
    pub authorize_url: String,
    pub binding: SecretString,
    pub expires_in: i64,
}

/// What "test connection" found at the issuer.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Discovered {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub signing_keys: usize,
}

fn refused(code: &'static str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Forbidden { code, reason: reason.into() }
}

fn sha256(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// OIDC sign-in for every organisation: one HTTP client (no redirects, bounded time) and the
/// providers' discovery documents and keys, cached per issuer.
#[derive(Clone)]
pub struct Sso {
    /// Also the SAML "test connection"'s client ([`crate::signin::saml_check`]).
    pub(crate) http: reqwest::Client,
    cache: Arc<Mutex<HashMap<String, (Instant, CoreProviderMetadata)>>>,
}

impl std::fmt::Debug for Sso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sso").finish_non_exhaustive()
    }
}

impl Sso {
    /// # Errors
    /// `Internal` when the HTTP client cannot be built.
    pub fn new() -> Result<Self, IdentityError> {
        // TLS through rustls with ring, the process's one crypto provider (as for object storage).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| IdentityError::Internal(format!("OIDC HTTP client: {e}")))?;
        Ok(Self { http, cache: Arc::default() })
    }

    async fn metadata(&self, issuer: &str, fresh: bool) -> Result<CoreProviderMetadata, IdentityError> {
        if !fresh {
            let cached = self.cache.lock().ok().and_then(|c| c.get(issuer).cloned());
            if let Some((at, m)) = cached
                && at.elapsed() < DISCOVERY_TTL
            {
                return Ok(m);
            }
        }
        let url = IssuerUrl::new(issuer.to_owned())
            .map_err(|_| refused("oidc_provider_failed", "the issuer is not a URL"))?;
        let m = CoreProviderMetadata::discover_async(url, &self.http)
            .await
            .map_err(|e| refused("oidc_provider_failed", format!("discovery at {issuer} failed: {e}")))?;
        if let Ok(mut c) = self.cache.lock() {
            c.insert(issuer.to_owned(), (Instant::now(), m.clone()));
        }
        Ok(m)
    }

    /// Fetches the issuer's discovery document and keys now (the settings page's "test
    /// connection"): the issuer in it must equal the configured one byte for byte.
    ///
    /// # Errors
    /// `Forbidden` `oidc_provider_failed` naming what failed.
    pub async fn test_connection(&self, issuer: &str) -> Result<Discovered, IdentityError> {
        let m = self.metadata(issuer, true).await?;
        Ok(Discovered {
            issuer: m.issuer().as_str().to_owned(),
            authorization_endpoint: m.authorization_endpoint().as_str().to_owned(),
            token_endpoint: m.token_endpoint().map(|u| u.as_str().to_owned()),
            userinfo_endpoint: m.userinfo_endpoint().map(|u| u.as_str().to_owned()),
            signing_keys: m.jwks().keys().len(),
        })
    }

    fn client(
        m: CoreProviderMetadata,
        config: &OidcConfig,
        secret: Option<&SecretString>,
        callback: RedirectUrl,
    ) -> OidcClient {
        CoreClient::from_provider_metadata(
            m,
            ClientId::new(config.client_id.clone()),
            secret.map(|s| ClientSecret::new(s.expose_secret().to_owned())),
        )
        .set_redirect_uri(callback)
    }

    /// Starts a sign-in to `tenant` through its provider; the provider sends the browser back to
    /// `callback_url` (this deployment's callback route, registered at the provider), which the
    /// flow keeps for the code exchange.
    ///
    /// # Errors
    /// `Forbidden` `oidc_not_configured` when the organisation has no enabled provider;
    /// `oidc_provider_failed` when its discovery document cannot be had; `Invalid` for a
    /// callback that is not a URL.
    pub async fn begin(&self, store: &Store, tenant: TenantId, callback_url: &str) -> Result<Begun, IdentityError> {
        let callback = RedirectUrl::new(callback_url.to_owned())
            .map_err(|_| IdentityError::invalid("callback_url", "not a URL"))?;
        let mut tx = store.tenant_tx(tenant).await?;
        let config = oidc_config::get(&mut tx).await?;
        tx.commit().await?;
        let config = config
            .filter(|c| c.enabled)
            .ok_or_else(|| refused("oidc_not_configured", "this organisation has no single sign-on"))?;
        let client = Self::client(self.metadata(&config.issuer, false).await?, &config, None, callback.clone());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                || CsrfToken::new(random_hex()),
                || Nonce::new(random_hex()),
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        let binding = random_hex();
        let mut g = store.global_tx().await?;
        sqlx::query!("delete from oidc_flows where expires_at < now() - interval '1 hour'").execute(g.conn()).await?;
        sqlx::query!(
            "insert into oidc_flows (id, state_hash, binding_hash, organisation_id, nonce, pkce_verifier, redirect_uri, expires_at)
             values ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8::int))",
            Uuid::now_v7(),
            sha256(state.secret()),
            sha256(&binding),
            tenant.as_uuid(),
            nonce.secret(),
            verifier.secret(),
            callback.as_str(),
            FLOW_TTL_SECS,
        )
        .execute(g.conn())
        .await?;
        g.commit().await?;
        Ok(Begun {
            authorize_url: url.to_string(),
            binding: SecretString::from(binding),
            expires_in: i64::from(FLOW_TTL_SECS),
        })
    }

    /// Completes a sign-in: `state` and `code` from the provider's redirect, `binding` from the
    /// browser's cookie. Ends in a session, or an MFA challenge when the organisation requires a
    /// second factor and the provider did not assert one (`amr` containing `mfa`, or a configured
    /// `acr`). Every refusal after the flow is found is audited in its organisation.
    ///
    /// # Errors
    /// `Forbidden` with a stable code: `oidc_state_invalid` (unknown, used, expired, other browser),
    /// `oidc_provider_failed`, `oidc_token_invalid` (signature, issuer, audience, expiry, nonce),
    /// `oidc_email_unverified`, `oidc_email_domain_not_allowed`, `oidc_identity_conflict`,
    /// `oidc_membership_pending`, `oidc_no_membership`, `oidc_not_configured`; `Unauthenticated`
    /// for a disabled account or an SSO-only rule it does not meet.
    #[allow(clippy::too_many_arguments)] // the flow's three values from the browser, and the sign-in's context
    pub async fn callback(
        &self,
        auth: &Authenticator,
        store: &Store,
        factors: Factors<'_>,
        state: &str,
        code: &str,
        binding: Option<&str>,
        origin: &Origin,
    ) -> Result<LoginOutcome, IdentityError> {
        // Single use: the flow is marked used whatever follows, in its own transaction.
        let mut g = store.global_tx().await?;
        let flow = sqlx::query!(
            "update oidc_flows set used_at = now()
              where state_hash = $1 and used_at is null and expires_at > now()
             returning organisation_id, binding_hash, nonce, pkce_verifier, redirect_uri",
            sha256(state)
        )
        .fetch_optional(g.conn())
        .await?;
        g.commit().await?;
        let Some(flow) = flow else {
            return Err(refused("oidc_state_invalid", "this sign-in link is unknown, used or expired; start again"));
        };
        let tenant =
            TenantId::from_uuid(flow.organisation_id).map_err(|_| IdentityError::Internal("nil tenant".into()))?;
        let result = async {
            if binding.map(sha256).as_deref() != Some(flow.binding_hash.as_slice()) {
                return Err(refused("oidc_state_invalid", "this sign-in was started in another browser; start again"));
            }
            if code.is_empty() || code.len() > 2048 {
                return Err(refused("oidc_provider_failed", "the provider sent no authorization code"));
            }
            let person =
                self.verify(store, factors, tenant, &flow.nonce, &flow.pkce_verifier, &flow.redirect_uri, code).await?;
            sign_in_person(auth, store, factors, tenant, &person, origin, Via::Oidc).await
        }
        .await;
        if let Err(IdentityError::Forbidden { code, reason }) = &result {
            audit_failure(store, tenant, code, reason, origin).await;
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn verify(
        &self,
        store: &Store,
        factors: Factors<'_>,
        tenant: TenantId,
        nonce: &str,
        verifier: &str,
        redirect_uri: &str,
        code: &str,
    ) -> Result<Person, IdentityError> {
        let mut tx = store.tenant_tx(tenant).await?;
        let loaded = oidc_config::load(&mut tx, factors.keys).await?;
        tx.commit().await?;
        let loaded = loaded
            .filter(|l| l.config.enabled)
            .ok_or_else(|| refused("oidc_not_configured", "this organisation has no single sign-on"))?;
        let config = &loaded.config;
        let redirect =
            RedirectUrl::new(redirect_uri.to_owned()).map_err(|_| IdentityError::Internal("stored redirect".into()))?;
        let client =
            Self::client(self.metadata(&config.issuer, false).await?, config, Some(&loaded.secret), redirect.clone());
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| refused("oidc_provider_failed", format!("the provider has no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| refused("oidc_provider_failed", format!("the code was not accepted: {e}")))?;
        let id_token =
            tokens.id_token().ok_or_else(|| refused("oidc_token_invalid", "the provider sent no ID token"))?;
        let nonce = Nonce::new(nonce.to_owned());
        let first = id_token.claims(&client.id_token_verifier(), &nonce).map(|c| c.subject().to_string());
        let (client, subject) = match first {
            Ok(sub) => (client, sub),
            // An unknown or changed signing key: the provider may have rotated its keys. Fetch
            // them once more and verify again; a forged signature still fails.
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                let m = self.metadata(&config.issuer, true).await?;
                let client = Self::client(m, config, Some(&loaded.secret), redirect);
                let sub = id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .map_err(|e| refused("oidc_token_invalid", format!("the ID token was refused: {e}")))?
                    .subject()
                    .to_string();
                (client, sub)
            }
            Err(e) => return Err(refused("oidc_token_invalid", format!("the ID token was refused: {e}"))),
        };
        // Verified above: its payload read as JSON, for the organisation's own claim names.
        let raw = payload(&serde_json::to_value(id_token).map_err(|e| IdentityError::Internal(e.to_string()))?)?;
        let mut email = raw.get(&config.email_claim).and_then(Value::as_str).map(str::to_owned);
        let mut verified = config.email_claim == "email" && truthy(raw.get("email_verified"));
        if !verified && config.email_claim == "email" {
            // The ID token does not vouch for the address: ask UserInfo (its `sub` must match).
            if let Ok(req) = client
                .user_info(tokens.access_token().clone(), Some(openidconnect::SubjectIdentifier::new(subject.clone())))
                && let Ok(info) = req.request_async::<openidconnect::EmptyAdditionalClaims, _, _>(&self.http).await
            {
                let info: openidconnect::UserInfoClaims<
                    openidconnect::EmptyAdditionalClaims,
                    openidconnect::core::CoreGenderClaim,
                > = info;
                if info.email_verified() == Some(true)
                    && let Some(e) = info.email()
                {
                    email = Some(e.to_string());
                    verified = true;
                }
            }
        }
        let email = email.ok_or_else(|| refused("oidc_email_unverified", "the provider gave no email address"))?;
        if !verified {
            return Err(refused("oidc_email_unverified", format!("the provider has not verified {email}")));
        }
        let email = EmailAddress::parse(&email)
            .map_err(|_| refused("oidc_email_unverified", "the provider's email address is malformed"))?;
        if !config.allowed_domains.iter().any(|d| d == email.domain()) {
            return Err(refused(
                "oidc_email_domain_not_allowed",
                format!("{} is not at a domain this organisation signs in with", email.as_str()),
            ));
        }
        let name = raw
            .get(&config.name_claim)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map_or_else(|| email.as_str().to_owned(), |n| n.chars().take(200).collect());
        let groups: Vec<String> = match raw.get(&config.groups_claim) {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        let amr_mfa =
            raw.get("amr").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v.as_str() == Some("mfa")));
        let acr_mfa =
            raw.get("acr").and_then(Value::as_str).is_some_and(|a| config.mfa_acr_values.iter().any(|v| v == a));
        Ok(Person {
            issuer: config.issuer.clone(),
            subject,
            email,
            name,
            groups,
            idp_mfa: amr_mfa || acr_mfa,
            mapping: config.group_mapping.clone(),
        })
    }
}

/// Which single sign-on vouched for a person: it names the audit actor, the session's method
/// and the refusal codes of the shared sign-in path ([`sign_in_person`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    Oidc,
    Saml,
}

impl Via {
    fn actor(self) -> &'static str {
        match self {
            Self::Oidc => "auth:oidc",
            Self::Saml => "auth:saml",
        }
    }

    fn first_factor(self) -> FirstFactor {
        match self {
            Self::Oidc => FirstFactor::Sso,
            Self::Saml => FirstFactor::Saml,
        }
    }

    fn idp_mfa_method(self) -> &'static str {
        match self {
            Self::Oidc => "oidc+idp_mfa",
            Self::Saml => "saml+idp_mfa",
        }
    }

    fn code(self, what: &str) -> &'static str {
        match (self, what) {
            (Self::Oidc, "identity_conflict") => "oidc_identity_conflict",
            (Self::Oidc, "no_membership") => "oidc_no_membership",
            (Self::Oidc, _) => "oidc_membership_pending",
            (Self::Saml, "identity_conflict") => "saml_identity_conflict",
            (Self::Saml, "no_membership") => "saml_no_membership",
            (Self::Saml, _) => "saml_membership_pending",
        }
    }
}

/// Links (once, by the verified address) or finds the account the provider vouched for, applies
/// the organisation's joining rules, and opens the session (or the second step) — the one path
/// both OpenID Connect and SAML sign-ins end in.
#[allow(clippy::too_many_lines)]
pub(crate) async fn sign_in_person(
    auth: &Authenticator,
    store: &Store,
    factors: Factors<'_>,
    tenant: TenantId,
    p: &Person,
    origin: &Origin,
    via: Via,
) -> Result<LoginOutcome, IdentityError> {
    let mut g = store.global_tx().await?;
    let linked = sqlx::query_scalar!(
        "select user_id from oidc_identities where issuer = $1 and subject = $2",
        p.issuer,
        p.subject
    )
    .fetch_optional(g.conn())
    .await?;
    let mut provisioned = false;
    let user = if let Some(u) = linked {
        u
    } else {
        // Linked once, by the verified address: an account found by it gets this identity
        // (unless it already has another subject at this issuer); a new person is created.
        let user = match users::find_by_email(&mut g, &p.email).await? {
            Some(u) => u.id,
            None => {
                provisioned = true;
                let who = audit::Who::new(Actor::system(via.actor()), origin.clone());
                users::create(&mut g, &who, &p.email, &p.name).await?.id
            }
        };
        let inserted = sqlx::query!(
            "insert into oidc_identities (issuer, subject, user_id, organisation_id) values ($1, $2, $3, $4)
             on conflict do nothing",
            p.issuer,
            p.subject,
            user,
            tenant.as_uuid()
        )
        .execute(g.conn())
        .await?
        .rows_affected();
        if inserted != 1 {
            drop(g); // rolls back: no account was created or changed
            return Err(refused(
                via.code("identity_conflict"),
                "this account is already linked to another identity at this provider",
            ));
        }
        sqlx::query!("update users set email_verified_at = now() where id = $1 and email_verified_at is null", user)
            .execute(g.conn())
            .await?;
        let event = Event::new(
            "auth.sso_linked",
            Entity::of("user", user)?,
            Changes::none()
                .field("issuer", None::<&str>, p.issuer.as_str())
                .field("subject", None::<&str>, p.subject.as_str())
                .field("organisation_id", None::<Uuid>, tenant.as_uuid()),
        )?
        .with_reason(if provisioned {
            "provisioned by single sign-on"
        } else {
            "linked by verified email"
        })?;
        audit::record_platform(g.conn(), &Actor::system(via.actor()), origin, &event).await?;
        user
    };
    // The organisation's joining rules, as for any newly verified address.
    let joined = joining::after_email_verified(&mut g, user).await?;
    g.commit().await?;

    let mut tx = store.tenant_tx(tenant).await?;
    if linked.is_none() {
        let event = Event::new(
            "auth.sso_linked",
            Entity::of("user", user)?,
            Changes::none().field("issuer", None::<&str>, p.issuer.as_str()).field(
                "subject",
                None::<&str>,
                p.subject.as_str(),
            ),
        )?
        .with_reason(if provisioned {
            "provisioned by single sign-on"
        } else {
            "linked by verified email"
        })?;
        audit::record(&mut tx, &Actor::system(via.actor()), origin, &event).await?;
    }
    let membership = sqlx::query!(
        "select id, status from memberships where user_id = $1 and deleted_at is null
            and valid_from <= now() and (valid_until is null or valid_until > now())",
        user
    )
    .fetch_optional(tx.conn())
    .await?;
    let Some(membership) = membership else {
        tx.commit().await?;
        return Err(refused(
            via.code("no_membership"),
            "you are not a member of this organisation; ask its administrator",
        ));
    };
    if membership.status == MembershipStatus::Pending.as_str() {
        tx.commit().await?;
        return Err(refused(
            via.code("membership_pending"),
            "your request to join waits for an administrator's approval",
        ));
    }
    let just_joined = joined.iter().any(|(t, s)| *t == tenant && *s == MembershipStatus::Active);
    if just_joined {
        apply_groups(&mut tx, membership.id, p, origin, via).await?;
    }
    tx.commit().await?;

    if p.idp_mfa {
        // The provider asserted more than one factor: honoured, unless passwords'
        // break-glass rules say otherwise (they do not apply to SSO).
        return auth.open_session(store, tenant, user, origin, via.idp_mfa_method()).await.map(LoginOutcome::Issued);
    }
    mfa::after_first_factor(auth, store, factors, tenant, user, via.first_factor(), origin).await
}

type OidcClient = openidconnect::core::CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// A person as the provider vouched for them.
pub(crate) struct Person {
    pub issuer: String,
    pub subject: String,
    pub email: EmailAddress,
    pub name: String,
    pub groups: Vec<String>,
    pub idp_mfa: bool,
    pub mapping: std::collections::BTreeMap<String, oidc_config::GroupGrant>,
}

/// `true` or `"true"` (some providers send the string).
fn truthy(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true))) || matches!(v, Some(Value::String(s)) if s == "true")
}

/// The payload of a compact JWT (already verified) as JSON.
fn payload(jwt: &Value) -> Result<serde_json::Map<String, Value>, IdentityError> {
    let bad = || refused("oidc_token_invalid", "the ID token is malformed");
    let jwt = jwt.as_str().ok_or_else(bad)?;
    let part = jwt.split('.').nth(1).ok_or_else(bad)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|_| bad())?;
    match serde_json::from_slice(&bytes).map_err(|_| bad())? {
        Value::Object(m) => Ok(m),
        _ => Err(bad()),
    }
}

/// A person provisioned just now: the first of their groups (in name order) that the organisation
/// maps gives their role and department, audited as `membership.sso_mapped`.
async fn apply_groups(
    tx: &mut store::TenantTx,
    membership: Uuid,
    p: &Person,
    origin: &Origin,
    via: Via,
) -> Result<(), IdentityError> {
    let Some((group, grant)) = p.mapping.iter().find(|(g, _)| p.groups.contains(g)) else { return Ok(()) };
    if grant.role == Role::Owner {
        return Ok(());
    }
    let department = match &grant.department {
        Some(code) => {
            let code = DepartmentCode::parse(code)?;
            sqlx::query_scalar!("select id from departments where code = $1", code.as_str())
                .fetch_optional(tx.conn())
                .await?
        }
        None => None,
    };
    sqlx::query!(
        "update memberships set role = $2, department_id = coalesce($3, department_id), updated_at = now() where id = $1",
        membership,
        grant.role.as_str(),
        department
    )
    .execute(tx.conn())
    .await?;
    let event = Event::new(
        "membership.sso_mapped",
        Entity::of("membership", membership)?,
        Changes::none()
            .field("role", Some("staff"), grant.role.as_str())
            .field("department_id", None::<Uuid>, department)
            .field("group", None::<&str>, group.as_str()),
    )?;
    audit::record(tx, &Actor::system(via.actor()), origin, &event).await?;
    Ok(())
}

async fn audit_failure(store: &Store, tenant: TenantId, code: &str, reason: &str, origin: &Origin) {
    let result = async {
        let mut tx = store.tenant_tx(tenant).await?;
        let event = Event::new(
            "auth.sso_failed",
            Entity::of("login", "oidc")?,
            Changes::none().field("code", None::<&str>, code),
        )?
        .with_reason(&reason.chars().take(500).collect::<String>())?;
        audit::record(&mut tx, &Actor::system("auth:oidc"), origin, &event).await?;
        tx.commit().await?;
        Ok::<(), IdentityError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not audit a refused single sign-on");
    }
}
