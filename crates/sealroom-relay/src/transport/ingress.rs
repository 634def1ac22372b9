//! Reading what a client sends on a stream, without I/O and with time as an input: the
//! media stream's type byte, its framing, the deadline by which a frame that has started
//! arriving must be complete, the connection's budget of bytes held in incomplete frames,
//! and which video group a stream carries (so its end reaches the group's receivers).
//!
//! The deadline is what stops a slowloris: a peer that sends the first bytes of a frame and
//! then trickles or stops would otherwise hold a stream slot and the bytes buffered for it
//! for as long as its connection lives. The driver waits for the next chunk or for
//! [`MediaStreamReader::deadline`], whichever comes first, and on the deadline calls
//! [`MediaStreamReader::handle_timeout`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use sealroom_frame::envelope::{Envelope, MemberId, TrackId};
use sealroom_frame::stream::{DeframeError, Deframer};
use sealroom_frame::transport::StreamType;

/// When the frame in progress on a stream must be complete.
///
/// The clock starts when a frame's first byte arrives (for a media stream, when the stream
/// opens: its type byte is due) and stops when no incomplete frame is left. A chunk that
/// completes a frame and starts the next restarts it.
#[derive(Debug, Clone, Copy)]
pub struct FrameDeadline {
    timeout: Duration,
    started: Option<Instant>,
}

impl FrameDeadline {
    /// A deadline of `timeout` per frame, not running.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            started: None,
        }
    }

    /// After a chunk was taken in at `now`: whether a frame completed with it, and whether
    /// an incomplete frame is left.
    pub fn update(&mut self, completed: bool, incomplete: bool, now: Instant) {
        self.started = match (incomplete, self.started) {
            (false, _) => None,
            (true, Some(started)) if !completed => Some(started),
            (true, _) => Some(now),
        };
    }

    /// When the incomplete frame must be done; `None` when there is none.
    pub fn deadline(&self) -> Option<Instant> {
        self.started.map(|started| started + self.timeout)
    }

    /// Whether the incomplete frame is late at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| now >= deadline)
    }
}

/// Why a media stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The first byte is not the media stream type.
    #[error("unknown stream type {0:#04x}")]
    UnknownType(u8),
    /// A length prefix over the frame size limit.
    #[error("frame of {len} bytes over the limit of {max}")]
    Oversize {
        /// The announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// Broken framing (a non-minimal length prefix, or the stream ended inside a frame).
    #[error("broken framing: {0}")]
    Framing(DeframeError),
    /// A frame started and did not complete in time.
    #[error("a frame did not complete in time")]
    Stalled,
}

impl From<DeframeError> for StreamError {
    fn from(err: DeframeError) -> Self {
        match err {
            DeframeError::Oversize { len, max } => Self::Oversize { len, max },
            other => Self::Framing(other),
        }
    }
}

/// One incoming unidirectional media stream: `0x01`, then length-prefixed envelope frames.
#[derive(Debug)]
pub struct MediaStreamReader {
    deframer: Deframer,
    typed: bool,
    completed: bool,
    deadline: FrameDeadline,
}

impl MediaStreamReader {
    /// A reader for a stream opened at `now`, with frames of at most `max_frame_len` bytes
    /// that must each complete within `timeout` of their first byte.
    pub fn new(max_frame_len: usize, timeout: Duration, now: Instant) -> Self {
        let mut deadline = FrameDeadline::new(timeout);
        deadline.update(false, true, now);
        Self {
            deframer: Deframer::new(max_frame_len),
            typed: false,
            completed: false,
            deadline,
        }
    }

    /// Take in the next chunk of the stream.
    ///
    /// # Errors
    /// [`StreamError::UnknownType`] when the stream does not start with the media type.
    pub fn handle_chunk(&mut self, mut chunk: Bytes) -> Result<(), StreamError> {
        if !self.typed {
            let Some(&first) = chunk.first() else {
                return Ok(());
            };
            if StreamType::from_byte(first) != Some(StreamType::Media) {
                return Err(StreamError::UnknownType(first));
            }
            chunk.advance(1);
            self.typed = true;
        }
        self.deframer.push(chunk);
        Ok(())
    }

