//! Streaming uploads. The body is read chunk by chunk: the size limit is checked on every
//! chunk (the refusal comes the moment it is passed, and nothing read so far is kept), the type
//! is sniffed from the first 64 KiB before anything is written, and the plaintext is hashed and
//! sealed in 64 KiB chunks, a batch of 8 at a time on a blocking thread while the next batch
//! arrives, and handed to a multipart write. Memory per upload stays at two batches, the sniff
//! window and the storage part buffers (1 MiB on disk, 5 MiB for S3), whatever the file's size.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use object_store::{ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::FilesError;
use crate::crypto::{BlobCipher, CHUNK, Header, TAG};
use crate::keys::DataKey;
use crate::names::FileName;
use crate::sniff::{MediaType, SNIFF_BYTES, sniff};
use crate::storage::Storage;

/// A blob written to storage, not yet recorded ([`crate::blobs::record`] does that in the
/// caller's transaction; if that fails, [`Storage::remove`] takes the object away again).
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: Uuid,
    pub tenant: Uuid,
    pub size: u64,
    pub sha256: [u8; 32],
    pub media_type: MediaType,
    pub name: FileName,
    /// The data key that sealed it.
    pub key_id: Uuid,
}

/// Parts in flight at once (bounds memory alongside the part size).
const CONCURRENT_PARTS: usize = 2;

struct Intake<S> {
    body: S,
    total: u64,
    max: u64,
    ended: bool,
}

impl<S, E> Intake<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    /// The next piece of the body, counted against the limit.
    async fn next(&mut self) -> Result<Option<Bytes>, FilesError> {
        if self.ended {
            return Ok(None);
        }
        match self.body.next().await {
            None => {
                self.ended = true;
                Ok(None)
            }
            Some(Err(e)) => Err(FilesError::Body(e.to_string())),
            Some(Ok(b)) => {
                self.total += b.len() as u64;
                if self.total > self.max {
                    return Err(FilesError::TooLarge { limit: self.max });
                }
                Ok(Some(b))
            }
        }
    }
}

/// Streams `body` into a new blob of `key`'s organisation, sealed under `key`.
///
/// # Errors
/// `TooLarge` once more than `max` bytes arrived, `TypeRefused` when the content is not on the
/// allow list, `Empty`, `Body` when the client's stream fails, `Storage` when the write fails.
/// Nothing is left in storage after an error.
pub async fn put<S, E>(
    storage: &Storage,
    key: &DataKey,
    name: FileName,
    body: S,
    max: u64,
) -> Result<Stored, FilesError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut intake = Intake { body, total: 0, max, ended: false };
    let mut head = Vec::with_capacity(SNIFF_BYTES + CHUNK);
    while head.len() < SNIFF_BYTES {
        match intake.next().await? {
            Some(b) => head.extend_from_slice(&b),
            None => break,
        }
    }
    if head.is_empty() {
        return Err(FilesError::Empty);
    }
    let window = &head[..head.len().min(SNIFF_BYTES)];
    let media_type =
        sniff(window, intake.ended && head.len() <= SNIFF_BYTES, &name).map_err(|r| FilesError::TypeRefused(r.0))?;

    let id = Uuid::new_v4();
    let version = u32::try_from(key.version).map_err(|_| FilesError::Key("bad data key version".into()))?;
    let header = Header::fresh(version);
    let cipher = BlobCipher::new(key, id, &header)?;
    let path = Storage::key(key.tenant, id);
    let upload = storage.inner().put_multipart(&path).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, storage.part_size());
    writer.write(&header.encode());
    let sealer = Sealer { cipher, index: 0 };
    let sha256 = match pump(&mut intake, &mut writer, sealer, head).await {
        Ok(sha256) => {
            if let Err(e) = writer.finish().await {
                // A completed-but-failed write may have left the object behind.
                let _ = storage.remove(key.tenant, id).await;
                return Err(e.into());
            }
            sha256
        }
        Err(e) => {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(error = %abort, "aborting a refused upload failed");
            }
            return Err(e);
        }
    };
    Ok(Stored { id, tenant: key.tenant, size: intake.total, sha256, media_type, name, key_id: key.id })
}

