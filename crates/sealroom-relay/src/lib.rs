//! The sealroom relay node as a library: admission with signed tickets, rooms isolated per
//! app and room id, fan-out of sealed frames over QUIC, limits and metrics.
//!
//! The relay reads only the media envelope of each frame (kind, sender, track, group,
//! sequence, flags); the payload is an SFrame ciphertext it cannot open, because this crate
//! depends on no content cryptography at all (check with `cargo tree -p sealroom-relay`).
//!
//! - [`core`]: the I/O-free decisions (admission, rooms, subscriptions, forwarding, limits)
//!   that tests and benches drive without a network;
//! - [`ticket`]: minting and verifying entry tickets (HS256 JWTs);
//! - [`Relay`]: the quinn/tokio node that maps the decisions onto QUIC streams and
//!   datagrams (see `docs/TRANSPORT.md`);
//! - [`metrics`]: the Prometheus metrics of one relay.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin; // operations: admin API (ops engineer)
pub mod config;
pub mod core;
pub mod http; // operations: internal listener (ops engineer)
pub mod mask; // operations: id masking for logs (ops engineer)
pub mod metrics;
mod outbox;
pub mod ratelimit;
mod relay;
pub mod sla; // operations: join success rate (ops engineer)
pub mod ticket;
mod tls;

pub use config::{AppConfig, Limits, RelayConfig, TicketSecret, TlsConfig};
pub use core::{
    AdminError, ConnId, DropReason, JoinOutcome, MemberSummary, MemberTarget, Now, RelayCore,
    RoomKey, RoomSummary,
};
pub use metrics::{KindStats, Metrics, RelayStats};
pub use outbox::{STREAM_TYPE_MEDIA, stream_code};
pub use relay::{JoinHook, PayloadTap, Relay};
pub use ticket::{Grants, TicketClaims, TicketError, mint};
pub use tls::{ALPN, StartError, transport_config};
