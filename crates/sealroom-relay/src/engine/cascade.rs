//! The cascade: members of a room connected to other nodes, and what this node tells those
//! nodes about its own members.
//!
//! A node that has members of a room forwards its local publishers' frames to every other
//! node that has members of that room, once per node-to-node link whatever the number of
//! members behind it. This module keeps, per link, the remote members each peer announced
//! (with their tracks), so that local members see them in their roster and hear them join
//! and leave, and so that forwarding knows which links want a room's frames. What the core
//! must tell peers comes out of [`RelayCore::poll_cascade`] as [`CascadeEvent`]s; what peers
//! tell goes in through [`RelayCore::handle_link_event`].
//!
//! Member ids are unique per node across all its rooms while the cascade is on: the node's
//! index sits in the high bits ([`MEMBER_ID_NODE_SHIFT`]), so ids from different nodes
//! never collide, and a frame from a link names its room by its sender alone. Frames from a
//! link go to local members only: every node sends its own publishers' frames to every
//! interested node directly, so nothing is forwarded twice.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use sealroom_frame::control::{ControlMessage, ErrorCode, LeaveReason, MemberInfo, TrackInfo};
use sealroom_frame::envelope::{Envelope, MediaKind, MemberId, TrackId};
use serde::{Deserialize, Serialize};

use super::room::Member;
use super::{
    AdminError, ConnId, DropReason, KeyframeOutcome, MemberTarget, Now, Output, RelayCore, RoomKey,
};

#[cfg(any(test, feature = "testing"))]
mod check;
mod mls;
mod peer;

pub(super) use mls::MlsHome;

/// Bits of a member id below the node index.
pub const MEMBER_ID_NODE_SHIFT: u32 = 20;

/// The largest node index (12 bits above [`MEMBER_ID_NODE_SHIFT`]).
pub const MAX_NODE_INDEX: u16 = (1 << (32 - MEMBER_ID_NODE_SHIFT)) - 1;

/// What one node tells another about a room both serve. Postcard-encoded on the link's
/// cascade stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CascadeEvent {
    /// A member of the sending node is in `room` (on join, and for every member when a link
    /// comes up).
    MemberJoined {
        /// The room.
        room: RoomKey,
        /// Who, with the tracks it publishes.
        member: MemberInfo,
        /// Whether the member receives frames (its ticket's subscribe grant, or it
        /// records): a link whose members of a room all lack it gets none of the room's
        /// frames.
        subscribes: bool,
    },
    /// A member of the sending node left `room`.
    MemberLeft {
        /// The room.
        room: RoomKey,
        /// Who.
        member: MemberId,
        /// Why.
        reason: LeaveReason,
    },
    /// A member of the sending node published a track.
    TrackPublished {
        /// The room.
        room: RoomKey,
        /// Who.
        member: MemberId,
        /// The track.
        track: TrackInfo,
    },
    /// A member of the sending node stopped publishing a track.
    TrackUnpublished {
        /// The room.
        room: RoomKey,
        /// Who.
        member: MemberId,
        /// The track.
        track: TrackId,
    },
    /// A member behind the sending node asks the receiving node's `publisher` for a
    /// keyframe of `track` (or the sending node does, for a receiver behind it that fell
    /// behind on a group).
    KeyframeRequest {
        /// The publisher, a member of the receiving node.
        publisher: MemberId,
        /// Its video track.
        track: TrackId,
    },
    /// A member of the sending node, announced just before, is a recorder: the receiving
    /// node tells its members of the room, as it tells them of a local recorder.
    RecorderPresent {
        /// The room.
        room: RoomKey,
        /// The recording member.
        member: MemberId,
    },
    /// An operator of the sending node removes `member`, a member of the receiving node:
    /// it hears `Kicked` with `reason`, as if the receiving node's operator had asked.
    Kick {
        /// The room.
        room: RoomKey,
        /// The member, of the receiving node.
        member: MemberId,
        /// What the member is told (cut to [`MAX_OPERATOR_REASON`] bytes on receipt).
        reason: String,
    },
    /// An operator of the sending node dismisses `room`: the receiving node removes its
    /// members of it, each hearing `RoomDismissed` with `reason`.
    Dismiss {
        /// The room.
        room: RoomKey,
        /// What the members are told (cut to [`MAX_OPERATOR_REASON`] bytes on receipt).
        reason: String,
    },
    /// The sending node holds the MLS group of `room` (a member published it there; sent
    /// again to a link that comes up): the receiving node sends new joins of the room to
    /// `relay`, and moves its own members of the room there unless it holds the group
    /// itself under the lower node index (`docs/CLUSTER.md`, "MLS rooms gather on one
    /// node"). Accepted only from a link with members in the room.
    MlsGroupHere {
        /// The room.
        room: RoomKey,
        /// The sending node's relay address, `host:port`, where members are sent (at
        /// most [`MAX_RELAY_ADDRESS`] bytes).
        relay: String,
    },
    /// The sending node no longer holds the MLS group of `room` (its last member there
    /// left, or it gave the room up to a node with a lower index).
    MlsGroupGone {
        /// The room.
        room: RoomKey,
    },
}

