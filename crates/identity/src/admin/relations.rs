//! Relations (issue 16): the organisation's vendors and clients, their people, and the portal
//! links that let those people in. Every write takes a `relations.manage` permit and runs in a
//! relation transaction (`Store::relation_tx`): the database shows the organisation's side every
//! relation's rows and a relation's person only their own (`relation_isolation`, migration 0028).
//!
//! A relation's person is an ordinary member with the role `vendor` or `client` and the
//! relation's id on the membership (a composite key makes the role the relation's kind), so the
//! usual session checks, revocation and audit apply to them. Ending a relation ends those
//! memberships, revokes their sessions and withdraws every open link.

use audit::{Changes, Entity, Event, Who};
use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use serde::Serialize;
use store::TenantTx;
use uuid::Uuid;

use crate::revocation::{self, Scope};
use crate::signin::portal::{DEFAULT_TTL_DAYS, MAX_TTL_DAYS, new_token};
use crate::{IdentityError, Role};

/// What an outside company is to the organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    Vendor,
    Client,
}

impl RelationKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vendor => "vendor",
            Self::Client => "client",
        }
    }

    /// The membership role of the relation's people.
    #[must_use]
    pub fn role(self) -> Role {
        match self {
            Self::Vendor => Role::Vendor,
            Self::Client => Role::Client,
        }
    }

    fn parse(s: &str) -> Result<Self, IdentityError> {
        match s {
            "vendor" => Ok(Self::Vendor),
            "client" => Ok(Self::Client),
            _ => Err(IdentityError::Conflict { code: "internal", reason: "stored relation kind unknown".into() }),
        }
    }
}

/// A relation as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Relation {
    pub id: Uuid,
    pub kind: RelationKind,
    pub company_name: String,
    /// `active` or `ended`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// One of a relation's people.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RelationPerson {
    pub user_id: Uuid,
    pub membership_id: Uuid,
    pub email: String,
    pub display_name: String,
    /// The membership's status (`active`, `ended`, …).
    pub status: String,
}

/// A portal link as the API shows it (never its token).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PortalLink {
    pub id: Uuid,
    pub relation_id: Uuid,
    pub user_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub consumed_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// `open`, `used`, `revoked` or `expired`.
    pub status: String,
}

/// A new link; `token` is the only copy of the presentable token.
#[derive(Debug)]
pub struct IssuedLink {
    pub link: PortalLink,
    pub token: SecretString,
}

/// The one place the portal link's email is written (the caller hands it to the mailer). `url`
/// is the link as the person opens it: absolute when the server knows its public address
/// (`--public-url`), otherwise the path on the organisation's Countersign address.
#[must_use]
pub fn portal_link_mail(organisation: &str, company: &str, url: &str, expires_at: DateTime<Utc>) -> (String, String) {
    let subject = format!("{organisation} shares documents with {company} on Countersign");
    let text = format!(
        "Hello,\n\n{organisation} has opened its Countersign portal to you, for {company}. Open it here:\n\n  {url}\n\n\
         The link opens the portal once and expires at {} (UTC). If it has expired or was already \
         used, ask {organisation} for a new one. If you did not expect this message, ignore it: \
         nothing happens unless the link is opened and its button pressed.\n",
        expires_at.format("%Y-%m-%d %H:%M")
    );
    (subject, text)
}

fn permitted(permit: &authz::Permit, tx: &TenantTx) -> Result<(), IdentityError> {
    crate::permitted(permit, authz::Action::RelationsManage, tx)
}

fn relation_from(
    id: Uuid,
    kind: &str,
    company_name: String,
    status: String,
    created_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
) -> Result<Relation, IdentityError> {
    Ok(Relation { id, kind: RelationKind::parse(kind)?, company_name, status, created_at, ended_at })
}

