//! Second factors: TOTP (RFC 6238: SHA-1, 6 digits, 30 s, ±1 step) with single-use recovery
//! codes, and the MFA challenge between a first factor and a session.
//!
//! MFA state is per user (global, identity scope) because one user belongs to many
//! organisations. TOTP secrets are sealed with [`SecretBox`] bound to the user id; a time step
//! once accepted is refused again (`last_used_step`). Every wrong code, wherever it is entered,
//! counts in the one lockout ([`crate::signin::lockout`]) at the configured threshold — at sign-in
//! against the attempt's (organisation, email, address) key, in a session against the user's
//! own key (enrolment management takes the `Authenticator`, whose lockout is the only one) — and a
//! challenge dies after [`MAX_CHALLENGE_ATTEMPTS`].
//! Writes to these global tables are audited on the platform chain in the same transaction.

use std::sync::Arc;

use audit::{Actor, Changes, Entity, Event, Origin, Who};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use store::{GlobalTx, Store, TenantId, TenantTx};
use totp_rs::{Algorithm, TOTP};
use uuid::Uuid;

use crate::signin::email_codes::{self, Purpose};
use crate::signin::lockout::{LockKey, Lockout, NamedOrganisation};
use crate::signin::mail::{Mailer, send_detached};
use crate::signin::secret_box::{Sealed, SecretBox};
use crate::signin::sessions::{Authenticator, Issued};
use crate::{EmailAddress, IdentityError};

pub const STEP_SECS: u64 = 30;
pub const DIGITS: usize = 6;
/// Steps either side of now that are accepted (clock drift).
pub const SKEW_STEPS: u64 = 1;
pub const RECOVERY_CODES: usize = 10;
pub const CHALLENGE_TTL_SECS: i32 = 300;
pub const MAX_CHALLENGE_ATTEMPTS: i32 = 5;
const ISSUER: &str = "Countersign";
/// Crockford's base32 alphabet, lower case: no i, l, o, u to misread.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// What a login needs besides the database and the password hasher.
#[derive(Clone, Copy)]
pub struct Factors<'a> {
    pub keys: &'a SecretBox,
    pub mailer: &'a Arc<dyn Mailer>,
}

/// A second factor a challenge accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Totp,
    RecoveryCode,
    EmailCode,
}

impl Method {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::RecoveryCode => "recovery_code",
            Self::EmailCode => "email_code",
        }
    }
}

/// The answer to a challenge.
#[derive(Clone)]
pub enum Answer {
    Totp(SecretString),
    RecoveryCode(SecretString),
    EmailCode(SecretString),
}

impl Answer {
    fn method(&self) -> Method {
        match self {
            Self::Totp(_) => Method::Totp,
            Self::RecoveryCode(_) => Method::RecoveryCode,
            Self::EmailCode(_) => Method::EmailCode,
        }
    }
}

/// A first factor was right but a second is needed.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub token: SecretString,
    pub methods: Vec<Method>,
    pub expires_in: i64,
}

/// How a login ended: tokens, or a challenge for a second factor.
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    Issued(Issued),
    MfaRequired(Challenge),
}

/// Which first factor was presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstFactor {
    Password,
    EmailCode,
    /// The organisation's OpenID Connect provider vouched for the person ([`crate::signin::oidc`]).
    Sso,
    /// The organisation's SAML identity provider vouched for the person ([`crate::signin::saml`]).
    Saml,
}

impl FirstFactor {
    /// An identity provider's sign-in (OpenID Connect or SAML).
    #[must_use]
    pub fn is_sso(self) -> bool {
        matches!(self, Self::Sso | Self::Saml)
    }
}

fn aad(user: Uuid) -> Vec<u8> {
    format!("countersign:user_totp:v1:{user}").into_bytes()
}

fn totp(secret: Vec<u8>, account: &str) -> TOTP {
    // Unchecked: our secrets are 160 bits, above the RFC minimum the checked constructor enforces;
    // the account name is an email address (no ':').
    TOTP::new_unchecked(Algorithm::SHA1, DIGITS, 1, STEP_SECS, secret, Some(ISSUER.into()), account.to_owned())
}

