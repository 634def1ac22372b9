//! The relay as the MLS delivery service of a room, holding no key: it keeps the room's
//! position (how many commits it accepted) and the latest group info, orders commits
//! (the first commit for a position wins, later ones are refused as stale), and carries
//! MLS messages as opaque bytes. It parses none of them: it cannot tell a valid commit
//! from garbage, so members validate every commit themselves and all honest members
//! ignore an invalid one alike (`docs/MLS.md`).

use sealroom_frame::control::{ControlMessage, MLS_PART_LEN, MlsRefusal};
use sealroom_frame::envelope::MemberId;

use super::{Output, RelayCore, RoomKey};

/// A room's MLS group state as the relay keeps it.
#[derive(Debug)]
pub(super) struct MlsRoom {
    /// Commits accepted so far (counting from the position the group was published at).
    position: u64,
    /// The group info of the latest epoch, as its committer sent it.
    group_info: Vec<u8>,
}

/// Leading pieces of a member's next group info, as `MlsGroupInfoPart` brought them.
#[derive(Debug, Default)]
pub(super) struct StagedGroupInfo {
    bytes: Vec<u8>,
    /// Set when a piece was refused (empty, over-long, or past the bound): the member's
    /// next `MlsPublish` or `MlsCommit` hears it, since its group info would be cut.
    refusal: Option<MlsRefusal>,
}

impl StagedGroupInfo {
    /// Take a piece, within `max_piece` bytes per piece and `max_total` in all.
    fn push(&mut self, piece: &[u8], max_piece: usize, max_total: usize) {
        if self.refusal.is_some() {
            return;
        }
        let refusal = if piece.is_empty() {
            Some(MlsRefusal::Empty)
        } else if piece.len() > max_piece
            || self.bytes.len().saturating_add(piece.len()) > max_total
        {
            Some(MlsRefusal::TooLarge)
        } else {
            None
        };
        if refusal.is_some() {
            self.refusal = refusal;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(piece);
        }
    }

    /// The whole group info with `last` as its final piece, or the refusal it earned.
    fn finish(self, last: Vec<u8>, max_total: usize) -> Result<Vec<u8>, MlsRefusal> {
        if let Some(refusal) = self.refusal {
            return Err(refusal);
        }
        if self.bytes.is_empty() {
            return Ok(last);
        }
        if self.bytes.len().saturating_add(last.len()) > max_total {
            return Err(MlsRefusal::TooLarge);
        }
        let mut whole = self.bytes;
        whole.extend_from_slice(&last);
        Ok(whole)
    }
}

/// What became of an MLS message, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MlsOutcome {
    /// The room's group state was sent (`MlsSync`).
    Synced,
    /// A group state was adopted for a room that had none (`MlsPublish`).
    Published,
    /// A commit won its position and was forwarded to the room.
    Committed,
    /// A piece of a group info was kept for the member's next publish or commit
    /// (`MlsGroupInfoPart`; a refused piece is counted when that message is refused).
    Part,
    /// Refused, with the reason the member heard.
    Refused(MlsRefusal),
}

impl MlsOutcome {
    /// Every outcome, for exporting each series at zero.
    pub const ALL: [Self; 9] = [
        Self::Synced,
        Self::Published,
        Self::Committed,
        Self::Part,
        Self::Refused(MlsRefusal::Stale),
        Self::Refused(MlsRefusal::Exists),
        Self::Refused(MlsRefusal::NoGroup),
        Self::Refused(MlsRefusal::TooLarge),
        Self::Refused(MlsRefusal::Empty),
    ];

    /// A stable label for metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Synced => "synced",
            Self::Published => "published",
            Self::Committed => "committed",
            Self::Part => "part",
            Self::Refused(MlsRefusal::Stale) => "stale",
            Self::Refused(MlsRefusal::Exists) => "exists",
            Self::Refused(MlsRefusal::NoGroup) => "no_group",
            Self::Refused(MlsRefusal::TooLarge) => "too_large",
            Self::Refused(MlsRefusal::Empty) => "empty",
            Self::Refused(_) => "refused",
        }
    }
}

