//! `GET /api/v1/departments`: the organisation's departments (id, code, name), so staff can name
//! the department they raise documents in. Guarded like the other organisation reads
//! (`departments.read`: every internal role; outside parties are refused).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::plumbing::access::{ListPage, limit};
use crate::{ApiError, AppState, Principal};

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1-200, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

/// One department.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DepartmentView {
    id: uuid::Uuid,
    code: String,
    name: String,
}

impl From<identity::directory::departments::Department> for DepartmentView {
    fn from(d: identity::directory::departments::Department) -> Self {
        Self { id: d.id, code: d.code, name: d.name }
    }
}

/// `GET /api/v1/departments?cursor=&limit=` → `{items, next_cursor}`, ordered by code.
pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<ListPage<DepartmentView>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", e.body_text()))?;
    let limit = limit(q.limit.as_deref())?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let items = identity::directory::departments::list(&mut tx, q.cursor.as_deref(), limit).await?;
    tx.commit().await?;
    let next_cursor = (items.len() as i64 == limit).then(|| items.last().map(|d| d.code.clone())).flatten();
    Ok(Json(ListPage { items: items.into_iter().map(DepartmentView::from).collect(), next_cursor }))
}
