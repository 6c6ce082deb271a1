//! Command line and environment configuration. Every setting has a flag and an environment
//! variable; bad values are refused with the setting's name. Secrets are never printed.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use secrecy::SecretString;

#[derive(Parser)]
#[command(name = "countersign", version, about = "Security-first multi-tenant approvals platform")]
pub struct Cli {
    /// A TOML configuration file: one key per long flag name (`listen = "0.0.0.0:8080"`). The
    /// command line and the environment override it; secrets may be given as `<key>-file`.
    #[arg(long, env = "COUNTERSIGN_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
    /// Log output format.
    #[arg(long, env = "COUNTERSIGN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Args)]
pub struct DbArgs {
    /// Owner/administrator connection used for migrations. Without it, a private PostgreSQL
    /// cluster is started under --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = secret, global = true)]
    pub database_url: Option<SecretString>,
    /// Connection for the application role (default: DATABASE_URL with user countersign_app).
    #[arg(long, env = "COUNTERSIGN_APP_DATABASE_URL", hide_env_values = true, value_parser = secret, global = true)]
    pub app_database_url: Option<SecretString>,
    /// Password to set on the countersign_app role and to connect with.
    #[arg(long, env = "COUNTERSIGN_APP_DB_PASSWORD", hide_env_values = true, value_parser = secret, global = true)]
    pub app_db_password: Option<SecretString>,
    /// Where the embedded cluster and local state live.
    #[arg(long, env = "COUNTERSIGN_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// Ed25519 key that signs audit checkpoints (generated on first start; default
    /// <data-dir>/keys/audit-ed25519.key).
    #[arg(long, env = "COUNTERSIGN_AUDIT_KEY_FILE", global = true)]
    pub audit_key_file: Option<PathBuf>,
    /// Ed25519 key that signs access tokens; every node of one deployment must share it
    /// (generated on first start; default <data-dir>/keys/session-ed25519.key).
    #[arg(long, env = "COUNTERSIGN_SESSION_KEY_FILE", global = true)]
    pub session_key_file: Option<PathBuf>,
    /// Earlier session key file(s) whose tokens are still accepted until they expire, during a
    /// rotation (repeatable). Only the current --session-key-file signs.
    #[arg(
        long = "previous-session-key-file",
        env = "COUNTERSIGN_PREVIOUS_SESSION_KEY_FILES",
        value_delimiter = ',',
        global = true
    )]
    pub previous_session_key_files: Vec<PathBuf>,
    /// Earlier audit checkpoint key file(s) whose checkpoints still verify, after a rotation
    /// (repeatable). Only the current --audit-key-file signs.
    #[arg(
        long = "previous-audit-key-file",
        env = "COUNTERSIGN_PREVIOUS_AUDIT_KEY_FILES",
        value_delimiter = ',',
        global = true
    )]
    pub previous_audit_key_files: Vec<PathBuf>,
    /// AES-256 key that seals TOTP secrets at rest; every node of one deployment must share it
    /// (generated on first start; default <data-dir>/keys/mfa-aes256.key).
    #[arg(long, env = "COUNTERSIGN_MFA_KEY_FILE", global = true)]
    pub mfa_key_file: Option<PathBuf>,
    /// Earlier MFA key file(s) still accepted for opening secrets during a rotation (repeatable;
    /// `admin rotate-mfa-key` re-seals everything under the current key).
    #[arg(long = "mfa-old-key-file", env = "COUNTERSIGN_MFA_OLD_KEY_FILES", value_delimiter = ',', global = true)]
    pub mfa_old_key_files: Vec<PathBuf>,
    /// Where uploaded files are stored (encrypted): `s3://bucket/prefix` (credentials, region,
    /// endpoint from the usual AWS_* environment) or a directory (default: <data-dir>/blobs).
    #[arg(long, env = "COUNTERSIGN_BLOB_URL", global = true)]
    pub blob_url: Option<String>,
    /// Size of the application connection pool (1-1000).
    #[arg(long, env = "COUNTERSIGN_DB_MAX_CONNECTIONS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub db_max_connections: u32,
    /// Seconds this process's bypass/identity secret stays valid unless renewed (1-3600). The
    /// live process renews it every fifth of this; a killed process's secret dies after it.
    #[arg(long, env = "COUNTERSIGN_PROCESS_SECRET_LEASE", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub process_secret_lease: u64,
    /// Milliseconds a request waits for a database connection before it is answered 503 with
    /// Retry-After (100-60000): with the database down, callers learn it within this bound.
    #[arg(long, env = "COUNTERSIGN_DB_WAIT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=60_000), global = true)]
    pub db_wait_ms: u64,
}

