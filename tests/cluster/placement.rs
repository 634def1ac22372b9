//! Placement and failover: a node sends joins to a less loaded node with `Redirect`, the
//! client follows it and fails over along its list of nodes, and a member whose node goes
//! away rejoins at another one while the rest of the room keeps hearing each other.

use sealroom_client::{Event, LeaveReason, RoomSecret};
use sealroom_relay::engine::MEMBER_ID_NODE_SHIFT;

use crate::cascade::wait_members;
use crate::redis::{self, Redis};
use crate::support::{TestNode, join_any, wait_links};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaded_node_redirects_joins_and_the_client_follows() -> anyhow::Result<()> {
    if !redis::available()? {
        return Ok(());
    }
    let redis = Redis::start()?;
    let one = TestNode::placed(1, &redis.url(), 1).await?;
    let two = TestNode::placed(2, &redis.url(), 1).await?;
    wait_links(&one, &[2]).await?;
    let secret = RoomSecret::generate();
    let alice = one.join("alice", "r", &secret).await?;
    assert_eq!(alice.id >> MEMBER_ID_NODE_SHIFT, 1);
    // Node 1 is one member ahead of node 2.
    one.wait_directory_members(1).await?;
    // Bob asks node 1, which sends him to node 2 with the same ticket.
    let bob = one.join("bob", "r", &secret).await?;
    assert_eq!(
        bob.id >> MEMBER_ID_NODE_SHIFT,
        2,
        "bob was placed on node 2"
    );
    assert_eq!(two.relay.stats().members, 1);
    wait_members(&bob, &["alice"]).await?;
    wait_members(&alice, &["bob"]).await?;
    let redirected = one
        .relay
        .stats()
        .joins(sealroom_relay::JoinOutcome::Redirected);
    assert_eq!(redirected, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_fails_over_along_its_list_and_rejoins_when_its_node_goes() -> anyhow::Result<()>
{
    let nodes = crate::support::mesh(2).await?;
    let secret = RoomSecret::generate();
    let pin = nodes[0].pin();
    let addrs = [nodes[0].relay.local_addr(), nodes[1].relay.local_addr()];
    // Nothing listens at the first address: the join goes to the next one.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let bob = join_any(pin, &[dead, addrs[1]], "bob", "r", &secret).await?;
    assert_eq!(bob.id >> MEMBER_ID_NODE_SHIFT, 2);
    // Alice is on node 1, with both nodes in her list.
    let alice = join_any(pin, &addrs, "alice", "r", &secret).await?;
    assert_eq!(alice.id >> MEMBER_ID_NODE_SHIFT, 1);
    let old_alice = alice.id;
    wait_members(&bob, &["alice"]).await?;
    // Node 1 goes away: alice rejoins at node 2; bob sees her leave and come back.
    let [one, two]: [TestNode; 2] = nodes.try_into().map_err(|_| anyhow::anyhow!("two nodes"))?;
    one.stop().await?;
    alice
        .log
        .wait_for("alice recovers", |events| {
            events.iter().any(|e| matches!(e, Event::Recovered { .. }))
        })
        .await?;
    assert_eq!(alice.room.member_id() >> MEMBER_ID_NODE_SHIFT, 2);
    bob.log
        .wait_for("bob sees alice leave and return", |events| {
            let left = events.iter().position(|e| {
                matches!(e, Event::MemberLeft { member, reason, .. }
                    if *member == old_alice && *reason != LeaveReason::Left)
            });
            let back = events.iter().rposition(
                |e| matches!(e, Event::MemberJoined(m) if m.user == "alice" && m.id != old_alice),
            );
            matches!((left, back), (Some(l), Some(b)) if b > l)
        })
        .await?;
    let audio = alice.room.publish_audio(1).await?;
    audio.send(b"back on node 2".to_vec())?;
    bob.log
        .wait_for_payload("bob hears alice again", b"back on node 2")
        .await?;
    drop(two);
    Ok(())
}
