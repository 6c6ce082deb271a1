//! Provisioned groups: the SCIM Group resource of one organisation (`scim_groups`), whose members
//! are people the identity provider provisioned here (`scim_group_members`, foreign keys to
//! `scim_users` of the same organisation). Every write takes the [`Provisioner`], runs in that
//! organisation's `TenantTx`, is audited with the identity provider as the actor, and hands every
//! person whose groups changed to [`super::mappings::reconcile`], so a mapped group's role and
//! department follow its membership in the same transaction.

use std::collections::BTreeSet;

use audit::{Changes, Entity, Event};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Postgres, QueryBuilder};
use store::TenantTx;
use uuid::Uuid;

use super::PROVISIONER_ROLE;
use super::filter::{Attr, Filter, Op, Value, push_text_compare};
use super::mappings;
use super::tokens::Provisioner;
use crate::IdentityError;

/// The most members one request may name (a PUT or POST carries the whole list).
pub const MAX_MEMBERS: usize = 5000;

/// One group as SCIM shows it; `members` in the order they joined.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ScimGroup {
    pub id: Uuid,
    pub display_name: String,
    pub external_id: Option<String>,
    pub members: Vec<Uuid>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    display_name: String,
    external_id: Option<String>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Row {
    fn with(self, members: Vec<Uuid>) -> ScimGroup {
        ScimGroup {
            id: self.id,
            display_name: self.display_name,
            external_id: self.external_id,
            members,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// What the identity provider says about a group (a create or a full replace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInput {
    pub display_name: String,
    pub external_id: Option<String>,
    /// Ids of provisioned people of this organisation; repeats count once.
    pub members: Vec<Uuid>,
}

impl GroupInput {
    fn checked(&self) -> Result<Self, IdentityError> {
        let name = self.display_name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(IdentityError::invalid("displayName", "must be 1-200 characters"));
        }
        if self.external_id.as_ref().is_some_and(|x| x.is_empty() || x.chars().count() > 254) {
            return Err(IdentityError::invalid("externalId", "must be 1-254 characters"));
        }
        if self.members.len() > MAX_MEMBERS {
            return Err(IdentityError::invalid("members", format!("at most {MAX_MEMBERS}")));
        }
        let mut seen = BTreeSet::new();
        let members = self.members.iter().copied().filter(|m| seen.insert(*m)).collect();
        Ok(Self { display_name: name.to_owned(), external_id: self.external_id.clone(), members })
    }
}

/// What the ledger keeps of a group.
#[derive(Serialize)]
struct Audited<'a> {
    display_name: &'a str,
    external_id: Option<&'a str>,
    members: &'a [Uuid],
}

impl<'a> From<&'a ScimGroup> for Audited<'a> {
    fn from(g: &'a ScimGroup) -> Self {
        Self { display_name: &g.display_name, external_id: g.external_id.as_deref(), members: &g.members }
    }
}

fn same_org(tx: &TenantTx, p: &Provisioner) -> Result<(), IdentityError> {
    if tx.tenant() == p.tenant() { Ok(()) } else { Err(IdentityError::NotFound) }
}

/// Refuses members who are not live provisioned people of this organisation (another
/// organisation's person is as unknown as a made-up id): 400 `invalidValue`, nothing stored.
async fn ensure_members(tx: &mut TenantTx, members: &[Uuid]) -> Result<(), IdentityError> {
    if members.is_empty() {
        return Ok(());
    }
    let known = sqlx::query_scalar!(
        r#"select count(*) as "n!" from scim_users where tenant_id = $1 and user_id = any($2) and deleted_at is null"#,
        tx.tenant().as_uuid(),
        members
    )
    .fetch_one(tx.conn())
    .await
    .map_err(IdentityError::from_store("provisioned user"))?;
    if usize::try_from(known).ok() != Some(members.len()) {
        return Err(IdentityError::invalid(
            "members",
            "every member must be a person provisioned in this organisation",
        ));
    }
    Ok(())
}

