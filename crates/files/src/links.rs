//! Signed download links: `v1.<base64url(payload ‖ mac)>`, where the payload is (tenant, blob,
//! person, disposition, expiry) and the MAC is HMAC-SHA256 under a key in
//! `<data-dir>/keys/file-links-hmac.key` that every node of a deployment shares. A link is
//! useless to anyone but the person it names (the download route also requires their session),
//! after its expiry (default five minutes, at most an hour), and with any byte changed; the MAC is
//! compared in constant time. A valid link is not enough by itself: the download asks the policy
//! engine again, so a link minted before access was lost fails.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, TimeZone, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::FilesError;

/// Default lifetime of a link.
pub const DEFAULT_LIFETIME: Duration = Duration::minutes(5);
/// The longest lifetime a link may be minted with.
pub const MAX_LIFETIME: Duration = Duration::hours(1);

const PREFIX: &str = "v1.";
const CONTEXT: &[u8] = b"countersign file link v1\0";
const PAYLOAD_LEN: usize = 16 * 3 + 1 + 8;
const MAC_LEN: usize = 32;

/// How the browser is told to treat the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// Shown in the browser (previews).
    Inline,
    /// Saved as a file.
    Attachment,
}

impl Disposition {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inline => "inline",
            Self::Attachment => "attachment",
        }
    }

    fn byte(self) -> u8 {
        match self {
            Self::Inline => 1,
            Self::Attachment => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Inline),
            2 => Some(Self::Attachment),
            _ => None,
        }
    }
}

/// What a link grants, once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub tenant: Uuid,
    pub blob: Uuid,
    pub person: Uuid,
    pub disposition: Disposition,
    /// Whole seconds.
    pub expires_at: DateTime<Utc>,
}

impl Link {
    fn payload(&self) -> [u8; PAYLOAD_LEN] {
        let mut p = [0u8; PAYLOAD_LEN];
        p[..16].copy_from_slice(self.tenant.as_bytes());
        p[16..32].copy_from_slice(self.blob.as_bytes());
        p[32..48].copy_from_slice(self.person.as_bytes());
        p[48] = self.disposition.byte();
        p[49..].copy_from_slice(&self.expires_at.timestamp().to_be_bytes());
        p
    }

    fn from_payload(p: &[u8]) -> Option<Self> {
        let id = |r: std::ops::Range<usize>| Uuid::from_slice(&p[r]).ok();
        let mut secs = [0u8; 8];
        secs.copy_from_slice(&p[49..PAYLOAD_LEN]);
        Some(Self {
            tenant: id(0..16)?,
            blob: id(16..32)?,
            person: id(32..48)?,
            disposition: Disposition::from_byte(p[48])?,
            expires_at: Utc.timestamp_opt(i64::from_be_bytes(secs), 0).single()?,
        })
    }
}

/// The link-signing key. Never printed.
#[derive(Clone)]
pub struct LinkKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

