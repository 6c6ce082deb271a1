//! SAML 2.0 sign-in as a service provider, SP-initiated only, ending in the same session (or MFA
//! challenge) an OpenID Connect sign-in gives ([`crate::signin::oidc::sign_in_person`]).
//!
//! [`begin`] makes an AuthnRequest (HTTP-Redirect binding) with a random id, remembered in the
//! organisation's `saml_requests` for ten minutes with the hash of a random browser binding (the
//! caller puts it in a cookie). [`acs`] takes the IdP's POSTed response: the requests this
//! browser started are looked up by the binding, the response is verified
//! ([`crate::signin::saml_verify`]: signatures, wrapping, algorithms, audience, recipient,
//! destination, times, `InResponseTo`), its assertion id goes into the replay cache (a database
//! table, so a replay to another node fails too), and only then is the request spent. The
//! address must be at one of the organisation's allowed domains.

use audit::{Actor, Changes, Entity, Event, Origin};
use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use store::{Store, TenantId};
use uuid::Uuid;

use crate::signin::mfa::{Factors, LoginOutcome};
use crate::signin::oidc::{Person, Via, sign_in_person};
use crate::signin::saml_config;
use crate::signin::saml_verify::{self, Expect, refused};
use crate::signin::sessions::Authenticator;
use crate::{EmailAddress, IdentityError};

/// How long a started sign-in may take at the IdP.
pub const REQUEST_TTL_SECS: i32 = 600;

/// This organisation's service provider, as the IdP knows it.
#[derive(Clone, Debug)]
pub struct SpEndpoints {
    /// The SP's entity id (the assertion's audience): its metadata URL.
    pub entity_id: String,
    /// The assertion consumer service (HTTP-POST binding).
    pub acs_url: String,
}

impl SpEndpoints {
    /// The SP metadata document the IdP is given: entity id, the ACS (HTTP-POST), signed
    /// assertions wanted, unsigned AuthnRequests.
    ///
    /// # Errors
    /// `Internal` if the document cannot be written.
    pub fn metadata_xml(&self) -> Result<String, IdentityError> {
        use samael::metadata::{EntityDescriptor, HTTP_POST_BINDING, IndexedEndpoint, SpSsoDescriptor};
        use samael::traits::ToXml;
        let descriptor = EntityDescriptor {
            entity_id: Some(self.entity_id.clone()),
            sp_sso_descriptors: Some(vec![SpSsoDescriptor {
                protocol_support_enumeration: Some("urn:oasis:names:tc:SAML:2.0:protocol".to_owned()),
                authn_requests_signed: Some(false),
                want_assertions_signed: Some(true),
                name_id_formats: Some(vec!["urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".to_owned()]),
                assertion_consumer_services: vec![IndexedEndpoint {
                    binding: HTTP_POST_BINDING.to_owned(),
                    location: self.acs_url.clone(),
                    index: 0,
                    is_default: Some(true),
                    ..IndexedEndpoint::default()
                }],
                ..SpSsoDescriptor::default()
            }]),
            ..EntityDescriptor::default()
        };
        descriptor.to_string().map_err(|e| IdentityError::Internal(format!("SP metadata: {e}")))
    }
}

/// The answer to [`begin`]: where to send the browser, and the binding for the cookie.
pub struct Begun {
    pub redirect_url: String,
    pub binding: SecretString,
    pub expires_in: i64,
}