/// The longest relay address a peer may name in [`CascadeEvent::MlsGroupHere`].
pub const MAX_RELAY_ADDRESS: usize = 256;

/// What a node tells its peers of a local member: that it is in `key` (with its tracks and
/// whether it receives frames: it may subscribe, or it records), then, for a recorder,
/// that it records.
fn member_events(
    key: &RoomKey,
    id: MemberId,
    member: &Member,
) -> impl Iterator<Item = CascadeEvent> {
    let joined = CascadeEvent::MemberJoined {
        room: key.clone(),
        member: member.info(id),
        subscribes: member.receives(),
    };
    let recorder = member.recorder.then(|| CascadeEvent::RecorderPresent {
        room: key.clone(),
        member: id,
    });
    std::iter::once(joined).chain(recorder)
}

/// The longest operator reason a node passes on from a peer's `Kick` or `Dismiss`.
pub const MAX_OPERATOR_REASON: usize = 256;

/// `reason` cut to at most [`MAX_OPERATOR_REASON`] bytes, on a character boundary.
fn bounded_reason(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_OPERATOR_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Where a [`CascadeEvent`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkTarget {
    /// Every link up.
    All,
    /// One link.
    One(ConnId),
}

/// Why the core refused what a peer node said. The link stays up; the driver counts the
/// refusal (`sealroom_cluster_link_refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CascadeError {
    /// The connection is not a link (or no longer is).
    #[error("not a node link")]
    NotALink,
    /// The room's app is not served by this node.
    #[error("the room's app is not served by this node")]
    UnknownApp,
    /// The member id is already in use: in the room (by a local member or another link's),
    /// by the same link in another room, or it carries this node's own index (ids of this
    /// node are this node's to give).
    #[error("the member id is already in use, or is this node's to give")]
    DuplicateMember,
    /// The member is not one this link announced.
    #[error("no such member behind this link")]
    UnknownMember,
    /// The link announced more members or rooms than this node keeps for one peer.
    #[error("more remote members or rooms than the limits allow")]
    OverLimit,
}

impl CascadeError {
    /// Every refusal, for exporting zeroed counters.
    pub const ALL: [Self; 5] = [
        Self::NotALink,
        Self::UnknownApp,
        Self::DuplicateMember,
        Self::UnknownMember,
        Self::OverLimit,
    ];

    /// A stable lowercase label (metrics).
    pub const fn label(self) -> &'static str {
        match self {
            Self::NotALink => "not_a_link",
            Self::UnknownApp => "unknown_app",
            Self::DuplicateMember => "duplicate_member",
            Self::UnknownMember => "unknown_member",
            Self::OverLimit => "over_limit",
        }
    }
}

