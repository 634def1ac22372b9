//! `sealroom record` (a blind recorder, over `sealroom_record::Recorder`) and
//! `sealroom recording open` (the offline opener, which needs the room secret and is the
//! only place content cryptography meets a recording).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use sealroom_crypto::RoomSecret;
use sealroom_record::{BlindConfig, Recorder, RecorderConfig, RecorderEvent, StorageConfig, Trust};

mod containers;
mod open;

/// Arguments of `sealroom record`.
#[derive(Debug, clap::Args)]
pub(crate) struct RecordArgs {
    /// The relay's UDP address.
    #[arg(long, env = "SEALROOM_RELAY")]
    relay: SocketAddr,
    /// The relay certificate's SHA-256 (64 hex digits, as `sealroom relay` prints); without
    /// it the system's trust store checks the certificate against --server-name.
    #[arg(long, env = "SEALROOM_RELAY_PIN")]
    pin: Option<String>,
    /// The name the relay's certificate is checked against.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// A ticket with the `record` grant (`sealroom token --grants record`). Prefer the
    /// environment variable: command lines are visible to other users.
    #[arg(long, env = "SEALROOM_RECORD_TICKET", hide_env_values = true)]
    ticket: String,
    /// Where recordings go: file:///absolute/dir or s3://bucket/prefix.
    #[arg(long, env = "SEALROOM_RECORD_STORAGE")]
    storage: String,
    /// An S3 setting as NAME=VALUE (endpoint, region, access_key_id, secret_access_key,
    /// allow_http, ...); repeat as needed. `AWS_*` environment variables fill in the rest.
    #[arg(long = "storage-option", value_parser = parse_option)]
    storage_options: Vec<(String, String)>,
    /// The recording's name (its prefix in storage); an existing recording is continued.
    #[arg(long)]
    recording: String,
    /// The local spool directory (keep it across restarts: it holds what is not stored yet).
    #[arg(long)]
    spool: PathBuf,
    /// App id and room id, written to the manifest.
    #[arg(long, default_value = "")]
    app: String,
    /// Room id, written to the manifest (and checked against the ticket by the relay).
    #[arg(long)]
    room: Option<String>,
    /// Bytes of closed segments the spool holds before dropping the oldest.
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    spool_max_bytes: u64,
    /// Close a segment at this size in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    segment_max_bytes: u64,
    /// Close a segment at this age, in seconds.
    #[arg(long, default_value_t = 10)]
    segment_max_secs: u64,
    /// Write records to the segment file at least this often, in milliseconds (the most a
    /// kill loses).
    #[arg(long, default_value_t = 200)]
    flush_ms: u64,
    /// Stop after this many seconds (default: until Ctrl-C or SIGTERM).
    #[arg(long = "for")]
    duration_secs: Option<u64>,
}

/// Arguments of `sealroom recording`.
#[derive(Debug, clap::Args)]
pub(crate) struct RecordingArgs {
    #[command(subcommand)]
    command: RecordingCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RecordingCommand {
    /// Open a recording with the room secret and export every member's tracks.
    Open(OpenArgs),
}

/// Arguments of `sealroom recording open`.
#[derive(Debug, clap::Args)]
struct OpenArgs {
    /// Where the recording is: file:///absolute/dir or s3://bucket/prefix.
    #[arg(long, env = "SEALROOM_RECORD_STORAGE")]
    storage: String,
    /// An S3 setting as NAME=VALUE; repeat as needed.
    #[arg(long = "storage-option", value_parser = parse_option)]
    storage_options: Vec<(String, String)>,
    /// The recording's name.
    #[arg(long)]
    recording: String,
    /// The room secret, 64 hex digits. Prefer --secret-file or the environment variable.
    #[arg(
        long,
        env = "SEALROOM_ROOM_SECRET",
        hide_env_values = true,
        conflicts_with = "secret_file"
    )]
    secret: Option<String>,
    /// A file holding the room secret (64 hex digits).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// The output directory: the only place plaintext is written.
    #[arg(long)]
    out: PathBuf,
    /// How audio is exported: Opus packets as Ogg, or a raw dump with a JSON index.
    #[arg(long, value_enum, default_value = "raw")]
    audio_codec: open::AudioCodec,
    /// Bytes of opened frames held in memory: for members whose `MemberJoined` comes later
    /// in the recording than their first frames, and for video tracks waiting for their
    /// first keyframe. Past it, whoever holds the most gives way: a member's frames are
    /// exported under its member id (`member<N>`), a video track's oldest frames before
    /// its first keyframe are dropped; the report says which.
    #[arg(long, default_value_t = open::HOLD_MAX_BYTES)]
    hold_max_bytes: usize,
}

fn parse_option(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=VALUE"))?;
    Ok((name.trim().to_owned(), value.to_owned()))
}

fn storage_config(url: &str, options: &[(String, String)]) -> StorageConfig {
    let mut config = StorageConfig::new(url);
    for (name, value) in options {
        config = config.option(name, value.clone());
    }
    config
}

