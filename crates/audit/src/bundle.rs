//! Offline verification of a regulator bundle: needs only the bundle and a trusted public key.

use std::io::BufRead;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::encoding::{self, Fields, GENESIS};
use crate::export::{ExportRow, Manifest};
use crate::verify::{Break, ChainReport, Report};
use crate::{AuditError, TrustedKeys, checkpoint};

#[derive(Debug, Deserialize)]
struct CheckpointLine {
    chain: String,
    seq: i64,
    hash: String,
    signed_at_us: i64,
    key_id: String,
    signature: String,
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// The public keys a bundle carries (`public-keys.pem`: one PEM block per key, each after a
/// `# key id …` line; a bundle from before key rotation has only `public-key.pem`). A block
/// whose key id label is not its key's id is refused: somebody relabelled a key.
pub fn carried_keys(dir: &Path) -> Result<TrustedKeys, AuditError> {
    let many = dir.join("public-keys.pem");
    let (name, text) = match std::fs::read_to_string(&many) {
        Ok(t) => ("public-keys.pem", t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            ("public-key.pem", std::fs::read_to_string(dir.join("public-key.pem"))?)
        }
        Err(e) => return Err(e.into()),
    };
    let (mut keys, mut label, mut block) = (Vec::new(), None::<String>, None::<String>);
    for line in text.lines() {
        if let Some(id) = line.trim().strip_prefix("# key id ") {
            label = Some(id.trim().to_owned());
        } else if line.starts_with("-----BEGIN") {
            block = Some(format!("{line}\n"));
        } else if let Some(b) = block.as_mut() {
            b.push_str(line);
            b.push('\n');
            if line.starts_with("-----END") {
                let key = TrustedKeys::parse_public(b).map_err(|e| AuditError::Malformed(format!("{name}: {e}")))?;
                let id = crate::key_id(&key);
                if let Some(l) = label.take().filter(|l| *l != id) {
                    return Err(AuditError::Malformed(format!(
                        "{name}: the key labelled {l} has key id {id}: its key id label is forged"
                    )));
                }
                keys.push(key);
                block = None;
            }
        }
    }
    if keys.is_empty() {
        return Err(AuditError::Malformed(format!("{name}: no public key")));
    }
    Ok(TrustedKeys::of(keys))
}

/// Verifies `dir` against `keys`. A range export is anchored at its first event's `prev_hash`
/// (reported); a full export must start at seq 1 from the zero hash.
pub fn verify_bundle(dir: &Path, keys: &TrustedKeys) -> Result<Report, AuditError> {
    let started = std::time::Instant::now();
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(dir.join("manifest.json"))?)
        .map_err(|e| AuditError::Malformed(format!("manifest.json: {e}")))?;
    let mut report = ChainReport {
        chain: manifest.tenant.clone(),
        label: manifest.tenant_slug.clone(),
        events: 0,
        checkpoints: 0,
        head_seq: None,
        first_break: None,
        unknown_keys: Vec::new(),
    };
    let fail = |r: &mut ChainReport, seq: i64, p: String| {
        if r.first_break.is_none() {
            r.first_break = Some(Break { seq, problem: p });
        }
    };
    for (name, digest) in &manifest.files {
        if name.contains('/') || name.contains("..") {
            return Err(AuditError::Malformed(format!("manifest names a file outside the bundle: {name}")));
        }
        let actual = hex::encode(Sha256::digest(std::fs::read(dir.join(name))?));
        if &actual != digest {
            fail(&mut report, 0, format!("{name} does not match the manifest digest"));
        }
    }

