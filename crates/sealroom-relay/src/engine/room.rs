//! Rooms, members and connections as the core keeps them.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use sealroom_frame::control::{JoinOptions, MemberInfo, TrackInfo};
use sealroom_frame::envelope::{MemberId, TrackId};

use super::{ConnId, Now, RoomKey};
use crate::config::Limits;
use crate::ratelimit::TokenBucket;
use crate::ticket::Grants;

/// Bytes of roster entries `Joined` carries at most; the rest of the roster follows as
/// `MemberJoined` messages. Leaves room under the control message limit for the rest of
/// `Joined`.
pub(super) const ROSTER_BUDGET: usize = sealroom_frame::control::MAX_CONTROL_LEN - 4096;

/// An upper bound of the encoded length of one roster entry: the user id, and a few bytes
/// for the member id, each track and the length prefixes.
pub(super) fn roster_entry_len(info: &MemberInfo) -> usize {
    info.user
        .len()
        .saturating_add(info.tracks.len().saturating_mul(8))
        .saturating_add(16)
}

/// How often at most one kind of feedback error is sent to one member.
pub(super) const FEEDBACK_INTERVAL: Duration = Duration::from_secs(1);

/// Delay suggested to clients in `GoAway` before reconnecting.
pub(super) const GO_AWAY_RECONNECT_MS: u32 = 1000;

#[derive(Debug)]
pub(super) enum ConnPhase {
    /// Connected, waiting for `Join`.
    Connected,
    /// A member of `room`.
    Joined { room: RoomKey, member: MemberId },
}

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) phase: ConnPhase,
    /// Whether `GoAway` was sent.
    pub(super) told_to_go: bool,
    /// Incoming streams this connection may still open.
    pub(super) streams: TokenBucket,
    /// When `RateLimited` for too many streams was last sent (before or after joining).
    pub(super) streams_feedback: Option<Instant>,
    /// The source address, for per-address join limits (`None`: not told).
    pub(super) source: Option<IpAddr>,
    /// Forged or malformed frames this connection may still send.
    pub(super) bad_frames: TokenBucket,
}

#[derive(Debug)]
pub(super) enum Subscriptions {
    /// Everything except these.
    AllExcept(HashSet<(MemberId, TrackId)>),
    /// Only these.
    Only(HashSet<(MemberId, TrackId)>),
}

impl Subscriptions {
    pub(super) fn wants(&self, member: MemberId, track: TrackId) -> bool {
        match self {
            Self::AllExcept(except) => !except.contains(&(member, track)),
            Self::Only(only) => only.contains(&(member, track)),
        }
    }

    pub(super) fn set(&mut self, member: MemberId, track: TrackId, subscribed: bool, bound: usize) {
        let (set, insert) = match self {
            Self::AllExcept(except) => (except, !subscribed),
            Self::Only(only) => (only, subscribed),
        };
        if insert {
            if set.len() < bound {
                set.insert((member, track));
            }
        } else {
            set.remove(&(member, track));
        }
    }

    pub(super) fn forget_member(&mut self, member: MemberId) {
        let (Self::AllExcept(set) | Self::Only(set)) = self;
        set.retain(|(m, _)| *m != member);
    }

    pub(super) fn forget_track(&mut self, member: MemberId, track: TrackId) {
        let (Self::AllExcept(set) | Self::Only(set)) = self;
        set.remove(&(member, track));
    }
}

#[derive(Debug)]
pub(super) struct Member {
    pub(super) conn: ConnId,
    pub(super) user: String,
    pub(super) grants: Grants,
    /// Joined with the `record` grant: receives every track, publishes nothing, and is
    /// announced as a recorder. Fixed for the session (a refreshed ticket cannot change it).
    pub(super) recorder: bool,
    pub(super) ticket_exp: u64,
    pub(super) joined_unix_secs: u64,
    pub(super) tracks: Vec<TrackInfo>,
    pub(super) subscriptions: Subscriptions,
    pub(super) data_messages: TokenBucket,
    pub(super) data_bytes: TokenBucket,
    pub(super) media_bytes: TokenBucket,
    pub(super) control_messages: TokenBucket,
    /// When each kind of feedback error was last sent, indexed by [`ErrorCode::index`].
    pub(super) feedback: [Option<Instant>; 32],
    /// When this member (as a publisher) was last asked for a keyframe, per video track;
    /// at most one entry per published track.
    pub(super) keyframe_asked: Vec<(TrackId, Instant)>,
    /// Data tracks whose stream ended (and so were unpublished) while a `TrackPublished`
    /// for them may still be on its way on the control stream; at most
    /// `max_tracks_per_member`, oldest forgotten first.
    pub(super) ended_data_tracks: VecDeque<TrackId>,
    /// Leading pieces of this member's next published group info (`MlsGroupInfoPart`),
    /// at most `max_mls_group_info_len` bytes.
    pub(super) mls_parts: super::mls::StagedGroupInfo,
}

