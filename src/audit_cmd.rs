//! `countersign audit …` and `countersign admin …`: operator commands on the ledger and data
//! lifecycle. Cross-tenant work goes through a logged bypass, which the ledger itself records.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use audit::export::{ExportFilter, Format};
use audit::{CheckpointKey, TrustedKeys, verify};
use store::{Store, TenantId};

use crate::config::{AdminCommand, ApiKeyCommand, AuditCommand, DbArgs, Generate, KeyFile};

/// Exit status when the ledger (or a bundle) shows tampering: a chain that does not recompute, or
/// a checkpoint whose signature fails under the key it names.
pub const TAMPERED: u8 = 3;
/// Exit status when nothing was found wrong but some checkpoints are signed by keys this
/// verifier does not hold (named in the output), so they could not be checked.
pub const UNVERIFIED: u8 = 4;

pub async fn run(cmd: AuditCommand, db: &DbArgs) -> anyhow::Result<ExitCode> {
    if let AuditCommand::VerifyBundle { dir, public_keys } = &cmd {
        return verify_bundle(dir, public_keys);
    }
    let key = db.audit_key();
    let previous = db.previous_audit_keys()?;
    let store = Store::open(&db.settings()).await?;
    let result = run_with_store(cmd, &store, &key, &previous).await;
    store.shutdown().await;
    result
}

/// The checkpoint key, which must exist: only `serve` and `demo` generate one.
fn signing_key(key: &KeyFile) -> anyhow::Result<CheckpointKey> {
    Ok(CheckpointKey::from_seed(key.seed(Generate::Never)?))
}

