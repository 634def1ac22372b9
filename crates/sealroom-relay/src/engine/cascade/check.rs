//! The cascade's consistency check, part of the core's invariant (tests and fuzzing).

use super::*;

impl RelayCore {
    /// The cascade's part of [`invariant_violation`](Self::invariant_violation): every
    /// local member is in its room and announced under this node's index; every member
    /// behind a link is indexed both ways, behind a link that is up, never under an id a
    /// local member of its room holds; the per-link and per-room counts match the members;
    /// a peer holds an MLS group only of a room it has members in, and no room keeps its
    /// group here while a node with a lower index holds one.
    pub(in crate::engine) fn cascade_violation(&self) -> Option<String> {
        let cascade = self.cascade.as_ref()?;
        let local_count: usize = self.rooms.values().map(|r| r.members.len()).sum();
        if cascade.local.len() != local_count {
            return Some(format!(
                "the cascade knows {} local members, the rooms hold {local_count}",
                cascade.local.len()
            ));
        }
        for (member, key) in &cascade.local {
            if !self
                .rooms
                .get(key)
                .is_some_and(|r| r.members.contains_key(member))
            {
                return Some(format!("local member {member} is not in {key:?}"));
            }
            if member >> MEMBER_ID_NODE_SHIFT != u32::from(cascade.node_index) {
                return Some(format!("local member {member} lacks this node's index"));
            }
        }
        let mut behind: HashMap<(ConnId, &RoomKey), usize> = HashMap::new();
        let mut indexed = 0;
        for (key, room) in &cascade.remote {
            if room.members.is_empty() {
                return Some(format!("remote room {key:?} is empty"));
            }
            let mut subscribing: HashMap<ConnId, usize> = HashMap::new();
            for (id, remote) in &room.members {
                indexed += 1;
                if cascade.remote_rooms.get(&(remote.link, *id)) != Some(key) {
                    return Some(format!("remote member {id} of {key:?} is not indexed"));
                }
                if !cascade.links.contains_key(&remote.link) {
                    return Some(format!(
                        "remote member {id} is behind link {} that is down",
                        remote.link
                    ));
                }
                if self
                    .rooms
                    .get(key)
                    .is_some_and(|r| r.members.contains_key(id))
                {
                    return Some(format!(
                        "member id {id} is both local and remote in {key:?}"
                    ));
                }
                *behind.entry((remote.link, key)).or_default() += 1;
                if remote.subscribes {
                    *subscribing.entry(remote.link).or_default() += 1;
                }
            }
            let mut links: Vec<(ConnId, usize)> = room.links.clone();
            links.sort_unstable();
            let mut want: Vec<(ConnId, usize)> = subscribing.into_iter().collect();
            want.sort_unstable();
            if links != want {
                return Some(format!(
                    "remote room {key:?} counts links {links:?}, has {want:?}"
                ));
            }
        }
        if indexed != cascade.remote_rooms.len() {
            return Some(format!(
                "{} remote members indexed, {indexed} in rooms",
                cascade.remote_rooms.len()
            ));
        }
        for (link, state) in &cascade.links {
            for (key, count) in &state.rooms {
                if behind.get(&(*link, key)).copied().unwrap_or(0) != *count {
                    return Some(format!("link {link} counts {count} members in {key:?}"));
                }
            }
            let total: usize = state.rooms.values().sum();
            let actual: usize = behind
                .iter()
                .filter(|((l, _), _)| l == link)
                .map(|(_, n)| n)
                .sum();
            if total != actual {
                return Some(format!("link {link} counts {total} members, has {actual}"));
            }
            if let Some(key) = state
                .mls_rooms
                .keys()
                .find(|k| !state.rooms.contains_key(*k))
            {
                return Some(format!(
                    "link {link} holds the MLS group of {key:?} without members there"
                ));
            }
        }
        for (key, room) in &self.rooms {
            if room.mls.is_some()
                && let Some((holder, _)) = cascade.mls_holder(key)
                && holder < cascade.node_index
            {
                return Some(format!(
                    "{key:?} keeps its MLS group here though node {holder} holds one"
                ));
            }
        }
        None
    }
}
