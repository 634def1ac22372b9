//! Opening a recording offline: read every segment from storage, open every frame with the
//! room secret (across epochs), and export per member and track into one output
//! directory, with a report of what could not be opened and what is missing.
//!
//! A member's frames are named by the user its `MemberJoined` record gives. The relay does
//! not order control messages and media, so a member's first frames can be recorded before
//! that record: the exporter holds them (up to a bound) until it comes, and a sender that is
//! never announced in its relay session is exported under its member id. A video track's
//! frames before its first keyframe wait too, since the keyframe tells the container; the
//! same bound covers both.
//!
//! Plaintext is written only under the output directory: nothing is cached or logged
//! elsewhere, and the directory is created with the owner's permissions only.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bytes::BytesMut;
use sealroom_crypto::{CipherSuite, KeySchedule, Opener, OpenerConfig, RoomSecret, SframeHeader};
use sealroom_frame::control::ControlMessage;
use sealroom_frame::envelope::{Envelope, Flags, Frame, MediaKind, MemberId, TrackId};
use sealroom_record::archive::{Manifest, Record, read_segment};
use sealroom_record::recorder::MANIFEST_NAME;
use sealroom_record::{Storage, StorageConfig};
use serde::Serialize;

use super::containers::{IvfWriter, OggOpusWriter, opus_packet_samples, vp8_keyframe_size};

/// How audio payloads are exported: Opus has no signature to recognise it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum AudioCodec {
    /// A raw dump with a JSON index.
    Raw,
    /// Opus packets, written as Ogg Opus (packets that break Opus's rules are dumped raw).
    Opus,
}

/// What to open and where the plaintext goes.
pub(crate) struct OpenRequest {
    pub(crate) storage: StorageConfig,
    pub(crate) recording: String,
    pub(crate) secret: RoomSecret,
    pub(crate) out: PathBuf,
    pub(crate) audio: AudioCodec,
    /// Bytes of opened frames held in memory, for senders not announced yet and for video
    /// tracks waiting for their first keyframe (see [`HOLD_MAX_BYTES`]).
    pub(crate) hold_max_bytes: usize,
}

/// The default bound on opened frames the exporter holds in memory, in bytes: frames of
/// senders whose `MemberJoined` has not been read yet, and video frames waiting for their
/// track's first keyframe. Far more than a member sends while its announcement is on the
/// way or between two keyframes, and a bound on what a damaged or hostile recording can
/// make the opener keep.
pub(crate) const HOLD_MAX_BYTES: usize = 64 * 1024 * 1024;

/// An opened frame kept in memory: its envelope, arrival time and plaintext.
type HeldFrame = (Envelope, u64, Vec<u8>);

/// What a held frame costs besides its payload: the envelope, the arrival time and the
/// vector, so a flood of empty frames reaches the bound too.
const HELD_FRAME_OVERHEAD: usize = size_of::<HeldFrame>();

/// What a frame costs against `--hold-max-bytes`, wherever it is held.
const fn held_cost(plain: &[u8]) -> usize {
    plain.len().saturating_add(HELD_FRAME_OVERHEAD)
}

