//! Passwords: argon2id in PHC strings (the parameters travel with each hash, so they can be
//! raised and old hashes upgraded at the next successful login), hashing on a fixed set of
//! dedicated threads that reuse their memory, and a policy that refuses short, common and
//! guessable ones.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};

use crate::IdentityError;

/// OWASP's recommended argon2id configuration: 19 MiB, 2 passes, 1 lane.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const LANES: u32 = 1;
pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 128;
/// Hashing threads of a server process: argon2 computations at once (each ~19 MiB and a core
/// for tens of milliseconds), so a login flood queues instead of exhausting the machine.
pub const SERVER_THREADS: usize = 2;
/// A hashing thread idle this long gives its 19 MiB back.
const RELEASE_AFTER_IDLE: Duration = Duration::from_secs(5);

/// Offline list of common and breached passwords (see data/SOURCE.md), lowercased and sorted
/// bytewise, one a line. Looked up by binary search over the text itself: no index is built, so
/// checking a password allocates nothing and touches a few pages of the 3.5 MB.
static COMMON: &str = include_str!("../../data/common-passwords.txt");

fn is_common(lower: &str) -> bool {
    let text = COMMON.as_bytes();
    let wanted = lower.as_bytes();
    // `lo` and `hi` are always line starts (or the end); the line holding `mid` lies in between.
    let (mut lo, mut hi) = (0, text.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let start = text[lo..mid].iter().rposition(|&b| b == b'\n').map_or(lo, |p| lo + p + 1);
        let end = text[mid..hi].iter().position(|&b| b == b'\n').map_or(hi, |p| mid + p);
        match text[start..end].cmp(wanted) {
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Less => lo = end + 1,
            std::cmp::Ordering::Greater => hi = start,
        }
    }
    false
}

/// Number of entries in the shipped common-password list.
#[must_use]
pub fn common_list_len() -> usize {
    COMMON.lines().filter(|l| !l.is_empty()).count()
}

fn params() -> Params {
    // The constants are valid argon2 parameters; `Params::new` cannot fail for them.
    Params::new(MEMORY_KIB, ITERATIONS, LANES, None).unwrap_or_default()
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params())
}

/// Why a new password is refused (stable codes for the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weakness {
    TooShort,
    TooLong,
    Common,
    ContainsIdentity,
}

impl Weakness {
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::TooShort => "must be at least 12 characters",
            Self::TooLong => "must be at most 128 characters",
            Self::Common => "is a commonly used or breached password",
            Self::ContainsIdentity => "must not contain your email address or the organisation's name",
        }
    }
}

/// Checks a new password against the policy. `identity` holds the email and organisation names;
/// a password containing any of them (or the email's local part), case-insensitively, is refused.
pub fn check(password: &str, identity: &[&str]) -> Result<(), Weakness> {
    let n = password.chars().count();
    if n < MIN_LENGTH {
        return Err(Weakness::TooShort);
    }
    if n > MAX_LENGTH {
        return Err(Weakness::TooLong);
    }
    let lower = password.to_lowercase();
    if is_common(&lower) || is_common(lower.trim_end_matches(|c: char| c.is_ascii_digit() || c == '!')) {
        return Err(Weakness::Common);
    }
    for item in identity {
        let item = item.trim().to_lowercase();
        let local = item.split('@').next().unwrap_or_default().to_owned();
        for part in [item, local] {
            if part.chars().count() >= 4 && lower.contains(&part) {
                return Err(Weakness::ContainsIdentity);
            }
        }
    }
    Ok(())
}

/// Hashes and verifies on `threads` dedicated OS threads (not the runtime's blocking pool), each
/// with one argon2 memory it reuses for every computation and gives back after
/// [`RELEASE_AFTER_IDLE`]. So a server holds at most `threads` × 19 MiB of argon2 memory, however
/// many logins arrive at once, and none while no one signs in; a login flood queues. (With
/// `spawn_blocking` every hash allocated 19 MiB anew on whichever of up to 512 threads ran it,
/// and glibc kept the freed blocks in each thread's arena: a burst of logins left a server at
/// 650 MiB for good.)
#[derive(Clone, Debug)]
pub struct Hasher {
    pool: Arc<Pool>,
    /// What unknown users are verified against, so they cost the same as known ones.
    dummy: Arc<String>,
}

