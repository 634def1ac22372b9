//! Rooms that span nodes: authenticated QUIC links between relay nodes and the cascade over
//! them (see `docs/CLUSTER.md`).
//!
//! A [`Cluster`] runs beside a [`Relay`]: it listens for links from other nodes on an
//! address of its own (ALPN `sealroom-cascade/1`), dials the nodes it is told of, proves the
//! cluster secret on every link and checks the peer's proof (`auth.rs`), and then carries the
//! engine's cascade: membership events on one bidirectional stream (`wire.rs`), media as
//! towards a member (datagrams, one stream per video group, reliable data on streams) through
//! the same egress and its slow-receiver rules. Of each pair of nodes the one with the lower
//! index dials, so two nodes hold one link.
//!
//! Nodes still hold no content key: a link carries the sealed frames exactly as received.

mod auth;
pub mod directory;
mod link;
pub mod metrics;
mod tls;
pub mod view;
pub mod wire;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::engine::MAX_NODE_INDEX;
use crate::relay::Relay;
use crate::tls::StartError;

pub use directory::{DirectoryConfig, DirectoryError, NodeRecord};
pub use metrics::{AuthFailure, ClusterMetrics};
pub use view::{ClusterView, NodeMembers, RoomNodes, RoomSource};
pub use wire::{LINK_ALPN, WireError};

use link::LinkContext;

/// Shortest cluster secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

/// Another node this node links to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Its node index.
    pub index: u16,
    /// The address of its link listener.
    pub address: SocketAddr,
}

/// How a node takes part in a cluster.
#[derive(Clone)]
pub struct ClusterConfig {
    /// This node's index, 1 to [`MAX_NODE_INDEX`], unique in the cluster (it is the high
    /// bits of the member ids this node hands out).
    pub node_index: u16,
    /// Where to listen for links from other nodes.
    pub listen: SocketAddr,
    /// The cluster secret every node holds; links are authenticated with it.
    pub secret: Vec<u8>,
    /// Nodes to link to (the directory adds more when there is one).
    pub peers: Vec<Peer>,
    /// The address other nodes dial for links (default: the bound `listen` address).
    pub advertise: Option<SocketAddr>,
    /// The address members reach this node's relay at, told to other nodes for redirects
    /// (default: the relay's bound address).
    pub advertise_relay: Option<SocketAddr>,
    /// The directory on Redis (`None`: only the configured peers).
    pub directory: Option<DirectoryConfig>,
    /// Send new joins to the least loaded node (by members, from the directory) when this
    /// node has at least this many members more than it (0: never redirect).
    pub redirect_margin: usize,
    /// A link silent for this long is dead (its remote members leave).
    pub link_idle_timeout: Duration,
    /// Wait before dialling a peer again after a failed or lost link.
    pub link_retry: Duration,
    /// Cascade events queued towards one link; past it the link is cut (its peer is not
    /// reading) and dialled again.
    pub link_queue_len: usize,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node_index", &self.node_index)
            .field("listen", &self.listen)
            .field("secret", &"<redacted>")
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl ClusterConfig {
    /// A node `node_index` listening for links on `listen`, with the cluster `secret`, the
    /// defaults for the rest and no peers yet.
    pub fn new(node_index: u16, listen: SocketAddr, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            node_index,
            listen,
            secret: secret.into(),
            peers: Vec::new(),
            advertise: None,
            advertise_relay: None,
            directory: None,
            redirect_margin: 0,
            link_idle_timeout: Duration::from_secs(3),
            link_retry: Duration::from_millis(500),
            link_queue_len: 4096,
        }
    }

    /// Add a peer.
    #[must_use]
    pub fn peer(mut self, index: u16, address: SocketAddr) -> Self {
        self.peers.push(Peer { index, address });
        self
    }