#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Apply pending database migrations before serving (small installs). Without it, `serve`
    /// applies none and refuses a schema it cannot run against, naming `countersign migrate`.
    #[arg(long, env = "COUNTERSIGN_MIGRATE")]
    pub migrate: bool,
    /// Address to listen on.
    #[arg(long, env = "COUNTERSIGN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A second address for operators: /healthz, /readyz and /metrics only (plain HTTP), and the
    /// public listener then answers /metrics with 404. Keep it on a private interface.
    #[arg(long, env = "COUNTERSIGN_MANAGEMENT_LISTEN")]
    pub management_listen: Option<SocketAddr>,
    /// Comma-separated CIDRs of reverse proxies whose X-Forwarded-For is believed.
    #[arg(long, env = "COUNTERSIGN_TRUSTED_PROXIES", value_delimiter = ',', value_parser = cidr)]
    pub trusted_proxies: Vec<IpNet>,
    /// Seconds between audit checkpoint passes while events arrive (1-86400).
    #[arg(long, env = "COUNTERSIGN_CHECKPOINT_INTERVAL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub checkpoint_interval: u64,
    /// Send session cookies without `Secure` (only for plain-HTTP development on localhost).
    #[arg(long, env = "COUNTERSIGN_INSECURE_COOKIES")]
    pub insecure_cookies: bool,
    /// Sign-in attempts per client address per window, per server process (e.g. 10/15m, 100/1h).
    #[arg(long, env = "COUNTERSIGN_LOGIN_LIMIT", default_value = "10/15m")]
    pub login_limit: web::limits::LoginLimit,
    /// Failed logins before an account is locked (1-100); each further failure doubles the lock.
    #[arg(long, env = "COUNTERSIGN_LOCKOUT_AFTER", default_value = "5")]
    pub lockout_after: identity::signin::lockout::LockAfter,
    /// Distinct addresses failing against one account within an hour that raise
    /// auth.suspicious_login (2-1000).
    #[arg(long, env = "COUNTERSIGN_SUSPICIOUS_IPS", default_value = "5")]
    pub suspicious_ips: identity::signin::suspicious::SuspiciousIps,
    /// SMTP server for outgoing mail: smtp://host:port or smtps://user:pass@host:465. Without
    /// it, mail is written to the mail_outbox table (read it with `admin outbox`).
    #[arg(long, env = "COUNTERSIGN_SMTP_URL", hide_env_values = true, value_parser = secret)]
    pub smtp_url: Option<SecretString>,
    /// From address of outgoing mail.
    #[arg(long, env = "COUNTERSIGN_MAIL_FROM", default_value = "Countersign <no-reply@countersign.invalid>")]
    pub mail_from: String,
    /// Serve GET /api/v1/dev/outbox (every queued message, codes included): development only.
    #[arg(long, env = "COUNTERSIGN_DEV_OUTBOX")]
    pub dev_outbox: bool,
    /// Seconds between sweeps that end guest memberships past their valid_until (1-3600). Access
    /// already stops at valid_until on every request; the sweep makes the end explicit (status,
    /// audit event, revoked sessions) and opens one audited bypass per run, hence not too often.
    #[arg(long, env = "COUNTERSIGN_MEMBERSHIP_EXPIRY_INTERVAL", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub membership_expiry_interval: u64,
    /// Seconds between passes that recompute every audit chain (1-86400; the first runs 5 s
    /// after start). Each pass opens one audited bypass; its outcome is the "chains verified"
    /// figure of /security and the audit page, and a broken chain is logged at ERROR.
    #[arg(long, env = "COUNTERSIGN_CHAIN_WATCH_INTERVAL", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub chain_watch_interval: u64,
    /// Largest file upload in MiB (1-4096); a larger body is refused with 413 while it streams.
    #[arg(long, env = "COUNTERSIGN_MAX_UPLOAD_MIB", default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_upload_mib: u64,
    /// The address people open this server at, for links in mail (an invitation's accept link):
    /// `https://approvals.example.com` (http or https, no path beyond `/`, no query). Default:
    /// `http://<listen>` when listening on a loopback address, otherwise none (an invitation mail
    /// then carries its token and how to accept it through the API).
    #[arg(long, env = "COUNTERSIGN_PUBLIC_URL", value_parser = public_url)]
    pub public_url: Option<String>,
    /// Open client connections at most (16-100000); one more is answered 503 and closed.
    #[arg(long, env = "COUNTERSIGN_MAX_HTTP_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(16..=100_000))]
    pub max_http_connections: u64,
    /// Seconds a client may take to send a request head, or idle between requests (1-300).
    #[arg(long, env = "COUNTERSIGN_HEAD_TIMEOUT", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub head_timeout: u64,
    /// Seconds shutdown waits for requests in flight before closing them (0-300).
    #[arg(long, env = "COUNTERSIGN_SHUTDOWN_GRACE", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub shutdown_grace: u64,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key); read again on SIGHUP.
    #[arg(long, env = "COUNTERSIGN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert; read again on SIGHUP.
    #[arg(long, env = "COUNTERSIGN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// First start: the slug of an organisation to create unless one with it exists (with
    /// --bootstrap-owner-email, whose owner invitation is mailed). Idempotent: a later start, or
    /// another node starting at the same time, finds it and creates nothing.
    #[arg(long, env = "COUNTERSIGN_BOOTSTRAP_ORGANISATION", value_parser = slug, requires = "bootstrap_owner_email")]
    pub bootstrap_organisation: Option<identity::Slug>,
    /// The first owner of --bootstrap-organisation: their invitation goes out by mail (SMTP, or
    /// the outbox: `countersign admin outbox`).
    #[arg(long, env = "COUNTERSIGN_BOOTSTRAP_OWNER_EMAIL", value_parser = email, requires = "bootstrap_organisation")]
    pub bootstrap_owner_email: Option<identity::EmailAddress>,
    /// Display name of --bootstrap-organisation (1-200 characters; default: its slug).
    #[arg(long, env = "COUNTERSIGN_BOOTSTRAP_ORGANISATION_NAME", value_parser = organisation_name, requires = "bootstrap_organisation")]
    pub bootstrap_organisation_name: Option<String>,
}

