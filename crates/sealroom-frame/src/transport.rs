//! The names sealroom gives to things on a QUIC connection: the ALPN protocol id, the type
//! byte that opens a unidirectional stream, and the codes a stream is reset or stopped
//! with.
//!
//! The control stream's close reasons are [`ErrorCode`](crate::control::ErrorCode)s (the
//! application close code is [`ErrorCode::close_code`](crate::control::ErrorCode::close_code)).
//! Which streams and datagrams carry what is in `docs/PROTOCOL.md` and `docs/TRANSPORT.md`.

/// The ALPN protocol id of sealroom over QUIC, version 1 of the envelope and control
/// layouts. A layout change that an old peer would refuse or misread takes a new id
/// `sealroom/N` (`docs/PROTOCOL.md`, version rule).
pub const ALPN: &[u8] = b"sealroom/1";

/// The first byte of a unidirectional stream: what the rest of the stream carries.
///
/// ```
/// use sealroom_frame::transport::StreamType;
///
/// assert_eq!(StreamType::Media.byte(), 0x01);
/// assert_eq!(StreamType::from_byte(0x01), Some(StreamType::Media));
/// assert_eq!(StreamType::from_byte(0x02), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum StreamType {
    /// Length-prefixed envelope frames ([`crate::stream`]): one video group, one reliable
    /// data track, or one audio frame too large for a datagram.
    Media = 0x01,
}

impl StreamType {
    /// Every stream type, in byte order.
    pub const ALL: [Self; 1] = [Self::Media];

    /// The byte that opens a stream of this type.
    pub const fn byte(self) -> u8 {
        self as u8
    }

    /// The stream type a first byte names; `None` for a byte this version does not know
    /// (the receiver stops such a stream with [`StreamCode::Refused`]).
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0x01 => Some(Self::Media),
            _ => None,
        }
    }
}

/// Why a unidirectional stream was reset (by its sender) or stopped (by its receiver); the
/// QUIC application error code of `RESET_STREAM` and `STOP_SENDING`.
///
/// ```
/// use sealroom_frame::transport::StreamCode;
///
/// assert_eq!(StreamCode::StaleGroup.code(), 0x01);
/// assert_eq!(StreamCode::from_code(0x03), Some(StreamCode::Refused));
/// assert_eq!(StreamCode::from_code(0), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum StreamCode {
    /// The relay dropped the rest of a video group the receiver fell behind on; the
    /// receiver asks for a keyframe and resumes at the next group.
    StaleGroup = 0x01,
    /// The publisher abandoned the video group for a newer one; the relay passes the reset
    /// on to the group's receivers.
    GroupReset = 0x02,
    /// The receiver refused an incoming stream: a wrong stream type, broken framing, a
    /// frame over the size limit, a stream over the opening rate, or a frame that did not
    /// complete in time.
    Refused = 0x03,
}

impl StreamCode {
    /// Every stream code, in code order.
    pub const ALL: [Self; 3] = [Self::StaleGroup, Self::GroupReset, Self::Refused];

    /// The QUIC application error code.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The stream code a QUIC application error code stands for; `None` for a code this
    /// version does not know.
    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            0x01 => Some(Self::StaleGroup),
            0x02 => Some(Self::GroupReset),
            0x03 => Some(Self::Refused),
            _ => None,
        }
    }
}
