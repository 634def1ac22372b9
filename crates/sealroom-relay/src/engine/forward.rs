//! Forwarding: whether a frame may pass and to whom it goes.

use sealroom_frame::control::{ControlMessage, ErrorCode, TrackInfo};
use sealroom_frame::envelope::{Envelope, Flags, MediaKind};

use super::room::*;
use super::*;

impl RelayCore {
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
}
