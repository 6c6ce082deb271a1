//! Streaming downloads, whole or one byte range. Only the chunks the range needs are fetched;
//! each is opened (authenticated) before a byte of it is sent, and the first one before the
//! response starts, so a tampered start is refused with a status, not a truncated body. A whole
//! download reads through the final chunk (its last-chunk flag is checked even when it holds no
//! plaintext), re-computes the SHA-256 and holds back the last batch unless it matches the one
//! recorded at upload. After the first chunk, chunks are read and opened a batch (512 KiB) at a
//! time on a blocking thread, at most one batch ahead of the client.
//!
//! Opening requires the `attachment.read` permit the policy engine gave this person for the
//! attachment holding the blob, and the verified link naming the same person and blob.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream};
use futures_util::{StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore};
use sha2::{Digest, Sha256};
use store::TenantTx;

use crate::FilesError;
use crate::blobs::{self, Blob};
use crate::crypto::{self, BlobCipher, CHUNK, HEADER_LEN, Header, TAG};
use crate::keys::{self, Keyring};
use crate::links::Link;
use crate::storage::Storage;

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Whole,
    /// `bytes=start-end` (end inclusive, open when `None`).
    From(u64, Option<u64>),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl Want {
    /// A `Range` header: one `bytes=` range. Several ranges, or anything else, mean the whole
    /// file (RFC 9110 lets a server ignore a range it does not serve).
    #[must_use]
    pub fn parse(header: Option<&str>) -> Self {
        let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return Self::Whole };
        if spec.contains(',') {
            return Self::Whole;
        }
        let Some((a, b)) = spec.trim().split_once('-') else { return Self::Whole };
        let (a, b) = (a.trim(), b.trim());
        match (a.is_empty(), b.is_empty()) {
            (true, false) => b.parse().map_or(Self::Whole, Self::Suffix),
            (false, true) => a.parse().map_or(Self::Whole, |s| Self::From(s, None)),
            (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
                (Ok(s), Ok(e)) if s <= e => Self::From(s, Some(e)),
                _ => Self::Whole,
            },
            (true, true) => Self::Whole,
        }
    }

    /// Inclusive byte bounds within a file of `size` bytes; `None` for the whole file.
    ///
    /// # Errors
    /// `Range` when nothing of the file is in the range (416).
    pub fn bounds(self, size: u64) -> Result<Option<(u64, u64)>, FilesError> {
        match self {
            Self::Whole => Ok(None),
            Self::From(s, _) if s >= size => Err(FilesError::Range { size }),
            Self::From(s, e) => Ok(Some((s, e.unwrap_or(u64::MAX).min(size - 1)))),
            Self::Suffix(0) => Err(FilesError::Range { size }),
            Self::Suffix(n) => Ok(Some((size.saturating_sub(n), size - 1))),
        }
    }
}

/// An opened download: the blob's row, the range served (inclusive), and the plaintext.
pub struct Download {
    pub blob: Blob,
    pub range: Option<(u64, u64)>,
    pub len: u64,
    pub body: BoxStream<'static, Result<Bytes, FilesError>>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download").field("blob", &self.blob.id).field("range", &self.range).finish_non_exhaustive()
    }
}

/// Sealed chunks opened per step after the first: 512 KiB of plaintext, so a local file is
/// read in two hundred reads per 100 MiB rather than object_store's thousands of 8 KiB ones.
const BATCH: u64 = 8;

/// Batches opened ahead of the client (memory per download: this many, one being opened and
/// the one being sent; more kept more of a 100 MiB download resident for no measured gain).
const AHEAD: usize = 1;

/// Where the sealed bytes come from.
enum Source {
    /// A local file: positional reads on a blocking thread, a batch at a time.
    File(Arc<std::fs::File>),
    /// Anything else (S3): the ranged GET's body.
    Stream(BoxStream<'static, object_store::Result<Bytes>>, BytesMut),
}

impl Source {
    /// Sealed chunks `first..=last` of a blob of `size` plaintext bytes, back to back.
    async fn chunks(&mut self, size: u64, first: u64, last: u64) -> Result<BytesMut, FilesError> {
        let span = crypto::chunk_span(size, first).start..crypto::chunk_span(size, last).end;
        let len = usize::try_from(span.end - span.start).map_err(|_| FilesError::Integrity("chunk size".into()))?;
        self.take(span.start, len).await
    }

    /// The `len` sealed bytes at object offset `at` (a stream is read in order, so `at` is
    /// always where it stands).
    async fn take(&mut self, at: u64, len: usize) -> Result<BytesMut, FilesError> {
        let short = || FilesError::Integrity("the stored file ends early".into());
        match self {
            Self::File(file) => {
                let file = Arc::clone(file);
                // Allocated here, not on the blocking thread: memory freed where it was taken
                // stays in the async threads' few malloc arenas instead of one per blocking
                // thread (which kept tens of MiB of a 100 MiB download resident).
                let mut b = BytesMut::zeroed(len);
                tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt as _;
                    match file.read_exact_at(&mut b, at) {
                        Ok(()) => Ok(b),
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(short()),
                        Err(e) => Err(FilesError::Storage(object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: Box::new(e),
                        })),
                    }
                })
                .await
                .map_err(|e| FilesError::Key(format!("a read stopped: {e}")))?
            }
            Self::Stream(inner, buf) => {
                while buf.len() < len {
                    match inner.next().await {
                        Some(Ok(b)) => buf.extend_from_slice(&b),
                        Some(Err(e)) => return Err(e.into()),
                        None => return Err(short()),
                    }
                }
                Ok(buf.split_to(len))
            }
        }
    }
}

