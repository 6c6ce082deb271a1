//! Files: what an organisation uploads, stored encrypted and handed out only through short-lived
//! links signed for one person.
//!
//! - [`storage`]: object storage behind `object_store` (the local disk by default, S3 when
//!   configured); object keys are made from ids only (`tenants/<tenant>/blobs/<uuid>`).
//! - [`keys`]: the key hierarchy — master keys in files under `<data-dir>/keys`, each
//!   organisation's AES-256 data keys sealed under them in the database, rotation.
//! - [`crypto`]: the on-disk format: STREAM (`aead::stream::StreamBE32`) over AES-256-GCM with a
//!   key derived per blob, chunk by chunk, so nothing is ever held whole.
//! - [`upload`] / [`download`]: streaming in (size limit enforced while reading, type sniffed
//!   from content) and out (ranges, integrity checked chunk by chunk).
//! - [`links`]: HMAC-signed download links over (tenant, blob, person, disposition, expiry).
//! - [`blobs`]: the `blobs` rows, soft delete, restore, purge, and their audit events.
//!
//! Who may see a file is not decided here: the policy engine decides (`attachment.*` actions,
//! asked by the approvals crate for the document the file is attached to), and the functions that
//! hand out or change a file require the resulting `authz::Permit`.

pub mod blobs;
pub mod crypto;
pub mod download;
mod error;
pub mod keys;
pub mod links;
pub mod names;
pub mod sniff;
pub mod storage;
pub mod upload;

pub use error::FilesError;
pub use keys::{DataKey, Keyring};
pub use links::{Disposition, Link, LinkKey};
pub use names::FileName;
pub use sniff::MediaType;
pub use storage::Storage;

/// The default upload limit: 25 MiB.
pub const DEFAULT_MAX_UPLOAD: u64 = 25 * 1024 * 1024;

/// What a server needs to handle files: where blobs live, the master keys, the link key and the
/// upload limit.
#[derive(Debug)]
pub struct Files {
    pub storage: Storage,
    pub keys: Keyring,
    pub links: LinkKey,
    /// Bytes; larger uploads are refused while they stream.
    pub max_upload: u64,
}

impl Files {
    /// Storage in a fresh directory under the system's temporary directory, keys that live only
    /// in this process (tests, and any `AppState` not configured by a server).
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn ephemeral() -> Result<Self, FilesError> {
        let dir = std::env::temp_dir().join(format!("countersign-blobs-{}", uuid::Uuid::new_v4()));
        Ok(Self {
            storage: Storage::local(&dir)?,
            keys: Keyring::ephemeral(),
            links: LinkKey::ephemeral(),
            max_upload: DEFAULT_MAX_UPLOAD,
        })
    }
}
