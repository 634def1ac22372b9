//! The directory on Redis: nodes find each other through it, their leases expire when
//! they die, and a Redis that restarts or stops answering costs rooms nothing.

use sealroom_client::RoomSecret;
use sealroom_relay::cluster::DirectoryError;
use sealroom_test_support::poll_until;

use crate::cascade::wait_members;
use crate::redis::{self, Redis};
use crate::support::{TestNode, wait_links};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_find_each_other_through_redis_and_map_their_rooms() -> anyhow::Result<()> {
    if !redis::available()? {
        return Ok(());
    }
    let redis = Redis::start()?;
    let mut nodes = Vec::new();
    for index in 1..=3 {
        nodes.push(TestNode::with_directory(index, &redis.url()).await?);
    }
    // No peer was configured: each node finds the two others in the directory.
    wait_links(&nodes[0], &[2, 3]).await?;
    wait_links(&nodes[1], &[1, 3]).await?;
    wait_links(&nodes[2], &[1, 2]).await?;
    let secret = RoomSecret::generate();
    let alice = nodes[0].join("alice", "r", &secret).await?;
    let bob = nodes[1].join("bob", "r", &secret).await?;
    let carol = nodes[2].join("carol", "r", &secret).await?;
    wait_members(&alice, &["bob", "carol"]).await?;
    wait_members(&carol, &["alice", "bob"]).await?;
    let audio = bob.room.publish_audio(1).await?;
    audio.send(b"over the directory's links".to_vec())?;
    for member in [&alice, &carol] {
        member
            .log
            .wait_for_payload("bob's frame", b"over the directory's links")
            .await?;
    }
    // The directory lists the three nodes with their leases, and maps the room to them.
    let directory = nodes[0].cluster.directory().expect("a directory");
    poll_until(
        "the directory lists three nodes with the room's members",
        || {
            let list = directory.nodes();
            list.len() == 3
                && list
                    .iter()
                    .all(|n| n.members == 1 && n.expires_in_ms.is_some())
        },
        || format!("{:?}", directory.nodes()),
    )
    .await?;
    let rooms = directory.rooms().await?;
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].room, "r");
    assert_eq!(rooms[0].nodes, vec![(1, 1), (2, 1), (3, 1)]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_lease_expires_and_a_leaving_node_goes_at_once() -> anyhow::Result<()> {
    if !redis::available()? {
        return Ok(());
    }
    let redis = Redis::start()?;
    let one = TestNode::with_directory(1, &redis.url()).await?;
    let two = TestNode::with_directory(2, &redis.url()).await?;
    let three = TestNode::with_directory(3, &redis.url()).await?;
    wait_links(&one, &[2, 3]).await?;
    assert!(redis.exists("sealroom:node:2"));
    // Node 2 stops renewing without a word (as if killed): its lease runs out by itself.
    two.cluster.shutdown();
    poll_until(
        "node 2's lease expires",
        || !redis.exists("sealroom:node:2"),
        || "sealroom:node:2 still there".to_owned(),
    )
    .await?;
    let directory = one.cluster.directory().expect("a directory");
    poll_until(
        "node 1 no longer lists node 2",
        || directory.nodes().iter().all(|n| n.index != 2),
        || format!("{:?}", directory.nodes()),
    )
    .await?;
    // Node 3 leaves gracefully: its record is gone when `leave` returns.
    three.cluster.leave().await;
    assert!(!redis.exists("sealroom:node:3"));
    assert!(redis.exists("sealroom:node:1"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_keep_working_while_redis_is_down_and_the_cluster_recovers_by_itself()
-> anyhow::Result<()> {
    if !redis::available()? {
        return Ok(());
    }
    let mut redis = Redis::start()?;
    let one = TestNode::with_directory(1, &redis.url()).await?;
    let two = TestNode::with_directory(2, &redis.url()).await?;
    wait_links(&one, &[2]).await?;
    let secret = RoomSecret::generate();
    let alice = one.join("alice", "r", &secret).await?;
    let bob = two.join("bob", "r", &secret).await?;
    wait_members(&alice, &["bob"]).await?;

    redis.kill();
    let directory = one.cluster.directory().expect("a directory");
    poll_until(
        "node 1 notices Redis is gone",
        || !directory.reachable(),
        || "still reachable".to_owned(),
    )
    .await?;
    // The room that spans the nodes keeps forwarding, and new members join across the
    // existing link: membership travels over the links, not through Redis.
    let audio = bob.room.publish_audio(1).await?;
    audio.send(b"redis is down".to_vec())?;
    alice
        .log
        .wait_for_payload("alice hears bob with Redis down", b"redis is down")
        .await?;
    let carol = two.join("carol", "r", &secret).await?;
    wait_members(&alice, &["bob", "carol"]).await?;
    assert!(directory.last_error().is_some());

    // Redis comes back empty: both nodes register again by themselves, and a node started
    // since is found and linked.
    redis.restart()?;
    poll_until(
        "both nodes are registered again",
        || redis.exists("sealroom:node:1") && redis.exists("sealroom:node:2"),
        || "not registered".to_owned(),
    )
    .await?;
    let three = TestNode::with_directory(3, &redis.url()).await?;
    wait_links(&three, &[1, 2]).await?;
    let dave = three.join("dave", "r", &secret).await?;
    wait_members(&dave, &["alice", "bob", "carol"]).await?;
    drop(carol);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_costs_rooms_nothing_and_the_directory_answers_within_its_timeout()
-> anyhow::Result<()> {
    if !redis::available()? {
        return Ok(());
    }
    let redis = Redis::start()?;
    let one = TestNode::with_directory(1, &redis.url()).await?;
    let two = TestNode::with_directory(2, &redis.url()).await?;
    wait_links(&one, &[2]).await?;
    let secret = RoomSecret::generate();
    let alice = one.join("alice", "r", &secret).await?;
    let bob = two.join("bob", "r", &secret).await?;
    wait_members(&alice, &["bob"]).await?;

    // Redis stops answering without closing anything: every command must time out.
    redis.freeze()?;
    let directory = one.cluster.directory().expect("a directory");
    poll_until(
        "node 1 notices Redis does not answer",
        || !directory.reachable(),
        || "still reachable".to_owned(),
    )
    .await?;
    // Asking the directory gives a typed error within its timeout, never a hang.
    let asked = tokio::time::timeout(sealroom_test_support::SAFETY, directory.rooms())
        .await
        .map_err(|_| anyhow::anyhow!("the directory hung on a frozen Redis"))?;
    assert!(
        matches!(asked, Err(DirectoryError::Unreachable(_))),
        "{asked:?}"
    );
    // The room that spans the nodes keeps forwarding, and a member joins it across the
    // link that is up.
    let audio = bob.room.publish_audio(1).await?;
    audio.send(b"redis is frozen".to_vec())?;
    alice
        .log
        .wait_for_payload("alice hears bob with Redis frozen", b"redis is frozen")
        .await?;
    let _carol = one.join("carol", "r", &secret).await?;
    wait_members(&bob, &["alice", "carol"]).await?;
    // A node started while Redis is frozen starts (it does not wait for Redis) and admits
    // a member of the room; no other node knows of it yet, so for now its part of the
    // room is on its own ...
    let three = TestNode::with_directory(3, &redis.url()).await?;
    let dave = three.join("dave", "r", &secret).await?;

    // ... until Redis answers again: the node is found, linked, and the room is whole,
    // with no one rejoining.
    redis.thaw()?;
    poll_until(
        "node 1 reaches Redis again",
        || directory.reachable(),
        || format!("{:?}", directory.last_error()),
    )
    .await?;
    wait_links(&three, &[1, 2]).await?;
    wait_members(&dave, &["alice", "bob", "carol"]).await?;
    wait_members(&alice, &["bob", "carol", "dave"]).await?;
    // The room map lists the room on the three nodes again (each node rewrites its part
    // at its next renewal).
    let deadline = tokio::time::Instant::now() + sealroom_test_support::SAFETY;
    loop {
        let rooms = directory.rooms().await?;
        if rooms.len() == 1 && rooms[0].nodes.len() == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the room map never listed the room on three nodes: {rooms:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}
