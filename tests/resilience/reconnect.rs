//! A dropped connection heals without the application writing retry code: the relay is
//! stopped and started again on the same address, or drains with `GoAway`, and the clients
//! reconnect, rejoin with a fresh ticket, publish their tracks again and keep talking; no
//! frame fails to open and no (KID, CTR) pair is ever sealed twice. Removals the relay
//! means (kicked) and refusals of the rejoin (a ticket with a bad signature) end the
//! session without further attempts.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sealroom_client::{DisconnectReason, ErrorCode, Event, RoomSecret, TicketReason};
use sealroom_frame::sframe::SframeHeader;
use sealroom_relay::MemberTarget;

use crate::support::{
    CountingTickets, Headers, Identity, Member, any_port, forged_ticket, limits, room_holds,
    room_key, ticket, until,
};

/// The users of the restart test.
const USERS: [&str; 3] = ["alice", "bob", "carol"];

fn lost(e: &Event) -> bool {
    matches!(e, Event::ConnectionLost(_))
}

fn reconnecting(e: &Event) -> bool {
    matches!(e, Event::Reconnecting { .. })
}

fn recovered(e: &Event) -> bool {
    matches!(e, Event::Recovered { .. })
}

/// Whether an opened frame among `events` carried `text`.
fn heard(events: &[Event], text: &str) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::Frame(f) if f.payload == text.as_bytes()))
}

fn could_not_open(e: &Event) -> bool {
    matches!(e, Event::CouldNotOpen(_))
}

fn ended(e: &Event) -> bool {
    matches!(e, Event::Disconnected(_))
}

