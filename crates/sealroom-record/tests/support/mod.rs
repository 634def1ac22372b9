//! What the recorder's tests share: a relay on loopback, members, a recorder config, an
//! S3-compatible server (moto's standalone server) and a TCP proxy that can cut the way to
//! it, to play a storage outage.

#![allow(dead_code, unreachable_pub)] // each test binary uses part of it

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use sealroom_client::{ClientConfig, RoomSecret};
use sealroom_record::archive::{Manifest, Record, read_segment};
use sealroom_record::{BlindConfig, RecorderConfig, StorageConfig, Trust};
use sealroom_relay::{AppConfig, Grants, Limits, Relay, RelayConfig};
pub use sealroom_test_support::s3::{Moto, Proxy};
use sealroom_test_support::{Member, TestApp};

pub const APP: TestApp = TestApp {
    app: "app-r",
    kid: "r1",
    secret: b"recorder test secret",
};
pub const ROOM: &str = "room";

pub async fn relay() -> anyhow::Result<Relay> {
    let config = RelayConfig::default()
        .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .limits(Limits::default().unlimited_rates())
        .app(AppConfig::new(APP.app, APP.kid, APP.secret.to_vec()));
    Relay::start(config).await.context("relay")
}

pub async fn member(relay: &Relay, user: &str, secret: &RoomSecret) -> anyhow::Result<Member> {
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

/// A recorder config for the test room: segments closed at `segment_bytes`.
pub fn recorder_config(
    relay: &Relay,
    storage: StorageConfig,
    spool: &Path,
    segment_bytes: u64,
) -> RecorderConfig {
    let ticket = APP.ticket("recorder", ROOM, Grants::recorder(), 600);
    let member = BlindConfig::new(
        relay.local_addr(),
        Trust::Pinned(relay.cert_sha256()),
        ticket,
    );
    let mut config = RecorderConfig::new(member, storage, "rec-1", spool);
    config.app = APP.app.into();
    config.room = ROOM.into();
    config.segment_max_bytes = segment_bytes;
    config.flush_interval = Duration::from_millis(50);
    config.upload_retry_first = Duration::from_millis(50);
    config.upload_retry_max = Duration::from_millis(400);
    config
}

/// Every object of a recording in a local directory: the manifest and the segments'
/// records (all of them, in order) and the raw bytes of every object.
pub struct Stored {
    pub manifest: Manifest,
    pub records: Vec<Record>,
    pub segments: usize,
    pub raw: Vec<u8>,
    pub problems: Vec<String>,
}

pub fn read_local(dir: &Path) -> anyhow::Result<Stored> {
    let manifest = Manifest::parse(&std::fs::read(dir.join("manifest.json"))?)?;
    let mut names: Vec<_> = std::fs::read_dir(dir.join("segments"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    let mut stored = Stored {
        manifest,
        records: Vec::new(),
        segments: names.len(),
        raw: Vec::new(),
        problems: Vec::new(),
    };
    for name in names {
        let bytes = std::fs::read(dir.join("segments").join(&name))?;
        stored.raw.extend_from_slice(&bytes);
        let contents = read_segment(&name, Bytes::from(bytes));
        stored
            .problems
            .extend(contents.problems.iter().map(ToString::to_string));
        stored
            .records
            .extend(contents.records.into_iter().map(|(_, r)| r));
    }
    Ok(stored)
}

/// Frame records by sender.
pub fn frames_from(records: &[Record], sender: u32) -> Vec<&Record> {
    records
        .iter()
        .filter(|r| matches!(r, Record::Frame { envelope, .. } if envelope.sender == sender))
        .collect()
}

/// The storage config for `bucket` on moto at `endpoint` (the server or a proxy to it).
pub fn s3_storage(bucket: &str, endpoint: SocketAddr) -> StorageConfig {
    let mut config = StorageConfig::new(format!("s3://{bucket}/recordings"));
    for (key, value) in Moto::options(endpoint) {
        config = config.option(key, value);
    }
    config.timeout_ms = Some(2000);
    config
}
