//! The media envelope: the only part of a media frame a relay reads.
//!
//! A frame is a fixed 32-byte header followed by the payload (an SFrame ciphertext the
//! relay cannot open). The first [`Envelope::METADATA_LEN`] bytes of the header are what
//! sealroom-crypto authenticates as SFrame metadata, so a relay that alters any field makes
//! the frame fail to open at every receiver. Decoding borrows the payload from the input.

use bytes::{BufMut, Bytes};

/// Member id the relay assigns to a connection inside one room.
pub type MemberId = u32;
/// Track id a member picks for each track it publishes.
pub type TrackId = u32;

/// The envelope format version this crate speaks.
pub const VERSION: u8 = 1;

/// Largest payload length an envelope may declare (16 MiB); receivers usually enforce a
/// much smaller configured limit.
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024 * 1024;

/// What a frame carries; decides how the transport maps it onto QUIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum MediaKind {
    /// Audio: datagrams when the frame fits.
    Audio = 0,
    /// Video: one stream per group of pictures.
    Video = 1,
    /// Data messages: reliable and ordered per sender, or unreliable on datagrams.
    Data = 2,
}

impl MediaKind {
    /// Parse the wire value.
    pub fn from_u8(value: u8) -> Result<Self, DecodeError> {
        match value {
            0 => Ok(Self::Audio),
            1 => Ok(Self::Video),
            2 => Ok(Self::Data),
            other => Err(DecodeError::UnknownKind(other)),
        }
    }
}

/// Per-frame flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// First frame of a group; for video, a keyframe.
    pub const GROUP_START: Self = Self(0b0000_0001);
    /// The frame may be dropped under pressure without breaking decoding of later frames.
    pub const DISCARDABLE: Self = Self(0b0000_0010);
    /// Last frame of its group.
    pub const END_OF_GROUP: Self = Self(0b0000_0100);
    /// For data frames: deliver unreliably (datagram) rather than on the ordered stream.
    pub const UNRELIABLE: Self = Self(0b0000_1000);
    const KNOWN: u8 = 0b0000_1111;

    /// No flags set.
    pub const fn empty() -> Self {
        Self(0)
    }
    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Parse the wire value; unknown bits are an error so they can be given meaning later.
    pub fn from_bits(bits: u8) -> Result<Self, DecodeError> {
        if bits & !Self::KNOWN != 0 {
            return Err(DecodeError::UnknownFlags(bits));
        }
        Ok(Self(bits))
    }
    /// Whether every flag of `other` is set here.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// Both sets of flags.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

/// The fields of a media envelope, everything but the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Envelope {
    /// What the payload carries.
    pub kind: MediaKind,
    /// Frame flags.
    pub flags: Flags,
    /// The sending member, as assigned by the relay; the relay drops frames that lie.
    pub sender: MemberId,
    /// The sender's track.
    pub track: TrackId,
    /// Group number (video: group of pictures; audio and data: the sender's choice).
    pub group: u32,
    /// Sequence number inside the group.
    pub seq: u32,
    /// Capture time in microseconds on the sender's clock.
    pub timestamp_us: u64,
}

/// Why bytes could not be decoded as an envelope frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the header or the declared payload did.
    #[error("truncated frame: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// The version byte is not one this crate speaks.
    #[error("unknown envelope version {0}")]
    UnknownVersion(u8),
    /// The kind byte names no media kind.
    #[error("unknown media kind {0}")]
    UnknownKind(u8),
    /// Flag bits this version does not define are set.
    #[error("unknown flag bits {0:#04x}")]
    UnknownFlags(u8),
    /// The reserved byte is not zero.
    #[error("reserved byte is {0}, must be 0")]
    Reserved(u8),
    /// The declared payload length exceeds [`MAX_PAYLOAD_LEN`] or the caller's limit.
    #[error("payload length {len} exceeds the limit {max}")]
    Oversize {
        /// Declared length.
        len: usize,
        /// Limit in force.
        max: usize,
    },
    /// Bytes follow the declared payload.
    #[error("{0} trailing bytes after the payload")]
    TrailingBytes(usize),
}

/// A decoded frame whose payload is a slice of the received buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The envelope fields.
    pub envelope: Envelope,
    /// The sealed payload, sharing the input's allocation.
    pub payload: Bytes,
}

/// A decoded frame borrowing its payload from a byte slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// The envelope fields.
    pub envelope: Envelope,
    /// The sealed payload.
    pub payload: &'a [u8],
}

impl Envelope {
    /// Length of the encoded envelope header.
    pub const HEADER_LEN: usize = 32;
    /// Length of the authenticated prefix of the header (everything but the payload length).
    pub const METADATA_LEN: usize = 28;