    /// Use the directory on Redis described by `directory`.
    #[must_use]
    pub fn directory(mut self, directory: DirectoryConfig) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Check the settings.
    ///
    /// # Errors
    /// [`ClusterError::Config`] naming what is wrong.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let bad = |what: String| Err(ClusterError::Config(what));
        if self.node_index == 0 || self.node_index > MAX_NODE_INDEX {
            return bad(format!(
                "node_index {} is out of range: give each node a distinct index from 1 to {MAX_NODE_INDEX}",
                self.node_index
            ));
        }
        if self.secret.len() < MIN_SECRET_LEN {
            return bad(format!(
                "the cluster secret is {} bytes: give at least {MIN_SECRET_LEN} random bytes, the same on every node",
                self.secret.len()
            ));
        }
        if let Some(peer) = self.peers.iter().find(|p| p.index == self.node_index) {
            return bad(format!(
                "peer {} has this node's own index {}: every node needs a distinct index",
                peer.address, peer.index
            ));
        }
        if self.link_queue_len == 0 {
            return bad("link_queue_len must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The configuration is invalid; the message says what to change.
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    /// The link listener could not be set up (TLS identity, socket).
    #[error("cannot start the link listener")]
    Start(#[from] StartError),
}

/// A link up, as an operator sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LinkInfo {
    /// The peer's node index.
    pub peer: u16,
    /// The peer's address.
    pub address: SocketAddr,
    /// Whether this node dialled.
    pub dialled: bool,
    /// Media frames sent over the link.
    pub frames_out: u64,
    /// Media frames received from it.
    pub frames_in: u64,
    /// UDP bytes sent.
    pub bytes_out: u64,
    /// UDP bytes received.
    pub bytes_in: u64,
    /// Frames its egress dropped.
    pub drops: u64,
    /// Round-trip time, seconds.
    pub rtt_secs: f64,
    /// Members behind it.
    pub members: usize,
}

/// A node's part in a cluster: its link listener, its dialers and the links up.
pub struct Cluster {
    ctx: Arc<LinkContext>,
    local_addr: SocketAddr,
    /// The relay's address as other nodes and members are told it.
    relay_addr: SocketAddr,
    directory: Option<Arc<directory::Directory>>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("node_index", &self.ctx.node_index)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Join `relay` to the cluster: turn the cascade on in its core (member ids become
    /// unique per node), listen for links and dial the configured peers. Call before
    /// members join. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// [`ClusterError`] when the configuration is invalid or the listener cannot start.
    pub fn start(relay: &Relay, config: ClusterConfig) -> Result<Self, ClusterError> {
        config.validate()?;
        let ctx = LinkContext::start(relay, &config)?;
        let local_addr = ctx.endpoint.local_addr().map_err(StartError::Bind)?;
        let accept = tokio::spawn(link::accept_loop(Arc::clone(&ctx)));
        let sampler = tokio::spawn(link::sample_loop(Arc::clone(&ctx)));
        tracing::info!(%local_addr, node = config.node_index, "cluster links listening");
        let mut tasks = vec![accept, sampler];
        ctx.set_static_peers(&config.peers);
        let relay_addr = config.advertise_relay.unwrap_or(relay.local_addr());
        // Other nodes send the members of an MLS room whose group this node holds here.
        ctx.set_relay_address(relay_addr);
        let directory = match &config.directory {
            Some(settings) => {
                let advertise = config.advertise.unwrap_or(local_addr);
                let directory = Arc::new(directory::Directory::new(
                    settings.clone(),
                    config.node_index,
                    advertise,
                    relay_addr,
                    config.redirect_margin,
                    Arc::clone(&ctx.metrics),
                )?);
                tasks.push(tokio::spawn(directory::run(
                    Arc::clone(&directory),
                    Arc::clone(&ctx),
                )));
                Some(directory)
            }
            None => None,
        };
        Ok(Self {
            ctx,
            local_addr,
            relay_addr,
            directory,
            tasks,
        })
    }

    /// The address the link listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's index.
    pub fn node_index(&self) -> u16 {
        self.ctx.node_index
    }

    /// The cluster's metrics.
    pub fn metrics(&self) -> Arc<ClusterMetrics> {
        Arc::clone(&self.ctx.metrics)
    }

    /// The links up, with their counters.
    pub fn links(&self) -> Vec<LinkInfo> {
        self.ctx.links()
    }

    /// The nodes to link to: dial each new one with a higher index than this node's
    /// (lower ones dial this node), stop dialling those no longer listed (a link up to one
    /// stays until it fails).
    pub fn set_peers(&self, peers: &[Peer]) {
        self.ctx.set_static_peers(peers);
    }

    /// The directory, when the node has one.
    pub fn directory(&self) -> Option<&directory::Directory> {
        self.directory.as_deref()
    }

    /// Leave the cluster: give up this node's lease in the directory (so others stop
    /// dialling it at once), cut every link and stop listening.
    pub async fn leave(&self) {
        // Stop renewing first, so no renewal can follow the removal.
        for task in &self.tasks {
            task.abort();
        }
        if let Some(directory) = &self.directory {
            directory.deregister().await;
        }
        self.shutdown();
    }

    /// Cut every link and stop listening, at once (the directory lease, if any, runs out by
    /// itself).
    pub fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.ctx.stop_dialling();
        self.ctx.close_all();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}
