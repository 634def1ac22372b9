//! Growable byte buffers that sealing and opening write into.

use bytes::BytesMut;

mod sealed {
    pub trait Sealed {}
    impl Sealed for Vec<u8> {}
    impl Sealed for bytes::BytesMut {}
    impl Sealed for super::SliceBuffer<'_> {}
}

/// A contiguous, growable byte buffer: `Vec<u8>`, `BytesMut`, or a [`SliceBuffer`] over
/// memory the caller owns.
///
/// Sealing and opening append to it or work in place inside it, so a caller that reuses
/// one buffer per frame pays no allocation in steady state.
pub trait FrameBuffer: sealed::Sealed {
    /// Current length.
    fn len(&self) -> usize;
    /// Whether the buffer is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Append `bytes`.
    fn extend_from_slice(&mut self, bytes: &[u8]);
    /// Grow to `len` with zero bytes, or shrink to it.
    fn resize_zeroed(&mut self, len: usize);
    /// The whole buffer as a mutable slice.
    fn as_mut_slice(&mut self) -> &mut [u8];
}

impl FrameBuffer for Vec<u8> {
    fn len(&self) -> usize {
        Self::len(self)
    }
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Self::extend_from_slice(self, bytes);
    }
    fn resize_zeroed(&mut self, len: usize) {
        self.resize(len, 0);
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        self
    }
}

impl FrameBuffer for BytesMut {
    fn len(&self) -> usize {
        Self::len(self)
    }
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Self::extend_from_slice(self, bytes);
    }
    fn resize_zeroed(&mut self, len: usize) {
        self.resize(len, 0);
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        self
    }
}

/// A [`FrameBuffer`] over a fixed slice the caller owns, for callers that cannot let the
/// library allocate (the C API hands in its own buffers).
///
/// It never grows past the slice: a write that would is cut at the end of the slice and
/// marks the buffer [`overflowed`](Self::overflowed), so the caller must check the room it
/// needs first ([`Sealer::sealed_len`](crate::Sealer::sealed_len) for sealing; the SFrame
/// length for opening) and treat an overflow as its own bug. Nothing here panics.
#[derive(Debug)]
pub struct SliceBuffer<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflowed: bool,
}

impl<'a> SliceBuffer<'a> {
    /// A buffer over `buf` whose first `len` bytes are in use (`len` is capped at the
    /// slice's length).
    pub fn new(buf: &'a mut [u8], len: usize) -> Self {
        let len = len.min(buf.len());
        Self {
            buf,
            len,
            overflowed: false,
        }
    }

    /// Bytes the slice can hold in all.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Whether a write was cut at the end of the slice.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }
}

impl FrameBuffer for SliceBuffer<'_> {
    fn len(&self) -> usize {
        self.len
    }
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        let room = self.buf.len() - self.len;
        let take = bytes.len().min(room);
        if take < bytes.len() {
            self.overflowed = true;
        }
        let end = self.len + take;
        if let (Some(dst), Some(src)) = (self.buf.get_mut(self.len..end), bytes.get(..take)) {
            dst.copy_from_slice(src);
        }
        self.len = end;
    }
    fn resize_zeroed(&mut self, len: usize) {
        if len > self.buf.len() {
            self.overflowed = true;
        }
        let len = len.min(self.buf.len());
        if let Some(grown) = self.buf.get_mut(self.len..len) {
            grown.fill(0);
        }
        self.len = len;
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        self.buf.get_mut(..len).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_buffer_appends_within_the_slice_and_flags_what_does_not_fit() {
        let mut storage = [0xaa; 8];
        let mut buf = SliceBuffer::new(&mut storage, 2);
        buf.extend_from_slice(b"abc");
        assert_eq!(buf.as_mut_slice(), &[0xaa, 0xaa, b'a', b'b', b'c']);
        assert!(!buf.overflowed());
        buf.resize_zeroed(7);
        assert_eq!(buf.len(), 7);
        assert_eq!(&buf.as_mut_slice()[5..], &[0, 0]);
        buf.extend_from_slice(b"xyz");
        assert!(buf.overflowed());
        assert_eq!(buf.len(), 8);
        buf.resize_zeroed(3);
        assert_eq!(buf.as_mut_slice(), &[0xaa, 0xaa, b'a']);
        assert_eq!(SliceBuffer::new(&mut [0; 4], 9).len(), 4);
    }
}
