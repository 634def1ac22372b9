//! What a room tells the application: roster changes, opened frames, frames that could not
//! be opened, requests and the end of the session.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use sealroom_crypto::OpenError;
use sealroom_frame::control::{ErrorCode, LeaveReason, TrackInfo};
use sealroom_frame::envelope::{Envelope, MediaKind, MemberId, TrackId};
use tokio::sync::mpsc;

use crate::ticket::TicketSourceError;

/// A member of the room as the client knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Relay-assigned id, the `sender` of this member's envelopes.
    pub id: MemberId,
    /// The user id from the member's ticket.
    pub user: String,
    /// Tracks the member publishes.
    pub tracks: Vec<TrackInfo>,
}

/// A frame another member published, opened and verified.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedFrame {
    /// The sending member (checked by the relay against its connection and by SFrame
    /// against the sender's key).
    pub sender: MemberId,
    /// The sender's track.
    pub track: TrackId,
    /// Audio, video or data.
    pub kind: MediaKind,
    /// The authenticated envelope (group, sequence, flags, capture time).
    pub envelope: Envelope,
    /// The plaintext the sender published.
    pub payload: Bytes,
}

impl fmt::Debug for ReceivedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivedFrame")
            .field("sender", &self.sender)
            .field("track", &self.track)
            .field("kind", &self.kind)
            .field("envelope", &self.envelope)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// A frame that arrived but could not be opened; the room keeps working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnopenedFrame {
    /// The sender its envelope names.
    pub sender: MemberId,
    /// The envelope as received (not authenticated).
    pub envelope: Envelope,
    /// Why it could not be opened.
    pub reason: OpenError,
}

/// Why a room session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The application called [`Room::leave`](crate::Room::leave).
    Left,
    /// The relay ended the session with a typed reason (for example
    /// [`ErrorCode::Replaced`] when the same user joined again elsewhere).
    Relay {
        /// The reason.
        code: ErrorCode,
        /// The relay's explanation.
        message: String,
    },
    /// The relay closed the connection without a reason.
    Closed,
    /// The connection was lost (timeout, reset, network change).
    ConnectionLost {
        /// What the transport reported.
        detail: String,
    },
    /// The relay broke the protocol (for example an undecodable control message).
    Protocol {
        /// What was wrong.
        detail: String,
    },
    /// The application's ticket source gave no ticket for a rejoin.
    NoTicket(TicketSourceError),
    /// On a rejoin the relay presented a certificate that is not the pinned one (a
    /// development relay restarted with a new certificate, or another server took the
    /// address); the client does not retry.
    PinMismatch {
        /// What was presented and what was pinned, shortened.
        detail: String,
    },
    /// The connection was lost and every reconnect attempt failed
    /// ([`ClientConfig::reconnect_attempts`](crate::ClientConfig::reconnect_attempts),
    /// [`ClientConfig::reconnect_give_up_after`](crate::ClientConfig::reconnect_give_up_after)).
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Why the last attempt failed (or the connection loss, when none was made).
        last: Box<Self>,
    },
}

impl DisconnectReason {
    /// The relay's typed reason, if it gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Relay { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the client reconnects after a connection ended for this reason: a lost
    /// transport, a relay that closed without a reason or is shutting down (restart,
    /// [`ErrorCode::ShuttingDown`] in `GoAway`), an internal relay error. A deliberate
    /// removal (kicked, replaced, room dismissed, ticket expired, too slow), a protocol
    /// violation, leaving, and giving up are final ([`ErrorCode::is_recoverable`]).
    pub fn is_recoverable(&self) -> bool {
        match self {
            Self::Relay { code, .. } => code.is_recoverable(),
            Self::Closed | Self::ConnectionLost { .. } => true,
            Self::Left
            | Self::Protocol { .. }
            | Self::NoTicket(_)
            | Self::PinMismatch { .. }
            | Self::GaveUp { .. } => false,
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Left => f.write_str("left the room"),
            Self::Relay { code, message } => {
                write!(f, "relay ended the session: {code:?}: {message}")
            }
            Self::Closed => f.write_str("relay closed the connection"),
            Self::ConnectionLost { detail } => write!(f, "connection lost: {detail}"),
            Self::Protocol { detail } => write!(f, "protocol violation by the relay: {detail}"),
            Self::NoTicket(error) => write!(f, "{error}"),
            Self::PinMismatch { detail } => f.write_str(detail),
            Self::GaveUp { attempts, last } => {
                write!(f, "gave up reconnecting after {attempts} attempts: {last}")
            }
        }
    }
}

