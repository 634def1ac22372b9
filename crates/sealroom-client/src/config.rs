//! Client configuration: how to trust the relay and the bounds of every internal queue.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use sealroom_tls::{PinParseError, Trust};

/// How to join one room, for [`Client::join_with`](crate::Client::join_with) (sent to the
/// relay as the `Join` message's options).
///
/// ```
/// use sealroom_client::JoinConfig;
///
/// // Refuse (with `ErrorCode::WrongRoom`) a ticket that names any room but "standup".
/// let options = JoinConfig::default().room("standup");
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinConfig {
    pub(crate) room: Option<String>,
    pub(crate) auto_subscribe: bool,
}

impl Default for JoinConfig {
    fn default() -> Self {
        Self {
            room: None,
            auto_subscribe: true,
        }
    }
}

impl JoinConfig {
    /// The room the application means to enter: the relay refuses a ticket that names
    /// another one with [`ErrorCode::WrongRoom`](crate::ErrorCode::WrongRoom). Without it
    /// the client enters whatever room its ticket names.
    #[must_use]
    pub fn room(mut self, room: impl Into<String>) -> Self {
        self.room = Some(room.into());
        self
    }

    /// Receive every track of every member without subscribing to each (default on).
    #[must_use]
    pub fn auto_subscribe(mut self, on: bool) -> Self {
        self.auto_subscribe = on;
        self
    }
}

/// Everything a [`Client`](crate::Client) needs to know before it connects.
///
/// Every queue the client keeps is bounded, and the bounds are here. Setters chain:
///
/// ```
/// use sealroom_client::{ClientConfig, Trust};
///
/// let config = ClientConfig::new(Trust::SystemRoots)
///     .event_queue(1024)
///     .media_queue(64);
/// assert_eq!(config.event_queue_len(), 1024);
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) trust: Trust,
    pub(crate) bind: SocketAddr,
    pub(crate) event_queue: usize,
    pub(crate) media_queue: usize,
    pub(crate) data_queue: usize,
    pub(crate) control_queue: usize,
    pub(crate) max_frame_len: usize,
    pub(crate) max_incoming_streams: u32,
    pub(crate) max_roster: usize,
    pub(crate) max_remote_tracks: usize,
    pub(crate) keep_alive: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) leave_timeout: Duration,
    pub(crate) client_name: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_initial: Duration,
    pub(crate) reconnect_max_delay: Duration,
    pub(crate) reconnect_max_attempts: u32,
    pub(crate) reconnect_give_up_after: Duration,
    pub(crate) stats_interval: Option<Duration>,
    pub(crate) forgery_threshold: Option<u64>,
}

impl ClientConfig {
    /// A configuration with the given trust and default bounds.
    pub fn new(trust: Trust) -> Self {
        Self {
            trust,
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            event_queue: 4096,
            media_queue: 256,
            data_queue: 1024,
            control_queue: 64,
            max_frame_len: 256 * 1024,
            max_incoming_streams: 1024,
            max_roster: 1024,
            max_remote_tracks: 4096,
            keep_alive: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            leave_timeout: Duration::from_secs(2),
            client_name: String::from("sealroom-client"),
            connect_timeout: Duration::from_secs(5),
            reconnect_initial: Duration::from_millis(250),
            reconnect_max_delay: Duration::from_secs(10),
            reconnect_max_attempts: 20,
            reconnect_give_up_after: Duration::from_secs(120),
            stats_interval: Some(Duration::from_secs(2)),
            forgery_threshold: None,
        }
    }

    /// Local UDP address to bind (default `0.0.0.0:0`; use `[::]:0` for IPv6 relays).
    #[must_use]
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Events buffered for the application before the client applies backpressure
    /// (streams) or drops and counts (datagrams). Default 4096.
    #[must_use]
    pub fn event_queue(mut self, len: usize) -> Self {
        self.event_queue = len.max(1);
        self
    }

    /// Audio and video frames buffered per track before `send` reports
    /// [`PublishError::QueueFull`](crate::PublishError::QueueFull). Default 256.
    #[must_use]
    pub fn media_queue(mut self, len: usize) -> Self {
        self.media_queue = len.max(1);
        self
    }

    /// Data messages buffered per track; reliable sends wait for room. Default 1024.
    #[must_use]
    pub fn data_queue(mut self, len: usize) -> Self {
        self.data_queue = len.max(1);
        self
    }

    /// Control messages buffered towards the relay. Default 64.
    #[must_use]
    pub fn control_queue(mut self, len: usize) -> Self {
        self.control_queue = len.max(1);
        self
    }

    /// Largest encoded frame (envelope and sealed payload) the client accepts from the
    /// relay; the smaller of this and the relay's announced limit applies. Default 256 KiB.
    #[must_use]
    pub fn max_frame_len(mut self, len: usize) -> Self {
        self.max_frame_len = len;
        self
    }

