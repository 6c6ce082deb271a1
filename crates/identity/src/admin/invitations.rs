//! Invitations: an administrator invites an email address into the organisation with a role;
//! whoever holds the mailed token may accept it once, before it expires.
//!
//! Token: `csi_<tenant>_<invitation>_<secret>` (32, 32 and 64 hex digits). It names its
//! organisation, so acceptance looks it up under that organisation's RLS; only its SHA-256 is
//! stored. Accepting proves possession of the mailbox, so it also verifies the email address. A
//! new person sets a policy-checked password; an existing user proves who they are with theirs.
//! Unknown or forged tokens answer 401; expired, revoked and used ones 410 `invitation_expired`.

use std::fmt;
use std::str::FromStr;

use audit::{Actor, Changes, Entity, Event, Origin, Who};
use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::{Digest, Sha256};
use store::{ProgramScope, Store, TenantId, TenantTx};
use uuid::Uuid;

use crate::admin::members;
use crate::directory::memberships::{self, NewMembership};
use crate::directory::users;
use crate::signin::account;
use crate::signin::lockout::NamedOrganisation;
use crate::signin::sessions::Authenticator;
use crate::{EmailAddress, IdentityError, Role};

/// How long an invitation stays acceptable.
pub const TTL_DAYS: i64 = 7;
// The outbox keeps undelivered mail as long as the longest-lived thing mailed.
const _: () = assert!(crate::signin::mail::OUTBOX_KEEP_DAYS >= TTL_DAYS);

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Invitation {
    pub id: Uuid,
    pub email: String,
    pub role: String,
    pub department_id: Option<Uuid>,
    /// The partner company the person joins (a partner invitation), else none.
    pub partner_id: Option<Uuid>,
    pub membership_valid_until: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// `open`, `accepted`, `revoked` or `expired`.
    pub status: String,
}

#[derive(Debug, Clone)]
pub struct NewInvitation {
    pub email: EmailAddress,
    pub role: Role,
    pub department_id: Option<Uuid>,
    pub membership_valid_until: Option<DateTime<Utc>>,
}

/// A created invitation; `token` is the only copy of the presentable token.
#[derive(Debug)]
pub struct IssuedInvitation {
    pub invitation: Invitation,
    pub token: SecretString,
}

/// The one place the invitation email is written. The caller hands the result to the mailer.
#[must_use]
pub fn invitation_mail(
    organisation: &str,
    role: &str,
    token: &str,
    expires_at: DateTime<Utc>,
    accept_url: Option<&str>,
) -> (String, String) {
    let subject = format!("You are invited to join {organisation} on Countersign");
    let how = match accept_url {
        Some(url) => format!("Accept the invitation here:\n\n  {url}?token={token}\n"),
        None => format!("Accept it by sending this token to POST /api/v1/invitations/accept:\n\n  {token}\n"),
    };
    let text = format!(
        "Hello,\n\nyou have been invited to join {organisation} on Countersign as {role}.\n\n{how}\n\
         The invitation can be used once and expires at {} (UTC). If you did not expect it, ignore \
         this message: nothing happens unless the invitation is accepted.\n",
        expires_at.format("%Y-%m-%d %H:%M")
    );
    (subject, text)
}

/// Why a presented (genuine) invitation is refused at acceptance.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// Used, revoked or expired: 410 `invitation_expired`.
    Gone(&'static str),
    /// The partner company it joins was suspended or ended after it was sent: 410
    /// `partner_inactive` (the token is genuine, so its holder may learn why).
    PartnerInactive(&'static str),
}

impl Refusal {
    fn reason(self) -> String {
        match self {
            Self::Gone(why) => why.to_owned(),
            Self::PartnerInactive(status) => format!("the partner company is {status} in the programme"),
        }
    }
}

impl From<Refusal> for IdentityError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Gone(why) => {
                Self::Gone { code: "invitation_expired", reason: format!("this invitation is {why}") }
            }
            Refusal::PartnerInactive(status) => Self::Gone {
                code: "partner_inactive",
                reason: format!(
                    "this invitation is for a partner company that is {status} in the programme, so it can no longer be accepted"
                ),
            },
        }
    }
}

