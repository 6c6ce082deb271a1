//! An organisation's SAML 2.0 identity provider: its metadata document as the administrator
//! uploaded it — entity id, the HTTP-Redirect single sign-on URL, and at least one signing
//! certificate — and the email domains it may vouch for.
//!
//! Metadata without a signing certificate is refused: samael verifies nothing when it has no
//! certificate, so such an IdP's responses could be forged by anyone. As for OIDC, the domains
//! must be among the organisation's proven joining domains. As for OIDC too: the attribute that
//! carries a person's groups and their mapping to a role and department at provisioning, and the
//! SSO-only rule with its one break-glass account (checked by the same functions,
//! [`oidc_config::check_group_mapping`], [`oidc_config::check_break_glass`]).

use std::collections::BTreeMap;

use audit::{Changes, Entity, Event, Who};
use samael::metadata::EntityDescriptor;
use samael::service_provider::ServiceProvider;
use serde::{Deserialize, Serialize};
use store::TenantTx;
use uuid::Uuid;

use crate::IdentityError;
use crate::signin::oidc_config::{self, GroupGrant};

/// The HTTP-Redirect binding: how the AuthnRequest reaches the IdP.
pub const REDIRECT_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
/// The largest metadata document accepted.
pub const MAX_METADATA_BYTES: usize = 256 * 1024;

/// The stored configuration (the metadata's parts that matter, and the rules).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SamlConfig {
    /// The IdP's entity id (the `Issuer` its assertions must carry).
    pub idp_entity_id: String,
    /// Where the AuthnRequest is sent (HTTP-Redirect binding).
    pub sso_url: String,
    /// How many signing certificates the metadata holds (responses verify against them).
    pub signing_certificates: i32,
    pub allowed_domains: Vec<String>,
    /// The assertion attribute (its `Name` or `FriendlyName`) that lists the person's groups.
    pub groups_attribute: String,
    /// For people provisioned by a sign-in: the first of their groups mapped here gives their
    /// role (never owner) and department.
    pub group_mapping: BTreeMap<String, GroupGrant>,
    /// Members sign in only through this IdP; passwords and email codes are refused, except for
    /// the break-glass account (always with a second factor).
    pub sso_only: bool,
    pub break_glass_user: Option<Uuid>,
    pub enabled: bool,
}

/// What an administrator sets: the IdP's metadata XML and the domains it may vouch for.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSamlConfig {
    /// The identity provider's SAML 2.0 metadata (an `EntityDescriptor` with an
    /// `IDPSSODescriptor`, a signing certificate and an HTTP-Redirect `SingleSignOnService`).
    /// Left out: the stored one is kept (required the first time).
    #[serde(default)]
    pub metadata_xml: Option<String>,
    pub allowed_domains: Vec<String>,
    /// Default `groups`; e.g. `http://schemas.microsoft.com/ws/2008/06/identity/claims/groups`.
    #[serde(default)]
    pub groups_attribute: Option<String>,
    #[serde(default)]
    pub group_mapping: BTreeMap<String, GroupGrant>,
    #[serde(default)]
    pub sso_only: bool,
    /// Required when `sso_only`: an active owner or administrator.
    #[serde(default)]
    pub break_glass_user: Option<Uuid>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// The metadata's parts, once it is accepted.
pub(crate) struct Parsed {
    pub metadata: EntityDescriptor,
    pub entity_id: String,
    pub sso_url: String,
    pub certificates: usize,
}

fn bad(reason: impl Into<String>) -> IdentityError {
    IdentityError::invalid("metadata_xml", reason)
}

/// An `https` URL, or `http` on loopback (a test IdP).
fn acceptable_url(s: &str) -> bool {
    let Ok(url) = url::Url::parse(s) else { return false };
    let loopback = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || url.host_str() == Some("localhost");
    (url.scheme() == "https" || (url.scheme() == "http" && loopback)) && url.username().is_empty() && s.len() <= 2000
}