fn now_step() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0) / STEP_SECS
}

/// The step `code` belongs to, within ±[`SKEW_STEPS`] of `now`, and later than `last_used`
/// (a step once used is never accepted again).
fn matching_step(t: &TOTP, code: &str, now: u64, last_used: u64) -> Option<u64> {
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut found = None;
    // Every candidate is computed and compared (no early exit on a match).
    for step in now.saturating_sub(SKEW_STEPS)..=now + SKEW_STEPS {
        let ok = email_codes::same(t.generate(step * STEP_SECS).as_bytes(), code.as_bytes());
        if ok && step > last_used && found.is_none() {
            found = Some(step);
        }
    }
    found
}

fn recovery_hash(normalised: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"countersign-recovery-code-v1\0");
    h.update(normalised.as_bytes());
    h.finalize().into()
}

/// `ABCD-efgh 1234` → `abcdefgh1234` if it can be a recovery code at all.
fn normalise_recovery(code: &str) -> Option<String> {
    let n: String = code.chars().filter(|c| *c != '-' && !c.is_whitespace()).collect::<String>().to_lowercase();
    (n.len() == 12 && n.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))).then_some(n)
}

fn new_recovery_codes() -> Vec<String> {
    let mut rng = rand::rng();
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 12];
            rng.fill_bytes(&mut bytes);
            let chars: Vec<char> = bytes.iter().map(|b| char::from(RECOVERY_ALPHABET[usize::from(b & 31)])).collect();
            chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-")
        })
        .collect()
}

async fn replace_recovery_codes(g: &mut GlobalTx, user: Uuid) -> Result<Vec<String>, IdentityError> {
    sqlx::query!("delete from user_recovery_codes where user_id = $1", user).execute(g.conn()).await?;
    let codes = new_recovery_codes();
    let hashes: Vec<Vec<u8>> =
        codes.iter().filter_map(|c| normalise_recovery(c)).map(|n| recovery_hash(&n).to_vec()).collect();
    sqlx::query!(
        "insert into user_recovery_codes (user_id, code_hash) select $1, h from unnest($2::bytea[]) h",
        user,
        &hashes
    )
    .execute(g.conn())
    .await?;
    Ok(codes)
}

