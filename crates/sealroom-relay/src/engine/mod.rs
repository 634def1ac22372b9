//! The relay's decisions, with no sockets and no clock: admission, rooms, membership,
//! subscriptions, forwarding, limits and timers.
//!
//! [`RelayCore`] follows quinn-proto's pattern: the driver (the quinn/tokio layer, a test or
//! a bench) feeds it inputs named `handle_*` with the time as an argument, and takes its
//! outputs from `poll_*` methods; see the struct's documentation for the order. Connections
//! are named by [`ConnId`]s the driver picks. A connection enters a room with a ticket; the
//! room, keyed by (app, room id), is created by its first member and removed with its last.
//! Member ids are assigned per room, counting up from 1, and not reused while the room
//! exists.
//!
//! The module tree, one concern per file:
//!
//! - `outcome`: what the core answers ([`Output`], the `*Outcome` types, [`DropReason`],
//!   [`Violation`]) and their stable labels;
//! - `room`: rooms, members, their subscriptions and the connections' phases;
//! - `admission`: joins, from the verified ticket ([`VerifiedTicket`]) through the join
//!   limits to entering the room;
//! - `control`: members' control messages (publishing, subscriptions, keyframe requests,
//!   ticket refresh);
//! - `forward`: [`RelayCore::handle_frame`], the hot path, in named steps;
//! - `mls`: the room's MLS delivery service (group state, commit order), bytes only;
//! - `operator`: kick, dismiss, drain and the summaries an admin API shows;
//! - `timers`: the timer table behind [`RelayCore::poll_timeout`] and
//!   [`RelayCore::handle_timeout`].

mod admission;
mod cascade;
mod control;
mod forward;
mod mls;
mod operator;
mod outcome;
mod room;
#[cfg(test)]
mod tests;
mod timers;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealroom_frame::control::{ControlMessage, ErrorCode, LeaveReason};
use sealroom_frame::envelope::MemberId;

use crate::config::{AppConfig, Limits};
use crate::ratelimit::{KeyedLimiter, TokenBucket};
use crate::ticket::TicketVerifier;

use cascade::Cascade;
use room::{AppState, Conn, ConnPhase, FEEDBACK_INTERVAL, Member, Room};
use timers::{Deadline, Timer, TimerTable};

pub use admission::{CheckedControl, VerifiedTicket};
pub use cascade::{
    CascadeError, CascadeEvent, LinkCounters, LinkTarget, MAX_NODE_INDEX, MAX_OPERATOR_REASON,
    MAX_RELAY_ADDRESS, MEMBER_ID_NODE_SHIFT,
};
pub use mls::MlsOutcome;
pub use operator::{AdminError, MemberSummary, MemberTarget, RoomSummary};
pub use outcome::{
    ControlOutcome, DropReason, JoinOutcome, KeyframeOutcome, Output, TimeoutOutcome, Violation,
};

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
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
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

