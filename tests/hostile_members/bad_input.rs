//! One member sends every kind of bad input at full speed, and six more break the control
//! protocol, beside four honest members publishing audio, video and reliable data: the
//! honest members lose nothing, the relay drops and counts everything bad with its reason,
//! and what it holds stays within a stated bound.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sealroom_client::{Event, RoomSecret};
use sealroom_frame::control::{ControlMessage, ErrorCode, LeaveReason, TrackInfo};
use sealroom_frame::envelope::{Envelope, Flags, MediaKind};
use sealroom_frame::stream::{write_frame, write_len_prefix};
use sealroom_frame::transport::StreamType;
use sealroom_relay::{DropReason, Grants, Limits, RelayStats, Violation};

use crate::support::{
    Garbage, Member, Raw, connection_queue_bound, flushed, frame, join_member, join_message,
    process_memory_kib, relay, ticket, until, until_stats,
};

const AUDIO_FRAMES: usize = 100;
const VIDEO_GROUPS: usize = 5;
const VIDEO_FRAMES_PER_GROUP: usize = 10;
const DATA_MESSAGES: usize = 50;

/// What the hostile member sends, per kind.
#[derive(Debug, Default)]
struct Sent(BTreeMap<&'static str, usize>);

impl Sent {
    fn add(&mut self, kind: &'static str, n: usize) {
        *self.0.entry(kind).or_default() += n;
    }
}

fn limits() -> Limits {
    Limits {
        max_frame_len: 64 * 1024,
        max_data_frame_len: 16 * 1024,
        incoming_streams_per_sec: 100,
        incoming_streams_burst: 200,
        incomplete_frame_timeout_ms: 500,
        video_queue_bytes: 2 * 1024 * 1024,
        reliable_queue_bytes: 1024 * 1024,
        // This test counts every kind of bad input one by one; removing a member after
        // too many is the hardening tests' business.
        bad_frames_burst: 100_000,
        ..Limits::default()
    }
}

/// A well-formed envelope from `sender`.
fn envelope(kind: MediaKind, sender: u32, seq: u32) -> Envelope {
    Envelope {
        kind,
        flags: Flags::empty(),
        sender,
        track: 1,
        group: 0,
        seq,
        timestamp_us: 0,
    }
}

/// A media stream: the type byte, then `frames` framed.
fn media_stream(frames: &[Bytes]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[StreamType::Media.byte()]);
    for f in frames {
        write_frame(f, &mut buf);
    }
    buf.to_vec()
}

async fn send_stream(raw: &Raw, bytes: &[u8], finish: bool) -> anyhow::Result<quinn::SendStream> {
    let mut send = raw.conn.open_uni().await?;
    send.write_all(bytes).await?;
    if finish {
        send.finish()?;
    }
    Ok(send)
}

