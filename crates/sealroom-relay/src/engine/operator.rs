//! Operator actions: kick, dismiss, drain, and the summaries an admin API shows.

use sealroom_frame::control::{ControlMessage, ErrorCode};
use sealroom_frame::envelope::MemberId;

use super::room::GO_AWAY_RECONNECT_MS;
use super::{ConnId, Output, RelayCore, RoomKey};

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
    /// Members present (recorders included).
    pub members: usize,
    /// Of those, recorders (members joined with the `record` grant).
    pub recorders: usize,
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
    /// Whether the member is a recorder: it receives every track and publishes nothing.
    pub recorder: bool,
    /// When the member joined, seconds since the Unix epoch.
    pub joined_unix_secs: u64,
    /// When the member's ticket expires, seconds since the Unix epoch.
    pub ticket_exp: u64,
}

impl RelayCore {
    /// Remove a member by operator request; it hears `Kicked` with `reason` as the message,
    /// the others see it leave with reason kicked. With the cascade on, a member of the
    /// room on another node is removed by its node (asked over the link).
    ///
    /// # Errors
    /// [`AdminError`] when the room or the member does not exist (here, or behind a link).
    pub fn kick(
        &mut self,
        key: &RoomKey,
        target: &MemberTarget,
        reason: &str,
    ) -> Result<MemberId, AdminError> {
        let Some(room) = self.rooms.get(key) else {
            return self.kick_remote(key, target, reason, false);
        };
        let member = match target {
            MemberTarget::Member(id) => room.members.contains_key(id).then_some(*id),
            MemberTarget::User(user) => room.member_by_user(user),
        };
        let Some((member, conn)) =
            member.and_then(|id| room.members.get(&id).map(|m| (id, m.conn)))
        else {
            return self.kick_remote(key, target, reason, true);
        };
        self.remove_connection(conn, ErrorCode::Kicked, reason);
        Ok(member)
    }

    /// Close a room: every member hears `RoomDismissed` and is disconnected; with the
    /// cascade on, the nodes with members of the room are asked to do the same. Returns
    /// how many members there were (here and behind links).
    ///
    /// # Errors
    /// [`AdminError::UnknownRoom`] when the room does not exist (here, or behind a link).
    pub fn dismiss(&mut self, key: &RoomKey, reason: &str) -> Result<usize, AdminError> {
        let local = self.dismiss_here(key, reason);
        let remote = self.dismiss_remote(key, reason);
        match local {
            None if remote == 0 => Err(AdminError::UnknownRoom),
            local => Ok(local.unwrap_or(0) + remote),
        }
    }

    /// Remove this node's members of `key`, each hearing `RoomDismissed` with `reason`;
    /// how many (`None`: the room has none here).
    pub(super) fn dismiss_here(&mut self, key: &RoomKey, reason: &str) -> Option<usize> {
        let conns: Vec<ConnId> = self
            .rooms
            .get(key)?
            .members
            .values()
            .map(|m| m.conn)
            .collect();
        for conn in &conns {
            self.remove_connection(*conn, ErrorCode::RoomDismissed, reason);
        }
        Some(conns.len())
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
                recorders: room.members.values().filter(|m| m.recorder).count(),
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
                    recorder: m.recorder,
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
        if !self.draining {
            self.mls_withdraw_all();
        }
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
}
