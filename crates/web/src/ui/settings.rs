//! `/settings`: the organisation's settings for owners and admins (`Guard::Org(settings.manage)`,
//! like `/api/v1/settings/*`): whether everyone needs a second step to sign in, the IP
//! allowlist (with the API's self-lockout confirmation: a list that leaves out the address
//! saving it is refused unless confirmed), the MD thresholds per currency, and joining by verified
//! email domain. The same calls: `identity::signin::mfa::set_required`,
//! `identity::directory::ip_allowlist::replace`, `approvals::documents::set_md_thresholds`,
//! `identity::directory::tenants::set_joining` (through `api::joining::apply`).

use std::collections::BTreeMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use identity::directory::ip_allowlist::{self as list, NewEntry};
use ipnet::IpNet;

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
    })
}

fn done_words(done: &str) -> &'static str {
    match done {
        "mfa" => "Saved: the second-step setting applies from the next sign-in.",
        "allowlist" => "Saved: the allowlist applies to every request from now on.",
        "thresholds" => "Saved: the MD thresholds apply to documents approved from now on.",
        "joining" => "Saved: people who verify an address at these domains join from now on.",
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
