//! What a room reports, as plain records and enums the foreign languages can hold.

#![allow(unsafe_code)] // UniFFI's derive macros expand to unsafe extern functions.

use sealroom_client::{self as client, Flags};

use crate::error::RefusalCode;

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum MediaKind {
    /// Encoded audio frames.
    Audio,
    /// Encoded video frames.
    Video,
    /// Application messages (chat, signalling).
    Data,
}

impl From<client::MediaKind> for MediaKind {
    fn from(kind: client::MediaKind) -> Self {
        match kind {
            client::MediaKind::Audio => Self::Audio,
            client::MediaKind::Video => Self::Video,
            client::MediaKind::Data => Self::Data,
        }
    }
}

/// A track a member publishes.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TrackInfo {
    /// Track id chosen by the publisher.
    pub track: u32,
    /// What it carries.
    pub kind: MediaKind,
}

impl From<client::TrackInfo> for TrackInfo {
    fn from(info: client::TrackInfo) -> Self {
        Self {
            track: info.track,
            kind: info.kind.into(),
        }
    }
}

/// A member of the room.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Member {
    /// The member id the relay assigned (the sender of its frames).
    pub id: u32,
    /// The user id from the member's ticket.
    pub user: String,
    /// The tracks it publishes.
    pub tracks: Vec<TrackInfo>,
}

impl From<client::Member> for Member {
    fn from(member: client::Member) -> Self {
        Self {
            id: member.id,
            user: member.user,
            tracks: member.tracks.into_iter().map(Into::into).collect(),
        }
    }
}

/// Why a member left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum LeaveReason {
    /// It left on its own.
    Left,
    /// Its connection timed out or was lost.
    TimedOut,
    /// An operator removed it.
    Kicked,
    /// A newer session of the same user joined.
    Replaced,
    /// The room was dismissed.
    RoomDismissed,
    /// Its ticket expired.
    TicketExpired,
    /// It broke a limit.
    Removed,
    /// The relay is shutting down.
    ShuttingDown,
    /// A reason this version of the bindings does not know.
    Other,
}

impl From<client::LeaveReason> for LeaveReason {
    fn from(reason: client::LeaveReason) -> Self {
        use client::LeaveReason as R;
        match reason {
            R::Left => Self::Left,
            R::TimedOut => Self::TimedOut,
            R::Kicked => Self::Kicked,
            R::Replaced => Self::Replaced,
            R::RoomDismissed => Self::RoomDismissed,
            R::TicketExpired => Self::TicketExpired,
            R::Removed => Self::Removed,
            R::ShuttingDown => Self::ShuttingDown,
            _ => Self::Other,
        }
    }
}

/// A frame from another member, opened and verified.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ReceivedFrame {
    /// The sending member.
    pub sender: u32,
    /// The sender's track.
    pub track: u32,
    /// Audio, video or data.
    pub kind: MediaKind,
    /// The video group (keyframe to keyframe) or data stream number.
    pub group: u32,
    /// The sequence number within the track.
    pub seq: u32,
    /// Whether the frame starts a group (a video keyframe).
    pub keyframe: bool,
    /// The sender's capture time, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// The plaintext the sender published.
    pub payload: Vec<u8>,
}

/// Why a frame could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum OpenFailure {
    /// Its key id names an epoch not held yet.
    UnknownKid,
    /// It was already opened.
    Replayed,
    /// It is behind the replay window or from a retired key.
    TooOld,
    /// It did not authenticate: another room secret, or altered bytes.
    AuthenticationFailed,
    /// It is not an SFrame ciphertext.
    Malformed,
}

impl From<client::OpenError> for OpenFailure {
    fn from(err: client::OpenError) -> Self {
        use client::OpenError as E;
        match err {
            E::UnknownKid(_) => Self::UnknownKid,
            E::Replayed => Self::Replayed,
            E::TooOld => Self::TooOld,
            E::Malformed => Self::Malformed,
            _ => Self::AuthenticationFailed,
        }
    }
}

