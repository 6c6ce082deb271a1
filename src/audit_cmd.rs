//! `countersign audit …` and `countersign admin …`: operator commands on the ledger and data
//! lifecycle. Cross-tenant work goes through a logged bypass, which the ledger itself records.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use audit::export::{ExportFilter, Format};
use audit::{CheckpointKey, TrustedKeys, verify};
use store::{Store, TenantId};

use crate::config::{AdminCommand, ApiKeyCommand, AuditCommand, DbArgs, Generate, KeyFile};
use crate::progress::Progress;
use crate::summary::{Refused, Summary, Verdict};

/// Exit status when the ledger (or a bundle) shows tampering: a chain that does not recompute, or
/// a checkpoint whose signature fails under the key it names.
pub const TAMPERED: u8 = 3;
/// Exit status when nothing was found wrong but some checkpoints are signed by keys this
/// verifier does not hold (named in the output), so they could not be checked.
pub const UNVERIFIED: u8 = 4;

pub async fn run(cmd: AuditCommand, db: &DbArgs) -> anyhow::Result<ExitCode> {
    if let AuditCommand::VerifyBundle { dir, public_keys, json } = &cmd {
        return verify_bundle(dir, public_keys, json.json);
    }
    // With --json, an error before the command proper (no database) is reported as JSON too.
    let json = match &cmd {
        AuditCommand::Verify { json, .. } => Some((json.json, "audit verify")),
        AuditCommand::Export { json, .. } => Some((*json, "audit export")),
        _ => None,
    };
    let opened =
        async { Ok::<_, anyhow::Error>((db.previous_audit_keys()?, Store::open(&db.settings()).await?)) }.await;
    let (previous, store) = match (opened, json) {
        (Ok(o), _) => o,
        (Err(e), Some((true, command))) => return Summary::new(command, true).finish(Err(e)),
        (Err(e), _) => return Err(e),
    };
    let key = db.audit_key();
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
        AuditCommand::Verify { tenant, public_keys, workers, json } => {
            let mut summary = Summary::new("audit verify", json.json);
            let outcome = async {
                let keys = trusted_keys(key, previous, &public_keys)?;
                let mut opts = verify::Options::default();
                if let Some(w) = workers {
                    opts.workers = usize::from(w);
                }
                let report = match tenant {
                    Some(t) => {
                        let id = resolve(store, &t).await?;
                        summary.set("tenant", t.as_str());
                        let bar = Progress::start(&format!("verifying {t}"), "events", None);
                        verify::verify_tenant(store, id, &keys, opts, &mut Observed(&bar)).await?
                    }
                    None => {
                        let bar = Progress::start("verifying every chain", "events", None);
                        verify::verify_all(store, "cli:audit-verify", &keys, opts, &mut Observed(&bar)).await?
                    }
                };
                anyhow::Ok(report_verdict(&report, &mut summary))
            }
            .await;
            summary.finish(outcome)
        }
        AuditCommand::Export { tenant, format, from, to, entity_type, action, out, bundle, json } => {
            let mut summary = Summary::new("audit export", json);
            let request =
                Export { tenant, format, filter: ExportFilter { from, to, entity_type, entity_id: None, action } };
            let outcome = export(store, key, previous, request, out, bundle, &mut summary).await;
            summary.finish(outcome)
        }
        AuditCommand::Checkpoint => {
            let key = signing_key(key)?;
            let cps = audit::checkpoint::checkpoint_all(store, &key).await?;
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
        AuditCommand::VerifyBundle { dir, public_keys, json } => verify_bundle(&dir, &public_keys, json.json),
    }
}

/// The `--json` of an admin command, and its name there.
fn admin_json(cmd: &AdminCommand) -> Option<(bool, &'static str)> {
    match cmd {
        AdminCommand::Retention { json, .. } => Some((json.json, "admin retention")),
        AdminCommand::PurgeFiles { json, .. } => Some((json.json, "admin purge-files")),
        AdminCommand::RotateMfaKey { json } => Some((json.json, "admin rotate-mfa-key")),
        AdminCommand::RotateBlobKey { json } => Some((json.json, "admin rotate-blob-key")),
        _ => None,
    }
}

