//! Unit tests of the core, driven with explicit instants and no network.

use std::time::Instant;

use sealroom_frame::control::{
    ControlMessage, ErrorCode, JoinOptions, LeaveReason, MemberInfo, TrackInfo,
};
use sealroom_frame::envelope::{Envelope, Flags, MediaKind, MemberId, TrackId};

use super::room::GO_AWAY_RECONNECT_MS;
use super::*;
use crate::config::{AppConfig, Limits};
use crate::ticket::{Grants, TicketClaims, mint};

const T0: u64 = 1_800_000_000;
const SECRET: &[u8] = b"core-test-secret";

struct Harness {
    core: RelayCore,
    now: Now,
    next: u64,
}

impl Harness {
    fn new(limits: Limits) -> Self {
        let apps = [
            AppConfig::new("app", "k", SECRET.to_vec()),
            AppConfig::new("other-app", "k", SECRET.to_vec()),
        ];
        let now = Now {
            instant: Instant::now(),
            unix_secs: T0,
        };
        Self {
            core: RelayCore::new(&apps, limits, now.instant),
            now,
            next: 1,
        }
    }

    fn ticket(&self, app: &str, user: &str, room: &str, grants: Grants) -> String {
        let claims = TicketClaims::new(app, user, room, self.now.unix_secs, 600, grants);
        mint(&claims, "k", SECRET).expect("mint")
    }

    fn connect(&mut self) -> ConnId {
        let conn = ConnId(self.next);
        self.next += 1;
        self.core.handle_connect(conn, self.now);
        conn
    }

    fn join_with(
        &mut self,
        app: &str,
        user: &str,
        room: &str,
        grants: Grants,
    ) -> (ConnId, JoinOutcome) {
        let conn = self.connect();
        let ticket = self.ticket(app, user, room, grants);
        let options = JoinOptions {
            auto_subscribe: true,
            room: None,
        };
        let outcome = self.core.handle_join(conn, &ticket, &options, self.now);
        (conn, outcome)
    }

    /// Join and return the connection and member id.
    fn join(&mut self, user: &str, room: &str) -> (ConnId, MemberId) {
        let (conn, outcome) = self.join_with("app", user, room, Grants::all());
        assert_eq!(outcome, JoinOutcome::Joined);
        let member = self.core.membership(conn).expect("joined").1;
        (conn, member)
    }

    fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.core.poll_output()).collect()
    }

    fn sent_to(&mut self, conn: ConnId) -> Vec<ControlMessage> {
        self.outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send { conn: c, message } if c == conn => Some(message),
                _ => None,
            })
            .collect()
    }

    fn frame(
        &mut self,
        conn: ConnId,
        sender: MemberId,
        kind: MediaKind,
        track: TrackId,
        len: usize,
    ) -> Result<Vec<ConnId>, DropReason> {
        let envelope = Envelope {
            kind,
            flags: Flags::empty(),
            sender,
            track,
            group: 0,
            seq: 0,
            timestamp_us: 0,
        };
        self.core
            .handle_frame(conn, &envelope, len, self.now)
            .map(<[ConnId]>::to_vec)
    }

    fn advance(&mut self, secs: u64) {
        self.now = self.now.plus_secs(secs);
    }
}

fn refusal(outputs: &[Output], conn: ConnId) -> Option<ErrorCode> {
    let error = outputs.iter().find_map(|o| match o {
        Output::Send {
            conn: c,
            message: ControlMessage::Error { code, .. },
        } if *c == conn => Some(*code),
        _ => None,
    });
    let closed = outputs
        .iter()
        .any(|o| matches!(o, Output::Close { conn: c, code } if *c == conn && *code == error));
    closed.then_some(error).flatten()
}

