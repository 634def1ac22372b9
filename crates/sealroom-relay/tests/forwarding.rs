//! Joining, rosters and fan-out over loopback QUIC, with raw clients.
//!
//! What these tests rely on (CONTRIBUTING.md lists it for every networked test):
//!
//! - frames on one QUIC stream arrive in order; across streams and datagrams there is no
//!   order, so frames are checked per kind, as sets, except reliable data (in order per
//!   track) and the frames of one video group (in order);
//! - the relay forwards every frame to every other member unless it counts a drop, and a
//!   video group that a receiver keeps up with arrives whole even when the relay reads a
//!   newer group's first frame before it (it does, under load: the publisher's group
//!   streams are read independently);
//! - the relay handles a member's control messages in order, so a later control message
//!   whose effect is visible serves as a barrier instead of polling its counters;
//! - datagrams are not promised to arrive: these tests send a handful of small ones, which
//!   loopback does not lose (no socket buffer comes close to overflowing), and check the
//!   relay's counters of what it handed to QUIC.

use sealroom_test_support::wire as common;

use common::{APP_A, APP_B, Client, relay, ticket};
use sealroom_frame::control::{ControlMessage, LeaveReason, TrackInfo};
use sealroom_frame::envelope::{Envelope, Flags, MediaKind};
use sealroom_relay::{DropReason, Limits};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_assigns_ids_and_announces_members() -> anyhow::Result<()> {
    let relay = relay().await;
    let mut alice = Client::join(&relay, &ticket(APP_A, "alice", "room")).await?;
    assert!(alice.roster.is_empty());
    let bob = Client::join(&relay, &ticket(APP_A, "bob", "room")).await?;
    assert_ne!(alice.member, bob.member);
    assert_eq!(bob.roster.len(), 1);
    assert_eq!(bob.roster[0].member, alice.member);
    assert_eq!(bob.roster[0].user, "alice");
    let joined = alice.next_control().await?;
    let ControlMessage::MemberJoined(info) = joined else {
        anyhow::bail!("expected MemberJoined, got {joined:?}");
    };
    assert_eq!(info.member, bob.member);
    assert_eq!(info.user, "bob");

    bob.conn.close(0u32.into(), b"bye");
    let left = alice.next_control().await?;
    assert_eq!(
        left,
        ControlMessage::MemberLeft {
            member: bob.member,
            reason: LeaveReason::Left,
        }
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_fans_out_to_the_others_only() -> anyhow::Result<()> {
    every_kind_fans_out(relay().await).await
}

/// The same with the sends of different connections gathered into `sendmmsg` batches:
/// nothing is lost, reordered within a stream, or held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_fans_out_with_batched_sends() -> anyhow::Result<()> {
    let limits = Limits {
        send_batch_packets: 64,
        ..Limits::default()
    };
    every_kind_fans_out(common::relay_with(limits).await).await
}

async fn every_kind_fans_out(relay: sealroom_relay::Relay) -> anyhow::Result<()> {
    let mut a = Client::join(&relay, &ticket(APP_A, "a", "room")).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "room")).await?;
    let mut c = Client::join(&relay, &ticket(APP_A, "c", "room")).await?;

    // Audio as datagrams.
    for seq in 0..5 {
        a.send_datagram(a.envelope(MediaKind::Audio, 1, 0, seq), b"audio-payload")?;
    }
    // Video: two groups, each on its own stream.
    for group in 0..2 {
        let frames: Vec<_> = (0..4)
            .map(|seq| {
                let mut env = a.envelope(MediaKind::Video, 2, group, seq);
                if seq == 0 {
                    env.flags = Flags::GROUP_START;
                }
                (env, vec![group as u8; 3000])
            })
            .collect();
        a.send_stream(&frames).await?;
    }
    // Reliable data on one long-lived stream.
    let mut data = a.open_media_stream().await?;
    for seq in 0..10 {
        Client::write_frame(&mut data, a.envelope(MediaKind::Data, 3, 0, seq), b"chat").await?;
    }

    for receiver in [&mut b, &mut c] {
        let frames = receiver.frames(5 + 8 + 10).await?;
        assert!(frames.iter().all(|f| f.envelope.sender == a.member));
        let audio = frames
            .iter()
            .filter(|f| f.envelope.kind == MediaKind::Audio)
            .count();
        let video: Vec<_> = frames
            .iter()
            .filter(|f| f.envelope.kind == MediaKind::Video)
            .collect();
        let data: Vec<u32> = frames
            .iter()
            .filter(|f| f.envelope.kind == MediaKind::Data)
            .map(|f| f.envelope.seq)
            .collect();
        assert_eq!(audio, 5);
        assert_eq!(video.len(), 8);
        assert!(video.iter().all(|f| f.payload.len() == 3000));
        // Reliable data arrives once each, in order.
        assert_eq!(data, (0..10).collect::<Vec<_>>());
    }
    // The sender never gets its own frames back.
    assert!(a.frames_within_quiet().await.is_empty());
    let stats = relay.stats();
    assert_eq!(stats.audio.frames_received, 5);
    assert_eq!(stats.audio.frames_forwarded, 10);
    assert_eq!(stats.video.frames_forwarded, 16);
    assert_eq!(stats.data.frames_forwarded, 20);
    Ok(())
}

