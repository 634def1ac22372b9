//! The churn soak (`--churn SECS`): members keep joining, leaving, coming back from a new
//! device (the relay replaces the old session), changing subscriptions, refreshing tickets
//! and being kicked through the admin API, while one publisher per room keeps sending audio
//! and reliable data, for as long as asked. Every simulated member is a real
//! `sealroom-client` (sealing, opening, reconnecting), unlike the raw clients of the
//! throughput runs: the soak checks behaviour, not speed.
//!
//! At the end it checks, and fails if any does not hold:
//!
//! - **the counters balance**: every reliable data message the publishers' clients sent
//!   was received by the relay, and every audio frame too, less at most the datagrams the
//!   machine's UDP buffers dropped (from `/proc/net/snmp`); the relay's drops are listed by
//!   reason;
//! - **no reliable message to a member who stayed was lost**: each stayer received every
//!   data message of its room's publisher, in order, with no gap and no duplicate;
//! - **no frame failed to open**, at any member, and nothing malformed arrived;
//! - **nothing grows**: once the churners have left, the relay's rooms, members and
//!   connections gauges, its queued bytes, its threads and its open file descriptors are
//!   back where they were before the churn started;
//! - **memory is flat**: the relay's RSS sampled every 5 s after the warm-up is fitted with
//!   a line; its slope per hour is reported, and checked against `--churn-max-rss-growth`
//!   (MiB per hour) when the window after warm-up is at least 5 minutes long (a shorter
//!   window measures the allocator, not a leak).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use rand::RngExt as _;
use sealroom_client::{
    Client, ClientConfig, Event, Events, MediaKind, Room, RoomSecret, TicketSourceError, Trust,
    ticket_fn,
};
use sealroom_relay::{Grants, TicketClaims};
use tokio::sync::watch;

use crate::proc::{self, Server, UdpCounters};
use crate::{APP, KID, LoadArgs, net, random_secret, relay_executable};

const AUDIO_TRACK: u32 = 1;
const DATA_TRACK: u32 = 2;
/// Ticket lifetime: long enough that only deliberate refreshes happen.
const TICKET_SECS: u64 = 3600;

/// What the soak shares between its tasks.
struct Soak {
    relay: std::net::SocketAddr,
    internal: std::net::SocketAddr,
    admin: String,
    secret: String,
    trust: Trust,
    room_secret: RoomSecret,
    /// Open failures and malformed frames seen by any member.
    bad: AtomicU64,
    /// Actions done by churners, by name.
    actions: std::sync::Mutex<BTreeMap<&'static str, u64>>,
}

impl Soak {
    fn ticket(&self, user: &str, room: &str) -> anyhow::Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let claims = TicketClaims::new(APP, user, room, now, TICKET_SECS, Grants::all());
        Ok(sealroom_relay::mint(&claims, KID, self.secret.as_bytes())?)
    }

    fn count(&self, action: &'static str) {
        *self
            .actions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(action)
            .or_default() += 1;
    }

    /// Join `room` as `user` with a fresh client; tickets for rejoins and refreshes are
    /// minted on demand.
    async fn join(
        self: &Arc<Self>,
        user: &str,
        room: &str,
    ) -> anyhow::Result<(Client, Room, Events)> {
        let client = Client::new(
            ClientConfig::new(self.trust.clone())
                .stats_interval(None)
                .event_queue(1 << 14),
        )?;
        let soak = Arc::clone(self);
        let (user_owned, room_owned) = (user.to_owned(), room.to_owned());
        let tickets = ticket_fn(move |_request| {
            let ticket = soak
                .ticket(&user_owned, &room_owned)
                .map_err(|err| TicketSourceError::new(err.to_string()));
            async move { ticket }
        });
        let (room, events) = client
            .join(self.relay, "localhost", tickets, &self.room_secret)
            .await
            .with_context(|| format!("{user} joins {room}"))?;
        Ok((client, room, events))
    }
}

