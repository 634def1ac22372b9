//! The directory on Redis: which nodes are alive (a lease each, renewed), where their links
//! and relays are, their load, and which nodes have members of which room.
//!
//! Redis is the only coordination: each node writes its own record with a time to live
//! and renews it; a node that dies stops renewing and its record expires. There is no
//! election and nothing else to agree on: the links between nodes are a full mesh of the
//! nodes alive, and membership travels over the links themselves, so a room that already
//! spans nodes keeps working while Redis is away. What needs Redis is finding nodes that
//! came up since (no new links until it is back), the room map (placement, the admin view)
//! and the load of others (redirects).
//!
//! Keys, under the configured prefix (`sealroom:`):
//!
//! | key | type | content | lifetime |
//! | --- | --- | --- | --- |
//! | `node:{index}` | string | the node's [`NodeRecord`] as JSON | the lease (`PX`), renewed every third of it |
//! | `room:{app length}:{app}:{room}` | hash | node index → members there | 4 leases, renewed by every node with members |
//!
//! A node publishes `node:{index}` on the channel `{prefix}events` when it registers (at
//! start and after Redis comes back) and `gone:{index}` when it leaves; every node
//! subscribes and looks at the directory again at once, so a new node is dialled within a
//! round trip rather than at the next renewal.
//!
//! Supported deployments: one Redis (`redis://` or `rediss://` for TLS, with a password
//! or ACL user in the URL: `rediss://user:password@host:6380/0`), or Redis Sentinel (the
//! sentinels' URLs and the service name; the node asks the sentinels for the primary at
//! every (re)connection, so a failover is followed at the next reconnection). Redis Cluster
//! is not supported: the directory is a few keys per node and room, far within one primary.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client};
use tokio::sync::Notify;

use super::Peer;
use super::link::{LinkContext, lock};
use crate::engine::RoomKey;

/// Where the directory's Redis is.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisSource {
    /// One Redis, by URL (`redis://`, `rediss://`; password and ACL user in the URL).
    Url(String),
    /// The primary that Redis Sentinel names for `service`.
    Sentinel {
        /// The sentinels' URLs.
        sentinels: Vec<String>,
        /// The monitored service (primary) name.
        service: String,
    },
}

impl fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(url) => write!(f, "Url({})", redact(url)),
            Self::Sentinel { sentinels, service } => {
                let sentinels: Vec<String> = sentinels.iter().map(|s| redact(s)).collect();
                write!(f, "Sentinel({sentinels:?}, {service})")
            }
        }
    }
}

/// A Redis URL with its password hidden, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// How the node uses the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryConfig {
    /// Where Redis is.
    pub redis: RedisSource,
    /// Prefix of every key and of the events channel.
    pub prefix: String,
    /// The node's lease: its record expires this long after its last renewal.
    pub lease: Duration,
    /// Connecting to Redis and each command must finish within this.
    pub timeout: Duration,
}

impl DirectoryConfig {
    /// One Redis at `url`, with the defaults (prefix `sealroom:`, lease 3 s, timeout 1 s).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            redis: RedisSource::Url(url.into()),
            prefix: "sealroom:".to_owned(),
            lease: Duration::from_secs(3),
            timeout: Duration::from_secs(1),
        }
    }
}

/// Why the directory could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The Redis URL (or a sentinel's) does not parse.
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// Redis did not answer (unreachable, refused, timed out, or an error reply).
    #[error(
        "the directory on Redis is unreachable ({0}); links already up keep working, new nodes are found when it is back"
    )]
    Unreachable(String),
}

/// A node as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeRecord {
    /// Its node index.
    pub index: u16,
    /// Where other nodes dial its links.
    pub link: SocketAddr,
    /// Where members reach its relay.
    pub relay: SocketAddr,
    /// Members connected to it.
    pub members: usize,
    /// Rooms with members on it.
    pub rooms: usize,
    /// Whether it is draining (takes no joins).
    pub draining: bool,
    /// Milliseconds left on its lease when read (`None` in what a node writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
}

/// A room as the directory maps it: the nodes with its members, and how many each.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoomPlacement {
    /// App id.
    pub app: String,
    /// Room id.
    pub room: String,
    /// (node index, members there), nodes whose lease is alive only.
    pub nodes: Vec<(u16, usize)>,
}

#[derive(Debug, Default)]
struct View {
    reachable: bool,
    last_error: Option<String>,
    nodes: Vec<NodeRecord>,
    refreshed: Option<Instant>,
}

