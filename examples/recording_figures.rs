//! The recording figures of docs/PERFORMANCE.md.
//!
//! ```sh
//! cargo build --release --bin sealroom --example recording_figures
//! target/release/examples/recording_figures cost audio50 20    # 50 members, Opus-sized audio
//! target/release/examples/recording_figures cost video1m 20    # one 1 Mbit/s video track
//! target/release/examples/recording_figures open 600 target/release/sealroom
//! ```
//!
//! `cost` runs a relay and the members in this process and the recorder on a runtime of its
//! own, whose threads are named `rec-*`; the recorder's CPU is read from those threads'
//! `/proc` counters (Linux), so the members' sealing and the relay are not counted. It prints
//! the CPU per recorded frame and the bytes written per second.
//!
//! `open` writes a recording of `SECONDS` (three members with 50 audio frames a second each,
//! one of them with 1 Mbit/s of 30 fps video, one chat message a second each), sealed with
//! real keys, straight into a directory, then times `sealroom recording open` on it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use sealroom_client::{ClientConfig, RoomSecret};
use sealroom_crypto::{CipherSuite, KeySchedule};
use sealroom_frame::control::{ControlMessage, MemberInfo};
use sealroom_frame::envelope::{Envelope, Flags, MediaKind};
use sealroom_record::archive::manifest::SessionEntry;
use sealroom_record::archive::{Manifest, Record, SegmentHeader, SegmentWriter};
use sealroom_record::{BlindConfig, Recorder, RecorderConfig, StorageConfig, Trust};
use sealroom_relay::{AppConfig, Grants, Limits, Relay, RelayConfig};
use sealroom_test_support::{Member, TempDir, TestApp};

const APP: TestApp = TestApp {
    app: "figures",
    kid: "k1",
    secret: b"figures ticket secret, local only",
};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("cost") => {
            let shape = args.get(2).context("shape: audio50 or video1m")?.clone();
            let seconds: u64 = args.get(3).map_or(Ok(20), |s| s.parse())?;
            tokio::runtime::Runtime::new()?.block_on(cost(&shape, seconds))
        }
        Some("open") => {
            let seconds: u64 = args.get(2).map_or(Ok(600), |s| s.parse())?;
            let sealroom = args.get(3).context("path of the sealroom binary")?;
            open_time(seconds, sealroom)
        }
        _ => bail!("usage: recording_figures cost audio50|video1m SECONDS | open SECONDS SEALROOM"),
    }
}