/// Every kind of bad media input, at full speed. Returns what was sent and the streams
/// held open (slowloris) so they stay open until the relay gives up on them.
async fn misbehave(
    mallory: &Raw,
    victims: &[u32],
    max_data_frame_len: usize,
) -> anyhow::Result<(Sent, Vec<quinn::SendStream>)> {
    let mut sent = Sent::default();
    let mut noise = Garbage::new(0x5eed);
    let me = mallory.member;
    let victim = victims[0];

    // Datagrams that are not envelope frames at all.
    for _ in 0..1000 {
        let len = 1 + (noise.next_u64() % 1100) as usize;
        let mut bytes = noise.bytes(len);
        bytes[0] = 0xee; // not the envelope version
        mallory.conn.send_datagram_wait(Bytes::from(bytes)).await?;
    }
    sent.add("datagram: garbage", 1000);
    // Envelopes of an unknown version, an unknown kind, and with a payload length far
    // over any limit.
    for (kind, at, value) in [
        ("datagram: unknown version", 0, 2u8),
        ("datagram: unknown kind", 1, 7u8),
    ] {
        for seq in 0..200 {
            let mut bytes = frame(envelope(MediaKind::Audio, me, seq), b"x").to_vec();
            bytes[at] = value;
            mallory.conn.send_datagram_wait(Bytes::from(bytes)).await?;
        }
        sent.add(kind, 200);
    }
    for seq in 0..200 {
        let mut bytes = frame(envelope(MediaKind::Audio, me, seq), b"x").to_vec();
        bytes[28..32].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        mallory.conn.send_datagram_wait(Bytes::from(bytes)).await?;
    }
    sent.add("datagram: oversize length", 200);
    // Frames that claim to come from an honest member.
    for seq in 0..500 {
        let forged = frame(envelope(MediaKind::Audio, victim, seq), b"forged audio");
        mallory.conn.send_datagram_wait(forged).await?;
    }
    sent.add("datagram: forged sender", 500);
    // Frames of a kind the ticket does not grant (it grants nothing).
    for seq in 0..200 {
        let own = frame(envelope(MediaKind::Audio, me, seq), b"not permitted");
        mallory.conn.send_datagram_wait(own).await?;
    }
    sent.add("datagram: not permitted", 200);

    // Slowloris first, while the stream budget is full: 50 streams that each start a
    // 1000-byte frame and never finish it.
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut bytes = vec![StreamType::Media.byte()];
        let mut prefix = BytesMut::new();
        write_len_prefix(1000, &mut prefix);
        bytes.extend_from_slice(&prefix);
        bytes.extend_from_slice(&[0u8; 10]);
        held.push(send_stream(mallory, &bytes, false).await?);
    }
    sent.add("stream: frame never completed", 50);
    // Forged data frames on a stream.
    let forged: Vec<Bytes> = (0..100)
        .map(|seq| frame(envelope(MediaKind::Data, victims[1], seq), b"forged data"))
        .collect();
    send_stream(mallory, &media_stream(&forged), true).await?;
    sent.add("stream: forged sender frames", 100);
    // Streams that are not media streams, and media streams with broken framing.
    for _ in 0..20 {
        let mut bytes = noise.bytes(100);
        bytes[0] = 0xee; // not the media stream type
        send_stream(mallory, &bytes, true).await?;
    }
    sent.add("stream: unknown stream type", 20);
    for _ in 0..20 {
        let mut bytes = vec![StreamType::Media.byte(), 0x40, 0x05];
        bytes.extend_from_slice(b"hello");
        send_stream(mallory, &bytes, true).await?;
    }
    sent.add("stream: non-minimal length prefix", 20);
    // Length prefixes far over the frame limit, and data frames over the data limit.
    for _ in 0..20 {
        let mut bytes = vec![StreamType::Media.byte()];
        let mut prefix = BytesMut::new();
        write_len_prefix(1 << 30, &mut prefix);
        bytes.extend_from_slice(&prefix);
        bytes.extend_from_slice(&[0u8; 100]);
        send_stream(mallory, &bytes, true).await?;
    }
    sent.add("stream: oversize length prefix", 20);
    let big: Vec<Bytes> = (0..20)
        .map(|seq| {
            frame(
                envelope(MediaKind::Data, me, seq),
                &vec![0u8; max_data_frame_len + 1],
            )
        })
        .collect();
    send_stream(mallory, &media_stream(&big), true).await?;
    sent.add("stream: data frames over the size limit", 20);
    // More streams than allowed: as fast as QUIC lets them open.
    for _ in 0..2000 {
        send_stream(mallory, &[StreamType::Media.byte()], true).await?;
    }
    sent.add("stream: opened in a burst", 2000);
    Ok((sent, held))
}

