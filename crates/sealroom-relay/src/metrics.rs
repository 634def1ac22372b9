//! The Prometheus metrics of one relay.
//!
//! Each [`Metrics`] owns its own [`Registry`] (no global state), so several relays can run in
//! one process, as the tests do. Every labelled counter is created up front for every label
//! value, so the hot path touches plain atomics, never a lock, and every series is exported
//! (at zero) from the start.
//!
//! | metric (prefix `sealroom_`)             | type      | labels    |
//! |-----------------------------------------|-----------|-----------|
//! | `rooms`, `members`, `connections`       | gauge     |           |
//! | `frames_received_total`                 | counter   | `kind`    |
//! | `bytes_received_total`                  | counter   | `kind`    |
//! | `frames_forwarded_total`                | counter   | `kind`    |
//! | `bytes_forwarded_total`                 | counter   | `kind`    |
//! | `frames_dropped_total`                  | counter   | `reason`  |
//! | `join_attempts_total`                   | counter   |           |
//! | `joins_total`                           | counter   | `outcome` |
//! | `forward_delay_seconds`                 | histogram |           |
//! | `queue_depth_high_water`                | gauge     |           |
//! | `connection_queue_high_water`           | histogram |           |
//!
//! `frames_forwarded_total` counts one per receiver (a frame sent to three members counts
//! three). `joins_total{outcome="joined"}` over `join_attempts_total` is the join success
//! rate. `forward_delay_seconds` is the time from a frame's arrival at the relay to its
//! hand-over to the receiver's QUIC connection. `queue_depth_high_water` is the deepest any
//! connection's outbound queue has been (frames); `connection_queue_high_water` records
//! each connection's own high-water mark when it ends.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sealroom_frame::control::ErrorCode;
use sealroom_frame::envelope::MediaKind;

use crate::core::{DropReason, JoinOutcome};

/// Labels of the per-kind series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Labels of the per-reason series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Labels of the join outcome series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

const KINDS: [MediaKind; 3] = [MediaKind::Audio, MediaKind::Video, MediaKind::Data];

/// A stable lowercase label for a media kind.
pub const fn kind_label(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
        MediaKind::Data => "data",
    }
}

const fn kind_index(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
        MediaKind::Data => 2,
    }
}

/// Counters of one media kind.
#[derive(Debug, Clone, Default)]
struct KindCounters {
    frames_received: Counter,
    bytes_received: Counter,
    frames_forwarded: Counter,
    bytes_forwarded: Counter,
}

/// The metrics of one relay, with their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rooms: Gauge,
    members: Gauge,
    connections: Gauge,
    kinds: [KindCounters; 3],
    dropped: Vec<(DropReason, Counter)>,
    join_attempts: Counter,
    joins: Vec<(JoinOutcome, Counter)>,
    forward_delay: Histogram,
    queue_high_water: Gauge,
    queue_high_water_max: AtomicU64,
    connection_queue_high_water: Histogram,
}

