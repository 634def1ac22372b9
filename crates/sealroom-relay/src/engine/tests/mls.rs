//! The MLS delivery service in the core: group state, first-commit-wins ordering, size
//! bounds, and relay-only messages refused from members.

use sealroom_frame::control::MlsRefusal;

use super::*;

fn commit(position: u64, bytes: &[u8]) -> ControlMessage {
    ControlMessage::MlsCommit {
        position,
        commit: bytes.to_vec(),
        group_info: b"group info after".to_vec(),
    }
}

#[test]
fn the_first_commit_for_a_position_wins_and_later_ones_are_refused_as_stale() {
    let mut h = Harness::new(Limits::default());
    let (a, _) = h.join("alice", "r");
    let (b, member_b) = h.join("bob", "r");
    let (c, _) = h.join("carol", "r");
    h.outputs();
    assert_eq!(
        h.core.handle_control(a, ControlMessage::MlsSync, h.now),
        ControlOutcome::Mls(MlsOutcome::Synced)
    );
    assert_eq!(
        h.sent_to(a),
        [ControlMessage::MlsState {
            position: 0,
            group_info: None
        }]
    );
    let publish = ControlMessage::MlsPublish {
        position: 0,
        group_info: b"epoch 0".to_vec(),
    };
    assert_eq!(
        h.core.handle_control(a, publish.clone(), h.now),
        ControlOutcome::Mls(MlsOutcome::Published)
    );
    assert_eq!(h.sent_to(a), [ControlMessage::MlsAccepted { position: 0 }]);
    // A second creator loses: the group exists.
    assert_eq!(
        h.core.handle_control(c, publish, h.now),
        ControlOutcome::Mls(MlsOutcome::Refused(MlsRefusal::Exists))
    );
    h.outputs();

    // Bob and Carol both commit on position 0: Bob's arrives first.
    assert_eq!(
        h.core.handle_control(b, commit(0, b"bob's"), h.now),
        ControlOutcome::Mls(MlsOutcome::Committed)
    );
    assert_eq!(
        h.core.handle_control(c, commit(0, b"carol's"), h.now),
        ControlOutcome::Mls(MlsOutcome::Refused(MlsRefusal::Stale))
    );
    let outputs = h.outputs();
    let to = |conn: ConnId| -> Vec<&ControlMessage> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Send { conn: c, message } if *c == conn => Some(message),
                _ => None,
            })
            .collect()
    };
    let committed = ControlMessage::MlsCommitted {
        member: member_b,
        position: 0,
        commit: b"bob's".to_vec(),
    };
    assert_eq!(to(a), [&committed]);
    assert_eq!(to(b), [&ControlMessage::MlsAccepted { position: 1 }]);
    // Carol hears the winner before her refusal, on one ordered stream.
    assert_eq!(
        to(c),
        [
            &committed,
            &ControlMessage::MlsRefused {
                position: 1,
                reason: MlsRefusal::Stale
            }
        ]
    );
    // A newcomer syncs to the winner's group info.
    h.core.handle_control(c, ControlMessage::MlsSync, h.now);
    assert_eq!(
        h.sent_to(c),
        [ControlMessage::MlsState {
            position: 1,
            group_info: Some(b"group info after".to_vec())
        }]
    );
    // A commit for a position ahead is stale too.
    assert_eq!(
        h.core.handle_control(c, commit(5, b"x"), h.now),
        ControlOutcome::Mls(MlsOutcome::Refused(MlsRefusal::Stale))
    );
}

