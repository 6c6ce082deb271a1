//! Mail and MFA key operations: choosing the mailer at start-up, `admin outbox`,
//! `admin rotate-mfa-key`.

use std::process::ExitCode;
use std::sync::Arc;

use identity::EmailAddress;
use identity::signin::mail::{Mailer, OutboxMailer, SmtpMailer};
use secrecy::ExposeSecret;
use store::Store;

use crate::config::{DbArgs, ServeArgs};
use crate::progress::Progress;
use crate::summary::{Summary, Verdict};

/// SMTP when `--smtp-url` is set, else the outbox table (bodies sealed under the MFA key).
pub fn mailer(
    store: &Store,
    args: &ServeArgs,
    keys: &identity::signin::secret_box::SecretBox,
) -> anyhow::Result<Arc<dyn Mailer>> {
    match &args.smtp_url {
        Some(url) => {
            let m = SmtpMailer::new(url.expose_secret(), &args.mail_from)
                .map_err(|e| anyhow::anyhow!("mail (COUNTERSIGN_SMTP_URL / --smtp-url, --mail-from): {e}"))?;
            tracing::info!(from = %args.mail_from, "mail goes out over SMTP");
            Ok(Arc::new(m))
        }
        None => {
            tracing::info!("no --smtp-url: mail is queued in the mail_outbox table (countersign admin outbox)");
            Ok(Arc::new(OutboxMailer::new(store.clone(), Arc::new(keys.clone()))))
        }
    }
}

/// Prints the queued mail (opened with the MFA key) and marks it delivered: the operator has it
/// now, and the serve sweeper purges it.
pub async fn outbox(store: &Store, db: &DbArgs, to: Option<&str>, limit: i64) -> anyhow::Result<ExitCode> {
    let to = to.map(EmailAddress::parse).transpose().map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    let keys = db.mfa_keys(crate::config::Generate::Never)?;
    let mut g = store.global_tx().await?;
    let mail = identity::signin::mail::outbox(&mut g, &keys, to.as_ref(), limit).await?;
    let ids: Vec<uuid::Uuid> = mail.iter().map(|m| m.id).collect();
    identity::signin::mail::mark_delivered(&mut g, &ids).await?;
    g.commit().await?;
    if mail.is_empty() {
        println!("the outbox is empty");
    }
    for m in mail {
        println!("--- {} to {} ({})", m.created_at.to_rfc3339(), m.to, m.id);
        println!("Subject: {}\n\n{}", m.subject, m.body.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

/// `admin rotate-mfa-key`: re-seals every TOTP secret under the current MFA key.
pub async fn rotate(store: &Store, db: &DbArgs, summary: &mut Summary) -> anyhow::Result<Verdict> {
    let keys = db.mfa_keys(crate::config::Generate::Never)?;
    let who = audit::Who::system("cli:rotate-mfa-key");
    let mut g = store.global_tx().await?;
    let bar = Progress::start("re-sealing TOTP secrets", "secrets", None);
    let n = identity::signin::mfa::rotate_all_with_progress(&mut g, &keys, &who, &mut |d, t| bar.items(d, t)).await?;
    g.commit().await?;
    drop(bar);
    summary.set("resealed", n);
    summary.set("key_id", keys.current_key_id());
    summary.say(format_args!("re-sealed {n} TOTP secret(s) under key {}", keys.current_key_id()));
    Ok(Verdict::Done)
}
