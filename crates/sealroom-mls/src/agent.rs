//! The member side of the delivery-service protocol, without I/O: which MLS control
//! messages to send and what the relay's answers mean, as quinn-proto drives a
//! connection. The client feeds it the room's roster and the relay's MLS messages and
//! sends what [`MlsAgent::poll_transmit`] returns; time is an argument.
//!
//! Rules (`docs/MLS.md`):
//!
//! - **Join**: ask the relay for the group state; if there is none, create the group and
//!   publish it; else join by external commit from the relay's group info. Refused
//!   (another commit won, or another member created the group first): ask again.
//! - **Removal**: the group follows the room. A leaf whose credential names no user in the
//!   room's roster (the member left, timed out or was kicked) is removed by the remaining
//!   member with the lowest leaf index at once; every other member commits the same
//!   removal after `removal_backoff` times its rank if it is still needed. The relay's
//!   first-commit-wins rule makes the duplicates harmless.
//! - **Catch-up**: a commit for another position than ours means we missed some: rejoin
//!   by external commit (the commit removes our old leaf). So does being removed while
//!   still in the room.
//! - **Relay restart**: after a reconnect the agent asks for the state; a relay with none
//!   adopts the first member's published state. A member keeps its group only if the
//!   relay's is that very state: the same position, and a group info with the same group
//!   context (epoch, tree and transcript hash) as its own. Others rejoin, including a
//!   member shown another group at its position (one created anew, with the same group
//!   id).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use sealroom_frame::control::{ControlMessage, MLS_PART_LEN, MemberInfo, MlsRefusal};
use sealroom_frame::envelope::MemberId;

use crate::error::MlsError;
use crate::keys::EpochKeys;
use crate::member::{Commit, GroupMember, MlsMember};

/// Settings of an [`MlsAgent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentConfig {
    removal_backoff: Duration,
    max_group_info_len: usize,
    rejoin_quiet: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            removal_backoff: Duration::from_secs(2),
            max_group_info_len: 1024 * 1024,
            rejoin_quiet: Duration::from_secs(5),
        }
    }
}

impl AgentConfig {
    /// How long a member that is not the designated committer waits, per rank, before it
    /// commits a needed removal itself (default 2 s).
    #[must_use]
    pub fn removal_backoff(mut self, backoff: Duration) -> Self {
        self.removal_backoff = backoff;
        self
    }

    /// How long after joining the room (or joining it again after a reconnect) this
    /// member removes no one (default 5 s). After a relay restart the members come back
    /// one by one; without this wait the first one back would remove every member not yet
    /// reconnected, and they would all have to rejoin.
    #[must_use]
    pub fn rejoin_quiet(mut self, quiet: Duration) -> Self {
        self.rejoin_quiet = quiet;
        self
    }

    /// Largest group info this member takes from the relay, in pieces
    /// (`MlsGroupInfoPart`) and in all (default 1 MiB, about 4,000 members); a larger one
    /// is refused with [`MlsError::GroupInfoTooLarge`] (reported as
    /// [`MlsEvent::CommitIgnored`]) and the member stays out of the group.
    #[must_use]
    pub fn max_group_info_len(mut self, max: usize) -> Self {
        self.max_group_info_len = max;
        self
    }
}

/// What the agent tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MlsEvent {
    /// The group moved to a new epoch: new keys. `members` lists each leaf with the user
    /// its credential names, and whether that user is in the room's roster.
    EpochChanged {
        /// The new epoch.
        epoch: u64,
        /// The group's members.
        members: Vec<CheckedMember>,
    },
    /// This member is out of the group (removed, or behind): it rejoins by itself.
    Rejoining,
    /// A commit the relay accepted did not apply (malformed, forged, for another group);
    /// every honest member ignores it alike.
    CommitIgnored {
        /// The member that sent it.
        from: MemberId,
        /// Why it did not apply.
        reason: String,
    },
    /// The relay refused an MLS message of this member for a reason other than a lost
    /// race (too large, empty).
    Refused(MlsRefusal),
}

