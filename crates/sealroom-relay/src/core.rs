//! The relay's decisions, with no sockets and no clock: admission, rooms, membership,
//! subscriptions, forwarding and limits.
//!
//! [`RelayCore`] follows quinn-proto's pattern. The driver (the quinn/tokio layer, a test or
//! a bench) feeds it inputs named `handle_*` with the current time as an argument, and takes
//! its outputs from [`RelayCore::poll_output`]: control messages to send and connections to
//! close. Forwarding is the hot path and answers directly: [`RelayCore::handle_frame`]
//! returns the connections a frame goes to, or why it is dropped.
//!
//! Connections are named by [`ConnId`]s the driver picks. A connection enters a room with a
//! ticket ([`RelayCore::handle_join`]); the room, keyed by (app, room id), is created by its
//! first member and removed with its last. Member ids are assigned per room, counting up from
//! 1, and not reused while the room exists.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sealroom_frame::control::{
    ControlMessage, ErrorCode, JoinOptions, LeaveReason, MemberInfo, SessionLimits, TrackInfo,
};
use sealroom_frame::envelope::{Envelope, Flags, MediaKind, MemberId, TrackId};

use crate::config::{AppConfig, Limits};
use crate::gate::source_key;
use crate::ratelimit::{Keyed, KeyedLimiter, TokenBucket};
use crate::ticket::{Grants, TicketClaims, TicketVerifier};

/// A connection, named by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// The current time, as the core needs it: a monotonic instant for rates and timeouts, and
/// wall-clock seconds since the Unix epoch for ticket validity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time.
    pub instant: Instant,
    /// Seconds since the Unix epoch.
    pub unix_secs: u64,
}

impl Now {
    /// Read both clocks (for drivers; the core never calls this).
    pub fn system() -> Self {
        Self {
            instant: Instant::now(),
            unix_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// This time plus `secs` seconds on both clocks.
    #[must_use]
    pub fn plus_secs(self, secs: u64) -> Self {
        Self {
            instant: self.instant + Duration::from_secs(secs),
            unix_secs: self.unix_secs.saturating_add(secs),
        }
    }
}

/// A room's identity: rooms of different apps never meet, even with equal room ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomKey {
    /// App id.
    pub app: String,
    /// Room id within the app.
    pub room: String,
}

impl RoomKey {
    /// A room key.
    pub fn new(app: impl Into<String>, room: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            room: room.into(),
        }
    }
}

/// What the driver must do, in order. Deliberately not `#[non_exhaustive]`: a driver must
/// carry out every output, so a new one fails to compile until each driver handles it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a control message on the connection's control stream.
    Send {
        /// The connection.
        conn: ConnId,
        /// The message.
        message: ControlMessage,
    },
    /// Close the connection once what was sent to it is flushed; `None` is a normal close.
    /// The core has already forgotten the connection.
    Close {
        /// The connection.
        conn: ConnId,
        /// The reason, mapped to the QUIC application close code by
        /// [`ErrorCode::close_code`].
        code: Option<ErrorCode>,
    },
}

/// How a join attempt ended, for metrics and the join success rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinOutcome {
    /// Admitted (possibly replacing an earlier session of the same user).
    Joined,
    /// Refused with this reason.
    Refused(ErrorCode),
}

impl JoinOutcome {
    /// A stable lowercase label (`joined`, or the refusal reason's [`ErrorCode::label`]).
    pub const fn label(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::Refused(code) => code.label(),
        }
    }
}

/// Why a frame was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DropReason {
    /// The connection has not joined a room (or has left it).
    NotJoined,
    /// The envelope's sender is not the connection's member id.
    ForgedSender,
    /// The frame exceeds the frame size limit.
    TooLarge,
    /// The ticket does not grant publishing this kind.
    NotPermitted,
    /// The member already publishes as many tracks as allowed.
    TooManyTracks,
    /// The track was published as another kind.
    KindMismatch,
    /// The member exceeded a rate limit.
    RateLimited,
    /// The bytes do not decode as an envelope frame.
    Malformed,
    /// A receiver's datagram queue was full; its oldest datagram was dropped.
    QueueFull,
    /// A receiver fell behind on a video group; the rest of the group was dropped.
    StaleGroup,
    /// The frame arrived for a video group already superseded at a receiver.
    LateGroup,
    /// Too many audio streams were in flight to a receiver.
    TooManyStreams,
    /// The receiver's connection was gone or closing.
    ReceiverGone,
    /// The receiver could not keep up with reliable data and was removed.
    SlowConsumer,
    /// The connection had more bytes of incomplete frames buffered than allowed; the
    /// stream that went over was stopped.
    Backlog,
}

impl DropReason {
    /// Whether the frame was forged or malformed by its sender (counted towards
    /// [`Violation::BadFrames`]): a wrong sender id, a frame before `Join`, bytes that do
    /// not decode, a track used as another kind.
    pub const fn is_bad(self) -> bool {
        matches!(
            self,
            Self::ForgedSender | Self::NotJoined | Self::Malformed | Self::KindMismatch
        )
    }

    /// Every reason, for exporting zeroed counters.
    pub const ALL: [Self; 15] = [
        Self::NotJoined,
        Self::ForgedSender,
        Self::TooLarge,
        Self::NotPermitted,
        Self::TooManyTracks,
        Self::KindMismatch,
        Self::RateLimited,
        Self::Malformed,
        Self::QueueFull,
        Self::StaleGroup,
        Self::LateGroup,
        Self::TooManyStreams,
        Self::ReceiverGone,
        Self::SlowConsumer,
        Self::Backlog,
    ];

    /// A stable lowercase label (metrics, logs).
    pub const fn label(self) -> &'static str {
        match self {
            Self::NotJoined => "not_joined",
            Self::ForgedSender => "forged_sender",
            Self::TooLarge => "too_large",
            Self::NotPermitted => "not_permitted",
            Self::TooManyTracks => "too_many_tracks",
            Self::KindMismatch => "kind_mismatch",
            Self::RateLimited => "rate_limited",
            Self::Malformed => "malformed",
            Self::QueueFull => "queue_full",
            Self::StaleGroup => "stale_group",
            Self::LateGroup => "late_group",
            Self::TooManyStreams => "too_many_streams",
            Self::ReceiverGone => "receiver_gone",
            Self::SlowConsumer => "slow_consumer",
            Self::Backlog => "backlog",
        }
    }
}