/// Every join outcome, for exporting zeroed counters.
fn all_join_outcomes() -> Vec<JoinOutcome> {
    std::iter::once(JoinOutcome::Joined)
        .chain(
            ErrorCode::ALL
                .iter()
                .map(|code| JoinOutcome::Refused(*code)),
        )
        .collect()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics in a fresh registry with the prefix `sealroom`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sealroom");
        let rooms = Gauge::default();
        let members = Gauge::default();
        let connections = Gauge::default();
        registry.register("rooms", "Rooms open", rooms.clone());
        registry.register("members", "Members in all rooms", members.clone());
        registry.register(
            "connections",
            "QUIC connections, joined or not",
            connections.clone(),
        );

        let frames_received = Family::<KindLabels, Counter>::default();
        let bytes_received = Family::<KindLabels, Counter>::default();
        let frames_forwarded = Family::<KindLabels, Counter>::default();
        let bytes_forwarded = Family::<KindLabels, Counter>::default();
        let kinds = KINDS.map(|kind| {
            let labels = KindLabels {
                kind: kind_label(kind),
            };
            KindCounters {
                frames_received: frames_received.get_or_create_owned(&labels),
                bytes_received: bytes_received.get_or_create_owned(&labels),
                frames_forwarded: frames_forwarded.get_or_create_owned(&labels),
                bytes_forwarded: bytes_forwarded.get_or_create_owned(&labels),
            }
        });
        registry.register(
            "frames_received",
            "Media frames received from members",
            frames_received,
        );
        registry.register(
            "bytes_received",
            "Bytes of media frames received from members (envelope and payload)",
            bytes_received,
        );
        registry.register(
            "frames_forwarded",
            "Media frames handed to receivers, one per receiver",
            frames_forwarded,
        );
        registry.register(
            "bytes_forwarded",
            "Bytes of media frames handed to receivers, counted per receiver",
            bytes_forwarded,
        );

        let dropped_family = Family::<ReasonLabels, Counter>::default();
        let dropped = DropReason::ALL
            .iter()
            .map(|reason| {
                let labels = ReasonLabels {
                    reason: reason.label(),
                };
                (*reason, dropped_family.get_or_create_owned(&labels))
            })
            .collect();
        registry.register(
            "frames_dropped",
            "Media frames dropped, by reason (a frame dropped for one receiver counts once)",
            dropped_family,
        );

        let join_attempts = Counter::default();
        registry.register("join_attempts", "Join attempts", join_attempts.clone());
        let joins_family = Family::<OutcomeLabels, Counter>::default();
        let joins = all_join_outcomes()
            .into_iter()
            .map(|outcome| {
                let labels = OutcomeLabels {
                    outcome: outcome.label(),
                };
                (outcome, joins_family.get_or_create_owned(&labels))
            })
            .collect();
        registry.register(
            "joins",
            "Join attempts by outcome (joined, or the refusal reason)",
            joins_family,
        );

        // 10 µs to about 1.3 s.
        let forward_delay = Histogram::new(exponential_buckets(0.000_01, 2.0, 18));
        registry.register(
            "forward_delay_seconds",
            "Time from a frame's arrival to its hand-over to a receiver's connection",
            forward_delay.clone(),
        );
        let queue_high_water = Gauge::default();
        registry.register(
            "queue_depth_high_water",
            "Deepest outbound queue of any connection so far, in frames",
            queue_high_water.clone(),
        );
        let connection_queue_high_water = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "connection_queue_high_water",
            "Each ended connection's deepest outbound queue, in frames",
            connection_queue_high_water.clone(),
        );

        Self {
            registry,
            rooms,
            members,
            connections,
            kinds,
            dropped,
            join_attempts,
            joins,
            forward_delay,
            queue_high_water,
            queue_high_water_max: AtomicU64::new(0),
            connection_queue_high_water,
        }
    }

    /// The registry (to add more metrics, or to encode).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry, to register more metrics (the internal HTTP listener's own, say).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The metrics in the Prometheus / OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Set the room, member and connection gauges.
    pub fn set_population(&self, rooms: usize, members: usize, connections: usize) {
        let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.rooms.set(to_i64(rooms));
        self.members.set(to_i64(members));
        self.connections.set(to_i64(connections));
    }

    /// A frame of `len` bytes arrived.
    pub fn frame_received(&self, kind: MediaKind, len: usize) {
        let counters = &self.kinds[kind_index(kind)];
        counters.frames_received.inc();
        counters.bytes_received.inc_by(len as u64);
    }

    /// A frame of `len` bytes was handed to one receiver, `delay_secs` after it arrived.
    pub fn frame_forwarded(&self, kind: MediaKind, len: usize, delay_secs: f64) {
        let counters = &self.kinds[kind_index(kind)];
        counters.frames_forwarded.inc();
        counters.bytes_forwarded.inc_by(len as u64);
        self.forward_delay.observe(delay_secs);
    }

    /// A frame was dropped.
    pub fn frame_dropped(&self, reason: DropReason) {
        self.frames_dropped_by(reason, 1);
    }

    /// `count` frames were dropped for one reason.
    pub fn frames_dropped_by(&self, reason: DropReason, count: u64) {
        if let Some((_, counter)) = self.dropped.iter().find(|(r, _)| *r == reason) {
            counter.inc_by(count);
        }
    }

    /// A join attempt ended with `outcome`.
    pub fn join(&self, outcome: JoinOutcome) {
        self.join_attempts.inc();
        if let Some((_, counter)) = self.joins.iter().find(|(o, _)| *o == outcome) {
            counter.inc();
        }
    }

    /// A connection's outbound queue reached `depth` frames.
    pub fn queue_depth(&self, depth: usize) {
        let depth = depth as u64;
        let previous = self
            .queue_high_water_max
            .fetch_max(depth, Ordering::Relaxed);
        if depth > previous {
            self.queue_high_water
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
    }

    /// A connection ended; its outbound queue was at most `high_water` frames deep.
    pub fn connection_ended(&self, high_water: usize) {
        self.connection_queue_high_water.observe(high_water as f64);
    }

    /// A snapshot of the counters.
    pub fn snapshot(&self) -> RelayStats {
        let kind = |kind: MediaKind| {
            let c = &self.kinds[kind_index(kind)];
            KindStats {
                frames_received: c.frames_received.get(),
                bytes_received: c.bytes_received.get(),
                frames_forwarded: c.frames_forwarded.get(),
                bytes_forwarded: c.bytes_forwarded.get(),
            }
        };
        RelayStats {
            rooms: u64::try_from(self.rooms.get()).unwrap_or(0),
            members: u64::try_from(self.members.get()).unwrap_or(0),
            connections: u64::try_from(self.connections.get()).unwrap_or(0),
            audio: kind(MediaKind::Audio),
            video: kind(MediaKind::Video),
            data: kind(MediaKind::Data),
            dropped: self
                .dropped
                .iter()
                .map(|(reason, counter)| (*reason, counter.get()))
                .filter(|(_, n)| *n > 0)
                .collect(),
            join_attempts: self.join_attempts.get(),
            joins: self
                .joins
                .iter()
                .map(|(outcome, counter)| (*outcome, counter.get()))
                .filter(|(_, n)| *n > 0)
                .collect(),
            queue_depth_high_water: self.queue_high_water_max.load(Ordering::Relaxed),
        }
    }
}

