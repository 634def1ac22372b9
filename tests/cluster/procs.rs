//! Cluster nodes as `sealroom relay --config node.toml` processes (the built binary), the
//! members that publish through them, and an observer that records the SFrame header of
//! every frame it receives.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;
use sealroom_client::{Client, ClientConfig, Event, JoinConfig, MemberId, RoomSecret, Trust};
use sealroom_frame::control::ControlMessage;
use sealroom_frame::envelope::FrameRef;
use sealroom_frame::sframe::SframeHeader;
use sealroom_frame::stream::Deframer;
use sealroom_test_support::node::Node;
use sealroom_test_support::{Member, SAFETY, TempDir};

use crate::support::{
    APP, CLUSTER_SECRET, KID, TICKET_SECRET, shared_cert_der, shared_identity, ticket,
};

/// Where a node process listens and how it finds the others.
pub(crate) struct NodeSpec {
    pub(crate) index: u16,
    /// The IP of the members' listener.
    pub(crate) relay_ip: Ipv4Addr,
    /// The IP of the link listener.
    pub(crate) link_ip: Ipv4Addr,
    pub(crate) redis_url: Option<String>,
    /// Static peers, `(index, link address)`.
    pub(crate) peers: Vec<(u16, SocketAddr)>,
    /// Fixed link port (0: any; static peers need a known one).
    pub(crate) link_port: u16,
    pub(crate) drain_secs: u64,
    pub(crate) lease_ms: u64,
}

impl NodeSpec {
    /// A node on loopback using the directory at `redis_url`.
    pub(crate) fn loopback(index: u16, redis_url: &str) -> Self {
        Self {
            index,
            relay_ip: Ipv4Addr::LOCALHOST,
            link_ip: Ipv4Addr::LOCALHOST,
            redis_url: Some(redis_url.to_owned()),
            peers: Vec::new(),
            link_port: 0,
            drain_secs: 10,
            lease_ms: 1500,
        }
    }

    fn toml(&self) -> String {
        let (cert, key) = shared_identity();
        let secret = String::from_utf8_lossy(CLUSTER_SECRET);
        let mut text = format!(
            r#"listen = "{relay}:0"
internal_listen = "127.0.0.1:0"
drain_secs = {drain}
[tls]
cert = "{cert}"
key = "{key}"
[log]
format = "json"
filter = "info"
[limits]
joins_per_user_per_sec = 1000
joins_per_user_burst = 1000
joins_per_address_per_sec = 1000
joins_per_address_burst = 1000
data_messages_per_sec = 10000
data_messages_burst = 10000
[[apps]]
app = "{APP}"
secrets = [{{ kid = "{KID}", secret = "{TICKET_SECRET}" }}]
[cluster]
node_id = {index}
listen = "{link}:{link_port}"
secret = "{secret}"
link_idle_timeout_ms = 1500
link_retry_ms = 200
"#,
            relay = self.relay_ip,
            drain = self.drain_secs,
            cert = cert.display(),
            key = key.display(),
            index = self.index,
            link = self.link_ip,
            link_port = self.link_port,
        );
        if !self.peers.is_empty() {
            let peers: Vec<String> = self
                .peers
                .iter()
                .map(|(index, addr)| format!("{{ node_id = {index}, address = \"{addr}\" }}"))
                .collect();
            text.push_str(&format!("peers = [{}]\n", peers.join(", ")));
        }
        if let Some(url) = &self.redis_url {
            text.push_str(&format!(
                "[cluster.redis]\nurl = \"{url}\"\nlease_ms = {}\ntimeout_ms = 500\n",
                self.lease_ms
            ));
        }
        text
    }
}

/// A node process.
pub(crate) struct ProcNode {
    pub(crate) node: Node,
    _dir: TempDir,
}

/// The `sealroom` binary with none of the developer's variables.
pub(crate) fn sealroom() -> Command {
    sealroom_test_support::node::binary(env!("CARGO_BIN_EXE_sealroom"))
}