    /// The exact bytes sealroom-crypto authenticates as SFrame metadata: the header without
    /// its payload-length field (which the SFrame ciphertext length already binds).
    pub fn metadata(&self) -> [u8; Self::METADATA_LEN] {
        let mut out = [0u8; Self::METADATA_LEN];
        out[0] = VERSION;
        out[1] = self.kind as u8;
        out[2] = self.flags.bits();
        out[3] = 0;
        out[4..8].copy_from_slice(&self.sender.to_be_bytes());
        out[8..12].copy_from_slice(&self.track.to_be_bytes());
        out[12..16].copy_from_slice(&self.group.to_be_bytes());
        out[16..20].copy_from_slice(&self.seq.to_be_bytes());
        out[20..28].copy_from_slice(&self.timestamp_us.to_be_bytes());
        out
    }

    /// Write the header for a payload of `payload_len` bytes.
    ///
    /// # Errors
    /// [`DecodeError::Oversize`] when `payload_len` exceeds [`MAX_PAYLOAD_LEN`].
    pub fn encode_header<B: BufMut>(
        &self,
        payload_len: usize,
        buf: &mut B,
    ) -> Result<(), DecodeError> {
        let len = u32::try_from(payload_len)
            .ok()
            .filter(|_| payload_len <= MAX_PAYLOAD_LEN)
            .ok_or(DecodeError::Oversize {
                len: payload_len,
                max: MAX_PAYLOAD_LEN,
            })?;
        // One write of the whole header: a `BufMut` checks its capacity per call.
        let mut header = [0u8; Self::HEADER_LEN];
        let (metadata, length) = header.split_at_mut(Self::METADATA_LEN);
        metadata.copy_from_slice(&self.metadata());
        length.copy_from_slice(&len.to_be_bytes());
        buf.put_slice(&header);
        Ok(())
    }

    /// Decode a header from the first [`Self::HEADER_LEN`] bytes of `input`; returns the
    /// envelope and the declared payload length (at most [`MAX_PAYLOAD_LEN`]).
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first problem found; never panics.
    pub fn decode_header(input: &[u8]) -> Result<(Self, usize), DecodeError> {
        Self::decode_header_with_limit(input, MAX_PAYLOAD_LEN)
    }

    /// [`decode_header`](Self::decode_header) refusing a declared payload longer than
    /// `max_payload` (or [`MAX_PAYLOAD_LEN`], whichever is smaller).
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first problem found; never panics.
    pub fn decode_header_with_limit(
        input: &[u8],
        max_payload: usize,
    ) -> Result<(Self, usize), DecodeError> {
        let max = max_payload.min(MAX_PAYLOAD_LEN);
        let Some(header) = input.first_chunk::<{ Self::HEADER_LEN }>() else {
            return Err(DecodeError::Truncated {
                needed: Self::HEADER_LEN,
                have: input.len(),
            });
        };
        if header[0] != VERSION {
            return Err(DecodeError::UnknownVersion(header[0]));
        }
        let kind = MediaKind::from_u8(header[1])?;
        let flags = Flags::from_bits(header[2])?;
        if header[3] != 0 {
            return Err(DecodeError::Reserved(header[3]));
        }
        let be32 = |at: usize| {
            u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&header[20..28]);
        let len = be32(28) as usize;
        if len > max {
            return Err(DecodeError::Oversize { len, max });
        }
        let envelope = Self {
            kind,
            flags,
            sender: be32(4),
            track: be32(8),
            group: be32(12),
            seq: be32(16),
            timestamp_us: u64::from_be_bytes(ts),
        };
        Ok((envelope, len))
    }
}

impl<'a> FrameRef<'a> {
    /// Decode one whole frame; `input` must hold exactly the header and the payload.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first problem found; never panics.
    pub fn decode(input: &'a [u8]) -> Result<Self, DecodeError> {
        Self::decode_with_limit(input, MAX_PAYLOAD_LEN)
    }

    /// [`decode`](Self::decode) refusing a payload longer than `max_payload`.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first problem found; never panics.
    pub fn decode_with_limit(input: &'a [u8], max_payload: usize) -> Result<Self, DecodeError> {
        let (envelope, len) = Envelope::decode_header_with_limit(input, max_payload)?;
        let body = input.get(Envelope::HEADER_LEN..).unwrap_or_default();
        let Some(payload) = body.get(..len) else {
            return Err(DecodeError::Truncated {
                needed: Envelope::HEADER_LEN + len,
                have: input.len(),
            });
        };
        if body.len() > len {
            return Err(DecodeError::TrailingBytes(body.len() - len));
        }
        Ok(Self { envelope, payload })
    }
}

