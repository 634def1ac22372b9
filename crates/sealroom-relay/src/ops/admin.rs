//! The admin API of the internal listener: list rooms and members, remove a user, dismiss a
//! room. Every request carries `Authorization: Bearer <admin token>`; a missing or wrong
//! token gets 401, and with no token configured the admin API refuses everything.
//!
//! | method and path | answer |
//! | --- | --- |
//! | `GET /admin/rooms` | `{"rooms": [{"app", "room", "members", "recorders", "created_unix_secs"}]}` |
//! | `GET /admin/apps/{app}/rooms/{room}` | `{"app", "room", "members": [{"member", "user", "user_token", "tracks", "recorder", "joined_unix_secs", "ticket_exp", "quality"}]}` |
//! | `DELETE /admin/apps/{app}/rooms/{room}/members/{user}` | `{"removed": member id}`; the member gets `Kicked` |
//! | `DELETE /admin/apps/{app}/rooms/{room}` | `{"dismissed": n}`; every member gets `RoomDismissed` |
//! | `GET /admin/cluster` | `{"node", "directory", "nodes", "links", "rooms_from", "rooms"}` ([`ClusterView`](crate::cluster::ClusterView)); 404 on a node that is not in a cluster |
//!
//! A member's `quality` is its connection as the relay sees it
//! ([`ConnectionQuality`](crate::quality::ConnectionQuality)); `user_token` is the masked
//! form of its user id that the node's log lines carry, so that a member seen here can be
//! followed through the log.
//!
//! Unknown rooms (and unknown users in a known room) get 404. The answers carry user ids in
//! clear: an operator needs them to act, and the API is authenticated and on the internal
//! listener. The log lines the API writes mask them like every other log line.
//!
//! The handlers talk to the relay through [`AdminTarget`], so they can be tested without a
//! network and the relay's room table stays the relay's business.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use subtle::ConstantTimeEq;

use sealroom_frame::envelope::MemberId;

use crate::engine::{AdminError, MemberSummary, MemberTarget, RoomKey, RoomSummary};
use crate::http::InternalState;
use crate::listener::Peer;
use crate::quality::ConnectionQuality;
use crate::ratelimit::KeyedLimiter;

/// What the admin API needs from a relay. [`crate::Relay`] implements it; tests use fakes.
pub trait AdminTarget: Send + Sync + 'static {
    /// Every room with its member count.
    fn rooms(&self) -> Vec<RoomSummary>;
    /// The members of one room; `None` when the room does not exist.
    fn members(&self, room: &RoomKey) -> Option<Vec<MemberSummary>>;
    /// Remove a user from a room: the member hears `Kicked`, the others see it leave.
    /// Returns the member id it had.
    ///
    /// # Errors
    /// [`AdminError`] when the room or the user is not there.
    fn kick_user(&self, room: &RoomKey, user: &str) -> Result<MemberId, AdminError>;
    /// Dismiss a room: every member hears `RoomDismissed`. Returns how many were told.
    ///
    /// # Errors
    /// [`AdminError::UnknownRoom`] when the room does not exist.
    fn dismiss_room(&self, room: &RoomKey) -> Result<usize, AdminError>;
    /// Append the relay's metrics in the OpenMetrics text format.
    fn encode_metrics(&self, out: &mut String) -> std::fmt::Result;
    /// The connection quality of each member of a room, by member id (none by default).
    fn member_quality(&self, room: &RoomKey) -> Vec<(MemberId, ConnectionQuality)> {
        let _ = room;
        Vec::new()
    }
}

#[derive(Serialize)]
struct Rooms {
    rooms: Vec<RoomSummary>,
}

#[derive(Serialize)]
struct Members<'a> {
    app: &'a str,
    room: &'a str,
    members: Vec<MemberView>,
}

/// A member as the room view shows it.
#[derive(Serialize)]
struct MemberView {
    #[serde(flatten)]
    summary: MemberSummary,
    /// The masked user id, as log lines carry it.
    user_token: String,
    /// Its connection's quality, when the relay has its connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    quality: Option<ConnectionQuality>,
}

#[derive(Serialize)]
struct Problem {
    error: &'static str,
}

fn problem(status: StatusCode, error: &'static str) -> Response {
    (status, Json(Problem { error })).into_response()
}

/// Failed admin attempts one source address may make per second, and their burst; past
/// them every admin request from the address gets 429 without its token being looked at.
const AUTH_FAILURES_PER_SEC: u32 = 1;
const AUTH_FAILURES_BURST: u32 = 10;
/// Source addresses whose failures are remembered at once.
const AUTH_FAILURE_ENTRIES: usize = 4096;

/// Throttling of failed admin attempts per source address, and of the log line they write.
#[derive(Debug)]
pub(crate) struct AuthThrottle {
    failures: Mutex<KeyedLimiter<IpAddr>>,
    /// Second (since the throttle started) of the last warning, and failures since.
    log: Mutex<(Option<u64>, u64)>,
    started: Instant,
}

impl AuthThrottle {
    pub(crate) fn new() -> Self {
        Self {
            failures: Mutex::new(KeyedLimiter::new(
                AUTH_FAILURES_PER_SEC,
                AUTH_FAILURES_BURST,
                AUTH_FAILURE_ENTRIES,
            )),
            log: Mutex::new((None, 0)),
            started: Instant::now(),
        }
    }

    /// Whether `source` may try (it has failures left).
    fn may_try(&self, source: IpAddr) -> bool {
        lock(&self.failures).check(&source, Instant::now())
    }

