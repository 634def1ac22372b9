//! The egress rules, driven without QUIC.

use super::*;

/// A datagram path that carries `max` bytes and always has `space` in its buffer.
struct Path {
    max: Option<usize>,
    space: usize,
}

impl DatagramPath for Path {
    fn max_datagram_size(&self) -> Option<usize> {
        self.max
    }
    fn send_buffer_space(&self) -> usize {
        self.space
    }
}

const ROOMY: Path = Path {
    max: Some(1200),
    space: 64 * 1024,
};
/// QUIC's datagram buffer is full: every datagram is queued.
const FULL: Path = Path {
    max: Some(1200),
    space: 0,
};

fn frame(kind: MediaKind, group: u32, seq: u32, len: usize, flags: Flags) -> Forwarded {
    let envelope = Envelope {
        kind,
        flags,
        sender: 1,
        track: 1,
        group,
        seq,
        timestamp_us: 0,
    };
    Forwarded::new(Bytes::from(vec![0u8; len]), envelope, Instant::now())
}

fn audio(seq: u32) -> Forwarded {
    frame(MediaKind::Audio, 0, seq, 100, Flags::empty())
}

fn video(group: u32, seq: u32, len: usize) -> Forwarded {
    frame(MediaKind::Video, group, seq, len, Flags::empty())
}

fn data(seq: u32, len: usize) -> Forwarded {
    frame(MediaKind::Data, 0, seq, len, Flags::empty())
}

fn actions(egress: &mut Egress) -> Vec<Action> {
    std::iter::from_fn(|| egress.poll_action()).collect()
}

fn drops(actions: &[Action]) -> Vec<(DropReason, usize)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Drop { reason, frames, .. } => Some((*reason, *frames)),
            _ => None,
        })
        .collect()
}

fn opened(actions: &[Action]) -> Vec<(StreamId, i32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Open { stream, priority } => Some((*stream, *priority)),
            _ => None,
        })
        .collect()
}

/// An egress under `limits` after `frames` were pushed with room on the datagram path, and
/// the actions it asked for.
fn pushed(limits: Limits, frames: &[Forwarded]) -> (Egress, Vec<Action>) {
    let mut egress = Egress::new(limits);
    for frame in frames {
        let _ = egress.push(frame, &ROOMY);
    }
    let asked = actions(&mut egress);
    (egress, asked)
}

/// Limits that keep `groups` video groups per track.
fn keeping(groups: usize) -> Limits {
    Limits {
        max_open_groups_per_track: groups,
        ..Limits::default()
    }
}

/// Every frame the writer of `stream` has to write now, then what it does after them
/// (`None`: wait).
fn drain(egress: &mut Egress, stream: StreamId) -> (Vec<u32>, Option<StreamWrite>) {
    let mut seqs = Vec::new();
    loop {
        match egress.poll_stream(stream) {
            Some(StreamWrite::Frame { frame, .. }) => seqs.push(frame.envelope.seq),
            other => return (seqs, other),
        }
    }
}

#[test]
fn group_order_wraps_around() {
    assert!(group_newer(2, 1));
    assert!(!group_newer(1, 2));
    assert!(!group_newer(5, 5));
    assert!(group_newer(0, u32::MAX));
    assert!(!group_newer(u32::MAX, 0));
}

#[test]
fn a_datagram_goes_at_once_only_when_nothing_waits_before_it() {
    let mut egress = Egress::new(Limits::default());
    assert_eq!(egress.push(&audio(0), &ROOMY), Pushed::SendNow);
    assert!(
        actions(&mut egress).is_empty(),
        "nothing queued, nothing to wake"
    );
    // QUIC's buffer is full: queued, and the writer woken.
    assert_eq!(egress.push(&audio(1), &FULL), Pushed::Queued);
    assert!(actions(&mut egress).contains(&Action::WakeDatagrams));
    // Now something waits: even with room, the next one queues behind it.
    assert_eq!(egress.push(&audio(2), &ROOMY), Pushed::Queued);
    let first = egress.poll_datagram().expect("queued");
    assert_eq!(first.envelope.seq, 1);
    // The writer holds one it has not handed over yet: still no overtaking.
    assert_eq!(egress.push(&audio(3), &ROOMY), Pushed::Queued);
    egress.datagram_sent();
    let order: Vec<u32> = std::iter::from_fn(|| {
        let next = egress.poll_datagram();
        egress.datagram_sent();
        next
    })
    .map(|f| f.envelope.seq)
    .collect();
    assert_eq!(order, vec![2, 3]);
    assert_eq!(egress.push(&audio(4), &ROOMY), Pushed::SendNow);
}

