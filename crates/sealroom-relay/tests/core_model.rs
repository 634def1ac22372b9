//! Random sequences of joins, control messages, frames, disconnects, operator actions and
//! time against the I/O-free core, checking what users rely on: no frame reaches another
//! room, a member that left, the sender itself, or a member without the subscribe grant;
//! the core's own invariants hold after every step; nothing panics.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use proptest::prelude::*;
use sealroom_frame::control::{ControlMessage, JoinOptions, TrackInfo};
use sealroom_frame::envelope::{Envelope, Flags, MediaKind};
use sealroom_relay::engine::{MemberTarget, Output};
use sealroom_relay::{
    AppConfig, ConnId, Grants, Limits, Now, RelayCore, RoomKey, TicketClaims, mint,
};

const APPS: [&str; 2] = ["app-a", "app-b"];
const ROOMS: [&str; 2] = ["x", "y"];
const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
const SECRET: &[u8] = b"model-secret";
const CONNS: u64 = 6;
static FORWARDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[derive(Debug, Clone)]
enum Op {
    Connect(u64),
    Join {
        conn: u64,
        app: usize,
        room: usize,
        user: usize,
        grants: u8,
        forged: bool,
    },
    Frame {
        conn: u64,
        kind: u8,
        track: u32,
        lie: bool,
        len: usize,
    },
    Publish {
        conn: u64,
        track: u32,
        kind: u8,
    },
    Unpublish {
        conn: u64,
        track: u32,
    },
    Subscribe {
        conn: u64,
        member: u32,
        track: u32,
        on: bool,
    },
    Refresh {
        conn: u64,
        room: usize,
    },
    Leave(u64),
    Disconnect(u64),
    Advance(u64),
    Kick {
        app: usize,
        room: usize,
        user: usize,
    },
    Dismiss {
        app: usize,
        room: usize,
    },
    Drain,
}

fn op() -> impl Strategy<Value = Op> {
    let conn = 0..CONNS;
    prop_oneof![
        10 => conn.clone().prop_map(Op::Connect),
        40 => (
            conn.clone(),
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.2),
            0..4usize,
            any::<u8>(),
            prop::bool::weighted(0.1)
        )
            .prop_map(|(conn, app, room, user, grants, forged)| Op::Join {
                conn,
                app: usize::from(app),
                room: usize::from(room),
                user,
                grants,
                forged,
            }),
        80 => (
            conn.clone(),
            0..3u8,
            0..4u32,
            prop::bool::weighted(0.2),
            32..2000usize
        )
            .prop_map(|(conn, kind, track, lie, len)| Op::Frame {
                conn,
                kind,
                track,
                lie,
                len,
            }),
        10 => (conn.clone(), 0..4u32, 0..3u8).prop_map(|(conn, track, kind)| Op::Publish {
            conn,
            track,
            kind
        }),
        10 => (conn.clone(), 0..4u32).prop_map(|(conn, track)| Op::Unpublish { conn, track }),
        10 => (conn.clone(), 0..6u32, 0..4u32, any::<bool>()).prop_map(|(conn, member, track, on)| {
            Op::Subscribe {
                conn,
                member,
                track,
                on,
            }
        }),
        10 => (conn.clone(), 0..2usize).prop_map(|(conn, room)| Op::Refresh { conn, room }),
        3 => conn.clone().prop_map(Op::Leave),
        3 => conn.prop_map(Op::Disconnect),
        10 => (0..20u64).prop_map(Op::Advance),
        3 => (0..2usize, 0..2usize, 0..4usize).prop_map(|(app, room, user)| Op::Kick {
            app,
            room,
            user
        }),
        2 => (0..2usize, 0..2usize).prop_map(|(app, room)| Op::Dismiss { app, room }),
        1 => Just(Op::Drain),
    ]
}

fn kind(k: u8) -> MediaKind {
    match k % 3 {
        0 => MediaKind::Audio,
        1 => MediaKind::Video,
        _ => MediaKind::Data,
    }
}