impl Hasher {
    /// Starts `threads` hashing threads; they stop when the last clone of this hasher is dropped.
    ///
    /// # Errors
    /// If the operating system refuses a thread.
    pub fn new(threads: usize) -> Result<Self, IdentityError> {
        Ok(Self { pool: Arc::new(Pool::start(threads.max(1), RELEASE_AFTER_IDLE)?), dummy: Arc::new(dummy_hash()) })
    }

    pub async fn hash(&self, password: &SecretString) -> Result<String, IdentityError> {
        let pw = password.clone();
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        self.run(move |memory| hash_with(memory, pw.expose_secret().as_bytes(), &salt)).await?
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is no user,
    /// so that both paths take the same time. Returns whether it matched and whether the stored
    /// hash should be replaced (weaker parameters than today's).
    pub async fn verify(&self, password: &SecretString, stored: Option<&str>) -> Result<Verified, IdentityError> {
        let known = stored.is_some();
        let stored = stored.map_or_else(|| self.dummy.as_str().to_owned(), str::to_owned);
        let pw = password.clone();
        let (ok, outdated) = self
            .run(move |memory| {
                let Ok(parsed) = PasswordHash::new(&stored) else { return (false, false) };
                (verify_with(memory, pw.expose_secret().as_bytes(), &parsed), needs_rehash(&parsed))
            })
            .await?;
        Ok(Verified { ok: ok && known, rehash: ok && known && outdated })
    }

    /// Runs `f` on a hashing thread. A caller that stops waiting (the client went away) is
    /// skipped when its turn comes instead of costing a hash.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, IdentityError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.submit(Box::new(move |memory: &mut [Block]| {
            if !tx.is_closed() {
                let _ = tx.send(f(memory));
            }
        }));
        rx.await.map_err(|_| IdentityError::Internal("hashing thread stopped".into()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    pub rehash: bool,
}

/// The argon2 memory of one hashing thread. Its capacity is above glibc's largest dynamic mmap
/// threshold (32 MiB on 64-bit), so the allocator maps it on its own and unmaps it when it is
/// dropped, instead of keeping it in the thread's arena (where a 19 MiB block stays after
/// `free`); only the blocks argon2 uses are ever written, so only 19 MiB are resident.
fn new_memory() -> Vec<Block> {
    const RESERVED_BLOCKS: usize = 33 * 1024;
    let used = params().block_count();
    let mut memory = Vec::with_capacity(RESERVED_BLOCKS.max(used));
    memory.resize(used, Block::default());
    memory
}

/// A PHC string with today's parameters, a random salt and a random output: verifying any
/// password against it costs one full argon2id computation and never matches (nobody knows a
/// preimage; `Verified::ok` also requires a known user). Built without hashing, so starting a
/// hasher costs no argon2 memory.
fn dummy_hash() -> String {
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut output);
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    phc(&salt, &output).unwrap_or_default()
}

fn phc(salt: &SaltString, output: &[u8]) -> Result<String, IdentityError> {
    let bad = |e: argon2::password_hash::Error| IdentityError::Internal(format!("argon2: {e}"));
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params()).map_err(bad)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(output).map_err(bad)?),
    };
    Ok(hash.to_string())
}

/// Today's hash of `password` with `salt`, computed in `memory`: the same PHC string as
/// `argon2::PasswordHasher::hash_password` (tested), without its 19 MiB allocation.
fn hash_with(memory: &mut [Block], password: &[u8], salt: &SaltString) -> Result<String, IdentityError> {
    let bad = |e: String| IdentityError::Internal(format!("argon2: {e}"));
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes).map_err(|e| bad(e.to_string()))?;
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2().hash_password_into_with_memory(password, salt_raw, &mut output, memory).map_err(|e| bad(e.to_string()))?;
    phc(salt, &output)
}

