//! The SFrame header of RFC 9605 section 4.3: a key id (KID) and a counter (CTR).
//!
//! The header starts with one config byte `X KKK Y CCC`. When `X` is 0 the three `K` bits
//! are the KID itself (0 to 7); when `X` is 1 they are the KID's length in bytes minus one,
//! and that many big-endian bytes follow. The CTR is laid out the same way with `Y` and `C`,
//! after the KID bytes. This module encodes every value in its shortest form and rejects
//! anything else on decode, so one (KID, CTR) pair has exactly one encoding: the header
//! bytes are authenticated as AAD, and two encodings of one header would be two AADs.

use bytes::BufMut;

/// A decoded SFrame header: the key id and the counter of one sealed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SframeHeader {
    /// Key id: names the base key the frame was sealed under.
    pub kid: u64,
    /// Counter: unique per frame under one key; with the salt it forms the nonce.
    pub ctr: u64,
}

/// Why bytes could not be decoded as an SFrame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The input ended before the header did.
    #[error("truncated sframe header: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes the header needs (as far as could be told from the bytes present).
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// The KID is written in a longer form than its value needs.
    #[error("non-minimal sframe kid encoding")]
    NonMinimalKid,
    /// The CTR is written in a longer form than its value needs.
    #[error("non-minimal sframe ctr encoding")]
    NonMinimalCtr,
}

/// An encoded header held in a fixed array, for callers that want no `BufMut`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EncodedHeader {
    bytes: [u8; SframeHeader::MAX_LEN],
    len: usize,
}

impl EncodedHeader {
    /// The encoded header bytes.
    pub fn as_bytes(&self) -> &[u8] {
        // `len` is at most MAX_LEN by construction; `get` keeps that a non-panicking fact.
        self.bytes.get(..self.len).unwrap_or(&self.bytes)
    }

    /// The encoded header in the first [`Self::len`] bytes of a fixed array, zeros after:
    /// lets callers copy it with one fixed-size move.
    pub fn as_array(&self) -> &[u8; SframeHeader::MAX_LEN] {
        &self.bytes
    }

    /// Length of the encoded header in bytes.
    #[allow(clippy::len_without_is_empty)] // never empty: the config byte is always there
    pub fn len(&self) -> usize {
        self.len
    }
}

impl AsRef<[u8]> for EncodedHeader {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for EncodedHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EncodedHeader")
            .field(&self.as_bytes())
            .finish()
    }
}

/// Values up to this one are written inside the config byte.
const INLINE_MAX: u64 = 7;

/// Bytes needed to write `value` in extended form (0 for inline values).
fn extended_len(value: u64) -> usize {
    if value <= INLINE_MAX {
        0
    } else {
        // 1..=8: one byte per started octet of significant bits.
        (u64::BITS - value.leading_zeros()).div_ceil(8) as usize
    }
}

/// The three-bit field and the extension flag for `value`, given its extended length.
fn config_bits(value: u64, ext_len: usize) -> u8 {
    if ext_len == 0 {
        // value <= 7 here: the low byte is the value.
        value.to_be_bytes()[7] & 0x7
    } else {
        // ext_len in 1..=8, so ext_len - 1 fits three bits.
        0x8 | (u8::try_from(ext_len - 1).unwrap_or(0x7) & 0x7)
    }
}

/// `value`'s low `len` bytes (0 to 8) moved to the top of a `u64`, so that its big-endian
/// bytes start with them; zero for `len == 0`.
fn left_aligned(value: u64, len: usize) -> u64 {
    match len {
        1..=8 => value << (64 - 8 * len),
        _ => 0,
    }
}

/// Read one field (KID or CTR) whose three config bits and extension flag are given,
/// from `input` at `*at`; advance `*at`.
fn read_field(
    ext: bool,
    bits: u8,
    input: &[u8],
    at: &mut usize,
    non_minimal: HeaderError,
) -> Result<u64, HeaderError> {
    if !ext {
        return Ok(u64::from(bits));
    }
    let len = usize::from(bits) + 1;
    let end = *at + len;
    let Some(field) = input.get(*at..end) else {
        return Err(HeaderError::Truncated {
            needed: end,
            have: input.len(),
        });
    };
    let value = match input.get(*at..*at + 8) {
        // One wide load when the input goes on for 8 bytes, the common case.
        Some(wide) => {
            let mut word = [0u8; 8];
            word.copy_from_slice(wide);
            // len is 1..=8 here.
            u64::from_be_bytes(word) >> (64 - 8 * len)
        }
        None => field
            .iter()
            .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte)),
    };
    if extended_len(value) != len {
        return Err(non_minimal);
    }
    *at = end;
    Ok(value)
}

impl SframeHeader {
    /// Longest possible encoded header: the config byte and two 8-byte values.
    pub const MAX_LEN: usize = 17;

    /// A header for `kid` and `ctr`.
    pub const fn new(kid: u64, ctr: u64) -> Self {
        Self { kid, ctr }
    }

    /// Length of this header's (minimal) encoding in bytes, 1 to [`Self::MAX_LEN`].
    pub fn encoded_len(&self) -> usize {
        1 + extended_len(self.kid) + extended_len(self.ctr)
    }

