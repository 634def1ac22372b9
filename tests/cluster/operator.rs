//! An operator acts on a room that spans nodes from any node: a kick reaches the member on
//! the node that holds it, and a dismissal every node with members of the room.

use sealroom_client::{ErrorCode, Event, LeaveReason, RoomSecret};
use sealroom_relay::{MemberTarget, RoomKey};

use crate::cascade::wait_members;
use crate::support::{APP, Member, mesh};

/// Wait until `member`'s session ended with `code`.
async fn ended_with(member: &Member, code: ErrorCode) -> anyhow::Result<()> {
    member
        .log
        .wait_for(
            &format!("{}'s session ends with {code:?}", member.name),
            |events| {
                events.iter().any(
                    |e| matches!(e, Event::Disconnected(reason) if reason.code() == Some(code)),
                )
            },
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_of_any_node_kicks_a_member_and_dismisses_a_room_across_nodes()
-> anyhow::Result<()> {
    let nodes = mesh(2).await?;
    let secret = RoomSecret::generate();
    let alice = nodes[0].join("alice", "r", &secret).await?;
    let bob = nodes[1].join("bob", "r", &secret).await?;
    let bea = nodes[1].join("bea", "r", &secret).await?;
    wait_members(&alice, &["bob", "bea"]).await?;
    let room = RoomKey::new(APP, "r");

    // Node 1's operator kicks Bob, who is on node 2.
    let kicked = nodes[0].relay.kick(
        &room,
        &MemberTarget::User("bob".into()),
        "removed by the operator",
    )?;
    assert_eq!(kicked, bob.id);
    ended_with(&bob, ErrorCode::Kicked).await?;
    for member in [&alice, &bea] {
        member
            .log
            .wait_for(&format!("{} sees bob kicked", member.name), |events| {
                events.iter().any(|e| {
                    matches!(e, Event::MemberLeft { member, reason: LeaveReason::Kicked, .. } if *member == bob.id)
                })
            })
            .await?;
    }

    // Node 2's operator dismisses the room: Alice, on node 1, goes as well as Bea.
    wait_members(&alice, &["bea"]).await?;
    assert_eq!(nodes[1].relay.dismiss(&room, "the call is over")?, 2);
    ended_with(&bea, ErrorCode::RoomDismissed).await?;
    ended_with(&alice, ErrorCode::RoomDismissed).await?;
    Ok(())
}
