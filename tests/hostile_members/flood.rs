//! A member floods data messages over its rate: it hears `RateLimited`, nothing beyond the
//! limit is delivered, and another member's messages are untouched.

use std::time::Instant;

use bytes::Bytes;
use sealroom_client::{ErrorCode, Event, MediaKind, RoomSecret};
use sealroom_relay::{DropReason, Limits};

use crate::support::{join_member, relay, until, until_stats};

const FLOOD: usize = 300;
const CALM: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_flood_is_cut_to_the_limit_and_no_one_else_notices() -> anyhow::Result<()> {
    // The default data limits: 30 messages a second, a burst of 60.
    let limits = Limits::default();
    let relay = relay(limits).await?;
    let secret = RoomSecret::generate();
    let flooder = join_member(&relay, "flo", "f", &secret).await?;
    let calm = join_member(&relay, "cal", "f", &secret).await?;
    let gina = join_member(&relay, "gina", "f", &secret).await?;
    let hank = join_member(&relay, "hank", "f", &secret).await?;

    let flood = flooder.room.publish_data(1).await?;
    let chat = calm.room.publish_data(1).await?;
    let started = Instant::now();
    for n in 0..FLOOD {
        flood.send(Bytes::from(format!("flood {n:04}"))).await?;
        if n % (FLOOD / CALM) == 0 {
            chat.send(Bytes::from(format!("calm {:04}", n / (FLOOD / CALM))))
                .await?;
        }
    }
    // Every flood message reached the relay and was either forwarded or dropped over the
    // rate (nothing else happens to a granted, well-formed message).
    until_stats(&relay, "every message accounted for", |s| {
        s.data.frames_received == (FLOOD + CALM) as u64
    })
    .await?;
    let elapsed = started.elapsed().as_secs_f64();
    let stats = relay.stats();
    let limited = stats.dropped(DropReason::RateLimited) as usize;
    let passed = FLOOD - limited;

    for member in [&gina, &hank] {
        until(
            "the calm member's messages and what passed of the flood arrive",
            || {
                let frames = member.log.frames_from(calm.id);
                frames.len() == CALM && member.log.frames_from(flooder.id).len() == passed
            },
            || format!("{:#?}", relay.stats()),
        )
        .await?;
        let calm_got: Vec<Bytes> = member
            .log
            .frames_from(calm.id)
            .into_iter()
            .map(|f| f.payload)
            .collect();
        let calm_want: Vec<Bytes> = (0..CALM)
            .map(|n| Bytes::from(format!("calm {n:04}")))
            .collect();
        assert_eq!(calm_got, calm_want, "the calm member loses nothing");
        // What passed of the flood is in order, each message once.
        let flood_got: Vec<String> = member
            .log
            .frames_from(flooder.id)
            .into_iter()
            .map(|f| {
                assert_eq!(f.kind, MediaKind::Data);
                String::from_utf8_lossy(&f.payload).into_owned()
            })
            .collect();
        let mut sorted = flood_got.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, flood_got);
    }
    // Nothing beyond the limit: the burst plus the rate over the time the relay could
    // have been refilling (an upper bound on it).
    let allowed =
        f64::from(limits.data_messages_burst) + f64::from(limits.data_messages_per_sec) * elapsed;
    assert!(
        (passed as f64) <= allowed.ceil(),
        "{passed} passed, at most {allowed} allowed"
    );
    assert!(
        passed >= limits.data_messages_burst as usize,
        "the burst passes"
    );
    until(
        "the flooder hears RateLimited",
        || {
            flooder.log.count(|e| {
                matches!(
                    e,
                    Event::Refused {
                        code: ErrorCode::RateLimited,
                        ..
                    }
                )
            }) >= 1
        },
        String::new,
    )
    .await?;
    for member in [&flooder, &calm, &gina, &hank] {
        assert_eq!(member.log.count(|e| matches!(e, Event::Disconnected(_))), 0);
    }
    println!(
        "\ndata flood test\n  sent {FLOOD} messages in {elapsed:.2} s; passed {passed}, rate limited {limited} (limit {} a second, burst {})\n  the calm member's {CALM} messages all arrived",
        limits.data_messages_per_sec, limits.data_messages_burst
    );
    Ok(())
}
