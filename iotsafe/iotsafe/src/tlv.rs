//! Simple-TLV as used by IoT SAFE: one-byte tags, BER-style lengths.
//!
//! IoT SAFE tags are flat single bytes (C1, 84, 4B ...), never ISO multi-byte
//! tags, so a tag is always exactly one byte. Lengths follow BER (short form,
//! `81 xx`, `82 xx xx`) because long records and certificates need them.
//! The one exception on the wire, the `33 00 40 r||s` signature with a
//! two-byte length, is handled in `signature.rs`, not here.
//!
//! Everything here is a pure function over `&[u8]` that never panics, so it
//! can be fed arbitrary card output or a fuzzer.

use std::fmt;

/// One decoded TLV, borrowing its value from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
}

/// Why a byte string is not a valid TLV sequence; offsets are into the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlvError {
    /// A tag byte at `offset` with no length byte after it.
    MissingLength { tag: u8, offset: usize },
    /// Length form `0x80` (indefinite) or `0x83+` (longer than 64 KiB).
    UnsupportedLength { tag: u8, offset: usize, first: u8 },
    /// The length says `len` bytes but only `available` remain.
    Truncated { tag: u8, offset: usize, len: usize, available: usize },
}

impl fmt::Display for TlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlvError::MissingLength { tag, offset } => {
                write!(f, "tag {tag:02X} at offset {offset} has no length byte")
            }
            TlvError::UnsupportedLength { tag, offset, first } => {
                write!(f, "tag {tag:02X} at offset {offset} uses unsupported length form {first:02X}")
            }
            TlvError::Truncated { tag, offset, len, available } => {
                write!(f, "tag {tag:02X} at offset {offset} declares {len} bytes but only {available} follow")
            }
        }
    }
}

impl std::error::Error for TlvError {}

/// Iterator over the top-level TLVs of a buffer. After the first error it
/// yields that error once and then stops, so a caller can never loop forever.
#[derive(Debug, Clone)]
pub struct TlvIter<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> TlvIter<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        TlvIter { data, pos: 0, failed: false }
    }

    fn next_tlv(&mut self) -> Result<Tlv<'a>, TlvError> {
        let offset = self.pos;
        let rest = self.data.get(offset..).unwrap_or(&[]);
        let (&tag, rest) = rest.split_first().ok_or(TlvError::MissingLength { tag: 0, offset })?;
        let (&first, rest) = rest.split_first().ok_or(TlvError::MissingLength { tag, offset })?;
        let (len, header_extra, rest) = match first {
            0x00..=0x7F => (usize::from(first), 0, rest),
            0x81 => match rest {
                [l, tail @ ..] => (usize::from(*l), 1, tail),
                _ => return Err(TlvError::MissingLength { tag, offset }),
            },
            0x82 => match rest {
                [h, l, tail @ ..] => ((usize::from(*h) << 8) | usize::from(*l), 2, tail),
                _ => return Err(TlvError::MissingLength { tag, offset }),
            },
            _ => return Err(TlvError::UnsupportedLength { tag, offset, first }),
        };
        let value = rest.get(..len).ok_or(TlvError::Truncated { tag, offset, len, available: rest.len() })?;
        self.pos = offset + 2 + header_extra + len;
        Ok(Tlv { tag, value })
    }
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Result<Tlv<'a>, TlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let item = self.next_tlv();
        if item.is_err() {
            self.failed = true;
        }
        Some(item)
    }
}

/// Parses a whole buffer into its top-level TLVs; any malformed byte fails.
pub fn parse(data: &[u8]) -> Result<Vec<Tlv<'_>>, TlvError> {
    TlvIter::new(data).collect()
}

/// The value of the first top-level TLV with `tag`, if the buffer parses.
pub fn find(data: &[u8], tag: u8) -> Result<Option<&[u8]>, TlvError> {
    for item in TlvIter::new(data) {
        let tlv = item?;
        if tlv.tag == tag {
            return Ok(Some(tlv.value));
        }
    }
    Ok(None)
}

