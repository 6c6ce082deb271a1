//! The state every request sees: the store, the domain services (authenticator, policy engine,
//! mailer, MFA keys) and the per-node caches and limiters of the plumbing.

use std::sync::Arc;
use std::time::Instant;

use identity::signin::tokens::TokenKey;

use crate::plumbing::client::TrustedProxies;
use crate::plumbing::session_cache::SessionCache;

#[derive(Clone, Debug)]
pub struct AppState {
    pub store: store::Store,
    pub proxies: TrustedProxies,
    pub started: Instant,
    pub auth: Arc<identity::signin::sessions::Authenticator>,
    pub sessions: SessionCache,
    /// Send cookies with `Secure` (off only for plain-HTTP local development).
    pub secure_cookies: bool,
    /// Per-client-address budget of the sign-in routes.
    pub sign_in_limiter: crate::plumbing::limits::SignInLimiter,
    /// Per-client-address budget of failed credentials (API keys, access and refresh tokens).
    pub credential_failures: crate::plumbing::limits::FailureLimiter,
    /// Refusal events (`auth.api_key_rejected`, `access.denied`), aggregated per organisation,
    /// kind and address per minute; its flusher writes the counts of closed windows.
    pub refusals: crate::plumbing::refusals::RefusalLog,
    /// Organisations' IP allowlists, cached per node and cleared by `NOTIFY`.
    pub allowlist: crate::plumbing::ip_allowlist::AllowlistCache,
    /// Outgoing mail (default: the `mail_outbox` table). Set with [`AppState::with_mailer`].
    pub mailer: Arc<dyn identity::signin::mail::Mailer>,
    /// Seals TOTP secrets at rest. Default: a key that lives only in this process; servers set
    /// the key files with [`AppState::with_mfa_keys`].
    pub mfa_keys: Arc<identity::signin::secret_box::SecretBox>,
    /// Route `GET /api/v1/dev/outbox` (development only).
    pub dev_outbox: bool,
    /// The mailer is the default outbox, sealing with `mfa_keys` (re-made when they change).
    default_mailer: bool,
    /// The policy engine (Cedar policies compiled into the binary, validated at start-up).
    pub authz: Arc<authz::Engine>,
    /// The audit checkpoint signing key, for regulator bundles served over HTTP (`None`: the
    /// bundle route answers 503). Servers set it with [`AppState::with_audit_key`].
    pub audit_key: Option<Arc<audit::CheckpointKey>>,
    /// Public halves of earlier audit keys (after a rotation): a bundle carries those that signed
    /// one of its checkpoints. Set with [`AppState::with_previous_audit_keys`].
    pub previous_audit_keys: audit::TrustedKeys,
    /// Files: blob storage, master keys, the link key and the upload limit. Default: a fresh
    /// temporary directory and keys that live only in this process; servers set theirs with
    /// [`AppState::with_files`].
    pub files: Arc<files::Files>,
    /// The origin people open this server at (`https://approvals.example.com`), for links in
    /// mail; `None`: mails carry tokens without a link. Set with [`AppState::with_public_url`].
    pub public_url: Option<String>,
    /// OpenID Connect sign-in: its HTTP client (no redirects) and providers' discovery cache.
    pub sso: Arc<identity::signin::oidc::Sso>,
    /// `serve --management-listen`: `/metrics` is answered only on the management listener
    /// ([`crate::management_router`]); the public one says 404. Health probes answer on both.
    pub metrics_on_management_only: bool,
}