impl ServeArgs {
    /// `--public-url`, or `http(s)://<bound address>` when listening on loopback.
    pub fn public_url(&self, bound: SocketAddr, tls: bool) -> Option<String> {
        let scheme = if tls { "https" } else { "http" };
        self.public_url.clone().or_else(|| bound.ip().is_loopback().then(|| format!("{scheme}://{bound}")))
    }

    /// The transport's bounds: connection limit, head timeout, shutdown grace, TLS.
    pub fn bounds(&self) -> anyhow::Result<web::transport::Bounds> {
        use std::time::Duration;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(web::tls::Tls::load(cert, key).map_err(|e| {
                anyhow::anyhow!("{e} (COUNTERSIGN_TLS_CERT / --tls-cert, COUNTERSIGN_TLS_KEY / --tls-key)")
            })?),
            _ => None,
        };
        Ok(web::transport::Bounds {
            max_connections: usize::try_from(self.max_http_connections).unwrap_or(usize::MAX),
            head_timeout: Duration::from_secs(self.head_timeout),
            shutdown_grace: Duration::from_secs(self.shutdown_grace),
            tls,
        })
    }

    pub fn limits(&self) -> web::limits::Limits {
        web::limits::Limits {
            login: self.login_limit,
            policy: identity::signin::sessions::LoginPolicy {
                lock_after: self.lockout_after,
                suspicious_ips: self.suspicious_ips,
            },
            ..web::limits::Limits::default()
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Seed demonstration organisations, then serve.
    Demo(ServeArgs),
    /// Apply database migrations and exit (as the owner, DATABASE_URL). `serve` applies none
    /// unless started with --migrate.
    Migrate,
    /// Write a new session-signing or audit-checkpoint key file (mode 0600; an existing file is
    /// never overwritten) and print its key id. See docs/OPERATIONS.md for rotation.
    Keygen(KeygenArgs),
    /// Verify, export and checkpoint the audit ledger.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Operator tasks.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Write docs/SECURITY.md and the README's security section from security/controls.toml,
    /// after checking that every test the manifest names exists.
    SecurityDocs(SecurityDocsArgs),
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script: `countersign completions bash > /etc/bash_completion.d/countersign`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
pub struct KeygenArgs {
    /// session (signs access tokens) or audit (signs audit checkpoints).
    #[arg(value_enum)]
    pub kind: KeyKind,
    /// The new key file; it must not exist.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KeyKind {
    Session,
    Audit,
}

impl KeyKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Session => "session-signing",
            Self::Audit => "audit-checkpoint",
        }
    }
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print every setting `serve` would run with (and where each came from: command line,
    /// environment, configuration file, secret file, default), secrets redacted; exit 2 on a bad
    /// value, naming it.
    Check(ServeArgs),
}