/// Something that happened in the room.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A member entered the room.
    MemberJoined(Member),
    /// A member left the room.
    MemberLeft {
        /// Its id (no longer valid).
        member: MemberId,
        /// Its user id, if the client knew the member.
        user: Option<String>,
        /// Why it left.
        reason: LeaveReason,
    },
    /// A member started publishing a track.
    TrackPublished {
        /// The publisher.
        member: MemberId,
        /// The track.
        track: TrackInfo,
    },
    /// A member stopped publishing a track.
    TrackUnpublished {
        /// The publisher.
        member: MemberId,
        /// The track id.
        track: TrackId,
    },
    /// A frame from another member, opened and verified.
    Frame(ReceivedFrame),
    /// A frame that could not be opened.
    CouldNotOpen(UnopenedFrame),
    /// A member asks for a keyframe on one of this client's video tracks. After a
    /// reconnect the client asks itself (`by` is this member's new id) for each of its
    /// video tracks, so that the others can decode its video again.
    KeyframeRequested {
        /// The video track.
        track: TrackId,
        /// Who asked.
        by: MemberId,
    },
    /// The relay accepted a refreshed ticket ([`Room::refresh_ticket`](crate::Room::refresh_ticket)).
    TicketRefreshed {
        /// Seconds until the new ticket expires.
        expires_in_secs: u64,
    },
    /// The relay refused something but the session continues (for example publishing
    /// without the grant: [`ErrorCode::NotPermitted`]; a refreshed ticket for another
    /// room: [`ErrorCode::WrongRoom`]).
    Refused {
        /// The reason.
        code: ErrorCode,
        /// The relay's explanation.
        message: String,
    },
    /// The application's ticket source could not give a ticket to refresh the session
    /// before its ticket expires (or gave the one already in use). Unless a refresh
    /// succeeds later ([`Room::refresh_ticket`](crate::Room::refresh_ticket)), the relay
    /// removes this member at expiry with [`ErrorCode::TicketExpired`].
    TicketRefreshFailed(TicketSourceError),
    /// The connection to the relay was lost for a reason the client recovers from; it
    /// reconnects ([`Event::Reconnecting`]). Frames published until it recovers are
    /// handled as [`RoomStats::frames_dropped_offline`](crate::RoomStats::frames_dropped_offline)
    /// says.
    ConnectionLost(DisconnectReason),
    /// A reconnect attempt starts (the first is 1).
    Reconnecting {
        /// The attempt number since the connection was lost.
        attempt: u32,
    },
    /// The client is back in the room on a new connection, with a fresh ticket; its tracks
    /// are published again and its subscription choices restored.
    Recovered {
        /// This member's id on the new connection (the relay may assign a new one).
        member: MemberId,
        /// The other members now in the room (their ids may have changed too).
        members: Vec<Member>,
    },
    /// How the call is going: the session's counters and call quality, every
    /// [`ClientConfig::stats_interval`](crate::ClientConfig::stats_interval) (2 s by
    /// default). The same as [`Room::stats`](crate::Room::stats) at that moment; the rates
    /// cover the interval since the previous one. Dropped rather than queued when the
    /// event queue is full.
    Stats(Box<crate::RoomStats>),
    /// Frames from this member failed authentication
    /// [`ClientConfig::forgery_threshold`](crate::ClientConfig::forgery_threshold) times:
    /// from now on its frames (and those of its user, should it rejoin under a new id) are
    /// dropped unopened and counted as
    /// [`LocalDrop::BlockedSender`](crate::LocalDrop::BlockedSender). The frame that
    /// crossed the threshold is reported here instead of as [`Event::CouldNotOpen`].
    SenderBlocked {
        /// The sender its envelopes name.
        member: MemberId,
        /// Its user id, when the roster knows it.
        user: Option<String>,
        /// Frames that failed authentication.
        failures: u64,
    },
    /// A member of the room records it: it receives every track (sealed: it holds no room
    /// secret) and publishes nothing. Follows that member's [`Event::MemberJoined`] (or, for
    /// a recorder already present, the join); its [`Event::MemberLeft`] ends the recording.
    RecorderPresent {
        /// The recording member.
        member: MemberId,
        /// Its user id, if the client knew the member.
        user: Option<String>,
    },
    /// The session is over for good; no events follow. Reasons the client recovers from
    /// ([`DisconnectReason::is_recoverable`]) end here only when reconnecting is off or
    /// gave up ([`DisconnectReason::GaveUp`]).
    Disconnected(DisconnectReason),
    /// MLS mode: the group changed epoch (new keys, with the members and their checked
    /// credentials), this member is rejoining the group, a commit was ignored, or the
    /// relay refused an MLS message.
    Mls(sealroom_mls::MlsEvent),
}

/// The stream of a room's [`Event`]s.
///
/// Drain it: it is bounded by [`ClientConfig::event_queue`](crate::ClientConfig::event_queue),
/// and when it is full the client stops reading streams from the relay and drops (and
/// counts) datagram frames. It ends after [`Event::Disconnected`].
#[derive(Debug)]
pub struct Events {
    pub(crate) rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event, or `None` after the session ended and every event was taken.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

impl futures::Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}
