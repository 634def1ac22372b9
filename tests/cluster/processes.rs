//! Node processes that die or drain: `sealroom relay --config node.toml` processes with
//! a real Redis, killed with SIGKILL or drained with SIGTERM while members publish.
//!
//! What a member relies on: its session moves to another node of its list by itself, the
//! members on the other nodes keep hearing the rest of the room without a gap, they see
//! the moved members leave and come back, and no (KID, CTR) pair is sealed twice.

use sealroom_client::{DisconnectReason, ErrorCode, Event, LeaveReason, MemberId, RoomSecret};
use sealroom_relay::engine::MEMBER_ID_NODE_SHIFT;

use crate::cascade::wait_members;
use crate::procs::{NodeSpec, Observer, ProcNode, Publisher, data_seqs, interrupted, join};
use crate::redis::{self, Redis};
use crate::support::Member;

/// Wait until `watcher` has seen `user`'s member `old` leave (for `lost`, with the reason
/// of a member whose node went silent) and `user` join again under another id. The two
/// may come in either order: a member that rejoins at once is back before its old node's
/// link has timed out.
async fn wait_left_and_back(
    watcher: &Member,
    user: &str,
    old: MemberId,
    lost: bool,
) -> anyhow::Result<()> {
    watcher
        .log
        .wait_for(
            &format!("{} sees {user} leave and come back", watcher.name),
            |events| {
                let left = events.iter().any(|e| {
                    matches!(e, Event::MemberLeft { member, reason, .. }
                        if *member == old && (!lost || *reason == LeaveReason::TimedOut))
                });
                let back = events
                    .iter()
                    .any(|e| matches!(e, Event::MemberJoined(m) if m.user == user && m.id != old));
                left && back
            },
        )
        .await
}

/// Wait until `watcher` has opened a frame from member `from`.
pub(crate) async fn wait_hears(watcher: &Member, from: MemberId, who: &str) -> anyhow::Result<()> {
    watcher
        .log
        .wait_for(
            &format!("{} hears {who} ({from})", watcher.name),
            |events| {
                events
                    .iter()
                    .any(|e| matches!(e, Event::Frame(f) if f.sender == from))
            },
        )
        .await
}

/// Wait until `member` has every one of `user`'s `sent` data messages, then check they
/// came in order, each once: a stream without a gap.
pub(crate) async fn wait_all_data(member: &Member, user: &str, sent: u64) -> anyhow::Result<()> {
    let prefix = format!("d:{user}:");
    member
        .log
        .wait_for(
            &format!("{} has {user}'s {sent} data messages", member.name),
            |events| {
                events
                    .iter()
                    .filter(|e| matches!(e, Event::Frame(f) if f.payload.starts_with(prefix.as_bytes())))
                    .count() as u64
                    >= sent
            },
        )
        .await?;
    let seqs = data_seqs(member, user);
    let expected: Vec<u64> = (0..sent).collect();
    assert_eq!(
        seqs, expected,
        "{} heard {user}'s data with a gap or a repeat",
        member.name
    );
    Ok(())
}

/// Wait until `member` has opened a frame from `from` since it recovered.
async fn wait_hears_after_recovery(
    member: &Member,
    from: MemberId,
    who: &str,
) -> anyhow::Result<()> {
    member
        .log
        .wait_for(
            &format!("{} hears {who} after recovering", member.name),
            |events| {
                events
                    .iter()
                    .skip_while(|e| !matches!(e, Event::Recovered { .. }))
                    .any(|e| matches!(e, Event::Frame(f) if f.sender == from))
            },
        )
        .await
}