    /// Encode into a fixed array, with no allocation.
    pub fn encode_array(&self) -> EncodedHeader {
        let kid_len = extended_len(self.kid);
        let ctr_len = extended_len(self.ctr);
        let mut bytes = [0u8; Self::MAX_LEN];
        bytes[0] = (config_bits(self.kid, kid_len) << 4) | config_bits(self.ctr, ctr_len);
        // KID bytes then CTR bytes, as one 16-byte big-endian store (no partial stores
        // into the array for a later wide load to stall on).
        let fields = (u128::from(left_aligned(self.kid, kid_len)) << 64)
            | (u128::from(left_aligned(self.ctr, ctr_len)) << (64 - 8 * kid_len));
        bytes[1..].copy_from_slice(&fields.to_be_bytes());
        EncodedHeader {
            bytes,
            len: 1 + kid_len + ctr_len,
        }
    }

    /// Encode into `buf`, writing exactly [`Self::encoded_len`] bytes.
    ///
    /// # Panics
    /// Like every `BufMut` write, if `buf` has less than [`Self::encoded_len`] bytes of
    /// remaining capacity and cannot grow (a `Vec` or `BytesMut` always can).
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_slice(self.encode_array().as_bytes());
    }

    /// Decode the header at the start of `input`; returns the header and its length in
    /// bytes. Bytes after the header are not looked at. Nothing is copied or allocated.
    ///
    /// # Errors
    /// [`HeaderError::Truncated`] when `input` ends inside the header;
    /// [`HeaderError::NonMinimalKid`] or [`HeaderError::NonMinimalCtr`] when a value is
    /// written in a longer form than the shortest one.
    pub fn decode(input: &[u8]) -> Result<(Self, usize), HeaderError> {
        let Some(&config) = input.first() else {
            return Err(HeaderError::Truncated { needed: 1, have: 0 });
        };
        let mut at = 1;
        let kid = read_field(
            config & 0x80 != 0,
            (config >> 4) & 0x7,
            input,
            &mut at,
            HeaderError::NonMinimalKid,
        )?;
        let ctr = read_field(
            config & 0x08 != 0,
            config & 0x7,
            input,
            &mut at,
            HeaderError::NonMinimalCtr,
        )?;
        Ok((Self { kid, ctr }, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(kid: u64, ctr: u64) {
        let header = SframeHeader::new(kid, ctr);
        let array = header.encode_array();
        let mut vec = Vec::new();
        header.encode(&mut vec);
        assert_eq!(array.as_bytes(), vec.as_slice());
        assert_eq!(array.len(), header.encoded_len());
        vec.extend_from_slice(b"payload");
        assert_eq!(SframeHeader::decode(&vec), Ok((header, array.len())));
    }

    #[test]
    fn edges_round_trip() {
        let edges = [
            0,
            1,
            7,
            8,
            0xff,
            0x100,
            0xffff,
            0x1_0000,
            u64::from(u32::MAX),
            1 << 56,
            u64::MAX - 1,
            u64::MAX,
        ];
        for kid in edges {
            for ctr in edges {
                roundtrip(kid, ctr);
            }
        }
    }

    #[test]
    fn lengths_at_boundaries() {
        assert_eq!(SframeHeader::new(7, 7).encoded_len(), 1);
        assert_eq!(SframeHeader::new(8, 0).encoded_len(), 2);
        assert_eq!(SframeHeader::new(0xff, 0x100).encoded_len(), 4);
        assert_eq!(
            SframeHeader::new(u64::MAX, u64::MAX).encoded_len(),
            SframeHeader::MAX_LEN
        );
    }

    #[test]
    fn inline_value_in_extended_form_is_rejected() {
        // X=1, K=0: one KID byte holding 5, which fits inline.
        assert_eq!(
            SframeHeader::decode(&[0x80, 0x05]),
            Err(HeaderError::NonMinimalKid)
        );
        // Y=1, C=0: one CTR byte holding 0.
        assert_eq!(
            SframeHeader::decode(&[0x08, 0x00]),
            Err(HeaderError::NonMinimalCtr)
        );
    }

    #[test]
    fn leading_zero_byte_is_rejected() {
        // KID 0x0100 written in three bytes.
        assert_eq!(
            SframeHeader::decode(&[0xa0, 0x00, 0x01, 0x00]),
            Err(HeaderError::NonMinimalKid)
        );
        // CTR 0xff written in two bytes after an inline KID.
        assert_eq!(
            SframeHeader::decode(&[0x09, 0x00, 0xff]),
            Err(HeaderError::NonMinimalCtr)
        );
    }

    #[test]
    fn truncation_at_every_offset_is_an_error() {
        let full = SframeHeader::new(u64::MAX, 0x1234_5678).encode_array();
        let bytes = full.as_bytes();
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    SframeHeader::decode(&bytes[..cut]),
                    Err(HeaderError::Truncated { have, .. }) if have == cut
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_left_alone() {
        let (header, len) = SframeHeader::decode(&[0x12, 0xff, 0xff]).expect("valid header");
        assert_eq!(header, SframeHeader::new(1, 2));
        assert_eq!(len, 1);
    }
}
