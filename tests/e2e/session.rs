//! The life of a session: a second session of the same user replaces the first; leaving
//! is seen by everyone and delivers the messages sent before it; a client that pins another
//! certificate never gets in.

use bytes::Bytes;
use sealroom_client::{
    DisconnectReason, ErrorCode, Event, JoinError, LeaveReason, PublishError, RoomSecret,
};

use crate::support::{TestRelay, find};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_session_of_the_same_user_replaces_the_first() -> anyhow::Result<()> {
    let relay = TestRelay::start().await?;
    let secret = RoomSecret::generate();
    let first = relay.join("app-a", "alice", "x", &secret).await?;
    let bob = relay.join("app-a", "bob", "x", &secret).await?;
    let second = relay.join("app-a", "alice", "x", &secret).await?;

    first
        .log
        .wait_for("the first session to end", |events| {
            events.iter().any(|e| matches!(e, Event::Disconnected(_)))
        })
        .await?;
    let reason = find(&first.log.snapshot(), |e| match e {
        Event::Disconnected(reason) => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(reason.and_then(|r| r.code()), Some(ErrorCode::Replaced));
    assert!(first.room.is_closed());

    bob.log
        .wait_for("alice replaced", |events| {
            events.iter().any(|e| {
                matches!(e, Event::MemberLeft { member, reason: LeaveReason::Replaced, .. } if *member == first.id)
            })
        })
        .await?;

    // The new session works.
    let chat = second.room.publish_data(1).await?;
    chat.send(Bytes::from_static(b"i am back")).await?;
    bob.log
        .wait_for("the new session's message", |events| {
            events
                .iter()
                .any(|e| matches!(e, Event::Frame(f) if f.sender == second.id && f.payload == "i am back"))
        })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_ends_the_session_and_the_others_see_it() -> anyhow::Result<()> {
    let relay = TestRelay::start().await?;
    let secret = RoomSecret::generate();
    let alice = relay.join("app-a", "alice", "x", &secret).await?;
    let bob = relay.join("app-a", "bob", "x", &secret).await?;
    alice
        .log
        .wait_for("bob joined", |events| {
            events
                .iter()
                .any(|e| matches!(e, Event::MemberJoined(m) if m.user == "bob"))
        })
        .await?;
    let chat = bob.room.publish_data(1).await?;

    bob.room.leave().await;
    assert!(bob.room.is_closed());
    bob.log
        .wait_for("bob's own end", |events| {
            events
                .last()
                .is_some_and(|e| *e == Event::Disconnected(DisconnectReason::Left))
        })
        .await?;
    alice
        .log
        .wait_for("bob left", |events| {
            events.iter().any(|e| {
                matches!(e, Event::MemberLeft { member, reason: LeaveReason::Left, user } if *member == bob.id && user.as_deref() == Some("bob"))
            })
        })
        .await?;
    assert_eq!(
        chat.send(Bytes::from_static(b"too late")).await,
        Err(PublishError::Closed)
    );
    assert!(alice.room.members().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_just_before_leaving_reach_the_others() -> anyhow::Result<()> {
    const SENT: usize = 40;
    let relay = TestRelay::start().await?;
    let secret = RoomSecret::generate();
    let alice = relay.join("app-a", "alice", "x", &secret).await?;
    let bob = relay.join("app-a", "bob", "x", &secret).await?;
    // One track whose stream the relay already reads, one whose stream the last messages open.
    let warm = bob.room.publish_data(1).await?;
    warm.send(Bytes::from_static(b"warm")).await?;
    alice
        .log
        .wait_for_payload("the first message", b"warm")
        .await?;
    let fresh = bob.room.publish_data(2).await?;

    let mut expected = Vec::new();
    for i in 0..SENT {
        let (track, text) = if i % 2 == 0 {
            (&warm, format!("warm {i}"))
        } else {
            (&fresh, format!("fresh {i}"))
        };
        // Queued for the track's writer: `send` returns before the message is on the wire.
        track.send(Bytes::from(text.clone())).await?;
        expected.push(text);
    }
    bob.room.leave().await;

    // The frames and MemberLeft travel on different streams: either may be seen first.
    alice
        .log
        .wait_for("every message and bob's departure", |events| {
            let messages = events
                .iter()
                .filter(|e| matches!(e, Event::Frame(f) if f.sender == bob.id))
                .count();
            let left = events
                .iter()
                .any(|e| matches!(e, Event::MemberLeft { member, .. } if *member == bob.id));
            left && messages > SENT
        })
        .await?;
    let received: Vec<String> = alice
        .log
        .frames_from(bob.id)
        .iter()
        .filter(|f| f.payload != "warm")
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
        .collect();
    let of_track = |messages: &[String], prefix: &str| -> Vec<String> {
        messages
            .iter()
            .filter(|m| m.starts_with(prefix))
            .cloned()
            .collect()
    };
    for track in ["warm ", "fresh "] {
        assert_eq!(
            of_track(&received, track),
            of_track(&expected, track),
            "every message of the {track}track, once, in order"
        );
    }
    // Bob is out of the roster, yet his frames, some delivered after his departure, still
    // name their user.
    assert!(alice.room.members().iter().all(|m| m.id != bob.id));
    assert_eq!(alice.room.user_of(bob.id).as_deref(), Some("bob"));
    assert_eq!(alice.room.user_of(alice.id), None, "not in its own roster");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_pinning_another_certificate_does_not_connect() -> anyhow::Result<()> {
    let relay = TestRelay::start().await?;
    let client = sealroom_client::Client::new(sealroom_client::ClientConfig::new(
        sealroom_client::Trust::Pinned([0x42; 32]),
    ))?;
    let ticket = relay.ticket("app-a", "alice", "x", sealroom_relay::Grants::all());
    let result = client
        .join(
            relay.relay.local_addr(),
            "localhost",
            ticket,
            &RoomSecret::generate(),
        )
        .await;
    assert!(
        matches!(result, Err(JoinError::PinMismatch { .. })),
        "{result:?}"
    );
    assert_eq!(relay.relay.stats().join_attempts, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_whose_video_group_was_dropped_asks_for_a_keyframe() -> anyhow::Result<()> {
    // A group queue smaller than one frame: the relay drops the rest of any group whose
    // next frame would not fit, and resets that group's stream towards the receiver.
    let limits = sealroom_relay::Limits {
        video_group_queue_bytes: 2000,
        ..sealroom_relay::Limits::default().unlimited_rates()
    };
    let relay = TestRelay::with_limits(limits).await?;
    let secret = RoomSecret::generate();
    let alice = relay.join("app-a", "alice", "x", &secret).await?;
    let bob = relay.join("app-a", "bob", "x", &secret).await?;

    let camera = alice.room.publish_video(7).await?;
    camera.send(Bytes::from_static(b"small keyframe"), true)?;
    bob.log
        .wait_for("the keyframe", |events| {
            events
                .iter()
                .any(|e| matches!(e, Event::Frame(f) if f.sender == alice.id))
        })
        .await?;
    camera.send(Bytes::from(vec![7u8; 3000]), false)?;

    alice
        .log
        .wait_for("a keyframe request from bob", |events| {
            events.iter().any(|e| {
                *e == Event::KeyframeRequested {
                    track: 7,
                    by: bob.id,
                }
            })
        })
        .await?;
    // The relay asks alice on bob's behalf as soon as it resets the group, so her request
    // can come before bob's client has seen the reset. Bob counts his request before
    // sending it: once the relay has counted a request from a member, bob has asked.
    relay
        .wait_stats("bob's own keyframe request", |stats| {
            stats.keyframe_requests.member_forwarded + stats.keyframe_requests.member_coalesced >= 1
        })
        .await?;
    assert_eq!(bob.room.stats().keyframes_requested, 1);
    assert_eq!(
        bob.frames_from(alice.id).len(),
        1,
        "the oversized frame was dropped"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_room_leaves_it() -> anyhow::Result<()> {
    let relay = TestRelay::start().await?;
    let secret = RoomSecret::generate();
    let alice = relay.join("app-a", "alice", "x", &secret).await?;
    let bob = relay.join("app-a", "bob", "x", &secret).await?;
    let bob_id = bob.id;
    let bob_log = bob.log.clone();
    drop(bob);
    alice
        .log
        .wait_for("bob left", |events| {
            events.iter().any(|e| {
                matches!(e, Event::MemberLeft { member, reason: LeaveReason::Left, .. } if *member == bob_id)
            })
        })
        .await?;
    bob_log
        .wait_for("bob's session end", |events| {
            events.contains(&Event::Disconnected(DisconnectReason::Left))
        })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_track_dropped_right_after_sending_delivers_every_message_in_order()
-> anyhow::Result<()> {
    const ROUNDS: u32 = 5;
    const MESSAGES: u8 = 10;
    let relay = TestRelay::start().await?;
    let secret = RoomSecret::generate();
    let alice = relay.join("app-a", "alice", "x", &secret).await?;
    let bob = relay.join("app-a", "bob", "x", &secret).await?;
    alice
        .log
        .wait_for("bob joined", |events| {
            events
                .iter()
                .any(|e| matches!(e, Event::MemberJoined(m) if m.user == "bob"))
        })
        .await?;
    // Each round: a track, its messages, and the track dropped at once, with the last
    // messages still on their way to the relay.
    for track in 1..=ROUNDS {
        let chat = bob.room.publish_data(track).await?;
        for n in 0..MESSAGES {
            chat.send(Bytes::from(vec![n])).await?;
        }
        drop(chat);
    }
    alice
        .log
        .wait_for("every message and every track unpublished", |events| {
            let of_bob = |e: &&Event| match e {
                Event::Frame(f) => f.sender == bob.id,
                Event::TrackUnpublished { member, .. } => *member == bob.id,
                _ => false,
            };
            let seen = events.iter().filter(of_bob).count();
            seen == (ROUNDS * (u32::from(MESSAGES) + 1)) as usize
        })
        .await?;
    let events = alice.log.snapshot();
    for track in 1..=ROUNDS {
        let received: Vec<u8> = events
            .iter()
            .filter_map(|e| match e {
                Event::Frame(f) if f.sender == bob.id && f.track == track => {
                    f.payload.first().copied()
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            received,
            (0..MESSAGES).collect::<Vec<_>>(),
            "track {track}: every message, in order"
        );
        // Nothing of the track reaches the relay after its unpublish (it would announce
        // the track again and forward the rest on a second stream).
        let unpublished = events
            .iter()
            .position(|e| matches!(e, Event::TrackUnpublished { member, track: t } if *member == bob.id && *t == track));
        let announced_after = unpublished.is_some_and(|at| {
            events[at..].iter().any(
                |e| matches!(e, Event::TrackPublished { member, track: t } if *member == bob.id && t.track == track),
            )
        });
        assert!(
            !announced_after,
            "track {track} announced again after its unpublish"
        );
    }
    Ok(())
}
