//! What the core answers: outputs for the driver, outcomes of inputs and their labels.

use sealroom_frame::control::{ControlMessage, ErrorCode};

use super::ConnId;

/// What the driver must do, in order. Deliberately not `#[non_exhaustive]`: a driver must
/// carry out every output, so a new one fails to compile until each driver handles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a control message on the connection's control stream.
    Send {
        /// The connection.
        conn: ConnId,
        /// The message.
        message: ControlMessage,
    },
    /// Close the connection once what was sent to it is flushed; `None` is a normal close.
    /// The core has already forgotten the connection.
    Close {
        /// The connection.
        conn: ConnId,
        /// The reason, mapped to the QUIC application close code by
        /// [`ErrorCode::close_code`].
        code: Option<ErrorCode>,
    },
}

/// How a join attempt ended, for metrics and the join success rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinOutcome {
    /// Admitted (possibly replacing an earlier session of the same user).
    Joined,
    /// Refused with this reason.
    Refused(ErrorCode),
    /// A valid join sent to another node of the cluster with `Redirect`.
    Redirected,
}

impl JoinOutcome {
    /// A stable lowercase label (`joined`, or the refusal reason's [`ErrorCode::label`]).
    pub const fn label(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::Redirected => "redirected",
            Self::Refused(code) => code.label(),
        }
    }
}

/// Why a frame was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DropReason {
    /// The connection has not joined a room (or has left it).
    NotJoined,
    /// The envelope's sender is not the connection's member id.
    ForgedSender,
    /// The frame exceeds the frame size limit.
    TooLarge,
    /// The ticket does not grant publishing this kind.
    NotPermitted,
    /// The member already publishes as many tracks as allowed.
    TooManyTracks,
    /// The track was published as another kind.
    KindMismatch,
    /// The member exceeded a rate limit.
    RateLimited,
    /// The bytes do not decode as an envelope frame.
    Malformed,
    /// A receiver's datagram queue was full; its oldest datagram was dropped.
    QueueFull,
    /// A receiver fell behind on a video group; the rest of the group was dropped.
    StaleGroup,
    /// The frame arrived for a video group already superseded at a receiver.
    LateGroup,
    /// Too many audio streams were in flight to a receiver.
    TooManyStreams,
    /// The receiver's connection was gone or closing.
    ReceiverGone,
    /// The receiver could not keep up with reliable data and was removed.
    SlowConsumer,
    /// The connection had more bytes of incomplete frames buffered than allowed; the
    /// stream that went over was stopped.
    Backlog,
    /// The sender is a recorder (its ticket carries the `record` grant): a recorder
    /// publishes nothing.
    RecorderPublished,
}

impl DropReason {
    /// Whether the frame was forged or malformed by its sender (counted towards
    /// [`Violation::BadFrames`]): a wrong sender id, a frame before `Join`, bytes that do
    /// not decode, a track used as another kind.
    pub const fn is_bad(self) -> bool {
        matches!(
            self,
            Self::ForgedSender | Self::NotJoined | Self::Malformed | Self::KindMismatch
        )
    }

    /// Every reason, for exporting zeroed counters.
    pub const ALL: [Self; 16] = [
        Self::NotJoined,
        Self::ForgedSender,
        Self::TooLarge,
        Self::NotPermitted,
        Self::TooManyTracks,
        Self::KindMismatch,
        Self::RateLimited,
        Self::Malformed,
        Self::QueueFull,
        Self::StaleGroup,
        Self::LateGroup,
        Self::TooManyStreams,
        Self::ReceiverGone,
        Self::SlowConsumer,
        Self::Backlog,
        Self::RecorderPublished,
    ];

    /// A stable lowercase label (metrics, logs).
    pub const fn label(self) -> &'static str {
        match self {
            Self::NotJoined => "not_joined",
            Self::ForgedSender => "forged_sender",
            Self::TooLarge => "too_large",
            Self::NotPermitted => "not_permitted",
            Self::TooManyTracks => "too_many_tracks",
            Self::KindMismatch => "kind_mismatch",
            Self::RateLimited => "rate_limited",
            Self::Malformed => "malformed",
            Self::QueueFull => "queue_full",
            Self::StaleGroup => "stale_group",
            Self::LateGroup => "late_group",
            Self::TooManyStreams => "too_many_streams",
            Self::ReceiverGone => "receiver_gone",
            Self::SlowConsumer => "slow_consumer",
            Self::Backlog => "backlog",
            Self::RecorderPublished => "recorder_published",
        }
    }
}

