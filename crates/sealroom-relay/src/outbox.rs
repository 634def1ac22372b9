//! Everything queued towards one connection, bounded, and the tasks that write it out.
//!
//! One [`Outbox`] per connection. Forwarding pushes clones of a frame's `Bytes` into the
//! outboxes of its receivers without waiting: each outbox has its own bounded queues and its
//! own writer tasks, so a receiver that reads slowly only ever fills its own queues.
//!
//! - control messages: one ordered queue drained onto the control stream; past
//!   [`Limits::control_queue_len`] the member is removed as a slow consumer;
//! - datagrams (audio that fits, unreliable data): one queue of at most
//!   [`Limits::datagram_queue_len`]; when full the oldest is dropped (stale audio is
//!   worthless);
//! - video: one outgoing stream per (sender, track, group), each with its own queue of at
//!   most [`Limits::video_group_queue_bytes`]; a group that overflows is reset and the rest of
//!   it dropped (likewise when all video queued towards the connection would exceed
//!   [`Limits::video_queue_bytes`]); the newest [`Limits::max_open_groups_per_track`]
//!   groups of one track seen are remembered (open or ended), the oldest closed when another
//!   comes; a group whose first frame comes after a newer group's still opens unless it is
//!   older than all of those (late); a newer group gets a higher priority;
//! - reliable data: one long-lived stream per (sender, track); past
//!   [`Limits::reliable_queue_bytes`] queued over all of them the member is removed as a slow
//!   consumer (reliable data is never skipped silently);
//! - audio too large for a datagram: one stream per frame, at most
//!   [`Limits::max_audio_streams`] in flight.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use quinn::{SendDatagramError, VarInt};
use sealroom_frame::control::{ControlMessage, ErrorCode};
use sealroom_frame::envelope::{Envelope, Flags, MediaKind, MemberId, TrackId};
use sealroom_frame::stream;
use sealroom_frame::transport::{StreamCode, StreamType};
use tokio::sync::Notify;

use crate::config::Limits;
use crate::engine::{ConnId, DropReason};
use crate::metrics::Metrics;

/// The first byte of every media stream the relay opens.
const MEDIA_STREAM_HEADER: [u8; 1] = [StreamType::Media.byte()];

const CONTROL_PRIORITY: i32 = i32::MAX;
const RELIABLE_PRIORITY: i32 = i32::MAX - 1;
const AUDIO_STREAM_PRIORITY: i32 = i32::MAX - 2;

/// How long a closing connection waits for its last control messages to be acknowledged.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// A frame on its way to receivers: the received bytes, shared, never copied.
#[derive(Debug, Clone)]
pub(crate) struct Forwarded {
    /// The whole encoded frame as received.
    pub(crate) frame: Bytes,
    /// Its stream length prefix, computed once for all receivers.
    pub(crate) prefix: Bytes,
    /// The envelope.
    pub(crate) envelope: Envelope,
    /// When the relay finished receiving it.
    pub(crate) arrived: Instant,
}

impl Forwarded {
    pub(crate) fn new(frame: Bytes, envelope: Envelope, arrived: Instant) -> Self {
        let mut prefix = BytesMut::with_capacity(stream::MAX_PREFIX_LEN);
        stream::write_len_prefix(frame.len(), &mut prefix);
        Self {
            frame,
            prefix: prefix.freeze(),
            envelope,
            arrived,
        }
    }
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued for writing.
    Queued,
    /// Dropped for this receiver (already counted).
    Dropped,
    /// The receiver fell behind on a video group: the group's stream is being reset and
    /// the rest of the group dropped (already counted); the publisher should be asked for
    /// a keyframe.
    Stale,
    /// The receiver cannot keep up with reliable data: remove it.
    SlowConsumer,
}

