//! What the simulated members send and receive: payloads that carry their kind, sequence
//! number and send time behind a plaintext marker; each member's publisher and receiver;
//! and the wait until everything in flight has arrived.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use sealroom_client::{Event, Events, MediaKind, MemberId, PublishError};
use tokio::sync::mpsc;

use super::{AUDIO_BYTES, CHAT_BYTES, Member};

/// Every demo plaintext starts with this marker; the relay's tap looks for it and must
/// never find it.
pub(super) const MARKER: &[u8; 8] = b"SRDEMO01";
/// Marker, kind, sequence number, send time.
pub(super) const PAYLOAD_HEADER: usize = 8 + 1 + 8 + 8;

/// What one member observed as a receiver.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) received: u64,
    pub(super) opened: u64,
    pub(super) failed: u64,
    /// Frames opened, by kind (audio, video, data).
    pub(super) opened_by_kind: [u64; 3],
    /// Chat messages delivered in order, per sender.
    pub(super) chat_in_order: HashMap<MemberId, u64>,
    /// Chat messages that arrived out of order or twice.
    pub(super) chat_disorder: u64,
    pub(super) latencies_us: Vec<u64>,
}

/// Counters every member's receiver bumps, for the progress line.
#[derive(Debug, Default)]
pub(super) struct Progress {
    pub(super) received: AtomicU64,
    pub(super) opened: AtomicU64,
    pub(super) failed: AtomicU64,
}

/// What one member's publisher meant to send and what became of it, by kind.
#[derive(Debug, Default, Clone)]
pub(super) struct Sent {
    /// Frames the member meant to send.
    pub(super) meant: [u64; 3],
    /// Frames its client accepted (sealed and queued towards the relay).
    pub(super) accepted: [u64; 3],
    /// Frames the client did not accept, by kind and reason.
    pub(super) not_accepted: BTreeMap<(usize, &'static str), u64>,
}

impl Sent {
    pub(super) fn record(&mut self, kind: MediaKind, result: Result<(), PublishError>) {
        let index = kind_index(kind);
        self.meant[index] += 1;
        match result {
            Ok(()) => self.accepted[index] += 1,
            Err(err) => {
                *self
                    .not_accepted
                    .entry((index, publish_error_label(&err)))
                    .or_default() += 1;
            }
        }
    }
}

/// Why a client did not accept a frame, for the report.
pub(super) fn publish_error_label(err: &PublishError) -> &'static str {
    match err {
        PublishError::QueueFull => "queue full",
        PublishError::TooLarge { .. } => "too large",
        PublishError::Seal(_) => "could not seal",
        PublishError::Closed => "session closed",
        PublishError::TrackInUse(_) => "track in use",
        _ => "refused",
    }
}

pub(super) const KIND_NAMES: [&str; 3] = ["audio", "video", "chat"];

pub(super) fn kind_index(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
        MediaKind::Data => 2,
    }
}

/// A synthetic payload: marker, kind, sequence, send time (µs since `clock`), filler.
pub(super) fn payload(kind: MediaKind, seq: u64, clock: Instant, len: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(len.max(PAYLOAD_HEADER));
    buf.put_slice(MARKER);
    buf.put_u8(kind as u8);
    buf.put_u64(seq);
    buf.put_u64(u64::try_from(clock.elapsed().as_micros()).unwrap_or(u64::MAX));
    let filler = len.saturating_sub(PAYLOAD_HEADER);
    buf.put_bytes(0x5a, filler);
    buf.freeze()
}

/// Read the header of a demo payload: kind, sequence, send time.
pub(super) fn parse_payload(bytes: &[u8]) -> Option<(u8, u64, u64)> {
    let header = bytes.get(..PAYLOAD_HEADER)?;
    if &header[..8] != MARKER {
        return None;
    }
    let seq = u64::from_be_bytes(header[9..17].try_into().ok()?);
    let sent = u64::from_be_bytes(header[17..25].try_into().ok()?);
    Some((header[8], seq, sent))
}

