//! Recomputes chains from the stored fields and reports the first sequence number where each
//! chain breaks: a missing event, a broken link, changed contents, a head that does not match,
//! or a disagreement with a signed checkpoint. Damaged rows are reported, never panicked on.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use sqlx::PgConnection;
use store::{SnapshotId, Store, TenantId, TenantTx};
use tokio::task::JoinSet;
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
    /// Checkpoints signed by keys the verifier does not hold: they could not be checked, which
    /// is not evidence of tampering, but it is not a verification either.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_keys: Vec<UnknownKey>,
}

/// Checkpoints of one chain signed by one key the verifier was not given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownKey {
    pub key_id: String,
    pub first_seq: i64,
    pub checkpoints: u64,
}

impl ChainReport {
    /// Notes a checkpoint at `seq` signed by `key_id`, which the verifier does not hold.
    pub fn unknown_key(&mut self, key_id: &str, seq: i64) {
        match self.unknown_keys.iter_mut().find(|u| u.key_id == key_id) {
            Some(u) => {
                u.checkpoints += 1;
                u.first_seq = u.first_seq.min(seq);
            }
            None => self.unknown_keys.push(UnknownKey { key_id: key_id.to_owned(), first_seq: seq, checkpoints: 1 }),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub chains: Vec<ChainReport>,
    pub events: u64,
    pub elapsed_ms: u128,
}

impl Report {
    /// No tampering found (checkpoints by unknown keys aside: see [`Report::verified`]).
    #[must_use]
    pub fn ok(&self) -> bool {
        self.chains.iter().all(|c| c.first_break.is_none())
    }

    /// No tampering found and every checkpoint's signature checked with a held key.
    #[must_use]
    pub fn verified(&self) -> bool {
        self.ok() && self.unverified().next().is_none()
    }

    pub fn broken(&self) -> impl Iterator<Item = &ChainReport> {
        self.chains.iter().filter(|c| c.first_break.is_some())
    }

    /// Chains with checkpoints signed by keys the verifier does not hold.
    pub fn unverified(&self) -> impl Iterator<Item = &ChainReport> {
        self.chains.iter().filter(|c| !c.unknown_keys.is_empty())
    }
}

/// What a verification tells its caller as it goes (a progress bar, or nothing at all). Any
/// `FnMut(events checked, elapsed)` closure is one.
pub trait Observer: Send {
    /// The events this verification expects to read: the chain heads on its snapshot, summed.
    /// Called once, before reading; events appended meanwhile are past the snapshot.
    fn expect(&mut self, _events: u64) {}
    /// Events checked so far and the time since the start: about once a second, and at the end.
    fn checked(&mut self, events: u64, elapsed: Duration);
}

impl<F: FnMut(u64, Duration) + Send> Observer for F {
    fn checked(&mut self, events: u64, elapsed: Duration) {
        self(events, elapsed);
    }
}

/// Progress callback: see [`Observer`].
pub type Progress<'a> = &'a mut (dyn Observer + 'a);

/// How verification spreads over connections.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Parallel readers; each holds one pooled connection besides the lead transaction's.
    pub workers: usize,
    /// Long chains are split into sequence ranges of this many events, verified in parallel and
    /// stitched together through each range's stored `prev_hash`.
    pub range_events: i64,
}

impl Default for Options {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Self { workers: cores.clamp(2, 8), range_events: 100_000 }
    }
}

/// Verifies one tenant's chain. Every reader shares one snapshot, so events appended while the
/// verifier runs are neither half-seen nor mistaken for damage.
pub async fn verify_tenant(
    store: &Store,
    tenant: TenantId,
    keys: &TrustedKeys,
    opts: Options,
    progress: Progress<'_>,
) -> Result<Report, AuditError> {
    let started = Instant::now();
    let mut lead = store.tenant_reader(tenant, None).await?;
    let snapshot = lead.export_snapshot().await?;
    let t = tenant.to_string();
    let (expected, labels) = load_expected(lead.conn(), Some(&t), keys).await?;
    let report = run(store, &snapshot, None, expected, labels, opts, progress, started).await;
    lead.rollback().await?;
    report
}

/// Verifies every tenant chain and the platform chain under a granted (and logged) bypass.
pub async fn verify_all(
    store: &Store,
    actor: &str,
    keys: &TrustedKeys,
    opts: Options,
    progress: Progress<'_>,
) -> Result<Report, AuditError> {
    let started = Instant::now();
    let mut lead = store.bypass_repeatable(actor, "verify every audit chain").await?;
    let snapshot = lead.export_snapshot().await?;
    let (expected, labels) = load_expected(lead.conn(), None, keys).await?;
    let report = run(store, &snapshot, Some(lead.conn()), expected, labels, opts, progress, started).await;
    lead.commit().await?;
    report
}

struct Expected {
    head: Option<(i64, Vec<u8>)>,
    /// seq -> signed hash, for checkpoints whose signature verified.
    checkpoints: Arc<BTreeMap<i64, Vec<u8>>>,
    checkpoint_count: u64,
    /// A checkpoint that is itself bad (a signature that does not verify under its key).
    bad_checkpoint: Option<Break>,
    /// (key id, seq) of checkpoints signed by keys the verifier does not hold.
    unknown: Vec<(String, i64)>,
}

impl Expected {
    fn blank() -> Self {
        Self { head: None, checkpoints: Arc::default(), checkpoint_count: 0, bad_checkpoint: None, unknown: Vec::new() }
    }
}

/// One contiguous sequence range of one chain, checked on its own.
#[derive(Debug)]
struct Segment {
    lo: i64,
    events: u64,
    first_seq: Option<i64>,
    /// The stored `prev_hash` of the range's first event: the stitch checks it against the
    /// recomputed hash that ends the previous range.
    first_prev: Option<[u8; 32]>,
    next_seq: i64,
    last_hash: Option<[u8; 32]>,
    first_break: Option<Break>,
}

impl Segment {
    fn new(lo: i64) -> Self {
        Self { lo, events: 0, first_seq: None, first_prev: None, next_seq: lo, last_hash: None, first_break: None }
    }