/// Each grant with probability 3/4.
fn grants(bits: u8) -> Grants {
    Grants {
        publish_audio: bits & 0b11 != 0,
        publish_video: bits & 0b1100 != 0,
        publish_data: bits & 0b11_0000 != 0,
        subscribe: bits & 0b1100_0000 != 0,
        record: false,
    }
}

/// What the test knows from the outputs alone.
#[derive(Default)]
struct Model {
    /// Connections that got `Joined` and were not closed since, with their room, member
    /// id and grants.
    joined: HashMap<ConnId, (RoomKey, u32, Grants)>,
    /// Rooms requested by the last join on each connection.
    pending: HashMap<ConnId, (RoomKey, Grants)>,
    /// Connections the core knows (connected and not closed).
    connected: HashSet<ConnId>,
}

impl Model {
    fn absorb(&mut self, core: &mut RelayCore) {
        while let Some(output) = core.poll_output() {
            match output {
                Output::Send {
                    conn,
                    message: ControlMessage::Joined { member, .. },
                } => {
                    let (room, grants) = self.pending.remove(&conn).expect("joined after a join");
                    self.joined.insert(conn, (room, member, grants));
                }
                Output::Close { conn, .. } => {
                    self.joined.remove(&conn);
                    self.pending.remove(&conn);
                    self.connected.remove(&conn);
                }
                Output::Send { .. } => {}
            }
        }
    }
}

