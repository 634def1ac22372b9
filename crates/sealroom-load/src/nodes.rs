//! Multi-node mode (`--nodes N`): one room whose subscribers are spread over N relay nodes
//! linked as a cluster, measured beside one node carrying the same shape in the same
//! invocation, and (with `--failovers K`) the time a node's members take to hear the room
//! again after their node is killed.
//!
//! Each node is a child process of this tool (`sealroom-load --serve-node`): a relay and
//! its part in the cluster, with links to the other nodes by address (no directory, so the
//! figures are the data path's), and its internal listener for the link series. The
//! single-node run uses the same child without a cluster, so the two runs differ only in
//! the links. CPU is the sum over the nodes' processes, read from `/proc`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use sealroom_relay::cluster::{Cluster, ClusterConfig, Peer};
use sealroom_relay::http::{InternalOptions, InternalServer};
use sealroom_relay::{AppConfig, Limits, Relay, RelayConfig, TlsConfig};
use serde::Serialize;
use tokio::sync::watch;

use crate::client::{self, Ctx, Entry, Live, Role};
use crate::proc::{self, Server};
use crate::shape::Shape;
use crate::{APP, KID, LoadArgs, join_all, net, random_secret};

/// What `--serve-node` runs.
#[derive(Debug, Clone)]
pub(crate) struct NodeSpec {
    /// Node index (0: no cluster, a lone relay).
    pub(crate) index: u16,
    /// Where its link listener binds.
    pub(crate) link_listen: SocketAddr,
    /// The other nodes' link addresses.
    pub(crate) peers: Vec<Peer>,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) app_secret: String,
    pub(crate) cluster_secret: String,
}

/// Parse `INDEX=ADDRESS`.
pub(crate) fn parse_peer(text: &str) -> Result<Peer, String> {
    let (index, address) = text
        .split_once('=')
        .ok_or_else(|| format!("{text}: expected INDEX=ADDRESS"))?;
    Ok(Peer {
        index: index.parse().map_err(|e| format!("{index}: {e}"))?,
        address: address.parse().map_err(|e| format!("{address}: {e}"))?,
    })
}

/// Serve one node until standard input closes.
pub(crate) async fn serve(spec: NodeSpec) -> anyhow::Result<()> {
    let mut limits = Limits::default().unlimited_rates();
    limits.max_members_per_room = 10_000;
    limits.max_rooms_per_app = 1_000;
    limits.max_connections = 10_000;
    limits.max_connections_per_ip = 10_000;
    limits.join_timeout_secs = 60;
    let relay = Arc::new(
        Relay::start(
            RelayConfig::default()
                .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                .tls(TlsConfig::Files {
                    cert: spec.cert.clone(),
                    key: spec.key.clone(),
                })
                .limits(limits)
                .app(AppConfig::new(APP, KID, spec.app_secret.into_bytes())),
        )
        .await
        .context("cannot start the node's relay")?,
    );
    let internal = InternalServer::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        relay.clone(),
        InternalOptions::default(),
    )
    .await?;
    let cluster = if spec.index > 0 {
        let mut config = ClusterConfig::new(
            spec.index,
            spec.link_listen,
            spec.cluster_secret.into_bytes(),
        );
        config.peers = spec.peers;
        let cluster = Arc::new(Cluster::start(&relay, config).context("cannot join the cluster")?);
        internal.state().attach_cluster(Arc::clone(&cluster));
        Some(cluster)
    } else {
        None
    };
    println!("sealroom-load node {}", spec.index);
    println!("  listen:      {}", relay.local_addr());
    println!("  internal:    http://{}", internal.local_addr());
    let (gone_tx, gone) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        let _ = gone_tx.send(());
    });
    let _ = gone.await;
    if let Some(cluster) = cluster {
        cluster.shutdown();
    }
    Ok(())
}

/// A free UDP port on loopback (bound and released: the node binds it right after).
fn free_udp() -> anyhow::Result<SocketAddr> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(socket.local_addr()?)
}

/// N node processes, linked when N > 1.
pub(crate) struct Deployment {
    pub(crate) servers: Vec<Server>,
    entry: Entry,
}