#[test]
fn rooms_come_and_go_with_their_members() {
    let mut h = Harness::new(Limits::default());
    let (a, ma) = h.join("alice", "r");
    let (b, mb) = h.join("bob", "r");
    assert_eq!((ma, mb), (1, 2));
    assert_eq!(h.core.room_count(), 1);
    let out = h.outputs();
    assert!(out.contains(&Output::Send {
        conn: a,
        message: ControlMessage::MemberJoined(MemberInfo {
            member: mb,
            user: "bob".to_owned(),
            tracks: Vec::new(),
        }),
    }));
    let joined_b = out.iter().find_map(|o| match o {
        Output::Send {
            conn,
            message: ControlMessage::Joined { roster, .. },
        } if *conn == b => Some(roster.clone()),
        _ => None,
    });
    assert_eq!(joined_b.map(|r| r.len()), Some(1));

    h.core.handle_disconnect(b, LeaveReason::TimedOut);
    assert_eq!(
        h.sent_to(a),
        vec![ControlMessage::MemberLeft {
            member: mb,
            reason: LeaveReason::TimedOut,
        }]
    );
    h.core.handle_disconnect(a, LeaveReason::Left);
    assert_eq!(h.core.room_count(), 0);
    assert_eq!(h.core.member_count(), 0);
    // A new room with the same id starts counting member ids again.
    let (_, m) = h.join("carol", "r");
    assert_eq!(m, 1);
}

#[test]
fn a_second_session_replaces_the_first() {
    let mut h = Harness::new(Limits {
        max_members_per_room: 2,
        ..Limits::default()
    });
    let (a1, m1) = h.join("alice", "r");
    let (b, _) = h.join("bob", "r");
    h.outputs();
    // The room is full, but a replacement takes the old seat.
    let (a2, m2) = h.join("alice", "r");
    assert_ne!(m1, m2);
    let out = h.outputs();
    assert_eq!(refusal(&out, a1), Some(ErrorCode::Replaced));
    let to_b: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Send { conn, message } if *conn == b => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        to_b[0],
        ControlMessage::MemberLeft {
            member: m1,
            reason: LeaveReason::Replaced,
        }
    );
    assert!(matches!(&to_b[1], ControlMessage::MemberJoined(info) if info.member == m2));
    assert_eq!(h.core.member_count(), 2);
    // The old connection is forgotten: its frames go nowhere.
    assert_eq!(
        h.frame(a1, m1, MediaKind::Audio, 1, 100),
        Err(DropReason::NotJoined)
    );
    assert_eq!(h.frame(a2, m2, MediaKind::Audio, 1, 100), Ok(vec![b]));
}

#[test]
fn refusals_are_typed() {
    let mut h = Harness::new(Limits {
        max_members_per_room: 1,
        max_rooms_per_app: 1,
        ..Limits::default()
    });
    h.join("alice", "r");
    let (c, outcome) = h.join_with("app", "bob", "r", Grants::all());
    assert_eq!(outcome, JoinOutcome::Refused(ErrorCode::RoomFull));
    assert_eq!(refusal(&h.outputs(), c), Some(ErrorCode::RoomFull));
    let (_, outcome) = h.join_with("app", "bob", "r2", Grants::all());
    assert_eq!(outcome, JoinOutcome::Refused(ErrorCode::TooManyRooms));
    // Another app has its own room budget.
    let (_, outcome) = h.join_with("other-app", "bob", "r2", Grants::all());
    assert_eq!(outcome, JoinOutcome::Joined);

    let conn = h.connect();
    let claims = TicketClaims::new("app", "eve", "r", T0, 600, Grants::all());
    let forged = mint(&claims, "k", b"wrong-secret").expect("mint");
    let outcome = h
        .core
        .handle_join(conn, &forged, &JoinOptions::default(), h.now);
    assert_eq!(outcome, JoinOutcome::Refused(ErrorCode::BadSignature));

    let conn = h.connect();
    let outcome = h
        .core
        .handle_join(conn, "garbage", &JoinOptions::default(), h.now);
    assert_eq!(outcome, JoinOutcome::Refused(ErrorCode::BadTicket));
    assert_eq!(
        h.core.connection_count(),
        2,
        "refused connections are forgotten"
    );
}

