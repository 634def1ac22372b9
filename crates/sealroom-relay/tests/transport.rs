//! The transport mapping under less friendly conditions: oversized frames, garbage, a payload
//! tap, and receivers that stop reading.

use sealroom_test_support::wire as common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{APP_A, Client, ClientOptions, relay, relay_with, ticket};
use sealroom_frame::control::{ControlMessage, ErrorCode, LeaveReason};
use sealroom_frame::envelope::{Flags, MediaKind};
use sealroom_relay::{DropReason, Limits};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_too_large_for_a_datagram_travels_on_a_stream() -> anyhow::Result<()> {
    let relay = relay().await;
    let a = Client::join(&relay, &ticket(APP_A, "a", "r")).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "r")).await?;
    let big = vec![7u8; 5000];
    a.send_stream(&[(a.envelope(MediaKind::Audio, 1, 0, 0), big.clone())])
        .await?;
    let mut unreliable = a.envelope(MediaKind::Data, 2, 0, 0);
    unreliable.flags = Flags::UNRELIABLE;
    a.send_datagram(unreliable, b"small and unreliable")?;
    let frames = b.frames(2).await?;
    assert!(
        frames
            .iter()
            .any(|f| f.envelope.kind == MediaKind::Audio && f.payload[..] == big[..])
    );
    assert!(
        frames
            .iter()
            .any(|f| f.payload[..] == b"small and unreliable"[..])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_and_garbage_are_dropped_and_the_session_goes_on() -> anyhow::Result<()> {
    let relay = relay_with(Limits {
        max_frame_len: 2048,
        ..Limits::default().unlimited_rates()
    })
    .await;
    let mut a = Client::join(&relay, &ticket(APP_A, "a", "r")).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "r")).await?;
    a.send_stream(&[(a.envelope(MediaKind::Video, 1, 0, 0), vec![0u8; 4096])])
        .await?;
    let warning = a
        .expect_control(|m| matches!(m, ControlMessage::Error { .. }))
        .await?;
    assert!(matches!(
        warning,
        ControlMessage::Error {
            code: ErrorCode::FrameTooLarge,
            ..
        }
    ));
    // Garbage: not an envelope, and a stream of an unknown type.
    a.conn.send_datagram(Bytes::from_static(b"\x07garbage"))?;
    let mut stream = a.conn.open_uni().await?;
    stream.write_all(b"\x09not a media stream").await?;
    stream.finish()?;
    // Still a member: an honest frame goes through.
    a.send_datagram(a.envelope(MediaKind::Audio, 2, 0, 0), b"still here")?;
    assert_eq!(&b.next_frame().await?.payload[..], b"still here");
    assert!(b.frames_within_quiet().await.is_empty());
    let stats = relay.stats();
    assert_eq!(stats.dropped(DropReason::TooLarge), 1);
    assert_eq!(stats.dropped(DropReason::Malformed), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payload_tap_sees_every_received_byte() -> anyhow::Result<()> {
    let relay = relay().await;
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = Arc::clone(&seen);
    relay.set_payload_tap(Some(Arc::new(move |bytes: &[u8]| {
        sink.lock().expect("lock").extend_from_slice(bytes);
    })));
    let a = Client::join(&relay, &ticket(APP_A, "a", "r")).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "r")).await?;
    a.send_datagram(a.envelope(MediaKind::Audio, 1, 0, 0), b"MARKER-DATAGRAM")?;
    a.send_stream(&[(
        a.envelope(MediaKind::Video, 2, 0, 0),
        b"MARKER-STREAM".to_vec(),
    )])
    .await?;
    b.frames(2).await?;
    let seen = seen.lock().expect("lock").clone();
    let contains = |needle: &[u8]| seen.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"MARKER-DATAGRAM"));
    assert!(contains(b"MARKER-STREAM"));
    assert!(
        contains(b"relay-test"),
        "control stream bytes are tapped too"
    );
    // Each received byte once: a stream frame is not shown as chunk and again as frame.
    let count = |needle: &[u8]| seen.windows(needle.len()).filter(|w| *w == needle).count();
    assert_eq!(count(b"MARKER-STREAM"), 1);
    assert_eq!(count(b"MARKER-DATAGRAM"), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_video_receiver_loses_stale_groups_and_slows_no_one() -> anyhow::Result<()> {
    let relay = relay_with(Limits {
        video_group_queue_bytes: 64 * 1024,
        ..Limits::default().unlimited_rates()
    })
    .await;
    let a = Client::join(&relay, &ticket(APP_A, "a", "r")).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "r")).await?;
    let mut stalled =
        Client::join_with(&relay, &ticket(APP_A, "c", "r"), ClientOptions::stalled()).await?;
    const GROUPS: u32 = 30;
    const FRAMES: u32 = 10;
    // One group at a time, as a camera would (a group every couple of seconds): the healthy
    // receiver gets each whole group before the next starts.
    for group in 0..GROUPS {
        let frames: Vec<_> = (0..FRAMES)
            .map(|seq| {
                let mut env = a.envelope(MediaKind::Video, 1, group, seq);
                if seq == 0 {
                    env.flags = Flags::GROUP_START;
                }
                (env, vec![seq as u8; 4000])
            })
            .collect();
        a.send_stream(&frames).await?;
        let seqs: Vec<u32> = b
            .frames(FRAMES as usize)
            .await?
            .iter()
            .map(|f| {
                assert_eq!(f.envelope.group, group);
                f.envelope.seq
            })
            .collect();
        assert_eq!(seqs, (0..FRAMES).collect::<Vec<_>>(), "group {group}");
    }
    let stats = relay.stats();
    assert!(
        stats.dropped(DropReason::StaleGroup) > 0,
        "the stalled receiver lost stale groups: {stats:?}"
    );
    // Video lag is no reason to remove a member.
    assert!(stalled.frames_within_quiet().await.is_empty());
    assert_eq!(relay.stats().members, 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_stops_reading_reliable_data_is_removed() -> anyhow::Result<()> {
    let relay = relay_with(Limits {
        reliable_queue_bytes: 64 * 1024,
        ..Limits::default().unlimited_rates()
    })
    .await;
    let a = Client::join(&relay, &ticket(APP_A, "a", "r")).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "r")).await?;
    let mut stalled =
        Client::join_with(&relay, &ticket(APP_A, "c", "r"), ClientOptions::stalled()).await?;
    let mut data = a.open_media_stream().await?;
    const BATCHES: u32 = 15;
    const BATCH: u32 = 20;
    // Paced so the healthy receiver never has much queued; the stalled one piles up.
    for batch in 0..BATCHES {
        for i in 0..BATCH {
            let seq = batch * BATCH + i;
            Client::write_frame(
                &mut data,
                a.envelope(MediaKind::Data, 1, 0, seq),
                &[1u8; 1000],
            )
            .await?;
        }
        let seqs: Vec<u32> = b
            .frames(BATCH as usize)
            .await?
            .iter()
            .map(|f| f.envelope.seq)
            .collect();
        assert_eq!(
            seqs,
            (batch * BATCH..(batch + 1) * BATCH).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        stalled.closed().await?,
        Some(u64::from(ErrorCode::SlowConsumer.close_code()))
    );
    b.expect_control(|m| {
        *m == ControlMessage::MemberLeft {
            member: stalled.member,
            reason: LeaveReason::Removed,
        }
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_never_complete_hold_bounded_memory() -> anyhow::Result<()> {
    let relay = relay_with(Limits {
        max_incoming_buffer_bytes: 256 * 1024,
        ..Limits::default().unlimited_rates()
    })
    .await;
    let a = Client::join(&relay, &ticket(APP_A, "a", "r")).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "r")).await?;
    // Each stream declares a 200 000-byte frame and sends only half of it.
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut stream = a.open_media_stream().await?;
        let mut prefix = bytes::BytesMut::new();
        sealroom_frame::stream::write_len_prefix(200_000, &mut prefix);
        stream.write_all(&prefix).await?;
        stream.write_all(&vec![0u8; 100_000]).await?;
        streams.push(stream);
    }
    let waits = streams.iter().map(|s| Box::pin(s.stopped()));
    let (first, _, _) =
        tokio::time::timeout(common::WAIT, futures::future::select_all(waits)).await?;
    assert_eq!(
        first?,
        Some(quinn::VarInt::from_u32(
            sealroom_frame::StreamCode::Refused.code()
        )),
        "a stream over the budget is stopped"
    );
    assert!(relay.stats().dropped(DropReason::Backlog) >= 1);
    // The member and the room carry on.
    a.send_datagram(a.envelope(MediaKind::Audio, 1, 0, 0), b"still fine")?;
    assert_eq!(&b.next_frame().await?.payload[..], b"still fine");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_reading_control_messages_is_removed() -> anyhow::Result<()> {
    let relay = relay_with(Limits {
        control_queue_len: 16,
        ..Limits::default().unlimited_rates()
    })
    .await;
    let mut a = Client::join(&relay, &ticket(APP_A, "a", "r")).await?;
    let mut deaf =
        Client::join_with(&relay, &ticket(APP_A, "deaf", "r"), ClientOptions::deaf()).await?;
    // Every publish and unpublish is a control message to the deaf member.
    let track = sealroom_frame::control::TrackInfo {
        track: 1,
        kind: MediaKind::Audio,
    };
    let mut removed = None;
    for _ in 0..5000 {
        a.send_control(&ControlMessage::TrackPublished { member: 0, track })
            .await?;
        a.send_control(&ControlMessage::TrackUnpublished {
            member: 0,
            track: 1,
        })
        .await?;
        if relay.stats().members == 1 {
            removed = Some(());
            break;
        }
    }
    assert!(removed.is_some(), "the deaf member was removed");
    assert_eq!(
        deaf.closed().await?,
        Some(u64::from(ErrorCode::SlowConsumer.close_code()))
    );
    a.expect_control(|m| {
        *m == ControlMessage::MemberLeft {
            member: deaf.member,
            reason: LeaveReason::Removed,
        }
    })
    .await?;
    Ok(())
}

/// `ack_eliciting_threshold` asks every client for fewer ACKs (QUIC's ACK-frequency
/// extension), and 0 asks nothing: a stock QUIC client then acknowledges as it always does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_asks_clients_for_fewer_acks_only_when_configured() -> anyhow::Result<()> {
    for threshold in [0u32, 8] {
        let relay = relay_with(Limits {
            ack_eliciting_threshold: threshold,
            ..Limits::default().unlimited_rates()
        })
        .await;
        let a = Client::join(&relay, &ticket(APP_A, "a", "r")).await?;
        let mut b = Client::join(&relay, &ticket(APP_A, "b", "r")).await?;
        for seq in 0..20 {
            a.send_datagram(
                a.envelope(MediaKind::Audio, 1, 0, seq),
                b"twenty ms of audio",
            )?;
        }
        b.frames(1).await?;
        let asked = b.conn.stats().frame_rx.ack_frequency;
        if threshold == 0 {
            assert_eq!(asked, 0, "nothing is asked with the setting at 0");
        } else {
            assert!(
                asked >= 1,
                "a client of a relay with threshold {threshold} was asked"
            );
        }
    }
    Ok(())
}