/// Opens chunks in order: authenticates each, hashes a whole download's plaintext, and cuts the
/// plaintext to the range asked for.
struct Opener {
    cipher: BlobCipher,
    size: u64,
    lo: u64,
    hi: u64,
    hasher: Option<(Sha256, Vec<u8>)>,
}

impl Opener {
    /// Opens chunks `first..=last`, which `sealed` holds back to back, in place; returns their
    /// plaintext cut to the range (slices of the one buffer, no copies).
    fn open(&mut self, first: u64, last: u64, mut sealed: BytesMut) -> Result<Vec<Bytes>, FilesError> {
        let base = crypto::chunk_span(self.size, first).start;
        let mut spans = Vec::with_capacity(usize::try_from(last + 1 - first).unwrap_or(0));
        for i in first..=last {
            let span = crypto::chunk_span(self.size, i);
            let at = |o: u64| usize::try_from(o - base).map_err(|_| FilesError::Integrity("chunk size".into()));
            let (from, to) = (at(span.start)?, at(span.end)?);
            let is_last = i + 1 == crypto::chunks(self.size);
            let chunk =
                sealed.get_mut(from..to).ok_or_else(|| FilesError::Integrity(format!("chunk {i} cut short")))?;
            self.cipher.open(i, is_last, chunk)?;
            let plain = &chunk[..chunk.len() - TAG];
            if let Some((h, expected)) = &mut self.hasher {
                h.update(plain);
                if is_last && h.clone().finalize().as_slice() != expected.as_slice() {
                    return Err(FilesError::Integrity("the file's SHA-256 differs from the one recorded".into()));
                }
            }
            // Plaintext offsets of this chunk, cut to [lo, hi].
            let start = i * CHUNK as u64;
            let cut_from = usize::try_from(self.lo.saturating_sub(start)).unwrap_or(0).min(plain.len());
            let cut_to = usize::try_from((self.hi + 1).saturating_sub(start)).unwrap_or(usize::MAX).min(plain.len());
            if cut_from < cut_to {
                spans.push(from + cut_from..from + cut_to);
            }
        }
        let all = sealed.freeze();
        Ok(spans.into_iter().map(|r| all.slice(r)).collect())
    }
}

/// Reads and opens chunks `next..=last` a batch at a time, up to [`AHEAD`] batches ahead of the
/// client; the opening runs on a blocking thread, so the server's async threads only move bytes.
/// Ends when the client goes (the receiver is dropped) or at the first error, which it sends.
async fn produce(
    mut source: Source,
    mut opener: Opener,
    mut next: u64,
    last: u64,
    out: tokio::sync::mpsc::Sender<Result<Vec<Bytes>, FilesError>>,
) {
    while next <= last {
        let end = (next + BATCH - 1).min(last);
        let opened = match source.chunks(opener.size, next, end).await {
            Ok(sealed) => tokio::task::spawn_blocking(move || {
                let opened = opener.open(next, end, sealed);
                (opener, opened)
            })
            .await
            .map_err(|e| FilesError::Key(format!("opening stopped: {e}"))),
            Err(e) => Err(e),
        };
        let result = match opened {
            Ok((o, result)) => {
                opener = o;
                result
            }
            Err(e) => {
                let _ = out.send(Err(e)).await;
                return;
            }
        };
        let failed = result.is_err();
        if out.send(result).await.is_err() || failed {
            return;
        }
        next = end + 1;
    }
}

/// Opens `link`'s blob for reading.
///
/// # Errors
/// `Permit` when `permit` is not `attachment.read` for this person; `NotFound` when the permit's
/// attachment does not hold the link's blob (or the blob is not this organisation's); `Deleted`;
/// `Range`; `Integrity` when the stored bytes do not authenticate; `Storage`.
pub async fn open(
    tx: &mut TenantTx,
    storage: &Storage,
    ring: &Keyring,
    link: &Link,
    permit: &authz::Permit,
    want: Want,
) -> Result<Download, FilesError> {
    permit.require(authz::Action::AttachmentRead, permit.resource())?;
    if permit.user() != link.person || tx.tenant().as_uuid() != link.tenant {
        return Err(FilesError::LinkInvalid);
    }
    if blobs::of_attachment(tx, permit.resource()).await? != Some(link.blob) {
        return Err(FilesError::NotFound);
    }
    read(tx, storage, ring, link.tenant, link.blob, want).await
}

