//! What the relay sends towards one connection, decided without I/O: the bounded queues, the
//! slow-receiver policy per kind, and the byte accounting.
//!
//! One [`Egress`] per connection. Forwarding [`push`](Egress::push)es a frame; the egress
//! queues it on the path its kind takes or drops it, and says what the driver must do through
//! [`poll_action`](Egress::poll_action): open a stream, wake a writer, count a drop. The
//! driver's writers pull what to write with [`poll_datagram`](Egress::poll_datagram) and
//! [`poll_stream`](Egress::poll_stream) and report back what QUIC did with it. No socket,
//! task or clock is touched here.
//!
//! - datagrams (audio that fits, unreliable data): one queue of at most
//!   [`Limits::datagram_queue_len`]; when full the oldest is dropped (stale audio is
//!   worthless); when nothing is queued the frame may go to QUIC at once ([`Pushed::SendNow`]);
//! - video: one outgoing stream per (sender, track, group), each with its own queue of at
//!   most [`Limits::video_group_queue_bytes`]; a group that overflows is reset and the rest of
//!   it dropped (likewise when all video queued towards the connection would exceed
//!   [`Limits::video_queue_bytes`]); the newest [`Limits::max_open_groups_per_track`]
//!   groups of one track seen are remembered (open or ended), the oldest closed when another
//!   comes (finished if all of it was written, reset if not); a group whose first frame comes
//!   after a newer group's still opens unless it is older than all of those (late); a newer
//!   group gets a higher priority;
//! - reliable data: one long-lived stream per (sender, track); past
//!   [`Limits::reliable_queue_bytes`] queued over all of them the receiver is a slow
//!   consumer (reliable data is never skipped silently);
//! - audio too large for a datagram: one stream per frame, at most
//!   [`Limits::max_audio_streams`] in flight.
//!
//! Control messages have their own queue, [`ControlQueue`], bounded by
//! [`Limits::control_queue_len`].

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use sealroom_frame::control::{ControlMessage, ErrorCode};
use sealroom_frame::envelope::{Envelope, Flags, MediaKind, MemberId, TrackId};
use sealroom_frame::stream;
use sealroom_frame::transport::StreamCode;

use crate::config::Limits;
use crate::engine::DropReason;

/// The priority of the stream that carries reliable data.
pub(crate) const RELIABLE_PRIORITY: i32 = i32::MAX - 1;
/// The priority of a stream that carries one audio frame too large for a datagram.
pub(crate) const AUDIO_STREAM_PRIORITY: i32 = i32::MAX - 2;

/// A frame on its way to receivers: the received bytes, shared, never copied.
#[derive(Debug, Clone)]
pub(crate) struct Forwarded {
    /// The whole encoded frame as received.
    pub(crate) frame: Bytes,
    /// Its stream length prefix, computed once for all receivers; empty for audio, which
    /// goes in datagrams (see [`Forwarded::stream_prefix`]).
    prefix: Bytes,
    /// The envelope.
    pub(crate) envelope: Envelope,
    /// When the relay finished receiving it.
    pub(crate) arrived: Instant,
}

impl Forwarded {
    pub(crate) fn new(frame: Bytes, envelope: Envelope, arrived: Instant) -> Self {
        // Audio goes in datagrams: building its prefix would cost two allocations per
        // incoming frame for the rare frame too large for a receiver's datagrams, which
        // builds its own (`stream_prefix`). Video and reliable data always take streams.
        let prefix = if envelope.kind == MediaKind::Audio {
            Bytes::new()
        } else {
            prefix_of(frame.len())
        };
        Self {
            frame,
            prefix,
            envelope,
            arrived,
        }
    }

    /// The length prefix that frames this frame on a stream.
    pub(crate) fn stream_prefix(&self) -> Bytes {
        if self.prefix.is_empty() {
            prefix_of(self.frame.len())
        } else {
            self.prefix.clone()
        }
    }

    fn len(&self) -> usize {
        self.frame.len()
    }
}

