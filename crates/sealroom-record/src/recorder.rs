//! The recorder: a blind member whose frames and room events become segments in a local
//! spool, stored in the customer's storage by an uploader that retries with backoff.
//!
//! Two tasks share the spool and the manifest. The writer appends every event as a record,
//! writes them to the segment file every `flush_interval`, and closes the segment when it
//! is `segment_max_bytes` large or `segment_max_duration` old. The uploader stores closed
//! segments oldest first, deletes each local file once stored, and rewrites the manifest.
//!
//! Crash safety: records reach the segment file every `flush_interval`, and the file
//! survives the process. A recorder started again with the same spool directory and
//! recording continues the recording as a new session: it stores what the killed run left
//! (its last segment read up to its last complete record) and notes the gap as a `Loss`
//! record. A kill therefore loses at most the records of the last `flush_interval` (plus
//! the frames the relay sends while no recorder is in the room).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sealroom_frame::control::ControlMessage;
use tokio::sync::{Notify, mpsc, watch};

use crate::archive::manifest::{Manifest, SegmentEntry, SessionEntry};
use crate::archive::record::{LossKind, Record};
use crate::archive::segment::{SealedSegment, SegmentHeader, SegmentWriter};
use crate::member::{BlindConfig, BlindEvent, BlindMember, now_us};
use crate::spool::{Spool, Spooled, recover};
use crate::storage::{Storage, StorageConfig, StorageError};

/// The manifest's object name under the recording's prefix.
pub const MANIFEST_NAME: &str = "manifest.json";

/// How a recorder runs.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// How the blind member joins (relay, trust, tickets with the `record` grant).
    pub member: BlindConfig,
    /// The customer's storage.
    pub storage: StorageConfig,
    /// The recording's name: its prefix under the storage URL. A recorder started with
    /// the name of an existing recording continues it.
    pub recording: String,
    /// The app and room, written to the manifest.
    pub app: String,
    /// The room id, written to the manifest.
    pub room: String,
    /// The local spool directory (one per recording; it survives restarts).
    pub spool_dir: PathBuf,
    /// Bytes of closed segments the spool holds at most before dropping the oldest.
    pub spool_max_bytes: u64,
    /// A segment is closed when it reaches this size.
    pub segment_max_bytes: u64,
    /// A segment is closed when it is this old.
    pub segment_max_duration: Duration,
    /// Records are written to the segment file at least this often: the most a kill loses.
    pub flush_interval: Duration,
    /// First delay before retrying a failed upload; doubles up to `upload_retry_max`.
    pub upload_retry_first: Duration,
    /// Longest delay between upload attempts.
    pub upload_retry_max: Duration,
    /// How long [`Recorder::stop`] waits for the spool to drain before leaving the rest
    /// for the next run.
    pub drain_timeout: Duration,
}

impl RecorderConfig {
    /// A recorder of `member`'s room into `storage` under `recording`, spooling in
    /// `spool_dir`, with default bounds.
    pub fn new(
        member: BlindConfig,
        storage: StorageConfig,
        recording: impl Into<String>,
        spool_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            member,
            storage,
            recording: recording.into(),
            app: String::new(),
            room: String::new(),
            spool_dir: spool_dir.into(),
            spool_max_bytes: 512 * 1024 * 1024,
            segment_max_bytes: 16 * 1024 * 1024,
            segment_max_duration: Duration::from_secs(10),
            flush_interval: Duration::from_millis(200),
            upload_retry_first: Duration::from_millis(200),
            upload_retry_max: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the recorder could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecorderError {
    /// The storage is not usable.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The spool directory could not be used.
    #[error("spool directory {dir}: {detail}")]
    Spool {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The recording's manifest in storage (or in the spool) is not valid.
    #[error(
        "the existing recording's manifest {object} is not valid: {detail}; choose another recording name or repair it"
    )]
    Manifest {
        /// Where it was read.
        object: String,
        /// What is wrong.
        detail: String,
    },
    /// The blind member could not join.
    #[error(transparent)]
    Join(#[from] crate::member::BlindError),
}

/// Counters of a recorder (exported by `sealroom record` as Prometheus metrics).
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Frames written to segments.
    pub frames_recorded: AtomicU64,
    /// Bytes of records written to segments.
    pub bytes_written: AtomicU64,
    /// Segments closed.
    pub segments_closed: AtomicU64,
    /// Segments stored.
    pub segments_stored: AtomicU64,
    /// Segments dropped from a full spool, unstored.
    pub segments_dropped: AtomicU64,
    /// Failed upload attempts (each is retried).
    pub upload_failures: AtomicU64,
    /// Bytes of closed segments waiting in the spool.
    pub spool_bytes: AtomicU64,
}

/// Something the operator should know, as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecorderEvent {
    /// A segment is stored.
    SegmentStored(SegmentEntry),
    /// The spool was full and this segment was dropped unstored.
    SegmentDropped(SegmentEntry),
    /// An upload attempt failed; it is retried after `retry_in`.
    UploadFailed {
        /// The segment.
        object: String,
        /// The error.
        detail: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// The blind member lost its connection (it reconnects).
    ConnectionLost(String),
    /// The blind member (re)joined.
    Joined {
        /// Whether it rejoined.
        rejoin: bool,
    },
}

/// What a stopped recorder left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSummary {
    /// The manifest as last written.
    pub manifest: Manifest,
    /// Closed segments left in the spool, unstored (the next run stores them).
    pub left_in_spool: usize,
}