/// A way a connection broke the protocol. Each is counted
/// (`sealroom_violations_total{kind}`, [`RelayStats::violations`](crate::RelayStats)); the
/// ones on the control plane end the connection, the ones on a media stream end that stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Violation {
    /// A control message other than `Join` before `Join` (publishing before joining, say):
    /// the connection is closed with `ProtocolViolation`.
    BeforeJoin,
    /// `Join` on a connection that already joined: the member is removed with
    /// `ProtocolViolation`.
    JoinTwice,
    /// A message only the relay sends (`Joined`, `MemberJoined`, `GoAway`, ...): removed
    /// with `ProtocolViolation`.
    RelayOnly,
    /// A control message that does not decode: removed with `ProtocolViolation`.
    MalformedControl,
    /// Broken control stream framing: removed with `ProtocolViolation`.
    ControlFraming,
    /// A control message over the size limit: removed with `FrameTooLarge`.
    ControlTooLarge,
    /// No `Join` within the join timeout: closed with `ProtocolViolation`.
    NoJoin,
    /// More incoming streams than allowed: over the stream opening rate (the stream is
    /// refused and the member hears `RateLimited`), or past the QUIC stream limit (quinn
    /// closes the connection).
    TooManyStreams,
    /// A frame that started but did not complete within `incomplete_frame_timeout_ms`
    /// (a slowloris): a media stream is refused, a control stream ends the connection with
    /// `ProtocolViolation`.
    StalledFrame,
    /// Any other breach of the QUIC specification; quinn closed the connection.
    Quic,
    /// Forged or malformed frames (another member's sender id, frames before `Join`,
    /// bytes that do not decode as a frame, a track used as another kind) beyond
    /// `bad_frames_per_sec` and its burst: removed with `ProtocolViolation`.
    BadFrames,
}

impl Violation {
    /// Every kind, for exporting zeroed counters.
    pub const ALL: [Self; 11] = [
        Self::BeforeJoin,
        Self::JoinTwice,
        Self::RelayOnly,
        Self::MalformedControl,
        Self::ControlFraming,
        Self::ControlTooLarge,
        Self::NoJoin,
        Self::TooManyStreams,
        Self::StalledFrame,
        Self::Quic,
        Self::BadFrames,
    ];

    /// A stable lowercase label (metrics, logs).
    pub const fn label(self) -> &'static str {
        match self {
            Self::BeforeJoin => "before_join",
            Self::JoinTwice => "join_twice",
            Self::RelayOnly => "relay_only",
            Self::MalformedControl => "malformed_control",
            Self::ControlFraming => "control_framing",
            Self::ControlTooLarge => "control_too_large",
            Self::NoJoin => "no_join",
            Self::TooManyStreams => "too_many_streams",
            Self::StalledFrame => "stalled_frame",
            Self::Quic => "quic",
            Self::BadFrames => "bad_frames",
        }
    }

    /// The reason a connection removed for this violation hears.
    pub const fn error_code(self) -> ErrorCode {
        match self {
            Self::ControlTooLarge => ErrorCode::FrameTooLarge,
            _ => ErrorCode::ProtocolViolation,
        }
    }

    pub(super) const fn message(self) -> &'static str {
        match self {
            Self::BeforeJoin => "the first message must be Join",
            Self::JoinTwice => "already joined",
            Self::RelayOnly => "a message only the relay sends",
            Self::MalformedControl => "malformed control message",
            Self::ControlFraming => "broken control stream framing",
            Self::ControlTooLarge => "control message over the size limit",
            Self::NoJoin => "no Join in time",
            Self::TooManyStreams => "too many streams",
            Self::StalledFrame => "a control message that never completed",
            Self::Quic => "QUIC protocol violation",
            Self::BadFrames => {
                "too many forged or malformed frames; fix the sender before reconnecting"
            }
        }
    }
}

/// What became of a control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlOutcome {
    /// Acted on.
    Handled,
    /// The connection's first `Join`, decided.
    Join(JoinOutcome),
    /// A keyframe request.
    Keyframe(KeyframeOutcome),
    /// Dropped: over the member's control message rate (it hears `RateLimited`, at most
    /// once a second).
    RateLimited,
    /// The connection broke the protocol and was removed.
    Violation(Violation),
    /// The connection is unknown (already removed); nothing happened.
    Ignored,
    /// An MLS delivery-service message, decided.
    Mls(super::MlsOutcome),
}

/// What became of a keyframe request, from a member or from the relay on a slow
/// receiver's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyframeOutcome {
    /// Passed to the publisher.
    Forwarded,
    /// Dropped: the publisher was asked for a keyframe on this track less than
    /// `keyframe_request_interval_ms` ago; that keyframe serves this request too.
    Coalesced,
    /// Dropped: no such publisher or video track in the room (or the requester's own).
    Ignored,
}

/// What a pass of [`RelayCore::handle_timeout`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TimeoutOutcome {
    /// Connections closed for not joining in time ([`Violation::NoJoin`]).
    pub no_join: usize,
    /// Members removed because their ticket expired.
    pub tickets_expired: usize,
}