/// The stream length prefix of a `len`-byte frame.
fn prefix_of(len: usize) -> Bytes {
    let mut prefix = BytesMut::with_capacity(stream::MAX_PREFIX_LEN);
    stream::write_len_prefix(len, &mut prefix);
    prefix.freeze()
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued for writing.
    Queued,
    /// Nothing is queued before this datagram and QUIC has room for it: hand it over now.
    /// Should QUIC refuse it, queue it with [`Egress::queue_datagram`].
    SendNow,
    /// Dropped for this receiver (a [`Action::Drop`] counts it).
    Dropped,
    /// The receiver fell behind on a video group: the group's stream is being reset and
    /// the rest of the group dropped (counted); the publisher should be asked for a keyframe.
    Stale,
    /// The receiver cannot keep up with reliable data: remove it as a slow consumer.
    SlowConsumer,
}

/// What the connection's datagram path can take, asked only when the answer matters.
pub(crate) trait DatagramPath {
    /// The largest datagram the path carries now; `None` when datagrams are off.
    fn max_datagram_size(&self) -> Option<usize>;
    /// Bytes QUIC's datagram send buffer takes before it drops an older datagram.
    fn send_buffer_space(&self) -> usize;
}

/// Names one outgoing stream of a connection (not a QUIC stream id: the egress names a
/// stream before QUIC opens it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct StreamId(u64);

/// What the driver must do after a call into the egress; drained with
/// [`Egress::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// A datagram was queued: wake the datagram writer.
    WakeDatagrams,
    /// Open a unidirectional stream at `priority` and write `stream` on it
    /// ([`Egress::poll_stream`]) until it says to finish or reset.
    Open {
        /// The stream.
        stream: StreamId,
        /// Its QUIC send priority (higher goes first).
        priority: i32,
    },
    /// Something changed for the writer of `stream` (a frame, a finish or a reset).
    Wake(StreamId),
    /// A frame of `len` bytes was queued; the connection has `total` bytes queued, and
    /// `depth` frames, a new high-water mark, when `new_high` is set.
    Queued {
        /// The frame's length.
        len: usize,
        /// All bytes queued towards the connection.
        total: usize,
        /// The new deepest the queues have been, in frames.
        new_high: Option<usize>,
    },
    /// `bytes` of queued frames left the queues (handed to a writer).
    Dequeued {
        /// How many bytes.
        bytes: usize,
    },
    /// `frames` frames were dropped for this receiver with `reason`; `queued_bytes` of them
    /// had been counted as queued.
    Drop {
        /// Why.
        reason: DropReason,
        /// How many frames.
        frames: usize,
        /// Of their bytes, those counted as queued (0 for a frame never queued).
        queued_bytes: usize,
    },
}