/// Drain a member's events: count what could not be opened; for a stayer, check the
/// publisher's data messages arrive in order.
async fn watch_events(soak: Arc<Soak>, mut events: Events, order: Option<Arc<AtomicU64>>) {
    while let Some(event) = events.recv().await {
        match event {
            Event::Frame(frame) => {
                if let (Some(next), MediaKind::Data) = (&order, frame.kind) {
                    let seq = std::str::from_utf8(&frame.payload)
                        .ok()
                        .and_then(|text| text.parse::<u64>().ok());
                    let expected = next.load(Ordering::Relaxed);
                    if seq == Some(expected) {
                        next.store(expected + 1, Ordering::Relaxed);
                    } else {
                        eprintln!("stayer: data message {seq:?} where {expected} was due");
                        soak.bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Event::CouldNotOpen(frame) => {
                eprintln!(
                    "frame from {} could not be opened: {}",
                    frame.sender, frame.reason
                );
                soak.bad.fetch_add(1, Ordering::Relaxed);
            }
            Event::Disconnected(_) => break,
            _ => {}
        }
    }
}

/// The relay's state that must not grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Footprint {
    rooms: u64,
    members: u64,
    connections: u64,
    queued_bytes: u64,
    threads: u64,
    fds: u64,
}

async fn footprint(server: &Server, internal: std::net::SocketAddr) -> anyhow::Result<Footprint> {
    // Threads and descriptors first: the scrape's own connection is not counted.
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))?.count() as u64;
    let text = proc::scrape(internal).await?;
    Ok(Footprint {
        rooms: proc::metric(&text, "sealroom_rooms"),
        members: proc::metric(&text, "sealroom_members"),
        connections: proc::metric(&text, "sealroom_connections"),
        queued_bytes: proc::metric(&text, "sealroom_queued_bytes"),
        threads,
        fds,
    })
}

/// Remove `user` from `room` through the admin API; whether the relay had it.
async fn kick(soak: &Soak, room: &str, user: &str) -> anyhow::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(soak.internal).await?;
    let request = format!(
        "DELETE /admin/apps/{APP}/rooms/{room}/members/{user} HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
        soak.admin
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer);
    Ok(answer.starts_with("HTTP/1.1 200"))
}

/// One churning member: joins, then does a random action every 100-600 ms until `stop`.
async fn churner(
    soak: Arc<Soak>,
    room: String,
    user: String,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (mut client, mut current, events) = soak.join(&user, &room).await?;
    let mut watcher = tokio::spawn(watch_events(Arc::clone(&soak), events, None));
    let mut subscribed = true;
    loop {
        let pause = Duration::from_millis(rand::rng().random_range(100..600));
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            () = tokio::time::sleep(pause) => {}
        }
        let roll = rand::rng().random_range(0..100);
        match roll {
            0..25 => {
                current.leave().await;
                client.close().await;
                let _ = watcher.await;
                let (c, r, e) = soak.join(&user, &room).await?;
                (client, current) = (c, r);
                watcher = tokio::spawn(watch_events(Arc::clone(&soak), e, None));
                soak.count("leave and rejoin");
            }
            25..40 => {
                // The same user from a new device: the relay replaces the old session.
                let (c, r, e) = soak.join(&user, &room).await?;
                let old = std::mem::replace(&mut current, r);
                let _ = watcher.await;
                drop(old);
                client.close().await;
                client = c;
                watcher = tokio::spawn(watch_events(Arc::clone(&soak), e, None));
                soak.count("replaced by a new device");
            }
            40..65 => {
                let publisher = current
                    .members()
                    .into_iter()
                    .find(|m| m.user.starts_with("publisher"));
                if let Some(publisher) = publisher {
                    let result = if subscribed {
                        current.unsubscribe(publisher.id, AUDIO_TRACK).await
                    } else {
                        current.subscribe(publisher.id, AUDIO_TRACK).await
                    };
                    if result.is_ok() {
                        subscribed = !subscribed;
                        soak.count("subscription changed");
                    }
                }
            }
            65..85 => {
                if current.refresh_ticket().await.is_ok() {
                    soak.count("ticket refreshed");
                }
            }
            _ => {
                if kick(&soak, &room, &user).await? {
                    let _ = watcher.await;
                    client.close().await;
                    let (c, r, e) = soak.join(&user, &room).await?;
                    (client, current) = (c, r);
                    watcher = tokio::spawn(watch_events(Arc::clone(&soak), e, None));
                    soak.count("kicked and rejoined");
                }
            }
        }
    }
    current.leave().await;
    client.close().await;
    let _ = watcher.await;
    Ok(())
}

