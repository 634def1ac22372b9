//! The status codes every function of the C API returns, and what each means.

use sealroom_crypto::{OpenError, SealError};

/// What a call of the C API did: `SEALROOM_STATUS_OK`, or why it did nothing useful.
///
/// Every function that can fail returns one of these; outputs are written only on
/// `SEALROOM_STATUS_OK`. `sealroom_status_message` gives a sentence for each.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealroomStatus {
    /// The call succeeded.
    Ok = 0,
    /// A pointer argument that must not be null was null.
    NullPointer = 1,
    /// An argument is out of range: a room secret that is not 32 bytes, a length past
    /// `PTRDIFF_MAX`, an output buffer that overlaps the input.
    InvalidArgument = 2,
    /// The cipher suite identifier is not one of RFC 9605's five (1 to 5).
    UnknownSuite = 3,
    /// The output buffer is too small; nothing was written and, for a sealer, no
    /// counter was used. Ask `sealroom_sealer_sealed_len` for the size.
    BufferTooSmall = 4,
    /// The sealer's key reached its usage limit: call `sealroom_sealer_rekey` or
    /// `sealroom_sealer_rotate`, then seal again.
    RotationRequired = 5,
    /// Sealing in place needs more bytes before the plaintext for the SFrame header
    /// (at most `SEALROOM_MAX_HEADER_LEN`).
    NoHeadroom = 6,
    /// The plaintext is longer than `SEALROOM_MAX_PLAINTEXT_LEN`.
    TooLong = 7,
    /// The cryptographic library refused; valid sizes never cause it.
    Backend = 8,
    /// The frame's KID names an epoch this opener does not hold yet; rotate the opener
    /// and retry, or drop the frame.
    UnknownKid = 9,
    /// A frame with this KID and counter was already opened: drop it.
    Replayed = 10,
    /// The frame is behind the replay window, or from an epoch or sending session the
    /// opener has retired: drop it.
    TooOld = 11,
    /// The frame did not authenticate (wrong key, or altered header, metadata,
    /// ciphertext or tag): drop it. No plaintext was written.
    AuthenticationFailed = 12,
    /// The bytes are not an SFrame ciphertext (bad header, or shorter than header and
    /// tag): drop them.
    Malformed = 13,
    /// The library hit a bug and recovered without unwinding into C; please report it.
    Internal = 14,
}

impl SealroomStatus {
    /// The sentence `sealroom_status_message` returns, NUL-terminated.
    pub(crate) const fn message(self) -> &'static str {
        match self {
            Self::Ok => "ok\0",
            Self::NullPointer => "a required pointer argument was null\0",
            Self::InvalidArgument => {
                "an argument is out of range (secret length, buffer length, or overlapping buffers)\0"
            }
            Self::UnknownSuite => "unknown cipher suite: use 1 to 5 (RFC 9605 section 4.5)\0",
            Self::BufferTooSmall => {
                "the output buffer is too small: ask sealroom_sealer_sealed_len for the size\0"
            }
            Self::RotationRequired => {
                "key usage limit reached: call sealroom_sealer_rekey or sealroom_sealer_rotate\0"
            }
            Self::NoHeadroom => {
                "not enough room before the plaintext for the SFrame header (leave SEALROOM_MAX_HEADER_LEN)\0"
            }
            Self::TooLong => "the plaintext exceeds SEALROOM_MAX_PLAINTEXT_LEN\0",
            Self::Backend => "the cryptographic backend refused\0",
            Self::UnknownKid => {
                "the frame's key id names an epoch not held yet: rotate or drop it\0"
            }
            Self::Replayed => "replayed frame: drop it\0",
            Self::TooOld => "frame too old (behind the replay window or a retired key): drop it\0",
            Self::AuthenticationFailed => {
                "the frame did not authenticate (wrong key or altered bytes): drop it\0"
            }
            Self::Malformed => "not an SFrame ciphertext: drop it\0",
            Self::Internal => "internal error in sealroom (a bug, please report it)\0",
        }
    }

    /// The status for a raw code, if it is one.
    pub(crate) const fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            0 => Self::Ok,
            1 => Self::NullPointer,
            2 => Self::InvalidArgument,
            3 => Self::UnknownSuite,
            4 => Self::BufferTooSmall,
            5 => Self::RotationRequired,
            6 => Self::NoHeadroom,
            7 => Self::TooLong,
            8 => Self::Backend,
            9 => Self::UnknownKid,
            10 => Self::Replayed,
            11 => Self::TooOld,
            12 => Self::AuthenticationFailed,
            13 => Self::Malformed,
            14 => Self::Internal,
            _ => return None,
        })
    }
}

impl From<SealError> for SealroomStatus {
    fn from(err: SealError) -> Self {
        match err {
            SealError::RotationRequired => Self::RotationRequired,
            SealError::NoHeadroom { .. } => Self::NoHeadroom,
            SealError::OutOfBounds { .. } => Self::InvalidArgument,
            SealError::TooLong { .. } => Self::TooLong,
            _ => Self::Backend,
        }
    }
}

impl From<OpenError> for SealroomStatus {
    fn from(err: OpenError) -> Self {
        match err {
            OpenError::UnknownKid(_) => Self::UnknownKid,
            OpenError::Replayed => Self::Replayed,
            OpenError::TooOld => Self::TooOld,
            OpenError::Malformed => Self::Malformed,
            _ => Self::AuthenticationFailed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_every_message_is_one_c_string() {
        for code in 0..=14 {
            let status = SealroomStatus::from_code(code).expect("known code");
            assert_eq!(status as i32, code);
            let message = status.message();
            assert_eq!(message.find('\0'), Some(message.len() - 1), "{message}");
        }
        assert_eq!(SealroomStatus::from_code(15), None);
        assert_eq!(SealroomStatus::from_code(-1), None);
    }
}