/// Re-checks, at acceptance, the partner company a partner invitation joins: suspended or ended
/// since the invitation was sent (or gone) refuses it. The row is share-locked so a suspension
/// racing this acceptance waits for it (and then applies to the new person like to the others).
async fn partner_refusal(tx: &mut TenantTx, partner: Uuid) -> Result<Option<Refusal>, IdentityError> {
    let status = sqlx::query_scalar!(
        "select status from partners where tenant_id = $1 and id = $2 for share",
        tx.tenant().as_uuid(),
        partner
    )
    .fetch_optional(tx.conn())
    .await?;
    Ok(match status.as_deref() {
        Some("active") => None,
        Some("suspended") => Some(Refusal::PartnerInactive("suspended")),
        Some("ended") => Some(Refusal::PartnerInactive("ended")),
        _ => Some(Refusal::PartnerInactive("no longer")),
    })
}

/// Creates an invitation. The caller may not invite into a role above their own; an address that
/// already belongs to a member is refused; earlier open invitations for the address are revoked
/// (only the newest token works).
pub async fn create(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    caller: Role,
    new: &NewInvitation,
) -> Result<IssuedInvitation, IdentityError> {
    crate::permitted(permit, authz::Action::MembersManage, tx)?;
    if !members::may_grant(caller, new.role) {
        return Err(IdentityError::Forbidden {
            code: "role_escalation",
            reason: format!("your role cannot invite a {}", new.role),
        });
    }
    if new.membership_valid_until.is_some_and(|u| u <= Utc::now()) {
        return Err(IdentityError::invalid("membership_valid_until", "must be in the future"));
    }
    issue(tx, who, new, None).await
}

/// An invitation into a partner company of the vendor's programme: the accepted membership
/// carries the partner's id and a partner role.
#[derive(Debug, Clone)]
pub struct NewPartnerInvitation {
    pub email: EmailAddress,
    /// `partner_admin` or `partner_agent`.
    pub role: Role,
    pub partner_id: Uuid,
}

/// Invites a person into partner company `new.partner_id`. `tx` must be a programme transaction
/// (`Store::program_tx`): the partner scope the database derived from the caller's own membership
/// decides, not the request. Vendor staff invite into any active partner of theirs; a partner's
/// administrator only agents, only into their own company — another partner (or another
/// organisation's, or one that does not exist) is `NotFound`, indistinguishable on purpose.
pub async fn create_for_partner(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    caller: Role,
    new: &NewPartnerInvitation,
) -> Result<IssuedInvitation, IdentityError> {
    crate::permitted(permit, authz::Action::PartnerInvite, tx)?;
    if !new.role.is_partner_person() {
        return Err(IdentityError::invalid("role", "expected partner_admin or partner_agent"));
    }
    if partner_reach(tx, new.partner_id).await? == PartnerReach::OwnCompany
        && (caller != Role::PartnerAdmin || new.role != Role::PartnerAgent)
    {
        return Err(IdentityError::Forbidden {
            code: "role_escalation",
            reason: "a partner's administrator invites agents of their own company only".into(),
        });
    }
    // Read under the partner_isolation policy: a partner person sees only their own company.
    let status = sqlx::query_scalar!(
        "select status from partners where tenant_id = $1 and id = $2",
        tx.tenant().as_uuid(),
        new.partner_id
    )
    .fetch_optional(tx.conn())
    .await?
    .ok_or(IdentityError::NotFound)?;
    if status != "active" {
        return Err(IdentityError::Conflict { code: "partner_inactive", reason: "the partner is not active".into() });
    }
    let staff =
        NewInvitation { email: new.email.clone(), role: new.role, department_id: None, membership_valid_until: None };
    issue(tx, who, &staff, Some(new.partner_id)).await
}

/// How far a programme transaction reaches into one partner company's invitations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartnerReach {
    /// Vendor staff: any partner of the organisation.
    Vendor,
    /// A partner person, naming their own company.
    OwnCompany,
}

/// Decided by the partner scope the database derived from the caller's own membership, never by
/// the request: another partner's company (or another organisation's, or one that does not
/// exist) is `NotFound`, indistinguishable on purpose. The `invitations` table itself carries no
/// partner policy (staff invitations have no partner), so this is the partner dimension here.
async fn partner_reach(tx: &mut TenantTx, partner_id: Uuid) -> Result<PartnerReach, IdentityError> {
    match tx.partner_scope().await?.as_deref() {
        Some("vendor") => {
            let exists = sqlx::query_scalar!(
                r#"select exists(select 1 from partners where tenant_id = $1 and id = $2) as "x!""#,
                tx.tenant().as_uuid(),
                partner_id
            )
            .fetch_one(tx.conn())
            .await?;
            if exists { Ok(PartnerReach::Vendor) } else { Err(IdentityError::NotFound) }
        }
        Some(own) if own.parse::<Uuid>().ok() == Some(partner_id) => Ok(PartnerReach::OwnCompany),
        _ => Err(IdentityError::NotFound),
    }
}

