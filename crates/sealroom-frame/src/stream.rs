//! Framing of messages laid back to back on one QUIC stream.
//!
//! Every frame on a stream is a length prefix followed by that many bytes. The prefix is a
//! QUIC variable-length integer (RFC 9000 section 16): the two high bits of the first byte
//! give the prefix length (1, 2, 4 or 8 bytes), the rest is the big-endian value. Unlike
//! RFC 9000 in general, a prefix must use the shortest form for its value, so every frame
//! has exactly one encoding.
//!
//! [`write_frame`] and [`write_len_prefix`] produce the framing; [`Deframer`] takes the
//! stream's bytes in whatever pieces they arrive and hands back whole frames, enforcing a
//! maximum frame length before it buffers a frame's body.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The largest length a prefix can express, 2^62 - 1.
pub const MAX_VARINT: u64 = (1 << 62) - 1;

/// The longest length prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 8;

/// A length that no prefix can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("length {0} does not fit a stream length prefix (max 2^62 - 1)")]
pub struct LengthTooLarge(pub u64);

/// Why a stream could not be deframed. Every variant is final: the stream is broken and
/// the [`Deframer`] keeps returning the same error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeframeError {
    /// A prefix declares a frame longer than the deframer's maximum.
    #[error("frame of {len} bytes exceeds the limit {max}")]
    Oversize {
        /// Declared length.
        len: u64,
        /// Limit in force.
        max: usize,
    },
    /// A prefix uses a longer form than its value needs.
    #[error("length prefix {len} is not minimally encoded")]
    NonMinimalPrefix {
        /// The value the prefix carries.
        len: u64,
    },
    /// The stream ended inside a frame (reported by [`Deframer::finish`]).
    #[error("stream ended inside a frame: {buffered} bytes of an incomplete frame")]
    Truncated {
        /// Bytes buffered of the incomplete frame (prefix included).
        buffered: usize,
    },
}

/// Bytes the prefix of a `len`-byte frame takes: 1, 2, 4 or 8.
pub const fn prefix_len(len: u64) -> usize {
    if len < 1 << 6 {
        1
    } else if len < 1 << 14 {
        2
    } else if len < 1 << 30 {
        4
    } else {
        8
    }
}

/// Bytes a framed `len`-byte payload takes on the stream (prefix and payload).
pub const fn framed_len(len: usize) -> usize {
    prefix_len(len as u64) + len
}

/// Write the length prefix of a `len`-byte frame; the caller then writes the frame's bytes
/// (so a payload held elsewhere need not be copied into one buffer).
///
/// # Errors
/// [`LengthTooLarge`] when `len` exceeds [`MAX_VARINT`]; nothing is written.
pub fn try_write_len_prefix(len: u64, buf: &mut impl BufMut) -> Result<(), LengthTooLarge> {
    if len > MAX_VARINT {
        return Err(LengthTooLarge(len));
    }
    let n = prefix_len(len);
    // The two high bits of the first byte hold log2 of the prefix length.
    let tag = u64::from(n.trailing_zeros()) << (8 * n - 2);
    buf.put_slice(&(len | tag).to_be_bytes()[MAX_PREFIX_LEN - n..]);
    Ok(())
}

/// Write the length prefix of a `len`-byte frame; see [`try_write_len_prefix`].
///
/// # Panics
/// When `len` exceeds 2^62 - 1, which no in-memory payload can reach in practice.
pub fn write_len_prefix(len: usize, buf: &mut impl BufMut) {
    if let Err(err) = try_write_len_prefix(len as u64, buf) {
        panic!("{err}");
    }
}

/// Write one frame: its length prefix, then `payload`.
///
/// # Panics
/// When the payload is longer than 2^62 - 1 bytes, which no slice can be in practice.
pub fn write_frame(payload: &[u8], buf: &mut impl BufMut) {
    write_len_prefix(payload.len(), buf);
    buf.put_slice(payload);
}

/// Result of reading a prefix from the start of a byte slice.
enum Prefix {
    /// More bytes are needed to read the prefix.
    Partial,
    /// The prefix is `len` bytes long and declares a `value`-byte frame.
    Whole { len: usize, value: u64 },
}

