//! The cascade between two cores: each node's core with a link to the other, events
//! carried by hand, as the node drivers carry them over QUIC.

use super::*;

mod mls_home;

/// The link each node sees the other on.
const LINK: ConnId = ConnId(1000);

/// Two nodes, indices 1 and 2, linked both ways.
fn pair() -> (Harness, Harness) {
    let mut a = Harness::new(Limits::default());
    let mut b = Harness::new(Limits::default());
    a.core.enable_cascade(1);
    b.core.enable_cascade(2);
    a.core.handle_link_up(LINK);
    b.core.handle_link_up(LINK);
    (a, b)
}

/// Carry every queued cascade event from `from` to `to`; returns how many.
fn carry(from: &mut Harness, to: &mut Harness) -> usize {
    let mut n = 0;
    while let Some((target, event)) = from.core.poll_cascade() {
        assert!(matches!(target, LinkTarget::All | LinkTarget::One(LINK)));
        to.core
            .handle_link_event(LINK, event, to.now)
            .expect("a valid event");
        n += 1;
    }
    assert_eq!(to.core.invariant_violation(), None);
    n
}

/// An audio frame of `sender` (a member of the other node) arriving on the link at `h`:
/// where it goes.
fn audio_from_link(h: &mut Harness, sender: MemberId) -> Vec<ConnId> {
    let envelope = Envelope {
        kind: MediaKind::Audio,
        ..video(sender, 1)
    };
    h.core
        .handle_frame(LINK, &envelope, 100, h.now)
        .expect("delivered")
        .to_vec()
}

/// Carry the events both ways, then drop what the members were sent so far.
fn settle(a: &mut Harness, b: &mut Harness) {
    carry(a, b);
    carry(b, a);
    a.outputs();
    b.outputs();
}

fn video(sender: MemberId, track: TrackId) -> Envelope {
    Envelope {
        kind: MediaKind::Video,
        flags: Flags::GROUP_START,
        sender,
        track,
        group: 1,
        seq: 0,
        timestamp_us: 0,
    }
}

#[test]
fn member_ids_carry_the_node_index_and_never_collide_across_nodes() {
    let (mut a, mut b) = pair();
    let (_, ma) = a.join("alice", "r");
    let (_, mb) = b.join("bob", "r");
    assert_eq!(ma >> MEMBER_ID_NODE_SHIFT, 1);
    assert_eq!(mb >> MEMBER_ID_NODE_SHIFT, 2);
    // Unique per node across rooms too, so a frame names its room by its sender alone.
    let (_, mc) = a.join("carol", "other-room");
    assert_ne!(mc, ma);
}

#[test]
fn remote_members_join_the_roster_and_leave_with_their_link() {
    let (mut a, mut b) = pair();
    let (ca, ma) = a.join("alice", "r");
    carry(&mut a, &mut b);
    let (cb, _) = b.join("bob", "r");
    // Bob hears of Alice, who is on the other node, right after his Joined.
    let to_bob = b.sent_to(cb);
    assert!(to_bob.iter().any(
        |m| matches!(m, ControlMessage::MemberJoined(info) if info.member == ma && info.user == "alice")
    ));
    // Alice hears Bob join through the link.
    carry(&mut b, &mut a);
    let to_alice = a.sent_to(ca);
    assert!(
        to_alice
            .iter()
            .any(|m| matches!(m, ControlMessage::MemberJoined(info) if info.user == "bob"))
    );
    // The link goes down: Bob sees Alice leave, timed out.
    b.core.handle_link_down(LINK, LeaveReason::TimedOut);
    assert!(b.sent_to(cb).contains(&ControlMessage::MemberLeft {
        member: ma,
        reason: LeaveReason::TimedOut
    }));
    assert!(b.core.remote_members().is_empty());
}

#[test]
fn a_frame_crosses_the_link_once_whatever_the_members_behind_it() {
    let (mut a, mut b) = pair();
    let (ca, ma) = a.join("alice", "r");
    let (cb1, _) = b.join("bob", "r");
    let (cb2, _) = b.join("bea", "r");
    let (cb3, _) = b.join("ben", "r");
    carry(&mut b, &mut a);
    carry(&mut a, &mut b);
    let receivers = a
        .frame(ca, ma, MediaKind::Audio, 1, 100)
        .expect("forwarded");
    assert_eq!(
        receivers,
        vec![LINK],
        "one copy for the link, none per member"
    );
    // At node B the frame from the link reaches its three members, and no link.
    let mut at_b = audio_from_link(&mut b, ma);
    at_b.sort();
    assert_eq!(at_b, vec![cb1, cb2, cb3]);
    assert_eq!(a.core.links()[0].1.frames_out, 1);
    assert_eq!(b.core.links()[0].1.frames_in, 1);
}

