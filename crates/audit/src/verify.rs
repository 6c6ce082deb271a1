//! Recomputes chains from the stored fields and reports the first sequence number where each
//! chain breaks: a missing event, a broken link, changed contents, a head that does not match,
//! or a disagreement with a signed checkpoint. Damaged rows are reported, never panicked on.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use sqlx::PgConnection;
use store::{BypassTx, TenantTx};
use uuid::Uuid;

use crate::copy::{CopyReader, PG_EPOCH_OFFSET_US, Tuple, be_i64};
use crate::encoding::{self, Fields, GENESIS};
use crate::{AuditError, TrustedKeys, checkpoint};

/// What went wrong, where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    pub seq: i64,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    /// Tenant UUID or `platform`.
    pub chain: String,
    /// Tenant slug, when known.
    pub label: String,
    pub events: u64,
    pub checkpoints: u64,
    pub head_seq: Option<i64>,
    pub first_break: Option<Break>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub chains: Vec<ChainReport>,
    pub events: u64,
    pub elapsed_ms: u128,
}

impl Report {
    #[must_use]
    pub fn ok(&self) -> bool {
        self.chains.iter().all(|c| c.first_break.is_none())
    }

    pub fn broken(&self) -> impl Iterator<Item = &ChainReport> {
        self.chains.iter().filter(|c| c.first_break.is_some())
    }
}

/// Progress callback: events checked so far, time since start.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Duration);

/// Verifies one tenant's chain inside its own transaction.
pub async fn verify_tenant(
    tx: &mut TenantTx,
    keys: &TrustedKeys,
    progress: Progress<'_>,
) -> Result<Report, AuditError> {
    let t = tx.tenant().to_string();
    run(tx.conn(), Some(&t), keys, progress).await
}

/// Verifies every tenant chain and the platform chain (needs a granted bypass).
pub async fn verify_all(tx: &mut BypassTx, keys: &TrustedKeys, progress: Progress<'_>) -> Result<Report, AuditError> {
    run(tx.conn(), None, keys, progress).await
}

struct Expected {
    head: Option<(i64, Vec<u8>)>,
    /// seq -> signed hash, for checkpoints whose signature verified.
    checkpoints: BTreeMap<i64, Vec<u8>>,
    checkpoint_count: u64,
    /// A checkpoint that is itself bad (forged signature, unknown key).
    bad_checkpoint: Option<Break>,
}

impl Expected {
    fn blank() -> Self {
        Self { head: None, checkpoints: BTreeMap::new(), checkpoint_count: 0, bad_checkpoint: None }
    }
}

struct ChainState {
    report: ChainReport,
    expected: Expected,
    next_seq: i64,
    prev: [u8; 32],
    last_hash: Option<[u8; 32]>,
}

impl ChainState {
    fn new(chain: String, label: String, expected: Expected) -> Self {
        let head_seq = expected.head.as_ref().map(|h| h.0);
        let checkpoints = expected.checkpoint_count;
        Self {
            report: ChainReport { chain, label, events: 0, checkpoints, head_seq, first_break: None },
            expected,
            next_seq: 1,
            prev: GENESIS,
            last_hash: None,
        }
    }

    fn fail(&mut self, seq: i64, problem: impl Into<String>) {
        if self.report.first_break.is_none() {
            self.report.first_break = Some(Break { seq, problem: problem.into() });
        }
    }

    fn check(&mut self, f: &Fields<'_>, prev_hash: &[u8], hash: &[u8], buf: &mut Vec<u8>) {
        self.report.events += 1;
        if self.report.first_break.is_some() {
            return;
        }
        if f.seq != self.next_seq {
            let expected = self.next_seq;
            return self.fail(expected, format!("event {expected} is missing (next stored event is {})", f.seq));
        }
        if prev_hash != self.prev {
            return self.fail(f.seq, "prev_hash does not link to the previous event");
        }
        encoding::encode(buf, f);
        let recomputed = encoding::chain_hash(&self.prev, buf);
        if hash != recomputed {
            return self.fail(f.seq, "contents do not match the stored hash (event altered)");
        }
        if let Some(signed) = self.expected.checkpoints.get(&f.seq)
            && signed.as_slice() != hash
        {
            return self.fail(f.seq, "chain disagrees with the signed checkpoint at this seq (history rewritten)");
        }
        self.prev = recomputed;
        self.last_hash = Some(recomputed);
        self.next_seq += 1;
    }

