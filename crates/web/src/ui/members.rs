//! `/members` (owners, admins, auditors): who belongs to the organisation, in what role and
//! department, and whether they are active — read through `identity::admin::members::page`, behind the
//! same organisation-level guard as `GET /api/v1/members` (`Guard::Org(members.read)`). Changing
//! members (invite, role, deactivate, sessions) is the API's for now.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use crate::api::documents::member;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::form::{Fields, encode};
use crate::ui::format;
use crate::{ApiError, AppState, Principal};

const PAGE: i64 = 50;

#[derive(Debug, Clone)]
pub(crate) struct MemberRow {
    pub name: String,
    pub email: String,
    pub role: String,
    pub department: String,
    pub status: String,
    pub tone: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "members.html")]
pub(crate) struct MembersPage {
    pub chrome: Chrome,
    pub members: Vec<MemberRow>,
    pub next: String,
}

/// `GET /members?after=`
pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let after = match q.get("after") {
        "" => None,
        a => Some(Uuid::try_parse(a).map_err(|_| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "after: not a page of this list")
        })?),
    };
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let m = member(&p, &mut tx).await?;
    let rows = identity::admin::members::page(&mut tx, None, after, PAGE + 1).await?;
    let departments: HashMap<Uuid, String> =
        identity::directory::departments::list(&mut tx, None, 500).await?.into_iter().map(|d| (d.id, d.name)).collect();
    let chrome = Chrome::member(&state, &mut tx, &m, &headers, Section::Members).await?;
    tx.commit().await?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > PAGE;
    let shown: Vec<_> = rows.into_iter().take(usize::try_from(PAGE).unwrap_or(50)).collect();
    let next = match (more, shown.last()) {
        (true, Some(last)) => format!("/members?after={}", encode(&last.membership_id.to_string())),
        _ => String::new(),
    };
    let members = shown
        .into_iter()
        .map(|x| MemberRow {
            name: x.display_name,
            email: x.email,
            role: format::role_name(&x.role),
            department: x.department_id.and_then(|d| departments.get(&d).cloned()).unwrap_or_default(),
            tone: match x.status.as_str() {
                "active" => "done",
                "pending" => "waiting",
                _ => "neutral",
            },
            status: {
                let mut s = x.status.replace('_', " ");
                if let Some(c) = s.get(..1) {
                    s.replace_range(..1, &c.to_uppercase());
                }
                s
            },
        })
        .collect();
    Ok(MembersPage { chrome, members, next }.into_response())
}
