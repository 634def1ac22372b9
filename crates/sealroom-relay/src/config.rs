//! Relay configuration: where to listen, which apps to serve with which ticket secrets, the
//! TLS identity, and every limit that bounds what a peer can make the relay hold.
//!
//! Every struct implements [`Default`] (a development node on `127.0.0.1:4433` with a
//! self-signed certificate and no apps) and `serde::Deserialize` with unknown fields refused,
//! so the `sealroom relay` command can read it from TOML. Durations are whole milliseconds
//! or seconds, named by their unit.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::mask::IdMask;

/// Everything [`crate::Relay::start`] needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// UDP address the QUIC endpoint binds (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The apps this relay serves, each with its ticket secrets.
    pub apps: Vec<AppConfig>,
    /// Bounds on rooms, members, frames, queues and rates.
    pub limits: Limits,
    /// The TLS identity the relay presents.
    pub tls: TlsConfig,
    /// How user and room ids appear in the relay's log lines (masked by default, with a
    /// per-process salt). Not read from files: the operator's config sets it.
    #[serde(skip)]
    pub id_mask: IdMask,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 4433)),
            apps: Vec::new(),
            limits: Limits::default(),
            tls: TlsConfig::default(),
            id_mask: IdMask::default(),
        }
    }
}

impl RelayConfig {
    /// Set the listen address.
    #[must_use]
    pub fn listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self
    }

    /// Serve one more app.
    #[must_use]
    pub fn app(mut self, app: AppConfig) -> Self {
        self.apps.push(app);
        self
    }

    /// Replace the limits.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Replace the TLS identity.
    #[must_use]
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// Set how user and room ids appear in log lines.
    #[must_use]
    pub fn id_mask(mut self, id_mask: IdMask) -> Self {
        self.id_mask = id_mask;
        self
    }
}

/// An app the relay serves: its id (the `app` claim of its tickets) and the secrets its
/// backend signs tickets with.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The app id.
    pub app: String,
    /// Ticket secrets by key id; several so a secret can be rotated without downtime.
    pub secrets: Vec<TicketSecret>,
}

impl AppConfig {
    /// An app with one ticket secret.
    pub fn new(app: impl Into<String>, kid: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            app: app.into(),
            secrets: vec![TicketSecret::new(kid, secret)],
        }
    }

    /// Add another secret (for rotation).
    #[must_use]
    pub fn secret(mut self, kid: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        self.secrets.push(TicketSecret::new(kid, secret));
        self
    }
}

/// One HS256 ticket secret, named by the `kid` a ticket's header carries.
///
/// The secret bytes are zeroized on drop and never printed by `Debug`. In TOML the secret is
/// a string whose UTF-8 bytes are the key.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TicketSecret {
    /// The key id.
    pub kid: String,
    /// The HMAC key.
    #[serde(with = "secret_bytes")]
    pub secret: Vec<u8>,
}

impl TicketSecret {
    /// A named secret.
    pub fn new(kid: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            kid: kid.into(),
            secret: secret.into(),
        }
    }
}

impl Drop for TicketSecret {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl fmt::Debug for TicketSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketSecret")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

mod secret_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(_: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        // Never write a secret back out (for example in an effective-config dump).
        serializer.serialize_str("<redacted>")
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() {
            return Err(serde::de::Error::custom(
                "a ticket secret must not be empty",
            ));
        }
        Ok(text.into_bytes())
    }
}

/// The TLS identity of the relay.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum TlsConfig {
    /// Generate a fresh self-signed certificate for these names at start (development);
    /// clients pin its SHA-256 ([`crate::Relay::cert_sha256`]).
    SelfSigned {
        /// Subject alternative names (DNS names or IP addresses).
        names: Vec<String>,
    },
    /// Load a PEM certificate chain and private key.
    Files {
        /// PEM file with the certificate chain, leaf first.
        cert: PathBuf,
        /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self::SelfSigned {
            names: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
        }
    }
}

