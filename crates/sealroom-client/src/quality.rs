//! Call quality as the client sees it: per track frame and byte rates, frames lost on the
//! way (sequence gaps), frames dropped here and why, interarrival jitter against the
//! sender's capture timestamps (RFC 3550, section 6.4.1), keyframe requests, frames that
//! could not be opened and forgery attempts per sender; per connection QUIC's round-trip
//! time, congestion window and lost packets. One [`Tracker`] per room session collects
//! them from the send and receive paths; [`Tracker::snapshot`] turns them into the public
//! shape ([`CallQuality`]) that [`Room::stats`](crate::Room::stats) and
//! [`Event::Stats`](crate::Event::Stats) carry.
//!
//! Rates cover the interval since the previous periodic report
//! ([`ClientConfig::stats_interval`](crate::ClientConfig::stats_interval)); with periodic
//! reports off, since the previous [`Room::stats`](crate::Room::stats) call.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sealroom_crypto::{CipherSuite, OpenError};
use sealroom_frame::envelope::{Envelope, MediaKind, MemberId, TrackId};
use sealroom_frame::quality::{PathQuality, Verdict, loss_fraction};

/// Why the client dropped a frame itself (not the network, not the relay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LocalDrop {
    /// Sending: the track's queue was full when the application handed the frame over
    /// (`send` returned [`PublishError::QueueFull`](crate::PublishError::QueueFull)).
    QueueFull,
    /// Sending: the connection was down (reconnecting).
    Offline,
    /// Sending: a video frame queued behind a newer keyframe, skipped with its group.
    StaleGroup,
    /// Sending: sealing or QUIC refused the frame (a stream the relay stopped, a datagram
    /// that no longer fits).
    NotSent,
    /// Receiving: the application's event queue was full (datagram frames only).
    EventQueueFull,
    /// Receiving: the sender is blocked after too many forged frames
    /// ([`ClientConfig::forgery_threshold`](crate::ClientConfig::forgery_threshold)).
    BlockedSender,
}

/// Frames dropped by this client, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalDrops {
    /// See [`LocalDrop::QueueFull`].
    pub queue_full: u64,
    /// See [`LocalDrop::Offline`].
    pub offline: u64,
    /// See [`LocalDrop::StaleGroup`].
    pub stale_group: u64,
    /// See [`LocalDrop::NotSent`].
    pub not_sent: u64,
    /// See [`LocalDrop::EventQueueFull`].
    pub event_queue_full: u64,
    /// See [`LocalDrop::BlockedSender`].
    pub blocked_sender: u64,
}

impl LocalDrops {
    fn add(&mut self, reason: LocalDrop) {
        let slot = match reason {
            LocalDrop::QueueFull => &mut self.queue_full,
            LocalDrop::Offline => &mut self.offline,
            LocalDrop::StaleGroup => &mut self.stale_group,
            LocalDrop::NotSent => &mut self.not_sent,
            LocalDrop::EventQueueFull => &mut self.event_queue_full,
            LocalDrop::BlockedSender => &mut self.blocked_sender,
        };
        *slot = slot.saturating_add(1);
    }

    /// Every drop, whatever the reason.
    pub fn total(&self) -> u64 {
        self.queue_full
            .saturating_add(self.offline)
            .saturating_add(self.stale_group)
            .saturating_add(self.not_sent)
            .saturating_add(self.event_queue_full)
            .saturating_add(self.blocked_sender)
    }
}

/// One track this client publishes.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SentTrackStats {
    /// The track.
    pub track: TrackId,
    /// Audio, video or data.
    pub kind: MediaKind,
    /// Frames handed to QUIC since the track was published.
    pub frames: u64,
    /// Their bytes (envelope and sealed payload).
    pub bytes: u64,
    /// Frames per second over the interval.
    pub frames_per_sec: f64,
    /// Bytes per second over the interval.
    pub bytes_per_sec: f64,
    /// Frames dropped here, by reason, since the track was published.
    pub dropped: LocalDrops,
    /// Keyframes other members (or the relay for them) asked of this track.
    pub keyframe_requests: u64,
}