/// A video frame of `group` from `sender`, the group's first when `seq` is 0.
fn video(sender: &Client, group: u32, seq: u32) -> (Envelope, Vec<u8>) {
    let mut env = sender.envelope(MediaKind::Video, 2, group, seq);
    if seq == 0 {
        env.flags = Flags::GROUP_START;
    }
    (env, vec![group as u8; 1000])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_first_frame_comes_after_the_next_groups_is_forwarded() -> anyhow::Result<()>
{
    // A publisher's groups travel on independent streams, so the relay can read the first
    // frame of group 1 before that of group 0 (under load it does). Here that order is
    // forced: group 0 starts only once group 1 has reached the receiver.
    let relay = relay().await;
    let a = Client::join(&relay, &ticket(APP_A, "a", "room")).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "room")).await?;
    a.send_stream(&[video(&a, 1, 0)]).await?;
    assert_eq!(b.next_frame().await?.envelope.group, 1);
    a.send_stream(&(0..4).map(|seq| video(&a, 0, seq)).collect::<Vec<_>>())
        .await?;
    let frames = b.frames(4).await?;
    let got: Vec<(u32, u32)> = frames
        .iter()
        .map(|f| (f.envelope.group, f.envelope.seq))
        .collect();
    assert_eq!(got, (0..4).map(|seq| (0, seq)).collect::<Vec<_>>());
    assert_eq!(relay.stats().dropped(DropReason::LateGroup), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_older_than_those_a_receiver_keeps_is_dropped_as_late() -> anyhow::Result<()> {
    let relay = relay().await;
    let kept = Limits::default().max_open_groups_per_track;
    let a = Client::join(&relay, &ticket(APP_A, "a", "room")).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "room")).await?;
    // The receiver has seen the newest `kept` groups, 10 onwards.
    let newest = 10 + kept as u32 - 1;
    a.send_stream(&(10..=newest).map(|g| video(&a, g, 0)).collect::<Vec<_>>())
        .await?;
    let mut seen: Vec<u32> = b
        .frames(kept)
        .await?
        .iter()
        .map(|f| f.envelope.group)
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (10..=newest).collect::<Vec<_>>());
    // Group 9 is older than all of them: late. One stream carries it and then a newer group,
    // so the relay has decided about group 9 once the newer one arrives.
    a.send_stream(&[video(&a, 9, 0), video(&a, newest + 1, 0)])
        .await?;
    assert_eq!(b.next_frame().await?.envelope.group, newest + 1);
    assert_eq!(relay.stats().dropped(DropReason::LateGroup), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_sender_is_dropped_and_counted() -> anyhow::Result<()> {
    let relay = relay().await;
    let a = Client::join(&relay, &ticket(APP_A, "a", "room")).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "room")).await?;
    let mut forged = a.envelope(MediaKind::Audio, 1, 0, 0);
    forged.sender = b.member;
    for _ in 0..3 {
        a.send_datagram(forged, b"lie")?;
    }
    a.send_stream(&[(
        {
            let mut env = a.envelope(MediaKind::Video, 2, 0, 0);
            env.sender = a.member + 100;
            env
        },
        b"lie".to_vec(),
    )])
    .await?;
    // An honest frame afterwards still goes through.
    a.send_datagram(a.envelope(MediaKind::Audio, 1, 0, 1), b"truth")?;
    let frame = b.next_frame().await?;
    assert_eq!(&frame.payload[..], b"truth");
    assert!(b.frames_within_quiet().await.is_empty());
    assert_eq!(relay.stats().dropped(DropReason::ForgedSender), 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_isolated_by_app_and_room_id() -> anyhow::Result<()> {
    let relay = relay().await;
    let a_x = Client::join(&relay, &ticket(APP_A, "u1", "x")).await?;
    let mut a_x2 = Client::join(&relay, &ticket(APP_A, "u2", "x")).await?;
    let mut b_x = Client::join(&relay, &ticket(APP_B, "u3", "x")).await?;
    let mut a_y = Client::join(&relay, &ticket(APP_A, "u4", "y")).await?;
    assert!(b_x.roster.is_empty(), "app B's room x is another room");
    assert!(a_y.roster.is_empty(), "room y is another room");
    a_x.send_datagram(a_x.envelope(MediaKind::Audio, 1, 0, 0), b"only-for-a-x")?;
    assert_eq!(&a_x2.next_frame().await?.payload[..], b"only-for-a-x");
    assert!(b_x.frames_within_quiet().await.is_empty());
    assert!(a_y.frames_within_quiet().await.is_empty());
    let rooms = relay.rooms();
    assert_eq!(rooms.len(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_publication_and_unsubscribe() -> anyhow::Result<()> {
    let relay = relay().await;
    let mut a = Client::join(&relay, &ticket(APP_A, "a", "room")).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "room")).await?;
    let audio = TrackInfo {
        track: 1,
        kind: MediaKind::Audio,
    };
    a.send_control(&ControlMessage::TrackPublished {
        member: 0,
        track: audio,
    })
    .await?;
    let published = b
        .expect_control(|m| matches!(m, ControlMessage::TrackPublished { .. }))
        .await?;
    assert_eq!(
        published,
        ControlMessage::TrackPublished {
            member: a.member,
            track: audio,
        }
    );
    // A third member sees the track in its roster.
    let c = Client::join(&relay, &ticket(APP_A, "c", "room")).await?;
    let a_in_roster = c.roster.iter().find(|m| m.member == a.member);
    assert_eq!(a_in_roster.map(|m| m.tracks.clone()), Some(vec![audio]));

    // A video track, for the keyframe request below.
    a.send_control(&ControlMessage::TrackPublished {
        member: 0,
        track: TrackInfo {
            track: 2,
            kind: MediaKind::Video,
        },
    })
    .await?;
    b.expect_control(
        |m| matches!(m, ControlMessage::TrackPublished { track, .. } if track.track == 2),
    )
    .await?;
    b.send_control(&ControlMessage::Unsubscribe {
        member: a.member,
        track: 1,
    })
    .await?;
    // Unsubscribe is processed before the frames because a control round trip follows it.
    b.send_control(&ControlMessage::KeyframeRequest {
        member: a.member,
        track: 2,
    })
    .await?;
    a.expect_control(|m| matches!(m, ControlMessage::KeyframeRequest { .. }))
        .await?;
    a.send_datagram(a.envelope(MediaKind::Audio, 1, 0, 0), b"muted-for-b")?;
    a.send_datagram(a.envelope(MediaKind::Audio, 4, 0, 0), b"other-track")?;
    let frame = b.next_frame().await?;
    assert_eq!(&frame.payload[..], b"other-track");
    assert!(b.frames_within_quiet().await.is_empty());
    drop(c);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_requests_reach_the_publisher() -> anyhow::Result<()> {
    let relay = relay().await;
    let mut a = Client::join(&relay, &ticket(APP_A, "a", "room")).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "room")).await?;
    for (track, kind) in [(7, MediaKind::Video), (8, MediaKind::Audio)] {
        a.send_control(&ControlMessage::TrackPublished {
            member: 0,
            track: TrackInfo { track, kind },
        })
        .await?;
    }
    b.expect_control(
        |m| matches!(m, ControlMessage::TrackPublished { track, .. } if track.track == 8),
    )
    .await?;
    // An audio track and a track that does not exist have no keyframes: ignored. The
    // second request for track 7 comes within the coalescing interval: dropped, the
    // publisher's answer to the first serves both.
    for track in [8, 9, 7, 7] {
        b.send_control(&ControlMessage::KeyframeRequest {
            member: a.member,
            track,
        })
        .await?;
    }
    let request = a
        .expect_control(|m| matches!(m, ControlMessage::KeyframeRequest { .. }))
        .await?;
    assert_eq!(
        request,
        ControlMessage::KeyframeRequest {
            member: b.member,
            track: 7,
        }
    );
    // The relay handles a member's control messages in order: once the publisher hears of
    // a track the requester publishes after its requests, all of them have been counted.
    b.send_control(&ControlMessage::TrackPublished {
        member: 0,
        track: TrackInfo {
            track: 5,
            kind: MediaKind::Audio,
        },
    })
    .await?;
    a.expect_control(|m| {
        matches!(m, ControlMessage::TrackPublished { member, track } if *member == b.member && track.track == 5)
    })
    .await?;
    let stats = relay.stats();
    assert_eq!(stats.keyframe_requests.member_forwarded, 1);
    assert_eq!(stats.keyframe_requests.member_coalesced, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_forwards_the_data_sent_before_it() -> anyhow::Result<()> {
    const MESSAGES: u32 = 300;
    let relay = relay().await;
    let mut alice = Client::join(&relay, &ticket(APP_A, "alice", "room")).await?;
    let mut bob = Client::join(&relay, &ticket(APP_A, "bob", "room")).await?;
    alice
        .expect_control(|m| matches!(m, ControlMessage::MemberJoined(_)))
        .await?;
    let mut data = alice.open_media_stream().await?;
    Client::write_frame(
        &mut data,
        alice.envelope(MediaKind::Data, 3, 0, 0),
        b"first",
    )
    .await?;
    assert_eq!(
        bob.next_frame().await?.envelope.seq,
        0,
        "the stream is being read"
    );

    // Far more than one packet, finished, and Leave at once on the control stream: quinn
    // sends the two streams side by side, so the relay reads Leave before the last messages.
    for seq in 1..=MESSAGES {
        Client::write_frame(
            &mut data,
            alice.envelope(MediaKind::Data, 3, 0, seq),
            &[7; 1000],
        )
        .await?;
    }
    data.finish()?;
    alice.send_control(&ControlMessage::Leave).await?;

    let seqs: Vec<u32> = bob
        .frames(MESSAGES as usize)
        .await?
        .iter()
        .map(|f| f.envelope.seq)
        .collect();
    assert_eq!(
        seqs,
        (1..=MESSAGES).collect::<Vec<_>>(),
        "every message, in order"
    );
    let left = bob
        .expect_control(|m| matches!(m, ControlMessage::MemberLeft { .. }))
        .await?;
    assert_eq!(
        left,
        ControlMessage::MemberLeft {
            member: alice.member,
            reason: LeaveReason::Left
        }
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_does_not_wait_for_video_in_flight() -> anyhow::Result<()> {
    // A drain far longer than the test's wait: MemberLeft arriving at all shows the open
    // video group was not waited for.
    let relay = common::relay_with(Limits {
        leave_drain_ms: 60_000,
        ..Limits::default()
    })
    .await;
    let mut alice = Client::join(&relay, &ticket(APP_A, "alice", "room")).await?;
    let mut bob = Client::join(&relay, &ticket(APP_A, "bob", "room")).await?;
    alice
        .expect_control(|m| matches!(m, ControlMessage::MemberJoined(_)))
        .await?;
    let mut group = alice.open_media_stream().await?;
    let (envelope, payload) = video(&alice, 1, 0);
    Client::write_frame(&mut group, envelope, &payload).await?;
    bob.next_frame().await?;

    alice.send_control(&ControlMessage::Leave).await?;
    let left = bob
        .expect_control(|m| matches!(m, ControlMessage::MemberLeft { .. }))
        .await?;
    assert_eq!(
        left,
        ControlMessage::MemberLeft {
            member: alice.member,
            reason: LeaveReason::Left
        }
    );
    drop(group);
    Ok(())
}