#[test]
fn a_full_datagram_queue_drops_the_oldest_audio() {
    let limits = Limits {
        datagram_queue_len: 3,
        ..Limits::default()
    };
    let mut egress = Egress::new(limits);
    for seq in 0..5 {
        assert_eq!(egress.push(&audio(seq), &FULL), Pushed::Queued);
    }
    let all = actions(&mut egress);
    assert_eq!(
        drops(&all),
        vec![(DropReason::QueueFull, 1), (DropReason::QueueFull, 1)]
    );
    let left: Vec<u32> = std::iter::from_fn(|| egress.poll_datagram())
        .map(|f| f.envelope.seq)
        .collect();
    assert_eq!(left, vec![2, 3, 4], "the newest are kept, in order");
    assert_eq!(egress.queued_bytes(), 0);
}

#[test]
fn audio_too_large_for_a_datagram_takes_a_stream_each_up_to_the_bound() {
    let limits = Limits {
        max_audio_streams: 2,
        ..Limits::default()
    };
    let mut egress = Egress::new(limits);
    let small = Path {
        max: Some(50),
        space: 64 * 1024,
    };
    assert_eq!(egress.push(&audio(0), &small), Pushed::Queued);
    assert_eq!(egress.push(&audio(1), &small), Pushed::Queued);
    assert_eq!(egress.push(&audio(2), &small), Pushed::Dropped);
    let all = actions(&mut egress);
    let streams = opened(&all);
    assert_eq!(streams.len(), 2);
    assert!(streams.iter().all(|(_, p)| *p == AUDIO_STREAM_PRIORITY));
    assert_eq!(drops(&all), vec![(DropReason::TooManyStreams, 1)]);
    // One frame, then finish; once its writer is done a stream is free again.
    let (seqs, after) = drain(&mut egress, streams[0].0);
    assert_eq!(seqs, vec![0]);
    assert!(matches!(after, Some(StreamWrite::Finish)));
    egress.stream_closed(streams[0].0);
    assert_eq!(egress.push(&audio(3), &small), Pushed::Queued);
}

#[test]
fn reliable_data_over_the_bound_makes_a_slow_consumer_and_is_never_skipped() {
    let limits = Limits {
        reliable_queue_bytes: 1000,
        ..Limits::default()
    };
    let mut egress = Egress::new(limits);
    for seq in 0..2 {
        assert_eq!(egress.push(&data(seq, 400), &ROOMY), Pushed::Queued);
    }
    let all = actions(&mut egress);
    let streams = opened(&all);
    assert_eq!(
        streams,
        vec![(streams[0].0, RELIABLE_PRIORITY)],
        "one stream"
    );
    assert_eq!(egress.push(&data(2, 400), &ROOMY), Pushed::SlowConsumer);
    assert_eq!(
        drops(&actions(&mut egress)),
        vec![(DropReason::SlowConsumer, 1)]
    );
    // What was queued is still written, in order; written bytes free the bound.
    let (seqs, after) = drain(&mut egress, streams[0].0);
    assert_eq!(seqs, vec![0, 1]);
    assert!(after.is_none(), "a reliable stream waits for more");
    assert_eq!(egress.push(&data(3, 400), &ROOMY), Pushed::Queued);
}

#[test]
fn a_newer_group_gets_its_own_stream_at_a_higher_priority() {
    let mut egress = Egress::new(Limits::default());
    egress.push(&video(7, 0, 100), &ROOMY);
    egress.push(&video(7, 1, 100), &ROOMY);
    egress.push(&video(8, 0, 100), &ROOMY);
    let streams = opened(&actions(&mut egress));
    assert_eq!(streams.len(), 2);
    assert!(streams[1].1 > streams[0].1);
    assert_eq!(drain(&mut egress, streams[0].0).0, vec![0, 1]);
    assert_eq!(drain(&mut egress, streams[1].0).0, vec![0]);
}

#[test]
fn a_group_read_after_a_newer_one_is_forwarded_below_it_not_late() {
    let mut egress = Egress::new(Limits::default());
    assert_eq!(egress.push(&video(5, 0, 100), &ROOMY), Pushed::Queued);
    assert_eq!(egress.push(&video(4, 0, 100), &ROOMY), Pushed::Queued);
    let all = actions(&mut egress);
    let streams = opened(&all);
    assert_eq!(streams.len(), 2);
    assert!(drops(&all).is_empty());
    assert_eq!(streams[1].1, streams[0].1 - 1, "one below the newer group");
}