/// A running recorder.
#[derive(Debug)]
pub struct Recorder {
    stop: watch::Sender<bool>,
    stats: Arc<RecorderStats>,
    writer: tokio::task::JoinHandle<()>,
    uploader: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
    storage: Storage,
    drain_timeout: Duration,
}

#[derive(Debug)]
struct Shared {
    spool: Mutex<Spool>,
    manifest: Mutex<Manifest>,
    wake: Notify,
    /// Set once the writer closed its last segment.
    writer_done: watch::Sender<bool>,
    events: mpsc::Sender<RecorderEvent>,
    stats: Arc<RecorderStats>,
    spool_dir: PathBuf,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Recorder {
    /// Start recording: open storage, load or create the recording's manifest, take over
    /// what a previous run left in the spool, join the room.
    ///
    /// # Errors
    /// [`RecorderError`] when storage, the spool, the manifest or the join fails.
    pub async fn start(
        config: RecorderConfig,
    ) -> Result<(Self, mpsc::Receiver<RecorderEvent>), RecorderError> {
        let spool_err = |detail: String| RecorderError::Spool {
            dir: config.spool_dir.clone(),
            detail,
        };
        std::fs::create_dir_all(&config.spool_dir).map_err(|e| spool_err(e.to_string()))?;
        let storage = Storage::open(&config.storage, &config.recording)?;
        let mut manifest = load_manifest(&storage, &config).await?;
        let session = manifest.next_session();
        let started_us = now_us();
        manifest.sessions.push(SessionEntry {
            session,
            started_us,
        });
        let recovered = recover(&config.spool_dir).map_err(|e| spool_err(e.to_string()))?;
        let previous_end = manifest
            .segments
            .iter()
            .map(|s| s.last_us)
            .chain(recovered.iter().map(|s| s.entry.last_us))
            .max();
        let unfinished = recovered.iter().any(|s| !s.entry.complete);
        let mut spool = Spool::new(config.spool_max_bytes);
        for segment in recovered {
            // A previous run's leftovers are stored before anything new; within the bound.
            let _ = spool.push(segment);
        }
        let (member, member_events) = BlindMember::join(config.member.clone()).await?;
        let (events_tx, events_rx) = mpsc::channel(256);
        let stats = Arc::new(RecorderStats::default());
        let (writer_done, writer_done_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            spool: Mutex::new(spool),
            manifest: Mutex::new(manifest),
            wake: Notify::new(),
            writer_done,
            events: events_tx,
            stats: Arc::clone(&stats),
            spool_dir: config.spool_dir.clone(),
        });
        write_local_manifest(&shared);
        let (stop, stop_rx) = watch::channel(false);
        let recording_id = lock(&shared.manifest).recording_id().unwrap_or([0; 16]);
        let mut writer = Writer {
            config: config.clone(),
            shared: Arc::clone(&shared),
            recording_id,
            session,
            index: 0,
            segment: None,
            opened_at: Instant::now(),
            lost_at: None,
            datagram_drops_seen: 0,
        };
        if session > 1 {
            let from = previous_end.unwrap_or(started_us);
            let detail = if unfinished {
                "the recorder restarted; its previous run was stopped while writing"
            } else {
                "the recorder restarted"
            };
            writer.append(Record::Loss {
                at_us: started_us,
                kind: LossKind::Restarted,
                from_us: from,
                to_us: started_us,
                count: 0,
                detail: detail.to_owned(),
            });
        }
        let writer = tokio::spawn(writer.run(member, member_events, stop_rx));
        let uploader = tokio::spawn(
            Uploader {
                storage: storage.clone(),
                shared: Arc::clone(&shared),
                retry_first: config.upload_retry_first,
                retry_max: config.upload_retry_max,
            }
            .run(writer_done_rx),
        );
        shared.wake.notify_one();
        Ok((
            Self {
                stop,
                stats,
                writer,
                uploader,
                shared,
                storage,
                drain_timeout: config.drain_timeout,
            },
            events_rx,
        ))
    }

