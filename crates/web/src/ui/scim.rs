//! `/settings/scim`: owners and admins mint, list and revoke the SCIM tokens their identity
//! provider (Okta, Entra ID, …) provisions people with (`Guard::Org(settings.manage)`, like
//! `/api/v1/settings/scim-tokens`), through the same `identity::admin::scim::tokens` calls. The
//! token is shown once, on the page that made it, with the base URL to give the provider.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
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
}

fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    format!("{}/scim/v2", crate::api::scim::base_url(state, headers))
}

async fn scim_page(state: &AppState, p: &Principal, headers: &HeaderMap) -> Result<ScimPage, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(p, &mut tx).await?;
    let all = tokens::list(&mut tx).await?;
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
    Ok(ScimPage {
        chrome,
        tokens,
        base_url: base_url(state, headers),
        name: String::new(),
        name_error: String::new(),
        secret: String::new(),
        notice: String::new(),
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
    if q.get("done") == "revoked" {
        page.notice = "Revoked: the identity provider can no longer change anyone here.".to_owned();
    }
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
