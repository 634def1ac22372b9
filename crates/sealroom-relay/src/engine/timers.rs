//! Timers: a table of deadlines, one per connection and [`Timer`] kind, that the driver
//! reads with [`RelayCore::poll_timeout`] and fires with [`RelayCore::handle_timeout`].
//!
//! Two things happen in the core when time passes with no input: a connection that has not
//! joined within `join_timeout_secs` is closed, and a member whose ticket expired (leeway
//! included) is removed. Each has a timer kind. The other timed rules need none, because
//! nothing happens when their time elapses, only at the next input, which carries the time:
//! rate limits are token buckets refilled on use, keyframe requests are coalesced by
//! comparing with the last request, and feedback is throttled the same way. Idle
//! connections are QUIC's business (the transport's idle timeout), not the core's.
//!
//! Ticket validity is wall-clock seconds, so ticket expiry is kept on the wall clock and
//! checked against [`Now::unix_secs`]: a pass of `handle_timeout` removes exactly the
//! members whose ticket is past its expiry at that time, whatever the monotonic clock says.
//! [`RelayCore::poll_timeout`] converts the earliest wall-clock deadline to an [`Instant`]
//! through the latest time the core was given; whole seconds make that up to a second late.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use sealroom_frame::control::{ErrorCode, LeaveReason};

use super::room::ConnPhase;
use super::{ConnId, Now, RelayCore, TimeoutOutcome, Violation};

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Timer {
    /// The connection must have joined by then (`join_timeout_secs` after its first packet).
    JoinDeadline,
    /// The member's ticket expires then (its `exp` plus `ticket_leeway_secs`).
    TicketExpiry,
}

/// When a timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deadline {
    /// On the monotonic clock.
    At(Instant),
    /// On the wall clock, seconds since the Unix epoch.
    UnixSecs(u64),
}

/// The armed timers, ordered by deadline. At most one timer of each kind per connection,
/// so the table is bounded by the connections the core knows.
#[derive(Debug, Default)]
pub(super) struct TimerTable {
    monotonic: BTreeSet<(Instant, ConnId, Timer)>,
    wall: BTreeSet<(u64, ConnId, Timer)>,
    armed: HashMap<(ConnId, Timer), Deadline>,
    /// The latest time the core was given with a wall-clock timer, to convert wall-clock
    /// deadlines into instants.
    latest: Option<Now>,
}

impl TimerTable {
    /// Arm `timer` of `conn` for `deadline`, replacing the one armed before.
    pub(super) fn set(&mut self, conn: ConnId, timer: Timer, deadline: Deadline, now: Now) {
        self.stop(conn, timer);
        match deadline {
            Deadline::At(at) => {
                self.monotonic.insert((at, conn, timer));
            }
            Deadline::UnixSecs(secs) => {
                self.observe(now);
                self.wall.insert((secs, conn, timer));
            }
        }
        self.armed.insert((conn, timer), deadline);
    }

    /// Disarm `timer` of `conn`, if armed.
    pub(super) fn stop(&mut self, conn: ConnId, timer: Timer) {
        match self.armed.remove(&(conn, timer)) {
            Some(Deadline::At(at)) => {
                self.monotonic.remove(&(at, conn, timer));
            }
            Some(Deadline::UnixSecs(secs)) => {
                self.wall.remove(&(secs, conn, timer));
            }
            None => {}
        }
    }

    /// Disarm every timer of `conn` (it is gone).
    pub(super) fn stop_all(&mut self, conn: ConnId) {
        self.stop(conn, Timer::JoinDeadline);
        self.stop(conn, Timer::TicketExpiry);
    }

    fn observe(&mut self, now: Now) {
        if self
            .latest
            .is_none_or(|latest| now.instant >= latest.instant)
        {
            self.latest = Some(now);
        }
    }

    /// The earliest deadline, as an instant.
    pub(super) fn next(&self) -> Option<Instant> {
        let monotonic = self.monotonic.first().map(|(at, ..)| *at);
        let wall = self.wall.first().and_then(|(secs, ..)| {
            let latest = self.latest?;
            let ahead = secs.saturating_sub(latest.unix_secs);
            Some(latest.instant + std::time::Duration::from_secs(ahead))
        });
        match (monotonic, wall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Disarm and return one timer that is due at `now`.
    pub(super) fn pop_due(&mut self, now: Now) -> Option<(ConnId, Timer)> {
        let (conn, timer) = match (self.monotonic.first(), self.wall.first()) {
            (Some(&(at, conn, timer)), _) if at <= now.instant => (conn, timer),
            (_, Some(&(secs, conn, timer))) if secs <= now.unix_secs => (conn, timer),
            _ => return None,
        };
        self.stop(conn, timer);
        Some((conn, timer))
    }

    /// Armed timers.
    #[cfg(any(test, feature = "testing"))]
    pub(super) fn len(&self) -> usize {
        self.armed.len()
    }

    /// Whether `timer` of `conn` is armed.
    #[cfg(any(test, feature = "testing"))]
    pub(super) fn is_armed(&self, conn: ConnId, timer: Timer) -> bool {
        self.armed.contains_key(&(conn, timer))
    }
}

impl RelayCore {
    /// The timer table's invariant: each connection has exactly the timer of its phase
    /// armed (the join deadline while it waits for `Join`, the ticket expiry once it is a
    /// member), and no timer outlives its connection.
    #[cfg(any(test, feature = "testing"))]
    pub(super) fn timer_violation(&self) -> Option<String> {
        for (conn, state) in &self.conns {
            let timer = match state.phase {
                ConnPhase::Connected => Timer::JoinDeadline,
                ConnPhase::Joined { .. } => Timer::TicketExpiry,
            };
            if !self.timers.is_armed(*conn, timer) {
                return Some(format!("connection {conn} has no {timer:?} timer"));
            }
        }
        if self.timers.len() != self.conns.len() {
            return Some(format!(
                "{} timers armed for {} connections",
                self.timers.len(),
                self.conns.len()
            ));
        }
        None
    }

    /// When the driver must call [`RelayCore::handle_timeout`] next; `None` when no timer is
    /// armed. Any input may arm an earlier timer (a new connection, a join, a refreshed
    /// ticket), so the driver asks again after each.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Advance time to `now` and fire the timers that are due: connections that did not
    /// join within the join timeout are closed and members whose ticket expired (leeway
    /// included) are removed.
    pub fn handle_timeout(&mut self, now: Now) -> TimeoutOutcome {
        self.timers.observe(now);
        let mut outcome = TimeoutOutcome::default();
        while let Some((conn, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::JoinDeadline => {
                    let waiting = self
                        .conns
                        .get(&conn)
                        .is_some_and(|c| matches!(c.phase, ConnPhase::Connected));
                    if waiting {
                        outcome.no_join += 1;
                        self.handle_violation(conn, Violation::NoJoin);
                    }
                }
                Timer::TicketExpiry => {
                    if self.conns.contains_key(&conn) {
                        outcome.tickets_expired += 1;
                        self.remove_connection_with(
                            conn,
                            ErrorCode::TicketExpired,
                            "the ticket expired and was not refreshed",
                            LeaveReason::TicketExpired,
                        );
                    }
                }
            }
        }
        outcome
    }
}
