//! Timers: join deadlines and ticket expiry.

use sealroom_frame::control::{ErrorCode, LeaveReason};

use super::room::*;
use super::*;

impl RelayCore {
    /// Advance time: connections that did not join within the join timeout are closed and
    /// members whose ticket expired (leeway included) are removed.
    pub fn handle_timeout(&mut self, now: Now) -> TimeoutOutcome {
        let join_timeout = self.limits.join_timeout();
        let late: Vec<ConnId> = self
            .conns
            .iter()
            .filter_map(|(id, c)| match c.phase {
                ConnPhase::Connected { since }
                    if now.instant.saturating_duration_since(since) >= join_timeout =>
                {
                    Some(*id)
                }
                _ => None,
            })
            .collect();
        let mut outcome = TimeoutOutcome {
            no_join: late.len(),
            tickets_expired: 0,
        };
        for conn in late {
            self.handle_violation(conn, Violation::NoJoin);
        }
        let leeway = self.limits.ticket_leeway_secs;
        let expired: Vec<ConnId> = self
            .rooms
            .values()
            .flat_map(|room| room.members.values())
            .filter(|m| now.unix_secs >= m.ticket_exp.saturating_add(leeway))
            .map(|m| m.conn)
            .collect();
        outcome.tickets_expired = expired.len();
        for conn in expired {
            self.remove_connection_with(
                conn,
                ErrorCode::TicketExpired,
                "the ticket expired and was not refreshed",
                LeaveReason::TicketExpired,
            );
        }
        outcome
    }
}
