//! Errors, one enum per operation.

use sealroom_frame::control::ErrorCode;
use sealroom_frame::envelope::TrackId;

use crate::ticket::TicketSourceError;
use crate::tls::TlsSetupError;

/// Why a [`Client`](crate::Client) could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TLS configuration for the configured trust could not be built.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// The UDP socket could not be bound.
    #[error("bind udp socket: {0}")]
    Bind(#[from] std::io::Error),
}

/// Why joining a room failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The application's ticket source gave no ticket.
    #[error(transparent)]
    Ticket(#[from] TicketSourceError),
    /// The connection could not be started (for example an invalid server name).
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The QUIC or TLS handshake failed, or the connection dropped during the join (a
    /// relay whose certificate does not match the pin ends here).
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
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
    Protocol(String),
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
    Seal(String),
    /// The room session has ended.
    #[error("the room session has ended")]
    Closed,
}
