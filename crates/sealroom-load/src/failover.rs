//! Failover time (`--nodes N --failovers K`): how long the members of a node that dies take
//! to hear the room again.
//!
//! Each of K runs starts N linked nodes (as [`crate::nodes`] does), a publisher on the first
//! sending audio every 20 ms, and `--failover-members` members on the last node whose
//! clients (`sealroom-client`) list the nodes last-first. Once each has heard the publisher,
//! the last node's process is killed (SIGKILL). For each of its members the run records the
//! time from the kill to the client noticing the loss (its idle timeout: a dead node sends
//! nothing) and to the first frame it opens after rejoining at the next node of its list.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use sealroom_client::{Client, ClientConfig, Event, Events, JoinConfig, RoomSecret, Trust};
use sealroom_relay::{Grants, TicketClaims};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::nodes::Deployment;
use crate::{APP, KID, LoadArgs, net};

/// The clients' keep-alive and idle timeout in the failover runs: the idle timeout is how
/// long a client waits on a silent node before it moves on.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_millis(250);
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// Failover samples over all runs, milliseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FailoverReport {
    pub(crate) runs: usize,
    pub(crate) members_per_run: usize,
    pub(crate) client_idle_timeout_ms: u64,
    pub(crate) client_keep_alive_ms: u64,
    /// Kill to the first frame opened after rejoining, per member.
    pub(crate) to_frames_ms: Vec<f64>,
    /// Kill to the client noticing the loss, per member.
    pub(crate) to_detection_ms: Vec<f64>,
}

/// What one member's event task saw after the kill.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    lost: Option<Instant>,
    recovered: bool,
    frame: Option<Instant>,
}

fn ticket(secret: &[u8], user: &str) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = TicketClaims::new(
        APP,
        user,
        "failover",
        now.saturating_sub(60),
        3600,
        Grants::all(),
    );
    Ok(sealroom_relay::mint(&claims, KID, secret)?)
}

/// Watch a member's events: tell `heard` at its first frame, then, once `killed` is set,
/// record when it lost its node and when it heard a frame after recovering.
async fn watch(
    mut events: Events,
    heard: oneshot::Sender<()>,
    killed: Arc<Mutex<Option<Instant>>>,
    seen: Arc<Mutex<Seen>>,
) {
    let mut heard = Some(heard);
    while let Some(event) = events.recv().await {
        let kill = *killed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut seen = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Frame(_) => {
                if let Some(tx) = heard.take() {
                    let _ = tx.send(());
                }
                if kill.is_some() && seen.recovered && seen.frame.is_none() {
                    seen.frame = Some(Instant::now());
                    return;
                }
            }
            Event::ConnectionLost(_) if kill.is_some() && seen.lost.is_none() => {
                seen.lost = Some(Instant::now());
            }
            Event::Recovered { .. } if kill.is_some() => seen.recovered = true,
            _ => {}
        }
    }
}