/// One track of another member that this client receives.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReceivedTrackStats {
    /// The publishing member (its id on the current connection).
    pub sender: MemberId,
    /// Its user id, when the roster knows it.
    pub user: Option<String>,
    /// The publisher's track.
    pub track: TrackId,
    /// Audio, video or data.
    pub kind: MediaKind,
    /// Frames that arrived and opened.
    pub frames: u64,
    /// Their bytes as received (envelope and sealed payload).
    pub bytes: u64,
    /// Frames per second over the interval.
    pub frames_per_sec: f64,
    /// Bytes per second over the interval.
    pub bytes_per_sec: f64,
    /// Frames missing from the sequence (RFC 3550 style: expected minus received, where
    /// a video group counts from its first frame). The network's and the relay's losses
    /// alike; frames still to come late are counted until they arrive.
    pub lost: u64,
    /// Lost over the interval as a fraction of the frames expected in it.
    pub loss: f64,
    /// Interarrival jitter against the sender's capture timestamps (RFC 3550, section
    /// 6.4.1: a running mean of the change in transit time, gain 1/16).
    pub jitter: Duration,
    /// Keyframes this client asked for on the track (the relay gave up a group it fell
    /// behind on).
    pub keyframes_requested: u64,
    /// Frames of the track that could not be opened (any [`OpenError`]).
    pub unopenable: u64,
    /// Frames dropped here after they arrived, by reason.
    pub dropped: LocalDrops,
}

/// The QUIC connection to the relay, from quinn's statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// Smoothed round-trip time.
    pub rtt: Duration,
    /// Congestion window, in bytes.
    pub cwnd: u64,
    /// Packets sent on this connection.
    pub sent_packets: u64,
    /// Packets this client declared lost (no acknowledgement in time). QUIC sends the
    /// reliable frames of every lost packet again (stream data, control); quinn does not
    /// count those retransmissions apart, so this is also the count of packets whose
    /// content was retransmitted (datagrams are never retransmitted).
    pub lost_packets: u64,
    /// Bytes of those packets.
    pub lost_bytes: u64,
    /// Congestion events (the window shrank).
    pub congestion_events: u64,
    /// Packets lost over the interval as a fraction of those sent in it (the upstream
    /// direction, client to relay).
    pub loss: f64,
}

/// Forged or corrupted frames from one sender: frames whose SFrame tag did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForgeryStats {
    /// The member the envelopes name (the relay checks it against the connection).
    pub sender: MemberId,
    /// Its user id, when the roster knows it.
    pub user: Option<String>,
    /// The room's cipher suite: a forger's chance per attempt is 2^-(tag bits).
    pub suite: CipherSuite,
    /// Frames that failed authentication.
    pub failures: u64,
    /// Whether this client now drops the sender's frames unopened.
    pub blocked: bool,
}

/// How the call is going, for [`Room::stats`](crate::Room::stats) and
/// [`Event::Stats`](crate::Event::Stats).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CallQuality {
    /// The interval the rates cover.
    pub interval: Duration,
    /// Tracks this client publishes.
    pub sent: Vec<SentTrackStats>,
    /// Tracks of other members this client receives, by sender and track.
    pub received: Vec<ReceivedTrackStats>,
    /// The current connection; `None` while reconnecting.
    pub connection: Option<ConnectionStats>,
    /// Senders of frames that failed authentication.
    pub forgeries: Vec<ForgeryStats>,
    /// The verdict of [`sealroom_frame::quality`] over the connection's round-trip time,
    /// the worse of the upstream packet loss and the received frames' loss, and the
    /// largest jitter of a received track; [`Verdict::Poor`] while reconnecting.
    pub verdict: Verdict,
}

impl Default for CallQuality {
    fn default() -> Self {
        Self {
            interval: Duration::ZERO,
            sent: Vec::new(),
            received: Vec::new(),
            connection: None,
            forgeries: Vec::new(),
            verdict: Verdict::Good,
        }
    }
}

/// A sent track's counters.
#[derive(Debug, Default)]
struct SentTrack {
    kind: Option<MediaKind>,
    frames: u64,
    bytes: u64,
    base: (u64, u64),
    dropped: LocalDrops,
    keyframe_requests: u64,
}

