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

pub use sealroom_ticket::{AppConfig, TicketSecret};
use serde::{Deserialize, Serialize};

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
    /// When a new connection must prove its address with a QUIC Retry (one round trip)
    /// before the relay keeps any state for it: `auto` (default) asks for it while
    /// `retry_above_half_open` or more connections are half-open, `always` asks every
    /// connection, `off` never (`true` and `false` are read as `always` and `off`).
    pub address_validation: AddressValidation,
    /// Half-open connections (from their first packet until `Join` is decided) the relay
    /// holds at once; past it new handshakes are refused and counted (default 256).
    pub max_half_open: usize,
    /// With `address_validation = "auto"`, the number of half-open connections from which
    /// on handshakes from unvalidated addresses get a Retry (default 16).
    pub retry_above_half_open: usize,
    /// Seconds a new connection has from its first packet to its `Join`: handshake, control
    /// stream and `Join` together (default 10).
    pub join_timeout_secs: u64,
    /// Bytes a connection may send before it has joined (QUIC connection receive window
    /// until `Join` is admitted; no media stream may be opened before); at least 66 KiB so
    /// the largest `Join` fits (default 80 KiB).
    pub pre_join_window_bytes: u32,
    /// Resident memory of the whole node, in MiB, above which the relay refuses new work
    /// (handshakes and joins are refused with `Overloaded`) until it is back below; `0`
    /// turns the ceiling off (default 2048). Read from `/proc/self/statm` (Linux).
    pub max_memory_mb: u64,
    /// Milliseconds without any packet before a connection is dropped (default 30 000).
    pub idle_timeout_ms: u64,
    /// Milliseconds between keep-alive packets the relay sends (default 5 000).
    pub keep_alive_ms: u64,
    /// Packets of different connections the relay gathers into one `sendmmsg` system call
    /// (at most 1024); a batch is sent when the tasks of one fan-out have run or when it is
    /// full, never on a timer. `0` or `1` (the default) sends each packet on its own, as
    /// quinn does: on loopback batching cut the system calls about 36-fold but not the CPU
    /// measurably (`docs/TRANSPORT.md`).
    pub send_batch_packets: usize,
    /// Ack-eliciting packets a member's client may receive before it must acknowledge,
    /// asked of every client that supports QUIC's ACK-frequency extension (quinn-based
    /// clients do); `0` asks nothing, and clients acknowledge every second packet as QUIC
    /// does by default. Fewer ACKs are fewer packets for the relay to read; the longest a
    /// client then waits is `max_ack_delay_ms`.
    pub ack_eliciting_threshold: u32,
    /// With `ack_eliciting_threshold` above 0: the longest a client may hold an ACK, in
    /// milliseconds; quinn asks for at most the larger of the path's RTT and 25 ms of it,
    /// so loss recovery is never delayed by more than about one RTT.
    pub max_ack_delay_ms: u64,
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
    /// Milliseconds a `Leave` waits for the member's streams that may carry reliable data
    /// to be read to their end, so that messages sent before leaving are forwarded
    /// (default 1 000; 0 leaves at once).
    pub leave_drain_ms: u64,
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
    /// Video groups of one track the relay remembers towards one connection (open or
    /// finished); a newer group finishes or resets the oldest remembered, and a group older
    /// than all of them is dropped as late (default 3).
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
    /// Joins per second one app may receive (default 200, burst 400); past it joins are
    /// refused with `Overloaded`, which counts against the join success rate.
    pub joins_per_app_per_sec: u32,
    /// Join attempts per second one user of one app may make (default 2); past it (and the
    /// burst) the attempt is refused with `RateLimited` before it costs the app's budget.
    pub joins_per_user_per_sec: u32,
    /// Join attempt burst of one user above the steady rate (default 5).
    pub joins_per_user_burst: u32,
    /// Join attempts per second from one source address (IPv4 address, or IPv6 /64) (default
    /// 50); past it (and the burst) the attempt is refused with `RateLimited`.
    pub joins_per_address_per_sec: u32,
    /// Join attempt burst of one source address above the steady rate (default 100).
    pub joins_per_address_burst: u32,
    /// Users and addresses whose join rate the relay remembers at once (each table); when a
    /// table is full and no entry can be forgotten, further joins are refused with
    /// `Overloaded` (default 65 536).
    pub join_limiter_entries: usize,
    /// Forged or malformed frames (another member's sender id, a frame before `Join`,
    /// bytes that do not decode, a track used as another kind) one connection may send per
    /// second; past it and the burst it is removed with `ProtocolViolation`, counted as the
    /// `bad_frames` violation (default 20).
    pub bad_frames_per_sec: u32,
    /// Forged or malformed frame burst above the steady rate (default 200).
    pub bad_frames_burst: u32,
    /// Most bytes of MLS data (a commit and its group info, or a published group info) one
    /// MLS message may carry (default 60 KiB, at most what a control message holds);
    /// more is refused with `MlsRefused { reason: TooLarge }`. It also bounds the group
    /// info the relay keeps per room.
    pub max_mls_message_len: usize,
    /// Largest group info (bytes) the relay takes in pieces (`MlsGroupInfoPart` before an
    /// `MlsPublish` or `MlsCommit`) and keeps per room (default 512 KiB, about 2,000 MLS
    /// members at some 260 bytes each); more is refused with `MlsRefused { reason:
    /// TooLarge }`. Each member's pieces in waiting are bounded by it too, so a node holds at
    /// most this much per room plus this much per member sending pieces.
    pub max_mls_group_info_len: usize,
    /// Longest user id (bytes) a ticket may carry; a longer one is refused with `BadTicket`
    /// (default 256). Bounds the roster in `Joined`.
    pub max_user_id_len: usize,
    /// Longest ticket lifetime (`exp` minus the time of the join or refresh) accepted, in
    /// seconds; a ticket that lives longer is refused with `BadTicket`. `0` accepts any
    /// (default 0).
    pub max_ticket_lifetime_secs: u64,
}