async fn email_of(g: &mut GlobalTx, user: Uuid) -> Result<String, IdentityError> {
    sqlx::query_scalar!(r#"select email::text as "e!" from users where id = $1"#, user)
        .fetch_optional(g.conn())
        .await?
        .ok_or(IdentityError::NotFound)
}

/// Checks a TOTP code against the user's secret (`confirmed`: the active one, else the pending
/// enrolment). On a match, records the step and re-seals a secret found under an old key.
async fn check_totp(
    g: &mut GlobalTx,
    keys: &SecretBox,
    user: Uuid,
    code: &str,
    confirmed: bool,
) -> Result<bool, IdentityError> {
    let Some(row) = sqlx::query!(
        "select key_id, nonce, ciphertext, last_used_step, confirmed_at is not null as confirmed
           from user_totp where user_id = $1 for update",
        user
    )
    .fetch_optional(g.conn())
    .await?
    else {
        return Ok(false);
    };
    if row.confirmed != Some(confirmed) {
        return Ok(false);
    }
    let sealed = Sealed { key_id: row.key_id, nonce: row.nonce, ciphertext: row.ciphertext };
    let opened = keys.open(&sealed, &aad(user))?;
    let account = email_of(g, user).await?;
    let t = totp(opened.plaintext.expose_secret().to_vec(), &account);
    let last = u64::try_from(row.last_used_step).unwrap_or(0);
    let Some(step) = matching_step(&t, code, now_step(), last) else { return Ok(false) };
    let step = i64::try_from(step).map_err(|_| IdentityError::Internal("step out of range".into()))?;
    let fresh = if opened.stale { Some(keys.seal(opened.plaintext.expose_secret(), &aad(user))?) } else { None };
    sqlx::query!(
        "update user_totp set last_used_step = $2, updated_at = now(),
                key_id = coalesce($3, key_id), nonce = coalesce($4, nonce), ciphertext = coalesce($5, ciphertext)
          where user_id = $1",
        user,
        step,
        fresh.as_ref().map(|s| s.key_id.clone()),
        fresh.as_ref().map(|s| s.nonce.clone()),
        fresh.as_ref().map(|s| s.ciphertext.clone()),
    )
    .execute(g.conn())
    .await?;
    Ok(true)
}

/// Uses a recovery code (once). Audited as `auth.recovery_code_used`.
async fn use_recovery(g: &mut GlobalTx, user: Uuid, code: &str, origin: &Origin) -> Result<bool, IdentityError> {
    let Some(n) = normalise_recovery(code) else { return Ok(false) };
    let used = sqlx::query!(
        "update user_recovery_codes set used_at = now()
          where user_id = $1 and code_hash = $2 and used_at is null",
        user,
        &recovery_hash(&n)[..]
    )
    .execute(g.conn())
    .await?
    .rows_affected()
        == 1;
    if used {
        let left = sqlx::query_scalar!(
            r#"select count(*) as "n!" from user_recovery_codes where user_id = $1 and used_at is null"#,
            user
        )
        .fetch_one(g.conn())
        .await?;
        let event = Event::new(
            "auth.recovery_code_used",
            Entity::of("user", user)?,
            Changes::none().field("recovery_codes_left", left + 1, left),
        )?;
        audit::record_platform(g.conn(), &Actor::user(user, None), origin, &event).await?;
    }
    Ok(used)
}

/// A wrong second factor: counts against `key` ([`crate::signin::lockout`]) and is audited.
async fn failed(
    g: &mut GlobalTx,
    lockout: &Lockout,
    key: &LockKey,
    user: Uuid,
    method: Method,
    origin: &Origin,
) -> Result<(), IdentityError> {
    lockout.failed(g, key).await?;
    let event = Event::new(
        "auth.mfa_failed",
        Entity::of("user", user)?,
        Changes::none().field("method", None::<&str>, method.as_str()),
    )?;
    audit::record_platform(g.conn(), &Actor::user(user, None), origin, &event).await?;
    Ok(())
}

/// Checks a TOTP (6 digits) or else a recovery code of a user with active TOTP; a wrong one
/// is recorded (lockout + audit) and committed before the refusal. Managing enrolment happens
/// inside a session, so it counts against the user's own key at the configured threshold.
async fn require_code(
    store: &Store,
    keys: &SecretBox,
    auth: &Authenticator,
    who: &Who,
    user: Uuid,
    code: &str,
) -> Result<GlobalTx, IdentityError> {
    let lockout = &auth.lockout();
    let key = lockout.account(user);
    let mut g = store.global_tx().await?;
    lockout.ensure_open(&mut g, &key).await?;
    let ok = if code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit()) {
        check_totp(&mut g, keys, user, code, true).await?
    } else {
        use_recovery(&mut g, user, code, &who.origin).await?
    };
    if !ok {
        let method = if code.len() == DIGITS { Method::Totp } else { Method::RecoveryCode };
        failed(&mut g, lockout, &key, user, method, &who.origin).await?;
        g.commit().await?;
        return Err(IdentityError::InvalidCode);
    }
    Ok(g)
}

/// Whether a user's authenticator app is on, and since when; how many recovery codes are left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotpStatus {
    /// When the app was turned on; `None`: off (or an enrolment not yet confirmed).
    pub on_since: Option<chrono::DateTime<chrono::Utc>>,
    pub recovery_codes_left: i64,
}

/// The user's own second-factor status (their account page; the sign-in flow's forced enrolment).
pub async fn status(g: &mut GlobalTx, user: Uuid) -> Result<TotpStatus, IdentityError> {
    let row = sqlx::query!(
        r#"select (select confirmed_at from user_totp where user_id = $1) as "on_since?",
                  (select count(*) from user_recovery_codes where user_id = $1 and used_at is null) as "left!""#,
        user
    )
    .fetch_one(g.conn())
    .await?;
    Ok(TotpStatus { on_since: row.on_since, recovery_codes_left: row.left })
}

