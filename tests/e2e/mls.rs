//! The MLS key mode over a real relay: members join the group by themselves, frames open
//! for the group's members, a member that leaves is removed and the keys move on, and the
//! relay never sees a plaintext.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use sealroom_client::{Event, JoinConfig, KeyMode, MlsConfig, MlsEvent};
use sealroom_relay::Grants;
use sealroom_relay::engine::MlsOutcome;
use sealroom_test_support::poll_until;

use crate::support::{Member, TestRelay};

const MARKER: &str = "MLS-PLAINTEXT-MARKER-51c2";

async fn join_mls(relay: &TestRelay, user: &str) -> anyhow::Result<Member> {
    let client = relay.client();
    let ticket = relay.ticket("app-a", user, "mls-room", Grants::all());
    let (room, events) = client
        .join_with_mode(
            relay.relay.local_addr(),
            "localhost",
            ticket,
            KeyMode::Mls(MlsConfig::new(user)),
            JoinConfig::default(),
        )
        .await?;
    Ok(Member::collecting(client, room, events).named(user))
}

async fn wait_epoch(members: &[&Member], epoch: u64) -> anyhow::Result<()> {
    poll_until(
        &format!("every member at epoch {epoch}"),
        || members.iter().all(|m| m.room.mls_epoch() == Some(epoch)),
        || {
            members
                .iter()
                .map(|m| format!("{}: {:?}", m.name, m.room.mls_epoch()))
                .collect::<Vec<_>>()
                .join(", ")
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_the_group_open_each_others_frames_and_a_leaver_is_removed()
-> anyhow::Result<()> {
    let relay = TestRelay::start().await?;
    let marker_hits = Arc::new(AtomicU64::new(0));
    relay.relay.set_payload_tap(Some({
        let hits = marker_hits.clone();
        Arc::new(move |bytes: &[u8]| {
            if bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()) {
                hits.fetch_add(1, Ordering::Relaxed);
            }
        })
    }));
    let alice = join_mls(&relay, "alice").await?;
    wait_epoch(&[&alice], 0).await?;
    let bob = join_mls(&relay, "bob").await?;
    wait_epoch(&[&alice, &bob], 1).await?;
    let carol = join_mls(&relay, "carol").await?;
    let all = [&alice, &bob, &carol];
    wait_epoch(&all, 2).await?;
    for member in all {
        let listed = member.room.mls_members();
        assert_eq!(listed.len(), 3, "{} sees three leaves", member.name);
        assert!(
            listed.iter().all(|m| m.in_roster),
            "credentials match the roster"
        );
    }

    let mut tracks = Vec::new();
    for member in all {
        tracks.push(member.room.publish_data(1).await?);
    }
    for (member, track) in all.iter().zip(&tracks) {
        track
            .send(Bytes::from(format!(
                "{MARKER} from {} in epoch 2",
                member.name
            )))
            .await?;
    }
    for receiver in all {
        for sender in all {
            if receiver.id != sender.id {
                let text = format!("{MARKER} from {} in epoch 2", sender.name);
                receiver
                    .log
                    .wait_for(&text, |events| {
                        events
                            .iter()
                            .any(|e| matches!(e, Event::Frame(f) if f.payload == text.as_bytes()))
                    })
                    .await?;
            }
        }
    }

    // Carol leaves: the others remove her leaf and move to epoch 3.
    carol.room.leave().await;
    wait_epoch(&[&alice, &bob], 3).await?;
    assert_eq!(alice.room.mls_members().len(), 2);
    let text = format!("{MARKER} from alice in epoch 3");
    tracks[0].send(Bytes::from(text.clone())).await?;
    bob.log
        .wait_for(&text, |events| {
            events
                .iter()
                .any(|e| matches!(e, Event::Frame(f) if f.payload == text.as_bytes()))
        })
        .await?;
    assert!(
        alice
            .log
            .snapshot()
            .iter()
            .any(|e| matches!(e, Event::Mls(MlsEvent::EpochChanged { epoch: 3, .. })))
    );
    assert_eq!(alice.log.count(|e| matches!(e, Event::CouldNotOpen(_))), 0);
    assert_eq!(bob.log.count(|e| matches!(e, Event::CouldNotOpen(_))), 0);
    assert_eq!(
        marker_hits.load(Ordering::Relaxed),
        0,
        "plaintext reached the relay"
    );
    let metrics = relay.relay.metrics();
    assert!(metrics.mls_messages(MlsOutcome::Committed) >= 3);
    assert_eq!(metrics.mls_messages(MlsOutcome::Published), 1);
    Ok(())
}
