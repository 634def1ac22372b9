//! The `sealroom demo` subcommand: an embedded relay and simulated members in one process.
//!
//! Every member joins the same room, publishes synthetic audio, video and chat for the
//! duration, and tallies what it receives from the others: frames opened, frames that
//! failed to open, reliable chat messages lost (gaps, duplicates or reordering per sender),
//! and latency from the send time each payload carries. The table at the end is the proof
//! the README points to; the command fails if anything failed to open or any chat message
//! was lost.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use sealroom_client::{
    Client, ClientConfig, Event, Events, MediaKind, MemberId, PublishError, Room, RoomSecret, Trust,
};
use sealroom_relay::{AppConfig, DropReason, KindStats, Limits, Relay, RelayConfig};
use sealroom_ticket::{Grants, TicketClaims, mint};
use tokio::sync::mpsc;

const APP: &str = "demo";
const KID: &str = "demo";
const ROOM: &str = "demo";
const AUDIO_TRACK: u32 = 1;
const VIDEO_TRACK: u32 = 2;
const CHAT_TRACK: u32 = 3;

/// Every demo plaintext starts with this marker; the relay's tap looks for it and must
/// never find it.
const MARKER: &[u8; 8] = b"SRDEMO01";
/// Marker, kind, sequence number, send time.
const PAYLOAD_HEADER: usize = 8 + 1 + 8 + 8;

/// Arguments of the subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Simulated members.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..=32))]
    members: u32,
    /// How long the members publish, in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Chat messages each member sends per second (the embedded relay's data rate limits
    /// are raised to carry it).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_CHAT_RATE)))]
    chat_rate: u32,
    /// Size of a video keyframe in bytes (other video frames are a quarter of it; the
    /// embedded relay's frame, queue and rate limits are raised to carry it).
    #[arg(long, default_value_t = 12_000, value_parser = clap::value_parser!(u64).range(MIN_KEYFRAME as u64..=MAX_KEYFRAME as u64))]
    keyframe_bytes: u64,
    /// Relay nodes, linked as one cluster (members are spread over them); with more than
    /// one, a Redis started by the demo is their directory when `redis-server` is installed.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8), conflicts_with = "web")]
    nodes: u32,
    /// Browsers instead: an embedded relay with a certificate browsers accept by hash, the
    /// demo page on a loopback HTTP port (open it in two tabs) and a Rust member in the room.
    #[arg(long)]
    web: bool,
    /// With `--web`: the page's loopback port (0: any free port).
    #[arg(long, default_value_t = 8480, requires = "web")]
    web_port: u16,
    /// With `--web`: stop after this many seconds (default: at Ctrl-C).
    #[arg(long, requires = "web")]
    web_duration: Option<f64>,
    /// With `--web`: no Rust member in the room.
    #[arg(long, requires = "web")]
    no_rust_member: bool,
    /// With `--web`: the `web/` directory of a sealroom source tree, whose TypeScript client
    /// the page loads (built there with npm when missing or older than its sources).
    /// Default: the tree this binary was built from.
    #[arg(long, requires = "web", value_name = "DIR")]
    web_dir: Option<std::path::PathBuf>,
}

/// Largest `--chat-rate` the demo sizes its relay for.
const MAX_CHAT_RATE: u32 = 1000;
/// Smallest `--keyframe-bytes`: a quarter of it still holds the payload header.
const MIN_KEYFRAME: usize = 4 * PAYLOAD_HEADER;
/// Largest `--keyframe-bytes` the demo sizes its relay for.
const MAX_KEYFRAME: usize = 1 << 20;
/// Bytes a frame carries beyond its payload: envelope, SFrame header and tag, with room.
const FRAME_OVERHEAD: usize = 128;
/// Chat payload size.
const CHAT_BYTES: usize = 80;
/// Audio payload size.
const AUDIO_BYTES: usize = 100;