#[test]
fn no_frames_go_to_a_node_without_members_of_the_room() {
    let (mut a, mut b) = pair();
    let (ca, ma) = a.join("alice", "r");
    let (_, _) = a.join("amy", "r");
    b.join("bob", "elsewhere");
    carry(&mut b, &mut a);
    let receivers = a
        .frame(ca, ma, MediaKind::Audio, 1, 100)
        .expect("forwarded");
    assert!(!receivers.contains(&LINK));
    assert_eq!(receivers.len(), 1);
}

#[test]
fn frames_from_a_link_are_checked_against_what_it_announced() {
    let (mut a, mut b) = pair();
    let (_, ma) = a.join("alice", "r");
    b.join("bob", "r");
    carry(&mut a, &mut b);
    // A sender the link never announced.
    let stranger = video(ma + 1, 1);
    assert_eq!(
        b.core.handle_frame(LINK, &stranger, 100, b.now),
        Err(DropReason::NotJoined)
    );
    // A connection that is not a link cannot use the cascade path.
    let c = b.connect();
    assert_eq!(
        b.core.handle_frame(c, &video(ma, 1), 100, b.now),
        Err(DropReason::NotJoined)
    );
    // Too large for this node.
    let max = b.core.limits().max_frame_len;
    assert_eq!(
        b.core.handle_frame(LINK, &video(ma, 1), max + 1, b.now),
        Err(DropReason::TooLarge)
    );
}

#[test]
fn a_peer_cannot_take_a_member_id_in_use_or_speak_for_another_link() {
    let (mut a, mut b) = pair();
    let (_, mb) = b.join("bob", "r");
    let (_, ma) = a.join("alice", "r");
    carry(&mut a, &mut b);
    let claim = |member| CascadeEvent::MemberJoined {
        room: RoomKey::new("app", "r"),
        member: MemberInfo {
            member,
            user: "mallory".to_owned(),
            tracks: Vec::new(),
        },
        subscribes: true,
    };
    assert_eq!(
        b.core.handle_link_event(LINK, claim(mb), b.now),
        Err(CascadeError::DuplicateMember)
    );
    let other = ConnId(2000);
    b.core.handle_link_up(other);
    assert_eq!(
        b.core.handle_link_event(other, claim(ma), b.now),
        Err(CascadeError::DuplicateMember)
    );
    // An id with this node's own index is this node's to give, even when no one holds it.
    assert_eq!(
        b.core.handle_link_event(LINK, claim(mb + 100), b.now),
        Err(CascadeError::DuplicateMember)
    );
    // A member announced in one room cannot be announced in another by the same link: it
    // would stay behind in the first.
    let elsewhere = CascadeEvent::MemberJoined {
        room: RoomKey::new("app", "r2"),
        member: MemberInfo {
            member: ma,
            user: "alice".to_owned(),
            tracks: Vec::new(),
        },
        subscribes: true,
    };
    assert_eq!(
        b.core.handle_link_event(LINK, elsewhere, b.now),
        Err(CascadeError::DuplicateMember)
    );
    assert_eq!(b.core.invariant_violation(), None);
    let leave = CascadeEvent::MemberLeft {
        room: RoomKey::new("app", "r"),
        member: ma,
        reason: LeaveReason::Left,
    };
    assert_eq!(
        b.core.handle_link_event(other, leave, b.now),
        Err(CascadeError::UnknownMember)
    );
    let unknown_app = CascadeEvent::MemberJoined {
        room: RoomKey::new("nope", "r"),
        member: MemberInfo {
            member: 7 << MEMBER_ID_NODE_SHIFT,
            user: "x".to_owned(),
            tracks: Vec::new(),
        },
        subscribes: true,
    };
    assert_eq!(
        b.core.handle_link_event(other, unknown_app, b.now),
        Err(CascadeError::UnknownApp)
    );
    assert_eq!(
        b.core.handle_link_event(ConnId(3000), claim(9), b.now),
        Err(CascadeError::NotALink)
    );
}

