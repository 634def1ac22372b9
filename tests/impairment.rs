//! Call quality reported under an impaired path: loss, delay and jitter injected between
//! one client and the relay by a UDP proxy (`sealroom_test_support::impair`; the machines
//! the tests run on have no `netem`), and what the receiving client and the relay report
//! compared with what was injected.
//!
//! A binary of its own so that no other test shares the CPU while jitter is measured.
//!
//! Injected, each way: a fixed delay `D` and a uniform extra delay in `[0, J]`; relay to
//! client only, a loss probability `P`. Expected, with the tolerances asserted:
//!
//! - frames lost on the receiving client's audio track: `P` over the frames sent, within
//!   5 percentage points (with 600 frames the binomial standard deviation is 1.2 points);
//! - packets the relay declares lost towards the client: `P` within 5 points (reordering by
//!   the jitter may add a few spurious losses);
//! - round-trip time, on both sides: at least `2D` (no path is faster than its delay) and at
//!   most `2D + 2J + 40 ms` (both jitters at their maximum, plus room for a busy machine);
//! - RFC 3550 jitter of the received audio: for independent uniform delays in `[0, J]` the
//!   mean of `|D|` is `J/3`, so the estimate is `J/3` within `[0.6 J/3, J/3 + 15 ms]` (the
//!   machine's own scheduling can only add jitter: on a machine at load 18 on 2 cores the
//!   estimate came out 1.5 to 8 ms above `J/3`).

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use sealroom_client::{Client, ClientConfig, Event, MediaKind, RoomSecret, Trust, Verdict};
use sealroom_relay::{AppConfig, Grants, Limits, Relay, RelayConfig, RoomKey};
use sealroom_test_support::impair::{ImpairProxy, Impairment};
use sealroom_test_support::{Member, mint_ticket, poll_until, unix_now};

const APP: &str = "app";
const KID: &str = "k";
const SECRET: &str = "impairment test ticket secret";
const D: Duration = Duration::from_millis(40);
const J: Duration = Duration::from_millis(30);
const P: f64 = 0.10;
const FRAMES: u32 = 600;

fn ticket(user: &str) -> String {
    mint_ticket(
        APP,
        KID,
        SECRET.as_bytes(),
        user,
        "r",
        Grants::all(),
        unix_now(),
        3600,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_loss_rtt_and_jitter_match_what_the_path_injects() -> anyhow::Result<()> {
    let config = RelayConfig::default()
        .listen(([127, 0, 0, 1], 0).into())
        .limits(Limits::default().unlimited_rates())
        .app(AppConfig::new(APP, KID, SECRET.as_bytes().to_vec()));
    let relay = Relay::start(config).await?;
    let up = Impairment {
        loss: 0.0,
        delay: D,
        jitter: J,
    };
    let down = Impairment { loss: P, ..up };
    let proxy = ImpairProxy::start(relay.local_addr(), up, down, 0x5ea1_700d).await?;

    let secret = RoomSecret::generate();
    let trust = Trust::Pinned(relay.cert_sha256());
    let client = |config: ClientConfig| Client::new(config).context("client");
    let alice_client = client(ClientConfig::new(trust.clone()))?;
    let (alice, _alice_events) = alice_client
        .join(relay.local_addr(), "localhost", ticket("alice"), &secret)
        .await?;
    let bob_client = client(ClientConfig::new(trust))?;
    let (bob_room, bob_events) = bob_client
        .join(proxy.addr(), "localhost", ticket("bob"), &secret)
        .await?;
    let bob = Member::collecting(bob_client, bob_room, bob_events).named("bob");

    let audio = alice.publish_audio(1).await?;
    bob.log
        .wait_for("alice's audio track", |events| {
            events
                .iter()
                .any(|e| matches!(e, Event::TrackPublished { .. }))
        })
        .await?;
    // Real-time audio: one 160-byte frame every 20 ms. A loss at the very end is invisible
    // (no later frame shows the gap), so a few more than counted are sent.
    let mut every = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..FRAMES + 20 {
        every.tick().await;
        audio.send(Bytes::from(vec![0x42; 160]))?;
    }
    let frames_now = || {
        bob.room
            .stats()
            .quality
            .received
            .iter()
            .find(|t| t.kind == MediaKind::Audio)
            .map_or(0, |t| t.frames + t.lost)
    };
    poll_until(
        "bob has accounted for the counted frames",
        || frames_now() >= u64::from(FRAMES),
        || format!("{:#?}", bob.room.stats().quality),
    )
    .await?;

    let stats = bob.room.stats();
    let track = stats
        .quality
        .received
        .iter()
        .find(|t| t.kind == MediaKind::Audio)
        .context("alice's audio at bob")?;
    let expected = track.frames + track.lost;
    assert!(expected <= u64::from(FRAMES + 20), "{track:#?}");
    let lost = track.lost as f64 / expected as f64;
    assert!(
        (lost - P).abs() <= 0.05,
        "frame loss {lost:.3} for P = {P}: {track:#?}"
    );

    let expected_jitter = J.as_secs_f64() / 3.0;
    let jitter = track.jitter.as_secs_f64();
    assert!(
        jitter >= 0.6 * expected_jitter && jitter <= expected_jitter + 0.015,
        "jitter {:.1} ms, expected about {:.1} ms",
        jitter * 1e3,
        expected_jitter * 1e3
    );

    let rtt_range = D * 2..=D * 2 + J * 2 + Duration::from_millis(40);
    let bob_rtt = stats.quality.connection.context("bob is connected")?.rtt;
    assert!(rtt_range.contains(&bob_rtt), "bob's rtt {bob_rtt:?}");

    // The relay's view of bob's connection: the same loss and round trip.
    let members = relay
        .member_quality(&RoomKey::new(APP, "r"))
        .context("the room")?;
    let bob_id = bob.room.member_id();
    let (_, seen) = members
        .iter()
        .find(|(member, _)| *member == bob_id)
        .context("bob at the relay")?;
    let relay_loss = seen.lost_packets as f64 / seen.sent_packets as f64;
    assert!(
        (relay_loss - P).abs() <= 0.05,
        "relay-side loss {relay_loss:.3} for P = {P}: {seen:#?}"
    );
    let relay_rtt = Duration::from_secs_f64(seen.rtt_ms / 1e3);
    assert!(rtt_range.contains(&relay_rtt), "relay's rtt {relay_rtt:?}");

    eprintln!(
        "injected D {D:?} J {J:?} P {P}: frame loss {lost:.3}, jitter {:.1} ms (J/3 = {:.1} ms), \
         rtt client {bob_rtt:?} relay {relay_rtt:?}, relay-side loss {relay_loss:.3}",
        jitter * 1e3,
        expected_jitter * 1e3
    );

    // A path losing 10 % is at least fair in every report that saw frames in it.
    let reports: Vec<Verdict> = bob
        .log
        .snapshot()
        .iter()
        .filter_map(|e| match e {
            Event::Stats(stats) => Some(stats),
            _ => None,
        })
        .filter(|s| s.quality.received.iter().any(|t| t.frames_per_sec > 25.0))
        .map(|s| s.quality.verdict)
        .collect();
    assert!(!reports.is_empty());
    assert!(reports.iter().all(|v| *v >= Verdict::Fair), "{reports:?}");
    Ok(())
}
