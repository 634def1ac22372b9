//! Errors, one enum per operation, and the typed causes they carry. No type of the QUIC
//! implementation appears in them: its errors are wrapped, and reachable as
//! [`std::error::Error::source`] for logging.

use sealroom_crypto::SealError;
use sealroom_frame::control::{ControlError, ErrorCode};
use sealroom_frame::envelope::TrackId;
use sealroom_frame::stream::DeframeError;

use crate::ticket::TicketSourceError;
use crate::tls::TlsSetupError;

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
    /// The connection could not be started (for example an invalid server name).
    #[error("connect: {0}")]
    Connect(#[from] ConnectError),
    /// The QUIC or TLS handshake failed, or the connection dropped during the join (a
    /// relay whose certificate does not match the pin ends here).
    #[error("connection: {0}")]
    Connection(#[from] ConnectionError),
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

impl JoinError {
    /// The relay's typed reason, when the relay refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            _ => None,
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
    /// The room session has ended.
    #[error("the room session has ended")]
    Closed,
}
