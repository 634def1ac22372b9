//! Control messages exchanged on the control stream (the first bidirectional QUIC stream a
//! client opens).
//!
//! Each message is encoded as one version byte followed by the message body; on the stream
//! the messages are length-prefixed by [`crate::stream`]. Decoding is bounded by the frame
//! length the deframer enforces.

use serde::{Deserialize, Serialize};

use crate::envelope::{MediaKind, MemberId, TrackId};

/// The control message format version this crate speaks.
pub const CONTROL_VERSION: u8 = 1;

/// Largest encoded control message (version byte and body), 64 KiB.
pub const MAX_CONTROL_LEN: usize = 64 * 1024;

/// Options a client requests when joining.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JoinOptions {
    /// Subscribe to every track of every member by default (the usual case).
    pub auto_subscribe: bool,
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

/// A typed reason for a refusal or a removal, sent in [`ControlMessage::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The relay is shutting down; reconnect (possibly elsewhere).
    ShuttingDown,
    /// The receiver could not keep up with reliable data and was removed.
    SlowConsumer,
    /// A message was malformed or arrived out of order.
    ProtocolViolation,
    /// The ticket is malformed (not a JWT, missing claims).
    BadTicket,
    /// Anything else.
    Internal,
}

/// A message on the control stream.
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
}