#[derive(clap::Args)]
pub struct SecurityDocsArgs {
    /// Write nothing; exit 1 when a document differs from what the manifest says.
    #[arg(long)]
    pub check: bool,
    /// The repository checkout (holds security/controls.toml).
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute every chain (or one tenant's) and check signed checkpoints. Exit status 3 and
    /// the tenant and first bad sequence number when anything was tampered with.
    Verify {
        /// Organisation slug or id (default: every organisation and the platform chain).
        #[arg(long)]
        tenant: Option<String>,
        /// Trusted public key file(s) (hex or PEM); default: this server's key.
        #[arg(long = "public-key")]
        public_keys: Vec<PathBuf>,
        /// Parallel readers (default: the number of CPU cores, 2 to 8). Each holds one database
        /// connection, on one shared snapshot.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
        workers: Option<u16>,
        #[command(flatten)]
        json: Json,
    },
    /// Export one organisation's events as CSV or NDJSON, or a regulator bundle.
    Export {
        #[arg(long)]
        tenant: String,
        /// csv or ndjson.
        #[arg(long, default_value = "ndjson")]
        format: String,
        /// Start of range, inclusive (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long, value_parser = instant)]
        from: Option<DateTime<Utc>>,
        /// End of range, exclusive (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long, value_parser = instant)]
        to: Option<DateTime<Utc>>,
        #[arg(long)]
        entity_type: Option<String>,
        #[arg(long)]
        action: Option<String>,
        /// Output file (default: standard output).
        #[arg(long, conflicts_with = "bundle", group = "destination")]
        out: Option<PathBuf>,
        /// Write a regulator bundle (events, checkpoints, public key, README, verifier) here.
        #[arg(long, group = "destination")]
        bundle: Option<PathBuf>,
        /// Print one JSON object on standard output when done (counts, or the error) instead of
        /// text; needs --out or --bundle, since the events would go to standard output.
        #[arg(long, requires = "destination")]
        json: bool,
    },
    /// Verify a regulator bundle offline (no database needed).
    VerifyBundle {
        dir: PathBuf,
        /// Trusted public key file(s) (hex or PEM; repeatable, e.g. the keys before and after a
        /// rotation); default: the keys the bundle carries (public-keys.pem).
        #[arg(long = "public-key")]
        public_keys: Vec<PathBuf>,
        #[command(flatten)]
        json: Json,
    },
    /// Sign a checkpoint for every chain whose head moved, now.
    Checkpoint,
    /// Print the checkpoint public key (PEM) and its key id.
    PublicKey,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Permanently remove soft-deleted records older than the retention period. The audit
    /// ledger is never touched.
    Retention {
        /// Days a soft-deleted record is kept before it is purged (1-36500).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        older_than_days: u32,
        #[command(flatten)]
        json: Json,
    },
    /// Create an organisation and print a one-time invitation for its first owner (the only
    /// way to an owner besides `demo`).
    CreateOrganisation {
        /// Display name (1-200 characters).
        #[arg(long)]
        name: String,
        /// Short name used to sign in: 1-63 of a-z, 0-9 and inner hyphens; must be unused.
        #[arg(long)]
        slug: String,
        /// The first owner's email address: the invitation (role owner) is for them.
        #[arg(long)]
        owner_email: String,
        /// Email domain whose people may ask to join (repeatable; default: none, invitations only).
        #[arg(long = "allowed-domain")]
        allowed_domains: Vec<String>,
    },
    /// Create, list and revoke an organisation's API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Print the newest messages of the mail outbox (mail is queued there when no SMTP server is
    /// configured).
    Outbox {
        /// Only messages to this address.
        #[arg(long)]
        to: Option<String>,
        /// At most this many (1-1000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
    },
    /// Re-seal every TOTP secret under the current MFA key (pass the previous key with
    /// --mfa-old-key-file). Run after installing a new --mfa-key-file.
    RotateMfaKey {
        #[command(flatten)]
        json: Json,
    },
    /// End every guest membership whose valid_until has passed and revoke its sessions now
    /// (`serve` also does this periodically).
    ExpireMemberships,
    /// Write a new file master key (<data-dir>/keys/blob-master/NNNN.key) and re-seal every
    /// organisation's file data keys under it. Older master key files still open what they
    /// sealed; once this reports success they seal nothing any more.
    RotateBlobKey {
        #[command(flatten)]
        json: Json,
    },
    /// Permanently remove files soft-deleted more than the retention period ago: the stored
    /// object is deleted, the record keeps its SHA-256 and `purged_at`, the ledger says so.
    PurgeFiles {
        /// Days a deleted file stays restorable (1-36500).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        older_than_days: u32,
        #[command(flatten)]
        json: Json,
    },
    /// Store the file of an attachment made by reference (before files were stored): the file
    /// at --file is streamed in with the same checks as an upload (type sniffed from content,
    /// size limit), encrypted, and the attachment then holds it; the ledger records the old
    /// reference and the file's SHA-256 (`file.uploaded`, `attachment.reference_stored`).
    AttachReference {
        /// The organisation (slug or id).
        #[arg(long)]
        tenant: String,
        /// The attachment's id (as `GET /api/v1/documents/{id}/attachments` lists it).
        #[arg(long)]
        attachment: uuid::Uuid,
        /// The file to store.
        #[arg(long)]
        file: std::path::PathBuf,
        /// Largest file accepted, in MiB (1-10240).
        #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=10_240))]
        max_upload_mib: u64,
    },
    /// Make a person a partner person (partner_admin or partner_agent) of one partner company
    /// in an organisation's partner programme (issue 17). Creates the user if the address is
    /// new. The partner id is the one `GET /api/v1/programme/partners` lists.
    AddPartnerMember {
        /// The vendor organisation (slug or id).
        #[arg(long)]
        tenant: String,
        /// The partner company's id.
        #[arg(long)]
        partner: uuid::Uuid,
        #[arg(long)]
        email: String,
        /// partner_admin or partner_agent.
        #[arg(long)]
        role: String,
    },
    /// Expire every deal registration whose protection window has ended (`serve` also does this
    /// periodically).
    ExpireDeals,
    /// Check that a WAL archive can restore a base backup: from the backup's start segment to the
    /// newest archived one, every segment present (per timeline, with its .history file), whole
    /// and really that segment; then `pg_verifybackup` on the base backup if it is installed.
    /// No database needed. Exit 0 complete, 5 incomplete (naming the first missing segment),
    /// 6 archive complete but the base backup fails pg_verifybackup.
    BackupCheck {
        /// The WAL archive directory (where `archive_command` copies segments).
        #[arg(long)]
        archive: PathBuf,
        /// A plain-format base backup (`pg_basebackup -Fp`: its backup_label / backup_manifest
        /// give the start). Default: the archive's newest backup history file, else its oldest segment.
        #[arg(long)]
        base_backup: Option<PathBuf>,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `--json` of the long commands (src/summary.rs).
#[derive(Args, Clone, Copy)]
pub struct Json {
    /// Print one JSON object on standard output when done (what was done and counted, or the
    /// error's code and message) instead of text; the exit status is the same.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; it is printed once and never stored in readable form.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// The role the key acts with (e.g. auditor, admin).
        #[arg(long)]
        role: String,
        /// Permission such as audit:read (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Days until the key expires (1-3650); default: no expiry.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_days: Option<u32>,
    },
    List {
        #[arg(long)]
        tenant: String,
    },
    Revoke {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        id: uuid::Uuid,
    },
}

/// RFC 3339, or a bare date meaning midnight UTC.
fn instant(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("'{s}' is not a date (YYYY-MM-DD) or RFC 3339 time"))
}

fn slug(s: &str) -> Result<identity::Slug, String> {
    identity::Slug::parse(s.trim()).map_err(|_| "use 1-63 of a-z, 0-9 and inner hyphens (e.g. acme)".to_owned())
}

fn email(s: &str) -> Result<identity::EmailAddress, String> {
    identity::EmailAddress::parse(s).map_err(|e| match e {
        identity::IdentityError::Invalid { reason, .. } => format!("not an email address: {reason}"),
        other => other.to_string(),
    })
}

fn organisation_name(s: &str) -> Result<String, String> {
    identity::directory::tenants::check_name(s).map(str::to_owned).map_err(|_| "must be 1-200 characters".to_owned())
}

fn secret(s: &str) -> Result<SecretString, String> {
    if s.trim().is_empty() { Err("must not be empty".into()) } else { Ok(SecretString::from(s.to_owned())) }
}

/// `--public-url`: an absolute http(s) origin, kept without a trailing slash.
fn public_url(s: &str) -> Result<String, String> {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    let Some(rest) = rest else {
        return Err("must start with https:// (or http:// for local use)".into());
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains(['/', '?', '#', ' ', '@']) || host.chars().any(char::is_control) {
        return Err("must be an origin such as https://approvals.example.com (no path, query or credentials)".into());
    }
    Ok(s.trim_end_matches('/').to_owned())
}

fn cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{s}' is not an IP address or CIDR (e.g. 10.0.0.0/8, ::1/128)"))
}

/// A server key file: where it is, and whether the operator named it (flag or environment).
///
/// Keys are generated only by `serve` and `demo`, and only at the default path under
/// `--data-dir` (first start). A path named explicitly must exist: a typo must not become a new
/// key (tokens no other node accepts, checkpoints no verifier knows). Every other command only
/// reads keys.
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub path: PathBuf,
    pub explicit: bool,
    /// What it is and how to set it, for error messages.
    pub what: &'static str,
}

