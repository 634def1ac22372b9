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
//! | `violations_total`                      | counter   | `kind`    |
//! | `control_messages_rate_limited_total`   | counter   |           |
//! | `keyframe_requests_total`               | counter   | `source`, `outcome` |
//! | `queued_bytes`, `queued_bytes_high_water` | gauge   |           |
//! | `connection_queued_bytes_high_water`    | gauge     |           |
//! | `incoming_buffered_bytes`, `incoming_buffered_bytes_high_water` | gauge | |
//! | `mls_messages_total`                    | counter   | `outcome` (see `mls_metrics`) |
//!
//! `frames_forwarded_total` counts one per receiver (a frame sent to three members counts
//! three). `joins_total{outcome="joined"}` over `join_attempts_total` is the join success
//! rate. `forward_delay_seconds` is the time from a frame's arrival at the relay to its
//! hand-over to the receiver's QUIC connection. `queue_depth_high_water` is the deepest any
//! connection's outbound queue has been (frames); `connection_queue_high_water` records
//! each connection's own high-water mark when it ends.
//!
//! `violations_total{kind}` counts protocol violations by [`Violation`] kind.
//! `keyframe_requests_total{source="member"|"relay", outcome="forwarded"|"coalesced"}`
//! counts keyframe requests from members and those the relay makes for a receiver that fell
//! behind on a video group. `queued_bytes` is the relay's own accounting of frame bytes
//! queued towards all connections (counted once per receiver, though receivers share the
//! bytes), with its high-water mark; `connection_queued_bytes_high_water` is the most one
//! connection ever had queued. `incoming_buffered_bytes` counts bytes of incomplete frames
//! held from clients' media streams.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sealroom_frame::control::ErrorCode;
use sealroom_frame::envelope::MediaKind;

use crate::engine::{DropReason, JoinOutcome, KeyframeOutcome, Violation};

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

/// Labels of the violation series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViolationLabels {
    kind: &'static str,
}

/// Labels of the keyframe request series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyframeLabels {
    source: &'static str,
    outcome: &'static str,
}

/// Who asked for a keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeSource {
    /// A member sent `KeyframeRequest`.
    Member,
    /// The relay, for a receiver that fell behind on a video group.
    Relay,
}

/// A gauge of bytes with its high-water mark, on plain atomics.
#[derive(Debug, Default)]
struct ByteGauge {
    now: AtomicI64,
    high_water: AtomicU64,
    exported: Gauge,
    exported_high_water: Gauge,
}

impl ByteGauge {
    fn add(&self, bytes: usize) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        let now = self
            .now
            .fetch_add(bytes, Ordering::Relaxed)
            .saturating_add(bytes);
        let now = u64::try_from(now).unwrap_or(0);
        if now > self.high_water.fetch_max(now, Ordering::Relaxed) {
            self.exported_high_water
                .set(i64::try_from(now).unwrap_or(i64::MAX));
        }
        self.exported.inc_by(bytes);
    }

    fn sub(&self, bytes: usize) {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.now.fetch_sub(bytes, Ordering::Relaxed);
        self.exported.dec_by(bytes);
    }

    fn now(&self) -> u64 {
        u64::try_from(self.now.load(Ordering::Relaxed)).unwrap_or(0)
    }

    fn high_water(&self) -> u64 {
        self.high_water.load(Ordering::Relaxed)
    }
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
    joins_family: Family<OutcomeLabels, Counter>,
    forward_delay: Histogram,
    queue_high_water: Gauge,
    queue_high_water_max: AtomicU64,
    connection_queue_high_water: Histogram,
    violations: Vec<(Violation, Counter)>,
    control_rate_limited: Counter,
    /// Indexed by `[source][outcome]`: member/relay, forwarded/coalesced.
    keyframes: [[Counter; 2]; 2],
    queued: ByteGauge,
    connection_queued_high_water: AtomicU64,
    connection_queued_high_water_gauge: Gauge,
    incoming: ByteGauge,
    mls: super::mls_metrics::MlsMetrics,
}

