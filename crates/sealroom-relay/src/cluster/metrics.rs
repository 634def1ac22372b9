//! The cluster's Prometheus series, in a registry of their own (prefix `sealroom_`), which
//! the node's internal listener appends to the relay's.
//!
//! | metric (prefix `sealroom_`) | type | labels |
//! | --- | --- | --- |
//! | `cluster_links` | gauge | |
//! | `cluster_link_auth_failures_total` | counter | `reason` |
//! | `cluster_link_events_refused_total` | counter | `reason` |
//! | `cluster_link_frames_total` | counter | `peer`, `direction` |
//! | `cluster_link_bytes_total` | counter | `peer`, `direction` |
//! | `cluster_link_drops_total` | counter | `peer` |
//! | `cluster_link_rtt_seconds` | gauge | `peer` |
//! | `cluster_directory_reachable` | gauge | |
//! | `cluster_nodes` | gauge | |
//! | `cluster_lease_held` | gauge | |
//! | `cluster_mls_members_moved_total` | counter | |
//!
//! Frames count envelope frames (one per frame whatever the members behind the link);
//! bytes are the UDP bytes of the link's QUIC connection; drops are frames the link's
//! egress dropped (its slow-receiver rules) as quinn's lost packets cannot be attributed.
//! The `peer` label is the peer's node index (nodes are few); no series carries a user,
//! member or room. The directory gauges are those of the last exchange with Redis: while it
//! is unreachable `cluster_directory_reachable` and `cluster_lease_held` read 0 and
//! `cluster_nodes` keeps the last count (a node without a directory reads 0 on all three).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::engine::CascadeError;

/// Why a link was refused before it was up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// The peer's proof of the cluster secret did not verify (wrong secret).
    BadProof,
    /// No hello, a malformed one, or not in time.
    NoHello,
    /// The peer's node index is this node's own, or not one that may dial this node.
    BadIndex,
}

impl AuthFailure {
    /// Every reason, for zeroed counters.
    pub const ALL: [Self; 3] = [Self::BadProof, Self::NoHello, Self::BadIndex];

    /// A stable lowercase label.
    pub const fn label(self) -> &'static str {
        match self {
            Self::BadProof => "bad_proof",
            Self::NoHello => "no_hello",
            Self::BadIndex => "bad_index",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerDirection {
    peer: String,
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

/// The cluster's series.
#[derive(Debug)]
pub struct ClusterMetrics {
    registry: Registry,
    links: Gauge,
    auth_failures: Family<ReasonLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    frames: Family<PeerDirection, Counter>,
    bytes: Family<PeerDirection, Counter>,
    drops: Family<PeerLabels, Counter>,
    rtt: Family<PeerLabels, Gauge<f64, AtomicU64>>,
    directory_reachable: Gauge,
    nodes: Gauge,
    lease_held: Gauge,
    mls_moved: Counter,
}

impl Default for ClusterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterMetrics {
    /// Every series registered, the labelled ones at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sealroom");
        let links = Gauge::default();
        registry.register(
            "cluster_links",
            "Authenticated links to other nodes up",
            links.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "cluster_link_auth_failures",
            "Node links refused before they were up, by reason",
            auth_failures.clone(),
        );
        for reason in AuthFailure::ALL {
            let _ = auth_failures.get_or_create(&ReasonLabels {
                reason: reason.label(),
            });
        }
        let refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "cluster_link_events_refused",
            "Cascade events from peers refused, by reason",
            refused.clone(),
        );
        for reason in CascadeError::ALL {
            let _ = refused.get_or_create(&ReasonLabels {
                reason: reason.label(),
            });
        }
        let frames = Family::<PeerDirection, Counter>::default();
        registry.register(
            "cluster_link_frames",
            "Media frames over each node link (one per frame whatever the members behind it)",
            frames.clone(),
        );
        let bytes = Family::<PeerDirection, Counter>::default();
        registry.register(
            "cluster_link_bytes",
            "UDP bytes of each node link's QUIC connection",
            bytes.clone(),
        );
        let drops = Family::<PeerLabels, Counter>::default();
        registry.register(
            "cluster_link_drops",
            "Frames towards each node link dropped by its egress",
            drops.clone(),
        );
        let rtt = Family::<PeerLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "cluster_link_rtt_seconds",
            "Round-trip time of each node link, as QUIC estimates it",
            rtt.clone(),
        );
        let directory_reachable = Gauge::default();
        registry.register(
            "cluster_directory_reachable",
            "1 when the last exchange with the directory on Redis succeeded",
            directory_reachable.clone(),
        );
        let nodes = Gauge::default();
        registry.register(
            "cluster_nodes",
            "Nodes with a live lease in the directory as last read, this node included",
            nodes.clone(),
        );
        let mls_moved = Counter::default();
        registry.register(
            "cluster_mls_members_moved",
            "Members sent to the node that holds their MLS room's group",
            mls_moved.clone(),
        );
        let lease_held = Gauge::default();
        registry.register(
            "cluster_lease_held",
            "1 when this node's own lease was in the directory at the last read",
            lease_held.clone(),
        );
        Self {
            registry,
            links,
            auth_failures,
            refused,
            frames,
            bytes,
            drops,
            rtt,
            directory_reachable,
            nodes,
            lease_held,
            mls_moved,
        }
    }