/// Whether `user` must set up an authenticator app before anything else, in an organisation
/// that requires a second factor (`sessions::SessionState::factor_required`): they have none on.
///
/// # Errors
/// Database errors only.
pub async fn enrolment_due(g: &mut GlobalTx, user: Uuid) -> Result<bool, IdentityError> {
    let on = sqlx::query_scalar!(
        r#"select exists (select 1 from user_totp where user_id = $1 and confirmed_at is not null) as "on!""#,
        user
    )
    .fetch_one(g.conn())
    .await?;
    Ok(!on)
}

/// What a new enrolment shows the user once.
#[derive(Clone)]
pub struct Enrolment {
    pub secret_base32: SecretString,
    pub otpauth_uri: SecretString,
    pub qr_svg: String,
}

/// Starts (or restarts) TOTP enrolment: a new 160-bit secret, sealed, pending until confirmed.
/// Refused while TOTP is active (disable it first, with a code).
pub async fn enrol(store: &Store, keys: &SecretBox, user: Uuid) -> Result<Enrolment, IdentityError> {
    let mut g = store.global_tx().await?;
    let active = sqlx::query_scalar!(
        r#"select exists(select 1 from user_totp where user_id = $1 and confirmed_at is not null) as "e!""#,
        user
    )
    .fetch_one(g.conn())
    .await?;
    if active {
        return Err(IdentityError::Duplicate("active TOTP enrolment"));
    }
    let mut secret = vec![0u8; 20];
    rand::rng().fill_bytes(&mut secret);
    let sealed = keys.seal(&secret, &aad(user))?;
    sqlx::query!(
        "insert into user_totp (user_id, key_id, nonce, ciphertext) values ($1, $2, $3, $4)
         on conflict (user_id) do update set key_id = excluded.key_id, nonce = excluded.nonce,
             ciphertext = excluded.ciphertext, last_used_step = 0, confirmed_at = null, updated_at = now()",
        user,
        sealed.key_id,
        sealed.nonce,
        sealed.ciphertext
    )
    .execute(g.conn())
    .await?;
    let account = email_of(&mut g, user).await?;
    g.commit().await?;
    let t = totp(secret, &account);
    let uri = t.get_url();
    let qr_svg = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|e| IdentityError::Internal(format!("qr: {e}")))?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok(Enrolment {
        secret_base32: SecretString::from(t.get_secret_base32()),
        otpauth_uri: SecretString::from(uri),
        qr_svg,
    })
}

/// Activates the pending enrolment with a code from the authenticator and returns the recovery
/// codes, once (only their hashes are kept).
pub async fn confirm(
    store: &Store,
    keys: &SecretBox,
    auth: &Authenticator,
    who: &Who,
    user: Uuid,
    code: &str,
) -> Result<Vec<String>, IdentityError> {
    let lockout = &auth.lockout();
    let key = lockout.account(user);
    let mut g = store.global_tx().await?;
    lockout.ensure_open(&mut g, &key).await?;
    if !check_totp(&mut g, keys, user, code, false).await? {
        failed(&mut g, lockout, &key, user, Method::Totp, &who.origin).await?;
        g.commit().await?;
        return Err(IdentityError::InvalidCode);
    }
    sqlx::query!("update user_totp set confirmed_at = now(), updated_at = now() where user_id = $1", user)
        .execute(g.conn())
        .await?;
    let codes = replace_recovery_codes(&mut g, user).await?;
    let event = Event::new(
        "auth.mfa_enrolled",
        Entity::of("user", user)?,
        Changes::none().field("totp", false, true).field("recovery_codes", 0, codes.len()),
    )?;
    audit::record_platform(g.conn(), &who.actor, &who.origin, &event).await?;
    g.commit().await?;
    Ok(codes)
}