/// Counters of one media kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KindStats {
    /// Frames received from members.
    pub frames_received: u64,
    /// Bytes received (envelope and payload).
    pub bytes_received: u64,
    /// Frames handed to receivers, one per receiver.
    pub frames_forwarded: u64,
    /// Bytes handed to receivers, counted per receiver.
    pub bytes_forwarded: u64,
}

/// A snapshot of a relay's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelayStats {
    /// Rooms open.
    pub rooms: u64,
    /// Members in all rooms.
    pub members: u64,
    /// QUIC connections.
    pub connections: u64,
    /// Audio counters.
    pub audio: KindStats,
    /// Video counters.
    pub video: KindStats,
    /// Data counters.
    pub data: KindStats,
    /// Frames dropped, by reason (reasons with no drop are left out).
    pub dropped: Vec<(DropReason, u64)>,
    /// Join attempts.
    pub join_attempts: u64,
    /// Join attempts by outcome (outcomes that never happened are left out).
    pub joins: Vec<(JoinOutcome, u64)>,
    /// Deepest outbound queue of any connection, in frames.
    pub queue_depth_high_water: u64,
}

impl RelayStats {
    /// Counters of one kind.
    pub fn kind(&self, kind: MediaKind) -> KindStats {
        match kind {
            MediaKind::Audio => self.audio,
            MediaKind::Video => self.video,
            MediaKind::Data => self.data,
        }
    }

    /// Frames dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped
            .iter()
            .find_map(|(r, n)| (*r == reason).then_some(*n))
            .unwrap_or(0)
    }

    /// Joins that ended with `outcome`.
    pub fn joins(&self, outcome: JoinOutcome) -> u64 {
        self.joins
            .iter()
            .find_map(|(o, n)| (*o == outcome).then_some(*n))
            .unwrap_or(0)
    }

    /// Bytes forwarded over all kinds.
    pub fn bytes_forwarded(&self) -> u64 {
        self.audio.bytes_forwarded + self.video.bytes_forwarded + self.data.bytes_forwarded
    }

    /// Frames forwarded over all kinds.
    pub fn frames_forwarded(&self) -> u64 {
        self.audio.frames_forwarded + self.video.frames_forwarded + self.data.frames_forwarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_the_exposition_and_the_snapshot() {
        let metrics = Metrics::new();
        metrics.frame_received(MediaKind::Video, 1000);
        metrics.frame_forwarded(MediaKind::Video, 1000, 0.001);
        metrics.frame_forwarded(MediaKind::Video, 1000, 0.002);
        metrics.frame_dropped(DropReason::ForgedSender);
        metrics.join(JoinOutcome::Joined);
        metrics.join(JoinOutcome::Refused(ErrorCode::RoomFull));
        metrics.set_population(1, 2, 3);
        metrics.queue_depth(7);
        metrics.queue_depth(3);
        let text = metrics.encode();
        assert!(text.contains("sealroom_frames_forwarded_total{kind=\"video\"} 2"));
        assert!(text.contains("sealroom_bytes_received_total{kind=\"video\"} 1000"));
        assert!(text.contains("sealroom_frames_dropped_total{reason=\"forged_sender\"} 1"));
        assert!(text.contains("sealroom_frames_dropped_total{reason=\"queue_full\"} 0"));
        assert!(text.contains("sealroom_joins_total{outcome=\"room_full\"} 1"));
        assert!(text.contains("sealroom_join_attempts_total 2"));
        assert!(text.contains("sealroom_members 2"));
        assert!(text.contains("sealroom_queue_depth_high_water 7"));
        assert!(text.contains("sealroom_forward_delay_seconds_count 2"));
        let stats = metrics.snapshot();
        assert_eq!(stats.video.frames_forwarded, 2);
        assert_eq!(stats.bytes_forwarded(), 2000);
        assert_eq!(stats.dropped(DropReason::ForgedSender), 1);
        assert_eq!(stats.joins(JoinOutcome::Joined), 1);
        assert_eq!(stats.queue_depth_high_water, 7);
    }

    #[test]
    fn two_relays_do_not_share_metrics() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.join(JoinOutcome::Joined);
        assert_eq!(b.snapshot().join_attempts, 0);
    }
}
