//! Admission over loopback QUIC: typed refusals with their close codes, grants, replacement
//! of a second session, operator removal and draining.

use sealroom_test_support::wire as common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    APP_A, APP_B, Client, SECRET_A, WAIT, relay, relay_with, ticket, ticket_with, unix_now,
};
use sealroom_frame::control::{ControlMessage, ErrorCode, LeaveReason, TrackInfo};
use sealroom_frame::envelope::MediaKind;
use sealroom_relay::{
    DropReason, Grants, JoinOutcome, Limits, MemberTarget, RoomKey, TicketClaims, mint,
};

fn ticket_at(app: &str, room: &str, nbf: u64, exp: u64, kid: &str, secret: &[u8]) -> String {
    let claims = TicketClaims {
        app: app.to_owned(),
        user: "user".to_owned(),
        room: room.to_owned(),
        nbf,
        exp,
        grants: Grants::all(),
    };
    mint(&claims, kid, secret).expect("mint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tickets_are_refused_with_their_reason_and_close_code() -> anyhow::Result<()> {
    let relay = relay_with(Limits {
        ticket_leeway_secs: 0,
        ..Limits::default().unlimited_rates()
    })
    .await;
    let now = unix_now();
    let cases = [
        (
            ticket_at(APP_A, "r", now - 10, now + 600, "k1", b"forged-secret"),
            ErrorCode::BadSignature,
        ),
        (
            ticket_at(APP_A, "r", now - 600, now - 60, "k1", SECRET_A),
            ErrorCode::Expired,
        ),
        (
            ticket_at(APP_A, "r", now + 600, now + 1200, "k1", SECRET_A),
            ErrorCode::NotYetValid,
        ),
        (
            ticket_at("app-unknown", "r", now - 10, now + 600, "k1", SECRET_A),
            ErrorCode::UnknownApp,
        ),
        (
            // App A's secret does not open app B's rooms.
            ticket_at(APP_B, "r", now - 10, now + 600, "k1", SECRET_A),
            ErrorCode::BadSignature,
        ),
        ("not-a-ticket".to_owned(), ErrorCode::BadTicket),
    ];
    for (ticket, expected) in &cases {
        let (code, close) = Client::refused(&relay, ticket).await?;
        assert_eq!(code, *expected);
        assert_eq!(close, Some(u64::from(expected.close_code())));
    }
    // A rotated secret (kid k2) is accepted.
    let rotated = ticket_at(APP_A, "r", now - 10, now + 600, "k2", b"rotated-secret-a");
    Client::join(&relay, &rotated).await?;
    let stats = relay.stats();
    assert_eq!(stats.join_attempts, 7);
    assert_eq!(stats.joins(JoinOutcome::Joined), 1);
    assert_eq!(
        stats.joins(JoinOutcome::Refused(ErrorCode::BadSignature)),
        2
    );
    assert!(
        relay
            .encode_metrics()
            .contains("sealroom_joins_total{outcome=\"expired\"} 1")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_refuses_and_a_refresh_for_another_room_is_wrong_room() -> anyhow::Result<()> {
    let relay = relay_with(Limits {
        max_members_per_room: 2,
        ..Limits::default().unlimited_rates()
    })
    .await;
    let mut a = Client::join(&relay, &ticket(APP_A, "a", "r")).await?;
    let _b = Client::join(&relay, &ticket(APP_A, "b", "r")).await?;
    let (code, _) = Client::refused(&relay, &ticket(APP_A, "c", "r")).await?;
    assert_eq!(code, ErrorCode::RoomFull);

    a.send_control(&ControlMessage::RefreshTicket {
        ticket: ticket(APP_A, "a", "another-room"),
    })
    .await?;
    let error = a
        .expect_control(|m| matches!(m, ControlMessage::Error { .. }))
        .await?;
    assert!(matches!(
        error,
        ControlMessage::Error {
            code: ErrorCode::WrongRoom,
            ..
        }
    ));
    a.send_control(&ControlMessage::RefreshTicket {
        ticket: ticket(APP_A, "a", "r"),
    })
    .await?;
    a.expect_control(|m| matches!(m, ControlMessage::TicketRefreshed { .. }))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_without_the_grant_is_refused() -> anyhow::Result<()> {
    let relay = relay().await;
    let listener_only = Grants::subscribe_only();
    let mut a = Client::join(&relay, &ticket_with(APP_A, "a", "r", listener_only)).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "r")).await?;
    a.send_control(&ControlMessage::TrackPublished {
        member: a.member,
        track: TrackInfo {
            track: 1,
            kind: MediaKind::Audio,
        },
    })
    .await?;
    let error = a
        .expect_control(|m| matches!(m, ControlMessage::Error { .. }))
        .await?;
    assert!(matches!(
        error,
        ControlMessage::Error {
            code: ErrorCode::NotPermitted,
            ..
        }
    ));
    a.send_datagram(a.envelope(MediaKind::Audio, 1, 0, 0), b"not allowed")?;
    a.send_stream(&[(
        a.envelope(MediaKind::Video, 2, 0, 0),
        b"not allowed".to_vec(),
    )])
    .await?;
    // b, who may publish, still reaches a: a may subscribe.
    b.send_datagram(b.envelope(MediaKind::Audio, 1, 0, 0), b"allowed")?;
    assert_eq!(&a.next_frame().await?.payload[..], b"allowed");
    assert!(b.frames_within_quiet().await.is_empty());
    assert_eq!(relay.stats().dropped(DropReason::NotPermitted), 2);

    // A member without the subscribe grant receives nothing.
    let publish_only = Grants {
        subscribe: false,
        ..Grants::all()
    };
    let mut deaf = Client::join(&relay, &ticket_with(APP_A, "deaf", "r", publish_only)).await?;
    b.send_datagram(b.envelope(MediaKind::Audio, 1, 0, 1), b"for a only")?;
    assert_eq!(&a.next_frame().await?.payload[..], b"for a only");
    assert!(deaf.frames_within_quiet().await.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_session_of_a_user_replaces_the_first() -> anyhow::Result<()> {
    let relay = relay().await;
    let mut first = Client::join(&relay, &ticket(APP_A, "alice", "r")).await?;
    let mut other = Client::join(&relay, &ticket(APP_A, "bob", "r")).await?;
    let second = Client::join(&relay, &ticket(APP_A, "alice", "r")).await?;
    assert_ne!(first.member, second.member);
    assert!(
        second.roster.iter().all(|m| m.user != "alice"),
        "the replaced session is not in the roster"
    );
    let error = first
        .expect_control(|m| matches!(m, ControlMessage::Error { .. }))
        .await?;
    assert!(matches!(
        error,
        ControlMessage::Error {
            code: ErrorCode::Replaced,
            ..
        }
    ));
    assert_eq!(
        first.closed().await?,
        Some(u64::from(ErrorCode::Replaced.close_code()))
    );
    let left = other
        .expect_control(|m| matches!(m, ControlMessage::MemberLeft { .. }))
        .await?;
    assert_eq!(
        left,
        ControlMessage::MemberLeft {
            member: first.member,
            reason: LeaveReason::Replaced,
        }
    );
    second.send_datagram(second.envelope(MediaKind::Audio, 1, 0, 0), b"new session")?;
    assert_eq!(&other.next_frame().await?.payload[..], b"new session");
    assert_eq!(
        relay.members(&RoomKey::new(APP_A, "r")).map(|m| m.len()),
        Some(2)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_and_dismiss_reach_the_members() -> anyhow::Result<()> {
    let relay = relay().await;
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&outcomes);
    relay.set_join_hook(Some(Arc::new(move |outcome, _| {
        seen.lock().expect("lock").push(outcome);
    })));
    let mut a = Client::join(&relay, &ticket(APP_A, "a", "r")).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "r")).await?;
    let mut c = Client::join(&relay, &ticket(APP_A, "c", "r")).await?;
    let key = RoomKey::new(APP_A, "r");
    let kicked = relay.kick(&key, &MemberTarget::User("b".to_owned()), "behave")?;
    assert_eq!(kicked, b.member);
    let error = b
        .expect_control(|m| matches!(m, ControlMessage::Error { .. }))
        .await?;
    assert_eq!(
        error,
        ControlMessage::Error {
            code: ErrorCode::Kicked,
            message: "behave".to_owned(),
        }
    );
    assert_eq!(
        b.closed().await?,
        Some(u64::from(ErrorCode::Kicked.close_code()))
    );
    a.expect_control(|m| {
        *m == ControlMessage::MemberLeft {
            member: kicked,
            reason: LeaveReason::Kicked,
        }
    })
    .await?;

    assert_eq!(relay.dismiss(&key, "closing time")?, 2);
    for client in [&mut a, &mut c] {
        client
            .expect_control(|m| {
                matches!(
                    m,
                    ControlMessage::Error {
                        code: ErrorCode::RoomDismissed,
                        ..
                    }
                )
            })
            .await?;
        assert_eq!(
            client.closed().await?,
            Some(u64::from(ErrorCode::RoomDismissed.close_code()))
        );
    }
    assert!(relay.rooms().is_empty());
    assert_eq!(
        *outcomes.lock().expect("lock"),
        vec![JoinOutcome::Joined; 3]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_sends_go_away_and_stops_admitting() -> anyhow::Result<()> {
    let relay = relay().await;
    let mut a = Client::join(&relay, &ticket(APP_A, "a", "r")).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "r")).await?;
    let drain = relay.drain(WAIT);
    let clients = async {
        for client in [&mut a, &mut b] {
            let go_away = client
                .expect_control(|m| matches!(m, ControlMessage::GoAway { .. }))
                .await?;
            assert!(matches!(
                go_away,
                ControlMessage::GoAway {
                    code: ErrorCode::ShuttingDown,
                    ..
                }
            ));
            // A well-behaved client leaves.
            client.send_control(&ControlMessage::Leave).await?;
            assert_eq!(client.closed().await?, Some(0));
        }
        anyhow::Ok(())
    };
    let (remaining, result) = tokio::join!(drain, clients);
    result?;
    assert_eq!(remaining, 0);
    assert!(relay.is_draining());
    // New connections are refused while draining.
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        Client::connect(&relay, &ticket(APP_A, "c", "r")),
    )
    .await?;
    assert!(refused.is_err());
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_bounded() -> anyhow::Result<()> {
    let relay = relay_with(Limits {
        max_connections_per_ip: 2,
        ..Limits::default().unlimited_rates()
    })
    .await;
    let a = Client::join(&relay, &ticket(APP_A, "a", "r")).await?;
    let _b = Client::join(&relay, &ticket(APP_A, "b", "r")).await?;
    assert!(
        Client::connect(&relay, &ticket(APP_A, "c", "r"))
            .await
            .is_err()
    );
    // A slot frees when a connection ends.
    a.conn.close(0u32.into(), b"bye");
    a.endpoint.wait_idle().await;
    let mut joined = false;
    for _ in 0..50 {
        if Client::join(&relay, &ticket(APP_A, "c", "r")).await.is_ok() {
            joined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(joined);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_validation_with_retry_still_admits() -> anyhow::Result<()> {
    let relay = relay_with(Limits {
        address_validation: sealroom_relay::config::AddressValidation::Always,
        ..Limits::default().unlimited_rates()
    })
    .await;
    let a = Client::join(&relay, &ticket(APP_A, "a", "r")).await?;
    let mut b = Client::join(&relay, &ticket(APP_A, "b", "r")).await?;
    a.send_datagram(a.envelope(MediaKind::Audio, 1, 0, 0), b"validated")?;
    assert_eq!(&b.next_frame().await?.payload[..], b"validated");
    Ok(())
}
