//! The first organisation of a fresh install, from configuration (`--bootstrap-organisation`,
//! `--bootstrap-owner-email`; like Keycloak's bootstrap admin): created on start unless it
//! exists, its owner invited by mail. Idempotent, also when nodes start together: the slug is
//! unique in the database, and whoever loses that race finds the organisation there.

use std::sync::Arc;

use identity::admin::founding;
use identity::directory::tenants::NewTenant;
use identity::signin::mail::{Mail, Mailer, OutboxMailer};
use identity::{EmailAddress, IdentityError, JoinPolicy, Slug};
use secrecy::ExposeSecret;

/// What the operator configured.
pub struct Bootstrap {
    pub slug: Slug,
    pub name: Option<String>,
    pub owner: EmailAddress,
}

impl Bootstrap {
    /// From `serve`'s flags (clap makes them come together).
    pub fn from_args(args: &crate::config::ServeArgs) -> Option<Self> {
        match (&args.bootstrap_organisation, &args.bootstrap_owner_email) {
            (Some(slug), Some(owner)) => {
                Some(Self { slug: slug.clone(), name: args.bootstrap_organisation_name.clone(), owner: owner.clone() })
            }
            _ => None,
        }
    }
}

/// Where the mail went, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// The configured mailer took it (SMTP, or the outbox when no SMTP server is configured).
    Mailer,
    /// SMTP refused it; it waits in the outbox instead.
    OutboxFallback,
}

/// Creates the organisation and invites its owner, unless it exists. The invitation token is
/// only in the mail (an SMTP message, or an outbox message sealed under the MFA key): never in
/// the log or on standard output, where a log collector would keep a credential.
///
/// # Errors
/// The database or the audit ledger failing; a mail that neither the mailer nor the outbox
/// takes (the organisation and invitation then exist, and the error says how to go on).
pub async fn run(
    store: &store::Store,
    b: &Bootstrap,
    mailer: &Arc<dyn Mailer>,
    outbox: &OutboxMailer,
    smtp: bool,
    accept_url: Option<&str>,
) -> anyhow::Result<()> {
    let new = NewTenant {
        slug: b.slug.clone(),
        name: b.name.clone().unwrap_or_else(|| b.slug.as_str().to_owned()),
        allowed_email_domains: Vec::new(),
        join_policy: JoinPolicy::AdminApproval,
    };
    let who = audit::Who::system("server:bootstrap");
    let founded = match founding::found(store, &who, &new, &b.owner).await {
        Ok(f) => f,
        // Found before creating, or by the unique constraint when another node was first.
        Err(IdentityError::Duplicate(_)) => {
            tracing::info!(
                organisation = b.slug.as_str(),
                "bootstrap organisation exists; nothing created (--bootstrap-organisation)"
            );
            return Ok(());
        }
        Err(e) => return Err(anyhow::Error::new(e).context("--bootstrap-organisation")),
    };
    let inv = &founded.owner_invitation.invitation;
    let (subject, text) = identity::admin::invitations::invitation_mail(
        &founded.tenant.name,
        &inv.role,
        founded.owner_invitation.token.expose_secret(),
        inv.expires_at,
        accept_url,
    );
    let mail = Mail { to: b.owner.clone(), subject, text };
    let delivered = match mailer.send(&mail).await {
        Ok(()) => Delivered::Mailer,
        Err(e) if smtp => {
            tracing::warn!(error = %e, "the owner invitation could not be sent over SMTP; queueing it in the outbox");
            outbox.send(&mail).await.map_err(|e| {
                anyhow::anyhow!(
                    "--bootstrap-organisation {}: created, but its owner invitation could not be mailed or queued: {e}",
                    b.slug.as_str()
                )
            })?;
            Delivered::OutboxFallback
        }
        Err(e) => {
            anyhow::bail!(
                "--bootstrap-organisation {}: created, but its owner invitation could not be queued: {e}",
                b.slug.as_str()
            )
        }
    };
    let via = match (delivered, smtp) {
        (Delivered::Mailer, true) => "smtp",
        _ => "outbox",
    };
    tracing::info!(
        organisation = founded.tenant.slug.as_str(),
        organisation_id = %founded.tenant.id,
        owner = %b.owner,
        invitation = %inv.id,
        expires_at = %inv.expires_at,
        delivered_via = via,
        "bootstrap organisation created; its owner invitation was mailed{}",
        if via == "outbox" { " to the outbox (read it with `countersign admin outbox --to <owner>`)" } else { "" }
    );
    Ok(())
}
