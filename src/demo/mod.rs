//! The `sealroom demo` subcommand: an embedded relay and simulated members in one process.
//!
//! Every member joins the same room, publishes synthetic audio, video and chat for the
//! duration, and tallies what it receives from the others: frames opened, frames that
//! failed to open, reliable chat messages lost (gaps, duplicates or reordering per sender),
//! and latency from the send time each payload carries. The table at the end is the proof
//! the README points to; the command fails if anything failed to open or any chat message
//! was lost.

mod cluster;
mod quality;
mod report;
mod traffic;
mod web;
mod web_build;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use sealroom_client::{Client, ClientConfig, Room, RoomSecret, Trust};
use sealroom_relay::{AppConfig, DropReason, KindStats, Limits, Relay, RelayConfig};
use sealroom_ticket::{Grants, TicketClaims, mint};
use tokio::sync::mpsc;

use report::{account, human_bytes, report};
use traffic::{MARKER, PAYLOAD_HEADER, Progress, Sent, Tally, drain, publish, receive};

const APP: &str = "demo";
const KID: &str = "demo";
const ROOM: &str = "demo";
const AUDIO_TRACK: u32 = 1;
const VIDEO_TRACK: u32 = 2;
const CHAT_TRACK: u32 = 3;

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

struct Member {
    name: String,
    /// Keeps the member's endpoint open until the end.
    _client: Client,
    room: Room,
    tally: Arc<Mutex<Tally>>,
    sent: Sent,
}

/// Run the subcommand.
pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.web {
        let duration = match args.web_duration {
            Some(secs) if secs.is_finite() && secs > 0.0 => Some(Duration::from_secs_f64(secs)),
            Some(_) => bail!("--web-duration must be a positive number of seconds"),
            None => None,
        };
        return web::run(web::WebArgs {
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
        let cluster = cluster::link(&relays).await?;
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
    quality::print(
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

fn unix_now() -> anyhow::Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
