//! Recorders: members joined with the `record` grant receive every track of every member,
//! publish nothing, and are announced to the others.

use super::*;

fn join_recorder(h: &mut Harness, user: &str, room: &str, auto_subscribe: bool) -> ConnId {
    let conn = h.connect();
    let ticket = h.ticket("app", user, room, Grants::recorder());
    let options = JoinOptions {
        auto_subscribe,
        room: None,
    };
    assert_eq!(
        h.core.handle_join(conn, &ticket, &options, h.now),
        JoinOutcome::Joined
    );
    conn
}

fn recorder_notices(outputs: &[Output], to: ConnId) -> Vec<MemberId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                conn,
                message: ControlMessage::RecorderPresent { member },
            } if *conn == to => Some(*member),
            _ => None,
        })
        .collect()
}

#[test]
fn a_recorder_receives_every_track_present_and_future_even_without_auto_subscribe() {
    let mut h = Harness::new(Limits::default());
    let (a, ma) = h.join("a", "r");
    h.frame(a, ma, MediaKind::Audio, 1, 100).expect("published");
    let rec = join_recorder(&mut h, "rec", "r", false);
    let (b, mb) = h.join("b", "r");
    for (conn, member, kind, track) in [
        (a, ma, MediaKind::Audio, 1),
        (a, ma, MediaKind::Video, 2),
        (b, mb, MediaKind::Data, 7),
    ] {
        let receivers = h.frame(conn, member, kind, track, 100).expect("forwarded");
        assert!(
            receivers.contains(&rec),
            "the recorder gets {kind:?} track {track} of member {member}"
        );
    }
    // Unsubscribing changes nothing for a recorder.
    let unsubscribe = ControlMessage::Unsubscribe {
        member: ma,
        track: 1,
    };
    assert_eq!(
        h.core.handle_control(rec, unsubscribe, h.now),
        ControlOutcome::Handled
    );
    let receivers = h.frame(a, ma, MediaKind::Audio, 1, 100).expect("forwarded");
    assert!(receivers.contains(&rec), "a recorder keeps every track");
}

#[test]
fn a_recorder_that_publishes_is_refused_with_a_typed_reason() {
    let mut h = Harness::new(Limits::default());
    let (_, _) = h.join("a", "r");
    let rec = join_recorder(&mut h, "rec", "r", true);
    let me = h.core.membership(rec).expect("joined").1;
    h.outputs();
    assert_eq!(
        h.frame(rec, me, MediaKind::Audio, 1, 100),
        Err(DropReason::RecorderPublished)
    );
    assert_eq!(DropReason::RecorderPublished.label(), "recorder_published");
    assert!(
        !DropReason::RecorderPublished.is_bad(),
        "a policy refusal, not a forgery"
    );
    let publish = ControlMessage::TrackPublished {
        member: me,
        track: TrackInfo {
            track: 2,
            kind: MediaKind::Video,
        },
    };
    h.core.handle_control(rec, publish, h.now);
    let outputs = h.outputs();
    let refusals: Vec<&str> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send {
                conn,
                message:
                    ControlMessage::Error {
                        code: ErrorCode::NotPermitted,
                        message,
                    },
            } if *conn == rec => Some(message.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        refusals.iter().any(|m| m.contains("recorder")),
        "the recorder hears why: {refusals:?}"
    );
    assert!(
        !outputs.iter().any(|o| matches!(
            o,
            Output::Send {
                message: ControlMessage::TrackPublished { .. },
                ..
            }
        )),
        "no track of a recorder is announced"
    );
}

#[test]
fn members_learn_a_recorder_is_present_when_it_joins_and_when_they_join() {
    let mut h = Harness::new(Limits::default());
    let (a, _) = h.join("a", "r");
    h.outputs();
    let rec = join_recorder(&mut h, "rec", "r", true);
    let me = h.core.membership(rec).expect("joined").1;
    let outputs = h.outputs();
    assert_eq!(
        recorder_notices(&outputs, a),
        vec![me],
        "a present member is told"
    );
    assert!(
        recorder_notices(&outputs, rec).is_empty(),
        "a recorder is not told about itself"
    );
    let (b, _) = h.join("b", "r");
    let outputs = h.outputs();
    assert_eq!(
        recorder_notices(&outputs, b),
        vec![me],
        "a later member is told"
    );
    let joined_at = outputs
        .iter()
        .position(|o| matches!(o, Output::Send { conn, message: ControlMessage::Joined { .. } } if *conn == b))
        .expect("joined");
    let notice_at = outputs
        .iter()
        .position(|o| matches!(o, Output::Send { conn, message: ControlMessage::RecorderPresent { .. } } if *conn == b))
        .expect("notice");
    assert!(joined_at < notice_at, "the notice follows the roster");
    assert!(recorder_notices(&outputs, a).is_empty(), "no repeat for a");
    let rooms = h.core.rooms();
    assert_eq!((rooms[0].members, rooms[0].recorders), (3, 1));
    let members = h.core.members(&RoomKey::new("app", "r")).expect("room");
    assert_eq!(
        members
            .iter()
            .filter(|m| m.recorder)
            .map(|m| m.member)
            .collect::<Vec<_>>(),
        vec![me],
        "the admin view shows the recorder"
    );
}

#[test]
fn a_fresh_ticket_cannot_turn_a_member_into_a_recorder() {
    let mut h = Harness::new(Limits::default());
    let (a, _) = h.join("a", "r");
    h.outputs();
    let ticket = h.ticket("app", "a", "r", Grants::recorder());
    h.core
        .handle_control(a, ControlMessage::RefreshTicket { ticket }, h.now);
    let outputs = h.outputs();
    assert!(outputs.iter().any(|o| matches!(
        o,
        Output::Send {
            message: ControlMessage::Error {
                code: ErrorCode::NotPermitted,
                ..
            },
            ..
        }
    )));
    let members = h.core.members(&RoomKey::new("app", "r")).expect("room");
    assert!(!members[0].recorder);
}
