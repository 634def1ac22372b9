//! The errors of the bindings, one enum per operation as in the Rust crates; each
//! becomes an exception class (Python, Kotlin) or an error enum (Swift) with these
//! variants as subclasses or cases. Messages say what happened and what to do.

#![allow(unsafe_code)] // UniFFI's derive macros expand to unsafe extern functions.

use sealroom_client::ErrorCode;

/// Why a [`Client`](crate::Client) could not be created.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ClientError {
    /// The certificate pin is not 64 hexadecimal digits.
    #[error("a certificate pin is 64 hexadecimal digits (the sha256 `sealroom relay` prints)")]
    InvalidPin,
    /// TLS or the UDP socket could not be set up.
    #[error("could not set up the client: {message}")]
    Setup {
        /// What failed.
        message: String,
    },
}

/// The relay's typed reason for refusing a member or a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum RefusalCode {
    /// The ticket's signature does not verify: mint it with the app's current secret.
    BadSignature,
    /// The ticket has expired: mint a new one.
    Expired,
    /// The ticket is not valid yet (clock skew between backend and relay).
    NotYetValid,
    /// The ticket names another room than the one asked for.
    WrongRoom,
    /// The relay does not serve the ticket's app.
    UnknownApp,
    /// The room is at its member limit.
    RoomFull,
    /// The relay is at its room limit.
    TooManyRooms,
    /// The ticket's grants do not allow it.
    NotPermitted,
    /// A frame over the relay's size limit.
    FrameTooLarge,
    /// Over a rate limit: slow down.
    RateLimited,
    /// A newer session of the same user joined.
    Replaced,
    /// An operator removed the member.
    Kicked,
    /// An operator dismissed the room.
    RoomDismissed,
    /// The ticket expired and was not refreshed.
    TicketExpired,
    /// The relay is shutting down.
    ShuttingDown,
    /// The member read too slowly.
    SlowConsumer,
    /// The member broke the protocol.
    ProtocolViolation,
    /// The ticket is not a well-formed ticket.
    BadTicket,
    /// The relay failed internally.
    Internal,
    /// The relay is overloaded: retry later.
    Overloaded,
    /// A reason this version of the bindings does not know.
    Other,
}

impl From<ErrorCode> for RefusalCode {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::BadSignature => Self::BadSignature,
            ErrorCode::Expired => Self::Expired,
            ErrorCode::NotYetValid => Self::NotYetValid,
            ErrorCode::WrongRoom => Self::WrongRoom,
            ErrorCode::UnknownApp => Self::UnknownApp,
            ErrorCode::RoomFull => Self::RoomFull,
            ErrorCode::TooManyRooms => Self::TooManyRooms,
            ErrorCode::NotPermitted => Self::NotPermitted,
            ErrorCode::FrameTooLarge => Self::FrameTooLarge,
            ErrorCode::RateLimited => Self::RateLimited,
            ErrorCode::Replaced => Self::Replaced,
            ErrorCode::Kicked => Self::Kicked,
            ErrorCode::RoomDismissed => Self::RoomDismissed,
            ErrorCode::TicketExpired => Self::TicketExpired,
            ErrorCode::ShuttingDown => Self::ShuttingDown,
            ErrorCode::SlowConsumer => Self::SlowConsumer,
            ErrorCode::ProtocolViolation => Self::ProtocolViolation,
            ErrorCode::BadTicket => Self::BadTicket,
            ErrorCode::Internal => Self::Internal,
            ErrorCode::Overloaded => Self::Overloaded,
            _ => Self::Other,
        }
    }
}

/// Why joining a room failed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum JoinError {
    /// The relay refused the join with a typed reason (bad signature, expired, wrong room,
    /// room full, ...).
    #[error("the relay refused the join: {code:?}: {message}")]
    Refused {
        /// The reason.
        code: RefusalCode,
        /// The relay's explanation.
        message: String,
    },
    /// The relay address is not `host:port` or does not resolve.
    #[error("bad relay address: {message}")]
    InvalidAddress {
        /// Why.
        message: String,
    },
    /// The room secret is not 32 bytes.
    #[error("a room secret is 32 bytes, got {len}")]
    InvalidSecret {
        /// The length given.
        len: u64,
    },
    /// Nothing answered at the address, or the relay did not answer the join in time.
    #[error("{message}")]
    Unreachable {
        /// What the client saw, with what to check.
        message: String,
    },
    /// The relay's certificate is not the pinned one: pin the hash the relay prints.
    #[error("{message}")]
    PinMismatch {
        /// Presented and pinned hashes, shortened.
        message: String,
    },
    /// The ticket provider gave no ticket.
    #[error("{message}")]
    Ticket {
        /// The provider's reason.
        message: String,
    },
    /// The connection failed or the relay broke the protocol during the join.
    #[error("{message}")]
    Connection {
        /// What failed.
        message: String,
    },
}

impl From<sealroom_client::JoinError> for JoinError {
    fn from(err: sealroom_client::JoinError) -> Self {
        use sealroom_client::JoinError as E;
        let message = err.to_string();
        match err {
            E::Refused { code, message } => Self::Refused {
                code: code.into(),
                message,
            },
            E::Unreachable { .. } | E::NoAnswer { .. } => Self::Unreachable { message },
            E::PinMismatch { .. } => Self::PinMismatch { message },
            E::Ticket(_) => Self::Ticket { message },
            _ => Self::Connection { message },
        }
    }
}

