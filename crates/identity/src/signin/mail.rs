//! Outgoing mail behind one trait. SMTP is an optional adapter; the default writes to the global
//! `mail_outbox` table (identity scope: no tenant transaction can read it), so a deployment needs
//! nothing but Postgres and an operator can still read what would have been sent.
//!
//! Outbox bodies carry one-time codes and invitation tokens, so they are sealed (AES-256-GCM under
//! the MFA key, [`SecretBox`], bound to the row id) and never stored in plaintext; a row lives
//! until it is delivered (shown by `countersign admin outbox`) or its contents expire
//! ([`OUTBOX_KEEP_DAYS`]), then the serve sweeper purges it.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use store::Store;
use uuid::Uuid;

use crate::signin::secret_box::{Sealed, SecretBox};
use crate::{EmailAddress, IdentityError};

/// How long an undelivered message stays in the outbox: the longest-lived thing mailed (an
/// invitation, `admin::invitations::TTL_DAYS`, which checks at compile time that it fits);
/// email codes die much sooner by themselves.
pub const OUTBOX_KEEP_DAYS: i64 = 7;

/// The associated data a body is sealed under: a body copied to another row does not open.
fn aad(id: Uuid) -> Vec<u8> {
    format!("mail_outbox:{id}").into_bytes()
}

/// One plain-text message.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: EmailAddress,
    pub subject: String,
    pub text: String,
}

impl fmt::Debug for Mail {
    // Bodies carry one-time codes: never in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mail").field("to", &self.to).field("subject", &self.subject).finish_non_exhaustive()
    }
}

/// Sends mail. Object-safe (boxed future) so the server holds an `Arc<dyn Mailer>` chosen at
/// start-up.
pub trait Mailer: Send + Sync + fmt::Debug {
    fn send<'a>(&'a self, mail: &'a Mail) -> BoxFuture<'a, Result<(), IdentityError>>;
}

/// The default: mail lands in `mail_outbox`, its body sealed under `keys`' current key.
#[derive(Debug, Clone)]
pub struct OutboxMailer {
    store: Store,
    keys: Arc<SecretBox>,
}

impl OutboxMailer {
    #[must_use]
    pub fn new(store: Store, keys: Arc<SecretBox>) -> Self {
        Self { store, keys }
    }
}

impl Mailer for OutboxMailer {
    fn send<'a>(&'a self, mail: &'a Mail) -> BoxFuture<'a, Result<(), IdentityError>> {
        Box::pin(async move {
            let id = Uuid::now_v7();
            let sealed = self.keys.seal(mail.text.as_bytes(), &aad(id))?;
            let mut g = self.store.global_tx().await?;
            sqlx::query!(
                "insert into mail_outbox (id, to_address, subject, key_id, nonce, ciphertext, expires_at)
                 values ($1, $2::text::citext, $3, $4, $5, $6, now() + make_interval(days => $7))",
                id,
                mail.to.as_str(),
                mail.subject,
                sealed.key_id,
                sealed.nonce,
                sealed.ciphertext,
                i32::try_from(OUTBOX_KEEP_DAYS).unwrap_or(7)
            )
            .execute(g.conn())
            .await?;
            g.commit().await?;
            Ok(())
        })
    }
}

/// SMTP through lettre (rustls, no OpenSSL). `smtp://host:port` (STARTTLS when offered;
/// `?tls=required` to insist) or `smtps://user:pass@host:465` (implicit TLS).
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl fmt::Debug for SmtpMailer {
    // The transport holds credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer").field("from", &self.from.to_string()).finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// # Errors
    /// A malformed URL or From address (the message never repeats the URL: it may hold a password).
    pub fn new(url: &str, from: &str) -> Result<Self, IdentityError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|_| IdentityError::invalid("smtp_url", "expected smtp://host:port or smtps://user:pass@host:465"))?
            .build();
        let from: Mailbox =
            from.parse().map_err(|_| IdentityError::invalid("mail_from", "expected an address like Name <a@b.c>"))?;
        Ok(Self { transport, from })
    }
}

impl Mailer for SmtpMailer {
    fn send<'a>(&'a self, mail: &'a Mail) -> BoxFuture<'a, Result<(), IdentityError>> {
        Box::pin(async move {
            let to: Mailbox =
                mail.to.as_str().parse().map_err(|_| IdentityError::invalid("email", "not deliverable"))?;
            let message = Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(mail.subject.clone())
                .body(mail.text.clone())
                .map_err(|e| IdentityError::Internal(format!("building mail: {e}")))?;
            self.transport.send(message).await.map_err(|e| IdentityError::Internal(format!("smtp: {e}")))?;
            Ok(())
        })
    }
}

/// Sends in the background: the caller's answer does not wait for (or reveal, by its timing)
/// whether mail went out. Failures are logged.
pub fn send_detached(mailer: Arc<dyn Mailer>, mail: Mail) {
    tokio::spawn(async move {
        if let Err(e) = mailer.send(&mail).await {
            tracing::error!(error = %e, to = %mail.to, "sending mail failed");
        }
    });
}

/// A message as the outbox shows it (operators, dev endpoint), opened with the MFA key.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxEntry {
    pub id: Uuid,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Shown to an operator by `countersign admin outbox` already.
    pub delivered: bool,
}

/// The newest messages, optionally only those to `to`, opened with `keys`. A body sealed under
/// a key this process does not hold says so instead of failing the whole listing.
pub async fn outbox(
    g: &mut store::GlobalTx,
    keys: &SecretBox,
    to: Option<&EmailAddress>,
    limit: i64,
) -> Result<Vec<OutboxEntry>, IdentityError> {
    let rows = sqlx::query!(
        r#"select id, to_address::text as "to!", subject, key_id, nonce, ciphertext, created_at, expires_at,
                  delivered_at is not null as "delivered!"
             from mail_outbox
            where ($1::text is null or to_address = $1::text::citext) and expires_at > now()
            order by created_at desc, id desc limit $2"#,
        to.map(EmailAddress::as_str),
        limit.clamp(1, 1000)
    )
    .fetch_all(g.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let sealed = Sealed { key_id: r.key_id, nonce: r.nonce, ciphertext: r.ciphertext };
            let body = keys
                .open(&sealed, &aad(r.id))
                .ok()
                .and_then(|o| String::from_utf8(secrecy::ExposeSecret::expose_secret(&o.plaintext).to_vec()).ok())
                .unwrap_or_else(|| {
                    format!("[sealed under MFA key {}, which this process does not hold]", sealed.key_id)
                });
            OutboxEntry {
                id: r.id,
                to: r.to,
                subject: r.subject,
                body,
                created_at: r.created_at,
                expires_at: r.expires_at,
                delivered: r.delivered,
            }
        })
        .collect())
}

/// Marks messages delivered (an operator has them); the next sweep purges them.
pub async fn mark_delivered(g: &mut store::GlobalTx, ids: &[Uuid]) -> Result<u64, IdentityError> {
    let r =
        sqlx::query!("update mail_outbox set delivered_at = now() where id = any($1) and delivered_at is null", ids)
            .execute(g.conn())
            .await?;
    Ok(r.rows_affected())
}

/// Deletes delivered and expired messages. Run by the serve sweeper.
pub async fn purge(store: &Store) -> Result<u64, IdentityError> {
    let mut g = store.global_tx().await?;
    let r = sqlx::query!("delete from mail_outbox where delivered_at is not null or expires_at <= now()")
        .execute(g.conn())
        .await?;
    g.commit().await?;
    Ok(r.rows_affected())
}
