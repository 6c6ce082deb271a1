//! Vendor and client portals (issue 16) over HTTP.
//!
//! The organisation's side (`/api/v1/relations…`, `relations.read|manage`): relations, their
//! people, documents addressed to them, single-use portal links. The outside side
//! (`/api/v1/portal/…`, `portal.use`): entering with a link (a session like any other), the
//! documents addressed to the person's relation, their files, and uploads.
//!
//! Every handler opens `Store::relation_tx` with the signed-in person's own user id: the
//! database derives the relation scope from that person's membership (an API key, which is no
//! person, gets `none`; no route takes a key anyway). No request field names the caller's
//! relation. What is not shared with the caller is 404, like an id that does not exist.

use approvals::attachments::NewFile;
use approvals::documents::{ApprovalError, Member};
use approvals::portal::{self, SharedDocument};
use approvals::requests::RelationRequest;
use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use files::{Disposition, FileName};
use identity::EmailAddress;
use identity::admin::relations::{self, PortalLink, Relation, RelationKind, RelationPerson};
use identity::signin::portal::PresentedLink;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use store::{RelationScope, TenantTx};
use uuid::Uuid;

use crate::api::documents::{member, refusal};
use crate::api::files::{AttachmentFile, approval_error};
use crate::api::idempotency::json_response;
use crate::api::sign_in::{Delivery, issued_response};
use crate::plumbing::access::{ListPage, bounded, json, path_id};
use crate::{ApiError, AppState, ClientContext, Principal};

/// The signed-in person's id (nil for an API key: no membership, so the scope `none`).
fn acting_user(p: &Principal) -> Uuid {
    p.person().map_or(Uuid::nil(), |person| person.user)
}

pub(crate) async fn relation_tx(state: &AppState, p: &Principal) -> Result<TenantTx, ApiError> {
    Ok(state.store.relation_tx(p.tenant, RelationScope::Member(acting_user(p))).await?)
}

/// Drops this node's cached sessions of the organisation at once (the NOTIFY reaches the others).
fn forget_sessions(state: &AppState, p: &Principal) {
    state.sessions.apply(&identity::revocation::Revocation {
        tenant: Some(p.tenant.as_uuid()),
        user: None,
        session: None,
    });
}

fn people_only(p: &Principal) -> Result<Uuid, ApiError> {
    p.person().map(|person| person.user).ok_or_else(|| {
        ApiError::new(StatusCode::FORBIDDEN, "user_required", "portals are used by signed-in people, not API keys")
    })
}

/// Where a portal link is opened: the relation's page, with the token as `token`.
#[must_use]
pub(crate) fn portal_url(relation: Uuid, token: &str) -> String {
    format!("/portal/{relation}/enter?token={token}")
}

// --- The organisation's side ---------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RelationCreateBody)]
pub(crate) struct CreateBody {
    kind: RelationKind,
    company_name: String,
}

/// `GET /api/v1/relations`
pub async fn list(State(state): State<AppState>, p: Principal) -> Result<Json<ListPage<Relation>>, ApiError> {
    let mut tx = relation_tx(&state, &p).await?;
    let items = relations::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(ListPage::all(items)))
}

/// `POST /api/v1/relations` {kind, company_name} → 201 the relation.
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: CreateBody = json(&body)?;
    bounded("company_name", &req.company_name, 200)?;
    let mut tx = relation_tx(&state, &p).await?;
    let r = relations::create(&mut tx, &p.who, p.permit()?, req.kind, &req.company_name).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

/// A document addressed to the relation, as the organisation lists it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Addressed {
    document_id: Uuid,
    addressed_at: DateTime<Utc>,
}

/// A relation with its people, links and addressed documents.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RelationDetail {
    #[serde(flatten)]
    pub(crate) relation: Relation,
    pub(crate) people: Vec<RelationPerson>,
    pub(crate) links: Vec<PortalLink>,
    documents: Vec<Addressed>,
}