    fn fail(&mut self, seq: i64, problem: impl Into<String>) {
        if self.first_break.is_none() {
            self.first_break = Some(Break { seq, problem: problem.into() });
        }
    }

    fn check(
        &mut self,
        f: &Fields<'_>,
        prev_hash: &[u8],
        hash: &[u8],
        checkpoints: &BTreeMap<i64, Vec<u8>>,
        buf: &mut Vec<u8>,
    ) {
        self.events += 1;
        self.first_seq.get_or_insert(f.seq);
        if self.first_break.is_some() {
            return;
        }
        if f.seq != self.next_seq {
            let expected = self.next_seq;
            return self.fail(expected, format!("event {expected} is missing (next stored event is {})", f.seq));
        }
        let prev = match self.last_hash {
            Some(h) => h,
            None if self.lo == 1 => GENESIS,
            None => match <[u8; 32]>::try_from(prev_hash) {
                Ok(p) => {
                    self.first_prev = Some(p);
                    p
                }
                Err(_) => return self.fail(f.seq, "prev_hash is not 32 bytes"),
            },
        };
        if prev_hash != prev {
            return self.fail(f.seq, "prev_hash does not link to the previous event");
        }
        encoding::encode(buf, f);
        let recomputed = encoding::chain_hash(&prev, buf);
        if hash != recomputed {
            return self.fail(f.seq, "contents do not match the stored hash (event altered)");
        }
        if let Some(signed) = checkpoints.get(&f.seq)
            && signed.as_slice() != hash
        {
            return self.fail(f.seq, "chain disagrees with the signed checkpoint at this seq (history rewritten)");
        }
        self.last_hash = Some(recomputed);
        self.next_seq += 1;
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
            report: ChainReport {
                chain,
                label,
                events: 0,
                checkpoints,
                head_seq,
                first_break: None,
                unknown_keys: Vec::new(),
            },
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

    /// Joins a chain's segments, in sequence order, into one verdict: each must start where the
    /// previous one ended, and its first event must link to the previous one's last hash.
    fn stitch(&mut self, segments: impl IntoIterator<Item = Segment>) {
        for seg in segments {
            self.report.events += seg.events;
            if self.report.first_break.is_some() || seg.events == 0 {
                continue;
            }
            if seg.lo != self.next_seq {
                let (missing, found) = (self.next_seq, seg.first_seq.unwrap_or(seg.lo));
                self.fail(missing, format!("event {missing} is missing (next stored event is {found})"));
            } else if seg.first_prev.is_some_and(|p| p != self.prev) {
                self.fail(seg.lo, "prev_hash does not link to the previous event");
            } else if let Some(b) = seg.first_break {
                self.report.first_break = Some(b);
            } else if let Some(h) = seg.last_hash {
                self.next_seq = seg.next_seq;
                self.prev = h;
                self.last_hash = Some(h);
            }
        }
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
        for (key_id, seq) in std::mem::take(&mut self.expected.unknown) {
            self.report.unknown_key(&key_id, seq);
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
                Arc::make_mut(&mut e.checkpoints).insert(seq, hash);
            }
            Ok(false) => {
                e.bad_checkpoint
                    .get_or_insert(Break { seq, problem: "checkpoint signature is invalid (forged)".into() });
            }
            // A key the verifier does not hold (or no key at all): the signature cannot be
            // checked. Contents still are; the report says which key, and it is not tampering.
            Err(_) => e.unknown.push((key_id, seq)),
        }
    }
    Ok((expected, labels))
}

const COLUMNS: &str = "seq, occurred_at, actor_kind, actor_id, actor_role, action, entity_type, entity_id, \
     changes, reason, request_id, ip, user_agent, prev_hash, hash";

/// A unit of work: one range of one tenant chain.
struct Item {
    chain: usize,
    tenant: TenantId,
    lo: i64,
    hi: Option<i64>,
    checkpoints: Arc<BTreeMap<i64, Vec<u8>>>,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    store: &Store,
    snapshot: &SnapshotId,
    platform: Option<&mut PgConnection>,
    mut expected: HashMap<String, Expected>,
    labels: HashMap<String, String>,
    opts: Options,
    progress: Progress<'_>,
    started: Instant,
) -> Result<Report, AuditError> {
    let heads = |e: &Expected| e.head.as_ref().map_or(0, |h| u64::try_from(h.0).unwrap_or(0));
    let reads_platform = platform.is_some();
    progress.expect(expected.iter().filter(|(c, _)| reads_platform || *c != "platform").map(|(_, e)| heads(e)).sum());
    // Every tenant the lead can see, plus any chain that has a head or checkpoints.
    let mut names: Vec<String> = labels.keys().chain(expected.keys()).filter(|c| *c != "platform").cloned().collect();
    names.sort();
    names.dedup();
    let mut states = Vec::with_capacity(names.len());
    let mut items = VecDeque::new();
    let range = opts.range_events.max(1);
    for name in names {
        let tenant: TenantId = name.parse().map_err(|_| AuditError::Malformed(format!("chain id {name}")))?;
        let e = expected.remove(&name).unwrap_or_else(Expected::blank);
        let head = e.head.as_ref().map_or(0, |h| h.0);
        let chain = states.len();
        let mut lo = 1;
        // Fixed ranges up to the head; the last range is open so events past it are seen too.
        while lo + range <= head {
            items.push_back(Item { chain, tenant, lo, hi: Some(lo + range - 1), checkpoints: e.checkpoints.clone() });
            lo += range;
        }
        items.push_back(Item { chain, tenant, lo, hi: None, checkpoints: e.checkpoints.clone() });
        let label = labels.get(&name).cloned().unwrap_or_else(|| name.clone());
        states.push(ChainState::new(name, label, e));
    }

    let counter = Arc::new(AtomicU64::new(0));
    let spare = usize::try_from(store.max_connections()).unwrap_or(1).saturating_sub(1);
    if spare == 0 && !items.is_empty() {
        return Err(AuditError::invalid("pool", "verification needs a pool of at least 2 connections"));
    }
    let workers = opts.workers.min(spare).min(items.len());
    let queue = Arc::new(Mutex::new(items));
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        tasks.spawn(worker(store.clone(), snapshot.clone(), queue.clone(), counter.clone()));
    }