impl Frame {
    /// Decode one whole frame from `input`; the payload is a slice of `input` (no copy, no
    /// allocation).
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first problem found; never panics.
    pub fn decode(input: &Bytes) -> Result<Self, DecodeError> {
        Self::decode_with_limit(input, MAX_PAYLOAD_LEN)
    }

    /// [`decode`](Self::decode) refusing a payload longer than `max_payload`.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first problem found; never panics.
    pub fn decode_with_limit(input: &Bytes, max_payload: usize) -> Result<Self, DecodeError> {
        let frame = FrameRef::decode_with_limit(input, max_payload)?;
        let payload = input.slice(Envelope::HEADER_LEN..Envelope::HEADER_LEN + frame.payload.len());
        Ok(Self {
            envelope: frame.envelope,
            payload,
        })
    }

    /// Length of the encoded frame.
    pub fn encoded_len(&self) -> usize {
        Envelope::HEADER_LEN + self.payload.len()
    }

    /// Encode header and payload into `buf`.
    ///
    /// # Errors
    /// [`DecodeError::Oversize`] when the payload exceeds [`MAX_PAYLOAD_LEN`].
    pub fn encode<B: BufMut>(&self, buf: &mut B) -> Result<(), DecodeError> {
        self.envelope.encode_header(self.payload.len(), buf)?;
        buf.put_slice(&self.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of docs/PROTOCOL.md: a video keyframe from member 7, track 2, group 42.
    const EXAMPLE: [u8; 36] = [
        0x01, 0x01, 0x01, 0x00, // version, kind video, flags group start, reserved
        0x00, 0x00, 0x00, 0x07, // sender
        0x00, 0x00, 0x00, 0x02, // track
        0x00, 0x00, 0x00, 0x2a, // group
        0x00, 0x00, 0x00, 0x00, // seq
        0x00, 0x06, 0x0a, 0x24, 0x18, 0x1e, 0x40, 0x00, // timestamp_us
        0x00, 0x00, 0x00, 0x04, // payload length
        0xde, 0xad, 0xbe, 0xef, // payload
    ];

    fn example() -> Frame {
        Frame {
            envelope: Envelope {
                kind: MediaKind::Video,
                flags: Flags::GROUP_START,
                sender: 7,
                track: 2,
                group: 42,
                seq: 0,
                timestamp_us: 1_700_000_000_000_000,
            },
            payload: Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]),
        }
    }

    fn encode(frame: &Frame) -> Bytes {
        let mut out = Vec::new();
        frame.encode(&mut out).expect("encodable");
        Bytes::from(out)
    }

    #[test]
    fn example_matches_the_protocol_document() {
        assert_eq!(&encode(&example())[..], &EXAMPLE[..]);
        assert_eq!(Frame::decode(&Bytes::from_static(&EXAMPLE)), Ok(example()));
        assert_eq!(example().encoded_len(), EXAMPLE.len());
    }

    #[test]
    fn metadata_is_the_header_without_the_length() {
        let frame = example();
        assert_eq!(
            &frame.envelope.metadata()[..],
            &EXAMPLE[..Envelope::METADATA_LEN]
        );
        // Same envelope, other payload length: same metadata.
        let mut other = Vec::new();
        frame
            .envelope
            .encode_header(1000, &mut other)
            .expect("encodable");
        assert_eq!(
            &other[..Envelope::METADATA_LEN],
            &frame.envelope.metadata()[..]
        );
        assert_eq!(&other[Envelope::METADATA_LEN..], &1000u32.to_be_bytes()[..]);
    }

