//! `countersign`: serve, demo, migrate, audit, admin, security-docs.

mod audit_cmd;
mod backup_check;
mod bootstrap;
mod config;
mod config_file;
mod demo;
mod mfa_cmd;
mod progress;
mod security_docs;
mod summary;

use std::process::ExitCode;

use config::{Cli, Command, LogFormat, ServeArgs};
use tracing_subscriber::EnvFilter;

fn init_logging(format: LogFormat, server: bool) {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // A command's log lines are drawn around its progress bar (src/progress.rs); a server has no
    // bar, and its log lines go straight to standard error.
    let writer =
        if server { BoxMakeWriter::new(std::io::stderr) } else { BoxMakeWriter::new(progress::Stderr::writer) };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
        LogFormat::Pretty => builder.init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let root = <Cli as clap::CommandFactory>::command();
    let folded = match config_file::fold(&root, std::env::args_os().collect(), &|k| std::env::var(k).ok()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let matches = match root.clone().try_get_matches_from(&folded.args) {
        Ok(m) => m,
        Err(e) => e.exit(),
    };
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    if let Command::Config(config::ConfigCommand::Check(_)) = &cli.command {
        let check = matches.subcommand().and_then(|(_, m)| m.subcommand()).map(|(_, m)| m);
        let serve = root.find_subcommand("config").and_then(|c| c.find_subcommand("check"));
        if let (Some(m), Some(serve)) = (check, serve) {
            print!("{}", config_file::report(serve, &root, m, &folded));
        }
        return ExitCode::SUCCESS;
    }
    // A server's standard error is its log (JSON lines by default), so its last error is a log
    // event; a command's is for a person, so its error is one plain line. Never both.
    let server = matches!(cli.command, Command::Serve(_) | Command::Demo(_));
    init_logging(cli.log_format, server);
    match run(cli).await {
        Ok(code) => code,
        Err(e) if server => {
            tracing::error!(error = %format!("{e:#}"), "countersign stopped with an error");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = cli.db.settings();
    match cli.command {
        Command::Migrate => {
            let store = store::Store::open_migrating(&settings).await?;
            let r = store.readiness().await;
            println!("migrations current: schema version {:?}", r.schema_version);
            store.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen(args) => keygen(&args),
        Command::Audit(cmd) => audit_cmd::run(cmd, &cli.db).await,
        // Files only: no database is opened (the check runs where the archive is).
        Command::Admin(config::AdminCommand::BackupCheck { archive, base_backup, json }) => {
            backup_check::run(&archive, base_backup.as_deref(), json)
        }
        Command::Admin(cmd) => audit_cmd::admin(cmd, &cli.db).await,
        Command::SecurityDocs(args) => security_docs::run(&args),
        // Answered before logging starts (main).
        Command::Config(_) => Ok(ExitCode::SUCCESS),
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics when its writer fails (`… | head`).
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "countersign", &mut script);
            let mut out = std::io::stdout().lock();
            match std::io::Write::write_all(&mut out, &script).and_then(|()| std::io::Write::flush(&mut out)) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                // The reader went away (`… | head`): nothing more to say.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
                Err(e) => Err(anyhow::anyhow!("writing the completion script: {e}")),
            }
        }
        Command::Serve(args) => {
            let keys = ServerKeys::load(&cli.db, &args)?;
            // Plain `serve` applies no migration: a schema it cannot run against is refused,
            // naming `countersign migrate`. `--migrate` does both (small installs).
            let migrations = if args.migrate { store::Migrations::Apply } else { store::Migrations::Require };
            let store = store::Store::open_as(&settings, migrations).await?;
            serve(store, args, keys, None).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            let keys = ServerKeys::load(&cli.db, &args)?;
            let store = store::Store::open_migrating(&settings).await?;
            let seeded = match demo::seed(&store).await {
                Ok(s) => s,
                Err(e) => {
                    store.shutdown().await;
                    return Err(e);
                }
            };
            serve(store, args, keys, Some(seeded)).await.map(|()| ExitCode::SUCCESS)
        }
    }
}

/// The keys a server signs and seals with, loaded before anything else starts. Missing ones are
/// generated only at their default paths (first start); a path named explicitly must exist.
struct ServerKeys {
    audit: std::sync::Arc<audit::CheckpointKey>,
    /// Public halves of earlier checkpoint keys: what they signed still verifies.
    previous_audit: Vec<ed25519_dalek::VerifyingKey>,
    session: identity::signin::tokens::TokenKey,
    mfa: identity::signin::secret_box::SecretBox,
    files: files::Files,
}

impl ServerKeys {
    fn load(db: &config::DbArgs, args: &ServeArgs) -> anyhow::Result<Self> {
        // Every explicitly named file first, so a typo in one generates none of the others.
        for k in [db.audit_key(), db.session_key(), db.mfa_key()].iter().filter(|k| k.explicit) {
            k.seed(config::Generate::Never)?;
        }
        let g = config::Generate::AtDefaultPath;
        let session = identity::signin::tokens::TokenKey::from_seed(db.session_key().seed(g)?)
            .with_previous(db.previous_session_keys()?);
        Ok(Self {
            audit: std::sync::Arc::new(audit::CheckpointKey::from_seed(db.audit_key().seed(g)?)),
            previous_audit: db.previous_audit_keys()?,
            session,
            mfa: db.mfa_keys(g)?,
            files: db.files(g, args.max_upload_mib)?,
        })
    }
}

async fn serve(
    store: store::Store,
    args: ServeArgs,
    keys: ServerKeys,
    demo: Option<demo::Seeded>,
) -> anyhow::Result<()> {
    let ServerKeys { audit: key, previous_audit, session: token_key, mfa: mfa_keys, files } = keys;
    tracing::info!(
        session_key_id = token_key.kid(),
        previous_session_keys = ?token_key.previous_kids(),
        audit_key_id = key.key_id(),
        previous_audit_keys = ?previous_audit.iter().map(audit::key_id).collect::<Vec<_>>(),
        "signing keys"
    );
    tracing::info!(storage = ?files.storage, max_upload = files.max_upload, "files");
    let bounds = match args.bounds() {
        Ok(b) => b,
        Err(e) => {
            store.shutdown().await;
            return Err(e);
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            store.shutdown().await;
            anyhow::bail!("cannot listen on {} (COUNTERSIGN_LISTEN / --listen): {e}", args.listen);
        }
    };
    let management = match args.management_listen {
        Some(at) => match tokio::net::TcpListener::bind(at).await {
            Ok(l) => Some(l),
            Err(e) => {
                store.shutdown().await;
                anyhow::bail!("cannot listen on {at} (COUNTERSIGN_MANAGEMENT_LISTEN / --management-listen): {e}");
            }
        },
        None => None,
    };
    let addr = listener.local_addr()?;
    let mut state =
        web::AppState::new(store.clone(), web::TrustedProxies::new(args.trusted_proxies.clone()), token_key)?
            .with_limits(args.limits())
            .with_audit_key(key.clone())
            .with_previous_audit_keys(audit::TrustedKeys::of(previous_audit.iter().copied()))
            .with_files(files)
            .with_public_url(args.public_url(addr, bounds.tls.is_some()));
    state.secure_cookies = !args.insecure_cookies;
    state.metrics_on_management_only = management.is_some();
    let outbox = identity::signin::mail::OutboxMailer::new(store.clone(), std::sync::Arc::new(mfa_keys.clone()));
    let mailer = match mfa_cmd::mailer(&store, &args, &mfa_keys) {
        Ok(mailer) => mailer,
        Err(e) => {
            store.shutdown().await;
            return Err(e);
        }
    };
    let state = state.with_mailer(mailer.clone()).with_mfa_keys(mfa_keys).with_dev_outbox(args.dev_outbox);
    // Before the first request is served: a probe that sees the server ready sees the organisation.
    if let Some(b) = bootstrap::Bootstrap::from_args(&args) {
        let smtp = args.smtp_url.is_some();
        let accept = state.invitation_url();
        if let Err(e) = bootstrap::run(&store, &b, &mailer, &outbox, smtp, accept.as_deref()).await {
            store.shutdown().await;
            return Err(e);
        }
    }
    tracing::info!(%addr, tls = bounds.tls.is_some(), "countersign listening");
    if let Some(tls) = bounds.tls.clone() {
        spawn_tls_reloader(tls);
    }
    if let Some(seeded) = demo {
        seeded.print(addr);
    }
    let management = management.map(|l| {
        let at = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(addr = %at, "management listening (/healthz, /readyz, /metrics)");
        let bounds = web::transport::Bounds { max_connections: 64, ..web::transport::Bounds::default() };
        tokio::spawn(web::serve_with(l, web::management_router(state.clone()), shutdown_signal(), bounds))
    });
    let app = web::router(state);
    let checkpointer = audit::checkpoint::spawn_checkpointer(
        store.clone(),
        key.clone(),
        std::time::Duration::from_secs(args.checkpoint_interval),
    );
    let expiry =
        spawn_membership_expiry(store.clone(), std::time::Duration::from_secs(args.membership_expiry_interval));
    let watch = audit::watch::spawn(
        store.clone(),
        std::sync::Arc::new(audit::TrustedKeys::of(std::iter::once(key.public()).chain(previous_audit))),
        std::time::Duration::from_secs(5).min(std::time::Duration::from_secs(args.chain_watch_interval)),
        std::time::Duration::from_secs(args.chain_watch_interval),
    );
    let served = web::serve_with(listener, app, shutdown_signal(), bounds).await;
    tracing::info!("shutting down");
    if let Some(m) = management {
        m.abort();
    }
    checkpointer.abort();
    expiry.abort();
    watch.abort();
    // Sign what this process wrote since the last pass, so no event leaves unanchored.
    if let Err(e) = audit::checkpoint::checkpoint_dirty(&store, &key).await {
        tracing::warn!(error = %e, "final audit checkpoint failed");
    }
    store.shutdown().await;
    served.map_err(Into::into)
}

/// `countersign keygen`: a new key file (0600), never over an existing one.
fn keygen(args: &config::KeygenArgs) -> anyhow::Result<ExitCode> {
    let seed = audit::create_seed(&args.out).map_err(|e| anyhow::anyhow!("keygen: {e}"))?;
    let key_id = match args.kind {
        config::KeyKind::Session => identity::signin::tokens::TokenKey::from_seed(seed).kid().to_owned(),
        config::KeyKind::Audit => audit::CheckpointKey::from_seed(seed).key_id().to_owned(),
    };
    println!("{key_id}");
    eprintln!("wrote a new {} key to {} (key id {key_id})", args.kind.name(), args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// Reads the TLS certificate and key again on every SIGHUP (a renewed certificate without a
/// restart); a pair that does not load leaves the current one in service.
fn spawn_tls_reloader(tls: std::sync::Arc<web::tls::Tls>) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return tracing::warn!("cannot listen for SIGHUP: the TLS certificate is read only at start");
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate reload failed; the previous one stays in service")
                }
            }
        }
    });
}

/// Ends guest memberships past their `valid_until` every `every` (they already stop
/// authenticating at that instant; this records the end and revokes their sessions everywhere).
fn spawn_membership_expiry(store: store::Store, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match identity::admin::guest_expiry::expire_due(&store).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(ended = n, "guest memberships expired"),
                Err(e) => tracing::warn!(error = %e, "membership expiry sweep failed"),
            }
            // Outbox mail holds codes and invitation tokens: gone once delivered or expired.
            match identity::signin::mail::purge(&store).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "delivered or expired outbox mail purged"),
                Err(e) => tracing::warn!(error = %e, "outbox purge failed"),
            }
            // Deal registrations whose protection window has ended (issue 17); reads already
            // show them expired, this records it (audited) in each organisation.
            match programs::deals::expire_due(&store).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "deal registration protections expired"),
                Err(e) => tracing::warn!(error = %e, "deal expiry sweep failed"),
            }
            // Idempotency keys are remembered for 24 hours.
            match store::idempotency::purge_expired(&store).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "expired idempotency keys purged"),
                Err(e) => tracing::warn!(error = %e, "idempotency key purge failed"),
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
