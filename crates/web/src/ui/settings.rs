//! `/settings`: the organisation's settings for owners and admins (`Guard::Org(settings.manage)`,
//! like `/api/v1/settings/*`): whether everyone needs a second step to sign in, the IP
//! allowlist (with the API's self-lockout confirmation: a list that leaves out the address
//! saving it is refused unless confirmed), the MD thresholds per currency, and joining by verified
//! email domain. The same calls: `identity::signin::mfa::set_required`,
//! `identity::directory::ip_allowlist::replace`, `approvals::documents::set_md_thresholds`,
//! `identity::directory::tenants::set_joining` (through `api::joining::apply`). And single
//! sign-on (OpenID Connect): the provider's settings (the client secret is write-only: the page
//! says only whether one is set), saved with `identity::signin::oidc_config::put`, and "test
//! connection" (`crate::api::oidc::run_test`), whose failure is the test's answer on the page.
//! And SAML 2.0: the IdP's metadata XML (left empty: the stored one is kept), allowed domains,
//! groups attribute and group mapping, SSO-only with its break-glass account, saved with
//! `identity::signin::saml_config::put` (metadata without a signing certificate is refused), beside
//! this organisation's SP metadata URL and ACS for the IdP's administrator; and its "test
//! connection" (`crate::api::saml::run_test`).

use std::collections::BTreeMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use identity::directory::ip_allowlist::{self as list, NewEntry};
use identity::signin::oidc_config::{self, GroupGrant, NewOidcConfig, Preset};
use ipnet::IpNet;
use secrecy::SecretString;

use crate::api::documents::member;
use crate::plumbing::access::reason;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::documents::refused;
use crate::ui::form::Fields;
use crate::ui::format;
use crate::{ApiError, AppState, ClientContext, Principal};

#[derive(Debug, Clone)]
pub(crate) struct ThresholdRow {
    pub number: usize,
    pub currency: String,
    pub amount: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "settings.html")]
pub(crate) struct SettingsPage {
    pub chrome: Chrome,
    pub mfa_required: bool,
    pub your_ip: String,
    pub networks: String,
    pub allowlist_reason: String,
    pub networks_error: String,
    pub allowlist_reason_error: String,
    /// The list would lock the person out: the confirmation box shows, with the words.
    pub lockout_error: String,
    pub thresholds: Vec<ThresholdRow>,
    pub thresholds_error: String,
    /// Joining by verified address: the domains (one per line), whether they join at once.
    pub join_domains: String,
    pub auto_join: bool,
    pub join_error: String,
    pub notice: String,
    pub sso: SsoSection,
    pub saml: SamlSection,
}

/// The SAML section: the stored IdP (or what was typed, after a refusal) and this SP's URLs.
#[derive(Debug, Clone, Default)]
pub(crate) struct SamlSection {
    pub configured: bool,
    pub idp_entity_id: String,
    pub sso_url: String,
    pub certificates: i32,
    pub domains: String,
    /// The metadata as typed (after a refusal); the stored one is not shown back.
    pub metadata_xml: String,
    pub sp_metadata_url: String,
    pub acs_url: String,
    pub groups_attribute: String,
    /// One mapping per line, as for OpenID Connect.
    pub group_mapping: String,
    pub sso_only: bool,
    pub break_glass: String,
    pub error: String,
    /// "Test connection": whether it worked, and the words (one line each).
    pub tested: bool,
    pub test_ok: bool,
    pub test_lines: Vec<String>,
}

impl SamlSection {
    async fn load(state: &AppState, headers: &HeaderMap, tx: &mut store::TenantTx) -> Result<Self, ApiError> {
        // The page is no redirect target: the configured public URL, else this request's host.
        let sp = crate::api::saml::service_provider(state, headers, false, tx).await?;
        let mut section = Self {
            sp_metadata_url: sp.metadata_url,
            acs_url: sp.acs_url,
            groups_attribute: "groups".into(),
            ..Self::default()
        };
        if let Some(c) = identity::signin::saml_config::get(tx).await? {
            section.configured = true;
            section.idp_entity_id = c.idp_entity_id;
            section.sso_url = c.sso_url;
            section.certificates = c.signing_certificates;
            section.domains = c.allowed_domains.join("\n");
            section.groups_attribute = c.groups_attribute;
            section.group_mapping = mapping_lines(&c.group_mapping);
            section.sso_only = c.sso_only;
            section.break_glass = break_glass_email(tx, c.break_glass_user).await;
        }
        Ok(section)
    }
}