/// A room's publisher: audio every 20 ms and a numbered reliable data message every
/// 100 ms until `stop`; returns (data messages sent, frames its client sent).
async fn publisher(room: Room, mut stop: watch::Receiver<bool>) -> anyhow::Result<(u64, Room)> {
    let audio = room.publish_audio(AUDIO_TRACK).await?;
    let data = room.publish_data(DATA_TRACK).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut n: u64 = 0;
    let mut messages = 0;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            _ = tick.tick() => {}
        }
        let _ = audio.send(Bytes::from(vec![0x5a; 160]));
        if n.is_multiple_of(5) {
            data.send(Bytes::from(messages.to_string())).await?;
            messages += 1;
        }
        n += 1;
    }
    drop(audio);
    drop(data);
    Ok((messages, room))
}

/// Least-squares slope of (seconds, bytes), in bytes per second.
fn slope(samples: &[(f64, f64)]) -> Option<f64> {
    if samples.len() < 3 {
        return None;
    }
    let n = samples.len() as f64;
    let (mx, my) = samples
        .iter()
        .fold((0.0, 0.0), |(x, y), (a, b)| (x + a / n, y + b / n));
    let (num, den) = samples.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    (den > 0.0).then(|| num / den)
}

/// Run the soak for `secs` seconds.
pub(crate) async fn run(
    args: &LoadArgs,
    identity: &net::Identity,
    secs: f64,
) -> anyhow::Result<()> {
    if !(secs.is_finite() && secs >= 5.0) {
        bail!("--churn takes at least 5 seconds");
    }
    let duration = Duration::from_secs_f64(secs);
    let warmup = Duration::from_secs_f64((secs * 0.2).clamp(5.0, 120.0));
    let (rooms, stayers, churners) = (args.rooms.max(1), args.churn_stayers, args.churn_members);
    let secret = random_secret();
    let admin = random_secret();
    let plan = crate::RelayPlan {
        file: "relay-churn.toml",
        admin: Some(&admin),
        per_room: 1000,
        rooms: None,
        clients: None,
    };
    let config = crate::relay_config(&args.out, identity, &secret, plan)?;
    let config = config.to_str().context("non-UTF-8 output path")?;
    let server = Server::spawn(
        &relay_executable(args)?,
        &["relay", "--config", config],
        &args.out.join("relay-churn.log"),
        true,
        args.server_threads,
    )?;
    let internal = server
        .internal
        .context("the relay printed no internal address")?;
    let soak = Arc::new(Soak {
        relay: server.listen,
        internal,
        admin,
        secret,
        trust: Trust::Pinned(identity.cert_sha256()),
        room_secret: RoomSecret::generate(),
        bad: AtomicU64::new(0),
        actions: std::sync::Mutex::new(BTreeMap::new()),
    });
    eprintln!(
        "churn soak: {rooms} room(s) x (1 publisher + {stayers} stayers + {churners} churners), {secs:.0} s, warm-up {:.0} s",
        warmup.as_secs_f64()
    );

    // The members who stay, then the publishers.
    let mut stayer_sessions = Vec::new();
    for r in 0..rooms {
        for s in 0..stayers {
            let (client, room, events) = soak
                .join(&format!("stayer-{r}-{s}"), &format!("room-{r}"))
                .await?;
            let next = Arc::new(AtomicU64::new(0));
            let task = tokio::spawn(watch_events(
                Arc::clone(&soak),
                events,
                Some(Arc::clone(&next)),
            ));
            stayer_sessions.push((r, client, room, next, task));
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut publishers = Vec::new();
    let mut publisher_clients = Vec::new();
    for r in 0..rooms {
        let (client, room, events) = soak
            .join(&format!("publisher-{r}"), &format!("room-{r}"))
            .await?;
        tokio::spawn(watch_events(Arc::clone(&soak), events, None));
        publishers.push(tokio::spawn(publisher(room, stop_rx.clone())));
        publisher_clients.push(client);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = footprint(&server, internal).await?;
    let udp_before = UdpCounters::read();

    let mut churn_tasks = Vec::new();
    for r in 0..rooms {
        for c in 0..churners {
            churn_tasks.push(tokio::spawn(churner(
                Arc::clone(&soak),
                format!("room-{r}"),
                format!("churner-{r}-{c}"),
                stop_rx.clone(),
            )));
        }
    }

    // Sample the relay's memory until the end.
    let started = Instant::now();
    let mut rss = Vec::new();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(5).min(duration.saturating_sub(started.elapsed())))
            .await;
        let sample = server.sample()?;
        rss.push((started.elapsed().as_secs_f64(), sample.rss as f64));
        let actions: u64 = soak
            .actions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .sum();
        eprint!(
            "\r  {:>5.0} s  relay RSS {:>6.1} MiB  churn actions {actions}   ",
            started.elapsed().as_secs_f64(),
            sample.rss as f64 / 1048576.0
        );
    }
    eprintln!();
    let _ = stop_tx.send(true);
    for task in churn_tasks {
        task.await.context("a churner panicked")??;
    }
    let mut sent_messages = Vec::new();
    let mut publisher_rooms = Vec::new();
    for task in publishers {
        let (messages, room) = task.await.context("a publisher panicked")??;
        sent_messages.push(messages);
        publisher_rooms.push(room);
    }
    let publishers_sent: u64 = publisher_rooms.iter().map(|r| r.stats().frames_sent).sum();
    let published_data: u64 = sent_messages.iter().sum();

    // Let the last frames arrive, then compare.
    let expected_at = |r: usize| sent_messages[r];
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && stayer_sessions
            .iter()
            .any(|(r, _, _, next, _)| next.load(Ordering::Relaxed) < expected_at(*r))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = proc::scrape(internal).await?;
    let udp = UdpCounters::read().since(udp_before);
    let received_by_relay = proc::metric(&text, "sealroom_frames_received_total");
    let data_received = proc::metric_by_label(&text, "sealroom_frames_received_total")
        .into_iter()
        .find(|(kind, _)| kind == "data")
        .map_or(0, |(_, n)| n);
    let drops = proc::metric_by_label(&text, "sealroom_frames_dropped_total");
    let forwarded = proc::metric(&text, "sealroom_frames_forwarded_total");
    // Everyone but the stayers and publishers has left; the publishers are still in.
    let settled = Footprint {
        queued_bytes: 0,
        ..before
    };
    let returned = |after: &Footprint| {
        after.rooms == settled.rooms
            && after.members == settled.members
            && after.connections == settled.connections
            && after.queued_bytes == 0
            && after.threads <= before.threads
            && after.fds <= before.fds
    };
    // The relay may still be closing the socket of an earlier scrape or admin request, or
    // ending a blocking thread: a leak is what is still there after a few seconds.
    let mut after = footprint(&server, internal).await?;
    for _ in 0..20 {
        if returned(&after) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = footprint(&server, internal).await?;
    }

    let mut failures = Vec::new();
    let lost_stayer_messages: u64 = stayer_sessions
        .iter()
        .map(|(r, _, _, next, _)| expected_at(*r).saturating_sub(next.load(Ordering::Relaxed)))
        .sum();
    if lost_stayer_messages > 0 {
        failures.push(format!(
            "{lost_stayer_messages} reliable messages to stayers lost"
        ));
    }
    let bad = soak.bad.load(Ordering::Relaxed)
        + stayer_sessions
            .iter()
            .map(|(_, _, room, _, _)| room.stats().malformed)
            .sum::<u64>();
    if bad > 0 {
        failures.push(format!(
            "{bad} frames failed to open, arrived out of order or malformed"
        ));
    }
    if data_received != published_data {
        failures.push(format!(
            "publishers sent {published_data} data messages, the relay received {data_received}"
        ));
    }
    let udp_lost = udp.rcvbuf_errors + udp.sndbuf_errors;
    if publishers_sent < received_by_relay || publishers_sent - received_by_relay > udp_lost {
        failures.push(format!(
            "publishers sent {publishers_sent} frames, the relay received {received_by_relay} \
             (UDP buffer errors {udp_lost})"
        ));
    }
    if !returned(&after) {
        failures.push(format!(
            "the relay did not return to its footprint: before {before:?}, after {after:?}"
        ));
    }
    let warm: Vec<(f64, f64)> = rss
        .iter()
        .copied()
        .filter(|(t, _)| *t >= warmup.as_secs_f64())
        .collect();
    let per_hour_mib = slope(&warm).map(|s| s * 3600.0 / 1048576.0);
    let window = warm.last().map_or(0.0, |l| l.0) - warm.first().map_or(0.0, |f| f.0);
    if let Some(growth) = per_hour_mib
        && window >= 300.0
        && growth > args.churn_max_rss_growth
    {
        failures.push(format!(
            "relay RSS grows {growth:.1} MiB per hour after warm-up (limit {:.1})",
            args.churn_max_rss_growth
        ));
    }

    let actions = soak
        .actions
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let report = serde_json::json!({
        "duration_secs": secs,
        "rooms": rooms,
        "stayers_per_room": stayers,
        "churners_per_room": churners,
        "actions": actions,
        "frames_sent_by_publishers": publishers_sent,
        "frames_received_by_relay": received_by_relay,
        "data_messages_sent": published_data,
        "data_messages_received_by_relay": data_received,
        "frames_forwarded": forwarded,
        "frames_dropped": drops.iter().cloned().collect::<BTreeMap<_, _>>(),
        "udp_buffer_errors": udp_lost,
        "reliable_messages_lost_to_stayers": lost_stayer_messages,
        "frames_not_opened": bad,
        "footprint_before": format!("{before:?}"),
        "footprint_after": format!("{after:?}"),
        "rss_samples": rss,
        "rss_slope_mib_per_hour_after_warmup": per_hour_mib,
        "rss_window_after_warmup_secs": window,
        "failures": failures,
    });
    let path = args.out.join("churn.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("churn soak, {secs:.0} s: actions {actions:?}");
    println!(
        "  frames: publishers sent {publishers_sent}, relay received {received_by_relay}, forwarded {forwarded}, dropped {drops:?}; UDP buffer errors {udp_lost}"
    );
    println!(
        "  data messages: sent {published_data}, relay received {data_received}, lost to stayers {lost_stayer_messages}; frames not opened {bad}"
    );
    println!("  relay footprint before {before:?}\n                  after  {after:?}");
    match per_hour_mib {
        Some(growth) => println!(
            "  relay RSS slope after warm-up: {growth:+.2} MiB per hour over {window:.0} s{}",
            if window < 300.0 {
                " (too short a window to judge a leak)"
            } else {
                ""
            }
        ),
        None => println!("  relay RSS slope: too few samples after warm-up"),
    }
    println!("results: {}", path.display());
    for (_, client, room, _, task) in stayer_sessions {
        room.leave().await;
        client.close().await;
        let _ = task.await;
    }
    for room in publisher_rooms {
        room.leave().await;
    }
    for client in publisher_clients {
        client.close().await;
    }
    server.stop();
    if failures.is_empty() {
        println!(
            "ok: every counter balances, nothing lost to stayers, nothing failed to open, nothing grew"
        );
        Ok(())
    } else {
        bail!("churn soak failed: {}", failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_of_a_line_is_its_gradient() {
        let line: Vec<(f64, f64)> = (0..10)
            .map(|t| (f64::from(t), 3.0 * f64::from(t) + 7.0))
            .collect();
        assert!((slope(&line).expect("slope") - 3.0).abs() < 1e-9);
        assert_eq!(slope(&line[..2]), None);
        let flat: Vec<(f64, f64)> = (0..10).map(|t| (f64::from(t), 5.0)).collect();
        assert!(slope(&flat).expect("slope").abs() < 1e-12);
    }
}
