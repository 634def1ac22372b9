//! The timer table: deadlines the driver reads with `poll_timeout`, fired by
//! `handle_timeout` with explicit instants.

use std::time::Duration;

use super::*;

fn limits() -> Limits {
    Limits {
        ticket_leeway_secs: 5,
        join_timeout_secs: 10,
        ..Limits::default()
    }
}

#[test]
fn an_idle_core_has_no_deadline() {
    let h = Harness::new(limits());
    assert_eq!(h.core.poll_timeout(), None);
}

#[test]
fn a_connection_that_does_not_join_is_closed_at_its_deadline_not_before() {
    let mut h = Harness::new(limits());
    let start = h.now;
    let conn = h.connect();
    let deadline = start.instant + Duration::from_secs(10);
    assert_eq!(h.core.poll_timeout(), Some(deadline));
    let just_before = Now {
        instant: deadline - Duration::from_millis(1),
        unix_secs: start.unix_secs + 9,
    };
    assert_eq!(h.core.handle_timeout(just_before).no_join, 0);
    assert_eq!(h.core.connection_count(), 1);
    let at = Now {
        instant: deadline,
        unix_secs: start.unix_secs + 10,
    };
    assert_eq!(h.core.handle_timeout(at).no_join, 1);
    assert_eq!(
        refusal(&h.outputs(), conn),
        Some(ErrorCode::ProtocolViolation)
    );
    assert_eq!(h.core.poll_timeout(), None);
}

#[test]
fn joining_trades_the_join_deadline_for_the_ticket_expiry() {
    let mut h = Harness::new(limits());
    let start = h.now;
    let (conn, _) = h.join("a", "r");
    // The ticket lives 600 s; the leeway adds 5 s.
    let expiry = start.instant + Duration::from_secs(605);
    assert_eq!(h.core.poll_timeout(), Some(expiry));
    assert_eq!(h.core.timers.len(), 1);
    h.advance(604);
    assert_eq!(h.core.handle_timeout(h.now), TimeoutOutcome::default());
    h.advance(1);
    assert_eq!(h.core.handle_timeout(h.now).tickets_expired, 1);
    assert_eq!(refusal(&h.outputs(), conn), Some(ErrorCode::TicketExpired));
    assert_eq!(h.core.poll_timeout(), None);
}

#[test]
fn a_refreshed_ticket_moves_the_deadline() {
    let mut h = Harness::new(limits());
    let start = h.now;
    let (conn, _) = h.join("a", "r");
    h.advance(300);
    let fresh = h.ticket("app", "a", "r", Grants::all());
    h.core
        .handle_control(conn, ControlMessage::RefreshTicket { ticket: fresh }, h.now);
    assert_eq!(
        h.core.poll_timeout(),
        Some(start.instant + Duration::from_secs(905))
    );
    h.advance(305);
    assert_eq!(h.core.handle_timeout(h.now), TimeoutOutcome::default());
    assert!(h.core.membership(conn).is_some());
}

#[test]
fn timers_of_connections_that_leave_are_disarmed() {
    let mut h = Harness::new(limits());
    let waiting = h.connect();
    let (member, _) = h.join("a", "r");
    let (kicked, _) = h.join("b", "r");
    assert_eq!(h.core.timers.len(), 3);
    h.core.handle_disconnect(waiting, LeaveReason::Left);
    h.core.handle_disconnect(member, LeaveReason::Left);
    let key = RoomKey::new("app", "r");
    h.core
        .kick(&key, &MemberTarget::User("b".into()), "bye")
        .expect("kick");
    assert!(h.core.membership(kicked).is_none());
    assert_eq!(h.core.timers.len(), 0);
    assert_eq!(h.core.poll_timeout(), None);
}
