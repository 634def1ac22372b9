//! Control messages of members: publishing, subscriptions, keyframe requests, ticket refresh.

use sealroom_frame::control::{ControlMessage, ErrorCode, LeaveReason, TrackInfo};
use sealroom_frame::envelope::{MediaKind, MemberId, TrackId};

use super::admission::verify_message;
use super::room::ConnPhase;
use super::timers::{Deadline, Timer};
use super::{
    CheckedControl, ConnId, ControlOutcome, KeyframeOutcome, Now, Output, RelayCore, RoomKey,
    VerifiedTicket, Violation,
};

impl RelayCore {
    /// A control message arrived from `conn`.
    ///
    /// Before `Join` only `Join` is accepted; a member may send anything a client sends
    /// except `Join`. Breaking either rule removes the connection with
    /// `ProtocolViolation` ([`ControlOutcome::Violation`]). A member's messages are rate
    /// limited (`control_messages_per_sec`, burst twice that).
    ///
    /// A ticket the message carries is verified on the way (an HMAC); a driver with a lock
    /// around the core verifies first and calls [`RelayCore::handle_control_checked`].
    pub fn handle_control(
        &mut self,
        conn: ConnId,
        message: ControlMessage,
        now: Now,
    ) -> ControlOutcome {
        let checked = CheckedControl::check(&self.verifier, message, now.unix_secs);
        self.handle_control_checked(conn, checked, now)
    }

    /// Like [`RelayCore::handle_control`], with the message's ticket verified by the
    /// driver ([`CheckedControl::check`]).
    pub fn handle_control_checked(
        &mut self,
        conn: ConnId,
        checked: CheckedControl,
        now: Now,
    ) -> ControlOutcome {
        let CheckedControl { message, ticket } = checked;
        // A checked `Join` or `RefreshTicket` always carries its verified ticket; verifying
        // here is the fallback that keeps this total.
        let verified = |core: &Self, ticket: Option<VerifiedTicket>, text: &str| {
            ticket.unwrap_or_else(|| VerifiedTicket::new(&core.verifier, text, now.unix_secs))
        };
        let Some(state) = self.conns.get(&conn) else {
            return ControlOutcome::Ignored;
        };
        let (room_key, member_id) = match &state.phase {
            ConnPhase::Connected => {
                if let ControlMessage::Join {
                    ticket: text,
                    options,
                    ..
                } = message
                {
                    let ticket = verified(self, ticket, &text);
                    return ControlOutcome::Join(
                        self.handle_join_verified(conn, ticket, &options, now),
                    );
                }
                self.handle_violation(conn, Violation::BeforeJoin);
                return ControlOutcome::Violation(Violation::BeforeJoin);
            }
            ConnPhase::Joined { room, member } => (room.clone(), *member),
        };
        if let Err(outcome) = self.admit_member_message(conn, &room_key, member_id, &message, now) {
            return outcome;
        }
        self.act_on_member_message(conn, room_key, member_id, message, ticket, now)
    }

    /// Whether a member may send `message` now: only what clients send, and within its
    /// control message rate. A refusal says what became of the message.
    fn admit_member_message(
        &mut self,
        conn: ConnId,
        room_key: &RoomKey,
        member_id: MemberId,
        message: &ControlMessage,
        now: Now,
    ) -> Result<(), ControlOutcome> {
        let violation = match message {
            ControlMessage::Join { .. } => Some(Violation::JoinTwice),
            ControlMessage::Joined { .. }
            | ControlMessage::MemberJoined(_)
            | ControlMessage::MemberLeft { .. }
            | ControlMessage::TicketRefreshed { .. }
            | ControlMessage::GoAway { .. }
            | ControlMessage::MlsState { .. }
            | ControlMessage::MlsCommitted { .. }
            | ControlMessage::MlsAccepted { .. }
            | ControlMessage::MlsRefused { .. }
            | ControlMessage::RecorderPresent { .. }
            | ControlMessage::Redirect { .. } => Some(Violation::RelayOnly),
            _ => None,
        };
        if let Some(violation) = violation {
            self.handle_violation(conn, violation);
            return Err(ControlOutcome::Violation(violation));
        }
        let outputs = &mut self.outputs;
        let Some(me) = self
            .rooms
            .get_mut(room_key)
            .and_then(|r| r.members.get_mut(&member_id))
        else {
            return Err(ControlOutcome::Ignored);
        };
        if !me.control_messages.try_take(1, now.instant) {
            Self::feedback(
                outputs,
                me,
                ErrorCode::RateLimited,
                "control message rate exceeded; message dropped",
                now.instant,
            );
            return Err(ControlOutcome::RateLimited);
        }
        Ok(())
    }