/// A received track's counters and sequence and jitter state.
#[derive(Debug)]
struct ReceivedTrack {
    kind: MediaKind,
    frames: u64,
    bytes: u64,
    base: (u64, u64),
    /// Highest (group, seq) seen.
    highest: (u32, u32),
    expected: u64,
    expected_base: u64,
    /// Transit time of the previous frame, microseconds (arrival minus capture; the clock
    /// offset between the machines cancels in differences).
    last_transit: Option<i64>,
    /// RFC 3550 jitter estimate, microseconds.
    jitter_us: f64,
    keyframes_requested: u64,
    unopenable: u64,
    dropped: LocalDrops,
    last_seen: Instant,
}

impl ReceivedTrack {
    fn new(kind: MediaKind, now: Instant) -> Self {
        Self {
            kind,
            frames: 0,
            bytes: 0,
            base: (0, 0),
            highest: (0, 0),
            expected: 0,
            expected_base: 0,
            last_transit: None,
            jitter_us: 0.0,
            keyframes_requested: 0,
            unopenable: 0,
            dropped: LocalDrops::default(),
            last_seen: now,
        }
    }

    /// Count one frame that opened. Audio and data number their frames with a sequence
    /// that carries into the group; video restarts the sequence at 0 in every group.
    fn arrived(&mut self, envelope: &Envelope, len: usize, arrival_us: i64) {
        let at = (envelope.group, envelope.seq);
        if self.expected == 0 {
            self.expected = 1;
            self.highest = at;
        } else if at > self.highest {
            let ahead = if self.kind == MediaKind::Video && at.0 != self.highest.0 {
                u64::from(at.1) + 1
            } else {
                let extended = |(group, seq): (u32, u32)| (u64::from(group) << 32) | u64::from(seq);
                extended(at) - extended(self.highest)
            };
            self.expected = self.expected.saturating_add(ahead);
            self.highest = at;
        }
        self.frames += 1;
        self.bytes = self.bytes.saturating_add(len as u64);
        let capture = i64::try_from(envelope.timestamp_us).unwrap_or(i64::MAX);
        let transit = arrival_us.saturating_sub(capture);
        if let Some(last) = self.last_transit {
            let change = transit.saturating_sub(last).unsigned_abs() as f64;
            self.jitter_us += (change - self.jitter_us) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.frames)
    }
}

/// A sender's authentication failures.
#[derive(Debug, Default)]
struct Forgery {
    failures: u64,
    blocked: bool,
}

/// The connection counters at the start of the interval.
#[derive(Debug, Default, Clone, Copy)]
struct ConnBase {
    id: usize,
    sent_packets: u64,
    lost_packets: u64,
}

#[derive(Debug)]
struct Inner {
    sent: HashMap<TrackId, SentTrack>,
    received: HashMap<(MemberId, TrackId), ReceivedTrack>,
    forgeries: HashMap<MemberId, Forgery>,
    blocked_users: HashSet<String>,
    since: Instant,
    conn: ConnBase,
}

/// What the receive path does with a frame that did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unopened {
    /// Report it.
    Report,
    /// This failure blocked the sender ([`ClientConfig::forgery_threshold`](crate::ClientConfig::forgery_threshold)).
    Blocked {
        /// Failures counted.
        failures: u64,
    },
}

/// The quality counters of one room session.
#[derive(Debug)]
pub(crate) struct Tracker {
    inner: Mutex<Inner>,
    /// The clock jitter is measured on; arrival times are microseconds since it.
    epoch: Instant,
    /// Microseconds since the Unix epoch at `epoch`, so arrivals compare with capture
    /// timestamps (only differences matter: the offset cancels).
    epoch_unix_us: i64,
    suite: CipherSuite,
    max_remote_tracks: usize,
    forgery_threshold: Option<u64>,
}

