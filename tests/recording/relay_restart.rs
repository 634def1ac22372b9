//! A relay restarted under a running recorder: the recorder rejoins like the members do,
//! notes the time it was away, and the recording opens with every message sent while it
//! was in the room.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;
use sealroom_client::{ClientConfig, Event, RoomSecret};
use sealroom_record::{BlindConfig, Recorder, RecorderConfig, RecorderEvent, StorageConfig, Trust};
use sealroom_relay::{AppConfig, Grants, Limits, Relay, RelayConfig, TlsConfig};

use crate::support::*;

async fn start_relay(listen: SocketAddr, dir: &TempDir) -> anyhow::Result<Relay> {
    let config = RelayConfig::default()
        .listen(listen)
        .tls(TlsConfig::Files {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        })
        .limits(Limits::default().unlimited_rates())
        .app(AppConfig::new(APP.app, APP.kid, APP.secret.to_vec()));
    Relay::start(config).await.context("relay")
}

/// A short pause before trying to bind the port again.
async fn retry_pause() {
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_rides_through_a_relay_restart() -> anyhow::Result<()> {
    let tls = TempDir::new("rec-relay-tls");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    std::fs::write(tls.path().join("cert.pem"), certified.cert.pem())?;
    std::fs::write(
        tls.path().join("key.pem"),
        certified.signing_key.serialize_pem(),
    )?;
    let relay = start_relay(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), &tls).await?;
    let addr = relay.local_addr();
    let pin = relay.cert_sha256();

    let store = TempDir::new("rec-store-restart");
    let spool = TempDir::new("rec-spool-restart");
    let member_config = BlindConfig::new(addr, Trust::Pinned(pin), recorder_ticket());
    let mut config = RecorderConfig::new(
        member_config,
        StorageConfig::new(file_url(store.path())),
        "call-1",
        spool.path(),
    );
    config.room = ROOM.into();
    let (recorder, mut events) = Recorder::start(config).await?;

    let secret = RoomSecret::generate();
    let alice = Member::join(
        "alice",
        addr,
        ClientConfig::new(Trust::Pinned(pin)),
        APP.ticket("alice", ROOM, Grants::all(), 600),
        &secret,
    )
    .await?;
    let chat = alice.room.publish_data(3).await?;
    let mut sent = Vec::new();
    for i in 0..10 {
        let text = format!("before the restart {i}");
        chat.send(text.clone()).await?;
        sent.push(text);
    }
    let stats = recorder.stats();
    poll_until(
        "the recorder has the first messages",
        || {
            stats
                .frames_recorded
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 10
        },
        String::new,
    )
    .await?;

    relay.shutdown().await;
    // The old endpoint lets go of the port once its driver has stopped.
    let deadline = std::time::Instant::now() + sealroom_test_support::SAFETY;
    let relay = loop {
        match start_relay(addr, &tls).await {
            Ok(relay) => break relay,
            Err(_) if std::time::Instant::now() < deadline => {
                retry_pause().await;
            }
            Err(err) => return Err(err),
        }
    };
    alice
        .log
        .wait_for("alice is back", |events| {
            events.iter().any(|e| matches!(e, Event::Recovered { .. }))
        })
        .await?;
    tokio::time::timeout(sealroom_test_support::SAFETY, async {
        while let Some(event) = events.recv().await {
            if matches!(event, RecorderEvent::Joined { rejoin: true }) {
                return;
            }
        }
    })
    .await
    .context("the recorder never rejoined")?;
    for i in 0..10 {
        let text = format!("after the restart {i}");
        chat.send(text.clone()).await?;
        sent.push(text);
    }
    poll_until(
        "the recorder has every message",
        || {
            stats
                .frames_recorded
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 20
        },
        String::new,
    )
    .await?;
    recorder.stop().await;
    drop(relay);

    let out = TempDir::new("rec-open-restart");
    let report = open(
        &["--storage", &file_url(store.path())],
        &secret,
        out.path(),
        "raw",
    )?;
    let (jsonl, _, _) = track_file(&report, "alice", "data", 3)?;
    assert_eq!(
        data_texts(&out.path().join(jsonl))?,
        sent,
        "one file across the new member id"
    );
    assert!(
        report["losses"]
            .as_array()
            .context("losses")?
            .iter()
            .any(|l| l["kind"] == "Disconnected"),
        "the time away is stated: {report:#}"
    );
    Ok(())
}
