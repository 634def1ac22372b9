//! Operating a relay node end to end: the `sealroom relay` binary started from a config
//! file, real clients on loopback QUIC, the internal listener scraped over HTTP, and a
//! SIGTERM drain.

use anyhow::Context;
use sealroom_client::{DisconnectReason, ErrorCode, Event, JoinError, LeaveReason, MediaKind};
use sealroom_relay::mask::IdMask;

use crate::support::{Node, TempDir, http, join, metric, next_event, sealroom, ticket};

const APP: &str = "acme";
const KID: &str = "k1";
const SECRET: &[u8] = b"acme-ops-test-ticket-secret";
const ADMIN: &str = "ops-test-admin-token-0123";
const SALT: &str = "ops-test-mask-salt";
// Distinctive ids, so the log check cannot match anything else.
const ALICE: &str = "user-alice-5c1e";
const BOB: &str = "user-bob-93d0";
const CAROL: &str = "user-carol-0f7a";
const ROOM: &str = "room-standup-4b2f";

fn config(max_members: usize) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
internal_listen = "127.0.0.1:0"
admin_token = "{ADMIN}"
drain_secs = 5

[tls]
self_signed_names = ["localhost"]

[log]
format = "json"
filter = "debug"
mask_salt = "{SALT}"

[limits]
max_members_per_room = {max_members}

[[apps]]
app = "{APP}"
secrets = [{{ kid = "{KID}", secret = "{secret}" }}]
"#,
        secret = std::str::from_utf8(SECRET).expect("utf-8 secret"),
    )
}