/// The node's handle on the directory.
pub struct Directory {
    config: DirectoryConfig,
    node: u16,
    link: SocketAddr,
    relay: SocketAddr,
    redirect_margin: usize,
    view: Mutex<View>,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// Rooms this node wrote members for, so it can take them out when they empty.
    written: Mutex<HashSet<String>>,
    wake: Notify,
    metrics: Arc<super::ClusterMetrics>,
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory")
            .field("redis", &self.config.redis)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn unreachable(err: &redis::RedisError) -> DirectoryError {
    DirectoryError::Unreachable(err.to_string())
}

impl Directory {
    pub(super) fn new(
        config: DirectoryConfig,
        node: u16,
        link: SocketAddr,
        relay: SocketAddr,
        redirect_margin: usize,
        metrics: Arc<super::ClusterMetrics>,
    ) -> Result<Self, super::ClusterError> {
        let check = |url: &str| {
            redis::parse_redis_url(url)
                .map(|_| ())
                .ok_or_else(|| super::ClusterError::Config(format!("invalid Redis URL {}: give redis://host:port or rediss://user:password@host:port", redact(url))))
        };
        match &config.redis {
            RedisSource::Url(url) => check(url)?,
            RedisSource::Sentinel { sentinels, .. } => {
                if sentinels.is_empty() {
                    return Err(super::ClusterError::Config(
                        "Redis Sentinel needs at least one sentinel URL".to_owned(),
                    ));
                }
                for url in sentinels {
                    check(url)?;
                }
            }
        }
        Ok(Self {
            config,
            node,
            link,
            relay,
            redirect_margin,
            view: Mutex::new(View::default()),
            connection: tokio::sync::Mutex::new(None),
            written: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            metrics,
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.config.prefix)
    }

    fn node_key(&self, index: u16) -> String {
        self.key(&format!("node:{index}"))
    }

    fn room_key(&self, room: &RoomKey) -> String {
        self.key(&format!(
            "room:{}:{}:{}",
            room.app.len(),
            room.app,
            room.room
        ))
    }

    fn parse_room_key(&self, key: &str) -> Option<RoomKey> {
        let rest = key.strip_prefix(&self.key("room:"))?;
        let (len, rest) = rest.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let app = rest.get(..len)?;
        let room = rest.get(len..)?.strip_prefix(':')?;
        Some(RoomKey::new(app, room))
    }

    fn channel(&self) -> String {
        self.key("events")
    }

    /// Whether the last exchange with Redis succeeded.
    pub fn reachable(&self) -> bool {
        lock(&self.view).reachable
    }

    /// The last error from Redis, if the last exchange failed.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.view).last_error.clone()
    }

    /// The nodes with a live lease, as last read (this node included).
    pub fn nodes(&self) -> Vec<NodeRecord> {
        lock(&self.view).nodes.clone()
    }

    /// How long ago the directory was last read.
    pub fn age(&self) -> Option<Duration> {
        lock(&self.view).refreshed.map(|at| at.elapsed())
    }

    async fn client(&self) -> Result<Client, DirectoryError> {
        match &self.config.redis {
            RedisSource::Url(url) => {
                Client::open(url.as_str()).map_err(|e| DirectoryError::Url(e.to_string()))
            }
            RedisSource::Sentinel { sentinels, service } => {
                let mut sentinel = redis::sentinel::SentinelClient::build(
                    sentinels.clone(),
                    service.clone(),
                    None,
                    redis::sentinel::SentinelServerType::Master,
                )
                .map_err(|e| DirectoryError::Url(e.to_string()))?;
                tokio::time::timeout(self.config.timeout, sentinel.async_get_client())
                    .await
                    .map_err(|_| DirectoryError::Unreachable("sentinel timed out".to_owned()))?
                    .map_err(|e| unreachable(&e))
            }
        }
    }

