//! Sessions over time and under limits: ticket expiry and refresh, join deadlines, operator
//! actions, draining and join limits.

use std::collections::HashSet;

use super::*;

#[test]
fn tickets_expire_during_the_session_unless_refreshed() {
    let mut h = Harness::new(Limits {
        ticket_leeway_secs: 0,
        ..Limits::default()
    });
    let (a, _) = h.join("a", "r");
    let (b, mb) = h.join("b", "r");
    h.advance(500);
    let fresh = h.ticket("app", "a", "r", Grants::all());
    h.core
        .handle_control(a, ControlMessage::RefreshTicket { ticket: fresh }, h.now);
    assert!(h.sent_to(a).contains(&ControlMessage::TicketRefreshed {
        expires_in_secs: 600,
    }));
    h.advance(100);
    h.core.handle_timeout(h.now);
    let out = h.outputs();
    assert_eq!(refusal(&out, b), Some(ErrorCode::TicketExpired));
    assert!(out.contains(&Output::Send {
        conn: a,
        message: ControlMessage::MemberLeft {
            member: mb,
            reason: LeaveReason::TicketExpired,
        },
    }));
    assert!(h.core.membership(a).is_some());
}

#[test]
fn a_refresh_for_another_room_or_user_is_refused() {
    let mut h = Harness::new(Limits::default());
    let (a, _) = h.join("a", "r");
    h.outputs();
    let other_room = h.ticket("app", "a", "r2", Grants::all());
    h.core.handle_control(
        a,
        ControlMessage::RefreshTicket { ticket: other_room },
        h.now,
    );
    let other_app = h.ticket("other-app", "a", "r", Grants::all());
    h.core.handle_control(
        a,
        ControlMessage::RefreshTicket { ticket: other_app },
        h.now,
    );
    let other_user = h.ticket("app", "mallory", "r", Grants::all());
    h.core.handle_control(
        a,
        ControlMessage::RefreshTicket { ticket: other_user },
        h.now,
    );
    let codes: Vec<ErrorCode> = h
        .sent_to(a)
        .into_iter()
        .filter_map(|m| match m {
            ControlMessage::Error { code, .. } => Some(code),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::WrongRoom,
            ErrorCode::WrongRoom,
            ErrorCode::NotPermitted
        ]
    );
    assert!(h.core.membership(a).is_some(), "the session continues");
}

#[test]
fn connections_that_never_join_are_closed() {
    let mut h = Harness::new(Limits::default());
    let idle = h.connect();
    h.advance(Limits::default().join_timeout_secs);
    h.core.handle_timeout(h.now);
    assert_eq!(
        refusal(&h.outputs(), idle),
        Some(ErrorCode::ProtocolViolation)
    );
    assert_eq!(h.core.connection_count(), 0);
}

