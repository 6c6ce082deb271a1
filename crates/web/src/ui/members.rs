//! `/members`: the organisation's members for those who may read them (owners, admins,
//! auditors), and their administration for those who may manage them (owners, admins).
//!
//! The same calls as `crate::api::members` and `crate::api::invitations`
//! (`identity::admin::members::*`, `identity::admin::invitations::*`) in the caller's `TenantTx`, with the
//! permit the route's guard (`Guard::Org`) issued. Destructive actions carry their reason in the
//! same form; a missing reason is the API's `reason_required`, shown under the field. A user id
//! of another organisation is not found (the lookups run under this organisation's RLS).

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use authz::{Action, Resource};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use identity::revocation::Revocation;
use identity::{EmailAddress, MembershipStatus, Role};
use secrecy::ExposeSecret;
use store::TenantTx;
use uuid::Uuid;

use crate::api::documents::member;
use crate::plumbing::access::{path_id, reason};
use crate::ui::chrome::{Chrome, Section};
use crate::ui::form::{Fields, encode};
use crate::ui::format;
use crate::{ApiError, AppState, Principal};

/// Members shown per page of the list.
const PAGE: usize = 50;

#[derive(Debug, Clone)]
pub(crate) struct MemberRow {
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub role: String,
    pub department: String,
    pub status: &'static str,
    pub tone: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct PendingRow {
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub role: String,
    pub roles: Vec<Choice>,
    pub reason: String,
    pub reason_error: String,
}

#[derive(Debug, Clone)]
pub(crate) struct InvitationRow {
    pub email: String,
    pub role: String,
    pub expires: String,
}

/// An option of a `<select>`.
#[derive(Debug, Clone)]
pub(crate) struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "members.html")]
pub(crate) struct MembersPage {
    pub chrome: Chrome,
    pub may_manage: bool,
    pub q: String,
    pub status: String,
    pub statuses: Vec<Choice>,
    pub members: Vec<MemberRow>,
    pub next: String,
    pub pending: Vec<PendingRow>,
    pub invitations: Vec<InvitationRow>,
    pub invite_email: String,
    pub invite_email_error: String,
    pub invite_roles: Vec<Choice>,
    pub invite_role_error: String,
    /// The invitation token, shown once after an invitation is sent.
    pub issued_token: String,
    pub everyone_reason: String,
    pub everyone_error: String,
    pub notice: String,
    pub notice_tone: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct SessionRow {
    pub started: String,
    pub last_seen: String,
    pub expires: String,
    pub ip: String,
    pub agent: String,
    pub current: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "member.html")]
pub(crate) struct MemberPage {
    pub chrome: Chrome,
    pub may_manage: bool,
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub role: String,
    pub department: String,
    pub status: &'static str,
    pub tone: &'static str,
    pub active: bool,
    pub suspended: bool,
    pub sessions: Vec<SessionRow>,
    pub roles: Vec<Choice>,
    pub departments: Vec<Choice>,
    pub role_reason: String,
    pub role_error: String,
    pub role_reason_error: String,
    pub status_reason: String,
    pub status_reason_error: String,
    pub sessions_reason: String,
    pub sessions_reason_error: String,
    pub notice: String,
    pub notice_tone: &'static str,
}

/// The roles an administrator assigns to members, in the order offered.
const ROLES: [Role; 8] =
    [Role::Staff, Role::Hod, Role::Finance, Role::Md, Role::Auditor, Role::ChannelManager, Role::Admin, Role::Owner];

/// The roles `caller` may grant, `selected` chosen.
fn role_choices(caller: Role, selected: Option<Role>) -> Vec<Choice> {
    ROLES
        .iter()
        .filter(|r| identity::admin::members::may_grant(caller, **r))
        .map(|r| Choice {
            value: r.as_str().to_owned(),
            label: format::role(*r).to_owned(),
            selected: Some(*r) == selected,
        })
        .collect()
}

fn status_words(s: &str) -> (&'static str, &'static str) {
    match s {
        "active" => ("Active", "done"),
        "pending" => ("Waiting for approval", "waiting"),
        "suspended" => ("Deactivated", "refused"),
        "invited" => ("Invited", "neutral"),
        "ended" => ("Ended", "neutral"),
        _ => ("Unknown", "neutral"),
    }
}

