//! Control messages exchanged on the control stream (the first bidirectional QUIC stream a
//! client opens).
//!
//! Each message is encoded as one version byte ([`CONTROL_VERSION`]) followed by the
//! message body in the postcard format (variant index and integers as LEB128 varints,
//! strings and lists with a varint length). On the stream the messages are length-prefixed
//! by [`crate::stream`]. Decoding is bounded: the input may be at most [`MAX_CONTROL_LEN`]
//! bytes, no list is preallocated beyond what the remaining input can hold, trailing bytes
//! are refused and so is any body that is not the canonical encoding of what it decodes to
//! (for example an over-long varint), so every message has exactly one encoding.

use bytes::{BufMut, Bytes};
use serde::{Deserialize, Serialize};

use crate::envelope::{MediaKind, MemberId, TrackId};
use crate::stream;

/// The control message format version this crate speaks.
pub const CONTROL_VERSION: u8 = 1;

/// Largest encoded control message (version byte and body), 64 KiB.
pub const MAX_CONTROL_LEN: usize = 64 * 1024;

/// Options a client requests when joining.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JoinOptions {
    /// Subscribe to every track of every member by default (the usual case).
    pub auto_subscribe: bool,
    /// The room the client means to enter; when set, a ticket that names another room is
    /// refused with [`ErrorCode::WrongRoom`] (`None`: whatever room the ticket names).
    pub room: Option<String>,
}

/// A member as the roster lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Relay-assigned member id, unique in the room while the member is present.
    pub member: MemberId,
    /// The user id from the member's ticket.
    pub user: String,
    /// Tracks the member currently publishes.
    pub tracks: Vec<TrackInfo>,
}

/// A published track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// Track id chosen by the publisher.
    pub track: TrackId,
    /// What the track carries.
    pub kind: MediaKind,
}

/// Limits the relay enforces for this session, told to the client on join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLimits {
    /// Largest encoded media frame (envelope and payload) the relay accepts.
    pub max_frame_len: u32,
    /// Data messages per second the member may send.
    pub data_messages_per_sec: u32,
    /// Data bytes per second the member may send.
    pub data_bytes_per_sec: u32,
    /// Seconds until the ticket expires; the client should refresh before then.
    pub ticket_expires_in_secs: u64,
}

/// Why a member left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LeaveReason {
    /// The member left on its own.
    Left,
    /// The connection timed out or was lost.
    TimedOut,
    /// An operator removed the member.
    Kicked,
    /// A newer session of the same user joined the room.
    Replaced,
    /// The room was dismissed by an operator.
    RoomDismissed,
    /// The member's ticket expired and was not refreshed.
    TicketExpired,
    /// The member was removed for breaking a limit (for example a reliable backlog).
    Removed,
    /// The relay is shutting down.
    ShuttingDown,
}

/// A typed reason for a refusal or a removal, sent in [`ControlMessage::Error`] and as the
/// QUIC application close code ([`ErrorCode::close_code`]).
///
/// Each code says what it means for the session that hears it: its stable name
/// ([`ErrorCode::label`]), whether a joined session ends with it
/// ([`ErrorCode::ends_session`]) and whether a new connection may succeed
/// ([`ErrorCode::is_recoverable`]). The wire index is the declaration order, so a new code
/// goes at the end (and into [`ErrorCode::ALL`], the meaning table and the golden wire
/// test).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The ticket signature does not verify.
    BadSignature,
    /// The ticket has expired.
    Expired,
    /// The ticket is not valid yet.
    NotYetValid,
    /// The ticket names another room.
    WrongRoom,
    /// The ticket names an app this relay does not serve.
    UnknownApp,
    /// The room has reached its member limit.
    RoomFull,
    /// The app has reached its room limit.
    TooManyRooms,
    /// The ticket does not grant what was attempted.
    NotPermitted,
    /// A frame or message exceeded the size limit.
    FrameTooLarge,
    /// A rate limit was exceeded; the message was dropped, the session continues.
    RateLimited,
    /// A newer session of the same user replaced this one.
    Replaced,
    /// An operator removed this member.
    Kicked,
    /// An operator dismissed the room.
    RoomDismissed,
    /// The ticket expired during the session and was not refreshed.
    TicketExpired,
    /// The relay is ending the session and the member should reconnect (possibly
    /// elsewhere): it is shutting down or draining, or, in a cluster, another node holds
    /// the member's MLS room and this node's redirect sends the rejoin there.
    ShuttingDown,
    /// The receiver could not keep up with reliable data and was removed.
    SlowConsumer,
    /// A message was malformed or arrived out of order.
    ProtocolViolation,
    /// The ticket is malformed (not a JWT, missing claims).
    BadTicket,
    /// Anything else.
    Internal,
    /// The relay is over its own capacity (its app-wide join budget, its memory ceiling,
    /// its handshake budget); retry later or at another node.
    Overloaded,
}

