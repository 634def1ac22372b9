//! Embedded cluster nodes: a relay and its cluster links, on loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use sealroom_client::{Client, ClientConfig, JoinConfig, RoomSecret, Trust};
use sealroom_relay::cluster::{Cluster, ClusterConfig, DirectoryConfig, LinkInfo, Peer};
use sealroom_relay::{AppConfig, Grants, Limits, Relay, RelayConfig, TlsConfig};
pub(crate) use sealroom_test_support::Member;
use sealroom_test_support::{TempDir, mint_ticket, poll_until, unix_now};

pub(crate) const APP: &str = "app-a";
pub(crate) const KID: &str = "a1";
pub(crate) const TICKET_SECRET: &str = "app-a ticket secret, test only";
pub(crate) const CLUSTER_SECRET: &[u8] = b"cluster secret for the tests, 32b";

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// One node: its relay and its part in the cluster.
pub(crate) struct TestNode {
    pub(crate) relay: Arc<Relay>,
    pub(crate) cluster: Arc<Cluster>,
}

impl TestNode {
    /// A node with index `index`, the cluster `secret`, and no peers yet.
    pub(crate) async fn start(index: u16, secret: &[u8]) -> anyhow::Result<Self> {
        Self::start_with(index, secret, None).await
    }

    /// A node using the directory on the Redis at `redis_url`, with a short lease.
    pub(crate) async fn with_directory(index: u16, redis_url: &str) -> anyhow::Result<Self> {
        let mut directory = DirectoryConfig::new(redis_url);
        directory.lease = Duration::from_millis(1500);
        directory.timeout = Duration::from_millis(500);
        Self::start_with(index, CLUSTER_SECRET, Some(directory)).await
    }

    async fn start_with(
        index: u16,
        secret: &[u8],
        directory: Option<DirectoryConfig>,
    ) -> anyhow::Result<Self> {
        Self::start_full(index, secret, directory, 0).await
    }

    /// A node with a directory that redirects joins past `margin`, presenting the
    /// cluster's one certificate (so one pin trusts every node).
    pub(crate) async fn placed(index: u16, redis_url: &str, margin: usize) -> anyhow::Result<Self> {
        let mut directory = DirectoryConfig::new(redis_url);
        directory.lease = Duration::from_millis(1500);
        directory.timeout = Duration::from_millis(500);
        Self::start_full(index, CLUSTER_SECRET, Some(directory), margin).await
    }

    async fn start_full(
        index: u16,
        secret: &[u8],
        directory: Option<DirectoryConfig>,
        margin: usize,
    ) -> anyhow::Result<Self> {
        let (cert, key) = shared_identity();
        let config = RelayConfig::default()
            .tls(TlsConfig::Files { cert, key })
            .listen(loopback())
            .limits(Limits::default().unlimited_rates())
            .app(AppConfig::new(APP, KID, TICKET_SECRET.as_bytes().to_vec()));
        let relay = Arc::new(Relay::start(config).await.context("relay start")?);
        let mut cluster_config = ClusterConfig::new(index, loopback(), secret);
        cluster_config.directory = directory;
        cluster_config.redirect_margin = margin;
        let cluster = Arc::new(Cluster::start(&relay, cluster_config).context("cluster start")?);
        Ok(Self { relay, cluster })
    }

