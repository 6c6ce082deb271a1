//! Global user identities. Created and looked up by email only in a `GlobalTx`; tenant
//! transactions see a user only through a membership of their tenant.

use audit::{Changes, Entity, Event, Who};
use serde::Serialize;
use store::{GlobalTx, TenantTx};
use uuid::Uuid;

use crate::{EmailAddress, IdentityError};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub status: String,
}

/// Creates a global identity; audited on the platform chain (users belong to no one tenant).
pub async fn create(
    tx: &mut GlobalTx,
    who: &Who,
    email: &EmailAddress,
    display_name: &str,
) -> Result<User, IdentityError> {
    let name = display_name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(IdentityError::invalid("display_name", "must be 1-200 characters"));
    }
    let id = Uuid::now_v7();
    sqlx::query!(
        "insert into users (id, email, display_name) values ($1, $2::text::citext, $3)",
        id,
        email.as_str(),
        name
    )
    .execute(tx.conn())
    .await
    .map_err(IdentityError::from_store("user with this email"))?;
    let user = User { id, email: email.as_str().to_owned(), display_name: name.to_owned(), status: "active".into() };
    let event = Event::new("user.created", Entity::of("user", id)?, Changes::diff(None, Some(&user))?)?;
    audit::record_platform(tx.conn(), &who.actor, &who.origin, &event).await?;
    Ok(user)
}

pub async fn find_by_email(tx: &mut GlobalTx, email: &EmailAddress) -> Result<Option<User>, IdentityError> {
    let r = sqlx::query_as!(
        User,
        r#"select id, email::text as "email!", display_name, status from users where email_key = lower($1)"#,
        email.as_str()
    )
    .fetch_optional(tx.conn())
    .await
    .map_err(IdentityError::from_store("user"))?;
    Ok(r)
}

/// A user as seen by a tenant: only members of that tenant are visible.
pub async fn get_member(tx: &mut TenantTx, id: Uuid) -> Result<User, IdentityError> {
    sqlx::query_as!(User, r#"select id, email::text as "email!", display_name, status from users where id = $1"#, id)
        .fetch_optional(tx.conn())
        .await
        .map_err(IdentityError::from_store("user"))?
        .ok_or(IdentityError::NotFound)
}
