//! The relay's I/O-free room core under arbitrary sequences of connections, joins, control
//! messages (in order or not), frames from several members (honest, forged, oversize),
//! incoming streams, stale groups, protocol violations, disconnects, operator actions and
//! time; and, with the cascade on, links to two peer nodes that come and go, announce
//! members (honestly or not) and send frames. Checked after every step: nothing panics;
//! `RelayCore::invariant_violation` finds nothing; no frame or room event reaches a
//! connection of another room, a member that left, the sender itself, or a member without
//! the subscribe or record grant; nothing is sent to a connection after it was closed; a
//! frame goes to a link only when a member of its room that receives is behind it, and a
//! frame from a link only to local members of its sender's room; the node speaks to its
//! peers only of its own members.
//!
//! Shared by the fuzz target of the same name and by the corpus replay test
//! (`tests/fuzz_corpus.rs` in the root workspace), so both check exactly the same.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use sealroom_frame::control::{
    ControlMessage, ErrorCode, JoinOptions, LeaveReason, MemberInfo, SessionLimits, TrackInfo,
};
use sealroom_frame::envelope::{Envelope, Flags, MediaKind};
use sealroom_relay::engine::{
    LinkTarget, MAX_RELAY_ADDRESS, MEMBER_ID_NODE_SHIFT, MemberTarget, Output,
};
use sealroom_relay::{
    AppConfig, CascadeEvent, ConnId, Grants, Limits, Now, RelayCore, RoomKey, TicketClaims,
    Violation, mint,
};

const APPS: [&str; 2] = ["app-a", "app-b"];
const ROOMS: [&str; 2] = ["x", "y"];
const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
const SECRET: &[u8] = b"room-core fuzz secret";
const T0: u64 = 1_800_000_000;
/// The MLS message bound of the fuzzed core (kept small so that refusals and acceptances
/// are both cheap to reach).
const MLS_MAX: usize = 1024;
/// The bound on a group info sent in pieces, small for the same reason: a few pieces reach it.
const MLS_GROUP_INFO_MAX: usize = 3 * 1024;

/// One precomputed ticket and what it names.
struct Ticket {
    jwt: String,
    room: RoomKey,
    grants: Grants,
}

fn grants(i: usize) -> Grants {
    match i {
        0 => Grants::all(),
        1 => Grants::none(),
        2 => Grants::subscribe_only(),
        3 => Grants::recorder(),
        _ => Grants {
            publish_audio: true,
            publish_video: true,
            ..Grants::none()
        },
    }
}

/// Tickets for every app, room, user and grant set, short- and long-lived, valid from
/// `T0`; then one signed with the wrong secret and one that is not a JWT.
static TICKETS: LazyLock<Vec<Ticket>> = LazyLock::new(|| {
    let mut tickets = Vec::new();
    for app in APPS {
        for room in ROOMS {
            for user in USERS {
                for g in 0..5 {
                    for ttl in [5, 600] {
                        let claims = TicketClaims::new(app, user, room, T0, ttl, grants(g));
                        tickets.push(Ticket {
                            jwt: mint(&claims, "k", SECRET).expect("mint"),
                            room: RoomKey::new(app, room),
                            grants: grants(g),
                        });
                    }
                }
            }
        }
    }
    let claims = TicketClaims::new(APPS[0], USERS[0], ROOMS[0], T0, 600, Grants::all());
    tickets.push(Ticket {
        jwt: mint(&claims, "k", b"not the secret").expect("mint"),
        room: RoomKey::new(APPS[0], ROOMS[0]),
        grants: Grants::all(),
    });
    tickets.push(Ticket {
        jwt: "not.a.ticket".to_owned(),
        room: RoomKey::new(APPS[0], ROOMS[0]),
        grants: Grants::all(),
    });
    tickets
});

static START: LazyLock<Instant> = LazyLock::new(Instant::now);