/// Streams the file at `path` into a new blob, as [`put`] does with a request body (the same
/// limit, sniffing and sealing; read 64 KiB at a time). For the operator who stores files that
/// were attached by reference (`countersign admin attach-reference`).
///
/// # Errors
/// As [`put`]; `Body` when the file cannot be opened or read.
pub async fn put_path(
    storage: &Storage,
    key: &DataKey,
    name: FileName,
    path: &std::path::Path,
    max: u64,
) -> Result<Stored, FilesError> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await.map_err(|e| FilesError::Body(format!("{}: {e}", path.display())))?;
    let chunks = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    put(storage, key, name, Box::pin(chunks), max).await
}

/// Plaintext chunks sealed per step (512 KiB).
const BATCH: usize = 8;

/// Seals chunks in order, a batch at a time.
struct Sealer {
    cipher: BlobCipher,
    index: u64,
}

impl Sealer {
    /// A buffer for sealing `plain`, allocated by the caller's (async) thread: memory freed where
    /// it was taken stays in those threads' few malloc arenas instead of one per blocking thread.
    fn room(plain: &[u8], last: bool) -> BytesMut {
        BytesMut::with_capacity(plain.len() + (plain.len() / CHUNK + usize::from(last)) * TAG)
    }

    /// Seals `plain` (whole chunks, then, when `last`, the remainder as the final chunk, possibly
    /// empty) into `out` ([`Sealer::room`] for it), chunk by chunk in place.
    fn seal(&mut self, plain: &[u8], last: bool, mut out: BytesMut) -> Result<Bytes, FilesError> {
        let mut rest = plain;
        loop {
            let is_last = last && rest.len() < CHUNK;
            if rest.len() < CHUNK && !is_last {
                break;
            }
            let n = rest.len().min(CHUNK);
            let at = out.len();
            out.extend_from_slice(&rest[..n]);
            out.resize(at + n + TAG, 0);
            self.cipher.seal(self.index, is_last, &mut out[at..])?;
            self.index += 1;
            rest = &rest[n..];
            if is_last {
                break;
            }
        }
        Ok(out.freeze())
    }
}

/// The sealer and the hasher: at hand, or each busy with the previous batch on a blocking thread.
#[allow(clippy::large_enum_variant)] // one per upload, on its task: boxing the key would only add an allocation
enum Stage {
    Idle(Sealer, Sha256),
    Busy(tokio::task::JoinHandle<(Sealer, Result<Bytes, FilesError>)>, tokio::task::JoinHandle<Sha256>),
}

fn stopped(e: tokio::task::JoinError) -> FilesError {
    FilesError::Key(format!("sealing stopped: {e}"))
}

/// Seals every whole chunk as soon as it is there and the remainder (possibly empty) as the
/// last, a batch at a time: the batch is sealed on one blocking thread and hashed on another
/// (both read the same plaintext) while the next batch of the body arrives.
async fn pump<S, E>(
    intake: &mut Intake<S>,
    writer: &mut WriteMultipart,
    sealer: Sealer,
    head: Vec<u8>,
) -> Result<[u8; 32], FilesError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut pending = BytesMut::from(&head[..]);
    let mut stage = Stage::Idle(sealer, Sha256::new());
    loop {
        while pending.len() < BATCH * CHUNK && !intake.ended {
            match intake.next().await? {
                Some(b) => pending.extend_from_slice(&b),
                None => break,
            }
        }
        let last = intake.ended;
        let take = if last { pending.len() } else { pending.len() / CHUNK * CHUNK };
        let plain = pending.split_to(take).freeze();
        let (mut sealer, mut hasher) = match stage {
            Stage::Idle(sealer, hasher) => (sealer, hasher),
            Stage::Busy(sealing, hashing) => {
                let (sealer, sealed) = sealing.await.map_err(stopped)?;
                let hasher = hashing.await.map_err(stopped)?;
                writer.wait_for_capacity(CONCURRENT_PARTS).await?;
                writer.put(sealed?);
                (sealer, hasher)
            }
        };
        if last {
            // The final batch (a batch and the body's last piece at most): sealed and hashed
            // here, then everything is written.
            hasher.update(&plain);
            writer.put(sealer.seal(&plain, true, Sealer::room(&plain, true))?);
            return Ok(hasher.finalize().into());
        }
        let room = Sealer::room(&plain, false);
        let hashed = plain.clone();
        stage = Stage::Busy(
            tokio::task::spawn_blocking(move || {
                let sealed = sealer.seal(&plain, false, room);
                (sealer, sealed)
            }),
            tokio::task::spawn_blocking(move || {
                hasher.update(&hashed);
                hasher
            }),
        );
    }
}
