//! A page's form post: `application/x-www-form-urlencoded` fields, percent-decoded, every value
//! under the same text rule as JSON strings and query parameters (`crate::edge::text_error`:
//! no control characters but tab and line breaks, at most `MAX_TEXT_CHARS`).

use crate::ApiError;
use crate::plumbing::cookies::form_fields;

/// The fields of one form post, in the order sent (repeated names kept: the lines of a voucher).
#[derive(Debug, Default)]
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    /// Parses `body`.
    ///
    /// # Errors
    /// 422 `invalid_text` / `text_too_long` naming the field.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, ApiError> {
        Self::parse_with_documents(body, &[])
    }

    /// Parses `body`, where the fields named in `documents` carry a whole document (a SAML
    /// response, IdP metadata): exempt from the text rule's length, since their consumer parses
    /// and bounds them (the form body itself stays within `MAX_FORM_BYTES`).
    ///
    /// # Errors
    /// 422 `invalid_text` / `text_too_long` naming another field.
    pub(crate) fn parse_with_documents(body: &[u8], documents: &[&str]) -> Result<Self, ApiError> {
        let fields = form_fields(body);
        for (k, v) in &fields {
            if documents.contains(&k.as_str()) {
                continue;
            }
            if let Some(e) =
                crate::plumbing::edge::text_error(k, k, false).or_else(|| crate::plumbing::edge::text_error(k, v, true))
            {
                return Err(e);
            }
        }
        Ok(Self(fields))
    }

    /// The first value of `name`, trimmed; `""` when absent.
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.trim())
    }

    /// Every value of `name`, in order (untrimmed).
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// Whether the form carries `name` at all (e.g. which submit button was pressed).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// A `next` destination after signing in: only a path on this site (`/…`, never `//host` or
/// `/\host`, which browsers read as another site), in visible ASCII (it becomes a `Location`
/// header), else home.
pub(crate) fn local_path(next: &str) -> String {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 2000
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
        && !next.starts_with("/sign-in")
        && !next.starts_with("/sign-out");
    if ok { next.to_owned() } else { "/".to_owned() }
}

/// Percent-encodes `s` for a query parameter value.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_a_path_on_this_site_or_home() {
        for ok in ["/", "/documents/1", "/?view=raised&status=queried"] {
            assert_eq!(local_path(ok), ok);
        }
        for bad in [
            "",
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "javascript:alert(1)",
            "/a\nb",
            "/caf\u{e9}",
            "/a b",
            "/sign-in?next=/",
            "documents",
        ] {
            assert_eq!(local_path(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn fields_are_decoded_and_checked() {
        let f = Fields::parse(b"a=1+2&line=x&line=y%26z&csrf_token=t").expect("fields");
        assert_eq!((f.get("a"), f.all("line"), f.get("missing")), ("1 2", vec!["x", "y&z"], ""));
        assert!(f.has("csrf_token") && !f.has("b"));
        let e = Fields::parse(b"title=a%00b").expect_err("control character");
        assert_eq!(e.code, "invalid_text");
        assert!(Fields::parse(b"note=line%0Aline").is_ok(), "line breaks are text");
        assert_eq!(encode("/documents?x=1&y=2"), "/documents%3Fx%3D1%26y%3D2");
    }
}
