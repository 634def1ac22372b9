//! The recorder end to end, without any key: a room of three members is recorded into a
//! local directory and into an S3-compatible server (moto) on loopback; every frame sent
//! is in the archive, sealed; the archive rides through a storage outage, and a full spool
//! drops whole segments and says so.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use sealroom_client::RoomSecret;
use sealroom_record::archive::{LossKind, Record};
use sealroom_record::{Recorder, RecorderEvent, StorageConfig};
use sealroom_test_support::{Member, TempDir, poll_until};
use support::*;

const MARKER: &[u8] = b"PLAINTEXT-MARKER-4d1c";

/// Three members, each publishing audio (track 1), video (track 2) and data (track 3).
struct Room {
    members: Vec<Member>,
    tracks: Vec<(
        sealroom_client::AudioTrack,
        sealroom_client::VideoTrack,
        sealroom_client::DataTrack,
    )>,
}

impl Room {
    async fn join(relay: &sealroom_relay::Relay, secret: &RoomSecret) -> anyhow::Result<Self> {
        let mut members = Vec::new();
        let mut tracks = Vec::new();
        for user in ["alice", "bob", "carol"] {
            let m = member(relay, user, secret).await?;
            let audio = m.room.publish_audio(1).await?;
            let video = m.room.publish_video(2).await?;
            let data = m.room.publish_data(3).await?;
            tracks.push((audio, video, data));
            members.push(m);
        }
        Ok(Self { members, tracks })
    }

