//! MLS rooms gather on one node: the node holding a room's group announces it, the
//! others send the room's joins and members there, and of two holders the lower index
//! keeps the room.

use super::*;

const RELAY_A: &str = "10.0.0.1:4433";
const RELAY_B: &str = "10.0.0.2:4433";

/// Nodes 1 and 2, linked, each announcing its relay address.
fn announcing_pair() -> (Harness, Harness) {
    let (mut a, mut b) = pair();
    a.core.set_relay_address(Some(RELAY_A.to_owned()));
    b.core.set_relay_address(Some(RELAY_B.to_owned()));
    (a, b)
}

/// Nodes 1 and 2, with Alice on node 1 holding the group of room "r", and node 2 told.
fn group_at_node_1() -> (Harness, Harness, ConnId) {
    let (mut a, mut b) = announcing_pair();
    let (alice, _) = a.join("alice", "r");
    publish(&mut a, alice);
    carry(&mut a, &mut b);
    (a, b, alice)
}

fn publish(h: &mut Harness, conn: ConnId) {
    let publish = ControlMessage::MlsPublish {
        position: 0,
        group_info: b"epoch 0".to_vec(),
    };
    assert_eq!(
        h.core.handle_control(conn, publish, h.now),
        ControlOutcome::Mls(MlsOutcome::Published)
    );
}

/// A join of `room` at `h`: where the node sent it, if it did.
fn redirected_to(h: &mut Harness, user: &str, room: &str) -> Option<String> {
    h.outputs();
    let (conn, outcome) = h.join_with("app", user, room, Grants::all());
    let sent = h.sent_to(conn);
    match outcome {
        JoinOutcome::Redirected => sent.into_iter().find_map(|m| match m {
            ControlMessage::Redirect { address } => Some(address),
            _ => None,
        }),
        JoinOutcome::Joined => None,
        other => panic!("join of {user} ended {other:?}"),
    }
}

/// Whether `conn` was told to go (`GoAway`, reconnect at once) and closed.
fn moved(outputs: &[Output], conn: ConnId) -> bool {
    let go_away = outputs.iter().any(|o| {
        matches!(o, Output::Send { conn: c, message: ControlMessage::GoAway {
            code: ErrorCode::ShuttingDown,
            reconnect_after_ms: 0,
        } } if *c == conn)
    });
    let closed = outputs.iter().any(|o| {
        matches!(o, Output::Close { conn: c, code: Some(ErrorCode::ShuttingDown) } if *c == conn)
    });
    go_away && closed
}

#[test]
fn joins_of_an_mls_room_go_to_the_node_holding_its_group() {
    let (mut a, mut b, _alice) = group_at_node_1();
    assert_eq!(redirected_to(&mut b, "bob", "r").as_deref(), Some(RELAY_A));
    // Other rooms, and rooms without a group, stay where they join.
    assert_eq!(redirected_to(&mut b, "carol", "other-room"), None);
    // The node holding the group admits the room's joins itself.
    assert_eq!(redirected_to(&mut a, "dave", "r"), None);
}

#[test]
fn of_two_nodes_holding_a_group_for_one_room_the_lower_index_keeps_it() {
    let (mut a, mut b) = announcing_pair();
    let (alice, _) = a.join("alice", "r");
    let (bob, _) = b.join("bob", "r");
    // Both publish before either hears of the other.
    publish(&mut a, alice);
    publish(&mut b, bob);
    a.outputs();
    b.outputs();
    carry(&mut a, &mut b);
    carry(&mut b, &mut a);
    // Node 2 gives the room up: Bob is told to go and reconnect at once; Alice stays.
    let at_b = b.outputs();
    assert!(moved(&at_b, bob), "bob was not moved: {at_b:?}");
    assert_eq!(b.core.mls_members_moved(), 1);
    assert!(b.core.membership(bob).is_none());
    let at_a = a.outputs();
    assert!(!moved(&at_a, alice));
    assert_eq!(a.core.mls_members_moved(), 0);
    // Node 1 hears Bob leave and node 2's group go; Bob's rejoin at node 2 goes to node 1.
    carry(&mut b, &mut a);
    assert_eq!(redirected_to(&mut b, "bob", "r").as_deref(), Some(RELAY_A));
    assert_eq!(redirected_to(&mut a, "bob", "r"), None);
}

#[test]
fn members_of_a_node_without_the_group_are_moved_to_the_node_that_holds_it() {
    let (mut a, mut b) = announcing_pair();
    let (bob, _) = b.join("bob", "r");
    let (bea, _) = b.join("bea", "r");
    let (carol, _) = b.join("carol", "elsewhere");
    carry(&mut b, &mut a);
    let (alice, _) = a.join("alice", "r");
    publish(&mut a, alice);
    b.outputs();
    carry(&mut a, &mut b);
    let at_b = b.outputs();
    assert!(moved(&at_b, bob) && moved(&at_b, bea), "{at_b:?}");
    assert!(!moved(&at_b, carol));
    assert_eq!(b.core.mls_members_moved(), 2);
    // A lower node holding no group gives way to a higher one that holds it.
    let (mut a, mut b) = announcing_pair();
    let (alice, _) = a.join("alice", "r");
    carry(&mut a, &mut b);
    let (bob, _) = b.join("bob", "r");
    publish(&mut b, bob);
    a.outputs();
    carry(&mut b, &mut a);
    assert!(moved(&a.outputs(), alice));
    assert_eq!(
        redirected_to(&mut a, "alice", "r").as_deref(),
        Some(RELAY_B)
    );
}

