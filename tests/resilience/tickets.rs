//! Tickets bind the whole session and the client keeps them fresh by itself: with a ticket
//! source that hands out new tickets the member outlives any one of them; with one that
//! refuses, the application hears that the refresh failed and the relay removes the member
//! at expiry, for good.

use bytes::Bytes;
use sealroom_client::{DisconnectReason, ErrorCode, Event, LeaveReason, RoomSecret, TicketReason};
use sealroom_client::{TicketSourceError, ticket_fn};
use sealroom_relay::Limits;

use crate::support::{
    CountingTickets, Identity, Member, any_port, limits, room_holds, room_key, ticket, until,
};

/// Seconds a short ticket lives: long enough to join on a busy machine, short enough for
/// a test.
const SHORT_TTL: u64 = 4;

/// Limits with no leeway past a ticket's expiry.
fn strict() -> Limits {
    Limits {
        ticket_leeway_secs: 0,
        ..limits()
    }
}

fn refreshed(e: &Event) -> bool {
    matches!(e, Event::TicketRefreshed { .. })
}

fn reconnect_events(e: &Event) -> bool {
    matches!(
        e,
        Event::ConnectionLost(_) | Event::Reconnecting { .. } | Event::Recovered { .. }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_app_refreshes_outlives_every_ticket() -> anyhow::Result<()> {
    let identity = Identity::new("refresh")?;
    let relay = identity.start_relay(any_port(), strict()).await?;
    let addr = relay.local_addr();
    let secret = RoomSecret::generate();
    let olga = Member::join(
        "olga",
        addr,
        identity.client_config(),
        ticket("olga", 3600),
        &secret,
    )
    .await?;
    // Every ticket rita's backend hands out is short: she stays only by refreshing.
    let (counts, tickets) = CountingTickets::new(|_| Ok(ticket("rita", SHORT_TTL)));
    let rita = Member::join("rita", addr, identity.client_config(), tickets, &secret).await?;
    room_holds(&relay, &["olga", "rita"]).await?;
    let first_exp = relay
        .members(&room_key())
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.user == "rita")
        .map(|m| m.ticket_exp)
        .expect("rita is a member");

    // Refreshes come at most 80 % into a lifetime, so by the third accepted one the join
    // ticket has long expired.
    rita.log
        .wait_for("three refreshes accepted", |e| {
            e.iter().filter(|e| refreshed(e)).count() >= 3
        })
        .await?;
    assert!(counts.refreshes() >= 3);
    assert_eq!(counts.rejoins(), 0);
    let exp_now = relay
        .members(&room_key())
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.user == "rita")
        .map(|m| m.ticket_exp)
        .expect("rita is still a member");
    assert!(exp_now > first_exp, "{exp_now} after {first_exp}");

    let chat = rita.room.publish_data(1).await?;
    chat.send(Bytes::from_static(b"still here")).await?;
    olga.log
        .wait_for("rita's message after her first ticket expired", |e| {
            e.iter()
                .any(|e| matches!(e, Event::Frame(f) if f.payload == "still here"))
        })
        .await?;
    assert!(!rita.room.is_closed());
    assert_eq!(rita.log.count(reconnect_events), 0);
    assert_eq!(
        rita.log
            .count(|e| matches!(e, Event::TicketRefreshFailed(_) | Event::Disconnected(_))),
        0
    );
    assert_eq!(olga.log.count(|e| matches!(e, Event::MemberLeft { .. })), 0);
    rita.room.leave().await;
    olga.room.leave().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_app_refuses_to_refresh_is_removed_for_good() -> anyhow::Result<()> {
    let identity = Identity::new("refuse")?;
    let relay = identity.start_relay(any_port(), strict()).await?;
    let addr = relay.local_addr();
    let secret = RoomSecret::generate();
    let olga = Member::join(
        "olga",
        addr,
        identity.client_config(),
        ticket("olga", 3600),
        &secret,
    )
    .await?;
    let tickets = ticket_fn(|request| async move {
        match request.reason {
            TicketReason::Join => Ok(ticket("eddy", SHORT_TTL)),
            _ => Err(TicketSourceError::new("the backend says no")),
        }
    });
    let eddy = Member::join("eddy", addr, identity.client_config(), tickets, &secret).await?;
    let eddy_id = eddy.room.member_id();

    eddy.log
        .wait_for("eddy's session ends", |e| {
            e.iter().any(|e| matches!(e, Event::Disconnected(_)))
        })
        .await?;
    let events = eddy.log.snapshot();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::TicketRefreshFailed(_)))
            .count(),
        1,
        "{events:?}"
    );
    assert!(
        matches!(
            events.last(),
            Some(Event::Disconnected(DisconnectReason::Relay {
                code: ErrorCode::TicketExpired,
                ..
            }))
        ),
        "{events:?}"
    );
    assert_eq!(eddy.log.count(reconnect_events), 0, "{events:?}");
    assert!(eddy.room.is_closed());
    until(
        "olga sees eddy leave because his ticket expired",
        || {
            olga.log.count(|e| {
                matches!(
                    e,
                    Event::MemberLeft { member, reason: LeaveReason::TicketExpired, .. }
                        if *member == eddy_id
                )
            }) == 1
        },
        || format!("{:?}", olga.log.snapshot()),
    )
    .await?;
    room_holds(&relay, &["olga"]).await?;
    olga.room.leave().await;
    relay.shutdown().await;
    Ok(())
}
