//! The driver of one connection's outbound side: an [`Egress`] under a lock, the tasks that
//! write what it queues onto quinn's control stream, datagrams and unidirectional streams,
//! and the metrics of what it decides.
//!
//! Every policy (what is queued, dropped, reset, or makes a slow consumer) is the egress's;
//! this file only carries its actions out. Forwarding pushes clones of a frame's `Bytes`
//! into the outboxes of its receivers without waiting: each outbox has its own bounded queues
//! and its own writer tasks, so a receiver that reads slowly only ever fills its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::{SendDatagramError, VarInt};
use sealroom_frame::control::{ControlMessage, ErrorCode};
use sealroom_frame::envelope::{MemberId, TrackId};
use sealroom_frame::transport::{StreamCode, StreamType};
use tokio::sync::Notify;
use web_transport_quinn::{SendStream, Session, SessionError};

use super::egress::{
    Action, ControlPushed, ControlQueue, DatagramPath, Egress, Forwarded, Pushed, StreamId,
    StreamWrite,
};
use super::webtransport::Flavour;
use crate::config::Limits;
use crate::engine::{ConnId, DropReason};
use crate::metrics::Metrics;
use crate::ops::quality::{ConnectionQuality, QualityState};

/// The first byte of every media stream the relay opens.
const MEDIA_STREAM_HEADER: [u8; 1] = [StreamType::Media.byte()];

const CONTROL_PRIORITY: i32 = i32::MAX;

/// How long a closing connection waits for its last control messages to be acknowledged.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the queue inconsistent in a way
    // that matters more than losing the connection; keep going.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A native connection's datagram budget, or a WebTransport session's (a few bytes smaller:
/// its datagrams carry the session id).
impl DatagramPath for Session {
    fn max_datagram_size(&self) -> Option<usize> {
        Some(Self::max_datagram_size(self)).filter(|&size| size > 0)
    }

    fn send_buffer_space(&self) -> usize {
        self.datagram_send_buffer_space()
    }
}

/// The egress and the wake-ups of the writer tasks it has asked for.
#[derive(Debug)]
struct Lanes {
    egress: Egress,
    writers: HashMap<StreamId, Arc<Notify>>,
}

/// Everything queued towards one connection.
#[derive(Debug)]
pub(crate) struct Outbox {
    pub(crate) id: ConnId,
    conn: Session,
    metrics: Arc<Metrics>,
    control: Mutex<ControlQueue>,
    control_notify: Notify,
    lanes: Mutex<Lanes>,
    datagram_notify: Notify,
    /// Mirrors the egress's closed state for a check without the lock.
    closed: AtomicBool,
    /// No control stream (a link to another node, whose control travels apart): a close
    /// closes the connection at once.
    media_only: bool,
    /// Frames the egress dropped towards this connection.
    dropped: AtomicU64,
    /// Drops by reason and the loss of the last interval, for the admin API.
    pub(crate) quality: QualityState,
}

impl Outbox {
    /// An outbox for `conn`; spawns its control and datagram writers.
    pub(crate) fn start(
        id: ConnId,
        conn: Session,
        control: SendStream,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let outbox = Self::new(id, conn, limits, metrics, false);
        tokio::spawn(Arc::clone(&outbox).run_control(control));
        tokio::spawn(Arc::clone(&outbox).run_datagrams());
        outbox
    }

    /// An outbox for media only (a link to another node): the same queues, datagrams and
    /// group streams as towards a member, with no control stream.
    pub(crate) fn start_media_only(
        id: ConnId,
        conn: Session,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let outbox = Self::new(id, conn, limits, metrics, true);
        tokio::spawn(Arc::clone(&outbox).run_datagrams());
        outbox
    }

