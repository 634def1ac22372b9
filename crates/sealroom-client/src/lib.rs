//! The sealroom client: join end-to-end encrypted rooms through a relay, publish audio,
//! video and data sealed with RFC 9605 SFrame, and receive every other member's frames
//! opened and verified.
//!
//! The relay forwards sealed frames it cannot read. Keys come from a room secret the
//! application distributes to its members; the relay never sees it.
//!
//! ```no_run
//! use sealroom_client::{Client, ClientConfig, Event, RoomSecret, Trust};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let client = Client::new(ClientConfig::new(Trust::pinned_hex("3b1f…")?))?;
//! let ticket = String::from("eyJ…"); // minted by the app's backend
//! let secret = RoomSecret::from_bytes([7; 32]); // 32 random bytes the app gives its members
//! let (room, mut events) = client
//!     .join("127.0.0.1:4433".parse()?, "localhost", ticket, &secret)
//!     .await?;
//!
//! let chat = room.publish_data(1).await?;
//! chat.send("hello, room").await?;
//!
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Frame(frame) => println!("{}: {:?}", frame.sender, frame.payload),
//!         Event::MemberJoined(member) => println!("{} joined", member.user),
//!         Event::Disconnected(reason) => println!("session over: {reason}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The session survives its connection. When the connection drops, the relay restarts or
//! sends `GoAway`, the client reconnects with exponential backoff and jitter
//! ([`ClientConfig::reconnect_backoff`], up to [`ClientConfig::reconnect_attempts`] attempts
//! within [`ClientConfig::reconnect_give_up_after`]), rejoins with
//! a ticket from its [`TicketSource`] ([`TicketReason::Rejoin`]), publishes its tracks again
//! and restores the application's subscription choices; the application sees
//! [`Event::ConnectionLost`], [`Event::Reconnecting`] and [`Event::Recovered`] (with the
//! member id, which may change). Removals the relay means (kicked, replaced, room
//! dismissed, ticket expired), a refused rejoin, a relay whose certificate is not the
//! pinned one ([`DisconnectReason::PinMismatch`]) and leaving end the session for good with
//! [`Event::Disconnected`]. Sealers outlive connections, so counters never repeat
//! (`docs/SECURITY.md`). While reconnecting, audio, video and unreliable data are dropped
//! and counted ([`RoomStats::frames_dropped_offline`]); reliable data waits in its track's
//! bounded queue. The ticket is refreshed ahead of expiry ([`TicketReason::Refresh`],
//! [`Event::TicketRefreshFailed`] when the source cannot).
//!
//! Transport: one QUIC connection per room (ALPN `sealroom/1`), control messages on the
//! first bidirectional stream, audio on datagrams, video on one stream per group, reliable
//! data on one stream per track (see `docs/PROTOCOL.md`). Every internal queue is bounded
//! by [`ClientConfig`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod error;
mod event;
mod keys;
mod link;
mod mls;
mod quality;
mod refresh;
mod room;
mod session;
mod stats;
mod ticket;
mod track;

pub use config::{ClientConfig, JoinConfig, PinParseError, Trust};
pub use error::{
    ClientError, ConnectError, ConnectionError, JoinError, ProtocolError, PublishError,
    RefreshError,
};
pub use event::{DisconnectReason, Event, Events, Member, ReceivedFrame, UnopenedFrame};
pub use mls::MlsConfig;
pub use quality::{
    CallQuality, ConnectionStats, ForgeryStats, LocalDrop, LocalDrops, ReceivedTrackStats,
    SentTrackStats,
};
pub use room::{Client, DangerousRoom, KeyMode, Room};
pub use sealroom_crypto::CipherSuite;
pub use sealroom_crypto::{OpenError, RoomSecret, SealError};
pub use sealroom_frame::quality::Verdict;
pub use sealroom_mls::{AgentConfig, CheckedMember, GroupMember, MlsEvent, MlsOpenerConfig};
pub use sealroom_tls::{TlsSetupError, cert_sha256};
pub use stats::RoomStats;
pub use ticket::{
    FnTicketSource, TicketFuture, TicketReason, TicketRequest, TicketSource, TicketSourceError,
    ticket_fn,
};
pub use track::{AudioTrack, DataTrack, VideoTrack};

pub use sealroom_frame::control::{ErrorCode, LeaveReason, SessionLimits, TrackInfo};
pub use sealroom_frame::envelope::{Envelope, Flags, MediaKind, MemberId, TrackId};

/// The README's client example, compiled as a doctest so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;
