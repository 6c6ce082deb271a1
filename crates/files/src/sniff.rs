//! The allow list, decided from content. A client's file name and `Content-Type` are never
//! believed: the first bytes are checked against magic numbers (and, for office documents, the
//! zip's first entries), executables are refused whatever they are called, and text must be
//! UTF-8 without control characters. The file name only chooses between two text types
//! (`.csv` → `text/csv`, else `text/plain`), both served inert (`nosniff`, no script).

use crate::names::FileName;

/// How much of the start of a file is examined (office formats name their parts near the
/// start of the zip).
pub const SNIFF_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub enum MediaType {
    #[serde(rename = "application/pdf")]
    Pdf,
    #[serde(rename = "image/png")]
    Png,
    #[serde(rename = "image/jpeg")]
    Jpeg,
    #[serde(rename = "image/gif")]
    Gif,
    #[serde(rename = "image/webp")]
    Webp,
    #[serde(rename = "application/vnd.openxmlformats-officedocument.wordprocessingml.document")]
    Docx,
    #[serde(rename = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")]
    Xlsx,
    #[serde(rename = "application/vnd.openxmlformats-officedocument.presentationml.presentation")]
    Pptx,
    #[serde(rename = "application/vnd.oasis.opendocument.text")]
    Odt,
    #[serde(rename = "application/vnd.oasis.opendocument.spreadsheet")]
    Ods,
    #[serde(rename = "text/csv")]
    Csv,
    #[serde(rename = "text/plain")]
    Text,
}

impl MediaType {
    pub const ALL: &'static [MediaType] = &[
        Self::Pdf,
        Self::Png,
        Self::Jpeg,
        Self::Gif,
        Self::Webp,
        Self::Docx,
        Self::Xlsx,
        Self::Pptx,
        Self::Odt,
        Self::Ods,
        Self::Csv,
        Self::Text,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
            Self::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Self::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Self::Pptx => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            Self::Odt => "application/vnd.oasis.opendocument.text",
            Self::Ods => "application/vnd.oasis.opendocument.spreadsheet",
            Self::Csv => "text/csv",
            Self::Text => "text/plain",
        }
    }

    /// A stored value back (the database's check constraint holds the same list).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|m| m.as_str() == s)
    }

    /// The `Content-Type` a download is sent with (text declares its charset).
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Text => "text/plain; charset=utf-8",
            other => other.as_str(),
        }
    }
}

/// Why content was refused (the words go into the 415 answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

fn starts(b: &[u8], magic: &[u8]) -> bool {
    b.len() >= magic.len() && &b[..magic.len()] == magic
}

/// Executables and scripts, refused before anything else is considered (a polyglot that also
/// looks like an allowed type is still an executable).
fn executable(head: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"MZ", "a Windows executable"),
        (b"\x7fELF", "an ELF executable"),
        (b"\xfe\xed\xfa\xce", "a Mach-O executable"),
        (b"\xfe\xed\xfa\xcf", "a Mach-O executable"),
        (b"\xce\xfa\xed\xfe", "a Mach-O executable"),
        (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
        (b"\xca\xfe\xba\xbe", "a Mach-O or Java class file"),
        (b"#!", "a script"),
        (b"\0asm", "a WebAssembly module"),
        (b"dex\n", "an Android executable"),
    ];
    MAGICS
        .iter()
        .find(|(m, _)| starts(head, m))
        .map(|(_, what)| *what)
        .or_else(|| infer::get(head).filter(|k| k.matcher_type() == infer::MatcherType::App).map(|_| "an executable"))
}

/// Text: UTF-8 (a sequence cut by the end of the window is fine when more follows), no NUL or
/// control characters other than tab, line feed, carriage return and form feed.
fn text(head: &[u8], complete: bool) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if !complete && e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    !valid.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{c}'))
}