/// The embedded relay's limits, raised from the defaults so that they carry the load the
/// options ask for (twice over): the frame size, the media and data rates, the queues.
fn relay_limits(members: usize, chat_rate: u32, keyframe_bytes: usize) -> Limits {
    let defaults = Limits::default();
    let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    // Per member and second: 50 audio frames, 30 video frames (one keyframe in 60).
    let video_frame_avg = keyframe_bytes / 60 + keyframe_bytes / 4 * 59 / 60 + FRAME_OVERHEAD;
    let media_rate = 50 * (AUDIO_BYTES + FRAME_OVERHEAD) + 30 * video_frame_avg;
    let group_bytes = keyframe_bytes + 59 * (keyframe_bytes / 4 + FRAME_OVERHEAD);
    let chat_rate = chat_rate as usize;
    let chat_frame = CHAT_BYTES + FRAME_OVERHEAD;
    Limits {
        max_frame_len: defaults.max_frame_len.max(keyframe_bytes + FRAME_OVERHEAD),
        max_incoming_buffer_bytes: defaults
            .max_incoming_buffer_bytes
            .max(4 * (keyframe_bytes + FRAME_OVERHEAD)),
        video_group_queue_bytes: defaults.video_group_queue_bytes.max(2 * group_bytes),
        video_queue_bytes: defaults.video_queue_bytes.max(4 * group_bytes),
        media_bytes_per_sec: defaults.media_bytes_per_sec.max(to_u32(2 * media_rate)),
        media_bytes_burst: defaults
            .media_bytes_burst
            .max(to_u32(4 * media_rate + 2 * keyframe_bytes)),
        data_messages_per_sec: defaults.data_messages_per_sec.max(to_u32(2 * chat_rate)),
        data_messages_burst: defaults.data_messages_burst.max(to_u32(4 * chat_rate)),
        data_bytes_per_sec: defaults
            .data_bytes_per_sec
            .max(to_u32(2 * chat_rate * chat_frame)),
        data_bytes_burst: defaults
            .data_bytes_burst
            .max(to_u32(4 * chat_rate * chat_frame)),
        reliable_queue_bytes: defaults
            .reliable_queue_bytes
            .max(2 * chat_rate * chat_frame * members),
        ..defaults
    }
}

/// What one member observed as a receiver.
#[derive(Debug, Default)]
struct Tally {
    received: u64,
    opened: u64,
    failed: u64,
    /// Frames opened, by kind (audio, video, data).
    opened_by_kind: [u64; 3],
    /// Chat messages delivered in order, per sender.
    chat_in_order: HashMap<MemberId, u64>,
    /// Chat messages that arrived out of order or twice.
    chat_disorder: u64,
    latencies_us: Vec<u64>,
}

/// Counters every member's receiver bumps, for the progress line.
#[derive(Debug, Default)]
struct Progress {
    received: AtomicU64,
    opened: AtomicU64,
    failed: AtomicU64,
}

struct Member {
    name: String,
    /// Keeps the member's endpoint open until the end.
    _client: Client,
    room: Room,
    tally: Arc<Mutex<Tally>>,
    sent: Sent,
}

/// What one member's publisher meant to send and what became of it, by kind.
#[derive(Debug, Default, Clone)]
struct Sent {
    /// Frames the member meant to send.
    meant: [u64; 3],
    /// Frames its client accepted (sealed and queued towards the relay).
    accepted: [u64; 3],
    /// Frames the client did not accept, by kind and reason.
    not_accepted: BTreeMap<(usize, &'static str), u64>,
}

impl Sent {
    fn record(&mut self, kind: MediaKind, result: Result<(), PublishError>) {
        let index = kind_index(kind);
        self.meant[index] += 1;
        match result {
            Ok(()) => self.accepted[index] += 1,
            Err(err) => {
                *self
                    .not_accepted
                    .entry((index, publish_error_label(&err)))
                    .or_default() += 1;
            }
        }
    }
}

/// Why a client did not accept a frame, for the report.
fn publish_error_label(err: &PublishError) -> &'static str {
    match err {
        PublishError::QueueFull => "queue full",
        PublishError::TooLarge { .. } => "too large",
        PublishError::Seal(_) => "could not seal",
        PublishError::Closed => "session closed",
        PublishError::TrackInUse(_) => "track in use",
        _ => "refused",
    }
}

/// Only a full send queue is a real-time drop; every other refusal is a fault.
fn is_realtime_drop(label: &str) -> bool {
    label == "queue full"
}

/// Relay drops that real-time media may have under load; every other reason means the
/// relay refused what was sent, which the demo counts as a failure.
fn is_realtime_relay_drop(reason: DropReason) -> bool {
    matches!(
        reason,
        DropReason::QueueFull
            | DropReason::StaleGroup
            | DropReason::LateGroup
            | DropReason::TooManyStreams
            | DropReason::ReceiverGone
    )
}

const KIND_NAMES: [&str; 3] = ["audio", "video", "chat"];

