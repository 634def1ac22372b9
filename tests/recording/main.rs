//! Recording end to end: real members send real codec payloads (VP8 and Opus made by
//! ffmpeg) and marked data messages; a blind recorder stores the room, sealed; the
//! `sealroom recording open` command opens it with the room secret, and every exported
//! frame is compared with what the members sent.

mod media;
mod open;
mod pending_video;
mod relay_restart;
mod restart;
mod support;
mod unannounced;

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use sealroom_client::{Event, RoomSecret};
use sealroom_record::{Recorder, StorageConfig};
use support::*;

async fn wait_recorded(recorder: &Recorder, frames: u64) -> anyhow::Result<()> {
    let stats = recorder.stats();
    poll_until(
        "the recorder wrote every frame",
        || stats.frames_recorded.load(Ordering::Relaxed) >= frames,
        || {
            format!(
                "{} of {frames}",
                stats.frames_recorded.load(Ordering::Relaxed)
            )
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_of_three_opens_to_exactly_what_it_sent_with_playable_vp8_and_opus()
-> anyhow::Result<()> {
    if !media::have("ffmpeg")? || !media::have("ffprobe")? {
        return Ok(());
    }
    let work = TempDir::new("rec-media");
    let video = media::vp8_frames(work.path(), 320, 240, 45, 15)?;
    let audio = media::opus_packets(work.path(), 50)?;
    assert!(
        video.len() == 45 && audio.len() >= 45,
        "ffmpeg made the media"
    );

    let relay = relay().await?;
    let secret = RoomSecret::generate();
    let store = TempDir::new("rec-store");
    let spool = TempDir::new("rec-spool");
    let config = recorder_config(
        &relay,
        StorageConfig::new(file_url(store.path())),
        spool.path(),
    );
    let (recorder, _events) = Recorder::start(config).await?;
    let mut members = Vec::new();
    for user in ["alice", "bob", "carol"] {
        members.push(member(&relay, user, &secret).await?);
    }
    for m in &members {
        m.log
            .wait_for("the member learns of the recorder", |events| {
                events
                    .iter()
                    .any(|e| matches!(e, Event::RecorderPresent { .. }))
            })
            .await?;
    }
    let cam = members[0].room.publish_video(2).await?;
    let mut sent = 0u64;
    let mut texts: Vec<Vec<String>> = vec![Vec::new(); 3];
    let mut mics = Vec::new();
    let mut chats = Vec::new();
    for m in &members {
        mics.push(m.room.publish_audio(1).await?);
        chats.push(m.room.publish_data(3).await?);
    }
    for (i, packet) in audio.iter().enumerate() {
        for (n, (mic, chat)) in mics.iter().zip(&chats).enumerate() {
            mic.send(packet.clone())?;
            let text = format!("{MARKER} {} says {i}", members[n].name);
            chat.send(text.clone()).await?;
            texts[n].push(text);
            sent += 2;
        }
        if let Some((frame, keyframe)) = video.get(i) {
            cam.send(frame.clone(), *keyframe)?;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recorded = wait_recorded_or_settled(&recorder, sent).await?;
    let summary = recorder.stop().await;
    assert_eq!(summary.left_in_spool, 0);
    assert!(summary.manifest.segments.len() > 1, "segments rotate");
    // Only audio datagrams may have been lost on a loaded machine; anything else is a bug.
    assert!(sent - recorded <= 3 * audio.len() as u64);

    let archive = all_bytes(store.path())?;
    assert!(
        !archive
            .windows(MARKER.len())
            .any(|w| w == MARKER.as_bytes()),
        "the archive never holds the members' plaintext"
    );

    let out = TempDir::new("rec-open");
    let storage = ["--storage", &file_url(store.path())];
    let report = open(&storage, &secret, out.path(), "opus")?;
    assert_eq!(report["frames"].as_u64(), Some(recorded), "{report:#}");
    assert_eq!(
        report["frames_opened"].as_u64(),
        Some(recorded),
        "every frame opens"
    );
    assert_eq!(report["unopenable"].as_array().map(Vec::len), Some(0));
    let gaps = report["gaps"].as_array().context("gaps")?;
    assert!(
        gaps.iter().all(|g| g["kind"] == "audio"),
        "only audio datagrams go missing: {gaps:?}"
    );
    let missing: u64 = gaps.iter().filter_map(|g| g["missing"].as_u64()).sum();

    let mut exported_audio = 0;
    let (ivf, frames, format) = track_file(&report, "alice", "video", 2)?;
    assert_eq!((frames, format.as_str()), (video.len() as u64, "ivf-vp8"));
    assert_eq!(
        media::ffprobe_video(&out.path().join(&ivf))?,
        (video.len() as u64, 320, 240),
        "ffprobe reads every frame at the sent size"
    );
    for (n, m) in members.iter().enumerate() {
        let (ogg, frames, format) = track_file(&report, &m.name, "audio", 1)?;
        assert_eq!(format, "ogg-opus");
        let packets = media::ogg_packets(&std::fs::read(out.path().join(&ogg))?)?;
        assert_eq!(
            packets.len() - 2,
            usize::try_from(frames)?,
            "{}'s Opus packets",
            m.name
        );
        assert!(
            subsequence(&packets[2..], &audio),
            "{}'s Opus packets are the sent ones, byte for byte, in order",
            m.name
        );
        exported_audio += frames;
        let (probed, codec) = media::ffprobe_audio(&out.path().join(&ogg))?;
        assert_eq!((probed, codec.as_str()), (frames, "opus"));
        let (jsonl, _, _) = track_file(&report, &m.name, "data", 3)?;
        assert_eq!(
            data_texts(&out.path().join(jsonl))?,
            texts[n],
            "{}'s messages",
            m.name
        );
    }
    // Every audio packet sent is exported or reported missing, except that a lost first or
    // last packet of a track leaves no hole in the numbering to report.
    let sent_audio = 3 * audio.len() as u64;
    assert!(
        exported_audio + missing <= sent_audio && exported_audio + missing + 6 >= sent_audio,
        "{exported_audio} exported and {missing} reported missing of {sent_audio}"
    );

    // The wrong secret opens nothing and says so for every frame.
    let wrong = TempDir::new("rec-wrong");
    let report = open(&storage, &RoomSecret::generate(), wrong.path(), "raw")?;
    assert_eq!(report["frames_opened"].as_u64(), Some(0));
    assert_eq!(
        report["unopenable"].as_array().map(Vec::len),
        Some(usize::try_from(sent)?)
    );
    assert_eq!(
        report["tracks"].as_array().map(Vec::len),
        Some(0),
        "no plaintext written"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_and_a_leaver_are_recorded_for_exactly_their_time() -> anyhow::Result<()> {
    let relay = relay().await?;
    let secret = RoomSecret::generate();
    let store = TempDir::new("rec-store-late");
    let spool = TempDir::new("rec-spool-late");
    let config = recorder_config(
        &relay,
        StorageConfig::new(file_url(store.path())),
        spool.path(),
    );
    let (recorder, _events) = Recorder::start(config).await?;
    let alice = member(&relay, "alice", &secret).await?;
    let carol = member(&relay, "carol", &secret).await?;
    let alice_mic = alice.room.publish_audio(1).await?;
    let carol_mic = carol.room.publish_audio(1).await?;
    let mut alice_sent = Vec::new();
    let mut carol_sent = Vec::new();
    let mut sent = 0;
    for i in 0..20u32 {
        let a = format!("alice-{i}").into_bytes();
        let c = format!("carol-{i}").into_bytes();
        alice_mic.send(a.clone())?;
        carol_mic.send(c.clone())?;
        alice_sent.push(a);
        carol_sent.push(c);
        sent += 2;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_recorded(&recorder, sent).await?;
    carol.room.leave().await;
    let dave = member(&relay, "dave", &secret).await?;
    let dave_mic = dave.room.publish_audio(1).await?;
    let mut dave_sent = Vec::new();
    for i in 0..20u32 {
        let a = format!("alice-late-{i}").into_bytes();
        let d = format!("dave-{i}").into_bytes();
        alice_mic.send(a.clone())?;
        dave_mic.send(d.clone())?;
        alice_sent.push(a);
        dave_sent.push(d);
        sent += 2;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_recorded(&recorder, sent).await?;
    recorder.stop().await;

    let out = TempDir::new("rec-open-late");
    let report = open(
        &["--storage", &file_url(store.path())],
        &secret,
        out.path(),
        "raw",
    )?;
    assert_eq!(report["frames_opened"].as_u64(), Some(sent), "{report:#}");
    for (user, expected) in [
        ("alice", &alice_sent),
        ("carol", &carol_sent),
        ("dave", &dave_sent),
    ] {
        let (bin, frames, format) = track_file(&report, user, "audio", 1)?;
        assert_eq!(format, "raw");
        assert_eq!(frames, expected.len() as u64);
        assert_eq!(
            &raw_payloads(out.path(), &bin)?,
            expected,
            "{user}'s frames, in order"
        );
    }
    let stored = all_bytes(store.path())?;
    assert!(
        stored.windows(4).any(|w| w == b"dave"),
        "the late joiner's arrival is in the archive"
    );
    assert_eq!(report["gaps"].as_array().map(Vec::len), Some(0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_segment_is_reported_by_object_and_offset_and_the_rest_opens()
-> anyhow::Result<()> {
    let relay = relay().await?;
    let secret = RoomSecret::generate();
    let store = TempDir::new("rec-store-bad");
    let spool = TempDir::new("rec-spool-bad");
    let mut config = recorder_config(
        &relay,
        StorageConfig::new(file_url(store.path())),
        spool.path(),
    );
    config.segment_max_bytes = 2048;
    let (recorder, _events) = Recorder::start(config).await?;
    let alice = member(&relay, "alice", &secret).await?;
    let chat = alice.room.publish_data(3).await?;
    let mut sent = Vec::new();
    for i in 0..60 {
        let text = format!("message {i:03} {}", "x".repeat(40));
        chat.send(text.clone()).await?;
        sent.push(text);
    }
    wait_recorded(&recorder, sent.len() as u64).await?;
    recorder.stop().await;
    let segments = store.path().join("call-1").join("segments");
    let mut names: Vec<_> = std::fs::read_dir(&segments)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    names.sort();
    assert!(names.len() >= 3, "several segments");
    // Flip a byte in the middle of the second segment and cut the last one short.
    let second = &names[1];
    let mut bytes = std::fs::read(second)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(second, bytes)?;
    let last = names.last().context("last")?;
    let bytes = std::fs::read(last)?;
    std::fs::write(last, &bytes[..bytes.len() - 30])?;
    std::fs::write(
        store.path().join("call-1").join("manifest.json"),
        b"{not json",
    )?;

    let out = TempDir::new("rec-open-bad");
    let report = open(
        &["--storage", &file_url(store.path())],
        &secret,
        out.path(),
        "raw",
    )?;
    let problems: Vec<String> = report["problems"]
        .as_array()
        .context("problems")?
        .iter()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    let second_name = second
        .file_name()
        .and_then(|n| n.to_str())
        .context("name")?;
    assert!(
        problems
            .iter()
            .any(|p| p.contains(second_name) && p.contains("at byte")),
        "the damage is named by object and offset: {problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("manifest.json")),
        "{problems:#?}"
    );
    let (jsonl, _, _) = track_file(&report, "alice", "data", 3)?;
    let opened = data_texts(&out.path().join(jsonl))?;
    // The flipped byte always costs one message. The cut costs one more only when the
    // segment's last 30 bytes hold a message rather than the recording's end record.
    assert!(
        (sent.len() - 2..=sent.len() - 1).contains(&opened.len()),
        "only the damaged message and at most the one cut short are missing: {} of {} opened",
        opened.len(),
        sent.len()
    );
    assert!(opened.iter().all(|t| sent.contains(t)));
    assert!(
        !report["gaps"].as_array().context("gaps")?.is_empty(),
        "the missing messages show as gaps"
    );
    Ok(())
}
