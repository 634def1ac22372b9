//! The admin API of the internal listener: list rooms and members, remove a user, dismiss a
//! room. Every request carries `Authorization: Bearer <admin token>`; a missing or wrong
//! token gets 401, and with no token configured the admin API refuses everything.
//!
//! | method and path | answer |
//! | --- | --- |
//! | `GET /admin/rooms` | `{"rooms": [{"app", "room", "members", "created_unix_secs"}]}` |
//! | `GET /admin/apps/{app}/rooms/{room}` | `{"app", "room", "members": [{"member", "user", "tracks", "joined_unix_secs", "ticket_exp"}]}` |
//! | `DELETE /admin/apps/{app}/rooms/{room}/members/{user}` | `{"removed": member id}`; the member gets `Kicked` |
//! | `DELETE /admin/apps/{app}/rooms/{room}` | `{"dismissed": n}`; every member gets `RoomDismissed` |
//!
//! Unknown rooms (and unknown users in a known room) get 404. The answers carry user ids in
//! clear: an operator needs them to act, and the API is authenticated and on the internal
//! listener. The log lines the API writes mask them like every other log line.
//!
//! The handlers talk to the relay through [`AdminTarget`], so they can be tested without a
//! network and the relay's room table stays the relay's business.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use sealroom_frame::envelope::MemberId;

use crate::core::{AdminError, MemberSummary, MemberTarget, RoomKey, RoomSummary};
use crate::http::InternalState;

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
}

#[derive(Serialize)]
struct Rooms {
    rooms: Vec<RoomSummary>,
}

#[derive(Serialize)]
struct Members<'a> {
    app: &'a str,
    room: &'a str,
    members: Vec<MemberSummary>,
}

#[derive(Serialize)]
struct Problem {
    error: &'static str,
}

fn problem(status: StatusCode, error: &'static str) -> Response {
    (status, Json(Problem { error })).into_response()
}

/// Check the bearer token in constant time (for equal lengths).
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
    let (a, b) = (expected.as_bytes(), given.trim().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    ($state:expr, $headers:expr) => {
        if !authorized(&$state, &$headers) {
            tracing::warn!("admin request refused: missing or wrong token");
            return unauthorized();
        }
    };
}

pub(crate) async fn list_rooms(
    State(state): State<Arc<InternalState>>,
    headers: HeaderMap,
) -> Response {
    require_admin!(state, headers);
    Json(Rooms {
        rooms: state.target().rooms(),
    })
    .into_response()
}

pub(crate) async fn list_members(
    State(state): State<Arc<InternalState>>,
    headers: HeaderMap,
    Path((app, room)): Path<(String, String)>,
) -> Response {
    require_admin!(state, headers);
    match state
        .target()
        .members(&RoomKey::new(app.as_str(), room.as_str()))
    {
        Some(mut members) => {
            members.sort_by_key(|m| m.member);
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
    headers: HeaderMap,
    Path((app, room, user)): Path<(String, String, String)>,
) -> Response {
    require_admin!(state, headers);
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
    headers: HeaderMap,
    Path((app, room)): Path<(String, String)>,
) -> Response {
    require_admin!(state, headers);
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
}