/// A member of another node, as this node keeps it.
#[derive(Debug)]
struct Remote {
    link: ConnId,
    info: MemberInfo,
    subscribes: bool,
    /// Whether its node said it records.
    recorder: bool,
    /// When this member was last asked for a keyframe, per track.
    keyframe_asked: Vec<(TrackId, Instant)>,
}

/// The members of one room behind links.
#[derive(Debug, Default)]
struct RemoteRoom {
    members: BTreeMap<MemberId, Remote>,
    /// Links with at least one member of the room that subscribes, with how many.
    links: Vec<(ConnId, usize)>,
}

/// What one link announced.
#[derive(Debug, Default)]
struct LinkState {
    /// Rooms with members behind the link, with how many.
    rooms: HashMap<RoomKey, usize>,
    /// Rooms whose MLS group the peer holds, with its node index (read from its members'
    /// ids when it said so) and the relay address it gave; only rooms of `rooms` (the
    /// entry goes with the peer's last member of the room).
    mls_rooms: HashMap<RoomKey, (u16, String)>,
    /// Frames this node forwarded over the link.
    frames_out: u64,
    /// Frames received from the link and accepted.
    frames_in: u64,
}

/// The cascade's state inside the core.
#[derive(Debug)]
pub(super) struct Cascade {
    node_index: u16,
    next_id: u32,
    links: HashMap<ConnId, LinkState>,
    /// Local members and their rooms (ids are unique per node).
    local: HashMap<MemberId, RoomKey>,
    remote: HashMap<RoomKey, RemoteRoom>,
    /// A remote member's room, by the link it is behind.
    remote_rooms: HashMap<(ConnId, MemberId), RoomKey>,
    events: VecDeque<(LinkTarget, CascadeEvent)>,
    /// Where new joins go instead of this node (set from the directory's loads).
    redirect: Option<String>,
    /// This node's relay address as other nodes tell members (`host:port`): announced
    /// with the MLS groups this node holds. `None`: none announced.
    relay_address: Option<String>,
    /// Local members sent to the node holding their room's MLS group.
    mls_moved: u64,
}

/// A link's counters, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkCounters {
    /// Frames forwarded over the link.
    pub frames_out: u64,
    /// Frames received from the link and accepted.
    pub frames_in: u64,
    /// Remote members behind the link.
    pub members: usize,
}

impl Cascade {
    fn new(node_index: u16) -> Self {
        Self {
            node_index,
            next_id: 1,
            links: HashMap::new(),
            local: HashMap::new(),
            remote: HashMap::new(),
            remote_rooms: HashMap::new(),
            events: VecDeque::new(),
            redirect: None,
            relay_address: None,
            mls_moved: 0,
        }
    }

    fn base(&self) -> u32 {
        u32::from(self.node_index) << MEMBER_ID_NODE_SHIFT
    }

    /// A member id unique on this node: the node index above a counter that wraps, skipping
    /// ids in use.
    pub(super) fn allocate(&mut self) -> MemberId {
        let span = 1u32 << MEMBER_ID_NODE_SHIFT;
        loop {
            let n = self.next_id;
            self.next_id = if n + 1 >= span { 1 } else { n + 1 };
            let id = self.base() | n;
            if !self.local.contains_key(&id) {
                return id;
            }
        }
    }

    fn announce(&mut self, event: CascadeEvent) {
        if !self.links.is_empty() {
            self.events.push_back((LinkTarget::All, event));
        }
    }

    /// A local member `id` joined `key`.
    pub(super) fn local_joined(&mut self, key: &RoomKey, id: MemberId, member: &Member) {
        self.local.insert(id, key.clone());
        for event in member_events(key, id, member) {
            self.announce(event);
        }
    }

    pub(super) fn local_left(&mut self, key: &RoomKey, member: MemberId, reason: LeaveReason) {
        if self.local.remove(&member).is_some() {
            self.announce(CascadeEvent::MemberLeft {
                room: key.clone(),
                member,
                reason,
            });
        }
    }