/// What a stream's writer does next.
#[derive(Debug, Clone)]
pub(crate) enum StreamWrite {
    /// Write `frame` (its length prefix, then the frame), after the media stream's type
    /// byte when `first`.
    Frame {
        /// The frame.
        frame: Forwarded,
        /// Whether it is the stream's first frame.
        first: bool,
    },
    /// Finish the stream: everything was written.
    Finish,
    /// Reset the stream with `code`; what was queued on it is dropped.
    Reset(StreamCode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Video,
    Reliable,
    OneShot,
}

#[derive(Debug)]
struct StreamState {
    kind: StreamKind,
    frames: VecDeque<Forwarded>,
    bytes: usize,
    finish: bool,
    reset: Option<StreamCode>,
    started: bool,
}

impl StreamState {
    fn new(kind: StreamKind) -> Self {
        Self {
            kind,
            frames: VecDeque::new(),
            bytes: 0,
            finish: false,
            reset: None,
            started: false,
        }
    }
}

#[derive(Debug)]
struct GroupEntry {
    group: u32,
    stream: StreamId,
    /// The priority of its stream (newer groups higher).
    priority: i32,
}

/// Serial-number comparison of group numbers (RFC 1982 style): whether `a` is newer than `b`.
fn group_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

/// The outbound policy of one connection (see the module docs).
#[derive(Debug)]
pub(crate) struct Egress {
    limits: Limits,
    closed: bool,
    datagrams: VecDeque<Forwarded>,
    /// The datagram writer holds a frame it took from the queue and has not yet handed to
    /// QUIC.
    datagram_writing: bool,
    /// Open streams, until their writer reports them closed.
    streams: HashMap<StreamId, StreamState>,
    next_stream: u64,
    /// Per (sender, track): the newest groups seen, oldest first, open or ended.
    video: HashMap<(MemberId, TrackId), VecDeque<GroupEntry>>,
    reliable: HashMap<(MemberId, TrackId), StreamId>,
    next_priority: i32,
    audio_streams: usize,
    reliable_bytes: usize,
    video_bytes: usize,
    /// Frames queued (every queue but the control queue).
    depth: usize,
    /// Frame bytes queued.
    bytes: usize,
    high_water: usize,
    actions: VecDeque<Action>,
}

impl Egress {
    /// An empty egress under `limits`.
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            closed: false,
            datagrams: VecDeque::new(),
            datagram_writing: false,
            streams: HashMap::new(),
            next_stream: 0,
            video: HashMap::new(),
            reliable: HashMap::new(),
            next_priority: 0,
            audio_streams: 0,
            reliable_bytes: 0,
            video_bytes: 0,
            depth: 0,
            bytes: 0,
            high_water: 0,
            actions: VecDeque::new(),
        }
    }

    /// The next thing the driver must do; call until `None` after every other call.
    #[must_use]
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Whether the connection is closing or closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// The deepest the queues have been, in frames.
    pub(crate) fn high_water(&self) -> usize {
        self.high_water
    }

    /// Frame bytes queued now.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.bytes
    }

    /// The connection is going: nothing more is queued, and every stream finishes once
    /// what it holds is written.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.actions.push_back(Action::WakeDatagrams);
        let video = std::mem::take(&mut self.video);
        let reliable = std::mem::take(&mut self.reliable);
        for entry in video.into_values().flatten() {
            self.request_finish(entry.stream);
        }
        for stream in reliable.into_values() {
            self.request_finish(stream);
        }
    }

    /// The connection cannot be written any more: nothing more is queued (what is queued
    /// goes as its writers fail).
    pub(crate) fn connection_lost(&mut self) {
        self.closed = true;
    }

    /// Queue `frame` for this receiver on the path its kind takes.
    pub(crate) fn push(&mut self, frame: &Forwarded, path: &impl DatagramPath) -> Pushed {
        if self.closed {
            self.dropped(DropReason::ReceiverGone, 1, 0);
            return Pushed::Dropped;
        }
        let envelope = &frame.envelope;
        match envelope.kind {
            MediaKind::Audio => self.push_datagram_or_stream(frame, path),
            MediaKind::Data if envelope.flags.contains(Flags::UNRELIABLE) => {
                self.push_datagram_or_stream(frame, path)
            }
            MediaKind::Data => self.push_reliable(frame),
            MediaKind::Video => self.push_video(frame),
        }
    }

    fn push_datagram_or_stream(&mut self, frame: &Forwarded, path: &impl DatagramPath) -> Pushed {
        let fits = path
            .max_datagram_size()
            .is_some_and(|max| frame.len() <= max);
        if !fits {
            return self.push_oneshot(frame);
        }
        // Nothing waits before this frame and QUIC's datagram buffer has room for it without
        // dropping an older one: the order of datagrams is kept if it goes now.
        if self.datagrams.is_empty()
            && !self.datagram_writing
            && path.send_buffer_space() >= frame.len()
        {
            return Pushed::SendNow;
        }
        self.queue_datagram(frame.clone());
        Pushed::Queued
    }

    /// Queue a datagram; when the queue is full the oldest is dropped (stale audio is
    /// worthless).
    pub(crate) fn queue_datagram(&mut self, frame: Forwarded) {
        let dropped = if self.datagrams.len() >= self.limits.datagram_queue_len.max(1) {
            self.datagrams.pop_front()
        } else {
            None
        };
        self.queued(frame.len());
        self.datagrams.push_back(frame);
        if let Some(dropped) = dropped {
            self.left(dropped.len());
            self.dropped(DropReason::QueueFull, 1, dropped.len());
        }
        self.actions.push_back(Action::WakeDatagrams);
    }

    /// Too large for a datagram: a stream of its own.
    fn push_oneshot(&mut self, frame: &Forwarded) -> Pushed {
        if self.audio_streams >= self.limits.max_audio_streams {
            self.dropped(DropReason::TooManyStreams, 1, 0);
            return Pushed::Dropped;
        }
        self.audio_streams += 1;
        let stream = self.open(StreamKind::OneShot, AUDIO_STREAM_PRIORITY);
        self.enqueue(stream, frame);
        self.request_finish(stream);
        Pushed::Queued
    }

    fn push_reliable(&mut self, frame: &Forwarded) -> Pushed {
        let len = frame.len();
        if self.reliable_bytes.saturating_add(len) > self.limits.reliable_queue_bytes {
            self.dropped(DropReason::SlowConsumer, 1, 0);
            return Pushed::SlowConsumer;
        }
        let key = (frame.envelope.sender, frame.envelope.track);
        let live = self
            .reliable
            .get(&key)
            .copied()
            .filter(|stream| self.streams.get(stream).is_some_and(|s| s.reset.is_none()));
        let stream = match live {
            Some(stream) => stream,
            None => {
                let stream = self.open(StreamKind::Reliable, RELIABLE_PRIORITY);
                self.reliable.insert(key, stream);
                stream
            }
        };
        self.reliable_bytes += len;
        self.enqueue(stream, frame);
        Pushed::Queued
    }

    fn push_video(&mut self, frame: &Forwarded) -> Pushed {
        let Some(stream) = self.video_stream(&frame.envelope) else {
            self.dropped(DropReason::LateGroup, 1, 0);
            return Pushed::Dropped;
        };
        let Some(state) = self.streams.get_mut(&stream) else {
            // Its writer is gone.
            self.dropped(DropReason::StaleGroup, 1, 0);
            return Pushed::Dropped;
        };
        if state.reset.is_some() || state.finish {
            self.dropped(DropReason::StaleGroup, 1, 0);
            return Pushed::Dropped;
        }
        let len = frame.len();
        if state.bytes.saturating_add(len) > self.limits.video_group_queue_bytes
            || self.video_bytes.saturating_add(len) > self.limits.video_queue_bytes
        {
            // The receiver fell behind on this group: the rest of it is worthless.
            self.request_reset(stream, StreamCode::StaleGroup);
            self.dropped(DropReason::StaleGroup, 1, 0);
            return Pushed::Stale;
        }
        self.video_bytes += len;
        self.enqueue(stream, frame);
        if frame.envelope.flags.contains(Flags::END_OF_GROUP) {
            self.request_finish(stream);
        }
        Pushed::Queued
    }

    /// The stream of the frame's group; opened when the group is new. `None` when the group
    /// is late: older than every group remembered, with no place free.
    fn video_stream(&mut self, envelope: &Envelope) -> Option<StreamId> {
        let key = (envelope.sender, envelope.track);
        let kept = self.limits.max_open_groups_per_track.max(1);
        let lane = self.video.entry(key).or_default();
        if let Some(entry) = lane.iter().find(|g| g.group == envelope.group) {
            return Some(entry.stream);
        }
        // Where the group goes among those remembered. The publisher's groups reach the
        // relay on independent streams, so a group's first frame may come after the first
        // frame of a newer group: it opens a stream all the same, below the newer one in
        // priority, unless it is older than every group remembered and there is no room for
        // it (the receiver is that far past it: late).
        let at = lane
            .iter()
            .position(|g| group_newer(g.group, envelope.group))
            .unwrap_or(lane.len());
        if at == 0 && lane.len() >= kept {
            return None;
        }
        let priority = match lane.get(at) {
            Some(newer) => newer.priority.saturating_sub(1),
            None => {
                let priority = self.next_priority;
                self.next_priority = self.next_priority.wrapping_add(1);
                priority
            }
        };
        let stream = self.open(StreamKind::Video, priority);
        let lane = self.video.entry(key).or_default();
        lane.insert(
            at,
            GroupEntry {
                group: envelope.group,
                stream,
                priority,
            },
        );
        let mut evicted = Vec::new();
        while lane.len() > kept {
            evicted.extend(lane.pop_front().map(|oldest| oldest.stream));
        }
        for oldest in evicted {
            self.evict(oldest);
        }
        Some(stream)
    }

    /// Make room for a newer group: finish the stream if everything queued was handed to
    /// its writer (it may still be writing the last frame: that frame is delivered), reset
    /// it if the receiver is still behind on it.
    fn evict(&mut self, stream: StreamId) {
        let behind = self
            .streams
            .get(&stream)
            .is_some_and(|state| !state.frames.is_empty());
        if behind {
            self.request_reset(stream, StreamCode::StaleGroup);
        } else {
            self.request_finish(stream);
        }
    }

    /// The publisher finished (or, with `reset`, abandoned) the stream of a video group.
    pub(crate) fn end_group(&mut self, sender: MemberId, track: TrackId, group: u32, reset: bool) {
        let Some(stream) = self
            .video
            .get(&(sender, track))
            .and_then(|lane| lane.iter().find(|g| g.group == group))
            .map(|entry| entry.stream)
        else {
            return;
        };
        if reset {
            // The publisher abandoned the group: pass its reset on as such. Its next group
            // starts with a keyframe, so receivers need not ask for one (they do on
            // `StaleGroup`, a group the relay gave up on for them).
            self.request_reset(stream, StreamCode::GroupReset);
        } else {
            self.request_finish(stream);
        }
    }

    /// A member left: its lanes go, each stream finishing what it holds.
    pub(crate) fn forget_sender(&mut self, sender: MemberId) {
        let mut ending = Vec::new();
        self.video.retain(|(member, _), lane| {
            if *member == sender {
                ending.extend(lane.iter().map(|g| g.stream));
            }
            *member != sender
        });
        self.reliable.retain(|(member, _), stream| {
            if *member == sender {
                ending.push(*stream);
            }
            *member != sender
        });
        for stream in ending {
            self.request_finish(stream);
        }
    }

    /// A member unpublished a track: its lanes go, each stream finishing what it holds.
    pub(crate) fn forget_track(&mut self, sender: MemberId, track: TrackId) {
        let mut ending = Vec::new();
        if let Some(lane) = self.video.remove(&(sender, track)) {
            ending.extend(lane.iter().map(|g| g.stream));
        }
        ending.extend(self.reliable.remove(&(sender, track)));
        for stream in ending {
            self.request_finish(stream);
        }
    }

    /// The next datagram to hand to QUIC; `None` when none is queued. Until
    /// [`datagram_sent`](Self::datagram_sent) no datagram takes the fast path.
    pub(crate) fn poll_datagram(&mut self) -> Option<Forwarded> {
        let next = self.datagrams.pop_front();
        self.datagram_writing = next.is_some();
        if let Some(frame) = &next {
            self.left(frame.len());
            self.actions
                .push_back(Action::Dequeued { bytes: frame.len() });
        }
        next
    }

    /// QUIC took (or refused, with `TooLarge`) the datagram from
    /// [`poll_datagram`](Self::poll_datagram).
    pub(crate) fn datagram_sent(&mut self) {
        self.datagram_writing = false;
    }

    /// QUIC can send no more datagrams (the connection is lost, or datagrams are off): the
    /// one being written and all queued are dropped.
    pub(crate) fn datagrams_failed(&mut self, connection_lost: bool) {
        self.datagram_writing = false;
        if connection_lost {
            self.closed = true;
        }
        self.dropped(DropReason::ReceiverGone, 1, 0);
        let rest = std::mem::take(&mut self.datagrams);
        self.drop_queued(rest, DropReason::ReceiverGone);
    }

    /// What the writer of `stream` does next; `None`: wait for a
    /// [`Action::Wake`].
    pub(crate) fn poll_stream(&mut self, stream: StreamId) -> Option<StreamWrite> {
        let state = self.streams.get_mut(&stream)?;
        if let Some(code) = state.reset {
            return Some(StreamWrite::Reset(code));
        }
        let Some(frame) = state.frames.pop_front() else {
            return state.finish.then_some(StreamWrite::Finish);
        };
        let len = frame.len();
        state.bytes -= len;
        let first = !state.started;
        state.started = true;
        let kind = state.kind;
        if let Some(bytes) = self.kind_bytes(kind) {
            *bytes -= len;
        }
        self.left(len);
        self.actions.push_back(Action::Dequeued { bytes: len });
        Some(StreamWrite::Frame { frame, first })
    }

    /// Whether the receiver's `stream` is to be reset (asked while a write on it waits).
    pub(crate) fn reset_requested(&self, stream: StreamId) -> bool {
        self.streams
            .get(&stream)
            .is_some_and(|state| state.reset.is_some())
    }

    /// The writer of `stream` ended (finished, reset, or the connection is gone): what it
    /// never wrote is dropped.
    pub(crate) fn stream_closed(&mut self, stream: StreamId) {
        let Some(state) = self.streams.remove(&stream) else {
            return;
        };
        let reason = if state.reset.is_some() {
            DropReason::StaleGroup
        } else {
            DropReason::ReceiverGone
        };
        if let Some(bytes) = self.kind_bytes(state.kind) {
            *bytes -= state.bytes;
        }
        if state.kind == StreamKind::OneShot {
            self.audio_streams -= 1;
        }
        self.drop_queued(state.frames, reason);
    }

    fn open(&mut self, kind: StreamKind, priority: i32) -> StreamId {
        let stream = StreamId(self.next_stream);
        self.next_stream += 1;
        self.streams.insert(stream, StreamState::new(kind));
        self.actions.push_back(Action::Open { stream, priority });
        stream
    }

    /// Queue `frame` on an open stream; the kind's byte count is the caller's.
    fn enqueue(&mut self, stream: StreamId, frame: &Forwarded) {
        if let Some(state) = self.streams.get_mut(&stream) {
            state.bytes += frame.len();
            state.frames.push_back(frame.clone());
            self.queued(frame.len());
            self.actions.push_back(Action::Wake(stream));
        }
    }

    fn request_finish(&mut self, stream: StreamId) {
        if let Some(state) = self.streams.get_mut(&stream) {
            state.finish = true;
            self.actions.push_back(Action::Wake(stream));
        }
    }

    fn request_reset(&mut self, stream: StreamId, code: StreamCode) {
        if let Some(state) = self.streams.get_mut(&stream) {
            state.reset.get_or_insert(code);
            self.actions.push_back(Action::Wake(stream));
        }
    }

    /// The per-connection byte count a kind of stream adds to (one-shot streams have none:
    /// their count is of streams).
    fn kind_bytes(&mut self, kind: StreamKind) -> Option<&mut usize> {
        match kind {
            StreamKind::Reliable => Some(&mut self.reliable_bytes),
            StreamKind::Video => Some(&mut self.video_bytes),
            StreamKind::OneShot => None,
        }
    }

    /// One frame of `len` bytes was queued.
    fn queued(&mut self, len: usize) {
        self.depth += 1;
        let new_high = (self.depth > self.high_water).then_some(self.depth);
        self.high_water = self.high_water.max(self.depth);
        self.bytes += len;
        self.actions.push_back(Action::Queued {
            len,
            total: self.bytes,
            new_high,
        });
    }

    /// One frame of `len` bytes left the queues.
    fn left(&mut self, len: usize) {
        self.depth -= 1;
        self.bytes -= len;
    }

    fn drop_queued(&mut self, frames: VecDeque<Forwarded>, reason: DropReason) {
        if frames.is_empty() {
            return;
        }
        let bytes: usize = frames.iter().map(Forwarded::len).sum();
        self.depth -= frames.len();
        self.bytes -= bytes;
        self.dropped(reason, frames.len(), bytes);
    }

    fn dropped(&mut self, reason: DropReason, frames: usize, queued_bytes: usize) {
        self.actions.push_back(Action::Drop {
            reason,
            frames,
            queued_bytes,
        });
    }
}