impl Deployment {
    /// The nodes' member addresses, in node order.
    pub(crate) fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(|s| s.listen).collect()
    }

    /// The app's ticket secret.
    pub(crate) fn app_secret(&self) -> &[u8] {
        match &self.entry {
            Entry::Relay { secret, .. } => secret,
            Entry::Forwarder => &[],
        }
    }

    pub(crate) async fn start(
        args: &LoadArgs,
        identity: &net::Identity,
        nodes: usize,
    ) -> anyhow::Result<Self> {
        let app_secret = random_secret();
        let cluster_secret = random_secret();
        let links: Vec<SocketAddr> = (0..nodes).map(|_| free_udp()).collect::<Result<_, _>>()?;
        let me = std::env::current_exe().context("cannot find the path of this executable")?;
        let (cert, key) = identity.paths()?;
        let mut servers = Vec::with_capacity(nodes);
        for (i, link) in links.iter().enumerate() {
            let index = if nodes > 1 { i + 1 } else { 0 };
            let mut argv: Vec<String> = vec![
                "--serve-node".into(),
                "--node-index".into(),
                index.to_string(),
                "--link-listen".into(),
                link.to_string(),
                "--node-cert".into(),
                cert.into(),
                "--node-key".into(),
                key.into(),
                "--app-secret".into(),
                app_secret.clone(),
                "--cluster-secret".into(),
                cluster_secret.clone(),
            ];
            if nodes > 1 {
                for (j, peer) in links.iter().enumerate().filter(|(j, _)| *j != i) {
                    argv.push("--peer".into());
                    argv.push(format!("{}={peer}", j + 1));
                }
            }
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            servers.push(Server::spawn(
                &me,
                &argv,
                &args.out.join(format!("node-{}-of-{nodes}.log", i + 1)),
                true,
                args.server_threads,
            )?);
        }
        let deployment = Self {
            servers,
            entry: Entry::Relay {
                app: APP.to_owned(),
                kid: KID.to_owned(),
                secret: app_secret.into_bytes(),
            },
        };
        deployment.wait_links(nodes - 1).await?;
        Ok(deployment)
    }

    /// Wait until every node has `want` links up.
    async fn wait_links(&self, want: usize) -> anyhow::Result<()> {
        if want == 0 {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        for server in &self.servers {
            let internal = server
                .internal
                .context("a node without its internal listener")?;
            loop {
                let text = proc::scrape(internal).await.unwrap_or_default();
                if proc::metric(&text, "sealroom_cluster_links") as usize >= want {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!("the nodes did not link to each other within 20 s (see the node logs)");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    fn ctx(
        &self,
        node: usize,
        args: &LoadArgs,
        identity: &net::Identity,
        live: &Arc<Live>,
    ) -> anyhow::Result<Ctx> {
        Ok(Ctx {
            server: self.servers[node].listen,
            client_config: identity.client_config()?,
            socket_buffer: args.socket_buffer,
            rtt: args.rtt(),
            entry: self.entry.clone(),
            live: Arc::clone(live),
        })
    }

    fn cpu_secs(&self) -> anyhow::Result<f64> {
        let mut sum = 0.0;
        for server in &self.servers {
            sum += server.sample()?.cpu_secs;
        }
        Ok(sum)
    }

    /// Link frames and UDP bytes sent, summed over the nodes: (frames from the publisher's
    /// node, bytes from the publisher's node, bytes from every node).
    async fn link_counters(&self) -> (u64, u64, u64) {
        let mut out = (0, 0, 0);
        for (i, server) in self.servers.iter().enumerate() {
            let Some(internal) = server.internal else {
                continue;
            };
            let text = proc::scrape(internal).await.unwrap_or_default();
            let frames = sum_out(&text, "sealroom_cluster_link_frames_total");
            let bytes = sum_out(&text, "sealroom_cluster_link_bytes_total");
            if i == 0 {
                out.0 += frames;
                out.1 += bytes;
            }
            out.2 += bytes;
        }
        out
    }
}

/// The sum of a family's `direction="out"` samples.
fn sum_out(text: &str, family: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(family) && l.contains("direction=\"out\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// One run of the shape on `nodes` nodes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NodesRun {
    pub(crate) nodes: usize,
    pub(crate) subscribers: usize,
    pub(crate) window_secs: f64,
    pub(crate) ingress_frames_s: f64,
    pub(crate) egress_frames_s: f64,
    /// CPU of all node processes over the window, per frame delivered to a subscriber.
    pub(crate) cpu_us_per_egress_frame: f64,
    pub(crate) cpu_percent: f64,
    pub(crate) latency: crate::report::Latency,
    pub(crate) frames_expected: u64,
    pub(crate) frames_received: u64,
    pub(crate) loss_percent: f64,
    /// Over the whole run: frames the publisher sent, and frames its node sent over links.
    pub(crate) publisher_frames: u64,
    pub(crate) link_frames_from_publisher_node: u64,
    /// Minimum link bytes: each byte the publisher sent, once per link from its node.
    pub(crate) link_bytes_minimum: u64,
    pub(crate) link_bytes_from_publisher_node: u64,
    pub(crate) link_bytes_all_nodes: u64,
}

/// The shape on `nodes` nodes: subscriber `i` on node `i mod nodes`, the publisher on the
/// first node.
pub(crate) async fn run_shape(
    args: &LoadArgs,
    identity: &net::Identity,
    shape: Shape,
    nodes: usize,
) -> anyhow::Result<NodesRun> {
    let deployment = Deployment::start(args, identity, nodes).await?;
    let live = Arc::new(Live::default());
    let mut subscribers = Vec::new();
    for node in 0..nodes {
        let ctx = deployment.ctx(node, args, identity, &live)?;
        let plan = (1..=args.subscribers)
            .filter(|i| (i - 1) % nodes == node)
            .map(|i| (0, i, Role::Subscriber, None))
            .collect();
        for session in join_all(&ctx, plan, args.join_concurrency).await {
            subscribers.push(session.context("a subscriber could not join")?);
        }
    }
    let ctx = deployment.ctx(0, args, identity, &live)?;
    let publisher = join_all(&ctx, vec![(0, 0, Role::Publisher, None)], 1)
        .await
        .pop()
        .context("no publisher")?
        .context("the publisher could not join")?;

    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));
    let measured = Duration::from_secs_f64(args.duration.max(0.1));
    let window = client::measured_window(warmup, measured)?;
    let recorders = client::record(&subscribers, window, &live)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let publishing = tokio::spawn(client::publish(
        Arc::new(publisher),
        shape,
        window,
        Duration::ZERO,
        stop_rx,
        Arc::clone(&live),
    ));
    let t0 = tokio::time::Instant::now();
    tokio::time::sleep_until(t0 + warmup).await;
    let cpu_start = deployment.cpu_secs()?;
    tokio::time::sleep_until(t0 + warmup + measured).await;
    let cpu_end = deployment.cpu_secs()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop_tx.send(true);
    let sent = publishing.await?;
    // The link series are sampled every second: let the last sample in.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (link_frames, link_bytes_pub, link_bytes_all) = deployment.link_counters().await;
    for session in &subscribers {
        session.close();
    }
    drop(deployment);

    let secs = measured.as_secs_f64();
    let mut latency = Histogram::<u64>::new_with_bounds(1_000, 120_000_000_000, 3)?;
    let (mut received, mut arrivals) = (0u64, 0u64);
    for recorder in &recorders {
        let recorder = recorder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        latency.add(&recorder.latency)?;
        received += recorder.received_of_window;
        arrivals += recorder.arrivals;
    }
    if arrivals == 0 {
        bail!(
            "{nodes} node(s): no frame reached a subscriber in the measured window (see the node logs in {})",
            args.out.display()
        );
    }
    let cpu = (cpu_end - cpu_start).max(0.0);
    let expected = sent.frames * args.subscribers as u64;
    let links = nodes as u64 - 1;
    let publisher_frames = live.frames_sent.load(Ordering::Relaxed);
    Ok(NodesRun {
        nodes,
        subscribers: args.subscribers,
        window_secs: secs,
        ingress_frames_s: sent.frames as f64 / secs,
        egress_frames_s: arrivals as f64 / secs,
        cpu_us_per_egress_frame: cpu * 1e6 / arrivals as f64,
        cpu_percent: 100.0 * cpu / secs,
        latency: crate::report::Latency::of(&latency),
        frames_expected: expected,
        frames_received: received,
        loss_percent: if expected > 0 {
            100.0 * expected.saturating_sub(received) as f64 / expected as f64
        } else {
            0.0
        },
        publisher_frames,
        link_frames_from_publisher_node: link_frames,
        link_bytes_minimum: live.bytes_sent.load(Ordering::Relaxed) * links,
        link_bytes_from_publisher_node: link_bytes_pub,
        link_bytes_all_nodes: link_bytes_all,
    })
}

/// Print the runs side by side.
pub(crate) fn table(runs: &[NodesRun]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:>10} {:>10} {:>11} {:>8} {:>9} {:>9} {:>9} {:>7}",
        "nodes",
        "in fr/s",
        "out fr/s",
        "CPU us/fr",
        "CPU %",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "loss %"
    );
    for run in runs {
        let _ = writeln!(
            out,
            "{:<6} {:>10.0} {:>10.0} {:>11.2} {:>8.1} {:>9.3} {:>9.3} {:>9.3} {:>7.3}",
            run.nodes,
            run.ingress_frames_s,
            run.egress_frames_s,
            run.cpu_us_per_egress_frame,
            run.cpu_percent,
            run.latency.p50_us / 1000.0,
            run.latency.p99_us / 1000.0,
            run.latency.p999_us / 1000.0,
            run.loss_percent,
        );
    }
    for run in runs.iter().filter(|r| r.nodes > 1) {
        let links = run.nodes as u64 - 1;
        let _ = writeln!(
            out,
            "node links ({} nodes): the publisher's node sent {} frames over its {links} links for {} \
             published ({:.3} copies per link); {} bytes from it against a minimum of {} (one \
             copy per link): {:.2}x; {} bytes over all links, both ways: {:.2}x",
            run.nodes,
            run.link_frames_from_publisher_node,
            run.publisher_frames,
            run.link_frames_from_publisher_node as f64
                / (run.publisher_frames * links).max(1) as f64,
            run.link_bytes_from_publisher_node,
            run.link_bytes_minimum,
            run.link_bytes_from_publisher_node as f64 / run.link_bytes_minimum.max(1) as f64,
            run.link_bytes_all_nodes,
            run.link_bytes_all_nodes as f64 / run.link_bytes_minimum.max(1) as f64,
        );
    }
    out
}

/// Everything `--nodes N` reports, as written to the JSON file.
#[derive(Debug, Serialize)]
struct NodesResults {
    sealroom_version: &'static str,
    cores: usize,
    load_average_at_start: String,
    load_average_at_end: String,
    shape: Shape,
    runs: Vec<NodesRun>,
    failover: Option<crate::failover::FailoverReport>,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The multi-node mode: the shape on one node, then on `nodes`, then the failovers.
pub(crate) async fn run(
    args: &LoadArgs,
    identity: &net::Identity,
    nodes: usize,
    load_average_at_start: String,
) -> anyhow::Result<()> {
    let shape = Shape::of(args.shape);
    let mut runs = Vec::new();
    for count in [1, nodes] {
        eprintln!(
            "{count} node(s): shape {:?} ({}), 1 publisher + {} subscribers spread over the nodes, {:.0} s warm-up + {:.0} s measured",
            shape.name,
            shape.describe(),
            args.subscribers,
            args.warmup,
            args.duration
        );
        runs.push(run_shape(args, identity, shape, count).await?);
    }
    let failover = if args.failovers > 0 {
        Some(crate::failover::measure(args, identity, nodes, args.failovers).await?)
    } else {
        None
    };
    let results = NodesResults {
        sealroom_version: env!("CARGO_PKG_VERSION"),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average_at_start,
        load_average_at_end: load_average(),
        shape,
        runs,
        failover,
    };
    println!(
        "\nshape {:?}: {}; one room, 1 publisher + {} subscribers; {:.0} s window; {} cores; load average {} at start, {} at end",
        shape.name,
        shape.describe(),
        args.subscribers,
        args.duration,
        results.cores,
        results.load_average_at_start,
        results.load_average_at_end,
    );
    print!("{}", table(&results.runs));
    if let Some(failover) = &results.failover {
        print!("{}", crate::failover::table(failover));
    }
    let name = serde_json::to_value(shape.name)?;
    let json = args.out.join(format!(
        "nodes{nodes}-{}-n{}.json",
        name.as_str().unwrap_or("shape"),
        args.subscribers
    ));
    let text = serde_json::to_string_pretty(&results)?;
    std::fs::write(&json, text + "\n")
        .with_context(|| format!("cannot write {}", json.display()))?;
    println!("results: {}", json.display());
    Ok(())
}
