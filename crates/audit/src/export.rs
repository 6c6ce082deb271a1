//! Streaming export (CSV or NDJSON) and the regulator bundle. Rows come from a binary COPY and
//! leave through a sink in ~64 KiB pieces, so memory stays constant for any number of rows.
//!
//! Every exported row carries the exact hashed fields plus `prev_hash` and `hash`, so an export
//! can be re-verified offline (docs/AUDIT.md); `changes` is the verbatim JSON text that was hashed.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use store::TenantTx;

use crate::copy::{CopyReader, PG_EPOCH_OFFSET_US, Tuple, be_i64};
use crate::{Action, AuditError, CheckpointKey, Entity, TrustedKeys, keys};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl std::str::FromStr for Format {
    type Err = AuditError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "csv" => Ok(Self::Csv),
            "ndjson" | "json" | "jsonl" => Ok(Self::Ndjson),
            _ => Err(AuditError::invalid("format", "expected csv or ndjson")),
        }
    }
}

/// Which rows to export. Values are validated before they reach SQL.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// See `query::Filter` for how the names `document`, `voucher` and `purchase_order` map.
    pub entity_type: Option<String>,
    /// One entity's events (e.g. a document's id): a per-document export.
    pub entity_id: Option<String>,
    pub action: Option<String>,
}

/// An entity id safe to render into the COPY: ids are UUIDs, numbers, slugs and keys.
fn entity_id_literal(id: &str) -> Result<&str, AuditError> {
    if id.is_empty() || id.len() > 200 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b)) {
        return Err(AuditError::invalid("entity_id", "1-200 characters of A-Z, a-z, 0-9, - _ . : @"));
    }
    Ok(id)
}

impl ExportFilter {
    /// Checks the filter without running anything, so a caller can refuse bad input before it
    /// starts a response (afterwards an error could only cut the stream short).
    pub fn validate(&self) -> Result<(), AuditError> {
        self.where_sql().map(|_| ())
    }

    fn where_sql(&self) -> Result<String, AuditError> {
        let mut w = String::new();
        if let (Some(f), Some(t)) = (self.from, self.to)
            && f > t
        {
            return Err(AuditError::invalid("from", "must not be after `to`"));
        }
        // COPY takes no bind parameters: every value below is re-rendered from a parsed type
        // (timestamps) or checked against a [a-z0-9_.] grammar (names), so nothing is quoted raw.
        if let Some(f) = self.from {
            w.push_str(&format!(" and occurred_at >= '{}'", f.to_rfc3339_opts(SecondsFormat::Micros, true)));
        }
        if let Some(t) = self.to {
            w.push_str(&format!(" and occurred_at < '{}'", t.to_rfc3339_opts(SecondsFormat::Micros, true)));
        }
        if let Some(e) = &self.entity_type {
            let k = Entity::new(e, None)?.kind;
            match k.as_str() {
                "document" => w.push_str(" and entity_type in ('document', 'voucher', 'purchase_order')"),
                "voucher" | "purchase_order" => w.push_str(&format!(
                    " and (entity_type = '{k}' or (entity_type = 'document' and split_part(action, '.', 1) = '{k}'))"
                )),
                _ => w.push_str(&format!(" and entity_type = '{k}'")),
            }
        }
        if let Some(id) = &self.entity_id {
            w.push_str(&format!(" and entity_id = '{}'", entity_id_literal(id)?));
        }
        if let Some(a) = &self.action {
            let a = Action::parse(a)?;
            w.push_str(&format!(" and action = '{}'", a.as_str()));
        }
        Ok(w)
    }
}