impl LinkKey {
    #[must_use]
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(Zeroizing::new(key))
    }

    /// A key that lives only in this process (tests; links then die with it).
    #[must_use]
    pub fn ephemeral() -> Self {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        Self::from_bytes(k)
    }

    fn mac(&self) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_slice()).expect("HMAC takes a key of any length");
        m.update(CONTEXT);
        m
    }

    /// A link for `person` to `blob`, valid for `lifetime` from `now` (whole seconds).
    ///
    /// # Errors
    /// `Invalid` when the lifetime is not between one second and [`MAX_LIFETIME`].
    pub fn mint(
        &self,
        tenant: Uuid,
        blob: Uuid,
        person: Uuid,
        disposition: Disposition,
        now: DateTime<Utc>,
        lifetime: Duration,
    ) -> Result<(String, Link), FilesError> {
        if lifetime < Duration::seconds(1) || lifetime > MAX_LIFETIME {
            return Err(crate::error::invalid("lifetime", "between one second and one hour"));
        }
        let expires_at = Utc.timestamp_opt((now + lifetime).timestamp(), 0).single().unwrap_or(now);
        let link = Link { tenant, blob, person, disposition, expires_at };
        let payload = link.payload();
        let mut m = self.mac();
        m.update(&payload);
        let mut bytes = payload.to_vec();
        bytes.extend_from_slice(&m.finalize().into_bytes());
        Ok((format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)), link))
    }

    /// The link a token stands for, if its MAC verifies (constant time) and it has not expired.
    ///
    /// # Errors
    /// `LinkInvalid` for anything altered or malformed; `LinkExpired` once `now` is past expiry.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Link, FilesError> {
        let body = token.strip_prefix(PREFIX).ok_or(FilesError::LinkInvalid)?;
        if body.len() > 200 {
            return Err(FilesError::LinkInvalid);
        }
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| FilesError::LinkInvalid)?;
        if bytes.len() != PAYLOAD_LEN + MAC_LEN {
            return Err(FilesError::LinkInvalid);
        }
        let (payload, tag) = bytes.split_at(PAYLOAD_LEN);
        let mut m = self.mac();
        m.update(payload);
        // `verify_slice` compares in constant time (subtle).
        m.verify_slice(tag).map_err(|_| FilesError::LinkInvalid)?;
        let link = Link::from_payload(payload).ok_or(FilesError::LinkInvalid)?;
        if now >= link.expires_at {
            return Err(FilesError::LinkExpired);
        }
        Ok(link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minted(k: &LinkKey) -> (String, Link, DateTime<Utc>) {
        let now = Utc::now();
        let (t, l) = k
            .mint(Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Disposition::Inline, now, DEFAULT_LIFETIME)
            .expect("mint");
        (t, l, now)
    }

    /// Re-signs nothing: changes one field of the payload and keeps the old MAC.
    fn altered(token: &str, f: impl Fn(&mut Link)) -> String {
        let bytes = URL_SAFE_NO_PAD.decode(&token[PREFIX.len()..]).expect("b64");
        let mut link = Link::from_payload(&bytes[..PAYLOAD_LEN]).expect("payload");
        f(&mut link);
        let mut out = link.payload().to_vec();
        out.extend_from_slice(&bytes[PAYLOAD_LEN..]);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    #[test]
    fn a_link_verifies_until_it_expires() {
        let k = LinkKey::ephemeral();
        let (t, l, now) = minted(&k);
        assert_eq!(k.verify(&t, now).expect("valid"), l);
        assert!(matches!(k.verify(&t, l.expires_at), Err(FilesError::LinkExpired)));
        assert!(matches!(k.verify(&t, now + Duration::minutes(6)), Err(FilesError::LinkExpired)));
    }

    #[test]
    fn every_altered_field_is_refused() {
        let k = LinkKey::ephemeral();
        let (t, _, now) = minted(&k);
        let changes: [&dyn Fn(&mut Link); 5] = [
            &|l| l.tenant = Uuid::new_v4(),
            &|l| l.blob = Uuid::new_v4(),
            &|l| l.person = Uuid::new_v4(),
            &|l| l.disposition = Disposition::Attachment,
            &|l| l.expires_at += Duration::hours(10),
        ];
        for f in changes {
            assert!(matches!(k.verify(&altered(&t, f), now), Err(FilesError::LinkInvalid)));
        }
        assert!(matches!(LinkKey::ephemeral().verify(&t, now), Err(FilesError::LinkInvalid)));
        for junk in ["", "v1.", "v2.abc", "v1.!!!!", &t[..t.len() - 2], &format!("{t}AA")] {
            assert!(k.verify(junk, now).is_err(), "{junk}");
        }
    }

    #[test]
    fn lifetimes_are_bounded() {
        let k = LinkKey::ephemeral();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(k.mint(a, b, a, Disposition::Inline, Utc::now(), Duration::hours(2)).is_err());
        assert!(k.mint(a, b, a, Disposition::Inline, Utc::now(), Duration::zero()).is_err());
    }
}
