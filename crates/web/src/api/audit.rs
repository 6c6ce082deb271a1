//! `/api/v1/audit/*`: the ledger for organisation admins and auditors. The route guard
//! (`Guard::Org(audit.read)`, crate::plumbing::guard) decides before these handlers run: owner, admin and
//! auditor (and, for API keys, the `audit:read` scope); a refusal is itself audited.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::plumbing::auth::Principal;
use crate::{ApiError, AppState};

fn query_error(e: &QueryRejection) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", e.body_text())
}

fn time(field: &'static str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).map_err(|_| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("{field}: expected an RFC 3339 time"),
            )
        })
    })
    .transpose()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    entity_type: Option<String>,
    entity_id: Option<String>,
    actor_id: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
    /// 1-200, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

/// `GET /api/v1/audit/events`: newest first, filtered, cursor-paginated.
pub async fn events(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query.map_err(|e| query_error(&e))?;
    let filter = audit::query::Filter {
        entity_type: q.entity_type,
        entity_id: q.entity_id,
        actor_id: q.actor_id,
        action: q.action,
        from: time("from", q.from.as_deref())?,
        to: time("to", q.to.as_deref())?,
    }
    .validated()?;
    let cursor = q.cursor.as_deref().map(audit::query::Cursor::parse).transpose()?;
    let limit = crate::plumbing::access::limit(q.limit.as_deref())?;
    let mut tx = state.store.tenant_tx(principal.tenant).await?;
    let page = audit::query::query(&mut tx, &filter, cursor, limit).await?;
    tx.commit().await?;
    Ok(Json(crate::plumbing::access::ListPage { items: page.events, next_cursor: page.next_cursor }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportQuery {
    format: Option<String>,
    from: Option<String>,
    to: Option<String>,
    entity_type: Option<String>,
    entity_id: Option<String>,
    action: Option<String>,
}

/// Sends export chunks into the response body; a slow client slows the COPY (backpressure).
struct ChannelSink(tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>);

impl audit::export::Sink for ChannelSink {
    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.0.send(Ok(chunk.to_vec())).await.map_err(|_| std::io::Error::other("client went away"))
    }
}

/// `GET /api/v1/audit/export?format=csv|ndjson&from=&to=&entity_type=&entity_id=&action=`:
/// streamed, constant memory, as a download (`Content-Disposition: attachment`) named after the
/// organisation, the entity (a per-document export: `entity_id=<document id>`) and the time.
pub async fn export(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| query_error(&e))?;
    let format: audit::export::Format = q.format.as_deref().unwrap_or("ndjson").parse()?;
    let filter = audit::export::ExportFilter {
        from: time("from", q.from.as_deref())?,
        to: time("to", q.to.as_deref())?,
        entity_type: q.entity_type,
        entity_id: q.entity_id,
        action: q.action,
    };
    // Refuse bad input before the response starts: afterwards errors can only cut it short.
    filter.validate()?;
    // The entity id passed the export's grammar (A-Z a-z 0-9 - _ . : @): nothing to escape.
    let filename = format!(
        "audit-{}-{}-{}.{}",
        principal.tenant.as_uuid(),
        filter.entity_id.as_deref().unwrap_or("all").replace(':', "_"),
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        match format {
            audit::export::Format::Csv => "csv",
            audit::export::Format::Ndjson => "ndjson",
        }
    );
    let mut tx = state.store.tenant_tx(principal.tenant).await?;
    let event = audit::Event::new(
        "audit.exported",
        audit::Entity::new("audit_log", None)?,
        audit::Changes::none().field("format", None::<&str>, q.format.as_deref().unwrap_or("ndjson")).field(
            "entity_id",
            None::<&str>,
            filter.entity_id.as_deref(),
        ),
    )?;
    audit::record_by(&mut tx, &principal.who, &event).await?;
    tx.commit().await?;

    let (send, recv) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
    let store = state.store.clone();
    let tenant = principal.tenant;
    tokio::spawn(async move {
        let mut sink = ChannelSink(send.clone());
        let result = async {
            let mut tx = store.tenant_tx(tenant).await?;
            audit::export::export_tenant(&mut tx, &filter, format, &mut sink).await?;
            tx.commit().await?;
            Ok::<(), audit::AuditError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "audit export stopped early");
            let _ = send.send(Err(std::io::Error::other("export failed"))).await;
        }
    });
    let stream = futures_util::stream::unfold(recv, |mut r| async move { r.recv().await.map(|item| (item, r)) });
    let content_type = match format {
        audit::export::Format::Csv => "text/csv; charset=utf-8",
        audit::export::Format::Ndjson => "application/x-ndjson",
    };
    let disposition = format!("attachment; filename=\"{filename}\"");
    Ok((
        [(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `GET /api/v1/audit/chain`: this organisation's chain head, newest signed checkpoint, and what
/// the server's own newest recomputation of the chain found (`audit::watch`).
pub async fn chain(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<audit::watch::ChainStatus>, ApiError> {
    let mut tx = state.store.tenant_tx(principal.tenant).await?;
    let status = audit::watch::status(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(status))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct BundleQuery {
    /// RFC 3339; events from this time (default: the beginning).
    from: Option<String>,
    /// RFC 3339; events up to this time (default: now).
    to: Option<String>,
}

/// `GET /api/v1/audit/bundle?from=&to=`: the regulator bundle as one tar download — events,
/// the signed checkpoints (the head is signed first if it moved), the public keys that signed them
/// (the current key, and earlier ones the server was started with), a manifest of
/// SHA-256 sums, a README and the stand-alone `verify.py`. Downloading one is itself audited.
pub async fn bundle(
    State(state): State<AppState>,
    principal: Principal,
    query: Result<Query<BundleQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| query_error(&e))?;
    let filter = audit::export::ExportFilter {
        from: time("from", q.from.as_deref())?,
        to: time("to", q.to.as_deref())?,
        entity_type: None,
        entity_id: None,
        action: None,
    };
    filter.validate()?;
    let Some(key) = state.audit_key.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this server holds no audit signing key, so it cannot sign a bundle",
        ));
    };
    let mut tx = state.store.tenant_tx(principal.tenant).await?;
    // The bundle should end on a signed head.
    audit::checkpoint::checkpoint_tenant(&mut tx, &key).await?;
    let slug = identity::directory::tenants::current(&mut tx).await?.slug;
    let name = format!("audit-bundle-{slug}-{}", Utc::now().format("%Y%m%dT%H%M%SZ"));
    let packed = audit::export::pack_bundle(&mut tx, &slug, &filter, &key, &state.previous_audit_keys, &name).await?;
    let event = audit::Event::new(
        "audit.bundle_exported",
        audit::Entity::new("audit_log", None)?,
        audit::Changes::none()
            .field("events", None::<u64>, packed.manifest.events)
            .field("checkpoints", None::<u64>, packed.manifest.checkpoints)
            .field("key_id", None::<&str>, packed.manifest.key_id.as_str()),
    )?;
    audit::record_by(&mut tx, &principal.who, &event).await?;
    tx.commit().await?;

    let (_, path, len, guard) = packed.into_parts();
    let file = tokio::fs::File::open(&path).await.map_err(audit::AuditError::from)?;
    // Read in 64 KiB chunks; the temporary directory goes when the last chunk has been read.
    let stream = futures_util::stream::unfold(Some((file, guard)), |state| async move {
        use tokio::io::AsyncReadExt;
        let (mut file, guard) = state?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), Some((file, guard))))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}.tar\"")),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
