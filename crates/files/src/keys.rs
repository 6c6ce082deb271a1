//! The key hierarchy. A master key (32 random bytes in a file under `<data-dir>/keys/blob-master/`,
//! mode 0600, never in the database) seals each organisation's AES-256 data keys, which live in
//! `blob_keys` only in sealed form; a data key seals that organisation's blobs (through a key
//! derived per blob, [`crate::crypto`]). Neither the database nor the bucket alone opens a file.
//!
//! Rotation: a new master key file (`NNNN.key`, the highest number is current) seals from then
//! on; older files still open what they sealed; `countersign admin rotate-blob-key` writes the new
//! file and re-seals every data key under it (blobs are not rewritten: their data keys do not
//! change). A sealed data key names its master key by id and is bound to its organisation and
//! version (AES-GCM associated data), so a row copied to another organisation does not open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use store::{BypassTx, TenantTx};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::FilesError;

const WRAP_CONTEXT: &[u8] = b"countersign blob data key v1";

fn key_error(e: impl std::fmt::Display) -> FilesError {
    FilesError::Key(e.to_string())
}

/// One master key and its id (first 8 bytes of SHA-256 over a label and the key, hex).
struct MasterKey {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl MasterKey {
    fn new(key: [u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"countersign blob master key id\0");
        h.update(key);
        Self { id: hex::encode(&h.finalize()[..8]), key: Zeroizing::new(key) }
    }
}

struct Ring {
    current: String,
    keys: HashMap<String, MasterKey>,
}

/// The master keys this process knows: the current one seals, every one opens.
pub struct Keyring {
    dir: Option<PathBuf>,
    ring: RwLock<Ring>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("dir", &self.dir).field("current", &self.current_id()).finish_non_exhaustive()
    }
}

/// The numbered key files in `dir`, lowest first.
fn key_files(dir: &Path) -> Result<Vec<(u32, PathBuf)>, FilesError> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(key_error(format!("{}: {e}", dir.display()))),
    };
    for entry in entries {
        let path = entry.map_err(key_error)?.path();
        let n = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".key"))
            .filter(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(n) = n {
            files.push((n, path));
        }
    }
    files.sort();
    Ok(files)
}

fn read_ring(dir: &Path) -> Result<Ring, FilesError> {
    let files = key_files(dir)?;
    let Some((_, newest)) = files.last() else {
        return Err(key_error(format!(
            "{}: no master key (NNNN.key); `countersign serve` creates the first one",
            dir.display()
        )));
    };
    let mut keys = HashMap::new();
    let mut current = String::new();
    for (_, path) in &files {
        let k = MasterKey::new(audit::load_seed(path).map_err(key_error)?);
        if path == newest {
            current.clone_from(&k.id);
        }
        keys.insert(k.id.clone(), k);
    }
    Ok(Ring { current, keys })
}

impl Keyring {
    /// The key files in `dir`, creating the directory (0700) and the first key (0600) when there
    /// is none. Only `serve` and `demo` call this, at the default path.
    ///
    /// # Errors
    /// When the directory or a key file cannot be read or written.
    pub fn load_or_create(dir: &Path) -> Result<Self, FilesError> {
        if key_files(dir)?.is_empty() {
            create_dir_private(dir)?;
            audit::load_or_create_seed(&dir.join("0001.key")).map_err(key_error)?;
        }
        Self::load(dir)
    }

    /// The key files in `dir` (which must hold at least one).
    ///
    /// # Errors
    /// When there is none or one cannot be read.
    pub fn load(dir: &Path) -> Result<Self, FilesError> {
        let ring = read_ring(dir)?;
        Ok(Self { dir: Some(dir.to_owned()), ring: RwLock::new(ring) })
    }