/// Follows a path of nested tags (e.g. `[0x34, 0x49, 0x86]` for a public key).
pub fn find_path<'a>(data: &'a [u8], path: &[u8]) -> Result<Option<&'a [u8]>, TlvError> {
    let mut current = data;
    for &tag in path {
        match find(current, tag)? {
            Some(v) => current = v,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// Appends the BER length of `len` to `out`.
pub fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xFF {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        // Callers never build values above 64 KiB (short APDUs carry 255).
        let len = len.min(0xFFFF);
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
}

/// Encodes one TLV.
pub fn encode(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 4);
    out.push(tag);
    push_len(&mut out, value.len());
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flat_sequence() {
        let data = [0x84, 0x01, 0x01, 0x4B, 0x01, 0x13, 0x74, 0x00];
        let tlvs = parse(&data).unwrap();
        assert_eq!(tlvs.len(), 3);
        assert_eq!(tlvs[0].tag, 0x84);
        assert_eq!(tlvs[0].value, &[0x01]);
        assert_eq!(tlvs[1].value, &[0x13]);
        assert_eq!(tlvs[2].tag, 0x74);
        assert!(tlvs[2].value.is_empty());
    }

    #[test]
    fn parses_long_lengths() {
        let mut data = vec![0xC3, 0x81, 0x90];
        data.extend_from_slice(&[0xAA; 0x90]);
        data.extend_from_slice(&[0x20, 0x82, 0x00, 0x02, 0x01, 0x3D]);
        let tlvs = parse(&data).unwrap();
        assert_eq!(tlvs[0].value.len(), 0x90);
        assert_eq!(tlvs[1].value, &[0x01, 0x3D]);
    }

    #[test]
    fn reports_truncation_with_offsets() {
        let err = parse(&[0x84, 0x01, 0x01, 0xC1, 0x05, 0x01]).unwrap_err();
        assert_eq!(err, TlvError::Truncated { tag: 0xC1, offset: 3, len: 5, available: 1 });
        assert!(err.to_string().contains("tag C1 at offset 3"));
    }

    #[test]
    fn rejects_missing_length_and_bad_forms() {
        assert_eq!(parse(&[0x84]).unwrap_err(), TlvError::MissingLength { tag: 0x84, offset: 0 });
        assert!(matches!(parse(&[0x84, 0x80, 0x00]).unwrap_err(), TlvError::UnsupportedLength { first: 0x80, .. }));
        assert!(matches!(parse(&[0x84, 0x82, 0x00]).unwrap_err(), TlvError::MissingLength { .. }));
    }

    #[test]
    fn finds_nested_public_key() {
        let point = [0x04u8; 65];
        let blob = encode(0x34, &encode(0x49, &encode(0x86, &point)));
        assert_eq!(&blob[..6], &[0x34, 0x45, 0x49, 0x43, 0x86, 0x41]);
        assert_eq!(find_path(&blob, &[0x34, 0x49, 0x86]).unwrap(), Some(&point[..]));
        assert_eq!(find_path(&blob, &[0x34, 0x48]).unwrap(), None);
    }

    #[test]
    fn encode_round_trips_all_length_forms() {
        for len in [0usize, 1, 0x7F, 0x80, 0xFF, 0x100, 0x1234] {
            let value = vec![0x5A; len];
            let enc = encode(0x9B, &value);
            let tlvs = parse(&enc).unwrap();
            assert_eq!(tlvs.len(), 1);
            assert_eq!(tlvs[0].value.len(), len);
        }
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        // Deterministic pseudo-random inputs: a cheap stand-in for a fuzzer
        // that still exercises every length form and truncation point.
        let mut state: u32 = 0x1234_5678;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let len = (state % 12) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (state.rotate_left(i as u32 * 3) & 0xFF) as u8).collect();
            let parsed = parse(&bytes);
            if let Ok(tlvs) = parsed {
                let total: usize = tlvs.iter().map(|t| t.value.len()).sum();
                assert!(total <= bytes.len());
            }
            let _ = find_path(&bytes, &[0x34, 0x49, 0x86]);
        }
    }
}