fn count(text: &str, series: &str) -> u64 {
    metric(text, series).unwrap_or_else(|| panic!("no series {series} in\n{text}")) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_from_a_config_file_serves_meters_and_obeys_its_operator() -> anyhow::Result<()> {
    let dir = TempDir::new("node");
    let path = dir.write("relay.toml", &config(2));
    let mut node = Node::start(sealroom(), &dir, &path)?;
    let internal = node.internal;

    assert_eq!(http(internal, "GET", "/health", None).await?.0, 200);
    assert_eq!(http(internal, "GET", "/ready", None).await?.0, 200);

    // A scripted session: alice publishes video and data, bob receives everything.
    let client = node.client()?;
    let (alice, mut alice_events) =
        join(&node, &client, ticket(APP, KID, SECRET, ALICE, ROOM)).await?;
    let (bob, mut bob_events) = join(&node, &client, ticket(APP, KID, SECRET, BOB, ROOM)).await?;
    next_event(&mut alice_events, |e| {
        matches!(e, Event::MemberJoined(m) if m.user == BOB).then_some(())
    })
    .await?;

    // Two video groups (the second sent once the first arrived, so it supersedes nothing)
    // and a run of reliable data messages.
    const GROUP: usize = 6;
    const VIDEO_FRAMES: usize = 2 * GROUP;
    const DATA_MESSAGES: usize = 10;
    let video = alice.publish_video(1).await?;
    let data = alice.publish_data(2).await?;
    let (mut video_seen, mut data_seen) = (0, 0);
    for group in 0..2 {
        for i in 0..GROUP {
            video.send(vec![i as u8; 600], i == 0)?;
        }
        if group == 1 {
            for i in 0..DATA_MESSAGES {
                data.send(format!("message {i}")).await?;
            }
        }
        let want_data = if group == 1 { DATA_MESSAGES } else { 0 };
        while video_seen < (group + 1) * GROUP || data_seen < want_data {
            let kind = next_event(&mut bob_events, |e| match e {
                Event::Frame(frame) => Some(frame.kind),
                _ => None,
            })
            .await
            .with_context(|| format!("bob saw {video_seen} video and {data_seen} data frames"))?;
            match kind {
                MediaKind::Video => video_seen += 1,
                MediaKind::Data => data_seen += 1,
                MediaKind::Audio => {}
            }
        }
    }

    // The relay's counters match what was sent: every frame received once, forwarded once
    // (one receiver), byte for byte.
    let (status, text) = http(internal, "GET", "/metrics", None).await?;
    assert_eq!(status, 200);
    for (kind, sent) in [("video", VIDEO_FRAMES), ("data", DATA_MESSAGES)] {
        let label = format!("{{kind=\"{kind}\"}}");
        let received = count(&text, &format!("sealroom_frames_received_total{label}"));
        let forwarded = count(&text, &format!("sealroom_frames_forwarded_total{label}"));
        assert_eq!(received, sent as u64, "{kind} frames received");
        assert_eq!(forwarded, sent as u64, "{kind} frames forwarded");
        assert_eq!(
            count(&text, &format!("sealroom_bytes_received_total{label}")),
            count(&text, &format!("sealroom_bytes_forwarded_total{label}")),
            "{kind} bytes"
        );
    }
    assert_eq!(
        count(&text, "sealroom_frames_received_total{kind=\"audio\"}"),
        0
    );
    assert_eq!(count(&text, "sealroom_rooms"), 1);
    assert_eq!(count(&text, "sealroom_members"), 2);

    // Refused joins: a forged ticket (the caller's fault, excluded from the SLA) and a
    // full room (the service's refusal, counted).
    let forged = ticket(APP, KID, b"not-the-acme-ticket-secret!", CAROL, ROOM);
    match join(&node, &client, forged).await {
        Err(JoinError::Refused { code, .. }) => assert_eq!(code, ErrorCode::BadSignature),
        other => panic!(
            "a forged ticket joined or failed oddly: {:?}",
            other.map(|_| ())
        ),
    }
    match join(&node, &client, ticket(APP, KID, SECRET, CAROL, ROOM)).await {
        Err(JoinError::Refused { code, .. }) => assert_eq!(code, ErrorCode::RoomFull),
        other => panic!(
            "a third member joined a room of two: {:?}",
            other.map(|_| ())
        ),
    }

    let (_, text) = http(internal, "GET", "/metrics", None).await?;
    assert_eq!(count(&text, "sealroom_join_attempts_total"), 4);
    assert_eq!(count(&text, "sealroom_joins_total{outcome=\"joined\"}"), 2);
    assert_eq!(
        count(&text, "sealroom_joins_total{outcome=\"bad_signature\"}"),
        1
    );
    assert_eq!(
        count(&text, "sealroom_joins_total{outcome=\"room_full\"}"),
        1
    );
    // The same joins as the SLA classifies them.
    for (result, n) in [("succeeded", 2), ("failed", 1), ("excluded", 1)] {
        let series = format!("sealroom_sla_joins_total{{result=\"{result}\"}}");
        assert_eq!(count(&text, &series), n, "{series}");
    }

    let (status, body) = http(internal, "GET", "/sla", None).await?;
    assert_eq!(status, 200);
    let sla: serde_json::Value = serde_json::from_str(&body)?;
    let windows = sla["windows"].as_array().context("windows")?;
    let total = |field: &str| {
        windows
            .iter()
            .map(|w| w[field].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(total("attempts"), 3, "{body}");
    assert_eq!(total("succeeded"), 2, "{body}");
    assert_eq!(total("failed"), 1, "{body}");
    assert_eq!(total("excluded"), 1, "{body}");
    // However the joins fell across window boundaries, a window with a failure among at
    // most three attempts is below 99%.
    for window in windows {
        let met = window["met"].as_bool().context("met")?;
        assert_eq!(met, window["failed"] == 0, "{body}");
    }
    assert_eq!(sla["target"], 0.99);

    // The admin API: authenticated, lists, removes, dismisses.
    for token in [None, Some("wrong-token-wrong-token")] {
        assert_eq!(http(internal, "GET", "/admin/rooms", token).await?.0, 401);
        let path = format!("/admin/apps/{APP}/rooms/{ROOM}/members/{BOB}");
        assert_eq!(http(internal, "DELETE", &path, token).await?.0, 401);
    }
    let (status, body) = http(internal, "GET", "/admin/rooms", Some(ADMIN)).await?;
    assert_eq!(status, 200);
    let rooms: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(rooms["rooms"][0]["room"], ROOM, "{body}");
    assert_eq!(rooms["rooms"][0]["members"], 2, "{body}");
    let (status, body) = http(
        internal,
        "GET",
        &format!("/admin/apps/{APP}/rooms/{ROOM}"),
        Some(ADMIN),
    )
    .await?;
    assert_eq!(status, 200);
    let mut users: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)?["members"]
        .as_array()
        .context("members")?
        .iter()
        .filter_map(|m| m["user"].as_str().map(str::to_owned))
        .collect();
    users.sort();
    assert_eq!(users, vec![ALICE.to_owned(), BOB.to_owned()]);
    // Each member's connection quality, with the masked user id the log carries.
    let view: serde_json::Value = serde_json::from_str(&body)?;
    for member in view["members"].as_array().context("members")? {
        let user = member["user"].as_str().context("user")?;
        let token = member["user_token"].as_str().context("user_token")?;
        let masked = IdMask::with_salt(SALT.as_bytes()).user(user).to_string();
        assert_eq!(token, masked, "{body}");
        let quality = &member["quality"];
        assert!(
            quality["rtt_ms"].as_f64().context("rtt_ms")? > 0.0,
            "{body}"
        );
        assert!(
            quality["sent_packets"].as_u64().context("sent_packets")? > 0,
            "{body}"
        );
        assert!(quality["queued_bytes"].is_u64(), "{body}");
        assert!(quality["dropped"].is_object(), "{body}");
        let verdict = quality["verdict"].as_str().context("verdict")?;
        assert!(["good", "fair", "poor"].contains(&verdict), "{body}");
    }
    let unknown = format!("/admin/apps/{APP}/rooms/no-such-room");
    assert_eq!(http(internal, "GET", &unknown, Some(ADMIN)).await?.0, 404);
    assert_eq!(
        http(internal, "DELETE", &unknown, Some(ADMIN)).await?.0,
        404
    );

    let kick = format!("/admin/apps/{APP}/rooms/{ROOM}/members/{BOB}");
    assert_eq!(http(internal, "DELETE", &kick, Some(ADMIN)).await?.0, 200);
    let reason = next_event(&mut bob_events, |e| match e {
        Event::Disconnected(reason) => Some(reason.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(reason.code(), Some(ErrorCode::Kicked), "{reason}");
    let left = next_event(&mut alice_events, |e| match e {
        Event::MemberLeft { reason, .. } => Some(*reason),
        _ => None,
    })
    .await?;
    assert_eq!(left, LeaveReason::Kicked);
    assert_eq!(http(internal, "DELETE", &kick, Some(ADMIN)).await?.0, 404);

    let dismiss = format!("/admin/apps/{APP}/rooms/{ROOM}");
    assert_eq!(
        http(internal, "DELETE", &dismiss, Some(ADMIN)).await?.0,
        200
    );
    let reason = next_event(&mut alice_events, |e| match e {
        Event::Disconnected(reason) => Some(reason.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(reason.code(), Some(ErrorCode::RoomDismissed), "{reason}");
    drop((alice, bob));

    // Logs: JSON lines, ids masked with the configured salt, never in clear.
    let log = node.log();
    let mask = IdMask::with_salt(SALT.as_bytes());
    assert!(
        log.lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('{')),
        "not JSON lines:\n{log}"
    );
    for user in [ALICE, BOB, CAROL] {
        assert!(!log.contains(user), "{user} in clear in the log:\n{log}");
    }
    assert!(!log.contains(ROOM), "room id in clear in the log:\n{log}");
    // The operator's removal is logged with the user and the room masked: the stable token
    // lets an operator follow them without the log holding the ids.
    let removal = log
        .lines()
        .find(|l| l.contains("admin removed a user"))
        .unwrap_or_else(|| panic!("no removal logged:\n{log}"));
    assert!(removal.contains(&mask.user(BOB).to_string()), "{removal}");
    assert!(removal.contains(&mask.room(ROOM).to_string()), "{removal}");

    client.close().await;
    node.terminate();
    let status = node.wait()?;
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        node.log()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_tells_members_to_go_away_and_exits_zero() -> anyhow::Result<()> {
    let dir = TempDir::new("drain");
    let path = dir.write("relay.toml", &config(8));
    let mut node = Node::start(sealroom(), &dir, &path)?;
    let client = node.client()?;
    let (_alice, mut events) = join(&node, &client, ticket(APP, KID, SECRET, ALICE, ROOM)).await?;

    node.terminate();
    // GoAway is not the end of the session: the client leaves the draining relay and
    // tries to come back (here the node is gone for good, so it keeps trying).
    let reason = next_event(&mut events, |e| match e {
        Event::ConnectionLost(reason) => Some(reason.clone()),
        Event::Disconnected(reason) => Some(reason.clone()),
        _ => None,
    })
    .await?;
    assert!(
        matches!(
            reason,
            DisconnectReason::Relay {
                code: ErrorCode::ShuttingDown,
                ..
            }
        ),
        "{reason}"
    );
    assert!(reason.is_recoverable(), "{reason}");
    let attempt = next_event(&mut events, |e| match e {
        Event::Reconnecting { attempt } => Some(*attempt),
        Event::Disconnected(reason) => panic!("session ended instead of reconnecting: {reason}"),
        _ => None,
    })
    .await?;
    assert_eq!(attempt, 1);
    let status = node.wait()?;
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        node.log()
    );
    let log = node.log();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("relay stopped"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_node_stays_up_unready_for_the_delay_before_it_drains() -> anyhow::Result<()> {
    let dir = TempDir::new("ready-delay");
    // A delay far longer than the test: the second signal ends it, so nothing here waits
    // on a clock.
    let text = config(8).replace(
        "drain_secs = 5",
        "drain_secs = 5\nready_drain_delay_secs = 600",
    );
    let path = dir.write("relay.toml", &text);
    let mut node = Node::start(sealroom(), &dir, &path)?;
    let client = node.client()?;
    let (_alice, mut alice_events) =
        join(&node, &client, ticket(APP, KID, SECRET, ALICE, ROOM)).await?;
    assert_eq!(http(node.internal, "GET", "/ready", None).await?.0, 200);

    node.terminate();
    let deadline = std::time::Instant::now() + sealroom_test_support::SAFETY;
    loop {
        let (status, _) = http(node.internal, "GET", "/ready", None).await?;
        if status == 503 {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "/ready never turned 503"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Not ready, yet still serving: a balancer's late client still gets in, and the
    // members already there hear of it.
    assert!(node.child.try_wait()?.is_none(), "the node exited at once");
    let (_bob, _) = join(&node, &client, ticket(APP, KID, SECRET, BOB, ROOM)).await?;
    let joined = next_event(&mut alice_events, |e| match e {
        Event::MemberJoined(member) => Some(member.user.clone()),
        Event::ConnectionLost(reason) => panic!("drained during the delay: {reason}"),
        _ => None,
    })
    .await?;
    assert_eq!(joined, BOB);
    assert_eq!(http(node.internal, "GET", "/health", None).await?.0, 200);

    // The second signal ends the delay: GoAway, drain, exit 0.
    node.terminate();
    let reason = next_event(&mut alice_events, |e| match e {
        Event::ConnectionLost(reason) | Event::Disconnected(reason) => Some(reason.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(reason.code(), Some(ErrorCode::ShuttingDown), "{reason}");
    let status = node.wait()?;
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        node.log()
    );
    assert!(node.log().contains("still serving"), "{}", node.log());
    Ok(())
}