#[test]
fn remote_members_per_room_are_bounded() {
    let limits = Limits {
        max_members_per_room: 2,
        ..Limits::default()
    };
    let mut b = Harness::new(limits);
    b.core.enable_cascade(2);
    b.core.handle_link_up(LINK);
    let claim = |n: u32| CascadeEvent::MemberJoined {
        room: RoomKey::new("app", "r"),
        member: MemberInfo {
            member: (1 << MEMBER_ID_NODE_SHIFT) | n,
            user: format!("u{n}"),
            tracks: Vec::new(),
        },
        subscribes: true,
    };
    assert_eq!(b.core.handle_link_event(LINK, claim(1), b.now), Ok(()));
    assert_eq!(b.core.handle_link_event(LINK, claim(2), b.now), Ok(()));
    assert_eq!(
        b.core.handle_link_event(LINK, claim(3), b.now),
        Err(CascadeError::OverLimit)
    );
}

#[test]
fn keyframe_requests_travel_back_to_the_publishers_node() {
    let (mut a, mut b) = pair();
    let (ca, ma) = a.join("alice", "r");
    let (cb, _) = b.join("bob", "r");
    carry(&mut b, &mut a);
    carry(&mut a, &mut b);
    // Alice publishes video; node A forwards it over the link, and B learns the track.
    assert_eq!(
        a.core.handle_frame(ca, &video(ma, 5), 200, a.now),
        Ok(&[LINK][..])
    );
    carry(&mut a, &mut b);
    b.outputs();
    // Bob asks for a keyframe of Alice's track: it goes to node A ...
    let ask = ControlMessage::KeyframeRequest {
        member: ma,
        track: 5,
    };
    assert_eq!(
        b.core.handle_control(cb, ask.clone(), b.now),
        ControlOutcome::Keyframe(KeyframeOutcome::Forwarded)
    );
    // ... coalesced within the interval ...
    assert_eq!(
        b.core.handle_control(cb, ask, b.now),
        ControlOutcome::Keyframe(KeyframeOutcome::Coalesced)
    );
    a.outputs();
    assert_eq!(carry(&mut b, &mut a), 1);
    // ... where Alice hears it.
    assert!(
        a.sent_to(ca)
            .iter()
            .any(|m| matches!(m, ControlMessage::KeyframeRequest { track: 5, .. }))
    );
    // The link's egress gave up on a group of Alice's: she is asked too (after the interval).
    a.advance(1);
    assert_eq!(
        a.core.handle_stale_group(LINK, ma, 5, a.now),
        KeyframeOutcome::Forwarded
    );
}

#[test]
fn tracks_and_leaves_of_local_members_reach_the_link() {
    let (mut a, mut b) = pair();
    let (ca, ma) = a.join("alice", "r");
    let (cb, _) = b.join("bob", "r");
    carry(&mut b, &mut a);
    carry(&mut a, &mut b);
    b.outputs();
    a.core
        .handle_frame(ca, &video(ma, 3), 100, a.now)
        .expect("forwarded");
    carry(&mut a, &mut b);
    assert!(b.sent_to(cb).contains(&ControlMessage::TrackPublished {
        member: ma,
        track: TrackInfo {
            track: 3,
            kind: MediaKind::Video
        }
    }));
    a.core.handle_control(ca, ControlMessage::Leave, a.now);
    carry(&mut a, &mut b);
    assert!(b.sent_to(cb).contains(&ControlMessage::MemberLeft {
        member: ma,
        reason: LeaveReason::Left
    }));
    assert!(b.core.remote_members().is_empty());
}

/// A recorder on node B: a ticket with only the record grant, auto-subscribe off.
fn join_recorder(h: &mut Harness, user: &str) -> (ConnId, MemberId) {
    let conn = h.connect();
    let ticket = h.ticket("app", user, "r", Grants::recorder());
    let options = JoinOptions {
        auto_subscribe: false,
        room: None,
    };
    assert_eq!(
        h.core.handle_join(conn, &ticket, &options, h.now),
        JoinOutcome::Joined
    );
    let member = h.core.membership(conn).expect("joined").1;
    (conn, member)
}

