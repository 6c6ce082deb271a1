//! `Idempotency-Key` for write routes: a retried request gets the first answer again, not a
//! second write.
//!
//! A write route takes the key ([`IdempotencyKey::from_headers`]), then, inside the write's own
//! transaction and before writing, [`claim`]s it for the caller, the route and a hash of the
//! body: a key seen before with the same request answers the stored first answer
//! ([`Claimed::Replay`], header `Idempotent-Replayed: true`); with a different request 422
//! `idempotency_key_reused`. After the write, [`Claim::finish`] stores the answer under the key
//! in the same transaction and commits — so the key and the write commit together or not at
//! all. Storage is `store::idempotency` (keys live 24 hours).
//!
//! Keys are per caller: a person (`user:<id>`, across their sessions) or an API key
//! (`api_key:<id>`); one caller's key never replays another's answer.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use store::TenantTx;
use store::idempotency::{self, Claim as Stored};

use crate::plumbing::auth::Caller;
use crate::{ApiError, Principal};

const HEADER: &str = "idempotency-key";

/// The value of an `Idempotency-Key` header: 1-200 visible ASCII characters. [`Self::parse`] is
/// the only way to make one, so a key that exists is a valid key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdempotencyKey(String);

impl IdempotencyKey {
    /// # Errors
    /// 422 `invalid_idempotency_key` unless 1-200 visible ASCII characters.
    pub(crate) fn parse(raw: &[u8]) -> Result<Self, ApiError> {
        if (1..=200).contains(&raw.len())
            && raw.iter().all(u8::is_ascii_graphic)
            && let Ok(s) = std::str::from_utf8(raw)
        {
            return Ok(Self(s.to_owned()));
        }
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_idempotency_key",
            "Idempotency-Key: 1-200 visible ASCII characters",
        ))
    }

    /// The request's key, if it sent one.
    ///
    /// # Errors
    /// As [`Self::parse`].
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        headers.get(HEADER).map(|v| Self::parse(v.as_bytes())).transpose()
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who a key belongs to, as stored.
fn owner(p: &Principal) -> String {
    match &p.caller {
        Caller::Person(person) => format!("user:{}", person.user),
        Caller::ApiKey { id, .. } => format!("api_key:{id}"),
    }
}

/// A key claimed by this request, to be completed in the write's transaction (or none sent).
#[must_use = "finish the claim: it stores the answer and commits"]
pub(crate) struct Claim(Option<(String, IdempotencyKey)>);

pub(crate) enum Claimed {
    /// Go ahead and write; then [`Claim::finish`].
    Go(Claim),
    /// The stored first answer; the request counts as decided (see `crate::plumbing::guard`).
    Replay(Response),
}

/// Claims `key` (if any) for `p`'s request `body` on `route`, in the write's transaction.
///
/// # Errors
/// 422 `idempotency_key_reused` when the key was used for a different request; store errors.
pub(crate) async fn claim(
    tx: &mut TenantTx,
    p: &Principal,
    key: Option<IdempotencyKey>,
    route: &str,
    body: &[u8],
) -> Result<Claimed, ApiError> {
    let Some(key) = key else { return Ok(Claimed::Go(Claim(None))) };
    let owner = owner(p);
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(body);
    let hash: [u8; 32] = h.finalize().into();
    match idempotency::claim(tx, &owner, key.as_str(), route, &hash).await? {
        Stored::New => Ok(Claimed::Go(Claim(Some((owner, key))))),
        Stored::Replay { status, response, location } => {
            // The first answer to this caller's same request on this route, decided then: status,
            // body and Location.
            p.checked.mark();
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut r = json_response(status, response);
            set_location(&mut r, location.as_deref());
            r.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(Claimed::Replay(r))
        }
        Stored::Mismatch => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        )),
    }
}

impl Claim {
    /// Stores the answer under the key (if any), commits the transaction, answers.
    ///
    /// # Errors
    /// Store errors (nothing is committed).
    pub(crate) async fn finish(
        self,
        tx: TenantTx,
        status: StatusCode,
        body: serde_json::Value,
    ) -> Result<Response, ApiError> {
        self.finish_at(tx, status, body, None).await
    }

    /// [`Claim::finish`] for an answer that names a resource in `Location` (a create): the
    /// header is stored with the answer and replayed with it.
    ///
    /// # Errors
    /// Store errors (nothing is committed).
    pub(crate) async fn finish_at(
        self,
        mut tx: TenantTx,
        status: StatusCode,
        body: serde_json::Value,
        location: Option<&str>,
    ) -> Result<Response, ApiError> {
        if let Some((owner, key)) = self.0 {
            idempotency::complete(&mut tx, &owner, key.as_str(), status.as_u16(), &body, location).await?;
        }
        tx.commit().await?;
        let mut r = json_response(status, body);
        set_location(&mut r, location);
        Ok(r)
    }
}

fn set_location(r: &mut Response, location: Option<&str>) {
    if let Some(v) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        r.headers_mut().insert(header::LOCATION, v);
    }
}

/// The `ETag` of a resource at `version`: `"<version>"`.
pub(crate) fn etag(version: i32) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// A JSON answer, with the resource's `ETag` when the body has a `version`.
pub(crate) fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let version = body.get("version").and_then(serde_json::Value::as_i64).and_then(|v| i32::try_from(v).ok());
    let mut r = (status, axum::Json(body)).into_response();
    if let Some(v) = version {
        r.headers_mut().insert(header::ETAG, etag(v));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_one_to_two_hundred_visible_ascii_characters() {
        for good in ["a", "retry-7f3c", &"k".repeat(200), "~!@#$%^&*()_+{}|:<>?"] {
            assert_eq!(IdempotencyKey::parse(good.as_bytes()).map(|k| k.as_str().to_owned()).ok(), Some(good.into()));
        }
        for bad in ["", " ", "a b", "tab\there", &"k".repeat(201), "é", "nul\0"] {
            let e = IdempotencyKey::parse(bad.as_bytes()).err().map(|e| e.code);
            assert_eq!(e, Some("invalid_idempotency_key"), "{bad:?}");
        }
    }

    #[test]
    fn the_header_is_optional_but_checked_when_sent() {
        let mut h = HeaderMap::new();
        assert_eq!(IdempotencyKey::from_headers(&h).ok(), Some(None));
        h.insert(HEADER, HeaderValue::from_static("abc"));
        assert_eq!(IdempotencyKey::from_headers(&h).ok().flatten().map(|k| k.0), Some("abc".to_owned()));
        h.insert(HEADER, HeaderValue::from_static("a b"));
        assert!(IdempotencyKey::from_headers(&h).is_err());
    }
}