/// A message on the control stream.
///
/// Deliberately not `#[non_exhaustive]`: relay and client must decide what to do with
/// every message, so a new message fails to compile in each `match` until it is handled.
/// The wire index is the declaration order; a new message goes at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlMessage {
    /// Client to relay, first message: enter the room the ticket names.
    Join {
        /// The signed entry ticket (a JWT).
        ticket: String,
        /// Client software name.
        client_name: String,
        /// Client software version.
        client_version: String,
        /// Requested options.
        options: JoinOptions,
    },
    /// Relay to client: the join succeeded.
    Joined {
        /// The member id this session must put in every envelope.
        member: MemberId,
        /// Members already present.
        roster: Vec<MemberInfo>,
        /// Limits in force for this session.
        limits: SessionLimits,
    },
    /// Relay to client: a member entered the room.
    MemberJoined(MemberInfo),
    /// Relay to client: a member left.
    MemberLeft {
        /// Who left.
        member: MemberId,
        /// Why.
        reason: LeaveReason,
    },
    /// Client to relay: start publishing a track. Relay to clients: a member published one.
    TrackPublished {
        /// The publisher (ignored from clients; the relay fills in the connection's member).
        member: MemberId,
        /// The track.
        track: TrackInfo,
    },
    /// Client to relay: stop publishing a track. Relay to clients: a member stopped.
    TrackUnpublished {
        /// The publisher (ignored from clients).
        member: MemberId,
        /// The track id.
        track: TrackId,
    },
    /// Client to relay: receive this member's track (the default with auto-subscribe).
    Subscribe {
        /// The publisher.
        member: MemberId,
        /// The track.
        track: TrackId,
    },
    /// Client to relay: stop receiving this member's track.
    Unsubscribe {
        /// The publisher.
        member: MemberId,
        /// The track.
        track: TrackId,
    },
    /// Ask a publisher for a keyframe; client to relay names the publisher, relay to the
    /// publisher names the requester.
    KeyframeRequest {
        /// The publisher (client to relay) or the requester (relay to publisher).
        member: MemberId,
        /// The video track.
        track: TrackId,
    },
    /// Client to relay: a fresh ticket for the same room, to extend the session.
    RefreshTicket {
        /// The new ticket.
        ticket: String,
    },
    /// Relay to client: the refreshed ticket was accepted.
    TicketRefreshed {
        /// Seconds until the new ticket expires.
        expires_in_secs: u64,
    },
    /// Client to relay: leave the room; the relay closes the connection after this.
    Leave,
    /// Either direction: a typed refusal, removal or warning.
    Error {
        /// The reason.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// Relay to client: the relay is going away; reconnect after the delay.
    GoAway {
        /// Why the relay is closing the session.
        code: ErrorCode,
        /// Suggested delay before reconnecting, in milliseconds.
        reconnect_after_ms: u32,
    },
    /// Client to relay (MLS mode): tell me the room's MLS group state ([`Self::MlsState`]).
    MlsSync,
    /// Relay to client: the room's MLS group state as the relay keeps it.
    MlsState {
        /// Commits the relay has accepted for the group (the position the next commit
        /// must name).
        position: u64,
        /// The group info of the latest epoch (opaque MLS bytes), `None` when the room
        /// has no group yet.
        group_info: Option<Vec<u8>>,
    },
    /// Client to relay: keep this group state for the room (a new group, or the state a
    /// member held before the relay restarted). Accepted only while the room has none.
    MlsPublish {
        /// The position the group is at.
        position: u64,
        /// The group info (opaque MLS bytes).
        group_info: Vec<u8>,
    },
    /// Client to relay: an MLS commit for `position`, with the group info of the epoch it
    /// creates. The first commit for a position wins; later ones hear [`Self::MlsRefused`].
    MlsCommit {
        /// The position the commit applies to (the relay's position the sender last saw).
        position: u64,
        /// The commit (opaque MLS bytes).
        commit: Vec<u8>,
        /// The group info after the commit (opaque MLS bytes).
        group_info: Vec<u8>,
    },
    /// Relay to client: a member's commit the relay accepted at `position`; the room is
    /// now at `position + 1`.
    MlsCommitted {
        /// The member that sent it.
        member: MemberId,
        /// The position it applied to.
        position: u64,
        /// The commit (opaque MLS bytes).
        commit: Vec<u8>,
    },
    /// Relay to client: the sender's `MlsCommit` or `MlsPublish` was accepted; the room is
    /// at `position`.
    MlsAccepted {
        /// The room's position now.
        position: u64,
    },
    /// Relay to client: the sender's MLS message was refused; nothing changed.
    MlsRefused {
        /// The room's position now.
        position: u64,
        /// Why.
        reason: MlsRefusal,
    },
    /// Relay to client: a member of the room is a recorder (its ticket carries the `record`
    /// grant). It receives every track of every member and publishes nothing; it holds no
    /// room secret, so what it stores stays sealed. Sent after the `MemberJoined` (or the
    /// `Joined` roster entry) that introduces the member; its `MemberLeft` ends it.
    RecorderPresent {
        /// The recording member.
        member: MemberId,
    },
    /// Relay to client, in answer to `Join`: this node takes no join now, join at
    /// `address` (another node of the same cluster, less loaded) with the same ticket. The
    /// relay closes the connection next.
    Redirect {
        /// The node to join instead, as `host:port` (the client keeps its TLS name and
        /// trust: the nodes of a cluster present the same certificate).
        address: String,
    },
    /// Either way (MLS mode): a leading piece of a group info too large for one message.
    /// From a member, the relay keeps the pieces and prefixes them, in order, to the
    /// group info of the member's next `MlsPublish` or `MlsCommit`; from the relay, the
    /// pieces prefix the group info of the next `MlsState`. Each piece holds 1 to
    /// [`MLS_PART_LEN`] bytes; the whole group info is bounded by the relay's
    /// `max_mls_group_info_len` (and the member's own bound).
    MlsGroupInfoPart {
        /// The piece (opaque MLS bytes).
        bytes: Vec<u8>,
    },
}