/// A group member as the application can check it: the credential's user id against the
/// room's roster (the ticket user ids the relay admitted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedMember {
    /// Leaf index and credential user id.
    pub member: GroupMember,
    /// Whether a member of the room has that user id.
    pub in_roster: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for `MlsState`.
    Syncing,
    /// Published a new group, waiting for the answer.
    Creating,
    /// Sent an external join, waiting for the answer.
    Joining,
    /// In the group, nothing pending.
    Member,
    /// In the group, a commit of ours pending.
    Committing,
    /// In the group; our commit lost to another and its refusal is on the way.
    Lost,
    /// Reconnected with a group: waiting for `MlsState` to compare positions and group
    /// state.
    Resuming,
    /// Reconnected to a relay without the group's state: offered ours.
    Republishing,
}

/// One member's delivery-service protocol state.
#[derive(Debug)]
pub struct MlsAgent {
    member: MlsMember,
    group_id: Vec<u8>,
    config: AgentConfig,
    phase: Phase,
    position: u64,
    roster: BTreeMap<MemberId, String>,
    /// The position at which each leaf was (last) added, for choosing among two leaves
    /// of one user.
    added_at: HashMap<u32, u64>,
    removal_due: Option<Instant>,
    /// Removals wait until then after a (re)join ([`AgentConfig::rejoin_quiet`]).
    quiet: Option<Instant>,
    outbox: VecDeque<ControlMessage>,
    events: VecDeque<MlsEvent>,
    /// Leading pieces of the group info of the next `MlsState`, at most
    /// `max_group_info_len` bytes; `None` once the pieces outgrew it.
    parts: Option<Vec<u8>>,
}

impl MlsAgent {
    /// An agent for `user` (the ticket's user id) in the room whose MLS group id is
    /// `group_id`.
    ///
    /// # Errors
    /// As [`MlsMember::new`].
    pub fn new(user: &str, group_id: &[u8], config: AgentConfig) -> Result<Self, MlsError> {
        Ok(Self::with_member(MlsMember::new(user)?, group_id, config))
    }

    /// An agent for a member that may already hold a group state (one restored, or built
    /// out of band with [`MlsMember::add`]). Holding one, the agent offers it to a relay
    /// that has none after [`Self::handle_joined`], as after a relay restart.
    pub fn with_member(member: MlsMember, group_id: &[u8], config: AgentConfig) -> Self {
        Self {
            member,
            group_id: group_id.to_vec(),
            config,
            phase: Phase::Syncing,
            position: 0,
            roster: BTreeMap::new(),
            added_at: HashMap::new(),
            removal_due: None,
            quiet: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            parts: Some(Vec::new()),
        }
    }

    /// The room was joined (or joined again after a reconnect): this member is `me`, the
    /// others are `roster`, at `now`. Asks the relay for the group state. For
    /// [`AgentConfig::rejoin_quiet`] from `now` it removes no one, so that members still
    /// reconnecting (after a relay restart) keep their leaves.
    pub fn handle_joined(&mut self, me: MemberId, roster: &[MemberInfo], now: Instant) {
        self.roster.clear();
        self.parts = Some(Vec::new());
        self.quiet = (!self.config.rejoin_quiet.is_zero()).then(|| now + self.config.rejoin_quiet);
        self.roster.insert(me, self.member.user().to_owned());
        for info in roster {
            self.roster.insert(info.member, info.user.clone());
        }
        self.phase = if self.member.in_group() {
            if self.member.has_pending_commit() {
                self.member.discard_commit();
            }
            Phase::Resuming
        } else {
            Phase::Syncing
        };
        self.outbox.push_back(ControlMessage::MlsSync);
    }

    /// A member entered the room.
    pub fn handle_member_joined(&mut self, info: &MemberInfo) {
        self.roster.insert(info.member, info.user.clone());
    }

    /// A member left the room: its leaf is due for removal.
    pub fn handle_member_left(&mut self, member: MemberId, now: Instant) {
        self.roster.remove(&member);
        self.reconcile(now);
    }

