//! The cascade: one room over three nodes hears itself whole, each frame crosses each
//! link once, keyframe requests reach the publisher's node, and only nodes holding the
//! cluster secret take part.

use std::collections::HashSet;

use sealroom_client::{Event, LeaveReason, RoomSecret};
use sealroom_test_support::poll_until;

use crate::support::{Member, TestNode, mesh};

const FRAMES: usize = 20;

pub(crate) async fn wait_members(member: &Member, users: &[&str]) -> anyhow::Result<()> {
    let users: HashSet<String> = users.iter().map(|u| (*u).to_owned()).collect();
    poll_until(
        &format!("{} sees {users:?}", member.name),
        || {
            let seen: HashSet<String> = member.room.members().into_iter().map(|m| m.user).collect();
            users.is_subset(&seen)
        },
        || format!("{:?}", member.room.members()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_over_three_nodes_hears_every_member_and_each_frame_crosses_a_link_once()
-> anyhow::Result<()> {
    let nodes = mesh(3).await?;
    let secret = RoomSecret::generate();
    let alice = nodes[0].join("alice", "r", &secret).await?;
    let bob = nodes[1].join("bob", "r", &secret).await?;
    let carol = nodes[2].join("carol", "r", &secret).await?;
    let dave = nodes[2].join("dave", "r", &secret).await?;
    // Membership crosses the nodes: each sees the three others.
    let everyone = ["alice", "bob", "carol", "dave"];
    for member in [&alice, &bob, &carol, &dave] {
        let others: Vec<&str> = everyone
            .iter()
            .copied()
            .filter(|u| *u != member.name)
            .collect();
        wait_members(member, &others).await?;
    }
    // Member ids carry their node: no two collide across nodes.
    let ids: HashSet<u32> = [&alice, &bob, &carol, &dave].iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), 4);

    let audio = alice.room.publish_audio(1).await?;
    let data = alice.room.publish_data(3).await?;
    let before = nodes[0].link(3).expect("link 1-3").frames_out;
    for i in 0..FRAMES {
        audio.send(format!("audio {i}").into_bytes())?;
        data.send(format!("data {i}").into_bytes()).await?;
        if i % 5 == 4 {
            // Stay within the receivers' datagram queues.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    for member in [&bob, &carol, &dave] {
        member
            .log
            .wait_for(
                &format!("{} has every reliable message", member.name),
                |events| {
                    events
                        .iter()
                        .filter(|e| matches!(e, Event::Frame(f) if f.payload.starts_with(b"data ")))
                        .count()
                        == FRAMES
                },
            )
            .await?;
        // Reliable data arrives in order across the link.
        let data: Vec<String> = member
            .frames_from(alice.id)
            .iter()
            .filter(|f| f.payload.starts_with(b"data "))
            .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
            .collect();
        let expected: Vec<String> = (0..FRAMES).map(|i| format!("data {i}")).collect();
        assert_eq!(
            data, expected,
            "{} hears alice's data in order",
            member.name
        );
        assert!(
            member
                .frames_from(alice.id)
                .iter()
                .any(|f| f.payload.starts_with(b"audio ")),
            "{} hears alice's audio",
            member.name
        );
    }
    // Node 1 sent each frame once over its link to node 3, though two members are there.
    let sent = nodes[0].link(3).expect("link 1-3").frames_out - before;
    assert_eq!(sent, 2 * FRAMES as u64, "one copy per frame on the link");
    let received = nodes[2].link(1).expect("link 3-1").frames_in;
    assert_eq!(received, 2 * FRAMES as u64);
    // Nothing of alice's went over the link between nodes 2 and 3.
    assert_eq!(nodes[1].link(3).expect("link 2-3").frames_out, 0);
    assert_eq!(nodes[2].link(2).expect("link 3-2").frames_out, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_and_keyframe_requests_cross_to_the_publishers_node() -> anyhow::Result<()> {
    let nodes = mesh(2).await?;
    let secret = RoomSecret::generate();
    let alice = nodes[0].join("alice", "r", &secret).await?;
    let bob = nodes[1].join("bob", "r", &secret).await?;
    wait_members(&bob, &["alice"]).await?;
    // Alice's node forwards to bob's once it knows bob is there.
    wait_members(&alice, &["bob"]).await?;
    let video = alice.room.publish_video(2).await?;
    // One group at a time, as towards a member: a newer group makes an unsent one stale by
    // design, on a link as on a member's connection.
    for group in 0..2 {
        for i in 0..5 {
            video.send(format!("video {group} {i}").into_bytes(), i == 0)?;
        }
        bob.log
            .wait_for("bob has the group of alice's video", |events| {
                events
                    .iter()
                    .filter(|e| matches!(e, Event::Frame(f) if f.payload.starts_with(b"video ")))
                    .count()
                    == 5 * (group + 1)
            })
            .await?;
    }
    bob.room.request_keyframe(alice.id, 2).await?;
    alice
        .log
        .wait_for("alice is asked for a keyframe", |events| {
            events
                .iter()
                .any(|e| matches!(e, Event::KeyframeRequested { track: 2, .. }))
        })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_secret_is_refused_counted_and_hears_nothing() -> anyhow::Result<()> {
    let good = TestNode::start(1, crate::support::CLUSTER_SECRET).await?;
    let bad = TestNode::start(2, b"not the cluster secret at all!!").await?;
    good.cluster.set_peers(&[bad.peer()]);
    let secret = RoomSecret::generate();
    let alice = good.join("alice", "r", &secret).await?;
    let mallory = bad.join("mallory", "r", &secret).await?;
    poll_until(
        "both nodes count the refused link",
        || {
            good.cluster.metrics().auth_failures() >= 1
                && bad.cluster.metrics().auth_failures() >= 1
        },
        || "no refusal counted".to_owned(),
    )
    .await?;
    assert!(good.cluster.links().is_empty());
    assert!(bad.cluster.links().is_empty());
    let audio = alice.room.publish_audio(1).await?;
    audio.send(b"for the room only".to_vec())?;
    // Mallory's node never learns of the room's members, nor alice of mallory.
    assert!(mallory.room.members().is_empty());
    assert!(alice.room.members().is_empty());
    assert!(mallory.frames_from(alice.id).is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_behind_a_lost_link_leave_and_the_rest_stay() -> anyhow::Result<()> {
    let nodes = mesh(3).await?;
    let secret = RoomSecret::generate();
    let alice = nodes[0].join("alice", "r", &secret).await?;
    let bob = nodes[1].join("bob", "r", &secret).await?;
    let carol = nodes[2].join("carol", "r", &secret).await?;
    wait_members(&alice, &["bob", "carol"]).await?;
    // Node 3 leaves the cluster: its links close.
    nodes[2].cluster.shutdown();
    alice
        .log
        .wait_for("alice sees carol leave", |events| {
            events.iter().any(|e| {
                matches!(e, Event::MemberLeft { member, reason: LeaveReason::TimedOut, .. } if *member == carol.id)
            })
        })
        .await?;
    // Alice and bob still hear each other.
    let audio = bob.room.publish_audio(1).await?;
    audio.send(b"still here".to_vec())?;
    alice
        .log
        .wait_for_payload("alice hears bob", b"still here")
        .await?;
    Ok(())
}