/// The invitations into partner company `partner_id`, newest first (never a token). `tx` must be
/// a programme transaction: vendor staff list any partner's, a partner's administrator their own
/// company's; another partner's is `NotFound`.
pub async fn list_for_partner(
    tx: &mut TenantTx,
    permit: &authz::Permit,
    partner_id: Uuid,
) -> Result<Vec<Invitation>, IdentityError> {
    crate::permitted(permit, authz::Action::PartnerInvitationsRead, tx)?;
    partner_reach(tx, partner_id).await?;
    rows(tx, Rows::Partner(partner_id)).await
}

/// Every partner invitation the caller's programme scope reaches, newest first: vendor staff
/// every partner's, a partner person their own company's (the programme page's list).
pub async fn list_partner_invitations(
    tx: &mut TenantTx,
    permit: &authz::Permit,
) -> Result<Vec<Invitation>, IdentityError> {
    crate::permitted(permit, authz::Action::PartnerInvitationsRead, tx)?;
    match tx.partner_scope().await?.as_deref() {
        Some("vendor") => rows(tx, Rows::AnyPartner).await,
        Some(own) => match own.parse::<Uuid>() {
            Ok(partner) => rows(tx, Rows::Partner(partner)).await,
            Err(_) => Err(IdentityError::NotFound),
        },
        None => Err(IdentityError::NotFound),
    }
}

/// Revokes an open invitation into partner company `partner_id` (its token stops working at
/// once). The invitation must be that company's (else `NotFound`, as for another partner's); a
/// partner's administrator revokes only agents' invitations, as they invite only agents.
pub async fn revoke_for_partner(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    caller: Role,
    partner_id: Uuid,
    id: Uuid,
) -> Result<(), IdentityError> {
    crate::permitted(permit, authz::Action::PartnerInvitationRevoke, tx)?;
    let reach = partner_reach(tx, partner_id).await?;
    revoke_row(tx, who, id, Some(partner_id), |role| {
        if reach == PartnerReach::OwnCompany && (caller != Role::PartnerAdmin || role != Role::PartnerAgent.as_str()) {
            return Err(IdentityError::Forbidden {
                code: "role_escalation",
                reason: "a partner's administrator revokes invitations of agents only".into(),
            });
        }
        Ok(())
    })
    .await
}

/// The invitation itself, once the caller's checks passed: refuses an address that is already a
/// member, supersedes earlier open invitations for it, stores the token's hash, audits.
async fn issue(
    tx: &mut TenantTx,
    who: &Who,
    new: &NewInvitation,
    partner_id: Option<Uuid>,
) -> Result<IssuedInvitation, IdentityError> {
    let member = sqlx::query_scalar!(
        r#"select exists(select 1 from memberships m join users u on u.id = m.user_id
                          where m.tenant_id = $1 and u.email_key = lower($2) and m.deleted_at is null) as "x!""#,
        tx.tenant().as_uuid(),
        new.email.as_str()
    )
    .fetch_one(tx.conn())
    .await?;
    if member {
        return Err(IdentityError::Conflict {
            code: "already_member",
            reason: "this address already belongs to a member".into(),
        });
    }
    let superseded = sqlx::query_scalar!(
        "update invitations set revoked_at = now()
          where tenant_id = $1 and email = $2::text::citext and accepted_at is null and revoked_at is null
         returning id",
        tx.tenant().as_uuid(),
        new.email.as_str()
    )
    .fetch_all(tx.conn())
    .await?;
    for id in &superseded {
        let event = Event::new("invitation.revoked", Entity::of("invitation", id)?, Changes::none())?
            .with_reason("superseded by a newer invitation")?;
        audit::record_by(tx, who, &event).await?;
    }
    let id = Uuid::now_v7();
    let (token, hash) = new_token(tx.tenant(), id);
    let created_by = format!("{}:{}", who.actor.kind.as_str(), who.actor.id);
    let row = sqlx::query!(
        "insert into invitations (tenant_id, id, email, role, department_id, membership_valid_until, expires_at,
                                  token_hash, created_by, partner_id)
         values ($1, $2, $3::text::citext, $4, $5, $6, now() + make_interval(days => $7::int), $8, $9, $10)
         returning created_at, expires_at",
        tx.tenant().as_uuid(),
        id,
        new.email.as_str(),
        new.role.as_str(),
        new.department_id,
        new.membership_valid_until,
        i32::try_from(TTL_DAYS).unwrap_or(7),
        &hash[..],
        created_by,
        partner_id
    )
    .fetch_one(tx.conn())
    .await
    .map_err(IdentityError::from_store("invitation"))?;
    let invitation = Invitation {
        id,
        email: new.email.as_str().to_owned(),
        role: new.role.as_str().to_owned(),
        department_id: new.department_id,
        partner_id,
        membership_valid_until: new.membership_valid_until,
        expires_at: row.expires_at,
        created_by,
        created_at: row.created_at,
        accepted_at: None,
        revoked_at: None,
        status: "open".into(),
    };
    let event =
        Event::new("invitation.created", Entity::of("invitation", id)?, Changes::diff(None, Some(&invitation))?)?;
    audit::record_by(tx, who, &event).await?;
    Ok(IssuedInvitation { invitation, token })
}