/// The control messages queued towards one connection, and the close that follows them.
#[derive(Debug)]
pub(crate) struct ControlQueue {
    limit: usize,
    queue: VecDeque<ControlMessage>,
    close: Option<Option<ErrorCode>>,
}

/// What became of a control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ControlPushed {
    /// Queued.
    Queued,
    /// The connection is closing: not sent.
    Closing,
    /// The queue is full: the receiver does not read its control stream; remove it as a
    /// slow consumer.
    SlowConsumer,
}

impl ControlQueue {
    /// An empty queue of at most `limit` messages.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            queue: VecDeque::new(),
            close: None,
        }
    }

    /// Queue `message`.
    pub(crate) fn push(&mut self, message: ControlMessage) -> ControlPushed {
        if self.close.is_some() {
            return ControlPushed::Closing;
        }
        if self.queue.len() >= self.limit {
            return ControlPushed::SlowConsumer;
        }
        self.queue.push_back(message);
        ControlPushed::Queued
    }

    /// Send what is queued, then close with `code` (`None`: a normal close); the first
    /// close asked for wins.
    pub(crate) fn close(&mut self, code: Option<ErrorCode>) {
        self.close.get_or_insert(code);
    }

    /// The close asked for, if any (`Some(None)` is a normal close).
    pub(crate) fn close_code(&self) -> Option<Option<ErrorCode>> {
        self.close
    }

    /// Everything queued, and the close asked for: the writer writes the batch, then closes.
    pub(crate) fn take(&mut self) -> (VecDeque<ControlMessage>, Option<Option<ErrorCode>>) {
        (std::mem::take(&mut self.queue), self.close)
    }
}

#[cfg(test)]
mod tests;
