//! The call-quality verdict: one rule, shared by the client and the relay, that turns a
//! path's round-trip time, loss and jitter into good, fair or poor, the way call apps show
//! a network-quality indicator.
//!
//! It lives beside the wire formats because both sides must agree on it and neither may
//! depend on the other; it reads no clock and does no I/O.
//!
//! The rule (the thresholds are [`FAIR`] and [`POOR`]): a path is **poor** when any of
//! loss, round-trip time or jitter reaches its poor threshold, else **fair** when any
//! reaches its fair threshold, else **good**. The thresholds follow what interactive voice
//! tolerates: ITU-T G.114 puts one-way delay up to 150 ms (a 300 ms round trip) as
//! acceptable for most conversations, Opus with forward error correction hides a few
//! percent of lost packets, and a jitter buffer of 30-60 ms is what real-time clients
//! usually run with.
//!
//! ```
//! use std::time::Duration;
//! use sealroom_frame::quality::{PathQuality, Verdict};
//!
//! let path = PathQuality {
//!     rtt: Duration::from_millis(40),
//!     loss: 0.005,
//!     jitter: Duration::from_millis(4),
//! };
//! assert_eq!(path.verdict(), Verdict::Good);
//! let lossy = PathQuality { loss: 0.03, ..path };
//! assert_eq!(lossy.verdict(), Verdict::Fair);
//! ```

use std::fmt;
use std::time::Duration;

/// How a call is going on one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Below every fair threshold.
    Good,
    /// At or above a fair threshold, below every poor one: noticeable, still usable.
    Fair,
    /// At or above a poor threshold: audio breaks up or lags.
    Poor,
}

impl Verdict {
    /// The lowercase name (`good`, `fair`, `poor`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Fair => "fair",
            Self::Poor => "poor",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Thresholds of one verdict level: reaching any of them gives that level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Round-trip time.
    pub rtt: Duration,
    /// Fraction of packets or frames lost (0.0 to 1.0).
    pub loss: f64,
    /// Interarrival jitter (RFC 3550, section 6.4.1).
    pub jitter: Duration,
}

/// From here a path is at least fair: 200 ms round trip, 2 % loss, 30 ms jitter.
pub const FAIR: Thresholds = Thresholds {
    rtt: Duration::from_millis(200),
    loss: 0.02,
    jitter: Duration::from_millis(30),
};

/// From here a path is poor: 400 ms round trip, 8 % loss, 60 ms jitter.
pub const POOR: Thresholds = Thresholds {
    rtt: Duration::from_millis(400),
    loss: 0.08,
    jitter: Duration::from_millis(60),
};

/// What the verdict is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PathQuality {
    /// Round-trip time (QUIC's smoothed estimate).
    pub rtt: Duration,
    /// Fraction lost over the last interval (0.0 to 1.0); the worst direction known.
    pub loss: f64,
    /// Interarrival jitter of received media; zero when nothing is received.
    pub jitter: Duration,
}

impl PathQuality {
    /// The verdict of the rule above.
    pub fn verdict(&self) -> Verdict {
        if self.reaches(&POOR) {
            Verdict::Poor
        } else if self.reaches(&FAIR) {
            Verdict::Fair
        } else {
            Verdict::Good
        }
    }

    fn reaches(&self, level: &Thresholds) -> bool {
        self.rtt >= level.rtt || self.loss >= level.loss || self.jitter >= level.jitter
    }
}

/// Loss as a fraction: `lost` of `lost + delivered`, zero when there was nothing.
pub fn loss_fraction(lost: u64, delivered: u64) -> f64 {
    let total = lost.saturating_add(delivered);
    if total == 0 {
        0.0
    } else {
        // Counts below 2^53 convert exactly; a fraction needs no more.
        lost as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(rtt_ms: u64, loss: f64, jitter_ms: u64) -> PathQuality {
        PathQuality {
            rtt: Duration::from_millis(rtt_ms),
            loss,
            jitter: Duration::from_millis(jitter_ms),
        }
    }

    #[test]
    fn each_quantity_alone_can_make_a_path_fair_or_poor() {
        assert_eq!(path(0, 0.0, 0).verdict(), Verdict::Good);
        assert_eq!(path(199, 0.019, 29).verdict(), Verdict::Good);
        assert_eq!(path(200, 0.0, 0).verdict(), Verdict::Fair);
        assert_eq!(path(0, 0.02, 0).verdict(), Verdict::Fair);
        assert_eq!(path(0, 0.0, 30).verdict(), Verdict::Fair);
        assert_eq!(path(400, 0.0, 0).verdict(), Verdict::Poor);
        assert_eq!(path(0, 0.08, 0).verdict(), Verdict::Poor);
        assert_eq!(path(0, 0.0, 60).verdict(), Verdict::Poor);
        // The worst quantity decides.
        assert_eq!(path(10, 0.5, 1).verdict(), Verdict::Poor);
    }

    #[test]
    fn loss_fraction_of_nothing_is_zero() {
        assert!(loss_fraction(0, 0).abs() < f64::EPSILON);
        assert!((loss_fraction(1, 3) - 0.25).abs() < 1e-12);
        assert!((loss_fraction(5, 0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn verdicts_order_from_good_to_poor() {
        assert!(Verdict::Good < Verdict::Fair && Verdict::Fair < Verdict::Poor);
        assert_eq!(Verdict::Fair.to_string(), "fair");
    }
}
