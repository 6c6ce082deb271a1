//! The canonical encoding (version 1), re-implemented independently of the database function
//! that writes the chain, so the verifier checks the writer rather than trusting it.
//! Specification: docs/AUDIT.md. Tests prove this code and the SQL agree byte for byte.

use sha2::{Digest, Sha256};

pub const MAGIC: &[u8] = b"CSAUDIT1";
pub const GENESIS: [u8; 32] = [0u8; 32];
const NULL_FIELD: [u8; 4] = [0xff; 4];

/// The hashed fields of one event, borrowed from wherever they were read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fields<'a> {
    /// Tenant UUID (lowercase, hyphenated) or `platform`.
    pub chain: &'a str,
    pub seq: i64,
    /// Microseconds since the Unix epoch.
    pub occurred_at_us: i64,
    pub actor_kind: Option<&'a [u8]>,
    pub actor_id: Option<&'a [u8]>,
    pub actor_role: Option<&'a [u8]>,
    pub action: Option<&'a [u8]>,
    pub entity_type: Option<&'a [u8]>,
    pub entity_id: Option<&'a [u8]>,
    pub changes: Option<&'a [u8]>,
    pub reason: Option<&'a [u8]>,
    pub request_id: Option<&'a [u8]>,
    /// PostgreSQL `host(ip)` text.
    pub ip: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
}

fn field(buf: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => buf.extend_from_slice(&NULL_FIELD),
        Some(b) => {
            // Ledger columns are length-checked far below 4 GiB; saturate rather than wrap.
            let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(b);
        }
    }
}

fn decimal(n: i64, out: &mut [u8; 20]) -> &[u8] {
    // i64 fits in 20 ASCII digits with sign; written back to front.
    let mut i = out.len();
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        out[i] = b'-';
    }
    &out[i..]
}

type Run = (usize, usize);

/// Writes PostgreSQL's `host(inet)` text for an `inet` in binary wire form (family, bits,
/// is_cidr, length, address bytes) into `out` (cleared first): dotted IPv4, or IPv6 the way
/// PostgreSQL's `inet_net_ntop` prints it (longest run of two or more zero groups as `::`, the
/// first on a tie; lowercase hex; `::a.b.c.d` and `::ffff:a.b.c.d` keep the IPv4 tail).
/// Returns `false` for bytes that are not an inet. Reading the binary value and formatting it
/// here costs the database less than calling `host()` for every row.
pub fn inet_host(wire: &[u8], out: &mut String) -> bool {
    use std::fmt::Write as _;
    out.clear();
    match wire {
        [2, _, _, 4, a @ ..] if a.len() == 4 => {
            let _ = write!(out, "{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
            true
        }
        [3, _, _, 16, a @ ..] if a.len() == 16 => {
            let mut words = [0u16; 8];
            for (i, w) in words.iter_mut().enumerate() {
                *w = u16::from_be_bytes([a[2 * i], a[2 * i + 1]]);
            }
            // Longest run of zero words; the first wins a tie; runs of one are not compressed.
            // (first word, length) of zero runs.
            let (mut best, mut cur): (Option<Run>, Option<Run>) = (None, None);
            for (i, &w) in words.iter().enumerate() {
                if w == 0 {
                    cur = Some(cur.map_or((i, 1), |(b, l)| (b, l + 1)));
                } else if let Some(c) = cur.take()
                    && best.is_none_or(|b| c.1 > b.1)
                {
                    best = Some(c);
                }
            }
            if let Some(c) = cur
                && best.is_none_or(|b| c.1 > b.1)
            {
                best = Some(c);
            }
            let best = best.filter(|b| b.1 >= 2);
            for (i, &w) in words.iter().enumerate() {
                if let Some((base, len)) = best
                    && (base..base + len).contains(&i)
                {
                    if i == base {
                        out.push(':');
                    }
                    continue;
                }
                if i != 0 {
                    out.push(':');
                }
                let embedded_v4 =
                    best.is_some_and(|(base, len)| base == 0 && (len == 6 || (len == 5 && words[5] == 0xffff)));
                if i == 6 && embedded_v4 {
                    let _ = write!(out, "{}.{}.{}.{}", a[12], a[13], a[14], a[15]);
                    return true;
                }
                let _ = write!(out, "{w:x}");
            }
            if best.is_some_and(|(base, len)| base + len == 8) {
                out.push(':');
            }
            true
        }
        _ => false,
    }
}

/// Appends the canonical bytes of `f` to `buf` (cleared first).
pub fn encode(buf: &mut Vec<u8>, f: &Fields<'_>) {
    buf.clear();
    buf.extend_from_slice(MAGIC);
    field(buf, Some(f.chain.as_bytes()));
    let mut tmp = [0u8; 20];
    field(buf, Some(decimal(f.seq, &mut tmp)));
    let mut tmp = [0u8; 20];
    field(buf, Some(decimal(f.occurred_at_us, &mut tmp)));
    for v in [
        f.actor_kind,
        f.actor_id,
        f.actor_role,
        f.action,
        f.entity_type,
        f.entity_id,
        f.changes,
        f.reason,
        f.request_id,
        f.ip,
        f.user_agent,
    ] {
        field(buf, v);
    }
}

/// `SHA-256(prev || canonical bytes)`.
#[must_use]
pub fn chain_hash(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_matches_std_formatting() {
        for n in [0i64, 1, 9, 10, 1_732_000_000_123_456, -5, i64::MAX, i64::MIN] {
            let mut tmp = [0u8; 20];
            assert_eq!(decimal(n, &mut tmp), n.to_string().as_bytes());
        }
    }

    #[test]
    fn nulls_and_empty_strings_encode_differently() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        encode(&mut a, &Fields { chain: "platform", reason: None, ..Fields::default() });
        encode(&mut b, &Fields { chain: "platform", reason: Some(b""), ..Fields::default() });
        assert_ne!(a, b);
    }

    #[test]
    fn length_prefix_prevents_field_shifting() {
        // "ab" + "c" must not collide with "a" + "bc".
        let mut a = Vec::new();
        let mut b = Vec::new();
        encode(&mut a, &Fields { chain: "p", action: Some(b"ab"), entity_type: Some(b"c"), ..Fields::default() });
        encode(&mut b, &Fields { chain: "p", action: Some(b"a"), entity_type: Some(b"bc"), ..Fields::default() });
        assert_ne!(chain_hash(&GENESIS, &a), chain_hash(&GENESIS, &b));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Two events that differ in any hashed field never share canonical bytes.
        #[test]
        fn different_fields_give_different_bytes(
            a in proptest::option::of(".{0,12}"), b in proptest::option::of(".{0,12}"),
            c in proptest::option::of(".{0,12}"), d in proptest::option::of(".{0,12}"),
        ) {
            let enc = |x: &Option<String>, y: &Option<String>| {
                let mut buf = Vec::new();
                encode(&mut buf, &Fields {
                    chain: "platform",
                    seq: 1,
                    action: x.as_deref().map(str::as_bytes),
                    entity_id: y.as_deref().map(str::as_bytes),
                    ..Fields::default()
                });
                buf
            };
            prop_assert_eq!((a.clone(), b.clone()) == (c.clone(), d.clone()), enc(&a, &b) == enc(&c, &d));
        }
    }
}