async fn run_with_store(
    cmd: AuditCommand,
    store: &Store,
    key: &KeyFile,
    previous: &[ed25519_dalek::VerifyingKey],
) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { tenant, public_keys, workers } => {
            let keys = trusted_keys(key, previous, &public_keys)?;
            let mut opts = verify::Options::default();
            if let Some(w) = workers {
                opts.workers = usize::from(w);
            }
            let mut progress = |n: u64, t: Duration| {
                let rate = n as f64 / t.as_secs_f64().max(1e-9);
                eprintln!("verified {n} events ({rate:.0}/s)");
            };
            let report = match tenant {
                Some(t) => {
                    let id = resolve(store, &t).await?;
                    verify::verify_tenant(store, id, &keys, opts, &mut progress).await?
                }
                None => verify::verify_all(store, "cli:audit-verify", &keys, opts, &mut progress).await?,
            };
            Ok(print_report(&report))
        }
        AuditCommand::Export { tenant, format, from, to, entity_type, action, out, bundle } => {
            let id = resolve(store, &tenant).await?;
            let format: Format = format.parse().context("--format")?;
            let filter = ExportFilter { from, to, entity_type, entity_id: None, action };
            let mut tx = store.tenant_tx(id).await?;
            if let Some(dir) = bundle {
                let key = signing_key(key)?;
                // The bundle should end on a signed head: sign one now if the head moved.
                audit::checkpoint::checkpoint_tenant(&mut tx, &key).await?;
                let slug = identity::directory::tenants::current(&mut tx).await?.slug;
                let previous = TrustedKeys::of(previous.iter().copied());
                let m = audit::export::write_bundle(&mut tx, &slug, &filter, &key, &previous, &dir).await?;
                tx.commit().await?;
                eprintln!(
                    "bundle written to {}: {} events, {} checkpoints, key(s) {}",
                    dir.display(),
                    m.events,
                    m.checkpoints,
                    m.key_ids.join(", ")
                );
                if !m.missing_key_ids.is_empty() {
                    eprintln!(
                        "warning: checkpoints in the bundle are signed by key(s) {} that were not given \
                         (--previous-audit-key-file): the bundle does not carry them, and its verifiers will \
                         report those checkpoints as not verified",
                        m.missing_key_ids.join(", ")
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let started = std::time::Instant::now();
            let rows = match out {
                Some(path) => {
                    let mut f = std::io::BufWriter::new(
                        std::fs::File::create(&path).with_context(|| format!("--out {}", path.display()))?,
                    );
                    let n = audit::export::export_tenant(
                        &mut tx,
                        &filter,
                        format,
                        &mut audit::export::FnSink(|b: &[u8]| f.write_all(b)),
                    )
                    .await?;
                    f.flush()?;
                    n
                }
                None => {
                    // Chunks are ~64 KiB, so locking stdout per chunk costs nothing.
                    audit::export::export_tenant(
                        &mut tx,
                        &filter,
                        format,
                        &mut audit::export::FnSink(|b: &[u8]| std::io::stdout().write_all(b)),
                    )
                    .await?
                }
            };
            tx.commit().await?;
            eprintln!("exported {rows} events in {:.2}s", started.elapsed().as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint => {
            let key = signing_key(key)?;
            let mut tx = store.bypass("cli:audit-checkpoint", "sign audit checkpoints on demand").await?;
            let cps = audit::checkpoint::checkpoint_all(&mut tx, &key).await?;
            tx.commit().await?;
            for c in &cps {
                println!("signed {} seq {} hash {}", c.chain, c.seq, hex_short(&c.hash));
            }
            println!("{} checkpoint(s) signed with key {}", cps.len(), key.key_id());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::PublicKey => {
            let key = signing_key(key)?;
            println!("# key id {}", key.key_id());
            print!("{}", audit::public_pem(&key.public())?);
            Ok(ExitCode::SUCCESS)
        }
        // Normally answered by `run` before a database is opened; correct here too.
        AuditCommand::VerifyBundle { dir, public_keys } => verify_bundle(&dir, &public_keys),
    }
}

pub async fn admin(cmd: AdminCommand, db: &DbArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&db.settings()).await?;
    let result = async {
        match cmd {
            AdminCommand::Retention { older_than_days } => {
                let mut tx = store.bypass("cli:retention", "purge soft-deleted records past retention").await?;
                let who = audit::Who::system("cli:retention");
                let purged =
                    identity::directory::retention::sweep(&mut tx, &who, chrono::Duration::days(i64::from(older_than_days)))
                        .await?;
                tx.commit().await?;
                println!(
                    "purged {} membership(s) and {} department(s) deleted more than {older_than_days} day(s) ago; audit ledger untouched",
                    purged.memberships, purged.departments
                );
                Ok(ExitCode::SUCCESS)
            }
            AdminCommand::CreateOrganisation { name, slug, owner_email, allowed_domains } => {
                create_organisation(&store, &name, &slug, &owner_email, allowed_domains).await
            }
            AdminCommand::ApiKey(cmd) => api_key(&store, cmd).await,
            AdminCommand::Outbox { to, limit } => crate::mfa_cmd::outbox(&store, db, to.as_deref(), limit).await,
            AdminCommand::RotateMfaKey => crate::mfa_cmd::rotate(&store, db).await,
            AdminCommand::RotateBlobKey => {
                let ring = files::Keyring::load(&db.blob_key_dir())?;
                let id = ring.add_next()?;
                let who = audit::Who::system("cli:rotate-blob-key");
                let mut tx = store.bypass("cli:rotate-blob-key", "re-seal file data keys under a new master key").await?;
                let n = files::keys::rewrap_all(&mut tx, &ring, &who).await?;
                tx.commit().await?;
                println!("re-sealed {n} file data key(s) under master key {id}; older master key files open nothing now");
                Ok(ExitCode::SUCCESS)
            }
            AdminCommand::PurgeFiles { older_than_days } => {
                let storage = db.blob_storage()?;
                let who = audit::Who::system("cli:purge-files");
                let mut tx = store.bypass("cli:purge-files", "purge files deleted past retention").await?;
                let n = files::blobs::purge(&mut tx, &storage, &who, chrono::Duration::days(i64::from(older_than_days))).await?;
                tx.commit().await?;
                println!("purged {n} file(s) deleted more than {older_than_days} day(s) ago; their records and ledger events remain");
                Ok(ExitCode::SUCCESS)
            }
            AdminCommand::AttachReference { tenant, attachment, file, max_upload_mib } => {
                attach_reference(&store, db, &tenant, attachment, &file, max_upload_mib).await
            }
            AdminCommand::ExpireMemberships => {
                let ended = identity::admin::guest_expiry::expire_due(&store).await?;
                println!("ended {ended} membership(s) past valid_until; their sessions are revoked");
                Ok(ExitCode::SUCCESS)
            }
            AdminCommand::AddPartnerMember { tenant, partner, email, role } => {
                add_partner_member(&store, &tenant, partner, &email, &role).await
            }
            // Normally answered by `main` before a database is opened; correct here too.
            AdminCommand::BackupCheck { archive, base_backup, json } => {
                crate::backup_check::run(&archive, base_backup.as_deref(), json)
            }
            AdminCommand::ExpireDeals => {
                let n = programs::deals::expire_due(&store).await?;
                println!("expired {n} deal registration(s) past their protection window");
                Ok(ExitCode::SUCCESS)
            }
        }
    }
    .await;
    store.shutdown().await;
    result
}

/// `admin attach-reference`: streams `file` into the organisation's encrypted storage and makes
/// the by-reference attachment hold it. Asked first (nothing is stored for an unknown attachment
/// or one that already holds a file) and again when recorded; the stored object is removed if
/// recording fails.
async fn attach_reference(
    store: &Store,
    db: &DbArgs,
    tenant: &str,
    attachment: uuid::Uuid,
    file: &Path,
    max_upload_mib: u64,
) -> anyhow::Result<ExitCode> {
    let tenant = resolve(store, tenant).await?;
    let ring = files::Keyring::load(&db.blob_key_dir())?;
    let storage = db.blob_storage()?;
    let mut tx = store.tenant_tx(tenant).await?;
    let row = approvals::attachments::reference(&mut tx, attachment).await?.ok_or_else(|| {
        anyhow::anyhow!("--attachment {attachment}: no attachment by reference with this id in this organisation")
    })?;
    let key = files::keys::current(&mut tx, &ring).await?;
    tx.commit().await?;

    let name = files::FileName::sanitise(&row.name);
    let stored = files::upload::put_path(&storage, &key, name, file, max_upload_mib * 1024 * 1024)
        .await
        .with_context(|| format!("--file {}", file.display()))?;
    let recorded = async {
        let who = audit::Who::system("cli:attach-reference");
        let permit = authz::Permit::operator(authz::Action::DocumentEdit, row.document_id);
        let mut tx = store.tenant_tx(tenant).await?;
        let blob = files::blobs::record_for(&mut tx, &permit, row.document_id, &who, &stored, row.added_by).await?;
        let new = approvals::attachments::NewFile {
            blob_id: blob.id,
            name: &blob.name,
            media_type: &blob.media_type,
            sha256: &stored.sha256,
            visibility: row.visibility,
        };
        approvals::attachments::store_reference(&mut tx, &permit, &who, &row, &new).await?;
        tx.commit().await?;
        Ok::<_, anyhow::Error>(blob)
    }
    .await;
    match recorded {
        Ok(blob) => {
            println!(
                "attachment {attachment} now holds file {} ({} bytes, {}, sha256 {}); it was a reference to {}",
                blob.id, blob.size, blob.media_type, blob.sha256, row.reference
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if let Err(rm) = storage.remove(stored.tenant, stored.id).await {
                eprintln!("removing the stored object {} failed: {rm}", stored.id);
            }
            Err(e)
        }
    }
}

fn hex_short(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}

/// The keys `audit verify` trusts: the `--public-key` files, else this server's key if it is
/// here and its earlier keys (`--previous-audit-key-file`, after a rotation). Verification never writes a key: without one, the chains are still recomputed and the
/// checkpoints reported as unverified, naming their key ids.
fn trusted_keys(
    key: &KeyFile,
    previous: &[ed25519_dalek::VerifyingKey],
    extra: &[PathBuf],
) -> anyhow::Result<TrustedKeys> {
    let mut keys = Vec::new();
    for p in extra {
        let text = std::fs::read_to_string(p).with_context(|| format!("--public-key {}", p.display()))?;
        keys.push(TrustedKeys::parse_public(&text).with_context(|| format!("--public-key {}", p.display()))?);
    }
    if keys.is_empty() {
        if key.path.exists() || key.explicit {
            keys.push(signing_key(key)?.public());
            keys.extend(previous.iter().copied());
        } else if !previous.is_empty() {
            keys.extend(previous.iter().copied());
        } else {
            eprintln!(
                "note: no checkpoint key at {} and no --public-key: checkpoint signatures cannot be checked \
                 (run where the server's data directory is, or pass --audit-key-file or --public-key)",
                key.path.display()
            );
        }
    }
    Ok(TrustedKeys::of(keys))
}

/// A slug or a UUID naming an active organisation.
async fn add_partner_member(
    store: &Store,
    tenant: &str,
    partner: uuid::Uuid,
    email: &str,
    role: &str,
) -> anyhow::Result<ExitCode> {
    let role: authz::Role = role.parse().map_err(|e| anyhow::anyhow!("--role: {e}"))?;
    if !role.is_partner_person() {
        anyhow::bail!("--role: expected partner_admin or partner_agent");
    }
    let email = identity::EmailAddress::parse(email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let id = resolve(store, tenant).await?;
    let who = audit::Who::system("cli:add-partner-member");
    // The partner first: a wrong id creates no account.
    let mut tx = store.program_tx(id, store::ProgramScope::Vendor).await?;
    match programs::partners::get(&mut tx, partner).await {
        Ok(_) => {}
        Err(programs::ProgramError::NotFound) => {
            anyhow::bail!("--partner {partner}: no such partner in organisation {tenant}")
        }
        Err(e) => return Err(e.into()),
    }
    let mut g = store.global_tx().await?;
    let user = match identity::directory::users::find_by_email(&mut g, &email).await? {
        Some(u) => u,
        None => identity::directory::users::create(&mut g, &who, &email, email.as_str()).await?,
    };
    g.commit().await?;
    let permit = authz::Permit::operator(authz::Action::ProgramPartnersManage, id.as_uuid());
    let membership = programs::partners::add_member(&mut tx, &who, &permit, partner, user.id, role).await?;
    tx.commit().await?;
    println!("{} is now {role} of partner {partner} (membership {membership})", email.as_str());
    Ok(ExitCode::SUCCESS)
}

async fn resolve(store: &Store, tenant: &str) -> anyhow::Result<TenantId> {
    if let Ok(id) = tenant.parse::<TenantId>() {
        let mut tx = store.tenant_tx(id).await?;
        let found = identity::directory::tenants::current(&mut tx).await.is_ok();
        tx.commit().await?;
        return if found { Ok(id) } else { anyhow::bail!("--tenant {tenant}: no such organisation") };
    }
    let mut g = store.global_tx().await?;
    let id = g.resolve_tenant(tenant).await?;
    g.commit().await?;
    id.ok_or_else(|| anyhow::anyhow!("--tenant {tenant}: no such organisation"))
}

/// One line per chain: `ok`, `BROKEN` (tampering: exit 3) or `UNVERIFIED` (checkpoints by a key
/// not held, nothing found wrong: exit 4).
fn print_report(report: &verify::Report) -> ExitCode {
    for c in &report.chains {
        match (&c.first_break, c.unknown_keys.as_slice()) {
            (Some(b), _) => println!("BROKEN  {} ({}) at seq {}: {}", c.label, c.chain, b.seq, b.problem),
            (None, []) => {
                println!("ok      {} ({}): {} events, {} checkpoints", c.label, c.chain, c.events, c.checkpoints);
            }
            (None, unknown) => {
                for u in unknown {
                    println!(
                        "UNVERIFIED {} ({}): {} checkpoint(s) from seq {} are signed by key {}, which this verifier \
                         does not hold; their signatures were not checked (the chain itself recomputes: {} events)",
                        c.label, c.chain, u.checkpoints, u.first_seq, u.key_id, c.events
                    );
                }
            }
        }
    }
    let rate = report.events as f64 / (report.elapsed_ms.max(1) as f64 / 1000.0);
    println!(
        "{} chains, {} events verified in {} ms ({rate:.0} events/s)",
        report.chains.len(),
        report.events,
        report.elapsed_ms
    );
    if !report.ok() {
        eprintln!("audit ledger verification FAILED: {} chain(s) broken", report.broken().count());
        ExitCode::from(TAMPERED)
    } else if !report.verified() {
        eprintln!(
            "audit ledger NOT VERIFIED: no tampering found, but {} chain(s) carry checkpoints signed by keys not held \
             here (pass the signer's public key with --public-key)",
            report.unverified().count()
        );
        ExitCode::from(UNVERIFIED)
    } else {
        ExitCode::SUCCESS
    }
}

fn verify_bundle(dir: &Path, public_keys: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let keys = if public_keys.is_empty() {
        let keys = audit::bundle::carried_keys(dir).with_context(|| format!("bundle {} public key", dir.display()))?;
        eprintln!(
            "note: trusting the bundle's own public key(s) (key id {}); pass --public-key to pin keys obtained \
             independently",
            keys.ids().collect::<Vec<_>>().join(", ")
        );
        keys
    } else {
        let mut keys = Vec::new();
        for p in public_keys {
            let text = std::fs::read_to_string(p).with_context(|| format!("--public-key {}", p.display()))?;
            keys.push(TrustedKeys::parse_public(&text).with_context(|| format!("--public-key {}", p.display()))?);
        }
        TrustedKeys::of(keys)
    };
    let report = audit::bundle::verify_bundle(dir, &keys).with_context(|| format!("bundle {}", dir.display()))?;
    Ok(print_report(&report))
}

/// `admin create-organisation`: validated like the domain validates (slug, name, email,
/// domains); a taken slug is refused with a non-zero exit; the owner's one-time invitation token
/// goes to standard output (once: only its SHA-256 is stored).
async fn create_organisation(
    store: &Store,
    name: &str,
    slug: &str,
    owner_email: &str,
    allowed_domains: Vec<String>,
) -> anyhow::Result<ExitCode> {
    use identity::directory::tenants;
    use identity::{EmailAddress, JoinPolicy, Slug};
    let slug_value = Slug::parse(slug).map_err(|e| anyhow::anyhow!("--slug {slug}: {e}"))?;
    let owner = EmailAddress::parse(owner_email).map_err(|e| anyhow::anyhow!("--owner-email: {e}"))?;
    let new = tenants::NewTenant {
        slug: slug_value,
        name: name.to_owned(),
        allowed_email_domains: allowed_domains,
        join_policy: JoinPolicy::AdminApproval,
    };
    let who = audit::Who::system("cli:create-organisation");
    let founded = identity::admin::founding::found(store, &who, &new, &owner).await.map_err(|e| match e {
        identity::IdentityError::Duplicate(_) => {
            anyhow::anyhow!("--slug {slug}: an organisation with this slug already exists; nothing was created")
        }
        identity::IdentityError::Invalid { field, reason } => {
            let flag = if field == "allowed_email_domains" { "allowed-domain" } else { field };
            anyhow::anyhow!("--{flag}: {reason}")
        }
        other => anyhow::Error::new(other),
    })?;
    let inv = &founded.owner_invitation.invitation;
    eprintln!(
        "organisation {} ({}) created: {}\nowner invitation for {} (single use, expires {} UTC); accept it with \
         POST /api/v1/invitations/accept {{\"token\": …, \"password\": …}}. It is shown once:",
        founded.tenant.slug,
        founded.tenant.id,
        founded.tenant.name,
        inv.email,
        inv.expires_at.format("%Y-%m-%d %H:%M")
    );
    use secrecy::ExposeSecret;
    println!("{}", founded.owner_invitation.token.expose_secret());
    Ok(ExitCode::SUCCESS)
}

async fn api_key(store: &Store, cmd: ApiKeyCommand) -> anyhow::Result<ExitCode> {
    use identity::admin::api_keys;
    let who = audit::Who::system("cli:api-key");
    match cmd {
        ApiKeyCommand::Create { tenant, name, role, scopes, expires_days } => {
            let id = resolve(store, &tenant).await?;
            let role: identity::Role = role.parse().context("--role")?;
            let expires_at = expires_days.map(|d| chrono::Utc::now() + chrono::Duration::days(i64::from(d)));
            let mut tx = store.tenant_tx(id).await?;
            // The host operator's authority: no member is asking, so no policy can be.
            let permit = authz::Permit::operator(authz::Action::ApiKeysManage, id.as_uuid());
            // The same domain checks as over HTTP (unknown scopes refused); the operator may mint any role.
            let new = api_keys::NewApiKey { name, role, scopes, expires_at };
            let issued =
                api_keys::create(&mut tx, &who, &permit, api_keys::Minter::Operator, &new).await.context("api key")?;
            tx.commit().await?;
            use secrecy::ExposeSecret;
            eprintln!(
                "api key {} created (role {}, scopes {:?}); it is shown once:",
                issued.key.id, issued.key.role, issued.key.scopes
            );
            println!("{}", issued.secret.expose_secret());
        }
        ApiKeyCommand::List { tenant } => {
            let id = resolve(store, &tenant).await?;
            let mut tx = store.tenant_tx(id).await?;
            for k in api_keys::list(&mut tx).await? {
                println!("{}", serde_json::to_string(&k)?);
            }
            tx.commit().await?;
        }
        ApiKeyCommand::Revoke { tenant, id: key } => {
            let id = resolve(store, &tenant).await?;
            let mut tx = store.tenant_tx(id).await?;
            let permit = authz::Permit::operator(authz::Action::ApiKeysManage, id.as_uuid());
            api_keys::revoke(&mut tx, &who, &permit, key)
                .await
                .context("--id: no such api key in this organisation")?;
            tx.commit().await?;
            println!("api key {key} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