fn kind_index(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
        MediaKind::Data => 2,
    }
}

/// Run the subcommand.
pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.web {
        let duration = match args.web_duration {
            Some(secs) if secs.is_finite() && secs > 0.0 => Some(Duration::from_secs_f64(secs)),
            Some(_) => bail!("--web-duration must be a positive number of seconds"),
            None => None,
        };
        return crate::demo_web::run(crate::demo_web::WebArgs {
            port: args.web_port,
            duration,
            rust_member: !args.no_rust_member,
            web_dir: args.web_dir,
        })
        .await;
    }
    if !(args.duration.is_finite() && args.duration > 0.0 && args.duration <= 3600.0) {
        bail!("--duration must be between 0 and 3600 seconds");
    }
    let duration = Duration::from_secs_f64(args.duration);
    let members = args.members as usize;
    // Bounded by the argument parser.
    let keyframe_bytes = usize::try_from(args.keyframe_bytes).unwrap_or(MAX_KEYFRAME);
    let limits = relay_limits(members, args.chat_rate, keyframe_bytes);

    let app_secret = format!("{:032x}", rand::random::<u128>());
    let mut nodes = Vec::new();
    for _ in 0..args.nodes {
        nodes.push(start_relay(limits, &app_secret).await?);
    }
    let cluster = if nodes.len() > 1 {
        println!(
            "sealroom demo: {} relay nodes in one cluster, {members} members spread over them, {:.1} s",
            nodes.len(),
            duration.as_secs_f64()
        );
        let relays: Vec<&Relay> = nodes.iter().map(|(relay, _)| relay).collect();
        let cluster = crate::demo_cluster::link(&relays).await?;
        Some(cluster)
    } else {
        let relay = &nodes[0].0;
        println!(
            "sealroom demo: relay on {} (self-signed, pinned by sha256 {}), {members} members, {:.1} s",
            relay.local_addr(),
            &hex::encode(relay.cert_sha256())[..16],
            duration.as_secs_f64()
        );
        None
    };
    // The room secret: what the app would hand its members out of band. The relay never
    // receives it.
    let secret = RoomSecret::generate();
    let clock = Instant::now();
    let progress = Arc::new(Progress::default());
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(members);
    // Each member trusts the certificate of the node it joins.
    let entries: Vec<(SocketAddr, Trust)> = nodes
        .iter()
        .map(|(relay, _)| (relay.local_addr(), Trust::Pinned(relay.cert_sha256())))
        .collect();
    let (joined, receivers) = join_members(
        &JoinPlan {
            members,
            app_secret: &app_secret,
            nodes: &entries,
            secret: &secret,
            max_frame_len: limits.max_frame_len,
        },
        &progress,
        clock,
        &ready_tx,
    )
    .await?;

    // Publish, then wait until every member has seen every other member's three tracks so
    // that nothing sent is missed by a late joiner.
    let mut tracks = Vec::with_capacity(members);
    for (name, _, room, _) in &joined {
        let audio = room.publish_audio(AUDIO_TRACK).await?;
        let video = room.publish_video(VIDEO_TRACK).await?;
        let chat = room.publish_data(CHAT_TRACK).await?;
        tracks.push((name.clone(), audio, video, chat));
    }
    drop(ready_tx);
    for _ in 0..members {
        tokio::time::timeout(Duration::from_secs(10), ready_rx.recv())
            .await
            .context("members did not see each other's tracks within 10 s")?;
    }

    let sent = send_for(
        duration,
        tracks,
        args.chat_rate,
        keyframe_bytes,
        clock,
        &progress,
    )
    .await?;

    let mut members_out: Vec<Member> = joined
        .into_iter()
        .zip(sent)
        .map(|((name, client, room, tally), sent)| Member {
            name,
            _client: client,
            room,
            tally,
            sent,
        })
        .collect();
    drain(&members_out).await;
    crate::demo_quality::print(
        members_out
            .iter()
            .map(|member| (member.name.as_str(), member.room.stats())),
    );
    for member in &members_out {
        member.room.leave().await;
    }
    for receiver in receivers {
        receiver.await.context("a receiver task failed")?;
    }

    if let Some(cluster) = &cluster {
        cluster.report();
    }
    if let Some(cluster) = cluster {
        cluster.leave().await;
    }
    finish(nodes, &mut members_out).await?;
    println!("ok: every frame delivered opened, no reliable message lost, nothing refused");
    Ok(())
}