/// One exported event; field names are the export's column names. Borrowed while exporting
/// (no per-row allocation), owned or borrowed when a bundle is read back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportRow<'a> {
    #[serde(borrow)]
    pub chain: Cow<'a, str>,
    pub seq: i64,
    #[serde(borrow)]
    pub occurred_at: Cow<'a, str>,
    pub occurred_at_us: i64,
    #[serde(borrow)]
    pub actor_kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub actor_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub actor_role: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub action: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub entity_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub entity_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub changes: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub request_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub prev_hash: Cow<'a, str>,
    #[serde(borrow)]
    pub hash: Cow<'a, str>,
}

const COLUMNS: &str = "seq, occurred_at, actor_kind, actor_id, actor_role, action, entity_type, entity_id, \
     changes, reason, request_id, host(ip), user_agent, prev_hash, hash";

const FLUSH_AT: usize = 64 * 1024;

/// Where exported bytes go, ~64 KiB at a time. Async so an HTTP response can apply backpressure.
pub trait Sink: Send {
    fn write(&mut self, chunk: &[u8]) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
}

/// A synchronous writer as a sink (files, stdout, in-memory buffers).
pub struct FnSink<F>(pub F);

impl<F: FnMut(&[u8]) -> std::io::Result<()> + Send> Sink for FnSink<F> {
    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        (self.0)(chunk)
    }
}

/// Streams the tenant's events (oldest first) to `sink` in `format`. Returns the row count.
pub async fn export_tenant<S: Sink>(
    tx: &mut TenantTx,
    filter: &ExportFilter,
    format: Format,
    sink: &mut S,
) -> Result<u64, AuditError> {
    export_tenant_with_progress(tx, filter, format, sink, &mut |_| {}).await
}

