//! A relay on loopback, members, the in-process recorder and the `sealroom` binary for
//! opening, shared by the recording tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use sealroom_client::{ClientConfig, RoomSecret};
use sealroom_record::{BlindConfig, RecorderConfig, StorageConfig, Trust};
use sealroom_relay::{AppConfig, Grants, Limits, Relay, RelayConfig};
pub(crate) use sealroom_test_support::{Member, TempDir, TestApp, poll_until};

pub(crate) const APP: TestApp = TestApp {
    app: "app-rec",
    kid: "k1",
    secret: b"recording test secret, test only",
};
pub(crate) const ROOM: &str = "standup";
pub(crate) const MARKER: &str = "PLAINTEXT-MARKER-91be";

pub(crate) async fn relay() -> anyhow::Result<Relay> {
    let config = RelayConfig::default()
        .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .limits(Limits::default().unlimited_rates())
        .app(AppConfig::new(APP.app, APP.kid, APP.secret.to_vec()));
    Relay::start(config).await.context("relay")
}

pub(crate) async fn member(
    relay: &Relay,
    user: &str,
    secret: &RoomSecret,
) -> anyhow::Result<Member> {
    let ticket = APP.ticket(user, ROOM, Grants::all(), 600);
    Member::join(
        user,
        relay.local_addr(),
        ClientConfig::new(Trust::Pinned(relay.cert_sha256())),
        ticket,
        secret,
    )
    .await
}

pub(crate) fn recorder_ticket() -> String {
    APP.ticket("recorder", ROOM, Grants::recorder(), 600)
}

pub(crate) fn recorder_config(
    relay: &Relay,
    storage: StorageConfig,
    spool: &Path,
) -> RecorderConfig {
    let member = BlindConfig::new(
        relay.local_addr(),
        Trust::Pinned(relay.cert_sha256()),
        recorder_ticket(),
    );
    let mut config = RecorderConfig::new(member, storage, "call-1", spool);
    config.app = APP.app.into();
    config.room = ROOM.into();
    config.segment_max_bytes = 64 * 1024;
    config.flush_interval = Duration::from_millis(50);
    config
}

pub(crate) fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

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

/// The texts of a data track's JSON lines.
pub(crate) fn data_texts(path: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::read_to_string(path)?
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)?;
            Ok(value["text"].as_str().context("text")?.to_owned())
        })
        .collect()
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

/// Every byte stored under a directory tree, concatenated.
pub(crate) fn all_bytes(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.extend(std::fs::read(&path)?);
            }
        }
    }
    Ok(out)
}
