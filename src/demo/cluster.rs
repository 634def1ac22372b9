//! `sealroom demo --nodes N`: the demo's relays linked as one cluster in this process.
//!
//! Each node is an embedded relay with its part in the cluster (links authenticated with a
//! random cluster secret). When `redis-server` is on the PATH the demo starts one on a free
//! loopback port, with nothing persisted, as the directory the nodes find each other in;
//! without it, it says how to install it and links the nodes by their addresses instead.
//! Members are spread over the nodes, so most frames cross a node link on their way.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sealroom_relay::Relay;
use sealroom_relay::cluster::{Cluster, ClusterConfig, DirectoryConfig, Peer};

/// How to get `redis-server`, for the message when it is missing.
pub(crate) const INSTALL_REDIS: &str = "install it (Debian/Ubuntu: apt-get install redis-server; \
     Fedora: dnf install redis; macOS: brew install redis) to see the directory at work";

/// The demo's cluster: its links and, when it could start one, its Redis.
pub(crate) struct DemoCluster {
    clusters: Vec<Cluster>,
    redis: Option<RedisChild>,
}

/// Link `relays` (node indices 1 to N) into one cluster, through a directory on a Redis of
/// its own when `redis-server` is installed, and wait until every node links to every other.
pub(crate) async fn link(relays: &[&Relay]) -> anyhow::Result<DemoCluster> {
    let secret: [u8; 32] = rand::random();
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let redis = match RedisChild::start() {
        Ok(redis) => Some(redis),
        Err(err) => {
            println!("  redis-server not started ({err:#}): {INSTALL_REDIS}");
            println!("  the nodes are linked by their addresses instead (no directory)");
            None
        }
    };
    let mut clusters = Vec::with_capacity(relays.len());
    for (index, relay) in (1u16..).zip(relays) {
        let mut config = ClusterConfig::new(index, loopback, secret);
        if let Some(redis) = &redis {
            config = config.directory(DirectoryConfig::new(redis.url()));
        }
        clusters.push(Cluster::start(relay, config).context("cannot start a cluster node")?);
    }
    if redis.is_none() {
        let peers: Vec<Peer> = clusters
            .iter()
            .map(|c| Peer {
                index: c.node_index(),
                address: c.local_addr(),
            })
            .collect();
        for cluster in &clusters {
            cluster.set_peers(&peers_but(&peers, cluster.node_index()));
        }
    }
    let want = relays.len() - 1;
    let deadline = Instant::now() + Duration::from_secs(15);
    while clusters.iter().any(|c| c.links().len() < want) {
        if Instant::now() >= deadline {
            bail!(
                "the demo's nodes did not link to each other within 15 s (links up: {:?})",
                clusters.iter().map(|c| c.links().len()).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match &redis {
        Some(redis) => println!(
            "  directory: Redis on 127.0.0.1:{} (started by the demo, nothing persisted); \
             every node found the others in it",
            redis.port
        ),
        None => println!("  directory: none"),
    }
    for (cluster, relay) in clusters.iter().zip(relays) {
        println!(
            "  node {}: members on {}, links on {}",
            cluster.node_index(),
            relay.local_addr(),
            cluster.local_addr()
        );
    }
    Ok(DemoCluster { clusters, redis })
}

fn peers_but(peers: &[Peer], index: u16) -> Vec<Peer> {
    peers.iter().filter(|p| p.index != index).copied().collect()
}

impl DemoCluster {
    /// Print what crossed each link: frames (each once, whatever the members behind the
    /// link) and bytes.
    pub(crate) fn report(&self) {
        println!("node links (each frame crosses a link once, whatever the members behind it):");
        for cluster in &self.clusters {
            for link in cluster.links() {
                if link.peer < cluster.node_index() {
                    continue;
                }
                let peer = self
                    .clusters
                    .iter()
                    .find(|c| c.node_index() == link.peer)
                    .and_then(|c| {
                        c.links()
                            .into_iter()
                            .find(|l| l.peer == cluster.node_index())
                    });
                let (back_frames, back_bytes) =
                    peer.map_or((0, 0), |p| (p.frames_out, p.bytes_out));
                println!(
                    "  node {} -> node {}: {} frames, {};  node {} -> node {}: {} frames, {}",
                    cluster.node_index(),
                    link.peer,
                    link.frames_out,
                    super::report::human_bytes(link.bytes_out),
                    link.peer,
                    cluster.node_index(),
                    back_frames,
                    super::report::human_bytes(back_bytes),
                );
            }
        }
    }

    /// Leave the cluster: the nodes give up their leases and cut their links, then Redis
    /// stops.
    pub(crate) async fn leave(mut self) {
        for cluster in &self.clusters {
            cluster.leave().await;
        }
        if let Some(mut redis) = self.redis.take() {
            redis.stop();
        }
    }
}

/// A `redis-server` the demo started: on a free loopback port, protected mode, nothing
/// saved; as root it runs as `nobody` with its debug and module commands off.
struct RedisChild {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl RedisChild {
    fn start() -> anyhow::Result<Self> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("sealroom-demo-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "yes"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            use std::os::unix::process::CommandExt;
            const NOBODY: u32 = 65_534;
            command
                .args(["--enable-debug-command", "no"])
                .args(["--enable-module-command", "no"])
                .args(["--enable-protected-configs", "no"])
                .uid(NOBODY)
                .gid(NOBODY);
        }
        let child = command.spawn().map_err(|err| {
            if err.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!("redis-server is not on the PATH")
            } else {
                anyhow::Error::new(err).context("cannot run redis-server")
            }
        })?;
        let mut redis = Self { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if redis.ping() {
                return Ok(redis);
            }
            if let Ok(Some(status)) = redis.child.try_wait() {
                redis.stop();
                bail!("redis-server exited at start ({status})");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        redis.stop();
        bail!("redis-server on port {port} did not answer within 10 s")
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn ping(&self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 16];
        stream.write_all(b"PING\r\n").is_ok()
            && stream
                .read(&mut reply)
                .is_ok_and(|n| reply[..n].starts_with(b"+PONG"))
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