/// Whether the command may generate a missing key file at its default path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generate {
    /// `serve` and `demo`.
    AtDefaultPath,
    /// Every other command.
    Never,
}

impl KeyFile {
    /// The 32-byte seed in the file (generated only as [`Generate`] allows).
    pub fn seed(&self, generate: Generate) -> anyhow::Result<[u8; 32]> {
        let create = generate == Generate::AtDefaultPath && !self.explicit;
        let loaded = if create { audit::load_or_create_seed(&self.path) } else { audit::load_seed(&self.path) };
        loaded.map_err(|e| self.error(&e))
    }

    fn error(&self, e: &dyn std::fmt::Display) -> anyhow::Error {
        let hint = match (self.path.exists(), self.explicit) {
            (true, _) => "",
            (false, true) => "; a key file named explicitly must exist (it is never generated)",
            (false, false) => "; `countersign serve` generates it at this default path on first start",
        };
        anyhow::anyhow!("{}: {e}{hint}", self.what)
    }
}

/// Earlier Ed25519 key files: seeds, of which only the public half is kept.
fn previous(paths: &[PathBuf], what: &str) -> anyhow::Result<Vec<ed25519_dalek::VerifyingKey>> {
    paths
        .iter()
        .map(|p| {
            let seed = audit::load_seed(p).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
            Ok(ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key())
        })
        .collect()
}