    /// The directory's state after an exchange with Redis: `Some(nodes, own lease held)`
    /// when it answered, `None` when it did not.
    pub(crate) fn set_directory(&self, read: Option<(usize, bool)>) {
        match read {
            Some((nodes, held)) => {
                self.directory_reachable.set(1);
                self.nodes.set(i64::try_from(nodes).unwrap_or(i64::MAX));
                self.lease_held.set(i64::from(held));
            }
            None => {
                self.directory_reachable.set(0);
                self.lease_held.set(0);
            }
        }
    }

    /// Encode the series in the OpenMetrics text format, without the closing `# EOF`, to
    /// append to another exposition.
    ///
    /// # Errors
    /// When writing to `out` fails.
    pub fn encode_into(&self, out: &mut String) -> std::fmt::Result {
        prometheus_client::encoding::text::encode_registry(out, &self.registry)
    }

    /// The registry, to encode.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    /// Links refused before they were up, over all reasons.
    pub fn auth_failures(&self) -> u64 {
        AuthFailure::ALL
            .iter()
            .map(|r| {
                self.auth_failures
                    .get_or_create(&ReasonLabels { reason: r.label() })
                    .get()
            })
            .sum()
    }

    pub(crate) fn refused(&self, reason: CascadeError) {
        self.refused
            .get_or_create(&ReasonLabels {
                reason: reason.label(),
            })
            .inc();
    }

    /// Bring the count of members moved to their MLS room's node up to `total` (the core
    /// counts; the count is sampled).
    pub(crate) fn set_mls_members_moved(&self, total: u64) {
        self.mls_moved
            .inc_by(total.saturating_sub(self.mls_moved.get()));
    }

    /// Members sent to the node that holds their MLS room's group, as last sampled.
    pub fn mls_members_moved(&self) -> u64 {
        self.mls_moved.get()
    }

    pub(crate) fn set_links(&self, links: usize) {
        self.links.set(i64::try_from(links).unwrap_or(i64::MAX));
    }

    /// Bring a link's counters up to `now` (they are sampled, not counted per frame).
    pub(crate) fn sample_link(&self, peer: &str, sample: &LinkSample, last: &mut LinkSample) {
        let dir = |direction| PeerDirection {
            peer: peer.to_owned(),
            direction,
        };
        let peer_labels = PeerLabels {
            peer: peer.to_owned(),
        };
        self.frames
            .get_or_create(&dir("out"))
            .inc_by(sample.frames_out.saturating_sub(last.frames_out));
        self.frames
            .get_or_create(&dir("in"))
            .inc_by(sample.frames_in.saturating_sub(last.frames_in));
        self.bytes
            .get_or_create(&dir("out"))
            .inc_by(sample.bytes_out.saturating_sub(last.bytes_out));
        self.bytes
            .get_or_create(&dir("in"))
            .inc_by(sample.bytes_in.saturating_sub(last.bytes_in));
        self.drops
            .get_or_create(&peer_labels)
            .inc_by(sample.drops.saturating_sub(last.drops));
        self.rtt.get_or_create(&peer_labels).set(sample.rtt_secs);
        *last = *sample;
    }
}

/// A link's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct LinkSample {
    pub(crate) frames_out: u64,
    pub(crate) frames_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) bytes_in: u64,
    pub(crate) drops: u64,
    pub(crate) rtt_secs: f64,
}