/// Bounds on everything a peer can make the relay hold or do, with defaults sized for a
/// small node. See `docs/TRANSPORT.md` for the reasoning behind each default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Members in one room (default 64).
    pub max_members_per_room: usize,
    /// Rooms one app may have open at once (default 1000).
    pub max_rooms_per_app: usize,
    /// Largest encoded media frame, envelope and payload (default 256 KiB).
    pub max_frame_len: usize,
    /// Largest data message (encoded frame, reliable or not; default 64 KiB).
    pub max_data_frame_len: usize,
    /// Tracks one member may publish at once (default 8).
    pub max_tracks_per_member: usize,
    /// Simultaneous QUIC connections, joined or not (default 10 000).
    pub max_connections: usize,
    /// Simultaneous QUIC connections from one IP address (default 256).
    pub max_connections_per_ip: usize,
    /// Make every new connection prove its address with a QUIC Retry before the relay
    /// keeps any state for it (default off: it costs a round trip).
    pub address_validation: bool,
    /// Seconds a new connection has to send its `Join` (default 10).
    pub join_timeout_secs: u64,
    /// Milliseconds without any packet before a connection is dropped (default 30 000).
    pub idle_timeout_ms: u64,
    /// Milliseconds between keep-alive packets the relay sends (default 5 000).
    pub keep_alive_ms: u64,
    /// Seconds of clock skew tolerated when checking a ticket's `nbf` and `exp` (default 30).
    pub ticket_leeway_secs: u64,
    /// Unidirectional streams a client may have open towards the relay (default 256).
    pub max_incoming_streams: u32,
    /// Bytes of incomplete incoming frames one connection may have buffered over all its
    /// media streams; the stream that goes over is stopped (default 4 MiB).
    pub max_incoming_buffer_bytes: usize,
    /// Unidirectional streams one connection may open per second; a stream over the rate
    /// is refused (stopped) and counted as a `too_many_streams` violation (default 200).
    pub incoming_streams_per_sec: u32,
    /// Stream opening burst above the steady rate (default 400).
    pub incoming_streams_burst: u32,
    /// Milliseconds a frame that has started arriving (on a media or the control stream)
    /// may take to complete; a media stream that misses it is stopped, a control stream
    /// that misses it ends the connection; counted as `stalled_frame` (default 10 000).
    pub incomplete_frame_timeout_ms: u64,
    /// Milliseconds during which further keyframe requests for the same publisher track
    /// are coalesced into the one already passed on (default 500).
    pub keyframe_request_interval_ms: u64,
    /// Control messages queued towards one connection before it is removed as a slow
    /// consumer (default 256).
    pub control_queue_len: usize,
    /// Datagrams (audio, unreliable data) queued towards one connection; past it the oldest
    /// is dropped (default 64).
    pub datagram_queue_len: usize,
    /// Bytes of one video group queued towards one connection; past it the group's stream is
    /// reset and the rest of the group dropped (default 1 MiB).
    pub video_group_queue_bytes: usize,
    /// Bytes of video queued towards one connection over all its groups; a group that
    /// would go over is reset like one over its own bound (default 8 MiB).
    pub video_queue_bytes: usize,
    /// Video groups of one track open at once towards one connection; opening another
    /// resets the oldest (default 3).
    pub max_open_groups_per_track: usize,
    /// Bytes of reliable data queued towards one connection; past it the member is removed
    /// with `SlowConsumer` (default 1 MiB).
    pub reliable_queue_bytes: usize,
    /// Audio frames too large for a datagram in flight towards one connection, each on its
    /// own stream; past it they are dropped (default 32).
    pub max_audio_streams: usize,
    /// Data messages per second one member may send, reliable or not (default 30).
    pub data_messages_per_sec: u32,
    /// Data message burst above the steady rate (default 60).
    pub data_messages_burst: u32,
    /// Data bytes per second one member may send (default 16 KiB).
    pub data_bytes_per_sec: u32,
    /// Data byte burst above the steady rate (default 64 KiB).
    pub data_bytes_burst: u32,
    /// Audio and video bytes per second one member may send (default 4 MB).
    pub media_bytes_per_sec: u32,
    /// Media byte burst above the steady rate (default 8 MB).
    pub media_bytes_burst: u32,
    /// Control messages per second one member may send (default 50, burst 100).
    pub control_messages_per_sec: u32,
    /// Joins per second one app may receive (default 200, burst 400).
    pub joins_per_app_per_sec: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_members_per_room: 64,
            max_rooms_per_app: 1000,
            max_frame_len: 256 * 1024,
            max_data_frame_len: 64 * 1024,
            max_tracks_per_member: 8,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            address_validation: false,
            join_timeout_secs: 10,
            idle_timeout_ms: 30_000,
            keep_alive_ms: 5_000,
            ticket_leeway_secs: 30,
            max_incoming_streams: 256,
            max_incoming_buffer_bytes: 4 * 1024 * 1024,
            incoming_streams_per_sec: 200,
            incoming_streams_burst: 400,
            incomplete_frame_timeout_ms: 10_000,
            keyframe_request_interval_ms: 500,
            control_queue_len: 256,
            datagram_queue_len: 64,
            video_group_queue_bytes: 1024 * 1024,
            video_queue_bytes: 8 * 1024 * 1024,
            max_open_groups_per_track: 3,
            reliable_queue_bytes: 1024 * 1024,
            max_audio_streams: 32,
            data_messages_per_sec: 30,
            data_messages_burst: 60,
            data_bytes_per_sec: 16 * 1024,
            data_bytes_burst: 64 * 1024,
            media_bytes_per_sec: 4_000_000,
            media_bytes_burst: 8_000_000,
            control_messages_per_sec: 50,
            joins_per_app_per_sec: 200,
        }
    }
}