    /// `n` rounds: each member sends one audio frame, one video frame (a keyframe every
    /// ten) and one data message, each carrying the plaintext marker. Frames sent.
    async fn send(&self, rounds: u32) -> anyhow::Result<u64> {
        for round in 0..rounds {
            for (audio, video, data) in &self.tracks {
                let mut payload = MARKER.to_vec();
                payload.extend_from_slice(&round.to_be_bytes());
                audio.send(payload.clone())?;
                video.send(payload.clone(), round % 10 == 0)?;
                data.send(payload).await?;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(u64::from(rounds) * 3 * 3)
    }
}

async fn wait_recorded(recorder: &Recorder, frames: u64) -> anyhow::Result<()> {
    let stats = recorder.stats();
    poll_until(
        "the recorder wrote every frame",
        || stats.frames_recorded.load(Ordering::Relaxed) >= frames,
        || format!("{} recorded", stats.frames_recorded.load(Ordering::Relaxed)),
    )
    .await
}

fn assert_all_frames(stored: &Stored, room: &Room, rounds: u32) {
    for m in &room.members {
        let frames = frames_from(&stored.records, m.id);
        for track in 1..=3 {
            let on_track = frames
                .iter()
                .filter(|r| matches!(r, Record::Frame { envelope, .. } if envelope.track == track))
                .count();
            assert_eq!(
                on_track, rounds as usize,
                "{}'s track {track}: every frame sent is recorded once",
                m.name
            );
        }
    }
    assert!(
        !stored.raw.windows(MARKER.len()).any(|w| w == MARKER),
        "no plaintext in the archive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_of_three_is_recorded_sealed_into_a_local_directory() -> anyhow::Result<()> {
    let relay = relay().await?;
    let secret = RoomSecret::generate();
    let room = Room::join(&relay, &secret).await?;
    let store = TempDir::new("rec-store");
    let spool = TempDir::new("rec-spool");
    let url = format!("file://{}", store.path().display());
    let config = recorder_config(&relay, StorageConfig::new(url), spool.path(), 8 * 1024);
    let (recorder, _events) = Recorder::start(config).await?;
    let rounds = 40;
    let sent = room.send(rounds).await?;
    wait_recorded(&recorder, sent).await?;
    let summary = recorder.stop().await;
    assert_eq!(summary.left_in_spool, 0);
    let dir = store.path().join("rec-1");
    let stored = read_local(&dir)?;
    assert_eq!(stored.problems, Vec::<String>::new());
    assert_all_frames(&stored, &room, rounds);
    assert!(stored.segments > 1, "segments rotate by size");
    assert_eq!(stored.manifest.segments.len(), stored.segments);
    assert_eq!(stored.manifest.room, ROOM);
    assert!(
        stored
            .records
            .iter()
            .any(|r| matches!(r, Record::Joined { rejoin: false, .. })),
        "the join is recorded"
    );
    let spooled: Vec<_> = std::fs::read_dir(spool.path())?.collect();
    assert!(
        spooled.is_empty(),
        "no copy is kept after upload: {spooled:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_is_ridden_through_and_a_full_spool_drops_the_oldest_segment()
-> anyhow::Result<()> {
    let Some(moto) = Moto::start().await? else {
        return Ok(());
    };
    moto.create_bucket("rec").await?;
    let proxy = Proxy::start(moto.addr).await?;
    let relay = relay().await?;
    let secret = RoomSecret::generate();
    let room = Room::join(&relay, &secret).await?;
    let spool = TempDir::new("rec-spool-s3");
    let mut config = recorder_config(
        &relay,
        s3_storage("rec", proxy.addr),
        spool.path(),
        4 * 1024,
    );
    // Room for a few segments while storage is away, then the oldest go.
    config.spool_max_bytes = 16 * 1024;
    let (recorder, mut events) = Recorder::start(config).await?;
    let sent_before = room.send(10).await?;
    wait_recorded(&recorder, sent_before).await?;

    proxy.cut();
    let sent_during = room.send(60).await?;
    wait_recorded(&recorder, sent_before + sent_during).await?;
    let stats = recorder.stats();
    poll_until(
        "uploads fail and the spool overflows",
        || {
            stats.upload_failures.load(Ordering::Relaxed) > 0
                && stats.segments_dropped.load(Ordering::Relaxed) > 0
        },
        || format!("{stats:?}"),
    )
    .await?;
    proxy.restore();
    let sent_after = room.send(10).await?;
    wait_recorded(&recorder, sent_before + sent_during + sent_after).await?;
    let summary = recorder.stop().await;
    assert_eq!(
        summary.left_in_spool, 0,
        "everything left is stored once storage is back"
    );
    let mut dropped_events = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event, RecorderEvent::SegmentDropped(_)) {
            dropped_events += 1;
        }
    }
    let dropped = summary.manifest.dropped.clone();
    assert_eq!(
        dropped.len() as u64,
        stats.segments_dropped.load(Ordering::Relaxed)
    );
    assert_eq!(dropped_events, dropped.len(), "each drop is an event");

    // Read it back from S3 through object_store, as the opener does.
    let storage = sealroom_record::Storage::open(&s3_storage("rec", moto.addr), "rec-1")?;
    let names = storage.list("segments").await?;
    let mut records = Vec::new();
    for name in &names {
        let bytes = storage.get(name).await?.expect("listed");
        let contents = sealroom_record::archive::read_segment(name, bytes);
        assert!(contents.problems.is_empty(), "{:?}", contents.problems);
        records.extend(contents.records.into_iter().map(|(_, r)| r));
    }
    assert!(
        names.iter().all(|n| !dropped.iter().any(|d| &d.name == n)),
        "a dropped segment is not stored"
    );
    // Exactly the frames of the dropped segments are missing: the bound the spool allows.
    let frames: u64 = records
        .iter()
        .filter(|r| matches!(r, Record::Frame { .. }))
        .count() as u64;
    let total = sent_before + sent_during + sent_after;
    let losses: Vec<_> = records
        .iter()
        .filter(|r| {
            matches!(
                r,
                Record::Loss {
                    kind: LossKind::SpoolOverflow,
                    ..
                }
            )
        })
        .collect();
    // A note can be lost with a later dropped segment; the manifest lists every drop.
    assert!(
        !losses.is_empty() && losses.len() <= dropped.len(),
        "dropped segments are noted in the archive: {} notes, {} drops",
        losses.len(),
        dropped.len()
    );
    let dropped_frames: u64 = dropped.iter().map(|d| d.frames).sum();
    assert!(dropped_frames > 0);
    assert_eq!(
        frames + dropped_frames,
        total,
        "every frame sent is stored, or was in a dropped segment"
    );
    Ok(())
}