#[derive(Arbitrary, Debug)]
enum Message {
    Join {
        ticket: u8,
        auto_subscribe: bool,
        room: Option<u8>,
    },
    Joined,
    MemberJoined,
    MemberLeft,
    TrackPublished {
        track: u8,
        kind: u8,
    },
    TrackUnpublished {
        track: u8,
    },
    Subscribe {
        member: u8,
        track: u8,
        on: bool,
    },
    KeyframeRequest {
        member: u8,
        track: u8,
    },
    RefreshTicket {
        ticket: u8,
    },
    Leave,
    Error,
    TicketRefreshed,
    GoAway,
    MlsSync,
    MlsPublish {
        position: u8,
        len: u16,
    },
    MlsCommit {
        position: u8,
        commit_len: u16,
        info_len: u16,
    },
    /// A leading piece of a group info too large for one message.
    MlsGroupInfoPart {
        len: u16,
    },
    /// A message only the relay sends (the relay must refuse it from a client).
    MlsFromRelay {
        which: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum Op {
    Connect,
    Control {
        conn: u8,
        message: Message,
    },
    Frame {
        conn: u8,
        kind: u8,
        flags: u8,
        /// `None`: the connection's own member id.
        sender: Option<u8>,
        track: u8,
        group: u8,
        len: u16,
    },
    IncomingStream {
        conn: u8,
    },
    StaleGroup {
        conn: u8,
        sender: u8,
        track: u8,
    },
    Violation {
        conn: u8,
        kind: u8,
    },
    Oversize {
        conn: u8,
    },
    Disconnect {
        conn: u8,
    },
    Advance {
        millis: u16,
    },
    Kick {
        app: bool,
        room: bool,
        user: u8,
        by_member: bool,
    },
    Dismiss {
        app: bool,
        room: bool,
    },
    Drain,
    CloseAll,
    /// The reliable stream of a data track ended cleanly (the track ends with it).
    EndDataTrack {
        conn: u8,
        track: u8,
    },
    /// Turn the cascade on with node index `1 + node % 3`; only before the first
    /// connection, as a node does.
    Cascade {
        node: u8,
    },
    /// An authenticated link to one of two peer nodes comes up.
    LinkUp {
        link: bool,
    },
    /// A link goes down.
    LinkDown {
        link: bool,
    },
    /// A peer node says something, true or not.
    LinkEvent {
        link: bool,
        event: PeerEvent,
    },
    /// A frame from a peer node.
    LinkFrame {
        link: bool,
        kind: u8,
        flags: u8,
        sender: u8,
        track: u8,
        group: u8,
        len: u16,
    },
}

/// What a peer node says on its link. Member ids come from [`remote_id`]: node indices 1
/// to 3, so some collide with this node's own.
#[derive(Arbitrary, Debug)]
enum PeerEvent {
    MemberJoined {
        app: bool,
        room: bool,
        member: u8,
        tracks: u8,
        subscribes: bool,
    },
    MemberLeft {
        app: bool,
        room: bool,
        member: u8,
    },
    TrackPublished {
        app: bool,
        room: bool,
        member: u8,
        track: u8,
        kind: u8,
    },
    TrackUnpublished {
        app: bool,
        room: bool,
        member: u8,
        track: u8,
    },
    /// For a member of this node (`publisher` as the clients' messages pick members).
    KeyframeRequest {
        publisher: u8,
        track: u8,
    },
    RecorderPresent {
        app: bool,
        room: bool,
        member: u8,
    },
    /// A room of an app this node does not serve.
    UnknownApp {
        member: u8,
    },
    /// The peer's operator removes a member (`member` as the clients' messages pick them).
    Kick {
        app: bool,
        room: bool,
        member: u8,
    },
    /// The peer's operator dismisses a room.
    Dismiss {
        app: bool,
        room: bool,
    },
    /// The peer holds a room's MLS group (naming an over-long relay address with `long`).
    MlsGroupHere {
        app: bool,
        room: bool,
        long: bool,
    },
    /// The peer no longer holds a room's MLS group.
    MlsGroupGone {
        app: bool,
        room: bool,
    },
}

/// The relay address peers give with the MLS groups they hold.
const PEER_RELAY: &str = "10.0.0.2:4433";

/// This node's relay address, announced with the MLS groups it holds.
const OWN_RELAY: &str = "10.0.0.1:4433";

/// A member id of a peer node: node index 1 to 3 above a small counter.
fn remote_id(m: u8) -> u32 {
    (u32::from(1 + (m >> 2) % 3) << MEMBER_ID_NODE_SHIFT) | u32::from(m % 4)
}

fn link_conn(link: bool) -> ConnId {
    ConnId((1 << 40) | u64::from(link))
}

fn room_key(app: bool, room: bool) -> RoomKey {
    RoomKey::new(APPS[usize::from(app)], ROOMS[usize::from(room)])
}

fn peer_event(event: PeerEvent, base: u32) -> CascadeEvent {
    match event {
        PeerEvent::MemberJoined {
            app,
            room,
            member,
            tracks,
            subscribes,
        } => CascadeEvent::MemberJoined {
            room: room_key(app, room),
            member: MemberInfo {
                member: remote_id(member),
                user: USERS[usize::from(member) % 4].to_owned(),
                tracks: (0..tracks % 4)
                    .map(|t| TrackInfo {
                        track: u32::from(t),
                        kind: kind(tracks >> 2 ^ t),
                    })
                    .collect(),
            },
            subscribes,
        },
        PeerEvent::MemberLeft { app, room, member } => CascadeEvent::MemberLeft {
            room: room_key(app, room),
            member: remote_id(member),
            reason: LeaveReason::Left,
        },
        PeerEvent::TrackPublished {
            app,
            room,
            member,
            track,
            kind: k,
        } => CascadeEvent::TrackPublished {
            room: room_key(app, room),
            member: remote_id(member),
            track: TrackInfo {
                track: u32::from(track % 4),
                kind: kind(k),
            },
        },
        PeerEvent::TrackUnpublished {
            app,
            room,
            member,
            track,
        } => CascadeEvent::TrackUnpublished {
            room: room_key(app, room),
            member: remote_id(member),
            track: u32::from(track % 4),
        },
        PeerEvent::KeyframeRequest { publisher, track } => CascadeEvent::KeyframeRequest {
            publisher: member_id(publisher, base),
            track: u32::from(track % 4),
        },
        PeerEvent::RecorderPresent { app, room, member } => CascadeEvent::RecorderPresent {
            room: room_key(app, room),
            member: remote_id(member),
        },
        PeerEvent::Kick { app, room, member } => CascadeEvent::Kick {
            room: room_key(app, room),
            member: member_id(member, base),
            reason: "fuzz".to_owned(),
        },
        PeerEvent::Dismiss { app, room } => CascadeEvent::Dismiss {
            room: room_key(app, room),
            reason: "fuzz".to_owned(),
        },
        PeerEvent::MlsGroupHere { app, room, long } => CascadeEvent::MlsGroupHere {
            room: room_key(app, room),
            relay: if long {
                "x".repeat(MAX_RELAY_ADDRESS + 1)
            } else {
                PEER_RELAY.to_owned()
            },
        },
        PeerEvent::MlsGroupGone { app, room } => CascadeEvent::MlsGroupGone {
            room: room_key(app, room),
        },
        PeerEvent::UnknownApp { member } => CascadeEvent::MemberJoined {
            room: RoomKey::new("app-unknown", ROOMS[0]),
            member: MemberInfo {
                member: remote_id(member),
                user: USERS[0].to_owned(),
                tracks: Vec::new(),
            },
            subscribes: true,
        },
    }
}

/// A member id as the clients' messages pick them: with the high bit, one of a peer
/// node's; otherwise one of this node's (`base` is its index, shifted; 0 without the
/// cascade).
fn member_id(m: u8, base: u32) -> u32 {
    if m & 0x80 == 0 {
        base | u32::from(m % 6)
    } else {
        remote_id(m)
    }
}

/// The envelope of a fuzzed frame.
fn envelope(k: u8, flags: u8, sender: u32, track: u8, group: u8) -> Envelope {
    Envelope {
        kind: kind(k),
        flags: Flags::from_bits(flags & 0x0f).unwrap_or_default(),
        sender,
        track: u32::from(track % 4),
        group: u32::from(group),
        seq: 0,
        timestamp_us: 0,
    }
}

fn kind(k: u8) -> MediaKind {
    match k % 3 {
        0 => MediaKind::Audio,
        1 => MediaKind::Video,
        _ => MediaKind::Data,
    }
}

/// What the outputs alone say about every connection.
#[derive(Default)]
struct Model {
    /// Every connection ever made, in order (ops pick from these, closed ones included).
    made: Vec<ConnId>,
    /// Connections open (not closed by the core, not disconnected).
    open: HashSet<ConnId>,
    /// The ticket of the last `Join` on each connection, until it is answered.
    pending: HashMap<ConnId, usize>,
    /// Members: their room, member id and grants.
    joined: HashMap<ConnId, (RoomKey, u32, Grants)>,
    /// The ticket of a `RefreshTicket` being handled; its grants apply if the relay
    /// answers `TicketRefreshed`.
    refreshing: Option<(ConnId, usize)>,
    /// The last MLS commit position each connection heard of (`MlsCommitted`): each
    /// member hears every accepted commit once, in order.
    mls_heard: HashMap<ConnId, u64>,
    /// This node's index in the cluster (0: the cascade is off).
    node: u16,
    /// Links up.
    links: HashSet<ConnId>,
    /// Members behind links the core accepted: their room and whether they receive.
    remote: HashMap<(ConnId, u32), (RoomKey, bool)>,
}

impl Model {
    fn pick(&self, i: u8) -> ConnId {
        if i == u8::MAX || self.made.is_empty() {
            return ConnId(u64::MAX);
        }
        self.made[usize::from(i) % self.made.len()]
    }

    fn room_of(&self, conn: ConnId) -> Option<&RoomKey> {
        self.joined.get(&conn).map(|(room, _, _)| room)
    }

    /// Whether `member` is a member of `room` (by member id), here or behind a link.
    fn has_member(&self, room: &RoomKey, member: u32) -> bool {
        self.joined
            .values()
            .any(|(r, m, _)| r == room && *m == member)
            || self
                .remote
                .iter()
                .any(|((_, m), (r, _))| r == room && *m == member)
    }

    fn base(&self) -> u32 {
        u32::from(self.node) << MEMBER_ID_NODE_SHIFT
    }

    /// Take every event queued for the peer nodes, checking the node speaks only of its
    /// own members, to links that are up.
    fn absorb_cascade(&self, core: &mut RelayCore) {
        while let Some((target, event)) = core.poll_cascade() {
            if let LinkTarget::One(link) = target {
                assert!(self.links.contains(&link), "events go to links that are up");
            }
            match event {
                CascadeEvent::MemberJoined {
                    member: MemberInfo { member, .. },
                    ..
                }
                | CascadeEvent::MemberLeft { member, .. }
                | CascadeEvent::TrackPublished { member, .. }
                | CascadeEvent::TrackUnpublished { member, .. }
                | CascadeEvent::RecorderPresent { member, .. } => {
                    assert_eq!(
                        member >> MEMBER_ID_NODE_SHIFT,
                        u32::from(self.node),
                        "a node speaks to its peers only of its own members"
                    );
                }
                CascadeEvent::KeyframeRequest { publisher, .. } => {
                    assert!(
                        self.remote.keys().any(|(_, m)| *m == publisher),
                        "keyframe requests go only to members behind links"
                    );
                }
                CascadeEvent::Kick { room, member, .. } => {
                    let LinkTarget::One(link) = target else {
                        panic!("a kick goes to the one node holding the member");
                    };
                    assert_eq!(
                        self.remote.get(&(link, member)).map(|(r, _)| r),
                        Some(&room),
                        "a kick goes to the link the member is behind"
                    );
                }
                CascadeEvent::Dismiss { room, .. } => {
                    let LinkTarget::One(link) = target else {
                        panic!("a dismissal goes to each node with members of the room");
                    };
                    assert!(
                        self.remote
                            .iter()
                            .any(|((l, _), (r, _))| *l == link && *r == room),
                        "a dismissal goes only to links with members of the room"
                    );
                }
                CascadeEvent::MlsGroupHere { relay, .. } => {
                    assert_eq!(relay, OWN_RELAY, "a node names its own relay");
                }
                CascadeEvent::MlsGroupGone { .. } => {}
            }
        }
    }

    /// Where a frame from `conn` (a member, or a link) went: each receiver at most once,
    /// never the sender, only into the room, only to those that receive; a link only
    /// when a member of the room behind it receives.
    fn check_receivers(&self, conn: ConnId, room: &RoomKey, receivers: &[ConnId]) {
        let mut seen = HashSet::new();
        for receiver in receivers {
            assert_ne!(*receiver, conn, "never back to the sender");
            assert!(seen.insert(*receiver), "at most once per receiver");
            if self.links.contains(receiver) {
                assert!(
                    !self.links.contains(&conn),
                    "a frame from a link never goes to another link"
                );
                assert!(
                    self.remote
                        .iter()
                        .any(|((l, _), (r, receives))| l == receiver && r == room && *receives),
                    "to a link only for a member of the room behind it that receives"
                );
                continue;
            }
            let (their_room, _, their_grants) = self
                .joined
                .get(receiver)
                .expect("only to members that joined and did not leave");
            assert_eq!(their_room, room, "never into another room");
            assert!(
                their_grants.subscribe || their_grants.record,
                "only to subscribers and recorders"
            );
        }
    }

    fn forget(&mut self, conn: ConnId) {
        self.open.remove(&conn);
        self.pending.remove(&conn);
        self.joined.remove(&conn);
        self.mls_heard.remove(&conn);
    }

    /// Take every output, checking who may receive what.
    fn absorb(&mut self, core: &mut RelayCore) {
        while let Some(output) = core.poll_output() {
            match output {
                Output::Close { conn, .. } => {
                    assert!(self.open.contains(&conn), "close of an unknown connection");
                    self.forget(conn);
                }
                Output::Send { conn, message } => {
                    assert!(self.open.contains(&conn), "message to a closed connection");
                    self.check_send(conn, message);
                }
            }
        }
    }

    fn check_send(&mut self, conn: ConnId, message: ControlMessage) {
        match message {
            ControlMessage::Joined { member, roster, .. } => {
                let ticket = self.pending.remove(&conn).expect("Joined answers a Join");
                let ticket = &TICKETS[ticket];
                for MemberInfo { member: other, .. } in &roster {
                    assert!(
                        self.has_member(&ticket.room, *other),
                        "the roster lists only members of the room"
                    );
                }
                assert!(
                    !self.has_member(&ticket.room, member),
                    "member ids are unique"
                );
                self.joined
                    .insert(conn, (ticket.room.clone(), member, ticket.grants));
            }
            // A keyframe request passed on from another node names member 0 as its
            // requester (docs/CLUSTER.md): only a member of a node with links hears one.
            ControlMessage::KeyframeRequest { member: 0, .. } => {
                assert!(
                    self.room_of(conn).is_some(),
                    "room events go to members only"
                );
                assert!(
                    !self.links.is_empty(),
                    "requester 0 only for a request from another node"
                );
            }
            ControlMessage::MemberJoined(MemberInfo { member, .. })
            | ControlMessage::MemberLeft { member, .. }
            | ControlMessage::TrackPublished { member, .. }
            | ControlMessage::TrackUnpublished { member, .. }
            | ControlMessage::KeyframeRequest { member, .. }
            | ControlMessage::RecorderPresent { member } => {
                let room = self
                    .room_of(conn)
                    .expect("room events go to members only")
                    .clone();
                // A member that just joined is announced before its own Joined.
                let announced_newcomer = self.pending.values().any(|t| TICKETS[*t].room == room);
                assert!(
                    self.has_member(&room, member) || announced_newcomer,
                    "room events name members of the same room"
                );
                assert_ne!(
                    self.joined.get(&conn).map(|(_, m, _)| *m),
                    Some(member),
                    "a member is never told about itself"
                );
            }
            ControlMessage::TicketRefreshed { .. } => {
                let (asked, ticket) = self.refreshing.take().expect("a refresh was asked");
                assert_eq!(asked, conn);
                let ticket = &TICKETS[ticket];
                let member = self
                    .joined
                    .get_mut(&conn)
                    .expect("refreshes are for members");
                assert_eq!(member.0, ticket.room, "a refresh never moves a member");
                member.2 = ticket.grants;
            }
            ControlMessage::MlsCommitted {
                member, position, ..
            } => {
                let room = self
                    .room_of(conn)
                    .expect("commits go to members only")
                    .clone();
                assert!(
                    self.has_member(&room, member),
                    "a commit names a member of the same room"
                );
                assert_ne!(
                    self.joined.get(&conn).map(|(_, m, _)| *m),
                    Some(member),
                    "a committer hears MlsAccepted, not its own commit"
                );
                if let Some(last) = self.mls_heard.insert(conn, position) {
                    assert!(
                        position > last,
                        "each accepted commit reaches a member once, in order"
                    );
                }
            }
            ControlMessage::MlsState { group_info, .. } => {
                assert!(
                    self.joined.contains_key(&conn),
                    "MLS state goes to members only"
                );
                assert!(
                    group_info.is_none_or(|g| g.len() <= MLS_GROUP_INFO_MAX),
                    "kept group info is bounded"
                );
            }
            ControlMessage::MlsGroupInfoPart { bytes } => {
                assert!(
                    self.joined.contains_key(&conn),
                    "MLS pieces go to members only"
                );
                assert!(bytes.len() <= MLS_GROUP_INFO_MAX, "pieces are bounded");
            }
            ControlMessage::MlsAccepted { .. } | ControlMessage::MlsRefused { .. } => {
                assert!(
                    self.joined.contains_key(&conn),
                    "MLS answers go to members only"
                );
            }
            ControlMessage::Redirect { address } => {
                assert!(
                    self.pending.remove(&conn).is_some(),
                    "a redirect answers a join"
                );
                assert_eq!(
                    address, PEER_RELAY,
                    "joins go only where a peer said it holds the room's MLS group"
                );
                assert!(!self.links.is_empty(), "only a node with links redirects");
            }
            ControlMessage::Error { .. } | ControlMessage::GoAway { .. } => {}
            other => panic!("the relay never sends {other:?}"),
        }
    }
}

fn message(message: Message, base: u32) -> (ControlMessage, Option<usize>) {
    let ticket = |i: u8| usize::from(i) % TICKETS.len();
    let member = |m: u8| member_id(m, base);
    let info = |m: u8| MemberInfo {
        member: member(m),
        user: String::new(),
        tracks: Vec::new(),
    };
    match message {
        Message::Join {
            ticket: t,
            auto_subscribe,
            room,
        } => (
            ControlMessage::Join {
                ticket: TICKETS[ticket(t)].jwt.clone(),
                client_name: String::new(),
                client_version: String::new(),
                options: JoinOptions {
                    auto_subscribe,
                    room: room.map(|r| ROOMS[usize::from(r) % 2].to_owned()),
                },
            },
            Some(ticket(t)),
        ),
        Message::Joined => (
            ControlMessage::Joined {
                member: 1,
                roster: Vec::new(),
                limits: SessionLimits {
                    max_frame_len: 0,
                    data_messages_per_sec: 0,
                    data_bytes_per_sec: 0,
                    ticket_expires_in_secs: 0,
                },
            },
            None,
        ),
        Message::MemberJoined => (ControlMessage::MemberJoined(info(1)), None),
        Message::MemberLeft => (
            ControlMessage::MemberLeft {
                member: 1,
                reason: LeaveReason::Left,
            },
            None,
        ),
        Message::TrackPublished { track, kind: k } => (
            ControlMessage::TrackPublished {
                member: 0,
                track: TrackInfo {
                    track: u32::from(track % 4),
                    kind: kind(k),
                },
            },
            None,
        ),
        Message::TrackUnpublished { track } => (
            ControlMessage::TrackUnpublished {
                member: 0,
                track: u32::from(track % 4),
            },
            None,
        ),
        Message::Subscribe {
            member: m,
            track,
            on,
        } => {
            let (member, track) = (member(m), u32::from(track % 4));
            let message = if on {
                ControlMessage::Subscribe { member, track }
            } else {
                ControlMessage::Unsubscribe { member, track }
            };
            (message, None)
        }
        Message::KeyframeRequest { member: m, track } => (
            ControlMessage::KeyframeRequest {
                member: member(m),
                track: u32::from(track % 4),
            },
            None,
        ),
        Message::RefreshTicket { ticket: t } => (
            ControlMessage::RefreshTicket {
                ticket: TICKETS[ticket(t)].jwt.clone(),
            },
            Some(ticket(t)),
        ),
        Message::Leave => (ControlMessage::Leave, None),
        Message::Error => (
            ControlMessage::Error {
                code: ErrorCode::Internal,
                message: String::new(),
            },
            None,
        ),
        Message::TicketRefreshed => (ControlMessage::TicketRefreshed { expires_in_secs: 1 }, None),
        Message::GoAway => (
            ControlMessage::GoAway {
                code: ErrorCode::ShuttingDown,
                reconnect_after_ms: 0,
            },
            None,
        ),
        Message::MlsSync => (ControlMessage::MlsSync, None),
        Message::MlsPublish { position, len } => (
            ControlMessage::MlsPublish {
                position: u64::from(position % 4),
                group_info: vec![0x5a; usize::from(len) % (2 * MLS_MAX)],
            },
            None,
        ),
        Message::MlsCommit {
            position,
            commit_len,
            info_len,
        } => (
            ControlMessage::MlsCommit {
                position: u64::from(position % 4),
                commit: vec![0xc0; usize::from(commit_len) % (2 * MLS_MAX)],
                group_info: vec![0x1f; usize::from(info_len) % (2 * MLS_MAX)],
            },
            None,
        ),
        Message::MlsGroupInfoPart { len } => (
            ControlMessage::MlsGroupInfoPart {
                bytes: vec![0x9e; usize::from(len) % (2 * MLS_MAX)],
            },
            None,
        ),
        Message::MlsFromRelay { which } => (
            match which % 3 {
                0 => ControlMessage::MlsAccepted { position: 1 },
                1 => ControlMessage::MlsState {
                    position: 1,
                    group_info: None,
                },
                _ => ControlMessage::MlsCommitted {
                    member: 1,
                    position: 0,
                    commit: Vec::new(),
                },
            },
            None,
        ),
    }
}

fn limits() -> Limits {
    Limits {
        max_members_per_room: 3,
        max_rooms_per_app: 1,
        max_tracks_per_member: 2,
        max_frame_len: 1500,
        max_data_frame_len: 500,
        ticket_leeway_secs: 0,
        data_messages_per_sec: 10,
        data_messages_burst: 10,
        media_bytes_per_sec: 20_000,
        media_bytes_burst: 20_000,
        control_messages_per_sec: 5,
        joins_per_app_per_sec: 5,
        incoming_streams_per_sec: 3,
        incoming_streams_burst: 3,
        keyframe_request_interval_ms: 300,
        max_mls_message_len: MLS_MAX,
        max_mls_group_info_len: MLS_GROUP_INFO_MAX,
        ..Limits::default()
    }
}

fn run_ops(ops: Vec<Op>) {
    let limits = limits();
    let apps: Vec<AppConfig> = APPS
        .iter()
        .map(|app| AppConfig::new(*app, "k", SECRET.to_vec()))
        .collect();
    let start = *START;
    let mut elapsed_ms: u64 = 0;
    let now = |elapsed_ms: u64| Now {
        instant: start + Duration::from_millis(elapsed_ms),
        unix_secs: T0 + elapsed_ms / 1000,
    };
    let mut core = RelayCore::new(&apps, limits, start);
    let mut model = Model::default();
    let mut next_conn = 0;
    for op in ops {
        let at = now(elapsed_ms);
        match op {
            Op::Connect => {
                let conn = ConnId(next_conn);
                next_conn += 1;
                core.handle_connect(conn, at);
                model.made.push(conn);
                model.open.insert(conn);
            }
            Op::Control { conn, message: m } => {
                let conn = model.pick(conn);
                let (message, ticket) = message(m, model.base());
                match (&message, ticket) {
                    (ControlMessage::RefreshTicket { .. }, Some(ticket)) => {
                        model.refreshing = Some((conn, ticket));
                    }
                    (ControlMessage::Join { .. }, Some(ticket))
                        if model.open.contains(&conn) && !model.joined.contains_key(&conn) =>
                    {
                        model.pending.insert(conn, ticket);
                    }
                    _ => {}
                }
                core.handle_control(conn, message, at);
            }
            Op::Frame {
                conn,
                kind: k,
                flags,
                sender,
                track,
                group,
                len,
            } => {
                let conn = model.pick(conn);
                let own = model.joined.get(&conn).map(|(_, m, _)| *m);
                let sender = sender.map_or(own.unwrap_or(1), |s| member_id(s, model.base()));
                let envelope = envelope(k, flags, sender, track, group);
                let len = usize::from(len);
                if let Ok(receivers) = core.handle_frame(conn, &envelope, len, at) {
                    let (room, member, grants) = model
                        .joined
                        .get(&conn)
                        .cloned()
                        .expect("only members forward");
                    assert_eq!(envelope.sender, member, "forged senders never forward");
                    assert!(
                        grants.may_publish(envelope.kind),
                        "publishing needs the grant"
                    );
                    let max = match envelope.kind {
                        MediaKind::Data => limits.max_data_frame_len,
                        _ => limits.max_frame_len,
                    };
                    assert!(len <= max, "oversize frames never forward");
                    model.check_receivers(conn, &room, receivers);
                }
            }
            Op::IncomingStream { conn } => {
                let _ = core.handle_incoming_stream(model.pick(conn), at);
            }
            Op::StaleGroup {
                conn,
                sender,
                track,
            } => {
                let _ = core.handle_stale_group(
                    model.pick(conn),
                    u32::from(sender % 6),
                    u32::from(track % 4),
                    at,
                );
            }
            Op::Violation { conn, kind } => {
                let violation = Violation::ALL[usize::from(kind) % Violation::ALL.len()];
                core.handle_violation(model.pick(conn), violation);
            }
            Op::Oversize { conn } => core.report_oversize(model.pick(conn), at),
            Op::Disconnect { conn } => {
                let conn = model.pick(conn);
                core.handle_disconnect(conn, LeaveReason::TimedOut);
                // The others hear it leave while it is still in the model.
                model.absorb(&mut core);
                model.forget(conn);
            }
            Op::Advance { millis } => {
                elapsed_ms += u64::from(millis);
                let _ = core.handle_timeout(now(elapsed_ms));
            }
            Op::Kick {
                app,
                room,
                user,
                by_member,
            } => {
                let key = RoomKey::new(APPS[usize::from(app)], ROOMS[usize::from(room)]);
                let target = if by_member {
                    MemberTarget::Member(member_id(user, model.base()))
                } else {
                    MemberTarget::User(USERS[usize::from(user) % 4].to_owned())
                };
                let _ = core.kick(&key, &target, "fuzz");
            }
            Op::Dismiss { app, room } => {
                let key = RoomKey::new(APPS[usize::from(app)], ROOMS[usize::from(room)]);
                let _ = core.dismiss(&key, "fuzz");
            }
            Op::Drain => core.begin_drain(),
            Op::CloseAll => core.close_all(),
            Op::EndDataTrack { conn, track } => {
                core.end_data_track(model.pick(conn), u32::from(track % 4));
            }
            Op::Cascade { node } => {
                if model.made.is_empty() && model.node == 0 {
                    model.node = 1 + u16::from(node % 3);
                    core.enable_cascade(model.node);
                    core.set_relay_address(Some(OWN_RELAY.to_owned()));
                }
            }
            Op::LinkUp { link } => {
                let link = link_conn(link);
                core.handle_link_up(link);
                if model.node != 0 {
                    model.links.insert(link);
                }
            }
            Op::LinkDown { link } => {
                let link = link_conn(link);
                core.handle_link_down(link, LeaveReason::TimedOut);
                // The locals hear its members leave while they are still in the model.
                model.absorb(&mut core);
                model.links.remove(&link);
                model.remote.retain(|(l, _), _| *l != link);
            }
            Op::LinkEvent { link, event } => {
                let link = link_conn(link);
                let event = peer_event(event, model.base());
                let joined = match &event {
                    CascadeEvent::MemberJoined {
                        room,
                        member,
                        subscribes,
                    } => Some((room.clone(), member.member, *subscribes)),
                    _ => None,
                };
                let left = match &event {
                    CascadeEvent::MemberLeft { member, .. } => Some(*member),
                    _ => None,
                };
                if core.handle_link_event(link, event, at).is_ok() {
                    assert!(model.links.contains(&link), "only links that are up speak");
                    if let Some((room, member, subscribes)) = joined {
                        assert_ne!(
                            member >> MEMBER_ID_NODE_SHIFT,
                            u32::from(model.node),
                            "ids of this node are its own to give"
                        );
                        model.remote.insert((link, member), (room, subscribes));
                    }
                    if let Some(member) = left {
                        model.absorb(&mut core);
                        model.remote.remove(&(link, member));
                    }
                }
            }
            Op::LinkFrame {
                link,
                kind: k,
                flags,
                sender,
                track,
                group,
                len,
            } => {
                let link = link_conn(link);
                let envelope = envelope(k, flags, remote_id(sender), track, group);
                if let Ok(receivers) = core.handle_frame(link, &envelope, usize::from(len), at) {
                    let (room, _) = model
                        .remote
                        .get(&(link, envelope.sender))
                        .cloned()
                        .expect("frames from a link only for members it announced");
                    for receiver in receivers {
                        assert!(
                            !model.links.contains(receiver),
                            "a frame from a link never goes to another link"
                        );
                    }
                    model.check_receivers(link, &room, receivers);
                }
            }
        }
        model.absorb(&mut core);
        model.absorb_cascade(&mut core);
        model.refreshing = None;
        if let Some(violation) = core.invariant_violation() {
            panic!("invariant broken: {violation}");
        }
        assert_eq!(core.connection_count(), model.open.len());
        assert_eq!(
            core.member_count(),
            model.joined.len(),
            "the core and its outputs agree on who is in"
        );
        for (conn, (room, member, _)) in &model.joined {
            assert_eq!(core.membership(*conn), Some((room, *member)));
        }
    }
}

/// The check the fuzz target runs on every input: the bytes are turned into the
/// target's input exactly as `libfuzzer-sys` does (`arbitrary_take_rest`), and
/// bytes too short for it are skipped.
pub fn run(bytes: &[u8]) {
    use arbitrary::{Arbitrary, Unstructured};
    if bytes.len() < <Vec<Op> as Arbitrary<'_>>::size_hint(0).0 {
        return;
    }
    let Ok(ops) = <Vec<Op> as Arbitrary<'_>>::arbitrary_take_rest(Unstructured::new(bytes)) else {
        return;
    };
    run_ops(ops);
}