    /// The next whole frame, or `None` when more bytes are needed; call until `None` after
    /// every chunk, with the time the chunk arrived.
    ///
    /// # Errors
    /// [`StreamError::Oversize`] or [`StreamError::Framing`]; the stream cannot be trusted
    /// after either.
    pub fn poll_frame(&mut self, now: Instant) -> Result<Option<Bytes>, StreamError> {
        match self.deframer.next_frame()? {
            Some(frame) => {
                self.completed = true;
                Ok(Some(frame))
            }
            None => {
                let incomplete = !self.typed || self.deframer.buffered_len() > 0;
                self.deadline.update(self.completed, incomplete, now);
                self.completed = false;
                Ok(None)
            }
        }
    }

    /// When the frame in progress must be complete; `None` when none is in progress.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.deadline()
    }

    /// Time passed.
    ///
    /// # Errors
    /// [`StreamError::Stalled`] when the frame in progress missed its deadline.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), StreamError> {
        if self.deadline.is_expired(now) {
            Err(StreamError::Stalled)
        } else {
            Ok(())
        }
    }

    /// Bytes of the incomplete frame held.
    pub fn buffered_len(&self) -> usize {
        self.deframer.buffered_len()
    }

    /// The stream ended.
    ///
    /// # Errors
    /// [`StreamError::Framing`] when it ended inside a frame.
    pub fn finish(&self) -> Result<(), StreamError> {
        self.deframer.finish().map_err(StreamError::from)
    }
}

/// A connection's budget of bytes held in incomplete incoming frames, over all its streams
/// (`Limits::max_incoming_buffer_bytes`); each stream holds a [`BudgetShare`] of it.
#[derive(Debug)]
pub(crate) struct IncomingBudget {
    limit: usize,
    held: AtomicUsize,
}

/// How a stream's share of the [`IncomingBudget`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BudgetChange {
    /// The stream holds `by` bytes more; `over` when the connection's total is now past the
    /// limit (the stream must go).
    Grew {
        /// Bytes more.
        by: usize,
        /// Whether the connection's total went past the limit.
        over: bool,
    },
    /// The stream holds `by` bytes fewer (possibly none).
    Shrank {
        /// Bytes fewer.
        by: usize,
    },
}

impl IncomingBudget {
    /// A budget of `limit` bytes, none held.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            held: AtomicUsize::new(0),
        }
    }

    /// Bytes held over all streams.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// One stream's share of its connection's [`IncomingBudget`]; give it back with
/// [`release`](Self::release) when the stream ends.
#[derive(Debug, Default)]
pub(crate) struct BudgetShare {
    mine: usize,
}

impl BudgetShare {
    /// The stream now holds `buffered` bytes of an incomplete frame.
    pub(crate) fn update(&mut self, budget: &IncomingBudget, buffered: usize) -> BudgetChange {
        if buffered >= self.mine {
            let by = buffered - self.mine;
            let total = budget.held.fetch_add(by, Ordering::Relaxed) + by;
            self.mine = buffered;
            BudgetChange::Grew {
                by,
                over: total > budget.limit,
            }
        } else {
            let by = self.mine - buffered;
            budget.held.fetch_sub(by, Ordering::Relaxed);
            self.mine = buffered;
            BudgetChange::Shrank { by }
        }
    }

    /// The stream ended: its bytes go back to the budget; returns how many.
    pub(crate) fn release(&mut self, budget: &IncomingBudget) -> usize {
        let mine = std::mem::take(&mut self.mine);
        budget.held.fetch_sub(mine, Ordering::Relaxed);
        mine
    }
}

/// The video group an incoming stream carries and the receivers its frames went to, so that
/// the end (or reset) of the stream reaches them.
#[derive(Debug)]
pub(crate) struct GroupInFlight<R> {
    /// The publisher.
    pub(crate) sender: MemberId,
    /// Its track.
    pub(crate) track: TrackId,
    /// The group.
    pub(crate) group: u32,
    /// Every receiver a frame of the group went to, once each.
    pub(crate) receivers: Vec<R>,
}

/// Which video group one incoming stream is carrying ([`GroupInFlight`]).
#[derive(Debug)]
pub(crate) struct GroupTracker<R> {
    current: Option<GroupInFlight<R>>,
}

impl<R: Clone> GroupTracker<R> {
    /// A stream that has carried no video yet.
    pub(crate) fn new() -> Self {
        Self { current: None }
    }

