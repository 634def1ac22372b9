//! Call quality as members see it: periodic `Event::Stats` and `Room::stats` with per
//! track counts, losses and the verdict; forgery attempts counted per sender and, past a
//! threshold, the sender blocked.

use std::time::Duration;

use bytes::Bytes;
use sealroom_client::{CipherSuite, ClientConfig, Event, MediaKind, RoomSecret, RoomStats, Trust};
use sealroom_test_support::Member;

use crate::support::TestRelay;

/// Join `user` in room "q" with a client made from `config`.
async fn join(
    relay: &TestRelay,
    user: &str,
    secret: &RoomSecret,
    config: ClientConfig,
) -> anyhow::Result<Member> {
    let client = sealroom_client::Client::new(config)?;
    let ticket = relay.ticket("app-a", user, "q", sealroom_relay::Grants::all());
    let (room, events) = client
        .join(relay.relay.local_addr(), "localhost", ticket, secret)
        .await?;
    Ok(Member::collecting(client, room, events).named(user))
}

fn config(relay: &TestRelay) -> ClientConfig {
    ClientConfig::new(Trust::Pinned(relay.relay.cert_sha256()))
}

/// The latest `Event::Stats` in the log.
fn last_stats(member: &Member) -> Option<RoomStats> {
    member
        .log
        .snapshot()
        .into_iter()
        .rev()
        .find_map(|e| match e {
            Event::Stats(stats) => Some(*stats),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_every_track_both_ways_with_no_loss_on_loopback() -> anyhow::Result<()> {
    let relay = TestRelay::start().await?;
    let secret = RoomSecret::generate();
    let every = Some(Duration::from_millis(200));
    let alice = join(
        &relay,
        "alice",
        &secret,
        config(&relay).stats_interval(every),
    )
    .await?;
    let bob = join(&relay, "bob", &secret, config(&relay).stats_interval(every)).await?;

    let audio = alice.room.publish_audio(1).await?;
    let chat = alice.room.publish_data(2).await?;
    bob.log
        .wait_for("alice's two tracks", |events| {
            events
                .iter()
                .filter(|e| matches!(e, Event::TrackPublished { .. }))
                .count()
                >= 2
        })
        .await?;
    for i in 0..40u32 {
        audio.send(Bytes::from(vec![7u8; 100]))?;
        chat.send(Bytes::from(format!("message {i}"))).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bob.log
        .wait_for("every frame, then a report that counts them", |events| {
            events.iter().rev().any(|e| {
                matches!(e, Event::Stats(stats)
                    if stats.quality.received.iter().map(|t| t.frames).sum::<u64>() == 80)
            })
        })
        .await?;

    let stats = last_stats(&bob).expect("a report");
    let quality = &stats.quality;
    assert_eq!(quality.received.len(), 2, "{quality:#?}");
    for track in &quality.received {
        assert_eq!(track.sender, alice.id);
        assert_eq!(track.user.as_deref(), Some("alice"));
        assert_eq!(track.frames, 40, "{track:?}");
        assert_eq!(track.lost, 0, "loopback loses nothing: {track:?}");
        assert_eq!(track.unopenable, 0);
        assert_eq!(track.dropped.total(), 0);
        assert!(
            track.bytes >= 40 * 100 || track.kind == MediaKind::Data,
            "{track:?}"
        );
    }
    let connection = quality.connection.expect("connected");
    assert!(
        connection.rtt > Duration::ZERO && connection.cwnd > 0,
        "{connection:?}"
    );
    assert!(quality.forgeries.is_empty());
    // Loopback is good unless the machine stalls for 200 ms; the verdict only follows the
    // rule, so check it against the rule rather than assume the machine's speed.
    let rule = sealroom_frame::quality::PathQuality {
        rtt: connection.rtt,
        loss: quality
            .received
            .iter()
            .map(|t| t.loss)
            .fold(connection.loss, f64::max),
        jitter: quality
            .received
            .iter()
            .map(|t| t.jitter)
            .max()
            .unwrap_or_default(),
    };
    assert_eq!(quality.verdict, rule.verdict());

    // The sender's side: the same counts on demand, by track and kind.
    let sent = alice.room.stats();
    let by_track: Vec<(u32, MediaKind, u64)> = sent
        .quality
        .sent
        .iter()
        .map(|t| (t.track, t.kind, t.frames))
        .collect();
    assert_eq!(
        by_track,
        vec![(1, MediaKind::Audio, 40), (2, MediaKind::Data, 40)]
    );
    assert_eq!(sent.frames_sent, 80);

    // With reports off, none arrive, and the room still answers on demand.
    let quiet = join(
        &relay,
        "carol",
        &secret,
        config(&relay).stats_interval(None),
    )
    .await?;
    audio.send(Bytes::from(vec![1u8; 100]))?;
    quiet
        .log
        .wait_for("alice's next frame", |events| {
            events.iter().any(|e| matches!(e, Event::Frame(_)))
        })
        .await?;
    assert!(last_stats(&quiet).is_none(), "reports are off");
    let on_demand = quiet.room.stats();
    assert_eq!(on_demand.quality.received.len(), 1);
    assert_eq!(on_demand.quality.received[0].frames, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_failing_authentication_are_counted_per_sender_and_block_it_past_the_threshold()
-> anyhow::Result<()> {
    let relay = TestRelay::start().await?;
    let secret = RoomSecret::generate();
    let guarded = config(&relay).forgery_threshold(Some(5));
    let bob = join(&relay, "bob", &secret, guarded).await?;
    let alice = join(&relay, "alice", &secret, config(&relay)).await?;
    // Mallory has a ticket but not the room secret: everything she sends fails to open.
    let mallory = join(&relay, "mallory", &RoomSecret::generate(), config(&relay)).await?;
    bob.log
        .wait_for("alice and mallory", |events| {
            events
                .iter()
                .filter(|e| matches!(e, Event::MemberJoined(_)))
                .count()
                >= 2
        })
        .await?;

    let forged = mallory.room.publish_data(1).await?;
    for i in 0..12 {
        forged.send(Bytes::from(format!("forged {i}"))).await?;
    }
    let honest = alice.room.publish_data(1).await?;
    honest
        .send(Bytes::from_static(b"after the forgeries"))
        .await?;
    bob.log
        .wait_for("alice's message", |events| {
            events
                .iter()
                .any(|e| matches!(e, Event::Frame(f) if f.payload == "after the forgeries"))
        })
        .await?;
    // Mallory's twelve frames were all handed to the relay before alice's message, on one
    // ordered stream; wait until bob has dealt with all of them.
    sealroom_test_support::poll_until(
        "bob has counted mallory's twelve frames",
        || {
            bob.room
                .stats()
                .quality
                .received
                .iter()
                .any(|t| t.sender == mallory.id && t.unopenable + t.dropped.blocked_sender == 12)
        },
        || format!("{:#?}", bob.room.stats().quality),
    )
    .await?;
    // The counters move before the events reach bob's log (a task collects them): wait for
    // the block and the four reports ahead of it.
    bob.log
        .wait_for("mallory blocked, after four reports", |events| {
            let reports = events
                .iter()
                .filter(|e| matches!(e, Event::CouldNotOpen(f) if f.sender == mallory.id))
                .count();
            reports >= 4
                && events
                    .iter()
                    .any(|e| matches!(e, Event::SenderBlocked { .. }))
        })
        .await?;

    let events = bob.log.snapshot();
    let blocked: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::SenderBlocked {
                member,
                user,
                failures,
            } => Some((*member, user.clone(), *failures)),
            _ => None,
        })
        .collect();
    assert_eq!(
        blocked,
        vec![(mallory.id, Some(String::from("mallory")), 5)]
    );
    let reported = events
        .iter()
        .filter(|e| matches!(e, Event::CouldNotOpen(f) if f.sender == mallory.id))
        .count();
    assert_eq!(reported, 4, "the four failures before the one that blocked");

    let stats = bob.room.stats();
    let forgery = stats
        .quality
        .forgeries
        .iter()
        .find(|f| f.sender == mallory.id)
        .expect("mallory's forgeries counted");
    assert_eq!(forgery.failures, 5, "blocked frames are not opened");
    assert!(forgery.blocked);
    assert_eq!(forgery.suite, CipherSuite::default());
    assert_eq!(forgery.user.as_deref(), Some("mallory"));
    let track = stats
        .quality
        .received
        .iter()
        .find(|t| t.sender == mallory.id)
        .expect("mallory's track");
    assert_eq!((track.unopenable, track.dropped.blocked_sender), (5, 7));
    assert!(!stats.quality.forgeries.iter().any(|f| f.sender == alice.id));
    Ok(())
}