    /// The recorder's counters (they stay readable after [`Recorder::stop`]).
    pub fn stats(&self) -> Arc<RecorderStats> {
        Arc::clone(&self.stats)
    }

    /// Where the recording is stored.
    pub fn location(&self) -> &str {
        self.storage.describe()
    }

    /// Leave the room, close the last segment, and store what the spool holds (waiting
    /// at most the configured drain timeout; the rest stays for the next run).
    pub async fn stop(self) -> RecordingSummary {
        let _ = self.stop.send(true);
        let _ = self.writer.await;
        let uploader = self.uploader;
        tokio::pin!(uploader);
        if tokio::time::timeout(self.drain_timeout, &mut uploader)
            .await
            .is_err()
        {
            uploader.abort();
        }
        let manifest = lock(&self.shared.manifest).clone();
        let left_in_spool = lock(&self.shared.spool).len();
        if left_in_spool == 0 {
            let _ = std::fs::remove_file(self.shared.spool_dir.join(MANIFEST_NAME));
        }
        RecordingSummary {
            manifest,
            left_in_spool,
        }
    }
}

/// The recording's manifest: from storage, else from the spool (storage unreachable),
/// else a new one. Storage that cannot be reached with no local copy is an error: the
/// recorder cannot tell whether it would overwrite an existing recording.
async fn load_manifest(
    storage: &Storage,
    config: &RecorderConfig,
) -> Result<Manifest, RecorderError> {
    let local = config.spool_dir.join(MANIFEST_NAME);
    let parse = |bytes: &[u8], object: String| {
        Manifest::parse(bytes).map_err(|e| RecorderError::Manifest {
            object,
            detail: e.to_string(),
        })
    };
    let remote = storage.get(MANIFEST_NAME).await;
    let local_copy = std::fs::read(&local).ok();
    let manifest = match (remote, local_copy) {
        (Ok(Some(bytes)), local_copy) => {
            let remote = parse(&bytes, format!("{}/{MANIFEST_NAME}", storage.describe()))?;
            // The local copy may know segments stored after the last remote rewrite.
            match local_copy.and_then(|b| Manifest::parse(&b).ok()) {
                Some(local) if local.recording == remote.recording => merge(remote, local),
                _ => remote,
            }
        }
        (Ok(None), Some(bytes)) | (Err(_), Some(bytes)) => {
            parse(&bytes, local.display().to_string())?
        }
        (Ok(None), None) => {
            let id: [u8; 16] = rand::random();
            Manifest::new(&id, &config.app, &config.room, now_us())
        }
        (Err(e), None) => return Err(e.into()),
    };
    Ok(manifest)
}

/// Union of two manifests of one recording.
fn merge(mut a: Manifest, b: Manifest) -> Manifest {
    for s in b.sessions {
        if !a.sessions.iter().any(|x| x.session == s.session) {
            a.sessions.push(s);
        }
    }
    for s in b.segments {
        if !a.segments.iter().any(|x| x.name == s.name) {
            a.segments.push(s);
        }
    }
    for s in b.dropped {
        if !a.dropped.iter().any(|x| x.name == s.name) {
            a.dropped.push(s);
        }
    }
    a.sessions.sort_by_key(|s| s.session);
    a.segments.sort_by(|x, y| x.name.cmp(&y.name));
    a
}

fn write_local_manifest(shared: &Shared) {
    let json = lock(&shared.manifest).to_json();
    let tmp = shared.spool_dir.join("manifest.json.tmp");
    if std::fs::write(&tmp, &json).is_ok() {
        let _ = std::fs::rename(&tmp, shared.spool_dir.join(MANIFEST_NAME));
    }
}

/// The writer task's state.
struct Writer {
    config: RecorderConfig,
    shared: Arc<Shared>,
    recording_id: [u8; 16],
    session: u32,
    index: u32,
    segment: Option<SegmentWriter>,
    opened_at: Instant,
    lost_at: Option<u64>,
    datagram_drops_seen: u64,
}