/// CPU seconds used so far by this process's threads whose name starts with `rec-`.
fn recorder_cpu() -> anyhow::Result<f64> {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let dir = task?.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !name.starts_with("rec-") {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat"))?;
        let rest = stat.rsplit_once(')').context("stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11).context("utime")?.parse()?;
        let stime: f64 = fields.get(12).context("stime")?.parse()?;
        total += (utime + stime) / ticks;
    }
    Ok(total)
}

async fn cost(shape: &str, seconds: u64) -> anyhow::Result<()> {
    let (members, payload_len, fps, kind) = match shape {
        "audio50" => (50usize, 80usize, 50u64, MediaKind::Audio),
        "video1m" => (1, 1_000_000 / 8 / 30, 30, MediaKind::Video),
        other => bail!("unknown shape {other}: audio50 or video1m"),
    };
    let relay = Relay::start(
        RelayConfig::default()
            .listen("127.0.0.1:0".parse()?)
            .limits(Limits::default().unlimited_rates())
            .app(AppConfig::new(APP.app, APP.kid, APP.secret.to_vec())),
    )
    .await?;
    let store = TempDir::new("figures-store");
    let spool = TempDir::new("figures-spool");
    let member = BlindConfig::new(
        relay.local_addr(),
        Trust::Pinned(relay.cert_sha256()),
        APP.ticket("recorder", "room", Grants::recorder(), 3600),
    );
    let config = RecorderConfig::new(
        member,
        StorageConfig::new(format!("file://{}", store.path().display())),
        "figures",
        spool.path(),
    );
    // The recorder on a runtime of its own, on threads named rec-*.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("rec-main".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("rec-blocking")
                .thread_keep_alive(Duration::from_secs(3600))
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let (recorder, _events) = Recorder::start(config).await.expect("recorder");
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                tx.send((recorder.stats(), stop_tx)).expect("send");
                let _ = stop_rx.await;
                recorder.stop().await;
            });
        })?;
    let (stats, stop) = rx.recv()?;
    let secret = RoomSecret::generate();
    let mut joined = Vec::new();
    for i in 0..members {
        joined.push(
            Member::join(
                &format!("m{i}"),
                relay.local_addr(),
                ClientConfig::new(Trust::Pinned(relay.cert_sha256())),
                APP.ticket(&format!("m{i}"), "room", Grants::all(), 3600),
                &secret,
            )
            .await?,
        );
    }
    let payload = Bytes::from(vec![0x5a; payload_len]);
    let mut audio = Vec::new();
    let mut video = Vec::new();
    for m in &joined {
        match kind {
            MediaKind::Audio => audio.push(m.room.publish_audio(1).await?),
            _ => video.push(m.room.publish_video(2).await?),
        }
    }
    let period = Duration::from_micros(1_000_000 / fps);
    let mut tick = tokio::time::interval(period);
    let warmup = Instant::now() + Duration::from_secs(2);
    let end = warmup + Duration::from_secs(seconds);
    let mut start: Option<(f64, u64, u64, Instant)> = None;
    let mut n = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        for track in &audio {
            let _ = track.send(payload.clone());
        }
        for track in &video {
            let _ = track.send(payload.clone(), n.is_multiple_of(60));
        }
        n += 1;
        if start.is_none() && Instant::now() >= warmup {
            start = Some((
                recorder_cpu()?,
                stats.frames_recorded.load(Ordering::Relaxed),
                stats.bytes_written.load(Ordering::Relaxed),
                Instant::now(),
            ));
        }
    }
    let (cpu0, frames0, bytes0, t0) = start.context("ran past the warm-up")?;
    let cpu = recorder_cpu()? - cpu0;
    let frames = stats.frames_recorded.load(Ordering::Relaxed) - frames0;
    let bytes = stats.bytes_written.load(Ordering::Relaxed) - bytes0;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{{\"shape\":\"{shape}\",\"seconds\":{secs:.1},\"frames\":{frames},\"frames_per_sec\":{:.0},\"cpu_us_per_frame\":{:.2},\"cpu_share_of_one_core\":{:.4},\"bytes_written_per_sec\":{:.0}}}",
        frames as f64 / secs,
        cpu * 1e6 / frames.max(1) as f64,
        cpu / secs,
        bytes as f64 / secs
    );
    let _ = stop.send(());
    Ok(())
}

