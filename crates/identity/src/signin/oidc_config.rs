//! An organisation's OpenID Connect provider: issuer (by preset or discovery URL), client id, the
//! client secret sealed with [`SecretBox`] bound to the organisation, the email domains it may
//! vouch for, claim names, the group mapping applied when a person is provisioned, and the
//! SSO-only rule with its one break-glass account.
//!
//! The domains a provider may vouch for must be among the organisation's proven joining domains
//! ([`crate::directory::tenants::set_joining`]): an organisation's identity provider can never
//! assert an address at a domain the organisation has no verified people at.

use std::collections::BTreeMap;
use std::fmt;

use audit::{Changes, Entity, Event, Who};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use store::TenantTx;
use uuid::Uuid;

use crate::signin::secret_box::{Sealed, SecretBox};
use crate::{DepartmentCode, IdentityError, Role};

/// Google's one issuer.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
/// Entra ID's multi-tenant pseudo-tenants: their discovery documents carry a `{tenantid}`
/// placeholder issuer that never matches an ID token strictly, so they are refused.
const ENTRA_MULTI_TENANT: [&str; 3] = ["common", "organizations", "consumers"];

/// Which kind of provider: presets derive the issuer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Any OpenID Connect provider, by its issuer URL.
    Generic,
    /// Google Workspace: issuer `https://accounts.google.com`.
    Google,
    /// Microsoft Entra ID: the `issuer` field is the directory (tenant) id or its domain.
    Entra,
}

impl Preset {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Google => "google",
            Self::Entra => "entra",
        }
    }

    fn parse(s: &str) -> Result<Self, IdentityError> {
        match s {
            "generic" => Ok(Self::Generic),
            "google" => Ok(Self::Google),
            "entra" => Ok(Self::Entra),
            _ => Err(IdentityError::Internal(format!("unknown OIDC preset {s}"))),
        }
    }

    /// The strict issuer URL for this preset and what the administrator typed.
    ///
    /// # Errors
    /// `Invalid` naming `issuer`: not an https URL (http only on loopback), an Entra
    /// multi-tenant pseudo-tenant, or an Entra tenant that is not an id or a domain.
    pub fn issuer(self, given: &str) -> Result<String, IdentityError> {
        let given = given.trim();
        match self {
            Self::Google => Ok(GOOGLE_ISSUER.to_owned()),
            Self::Entra => {
                let t = given.trim_matches('/').to_ascii_lowercase();
                let t = t
                    .strip_prefix("https://login.microsoftonline.com/")
                    .map_or(t.as_str(), |rest| rest.split('/').next().unwrap_or_default())
                    .to_owned();
                if ENTRA_MULTI_TENANT.contains(&t.as_str()) {
                    return Err(IdentityError::invalid(
                        "issuer",
                        format!(
                            "Entra's `{t}` issuer does not match ID tokens strictly; give your directory (tenant) id"
                        ),
                    ));
                }
                if t.is_empty()
                    || t.len() > 253
                    || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                {
                    return Err(IdentityError::invalid("issuer", "an Entra directory (tenant) id or domain"));
                }
                Ok(format!("https://login.microsoftonline.com/{t}/v2.0"))
            }
            Self::Generic => {
                let url = url::Url::parse(given).map_err(|_| IdentityError::invalid("issuer", "not a URL"))?;
                let loopback = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
                    || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                    || url.host_str() == Some("localhost");
                let ok_scheme = url.scheme() == "https" || (url.scheme() == "http" && loopback);
                if !ok_scheme || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
                    return Err(IdentityError::invalid("issuer", "an https URL without query or fragment"));
                }
                if given.len() > 500 {
                    return Err(IdentityError::invalid("issuer", "at most 500 characters"));
                }
                // The issuer is compared byte for byte with `iss`: keep it as typed (no added '/').
                Ok(given.to_owned())
            }
        }
    }
}

/// What membership a provider group gives a person provisioned through SSO.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupGrant {
    pub role: Role,
    /// A department code of this organisation.
    #[serde(default)]
    pub department: Option<String>,
}

/// The stored configuration, without its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OidcConfig {
    pub preset: Preset,
    pub issuer: String,
    pub client_id: String,
    pub allowed_domains: Vec<String>,
    pub email_claim: String,
    pub name_claim: String,
    pub groups_claim: String,
    pub group_mapping: BTreeMap<String, GroupGrant>,
    pub mfa_acr_values: Vec<String>,
    pub sso_only: bool,
    pub break_glass_user: Option<Uuid>,
    pub enabled: bool,
}

