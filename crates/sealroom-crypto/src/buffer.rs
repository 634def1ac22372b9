//! Growable byte buffers that sealing and opening write into.

use bytes::BytesMut;

mod sealed {
    pub trait Sealed {}
    impl Sealed for Vec<u8> {}
    impl Sealed for bytes::BytesMut {}
}

/// A contiguous, growable byte buffer: `Vec<u8>` or `BytesMut`.
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
