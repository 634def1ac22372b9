//! Forwarding: whether a frame may pass and to whom it goes.

use std::collections::VecDeque;

use sealroom_frame::control::{ControlMessage, ErrorCode, TrackInfo};
use sealroom_frame::envelope::{Envelope, Flags, MediaKind, MemberId};

use super::room::{Conn, ConnPhase, Member, Room};
use super::{ConnId, DropReason, Now, Output, RelayCore};
use crate::config::Limits;

impl RelayCore {
    /// Decide where a frame from `conn` goes: the connections of every other member that
    /// subscribes to the sender's track, or why it is dropped. `encoded_len` is the whole
    /// frame's length (envelope header and payload).
    ///
    /// Checks, in order: the connection is a member; the envelope's sender is that member;
    /// the member is not a recorder; the size limit; the grant for the kind; the track (published implicitly by its first
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
            if self.is_link(conn) {
                return self.handle_link_frame(conn, envelope, encoded_len);
            }
            return Err(DropReason::NotJoined);
        };
        let member_id = *member;
        if envelope.sender != member_id {
            return Err(DropReason::ForgedSender);
        }
        let key = room;
        let Some(room) = self.rooms.get_mut(key) else {
            return Err(DropReason::NotJoined);
        };
        let limits = &self.limits;
        let outputs = &mut self.outputs;
        let me = room
            .members
            .get_mut(&member_id)
            .ok_or(DropReason::NotJoined)?;
        if me.recorder {
            Self::feedback(
                outputs,
                me,
                ErrorCode::NotPermitted,
                "a recorder publishes nothing; frame dropped",
                now.instant,
            );
            return Err(DropReason::RecorderPublished);
        }
        Self::check_size_and_grant(limits, outputs, me, envelope, encoded_len, now)?;
        let published = Self::publish_on_first_frame(limits, outputs, room, member_id, envelope)?;
        let me = room
            .members
            .get_mut(&member_id)
            .ok_or(DropReason::NotJoined)?;
        Self::take_rate(outputs, me, envelope, encoded_len, now)?;
        self.receivers.clear();
        for (id, other) in &room.members {
            if *id != member_id
                && other.receives()
                && other.subscriptions.wants(member_id, envelope.track)
            {
                self.receivers.push(other.conn);
            }
        }
        if let Some(cascade) = self.cascade.as_mut() {
            if let Some(track) = published {
                cascade.local_track(key, member_id, track);
            }
            cascade.add_links(key, &mut self.receivers);
        }
        Ok(&self.receivers)
    }

    /// The frame is within the size limit of its kind, and the sender may publish it.
    fn check_size_and_grant(
        limits: &Limits,
        outputs: &mut VecDeque<Output>,
        me: &mut Member,
        envelope: &Envelope,
        encoded_len: usize,
        now: Now,
    ) -> Result<(), DropReason> {
        let max_len = match envelope.kind {
            MediaKind::Data => limits.max_data_frame_len.min(limits.max_frame_len),
            MediaKind::Audio | MediaKind::Video => limits.max_frame_len,
        };
        if encoded_len > max_len {
            Self::feedback(
                outputs,
                me,
                ErrorCode::FrameTooLarge,
                "frame exceeds the size limit; dropped",
                now.instant,
            );
            return Err(DropReason::TooLarge);
        }
        if !me.grants.may_publish(envelope.kind) {
            Self::feedback(
                outputs,
                me,
                ErrorCode::NotPermitted,
                "the ticket does not grant publishing this kind; frame dropped",
                now.instant,
            );
            return Err(DropReason::NotPermitted);
        }
        Ok(())
    }

    /// A track is published by its first frame, within the track limit; its kind stays
    /// that of the first frame. Returns the track when this frame published it.
    fn publish_on_first_frame(
        limits: &Limits,
        outputs: &mut VecDeque<Output>,
        room: &mut Room,
        member_id: MemberId,
        envelope: &Envelope,
    ) -> Result<Option<TrackInfo>, DropReason> {
        let me = room
            .members
            .get_mut(&member_id)
            .ok_or(DropReason::NotJoined)?;
        match me.track(envelope.track) {
            Some(info) if info.kind != envelope.kind => Err(DropReason::KindMismatch),
            Some(_) => Ok(None),
            None if me.tracks.len() >= limits.max_tracks_per_member => {
                Err(DropReason::TooManyTracks)
            }
            None => {
                let track = TrackInfo {
                    track: envelope.track,
                    kind: envelope.kind,
                };
                me.tracks.push(track);
                // A new publication: a stale `TrackPublished` no longer needs ignoring.
                me.ended_data_tracks.retain(|t| *t != envelope.track);
                Self::broadcast(
                    outputs,
                    room,
                    member_id,
                    &ControlMessage::TrackPublished {
                        member: member_id,
                        track,
                    },
                );
                Ok(Some(track))
            }
        }
    }

    /// The member's rate limits: data messages and bytes for data, media bytes for audio
    /// and video.
    fn take_rate(
        outputs: &mut VecDeque<Output>,
        me: &mut Member,
        envelope: &Envelope,
        encoded_len: usize,
        now: Now,
    ) -> Result<(), DropReason> {
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
        if allowed {
            return Ok(());
        }
        let text = if envelope.kind == MediaKind::Data {
            if envelope.flags.contains(Flags::UNRELIABLE) {
                "data rate exceeded; unreliable message dropped"
            } else {
                "data rate exceeded; reliable message dropped"
            }
        } else {
            "media rate exceeded; frame dropped"
        };
        Self::feedback(outputs, me, ErrorCode::RateLimited, text, now.instant);
        Err(DropReason::RateLimited)
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