impl Limits {
    /// The join timeout as a duration.
    pub fn join_timeout(&self) -> Duration {
        Duration::from_secs(self.join_timeout_secs)
    }

    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// The keep-alive interval as a duration.
    pub fn keep_alive(&self) -> Duration {
        Duration::from_millis(self.keep_alive_ms)
    }

    /// The incomplete frame timeout as a duration.
    pub fn incomplete_frame_timeout(&self) -> Duration {
        Duration::from_millis(self.incomplete_frame_timeout_ms)
    }

    /// The keyframe request interval as a duration.
    pub fn keyframe_request_interval(&self) -> Duration {
        Duration::from_millis(self.keyframe_request_interval_ms)
    }

    /// Limits with every rate limit lifted (for load tests and benches).
    #[must_use]
    pub fn unlimited_rates(mut self) -> Self {
        self.data_messages_per_sec = u32::MAX;
        self.data_messages_burst = u32::MAX;
        self.data_bytes_per_sec = u32::MAX;
        self.data_bytes_burst = u32::MAX;
        self.media_bytes_per_sec = u32::MAX;
        self.media_bytes_burst = u32::MAX;
        self.control_messages_per_sec = u32::MAX;
        self.joins_per_app_per_sec = u32::MAX;
        self.incoming_streams_per_sec = u32::MAX;
        self.incoming_streams_burst = u32::MAX;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let app = AppConfig::new("app", "k1", b"hunter2hunter2".to_vec());
        let text = format!("{app:?}");
        assert!(text.contains("k1"));
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn limits_deserialize_partially_and_refuse_unknown_keys() {
        let limits: Limits =
            serde_json::from_str(r#"{"max_members_per_room": 3}"#).expect("valid limits");
        assert_eq!(limits.max_members_per_room, 3);
        assert_eq!(
            limits.max_rooms_per_app,
            Limits::default().max_rooms_per_app
        );
        let err = serde_json::from_str::<Limits>(r#"{"max_member_per_room": 3}"#)
            .expect_err("unknown key refused");
        assert!(err.to_string().contains("max_member_per_room"));
    }
}
