//! What a peer node says and sends: its events (members, tracks, leaves, recorders,
//! keyframe requests, operator actions), each checked against what its link announced
//! before anything changes, and its frames, delivered to the local members of the
//! sender's room that receive them.

use super::*;

impl RelayCore {
    pub(super) fn tell_locals_left(
        &mut self,
        key: &RoomKey,
        member: MemberId,
        reason: LeaveReason,
    ) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        for other in room.members.values_mut() {
            other.subscriptions.forget_member(member);
            self.outputs.push_back(Output::Send {
                conn: other.conn,
                message: ControlMessage::MemberLeft { member, reason },
            });
        }
    }

    pub(super) fn tell_locals(&mut self, key: &RoomKey, message: &ControlMessage) {
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        for other in room.members.values() {
            self.outputs.push_back(Output::Send {
                conn: other.conn,
                message: message.clone(),
            });
        }
    }

    /// What the peer node on `link` said.
    ///
    /// # Errors
    /// [`CascadeError`] when the link is unknown or the event breaks a rule (an app this
    /// node does not serve, a member id in use, a member it never announced, over the
    /// bounds); nothing changes then.
    pub fn handle_link_event(
        &mut self,
        link: ConnId,
        event: CascadeEvent,
        now: Now,
    ) -> Result<(), CascadeError> {
        let known = self
            .cascade
            .as_ref()
            .is_some_and(|c| c.links.contains_key(&link));
        if !known {
            return Err(CascadeError::NotALink);
        }
        match event {
            CascadeEvent::MemberJoined {
                room,
                member,
                subscribes,
            } => self.link_member_joined(link, room, member, subscribes),
            CascadeEvent::MemberLeft {
                room,
                member,
                reason,
            } => {
                self.check_owner(link, &room, member)?;
                if let Some(cascade) = self.cascade.as_mut() {
                    cascade.remove_remote(&room, member);
                }
                self.tell_locals_left(&room, member, reason);
                Ok(())
            }
            CascadeEvent::TrackPublished {
                room,
                member,
                track,
            } => {
                self.check_owner(link, &room, member)?;
                self.remote_track(&room, member, track)
            }
            CascadeEvent::TrackUnpublished {
                room,
                member,
                track,
            } => {
                self.check_owner(link, &room, member)?;
                if let Some(remote) = self
                    .cascade
                    .as_mut()
                    .and_then(|c| c.remote.get_mut(&room))
                    .and_then(|r| r.members.get_mut(&member))
                {
                    let before = remote.info.tracks.len();
                    remote.info.tracks.retain(|t| t.track != track);
                    if remote.info.tracks.len() == before {
                        return Ok(());
                    }
                }
                if let Some(local) = self.rooms.get_mut(&room) {
                    for other in local.members.values_mut() {
                        other.subscriptions.forget_track(member, track);
                    }
                }
                self.tell_locals(&room, &ControlMessage::TrackUnpublished { member, track });
                Ok(())
            }
            CascadeEvent::KeyframeRequest { publisher, track } => {
                let key = self
                    .cascade
                    .as_ref()
                    .and_then(|c| c.local.get(&publisher))
                    .cloned()
                    .ok_or(CascadeError::UnknownMember)?;
                self.ask_for_keyframe(&key, 0, publisher, track, now);
                Ok(())
            }
            CascadeEvent::Kick {
                room,
                member,
                reason,
            } => {
                let conn = self
                    .rooms
                    .get(&room)
                    .and_then(|r| r.members.get(&member))
                    .map(|m| m.conn)
                    .ok_or(CascadeError::UnknownMember)?;
                self.remove_connection(conn, ErrorCode::Kicked, bounded_reason(&reason));
                Ok(())
            }
            CascadeEvent::Dismiss { room, reason } => {
                // The room may have emptied here meanwhile: nothing to do then.
                self.dismiss_here(&room, bounded_reason(&reason));
                Ok(())
            }
            CascadeEvent::RecorderPresent { room, member } => {
                self.check_owner(link, &room, member)?;
                let newly = self
                    .cascade
                    .as_mut()
                    .and_then(|c| c.remote.get_mut(&room))
                    .and_then(|r| r.members.get_mut(&member))
                    .is_some_and(|remote| !std::mem::replace(&mut remote.recorder, true));
                if newly {
                    self.tell_locals(&room, &ControlMessage::RecorderPresent { member });
                }
                Ok(())
            }
            CascadeEvent::MlsGroupHere { room, relay } => {
                self.link_mls_group_here(link, room, relay)
            }
            CascadeEvent::MlsGroupGone { room } => {
                self.link_mls_group_gone(link, &room);
                Ok(())
            }
        }
    }

    pub(super) fn check_owner(
        &self,
        link: ConnId,
        room: &RoomKey,
        member: MemberId,
    ) -> Result<(), CascadeError> {
        let owner = self
            .cascade
            .as_ref()
            .and_then(|c| c.remote_rooms.get(&(link, member)));
        if owner == Some(room) {
            Ok(())
        } else {
            Err(CascadeError::UnknownMember)
        }
    }

    pub(super) fn link_member_joined(
        &mut self,
        link: ConnId,
        key: RoomKey,
        mut info: MemberInfo,
        subscribes: bool,
    ) -> Result<(), CascadeError> {
        if !self.apps.contains_key(&key.app) {
            return Err(CascadeError::UnknownApp);
        }
        let max_members = self.limits.max_members_per_room;
        let max_rooms = self
            .limits
            .max_rooms_per_app
            .saturating_mul(self.apps.len());
        let max_tracks = self.limits.max_tracks_per_member;
        let local_taken = self
            .rooms
            .get(&key)
            .is_some_and(|r| r.members.contains_key(&info.member));
        let Some(cascade) = self.cascade.as_mut() else {
            return Err(CascadeError::NotALink);
        };
        let own_index = info.member >> MEMBER_ID_NODE_SHIFT == u32::from(cascade.node_index);
        if local_taken || own_index || cascade.local.contains_key(&info.member) {
            return Err(CascadeError::DuplicateMember);
        }
        if cascade
            .remote_rooms
            .get(&(link, info.member))
            .is_some_and(|room| *room != key)
        {
            // One member is in one room; a peer that says otherwise is refused, not
            // believed (the member would stay behind in the first room).
            return Err(CascadeError::DuplicateMember);
        }
        if let Some(existing) = cascade
            .remote
            .get(&key)
            .and_then(|r| r.members.get(&info.member))
        {
            if existing.link != link {
                return Err(CascadeError::DuplicateMember);
            }
            // Announced again (a snapshot after a change): take the newer view.
            cascade.remove_remote(&key, info.member);
        }
        let state = cascade.links.get(&link).ok_or(CascadeError::NotALink)?;
        let in_room = state.rooms.get(&key).copied().unwrap_or(0);
        if in_room >= max_members || (in_room == 0 && state.rooms.len() >= max_rooms) {
            return Err(CascadeError::OverLimit);
        }
        info.tracks.truncate(max_tracks);
        let member = info.member;
        let room = cascade.remote.entry(key.clone()).or_default();
        room.members.insert(
            member,
            Remote {
                link,
                info: info.clone(),
                subscribes,
                recorder: false,
                keyframe_asked: Vec::new(),
            },
        );
        if subscribes {
            match room.links.iter_mut().find(|(l, _)| *l == link) {
                Some((_, n)) => *n += 1,
                None => room.links.push((link, 1)),
            }
        }
        cascade.remote_rooms.insert((link, member), key.clone());
        if let Some(state) = cascade.links.get_mut(&link) {
            *state.rooms.entry(key.clone()).or_default() += 1;
        }
        self.tell_locals(&key, &ControlMessage::MemberJoined(info));
        Ok(())
    }

    /// A remote member's track is known here (from its node, or from its first frame).
    pub(super) fn remote_track(
        &mut self,
        key: &RoomKey,
        member: MemberId,
        track: TrackInfo,
    ) -> Result<(), CascadeError> {
        let max_tracks = self.limits.max_tracks_per_member;
        let Some(remote) = self
            .cascade
            .as_mut()
            .and_then(|c| c.remote.get_mut(key))
            .and_then(|r| r.members.get_mut(&member))
        else {
            return Err(CascadeError::UnknownMember);
        };
        let count = remote.info.tracks.len();
        match remote
            .info
            .tracks
            .iter_mut()
            .find(|t| t.track == track.track)
        {
            Some(existing) if existing.kind == track.kind => return Ok(()),
            Some(existing) => existing.kind = track.kind,
            None if count >= max_tracks => {
                return Err(CascadeError::OverLimit);
            }
            None => remote.info.tracks.push(track),
        }
        self.tell_locals(key, &ControlMessage::TrackPublished { member, track });
        Ok(())
    }

    /// A frame from the node on `link`: it goes to the local members of the sender's room
    /// that subscribe to the track, never to another link.
    pub(in crate::engine) fn handle_link_frame(
        &mut self,
        link: ConnId,
        envelope: &Envelope,
        encoded_len: usize,
    ) -> Result<&[ConnId], DropReason> {
        let max_len = match envelope.kind {
            MediaKind::Data => self
                .limits
                .max_data_frame_len
                .min(self.limits.max_frame_len),
            MediaKind::Audio | MediaKind::Video => self.limits.max_frame_len,
        };
        if encoded_len > max_len {
            return Err(DropReason::TooLarge);
        }
        let key = self
            .cascade
            .as_ref()
            .and_then(|c| c.remote_rooms.get(&(link, envelope.sender)))
            .cloned()
            .ok_or(DropReason::NotJoined)?;
        let known = self
            .cascade
            .as_ref()
            .and_then(|c| c.remote.get(&key))
            .and_then(|r| r.members.get(&envelope.sender))
            .and_then(|m| m.info.tracks.iter().find(|t| t.track == envelope.track))
            .map(|t| t.kind);
        match known {
            Some(kind) if kind != envelope.kind => return Err(DropReason::KindMismatch),
            Some(_) => {}
            None => {
                let track = TrackInfo {
                    track: envelope.track,
                    kind: envelope.kind,
                };
                self.remote_track(&key, envelope.sender, track)
                    .map_err(|_| DropReason::TooManyTracks)?;
            }
        }
        if let Some(state) = self.cascade.as_mut().and_then(|c| c.links.get_mut(&link)) {
            state.frames_in += 1;
        }
        self.receivers.clear();
        if let Some(room) = self.rooms.get(&key) {
            for other in room.members.values() {
                if other.receives() && other.subscriptions.wants(envelope.sender, envelope.track) {
                    self.receivers.push(other.conn);
                }
            }
        }
        Ok(&self.receivers)
    }
}