    /// Take the node away at once: cut its links and shut its relay down.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.cluster.shutdown();
        let relay = Arc::try_unwrap(self.relay)
            .map_err(|_| anyhow::anyhow!("the relay is still shared; stop what holds it first"))?;
        relay.shutdown().await;
        Ok(())
    }

    pub(crate) fn peer(&self) -> Peer {
        Peer {
            index: self.cluster.node_index(),
            address: self.cluster.local_addr(),
        }
    }

    /// Join `room` as `user` with every grant.
    pub(crate) async fn join(
        &self,
        user: &str,
        room: &str,
        secret: &RoomSecret,
    ) -> anyhow::Result<Member> {
        join_any(self.pin(), &[self.relay.local_addr()], user, room, secret).await
    }

    /// The pin of the certificate every node presents.
    pub(crate) fn pin(&self) -> [u8; 32] {
        self.relay.cert_sha256()
    }

    /// Wait until this node's directory counts `members` members on this node (the load
    /// placement decides on).
    pub(crate) async fn wait_directory_members(&self, members: usize) -> anyhow::Result<()> {
        let index = self.cluster.node_index();
        let directory = self.cluster.directory().context("a directory")?;
        poll_until(
            &format!("node {index} sees itself with {members} members"),
            || {
                directory
                    .nodes()
                    .iter()
                    .any(|n| n.index == index && n.members == members)
            },
            || format!("{:?}", directory.nodes()),
        )
        .await
    }

    /// The link to node `peer`, if up.
    pub(crate) fn link(&self, peer: u16) -> Option<LinkInfo> {
        self.cluster.links().into_iter().find(|l| l.peer == peer)
    }
}

/// `n` nodes, indices 1 to `n`, every pair linked.
pub(crate) async fn mesh(n: u16) -> anyhow::Result<Vec<TestNode>> {
    let mut nodes = Vec::new();
    for index in 1..=n {
        nodes.push(TestNode::start(index, CLUSTER_SECRET).await?);
    }
    let peers: Vec<Peer> = nodes.iter().map(TestNode::peer).collect();
    for node in &nodes {
        let others: Vec<Peer> = peers
            .iter()
            .filter(|p| p.index != node.cluster.node_index())
            .copied()
            .collect();
        node.cluster.set_peers(&others);
    }
    for node in &nodes {
        let want = usize::from(n) - 1;
        poll_until(
            "every link is up",
            || node.cluster.links().len() == want,
            || format!("links {:?}", node.cluster.links()),
        )
        .await?;
    }
    Ok(nodes)
}

/// Wait until `node` has a link up to each of `peers`.
pub(crate) async fn wait_links(node: &TestNode, peers: &[u16]) -> anyhow::Result<()> {
    poll_until(
        &format!("node {} links to {peers:?}", node.cluster.node_index()),
        || peers.iter().all(|p| node.link(*p).is_some()),
        || format!("links {:?}", node.cluster.links()),
    )
    .await
}

/// A ticket for `user` in `room`, valid on every node (they share the app's secret).
pub(crate) fn ticket(user: &str, room: &str) -> String {
    mint_ticket(
        APP,
        KID,
        TICKET_SECRET.as_bytes(),
        user,
        room,
        Grants::all(),
        unix_now(),
        3600,
    )
}

/// Join `room` as `user` through any node of `relays`, in order.
pub(crate) async fn join_any(
    pin: [u8; 32],
    relays: &[SocketAddr],
    user: &str,
    room: &str,
    secret: &RoomSecret,
) -> anyhow::Result<Member> {
    let config = ClientConfig::new(Trust::Pinned(pin))
        .connect_timeout(Duration::from_secs(2))
        .reconnect_backoff(Duration::from_millis(100), Duration::from_millis(500));
    let client = Client::new(config)?;
    let (joined, events) = client
        .join_any(
            relays,
            "localhost",
            ticket(user, room),
            secret,
            JoinConfig::default(),
        )
        .await
        .with_context(|| format!("{user} joins {room}"))?;
    Ok(Member::collecting(client, joined, events).named(user))
}

struct Identity {
    _dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

/// The certificate every test node presents, made once.
fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        let dir = TempDir::new("cluster-tls");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).expect("write cert");
        std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
        Identity {
            _dir: dir,
            cert,
            key,
            der: certified.cert.der().to_vec(),
        }
    })
}

/// The DER of the certificate every test node presents.
pub(crate) fn shared_cert_der() -> Vec<u8> {
    identity().der.clone()
}

pub(crate) fn shared_identity() -> (PathBuf, PathBuf) {
    let identity = identity();
    (identity.cert.clone(), identity.key.clone())
}