#[test]
fn a_recorder_on_one_node_records_the_members_of_every_node() {
    let (mut a, mut b) = pair();
    let (ca, ma) = a.join("alice", "r");
    carry(&mut a, &mut b);
    // The recorder has no subscribe grant; it receives because it records.
    let (cr, mr) = join_recorder(&mut b, "rec");
    // Alice's node hears of it and tells her.
    carry(&mut b, &mut a);
    assert!(
        a.sent_to(ca)
            .contains(&ControlMessage::RecorderPresent { member: mr }),
        "members on the other node are told a recorder is present"
    );
    // Alice's frames cross the link for the recorder alone, and reach it.
    let receivers = a
        .frame(ca, ma, MediaKind::Audio, 1, 100)
        .expect("forwarded");
    assert_eq!(
        receivers,
        vec![LINK],
        "a link whose only member records still gets frames"
    );
    let at_b = audio_from_link(&mut b, ma);
    assert_eq!(at_b, vec![cr]);
    // A member joining node A later is told of the recorder on node B after its roster.
    let (cc, _) = a.join("carol", "r");
    let to_carol = a.sent_to(cc);
    let roster_at = to_carol
        .iter()
        .position(|m| matches!(m, ControlMessage::MemberJoined(i) if i.member == mr))
        .expect("the recorder is in the roster");
    let notice_at = to_carol
        .iter()
        .position(|m| *m == ControlMessage::RecorderPresent { member: mr })
        .expect("carol is told it records");
    assert!(roster_at < notice_at);
}

#[test]
fn a_recorder_joined_before_the_link_came_up_is_announced_with_it() {
    let mut a = Harness::new(Limits::default());
    let mut b = Harness::new(Limits::default());
    a.core.enable_cascade(1);
    b.core.enable_cascade(2);
    let (ca, ma) = a.join("alice", "r");
    let (_, mr) = join_recorder(&mut b, "rec");
    a.core.handle_link_up(LINK);
    b.core.handle_link_up(LINK);
    carry(&mut b, &mut a);
    carry(&mut a, &mut b);
    assert!(
        a.sent_to(ca)
            .contains(&ControlMessage::RecorderPresent { member: mr })
    );
    let receivers = a
        .frame(ca, ma, MediaKind::Audio, 1, 100)
        .expect("forwarded");
    assert_eq!(receivers, vec![LINK]);
    // And a recorder on this node receives the frames coming from the link.
    let (cr2, _) = join_recorder(&mut a, "rec-a");
    let (_, mb) = b.join("bob", "r");
    carry(&mut b, &mut a);
    let at_a = audio_from_link(&mut a, mb);
    assert!(
        at_a.contains(&cr2),
        "a local recorder records remote members too"
    );
}

#[test]
fn a_peer_cannot_declare_a_member_it_never_announced_a_recorder() {
    let (mut a, mut b) = pair();
    let (_, ma) = a.join("alice", "r");
    let event = CascadeEvent::RecorderPresent {
        room: RoomKey::new("app", "r"),
        member: ma,
    };
    assert_eq!(
        b.core.handle_link_event(LINK, event, b.now),
        Err(CascadeError::UnknownMember)
    );
}

#[test]
fn an_operator_kicks_a_member_whatever_node_holds_it() {
    let (mut a, mut b) = pair();
    let (ca, ma) = a.join("alice", "r");
    let (cb, mb) = b.join("bob", "r");
    settle(&mut a, &mut b);
    // Node A's operator kicks Bob, who is on node B: A answers with his id and asks B.
    assert_eq!(
        a.core.kick(
            &RoomKey::new("app", "r"),
            &MemberTarget::User("bob".into()),
            "bye"
        ),
        Ok(mb)
    );
    assert!(
        a.outputs().is_empty(),
        "node A holds no connection of Bob's"
    );
    carry(&mut a, &mut b);
    let at_b = b.outputs();
    assert!(at_b.contains(&Output::Send {
        conn: cb,
        message: ControlMessage::Error {
            code: ErrorCode::Kicked,
            message: "bye".into()
        }
    }));
    assert!(at_b.contains(&Output::Close {
        conn: cb,
        code: Some(ErrorCode::Kicked)
    }));
    // Alice hears Bob leave, kicked, through the link.
    carry(&mut b, &mut a);
    assert!(a.sent_to(ca).contains(&ControlMessage::MemberLeft {
        member: mb,
        reason: LeaveReason::Kicked
    }));
    // Someone in no room anywhere, or a room no node has, is still an error.
    let room = RoomKey::new("app", "r");
    assert_eq!(
        a.core
            .kick(&room, &MemberTarget::User("nobody".into()), "bye"),
        Err(AdminError::UnknownMember)
    );
    assert_eq!(
        a.core.kick(
            &RoomKey::new("app", "elsewhere"),
            &MemberTarget::Member(ma),
            "bye"
        ),
        Err(AdminError::UnknownRoom)
    );
}