impl DbArgs {
    fn key_file(&self, explicit: Option<&PathBuf>, default: &str, what: &'static str) -> KeyFile {
        match explicit {
            Some(p) => KeyFile { path: p.clone(), explicit: true, what },
            None => KeyFile { path: self.data_dir.join("keys").join(default), explicit: false, what },
        }
    }

    pub fn audit_key(&self) -> KeyFile {
        self.key_file(
            self.audit_key_file.as_ref(),
            "audit-ed25519.key",
            "audit checkpoint key (COUNTERSIGN_AUDIT_KEY_FILE / --audit-key-file)",
        )
    }

    pub fn session_key(&self) -> KeyFile {
        self.key_file(
            self.session_key_file.as_ref(),
            "session-ed25519.key",
            "session key (COUNTERSIGN_SESSION_KEY_FILE / --session-key-file)",
        )
    }

    pub fn mfa_key(&self) -> KeyFile {
        self.key_file(
            self.mfa_key_file.as_ref(),
            "mfa-aes256.key",
            "MFA key (COUNTERSIGN_MFA_KEY_FILE / --mfa-key-file)",
        )
    }

    /// The public halves of the earlier session keys (`--previous-session-key-file`), which
    /// must exist.
    pub fn previous_session_keys(&self) -> anyhow::Result<Vec<ed25519_dalek::VerifyingKey>> {
        previous(&self.previous_session_key_files, "previous session key (--previous-session-key-file)")
    }