    pub(super) fn local_track(&mut self, key: &RoomKey, member: MemberId, track: TrackInfo) {
        self.announce(CascadeEvent::TrackPublished {
            room: key.clone(),
            member,
            track,
        });
    }

    pub(super) fn local_untrack(&mut self, key: &RoomKey, member: MemberId, track: TrackId) {
        self.announce(CascadeEvent::TrackUnpublished {
            room: key.clone(),
            member,
            track,
        });
    }

    /// Add to `receivers` each link that wants the room's frames, once.
    pub(super) fn add_links(&mut self, key: &RoomKey, receivers: &mut Vec<ConnId>) {
        let Some(room) = self.remote.get(key) else {
            return;
        };
        for (link, _) in &room.links {
            receivers.push(*link);
            if let Some(state) = self.links.get_mut(link) {
                state.frames_out += 1;
            }
        }
    }

    /// The members behind links in `key`, for a joining member's roster.
    pub(super) fn roster(&self, key: &RoomKey) -> impl Iterator<Item = MemberInfo> + '_ {
        self.remote
            .get(key)
            .into_iter()
            .flat_map(|room| room.members.values().map(|r| r.info.clone()))
    }

    /// The recorders behind links in `key`, for a joining member.
    pub(super) fn recorders(&self, key: &RoomKey) -> impl Iterator<Item = MemberId> + '_ {
        self.remote.get(key).into_iter().flat_map(|room| {
            room.members
                .iter()
                .filter_map(|(id, r)| r.recorder.then_some(*id))
        })
    }

    fn remove_remote(&mut self, key: &RoomKey, member: MemberId) -> Option<Remote> {
        let room = self.remote.get_mut(key)?;
        let remote = room.members.remove(&member)?;
        self.remote_rooms.remove(&(remote.link, member));
        if remote.subscribes
            && let Some(pos) = room.links.iter().position(|(l, _)| *l == remote.link)
        {
            room.links[pos].1 -= 1;
            if room.links[pos].1 == 0 {
                room.links.swap_remove(pos);
            }
        }
        if room.members.is_empty() {
            self.remote.remove(key);
        }
        if let Some(link) = self.links.get_mut(&remote.link)
            && let Some(count) = link.rooms.get_mut(key)
        {
            *count -= 1;
            if *count == 0 {
                link.rooms.remove(key);
                link.mls_rooms.remove(key);
            }
        }
        Some(remote)
    }
}

impl RelayCore {
    /// Turn the cascade on, with this node's index in the cluster (1 to
    /// [`MAX_NODE_INDEX`]): member ids become unique per node (the index in their high
    /// bits), and local membership changes are queued for the links
    /// ([`poll_cascade`](Self::poll_cascade)). Call before the first join.
    pub fn enable_cascade(&mut self, node_index: u16) {
        self.cascade = Some(Cascade::new(node_index.clamp(1, MAX_NODE_INDEX)));
    }

    /// Send new joins to the node at `address` (`host:port` of its relay) instead of
    /// admitting them, with a `Redirect` (`None`: admit them here). Members already here
    /// stay. Only while the cascade is on.
    pub fn set_redirect(&mut self, address: Option<String>) {
        if let Some(cascade) = self.cascade.as_mut() {
            cascade.redirect = address;
        }
    }

    pub(super) fn redirect_target(&self) -> Option<String> {
        self.cascade.as_ref()?.redirect.clone()
    }

    /// Answer `conn`'s join with a `Redirect` to `address` and close it (with
    /// `Overloaded`, which a client that does not know redirects retries elsewhere).
    pub(super) fn redirect(&mut self, conn: ConnId, address: String) {
        self.forget_conn(conn);
        self.outputs.push_back(Output::Send {
            conn,
            message: ControlMessage::Redirect { address },
        });
        self.outputs.push_back(Output::Close {
            conn,
            code: Some(ErrorCode::Overloaded),
        });
    }

    /// Whether the cascade is on.
    pub fn cascade_enabled(&self) -> bool {
        self.cascade.is_some()
    }

