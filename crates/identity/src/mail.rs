//! Outgoing mail behind one trait. SMTP is an optional adapter; the default writes to the global
//! `mail_outbox` table (identity scope: no tenant transaction can read it), so a deployment needs
//! nothing but Postgres and an operator can still read what would have been sent.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use store::Store;
use uuid::Uuid;

use crate::{EmailAddress, IdentityError};

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

/// The default: mail lands in `mail_outbox`.
#[derive(Debug, Clone)]
pub struct OutboxMailer {
    store: Store,
}

impl OutboxMailer {
    #[must_use]
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl Mailer for OutboxMailer {
    fn send<'a>(&'a self, mail: &'a Mail) -> BoxFuture<'a, Result<(), IdentityError>> {
        Box::pin(async move {
            let mut g = self.store.global_tx().await?;
            sqlx::query!(
                "insert into mail_outbox (id, to_address, subject, body) values ($1, $2::text::citext, $3, $4)",
                Uuid::now_v7(),
                mail.to.as_str(),
                mail.subject,
                mail.text
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

/// A message as the outbox shows it (operators, dev endpoint).
#[derive(Debug, Clone, Serialize)]
pub struct OutboxEntry {
    pub id: Uuid,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The newest messages, optionally only those to `to`.
pub async fn outbox(
    g: &mut store::GlobalTx,
    to: Option<&EmailAddress>,
    limit: i64,
) -> Result<Vec<OutboxEntry>, IdentityError> {
    let rows = sqlx::query_as!(
        OutboxEntry,
        r#"select id, to_address::text as "to!", subject, body, created_at from mail_outbox
            where ($1::text is null or to_address = $1::text::citext)
            order by created_at desc, id desc limit $2"#,
        to.map(EmailAddress::as_str),
        limit.clamp(1, 1000)
    )
    .fetch_all(g.conn())
    .await?;
    Ok(rows)
}
