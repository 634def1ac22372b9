//! Opening a recording the way its owner does: `sealroom recording open` with the room
//! secret, and reading the report and the raw dumps it writes. Shared by the recording
//! tests and the cluster's.

use std::path::Path;

use anyhow::{Context, bail};
use sealroom_client::RoomSecret;

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