    fn new(
        id: ConnId,
        conn: Session,
        limits: Limits,
        metrics: Arc<Metrics>,
        media_only: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            id,
            conn,
            metrics,
            control: Mutex::new(ControlQueue::new(limits.control_queue_len)),
            control_notify: Notify::new(),
            lanes: Mutex::new(Lanes {
                egress: Egress::new(limits),
                writers: HashMap::new(),
            }),
            datagram_notify: Notify::new(),
            closed: AtomicBool::new(false),
            media_only,
            dropped: AtomicU64::new(0),
            quality: QualityState::default(),
        })
    }

    /// Frames the egress dropped towards this connection so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Sample the connection's round-trip time and the loss since the previous sample.
    pub(crate) fn sample_quality(&self) -> (Duration, f64) {
        self.quality.sample(&self.conn)
    }

    /// The connection's quality now.
    pub(crate) fn connection_quality(&self) -> ConnectionQuality {
        let queued = lock(&self.lanes).egress.queued_bytes();
        self.quality.report(&self.conn, queued)
    }

    /// Whether the connection is closing or closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn mark_closed(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// The connection cannot be written any more: nothing more is queued.
    fn lost(self: &Arc<Self>) {
        self.mark_closed();
        self.with_egress(Egress::connection_lost);
    }

    /// Queue a control message. `false` when the control queue is full (a slow consumer).
    #[must_use]
    pub(crate) fn send_control(self: &Arc<Self>, message: ControlMessage) -> bool {
        let mut control = lock(&self.control);
        // A member that left takes its lanes with it.
        let forget = match &message {
            ControlMessage::MemberLeft { member, .. } => Some((*member, None)),
            ControlMessage::TrackUnpublished { member, track } => Some((*member, Some(*track))),
            _ => None,
        };
        match control.push(message) {
            ControlPushed::Closing => return true,
            ControlPushed::SlowConsumer => return false,
            ControlPushed::Queued => {}
        }
        if let Some((member, track)) = forget {
            self.with_egress(|egress| match track {
                Some(track) => egress.forget_track(member, track),
                None => egress.forget_sender(member),
            });
        }
        drop(control);
        self.control_notify.notify_one();
        true
    }

    /// Send what is queued, then close the connection with `code` (`None`: normal close).
    pub(crate) fn close(self: &Arc<Self>, code: Option<ErrorCode>) {
        self.mark_closed();
        lock(&self.control).close(code);
        self.control_notify.notify_one();
        // Wake every writer so none waits forever for frames that will not come.
        self.with_egress(Egress::close);
        if self.media_only {
            self.close_connection(code);
        }
    }

    /// Queue `frame` for this receiver on the path its kind takes.
    pub(crate) fn push(self: &Arc<Self>, frame: &Forwarded) -> Pushed {
        let mut lanes = lock(&self.lanes);
        let pushed = lanes.egress.push(frame, &self.conn);
        let pushed = if pushed == Pushed::SendNow {
            // The fast path: hand it to quinn here (under the lock, so no queued datagram
            // can overtake it) and spare the writer task a wake-up per frame.
            if self.conn.send_datagram(frame.frame.clone()).is_ok() {
                self.forwarded(frame);
            } else {
                lanes.egress.queue_datagram(frame.clone());
            }
            Pushed::Queued
        } else {
            pushed
        };
        self.apply(&mut lanes);
        pushed
    }

    /// The publisher finished (or, with `reset`, abandoned) the stream of a video group.
    pub(crate) fn end_group(
        self: &Arc<Self>,
        sender: MemberId,
        track: TrackId,
        group: u32,
        reset: bool,
    ) {
        self.with_egress(|egress| egress.end_group(sender, track, group, reset));
    }

    /// Run `f` on the egress and carry out what it asks for.
    fn with_egress<T>(self: &Arc<Self>, f: impl FnOnce(&mut Egress) -> T) -> T {
        let mut lanes = lock(&self.lanes);
        let out = f(&mut lanes.egress);
        self.apply(&mut lanes);
        out
    }

    /// Carry out the egress's actions (under its lock: each is a wake-up, a spawn or a
    /// counter).
    fn apply(self: &Arc<Self>, lanes: &mut Lanes) {
        if lanes.egress.is_closed() {
            self.mark_closed();
        }
        while let Some(action) = lanes.egress.poll_action() {
            match action {
                Action::WakeDatagrams => self.datagram_notify.notify_one(),
                Action::Open { stream, priority } => {
                    let notify = Arc::new(Notify::new());
                    lanes.writers.insert(stream, Arc::clone(&notify));
                    tokio::spawn(Arc::clone(self).run_stream(stream, notify, priority));
                }
                Action::Wake(stream) => {
                    if let Some(notify) = lanes.writers.get(&stream) {
                        notify.notify_one();
                    }
                }
                Action::Queued {
                    len,
                    total,
                    new_high,
                } => {
                    if let Some(depth) = new_high {
                        self.metrics.queue_depth(depth);
                    }
                    self.metrics.bytes_queued(len, total);
                }
                Action::Dequeued { bytes } => self.metrics.bytes_dequeued(bytes),
                Action::Drop {
                    reason,
                    frames,
                    queued_bytes,
                } => {
                    if queued_bytes > 0 {
                        self.metrics.bytes_dequeued(queued_bytes);
                    }
                    self.metrics.frames_dropped_by(reason, frames as u64);
                    self.dropped.fetch_add(frames as u64, Ordering::Relaxed);
                    self.quality.dropped(reason, frames as u64);
                }
            }
        }
    }

    fn forwarded(&self, frame: &Forwarded) {
        self.metrics.frame_forwarded(
            frame.envelope.kind,
            frame.frame.len(),
            frame.arrived.elapsed().as_secs_f64(),
        );
    }

    async fn run_control(self: Arc<Self>, mut send: SendStream) {
        let _ = send.set_priority(CONTROL_PRIORITY);
        let mut buf = BytesMut::new();
        loop {
            let (batch, close) = lock(&self.control).take();
            for message in &batch {
                if let Err(err) = message.encode_framed(&mut buf) {
                    tracing::warn!(conn = %self.id, %err, "control message not encodable");
                }
            }
            if !buf.is_empty() && !self.write_control(&mut send, &buf).await {
                // The stream is gone, or the peer does not read it and the connection is
                // being closed: close it now.
                self.lost();
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
        lock(&self.control).close_code()
    }

    fn close_connection(&self, code: Option<ErrorCode>) {
        let close_code = code.map_or(0, ErrorCode::close_code);
        let reason = code.map_or("", ErrorCode::label);
        let quic: &quinn::Connection = &self.conn;
        if Flavour::of(quic) == Some(Flavour::Web) {
            // A browser's session ends with the connection, its code in HTTP/3's space,
            // not with a CLOSE_WEBTRANSPORT_SESSION capsule first: Chromium 156's renderer
            // crashed after about one capsule close in 15 (docs/WEB.md), and none in 100
            // closes without it. The page already has the code: the control stream's
            // `Error` went before, and the client keeps it.
            let code = web_transport_proto::error_to_http3(close_code);
            let code = VarInt::from_u64(code).unwrap_or(VarInt::MAX);
            quic.close(code, reason.as_bytes());
        } else {
            self.conn.close(close_code, reason.as_bytes());
        }
    }

    /// Write to the control stream; once a close is requested, the write gets
    /// [`CLOSE_LINGER`] more to finish, so a peer that does not read cannot hold its
    /// connection open. `false` when the write failed or ran out of time.
    async fn write_control(&self, send: &mut SendStream, buf: &[u8]) -> bool {
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

    async fn run_datagrams(self: Arc<Self>) {
        loop {
            let Some(frame) = self.with_egress(Egress::poll_datagram) else {
                if self.is_closed() {
                    return;
                }
                self.datagram_notify.notified().await;
                continue;
            };
            let sent = self.conn.send_datagram_wait(frame.frame.clone()).await;
            match sent {
                Ok(()) => {
                    self.with_egress(Egress::datagram_sent);
                    self.forwarded(&frame);
                }
                Err(SessionError::SendDatagramError(SendDatagramError::TooLarge)) => {
                    self.with_egress(Egress::datagram_sent);
                    // The path MTU shrank after the frame was queued.
                    self.metrics.frame_dropped(DropReason::TooLarge);
                }
                Err(err) => {
                    let lost = !matches!(err, SessionError::SendDatagramError(_))
                        || matches!(
                            err,
                            SessionError::SendDatagramError(SendDatagramError::ConnectionLost(_))
                        );
                    self.with_egress(|egress| egress.datagrams_failed(lost));
                    return;
                }
            }
        }
    }

    async fn run_stream(self: Arc<Self>, stream: StreamId, notify: Arc<Notify>, priority: i32) {
        let opened = tokio::select! {
            opened = self.conn.open_uni() => opened.ok(),
            () = self.until_reset(stream, &notify) => None,
        };
        if let Some(mut send) = opened {
            let _ = send.set_priority(priority);
            self.write_stream(stream, &notify, &mut send).await;
        }
        let mut lanes = lock(&self.lanes);
        lanes.writers.remove(&stream);
        lanes.egress.stream_closed(stream);
        self.apply(&mut lanes);
    }

    async fn until_reset(&self, stream: StreamId, notify: &Notify) {
        while !lock(&self.lanes).egress.reset_requested(stream) {
            notify.notified().await;
        }
    }

    async fn write_stream(
        self: &Arc<Self>,
        stream: StreamId,
        notify: &Notify,
        send: &mut SendStream,
    ) {
        loop {
            let next = self.with_egress(|egress| egress.poll_stream(stream));
            let (frame, first) = match next {
                Some(StreamWrite::Frame { frame, first }) => (frame, first),
                Some(StreamWrite::Finish) => {
                    let _ = send.finish();
                    return;
                }
                Some(StreamWrite::Reset(code)) => {
                    let _ = send.reset(code.code());
                    return;
                }
                None => {
                    notify.notified().await;
                    continue;
                }
            };
            let header = Bytes::from_static(&MEDIA_STREAM_HEADER);
            let mut chunks = [
                if first { header } else { Bytes::new() },
                frame.stream_prefix(),
                frame.frame.clone(),
            ];
            let written = {
                let write = send.write_all_chunks(&mut chunks);
                tokio::pin!(write);
                loop {
                    tokio::select! {
                        result = &mut write => break Some(result.is_ok()),
                        () = notify.notified() => {
                            if lock(&self.lanes).egress.reset_requested(stream) {
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
                    let _ = send.reset(StreamCode::StaleGroup.code());
                    return;
                }
            }
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let egress = &self
            .lanes
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .egress;
        self.metrics.connection_ended(egress.high_water());
        // Whatever is still counted as queued (frames pushed while the connection was
        // going) goes with the outbox.
        self.metrics.bytes_dequeued(egress.queued_bytes());
    }
}