/// The type of a file from its first bytes (`head`, at most [`SNIFF_BYTES`]; `complete` when
/// that is the whole file).
///
/// # Errors
/// [`Refused`] for anything outside the allow list.
pub fn sniff(head: &[u8], complete: bool, name: &FileName) -> Result<MediaType, Refused> {
    if let Some(what) = executable(head) {
        return Err(Refused(format!("the content is {what}")));
    }
    // `infer` finds "%PDF" anywhere in the first KiB; a PDF here must start with it.
    if starts(head, b"%PDF-") {
        return Ok(MediaType::Pdf);
    }
    let found = if infer::image::is_png(head) {
        Some(MediaType::Png)
    } else if infer::image::is_jpeg(head) {
        Some(MediaType::Jpeg)
    } else if infer::image::is_gif(head) {
        Some(MediaType::Gif)
    } else if starts(head, b"RIFF") && infer::image::is_webp(head) {
        Some(MediaType::Webp)
    } else if infer::doc::is_docx(head) {
        Some(MediaType::Docx)
    } else if infer::doc::is_xlsx(head) {
        Some(MediaType::Xlsx)
    } else if infer::doc::is_pptx(head) {
        Some(MediaType::Pptx)
    } else if infer::odf::is_odt(head) {
        Some(MediaType::Odt)
    } else if infer::odf::is_ods(head) {
        Some(MediaType::Ods)
    } else {
        None
    };
    if let Some(m) = found {
        return Ok(m);
    }
    if !head.is_empty() && text(head, complete) {
        return Ok(if name.has_extension("csv") { MediaType::Csv } else { MediaType::Text });
    }
    let what = infer::get(head).map_or_else(|| "of an unknown type".to_owned(), |k| k.mime_type().to_owned());
    Err(Refused(format!("the content is {what}, which is not an allowed type")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> FileName {
        FileName::sanitise(s)
    }

    #[test]
    fn executables_are_refused_whatever_they_are_called() {
        let mut pe = b"MZ\x90\x00\x03\x00\x00\x00".to_vec();
        pe.extend_from_slice(b"%PDF-1.7 polyglot");
        assert!(sniff(&pe, true, &name("invoice.pdf")).is_err());
        assert!(sniff(b"\x7fELF\x02\x01\x01", true, &name("invoice.pdf")).is_err());
        assert!(sniff(b"#!/bin/sh\nrm -rf /\n", true, &name("notes.txt")).is_err());
        // infer would call this a PDF (%PDF within the first KiB); here it is not one.
        let mut hidden = vec![b'x'; 100];
        hidden.push(0);
        hidden.extend_from_slice(b"%PDF-1.4");
        assert!(sniff(&hidden, true, &name("a.pdf")).is_err());
    }

    #[test]
    fn allowed_types_are_recognised_from_content() {
        assert_eq!(sniff(b"%PDF-1.7\n", true, &name("x.bin")), Ok(MediaType::Pdf));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", true, &name("x")), Ok(MediaType::Png));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\0\x10JFIF", true, &name("x")), Ok(MediaType::Jpeg));
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0", true, &name("x")), Ok(MediaType::Gif));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 ", true, &name("x")), Ok(MediaType::Webp));
        assert_eq!(sniff(b"date,amount\n2026-01-01,5\n", true, &name("ledger.CSV")), Ok(MediaType::Csv));
        assert_eq!(sniff("Grüße\n".as_bytes(), true, &name("x.pdf")), Ok(MediaType::Text));
        // A multi-byte character cut by the window is fine only when more follows.
        let cut = &"aé".as_bytes()[..2];
        assert_eq!(sniff(cut, false, &name("x")), Ok(MediaType::Text));
        assert!(sniff(cut, true, &name("x")).is_err());
        assert!(sniff(b"a\0b", true, &name("x.txt")).is_err());
        assert!(sniff(b"PK\x03\x04plain zip", true, &name("x.docx")).is_err());
        assert!(sniff(b"", true, &name("x.txt")).is_err());
        for m in MediaType::ALL {
            assert_eq!(MediaType::parse(m.as_str()), Some(*m));
        }
    }
}
