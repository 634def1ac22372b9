//! Recording a room that spans nodes: a blind recorder joined on one node stores the sealed
//! frames of members on every node, members on every node are told it is there, and the
//! room's owner opens the recording offline to exactly what each member sent; a recorder
//! sent on by a loaded node follows the redirect.

use std::time::Duration;

use sealroom_client::{Event, RoomSecret};
use sealroom_record::{BlindConfig, Recorder, RecorderConfig, StorageConfig, Trust};
use sealroom_relay::Grants;
use sealroom_test_support::{TempDir, mint_ticket, unix_now};

use crate::open::{open, raw_payloads, subsequence, track_file, wait_recorded_or_settled};
use crate::support::{APP, KID, Member, TICKET_SECRET, TestNode, mesh};

const FRAMES: u32 = 20;

async fn told_of_recorder(member: &Member) -> anyhow::Result<()> {
    member
        .log
        .wait_for(
            &format!("{} is told a recorder is present", member.name),
            |events| {
                events
                    .iter()
                    .any(|e| matches!(e, Event::RecorderPresent { .. }))
            },
        )
        .await
}

fn recorder_config(node: &TestNode, store: &TempDir, spool: &TempDir) -> RecorderConfig {
    let ticket = mint_ticket(
        APP,
        KID,
        TICKET_SECRET.as_bytes(),
        "recorder",
        "r",
        Grants::recorder(),
        unix_now(),
        3600,
    );
    let member = BlindConfig::new(node.relay.local_addr(), Trust::Pinned(node.pin()), ticket);
    let storage = StorageConfig::new(format!("file://{}", store.path().display()));
    let mut config = RecorderConfig::new(member, storage, "call-1", spool.path());
    config.app = APP.into();
    config.room = "r".into();
    config.flush_interval = Duration::from_millis(50);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_on_one_node_records_the_members_of_every_node() -> anyhow::Result<()> {
    let nodes = mesh(2).await?;
    let secret = RoomSecret::generate();
    // Alice is on node 1 before the recorder comes; Bob joins node 2 after it.
    let alice = nodes[0].join("alice", "r", &secret).await?;
    let store = TempDir::new("cluster-rec-store");
    let spool = TempDir::new("cluster-rec-spool");
    let (recorder, _events) = Recorder::start(recorder_config(&nodes[1], &store, &spool)).await?;
    let bob = nodes[1].join("bob", "r", &secret).await?;
    told_of_recorder(&alice).await?;
    told_of_recorder(&bob).await?;
    crate::cascade::wait_members(&alice, &["bob", "recorder"]).await?;

    let alice_mic = alice.room.publish_audio(1).await?;
    let bob_mic = bob.room.publish_audio(1).await?;
    let mut alice_sent = Vec::new();
    let mut bob_sent = Vec::new();
    for i in 0..FRAMES {
        let a = format!("alice-{i}").into_bytes();
        let b = format!("bob-{i}").into_bytes();
        alice_mic.send(a.clone())?;
        bob_mic.send(b.clone())?;
        alice_sent.push(a);
        bob_sent.push(b);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sent = u64::from(2 * FRAMES);
    // Audio travels as datagrams, twice for Alice's (to node 2, then to the recorder): a
    // loaded machine may lose some, and the report names each missing one as a gap.
    let recorded = wait_recorded_or_settled(&recorder, sent).await?;
    // Alice's frames reached node 2 for the recorder (and Bob): one copy over the link.
    assert_eq!(
        nodes[0].link(2).expect("link 1-2").frames_out,
        u64::from(FRAMES)
    );
    recorder.stop().await;

    let out = TempDir::new("cluster-rec-open");
    let storage = format!("file://{}", store.path().display());
    let report = open(&["--storage", &storage], &secret, out.path(), "raw")?;
    assert_eq!(
        report["frames_opened"].as_u64(),
        Some(recorded),
        "every recorded frame opens: {report:#}"
    );
    for (user, sent) in [("alice", &alice_sent), ("bob", &bob_sent)] {
        let (bin, frames, _) = track_file(&report, user, "audio", 1)?;
        let got = raw_payloads(out.path(), &bin)?;
        assert_eq!(got.len() as u64, frames);
        assert!(
            got.len() * 2 >= sent.len(),
            "{user}'s frames are recorded, whatever node {user} is on: {} of {}",
            got.len(),
            sent.len()
        );
        assert!(
            subsequence(&got, sent),
            "{user}'s frames open to what {user} sent, in order"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_sent_on_by_a_loaded_node_records_from_the_node_it_is_sent_to()
-> anyhow::Result<()> {
    if !crate::redis::available()? {
        return Ok(());
    }
    let redis = crate::redis::Redis::start()?;
    let one = TestNode::placed(1, &redis.url(), 1).await?;
    let two = TestNode::placed(2, &redis.url(), 1).await?;
    crate::support::wait_links(&one, &[2]).await?;
    let secret = RoomSecret::generate();
    let alice = one.join("alice", "r", &secret).await?;
    one.wait_directory_members(1).await?;
    // The recorder asks node 1, which sends it to node 2.
    let store = TempDir::new("cluster-rec-placed-store");
    let spool = TempDir::new("cluster-rec-placed-spool");
    let (recorder, _events) = Recorder::start(recorder_config(&one, &store, &spool)).await?;
    told_of_recorder(&alice).await?;
    assert_eq!(two.relay.stats().members, 1, "the recorder is on node 2");
    assert_eq!(
        one.relay
            .stats()
            .joins(sealroom_relay::JoinOutcome::Redirected),
        1
    );
    // It records Alice, on node 1, through the link.
    let chat = alice.room.publish_data(1).await?;
    for i in 0..FRAMES {
        chat.send(format!("chat-{i}").into_bytes()).await?;
    }
    let recorded = wait_recorded_or_settled(&recorder, u64::from(FRAMES)).await?;
    assert_eq!(
        recorded,
        u64::from(FRAMES),
        "reliable data is recorded whole"
    );
    recorder.stop().await;
    Ok(())
}
