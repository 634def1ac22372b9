//! A video track's frames before its first keyframe wait in memory, since the keyframe
//! tells the container; a damaged or hostile recording may never carry one. What waits
//! counts against `--hold-max-bytes` with the frames held for unannounced senders: past
//! it, the track's oldest waiting frames are dropped and the report says so, and nothing
//! else of the recording is lost.

use std::path::Path;

use anyhow::Context;
use sealroom_frame::envelope::{Envelope, Flags, MediaKind, MemberId};

use crate::support::*;
use crate::unannounced::{Recording, problems, texts};

const VIDEO: u32 = 5;
const FRAME_LEN: usize = 1000;
const BOUND: &str = "8000";

/// A video frame from `sender` on track [`VIDEO`].
fn video(
    rec: &mut Recording,
    sender: MemberId,
    flags: Flags,
    (group, seq): (u32, u32),
    plain: &[u8],
) -> anyhow::Result<()> {
    let envelope = Envelope {
        kind: MediaKind::Video,
        flags,
        sender,
        track: VIDEO,
        group,
        seq,
        timestamp_us: 0,
    };
    rec.frame(envelope, plain)
}

/// An inter frame's payload, told apart by `n` (its first byte is odd: not a VP8 keyframe).
fn inter(n: u32) -> Vec<u8> {
    let mut plain = n.to_be_bytes().to_vec();
    plain.insert(0, 0x01);
    plain.resize(FRAME_LEN, 0xaa);
    plain
}

/// A VP8 keyframe header (RFC 6386: start code, 320x240), padded.
fn keyframe() -> Vec<u8> {
    let mut plain = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
    plain.resize(FRAME_LEN, 0x55);
    plain
}

/// The frames of an IVF file.
fn ivf_frames(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let data = std::fs::read(path)?;
    let header = data.get(6..8).context("ivf header")?;
    let mut at = usize::from(u16::from_le_bytes([header[0], header[1]]));
    let mut frames = Vec::new();
    while at < data.len() {
        let size = data.get(at..at + 4).context("ivf frame size")?;
        let len = usize::try_from(u32::from_le_bytes(size.try_into()?))?;
        frames.push(
            data.get(at + 12..at + 12 + len)
                .context("ivf frame")?
                .to_vec(),
        );
        at += 12 + len;
    }
    Ok(frames)
}

/// The problem line about `user`'s video track, and the frames it says were dropped.
fn dropped(problems: &[String], user: &str) -> anyhow::Result<(String, u64)> {
    let prefix = format!("{user}'s video track {VIDEO}: ");
    let line = problems
        .iter()
        .find(|p| p.starts_with(&prefix))
        .with_context(|| format!("no problem about {user}'s video: {problems:#?}"))?;
    let count = line[prefix.len()..]
        .split(' ')
        .next()
        .context("count")?
        .parse()?;
    Ok((line.clone(), count))
}

#[test]
fn a_video_track_that_never_has_a_keyframe_keeps_its_newest_frames_within_the_bound()
-> anyhow::Result<()> {
    let mut rec = Recording::new();
    rec.joined(false, &[(2, "alice"), (3, "bob")]);
    let sent: Vec<Vec<u8>> = (0..40).map(inter).collect();
    let mut alice = Vec::new();
    let mut bob = Vec::new();
    for (seq, plain) in (0..).zip(&sent) {
        video(&mut rec, 2, Flags::empty(), (0, seq), plain)?;
        alice.push(format!("alice {seq}"));
        rec.message(2, seq, &alice[alice.len() - 1])?;
        bob.push(format!("bob {seq}"));
        rec.message(3, seq, &bob[bob.len() - 1])?;
    }
    let (report, out) = rec.open("never-key", &["--hold-max-bytes", BOUND])?;

    let (file, frames, format) = track_file(&report, "alice", "video", u64::from(VIDEO))?;
    assert_eq!(format, "raw", "no keyframe came: the track is dumped raw");
    let kept = raw_payloads(out.path(), &file)?;
    assert_eq!(
        kept.len() as u64,
        frames,
        "the report counts what the file holds"
    );
    assert!(
        !kept.is_empty() && kept.len() * FRAME_LEN <= 8000,
        "what waited for a keyframe stayed within the bound: {} frames",
        kept.len()
    );
    assert_eq!(
        kept,
        sent[sent.len() - kept.len()..],
        "the oldest frames are the ones dropped; the rest are intact, in order"
    );

    let problems = problems(&report)?;
    let (line, count) = dropped(&problems, "alice")?;
    assert!(
        line.contains("--hold-max-bytes"),
        "the bound is named: {line}"
    );
    assert_eq!(
        count + frames,
        40,
        "every frame is exported or counted as dropped: {line}"
    );

    assert_eq!(
        texts(&report, out.path(), "alice")?,
        alice,
        "the member's other track is intact"
    );
    assert_eq!(
        texts(&report, out.path(), "bob")?,
        bob,
        "other members are intact"
    );
    assert_eq!(report["frames_opened"], 120);
    Ok(())
}

