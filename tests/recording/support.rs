//! A relay on loopback, members, the in-process recorder and the `sealroom` binary for
//! opening, shared by the recording tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sealroom_client::{ClientConfig, RoomSecret};
use sealroom_record::{BlindConfig, RecorderConfig, StorageConfig, Trust};
use sealroom_relay::{AppConfig, Grants, Limits, Relay, RelayConfig};
pub(crate) use sealroom_test_support::{Member, TempDir, TestApp, poll_until};

pub(crate) use crate::open::{
    open, raw_payloads, subsequence, track_file, wait_recorded_or_settled,
};

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
