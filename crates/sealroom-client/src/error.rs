//! Errors, one enum per operation, and the typed causes they carry. No type of the QUIC
//! implementation appears in them: its errors are wrapped, and reachable as
//! [`std::error::Error::source`] for logging.

use std::net::SocketAddr;
use std::time::Duration;

use sealroom_crypto::SealError;
use sealroom_frame::control::{ControlError, ErrorCode};
use sealroom_frame::envelope::TrackId;
use sealroom_frame::stream::DeframeError;

use crate::ticket::TicketSourceError;
use sealroom_tls::TlsSetupError;

/// Why a [`Client`](crate::Client) could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TLS configuration for the configured trust could not be built.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// The UDP socket could not be bound.
    #[error("bind udp socket: {0}")]
    Bind(#[from] std::io::Error),
}

/// Why joining a room failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The application's ticket source gave no ticket.
    #[error(transparent)]
    Ticket(#[from] TicketSourceError),
    /// The MLS mode could not be set up (a user id that cannot be a credential: 1 to 255
    /// bytes); pass the ticket's user id to `MlsConfig::new`.
    #[error("mls setup: {0}")]
    Mls(String),
    /// The connection could not be started (for example an invalid server name).
    #[error("connect: {0}")]
    Connect(#[from] ConnectError),
    /// The QUIC or TLS handshake failed, or the connection dropped during the join.
    #[error("connection: {0}")]
    Connection(#[from] ConnectionError),
    /// Nothing answered at the address within
    /// [`ClientConfig::connect_timeout`](crate::ClientConfig::connect_timeout): no relay
    /// listens there, or UDP is blocked on the way.
    #[error(
        "no relay answered at {relay} over QUIC (UDP) within {} s: check the address and port, \
         that the relay is running, and that no firewall drops UDP",
        after.as_secs_f64()
    )]
    Unreachable {
        /// The address dialled.
        relay: SocketAddr,
        /// How long the client waited.
        after: Duration,
    },
    /// The relay completed the QUIC handshake but did not answer the join in time.
    #[error(
        "the relay at {relay} accepted the connection but did not answer the join within {} s",
        after.as_secs_f64()
    )]
    NoAnswer {
        /// The address dialled.
        relay: SocketAddr,
        /// How long the client waited in all.
        after: Duration,
    },
    /// The relay presented a certificate whose SHA-256 is not the pinned one
    /// ([`Trust::Pinned`](crate::Trust::Pinned)). Retrying cannot help: pin the hash the
    /// relay prints now, or connect to the intended relay.
    #[error(
        "the certificate of the relay at {relay} has sha256 {}..., which does not match the \
         pinned {}...: pin the hash the relay prints at start (a development relay makes a new \
         certificate every time it starts)",
        short_hash(presented),
        short_hash(pinned)
    )]
    PinMismatch {
        /// The address dialled.
        relay: SocketAddr,
        /// The pin the client was configured with.
        pinned: [u8; 32],
        /// The SHA-256 of the certificate the relay presented.
        presented: [u8; 32],
    },
    /// The relay refused the join with a typed reason (bad signature, expired, wrong room,
    /// unknown app, room full, ...).
    #[error("join refused: {code:?}: {message}")]
    Refused {
        /// The reason.
        code: ErrorCode,
        /// The relay's explanation.
        message: String,
    },
    /// The relay answered with something that is not a join answer.
    #[error("protocol violation by the relay: {0}")]
    Protocol(#[from] ProtocolError),
    /// The relay sent the join to another node of its cluster (`Redirect`), and the
    /// client had already followed as many redirects as it follows for one join (3): the
    /// cluster's nodes keep sending it on; retry later.
    #[error("the relay redirected the join to {to}, after too many redirects; retry later")]
    Redirected {
        /// Where the last relay sent it.
        to: SocketAddr,
    },
}