    /// The next event to send to peer nodes, in order.
    #[must_use]
    pub fn poll_cascade(&mut self) -> Option<(LinkTarget, CascadeEvent)> {
        self.cascade.as_mut()?.events.pop_front()
    }

    /// An authenticated link to another node is up on `link`: it is told every local
    /// member (with its tracks), and from now on every change.
    pub fn handle_link_up(&mut self, link: ConnId) {
        let relay = self.announced_relay();
        let Some(cascade) = self.cascade.as_mut() else {
            return;
        };
        // Up again without going down first: what the link announced stays (its counts
        // describe members still behind it); the peer hears the local members again.
        cascade.links.entry(link).or_default();
        for (key, room) in &self.rooms {
            for (id, member) in &room.members {
                for event in member_events(key, *id, member) {
                    cascade.events.push_back((LinkTarget::One(link), event));
                }
            }
            // After the room's members, so that the peer knows this node has some there.
            if room.mls.is_some()
                && let Some(relay) = &relay
            {
                cascade.events.push_back((
                    LinkTarget::One(link),
                    CascadeEvent::MlsGroupHere {
                        room: key.clone(),
                        relay: relay.clone(),
                    },
                ));
            }
        }
    }

    /// The link on `link` is gone: every member behind it leaves the rooms here with
    /// `reason` (their node may still have them; they come back when a link does).
    pub fn handle_link_down(&mut self, link: ConnId, reason: LeaveReason) {
        let Some(cascade) = self.cascade.as_mut() else {
            return;
        };
        let Some(state) = cascade.links.remove(&link) else {
            return;
        };
        cascade
            .events
            .retain(|(to, _)| *to != LinkTarget::One(link));
        let gone: Vec<(RoomKey, MemberId)> = cascade
            .remote_rooms
            .iter()
            .filter(|((l, _), _)| *l == link)
            .map(|((_, member), key)| (key.clone(), *member))
            .collect();
        drop(state);
        for (key, member) in &gone {
            if let Some(cascade) = self.cascade.as_mut() {
                cascade.remove_remote(key, *member);
            }
            self.tell_locals_left(key, *member, reason);
        }
    }

    /// Links up, each with its counters.
    pub fn links(&self) -> Vec<(ConnId, LinkCounters)> {
        let Some(cascade) = &self.cascade else {
            return Vec::new();
        };
        cascade
            .links
            .iter()
            .map(|(link, state)| {
                let counters = LinkCounters {
                    frames_out: state.frames_out,
                    frames_in: state.frames_in,
                    members: state.rooms.values().sum(),
                };
                (*link, counters)
            })
            .collect()
    }

    /// Members behind links, per room: (room, member, user, link).
    pub fn remote_members(&self) -> Vec<(RoomKey, MemberId, String, ConnId)> {
        let Some(cascade) = &self.cascade else {
            return Vec::new();
        };
        let mut out: Vec<_> = cascade
            .remote
            .iter()
            .flat_map(|(key, room)| {
                room.members
                    .iter()
                    .map(|(id, m)| (key.clone(), *id, m.info.user.clone(), m.link))
            })
            .collect();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }

    /// A local member asks a member behind a link for a keyframe: the request goes to its
    /// node, coalesced per publisher track like local requests.
    pub(super) fn ask_remote_for_keyframe(
        &mut self,
        key: &RoomKey,
        publisher: MemberId,
        track: TrackId,
        now: Now,
    ) -> KeyframeOutcome {
        let interval = self.limits.keyframe_request_interval();
        let Some(cascade) = self.cascade.as_mut() else {
            return KeyframeOutcome::Ignored;
        };
        let Some(remote) = cascade
            .remote
            .get_mut(key)
            .and_then(|r| r.members.get_mut(&publisher))
        else {
            return KeyframeOutcome::Ignored;
        };
        let is_video = remote
            .info
            .tracks
            .iter()
            .any(|t| t.track == track && t.kind == MediaKind::Video);
        if !is_video {
            return KeyframeOutcome::Ignored;
        }
        match remote.keyframe_asked.iter_mut().find(|(t, _)| *t == track) {
            Some((_, at)) if now.instant.saturating_duration_since(*at) < interval => {
                return KeyframeOutcome::Coalesced;
            }
            Some((_, at)) => *at = now.instant,
            None => remote.keyframe_asked.push((track, now.instant)),
        }
        let link = remote.link;
        cascade.events.push_back((
            LinkTarget::One(link),
            CascadeEvent::KeyframeRequest { publisher, track },
        ));
        KeyframeOutcome::Forwarded
    }

