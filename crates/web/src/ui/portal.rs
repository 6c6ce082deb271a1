//! Portal pages (issue 16). The organisation's side: `/relations` (the vendors and clients, a
//! new relation), `/relations/{id}` (its people, links, shared documents; invite, mint, revoke,
//! share a document, end). The outside side: `/portal/{relation}/enter?token=…` (the page a
//! link opens: one button, so a mail scanner fetching the link consumes nothing), `/portal`
//! (what is shared with the relation), `/portal/documents/{id}` (a shared document, its files,
//! the upload form with its progress bar) and the file routes behind it.
//!
//! Every page calls the same functions as `/api/v1/relations…` and `/api/v1/portal/…`
//! (`crate::api::portals`), in the same relation transaction, under the same guards.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use files::{Disposition, FileName};
use identity::admin::relations::{self, RelationKind};
use uuid::Uuid;

use crate::api::documents::member;
use crate::api::files::approval_error;
use crate::api::portals::{self as api, relation_tx};
use crate::plumbing::access::path_id;
use crate::ui::chrome::{Chrome, Section};
use crate::ui::form::Fields;
use crate::ui::format;
use crate::ui::sign_in::{answer, form_token_matches};
use crate::{ApiError, AppState, ClientContext, Principal};

// --- The organisation's side ---------------------------------------------------------------

pub(crate) struct RelationRow {
    pub id: String,
    pub company: String,
    pub kind: &'static str,
    pub status: String,
    pub since: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "relations.html")]
pub(crate) struct RelationsPage {
    pub chrome: Chrome,
    pub relations: Vec<RelationRow>,
    pub may_manage: bool,
    pub error: String,
}

fn kind_words(k: RelationKind) -> &'static str {
    match k {
        RelationKind::Vendor => "Vendor",
        RelationKind::Client => "Client",
    }
}

fn may_manage(state: &AppState, m: &approvals::documents::Member) -> bool {
    state
        .authz
        .decide(&m.subject, authz::Action::RelationsManage, &authz::Resource::Organisation { tenant: m.subject.tenant })
        .is_ok()
}

async fn relations_page(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    error: String,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let mut tx = relation_tx(state, p).await?;
    let m = member(p, &mut tx).await?;
    let rows = relations::list(&mut tx).await?;
    let chrome = Chrome::member(state, &mut tx, &m, headers, Section::Relations).await?;
    tx.commit().await?;
    let relations = rows
        .into_iter()
        .map(|r| RelationRow {
            id: r.id.to_string(),
            company: r.company_name,
            kind: kind_words(r.kind),
            status: r.status,
            since: format::moment(r.created_at),
        })
        .collect();
    Ok((status, RelationsPage { chrome, relations, may_manage: may_manage(state, &m), error }).into_response())
}

/// `GET /relations`
pub async fn list(State(state): State<AppState>, p: Principal, headers: HeaderMap) -> Result<Response, ApiError> {
    relations_page(&state, &p, &headers, String::new(), StatusCode::OK).await
}