async fn members_of(tx: &mut TenantTx, ids: &[Uuid]) -> Result<Vec<(Uuid, Uuid)>, IdentityError> {
    let rows = sqlx::query!(
        "select group_id, user_id from scim_group_members
          where tenant_id = $1 and group_id = any($2) order by added_at, user_id",
        tx.tenant().as_uuid(),
        ids
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("group member"))?;
    Ok(rows.into_iter().map(|r| (r.group_id, r.user_id)).collect())
}

const SELECT: &str = "select g.id, g.display_name, g.external_id, g.version, g.created_at, g.updated_at from scim_groups g where g.tenant_id = ";

/// One group of this organisation; another organisation's or an unknown id is `NotFound`.
pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<ScimGroup, IdentityError> {
    let mut q = QueryBuilder::<Postgres>::new(SELECT);
    q.push_bind(tx.tenant().as_uuid()).push(" and g.id = ").push_bind(id);
    let row = q
        .build_query_as::<Row>()
        .fetch_optional(tx.conn())
        .await
        .map_err(IdentityError::from_store("group"))?
        .ok_or(IdentityError::NotFound)?;
    let members = members_of(tx, &[id]).await?.into_iter().map(|(_, u)| u).collect();
    Ok(row.with(members))
}

/// The column expression an attribute stands for: a closed set, never text from the request.
/// A Group filter names only these (`filter::Schema::Group`); the others match nothing.
fn column(a: Attr) -> &'static str {
    match a {
        Attr::Id => "g.id::text",
        Attr::DisplayName => "g.display_name",
        Attr::ExternalId => "g.external_id",
        Attr::Member => "gm.user_id::text",
        Attr::UserName | Attr::GivenName | Attr::FamilyName | Attr::Email | Attr::Active => "null::text",
    }
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
        // Any member may match: the comparison runs inside an EXISTS over the members.
        Filter::Compare(Attr::Member, ..) | Filter::Present(Attr::Member) => {
            q.push(
                "exists (select 1 from scim_group_members gm where gm.tenant_id = g.tenant_id and gm.group_id = g.id and ",
            );
            push_leaf(q, f);
            q.push(")");
        }
        leaf => push_leaf(q, leaf),
    }
}

fn push_leaf(q: &mut QueryBuilder<'_, Postgres>, f: &Filter) {
    match f {
        Filter::Present(a) => {
            q.push(format!("({c} is not null and {c} <> '')", c = column(*a)));
        }
        Filter::Compare(a, op, Value::Null) => {
            let c = column(*a);
            q.push(if *op == Op::Eq { format!("({c} is null)") } else { format!("({c} is not null)") });
        }
        // Booleans name no Group attribute (the parser refuses `active` here).
        Filter::Compare(_, _, Value::Bool(_)) => {
            q.push("false");
        }
        Filter::Compare(a, op, Value::Str(v)) => {
            // displayName compares case-insensitively; ids and externalId exactly (caseExact).
            let (c, wrap) = if *a == Attr::DisplayName {
                (format!("lower({})", column(*a)), "lower")
            } else {
                (column(*a).to_owned(), "")
            };
            push_text_compare(q, &c, wrap, *op, v);
        }
        other => push_filter(q, other),
    }
}

/// One page of groups matching `filter`, in creation order, from the 1-based `start`, at most
/// `count` (0 asks for the total only); with the total of matches.
pub async fn list(
    tx: &mut TenantTx,
    filter: Option<&Filter>,
    start: i64,
    count: i64,
) -> Result<(i64, Vec<ScimGroup>), IdentityError> {
    let tenant = tx.tenant().as_uuid();
    let mut total = QueryBuilder::<Postgres>::new("select count(*) from (");
    total.push(SELECT).push_bind(tenant);
    if let Some(f) = filter {
        total.push(" and ");
        push_filter(&mut total, f);
    }
    total.push(") t");
    let n: i64 = total.build_query_scalar().fetch_one(tx.conn()).await.map_err(IdentityError::from_store("group"))?;
    if count <= 0 {
        return Ok((n, Vec::new()));
    }
    let mut q = QueryBuilder::<Postgres>::new(SELECT);
    q.push_bind(tenant);
    if let Some(f) = filter {
        q.push(" and ");
        push_filter(&mut q, f);
    }
    q.push(" order by g.created_at, g.id offset ").push_bind(start.max(1) - 1).push(" limit ").push_bind(count);
    let rows = q.build_query_as::<Row>().fetch_all(tx.conn()).await.map_err(IdentityError::from_store("group"))?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let all = members_of(tx, &ids).await?;
    Ok((
        n,
        rows.into_iter()
            .map(|r| {
                let mine = all.iter().filter(|(g, _)| *g == r.id).map(|(_, u)| *u).collect();
                r.with(mine)
            })
            .collect(),
    ))
}