    /// Carry out a member's control message that passed [`Self::admit_member_message`].
    fn act_on_member_message(
        &mut self,
        conn: ConnId,
        room_key: RoomKey,
        member_id: MemberId,
        message: ControlMessage,
        ticket: Option<VerifiedTicket>,
        now: Now,
    ) -> ControlOutcome {
        let bound = self.subscription_bound();
        match message {
            ControlMessage::TrackPublished { track, .. } => {
                if !self.stale_data_publish(&room_key, member_id, track.track) {
                    self.publish_track(&room_key, member_id, track, now);
                }
            }
            ControlMessage::TrackUnpublished { track, .. } => {
                self.unpublish_track(&room_key, member_id, track);
            }
            // A recorder keeps receiving everything: its subscription requests change nothing.
            ControlMessage::Subscribe { member, track } => {
                if let Some(me) = self.member_mut(&room_key, member_id)
                    && !me.recorder
                {
                    me.subscriptions.set(member, track, true, bound);
                }
            }
            ControlMessage::Unsubscribe { member, track } => {
                if let Some(me) = self.member_mut(&room_key, member_id)
                    && !me.recorder
                {
                    me.subscriptions.set(member, track, false, bound);
                }
            }
            ControlMessage::KeyframeRequest { member, track } => {
                return ControlOutcome::Keyframe(
                    self.ask_for_keyframe(&room_key, member_id, member, track, now),
                );
            }
            ControlMessage::RefreshTicket { ticket: text } => {
                let ticket = ticket
                    .unwrap_or_else(|| VerifiedTicket::new(&self.verifier, &text, now.unix_secs));
                self.refresh_ticket(conn, &room_key, member_id, ticket, now);
            }
            ControlMessage::Leave => {
                self.remove_member(&room_key, member_id, LeaveReason::Left);
                self.forget_conn(conn);
                self.outputs.push_back(Output::Close { conn, code: None });
            }
            ControlMessage::Error { .. } => {
                // A client's warning; nothing to do.
            }
            message @ (ControlMessage::MlsSync
            | ControlMessage::MlsPublish { .. }
            | ControlMessage::MlsCommit { .. }
            | ControlMessage::MlsGroupInfoPart { .. }) => {
                return self
                    .handle_mls(&room_key, member_id, message)
                    .map_or(ControlOutcome::Ignored, ControlOutcome::Mls);
            }
            ControlMessage::Join { .. }
            | ControlMessage::Joined { .. }
            | ControlMessage::MemberJoined(_)
            | ControlMessage::MemberLeft { .. }
            | ControlMessage::TicketRefreshed { .. }
            | ControlMessage::GoAway { .. }
            | ControlMessage::MlsState { .. }
            | ControlMessage::MlsCommitted { .. }
            | ControlMessage::MlsAccepted { .. }
            | ControlMessage::MlsRefused { .. }
            | ControlMessage::RecorderPresent { .. }
            | ControlMessage::Redirect { .. } => {
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
            return self.link_stale_group(receiver, sender, track, now);
        };
        self.ask_for_keyframe(&key, requester, sender, track, now)
    }

    /// Pass a keyframe request from `requester` to `publisher`'s video `track`, at most one
    /// per publisher track every `keyframe_request_interval_ms`.
    pub(super) fn ask_for_keyframe(
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
            return self.ask_remote_for_keyframe(key, publisher, track, now);
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

    pub(super) fn refresh_ticket(
        &mut self,
        conn: ConnId,
        key: &RoomKey,
        member_id: MemberId,
        ticket: VerifiedTicket,
        now: Now,
    ) {
        let result = ticket.0;
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
            Ok(claims) if claims.grants.record != member.recorder => (
                ErrorCode::NotPermitted,
                "a fresh ticket cannot make a member a recorder or stop it being one; rejoin",
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
                let expiry = claims.exp.saturating_add(self.limits.ticket_leeway_secs);
                let deadline = Deadline::UnixSecs(expiry);
                self.timers.set(conn, Timer::TicketExpiry, deadline, now);
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

    pub(super) fn publish_track(
        &mut self,
        key: &RoomKey,
        member_id: MemberId,
        track: TrackInfo,
        now: Now,
    ) {
        let max_tracks = self.limits.max_tracks_per_member;
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let Some(me) = room.members.get_mut(&member_id) else {
            return;
        };
        if !me.grants.may_publish(track.kind) {
            let text = if me.recorder {
                "a recorder publishes nothing"
            } else {
                "the ticket does not grant publishing this kind"
            };
            Self::feedback(
                &mut self.outputs,
                me,
                ErrorCode::NotPermitted,
                text,
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
        if let Some(cascade) = self.cascade.as_mut() {
            cascade.local_track(key, member_id, track);
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

    /// The stream of a reliable data track from `conn` ended cleanly: the track ends with
    /// it, after every message the stream carried (docs/PROTOCOL.md). A `TrackPublished` for
    /// the track read later from the control stream was sent before the stream ended and is
    /// ignored; the track's next frame publishes it again. Nothing happens unless `track` is
    /// a data track the connection's member publishes.
    pub fn end_data_track(&mut self, conn: ConnId, track: TrackId) {
        let Some((room_key, member_id)) = self.membership(conn).map(|(r, m)| (r.clone(), m)) else {
            return;
        };
        let bound = self.limits.max_tracks_per_member.max(1);
        let Some(me) = self.member_mut(&room_key, member_id) else {
            return;
        };
        if me
            .track(track)
            .is_none_or(|info| info.kind != MediaKind::Data)
        {
            return;
        }
        while me.ended_data_tracks.len() >= bound {
            me.ended_data_tracks.pop_front();
        }
        me.ended_data_tracks.push_back(track);
        self.unpublish_track(&room_key, member_id, track);
    }

    /// Whether a `TrackPublished` for `track` is the stale announcement of a data track
    /// that has already ended with its stream (and forget that it ended).
    fn stale_data_publish(&mut self, key: &RoomKey, member_id: MemberId, track: TrackId) -> bool {
        let Some(me) = self.member_mut(key, member_id) else {
            return false;
        };
        let Some(at) = me.ended_data_tracks.iter().position(|t| *t == track) else {
            return false;
        };
        me.ended_data_tracks.remove(at);
        true
    }

    pub(super) fn unpublish_track(&mut self, key: &RoomKey, member_id: MemberId, track: TrackId) {
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
        if let Some(cascade) = self.cascade.as_mut() {
            cascade.local_untrack(key, member_id, track);
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
}