#[test]
fn a_join_for_another_room_than_the_ticket_names_is_wrong_room() {
    let mut h = Harness::new(Limits::default());
    let ticket = h.ticket("app", "alice", "r", Grants::all());
    let asking_for = |room: &str| JoinOptions {
        auto_subscribe: true,
        room: Some(room.to_owned()),
    };
    let conn = h.connect();
    assert_eq!(
        h.core.handle_join(conn, &ticket, &asking_for("r2"), h.now),
        JoinOutcome::Refused(ErrorCode::WrongRoom)
    );
    assert_eq!(refusal(&h.outputs(), conn), Some(ErrorCode::WrongRoom));
    assert_eq!(h.core.room_count(), 0);
    let conn = h.connect();
    assert_eq!(
        h.core.handle_join(conn, &ticket, &asking_for("r"), h.now),
        JoinOutcome::Joined
    );
}

#[test]
fn control_messages_out_of_order_are_typed_violations() {
    let mut h = Harness::new(Limits::default());
    // Publishing before joining.
    let early = h.connect();
    let publish = ControlMessage::TrackPublished {
        member: 1,
        track: TrackInfo {
            track: 1,
            kind: MediaKind::Audio,
        },
    };
    assert_eq!(
        h.core.handle_control(early, publish.clone(), h.now),
        ControlOutcome::Violation(Violation::BeforeJoin)
    );
    assert_eq!(
        refusal(&h.outputs(), early),
        Some(ErrorCode::ProtocolViolation)
    );
    assert_eq!(
        h.core.handle_control(early, publish, h.now),
        ControlOutcome::Ignored,
        "the connection is gone"
    );

    // Joining twice, and a message only the relay sends.
    let (a, ma) = h.join("a", "r");
    let (b, _) = h.join("b", "r");
    h.outputs();
    let ticket = h.ticket("app", "a", "r", Grants::all());
    let join = ControlMessage::Join {
        ticket,
        client_name: String::new(),
        client_version: String::new(),
        options: JoinOptions::default(),
    };
    assert_eq!(
        h.core.handle_control(a, join, h.now),
        ControlOutcome::Violation(Violation::JoinTwice)
    );
    let out = h.outputs();
    assert_eq!(refusal(&out, a), Some(ErrorCode::ProtocolViolation));
    assert!(out.contains(&Output::Send {
        conn: b,
        message: ControlMessage::MemberLeft {
            member: ma,
            reason: LeaveReason::Removed,
        },
    }));
    let goaway = ControlMessage::GoAway {
        code: ErrorCode::ShuttingDown,
        reconnect_after_ms: 0,
    };
    assert_eq!(
        h.core.handle_control(b, goaway, h.now),
        ControlOutcome::Violation(Violation::RelayOnly)
    );
    assert_eq!(h.core.room_count(), 0);
    // A join that is not admitted is a join outcome, not a violation.
    let late = h.connect();
    let forged = ControlMessage::Join {
        ticket: "not a ticket".to_owned(),
        client_name: String::new(),
        client_version: String::new(),
        options: JoinOptions::default(),
    };
    assert_eq!(
        h.core.handle_control(late, forged, h.now),
        ControlOutcome::Join(JoinOutcome::Refused(ErrorCode::BadTicket))
    );
}