/// [`export_tenant`], telling `rows` how many rows are written so far after each piece handed to
/// the sink (a progress bar's position).
pub async fn export_tenant_with_progress<S: Sink>(
    tx: &mut TenantTx,
    filter: &ExportFilter,
    format: Format,
    sink: &mut S,
    rows: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, AuditError> {
    let tenant = tx.tenant().to_string();
    let sql = format!(
        "COPY (select {COLUMNS} from audit_events where tenant_id = '{tenant}'{} order by seq) TO STDOUT (FORMAT binary)",
        filter.where_sql()?
    );
    stream_rows(tx.conn(), &sql, &tenant, format, sink, rows).await
}

/// How many events [`export_tenant`] would write with `filter` in this transaction (a progress
/// bar's total; under a repeatable-read snapshot, exactly).
pub async fn count_tenant(tx: &mut TenantTx, filter: &ExportFilter) -> Result<u64, AuditError> {
    let tenant = tx.tenant().to_string();
    let sql = format!("select count(*) from audit_events where tenant_id = '{tenant}'{}", filter.where_sql()?);
    let n: i64 = sqlx::query_scalar(&sql).fetch_one(tx.conn()).await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn text(b: Option<&[u8]>) -> Result<Option<&str>, AuditError> {
    b.map(|b| std::str::from_utf8(b).map_err(|_| AuditError::Malformed("text column is not UTF-8".into()))).transpose()
}

fn csv_writer(mut reuse: Vec<u8>) -> csv::Writer<Vec<u8>> {
    reuse.clear();
    csv::WriterBuilder::new().has_headers(false).from_writer(reuse)
}

async fn stream_rows<S: Sink>(
    conn: &mut PgConnection,
    sql: &str,
    chain: &str,
    format: Format,
    sink: &mut S,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, AuditError> {
    let mut out: Vec<u8> = Vec::with_capacity(FLUSH_AT * 2);
    let mut csv_w = csv_writer(Vec::with_capacity(FLUSH_AT * 2));
    if format == Format::Csv {
        out.extend_from_slice(
            b"chain,seq,occurred_at,occurred_at_us,actor_kind,actor_id,actor_role,action,entity_type,entity_id,\
changes,reason,request_id,ip,user_agent,prev_hash,hash\n",
        );
    }
    let mut reader = CopyReader::default();
    let mut tuple = Tuple::with_capacity(16);
    let mut rows = 0u64;
    let mut stream = conn.copy_out_raw(sql).await?;
    let (mut prev_hex, mut hash_hex) = ([0u8; 64], [0u8; 64]);
    while let Some(chunk) = stream.next().await {
        reader.feed(&chunk?);
        while reader.next_tuple(&mut tuple)? {
            if tuple.len() != 15 {
                return Err(AuditError::Malformed(format!("expected 15 columns, got {}", tuple.len())));
            }
            let seq = be_i64(reader.bytes(tuple[0]), "seq")?;
            let us = be_i64(reader.bytes(tuple[1]), "occurred_at")?.saturating_add(PG_EPOCH_OFFSET_US);
            let at = DateTime::from_timestamp_micros(us)
                .ok_or_else(|| AuditError::Malformed("timestamp out of range".into()))?
                .to_rfc3339_opts(SecondsFormat::Micros, true);
            hex::encode_to_slice(reader.bytes(tuple[13]).unwrap_or_default(), &mut prev_hex)
                .map_err(|_| AuditError::Malformed("prev_hash is not 32 bytes".into()))?;
            hex::encode_to_slice(reader.bytes(tuple[14]).unwrap_or_default(), &mut hash_hex)
                .map_err(|_| AuditError::Malformed("hash is not 32 bytes".into()))?;
            let prev = std::str::from_utf8(&prev_hex).unwrap_or_default();
            let hash = std::str::from_utf8(&hash_hex).unwrap_or_default();
            let fields = [
                text(reader.bytes(tuple[2]))?,
                text(reader.bytes(tuple[3]))?,
                text(reader.bytes(tuple[4]))?,
                text(reader.bytes(tuple[5]))?,
                text(reader.bytes(tuple[6]))?,
                text(reader.bytes(tuple[7]))?,
                text(reader.bytes(tuple[8]))?,
                text(reader.bytes(tuple[9]))?,
                text(reader.bytes(tuple[10]))?,
                text(reader.bytes(tuple[11]))?,
                text(reader.bytes(tuple[12]))?,
            ];
            match format {
                Format::Ndjson => {
                    let [
                        actor_kind,
                        actor_id,
                        actor_role,
                        action,
                        entity_type,
                        entity_id,
                        changes,
                        reason,
                        request_id,
                        ip,
                        user_agent,
                    ] = fields.map(|f| f.map(Cow::Borrowed));
                    let row = ExportRow {
                        chain: Cow::Borrowed(chain),
                        seq,
                        occurred_at: Cow::Borrowed(&at),
                        occurred_at_us: us,
                        actor_kind,
                        actor_id,
                        actor_role,
                        action,
                        entity_type,
                        entity_id,
                        changes,
                        reason,
                        request_id,
                        ip,
                        user_agent,
                        prev_hash: Cow::Borrowed(prev),
                        hash: Cow::Borrowed(hash),
                    };
                    serde_json::to_writer(&mut out, &row).map_err(|e| AuditError::Malformed(e.to_string()))?;
                    out.push(b'\n');
                }
                Format::Csv => {
                    let seq_s = seq.to_string();
                    let us_s = us.to_string();
                    let mut rec: Vec<&str> = Vec::with_capacity(17);
                    rec.extend([chain, &seq_s, &at, &us_s]);
                    // CSV has no NULL: an absent value is an empty cell.
                    rec.extend(fields.iter().map(|f| f.unwrap_or("")));
                    rec.extend([prev, hash]);
                    csv_w.write_record(&rec).map_err(|e| AuditError::Malformed(e.to_string()))?;
                    if rows % 256 == 255 {
                        csv_w.flush()?;
                        if csv_w.get_ref().len() >= FLUSH_AT {
                            let inner = csv_w.into_inner().map_err(|e| AuditError::Malformed(e.to_string()))?;
                            out.extend_from_slice(&inner);
                            csv_w = csv_writer(inner);
                        }
                    }
                }
            }
            rows += 1;
            if out.len() >= FLUSH_AT {
                sink.write(&out).await?;
                out.clear();
                progress(rows);
            }
        }
    }
    if !reader.finished() {
        return Err(AuditError::Malformed("COPY stream ended early".into()));
    }
    let inner = csv_w.into_inner().map_err(|e| AuditError::Malformed(e.to_string()))?;
    out.extend_from_slice(&inner);
    if !out.is_empty() {
        sink.write(&out).await?;
    }
    progress(rows);
    Ok(rows)
}

/// What a bundle contains, written as `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub tenant: String,
    pub tenant_slug: String,
    pub exported_at: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub events: u64,
    pub checkpoints: u64,
    pub key_id: String,
    /// Every key whose public half is in `public-keys.pem`: the current key and each earlier key
    /// that signed a checkpoint in the bundle (after a rotation).
    #[serde(default)]
    pub key_ids: Vec<String>,
    /// Keys that signed a checkpoint in the bundle but were not given to the exporter
    /// (`--previous-audit-key-file`): those checkpoints cannot be verified from the bundle alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_key_ids: Vec<String>,
    /// SHA-256 (hex) of each file, so a damaged copy is noticed before verification.
    pub files: std::collections::BTreeMap<String, String>,
}

pub const BUNDLE_README: &str = include_str!("../bundle/README.md");
pub const BUNDLE_VERIFIER: &str = include_str!("../bundle/verify.py");

/// Writes a regulator bundle into `dir` (created; must be empty or absent): events, signed
/// checkpoints, the public keys that signed them (`key` and those of `previous` that signed one
/// of its checkpoints, after a rotation), a manifest, a README and a stand-alone verifier.
pub async fn write_bundle(
    tx: &mut TenantTx,
    slug: &str,
    filter: &ExportFilter,
    key: &CheckpointKey,
    previous: &TrustedKeys,
    dir: &Path,
) -> Result<Manifest, AuditError> {
    write_bundle_with_progress(tx, slug, filter, key, previous, dir, &mut |_| {}).await
}

/// [`write_bundle`], telling `rows` how many events are written so far (as
/// [`export_tenant_with_progress`]).
pub async fn write_bundle_with_progress(
    tx: &mut TenantTx,
    slug: &str,
    filter: &ExportFilter,
    key: &CheckpointKey,
    previous: &TrustedKeys,
    dir: &Path,
    rows: &mut (dyn FnMut(u64) + Send),
) -> Result<Manifest, AuditError> {
    use sha2::{Digest, Sha256};
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        return Err(AuditError::invalid("bundle", format!("{} exists and is not empty", dir.display())));
    }
    std::fs::create_dir_all(dir)?;
    let mut files = std::collections::BTreeMap::new();

    let events_path = dir.join("events.ndjson");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&events_path)?);
    let mut digest = Sha256::new();
    let events = export_tenant_with_progress(
        tx,
        filter,
        Format::Ndjson,
        &mut FnSink(|b: &[u8]| {
            digest.update(b);
            file.write_all(b)
        }),
        rows,
    )
    .await?;
    file.flush()?;
    files.insert("events.ndjson".to_owned(), hex::encode(digest.finalize()));

    let tenant = tx.tenant();
    let cps = sqlx::query!(
        "select seq, hash, signed_at, key_id, signature from audit_checkpoints where tenant_id = $1 order by seq",
        tenant.as_uuid()
    )
    .fetch_all(tx.conn())
    .await?;
    let mut cp_text = String::new();
    for c in &cps {
        let line = serde_json::json!({
            "chain": tenant.to_string(),
            "seq": c.seq,
            "hash": hex::encode(&c.hash),
            "signed_at": c.signed_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "signed_at_us": c.signed_at.timestamp_micros(),
            "key_id": c.key_id,
            "signature": hex::encode(&c.signature),
        });
        cp_text.push_str(&line.to_string());
        cp_text.push('\n');
    }
    let pem = keys::public_pem(&key.public())?;
    // Every key that signed a checkpoint here, the current one first, each under its key id.
    let mut key_ids = vec![key.key_id().to_owned()];
    let mut carried = format!("# key id {}\n{pem}", key.key_id());
    let mut missing_key_ids = Vec::new();
    for c in &cps {
        if key_ids.contains(&c.key_id) || missing_key_ids.contains(&c.key_id) {
            continue;
        }
        match previous.get(&c.key_id) {
            Some(k) => {
                carried.push_str(&format!("# key id {}\n{}", c.key_id, keys::public_pem(k)?));
                key_ids.push(c.key_id.clone());
            }
            None => missing_key_ids.push(c.key_id.clone()),
        }
    }
    let mut put = |name: &str, body: &str| -> Result<(), AuditError> {
        std::fs::write(dir.join(name), body)?;
        files.insert(name.to_owned(), hex::encode(Sha256::digest(body.as_bytes())));
        Ok(())
    };
    put("checkpoints.ndjson", &cp_text)?;
    put("public-key.pem", &pem)?;
    put("public-keys.pem", &carried)?;
    put("README.md", BUNDLE_README)?;
    put("verify.py", BUNDLE_VERIFIER)?;
    let manifest = Manifest {
        format: "countersign-audit-bundle-v1".into(),
        tenant: tenant.to_string(),
        tenant_slug: slug.to_owned(),
        exported_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        from: filter.from.map(|f| f.to_rfc3339()),
        to: filter.to.map(|t| t.to_rfc3339()),
        events,
        checkpoints: cps.len() as u64,
        key_id: key.key_id().to_owned(),
        key_ids,
        missing_key_ids,
        files,
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| AuditError::Malformed(e.to_string()))?;
    std::fs::write(dir.join("manifest.json"), text + "\n")?;
    Ok(manifest)
}