/// The outcomes a join attempt can have, exported at zero from the start: admitted, or one
/// of the refusals admission gives (a bad, forged, expired or early ticket, one for another
/// room or an unknown app, the app's join rate, a full room, the app's room limit, a
/// draining relay, a second `Join` on one connection). Codes that only end a session that
/// was admitted (kicked, replaced, `ticket_expired`, ...) are never join outcomes; anything
/// unlisted that does occur is still counted, under its own label, from its first time.
pub const JOIN_OUTCOMES: [JoinOutcome; 14] = [
    JoinOutcome::Joined,
    JoinOutcome::Redirected,
    JoinOutcome::Refused(ErrorCode::BadTicket),
    JoinOutcome::Refused(ErrorCode::BadSignature),
    JoinOutcome::Refused(ErrorCode::Expired),
    JoinOutcome::Refused(ErrorCode::NotYetValid),
    JoinOutcome::Refused(ErrorCode::WrongRoom),
    JoinOutcome::Refused(ErrorCode::UnknownApp),
    JoinOutcome::Refused(ErrorCode::RateLimited),
    JoinOutcome::Refused(ErrorCode::RoomFull),
    JoinOutcome::Refused(ErrorCode::TooManyRooms),
    JoinOutcome::Refused(ErrorCode::ShuttingDown),
    JoinOutcome::Refused(ErrorCode::ProtocolViolation),
    JoinOutcome::Refused(ErrorCode::Overloaded),
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics in a fresh registry with the prefix `sealroom`.
    // Long by design: one flat registration per metric family, in the order /metrics serves
    // them; splitting it would scatter the list that docs/OPERATIONS.md mirrors.
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
        let joins = JOIN_OUTCOMES
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
            joins_family.clone(),
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

        let violations_family = Family::<ViolationLabels, Counter>::default();
        let violations = Violation::ALL
            .iter()
            .map(|kind| {
                let labels = ViolationLabels { kind: kind.label() };
                (*kind, violations_family.get_or_create_owned(&labels))
            })
            .collect();
        registry.register(
            "violations",
            "Protocol violations by kind (each ends a connection or a stream)",
            violations_family,
        );
        let control_rate_limited = Counter::default();
        registry.register(
            "control_messages_rate_limited",
            "Control messages dropped over a member's control message rate",
            control_rate_limited.clone(),
        );
        let keyframes_family = Family::<KeyframeLabels, Counter>::default();
        let keyframes = ["member", "relay"].map(|source| {
            ["forwarded", "coalesced"].map(|outcome| {
                keyframes_family.get_or_create_owned(&KeyframeLabels { source, outcome })
            })
        });
        registry.register(
            "keyframe_requests",
            "Keyframe requests, from members or made by the relay for a receiver that fell behind, by outcome",
            keyframes_family,
        );
        let queued = ByteGauge::default();
        registry.register(
            "queued_bytes",
            "Frame bytes queued towards all connections (once per receiver)",
            queued.exported.clone(),
        );
        registry.register(
            "queued_bytes_high_water",
            "Most frame bytes ever queued towards all connections at once",
            queued.exported_high_water.clone(),
        );
        let connection_queued_high_water_gauge = Gauge::default();
        registry.register(
            "connection_queued_bytes_high_water",
            "Most frame bytes ever queued towards one connection",
            connection_queued_high_water_gauge.clone(),
        );
        let incoming = ByteGauge::default();
        registry.register(
            "incoming_buffered_bytes",
            "Bytes of incomplete frames held from clients' media streams",
            incoming.exported.clone(),
        );
        registry.register(
            "incoming_buffered_bytes_high_water",
            "Most bytes of incomplete incoming frames ever held at once",
            incoming.exported_high_water.clone(),
        );
        let mls = super::mls_metrics::MlsMetrics::register(&mut registry);

        Self {
            registry,
            rooms,
            members,
            connections,
            kinds,
            dropped,
            join_attempts,
            joins,
            joins_family,
            forward_delay,
            queue_high_water,
            queue_high_water_max: AtomicU64::new(0),
            connection_queue_high_water,
            violations,
            control_rate_limited,
            keyframes,
            queued,
            connection_queued_high_water: AtomicU64::new(0),
            connection_queued_high_water_gauge,
            incoming,
            mls,
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
        // A join sent to another node is that node's attempt, counted there.
        if outcome != JoinOutcome::Redirected {
            self.join_attempts.inc();
        }
        match self.joins.iter().find(|(o, _)| *o == outcome) {
            Some((_, counter)) => {
                counter.inc();
            }
            // Not an outcome admission gives today: counted all the same (a rare path,
            // so the family's lock is no cost).
            None => {
                self.joins_family
                    .get_or_create(&OutcomeLabels {
                        outcome: outcome.label(),
                    })
                    .inc();
            }
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

    /// A connection broke the protocol.
    pub fn violation(&self, kind: Violation) {
        if let Some((_, counter)) = self.violations.iter().find(|(k, _)| *k == kind) {
            counter.inc();
        }
    }

    /// A member's MLS message ended with `outcome`.
    pub fn mls_message(&self, outcome: crate::engine::MlsOutcome) {
        self.mls.count(outcome);
    }

    /// MLS messages that ended with `outcome` so far.
    pub fn mls_messages(&self, outcome: crate::engine::MlsOutcome) -> u64 {
        self.mls.get(outcome)
    }

    /// A member's control message was dropped over its rate.
    pub fn control_rate_limited(&self) {
        self.control_rate_limited.inc();
    }

    /// A keyframe request from `source` ended with `outcome`.
    pub fn keyframe_request(&self, source: KeyframeSource, outcome: KeyframeOutcome) {
        let source = match source {
            KeyframeSource::Member => 0,
            KeyframeSource::Relay => 1,
        };
        let outcome = match outcome {
            KeyframeOutcome::Forwarded => 0,
            KeyframeOutcome::Coalesced => 1,
            KeyframeOutcome::Ignored => return,
        };
        if let Some(counter) = self.keyframes.get(source).and_then(|s| s.get(outcome)) {
            counter.inc();
        }
    }

    /// `bytes` of frames were queued towards a connection that now has `connection_total`
    /// queued.
    pub fn bytes_queued(&self, bytes: usize, connection_total: usize) {
        self.queued.add(bytes);
        let total = connection_total as u64;
        if total
            > self
                .connection_queued_high_water
                .fetch_max(total, Ordering::Relaxed)
        {
            self.connection_queued_high_water_gauge
                .set(i64::try_from(total).unwrap_or(i64::MAX));
        }
    }

    /// `bytes` of queued frames were written out or dropped.
    pub fn bytes_dequeued(&self, bytes: usize) {
        self.queued.sub(bytes);
    }

    /// Bytes of incomplete frames held from clients grew by `bytes`.
    pub fn incoming_buffered(&self, bytes: usize) {
        self.incoming.add(bytes);
    }

    /// Bytes of incomplete frames held from clients shrank by `bytes`.
    pub fn incoming_released(&self, bytes: usize) {
        self.incoming.sub(bytes);
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
                .chain(ErrorCode::ALL.iter().filter_map(|code| {
                    let outcome = JoinOutcome::Refused(*code);
                    if JOIN_OUTCOMES.contains(&outcome) {
                        return None;
                    }
                    let labels = OutcomeLabels {
                        outcome: outcome.label(),
                    };
                    Some((outcome, self.joins_family.get(&labels)?.get()))
                }))
                .filter(|(_, n)| *n > 0)
                .collect(),
            queue_depth_high_water: self.queue_high_water_max.load(Ordering::Relaxed),
            violations: self
                .violations
                .iter()
                .map(|(kind, counter)| (*kind, counter.get()))
                .filter(|(_, n)| *n > 0)
                .collect(),
            control_messages_rate_limited: self.control_rate_limited.get(),
            keyframe_requests: KeyframeStats {
                member_forwarded: self.keyframes[0][0].get(),
                member_coalesced: self.keyframes[0][1].get(),
                relay_forwarded: self.keyframes[1][0].get(),
                relay_coalesced: self.keyframes[1][1].get(),
            },
            queued_bytes: self.queued.now(),
            queued_bytes_high_water: self.queued.high_water(),
            connection_queued_bytes_high_water: self
                .connection_queued_high_water
                .load(Ordering::Relaxed),
            incoming_buffered_bytes: self.incoming.now(),
            incoming_buffered_bytes_high_water: self.incoming.high_water(),
        }
    }
}

/// Keyframe requests by source and outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyframeStats {
    /// Members' requests passed to the publisher.
    pub member_forwarded: u64,
    /// Members' requests coalesced into one passed on shortly before.
    pub member_coalesced: u64,
    /// Requests the relay made for a receiver that fell behind, passed to the publisher.
    pub relay_forwarded: u64,
    /// Requests the relay made, coalesced into one passed on shortly before.
    pub relay_coalesced: u64,
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
    /// Protocol violations by kind (kinds that never happened are left out).
    pub violations: Vec<(Violation, u64)>,
    /// Control messages dropped over a member's rate.
    pub control_messages_rate_limited: u64,
    /// Keyframe requests by source and outcome.
    pub keyframe_requests: KeyframeStats,
    /// Frame bytes queued towards all connections now (once per receiver).
    pub queued_bytes: u64,
    /// Most frame bytes ever queued towards all connections at once.
    pub queued_bytes_high_water: u64,
    /// Most frame bytes ever queued towards one connection.
    pub connection_queued_bytes_high_water: u64,
    /// Bytes of incomplete frames held from clients' media streams now.
    pub incoming_buffered_bytes: u64,
    /// Most bytes of incomplete incoming frames ever held at once.
    pub incoming_buffered_bytes_high_water: u64,
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

    /// Violations of `kind`.
    pub fn violations(&self, kind: Violation) -> u64 {
        self.violations
            .iter()
            .find_map(|(k, n)| (*k == kind).then_some(*n))
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
    fn join_outcomes_are_only_those_a_join_can_have() {
        let metrics = Metrics::new();
        let text = metrics.encode();
        for outcome in [
            "joined",
            "bad_signature",
            "expired",
            "room_full",
            "shutting_down",
        ] {
            assert!(
                text.contains(&format!("sealroom_joins_total{{outcome=\"{outcome}\"}} 0")),
                "{outcome} missing:\n{text}"
            );
        }
        for never in [
            "kicked",
            "replaced",
            "room_dismissed",
            "ticket_expired",
            "slow_consumer",
        ] {
            assert!(
                !text.contains(&format!("outcome=\"{never}\"")),
                "{never} pre-created:\n{text}"
            );
        }
        // An outcome outside the list is still counted, not lost.
        metrics.join(JoinOutcome::Refused(ErrorCode::Internal));
        let text = metrics.encode();
        assert!(
            text.contains("sealroom_joins_total{outcome=\"internal\"} 1"),
            "{text}"
        );
        assert_eq!(
            metrics
                .snapshot()
                .joins(JoinOutcome::Refused(ErrorCode::Internal)),
            1
        );
    }

    #[test]
    fn two_relays_do_not_share_metrics() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.join(JoinOutcome::Joined);
        assert_eq!(b.snapshot().join_attempts, 0);
    }
}