pub(crate) async fn detail(tx: &mut TenantTx, id: Uuid) -> Result<RelationDetail, ApiError> {
    let relation = relations::get(tx, id).await?;
    let people = relations::people(tx, id).await?;
    let links = relations::links(tx, id).await?;
    let documents = portal::addressed(tx, id)
        .await
        .map_err(approval_error)?
        .into_iter()
        .map(|(document_id, addressed_at)| Addressed { document_id, addressed_at })
        .collect();
    Ok(RelationDetail { relation, people, links, documents })
}

/// `GET /api/v1/relations/{id}`
pub async fn get(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<RelationDetail>, ApiError> {
    let id = path_id(&id)?;
    let mut tx = relation_tx(&state, &p).await?;
    let d = detail(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(d))
}

/// Why a relation ends or a link is withdrawn (kept on the ledger).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RelationReasonBody)]
pub(crate) struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

fn reason_body(body: &axum::body::Bytes) -> Result<ReasonBody, ApiError> {
    let req: ReasonBody = if body.is_empty() { ReasonBody::default() } else { json(body)? };
    bounded("reason", req.reason.as_deref().unwrap_or_default(), 500)?;
    Ok(req)
}

/// `POST /api/v1/relations/{id}/end` {reason?} → the relation, ended: its people's memberships
/// end, their sessions are revoked and open links withdrawn.
pub async fn end(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Relation>, ApiError> {
    let id = path_id(&id)?;
    let req = reason_body(&body)?;
    let mut tx = relation_tx(&state, &p).await?;
    let r = relations::end(&mut tx, &p.who, p.permit()?, id, req.reason.as_deref()).await?;
    tx.commit().await?;
    forget_sessions(&state, &p);
    Ok(Json(r))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RelationInviteBody)]
pub(crate) struct InviteBody {
    email: String,
    #[serde(default)]
    name: Option<String>,
    /// Days the link stays usable: 1-30, default 7.
    #[serde(default)]
    expires_in_days: Option<i64>,
    /// Also send the link to the person by email (through the server's mailer: the outbox by
    /// default). Default false.
    #[serde(default)]
    send_mail: bool,
}

/// A new portal link: shown once (only its hash is stored).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct LinkIssued {
    person: RelationPerson,
    link: PortalLink,
    token: String,
    /// The page to open: `/portal/{relation}/enter?token=…`.
    url: String,
    /// Whether the link was handed to the mailer for the person (asked with `send_mail`).
    mail_queued: bool,
}

/// Hands a fresh portal link to the mailer for `to` (after the link is committed: a mail failure
/// is logged and reported as not queued, never fatal; the member still has the link). The ledger
/// records `portal.link_mailed` before the mail leaves (no record, no mail) and
/// `portal.link_mail_failed` when the mailer refuses it. The mail carries the absolute link when
/// the server knows its public address.
pub(crate) async fn mail_link(
    state: &AppState,
    p: &Principal,
    to: &str,
    company: &str,
    path: &str,
    link: &PortalLink,
) -> bool {
    let Ok(to) = EmailAddress::parse(to) else { return false };
    let organisation = match record_mail(state, p, link, true).await {
        Ok(organisation) => organisation,
        Err(e) => {
            tracing::warn!(error = ?e, "portal link mail: not recorded, so not sent");
            return false;
        }
    };
    let url = match &state.public_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => path.to_owned(),
    };
    let (subject, text) = relations::portal_link_mail(&organisation, company, &url, link.expires_at);
    let mail = identity::signin::mail::Mail { to, subject, text };
    match state.mailer.send(&mail).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "could not send the portal link mail");
            if let Err(e) = record_mail(state, p, link, false).await {
                tracing::error!(error = ?e, "portal link mail: the failure could not be recorded");
            }
            false
        }
    }
}

/// Writes the mail's ledger event; the organisation's name, for the mail.
async fn record_mail(state: &AppState, p: &Principal, link: &PortalLink, sent: bool) -> Result<String, ApiError> {
    let mut tx = relation_tx(state, p).await?;
    let organisation = identity::directory::tenants::current(&mut tx).await?.name;
    relations::record_link_mailed(&mut tx, &p.who, p.permit()?, link, sent).await?;
    tx.commit().await?;
    Ok(organisation)
}