/// Raw members that break the control protocol, one way each.
async fn break_control(relay: &sealroom_relay::Relay) -> anyhow::Result<(Sent, Vec<Raw>)> {
    let mut sent = Sent::default();
    let mut raws = Vec::new();
    let none = Grants::none();

    // Publishing before joining.
    let mut early = Raw::connect(relay).await?;
    early
        .send_control(&ControlMessage::TrackPublished {
            member: 1,
            track: TrackInfo {
                track: 1,
                kind: MediaKind::Audio,
            },
        })
        .await?;
    sent.add("control: publish before join", 1);
    raws.push(early);
    // Joining twice.
    let mut twice = Raw::join(relay, &ticket("m-twice", "x", none, 3600)).await?;
    twice
        .send_control(&join_message(&ticket("m-twice", "x", none, 3600)))
        .await?;
    sent.add("control: join twice", 1);
    raws.push(twice);
    // A message only the relay sends.
    let mut relay_only = Raw::join(relay, &ticket("m-relay-only", "x", none, 3600)).await?;
    relay_only
        .send_control(&ControlMessage::GoAway {
            code: ErrorCode::ShuttingDown,
            reconnect_after_ms: 0,
        })
        .await?;
    sent.add("control: relay-only message", 1);
    raws.push(relay_only);
    // A control message that does not decode.
    let mut garbled = Raw::join(relay, &ticket("m-garbled", "x", none, 3600)).await?;
    let mut bytes = BytesMut::new();
    write_frame(&[0x01, 0x7f, 0xff, 0xff], &mut bytes);
    garbled.send_control_bytes(&bytes).await?;
    sent.add("control: malformed message", 1);
    raws.push(garbled);
    // A length prefix over the control message limit.
    let mut huge = Raw::join(relay, &ticket("m-huge", "x", none, 3600)).await?;
    let mut bytes = BytesMut::new();
    write_len_prefix(1 << 20, &mut bytes);
    huge.send_control_bytes(&bytes).await?;
    sent.add("control: oversize length prefix", 1);
    raws.push(huge);
    // A control message that starts and never completes.
    let mut slow = Raw::join(relay, &ticket("m-slow", "x", none, 3600)).await?;
    let mut bytes = BytesMut::new();
    write_len_prefix(100, &mut bytes);
    bytes.extend_from_slice(&[0x01, 0x05]);
    slow.send_control_bytes(&bytes).await?;
    sent.add("control: message never completed", 1);
    raws.push(slow);
    // A flood of valid control messages.
    let mut chatty = Raw::join(relay, &ticket("m-chatty", "x", none, 3600)).await?;
    for track in 0..1000 {
        chatty
            .send_control(&ControlMessage::Unsubscribe { member: 1, track })
            .await?;
    }
    sent.add("control: flood of 1000 messages", 1000);
    raws.push(chatty);
    Ok((sent, raws))
}