/// Creates a relation with an outside company.
///
/// # Errors
/// `Invalid` company name; `Forbidden` for a permit of another action.
pub async fn create(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    kind: RelationKind,
    company_name: &str,
) -> Result<Relation, IdentityError> {
    permitted(permit, tx)?;
    let name = company_name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(IdentityError::invalid("company_name", "must be 1-200 characters"));
    }
    let id = Uuid::now_v7();
    let created_at = sqlx::query_scalar!(
        "insert into relations (tenant_id, id, kind, company_name, created_by)
         values ($1, $2, $3, $4, $5) returning created_at",
        tx.tenant().as_uuid(),
        id,
        kind.as_str(),
        name,
        permit.user()
    )
    .fetch_one(tx.conn())
    .await?;
    let r = Relation { id, kind, company_name: name.to_owned(), status: "active".into(), created_at, ended_at: None };
    let changes = Changes::none().field("kind", None::<&str>, kind.as_str()).field("company_name", None::<&str>, name);
    audit::record_by(tx, who, &Event::new("relation.created", Entity::of("relation", id)?, changes)?).await?;
    Ok(r)
}

/// The relations the transaction shows (all of them to the organisation's side).
///
/// # Errors
/// Database errors.
pub async fn list(tx: &mut TenantTx) -> Result<Vec<Relation>, IdentityError> {
    let rows = sqlx::query!(
        "select id, kind, company_name, status, created_at, ended_at from relations order by company_name, id"
    )
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(|r| relation_from(r.id, &r.kind, r.company_name, r.status, r.created_at, r.ended_at)).collect()
}

/// One relation; `NotFound` when the transaction does not show it (another organisation's,
/// another relation's for a relation's person, or none).
///
/// # Errors
/// `NotFound`; database errors.
pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Relation, IdentityError> {
    let r =
        sqlx::query!("select id, kind, company_name, status, created_at, ended_at from relations where id = $1", id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(IdentityError::NotFound)?;
    relation_from(r.id, &r.kind, r.company_name, r.status, r.created_at, r.ended_at)
}

/// A relation's people.
///
/// # Errors
/// Database errors.
pub async fn people(tx: &mut TenantTx, relation: Uuid) -> Result<Vec<RelationPerson>, IdentityError> {
    Ok(sqlx::query_as!(
        RelationPerson,
        r#"select m.user_id, m.id as membership_id, u.email::text as "email!", u.display_name, m.status
             from memberships m join users u on u.id = m.user_id
            where m.relation_id = $1 and m.deleted_at is null
            order by u.email"#,
        relation
    )
    .fetch_all(tx.conn())
    .await?)
}

/// Makes `user` a person of `relation` (a membership whose role is the relation's kind).
/// Someone already a member of the organisation in another capacity is refused: one membership
/// per person and organisation, and staff never become outside parties.
///
/// # Errors
/// `NotFound` relation; `Conflict` `relation_ended` or `already_member`.
pub async fn add_person(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    relation: Uuid,
    user: Uuid,
) -> Result<RelationPerson, IdentityError> {
    permitted(permit, tx)?;
    let r = get(tx, relation).await?;
    if r.status != "active" {
        return Err(IdentityError::Conflict { code: "relation_ended", reason: "this relation has ended".into() });
    }
    if let Some(p) = people(tx, relation).await?.into_iter().find(|p| p.user_id == user && p.status == "active") {
        return Ok(p);
    }
    let id = Uuid::now_v7();
    let inserted = sqlx::query_scalar!(
        "insert into memberships (tenant_id, id, user_id, role, relation_id)
         values ($1, $2, $3, $4, $5)
         on conflict (tenant_id, user_id) do nothing
         returning id",
        tx.tenant().as_uuid(),
        id,
        user,
        r.kind.role().as_str(),
        relation
    )
    .fetch_optional(tx.conn())
    .await?;
    if inserted.is_none() {
        return Err(IdentityError::Conflict {
            code: "already_member",
            reason: "this person is already a member of the organisation".into(),
        });
    }
    let event = Event::new(
        "membership.relation_added",
        Entity::of("membership", id)?,
        Changes::none()
            .field("user_id", None::<String>, user.to_string())
            .field("role", None::<&str>, r.kind.role().as_str())
            .field("relation_id", None::<String>, relation.to_string()),
    )?;
    audit::record_by(tx, who, &event).await?;
    people(tx, relation).await?.into_iter().find(|p| p.user_id == user).ok_or(IdentityError::NotFound)
}

fn link_status(consumed: bool, revoked: bool, expires_at: DateTime<Utc>) -> String {
    if revoked {
        "revoked"
    } else if consumed {
        "used"
    } else if expires_at <= Utc::now() {
        "expired"
    } else {
        "open"
    }
    .to_owned()
}

/// The relation's portal links, newest first.
///
/// # Errors
/// Database errors.
pub async fn links(tx: &mut TenantTx, relation: Uuid) -> Result<Vec<PortalLink>, IdentityError> {
    let rows = sqlx::query!(
        "select l.id, l.relation_id, m.user_id, l.expires_at, l.created_at, l.consumed_at, l.revoked_at
           from portal_links l join memberships m on m.tenant_id = l.tenant_id and m.id = l.membership_id
          where l.relation_id = $1 order by l.created_at desc, l.id",
        relation
    )
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| PortalLink {
            id: r.id,
            relation_id: r.relation_id,
            user_id: r.user_id,
            expires_at: r.expires_at,
            created_at: r.created_at,
            consumed_at: r.consumed_at,
            revoked_at: r.revoked_at,
            status: link_status(r.consumed_at.is_some(), r.revoked_at.is_some(), r.expires_at),
        })
        .collect())
}