    /// An MLS message from the relay (others are ignored).
    pub fn handle_control(&mut self, message: &ControlMessage, now: Instant) {
        match message {
            ControlMessage::MlsGroupInfoPart { bytes } => {
                let max = self.config.max_group_info_len;
                self.parts = self
                    .parts
                    .take()
                    .filter(|parts| parts.len().saturating_add(bytes.len()) <= max)
                    .map(|mut parts| {
                        parts.extend_from_slice(bytes);
                        parts
                    });
            }
            ControlMessage::MlsState {
                position,
                group_info,
            } => {
                let parts = self.parts.replace(Vec::new());
                let max = self.config.max_group_info_len;
                let whole = match (parts, group_info) {
                    (_, None) => Ok(None),
                    (Some(mut parts), Some(last))
                        if parts.len().saturating_add(last.len()) <= max =>
                    {
                        parts.extend_from_slice(last);
                        Ok(Some(parts))
                    }
                    (_, Some(_)) => Err(MlsError::GroupInfoTooLarge { max }),
                };
                match whole {
                    Ok(info) => self.on_state(*position, info.as_deref()),
                    Err(err) => self.unjoinable(&err),
                }
            }
            ControlMessage::MlsAccepted { position } => self.on_accepted(*position, now),
            ControlMessage::MlsRefused { position, reason } => {
                self.on_refused(*position, *reason, now);
            }
            ControlMessage::MlsCommitted {
                member,
                position,
                commit,
            } => self.on_committed(*member, *position, commit, now),
            _ => {}
        }
    }