/// The tracks one member publishes on.
type Tracks = (
    String,
    sealroom_client::AudioTrack,
    sealroom_client::VideoTrack,
    sealroom_client::DataTrack,
);

/// Publish on every member's tracks for `duration`, showing progress, and return what each
/// member meant to send and what its client accepted.
async fn send_for(
    duration: Duration,
    tracks: Vec<Tracks>,
    chat_rate: u32,
    keyframe_bytes: usize,
    clock: Instant,
    progress: &Progress,
) -> anyhow::Result<Vec<Sent>> {
    let count = tracks.len();
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::with_capacity(count);
    for (_, audio, video, chat) in tracks {
        senders.push(tokio::spawn(publish(
            audio,
            video,
            chat,
            chat_rate,
            keyframe_bytes,
            clock,
            stop.clone(),
        )));
    }
    let started = Instant::now();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(250)).await;
        eprint!(
            "\r  {:5.1} s / {:.1} s   received {:7}   opened {:7}   failed to open {}   ",
            started.elapsed().as_secs_f64().min(duration.as_secs_f64()),
            duration.as_secs_f64(),
            progress.received.load(Ordering::Relaxed),
            progress.opened.load(Ordering::Relaxed),
            progress.failed.load(Ordering::Relaxed),
        );
    }
    eprintln!();
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::with_capacity(count);
    for sender in senders {
        sent.push(sender.await.context("a sender task failed")?);
    }
    Ok(sent)
}

/// What the payload tap saw: bytes in all, and how often the plaintext marker appeared.
#[derive(Default)]
struct Tap {
    tapped: Arc<AtomicU64>,
    marker_seen: Arc<AtomicU64>,
}

/// Start the embedded relay with `limits` and one app, and install the payload tap that
/// counts what it receives and looks for the plaintext marker.
async fn start_relay(limits: Limits, app_secret: &str) -> anyhow::Result<(Relay, Tap)> {
    let relay = Relay::start(
        RelayConfig::default()
            .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .limits(limits)
            .app(AppConfig::new(APP, KID, app_secret.as_bytes().to_vec())),
    )
    .await
    .context("cannot start the embedded relay")?;
    let tap = Tap::default();
    relay.set_payload_tap(Some({
        let tapped = tap.tapped.clone();
        let marker_seen = tap.marker_seen.clone();
        Arc::new(move |bytes: &[u8]| {
            tapped.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if bytes.windows(MARKER.len()).any(|w| w == MARKER) {
                marker_seen.fetch_add(1, Ordering::Relaxed);
            }
        })
    }));
    Ok((relay, tap))
}

/// Who joins and with what.
struct JoinPlan<'a> {
    members: usize,
    app_secret: &'a str,
    /// The nodes' member addresses and certificates; member `i` joins node `i % len`.
    nodes: &'a [(SocketAddr, Trust)],
    secret: &'a RoomSecret,
    max_frame_len: usize,
}

/// A joined member before it publishes: name, client, room and what it received.
type Joined = (String, Client, Room, Arc<Mutex<Tally>>);

/// Join every member with its own ticket and start its receiver task.
async fn join_members(
    plan: &JoinPlan<'_>,
    progress: &Arc<Progress>,
    clock: Instant,
    ready_tx: &mpsc::Sender<()>,
) -> anyhow::Result<(Vec<Joined>, Vec<tokio::task::JoinHandle<()>>)> {
    let members = plan.members;
    let mut joined = Vec::with_capacity(members);
    let mut receivers = Vec::with_capacity(members);
    for index in 0..members {
        let name = format!("member-{}", index + 1);
        let now = unix_now()?;
        let ticket = mint(
            &TicketClaims::new(APP, &name, ROOM, now, 3600, Grants::all()),
            KID,
            plan.app_secret.as_bytes(),
        )?;
        let (address, trust) = &plan.nodes[index % plan.nodes.len()];
        let client =
            Client::new(ClientConfig::new(trust.clone()).max_frame_len(plan.max_frame_len))?;
        let (room, events) = client
            .join(*address, "localhost", ticket, plan.secret)
            .await
            .with_context(|| format!("{name} could not join"))?;
        let tally = Arc::new(Mutex::new(Tally::default()));
        receivers.push(tokio::spawn(receive(
            events,
            tally.clone(),
            progress.clone(),
            clock,
            3 * (members - 1),
            ready_tx.clone(),
        )));
        joined.push((name, client, room, tally));
    }
    Ok((joined, receivers))
}