/// The single sign-on section: the stored settings (or what was typed, after a refusal).
#[derive(Debug, Clone, Default)]
pub(crate) struct SsoSection {
    pub configured: bool,
    pub preset: String,
    pub issuer: String,
    pub client_id: String,
    /// A client secret is stored (never shown).
    pub secret_set: bool,
    pub domains: String,
    pub email_claim: String,
    pub name_claim: String,
    pub groups_claim: String,
    /// One mapping per line: `group = role` or `group = role, DEPARTMENT`.
    pub group_mapping: String,
    pub sso_only: bool,
    pub break_glass: String,
    pub error: String,
    /// "Test connection": whether it worked, and the words.
    pub tested: bool,
    pub test_ok: bool,
    pub test_words: String,
}

impl SsoSection {
    async fn load(tx: &mut store::TenantTx) -> Result<Self, ApiError> {
        let Some(c) = oidc_config::get(tx).await? else {
            return Ok(Self {
                preset: "generic".into(),
                email_claim: "email".into(),
                name_claim: "name".into(),
                groups_claim: "groups".into(),
                ..Self::default()
            });
        };
        let break_glass = break_glass_email(tx, c.break_glass_user).await;
        Ok(Self {
            configured: true,
            preset: c.preset.as_str().to_owned(),
            issuer: c.issuer,
            client_id: c.client_id,
            secret_set: true,
            domains: c.allowed_domains.join("\n"),
            email_claim: c.email_claim,
            name_claim: c.name_claim,
            groups_claim: c.groups_claim,
            group_mapping: mapping_lines(&c.group_mapping),
            sso_only: c.sso_only,
            break_glass,
            ..Self::default()
        })
    }
}

/// A group mapping as the form shows it: `group = role` or `group = role, DEPARTMENT` per line.
fn mapping_lines(mapping: &BTreeMap<String, GroupGrant>) -> String {
    mapping
        .iter()
        .map(|(g, grant)| match &grant.department {
            Some(d) => format!("{g} = {}, {d}", grant.role.as_str()),
            None => format!("{g} = {}", grant.role.as_str()),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The break-glass account's address, for the form.
async fn break_glass_email(tx: &mut store::TenantTx, user: Option<uuid::Uuid>) -> String {
    match user {
        Some(u) => identity::directory::users::get_member(tx, u).await.map(|u| u.email).unwrap_or_default(),
        None => String::new(),
    }
}

/// The break-glass account typed on the form (an email address), as the user it names.
async fn break_glass_user(state: &AppState, typed: &str) -> Result<Option<uuid::Uuid>, ApiError> {
    if typed.is_empty() {
        return Ok(None);
    }
    let email = identity::EmailAddress::parse(typed)?;
    let mut g = state.store.global_tx().await?;
    let user = identity::directory::users::find_by_email(&mut g, &email).await?;
    g.commit().await?;
    let user = user.ok_or_else(|| {
        ApiError::from(identity::IdentityError::Invalid {
            field: "break_glass_user",
            reason: format!("nobody signs in as {}", email.as_str()),
        })
    })?;
    Ok(Some(user.id))
}

async fn settings_page(
    state: &AppState,
    p: &Principal,
    ctx: &ClientContext,
    headers: &HeaderMap,
) -> Result<SettingsPage, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    let mfa_required = identity::directory::tenants::requires_mfa(&mut tx).await?;
    let entries = list::list(&mut tx).await?;
    let joining = identity::directory::tenants::joining(&mut tx).await?;
    let thresholds = match approvals::documents::md_thresholds(&mut tx, &state.authz, &m).await {
        Ok(t) => t.thresholds,
        Err(e) => return Err(refused(state, p, "GET /settings", tx, e).await),
    };
    let sso = SsoSection::load(&mut tx).await?;
    let saml = SamlSection::load(state, headers, &mut tx).await?;
    let chrome = Chrome::member(state, &mut tx, &m, headers, Section::Settings).await?;
    tx.commit().await?;
    let mut rows: Vec<ThresholdRow> = thresholds
        .into_iter()
        .enumerate()
        .map(|(i, (c, minor))| ThresholdRow { number: i + 1, amount: format::amount(minor, &c), currency: c })
        .collect();
    rows.push(ThresholdRow { number: rows.len() + 1, currency: String::new(), amount: String::new() });
    Ok(SettingsPage {
        chrome,
        mfa_required,
        your_ip: ctx.ip.to_string(),
        networks: entries
            .iter()
            .map(|e| if e.note.is_empty() { e.cidr.to_string() } else { format!("{} {}", e.cidr, e.note) })
            .collect::<Vec<_>>()
            .join("\n"),
        allowlist_reason: String::new(),
        networks_error: String::new(),
        allowlist_reason_error: String::new(),
        lockout_error: String::new(),
        thresholds: rows,
        thresholds_error: String::new(),
        join_domains: joining.domains.join("\n"),
        auto_join: joining.policy == identity::JoinPolicy::AutoJoin,
        join_error: String::new(),
        notice: String::new(),
        sso,
        saml,
    })
}

fn done_words(done: &str) -> &'static str {
    match done {
        "mfa" => "Saved: the second-step setting applies from the next sign-in.",
        "allowlist" => "Saved: the allowlist applies to every request from now on.",
        "thresholds" => "Saved: the MD thresholds apply to documents approved from now on.",
        "joining" => "Saved: people who verify an address at these domains join from now on.",
        "sso" => "Saved: single sign-on uses these settings from the next sign-in.",
        "saml" => "Saved: SAML single sign-on uses this identity provider from the next sign-in.",
        _ => "",
    }
}

/// `GET /settings`
pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    ctx: ClientContext,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let mut page = settings_page(&state, &p, &ctx, &headers).await?;
    page.notice = done_words(q.get("done")).to_owned();
    Ok(page.into_response())
}