/// Largest piece of a group info in one [`ControlMessage::MlsGroupInfoPart`] (16 KiB):
/// a commit and the last piece then fit one control message however large the group.
pub const MLS_PART_LEN: usize = 16 * 1024;

/// Why the relay refused an MLS message ([`ControlMessage::MlsRefused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MlsRefusal {
    /// Another commit already holds that position: apply it (it arrives as
    /// `MlsCommitted`) and commit again on top of it.
    Stale,
    /// The room already has a group: join it from its group info (`MlsSync`).
    Exists,
    /// The room has no group yet: publish one first.
    NoGroup,
    /// The MLS bytes are longer than the relay's `max_mls_message_len`.
    TooLarge,
    /// A commit or group info was empty.
    Empty,
}

/// Why a control message could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The input is empty: not even a version byte.
    #[error("empty control message")]
    Empty,
    /// The version byte is not one this crate speaks.
    #[error("unknown control message version {0}")]
    UnknownVersion(u8),
    /// The encoded message is longer than [`MAX_CONTROL_LEN`].
    #[error("control message of {len} bytes exceeds the limit {max}")]
    TooLarge {
        /// Length of the encoded message (or of the input).
        len: usize,
        /// Limit in force.
        max: usize,
    },
    /// The body does not decode as a control message (unknown variant, truncated, bad
    /// varint, invalid UTF-8, out-of-range value).
    #[error("malformed control message: {0}")]
    Malformed(String),
    /// Bytes follow a complete message.
    #[error("{0} trailing bytes after the control message")]
    TrailingBytes(usize),
    /// The body decodes, but is not the canonical encoding of the message (an over-long
    /// varint, for example).
    #[error("control message is not canonically encoded")]
    NonCanonical,
}