/// Read a prefix from the start of `input`.
fn read_prefix(input: &[u8]) -> Result<Prefix, DeframeError> {
    let Some(&first) = input.first() else {
        return Ok(Prefix::Partial);
    };
    let len = 1usize << (first >> 6);
    let Some(bytes) = input.get(..len) else {
        return Ok(Prefix::Partial);
    };
    let value = bytes
        .iter()
        .skip(1)
        .fold(u64::from(first & 0x3f), |acc, &b| (acc << 8) | u64::from(b));
    if prefix_len(value) != len {
        return Err(DeframeError::NonMinimalPrefix { len: value });
    }
    Ok(Prefix::Whole { len, value })
}

/// Frame length from a prefix value, refused above `max`.
fn checked_len(value: u64, max: usize) -> Result<usize, DeframeError> {
    usize::try_from(value)
        .ok()
        .filter(|&len| len <= max)
        .ok_or(DeframeError::Oversize { len: value, max })
}

/// Incremental decoder of a framed stream.
///
/// Push the stream's chunks as they arrive with [`push`](Self::push), then call
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)` ("need more"). A frame that
/// lies within one pushed chunk comes out as a slice of that chunk, without copying; only a
/// frame split across chunks is copied, once, into a buffer of its own.
///
/// Bound: a prefix that declares more than the maximum is an error as soon as the prefix
/// is complete, before any of the body is buffered. So when `next_frame` has returned
/// `Ok(None)`, the deframer holds less than `max_frame_len + MAX_PREFIX_LEN` bytes of
/// stream data, whatever the peer sent. (Pushing many chunks without calling `next_frame`
/// holds them all; the caller bounds that by draining after every push.)
#[derive(Debug)]
pub struct Deframer {
    max_frame_len: usize,
    /// Chunks pushed and not yet consumed, in stream order.
    chunks: VecDeque<Bytes>,
    /// The start of a frame that spans chunks, copied out of them (prefix included).
    staged: BytesMut,
    /// Bytes in `chunks` plus bytes in `staged`.
    buffered: usize,
    /// The error that broke the stream, repeated on every later call.
    failed: Option<DeframeError>,
}

impl Deframer {
    /// A deframer that refuses frames longer than `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            max_frame_len,
            chunks: VecDeque::new(),
            staged: BytesMut::new(),
            buffered: 0,
            failed: None,
        }
    }

    /// The maximum frame length this deframer accepts.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Bytes received and not yet returned as frames (prefixes included).
    pub fn buffered_len(&self) -> usize {
        self.buffered
    }

    /// Hand the deframer the next piece of the stream.
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() && self.failed.is_none() {
            self.buffered += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// The next whole frame, `Ok(None)` when more input is needed.
    ///
    /// # Errors
    /// [`DeframeError::Oversize`] or [`DeframeError::NonMinimalPrefix`] as soon as the
    /// offending prefix is complete; the deframer then stays failed.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, DeframeError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        let result = if self.staged.is_empty() {
            self.next_in_chunk()
        } else {
            self.next_staged()
        };
        if let Err(err) = result {
            self.fail(err);
        }
        result
    }

    /// Check that the stream ended on a frame boundary; call it when the peer finished the
    /// stream and `next_frame` returned `Ok(None)`.
    ///
    /// # Errors
    /// [`DeframeError::Truncated`] when part of a frame is buffered, or the error that
    /// broke the stream earlier.
    pub fn finish(&self) -> Result<(), DeframeError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        if self.buffered != 0 {
            return Err(DeframeError::Truncated {
                buffered: self.buffered,
            });
        }
        Ok(())
    }

    fn fail(&mut self, err: DeframeError) {
        self.failed = Some(err);
        self.chunks = VecDeque::new();
        self.staged = BytesMut::new();
        self.buffered = 0;
    }

    /// Fast path: the frame starts at the front chunk; slice it out if it is all there.
    fn next_in_chunk(&mut self) -> Result<Option<Bytes>, DeframeError> {
        let Some(front) = self.chunks.front_mut() else {
            return Ok(None);
        };
        let total = match read_prefix(front)? {
            Prefix::Whole { len, value } => {
                let body = checked_len(value, self.max_frame_len)?;
                if front.len() - len >= body {
                    front.advance(len);
                    let frame = front.split_to(body);
                    if front.is_empty() {
                        self.chunks.pop_front();
                    }
                    self.buffered -= len + body;
                    return Ok(Some(frame));
                }
                len + body
            }
            Prefix::Partial => 0,
        };
        if self.chunks.len() == 1 {
            // Wait for more input before copying: the frame may still arrive in the next
            // chunk and we copy each byte at most once either way.
            return Ok(None);
        }
        // The frame spans chunks: move the front chunk into the staging buffer, sized for
        // as much of the frame as has arrived (never ahead of the data, so a prefix alone
        // cannot make the deframer allocate).
        self.staged.reserve(total.min(self.buffered));
        if let Some(front) = self.chunks.pop_front() {
            self.staged.extend_from_slice(&front);
        }
        self.next_staged()
    }

    /// Slow path: a frame spanning chunks is assembled in `staged`.
    fn next_staged(&mut self) -> Result<Option<Bytes>, DeframeError> {
        loop {
            let need = match read_prefix(&self.staged)? {
                Prefix::Partial => {
                    let first = self.staged.first().copied().unwrap_or(0);
                    1usize << (first >> 6)
                }
                Prefix::Whole { len, value } => {
                    let body = checked_len(value, self.max_frame_len)?;
                    let total = len + body;
                    if self.staged.len() >= total {
                        let mut frame = self.staged.split_to(total);
                        frame.advance(len);
                        self.buffered -= total;
                        return Ok(Some(frame.freeze()));
                    }
                    let arrived = total.min(self.buffered);
                    self.staged
                        .reserve(arrived.saturating_sub(self.staged.len()));
                    total
                }
            };
            // Move just what the frame needs, so the following frames stay in their chunk.
            let Some(front) = self.chunks.front_mut() else {
                return Ok(None);
            };
            let take = (need - self.staged.len()).min(front.len());
            self.staged.extend_from_slice(&front[..take]);
            front.advance(take);
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(len: u64) -> Vec<u8> {
        let mut out = Vec::new();
        try_write_len_prefix(len, &mut out).expect("length fits");
        out
    }

    #[test]
    fn prefix_uses_rfc9000_forms_at_every_boundary() {
        // Examples of RFC 9000 appendix A.1 (values that are minimal there).
        assert_eq!(prefix(37), [0x25]);
        assert_eq!(prefix(15_293), [0x7b, 0xbd]);
        assert_eq!(prefix(494_878_333), [0x9d, 0x7f, 0x3e, 0x7d]);
        assert_eq!(
            prefix(151_288_809_941_952_652),
            [0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]
        );
        for (len, size) in [
            (0, 1),
            (63, 1),
            (64, 2),
            (16_383, 2),
            (16_384, 4),
            ((1 << 30) - 1, 4),
            (1 << 30, 8),
            (MAX_VARINT, 8),
        ] {
            let bytes = prefix(len);
            assert_eq!(bytes.len(), size, "prefix of {len}");
            assert_eq!(prefix_len(len), size);
            match read_prefix(&bytes) {
                Ok(Prefix::Whole { len: n, value }) => {
                    assert_eq!((n, value), (size, len));
                }
                _ => panic!("prefix of {len} does not read back"),
            }
        }
        assert_eq!(
            try_write_len_prefix(MAX_VARINT + 1, &mut Vec::new()),
            Err(LengthTooLarge(MAX_VARINT + 1))
        );
    }

    #[test]
    fn examples_match_the_protocol_document() {
        assert_eq!(prefix(36), [0x24]);
        assert_eq!(prefix(1200), [0x44, 0xb0]);
        assert_eq!(prefix(16_384), [0x80, 0x00, 0x40, 0x00]);
        let mut framed = Vec::new();
        write_frame(&[0xaa; 1200], &mut framed);
        assert_eq!(framed.len(), 1202);
        assert_eq!(framed[..2], [0x44, 0xb0]);
        assert_eq!(framed_len(1200), 1202);
    }

    #[test]
    fn non_minimal_prefix_is_refused() {
        let mut d = Deframer::new(100);
        // 5 in the two-byte form.
        d.push(Bytes::from_static(&[0x40, 0x05, 1, 2, 3, 4, 5]));
        assert_eq!(
            d.next_frame(),
            Err(DeframeError::NonMinimalPrefix { len: 5 })
        );
        // Also when the prefix spans chunks, and in the four- and eight-byte forms.
        let mut d = Deframer::new(100);
        d.push(Bytes::from_static(&[0x80, 0x00]));
        d.push(Bytes::from_static(&[0x00, 0x3f]));
        assert_eq!(
            d.next_frame(),
            Err(DeframeError::NonMinimalPrefix { len: 63 })
        );
        let mut d = Deframer::new(100);
        d.push(Bytes::from_static(&[0xc0, 0, 0, 0, 0x3f, 0xff, 0xff, 0xff]));
        assert_eq!(
            d.next_frame(),
            Err(DeframeError::NonMinimalPrefix { len: (1 << 30) - 1 })
        );
        let mut d = Deframer::new(100);
        d.push(Bytes::from_static(&[0x40, 0x05, 1, 2, 3, 4, 5]));
        assert_eq!(
            d.next_frame(),
            Err(DeframeError::NonMinimalPrefix { len: 5 })
        );
        // The error is final.
        d.push(Bytes::from_static(&[0x00]));
        assert_eq!(
            d.next_frame(),
            Err(DeframeError::NonMinimalPrefix { len: 5 })
        );
    }

    #[test]
    fn frames_come_out_whole_and_in_order() {
        let mut wire = Vec::new();
        write_frame(b"hello", &mut wire);
        write_frame(b"", &mut wire);
        write_frame(&[7u8; 300], &mut wire);
        let mut d = Deframer::new(1000);
        d.push(Bytes::from(wire));
        assert_eq!(d.next_frame(), Ok(Some(Bytes::from_static(b"hello"))));
        assert_eq!(d.next_frame(), Ok(Some(Bytes::new())));
        assert_eq!(d.next_frame(), Ok(Some(Bytes::from(vec![7u8; 300]))));
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.buffered_len(), 0);
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn byte_by_byte_input_yields_the_same_frames() {
        let mut wire = Vec::new();
        write_frame(&[1u8; 70], &mut wire);
        write_frame(b"x", &mut wire);
        let mut d = Deframer::new(1000);
        let mut frames = Vec::new();
        for &b in &wire {
            d.push(Bytes::copy_from_slice(&[b]));
            while let Some(frame) = d.next_frame().expect("valid stream") {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            [Bytes::from(vec![1u8; 70]), Bytes::from_static(b"x")]
        );
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn oversize_is_refused_from_the_prefix_alone() {
        let mut d = Deframer::new(1000);
        // A two-byte prefix declaring 1001 bytes, split across two chunks, no body yet.
        let wire = prefix(1001);
        d.push(Bytes::copy_from_slice(&wire[..1]));
        assert_eq!(d.next_frame(), Ok(None));
        d.push(Bytes::copy_from_slice(&wire[1..]));
        assert_eq!(
            d.next_frame(),
            Err(DeframeError::Oversize {
                len: 1001,
                max: 1000
            })
        );
        assert_eq!(d.buffered_len(), 0);
        let mut d = Deframer::new(1000);
        d.push(Bytes::from(prefix(MAX_VARINT)));
        assert_eq!(
            d.next_frame(),
            Err(DeframeError::Oversize {
                len: MAX_VARINT,
                max: 1000
            })
        );
    }

    #[test]
    fn frame_at_the_limit_is_accepted() {
        let mut wire = Vec::new();
        write_frame(&[9u8; 1000], &mut wire);
        let mut d = Deframer::new(1000);
        d.push(Bytes::from(wire));
        assert_eq!(d.next_frame().map(|f| f.map(|f| f.len())), Ok(Some(1000)));
    }

    #[test]
    fn stream_ending_inside_a_frame_is_truncated() {
        let mut wire = Vec::new();
        write_frame(b"abcdef", &mut wire);
        let mut d = Deframer::new(100);
        d.push(Bytes::copy_from_slice(&wire[..4]));
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), Err(DeframeError::Truncated { buffered: 4 }));
    }

    #[test]
    fn frame_within_one_chunk_is_a_slice_of_it() {
        let mut wire = Vec::new();
        write_frame(b"first", &mut wire);
        write_frame(b"second", &mut wire);
        let chunk = Bytes::from(wire);
        let range = chunk.as_ptr_range();
        let mut d = Deframer::new(100);
        d.push(chunk);
        for _ in 0..2 {
            let frame = d.next_frame().expect("valid").expect("whole frame");
            assert!(range.contains(&frame.as_ptr()));
        }
    }

    #[test]
    fn held_bytes_stay_below_the_limit_plus_prefix() {
        // A peer sending a maximal frame slowly never makes the deframer hold more than
        // the frame and its prefix.
        let max = 500;
        let mut wire = Vec::new();
        write_frame(&vec![3u8; max], &mut wire);
        write_frame(&vec![4u8; max], &mut wire);
        let mut d = Deframer::new(max);
        for piece in wire.chunks(7) {
            d.push(Bytes::copy_from_slice(piece));
            while d.next_frame().expect("valid").is_some() {}
            assert!(d.buffered_len() < max + MAX_PREFIX_LEN);
        }
        assert_eq!(d.finish(), Ok(()));
    }
}