    async fn connect(&self) -> Result<(Client, MultiplexedConnection), DirectoryError> {
        let client = self.client().await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.timeout))
            .set_response_timeout(Some(self.config.timeout));
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| unreachable(&e))?;
        Ok((client, connection))
    }

    async fn connection(&self) -> Result<MultiplexedConnection, DirectoryError> {
        self.connection
            .lock()
            .await
            .clone()
            .ok_or_else(|| DirectoryError::Unreachable("not connected".to_owned()))
    }

    /// Write this node's record (renewing its lease) and its rooms.
    async fn register(
        &self,
        conn: &mut MultiplexedConnection,
        ctx: &LinkContext,
    ) -> Result<(), DirectoryError> {
        let (rooms, members, draining) = ctx.population();
        let record = NodeRecord {
            index: self.node,
            link: self.link,
            relay: self.relay,
            members,
            rooms: rooms.len(),
            draining,
            expires_in_ms: None,
        };
        let json = serde_json::to_string(&record)
            .map_err(|e| DirectoryError::Unreachable(e.to_string()))?;
        let lease_ms = u64::try_from(self.config.lease.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.node_key(self.node))
            .arg(json)
            .arg("PX")
            .arg(lease_ms)
            .ignore();
        let mut now_written = HashSet::new();
        for (room, count) in &rooms {
            let key = self.room_key(room);
            pipe.cmd("HSET")
                .arg(&key)
                .arg(self.node)
                .arg(*count)
                .ignore();
            pipe.cmd("PEXPIRE")
                .arg(&key)
                .arg(lease_ms.saturating_mul(4))
                .ignore();
            now_written.insert(key);
        }
        let gone: Vec<String> = lock(&self.written)
            .difference(&now_written)
            .cloned()
            .collect();
        for key in &gone {
            pipe.cmd("HDEL").arg(key).arg(self.node).ignore();
        }
        pipe.query_async::<()>(conn)
            .await
            .map_err(|e| unreachable(&e))?;
        *lock(&self.written) = now_written;
        Ok(())
    }

    /// Read every node's record.
    async fn read_nodes(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Vec<NodeRecord>, DirectoryError> {
        let keys = self.scan(conn, &self.key("node:*")).await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("GET").arg(key).cmd("PTTL").arg(key);
        }
        let values: Vec<redis::Value> =
            pipe.query_async(conn).await.map_err(|e| unreachable(&e))?;
        let mut nodes = Vec::new();
        for pair in values.chunks(2) {
            let [json, ttl] = pair else { continue };
            let Ok(json) = redis::from_redis_value_ref::<String>(json) else {
                continue;
            };
            let Ok(mut record) = serde_json::from_str::<NodeRecord>(&json) else {
                continue;
            };
            let ttl: i64 = redis::from_redis_value_ref(ttl).unwrap_or(-1);
            record.expires_in_ms = u64::try_from(ttl).ok();
            nodes.push(record);
        }
        nodes.sort_by_key(|n| n.index);
        Ok(nodes)
    }

    async fn scan(
        &self,
        conn: &mut MultiplexedConnection,
        pattern: &str,
    ) -> Result<Vec<String>, DirectoryError> {
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await
                .map_err(|e| unreachable(&e))?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// The room map: every room with members on a node whose lease is alive.
    ///
    /// # Errors
    /// [`DirectoryError::Unreachable`] when Redis does not answer.
    pub async fn rooms(&self) -> Result<Vec<RoomPlacement>, DirectoryError> {
        let mut conn = self.connection().await?;
        let live: HashSet<u16> = self
            .read_nodes(&mut conn)
            .await?
            .iter()
            .map(|n| n.index)
            .collect();
        let keys = self.scan(&mut conn, &self.key("room:*")).await?;
        let mut out = Vec::new();
        for key in keys {
            let Some(room) = self.parse_room_key(&key) else {
                continue;
            };
            let fields: Vec<(u16, usize)> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(|e| unreachable(&e))?;
            let mut nodes: Vec<(u16, usize)> = fields
                .into_iter()
                .filter(|(node, count)| live.contains(node) && *count > 0)
                .collect();
            nodes.sort_unstable();
            if !nodes.is_empty() {
                out.push(RoomPlacement {
                    app: room.app,
                    room: room.room,
                    nodes,
                });
            }
        }
        out.sort_by(|a, b| (&a.app, &a.room).cmp(&(&b.app, &b.room)));
        Ok(out)
    }

    /// Take this node out of the directory at once (a graceful leave), and tell the others.
    pub async fn deregister(&self) {
        let Ok(mut conn) = self.connection().await else {
            return;
        };
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(self.node_key(self.node)).ignore();
        for key in lock(&self.written).iter() {
            pipe.cmd("HDEL").arg(key).arg(self.node).ignore();
        }
        pipe.cmd("PUBLISH")
            .arg(self.channel())
            .arg(format!("gone:{}", self.node))
            .ignore();
        if let Err(err) = pipe.query_async::<()>(&mut conn).await {
            tracing::debug!(%err, "could not leave the directory; the lease will run out");
        }
    }

    fn set_view(&self, result: Result<Vec<NodeRecord>, &DirectoryError>) {
        let mut view = lock(&self.view);
        self.metrics.set_directory(match &result {
            Ok(nodes) => Some((nodes.len(), nodes.iter().any(|n| n.index == self.node))),
            Err(_) => None,
        });
        match result {
            Ok(nodes) => {
                view.reachable = true;
                view.last_error = None;
                view.nodes = nodes;
                view.refreshed = Some(Instant::now());
            }
            Err(err) => {
                view.reachable = false;
                view.last_error = Some(err.to_string());
            }
        }
    }

    /// One round: renew the lease, read the nodes, dial the new ones.
    async fn round(
        &self,
        conn: &mut MultiplexedConnection,
        ctx: &Arc<LinkContext>,
    ) -> Result<(), DirectoryError> {
        self.register(conn, ctx).await?;
        let nodes = self.read_nodes(conn).await?;
        let peers: Vec<Peer> = nodes
            .iter()
            .filter(|n| n.index != self.node)
            .map(|n| Peer {
                index: n.index,
                address: n.link,
            })
            .collect();
        ctx.set_discovered_peers(&peers);
        ctx.set_redirect(self.placement(&nodes));
        self.set_view(Ok(nodes));
        Ok(())
    }

    /// Where this node sends new joins: the least loaded other node (by members), when
    /// this one has at least `redirect_margin` more; `None` to admit them here.
    fn placement(&self, nodes: &[NodeRecord]) -> Option<String> {
        if self.redirect_margin == 0 {
            return None;
        }
        let me = nodes.iter().find(|n| n.index == self.node)?;
        let best = nodes
            .iter()
            .filter(|n| n.index != self.node && !n.draining)
            .min_by_key(|n| (n.members, n.index))?;
        (me.members >= best.members.saturating_add(self.redirect_margin))
            .then(|| best.relay.to_string())
    }
}

