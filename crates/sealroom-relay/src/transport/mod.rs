//! The relay's transport layer: the policies of what goes in and out of a connection,
//! decided without I/O, and the quinn/tokio driver that carries those decisions out.
//!
//! - [`ingress`]: what a client sends: the media stream's type byte and framing, the
//!   deadline of a frame in progress (slowloris), the connection's budget of bytes held in
//!   incomplete frames, and which video group a stream carries;
//! - `egress`: what the relay sends towards one connection: the bounded queues per kind,
//!   drop-oldest audio, stale video groups, the reliable-data bound, slow consumers, and the
//!   byte accounting; it returns actions (open, wake, write, finish, reset, drop);
//! - `outbox`: the driver: one per connection, with its writer tasks, carrying out what
//!   the egress decides on quinn's streams and datagrams, and counting it in the metrics;
//! - `batch`: the endpoint's UDP socket, which gathers the packets many connections send in
//!   one fan-out into one `sendmmsg`;
//! - [`webtransport`]: browsers on the same endpoint: the ALPN decides, an `h3` connection
//!   becomes a WebTransport session and is then served like a native one.

pub(crate) mod batch;
pub(crate) mod egress;
pub mod ingress;
pub(crate) mod outbox;
pub mod webtransport;

pub(crate) use egress::{Forwarded, Pushed};
pub(crate) use outbox::Outbox;