pub async fn list(tx: &mut TenantTx) -> Result<Vec<Invitation>, IdentityError> {
    rows(tx, Rows::All).await
}

/// Which of the organisation's invitations a list shows.
#[derive(Debug, Clone, Copy)]
enum Rows {
    All,
    AnyPartner,
    Partner(Uuid),
}

async fn rows(tx: &mut TenantTx, which: Rows) -> Result<Vec<Invitation>, IdentityError> {
    let (partner, partners_only) = match which {
        Rows::All => (None, false),
        Rows::AnyPartner => (None, true),
        Rows::Partner(p) => (Some(p), true),
    };
    let rows = sqlx::query_as!(
        Invitation,
        r#"select id, email::text as "email!", role, department_id, partner_id, membership_valid_until, expires_at, created_by,
                  created_at, accepted_at, revoked_at,
                  case when accepted_at is not null then 'accepted' when revoked_at is not null then 'revoked'
                       when expires_at <= now() then 'expired' else 'open' end as "status!"
             from invitations
            where tenant_id = $1 and ($2::uuid is null or partner_id = $2) and (not $3 or partner_id is not null)
            order by created_at desc limit 500"#,
        tx.tenant().as_uuid(),
        partner,
        partners_only
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("invitation"))?;
    Ok(rows)
}

/// Revokes an open invitation; its token stops working at once. An accepted one cannot be
/// revoked (remove the member instead): 409 `invitation_used`.
pub async fn revoke(tx: &mut TenantTx, who: &Who, permit: &authz::Permit, id: Uuid) -> Result<(), IdentityError> {
    crate::permitted(permit, authz::Action::MembersManage, tx)?;
    revoke_row(tx, who, id, None, |_| Ok(())).await
}

/// Locks invitation `id` (only if it is `partner`'s, when named), lets `may` refuse by its role,
/// and revokes it unless already revoked; accepted: 409 `invitation_used`.
async fn revoke_row(
    tx: &mut TenantTx,
    who: &Who,
    id: Uuid,
    partner: Option<Uuid>,
    may: impl FnOnce(&str) -> Result<(), IdentityError>,
) -> Result<(), IdentityError> {
    let r = sqlx::query!(
        "select role, accepted_at, revoked_at from invitations
          where tenant_id = $1 and id = $2 and ($3::uuid is null or partner_id = $3) for update",
        tx.tenant().as_uuid(),
        id,
        partner
    )
    .fetch_optional(tx.conn())
    .await?
    .ok_or(IdentityError::NotFound)?;
    may(&r.role)?;
    if r.accepted_at.is_some() {
        return Err(IdentityError::Conflict {
            code: "invitation_used",
            reason: "the invitation was already accepted".into(),
        });
    }
    if r.revoked_at.is_some() {
        return Ok(());
    }
    sqlx::query!(
        "update invitations set revoked_at = now() where tenant_id = $1 and id = $2",
        tx.tenant().as_uuid(),
        id
    )
    .execute(tx.conn())
    .await?;
    let mut changes = Changes::none().field("status", "open", "revoked");
    if let Some(partner) = partner {
        changes = changes.field("partner_id", None::<Uuid>, partner);
    }
    let event = Event::new("invitation.revoked", Entity::of("invitation", id)?, changes)?;
    audit::record_by(tx, who, &event).await?;
    Ok(())
}

