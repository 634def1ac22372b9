//! The errors of sealing and opening.

/// Why a frame could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The key reached its usage limit; call [`Sealer::rekey`](crate::Sealer::rekey) or
    /// [`Sealer::rotate`](crate::Sealer::rotate) and seal again. Nothing was written.
    #[error("key usage limit reached: rekey or rotate before sealing more")]
    RotationRequired,
    /// The plaintext does not leave room for the SFrame header in front of it.
    #[error("need {needed} bytes of headroom before the plaintext, have {have}")]
    NoHeadroom {
        /// Header length of this frame.
        needed: usize,
        /// Bytes before the plaintext.
        have: usize,
    },
    /// The plaintext offset lies beyond the end of the buffer.
    #[error("plaintext offset {at} is beyond the buffer length {len}")]
    OutOfBounds {
        /// The offset given.
        at: usize,
        /// The buffer length.
        len: usize,
    },
    /// The plaintext is longer than [`MAX_PLAINTEXT_LEN`](crate::MAX_PLAINTEXT_LEN).
    #[error("plaintext of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Plaintext length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The cryptographic library refused; valid sizes never cause this.
    #[error("the cryptographic backend refused to seal")]
    Backend,
}

/// Why a frame could not be opened. No variant carries or hints at plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The KID names an epoch this opener does not hold yet (a sender rotated ahead of
    /// us); the caller may hold the frame and retry after rotating.
    #[error("unknown sframe kid {0:#x}")]
    UnknownKid(u64),
    /// A frame with this KID and CTR was already opened.
    #[error("replayed frame")]
    Replayed,
    /// The CTR lies behind the replay window, or the KID belongs to an epoch or a sending
    /// session this opener has retired.
    #[error("frame too old")]
    TooOld,
    /// The frame did not authenticate: wrong key, altered header, metadata, ciphertext or
    /// tag. Deliberately one opaque error.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// The bytes are not an SFrame ciphertext: bad header or shorter than header + tag.
    #[error("malformed sframe")]
    Malformed,
}