/// A QUIC connection to the relay could not be started: an invalid server name or
/// address, or the client was closed. The message says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct ConnectError(pub(crate) quinn::ConnectError);

/// The QUIC connection to the relay failed: the handshake (a relay whose certificate does
/// not match the pin ends here), a timeout, a reset, or a close by either side. The
/// message says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct ConnectionError(pub(crate) quinn::ConnectionError);

impl ConnectionError {
    /// Whether the connection (or the attempt to open it) timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self.0, quinn::ConnectionError::TimedOut)
    }
}

/// How the relay broke the protocol, as this client saw it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The `Join` message could not be encoded (a ticket over the control message limit).
    #[error("join message: {0}")]
    JoinMessage(ControlError),
    /// A control message from the relay does not decode.
    #[error(transparent)]
    Control(ControlError),
    /// The relay's control stream breaks the stream framing.
    #[error(transparent)]
    Framing(DeframeError),
    /// The relay answered `Join` with another message (its name).
    #[error("expected joined, got {0}")]
    Unexpected(&'static str),
    /// The relay finished the control stream without answering `Join`.
    #[error("control stream ended before the answer")]
    NoAnswer,
}

/// The first 16 hex digits of a certificate hash, as `sealroom demo` prints it.
fn short_hash(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..8])
}

impl JoinError {
    /// The relay's typed reason, when the relay refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether another attempt could succeed: false for a relay that refuses this member
    /// for good (a bad, expired or forged ticket, another room, a missing grant) and for a
    /// certificate that does not match the pin.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Refused { code, .. } => !code.is_recoverable(),
            Self::PinMismatch { .. } | Self::Mls(_) => true,
            Self::Protocol(_)
            | Self::Redirected { .. }
            | Self::Ticket(_)
            | Self::Connect(_)
            | Self::Connection(_)
            | Self::Unreachable { .. }
            | Self::NoAnswer { .. } => false,
        }
    }
}

impl JoinError {
    /// Whether another relay of the list may do better: nothing answered, the connection
    /// failed, or a refusal that may succeed elsewhere (shutting down, overloaded, ...).
    pub(crate) fn worth_another_relay(&self) -> bool {
        match self {
            Self::Refused { code, .. } => code.is_recoverable(),
            Self::Connection(_)
            | Self::Unreachable { .. }
            | Self::NoAnswer { .. }
            | Self::Redirected { .. } => true,
            Self::Protocol(_)
            | Self::Ticket(_)
            | Self::Mls(_)
            | Self::Connect(_)
            | Self::PinMismatch { .. } => false,
        }
    }
}

/// Why a ticket refresh could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The application's ticket source gave no ticket.
    #[error(transparent)]
    Ticket(#[from] TicketSourceError),
    /// The room session has ended.
    #[error("the room session has ended")]
    Closed,
}

/// Why a track could not be published or a frame not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// This client already publishes a track with that id in this room.
    #[error("track {0} is already published")]
    TrackInUse(TrackId),
    /// The track's send queue is full ([`ClientConfig::media_queue`](crate::ClientConfig::media_queue)
    /// or [`ClientConfig::data_queue`](crate::ClientConfig::data_queue)); the frame was not queued.
    #[error("send queue full")]
    QueueFull,
    /// The frame is larger than the relay accepts, or than a datagram can carry for an
    /// unreliable message.
    #[error("frame of {len} bytes exceeds the limit {max}")]
    TooLarge {
        /// Encoded length of the frame.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The frame could not be sealed (the sender's key is exhausted).
    #[error("seal: {0}")]
    Seal(SealError),
    /// MLS mode: this member is not in the room's group yet (or is rejoining it), so it
    /// holds no key to seal with; the frame was dropped. Wait for `Event::Mls` with a new
    /// epoch.
    #[error("not in the room's mls group yet: wait for the next epoch event, then send")]
    NoGroupKeys,
    /// The room session has ended.
    #[error("the room session has ended")]
    Closed,
}