/// Run `runs` failovers on `nodes` nodes.
pub(crate) async fn measure(
    args: &LoadArgs,
    identity: &net::Identity,
    nodes: usize,
    runs: usize,
) -> anyhow::Result<FailoverReport> {
    if nodes < 2 {
        bail!("--failovers needs --nodes 2 or more (a node's members move to another)");
    }
    let members = args.failover_members.max(1);
    let mut report = FailoverReport {
        runs,
        members_per_run: members,
        client_idle_timeout_ms: u64::try_from(IDLE_TIMEOUT.as_millis())?,
        client_keep_alive_ms: u64::try_from(KEEP_ALIVE.as_millis())?,
        to_frames_ms: Vec::new(),
        to_detection_ms: Vec::new(),
    };
    for run in 0..runs {
        let mut deployment = Deployment::start(args, identity, nodes).await?;
        let addrs: Vec<SocketAddr> = deployment.listen_addrs();
        let secret = deployment.app_secret().to_vec();
        let room_secret = RoomSecret::generate();
        let config = ClientConfig::new(Trust::Pinned(identity.cert_sha256()))
            .keep_alive(KEEP_ALIVE)
            .idle_timeout(IDLE_TIMEOUT)
            .connect_timeout(Duration::from_secs(1))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(500));
        let publisher_client = Client::new(config.clone())?;
        let (publisher, _publisher_events) = publisher_client
            .join_any(
                &addrs[..1],
                "localhost",
                ticket(&secret, "publisher")?,
                &room_secret,
                JoinConfig::default(),
            )
            .await
            .context("the publisher could not join")?;
        let audio = publisher.publish_audio(1).await?;
        let sending = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(20));
            loop {
                ticks.tick().await;
                if audio.send(Bytes::from_static(&[0u8; 100])).is_err() {
                    // A full queue drops one frame; the next tick tries again.
                }
            }
        });
        // Members of the last node list it first, then the others from the last down.
        let mut order: Vec<SocketAddr> = addrs.clone();
        order.reverse();
        let killed = Arc::new(Mutex::new(None));
        let mut watchers = Vec::new();
        let mut clients = Vec::new();
        for m in 0..members {
            let client = Client::new(config.clone())?;
            let (room, events) = client
                .join_any(
                    &order,
                    "localhost",
                    ticket(&secret, &format!("member-{m}"))?,
                    &room_secret,
                    JoinConfig::default(),
                )
                .await
                .with_context(|| format!("member {m} could not join"))?;
            let (heard_tx, heard_rx) = oneshot::channel();
            let seen = Arc::new(Mutex::new(Seen::default()));
            let task = tokio::spawn(watch(
                events,
                heard_tx,
                Arc::clone(&killed),
                Arc::clone(&seen),
            ));
            watchers.push((heard_rx, seen, task));
            clients.push((client, room));
        }
        for (heard, _, _) in &mut watchers {
            tokio::time::timeout(Duration::from_secs(20), heard)
                .await
                .context("a member on the last node never heard the publisher")?
                .context("a member's event stream ended")?;
        }
        let victim = deployment.servers.pop().context("no node to kill")?;
        let at = Instant::now();
        *killed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(at);
        victim.stop();
        for (_, seen, task) in watchers {
            if tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .is_err()
            {
                bail!("run {run}: a member of the killed node heard nothing within 30 s");
            }
            let seen = *seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let ms = |t: Instant| t.duration_since(at).as_secs_f64() * 1000.0;
            report.to_frames_ms.push(seen.frame.map_or(f64::NAN, ms));
            report.to_detection_ms.push(seen.lost.map_or(f64::NAN, ms));
        }
        sending.abort();
        eprintln!(
            "failover run {}/{runs}: kill to frames again {:?} ms",
            run + 1,
            report.to_frames_ms[report.to_frames_ms.len() - members..]
                .iter()
                .map(|v| v.round())
                .collect::<Vec<_>>()
        );
        drop(clients);
        drop(deployment);
    }
    Ok(report)
}

/// The value at quantile `q` of `values` (nearest rank).
pub(crate) fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// One line per figure.
pub(crate) fn table(report: &FailoverReport) -> String {
    let line = |name: &str, values: &[f64]| {
        format!(
            "{name}: p50 {:.0} ms, p99 {:.0} ms, min {:.0} ms, max {:.0} ms ({} samples)\n",
            quantile(values, 0.5),
            quantile(values, 0.99),
            quantile(values, 0.0),
            quantile(values, 1.0),
            values.iter().filter(|v| v.is_finite()).count(),
        )
    };
    let mut out = format!(
        "failover: {} runs x {} members of the killed node; client keep-alive {} ms, idle timeout {} ms\n",
        report.runs,
        report.members_per_run,
        report.client_keep_alive_ms,
        report.client_idle_timeout_ms
    );
    out += &line("  kill to loss noticed      ", &report.to_detection_ms);
    out += &line("  kill to frames heard again", &report.to_frames_ms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_nearest_rank_and_skip_missing_samples() {
        let values = [5.0, 1.0, f64::NAN, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&values, 0.5), 3.0);
        assert_eq!(quantile(&values, 0.99), 5.0);
        assert_eq!(quantile(&values, 0.0), 1.0);
        assert!(quantile(&[f64::NAN], 0.5).is_nan());
    }
}
