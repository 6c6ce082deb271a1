//! Email one-time codes, second factors and the MFA setting over HTTP.
//!
//! Sign-in endpoints (`/auth/email-code*`, `/auth/mfa`) are unauthenticated and answer in a way
//! that reveals nothing about who exists: a code request is always 202 with one body; every
//! wrong, expired or used code is one 401 `invalid_code`. `/me/mfa/*` acts on the caller's own
//! user (interactive sessions only), `/settings/mfa` on the caller's organisation (owner/admin).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use identity::EmailAddress;
use identity::signin::email_codes::{self, Purpose};
use identity::signin::mfa::{self, Answer};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::sign_in::{Delivery, factors, issued_response, outcome_response, resolve};
use crate::plumbing::access::{ListPage, json, limit};
use crate::plumbing::ip_allowlist::{self, Subject};
use crate::{ApiError, AppState, ClientContext, Principal};

fn too_long() -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "a field is too long")
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeRequest {
    organisation: String,
    email: String,
    purpose: Purpose,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CodeAccepted)]
pub(crate) struct Accepted {
    status: &'static str,
}

/// `POST /api/v1/auth/email-code` {organisation, email, purpose: login | verify_email} → 202
/// `{"status":"accepted"}`, the same for every address.
pub async fn request_code(
    State(state): State<AppState>,
    ctx: ClientContext,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: CodeRequest = json(&body)?;
    if req.purpose == Purpose::Mfa {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "purpose: login or verify_email"));
    }
    send_code(&state, &ctx, &req.organisation, &req.email, req.purpose).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { status: "accepted" })).into_response())
}

/// Mails a one-time code, whichever face asks (the API above, the email-code sign-in page): the
/// same work and the same answer for members, non-members and unknown addresses (no oracle).
///
/// # Errors
/// 422 for malformed fields, 403 `ip_not_allowed`, 429 past the per-address mail budget.
pub(crate) async fn send_code(
    state: &AppState,
    ctx: &ClientContext,
    organisation: &str,
    email: &str,
    purpose: Purpose,
) -> Result<(), ApiError> {
    if organisation.len() > 100 || email.len() > 254 {
        return Err(too_long());
    }
    let email = EmailAddress::parse(email)?;
    let tenant = resolve(state, organisation).await?;
    if let Some(t) = tenant {
        ip_allowlist::enforce(state, t, ctx, Subject::Login(email.as_str())).await?;
    }
    email_codes::request(&state.store, &state.mailer, tenant, &email, purpose, &ctx.origin()).await?;
    Ok(())
}

/// What a redeemed code did.
pub(crate) enum Redeemed {
    /// A `verify_email` code: the address is verified.
    Verified,
    /// A `login` code: a session, or the challenge for a second factor.
    SignedIn(mfa::LoginOutcome),
}

/// Redeems a mailed code, whichever face asks (the API below, the email-code sign-in page).
///
/// # Errors
/// 422 for malformed fields, 403 `ip_not_allowed` / `password_required`, 401 `invalid_code` for
/// every wrong, expired, used or unknown code.
pub(crate) async fn redeem_code(
    state: &AppState,
    ctx: &ClientContext,
    organisation: &str,
    email: &str,
    code: &str,
) -> Result<Redeemed, ApiError> {
    if organisation.len() > 100 || email.len() > 254 || code.len() > 32 {
        return Err(too_long());
    }
    let email = EmailAddress::parse(email)?;
    let tenant = resolve(state, organisation).await?;
    if let Some(t) = tenant {
        ip_allowlist::enforce(state, t, ctx, Subject::Login(email.as_str())).await?;
    }
    let o = ctx.origin();
    let redeemed = email_codes::redeem(&state.store, tenant, &email, code.trim(), &o).await?;
    let Some(tenant) = tenant else { return Err(identity::IdentityError::InvalidCode.into()) };
    match redeemed.purpose {
        Purpose::VerifyEmail => Ok(Redeemed::Verified),
        Purpose::Login | Purpose::Mfa => {
            let outcome = mfa::after_first_factor(
                &state.auth,
                &state.store,
                factors(state),
                tenant,
                redeemed.user,
                mfa::FirstFactor::EmailCode,
                &o,
            )
            .await?;
            Ok(Redeemed::SignedIn(outcome))
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyRequest {
    organisation: String,
    email: String,
    code: String,
    /// `cookie` (default) or `body`: see `LoginRequest.token_delivery`.
    #[serde(default)]
    token_delivery: Delivery,
}

/// `POST /api/v1/auth/email-code/verify` {organisation, email, code, token_delivery}: a `login`
/// code signs in (tokens, or an MFA challenge); a `verify_email` code answers 204.
pub async fn verify_code(
    State(state): State<AppState>,
    ctx: ClientContext,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: VerifyRequest = json(&body)?;
    match redeem_code(&state, &ctx, &req.organisation, &req.email, &req.code).await? {
        Redeemed::Verified => Ok(StatusCode::NO_CONTENT.into_response()),
        Redeemed::SignedIn(outcome) => Ok(outcome_response(&state, outcome, req.token_delivery)),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MfaRequest {
    mfa_token: String,
    #[serde(default)]
    totp_code: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
    #[serde(default)]
    email_code: Option<String>,
    /// `cookie` (default) or `body`: see `LoginRequest.token_delivery`.
    #[serde(default)]
    token_delivery: Delivery,
}

/// `POST /api/v1/auth/mfa` {mfa_token, exactly one of totp_code | recovery_code | email_code,
/// token_delivery} → the tokens of the new session. (The organisation's IP allowlist was
/// enforced when the challenge was issued, by password or email-code login.)
pub async fn complete(
    State(state): State<AppState>,
    ctx: ClientContext,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: MfaRequest = json(&body)?;
    if req.mfa_token.len() > 100 {
        return Err(too_long());
    }
    let answer = match (req.totp_code, req.recovery_code, req.email_code) {
        (Some(c), None, None) if c.len() <= 32 => Answer::Totp(SecretString::from(c.trim().to_owned())),
        (None, Some(c), None) if c.len() <= 32 => Answer::RecoveryCode(SecretString::from(c.trim().to_owned())),
        (None, None, Some(c)) if c.len() <= 32 => Answer::EmailCode(SecretString::from(c.trim().to_owned())),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "give exactly one of totp_code, recovery_code, email_code (at most 32 characters)",
            ));
        }
    };
    let issued =
        mfa::complete(&state.auth, &state.store, &state.mfa_keys, req.mfa_token.trim(), &answer, &ctx.origin()).await?;
    Ok(issued_response(&state, issued, req.token_delivery))
}

/// The caller's own user; API keys have none.
fn own_user(p: &Principal) -> Result<Uuid, ApiError> {
    p.person().map(|person| person.user).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_a_session",
            "only a signed-in user manages their own second factors",
        )
    })
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TotpEnrolment)]
pub(crate) struct EnrolmentBody<'a> {
    secret_base32: &'a str,
    otpauth_uri: &'a str,
    qr_svg: &'a str,
}