impl ProcNode {
    /// `sealroom relay --config` for `spec`, run by `command` (the binary itself, or
    /// `ip netns exec NS` before it).
    pub(crate) fn start_with(command: Command, spec: &NodeSpec) -> anyhow::Result<Self> {
        let dir = TempDir::new(&format!("cluster-node-{}", spec.index));
        let config = dir.write("node.toml", &spec.toml());
        let node = Node::start(command, &dir, &config)
            .with_context(|| format!("start node {}", spec.index))?;
        Ok(Self { node, _dir: dir })
    }

    /// `sealroom relay --config` for `spec`.
    pub(crate) fn start(spec: &NodeSpec) -> anyhow::Result<Self> {
        Self::start_with(sealroom(), spec)
    }

    /// The members' address.
    pub(crate) fn relay(&self) -> SocketAddr {
        self.node.listen
    }

    /// SIGKILL: no drain, no goodbye to anyone.
    pub(crate) fn kill(&mut self) -> anyhow::Result<()> {
        self.node.child.kill().context("SIGKILL")?;
        self.node.child.wait()?;
        Ok(())
    }
}

/// `result`, with the logs of `nodes` added to its error (what a failure needs to be
/// understood).
pub(crate) fn with_logs<T>(result: anyhow::Result<T>, nodes: &[ProcNode]) -> anyhow::Result<T> {
    result.map_err(|err| {
        let logs: Vec<String> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- node {} log:\n{}", i + 1, n.node.log()))
            .collect();
        err.context(logs.join("\n"))
    })
}

/// A client that pins the cluster's certificate (`pin`, hex, from a node's banner) and
/// notices a dead node quickly.
pub(crate) fn client_config(pin: &str) -> anyhow::Result<ClientConfig> {
    Ok(ClientConfig::new(Trust::pinned_hex(pin)?)
        .connect_timeout(Duration::from_secs(2))
        .idle_timeout(Duration::from_secs(2))
        .keep_alive(Duration::from_millis(400))
        .reconnect_backoff(Duration::from_millis(100), Duration::from_millis(500))
        .reconnect_attempts(200)
        .stats_interval(None))
}

/// Join `room` as `user` through the first node of `relays` that admits it.
pub(crate) async fn join(
    pin: &str,
    relays: &[SocketAddr],
    user: &str,
    room: &str,
    secret: &RoomSecret,
) -> anyhow::Result<Member> {
    let client = Client::new(client_config(pin)?)?;
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

/// A member publishing on an audio track (`a:{user}:{n}`) and a reliable data track
/// (`d:{user}:{n}`, `n` counting the sends that succeeded) until stopped.
pub(crate) struct Publisher {
    stop: Arc<AtomicBool>,
    /// Data messages sent so far.
    pub(crate) sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    pub(crate) async fn start(member: &Member) -> anyhow::Result<Self> {
        let audio = member.room.publish_audio(1).await?;
        let data = member.room.publish_data(2).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let user = member.name.clone();
        let task = {
            let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // While its node is gone the client drops what it cannot send.
                    let _ = audio.send(format!("a:{user}:{n}").into_bytes());
                    let seq = sent.load(Ordering::Relaxed);
                    let message = format!("d:{user}:{seq}").into_bytes();
                    if let Ok(Ok(())) =
                        tokio::time::timeout(Duration::from_secs(1), data.send(message)).await
                    {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            })
        };
        Ok(Self { stop, sent, task })
    }

    /// Stop and return how many data messages went out.
    pub(crate) async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.sent.load(Ordering::Relaxed)
    }
}

/// The data messages `member` received from `user`, as their sequence numbers in order of
/// arrival.
pub(crate) fn data_seqs(member: &Member, user: &str) -> Vec<u64> {
    let prefix = format!("d:{user}:");
    member
        .log
        .frames()
        .iter()
        .filter_map(|f| {
            let text = std::str::from_utf8(&f.payload).ok()?;
            text.strip_prefix(&prefix)?.parse().ok()
        })
        .collect()
}

/// Whether the member's session was ever interrupted (lost, reconnecting, over).
pub(crate) fn interrupted(member: &Member) -> Vec<Event> {
    member
        .log
        .snapshot()
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                Event::ConnectionLost(_)
                    | Event::Reconnecting { .. }
                    | Event::Recovered { .. }
                    | Event::Disconnected(_)
            )
        })
        .collect()
}

