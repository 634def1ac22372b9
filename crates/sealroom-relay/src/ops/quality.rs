//! Connection quality per member, as the relay sees it: QUIC's round-trip time, congestion
//! window and packets lost towards the member, the bytes queued for it, the frames dropped
//! for it by reason, and the good/fair/poor verdict of [`sealroom_frame::quality`] (the
//! same rule the client applies).
//!
//! The admin API's member view shows it per member ([`ConnectionQuality`]). For
//! Prometheus, each connection's round-trip time and interval loss are observed into two
//! histograms per node, and the members are counted per verdict: no series is labelled by
//! user, room or connection, so the number of series does not grow with them (the
//! histograms have fixed buckets, the verdict gauge three values).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sealroom_frame::quality::{PathQuality, Verdict, loss_fraction};
use serde::Serialize;

use crate::engine::DropReason;

/// How often each connection's quality is sampled into the histograms, and the interval
/// its `loss` covers.
pub const QUALITY_INTERVAL: Duration = Duration::from_secs(2);

/// One member's connection as the relay sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionQuality {
    /// QUIC's smoothed round-trip time, in milliseconds.
    pub rtt_ms: f64,
    /// Congestion window towards the member, in bytes.
    pub cwnd: u64,
    /// Packets sent to the member on this connection.
    pub sent_packets: u64,
    /// Packets the relay declared lost (their reliable content was sent again).
    pub lost_packets: u64,
    /// Packets lost over the last sampling interval, as a fraction of those sent in it.
    pub loss: f64,
    /// Frame bytes queued towards the member now.
    pub queued_bytes: u64,
    /// Frames not delivered to the member, by drop reason (only reasons that occurred).
    pub dropped: BTreeMap<&'static str, u64>,
    /// The verdict over `rtt_ms` and `loss` (the relay measures no jitter).
    pub verdict: Verdict,
}

/// The per-connection counters the outbox keeps.
#[derive(Debug, Default)]
pub(crate) struct QualityState {
    inner: Mutex<QualityInner>,
}

#[derive(Debug, Default)]
struct QualityInner {
    dropped: BTreeMap<DropReason, u64>,
    base_sent: u64,
    base_lost: u64,
    loss: f64,
}

impl QualityState {
    fn lock(&self) -> std::sync::MutexGuard<'_, QualityInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `frames` frames for this member were dropped with `reason`. The reasons are a
    /// closed enum, so the map is bounded by their number.
    pub(crate) fn dropped(&self, reason: DropReason, frames: u64) {
        let mut inner = self.lock();
        let slot = inner.dropped.entry(reason).or_default();
        *slot = slot.saturating_add(frames);
    }

    /// Start a new interval: the loss since the previous sample becomes the reported one.
    pub(crate) fn sample(&self, conn: &quinn::Connection) -> (Duration, f64) {
        let path = conn.stats().path;
        let mut inner = self.lock();
        let sent = path.sent_packets.saturating_sub(inner.base_sent);
        let lost = path.lost_packets.saturating_sub(inner.base_lost);
        inner.base_sent = path.sent_packets;
        inner.base_lost = path.lost_packets;
        inner.loss = loss_fraction(lost, sent.saturating_sub(lost));
        (path.rtt, inner.loss)
    }

    /// The quality now.
    pub(crate) fn report(
        &self,
        conn: &quinn::Connection,
        queued_bytes: usize,
    ) -> ConnectionQuality {
        let path = conn.stats().path;
        let inner = self.lock();
        let verdict = PathQuality {
            rtt: path.rtt,
            loss: inner.loss,
            jitter: Duration::ZERO,
        }
        .verdict();
        ConnectionQuality {
            rtt_ms: path.rtt.as_secs_f64() * 1e3,
            cwnd: path.cwnd,
            sent_packets: path.sent_packets,
            lost_packets: path.lost_packets,
            loss: inner.loss,
            queued_bytes: queued_bytes as u64,
            dropped: inner
                .dropped
                .iter()
                .map(|(reason, n)| (reason.label(), *n))
                .collect(),
            verdict,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
}

/// The node's quality metrics: no per-user, per-room or per-connection label.
#[derive(Debug)]
pub struct QualityMetrics {
    rtt: Histogram,
    loss: Histogram,
    verdicts: Family<VerdictLabels, Gauge>,
}

const VERDICTS: [Verdict; 3] = [Verdict::Good, Verdict::Fair, Verdict::Poor];

impl QualityMetrics {
    /// Register the quality families in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let rtt = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6,
        ]);
        registry.register(
            "connection_rtt_seconds",
            "Round-trip time of each member's connection, sampled every 2 s",
            rtt.clone(),
        );
        let loss = Histogram::new([0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.08, 0.15, 0.3, 1.0]);
        registry.register(
            "connection_loss_ratio",
            "Fraction of packets lost towards each member over 2 s, sampled every 2 s",
            loss.clone(),
        );
        let verdicts = Family::<VerdictLabels, Gauge>::default();
        for verdict in VERDICTS {
            let _ = verdicts.get_or_create(&VerdictLabels {
                verdict: verdict.as_str(),
            });
        }
        registry.register(
            "members_by_verdict",
            "Connections by quality verdict at the last sample",
            verdicts.clone(),
        );
        Self {
            rtt,
            loss,
            verdicts,
        }
    }

    /// Record one sampling round: each connection's round-trip time and interval loss.
    pub(crate) fn observe(&self, samples: &[(Duration, f64)]) {
        let mut counts = [0i64; 3];
        for (rtt, loss) in samples {
            self.rtt.observe(rtt.as_secs_f64());
            self.loss.observe(*loss);
            let verdict = PathQuality {
                rtt: *rtt,
                loss: *loss,
                jitter: Duration::ZERO,
            }
            .verdict();
            counts[verdict as usize] += 1;
        }
        for (verdict, count) in VERDICTS.iter().zip(counts) {
            self.verdicts
                .get_or_create(&VerdictLabels {
                    verdict: verdict.as_str(),
                })
                .set(count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_families_have_no_per_member_labels_and_count_verdicts() {
        let mut registry = Registry::with_prefix("sealroom");
        let metrics = QualityMetrics::register(&mut registry);
        metrics.observe(&[
            (Duration::from_millis(20), 0.0),
            (Duration::from_millis(250), 0.0),
            (Duration::from_millis(20), 0.5),
        ]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains("sealroom_connection_rtt_seconds_count 3"),
            "{text}"
        );
        assert!(
            text.contains("sealroom_connection_loss_ratio_count 3"),
            "{text}"
        );
        for (verdict, n) in [("good", 1), ("fair", 1), ("poor", 1)] {
            let line = format!("sealroom_members_by_verdict{{verdict=\"{verdict}\"}} {n}");
            assert!(text.contains(&line), "{line} in {text}");
        }
        // Bounded cardinality: the only label anywhere is the verdict (and `le` of buckets).
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some(labels) = line.split('{').nth(1) {
                assert!(
                    labels.starts_with("le=") || labels.starts_with("verdict="),
                    "{line}"
                );
            }
        }
        // A later round replaces the verdict counts.
        metrics.observe(&[]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains("sealroom_members_by_verdict{verdict=\"poor\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn drops_are_kept_by_reason() {
        let state = QualityState::default();
        state.dropped(DropReason::QueueFull, 3);
        state.dropped(DropReason::StaleGroup, 1);
        state.dropped(DropReason::QueueFull, 2);
        let inner = state.lock();
        assert_eq!(inner.dropped.get(&DropReason::QueueFull), Some(&5));
        assert_eq!(inner.dropped.len(), 2);
    }
}