#[test]
fn operators_kick_and_dismiss() {
    let mut h = Harness::new(Limits::default());
    let (a, _) = h.join("a", "r");
    let (b, mb) = h.join("b", "r");
    let (c, _) = h.join("c", "r");
    h.outputs();
    let key = RoomKey::new("app", "r");
    assert_eq!(
        h.core
            .kick(&key, &MemberTarget::User("b".to_owned()), "bye"),
        Ok(mb)
    );
    let out = h.outputs();
    assert_eq!(refusal(&out, b), Some(ErrorCode::Kicked));
    assert!(out.contains(&Output::Send {
        conn: a,
        message: ControlMessage::MemberLeft {
            member: mb,
            reason: LeaveReason::Kicked,
        },
    }));
    assert_eq!(
        h.core
            .kick(&key, &MemberTarget::User("b".to_owned()), "again"),
        Err(AdminError::UnknownMember)
    );
    assert_eq!(
        h.core
            .kick(&RoomKey::new("app", "nope"), &MemberTarget::Member(1), ""),
        Err(AdminError::UnknownRoom)
    );
    let members = h.core.members(&key).expect("room exists");
    assert_eq!(
        members.iter().map(|m| m.user.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(h.core.dismiss(&key, "closing"), Ok(2));
    let out = h.outputs();
    assert_eq!(refusal(&out, a), Some(ErrorCode::RoomDismissed));
    assert_eq!(refusal(&out, c), Some(ErrorCode::RoomDismissed));
    assert!(h.core.rooms().is_empty());
    assert_eq!(h.core.dismiss(&key, ""), Err(AdminError::UnknownRoom));
}

#[test]
fn draining_says_go_away_and_refuses_joins() {
    let mut h = Harness::new(Limits::default());
    let (a, _) = h.join("a", "r");
    h.outputs();
    h.core.begin_drain();
    assert_eq!(
        h.sent_to(a),
        vec![ControlMessage::GoAway {
            code: ErrorCode::ShuttingDown,
            reconnect_after_ms: GO_AWAY_RECONNECT_MS,
        }]
    );
    let (_, outcome) = h.join_with("app", "b", "r", Grants::all());
    assert_eq!(outcome, JoinOutcome::Refused(ErrorCode::ShuttingDown));
    h.core.close_all();
    assert_eq!(refusal(&h.outputs(), a), Some(ErrorCode::ShuttingDown));
    assert_eq!(h.core.connection_count(), 0);
    assert_eq!(h.core.room_count(), 0);
}

#[test]
fn joins_per_app_are_rate_limited() {
    let mut h = Harness::new(Limits {
        joins_per_app_per_sec: 2,
        ..Limits::default()
    });
    let outcomes: Vec<JoinOutcome> = (0..6)
        .map(|i| h.join_with("app", &format!("u{i}"), "r", Grants::all()).1)
        .collect();
    let joined = outcomes
        .iter()
        .filter(|o| **o == JoinOutcome::Joined)
        .count();
    assert_eq!(joined, 4, "burst of twice the rate");
    // The app's budget is the relay's own capacity: it says so, and the SLA counts it.
    assert_eq!(outcomes[5], JoinOutcome::Refused(ErrorCode::Overloaded));
}

#[test]
fn one_user_joining_over_and_over_does_not_starve_others() {
    let mut h = Harness::new(Limits {
        joins_per_app_per_sec: 10,
        ..Limits::default()
    });
    // One ticket holder replays its ticket 100 times in the same instant.
    let storm: Vec<JoinOutcome> = (0..100)
        .map(|_| h.join_with("app", "mallory", "r-m", Grants::all()).1)
        .collect();
    let admitted = storm.iter().filter(|o| **o == JoinOutcome::Joined).count();
    assert_eq!(admitted, Limits::default().joins_per_user_burst as usize);
    assert!(
        storm[admitted..]
            .iter()
            .all(|o| *o == JoinOutcome::Refused(ErrorCode::RateLimited))
    );
    // The app's budget is still there for everyone else.
    for i in 0..10 {
        let (_, outcome) = h.join_with("app", &format!("u{i}"), &format!("r{i}"), Grants::all());
        assert_eq!(outcome, JoinOutcome::Joined, "user {i}");
    }
}

#[test]
fn joins_are_limited_per_source_address_and_ipv6_prefix() {
    let mut h = Harness::new(Limits {
        joins_per_address_per_sec: 1,
        joins_per_address_burst: 2,
        ..Limits::default()
    });
    let join_from = |h: &mut Harness, ip: &str, user: &str| {
        let conn = ConnId(h.next);
        h.next += 1;
        h.core.handle_connect_from(conn, ip.parse().unwrap(), h.now);
        let ticket = h.ticket("app", user, "r", Grants::all());
        let options = JoinOptions {
            auto_subscribe: true,
            room: None,
        };
        h.core.handle_join(conn, &ticket, &options, h.now)
    };
    assert_eq!(join_from(&mut h, "2001:db8::1", "a"), JoinOutcome::Joined);
    assert_eq!(join_from(&mut h, "2001:db8::2", "b"), JoinOutcome::Joined);
    // Same /64: over its budget, even with a bad ticket or another user.
    assert_eq!(
        join_from(&mut h, "2001:db8::3", "c"),
        JoinOutcome::Refused(ErrorCode::RateLimited)
    );
    assert_eq!(
        join_from(&mut h, "2001:db8:0:1::3", "c"),
        JoinOutcome::Joined
    );
}

#[test]
fn long_user_ids_and_long_lived_tickets_are_refused_typed() {
    let mut h = Harness::new(Limits {
        max_user_id_len: 8,
        max_ticket_lifetime_secs: 300,
        ..Limits::default()
    });
    // The harness mints tickets for 600 s: over the 300 s (+ leeway) maximum.
    let (conn, outcome) = h.join_with("app", "bob", "r", Grants::all());
    assert_eq!(outcome, JoinOutcome::Refused(ErrorCode::BadTicket));
    assert_eq!(refusal(&h.outputs(), conn), Some(ErrorCode::BadTicket));
    let mut h = Harness::new(Limits {
        max_user_id_len: 8,
        ..Limits::default()
    });
    let (_, outcome) = h.join_with("app", "a-very-long-user-id", "r", Grants::all());
    assert_eq!(outcome, JoinOutcome::Refused(ErrorCode::BadTicket));
    let (_, outcome) = h.join_with("app", "shortid", "r", Grants::all());
    assert_eq!(outcome, JoinOutcome::Joined);
}

#[test]
fn a_roster_too_large_for_one_message_is_split_never_dropped() {
    let mut h = Harness::new(Limits {
        max_user_id_len: 1024,
        ..Limits::default()
    });
    let users: Vec<String> = (0..63)
        .map(|i| format!("{i:02}{}", "x".repeat(1000)))
        .collect();
    for user in &users {
        h.join(user, "r");
    }
    h.outputs();
    let (conn, _) = h.join("last", "r");
    let sent = h.sent_to(conn);
    let mut seen = HashSet::new();
    for message in &sent {
        let len = message
            .to_bytes()
            .expect("every message fits its limit")
            .len();
        assert!(len <= sealroom_frame::control::MAX_CONTROL_LEN);
        match message {
            ControlMessage::Joined { roster, .. } => {
                seen.extend(roster.iter().map(|m| m.user.clone()));
            }
            ControlMessage::MemberJoined(info) => {
                seen.insert(info.user.clone());
            }
            _ => {}
        }
    }
    assert!(matches!(sent[0], ControlMessage::Joined { .. }));
    assert_eq!(seen.len(), users.len(), "every earlier member is announced");
}

#[test]
fn forged_frames_past_the_budget_remove_the_member() {
    let mut h = Harness::new(Limits {
        bad_frames_per_sec: 1,
        bad_frames_burst: 5,
        ..Limits::default()
    });
    let (a, a_id) = h.join("a", "r");
    let (b, _) = h.join("b", "r");
    h.outputs();
    let mut removed = None;
    for i in 0..10 {
        let dropped = h.frame(a, a_id + 1, MediaKind::Audio, 1, 100);
        assert_eq!(dropped, Err(DropReason::ForgedSender));
        if let Some(v) = h.core.handle_bad_frame(a, h.now) {
            removed = Some((i, v));
            break;
        }
    }
    assert_eq!(removed, Some((5, Violation::BadFrames)));
    let outputs = h.outputs();
    assert_eq!(refusal(&outputs, a), Some(ErrorCode::ProtocolViolation));
    assert!(h.core.membership(a).is_none());
    assert!(h.core.membership(b).is_some());
}

#[test]
fn tickets_verified_before_the_core_admit_and_refuse_as_inside_it() {
    let mut h = Harness::new(Limits::default());
    let verifier = h.core.verifier();
    let join = |ticket: String| ControlMessage::Join {
        ticket,
        client_name: "test".into(),
        client_version: "0".into(),
        options: JoinOptions {
            auto_subscribe: true,
            room: None,
        },
    };
    let good = join(h.ticket("app", "a", "r", Grants::all()));
    let checked = CheckedControl::check(&verifier, good, h.now.unix_secs);
    let conn = h.connect();
    assert_eq!(
        h.core.handle_control_checked(conn, checked, h.now),
        ControlOutcome::Join(JoinOutcome::Joined)
    );
    assert!(h.core.membership(conn).is_some());

    let mut forged = h.ticket("app", "b", "r", Grants::all());
    forged.push('x');
    let checked = CheckedControl::check(&verifier, join(forged), h.now.unix_secs);
    let conn = h.connect();
    assert_eq!(
        h.core.handle_control_checked(conn, checked, h.now),
        ControlOutcome::Join(JoinOutcome::Refused(ErrorCode::BadSignature))
    );
    assert_eq!(refusal(&h.outputs(), conn), Some(ErrorCode::BadSignature));

    // A ticket checked when it was still valid is judged at that time; one checked after
    // its expiry is refused.
    let late = h.now.plus_secs(10_000);
    let ticket = h.ticket("app", "c", "r", Grants::all());
    let verified = VerifiedTicket::new(&verifier, &ticket, late.unix_secs);
    let conn = h.connect();
    let options = JoinOptions {
        auto_subscribe: true,
        room: None,
    };
    assert_eq!(
        h.core.handle_join_verified(conn, verified, &options, h.now),
        JoinOutcome::Refused(ErrorCode::Expired)
    );
}