impl Tracker {
    pub(crate) fn new(
        suite: CipherSuite,
        max_remote_tracks: usize,
        forgery_threshold: Option<u64>,
    ) -> Self {
        let unix_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let now = Instant::now();
        Self {
            inner: Mutex::new(Inner {
                sent: HashMap::new(),
                received: HashMap::new(),
                forgeries: HashMap::new(),
                blocked_users: HashSet::new(),
                since: now,
                conn: ConnBase::default(),
            }),
            epoch: now,
            epoch_unix_us: unix_us,
            suite,
            max_remote_tracks: max_remote_tracks.max(1),
            forgery_threshold,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A frame of `track` handed to QUIC.
    pub(crate) fn sent(&self, track: TrackId, kind: MediaKind, len: usize) {
        let mut inner = self.lock();
        let entry = inner.sent.entry(track).or_default();
        entry.kind = Some(kind);
        entry.frames += 1;
        entry.bytes = entry.bytes.saturating_add(len as u64);
    }

    /// A frame of `track` this client did not send.
    pub(crate) fn send_dropped(&self, track: TrackId, kind: MediaKind, reason: LocalDrop) {
        let mut inner = self.lock();
        let entry = inner.sent.entry(track).or_default();
        entry.kind = Some(kind);
        entry.dropped.add(reason);
    }

    /// Someone asked for a keyframe on this client's `track`.
    pub(crate) fn keyframe_asked(&self, track: TrackId) {
        let mut inner = self.lock();
        if let Some(entry) = inner.sent.get_mut(&track) {
            entry.keyframe_requests += 1;
        }
    }

    /// The track was unpublished: its counters go.
    pub(crate) fn unpublished(&self, track: TrackId) {
        self.lock().sent.remove(&track);
    }

    /// The received track's entry, made (evicting the longest silent one) when new.
    fn received_entry<'a>(
        &self,
        inner: &'a mut Inner,
        envelope: &Envelope,
        now: Instant,
    ) -> &'a mut ReceivedTrack {
        let key = (envelope.sender, envelope.track);
        if !inner.received.contains_key(&key) && inner.received.len() >= self.max_remote_tracks {
            let oldest = inner
                .received
                .iter()
                .min_by_key(|(_, track)| track.last_seen)
                .map(|(key, _)| *key);
            if let Some(oldest) = oldest {
                inner.received.remove(&oldest);
            }
        }
        let entry = inner
            .received
            .entry(key)
            .or_insert_with(|| ReceivedTrack::new(envelope.kind, now));
        entry.last_seen = now;
        entry
    }

    /// A frame that arrived and opened.
    pub(crate) fn received(&self, envelope: &Envelope, len: usize) {
        let now = Instant::now();
        let arrival = self.arrival_us(now);
        let mut inner = self.lock();
        self.received_entry(&mut inner, envelope, now)
            .arrived(envelope, len, arrival);
    }

    fn arrival_us(&self, now: Instant) -> i64 {
        let since = i64::try_from(now.duration_since(self.epoch).as_micros()).unwrap_or(i64::MAX);
        self.epoch_unix_us.saturating_add(since)
    }

    /// A received frame dropped here.
    pub(crate) fn receive_dropped(&self, envelope: &Envelope, reason: LocalDrop) {
        let now = Instant::now();
        let mut inner = self.lock();
        self.received_entry(&mut inner, envelope, now)
            .dropped
            .add(reason);
    }

    /// This client asked `sender` for a keyframe on `track`.
    pub(crate) fn keyframe_requested(&self, sender: MemberId, track: TrackId) {
        let mut inner = self.lock();
        if let Some(entry) = inner.received.get_mut(&(sender, track)) {
            entry.keyframes_requested += 1;
        }
    }

    /// Whether frames from `sender` (whose user is `user`, when known) are dropped
    /// unopened. `user` runs outside this tracker's lock (it may take the roster's).
    pub(crate) fn is_blocked(
        &self,
        sender: MemberId,
        user: impl FnOnce() -> Option<String>,
    ) -> bool {
        {
            let inner = self.lock();
            if inner.forgeries.get(&sender).is_some_and(|f| f.blocked) {
                return true;
            }
            if inner.blocked_users.is_empty() {
                return false;
            }
        }
        user().is_some_and(|user| self.lock().blocked_users.contains(&user))
    }

