//! A join storm beside a throughput run (`--join-storm N`): new members join at a fixed rate
//! and leave at once, in rooms of their own, while the shape is forwarded. It shows whether
//! admission (handshakes, ticket checks, roster updates) holds up forwarding.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::client::{Ctx, Role, Session};
use crate::net;

/// Rooms the storm's members join, after the shape's rooms.
pub(crate) const ROOMS: usize = 16;
/// Storm joins in flight at once; past it, ticks are skipped and counted.
pub(crate) const IN_FLIGHT: usize = 256;
/// Client sockets the storm's connections share.
const SOCKETS: usize = 16;

/// What the storm has done so far.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    joined: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    first_error: Mutex<Option<String>>,
}

/// The storm over the measured window.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StormReport {
    pub(crate) joins_per_sec_requested: f64,
    pub(crate) joins_per_sec: f64,
    pub(crate) failures: u64,
    /// Joins not attempted because `IN_FLIGHT` were still in flight.
    pub(crate) skipped: u64,
    pub(crate) first_error: Option<String>,
}

/// A reading of the counters, to take differences over the window.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reading {
    joined: u64,
    failed: u64,
    skipped: u64,
}

impl Counts {
    pub(crate) fn read(&self) -> Reading {
        Reading {
            joined: self.joined.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn report(&self, rate: f64, start: Reading, end: Reading, secs: f64) -> StormReport {
        StormReport {
            joins_per_sec_requested: rate,
            joins_per_sec: end.joined.saturating_sub(start.joined) as f64 / secs.max(1e-9),
            failures: end.failed.saturating_sub(start.failed),
            skipped: end.skipped.saturating_sub(start.skipped),
            first_error: self
                .first_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }
}

/// Start joining `rate` members a second into rooms `first_room..first_room + ROOMS` until
/// `stop` turns true.
pub(crate) fn start(
    ctx: &Ctx,
    rate: f64,
    first_room: usize,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(JoinHandle<()>, Arc<Counts>)> {
    let endpoints = (0..SOCKETS)
        .map(|_| net::client_endpoint(&ctx.client_config, ctx.socket_buffer, ctx.rtt))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let counts = Arc::new(Counts::default());
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let ctx = ctx.clone();
    let task = tokio::spawn({
        let counts = Arc::clone(&counts);
        async move {
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.1)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for i in 0usize.. {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stop.changed() => break,
                }
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    counts.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let ctx = ctx.clone();
                let endpoint = endpoints[i % SOCKETS].clone();
                let counts = Arc::clone(&counts);
                let room = first_room + i % ROOMS;
                tokio::spawn(async move {
                    let _permit = permit;
                    let entered = tokio::time::timeout(
                        Duration::from_secs(30),
                        Session::enter(&ctx, Some(&endpoint), room, i, Role::Subscriber),
                    )
                    .await;
                    match entered {
                        Ok(Ok(session)) => {
                            counts.joined.fetch_add(1, Ordering::Relaxed);
                            session.close();
                        }
                        Ok(Err(err)) => counts.fail(format!("{err:#}")),
                        Err(_) => counts.fail("join timed out".to_owned()),
                    }
                });
            }
        }
    });
    Ok((task, counts))
}

impl Counts {
    fn fail(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        first.get_or_insert(error);
    }
}