/// Recomputes `stored` (its own algorithm, version, parameters, salt and output length) for
/// `password` in `memory` and compares in constant time, as `PasswordVerifier::verify_password`
/// does (tested). A stored hash needing more memory than the thread holds gets its own.
fn verify_with(memory: &mut [Block], password: &[u8], stored: &PasswordHash<'_>) -> bool {
    let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(stored.algorithm) else { return false };
    let Ok(version) = stored.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let Ok(params) = Params::try_from(stored) else { return false };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    let mut buf = [0u8; Output::MAX_LENGTH];
    let Some(out) = buf.get_mut(..expected.len()) else { return false };
    let needed = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    let computed = if needed <= memory.len() {
        argon.hash_password_into_with_memory(password, salt, out, memory)
    } else {
        argon.hash_password_into(password, salt, out)
    };
    computed.is_ok() && Output::new(out).is_ok_and(|o| o == expected)
}

type Job = Box<dyn FnOnce(&mut [Block]) + Send>;

/// The hashing threads and their queue. Dropping it (with the last `Hasher`) lets the threads
/// finish what is queued and exit.
struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Threads currently holding their argon2 memory (observable in tests).
    resident: AtomicUsize,
    release_after: Duration,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("resident", &self.shared.resident.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl Pool {
    fn start(threads: usize, release_after: Duration) -> Result<Self, IdentityError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            resident: AtomicUsize::new(0),
            release_after,
        });
        let pool = Self { shared };
        for i in 0..threads {
            let shared = pool.shared.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || work(&shared))
                .map_err(|e| IdentityError::Internal(format!("hashing thread: {e}")))?;
        }
        Ok(pool)
    }

    fn submit(&self, job: Job) {
        self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner).jobs.push_back(job);
        self.shared.ready.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.queue.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        self.shared.ready.notify_all();
    }
}

fn work(shared: &Shared) {
    let mut memory: Option<Vec<Block>> = None;
    loop {
        let next = {
            let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(job) = queue.jobs.pop_front() {
                    break Some(job);
                }
                if queue.closed {
                    return;
                }
                if memory.is_none() {
                    queue = shared.ready.wait(queue).unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
                let (q, waited) =
                    shared.ready.wait_timeout(queue, shared.release_after).unwrap_or_else(PoisonError::into_inner);
                queue = q;
                if waited.timed_out() && queue.jobs.is_empty() {
                    break None;
                }
            }
        };
        let Some(job) = next else {
            // Idle: give the memory back (outside the lock; unmapping takes a moment).
            memory = None;
            shared.resident.fetch_sub(1, Ordering::Relaxed);
            continue;
        };
        let memory = memory.get_or_insert_with(|| {
            shared.resident.fetch_add(1, Ordering::Relaxed);
            new_memory()
        });
        // A panicking job must not take the thread down with it (its caller sees an error).
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(memory)));
    }
}