    /// A key that lives only in this process (tests; a server without a data directory).
    #[must_use]
    pub fn ephemeral() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let k = MasterKey::new(key);
        let ring = Ring { current: k.id.clone(), keys: HashMap::from([(k.id.clone(), k)]) };
        Self { dir: None, ring: RwLock::new(ring) }
    }

    /// Writes the next master key file (0600) into `dir` and returns its id. Seals nothing by
    /// itself: re-seal the data keys with [`rewrap_all`].
    ///
    /// # Errors
    /// When the directory cannot be read or the file written.
    pub fn add_next(&self) -> Result<String, FilesError> {
        let Some(dir) = &self.dir else { return Err(key_error("an in-memory keyring cannot rotate")) };
        let next = key_files(dir)?.last().map_or(1, |(n, _)| n + 1);
        if next > 9999 {
            return Err(key_error("too many master keys (9999)"));
        }
        create_dir_private(dir)?;
        audit::load_or_create_seed(&dir.join(format!("{next:04}.key"))).map_err(key_error)?;
        self.reload()?;
        Ok(self.current_id())
    }

    fn reload(&self) -> Result<(), FilesError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let ring = read_ring(dir)?;
        *self.ring.write().map_err(|_| key_error("keyring lock poisoned"))? = ring;
        Ok(())
    }

    /// The id of the key that seals new data keys.
    #[must_use]
    pub fn current_id(&self) -> String {
        self.ring.read().map(|r| r.current.clone()).unwrap_or_default()
    }

    fn seal(&self, tenant: Uuid, version: i32, data: &[u8; 32]) -> Result<(String, Vec<u8>), FilesError> {
        // Sealing is rare (an organisation's first upload, a rotation): read the files again so a
        // server started before `rotate-blob-key` seals under the new key too.
        self.reload()?;
        let ring = self.ring.read().map_err(|_| key_error("keyring lock poisoned"))?;
        let master = ring.keys.get(&ring.current).ok_or_else(|| key_error("no current master key"))?;
        let cipher = Aes256Gcm::new_from_slice(master.key.as_slice()).map_err(key_error)?;
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let aad = wrap_aad(tenant, version);
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: data, aad: &aad })
            .map_err(|_| key_error("sealing a data key failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok((master.id.clone(), out))
    }

    fn open(&self, master_id: &str, tenant: Uuid, version: i32, wrapped: &[u8]) -> Result<[u8; 32], FilesError> {
        // A key added by `rotate-blob-key` after this process started: read the files again.
        let known = self.ring.read().map(|r| r.keys.contains_key(master_id)).unwrap_or(false);
        if !known {
            self.reload()?;
        }
        let ring = self.ring.read().map_err(|_| key_error("keyring lock poisoned"))?;
        let master = ring.keys.get(master_id).ok_or_else(|| {
            key_error(format!("data key v{version} is sealed under master key {master_id}, which this server lacks"))
        })?;
        if wrapped.len() != 12 + 32 + 16 {
            return Err(FilesError::Integrity("a sealed data key has the wrong length".into()));
        }
        let cipher = Aes256Gcm::new_from_slice(master.key.as_slice()).map_err(key_error)?;
        let aad = wrap_aad(tenant, version);
        let plain = Zeroizing::new(
            cipher.decrypt(Nonce::from_slice(&wrapped[..12]), Payload { msg: &wrapped[12..], aad: &aad }).map_err(
                |_| FilesError::Integrity(format!("data key v{version} does not open for this organisation")),
            )?,
        );
        let mut key = [0u8; 32];
        key.copy_from_slice(&plain);
        Ok(key)
    }
}