/// Keep the node registered and its view of the cluster fresh, reconnecting to Redis for as
/// long as the node runs.
pub(super) async fn run(directory: Arc<Directory>, ctx: Arc<LinkContext>) {
    let every = directory.config.lease / 3;
    let mut logged_down = false;
    loop {
        let (client, mut conn) = match directory.connect().await {
            Ok(pair) => pair,
            Err(err) => {
                if !logged_down {
                    tracing::warn!(%err, redis = ?directory.config.redis, "cluster directory unreachable; retrying");
                    logged_down = true;
                }
                directory.set_view(Err(&err));
                tokio::time::sleep(every).await;
                continue;
            }
        };
        *directory.connection.lock().await = Some(conn.clone());
        let subscriber = tokio::spawn(subscribe(Arc::clone(&directory), client));
        let mut announced = false;
        loop {
            if let Err(err) = directory.round(&mut conn, &ctx).await {
                tracing::warn!(%err, "cluster directory lost; reconnecting");
                logged_down = true;
                directory.set_view(Err(&err));
                break;
            }
            if logged_down {
                tracing::info!("cluster directory reachable again");
                logged_down = false;
            }
            if !announced {
                let _: Result<(), _> = redis::cmd("PUBLISH")
                    .arg(directory.channel())
                    .arg(format!("node:{}", directory.node))
                    .query_async(&mut conn)
                    .await;
                announced = true;
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = directory.wake.notified() => {}
            }
        }
        subscriber.abort();
        *directory.connection.lock().await = None;
        tokio::time::sleep(every).await;
    }
}

/// Wake the directory loop whenever another node announces itself or leaves.
async fn subscribe(directory: Arc<Directory>, client: Client) {
    let Ok(mut pubsub) = client.get_async_pubsub().await else {
        return;
    };
    if pubsub.subscribe(directory.channel()).await.is_err() {
        return;
    }
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let payload: String = message.get_payload().unwrap_or_default();
        if payload != format!("node:{}", directory.node) {
            directory.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(
            redact("rediss://app:hunter2@redis.example:6380/0"),
            "rediss://app:***@redis.example:6380/0"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        let source = RedisSource::Url("redis://:pw@h:1".to_owned());
        assert!(!format!("{source:?}").contains("pw"));
    }

    #[test]
    fn room_keys_round_trip_whatever_the_ids_hold() {
        let directory = Directory::new(
            DirectoryConfig::new("redis://127.0.0.1:1"),
            1,
            "127.0.0.1:1".parse().expect("addr"),
            "127.0.0.1:2".parse().expect("addr"),
            0,
            Arc::new(crate::cluster::ClusterMetrics::new()),
        )
        .expect("config");
        for (app, room) in [("app", "room"), ("a:b", "c:d"), ("", ":")] {
            let key = RoomKey::new(app, room);
            let encoded = directory.room_key(&key);
            assert_eq!(directory.parse_room_key(&encoded), Some(key));
        }
        assert_eq!(directory.parse_room_key("sealroom:room:9:ab"), None);
    }
}