/// What an administrator sets. `client_secret: None` keeps the stored one (required the first time).
#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOidcConfig {
    pub preset: Preset,
    /// Generic: the issuer URL; Entra: the directory id or domain; Google: ignored.
    #[serde(default)]
    pub issuer: String,
    pub client_id: String,
    #[schema(value_type = Option<String>)]
    #[serde(default, deserialize_with = "secret")]
    pub client_secret: Option<SecretString>,
    pub allowed_domains: Vec<String>,
    #[serde(default)]
    pub email_claim: Option<String>,
    #[serde(default)]
    pub name_claim: Option<String>,
    #[serde(default)]
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub group_mapping: BTreeMap<String, GroupGrant>,
    #[serde(default)]
    pub mfa_acr_values: Vec<String>,
    #[serde(default)]
    pub sso_only: bool,
    #[serde(default)]
    pub break_glass_user: Option<Uuid>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(SecretString::from))
}

fn yes() -> bool {
    true
}

impl fmt::Debug for NewOidcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewOidcConfig")
            .field("preset", &self.preset)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The configuration with its opened secret, for a sign-in in flight.
pub(crate) struct Loaded {
    pub config: OidcConfig,
    pub secret: SecretString,
}

fn aad(tenant: Uuid) -> Vec<u8> {
    format!("countersign:oidc_config:v1:{tenant}").into_bytes()
}

pub(crate) fn claim_name(field: &'static str, v: Option<&str>, default: &str) -> Result<String, IdentityError> {
    let v = v.map_or(default, str::trim);
    if v.is_empty() || v.len() > 100 || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_:./-".contains(&b)) {
        return Err(IdentityError::invalid(field, "a claim name of 1-100 letters, digits or _:./-"));
    }
    Ok(v.to_owned())
}

struct Row {
    preset: String,
    issuer: String,
    client_id: String,
    secret_key_id: String,
    secret_nonce: Vec<u8>,
    secret_ciphertext: Vec<u8>,
    allowed_domains: Vec<String>,
    email_claim: String,
    name_claim: String,
    groups_claim: String,
    group_mapping: serde_json::Value,
    mfa_acr_values: Vec<String>,
    sso_only: bool,
    break_glass_user: Option<Uuid>,
    enabled: bool,
}

impl Row {
    fn config(&self) -> Result<OidcConfig, IdentityError> {
        Ok(OidcConfig {
            preset: Preset::parse(&self.preset)?,
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            allowed_domains: self.allowed_domains.clone(),
            email_claim: self.email_claim.clone(),
            name_claim: self.name_claim.clone(),
            groups_claim: self.groups_claim.clone(),
            group_mapping: serde_json::from_value(self.group_mapping.clone())
                .map_err(|e| IdentityError::Internal(format!("stored group mapping: {e}")))?,
            mfa_acr_values: self.mfa_acr_values.clone(),
            sso_only: self.sso_only,
            break_glass_user: self.break_glass_user,
            enabled: self.enabled,
        })
    }
}

async fn row(tx: &mut TenantTx) -> Result<Option<Row>, IdentityError> {
    Ok(sqlx::query_as!(
        Row,
        r#"select preset, issuer, client_id, secret_key_id, secret_nonce, secret_ciphertext,
                  allowed_domains::text[] as "allowed_domains!", email_claim, name_claim, groups_claim,
                  group_mapping, mfa_acr_values, sso_only, break_glass_user, enabled
             from oidc_configs"#
    )
    .fetch_optional(tx.conn())
    .await?)
}

/// The organisation's provider, without its secret; `None` when it has none.
pub async fn get(tx: &mut TenantTx) -> Result<Option<OidcConfig>, IdentityError> {
    row(tx).await?.map(|r| r.config()).transpose()
}