/// Run `sealroom record`.
pub(crate) async fn record(args: RecordArgs) -> anyhow::Result<()> {
    let trust = match &args.pin {
        Some(pin) => Trust::pinned_hex(pin)?,
        None => Trust::SystemRoots,
    };
    let mut member =
        BlindConfig::new(args.relay, trust, args.ticket.clone()).server_name(&args.server_name);
    member.room.clone_from(&args.room);
    let storage = storage_config(&args.storage, &args.storage_options);
    let mut config = RecorderConfig::new(member, storage, &args.recording, &args.spool);
    config.app.clone_from(&args.app);
    config.room = args.room.clone().unwrap_or_default();
    config.spool_max_bytes = args.spool_max_bytes;
    config.segment_max_bytes = args.segment_max_bytes;
    config.segment_max_duration = Duration::from_secs(args.segment_max_secs.max(1));
    config.flush_interval = Duration::from_millis(args.flush_ms.max(10));
    let (recorder, mut events) = Recorder::start(config)
        .await
        .context("the recorder could not start")?;
    eprintln!(
        "recording into {} (spool {}); Ctrl-C stops",
        recorder.location(),
        args.spool.display()
    );
    let deadline = args
        .duration_secs
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut terminate = terminate_signal()?;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(RecorderEvent::SegmentStored(entry)) => {
                    eprintln!("stored {} ({} frames, {} bytes)", entry.name, entry.frames, entry.bytes);
                }
                Some(RecorderEvent::SegmentDropped(entry)) => {
                    eprintln!("DROPPED {} unstored: the spool is full and storage unreachable", entry.name);
                }
                Some(RecorderEvent::UploadFailed { object, detail, retry_in }) => {
                    eprintln!("upload of {object} failed ({detail}); retrying in {} ms", retry_in.as_millis());
                }
                Some(RecorderEvent::ConnectionLost(detail)) => {
                    eprintln!("connection to the relay lost ({detail}); rejoining");
                }
                Some(RecorderEvent::Joined { rejoin }) => {
                    eprintln!("{} the room", if rejoin { "rejoined" } else { "joined" });
                }
                Some(_) => {}
                None => break,
            },
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    let stats_frames = recorder.stats().frames_recorded.load(Ordering::Relaxed);
    let summary = recorder.stop().await;
    println!(
        "recorded {stats_frames} frames in {} stored segments ({} dropped, {} left in the spool for the next run)",
        summary.manifest.segments.len(),
        summary.manifest.dropped.len(),
        summary.left_in_spool
    );
    Ok(())
}

#[cfg(unix)]
fn terminate_signal() -> anyhow::Result<tokio::signal::unix::Signal> {
    Ok(tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::terminate(),
    )?)
}

/// Run `sealroom recording ...`.
pub(crate) async fn recording(args: RecordingArgs) -> anyhow::Result<()> {
    match args.command {
        RecordingCommand::Open(args) => open_cmd(args).await,
    }
}

async fn open_cmd(args: OpenArgs) -> anyhow::Result<()> {
    let text = match (&args.secret, &args.secret_file) {
        (Some(secret), None) => secret.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the secret file {}", path.display()))?,
        _ => bail!("give the room secret with --secret-file or SEALROOM_ROOM_SECRET"),
    };
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("the room secret is 64 hexadecimal digits"))?;
    let request = open::OpenRequest {
        storage: storage_config(&args.storage, &args.storage_options),
        recording: args.recording.clone(),
        secret: RoomSecret::from_bytes(bytes),
        out: args.out.clone(),
        audio: args.audio_codec,
        hold_max_bytes: args.hold_max_bytes,
    };
    let report = open::open(request).await?;
    println!(
        "opened {} of {} frames from {} segments into {}",
        report.frames_opened,
        report.frames,
        report.segments_read,
        args.out.display()
    );
    for track in &report.tracks {
        println!(
            "  {} {} track {}: {} frames -> {} ({})",
            track.user, track.kind, track.track, track.frames, track.file, track.format
        );
    }
    if !report.unopenable.is_empty() {
        println!("{} frames could not be opened:", report.unopenable.len());
        for frame in report.unopenable.iter().take(20) {
            println!(
                "  {} at byte {}: member {} {} track {} group {} seq {}: {}",
                frame.object,
                frame.offset,
                frame.sender,
                frame.kind,
                frame.track,
                frame.group,
                frame.seq,
                frame.reason
            );
        }
    }
    for loss in &report.losses {
        println!(
            "loss ({}): {} to {} us: {}",
            loss.kind, loss.from_us, loss.to_us, loss.detail
        );
    }
    for gap in &report.gaps {
        println!(
            "gap in {} {} track {}: after {:?}, before {:?}, {} frames missing",
            gap.user,
            gap.kind,
            gap.track,
            gap.after,
            gap.before,
            gap.missing
                .map_or_else(|| String::from("unknown"), |m| m.to_string())
        );
    }
    for problem in &report.problems {
        println!("problem: {problem}");
    }
    println!(
        "the full report is {}",
        args.out.join("report.json").display()
    );
    Ok(())
}
