//! The media side of one connection's task: datagrams and incoming unidirectional streams,
//! read and handed to forwarding. The decisions are the I/O-free
//! [`MediaStreamReader`], [`IncomingBudget`] and [`GroupTracker`]; this file carries them
//! out on quinn (stop a stream with a code, end a video group at its receivers).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sealroom_frame::control::LeaveReason;
use sealroom_frame::envelope::{MediaKind, TrackId};
use sealroom_frame::transport::StreamCode;
use tokio::sync::Notify;
use tracing::Instrument;
use web_transport_quinn::{ReadError, RecvStream, Session, SessionError, WebTransportError};

use super::conn::leave_reason;
use super::{READ_CHUNK, Shared};
use crate::engine::{ConnId, DropReason, Violation};
use crate::metrics::Metrics;
use crate::transport::Outbox;
use crate::transport::ingress::{
    BudgetChange, BudgetShare, GroupInFlight, GroupTracker, IncomingBudget, MediaStreamReader,
    StreamError,
};

/// The connection's incoming streams that may still carry reliable data: every stream from
/// its acceptance until its first frame shows audio or video, and a data stream until its
/// end. `Leave` waits (at most `leave_drain_ms`) until they are read to their end, so that a
/// message the member sent before leaving is forwarded, not cut off by the close.
#[derive(Debug, Default)]
pub(crate) struct Unfinished {
    open: AtomicUsize,
    changed: Notify,
}

impl Unfinished {
    fn enter(self: &Arc<Self>) -> Pending {
        self.open.fetch_add(1, Ordering::AcqRel);
        Pending(Some(Arc::clone(self)))
    }

    /// Returns once no stream that may carry reliable data is open.
    pub(crate) async fn drained(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            changed.await;
        }
    }
}

/// One stream's place in [`Unfinished`], given back when it ends or shows it is media.
struct Pending(Option<Arc<Unfinished>>);

impl Pending {
    fn release(&mut self) {
        if let Some(unfinished) = self.0.take() {
            unfinished.open.fetch_sub(1, Ordering::AcqRel);
            unfinished.changed.notify_waiters();
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.release();
    }
}

/// Drop datagrams a connection sends before its control stream, counted as `not_joined`;
/// returns when the connection ends.
pub(super) async fn discard_datagrams(shared: &Shared, conn: &Session) {
    loop {
        match conn.read_datagram().await {
            Ok(_) | Err(SessionError::WebTransportError(WebTransportError::UnknownSession)) => {
                shared.metrics.frame_dropped(DropReason::NotJoined);
            }
            Err(_) => return,
        }
    }
}

pub(crate) async fn read_datagrams(shared: &Shared, id: ConnId, conn: &Session) -> LeaveReason {
    let mut targets = Vec::new();
    loop {
        match conn.read_datagram().await {
            Ok(bytes) => {
                shared.forward(id, bytes, &mut targets);
            }
            Err(SessionError::WebTransportError(WebTransportError::UnknownSession)) => {
                // A WebTransport datagram for another session (or without the session id):
                // not a frame of this member's.
                shared.metrics.frame_dropped(DropReason::Malformed);
                shared.bad_frame(id, super::system_now());
            }
            Err(err) => return leave_reason(&err),
        }
    }
}

pub(crate) async fn accept_streams(
    shared: &Arc<Shared>,
    id: ConnId,
    conn: &Session,
    buffered: &Arc<IncomingBudget>,
    unfinished: &Arc<Unfinished>,
    mut joined: tokio::sync::watch::Receiver<bool>,
) -> LeaveReason {
    // Every connection may open HTTP/3's three streams before `Join`: none is read until
    // the connection has joined (they wait in quinn, within the pre-join window).
    if joined.wait_for(|joined| *joined).await.is_err() {
        return std::future::pending().await;
    }
    loop {
        match conn.accept_uni().await {
            Ok(mut recv) => {
                if !shared.incoming_stream(id) {
                    // Over the stream opening rate: refused before it costs anything.
                    let _ = recv.stop(StreamCode::Refused.code());
                    continue;
                }
                let shared = Arc::clone(shared);
                let buffered = Arc::clone(buffered);
                let pending = unfinished.enter();
                tokio::spawn(
                    async move {
                        let mut budget = Budget {
                            budget: &buffered,
                            share: BudgetShare::default(),
                            metrics: &shared.metrics,
                        };
                        read_media_stream(&shared, id, recv, &mut budget, pending).await;
                    }
                    .instrument(tracing::Span::current()),
                );
            }
            Err(err) => return leave_reason(&err),
        }
    }
}

/// The end (`reset`: abandonment) of a video group reaches every receiver it went to.
fn end_group(group: &GroupInFlight<Arc<Outbox>>, reset: bool) {
    for outbox in &group.receivers {
        outbox.end_group(group.sender, group.track, group.group, reset);
    }
}

/// One stream's share of its connection's [`IncomingBudget`], counted in the metrics and
/// given back when the stream ends.
struct Budget<'a> {
    budget: &'a IncomingBudget,
    share: BudgetShare,
    metrics: &'a Metrics,
}

impl Budget<'_> {
    /// The stream now holds `buffered` bytes; `false` when the connection's total is over
    /// its limit.
    fn set(&mut self, buffered: usize) -> bool {
        match self.share.update(self.budget, buffered) {
            BudgetChange::Grew { by, over } => {
                self.metrics.incoming_buffered(by);
                !over
            }
            BudgetChange::Shrank { by } => {
                self.metrics.incoming_released(by);
                true
            }
        }
    }
}