/// When the relay asks a new connection to prove its address with a QUIC Retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressValidation {
    /// While `retry_above_half_open` or more connections are half-open (a handshake flood,
    /// spoofed or not); otherwise no extra round trip.
    #[default]
    Auto,
    /// Every new connection (one round trip more for everyone).
    Always,
    /// Never: a flood of spoofed handshakes fills the half-open budget.
    Off,
}

impl AddressValidation {
    /// The config spelling.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Always => "always",
            Self::Off => "off",
        }
    }
}

impl Serialize for AddressValidation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.label())
    }
}

impl<'de> Deserialize<'de> for AddressValidation {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Word(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Flag(true) => Ok(Self::Always),
            Raw::Flag(false) => Ok(Self::Off),
            Raw::Word(word) => match word.as_str() {
                "auto" => Ok(Self::Auto),
                "always" | "true" => Ok(Self::Always),
                "off" | "false" => Ok(Self::Off),
                other => Err(serde::de::Error::custom(format!(
                    "address_validation is `auto`, `always` or `off`, not `{other}`"
                ))),
            },
        }
    }
}

/// A limit out of its range, found when the configuration is loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit `{key}` = {value}: {reason}")]
pub struct LimitsError {
    /// The limit's name.
    pub key: &'static str,
    /// The value given.
    pub value: String,
    /// The range it must be in.
    pub reason: &'static str,
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
            address_validation: AddressValidation::Auto,
            max_half_open: 256,
            retry_above_half_open: 16,
            join_timeout_secs: 10,
            pre_join_window_bytes: 80 * 1024,
            max_memory_mb: 2048,
            idle_timeout_ms: 30_000,
            keep_alive_ms: 5_000,
            send_batch_packets: 0,
            ack_eliciting_threshold: 0,
            max_ack_delay_ms: 100,
            ticket_leeway_secs: 30,
            max_incoming_streams: 256,
            max_incoming_buffer_bytes: 4 * 1024 * 1024,
            incoming_streams_per_sec: 200,
            incoming_streams_burst: 400,
            incomplete_frame_timeout_ms: 10_000,
            keyframe_request_interval_ms: 500,
            leave_drain_ms: 1_000,
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
            joins_per_user_per_sec: 2,
            joins_per_user_burst: 5,
            joins_per_address_per_sec: 50,
            joins_per_address_burst: 100,
            join_limiter_entries: 65_536,
            bad_frames_per_sec: 20,
            bad_frames_burst: 200,
            max_mls_message_len: 60 * 1024,
            max_mls_group_info_len: 512 * 1024,
            max_user_id_len: 256,
            max_ticket_lifetime_secs: 0,
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