fn run(ops: Vec<Op>) {
    let apps: Vec<AppConfig> = APPS
        .iter()
        .map(|a| AppConfig::new(*a, "k", SECRET.to_vec()))
        .collect();
    let limits = Limits {
        max_members_per_room: 3,
        max_rooms_per_app: 1,
        max_tracks_per_member: 2,
        max_frame_len: 1500,
        ticket_leeway_secs: 0,
        ..Limits::default()
    };
    let mut now = Now {
        instant: Instant::now(),
        unix_secs: 1_800_000_000,
    };
    let mut core = RelayCore::new(&apps, limits, now.instant);
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Connect(c) => {
                let conn = ConnId(c);
                if model.connected.insert(conn) {
                    core.handle_connect(conn, now);
                }
            }
            Op::Join {
                conn,
                app,
                room,
                user,
                grants: bits,
                forged,
            } => {
                let conn = ConnId(conn);
                if model.connected.insert(conn) {
                    core.handle_connect(conn, now);
                }
                if model.joined.contains_key(&conn) && !forged {
                    // Join twice only now and then (it removes the member).
                    continue;
                }
                let claims = TicketClaims::new(
                    APPS[app],
                    USERS[user],
                    ROOMS[room],
                    now.unix_secs,
                    300,
                    grants(bits),
                );
                let secret: &[u8] = if forged { b"forged" } else { SECRET };
                let ticket = mint(&claims, "k", secret).expect("mint");
                model
                    .pending
                    .insert(conn, (RoomKey::new(APPS[app], ROOMS[room]), grants(bits)));
                core.handle_control(
                    conn,
                    ControlMessage::Join {
                        ticket,
                        client_name: String::new(),
                        client_version: String::new(),
                        options: JoinOptions {
                            auto_subscribe: user != 3,
                            room: None,
                        },
                    },
                    now,
                );
            }
            Op::Frame {
                conn,
                kind: k,
                track,
                lie,
                len,
            } => {
                // Mostly from a member (frames from strangers are a case, not the case).
                let mut members: Vec<ConnId> = model.joined.keys().copied().collect();
                members.sort();
                let conn = match members.get(conn as usize % members.len().max(1)) {
                    Some(member) if !lie => *member,
                    _ => ConnId(conn),
                };
                let member = core.membership(conn).map_or(1, |(_, m)| m);
                let envelope = Envelope {
                    kind: kind(k),
                    flags: Flags::empty(),
                    sender: if lie { member.wrapping_add(1) } else { member },
                    track,
                    group: 0,
                    seq: 0,
                    timestamp_us: 0,
                };
                let result = core
                    .handle_frame(conn, &envelope, len, now)
                    .map(<[ConnId]>::to_vec);
                if let Ok(receivers) = result {
                    let (room, sender_member, sender_grants) = model
                        .joined
                        .get(&conn)
                        .cloned()
                        .expect("only members forward");
                    assert_eq!(
                        envelope.sender, sender_member,
                        "forged senders never forward"
                    );
                    assert!(
                        sender_grants.may_publish(envelope.kind),
                        "publishing needs the grant"
                    );
                    assert!(len <= limits.max_frame_len);
                    if !receivers.is_empty() {
                        FORWARDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let mut seen = HashSet::new();
                    for receiver in receivers {
                        assert_ne!(receiver, conn, "never back to the sender");
                        assert!(seen.insert(receiver), "at most once per receiver");
                        let (their_room, _, their_grants) = model
                            .joined
                            .get(&receiver)
                            .expect("only to members that joined and did not leave");
                        assert_eq!(*their_room, room, "never into another room");
                        assert!(their_grants.subscribe, "only to subscribers");
                    }
                }
            }
            Op::Publish {
                conn,
                track,
                kind: k,
            } => {
                core.handle_control(
                    ConnId(conn),
                    ControlMessage::TrackPublished {
                        member: 0,
                        track: TrackInfo {
                            track,
                            kind: kind(k),
                        },
                    },
                    now,
                );
            }
            Op::Unpublish { conn, track } => {
                core.handle_control(
                    ConnId(conn),
                    ControlMessage::TrackUnpublished { member: 0, track },
                    now,
                );
            }
            Op::Subscribe {
                conn,
                member,
                track,
                on,
            } => {
                let message = if on {
                    ControlMessage::Subscribe { member, track }
                } else {
                    ControlMessage::Unsubscribe { member, track }
                };
                core.handle_control(ConnId(conn), message, now);
            }
            Op::Refresh { conn, room } => {
                let user = core
                    .member_identity(ConnId(conn))
                    .map_or("u0".to_owned(), |(_, _, u)| u.to_owned());
                let claims = TicketClaims::new(
                    APPS[0],
                    user,
                    ROOMS[room],
                    now.unix_secs,
                    300,
                    Grants::all(),
                );
                let ticket = mint(&claims, "k", SECRET).expect("mint");
                core.handle_control(ConnId(conn), ControlMessage::RefreshTicket { ticket }, now);
                // A refresh may change the grants: learn them from the core's view.
                if let Some((key, member, _)) = core.member_identity(ConnId(conn))
                    && key.room == ROOMS[room]
                    && key.app == APPS[0]
                {
                    model
                        .joined
                        .insert(ConnId(conn), (key.clone(), member, Grants::all()));
                }
            }
            Op::Leave(c) => {
                core.handle_control(ConnId(c), ControlMessage::Leave, now);
            }
            Op::Disconnect(c) => {
                let conn = ConnId(c);
                core.handle_disconnect(conn, sealroom_frame::control::LeaveReason::TimedOut);
                model.connected.remove(&conn);
                model.joined.remove(&conn);
                model.pending.remove(&conn);
            }
            Op::Advance(secs) => {
                now = now.plus_secs(secs);
                let _ = core.handle_timeout(now);
            }
            Op::Kick { app, room, user } => {
                let _ = core.kick(
                    &RoomKey::new(APPS[app], ROOMS[room]),
                    &MemberTarget::User(USERS[user].to_owned()),
                    "kick",
                );
            }
            Op::Dismiss { app, room } => {
                let _ = core.dismiss(&RoomKey::new(APPS[app], ROOMS[room]), "dismiss");
            }
            Op::Drain => core.begin_drain(),
        }
        model.absorb(&mut core);
        assert_eq!(core.connection_count(), model.connected.len());
        if let Some(violation) = core.invariant_violation() {
            panic!("invariant broken: {violation}");
        }
        assert_eq!(
            core.member_count(),
            model.joined.len(),
            "the core and the outputs agree on who is in"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn forwarding_respects_rooms_membership_and_grants(ops in prop::collection::vec(op(), 1..150)) {
        run(ops);
        eprintln!("forwards so far {}", FORWARDS.load(std::sync::atomic::Ordering::Relaxed));
    }
}