/// Something that happened in the room.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Event {
    /// A member entered the room.
    MemberJoined {
        /// The member.
        member: Member,
    },
    /// A member left.
    MemberLeft {
        /// Its id (no longer valid).
        member: u32,
        /// Its user id, if known.
        user: Option<String>,
        /// Why.
        reason: LeaveReason,
    },
    /// A member started publishing a track.
    TrackPublished {
        /// The publisher.
        member: u32,
        /// The track.
        track: TrackInfo,
    },
    /// A member stopped publishing a track.
    TrackUnpublished {
        /// The publisher.
        member: u32,
        /// The track id.
        track: u32,
    },
    /// A frame from another member, opened and verified.
    Frame {
        /// The frame.
        frame: ReceivedFrame,
    },
    /// A frame that could not be opened (for example sealed with another room secret).
    CouldNotOpen {
        /// The claimed sender (not authenticated).
        sender: u32,
        /// The claimed track.
        track: u32,
        /// The claimed kind.
        kind: MediaKind,
        /// Why it did not open.
        reason: OpenFailure,
    },
    /// A member asks for a keyframe on one of this client's video tracks.
    KeyframeRequested {
        /// The video track.
        track: u32,
        /// Who asked.
        by: u32,
    },
    /// The relay accepted a refreshed ticket.
    TicketRefreshed {
        /// Seconds until it expires.
        expires_in_secs: u64,
    },
    /// The relay refused a request; the session continues.
    Refused {
        /// The reason.
        code: RefusalCode,
        /// The relay's explanation.
        message: String,
    },
    /// The ticket provider could not refresh the ticket before it expires.
    TicketRefreshFailed {
        /// The provider's reason.
        message: String,
    },
    /// The connection was lost; the client reconnects.
    ConnectionLost {
        /// Why.
        reason: String,
    },
    /// A reconnect attempt starts (the first is 1).
    Reconnecting {
        /// The attempt number.
        attempt: u32,
    },
    /// Back in the room on a new connection.
    Recovered {
        /// This member's id now.
        member: u32,
        /// The other members now.
        members: Vec<Member>,
    },
    /// The session is over for good; no events follow.
    Disconnected {
        /// Why, in words.
        reason: String,
        /// The relay's typed reason, if it gave one.
        code: Option<RefusalCode>,
    },
    /// An event this version of the bindings does not know yet (a newer client crate).
    Other {
        /// The event, as Rust's `Debug` prints it.
        description: String,
    },
}

impl From<client::Event> for Event {
    fn from(event: client::Event) -> Self {
        use client::Event as E;
        match event {
            E::MemberJoined(member) => Self::MemberJoined {
                member: member.into(),
            },
            E::MemberLeft {
                member,
                user,
                reason,
            } => Self::MemberLeft {
                member,
                user,
                reason: reason.into(),
            },
            E::TrackPublished { member, track } => Self::TrackPublished {
                member,
                track: track.into(),
            },
            E::TrackUnpublished { member, track } => Self::TrackUnpublished { member, track },
            E::Frame(frame) => Self::Frame {
                frame: ReceivedFrame {
                    sender: frame.sender,
                    track: frame.track,
                    kind: frame.kind.into(),
                    group: frame.envelope.group,
                    seq: frame.envelope.seq,
                    keyframe: frame.envelope.flags.contains(Flags::GROUP_START),
                    timestamp_us: frame.envelope.timestamp_us,
                    payload: frame.payload.to_vec(),
                },
            },
            E::CouldNotOpen(frame) => Self::CouldNotOpen {
                sender: frame.sender,
                track: frame.envelope.track,
                kind: frame.envelope.kind.into(),
                reason: frame.reason.into(),
            },
            E::KeyframeRequested { track, by } => Self::KeyframeRequested { track, by },
            E::TicketRefreshed { expires_in_secs } => Self::TicketRefreshed { expires_in_secs },
            E::Refused { code, message } => Self::Refused {
                code: code.into(),
                message,
            },
            E::TicketRefreshFailed(err) => Self::TicketRefreshFailed {
                message: err.to_string(),
            },
            E::ConnectionLost(reason) => Self::ConnectionLost {
                reason: reason.to_string(),
            },
            E::Reconnecting { attempt } => Self::Reconnecting { attempt },
            E::Recovered { member, members } => Self::Recovered {
                member,
                members: members.into_iter().map(Into::into).collect(),
            },
            E::Disconnected(reason) => Self::Disconnected {
                code: reason.code().map(Into::into),
                reason: reason.to_string(),
            },
            other => Self::Other {
                description: format!("{other:?}"),
            },
        }
    }
}