/// `POST /api/v1/relations/{id}/invite` {email, name?, expires_in_days?} → 201 the person and
/// a fresh portal link (creating the person's account if the address is new).
pub async fn invite(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let req: InviteBody = json(&body)?;
    bounded("email", &req.email, 254)?;
    bounded("name", req.name.as_deref().unwrap_or_default(), 200)?;
    let email = EmailAddress::parse(&req.email)?;
    // The relation first: an unknown one creates no account.
    let mut tx = relation_tx(&state, &p).await?;
    let relation = relations::get(&mut tx, id).await?;
    if relation.status != "active" {
        return Err(ApiError::new(StatusCode::CONFLICT, "relation_ended", "this relation has ended"));
    }
    tx.rollback().await?;
    let mut g = state.store.global_tx().await?;
    let user = match identity::directory::users::find_by_email(&mut g, &email).await? {
        Some(u) => u,
        None => {
            let name = req.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or(email.as_str());
            identity::directory::users::create(&mut g, &p.who, &email, name).await?
        }
    };
    g.commit().await?;
    let mut tx = relation_tx(&state, &p).await?;
    let person = relations::add_person(&mut tx, &p.who, p.permit()?, id, user.id).await?;
    let issued = relations::mint_link(&mut tx, &p.who, p.permit()?, id, user.id, req.expires_in_days).await?;
    tx.commit().await?;
    let token = issued.token.expose_secret().to_owned();
    let url = portal_url(id, &token);
    let mail_queued =
        req.send_mail && mail_link(&state, &p, &person.email, &relation.company_name, &url, &issued.link).await;
    let body = LinkIssued { person, url, link: issued.link, token, mail_queued };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PortalLinkCreateBody)]
pub(crate) struct LinkBody {
    user_id: Uuid,
    #[serde(default)]
    expires_in_days: Option<i64>,
    /// Also send the link to the person by email. Default false.
    #[serde(default)]
    send_mail: bool,
}

/// `POST /api/v1/relations/{id}/links` {user_id, expires_in_days?} → 201 a fresh link for one
/// of the relation's people.
pub async fn mint_link(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let req: LinkBody = json(&body)?;
    let mut tx = relation_tx(&state, &p).await?;
    let issued = relations::mint_link(&mut tx, &p.who, p.permit()?, id, req.user_id, req.expires_in_days).await?;
    let person = relations::people(&mut tx, id)
        .await?
        .into_iter()
        .find(|x| x.user_id == req.user_id)
        .ok_or_else(ApiError::not_found)?;
    let company = relations::get(&mut tx, id).await?.company_name;
    tx.commit().await?;
    let token = issued.token.expose_secret().to_owned();
    let url = portal_url(id, &token);
    let mail_queued = req.send_mail && mail_link(&state, &p, &person.email, &company, &url, &issued.link).await;
    let body = LinkIssued { person, url, link: issued.link, token, mail_queued };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `POST /api/v1/relations/{id}/links/{link_id}/revoke` {reason?} → 204; a used link's session
/// ends too.
pub async fn revoke_link(
    State(state): State<AppState>,
    p: Principal,
    Path((id, link)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let (id, link) = (path_id(&id)?, path_id(&link)?);
    let req = reason_body(&body)?;
    let mut tx = relation_tx(&state, &p).await?;
    relations::revoke_link(&mut tx, &p.who, p.permit()?, id, link, req.reason.as_deref()).await?;
    tx.commit().await?;
    forget_sessions(&state, &p);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RelationAddressBody)]
pub(crate) struct AddressBody {
    document_id: Uuid,
}

/// `POST /api/v1/relations/{id}/documents` {document_id} → 204: the document is shared with
/// the relation (the member must be able to read it).
pub async fn address(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id)?;
    let req: AddressBody = json(&body)?;
    let mut tx = relation_tx(&state, &p).await?;
    let m = member(&p, &mut tx).await?;
    match portal::address(&mut tx, &state.authz, p.permit()?, &m, id, req.document_id).await {
        Ok(()) => {}
        Err(ApprovalError::Conflict(reason)) => {
            return Err(ApiError::new(StatusCode::CONFLICT, "relation_ended", reason));
        }
        Err(e) => {
            drop(tx);
            return Err(refusal(&state, &p, "POST /api/v1/relations/{id}/documents", e).await);
        }
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- The outside side ----------------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PortalEnterBody)]
pub(crate) struct EnterBody {
    token: String,
    /// The relation the link was opened for (from its URL).
    relation_id: Uuid,
    #[serde(default)]
    token_delivery: Delivery,
}