/// No (KID, CTR) pair twice among the headers, and the headers of each KID split into
/// what the first relay saw and what the second saw, the second's counters all above the
/// first's (the sealer went on counting across the reconnect).
fn assert_nonces_unique(before: &[SframeHeader], after: &[SframeHeader]) {
    let mut seen = HashSet::new();
    for header in before.iter().chain(after) {
        assert!(
            seen.insert((header.kid, header.ctr)),
            "(KID {}, CTR {}) sealed twice",
            header.kid,
            header.ctr
        );
    }
    let mut last_before: HashMap<u64, u64> = HashMap::new();
    for header in before {
        let last = last_before.entry(header.kid).or_default();
        *last = (*last).max(header.ctr);
    }
    let mut continued = 0;
    for header in after {
        if let Some(last) = last_before.get(&header.kid) {
            assert!(
                header.ctr > *last,
                "KID {} restarted its counter: {} after {}",
                header.kid,
                header.ctr,
                last
            );
            continued += 1;
        }
    }
    assert!(
        continued > 0,
        "no sending session spans the reconnect: the test proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_restart_on_the_same_address_heals_every_member() -> anyhow::Result<()> {
    let identity = Identity::new("restart")?;
    let first = identity.start_relay(any_port(), limits()).await?;
    let addr = first.local_addr();
    let before = Arc::new(Headers::default());
    before.tap(&first);
    let secret = RoomSecret::generate();

    let mut members = Vec::new();
    let mut sources = Vec::new();
    for user in USERS {
        let (counts, tickets) = CountingTickets::new(move |_| Ok(ticket(user, 3600)));
        let member = Member::join(user, addr, identity.client_config(), tickets, &secret).await?;
        members.push(member);
        sources.push(counts);
    }
    room_holds(&first, &USERS).await?;
    let mut chats = Vec::new();
    let mut voices = Vec::new();
    let mut cameras = Vec::new();
    for member in &members {
        chats.push(member.room.publish_data(1).await?);
        voices.push(member.room.publish_audio(2).await?);
        cameras.push(member.room.publish_video(3).await?);
    }
    // Every member hears every other before the restart.
    for (member, chat) in members.iter().zip(&chats) {
        chat.send(Bytes::from(format!("{} before", member.name)))
            .await?;
    }
    for member in &members {
        for other in members.iter().filter(|o| o.name != member.name) {
            let text = format!("{} before", other.name);
            member
                .log
                .wait_for(&format!("{} hears {text}", member.name), |e| {
                    heard(e, &text)
                })
                .await?;
        }
    }

    // Carol does not want alice's voice; the choice must survive the new member ids.
    let alice_before = members[0].room.member_id();
    members[2].room.unsubscribe(alice_before, 2).await?;

    first.shutdown().await;
    for member in &members {
        member
            .log
            .wait_for(&format!("{} loses the connection", member.name), |e| {
                e.iter().any(lost)
            })
            .await?;
    }
    for member in &members {
        let reason = member
            .log
            .snapshot()
            .into_iter()
            .find_map(|e| match e {
                Event::ConnectionLost(reason) => Some(reason),
                _ => None,
            })
            .expect("lost");
        assert_eq!(reason.code(), Some(ErrorCode::ShuttingDown), "{reason}");
        assert!(!member.room.is_closed(), "{} gave up", member.name);
    }
    // While the relay is down: audio is dropped and counted, a reliable message waits in
    // the track's queue.
    voices[0].send(Bytes::from_static(b"into the void"))?;
    chats[0]
        .send(Bytes::from_static(b"alice while down"))
        .await?;
    until(
        "alice counts the audio frame she could not send",
        || members[0].room.stats().frames_dropped_offline == 1,
        || format!("{:?}", members[0].room.stats()),
    )
    .await?;

    let second = identity.start_relay(addr, limits()).await?;
    let after = Arc::new(Headers::default());
    after.tap(&second);
    for member in &members {
        member
            .log
            .wait_for(&format!("{} recovers", member.name), |e| {
                e.iter().any(recovered)
            })
            .await?;
    }
    room_holds(&second, &USERS).await?;

    for (member, counts) in members.iter().zip(&sources) {
        let events = member.log.snapshot();
        let attempts = events.iter().filter(|e| reconnecting(e)).count();
        assert!(attempts >= 1, "{}: {events:?}", member.name);
        assert_eq!(
            counts.rejoins() as usize,
            attempts,
            "{}: one fresh ticket per attempt",
            member.name
        );
        assert_eq!(
            events.iter().filter(|e| lost(e)).count(),
            1,
            "{}",
            member.name
        );
        assert_eq!(
            events.iter().filter(|e| recovered(e)).count(),
            1,
            "{}",
            member.name
        );
        assert_eq!(
            events.iter().filter(|e| ended(e)).count(),
            0,
            "{}",
            member.name
        );
        assert_eq!(member.room.stats().reconnects, 1);
        // The new id is the one the relay now knows, and envelopes carry it.
        let Some(Event::Recovered { member: id, .. }) = events.into_iter().find(recovered) else {
            unreachable!("checked above");
        };
        assert_eq!(member.room.member_id(), id, "{}", member.name);
        // The client asks its own application for a keyframe on its video track, so that
        // the others can decode it again.
        member
            .log
            .wait_for(&format!("{} is asked for a keyframe", member.name), |e| {
                e.iter()
                    .any(|e| *e == Event::KeyframeRequested { track: 3, by: id })
            })
            .await?;
    }
    // The relay knows each member's tracks again (TrackPublished after the rejoin).
    until(
        "every member's three tracks are published on the new relay",
        || {
            second
                .members(&room_key())
                .unwrap_or_default()
                .iter()
                .all(|m| m.tracks == 3)
        },
        || format!("{:?}", second.members(&room_key())),
    )
    .await?;

    // Traffic resumes in every direction, on the tracks published before the restart.
    for (member, (chat, voice)) in members.iter().zip(chats.iter().zip(&voices)) {
        chat.send(Bytes::from(format!("{} after", member.name)))
            .await?;
        voice.send(Bytes::from(format!("{} speaks", member.name)))?;
    }
    for member in &members {
        for other in members.iter().filter(|o| o.name != member.name) {
            let text = format!("{} after", other.name);
            member
                .log
                .wait_for(&format!("{} hears {text}", member.name), |e| {
                    heard(e, &text)
                })
                .await?;
            let sender = other.room.member_id();
            assert!(
                member
                    .log
                    .frames()
                    .iter()
                    .any(|f| f.payload == text.as_bytes() && f.sender == sender),
                "{} hears {} under the new id",
                member.name,
                other.name
            );
        }
    }
    // Bob hears alice's voice after the restart, carol (who unsubscribed from it before)
    // does not: her choice was restored under alice's new id. A message alice sends after
    // the voice frame marks the end of what carol could have been sent.
    let alice = members[0].room.member_id();
    members[1]
        .log
        .wait_for("bob hears alice speak", |e| heard(e, "alice speaks"))
        .await?;
    chats[0].send(Bytes::from_static(b"alice last")).await?;
    members[2]
        .log
        .wait_for("carol hears alice's last message", |e| {
            heard(e, "alice last")
        })
        .await?;
    assert_eq!(
        members[2]
            .log
            .count(|e| matches!(e, Event::Frame(f) if f.sender == alice && f.track == 2)),
        0,
        "carol's unsubscription was not restored"
    );

    // The message alice queued while the relay was down went out on the new connection:
    // a message before, the queued one, two messages and an audio frame after, nothing
    // else lost.
    until(
        "alice's queued message is sent on the new connection",
        || members[0].room.stats().frames_sent == 5,
        || format!("{:?}", members[0].room.stats()),
    )
    .await?;
    assert_eq!(members[0].room.stats().frames_not_sent, 0);

    for member in &members {
        assert_eq!(member.log.count(could_not_open), 0, "{}", member.name);
        assert_eq!(member.room.stats().open_failures, 0, "{}", member.name);
    }
    assert_nonces_unique(&before.snapshot(), &after.snapshot());
    drop(cameras);
    for member in &members {
        member.room.leave().await;
    }
    second.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_away_turns_into_reconnects_and_final_removals_do_not() -> anyhow::Result<()> {
    let identity = Identity::new("goaway")?;
    let first = identity.start_relay(any_port(), limits()).await?;
    let addr = first.local_addr();
    let before = Arc::new(Headers::default());
    before.tap(&first);
    let secret = RoomSecret::generate();

    let (dana_tickets, tickets) = CountingTickets::new(|_| Ok(ticket("dana", 3600)));
    let dana = Member::join("dana", addr, identity.client_config(), tickets, &secret).await?;
    let (_, tickets) = CountingTickets::new(|request| {
        Ok(match request.reason {
            // After the relay comes back, the backend hands out a ticket the relay refuses.
            TicketReason::Rejoin => forged_ticket("mallory"),
            _ => ticket("mallory", 3600),
        })
    });
    let mallory = Member::join("mallory", addr, identity.client_config(), tickets, &secret).await?;
    let (kevin_tickets, tickets) = CountingTickets::new(|_| Ok(ticket("kevin", 3600)));
    let kevin = Member::join("kevin", addr, identity.client_config(), tickets, &secret).await?;
    room_holds(&first, &["dana", "kevin", "mallory"]).await?;
    let chat = dana.room.publish_data(1).await?;
    chat.send(Bytes::from_static(b"before the drain")).await?;
    kevin
        .log
        .wait_for("kevin hears dana", |e| heard(e, "before the drain"))
        .await?;

    // An operator's removal is final: no reconnect.
    first.kick(&room_key(), &MemberTarget::User("kevin".into()), "bye")?;
    kevin
        .log
        .wait_for("kevin is kicked", |e| e.iter().any(ended))
        .await?;
    let events = kevin.log.snapshot();
    assert!(
        matches!(
            events.last(),
            Some(Event::Disconnected(DisconnectReason::Relay {
                code: ErrorCode::Kicked,
                ..
            }))
        ),
        "{events:?}"
    );
    assert_eq!(kevin.log.count(lost) + kevin.log.count(reconnecting), 0);
    assert_eq!(kevin_tickets.rejoins(), 0);
    assert!(kevin.room.is_closed());

    // GoAway: the members leave the draining relay at once (none is left to be removed at
    // the drain deadline) and start reconnecting.
    let remaining = first.drain(Duration::from_secs(20)).await;
    assert_eq!(remaining, 0, "a member waited for the drain deadline");
    for member in [&dana, &mallory] {
        member
            .log
            .wait_for(&format!("{} reconnects after GoAway", member.name), |e| {
                e.iter().any(lost) && e.iter().any(reconnecting)
            })
            .await?;
        let reason = member
            .log
            .snapshot()
            .into_iter()
            .find_map(|e| match e {
                Event::ConnectionLost(reason) => Some(reason),
                _ => None,
            })
            .expect("lost");
        assert_eq!(reason.code(), Some(ErrorCode::ShuttingDown), "{reason}");
        assert_eq!(member.log.count(ended), 0, "{}", member.name);
    }
    first.shutdown().await;

    let second = identity.start_relay(addr, limits()).await?;
    let after = Arc::new(Headers::default());
    after.tap(&second);
    dana.log
        .wait_for("dana recovers", |e| e.iter().any(recovered))
        .await?;
    assert!(dana_tickets.rejoins() >= 1);
    // Mallory's rejoin is refused with a typed reason that no retry can fix: the session
    // ends there, after the one attempt that reached the relay.
    mallory
        .log
        .wait_for("mallory's session ends", |e| e.iter().any(ended))
        .await?;
    let events = mallory.log.snapshot();
    assert!(
        matches!(
            events.last(),
            Some(Event::Disconnected(DisconnectReason::Relay {
                code: ErrorCode::BadSignature,
                ..
            }))
        ),
        "{events:?}"
    );
    assert_eq!(mallory.log.count(recovered), 0);
    assert!(mallory.room.is_closed());
    room_holds(&second, &["dana"]).await?;

    chat.send(Bytes::from_static(b"after the drain")).await?;
    until(
        "dana's message after the drain reaches the new relay",
        || !after.snapshot().is_empty(),
        || String::from("no frame"),
    )
    .await?;
    assert_eq!(dana.log.count(could_not_open), 0);
    assert_nonces_unique(&before.snapshot(), &after.snapshot());
    dana.room.leave().await;
    dana.log
        .wait_for("dana leaves", |e| {
            e.last() == Some(&Event::Disconnected(DisconnectReason::Left))
        })
        .await?;
    second.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_never_returns_ends_the_session_after_the_configured_attempts()
-> anyhow::Result<()> {
    let identity = Identity::new("gone")?;
    let relay = identity.start_relay(any_port(), limits()).await?;
    let addr = relay.local_addr();
    let secret = RoomSecret::generate();
    let (counts, tickets) = CountingTickets::new(|_| Ok(ticket("gina", 3600)));
    let config = identity
        .client_config()
        .reconnect_attempts(2)
        .connect_timeout(Duration::from_millis(500));
    let gina = Member::join("gina", addr, config, tickets, &secret).await?;
    relay.shutdown().await;

    gina.log
        .wait_for("gina gives up", |e| e.iter().any(ended))
        .await?;
    let events = gina.log.snapshot();
    assert!(
        matches!(
            events.last(),
            Some(Event::Disconnected(DisconnectReason::GaveUp {
                attempts: 2,
                ..
            }))
        ),
        "{events:?}"
    );
    assert_eq!(gina.log.count(lost), 1);
    assert_eq!(gina.log.count(reconnecting), 2);
    assert_eq!(gina.log.count(recovered), 0);
    assert_eq!(counts.rejoins(), 2, "a fresh ticket per attempt");
    assert!(gina.room.is_closed());
    Ok(())
}