impl Drop for Budget<'_> {
    fn drop(&mut self) {
        let released = self.share.release(self.budget);
        self.metrics.incoming_released(released);
    }
}

/// What reading an incoming media stream came to.
enum Read {
    /// The next chunk.
    Chunk(bytes::Bytes),
    /// The peer finished the stream (`clean`) or reset it.
    Ended { clean: bool },
    /// The connection is gone.
    Gone,
    /// The stream must be refused.
    Refused(StreamError),
}

/// One incoming media stream being read: its I/O-free reader and the video group it carries.
struct MediaStream<'a> {
    shared: &'a Shared,
    id: ConnId,
    reader: MediaStreamReader,
    targets: Vec<Arc<Outbox>>,
    group: GroupTracker<Arc<Outbox>>,
    /// The reliable data track this stream carries, from its first data frame: the stream's
    /// clean end unpublishes it.
    data_track: Option<TrackId>,
    /// Held while the stream may carry reliable data (`Leave` waits for it).
    pending: Pending,
}

impl MediaStream<'_> {
    /// The next chunk, or how the stream ended, waiting no longer than the reader's
    /// deadline for a frame in progress.
    async fn read(&mut self, recv: &mut RecvStream) -> Read {
        loop {
            let read = recv.read_chunk(READ_CHUNK, true);
            let read = match self.reader.deadline() {
                Some(at) => {
                    let at = tokio::time::Instant::from_std(at);
                    match tokio::time::timeout_at(at, read).await {
                        Ok(read) => read,
                        Err(_) => match self.reader.handle_timeout(Instant::now()) {
                            Ok(()) => continue,
                            Err(err) => return Read::Refused(err),
                        },
                    }
                }
                None => read.await,
            };
            return match read {
                Ok(Some(chunk)) => Read::Chunk(chunk.bytes),
                Ok(None) => {
                    if self.reader.finish().is_err() {
                        self.shared.metrics.frame_dropped(DropReason::Malformed);
                    }
                    Read::Ended { clean: true }
                }
                Err(ReadError::Reset(_) | ReadError::InvalidReset(_)) => {
                    Read::Ended { clean: false }
                }
                Err(_) => Read::Gone,
            };
        }
    }

    /// Take in a chunk and forward every frame it completes.
    fn handle_chunk(&mut self, chunk: bytes::Bytes) -> Result<(), StreamError> {
        // Not tapped here: every frame the chunks complete is tapped once, in `forward`.
        self.reader.handle_chunk(chunk)?;
        let now = Instant::now();
        while let Some(bytes) = self.reader.poll_frame(now)? {
            let Some(envelope) = self.shared.forward(self.id, bytes, &mut self.targets) else {
                continue;
            };
            if envelope.kind == MediaKind::Data && self.data_track.is_none() {
                self.data_track = Some(envelope.track);
            }
            if envelope.kind != MediaKind::Data {
                // Real-time media: a departure need not wait for the rest of it.
                self.pending.release();
            }
            if envelope.kind == MediaKind::Video
                && let Some(ended) = self
                    .group
                    .handle_frame(&envelope, &self.targets, |a, b| a.id == b.id)
            {
                end_group(&ended, false);
            }
        }
        Ok(())
    }

    /// The stream ended: the group it carried ends at its receivers (reset unless `clean`).
    /// A reliable data track ends with its stream: a clean end unpublishes the track, after
    /// every message the stream carried (docs/PROTOCOL.md).
    fn end(&mut self, clean: bool) {
        if let Some(group) = self.group.take() {
            end_group(&group, !clean);
        }
        if clean && let Some(track) = self.data_track.take() {
            self.shared.end_data_track(self.id, track);
        }
    }

    /// Count why the stream is refused.
    fn count_refusal(&self, refusal: &StreamError) {
        match refusal {
            StreamError::Oversize { .. } => self.shared.oversize(self.id),
            StreamError::Stalled => {
                tracing::debug!("a frame on a media stream never completed");
                self.shared.metrics.violation(Violation::StalledFrame);
            }
            StreamError::UnknownType(_) | StreamError::Framing(_) => {
                self.shared.metrics.frame_dropped(DropReason::Malformed);
            }
        }
    }
}

async fn read_media_stream(
    shared: &Shared,
    id: ConnId,
    mut recv: RecvStream,
    budget: &mut Budget<'_>,
    pending: Pending,
) {
    let mut stream = MediaStream {
        shared,
        id,
        reader: MediaStreamReader::new(
            shared.limits.max_frame_len,
            shared.limits.incomplete_frame_timeout(),
            Instant::now(),
        ),
        targets: Vec::new(),
        group: GroupTracker::new(),
        data_track: None,
        pending,
    };
    loop {
        let refusal = match stream.read(&mut recv).await {
            Read::Chunk(chunk) => stream.handle_chunk(chunk).err(),
            Read::Ended { clean } => return stream.end(clean),
            Read::Gone => return,
            Read::Refused(err) => Some(err),
        };
        if let Some(refusal) = &refusal {
            stream.count_refusal(refusal);
        } else if !budget.set(stream.reader.buffered_len()) {
            // Too many incomplete frames held for this connection (a peer trickling
            // frames that never complete): this stream goes.
            shared.metrics.frame_dropped(DropReason::Backlog);
        } else {
            continue;
        }
        let _ = recv.stop(StreamCode::Refused.code());
        return stream.end(false);
    }
}