/// `POST /api/v1/portal/enter` {token, relation_id, token_delivery?} → the new session, like any
/// sign-in. Unknown, forged or another relation's token 401; used 410 `portal_link_used`
/// (audited); revoked 410 `portal_link_revoked`; expired 410 `portal_link_expired`.
pub async fn enter(
    State(state): State<AppState>,
    ctx: ClientContext,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: EnterBody = json(&body)?;
    bounded("token", &req.token, 200)?;
    let issued = consume(&state, &ctx, &req.token, req.relation_id).await?;
    Ok(issued_response(&state, issued, req.token_delivery))
}

/// Consumes a portal link (the API's and the page's one way in).
pub(crate) async fn consume(
    state: &AppState,
    ctx: &ClientContext,
    token: &str,
    relation: Uuid,
) -> Result<identity::signin::sessions::Issued, ApiError> {
    let presented: PresentedLink = token.trim().parse()?;
    Ok(identity::signin::portal::consume(&state.store, &state.auth, &presented, relation, &ctx.origin()).await?)
}

async fn portal_member(state: &AppState, p: &Principal) -> Result<(TenantTx, Member), ApiError> {
    people_only(p)?;
    let mut tx = relation_tx(state, p).await?;
    let m = member(p, &mut tx).await?;
    Ok((tx, m))
}

/// `GET /api/v1/portal/documents`: the documents addressed to the caller's relation.
pub async fn documents(
    State(state): State<AppState>,
    p: Principal,
) -> Result<Json<ListPage<SharedDocument>>, ApiError> {
    let (mut tx, m) = portal_member(&state, &p).await?;
    let items = portal::list(&mut tx, &state.authz, &m).await.map_err(approval_error)?;
    tx.commit().await?;
    Ok(Json(ListPage::all(items)))
}

/// A shared document with the files the caller may see.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SharedWithFiles {
    #[serde(flatten)]
    document: SharedDocument,
    attachments: Vec<approvals::attachments::AttachmentRow>,
}

