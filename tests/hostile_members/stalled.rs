//! A member that stops reading, beside three that keep up: the three receive everything;
//! the stalled one loses whole stale video groups (the relay resets them and asks the
//! publisher for a keyframe on its behalf) and, once reliable data for it backs up past
//! the bound, is removed with `SlowConsumer`. What the relay holds for it stays bounded.

use bytes::Bytes;
use sealroom_client::{DisconnectReason, ErrorCode, Event, MediaKind, RoomSecret};
use sealroom_frame::control::LeaveReason;
use sealroom_relay::{DropReason, Limits};

use crate::support::{
    Member, connection_queue_bound, flushed, join_client, join_member, process_memory_kib, relay,
    ticket, until, until_stats,
};

const AUDIO_FRAMES: usize = 200;
const VIDEO_GROUPS: usize = 8;
const VIDEO_FRAMES_PER_GROUP: usize = 10;
const VIDEO_FRAME_LEN: usize = 16 * 1024;
const DATA_MESSAGES: usize = 40;
const DATA_MESSAGE_LEN: usize = 60 * 1024;

fn limits() -> Limits {
    Limits {
        video_group_queue_bytes: 64 * 1024,
        video_queue_bytes: 256 * 1024,
        reliable_queue_bytes: 512 * 1024,
        max_audio_streams: 4,
        ..Limits::default().unlimited_rates()
    }
}