/// Turns TOTP off (needs a current TOTP or an unused recovery code).
pub async fn disable(
    store: &Store,
    keys: &SecretBox,
    auth: &Authenticator,
    who: &Who,
    user: Uuid,
    code: &str,
) -> Result<(), IdentityError> {
    let mut g = require_code(store, keys, auth, who, user, code).await?;
    sqlx::query!("delete from user_totp where user_id = $1", user).execute(g.conn()).await?;
    sqlx::query!("delete from user_recovery_codes where user_id = $1", user).execute(g.conn()).await?;
    let event = Event::new("auth.mfa_disabled", Entity::of("user", user)?, Changes::none().field("totp", true, false))?;
    audit::record_platform(g.conn(), &who.actor, &who.origin, &event).await?;
    g.commit().await?;
    Ok(())
}

/// Replaces every recovery code (needs a current TOTP or an unused recovery code).
pub async fn regenerate_recovery_codes(
    store: &Store,
    keys: &SecretBox,
    auth: &Authenticator,
    who: &Who,
    user: Uuid,
    code: &str,
) -> Result<Vec<String>, IdentityError> {
    let mut g = require_code(store, keys, auth, who, user, code).await?;
    let codes = replace_recovery_codes(&mut g, user).await?;
    let event = Event::new(
        "auth.recovery_codes_regenerated",
        Entity::of("user", user)?,
        Changes::none().field("recovery_codes", None::<usize>, codes.len()),
    )?;
    audit::record_platform(g.conn(), &who.actor, &who.origin, &event).await?;
    g.commit().await?;
    Ok(codes)
}