/// Print the members' and the relay's account, shut the relay down, and fail with every
/// fault found.
async fn finish(nodes: Vec<(Relay, Tap)>, members_out: &mut [Member]) -> anyhow::Result<()> {
    let failures = report(members_out);
    let mut kinds = [KindStats::default(); 3];
    let mut dropped: BTreeMap<DropReason, u64> = BTreeMap::new();
    let (mut tapped, mut marker_seen) = (0, 0);
    for (relay, tap) in &nodes {
        let stats = relay.stats();
        for (sum, kind) in kinds.iter_mut().zip([stats.audio, stats.video, stats.data]) {
            sum.frames_forwarded += kind.frames_forwarded;
            sum.bytes_received += kind.bytes_received;
            sum.bytes_forwarded += kind.bytes_forwarded;
        }
        for (reason, n) in stats.dropped {
            *dropped.entry(reason).or_default() += n;
        }
        tapped += tap.tapped.load(Ordering::Relaxed);
        marker_seen += tap.marker_seen.load(Ordering::Relaxed);
    }
    let dropped: Vec<(DropReason, u64)> = dropped.into_iter().collect();
    let sent: Vec<Sent> = members_out.iter().map(|m| m.sent.clone()).collect();
    let delivered: Vec<[u64; 3]> = members_out
        .iter()
        .map(|m| {
            m.tally
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .opened_by_kind
        })
        .collect();
    let mut faults = account(&sent, &delivered, &dropped);
    let received_bytes: u64 = kinds.iter().map(|k| k.bytes_received).sum();
    let forwarded_bytes: u64 = kinds.iter().map(|k| k.bytes_forwarded).sum();
    let forwarded_frames: u64 = kinds.iter().map(|k| k.frames_forwarded).sum();
    let who = if nodes.len() > 1 { "relays" } else { "relay" };
    println!(
        "{who}: received {} of sealed frames and forwarded {} in {forwarded_frames} frames \
         (audio {}, video {}, data {});",
        human_bytes(received_bytes),
        human_bytes(forwarded_bytes),
        kinds[0].frames_forwarded,
        kinds[1].frames_forwarded,
        kinds[2].frames_forwarded,
    );
    println!(
        "       {} no room key (sealroom-relay links no content cryptography), and the \
         plaintext marker appeared {marker_seen} times in the {} {} payload tap saw",
        if nodes.len() > 1 {
            "they held"
        } else {
            "it held"
        },
        human_bytes(tapped),
        if nodes.len() > 1 { "their" } else { "its" },
    );
    for (relay, _) in nodes {
        relay.shutdown().await;
    }

    let leaked = marker_seen;
    if failures.open_failures > 0 {
        faults.push(format!("{} frames failed to open", failures.open_failures));
    }
    if failures.lost > 0 {
        faults.push(format!("{} reliable messages lost", failures.lost));
    }
    if leaked > 0 {
        faults.push(format!("plaintext marker seen {leaked} times"));
    }
    if !faults.is_empty() {
        bail!("{}", faults.join("; "));
    }
    Ok(())
}