/// `POST /api/v1/me/mfa/totp` → {secret_base32, otpauth_uri, qr_svg}: a pending enrolment.
pub async fn enrol(State(state): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    let user = own_user(&p)?;
    let e = mfa::enrol(&state.store, &state.mfa_keys, user).await?;
    let body = EnrolmentBody {
        secret_base32: e.secret_base32.expose_secret(),
        otpauth_uri: e.otpauth_uri.expose_secret(),
        qr_svg: &e.qr_svg,
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeBody {
    code: String,
}

fn code_of(body: &[u8]) -> Result<String, ApiError> {
    let req: CodeBody = json(body)?;
    if req.code.len() > 32 {
        return Err(too_long());
    }
    Ok(req.code.trim().to_owned())
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RecoveryCodes {
    recovery_codes: Vec<String>,
}

/// `POST /api/v1/me/mfa/totp/confirm` {code} → {recovery_codes: [10]} (shown once).
pub async fn confirm(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let user = own_user(&p)?;
    let code = code_of(&body)?;
    let codes = mfa::confirm(&state.store, &state.mfa_keys, &state.auth, &p.who, user, &code).await?;
    Ok((StatusCode::OK, Json(RecoveryCodes { recovery_codes: codes })).into_response())
}

/// `DELETE /api/v1/me/mfa/totp` {code: TOTP or recovery code} → 204.
pub async fn disable(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let user = own_user(&p)?;
    let code = code_of(&body)?;
    mfa::disable(&state.store, &state.mfa_keys, &state.auth, &p.who, user, &code).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/me/mfa/recovery-codes` {code: TOTP or recovery code} → {recovery_codes}.
pub async fn regenerate(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let user = own_user(&p)?;
    let code = code_of(&body)?;
    let codes = mfa::regenerate_recovery_codes(&state.store, &state.mfa_keys, &state.auth, &p.who, user, &code).await?;
    Ok((StatusCode::OK, Json(RecoveryCodes { recovery_codes: codes })).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MfaSetting {
    required: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct MfaSettingBody {
    required: bool,
}

/// `GET /api/v1/settings/mfa` (owner, admin: the guard of its PUT) → {required}.
pub async fn get_required(State(state): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    let required = identity::directory::tenants::requires_mfa(&mut tx).await?;
    tx.commit().await?;
    Ok((StatusCode::OK, Json(MfaSettingBody { required })).into_response())
}

/// `PUT /api/v1/settings/mfa` {required} (owner, admin) → {required}.
pub async fn set_required(
    State(state): State<AppState>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: MfaSetting = json(&body)?;
    let mut tx = state.store.tenant_tx(p.tenant).await?;
    mfa::set_required(&mut tx, &p.who, p.permit()?, req.required).await?;
    tx.commit().await?;
    Ok((StatusCode::OK, Json(MfaSettingBody { required: req.required })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// `GET /api/v1/dev/outbox?to=EMAIL`: routed only on servers started with `--dev-outbox`.
pub async fn dev_outbox(State(state): State<AppState>, Query(q): Query<OutboxQuery>) -> Result<Response, ApiError> {
    let to = q.to.as_deref().map(EmailAddress::parse).transpose()?;
    let limit = limit(q.limit.as_deref())?;
    let mut g = state.store.global_tx().await?;
    let mail = identity::signin::mail::outbox(&mut g, &state.mfa_keys, to.as_ref(), limit).await?;
    g.commit().await?;
    Ok(Json(ListPage::all(mail)).into_response())
}