/// Reads an IdP metadata document.
///
/// # Errors
/// `Invalid` naming `metadata_xml`: too large, a DTD, not an IdP `EntityDescriptor`, no entity
/// id, no HTTP-Redirect single sign-on service at an https URL, no signing certificate, or a
/// certificate that does not parse.
pub(crate) fn parse(xml: &str) -> Result<Parsed, IdentityError> {
    if xml.trim().is_empty() || xml.len() > MAX_METADATA_BYTES {
        return Err(bad("the identity provider's metadata XML, at most 256 KiB"));
    }
    if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
        return Err(bad("metadata with a DTD is not accepted"));
    }
    let metadata: EntityDescriptor =
        xml.parse().map_err(|_| bad("not a SAML 2.0 metadata document (an EntityDescriptor)"))?;
    let entity_id = metadata.entity_id.clone().map(|e| e.trim().to_owned()).unwrap_or_default();
    if entity_id.is_empty() || entity_id.len() > 500 || entity_id.chars().any(char::is_control) {
        return Err(bad("the metadata has no entity id (1-500 characters)"));
    }
    let sp = ServiceProvider { idp_metadata: metadata.clone(), ..ServiceProvider::default() };
    if metadata.idp_sso_descriptors.as_ref().is_none_or(Vec::is_empty) {
        return Err(bad("the metadata describes no identity provider (IDPSSODescriptor)"));
    }
    let sso_url = sp
        .sso_binding_location(REDIRECT_BINDING)
        .ok_or_else(|| bad("the identity provider offers no HTTP-Redirect single sign-on service"))?;
    if !acceptable_url(&sso_url) {
        return Err(bad("the single sign-on service must be an https URL"));
    }
    let certificates = match sp.idp_signing_certs() {
        Ok(Some(c)) if !c.is_empty() => c.len(),
        Ok(_) => {
            return Err(bad(
                "the metadata has no signing certificate: responses could not be verified, so it is refused",
            ));
        }
        Err(_) => return Err(bad("a signing certificate in the metadata does not parse")),
    };
    if certificates > 20 {
        return Err(bad("at most 20 signing certificates"));
    }
    Ok(Parsed { metadata, entity_id, sso_url, certificates })
}

struct Row {
    idp_entity_id: String,
    sso_url: String,
    signing_certs: i32,
    allowed_domains: Vec<String>,
    groups_attribute: String,
    group_mapping: serde_json::Value,
    sso_only: bool,
    break_glass_user: Option<Uuid>,
    enabled: bool,
    metadata_xml: String,
}

impl Row {
    fn config(&self) -> Result<SamlConfig, IdentityError> {
        Ok(SamlConfig {
            idp_entity_id: self.idp_entity_id.clone(),
            sso_url: self.sso_url.clone(),
            signing_certificates: self.signing_certs,
            allowed_domains: self.allowed_domains.clone(),
            groups_attribute: self.groups_attribute.clone(),
            group_mapping: serde_json::from_value(self.group_mapping.clone())
                .map_err(|e| IdentityError::Internal(format!("stored SAML group mapping: {e}")))?,
            sso_only: self.sso_only,
            break_glass_user: self.break_glass_user,
            enabled: self.enabled,
        })
    }
}

async fn row(tx: &mut TenantTx) -> Result<Option<Row>, IdentityError> {
    Ok(sqlx::query_as!(
        Row,
        r#"select idp_entity_id, sso_url, signing_certs, allowed_domains::text[] as "allowed_domains!",
                  groups_attribute, group_mapping, sso_only, break_glass_user, enabled, metadata_xml
             from saml_configs"#
    )
    .fetch_optional(tx.conn())
    .await?)
}

/// The organisation's IdP, or `None` when it has none.
pub async fn get(tx: &mut TenantTx) -> Result<Option<SamlConfig>, IdentityError> {
    row(tx).await?.map(|r| r.config()).transpose()
}

/// The configuration with its parsed metadata, for a sign-in in flight.
pub(crate) async fn load(tx: &mut TenantTx) -> Result<Option<(SamlConfig, Parsed)>, IdentityError> {
    let Some(r) = row(tx).await? else { return Ok(None) };
    let parsed = parse(&r.metadata_xml).map_err(|e| IdentityError::Internal(format!("stored SAML metadata: {e}")))?;
    Ok(Some((r.config()?, parsed)))
}