#[test]
fn oversize_empty_and_groupless_mls_messages_are_refused_without_changing_the_group() {
    let limits = Limits {
        max_mls_message_len: 2048,
        ..Limits::default()
    };
    let mut h = Harness::new(limits);
    let (a, _) = h.join("alice", "r");
    let (b, _) = h.join("bob", "r");
    assert_eq!(
        h.core.handle_control(a, commit(0, b"early"), h.now),
        ControlOutcome::Mls(MlsOutcome::Refused(MlsRefusal::NoGroup))
    );
    let empty = ControlMessage::MlsPublish {
        position: 0,
        group_info: Vec::new(),
    };
    assert_eq!(
        h.core.handle_control(a, empty, h.now),
        ControlOutcome::Mls(MlsOutcome::Refused(MlsRefusal::Empty))
    );
    let big = ControlMessage::MlsPublish {
        position: 0,
        group_info: vec![0; 2049],
    };
    assert_eq!(
        h.core.handle_control(a, big, h.now),
        ControlOutcome::Mls(MlsOutcome::Refused(MlsRefusal::TooLarge))
    );
    let fine = ControlMessage::MlsPublish {
        position: 9,
        group_info: vec![0; 2048],
    };
    assert_eq!(
        h.core.handle_control(a, fine, h.now),
        ControlOutcome::Mls(MlsOutcome::Published)
    );
    let oversize = ControlMessage::MlsCommit {
        position: 9,
        commit: vec![1; 1500],
        group_info: vec![2; 600],
    };
    assert_eq!(
        h.core.handle_control(b, oversize, h.now),
        ControlOutcome::Mls(MlsOutcome::Refused(MlsRefusal::TooLarge))
    );
    h.outputs();
    // The group is where it was: position 9, its group info unchanged.
    h.core.handle_control(b, ControlMessage::MlsSync, h.now);
    assert_eq!(
        h.sent_to(b),
        [ControlMessage::MlsState {
            position: 9,
            group_info: Some(vec![0; 2048])
        }]
    );
    // Both members are still there.
    assert_eq!(h.core.member_count(), 2);
}

#[test]
fn relay_only_mls_messages_from_a_member_are_a_violation_and_rooms_keep_their_own_group() {
    let mut h = Harness::new(Limits::default());
    let (a, _) = h.join("alice", "r");
    let (x, _) = h.join("xavier", "other");
    let publish = |info: &[u8]| ControlMessage::MlsPublish {
        position: 0,
        group_info: info.to_vec(),
    };
    h.core.handle_control(a, publish(b"room r"), h.now);
    h.core.handle_control(x, publish(b"room other"), h.now);
    h.outputs();
    h.core.handle_control(x, ControlMessage::MlsSync, h.now);
    assert_eq!(
        h.sent_to(x),
        [ControlMessage::MlsState {
            position: 0,
            group_info: Some(b"room other".to_vec())
        }]
    );
    let forged = ControlMessage::MlsCommitted {
        member: 1,
        position: 0,
        commit: vec![1],
    };
    assert_eq!(
        h.core.handle_control(a, forged, h.now),
        ControlOutcome::Violation(Violation::RelayOnly)
    );
    // The room's group state goes with its last member.
    h.core.handle_disconnect(x, LeaveReason::Left);
    let (y, _) = h.join("yvonne", "other");
    h.outputs();
    h.core.handle_control(y, ControlMessage::MlsSync, h.now);
    assert_eq!(
        h.sent_to(y),
        [ControlMessage::MlsState {
            position: 0,
            group_info: None
        }]
    );
}

fn part(bytes: Vec<u8>) -> ControlMessage {
    ControlMessage::MlsGroupInfoPart { bytes }
}

