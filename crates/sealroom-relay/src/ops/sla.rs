//! The join success rate per 5-minute window: the availability figure of the service level
//! agreement a real-time room service promises ("communication success rate": successful
//! room entries divided by entry attempts, per window).
//!
//! [`SlaTracker`] is plain data with no clock and no I/O: the caller passes the wall-clock
//! time (seconds since the Unix epoch) with every join outcome, so tests and replays drive it
//! deterministically. Windows are aligned to multiples of the window length since the epoch
//! (12:00:00, 12:05:00, ...), which is how a Prometheus `rate(...[5m])` query over the
//! `joins` counters lines up with the same figure. Only the newest
//! [`SlaConfig::retained_windows`] windows are kept, so memory is bounded whatever the load.
//!
//! Refusals a caller causes itself (a forged or expired ticket, a room the ticket does not
//! name) are counted but excluded from the rate, as the commercial SLAs this models exclude
//! failures caused by the customer; see [`counts_against_sla`].

use std::collections::VecDeque;

use sealroom_frame::control::ErrorCode;
use serde::Serialize;

use crate::engine::JoinOutcome;

/// Default window length: five minutes.
pub const DEFAULT_WINDOW_SECS: u64 = 300;
/// Default number of windows kept: 288 five-minute windows, one day.
pub const DEFAULT_RETAINED_WINDOWS: usize = 288;
/// Default target: 99% of counted join attempts succeed.
pub const DEFAULT_TARGET: f64 = 0.99;

/// How the tracker windows and judges join outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaConfig {
    /// Window length in seconds (at least 1).
    pub window_secs: u64,
    /// How many of the newest windows are kept (at least 1).
    pub retained_windows: usize,
    /// The success rate a window must reach to meet the agreement, between 0 and 1.
    pub target: f64,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            window_secs: DEFAULT_WINDOW_SECS,
            retained_windows: DEFAULT_RETAINED_WINDOWS,
            target: DEFAULT_TARGET,
        }
    }
}

impl SlaConfig {
    /// Set the window length in seconds.
    #[must_use]
    pub fn window_secs(mut self, secs: u64) -> Self {
        self.window_secs = secs;
        self
    }
    /// Set how many windows are kept.
    #[must_use]
    pub fn retained_windows(mut self, windows: usize) -> Self {
        self.retained_windows = windows;
        self
    }
    /// Set the target success rate.
    #[must_use]
    pub fn target(mut self, target: f64) -> Self {
        self.target = target;
        self
    }
}

/// The outcome of one join attempt, as the SLA sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlaOutcome {
    /// The member entered the room.
    Succeeded,
    /// The relay refused or failed the join for a reason of its own (a limit, shutdown, an
    /// internal error): counts against the agreement.
    Failed,
    /// The join was refused for a reason the caller caused (bad ticket, wrong room, ...):
    /// recorded, but excluded from the rate.
    Excluded,
}

impl SlaOutcome {
    /// How the relay core's decision on a join counts.
    pub fn from_join(outcome: JoinOutcome) -> Self {
        match outcome {
            JoinOutcome::Joined => Self::Succeeded,
            JoinOutcome::Refused(code) => Self::from_refusal(code),
            // Sent to another node of the cluster, where it is counted.
            JoinOutcome::Redirected => Self::Excluded,
        }
    }

    /// Classify a refusal by its error code with [`counts_against_sla`].
    pub fn from_refusal(code: ErrorCode) -> Self {
        if counts_against_sla(code) {
            Self::Failed
        } else {
            Self::Excluded
        }
    }
}

/// Whether a join refused with `code` counts as a failed attempt in the success rate.
///
/// Refusals that only the caller can fix (its ticket is forged, malformed, expired, not yet
/// valid, for another room or an unknown app, or grants too little; it broke the protocol;
/// it joins more often than its own user or address may, `RateLimited`) are excluded.
/// Everything else the relay answered with, including a full room, an app at its room
/// limit, the relay's own overload (`Overloaded`: the app's join budget, the memory
/// ceiling, the handshake budget), shutdown and internal errors, counts against the rate.
pub fn counts_against_sla(code: ErrorCode) -> bool {
    !matches!(
        code,
        ErrorCode::BadSignature
            | ErrorCode::Expired
            | ErrorCode::NotYetValid
            | ErrorCode::WrongRoom
            | ErrorCode::UnknownApp
            | ErrorCode::NotPermitted
            | ErrorCode::BadTicket
            | ErrorCode::ProtocolViolation
            | ErrorCode::RateLimited
    )
}

