//! `sealroom-load`: a load generator for the relay, with a bare-quinn baseline and a
//! connection-scale mode.
//!
//! The relay under test runs as a child process (the shipped `sealroom relay` command, found
//! next to this executable, with a generated config on loopback) so its CPU time and memory
//! can be read from `/proc`.
//! Simulated clients are raw quinn connections speaking the sealroom wire format, each on
//! its own UDP socket: R rooms of one publisher and N subscribers, sending one of the shapes
//! in [`shape`]. After a warm-up the generator measures a window and reports rates, the
//! relay's CPU per egress frame and per 100 Mbit/s, its peak RSS, latency percentiles and
//! losses: a table on stdout, JSON and an SVG latency plot in the output directory.
//!
//! With `--baseline` the same shape is then run against a bare-quinn forwarder (see
//! [`forwarder`]) and the relay/baseline ratios are printed. With `--idle-members M` it
//! joins M idle members across rooms and reports the relay's RSS per member and join rate.
//! With `--nodes N` one room's subscribers are spread over N linked nodes, measured beside
//! one node ([`nodes`]), and `--failovers K` times a node's death ([`failover`]).

mod churn;
mod client;
mod delay;
mod engine;
mod failover;
mod forwarder;
mod net;
mod nodes;
mod proc;
mod report;
mod shape;
mod storm;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, watch};

use client::{Ctx, Entry, Live, Role, Session};
use proc::{MachineCpu, ProcSample, Server, UdpCounters};
use report::{Ratios, Results, RunReport, ScaleReport};
use shape::{Shape, ShapeName};

const APP: &str = "load";
const KID: &str = "load";

