//! A minimal reader for PostgreSQL's binary COPY format, so the verifier and exporter stream
//! millions of rows with constant memory and no per-row allocation. Damaged input is an error,
//! never a panic.

use crate::AuditError;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Byte ranges of one tuple's fields inside the reader's buffer (`None` = SQL NULL).
pub(crate) type Tuple = Vec<Option<(usize, usize)>>;

#[derive(Debug, Default)]
pub(crate) struct CopyReader {
    buf: Vec<u8>,
    pos: usize,
    header_done: bool,
    finished: bool,
}

impl CopyReader {
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        if self.pos > 0 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    pub(crate) fn finished(&self) -> bool {
        self.finished
    }

    pub(crate) fn bytes(&self, range: Option<(usize, usize)>) -> Option<&[u8]> {
        range.map(|(s, l)| &self.buf[s..s + l])
    }

    fn avail(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn read_i16(&self, at: usize) -> i16 {
        i16::from_be_bytes([self.buf[at], self.buf[at + 1]])
    }

    fn read_i32(&self, at: usize) -> i32 {
        i32::from_be_bytes([self.buf[at], self.buf[at + 1], self.buf[at + 2], self.buf[at + 3]])
    }

    /// Parses the next complete tuple into `out`. `Ok(false)` means more input is needed (or the
    /// trailer was reached: see `finished`).
    pub(crate) fn next_tuple(&mut self, out: &mut Tuple) -> Result<bool, AuditError> {
        if self.finished {
            return Ok(false);
        }
        if !self.header_done {
            if self.avail() < SIGNATURE.len() + 8 {
                return Ok(false);
            }
            if &self.buf[self.pos..self.pos + SIGNATURE.len()] != SIGNATURE {
                return Err(AuditError::Malformed("not a binary COPY stream".into()));
            }
            let ext = usize::try_from(self.read_i32(self.pos + SIGNATURE.len() + 4))
                .map_err(|_| AuditError::Malformed("negative header extension".into()))?;
            if self.avail() < SIGNATURE.len() + 8 + ext {
                return Ok(false);
            }
            self.pos += SIGNATURE.len() + 8 + ext;
            self.header_done = true;
        }
        if self.avail() < 2 {
            return Ok(false);
        }
        let count = self.read_i16(self.pos);
        if count == -1 {
            self.finished = true;
            self.pos += 2;
            return Ok(false);
        }
        let count = usize::try_from(count).map_err(|_| AuditError::Malformed("negative field count".into()))?;
        out.clear();
        let mut at = self.pos + 2;
        for _ in 0..count {
            if self.buf.len() < at + 4 {
                return Ok(false);
            }
            let len = self.read_i32(at);
            at += 4;
            if len == -1 {
                out.push(None);
                continue;
            }
            let len = usize::try_from(len).map_err(|_| AuditError::Malformed("negative field length".into()))?;
            if self.buf.len() < at + len {
                return Ok(false);
            }
            out.push(Some((at, len)));
            at += len;
        }
        self.pos = at;
        Ok(true)
    }
}

/// Microseconds between 1970-01-01 and PostgreSQL's epoch 2000-01-01 (binary timestamps).
pub(crate) const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

pub(crate) fn be_i64(b: Option<&[u8]>, what: &str) -> Result<i64, AuditError> {
    let b = b.ok_or_else(|| AuditError::Malformed(format!("{what} is NULL")))?;
    let arr: [u8; 8] = b.try_into().map_err(|_| AuditError::Malformed(format!("{what} is not 8 bytes")))?;
    Ok(i64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut s = SIGNATURE.to_vec();
        s.extend_from_slice(&0i32.to_be_bytes());
        s.extend_from_slice(&0i32.to_be_bytes());
        for r in rows {
            s.extend_from_slice(&i16::try_from(r.len()).expect("small").to_be_bytes());
            for f in r {
                match f {
                    None => s.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(b) => {
                        s.extend_from_slice(&i32::try_from(b.len()).expect("small").to_be_bytes());
                        s.extend_from_slice(b);
                    }
                }
            }
        }
        s.extend_from_slice(&(-1i16).to_be_bytes());
        s
    }

    #[test]
    fn parses_across_arbitrary_chunk_boundaries() {
        let data = stream(&[vec![Some(b"abc"), None], vec![Some(b""), Some(b"xyz")]]);
        for chunk in 1..data.len() {
            let mut r = CopyReader::default();
            let mut t = Tuple::new();
            let mut got = Vec::new();
            for c in data.chunks(chunk) {
                r.feed(c);
                while r.next_tuple(&mut t).expect("valid") {
                    got.push(t.iter().map(|f| r.bytes(*f).map(<[u8]>::to_vec)).collect::<Vec<_>>());
                }
            }
            assert!(r.finished());
            assert_eq!(got.len(), 2, "chunk {chunk}");
            assert_eq!(got[0][0].as_deref(), Some(&b"abc"[..]));
            assert_eq!(got[0][1], None);
            assert_eq!(got[1][1].as_deref(), Some(&b"xyz"[..]));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut r = CopyReader::default();
        r.feed(b"definitely not a copy stream");
        assert!(r.next_tuple(&mut Tuple::new()).is_err());
        let mut r = CopyReader::default();
        let mut data = stream(&[]);
        data.truncate(SIGNATURE.len() + 8);
        data.extend_from_slice(&1i16.to_be_bytes());
        data.extend_from_slice(&(-7i32).to_be_bytes());
        r.feed(&data);
        assert!(r.next_tuple(&mut Tuple::new()).is_err());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever bytes arrive, in whatever chunks, the reader reports or waits: never panics.
        #[test]
        fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), split in 1usize..64) {
            let mut r = CopyReader::default();
            let mut t = Tuple::new();
            let mut framed = SIGNATURE.to_vec();
            framed.extend_from_slice(&[0; 8]);
            framed.extend_from_slice(&data);
            for chunk in framed.chunks(split) {
                r.feed(chunk);
                while let Ok(true) = r.next_tuple(&mut t) {
                    for f in &t {
                        let _ = r.bytes(*f);
                    }
                }
            }
        }
    }
}