    let mut chains = Vec::new();
    if let Some(conn) = platform {
        let e = expected.remove("platform").unwrap_or_else(Expected::blank);
        let checkpoints = e.checkpoints.clone();
        let mut state = ChainState::new("platform".into(), "platform".into(), e);
        let sql = format!("COPY (select {COLUMNS} from platform_audit_events order by seq) TO STDOUT (FORMAT binary)");
        state.stitch([scan(conn, &sql, "platform", 1, &checkpoints, &counter).await?]);
        chains.push(state.finish());
    }

    let mut segments: Vec<(usize, Segment)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(done)) => segments.extend(done?),
                Some(Err(e)) => return Err(AuditError::Malformed(format!("verification worker failed: {e}"))),
            },
            _ = tick.tick() => progress.checked(counter.load(Ordering::Relaxed), started.elapsed()),
        }
    }
    segments.sort_by_key(|(chain, seg)| (*chain, seg.lo));
    let mut segments = segments.into_iter().peekable();
    for (i, mut state) in states.into_iter().enumerate() {
        let mine = std::iter::from_fn(|| segments.next_if(|(c, _)| *c == i).map(|(_, s)| s));
        state.stitch(mine);
        chains.push(state.finish());
    }
    // The platform chain when it was not read (tenant verification) is not reported.
    chains.sort_by(|a, b| (a.chain == "platform").cmp(&(b.chain == "platform")).then(a.label.cmp(&b.label)));
    let total = counter.load(Ordering::Relaxed);
    progress.checked(total, started.elapsed());
    Ok(Report { chains, events: total, elapsed_ms: started.elapsed().as_millis() })
}

