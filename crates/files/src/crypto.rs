//! What lies in object storage: a 15-byte header, then the plaintext in 64 KiB chunks, each
//! sealed with AES-256-GCM under STREAM (`aead::stream::StreamBE32`: a 7-byte random nonce prefix,
//! a 32-bit big-endian chunk counter and a last-chunk flag form each nonce).
//!
//! ```text
//! "CSB1" | data key version (u32 BE) | nonce prefix (7) | chunk 0 ‖ tag | … | last chunk ‖ tag
//! ```
//!
//! The chunk key is derived per blob: HKDF-SHA256(data key, info = label ‖ tenant ‖ blob), and
//! every chunk authenticates the header, the tenant and the blob id as associated data. So a chunk
//! moved to another position fails (counter), a file cut short fails (the last chunk's flag, and
//! the length the `blobs` row records), and an object copied under another blob id or another
//! organisation fails (different key). Nothing here decides anything; it only refuses to produce
//! plaintext that does not authenticate.

use hkdf::Hkdf;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::FilesError;
use crate::keys::DataKey;

/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
/// AES-GCM tag per chunk.
pub const TAG: usize = 16;
pub const MAGIC: &[u8; 4] = b"CSB1";
pub const HEADER_LEN: usize = 4 + 4 + 7;

/// Number of chunks a plaintext of `size` bytes is sealed in: the last one holds the remainder
/// (possibly nothing), so every blob ends with a chunk flagged last.
#[must_use]
pub fn chunks(size: u64) -> u64 {
    size / CHUNK as u64 + 1
}

/// Length of the stored object for a plaintext of `size` bytes.
#[must_use]
pub fn sealed_len(size: u64) -> u64 {
    HEADER_LEN as u64 + size + chunks(size) * TAG as u64
}

/// Byte range of chunk `i` in the stored object, for a plaintext of `size` bytes.
#[must_use]
pub fn chunk_span(size: u64, i: u64) -> std::ops::Range<u64> {
    let start = HEADER_LEN as u64 + i * (CHUNK + TAG) as u64;
    let plain = if i + 1 == chunks(size) { size % CHUNK as u64 } else { CHUNK as u64 };
    start..start + plain + TAG as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub key_version: u32,
    pub nonce: [u8; 7],
}

impl Header {
    #[must_use]
    pub fn fresh(key_version: u32) -> Self {
        let mut nonce = [0u8; 7];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        Self { key_version, nonce }
    }

    #[must_use]
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(MAGIC);
        h[4..8].copy_from_slice(&self.key_version.to_be_bytes());
        h[8..].copy_from_slice(&self.nonce);
        h
    }

    /// # Errors
    /// `Integrity` when the bytes are not a header of this format.
    pub fn decode(b: &[u8]) -> Result<Self, FilesError> {
        if b.len() != HEADER_LEN || &b[..4] != MAGIC {
            return Err(FilesError::Integrity("not a sealed blob (bad header)".into()));
        }
        let mut v = [0u8; 4];
        v.copy_from_slice(&b[4..8]);
        let mut nonce = [0u8; 7];
        nonce.copy_from_slice(&b[8..]);
        Ok(Self { key_version: u32::from_be_bytes(v), nonce })
    }
}

/// Seals and opens the chunks of one blob: AES-256-GCM through ring (assembly with AES-NI,
/// VAES and carry-less multiplication where the CPU has them; the RustCrypto `aes-gcm` crate
/// was measured at a quarter of its speed here), with the nonces of `aead::stream::StreamBE32`
/// — byte for byte what earlier versions stored, which a test checks against that crate.
pub struct BlobCipher {
    key: LessSafeKey,
    prefix: [u8; 7],
    aad: Vec<u8>,
}

