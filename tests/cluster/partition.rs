//! A node cut off from the rest of the cluster and healed: three `sealroom relay`
//! processes, each in its own network namespace ([`crate::netns`]), with Redis on the
//! cluster network. Node 3 loses the cluster network (the other nodes and Redis) while its
//! member stays connected to it.

use sealroom_client::{Event, LeaveReason, MemberId, RoomSecret};

use crate::cascade::wait_members;
use crate::netns::Netns;
use crate::processes::{wait_all_data, wait_hears};
use crate::procs::{NodeSpec, ProcNode, Publisher, interrupted, join, with_logs};
use crate::redis::{self, Redis};
use crate::support::Member;

/// Wait until `watcher` has seen member `id` leave as timed out and then join again under
/// the same id (its session never ended: its node was unreachable), and has opened a frame
/// from it since.
async fn wait_gone_and_back(watcher: &Member, id: MemberId, who: &str) -> anyhow::Result<()> {
    watcher
        .log
        .wait_for(
            &format!("{} sees {who} go, come back and be heard", watcher.name),
            |events| {
                let Some(left) = events.iter().position(|e| {
                    matches!(e, Event::MemberLeft { member, reason, .. }
                        if *member == id && *reason == LeaveReason::TimedOut)
                }) else {
                    return false;
                };
                let Some(back) = events
                    .iter()
                    .skip(left)
                    .position(|e| matches!(e, Event::MemberJoined(m) if m.id == id))
                else {
                    return false;
                };
                events
                    .iter()
                    .skip(left + back)
                    .any(|e| matches!(e, Event::Frame(f) if f.sender == id))
            },
        )
        .await
}

/// Wait until `watcher` has seen member `id` leave as timed out.
async fn wait_gone(watcher: &Member, id: MemberId, who: &str) -> anyhow::Result<()> {
    watcher
        .log
        .wait_for(&format!("{} sees {who} go", watcher.name), |events| {
            events.iter().any(|e| {
                matches!(e, Event::MemberLeft { member, reason, .. }
                    if *member == id && *reason == LeaveReason::TimedOut)
            })
        })
        .await
}

/// Three node processes, each in its own namespace, with Redis on the cluster network,
/// and alice, bob and carol on nodes 1, 2 and 3, all publishing and hearing each other.
struct Setup {
    alice: Member,
    bob: Member,
    carol: Member,
    publishers: [Publisher; 3],
    nodes: Vec<ProcNode>,
    redis: Redis,
    // Dropped last: the node processes go before their namespaces.
    netns: Netns,
}

