//! `/api/v1/invitations`: owners and admins invite people by email; the invited person accepts
//! with the token (unauthenticated route: the token is the credential).
//!
//! `POST /api/v1/programme/partners/{id}/invitations` invites a person into one partner company of
//! the vendor's programme (role `partner_admin` or `partner_agent`); the same accept route makes
//! them a partner person of that company. It runs in a programme transaction, so a partner's
//! administrator naming another partner gets 404, as for a partner that does not exist.
//!
//! Until the mailer is wired, the token is returned once in the creation response;
//! [`identity::admin::invitations::invitation_mail`] renders the message that will carry it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use identity::admin::invitations::{
    self, Acceptance, IssuedInvitation, NewInvitation, NewPartnerInvitation, PresentedInvitation,
};
use identity::{EmailAddress, Role};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::plumbing::access::{bounded, json, path_id};
use crate::{ApiError, AppState, ClientContext, Principal};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = InvitationCreateBody)]
pub(crate) struct CreateBody {
    email: String,
    role: String,
    #[serde(default)]
    department_id: Option<Uuid>,
    #[serde(default)]
    membership_valid_until: Option<DateTime<Utc>>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = InvitationCreated)]
pub(crate) struct Created {
    id: Uuid,
    email: String,
    role: String,
    expires_at: DateTime<Utc>,
    /// Shown once; only its hash is stored.
    token: String,
}

/// `POST /api/v1/invitations` {email, role, department_id?, membership_valid_until?}
/// → 201 {id, email, role, expires_at, token}
pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: CreateBody = json(&body)?;
    bounded("email", &req.email, 254)?;
    let new = NewInvitation {
        email: EmailAddress::parse(&req.email)?,
        role: req.role.parse::<Role>()?,
        department_id: req.department_id,
        membership_valid_until: req.membership_valid_until,
    };
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let issued = invitations::create(&mut tx, &p.who, p.permit()?, p.role, &new).await?;
    let org = identity::directory::tenants::current(&mut tx).await?;
    tx.commit().await?;
    let inv = issued.invitation;
    // The invitation is committed: a mail failure is logged, not fatal (the admin also gets the
    // token once, to deliver another way).
    let (subject, text) = invitations::invitation_mail(
        &org.name,
        &inv.role,
        issued.token.expose_secret(),
        inv.expires_at,
        state.invitation_url().as_deref(),
    );
    let mail = identity::signin::mail::Mail { to: new.email.clone(), subject, text };
    if let Err(e) = state.mailer.send(&mail).await {
        tracing::warn!(error = %e, invitation = %inv.id, "could not send the invitation mail");
    }
    let body = Created {
        id: inv.id,
        email: inv.email,
        role: inv.role,
        expires_at: inv.expires_at,
        token: issued.token.expose_secret().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = PartnerInvitationCreateBody)]
pub(crate) struct PartnerCreateBody {
    email: String,
    /// `partner_admin` or `partner_agent`; a partner's administrator invites `partner_agent` only.
    role: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PartnerInvitationCreated)]
pub(crate) struct PartnerCreated {
    id: Uuid,
    email: String,
    role: String,
    partner_id: Uuid,
    expires_at: DateTime<Utc>,
    /// Shown once; only its hash is stored.
    token: String,
}

/// A partner invitation issued and mailed (the page's path too, `crate::ui::programme`): `Ok` with
/// whether the mail went out. The invitation is committed before the mail is sent.
pub(crate) async fn invite_partner_person(
    state: &AppState,
    p: &Principal,
    partner_id: Uuid,
    email: &str,
    role: &str,
) -> Result<(IssuedInvitation, bool), ApiError> {
    bounded("email", email, 254)?;
    let new = NewPartnerInvitation { email: EmailAddress::parse(email)?, role: role.parse::<Role>()?, partner_id };
    let mut tx = crate::api::mdf::program_tx(state, p).await?;
    let issued = invitations::create_for_partner(&mut tx, &p.who, p.permit()?, p.role, &new).await?;
    let org = identity::directory::tenants::current(&mut tx).await?;
    tx.commit().await?;
    let inv = &issued.invitation;
    let (subject, text) = invitations::invitation_mail(
        &org.name,
        &inv.role,
        issued.token.expose_secret(),
        inv.expires_at,
        state.invitation_url().as_deref(),
    );
    let mail = identity::signin::mail::Mail { to: new.email, subject, text };
    let sent = state.mailer.send(&mail).await;
    if let Err(e) = &sent {
        tracing::warn!(error = %e, invitation = %inv.id, "could not send the invitation mail");
    }
    Ok((issued, sent.is_ok()))
}

