//! Published tracks: the handles the application sends through, and one writer task per
//! track that seals each frame with the member id of the current connection and maps it
//! onto QUIC as the protocol says.
//!
//! - audio: a datagram when the sealed frame fits, otherwise a stream of its own;
//! - video: one stream per group (keyframe to keyframe), finished at the end of the group,
//!   newer groups at higher priority, and a group that fell behind a newer keyframe reset
//!   rather than sent late;
//! - data: one ordered stream per track for reliable messages, datagrams for unreliable.
//!
//! Sealing happens in the writer, after the frame is queued, so that a frame carries the
//! member id of the connection it is actually sent on.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use quinn::{SendStream, VarInt};
use sealroom_frame::control::ControlMessage;
use sealroom_frame::envelope::{Envelope, Flags, MediaKind, TrackId};
use sealroom_frame::transport::StreamCode;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::PublishError;
use crate::keys::{self, TrackSealer};
use crate::link::{Link, LinkState, write_frame};
use crate::quality::LocalDrop;
use crate::room::Shared;
use crate::stats::bump;

/// Stream priority of audio that does not fit a datagram: above every video group.
const AUDIO_PRIORITY: i32 = i32::MAX;
/// Stream priority of reliable data: above video, below audio.
const DATA_PRIORITY: i32 = i32::MAX - 1;

/// One frame waiting for its writer.
#[derive(Debug)]
struct Outgoing {
    payload: Bytes,
    flags: Flags,
    timestamp_us: u64,
}

impl Outgoing {
    fn new(payload: Bytes, flags: Flags) -> Self {
        Self {
            payload,
            flags,
            timestamp_us: now_us(),
        }
    }
}

/// Microseconds since the Unix epoch on this machine's clock.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// What every track handle holds.
#[derive(Debug)]
struct TrackCore {
    id: TrackId,
    kind: MediaKind,
    tx: mpsc::Sender<Outgoing>,
    shared: Arc<Shared>,
}

impl TrackCore {
    /// Refuse a payload that can never be sent within the relay's frame limit.
    fn check_len(&self, payload: &Bytes) -> Result<(), PublishError> {
        if self.shared.is_ended() {
            return Err(PublishError::Closed);
        }
        let len = keys::sealed_frame_len(payload.len());
        let limits = self.shared.session().limits();
        let max = self.shared.frame_limit(&limits);
        if len > max {
            return Err(PublishError::TooLarge { len, max });
        }
        Ok(())
    }

    fn try_push(&self, item: Outgoing) -> Result<(), PublishError> {
        self.check_len(&item.payload)?;
        self.tx.try_send(item).map_err(|err| match err {
            TrySendError::Full(_) => {
                self.shared
                    .quality
                    .send_dropped(self.id, self.kind, LocalDrop::QueueFull);
                PublishError::QueueFull
            }
            TrySendError::Closed(_) => PublishError::Closed,
        })
    }
}

/// A published audio track. Dropping it unpublishes the track.
#[derive(Debug)]
pub struct AudioTrack {
    core: TrackCore,
}

impl AudioTrack {
    /// The track id.
    pub fn id(&self) -> TrackId {
        self.core.id
    }

    /// Queue one encoded audio frame (for example 20 ms of Opus); it is sealed and sent
    /// as a datagram, or on a stream of its own when it does not fit one.
    ///
    /// # Errors
    /// [`PublishError::QueueFull`] when the writer is behind (the frame is not queued),
    /// [`PublishError::TooLarge`], [`PublishError::Closed`].
    pub fn send(&self, frame: impl Into<Bytes>) -> Result<(), PublishError> {
        self.core
            .try_push(Outgoing::new(frame.into(), Flags::empty()))
    }
}

/// A published video track. Dropping it unpublishes the track.
#[derive(Debug)]
pub struct VideoTrack {
    core: TrackCore,
}

impl VideoTrack {
    /// The track id.
    pub fn id(&self) -> TrackId {
        self.core.id
    }