/// Takes ranges off the queue until it is empty; one read-only transaction per tenant, all on
/// the lead's snapshot.
async fn worker(
    store: Store,
    snapshot: SnapshotId,
    queue: Arc<Mutex<VecDeque<Item>>>,
    counter: Arc<AtomicU64>,
) -> Result<Vec<(usize, Segment)>, AuditError> {
    let mut done = Vec::new();
    let mut current: Option<TenantTx> = None;
    loop {
        let next = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front();
        let Some(item) = next else { break };
        let tx = match current.take() {
            Some(tx) if tx.tenant() == item.tenant => current.insert(tx),
            other => {
                if let Some(tx) = other {
                    tx.rollback().await?;
                }
                let mut tx = store.tenant_reader(item.tenant, Some(&snapshot)).await?;
                // A range of a few hundred thousand rows tempts the planner into a bitmap scan
                // plus a sort (spilling to disk); the primary key already yields seq order.
                sqlx::query!(
                    "select set_config('enable_bitmapscan', 'off', true) as a, set_config('enable_sort', 'off', true) as b"
                )
                .fetch_one(tx.conn())
                .await?;
                current.insert(tx)
            }
        };
        let upper = item.hi.map(|hi| format!(" and seq <= {hi}")).unwrap_or_default();
        let (t, lo) = (item.tenant, item.lo);
        let sql = format!(
            "COPY (select {COLUMNS} from audit_events where tenant_id = '{t}' and seq >= {lo}{upper} order by seq) \
             TO STDOUT (FORMAT binary)"
        );
        let seg = scan(tx.conn(), &sql, &t.to_string(), lo, &item.checkpoints, &counter).await?;
        done.push((item.chain, seg));
    }
    if let Some(tx) = current {
        tx.rollback().await?;
    }
    Ok(done)
}

/// Streams one range with binary COPY and checks every event in it.
async fn scan(
    conn: &mut PgConnection,
    sql: &str,
    chain: &str,
    lo: i64,
    checkpoints: &BTreeMap<i64, Vec<u8>>,
    counter: &AtomicU64,
) -> Result<Segment, AuditError> {
    let mut seg = Segment::new(lo);
    let mut reader = CopyReader::default();
    let mut tuple = Tuple::with_capacity(15);
    let mut buf = Vec::with_capacity(1024);
    let mut ip_text = String::with_capacity(48);
    let mut stream = conn.copy_out_raw(sql).await?;
    let mut pending = 0u64;
    while let Some(chunk) = stream.next().await {
        reader.feed(&chunk?);
        while reader.next_tuple(&mut tuple)? {
            if tuple.len() != 15 {
                return Err(AuditError::Malformed(format!("expected 15 columns, got {}", tuple.len())));
            }
            let ip = match reader.bytes(tuple[11]) {
                Some(wire) if encoding::inet_host(wire, &mut ip_text) => Some(ip_text.as_bytes()),
                Some(_) => return Err(AuditError::Malformed("ip is not an inet value".into())),
                None => None,
            };
            let f = Fields {
                chain,
                seq: be_i64(reader.bytes(tuple[0]), "seq")?,
                occurred_at_us: be_i64(reader.bytes(tuple[1]), "occurred_at")?.saturating_add(PG_EPOCH_OFFSET_US),
                actor_kind: reader.bytes(tuple[2]),
                actor_id: reader.bytes(tuple[3]),
                actor_role: reader.bytes(tuple[4]),
                action: reader.bytes(tuple[5]),
                entity_type: reader.bytes(tuple[6]),
                entity_id: reader.bytes(tuple[7]),
                changes: reader.bytes(tuple[8]),
                reason: reader.bytes(tuple[9]),
                request_id: reader.bytes(tuple[10]),
                ip,
                user_agent: reader.bytes(tuple[12]),
            };
            let prev_hash = reader.bytes(tuple[13]).unwrap_or_default();
            let hash = reader.bytes(tuple[14]).unwrap_or_default();
            seg.check(&f, prev_hash, hash, checkpoints, &mut buf);
            pending += 1;
        }
        if pending >= 4096 {
            counter.fetch_add(pending, Ordering::Relaxed);
            pending = 0;
        }
    }
    counter.fetch_add(pending, Ordering::Relaxed);
    if !reader.finished() {
        return Err(AuditError::Malformed("COPY stream ended early".into()));
    }
    Ok(seg)
}