/// What one honest member publishes: audio, video groups, reliable data, paced like a
/// real sender but fast.
async fn publish(member: &Member) -> anyhow::Result<()> {
    let audio = member.room.publish_audio(1).await?;
    let video = member.room.publish_video(2).await?;
    let data = member.room.publish_data(3).await?;
    let video_frames = VIDEO_GROUPS * VIDEO_FRAMES_PER_GROUP;
    let mut handed = 0;
    for i in 0..AUDIO_FRAMES {
        audio.send(Bytes::from(format!("audio {i} from {:>100}", member.id)))?;
        handed += 1;
        if i % 2 == 0 {
            let n = i / 2;
            if n < video_frames {
                let keyframe = n % VIDEO_FRAMES_PER_GROUP == 0;
                if keyframe {
                    // Nothing of the previous group still queued in the client (it would
                    // skip it as late).
                    flushed(member, handed).await?;
                }
                video.send(Bytes::from(vec![n as u8; 2000]), keyframe)?;
                handed += 1;
            }
            if n < DATA_MESSAGES {
                data.send(Bytes::from(format!("message {n} from {}", member.id)))
                    .await?;
                handed += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Keep the tracks published until everything is delivered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop((audio, video, data));
    Ok(())
}

/// Frames of `kind` member `at` received from `from`.
fn received(at: &Member, from: &Member, kind: MediaKind) -> Vec<Bytes> {
    at.log
        .frames_from(from.id)
        .into_iter()
        .filter(|f| f.kind == kind)
        .map(|f| f.payload)
        .collect()
}

fn report(sent: &Sent, stats: &RelayStats, limits: &Limits, connections: usize) -> String {
    let mut out = String::from("\nhostile member test: what was sent\n");
    for (kind, n) in &sent.0 {
        out.push_str(&format!("  {kind:<45} {n:>6}\n"));
    }
    out.push_str("what the relay dropped (frames, by reason)\n");
    for (reason, n) in &stats.dropped {
        out.push_str(&format!("  {:<45} {n:>6}\n", reason.label()));
    }
    out.push_str("protocol violations (by kind)\n");
    for (kind, n) in &stats.violations {
        out.push_str(&format!("  {:<45} {n:>6}\n", kind.label()));
    }
    out.push_str(&format!(
        "  {:<45} {:>6}\n",
        "control messages rate limited", stats.control_messages_rate_limited
    ));
    let bound = connection_queue_bound(limits, 1500);
    let (rss, hwm) = process_memory_kib();
    out.push_str("memory\n");
    out.push_str(&format!(
        "  relay queued bytes, peak over all connections {:>10}  (bound {} x {bound})\n",
        stats.queued_bytes_high_water, connections
    ));
    out.push_str(&format!(
        "  relay queued bytes, peak of one connection    {:>10}  (bound {bound})\n",
        stats.connection_queued_bytes_high_water
    ));
    out.push_str(&format!(
        "  relay incomplete incoming bytes, peak          {:>10}  (bound {} per connection)\n",
        stats.incoming_buffered_bytes_high_water, limits.max_incoming_buffer_bytes
    ));
    out.push_str(&format!(
        "  process RSS now / peak (relay and all clients) {:>7} / {:>7} KiB\n",
        rss.unwrap_or(0),
        hwm.unwrap_or(0)
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_member_costs_four_honest_members_nothing() -> anyhow::Result<()> {
    let limits = limits();
    let relay = relay(limits).await?;
    let secret = RoomSecret::generate();
    let mut honest = Vec::new();
    for user in ["alice", "bob", "carol", "dave"] {
        honest.push(join_member(&relay, user, "x", &secret).await?);
    }
    let victims: Vec<u32> = honest.iter().map(|m| m.id).collect();
    // The hostile member may do nothing: no grant to publish or even to receive.
    let mallory = Raw::join(&relay, &ticket("mallory", "x", Grants::none(), 3600)).await?;

    // Everything at once: honest members publish while mallory misbehaves and six more
    // raw members break the control protocol.
    let honest_publishing = async {
        tokio::try_join!(
            publish(&honest[0]),
            publish(&honest[1]),
            publish(&honest[2]),
            publish(&honest[3])
        )
    };
    let hostile = misbehave(&mallory, &victims, limits.max_data_frame_len);
    let control = break_control(&relay);
    let (_, (mut sent, _held), (control_sent, raws)) =
        tokio::try_join!(honest_publishing, hostile, control)?;
    sent.0.extend(control_sent.0);

    // Every honest member gets every frame of every other honest member, reliable data
    // in order.
    for at in &honest {
        for from in honest.iter().filter(|m| m.id != at.id) {
            until(
                &format!("member {} receives everything from {}", at.id, from.id),
                || {
                    received(at, from, MediaKind::Audio).len() == AUDIO_FRAMES
                        && received(at, from, MediaKind::Video).len()
                            == VIDEO_GROUPS * VIDEO_FRAMES_PER_GROUP
                        && received(at, from, MediaKind::Data).len() == DATA_MESSAGES
                },
                || {
                    format!(
                        "audio {} video {} data {}; relay {:#?}",
                        received(at, from, MediaKind::Audio).len(),
                        received(at, from, MediaKind::Video).len(),
                        received(at, from, MediaKind::Data).len(),
                        relay.stats()
                    )
                },
            )
            .await?;
            let data = received(at, from, MediaKind::Data);
            let want: Vec<Bytes> = (0..DATA_MESSAGES)
                .map(|n| Bytes::from(format!("message {n} from {}", from.id)))
                .collect();
            assert_eq!(data, want, "reliable data exactly once, in order");
        }
    }

    // The relay gave up on every frame that never completed, and removed each control
    // protocol breaker with its reason.
    until_stats(
        &relay,
        "every stalled frame and control violation counted",
        |s| {
            s.violations(Violation::StalledFrame) == 51
                && s.violations(Violation::ControlTooLarge) == 1
        },
    )
    .await?;
    let protocol_violation = u64::from(ErrorCode::ProtocolViolation.close_code());
    let too_large = u64::from(ErrorCode::FrameTooLarge.close_code());
    let expected_close = [
        protocol_violation,
        protocol_violation,
        protocol_violation,
        protocol_violation,
        too_large,
        protocol_violation,
    ];
    for (raw, code) in raws.iter().zip(expected_close) {
        assert_eq!(raw.closed().await?, Some(code));
    }
    let chatty = raws.last().expect("the chatty member");
    until(
        "the chatty member hears RateLimited",
        || chatty.errors(ErrorCode::RateLimited) >= 1,
        || format!("{:?}", chatty.messages()),
    )
    .await?;
    assert!(
        chatty.conn.close_reason().is_none(),
        "a flood is dropped, not closed"
    );

    let stats = relay.stats();
    let connections = honest.len() + 1 + raws.len();
    println!("{}", report(&sent, &stats, &limits, connections));

    // Nothing bad reached an honest member, and nothing honest was dropped.
    for member in &honest {
        assert_eq!(member.room.stats().frames_not_sent, 0);
        assert_eq!(
            member.log.count(|e| matches!(e, Event::CouldNotOpen(_))),
            0,
            "honest members never see a frame they cannot open"
        );
        assert!(member.log.frames_from(mallory.member).is_empty());
        assert_eq!(
            member.log.count(|e| matches!(e, Event::Disconnected(_))),
            0,
            "honest members stay"
        );
    }
    for reason in [
        DropReason::QueueFull,
        DropReason::StaleGroup,
        DropReason::LateGroup,
        DropReason::ReceiverGone,
        DropReason::SlowConsumer,
        DropReason::TooManyStreams,
        DropReason::Backlog,
        DropReason::RateLimited,
    ] {
        assert_eq!(
            stats.dropped(reason),
            0,
            "no honest frame dropped ({reason:?})"
        );
    }
    // Each bad input was dropped for its reason (datagrams the relay's QUIC stack never
    // delivered are not counted, so those counts are bounded by what was sent).
    assert_eq!(
        stats.dropped(DropReason::TooLarge),
        40,
        "oversize prefixes and data frames"
    );
    let forged = stats.dropped(DropReason::ForgedSender);
    assert!((100..=600).contains(&forged), "forged: {forged}");
    let malformed = stats.dropped(DropReason::Malformed);
    assert!((40..=1640).contains(&malformed), "malformed: {malformed}");
    assert!((1..=200).contains(&stats.dropped(DropReason::NotPermitted)));
    let refused_streams = stats.violations(Violation::TooManyStreams);
    assert!(
        (1..=2000).contains(&refused_streams),
        "streams refused: {refused_streams}"
    );
    assert!(
        mallory.errors(ErrorCode::RateLimited) >= 1,
        "told to slow down"
    );
    assert!(mallory.errors(ErrorCode::FrameTooLarge) >= 1);
    for kind in [
        Violation::BeforeJoin,
        Violation::JoinTwice,
        Violation::RelayOnly,
        Violation::MalformedControl,
        Violation::ControlTooLarge,
    ] {
        assert_eq!(stats.violations(kind), 1, "{kind:?}");
    }
    assert!((1..=1000).contains(&stats.control_messages_rate_limited));
    // Mallory is still a member: bad input is dropped, not punished with a close.
    assert!(mallory.conn.close_reason().is_none());
    let removed = |e: &Event| {
        matches!(
            e,
            Event::MemberLeft {
                reason: LeaveReason::Removed,
                ..
            }
        )
    };
    until(
        "the others see the five control breakers that had joined leave",
        || honest[0].log.count(removed) == 5,
        || format!("{}", honest[0].log.count(removed)),
    )
    .await?;

    // The relay's memory stayed within the stated bound: its own accounting of queued
    // bytes, per connection and overall, and of incomplete incoming frames.
    let bound = connection_queue_bound(&limits, 1500);
    assert!(stats.connection_queued_bytes_high_water as usize <= bound);
    assert!(stats.queued_bytes_high_water as usize <= connections * bound);
    assert!(stats.incoming_buffered_bytes_high_water as usize <= limits.max_incoming_buffer_bytes);
    assert_eq!(
        stats.incoming_buffered_bytes, 0,
        "nothing incomplete is held"
    );
    Ok(())
}