fn sha256(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Starts a sign-in to `tenant` through its IdP.
///
/// # Errors
/// `Forbidden` `saml_not_configured` when the organisation has no enabled IdP.
pub async fn begin(store: &Store, tenant: TenantId, sp: &SpEndpoints) -> Result<Begun, IdentityError> {
    let mut tx = store.tenant_tx(tenant).await?;
    let config = saml_config::get(&mut tx).await?.filter(|c| c.enabled);
    let Some(config) = config else {
        tx.commit().await?;
        return Err(refused("saml_not_configured", "this organisation has no SAML single sign-on"));
    };
    let request_id = format!("_{}", random_hex());
    let request = samael::schema::AuthnRequest {
        id: request_id.clone(),
        version: "2.0".to_owned(),
        issue_instant: chrono::Utc::now(),
        destination: Some(config.sso_url.clone()),
        assertion_consumer_service_url: Some(sp.acs_url.clone()),
        protocol_binding: Some(samael::metadata::HTTP_POST_BINDING.to_owned()),
        issuer: Some(samael::schema::Issuer { value: Some(sp.entity_id.clone()), ..Default::default() }),
        name_id_policy: Some(samael::schema::NameIdPolicy {
            format: Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".to_owned()),
            allow_create: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let url = request
        .redirect("")
        .map_err(|e| IdentityError::Internal(format!("AuthnRequest: {e}")))?
        .ok_or_else(|| IdentityError::Internal("AuthnRequest without destination".into()))?;
    let binding = random_hex();
    sqlx::query!("delete from saml_requests where expires_at < now() - interval '1 hour'").execute(tx.conn()).await?;
    sqlx::query!("delete from saml_assertions_seen where keep_until < now()").execute(tx.conn()).await?;
    sqlx::query!(
        "insert into saml_requests (tenant_id, id, request_id, binding_hash, expires_at)
         values ($1, $2, $3, $4, now() + make_interval(secs => $5::int))",
        tenant.as_uuid(),
        Uuid::now_v7(),
        request_id,
        sha256(&binding),
        REQUEST_TTL_SECS,
    )
    .execute(tx.conn())
    .await?;
    tx.commit().await?;
    Ok(Begun {
        redirect_url: url.to_string(),
        binding: SecretString::from(binding),
        expires_in: i64::from(REQUEST_TTL_SECS),
    })
}

/// Completes a sign-in: the IdP's base64 `SAMLResponse` for `tenant`'s ACS, and the browser's
/// binding from its cookie. Every refusal is audited in the organisation as `auth.sso_failed`.
///
/// # Errors
/// `Forbidden` with a stable code: `saml_not_configured`, `saml_request_invalid` (no request
/// from this browser, or already used), the verification's codes (`saml_signature_invalid`,
/// `saml_signature_missing`, `saml_algorithm_refused`, `saml_wrapping_refused`,
/// `saml_xml_refused`, `saml_audience_mismatch`, `saml_recipient_mismatch`, `saml_expired`,
/// `saml_in_response_to_mismatch`, `saml_issuer_mismatch`, `saml_response_malformed`,
/// `saml_email_missing`), `saml_assertion_replayed`, `saml_email_domain_not_allowed`, and the
/// shared sign-in's `saml_identity_conflict`, `saml_membership_pending`, `saml_no_membership`.
#[allow(clippy::too_many_arguments)] // the browser's two values, and the sign-in's context
pub async fn acs(
    auth: &Authenticator,
    store: &Store,
    factors: Factors<'_>,
    tenant: TenantId,
    sp: &SpEndpoints,
    saml_response: &str,
    binding: Option<&str>,
    origin: &Origin,
) -> Result<LoginOutcome, IdentityError> {
    let result = async {
        let binding = binding.filter(|b| !b.is_empty() && b.len() <= 128).ok_or_else(|| {
            refused("saml_request_invalid", "this sign-in was not started in this browser; start again")
        })?;
        let mut tx = store.tenant_tx(tenant).await?;
        let loaded = saml_config::load(&mut tx).await?;
        let requests = sqlx::query_scalar!(
            "select request_id from saml_requests where binding_hash = $1 and expires_at > now()
              order by created_at desc limit 20",
            sha256(binding)
        )
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        let (config, parsed) = loaded
            .filter(|(c, _)| c.enabled)
            .ok_or_else(|| refused("saml_not_configured", "this organisation has no SAML single sign-on"))?;
        if requests.is_empty() {
            return Err(refused("saml_request_invalid", "this sign-in was not started in this browser, or expired"));
        }
        let xml = decode(saml_response)?;
        let verified = saml_verify::verify(
            &parsed.metadata,
            &xml,
            &Expect {
                idp_entity_id: &config.idp_entity_id,
                sp_entity_id: &sp.entity_id,
                acs_url: &sp.acs_url,
                request_ids: &requests,
                groups_attribute: &config.groups_attribute,
                now: chrono::Utc::now(),
            },
        )?;
        // The replay cache first, in its own committed transaction: an assertion is spent
        // whatever follows.
        let mut tx = store.tenant_tx(tenant).await?;
        let fresh = sqlx::query!(
            "insert into saml_assertions_seen (tenant_id, id, issuer, assertion_id, keep_until)
             values ($1, $2, $3, $4, $5) on conflict (tenant_id, issuer, assertion_id) do nothing",
            tenant.as_uuid(),
            Uuid::now_v7(),
            config.idp_entity_id,
            verified.assertion_id.chars().take(256).collect::<String>(),
            verified.keep_until,
        )
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        if fresh != 1 {
            return Err(refused("saml_assertion_replayed", "this assertion was already used"));
        }
        let mut tx = store.tenant_tx(tenant).await?;
        let spent = sqlx::query!(
            "update saml_requests set used_at = now()
              where request_id = $1 and binding_hash = $2 and used_at is null and expires_at > now()",
            verified.in_response_to,
            sha256(binding)
        )
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        if spent != 1 {
            return Err(refused("saml_request_invalid", "this sign-in was already completed; start again"));
        }
        let email = EmailAddress::parse(&verified.email)
            .map_err(|_| refused("saml_email_missing", "the identity provider's email address is malformed"))?;
        if !config.allowed_domains.iter().any(|d| d == email.domain()) {
            return Err(refused(
                "saml_email_domain_not_allowed",
                format!("{} is not at a domain this organisation signs in with", email.as_str()),
            ));
        }
        let person = Person {
            issuer: config.idp_entity_id.clone(),
            // The address is the stable identity (a transient NameID changes every time).
            subject: email.as_str().to_owned(),
            name: verified.name.map(|n| n.chars().take(200).collect()).unwrap_or_else(|| email.as_str().to_owned()),
            email,
            groups: verified.groups,
            idp_mfa: false,
            mapping: config.group_mapping.clone(),
        };
        sign_in_person(auth, store, factors, tenant, &person, origin, Via::Saml).await
    }
    .await;
    if let Err(IdentityError::Forbidden { code, reason }) = &result {
        audit_failure(store, tenant, code, reason, origin).await;
    }
    result
}

fn decode(b64: &str) -> Result<String, IdentityError> {
    use base64::Engine as _;
    let malformed = || refused("saml_response_malformed", "the SAMLResponse is not a base64 XML document");
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() || compact.len() > saml_verify::MAX_RESPONSE_BYTES * 4 / 3 + 4 {
        return Err(malformed());
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(compact).map_err(|_| malformed())?;
    String::from_utf8(bytes).map_err(|_| malformed())
}

async fn audit_failure(store: &Store, tenant: TenantId, code: &str, reason: &str, origin: &Origin) {
    let result = async {
        let mut tx = store.tenant_tx(tenant).await?;
        let event = Event::new(
            "auth.sso_failed",
            Entity::of("login", "saml")?,
            Changes::none().field("code", None::<&str>, code),
        )?
        .with_reason(&reason.chars().take(500).collect::<String>())?;
        audit::record(&mut tx, &Actor::system("auth:saml"), origin, &event).await?;
        tx.commit().await?;
        Ok::<(), IdentityError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not audit a refused SAML sign-in");
    }
}