/// Creates or replaces the organisation's IdP (owner/admin: `SettingsManage`); audited as
/// `saml.config_changed` with the changed fields.
///
/// # Errors
/// `Invalid` naming `metadata_xml` (see [`parse`]; or none given and none stored),
/// `allowed_domains` (none, or one the organisation has not proven), `groups_attribute`,
/// `group_mapping` (to `owner`, an unknown department) or `break_glass_user` (none while
/// SSO-only, or not an active owner/admin); `Forbidden` for a permit of another action or
/// organisation.
pub async fn put(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    new: &NewSamlConfig,
) -> Result<SamlConfig, IdentityError> {
    crate::permitted(permit, authz::Action::SettingsManage, tx)?;
    let tenant = tx.tenant().as_uuid();
    sqlx::query!("select id from tenants where id = $1 for update", tenant)
        .fetch_one(tx.conn())
        .await
        .map_err(IdentityError::from_store("organisation"))?;
    let proven = crate::directory::tenants::joining(tx).await?.domains;
    let mut domains: Vec<String> = Vec::new();
    for d in &new.allowed_domains {
        let d = d.trim().trim_start_matches('@').to_lowercase();
        if d.is_empty() {
            continue;
        }
        if !proven.contains(&d) {
            return Err(IdentityError::invalid(
                "allowed_domains",
                format!("{d}: not one of this organisation's joining domains (Settings → Joining)"),
            ));
        }
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    if domains.is_empty() || domains.len() > 20 {
        return Err(IdentityError::invalid("allowed_domains", "one to twenty of the organisation's joining domains"));
    }
    domains.sort();
    let groups_attribute = oidc_config::claim_name("groups_attribute", new.groups_attribute.as_deref(), "groups")?;
    oidc_config::check_group_mapping(tx, &new.group_mapping).await?;
    oidc_config::check_break_glass(tx, new.sso_only, new.break_glass_user).await?;
    let mapping = serde_json::to_value(&new.group_mapping).map_err(|e| IdentityError::Internal(e.to_string()))?;
    let before = row(tx).await?;
    let metadata_xml = match (&new.metadata_xml, &before) {
        (Some(m), _) => m.clone(),
        (None, Some(b)) => b.metadata_xml.clone(),
        (None, None) => return Err(bad("the identity provider's metadata XML is required")),
    };
    let parsed = parse(&metadata_xml)?;
    let certs = i32::try_from(parsed.certificates).map_err(|_| bad("too many certificates"))?;
    sqlx::query!(
        "insert into saml_configs (tenant_id, id, idp_entity_id, sso_url, metadata_xml, signing_certs,
                                   allowed_domains, enabled, groups_attribute, group_mapping, sso_only,
                                   break_glass_user)
         values ($1, $2, $3, $4, $5, $6, $7::text[]::citext[], $8, $9, $10, $11, $12)
         on conflict (tenant_id) do update set
             idp_entity_id = excluded.idp_entity_id, sso_url = excluded.sso_url,
             metadata_xml = excluded.metadata_xml, signing_certs = excluded.signing_certs,
             allowed_domains = excluded.allowed_domains, enabled = excluded.enabled,
             groups_attribute = excluded.groups_attribute, group_mapping = excluded.group_mapping,
             sso_only = excluded.sso_only, break_glass_user = excluded.break_glass_user, updated_at = now()",
        tenant,
        Uuid::now_v7(),
        parsed.entity_id,
        parsed.sso_url,
        metadata_xml,
        certs,
        &domains,
        new.enabled,
        groups_attribute,
        mapping,
        new.sso_only,
        new.break_glass_user,
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("SAML configuration"))?;
    let after = get(tx).await?.ok_or_else(|| IdentityError::Internal("SAML configuration vanished".into()))?;
    let old = before.as_ref().map(Row::config).transpose()?;
    let mut changes = Changes::diff(old.as_ref(), Some(&after))?;
    if before.as_ref().is_none_or(|b| b.metadata_xml != metadata_xml) {
        changes = changes.field("metadata_xml", None::<&str>, "replaced");
    }
    let event = Event::new("saml.config_changed", Entity::of("saml_config", tenant)?, changes)?;
    audit::record_by(tx, who, &event).await?;
    Ok(after)
}