/// The configuration and its opened secret (re-sealed under the current key when stale).
pub(crate) async fn load(tx: &mut TenantTx, keys: &SecretBox) -> Result<Option<Loaded>, IdentityError> {
    let Some(r) = row(tx).await? else { return Ok(None) };
    let tenant = tx.tenant().as_uuid();
    let sealed = Sealed {
        key_id: r.secret_key_id.clone(),
        nonce: r.secret_nonce.clone(),
        ciphertext: r.secret_ciphertext.clone(),
    };
    let opened = keys.open(&sealed, &aad(tenant))?;
    let secret = String::from_utf8(opened.plaintext.expose_secret().to_vec())
        .map_err(|_| IdentityError::Internal("OIDC client secret is not UTF-8".into()))?;
    if opened.stale {
        let fresh = keys.seal(secret.as_bytes(), &aad(tenant))?;
        sqlx::query!(
            "update oidc_configs set secret_key_id = $1, secret_nonce = $2, secret_ciphertext = $3",
            fresh.key_id,
            fresh.nonce,
            fresh.ciphertext
        )
        .execute(tx.conn())
        .await?;
    }
    Ok(Some(Loaded { config: r.config()?, secret: SecretString::from(secret) }))
}

/// Creates or replaces the organisation's provider (owner/admin: `SettingsManage`); audited as
/// `oidc.config_changed` with the changed fields (the secret only as "replaced").
///
/// # Errors
/// `Invalid` naming the field: issuer (see [`Preset::issuer`]), client id, a domain the
/// organisation has not proven, a claim name, a group mapping to `owner` or an unknown department,
/// a break-glass account that is not an active owner/admin (it always meets a second factor at
/// sign-in: [`crate::signin::mfa::after_first_factor`]), a missing secret
/// on first configuration. `Forbidden` for a permit of another action or organisation.
pub async fn put(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    keys: &SecretBox,
    new: &NewOidcConfig,
) -> Result<OidcConfig, IdentityError> {
    crate::permitted(permit, authz::Action::SettingsManage, tx)?;
    let tenant = tx.tenant().as_uuid();
    let issuer = new.preset.issuer(&new.issuer)?;
    let client_id = new.client_id.trim();
    if client_id.is_empty() || client_id.len() > 500 || client_id.chars().any(char::is_control) {
        return Err(IdentityError::invalid("client_id", "1-500 characters"));
    }
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
    if domains.is_empty() {
        return Err(IdentityError::invalid("allowed_domains", "at least one of the organisation's joining domains"));
    }
    domains.sort();
    let email_claim = claim_name("email_claim", new.email_claim.as_deref(), "email")?;
    let name_claim = claim_name("name_claim", new.name_claim.as_deref(), "name")?;
    let groups_claim = claim_name("groups_claim", new.groups_claim.as_deref(), "groups")?;
    check_group_mapping(tx, &new.group_mapping).await?;
    if new.mfa_acr_values.len() > 10 || new.mfa_acr_values.iter().any(|v| v.is_empty() || v.len() > 200) {
        return Err(IdentityError::invalid("mfa_acr_values", "at most 10 values of 1-200 characters"));
    }
    check_break_glass(tx, new.sso_only, new.break_glass_user).await?;
    let before = row(tx).await?;
    let sealed = match (&new.client_secret, &before) {
        (Some(s), _) => {
            let s = s.expose_secret().trim();
            if s.is_empty() || s.len() > 4096 {
                return Err(IdentityError::invalid("client_secret", "1-4096 characters"));
            }
            Some(keys.seal(s.as_bytes(), &aad(tenant))?)
        }
        (None, Some(_)) => None,
        (None, None) => return Err(IdentityError::invalid("client_secret", "required")),
    };
    let mapping = serde_json::to_value(&new.group_mapping).map_err(|e| IdentityError::Internal(e.to_string()))?;
    // The secret to store: the new one, else the stored one. The insert's row must carry it too:
    // its CHECK constraints are tested before ON CONFLICT turns it into an update.
    let kept = sealed.as_ref().map(|s| (s.key_id.clone(), s.nonce.clone(), s.ciphertext.clone())).or_else(|| {
        before.as_ref().map(|b| (b.secret_key_id.clone(), b.secret_nonce.clone(), b.secret_ciphertext.clone()))
    });
    sqlx::query!(
        "insert into oidc_configs (tenant_id, id, preset, issuer, client_id, secret_key_id, secret_nonce,
                                   secret_ciphertext, allowed_domains, email_claim, name_claim, groups_claim,
                                   group_mapping, mfa_acr_values, sso_only, break_glass_user, enabled)
         values ($1, $2, $3, $4, $5, coalesce($6, ''), coalesce($7, ''::bytea), coalesce($8, ''::bytea),
                 $9::text[]::citext[], $10, $11, $12, $13, $14, $15, $16, $17)
         on conflict (tenant_id) do update set
             preset = excluded.preset, issuer = excluded.issuer, client_id = excluded.client_id,
             secret_key_id = coalesce($6, oidc_configs.secret_key_id),
             secret_nonce = coalesce($7, oidc_configs.secret_nonce),
             secret_ciphertext = coalesce($8, oidc_configs.secret_ciphertext),
             allowed_domains = excluded.allowed_domains, email_claim = excluded.email_claim,
             name_claim = excluded.name_claim, groups_claim = excluded.groups_claim,
             group_mapping = excluded.group_mapping, mfa_acr_values = excluded.mfa_acr_values,
             sso_only = excluded.sso_only, break_glass_user = excluded.break_glass_user,
             enabled = excluded.enabled, updated_at = now()",
        tenant,
        Uuid::now_v7(),
        new.preset.as_str(),
        issuer,
        client_id,
        kept.as_ref().map(|k| k.0.clone()),
        kept.as_ref().map(|k| k.1.clone()),
        kept.as_ref().map(|k| k.2.clone()),
        &domains,
        email_claim,
        name_claim,
        groups_claim,
        mapping,
        &new.mfa_acr_values,
        new.sso_only,
        new.break_glass_user,
        new.enabled,
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("OIDC configuration"))?;
    let after = get(tx).await?.ok_or_else(|| IdentityError::Internal("OIDC configuration vanished".into()))?;
    let old = before.as_ref().map(Row::config).transpose()?;
    let mut changes = Changes::diff(old.as_ref(), Some(&after))?;
    if sealed.is_some() {
        changes = changes.field("client_secret", None::<&str>, "replaced");
    }
    let event = Event::new("oidc.config_changed", Entity::of("oidc_config", tenant)?, changes)?;
    audit::record_by(tx, who, &event).await?;
    Ok(after)
}

