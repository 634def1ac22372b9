//! Admission: a ticket and the join limits decide who enters which room.

use std::collections::BTreeMap;

use sealroom_frame::control::{ControlMessage, ErrorCode, JoinOptions, LeaveReason, SessionLimits};
use sealroom_frame::envelope::MemberId;

use super::cascade::MlsHome;
use super::room::{ConnPhase, Member, Room};
use super::timers::{Deadline, Timer};
use super::{ConnId, JoinOutcome, Now, Output, RelayCore, RoomKey};
use crate::gate::source_key;
use crate::ratelimit::Keyed;
use crate::ticket::{TicketClaims, TicketVerifier, VerifyError};

/// Why a join is refused: the code and a message for the client.
type Refusal = (ErrorCode, &'static str);

/// A ticket checked against the apps' secrets at a given time: the costly part of a join
/// (an HMAC), done before the core is involved.
#[derive(Debug, Clone)]
pub struct VerifiedTicket(pub(super) Result<TicketClaims, VerifyError>);

impl VerifiedTicket {
    /// Verify `ticket` with `verifier` (from [`RelayCore::verifier`]) at `unix_secs`.
    pub fn new(verifier: &TicketVerifier, ticket: &str, unix_secs: u64) -> Self {
        Self(verifier.verify(ticket, unix_secs))
    }
}

/// A control message with the ticket it carries (`Join`, `RefreshTicket`) already verified,
/// for [`RelayCore::handle_control_checked`].
#[derive(Debug, Clone)]
pub struct CheckedControl {
    pub(super) message: ControlMessage,
    pub(super) ticket: Option<VerifiedTicket>,
}

impl CheckedControl {
    /// Verify the ticket `message` carries, if any, at `unix_secs`. Costs an HMAC for a
    /// `Join` or a `RefreshTicket`; needs no access to the core.
    pub fn check(verifier: &TicketVerifier, message: ControlMessage, unix_secs: u64) -> Self {
        let ticket = match &message {
            ControlMessage::Join { ticket, .. } | ControlMessage::RefreshTicket { ticket } => {
                Some(VerifiedTicket::new(verifier, ticket, unix_secs))
            }
            _ => None,
        };
        Self { message, ticket }
    }

    /// The message.
    pub fn message(&self) -> &ControlMessage {
        &self.message
    }
}

impl RelayCore {
    /// Whether a ticket expiring at `exp` lives longer than `max_ticket_lifetime_secs`
    /// from now.
    pub(super) fn lifetime_too_long(&self, exp: u64, now: Now) -> bool {
        let max = self.limits.max_ticket_lifetime_secs;
        max > 0
            && exp.saturating_sub(now.unix_secs)
                > max.saturating_add(self.limits.ticket_leeway_secs)
    }

    /// Admit `conn` with `ticket`, or refuse it. The outcome is also queued as outputs:
    /// `Joined` and `MemberJoined` messages, or an `Error` and a `Close`.
    ///
    /// Verifies the ticket on the way, which costs an HMAC; a driver with a lock around the
    /// core verifies first and calls [`RelayCore::handle_join_verified`].
    pub fn handle_join(
        &mut self,
        conn: ConnId,
        ticket: &str,
        options: &JoinOptions,
        now: Now,
    ) -> JoinOutcome {
        let ticket = VerifiedTicket::new(&self.verifier, ticket, now.unix_secs);
        self.handle_join_verified(conn, ticket, options, now)
    }

    /// Like [`RelayCore::handle_join`], with the ticket verified by the driver.
    pub fn handle_join_verified(
        &mut self,
        conn: ConnId,
        ticket: VerifiedTicket,
        options: &JoinOptions,
        now: Now,
    ) -> JoinOutcome {
        match self.admit(conn, ticket, options, now) {
            Ok(true) => JoinOutcome::Joined,
            Ok(false) => JoinOutcome::Redirected,
            Err((code, message)) => {
                self.refuse(conn, code, message);
                JoinOutcome::Refused(code)
            }
        }
    }

    /// The admission steps, in order; each refuses with a code and a message for the
    /// client. The per-address limit comes before anything the ticket says, so one address
    /// cannot spend the app's budget. `Ok(false)`: a valid join sent to another node of the
    /// cluster ([`RelayCore::set_redirect`]).
    pub(super) fn admit(
        &mut self,
        conn: ConnId,
        ticket: VerifiedTicket,
        options: &JoinOptions,
        now: Now,
    ) -> Result<bool, Refusal> {
        self.check_joinable(conn)?;
        self.take_address_join(conn, now)?;
        let claims = self.check_claims(ticket, options, now)?;
        let key = RoomKey::new(claims.app.clone(), claims.room.clone());
        // An MLS room lives where its group is (here too: the loads do not send its joins
        // away); every other room goes where the loads say.
        let target = match self.mls_home(&key) {
            MlsHome::Here => None,
            MlsHome::At(address) => Some(address),
            MlsHome::Nowhere => self.redirect_target(),
        };
        if let Some(address) = target {
            self.redirect(conn, address);
            return Ok(false);
        }
        self.take_user_and_app_join(&claims, now)?;
        let replaced = self.check_room_capacity(&key, &claims.user)?;
        if let Some(old) = replaced {
            self.replace(&key, old);
        }
        self.enter(conn, key, claims, options, now);
        Ok(true)
    }

    /// The connection waits for `Join`, and the node takes joins.
    fn check_joinable(&self, conn: ConnId) -> Result<(), Refusal> {
        match self.conns.get(&conn).map(|c| &c.phase) {
            Some(ConnPhase::Connected) => {}
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
        Ok(())
    }

    /// One join attempt from the connection's source address (IPv4 address, IPv6 /64).
    fn take_address_join(&mut self, conn: ConnId, now: Now) -> Result<(), Refusal> {
        let Some(source) = self.conns.get(&conn).and_then(|c| c.source) else {
            return Ok(());
        };
        match self.address_joins.try_take(source_key(source), now.instant) {
            Keyed::Allowed => Ok(()),
            Keyed::Limited => Err((
                ErrorCode::RateLimited,
                "too many joins from this address; retry in a few seconds",
            )),
            Keyed::Full => Err((
                ErrorCode::Overloaded,
                "the relay is tracking too many joining addresses; retry later",
            )),
        }
    }

    /// The ticket verified, and its claims within this relay's bounds and for the room the
    /// client asked for.
    fn check_claims(
        &self,
        ticket: VerifiedTicket,
        options: &JoinOptions,
        now: Now,
    ) -> Result<TicketClaims, Refusal> {
        let claims = ticket
            .0
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
        Ok(claims)
    }

    /// One join attempt of the user, then one of the app's budget. Per user first: one
    /// ticket holder joining over and over is refused on its own account, and other users
    /// keep joining.
    fn take_user_and_app_join(&mut self, claims: &TicketClaims, now: Now) -> Result<(), Refusal> {
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
        Ok(())
    }

    /// Room for one more member (or an existing room, or room for one more room of the
    /// app); returns the member a newer session of the same user replaces.
    fn check_room_capacity(&self, key: &RoomKey, user: &str) -> Result<Option<MemberId>, Refusal> {
        let replaced = self
            .rooms
            .get(key)
            .and_then(|room| room.member_by_user(user));
        match self.rooms.get(key) {
            Some(room) => {
                if replaced.is_none() && room.members.len() >= self.limits.max_members_per_room {
                    return Err((ErrorCode::RoomFull, "the room is full"));
                }
            }
            None => {
                let rooms = self.apps.get(&key.app).map_or(0, |app| app.rooms);
                if rooms >= self.limits.max_rooms_per_app {
                    return Err((ErrorCode::TooManyRooms, "the app has too many rooms"));
                }
            }
        }
        Ok(replaced)
    }

    pub(super) fn replace(&mut self, key: &RoomKey, old: MemberId) {
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
        if let Some(cascade) = self.cascade.as_mut() {
            cascade.local_left(key, old, LeaveReason::Replaced);
        }
        self.forget_conn(old_conn);
        self.outputs.push_back(Output::Close {
            conn: old_conn,
            code: Some(ErrorCode::Replaced),
        });
    }

    pub(super) fn enter(
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
                    mls: None,
                })
            }
        };
        let id = match self.cascade.as_mut() {
            Some(cascade) => cascade.allocate(),
            None => room.allocate_member_id(),
        };
        let (roster, mut rest) = room.roster();
        if let Some(cascade) = self.cascade.as_ref() {
            // Members on other nodes follow the roster as `MemberJoined` messages.
            rest.extend(cascade.roster(&key));
        }
        let member = Member::new(
            conn,
            claims.user,
            claims.grants,
            claims.exp,
            options,
            &limits,
            now,
        );
        let info = member.info(id);
        let newcomer_records = member.recorder;
        for other in room.members.values() {
            self.outputs.push_back(Output::Send {
                conn: other.conn,
                message: ControlMessage::MemberJoined(info.clone()),
            });
            if newcomer_records {
                self.outputs.push_back(Output::Send {
                    conn: other.conn,
                    message: ControlMessage::RecorderPresent { member: id },
                });
            }
        }
        let mut recorders: Vec<MemberId> = room
            .members
            .iter()
            .filter_map(|(other, m)| m.recorder.then_some(*other))
            .collect();
        if let Some(cascade) = self.cascade.as_ref() {
            recorders.extend(cascade.recorders(&key));
        }
        let ticket_expires_in_secs = claims
            .exp
            .saturating_add(limits.ticket_leeway_secs)
            .saturating_sub(now.unix_secs);
        room.members.insert(id, member);
        if let (Some(cascade), Some(member)) = (self.cascade.as_mut(), room.members.get(&id)) {
            cascade.local_joined(&key, id, member);
        }
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
        // Once the whole roster is known, which of its members record.
        for member in recorders {
            self.outputs.push_back(Output::Send {
                conn,
                message: ControlMessage::RecorderPresent { member },
            });
        }
        if let Some(state) = self.conns.get_mut(&conn) {
            state.phase = ConnPhase::Joined {
                room: key,
                member: id,
            };
        }
        let expiry = claims.exp.saturating_add(limits.ticket_leeway_secs);
        self.timers.stop(conn, Timer::JoinDeadline);
        self.timers
            .set(conn, Timer::TicketExpiry, Deadline::UnixSecs(expiry), now);
    }
}

pub(super) fn verify_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadSignature => "the ticket signature does not verify",
        ErrorCode::Expired => "the ticket has expired",
        ErrorCode::NotYetValid => "the ticket is not valid yet",
        ErrorCode::UnknownApp => "the ticket names an app this relay does not serve",
        _ => "the ticket is malformed",
    }
}