    fn finish(mut self) -> ChainReport {
        if self.report.first_break.is_none() {
            let last_seq = self.next_seq - 1;
            if let Some(&cp) = self.expected.checkpoints.keys().find(|&&s| s > last_seq) {
                self.fail(
                    last_seq + 1,
                    format!("signed checkpoint at seq {cp} refers to events that are gone (chain truncated)"),
                );
            } else if let Some((seq, hash)) = &self.expected.head {
                if *seq != last_seq || self.last_hash.as_ref().map(<[u8; 32]>::as_slice) != Some(hash.as_slice()) {
                    self.fail(last_seq + 1, format!("head says seq {seq} but the chain ends at {last_seq}"));
                }
            } else if last_seq > 0 {
                self.fail(1, "events exist but the chain head is missing");
            }
        }
        if self.report.first_break.is_none()
            && let Some(b) = self.expected.bad_checkpoint.take()
        {
            self.report.first_break = Some(b);
        }
        self.report
    }
}

async fn load_expected(
    conn: &mut PgConnection,
    tenant: Option<&str>,
    keys: &TrustedKeys,
) -> Result<(HashMap<String, Expected>, HashMap<String, String>), AuditError> {
    let mut expected: HashMap<String, Expected> = HashMap::new();
    let blank = Expected::blank;
    let filter = tenant.map(Uuid::parse_str).transpose().map_err(|_| AuditError::invalid("tenant", "malformed"))?;

    let labels: HashMap<String, String> =
        sqlx::query!("select id, slug from tenants where $1::uuid is null or id = $1", filter)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| (r.id.to_string(), r.slug))
            .collect();

    let heads = sqlx::query!(
        r#"select tenant_id::text as "chain!", seq, hash from audit_heads where $1::uuid is null or tenant_id = $1
           union all
           select 'platform', seq, hash from platform_audit_head where $1::uuid is null"#,
        filter
    )
    .fetch_all(&mut *conn)
    .await?;
    for h in heads {
        if let (Some(seq), Some(hash)) = (h.seq, h.hash) {
            expected.entry(h.chain).or_insert_with(blank).head = Some((seq, hash));
        }
    }
    let cps = sqlx::query!(
        r#"select tenant_id::text as "chain!", seq as "seq!", hash as "hash!", signed_at as "signed_at!",
                  key_id as "key_id!", signature as "signature!"
             from audit_checkpoints where $1::uuid is null or tenant_id = $1
           union all
           select 'platform', seq, hash, signed_at, key_id, signature
             from platform_audit_checkpoints where $1::uuid is null
           order by 1, 2"#,
        filter
    )
    .fetch_all(&mut *conn)
    .await?;
    for c in cps {
        let (chain, seq, hash, at_us, key_id, sig) =
            (c.chain, c.seq, c.hash, c.signed_at.timestamp_micros(), c.key_id, c.signature);
        let e = expected.entry(chain.clone()).or_insert_with(blank);
        e.checkpoint_count += 1;
        match keys.verify(&key_id, &checkpoint::message(&chain, seq, &hash, at_us), &sig) {
            Ok(true) => {
                e.checkpoints.insert(seq, hash);
            }
            Ok(false) => {
                e.bad_checkpoint
                    .get_or_insert(Break { seq, problem: "checkpoint signature is invalid (forged)".into() });
            }
            // No keys given: signatures cannot be checked; contents still are.
            Err(_) if keys.is_empty() => {}
            Err(why) => {
                e.bad_checkpoint.get_or_insert(Break { seq, problem: format!("checkpoint {why}") });
            }
        }
    }
    Ok((expected, labels))
}

const TENANT_COLUMNS: &str = "seq, occurred_at, actor_kind, actor_id, actor_role, action, entity_type, entity_id, \
     changes, reason, request_id, host(ip), user_agent, prev_hash, hash";