/// `GET /api/v1/portal/documents/{id}` (audited as `portal.document_viewed`).
pub async fn document(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<SharedWithFiles>, ApiError> {
    let id = path_id(&id)?;
    let (mut tx, m) = portal_member(&state, &p).await?;
    let (document, attachments) = portal::get(&mut tx, &state.authz, &m, id).await.map_err(approval_error)?;
    tx.commit().await?;
    Ok(Json(SharedWithFiles { document, attachments }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadQuery {
    /// The file's name: a label only (sanitised; never part of a storage path).
    name: String,
}

/// `POST /api/v1/portal/documents/{id}/files?name=` with the file as the body → 201 the
/// attachment (visible to the caller's relation and the organisation, never to another
/// relation). Limits and type checks as the organisation's own upload.
pub async fn upload(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    q: Result<Query<UploadQuery>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", e.body_text()))?;
    bounded("name", &q.name, 1000)?;
    let v = receive(&state, &p, id, FileName::sanitise(&q.name), body.into_data_stream()).await?;
    let value = serde_json::to_value(&v).map_err(|e| {
        tracing::error!(error = %e, "response encoding");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    })?;
    Ok(json_response(StatusCode::CREATED, value))
}

const UPLOAD_ROUTE: &str = "POST /api/v1/portal/documents/{id}/files";

async fn refused(state: &AppState, p: &Principal, e: ApprovalError) -> ApiError {
    match e {
        ApprovalError::NotFound => ApiError::not_found(),
        other => refusal(state, p, UPLOAD_ROUTE, other).await,
    }
}

/// Streams `body` into a new file of the caller's relation on shared document `id`: asks the
/// engine (`portal.contribute`) before a byte is read and again with the document locked
/// before recording; the stored object is removed if recording fails. The API's upload and the
/// portal page's form both come here.
pub(crate) async fn receive<S, E>(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    name: FileName,
    body: S,
) -> Result<AttachmentFile, ApiError>
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let svc = state.files.clone();
    let (mut tx, m) = portal_member(state, p).await?;
    if let Err(e) = portal::may_contribute(&mut tx, &state.authz, &m, id, false).await {
        drop(tx);
        return Err(refused(state, p, e).await);
    }
    let key = files::keys::current(&mut tx, &svc.keys).await?;
    tx.commit().await?;

    let stored = files::upload::put(&svc.storage, &key, name, body, svc.max_upload).await?;

    let recorded = async {
        let mut tx = relation_tx(state, p).await?;
        let (permit, visibility) = match portal::may_contribute(&mut tx, &state.authz, &m, id, true).await {
            Ok(v) => v,
            Err(e) => {
                drop(tx);
                return Err(refused(state, p, e).await);
            }
        };
        let blob = files::blobs::record(&mut tx, &permit, id, &m.who, &stored).await?;
        let file = NewFile {
            blob_id: blob.id,
            name: &blob.name,
            media_type: &blob.media_type,
            sha256: &stored.sha256,
            visibility,
        };
        let row = portal::add_file(&mut tx, &permit, &m.who, id, &file).await.map_err(approval_error)?;
        tx.commit().await?;
        Ok::<_, ApiError>(AttachmentFile { attachment: row, file: Some(blob) })
    }
    .await;
    if recorded.is_err()
        && let Err(rm) = svc.storage.remove(stored.tenant, stored.id).await
    {
        tracing::warn!(error = %rm, blob = %stored.id, "removing an unrecorded upload failed");
    }
    recorded
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PortalFileLinkBody)]
pub(crate) struct FileLinkBody {
    #[serde(default)]
    disposition: Option<Disposition>,
}

/// A signed download link for the caller alone.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct FileLink {
    pub(crate) url: String,
    expires_at: DateTime<Utc>,
}

/// `POST /api/v1/portal/attachments/{id}/links` {disposition?} → 201 {url, expires_at}: a link
/// to a file shared with the caller (`GET /api/v1/files/{token}`, five minutes, theirs only).
pub async fn file_link(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let req: FileLinkBody = if body.is_empty() { FileLinkBody { disposition: None } } else { json(&body)? };
    let minted = mint_file_link(&state, &p, id, req.disposition.unwrap_or(Disposition::Attachment)).await?;
    Ok((StatusCode::CREATED, Json(minted)).into_response())
}

pub(crate) async fn mint_file_link(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    disposition: Disposition,
) -> Result<FileLink, ApiError> {
    let user = people_only(p)?;
    let (mut tx, m) = portal_member(state, p).await?;
    let (row, _permit) = portal::attachment(&mut tx, &state.authz, &m, id).await.map_err(approval_error)?;
    let blob_id = row.blob_id.ok_or_else(crate::api::files::not_a_file)?;
    let blob = files::blobs::get(&mut tx, blob_id).await?.ok_or_else(ApiError::not_found)?;
    if blob.deleted_at.is_some() {
        return Err(files::FilesError::Deleted.into());
    }
    tx.commit().await?;
    let (token, link) = state.files.links.mint(
        p.tenant.as_uuid(),
        blob_id,
        user,
        disposition,
        Utc::now(),
        files::links::DEFAULT_LIFETIME,
    )?;
    Ok(FileLink { url: format!("/api/v1/files/{token}"), expires_at: link.expires_at })
}

// --- Requests to relations -----------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RelationRequestAskBody)]
pub(crate) struct AskBody {
    /// The relation the document is addressed to.
    relation_id: Uuid,
    /// The question (1-2000 characters).
    question: String,
    /// Ask for a file with the answer. Default false.
    #[serde(default)]
    file_requested: bool,
}

/// Maps the requests' domain refusals: `invalid_field` 422 naming the field, `request_closed`
/// 409, the rest as every document route.
pub(crate) async fn request_refusal(state: &AppState, p: &Principal, route: &str, e: ApprovalError) -> ApiError {
    match e {
        ApprovalError::Conflict(reason) => ApiError::new(StatusCode::CONFLICT, "request_closed", reason),
        ApprovalError::Invalid { field, reason } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", format!("{field}: {reason}"))
                .with_details(serde_json::json!({ "field": field }))
        }
        ApprovalError::NotFound => ApiError::not_found(),
        other => refusal(state, p, route, other).await,
    }
}