/// The report written as `report.json` and summarised on stdout.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) recording: String,
    pub(crate) app: String,
    pub(crate) room: String,
    pub(crate) segments_read: usize,
    pub(crate) frames: u64,
    pub(crate) frames_opened: u64,
    pub(crate) tracks: Vec<TrackReport>,
    pub(crate) unopenable: Vec<Unopenable>,
    pub(crate) gaps: Vec<Gap>,
    pub(crate) losses: Vec<LossReport>,
    pub(crate) problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TrackReport {
    pub(crate) user: String,
    pub(crate) kind: &'static str,
    pub(crate) track: TrackId,
    pub(crate) file: String,
    pub(crate) format: &'static str,
    pub(crate) frames: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Unopenable {
    pub(crate) object: String,
    pub(crate) offset: u64,
    pub(crate) sender: MemberId,
    pub(crate) track: TrackId,
    pub(crate) kind: &'static str,
    pub(crate) group: u32,
    pub(crate) seq: u32,
    pub(crate) reason: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Gap {
    pub(crate) user: String,
    pub(crate) kind: &'static str,
    pub(crate) track: TrackId,
    /// The last (group, seq) before the gap and the first after it.
    pub(crate) after: (u32, u32),
    pub(crate) before: (u32, u32),
    /// Frames missing, when the numbering tells (audio and data; video within a group).
    pub(crate) missing: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct LossReport {
    pub(crate) object: String,
    pub(crate) kind: String,
    pub(crate) from_us: u64,
    pub(crate) to_us: u64,
    pub(crate) count: u64,
    pub(crate) detail: String,
}

const fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
        MediaKind::Data => "data",
    }
}

/// Open the recording; the report is also written to `<out>/report.json`.
pub(crate) async fn open(request: OpenRequest) -> anyhow::Result<Report> {
    let storage = Storage::open(&request.storage, &request.recording)?;
    let mut report = Report {
        recording: request.recording.clone(),
        ..Report::default()
    };
    let manifest = match storage.get(MANIFEST_NAME).await {
        Ok(Some(bytes)) => match Manifest::parse(&bytes) {
            Ok(manifest) => Some(manifest),
            Err(err) => {
                report.problems.push(format!(
                    "{}/{MANIFEST_NAME}: {err}; the segments are read without it",
                    storage.describe()
                ));
                None
            }
        },
        Ok(None) => {
            report.problems.push(format!(
                "{}/{MANIFEST_NAME} is missing; the segments are read without it",
                storage.describe()
            ));
            None
        }
        Err(err) => return Err(err).context("cannot read the recording's manifest"),
    };
    let listed = storage
        .list("segments")
        .await
        .context("cannot list the recording's segments")?;
    let names: Vec<String> = listed
        .into_iter()
        .filter(|n| sealroom_record::archive::manifest::is_segment_name(n))
        .collect();
    if names.is_empty() {
        bail!(
            "no segments under {}/segments: check the storage URL and the recording name",
            storage.describe()
        );
    }
    if let Some(manifest) = &manifest {
        report.app.clone_from(&manifest.app);
        report.room.clone_from(&manifest.room);
        for entry in &manifest.segments {
            if !names.contains(&entry.name) {
                report.problems.push(format!(
                    "{}: listed in the manifest but not in storage (lost)",
                    entry.name
                ));
            }
        }
        for name in &names {
            if !manifest.segments.iter().any(|e| &e.name == name) {
                report.problems.push(format!(
                    "{name}: stored but not in the manifest (stored just before the recorder stopped); read"
                ));
            }
        }
        for entry in &manifest.dropped {
            report.problems.push(format!(
                "{}: dropped by the recorder from a full spool ({} frames, {} to {} us)",
                entry.name, entry.frames, entry.first_us, entry.last_us
            ));
        }
    }
    create_private_dir(&request.out)?;
    let mut exporter = Exporter::new(&request.out, request.audio, request.hold_max_bytes);
    let mut openers = EpochOpeners::new(&request.secret);
    for name in &names {
        let bytes = match storage.get(name).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                report
                    .problems
                    .push(format!("{name}: vanished while reading"));
                continue;
            }
            Err(err) => {
                report.problems.push(format!("{name}: {err}"));
                continue;
            }
        };
        report.segments_read += 1;
        let contents = read_segment(name, bytes);
        report
            .problems
            .extend(contents.problems.iter().map(ToString::to_string));
        for (offset, record) in contents.records {
            match record {
                Record::Frame {
                    frame, arrival_us, ..
                } => {
                    report.frames += 1;
                    let Ok(decoded) = Frame::decode(&frame) else {
                        continue;
                    };
                    match openers.open(&decoded.envelope, &decoded.payload) {
                        Ok(plain) => {
                            report.frames_opened += 1;
                            exporter.handle_frame(decoded.envelope, arrival_us, plain)?;
                        }
                        Err(reason) => report.unopenable.push(Unopenable {
                            object: name.clone(),
                            offset,
                            sender: decoded.envelope.sender,
                            track: decoded.envelope.track,
                            kind: kind_name(decoded.envelope.kind),
                            group: decoded.envelope.group,
                            seq: decoded.envelope.seq,
                            reason,
                        }),
                    }
                }
                Record::Control {
                    message: ControlMessage::MemberJoined(info),
                    ..
                } => exporter.handle_member_joined(info.member, info.user)?,
                // A new relay session: its member ids say nothing of the last one's.
                Record::Joined { .. } => exporter.handle_joined()?,
                Record::Control { .. } | Record::End { .. } => {}
                Record::Loss {
                    kind,
                    from_us,
                    to_us,
                    count,
                    detail,
                    ..
                } => {
                    report.losses.push(LossReport {
                        object: name.clone(),
                        kind: format!("{kind:?}"),
                        from_us,
                        to_us,
                        count,
                        detail,
                    });
                }
            }
        }
    }
    let export = exporter.finish()?;
    report.tracks = export.tracks;
    report.gaps = export.gaps;
    report.problems.extend(export.problems);
    let json = serde_json::to_vec_pretty(&report)?;
    std::fs::write(request.out.join("report.json"), json)?;
    Ok(report)
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    Ok(())
}

