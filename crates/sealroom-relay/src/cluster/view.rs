//! The cluster as an operator sees it from one node: the nodes and their leases and load,
//! this node's links, and the rooms with how many members each node has there. The admin
//! API serves it (`GET /admin/cluster`); it names no user and no member, only counts.

use std::collections::{BTreeMap, HashMap};

use super::directory::NodeRecord;
use super::link::{LinkContext, lock};
use super::{Cluster, LinkInfo};
use crate::engine::RoomKey;

/// Where the room map of a [`ClusterView`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomSource {
    /// The directory on Redis: every room of the cluster, as the nodes last wrote it.
    Directory,
    /// This node's own view: its rooms, with the members behind each link (used when there
    /// is no directory or it does not answer).
    Links,
}

/// How many members of a room one node has.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeMembers {
    /// The node's index.
    pub node: u16,
    /// Its members in the room.
    pub members: usize,
}

/// A room and the nodes its members are on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoomNodes {
    /// App id.
    pub app: String,
    /// Room id.
    pub room: String,
    /// The nodes with members of the room, by index.
    pub nodes: Vec<NodeMembers>,
}

/// The directory's state as this node last saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirectoryState {
    /// Whether the last exchange with Redis succeeded.
    pub reachable: bool,
    /// The error of the last exchange, when it failed.
    pub last_error: Option<String>,
    /// Milliseconds since the directory was last read.
    pub read_ms_ago: Option<u64>,
}

/// The cluster from one node.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClusterView {
    /// This node's index.
    pub node: u16,
    /// The directory's state (`None`: the node runs without one, on configured peers).
    pub directory: Option<DirectoryState>,
    /// The nodes with a live lease (`expires_in_ms` left on it) and their load, as last
    /// read from the directory; without a directory, this node alone (its peers are in
    /// `links`).
    pub nodes: Vec<NodeRecord>,
    /// This node's links up, with their counters.
    pub links: Vec<LinkInfo>,
    /// Where `rooms` came from.
    pub rooms_from: RoomSource,
    /// Every room with the nodes its members are on.
    pub rooms: Vec<RoomNodes>,
}

impl LinkContext {
    /// Rooms with members on this node, with the members behind each link, by node.
    pub(super) fn room_map(&self) -> Vec<RoomNodes> {
        let peers: HashMap<_, u16> = lock(&self.links)
            .iter()
            .map(|(peer, entry)| (entry.id, *peer))
            .collect();
        let mut rooms: BTreeMap<RoomKey, BTreeMap<u16, usize>> = BTreeMap::new();
        {
            let state = self.shared.state();
            for room in state.core.rooms() {
                let key = RoomKey::new(room.app, room.room);
                rooms
                    .entry(key)
                    .or_default()
                    .insert(self.node_index, room.members);
            }
            for (key, _, _, link) in state.core.remote_members() {
                let Some(node) = peers.get(&link) else {
                    continue;
                };
                *rooms.entry(key).or_default().entry(*node).or_default() += 1;
            }
        }
        rooms
            .into_iter()
            .map(|(key, nodes)| RoomNodes {
                app: key.app,
                room: key.room,
                nodes: nodes
                    .into_iter()
                    .filter(|(_, members)| *members > 0)
                    .map(|(node, members)| NodeMembers { node, members })
                    .collect(),
            })
            .filter(|r| !r.nodes.is_empty())
            .collect()
    }
}

impl Cluster {
    /// The cluster as this node sees it. With a directory that answers, the room map is
    /// the directory's (every room of the cluster); otherwise this node's own.
    pub async fn view(&self) -> ClusterView {
        let links = self.links();
        let from_directory = match self.directory() {
            Some(directory) => directory.rooms().await.ok(),
            None => None,
        };
        let (rooms_from, rooms) = match from_directory {
            Some(placements) => (
                RoomSource::Directory,
                placements
                    .into_iter()
                    .map(|p| RoomNodes {
                        app: p.app,
                        room: p.room,
                        nodes: p
                            .nodes
                            .into_iter()
                            .map(|(node, members)| NodeMembers { node, members })
                            .collect(),
                    })
                    .collect(),
            ),
            None => (RoomSource::Links, self.ctx.room_map()),
        };
        let (directory, nodes) = match self.directory() {
            Some(directory) => (
                Some(DirectoryState {
                    reachable: directory.reachable(),
                    last_error: directory.last_error(),
                    read_ms_ago: directory
                        .age()
                        .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
                }),
                directory.nodes(),
            ),
            None => (None, vec![self.ctx.own_record(self.relay_addr)]),
        };
        ClusterView {
            node: self.node_index(),
            directory,
            nodes,
            links,
            rooms_from,
            rooms,
        }
    }
}

impl LinkContext {
    /// Without a directory: this node alone, with its load (no lease).
    fn own_record(&self, relay: std::net::SocketAddr) -> NodeRecord {
        let (rooms, members, draining) = self.population();
        NodeRecord {
            index: self.node_index,
            link: self.endpoint.local_addr().unwrap_or(relay),
            relay,
            members,
            rooms: rooms.len(),
            draining,
            expires_in_ms: None,
        }
    }
}
