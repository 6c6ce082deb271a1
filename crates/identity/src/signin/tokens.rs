//! Access tokens: compact JWS (RFC 7515/7519) signed with Ed25519 (`alg: EdDSA`, RFC 8037).
//!
//! Written against `ed25519-dalek` directly rather than a JWT crate: the only algorithm accepted
//! is EdDSA with our key id, so there is no `alg` negotiation to get wrong, and the JWT crates'
//! crypto backends would pull in `rsa` (RUSTSEC-2023-0071) or a C toolchain for aws-lc.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Access tokens live this long; revocation does not wait for them (see `signin::sessions`).
pub const ACCESS_TTL_SECS: i64 = 600;
const MAX_TOKEN_LEN: usize = 2048;

/// The claims Countersign puts in (and requires of) an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: Uuid,
    /// Tenant id.
    pub tid: Uuid,
    /// Session id (the refresh-token family).
    pub sid: Uuid,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

/// The server's token signing key (shared by every node through the key file).
#[derive(Clone)]
pub struct TokenKey {
    signing: SigningKey,
    verifying: VerifyingKey,
    kid: String,
    /// Earlier keys (a rotation): tokens they signed verify until they expire; they sign nothing.
    previous: Vec<(String, VerifyingKey)>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl TokenKey {
    #[must_use]
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(&seed);
        let verifying = signing.verifying_key();
        Self { kid: audit::key_id(&verifying), signing, verifying, previous: Vec::new() }
    }

    /// Also accepts tokens signed by `previous` keys (until they expire): the rotation window.
    #[must_use]
    pub fn with_previous(mut self, previous: impl IntoIterator<Item = VerifyingKey>) -> Self {
        for k in previous {
            let kid = audit::key_id(&k);
            if kid != self.kid && !self.previous.iter().any(|(p, _)| *p == kid) {
                self.previous.push((kid, k));
            }
        }
        self
    }

    /// The id of the key that signs (the `kid` of every new token).
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The ids of the earlier keys still accepted.
    #[must_use]
    pub fn previous_kids(&self) -> Vec<&str> {
        self.previous.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// A secret for `purpose` derived from the signing seed (HMAC-SHA-256): every node that holds
    /// the key file derives the same one, and it reveals nothing about the seed.
    #[must_use]
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        crate::signin::hmac::hmac_sha256(&self.signing.to_bytes(), &[purpose.as_bytes()])
    }

    /// Loads the key file, or creates it (0600) on first start.
    pub fn load_or_create(path: &std::path::Path) -> Result<Self, crate::IdentityError> {
        let seed = audit::load_or_create_seed(path)?;
        Ok(Self::from_seed(seed))
    }

    /// Loads an existing key file; a missing one is an error (nothing is written).
    pub fn load(path: &std::path::Path) -> Result<Self, crate::IdentityError> {
        Ok(Self::from_seed(audit::load_seed(path)?))
    }

    #[must_use]
    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header { alg: "EdDSA".into(), typ: "JWT".into(), kid: self.kid.clone() };
        // Serializing these plain structs cannot fail.
        let h = B64.encode(serde_json::to_vec(&header).unwrap_or_default());
        let c = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let input = format!("{h}.{c}");
        let sig = self.signing.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.to_bytes()))
    }

    /// Checks shape, header (EdDSA, JWT, our key id or a previous one), signature and expiry. Any failure is
    /// `None`: the caller answers 401 without saying which check failed.
    #[must_use]
    pub fn verify(&self, token: &str, now: i64) -> Option<Claims> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Header = serde_json::from_slice(&B64.decode(h).ok()?).ok()?;
        if header.alg != "EdDSA" || header.typ != "JWT" {
            return None;
        }
        let verifying = if header.kid == self.kid {
            &self.verifying
        } else {
            &self.previous.iter().find(|(kid, _)| *kid == header.kid)?.1
        };
        let sig = Signature::from_slice(&B64.decode(s).ok()?).ok()?;
        let input_len = h.len() + 1 + c.len();
        verifying.verify(&token.as_bytes()[..input_len], &sig).ok()?;
        let claims: Claims = serde_json::from_slice(&B64.decode(c).ok()?).ok()?;
        (claims.exp > now && claims.iat <= now + 60).then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> Claims {
        Claims {
            sub: Uuid::now_v7(),
            tid: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            role: "finance".into(),
            iat: now,
            exp: now + ACCESS_TTL_SECS,
        }
    }

    #[test]
    fn round_trip_and_every_forgery_fails() {
        let key = TokenKey::from_seed([7; 32]);
        let now = 1_800_000_000;
        let c = claims(now);
        let t = key.sign(&c);
        assert_eq!(key.verify(&t, now), Some(c.clone()));
        // Expired.
        assert_eq!(key.verify(&t, c.exp), None);
        // Another key.
        assert_eq!(TokenKey::from_seed([8; 32]).verify(&t, now), None);
        // Claims swapped under the original signature (privilege escalation attempt).
        let parts: Vec<&str> = t.split('.').collect();
        let mut forged = c.clone();
        forged.role = "md".into();
        let forged_claims = B64.encode(serde_json::to_vec(&forged).expect("json"));
        assert_eq!(key.verify(&format!("{}.{forged_claims}.{}", parts[0], parts[2]), now), None);
        // alg=none and HS256 headers are refused outright.
        for alg in ["none", "HS256"] {
            let h = B64.encode(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"x"}}"#));
            assert_eq!(key.verify(&format!("{h}.{}.", parts[1]), now), None);
        }
        // Rotation: the new key signs, the old key's tokens verify until they expire, a key
        // that is neither current nor previous is refused.
        let rotated = TokenKey::from_seed([9; 32]).with_previous([key.verifying]);
        assert_eq!(rotated.verify(&t, now), Some(c.clone()));
        assert_eq!(rotated.verify(&t, c.exp), None);
        let fresh = rotated.sign(&c);
        assert!(fresh.starts_with(&B64.encode(format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{}"}}"#, rotated.kid()))));
        assert_eq!(key.verify(&fresh, now), None);
        assert_eq!(rotated.verify(&TokenKey::from_seed([8; 32]).sign(&c), now), None);
        // Garbage never panics.
        for junk in ["", ".", "..", "a.b.c", "a.b.c.d", &"x".repeat(5000), "eyJ.eyJ.eyJ"] {
            assert_eq!(key.verify(junk, now), None);
        }
    }
}