/// Wait until every member in `receivers` has at least `n` frames of `kind` from `sender`.
async fn keep_pace(
    receivers: &[&Member],
    sender: u32,
    kind: MediaKind,
    n: usize,
) -> anyhow::Result<()> {
    for member in receivers {
        let count = || {
            member
                .log
                .frames_from(sender)
                .iter()
                .filter(|f| f.kind == kind)
                .count()
        };
        until(
            "a healthy member keeps up",
            || count() >= n,
            || format!("{kind:?}: {} of {n}", count()),
        )
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_receiver_loses_only_its_own_frames_and_is_removed() -> anyhow::Result<()> {
    let limits = limits();
    let relay = relay(limits).await?;
    let secret = RoomSecret::generate();
    let publisher = join_member(&relay, "pat", "s", &secret).await?;
    let hana = join_member(&relay, "hana", "s", &secret).await?;
    let hugo = join_member(&relay, "hugo", "s", &secret).await?;
    // The stalled member never reads its events: its client stops reading streams after
    // one event and can hold only four streams from the relay.
    let (_sid_client, sid_room, mut sid_events) = join_client(
        &relay,
        ticket("sid", "s", sealroom_relay::Grants::all(), 3600),
        &secret,
        |config| config.event_queue(1).max_incoming_streams(4),
    )
    .await?;
    let sid = sid_room.member_id();
    let healthy = [&publisher, &hana, &hugo];

    // Phase 1: audio and video. The publisher keeps pace with the healthy members (a few
    // frames ahead of the slower of them), as a live source would; the stalled member
    // holds nobody back.
    let audio = publisher.room.publish_audio(1).await?;
    let video = publisher.room.publish_video(2).await?;
    let video_frames = VIDEO_GROUPS * VIDEO_FRAMES_PER_GROUP;
    for i in 0..AUDIO_FRAMES {
        keep_pace(
            &healthy[1..],
            publisher.id,
            MediaKind::Audio,
            i.saturating_sub(16),
        )
        .await?;
        audio.send(Bytes::from(format!("audio {i}")))?;
        if i < video_frames {
            keep_pace(
                &healthy[1..],
                publisher.id,
                MediaKind::Video,
                i.saturating_sub(2),
            )
            .await?;
            let keyframe = i % VIDEO_FRAMES_PER_GROUP == 0;
            if keyframe {
                flushed(&publisher, 2 * i as u64 + 1).await?;
            }
            video.send(Bytes::from(vec![i as u8; VIDEO_FRAME_LEN]), keyframe)?;
        }
    }
    for member in &healthy[1..] {
        until(
            "a healthy member receives every audio and video frame",
            || {
                let frames = member.log.frames_from(publisher.id);
                let count = |kind| frames.iter().filter(|f| f.kind == kind).count();
                count(MediaKind::Audio) == AUDIO_FRAMES && count(MediaKind::Video) == video_frames
            },
            || format!("{:#?}", relay.stats()),
        )
        .await?;
    }
    // The stalled member fell behind: whole groups were dropped for it, and the publisher
    // was asked for a keyframe on its behalf.
    until_stats(&relay, "a stale group and a keyframe request", |s| {
        s.dropped(DropReason::StaleGroup) > 0 && s.keyframe_requests.relay_forwarded > 0
    })
    .await?;
    until(
        "the publisher hears the stalled member's keyframe request",
        || {
            publisher
                .log
                .count(|e| matches!(e, Event::KeyframeRequested { track: 2, by } if *by == sid))
                > 0
        },
        || format!("{:#?}", relay.stats()),
    )
    .await?;

    // Phase 2: reliable data. It cannot be skipped, so once it backs up past the bound
    // the stalled member is removed.
    let data = publisher.room.publish_data(3).await?;
    for n in 0..DATA_MESSAGES {
        keep_pace(
            &healthy[1..],
            publisher.id,
            MediaKind::Data,
            n.saturating_sub(3),
        )
        .await?;
        let mut message = vec![n as u8; DATA_MESSAGE_LEN];
        message[..8].copy_from_slice(&(n as u64).to_be_bytes());
        data.send(Bytes::from(message)).await?;
    }
    for member in &healthy[1..] {
        until(
            "a healthy member receives every reliable message",
            || {
                member
                    .log
                    .frames_from(publisher.id)
                    .iter()
                    .filter(|f| f.kind == MediaKind::Data)
                    .count()
                    == DATA_MESSAGES
            },
            || format!("{:#?}", relay.stats()),
        )
        .await?;
        let order: Vec<u64> = member
            .log
            .frames_from(publisher.id)
            .iter()
            .filter(|f| f.kind == MediaKind::Data)
            .map(|f| {
                let mut n = [0u8; 8];
                n.copy_from_slice(&f.payload[..8]);
                u64::from_be_bytes(n)
            })
            .collect();
        assert_eq!(order, (0..DATA_MESSAGES as u64).collect::<Vec<_>>());
    }
    for member in healthy {
        until(
            "the others see the stalled member removed",
            || {
                member.log.count(|e| {
                    matches!(
                        e,
                        Event::MemberLeft { member, reason: LeaveReason::Removed, .. }
                            if *member == sid
                    )
                }) == 1
            },
            || format!("{:#?}", relay.stats()),
        )
        .await?;
    }
    // The stalled member's session ends with the typed reason.
    let reason = tokio::time::timeout(crate::support::SAFETY, async {
        while let Some(event) = sid_events.recv().await {
            if let Event::Disconnected(reason) = event {
                return Some(reason);
            }
        }
        None
    })
    .await?;
    assert!(
        matches!(
            reason,
            Some(DisconnectReason::Relay {
                code: ErrorCode::SlowConsumer,
                ..
            })
        ),
        "{reason:?}"
    );

    // Nobody healthy lost anything or was disturbed.
    assert_eq!(publisher.room.stats().frames_not_sent, 0);
    let stats = relay.stats();
    assert!(stats.dropped(DropReason::SlowConsumer) >= 1);
    for member in healthy {
        assert_eq!(member.log.count(|e| matches!(e, Event::CouldNotOpen(_))), 0);
        assert_eq!(member.log.count(|e| matches!(e, Event::Disconnected(_))), 0);
    }
    let bound = connection_queue_bound(&limits, 1500);
    let (rss, hwm) = process_memory_kib();
    println!(
        "\nstalled receiver test\n  stale groups dropped {} (frames), late {}, reliable refused {}\n  keyframe requests by the relay: forwarded {}, coalesced {}; by members: forwarded {}, coalesced {}\n  relay queued bytes, peak of one connection {} (bound {bound}), peak overall {}\n  process RSS now / peak {} / {} KiB",
        stats.dropped(DropReason::StaleGroup),
        stats.dropped(DropReason::LateGroup),
        stats.dropped(DropReason::SlowConsumer),
        stats.keyframe_requests.relay_forwarded,
        stats.keyframe_requests.relay_coalesced,
        stats.keyframe_requests.member_forwarded,
        stats.keyframe_requests.member_coalesced,
        stats.connection_queued_bytes_high_water,
        stats.queued_bytes_high_water,
        rss.unwrap_or(0),
        hwm.unwrap_or(0),
    );
    assert!(stats.connection_queued_bytes_high_water as usize <= bound);
    assert!(stats.queued_bytes_high_water as usize <= 4 * bound);
    drop((audio, video, data, sid_room));
    Ok(())
}
