//! File names as people typed them, made safe to store and to send back in
//! `Content-Disposition` (RFC 6266 / RFC 8187). A name is only ever a label: object keys never
//! contain it.

use crate::links::Disposition;

/// The longest stored name, in characters.
pub const MAX_CHARS: usize = 200;

/// A sanitised file name: no path, no control or bidirectional-override characters, no leading
/// dots or spaces, at most [`MAX_CHARS`] characters (the extension kept when it is cut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '/' | '\\')
        // Bidirectional overrides and isolates make "gpj.exe" display as "exe.jpg".
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
        || matches!(c, '\u{FEFF}')
}

impl FileName {
    /// Keeps the last path component, drops unsafe characters, trims, caps the length. What is
    /// left empty becomes `file`.
    #[must_use]
    pub fn sanitise(raw: &str) -> Self {
        let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
        let cleaned: String = last.chars().filter(|c| !unsafe_char(*c)).collect();
        let trimmed = cleaned.trim().trim_start_matches(['.', ' ']).trim_end_matches(['.', ' ']);
        let name = if trimmed.is_empty() { "file".to_owned() } else { trimmed.to_owned() };
        Self(cap(&name))
    }

    /// A name read back from the database (already sanitised when stored).
    #[must_use]
    pub fn stored(s: String) -> Self {
        Self(s)
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the name ends in `.ext` (ASCII, case-insensitive).
    #[must_use]
    pub fn has_extension(&self, ext: &str) -> bool {
        self.0.rsplit_once('.').is_some_and(|(_, e)| e.eq_ignore_ascii_case(ext))
    }

    /// `inline|attachment; filename="ascii fallback"; filename*=UTF-8''percent-encoded`.
    #[must_use]
    pub fn content_disposition(&self, d: Disposition) -> String {
        let fallback: String = self
            .0
            .chars()
            .map(|c| if (c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '%' | ';')) || c == ' ' { c } else { '_' })
            .collect();
        format!("{}; filename=\"{fallback}\"; filename*=UTF-8''{}", d.as_str(), pct(&self.0))
    }
}

/// Cuts to [`MAX_CHARS`] characters, keeping a short extension.
fn cap(name: &str) -> String {
    if name.chars().count() <= MAX_CHARS {
        return name.to_owned();
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e).filter(|e| !e.is_empty() && e.chars().count() <= 10);
    match ext {
        Some(e) => {
            let keep = MAX_CHARS - e.chars().count() - 1;
            let stem: String = name.chars().take(keep).collect();
            format!("{stem}.{e}")
        }
        None => name.chars().take(MAX_CHARS).collect(),
    }
}

/// RFC 8187 `value-chars`: attr-char as is, everything else percent-encoded UTF-8.
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
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
    use proptest::prelude::*;

    #[test]
    fn paths_controls_and_overrides_are_removed() {
        assert_eq!(FileName::sanitise("../../etc/passwd").as_str(), "passwd");
        assert_eq!(FileName::sanitise("C:\\Users\\me\\invoice.pdf").as_str(), "invoice.pdf");
        assert_eq!(FileName::sanitise("a\r\nb\0.pdf").as_str(), "ab.pdf");
        assert_eq!(FileName::sanitise("in\u{202E}fdp.exe").as_str(), "infdp.exe");
        assert_eq!(FileName::sanitise("..").as_str(), "file");
        assert_eq!(FileName::sanitise("  .hidden ").as_str(), "hidden");
        let long = format!("{}.pdf", "x".repeat(500));
        let n = FileName::sanitise(&long);
        assert_eq!(n.as_str().chars().count(), MAX_CHARS);
        assert!(n.has_extension("PDF"));
    }

    #[test]
    fn content_disposition_quotes_nothing_it_should_not() {
        let n = FileName::sanitise("Rechnung \"März\"; x.pdf");
        assert_eq!(
            n.content_disposition(Disposition::Attachment),
            "attachment; filename=\"Rechnung _M_rz__ x.pdf\"; filename*=UTF-8''Rechnung%20%22M%C3%A4rz%22%3B%20x.pdf"
        );
    }

    proptest! {
        #[test]
        fn any_input_gives_a_safe_header_value(raw in "\\PC*|.*") {
            let n = FileName::sanitise(&raw);
            prop_assert!(!n.as_str().is_empty());
            prop_assert!(n.as_str().chars().count() <= MAX_CHARS);
            prop_assert!(!n.as_str().chars().any(unsafe_char));
            let h = n.content_disposition(Disposition::Inline);
            prop_assert!(h.bytes().all(|b| (0x20..0x7f).contains(&b)));
            prop_assert_eq!(h.matches('"').count(), 2);
        }
    }
}