impl Member {
    /// A member entering at `now` with a verified ticket's user, grants and expiry.
    pub(super) fn new(
        conn: ConnId,
        user: String,
        grants: Grants,
        ticket_exp: u64,
        options: &JoinOptions,
        limits: &Limits,
        now: Now,
    ) -> Self {
        // A recorder receives every track of every member, present and future, whatever
        // it asked for.
        let subscriptions = if options.auto_subscribe || grants.record {
            Subscriptions::AllExcept(HashSet::new())
        } else {
            Subscriptions::Only(HashSet::new())
        };
        Self {
            conn,
            user,
            grants,
            recorder: grants.record,
            ticket_exp,
            joined_unix_secs: now.unix_secs,
            tracks: Vec::new(),
            subscriptions,
            data_messages: TokenBucket::new(
                limits.data_messages_per_sec,
                limits.data_messages_burst,
                now.instant,
            ),
            data_bytes: TokenBucket::new(
                limits.data_bytes_per_sec,
                limits.data_bytes_burst,
                now.instant,
            ),
            media_bytes: TokenBucket::new(
                limits.media_bytes_per_sec,
                limits.media_bytes_burst,
                now.instant,
            ),
            control_messages: TokenBucket::new(
                limits.control_messages_per_sec,
                limits.control_messages_per_sec.saturating_mul(2),
                now.instant,
            ),
            feedback: [None; 32],
            keyframe_asked: Vec::new(),
            ended_data_tracks: VecDeque::new(),
            mls_parts: super::mls::StagedGroupInfo::default(),
        }
    }

    pub(super) fn info(&self, member: MemberId) -> MemberInfo {
        MemberInfo {
            member,
            user: self.user.clone(),
            tracks: self.tracks.clone(),
        }
    }

    /// Whether this member receives frames at all: it may subscribe, or it records.
    pub(super) const fn receives(&self) -> bool {
        self.grants.subscribe || self.recorder
    }

    pub(super) fn track(&self, track: TrackId) -> Option<&TrackInfo> {
        self.tracks.iter().find(|t| t.track == track)
    }
}

#[derive(Debug)]
pub(super) struct Room {
    pub(super) members: BTreeMap<MemberId, Member>,
    pub(super) next_member: MemberId,
    pub(super) created_unix_secs: u64,
    /// The MLS group state, once a member published one (MLS mode).
    pub(super) mls: Option<super::mls::MlsRoom>,
}

impl Room {
    pub(super) fn allocate_member_id(&mut self) -> MemberId {
        // Counts up from 1; on wrap-around (4 billion joins into one room) skips ids in use.
        loop {
            let id = self.next_member;
            self.next_member = self.next_member.checked_add(1).unwrap_or(1);
            if id != 0 && !self.members.contains_key(&id) {
                return id;
            }
        }
    }

    /// The roster a new member is told: as much as fits `Joined` in one control message,
    /// and the rest, which follows as `MemberJoined` messages, so no message is ever over
    /// its limit.
    pub(super) fn roster(&self) -> (Vec<MemberInfo>, Vec<MemberInfo>) {
        let mut roster: Vec<MemberInfo> = Vec::new();
        let mut rest: Vec<MemberInfo> = Vec::new();
        let mut roster_len = 0usize;
        for (member_id, m) in &self.members {
            let info = m.info(*member_id);
            let len = roster_entry_len(&info);
            if rest.is_empty() && roster_len.saturating_add(len) <= ROSTER_BUDGET {
                roster_len += len;
                roster.push(info);
            } else {
                rest.push(info);
            }
        }
        (roster, rest)
    }

    pub(super) fn member_by_user(&self, user: &str) -> Option<MemberId> {
        self.members
            .iter()
            .find_map(|(id, m)| (m.user == user).then_some(*id))
    }
}

#[derive(Debug)]
pub(super) struct AppState {
    pub(super) rooms: usize,
    pub(super) joins: TokenBucket,
}
