//! What a client says when it cannot join: an address where nothing answers is named with
//! the transport it tried, a relay with another certificate is reported as a pin mismatch
//! showing both hashes, and that mismatch is not retried by the reconnect loop.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use sealroom_client::{
    Client, ClientConfig, DisconnectReason, Event, JoinError, RoomSecret, Trust,
};

use crate::support::{Identity, Member, any_port, limits, ticket};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_where_nothing_answers_is_named() -> anyhow::Result<()> {
    // A bound socket that never answers: the port is taken, so nothing else can answer.
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = silent.local_addr()?;
    let client = Client::new(
        ClientConfig::new(Trust::Pinned([7; 32])).connect_timeout(Duration::from_millis(300)),
    )?;
    let result = client
        .join(
            addr,
            "localhost",
            ticket("ann", 600),
            &RoomSecret::generate(),
        )
        .await;
    let Err(err @ JoinError::Unreachable { relay, .. }) = result else {
        panic!("expected unreachable, got {:?}", result.map(|_| ()));
    };
    assert_eq!(relay, addr);
    let text = err.to_string();
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(text.contains("QUIC (UDP)"), "{text}");
    assert!(!err.is_permanent(), "a relay may come up later");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_another_certificate_is_a_pin_mismatch() -> anyhow::Result<()> {
    let real = Identity::new("pin-real")?;
    let other = Identity::new("pin-other")?;
    let relay = real.start_relay(any_port(), limits()).await?;
    let client = Client::new(other.client_config())?;
    let result = client
        .join(
            relay.local_addr(),
            "localhost",
            ticket("ben", 600),
            &RoomSecret::generate(),
        )
        .await;
    let Err(
        err @ JoinError::PinMismatch {
            pinned, presented, ..
        },
    ) = result
    else {
        panic!("expected a pin mismatch, got {:?}", result.map(|_| ()));
    };
    assert_eq!(presented, relay.cert_sha256());
    let text = err.to_string();
    assert!(text.contains(&hex::encode(&presented[..8])), "{text}");
    assert!(text.contains(&hex::encode(&pinned[..8])), "{text}");
    assert!(text.contains("does not match the pinned"), "{text}");
    assert!(err.is_permanent());
    assert_eq!(relay.stats().join_attempts, 0);
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_back_with_a_new_certificate_ends_the_session_without_retries() -> anyhow::Result<()>
{
    let first = Identity::new("restart-first")?;
    let second = Identity::new("restart-second")?;
    let relay = first.start_relay(any_port(), limits()).await?;
    let addr: SocketAddr = relay.local_addr();
    // Rejoin tickets wait for the second relay, so every attempt meets it.
    let (back_tx, back_rx) = tokio::sync::watch::channel(false);
    let tickets = sealroom_client::ticket_fn(move |_request| {
        let mut back = back_rx.clone();
        async move {
            let _ = back.wait_for(|up| *up).await;
            Ok(ticket("cleo", 3600))
        }
    });
    back_tx.send_replace(true);
    let cleo = Member::join(
        "cleo",
        addr,
        first.client_config().reconnect_attempts(60),
        tickets,
        &RoomSecret::generate(),
    )
    .await?;
    back_tx.send_replace(false);
    relay.shutdown().await;
    // The same address, another certificate (a development relay restarted, say).
    let relay = second.start_relay(addr, limits()).await?;
    back_tx.send_replace(true);

    cleo.log
        .wait_for("cleo's session ends", |events| {
            events.iter().any(|e| matches!(e, Event::Disconnected(_)))
        })
        .await?;
    let events = cleo.log.snapshot();
    let Some(Event::Disconnected(reason)) = events.last() else {
        panic!("{events:?}");
    };
    assert!(
        matches!(reason, DisconnectReason::PinMismatch { .. }),
        "{reason}"
    );
    assert!(
        reason
            .to_string()
            .contains(&hex::encode(&relay.cert_sha256()[..8])),
        "{reason}"
    );
    let attempts = cleo.log.count(|e| matches!(e, Event::Reconnecting { .. }));
    assert_eq!(attempts, 1, "a mismatch is not retried: {events:?}");
    relay.shutdown().await;
    Ok(())
}