/// A refusal the member pages answer under a field (or above the form): the API's stable codes
/// in words. Anything else (404, a policy refusal) stays a refusal page.
fn words(e: &ApiError) -> Option<String> {
    let text = match e.code {
        "reason_required" => "Give a reason of 3 to 200 characters: it is recorded in the audit trail.".to_owned(),
        "role_escalation" => "Your role cannot grant this role, or manage a member who holds it.".to_owned(),
        "last_owner" => "This is the organisation's last active owner: make someone else owner first.".to_owned(),
        "last_admin" => {
            "This is the organisation's last active administrator: make someone else an administrator first.".to_owned()
        }
        "invalid_state" => format!("This cannot be done now: {}.", e.message),
        "already_member" => "This address already belongs to a member of the organisation.".to_owned(),
        "invalid_email" | "invalid_field" if e.message.contains("email") => {
            "Enter an email address, like name@example.com.".to_owned()
        }
        "invalid_field" if e.message.starts_with("role") => "Choose a role from the list.".to_owned(),
        _ => return None,
    };
    Some(text)
}

/// Whether the policy engine lets this person manage members (the forms show only then).
fn may_manage(state: &AppState, p: &Principal) -> bool {
    state
        .authz
        .decide(&p.subject(), Action::MembersManage, &Resource::Organisation { tenant: p.tenant.as_uuid() })
        .is_ok()
}

fn forget(state: &AppState, p: &Principal, user: Option<Uuid>) {
    state.sessions.apply(&Revocation { tenant: Some(p.tenant.as_uuid()), user, session: None });
}

async fn department_names(tx: &mut TenantTx) -> Result<HashMap<Uuid, String>, ApiError> {
    Ok(identity::directory::departments::list(tx, None, 500).await?.into_iter().map(|d| (d.id, d.name)).collect())
}

// --- The list --------------------------------------------------------------------------------

/// What the list shows: the query (`q`, a name or email fragment), the status and the cursor.
struct Listing {
    q: String,
    status: Option<MembershipStatus>,
    cursor: Option<Uuid>,
}

impl Listing {
    fn parse(raw: Option<String>) -> Result<Self, ApiError> {
        let f = Fields::parse(raw.unwrap_or_default().as_bytes())?;
        let status = match f.get("status") {
            "" => None,
            s => Some(s.parse::<MembershipStatus>()?),
        };
        let cursor = match f.get("cursor") {
            "" => None,
            c => Some(Uuid::try_parse(c).map_err(|_| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_cursor",
                    "this list's next-page link is broken",
                )
            })?),
        };
        Ok(Self { q: f.get("q").to_owned(), status, cursor })
    }
}