/// `POST /relations` {kind, company_name} → `303` to the new relation.
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let kind = match f.get("kind") {
        "vendor" => RelationKind::Vendor,
        "client" => RelationKind::Client,
        _ => {
            let error = "Choose whether the company is a vendor or a client.".to_owned();
            return relations_page(&state, &p, &headers, error, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let name = f.get("company_name");
    if name.trim().is_empty() || name.chars().count() > 200 {
        let error = "Enter the company's name (at most 200 characters).".to_owned();
        return relations_page(&state, &p, &headers, error, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let mut tx = relation_tx(&state, &p).await?;
    let r = relations::create(&mut tx, &p.who, p.permit()?, kind, name).await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/relations/{}", r.id)).into_response())
}

pub(crate) struct PersonRow {
    pub name: String,
    pub email: String,
    pub status: String,
}

pub(crate) struct LinkRow {
    pub id: String,
    pub person: String,
    pub status: String,
    pub open: bool,
    pub used: bool,
    pub expires: String,
}

pub(crate) struct SharedRow {
    pub id: String,
    pub number: String,
    pub title: String,
    pub since: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "relation.html")]
pub(crate) struct RelationPage {
    pub chrome: Chrome,
    pub id: String,
    pub company: String,
    pub kind: &'static str,
    pub active: bool,
    pub may_manage: bool,
    pub people: Vec<PersonRow>,
    pub links: Vec<LinkRow>,
    pub documents: Vec<SharedRow>,
    /// A link just minted: shown once, here, never again.
    pub fresh_link: String,
    pub notice: String,
    pub error: String,
}

/// What the relation page says above its sections: a link just made (shown once), a notice, an
/// error.
#[derive(Default)]
struct Said {
    fresh_link: String,
    notice: String,
    error: String,
}

impl Said {
    fn error(error: &str) -> Self {
        Self { error: error.to_owned(), ..Self::default() }
    }
}

async fn relation_page(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    id: Uuid,
    said: Said,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let Said { fresh_link, notice, error } = said;
    let mut tx = relation_tx(state, p).await?;
    let m = member(p, &mut tx).await?;
    let d = api::detail(&mut tx, id).await?;
    let mut documents = Vec::new();
    for (doc, at) in approvals::portal::addressed(&mut tx, id).await.map_err(approval_error)? {
        let shown = approvals::documents::get(&mut tx, &state.authz, &m, doc).await.ok();
        let (number, title) = shown.map_or_else(|| (String::new(), String::new()), |x| (x.number, x.title));
        documents.push(SharedRow { id: doc.to_string(), number, title, since: format::moment(at) });
    }
    let chrome = Chrome::member(state, &mut tx, &m, headers, Section::Relations).await?;
    tx.commit().await?;
    let name_of = |u: Uuid| d.people.iter().find(|x| x.user_id == u).map(|x| x.email.clone()).unwrap_or_default();
    let links = d
        .links
        .iter()
        .map(|l| LinkRow {
            id: l.id.to_string(),
            person: name_of(l.user_id),
            open: l.status == "open",
            used: l.status == "used",
            status: l.status.clone(),
            expires: format::moment(l.expires_at),
        })
        .collect();
    let people = d
        .people
        .iter()
        .map(|x| PersonRow { name: x.display_name.clone(), email: x.email.clone(), status: x.status.clone() })
        .collect();
    let page = RelationPage {
        chrome,
        id: id.to_string(),
        company: d.relation.company_name.clone(),
        kind: kind_words(d.relation.kind),
        active: d.relation.status == "active",
        may_manage: may_manage(state, &m),
        people,
        links,
        documents,
        fresh_link,
        notice,
        error,
    };
    Ok((status, page).into_response())
}

/// `GET /relations/{id}`
pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let notice = match q.get("done") {
        "revoked" => "The link was withdrawn; a session it opened has ended.",
        "shared" => "The document is shared with this relation.",
        "ended" => "The relation has ended: its people are signed out and their links withdrawn.",
        _ => "",
    };
    relation_page(&state, &p, &headers, id, Said { notice: notice.to_owned(), ..Said::default() }, StatusCode::OK).await
}

/// `POST /relations/{id}/invite` {email, name?, days?} → the relation page showing the new link
/// once (a page, not a redirect: the token never travels in a URL of ours).
pub async fn invite(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let f = Fields::parse(&body)?;
    let again = |error: &str, status| relation_page(&state, &p, &headers, id, Said::error(error), status);
    let Ok(email) = identity::EmailAddress::parse(f.get("email")) else {
        return again("Enter the person's email address, like name@company.example.", StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    };
    let days = match f.get("days").trim() {
        "" => None,
        d => match d.parse::<i64>() {
            Ok(n) if (1..=30).contains(&n) => Some(n),
            _ => return again("A link lasts from 1 to 30 days.", StatusCode::UNPROCESSABLE_ENTITY).await,
        },
    };
    let name = f.get("name").trim().chars().take(200).collect::<String>();
    let mut g = state.store.global_tx().await?;
    let user = match identity::directory::users::find_by_email(&mut g, &email).await? {
        Some(u) => u,
        None => {
            // The relation first: an unknown one creates no account.
            let mut tx = relation_tx(&state, &p).await?;
            relations::get(&mut tx, id).await?;
            tx.rollback().await?;
            let shown = if name.is_empty() { email.as_str().to_owned() } else { name };
            identity::directory::users::create(&mut g, &p.who, &email, &shown).await?
        }
    };
    g.commit().await?;
    let mut tx = relation_tx(&state, &p).await?;
    let issued = match relations::add_person(&mut tx, &p.who, p.permit()?, id, user.id).await {
        Ok(_) => relations::mint_link(&mut tx, &p.who, p.permit()?, id, user.id, days).await,
        Err(e) => Err(e),
    };
    let issued = match issued {
        Ok(i) => i,
        Err(identity::IdentityError::Conflict { reason, .. }) => {
            drop(tx);
            return again(&format!("No link was made: {reason}."), StatusCode::CONFLICT).await;
        }
        Err(e) => return Err(e.into()),
    };
    let company = relations::get(&mut tx, id).await?.company_name;
    tx.commit().await?;
    let url = api::portal_url(id, secrecy::ExposeSecret::expose_secret(&issued.token));
    let mailed =
        f.get("send_mail") == "yes" && api::mail_link(&state, &p, email.as_str(), &company, &url, &issued.link).await;
    let notice = if mailed {
        format!("A portal link for {} was made and emailed to them. It works once.", email.as_str())
    } else if f.get("send_mail") == "yes" {
        format!("A portal link for {} was made, but the email could not be sent: send them the link.", email.as_str())
    } else {
        format!("A portal link for {} was made. Send it to them; it works once.", email.as_str())
    };
    relation_page(&state, &p, &headers, id, Said { fresh_link: url, notice, ..Said::default() }, StatusCode::OK).await
}

/// `POST /relations/{id}/links/{link_id}/revoke` → `303` back.
pub async fn revoke_link(
    State(state): State<AppState>,
    p: Principal,
    Path((id, link)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (id, link) = (path_id(&id)?, path_id(&link)?);
    let mut tx = relation_tx(&state, &p).await?;
    relations::revoke_link(&mut tx, &p.who, p.permit()?, id, link, None).await?;
    tx.commit().await?;
    state.sessions.apply(&identity::revocation::Revocation {
        tenant: Some(p.tenant.as_uuid()),
        user: None,
        session: None,
    });
    Ok(Redirect::to(&format!("/relations/{id}?done=revoked")).into_response())
}

/// `POST /relations/{id}/end` → `303` back.
pub async fn end(State(state): State<AppState>, p: Principal, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let mut tx = relation_tx(&state, &p).await?;
    relations::end(&mut tx, &p.who, p.permit()?, id, None).await?;
    tx.commit().await?;
    state.sessions.apply(&identity::revocation::Revocation {
        tenant: Some(p.tenant.as_uuid()),
        user: None,
        session: None,
    });
    Ok(Redirect::to(&format!("/relations/{id}?done=ended")).into_response())
}

/// `POST /relations/{id}/documents` {document: number or id} → `303` back.
pub async fn share(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let f = Fields::parse(&body)?;
    let wanted = f.get("document").trim().to_owned();
    let mut tx = relation_tx(&state, &p).await?;
    let m = member(&p, &mut tx).await?;
    let document = match wanted.parse::<Uuid>() {
        Ok(u) => Some(u),
        Err(_) => sqlx_lookup(&mut tx, &wanted).await?,
    };
    let refused = "No document you can read has that number.";
    let Some(document) = document else {
        drop(tx);
        return relation_page(&state, &p, &headers, id, Said::error(refused), StatusCode::NOT_FOUND).await;
    };
    match approvals::portal::address(&mut tx, &state.authz, p.permit()?, &m, id, document).await {
        Ok(()) => {
            tx.commit().await?;
            Ok(Redirect::to(&format!("/relations/{id}?done=shared")).into_response())
        }
        Err(approvals::documents::ApprovalError::NotFound) => {
            drop(tx);
            relation_page(&state, &p, &headers, id, Said::error(refused), StatusCode::NOT_FOUND).await
        }
        Err(e) => Err(approval_error(e)),
    }
}

/// A document's id from its human number (`PO-2026-0031`), if this transaction shows it.
async fn sqlx_lookup(tx: &mut store::TenantTx, number: &str) -> Result<Option<Uuid>, ApiError> {
    if number.is_empty() || number.len() > 40 {
        return Ok(None);
    }
    approvals::portal::id_by_number(tx, number).await.map_err(approval_error)
}

// --- The outside side ----------------------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "portal_enter.html")]
pub(crate) struct EnterPage {
    pub chrome: Chrome,
    pub relation: String,
    pub token: String,
    pub usable: bool,
    pub problem: String,
}

fn enter_page(csrf: String, relation: &str, token: &str, problem: &str) -> EnterPage {
    EnterPage {
        chrome: Chrome::public(csrf),
        relation: relation.to_owned(),
        token: token.to_owned(),
        usable: problem.is_empty(),
        problem: problem.to_owned(),
    }
}

const FORGED: &str = "This portal link is not valid. Open it exactly as it was sent to you, or ask for a new one.";

/// `GET /portal/{relation}/enter?token=…`: one button; nothing is consumed by opening the page.
pub async fn enter_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(relation): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let token = q.get("token").chars().take(200).collect::<String>();
    let ok = relation.parse::<Uuid>().is_ok() && token.parse::<identity::signin::portal::PresentedLink>().is_ok();
    let status = if ok { StatusCode::OK } else { StatusCode::NOT_FOUND };
    Ok(answer(&headers, state.secure_cookies, status, |csrf| {
        enter_page(csrf, &relation, &token, if ok { "" } else { FORGED })
    }))
}

/// `POST /portal/{relation}/enter` {token, csrf_token} → the session cookies and `303 /portal`,
/// or a page saying why not (used, withdrawn, expired, not valid).
pub async fn enter(
    State(state): State<AppState>,
    ctx: ClientContext,
    headers: HeaderMap,
    Path(relation): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let token = f.get("token").chars().take(200).collect::<String>();
    let secure = state.secure_cookies;
    let refuse = |status: StatusCode, problem: &str| {
        answer(&headers, secure, status, |csrf| enter_page(csrf, &relation, &token, problem))
    };
    if !form_token_matches(&headers, &f) {
        return Ok(refuse(StatusCode::FORBIDDEN, "This form had expired, so nothing was sent. Please try again."));
    }
    let Ok(relation_id) = relation.parse::<Uuid>() else { return Ok(refuse(StatusCode::NOT_FOUND, FORGED)) };
    match api::consume(&state, &ctx, &token, relation_id).await {
        Ok(issued) => {
            let mut r = Redirect::to("/portal").into_response();
            crate::plumbing::cookies::set_session(&mut r, &issued, secure);
            Ok(r)
        }
        Err(e) => {
            let words = match e.code {
                "portal_link_used" => {
                    "This link has already been used. Each link opens the portal once: ask for a new one."
                }
                "portal_link_revoked" => "This link has been withdrawn. Ask for a new one.",
                "portal_link_expired" => "This link has expired. Ask for a new one.",
                _ if e.status == StatusCode::UNAUTHORIZED => FORGED,
                _ => return Err(e),
            };
            let mut page = refuse(e.status, words);
            // A refused link leaves nothing to retry on this page.
            *page.status_mut() = e.status;
            Ok(page)
        }
    }
}

pub(crate) struct SharedItem {
    pub id: String,
    pub number: String,
    pub title: String,
    pub amount: String,
    pub date: String,
    pub status: &'static str,
    pub tone: &'static str,
    /// Open questions on this document.
    pub open: usize,
}

#[derive(Template, WebTemplate)]
#[template(path = "portal.html")]
pub(crate) struct PortalPage {
    pub chrome: Chrome,
    pub documents: Vec<SharedItem>,
    /// Questions waiting for the relation's answer.
    pub open_questions: usize,
}

/// `GET /portal`: the documents shared with the person's relation.
pub async fn home(State(state): State<AppState>, p: Principal, headers: HeaderMap) -> Result<Response, ApiError> {
    let mut tx = relation_tx(&state, &p).await?;
    let m = member(&p, &mut tx).await?;
    let docs = approvals::portal::list(&mut tx, &state.authz, &m).await.map_err(approval_error)?;
    let open: Vec<Uuid> = approvals::requests::mine(&mut tx, &state.authz, &m, None)
        .await
        .map_err(approval_error)?
        .into_iter()
        .filter(approvals::requests::RelationRequest::is_open)
        .map(|r| r.document_id)
        .collect();
    let chrome = Chrome::portal(&mut tx, &m, &headers).await?;
    tx.commit().await?;
    let documents = docs
        .into_iter()
        .map(|d| SharedItem {
            open: open.iter().filter(|x| **x == d.id).count(),
            id: d.id.to_string(),
            amount: format::amount(d.amount_minor, &d.currency),
            date: format::date(d.document_date),
            status: format::status(d.status),
            tone: format::status_tone(d.status),
            number: d.number,
            title: d.title,
        })
        .collect();
    Ok((StatusCode::OK, PortalPage { chrome, documents, open_questions: open.len() }).into_response())
}

pub(crate) struct FileItem {
    pub id: String,
    pub name: String,
    pub when: String,
    pub mine: bool,
}

pub(crate) struct LineItem {
    pub description: String,
    pub amount: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "portal_document.html")]
pub(crate) struct PortalDocumentPage {
    pub chrome: Chrome,
    pub id: String,
    pub number: String,
    pub title: String,
    pub kind: &'static str,
    pub amount: String,
    pub date: String,
    pub status: &'static str,
    pub tone: &'static str,
    pub lines: Vec<LineItem>,
    pub files: Vec<FileItem>,
    /// The organisation's questions to the relation about this document (newest first).
    pub questions: Vec<crate::ui::requests::QuestionItem>,
    pub notice: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "portal_file_row.html")]
pub(crate) struct FileRow {
    pub f: FileItem,
}

/// `GET /portal/documents/{id}` (audited as `portal.document_viewed`).
pub async fn document(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let mut tx = relation_tx(&state, &p).await?;
    let m = member(&p, &mut tx).await?;
    let (d, files) = approvals::portal::get(&mut tx, &state.authz, &m, id).await.map_err(approval_error)?;
    let questions = crate::ui::requests::portal_questions(&mut tx, &state, &m, id, &files).await?;
    let chrome = Chrome::portal(&mut tx, &m, &headers).await?;
    tx.commit().await?;
    let me = m.subject.user;
    let page = PortalDocumentPage {
        chrome,
        id: d.id.to_string(),
        kind: format::kind(d.kind),
        amount: format::amount(d.amount_minor, &d.currency),
        date: format::date(d.document_date),
        status: format::status(d.status),
        tone: format::status_tone(d.status),
        lines: d
            .lines
            .iter()
            .map(|l| LineItem {
                description: l.description.clone(),
                amount: format::amount(l.amount_minor, &d.currency),
            })
            .collect(),
        files: files
            .iter()
            .map(|f| FileItem {
                id: f.id.to_string(),
                name: f.name.clone(),
                when: format::moment(f.created_at),
                mine: f.added_by == me,
            })
            .collect(),
        questions,
        notice: match q.get("done") {
            "uploaded" => "Your file was sent.".into(),
            "answered" => "Your answer was sent.".into(),
            _ => String::new(),
        },
        number: d.number,
        title: d.title,
    };
    Ok((StatusCode::OK, page).into_response())
}

/// `POST /portal/documents/{id}/files` (`multipart/form-data`: csrf_token, file) → `303` back,
/// or (`X-Upload: row`, the progress script) `201` with the new row.
pub async fn upload(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let boundary = crate::plumbing::cookies::multipart_boundary(&headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the upload form is sent as multipart/form-data",
        )
    })?;
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["csrf_token", "file"])
        .size_limit(multer::SizeLimit::new().for_field("csrf_token", 256));
    let mut form = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let choose = || {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "file: choose a file to send")
            .with_details(serde_json::json!({ "field": "file" }))
    };
    let uploaded = loop {
        let Some(field) = form.next_field().await.map_err(|e| crate::ui::attachments::form_error(&e))? else {
            return Err(choose());
        };
        if field.name() == Some("file") {
            let label = field.file_name().unwrap_or_default().to_owned();
            if label.is_empty() {
                return Err(choose());
            }
            crate::plumbing::access::bounded("name", &label, 1000)?;
            break api::receive(&state, &p, id, FileName::sanitise(&label), field).await?;
        }
        field.text().await.map_err(|e| crate::ui::attachments::form_error(&e))?;
    };
    if headers.get("x-upload").and_then(|v| v.to_str().ok()) != Some("row") {
        return Ok(Redirect::to(&format!("/portal/documents/{id}?done=uploaded#files")).into_response());
    }
    let a = uploaded.attachment;
    let f = FileItem { id: a.id.to_string(), name: a.name, when: format::moment(a.created_at), mine: true };
    Ok((StatusCode::CREATED, FileRow { f }).into_response())
}

/// `GET /portal/attachments/{id}/download` → `303` to a fresh signed link for this person.
pub async fn download(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let link = api::mint_file_link(&state, &p, id, Disposition::Attachment).await?;
    Ok(Redirect::to(&link.url).into_response())
}
