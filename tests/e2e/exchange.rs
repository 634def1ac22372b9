//! Members exchange audio, video and data; every receiver opens every frame of every
//! sender, reliable data arrives exactly once and in order, and the relay never sees a
//! byte of plaintext.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use sealroom_client::{Event, Flags, MediaKind, RoomSecret};

use crate::support::{Member, TestRelay};

/// Appears in every plaintext the members publish; must never reach the relay.
const MARKER: &[u8] = b"PLAINTEXT-MARKER-7f3a";
const AUDIO_FRAMES: usize = 12;
const GROUPS: usize = 2;
const FRAMES_PER_GROUP: usize = 5;
const RELIABLE: usize = 50;
const UNRELIABLE: usize = 5;

fn plaintext(sender: &str, what: &str, index: usize, len: usize) -> Bytes {
    let mut bytes = format!(
        "{}|{sender}|{what}|{index}|",
        String::from_utf8_lossy(MARKER)
    )
    .into_bytes();
    bytes.resize(len.max(bytes.len()), b'.');
    Bytes::from(bytes)
}

/// Keyframes are larger than the frames that follow them.
fn video_len(index: usize) -> usize {
    if index.is_multiple_of(FRAMES_PER_GROUP) {
        4000
    } else {
        1000
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_receiver_opens_every_frame_of_every_sender() -> anyhow::Result<()> {
    let relay = TestRelay::start().await?;
    let tapped = Arc::new(AtomicU64::new(0));
    let marker_hits = Arc::new(AtomicU64::new(0));
    relay.relay.set_payload_tap(Some({
        let tapped = tapped.clone();
        let marker_hits = marker_hits.clone();
        Arc::new(move |bytes: &[u8]| {
            tapped.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if bytes.windows(MARKER.len()).any(|w| w == MARKER) {
                marker_hits.fetch_add(1, Ordering::Relaxed);
            }
        })
    }));

    let secret = RoomSecret::generate();
    let names = ["alice", "bob", "carol", "dave"];
    let mut members: Vec<Member> = Vec::new();
    for name in names {
        members.push(relay.join("app-a", name, "x", &secret).await?);
    }
    let ids: HashMap<&str, u32> = names
        .iter()
        .zip(&members)
        .map(|(n, m)| (*n, m.id))
        .collect();
    let others = |me: usize| (0..names.len()).filter(move |&i| i != me);

    let mut tracks = Vec::new();
    for member in &members {
        tracks.push((
            member.room.publish_audio(1).await?,
            member.room.publish_video(2).await?,
            member.room.publish_data(3).await?,
        ));
    }

    // Datagram bursts stay below the relay's per-receiver datagram queue (it drops the
    // oldest beyond it, as real-time media should), so each kind is sent in its own phase.
    let count = |events: &[Event], kind: MediaKind| {
        events
            .iter()
            .filter(|e| matches!(e, Event::Frame(f) if f.kind == kind))
            .count()
    };
    // Audio: small frames on datagrams and one that needs a stream of its own.
    for (name, (audio, _, _)) in names.iter().zip(&tracks) {
        for i in 0..AUDIO_FRAMES {
            audio.send(plaintext(name, "audio", i, 100))?;
        }
        audio.send(plaintext(name, "audio", AUDIO_FRAMES, 3000))?;
    }
    for member in &members {
        let expected = (AUDIO_FRAMES + 1) * (names.len() - 1);
        member
            .log
            .wait_for("audio of every other member", |events| {
                count(events, MediaKind::Audio) >= expected
            })
            .await?;
    }
    // Data: reliable messages in order, and a few unreliable ones.
    for (name, (_, _, data)) in names.iter().zip(&tracks) {
        for i in 0..RELIABLE {
            data.send(plaintext(name, "reliable", i, 60)).await?;
        }
        for i in 0..UNRELIABLE {
            data.send_unreliable(plaintext(name, "unreliable", i, 60))?;
        }
    }
    for member in &members {
        let expected = (RELIABLE + UNRELIABLE) * (names.len() - 1);
        member
            .log
            .wait_for("data of every other member", |events| {
                count(events, MediaKind::Data) >= expected
            })
            .await?;
    }
    // Video: one group at a time (a keyframe queued behind an unsent group makes that group
    // stale by design), each group fully received before the next is sent.
    for group in 0..GROUPS {
        for (name, (_, video, _)) in names.iter().zip(&tracks) {
            for i in 0..FRAMES_PER_GROUP {
                let index = group * FRAMES_PER_GROUP + i;
                video.send(plaintext(name, "video", index, video_len(index)), i == 0)?;
            }
        }
        let expected = (group + 1) * FRAMES_PER_GROUP * (names.len() - 1);
        for member in &members {
            member
                .log
                .wait_for("video of every other member", |events| {
                    count(events, MediaKind::Video) >= expected
                })
                .await
                .map_err(|e| e.context(format!("relay: {:?}", relay.relay.stats())))?;
        }
    }

    let per_receiver =
        (names.len() - 1) * (AUDIO_FRAMES + 1 + RELIABLE + UNRELIABLE + GROUPS * FRAMES_PER_GROUP);
    for member in &members {
        member
            .log
            .wait_for("every frame of every other member", |events| {
                events
                    .iter()
                    .filter(|e| matches!(e, Event::Frame(_)))
                    .count()
                    >= per_receiver
            })
            .await?;
    }

    for (me, member) in members.iter().enumerate() {
        let events = member.log.snapshot();
        assert!(
            !events.iter().any(|e| matches!(e, Event::CouldNotOpen(_))),
            "{} could not open a frame",
            names[me]
        );
        assert_eq!(
            member.log.frames().len(),
            per_receiver,
            "{} got extra frames",
            names[me]
        );
        assert!(
            member.frames_from(member.id).is_empty(),
            "own frames came back"
        );
        for other in others(me) {
            let sender = names[other];
            let frames = member.frames_from(ids[sender]);
            let of_kind = |kind: MediaKind, unreliable: bool| -> Vec<Bytes> {
                frames
                    .iter()
                    .filter(|f| {
                        f.kind == kind && f.envelope.flags.contains(Flags::UNRELIABLE) == unreliable
                    })
                    .map(|f| f.payload.clone())
                    .collect()
            };
            let mut audio = of_kind(MediaKind::Audio, false);
            audio.sort();
            let mut want: Vec<Bytes> = (0..AUDIO_FRAMES)
                .map(|i| plaintext(sender, "audio", i, 100))
                .chain([plaintext(sender, "audio", AUDIO_FRAMES, 3000)])
                .collect();
            want.sort();
            assert_eq!(audio, want, "{} audio from {sender}", names[me]);

            let reliable = of_kind(MediaKind::Data, false);
            let want: Vec<Bytes> = (0..RELIABLE)
                .map(|i| plaintext(sender, "reliable", i, 60))
                .collect();
            assert_eq!(
                reliable, want,
                "{} reliable data from {sender}: exactly once, in order",
                names[me]
            );

            let mut unreliable = of_kind(MediaKind::Data, true);
            unreliable.sort();
            let want: Vec<Bytes> = (0..UNRELIABLE)
                .map(|i| plaintext(sender, "unreliable", i, 60))
                .collect();
            assert_eq!(
                unreliable, want,
                "{} unreliable data from {sender}",
                names[me]
            );

            // Groups were sent one after the other, so they arrive in that order; within a
            // group, one stream keeps the frames in order, keyframe first.
            let video: Vec<_> = frames
                .iter()
                .filter(|f| f.kind == MediaKind::Video)
                .collect();
            let payloads: Vec<Bytes> = video.iter().map(|f| f.payload.clone()).collect();
            let want: Vec<Bytes> = (0..GROUPS * FRAMES_PER_GROUP)
                .map(|i| plaintext(sender, "video", i, video_len(i)))
                .collect();
            assert_eq!(payloads, want, "{} video from {sender}", names[me]);
            for (i, frame) in video.iter().enumerate() {
                let first = i.is_multiple_of(FRAMES_PER_GROUP);
                assert_eq!(frame.envelope.flags.contains(Flags::GROUP_START), first);
                assert_eq!(frame.envelope.seq as usize, i % FRAMES_PER_GROUP);
                assert_eq!(
                    frame.envelope.group,
                    video[i - i % FRAMES_PER_GROUP].envelope.group
                );
            }
            assert_ne!(
                video[0].envelope.group,
                video[FRAMES_PER_GROUP].envelope.group
            );
        }
    }

    assert!(
        tapped.load(Ordering::Relaxed) > 0,
        "the tap saw the relay's traffic"
    );
    assert_eq!(
        marker_hits.load(Ordering::Relaxed),
        0,
        "the relay saw plaintext"
    );
    Ok(())
}
