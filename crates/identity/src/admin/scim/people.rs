//! Provisioned people: the SCIM User resource of one organisation, kept in `scim_users` beside
//! the membership it manages. Every write takes the [`Provisioner`] (a live token of this
//! organisation), runs in that organisation's `TenantTx`, is audited with the identity provider
//! as the actor, and takes access away through the members' own path
//! ([`crate::admin::members`] suspend → [`crate::revocation`]): sessions end on every node when the
//! transaction commits.
//!
//! The global account is shared with other organisations, so the identity provider never edits
//! it: what it says about a person (userName, names, externalId) is stored per organisation.
//! The identity provider acts with an administrator's ceiling: it never touches an owner and
//! never suspends the last administrator.

use audit::{Changes, Entity, Event};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};
use store::{GlobalTx, TenantTx};
use uuid::Uuid;

use super::PROVISIONER_ROLE;
use super::filter::{Attr, Filter, Op, Value, push_text_compare};
use super::tokens::Provisioner;
use crate::admin::members;
use crate::directory::{memberships, users};
use crate::{EmailAddress, IdentityError, MembershipStatus, Role};

/// One provisioned person as SCIM shows them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct ScimUser {
    pub id: Uuid,
    pub user_name: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// The addresses as the identity provider listed them.
    pub emails: Json<Vec<Email>>,
    pub active: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What the identity provider says about a person (a create or a full replace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInput {
    pub user_name: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// The addresses; the primary one (else the first, else userName) names a new account.
    pub emails: Vec<Email>,
    pub active: bool,
}

/// One address of a person (SCIM `emails`), kept as the identity provider sent it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Email {
    pub value: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

impl UserInput {
    fn check(&self) -> Result<(), IdentityError> {
        let n = self.user_name.trim().chars().count();
        if n == 0 || n > 254 {
            return Err(IdentityError::invalid("userName", "must be 1-254 characters"));
        }
        for (field, v, max) in [
            ("externalId", &self.external_id, 254),
            ("displayName", &self.display_name, 200),
            ("name.givenName", &self.given_name, 200),
            ("name.familyName", &self.family_name, 200),
        ] {
            if v.as_ref().is_some_and(|v| v.is_empty() || v.chars().count() > max) {
                return Err(IdentityError::Invalid { field, reason: format!("must be 1-{max} characters") });
            }
        }
        if self.emails.len() > 20 {
            return Err(IdentityError::invalid("emails", "at most 20"));
        }
        if self.emails.iter().filter(|e| e.primary == Some(true)).count() > 1 {
            return Err(IdentityError::invalid("emails", "at most one primary"));
        }
        for e in &self.emails {
            for v in [Some(&e.value), e.kind.as_ref(), e.display.as_ref()].into_iter().flatten() {
                if v.chars().count() > 254 {
                    return Err(IdentityError::invalid("emails", "values of at most 254 characters"));
                }
            }
        }
        Ok(())
    }

    /// The address the account is created with: the primary email, else the first, else userName.
    fn address(&self) -> Result<EmailAddress, IdentityError> {
        let listed = self.emails.iter().find(|e| e.primary == Some(true)).or_else(|| self.emails.first());
        let raw = listed.map_or(self.user_name.as_str(), |e| e.value.as_str());
        EmailAddress::parse(raw)
            .map_err(|_| IdentityError::invalid("emails", "a primary email (or an email as userName) is required"))
    }

    fn account_name(&self) -> String {
        let joined = [self.given_name.as_deref(), self.family_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let name = self.display_name.clone().filter(|d| !d.trim().is_empty()).unwrap_or(joined);
        let name = if name.trim().is_empty() { self.user_name.clone() } else { name };
        name.chars().take(200).collect()
    }
}

/// Step one of a create, in the identity scope: the account for the input's address, found or
/// created (audited on the platform chain with the identity provider as the actor). Commit `g`
/// before [`provision`], which needs the account to exist.
pub async fn account_for(g: &mut GlobalTx, p: &Provisioner, input: &UserInput) -> Result<Uuid, IdentityError> {
    input.check()?;
    let email = input.address()?;
    if let Some(u) = users::find_by_email(g, &email).await? {
        return Ok(u.id);
    }
    match users::create(g, p.who(), &email, &input.account_name()).await {
        Ok(u) => Ok(u.id),
        // Created meanwhile by someone else: the same account.
        Err(IdentityError::Duplicate(_)) => {
            users::find_by_email(g, &email).await?.map(|u| u.id).ok_or(IdentityError::NotFound)
        }
        Err(e) => Err(e),
    }
}

/// Step two of a create, in the organisation: a membership (staff, no department) unless the
/// person already holds one here, then the SCIM record. A person already provisioned here, or a
/// userName/externalId already taken, is `Duplicate` (409 `uniqueness`).
pub async fn provision(
    tx: &mut TenantTx,
    p: &Provisioner,
    user: Uuid,
    input: &UserInput,
) -> Result<ScimUser, IdentityError> {
    same_org(tx, p)?;
    input.check()?;
    let existing = sqlx::query!(
        r#"select m.status, (s.user_id is not null) as "managed!", (s.deleted_at is null and s.user_id is not null) as "live!"
             from memberships m left join scim_users s on s.tenant_id = m.tenant_id and s.user_id = m.user_id
            where m.tenant_id = $1 and m.user_id = $2 and m.deleted_at is null
            for update of m"#,
        tx.tenant().as_uuid(),
        user
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(IdentityError::from_store("membership"))?;
    match &existing {
        Some(r) if r.live => return Err(IdentityError::Duplicate("provisioned user")),
        Some(_) => {}
        None => {
            let new =
                memberships::NewMembership { user_id: user, role: Role::Staff, department_id: None, valid_until: None };
            memberships::add(tx, p.who(), &new).await?;
        }
    }
    let managed = existing.as_ref().is_some_and(|r| r.managed);
    let sql_insert = sqlx::query!(
        "insert into scim_users (tenant_id, user_id, user_name, external_id, display_name, given_name, family_name, emails)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         on conflict (tenant_id, user_id) do update
            set user_name = excluded.user_name, external_id = excluded.external_id,
                display_name = excluded.display_name, given_name = excluded.given_name,
                family_name = excluded.family_name, emails = excluded.emails, deleted_at = null,
                version = scim_users.version + 1, updated_at = now()
          where scim_users.deleted_at is not null",
        tx.tenant().as_uuid(),
        user,
        input.user_name.trim(),
        input.external_id,
        input.display_name,
        input.given_name,
        input.family_name,
        Json(&input.emails) as _
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("userName or externalId"))?;
    if sql_insert.rows_affected() == 0 {
        return Err(IdentityError::Duplicate("provisioned user"));
    }
    let status = existing.as_ref().map_or("active", |r| r.status.as_str());
    apply_active(tx, p, user, status == MembershipStatus::Active.as_str(), input.active).await?;
    let now = get(tx, user).await?;
    let action = if managed { "scim.user_reprovisioned" } else { "scim.user_provisioned" };
    let event = Event::new(action, Entity::of("user", user)?, Changes::diff(None, Some(&Audited::from(&now)))?)?;
    audit::record_by(tx, p.who(), &event).await?;
    Ok(now)
}

/// What the ledger keeps of a SCIM record (no email: it is the account's, recorded at creation).
#[derive(Serialize)]
struct Audited<'a> {
    user_name: &'a str,
    external_id: Option<&'a str>,
    display_name: Option<&'a str>,
    given_name: Option<&'a str>,
    family_name: Option<&'a str>,
    emails: &'a [Email],
    active: bool,
}

impl<'a> From<&'a ScimUser> for Audited<'a> {
    fn from(u: &'a ScimUser) -> Self {
        Self {
            user_name: &u.user_name,
            external_id: u.external_id.as_deref(),
            display_name: u.display_name.as_deref(),
            given_name: u.given_name.as_deref(),
            family_name: u.family_name.as_deref(),
            emails: &u.emails.0,
            active: u.active,
        }
    }
}

fn same_org(tx: &TenantTx, p: &Provisioner) -> Result<(), IdentityError> {
    if tx.tenant() == p.tenant() { Ok(()) } else { Err(IdentityError::NotFound) }
}

/// Suspends or lifts the membership through the members' own path (sessions revoked on every
/// node when `tx` commits).
async fn apply_active(
    tx: &mut TenantTx,
    p: &Provisioner,
    user: Uuid,
    was: bool,
    wanted: bool,
) -> Result<(), IdentityError> {
    match (was, wanted) {
        (true, false) => {
            members::suspend(tx, p.who(), PROVISIONER_ROLE, user, "deprovisioned by the identity provider").await?;
        }
        (false, true) => {
            members::resume(tx, p.who(), PROVISIONER_ROLE, user, "reprovisioned by the identity provider").await?;
        }
        _ => {}
    }
    Ok(())
}

const SELECT: &str = "select s.user_id as id, s.user_name, s.external_id, s.display_name, s.given_name, s.family_name,
        s.emails, (m.status = 'active') as active, s.version, s.created_at, s.updated_at
   from scim_users s
   join memberships m on m.tenant_id = s.tenant_id and m.user_id = s.user_id
  where s.deleted_at is null and m.deleted_at is null and s.tenant_id = ";

/// One provisioned person of this organisation; another organisation's, a deleted one or an
/// unknown id is `NotFound`.
pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<ScimUser, IdentityError> {
    let mut q = QueryBuilder::<Postgres>::new(SELECT);
    q.push_bind(tx.tenant().as_uuid()).push(" and s.user_id = ").push_bind(id);
    q.build_query_as::<ScimUser>()
        .fetch_optional(tx.conn())
        .await
        .map_err(IdentityError::from_store("provisioned user"))?
        .ok_or(IdentityError::NotFound)
}

/// The column expression an attribute stands for: a closed set, never text from the request.
fn column(a: Attr) -> &'static str {
    match a {
        Attr::Id => "s.user_id::text",
        Attr::UserName => "s.user_name",
        Attr::ExternalId => "s.external_id",
        Attr::DisplayName => "s.display_name",
        Attr::GivenName => "s.given_name",
        Attr::FamilyName => "s.family_name",
        Attr::Email => "e.value",
        Attr::Active => "(m.status = 'active')",
        // Only Group filters name members (`filter::parse_for(_, Schema::Group)`): a User has none.
        Attr::Member => "null::text",
    }
}

