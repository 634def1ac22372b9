//! One archive record: `marker | type | reserved | length | body | crc32`.
//!
//! Records are self-delimiting: the length says where the next one starts, the CRC-32
//! says whether these bytes are the ones written, and the two-byte marker lets a reader
//! find the next record after damage. docs/RECORDING.md draws each body.

use bytes::{BufMut, Bytes};
use sealroom_frame::control::ControlMessage;
use sealroom_frame::envelope::{Envelope, Frame, MemberId};

use super::MAX_RECORD_BODY;

/// The two bytes every record starts with ("SR").
pub const RECORD_MARKER: [u8; 2] = *b"SR";

/// Bytes of a record around its body: marker, type, reserved, length, then the CRC.
pub const RECORD_OVERHEAD: usize = 12;

/// Record type bytes.
pub(crate) mod kind {
    pub(crate) const FRAME: u8 = 0x01;
    pub(crate) const CONTROL: u8 = 0x02;
    pub(crate) const JOINED: u8 = 0x03;
    pub(crate) const LOSS: u8 = 0x04;
    pub(crate) const END: u8 = 0x05;
}

/// What was lost, in a [`Record::Loss`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LossKind {
    /// The recorder's connection to the relay was down from `from_us` to `to_us`.
    Disconnected,
    /// The spool was full: `count` sealed segments covering `from_us`..`to_us` were
    /// dropped before they could be uploaded.
    SpoolOverflow,
    /// The recorder could not keep up: `count` datagram frames were dropped.
    QueueOverflow,
    /// The recorder restarted: the previous session of this recording ended without
    /// closing its last segment at `from_us` (a crash or a kill).
    Restarted,
    /// A kind this reader does not know (a later writer's), kept as its byte.
    Other(u8),
}

impl LossKind {
    const fn byte(self) -> u8 {
        match self {
            Self::Disconnected => 1,
            Self::SpoolOverflow => 2,
            Self::QueueOverflow => 3,
            Self::Restarted => 4,
            Self::Other(b) => b,
        }
    }

    const fn from_byte(b: u8) -> Self {
        match b {
            1 => Self::Disconnected,
            2 => Self::SpoolOverflow,
            3 => Self::QueueOverflow,
            4 => Self::Restarted,
            other => Self::Other(other),
        }
    }
}

/// One record of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A sealed frame as it crossed the wire.
    Frame {
        /// Arrival on the recorder's clock, microseconds since the Unix epoch.
        arrival_us: u64,
        /// The frame's envelope (sender, track, kind, group, seq, flags, capture time).
        envelope: Envelope,
        /// The whole frame: envelope header and SFrame ciphertext.
        frame: Bytes,
    },
    /// A control message from the relay about the room (members, tracks, recorders).
    Control {
        /// Arrival, microseconds since the Unix epoch.
        at_us: u64,
        /// The message.
        message: ControlMessage,
    },
    /// The recorder (re)joined; the roster follows as `MemberJoined` control records.
    Joined {
        /// Arrival, microseconds since the Unix epoch.
        at_us: u64,
        /// The recorder's member id on this connection.
        member: MemberId,
        /// Whether it rejoined after a lost connection.
        rejoin: bool,
    },
    /// Something the recording is missing, stated where it happened.
    Loss {
        /// When the recorder noted it, microseconds since the Unix epoch.
        at_us: u64,
        /// What was lost.
        kind: LossKind,
        /// Start of the lost interval.
        from_us: u64,
        /// End of the lost interval.
        to_us: u64,
        /// How many segments or frames, by kind.
        count: u64,
        /// A human-readable explanation.
        detail: String,
    },
    /// The last record of a segment closed in order.
    End {
        /// When the segment was closed, microseconds since the Unix epoch.
        at_us: u64,
        /// Records before this one in the segment.
        records: u64,
    },
}

/// Why a record's body could not be decoded (its CRC was right).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The body is shorter than its type's fixed fields.
    #[error("record body of {len} bytes is shorter than its fixed fields")]
    Short {
        /// Body length.
        len: usize,
    },
    /// A frame record whose frame does not decode as an envelope frame.
    #[error("frame record holds no valid envelope frame: {0}")]
    BadFrame(String),
    /// A control record whose message does not decode.
    #[error("control record holds no valid control message: {0}")]
    BadControl(String),
    /// A field that must be 0 or 1, or valid UTF-8, is not.
    #[error("record field out of range")]
    BadField,
    /// A record type this reader does not know (skipped).
    #[error("unknown record type {0:#04x} (written by a later version; skipped)")]
    UnknownType(u8),
}

impl Record {
    fn type_byte(&self) -> u8 {
        match self {
            Self::Frame { .. } => kind::FRAME,
            Self::Control { .. } => kind::CONTROL,
            Self::Joined { .. } => kind::JOINED,
            Self::Loss { .. } => kind::LOSS,
            Self::End { .. } => kind::END,
        }
    }