    /// Queue one encoded video frame. A keyframe starts a new group on a new stream; the
    /// previous group's stream is finished, or reset if its frames are still queued
    /// behind this keyframe.
    ///
    /// # Errors
    /// [`PublishError::QueueFull`] when the writer is behind (the frame is not queued),
    /// [`PublishError::TooLarge`], [`PublishError::Closed`].
    pub fn send(&self, frame: impl Into<Bytes>, keyframe: bool) -> Result<(), PublishError> {
        let flags = if keyframe {
            Flags::GROUP_START
        } else {
            Flags::empty()
        };
        self.core.try_push(Outgoing::new(frame.into(), flags))
    }
}

/// A published data track: reliable ordered messages and unreliable ones. Dropping it
/// unpublishes the track.
#[derive(Debug)]
pub struct DataTrack {
    core: TrackCore,
}

impl DataTrack {
    /// The track id.
    pub fn id(&self) -> TrackId {
        self.core.id
    }

    /// Send a message reliably and in order, waiting for room in the track's queue.
    ///
    /// # Errors
    /// [`PublishError::TooLarge`], [`PublishError::Closed`].
    pub async fn send(&self, message: impl Into<Bytes>) -> Result<(), PublishError> {
        let message = message.into();
        self.core.check_len(&message)?;
        self.core
            .tx
            .send(Outgoing::new(message, Flags::empty()))
            .await
            .map_err(|_| PublishError::Closed)
    }

    /// Queue a reliable message without waiting.
    ///
    /// # Errors
    /// [`PublishError::QueueFull`] when the queue is full (the message is not queued),
    /// [`PublishError::TooLarge`], [`PublishError::Closed`].
    pub fn try_send(&self, message: impl Into<Bytes>) -> Result<(), PublishError> {
        self.core
            .try_push(Outgoing::new(message.into(), Flags::empty()))
    }

    /// Send a message on a datagram: no retransmission, no ordering. It must fit one
    /// datagram after sealing.
    ///
    /// # Errors
    /// [`PublishError::TooLarge`] when the sealed message does not fit a datagram,
    /// [`PublishError::QueueFull`], [`PublishError::Closed`].
    pub fn send_unreliable(&self, message: impl Into<Bytes>) -> Result<(), PublishError> {
        let message = message.into();
        // While reconnecting the message is queued and dropped (counted) by the writer.
        if let Some(link) = self.core.shared.current_link() {
            let len = keys::sealed_frame_len(message.len());
            let max = link.conn.max_datagram_size().unwrap_or(0);
            if len > max {
                return Err(PublishError::TooLarge { len, max });
            }
        }
        self.core
            .try_push(Outgoing::new(message, Flags::UNRELIABLE))
    }
}

fn core(
    shared: &Arc<Shared>,
    (id, kind): (TrackId, MediaKind),
    queue: usize,
) -> (TrackCore, mpsc::Receiver<Outgoing>) {
    let (tx, rx) = mpsc::channel(queue);
    let core = TrackCore {
        id,
        kind,
        tx,
        shared: shared.clone(),
    };
    (core, rx)
}

pub(crate) fn spawn_audio(shared: Arc<Shared>, id: TrackId) -> AudioTrack {
    let (core, rx) = core(&shared, (id, MediaKind::Audio), shared.config.media_queue);
    tokio::spawn(audio_writer(shared, id, rx));
    AudioTrack { core }
}

pub(crate) fn spawn_video(shared: Arc<Shared>, id: TrackId) -> VideoTrack {
    let (core, rx) = core(&shared, (id, MediaKind::Video), shared.config.media_queue);
    tokio::spawn(video_writer(shared, id, rx));
    VideoTrack { core }
}

pub(crate) fn spawn_data(shared: Arc<Shared>, id: TrackId) -> DataTrack {
    let (core, rx) = core(&shared, (id, MediaKind::Data), shared.config.data_queue);
    let (flush_tx, flush_rx) = mpsc::channel(1);
    shared
        .data_flush
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(id, flush_tx);
    tokio::spawn(data_writer(shared, id, rx, flush_rx));
    DataTrack { core }
}