fn new_token(tenant: TenantId, id: Uuid) -> (SecretString, [u8; 32]) {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("csi_{}_{}_{}", tenant.as_uuid().simple(), id.simple(), hex::encode(secret));
    let hash = Sha256::digest(token.as_bytes()).into();
    (SecretString::from(token), hash)
}

/// An invitation token as presented: parsed, not yet checked.
#[derive(Clone)]
pub struct PresentedInvitation {
    pub tenant: TenantId,
    pub id: Uuid,
    hash: [u8; 32],
}

impl fmt::Debug for PresentedInvitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedInvitation").field("tenant", &self.tenant).field("id", &self.id).finish()
    }
}

impl FromStr for PresentedInvitation {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdentityError::Unauthenticated;
        let rest = s.strip_prefix("csi_").ok_or_else(bad)?;
        let mut parts = rest.split('_');
        let (Some(t), Some(i), Some(secret), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        if t.len() != 32 || i.len() != 32 || secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let tenant = Uuid::try_parse(t).ok().and_then(|u| TenantId::from_uuid(u).ok()).ok_or_else(bad)?;
        let id = Uuid::try_parse(i).map_err(|_| bad())?;
        Ok(Self { tenant, id, hash: Sha256::digest(s.as_bytes()).into() })
    }
}

/// What the person accepting supplies besides the token.
#[derive(Debug, Clone, Default)]
pub struct Acceptance {
    /// Display name for a new account (default: the address's local part).
    pub name: Option<String>,
    /// Required: a new account's password, or an existing user's current one.
    pub password: Option<SecretString>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub tenant: TenantId,
    pub user_id: Uuid,
    pub membership_id: Uuid,
    pub role: Role,
    pub created_user: bool,
}