pub async fn admin(cmd: AdminCommand, db: &DbArgs) -> anyhow::Result<ExitCode> {
    let store = match Store::open(&db.settings()).await {
        Ok(s) => s,
        Err(e) => {
            return match admin_json(&cmd) {
                Some((true, command)) => Summary::new(command, true).finish(Err(e.into())),
                _ => Err(e.into()),
            };
        }
    };
    let result = async {
        match cmd {
            AdminCommand::Retention { older_than_days, json } => {
                let mut summary = Summary::new("admin retention", json.json);
                let outcome = async {
                    let bar = Progress::spinner("purging soft-deleted records past retention");
                    let mut tx = store.bypass("cli:retention", "purge soft-deleted records past retention").await?;
                    let who = audit::Who::system("cli:retention");
                    let days = chrono::Duration::days(i64::from(older_than_days));
                    let purged = identity::directory::retention::sweep(&mut tx, &who, days).await?;
                    tx.commit().await?;
                    drop(bar);
                    summary.set("older_than_days", older_than_days);
                    summary.set("memberships", purged.memberships);
                    summary.set("departments", purged.departments);
                    summary.say(format_args!(
                        "purged {} membership(s) and {} department(s) deleted more than {older_than_days} day(s) ago; audit ledger untouched",
                        purged.memberships, purged.departments
                    ));
                    anyhow::Ok(Verdict::Done)
                }
                .await;
                summary.finish(outcome)
            }
            AdminCommand::CreateOrganisation { name, slug, owner_email, allowed_domains } => {
                create_organisation(&store, &name, &slug, &owner_email, allowed_domains).await
            }
            AdminCommand::ApiKey(cmd) => api_key(&store, cmd).await,
            AdminCommand::Outbox { to, limit } => crate::mfa_cmd::outbox(&store, db, to.as_deref(), limit).await,
            AdminCommand::RotateMfaKey { json } => {
                let mut summary = Summary::new("admin rotate-mfa-key", json.json);
                let outcome = crate::mfa_cmd::rotate(&store, db, &mut summary).await;
                summary.finish(outcome)
            }
            AdminCommand::RotateBlobKey { json } => {
                let mut summary = Summary::new("admin rotate-blob-key", json.json);
                let outcome = async {
                    let ring = files::Keyring::load(&db.blob_key_dir())?;
                    let id = ring.add_next()?;
                    let who = audit::Who::system("cli:rotate-blob-key");
                    let mut tx =
                        store.bypass("cli:rotate-blob-key", "re-seal file data keys under a new master key").await?;
                    let bar = Progress::start("re-sealing file data keys", "keys", None);
                    let n = files::keys::rewrap_all_with_progress(&mut tx, &ring, &who, &mut |d, t| bar.items(d, t))
                        .await?;
                    tx.commit().await?;
                    drop(bar);
                    summary.set("resealed", n);
                    summary.set("master_key_id", id.as_str());
                    summary.say(format_args!(
                        "re-sealed {n} file data key(s) under master key {id}; older master key files open nothing now"
                    ));
                    anyhow::Ok(Verdict::Done)
                }
                .await;
                summary.finish(outcome)
            }
            AdminCommand::PurgeFiles { older_than_days, json } => {
                let mut summary = Summary::new("admin purge-files", json.json);
                let outcome = async {
                    let storage = db.blob_storage()?;
                    let who = audit::Who::system("cli:purge-files");
                    let mut tx = store.bypass("cli:purge-files", "purge files deleted past retention").await?;
                    let bar = Progress::start("purging files", "files", None);
                    let days = chrono::Duration::days(i64::from(older_than_days));
                    let n = files::blobs::purge_with_progress(&mut tx, &storage, &who, days, &mut |d, t| {
                        bar.items(d, t);
                    })
                    .await?;
                    tx.commit().await?;
                    drop(bar);
                    summary.set("older_than_days", older_than_days);
                    summary.set("files", n);
                    summary.say(format_args!(
                        "purged {n} file(s) deleted more than {older_than_days} day(s) ago; their records and ledger events remain"
                    ));
                    anyhow::Ok(Verdict::Done)
                }
                .await;
                summary.finish(outcome)
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
/// here and its earlier keys (`--previous-audit-key-file`, after a rotation). Verification
/// never writes a key: without one, the chains are still recomputed and the checkpoints reported
/// as unverified, naming their key ids.
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
        return if found {
            Ok(id)
        } else {
            Err(Refused::not_found(format!("--tenant {tenant}: no such organisation")).into())
        };
    }
    let mut g = store.global_tx().await?;
    let id = g.resolve_tenant(tenant).await?;
    g.commit().await?;
    id.ok_or_else(|| Refused::not_found(format!("--tenant {tenant}: no such organisation")).into())
}

/// One line per chain: `ok`, `BROKEN` (tampering: exit 3) or `UNVERIFIED` (checkpoints by a key
/// not held, nothing found wrong: exit 4); with `--json`, the same as counts and lists.
fn report_verdict(report: &verify::Report, summary: &mut Summary) -> Verdict {
    let mut broken = Vec::new();
    let mut unverified = Vec::new();
    for c in &report.chains {
        match (&c.first_break, c.unknown_keys.as_slice()) {
            (Some(b), _) => {
                summary.say(format_args!("BROKEN  {} ({}) at seq {}: {}", c.label, c.chain, b.seq, b.problem));
                broken
                    .push(serde_json::json!({"tenant": c.label, "chain": c.chain, "seq": b.seq, "problem": b.problem}));
            }
            (None, []) => {
                summary.say(format_args!(
                    "ok      {} ({}): {} events, {} checkpoints",
                    c.label, c.chain, c.events, c.checkpoints
                ));
            }
            (None, unknown) => {
                for u in unknown {
                    summary.say(format_args!(
                        "UNVERIFIED {} ({}): {} checkpoint(s) from seq {} are signed by key {}, which this verifier \
                         does not hold; their signatures were not checked (the chain itself recomputes: {} events)",
                        c.label, c.chain, u.checkpoints, u.first_seq, u.key_id, c.events
                    ));
                    unverified.push(serde_json::json!({"tenant": c.label, "chain": c.chain, "key_id": u.key_id,
                        "first_seq": u.first_seq, "checkpoints": u.checkpoints}));
                }
            }
        }
    }
    let rate = report.events as f64 / (report.elapsed_ms.max(1) as f64 / 1000.0);
    summary.say(format_args!(
        "{} chains, {} events verified in {} ms ({rate:.0} events/s)",
        report.chains.len(),
        report.events,
        report.elapsed_ms
    ));
    summary.set("tenants", report.chains.iter().filter(|c| c.chain != "platform").count());
    summary.set("chains", report.chains.len());
    summary.set("events", report.events);
    summary.set("checkpoints", report.chains.iter().map(|c| c.checkpoints).sum::<u64>());
    summary.set("events_per_second", rate.round());
    let broken_count = broken.len();
    let unverified_count = report.unverified().count();
    let first = report.broken().next().map(|c| {
        let seq = c.first_break.as_ref().map_or(0, |b| b.seq);
        format!(" (first: {} at seq {seq})", c.label)
    });
    summary.set("broken", broken);
    summary.set("unverified", unverified);
    if !report.ok() {
        Verdict::Failed {
            status: TAMPERED,
            code: "tampered",
            message: format!(
                "audit ledger verification FAILED: {broken_count} chain(s) broken{}",
                first.unwrap_or_default()
            ),
        }
    } else if !report.verified() {
        Verdict::Failed {
            status: UNVERIFIED,
            code: "unverified",
            message: format!(
                "audit ledger NOT VERIFIED: no tampering found, but {unverified_count} chain(s) carry checkpoints signed \
                 by keys not held here (pass the signer's public key with --public-key)"
            ),
        }
    } else {
        Verdict::Done
    }
}

/// Hands a verification's progress to a bar.
struct Observed<'a>(&'a Progress);

impl verify::Observer for Observed<'_> {
    fn expect(&mut self, events: u64) {
        self.0.total(events);
    }

    fn checked(&mut self, events: u64, _elapsed: Duration) {
        self.0.at(events);
    }
}