    /// A received frame that did not open. An authentication failure counts against the
    /// sender its envelope names; past the threshold the sender (and its user, so a rejoin
    /// under a new member id does not reset it) is blocked.
    pub(crate) fn unopenable(
        &self,
        envelope: &Envelope,
        reason: &OpenError,
        user: Option<String>,
    ) -> Unopened {
        let now = Instant::now();
        let mut inner = self.lock();
        self.received_entry(&mut inner, envelope, now).unopenable += 1;
        if *reason != OpenError::AuthenticationFailed {
            return Unopened::Report;
        }
        let senders = inner.forgeries.len();
        let Some(forgery) = (match inner.forgeries.get_mut(&envelope.sender) {
            Some(forgery) => Some(forgery),
            // Bounded like the received tracks; beyond it failures show per track only.
            None if senders < self.max_remote_tracks => {
                Some(inner.forgeries.entry(envelope.sender).or_default())
            }
            None => None,
        }) else {
            return Unopened::Report;
        };
        forgery.failures += 1;
        let failures = forgery.failures;
        match self.forgery_threshold {
            Some(threshold) if !forgery.blocked && failures >= threshold => {
                forgery.blocked = true;
                if let Some(user) = user
                    && inner.blocked_users.len() < self.max_remote_tracks
                {
                    inner.blocked_users.insert(user);
                }
                Unopened::Blocked { failures }
            }
            _ => Unopened::Report,
        }
    }

    /// The counters as the public shape; `advance` starts a new interval.
    pub(crate) fn snapshot(
        &self,
        conn: Option<&quinn::Connection>,
        user_of: impl Fn(MemberId) -> Option<String>,
        advance: bool,
    ) -> CallQuality {
        let now = Instant::now();
        let mut inner = self.lock();
        let interval = now.duration_since(inner.since);
        let secs = interval.as_secs_f64().max(1e-3);
        let rate = |now: u64, base: u64| now.saturating_sub(base) as f64 / secs;

        let mut sent: Vec<SentTrackStats> = inner
            .sent
            .iter()
            .filter_map(|(track, s)| {
                Some(SentTrackStats {
                    track: *track,
                    kind: s.kind?,
                    frames: s.frames,
                    bytes: s.bytes,
                    frames_per_sec: rate(s.frames, s.base.0),
                    bytes_per_sec: rate(s.bytes, s.base.1),
                    dropped: s.dropped,
                    keyframe_requests: s.keyframe_requests,
                })
            })
            .collect();
        sent.sort_by_key(|s| s.track);

        // A track silent for three intervals (its sender left or stopped) is forgotten.
        let stale = interval.saturating_mul(3).max(Duration::from_secs(6));
        let mut received: Vec<ReceivedTrackStats> = inner
            .received
            .iter()
            .filter(|(_, r)| now.duration_since(r.last_seen) < stale || !advance)
            .map(|((sender, track), r)| {
                let expected = r.expected.saturating_sub(r.expected_base);
                let frames = r.frames.saturating_sub(r.base.0);
                ReceivedTrackStats {
                    sender: *sender,
                    user: user_of(*sender),
                    track: *track,
                    kind: r.kind,
                    frames: r.frames,
                    bytes: r.bytes,
                    frames_per_sec: rate(r.frames, r.base.0),
                    bytes_per_sec: rate(r.bytes, r.base.1),
                    lost: r.lost(),
                    loss: loss_fraction(expected.saturating_sub(frames), frames.min(expected)),
                    jitter: Duration::from_micros(r.jitter_us as u64),
                    keyframes_requested: r.keyframes_requested,
                    unopenable: r.unopenable,
                    dropped: r.dropped,
                }
            })
            .collect();
        received.sort_by_key(|r| (r.sender, r.track));

        let connection = conn.map(|conn| {
            let stats = conn.stats();
            let path = stats.path;
            let base = if inner.conn.id == conn.stable_id() {
                inner.conn
            } else {
                ConnBase {
                    id: conn.stable_id(),
                    ..ConnBase::default()
                }
            };
            let sent_now = path.sent_packets.saturating_sub(base.sent_packets);
            let lost_now = path.lost_packets.saturating_sub(base.lost_packets);
            if advance {
                inner.conn = ConnBase {
                    id: conn.stable_id(),
                    sent_packets: path.sent_packets,
                    lost_packets: path.lost_packets,
                };
            }
            ConnectionStats {
                rtt: path.rtt,
                cwnd: path.cwnd,
                sent_packets: path.sent_packets,
                lost_packets: path.lost_packets,
                lost_bytes: path.lost_bytes,
                congestion_events: path.congestion_events,
                loss: loss_fraction(lost_now, sent_now.saturating_sub(lost_now)),
            }
        });

        let mut forgeries: Vec<ForgeryStats> = inner
            .forgeries
            .iter()
            .map(|(sender, f)| ForgeryStats {
                sender: *sender,
                user: user_of(*sender),
                suite: self.suite,
                failures: f.failures,
                blocked: f.blocked,
            })
            .collect();
        forgeries.sort_by_key(|f| f.sender);

        let verdict = connection.map_or(Verdict::Poor, |conn| {
            PathQuality {
                rtt: conn.rtt,
                loss: received.iter().map(|r| r.loss).fold(conn.loss, f64::max),
                jitter: received.iter().map(|r| r.jitter).max().unwrap_or_default(),
            }
            .verdict()
        });

        if advance {
            inner.since = now;
            for s in inner.sent.values_mut() {
                s.base = (s.frames, s.bytes);
            }
            inner
                .received
                .retain(|_, r| now.duration_since(r.last_seen) < stale);
            for r in inner.received.values_mut() {
                r.base = (r.frames, r.bytes);
                r.expected_base = r.expected;
            }
        }
        CallQuality {
            interval,
            sent,
            received,
            connection,
            forgeries,
            verdict,
        }
    }
}