/// `POST /api/v1/programme/partners/{id}/invitations` {email, role} → 201
/// {id, email, role, partnerId, expiresAt, token}. Another partner's (for a partner's
/// administrator) or another organisation's partner: 404; a partner administrator inviting an
/// administrator: 403 `role_escalation`; a partner agent: 403 (the route's guard).
pub async fn create_for_partner(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let partner_id = path_id(&id)?;
    let req: PartnerCreateBody = json(&body)?;
    let (issued, _) = invite_partner_person(&state, &p, partner_id, &req.email, &req.role).await?;
    let inv = issued.invitation;
    let body = PartnerCreated {
        id: inv.id,
        email: inv.email,
        role: inv.role,
        partner_id,
        expires_at: inv.expires_at,
        token: issued.token.expose_secret().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/v1/programme/partners/{id}/invitations` → {items: [...]} (never a token): vendor
/// staff see any partner's, a partner's administrator their own company's; another partner's: 404.
pub async fn list_for_partner(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Json<impl Serialize>, ApiError> {
    let partner_id = path_id(&id)?;
    let mut tx = crate::api::mdf::program_tx(&state, &p).await?;
    let items = invitations::list_for_partner(&mut tx, p.permit()?, partner_id).await?;
    tx.commit().await?;
    Ok(Json(crate::plumbing::access::ListPage::all(items)))
}

/// `DELETE /api/v1/programme/partners/{id}/invitations/{invitation}` → 204. Another partner's
/// invitation (or one not into this partner): 404; accepted: 409 `invitation_used`; a partner's
/// administrator revoking an administrator's invitation: 403 `role_escalation`.
pub async fn revoke_for_partner(
    State(state): State<AppState>,
    p: Principal,
    Path((id, invitation)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (partner_id, invitation) = (path_id(&id)?, path_id(&invitation)?);
    revoke_partner_invitation(&state, &p, partner_id, invitation).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The revocation in its programme transaction (the page's path too, `crate::ui::programme`).
pub(crate) async fn revoke_partner_invitation(
    state: &AppState,
    p: &Principal,
    partner_id: Uuid,
    invitation: Uuid,
) -> Result<(), ApiError> {
    let mut tx = crate::api::mdf::program_tx(state, p).await?;
    invitations::revoke_for_partner(&mut tx, &p.who, p.permit()?, p.role, partner_id, invitation).await?;
    tx.commit().await?;
    Ok(())
}

/// `GET /api/v1/invitations` → {items: [...]} (never a token)
pub async fn list(State(state): State<AppState>, p: Principal) -> Result<Json<impl Serialize>, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let items = invitations::list(&mut tx).await?;
    tx.commit().await?;
    Ok(Json(crate::plumbing::access::ListPage::all(items)))
}

/// `DELETE /api/v1/invitations/{id}` → 204; accepted: 409 `invitation_used`.
pub async fn revoke(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(&id)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    invitations::revoke(&mut tx, &p.who, p.permit()?, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = InvitationAcceptBody)]
pub(crate) struct AcceptBody {
    token: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = InvitationAccepted)]
pub(crate) struct Accepted {
    organisation_id: Uuid,
    user_id: Uuid,
    membership_id: Uuid,
    role: Role,
    new_account: bool,
}

/// `POST /api/v1/invitations/accept` {token, name?, password?}
/// → {organisation_id, user_id, membership_id, role, new_account}; then sign in as usual.
/// Unknown/forged token 401; expired, revoked or used 410 `invitation_expired`; a new account's
/// weak password 422 `weak_password`; an existing account's wrong password 401.
pub async fn accept(
    State(state): State<AppState>,
    ctx: ClientContext,
    body: axum::body::Bytes,
) -> Result<Json<impl Serialize>, ApiError> {
    let req: AcceptBody = json(&body)?;
    bounded("token", &req.token, 200)?;
    bounded("password", req.password.as_deref().unwrap_or_default(), 1024)?;
    bounded("name", req.name.as_deref().unwrap_or_default(), 200)?;
    let presented: PresentedInvitation = req.token.parse()?;
    let acceptance = Acceptance { name: req.name, password: req.password.map(SecretString::from) };
    let done = invitations::accept(&state.store, &state.auth, &presented, &acceptance, &ctx.origin()).await?;
    Ok(Json(Accepted {
        organisation_id: done.tenant.as_uuid(),
        user_id: done.user_id,
        membership_id: done.membership_id,
        role: done.role,
        new_account: done.created_user,
    }))
}