/// One member's publisher: audio every 20 ms, video at 30 frames/s with a keyframe every
/// 2 s, chat at `chat_rate`. Returns what it meant to send and what became of it.
pub(super) async fn publish(
    audio: sealroom_client::AudioTrack,
    video: sealroom_client::VideoTrack,
    chat: sealroom_client::DataTrack,
    chat_rate: u32,
    keyframe_bytes: usize,
    clock: Instant,
    stop: Arc<AtomicBool>,
) -> Sent {
    let mut audio_tick = tokio::time::interval(Duration::from_millis(20));
    let mut video_tick = tokio::time::interval(Duration::from_micros(33_333));
    let chat_period = Duration::from_secs_f64(1.0 / f64::from(chat_rate.max(1)));
    let mut chat_tick = tokio::time::interval(chat_period);
    for tick in [&mut audio_tick, &mut video_tick, &mut chat_tick] {
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    let mut sent = Sent::default();
    let (mut audio_seq, mut video_seq, mut chat_seq) = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = audio_tick.tick() => {
                // A full queue drops the frame, as a real-time sender would; it is counted.
                let result = audio.send(payload(MediaKind::Audio, audio_seq, clock, AUDIO_BYTES));
                sent.record(MediaKind::Audio, result);
                audio_seq += 1;
            }
            _ = video_tick.tick() => {
                let keyframe = video_seq.is_multiple_of(60);
                let len = if keyframe { keyframe_bytes } else { keyframe_bytes / 4 };
                let result = video.send(payload(MediaKind::Video, video_seq, clock, len), keyframe);
                sent.record(MediaKind::Video, result);
                video_seq += 1;
            }
            _ = chat_tick.tick(), if chat_rate > 0 => {
                let result = chat.send(payload(MediaKind::Data, chat_seq, clock, CHAT_BYTES)).await;
                // Receivers check chat order by sequence: only accepted messages count.
                if result.is_ok() {
                    chat_seq += 1;
                }
                let closed = result == Err(PublishError::Closed);
                sent.record(MediaKind::Data, result);
                if closed {
                    break;
                }
            }
        }
    }
    sent
}

/// One member's event loop: tally every frame, and say when all `tracks_expected` tracks
/// of the other members are known.
pub(super) async fn receive(
    mut events: Events,
    tally: Arc<Mutex<Tally>>,
    progress: Arc<Progress>,
    clock: Instant,
    tracks_expected: usize,
    ready: mpsc::Sender<()>,
) {
    let mut tracks_seen = 0;
    let mut ready = Some(ready);
    if tracks_expected == 0
        && let Some(ready) = ready.take()
    {
        let _ = ready.send(()).await;
    }
    while let Some(event) = events.recv().await {
        match event {
            Event::TrackPublished { .. } => {
                tracks_seen += 1;
                if tracks_seen >= tracks_expected
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(()).await;
                }
            }
            Event::Frame(frame) => {
                progress.received.fetch_add(1, Ordering::Relaxed);
                progress.opened.fetch_add(1, Ordering::Relaxed);
                let now = u64::try_from(clock.elapsed().as_micros()).unwrap_or(u64::MAX);
                let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                tally.received += 1;
                tally.opened += 1;
                tally.opened_by_kind[kind_index(frame.kind)] += 1;
                if let Some((kind, seq, sent)) = parse_payload(&frame.payload) {
                    tally.latencies_us.push(now.saturating_sub(sent));
                    if kind == MediaKind::Data as u8 {
                        let next = tally.chat_in_order.entry(frame.sender).or_insert(0);
                        if seq == *next {
                            *next += 1;
                        } else {
                            tally.chat_disorder += 1;
                        }
                    }
                }
            }
            Event::CouldNotOpen(_) => {
                progress.received.fetch_add(1, Ordering::Relaxed);
                progress.failed.fetch_add(1, Ordering::Relaxed);
                let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
                tally.received += 1;
                tally.failed += 1;
            }
            Event::Disconnected(_) => break,
            _ => {}
        }
    }
}

/// Wait until every member has every chat message of every other member and nothing more
/// arrives for a moment (frames still in flight are delivered before anyone leaves), at
/// most 10 s.
pub(super) async fn drain(members: &[Member]) {
    let expected: HashMap<MemberId, u64> = members
        .iter()
        .map(|m| (m.room.member_id(), m.sent.accepted[2]))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let quiet_for = Duration::from_millis(500);
    let mut last_total = u64::MAX;
    let mut quiet_since = Instant::now();
    loop {
        let mut total = 0;
        let chats_complete = members.iter().all(|m| {
            let tally = m.tally.lock().unwrap_or_else(|p| p.into_inner());
            total += tally.received;
            let me = m.room.member_id();
            expected
                .iter()
                .filter(|(id, _)| **id != me)
                .all(|(id, sent)| {
                    tally.chat_in_order.get(id).copied().unwrap_or(0) + tally.chat_disorder >= *sent
                })
        });
        if total != last_total {
            last_total = total;
            quiet_since = Instant::now();
        }
        let quiet = quiet_since.elapsed() >= quiet_for;
        if (chats_complete && quiet) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_header_round_trips() {
        let clock = Instant::now();
        let bytes = payload(MediaKind::Video, 42, clock, 300);
        assert_eq!(bytes.len(), 300);
        let (kind, seq, _) = parse_payload(&bytes).expect("demo payload");
        assert_eq!((kind, seq), (MediaKind::Video as u8, 42));
        assert_eq!(parse_payload(b"not a demo payload at all"), None);
    }
}