#[cfg(test)]
mod tests {
    use sealroom_frame::envelope::Flags;

    use super::*;

    fn envelope(kind: MediaKind, group: u32, seq: u32, timestamp_us: u64) -> Envelope {
        Envelope {
            kind,
            flags: Flags::empty(),
            sender: 7,
            track: 1,
            group,
            seq,
            timestamp_us,
        }
    }

    fn tracker(threshold: Option<u64>) -> Tracker {
        Tracker::new(CipherSuite::Aes128CtrHmacSha256Tag32, 4, threshold)
    }

    #[test]
    fn audio_sequence_gaps_count_as_lost_and_late_frames_are_recovered() {
        let mut track = ReceivedTrack::new(MediaKind::Audio, Instant::now());
        for seq in [0, 1, 2, 5, 6] {
            track.arrived(&envelope(MediaKind::Audio, 0, seq, 0), 10, 0);
        }
        assert_eq!(track.lost(), 2, "3 and 4 are missing");
        track.arrived(&envelope(MediaKind::Audio, 0, 3, 0), 10, 0);
        assert_eq!(track.lost(), 1, "3 arrived late");
        // The sequence carries into the group on wrap.
        track.arrived(&envelope(MediaKind::Audio, 1, 0, 0), 10, 0);
        let expected_after_wrap = (1u64 << 32) - 6;
        assert_eq!(track.lost(), 1 + expected_after_wrap - 1);
    }

    #[test]
    fn video_counts_from_the_start_of_each_group() {
        let mut track = ReceivedTrack::new(MediaKind::Video, Instant::now());
        for (group, seq) in [(1, 0), (1, 1), (1, 3), (2, 0), (3, 2)] {
            track.arrived(&envelope(MediaKind::Video, group, seq, 0), 10, 0);
        }
        // 1/2 is missing, and 3/0 and 3/1; a group's unseen tail cannot be known.
        assert_eq!(track.lost(), 3);
    }

    #[test]
    fn jitter_follows_rfc3550_and_ignores_a_constant_delay_and_clock_offset() {
        let mut steady = ReceivedTrack::new(MediaKind::Audio, Instant::now());
        for seq in 0..100u32 {
            let capture = u64::from(seq) * 20_000;
            // 250 ms of constant delay plus an arbitrary clock offset: no jitter.
            let arrival = capture as i64 + 250_000 - 7_000_000;
            steady.arrived(&envelope(MediaKind::Audio, 0, seq, capture), 10, arrival);
        }
        assert!(steady.jitter_us.abs() < 1e-9, "{}", steady.jitter_us);

        // Transit alternating between 0 and 8 ms: |D| is always 8 ms, so J tends to 8 ms.
        let mut alternating = ReceivedTrack::new(MediaKind::Audio, Instant::now());
        for seq in 0..400u32 {
            let capture = u64::from(seq) * 20_000;
            let extra = if seq % 2 == 0 { 0 } else { 8_000 };
            alternating.arrived(
                &envelope(MediaKind::Audio, 0, seq, capture),
                10,
                capture as i64 + extra,
            );
        }
        assert!(
            (alternating.jitter_us - 8_000.0).abs() < 1.0,
            "{}",
            alternating.jitter_us
        );
    }

