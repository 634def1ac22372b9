//! The sealroom relay node as a library: admission with signed tickets, rooms isolated per
//! app and room id, fan-out of sealed frames over QUIC, limits and metrics.
//!
//! The relay reads only the media envelope of each frame (kind, sender, track, group,
//! sequence, flags); the payload is an SFrame ciphertext it cannot open, because this crate
//! depends on no content cryptography at all (check with `cargo tree -p sealroom-relay`).
//!
//! The crate is built in layers, from the inside out:
//!
//! - **engine** ([`engine`], [`ratelimit`], [`ticket`]): the I/O-free decisions
//!   (admission, rooms, subscriptions, forwarding, limits, timers) that tests and benches
//!   drive without a network, with [`RelayCore`] as its front door; tickets (HS256 JWTs) come from the `sealroom-ticket` crate, which an app
//!   backend links alone to mint them;
//! - **transport** ([`transport`], [`Relay`], [`gate`], [`config`]): what goes in and out
//!   of a connection, decided without I/O (the media stream reader and frame deadline in
//!   [`transport::ingress`], also reachable as [`incoming`]; the outbound queues and the
//!   slow-receiver policy in [`transport::egress`]), the quinn/tokio driver that carries it
//!   out on QUIC streams and datagrams (see `docs/TRANSPORT.md`), and which handshakes it
//!   takes on, asks to prove their address (Retry) or refuses; it records into the
//!   operations layer's metrics and masks ids with its id mask;
//! - **node** ([`node`]): a whole node as an operator runs it, embeddable in any binary:
//!   the node configuration (TOML, flags and `SEALROOM_*` variables with the `cli`
//!   feature), [`node::Node::load`] to start the relay with its internal listener and SLA,
//!   [`node::Node::run`] to serve until SIGTERM, Ctrl-C or a [`node::NodeHandle`] and drain;
//! - **operations** ([`ops`]): what an operator sees and steers: [`metrics`] (Prometheus),
//!   [`http`] (the internal listener), [`admin`] (the admin API), [`sla`] (join success
//!   rate), [`mask`] (id masking in logs); each is also reachable at the crate root.
//!
//! # Running a relay and minting a ticket
//!
//! ```
//! use sealroom_relay::{AppConfig, Grants, Relay, RelayConfig, TicketClaims, mint};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let runtime = tokio::runtime::Runtime::new()?;
//! # runtime.block_on(async {
//! // One app, one ticket secret (key id "k1"); port 0 picks a free port.
//! let config = RelayConfig::default()
//!     .listen("127.0.0.1:0".parse()?)
//!     .app(AppConfig::new("my-app", "k1", b"a long random secret".to_vec()));
//! let relay = Relay::start(config).await?;
//! // Clients of a development relay pin its self-signed certificate.
//! let pin = relay.cert_sha256();
//! # let _ = pin;
//!
//! // The app's backend mints a ticket for one user and one room.
//! let now = 1_800_000_000; // seconds since the Unix epoch
//! let claims = TicketClaims::new("my-app", "alice", "room-1", now, 3600, Grants::all());
//! let ticket = mint(&claims, "k1", b"a long random secret")?;
//! assert_eq!(ticket.split('.').count(), 3);
//!
//! println!("relay on {}", relay.local_addr());
//! relay.shutdown().await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```
//!
//! # Deciding without a network
//!
//! ```
//! use std::time::Instant;
//!
//! use sealroom_frame::control::JoinOptions;
//! use sealroom_frame::envelope::{Envelope, Flags, MediaKind};
//! use sealroom_relay::{AppConfig, ConnId, Grants, JoinOutcome, Limits, Now, RelayCore};
//! use sealroom_relay::{TicketClaims, mint};
//!
//! let now = Now { instant: Instant::now(), unix_secs: 1_800_000_000 };
//! let apps = [AppConfig::new("my-app", "k1", b"secret".to_vec())];
//! let mut core = RelayCore::new(&apps, Limits::default(), now.instant);
//! let options = JoinOptions { auto_subscribe: true, room: None };
//! let mut join = |core: &mut RelayCore, conn: ConnId, user: &str| {
//!     let claims = TicketClaims::new("my-app", user, "room-1", now.unix_secs, 60, Grants::all());
//!     let ticket = mint(&claims, "k1", b"secret").unwrap();
//!     core.handle_connect(conn, now);
//!     core.handle_join(conn, &ticket, &options, now)
//! };
//! assert_eq!(join(&mut core, ConnId(1), "alice"), JoinOutcome::Joined);
//! assert_eq!(join(&mut core, ConnId(2), "bob"), JoinOutcome::Joined);
//!
//! // Alice (member 1) sends a frame: it goes to Bob's connection only.
//! let envelope = Envelope {
//!     kind: MediaKind::Audio,
//!     flags: Flags::empty(),
//!     sender: 1,
//!     track: 1,
//!     group: 0,
//!     seq: 0,
//!     timestamp_us: 0,
//! };
//! assert_eq!(core.handle_frame(ConnId(1), &envelope, 100, now), Ok(&[ConnId(2)][..]));
//!
//! // The next deadline is the tickets' expiry: a driver sleeps until then (or the next
//! // input) and calls `handle_timeout` with the time.
//! let deadline = core.poll_timeout().expect("a ticket expires");
//! assert!(deadline > now.instant);
//! assert_eq!(core.handle_timeout(now).tickets_expired, 0);
//!
//! // The control messages to send (Joined, MemberJoined, TrackPublished) come out in order.
//! while let Some(output) = core.poll_output() {
//!     println!("{output:?}");
//! }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cluster;
pub mod config;
pub mod engine;
pub mod gate;
pub mod node;
pub mod ops;
pub mod ratelimit;
mod relay;
pub mod ticket;
mod tls;
pub mod transport;

pub use transport::ingress as incoming;

// The operations modules keep their paths at the crate root too.
use ops::listener;
pub use ops::{admin, http, mask, metrics, quality, sla, sla_store};

pub use config::{
    AddressValidation, AppConfig, Limits, LimitsError, RelayConfig, TicketSecret, TlsConfig,
};
pub use engine::{
    AdminError, CascadeError, CascadeEvent, CheckedControl, ConnId, ControlOutcome, DropReason,
    JoinOutcome, KeyframeOutcome, MemberSummary, MemberTarget, Now, Output, RelayCore, RoomKey,
    RoomSummary, TimeoutOutcome, VerifiedTicket, Violation,
};
pub use gate::{HandshakeStats, Refusal};
pub use metrics::{KeyframeSource, KeyframeStats, KindStats, Metrics, RelayStats};
pub use relay::{JoinHook, PayloadTap, Relay};
pub use ticket::{Grants, TicketClaims, TicketError, TicketVerifier, VerifyError, mint};
pub use tls::{
    SELF_SIGNED_VALIDITY, StartError, UDP_SOCKET_BUFFER, self_signed_pem, transport_config,
    udp_socket,
};
pub use transport::webtransport::{WEB_ALPN, WEB_PATH, WebSessionError, WebStats};