    /// `source` failed: take one of its failures, and warn at most once a second.
    fn failed(&self, source: IpAddr) {
        let _ = lock(&self.failures).try_take(source, Instant::now());
        let second = self.started.elapsed().as_secs();
        let mut log = lock(&self.log);
        log.1 += 1;
        if log.0 != Some(second) {
            tracing::warn!(
                failures = log.1,
                "admin request refused: missing or wrong token (failures since the last \
                 such line)"
            );
            *log = (Some(second), 0);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Check the bearer token in constant time, whatever its length: both sides are hashed
/// and the digests compared with `subtle`. The token must follow `Bearer ` exactly, with
/// nothing around it.
fn authorized(state: &InternalState, headers: &HeaderMap) -> bool {
    let Some(expected) = state.admin_token() else {
        return false;
    };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let digest =
        |text: &str| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    let (a, b) = (digest(expected), digest(given));
    bool::from(a.as_ref().ct_eq(b.as_ref()))
}

/// Where a request came from (unspecified when the router runs outside the listener).
fn source(peer: Option<&Extension<Peer>>) -> IpAddr {
    peer.map_or(IpAddr::from([0u8; 4]), |p| p.0.0.ip())
}

fn throttled() -> Response {
    let mut response = problem(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed admin attempts from this address; wait and retry with the right token",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    response
}

fn unauthorized() -> Response {
    let mut response = problem(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"sealroom-admin\""),
    );
    response
}

macro_rules! require_admin {
    ($state:expr, $headers:expr, $peer:expr) => {
        let from = source($peer.as_ref());
        if !$state.throttle().may_try(from) {
            return throttled();
        }
        if !authorized(&$state, &$headers) {
            $state.throttle().failed(from);
            return unauthorized();
        }
    };
}

pub(crate) async fn list_rooms(
    State(state): State<Arc<InternalState>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> Response {
    require_admin!(state, headers, peer);
    Json(Rooms {
        rooms: state.target().rooms(),
    })
    .into_response()
}

pub(crate) async fn list_members(
    State(state): State<Arc<InternalState>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Path((app, room)): Path<(String, String)>,
) -> Response {
    require_admin!(state, headers, peer);
    let key = RoomKey::new(app.as_str(), room.as_str());
    match state.target().members(&key) {
        Some(mut members) => {
            members.sort_by_key(|m| m.member);
            let mut quality: std::collections::HashMap<MemberId, ConnectionQuality> =
                state.target().member_quality(&key).into_iter().collect();
            let mask = state.mask();
            let members = members
                .into_iter()
                .map(|summary| MemberView {
                    user_token: mask.user(&summary.user).to_string(),
                    quality: quality.remove(&summary.member),
                    summary,
                })
                .collect();
            Json(Members {
                app: &app,
                room: &room,
                members,
            })
            .into_response()
        }
        None => problem(StatusCode::NOT_FOUND, "unknown room"),
    }
}

pub(crate) async fn remove_member(
    State(state): State<Arc<InternalState>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Path((app, room, user)): Path<(String, String, String)>,
) -> Response {
    require_admin!(state, headers, peer);
    let mask = state.mask();
    match state
        .target()
        .kick_user(&RoomKey::new(app.as_str(), room.as_str()), &user)
    {
        Ok(member) => {
            tracing::info!(
                app = %app,
                room = %mask.room(&room),
                user = %mask.user(&user),
                member,
                "admin removed a user"
            );
            Json(serde_json::json!({ "removed": member })).into_response()
        }
        Err(AdminError::UnknownRoom) => problem(StatusCode::NOT_FOUND, "unknown room"),
        Err(AdminError::UnknownMember) => problem(StatusCode::NOT_FOUND, "unknown user"),
    }
}

pub(crate) async fn dismiss_room(
    State(state): State<Arc<InternalState>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Path((app, room)): Path<(String, String)>,
) -> Response {
    require_admin!(state, headers, peer);
    match state
        .target()
        .dismiss_room(&RoomKey::new(app.as_str(), room.as_str()))
    {
        Ok(dismissed) => {
            tracing::info!(
                app = %app,
                room = %state.mask().room(&room),
                dismissed,
                "admin dismissed a room"
            );
            Json(serde_json::json!({ "dismissed": dismissed })).into_response()
        }
        Err(_) => problem(StatusCode::NOT_FOUND, "unknown room"),
    }
}

pub(crate) async fn cluster_view(
    State(state): State<Arc<InternalState>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> Response {
    require_admin!(state, headers, peer);
    match state.cluster() {
        Some(cluster) => Json(cluster.view().await).into_response(),
        None => problem(
            StatusCode::NOT_FOUND,
            "this node is not in a cluster (start it with cluster settings to see one)",
        ),
    }
}

/// The message a removed member hears with `Kicked`.
const KICK_MESSAGE: &str = "removed by an operator";
/// The message every member of a dismissed room hears with `RoomDismissed`.
const DISMISS_MESSAGE: &str = "the room was dismissed by an operator";

impl AdminTarget for crate::relay::Relay {
    fn rooms(&self) -> Vec<RoomSummary> {
        Self::rooms(self)
    }

    fn members(&self, room: &RoomKey) -> Option<Vec<MemberSummary>> {
        Self::members(self, room)
    }

    fn kick_user(&self, room: &RoomKey, user: &str) -> Result<MemberId, AdminError> {
        self.kick(room, &MemberTarget::User(user.to_owned()), KICK_MESSAGE)
    }

    fn dismiss_room(&self, room: &RoomKey) -> Result<usize, AdminError> {
        self.dismiss(room, DISMISS_MESSAGE)
    }

    fn encode_metrics(&self, out: &mut String) -> std::fmt::Result {
        out.push_str(&Self::encode_metrics(self));
        Ok(())
    }

    fn member_quality(&self, room: &RoomKey) -> Vec<(MemberId, ConnectionQuality)> {
        Self::member_quality(self, room).unwrap_or_default()
    }
}