/// The next queued frame, or `None` when the handle was dropped or the session ended.
async fn next_item(
    rx: &mut mpsc::Receiver<Outgoing>,
    link: &mut watch::Receiver<LinkState>,
) -> Option<Outgoing> {
    tokio::select! {
        item = rx.recv() => item,
        _ = link.wait_for(|state| matches!(state, LinkState::Ended)) => None,
    }
}

/// The link to send on; `None` (counted) while reconnecting or after the end.
fn link_or_drop(shared: &Shared, (track, kind): (TrackId, MediaKind)) -> Option<Link> {
    let link = shared.current_link();
    if link.is_none() {
        if shared.is_down() {
            bump(&shared.stats.frames_dropped_offline);
            shared.quality.send_dropped(track, kind, LocalDrop::Offline);
        } else {
            bump(&shared.stats.frames_not_sent);
            shared.quality.send_dropped(track, kind, LocalDrop::NotSent);
        }
    }
    link
}

/// The link to send on, waiting through a reconnect; `None` when the session ended.
async fn link_or_wait(link_rx: &mut watch::Receiver<LinkState>) -> Option<Link> {
    let state = link_rx
        .wait_for(|state| !matches!(state, LinkState::Down))
        .await
        .ok()?;
    match &*state {
        LinkState::Up(link) => Some(link.clone()),
        LinkState::Down | LinkState::Ended => None,
    }
}

/// Tell the relay the track is gone and free its id.
fn unpublish(shared: &Shared, track: TrackId) {
    shared.tracks().remove(&track);
    shared.quality.unpublished(track);
    if let Some(link) = shared.current_link() {
        let _ = shared.control.try_send(ControlMessage::TrackUnpublished {
            member: link.member,
            track,
        });
    }
}

/// Group and sequence numbering of audio and data frames: the sequence counts up and the
/// group counts its wraps.
#[derive(Debug, Default)]
struct Numbering {
    group: u32,
    seq: u32,
}

impl Numbering {
    fn next(&mut self) -> (u32, u32) {
        let now = (self.group, self.seq);
        self.seq = self.seq.wrapping_add(1);
        if self.seq == 0 {
            self.group = self.group.wrapping_add(1);
        }
        now
    }
}

/// Seal a frame for `link`; counts and logs a failure.
fn seal(
    shared: &Shared,
    sealer: &mut TrackSealer,
    link: &Link,
    envelope: Envelope,
    payload: &[u8],
) -> Option<Bytes> {
    let envelope = Envelope {
        sender: link.member,
        ..envelope
    };
    match sealer.seal(&envelope, payload) {
        Ok(frame) => Some(frame),
        Err(err) => {
            bump(&shared.stats.frames_not_sent);
            shared
                .quality
                .send_dropped(envelope.track, envelope.kind, LocalDrop::NotSent);
            tracing::warn!(%err, "frame not sealed");
            None
        }
    }
}

fn envelope(kind: MediaKind, track: TrackId, item: &Outgoing, group: u32, seq: u32) -> Envelope {
    Envelope {
        kind,
        flags: item.flags,
        sender: 0,
        track,
        group,
        seq,
        timestamp_us: item.timestamp_us,
    }
}

async fn audio_writer(shared: Arc<Shared>, track: TrackId, mut rx: mpsc::Receiver<Outgoing>) {
    let mut link_rx = shared.link.subscribe();
    let mut sealer = shared.keys.sealer();
    let mut numbering = Numbering::default();
    let id = (track, MediaKind::Audio);
    while let Some(item) = next_item(&mut rx, &mut link_rx).await {
        let Some(link) = link_or_drop(&shared, id) else {
            continue;
        };
        let (group, seq) = numbering.next();
        let env = envelope(MediaKind::Audio, track, &item, group, seq);
        let Some(frame) = seal(&shared, &mut sealer, &link, env, &item.payload) else {
            continue;
        };
        // Errors are counted in the stats; a lost audio frame is not worth more.
        if link.fits_datagram(frame.len()) {
            let _ = link.send_datagram(&shared, id, frame);
        } else {
            let _ = link
                .send_on_new_stream(&shared, id, frame, AUDIO_PRIORITY)
                .await;
        }
    }
    unpublish(&shared, track);
}