/// A member that opens nothing: it joins through one node over raw QUIC and records the
/// sender and SFrame (KID, CTR) of every frame that reaches it as a datagram.
pub(crate) struct Observer {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    headers: Arc<Mutex<Vec<(MemberId, SframeHeader)>>>,
}

impl Observer {
    pub(crate) async fn join(relay: SocketAddr, room: &str) -> anyhow::Result<Self> {
        let mut transport = quinn::TransportConfig::default();
        transport.max_concurrent_uni_streams(1000u32.into());
        let config =
            sealroom_test_support::tls::pinned_client_config(&shared_cert_der(), transport)?;
        let mut endpoint = quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
        endpoint.set_default_client_config(config);
        let conn = endpoint
            .connect(relay, "localhost")?
            .await
            .context("observer handshake")?;
        let (mut send, recv) = conn.open_bi().await?;
        let mut buf = BytesMut::new();
        sealroom_test_support::raw::join_as(&ticket("observer", room), "observer")
            .encode_framed(&mut buf)?;
        send.write_all(&buf).await?;
        let (joined_tx, joined_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(read_control(recv, send, joined_tx));
        match tokio::time::timeout(SAFETY, joined_rx).await {
            Ok(Ok(true)) => {}
            _ => bail!("the observer was not admitted"),
        }
        let headers = Arc::new(Mutex::new(Vec::new()));
        {
            let (conn, headers) = (conn.clone(), Arc::clone(&headers));
            tokio::spawn(async move {
                while let Ok(datagram) = conn.read_datagram().await {
                    let Ok(frame) = FrameRef::decode(&datagram) else {
                        continue;
                    };
                    if let Ok((header, _)) = SframeHeader::decode(frame.payload) {
                        headers
                            .lock()
                            .expect("headers")
                            .push((frame.envelope.sender, header));
                    }
                }
            });
        }
        {
            // Streams (video groups, reliable data) are read and dropped, so the observer
            // is never a slow receiver.
            let conn = conn.clone();
            tokio::spawn(async move {
                while let Ok(mut recv) = conn.accept_uni().await {
                    tokio::spawn(async move {
                        while let Ok(Some(_)) = recv.read_chunk(64 * 1024, true).await {}
                    });
                }
            });
        }
        Ok(Self {
            _endpoint: endpoint,
            conn,
            headers,
        })
    }

    /// The (sender, header) pairs so far.
    pub(crate) fn headers(&self) -> Vec<(MemberId, SframeHeader)> {
        self.headers.lock().expect("headers").clone()
    }

    /// Senders seen so far.
    pub(crate) fn senders(&self) -> HashSet<MemberId> {
        self.headers().iter().map(|(s, _)| *s).collect()
    }

    /// Fail if any (KID, CTR) pair arrived twice; return how many headers were checked.
    pub(crate) fn assert_no_pair_twice(&self) -> usize {
        let headers = self.headers();
        let mut seen = HashSet::new();
        for (sender, header) in &headers {
            assert!(
                seen.insert((header.kid, header.ctr)),
                "(KID {}, CTR {}) sealed twice (the second from member {sender})",
                header.kid,
                header.ctr
            );
        }
        headers.len()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.conn.close(0u32.into(), b"done");
    }
}

async fn read_control(
    mut recv: quinn::RecvStream,
    _send: quinn::SendStream,
    joined: tokio::sync::oneshot::Sender<bool>,
) {
    let mut joined = Some(joined);
    let mut deframer = Deframer::new(sealroom_frame::control::MAX_CONTROL_LEN);
    while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
        deframer.push(chunk.bytes);
        while let Ok(Some(bytes)) = deframer.next_frame() {
            let Ok(message) = ControlMessage::decode(&bytes) else {
                continue;
            };
            if let Some(tx) = joined.take() {
                let _ = tx.send(matches!(message, ControlMessage::Joined { .. }));
            }
        }
    }
}