#[test]
fn the_group_is_announced_to_a_link_that_comes_up_and_withdrawn_with_the_room() {
    let (mut a, mut b, alice) = group_at_node_1();
    // The link goes down and comes back: node 1 announces its members, then its group.
    a.core.handle_link_down(LINK, LeaveReason::TimedOut);
    b.core.handle_link_down(LINK, LeaveReason::TimedOut);
    a.core.handle_link_up(LINK);
    b.core.handle_link_up(LINK);
    let mut events = Vec::new();
    while let Some((target, event)) = a.core.poll_cascade() {
        assert_eq!(target, LinkTarget::One(LINK));
        events.push(event.clone());
        b.core
            .handle_link_event(LINK, event, b.now)
            .expect("a valid event");
    }
    assert!(matches!(
        events.as_slice(),
        [
            CascadeEvent::MemberJoined { .. },
            CascadeEvent::MlsGroupHere { relay, .. },
        ] if relay == RELAY_A
    ));
    assert_eq!(redirected_to(&mut b, "bob", "r").as_deref(), Some(RELAY_A));
    // Alice leaves: the room and its group end at node 1, and node 2 admits the room again.
    a.core.handle_disconnect(alice, LeaveReason::Left);
    carry(&mut a, &mut b);
    assert_eq!(redirected_to(&mut b, "bob", "r"), None);
}

#[test]
fn the_claim_goes_with_the_peers_last_member_of_the_room_or_its_link() {
    let (mut a, mut b, alice) = group_at_node_1();
    // Node 2 hears only that Alice left (her node's Gone still on its way).
    a.core.handle_disconnect(alice, LeaveReason::Left);
    let left = loop {
        match a.core.poll_cascade() {
            Some((_, event @ CascadeEvent::MemberLeft { .. })) => break event,
            Some(_) => {}
            None => panic!("no MemberLeft"),
        }
    };
    b.core.handle_link_event(LINK, left, b.now).expect("valid");
    assert_eq!(redirected_to(&mut b, "bob", "r"), None);
    // And with the link.
    let (_a, mut b, _alice) = group_at_node_1();
    b.core.handle_link_down(LINK, LeaveReason::TimedOut);
    assert_eq!(redirected_to(&mut b, "bob", "r"), None);
}

#[test]
fn a_peer_claims_a_group_only_for_a_room_it_has_members_in() {
    let (mut a, mut b) = announcing_pair();
    let here = |room: &str, relay: &str| CascadeEvent::MlsGroupHere {
        room: RoomKey::new("app".to_owned(), room.to_owned()),
        relay: relay.to_owned(),
    };
    assert_eq!(
        b.core.handle_link_event(LINK, here("r", RELAY_A), b.now),
        Err(CascadeError::UnknownMember)
    );
    a.join("alice", "r");
    carry(&mut a, &mut b);
    let long = "x".repeat(MAX_RELAY_ADDRESS + 1);
    assert_eq!(
        b.core.handle_link_event(LINK, here("r", &long), b.now),
        Err(CascadeError::OverLimit)
    );
    let unknown_app = CascadeEvent::MlsGroupHere {
        room: RoomKey::new("no-such-app".to_owned(), "r".to_owned()),
        relay: RELAY_A.to_owned(),
    };
    assert_eq!(
        b.core.handle_link_event(LINK, unknown_app, b.now),
        Err(CascadeError::UnknownApp)
    );
    // None of them changed where the room's joins go.
    assert_eq!(redirected_to(&mut b, "bob", "r"), None);
    assert_eq!(b.core.invariant_violation(), None);
}

#[test]
fn a_node_without_a_relay_address_announces_no_group() {
    let (mut a, mut b) = pair();
    let (alice, _) = a.join("alice", "r");
    publish(&mut a, alice);
    let mut announced = false;
    while let Some((_, event)) = a.core.poll_cascade() {
        announced |= matches!(event, CascadeEvent::MlsGroupHere { .. });
        b.core.handle_link_event(LINK, event, b.now).expect("valid");
    }
    assert!(!announced);
    assert_eq!(redirected_to(&mut b, "bob", "r"), None);
}

#[test]
fn a_draining_node_withdraws_its_groups_so_that_rejoins_stay_where_they_land() {
    let (mut a, mut b, alice) = group_at_node_1();
    assert_eq!(redirected_to(&mut b, "bob", "r").as_deref(), Some(RELAY_A));
    // Node 1 drains: its members are told to go, and node 2 no longer sends the room's
    // joins back to it, though Alice is still connected there.
    a.core.begin_drain();
    carry(&mut a, &mut b);
    assert!(a.core.membership(alice).is_some());
    assert_eq!(redirected_to(&mut b, "bob", "r"), None);
    // Nor does a link that comes up while it drains hear of the group.
    a.core.handle_link_down(LINK, LeaveReason::TimedOut);
    a.core.handle_link_up(LINK);
    let mut announced = false;
    while let Some((_, event)) = a.core.poll_cascade() {
        announced |= matches!(event, CascadeEvent::MlsGroupHere { .. });
    }
    assert!(!announced);
}

#[test]
fn the_loads_never_send_an_mls_rooms_joins_away_from_the_node_holding_its_group() {
    let (mut a, mut b, _alice) = group_at_node_1();
    // Node 1 is loaded: the directory sends its new joins to node 2.
    a.core.set_redirect(Some(RELAY_B.to_owned()));
    b.core.set_redirect(Some(RELAY_A.to_owned()));
    // The MLS room's joins stay at node 1, whichever node they reach first, so no join
    // bounces between the two; other rooms follow the loads.
    assert_eq!(redirected_to(&mut a, "bob", "r"), None);
    assert_eq!(redirected_to(&mut b, "bea", "r").as_deref(), Some(RELAY_A));
    assert_eq!(
        redirected_to(&mut a, "carol", "other-room").as_deref(),
        Some(RELAY_B)
    );
}