#[test]
fn control_messages_over_the_rate_are_dropped_with_feedback() {
    let mut h = Harness::new(Limits {
        control_messages_per_sec: 5,
        ..Limits::default()
    });
    let (a, _) = h.join("a", "r");
    h.outputs();
    let outcomes: Vec<ControlOutcome> = (0..20)
        .map(|_| {
            h.core.handle_control(
                a,
                ControlMessage::Subscribe {
                    member: 9,
                    track: 1,
                },
                h.now,
            )
        })
        .collect();
    let handled = outcomes
        .iter()
        .filter(|o| **o == ControlOutcome::Handled)
        .count();
    assert_eq!(handled, 10, "a burst of twice the rate");
    assert!(
        outcomes[10..]
            .iter()
            .all(|o| *o == ControlOutcome::RateLimited)
    );
    let warnings = h
        .sent_to(a)
        .into_iter()
        .filter(|m| {
            matches!(
                m,
                ControlMessage::Error {
                    code: ErrorCode::RateLimited,
                    ..
                }
            )
        })
        .count();
    assert_eq!(warnings, 1);
    assert!(h.core.membership(a).is_some(), "the session continues");
}

#[test]
fn streams_opened_over_the_rate_are_refused() {
    let mut h = Harness::new(Limits {
        incoming_streams_per_sec: 10,
        incoming_streams_burst: 20,
        ..Limits::default()
    });
    let (a, _) = h.join("a", "r");
    h.outputs();
    let opened = (0..100)
        .filter(|_| h.core.handle_incoming_stream(a, h.now).is_ok())
        .count();
    assert_eq!(opened, 20);
    assert_eq!(
        h.core.handle_incoming_stream(a, h.now),
        Err(Violation::TooManyStreams)
    );
    let warnings: Vec<ControlMessage> = h.sent_to(a);
    assert_eq!(warnings.len(), 1, "one warning a second: {warnings:?}");
    assert!(matches!(
        warnings[0],
        ControlMessage::Error {
            code: ErrorCode::RateLimited,
            ..
        }
    ));
    h.advance(1);
    let opened = (0..100)
        .filter(|_| h.core.handle_incoming_stream(a, h.now).is_ok())
        .count();
    assert_eq!(opened, 10, "the steady rate");
    assert!(h.core.membership(a).is_some(), "the session continues");
}

#[test]
fn keyframe_requests_are_coalesced_per_publisher_track() {
    let mut h = Harness::new(Limits {
        keyframe_request_interval_ms: 500,
        ..Limits::default()
    });
    let (a, ma) = h.join("a", "r");
    let (b, mb) = h.join("b", "r");
    let (c, mc) = h.join("c", "r");
    assert!(h.frame(a, ma, MediaKind::Video, 1, 1000).is_ok());
    assert!(h.frame(a, ma, MediaKind::Audio, 2, 100).is_ok());
    h.outputs();
    let ask = |h: &mut Harness, conn: ConnId, track: TrackId| {
        h.core.handle_control(
            conn,
            ControlMessage::KeyframeRequest { member: ma, track },
            h.now,
        )
    };
    assert_eq!(
        ask(&mut h, b, 1),
        ControlOutcome::Keyframe(KeyframeOutcome::Forwarded)
    );
    assert_eq!(
        h.sent_to(a),
        vec![ControlMessage::KeyframeRequest {
            member: mb,
            track: 1,
        }]
    );
    // Within the interval, from anyone (the relay included): coalesced.
    assert_eq!(
        ask(&mut h, c, 1),
        ControlOutcome::Keyframe(KeyframeOutcome::Coalesced)
    );
    assert_eq!(
        h.core.handle_stale_group(c, ma, 1, h.now),
        KeyframeOutcome::Coalesced
    );
    // Not a video track, not a track at all, one's own track: ignored.
    assert_eq!(
        ask(&mut h, b, 2),
        ControlOutcome::Keyframe(KeyframeOutcome::Ignored)
    );
    assert_eq!(
        ask(&mut h, b, 7),
        ControlOutcome::Keyframe(KeyframeOutcome::Ignored)
    );
    assert_eq!(
        ask(&mut h, a, 1),
        ControlOutcome::Keyframe(KeyframeOutcome::Ignored)
    );
    assert!(h.sent_to(a).is_empty());
    // After the interval the relay asks on behalf of a receiver that fell behind.
    h.now.instant += Duration::from_millis(500);
    assert_eq!(
        h.core.handle_stale_group(c, ma, 1, h.now),
        KeyframeOutcome::Forwarded
    );
    assert_eq!(
        h.sent_to(a),
        vec![ControlMessage::KeyframeRequest {
            member: mc,
            track: 1,
        }]
    );
    // A receiver that is no member asks for nothing.
    assert_eq!(
        h.core.handle_stale_group(ConnId(999), ma, 1, h.now),
        KeyframeOutcome::Ignored
    );
}