/// The blob's chunk key: HKDF-SHA256(data key, info = label ‖ tenant ‖ blob).
fn chunk_key(key: &DataKey, blob: Uuid) -> Result<Zeroizing<[u8; 32]>, FilesError> {
    let mut info = b"countersign blob chunk key v1".to_vec();
    info.extend_from_slice(key.tenant.as_bytes());
    info.extend_from_slice(blob.as_bytes());
    let mut derived = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, key.key.as_slice())
        .expand(&info, derived.as_mut_slice())
        .map_err(|_| FilesError::Key("key derivation failed".into()))?;
    Ok(derived)
}

impl BlobCipher {
    /// # Errors
    /// When the header's key version is not the data key's.
    pub fn new(key: &DataKey, blob: Uuid, header: &Header) -> Result<Self, FilesError> {
        if i64::from(header.key_version) != i64::from(key.version) {
            return Err(FilesError::Integrity("the blob names another data key version".into()));
        }
        let derived = chunk_key(key, blob)?;
        let unbound = UnboundKey::new(&AES_256_GCM, derived.as_slice())
            .map_err(|_| FilesError::Key("the chunk key was refused".into()))?;
        let mut aad = header.encode().to_vec();
        aad.extend_from_slice(key.tenant.as_bytes());
        aad.extend_from_slice(blob.as_bytes());
        Ok(Self { key: LessSafeKey::new(unbound), prefix: header.nonce, aad })
    }

    /// Chunk `i`'s nonce as STREAM (BE32) makes it: prefix ‖ counter (u32 BE) ‖ last-chunk flag.
    fn nonce(&self, i: u64, last: bool) -> Result<Nonce, FilesError> {
        let position = u32::try_from(i).map_err(|_| FilesError::Integrity("too many chunks".into()))?;
        let mut n = [0u8; NONCE_LEN];
        n[..7].copy_from_slice(&self.prefix);
        n[7..11].copy_from_slice(&position.to_be_bytes());
        n[11] = u8::from(last);
        Ok(Nonce::assume_unique_for_key(n))
    }

    /// Seals chunk `i` in place: `buf` holds the chunk's plaintext followed by [`TAG`] spare
    /// bytes, which receive the tag. (A slice of a larger buffer: a batch of chunks is sealed
    /// where it lies, without a copy per chunk.)
    ///
    /// # Errors
    /// When `buf` has no room for the tag; the cipher does not refuse valid sizes.
    pub fn seal(&self, i: u64, last: bool, buf: &mut [u8]) -> Result<(), FilesError> {
        let len = buf.len().checked_sub(TAG).ok_or_else(|| FilesError::Key("no room for the tag".into()))?;
        let (plain, tag) = buf.split_at_mut(len);
        let t = self
            .key
            .seal_in_place_separate_tag(self.nonce(i, last)?, Aad::from(&self.aad[..]), plain)
            .map_err(|_| FilesError::Key("sealing a chunk failed".into()))?;
        tag.copy_from_slice(t.as_ref());
        Ok(())
    }

    /// Opens sealed chunk `i` in place; its plaintext is then `buf[..buf.len() - TAG]`.
    ///
    /// # Errors
    /// `Integrity` when it does not authenticate (tampered, moved, truncated, other key).
    pub fn open(&self, i: u64, last: bool, buf: &mut [u8]) -> Result<(), FilesError> {
        self.key
            .open_in_place(self.nonce(i, last)?, Aad::from(&self.aad[..]), buf)
            .map(|_| ())
            .map_err(|_| FilesError::Integrity(format!("chunk {i} does not authenticate")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: Uuid, byte: u8) -> DataKey {
        DataKey { tenant, id: Uuid::nil(), version: 1, key: Zeroizing::new([byte; 32]) }
    }

    fn sealed(k: &DataKey, blob: Uuid, h: &Header, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let c = BlobCipher::new(k, blob, h).expect("cipher");
        chunks
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut b = p.to_vec();
                b.resize(p.len() + TAG, 0);
                c.seal(i as u64, i + 1 == chunks.len(), &mut b).expect("seal");
                b
            })
            .collect()
    }