impl RelayCore {
    /// An MLS message from `member` of the room `key` (`MlsSync`, `MlsPublish`,
    /// `MlsCommit` or `MlsGroupInfoPart`; anything else is not for this function and is
    /// ignored).
    pub(super) fn handle_mls(
        &mut self,
        key: &RoomKey,
        member: MemberId,
        message: ControlMessage,
    ) -> Option<MlsOutcome> {
        let max_len = self.limits.max_mls_message_len;
        let max_total = self.limits.max_mls_group_info_len;
        let room = self.rooms.get_mut(key)?;
        let me = room.members.get_mut(&member)?;
        let conn = me.conn;
        // Pieces apply to the member's next publish or commit, whatever becomes of it.
        let staged = match &message {
            ControlMessage::MlsGroupInfoPart { bytes } => {
                me.mls_parts
                    .push(bytes, MLS_PART_LEN.min(max_len), max_total);
                return Some(MlsOutcome::Part);
            }
            ControlMessage::MlsPublish { .. } | ControlMessage::MlsCommit { .. } => {
                std::mem::take(&mut me.mls_parts)
            }
            _ => StagedGroupInfo::default(),
        };
        let reply = |outputs: &mut std::collections::VecDeque<Output>, message| {
            outputs.push_back(Output::Send { conn, message });
        };
        let position = room.mls.as_ref().map_or(0, |m| m.position);
        let refuse = |reason| ControlMessage::MlsRefused { position, reason };
        let outcome = match message {
            ControlMessage::MlsSync => {
                let group_info = room.mls.as_ref().map(|m| m.group_info.as_slice());
                for message in state_messages(position, group_info, max_len) {
                    reply(&mut self.outputs, message);
                }
                MlsOutcome::Synced
            }
            ControlMessage::MlsPublish {
                position: published,
                group_info,
            } => {
                let whole = if room.mls.is_some() {
                    Err(MlsRefusal::Exists)
                } else {
                    check_len(max_len, 0, group_info.len())
                        .map_or_else(|| staged.finish(group_info, max_total), Err)
                };
                let group_info = match whole {
                    Ok(group_info) => group_info,
                    Err(reason) => {
                        reply(&mut self.outputs, refuse(reason));
                        return Some(MlsOutcome::Refused(reason));
                    }
                };
                room.mls = Some(MlsRoom {
                    position: published,
                    group_info,
                });
                reply(
                    &mut self.outputs,
                    ControlMessage::MlsAccepted {
                        position: published,
                    },
                );
                self.mls_group_created(key);
                MlsOutcome::Published
            }
            ControlMessage::MlsCommit {
                position: at,
                commit,
                group_info,
            } => {
                let whole = match &room.mls {
                    None => Err(MlsRefusal::NoGroup),
                    Some(state) if state.position != at => Err(MlsRefusal::Stale),
                    Some(_) => {
                        let refusal = if commit.is_empty() {
                            Some(MlsRefusal::Empty)
                        } else {
                            check_len(max_len, commit.len(), group_info.len())
                        };
                        refusal.map_or_else(|| staged.finish(group_info, max_total), Err)
                    }
                };
                let (state, group_info) = match (room.mls.as_mut(), whole) {
                    (Some(state), Ok(group_info)) => (state, group_info),
                    (_, whole) => {
                        let reason = whole.err().unwrap_or(MlsRefusal::NoGroup);
                        reply(&mut self.outputs, refuse(reason));
                        return Some(MlsOutcome::Refused(reason));
                    }
                };
                state.position = at.saturating_add(1);
                state.group_info = group_info;
                let next = state.position;
                let committed = ControlMessage::MlsCommitted {
                    member,
                    position: at,
                    commit,
                };
                Self::broadcast(&mut self.outputs, room, member, &committed);
                reply(
                    &mut self.outputs,
                    ControlMessage::MlsAccepted { position: next },
                );
                MlsOutcome::Committed
            }
            _ => return None,
        };
        Some(outcome)
    }
}

/// The answer to `MlsSync`: `MlsState`, preceded by `MlsGroupInfoPart` pieces when the
/// group info does not fit one message of `max_len` MLS bytes.
fn state_messages(position: u64, group_info: Option<&[u8]>, max_len: usize) -> Vec<ControlMessage> {
    let Some(info) = group_info else {
        return vec![ControlMessage::MlsState {
            position,
            group_info: None,
        }];
    };
    let piece = MLS_PART_LEN.min(max_len);
    let mut messages = Vec::new();
    let mut rest = info;
    if rest.len() > max_len {
        while rest.len() > piece {
            let (head, tail) = rest.split_at(piece);
            messages.push(ControlMessage::MlsGroupInfoPart {
                bytes: head.to_vec(),
            });
            rest = tail;
        }
    }
    messages.push(ControlMessage::MlsState {
        position,
        group_info: Some(rest.to_vec()),
    });
    messages
}

/// Refuse an empty group info (or piece of one) and more than `max` MLS bytes in one
/// message.
fn check_len(max: usize, commit: usize, group_info: usize) -> Option<MlsRefusal> {
    if group_info == 0 {
        return Some(MlsRefusal::Empty);
    }
    (commit.saturating_add(group_info) > max).then_some(MlsRefusal::TooLarge)
}
