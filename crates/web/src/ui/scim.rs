//! `/settings/scim`: owners and admins mint, list and revoke the SCIM tokens their identity
//! provider (Okta, Entra ID, …) provisions people with (`Guard::Org(settings.manage)`, like
//! `/api/v1/settings/scim-tokens`), through the same `identity::admin::scim::tokens` calls. The
//! token is shown once, on the page that made it, with the base URL to give the provider. The
//! group mappings section says which identity-provider group gives its people a role and/or a
//! department (`identity::admin::scim::mappings`, like `/api/v1/settings/scim-group-mappings`).

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use identity::Role;
use identity::admin::members::may_grant;
use identity::admin::scim::mappings::{self, MatchOn, NewMapping};
use identity::admin::scim::tokens;
use secrecy::ExposeSecret;

use crate::api::documents::member;
use crate::plumbing::access::path_id;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::form::Fields;
use crate::ui::format;
use crate::{ApiError, AppState, Principal};

#[derive(Debug, Clone)]
pub(crate) struct TokenRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created: String,
    pub last_used: String,
    pub live: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct MappingRow {
    pub id: String,
    /// "displayName Finance" or "externalId 00g1…".
    pub group: String,
    pub role: String,
    pub department: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Choice {
    pub value: String,
    pub label: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "scim.html")]
pub(crate) struct ScimPage {
    pub chrome: Chrome,
    pub tokens: Vec<TokenRow>,
    /// Where the identity provider sends its requests.
    pub base_url: String,
    pub name: String,
    pub name_error: String,
    /// The new token, shown once.
    pub secret: String,
    pub notice: String,
    pub mappings: Vec<MappingRow>,
    /// The roles a group may give (never owner), and the departments.
    pub roles: Vec<Choice>,
    pub departments: Vec<Choice>,
    pub group: String,
    pub mapping_error: String,
}

fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    format!("{}/scim/v2", crate::api::scim::base_url(state, headers))
}

async fn scim_page(state: &AppState, p: &Principal, headers: &HeaderMap) -> Result<ScimPage, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    let all = tokens::list(&mut tx).await?;
    let maps = mappings::list(&mut tx).await?;
    let depts = identity::directory::departments::list(&mut tx, None, 500).await?;
    let chrome = Chrome::member(state, &mut tx, &m, headers, Section::Settings).await?;
    tx.commit().await?;
    let tokens = all
        .into_iter()
        .map(|t| TokenRow {
            id: t.id.to_string(),
            prefix: format!("cssc_{}_{}", p.tenant.as_uuid().simple(), t.id.simple()),
            name: t.name,
            created: format::moment(t.created_at),
            last_used: t.last_used_at.map_or_else(|| "Never".to_owned(), format::moment),
            live: t.revoked_at.is_none(),
        })
        .collect();
    let mappings = maps
        .into_iter()
        .map(|x| MappingRow {
            id: x.id.to_string(),
            group: format!("{} {}", if x.match_on == MatchOn::DisplayName { "Named" } else { "External id" }, x.group),
            role: x.role.map_or_else(|| "—".to_owned(), |r| format::role(r).to_owned()),
            department: x
                .department
                .and_then(|code| depts.iter().find(|d| d.code == code).map(|d| format!("{} ({code})", d.name)))
                .unwrap_or_else(|| "—".to_owned()),
        })
        .collect();
    // Deny by default: owner and the partner programme's roles are never offered.
    let roles = [Role::Staff, Role::Hod, Role::Finance, Role::Md, Role::Auditor, Role::Admin, Role::ChannelManager]
        .into_iter()
        .filter(|r| may_grant(p.role, *r))
        .map(|r| Choice { value: r.as_str().to_owned(), label: format::role(r).to_owned() })
        .collect();
    let departments =
        depts.into_iter().map(|d| Choice { label: format!("{} ({})", d.name, d.code), value: d.code }).collect();
    Ok(ScimPage {
        chrome,
        tokens,
        base_url: base_url(state, headers),
        name: String::new(),
        name_error: String::new(),
        secret: String::new(),
        notice: String::new(),
        mappings,
        roles,
        departments,
        group: String::new(),
        mapping_error: String::new(),
    })
}