/// Mints a single-use portal link for `user`, a person of `relation`, valid `ttl_days` (default
/// [`DEFAULT_TTL_DAYS`], at most [`MAX_TTL_DAYS`]).
///
/// # Errors
/// `Invalid` lifetime; `NotFound` relation or person; `Conflict` `relation_ended`.
pub async fn mint_link(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    relation: Uuid,
    user: Uuid,
    ttl_days: Option<i64>,
) -> Result<IssuedLink, IdentityError> {
    permitted(permit, tx)?;
    let days = ttl_days.unwrap_or(DEFAULT_TTL_DAYS);
    if !(1..=MAX_TTL_DAYS).contains(&days) {
        return Err(IdentityError::invalid("expires_in_days", "must be 1-30"));
    }
    let r = get(tx, relation).await?;
    if r.status != "active" {
        return Err(IdentityError::Conflict { code: "relation_ended", reason: "this relation has ended".into() });
    }
    let person = people(tx, relation)
        .await?
        .into_iter()
        .find(|p| p.user_id == user && p.status == "active")
        .ok_or(IdentityError::NotFound)?;
    let id = Uuid::now_v7();
    let (token, hash) = new_token(tx.tenant(), id);
    let expires_at = Utc::now() + Duration::days(days);
    let created_at = sqlx::query_scalar!(
        "insert into portal_links (tenant_id, id, relation_id, membership_id, token_hash, expires_at, created_by)
         values ($1, $2, $3, $4, $5, $6, $7) returning created_at",
        tx.tenant().as_uuid(),
        id,
        relation,
        person.membership_id,
        &hash[..],
        expires_at,
        permit.user()
    )
    .fetch_one(tx.conn())
    .await?;
    let event = Event::new(
        "portal.link_created",
        Entity::of("portal_link", id)?,
        Changes::none()
            .field("relation_id", None::<String>, relation.to_string())
            .field("user_id", None::<String>, user.to_string())
            .field("expires_at", None::<String>, expires_at.to_rfc3339()),
    )?;
    audit::record_by(tx, who, &event).await?;
    let link = PortalLink {
        id,
        relation_id: relation,
        user_id: user,
        expires_at,
        created_at,
        consumed_at: None,
        revoked_at: None,
        status: "open".into(),
    };
    Ok(IssuedLink { link, token })
}