/// After a correct first factor for a member of `tenant`: a session, or a challenge when the
/// user has TOTP, the organisation requires MFA, or the user is a platform admin. Without TOTP
/// the second factor is a code mailed now; a passwordless (email code) login has no second
/// factor to offer then, so it is refused with `PasswordRequired`.
pub async fn after_first_factor(
    auth: &Authenticator,
    store: &Store,
    factors: Factors<'_>,
    tenant: TenantId,
    user: Uuid,
    first: FirstFactor,
    origin: &Origin,
) -> Result<LoginOutcome, IdentityError> {
    let mut tx = store.tenant_tx(tenant).await?;
    // An SSO-only organisation takes no password or email code from its members, except from its
    // one break-glass account, which always meets a second factor — whichever provider (OpenID
    // Connect or SAML) makes it SSO-only (`sso_only_rules`, migration 0041).
    let rule = sqlx::query!(
        r#"select t.require_mfa,
                  exists(select 1 from sso_only_rules r where r.break_glass_user is distinct from $2) as "sso_only!",
                  exists(select 1 from sso_only_rules r where r.break_glass_user = $2) as "break_glass!"
             from tenants t where t.id = $1"#,
        tenant.as_uuid(),
        user
    )
    .fetch_optional(tx.conn())
    .await?;
    tx.commit().await?;
    let (required, sso_only, break_glass) =
        rule.map_or((false, false, false), |r| (r.require_mfa, r.sso_only, r.break_glass));
    if sso_only && !first.is_sso() {
        return Err(IdentityError::Unauthenticated);
    }
    let required = required || (break_glass && !first.is_sso());
    let mut g = store.global_tx().await?;
    let u = sqlx::query!(
        r#"select email::text as "email!", platform_admin,
                  exists(select 1 from user_totp t where t.user_id = u.id and t.confirmed_at is not null) as "totp!"
             from users u where id = $1"#,
        user
    )
    .fetch_optional(g.conn())
    .await?
    .ok_or(IdentityError::Unauthenticated)?;
    let email = EmailAddress::parse(&u.email)?;
    let lockout = auth.lockout();
    let key = lockout.sign_in(NamedOrganisation::resolved(tenant), &email, origin.ip, Some(user));
    lockout.ensure_open(&mut g, &key).await?;
    if !(u.totp || required || u.platform_admin) {
        // Every factor this sign-in needs is passed: the count starts again.
        lockout.passed(&mut g, &key).await?;
        g.commit().await?;
        let method = match first {
            FirstFactor::Password => "password",
            FirstFactor::EmailCode => "email_code",
            FirstFactor::Sso => "oidc",
            FirstFactor::Saml => "saml",
        };
        return auth.open_session(store, tenant, user, origin, method).await.map(LoginOutcome::Issued);
    }
    let (methods, email_code) = if u.totp {
        (vec![Method::Totp, Method::RecoveryCode], None)
    } else if first == FirstFactor::EmailCode {
        return Err(IdentityError::PasswordRequired);
    } else {
        let (id, code) = email_codes::issue(&mut g, &email, Some(user), Some(tenant), Purpose::Mfa).await?;
        (vec![Method::EmailCode], Some((id, email, code)))
    };
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("csm_{}", hex::encode(secret));
    let id = Uuid::now_v7();
    let names: Vec<String> = methods.iter().map(|m| m.as_str().to_owned()).collect();
    sqlx::query!(
        "insert into mfa_challenges (id, token_hash, user_id, organisation_id, methods, email_code_id, expires_at)
         values ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7::int))",
        id,
        &Sha256::digest(token.as_bytes())[..],
        user,
        tenant.as_uuid(),
        &names,
        email_code.as_ref().map(|(id, _, _)| *id),
        CHALLENGE_TTL_SECS,
    )
    .execute(g.conn())
    .await?;
    let event = Event::new(
        "auth.mfa_challenged",
        Entity::of("mfa_challenge", id)?,
        Changes::none()
            .field("user_id", None::<Uuid>, user)
            .field("organisation_id", None::<Uuid>, tenant.as_uuid())
            .field("methods", None::<&str>, names.join(",")),
    )?;
    audit::record_platform(g.conn(), &Actor::user(user, None), origin, &event).await?;
    if email_code.is_some() {
        let sent = Event::new(
            "auth.email_code_sent",
            Entity::of("user", user)?,
            Changes::none().field("purpose", None::<&str>, Purpose::Mfa.as_str()),
        )?;
        audit::record_platform(g.conn(), &Actor::system("auth:mfa"), origin, &sent).await?;
    }
    g.commit().await?;
    if let Some((_, email, code)) = email_code {
        send_detached(factors.mailer.clone(), email_codes::mail_for(&email, &code, Purpose::Mfa));
    }
    Ok(LoginOutcome::MfaRequired(Challenge {
        token: SecretString::from(token),
        methods,
        expires_in: i64::from(CHALLENGE_TTL_SECS),
    }))
}