#[test]
fn a_group_info_larger_than_one_message_travels_in_pieces_within_its_bound() {
    let limits = Limits {
        max_mls_message_len: 2048,
        max_mls_group_info_len: 8192,
        ..Limits::default()
    };
    let mut h = Harness::new(limits);
    let (a, _) = h.join("alice", "r");
    let (b, _) = h.join("bob", "r");
    h.outputs();
    // Alice publishes 7,144 bytes: three pieces and the last 1,000 bytes in the publish.
    let info: Vec<u8> = (0..7144u32).map(|i| (i % 251) as u8).collect();
    for piece in info[..6144].chunks(2048) {
        assert_eq!(
            h.core.handle_control(a, part(piece.to_vec()), h.now),
            ControlOutcome::Mls(MlsOutcome::Part)
        );
    }
    let publish = ControlMessage::MlsPublish {
        position: 0,
        group_info: info[6144..].to_vec(),
    };
    assert_eq!(
        h.core.handle_control(a, publish, h.now),
        ControlOutcome::Mls(MlsOutcome::Published)
    );
    assert_eq!(h.sent_to(a), [ControlMessage::MlsAccepted { position: 0 }]);
    // Bob syncs: the relay answers in pieces of at most one message's MLS bytes, the
    // state last, and together they are the group info.
    h.core.handle_control(b, ControlMessage::MlsSync, h.now);
    let answer = h.sent_to(b);
    let mut whole = Vec::new();
    for (i, message) in answer.iter().enumerate() {
        match message {
            ControlMessage::MlsGroupInfoPart { bytes } if i + 1 < answer.len() => {
                assert!(!bytes.is_empty() && bytes.len() <= 2048);
                whole.extend_from_slice(bytes);
            }
            ControlMessage::MlsState {
                position: 0,
                group_info: Some(last),
            } if i + 1 == answer.len() => whole.extend_from_slice(last),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(answer.len() > 1);
    assert_eq!(whole, info);

    // Bob's commit with 8,193 bytes of group info: one past the bound, refused, and the
    // room stays where it was.
    for _ in 0..4 {
        h.core.handle_control(b, part(vec![7; 2048]), h.now);
    }
    let commit_with = |last: Vec<u8>| ControlMessage::MlsCommit {
        position: 0,
        commit: b"bob's".to_vec(),
        group_info: last,
    };
    assert_eq!(
        h.core.handle_control(b, commit_with(vec![1]), h.now),
        ControlOutcome::Mls(MlsOutcome::Refused(MlsRefusal::TooLarge))
    );
    assert_eq!(
        h.sent_to(b),
        [ControlMessage::MlsRefused {
            position: 0,
            reason: MlsRefusal::TooLarge
        }]
    );
    // An empty piece poisons the commit it leads, and so does an over-long one.
    h.core.handle_control(b, part(Vec::new()), h.now);
    h.core.handle_control(b, part(vec![1; 100]), h.now);
    assert_eq!(
        h.core.handle_control(b, commit_with(vec![1]), h.now),
        ControlOutcome::Mls(MlsOutcome::Refused(MlsRefusal::Empty))
    );
    h.core.handle_control(b, part(vec![1; 2049]), h.now);
    assert_eq!(
        h.core.handle_control(b, commit_with(vec![1]), h.now),
        ControlOutcome::Mls(MlsOutcome::Refused(MlsRefusal::TooLarge))
    );
    h.outputs();
    // Refusals leave nothing behind: pieces within the bound then go through, and Alice
    // syncs to exactly Bob's group info.
    let next: Vec<u8> = (0..5000u32).map(|i| (i % 13) as u8).collect();
    h.core.handle_control(b, part(next[..2048].to_vec()), h.now);
    h.core
        .handle_control(b, part(next[2048..4096].to_vec()), h.now);
    assert_eq!(
        h.core
            .handle_control(b, commit_with(next[4096..].to_vec()), h.now),
        ControlOutcome::Mls(MlsOutcome::Committed)
    );
    let outputs = h.outputs();
    assert!(outputs.iter().any(|o| matches!(o,
        Output::Send { conn, message: ControlMessage::MlsCommitted { position: 0, .. } } if *conn == a)));
    h.core.handle_control(a, ControlMessage::MlsSync, h.now);
    let mut synced = Vec::new();
    for message in h.sent_to(a) {
        match message {
            ControlMessage::MlsGroupInfoPart { bytes } => synced.extend(bytes),
            ControlMessage::MlsState {
                position: 1,
                group_info: Some(last),
            } => synced.extend(last),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(synced, next);
}