#[test]
fn connections_that_never_join_are_counted() {
    let mut h = Harness::new(Limits::default());
    h.connect();
    h.connect();
    h.join("a", "r");
    h.advance(Limits::default().join_timeout_secs);
    assert_eq!(
        h.core.handle_timeout(h.now),
        TimeoutOutcome {
            no_join: 2,
            tickets_expired: 0,
        }
    );
    assert_eq!(h.core.connection_count(), 1);
}

#[test]
fn control_before_join_and_join_twice_are_violations() {
    let mut h = Harness::new(Limits::default());
    let conn = h.connect();
    h.core.handle_control(conn, ControlMessage::Leave, h.now);
    assert_eq!(
        refusal(&h.outputs(), conn),
        Some(ErrorCode::ProtocolViolation)
    );

    let (a, _) = h.join("alice", "r");
    h.outputs();
    let ticket = h.ticket("app", "alice", "r", Grants::all());
    h.core.handle_control(
        a,
        ControlMessage::Join {
            ticket,
            client_name: String::new(),
            client_version: String::new(),
            options: JoinOptions::default(),
        },
        h.now,
    );
    assert_eq!(refusal(&h.outputs(), a), Some(ErrorCode::ProtocolViolation));
    assert_eq!(h.core.room_count(), 0);
}

#[test]
fn forwarding_goes_to_the_other_subscribers_only() {
    let mut h = Harness::new(Limits::default());
    let (a, ma) = h.join("a", "r");
    let (b, mb) = h.join("b", "r");
    let (c, _) = h.join_with("app", "c", "r", Grants::subscribe_only());
    let (_, outcome) = h.join_with("app", "d", "r", Grants::none());
    assert_eq!(outcome, JoinOutcome::Joined);
    let (_, _) = h.join("e", "other-room");
    let mut receivers = h
        .frame(a, ma, MediaKind::Video, 1, 1000)
        .expect("forwarded");
    receivers.sort();
    assert_eq!(
        receivers,
        vec![b, c],
        "not the sender, not a member without subscribe"
    );
    assert_eq!(
        h.frame(a, mb, MediaKind::Video, 1, 1000),
        Err(DropReason::ForgedSender)
    );
    // c may not publish.
    assert_eq!(
        h.frame(c, 3, MediaKind::Audio, 1, 100),
        Err(DropReason::NotPermitted)
    );
    // Unsubscribing one track leaves the others.
    h.core.handle_control(
        b,
        ControlMessage::Unsubscribe {
            member: ma,
            track: 1,
        },
        h.now,
    );
    assert_eq!(h.frame(a, ma, MediaKind::Video, 1, 1000), Ok(vec![c]));
    let mut receivers = h.frame(a, ma, MediaKind::Audio, 2, 100).expect("forwarded");
    receivers.sort();
    assert_eq!(receivers, vec![b, c]);
    h.core.handle_control(
        b,
        ControlMessage::Subscribe {
            member: ma,
            track: 1,
        },
        h.now,
    );
    let mut receivers = h
        .frame(a, ma, MediaKind::Video, 1, 1000)
        .expect("forwarded");
    receivers.sort();
    assert_eq!(receivers, vec![b, c]);
}