async fn run(
    conn: &mut PgConnection,
    tenant: Option<&str>,
    keys: &TrustedKeys,
    progress: Progress<'_>,
) -> Result<Report, AuditError> {
    let started = Instant::now();
    let (mut expected, labels) = load_expected(conn, tenant, keys).await?;
    let mut chains = Vec::new();
    let mut total = 0u64;

    let mut sources: Vec<String> = Vec::new();
    match tenant {
        Some(t) => sources.push(format!(
            "COPY (select tenant_id, {TENANT_COLUMNS} from audit_events where tenant_id = '{t}' order by seq) TO STDOUT (FORMAT binary)"
        )),
        None => {
            sources.push(format!(
                "COPY (select tenant_id, {TENANT_COLUMNS} from audit_events order by tenant_id, seq) TO STDOUT (FORMAT binary)"
            ));
            sources.push(format!(
                "COPY (select null::uuid, {TENANT_COLUMNS} from platform_audit_events order by seq) TO STDOUT (FORMAT binary)"
            ));
        }
    }

    let mut buf = Vec::with_capacity(1024);
    for sql in sources {
        let mut reader = CopyReader::default();
        let mut tuple = Tuple::with_capacity(16);
        let mut state: Option<ChainState> = None;
        let (mut cur_raw, mut cur_chain) = (Vec::new(), String::new());
        let mut stream = conn.copy_out_raw(&sql).await?;
        while let Some(chunk) = stream.next().await {
            reader.feed(&chunk?);
            while reader.next_tuple(&mut tuple)? {
                if tuple.len() != 16 {
                    return Err(AuditError::Malformed(format!("expected 16 columns, got {}", tuple.len())));
                }
                let raw_chain = reader.bytes(tuple[0]).unwrap_or_default();
                if state.is_none() || raw_chain != cur_raw.as_slice() {
                    cur_raw = raw_chain.to_vec();
                    cur_chain = if raw_chain.is_empty() {
                        "platform".to_owned()
                    } else {
                        Uuid::from_slice(raw_chain).map_err(|_| AuditError::Malformed("tenant id".into()))?.to_string()
                    };
                    if let Some(done) = state.take() {
                        chains.push(done.finish());
                    }
                    let e = expected.remove(&cur_chain).unwrap_or_else(Expected::blank);
                    let label = labels.get(&cur_chain).cloned().unwrap_or_else(|| cur_chain.clone());
                    state = Some(ChainState::new(cur_chain.clone(), label, e));
                }
                let Some(s) = state.as_mut() else { continue };
                let f = Fields {
                    chain: &cur_chain,
                    seq: be_i64(reader.bytes(tuple[1]), "seq")?,
                    occurred_at_us: be_i64(reader.bytes(tuple[2]), "occurred_at")?.saturating_add(PG_EPOCH_OFFSET_US),
                    actor_kind: reader.bytes(tuple[3]),
                    actor_id: reader.bytes(tuple[4]),
                    actor_role: reader.bytes(tuple[5]),
                    action: reader.bytes(tuple[6]),
                    entity_type: reader.bytes(tuple[7]),
                    entity_id: reader.bytes(tuple[8]),
                    changes: reader.bytes(tuple[9]),
                    reason: reader.bytes(tuple[10]),
                    request_id: reader.bytes(tuple[11]),
                    ip: reader.bytes(tuple[12]),
                    user_agent: reader.bytes(tuple[13]),
                };
                let prev_hash = reader.bytes(tuple[14]).unwrap_or_default();
                let hash = reader.bytes(tuple[15]).unwrap_or_default();
                s.check(&f, prev_hash, hash, &mut buf);
                total += 1;
                if total.is_multiple_of(1 << 18) {
                    progress(total, started.elapsed());
                }
            }
        }
        if !reader.finished() {
            return Err(AuditError::Malformed("COPY stream ended early".into()));
        }
        if let Some(done) = state.take() {
            chains.push(done.finish());
        }
    }
    // Chains with a head or checkpoints but no events at all: everything was deleted.
    let mut rest: Vec<(String, Expected)> = expected.into_iter().collect();
    rest.sort_by(|a, b| a.0.cmp(&b.0));
    for (chain, e) in rest {
        let label = labels.get(&chain).cloned().unwrap_or_else(|| chain.clone());
        chains.push(ChainState::new(chain, label, e).finish());
    }
    chains.sort_by(|a, b| (a.chain == "platform").cmp(&(b.chain == "platform")).then(a.label.cmp(&b.label)));
    progress(total, started.elapsed());
    Ok(Report { chains, events: total, elapsed_ms: started.elapsed().as_millis() })
}