    #[test]
    fn every_field_round_trips_at_its_edges() {
        let kinds = [MediaKind::Audio, MediaKind::Video, MediaKind::Data];
        for kind in kinds {
            for bits in 0..=Flags::KNOWN {
                for edge in [0u32, 1, u32::MAX] {
                    for timestamp_us in [0u64, 1, u64::MAX] {
                        let envelope = Envelope {
                            kind,
                            flags: Flags::from_bits(bits).expect("known bits"),
                            sender: edge,
                            track: edge.rotate_left(8),
                            group: !edge,
                            seq: edge,
                            timestamp_us,
                        };
                        for payload in [&[][..], &[0u8][..], &[0xffu8; 33][..]] {
                            let frame = Frame {
                                envelope,
                                payload: Bytes::copy_from_slice(payload),
                            };
                            let wire = encode(&frame);
                            assert_eq!(wire.len(), Envelope::HEADER_LEN + payload.len());
                            assert_eq!(Frame::decode(&wire).as_ref(), Ok(&frame));
                            assert_eq!(FrameRef::decode(&wire), Ok(FrameRef { envelope, payload }));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn largest_payload_round_trips() {
        let frame = Frame {
            payload: Bytes::from(vec![0x5a; MAX_PAYLOAD_LEN]),
            ..example()
        };
        let wire = encode(&frame);
        assert_eq!(Frame::decode(&wire), Ok(frame));
    }

    #[test]
    fn truncation_at_every_offset_is_an_error() {
        for have in 0..EXAMPLE.len() {
            let needed = if have < Envelope::HEADER_LEN {
                Envelope::HEADER_LEN
            } else {
                EXAMPLE.len()
            };
            let expected = DecodeError::Truncated { needed, have };
            assert_eq!(
                FrameRef::decode(&EXAMPLE[..have]),
                Err(expected),
                "at {have}"
            );
            assert_eq!(
                Frame::decode(&Bytes::copy_from_slice(&EXAMPLE[..have])),
                Err(expected),
                "at {have}"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut wire = EXAMPLE.to_vec();
        wire.push(0);
        assert_eq!(FrameRef::decode(&wire), Err(DecodeError::TrailingBytes(1)));
        wire.extend_from_slice(&[0; 9]);
        assert_eq!(FrameRef::decode(&wire), Err(DecodeError::TrailingBytes(10)));
    }

    fn with(at: usize, value: u8) -> [u8; 36] {
        let mut wire = EXAMPLE;
        wire[at] = value;
        wire
    }

    #[test]
    fn unknown_version_kind_flags_and_reserved_are_refused() {
        for version in [0u8, 2, 0xff] {
            assert_eq!(
                FrameRef::decode(&with(0, version)),
                Err(DecodeError::UnknownVersion(version))
            );
        }
        for kind in 3..=u8::MAX {
            assert_eq!(
                FrameRef::decode(&with(1, kind)),
                Err(DecodeError::UnknownKind(kind))
            );
        }
        for bit in 4..8 {
            let flags = 1u8 << bit;
            assert_eq!(
                FrameRef::decode(&with(2, flags)),
                Err(DecodeError::UnknownFlags(flags))
            );
        }
        for reserved in [1u8, 0x80, 0xff] {
            assert_eq!(
                FrameRef::decode(&with(3, reserved)),
                Err(DecodeError::Reserved(reserved))
            );
        }
    }

    #[test]
    fn oversize_is_refused_from_the_header_alone() {
        let header = |len: u32| {
            let mut wire = EXAMPLE[..Envelope::HEADER_LEN].to_vec();
            wire[28..].copy_from_slice(&len.to_be_bytes());
            wire
        };
        let too_long = u32::try_from(MAX_PAYLOAD_LEN + 1).expect("fits");
        for len in [too_long, u32::MAX] {
            assert_eq!(
                FrameRef::decode(&header(len)),
                Err(DecodeError::Oversize {
                    len: len as usize,
                    max: MAX_PAYLOAD_LEN
                })
            );
        }
        // A caller's tighter limit: the limit itself passes (then needs the payload), one
        // more byte is refused before any payload arrives.
        assert_eq!(
            FrameRef::decode_with_limit(&header(1200), 1200),
            Err(DecodeError::Truncated {
                needed: Envelope::HEADER_LEN + 1200,
                have: Envelope::HEADER_LEN
            })
        );
        assert_eq!(
            FrameRef::decode_with_limit(&header(1201), 1200),
            Err(DecodeError::Oversize {
                len: 1201,
                max: 1200
            })
        );
        // A limit above the format's maximum does not lift it.
        assert_eq!(
            Envelope::decode_header_with_limit(&header(too_long), usize::MAX),
            Err(DecodeError::Oversize {
                len: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN
            })
        );
    }

    #[test]
    fn encoding_an_oversize_payload_writes_nothing() {
        let mut out = Vec::new();
        assert_eq!(
            example()
                .envelope
                .encode_header(MAX_PAYLOAD_LEN + 1, &mut out),
            Err(DecodeError::Oversize {
                len: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN
            })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn decoded_payload_shares_the_input() {
        let wire = encode(&example());
        let frame = Frame::decode(&wire).expect("valid");
        assert_eq!(
            frame.payload.as_ptr(),
            wire[Envelope::HEADER_LEN..].as_ptr()
        );
    }

    #[test]
    fn flags_compose() {
        let flags = Flags::GROUP_START | Flags::END_OF_GROUP;
        assert!(flags.contains(Flags::GROUP_START));
        assert!(flags.contains(Flags::END_OF_GROUP));
        assert!(!flags.contains(Flags::DISCARDABLE));
        assert_eq!(flags.bits(), 0b101);
        assert_eq!(Flags::from_bits(0b101), Ok(flags));
        assert!(Flags::empty().contains(Flags::empty()));
    }
}