impl ErrorCode {
    /// Every error code, in wire order.
    pub const ALL: [Self; 20] = [
        Self::BadSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::WrongRoom,
        Self::UnknownApp,
        Self::RoomFull,
        Self::TooManyRooms,
        Self::NotPermitted,
        Self::FrameTooLarge,
        Self::RateLimited,
        Self::Replaced,
        Self::Kicked,
        Self::RoomDismissed,
        Self::TicketExpired,
        Self::ShuttingDown,
        Self::SlowConsumer,
        Self::ProtocolViolation,
        Self::BadTicket,
        Self::Internal,
        Self::Overloaded,
    ];

    /// The wire index of this code (its position in [`ErrorCode::ALL`]).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The QUIC application close code for this reason: its wire index plus one (0 is a
    /// normal close).
    pub const fn close_code(self) -> u32 {
        self as u32 + 1
    }

    /// The reason a QUIC application close code stands for; `None` for 0 (normal close)
    /// and for codes this version does not know.
    pub fn from_close_code(code: u64) -> Option<Self> {
        let index = usize::try_from(code.checked_sub(1)?).ok()?;
        Self::ALL.get(index).copied()
    }

    /// A stable lowercase snake-case name (`room_full`), for metrics labels, logs and the
    /// reason phrase of a QUIC close.
    pub const fn label(self) -> &'static str {
        self.meaning().label
    }

    /// Whether a joined session ends when the relay sends this code: the relay closes the
    /// connection next (a removal, a shutdown, an internal error). Every other code, once
    /// joined, refuses one request (a publish without the grant, a refreshed ticket for
    /// another room, a rate limit) and the session continues. Before `Joined`, every code
    /// refuses the join.
    pub const fn ends_session(self) -> bool {
        self.meaning().ends_session
    }

    /// Whether a new connection may succeed after this code: the relay is going away,
    /// overloaded or failed on its own, rather than refusing this member. A client
    /// reconnects (with backoff) after a recoverable code and gives up after any other.
    pub const fn is_recoverable(self) -> bool {
        self.meaning().recoverable
    }

    /// The one table of what each code means; a new code does not compile without its row.
    const fn meaning(self) -> Meaning {
        const ENDS: bool = true;
        const KEEPS: bool = false;
        const RETRY: bool = true;
        const FINAL: bool = false;
        let (label, ends_session, recoverable) = match self {
            Self::BadSignature => ("bad_signature", KEEPS, FINAL),
            Self::Expired => ("expired", KEEPS, FINAL),
            Self::NotYetValid => ("not_yet_valid", KEEPS, FINAL),
            Self::WrongRoom => ("wrong_room", KEEPS, FINAL),
            Self::UnknownApp => ("unknown_app", KEEPS, FINAL),
            Self::RoomFull => ("room_full", KEEPS, FINAL),
            Self::TooManyRooms => ("too_many_rooms", KEEPS, FINAL),
            Self::NotPermitted => ("not_permitted", KEEPS, FINAL),
            Self::FrameTooLarge => ("frame_too_large", KEEPS, FINAL),
            Self::RateLimited => ("rate_limited", KEEPS, RETRY),
            Self::Replaced => ("replaced", ENDS, FINAL),
            Self::Kicked => ("kicked", ENDS, FINAL),
            Self::RoomDismissed => ("room_dismissed", ENDS, FINAL),
            Self::TicketExpired => ("ticket_expired", ENDS, FINAL),
            Self::ShuttingDown => ("shutting_down", ENDS, RETRY),
            Self::SlowConsumer => ("slow_consumer", ENDS, FINAL),
            Self::ProtocolViolation => ("protocol_violation", ENDS, FINAL),
            Self::BadTicket => ("bad_ticket", KEEPS, FINAL),
            Self::Internal => ("internal", ENDS, RETRY),
            Self::Overloaded => ("overloaded", KEEPS, RETRY),
        };
        Meaning {
            label,
            ends_session,
            recoverable,
        }
    }
}