async fn recovered_id(member: &Member) -> anyhow::Result<MemberId> {
    member
        .log
        .wait_for(
            &format!("{} recovers on another node", member.name),
            |events| events.iter().any(|e| matches!(e, Event::Recovered { .. })),
        )
        .await?;
    Ok(member.room.member_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_process_loses_only_its_members_for_as_long_as_they_take_to_rejoin()
-> anyhow::Result<()> {
    if !redis::available()? {
        return Ok(());
    }
    let redis = Redis::start()?;
    let mut nodes = Vec::new();
    for index in 1..=3 {
        nodes.push(ProcNode::start(&NodeSpec::loopback(index, &redis.url()))?);
    }
    let pin = nodes[0].node.cert_sha256.clone();
    let [n1, n2, n3] = [nodes[0].relay(), nodes[1].relay(), nodes[2].relay()];
    let secret = RoomSecret::generate();
    // Two members on node 3, whose lists go on to node 1 and node 2; one each on 1 and 2.
    let alice = join(&pin, &[n1, n2, n3], "alice", "r", &secret).await?;
    let bob = join(&pin, &[n2, n1, n3], "bob", "r", &secret).await?;
    let carol = join(&pin, &[n3, n1, n2], "carol", "r", &secret).await?;
    let dave = join(&pin, &[n3, n2, n1], "dave", "r", &secret).await?;
    for (member, node) in [(&alice, 1), (&bob, 2), (&carol, 3), (&dave, 3)] {
        assert_eq!(member.id >> MEMBER_ID_NODE_SHIFT, node, "{}", member.name);
    }
    let observer = Observer::join(n1, "r").await?;
    let everyone = ["alice", "bob", "carol", "dave"];
    for member in [&alice, &bob, &carol, &dave] {
        let others: Vec<&str> = everyone
            .iter()
            .copied()
            .filter(|u| *u != member.name)
            .collect();
        wait_members(member, &others).await?;
    }
    let (old_carol, old_dave) = (carol.id, dave.id);
    let publishers = [
        Publisher::start(&alice).await?,
        Publisher::start(&bob).await?,
        Publisher::start(&carol).await?,
        Publisher::start(&dave).await?,
    ];
    // The room is whole: everyone hears node 3's members, and the observer sees their
    // sealed audio.
    for watcher in [&alice, &bob] {
        wait_hears(watcher, old_carol, "carol").await?;
        wait_hears(watcher, old_dave, "dave").await?;
    }
    sealroom_test_support::poll_until(
        "the observer sees node 3's audio",
        || {
            let senders = observer.senders();
            senders.contains(&old_carol) && senders.contains(&old_dave)
        },
        || format!("{:?}", observer.senders()),
    )
    .await?;

    // Node 3 dies without a word.
    let killed = std::time::Instant::now();
    nodes[2].kill()?;

    // Its members rejoin at the next node of their lists and hear the room again ...
    let new_carol = recovered_id(&carol).await?;
    let new_dave = recovered_id(&dave).await?;
    wait_hears_after_recovery(&carol, alice.id, "alice").await?;
    wait_hears_after_recovery(&dave, bob.id, "bob").await?;
    // Not asserted (no timing in tests): printed for the failover figure in
    // docs/PERFORMANCE.md (`-- --nocapture`).
    eprintln!(
        "failover: node killed -> both of its members hear the room again: {} ms",
        killed.elapsed().as_millis()
    );
    assert_eq!(new_carol >> MEMBER_ID_NODE_SHIFT, 1);
    assert_eq!(new_dave >> MEMBER_ID_NODE_SHIFT, 2);
    // ... the others see them leave and come back, and hear them again.
    for watcher in [&alice, &bob] {
        wait_left_and_back(watcher, "carol", old_carol, true).await?;
        wait_left_and_back(watcher, "dave", old_dave, true).await?;
        wait_hears(watcher, new_carol, "carol again").await?;
        wait_hears(watcher, new_dave, "dave again").await?;
    }
    sealroom_test_support::poll_until(
        "the observer sees the moved members' audio again",
        || {
            let senders = observer.senders();
            senders.contains(&new_carol) && senders.contains(&new_dave)
        },
        || format!("{:?}", observer.senders()),
    )
    .await?;
    // Carol and dave now hear alice and bob, and each other, through their new nodes.
    wait_hears(&carol, alice.id, "alice").await?;
    wait_hears(&dave, bob.id, "bob").await?;
    wait_hears(&carol, new_dave, "dave").await?;

    let [pa, pb, pc, pd] = publishers;
    let (sent_alice, sent_bob) = (pa.stop().await, pb.stop().await);
    let _ = (pc.stop().await, pd.stop().await);
    // Alice and bob never lost their sessions and heard each other without a gap through
    // the whole failover.
    wait_all_data(&alice, "bob", sent_bob).await?;
    wait_all_data(&bob, "alice", sent_alice).await?;
    for member in [&alice, &bob] {
        let lost = interrupted(member);
        assert!(
            lost.is_empty(),
            "{}'s session was interrupted: {lost:?}",
            member.name
        );
    }
    // Whatever the observer received, across the failover, no (KID, CTR) pair came twice.
    let checked = observer.assert_no_pair_twice();
    assert!(checked > 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_drained_with_sigterm_moves_its_members_within_the_drain() -> anyhow::Result<()> {
    if !redis::available()? {
        return Ok(());
    }
    let redis = Redis::start()?;
    // A lease far longer than the test: node 2's record can only go because it left.
    let spec = |index| NodeSpec {
        drain_secs: 25,
        lease_ms: 60_000,
        ..NodeSpec::loopback(index, &redis.url())
    };
    let one = ProcNode::start(&spec(1))?;
    let mut two = ProcNode::start(&spec(2))?;
    let pin = one.node.cert_sha256.clone();
    let (n1, n2) = (one.relay(), two.relay());
    let secret = RoomSecret::generate();
    let alice = join(&pin, &[n1, n2], "alice", "r", &secret).await?;
    let bob = join(&pin, &[n2, n1], "bob", "r", &secret).await?;
    let carol = join(&pin, &[n2, n1], "carol", "r", &secret).await?;
    let observer = Observer::join(n1, "r").await?;
    wait_members(&alice, &["bob", "carol"]).await?;
    wait_members(&bob, &["alice", "carol"]).await?;
    let (old_bob, old_carol) = (bob.id, carol.id);
    let publishers = [
        Publisher::start(&alice).await?,
        Publisher::start(&bob).await?,
        Publisher::start(&carol).await?,
    ];
    wait_hears(&alice, old_bob, "bob").await?;
    wait_hears(&bob, alice.id, "alice").await?;
    assert!(redis.exists("sealroom:node:2"));

    two.node.terminate();

    // Bob and carol are told to go away (not lost), and move to node 1.
    for member in [&bob, &carol] {
        let new = recovered_id(member).await?;
        assert_eq!(new >> MEMBER_ID_NODE_SHIFT, 1, "{}", member.name);
        let told = member.log.snapshot().into_iter().any(|e| {
            matches!(e, Event::ConnectionLost(DisconnectReason::Relay { code, .. })
                if code == ErrorCode::ShuttingDown)
        });
        assert!(told, "{} was not told the node shuts down", member.name);
    }
    wait_left_and_back(&alice, "bob", old_bob, false).await?;
    wait_left_and_back(&alice, "carol", old_carol, false).await?;
    wait_hears(&alice, bob.room.member_id(), "bob on node 1").await?;
    wait_hears(&carol, bob.room.member_id(), "bob on node 1").await?;

    // Node 2 exits by itself once its members are gone, well inside its drain: none was
    // still connected at the deadline; and it left the directory at once (its lease had
    // a minute to run).
    let status = two.node.wait()?;
    assert!(status.success(), "node 2 exited with {status}");
    let log = two.node.log();
    assert!(
        log.contains("drain finished") && log.contains(r#""remaining":0"#),
        "node 2 did not see every member leave within the drain:\n{log}"
    );
    assert!(log.contains("left the cluster"), "{log}");
    assert!(!redis.exists("sealroom:node:2"));
    assert!(redis.exists("sealroom:node:1"));

    let [pa, pb, pc] = publishers;
    let sent_alice = pa.stop().await;
    let _ = (pb.stop().await, pc.stop().await);
    // Alice's own session never moved, and bob hears her from his new node.
    let lost = interrupted(&alice);
    assert!(lost.is_empty(), "alice's session was interrupted: {lost:?}");
    wait_hears(&bob, alice.id, "alice after the move").await?;
    let _ = sent_alice;
    let checked = observer.assert_no_pair_twice();
    assert!(checked > 0);
    Ok(())
}