/// True when `h` was made with another algorithm or weaker parameters than today's.
fn needs_rehash(h: &PasswordHash<'_>) -> bool {
    let Ok(p) = Params::try_from(h) else { return true };
    h.algorithm != Algorithm::Argon2id.ident()
        || h.version != Some(Version::V0x13.into())
        || p.m_cost() < MEMORY_KIB
        || p.t_cost() < ITERATIONS
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[test]
    fn policy_refuses_short_long_common_and_personal_passwords() {
        // The shipped list (data/SOURCE.md): at least 100,000 entries, sorted for binary search.
        assert!(common_list_len() >= 100_000, "list has {}", common_list_len());
        assert!(COMMON.lines().is_sorted(), "the binary search needs the file sorted bytewise");
        // From the SecLists half of the list (not in zxcvbn's 30,000), any case.
        assert_eq!(check("A159263159263", &[]), Err(Weakness::Common));
        assert_eq!(check("short-pass1", &[]), Err(Weakness::TooShort));
        assert_eq!(check(&"x".repeat(129), &[]), Err(Weakness::TooLong));
        assert_eq!(check("password1234", &[]), Err(Weakness::Common));
        assert_eq!(check("my-alice.smith-secret", &["alice.smith@acme.test", "Acme"]), Err(Weakness::ContainsIdentity));
        assert_eq!(check("I love ACME corp truly", &["bob@x.test", "Acme"]), Err(Weakness::ContainsIdentity));
        assert_eq!(check("correct horse battery staple 7", &["bob@x.test", "Acme"]), Ok(()));
        // Twelve characters counted as characters, not bytes.
        assert_eq!(check("ééééééééééé", &[]), Err(Weakness::TooShort));
    }

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let h = Hasher::new(2).expect("hasher");
        let pw = SecretString::from("correct horse battery staple 7");
        let stored = h.hash(&pw).await.expect("hash");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert_eq!(h.verify(&pw, Some(&stored)).await.expect("verify"), Verified { ok: true, rehash: false });
        let wrong = SecretString::from("correct horse battery staple 8");
        assert!(!h.verify(&wrong, Some(&stored)).await.expect("verify").ok);
        // Unknown user: the dummy hash is checked, and never matches.
        assert!(!h.verify(&pw, None).await.expect("verify").ok);
        // Garbage in the column is a failed login, not a panic.
        assert!(!h.verify(&pw, Some("not a hash")).await.expect("verify").ok);
    }

    #[tokio::test]
    async fn weaker_hashes_verify_and_ask_to_be_upgraded() {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8 * 1024, 1, 1, None).expect("params"))
            .hash_password(b"an older password 42", &salt)
            .expect("hash")
            .to_string();
        let h = Hasher::new(1).expect("hasher");
        let v = h.verify(&SecretString::from("an older password 42"), Some(&weak)).await.expect("verify");
        assert_eq!(v, Verified { ok: true, rehash: true });
    }

    #[test]
    fn every_listed_password_is_found_without_building_an_index() {
        let lines: Vec<&str> = COMMON.lines().collect();
        assert!(lines.iter().all(|l| !l.is_empty()), "no empty lines");
        // The first and last entries (the search's edges), then a sample of the rest.
        for l in [lines[0], lines[lines.len() - 1]].into_iter().chain(lines.iter().step_by(97).copied()) {
            assert!(is_common(l), "{l} not found");
        }
        for absent in ["", "\0", "correct horse battery staple 7", "~~~~~~~~~~~~~~~~~~~~", "password1234\npassword"] {
            assert!(!is_common(absent), "{absent:?} found");
        }
    }

    /// The pooled path must produce exactly what the argon2 crate's own API does, including when
    /// the memory it reuses still holds an earlier computation.
    #[test]
    fn pooled_hashing_matches_the_argon2_crate_byte_for_byte() {
        let mut memory = new_memory();
        let pw = b"tulip lantern orbit 1987";
        for _ in 0..2 {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            let ours = hash_with(&mut memory, pw, &salt).expect("hash");
            assert_eq!(ours, argon2().hash_password(pw, &salt).expect("stock").to_string());
            let parsed = PasswordHash::new(&ours).expect("phc");
            assert!(argon2().verify_password(pw, &parsed).is_ok());
            assert!(verify_with(&mut memory, pw, &parsed));
            assert!(!verify_with(&mut memory, b"tulip lantern orbit 1988", &parsed));
        }
        // Other parameters: less memory than held (a slice of it), more (its own allocation).
        for m in [8 * 1024, MEMORY_KIB + 1024] {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            let other = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(m, 1, 1, None).expect("params"))
                .hash_password(pw, &salt)
                .expect("stock")
                .to_string();
            let parsed = PasswordHash::new(&other).expect("phc");
            assert!(verify_with(&mut memory, pw, &parsed), "m={m}");
            assert!(!verify_with(&mut memory, b"not it at all 1", &parsed), "m={m}");
        }
    }

    #[test]
    fn unknown_users_are_verified_against_todays_parameters() {
        let dummy = dummy_hash();
        let parsed = PasswordHash::new(&dummy).expect("phc");
        assert!(!needs_rehash(&parsed), "{dummy}");
        assert!(dummy.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{dummy}");
        assert_ne!(dummy, dummy_hash(), "salt and output are random");
    }

    /// Waits (bounded) until `f` holds.
    fn eventually(f: impl Fn() -> bool) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        f()
    }

    #[test]
    fn a_login_flood_computes_on_at_most_the_configured_threads() {
        let pool = Pool::start(2, Duration::from_secs(60)).expect("pool");
        let active = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
        let (done, finished) = std::sync::mpsc::channel();
        for _ in 0..12 {
            let (active, most, threads, done) = (active.clone(), most.clone(), threads.clone(), done.clone());
            pool.submit(Box::new(move |memory: &mut [Block]| {
                let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let name = std::thread::current().name().unwrap_or_default().to_owned();
                threads.lock().unwrap_or_else(PoisonError::into_inner).insert(name);
                assert_eq!(memory.len(), params().block_count());
                std::thread::sleep(Duration::from_millis(20));
                active.fetch_sub(1, Ordering::SeqCst);
                let _ = done.send(());
            }));
        }
        for _ in 0..12 {
            finished.recv_timeout(Duration::from_secs(10)).expect("job ran");
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        let names = threads.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert!(names.len() <= 2 && names.iter().all(|n| n.starts_with("argon2-")), "{names:?}");
        // One argon2 memory per thread, however many jobs ran.
        assert!(pool.shared.resident.load(Ordering::SeqCst) <= 2);
    }

    #[test]
    fn idle_hashing_threads_give_their_memory_back() {
        let pool = Pool::start(2, Duration::from_millis(100)).expect("pool");
        let both = Arc::new(std::sync::Barrier::new(2));
        let (done, finished) = std::sync::mpsc::channel();
        for _ in 0..2 {
            let (both, done) = (both.clone(), done.clone());
            pool.submit(Box::new(move |_: &mut [Block]| {
                both.wait();
                let _ = done.send(());
            }));
        }
        for _ in 0..2 {
            finished.recv_timeout(Duration::from_secs(10)).expect("job ran");
        }
        assert_eq!(pool.shared.resident.load(Ordering::SeqCst), 2, "both threads hold their memory while busy");
        assert!(eventually(|| pool.shared.resident.load(Ordering::SeqCst) == 0), "memory kept after idling");
        // And they work again afterwards.
        let h = Hasher { pool: Arc::new(pool), dummy: Arc::new(dummy_hash()) };
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let pw = SecretString::from("tulip lantern orbit 1987");
        let stored = rt.block_on(h.hash(&pw)).expect("hash");
        assert!(rt.block_on(h.verify(&pw, Some(&stored))).expect("verify").ok);
    }

    #[tokio::test]
    async fn a_caller_that_gave_up_costs_no_hash() {
        let h = Hasher::new(1).expect("hasher");
        // Keep the only thread busy until told.
        let (release, wait) = std::sync::mpsc::channel::<()>();
        h.pool.submit(Box::new(move |_: &mut [Block]| {
            let _ = wait.recv_timeout(Duration::from_secs(10));
        }));
        let ran = Arc::new(AtomicUsize::new(0));
        let counted = ran.clone();
        let gave_up = h.run(move |_| counted.fetch_add(1, Ordering::SeqCst));
        // The client goes away while its hash waits in the queue.
        assert!(tokio::time::timeout(Duration::from_millis(20), gave_up).await.is_err());
        release.send(()).expect("release");
        // Jobs run in order: once this one has run, the abandoned one had its turn.
        assert_eq!(h.run(|_| 7).await.expect("runs"), 7);
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn dropping_the_last_hasher_stops_its_threads() {
        let h = Hasher::new(2).expect("hasher");
        let shared = Arc::downgrade(&h.pool.shared);
        let copy = h.clone();
        drop(h);
        assert!(shared.upgrade().is_some(), "a clone still uses the threads");
        drop(copy);
        // Each thread holds the shared queue until it exits.
        assert!(eventually(|| shared.upgrade().is_none()), "hashing threads outlived their hasher");
    }
}