    /// A video frame of `envelope` from this stream went to `receivers` (`same` tells two
    /// receivers apart). Returns the group the stream carried before when this frame is of
    /// another one: that group is over, its streams towards the receivers finish.
    pub(crate) fn handle_frame(
        &mut self,
        envelope: &Envelope,
        receivers: &[R],
        same: impl Fn(&R, &R) -> bool,
    ) -> Option<GroupInFlight<R>> {
        let carried = self.current.as_ref().is_some_and(|g| {
            g.sender == envelope.sender && g.track == envelope.track && g.group == envelope.group
        });
        let ended = if carried {
            None
        } else {
            self.current.replace(GroupInFlight {
                sender: envelope.sender,
                track: envelope.track,
                group: envelope.group,
                receivers: Vec::new(),
            })
        };
        if let Some(group) = &mut self.current {
            for receiver in receivers {
                if !group.receivers.iter().any(|r| same(r, receiver)) {
                    group.receivers.push(receiver.clone());
                }
            }
        }
        ended
    }

    /// The stream ended: the group it was carrying, if any. The driver finishes its streams
    /// towards the receivers when the stream ended cleanly and resets them when it did not.
    pub(crate) fn take(&mut self) -> Option<GroupInFlight<R>> {
        self.current.take()
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use sealroom_frame::stream::write_frame;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn framed(payloads: &[&[u8]]) -> Bytes {
        let mut buf = BytesMut::new();
        for payload in payloads {
            write_frame(payload, &mut buf);
        }
        buf.freeze()
    }

    fn frames(reader: &mut MediaStreamReader, now: Instant) -> Vec<Bytes> {
        std::iter::from_fn(|| reader.poll_frame(now).expect("well framed")).collect()
    }

    #[test]
    fn a_stream_that_never_sends_its_type_byte_stalls() {
        let t0 = Instant::now();
        let mut reader = MediaStreamReader::new(1000, TIMEOUT, t0);
        assert_eq!(reader.deadline(), Some(t0 + TIMEOUT));
        reader.handle_chunk(Bytes::new()).expect("empty chunk");
        assert!(frames(&mut reader, t0).is_empty());
        assert_eq!(reader.handle_timeout(t0 + TIMEOUT / 2), Ok(()));
        assert_eq!(
            reader.handle_timeout(t0 + TIMEOUT),
            Err(StreamError::Stalled)
        );
    }

    #[test]
    fn whole_frames_stop_the_clock_and_a_partial_one_starts_it() {
        let t0 = Instant::now();
        let mut reader = MediaStreamReader::new(1000, TIMEOUT, t0);
        let mut stream = BytesMut::from(&[StreamType::Media.byte()][..]);
        stream.extend_from_slice(&framed(&[b"one", b"two"]));
        reader.handle_chunk(stream.freeze()).expect("typed");
        assert_eq!(frames(&mut reader, t0), vec!["one", "two"]);
        assert_eq!(reader.deadline(), None, "nothing in progress: no deadline");
        // Idle for an hour between frames is fine (a reliable data stream).
        let t1 = t0 + Duration::from_secs(3600);
        assert_eq!(reader.handle_timeout(t1), Ok(()));

        // Half of a frame: the clock runs from its first byte, and trickling more bytes
        // does not restart it.
        let whole = framed(&[b"a frame that arrives slowly"]);
        reader.handle_chunk(whole.slice(..5)).expect("chunk");
        assert!(frames(&mut reader, t1).is_empty());
        assert_eq!(reader.deadline(), Some(t1 + TIMEOUT));
        let t2 = t1 + TIMEOUT / 2;
        reader.handle_chunk(whole.slice(5..10)).expect("chunk");
        assert!(frames(&mut reader, t2).is_empty());
        assert_eq!(reader.deadline(), Some(t1 + TIMEOUT));
        assert_eq!(reader.buffered_len(), 10);
        assert_eq!(
            reader.handle_timeout(t1 + TIMEOUT),
            Err(StreamError::Stalled)
        );
    }

    #[test]
    fn a_chunk_that_ends_one_frame_and_starts_another_restarts_the_clock() {
        let t0 = Instant::now();
        let mut reader = MediaStreamReader::new(1000, TIMEOUT, t0);
        let stream = {
            let mut buf = BytesMut::from(&[StreamType::Media.byte()][..]);
            buf.extend_from_slice(&framed(&[b"first", b"second"]));
            buf.freeze()
        };
        // The type byte and part of the first frame.
        reader.handle_chunk(stream.slice(..4)).expect("chunk");
        assert!(frames(&mut reader, t0).is_empty());
        assert_eq!(reader.deadline(), Some(t0 + TIMEOUT));
        // The rest of the first frame and part of the second, later.
        let t1 = t0 + Duration::from_secs(8);
        reader.handle_chunk(stream.slice(4..10)).expect("chunk");
        assert_eq!(frames(&mut reader, t1), vec!["first"]);
        assert_eq!(reader.deadline(), Some(t1 + TIMEOUT));
        reader.handle_chunk(stream.slice(10..)).expect("chunk");
        assert_eq!(frames(&mut reader, t1), vec!["second"]);
        assert_eq!(reader.deadline(), None);
        assert_eq!(reader.finish(), Ok(()));
    }

    #[test]
    fn wrong_type_oversize_and_truncation_are_typed() {
        let t0 = Instant::now();
        let mut reader = MediaStreamReader::new(10, TIMEOUT, t0);
        assert_eq!(
            reader.handle_chunk(Bytes::from_static(&[0x02, 1, 2])),
            Err(StreamError::UnknownType(0x02))
        );

        let mut reader = MediaStreamReader::new(10, TIMEOUT, t0);
        let mut stream = BytesMut::from(&[StreamType::Media.byte()][..]);
        stream.extend_from_slice(&framed(&[&[0u8; 11]]));
        reader.handle_chunk(stream.freeze()).expect("typed");
        assert!(matches!(
            reader.poll_frame(t0),
            Err(StreamError::Oversize { len: 11, max: 10 })
        ));

        let mut reader = MediaStreamReader::new(10, TIMEOUT, t0);
        let mut stream = BytesMut::from(&[StreamType::Media.byte()][..]);
        stream.extend_from_slice(&framed(&[b"12345"])[..3]);
        reader.handle_chunk(stream.freeze()).expect("typed");
        assert!(frames(&mut reader, t0).is_empty());
        assert!(matches!(reader.finish(), Err(StreamError::Framing(_))));
    }

    #[test]
    fn the_incoming_budget_is_shared_by_the_streams_of_a_connection() {
        let budget = IncomingBudget::new(100);
        let mut one = BudgetShare::default();
        let mut two = BudgetShare::default();
        assert_eq!(
            one.update(&budget, 60),
            BudgetChange::Grew {
                by: 60,
                over: false
            }
        );
        // Growing from 60 to 70 charges 10 more, not 70.
        assert_eq!(
            one.update(&budget, 70),
            BudgetChange::Grew {
                by: 10,
                over: false
            }
        );
        assert_eq!(
            two.update(&budget, 30),
            BudgetChange::Grew {
                by: 30,
                over: false
            }
        );
        assert_eq!(budget.held(), 100);
        assert_eq!(
            two.update(&budget, 31),
            BudgetChange::Grew { by: 1, over: true },
            "one byte past the connection's limit"
        );
        // A frame completes: the stream holds less.
        assert_eq!(one.update(&budget, 0), BudgetChange::Shrank { by: 70 });
        assert_eq!(budget.held(), 31);
        assert_eq!(two.release(&budget), 31);
        assert_eq!(budget.held(), 0);
        assert_eq!(two.release(&budget), 0, "given back once");
    }

    fn video(group: u32, track: TrackId) -> Envelope {
        Envelope {
            kind: sealroom_frame::envelope::MediaKind::Video,
            flags: sealroom_frame::envelope::Flags::empty(),
            sender: 3,
            track,
            group,
            seq: 0,
            timestamp_us: 0,
        }
    }

    #[test]
    fn a_stream_ends_the_group_it_carried_when_another_starts() {
        let mut groups = GroupTracker::new();
        let same = |a: &u64, b: &u64| a == b;
        assert!(groups.handle_frame(&video(1, 1), &[10, 11], same).is_none());
        // Later frames of the group reach more receivers; each is remembered once.
        assert!(groups.handle_frame(&video(1, 1), &[11, 12], same).is_none());
        let ended = groups
            .handle_frame(&video(2, 1), &[10], same)
            .expect("group 1 ends");
        assert_eq!((ended.sender, ended.track, ended.group), (3, 1, 1));
        assert_eq!(ended.receivers, vec![10, 11, 12]);
        // Another track on the same stream is another group too.
        let ended = groups
            .handle_frame(&video(2, 2), &[], same)
            .expect("group 2 of track 1 ends");
        assert_eq!(
            (ended.track, ended.group, ended.receivers),
            (1, 2, vec![10])
        );
        let last = groups.take().expect("the stream carried a group");
        assert_eq!((last.track, last.group), (2, 2));
        assert!(groups.take().is_none());
    }
}