fn create_dir_private(dir: &Path) -> Result<(), FilesError> {
    std::fs::create_dir_all(dir).map_err(|e| key_error(format!("{}: {e}", dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| key_error(format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}

fn wrap_aad(tenant: Uuid, version: i32) -> Vec<u8> {
    let mut aad = WRAP_CONTEXT.to_vec();
    aad.extend_from_slice(tenant.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// An organisation's data key, opened. Zeroed when dropped; never printed.
pub struct DataKey {
    pub tenant: Uuid,
    pub id: Uuid,
    pub version: i32,
    pub(crate) key: Zeroizing<[u8; 32]>,
}

impl DataKey {
    /// A fresh random key that is stored nowhere, for sealing in memory (the files benchmark
    /// measures the cipher alone with it): nothing sealed under it can ever be opened again.
    #[must_use]
    pub fn unstored(tenant: Uuid) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut_slice());
        Self { tenant, id: Uuid::nil(), version: 1, key }
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("tenant", &self.tenant)
            .field("id", &self.id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// The organisation's newest data key, created (version 1, sealed under the current master key)
/// the first time it is needed. Two first uploads racing both end with the same key.
///
/// # Errors
/// When the key cannot be read, created or opened.
pub async fn current(tx: &mut TenantTx, ring: &Keyring) -> Result<DataKey, FilesError> {
    let tenant = tx.tenant().as_uuid();
    let newest = sqlx::query!("select id from blob_keys where tenant_id = $1 order by version desc limit 1", tenant)
        .fetch_optional(tx.conn())
        .await?;
    if let Some(k) = newest {
        return by_id(tx, ring, k.id).await;
    }
    let mut fresh = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(fresh.as_mut_slice());
    let (master, wrapped) = ring.seal(tenant, 1, &fresh)?;
    sqlx::query!(
        "insert into blob_keys (tenant_id, id, version, wrapped, master_key_id) values ($1, $2, 1, $3, $4)
         on conflict (tenant_id, version) do nothing",
        tenant,
        Uuid::now_v7(),
        wrapped,
        master
    )
    .execute(tx.conn())
    .await?;
    let first = sqlx::query_scalar!("select id from blob_keys where tenant_id = $1 and version = 1", tenant)
        .fetch_one(tx.conn())
        .await?;
    by_id(tx, ring, first).await
}

/// Data key `id` of the transaction's organisation.
///
/// # Errors
/// `NotFound` when there is no such key; `Integrity` when it does not open for this organisation.
pub async fn by_id(tx: &mut TenantTx, ring: &Keyring, id: Uuid) -> Result<DataKey, FilesError> {
    let tenant = tx.tenant().as_uuid();
    let k = sqlx::query!(
        "select version, wrapped, master_key_id from blob_keys where tenant_id = $1 and id = $2",
        tenant,
        id
    )
    .fetch_optional(tx.conn())
    .await?
    .ok_or(FilesError::NotFound)?;
    let key = ring.open(&k.master_key_id, tenant, k.version, &k.wrapped)?;
    Ok(DataKey { tenant, id, version: k.version, key: Zeroizing::new(key) })
}

/// Re-seals every organisation's data keys under the current master key (after
/// [`Keyring::add_next`]); returns how many were re-sealed. One `file.keys_rewrapped` event per
/// organisation affected.
///
/// # Errors
/// When a key does not open (its master key file is missing) — nothing is changed then.
pub async fn rewrap_all(tx: &mut BypassTx, ring: &Keyring, who: &audit::Who) -> Result<u64, FilesError> {
    rewrap_all_with_progress(tx, ring, who, &mut |_, _| {}).await
}

/// [`rewrap_all`], telling `progress` (keys re-sealed so far, keys to re-seal) after each key.
///
/// # Errors
/// As [`rewrap_all`].
pub async fn rewrap_all_with_progress(
    tx: &mut BypassTx,
    ring: &Keyring,
    who: &audit::Who,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<u64, FilesError> {
    let current = ring.current_id();
    let rows = sqlx::query!(
        "select tenant_id, id, version, wrapped, master_key_id from blob_keys
          where master_key_id <> $1 order by tenant_id, version for update",
        current
    )
    .fetch_all(tx.conn())
    .await?;
    let mut per_tenant: std::collections::BTreeMap<Uuid, u64> = std::collections::BTreeMap::new();
    let total = rows.len() as u64;
    progress(0, total);
    for (done, r) in (1..).zip(&rows) {
        let key = Zeroizing::new(ring.open(&r.master_key_id, r.tenant_id, r.version, &r.wrapped)?);
        let (master, wrapped) = ring.seal(r.tenant_id, r.version, &key)?;
        sqlx::query!(
            "update blob_keys set wrapped = $3, master_key_id = $4, rewrapped_at = now()
              where tenant_id = $1 and id = $2",
            r.tenant_id,
            r.id,
            wrapped,
            master
        )
        .execute(tx.conn())
        .await?;
        *per_tenant.entry(r.tenant_id).or_default() += 1;
        progress(done, total);
    }
    for (tenant, n) in per_tenant {
        let tenant = store::TenantId::from_uuid(tenant).map_err(|_| FilesError::NotFound)?;
        let changes = audit::Changes::none().field("data_keys", 0, n).field("master_key_id", None::<&str>, &current);
        let event =
            audit::Event::new("file.keys_rewrapped", audit::Entity::new("tenant", Some(tenant.to_string()))?, changes)?;
        audit::record_for(tx, tenant, &who.actor, &who.origin, &event).await?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_data_key_opens_only_for_its_organisation_and_version() {
        let ring = Keyring::ephemeral();
        let (t, other) = (Uuid::new_v4(), Uuid::new_v4());
        let key = [7u8; 32];
        let (id, wrapped) = ring.seal(t, 1, &key).expect("seal");
        assert_eq!(ring.open(&id, t, 1, &wrapped).expect("open"), key);
        assert!(matches!(ring.open(&id, other, 1, &wrapped), Err(FilesError::Integrity(_))));
        assert!(matches!(ring.open(&id, t, 2, &wrapped), Err(FilesError::Integrity(_))));
        let mut flipped = wrapped.clone();
        flipped[20] ^= 1;
        assert!(matches!(ring.open(&id, t, 1, &flipped), Err(FilesError::Integrity(_))));
    }

    #[test]
    fn rotation_seals_with_the_new_key_and_old_keys_still_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("blob-master");
        let ring = Keyring::load_or_create(&keys).expect("create");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(keys.join("0001.key")).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let t = Uuid::new_v4();
        let (old_id, old) = ring.seal(t, 1, &[1; 32]).expect("seal");
        let new_id = ring.add_next().expect("rotate");
        assert_ne!(old_id, new_id);
        let (id, _) = ring.seal(t, 2, &[2; 32]).expect("seal");
        assert_eq!(id, new_id);
        assert_eq!(ring.open(&old_id, t, 1, &old).expect("old key still opens"), [1; 32]);
        // Another process (a server started before the rotation) reads the new file on demand.
        let again = Keyring::load(&keys).expect("load");
        assert_eq!(again.current_id(), new_id);
        assert!(Keyring::load(&dir.path().join("missing")).is_err());
    }
}