    /// The public halves of the earlier audit keys (`--previous-audit-key-file`), which must
    /// exist.
    pub fn previous_audit_keys(&self) -> anyhow::Result<Vec<ed25519_dalek::VerifyingKey>> {
        previous(&self.previous_audit_key_files, "previous audit key (--previous-audit-key-file)")
    }

    /// The MFA key box: the current key (generated only as `generate` allows) and the old keys
    /// (which must exist).
    pub fn mfa_keys(&self, generate: Generate) -> anyhow::Result<identity::signin::secret_box::SecretBox> {
        let current = self.mfa_key();
        let seed = current.seed(generate)?;
        let old: Vec<&std::path::Path> = self.mfa_old_key_files.iter().map(PathBuf::as_path).collect();
        identity::signin::secret_box::SecretBox::with_old_files(&seed, &old)
            .map_err(|e| anyhow::anyhow!("MFA key (--mfa-old-key-file / COUNTERSIGN_MFA_OLD_KEY_FILES): {e}"))
    }

    /// The file master keys' directory.
    pub fn blob_key_dir(&self) -> PathBuf {
        self.data_dir.join("keys").join("blob-master")
    }

    /// Where blobs live (the `--blob-url`, or <data-dir>/blobs).
    pub fn blob_storage(&self) -> anyhow::Result<files::Storage> {
        match &self.blob_url {
            Some(url) => files::Storage::from_url(url),
            None => files::Storage::local(&self.data_dir.join("blobs")),
        }
        .map_err(|e| anyhow::anyhow!("file storage (COUNTERSIGN_BLOB_URL / --blob-url): {e}"))
    }

    /// Everything the server needs for files; the keys are generated only as `generate` allows
    /// (at their default paths under --data-dir).
    pub fn files(&self, generate: Generate, max_upload_mib: u64) -> anyhow::Result<files::Files> {
        let dir = self.blob_key_dir();
        let keys = match generate {
            Generate::AtDefaultPath => files::Keyring::load_or_create(&dir),
            Generate::Never => files::Keyring::load(&dir),
        }
        .map_err(|e| anyhow::anyhow!("file master key: {e}"))?;
        let link = KeyFile {
            path: self.data_dir.join("keys").join("file-links-hmac.key"),
            explicit: false,
            what: "file link signing key",
        };
        Ok(files::Files {
            storage: self.blob_storage()?,
            keys,
            links: files::LinkKey::from_bytes(link.seed(generate)?),
            max_upload: max_upload_mib * 1024 * 1024,
        })
    }

    pub fn settings(&self) -> store::DbSettings {
        store::DbSettings {
            database_url: self.database_url.clone(),
            app_database_url: self.app_database_url.clone(),
            app_password: self.app_db_password.clone(),
            data_dir: self.data_dir.clone(),
            max_connections: self.db_max_connections,
            secret_lease: std::time::Duration::from_secs(self.process_secret_lease),
            db_wait: std::time::Duration::from_millis(self.db_wait_ms),
        }
    }
}