    /// Append the encoded record to `out`.
    ///
    /// # Errors
    /// [`RecordError::BadControl`] when a control message does not encode, or
    /// [`RecordError::Short`] when the body would exceed [`MAX_RECORD_BODY`].
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), RecordError> {
        let start = out.len();
        out.put_slice(&RECORD_MARKER);
        out.put_u8(self.type_byte());
        out.put_u8(0);
        out.put_u32(0); // length, patched below
        let body_start = out.len();
        match self {
            Self::Frame {
                arrival_us, frame, ..
            } => {
                out.put_u64(*arrival_us);
                out.put_slice(frame);
            }
            Self::Control { at_us, message } => {
                out.put_u64(*at_us);
                let bytes = message
                    .to_bytes()
                    .map_err(|e| RecordError::BadControl(e.to_string()))?;
                out.put_slice(&bytes);
            }
            Self::Joined {
                at_us,
                member,
                rejoin,
            } => {
                out.put_u64(*at_us);
                out.put_u32(*member);
                out.put_u8(u8::from(*rejoin));
            }
            Self::Loss {
                at_us,
                kind,
                from_us,
                to_us,
                count,
                detail,
            } => {
                out.put_u64(*at_us);
                out.put_u8(kind.byte());
                out.put_u64(*from_us);
                out.put_u64(*to_us);
                out.put_u64(*count);
                out.put_slice(detail.as_bytes());
            }
            Self::End { at_us, records } => {
                out.put_u64(*at_us);
                out.put_u64(*records);
            }
        }
        let body_len = out.len() - body_start;
        let Ok(len) = u32::try_from(body_len) else {
            out.truncate(start);
            return Err(RecordError::Short { len: body_len });
        };
        if body_len > MAX_RECORD_BODY {
            out.truncate(start);
            return Err(RecordError::Short { len: body_len });
        }
        out[start + 4..start + 8].copy_from_slice(&len.to_be_bytes());
        let crc = crc32fast::hash(&out[start..]);
        out.put_u32(crc);
        Ok(())
    }

    /// Decode a record body of type `type_byte` (its CRC already checked). `body` is a
    /// slice of the segment, so a frame is kept without a copy.
    ///
    /// # Errors
    /// [`RecordError`] naming what is wrong.
    pub fn decode_body(type_byte: u8, body: &Bytes) -> Result<Self, RecordError> {
        let short = || RecordError::Short { len: body.len() };
        let u64_at = |at: usize| -> Result<u64, RecordError> {
            let bytes: [u8; 8] = body
                .get(at..at + 8)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(short)?;
            Ok(u64::from_be_bytes(bytes))
        };
        let at_us = u64_at(0)?;
        match type_byte {
            kind::FRAME => {
                let frame = body.slice(8..);
                let decoded =
                    Frame::decode(&frame).map_err(|e| RecordError::BadFrame(e.to_string()))?;
                Ok(Self::Frame {
                    arrival_us: at_us,
                    envelope: decoded.envelope,
                    frame,
                })
            }
            kind::CONTROL => {
                let message = ControlMessage::decode(&body[8..])
                    .map_err(|e| RecordError::BadControl(e.to_string()))?;
                Ok(Self::Control { at_us, message })
            }
            kind::JOINED => {
                if body.len() != 13 {
                    return Err(short());
                }
                let member = u32::from_be_bytes([body[8], body[9], body[10], body[11]]);
                let rejoin = match body[12] {
                    0 => false,
                    1 => true,
                    _ => return Err(RecordError::BadField),
                };
                Ok(Self::Joined {
                    at_us,
                    member,
                    rejoin,
                })
            }
            kind::LOSS => {
                if body.len() < 33 {
                    return Err(short());
                }
                let detail = std::str::from_utf8(&body[33..])
                    .map_err(|_| RecordError::BadField)?
                    .to_owned();
                Ok(Self::Loss {
                    at_us,
                    kind: LossKind::from_byte(body[8]),
                    from_us: u64_at(9)?,
                    to_us: u64_at(17)?,
                    count: u64_at(25)?,
                    detail,
                })
            }
            kind::END => {
                if body.len() != 16 {
                    return Err(short());
                }
                Ok(Self::End {
                    at_us,
                    records: u64_at(8)?,
                })
            }
            other => Err(RecordError::UnknownType(other)),
        }
    }

    /// A frame record for a frame as received.
    ///
    /// # Errors
    /// [`RecordError::BadFrame`] when `frame` is not an envelope frame.
    pub fn frame(arrival_us: u64, frame: Bytes) -> Result<Self, RecordError> {
        let envelope = Frame::decode(&frame)
            .map_err(|e| RecordError::BadFrame(e.to_string()))?
            .envelope;
        Ok(Self::Frame {
            arrival_us,
            envelope,
            frame,
        })
    }
}