    #[test]
    fn reordered_truncated_or_foreign_chunks_do_not_open() {
        let (t, blob) = (Uuid::new_v4(), Uuid::new_v4());
        let k = key(t, 1);
        let h = Header::fresh(1);
        let s = sealed(&k, blob, &h, &[b"first", b"second", b"third"]);
        let c = BlobCipher::new(&k, blob, &h).expect("cipher");
        let open = |i: u64, last: bool, b: &[u8]| {
            let mut v = b.to_vec();
            c.open(i, last, &mut v).map(|()| v[..v.len() - TAG].to_vec())
        };
        assert_eq!(open(1, false, &s[1]).expect("in place"), b"second");
        // Swapped chunks.
        assert!(open(0, false, &s[1]).is_err());
        // Cut after chunk 1: chunk 1 presented as the last one.
        assert!(open(1, true, &s[1]).is_err());
        // A flipped bit.
        let mut bad = s[2].clone();
        bad[0] ^= 0x80;
        assert!(open(2, true, &bad).is_err());
        // The same bytes under another blob id or another organisation's key.
        let other_blob = BlobCipher::new(&k, Uuid::new_v4(), &h).expect("cipher");
        let mut v = s[0].clone();
        assert!(other_blob.open(0, false, &mut v).is_err());
        let other_tenant = BlobCipher::new(&key(Uuid::new_v4(), 1), blob, &h).expect("cipher");
        let mut v = s[0].clone();
        assert!(other_tenant.open(0, false, &mut v).is_err());
    }

    /// Blobs stored before the cipher moved to ring were sealed by `aes-gcm`'s STREAM (BE32):
    /// the same chunks, nonces and tags, both ways.
    #[test]
    fn chunks_are_byte_for_byte_those_of_aes_gcm_stream_be32() {
        use aes_gcm::Aes256Gcm;
        use aes_gcm::aead::KeyInit;
        use aes_gcm::aead::stream::{NewStream, StreamBE32, StreamPrimitive};
        let (t, blob) = (Uuid::new_v4(), Uuid::new_v4());
        let k = key(t, 7);
        let h = Header::fresh(1);
        let ours = BlobCipher::new(&k, blob, &h).expect("cipher");
        let derived = chunk_key(&k, blob).expect("key");
        let theirs = StreamBE32::from_aead(
            Aes256Gcm::new_from_slice(derived.as_slice()).expect("key"),
            aes_gcm::aead::generic_array::GenericArray::from_slice(&h.nonce),
        );
        for (i, last, len) in [(0u64, false, CHUNK), (1, false, CHUNK), (2, true, 1000), (5, true, 0)] {
            let plain: Vec<u8> = (0..len).map(|n| (n % 251) as u8).collect();
            let mut mine = plain.clone();
            mine.resize(len + TAG, 0);
            ours.seal(i, last, &mut mine).expect("seal");
            let mut old = plain.clone();
            theirs.encrypt_in_place(u32::try_from(i).expect("small"), last, &ours.aad, &mut old).expect("seal");
            assert_eq!(mine, old, "chunk {i}");
            ours.open(i, last, &mut old).expect("an old chunk opens");
            assert_eq!(&old[..len], &plain[..]);
        }
    }

    #[test]
    fn lengths_add_up() {
        assert_eq!(chunks(0), 1);
        assert_eq!(chunks(CHUNK as u64), 2);
        assert_eq!(sealed_len(0), (HEADER_LEN + TAG) as u64);
        let size = 3 * CHUNK as u64 + 5;
        assert_eq!(chunk_span(size, 3).end, sealed_len(size));
        assert_eq!(chunk_span(size, 0), HEADER_LEN as u64..(HEADER_LEN + CHUNK + TAG) as u64);
        assert!(Header::decode(&[0; HEADER_LEN]).is_err());
        let h = Header::fresh(9);
        assert_eq!(Header::decode(&h.encode()).expect("decode"), h);
    }
}