#[test]
fn a_group_older_than_every_group_remembered_is_late() {
    let (mut egress, _) = pushed(keeping(2), &[video(10, 0, 100), video(11, 0, 100)]);
    assert_eq!(egress.push(&video(9, 0, 100), &ROOMY), Pushed::Dropped);
    assert_eq!(
        drops(&actions(&mut egress)),
        vec![(DropReason::LateGroup, 1)]
    );
}

#[test]
fn a_newer_group_resets_a_stale_group_the_receiver_is_behind_on() {
    let (mut egress, asked) = pushed(keeping(1), &[video(1, 0, 100), video(1, 1, 100)]);
    let old = opened(&asked)[0].0;
    // The receiver has not read group 1 at all when group 2 starts.
    assert_eq!(egress.push(&video(2, 0, 100), &ROOMY), Pushed::Queued);
    assert!(actions(&mut egress).contains(&Action::Wake(old)));
    assert!(egress.reset_requested(old));
    assert!(matches!(
        egress.poll_stream(old),
        Some(StreamWrite::Reset(StreamCode::StaleGroup))
    ));
    egress.stream_closed(old);
    assert_eq!(
        drops(&actions(&mut egress)),
        vec![(DropReason::StaleGroup, 2)]
    );
}

#[test]
fn a_group_still_being_delivered_is_finished_not_reset() {
    let (mut egress, asked) = pushed(keeping(1), &[video(1, 0, 100), video(1, 1, 100)]);
    let old = opened(&asked)[0].0;
    // The writer has taken both frames and is writing the last one when group 2
    // starts: the receiver keeps up, so group 1 must arrive whole.
    assert_eq!(drain(&mut egress, old).0, vec![0, 1]);
    egress.push(&video(2, 0, 100), &ROOMY);
    assert!(!egress.reset_requested(old));
    assert!(matches!(egress.poll_stream(old), Some(StreamWrite::Finish)));
    egress.stream_closed(old);
    assert!(drops(&actions(&mut egress)).is_empty());
}

#[test]
fn a_group_over_its_queue_bound_is_reset_and_the_rest_dropped() {
    let limits = Limits {
        video_group_queue_bytes: 250,
        ..Limits::default()
    };
    let mut egress = Egress::new(limits);
    egress.push(&video(1, 0, 100), &ROOMY);
    egress.push(&video(1, 1, 100), &ROOMY);
    let stream = opened(&actions(&mut egress))[0].0;
    assert_eq!(egress.push(&video(1, 2, 100), &ROOMY), Pushed::Stale);
    assert!(egress.reset_requested(stream));
    // Later frames of the group are dropped as stale; the next group opens.
    assert_eq!(egress.push(&video(1, 3, 100), &ROOMY), Pushed::Dropped);
    assert_eq!(egress.push(&video(2, 0, 100), &ROOMY), Pushed::Queued);
    let all = actions(&mut egress);
    assert_eq!(
        drops(&all),
        vec![(DropReason::StaleGroup, 1), (DropReason::StaleGroup, 1)]
    );
    assert_eq!(opened(&all).len(), 1);
}

#[test]
fn all_video_towards_a_connection_is_bounded_across_tracks() {
    let limits = Limits {
        video_queue_bytes: 250,
        ..Limits::default()
    };
    let mut egress = Egress::new(limits);
    egress.push(&video(1, 0, 100), &ROOMY);
    let mut other = video(1, 0, 100);
    other.envelope.track = 2;
    egress.push(&other, &ROOMY);
    let mut third = video(1, 0, 100);
    third.envelope.track = 3;
    assert_eq!(egress.push(&third, &ROOMY), Pushed::Stale);
}

#[test]
fn a_publisher_reset_or_finish_reaches_the_group_stream() {
    let mut egress = Egress::new(Limits::default());
    egress.push(&video(1, 0, 100), &ROOMY);
    egress.push(&video(2, 0, 100), &ROOMY);
    let streams = opened(&actions(&mut egress));
    egress.end_group(1, 1, 1, false);
    egress.end_group(1, 1, 2, true);
    let (seqs, after) = drain(&mut egress, streams[0].0);
    assert_eq!(seqs, vec![0]);
    assert!(matches!(after, Some(StreamWrite::Finish)));
    assert!(matches!(
        egress.poll_stream(streams[1].0),
        Some(StreamWrite::Reset(StreamCode::GroupReset))
    ));
    // A frame of a finished group is stale.
    assert_eq!(egress.push(&video(1, 1, 100), &ROOMY), Pushed::Dropped);
}