/// A way a connection broke the protocol. Each is counted
/// (`sealroom_violations_total{kind}`, [`RelayStats::violations`](crate::RelayStats)); the
/// ones on the control plane end the connection, the ones on a media stream end that stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Violation {
    /// A control message other than `Join` before `Join` (publishing before joining, say):
    /// the connection is closed with `ProtocolViolation`.
    BeforeJoin,
    /// `Join` on a connection that already joined: the member is removed with
    /// `ProtocolViolation`.
    JoinTwice,
    /// A message only the relay sends (`Joined`, `MemberJoined`, `GoAway`, ...): removed
    /// with `ProtocolViolation`.
    RelayOnly,
    /// A control message that does not decode: removed with `ProtocolViolation`.
    MalformedControl,
    /// Broken control stream framing: removed with `ProtocolViolation`.
    ControlFraming,
    /// A control message over the size limit: removed with `FrameTooLarge`.
    ControlTooLarge,
    /// No `Join` within the join timeout: closed with `ProtocolViolation`.
    NoJoin,
    /// More incoming streams than allowed: over the stream opening rate (the stream is
    /// refused and the member hears `RateLimited`), or past the QUIC stream limit (quinn
    /// closes the connection).
    TooManyStreams,
    /// A frame that started but did not complete within `incomplete_frame_timeout_ms`
    /// (a slowloris): a media stream is refused, a control stream ends the connection with
    /// `ProtocolViolation`.
    StalledFrame,
    /// Any other breach of the QUIC specification; quinn closed the connection.
    Quic,
    /// Forged or malformed frames (another member's sender id, frames before `Join`,
    /// bytes that do not decode as a frame, a track used as another kind) beyond
    /// `bad_frames_per_sec` and its burst: removed with `ProtocolViolation`.
    BadFrames,
}

impl Violation {
    /// Every kind, for exporting zeroed counters.
    pub const ALL: [Self; 11] = [
        Self::BeforeJoin,
        Self::JoinTwice,
        Self::RelayOnly,
        Self::MalformedControl,
        Self::ControlFraming,
        Self::ControlTooLarge,
        Self::NoJoin,
        Self::TooManyStreams,
        Self::StalledFrame,
        Self::Quic,
        Self::BadFrames,
    ];

    /// A stable lowercase label (metrics, logs).
    pub const fn label(self) -> &'static str {
        match self {
            Self::BeforeJoin => "before_join",
            Self::JoinTwice => "join_twice",
            Self::RelayOnly => "relay_only",
            Self::MalformedControl => "malformed_control",
            Self::ControlFraming => "control_framing",
            Self::ControlTooLarge => "control_too_large",
            Self::NoJoin => "no_join",
            Self::TooManyStreams => "too_many_streams",
            Self::StalledFrame => "stalled_frame",
            Self::Quic => "quic",
            Self::BadFrames => "bad_frames",
        }
    }

    /// The reason a connection removed for this violation hears.
    pub const fn error_code(self) -> ErrorCode {
        match self {
            Self::ControlTooLarge => ErrorCode::FrameTooLarge,
            _ => ErrorCode::ProtocolViolation,
        }
    }

    const fn message(self) -> &'static str {
        match self {
            Self::BeforeJoin => "the first message must be Join",
            Self::JoinTwice => "already joined",
            Self::RelayOnly => "a message only the relay sends",
            Self::MalformedControl => "malformed control message",
            Self::ControlFraming => "broken control stream framing",
            Self::ControlTooLarge => "control message over the size limit",
            Self::NoJoin => "no Join in time",
            Self::TooManyStreams => "too many streams",
            Self::StalledFrame => "a control message that never completed",
            Self::Quic => "QUIC protocol violation",
            Self::BadFrames => {
                "too many forged or malformed frames; fix the sender before reconnecting"
            }
        }
    }
}

/// What became of a control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlOutcome {
    /// Acted on.
    Handled,
    /// The connection's first `Join`, decided.
    Join(JoinOutcome),
    /// A keyframe request.
    Keyframe(KeyframeOutcome),
    /// Dropped: over the member's control message rate (it hears `RateLimited`, at most
    /// once a second).
    RateLimited,
    /// The connection broke the protocol and was removed.
    Violation(Violation),
    /// The connection is unknown (already removed); nothing happened.
    Ignored,
}

/// What became of a keyframe request, from a member or from the relay on a slow
/// receiver's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyframeOutcome {
    /// Passed to the publisher.
    Forwarded,
    /// Dropped: the publisher was asked for a keyframe on this track less than
    /// `keyframe_request_interval_ms` ago; that keyframe serves this request too.
    Coalesced,
    /// Dropped: no such publisher or video track in the room (or the requester's own).
    Ignored,
}

/// What a pass of [`RelayCore::handle_timeout`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TimeoutOutcome {
    /// Connections closed for not joining in time ([`Violation::NoJoin`]).
    pub no_join: usize,
    /// Members removed because their ticket expired.
    pub tickets_expired: usize,
}

/// Whom an operator removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberTarget {
    /// The member with this id.
    Member(MemberId),
    /// The member with this user id.
    User(String),
}

/// Why an operator request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No such room (it may have just emptied).
    #[error("no such room")]
    UnknownRoom,
    /// No such member in the room.
    #[error("no such member in the room")]
    UnknownMember,
}

/// A room as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoomSummary {
    /// App id.
    pub app: String,
    /// Room id.
    pub room: String,
    /// Members present.
    pub members: usize,
    /// When the room was created, seconds since the Unix epoch.
    pub created_unix_secs: u64,
}

/// A member as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberSummary {
    /// Relay-assigned member id.
    pub member: MemberId,
    /// User id from the ticket.
    pub user: String,
    /// The connection carrying the member.
    #[serde(skip)]
    pub conn: ConnId,
    /// Tracks published.
    pub tracks: usize,
    /// When the member joined, seconds since the Unix epoch.
    pub joined_unix_secs: u64,
    /// When the member's ticket expires, seconds since the Unix epoch.
    pub ticket_exp: u64,
}

/// Bytes of roster entries `Joined` carries at most; the rest of the roster follows as
/// `MemberJoined` messages. Leaves room under the control message limit for the rest of
/// `Joined`.
const ROSTER_BUDGET: usize = sealroom_frame::control::MAX_CONTROL_LEN - 4096;

/// An upper bound of the encoded length of one roster entry: the user id, and a few bytes
/// for the member id, each track and the length prefixes.
fn roster_entry_len(info: &MemberInfo) -> usize {
    info.user
        .len()
        .saturating_add(info.tracks.len().saturating_mul(8))
        .saturating_add(16)
}

/// How often at most one kind of feedback error is sent to one member.
const FEEDBACK_INTERVAL: Duration = Duration::from_secs(1);

/// Delay suggested to clients in `GoAway` before reconnecting.
const GO_AWAY_RECONNECT_MS: u32 = 1000;

#[derive(Debug)]
enum ConnPhase {
    /// Connected, waiting for `Join`.
    Connected { since: Instant },
    /// A member of `room`.
    Joined { room: RoomKey, member: MemberId },
}

#[derive(Debug)]
struct Conn {
    phase: ConnPhase,
    /// Whether `GoAway` was sent.
    told_to_go: bool,
    /// Incoming streams this connection may still open.
    streams: TokenBucket,
    /// When `RateLimited` for too many streams was last sent (before or after joining).
    streams_feedback: Option<Instant>,
    /// The source address, for per-address join limits (`None`: not told).
    source: Option<IpAddr>,
    /// Forged or malformed frames this connection may still send.
    bad_frames: TokenBucket,
}

#[derive(Debug)]
enum Subscriptions {
    /// Everything except these.
    AllExcept(HashSet<(MemberId, TrackId)>),
    /// Only these.
    Only(HashSet<(MemberId, TrackId)>),
}

impl Subscriptions {
    fn wants(&self, member: MemberId, track: TrackId) -> bool {
        match self {
            Self::AllExcept(except) => !except.contains(&(member, track)),
            Self::Only(only) => only.contains(&(member, track)),
        }
    }