/// Counts of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Counts {
    succeeded: u64,
    failed: u64,
    excluded: u64,
}

/// One window of the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowSummary {
    /// Window start, seconds since the Unix epoch (inclusive).
    pub start: u64,
    /// Window end, seconds since the Unix epoch (exclusive).
    pub end: u64,
    /// Join attempts that count: succeeded plus failed.
    pub attempts: u64,
    /// Joins that succeeded.
    pub succeeded: u64,
    /// Joins the relay refused or failed for its own reasons.
    pub failed: u64,
    /// Joins refused for reasons the caller caused, not in `attempts`.
    pub excluded: u64,
    /// `succeeded / attempts`; `None` when nothing counted in the window.
    pub success_rate: Option<f64>,
    /// Whether the window reached the target (a window with no counted attempts meets it).
    pub met: bool,
    /// Whether the window is still open (it contains `now`).
    pub open: bool,
}

/// The JSON summary `/sla` serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlaSummary {
    /// Window length in seconds.
    pub window_secs: u64,
    /// The target success rate.
    pub target: f64,
    /// Retained windows with at least one recorded join, oldest first.
    pub windows: Vec<WindowSummary>,
    /// Closed windows that missed the target.
    pub windows_missed: usize,
    /// Success rate over all retained windows; `None` when nothing counted.
    pub overall_success_rate: Option<f64>,
}

/// Join outcomes per window, for the newest windows only.
#[derive(Debug, Clone)]
pub struct SlaTracker {
    config: SlaConfig,
    /// (window index since the epoch, counts), oldest first, indices strictly increasing.
    windows: VecDeque<(u64, Counts)>,
}