impl AppState {
    /// State for one server process; starts the revocation listener.
    ///
    /// # Errors
    /// If the password hasher cannot be prepared.
    pub fn new(store: store::Store, proxies: TrustedProxies, key: TokenKey) -> Result<Self, identity::IdentityError> {
        // Two argon2 computations at a time per node (each ~19 MiB, one core).
        let hasher = identity::signin::passwords::Hasher::new(identity::signin::passwords::SERVER_THREADS)?;
        let sessions = SessionCache::default();
        sessions.spawn_listener(store.clone());
        let authz = authz::Engine::load().map_err(|e| identity::IdentityError::Internal(e.to_string()))?;
        let allowlist = crate::plumbing::ip_allowlist::AllowlistCache::default();
        allowlist.spawn_listener(store.clone());
        let refusals = crate::plumbing::refusals::RefusalLog::default();
        refusals.spawn_flusher(store.clone());
        let mfa_keys = Arc::new(identity::signin::secret_box::SecretBox::ephemeral());
        let files = files::Files::ephemeral().map_err(|e| identity::IdentityError::Internal(e.to_string()))?;
        Ok(Self {
            proxies,
            started: Instant::now(),
            auth: Arc::new(identity::signin::sessions::Authenticator { hasher, key, policy: Default::default() }),
            sessions,
            secure_cookies: true,
            sign_in_limiter: crate::plumbing::limits::SignInLimiter::default(),
            credential_failures: crate::plumbing::limits::FailureLimiter::default(),
            refusals,
            allowlist,
            mailer: Arc::new(identity::signin::mail::OutboxMailer::new(store.clone(), mfa_keys.clone())),
            mfa_keys,
            dev_outbox: false,
            default_mailer: true,
            authz: Arc::new(authz),
            audit_key: None,
            previous_audit_keys: audit::TrustedKeys::default(),
            files: Arc::new(files),
            public_url: None,
            sso: Arc::new(identity::signin::oidc::Sso::new()?),
            metrics_on_management_only: false,
            store,
        })
    }

    /// Applies configured sign-in limits (per-address budget, lockout and suspicious-login
    /// thresholds) in place of the defaults.
    #[must_use]
    pub fn with_limits(mut self, limits: crate::plumbing::limits::Limits) -> Self {
        self.sign_in_limiter = crate::plumbing::limits::SignInLimiter::new(limits.login);
        self.credential_failures = crate::plumbing::limits::FailureLimiter::new(limits.credential_failures);
        self.auth =
            Arc::new(identity::signin::sessions::Authenticator { policy: limits.policy, ..(*self.auth).clone() });
        self
    }

    #[must_use]
    pub fn with_mailer(mut self, mailer: Arc<dyn identity::signin::mail::Mailer>) -> Self {
        self.mailer = mailer;
        self.default_mailer = false;
        self
    }

    /// The MFA keys; they also seal the default outbox (which `dev_outbox` opens with them).
    #[must_use]
    pub fn with_mfa_keys(mut self, keys: identity::signin::secret_box::SecretBox) -> Self {
        self.mfa_keys = Arc::new(keys);
        if self.default_mailer {
            self.mailer =
                Arc::new(identity::signin::mail::OutboxMailer::new(self.store.clone(), self.mfa_keys.clone()));
        }
        self
    }

    #[must_use]
    pub fn with_audit_key(mut self, key: Arc<audit::CheckpointKey>) -> Self {
        self.audit_key = Some(key);
        self
    }

    #[must_use]
    pub fn with_previous_audit_keys(mut self, keys: audit::TrustedKeys) -> Self {
        self.previous_audit_keys = keys;
        self
    }

    #[must_use]
    pub fn with_files(mut self, files: files::Files) -> Self {
        self.files = Arc::new(files);
        self
    }

    /// The origin links in mail point at (no trailing slash).
    #[must_use]
    pub fn with_public_url(mut self, url: Option<String>) -> Self {
        self.public_url = url;
        self
    }

    /// Where an invitation is accepted in a browser (`None` without a public URL).
    #[must_use]
    pub fn invitation_url(&self) -> Option<String> {
        self.public_url.as_ref().map(|u| format!("{u}/invitations/accept"))
    }

    #[must_use]
    pub fn with_dev_outbox(mut self, on: bool) -> Self {
        self.dev_outbox = on;
        self
    }
}
