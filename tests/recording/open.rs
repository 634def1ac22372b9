//! Waiting for a recorder, and opening a recording the way its owner does: `sealroom
//! recording open` with the room secret, and reading the report and the raw dumps it
//! writes. Shared by the recording tests and the cluster's.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use sealroom_client::RoomSecret;
use sealroom_record::Recorder;

/// Run `sealroom recording open` on the recording and read its report.
pub(crate) fn open(
    storage: &[&str],
    secret: &RoomSecret,
    out: &Path,
    audio_codec: &str,
) -> anyhow::Result<serde_json::Value> {
    let output = sealroom_test_support::node::binary(env!("CARGO_BIN_EXE_sealroom"))
        .args(["recording", "open", "--recording", "call-1", "--out"])
        .arg(out)
        .args(["--audio-codec", audio_codec])
        .args(storage)
        .env("SEALROOM_ROOM_SECRET", hex::encode(secret.expose()))
        .output()
        .context("run sealroom recording open")?;
    if !output.status.success() {
        bail!(
            "sealroom recording open failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report = std::fs::read(out.join("report.json")).context("report.json")?;
    Ok(serde_json::from_slice(&report)?)
}

/// The file the report names for `user`'s `kind` track `track`.
pub(crate) fn track_file(
    report: &serde_json::Value,
    user: &str,
    kind: &str,
    track: u64,
) -> anyhow::Result<(String, u64, String)> {
    let tracks = report["tracks"].as_array().context("tracks")?;
    let t = tracks
        .iter()
        .find(|t| t["user"] == user && t["kind"] == kind && t["track"] == track)
        .with_context(|| format!("no {kind} track {track} of {user} in {report:#}"))?;
    Ok((
        t["file"].as_str().context("file")?.to_owned(),
        t["frames"].as_u64().context("frames")?,
        t["format"].as_str().context("format")?.to_owned(),
    ))
}

/// The payloads of a raw dump, by its JSON index.
pub(crate) fn raw_payloads(dir: &Path, file: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let data = std::fs::read(dir.join(file))?;
    let index_name = file.replace(".bin", ".index.json");
    let index: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join(index_name))?)?;
    index
        .iter()
        .map(|e| {
            let offset = usize::try_from(e["offset"].as_u64().context("offset")?)?;
            let len = usize::try_from(e["len"].as_u64().context("len")?)?;
            Ok(data.get(offset..offset + len).context("in range")?.to_vec())
        })
        .collect()
}

/// Wait until the recorder wrote `frames`, or wrote nothing more for two seconds (audio
/// travels as datagrams, which a loaded machine may lose on the way; the report then names
/// every missing one as a gap, which the test checks).
pub(crate) async fn wait_recorded_or_settled(
    recorder: &Recorder,
    frames: u64,
) -> anyhow::Result<u64> {
    let stats = recorder.stats();
    let deadline = std::time::Instant::now() + sealroom_test_support::SAFETY;
    let mut last = (0, std::time::Instant::now());
    loop {
        let now = stats.frames_recorded.load(Ordering::Relaxed);
        if now >= frames {
            return Ok(now);
        }
        if now != last.0 {
            last = (now, std::time::Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) || std::time::Instant::now() > deadline
        {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `got` is `sent` with some items left out, in order.
pub(crate) fn subsequence(got: &[Vec<u8>], sent: &[Vec<u8>]) -> bool {
    let mut sent = sent.iter();
    got.iter().all(|g| sent.any(|s| s == g))
}