#[test]
fn byte_accounting_and_the_high_water_mark() {
    let mut egress = Egress::new(Limits::default());
    egress.push(&video(1, 0, 100), &ROOMY);
    egress.push(&data(0, 30), &ROOMY);
    egress.push(&audio(0), &FULL);
    let all = actions(&mut egress);
    let queued: Vec<(usize, usize, Option<usize>)> = all
        .iter()
        .filter_map(|a| match a {
            Action::Queued {
                len,
                total,
                new_high,
            } => Some((*len, *total, *new_high)),
            _ => None,
        })
        .collect();
    assert_eq!(
        queued,
        vec![(100, 100, Some(1)), (30, 130, Some(2)), (100, 230, Some(3))]
    );
    assert_eq!(egress.queued_bytes(), 230);
    let streams = opened(&all);
    drain(&mut egress, streams[0].0);
    egress.poll_datagram();
    let dequeued: usize = actions(&mut egress)
        .iter()
        .map(|a| match a {
            Action::Dequeued { bytes } => *bytes,
            _ => 0,
        })
        .sum();
    assert_eq!(dequeued, 200);
    assert_eq!(egress.queued_bytes(), 30);
    // Lower again, the mark stays; a new frame is no new high.
    egress.push(&audio(1), &FULL);
    assert!(
        actions(&mut egress)
            .iter()
            .any(|a| matches!(a, Action::Queued { new_high: None, .. }))
    );
    assert_eq!(egress.high_water(), 3);
    // The reliable stream's writer goes with its frame unwritten: counted out as gone.
    egress.stream_closed(streams[1].0);
    let all = actions(&mut egress);
    assert!(all.contains(&Action::Drop {
        reason: DropReason::ReceiverGone,
        frames: 1,
        queued_bytes: 30,
    }));
    assert_eq!(egress.queued_bytes(), 100, "the datagram queued last");
}

#[test]
fn a_closed_connection_drops_and_its_streams_finish() {
    let mut egress = Egress::new(Limits::default());
    egress.push(&video(1, 0, 100), &ROOMY);
    egress.push(&data(0, 10), &ROOMY);
    let streams = opened(&actions(&mut egress));
    egress.close();
    let woken = actions(&mut egress);
    for (stream, _) in &streams {
        assert!(woken.contains(&Action::Wake(*stream)));
        let (seqs, after) = drain(&mut egress, *stream);
        assert_eq!(seqs.len(), 1, "what was queued is still written");
        assert!(matches!(after, Some(StreamWrite::Finish)));
    }
    assert_eq!(egress.push(&audio(0), &ROOMY), Pushed::Dropped);
    assert_eq!(
        drops(&actions(&mut egress)),
        vec![(DropReason::ReceiverGone, 1)]
    );
}

#[test]
fn lost_datagrams_drop_the_one_in_hand_and_the_queue() {
    let mut egress = Egress::new(Limits::default());
    for seq in 0..3 {
        egress.push(&audio(seq), &FULL);
    }
    actions(&mut egress);
    assert!(egress.poll_datagram().is_some());
    egress.datagrams_failed(true);
    assert!(egress.is_closed());
    let all = actions(&mut egress);
    assert_eq!(
        drops(&all),
        vec![(DropReason::ReceiverGone, 1), (DropReason::ReceiverGone, 2)]
    );
    assert_eq!(egress.queued_bytes(), 0);
}

#[test]
fn a_member_that_leaves_takes_its_lanes() {
    let mut egress = Egress::new(Limits::default());
    egress.push(&video(1, 0, 100), &ROOMY);
    egress.push(&data(0, 10), &ROOMY);
    let streams = opened(&actions(&mut egress));
    egress.forget_sender(1);
    for (stream, _) in &streams {
        let (_, after) = drain(&mut egress, *stream);
        assert!(matches!(after, Some(StreamWrite::Finish)));
    }
    // The same track again (a new publication) gets new streams.
    egress.push(&data(1, 10), &ROOMY);
    assert_eq!(opened(&actions(&mut egress)).len(), 1);
}

#[test]
fn the_control_queue_is_bounded_and_closes_after_its_messages() {
    let mut control = ControlQueue::new(2);
    let message = || ControlMessage::Leave;
    assert_eq!(control.push(message()), ControlPushed::Queued);
    assert_eq!(control.push(message()), ControlPushed::Queued);
    assert_eq!(control.push(message()), ControlPushed::SlowConsumer);
    control.close(Some(ErrorCode::SlowConsumer));
    control.close(None);
    assert_eq!(control.push(message()), ControlPushed::Closing);
    let (batch, close) = control.take();
    assert_eq!(batch.len(), 2);
    assert_eq!(
        close,
        Some(Some(ErrorCode::SlowConsumer)),
        "the first close wins"
    );
}