/// Opens `blob` whole for someone the MDF rules let see it (issue 17): the permit is their
/// `mdf.read` on the organisation, and the caller found the blob through a proof row of a claim
/// the database shows them (`programs::mdf::get_proof`), so there is no link.
///
/// # Errors
/// As [`open`] (without the link's).
pub async fn open_held(
    tx: &mut TenantTx,
    storage: &Storage,
    ring: &Keyring,
    permit: &authz::Permit,
    blob: uuid::Uuid,
) -> Result<Download, FilesError> {
    let tenant = tx.tenant().as_uuid();
    permit.require(authz::Action::MdfRead, tenant)?;
    read(tx, storage, ring, tenant, blob, Want::Whole).await
}

async fn read(
    tx: &mut TenantTx,
    storage: &Storage,
    ring: &Keyring,
    tenant: uuid::Uuid,
    blob_id: uuid::Uuid,
    want: Want,
) -> Result<Download, FilesError> {
    let blob = blobs::get(tx, blob_id).await?.ok_or(FilesError::NotFound)?;
    if blob.deleted_at.is_some() {
        return Err(FilesError::Deleted);
    }
    let key = keys::by_id(tx, ring, blob.key_id).await?;
    let size = u64::try_from(blob.size).map_err(|_| FilesError::Integrity("negative size".into()))?;
    let range = want.bounds(size)?;
    let (lo, hi) = range.unwrap_or((0, size.saturating_sub(1)));
    let path = Storage::key(tenant, blob_id);

    // A whole download reads through the final chunk even when it holds no plaintext (a size
    // that is a multiple of the chunk): its last-chunk flag and the SHA-256 are checked there.
    let first = lo / CHUNK as u64;
    let last =
        if range.is_none() { crypto::chunks(size) - 1 } else { (hi / CHUNK as u64).min(crypto::chunks(size) - 1) };
    let span = crypto::chunk_span(size, first).start..crypto::chunk_span(size, last).end;
    // From the start of the object when the range starts at the first chunk (header and chunks in
    // one read); otherwise the header, then the range.
    let from = if first == 0 { 0 } else { span.start };
    let got = storage
        .inner()
        .get_opts(&path, GetOptions { range: Some(GetRange::Bounded(from..span.end)), ..GetOptions::default() })
        .await
        .map_err(not_found_is_integrity)?;
    if got.meta.size != crypto::sealed_len(size) {
        return Err(FilesError::Integrity(format!(
            "the stored file has {} bytes, {} expected",
            got.meta.size,
            crypto::sealed_len(size)
        )));
    }
    let mut source = match got.payload {
        GetResultPayload::File(file, _) => Source::File(Arc::new(file)),
        GetResultPayload::Stream(s) => Source::Stream(s, BytesMut::new()),
    };
    let header = if from == 0 {
        source.take(0, HEADER_LEN).await?
    } else {
        let head = storage
            .inner()
            .get_opts(
                &path,
                GetOptions { range: Some(GetRange::Bounded(0..HEADER_LEN as u64)), ..GetOptions::default() },
            )
            .await
            .map_err(not_found_is_integrity)?;
        BytesMut::from(head.bytes().await?)
    };
    let header = Header::decode(&header)?;
    let expected = hex::decode(&blob.sha256).map_err(|_| FilesError::Integrity("stored sha256".into()))?;
    let mut opener = Opener {
        cipher: BlobCipher::new(&key, blob_id, &header)?,
        size,
        lo,
        hi,
        hasher: range.is_none().then(|| (Sha256::new(), expected)),
    };
    // The first chunk is opened here, before the response starts; the rest as the client reads.
    let opened = opener.open(first, first, source.chunks(size, first, first).await?)?;
    let (tx, rx) = tokio::sync::mpsc::channel(AHEAD);
    if first < last {
        tokio::spawn(produce(source, opener, first + 1, last, tx));
    }
    let rest = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let body = stream::iter([Ok(opened)])
        .chain(rest)
        .map_ok(|pieces| stream::iter(pieces.into_iter().map(Ok)))
        .try_flatten()
        .boxed();
    Ok(Download { blob, range, len: hi + 1 - lo, body })
}

fn not_found_is_integrity(e: object_store::Error) -> FilesError {
    match e {
        object_store::Error::NotFound { .. } => FilesError::Integrity("the stored file is missing".into()),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_bound() {
        assert_eq!(Want::parse(None), Want::Whole);
        assert_eq!(Want::parse(Some("bytes=0-99")), Want::From(0, Some(99)));
        assert_eq!(Want::parse(Some("bytes=100-")), Want::From(100, None));
        assert_eq!(Want::parse(Some("bytes=-5")), Want::Suffix(5));
        assert_eq!(Want::parse(Some("bytes=0-1,5-6")), Want::Whole);
        assert_eq!(Want::parse(Some("bytes=9-3")), Want::Whole);
        assert_eq!(Want::parse(Some("items=0-1")), Want::Whole);
        assert_eq!(Want::From(0, Some(99)).bounds(50).expect("ok"), Some((0, 49)));
        assert_eq!(Want::Suffix(500).bounds(50).expect("ok"), Some((0, 49)));
        assert!(Want::From(50, None).bounds(50).is_err());
        assert!(Want::Suffix(0).bounds(50).is_err());
        assert_eq!(Want::Whole.bounds(50).expect("ok"), None);
    }
}