    /// Incoming unidirectional streams open at once (video groups, data tracks, large
    /// audio frames of all members). Default 1024.
    #[must_use]
    pub fn max_incoming_streams(mut self, count: u32) -> Self {
        self.max_incoming_streams = count;
        self
    }

    /// Members the client tracks in its roster; announcements beyond it are ignored. It
    /// also bounds how many members that left keep their user id for
    /// [`Room::user_of`](crate::Room::user_of). Default 1024.
    #[must_use]
    pub fn max_roster(mut self, len: usize) -> Self {
        self.max_roster = len;
        self
    }

    /// Sending sessions (tracks of other members) whose keys and replay windows the client
    /// holds at once; the least recently used is retired beyond it. Default 4096.
    #[must_use]
    pub fn max_remote_tracks(mut self, count: usize) -> Self {
        self.max_remote_tracks = count.max(1);
        self
    }

    /// QUIC keep-alive interval: the client sends a packet at least this often, so a quiet
    /// member is not mistaken for a lost one. Keep it well below the idle timeout (a lost
    /// keep-alive must not end the connection). Default 2 s.
    #[must_use]
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = interval;
        self
    }

    /// Silence after which the connection counts as lost, and the client rejoins (at the
    /// next relay of its list, in a cluster). The relay's `idle_timeout_ms` also bounds it:
    /// the smaller of the two applies. Default 10 s: a member of a relay that died is back
    /// in a room within about that time; lower it for faster failover, raise it for links
    /// that go silent for longer (the keep-alive stays below it).
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long [`Room::leave`](crate::Room::leave) waits for its reliable data to be
    /// acknowledged and for the relay to close the connection before closing it itself.
    /// Default 2 s.
    #[must_use]
    pub fn leave_timeout(mut self, timeout: Duration) -> Self {
        self.leave_timeout = timeout;
        self
    }

    /// The client software name sent with the join (for the relay's logs).
    #[must_use]
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = name.into();
        self
    }

    /// How long one connection attempt (QUIC handshake and join) may take, on the first
    /// join and on every rejoin, before it fails with
    /// [`JoinError::Unreachable`](crate::JoinError::Unreachable) (nothing answered) or
    /// [`JoinError::NoAnswer`](crate::JoinError::NoAnswer) (no answer to the join).
    /// Default 5 s.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Backoff between reconnect attempts after a lost connection: the first wait is
    /// `initial`, each failed attempt doubles it up to `max`, and every wait is jittered
    /// (a random 50 to 100 % of it) so that the members of a restarted relay do not all
    /// come back at once. Defaults 250 ms and 10 s.
    #[must_use]
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect_initial = initial;
        self.reconnect_max_delay = max.max(initial);
        self
    }

    /// Reconnect attempts after one lost connection before the session ends with
    /// [`DisconnectReason::GaveUp`](crate::DisconnectReason::GaveUp); 0 turns reconnecting
    /// off (a lost connection ends the session). Default 20. Whichever of this and
    /// [`reconnect_give_up_after`](Self::reconnect_give_up_after) comes first ends the
    /// attempts. An attempt that fails for good (the relay refuses the ticket, the
    /// certificate is not the pinned one) ends the session at once.
    #[must_use]
    pub fn reconnect_attempts(mut self, attempts: u32) -> Self {
        self.reconnect_max_attempts = attempts;
        self
    }

    /// Time after a lost connection past which no new reconnect attempt starts, whatever
    /// the attempt count ([`reconnect_attempts`](Self::reconnect_attempts)). Default 120 s.
    #[must_use]
    pub fn reconnect_give_up_after(mut self, limit: Duration) -> Self {
        self.reconnect_give_up_after = limit;
        self
    }

    /// How often the room reports [`Event::Stats`](crate::Event::Stats); `None` turns the
    /// reports off ([`Room::stats`](crate::Room::stats) still answers, its rates then
    /// covering the time since the previous call). Default every 2 s; at least 100 ms.
    #[must_use]
    pub fn stats_interval(mut self, interval: Option<Duration>) -> Self {
        self.stats_interval = interval.map(|every| every.max(Duration::from_millis(100)));
        self
    }

    /// Frames from one sender that may fail authentication before the client blocks the
    /// sender: its frames (and its user's, under any member id) are then dropped unopened,
    /// and [`Event::SenderBlocked`](crate::Event::SenderBlocked) says so. `None` (the
    /// default) only counts them ([`ForgeryStats`](crate::ForgeryStats)).
    ///
    /// Any member holding the room secret can forge frames that name another member
    /// (symmetric keys), but the relay checks that a frame's sender is the connection's
    /// member, so failures name the member that sent them. With the 32-bit-tag suite a
    /// forger succeeds once in 2^32 attempts: a threshold keeps it far from that.
    #[must_use]
    pub fn forgery_threshold(mut self, failures: Option<u64>) -> Self {
        self.forgery_threshold = failures.map(|n| n.max(1));
        self
    }

    /// The configured trust.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The configured event queue length.
    pub fn event_queue_len(&self) -> usize {
        self.event_queue
    }
}