/// Locks the group for a change (held until `tx` ends), and reads it.
pub async fn lock_for_change(tx: &mut TenantTx, id: Uuid) -> Result<ScimGroup, IdentityError> {
    sqlx::query_scalar!(
        "select version from scim_groups where tenant_id = $1 and id = $2 for update",
        tx.tenant().as_uuid(),
        id
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(IdentityError::from_store("group"))?
    .ok_or(IdentityError::NotFound)?;
    get(tx, id).await
}

/// Refuses a write whose `If-Match` version is not the current one (412).
fn check_version(current: &ScimGroup, expected: Option<i64>) -> Result<(), IdentityError> {
    match expected {
        Some(v) if v != current.version => Err(IdentityError::Conflict {
            code: "precondition_failed",
            reason: format!("the resource is at version {}, not {v}", current.version),
        }),
        _ => Ok(()),
    }
}

/// Gives each of `people` the role and department their mapped groups say now.
async fn follow(
    tx: &mut TenantTx,
    p: &Provisioner,
    people: impl IntoIterator<Item = Uuid>,
) -> Result<(), IdentityError> {
    for user in people.into_iter().collect::<BTreeSet<_>>() {
        mappings::reconcile(tx, p.who(), PROVISIONER_ROLE, user).await?;
    }
    Ok(())
}

/// POST: a new group with its members. A displayName or externalId taken here is `Duplicate`
/// (409 `uniqueness`); a member who is no provisioned person here is 400 `invalidValue`.
pub async fn create(tx: &mut TenantTx, p: &Provisioner, input: &GroupInput) -> Result<ScimGroup, IdentityError> {
    same_org(tx, p)?;
    let input = input.checked()?;
    ensure_members(tx, &input.members).await?;
    let id = Uuid::now_v7();
    sqlx::query!(
        "insert into scim_groups (tenant_id, id, display_name, external_id) values ($1, $2, $3, $4)",
        tx.tenant().as_uuid(),
        id,
        input.display_name,
        input.external_id
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("group displayName or externalId"))?;
    add_members(tx, id, &input.members).await?;
    let now = get(tx, id).await?;
    let event = Event::new(
        "scim.group_created",
        Entity::of("scim_group", id)?,
        Changes::diff(None, Some(&Audited::from(&now)))?,
    )?;
    audit::record_by(tx, p.who(), &event).await?;
    follow(tx, p, input.members.iter().copied()).await?;
    Ok(now)
}

async fn add_members(tx: &mut TenantTx, group: Uuid, members: &[Uuid]) -> Result<(), IdentityError> {
    if members.is_empty() {
        return Ok(());
    }
    // One statement, in the order given (`with ordinality`), so members keep their order.
    sqlx::query!(
        "insert into scim_group_members (tenant_id, group_id, user_id, added_at)
         select $1, $2, m.user_id, clock_timestamp() + m.n * interval '1 microsecond'
           from unnest($3::uuid[]) with ordinality as m (user_id, n)
         on conflict do nothing",
        tx.tenant().as_uuid(),
        group,
        members
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("group member"))?;
    Ok(())
}

/// Replaces what the identity provider says about a group (PUT, and PATCH after its operations
/// are applied): its name, externalId and whole member list. Everyone who joined or left (and
/// every member, when the name or externalId changed which mappings match) gets what the
/// mappings now say. `expected` is the `If-Match` version, if any.
pub async fn replace(
    tx: &mut TenantTx,
    p: &Provisioner,
    id: Uuid,
    input: &GroupInput,
    expected: Option<i64>,
) -> Result<ScimGroup, IdentityError> {
    same_org(tx, p)?;
    let input = input.checked()?;
    let before = lock_for_change(tx, id).await?;
    check_version(&before, expected)?;
    let renamed = before.display_name != input.display_name || before.external_id != input.external_id;
    let had: BTreeSet<Uuid> = before.members.iter().copied().collect();
    let has: BTreeSet<Uuid> = input.members.iter().copied().collect();
    if !renamed && had == has {
        return Ok(before);
    }
    let joined: Vec<Uuid> = input.members.iter().copied().filter(|m| !had.contains(m)).collect();
    let left: Vec<Uuid> = before.members.iter().copied().filter(|m| !has.contains(m)).collect();
    ensure_members(tx, &joined).await?;
    sqlx::query!(
        "update scim_groups set display_name = $3, external_id = $4, version = version + 1, updated_at = now()
          where tenant_id = $1 and id = $2",
        tx.tenant().as_uuid(),
        id,
        input.display_name,
        input.external_id
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("group displayName or externalId"))?;
    sqlx::query!(
        "delete from scim_group_members where tenant_id = $1 and group_id = $2 and user_id = any($3)",
        tx.tenant().as_uuid(),
        id,
        &left
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("group member"))?;
    add_members(tx, id, &joined).await?;
    let after = get(tx, id).await?;
    let changes = Changes::none()
        .field("display_name", &before.display_name, &after.display_name)
        .field("external_id", &before.external_id, &after.external_id)
        .field("members_joined", Vec::<Uuid>::new(), &joined)
        .field("members_left", Vec::<Uuid>::new(), &left);
    let event = Event::new("scim.group_updated", Entity::of("scim_group", id)?, changes)?;
    audit::record_by(tx, p.who(), &event).await?;
    if renamed {
        follow(tx, p, had.union(&has).copied()).await?;
    } else {
        follow(tx, p, joined.into_iter().chain(left)).await?;
    }
    Ok(after)
}

/// DELETE: the group and its memberships go; its former members get what the mappings now say.
pub async fn remove(tx: &mut TenantTx, p: &Provisioner, id: Uuid, expected: Option<i64>) -> Result<(), IdentityError> {
    same_org(tx, p)?;
    let before = lock_for_change(tx, id).await?;
    check_version(&before, expected)?;
    sqlx::query!("delete from scim_groups where tenant_id = $1 and id = $2", tx.tenant().as_uuid(), id)
        .execute(tx.conn())
        .await
        .map_err(IdentityError::from_store("group"))?;
    let event = Event::new(
        "scim.group_deleted",
        Entity::of("scim_group", id)?,
        Changes::diff(Some(&Audited::from(&before)), None::<&Audited>)?,
    )?;
    audit::record_by(tx, p.who(), &event).await?;
    follow(tx, p, before.members.iter().copied()).await
}

/// A person deprovisioned (SCIM DELETE of the User) leaves every group here; each group's
/// version moves on, and what mapped groups gave the person is given back.
pub(crate) async fn leave_all(tx: &mut TenantTx, p: &Provisioner, user: Uuid) -> Result<(), IdentityError> {
    let groups = sqlx::query_scalar!(
        "delete from scim_group_members where tenant_id = $1 and user_id = $2 returning group_id",
        tx.tenant().as_uuid(),
        user
    )
    .fetch_all(tx.conn())
    .await
    .map_err(IdentityError::from_store("group member"))?;
    if groups.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "update scim_groups set version = version + 1, updated_at = now() where tenant_id = $1 and id = any($2)",
        tx.tenant().as_uuid(),
        &groups
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("group"))?;
    for g in &groups {
        let changes = Changes::none().field("members_left", Vec::<Uuid>::new(), [user]);
        let event = Event::new("scim.group_updated", Entity::of("scim_group", g)?, changes)?;
        audit::record_by(tx, p.who(), &event).await?;
    }
    follow(tx, p, [user]).await
}