fn open_time(seconds: u64, sealroom: &str) -> anyhow::Result<()> {
    let store = TempDir::new("figures-open-store");
    let out = TempDir::new("figures-open-out");
    let dir = store.path().join("call");
    std::fs::create_dir_all(dir.join("segments"))?;
    let secret = RoomSecret::generate();
    let schedule = KeySchedule::new(&secret, CipherSuite::default());
    let recording = [7u8; 16];
    let t0: u64 = 1_800_000_000_000_000;
    let mut manifest = Manifest::new(&recording, "figures", "room", t0);
    manifest.sessions.push(SessionEntry {
        session: 1,
        started_us: t0,
    });
    let mut sealers: Vec<_> = (0..4).map(|_| schedule.sealer(0)).collect();
    let audio = vec![0x11u8; 80];
    let video = vec![0x22u8; 1_000_000 / 8 / 30];
    let mut index = 1;
    let mut segment = SegmentWriter::create(
        &dir.join("segments"),
        SegmentHeader {
            recording,
            session: 1,
            index,
            created_us: t0,
        },
    )?;
    for member in 1..=3u32 {
        segment.append(
            &Record::Control {
                at_us: t0,
                message: ControlMessage::MemberJoined(MemberInfo {
                    member,
                    user: format!("m{member}"),
                    tracks: Vec::new(),
                }),
            },
            t0,
        )?;
    }
    let mut frames = 0u64;
    let mut seal = |sealer: usize, envelope: Envelope, plain: &[u8]| -> anyhow::Result<Bytes> {
        let mut out = bytes::BytesMut::new();
        let sealed_len = sealers[sealer].sealed_len(plain.len());
        envelope.encode_header(sealed_len, &mut out)?;
        sealers[sealer].seal(&envelope.metadata(), plain, &mut out)?;
        Ok(out.freeze())
    };
    // 20 ms steps: audio every step, video every 33 ms (on 3 of 5 steps), chat every second.
    let steps = seconds * 50;
    let mut video_seq = 0u32;
    let mut entries = Vec::new();
    for step in 0..steps {
        let now = t0 + step * 20_000;
        let mut records = Vec::new();
        for member in 1..=3u32 {
            let envelope = Envelope {
                kind: MediaKind::Audio,
                flags: Flags::empty(),
                sender: member,
                track: 1,
                group: 0,
                seq: u32::try_from(step)?,
                timestamp_us: now,
            };
            records.push(seal(member as usize - 1, envelope, &audio)?);
            if step.is_multiple_of(50) {
                let envelope = Envelope {
                    kind: MediaKind::Data,
                    sender: member,
                    track: 3,
                    seq: u32::try_from(step / 50)?,
                    ..envelope
                };
                records.push(seal(member as usize - 1, envelope, b"a chat message")?);
            }
        }
        if step % 5 < 3 {
            let keyframe = video_seq.is_multiple_of(60);
            let envelope = Envelope {
                kind: MediaKind::Video,
                flags: if keyframe {
                    Flags::GROUP_START
                } else {
                    Flags::empty()
                },
                sender: 1,
                track: 2,
                group: video_seq / 60,
                seq: video_seq % 60,
                timestamp_us: now,
            };
            records.push(seal(3, envelope, &video)?);
            video_seq += 1;
        }
        for frame in records {
            segment.append(&Record::frame(now, frame)?, now)?;
            frames += 1;
        }
        if segment.len() >= 16 * 1024 * 1024 || step % 500 == 499 {
            segment.flush()?;
            let sealed = segment.finish(now)?;
            entries.push(sealed.entry());
            index += 1;
            segment = SegmentWriter::create(
                &dir.join("segments"),
                SegmentHeader {
                    recording,
                    session: 1,
                    index,
                    created_us: now,
                },
            )?;
        }
    }
    let sealed = segment.finish(t0 + steps * 20_000)?;
    entries.push(sealed.entry());
    manifest.segments = entries;
    std::fs::write(dir.join("manifest.json"), manifest.to_json())?;
    let archive_bytes: u64 = manifest.segments.iter().map(|s| s.bytes).sum();
    let started = Instant::now();
    let status = std::process::Command::new(sealroom)
        .args([
            "recording",
            "open",
            "--recording",
            "call",
            "--audio-codec",
            "raw",
        ])
        .arg("--storage")
        .arg(format!("file://{}", store.path().display()))
        .arg("--out")
        .arg(out.path())
        .env("SEALROOM_ROOM_SECRET", hex::encode(secret.expose()))
        .stdout(std::process::Stdio::null())
        .status()?;
    let took = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("sealroom recording open failed: {status}");
    }
    println!(
        "{{\"recording_seconds\":{seconds},\"frames\":{frames},\"archive_bytes\":{archive_bytes},\"segments\":{},\"open_seconds\":{took:.2},\"frames_per_sec\":{:.0}}}",
        manifest.segments.len(),
        frames as f64 / took
    );
    Ok(())
}