    /// The leave drain as a duration.
    pub fn leave_drain(&self) -> Duration {
        Duration::from_millis(self.leave_drain_ms)
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
        self.joins_per_user_per_sec = u32::MAX;
        self.joins_per_user_burst = u32::MAX;
        self.joins_per_address_per_sec = u32::MAX;
        self.joins_per_address_burst = u32::MAX;
        self
    }

    /// Check every limit against its range, so that a typo cannot make the relay refuse
    /// everything or overflow a deadline.
    ///
    /// # Errors
    /// [`LimitsError`] naming the first limit out of range.
    // Long by design: one flat range check per limit, in the order of the struct, so a new
    // limit is checked by adding one line beside its neighbours.
    pub fn validate(&self) -> Result<(), LimitsError> {
        const DAY_SECS: u64 = 24 * 3600;
        fn check(
            ok: bool,
            key: &'static str,
            value: impl fmt::Display,
            reason: &'static str,
        ) -> Result<(), LimitsError> {
            if ok {
                Ok(())
            } else {
                Err(LimitsError {
                    key,
                    value: value.to_string(),
                    reason,
                })
            }
        }
        let positive = "must be at least 1";
        for (key, value) in [
            ("max_members_per_room", self.max_members_per_room),
            ("max_rooms_per_app", self.max_rooms_per_app),
            ("max_tracks_per_member", self.max_tracks_per_member),
            ("max_connections", self.max_connections),
            ("max_connections_per_ip", self.max_connections_per_ip),
            ("max_half_open", self.max_half_open),
            ("control_queue_len", self.control_queue_len),
            ("datagram_queue_len", self.datagram_queue_len),
            ("max_open_groups_per_track", self.max_open_groups_per_track),
            ("join_limiter_entries", self.join_limiter_entries),
            ("max_user_id_len", self.max_user_id_len),
        ] {
            check(value >= 1, key, value, positive)?;
        }
        for (key, value) in [
            ("joins_per_app_per_sec", self.joins_per_app_per_sec),
            ("joins_per_user_per_sec", self.joins_per_user_per_sec),
            ("joins_per_address_per_sec", self.joins_per_address_per_sec),
            ("control_messages_per_sec", self.control_messages_per_sec),
            ("data_messages_per_sec", self.data_messages_per_sec),
            ("incoming_streams_per_sec", self.incoming_streams_per_sec),
            ("bad_frames_per_sec", self.bad_frames_per_sec),
        ] {
            check(value >= 1, key, value, positive)?;
        }
        check(
            (1024..=sealroom_frame::control::MAX_CONTROL_LEN - 1024)
                .contains(&self.max_mls_message_len),
            "max_mls_message_len",
            self.max_mls_message_len,
            "must be between 1 KiB and 63 KiB (a control message holds 64 KiB)",
        )?;
        check(
            (self.max_mls_message_len..=16 * 1024 * 1024).contains(&self.max_mls_group_info_len),
            "max_mls_group_info_len",
            self.max_mls_group_info_len,
            "must be between max_mls_message_len and 16 MiB",
        )?;
        check(
            (1024..=16 * 1024 * 1024).contains(&self.max_frame_len),
            "max_frame_len",
            self.max_frame_len,
            "must be between 1 KiB and 16 MiB",
        )?;
        check(
            (1..=DAY_SECS).contains(&self.join_timeout_secs),
            "join_timeout_secs",
            self.join_timeout_secs,
            "must be between 1 and 86400 seconds",
        )?;
        check(
            (100..=DAY_SECS * 1000).contains(&self.idle_timeout_ms),
            "idle_timeout_ms",
            self.idle_timeout_ms,
            "must be between 100 ms and one day",
        )?;
        check(
            self.keep_alive_ms <= DAY_SECS * 1000,
            "keep_alive_ms",
            self.keep_alive_ms,
            "must be at most one day (0 turns keep-alives off)",
        )?;
        check(
            self.send_batch_packets <= crate::transport::batch::MAX_BATCH_PACKETS,
            "send_batch_packets",
            self.send_batch_packets,
            "must be at most 1024 (0 or 1 sends each packet on its own)",
        )?;
        check(
            self.ack_eliciting_threshold <= 1000,
            "ack_eliciting_threshold",
            self.ack_eliciting_threshold,
            "must be at most 1000 (0 asks clients for nothing)",
        )?;
        check(
            (1..=1000).contains(&self.max_ack_delay_ms),
            "max_ack_delay_ms",
            self.max_ack_delay_ms,
            "must be between 1 and 1000 ms",
        )?;
        check(
            (1..=DAY_SECS * 1000).contains(&self.incomplete_frame_timeout_ms),
            "incomplete_frame_timeout_ms",
            self.incomplete_frame_timeout_ms,
            "must be between 1 ms and one day",
        )?;
        check(
            self.leave_drain_ms <= 60_000,
            "leave_drain_ms",
            self.leave_drain_ms,
            "must be at most one minute (0 leaves at once)",
        )?;
        check(
            self.keyframe_request_interval_ms <= DAY_SECS * 1000,
            "keyframe_request_interval_ms",
            self.keyframe_request_interval_ms,
            "must be at most one day",
        )?;
        check(
            self.ticket_leeway_secs <= DAY_SECS,
            "ticket_leeway_secs",
            self.ticket_leeway_secs,
            "must be at most one day",
        )?;
        check(
            self.max_ticket_lifetime_secs <= 366 * DAY_SECS,
            "max_ticket_lifetime_secs",
            self.max_ticket_lifetime_secs,
            "must be at most a year (0 accepts any lifetime)",
        )?;
        check(
            self.max_memory_mb <= 1 << 30,
            "max_memory_mb",
            self.max_memory_mb,
            "must be at most 2^30 MiB (0 turns the ceiling off)",
        )?;
        let min_window = MIN_PRE_JOIN_WINDOW;
        check(
            (min_window..=16 * 1024 * 1024).contains(&self.pre_join_window_bytes),
            "pre_join_window_bytes",
            self.pre_join_window_bytes,
            "must be between 66 KiB (the largest Join) and 16 MiB",
        )?;
        check(
            self.max_user_id_len <= MAX_USER_ID_LEN,
            "max_user_id_len",
            self.max_user_id_len,
            "must be at most 1024 bytes",
        )?;
        check(
            roster_entry_fits(self.max_tracks_per_member),
            "max_tracks_per_member",
            self.max_tracks_per_member,
            "a member with every track must fit one control message",
        )?;
        Ok(())
    }
}

/// Smallest pre-join receive window: the largest control message and its framing.
pub const MIN_PRE_JOIN_WINDOW: u32 = 66 * 1024;

/// Largest `max_user_id_len` accepted.
pub const MAX_USER_ID_LEN: usize = 1024;

/// Whether one roster entry (the largest user id, every track) fits one control message
/// with room to spare; a roster as a whole is split over several messages when it does
/// not fit one.
fn roster_entry_fits(tracks: usize) -> bool {
    // An entry: member id, user id and one (track id, kind) pair per track, each a few
    // bytes in the wire encoding.
    MAX_USER_ID_LEN
        .saturating_add(tracks.saturating_mul(8))
        .saturating_add(64)
        <= sealroom_frame::control::MAX_CONTROL_LEN / 2
        && MAX_USER_ID_LEN < sealroom_frame::control::MAX_CONTROL_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

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