#[test]
fn an_operator_dismisses_a_room_on_every_node() {
    let (mut a, mut b) = pair();
    let (ca, _) = a.join("alice", "r");
    let (cb1, _) = b.join("bob", "r");
    let (cb2, _) = b.join("bea", "r");
    let (cb3, _) = b.join("ben", "other");
    settle(&mut a, &mut b);
    let room = RoomKey::new("app", "r");
    assert_eq!(
        a.core.dismiss(&room, "closed"),
        Ok(3),
        "one here, two behind the link"
    );
    assert!(a.outputs().contains(&Output::Close {
        conn: ca,
        code: Some(ErrorCode::RoomDismissed)
    }));
    carry(&mut a, &mut b);
    let closed: Vec<ConnId> = b
        .outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Close {
                conn,
                code: Some(ErrorCode::RoomDismissed),
            } => Some(conn),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 2);
    assert!(closed.contains(&cb1) && closed.contains(&cb2) && !closed.contains(&cb3));
    // A room only another node has is dismissed from here too.
    carry(&mut b, &mut a);
    assert_eq!(
        a.core.dismiss(&RoomKey::new("app", "other"), "closed"),
        Ok(1)
    );
    assert_eq!(
        a.core.dismiss(&RoomKey::new("app", "none"), "closed"),
        Err(AdminError::UnknownRoom)
    );
}

#[test]
fn a_peer_kick_names_a_member_of_this_node_and_its_reason_is_bounded() {
    let (mut a, mut b) = pair();
    let (_, ma) = a.join("alice", "r");
    let (cb, mb) = b.join("bob", "r");
    carry(&mut a, &mut b);
    b.outputs();
    let room = RoomKey::new("app", "r");
    // Alice is not B's to remove.
    let kick_alice = CascadeEvent::Kick {
        room: room.clone(),
        member: ma,
        reason: "x".into(),
    };
    assert_eq!(
        b.core.handle_link_event(LINK, kick_alice, b.now),
        Err(CascadeError::UnknownMember)
    );
    let long = "é".repeat(MAX_OPERATOR_REASON);
    let kick_bob = CascadeEvent::Kick {
        room,
        member: mb,
        reason: long,
    };
    assert_eq!(b.core.handle_link_event(LINK, kick_bob, b.now), Ok(()));
    let told = b.sent_to(cb);
    let Some(ControlMessage::Error { message, .. }) = told.first() else {
        panic!("bob is told: {told:?}");
    };
    assert!(message.len() <= MAX_OPERATOR_REASON && message.starts_with('é'));
}

#[test]
fn a_link_announced_up_again_keeps_the_members_behind_it() {
    // Found by the room_core fuzz target: a second `handle_link_up` for a link already up
    // used to reset its counts while its members stayed, and the next leave underflowed
    // them.
    let (mut a, mut b) = pair();
    let (cb, mb) = b.join("bob", "r");
    carry(&mut b, &mut a);
    let (ca, _) = a.join("alice", "r");
    a.core.handle_link_up(LINK);
    assert_eq!(a.core.invariant_violation(), None);
    assert_eq!(a.core.links()[0].1.members, 1);
    // The peer hears the local members again, and the link carries frames as before.
    carry(&mut a, &mut b);
    a.outputs();
    b.core.handle_control(cb, ControlMessage::Leave, b.now);
    carry(&mut b, &mut a);
    assert!(a.sent_to(ca).contains(&ControlMessage::MemberLeft {
        member: mb,
        reason: LeaveReason::Left
    }));
    assert_eq!(a.core.links()[0].1.members, 0);
}