/// One opener per epoch, created on demand: a KID carries its epoch modulo 16, so a frame
/// is tried under the epochs with those low bits nearest the highest epoch seen so far.
struct EpochOpeners {
    schedule: KeySchedule,
    openers: BTreeMap<u64, Opener>,
    highest: u64,
}

impl EpochOpeners {
    fn new(secret: &RoomSecret) -> Self {
        Self {
            schedule: KeySchedule::new(secret, CipherSuite::default()),
            openers: BTreeMap::new(),
            highest: 0,
        }
    }

    fn open(&mut self, envelope: &Envelope, sframe: &[u8]) -> Result<Vec<u8>, String> {
        let (header, _) = SframeHeader::decode(sframe).map_err(|e| e.to_string())?;
        let bits = header.kid & 0x0f;
        let base = self.highest.saturating_sub(16) & !0x0f;
        let candidates = (0..3)
            .map(|i| base + i * 16 + bits)
            .filter(|e| e.abs_diff(self.highest) <= 16);
        let mut last = String::from("no epoch matches the key id");
        for epoch in candidates {
            let schedule = &self.schedule;
            let opener = self.openers.entry(epoch).or_insert_with(|| {
                schedule.opener(epoch, OpenerConfig::default().max_senders(65_536))
            });
            let mut out = BytesMut::with_capacity(sframe.len());
            match opener.open(&envelope.metadata(), sframe, &mut out) {
                Ok(_) => {
                    self.highest = self.highest.max(epoch);
                    return Ok(out.to_vec());
                }
                Err(err) => last = err.to_string(),
            }
        }
        Err(last)
    }
}

/// Where one track's frames go.
enum Sink {
    /// Video waiting for its first keyframe to tell its codec.
    Pending(Pending),
    Ivf(IvfWriter<BufWriter<File>>, u64),
    Ogg(OggOpusWriter<BufWriter<File>>),
    Raw {
        data: BufWriter<File>,
        index: BufWriter<File>,
        offset: u64,
        entries: u64,
    },
    Json(BufWriter<File>),
}

/// A video track's frames before its first keyframe, oldest first.
#[derive(Default)]
struct Pending {
    frames: VecDeque<HeldFrame>,
    bytes: usize,
}

struct TrackOut {
    user: String,
    kind: MediaKind,
    track: TrackId,
    file: String,
    format: &'static str,
    /// Frames exported (or waiting to be), not counting those dropped.
    frames: u64,
    sink: Sink,
    last: Option<(u32, u32)>,
    /// Frames dropped, and their cost, from a pending video track over the bound.
    dropped: u64,
    dropped_bytes: usize,
}

impl TrackOut {
    /// What the track holds in memory against `--hold-max-bytes`.
    const fn pending_bytes(&self) -> usize {
        match &self.sink {
            Sink::Pending(pending) => pending.bytes,
            _ => 0,
        }
    }
}

/// Opened frames of one sender not announced yet, in the order they were recorded.
#[derive(Default)]
struct Held {
    frames: Vec<HeldFrame>,
    bytes: usize,
}

/// Why held frames are exported under their sender's member id.
#[derive(Clone, Copy)]
enum Unannounced {
    /// A `Joined` record began a new relay session.
    SessionEnded,
    /// The recording ended.
    RecordingEnded,
}