/// Drive a relay with simulated rooms and report throughput, CPU, memory and latency.
#[derive(Debug, clap::Parser)]
#[command(name = "sealroom-load", version, about)]
#[command(group = clap::ArgGroup::new("one_loop").args(["engine", "serve_engine"]).multiple(true))]
struct LoadArgs {
    /// What each publisher sends.
    #[arg(long, value_enum, default_value = "audio")]
    shape: ShapeName,
    /// Rooms, each with one publisher.
    #[arg(long, short = 'r', default_value_t = 1)]
    rooms: usize,
    /// Subscribers per room.
    #[arg(long, short = 'n', default_value_t = 50)]
    subscribers: usize,
    /// Seconds of warm-up before the measured window.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Also run the bare-quinn baseline on the same shape, right after the relay, and print
    /// relay/baseline ratios.
    #[arg(long)]
    baseline: bool,
    /// Also run the one-loop quinn-proto forwarder (the baseline's forwarding without
    /// quinn's task per connection) after the baseline, and print engine/baseline ratios.
    #[arg(long, requires = "baseline")]
    engine: bool,
    /// The one-loop forwarder gathers each turn's packets into `sendmmsg` calls.
    #[arg(long, requires = "one_loop")]
    engine_batch: bool,
    /// The one-loop forwarder sleeps this many microseconds after a turn that sent
    /// packets, so that the acknowledgements they cause are read together.
    #[arg(long, requires = "one_loop", default_value_t = 0)]
    engine_coalesce_us: u64,
    /// The one-loop forwarder asks its peers, with the ACK-frequency extension, to
    /// acknowledge after this many ack-eliciting packets (0: QUIC's default of two).
    #[arg(long, requires = "one_loop", default_value_t = 0)]
    engine_ack_threshold: u32,
    /// Connection-scale mode: join M idle members across rooms and report the relay's RSS
    /// per member and the join rate, instead of running a shape.
    #[arg(long, value_name = "M")]
    idle_members: Option<usize>,
    /// Join storm: beside the shape, N new members a second join the relay (in rooms of
    /// their own) and leave at once, to show whether admission holds up forwarding. Relay
    /// runs only.
    #[arg(long, value_name = "N")]
    join_storm: Option<f64>,
    /// Churn soak for SECS seconds instead of a shape: in each of `--rooms` rooms a
    /// publisher sends audio and reliable data while `--churn-members` members keep
    /// joining, leaving, coming back from a new device, changing subscriptions, refreshing
    /// tickets and being kicked, beside `--churn-stayers` members who stay; checks at the
    /// end that the counters balance, that nothing was lost to a stayer, that nothing failed
    /// to open and that the relay's footprint did not grow (docs/PERFORMANCE.md).
    #[arg(long, value_name = "SECS")]
    churn: Option<f64>,
    /// Churning members per room in the churn soak.
    #[arg(long, default_value_t = 4)]
    churn_members: usize,
    /// Members per room who stay for the whole churn soak.
    #[arg(long, default_value_t = 3)]
    churn_stayers: usize,
    /// Largest relay RSS growth after warm-up the churn soak accepts, MiB per hour (judged
    /// only over at least 5 minutes after warm-up).
    #[arg(long, default_value_t = 16.0)]
    churn_max_rss_growth: f64,
    /// Members per room in connection-scale mode.
    #[arg(long, default_value_t = 100)]
    members_per_room: usize,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 32)]
    join_concurrency: usize,
    /// Idle members sharing one UDP socket in connection-scale mode (idle members receive
    /// only keep-alives, so sharing does not distort anything; throughput runs always give
    /// every client its own socket).
    #[arg(long, default_value_t = 10)]
    clients_per_socket: usize,
    /// Receive and send buffer of every simulated client's UDP socket, bytes (the kernel
    /// caps it at net.core.rmem_max / wmem_max and doubles it). The relay and the baseline
    /// use the relay's own setting.
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    socket_buffer: usize,
    /// Worker threads of the relay's (and the baseline's) async runtime, passed as
    /// TOKIO_WORKER_THREADS; 0 keeps the default (one per core). One thread measures what
    /// one core does and avoids cross-thread wake-ups.
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
    /// The relay's `send_batch_packets` (packets of different connections gathered into one
    /// `sendmmsg`; 0 sends each on its own, as quinn does). Default: the relay's default.
    /// The baseline always sends as stock quinn does.
    #[arg(long, value_name = "PACKETS")]
    send_batch: Option<usize>,
    /// A `[limits]` setting of the relay under test, as `KEY=VALUE` in TOML (repeatable),
    /// e.g. `--relay-limit ack_eliciting_threshold=0` to measure without a setting's
    /// default. The baseline and the one-loop forwarder are not changed by it.
    #[arg(long, value_name = "KEY=VALUE")]
    relay_limit: Vec<String>,
    /// Round-trip time between every simulated client and the server, milliseconds: each
    /// packet a client sends waits this long before it leaves (loopback's own RTT is tens
    /// of microseconds; QUIC's ACK timing depends on the RTT).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    rtt_ms: u64,
    /// Directory for the JSON results, the SVG plot, the generated relay config and the
    /// servers' logs.
    #[arg(long, default_value = "target/load")]
    out: PathBuf,
    /// The `sealroom` executable whose `relay` command is measured. Default: `sealroom` in
    /// the directory of this executable (the same cargo profile); build both together, e.g.
    /// `cargo build --release -p sealroom -p sealroom-load`.
    #[arg(long, value_name = "PATH", env = "SEALROOM_RELAY_BIN")]
    relay_bin: Option<PathBuf>,
    /// Multi-node mode: one room (`--subscribers` spread over N relay nodes linked as a
    /// cluster, the publisher on the first) beside the same shape on one node, in this
    /// invocation; reports CPU per egress frame, latency and the bytes over node links.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(2..=16))]
    nodes: Option<u16>,
    /// With `--nodes`: also kill a node K times and report the time its members take to
    /// hear the room again (p50/p99 over every member of every run).
    #[arg(long, value_name = "K", default_value_t = 0, requires = "nodes")]
    failovers: usize,
    /// Members on the node killed in each failover run.
    #[arg(long, default_value_t = 3)]
    failover_members: usize,
    /// Run one relay node (what --nodes starts as child processes).
    #[arg(long, hide = true)]
    serve_node: bool,
    #[arg(long, hide = true, default_value_t = 0)]
    node_index: u16,
    #[arg(long, hide = true, default_value = "127.0.0.1:0")]
    link_listen: std::net::SocketAddr,
    #[arg(long, hide = true, value_parser = nodes::parse_peer)]
    peer: Vec<sealroom_relay::cluster::Peer>,
    #[arg(long, hide = true, requires = "serve_node")]
    node_cert: Option<PathBuf>,
    #[arg(long, hide = true, requires = "serve_node")]
    node_key: Option<PathBuf>,
    #[arg(long, hide = true, default_value = "")]
    app_secret: String,
    #[arg(long, hide = true, default_value = "")]
    cluster_secret: String,
    /// Run the bare-quinn forwarder (what --baseline starts as a child process).
    #[arg(long, hide = true)]
    serve_forwarder: bool,
    /// Run the one-loop quinn-proto forwarder (what --engine starts as a child process, with
    /// the same --engine-* options).
    #[arg(long, hide = true)]
    serve_engine: bool,
    /// The forwarder's certificate (PEM).
    #[arg(long, hide = true)]
    cert: Option<PathBuf>,
    /// The forwarder's key (PEM).
    #[arg(long, hide = true)]
    key: Option<PathBuf>,
}

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Relay,
    Baseline,
    Engine,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Self::Relay => "relay",
            Self::Baseline => "baseline",
            Self::Engine => "engine",
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = <LoadArgs as clap::Parser>::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: LoadArgs) -> anyhow::Result<()> {
    if args.serve_forwarder {
        let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
            bail!("--serve-forwarder needs --cert and --key");
        };
        return forwarder::serve(cert, key).await;
    }
    if args.serve_engine {
        let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
            bail!("--serve-engine needs --cert and --key");
        };
        // On a worker thread, where the runtime's I/O driver runs too (the thread that
        // blocks on `run` would be woken by the worker for every readiness event).
        let (cert, key) = (cert.clone(), key.clone());
        let options = engine::Options {
            batch: args.engine_batch,
            coalesce: Duration::from_micros(args.engine_coalesce_us),
            ack_threshold: args.engine_ack_threshold,
        };
        return tokio::spawn(async move { engine::serve(&cert, &key, options).await })
            .await
            .context("the engine task failed")?;
    }
    if args.serve_node {
        let (Some(cert), Some(key)) = (args.node_cert.clone(), args.node_key.clone()) else {
            bail!("--serve-node needs --node-cert and --node-key");
        };
        return nodes::serve(nodes::NodeSpec {
            index: args.node_index,
            link_listen: args.link_listen,
            peers: args.peer.clone(),
            cert,
            key,
            app_secret: args.app_secret.clone(),
            cluster_secret: args.cluster_secret.clone(),
        })
        .await;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let identity = net::Identity::generate(&args.out)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    eprintln!("sealroom-load: {cores} cores, load average {load_average}");
    if let Some(count) = args.nodes {
        return nodes::run(&args, &identity, usize::from(count), load_average).await;
    }
    eprintln!("relay under test: {}", relay_executable(&args)?.display());
    let mut results = Results {
        sealroom_version: env!("CARGO_PKG_VERSION"),
        cores,
        load_average_at_start: load_average,
        runs: Vec::new(),
        ratios: None,
        engine_ratios: None,
        scale: None,
    };
    if let Some(secs) = args.churn {
        return churn::run(&args, &identity, secs).await;
    }
    if let Some(members) = args.idle_members {
        let scale = scale(&args, &identity, members).await?;
        print!("{}", report::scale_table(&scale));
        results.scale = Some(scale);
        let json = args.out.join(format!("idle-m{members}.json"));
        write_json(&json, &results)?;
        println!("results: {}", json.display());
        return Ok(());
    }
    let shape = Shape::of(args.shape);
    let mut targets = vec![Target::Relay];
    if args.baseline {
        targets.push(Target::Baseline);
    }
    if args.engine {
        targets.push(Target::Engine);
    }
    for target in targets {
        eprintln!(
            "{}: shape {:?} ({}), {} room(s) x 1 publisher + {} subscribers, {:.0} s warm-up + {:.0} s measured",
            target.name(),
            shape.name,
            shape.describe(),
            args.rooms,
            args.subscribers,
            args.warmup,
            args.duration
        );
        results
            .runs
            .push(throughput(&args, &identity, shape, target).await?);
    }
    if let [relay, baseline, rest @ ..] = results.runs.as_slice() {
        results.ratios = Some(Ratios::of(relay, baseline));
        results.engine_ratios = rest.first().map(|engine| Ratios::of(engine, baseline));
    }
    println!(
        "\nshape {:?}: {}; {} room(s) x (1 publisher + {} subscribers); {:.0} s window; {} cores; server threads {}",
        shape.name,
        shape.describe(),
        args.rooms,
        args.subscribers,
        args.duration,
        cores,
        if args.server_threads == 0 {
            "one per core".to_owned()
        } else {
            args.server_threads.to_string()
        }
    );
    print!("{}", report::table(&results.runs, results.ratios.as_ref()));
    if let Some(r) = &results.engine_ratios {
        println!(
            "engine/baseline: CPU per egress frame {:.2}, CPU per 100 Mbit/s {:.2}, latency p50 {:.2}, p99 {:.2}",
            r.cpu_per_egress_frame, r.cpu_percent_per_100mbit, r.latency_p50, r.latency_p99
        );
    }
    let stem = format!(
        "{}-r{}-n{}",
        serde_json::to_value(shape.name)?
            .as_str()
            .unwrap_or("shape"),
        args.rooms,
        args.subscribers
    );
    let json = args.out.join(format!("{stem}.json"));
    write_json(&json, &results)?;
    let svg = args.out.join(format!("{stem}-latency.svg"));
    let title = format!(
        "sealroom-load: {:?}, {} room(s) x {} subscribers",
        shape.name, args.rooms, args.subscribers
    );
    report::plot(&results.runs, &title, &svg)?;
    println!(
        "results: {}\nlatency plot: {}",
        json.display(),
        svg.display()
    );
    Ok(())
}