async fn setup() -> anyhow::Result<Option<Setup>> {
    if !redis::available()? {
        return Ok(None);
    }
    let Some(netns) = Netns::create(3)? else {
        return Ok(None);
    };
    let redis = Redis::start_on(netns.host_cluster_ip())?;
    let mut nodes = Vec::new();
    for i in 1..=3u8 {
        let spec = NodeSpec {
            relay_ip: netns.member_ip(i),
            link_ip: netns.cluster_ip(i),
            ..NodeSpec::loopback(u16::from(i), &redis.url())
        };
        let command = netns.exec(i, env!("CARGO_BIN_EXE_sealroom"));
        nodes.push(ProcNode::start_with(command, &spec)?);
    }
    let pin = nodes[0].node.cert_sha256.clone();
    let relays: Vec<_> = nodes.iter().map(ProcNode::relay).collect();
    let secret = RoomSecret::generate();
    let alice = join(&pin, &relays, "alice", "r", &secret).await?;
    let bob = join(&pin, &[relays[1], relays[0]], "bob", "r", &secret).await?;
    let carol = join(&pin, &[relays[2], relays[0]], "carol", "r", &secret).await?;
    for (member, others) in [
        (&alice, ["bob", "carol"]),
        (&bob, ["alice", "carol"]),
        (&carol, ["alice", "bob"]),
    ] {
        with_logs(wait_members(member, &others).await, &nodes)?;
    }
    let publishers = [
        Publisher::start(&alice).await?,
        Publisher::start(&bob).await?,
        Publisher::start(&carol).await?,
    ];
    wait_hears(&alice, carol.id, "carol").await?;
    wait_hears(&carol, bob.id, "bob").await?;
    Ok(Some(Setup {
        alice,
        bob,
        carol,
        publishers,
        nodes,
        redis,
        netns,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_cluster_and_healed_rejoins_the_room_by_itself()
-> anyhow::Result<()> {
    let Some(Setup {
        alice,
        bob,
        carol,
        publishers,
        nodes,
        redis,
        netns,
    }) = setup().await?
    else {
        return Ok(());
    };
    netns.cut(3)?;
    // Each side sees the other's members go; node 3's lease runs out (it cannot renew).
    with_logs(wait_gone(&alice, carol.id, "carol").await, &nodes)?;
    wait_gone(&bob, carol.id, "carol").await?;
    wait_gone(&carol, alice.id, "alice").await?;
    wait_gone(&carol, bob.id, "bob").await?;
    sealroom_test_support::poll_until(
        "node 3's lease runs out",
        || !redis.exists("sealroom:node:3"),
        || "sealroom:node:3 is still there".to_owned(),
    )
    .await?;
    // Alice and bob keep hearing each other meanwhile (checked in full below).
    let before = alice.log.frames_from(bob.id).len();
    alice
        .log
        .wait_for("alice hears bob during the partition", |events| {
            events
                .iter()
                .filter(|e| matches!(e, Event::Frame(f) if f.sender == bob.id))
                .count()
                > before
        })
        .await?;

    netns.heal(3)?;
    // Node 3 registers again by itself, the links come back, and the room is whole again:
    // the same members (no session was lost), heard both ways.
    sealroom_test_support::poll_until(
        "node 3 is registered again",
        || redis.exists("sealroom:node:3"),
        || "sealroom:node:3 missing".to_owned(),
    )
    .await?;
    wait_gone_and_back(&alice, carol.id, "carol").await?;
    wait_gone_and_back(&bob, carol.id, "carol").await?;
    wait_gone_and_back(&carol, alice.id, "alice").await?;
    wait_gone_and_back(&carol, bob.id, "bob").await?;

    let [pa, pb, pc] = publishers;
    let (sent_alice, sent_bob) = (pa.stop().await, pb.stop().await);
    let _ = pc.stop().await;
    wait_all_data(&alice, "bob", sent_bob).await?;
    wait_all_data(&bob, "alice", sent_alice).await?;
    // No member's own session was touched: the partition was between nodes.
    for member in [&alice, &bob, &carol] {
        let lost = interrupted(member);
        assert!(
            lost.is_empty(),
            "{}'s session was interrupted: {lost:?}",
            member.name
        );
    }
    drop(nodes);
    drop(netns);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cut_between_two_nodes_parts_only_their_members_and_heals_by_itself()
-> anyhow::Result<()> {
    let Some(Setup {
        alice,
        bob,
        carol,
        publishers,
        nodes,
        redis: _redis,
        netns,
    }) = setup().await?
    else {
        return Ok(());
    };
    // Nodes 1 and 3 lose each other; both still reach Redis and node 2.
    netns.cut_between(1, 3)?;
    with_logs(wait_gone(&alice, carol.id, "carol").await, &nodes)?;
    wait_gone(&carol, alice.id, "alice").await?;
    // Bob, on node 2, still hears both sides (checked in full below), and no frame of
    // one side reaches the other through him: a node forwards only its own publishers.
    let before = (
        bob.log.frames_from(alice.id).len(),
        bob.log.frames_from(carol.id).len(),
    );
    bob.log
        .wait_for("bob hears alice and carol during the cut", |events| {
            let count = |id| {
                events
                    .iter()
                    .filter(|e| matches!(e, Event::Frame(f) if f.sender == id))
                    .count()
            };
            count(alice.id) > before.0 && count(carol.id) > before.1
        })
        .await?;

    netns.heal_between(1, 3)?;
    // The dialler gets through again: alice and carol are back in each other's room,
    // under the same ids, and heard.
    with_logs(wait_gone_and_back(&alice, carol.id, "carol").await, &nodes)?;
    wait_gone_and_back(&carol, alice.id, "alice").await?;

    let [pa, pb, pc] = publishers;
    let (sent_alice, _, sent_carol) = (pa.stop().await, pb.stop().await, pc.stop().await);
    // Bob's links were never cut: he has every reliable message of both, in order.
    wait_all_data(&bob, "alice", sent_alice).await?;
    wait_all_data(&bob, "carol", sent_carol).await?;
    // Bob never saw anyone leave.
    let left = bob.log.count(|e| matches!(e, Event::MemberLeft { .. }));
    assert_eq!(left, 0, "bob saw members leave");
    for member in [&alice, &bob, &carol] {
        let lost = interrupted(member);
        assert!(
            lost.is_empty(),
            "{}'s session was interrupted: {lost:?}",
            member.name
        );
    }
    drop(nodes);
    drop(netns);
    Ok(())
}