#[test]
fn without_auto_subscribe_only_explicit_subscriptions_count() {
    let mut h = Harness::new(Limits::default());
    let (a, ma) = h.join("a", "r");
    let b = h.connect();
    let ticket = h.ticket("app", "b", "r", Grants::all());
    let options = JoinOptions {
        auto_subscribe: false,
        room: None,
    };
    assert_eq!(
        h.core.handle_join(b, &ticket, &options, h.now),
        JoinOutcome::Joined
    );
    assert_eq!(h.frame(a, ma, MediaKind::Audio, 1, 100), Ok(vec![]));
    h.core.handle_control(
        b,
        ControlMessage::Subscribe {
            member: ma,
            track: 1,
        },
        h.now,
    );
    assert_eq!(h.frame(a, ma, MediaKind::Audio, 1, 100), Ok(vec![b]));
}

#[test]
fn grants_are_enforced_with_throttled_feedback() {
    let mut h = Harness::new(Limits::default());
    let grants = Grants {
        publish_audio: true,
        subscribe: true,
        ..Grants::none()
    };
    let (a, _) = h.join_with("app", "a", "r", grants);
    let ma = h.core.membership(a).expect("joined").1;
    h.join("b", "r");
    h.outputs();
    for _ in 0..10 {
        assert_eq!(
            h.frame(a, ma, MediaKind::Video, 1, 100),
            Err(DropReason::NotPermitted)
        );
    }
    let warnings = h
        .sent_to(a)
        .into_iter()
        .filter(|m| {
            matches!(
                m,
                ControlMessage::Error {
                    code: ErrorCode::NotPermitted,
                    ..
                }
            )
        })
        .count();
    assert_eq!(warnings, 1, "one warning a second, not one per frame");
    h.core.handle_control(
        a,
        ControlMessage::TrackPublished {
            member: ma,
            track: TrackInfo {
                track: 5,
                kind: MediaKind::Data,
            },
        },
        h.now,
    );
    h.advance(2);
    h.core.handle_control(
        a,
        ControlMessage::TrackPublished {
            member: ma,
            track: TrackInfo {
                track: 6,
                kind: MediaKind::Data,
            },
        },
        h.now,
    );
    let errors = h
        .sent_to(a)
        .into_iter()
        .filter(|m| {
            matches!(
                m,
                ControlMessage::Error {
                    code: ErrorCode::NotPermitted,
                    ..
                }
            )
        })
        .count();
    assert_eq!(errors, 1);
    assert!(h.frame(a, ma, MediaKind::Audio, 1, 100).is_ok());
}

#[test]
fn tracks_are_published_by_their_first_frame_within_the_limit() {
    let mut h = Harness::new(Limits {
        max_tracks_per_member: 2,
        ..Limits::default()
    });
    let (a, ma) = h.join("a", "r");
    let (b, _) = h.join("b", "r");
    h.outputs();
    assert!(h.frame(a, ma, MediaKind::Audio, 1, 100).is_ok());
    assert!(h.frame(a, ma, MediaKind::Audio, 1, 100).is_ok());
    let published = h.sent_to(b);
    assert_eq!(
        published,
        vec![ControlMessage::TrackPublished {
            member: ma,
            track: TrackInfo {
                track: 1,
                kind: MediaKind::Audio,
            },
        }]
    );
    assert_eq!(
        h.frame(a, ma, MediaKind::Video, 1, 100),
        Err(DropReason::KindMismatch)
    );
    assert!(h.frame(a, ma, MediaKind::Video, 2, 100).is_ok());
    assert_eq!(
        h.frame(a, ma, MediaKind::Video, 3, 100),
        Err(DropReason::TooManyTracks)
    );
    h.core.handle_control(
        a,
        ControlMessage::TrackUnpublished {
            member: ma,
            track: 2,
        },
        h.now,
    );
    assert!(h.frame(a, ma, MediaKind::Video, 3, 100).is_ok());
}