/// `POST /settings/mfa` {required: "yes" when ticked}
pub async fn set_mfa(State(state): State<AppState>, p: Principal, body: Bytes) -> Result<Response, ApiError> {
    let required = Fields::parse(&body)?.get("required") == "yes";
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    identity::signin::mfa::set_required(&mut tx, &p.who, p.permit()?, required).await?;
    tx.commit().await?;
    Ok(Redirect::to("/settings?done=mfa").into_response())
}

/// `POST /settings/ip-allowlist` {networks (one per line: CIDR, then an optional note), reason,
/// confirm_lockout}
pub async fn set_allowlist(
    State(state): State<AppState>,
    p: Principal,
    ctx: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let (networks, typed_reason) = (f.get("networks").to_owned(), f.get("reason").to_owned());
    let confirmed = f.get("confirm_lockout") == "yes";
    let mut entries = Vec::new();
    let mut networks_error = String::new();
    for (i, line) in networks.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate() {
        let (cidr, note) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match (cidr.len() <= 64).then(|| NewEntry::parse(cidr, note.trim())) {
            Some(Ok(e)) => entries.push(e),
            _ => {
                networks_error = format!(
                    "Line {}: “{cidr}” is not a network; write one like 203.0.113.0/24 or 2001:db8::/32.",
                    i + 1
                );
                break;
            }
        }
    }
    if networks_error.is_empty() && entries.len() > list::MAX_ENTRIES {
        networks_error = format!("At most {} networks.", list::MAX_ENTRIES);
    }
    let reason_error = reason(Some(&typed_reason))
        .err()
        .map(|_| "Give a reason of 3 to 200 characters: it is recorded in the audit trail.".to_owned())
        .unwrap_or_default();
    let nets: Vec<IpNet> = entries.iter().map(|e| e.cidr).collect();
    let lockout = networks_error.is_empty() && !list::allows(&nets, ctx.ip) && !confirmed;
    if !networks_error.is_empty() || !reason_error.is_empty() || lockout {
        let status = if networks_error.is_empty() && reason_error.is_empty() {
            StatusCode::CONFLICT
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        let mut page = settings_page(&state, &p, &ctx, &headers).await?;
        page.networks = networks;
        page.allowlist_reason = typed_reason;
        page.networks_error = networks_error;
        page.allowlist_reason_error = reason_error;
        if lockout {
            page.lockout_error = format!(
                "This list does not include your address {}: saving it would sign you out and keep you out. Add your network, or tick the box to confirm.",
                ctx.ip
            );
        }
        return Ok((status, page).into_response());
    }
    let why = typed_reason.trim();
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    list::replace(&mut tx, &p.who, p.permit()?, &entries, why).await?;
    tx.commit().await?;
    state.allowlist.invalidate(Some(p.tenant.as_uuid()));
    Ok(Redirect::to("/settings?done=allowlist").into_response())
}

/// `POST /settings/thresholds` {currency, amount (repeated; empty rows left out)}
pub async fn set_thresholds(
    State(state): State<AppState>,
    p: Principal,
    ctx: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let (currencies, amounts) = (f.all("currency"), f.all("amount"));
    let mut thresholds = BTreeMap::new();
    let mut error = String::new();
    let mut rows = Vec::new();
    for (i, (c, a)) in currencies.iter().zip(amounts.iter()).enumerate() {
        let (c, a) = (c.trim().to_ascii_uppercase(), a.trim());
        rows.push(ThresholdRow { number: i + 1, currency: c.clone(), amount: a.to_owned() });
        if c.is_empty() && a.is_empty() {
            continue;
        }
        let Ok(currency) = c.parse::<approvals::Currency>() else {
            if error.is_empty() {
                error = format!("Row {}: enter a currency code of three letters, like EUR.", i + 1);
            }
            continue;
        };
        match format::parse_amount(a, Some(currency)) {
            Some(minor) => {
                thresholds.insert(c, minor);
            }
            None if error.is_empty() => {
                error = format!("Row {}: enter the amount above which the MD must sanction, like 10,000.00.", i + 1);
            }
            None => {}
        }
    }
    let again = |rows: Vec<ThresholdRow>, error: String, status: StatusCode| {
        let (state, p, ctx, headers) = (&state, &p, &ctx, &headers);
        async move {
            let mut page = settings_page(state, p, ctx, headers).await?;
            page.thresholds = rows;
            page.thresholds_error = error;
            Ok::<_, ApiError>((status, page).into_response())
        }
    };
    if !error.is_empty() {
        return again(rows, error, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let new = approvals::documents::MdThresholds { thresholds };
    match approvals::documents::set_md_thresholds(&mut tx, &state.authz, &m, &new).await {
        Ok(_) => {
            tx.commit().await?;
            Ok(Redirect::to("/settings?done=thresholds").into_response())
        }
        Err(approvals::documents::ApprovalError::Invalid { reason, .. }) => {
            drop(tx);
            again(rows, format!("These thresholds cannot be used: {reason}."), StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(refused(&state, &p, "POST /settings/thresholds", tx, e).await),
    }
}

/// `POST /settings/joining` {domains (one per line), auto_join: "yes" when ticked}
pub async fn set_joining(
    State(state): State<AppState>,
    p: Principal,
    ctx: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let typed = f.get("domains").to_owned();
    let auto_join = f.get("auto_join") == "yes";
    let domains: Vec<String> =
        typed.split(['\n', ',', ' ']).map(str::trim).filter(|d| !d.is_empty()).map(str::to_owned).collect();
    let policy = if auto_join { identity::JoinPolicy::AutoJoin } else { identity::JoinPolicy::AdminApproval };
    let error = if domains.len() > identity::directory::tenants::MAX_JOIN_DOMAINS {
        format!("At most {} domains.", identity::directory::tenants::MAX_JOIN_DOMAINS)
    } else {
        match crate::api::joining::apply(&state, &p, &domains, policy).await {
            Ok(_) => return Ok(Redirect::to("/settings?done=joining").into_response()),
            Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
                let detail = e.message.split_once(": ").map_or(e.message.as_str(), |(_, d)| d);
                format!("{}.", detail.trim_end_matches('.'))
            }
            Err(e) => return Err(e),
        }
    };
    let mut page = settings_page(&state, &p, &ctx, &headers).await?;
    page.join_domains = typed;
    page.auto_join = auto_join;
    page.join_error = error;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

/// `group = role` or `group = role, DEPARTMENT`, one per line.
fn group_mapping(typed: &str) -> Result<BTreeMap<String, GroupGrant>, String> {
    let mut out = BTreeMap::new();
    for line in typed.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (group, grant) =
            line.split_once('=').ok_or_else(|| format!("\u{201c}{line}\u{201d}: write group = role"))?;
        let (role, department) = grant.split_once(',').map_or((grant, None), |(r, d)| (r, Some(d.trim().to_owned())));
        let role: identity::Role =
            role.trim().parse().map_err(|_| format!("\u{201c}{}\u{201d} is not a role", role.trim()))?;
        out.insert(group.trim().to_owned(), GroupGrant { role, department: department.filter(|d| !d.is_empty()) });
    }
    Ok(out)
}

/// `POST /settings/sso` {preset, issuer, client_id, client_secret (empty: keep), domains,
/// email_claim, name_claim, groups_claim, group_mapping, sso_only, break_glass}
pub async fn set_sso(
    State(state): State<AppState>,
    p: Principal,
    ctx: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let typed = SsoSection {
        configured: false,
        preset: f.get("preset").to_owned(),
        issuer: f.get("issuer").trim().to_owned(),
        client_id: f.get("client_id").trim().to_owned(),
        secret_set: false,
        domains: f.get("domains").to_owned(),
        email_claim: f.get("email_claim").trim().to_owned(),
        name_claim: f.get("name_claim").trim().to_owned(),
        groups_claim: f.get("groups_claim").trim().to_owned(),
        group_mapping: f.get("group_mapping").to_owned(),
        sso_only: f.get("sso_only") == "yes",
        break_glass: f.get("break_glass").trim().to_owned(),
        ..SsoSection::default()
    };
    let secret = f.get("client_secret").trim().to_owned();
    let error = match save_sso(&state, &p, &typed, secret).await {
        Ok(()) => return Ok(Redirect::to("/settings?done=sso#sso-heading").into_response()),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY || e.status == StatusCode::NOT_FOUND => {
            format!("{}.", e.message.trim_end_matches('.'))
        }
        Err(e) => return Err(e),
    };
    let mut page = settings_page(&state, &p, &ctx, &headers).await?;
    page.sso = SsoSection { configured: page.sso.configured, secret_set: page.sso.secret_set, error, ..typed };
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

async fn save_sso(state: &AppState, p: &Principal, typed: &SsoSection, secret: String) -> Result<(), ApiError> {
    let invalid =
        |field: &'static str, why: String| ApiError::from(identity::IdentityError::Invalid { field, reason: why });
    let preset = match typed.preset.as_str() {
        "google" => Preset::Google,
        "entra" => Preset::Entra,
        _ => Preset::Generic,
    };
    let group_mapping = group_mapping(&typed.group_mapping).map_err(|w| invalid("group_mapping", w))?;
    let allowed_domains: Vec<String> =
        typed.domains.split(['\n', ',', ' ']).map(str::trim).filter(|d| !d.is_empty()).map(str::to_owned).collect();
    let break_glass_user = break_glass_user(state, &typed.break_glass).await?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    // What the form does not show is kept as stored.
    let stored = oidc_config::get(&mut tx).await?;
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let new = NewOidcConfig {
        preset,
        issuer: typed.issuer.clone(),
        client_id: typed.client_id.clone(),
        client_secret: (!secret.is_empty()).then(|| SecretString::from(secret)),
        allowed_domains,
        email_claim: opt(&typed.email_claim),
        name_claim: opt(&typed.name_claim),
        groups_claim: opt(&typed.groups_claim),
        group_mapping,
        mfa_acr_values: stored.as_ref().map(|c| c.mfa_acr_values.clone()).unwrap_or_default(),
        sso_only: typed.sso_only,
        break_glass_user,
        enabled: stored.as_ref().is_none_or(|c| c.enabled),
    };
    oidc_config::put(&mut tx, &p.who, p.permit()?, &state.mfa_keys, &new).await?;
    tx.commit().await?;
    Ok(())
}

/// `POST /settings/sso/test`: "test connection"; its outcome (worked, or what failed) on the page.
pub async fn test_sso(
    State(state): State<AppState>,
    p: Principal,
    ctx: ClientContext,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let outcome = crate::api::oidc::run_test(&state, &p).await?;
    let mut page = settings_page(&state, &p, &ctx, &headers).await?;
    page.sso.tested = true;
    match outcome {
        Some(t) if t.ok => {
            page.sso.test_ok = true;
            page.sso.test_words = format!(
                "Connected: {} answered with its sign-in address and {} signing key(s).",
                t.issuer.unwrap_or_default(),
                t.signing_keys.unwrap_or_default()
            );
        }
        Some(t) => {
            page.sso.test_words = format!(
                "The provider could not be reached or did not answer as expected: {} (code {}).",
                t.error.unwrap_or_default(),
                t.code.unwrap_or_default()
            );
        }
        None => page.sso.test_words = "Nothing to test yet: save the provider's settings first.".to_owned(),
    }
    Ok(page.into_response())
}

/// `POST /settings/saml` {metadata_xml (empty: keep the stored one), domains, groups_attribute,
/// group_mapping, sso_only, break_glass}
pub async fn set_saml(
    State(state): State<AppState>,
    p: Principal,
    ctx: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // The metadata is a whole document, bounded and parsed by `saml_config::put`.
    let f = Fields::parse_with_documents(&body, &["metadata_xml"])?;
    let typed = SamlSection {
        metadata_xml: f.get("metadata_xml").trim().to_owned(),
        domains: f.get("domains").to_owned(),
        groups_attribute: f.get("groups_attribute").trim().to_owned(),
        group_mapping: f.get("group_mapping").to_owned(),
        sso_only: f.get("sso_only") == "yes",
        break_glass: f.get("break_glass").trim().to_owned(),
        ..SamlSection::default()
    };
    let error = match save_saml(&state, &p, &typed).await {
        Ok(()) => return Ok(Redirect::to("/settings?done=saml#saml-heading").into_response()),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY || e.status == StatusCode::NOT_FOUND => {
            format!("{}.", e.message.trim_end_matches('.'))
        }
        Err(e) => return Err(e),
    };
    let mut page = settings_page(&state, &p, &ctx, &headers).await?;
    let stored = std::mem::take(&mut page.saml);
    page.saml = SamlSection {
        configured: stored.configured,
        idp_entity_id: stored.idp_entity_id,
        sso_url: stored.sso_url,
        certificates: stored.certificates,
        sp_metadata_url: stored.sp_metadata_url,
        acs_url: stored.acs_url,
        error,
        ..typed
    };
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

async fn save_saml(state: &AppState, p: &Principal, typed: &SamlSection) -> Result<(), ApiError> {
    let group_mapping = group_mapping(&typed.group_mapping)
        .map_err(|why| ApiError::from(identity::IdentityError::Invalid { field: "group_mapping", reason: why }))?;
    let new = identity::signin::saml_config::NewSamlConfig {
        metadata_xml: (!typed.metadata_xml.is_empty()).then(|| typed.metadata_xml.clone()),
        allowed_domains: typed
            .domains
            .split(['\n', ',', ' '])
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
        groups_attribute: (!typed.groups_attribute.is_empty()).then(|| typed.groups_attribute.clone()),
        group_mapping,
        sso_only: typed.sso_only,
        break_glass_user: break_glass_user(state, &typed.break_glass).await?,
        enabled: true,
    };
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    identity::signin::saml_config::put(&mut tx, &p.who, p.permit()?, &new).await?;
    tx.commit().await?;
    Ok(())
}

/// `POST /settings/saml/test`: "test connection" for the IdP; its outcome on the page.
pub async fn test_saml(
    State(state): State<AppState>,
    p: Principal,
    ctx: ClientContext,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let outcome = crate::api::saml::run_test(&state, &p).await?;
    let mut page = settings_page(&state, &p, &ctx, &headers).await?;
    page.saml.tested = true;
    let Some(t) = outcome else {
        page.saml.test_lines = vec!["Nothing to test yet: save the identity provider's metadata first.".to_owned()];
        return Ok(page.into_response());
    };
    page.saml.test_ok = t.ok;
    let mut lines = vec![if t.ok {
        format!("Connected: {} answers at {}.", t.idp_entity_id, t.sso_url)
    } else {
        format!(
            "The identity provider {} failed the test: {} (code {}).",
            t.idp_entity_id,
            t.error.unwrap_or_default(),
            t.code.unwrap_or_default()
        )
    }];
    if let Some(status) = t.sso_url_status {
        lines.push(format!("Single sign-on URL {}: answered HTTP {status}.", t.sso_url));
    }
    for c in &t.certificates {
        let standing = if c.expired {
            "expired"
        } else if c.expiring_soon {
            "expires soon"
        } else {
            "valid"
        };
        lines.push(format!(
            "Signing certificate {}: {standing}, until {} ({} days).",
            c.subject, c.not_after, c.days_left
        ));
    }
    lines.extend(t.warnings.into_iter().map(|w| format!("Warning: {w}.")));
    page.saml.test_lines = lines;
    Ok(page.into_response())
}
