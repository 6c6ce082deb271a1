//! Passwords: argon2id in PHC strings (the parameters travel with each hash, so they can be
//! raised and old hashes upgraded at the next successful login), hashing bounded by a semaphore
//! and run off the async threads, and a policy that refuses short, common and guessable ones.

use std::sync::{Arc, LazyLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::IdentityError;

/// OWASP's recommended argon2id configuration: 19 MiB, 2 passes, 1 lane.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const LANES: u32 = 1;
pub const MIN_LENGTH: usize = 12;
pub const MAX_LENGTH: usize = 128;

/// Offline list of common and breached passwords (see data/SOURCE.md): lowercased and sorted
/// in the file, so the lookup is a binary search over borrowed lines (~7 MiB, no copies).
static COMMON: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut list: Vec<&'static str> =
        include_str!("../data/common-passwords.txt").lines().filter(|l| !l.is_empty()).collect();
    // The file is sorted; sorting again is cheap insurance if someone edits it by hand.
    if !list.is_sorted() {
        list.sort_unstable();
    }
    list
});

fn is_common(lower: &str) -> bool {
    COMMON.binary_search(&lower).is_ok()
}

/// Number of entries in the shipped common-password list.
#[must_use]
pub fn common_list_len() -> usize {
    COMMON.len()
}

fn argon2() -> Argon2<'static> {
    // The constants are valid argon2 parameters; `Params::new` cannot fail for them.
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
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

/// Hashes and verifies with at most `permits` argon2 computations at once (each takes ~19 MiB
/// and a core for tens of milliseconds): a login flood queues instead of exhausting the machine.
#[derive(Clone, Debug)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    /// A real hash of a random secret: unknown users cost the same verification as known ones.
    dummy: Arc<String>,
}

impl Hasher {
    /// # Errors
    /// If hashing the dummy password fails (it cannot with valid parameters).
    pub fn new(permits: usize) -> Result<Self, IdentityError> {
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
        let dummy = hash_blocking(&hex::encode(secret))?;
        Ok(Self { permits: Arc::new(Semaphore::new(permits.max(1))), dummy: Arc::new(dummy) })
    }

    pub async fn hash(&self, password: &SecretString) -> Result<String, IdentityError> {
        let pw = password.clone();
        self.run(move || hash_blocking(pw.expose_secret())).await?
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is no user,
    /// so that both paths take the same time. Returns whether it matched and whether the stored
    /// hash should be replaced (weaker parameters than today's).
    pub async fn verify(&self, password: &SecretString, stored: Option<&str>) -> Result<Verified, IdentityError> {
        let known = stored.is_some();
        let stored = stored.map_or_else(|| self.dummy.as_str().to_owned(), str::to_owned);
        let pw = password.clone();
        let (ok, outdated) = self
            .run(move || {
                let Ok(parsed) = PasswordHash::new(&stored) else { return (false, false) };
                let ok = argon2().verify_password(pw.expose_secret().as_bytes(), &parsed).is_ok();
                (ok, needs_rehash(&parsed))
            })
            .await?;
        Ok(Verified { ok: ok && known, rehash: ok && known && outdated })
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, IdentityError> {
        let _permit = self.permits.acquire().await.map_err(|_| IdentityError::Internal("hasher closed".into()))?;
        tokio::task::spawn_blocking(f).await.map_err(|e| IdentityError::Internal(format!("hashing task: {e}")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    pub rehash: bool,
}

fn hash_blocking(password: &str) -> Result<String, IdentityError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| IdentityError::Internal(format!("argon2: {e}")))
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
    use super::*;

    #[test]
    fn policy_refuses_short_long_common_and_personal_passwords() {
        // The shipped list (data/SOURCE.md): at least 100,000 entries, sorted for binary search.
        assert!(common_list_len() >= 100_000, "list has {}", common_list_len());
        assert!(COMMON.is_sorted());
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
}