/// What `audit export` exports (the destination aside).
struct Export {
    tenant: String,
    format: String,
    filter: ExportFilter,
}

/// `audit export`: events as CSV or NDJSON into `--out` or standard output, or a regulator
/// bundle into `--bundle`.
async fn export(
    store: &Store,
    key: &KeyFile,
    previous: &[ed25519_dalek::VerifyingKey],
    request: Export,
    out: Option<PathBuf>,
    bundle: Option<PathBuf>,
    summary: &mut Summary,
) -> anyhow::Result<Verdict> {
    let Export { tenant, format, filter } = request;
    let id = resolve(store, &tenant).await?;
    let format: Format = format.parse().context("--format")?;
    filter.validate()?;
    summary.set("tenant", tenant.as_str());
    let mut tx = store.tenant_tx(id).await?;
    // A total only for a bar someone sees (it costs a count of the range), and no bar over
    // events scrolling past on the same terminal.
    let shown = crate::progress::visible() && (out.is_some() || bundle.is_some() || !std::io::stdout().is_terminal());
    let total = if shown { Some(audit::export::count_tenant(&mut tx, &filter).await?) } else { None };
    let bar = Progress::start(&format!("exporting {tenant}"), "events", total);
    if let Some(dir) = bundle {
        let key = signing_key(key)?;
        // The bundle should end on a signed head: sign one now if the head moved.
        audit::checkpoint::checkpoint_tenant(&mut tx, &key).await?;
        let slug = identity::directory::tenants::current(&mut tx).await?.slug;
        let previous = TrustedKeys::of(previous.iter().copied());
        let m = audit::export::write_bundle_with_progress(&mut tx, &slug, &filter, &key, &previous, &dir, &mut |n| {
            bar.at(n);
        })
        .await?;
        tx.commit().await?;
        drop(bar);
        summary.set("format", "bundle");
        summary.set("bundle", dir.display().to_string());
        summary.set("events", m.events);
        summary.set("checkpoints", m.checkpoints);
        summary.set("key_id", m.key_id.as_str());
        summary.set("key_ids", m.key_ids.clone());
        summary.set("missing_key_ids", m.missing_key_ids.clone());
        summary.tell(format_args!(
            "bundle written to {}: {} events, {} checkpoints, key(s) {}",
            dir.display(),
            m.events,
            m.checkpoints,
            m.key_ids.join(", ")
        ));
        if !m.missing_key_ids.is_empty() {
            eprintln!(
                "warning: checkpoints in the bundle are signed by key(s) {} that were not given \
                 (--previous-audit-key-file): the bundle does not carry them, and its verifiers will \
                 report those checkpoints as not verified",
                m.missing_key_ids.join(", ")
            );
        }
        return Ok(Verdict::Done);
    }
    let started = std::time::Instant::now();
    let mut progress = |n: u64| bar.at(n);
    let rows = match &out {
        Some(path) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(path).with_context(|| format!("--out {}", path.display()))?,
            );
            let mut sink = audit::export::FnSink(|b: &[u8]| f.write_all(b));
            let n =
                audit::export::export_tenant_with_progress(&mut tx, &filter, format, &mut sink, &mut progress).await?;
            f.flush().with_context(|| format!("--out {}", path.display()))?;
            n
        }
        None => {
            // Chunks are ~64 KiB, so locking stdout per chunk costs nothing.
            let mut sink = audit::export::FnSink(|b: &[u8]| std::io::stdout().write_all(b));
            audit::export::export_tenant_with_progress(&mut tx, &filter, format, &mut sink, &mut progress).await?
        }
    };
    tx.commit().await?;
    drop(bar);
    summary.set("format", if format == Format::Csv { "csv" } else { "ndjson" });
    if let Some(path) = &out {
        summary.set("out", path.display().to_string());
    }
    summary.set("events", rows);
    summary.tell(format_args!("exported {rows} events in {:.2}s", started.elapsed().as_secs_f64()));
    Ok(Verdict::Done)
}

fn verify_bundle(dir: &Path, public_keys: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let mut summary = Summary::new("audit verify-bundle", json);
    let outcome = (|| {
        let keys = if public_keys.is_empty() {
            let keys =
                audit::bundle::carried_keys(dir).with_context(|| format!("bundle {} public key", dir.display()))?;
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
        summary.set("bundle", dir.display().to_string());
        summary.set("key_ids", keys.ids().map(str::to_owned).collect::<Vec<_>>());
        let report = audit::bundle::verify_bundle(dir, &keys).with_context(|| format!("bundle {}", dir.display()))?;
        anyhow::Ok(report_verdict(&report, &mut summary))
    })();
    summary.finish(outcome)
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
