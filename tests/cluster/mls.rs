//! MLS rooms over a cluster: the node holding a room's MLS group announces it, the other
//! nodes send the room's joins and members there, and of two nodes that each hold a group
//! for the room (created apart) the lower index keeps it; either way the members end in
//! one group and open each other's frames.

use std::time::Duration;

use sealroom_client::{
    Client, ClientConfig, Event, JoinConfig, KeyMode, MlsConfig, MlsEvent, Trust,
};
use sealroom_relay::JoinOutcome;
use sealroom_relay::engine::MEMBER_ID_NODE_SHIFT;
use sealroom_test_support::poll_until;
use sealroom_test_support::raw::Raw;

use crate::support::{Member, TestNode, mesh, ticket, wait_links};

const ROOM: &str = "mls-over-nodes";

/// Join the MLS room as `user` at `node` (only that node in the client's list).
async fn join_mls(node: &TestNode, user: &str) -> anyhow::Result<Member> {
    join_mls_any(&[node], user).await
}

/// Join the MLS room as `user` through `nodes`, in order.
async fn join_mls_any(nodes: &[&TestNode], user: &str) -> anyhow::Result<Member> {
    let config = ClientConfig::new(Trust::Pinned(nodes[0].pin()))
        .connect_timeout(Duration::from_secs(2))
        .reconnect_backoff(Duration::from_millis(100), Duration::from_millis(500));
    let client = Client::new(config)?;
    let relays: Vec<_> = nodes.iter().map(|n| n.relay.local_addr()).collect();
    let (room, events) = client
        .join_any_with_mode(
            &relays,
            "localhost",
            ticket(user, ROOM),
            KeyMode::Mls(MlsConfig::new(user)),
            JoinConfig::default(),
        )
        .await?;
    Ok(Member::collecting(client, room, events).named(user))
}