    /// Fire a due removal.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(until) = self.quiet
            && now >= until
        {
            self.quiet = None;
            self.reconcile(now);
        }
        if self.removal_due.is_some_and(|due| now >= due) {
            self.removal_due = None;
            self.reconcile_now(now, true);
        }
    }

    /// When [`Self::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.removal_due, self.quiet) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next control message to send to the relay.
    pub fn poll_transmit(&mut self) -> Option<ControlMessage> {
        self.outbox.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<MlsEvent> {
        self.events.pop_front()
    }

    /// Whether this member is in the group with nothing pending.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Member | Phase::Committing | Phase::Lost)
            && self.member.in_group()
    }

    /// The current epoch's SFrame keys.
    ///
    /// # Errors
    /// [`MlsError::NoGroup`] while not in the group.
    pub fn epoch_keys(&self) -> Result<EpochKeys, MlsError> {
        self.member.epoch_keys()
    }

    /// The MLS state (epoch, leaf index, members).
    pub fn member(&self) -> &MlsMember {
        &self.member
    }

    /// The relay position this member is at.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The group's members with their credentials checked against the roster.
    pub fn checked_members(&self) -> Vec<CheckedMember> {
        self.member
            .members()
            .into_iter()
            .map(|member| CheckedMember {
                in_roster: self.roster.values().any(|u| *u == member.user),
                member,
            })
            .collect()
    }

    /// Commit a fresh leaf key for this member (moves everyone to a new epoch).
    ///
    /// # Errors
    /// [`MlsError::NoGroup`] or [`MlsError::CommitPending`] when not ready.
    pub fn update(&mut self) -> Result<(), MlsError> {
        if self.phase != Phase::Member {
            return Err(MlsError::CommitPending);
        }
        let commit = self.member.update()?;
        self.send_commit(commit);
        Ok(())
    }

    fn send_commit(&mut self, commit: Commit) {
        self.phase = Phase::Committing;
        let position = self.position;
        self.send_with_group_info(&commit.group_info, |group_info| ControlMessage::MlsCommit {
            position,
            commit: commit.commit,
            group_info,
        });
    }

    /// Queue `message` with `group_info` as its group info: whole when it fits one piece,
    /// else its leading pieces first (`MlsGroupInfoPart`) and the last in `message`, so
    /// that every message stays within the relay's `max_mls_message_len` whatever the
    /// group's size.
    fn send_with_group_info(
        &mut self,
        group_info: &[u8],
        message: impl FnOnce(Vec<u8>) -> ControlMessage,
    ) {
        let mut rest = group_info;
        while rest.len() > MLS_PART_LEN {
            let (head, tail) = rest.split_at(MLS_PART_LEN);
            self.outbox.push_back(ControlMessage::MlsGroupInfoPart {
                bytes: head.to_vec(),
            });
            rest = tail;
        }
        self.outbox.push_back(message(rest.to_vec()));
    }

    /// The relay's group info cannot be joined from (too large, or does not verify):
    /// nothing to join until the next commit replaces it.
    fn unjoinable(&mut self, err: &MlsError) {
        self.phase = Phase::Syncing;
        self.events.push_back(MlsEvent::CommitIgnored {
            from: 0,
            reason: err.to_string(),
        });
    }

    fn rejoin(&mut self) {
        self.member.forget_group();
        self.phase = Phase::Syncing;
        self.removal_due = None;
        self.events.push_back(MlsEvent::Rejoining);
        self.outbox.push_back(ControlMessage::MlsSync);
    }

    fn on_state(&mut self, position: u64, group_info: Option<&[u8]>) {
        match (self.phase, group_info) {
            (Phase::Resuming, None) => {
                // The relay lost the room's state (a restart): offer ours.
                if let Ok(info) = self.member.group_info() {
                    self.phase = Phase::Republishing;
                    let position = self.position;
                    self.send_with_group_info(&info, |group_info| ControlMessage::MlsPublish {
                        position,
                        group_info,
                    });
                } else {
                    self.rejoin();
                }
            }
            (Phase::Resuming, Some(info))
                if position == self.position && self.member.holds_state_of(info) =>
            {
                self.phase = Phase::Member;
            }
            (Phase::Resuming, Some(info)) => {
                // Back after a reconnect, and the relay's group is not the one we hold:
                // we missed commits, or it is another group at our position (created
                // anew after a restart, or on another node, with the same group id).
                self.events.push_back(MlsEvent::Rejoining);
                self.join(position, info);
            }
            (Phase::Syncing, Some(info)) => self.join(position, info),
            (Phase::Syncing, None) => match self.member.create_group(&self.group_id) {
                Ok(info) => {
                    self.phase = Phase::Creating;
                    self.send_with_group_info(&info, |group_info| ControlMessage::MlsPublish {
                        position: 0,
                        group_info,
                    });
                }
                Err(err) => self.events.push_back(MlsEvent::CommitIgnored {
                    from: 0,
                    reason: err.to_string(),
                }),
            },
            _ => {}
        }
    }

    fn join(&mut self, position: u64, info: &[u8]) {
        match self.member.join_external(info) {
            Ok(commit) => {
                self.position = position;
                self.phase = Phase::Joining;
                self.send_with_group_info(&commit.group_info, |group_info| {
                    ControlMessage::MlsCommit {
                        position,
                        commit: commit.commit,
                        group_info,
                    }
                });
            }
            // The relay's group info does not verify (a hostile member's upload).
            Err(err) => self.unjoinable(&err),
        }
    }

    fn on_accepted(&mut self, position: u64, now: Instant) {
        match self.phase {
            Phase::Republishing => {
                self.phase = Phase::Member;
                self.reconcile(now);
            }
            Phase::Creating => {
                self.position = position;
                self.phase = Phase::Member;
                self.epoch_changed();
                self.reconcile(now);
            }
            Phase::Joining | Phase::Committing => {
                let before = self.leaves();
                if self.member.confirm_commit().is_ok() {
                    self.position = position;
                    self.phase = Phase::Member;
                    self.note_added(&before);
                    self.epoch_changed();
                    self.reconcile(now);
                } else {
                    self.rejoin();
                }
            }
            _ => {}
        }
    }

    fn on_refused(&mut self, position: u64, reason: MlsRefusal, now: Instant) {
        match (self.phase, reason) {
            (Phase::Lost, MlsRefusal::Stale) => {
                // The refusal of the commit that lost: decide again on the new epoch.
                self.phase = Phase::Member;
                self.reconcile(now);
            }
            (Phase::Committing, MlsRefusal::Stale) => {
                // The winner arrived first and was applied; decide again on top of it.
                self.member.discard_commit();
                self.phase = Phase::Member;
                if position != self.position {
                    self.rejoin();
                } else {
                    self.reconcile(now);
                }
            }
            (Phase::Republishing, MlsRefusal::Exists | MlsRefusal::Stale) => {
                // Another member offered the state first: compare positions with it.
                self.phase = Phase::Resuming;
                self.outbox.push_back(ControlMessage::MlsSync);
            }
            (Phase::Republishing, other) => {
                // The relay cannot keep our state (too large for its bound): offering it
                // again would only be refused again. Keep the group and say so; the next
                // reconnect offers it anew.
                self.phase = Phase::Member;
                self.events.push_back(MlsEvent::Refused(other));
            }
            (Phase::Creating | Phase::Joining, MlsRefusal::Stale | MlsRefusal::Exists) => {
                self.member.forget_group();
                self.phase = Phase::Syncing;
                self.outbox.push_back(ControlMessage::MlsSync);
            }
            (_, MlsRefusal::NoGroup) => {
                self.member.forget_group();
                self.phase = Phase::Syncing;
                self.outbox.push_back(ControlMessage::MlsSync);
            }
            (_, MlsRefusal::Stale) => {}
            (phase, other) => {
                if phase == Phase::Committing {
                    self.member.discard_commit();
                    self.phase = Phase::Member;
                }
                self.events.push_back(MlsEvent::Refused(other));
            }
        }
    }

    fn on_committed(&mut self, from: MemberId, position: u64, commit: &[u8], now: Instant) {
        match self.phase {
            Phase::Member | Phase::Committing | Phase::Lost => {}
            // Not in the group (yet): our own join or publish is answered next.
            _ => return,
        }
        if position != self.position {
            self.rejoin();
            return;
        }
        self.position = position.saturating_add(1);
        if self.phase == Phase::Committing {
            // Our commit for this position lost: its refusal follows, and only then do we
            // decide again (a new commit now would be taken for the refused one).
            self.member.discard_commit();
            self.phase = Phase::Lost;
        }
        let before = self.leaves();
        match self.member.handle_commit(commit) {
            Ok(change) if change.still_member => {
                self.note_added(&before);
                self.epoch_changed();
                self.reconcile(now);
            }
            Ok(_) => self.rejoin(),
            Err(err) => self.events.push_back(MlsEvent::CommitIgnored {
                from,
                reason: err.to_string(),
            }),
        }
    }

    fn leaves(&self) -> Vec<u32> {
        self.member.members().iter().map(|m| m.leaf).collect()
    }

    fn note_added(&mut self, before: &[u32]) {
        let now_leaves = self.leaves();
        self.added_at.retain(|leaf, _| now_leaves.contains(leaf));
        for leaf in now_leaves {
            if !before.contains(&leaf) {
                self.added_at.insert(leaf, self.position);
            }
        }
    }

    fn epoch_changed(&mut self) {
        if let Some(epoch) = self.member.epoch() {
            self.events.push_back(MlsEvent::EpochChanged {
                epoch,
                members: self.checked_members(),
            });
        }
    }

    /// Leaves that the room no longer backs: users not in the roster, and every leaf but
    /// the newest of a user with several.
    fn stale_leaves(&self) -> Vec<u32> {
        let mut newest: HashMap<&str, (u64, u32)> = HashMap::new();
        let members = self.member.members();
        let mut stale = Vec::new();
        for m in &members {
            if !self.roster.values().any(|u| *u == m.user) {
                stale.push(m.leaf);
                continue;
            }
            let rank = (self.added_at.get(&m.leaf).copied().unwrap_or(0), m.leaf);
            if let Some(old) = newest.insert(&m.user, rank) {
                let (keep, drop) = if old > rank { (old, rank) } else { (rank, old) };
                newest.insert(&m.user, keep);
                stale.push(drop.1);
            }
        }
        let mine = self.member.leaf_index();
        stale.retain(|leaf| Some(*leaf) != mine);
        stale.sort_unstable();
        stale
    }

    fn reconcile(&mut self, now: Instant) {
        self.reconcile_now(now, false);
    }

    fn reconcile_now(&mut self, now: Instant, due: bool) {
        if self.phase != Phase::Member {
            return;
        }
        match self.quiet {
            Some(until) if now < until => return,
            Some(_) => self.quiet = None,
            None => {}
        }
        let stale = self.stale_leaves();
        if stale.is_empty() {
            self.removal_due = None;
            return;
        }
        let Some(mine) = self.member.leaf_index() else {
            return;
        };
        let rank = self
            .member
            .members()
            .iter()
            .filter(|m| !stale.contains(&m.leaf) && m.leaf < mine)
            .count();
        if rank == 0 || due {
            match self.member.remove(&stale) {
                Ok(commit) => self.send_commit(commit),
                Err(err) => self.events.push_back(MlsEvent::CommitIgnored {
                    from: 0,
                    reason: err.to_string(),
                }),
            }
        } else if self.removal_due.is_none() {
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            self.removal_due = Some(now + self.config.removal_backoff.saturating_mul(rank));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::keys::{MlsOpener, MlsOpenerConfig};

    const ME: MemberId = 1;

    /// Whether a frame sealed under `a` (leaf 0) opens under `b`: equal keys.
    fn same_keys(a: &EpochKeys, b: &EpochKeys) -> bool {
        let mut sealer = a.sealer(0, 0).expect("fits");
        let mut frame = Vec::new();
        sealer.seal(b"m", b"probe", &mut frame).expect("sealed");
        let mut opener = MlsOpener::new(b.clone(), MlsOpenerConfig::default());
        opener.open(b"m", &frame, &mut Vec::new()).is_ok()
    }

    /// An agent that created the room's group `room` on a relay without one: a member at
    /// position 0, with its events and messages drained.
    fn creator(now: Instant) -> MlsAgent {
        let mut agent = MlsAgent::new("alice", b"room", AgentConfig::default()).expect("agent");
        agent.handle_joined(ME, &[], now);
        assert_eq!(agent.poll_transmit(), Some(ControlMessage::MlsSync));
        let state = ControlMessage::MlsState {
            position: 0,
            group_info: None,
        };
        agent.handle_control(&state, now);
        assert!(matches!(
            agent.poll_transmit(),
            Some(ControlMessage::MlsPublish { position: 0, .. })
        ));
        agent.handle_control(&ControlMessage::MlsAccepted { position: 0 }, now);
        assert!(agent.is_ready());
        while agent.poll_event().is_some() {}
        assert_eq!(agent.poll_transmit(), None);
        agent
    }

    /// `agent` reconnects (as member `ME + 1`) and the relay answers its `MlsSync` with
    /// `group_info` at `position`.
    fn resume(agent: &mut MlsAgent, position: u64, group_info: Vec<u8>, now: Instant) {
        agent.handle_joined(ME + 1, &[], now);
        assert_eq!(agent.poll_transmit(), Some(ControlMessage::MlsSync));
        assert!(!agent.is_ready());
        let state = ControlMessage::MlsState {
            position,
            group_info: Some(group_info),
        };
        agent.handle_control(&state, now);
    }

    #[test]
    fn a_resuming_member_shown_its_own_group_at_its_position_keeps_it() {
        let now = Instant::now();
        let mut agent = creator(now);
        let keys = agent.epoch_keys().expect("keys");
        let info = agent.member().group_info().expect("info");
        resume(&mut agent, 0, info, now);
        assert!(agent.is_ready());
        assert_eq!(agent.poll_transmit(), None);
        assert_eq!(agent.poll_event(), None);
        assert_eq!(agent.member().epoch(), Some(0));
        assert!(same_keys(&keys, &agent.epoch_keys().expect("keys")));
    }

    #[test]
    fn a_resuming_member_shown_another_group_at_its_position_rejoins_it() {
        let now = Instant::now();
        let mut agent = creator(now);
        // After a restart another member created the group anew: same group id, same
        // position and epoch, another state.
        let mut bob = MlsMember::new("bob").expect("member");
        let other = bob.create_group(b"room").expect("group");
        assert_eq!(agent.member().epoch(), bob.epoch());
        resume(&mut agent, 0, other, now);
        assert!(!agent.is_ready());
        assert_eq!(agent.poll_event(), Some(MlsEvent::Rejoining));
        let Some(ControlMessage::MlsCommit {
            position: 0,
            commit,
            group_info,
        }) = agent.poll_transmit()
        else {
            panic!("an external commit into the relay's group");
        };
        assert_eq!(agent.poll_transmit(), None);
        // The commit adds Alice to Bob's group; once the relay accepts it both hold the
        // same state and derive the same keys.
        let change = bob.handle_commit(&commit).expect("bob applies it");
        assert_eq!(change.epoch, 1);
        agent.handle_control(&ControlMessage::MlsAccepted { position: 1 }, now);
        assert!(agent.is_ready());
        assert!(bob.holds_state_of(&group_info));
        assert!(
            agent
                .member()
                .holds_state_of(&bob.group_info().expect("info"))
        );
        let (alice_keys, bob_keys) = (
            agent.epoch_keys().expect("keys"),
            bob.epoch_keys().expect("keys"),
        );
        assert!(same_keys(&alice_keys, &bob_keys));
        assert!(same_keys(&bob_keys, &alice_keys));
        let users: Vec<String> = bob.members().into_iter().map(|m| m.user).collect();
        assert_eq!(users, ["bob", "alice"]);
    }

    #[test]
    fn a_resuming_member_behind_the_relay_rejoins_even_with_a_matching_group_info() {
        // The relay is at another position than the member's: even the member's own
        // state there means commits were counted that it did not see.
        let now = Instant::now();
        let mut agent = creator(now);
        let info = agent.member().group_info().expect("info");
        resume(&mut agent, 3, info, now);
        assert_eq!(agent.poll_event(), Some(MlsEvent::Rejoining));
        assert!(matches!(
            agent.poll_transmit(),
            Some(ControlMessage::MlsCommit { position: 3, .. })
        ));
    }

    /// `agent`, out of the group and syncing, hears that the room has no group: it
    /// creates the group under the room's id, and the relay accepts it. Returns the group
    /// info it published.
    fn creates_the_group(agent: &mut MlsAgent, now: Instant) -> Vec<u8> {
        assert!(!agent.is_ready());
        let state = ControlMessage::MlsState {
            position: 0,
            group_info: None,
        };
        agent.handle_control(&state, now);
        assert_eq!(agent.poll_event(), None, "no CommitIgnored");
        let Some(ControlMessage::MlsPublish {
            position: 0,
            group_info,
        }) = agent.poll_transmit()
        else {
            panic!("the member publishes a new group");
        };
        assert_eq!(agent.poll_transmit(), None);
        agent.handle_control(&ControlMessage::MlsAccepted { position: 0 }, now);
        assert!(agent.is_ready());
        assert_eq!(agent.member().epoch(), Some(0));
        assert!(agent.member().holds_state_of(&group_info));
        assert!(matches!(
            agent.poll_event(),
            Some(MlsEvent::EpochChanged { epoch: 0, .. })
        ));
        group_info
    }

    #[test]
    fn a_member_rejoining_after_missed_commits_creates_the_group_if_the_relay_has_none() {
        let now = Instant::now();
        let mut agent = creator(now);
        let old = agent.member().group_info().expect("info");
        // A commit for a later position: the member missed some and rejoins.
        let missed = ControlMessage::MlsCommitted {
            member: ME + 1,
            position: 4,
            commit: vec![1, 2, 3],
        };
        agent.handle_control(&missed, now);
        assert_eq!(agent.poll_event(), Some(MlsEvent::Rejoining));
        assert_eq!(agent.poll_transmit(), Some(ControlMessage::MlsSync));
        // Meanwhile the relay lost the room's state.
        let info = creates_the_group(&mut agent, now);
        assert!(!agent.member().holds_state_of(&old));
        // A newcomer joins the new group from what the member published.
        let mut bob = MlsMember::new("bob").expect("member");
        let commit = bob.join_external(&info).expect("joins");
        bob.confirm_commit().expect("accepted");
        let relay = ControlMessage::MlsCommitted {
            member: ME + 1,
            position: 0,
            commit: commit.commit,
        };
        agent.handle_control(&relay, now);
        assert!(same_keys(
            &agent.epoch_keys().expect("keys"),
            &bob.epoch_keys().expect("keys")
        ));
    }

    #[test]
    fn a_resuming_member_whose_rejoin_finds_the_group_gone_creates_it() {
        let now = Instant::now();
        let mut agent = creator(now);
        // Shown another group at its position, the member joins it by external commit...
        let mut bob = MlsMember::new("bob").expect("member");
        let other = bob.create_group(b"room").expect("group");
        resume(&mut agent, 0, other, now);
        assert_eq!(agent.poll_event(), Some(MlsEvent::Rejoining));
        assert!(matches!(
            agent.poll_transmit(),
            Some(ControlMessage::MlsCommit { position: 0, .. })
        ));
        // ...but the relay lost the room's state before the commit came in.
        let refused = ControlMessage::MlsRefused {
            position: 0,
            reason: MlsRefusal::NoGroup,
        };
        agent.handle_control(&refused, now);
        assert_eq!(agent.poll_transmit(), Some(ControlMessage::MlsSync));
        let info = creates_the_group(&mut agent, now);
        assert!(!bob.holds_state_of(&info));
    }
}