/// The stream of the group being sent.
struct OpenGroup {
    stream: SendStream,
    conn_id: usize,
}

async fn video_writer(shared: Arc<Shared>, track: TrackId, mut rx: mpsc::Receiver<Outgoing>) {
    let mut link_rx = shared.link.subscribe();
    let mut sealer = shared.keys.sealer();
    let mut group: u32 = 0;
    let mut seq: u32 = 0;
    let mut open: Option<OpenGroup> = None;
    let mut batch = VecDeque::new();
    let id = (track, MediaKind::Video);
    while let Some(first) = next_item(&mut rx, &mut link_rx).await {
        batch.push_back(first);
        while let Ok(more) = rx.try_recv() {
            batch.push_back(more);
        }
        // A keyframe already waiting makes everything queued before it stale: skip those
        // frames and reset the group they belong to instead of sending it late.
        if let Some(last_key) = batch
            .iter()
            .rposition(|item| item.flags.contains(Flags::GROUP_START))
            && last_key > 0
        {
            let stale = batch.drain(..last_key).count() as u64;
            shared
                .stats
                .frames_not_sent
                .fetch_add(stale, std::sync::atomic::Ordering::Relaxed);
            for _ in 0..stale {
                shared
                    .quality
                    .send_dropped(track, MediaKind::Video, LocalDrop::StaleGroup);
            }
            if let Some(mut old) = open.take() {
                let _ = old
                    .stream
                    .reset(VarInt::from_u32(StreamCode::GroupReset.code()));
                bump(&shared.stats.stale_groups_reset);
            }
        }
        while let Some(item) = batch.pop_front() {
            let Some(link) = link_or_drop(&shared, id) else {
                continue;
            };
            let conn_id = link.conn.stable_id();
            let keyframe = item.flags.contains(Flags::GROUP_START);
            let same_conn = open.as_ref().is_some_and(|g| g.conn_id == conn_id);
            if keyframe || !same_conn {
                if let Some(mut old) = open.take() {
                    let _ = old.stream.finish();
                }
                group = group.wrapping_add(1);
                seq = 0;
                let priority = i32::try_from(group % (i32::MAX as u32 - 1)).unwrap_or(0);
                open = link
                    .open_media_stream(priority)
                    .await
                    .map(|stream| OpenGroup { stream, conn_id });
            }
            let env = envelope(MediaKind::Video, track, &item, group, seq);
            seq = seq.wrapping_add(1);
            let Some(frame) = seal(&shared, &mut sealer, &link, env, &item.payload) else {
                continue;
            };
            let Some(current) = open.as_mut() else {
                bump(&shared.stats.frames_not_sent);
                shared
                    .quality
                    .send_dropped(track, MediaKind::Video, LocalDrop::NotSent);
                continue;
            };
            if !send_on_stream(&shared, id, &mut current.stream, &frame).await {
                // The relay stopped this group (it fell behind); wait for the next one.
                open = None;
            }
        }
    }
    if let Some(mut old) = open.take() {
        let _ = old.stream.finish();
    }
    unpublish(&shared, track);
}

/// Write one sealed frame on a track's stream and count it as sent or not sent; `false`
/// when the stream is gone (the caller opens a new one for the next frame).
async fn send_on_stream(
    shared: &Shared,
    (track, kind): (TrackId, MediaKind),
    stream: &mut SendStream,
    frame: &Bytes,
) -> bool {
    let sent = write_frame(stream, frame).await.is_some();
    if sent {
        shared.stats.sent(frame.len(), false);
        shared.quality.sent(track, kind, frame.len());
    } else {
        bump(&shared.stats.frames_not_sent);
        shared.quality.send_dropped(track, kind, LocalDrop::NotSent);
    }
    sent
}

/// The long-lived stream of a reliable data track.
struct DataStream {
    stream: SendStream,
    conn_id: usize,
}

/// What a data track's writer does next.
enum DataStep {
    Send(Outgoing),
    /// Leaving: the queue is sent; finish the stream and answer once the relay holds it.
    Flush(oneshot::Sender<()>),
}