/// Whether SCIM compares the attribute exactly (`caseExact`): ids and externalId do.
fn case_exact(a: Attr) -> bool {
    matches!(a, Attr::Id | Attr::ExternalId)
}

/// Appends `f` as SQL: fixed expressions from [`column`], every value a bind parameter.
fn push_filter(q: &mut QueryBuilder<'_, Postgres>, f: &Filter) {
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => {
            q.push("(");
            push_filter(q, a);
            q.push(if matches!(f, Filter::And(..)) { " and " } else { " or " });
            push_filter(q, b);
            q.push(")");
        }
        Filter::Not(inner) => {
            q.push("not coalesce((");
            push_filter(q, inner);
            q.push("), false)");
        }
        // Any listed address may match: the comparison runs inside an EXISTS over the list.
        Filter::Compare(Attr::Email, ..) | Filter::Present(Attr::Email) => {
            q.push("exists (select 1 from jsonb_to_recordset(s.emails) as e(value text) where ");
            push_leaf(q, f);
            q.push(")");
        }
        leaf => push_leaf(q, leaf),
    }
}

/// One comparison or presence test.
fn push_leaf(q: &mut QueryBuilder<'_, Postgres>, f: &Filter) {
    match f {
        Filter::Present(a) => {
            q.push(format!("({c} is not null and {c}::text <> '')", c = column(*a)));
        }
        Filter::Compare(a, op, Value::Null) => {
            let c = column(*a);
            q.push(if *op == Op::Eq { format!("({c} is null)") } else { format!("({c} is not null)") });
        }
        Filter::Compare(a, op, Value::Bool(b)) => {
            q.push(format!("({} {} ", column(*a), if *op == Op::Eq { "=" } else { "<>" }));
            q.push_bind(*b).push(")");
        }
        Filter::Compare(a, op, Value::Str(v)) => {
            let (c, wrap) =
                if case_exact(*a) { (column(*a).to_owned(), "") } else { (format!("lower({})", column(*a)), "lower") };
            push_text_compare(q, &c, wrap, *op, v);
        }
        other => push_filter(q, other),
    }
}

