//! Tickets the relay must refuse, each with its typed reason, and grants it enforces.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sealroom_client::{
    ErrorCode, Event, JoinConfig, JoinError, MediaKind, RoomSecret, TicketSourceError, ticket_fn,
};
use sealroom_relay::ticket::{Grants, TicketClaims, mint};

use crate::support::{APPS, TestRelay, find, unix_now};

async fn refusal(relay: &TestRelay, ticket: String) -> Option<ErrorCode> {
    match relay.join_with(ticket, &RoomSecret::generate()).await {
        Ok(_) => None,
        Err(err @ JoinError::Refused { .. }) => err.code(),
        Err(other) => panic!("expected a typed refusal, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tickets_are_refused_with_their_reasons() -> anyhow::Result<()> {
    let relay = TestRelay::start().await?;
    let now = unix_now();
    let (app, kid, secret) = APPS[0];
    let claims = |nbf: u64, exp: u64| TicketClaims {
        app: app.into(),
        user: "mallory".into(),
        room: "x".into(),
        nbf,
        exp,
        grants: Grants::all(),
    };

    let forged = mint(&claims(now, now + 600), kid, b"not the app's ticket secret")?;
    assert_eq!(refusal(&relay, forged).await, Some(ErrorCode::BadSignature));

    // Signed with another app's secret (under that app's kid) but claiming app A.
    let (_, other_kid, other_secret) = APPS[1];
    let cross = mint(&claims(now, now + 600), other_kid, other_secret.as_bytes())?;
    assert_eq!(refusal(&relay, cross).await, Some(ErrorCode::BadSignature));

    let expired = mint(&claims(now - 7200, now - 3600), kid, secret.as_bytes())?;
    assert_eq!(refusal(&relay, expired).await, Some(ErrorCode::Expired));

    let early = mint(&claims(now + 3600, now + 7200), kid, secret.as_bytes())?;
    assert_eq!(refusal(&relay, early).await, Some(ErrorCode::NotYetValid));

    let unknown_app = mint(
        &TicketClaims {
            app: "app-z".into(),
            ..claims(now, now + 600)
        },
        kid,
        secret.as_bytes(),
    )?;
    assert_eq!(
        refusal(&relay, unknown_app).await,
        Some(ErrorCode::UnknownApp)
    );

    assert_eq!(
        refusal(&relay, "not a ticket".into()).await,
        Some(ErrorCode::BadTicket)
    );

    // A valid ticket for room "y" presented by a client that means to enter room "x".
    let other_room = relay.ticket(app, "mallory", "y", Grants::all());
    let refused = relay
        .client()
        .join_with(
            relay.relay.local_addr(),
            "localhost",
            other_room,
            &RoomSecret::generate(),
            JoinConfig::default().room("x"),
        )
        .await;
    assert_eq!(
        refused.err().and_then(|err| err.code()),
        Some(ErrorCode::WrongRoom)
    );

    // The relay is still whole: a good ticket gets in.
    let good = relay.ticket(app, "alice", "x", Grants::all());
    assert_eq!(refusal(&relay, good).await, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_ticket_for_another_room_is_refused() -> anyhow::Result<()> {
    let relay = TestRelay::start().await?;
    let tickets = Arc::new(Mutex::new(VecDeque::from([
        relay.ticket("app-a", "alice", "x", Grants::all()),
        relay.ticket("app-a", "alice", "y", Grants::all()),
        relay.ticket("app-a", "alice", "x", Grants::all()),
    ])));
    let source = ticket_fn(move |_request| {
        let next = tickets.lock().expect("tickets").pop_front();
        async move { next.ok_or_else(|| TicketSourceError::new("no more tickets")) }
    });
    let client = relay.client();
    let (room, mut events) = client
        .join(
            relay.relay.local_addr(),
            "localhost",
            source,
            &RoomSecret::generate(),
        )
        .await?;

    room.refresh_ticket().await?;
    let refused = loop {
        match events.recv().await {
            Some(Event::Refused { code, .. }) => break code,
            Some(_) => continue,
            None => anyhow::bail!("session ended before the refusal"),
        }
    };
    assert_eq!(refused, ErrorCode::WrongRoom);

    // The session continues, and a ticket for the right room is accepted.
    room.refresh_ticket().await?;
    loop {
        match events.recv().await {
            Some(Event::TicketRefreshed { expires_in_secs }) => {
                assert!(expires_in_secs > 0);
                break;
            }
            Some(Event::Disconnected(reason)) => anyhow::bail!("disconnected: {reason}"),
            Some(_) => continue,
            None => anyhow::bail!("session ended before the refresh"),
        }
    }
    assert!(!room.is_closed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_without_the_grant_is_refused() -> anyhow::Result<()> {
    let relay = TestRelay::start().await?;
    let secret = RoomSecret::generate();
    let alice = relay.join("app-a", "alice", "x", &secret).await?;
    let no_video = Grants {
        publish_video: false,
        ..Grants::all()
    };
    let carol = relay
        .join_with(relay.ticket("app-a", "carol", "x", no_video), &secret)
        .await?;

    let video = carol.room.publish_video(2).await?;
    carol
        .log
        .wait_for("a not-permitted refusal", |events| {
            find(events, |e| match e {
                Event::Refused { code, .. } => Some(*code),
                _ => None,
            }) == Some(ErrorCode::NotPermitted)
        })
        .await?;
    for i in 0..3 {
        video.send(Bytes::from(format!("carol video {i}")), i == 0)?;
    }
    relay
        .wait_stats("carol's video frames dropped", |stats| {
            stats.dropped(sealroom_relay::DropReason::NotPermitted) >= 3
        })
        .await?;

    // What the grant allows still flows.
    let audio = carol.room.publish_audio(1).await?;
    audio.send(Bytes::from_static(b"carol audio"))?;
    alice
        .log
        .wait_for("carol's audio", |events| {
            events
                .iter()
                .any(|e| matches!(e, Event::Frame(f) if f.sender == carol.id))
        })
        .await?;
    assert!(
        alice
            .frames_from(carol.id)
            .iter()
            .all(|f| f.kind == MediaKind::Audio),
        "alice received video carol may not publish"
    );
    assert_eq!(relay.relay.stats().video.frames_forwarded, 0);
    Ok(())
}
