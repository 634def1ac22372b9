//! Counters of what a room session sent, received, opened and dropped.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::quality::CallQuality;

/// A snapshot of a room session's counters and call quality, from
/// [`Room::stats`](crate::Room::stats) and [`Event::Stats`](crate::Event::Stats).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RoomStats {
    /// Frames sealed and handed to QUIC.
    pub frames_sent: u64,
    /// Bytes of those frames (envelope and sealed payload).
    pub bytes_sent: u64,
    /// Frames sent as datagrams.
    pub datagrams_sent: u64,
    /// Frames that could not be sent (no connection, a stream the relay stopped, a
    /// datagram that no longer fits).
    pub frames_not_sent: u64,
    /// Video groups whose stream was reset because a newer group was waiting.
    pub stale_groups_reset: u64,
    /// Frames received from the relay.
    pub frames_received: u64,
    /// Received frames that opened and verified.
    pub frames_opened: u64,
    /// Received frames that could not be opened.
    pub open_failures: u64,
    /// Received bytes that were not a well-formed frame (dropped).
    pub malformed: u64,
    /// Datagram frames dropped because the application's event queue was full.
    pub events_dropped: u64,
    /// Keyframes asked for because the relay dropped the rest of a video group this member
    /// fell behind on.
    pub keyframes_requested: u64,
    /// Audio, video and unreliable data frames dropped because the connection was down
    /// (reconnecting). Reliable data messages are not dropped: they wait in the track's
    /// bounded queue ([`ClientConfig::data_queue`](crate::ClientConfig::data_queue)) and
    /// are sent on the new connection (a message already handed to the old connection
    /// when it dropped is lost with it).
    pub frames_dropped_offline: u64,
    /// Connections lost and recovered by reconnecting.
    pub reconnects: u64,
    /// Per track and per connection quality, with the verdict (`docs/QUALITY.md`).
    pub quality: CallQuality,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) frames_sent: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) datagrams_sent: AtomicU64,
    pub(crate) frames_not_sent: AtomicU64,
    pub(crate) stale_groups_reset: AtomicU64,
    pub(crate) frames_received: AtomicU64,
    pub(crate) frames_opened: AtomicU64,
    pub(crate) open_failures: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
    pub(crate) keyframes_requested: AtomicU64,
    pub(crate) frames_dropped_offline: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

/// Add one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn sent(&self, bytes: usize, datagram: bool) {
        bump(&self.frames_sent);
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
        if datagram {
            bump(&self.datagrams_sent);
        }
    }

    pub(crate) fn snapshot(&self) -> RoomStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RoomStats {
            frames_sent: get(&self.frames_sent),
            bytes_sent: get(&self.bytes_sent),
            datagrams_sent: get(&self.datagrams_sent),
            frames_not_sent: get(&self.frames_not_sent),
            stale_groups_reset: get(&self.stale_groups_reset),
            frames_received: get(&self.frames_received),
            frames_opened: get(&self.frames_opened),
            open_failures: get(&self.open_failures),
            malformed: get(&self.malformed),
            events_dropped: get(&self.events_dropped),
            keyframes_requested: get(&self.keyframes_requested),
            frames_dropped_offline: get(&self.frames_dropped_offline),
            reconnects: get(&self.reconnects),
            quality: CallQuality::default(),
        }
    }
}