/// What an [`ErrorCode`] means for the session that hears it.
struct Meaning {
    label: &'static str,
    ends_session: bool,
    recoverable: bool,
}

impl ControlMessage {
    /// Encode version byte and body into a new buffer.
    ///
    /// # Errors
    /// [`ControlError::TooLarge`] when the encoding exceeds [`MAX_CONTROL_LEN`].
    pub fn to_bytes(&self) -> Result<Bytes, ControlError> {
        let mut out = Vec::with_capacity(64);
        out.push(CONTROL_VERSION);
        let out = postcard::to_extend(self, out)
            .map_err(|err| ControlError::Malformed(err.to_string()))?;
        if out.len() > MAX_CONTROL_LEN {
            return Err(ControlError::TooLarge {
                len: out.len(),
                max: MAX_CONTROL_LEN,
            });
        }
        Ok(Bytes::from(out))
    }

    /// Length of the encoding (version byte and body).
    ///
    /// # Errors
    /// [`ControlError::TooLarge`] when the encoding would exceed [`MAX_CONTROL_LEN`].
    pub fn encoded_len(&self) -> Result<usize, ControlError> {
        self.to_bytes().map(|bytes| bytes.len())
    }

    /// Encode version byte and body into `buf`. Nothing is written on error.
    ///
    /// # Errors
    /// [`ControlError::TooLarge`] when the encoding exceeds [`MAX_CONTROL_LEN`].
    pub fn encode(&self, buf: &mut impl BufMut) -> Result<(), ControlError> {
        let bytes = self.to_bytes()?;
        buf.put_slice(&bytes);
        Ok(())
    }

    /// Encode the message with its stream length prefix ([`crate::stream::write_frame`]),
    /// ready to be written to the control stream. Nothing is written on error.
    ///
    /// # Errors
    /// [`ControlError::TooLarge`] when the encoding exceeds [`MAX_CONTROL_LEN`].
    pub fn encode_framed(&self, buf: &mut impl BufMut) -> Result<(), ControlError> {
        let bytes = self.to_bytes()?;
        stream::write_frame(&bytes, buf);
        Ok(())
    }