/// Everything the list page shows, read in the request's transaction.
async fn list_page(
    state: &AppState,
    p: &Principal,
    tx: &mut TenantTx,
    headers: &HeaderMap,
    listing: &Listing,
) -> Result<MembersPage, ApiError> {
    let m = member(p, tx).await?;
    let depts = department_names(tx).await?;
    let needle = listing.q.to_lowercase();
    let mut members = Vec::new();
    let mut next = String::new();
    let mut after = listing.cursor;
    // Keyset pages of the membership list, filtered by the query, until a page is full.
    'pages: loop {
        let batch = identity::admin::members::page(tx, listing.status, after, 200).await?;
        for x in &batch {
            let hit = needle.is_empty()
                || x.display_name.to_lowercase().contains(&needle)
                || x.email.to_lowercase().contains(&needle);
            if !hit {
                continue;
            }
            if members.len() == PAGE {
                let last = members.last().map(|r: &(Uuid, MemberRow)| r.0).unwrap_or_default();
                let mut url = format!("/members?cursor={last}");
                if !listing.q.is_empty() {
                    url.push_str(&format!("&q={}", encode(&listing.q)));
                }
                if let Some(s) = listing.status {
                    url.push_str(&format!("&status={}", s.as_str()));
                }
                next = url;
                break 'pages;
            }
            let (status, tone) = status_words(&x.status);
            members.push((
                x.membership_id,
                MemberRow {
                    user_id: x.user_id.to_string(),
                    name: x.display_name.clone(),
                    email: x.email.clone(),
                    role: format::role_name(&x.role),
                    department: x.department_id.and_then(|d| depts.get(&d).cloned()).unwrap_or_default(),
                    status,
                    tone,
                },
            ));
        }
        if batch.len() < 200 {
            break;
        }
        after = batch.last().map(|x| x.membership_id);
    }
    let manage = may_manage(state, p);
    let pending = if manage {
        identity::admin::members::page(tx, Some(MembershipStatus::Pending), None, 200)
            .await?
            .into_iter()
            .map(|x| {
                let role = x.role.parse::<Role>().ok();
                PendingRow {
                    user_id: x.user_id.to_string(),
                    name: x.display_name,
                    email: x.email,
                    role: format::role_name(&x.role),
                    roles: role_choices(p.role, role),
                    reason: String::new(),
                    reason_error: String::new(),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let invitations = identity::admin::invitations::list(tx)
        .await?
        .into_iter()
        .filter(|i| i.status == "open")
        .map(|i| InvitationRow {
            email: i.email,
            role: format::role_name(&i.role),
            expires: format::moment(i.expires_at),
        })
        .collect();
    let chrome = Chrome::member(state, tx, &m, headers, Section::Members).await?;
    let statuses = [
        ("", "Any status"),
        ("active", "Active"),
        ("pending", "Waiting for approval"),
        ("suspended", "Deactivated"),
        ("ended", "Ended"),
    ]
    .into_iter()
    .map(|(v, l)| Choice {
        value: v.to_owned(),
        label: l.to_owned(),
        selected: listing.status.map_or("", MembershipStatus::as_str) == v,
    })
    .collect();
    Ok(MembersPage {
        chrome,
        may_manage: manage,
        q: listing.q.clone(),
        status: listing.status.map_or("", MembershipStatus::as_str).to_owned(),
        statuses,
        members: members.into_iter().map(|(_, r)| r).collect(),
        next,
        pending,
        invitations,
        invite_email: String::new(),
        invite_email_error: String::new(),
        invite_roles: role_choices(p.role, Some(Role::Staff)),
        invite_role_error: String::new(),
        issued_token: String::new(),
        everyone_reason: String::new(),
        everyone_error: String::new(),
        notice: String::new(),
        notice_tone: "success",
    })
}

/// What just happened, after a successful action on the list (`?done=`).
fn done_words(done: &str) -> &'static str {
    match done {
        "approved" => "Approved: they are a member now and can sign in.",
        "declined" => "Declined: their request to join has ended.",
        _ => "",
    }
}

/// The list page answered with `status` after `fill` (a refused form shown again).
async fn list_with(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    status: StatusCode,
    fill: impl FnOnce(&mut MembersPage),
) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let listing = Listing { q: String::new(), status: None, cursor: None };
    let mut page = list_page(state, p, &mut tx, headers, &listing).await?;
    tx.commit().await?;
    fill(&mut page);
    Ok((status, page).into_response())
}

/// `GET /members?q=&status=&cursor=`
pub async fn list(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let listing = Listing::parse(q.clone())?;
    let done = Fields::parse(q.unwrap_or_default().as_bytes())?.get("done").to_owned();
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let mut page = list_page(&state, &p, &mut tx, &headers, &listing).await?;
    tx.commit().await?;
    page.notice = done_words(&done).to_owned();
    Ok(page.into_response())
}

/// `POST /members/invitations` {email, role}: the invitation is mailed, and its token shown here
/// once (to hand over another way if the mail does not arrive).
pub async fn invite(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let (email_text, role_text) = (f.get("email").to_owned(), f.get("role").to_owned());
    let role = role_text.parse::<Role>().ok();
    let again = |email_error: String, role_error: String, status: StatusCode| {
        let (email_text, role_text) = (email_text.clone(), role_text.clone());
        let (state, p, headers) = (&state, &p, &headers);
        async move {
            list_with(state, p, headers, status, |page| {
                page.invite_email = email_text;
                page.invite_email_error = email_error;
                page.invite_role_error = role_error;
                page.invite_roles = role_choices(p.role, role_text.parse().ok());
            })
            .await
        }
    };
    let email = match EmailAddress::parse(&email_text) {
        Ok(e) if email_text.chars().count() <= 254 => e,
        _ => {
            let words = "Enter an email address, like name@example.com.".to_owned();
            return again(words, String::new(), StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let Some(role) = role else {
        return again(String::new(), "Choose a role from the list.".to_owned(), StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let new = identity::admin::invitations::NewInvitation {
        email: email.clone(),
        role,
        department_id: None,
        membership_valid_until: None,
    };
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let issued = match identity::admin::invitations::create(&mut tx, &p.who, p.permit()?, p.role, &new).await {
        Ok(i) => i,
        Err(e) => {
            drop(tx);
            let e = ApiError::from(e);
            return match (e.code, words(&e)) {
                ("role_escalation", Some(w)) => again(String::new(), w, e.status).await,
                (_, Some(w)) => again(w, String::new(), e.status).await,
                (_, None) => Err(e),
            };
        }
    };
    let org = identity::directory::tenants::current(&mut tx).await?;
    tx.commit().await?;
    let inv = issued.invitation;
    let (subject, text) = identity::admin::invitations::invitation_mail(
        &org.name,
        &inv.role,
        issued.token.expose_secret(),
        inv.expires_at,
        state.invitation_url().as_deref(),
    );
    let mail = identity::signin::mail::Mail { to: email, subject, text };
    let sent = state.mailer.send(&mail).await;
    if let Err(e) = &sent {
        tracing::warn!(error = %e, invitation = %inv.id, "could not send the invitation mail");
    }
    let token = issued.token.expose_secret().to_owned();
    list_with(&state, &p, &headers, StatusCode::OK, |page| {
        page.notice = if sent.is_ok() {
            format!("Invitation sent to {} as {}.", inv.email, format::role_name(&inv.role))
        } else {
            format!("The invitation for {} is ready, but the mail could not be sent.", inv.email)
        };
        page.issued_token = token;
    })
    .await
}

/// `POST /members/{user_id}/approve` {role}
pub async fn approve(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(user): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = path_id(&user)?;
    let f = Fields::parse(&body)?;
    let role = match f.get("role") {
        "" => None,
        r => Some(r.parse::<Role>()?),
    };
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    match identity::admin::members::approve(&mut tx, &p.who, p.permit()?, p.role, user, role, None).await {
        Ok(_) => {
            tx.commit().await?;
            Ok(Redirect::to("/members?done=approved").into_response())
        }
        Err(e) => {
            drop(tx);
            pending_refused(&state, &p, &headers, user, "", e.into()).await
        }
    }
}

/// `POST /members/{user_id}/decline` {reason}
pub async fn decline(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(user): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = path_id(&user)?;
    let f = Fields::parse(&body)?;
    let typed = f.get("reason").to_owned();
    let result = async {
        let why = reason(Some(&typed))?;
        let mut tx = state.store.tenant_tx(p.tenant).await?;
        identity::admin::members::decline(&mut tx, &p.who, p.permit()?, user, why).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match result {
        Ok(()) => Ok(Redirect::to("/members?done=declined").into_response()),
        Err(e) => pending_refused(&state, &p, &headers, user, &typed, e).await,
    }
}

/// A refused approve/decline: the list again, the words under that joiner's reason.
async fn pending_refused(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    user: Uuid,
    typed: &str,
    e: ApiError,
) -> Result<Response, ApiError> {
    let Some(w) = words(&e) else { return Err(e) };
    let id = user.to_string();
    list_with(state, p, headers, e.status, |page| {
        if let Some(row) = page.pending.iter_mut().find(|r| r.user_id == id) {
            row.reason = typed.to_owned();
            row.reason_error = w;
        } else {
            page.notice = w;
            page.notice_tone = "error";
        }
    })
    .await
}

/// `POST /members/sign-out-everyone` {reason}: every session of the organisation (this one
/// too) ends.
pub async fn revoke_everyone(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = Fields::parse(&body)?;
    let typed = f.get("reason").to_owned();
    let why = match reason(Some(&typed)) {
        Ok(w) => w,
        Err(e) => {
            let w = words(&e).unwrap_or_default();
            return list_with(&state, &p, &headers, e.status, |page| {
                page.everyone_reason = typed.clone();
                page.everyone_error = w;
            })
            .await;
        }
    };
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    identity::admin::members::revoke_sessions(&mut tx, &p.who, p.permit()?, None, why).await?;
    tx.commit().await?;
    forget(&state, &p, None);
    Ok(Redirect::to("/sign-in").into_response())
}

// --- One member ------------------------------------------------------------------------------

/// Everything one member's page shows; another organisation's user is not found.
async fn member_page(
    state: &AppState,
    p: &Principal,
    tx: &mut TenantTx,
    headers: &HeaderMap,
    user: Uuid,
) -> Result<MemberPage, ApiError> {
    let me = member(p, tx).await?;
    let target = identity::admin::members::lock(tx, user).await?;
    let who = identity::directory::users::get_member(tx, user).await?;
    let depts = identity::directory::departments::list(tx, None, 500).await?;
    let department =
        target.department_id.and_then(|d| depts.iter().find(|x| x.id == d).map(|x| x.name.clone())).unwrap_or_default();
    let mine = p.person().map(|x| x.session);
    let sessions = identity::admin::members::sessions_of(tx, user, mine)
        .await?
        .into_iter()
        .map(|s| SessionRow {
            started: format::moment(s.created_at),
            last_seen: format::moment(s.last_seen_at),
            expires: format::moment(s.expires_at),
            ip: s.ip.unwrap_or_default(),
            agent: s.user_agent.unwrap_or_default(),
            current: s.current,
        })
        .collect();
    let chrome = Chrome::member(state, tx, &me, headers, Section::Members).await?;
    let (status, tone) = status_words(target.status.as_str());
    let mut departments =
        vec![Choice { value: String::new(), label: "Keep the current department".into(), selected: true }];
    departments.extend(depts.into_iter().map(|d| Choice { value: d.id.to_string(), label: d.name, selected: false }));
    Ok(MemberPage {
        chrome,
        may_manage: may_manage(state, p),
        user_id: user.to_string(),
        name: who.display_name,
        email: who.email,
        role: format::role(target.role).to_owned(),
        department,
        status,
        tone,
        active: target.status == MembershipStatus::Active,
        suspended: target.status == MembershipStatus::Suspended,
        sessions,
        roles: role_choices(p.role, Some(target.role)),
        departments,
        role_reason: String::new(),
        role_error: String::new(),
        role_reason_error: String::new(),
        status_reason: String::new(),
        status_reason_error: String::new(),
        sessions_reason: String::new(),
        sessions_reason_error: String::new(),
        notice: String::new(),
        notice_tone: "success",
    })
}

/// What just happened, after a successful action on a member (`?done=`).
fn member_done(done: &str) -> &'static str {
    match done {
        "role" => "Role changed. Their sessions under the old role were ended: they sign in again to continue.",
        "deactivated" => "Deactivated: their sessions here were ended and they cannot sign in to this organisation.",
        "reactivated" => "Reactivated: they can sign in again.",
        "unlocked" => "Unlocked: they can try to sign in again.",
        "revoked" => "Their sessions were ended: they sign in again to continue.",
        _ => "",
    }
}

/// `GET /members/{user_id}`
pub async fn show(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(user): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let user = path_id(&user)?;
    let q = Fields::parse(q.unwrap_or_default().as_bytes())?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let mut page = member_page(&state, &p, &mut tx, &headers, user).await?;
    tx.commit().await?;
    page.notice = member_done(q.get("done")).to_owned();
    Ok(page.into_response())
}

/// Which form of the member page a refusal belongs to.
#[derive(Clone, Copy)]
enum Form {
    Role,
    Status,
    Sessions,
}

/// A refused action on a member: their page again, the words under the form's field (with
/// what was typed), answered with the refusal's status. Other refusals stay refusal pages.
async fn member_refused(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    user: Uuid,
    form: Form,
    typed: &str,
    e: ApiError,
) -> Result<Response, ApiError> {
    let Some(w) = words(&e) else { return Err(e) };
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let mut page = member_page(state, p, &mut tx, headers, user).await?;
    tx.commit().await?;
    let is_reason = e.code == "reason_required";
    match form {
        Form::Role if is_reason => (page.role_reason, page.role_reason_error) = (typed.to_owned(), w),
        Form::Role => (page.role_reason, page.role_error) = (typed.to_owned(), w),
        Form::Status => (page.status_reason, page.status_reason_error) = (typed.to_owned(), w),
        Form::Sessions => (page.sessions_reason, page.sessions_reason_error) = (typed.to_owned(), w),
    }
    Ok((e.status, page).into_response())
}

fn done(user: Uuid, what: &str) -> Response {
    Redirect::to(&format!("/members/{user}?done={what}")).into_response()
}

/// One action on a member from their page: `act` runs in one organisation transaction with the
/// reason typed into `form` (checked first; `None`: the action asks for none), which then commits; the
/// member's cached sessions are dropped on this node when `ends_sessions`. Done: back to their
/// page saying `what`; refused: the page again, the refusal under `form`, what was typed kept.
#[allow(clippy::too_many_arguments)]
async fn member_action(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    user: Uuid,
    form: Form,
    typed: Option<&str>,
    what: &str,
    ends_sessions: bool,
    act: impl AsyncFnOnce(&mut TenantTx, &str) -> Result<(), ApiError>,
) -> Result<Response, ApiError> {
    let result = async {
        let why = match typed {
            Some(t) => reason(Some(t))?,
            None => "",
        };
        let mut tx = state.store.tenant_tx(p.tenant).await?;
        act(&mut tx, why).await?;
        tx.commit().await?;
        if ends_sessions {
            forget(state, p, Some(user));
        }
        Ok::<_, ApiError>(())
    }
    .await;
    match result {
        Ok(()) => Ok(done(user, what)),
        Err(e) => member_refused(state, p, headers, user, form, typed.unwrap_or_default(), e).await,
    }
}

/// `POST /members/{user_id}/role` {role, department_id?, reason}
pub async fn change_role(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(user): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = path_id(&user)?;
    let f = Fields::parse(&body)?;
    let typed = f.get("reason").to_owned();
    member_action(&state, &p, &headers, user, Form::Role, Some(&typed), "role", true, async |tx, why| {
        let role: Role = f.get("role").parse()?;
        let department = match f.get("department_id") {
            "" => None,
            d => Some(Uuid::try_parse(d).map_err(|_| ApiError::not_found())?),
        };
        let to = identity::admin::members::Assignment { role, department };
        identity::admin::members::change_role(tx, &p.who, p.permit()?, p.role, user, to, why).await?;
        Ok(())
    })
    .await
}

/// `POST /members/{user_id}/deactivate` {reason}
pub async fn deactivate(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(user): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = path_id(&user)?;
    let typed = Fields::parse(&body)?.get("reason").to_owned();
    member_action(&state, &p, &headers, user, Form::Status, Some(&typed), "deactivated", true, async |tx, why| {
        identity::admin::members::deactivate(tx, &p.who, p.permit()?, p.role, user, why).await?;
        Ok(())
    })
    .await
}

/// `POST /members/{user_id}/reactivate` {reason}
pub async fn reactivate(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(user): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = path_id(&user)?;
    let typed = Fields::parse(&body)?.get("reason").to_owned();
    member_action(&state, &p, &headers, user, Form::Status, Some(&typed), "reactivated", false, async |tx, why| {
        identity::admin::members::reactivate(tx, &p.who, p.permit()?, p.role, user, why).await?;
        Ok(())
    })
    .await
}

/// `POST /members/{user_id}/unlock`: clears a sign-in lockout (audited `member.unlocked`; no
/// reason asked).
pub async fn unlock(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    let user = path_id(&user)?;
    member_action(&state, &p, &headers, user, Form::Status, None, "unlocked", false, async |tx, _| {
        let mut g = state.store.global_tx().await?;
        // Records `member.unlocked` itself, in this organisation transaction.
        identity::admin::members::unlock(tx, &mut g, &p.who, p.permit()?, p.role, user).await?;
        g.commit().await?;
        Ok(())
    })
    .await
}

/// `POST /members/{user_id}/sessions/revoke` {reason}
pub async fn revoke_sessions(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Path(user): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = path_id(&user)?;
    let typed = Fields::parse(&body)?.get("reason").to_owned();
    member_action(&state, &p, &headers, user, Form::Sessions, Some(&typed), "revoked", true, async |tx, why| {
        identity::admin::members::revoke_sessions(tx, &p.who, p.permit()?, Some(user), why).await?;
        Ok(())
    })
    .await
}