/// The relay's state and decisions, free of I/O and clocks.
///
/// Its methods come in families, as quinn-proto's `Connection`'s do:
///
/// - **inputs**, `handle_*`, each with the time it happened as a [`Now`]:
///   [`handle_connect_from`](Self::handle_connect_from) when a connection arrives,
///   [`handle_control`](Self::handle_control) (or
///   [`handle_control_checked`](Self::handle_control_checked) with the ticket verified
///   beforehand) for each control message, [`handle_frame`](Self::handle_frame) for each
///   media frame (it answers at once with the receivers: the hot path),
///   [`handle_incoming_stream`](Self::handle_incoming_stream),
///   [`handle_bad_frame`](Self::handle_bad_frame),
///   [`handle_stale_group`](Self::handle_stale_group),
///   [`handle_violation`](Self::handle_violation),
///   [`handle_disconnect`](Self::handle_disconnect), and
///   [`handle_timeout`](Self::handle_timeout) when the deadline is reached;
/// - **outputs**, `poll_*`: [`poll_output`](Self::poll_output) (control messages to send,
///   connections to close, in order) and [`poll_timeout`](Self::poll_timeout) (when to call
///   `handle_timeout` next);
/// - **operator actions**: [`kick`](Self::kick), [`dismiss`](Self::dismiss),
///   [`begin_drain`](Self::begin_drain), [`close_all`](Self::close_all),
///   [`set_overloaded`](Self::set_overloaded);
/// - **getters**: [`rooms`](Self::rooms), [`members`](Self::members),
///   [`membership`](Self::membership), the counts, [`limits`](Self::limits) and
///   [`verifier`](Self::verifier).
///
/// A driver calls them in this order: feed an input (or fire the timers when
/// `poll_timeout`'s instant has passed); drain `poll_output` and carry out each output;
/// ask `poll_timeout` again, since any input may arm an earlier timer; sleep until the next
/// input or that instant. The clock is read by the driver only. Ticket verification (an
/// HMAC) needs no access to the core: a driver that shares the core behind a lock verifies
/// with [`verifier`](Self::verifier) first ([`CheckedControl::check`]).
pub struct RelayCore {
    limits: Limits,
    /// Shared with the driver, which verifies tickets before it takes its lock.
    verifier: Arc<TicketVerifier>,
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
    /// Join deadlines and ticket expiries.
    timers: TimerTable,
    /// Members behind links to other nodes (`None`: a node on its own).
    cascade: Option<Cascade>,
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
        let verifier = Arc::new(TicketVerifier::new(apps, limits.ticket_leeway_secs));
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
            timers: TimerTable::default(),
            address_joins: KeyedLimiter::new(
                limits.joins_per_address_per_sec,
                limits.joins_per_address_burst,
                limits.join_limiter_entries,
            ),
            cascade: None,
        }
    }

    /// Tell the core whether the node is over its memory ceiling; while it is, joins are
    /// refused with `Overloaded`.
    pub fn set_overloaded(&mut self, overloaded: bool) {
        self.overloaded = overloaded;
    }

    /// The ticket verifier (the apps' secrets). A driver that serves many connections
    /// verifies tickets with it before taking the lock around the core
    /// ([`CheckedControl::check`]), so a storm of joins does not hold up forwarding behind
    /// HMAC checks.
    pub fn verifier(&self) -> Arc<TicketVerifier> {
        Arc::clone(&self.verifier)
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
            ConnPhase::Connected => None,
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
    /// at it, each app's room count matches its rooms, each connection has the one timer of
    /// its phase.
    #[cfg(any(test, feature = "testing"))]
    pub fn invariant_violation(&self) -> Option<String> {
        if let Some(violation) = self.timer_violation() {
            return Some(violation);
        }
        let mut rooms_per_app: HashMap<&str, usize> = HashMap::new();
        for (key, room) in &self.rooms {
            *rooms_per_app.entry(key.app.as_str()).or_default() += 1;
            if room.members.is_empty() {
                return Some(format!("room {key:?} is empty"));
            }
            if room.members.len() > self.limits.max_members_per_room {
                return Some(format!("room {key:?} is over its member limit"));
            }
            let mut users = std::collections::HashSet::new();
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
        self.cascade_violation()
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
                phase: ConnPhase::Connected,
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
        let deadline = Deadline::At(now.instant + self.limits.join_timeout());
        self.timers.set(conn, Timer::JoinDeadline, deadline, now);
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

    /// The connection closed or was lost; its member (if any) leaves with `reason`.
    pub fn handle_disconnect(&mut self, conn: ConnId, reason: LeaveReason) {
        let Some(state) = self.forget_conn(conn) else {
            return;
        };
        if let ConnPhase::Joined { room, member } = state.phase {
            self.remove_member(&room, member, reason);
        }
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
        let Some(state) = self.forget_conn(conn) else {
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

    /// Forget `conn` and its timers.
    fn forget_conn(&mut self, conn: ConnId) -> Option<Conn> {
        self.timers.stop_all(conn);
        self.conns.remove(&conn)
    }

    fn refuse(&mut self, conn: ConnId, code: ErrorCode, message: &str) {
        self.remove_connection(conn, code, message);
    }

    fn remove_member(&mut self, key: &RoomKey, member: MemberId, reason: LeaveReason) {
        if let Some(cascade) = self.cascade.as_mut() {
            cascade.local_left(key, member, reason);
        }
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        Self::detach(&mut self.outputs, room, member, reason);
        if room.members.is_empty() {
            let had_group = self.rooms.remove(key).is_some_and(|r| r.mls.is_some());
            if let Some(app) = self.apps.get_mut(&key.app) {
                app.rooms = app.rooms.saturating_sub(1);
            }
            if had_group {
                self.mls_group_dropped(key);
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

    fn member_mut(&mut self, key: &RoomKey, member: MemberId) -> Option<&mut Member> {
        self.rooms.get_mut(key)?.members.get_mut(&member)
    }

    fn subscription_bound(&self) -> usize {
        self.limits
            .max_members_per_room
            .saturating_mul(self.limits.max_tracks_per_member)
    }
}