/// The next queued message, or a flush request once the queue is empty; `None` when the
/// handle was dropped or the session ended.
async fn next_data_step(
    rx: &mut mpsc::Receiver<Outgoing>,
    flush: &mut mpsc::Receiver<oneshot::Sender<()>>,
    link: &mut watch::Receiver<LinkState>,
) -> Option<DataStep> {
    tokio::select! {
        // Messages first: a flush answers for everything queued before it.
        biased;
        item = rx.recv() => item.map(DataStep::Send),
        Some(done) = flush.recv() => Some(DataStep::Flush(done)),
        _ = link.wait_for(|state| matches!(state, LinkState::Ended)) => None,
    }
}

/// Finish a data track's stream and wait (at most `leave_timeout`) until the relay has
/// acknowledged all of it; the connection it was on.
async fn finish_data_stream(shared: &Shared, mut current: DataStream) -> Option<usize> {
    current.stream.finish().ok()?;
    let acked = current.stream.stopped();
    let _ = tokio::time::timeout(shared.config.leave_timeout, acked).await;
    Some(current.conn_id)
}

async fn data_writer(
    shared: Arc<Shared>,
    track: TrackId,
    mut rx: mpsc::Receiver<Outgoing>,
    mut flush: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let mut link_rx = shared.link.subscribe();
    let mut sealer = shared.keys.sealer();
    let mut numbering = Numbering::default();
    let mut open: Option<DataStream> = None;
    let mut ended_on = None;
    let id = (track, MediaKind::Data);
    while let Some(step) = next_data_step(&mut rx, &mut flush, &mut link_rx).await {
        let item = match step {
            DataStep::Send(item) => item,
            DataStep::Flush(done) => {
                if let Some(current) = open.take() {
                    ended_on = finish_data_stream(&shared, current).await;
                }
                let _ = done.send(());
                continue;
            }
        };
        // Reliable messages wait out a reconnect in the bounded track queue; unreliable
        // ones are worthless late.
        let link = if item.flags.contains(Flags::UNRELIABLE) {
            link_or_drop(&shared, id)
        } else {
            link_or_wait(&mut link_rx).await
        };
        let Some(link) = link else {
            continue;
        };
        let (group, seq) = numbering.next();
        let env = envelope(MediaKind::Data, track, &item, group, seq);
        let Some(frame) = seal(&shared, &mut sealer, &link, env, &item.payload) else {
            continue;
        };
        if item.flags.contains(Flags::UNRELIABLE) {
            let _ = link.send_datagram(&shared, id, frame);
            continue;
        }
        let conn_id = link.conn.stable_id();
        if open.as_ref().is_none_or(|s| s.conn_id != conn_id) {
            open = link
                .open_media_stream(DATA_PRIORITY)
                .await
                .map(|stream| DataStream { stream, conn_id });
        }
        let Some(current) = open.as_mut() else {
            bump(&shared.stats.frames_not_sent);
            shared
                .quality
                .send_dropped(track, MediaKind::Data, LocalDrop::NotSent);
            continue;
        };
        if !send_on_stream(&shared, id, &mut current.stream, &frame).await {
            open = None;
        }
    }
    shared
        .data_flush
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .remove(&track);
    // A data track that has a stream ends with it: the relay unpublishes the track when the
    // stream ends cleanly, after every message on it (docs/PROTOCOL.md). A control message
    // would travel apart from the stream and could overtake its last messages. The track
    // id is free again once the relay holds the whole stream.
    if let Some(current) = open.take() {
        ended_on = finish_data_stream(&shared, current).await;
    }
    let current = shared.current_link().map(|link| link.conn.stable_id());
    if ended_on.is_some() && ended_on == current {
        shared.tracks().remove(&track);
    } else {
        unpublish(&shared, track);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbering_wraps_into_the_next_group() {
        let mut numbering = Numbering {
            group: 3,
            seq: u32::MAX,
        };
        assert_eq!(numbering.next(), (3, u32::MAX));
        assert_eq!(numbering.next(), (4, 0));
        assert_eq!(numbering.next(), (4, 1));
    }
}