fn write_json(path: &Path, results: &Results) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(results)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// What a generated relay config sets beyond the load settings every run shares.
#[derive(Debug, Clone, Copy)]
struct RelayPlan<'a> {
    /// The config's file name in the output directory.
    file: &'a str,
    /// The admin token (`None`: no admin API).
    admin: Option<&'a str>,
    /// `max_members_per_room` (at least 2).
    per_room: usize,
    /// `max_rooms_per_app` (`None`: the relay's default).
    rooms: Option<usize>,
    /// Clients expected: `max_connections` and `max_connections_per_ip` get 64 more
    /// (`None`: the relay's defaults).
    clients: Option<usize>,
}

/// Write a loopback relay's config: the generator's certificate, one app with `secret`,
/// every rate limit lifted (the generator measures forwarding, not policing) and the
/// bounds of `plan`.
fn relay_config(
    dir: &Path,
    identity: &net::Identity,
    secret: &str,
    plan: RelayPlan<'_>,
) -> anyhow::Result<PathBuf> {
    let max = u32::MAX;
    let path = dir.join(plan.file);
    let admin = plan.admin.map_or(String::new(), |token| {
        format!("admin_token = \"{token}\"\n")
    });
    let mut bounds = format!("max_members_per_room = {}\n", plan.per_room.max(2));
    if let Some(rooms) = plan.rooms {
        bounds += &format!("max_rooms_per_app = {}\n", rooms.max(1));
    }
    if let Some(clients) = plan.clients {
        let connections = clients + 64;
        bounds +=
            &format!("max_connections = {connections}\nmax_connections_per_ip = {connections}\n");
    }
    let text = format!(
        r#"# Generated by `sealroom-load`: a loopback relay for load tests.
listen = "127.0.0.1:0"
internal_listen = "127.0.0.1:0"
{admin}drain_secs = 0

[tls]
cert = "{cert}"
key = "{key}"

[log]
filter = "warn"

[limits]
{bounds}join_timeout_secs = 60
# rate limits lifted: the load generator measures forwarding, not policing
data_messages_per_sec = {max}
data_messages_burst = {max}
data_bytes_per_sec = {max}
data_bytes_burst = {max}
media_bytes_per_sec = {max}
media_bytes_burst = {max}
control_messages_per_sec = {max}
joins_per_app_per_sec = {max}
joins_per_user_per_sec = {max}
joins_per_user_burst = {max}
joins_per_address_per_sec = {max}
joins_per_address_burst = {max}

[[apps]]
app = "{APP}"

[[apps.secrets]]
kid = "{KID}"
secret = "{secret}"
"#,
        cert = identity.cert_path.display(),
        key = identity.key_path.display(),
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn random_secret() -> String {
    let mut buf = [0u8; 24];
    rand::fill(&mut buf[..]);
    hex::encode(buf)
}

/// The `sealroom` executable to run as the relay: `--relay-bin`, or the one beside this
/// executable.
fn relay_executable(args: &LoadArgs) -> anyhow::Result<PathBuf> {
    let path = match &args.relay_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("cannot find the path of this executable; pass --relay-bin")?
            .with_file_name(format!("sealroom{}", std::env::consts::EXE_SUFFIX)),
    };
    if !path.is_file() {
        bail!(
            "no relay executable at {}: build it with the same profile as this tool \
             (`cargo build --bin sealroom`, with --release for a release run) or pass \
             --relay-bin PATH",
            path.display()
        );
    }
    Ok(path)
}

/// Start the server under test.
fn start_server(
    args: &LoadArgs,
    identity: &net::Identity,
    target: Target,
    clients: usize,
    rooms: usize,
    per_room: usize,
) -> anyhow::Result<(Server, Entry)> {
    match target {
        Target::Relay => {
            let secret = random_secret();
            let plan = RelayPlan {
                file: "relay.toml",
                admin: None,
                per_room,
                rooms: Some(rooms),
                clients: Some(clients),
            };
            let config = relay_config(&args.out, identity, &secret, plan)?;
            let mut limits: Vec<String> = args
                .send_batch
                .map(|packets| format!("send_batch_packets = {packets}"))
                .into_iter()
                .collect();
            for setting in &args.relay_limit {
                let (key, value) = setting
                    .split_once('=')
                    .with_context(|| format!("--relay-limit {setting}: expected KEY=VALUE"))?;
                limits.push(format!("{} = {}", key.trim(), value.trim()));
            }
            if !limits.is_empty() {
                let mut text = std::fs::read_to_string(&config)?;
                text = text.replace("[limits]\n", &format!("[limits]\n{}\n", limits.join("\n")));
                std::fs::write(&config, text)?;
            }
            let config = config.to_str().context("non-UTF-8 output path")?;
            let server = Server::spawn(
                &relay_executable(args)?,
                &["relay", "--config", config],
                &args.out.join("relay.log"),
                true,
                args.server_threads,
            )?;
            let entry = Entry::Relay {
                app: APP.to_owned(),
                kid: KID.to_owned(),
                secret: secret.into_bytes(),
            };
            Ok((server, entry))
        }
        Target::Baseline => {
            let (cert, key) = identity.paths()?;
            let argv = ["--serve-forwarder", "--cert", cert, "--key", key];
            let server = spawn_self(args, &argv, "forwarder.log")?;
            Ok((server, Entry::Forwarder))
        }
        Target::Engine => {
            let (cert, key) = identity.paths()?;
            let coalesce = args.engine_coalesce_us.to_string();
            let ack_threshold = args.engine_ack_threshold.to_string();
            let mut argv = vec![
                "--serve-engine",
                "--cert",
                cert,
                "--key",
                key,
                "--engine-coalesce-us",
                &coalesce,
                "--engine-ack-threshold",
                &ack_threshold,
            ];
            if args.engine_batch {
                argv.push("--engine-batch");
            }
            let server = spawn_self(args, &argv, "engine.log")?;
            Ok((server, Entry::Forwarder))
        }
    }
}

/// Run this executable again as a server (`argv` picks which), logging into `log`.
fn spawn_self(args: &LoadArgs, argv: &[&str], log: &str) -> anyhow::Result<Server> {
    let me = std::env::current_exe().context("cannot find the path of this executable")?;
    Server::spawn(&me, argv, &args.out.join(log), false, args.server_threads)
}

/// Join `count` clients with at most `concurrency` joins in flight.
async fn join_all(
    ctx: &Ctx,
    plan: Vec<(usize, usize, Role, Option<quinn::Endpoint>)>,
    concurrency: usize,
) -> Vec<anyhow::Result<Session>> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(plan.len());
    for (room, index, role, endpoint) in plan {
        let ctx = ctx.clone();
        let permits = Arc::clone(&permits);
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await?;
            tokio::time::timeout(
                Duration::from_secs(60),
                Session::enter(&ctx, endpoint.as_ref(), room, index, role),
            )
            .await
            .context("join timed out")?
        }));
    }
    let mut sessions = Vec::with_capacity(tasks.len());
    for task in tasks {
        sessions.push(match task.await {
            Ok(result) => result,
            Err(err) => Err(err.into()),
        });
    }
    sessions
}