/// What the exporter wrote.
struct Export {
    tracks: Vec<TrackReport>,
    gaps: Vec<Gap>,
    problems: Vec<String>,
}

/// The name a sender's files get while no `MemberJoined` has named its user.
fn fallback_name(member: MemberId) -> String {
    format!("member{member}")
}

struct Exporter {
    dir: PathBuf,
    audio: AudioCodec,
    /// Users by member id, in the current relay session.
    users: HashMap<MemberId, String>,
    /// Frames of senders not announced yet in the current relay session.
    held: BTreeMap<MemberId, Held>,
    held_bytes: usize,
    /// What the tracks waiting for a keyframe hold: with `held_bytes`, within the bound.
    pending_bytes: usize,
    hold_max_bytes: usize,
    /// Senders whose held frames passed the bound in the current relay session, with how
    /// many of their frames went under their member id: they go there until announced.
    unheld: HashMap<MemberId, u64>,
    tracks: BTreeMap<(String, u8, TrackId), TrackOut>,
    gaps: Vec<Gap>,
    problems: Vec<String>,
}

impl Exporter {
    fn new(dir: &Path, audio: AudioCodec, hold_max_bytes: usize) -> Self {
        Self {
            dir: dir.to_owned(),
            audio,
            users: HashMap::new(),
            held: BTreeMap::new(),
            held_bytes: 0,
            pending_bytes: 0,
            hold_max_bytes,
            unheld: HashMap::new(),
            tracks: BTreeMap::new(),
            gaps: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// An opened frame: written under its sender's user, or held until the sender is
    /// announced; then what is held is brought back within the bound.
    fn handle_frame(
        &mut self,
        envelope: Envelope,
        arrival_us: u64,
        plain: Vec<u8>,
    ) -> anyhow::Result<()> {
        let sender = envelope.sender;
        if let Some(user) = self.users.get(&sender).cloned() {
            self.write(&user, &envelope, arrival_us, &plain)?;
        } else if let Some(count) = self.unheld.get_mut(&sender) {
            *count += 1;
            self.write(&fallback_name(sender), &envelope, arrival_us, &plain)?;
        } else {
            let cost = held_cost(&plain);
            let held = self.held.entry(sender).or_default();
            held.frames.push((envelope, arrival_us, plain));
            held.bytes = held.bytes.saturating_add(cost);
            self.held_bytes = self.held_bytes.saturating_add(cost);
        }
        // Only a new frame adds to what is held: releasing held frames moves them to a
        // track, at the same cost when it waits for a keyframe and none otherwise.
        self.shed()
    }

    /// Bring what is held in memory back within `--hold-max-bytes`, taking from whoever
    /// holds the most: a sender not announced yet has its frames, and its further ones
    /// until announced, exported under its member id (which may move them into a track
    /// waiting for a keyframe); a video track waiting for its first keyframe loses its
    /// oldest frames, which could not be decoded without one anyway.
    fn shed(&mut self) -> anyhow::Result<()> {
        while self.held_bytes.saturating_add(self.pending_bytes) > self.hold_max_bytes {
            let sender = self
                .held
                .iter()
                .max_by_key(|(_, held)| held.bytes)
                .map(|(member, held)| (*member, held.bytes));
            let pending = self
                .tracks
                .values()
                .map(TrackOut::pending_bytes)
                .max()
                .unwrap_or(0);
            match sender {
                Some((member, bytes)) if bytes >= pending => self.unhold(member)?,
                _ if pending > 0 => self.drop_pending(),
                _ => break,
            }
        }
        Ok(())
    }

    /// Export the frames held for `member` under its member id, and its further ones until
    /// it is announced, because what is held passed the bound.
    fn unhold(&mut self, member: MemberId) -> anyhow::Result<()> {
        let Some(held) = self.held.remove(&member) else {
            return Ok(());
        };
        self.held_bytes = self.held_bytes.saturating_sub(held.bytes);
        self.problems.push(format!(
            "member {member}: {} frames ({} bytes) held until a MemberJoined names its user \
             passed the bound of {} bytes (--hold-max-bytes); they and its further frames \
             until it is announced are exported as {}",
            held.frames.len(),
            held.bytes,
            self.hold_max_bytes,
            fallback_name(member)
        ));
        self.unheld.insert(member, held.frames.len() as u64);
        self.write_held(&fallback_name(member), held)
    }

    /// Drop the oldest frames of the video track holding the most while waiting for its
    /// first keyframe, until what is held is within the bound; `finish` reports them.
    fn drop_pending(&mut self) {
        let over = self
            .held_bytes
            .saturating_add(self.pending_bytes)
            .saturating_sub(self.hold_max_bytes);
        let Some(out) = self
            .tracks
            .values_mut()
            .max_by_key(|out| out.pending_bytes())
        else {
            return;
        };
        let Sink::Pending(pending) = &mut out.sink else {
            return;
        };
        let mut freed = 0usize;
        while freed < over {
            let Some((_, _, plain)) = pending.frames.pop_front() else {
                break;
            };
            let cost = held_cost(&plain);
            freed = freed.saturating_add(cost);
            pending.bytes = pending.bytes.saturating_sub(cost);
            out.frames = out.frames.saturating_sub(1);
            out.dropped += 1;
            out.dropped_bytes = out.dropped_bytes.saturating_add(cost);
        }
        self.pending_bytes = self.pending_bytes.saturating_sub(freed);
    }

    /// A `MemberJoined` record: the member's frames from now on, and those held for it
    /// first, go under its user.
    fn handle_member_joined(&mut self, member: MemberId, user: String) -> anyhow::Result<()> {
        if let Some(count) = self.unheld.remove(&member) {
            self.problems.push(format!(
                "member {member} was announced as {user} after {count} of its frames were \
                 exported as {}",
                fallback_name(member)
            ));
        }
        if let Some(held) = self.held.remove(&member) {
            self.held_bytes = self.held_bytes.saturating_sub(held.bytes);
            self.write_held(&user, held)?;
        }
        self.users.insert(member, user);
        Ok(())
    }

    /// A `Joined` record: the recorder is in a new relay session, whose member ids may
    /// name other members.
    fn handle_joined(&mut self) -> anyhow::Result<()> {
        self.release_unannounced(Unannounced::SessionEnded)?;
        self.users.clear();
        self.unheld.clear();
        Ok(())
    }

    /// Export every held frame under its sender's member id, and say so.
    fn release_unannounced(&mut self, why: Unannounced) -> anyhow::Result<()> {
        let when = match why {
            Unannounced::SessionEnded => "its relay session ended",
            Unannounced::RecordingEnded => "the recording ended",
        };
        for (member, held) in std::mem::take(&mut self.held) {
            self.problems.push(format!(
                "member {member}: no MemberJoined named its user before {when}; its frames \
                 ({}) are exported as {}",
                held.frames.len(),
                fallback_name(member)
            ));
            self.write_held(&fallback_name(member), held)?;
        }
        self.held_bytes = 0;
        Ok(())
    }

    fn write_held(&mut self, user: &str, held: Held) -> anyhow::Result<()> {
        for (envelope, arrival_us, plain) in held.frames {
            self.write(user, &envelope, arrival_us, &plain)?;
        }
        Ok(())
    }

    fn write(
        &mut self,
        user: &str,
        envelope: &Envelope,
        arrival_us: u64,
        plain: &[u8],
    ) -> anyhow::Result<()> {
        let key = (user.to_owned(), envelope.kind as u8, envelope.track);
        if !self.tracks.contains_key(&key) {
            let out = self.start_track(user, envelope)?;
            self.tracks.insert(key.clone(), out);
        }
        let Some(out) = self.tracks.get_mut(&key) else {
            return Ok(());
        };
        if let Some(gap) = gap(out, envelope) {
            self.gaps.push(gap);
        }
        out.last = Some((envelope.group, envelope.seq));
        out.frames += 1;
        let pending_before = out.pending_bytes();
        let problem = write_frame(&self.dir, out, envelope, arrival_us, plain)?;
        self.pending_bytes = self
            .pending_bytes
            .saturating_sub(pending_before)
            .saturating_add(out.pending_bytes());
        if let Some(problem) = problem {
            out.frames -= 1;
            self.problems.push(problem);
        }
        Ok(())
    }

    fn start_track(&self, user: &str, envelope: &Envelope) -> anyhow::Result<TrackOut> {
        let safe: String = user
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        let stem = format!(
            "{safe}-{}-track{}",
            kind_name(envelope.kind),
            envelope.track
        );
        let (sink, file, format) = match envelope.kind {
            MediaKind::Video => (Sink::Pending(Pending::default()), stem, "pending"),
            MediaKind::Audio if self.audio == AudioCodec::Opus => {
                let file = format!("{stem}.ogg");
                let out = BufWriter::new(File::create(self.dir.join(&file))?);
                let serial = envelope.track ^ envelope.sender.rotate_left(16);
                (
                    Sink::Ogg(OggOpusWriter::new(out, serial, 1)?),
                    file,
                    "ogg-opus",
                )
            }
            MediaKind::Audio => raw_sink(&self.dir, &stem)?,
            MediaKind::Data => {
                let file = format!("{stem}.jsonl");
                let out = BufWriter::new(File::create(self.dir.join(&file))?);
                (Sink::Json(out), file, "jsonl")
            }
        };
        Ok(TrackOut {
            user: user.to_owned(),
            kind: envelope.kind,
            track: envelope.track,
            file,
            format,
            frames: 0,
            sink,
            last: None,
            dropped: 0,
            dropped_bytes: 0,
        })
    }

    fn finish(mut self) -> anyhow::Result<Export> {
        self.release_unannounced(Unannounced::RecordingEnded)?;
        let mut reports = Vec::new();
        for (_, mut out) in self.tracks {
            if let Sink::Pending(pending) = &mut out.sink {
                let frames = std::mem::take(&mut pending.frames);
                // No keyframe ever came: dump what there is.
                let (sink, file, format) = raw_sink(&self.dir, &out.file)?;
                out.sink = sink;
                out.file = file;
                out.format = format;
                for (envelope, arrival_us, plain) in frames {
                    write_frame(&self.dir, &mut out, &envelope, arrival_us, &plain)?;
                }
            }
            match out.sink {
                Sink::Ivf(writer, _) => {
                    writer.finish()?;
                }
                Sink::Ogg(writer) => {
                    writer.finish()?;
                }
                Sink::Raw {
                    mut data,
                    mut index,
                    ..
                } => {
                    data.flush()?;
                    index.write_all(b"\n]\n")?;
                    index.flush()?;
                }
                Sink::Json(mut file) => file.flush()?,
                Sink::Pending(_) => {}
            }
            if out.dropped > 0 {
                self.problems.push(format!(
                    "{}'s video track {}: {} frames ({} bytes) waiting for the track's first \
                     keyframe passed the bound of {} bytes (--hold-max-bytes); the oldest were \
                     dropped and are not exported",
                    out.user, out.track, out.dropped, out.dropped_bytes, self.hold_max_bytes
                ));
            }
            reports.push(TrackReport {
                user: out.user,
                kind: kind_name(out.kind),
                track: out.track,
                file: out.file,
                format: out.format,
                frames: out.frames,
            });
        }
        Ok(Export {
            tracks: reports,
            gaps: self.gaps,
            problems: self.problems,
        })
    }
}

fn raw_sink(dir: &Path, stem: &str) -> anyhow::Result<(Sink, String, &'static str)> {
    let file = format!("{stem}.bin");
    let data = BufWriter::new(File::create(dir.join(&file))?);
    let mut index = BufWriter::new(File::create(dir.join(format!("{stem}.index.json")))?);
    index.write_all(b"[")?;
    Ok((
        Sink::Raw {
            data,
            index,
            offset: 0,
            entries: 0,
        },
        file,
        "raw",
    ))
}

/// A gap in a track's numbering between the last frame and `envelope`.
fn gap(out: &TrackOut, envelope: &Envelope) -> Option<Gap> {
    let (g0, s0) = out.last?;
    let (g1, s1) = (envelope.group, envelope.seq);
    let missing = if out.kind == MediaKind::Video {
        if g1 == g0 {
            u64::from(s1.checked_sub(s0)?.checked_sub(1)?)
        } else if g1 == g0.wrapping_add(1) && s1 == 0 {
            0
        } else {
            return Some(Gap {
                user: out.user.clone(),
                kind: kind_name(out.kind),
                track: out.track,
                after: (g0, s0),
                before: (g1, s1),
                missing: None,
            });
        }
    } else {
        let before = (u64::from(g0) << 32) | u64::from(s0);
        let after = (u64::from(g1) << 32) | u64::from(s1);
        after.checked_sub(before)?.checked_sub(1)?
    };
    (missing > 0).then(|| Gap {
        user: out.user.clone(),
        kind: kind_name(out.kind),
        track: out.track,
        after: (g0, s0),
        before: (g1, s1),
        missing: Some(missing),
    })
}

/// Write one opened frame to its track's file; a frame that does not fit the track's
/// format is not written and comes back as a problem.
fn write_frame(
    dir: &Path,
    out: &mut TrackOut,
    envelope: &Envelope,
    arrival_us: u64,
    plain: &[u8],
) -> anyhow::Result<Option<String>> {
    match &mut out.sink {
        Sink::Pending(pending) => {
            if !envelope.flags.contains(Flags::GROUP_START) {
                pending.bytes = pending.bytes.saturating_add(held_cost(plain));
                pending
                    .frames
                    .push_back((*envelope, arrival_us, plain.to_vec()));
                return Ok(None);
            }
            let earlier = std::mem::take(&mut pending.frames);
            if let Some((width, height)) = vp8_keyframe_size(plain) {
                let file = format!("{}.ivf", out.file);
                let writer = IvfWriter::new(
                    BufWriter::new(File::create(dir.join(&file))?),
                    width,
                    height,
                )?;
                out.file = file;
                out.format = "ivf-vp8";
                out.sink = Sink::Ivf(writer, envelope.timestamp_us);
                // Inter frames before the first keyframe cannot be decoded: not exported.
                out.frames -= earlier.len() as u64;
            } else {
                let (sink, file, format) = raw_sink(dir, &out.file)?;
                out.sink = sink;
                out.file = file;
                out.format = format;
                for (env, arrival, plain) in earlier {
                    write_frame(dir, out, &env, arrival, &plain)?;
                }
            }
            write_frame(dir, out, envelope, arrival_us, plain)
        }
        Sink::Ivf(writer, first_us) => {
            let ms = envelope.timestamp_us.saturating_sub(*first_us) / 1000;
            writer.frame(ms, plain)?;
            Ok(None)
        }
        Sink::Ogg(writer) => match opus_packet_samples(plain) {
            Some(samples) => {
                writer.packet(plain, samples)?;
                Ok(None)
            }
            None => Ok(Some(format!(
                "{}'s audio track {}: a packet that is not Opus (group {}, seq {}) was left \
                 out of {}; open with --audio-codec raw to dump it",
                out.user, out.track, envelope.group, envelope.seq, out.file
            ))),
        },
        Sink::Raw {
            data,
            index,
            offset,
            entries,
        } => {
            data.write_all(plain)?;
            let entry = serde_json::json!({
                "offset": *offset,
                "len": plain.len(),
                "arrival_us": arrival_us,
                "capture_us": envelope.timestamp_us,
                "group": envelope.group,
                "seq": envelope.seq,
                "keyframe": envelope.flags.contains(Flags::GROUP_START),
            });
            let sep = if *entries == 0 { "\n" } else { ",\n" };
            write!(index, "{sep}{entry}")?;
            *offset += plain.len() as u64;
            *entries += 1;
            Ok(None)
        }
        Sink::Json(file) => {
            let body = match std::str::from_utf8(plain) {
                Ok(text) => serde_json::json!({ "text": text }),
                Err(_) => serde_json::json!({ "hex": hex::encode(plain) }),
            };
            let mut line = serde_json::json!({
                "arrival_us": arrival_us,
                "capture_us": envelope.timestamp_us,
                "group": envelope.group,
                "seq": envelope.seq,
            });
            if let (Some(line), Some(body)) = (line.as_object_mut(), body.as_object()) {
                line.extend(body.clone());
            }
            writeln!(file, "{line}")?;
            Ok(None)
        }
    }
}