#[test]
fn a_data_track_ends_with_its_stream_and_a_late_announcement_of_it_is_ignored() {
    let mut h = Harness::new(Limits::default());
    let (a, ma) = h.join("a", "r");
    let (b, _) = h.join("b", "r");
    h.outputs();
    let data = TrackInfo {
        track: 4,
        kind: MediaKind::Data,
    };
    assert!(h.frame(a, ma, MediaKind::Data, 4, 100).is_ok());
    // Only data tracks end with a stream; an audio track stays.
    assert!(h.frame(a, ma, MediaKind::Audio, 1, 100).is_ok());
    h.core.end_data_track(a, 1);
    h.core.end_data_track(a, 4);
    assert_eq!(
        h.sent_to(b),
        vec![
            ControlMessage::TrackPublished {
                member: ma,
                track: data,
            },
            ControlMessage::TrackPublished {
                member: ma,
                track: TrackInfo {
                    track: 1,
                    kind: MediaKind::Audio,
                },
            },
            ControlMessage::TrackUnpublished {
                member: ma,
                track: 4,
            },
        ]
    );
    // The publisher's `TrackPublished`, sent before the stream ended but read after it,
    // announces nothing.
    h.core.handle_control(
        a,
        ControlMessage::TrackPublished {
            member: ma,
            track: data,
        },
        h.now,
    );
    assert_eq!(h.sent_to(b), Vec::new());
    // The track's next frame is a new publication, and so is a later announcement.
    assert!(h.frame(a, ma, MediaKind::Data, 4, 100).is_ok());
    assert_eq!(
        h.sent_to(b),
        vec![ControlMessage::TrackPublished {
            member: ma,
            track: data,
        }]
    );
    h.core.end_data_track(a, 4);
    h.core.handle_control(
        a,
        ControlMessage::TrackPublished {
            member: ma,
            track: data,
        },
        h.now,
    );
    h.core.handle_control(
        a,
        ControlMessage::TrackPublished {
            member: ma,
            track: data,
        },
        h.now,
    );
    assert_eq!(
        h.sent_to(b),
        vec![
            ControlMessage::TrackUnpublished {
                member: ma,
                track: 4,
            },
            ControlMessage::TrackPublished {
                member: ma,
                track: data,
            },
        ],
        "one stale announcement is ignored, the next is a new publication"
    );
    assert_eq!(h.core.invariant_violation(), None);
}

#[test]
fn frame_size_and_data_rates_are_limited() {
    let limits = Limits {
        max_frame_len: 1000,
        data_messages_per_sec: 10,
        data_messages_burst: 10,
        ..Limits::default()
    };
    let mut h = Harness::new(Limits {
        max_data_frame_len: 500,
        ..limits
    });
    let (a, ma) = h.join("a", "r");
    h.join("b", "r");
    assert_eq!(
        h.frame(a, ma, MediaKind::Audio, 1, 1001),
        Err(DropReason::TooLarge)
    );
    assert!(h.frame(a, ma, MediaKind::Audio, 1, 1000).is_ok());
    assert_eq!(
        h.frame(a, ma, MediaKind::Data, 2, 501),
        Err(DropReason::TooLarge)
    );
    let sent = (0..30)
        .filter(|_| h.frame(a, ma, MediaKind::Data, 2, 100).is_ok())
        .count();
    assert_eq!(sent, 10);
    let out = h.sent_to(a);
    assert!(out.iter().any(|m| matches!(
        m,
        ControlMessage::Error {
            code: ErrorCode::RateLimited,
            ..
        }
    )));
    assert!(out.iter().any(|m| matches!(
        m,
        ControlMessage::Error {
            code: ErrorCode::FrameTooLarge,
            ..
        }
    )));
    // A second later there is room for ten more.
    h.advance(1);
    let sent = (0..30)
        .filter(|_| h.frame(a, ma, MediaKind::Data, 2, 100).is_ok())
        .count();
    assert_eq!(sent, 10);
    // Media has its own budget.
    assert!(h.frame(a, ma, MediaKind::Audio, 1, 100).is_ok());
}

mod cascade;
mod mls;
mod recorders;
mod sessions;
mod timers;