    #[test]
    fn rates_cover_the_interval_and_advance_starts_a_new_one() {
        let tracker = tracker(None);
        for _ in 0..10 {
            tracker.sent(3, MediaKind::Audio, 100);
        }
        tracker.send_dropped(3, MediaKind::Audio, LocalDrop::Offline);
        let first = tracker.snapshot(None, |_| None, true);
        assert_eq!(first.sent.len(), 1);
        let track = &first.sent[0];
        assert_eq!(
            (track.frames, track.bytes, track.dropped.offline),
            (10, 1000, 1)
        );
        assert!(track.frames_per_sec > 0.0);
        assert_eq!(first.verdict, Verdict::Poor, "no connection");
        let second = tracker.snapshot(None, |_| None, true);
        assert_eq!(second.sent[0].frames, 10, "totals stay");
        assert!(
            second.sent[0].frames_per_sec.abs() < f64::EPSILON,
            "no frame in the interval"
        );
    }

    #[test]
    fn interval_loss_is_the_fraction_missing_in_the_interval() {
        let tracker = tracker(None);
        for seq in (0..100).filter(|seq| seq % 10 != 5) {
            tracker.received(&envelope(MediaKind::Audio, 0, seq, 0), 50);
        }
        let stats = tracker.snapshot(None, |id| Some(format!("user{id}")), true);
        let track = &stats.received[0];
        assert_eq!(track.lost, 10);
        assert!((track.loss - 0.10).abs() < 1e-9, "{}", track.loss);
        assert_eq!(track.user.as_deref(), Some("user7"));
        for seq in 100..200 {
            tracker.received(&envelope(MediaKind::Audio, 0, seq, 0), 50);
        }
        let stats = tracker.snapshot(None, |_| None, true);
        assert!(
            stats.received[0].loss.abs() < 1e-9,
            "no loss in the second interval"
        );
        assert_eq!(stats.received[0].lost, 10, "the total stays");
    }

    #[test]
    fn forgeries_count_per_sender_and_block_past_the_threshold() {
        let tracker = tracker(Some(3));
        let forged = envelope(MediaKind::Audio, 0, 0, 0);
        let user = || Some(String::from("mallory"));
        assert_eq!(
            tracker.unopenable(&forged, &OpenError::Replayed, user()),
            Unopened::Report
        );
        assert_eq!(
            tracker.unopenable(&forged, &OpenError::AuthenticationFailed, user()),
            Unopened::Report
        );
        assert_eq!(
            tracker.unopenable(&forged, &OpenError::AuthenticationFailed, user()),
            Unopened::Report
        );
        assert!(!tracker.is_blocked(7, user));
        assert_eq!(
            tracker.unopenable(&forged, &OpenError::AuthenticationFailed, user()),
            Unopened::Blocked { failures: 3 }
        );
        assert!(tracker.is_blocked(7, || None));
        // The same user under a new member id (a rejoin) stays blocked.
        assert!(tracker.is_blocked(8, user));
        assert!(!tracker.is_blocked(8, || Some(String::from("alice"))));
        let stats = tracker.snapshot(None, |_| None, false);
        assert_eq!(stats.forgeries.len(), 1);
        let forgery = &stats.forgeries[0];
        assert_eq!(
            (forgery.sender, forgery.failures, forgery.blocked),
            (7, 3, true)
        );
        assert_eq!(forgery.suite, CipherSuite::Aes128CtrHmacSha256Tag32);
        assert_eq!(
            stats.received[0].unopenable, 4,
            "every failure, replays too"
        );
    }

    #[test]
    fn without_a_threshold_forgeries_are_only_counted() {
        let tracker = tracker(None);
        let forged = envelope(MediaKind::Video, 0, 0, 0);
        for _ in 0..1000 {
            assert_eq!(
                tracker.unopenable(&forged, &OpenError::AuthenticationFailed, None),
                Unopened::Report
            );
        }
        assert!(!tracker.is_blocked(7, || None));
    }

    #[test]
    fn received_tracks_are_bounded() {
        let tracker = tracker(None);
        for track in 0..10 {
            let envelope = Envelope {
                track,
                ..envelope(MediaKind::Audio, 0, 0, 0)
            };
            tracker.received(&envelope, 10);
        }
        let stats = tracker.snapshot(None, |_| None, false);
        assert_eq!(stats.received.len(), 4);
    }
}