/// Why a track could not be published, a frame not sent, or a request not made.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum PublishError {
    /// This client already publishes a track with that id in this room.
    #[error("track {track} is already published: pick another track id")]
    TrackInUse {
        /// The track id.
        track: u32,
    },
    /// The track's send queue is full; the frame was not queued. Send slower, or drop
    /// frames (audio and video) until it drains.
    #[error("send queue full: the frame was not queued")]
    QueueFull,
    /// The frame is larger than the relay accepts (or a datagram can carry, for an
    /// unreliable message).
    #[error("frame of {len} bytes exceeds the limit {max}")]
    TooLarge {
        /// Encoded length of the frame.
        len: u64,
        /// The limit in force.
        max: u64,
    },
    /// The frame could not be sealed.
    #[error("seal: {message}")]
    Seal {
        /// Why.
        message: String,
    },
    /// The room session has ended.
    #[error("the room session has ended")]
    Closed,
}

impl From<sealroom_client::PublishError> for PublishError {
    fn from(err: sealroom_client::PublishError) -> Self {
        use sealroom_client::PublishError as E;
        match err {
            E::TrackInUse(track) => Self::TrackInUse { track },
            E::QueueFull => Self::QueueFull,
            E::TooLarge { len, max } => Self::TooLarge {
                len: len as u64,
                max: max as u64,
            },
            E::Seal(err) => Self::Seal {
                message: err.to_string(),
            },
            _ => Self::Closed,
        }
    }
}

impl From<sealroom_client::RefreshError> for PublishError {
    fn from(err: sealroom_client::RefreshError) -> Self {
        match err {
            sealroom_client::RefreshError::Ticket(err) => Self::Seal {
                message: err.to_string(),
            },
            _ => Self::Closed,
        }
    }
}

/// Why key material could not be set up.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum KeyMaterialError {
    /// A room secret is 32 bytes.
    #[error("a room secret is 32 bytes, got {len}")]
    InvalidSecret {
        /// The length given.
        len: u64,
    },
    /// The cipher suite is not one of RFC 9605's five.
    #[error("unknown cipher suite {id}: use 1 to 5 (RFC 9605 section 4.5; sealroom uses 4)")]
    UnknownSuite {
        /// The identifier given.
        id: u16,
    },
}

/// Why a frame could not be sealed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum SealError {
    /// The key reached its usage limit: call `rekey()` or `rotate()` and seal again.
    #[error("key usage limit reached: rekey or rotate before sealing more")]
    RotationRequired,
    /// The plaintext is longer than one frame may be (1 GiB).
    #[error("plaintext of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Plaintext length.
        len: u64,
        /// Limit.
        max: u64,
    },
    /// The cryptographic library refused; valid sizes never cause it.
    #[error("the cryptographic backend refused to seal")]
    Backend,
}

impl From<sealroom_crypto::SealError> for SealError {
    fn from(err: sealroom_crypto::SealError) -> Self {
        use sealroom_crypto::SealError as E;
        match err {
            E::RotationRequired => Self::RotationRequired,
            E::TooLong { len, max } => Self::TooLong {
                len: len as u64,
                max: max as u64,
            },
            _ => Self::Backend,
        }
    }
}

/// Why a frame could not be opened; no variant carries plaintext.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum OpenError {
    /// The KID names an epoch the opener does not hold yet: rotate it, or drop the frame.
    #[error("unknown sframe kid {kid:#x}: rotate the opener or drop the frame")]
    UnknownKid {
        /// The KID.
        kid: u64,
    },
    /// This frame was already opened: drop it.
    #[error("replayed frame")]
    Replayed,
    /// Behind the replay window, or from a retired epoch or session: drop it.
    #[error("frame too old")]
    TooOld,
    /// Wrong key, or altered header, metadata, ciphertext or tag: drop it.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// Not an SFrame ciphertext: drop it.
    #[error("malformed sframe")]
    Malformed,
}

impl From<sealroom_crypto::OpenError> for OpenError {
    fn from(err: sealroom_crypto::OpenError) -> Self {
        use sealroom_crypto::OpenError as E;
        match err {
            E::UnknownKid(kid) => Self::UnknownKid { kid },
            E::Replayed => Self::Replayed,
            E::TooOld => Self::TooOld,
            E::Malformed => Self::Malformed,
            _ => Self::AuthenticationFailed,
        }
    }
}

/// Why a ticket could not be minted.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum TicketError {
    /// An empty secret or claim, or a zero lifetime.
    #[error("could not mint the ticket: {message}")]
    Invalid {
        /// Why.
        message: String,
    },
}

/// What a [`TicketProvider`](crate::TicketProvider) raises when it has no ticket.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum TicketProviderError {
    /// The provider could not get a ticket (say why: the client reports it).
    #[error("{message}")]
    Failed {
        /// Why.
        message: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for TicketProviderError {
    fn from(err: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Failed {
            message: format!(
                "the ticket provider raised an unexpected error: {}",
                err.reason
            ),
        }
    }
}
