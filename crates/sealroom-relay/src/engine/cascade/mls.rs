//! MLS rooms gather on one node. The MLS delivery service (a room's commit position and
//! group info, `engine/mls.rs`) is kept by the node its members are on and does not cross
//! the links, so members of one MLS room on two nodes would form two groups. Instead the
//! node that holds a room's group tells its peers ([`CascadeEvent::MlsGroupHere`]); a peer
//! sends new joins of the room there (`Redirect`) and moves its own members of the room
//! there (`GoAway`, then a rejoin that its own redirect sends on). When two nodes hold a
//! group for the same room (members published on both before either heard of the other),
//! the lower node index keeps it and the other gives it up, so every node reaches the same
//! verdict from the same announcements and the room ends on one node.

use super::*;

/// Where a room's MLS group is held, as this node knows.
pub(in crate::engine) enum MlsHome {
    /// Here: the room's joins are admitted here.
    Here,
    /// At another node, whose relay address this is.
    At(String),
    /// Nowhere this node knows of (or the room is not an MLS room).
    Nowhere,
}

impl RelayCore {
    /// This node's relay address as members reach it (`host:port`), announced to the
    /// other nodes with each MLS group this node holds, so that they send the room's
    /// members here. `None`: groups are not announced (members of an MLS room then stay
    /// where they join). Only while the cascade is on.
    pub fn set_relay_address(&mut self, address: Option<String>) {
        if let Some(cascade) = self.cascade.as_mut() {
            cascade.relay_address = address;
        }
    }

    /// Local members sent to another node because it holds their room's MLS group.
    pub fn mls_members_moved(&self) -> u64 {
        self.cascade.as_ref().map_or(0, |c| c.mls_moved)
    }

    /// A local member published the MLS group of `key`: tell the peers, then give the
    /// room up if a node with a lower index already holds a group for it.
    pub(in crate::engine) fn mls_group_created(&mut self, key: &RoomKey) {
        let announced = self.announced_relay();
        let Some(cascade) = self.cascade.as_mut() else {
            return;
        };
        if let Some(relay) = announced {
            cascade.announce(CascadeEvent::MlsGroupHere {
                room: key.clone(),
                relay,
            });
        }
        self.gather_mls_room(key);
    }

    /// The relay address announced with the MLS groups this node holds: none while it
    /// drains (it has withdrawn them) or without an address.
    pub(in crate::engine) fn announced_relay(&self) -> Option<String> {
        let cascade = self.cascade.as_ref()?;
        cascade.relay_address.clone().filter(|_| !self.draining)
    }

    /// The MLS group of `key` is gone here (the room emptied): tell the peers.
    pub(in crate::engine) fn mls_group_dropped(&mut self, key: &RoomKey) {
        if let Some(cascade) = self.cascade.as_mut()
            && cascade.relay_address.is_some()
        {
            cascade.announce(CascadeEvent::MlsGroupGone { room: key.clone() });
        }
    }

    /// The node starts draining: it withdraws the MLS groups it holds, so that the other
    /// nodes take its members' rejoins (the first to arrive offers the group again) instead
    /// of sending them back here, and announces no group from now on.
    pub(in crate::engine) fn mls_withdraw_all(&mut self) {
        let mut held: Vec<RoomKey> = self
            .rooms
            .iter()
            .filter(|(_, room)| room.mls.is_some())
            .map(|(key, _)| key.clone())
            .collect();
        held.sort();
        for key in &held {
            self.mls_group_dropped(key);
        }
    }

    /// Where the MLS group of `key` is held, for a join of the room.
    pub(in crate::engine) fn mls_home(&self, key: &RoomKey) -> MlsHome {
        if self.rooms.get(key).is_some_and(|r| r.mls.is_some()) {
            return MlsHome::Here;
        }
        self.cascade
            .as_ref()
            .and_then(|c| c.mls_holder(key))
            .map_or(MlsHome::Nowhere, |(_, relay)| MlsHome::At(relay.to_owned()))
    }

    /// The peer on `link` holds the MLS group of `room`, at `relay`.
    pub(super) fn link_mls_group_here(
        &mut self,
        link: ConnId,
        room: RoomKey,
        relay: String,
    ) -> Result<(), CascadeError> {
        if !self.apps.contains_key(&room.app) {
            return Err(CascadeError::UnknownApp);
        }
        if relay.len() > MAX_RELAY_ADDRESS {
            return Err(CascadeError::OverLimit);
        }
        let cascade = self.cascade.as_mut().ok_or(CascadeError::NotALink)?;
        // A node holds a room's group only while it has members there, which it announces
        // first; their ids carry its index, which decides between two holders.
        let index = cascade
            .peer_index(link, &room)
            .ok_or(CascadeError::UnknownMember)?;
        let state = cascade.links.get_mut(&link).ok_or(CascadeError::NotALink)?;
        state.mls_rooms.insert(room.clone(), (index, relay));
        self.gather_mls_room(&room);
        Ok(())
    }

    /// The peer on `link` no longer holds the MLS group of `room`.
    pub(super) fn link_mls_group_gone(&mut self, link: ConnId, room: &RoomKey) {
        if let Some(state) = self.cascade.as_mut().and_then(|c| c.links.get_mut(&link)) {
            state.mls_rooms.remove(room);
        }
    }

    /// Decide where the MLS room `key` lives: if another node holds its group and this
    /// node holds none, or holds one under a higher index, this node gives its group up
    /// (telling the peers) and sends its members of the room to that node.
    fn gather_mls_room(&mut self, key: &RoomKey) {
        let Some(cascade) = self.cascade.as_ref() else {
            return;
        };
        let Some((holder, relay)) = cascade.mls_holder(key) else {
            return;
        };
        let relay = relay.to_owned();
        let own_index = cascade.node_index;
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if room.mls.is_some() && own_index < holder {
            // This node keeps the room; the holder gives it up when it hears of ours.
            return;
        }
        let had_group = room.mls.take().is_some();
        let mut conns: Vec<ConnId> = room.members.values().map(|m| m.conn).collect();
        conns.sort_unstable();
        if had_group {
            self.mls_group_dropped(key);
        }
        for conn in &conns {
            self.outputs.push_back(Output::Send {
                conn: *conn,
                message: ControlMessage::GoAway {
                    code: ErrorCode::ShuttingDown,
                    reconnect_after_ms: 0,
                },
            });
            self.remove_connection(
                *conn,
                ErrorCode::ShuttingDown,
                &format!(
                    "this room's MLS group is held by the node at {relay}; reconnect, and \
                     this node sends the join there"
                ),
            );
        }
        if let Some(cascade) = self.cascade.as_mut() {
            cascade.mls_moved += conns.len() as u64;
        }
    }
}

impl Cascade {
    /// The peer with the lowest node index that holds the MLS group of `key`, with its
    /// relay address.
    pub(super) fn mls_holder(&self, key: &RoomKey) -> Option<(u16, &str)> {
        self.links
            .values()
            .filter_map(|state| {
                let (index, relay) = state.mls_rooms.get(key)?;
                Some((*index, relay.as_str()))
            })
            .min_by_key(|(index, _)| *index)
    }

    /// The node index of the peer on `link`, read from one of its members in `key` (their
    /// ids carry it), when it has any.
    fn peer_index(&self, link: ConnId, key: &RoomKey) -> Option<u16> {
        let room = self.remote.get(key)?;
        let (id, _) = room.members.iter().find(|(_, r)| r.link == link)?;
        u16::try_from(id >> MEMBER_ID_NODE_SHIFT).ok()
    }
}