impl SlaTracker {
    /// A tracker with no recorded joins. Zero lengths in `config` are raised to 1.
    pub fn new(mut config: SlaConfig) -> Self {
        config.window_secs = config.window_secs.max(1);
        config.retained_windows = config.retained_windows.max(1);
        config.target = if config.target.is_finite() {
            config.target.clamp(0.0, 1.0)
        } else {
            DEFAULT_TARGET
        };
        Self {
            config,
            windows: VecDeque::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> SlaConfig {
        self.config
    }

    /// Record one join outcome at `now` (seconds since the Unix epoch).
    ///
    /// An outcome older than every retained window is dropped; one that falls into an older
    /// retained window (a clock that stepped back) is added to that window.
    pub fn handle_join(&mut self, now: u64, outcome: SlaOutcome) {
        let index = now / self.config.window_secs;
        let counts = match self.windows.iter().position(|(i, _)| *i >= index) {
            Some(pos) if self.windows[pos].0 == index => &mut self.windows[pos].1,
            Some(pos) => {
                if pos == 0 && self.windows.len() >= self.config.retained_windows {
                    return;
                }
                self.windows.insert(pos, (index, Counts::default()));
                &mut self.windows[pos].1
            }
            None => {
                self.windows.push_back((index, Counts::default()));
                let last = self.windows.len() - 1;
                &mut self.windows[last].1
            }
        };
        match outcome {
            SlaOutcome::Succeeded => counts.succeeded += 1,
            SlaOutcome::Failed => counts.failed += 1,
            SlaOutcome::Excluded => counts.excluded += 1,
        }
        while self.windows.len() > self.config.retained_windows {
            self.windows.pop_front();
        }
    }

    /// The summary of every retained window, as of `now` (which only decides which window
    /// is still open).
    pub fn summary(&self, now: u64) -> SlaSummary {
        let current = now / self.config.window_secs;
        let (mut total_ok, mut total_attempts) = (0u64, 0u64);
        let windows: Vec<WindowSummary> = self
            .windows
            .iter()
            .map(|(index, counts)| {
                let attempts = counts.succeeded + counts.failed;
                total_ok += counts.succeeded;
                total_attempts += attempts;
                let success_rate = rate(counts.succeeded, attempts);
                let start = index * self.config.window_secs;
                WindowSummary {
                    start,
                    end: start + self.config.window_secs,
                    attempts,
                    succeeded: counts.succeeded,
                    failed: counts.failed,
                    excluded: counts.excluded,
                    success_rate,
                    met: success_rate.is_none_or(|r| r >= self.config.target),
                    open: *index >= current,
                }
            })
            .collect();
        SlaSummary {
            window_secs: self.config.window_secs,
            target: self.config.target,
            windows_missed: windows.iter().filter(|w| !w.open && !w.met).count(),
            windows,
            overall_success_rate: rate(total_ok, total_attempts),
        }
    }
}

impl SlaTracker {
    /// The retained windows as (window index since the epoch, succeeded, failed,
    /// excluded), oldest first: what [`crate::sla_store`] writes.
    pub fn windows(&self) -> Vec<[u64; 4]> {
        self.windows
            .iter()
            .map(|(index, c)| [*index, c.succeeded, c.failed, c.excluded])
            .collect()
    }

    /// Add windows read back by [`crate::sla_store`] to the ones recorded since; the
    /// newest [`SlaConfig::retained_windows`] are kept.
    pub fn restore(&mut self, windows: &[[u64; 4]]) {
        for &[index, succeeded, failed, excluded] in windows {
            let counts = Counts {
                succeeded,
                failed,
                excluded,
            };
            match self.windows.iter().position(|(i, _)| *i >= index) {
                Some(pos) if self.windows[pos].0 == index => {
                    let held = &mut self.windows[pos].1;
                    held.succeeded = held.succeeded.saturating_add(succeeded);
                    held.failed = held.failed.saturating_add(failed);
                    held.excluded = held.excluded.saturating_add(excluded);
                }
                Some(pos) => self.windows.insert(pos, (index, counts)),
                None => self.windows.push_back((index, counts)),
            }
        }
        while self.windows.len() > self.config.retained_windows {
            self.windows.pop_front();
        }
    }
}

impl Default for SlaTracker {
    fn default() -> Self {
        Self::new(SlaConfig::default())
    }
}

#[allow(clippy::cast_precision_loss)]
fn rate(ok: u64, attempts: u64) -> Option<f64> {
    (attempts > 0).then(|| ok as f64 / attempts as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000; // a multiple of 300

    #[test]
    fn windows_are_aligned_and_judged_against_the_target() {
        let mut sla = SlaTracker::default();
        for _ in 0..99 {
            sla.handle_join(T0 + 10, SlaOutcome::Succeeded);
        }
        sla.handle_join(T0 + 299, SlaOutcome::Failed);
        // Second window: 98 of 100.
        for _ in 0..98 {
            sla.handle_join(T0 + 300, SlaOutcome::Succeeded);
        }
        sla.handle_join(T0 + 301, SlaOutcome::Failed);
        sla.handle_join(T0 + 302, SlaOutcome::Failed);

        let summary = sla.summary(T0 + 700);
        assert_eq!(summary.windows.len(), 2);
        let first = &summary.windows[0];
        assert_eq!((first.start, first.end), (T0, T0 + 300));
        assert_eq!(
            (first.attempts, first.succeeded, first.failed),
            (100, 99, 1)
        );
        assert_eq!(first.success_rate, Some(0.99));
        assert!(first.met);
        let second = &summary.windows[1];
        assert_eq!(second.start, T0 + 300);
        assert_eq!(second.success_rate, Some(0.98));
        assert!(!second.met);
        assert_eq!(summary.windows_missed, 1);
        assert_eq!(summary.overall_success_rate, Some(197.0 / 200.0));
    }

    #[test]
    fn caller_caused_refusals_are_recorded_but_not_counted() {
        let mut sla = SlaTracker::default();
        sla.handle_join(T0, SlaOutcome::Succeeded);
        sla.handle_join(T0, SlaOutcome::from_refusal(ErrorCode::BadSignature));
        sla.handle_join(T0, SlaOutcome::from_refusal(ErrorCode::Expired));
        let w = &sla.summary(T0).windows[0];
        assert_eq!((w.attempts, w.succeeded, w.excluded), (1, 1, 2));
        assert_eq!(w.success_rate, Some(1.0));
        assert!(w.met && w.open);

        sla.handle_join(T0, SlaOutcome::from_refusal(ErrorCode::RoomFull));
        let w = &sla.summary(T0).windows[0];
        assert_eq!((w.attempts, w.failed), (2, 1));
        assert!(!w.met);
        // An open window that misses is not yet counted as missed.
        assert_eq!(sla.summary(T0).windows_missed, 0);
        assert_eq!(sla.summary(T0 + 300).windows_missed, 1);
    }

    #[test]
    fn classification_of_refusals() {
        assert!(counts_against_sla(ErrorCode::RoomFull));
        assert!(counts_against_sla(ErrorCode::ShuttingDown));
        assert!(counts_against_sla(ErrorCode::Internal));
        assert!(counts_against_sla(ErrorCode::Overloaded));
        // A caller over its own user's or address's join rate fails on its own account.
        assert!(!counts_against_sla(ErrorCode::RateLimited));
        assert!(!counts_against_sla(ErrorCode::WrongRoom));
        assert!(!counts_against_sla(ErrorCode::BadTicket));
        assert_eq!(
            SlaOutcome::from_join(JoinOutcome::Joined),
            SlaOutcome::Succeeded
        );
        assert_eq!(
            SlaOutcome::from_join(JoinOutcome::Refused(ErrorCode::RoomFull)),
            SlaOutcome::Failed
        );
        assert_eq!(
            SlaOutcome::from_join(JoinOutcome::Refused(ErrorCode::BadSignature)),
            SlaOutcome::Excluded
        );
    }

    #[test]
    fn retained_windows_are_bounded_and_old_outcomes_dropped() {
        let mut sla = SlaTracker::new(SlaConfig::default().window_secs(60).retained_windows(3));
        for minute in 0..10 {
            sla.handle_join(T0 + minute * 60, SlaOutcome::Succeeded);
        }
        let summary = sla.summary(T0 + 600);
        let starts: Vec<u64> = summary.windows.iter().map(|w| w.start).collect();
        assert_eq!(starts, vec![T0 + 420, T0 + 480, T0 + 540]);
        // Older than everything kept: dropped.
        sla.handle_join(T0, SlaOutcome::Failed);
        assert_eq!(sla.summary(T0 + 600).windows.len(), 3);
        assert!(sla.summary(T0 + 600).windows.iter().all(|w| w.failed == 0));
    }

    #[test]
    fn a_clock_step_back_lands_in_its_own_window_in_order() {
        let mut sla = SlaTracker::new(SlaConfig::default().window_secs(60).retained_windows(5));
        sla.handle_join(T0 + 120, SlaOutcome::Succeeded);
        sla.handle_join(T0, SlaOutcome::Failed);
        sla.handle_join(T0 + 60, SlaOutcome::Succeeded);
        let starts: Vec<u64> = sla.summary(T0).windows.iter().map(|w| w.start).collect();
        assert_eq!(starts, vec![T0, T0 + 60, T0 + 120]);
        assert_eq!(sla.summary(T0).windows[0].failed, 1);
    }

    #[test]
    fn degenerate_config_is_sanitised() {
        let sla = SlaTracker::new(SlaConfig {
            window_secs: 0,
            retained_windows: 0,
            target: f64::NAN,
        });
        assert_eq!(sla.config().window_secs, 1);
        assert_eq!(sla.config().retained_windows, 1);
        assert_eq!(sla.config().target, DEFAULT_TARGET);
    }

    #[test]
    fn summary_serialises_to_json_shape() {
        let mut sla = SlaTracker::default();
        sla.handle_join(T0, SlaOutcome::Succeeded);
        let json = serde_json::to_value(sla.summary(T0)).unwrap();
        assert_eq!(json["windows"][0]["start"], T0);
        assert_eq!(json["windows"][0]["met"], true);
        assert_eq!(json["target"], 0.99);
    }
}
