//! The server's Ed25519 checkpoint key: generated on first start into a 0600 file, loaded after.
//! Only the public half ever leaves the process (`countersign audit public-key`, bundles).

use std::fmt;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::AuditError;

pub struct CheckpointKey {
    signing: SigningKey,
    key_id: String,
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointKey").field("key_id", &self.key_id).field("secret", &"[redacted]").finish()
    }
}

/// Reads a 32-byte seed (64 hex digits) from an existing key file. A missing file is an error
/// naming the path: keys are generated only where [`load_or_create_seed`] is called (`serve`
/// and `demo` at their default paths), never silently by a command that merely reads one.
pub fn load_seed(path: &Path) -> Result<[u8; 32], AuditError> {
    let bad = |e: &dyn fmt::Display| AuditError::Key(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim()).map_err(|_| bad(&"expected 64 hex digits"))?;
            bytes.try_into().map_err(|_| bad(&"expected 64 hex digits"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(bad(&"no such key file")),
        Err(e) => Err(bad(&e)),
    }
}

/// Reads a 32-byte Ed25519 seed (64 hex digits) from `path`, or generates one into a new file
/// (parent directories included) readable by its owner only. Only `serve` (at a default path)
/// and `demo` call this; everything else uses [`load_seed`].
pub fn load_or_create_seed(path: &Path) -> Result<[u8; 32], AuditError> {
    let bad = |e: &dyn fmt::Display| AuditError::Key(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(_) => load_seed(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = create_seed(path)?;
            tracing::info!(path = %path.display(), "generated a new server key");
            Ok(seed)
        }
        Err(e) => Err(bad(&e)),
    }
}

/// Generates a 32-byte seed into a new file at `path` (parent directories included) readable
/// by its owner only (0600). An existing file is never overwritten: that is an error naming it
/// (`countersign keygen`, and first start at a default path).
pub fn create_seed(path: &Path) -> Result<[u8; 32], AuditError> {
    let bad = |e: &dyn fmt::Display| AuditError::Key(format!("{}: {e}", path.display()));
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| bad(&e))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(bad(&"already exists (a key file is never overwritten)"));
        }
        Err(e) => return Err(bad(&e)),
    };
    writeln!(f, "{}", hex::encode(seed)).map_err(|e| bad(&e))?;
    f.sync_all().map_err(|e| bad(&e))?;
    Ok(seed)
}

/// First 16 hex digits of SHA-256 over the raw public key.
#[must_use]
pub fn key_id(public: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(public.as_bytes())[..8])
}

impl CheckpointKey {
    /// Loads the key at `path`, or creates it (parent directories included) with mode 0600.
    pub fn load_or_create(path: &Path) -> Result<Self, AuditError> {
        let key = Self::from_seed(load_or_create_seed(path)?);
        tracing::debug!(key_id = %key.key_id, path = %path.display(), "audit checkpoint key ready");
        Ok(key)
    }

    /// Loads an existing key file; a missing one is an error (nothing is written).
    pub fn load(path: &Path) -> Result<Self, AuditError> {
        Ok(Self::from_seed(load_seed(path)?))
    }

    #[must_use]
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let key_id = key_id(&signing.verifying_key());
        Self { signing, key_id }
    }

    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    #[must_use]
    pub fn public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    #[must_use]
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

/// The public keys a verifier trusts, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(Vec<(String, VerifyingKey)>);

impl TrustedKeys {
    #[must_use]
    pub fn of(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        Self(keys.into_iter().map(|k| (key_id(&k), k)).collect())
    }

    /// Parses a public key file: 64 hex digits or a PEM `PUBLIC KEY` block.
    /// Lines starting with `#` are comments (`countersign audit public-key` prints the key id so).
    pub fn parse_public(text: &str) -> Result<VerifyingKey, AuditError> {
        let body: String = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
        let t = body.trim();
        if t.starts_with("-----BEGIN") {
            use ed25519_dalek::pkcs8::DecodePublicKey;
            return VerifyingKey::from_public_key_pem(t).map_err(|e| AuditError::Key(format!("bad PEM: {e}")));
        }
        let bytes = hex::decode(t).map_err(|_| AuditError::Key("expected 64 hex digits or PEM".into()))?;
        let raw: [u8; 32] = bytes.try_into().map_err(|_| AuditError::Key("expected 32 bytes".into()))?;
        VerifyingKey::from_bytes(&raw).map_err(|e| AuditError::Key(format!("not an Ed25519 point: {e}")))
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The trusted key with this key id.
    #[must_use]
    pub fn get(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.0.iter().find(|(id, _)| id == key_id).map(|(_, k)| k)
    }

    /// The key ids trusted, in the order given.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(id, _)| id.as_str())
    }

    /// `Ok(true)` when `key_id` is trusted and the signature is valid; `Ok(false)` for a bad
    /// signature; `Err` naming the problem when the key is unknown.
    pub fn verify(&self, key_id: &str, message: &[u8], signature: &[u8]) -> Result<bool, String> {
        let Some((_, key)) = self.0.iter().find(|(id, _)| id == key_id) else {
            return Err(format!("signed by unknown key {key_id}"));
        };
        let Ok(sig) = Signature::from_slice(signature) else { return Ok(false) };
        Ok(key.verify(message, &sig).is_ok())
    }
}

/// `-----BEGIN PUBLIC KEY-----` (SPKI) text for a verifying key.
pub fn public_pem(key: &VerifyingKey) -> Result<String, AuditError> {
    key.to_public_key_pem(LineEnding::LF).map_err(|e| AuditError::Key(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_once_private_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("cs-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("keys/audit.key");
        let a = CheckpointKey::load_or_create(&path).expect("create");
        let b = CheckpointKey::load_or_create(&path).expect("load");
        assert_eq!(a.key_id(), b.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(!format!("{a:?}").contains(&std::fs::read_to_string(&path).expect("read")[..16]));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn loading_a_missing_key_writes_nothing() {
        let dir = std::env::temp_dir().join(format!("cs-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("keys/audit.key");
        let e = CheckpointKey::load(&path).expect_err("missing");
        assert!(e.to_string().contains("no such key file") && e.to_string().contains("audit.key"), "{e}");
        assert!(!dir.exists(), "loading created {}", dir.display());
    }

    #[test]
    fn forged_or_foreign_signatures_fail() {
        let k = CheckpointKey::from_seed([7; 32]);
        let other = CheckpointKey::from_seed([8; 32]);
        let trusted = TrustedKeys::of([k.public()]);
        let sig = k.sign(b"msg");
        assert_eq!(trusted.verify(k.key_id(), b"msg", &sig), Ok(true));
        assert_eq!(trusted.verify(k.key_id(), b"msh", &sig), Ok(false));
        assert!(trusted.verify(other.key_id(), b"msg", &other.sign(b"msg")).is_err());
        let pem = public_pem(&k.public()).expect("pem");
        assert_eq!(TrustedKeys::parse_public(&pem).expect("parse pem"), k.public());
        assert_eq!(TrustedKeys::parse_public(&hex::encode(k.public().as_bytes())).expect("hex"), k.public());
        assert!(TrustedKeys::parse_public("zz").is_err());
    }
}
