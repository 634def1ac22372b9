//! Tickets bind the whole session: a member whose ticket expires is removed; a member that
//! refreshed its ticket through the application's callback stays.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use sealroom_client::{
    DisconnectReason, ErrorCode, Event, RoomSecret, TicketReason, TicketSourceError, ticket_fn,
};
use sealroom_frame::control::LeaveReason;
use sealroom_relay::{Grants, Limits};

use crate::support::{Member, join_client, join_member, relay, ticket, until};

/// Seconds the short tickets live: long enough to join on a busy machine, short enough
/// for a test.
const SHORT_TTL: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_ticket_removes_the_member_and_a_refreshed_one_keeps_it() -> anyhow::Result<()> {
    let relay = relay(Limits {
        ticket_leeway_secs: 0,
        ..Limits::default()
    })
    .await?;
    let secret = RoomSecret::generate();
    let observer = join_member(&relay, "olga", "t", &secret).await?;

    // Both join with tickets that expire in a few seconds; the app's callback hands out a
    // long one when asked to refresh.
    let asked = Arc::new(AtomicU32::new(0));
    let tickets = {
        let asked = Arc::clone(&asked);
        ticket_fn(move |request| {
            let asked = Arc::clone(&asked);
            async move {
                asked.fetch_add(1, Ordering::Relaxed);
                let ttl = match request.reason {
                    TicketReason::Refresh => 3600,
                    _ => SHORT_TTL,
                };
                Ok::<_, TicketSourceError>(ticket("rita", "t", Grants::all(), ttl))
            }
        })
    };
    let (client, room, events) = join_client(&relay, tickets, &secret, |c| c).await?;
    let rita = Member::collecting(client, room, events);
    let (client, room, events) = join_client(
        &relay,
        ticket("eddy", "t", Grants::all(), SHORT_TTL),
        &secret,
        |c| c,
    )
    .await?;
    let eddy = Member::collecting(client, room, events);

    rita.room.refresh_ticket().await?;
    until(
        "rita's refresh is accepted",
        || {
            rita.log
                .count(|e| matches!(e, Event::TicketRefreshed { expires_in_secs } if *expires_in_secs > SHORT_TTL))
                == 1
        },
        || format!("{:?}", rita.log.snapshot()),
    )
    .await?;
    assert_eq!(asked.load(Ordering::Relaxed), 2, "a join and a refresh");

    // Eddy's ticket runs out: the relay removes him with the reason, the others see why.
    let gone = |e: &Event| {
        matches!(
            e,
            Event::Disconnected(DisconnectReason::Relay {
                code: ErrorCode::TicketExpired,
                ..
            })
        )
    };
    until(
        "eddy is removed at expiry",
        || eddy.log.count(gone) == 1,
        || format!("{:?}", eddy.log.snapshot()),
    )
    .await?;
    until(
        "the others see eddy leave because his ticket expired",
        || {
            observer.log.count(|e| {
                matches!(
                    e,
                    Event::MemberLeft { member, reason: LeaveReason::TicketExpired, .. }
                        if *member == eddy.id
                )
            }) == 1
        },
        || format!("{:?}", observer.log.snapshot()),
    )
    .await?;

    // Rita's first ticket expired at the same moment as eddy's, but she refreshed: she is
    // still in the room and still heard.
    let members = relay
        .members(&sealroom_relay::RoomKey::new(crate::support::APP, "t"))
        .expect("the room is open");
    let users: Vec<&str> = members.iter().map(|m| m.user.as_str()).collect();
    assert_eq!(users, ["olga", "rita"]);
    assert!(!rita.room.is_closed());
    let chat = rita.room.publish_data(1).await?;
    chat.send(Bytes::from_static(b"still here")).await?;
    until(
        "rita's message after eddy's expiry arrives",
        || {
            observer
                .log
                .frames_from(rita.id)
                .iter()
                .any(|f| f.payload == "still here")
        },
        || format!("{:?}", observer.log.snapshot()),
    )
    .await?;
    assert_eq!(rita.log.count(|e| matches!(e, Event::Disconnected(_))), 0);
    Ok(())
}
