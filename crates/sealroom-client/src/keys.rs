//! The room's keys as the client uses them: seal this member's frames, open everyone
//! else's. A thin layer over sealroom-crypto that adds the envelope (its metadata is the
//! SFrame AAD) and keeps the sealing state for the whole room session, across connections.
//!
//! PROVISIONAL: sealroom-crypto's sealing API has not landed yet; until it does, sealing
//! refuses every frame, so nothing can leave the process unsealed.

use std::fmt;

use bytes::Bytes;
use sealroom_frame::envelope::Envelope;

use crate::error::PublishError;

/// Largest SFrame overhead of the default suite: header (config byte, KID and CTR of up to
/// 8 bytes each) and a 16-byte tag.
pub(crate) const MAX_SFRAME_OVERHEAD: usize = 1 + 8 + 8 + 16;

/// Encoded length of a frame whose plaintext is `plaintext_len` bytes, at most.
pub(crate) fn sealed_frame_len(plaintext_len: usize) -> usize {
    Envelope::HEADER_LEN + MAX_SFRAME_OVERHEAD + plaintext_len
}

/// The room secret all members hold.
#[allow(dead_code)] // provisional until sealroom-crypto lands
pub struct RoomSecret(Vec<u8>);

impl RoomSecret {
    /// A secret from bytes the application distributed.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }
}

impl fmt::Debug for RoomSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RoomSecret(..)")
    }
}

/// Why a received frame could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenFailure {
    /// The frame did not authenticate under any key this member holds.
    #[error("frame does not authenticate")]
    Authentication,
}

/// Sealing and opening state of one room session.
pub(crate) struct Keys {
    _secret: RoomSecret,
}

impl Keys {
    pub(crate) fn new(secret: RoomSecret) -> Self {
        Self { _secret: secret }
    }

    /// Seal `plaintext` under this member's key with `envelope` as metadata; returns the
    /// encoded frame (envelope header and SFrame ciphertext).
    pub(crate) fn seal(
        &self,
        _envelope: &Envelope,
        _plaintext: &[u8],
    ) -> Result<Bytes, PublishError> {
        Err(PublishError::Seal(String::from("sealing is not wired yet")))
    }

    /// Open a received frame's payload, authenticating `envelope`.
    pub(crate) fn open(&self, _envelope: &Envelope, _payload: &[u8]) -> Result<Bytes, OpenFailure> {
        Err(OpenFailure::Authentication)
    }
}