/// One throughput run against `target`.
async fn throughput(
    args: &LoadArgs,
    identity: &net::Identity,
    shape: Shape,
    target: Target,
) -> anyhow::Result<RunReport> {
    let storm_rate = args.join_storm.filter(|_| target == Target::Relay);
    let (storm_clients, storm_rooms, per_room) = match storm_rate {
        // Storm members leave at once; a few times the joins in flight covers the ones
        // still closing.
        Some(_) => (
            4 * storm::IN_FLIGHT,
            storm::ROOMS,
            (args.subscribers + 1).max(4 * storm::IN_FLIGHT / storm::ROOMS),
        ),
        None => (0, 0, args.subscribers + 1),
    };
    let clients = args.rooms * (args.subscribers + 1);
    let (server, entry) = start_server(
        args,
        identity,
        target,
        clients + storm_clients,
        args.rooms + storm_rooms,
        per_room,
    )?;
    let live = Arc::new(Live::default());
    let ctx = Ctx {
        server: server.listen,
        client_config: identity.client_config()?,
        socket_buffer: args.socket_buffer,
        rtt: args.rtt(),
        entry,
        live: Arc::clone(&live),
    };
    let (_, server_recv_buffer, server_send_buffer) =
        sealroom_relay::udp_socket(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let (_, client_recv_buffer, client_send_buffer) = net::udp_socket(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        args.socket_buffer,
    )?;

    // Subscribers first, so that every frame has its whole audience.
    let plan = (0..args.rooms)
        .flat_map(|room| (1..=args.subscribers).map(move |i| (room, i, Role::Subscriber, None)))
        .collect();
    let subscribers = join_all(&ctx, plan, args.join_concurrency)
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()
        .context("a subscriber could not join")?;
    let plan = (0..args.rooms)
        .map(|room| (room, 0, Role::Publisher, None))
        .collect();
    let publishers = join_all(&ctx, plan, args.join_concurrency)
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()
        .context("a publisher could not join")?;

    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));
    let measured = Duration::from_secs_f64(args.duration.max(0.1));
    let window = client::measured_window(warmup, measured)?;
    let recorders = client::record(&subscribers, window, &live)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let period = shape.period();
    let rooms = u32::try_from(args.rooms.max(1))?;
    let publishing: Vec<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(i, session)| {
            let offset = period * u32::try_from(i)? / rooms;
            Ok(tokio::spawn(client::publish(
                Arc::new(session),
                shape,
                window,
                offset,
                stop_rx.clone(),
                Arc::clone(&live),
            )))
        })
        .collect::<anyhow::Result<_>>()?;

    let storm = match storm_rate {
        Some(rate) => Some((rate, storm::start(&ctx, rate, args.rooms, stop_rx.clone())?)),
        None => None,
    };
    let t0 = tokio::time::Instant::now();
    let progress = tokio::spawn(progress(
        server.pid(),
        Arc::clone(&live),
        target.name(),
        t0,
        warmup,
        measured,
    ));
    tokio::time::sleep_until(t0 + warmup).await;
    let cpu_start = server.sample()?;
    let own_start = ProcSample::own()?;
    let udp_start = UdpCounters::read();
    let machine_start = MachineCpu::read();
    let scraped_start = scrape(&server).await;
    let storm_start = storm.as_ref().map(|(_, (_, counts))| counts.read());
    tokio::time::sleep_until(t0 + warmup + measured).await;
    let cpu_end = server.sample()?;
    let own_end = ProcSample::own()?;
    let udp_end = UdpCounters::read();
    let machine_end = MachineCpu::read();
    let scraped_end = scrape(&server).await;
    let join_storm = match (&storm, storm_start) {
        (Some((rate, (_, counts))), Some(start)) => {
            Some(counts.report(*rate, start, counts.read(), measured.as_secs_f64()))
        }
        _ => None,
    };
    // Let the frames sent at the end of the window arrive (publishers keep sending, so the
    // conditions stay those of the window), then stop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop_tx.send(true);
    let mut sent = client::Sent::default();
    for task in publishing {
        let s = task.await?;
        sent.frames += s.frames;
        sent.bytes += s.bytes;
        sent.failed += s.failed;
    }
    progress.abort();
    if let Some((_, (task, _))) = storm {
        let _ = task.await;
    }
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let peak = server.sample()?;
    let mut quic = report::QuicCounts::default();
    for session in &subscribers {
        let stats = session.conn.stats();
        quic.packets_received += stats.udp_rx.datagrams;
        quic.receive_syscalls += stats.udp_rx.ios;
        quic.acks_sent += stats.frame_tx.acks;
        quic.ack_frequency_frames_received += stats.frame_rx.ack_frequency;
        quic.frames_delivered = live.frames_received.load(Ordering::Relaxed);
        session.close();
    }
    server.stop();

    let secs = measured.as_secs_f64();
    let mut latency = Histogram::<u64>::new_with_bounds(1_000, 120_000_000_000, 3)?;
    let (mut received, mut arrivals, mut arrival_bytes) = (0u64, 0u64, 0u64);
    for recorder in &recorders {
        let recorder = recorder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        latency.add(&recorder.latency)?;
        received += recorder.received_of_window;
        arrivals += recorder.arrivals;
        arrival_bytes += recorder.arrival_bytes;
    }
    if arrivals == 0 {
        bail!(
            "{}: no frame reached a subscriber in the measured window (see the logs in {})",
            target.name(),
            args.out.display()
        );
    }
    let expected = sent.frames * args.subscribers as u64;
    let cpu = (cpu_end.cpu_secs - cpu_start.cpu_secs).max(0.0);
    let generator_cpu = (own_end.cpu_secs - own_start.cpu_secs).max(0.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let egress_mbit = arrival_bytes as f64 * 8.0 / secs / 1e6;
    let cpu_percent = 100.0 * cpu / secs;
    let relay_handover = handover(&scraped_start, &scraped_end);
    let drops_start = scraped_start.drops;
    let server_dropped = scraped_end
        .drops
        .into_iter()
        .filter_map(|(reason, n)| {
            let before = drops_start.get(&reason).copied().unwrap_or(0);
            (n > before).then(|| (reason, n - before))
        })
        .collect();
    Ok(RunReport {
        server: match target {
            Target::Engine if args.engine_batch => "engine-sendmmsg",
            _ => target.name(),
        },
        shape,
        rooms: args.rooms,
        subscribers_per_room: args.subscribers,
        window_secs: secs,
        server_threads: args.server_threads,
        send_batch_packets: match target {
            Target::Relay => args.send_batch,
            Target::Baseline | Target::Engine => None,
        },
        relay_limits: match target {
            Target::Relay => args.relay_limit.clone(),
            Target::Baseline | Target::Engine => Vec::new(),
        },
        client_rtt_ms: args.rtt_ms,
        client_packets_dropped_by_rtt_line: delay::DROPPED.swap(0, Ordering::Relaxed),
        ingress_mbit_s: sent.bytes as f64 * 8.0 / secs / 1e6,
        egress_mbit_s: egress_mbit,
        ingress_frames_s: sent.frames as f64 / secs,
        egress_frames_s: arrivals as f64 / secs,
        server_cpu_percent: cpu_percent,
        server_cpu_us_per_egress_frame: cpu * 1e6 / arrivals as f64,
        server_wakeups_per_egress_frame: cpu_end.sleeps.saturating_sub(cpu_start.sleeps) as f64
            / arrivals as f64,
        server_cpu_percent_per_100mbit_egress: if egress_mbit > 0.0 {
            cpu_percent / (egress_mbit / 100.0)
        } else {
            f64::NAN
        },
        egress_mbit_s_per_core: if cpu > 0.0 {
            egress_mbit / (cpu / secs)
        } else {
            f64::NAN
        },
        server_peak_rss_bytes: peak.hwm,
        server_rss_bytes: peak.rss,
        latency: report::Latency::of(&latency),
        frames_expected: expected,
        frames_received: received,
        frames_lost: expected.saturating_sub(received),
        loss_percent: if expected > 0 {
            100.0 * expected.saturating_sub(received) as f64 / expected as f64
        } else {
            0.0
        },
        server_dropped,
        send_failures: sent.failed,
        generator_cpu_percent: 100.0 * generator_cpu / secs,
        others_cpu_percent: (100.0 * machine_end.busy_cores_since(machine_start, cores)
            - cpu_percent
            - 100.0 * generator_cpu / secs)
            .max(0.0),
        udp: udp_end.since(udp_start),
        server_socket_recv_buffer: server_recv_buffer,
        server_socket_send_buffer: server_send_buffer,
        client_socket_recv_buffer: client_recv_buffer,
        client_socket_send_buffer: client_send_buffer,
        subscriber_quic: quic,
        relay_handover,
        join_storm,
        curve: report::curve(&latency),
    })
}