/// Serial-number comparison of group numbers (RFC 1982 style): whether `a` is newer than `b`.
fn group_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the queue inconsistent in a way
    // that matters more than losing the connection; keep going.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct ControlState {
    queue: VecDeque<ControlMessage>,
    close: Option<Option<ErrorCode>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueueKind {
    Video,
    Reliable,
    OneShot,
}

#[derive(Debug, Default)]
struct StreamState {
    frames: VecDeque<Forwarded>,
    bytes: usize,
    finish: bool,
    reset: bool,
    done: bool,
}

/// The queue of one outgoing stream, drained by its own writer task.
#[derive(Debug)]
struct StreamQueue {
    kind: QueueKind,
    state: Mutex<StreamState>,
    notify: Notify,
}

enum Next {
    Frame(Forwarded),
    Finish,
    Reset,
    Wait,
}

impl StreamQueue {
    fn new(kind: QueueKind) -> Arc<Self> {
        Arc::new(Self {
            kind,
            state: Mutex::new(StreamState::default()),
            notify: Notify::new(),
        })
    }

    fn is_done(&self) -> bool {
        let state = lock(&self.state);
        state.done || state.reset
    }

    fn request_finish(&self) {
        lock(&self.state).finish = true;
        self.notify.notify_one();
    }

    fn request_reset(&self) {
        lock(&self.state).reset = true;
        self.notify.notify_one();
    }

    /// Make room for a newer group: finish the stream if everything queued was written,
    /// reset it if the receiver is still behind on it.
    fn evict(&self) {
        let mut state = lock(&self.state);
        if state.frames.is_empty() {
            state.finish = true;
        } else {
            state.reset = true;
        }
        drop(state);
        self.notify.notify_one();
    }

    fn reset_requested(&self) -> bool {
        lock(&self.state).reset
    }

    fn next(&self) -> Next {
        let mut state = lock(&self.state);
        if state.reset {
            return Next::Reset;
        }
        if let Some(frame) = state.frames.pop_front() {
            state.bytes -= frame.frame.len();
            return Next::Frame(frame);
        }
        if state.finish {
            Next::Finish
        } else {
            Next::Wait
        }
    }

    /// Mark the writer gone and take what it never wrote.
    fn close(&self) -> Vec<Forwarded> {
        let mut state = lock(&self.state);
        state.done = true;
        state.bytes = 0;
        state.frames.drain(..).collect()
    }

    async fn until_reset(&self) {
        while !self.reset_requested() {
            self.notify.notified().await;
        }
    }
}

#[derive(Debug)]
struct GroupEntry {
    group: u32,
    queue: Arc<StreamQueue>,
    /// The priority of its stream (newer groups higher).
    priority: i32,
}

#[derive(Debug, Default)]
struct Lanes {
    video: HashMap<(MemberId, TrackId), VecDeque<GroupEntry>>,
    reliable: HashMap<(MemberId, TrackId), Arc<StreamQueue>>,
}

/// Everything queued towards one connection.
#[derive(Debug)]
pub(crate) struct Outbox {
    pub(crate) id: ConnId,
    conn: quinn::Connection,
    limits: Limits,
    metrics: Arc<Metrics>,
    control: Mutex<ControlState>,
    control_notify: Notify,
    datagrams: Mutex<VecDeque<Forwarded>>,
    datagram_notify: Notify,
    /// The datagram writer holds a frame it took from the queue and has not yet handed to
    /// quinn (set and cleared around the hand-over; set under the queue lock).
    datagram_writing: AtomicBool,
    lanes: Mutex<Lanes>,
    depth: AtomicUsize,
    /// Frame bytes queued (every queue but the control queue).
    bytes: AtomicUsize,
    high_water: AtomicUsize,
    audio_streams: AtomicUsize,
    reliable_bytes: AtomicUsize,
    video_bytes: AtomicUsize,
    next_priority: AtomicI32,
    closed: AtomicBool,
}