impl Writer {
    async fn run(
        mut self,
        member: BlindMember,
        mut events: crate::member::BlindEvents,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.config.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leaving = false;
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    if matches!(event, BlindEvent::Ended(_)) {
                        break;
                    }
                    self.handle(event);
                }
                _ = tick.tick() => {
                    self.note_datagram_drops(&member);
                    self.flush();
                    if self.opened_at.elapsed() >= self.config.segment_max_duration {
                        self.rotate();
                    }
                }
                _ = stop.changed(), if !leaving => {
                    // The events end with `Ended` after what was in flight; keep writing
                    // them meanwhile.
                    leaving = true;
                    member.request_leave();
                }
            }
        }
        if let Some(segment) = self.segment.take() {
            self.close(segment);
        }
        let _ = self.shared.writer_done.send(true);
        self.shared.wake.notify_one();
    }

    fn handle(&mut self, event: BlindEvent) {
        match event {
            BlindEvent::Frame(frame) => {
                self.shared
                    .stats
                    .frames_recorded
                    .fetch_add(1, Ordering::Relaxed);
                self.append(Record::Frame {
                    arrival_us: frame.arrival_us,
                    envelope: frame.envelope,
                    frame: frame.frame,
                });
            }
            BlindEvent::Room { message, at_us } => {
                self.append(Record::Control { at_us, message });
            }
            BlindEvent::Joined {
                member,
                roster,
                rejoin,
                at_us,
            } => {
                if let Some(from) = self.lost_at.take() {
                    self.append(Record::Loss {
                        at_us,
                        kind: LossKind::Disconnected,
                        from_us: from,
                        to_us: at_us,
                        count: 0,
                        detail: String::from("the recorder's connection to the relay was down"),
                    });
                }
                self.append(Record::Joined {
                    at_us,
                    member,
                    rejoin,
                });
                for info in roster.into_iter().filter(|i| i.member != member) {
                    self.append(Record::Control {
                        at_us,
                        message: ControlMessage::MemberJoined(info),
                    });
                }
                let _ = self
                    .shared
                    .events
                    .try_send(RecorderEvent::Joined { rejoin });
            }
            BlindEvent::ConnectionLost { detail, at_us } => {
                self.lost_at.get_or_insert(at_us);
                let _ = self
                    .shared
                    .events
                    .try_send(RecorderEvent::ConnectionLost(detail));
            }
            BlindEvent::Ended(_) => {}
        }
    }

    fn note_datagram_drops(&mut self, member: &BlindMember) {
        let drops = member.stats().frames_dropped.load(Ordering::Relaxed);
        if drops > self.datagram_drops_seen {
            let count = drops - self.datagram_drops_seen;
            self.datagram_drops_seen = drops;
            let now = now_us();
            tracing::warn!(count, "recorder fell behind: datagram frames dropped");
            self.append(Record::Loss {
                at_us: now,
                kind: LossKind::QueueOverflow,
                from_us: now,
                to_us: now,
                count,
                detail: String::from("the recorder fell behind; audio frames were dropped"),
            });
        }
    }

    /// Append a record to the open segment (opening one if needed), closing it when full.
    fn append(&mut self, record: Record) {
        let at_us = crate::spool::record_time(&record);
        if self.segment.is_none() {
            self.open();
        }
        let Some(segment) = self.segment.as_mut() else {
            return;
        };
        let before = segment.len();
        if let Err(err) = segment.append(&record, at_us) {
            tracing::warn!(error = %err, "record not written");
            return;
        }
        self.shared
            .stats
            .bytes_written
            .fetch_add(segment.len() - before, Ordering::Relaxed);
        if segment.buffered() >= 256 * 1024 {
            self.flush();
        }
        if self
            .segment
            .as_ref()
            .is_some_and(|s| s.len() >= self.config.segment_max_bytes)
        {
            self.rotate();
        }
    }

    fn open(&mut self) {
        self.index += 1;
        let header = SegmentHeader {
            recording: self.recording_id,
            session: self.session,
            index: self.index,
            created_us: now_us(),
        };
        match SegmentWriter::create(&self.config.spool_dir, header) {
            Ok(writer) => {
                self.segment = Some(writer);
                self.opened_at = Instant::now();
            }
            Err(err) => {
                tracing::error!(error = %err, dir = %self.config.spool_dir.display(),
                    "cannot create a segment in the spool; records are lost until it works");
            }
        }
    }

    fn flush(&mut self) {
        if let Some(segment) = self.segment.as_mut()
            && let Err(err) = segment.flush()
        {
            tracing::error!(error = %err, "cannot write to the spool; records are kept in memory");
        }
    }

    fn rotate(&mut self) {
        if let Some(segment) = self.segment.take() {
            if segment.is_empty() {
                // Nothing recorded: keep it open rather than store empty segments.
                self.segment = Some(segment);
                self.opened_at = Instant::now();
                return;
            }
            self.close(segment);
        }
    }

    fn close(&mut self, segment: SegmentWriter) {
        match segment.finish(now_us()) {
            Ok(sealed) => self.spool(sealed),
            Err(err) => tracing::error!(error = %err, "cannot close a segment in the spool"),
        }
    }

    fn spool(&mut self, sealed: SealedSegment) {
        let entry = sealed.entry();
        self.shared
            .stats
            .segments_closed
            .fetch_add(1, Ordering::Relaxed);
        let dropped = {
            let mut spool = lock(&self.shared.spool);
            let dropped = spool.push(Spooled {
                path: sealed.path,
                entry,
            });
            self.shared
                .stats
                .spool_bytes
                .store(spool.bytes(), Ordering::Relaxed);
            dropped
        };
        for segment in dropped {
            let entry = segment.entry;
            self.shared
                .stats
                .segments_dropped
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                segment = %entry.name,
                bytes = entry.bytes,
                "the spool is full (storage unreachable for too long): the oldest unstored \
                 segment was dropped; raise spool_max_bytes or restore the storage"
            );
            let now = now_us();
            let record = Record::Loss {
                at_us: now,
                kind: LossKind::SpoolOverflow,
                from_us: entry.first_us,
                to_us: entry.last_us,
                count: 1,
                detail: format!("{} dropped from a full spool", entry.name),
            };
            lock(&self.shared.manifest).dropped.push(entry.clone());
            let _ = self
                .shared
                .events
                .try_send(RecorderEvent::SegmentDropped(entry));
            self.append(record);
        }
        write_local_manifest(&self.shared);
        self.shared.wake.notify_one();
    }
}

