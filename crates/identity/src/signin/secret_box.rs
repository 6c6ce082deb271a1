//! Secrets at rest (TOTP seeds): AES-256-GCM with a random 96-bit nonce per seal, and the row's
//! identity as associated data, so a ciphertext copied to another user's row does not open.
//!
//! Keys live in files (64 hex digits, 0600), never in the database; a row names the key that
//! sealed it by key id (first 16 hex digits of SHA-256 of the key). Rotation: start the server
//! with a new current key and the old one(s) as `--mfa-old-key-file`; rows sealed under an old key
//! still open and are re-sealed under the current key on their next successful use, and
//! `countersign admin rotate-mfa-key` re-seals all of them at once.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest, Sha256};

use crate::IdentityError;

/// A sealed secret as stored: which key, which nonce, ciphertext with its 16-byte tag.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct BoxKey {
    id: String,
    cipher: Aes256Gcm,
}

impl BoxKey {
    fn new(key: &[u8; 32]) -> Self {
        Self { id: key_id(key), cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)) }
    }
}

/// First 16 hex digits of SHA-256 over the raw key: names a key without revealing it.
#[must_use]
pub fn key_id(key: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(key)[..8])
}

/// The current key (seals and opens) and older keys (open only).
#[derive(Clone)]
pub struct SecretBox {
    current: BoxKey,
    old: Vec<BoxKey>,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretBox")
            .field("current", &self.current.id)
            .field("old", &self.old.iter().map(|k| k.id.as_str()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What opening a sealed secret gave: the plaintext, and whether it was sealed under an old key
/// (the caller should store a fresh seal).
pub struct Opened {
    pub plaintext: SecretSlice<u8>,
    pub stale: bool,
}

impl SecretBox {
    #[must_use]
    pub fn new(current: &[u8; 32], old: &[[u8; 32]]) -> Self {
        let current = BoxKey::new(current);
        let old = old.iter().map(BoxKey::new).filter(|k| k.id != current.id).collect();
        Self { current, old }
    }

    /// A box with a fresh random key that lives only in this process (tests, and servers whose
    /// caller did not configure a key file: secrets sealed by it do not survive a restart).
    #[must_use]
    pub fn ephemeral() -> Self {
        let key = Aes256Gcm::generate_key(OsRng);
        let mut k = [0u8; 32];
        k.copy_from_slice(&key);
        Self::new(&k, &[])
    }

    /// Loads the current key file and the old key files, all of which must exist (a missing old
    /// key would silently strand every row sealed under it; a missing current one would seal
    /// under a key nobody else holds).
    pub fn load(current: &Path, old: &[&Path]) -> Result<Self, IdentityError> {
        Self::with_old_files(&audit::load_seed(current)?, old)
    }

    /// The current key as given (the caller loaded or, on first start, generated it) and the
    /// old key files, which must exist.
    pub fn with_old_files(cur: &[u8; 32], old: &[&Path]) -> Result<Self, IdentityError> {
        let mut olds = Vec::with_capacity(old.len());
        for p in old {
            if !p.exists() {
                return Err(IdentityError::Internal(format!("old MFA key file {} does not exist", p.display())));
            }
            olds.push(audit::load_seed(p)?);
        }
        Ok(Self::new(cur, &olds))
    }

    #[must_use]
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plaintext` under the current key, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, IdentityError> {
        let nonce = Aes256Gcm::generate_nonce(OsRng);
        let ciphertext = self
            .current
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad })
            .map_err(|_| IdentityError::Internal("sealing failed".into()))?;
        Ok(Sealed { key_id: self.current.id.clone(), nonce: nonce.to_vec(), ciphertext })
    }

    /// Opens a sealed secret with the key its id names. A wrong key, another row's AAD, a
    /// tampered nonce or ciphertext, or an unknown key id all fail the same way.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Opened, IdentityError> {
        let fail = || IdentityError::Internal("sealed secret does not open (wrong key, row or tampered)".into());
        let (key, stale) = if sealed.key_id == self.current.id {
            (&self.current, false)
        } else {
            (self.old.iter().find(|k| k.id == sealed.key_id).ok_or_else(fail)?, true)
        };
        if sealed.nonce.len() != 12 {
            return Err(fail());
        }
        let plaintext = key
            .cipher
            .decrypt(Nonce::from_slice(&sealed.nonce), Payload { msg: &sealed.ciphertext, aad })
            .map_err(|_| fail())?;
        Ok(Opened { plaintext: SecretSlice::from(plaintext), stale })
    }

    /// Opens and, when sealed under an old key, seals again under the current one.
    pub fn reseal(&self, sealed: &Sealed, aad: &[u8]) -> Result<Option<Sealed>, IdentityError> {
        let opened = self.open(sealed, aad)?;
        if opened.stale { self.seal(opened.plaintext.expose_secret(), aad).map(Some) } else { Ok(None) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AAD: &[u8] = b"user:1";

    #[test]
    fn round_trip_with_fresh_nonces() {
        let b = SecretBox::new(&[1; 32], &[]);
        let s1 = b.seal(b"seed bytes", AAD).expect("seal");
        let s2 = b.seal(b"seed bytes", AAD).expect("seal");
        assert_ne!(s1.nonce, s2.nonce, "nonces must not repeat");
        assert_ne!(s1.ciphertext, s2.ciphertext);
        assert_eq!(s1.key_id, key_id(&[1; 32]));
        assert_eq!(s1.key_id.len(), 16);
        let o = b.open(&s1, AAD).expect("open");
        assert_eq!(o.plaintext.expose_secret(), b"seed bytes");
        assert!(!o.stale);
    }

    #[test]
    fn tampered_ciphertext_nonce_or_key_id_fails() {
        let b = SecretBox::new(&[1; 32], &[]);
        let s = b.seal(b"seed bytes", AAD).expect("seal");
        let mut t = s.clone();
        t.ciphertext[0] ^= 1;
        assert!(b.open(&t, AAD).is_err(), "flipped ciphertext bit");
        let mut t = s.clone();
        let last = t.ciphertext.len() - 1;
        t.ciphertext[last] ^= 0x80;
        assert!(b.open(&t, AAD).is_err(), "flipped tag bit");
        let mut t = s.clone();
        t.nonce[3] ^= 1;
        assert!(b.open(&t, AAD).is_err(), "other nonce");
        let mut t = s.clone();
        t.nonce.pop();
        assert!(b.open(&t, AAD).is_err(), "short nonce must not panic");
        let mut t = s.clone();
        t.key_id = "0000000000000000".into();
        assert!(b.open(&t, AAD).is_err(), "unknown key id");
        let mut t = s;
        t.ciphertext.truncate(3);
        assert!(b.open(&t, AAD).is_err(), "truncated");
    }

    #[test]
    fn another_rows_aad_fails() {
        let b = SecretBox::new(&[1; 32], &[]);
        let s = b.seal(b"seed bytes", AAD).expect("seal");
        assert!(b.open(&s, b"user:2").is_err());
        assert!(b.open(&s, b"").is_err());
    }

    #[test]
    fn wrong_key_fails_even_under_the_same_key_id() {
        let a = SecretBox::new(&[1; 32], &[]);
        let b = SecretBox::new(&[2; 32], &[]);
        let s = a.seal(b"seed bytes", AAD).expect("seal");
        assert!(b.open(&s, AAD).is_err());
        // An attacker who relabels the row with b's key id still cannot open it.
        let relabelled = Sealed { key_id: b.current_key_id().to_owned(), ..s };
        assert!(b.open(&relabelled, AAD).is_err());
    }

    #[test]
    fn old_keys_open_and_reseal_under_the_current_key() {
        let old = SecretBox::new(&[1; 32], &[]);
        let s = old.seal(b"seed bytes", AAD).expect("seal");
        let rotated = SecretBox::new(&[2; 32], &[[1; 32]]);
        let o = rotated.open(&s, AAD).expect("old key still opens");
        assert!(o.stale);
        let fresh = rotated.reseal(&s, AAD).expect("reseal").expect("was stale");
        assert_eq!(fresh.key_id, rotated.current_key_id());
        assert!(old.open(&fresh, AAD).is_err(), "the old key alone no longer opens it");
        assert!(rotated.reseal(&fresh, AAD).expect("reseal").is_none(), "current seals stay");
        assert!(format!("{rotated:?}").contains(&key_id(&[1; 32])));
    }
}