#[test]
fn a_keyframe_after_the_bound_starts_the_container_and_the_drop_is_reported() -> anyhow::Result<()>
{
    let mut rec = Recording::new();
    rec.joined(false, &[(2, "alice")]);
    for seq in 0..30 {
        video(&mut rec, 2, Flags::empty(), (0, seq), &inter(seq))?;
    }
    let mut sent = vec![keyframe()];
    video(&mut rec, 2, Flags::GROUP_START, (1, 0), &sent[0])?;
    for seq in 1..4 {
        sent.push(inter(100 + seq));
        video(&mut rec, 2, Flags::empty(), (1, seq), &sent[sent.len() - 1])?;
    }
    rec.message(2, 0, "still here")?;
    let (report, out) = rec.open("late-key", &["--hold-max-bytes", BOUND])?;

    let (file, frames, format) = track_file(&report, "alice", "video", u64::from(VIDEO))?;
    assert_eq!(format, "ivf-vp8", "{report:#}");
    assert_eq!(frames, 4, "the keyframe and what follows it: {report:#}");
    assert_eq!(ivf_frames(&out.path().join(file))?, sent);
    let (line, count) = dropped(&problems(&report)?, "alice")?;
    assert!(
        line.contains("--hold-max-bytes") && count > 0 && count < 30,
        "{line}"
    );
    assert_eq!(texts(&report, out.path(), "alice")?, ["still here"]);
    Ok(())
}

#[test]
fn an_unannounced_senders_keyframeless_video_is_bounded_too() -> anyhow::Result<()> {
    let mut rec = Recording::new();
    rec.joined(false, &[(2, "alice")]);
    let sent: Vec<Vec<u8>> = (0..40).map(inter).collect();
    let mut alice = Vec::new();
    for (seq, plain) in (0..).zip(&sent) {
        video(&mut rec, 4, Flags::empty(), (0, seq), plain)?;
        alice.push(format!("alice {seq}"));
        rec.message(2, seq, &alice[alice.len() - 1])?;
    }
    let (report, out) = rec.open("unannounced-video", &["--hold-max-bytes", BOUND])?;

    let problems = problems(&report)?;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("member 4:") && p.contains("exported as member4")),
        "past the bound, the sender is exported under its member id: {problems:#?}"
    );
    let (file, frames, _) = track_file(&report, "member4", "video", u64::from(VIDEO))?;
    let kept = raw_payloads(out.path(), &file)?;
    assert_eq!(kept.len() as u64, frames);
    assert_eq!(kept, sent[sent.len() - kept.len()..]);
    let (_, count) = dropped(&problems, "member4")?;
    assert_eq!(count + frames, 40, "{problems:#?}");
    assert_eq!(texts(&report, out.path(), "alice")?, alice);
    Ok(())
}

#[test]
fn frames_held_for_a_sender_and_frames_waiting_for_a_keyframe_share_one_bound() -> anyhow::Result<()>
{
    // Each alone stays under the bound; together they pass it.
    let mut rec = Recording::new();
    rec.joined(false, &[(2, "alice")]);
    let video_sent: Vec<Vec<u8>> = (0..5).map(inter).collect();
    for (seq, plain) in (0..).zip(&video_sent) {
        video(&mut rec, 2, Flags::empty(), (0, seq), plain)?;
    }
    let carol: Vec<String> = (0..5)
        .map(|i| format!("{i} {}", "c".repeat(FRAME_LEN)))
        .collect();
    for (seq, text) in (0..).zip(&carol) {
        rec.message(4, seq, text)?;
    }
    rec.member_joined(4, "carol");
    let (report, out) = rec.open("shared", &["--hold-max-bytes", BOUND])?;

    let problems = problems(&report)?;
    assert!(
        problems.iter().any(|p| p.contains("--hold-max-bytes")),
        "what the opener holds is bounded as one: {problems:#?}"
    );
    let mut got = texts(&report, out.path(), "member4")?;
    got.extend(texts(&report, out.path(), "carol")?);
    assert_eq!(got, carol, "a held sender's frames are moved, never lost");
    let (file, frames, _) = track_file(&report, "alice", "video", u64::from(VIDEO))?;
    let kept = raw_payloads(out.path(), &file)?;
    assert_eq!(kept.len() as u64, frames);
    assert_eq!(kept, video_sent[video_sent.len() - kept.len()..]);
    Ok(())
}