/// What the relay's metrics say at one moment (empty for the baseline, which has none).
#[derive(Debug, Default)]
struct Scraped {
    /// Frames dropped by reason.
    drops: BTreeMap<String, u64>,
    /// The hand-over delay histogram: cumulative counts by upper bound (seconds), and the sum.
    delay_buckets: Vec<(f64, u64)>,
    delay_sum: f64,
}

async fn scrape(server: &Server) -> Scraped {
    let Some(internal) = server.internal else {
        return Scraped::default();
    };
    let Ok(text) = proc::scrape(internal).await else {
        return Scraped::default();
    };
    let prefix = "sealroom_forward_delay_seconds_bucket{le=\"";
    let delay_buckets = text
        .lines()
        .filter_map(|l| {
            let (bound, count) = l.strip_prefix(prefix)?.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.trim().parse::<f64>().ok()? as u64))
        })
        .collect();
    let delay_sum = text
        .lines()
        .find_map(|l| l.strip_prefix("sealroom_forward_delay_seconds_sum "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    Scraped {
        drops: proc::metric_by_label(&text, "sealroom_frames_dropped_total")
            .into_iter()
            .collect(),
        delay_buckets,
        delay_sum,
    }
}

/// The relay's own hand-over delay over the window (arrival to hand-over to the receiver's
/// QUIC connection): mean, and the bucket bounds holding the median and the 99th percentile.
fn handover(start: &Scraped, end: &Scraped) -> Option<report::Handover> {
    let counts: Vec<(f64, u64)> = end
        .delay_buckets
        .iter()
        .map(|(bound, n)| {
            let before = start
                .delay_buckets
                .iter()
                .find(|(b, _)| b == bound)
                .map_or(0, |(_, n)| *n);
            (*bound, n.saturating_sub(before))
        })
        .collect();
    let total = counts.last()?.1;
    if total == 0 {
        return None;
    }
    let bound_at = |q: f64| {
        let target = (q * total as f64).ceil() as u64;
        counts
            .iter()
            .find(|(_, n)| *n >= target)
            .map_or(f64::INFINITY, |(b, _)| *b)
    };
    Some(report::Handover {
        mean_us: (end.delay_sum - start.delay_sum) / total as f64 * 1e6,
        p50_at_most_us: bound_at(0.5) * 1e6,
        p99_at_most_us: bound_at(0.99) * 1e6,
    })
}

/// Print a progress line every second until aborted.
async fn progress(
    pid: u32,
    live: Arc<Live>,
    name: &'static str,
    t0: tokio::time::Instant,
    warmup: Duration,
    measured: Duration,
) {
    let tty = std::io::stderr().is_terminal();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let mut last = (0u64, 0u64, 0u64, 0.0f64);
    loop {
        ticks.tick().await;
        let elapsed = t0.elapsed();
        let phase = if elapsed < warmup {
            "warm-up"
        } else if elapsed < warmup + measured {
            "measuring"
        } else {
            "draining"
        };
        let sent = live.bytes_sent.load(Ordering::Relaxed);
        let recv = live.bytes_received.load(Ordering::Relaxed);
        let frames = live.frames_received.load(Ordering::Relaxed);
        let cpu = proc_cpu(pid);
        let line = format!(
            "{name} {phase:>9} {:>5.1}s  in {:>8.2} Mbit/s  out {:>8.2} Mbit/s  {:>7} frames/s  server CPU {:>5.1}%  errors {}",
            elapsed.as_secs_f64(),
            (sent - last.0) as f64 * 8.0 / 1e6,
            (recv - last.1) as f64 * 8.0 / 1e6,
            frames - last.2,
            (cpu - last.3) * 100.0,
            live.errors.load(Ordering::Relaxed),
        );
        if last.3 > 0.0 || cpu == 0.0 {
            if tty {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
        }
        last = (sent, recv, frames, cpu);
    }
}

fn proc_cpu(pid: u32) -> f64 {
    ProcSample::read_pid(pid).map_or(0.0, |s| s.cpu_secs)
}

/// The connection-scale run: `members` idle members joined across rooms.
async fn scale(
    args: &LoadArgs,
    identity: &net::Identity,
    members: usize,
) -> anyhow::Result<ScaleReport> {
    let per_room = args.members_per_room.max(1);
    let rooms = members.div_ceil(per_room);
    let (server, entry) = start_server(args, identity, Target::Relay, members, rooms, per_room)?;
    let live = Arc::new(Live::default());
    let ctx = Ctx {
        server: server.listen,
        client_config: identity.client_config()?,
        socket_buffer: args.socket_buffer,
        rtt: args.rtt(),
        entry,
        live: Arc::clone(&live),
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.sample()?;
    let per_socket = args.clients_per_socket.max(1);
    let mut endpoints = Vec::new();
    let mut plan = Vec::with_capacity(members);
    for i in 0..members {
        if i % per_socket == 0 {
            endpoints.push(net::client_endpoint(
                &ctx.client_config,
                args.socket_buffer,
                ctx.rtt,
            )?);
        }
        let endpoint = endpoints.last().cloned();
        plan.push((i / per_room, i % per_room, Role::Subscriber, endpoint));
    }
    eprintln!(
        "joining {members} idle members in {rooms} rooms of {per_room}, {} client sockets",
        endpoints.len()
    );
    let counter = tokio::spawn({
        let pid = server.pid();
        async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            loop {
                ticks.tick().await;
                if let Ok(sample) = ProcSample::read_pid(pid) {
                    eprintln!(
                        "  relay RSS {:.1} MiB, CPU {:.1} s",
                        sample.rss as f64 / (1024.0 * 1024.0),
                        sample.cpu_secs
                    );
                }
            }
        }
    });
    let t0 = std::time::Instant::now();
    let sessions = join_all(&ctx, plan, args.join_concurrency).await;
    let join_secs = t0.elapsed().as_secs_f64();
    let cpu_joined = server.sample()?;
    counter.abort();
    let mut first_error = None;
    let mut joined = Vec::with_capacity(sessions.len());
    for session in sessions {
        match session {
            Ok(session) => joined.push(session),
            Err(err) => {
                if first_error.is_none() {
                    first_error = Some(format!("{err:#}"));
                }
            }
        }
    }
    // Let the roster announcements drain and the relay settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = server.sample()?;
    let gauge = match server.internal {
        Some(addr) => proc::scrape(addr)
            .await
            .map(|text| proc::metric(&text, "sealroom_members"))
            .unwrap_or(0),
        None => 0,
    };
    for session in &joined {
        session.close();
    }
    server.stop();
    let count = joined.len();
    let cpu = cpu_joined.cpu_secs - before.cpu_secs;
    Ok(ScaleReport {
        members_requested: members,
        members_joined: count,
        join_failures: members - count,
        members_per_room: per_room,
        clients_per_socket: per_socket,
        join_secs,
        joins_per_sec: count as f64 / join_secs.max(1e-9),
        relay_rss_before_bytes: before.rss,
        relay_rss_after_bytes: after.rss,
        relay_peak_rss_bytes: after.hwm,
        relay_rss_per_member_bytes: after.rss.saturating_sub(before.rss) as f64
            / count.max(1) as f64,
        relay_cpu_secs_joining: cpu,
        relay_cpu_us_per_join: cpu * 1e6 / count.max(1) as f64,
        relay_members_gauge: gauge,
        first_error,
    })
}

impl LoadArgs {
    /// The round-trip time the simulated clients add (`--rtt-ms`).
    fn rtt(&self) -> Duration {
        Duration::from_millis(self.rtt_ms)
    }
}