/// A regulator bundle packed as one POSIX tar archive (`<name>/manifest.json`, `events.ndjson`,
/// ...), ready to stream: the archive lives in a private temporary directory removed when this
/// value is dropped.
#[derive(Debug)]
pub struct PackedBundle {
    pub manifest: Manifest,
    /// The archive's path (inside the temporary directory).
    pub path: std::path::PathBuf,
    /// Bytes in the archive.
    pub len: u64,
    guard: tempfile::TempDir,
}

impl PackedBundle {
    /// Hands over the temporary directory, so the archive outlives this value until the
    /// returned guard is dropped (e.g. after a response body has been sent).
    #[must_use]
    pub fn into_parts(self) -> (Manifest, std::path::PathBuf, u64, tempfile::TempDir) {
        (self.manifest, self.path, self.len, self.guard)
    }
}

/// [`write_bundle`], then packs the directory as `<name>.tar` with every file under `<name>/`.
///
/// # Errors
/// As [`write_bundle`]; I/O errors of the temporary directory.
pub async fn pack_bundle(
    tx: &mut TenantTx,
    slug: &str,
    filter: &ExportFilter,
    key: &CheckpointKey,
    previous: &TrustedKeys,
    name: &str,
) -> Result<PackedBundle, AuditError> {
    let tmp = tempfile::Builder::new().prefix("countersign-bundle-").tempdir()?;
    let dir = tmp.path().join(name);
    let manifest = write_bundle(tx, slug, filter, key, previous, &dir).await?;
    let path = tmp.path().join(format!("{name}.tar"));
    let file = std::fs::File::create(&path)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.mode(tar::HeaderMode::Deterministic);
    tar.append_dir_all(name, &dir)?;
    let mut out = tar.into_inner()?;
    out.flush()?;
    drop(out);
    std::fs::remove_dir_all(&dir)?;
    let len = std::fs::metadata(&path)?.len();
    Ok(PackedBundle { manifest, path, len, guard: tmp })
}