    /// Decode exactly one message (version byte and body) from `input`.
    ///
    /// # Errors
    /// A [`ControlError`] naming the first problem found; never panics.
    pub fn decode(input: &[u8]) -> Result<Self, ControlError> {
        if input.len() > MAX_CONTROL_LEN {
            return Err(ControlError::TooLarge {
                len: input.len(),
                max: MAX_CONTROL_LEN,
            });
        }
        let Some((&version, body)) = input.split_first() else {
            return Err(ControlError::Empty);
        };
        if version != CONTROL_VERSION {
            return Err(ControlError::UnknownVersion(version));
        }
        let (message, rest) = postcard::take_from_bytes::<Self>(body)
            .map_err(|err| ControlError::Malformed(err.to_string()))?;
        if !rest.is_empty() {
            return Err(ControlError::TrailingBytes(rest.len()));
        }
        // postcard accepts over-long varints; re-encoding pins every message to one
        // encoding, so equal messages are equal bytes (what the fuzz target checks).
        let canonical = postcard::to_extend(&message, Vec::with_capacity(body.len()))
            .map_err(|err| ControlError::Malformed(err.to_string()))?;
        if canonical != body {
            return Err(ControlError::NonCanonical);
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join() -> ControlMessage {
        ControlMessage::Join {
            ticket: "header.claims.signature".into(),
            client_name: "sealroom-test".into(),
            client_version: "0.1.0".into(),
            options: JoinOptions {
                auto_subscribe: true,
                room: Some("room-1".into()),
            },
        }
    }

    /// One message of every variant, with fields at their edges.
    fn every_variant() -> Vec<ControlMessage> {
        let member = |member, user: &str| MemberInfo {
            member,
            user: user.into(),
            tracks: vec![
                TrackInfo {
                    track: 0,
                    kind: MediaKind::Audio,
                },
                TrackInfo {
                    track: u32::MAX,
                    kind: MediaKind::Data,
                },
            ],
        };
        vec![
            join(),
            ControlMessage::Join {
                ticket: String::new(),
                client_name: String::new(),
                client_version: "ünïcode ✓".into(),
                options: JoinOptions::default(),
            },
            ControlMessage::Joined {
                member: u32::MAX,
                roster: vec![member(0, ""), member(u32::MAX, "user-1")],
                limits: SessionLimits {
                    max_frame_len: u32::MAX,
                    data_messages_per_sec: 0,
                    data_bytes_per_sec: 1,
                    ticket_expires_in_secs: u64::MAX,
                },
            },
            ControlMessage::Joined {
                member: 0,
                roster: Vec::new(),
                limits: SessionLimits {
                    max_frame_len: 0,
                    data_messages_per_sec: u32::MAX,
                    data_bytes_per_sec: u32::MAX,
                    ticket_expires_in_secs: 0,
                },
            },
            ControlMessage::MemberJoined(member(5, "alice")),
            ControlMessage::MemberLeft {
                member: 1,
                reason: LeaveReason::Replaced,
            },
            ControlMessage::MemberLeft {
                member: u32::MAX,
                reason: LeaveReason::ShuttingDown,
            },
            ControlMessage::TrackPublished {
                member: 0,
                track: TrackInfo {
                    track: 9,
                    kind: MediaKind::Video,
                },
            },
            ControlMessage::TrackUnpublished {
                member: u32::MAX,
                track: u32::MAX,
            },
            ControlMessage::Subscribe {
                member: 128,
                track: 127,
            },
            ControlMessage::Unsubscribe {
                member: 16_384,
                track: 16_383,
            },
            ControlMessage::KeyframeRequest {
                member: 2,
                track: 0,
            },
            ControlMessage::RefreshTicket {
                ticket: "t".repeat(300),
            },
            ControlMessage::TicketRefreshed {
                expires_in_secs: u64::MAX,
            },
            ControlMessage::Leave,
            ControlMessage::Error {
                code: ErrorCode::Internal,
                message: "relay overloaded".into(),
            },
            ControlMessage::Error {
                code: ErrorCode::BadSignature,
                message: String::new(),
            },
            ControlMessage::GoAway {
                code: ErrorCode::ShuttingDown,
                reconnect_after_ms: u32::MAX,
            },
            ControlMessage::MlsSync,
            ControlMessage::MlsState {
                position: u64::MAX,
                group_info: Some(vec![0; 1000]),
            },
            ControlMessage::MlsState {
                position: 0,
                group_info: None,
            },
            ControlMessage::MlsPublish {
                position: 7,
                group_info: Vec::new(),
            },
            ControlMessage::MlsCommit {
                position: 1 << 40,
                commit: vec![0xff; 300],
                group_info: vec![1, 2, 3],
            },
            ControlMessage::MlsCommitted {
                member: u32::MAX,
                position: 0,
                commit: Vec::new(),
            },
            ControlMessage::MlsAccepted { position: 128 },
            ControlMessage::MlsRefused {
                position: 3,
                reason: MlsRefusal::TooLarge,
            },
            ControlMessage::RecorderPresent { member: 9 },
            ControlMessage::Redirect {
                address: "10.0.0.2:4433".into(),
            },
            ControlMessage::MlsGroupInfoPart {
                bytes: vec![0x5a; MLS_PART_LEN],
            },
        ]
    }

    #[test]
    fn every_variant_round_trips() {
        for message in every_variant() {
            let bytes = message.to_bytes().expect("encodes");
            assert_eq!(ControlMessage::decode(&bytes).as_ref(), Ok(&message));
        }
        for code in ErrorCode::ALL {
            let message = ControlMessage::Error {
                code,
                message: "m".into(),
            };
            let bytes = message.to_bytes().expect("encodes");
            assert_eq!(ControlMessage::decode(&bytes), Ok(message));
        }
    }

    #[test]
    fn truncation_at_every_offset_and_any_trailing_byte_are_refused() {
        for message in every_variant() {
            let bytes = message.to_bytes().expect("encodes");
            assert_eq!(
                ControlMessage::decode(&bytes[..0]),
                Err(ControlError::Empty)
            );
            for end in 1..bytes.len() {
                assert!(
                    matches!(
                        ControlMessage::decode(&bytes[..end]),
                        Err(ControlError::Malformed(_))
                    ),
                    "{message:?} cut at {end}"
                );
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert_eq!(
                ControlMessage::decode(&longer),
                Err(ControlError::TrailingBytes(1))
            );
        }
    }

    #[test]
    fn unknown_variant_kind_and_code_are_malformed() {
        let malformed = |input: &[u8]| {
            matches!(
                ControlMessage::decode(input),
                Err(ControlError::Malformed(_))
            )
        };
        // Variant index 24 (one past MlsGroupInfoPart).
        assert!(malformed(&[1, 24]));
        assert!(!malformed(&[1, 23, 1, 0]));
        assert!(!malformed(&[1, 14]));
        assert!(!malformed(&[1, 13, 0, 0]));
        assert!(!malformed(&[1, 22, 0]));
        // TrackPublished { member 0, track 9, kind 3 }.
        assert!(malformed(&[1, 4, 0, 9, 3]));
        assert!(!malformed(&[1, 4, 0, 9, 2]));
        // Error { code 20 } (one past Overloaded).
        assert!(malformed(&[1, 12, 20, 0]));
        assert!(!malformed(&[1, 12, 19, 0]));
        // A bool that is neither 0 nor 1.
        assert!(malformed(&[1, 0, 0, 0, 0, 2, 0]));
        assert!(!malformed(&[1, 0, 0, 0, 0, 1, 0]));
        // An option tag that is neither 0 nor 1 (Join's requested room).
        assert!(malformed(&[1, 0, 0, 0, 0, 1, 2]));
        assert!(!malformed(&[1, 0, 0, 0, 0, 1, 1, 1, b'r']));
        // Invalid UTF-8 in a string.
        assert!(malformed(&[1, 9, 1, 0xff]));
        // Joined with a roster of 2^32 - 1 members in eight bytes: refused without
        // preallocating the list.
        assert!(malformed(&[1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    }

    #[test]
    fn round_trip_with_version_byte_first() {
        let bytes = join().to_bytes().expect("encodes");
        assert_eq!(bytes[0], CONTROL_VERSION);
        assert_eq!(join().encoded_len(), Ok(bytes.len()));
        assert_eq!(ControlMessage::decode(&bytes), Ok(join()));
        let mut buf = Vec::new();
        join().encode(&mut buf).expect("encodes");
        assert_eq!(buf, bytes);
    }

    #[test]
    fn examples_match_the_protocol_document() {
        let cases: [(ControlMessage, &[u8]); 3] = [
            (ControlMessage::Leave, &[0x01, 0x0b]),
            (
                ControlMessage::MemberLeft {
                    member: 300,
                    reason: LeaveReason::Replaced,
                },
                &[0x01, 0x03, 0xac, 0x02, 0x03],
            ),
            (
                ControlMessage::Error {
                    code: ErrorCode::RoomFull,
                    message: "full".into(),
                },
                &[0x01, 0x0c, 0x05, 0x04, b'f', b'u', b'l', b'l'],
            ),
        ];
        for (message, bytes) in cases {
            assert_eq!(message.to_bytes().as_deref(), Ok(bytes));
            assert_eq!(ControlMessage::decode(bytes), Ok(message));
        }
        let mut framed = Vec::new();
        ControlMessage::Leave
            .encode_framed(&mut framed)
            .expect("encodes");
        assert_eq!(framed, [0x02, 0x01, 0x0b]);
    }

    #[test]
    fn leave_is_two_bytes() {
        // Version 1, variant index 11.
        assert_eq!(
            ControlMessage::Leave.to_bytes().as_deref(),
            Ok(&[1u8, 11][..])
        );
    }

    #[test]
    fn refuses_empty_unknown_version_trailing_and_non_canonical() {
        assert_eq!(ControlMessage::decode(&[]), Err(ControlError::Empty));
        assert_eq!(
            ControlMessage::decode(&[2, 11]),
            Err(ControlError::UnknownVersion(2))
        );
        assert_eq!(
            ControlMessage::decode(&[1, 11, 0]),
            Err(ControlError::TrailingBytes(1))
        );
        // Variant 11 as an over-long two-byte varint.
        assert_eq!(
            ControlMessage::decode(&[1, 0x8b, 0x00]),
            Err(ControlError::NonCanonical)
        );
        assert!(matches!(
            ControlMessage::decode(&[1, 200]),
            Err(ControlError::Malformed(_))
        ));
    }

    #[test]
    fn size_is_bounded_both_ways() {
        let big = ControlMessage::RefreshTicket {
            ticket: "x".repeat(MAX_CONTROL_LEN),
        };
        assert!(matches!(big.to_bytes(), Err(ControlError::TooLarge { .. })));
        let mut buf = Vec::new();
        assert!(big.encode(&mut buf).is_err());
        assert!(buf.is_empty(), "nothing written on error");
        let input = vec![1u8; MAX_CONTROL_LEN + 1];
        assert_eq!(
            ControlMessage::decode(&input),
            Err(ControlError::TooLarge {
                len: MAX_CONTROL_LEN + 1,
                max: MAX_CONTROL_LEN
            })
        );
    }

    #[test]
    fn framed_encoding_deframes_back() {
        let mut wire = Vec::new();
        join().encode_framed(&mut wire).expect("encodes");
        ControlMessage::Leave
            .encode_framed(&mut wire)
            .expect("encodes");
        let mut deframer = stream::Deframer::new(MAX_CONTROL_LEN);
        deframer.push(Bytes::from(wire));
        let first = deframer.next_frame().expect("valid").expect("frame");
        let second = deframer.next_frame().expect("valid").expect("frame");
        assert_eq!(ControlMessage::decode(&first), Ok(join()));
        assert_eq!(ControlMessage::decode(&second), Ok(ControlMessage::Leave));
    }

    #[test]
    fn close_codes_map_both_ways() {
        for code in ErrorCode::ALL {
            assert_eq!(
                ErrorCode::from_close_code(u64::from(code.close_code())),
                Some(code)
            );
        }
        assert_eq!(ErrorCode::BadSignature.close_code(), 1);
        assert_eq!(ErrorCode::from_close_code(0), None);
        assert_eq!(ErrorCode::Overloaded.close_code(), 20);
        assert_eq!(ErrorCode::from_close_code(21), None);
        assert_eq!(ErrorCode::from_close_code(u64::MAX), None);
    }
}