/// `POST /api/v1/documents/{id}/requests` {relation_id, question, file_requested?} → 201 the
/// request: a question to a relation the document is addressed to (`portal.ask`; the member
/// must be able to read the document). Audited as `relation_request.asked`.
pub async fn ask(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let req: AskBody = json(&body)?;
    bounded("question", &req.question, approvals::requests::QUESTION_MAX)?;
    let mut tx = relation_tx(&state, &p).await?;
    let m = member(&p, &mut tx).await?;
    let asked =
        approvals::requests::ask(&mut tx, &state.authz, &m, req.relation_id, id, &req.question, req.file_requested)
            .await;
    let asked = match asked {
        Ok(r) => r,
        Err(e) => {
            drop(tx);
            return Err(request_refusal(&state, &p, "POST /api/v1/documents/{id}/requests", e).await);
        }
    };
    tx.commit().await?;
    p.checked.mark();
    Ok((StatusCode::CREATED, Json(asked)).into_response())
}

/// `GET /api/v1/documents/{id}/requests` → the questions asked of relations about the document,
/// with their answers (for members who may read the document).
pub async fn document_requests(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<ListPage<RelationRequest>>, ApiError> {
    let id = path_id(&id)?;
    let mut tx = relation_tx(&state, &p).await?;
    let m = member(&p, &mut tx).await?;
    let items = match approvals::requests::for_document(&mut tx, &state.authz, &m, id).await {
        Ok(r) => r,
        Err(e) => {
            drop(tx);
            return Err(request_refusal(&state, &p, "GET /api/v1/documents/{id}/requests", e).await);
        }
    };
    tx.commit().await?;
    p.checked.mark();
    Ok(Json(ListPage::all(items)))
}

/// `GET /api/v1/portal/requests`: the questions addressed to the caller's relation, newest first.
pub async fn requests(
    State(state): State<AppState>,
    p: Principal,
) -> Result<Json<ListPage<RelationRequest>>, ApiError> {
    let (mut tx, m) = portal_member(&state, &p).await?;
    let items = approvals::requests::mine(&mut tx, &state.authz, &m, None).await.map_err(approval_error)?;
    tx.commit().await?;
    Ok(Json(ListPage::all(items)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RelationRequestAnswerBody)]
pub(crate) struct AnswerBody {
    /// The written answer (at most 4000 characters).
    #[serde(default)]
    answer: Option<String>,
    /// One of the caller's relation's own uploads on the document
    /// (`POST /api/v1/portal/documents/{id}/files` first).
    #[serde(default)]
    attachment_id: Option<Uuid>,
}

/// `POST /api/v1/portal/requests/{id}/answer` {answer?, attachment_id?} → the request, answered
/// and closed. Another relation's or organisation's request 404; answered already 409
/// `request_closed`; no answer, bad text or a file not the caller's on that document 422.
pub async fn answer(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<RelationRequest>, ApiError> {
    let id = path_id(&id)?;
    let req: AnswerBody = json(&body)?;
    bounded("answer", req.answer.as_deref().unwrap_or_default(), approvals::requests::ANSWER_MAX)?;
    answer_request(&state, &p, id, req.answer.as_deref(), req.attachment_id).await.map(Json)
}

/// The API's and the portal page's one way to answer.
pub(crate) async fn answer_request(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    text: Option<&str>,
    attachment: Option<Uuid>,
) -> Result<RelationRequest, ApiError> {
    let (mut tx, m) = portal_member(state, p).await?;
    match approvals::requests::answer(&mut tx, &state.authz, &m, id, text, attachment).await {
        Ok(r) => {
            tx.commit().await?;
            Ok(r)
        }
        Err(e) => {
            drop(tx);
            Err(request_refusal(state, p, "POST /api/v1/portal/requests/{id}/answer", e).await)
        }
    }
}