    fn set(&mut self, member: MemberId, track: TrackId, subscribed: bool, bound: usize) {
        let (set, insert) = match self {
            Self::AllExcept(except) => (except, !subscribed),
            Self::Only(only) => (only, subscribed),
        };
        if insert {
            if set.len() < bound {
                set.insert((member, track));
            }
        } else {
            set.remove(&(member, track));
        }
    }

    fn forget_member(&mut self, member: MemberId) {
        let (Self::AllExcept(set) | Self::Only(set)) = self;
        set.retain(|(m, _)| *m != member);
    }

    fn forget_track(&mut self, member: MemberId, track: TrackId) {
        let (Self::AllExcept(set) | Self::Only(set)) = self;
        set.remove(&(member, track));
    }
}

#[derive(Debug)]
struct Member {
    conn: ConnId,
    user: String,
    grants: Grants,
    ticket_exp: u64,
    joined_unix_secs: u64,
    tracks: Vec<TrackInfo>,
    subscriptions: Subscriptions,
    data_messages: TokenBucket,
    data_bytes: TokenBucket,
    media_bytes: TokenBucket,
    control_messages: TokenBucket,
    /// When each kind of feedback error was last sent, indexed by [`ErrorCode::index`].
    feedback: [Option<Instant>; 32],
    /// When this member (as a publisher) was last asked for a keyframe, per video track;
    /// at most one entry per published track.
    keyframe_asked: Vec<(TrackId, Instant)>,
}

impl Member {
    fn info(&self, member: MemberId) -> MemberInfo {
        MemberInfo {
            member,
            user: self.user.clone(),
            tracks: self.tracks.clone(),
        }
    }

    fn track(&self, track: TrackId) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.track == track)
    }
}

#[derive(Debug)]
struct Room {
    members: BTreeMap<MemberId, Member>,
    next_member: MemberId,
    created_unix_secs: u64,
}

impl Room {
    fn allocate_member_id(&mut self) -> MemberId {
        // Counts up from 1; on wrap-around (4 billion joins into one room) skips ids in use.
        loop {
            let id = self.next_member;
            self.next_member = self.next_member.checked_add(1).unwrap_or(1);
            if id != 0 && !self.members.contains_key(&id) {
                return id;
            }
        }
    }

    fn member_by_user(&self, user: &str) -> Option<MemberId> {
        self.members
            .iter()
            .find_map(|(id, m)| (m.user == user).then_some(*id))
    }
}

#[derive(Debug)]
struct AppState {
    rooms: usize,
    joins: TokenBucket,
}

/// The relay's state and decisions, free of I/O and clocks.
pub struct RelayCore {
    limits: Limits,
    verifier: TicketVerifier,
    conns: HashMap<ConnId, Conn>,
    rooms: HashMap<RoomKey, Room>,
    apps: HashMap<String, AppState>,
    outputs: VecDeque<Output>,
    receivers: Vec<ConnId>,
    draining: bool,
    /// Whether the node is over its memory ceiling (joins are refused with `Overloaded`).
    overloaded: bool,
    /// Join attempts per (app, user).
    user_joins: KeyedLimiter<(String, String)>,
    /// Join attempts per source key (IPv4 address, IPv6 /64).
    address_joins: KeyedLimiter<IpAddr>,
}

impl fmt::Debug for RelayCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayCore")
            .field("connections", &self.conns.len())
            .field("rooms", &self.rooms.len())
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

impl RelayCore {
    /// A core serving `apps` within `limits`, created at `now`.
    pub fn new(apps: &[AppConfig], limits: Limits, now: Instant) -> Self {
        let verifier = TicketVerifier::new(apps, limits.ticket_leeway_secs);
        let apps = apps
            .iter()
            .map(|app| {
                let rate = limits.joins_per_app_per_sec;
                let joins = TokenBucket::new(rate, rate.saturating_mul(2), now);
                (app.app.clone(), AppState { rooms: 0, joins })
            })
            .collect();
        Self {
            limits,
            verifier,
            conns: HashMap::new(),
            rooms: HashMap::new(),
            apps,
            outputs: VecDeque::new(),
            receivers: Vec::new(),
            draining: false,
            overloaded: false,
            user_joins: KeyedLimiter::new(
                limits.joins_per_user_per_sec,
                limits.joins_per_user_burst,
                limits.join_limiter_entries,
            ),
            address_joins: KeyedLimiter::new(
                limits.joins_per_address_per_sec,
                limits.joins_per_address_burst,
                limits.join_limiter_entries,
            ),
        }
    }