/// One page of provisioned people matching `filter`, in creation order, from the 1-based
/// `start`, at most `count` (0 asks for the total only); with the total of matches.
pub async fn list(
    tx: &mut TenantTx,
    filter: Option<&Filter>,
    start: i64,
    count: i64,
) -> Result<(i64, Vec<ScimUser>), IdentityError> {
    let tenant = tx.tenant().as_uuid();
    let mut total = QueryBuilder::<Postgres>::new("select count(*) from (");
    total.push(SELECT).push_bind(tenant);
    if let Some(f) = filter {
        total.push(" and ");
        push_filter(&mut total, f);
    }
    total.push(") t");
    let n: i64 =
        total.build_query_scalar().fetch_one(tx.conn()).await.map_err(IdentityError::from_store("provisioned user"))?;
    if count <= 0 {
        return Ok((n, Vec::new()));
    }
    let mut q = QueryBuilder::<Postgres>::new(SELECT);
    q.push_bind(tenant);
    if let Some(f) = filter {
        q.push(" and ");
        push_filter(&mut q, f);
    }
    q.push(" order by s.created_at, s.user_id offset ").push_bind(start.max(1) - 1).push(" limit ").push_bind(count);
    let rows = q
        .build_query_as::<ScimUser>()
        .fetch_all(tx.conn())
        .await
        .map_err(IdentityError::from_store("provisioned user"))?;
    Ok((n, rows))
}