/// Records that a portal link is being handed to the mailer for its person (`sent`, written
/// before the mail leaves, so no mail leaves unrecorded), or that the mailer then refused it: who
/// asked, for which link and relation. The address itself is not written to the ledger (the
/// link's person is, by id).
///
/// # Errors
/// `Forbidden` without the permit; a store error.
pub async fn record_link_mailed(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    link: &PortalLink,
    sent: bool,
) -> Result<(), IdentityError> {
    permitted(permit, tx)?;
    let event = Event::new(
        if sent { "portal.link_mailed" } else { "portal.link_mail_failed" },
        Entity::of("portal_link", link.id)?,
        Changes::none().field("relation_id", None::<String>, link.relation_id.to_string()).field(
            "user_id",
            None::<String>,
            link.user_id.to_string(),
        ),
    )?;
    audit::record_by(tx, who, &event).await?;
    Ok(())
}

/// Withdraws a portal link; if it was used, the session it opened ends too.
///
/// # Errors
/// `NotFound` (another relation's or organisation's link).
pub async fn revoke_link(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    relation: Uuid,
    link: Uuid,
    reason: Option<&str>,
) -> Result<(), IdentityError> {
    permitted(permit, tx)?;
    let row = sqlx::query!(
        "update portal_links set revoked_at = coalesce(revoked_at, now()), revoked_by = coalesce(revoked_by, $3)
          where id = $1 and relation_id = $2
         returning session_id",
        link,
        relation,
        permit.user()
    )
    .fetch_optional(tx.conn())
    .await?
    .ok_or(IdentityError::NotFound)?;
    if let Some(session) = row.session_id {
        revocation::revoke(tx, who, Scope::Session(session), "portal_link_revoked").await?;
    }
    let mut event = Event::new(
        "portal.link_revoked",
        Entity::of("portal_link", link)?,
        Changes::none().field("relation_id", None::<String>, relation.to_string()),
    )?;
    if let Some(r) = reason.map(str::trim).filter(|r| !r.is_empty()) {
        event = event.with_reason(r)?;
    }
    audit::record_by(tx, who, &event).await?;
    Ok(())
}

/// Ends a relation: its people's memberships end, their sessions are revoked, open links are
/// withdrawn. Idempotent.
///
/// # Errors
/// `NotFound`.
pub async fn end(
    tx: &mut TenantTx,
    who: &Who,
    permit: &authz::Permit,
    relation: Uuid,
    reason: Option<&str>,
) -> Result<Relation, IdentityError> {
    permitted(permit, tx)?;
    let before = get(tx, relation).await?;
    if before.status == "ended" {
        return Ok(before);
    }
    sqlx::query!("update relations set status = 'ended', ended_at = now() where id = $1", relation)
        .execute(tx.conn())
        .await?;
    let users = sqlx::query_scalar!(
        "update memberships set status = 'ended', updated_at = now()
          where relation_id = $1 and status <> 'ended' returning user_id",
        relation
    )
    .fetch_all(tx.conn())
    .await?;
    for u in users {
        revocation::revoke(tx, who, Scope::User(u), "relation_ended").await?;
    }
    sqlx::query!(
        "update portal_links set revoked_at = now(), revoked_by = $2
          where relation_id = $1 and revoked_at is null and consumed_at is null",
        relation,
        permit.user()
    )
    .execute(tx.conn())
    .await?;
    let mut event = Event::new(
        "relation.ended",
        Entity::of("relation", relation)?,
        Changes::none().field("status", Some("active"), "ended"),
    )?;
    if let Some(r) = reason.map(str::trim).filter(|r| !r.is_empty()) {
        event = event.with_reason(r)?;
    }
    audit::record_by(tx, who, &event).await?;
    get(tx, relation).await
}
