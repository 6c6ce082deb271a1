//! Streaming downloads, whole or one byte range. Only the chunks the range needs are fetched;
//! each is opened (authenticated) before a byte of it is sent, and the first one before the
//! response starts, so a tampered start is refused with a status, not a truncated body. A whole
//! download also re-computes the SHA-256 and holds back the last chunk unless it matches the
//! one recorded at upload.
//!
//! Opening requires the `attachment.read` permit the policy engine gave this person for the
//! attachment holding the blob, and the verified link naming the same person and blob.

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::{StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange, ObjectStore};
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

struct Reader {
    inner: BoxStream<'static, object_store::Result<Bytes>>,
    buf: Vec<u8>,
    cipher: BlobCipher,
    size: u64,
    next: u64,
    last: u64,
    lo: u64,
    hi: u64,
    hasher: Option<(Sha256, Vec<u8>)>,
}

impl Reader {
    /// The next chunk's plaintext, cut to the range.
    async fn step(mut self) -> Result<Option<(Bytes, Self)>, FilesError> {
        if self.next > self.last {
            return Ok(None);
        }
        let i = self.next;
        let span = crypto::chunk_span(self.size, i);
        let want = usize::try_from(span.end - span.start).map_err(|_| FilesError::Integrity("chunk size".into()))?;
        while self.buf.len() < want {
            match self.inner.next().await {
                Some(Ok(b)) => self.buf.extend_from_slice(&b),
                Some(Err(e)) => return Err(e.into()),
                None => return Err(FilesError::Integrity(format!("the stored file ends inside chunk {i}"))),
            }
        }
        let rest = self.buf.split_off(want);
        let mut chunk = std::mem::replace(&mut self.buf, rest);
        let is_last = i + 1 == crypto::chunks(self.size);
        self.cipher.open(i, is_last, &mut chunk)?;
        if let Some((h, expected)) = &mut self.hasher {
            h.update(&chunk);
            if is_last && h.clone().finalize().as_slice() != expected.as_slice() {
                return Err(FilesError::Integrity("the file's SHA-256 differs from the one recorded".into()));
            }
        }
        // Plaintext offsets of this chunk, cut to [lo, hi].
        let start = i * CHUNK as u64;
        let from = usize::try_from(self.lo.saturating_sub(start)).unwrap_or(0).min(chunk.len());
        let to = usize::try_from((self.hi + 1).saturating_sub(start)).unwrap_or(usize::MAX).min(chunk.len());
        chunk.truncate(to);
        let out = Bytes::from(chunk).slice(from..);
        self.next += 1;
        Ok(Some((out, self)))
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

    let head = storage
        .inner()
        .get_opts(&path, GetOptions { range: Some(GetRange::Bounded(0..HEADER_LEN as u64)), ..GetOptions::default() })
        .await
        .map_err(not_found_is_integrity)?;
    if head.meta.size != crypto::sealed_len(size) {
        return Err(FilesError::Integrity(format!(
            "the stored file has {} bytes, {} expected",
            head.meta.size,
            crypto::sealed_len(size)
        )));
    }
    let header = Header::decode(&head.bytes().await?)?;
    let cipher = BlobCipher::new(&key, blob_id, &header)?;

    let (first, last) = (lo / CHUNK as u64, hi / CHUNK as u64);
    let last = last.min(crypto::chunks(size) - 1);
    let span = crypto::chunk_span(size, first).start..crypto::chunk_span(size, last).end;
    let got = storage
        .inner()
        .get_opts(&path, GetOptions { range: Some(GetRange::Bounded(span)), ..GetOptions::default() })
        .await
        .map_err(not_found_is_integrity)?;
    let expected = hex::decode(&blob.sha256).map_err(|_| FilesError::Integrity("stored sha256".into()))?;
    let reader = Reader {
        inner: got.into_stream().boxed(),
        buf: Vec::with_capacity(CHUNK + TAG),
        cipher,
        size,
        next: first,
        last,
        lo,
        hi,
        hasher: range.is_none().then(|| (Sha256::new(), expected)),
    };
    let mut body = stream::try_unfold(reader, Reader::step).boxed();
    // The first chunk is opened before the response starts.
    let first_bytes = body.try_next().await?;
    let body = stream::iter(first_bytes.map(Ok)).chain(body).boxed();
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