/// Wait until every member is on node `node`, in one group of all of them at one epoch.
async fn wait_one_group(members: &[&Member], node: u32) -> anyhow::Result<()> {
    poll_until(
        &format!("every member on node {node}, in one group"),
        || {
            let epoch = members[0].room.mls_epoch();
            epoch.is_some()
                && members.iter().all(|m| {
                    m.room.member_id() >> MEMBER_ID_NODE_SHIFT == node
                        && m.room.mls_epoch() == epoch
                        && m.room.mls_members().len() == members.len()
                })
        },
        || {
            members
                .iter()
                .map(|m| {
                    format!(
                        "{}: node {} epoch {:?} group of {}",
                        m.name,
                        m.room.member_id() >> MEMBER_ID_NODE_SHIFT,
                        m.room.mls_epoch(),
                        m.room.mls_members().len()
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        },
    )
    .await
}

/// Each member's audio opens at the other.
async fn hear_each_other(a: &Member, b: &Member) -> anyhow::Result<()> {
    let a_audio = a.room.publish_audio(1).await?;
    let b_audio = b.room.publish_audio(1).await?;
    let from_a = format!("{} speaks", a.name).into_bytes();
    let from_b = format!("{} speaks", b.name).into_bytes();
    // Sent until heard: a frame sealed just before the other's commit lands may be of
    // the epoch before.
    poll_until(
        "both hear each other",
        || {
            let _ = a_audio.send(from_a.clone());
            let _ = b_audio.send(from_b.clone());
            let heard = |m: &Member, payload: &[u8]| {
                m.log
                    .snapshot()
                    .iter()
                    .any(|e| matches!(e, Event::Frame(f) if f.payload[..] == *payload))
            };
            heard(b, &from_a) && heard(a, &from_b)
        },
        || {
            format!(
                "{:?} / {:?}",
                a.log.snapshot().len(),
                b.log.snapshot().len()
            )
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_an_mls_room_at_another_node_ends_on_the_node_holding_its_group()
-> anyhow::Result<()> {
    let nodes = mesh(2).await?;
    let alice = join_mls(&nodes[0], "alice").await?;
    poll_until(
        "alice created the group",
        || alice.room.mls_epoch().is_some(),
        || format!("alice's events: {:?}", alice.log.snapshot()),
    )
    .await?;
    // Bob asks node 2 only. Node 2 sends his join to node 1 (or, had it not heard of the
    // group yet, gives up the group Bob creates there and moves him).
    let bob = join_mls(&nodes[1], "bob").await?;
    wait_one_group(&[&alice, &bob], 1).await?;
    hear_each_other(&alice, &bob).await?;
    let redirected = nodes[1].relay.stats().joins(JoinOutcome::Redirected);
    poll_until(
        "node 2 counts the redirect or the move",
        || redirected + nodes[1].cluster.metrics().mls_members_moved() >= 1,
        || {
            format!(
                "{redirected} redirected, {} moved",
                nodes[1].cluster.metrics().mls_members_moved()
            )
        },
    )
    .await?;
    assert_eq!(
        nodes[1].relay.stats().members,
        0,
        "no member stays on node 2"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_that_created_a_rooms_group_apart_keep_the_lower_nodes_when_linked()
-> anyhow::Result<()> {
    let one = TestNode::start(1, crate::support::CLUSTER_SECRET).await?;
    let two = TestNode::start(2, crate::support::CLUSTER_SECRET).await?;
    // Not linked yet: each node's member creates a group of its own.
    let alice = join_mls(&one, "alice").await?;
    let bob = join_mls(&two, "bob").await?;
    poll_until(
        "alice and bob each created a group",
        || alice.room.mls_epoch().is_some() && bob.room.mls_epoch().is_some(),
        || {
            format!(
                "alice at epoch {:?}, bob at epoch {:?}",
                alice.room.mls_epoch(),
                bob.room.mls_epoch()
            )
        },
    )
    .await?;
    assert_eq!(bob.room.member_id() >> MEMBER_ID_NODE_SHIFT, 2);
    one.cluster.set_peers(&[two.peer()]);
    two.cluster.set_peers(&[one.peer()]);
    wait_links(&one, &[2]).await?;
    // Node 2 gives its group up and sends Bob to node 1, where he joins Alice's group.
    wait_one_group(&[&alice, &bob], 1).await?;
    assert!(
        bob.log
            .snapshot()
            .iter()
            .any(|e| matches!(e, Event::Mls(MlsEvent::Rejoining))),
        "bob rejoined by external commit"
    );
    hear_each_other(&alice, &bob).await?;
    poll_until(
        "node 2 counts one member moved",
        || two.cluster.metrics().mls_members_moved() == 1,
        || format!("{}", two.cluster.metrics().mls_members_moved()),
    )
    .await?;
    assert_eq!(one.cluster.metrics().mls_members_moved(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mls_room_on_a_draining_node_moves_whole_to_the_next_node() -> anyhow::Result<()> {
    let nodes = mesh(2).await?;
    let list = [&nodes[0], &nodes[1]];
    let alice = join_mls_any(&list, "alice").await?;
    let bob = join_mls_any(&list, "bob").await?;
    wait_one_group(&[&alice, &bob], 1).await?;
    // A member that ignores GoAway keeps the room (and its group) at node 1 until the
    // drain's deadline.
    let lingering = Raw::join(&nodes[0].relay, &ticket("carol", ROOM)).await?;
    // Node 1 drains: it withdraws its claim on the room's group, so the members' rejoins
    // stay at node 2 (the next in their lists) instead of being sent back to node 1.
    let draining = {
        let relay = std::sync::Arc::clone(&nodes[0].relay);
        tokio::spawn(async move { relay.drain(Duration::from_secs(5)).await })
    };
    wait_one_group(&[&alice, &bob], 2).await?;
    hear_each_other(&alice, &bob).await?;
    assert!(
        !draining.is_finished(),
        "the members moved while carol still held the room at node 1"
    );
    assert_eq!(
        draining.await?,
        1,
        "carol stayed until the drain's deadline"
    );
    drop(lingering);
    assert_eq!(
        nodes[0].relay.stats().joins(JoinOutcome::Redirected)
            + nodes[1].relay.stats().joins(JoinOutcome::Redirected),
        0,
        "no rejoin was sent back to the draining node"
    );
    Ok(())
}