/// Refuses a write whose `If-Match` version is not the current one (412 `stale`).
fn check_version(current: &ScimUser, expected: Option<i64>) -> Result<(), IdentityError> {
    match expected {
        Some(v) if v != current.version => Err(IdentityError::Conflict {
            code: "precondition_failed",
            reason: format!("the resource is at version {}, not {v}", current.version),
        }),
        _ => Ok(()),
    }
}

/// Locks the record and its membership for a change (held until `tx` ends), and reads it.
pub async fn lock_for_change(tx: &mut TenantTx, id: Uuid) -> Result<ScimUser, IdentityError> {
    sqlx::query!(
        "select s.version from scim_users s join memberships m on m.tenant_id = s.tenant_id and m.user_id = s.user_id
          where s.tenant_id = $1 and s.user_id = $2 and s.deleted_at is null for update",
        tx.tenant().as_uuid(),
        id
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(IdentityError::from_store("provisioned user"))?
    .ok_or(IdentityError::NotFound)?;
    get(tx, id).await
}

/// Replaces what the identity provider says about a person (PUT, and PATCH after its operations
/// are applied); `active` false suspends the membership and ends the sessions, true lifts it.
/// `expected` is the `If-Match` version, if any. The email of the (shared) account is not changed.
pub async fn replace(
    tx: &mut TenantTx,
    p: &Provisioner,
    id: Uuid,
    input: &UserInput,
    expected: Option<i64>,
) -> Result<ScimUser, IdentityError> {
    same_org(tx, p)?;
    input.check()?;
    let before = lock_for_change(tx, id).await?;
    check_version(&before, expected)?;
    let after_fields = (
        input.user_name.trim(),
        input.external_id.as_deref(),
        input.display_name.as_deref(),
        input.given_name.as_deref(),
        input.family_name.as_deref(),
    );
    let before_fields = (
        before.user_name.as_str(),
        before.external_id.as_deref(),
        before.display_name.as_deref(),
        before.given_name.as_deref(),
        before.family_name.as_deref(),
    );
    if after_fields == before_fields && before.emails.0 == input.emails && before.active == input.active {
        return Ok(before);
    }
    apply_active(tx, p, id, before.active, input.active).await?;
    sqlx::query!(
        "update scim_users set user_name = $3, external_id = $4, display_name = $5, given_name = $6, family_name = $7,
                emails = $8, version = version + 1, updated_at = now()
          where tenant_id = $1 and user_id = $2",
        tx.tenant().as_uuid(),
        id,
        after_fields.0,
        after_fields.1,
        after_fields.2,
        after_fields.3,
        after_fields.4,
        Json(&input.emails) as _
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("userName or externalId"))?;
    let after = get(tx, id).await?;
    let changes = Changes::diff(Some(&Audited::from(&before)), Some(&Audited::from(&after)))?;
    let event = Event::new("scim.user_updated", Entity::of("user", id)?, changes)?;
    audit::record_by(tx, p.who(), &event).await?;
    Ok(after)
}

/// DELETE: the membership is suspended (sessions end on every node), the person leaves every
/// group (what mapped groups gave them is given back) and the record disappears from SCIM; the
/// membership row stays, so the audit trail keeps naming it.
pub async fn remove(tx: &mut TenantTx, p: &Provisioner, id: Uuid, expected: Option<i64>) -> Result<(), IdentityError> {
    same_org(tx, p)?;
    let before = lock_for_change(tx, id).await?;
    check_version(&before, expected)?;
    apply_active(tx, p, id, before.active, false).await?;
    super::groups::leave_all(tx, p, id).await?;
    sqlx::query!(
        "update scim_users set deleted_at = now(), version = version + 1, updated_at = now()
          where tenant_id = $1 and user_id = $2",
        tx.tenant().as_uuid(),
        id
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("provisioned user"))?;
    let event = Event::new(
        "scim.user_deprovisioned",
        Entity::of("user", id)?,
        Changes::diff(Some(&Audited::from(&before)), None::<&Audited>)?,
    )?;
    audit::record_by(tx, p.who(), &event).await?;
    Ok(())
}