/// `GET /settings/scim`
pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let mut page = scim_page(&state, &p, &headers).await?;
    page.notice = match q.get("done") {
        "revoked" => "Revoked: the identity provider can no longer change anyone here.",
        "mapped" => "Mapped: the group's people now hold what it gives, and so will everyone who joins it.",
        "unmapped" => "Mapping removed: the group's people got back what they held before it.",
        _ => "",
    }
    .to_owned();
    Ok(page.into_response())
}

/// `POST /settings/scim` {name}: the token is shown once.
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let name = f.get("name").trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        let mut page = scim_page(&state, &p, &headers).await?;
        page.name = name;
        page.name_error = "Give the token a name of 1 to 100 characters, like “Okta production”.".into();
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let issued = tokens::create(&mut tx, &p.who, p.permit()?, &name).await?;
    tx.commit().await?;
    let mut page = scim_page(&state, &p, &headers).await?;
    page.notice = format!("The token “{name}” was made.");
    page.secret = issued.secret.expose_secret().to_owned();
    Ok(page.into_response())
}

/// `POST /settings/scim/{id}/revoke`: another organisation's token is not found.
pub async fn revoke(State(state): State<AppState>, p: Principal, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    tokens::revoke(&mut tx, &p.who, p.permit()?, id).await?;
    tx.commit().await?;
    Ok(Redirect::to("/settings/scim?done=revoked").into_response())
}

/// What a refused mapping means, in words for the form (`None`: not the form's to say).
fn mapping_words(e: &ApiError) -> Option<String> {
    Some(match e.code {
        "role_not_mappable" => "A group can never make someone an owner.".to_owned(),
        "role_escalation" => "Your role cannot grant this role.".to_owned(),
        "group_has_owner" => {
            "An owner is in this group, and groups never change an owner: take them out of the group first.".to_owned()
        }
        "duplicate" => "This group is mapped already: remove its mapping first.".to_owned(),
        "last_admin" | "last_owner" => {
            "This would leave the organisation without an administrator: make someone else one first.".to_owned()
        }
        _ if e.status == StatusCode::UNPROCESSABLE_ENTITY || e.status == StatusCode::BAD_REQUEST => {
            format!("Check the mapping: {}.", e.message)
        }
        _ => return None,
    })
}

/// `POST /settings/scim/mappings` {match_on, group, role, department}
pub async fn create_mapping(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let group = f.get("group").trim().to_owned();
    let role = match f.get("role") {
        "" => None,
        r => Some(r.parse::<Role>().map_err(|_| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "role: choose a role from the list")
        })?),
    };
    let match_on = if f.get("match_on") == "external_id" { MatchOn::ExternalId } else { MatchOn::DisplayName };
    let department = Some(f.get("department").to_owned()).filter(|d| !d.is_empty());
    let new = NewMapping { match_on, group: group.clone(), role, department };
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let made = mappings::create(&mut tx, &p.who, p.permit()?, p.role, &new).await;
    match made {
        Ok(_) => {
            tx.commit().await?;
            Ok(Redirect::to("/settings/scim?done=mapped").into_response())
        }
        Err(e) => {
            drop(tx);
            let e = ApiError::from(e);
            let Some(words) = mapping_words(&e) else { return Err(e) };
            let mut page = scim_page(&state, &p, &headers).await?;
            page.group = group;
            page.mapping_error = words;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// `POST /settings/scim/mappings/{id}/delete`: another organisation's mapping is not found.
pub async fn delete_mapping(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    mappings::remove(&mut tx, &p.who, p.permit()?, id).await?;
    tx.commit().await?;
    Ok(Redirect::to("/settings/scim?done=unmapped").into_response())
}