    let mut signed = std::collections::BTreeMap::new();
    for (i, line) in std::io::BufReader::new(std::fs::File::open(dir.join("checkpoints.ndjson"))?).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let c: CheckpointLine = serde_json::from_str(&line)
            .map_err(|e| AuditError::Malformed(format!("checkpoints.ndjson line {}: {e}", i + 1)))?;
        report.checkpoints += 1;
        let hash = hex::decode(&c.hash).unwrap_or_default();
        let sig = hex::decode(&c.signature).unwrap_or_default();
        let msg = checkpoint::message(&c.chain, c.seq, &hash, c.signed_at_us);
        match keys.verify(&c.key_id, &msg, &sig) {
            Ok(true) if c.chain == manifest.tenant => {
                signed.insert(c.seq, hash);
            }
            Ok(true) => fail(&mut report, c.seq, "checkpoint belongs to another chain".into()),
            Ok(false) => fail(&mut report, c.seq, "checkpoint signature is invalid (forged)".into()),
            Err(_) => report.unknown_key(&c.key_id, c.seq),
        }
    }

    let mut prev: Option<[u8; 32]> = None;
    let mut next_seq = 0i64;
    let mut buf = Vec::with_capacity(1024);
    let (mut first_seq, mut last_seq) = (None, 0i64);
    for (i, line) in std::io::BufReader::new(std::fs::File::open(dir.join("events.ndjson"))?).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let row: ExportRow = serde_json::from_str(&line)
            .map_err(|e| AuditError::Malformed(format!("events.ndjson line {}: {e}", i + 1)))?;
        report.events += 1;
        if report.first_break.is_some() {
            continue;
        }
        let (Some(row_prev), Some(row_hash)) = (unhex32(&row.prev_hash), unhex32(&row.hash)) else {
            fail(&mut report, row.seq, "hash fields are not 32-byte hex".into());
            continue;
        };
        let anchor = match prev {
            Some(p) => {
                if row.seq != next_seq {
                    fail(&mut report, next_seq, format!("event {next_seq} is missing (next is {})", row.seq));
                    continue;
                }
                p
            }
            None => {
                first_seq = Some(row.seq);
                if row.seq == 1 && row_prev != GENESIS {
                    fail(&mut report, 1, "first event does not start from the zero hash".into());
                    continue;
                }
                row_prev
            }
        };
        if row_prev != anchor {
            fail(&mut report, row.seq, "prev_hash does not link to the previous event".into());
            continue;
        }
        let f = Fields {
            chain: &row.chain,
            seq: row.seq,
            occurred_at_us: row.occurred_at_us,
            actor_kind: row.actor_kind.as_deref().map(str::as_bytes),
            actor_id: row.actor_id.as_deref().map(str::as_bytes),
            actor_role: row.actor_role.as_deref().map(str::as_bytes),
            action: row.action.as_deref().map(str::as_bytes),
            entity_type: row.entity_type.as_deref().map(str::as_bytes),
            entity_id: row.entity_id.as_deref().map(str::as_bytes),
            changes: row.changes.as_deref().map(str::as_bytes),
            reason: row.reason.as_deref().map(str::as_bytes),
            request_id: row.request_id.as_deref().map(str::as_bytes),
            ip: row.ip.as_deref().map(str::as_bytes),
            user_agent: row.user_agent.as_deref().map(str::as_bytes),
        };
        if row.chain != manifest.tenant {
            fail(&mut report, row.seq, "event belongs to another chain".into());
            continue;
        }
        encoding::encode(&mut buf, &f);
        if encoding::chain_hash(&anchor, &buf) != row_hash {
            fail(&mut report, row.seq, "contents do not match the stored hash (event altered)".into());
            continue;
        }
        if let Some(h) = signed.get(&row.seq)
            && h.as_slice() != row_hash
        {
            fail(&mut report, row.seq, "chain disagrees with the signed checkpoint at this seq".into());
            continue;
        }
        prev = Some(row_hash);
        next_seq = row.seq + 1;
        last_seq = row.seq;
    }
    if report.first_break.is_none()
        && manifest.from.is_none()
        && manifest.to.is_none()
        && let Some(&cp) = signed.keys().find(|&&s| s > last_seq)
    {
        fail(
            &mut report,
            last_seq + 1,
            format!("signed checkpoint at seq {cp} refers to events missing from the bundle"),
        );
    }
    if report.events != manifest.events && report.first_break.is_none() {
        let msg = format!("manifest says {} events, bundle has {}", manifest.events, report.events);
        fail(&mut report, last_seq + 1, msg);
    }
    report.head_seq = (last_seq > 0).then_some(last_seq);
    if let Some(f) = first_seq.filter(|&f| f > 1) {
        tracing::info!(first_seq = f, "range bundle: chain anchored at the first event's prev_hash");
    }
    let events = report.events;
    Ok(Report { chains: vec![report], events, elapsed_ms: started.elapsed().as_millis() })
}