/// Print what was meant, accepted, delivered and dropped by kind, and the relay's drops by
/// reason; return the faults: anything refused, or a kind of which nothing arrived.
/// `sent` is each member's publisher account, `delivered` what each member opened by kind.
fn account(
    sent: &[Sent],
    delivered: &[[u64; 3]],
    relay_dropped: &[(DropReason, u64)],
) -> Vec<String> {
    let receivers = sent.len().saturating_sub(1) as u64;
    let mut faults = Vec::new();
    println!(
        "{:<6} {:>13} {:>10} {:>18} {:>10} {:>10} {:>8}",
        "frames", "meant to send", "accepted", "not accepted", "expected", "delivered", "missing"
    );
    for (index, name) in KIND_NAMES.iter().enumerate() {
        let meant: u64 = sent.iter().map(|s| s.meant[index]).sum();
        let accepted: u64 = sent.iter().map(|s| s.accepted[index]).sum();
        let mut not_accepted: BTreeMap<&str, u64> = BTreeMap::new();
        for member in sent {
            for ((kind, reason), n) in &member.not_accepted {
                if *kind == index {
                    *not_accepted.entry(reason).or_default() += n;
                }
            }
        }
        let delivered: u64 = delivered.iter().map(|d| d[index]).sum();
        let expected = accepted * receivers;
        let missing = expected.saturating_sub(delivered);
        let why = if not_accepted.is_empty() {
            String::from("0")
        } else {
            not_accepted
                .iter()
                .map(|(reason, n)| format!("{n} {reason}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{name:<6} {meant:>13} {accepted:>10} {why:>18} {expected:>10} {delivered:>10} {missing:>8}"
        );
        for (reason, n) in &not_accepted {
            if !is_realtime_drop(reason) {
                faults.push(format!("{n} {name} frames refused by the client: {reason}"));
            }
        }
        if meant > 0 && receivers > 0 && delivered == 0 {
            faults.push(format!(
                "no {name} frame was delivered (of {meant} meant to send)"
            ));
        }
    }
    let (realtime, refused): (Vec<_>, Vec<_>) = relay_dropped
        .iter()
        .partition(|(reason, _)| is_realtime_relay_drop(*reason));
    let list = |drops: &[&(DropReason, u64)]| {
        drops
            .iter()
            .map(|(reason, n)| format!("{} {n}", reason.label()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if relay_dropped.is_empty() {
        println!("relay drops: none");
    } else {
        if !realtime.is_empty() {
            println!(
                "relay drops of real-time media (allowed): {}",
                list(&realtime)
            );
        }
        if !refused.is_empty() {
            println!("relay refusals: {}", list(&refused));
            faults.push(format!("the relay refused frames: {}", list(&refused)));
        }
    }
    println!();
    faults
}

fn unix_now() -> anyhow::Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

/// A synthetic payload: marker, kind, sequence, send time (µs since `clock`), filler.
fn payload(kind: MediaKind, seq: u64, clock: Instant, len: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(len.max(PAYLOAD_HEADER));
    buf.put_slice(MARKER);
    buf.put_u8(kind as u8);
    buf.put_u64(seq);
    buf.put_u64(u64::try_from(clock.elapsed().as_micros()).unwrap_or(u64::MAX));
    let filler = len.saturating_sub(PAYLOAD_HEADER);
    buf.put_bytes(0x5a, filler);
    buf.freeze()
}

/// Read the header of a demo payload: kind, sequence, send time.
fn parse_payload(bytes: &[u8]) -> Option<(u8, u64, u64)> {
    let header = bytes.get(..PAYLOAD_HEADER)?;
    if &header[..8] != MARKER {
        return None;
    }
    let seq = u64::from_be_bytes(header[9..17].try_into().ok()?);
    let sent = u64::from_be_bytes(header[17..25].try_into().ok()?);
    Some((header[8], seq, sent))
}

/// One member's publisher: audio every 20 ms, video at 30 frames/s with a keyframe every
/// 2 s, chat at `chat_rate`. Returns what it meant to send and what became of it.
async fn publish(
    audio: sealroom_client::AudioTrack,
    video: sealroom_client::VideoTrack,
    chat: sealroom_client::DataTrack,
    chat_rate: u32,
    keyframe_bytes: usize,
    clock: Instant,
    stop: Arc<AtomicBool>,
) -> Sent {
    let mut audio_tick = tokio::time::interval(Duration::from_millis(20));
    let mut video_tick = tokio::time::interval(Duration::from_micros(33_333));
    let chat_period = Duration::from_secs_f64(1.0 / f64::from(chat_rate.max(1)));
    let mut chat_tick = tokio::time::interval(chat_period);
    for tick in [&mut audio_tick, &mut video_tick, &mut chat_tick] {
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    let mut sent = Sent::default();
    let (mut audio_seq, mut video_seq, mut chat_seq) = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = audio_tick.tick() => {
                // A full queue drops the frame, as a real-time sender would; it is counted.
                let result = audio.send(payload(MediaKind::Audio, audio_seq, clock, AUDIO_BYTES));
                sent.record(MediaKind::Audio, result);
                audio_seq += 1;
            }
            _ = video_tick.tick() => {
                let keyframe = video_seq.is_multiple_of(60);
                let len = if keyframe { keyframe_bytes } else { keyframe_bytes / 4 };
                let result = video.send(payload(MediaKind::Video, video_seq, clock, len), keyframe);
                sent.record(MediaKind::Video, result);
                video_seq += 1;
            }
            _ = chat_tick.tick(), if chat_rate > 0 => {
                let result = chat.send(payload(MediaKind::Data, chat_seq, clock, CHAT_BYTES)).await;
                // Receivers check chat order by sequence: only accepted messages count.
                if result.is_ok() {
                    chat_seq += 1;
                }
                let closed = result == Err(PublishError::Closed);
                sent.record(MediaKind::Data, result);
                if closed {
                    break;
                }
            }
        }
    }
    sent
}

/// One member's event loop: tally every frame, and say when all `tracks_expected` tracks
/// of the other members are known.
async fn receive(
    mut events: Events,
    tally: Arc<Mutex<Tally>>,
    progress: Arc<Progress>,
    clock: Instant,
    tracks_expected: usize,
    ready: mpsc::Sender<()>,
) {
    let mut tracks_seen = 0;
    let mut ready = Some(ready);
    if tracks_expected == 0
        && let Some(ready) = ready.take()
    {
        let _ = ready.send(()).await;
    }
    while let Some(event) = events.recv().await {
        match event {
            Event::TrackPublished { .. } => {
                tracks_seen += 1;
                if tracks_seen >= tracks_expected
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(()).await;
                }
            }
            Event::Frame(frame) => {
                progress.received.fetch_add(1, Ordering::Relaxed);
                progress.opened.fetch_add(1, Ordering::Relaxed);
                let now = u64::try_from(clock.elapsed().as_micros()).unwrap_or(u64::MAX);
                let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                tally.received += 1;
                tally.opened += 1;
                tally.opened_by_kind[kind_index(frame.kind)] += 1;
                if let Some((kind, seq, sent)) = parse_payload(&frame.payload) {
                    tally.latencies_us.push(now.saturating_sub(sent));
                    if kind == MediaKind::Data as u8 {
                        let next = tally.chat_in_order.entry(frame.sender).or_insert(0);
                        if seq == *next {
                            *next += 1;
                        } else {
                            tally.chat_disorder += 1;
                        }
                    }
                }
            }
            Event::CouldNotOpen(_) => {
                progress.received.fetch_add(1, Ordering::Relaxed);
                progress.failed.fetch_add(1, Ordering::Relaxed);
                let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                tally.received += 1;
                tally.failed += 1;
            }
            Event::Disconnected(_) => break,
            _ => {}
        }
    }
}

/// Wait until every member has every chat message of every other member and nothing more
/// arrives for a moment (frames still in flight are delivered before anyone leaves), at
/// most 10 s.
async fn drain(members: &[Member]) {
    let expected: HashMap<MemberId, u64> = members
        .iter()
        .map(|m| (m.room.member_id(), m.sent.accepted[2]))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let quiet_for = Duration::from_millis(500);
    let mut last_total = u64::MAX;
    let mut quiet_since = Instant::now();
    loop {
        let mut total = 0;
        let chats_complete = members.iter().all(|m| {
            let tally = m.tally.lock().unwrap_or_else(|p| p.into_inner());
            total += tally.received;
            let me = m.room.member_id();
            expected
                .iter()
                .filter(|(id, _)| **id != me)
                .all(|(id, sent)| {
                    tally.chat_in_order.get(id).copied().unwrap_or(0) + tally.chat_disorder >= *sent
                })
        });
        if total != last_total {
            last_total = total;
            quiet_since = Instant::now();
        }
        let quiet = quiet_since.elapsed() >= quiet_for;
        if (chats_complete && quiet) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Failures {
    open_failures: u64,
    lost: u64,
}

/// Print the per-member table; return the totals that decide the exit status.
fn report(members: &mut [Member]) -> Failures {
    let expected: HashMap<MemberId, u64> = members
        .iter()
        .map(|m| (m.room.member_id(), m.sent.accepted[2]))
        .collect();
    println!();
    println!(
        "{:<10} {:>4} {:>8} {:>9} {:>8} {:>15} {:>16} {:>8} {:>8}",
        "member",
        "id",
        "sent",
        "received",
        "opened",
        "failed to open",
        "reliable lost",
        "p50 ms",
        "p99 ms"
    );
    let mut totals = Failures {
        open_failures: 0,
        lost: 0,
    };
    for member in members.iter_mut() {
        let me = member.room.member_id();
        let sent = member.room.stats().frames_sent;
        let mut tally = member.tally.lock().unwrap_or_else(|p| p.into_inner());
        let lost: u64 = expected
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, sent)| {
                sent.saturating_sub(tally.chat_in_order.get(id).copied().unwrap_or(0))
            })
            .sum::<u64>()
            + tally.chat_disorder;
        tally.latencies_us.sort_unstable();
        let p50 = percentile_ms(&tally.latencies_us, 50);
        let p99 = percentile_ms(&tally.latencies_us, 99);
        println!(
            "{:<10} {:>4} {:>8} {:>9} {:>8} {:>15} {:>16} {:>8.2} {:>8.2}",
            member.name, me, sent, tally.received, tally.opened, tally.failed, lost, p50, p99
        );
        totals.open_failures += tally.failed;
        totals.lost += lost;
    }
    println!();
    totals
}

/// The `pct` percentile of sorted microsecond samples, in milliseconds.
fn percentile_ms(sorted_us: &[u64], pct: usize) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = (sorted_us.len() * pct)
        .div_ceil(100)
        .clamp(1, sorted_us.len());
    sorted_us
        .get(rank - 1)
        .map_or(0.0, |us| *us as f64 / 1000.0)
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_header_round_trips() {
        let clock = Instant::now();
        let bytes = payload(MediaKind::Video, 42, clock, 300);
        assert_eq!(bytes.len(), 300);
        let (kind, seq, _) = parse_payload(&bytes).expect("demo payload");
        assert_eq!((kind, seq), (MediaKind::Video as u8, 42));
        assert_eq!(parse_payload(b"not a demo payload at all"), None);
    }

    fn sent(kind: MediaKind, ok: u64, refused: &[PublishError]) -> Sent {
        let mut sent = Sent::default();
        for _ in 0..ok {
            sent.record(kind, Ok(()));
        }
        for err in refused {
            sent.record(kind, Err(err.clone()));
        }
        sent
    }

    #[test]
    fn the_verdict_counts_refusals_and_missing_kinds() {
        // Everything accepted and delivered: no fault, whatever real-time drops the relay had.
        let ok = [
            sent(MediaKind::Video, 10, &[]),
            sent(MediaKind::Video, 10, &[]),
        ];
        let faults = account(
            &ok,
            &[[0, 10, 0], [0, 10, 0]],
            &[(DropReason::StaleGroup, 3)],
        );
        assert!(faults.is_empty(), "{faults:?}");
        // A full queue is a real-time drop; a frame too large is refused: a fault.
        let refused = [
            sent(
                MediaKind::Video,
                0,
                &[
                    PublishError::TooLarge { len: 9, max: 1 },
                    PublishError::QueueFull,
                ],
            ),
            sent(MediaKind::Video, 0, &[]),
        ];
        let faults = account(&refused, &[[0; 3], [0; 3]], &[]);
        assert!(faults.iter().any(|f| f.contains("too large")), "{faults:?}");
        assert!(
            !faults.iter().any(|f| f.contains("queue full")),
            "{faults:?}"
        );
        assert!(
            faults.iter().any(|f| f.contains("no video frame")),
            "{faults:?}"
        );
        // The relay refusing frames (its rate limit) is a fault named by reason.
        let faults = account(
            &ok,
            &[[0, 10, 0], [0, 10, 0]],
            &[(DropReason::RateLimited, 5)],
        );
        assert!(
            faults.iter().any(|f| f.contains("rate_limited 5")),
            "{faults:?}"
        );
    }

    #[test]
    fn the_relay_limits_carry_the_options() {
        let defaults = Limits::default();
        assert_eq!(
            relay_limits(4, 5, 12_000),
            defaults,
            "defaults carry the default load"
        );
        let limits = relay_limits(32, MAX_CHAT_RATE, MAX_KEYFRAME);
        assert!(limits.max_frame_len >= MAX_KEYFRAME + FRAME_OVERHEAD);
        assert!(limits.data_messages_per_sec >= MAX_CHAT_RATE);
        let chat_bytes = u64::from(MAX_CHAT_RATE) * (CHAT_BYTES + FRAME_OVERHEAD) as u64;
        assert!(u64::from(limits.data_bytes_per_sec) >= chat_bytes);
        // 30 video frames a second, one keyframe in 60, the rest a quarter of it.
        let video = 30 * (MAX_KEYFRAME / 4) as u64;
        assert!(u64::from(limits.media_bytes_per_sec) >= video);
        assert!(limits.video_group_queue_bytes >= 15 * MAX_KEYFRAME);
    }

    #[test]
    fn percentiles_pick_ranks() {
        let samples: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&samples, 50), 50.0);
        assert_eq!(percentile_ms(&samples, 99), 99.0);
        assert_eq!(percentile_ms(&[], 99), 0.0);
    }
}
