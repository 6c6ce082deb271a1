//! "Test connection" for an organisation's SAML identity provider, as OpenID Connect's
//! ([`crate::signin::oidc::Sso::test_connection`]): from the stored metadata, the IdP's entity id,
//! whether its single sign-on URL answers (one GET, no redirect followed, a short timeout), and
//! each signing certificate's subject and expiry — an expired one fails the test, one expiring
//! within [`EXPIRY_WARNING_DAYS`] is a warning. A test that reaches nothing is the test's answer
//! (`ok: false` and a stable code), not an error.

use std::time::Duration;

use samael::service_provider::ServiceProvider;
use serde::Serialize;
use store::TenantTx;

use crate::IdentityError;
use crate::signin::oidc::Sso;
use crate::signin::saml_config;

/// How long the SSO URL may take to answer.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A signing certificate expiring within this many days is warned about.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// One signing certificate in the IdP's metadata.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CertificateCheck {
    /// The subject's distinguished name, e.g. `CN=idp.example.com`.
    pub subject: String,
    /// When it stops being valid (RFC 3339).
    pub not_after: String,
    /// Whole days until then (negative once expired).
    pub days_left: i64,
    pub expired: bool,
    /// Not expired, but expiring within 30 days.
    pub expiring_soon: bool,
}

/// The outcome of a SAML "test connection".
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SamlConnectionTest {
    /// The SSO URL answered and no signing certificate has expired.
    pub ok: bool,
    /// Set when `ok` is false: `saml_idp_unreachable`, `saml_certificate_expired`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub idp_entity_id: String,
    pub sso_url: String,
    /// Whether the SSO URL answered HTTP at all (any status below 500).
    pub sso_url_reachable: bool,
    /// The status it answered a bare GET with (an IdP answers one without a request with a
    /// 4xx or a page; a redirect is reported, not followed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sso_url_status: Option<u16>,
    pub certificates: Vec<CertificateCheck>,
    /// What deserves attention without failing the test, in words.
    pub warnings: Vec<String>,
}

fn certificate(cert: &openssl::x509::X509Ref) -> Result<CertificateCheck, IdentityError> {
    let internal = |e: openssl::error::ErrorStack| IdentityError::Internal(format!("certificate: {e}"));
    let subject = cert
        .subject_name()
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let epoch = openssl::asn1::Asn1Time::from_unix(0).map_err(internal)?;
    let since = epoch.diff(cert.not_after()).map_err(internal)?;
    let not_after = chrono::DateTime::from_timestamp(i64::from(since.days) * 86_400 + i64::from(since.secs), 0)
        .ok_or_else(|| IdentityError::Internal("certificate expiry out of range".into()))?;
    let left = not_after - chrono::Utc::now();
    let expired = left <= chrono::TimeDelta::zero();
    Ok(CertificateCheck {
        subject,
        not_after: not_after.to_rfc3339(),
        days_left: left.num_days(),
        expired,
        expiring_soon: !expired && left.num_days() < EXPIRY_WARNING_DAYS,
    })
}

/// Tests the organisation's stored IdP now; `Ok(None)` when it has none.
///
/// # Errors
/// `Internal` when the stored metadata or a certificate cannot be read (it was checked on upload).
pub async fn test_connection(sso: &Sso, tx: &mut TenantTx) -> Result<Option<SamlConnectionTest>, IdentityError> {
    let Some((config, parsed)) = saml_config::load(tx).await? else { return Ok(None) };
    let sp = ServiceProvider { idp_metadata: parsed.metadata, ..ServiceProvider::default() };
    let certs = sp
        .idp_signing_certs()
        .map_err(|e| IdentityError::Internal(format!("stored SAML certificates: {e}")))?
        .unwrap_or_default();
    let certificates = certs.iter().map(|c| certificate(c)).collect::<Result<Vec<_>, _>>()?;
    let mut warnings = Vec::new();
    let mut failure: Option<(&str, String)> = None;
    let answer = sso.http.get(&config.sso_url).timeout(TEST_TIMEOUT).send().await;
    let (reachable, status) = match answer {
        Ok(r) => {
            let status = r.status();
            if status.is_server_error() {
                failure = Some(("saml_idp_unreachable", format!("{} answered {status}", config.sso_url)));
            } else if status == reqwest::StatusCode::NOT_FOUND {
                warnings.push(format!("{} answered 404 Not Found: check the URL in the metadata", config.sso_url));
            }
            (!status.is_server_error(), Some(status.as_u16()))
        }
        Err(e) => {
            let why = if e.is_timeout() {
                format!("{} did not answer within {} seconds", config.sso_url, TEST_TIMEOUT.as_secs())
            } else {
                // The innermost cause says it best ("Connection refused", a DNS failure, …).
                let mut cause: &dyn std::error::Error = &e;
                while let Some(inner) = cause.source() {
                    cause = inner;
                }
                format!("{} could not be reached: {cause}", config.sso_url)
            };
            failure = Some(("saml_idp_unreachable", why));
            (false, None)
        }
    };
    for c in &certificates {
        if c.expired {
            let words = format!("the signing certificate {} expired on {}", c.subject, c.not_after);
            if failure.is_none() {
                failure = Some(("saml_certificate_expired", words));
            } else {
                warnings.push(words);
            }
        } else if c.expiring_soon {
            warnings.push(format!(
                "the signing certificate {} expires in {} day(s), on {}: ask for the IdP's new metadata",
                c.subject, c.days_left, c.not_after
            ));
        }
    }
    Ok(Some(SamlConnectionTest {
        ok: failure.is_none(),
        code: failure.as_ref().map(|(c, _)| (*c).to_owned()),
        error: failure.map(|(_, w)| w),
        idp_entity_id: config.idp_entity_id,
        sso_url: config.sso_url,
        sso_url_reachable: reachable,
        sso_url_status: status,
        certificates,
        warnings,
    }))
}