/// Compares without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Accepts an invitation: checks the token, creates or authenticates the user, verifies the email
/// address, creates the membership and marks the invitation used — each step audited. The
/// invitation row stays locked throughout, so a token cannot be accepted twice concurrently.
/// An existing user's password counts in `auth`'s lockout, at the configured threshold.
pub async fn accept(
    store: &Store,
    auth: &Authenticator,
    presented: &PresentedInvitation,
    acceptance: &Acceptance,
    origin: &Origin,
) -> Result<Accepted, IdentityError> {
    // The programme's vendor scope, so that a partner invitation's company can be read back: the
    // invitation row (found by the token's hash, locked below) names the partner, not the request.
    let mut tx = store.program_tx(presented.tenant, ProgramScope::Vendor).await?;
    let inv = sqlx::query!(
        r#"select i.email::text as "email!", i.role, i.department_id, i.partner_id, i.membership_valid_until, i.token_hash,
                  i.accepted_at, i.revoked_at, i.expires_at <= now() as "expired!", t.name as org_name
             from invitations i join tenants t on t.id = i.tenant_id
            where i.tenant_id = $1 and i.id = $2 and t.status = 'active' and t.deleted_at is null
            for update of i"#,
        presented.tenant.as_uuid(),
        presented.id
    )
    .fetch_optional(tx.conn())
    .await?;
    let Some(inv) = inv.filter(|i| same(&i.token_hash, &presented.hash)) else {
        return Err(IdentityError::Unauthenticated);
    };
    let refused = if inv.accepted_at.is_some() {
        Some(Refusal::Gone("already used"))
    } else if inv.revoked_at.is_some() {
        Some(Refusal::Gone("revoked"))
    } else if inv.expired || inv.membership_valid_until.is_some_and(|u| u <= Utc::now()) {
        Some(Refusal::Gone("expired"))
    } else if let Some(partner) = inv.partner_id {
        partner_refusal(&mut tx, partner).await?
    } else {
        None
    };
    if let Some(why) = refused {
        let system = Who::new(Actor::system("invitations:accept"), origin.clone());
        let event = Event::new("invitation.accept_refused", Entity::of("invitation", presented.id)?, Changes::none())?
            .with_reason(&why.reason())?;
        audit::record_by(&mut tx, &system, &event).await?;
        tx.commit().await?;
        return Err(why.into());
    }
    let role: Role = inv.role.parse()?;
    let email = EmailAddress::parse(&inv.email)?;
    let password = acceptance
        .password
        .as_ref()
        .filter(|p| !p.expose_secret().is_empty())
        .ok_or_else(|| IdentityError::invalid("password", "required"))?;

    // The global part: the identity, its password, its verified address.
    let (hasher, lockout) = (&auth.hasher, auth.lockout());
    let system = Who::new(Actor::system("invitations:accept"), origin.clone());
    let mut g = store.global_tx().await?;
    let (user_id, created_user) = match users::find_by_email(&mut g, &email).await? {
        None => {
            let local = email.as_str().split('@').next().unwrap_or_default().to_owned();
            let name = acceptance.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or(local);
            let user = users::create(&mut g, &system, &email, &name).await?;
            account::set_password(&mut g, &system, hasher, user.id, password, &[email.as_str(), &inv.org_name])
                .await
                .map_err(|e| match e {
                IdentityError::Invalid { field: "password", reason } => account::weak("password", &reason),
                other => other,
            })?;
            (user.id, true)
        }
        Some(user) => {
            let creds = account::credentials(&mut g, user.id).await?;
            if creds.status != "active" {
                return Err(IdentityError::Unauthenticated);
            }
            let key = lockout.sign_in(NamedOrganisation::resolved(tx.tenant()), &email, origin.ip, Some(user.id));
            if !account::verify_password(&mut g, hasher, &lockout, &key, &creds, password).await? {
                g.commit().await?;
                return Err(IdentityError::Unauthenticated);
            }
            (user.id, false)
        }
    };
    let newly_verified = sqlx::query_scalar!(
        "update users set email_verified_at = now(), updated_at = now()
          where id = $1 and email_verified_at is null returning id",
        user_id
    )
    .fetch_optional(g.conn())
    .await?
    .is_some();
    if newly_verified {
        let event = Event::new(
            "user.email_verified",
            Entity::of("user", user_id)?,
            Changes::none().field("email_verified", false, true),
        )?
        .with_reason("accepted an invitation sent to this address")?;
        audit::record_platform(g.conn(), &system.actor, &system.origin, &event).await?;
    }
    g.commit().await?;

    // The organisation's part, in the transaction that still holds the invitation row.
    let who = Who::new(Actor::user(user_id, Some(role.as_str())), origin.clone());
    let new =
        NewMembership { user_id, role, department_id: inv.department_id, valid_until: inv.membership_valid_until };
    let added = match inv.partner_id {
        None => memberships::add(&mut tx, &who, &new).await,
        Some(partner) => memberships::add_partner_person(&mut tx, &who, &new, partner).await,
    };
    let membership_id = added.map_err(|e| match e {
        IdentityError::Duplicate(_) => IdentityError::Conflict {
            code: "already_member",
            reason: "this account already has a membership here".into(),
        },
        other => other,
    })?;
    sqlx::query!(
        "update invitations set accepted_at = now(), accepted_user_id = $3 where tenant_id = $1 and id = $2",
        presented.tenant.as_uuid(),
        presented.id,
        user_id
    )
    .execute(tx.conn())
    .await?;
    let event = Event::new(
        "invitation.accepted",
        Entity::of("invitation", presented.id)?,
        Changes::none().field("status", "open", "accepted").field("user_id", None::<Uuid>, user_id).field(
            "new_account",
            None::<bool>,
            created_user,
        ),
    )?;
    audit::record_by(&mut tx, &who, &event).await?;
    tx.commit().await?;
    Ok(Accepted { tenant: presented.tenant, user_id, membership_id, role, created_user })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_strictly_and_debug_hides_the_secret() {
        let t = TenantId::new_random();
        let id = Uuid::now_v7();
        let (tok, hash) = new_token(t, id);
        let p: PresentedInvitation = tok.expose_secret().parse().expect("parses");
        assert_eq!((p.tenant, p.id, p.hash), (t, id, hash));
        assert!(!format!("{p:?}").contains(&tok.expose_secret()[70..]));
        let s = tok.expose_secret();
        for bad in [
            "",
            "csi_",
            &s.replacen("csi_", "csr_", 1),
            &format!("{s}_x"),
            &s[..s.len() - 1],
            &format!("{}g", &s[..s.len() - 1]),
        ] {
            assert!(bad.parse::<PresentedInvitation>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_mail_names_the_organisation_and_carries_the_token() {
        let (subject, text) = invitation_mail("Acme", "auditor", "csi_x", Utc::now(), Some("https://cs.example/join"));
        assert!(subject.contains("Acme"));
        assert!(text.contains("https://cs.example/join?token=csi_x") && text.contains("auditor"));
    }
}