/// The uploader task.
struct Uploader {
    storage: Storage,
    shared: Arc<Shared>,
    retry_first: Duration,
    retry_max: Duration,
}

impl Uploader {
    async fn run(self, writer_done: watch::Receiver<bool>) {
        loop {
            let next = lock(&self.shared.spool).next_upload();
            let Some(segment) = next else {
                if *writer_done.borrow() {
                    return;
                }
                self.shared.wake.notified().await;
                continue;
            };
            self.store(segment).await;
        }
    }

    async fn store(&self, segment: Spooled) {
        let name = segment.entry.name.clone();
        let bytes = match std::fs::read(&segment.path) {
            Ok(bytes) => Bytes::from(bytes),
            Err(err) => {
                tracing::error!(segment = %name, error = %err, "spooled segment unreadable; skipped");
                lock(&self.shared.spool).stored(&name);
                return;
            }
        };
        let mut delay = self.retry_first;
        loop {
            match self.storage.put(&name, bytes.clone()).await {
                Ok(()) => break,
                Err(err) => {
                    self.shared
                        .stats
                        .upload_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(segment = %name, error = %err, retry_in_ms = delay.as_millis() as u64,
                        "upload failed; retrying");
                    let _ = self.shared.events.try_send(RecorderEvent::UploadFailed {
                        object: name.clone(),
                        detail: err.to_string(),
                        retry_in: delay,
                    });
                    // Let a full spool drop other segments meanwhile, never this one.
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.retry_max);
                }
            }
        }
        {
            let mut spool = lock(&self.shared.spool);
            spool.stored(&name);
            self.shared
                .stats
                .spool_bytes
                .store(spool.bytes(), Ordering::Relaxed);
        }
        self.shared
            .stats
            .segments_stored
            .fetch_add(1, Ordering::Relaxed);
        let json = {
            let mut manifest = lock(&self.shared.manifest);
            if !manifest.segments.iter().any(|s| s.name == name) {
                manifest.segments.push(segment.entry.clone());
                manifest.segments.sort_by(|a, b| a.name.cmp(&b.name));
            }
            manifest.to_json()
        };
        write_local_manifest(&self.shared);
        if let Err(err) = self.storage.put(MANIFEST_NAME, Bytes::from(json)).await {
            // The next stored segment rewrites it; the segments themselves are the truth.
            tracing::warn!(error = %err, "manifest not stored; it is rewritten after the next segment");
        }
        let _ = self
            .shared
            .events
            .try_send(RecorderEvent::SegmentStored(segment.entry));
    }
}