impl Outbox {
    /// An outbox for `conn`; spawns its control and datagram writers.
    pub(crate) fn start(
        id: ConnId,
        conn: quinn::Connection,
        control: quinn::SendStream,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let outbox = Arc::new(Self {
            id,
            conn,
            limits,
            metrics,
            control: Mutex::new(ControlState::default()),
            control_notify: Notify::new(),
            datagrams: Mutex::new(VecDeque::new()),
            datagram_notify: Notify::new(),
            datagram_writing: AtomicBool::new(false),
            lanes: Mutex::new(Lanes::default()),
            depth: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            high_water: AtomicUsize::new(0),
            audio_streams: AtomicUsize::new(0),
            reliable_bytes: AtomicUsize::new(0),
            video_bytes: AtomicUsize::new(0),
            next_priority: AtomicI32::new(0),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(Arc::clone(&outbox).run_control(control));
        tokio::spawn(Arc::clone(&outbox).run_datagrams());
        outbox
    }

    /// Whether the connection is closing or closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// The deepest the queues have been, in frames.
    pub(crate) fn high_water(&self) -> usize {
        self.high_water.load(Ordering::Relaxed)
    }

    /// Queue a control message. `false` when the control queue is full (a slow consumer).
    #[must_use]
    pub(crate) fn send_control(&self, message: ControlMessage) -> bool {
        let mut state = lock(&self.control);
        if state.close.is_some() {
            return true;
        }
        if state.queue.len() >= self.limits.control_queue_len {
            return false;
        }
        // A member that left takes its lanes with it.
        match &message {
            ControlMessage::MemberLeft { member, .. } => self.forget_sender(*member),
            ControlMessage::TrackUnpublished { member, track } => {
                self.forget_track(*member, *track);
            }
            _ => {}
        }
        state.queue.push_back(message);
        drop(state);
        self.control_notify.notify_one();
        true
    }

    /// Send what is queued, then close the connection with `code` (`None`: normal close).
    pub(crate) fn close(&self, code: Option<ErrorCode>) {
        self.closed.store(true, Ordering::Relaxed);
        let mut state = lock(&self.control);
        if state.close.is_none() {
            state.close = Some(code);
        }
        drop(state);
        self.control_notify.notify_one();
        self.datagram_notify.notify_one();
        // Wake every stream writer so none waits forever for frames that will not come.
        let lanes = std::mem::take(&mut *lock(&self.lanes));
        for lane in lanes.video.into_values() {
            lane.iter().for_each(|g| g.queue.request_finish());
        }
        for queue in lanes.reliable.into_values() {
            queue.request_finish();
        }
    }

    async fn run_control(self: Arc<Self>, mut send: quinn::SendStream) {
        let _ = send.set_priority(CONTROL_PRIORITY);
        let mut buf = BytesMut::new();
        loop {
            let (batch, close) = {
                let mut state = lock(&self.control);
                (std::mem::take(&mut state.queue), state.close)
            };
            for message in &batch {
                if let Err(err) = message.encode_framed(&mut buf) {
                    tracing::warn!(conn = %self.id, %err, "control message not encodable");
                }
            }
            if !buf.is_empty() && !self.write_control(&mut send, &buf).await {
                // The stream is gone, or the peer does not read it and the connection is
                // being closed: close it now.
                self.closed.store(true, Ordering::Relaxed);
                self.close_connection(self.close_code().flatten());
                return;
            }
            buf.clear();
            if let Some(code) = close {
                let _ = send.finish();
                // Give the peer the chance to read the reason before the connection closes.
                let _ = tokio::time::timeout(CLOSE_LINGER, send.stopped()).await;
                self.close_connection(code);
                return;
            }
            if batch.is_empty() {
                self.control_notify.notified().await;
            }
        }
    }

    /// The close requested, if any (`Some(None)` is a normal close).
    fn close_code(&self) -> Option<Option<ErrorCode>> {
        lock(&self.control).close
    }

    fn close_connection(&self, code: Option<ErrorCode>) {
        let close_code = code.map_or(0, ErrorCode::close_code);
        let reason = code.map_or("", ErrorCode::label);
        self.conn
            .close(VarInt::from_u32(close_code), reason.as_bytes());
    }

    /// Write to the control stream; once a close is requested, the write gets
    /// [`CLOSE_LINGER`] more to finish, so a peer that does not read cannot hold its
    /// connection open. `false` when the write failed or ran out of time.
    async fn write_control(&self, send: &mut quinn::SendStream, buf: &[u8]) -> bool {
        let write = send.write_all(buf);
        tokio::pin!(write);
        loop {
            if self.close_code().is_some() {
                return matches!(
                    tokio::time::timeout(CLOSE_LINGER, &mut write).await,
                    Ok(Ok(()))
                );
            }
            tokio::select! {
                result = &mut write => return result.is_ok(),
                () = self.control_notify.notified() => {}
            }
        }
    }

    /// One frame of `len` bytes was queued.
    fn queued(&self, len: usize) {
        let depth = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        if depth > self.high_water.fetch_max(depth, Ordering::Relaxed) {
            self.metrics.queue_depth(depth);
        }
        let total = self.bytes.fetch_add(len, Ordering::Relaxed) + len;
        self.metrics.bytes_queued(len, total);
    }

    /// `frames` frames of `bytes` bytes in all left the queues.
    fn dequeued(&self, frames: usize, bytes: usize) {
        self.depth.fetch_sub(frames, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.metrics.bytes_dequeued(bytes);
    }

    fn drop_frames(&self, frames: &[Forwarded], reason: DropReason) {
        if !frames.is_empty() {
            let bytes = frames.iter().map(|f| f.frame.len()).sum();
            self.dequeued(frames.len(), bytes);
            self.metrics.frames_dropped_by(reason, frames.len() as u64);
        }
    }

    fn forwarded(&self, frame: &Forwarded) {
        self.metrics.frame_forwarded(
            frame.envelope.kind,
            frame.frame.len(),
            frame.arrived.elapsed().as_secs_f64(),
        );
    }

    /// Queue `frame` for this receiver on the path its kind takes.
    pub(crate) fn push(self: &Arc<Self>, frame: &Forwarded) -> Pushed {
        if self.is_closed() {
            self.metrics.frame_dropped(DropReason::ReceiverGone);
            return Pushed::Dropped;
        }
        let envelope = &frame.envelope;
        match envelope.kind {
            MediaKind::Audio => self.push_datagram_or_stream(frame),
            MediaKind::Data if envelope.flags.contains(Flags::UNRELIABLE) => {
                self.push_datagram_or_stream(frame)
            }
            MediaKind::Data => self.push_reliable(frame),
            MediaKind::Video => self.push_video(frame),
        }
    }

    fn push_datagram_or_stream(self: &Arc<Self>, frame: &Forwarded) -> Pushed {
        let fits = self
            .conn
            .max_datagram_size()
            .is_some_and(|max| frame.frame.len() <= max);
        if fits {
            let mut queue = lock(&self.datagrams);
            // Fast path: nothing waits before this frame and quinn's datagram buffer has room
            // for it without dropping an older one, so hand it over here and spare the writer
            // task a wake-up per frame (the common case: a receiver that keeps up). The order
            // of datagrams is kept: the queue is empty and the writer holds none.
            if queue.is_empty()
                && !self.datagram_writing.load(Ordering::Acquire)
                && self.conn.datagram_send_buffer_space() >= frame.frame.len()
                && self.conn.send_datagram(frame.frame.clone()).is_ok()
            {
                drop(queue);
                self.forwarded(frame);
                return Pushed::Queued;
            }
            let dropped = if queue.len() >= self.limits.datagram_queue_len.max(1) {
                queue.pop_front()
            } else {
                None
            };
            // Count before the frame becomes visible to the writer, which counts it out.
            self.queued(frame.frame.len());
            queue.push_back(frame.clone());
            drop(queue);
            if let Some(dropped) = dropped {
                self.drop_frames(&[dropped], DropReason::QueueFull);
            }
            self.datagram_notify.notify_one();
            return Pushed::Queued;
        }
        // Too large for a datagram: a stream of its own.
        let in_flight = self.audio_streams.fetch_add(1, Ordering::Relaxed);
        if in_flight >= self.limits.max_audio_streams {
            self.audio_streams.fetch_sub(1, Ordering::Relaxed);
            self.metrics.frame_dropped(DropReason::TooManyStreams);
            return Pushed::Dropped;
        }
        let queue = StreamQueue::new(QueueKind::OneShot);
        {
            let mut state = lock(&queue.state);
            state.bytes = frame.frame.len();
            state.frames.push_back(frame.clone());
            state.finish = true;
        }
        self.queued(frame.frame.len());
        tokio::spawn(Arc::clone(self).run_stream(queue, AUDIO_STREAM_PRIORITY));
        Pushed::Queued
    }

    fn push_reliable(self: &Arc<Self>, frame: &Forwarded) -> Pushed {
        let len = frame.frame.len();
        let queued = self.reliable_bytes.fetch_add(len, Ordering::Relaxed);
        if queued.saturating_add(len) > self.limits.reliable_queue_bytes {
            self.reliable_bytes.fetch_sub(len, Ordering::Relaxed);
            self.metrics.frame_dropped(DropReason::SlowConsumer);
            return Pushed::SlowConsumer;
        }
        let key = (frame.envelope.sender, frame.envelope.track);
        let mut lanes = lock(&self.lanes);
        let queue = match lanes.reliable.get(&key) {
            Some(queue) if !queue.is_done() => Arc::clone(queue),
            _ => {
                let queue = StreamQueue::new(QueueKind::Reliable);
                lanes.reliable.insert(key, Arc::clone(&queue));
                tokio::spawn(Arc::clone(self).run_stream(Arc::clone(&queue), RELIABLE_PRIORITY));
                queue
            }
        };
        drop(lanes);
        {
            let mut state = lock(&queue.state);
            if state.done {
                // Its writer ended (the connection is going) after the lookup.
                drop(state);
                self.reliable_bytes.fetch_sub(len, Ordering::Relaxed);
                self.metrics.frame_dropped(DropReason::ReceiverGone);
                return Pushed::Dropped;
            }
            state.bytes += len;
            self.queued(len);
            state.frames.push_back(frame.clone());
        }
        queue.notify.notify_one();
        Pushed::Queued
    }

    fn push_video(self: &Arc<Self>, frame: &Forwarded) -> Pushed {
        let envelope = &frame.envelope;
        let key = (envelope.sender, envelope.track);
        let kept = self.limits.max_open_groups_per_track.max(1);
        let mut lanes = lock(&self.lanes);
        // The lane remembers the newest `kept` groups seen, oldest first, open or ended.
        let lane = lanes.video.entry(key).or_default();
        let queue = if let Some(entry) = lane.iter().find(|g| g.group == envelope.group) {
            Arc::clone(&entry.queue)
        } else {
            // Where the group goes among those remembered. The publisher's groups reach the
            // relay on independent streams, so a group's first frame may come after the
            // first frame of a newer group: it opens a stream all the same, below the newer
            // one in priority, unless it is older than every group remembered and there is
            // no room for it (the receiver is that far past it: late).
            let at = lane
                .iter()
                .position(|g| group_newer(g.group, envelope.group))
                .unwrap_or(lane.len());
            if at == 0 && lane.len() >= kept {
                drop(lanes);
                self.metrics.frame_dropped(DropReason::LateGroup);
                return Pushed::Dropped;
            }
            let priority = match lane.get(at) {
                Some(newer) => newer.priority.saturating_sub(1),
                None => self.next_priority.fetch_add(1, Ordering::Relaxed),
            };
            let queue = StreamQueue::new(QueueKind::Video);
            lane.insert(
                at,
                GroupEntry {
                    group: envelope.group,
                    queue: Arc::clone(&queue),
                    priority,
                },
            );
            while lane.len() > kept {
                if let Some(oldest) = lane.pop_front() {
                    oldest.queue.evict();
                }
            }
            tokio::spawn(Arc::clone(self).run_stream(Arc::clone(&queue), priority));
            queue
        };
        drop(lanes);
        let mut state = lock(&queue.state);
        if state.reset || state.done || state.finish {
            drop(state);
            self.metrics.frame_dropped(DropReason::StaleGroup);
            return Pushed::Dropped;
        }
        let len = frame.frame.len();
        let total = self.video_bytes.fetch_add(len, Ordering::Relaxed);
        if state.bytes.saturating_add(len) > self.limits.video_group_queue_bytes
            || total.saturating_add(len) > self.limits.video_queue_bytes
        {
            // The receiver fell behind on this group: the rest of it is worthless.
            self.video_bytes.fetch_sub(len, Ordering::Relaxed);
            state.reset = true;
            drop(state);
            self.metrics.frame_dropped(DropReason::StaleGroup);
            queue.notify.notify_one();
            return Pushed::Stale;
        }
        state.bytes += len;
        self.queued(len);
        state.frames.push_back(frame.clone());
        if envelope.flags.contains(Flags::END_OF_GROUP) {
            state.finish = true;
        }
        drop(state);
        queue.notify.notify_one();
        Pushed::Queued
    }

    /// The publisher finished (or, with `reset`, abandoned) the stream of a video group.
    pub(crate) fn end_group(&self, sender: MemberId, track: TrackId, group: u32, reset: bool) {
        let lanes = lock(&self.lanes);
        let Some(entry) = lanes
            .video
            .get(&(sender, track))
            .and_then(|lane| lane.iter().find(|g| g.group == group))
        else {
            return;
        };
        if reset {
            entry.queue.request_reset();
        } else {
            entry.queue.request_finish();
        }
    }

    fn forget_sender(&self, sender: MemberId) {
        let mut lanes = lock(&self.lanes);
        lanes.video.retain(|(member, _), lane| {
            if *member == sender {
                lane.iter().for_each(|g| g.queue.request_finish());
            }
            *member != sender
        });
        lanes.reliable.retain(|(member, _), queue| {
            if *member == sender {
                queue.request_finish();
            }
            *member != sender
        });
    }

    fn forget_track(&self, sender: MemberId, track: TrackId) {
        let mut lanes = lock(&self.lanes);
        if let Some(lane) = lanes.video.remove(&(sender, track)) {
            lane.iter().for_each(|g| g.queue.request_finish());
        }
        if let Some(queue) = lanes.reliable.remove(&(sender, track)) {
            queue.request_finish();
        }
    }

    async fn run_datagrams(self: Arc<Self>) {
        loop {
            let next = {
                let mut queue = lock(&self.datagrams);
                let next = queue.pop_front();
                self.datagram_writing
                    .store(next.is_some(), Ordering::Release);
                next
            };
            let Some(frame) = next else {
                if self.is_closed() {
                    return;
                }
                self.datagram_notify.notified().await;
                continue;
            };
            self.dequeued(1, frame.frame.len());
            let sent = self.conn.send_datagram_wait(frame.frame.clone()).await;
            self.datagram_writing.store(false, Ordering::Release);
            match sent {
                Ok(()) => self.forwarded(&frame),
                Err(SendDatagramError::TooLarge) => {
                    // The path MTU shrank after the frame was queued.
                    self.metrics.frame_dropped(DropReason::TooLarge);
                }
                Err(err) => {
                    if matches!(err, SendDatagramError::ConnectionLost(_)) {
                        self.closed.store(true, Ordering::Relaxed);
                    }
                    let rest: Vec<Forwarded> = std::mem::take(&mut *lock(&self.datagrams)).into();
                    self.metrics.frame_dropped(DropReason::ReceiverGone);
                    self.drop_frames(&rest, DropReason::ReceiverGone);
                    return;
                }
            }
        }
    }

    async fn run_stream(self: Arc<Self>, queue: Arc<StreamQueue>, priority: i32) {
        let opened = tokio::select! {
            stream = self.conn.open_uni() => stream.ok(),
            () = queue.until_reset() => None,
        };
        if let Some(mut send) = opened {
            let _ = send.set_priority(priority);
            self.write_stream(&queue, &mut send).await;
        }
        let left = queue.close();
        let reason = if queue.reset_requested() {
            DropReason::StaleGroup
        } else {
            DropReason::ReceiverGone
        };
        self.drop_frames(&left, reason);
        match queue.kind {
            QueueKind::OneShot => {
                self.audio_streams.fetch_sub(1, Ordering::Relaxed);
            }
            QueueKind::Reliable | QueueKind::Video => {}
        }
        if let Some(counter) = self.byte_counter(queue.kind) {
            let bytes: usize = left.iter().map(|f| f.frame.len()).sum();
            counter.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// The per-connection byte count a kind of stream queue adds to.
    fn byte_counter(&self, kind: QueueKind) -> Option<&AtomicUsize> {
        match kind {
            QueueKind::Reliable => Some(&self.reliable_bytes),
            QueueKind::Video => Some(&self.video_bytes),
            QueueKind::OneShot => None,
        }
    }

    async fn write_stream(&self, queue: &StreamQueue, send: &mut quinn::SendStream) {
        let mut first = true;
        loop {
            let frame = match queue.next() {
                Next::Frame(frame) => frame,
                Next::Finish => {
                    let _ = send.finish();
                    return;
                }
                Next::Reset => {
                    let _ = send.reset(VarInt::from_u32(StreamCode::StaleGroup.code()));
                    return;
                }
                Next::Wait => {
                    queue.notify.notified().await;
                    continue;
                }
            };
            self.dequeued(1, frame.frame.len());
            if let Some(counter) = self.byte_counter(queue.kind) {
                counter.fetch_sub(frame.frame.len(), Ordering::Relaxed);
            }
            let header = Bytes::from_static(&MEDIA_STREAM_HEADER);
            let mut chunks = [
                if first { header } else { Bytes::new() },
                frame.prefix.clone(),
                frame.frame.clone(),
            ];
            first = false;
            let written = {
                let write = send.write_all_chunks(&mut chunks);
                tokio::pin!(write);
                loop {
                    tokio::select! {
                        result = &mut write => break Some(result.is_ok()),
                        () = queue.notify.notified() => {
                            if queue.reset_requested() {
                                break None;
                            }
                        }
                    }
                }
            };
            match written {
                Some(true) => self.forwarded(&frame),
                Some(false) => {
                    self.metrics.frame_dropped(DropReason::ReceiverGone);
                    return;
                }
                None => {
                    // Reset while the receiver was not reading: this frame is stale too.
                    self.metrics.frame_dropped(DropReason::StaleGroup);
                    let _ = send.reset(VarInt::from_u32(StreamCode::StaleGroup.code()));
                    return;
                }
            }
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.metrics.connection_ended(self.high_water());
        // Whatever is still counted as queued (frames pushed while the connection was
        // going) goes with the outbox.
        self.metrics
            .bytes_dequeued(self.bytes.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_order_wraps_around() {
        assert!(group_newer(2, 1));
        assert!(!group_newer(1, 2));
        assert!(!group_newer(5, 5));
        assert!(group_newer(0, u32::MAX));
        assert!(!group_newer(u32::MAX, 0));
    }
}
