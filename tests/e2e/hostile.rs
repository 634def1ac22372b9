//! Members that cannot or will not play by the rules: a wrong room secret, a forged
//! sender id.

use bytes::Bytes;
use sealroom_client::{Envelope, Event, Flags, MediaKind, OpenError, RoomSecret};
use sealroom_relay::DropReason;

use crate::support::TestRelay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_a_wrong_secret_cannot_open_and_the_others_are_unaffected()
-> anyhow::Result<()> {
    let relay = TestRelay::start().await?;
    let secret = RoomSecret::generate();
    let alice = relay.join("app-a", "alice", "x", &secret).await?;
    let bob = relay.join("app-a", "bob", "x", &secret).await?;
    let eve = relay
        .join("app-a", "eve", "x", &RoomSecret::generate())
        .await?;

    let chat = alice.room.publish_data(1).await?;
    for i in 0..10 {
        chat.send(Bytes::from(format!("alice says {i}"))).await?;
    }
    let eves = eve.room.publish_data(1).await?;
    eves.send(Bytes::from_static(b"eve says hi")).await?;

    eve.log
        .wait_for("ten unopenable frames", |events| {
            events
                .iter()
                .filter(|e| matches!(e, Event::CouldNotOpen(_)))
                .count()
                >= 10
        })
        .await?;
    for event in eve.log.snapshot() {
        match event {
            Event::CouldNotOpen(frame) => {
                assert_eq!(frame.sender, alice.id);
                assert_eq!(frame.reason, OpenError::AuthenticationFailed);
            }
            Event::Frame(frame) => panic!("eve opened a frame from {}", frame.sender),
            _ => {}
        }
    }
    // Bob opens all of alice's messages, in order, and cannot open eve's.
    bob.log
        .wait_for("alice's messages and eve's frame", |events| {
            events
                .iter()
                .filter(|e| matches!(e, Event::Frame(_)))
                .count()
                >= 10
                && events.iter().any(|e| matches!(e, Event::CouldNotOpen(_)))
        })
        .await?;
    let got: Vec<Bytes> = bob
        .frames_from(alice.id)
        .into_iter()
        .map(|f| f.payload)
        .collect();
    let want: Vec<Bytes> = (0..10)
        .map(|i| Bytes::from(format!("alice says {i}")))
        .collect();
    assert_eq!(got, want);
    assert!(bob.frames_from(eve.id).is_empty());

    // The room keeps working after the failures.
    chat.send(Bytes::from_static(b"still here")).await?;
    bob.log
        .wait_for("the message after the failures", |events| {
            events
                .iter()
                .any(|e| matches!(e, Event::Frame(f) if f.payload == "still here"))
        })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_claiming_another_sender_are_dropped() -> anyhow::Result<()> {
    let relay = TestRelay::start().await?;
    let secret = RoomSecret::generate();
    let alice = relay.join("app-a", "alice", "x", &secret).await?;
    let bob = relay.join("app-a", "bob", "x", &secret).await?;
    let mallory = relay.join("app-a", "mallory", "x", &secret).await?;

    let lie = |kind: MediaKind, flags: Flags, seq: u32| Envelope {
        kind,
        flags,
        sender: alice.id,
        track: 1,
        group: 0,
        seq,
        timestamp_us: 0,
    };
    // On datagrams and on streams.
    for seq in 0..5 {
        mallory
            .room
            .dangerous()
            .send_frame_as(lie(MediaKind::Audio, Flags::empty(), seq), b"forged audio")
            .await?;
    }
    for seq in 0..2 {
        mallory
            .room
            .dangerous()
            .send_frame_as(lie(MediaKind::Data, Flags::empty(), seq), b"forged data")
            .await?;
    }
    relay
        .wait_stats("seven forged frames dropped", |stats| {
            stats.dropped(DropReason::ForgedSender) >= 7
        })
        .await?;

    // An honest frame from mallory still goes through, and nothing forged did.
    let audio = mallory.room.publish_audio(1).await?;
    audio.send(Bytes::from_static(b"honest audio"))?;
    bob.log
        .wait_for("mallory's honest frame", |events| {
            events
                .iter()
                .any(|e| matches!(e, Event::Frame(f) if f.sender == mallory.id))
        })
        .await?;
    for member in [&alice, &bob] {
        for event in member.log.snapshot() {
            if let Event::Frame(frame) = &event {
                assert_ne!(frame.payload, "forged audio");
                assert_ne!(frame.payload, "forged data");
            }
            assert!(!matches!(event, Event::CouldNotOpen(_)));
        }
    }
    assert_eq!(relay.relay.stats().dropped(DropReason::ForgedSender), 7);
    Ok(())
}
