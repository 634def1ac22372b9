//! A recorder process killed with SIGKILL and started again continues the same recording
//! in S3 (moto on loopback): the recording opens from S3 with exactly the messages sent
//! while no recorder was in the room missing, and says so.

use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use sealroom_client::{Event, RoomSecret};
use sealroom_record::archive::{Record, read_segment};
use sealroom_test_support::s3::Moto;

use crate::support::*;

fn spawn_recorder(
    relay: &sealroom_relay::Relay,
    moto: &Moto,
    spool: &std::path::Path,
) -> anyhow::Result<Child> {
    let mut command = sealroom_test_support::node::binary(env!("CARGO_BIN_EXE_sealroom"));
    command
        .args(["record", "--relay", &relay.local_addr().to_string()])
        .args(["--pin", &hex::encode(relay.cert_sha256())])
        .args(["--storage", "s3://rec/recordings", "--recording", "call-1"])
        .args(["--app", APP.app, "--room", ROOM, "--flush-ms", "50"])
        .args(["--segment-max-secs", "600"])
        .arg("--spool")
        .arg(spool)
        .env("SEALROOM_RECORD_TICKET", recorder_ticket())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, value) in Moto::options(moto.addr) {
        command
            .arg("--storage-option")
            .arg(format!("{key}={value}"));
    }
    command.spawn().context("spawn sealroom record")
}

/// Frames in the spool's unclosed segments whose data text starts with `prefix`: the
/// recorder has them on disk.
async fn wait_on_disk(spool: &std::path::Path, secret_prefix_count: usize) -> anyhow::Result<()> {
    poll_until(
        "the recorder has the frames on disk",
        || frames_in_parts(spool) >= secret_prefix_count,
        || format!("{} frames in the spool", frames_in_parts(spool)),
    )
    .await
}

fn frames_in_parts(spool: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(spool) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".srs.part"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .map(|bytes| {
            read_segment("part", Bytes::from(bytes))
                .records
                .iter()
                .filter(|(_, r)| matches!(r, Record::Frame { .. }))
                .count()
        })
        .sum()
}

async fn recorders_seen(alice: &Member, count: usize) -> anyhow::Result<()> {
    alice
        .log
        .wait_for("alice learns a recorder is present", |events| {
            events
                .iter()
                .filter(|e| matches!(e, Event::RecorderPresent { .. }))
                .count()
                >= count
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_killed_and_restarted_continues_the_recording_in_s3() -> anyhow::Result<()> {
    let Some(moto) = Moto::start().await? else {
        return Ok(());
    };
    moto.create_bucket("rec").await?;
    let relay = relay().await?;
    let secret = RoomSecret::generate();
    let alice = member(&relay, "alice", &secret).await?;
    let chat = alice.room.publish_data(3).await?;
    let spool = TempDir::new("rec-kill-spool");

    let mut first = spawn_recorder(&relay, &moto, spool.path())?;
    recorders_seen(&alice, 1).await?;
    let mut kept = Vec::new();
    for i in 0..30 {
        let text = format!("before the kill {i}");
        chat.send(text.clone()).await?;
        kept.push(text);
    }
    wait_on_disk(spool.path(), 30).await?;
    first.kill()?; // SIGKILL
    first.wait()?;

    // Nobody records these.
    for i in 0..10 {
        chat.send(format!("while no recorder is there {i}")).await?;
    }
    let mut second = spawn_recorder(&relay, &moto, spool.path())?;
    recorders_seen(&alice, 2).await?;
    for i in 0..30 {
        let text = format!("after the restart {i}");
        chat.send(text.clone()).await?;
        kept.push(text);
    }
    wait_on_disk(spool.path(), 30).await?;
    // SIGTERM: a clean stop that closes and stores the last segment.
    let pid = i32::try_from(second.id())?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(status) = second.try_wait()? {
                return anyhow::Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .context("the recorder did not stop")??;
    if !exit.success() {
        bail!("the recorder exited with {exit}");
    }
    let left: Vec<_> = std::fs::read_dir(spool.path())?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".srs"))
        .collect();
    assert!(left.is_empty(), "no copy stays in the spool: {left:?}");

    let out = TempDir::new("rec-kill-open");
    let mut storage = vec![
        String::from("--storage"),
        String::from("s3://rec/recordings"),
    ];
    for (key, value) in Moto::options(moto.addr) {
        storage.push(String::from("--storage-option"));
        storage.push(format!("{key}={value}"));
    }
    let storage: Vec<&str> = storage.iter().map(String::as_str).collect();
    let report = open(&storage, &secret, out.path(), "raw")?;
    let (jsonl, _, _) = track_file(&report, "alice", "data", 3)?;
    assert_eq!(
        data_texts(&out.path().join(jsonl))?,
        kept,
        "everything on disk before the kill and everything after the restart, in order"
    );
    let gaps = report["gaps"].as_array().context("gaps")?;
    assert_eq!(gaps.len(), 1, "{report:#}");
    assert_eq!(
        gaps[0]["missing"].as_u64(),
        Some(10),
        "the messages nobody recorded"
    );
    let losses = report["losses"].as_array().context("losses")?;
    assert!(
        losses.iter().any(|l| l["kind"] == "Restarted"),
        "the restart is stated: {losses:?}"
    );
    let problems = report["problems"].as_array().context("problems")?;
    assert!(
        problems.iter().any(|p| p
            .as_str()
            .is_some_and(|p| p.contains("000001-000001") && p.contains("not closed"))),
        "the killed run's segment is read up to its last record and said to be unclosed: {problems:?}"
    );
    Ok(())
}
