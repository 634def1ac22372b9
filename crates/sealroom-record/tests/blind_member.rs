//! The blind member against a real relay on loopback, beside real members: it receives
//! every member's frames sealed, learns of later tracks and members without asking, and
//! cannot publish.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;
use sealroom_client::{ClientConfig, Event, RoomSecret};
use sealroom_frame::control::ControlMessage;
use sealroom_frame::envelope::{Frame, MediaKind};
use sealroom_record::{BlindConfig, BlindEvent, BlindEvents, BlindMember, Trust};
use sealroom_relay::{AppConfig, Grants, Limits, Relay, RelayConfig};
use sealroom_test_support::{Member, SAFETY, TestApp};

const APP: TestApp = TestApp {
    app: "app-r",
    kid: "r1",
    secret: b"recorder test secret",
};

async fn relay() -> anyhow::Result<Relay> {
    let config = RelayConfig::default()
        .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .limits(Limits::default().unlimited_rates())
        .app(AppConfig::new(APP.app, APP.kid, APP.secret.to_vec()));
    Relay::start(config).await.context("relay")
}

async fn member(relay: &Relay, user: &str, secret: &RoomSecret) -> anyhow::Result<Member> {
    let ticket = APP.ticket(user, "room", Grants::all(), 600);
    Member::join(
        user,
        relay.local_addr(),
        ClientConfig::new(Trust::Pinned(relay.cert_sha256())),
        ticket,
        secret,
    )
    .await
}

async fn recorder(relay: &Relay) -> anyhow::Result<(BlindMember, BlindEvents)> {
    let ticket = APP.ticket("recorder", "room", Grants::recorder(), 600);
    let config = BlindConfig::new(
        relay.local_addr(),
        Trust::Pinned(relay.cert_sha256()),
        ticket,
    );
    Ok(BlindMember::join(config).await?)
}

/// Take events until `pick` says done; fails after the safety timeout.
async fn until(
    events: &mut BlindEvents,
    mut pick: impl FnMut(&BlindEvent) -> bool,
) -> anyhow::Result<Vec<BlindEvent>> {
    let mut seen = Vec::new();
    tokio::time::timeout(SAFETY, async {
        while let Some(event) = events.recv().await {
            let done = pick(&event);
            seen.push(event);
            if done {
                return;
            }
        }
    })
    .await
    .with_context(|| format!("waited in vain; saw {} events", seen.len()))?;
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_receives_every_track_sealed_and_members_learn_it_is_there() -> anyhow::Result<()>
{
    let relay = relay().await?;
    let secret = RoomSecret::generate();
    let alice = member(&relay, "alice", &secret).await?;
    let audio = alice.room.publish_audio(1).await?;
    let (rec, mut events) = recorder(&relay).await?;
    let first = until(&mut events, |e| matches!(e, BlindEvent::Joined { .. })).await?;
    let BlindEvent::Joined { member: me, .. } = first[0] else {
        anyhow::bail!("first event is the join: {first:?}");
    };
    alice
        .log
        .wait_for("alice learns of the recorder", |events| {
            events.iter().any(|e| {
                matches!(e, Event::RecorderPresent { member, user }
                    if *member == me && user.as_deref() == Some("recorder"))
            })
        })
        .await?;

    // A member that joins later and a track published later are recorded too.
    let bob = member(&relay, "bob", &secret).await?;
    bob.log
        .wait_for("bob learns of the recorder", |events| {
            events
                .iter()
                .any(|e| matches!(e, Event::RecorderPresent { member, .. } if *member == me))
        })
        .await?;
    let data = bob.room.publish_data(9).await?;
    let marker = b"plaintext marker 7f3a";
    for _ in 0..5 {
        audio.send(&marker[..])?;
    }
    data.send(&marker[..]).await?;
    let mut audio_frames = 0;
    let mut data_frames = 0;
    let seen = until(&mut events, |e| {
        if let BlindEvent::Frame(f) = e {
            match f.envelope.kind {
                MediaKind::Audio => audio_frames += 1,
                MediaKind::Data => data_frames += 1,
                MediaKind::Video => {}
            }
        }
        audio_frames >= 3 && data_frames == 1
    })
    .await?;
    for event in &seen {
        if let BlindEvent::Frame(f) = event {
            let decoded = Frame::decode(&f.frame)?;
            assert_eq!(decoded.envelope, f.envelope, "the frame is kept whole");
            assert!(
                !f.frame.windows(marker.len()).any(|w| w == marker),
                "the recorder sees only sealed bytes"
            );
            assert!(f.envelope.sender == alice.id || f.envelope.sender == bob.id);
        }
    }
    assert!(
        seen.iter().any(|e| matches!(e, BlindEvent::Room { message: ControlMessage::MemberJoined(info), .. } if info.user == "bob")),
        "membership events are handed out"
    );
    let members = relay
        .members(&sealroom_relay::RoomKey::new(APP.app, "room"))
        .context("room")?;
    assert_eq!(
        members.iter().filter(|m| m.recorder).count(),
        1,
        "the admin view shows one recorder"
    );
    rec.leave().await;
    let end = until(&mut events, |e| matches!(e, BlindEvent::Ended(_))).await?;
    assert!(matches!(
        end.last(),
        Some(BlindEvent::Ended(sealroom_record::BlindEnd::Left))
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_with_a_forged_ticket_is_refused_with_a_typed_reason() -> anyhow::Result<()> {
    let relay = relay().await?;
    let forged = sealroom_test_support::mint_ticket(
        APP.app,
        APP.kid,
        b"not the app secret",
        "recorder",
        "room",
        Grants::recorder(),
        sealroom_test_support::unix_now(),
        600,
    );
    let config = BlindConfig::new(
        relay.local_addr(),
        Trust::Pinned(relay.cert_sha256()),
        forged,
    );
    let err = BlindMember::join(config)
        .await
        .err()
        .context("a forged ticket is refused")?;
    assert!(
        matches!(err, sealroom_record::BlindError::Refused { code, .. } if code == sealroom_frame::control::ErrorCode::BadSignature),
        "{err}"
    );
    Ok(())
}