/// Completes a challenge with a second factor and opens the session. An unknown, used or expired
/// token is `Unauthenticated`; a challenge that saw [`MAX_CHALLENGE_ATTEMPTS`] wrong codes (or a
/// locked account) is `Locked`; a wrong code is `InvalidCode`, counted on the challenge and the
/// account and audited.
pub async fn complete(
    auth: &Authenticator,
    store: &Store,
    keys: &SecretBox,
    token: &str,
    answer: &Answer,
    origin: &Origin,
) -> Result<Issued, IdentityError> {
    if token.len() != 68 || !token.starts_with("csm_") {
        return Err(IdentityError::Unauthenticated);
    }
    let mut g = store.global_tx().await?;
    let c = sqlx::query!(
        r#"select id, user_id, organisation_id, methods, email_code_id, attempts,
                  (expires_at > now() and used_at is null) as "live!"
             from mfa_challenges where token_hash = $1 for update"#,
        &Sha256::digest(token.as_bytes())[..]
    )
    .fetch_optional(g.conn())
    .await?
    .filter(|c| c.live)
    .ok_or(IdentityError::Unauthenticated)?;
    let user = c.user_id;
    let tenant = TenantId::from_uuid(c.organisation_id).map_err(|_| IdentityError::Unauthenticated)?;
    let lockout = auth.lockout();
    let email = EmailAddress::parse(&email_of(&mut g, user).await?)?;
    let key = lockout.sign_in(NamedOrganisation::resolved(tenant), &email, origin.ip, Some(user));
    lockout.ensure_open(&mut g, &key).await?;
    if c.attempts >= MAX_CHALLENGE_ATTEMPTS {
        return Err(IdentityError::Locked { retry_after: 1 });
    }
    let method = answer.method();
    if !c.methods.iter().any(|m| m == method.as_str()) {
        return Err(IdentityError::invalid("method", format!("this challenge accepts: {}", c.methods.join(", "))));
    }
    let ok = match answer {
        Answer::Totp(code) => check_totp(&mut g, keys, user, code.expose_secret(), true).await?,
        Answer::RecoveryCode(code) => use_recovery(&mut g, user, code.expose_secret(), origin).await?,
        Answer::EmailCode(code) => match c.email_code_id {
            Some(id) => redeem_mfa_code(&mut g, id, code.expose_secret()).await?,
            None => false,
        },
    };
    if !ok {
        sqlx::query!("update mfa_challenges set attempts = attempts + 1 where id = $1", c.id).execute(g.conn()).await?;
        failed(&mut g, &lockout, &key, user, method, origin).await?;
        g.commit().await?;
        return Err(IdentityError::InvalidCode);
    }
    sqlx::query!("update mfa_challenges set used_at = now() where id = $1", c.id).execute(g.conn()).await?;
    lockout.passed(&mut g, &key).await?;
    let event = Event::new(
        "auth.mfa_succeeded",
        Entity::of("mfa_challenge", c.id)?,
        Changes::none().field("method", None::<&str>, method.as_str()),
    )?;
    audit::record_platform(g.conn(), &Actor::user(user, None), origin, &event).await?;
    g.commit().await?;
    auth.open_session(store, tenant, user, origin, &format!("password+{}", method.as_str())).await
}

async fn redeem_mfa_code(g: &mut GlobalTx, id: Uuid, code: &str) -> Result<bool, IdentityError> {
    let Some(row) = sqlx::query!(
        "select salt, code_hash from email_codes
          where id = $1 and purpose = 'mfa' and used_at is null and expires_at > now() and attempts < $2
          for update",
        id,
        email_codes::MAX_ATTEMPTS
    )
    .fetch_optional(g.conn())
    .await?
    else {
        return Ok(false);
    };
    let ok =
        email_codes::well_formed(code) && email_codes::same(&email_codes::code_hash(&row.salt, code), &row.code_hash);
    if ok {
        sqlx::query!("update email_codes set used_at = now() where id = $1", id).execute(g.conn()).await?;
    } else {
        sqlx::query!("update email_codes set attempts = attempts + 1 where id = $1", id).execute(g.conn()).await?;
    }
    Ok(ok)
}

/// Sets whether the organisation requires a second factor at sign-in (owner/admin; the caller
/// checks the role). Audited with the before/after value.
pub async fn set_required(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    required: bool,
) -> Result<bool, IdentityError> {
    crate::permitted(permit, authz::Action::SettingsManage, tx)?;
    let before = sqlx::query_scalar!(
        r#"with old as (select require_mfa from tenants where id = $1 for update)
           update tenants t set require_mfa = $2, updated_at = now() from old where t.id = $1
           returning old.require_mfa as "before!""#,
        tx.tenant().as_uuid(),
        required
    )
    .fetch_optional(tx.conn())
    .await?
    .ok_or(IdentityError::NotFound)?;
    if before != required {
        let event = Event::new(
            "tenant.mfa_requirement_changed",
            Entity::of("tenant", tx.tenant())?,
            Changes::none().field("require_mfa", before, required),
        )?;
        audit::record_by(tx, who, &event).await?;
    }
    Ok(before)
}

/// Re-seals every TOTP secret not under the current key (`countersign admin rotate-mfa-key`).
/// Returns how many rows were re-sealed. A row no configured key opens fails the whole run.
pub async fn rotate_all(g: &mut GlobalTx, keys: &SecretBox, who: &Who) -> Result<u64, IdentityError> {
    rotate_all_with_progress(g, keys, who, &mut |_, _| {}).await
}