/// A provider's group mapping (OpenID Connect's or SAML's): at most 100 groups of 1-200
/// characters, never to `owner`, departments of this organisation.
///
/// # Errors
/// `Invalid` naming `group_mapping`.
pub(crate) async fn check_group_mapping(
    tx: &mut TenantTx,
    mapping: &BTreeMap<String, GroupGrant>,
) -> Result<(), IdentityError> {
    if mapping.len() > 100 {
        return Err(IdentityError::invalid("group_mapping", "at most 100 groups"));
    }
    for (group, grant) in mapping {
        if group.is_empty() || group.len() > 200 {
            return Err(IdentityError::invalid("group_mapping", "group names of 1-200 characters"));
        }
        if grant.role == Role::Owner {
            return Err(IdentityError::invalid("group_mapping", "a provider group cannot make an owner"));
        }
        if let Some(code) = &grant.department {
            let code = DepartmentCode::parse(code)?;
            let known = sqlx::query_scalar!(
                r#"select exists(select 1 from departments where code = $1) as "known!""#,
                code.as_str()
            )
            .fetch_one(tx.conn())
            .await?;
            if !known {
                return Err(IdentityError::invalid("group_mapping", format!("{}: no such department", code.as_str())));
            }
        }
    }
    Ok(())
}

/// The SSO-only rule's one break-glass account (OpenID Connect's or SAML's): required when
/// SSO-only, and an active owner or administrator of this organisation.
///
/// # Errors
/// `Invalid` naming `break_glass_user`.
pub(crate) async fn check_break_glass(
    tx: &mut TenantTx,
    sso_only: bool,
    break_glass_user: Option<Uuid>,
) -> Result<(), IdentityError> {
    if let Some(u) = break_glass_user {
        let fit = sqlx::query_scalar!(
            r#"select exists(select 1 from memberships m
                              where m.user_id = $1 and m.status = 'active' and m.deleted_at is null
                                and m.role in ('owner', 'admin')) as "fit!""#,
            u
        )
        .fetch_one(tx.conn())
        .await?;
        if !fit {
            return Err(IdentityError::invalid(
                "break_glass_user",
                "the break-glass account must be an active owner or administrator of this organisation",
            ));
        }
    } else if sso_only {
        return Err(IdentityError::invalid(
            "break_glass_user",
            "an SSO-only organisation needs one break-glass account",
        ));
    }
    Ok(())
}