    /// The egress towards `link` gave up on a video group of a local `sender`: ask the
    /// sender for a keyframe on the link's behalf.
    pub(super) fn link_stale_group(
        &mut self,
        link: ConnId,
        sender: MemberId,
        track: TrackId,
        now: Now,
    ) -> KeyframeOutcome {
        let key = self
            .cascade
            .as_ref()
            .filter(|c| c.links.contains_key(&link))
            .and_then(|c| c.local.get(&sender))
            .cloned();
        match key {
            Some(key) => self.ask_for_keyframe(&key, 0, sender, track, now),
            None => KeyframeOutcome::Ignored,
        }
    }

    /// An operator's kick of a member this node does not hold: the member behind a link
    /// that `target` names is asked to leave by its own node. `room_here`: whether this
    /// node has members of the room (the error when no one matches).
    pub(super) fn kick_remote(
        &mut self,
        key: &RoomKey,
        target: &MemberTarget,
        reason: &str,
        room_here: bool,
    ) -> Result<MemberId, AdminError> {
        let missing = if room_here {
            AdminError::UnknownMember
        } else {
            AdminError::UnknownRoom
        };
        let Some(room) = self.cascade.as_ref().and_then(|c| c.remote.get(key)) else {
            return Err(missing);
        };
        let (member, link) = room
            .members
            .iter()
            .find(|(id, remote)| match target {
                MemberTarget::Member(m) => *id == m,
                MemberTarget::User(user) => remote.info.user == *user,
            })
            .map(|(id, remote)| (*id, remote.link))
            .ok_or(AdminError::UnknownMember)?;
        if let Some(cascade) = self.cascade.as_mut() {
            cascade.events.push_back((
                LinkTarget::One(link),
                CascadeEvent::Kick {
                    room: key.clone(),
                    member,
                    reason: reason.to_owned(),
                },
            ));
        }
        Ok(member)
    }

    /// An operator's dismissal reaches every node with members of the room: returns how
    /// many members there are behind links (their nodes remove them).
    pub(super) fn dismiss_remote(&mut self, key: &RoomKey, reason: &str) -> usize {
        let Some(cascade) = self.cascade.as_mut() else {
            return 0;
        };
        let Some(room) = cascade.remote.get(key) else {
            return 0;
        };
        let mut links: Vec<ConnId> = room.members.values().map(|r| r.link).collect();
        links.sort_unstable();
        links.dedup();
        let count = room.members.len();
        for link in links {
            cascade.events.push_back((
                LinkTarget::One(link),
                CascadeEvent::Dismiss {
                    room: key.clone(),
                    reason: reason.to_owned(),
                },
            ));
        }
        count
    }

    /// Whether `conn` is a link.
    pub fn is_link(&self, conn: ConnId) -> bool {
        self.cascade
            .as_ref()
            .is_some_and(|c| c.links.contains_key(&conn))
    }

    /// Remote rooms this node knows members of, with the links they are behind.
    pub fn remote_room_links(&self) -> Vec<(RoomKey, Vec<ConnId>)> {
        let Some(cascade) = &self.cascade else {
            return Vec::new();
        };
        let mut out: Vec<_> = cascade
            .remote
            .iter()
            .map(|(key, room)| {
                let links: HashSet<ConnId> = room.members.values().map(|m| m.link).collect();
                let mut links: Vec<ConnId> = links.into_iter().collect();
                links.sort();
                (key.clone(), links)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}