    /// Tell the core whether the node is over its memory ceiling; while it is, joins are
    /// refused with `Overloaded`.
    pub fn set_overloaded(&mut self, overloaded: bool) {
        self.overloaded = overloaded;
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Connections known (joined or waiting to join).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Rooms open.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Members in all rooms.
    pub fn member_count(&self) -> usize {
        self.rooms.values().map(|r| r.members.len()).sum()
    }

    /// Whether the core is draining (refusing joins).
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// The room and member id of a joined connection.
    pub fn membership(&self, conn: ConnId) -> Option<(&RoomKey, MemberId)> {
        match &self.conns.get(&conn)?.phase {
            ConnPhase::Joined { room, member } => Some((room, *member)),
            ConnPhase::Connected { .. } => None,
        }
    }

    /// The room, member id and user id of a joined connection.
    pub fn member_identity(&self, conn: ConnId) -> Option<(&RoomKey, MemberId, &str)> {
        let (key, member) = self.membership(conn)?;
        let user = self.rooms.get(key)?.members.get(&member)?.user.as_str();
        Some((key, member, user))
    }

    /// Check the core's internal consistency; `Some(description)` of the first broken
    /// invariant. For tests and fuzz targets: every room has members, no room has more than
    /// the limit, member ids are unique and non-zero, every member's connection points back
    /// at it, each app's room count matches its rooms.
    #[cfg(any(test, feature = "testing"))]
    pub fn invariant_violation(&self) -> Option<String> {
        let mut rooms_per_app: HashMap<&str, usize> = HashMap::new();
        for (key, room) in &self.rooms {
            *rooms_per_app.entry(key.app.as_str()).or_default() += 1;
            if room.members.is_empty() {
                return Some(format!("room {key:?} is empty"));
            }
            if room.members.len() > self.limits.max_members_per_room {
                return Some(format!("room {key:?} is over its member limit"));
            }
            let mut users = HashSet::new();
            for (id, member) in &room.members {
                if *id == 0 {
                    return Some(format!("room {key:?} has member id 0"));
                }
                if !users.insert(member.user.as_str()) {
                    return Some(format!("room {key:?} has user {} twice", member.user));
                }
                match self.membership(member.conn) {
                    Some((k, m)) if k == key && m == *id => {}
                    other => {
                        return Some(format!(
                            "member {id} of {key:?} has connection {} pointing at {other:?}",
                            member.conn
                        ));
                    }
                }
                if member.tracks.len() > self.limits.max_tracks_per_member {
                    return Some(format!("member {id} of {key:?} has too many tracks"));
                }
            }
        }
        for (conn, state) in &self.conns {
            if let ConnPhase::Joined { room, member } = &state.phase {
                let present = self
                    .rooms
                    .get(room)
                    .and_then(|r| r.members.get(member))
                    .is_some_and(|m| m.conn == *conn);
                if !present {
                    return Some(format!("connection {conn} is joined to a missing member"));
                }
            }
        }
        for (app, state) in &self.apps {
            let actual = rooms_per_app.get(app.as_str()).copied().unwrap_or(0);
            if state.rooms != actual {
                return Some(format!(
                    "app {app} counts {} rooms, has {actual}",
                    state.rooms
                ));
            }
            if actual > self.limits.max_rooms_per_app {
                return Some(format!("app {app} is over its room limit"));
            }
        }
        None
    }

    /// The next thing the driver must do, in order.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// A new connection arrived; `now` is its first packet, from which the join timeout
    /// runs. During a drain it is told to go away at once.
    pub fn handle_connect(&mut self, conn: ConnId, now: Now) {
        self.connect(conn, None, now);
    }

    /// A new connection arrived from `source` (for the per-address join limit); like
    /// [`RelayCore::handle_connect`] otherwise.
    pub fn handle_connect_from(&mut self, conn: ConnId, source: IpAddr, now: Now) {
        self.connect(conn, Some(source), now);
    }

    fn connect(&mut self, conn: ConnId, source: Option<IpAddr>, now: Now) {
        let rate = self.limits.incoming_streams_per_sec;
        let burst = self.limits.incoming_streams_burst;
        self.conns.insert(
            conn,
            Conn {
                phase: ConnPhase::Connected { since: now.instant },
                told_to_go: false,
                streams: TokenBucket::new(rate, burst, now.instant),
                streams_feedback: None,
                source,
                bad_frames: TokenBucket::new(
                    self.limits.bad_frames_per_sec,
                    self.limits.bad_frames_burst,
                    now.instant,
                ),
            },
        );
    }

    /// `conn` sent a forged or malformed frame (the driver's decode failed, or
    /// [`RelayCore::handle_frame`] answered [`DropReason::is_bad`]). Past
    /// `bad_frames_per_sec` and its burst the connection is removed with
    /// `ProtocolViolation`; returns [`Violation::BadFrames`] then.
    pub fn handle_bad_frame(&mut self, conn: ConnId, now: Now) -> Option<Violation> {
        let state = self.conns.get_mut(&conn)?;
        if state.bad_frames.try_take(1, now.instant) {
            return None;
        }
        self.handle_violation(conn, Violation::BadFrames);
        Some(Violation::BadFrames)
    }

    /// `conn` opened an incoming (unidirectional) stream.
    ///
    /// # Errors
    /// [`Violation::TooManyStreams`] when the connection opens streams faster than
    /// `incoming_streams_per_sec` (burst `incoming_streams_burst`): the driver refuses the
    /// stream; a member hears `RateLimited` at most once a second.
    pub fn handle_incoming_stream(&mut self, conn: ConnId, now: Now) -> Result<(), Violation> {
        let Some(state) = self.conns.get_mut(&conn) else {
            // A connection being closed: its frames are dropped as `not_joined` anyway.
            return Ok(());
        };
        if state.streams.try_take(1, now.instant) {
            return Ok(());
        }
        let quiet = state
            .streams_feedback
            .is_some_and(|at| now.instant.saturating_duration_since(at) < FEEDBACK_INTERVAL);
        if !quiet {
            state.streams_feedback = Some(now.instant);
            self.outputs.push_back(Output::Send {
                conn,
                message: ControlMessage::Error {
                    code: ErrorCode::RateLimited,
                    message: "too many streams opened; stream refused".to_owned(),
                },
            });
        }
        Err(Violation::TooManyStreams)
    }

    /// The driver caught `conn` breaking the protocol in a way that ends the connection
    /// (a malformed control message, broken framing, a stalled control message): it hears
    /// the violation's [`Violation::error_code`], its member leaves (the others see
    /// `Removed`), and it is closed.
    pub fn handle_violation(&mut self, conn: ConnId, violation: Violation) {
        self.remove_connection(conn, violation.error_code(), violation.message());
    }

    /// A control message arrived from `conn`.
    ///
    /// Before `Join` only `Join` is accepted; a member may send anything a client sends
    /// except `Join`. Breaking either rule removes the connection with
    /// `ProtocolViolation` ([`ControlOutcome::Violation`]). A member's messages are rate
    /// limited (`control_messages_per_sec`, burst twice that).
    pub fn handle_control(
        &mut self,
        conn: ConnId,
        message: ControlMessage,
        now: Now,
    ) -> ControlOutcome {
        let Some(state) = self.conns.get(&conn) else {
            return ControlOutcome::Ignored;
        };
        let (room_key, member_id) = match &state.phase {
            ConnPhase::Connected { .. } => {
                if let ControlMessage::Join {
                    ticket, options, ..
                } = message
                {
                    return ControlOutcome::Join(self.handle_join(conn, &ticket, &options, now));
                }
                self.handle_violation(conn, Violation::BeforeJoin);
                return ControlOutcome::Violation(Violation::BeforeJoin);
            }
            ConnPhase::Joined { room, member } => (room.clone(), *member),
        };
        let violation = match &message {
            ControlMessage::Join { .. } => Some(Violation::JoinTwice),
            ControlMessage::Joined { .. }
            | ControlMessage::MemberJoined(_)
            | ControlMessage::MemberLeft { .. }
            | ControlMessage::TicketRefreshed { .. }
            | ControlMessage::GoAway { .. } => Some(Violation::RelayOnly),
            _ => None,
        };
        if let Some(violation) = violation {
            self.handle_violation(conn, violation);
            return ControlOutcome::Violation(violation);
        }
        let outputs = &mut self.outputs;
        let Some(me) = self
            .rooms
            .get_mut(&room_key)
            .and_then(|r| r.members.get_mut(&member_id))
        else {
            return ControlOutcome::Ignored;
        };
        if !me.control_messages.try_take(1, now.instant) {
            Self::feedback(
                outputs,
                me,
                ErrorCode::RateLimited,
                "control message rate exceeded; message dropped",
                now.instant,
            );
            return ControlOutcome::RateLimited;
        }
        let bound = self.subscription_bound();
        match message {
            ControlMessage::TrackPublished { track, .. } => {
                self.publish_track(&room_key, member_id, track, now);
            }
            ControlMessage::TrackUnpublished { track, .. } => {
                self.unpublish_track(&room_key, member_id, track);
            }
            ControlMessage::Subscribe { member, track } => {
                if let Some(me) = self.member_mut(&room_key, member_id) {
                    me.subscriptions.set(member, track, true, bound);
                }
            }
            ControlMessage::Unsubscribe { member, track } => {
                if let Some(me) = self.member_mut(&room_key, member_id) {
                    me.subscriptions.set(member, track, false, bound);
                }
            }
            ControlMessage::KeyframeRequest { member, track } => {
                return ControlOutcome::Keyframe(
                    self.ask_for_keyframe(&room_key, member_id, member, track, now),
                );
            }
            ControlMessage::RefreshTicket { ticket } => {
                self.refresh_ticket(conn, &room_key, member_id, &ticket, now);
            }
            ControlMessage::Leave => {
                self.remove_member(&room_key, member_id, LeaveReason::Left);
                self.conns.remove(&conn);
                self.outputs.push_back(Output::Close { conn, code: None });
            }
            ControlMessage::Error { .. } => {
                // A client's warning; nothing to do.
            }
            ControlMessage::Join { .. }
            | ControlMessage::Joined { .. }
            | ControlMessage::MemberJoined(_)
            | ControlMessage::MemberLeft { .. }
            | ControlMessage::TicketRefreshed { .. }
            | ControlMessage::GoAway { .. } => {
                // Refused above.
            }
        }
        ControlOutcome::Handled
    }

    /// The relay dropped the rest of a video group of `sender`'s `track` because the
    /// member on `receiver` fell behind: ask the publisher for a keyframe on the
    /// receiver's behalf, so the receiver recovers at the next group instead of waiting
    /// for the publisher's own next keyframe. Coalesced like members' requests.
    pub fn handle_stale_group(
        &mut self,
        receiver: ConnId,
        sender: MemberId,
        track: TrackId,
        now: Now,
    ) -> KeyframeOutcome {
        let Some((key, requester)) = self.membership(receiver).map(|(k, m)| (k.clone(), m)) else {
            return KeyframeOutcome::Ignored;
        };
        self.ask_for_keyframe(&key, requester, sender, track, now)
    }

    /// Pass a keyframe request from `requester` to `publisher`'s video `track`, at most one
    /// per publisher track every `keyframe_request_interval_ms`.
    fn ask_for_keyframe(
        &mut self,
        key: &RoomKey,
        requester: MemberId,
        publisher: MemberId,
        track: TrackId,
        now: Now,
    ) -> KeyframeOutcome {
        let interval = self.limits.keyframe_request_interval();
        let Some(target) = self
            .rooms
            .get_mut(key)
            .and_then(|r| r.members.get_mut(&publisher))
        else {
            return KeyframeOutcome::Ignored;
        };
        let is_video = target
            .track(track)
            .is_some_and(|t| t.kind == MediaKind::Video);
        if publisher == requester || !is_video {
            return KeyframeOutcome::Ignored;
        }
        match target.keyframe_asked.iter_mut().find(|(t, _)| *t == track) {
            Some((_, at)) if now.instant.saturating_duration_since(*at) < interval => {
                return KeyframeOutcome::Coalesced;
            }
            Some((_, at)) => *at = now.instant,
            None => target.keyframe_asked.push((track, now.instant)),
        }
        self.outputs.push_back(Output::Send {
            conn: target.conn,
            message: ControlMessage::KeyframeRequest {
                member: requester,
                track,
            },
        });
        KeyframeOutcome::Forwarded
    }

    fn member_mut(&mut self, key: &RoomKey, member: MemberId) -> Option<&mut Member> {
        self.rooms.get_mut(key)?.members.get_mut(&member)
    }

    /// Whether a ticket expiring at `exp` lives longer than `max_ticket_lifetime_secs`
    /// from now.
    fn lifetime_too_long(&self, exp: u64, now: Now) -> bool {
        let max = self.limits.max_ticket_lifetime_secs;
        max > 0
            && exp.saturating_sub(now.unix_secs)
                > max.saturating_add(self.limits.ticket_leeway_secs)
    }

    fn subscription_bound(&self) -> usize {
        self.limits
            .max_members_per_room
            .saturating_mul(self.limits.max_tracks_per_member)
    }

    /// Admit `conn` with `ticket`, or refuse it. The outcome is also queued as outputs:
    /// `Joined` and `MemberJoined` messages, or an `Error` and a `Close`.
    pub fn handle_join(
        &mut self,
        conn: ConnId,
        ticket: &str,
        options: &JoinOptions,
        now: Now,
    ) -> JoinOutcome {
        match self.admit(conn, ticket, options, now) {
            Ok(()) => JoinOutcome::Joined,
            Err((code, message)) => {
                self.refuse(conn, code, message);
                JoinOutcome::Refused(code)
            }
        }
    }

    fn admit(
        &mut self,
        conn: ConnId,
        ticket: &str,
        options: &JoinOptions,
        now: Now,
    ) -> Result<(), (ErrorCode, &'static str)> {
        match self.conns.get(&conn).map(|c| &c.phase) {
            Some(ConnPhase::Connected { .. }) => {}
            Some(ConnPhase::Joined { .. }) => {
                return Err((ErrorCode::ProtocolViolation, "already joined"));
            }
            None => return Err((ErrorCode::ProtocolViolation, "unknown connection")),
        }
        if self.draining {
            return Err((ErrorCode::ShuttingDown, "the relay is shutting down"));
        }
        if self.overloaded {
            return Err((
                ErrorCode::Overloaded,
                "the relay is over its memory ceiling; retry later or at another node",
            ));
        }
        // Per source address first, before the ticket costs an HMAC: one address cannot
        // spend the app's budget.
        if let Some(source) = self.conns.get(&conn).and_then(|c| c.source) {
            match self.address_joins.try_take(source_key(source), now.instant) {
                Keyed::Allowed => {}
                Keyed::Limited => {
                    return Err((
                        ErrorCode::RateLimited,
                        "too many joins from this address; retry in a few seconds",
                    ));
                }
                Keyed::Full => {
                    return Err((
                        ErrorCode::Overloaded,
                        "the relay is tracking too many joining addresses; retry later",
                    ));
                }
            }
        }
        let claims = self
            .verifier
            .verify(ticket, now.unix_secs)
            .map_err(|err| (err.code(), verify_message(err.code())))?;
        if claims.user.len() > self.limits.max_user_id_len {
            return Err((
                ErrorCode::BadTicket,
                "the ticket's user id is longer than this relay accepts (max_user_id_len)",
            ));
        }
        if self.lifetime_too_long(claims.exp, now) {
            return Err((
                ErrorCode::BadTicket,
                "the ticket lives longer than this relay accepts (max_ticket_lifetime_secs); \
                 mint a shorter one",
            ));
        }
        if options
            .room
            .as_ref()
            .is_some_and(|room| *room != claims.room)
        {
            return Err((
                ErrorCode::WrongRoom,
                "the ticket names another room than the one requested",
            ));
        }
        if !self.apps.contains_key(&claims.app) {
            return Err((ErrorCode::UnknownApp, "unknown app"));
        }
        // Per user before the app's budget: one ticket holder joining over and over is
        // refused on its own account, and other users keep joining.
        match self
            .user_joins
            .try_take((claims.app.clone(), claims.user.clone()), now.instant)
        {
            Keyed::Allowed => {}
            Keyed::Limited => {
                return Err((
                    ErrorCode::RateLimited,
                    "this user joins too often; retry in a few seconds",
                ));
            }
            Keyed::Full => {
                return Err((
                    ErrorCode::Overloaded,
                    "the relay is tracking too many joining users; retry later",
                ));
            }
        }
        let app = self
            .apps
            .get_mut(&claims.app)
            .ok_or((ErrorCode::UnknownApp, "unknown app"))?;
        if !app.joins.try_take(1, now.instant) {
            return Err((
                ErrorCode::Overloaded,
                "the relay takes no more joins for this app right now; retry in a second",
            ));
        }
        let key = RoomKey::new(claims.app.clone(), claims.room.clone());
        let replaced = self
            .rooms
            .get(&key)
            .and_then(|room| room.member_by_user(&claims.user));
        match self.rooms.get(&key) {
            Some(room) => {
                if replaced.is_none() && room.members.len() >= self.limits.max_members_per_room {
                    return Err((ErrorCode::RoomFull, "the room is full"));
                }
            }
            None => {
                if app.rooms >= self.limits.max_rooms_per_app {
                    return Err((ErrorCode::TooManyRooms, "the app has too many rooms"));
                }
            }
        }
        if let Some(old) = replaced {
            self.replace(&key, old);
        }
        self.enter(conn, key, claims, options, now);
        Ok(())
    }

    fn replace(&mut self, key: &RoomKey, old: MemberId) {
        let Some(old_conn) = self
            .rooms
            .get(key)
            .and_then(|r| r.members.get(&old))
            .map(|m| m.conn)
        else {
            return;
        };
        self.outputs.push_back(Output::Send {
            conn: old_conn,
            message: ControlMessage::Error {
                code: ErrorCode::Replaced,
                message: "a newer session of this user joined the room".to_owned(),
            },
        });
        // The room stays (the new member enters it right after), so remove without
        // deleting an emptied room.
        if let Some(room) = self.rooms.get_mut(key) {
            Self::detach(&mut self.outputs, room, old, LeaveReason::Replaced);
        }
        self.conns.remove(&old_conn);
        self.outputs.push_back(Output::Close {
            conn: old_conn,
            code: Some(ErrorCode::Replaced),
        });
    }

    fn enter(
        &mut self,
        conn: ConnId,
        key: RoomKey,
        claims: TicketClaims,
        options: &JoinOptions,
        now: Now,
    ) {
        let limits = self.limits;
        let room = match self.rooms.entry(key.clone()) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                if let Some(app) = self.apps.get_mut(&key.app) {
                    app.rooms += 1;
                }
                entry.insert(Room {
                    members: BTreeMap::new(),
                    next_member: 1,
                    created_unix_secs: now.unix_secs,
                })
            }
        };
        let id = room.allocate_member_id();
        // The roster goes in `Joined` as far as it fits one control message; the rest
        // follows as `MemberJoined` messages, so no message is ever over its limit.
        let mut roster: Vec<MemberInfo> = Vec::new();
        let mut rest: Vec<MemberInfo> = Vec::new();
        let mut roster_len = 0usize;
        for (member_id, m) in &room.members {
            let info = m.info(*member_id);
            let len = roster_entry_len(&info);
            if rest.is_empty() && roster_len.saturating_add(len) <= ROSTER_BUDGET {
                roster_len += len;
                roster.push(info);
            } else {
                rest.push(info);
            }
        }
        let subscriptions = if options.auto_subscribe {
            Subscriptions::AllExcept(HashSet::new())
        } else {
            Subscriptions::Only(HashSet::new())
        };
        let member = Member {
            conn,
            user: claims.user,
            grants: claims.grants,
            ticket_exp: claims.exp,
            joined_unix_secs: now.unix_secs,
            tracks: Vec::new(),
            subscriptions,
            data_messages: TokenBucket::new(
                limits.data_messages_per_sec,
                limits.data_messages_burst,
                now.instant,
            ),
            data_bytes: TokenBucket::new(
                limits.data_bytes_per_sec,
                limits.data_bytes_burst,
                now.instant,
            ),
            media_bytes: TokenBucket::new(
                limits.media_bytes_per_sec,
                limits.media_bytes_burst,
                now.instant,
            ),
            control_messages: TokenBucket::new(
                limits.control_messages_per_sec,
                limits.control_messages_per_sec.saturating_mul(2),
                now.instant,
            ),
            feedback: [None; 32],
            keyframe_asked: Vec::new(),
        };
        let info = member.info(id);
        for other in room.members.values() {
            self.outputs.push_back(Output::Send {
                conn: other.conn,
                message: ControlMessage::MemberJoined(info.clone()),
            });
        }
        let ticket_expires_in_secs = claims
            .exp
            .saturating_add(limits.ticket_leeway_secs)
            .saturating_sub(now.unix_secs);
        room.members.insert(id, member);
        self.outputs.push_back(Output::Send {
            conn,
            message: ControlMessage::Joined {
                member: id,
                roster,
                limits: SessionLimits {
                    max_frame_len: u32::try_from(limits.max_frame_len).unwrap_or(u32::MAX),
                    data_messages_per_sec: limits.data_messages_per_sec,
                    data_bytes_per_sec: limits.data_bytes_per_sec,
                    ticket_expires_in_secs,
                },
            },
        });
        for info in rest {
            self.outputs.push_back(Output::Send {
                conn,
                message: ControlMessage::MemberJoined(info),
            });
        }
        if let Some(state) = self.conns.get_mut(&conn) {
            state.phase = ConnPhase::Joined {
                room: key,
                member: id,
            };
        }
    }

    fn refresh_ticket(
        &mut self,
        conn: ConnId,
        key: &RoomKey,
        member_id: MemberId,
        ticket: &str,
        now: Now,
    ) {
        let result = self.verifier.verify(ticket, now.unix_secs);
        let max_lifetime = self.limits.max_ticket_lifetime_secs;
        let Some(member) = self
            .rooms
            .get_mut(key)
            .and_then(|r| r.members.get_mut(&member_id))
        else {
            return;
        };
        let (code, text) = match result {
            Ok(claims) if claims.app != key.app || claims.room != key.room => {
                (ErrorCode::WrongRoom, "the fresh ticket names another room")
            }
            Ok(claims) if claims.user != member.user => (
                ErrorCode::NotPermitted,
                "the fresh ticket names another user",
            ),
            Ok(claims)
                if max_lifetime > 0
                    && claims.exp.saturating_sub(now.unix_secs)
                        > max_lifetime.saturating_add(self.limits.ticket_leeway_secs) =>
            {
                (
                    ErrorCode::BadTicket,
                    "the fresh ticket lives longer than this relay accepts; mint a shorter one",
                )
            }
            Ok(claims) => {
                member.ticket_exp = claims.exp;
                member.grants = claims.grants;
                let expires_in_secs = claims
                    .exp
                    .saturating_add(self.limits.ticket_leeway_secs)
                    .saturating_sub(now.unix_secs);
                self.outputs.push_back(Output::Send {
                    conn,
                    message: ControlMessage::TicketRefreshed { expires_in_secs },
                });
                return;
            }
            Err(err) => (err.code(), verify_message(err.code())),
        };
        self.outputs.push_back(Output::Send {
            conn,
            message: ControlMessage::Error {
                code,
                message: text.to_owned(),
            },
        });
    }

    fn publish_track(&mut self, key: &RoomKey, member_id: MemberId, track: TrackInfo, now: Now) {
        let max_tracks = self.limits.max_tracks_per_member;
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let Some(me) = room.members.get_mut(&member_id) else {
            return;
        };
        if !me.grants.may_publish(track.kind) {
            Self::feedback(
                &mut self.outputs,
                me,
                ErrorCode::NotPermitted,
                "the ticket does not grant publishing this kind",
                now.instant,
            );
            return;
        }
        let count = me.tracks.len();
        match me.tracks.iter_mut().find(|t| t.track == track.track) {
            Some(existing) if existing.kind == track.kind => return,
            Some(existing) => {
                existing.kind = track.kind;
                me.keyframe_asked.retain(|(t, _)| *t != track.track);
            }
            None if count >= max_tracks => {
                Self::feedback(
                    &mut self.outputs,
                    me,
                    ErrorCode::NotPermitted,
                    "too many tracks published",
                    now.instant,
                );
                return;
            }
            None => me.tracks.push(track),
        }
        Self::broadcast(
            &mut self.outputs,
            room,
            member_id,
            &ControlMessage::TrackPublished {
                member: member_id,
                track,
            },
        );
    }

    fn unpublish_track(&mut self, key: &RoomKey, member_id: MemberId, track: TrackId) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let Some(me) = room.members.get_mut(&member_id) else {
            return;
        };
        let before = me.tracks.len();
        me.tracks.retain(|t| t.track != track);
        me.keyframe_asked.retain(|(t, _)| *t != track);
        if me.tracks.len() == before {
            return;
        }
        for (id, other) in &mut room.members {
            if *id != member_id {
                other.subscriptions.forget_track(member_id, track);
            }
        }
        Self::broadcast(
            &mut self.outputs,
            room,
            member_id,
            &ControlMessage::TrackUnpublished {
                member: member_id,
                track,
            },
        );
    }

    /// Decide where a frame from `conn` goes: the connections of every other member that
    /// subscribes to the sender's track, or why it is dropped. `encoded_len` is the whole
    /// frame's length (envelope header and payload).
    ///
    /// Checks, in order: the connection is a member; the envelope's sender is that member;
    /// the size limit; the grant for the kind; the track (published implicitly by its first
    /// frame, within the track limit, and of one kind); the member's rate limits.
    ///
    /// # Errors
    /// The [`DropReason`]; refusals the sender should hear about (size, grant, rate) also
    /// queue an at most once-a-second `Error` to it.
    pub fn handle_frame(
        &mut self,
        conn: ConnId,
        envelope: &Envelope,
        encoded_len: usize,
        now: Now,
    ) -> Result<&[ConnId], DropReason> {
        let Some(Conn {
            phase: ConnPhase::Joined { room, member },
            ..
        }) = self.conns.get(&conn)
        else {
            return Err(DropReason::NotJoined);
        };
        let member_id = *member;
        if envelope.sender != member_id {
            return Err(DropReason::ForgedSender);
        }
        let Some(room) = self.rooms.get_mut(room) else {
            return Err(DropReason::NotJoined);
        };
        let Some(me) = room.members.get_mut(&member_id) else {
            return Err(DropReason::NotJoined);
        };
        let max_len = match envelope.kind {
            MediaKind::Data => self
                .limits
                .max_data_frame_len
                .min(self.limits.max_frame_len),
            MediaKind::Audio | MediaKind::Video => self.limits.max_frame_len,
        };
        if encoded_len > max_len {
            Self::feedback(
                &mut self.outputs,
                me,
                ErrorCode::FrameTooLarge,
                "frame exceeds the size limit; dropped",
                now.instant,
            );
            return Err(DropReason::TooLarge);
        }
        if !me.grants.may_publish(envelope.kind) {
            Self::feedback(
                &mut self.outputs,
                me,
                ErrorCode::NotPermitted,
                "the ticket does not grant publishing this kind; frame dropped",
                now.instant,
            );
            return Err(DropReason::NotPermitted);
        }
        match me.track(envelope.track) {
            Some(info) if info.kind != envelope.kind => return Err(DropReason::KindMismatch),
            Some(_) => {}
            None if me.tracks.len() >= self.limits.max_tracks_per_member => {
                return Err(DropReason::TooManyTracks);
            }
            None => {
                let track = TrackInfo {
                    track: envelope.track,
                    kind: envelope.kind,
                };
                me.tracks.push(track);
                Self::broadcast(
                    &mut self.outputs,
                    room,
                    member_id,
                    &ControlMessage::TrackPublished {
                        member: member_id,
                        track,
                    },
                );
            }
        }
        let Some(me) = room.members.get_mut(&member_id) else {
            return Err(DropReason::NotJoined);
        };
        let len = u32::try_from(encoded_len).unwrap_or(u32::MAX);
        let allowed = match envelope.kind {
            MediaKind::Data => {
                // Take from both buckets only when both allow it.
                me.data_messages.check(1, now.instant)
                    && me.data_bytes.check(len, now.instant)
                    && me.data_messages.try_take(1, now.instant)
                    && me.data_bytes.try_take(len, now.instant)
            }
            MediaKind::Audio | MediaKind::Video => me.media_bytes.try_take(len, now.instant),
        };
        if !allowed {
            let text = if envelope.kind == MediaKind::Data {
                if envelope.flags.contains(Flags::UNRELIABLE) {
                    "data rate exceeded; unreliable message dropped"
                } else {
                    "data rate exceeded; reliable message dropped"
                }
            } else {
                "media rate exceeded; frame dropped"
            };
            Self::feedback(
                &mut self.outputs,
                me,
                ErrorCode::RateLimited,
                text,
                now.instant,
            );
            return Err(DropReason::RateLimited);
        }
        self.receivers.clear();
        for (id, other) in &room.members {
            if *id != member_id
                && other.grants.subscribe
                && other.subscriptions.wants(member_id, envelope.track)
            {
                self.receivers.push(other.conn);
            }
        }
        Ok(&self.receivers)
    }

    /// A frame from `conn` was too large to receive at all (the driver stopped its stream);
    /// the sender hears `FrameTooLarge` (at most once a second).
    pub fn report_oversize(&mut self, conn: ConnId, now: Now) {
        let Some((key, member)) = self.membership(conn).map(|(k, m)| (k.clone(), m)) else {
            return;
        };
        let outputs = &mut self.outputs;
        if let Some(me) = self
            .rooms
            .get_mut(&key)
            .and_then(|r| r.members.get_mut(&member))
        {
            Self::feedback(
                outputs,
                me,
                ErrorCode::FrameTooLarge,
                "frame exceeds the size limit; stream stopped",
                now.instant,
            );
        }
    }

    /// The connection closed or was lost; its member (if any) leaves with `reason`.
    pub fn handle_disconnect(&mut self, conn: ConnId, reason: LeaveReason) {
        let Some(state) = self.conns.remove(&conn) else {
            return;
        };
        if let ConnPhase::Joined { room, member } = state.phase {
            self.remove_member(&room, member, reason);
        }
    }

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

    /// Remove `conn` with a typed reason: it is sent `Error{code}`, its member leaves (the
    /// others see the matching leave reason), and it is closed with `code`.
    pub fn remove_connection(&mut self, conn: ConnId, code: ErrorCode, message: &str) {
        let reason = match code {
            ErrorCode::Kicked => LeaveReason::Kicked,
            ErrorCode::Replaced => LeaveReason::Replaced,
            ErrorCode::RoomDismissed => LeaveReason::RoomDismissed,
            ErrorCode::TicketExpired => LeaveReason::TicketExpired,
            ErrorCode::ShuttingDown => LeaveReason::ShuttingDown,
            _ => LeaveReason::Removed,
        };
        self.remove_connection_with(conn, code, message, reason);
    }

    fn remove_connection_with(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        message: &str,
        reason: LeaveReason,
    ) {
        let Some(state) = self.conns.remove(&conn) else {
            return;
        };
        self.outputs.push_back(Output::Send {
            conn,
            message: ControlMessage::Error {
                code,
                message: message.to_owned(),
            },
        });
        if let ConnPhase::Joined { room, member } = state.phase {
            self.remove_member(&room, member, reason);
        }
        self.outputs.push_back(Output::Close {
            conn,
            code: Some(code),
        });
    }

    fn refuse(&mut self, conn: ConnId, code: ErrorCode, message: &str) {
        self.remove_connection(conn, code, message);
    }

    /// Remove a member by operator request; it hears `Kicked` with `reason` as the message,
    /// the others see it leave with reason kicked.
    ///
    /// # Errors
    /// [`AdminError`] when the room or the member does not exist.
    pub fn kick(
        &mut self,
        key: &RoomKey,
        target: &MemberTarget,
        reason: &str,
    ) -> Result<MemberId, AdminError> {
        let room = self.rooms.get(key).ok_or(AdminError::UnknownRoom)?;
        let member = match target {
            MemberTarget::Member(id) => room.members.contains_key(id).then_some(*id),
            MemberTarget::User(user) => room.member_by_user(user),
        }
        .ok_or(AdminError::UnknownMember)?;
        let conn = room
            .members
            .get(&member)
            .map(|m| m.conn)
            .ok_or(AdminError::UnknownMember)?;
        self.remove_connection(conn, ErrorCode::Kicked, reason);
        Ok(member)
    }

    /// Close a room: every member hears `RoomDismissed` and is disconnected.
    ///
    /// # Errors
    /// [`AdminError::UnknownRoom`] when the room does not exist.
    pub fn dismiss(&mut self, key: &RoomKey, reason: &str) -> Result<usize, AdminError> {
        let room = self.rooms.get(key).ok_or(AdminError::UnknownRoom)?;
        let conns: Vec<ConnId> = room.members.values().map(|m| m.conn).collect();
        for conn in &conns {
            self.remove_connection(*conn, ErrorCode::RoomDismissed, reason);
        }
        Ok(conns.len())
    }

    /// Every room, sorted by app and room id.
    pub fn rooms(&self) -> Vec<RoomSummary> {
        let mut rooms: Vec<RoomSummary> = self
            .rooms
            .iter()
            .map(|(key, room)| RoomSummary {
                app: key.app.clone(),
                room: key.room.clone(),
                members: room.members.len(),
                created_unix_secs: room.created_unix_secs,
            })
            .collect();
        rooms.sort_by(|a, b| (&a.app, &a.room).cmp(&(&b.app, &b.room)));
        rooms
    }

    /// The members of a room, by member id; `None` when the room does not exist.
    pub fn members(&self, key: &RoomKey) -> Option<Vec<MemberSummary>> {
        let room = self.rooms.get(key)?;
        Some(
            room.members
                .iter()
                .map(|(id, m)| MemberSummary {
                    member: *id,
                    user: m.user.clone(),
                    conn: m.conn,
                    tracks: m.tracks.len(),
                    joined_unix_secs: m.joined_unix_secs,
                    ticket_exp: m.ticket_exp,
                })
                .collect(),
        )
    }

    /// Start draining: refuse new joins and tell every connection to go away (with
    /// [`ErrorCode::ShuttingDown`], so clients reconnect, possibly elsewhere). Connections
    /// stay until they leave or the driver closes them.
    pub fn begin_drain(&mut self) {
        self.draining = true;
        let mut conns: Vec<ConnId> = self
            .conns
            .iter_mut()
            .filter(|(_, c)| !c.told_to_go)
            .map(|(id, c)| {
                c.told_to_go = true;
                *id
            })
            .collect();
        conns.sort_unstable();
        for conn in conns {
            self.outputs.push_back(Output::Send {
                conn,
                message: ControlMessage::GoAway {
                    code: ErrorCode::ShuttingDown,
                    reconnect_after_ms: GO_AWAY_RECONNECT_MS,
                },
            });
        }
    }

    /// Remove every connection with `ShuttingDown` (the end of a drain).
    pub fn close_all(&mut self) {
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort_unstable();
        for conn in conns {
            self.remove_connection(conn, ErrorCode::ShuttingDown, "the relay is shutting down");
        }
    }

    fn remove_member(&mut self, key: &RoomKey, member: MemberId, reason: LeaveReason) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        Self::detach(&mut self.outputs, room, member, reason);
        if room.members.is_empty() {
            self.rooms.remove(key);
            if let Some(app) = self.apps.get_mut(&key.app) {
                app.rooms = app.rooms.saturating_sub(1);
            }
        }
    }

    /// Take `member` out of `room` and tell the others why.
    fn detach(
        outputs: &mut VecDeque<Output>,
        room: &mut Room,
        member: MemberId,
        reason: LeaveReason,
    ) {
        if room.members.remove(&member).is_none() {
            return;
        }
        for other in room.members.values_mut() {
            other.subscriptions.forget_member(member);
            outputs.push_back(Output::Send {
                conn: other.conn,
                message: ControlMessage::MemberLeft { member, reason },
            });
        }
    }

    fn broadcast(
        outputs: &mut VecDeque<Output>,
        room: &Room,
        from: MemberId,
        message: &ControlMessage,
    ) {
        for (id, other) in &room.members {
            if *id != from {
                outputs.push_back(Output::Send {
                    conn: other.conn,
                    message: message.clone(),
                });
            }
        }
    }

    /// Queue an `Error` warning to a member, at most once a second per code.
    fn feedback(
        outputs: &mut VecDeque<Output>,
        member: &mut Member,
        code: ErrorCode,
        message: &str,
        now: Instant,
    ) {
        let Some(last) = member.feedback.get_mut(code.index()) else {
            return;
        };
        if last.is_some_and(|at| now.saturating_duration_since(at) < FEEDBACK_INTERVAL) {
            return;
        }
        *last = Some(now);
        outputs.push_back(Output::Send {
            conn: member.conn,
            message: ControlMessage::Error {
                code,
                message: message.to_owned(),
            },
        });
    }
}

fn verify_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadSignature => "the ticket signature does not verify",
        ErrorCode::Expired => "the ticket has expired",
        ErrorCode::NotYetValid => "the ticket is not valid yet",
        ErrorCode::UnknownApp => "the ticket names an app this relay does not serve",
        _ => "the ticket is malformed",
    }
}

#[cfg(test)]
mod tests {
    use sealroom_frame::envelope::Flags;

    use super::*;
    use crate::ticket::mint;

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
            let (_, outcome) =
                h.join_with("app", &format!("u{i}"), &format!("r{i}"), Grants::all());
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
}