/// [`rotate_all`], telling `progress` (secrets looked at so far, secrets not under the current
/// key) after each one.
pub async fn rotate_all_with_progress(
    g: &mut GlobalTx,
    keys: &SecretBox,
    who: &Who,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<u64, IdentityError> {
    let rows = sqlx::query!(
        "select user_id, key_id, nonce, ciphertext from user_totp where key_id <> $1 for update",
        keys.current_key_id()
    )
    .fetch_all(g.conn())
    .await?;
    let mut n = 0u64;
    let total = rows.len() as u64;
    progress(0, total);
    for (seen, r) in (1..).zip(rows) {
        let sealed = Sealed { key_id: r.key_id, nonce: r.nonce, ciphertext: r.ciphertext };
        let Some(fresh) = keys.reseal(&sealed, &aad(r.user_id))? else {
            progress(seen, total);
            continue;
        };
        sqlx::query!(
            "update user_totp set key_id = $2, nonce = $3, ciphertext = $4, updated_at = now() where user_id = $1",
            r.user_id,
            fresh.key_id,
            fresh.nonce,
            fresh.ciphertext
        )
        .execute(g.conn())
        .await?;
        n += 1;
        progress(seen, total);
    }
    let event = Event::new(
        "platform.mfa_key_rotated",
        Entity::of("mfa_key", keys.current_key_id())?,
        Changes::none().field("resealed", 0, n),
    )?;
    audit::record_platform(g.conn(), &who.actor, &who.origin, &event).await?;
    Ok(n)
}

/// Opens a user's TOTP secret (tests and diagnostics: proves which key and row it is bound to).
pub async fn open_secret(g: &mut GlobalTx, keys: &SecretBox, user: Uuid) -> Result<Vec<u8>, IdentityError> {
    let r = sqlx::query!("select key_id, nonce, ciphertext from user_totp where user_id = $1", user)
        .fetch_optional(g.conn())
        .await?
        .ok_or(IdentityError::NotFound)?;
    let opened = keys.open(&Sealed { key_id: r.key_id, nonce: r.nonce, ciphertext: r.ciphertext }, &aad(user))?;
    Ok(opened.plaintext.expose_secret().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_one_step_either_side_and_used_steps_are_refused() {
        let t = totp(b"12345678901234567890".to_vec(), "a@b.example");
        let now = 1_000_000;
        let code = |step: u64| t.generate(step * STEP_SECS);
        assert_eq!(matching_step(&t, &code(now), now, 0), Some(now));
        assert_eq!(matching_step(&t, &code(now - 1), now, 0), Some(now - 1));
        assert_eq!(matching_step(&t, &code(now + 1), now, 0), Some(now + 1));
        assert_eq!(matching_step(&t, &code(now - 2), now, 0), None);
        assert_eq!(matching_step(&t, &code(now - 3), now, 0), None);
        assert_eq!(matching_step(&t, &code(now), now, now), None, "replayed step");
        assert_eq!(matching_step(&t, &code(now - 1), now, now), None, "older than the last used");
        for junk in ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦"] {
            assert_eq!(matching_step(&t, junk, now, 0), None, "{junk}");
        }
    }

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 appendix B, T = 59 s, SHA-1, last 6 of 94287082.
        let t = totp(b"12345678901234567890".to_vec(), "a@b.example");
        assert_eq!(t.generate(59), "287082");
    }

    #[test]
    fn recovery_codes_are_random_well_formed_and_normalised() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), RECOVERY_CODES);
        for c in &codes {
            assert_eq!(c.len(), 14, "{c}");
            let n = normalise_recovery(c).expect("well formed");
            assert_eq!(normalise_recovery(&c.to_uppercase().replace('-', " ")), Some(n));
        }
        assert_eq!(normalise_recovery("abcd-efgh-ijkl"), None, "i and l are not in the alphabet");
        assert_eq!(normalise_recovery("abcd-efgh"), None);
    }
}
