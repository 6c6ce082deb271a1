//! `/settings/api-keys`: owners and admins mint, list and revoke the organisation's API keys
//! (`Guard::Org(api_keys.manage)`, like `/api/v1/api-keys`), through the same
//! `identity::admin::api_keys` calls: nobody mints a key above their own role (`role_escalation`), only
//! enforced scopes (`unknown_scope`). The secret is shown once, on the page that created it.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use identity::Role;
use identity::admin::api_keys::{self, Minter, NewApiKey};
use secrecy::ExposeSecret;

use crate::api::documents::member;
use crate::plumbing::access::path_id;
use crate::plumbing::auth::Caller;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::form::Fields;
use crate::ui::format;
use crate::ui::members::Choice;
use crate::{ApiError, AppState, Principal};

#[derive(Debug, Clone)]
pub(crate) struct KeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub role: String,
    pub scopes: String,
    pub created: String,
    pub last_used: String,
    pub status: &'static str,
    pub tone: &'static str,
    pub live: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct ScopeChoice {
    pub name: &'static str,
    pub what: &'static str,
    pub checked: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "api_keys.html")]
pub(crate) struct ApiKeysPage {
    pub chrome: Chrome,
    pub keys: Vec<KeyRow>,
    pub name: String,
    pub name_error: String,
    pub roles: Vec<Choice>,
    pub role_error: String,
    pub scopes: Vec<ScopeChoice>,
    pub scopes_error: String,
    /// The new key's secret, shown once.
    pub secret: String,
    pub notice: String,
}

/// What each scope lets a key do, in words.
fn scope_words(name: &str) -> &'static str {
    match name {
        "audit:read" => "Read and export the audit trail",
        "api_keys:manage" => "Create, list and revoke API keys",
        "members:read" => "List members, their sessions, invitations and departments",
        "members:manage" => "Administer members and invitations",
        _ => "",
    }
}

const ROLES: [Role; 7] = [Role::Auditor, Role::Staff, Role::Hod, Role::Finance, Role::Md, Role::Admin, Role::Owner];

async fn keys_page(state: &AppState, p: &Principal, headers: &HeaderMap) -> Result<ApiKeysPage, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    let keys = api_keys::list(&mut tx).await?;
    let chrome = Chrome::member(state, &mut tx, &m, headers, Section::ApiKeys).await?;
    tx.commit().await?;
    let now = chrono::Utc::now();
    let keys = keys
        .into_iter()
        .map(|k| {
            let (status, tone, live) = match (k.revoked_at, k.expires_at) {
                (Some(_), _) => ("Revoked", "refused", false),
                (None, Some(e)) if e <= now => ("Expired", "neutral", false),
                _ => ("Active", "done", true),
            };
            KeyRow {
                id: k.id.to_string(),
                prefix: format!("csk_{}_{}", p.tenant.as_uuid().simple(), k.id.simple()),
                name: k.name,
                role: format::role_name(&k.role),
                scopes: if k.scopes.is_empty() { "None".to_owned() } else { k.scopes.join(", ") },
                created: format::moment(k.created_at),
                last_used: k.last_used_at.map_or_else(|| "Never".to_owned(), format::moment),
                status,
                tone,
                live,
            }
        })
        .collect();
    Ok(ApiKeysPage {
        chrome,
        keys,
        name: String::new(),
        name_error: String::new(),
        roles: ROLES
            .iter()
            .filter(|r| identity::admin::members::may_grant(p.role, **r) || **r == p.role)
            .map(|r| Choice {
                value: r.as_str().to_owned(),
                label: format::role(*r).to_owned(),
                selected: *r == Role::Auditor,
            })
            .collect(),
        role_error: String::new(),
        scopes: identity::directory::scopes::KNOWN
            .iter()
            .map(|s| ScopeChoice { name: s.name, what: scope_words(s.name), checked: false })
            .collect(),
        scopes_error: String::new(),
        secret: String::new(),
        notice: String::new(),
    })
}

/// `GET /settings/api-keys`
pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let mut page = keys_page(&state, &p, &headers).await?;
    if q.get("done") == "revoked" {
        page.notice = "Revoked: every server refuses the key from now on.".to_owned();
    }
    Ok(page.into_response())
}

/// `POST /settings/api-keys` {name, role, scope…}: the secret is shown once.
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let name = f.get("name").to_owned();
    let role_text = f.get("role").to_owned();
    let scopes: Vec<String> = f.all("scope").into_iter().map(str::to_owned).collect();
    let typed = Typed { name: name.clone(), role: role_text.clone(), scopes: scopes.clone() };
    let again = |status: StatusCode, fill: Box<dyn FnOnce(&mut ApiKeysPage) + Send>| {
        refused_form(&state, &p, &headers, status, typed.clone(), fill)
    };
    if name.is_empty() || name.chars().count() > 100 {
        return again(
            StatusCode::UNPROCESSABLE_ENTITY,
            Box::new(|page| {
                page.name_error = "Give the key a name of 1 to 100 characters, like “Payroll export”.".into()
            }),
        )
        .await;
    }
    let Ok(role) = role_text.parse::<Role>() else {
        return again(
            StatusCode::UNPROCESSABLE_ENTITY,
            Box::new(|page| page.role_error = "Choose a role from the list.".into()),
        )
        .await;
    };
    let by = match &p.caller {
        Caller::Person(_) => Minter::Person { role: p.role },
        Caller::ApiKey { scopes, .. } => Minter::Key { role: p.role, scopes },
    };
    let new = NewApiKey { name: name.clone(), role, scopes: scopes.clone(), expires_at: None };
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let issued = match api_keys::create(&mut tx, &p.who, p.permit()?, by, &new).await {
        Ok(i) => i,
        Err(e) => {
            drop(tx);
            let e = ApiError::from(e);
            return match e.code {
                "role_escalation" => {
                    again(
                        e.status,
                        Box::new(|page| page.role_error = "Your role cannot make a key with this role.".into()),
                    )
                    .await
                }
                "unknown_scope" | "scope_escalation" => {
                    again(e.status, Box::new(|page| page.scopes_error = "Choose permissions from the list.".into()))
                        .await
                }
                _ => Err(e),
            };
        }
    };
    tx.commit().await?;
    let secret = issued.secret.expose_secret().to_owned();
    let mut page = keys_page(&state, &p, &headers).await?;
    page.notice = format!("The key “{name}” was made.");
    page.secret = secret;
    Ok(page.into_response())
}

/// What was typed into the form, kept when it is shown again.
#[derive(Clone)]
struct Typed {
    name: String,
    role: String,
    scopes: Vec<String>,
}

/// The page again with what was typed and the refusal's words, answered with `status`.
async fn refused_form(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    status: StatusCode,
    typed: Typed,
    fill: Box<dyn FnOnce(&mut ApiKeysPage) + Send>,
) -> Result<Response, ApiError> {
    let mut page = keys_page(state, p, headers).await?;
    page.name = typed.name;
    for r in &mut page.roles {
        r.selected = r.value == typed.role;
    }
    for s in &mut page.scopes {
        s.checked = typed.scopes.iter().any(|x| x == s.name);
    }
    fill(&mut page);
    Ok((status, page).into_response())
}

/// `POST /settings/api-keys/{id}/revoke`: another organisation's key is not found.
pub async fn revoke(State(state): State<AppState>, p: Principal, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    api_keys::revoke(&mut tx, &p.who, p.permit()?, id).await?;
    tx.commit().await?;
    Ok(Redirect::to("/settings/api-keys?done=revoked").into_response())
}
