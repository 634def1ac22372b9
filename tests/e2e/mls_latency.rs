//! Commit latency over a network (a measurement, ignored in ordinary runs): every member
//! on its own QUIC connection through an impairment proxy with a fixed one-way delay;
//! one member commits an update, and the time from asking for the commit until every
//! member holds the new epoch's keys (so opens its frames) is taken, over repeated commits.
//!
//! ```text
//! SEALROOM_MLS_LATENCY="10 100 500" SEALROOM_MLS_DELAY_MS=20 \
//!   cargo test --release --test e2e mls_latency -- --ignored --nocapture
//! ```
//!
//! `SEALROOM_MLS_ONLINE=K` brings only the first K members of each group online (the rest
//! stay members of the group, offline, as in a large group where most devices are asleep):
//! the commit is as large and as costly to apply as in the full group, but only K members'
//! CPU shares the machine, so the figure approaches what members on their own devices see.
//!
//! The group is built out of band (one member adds the others, each enters from the
//! Welcome), then every member comes online and the first offers the group to the relay.
//! The proxies' delay applies each way: the commit reaches a receiver after twice the
//! delay (committer to relay, relay to receiver). Each member runs on its own task and
//! applies the commit as soon as it arrives, as on its own device; but all of them share
//! this machine's cores, so with more members than cores the last receiver waits for the
//! others' CPU. The harness therefore also reports one receiver's time to apply the
//! commit, from which the latency on separate devices follows (network path, committer's
//! time, one receiver's time).

use std::time::{Duration, Instant};

use anyhow::Context;
use sealroom_mls::{AgentConfig, MlsAgent, MlsMember};
use sealroom_relay::{Grants, Limits};
use sealroom_test_support::impair::{ImpairProxy, Impairment};
use sealroom_test_support::raw::Raw;
use tokio::sync::mpsc;

use crate::mls_large::{WireAgent, roster};
use crate::support::TestRelay;

const GROUP_ID: &[u8] = b"sealroom";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A member's epoch once it holds that epoch's keys.
fn epoch_of(member: &WireAgent) -> Option<u64> {
    if !member.agent.is_ready() {
        return None;
    }
    member.agent.epoch_keys().ok().map(|keys| keys.epoch())
}

/// A member reached a new epoch; `apply` is the time of the step that took it there.
struct Moved {
    member: usize,
    epoch: u64,
    apply: Duration,
}

/// One member on its own task: commit an update when told to, otherwise take in what the
/// relay sends as soon as it arrives and report every new epoch.
async fn run_member(
    index: usize,
    mut member: WireAgent,
    mut orders: mpsc::UnboundedReceiver<()>,
    moved: mpsc::UnboundedSender<Moved>,
) -> anyhow::Result<()> {
    let mut epoch = epoch_of(&member);
    loop {
        let commit = tokio::select! {
            order = orders.recv() => match order {
                Some(()) => true,
                None => return Ok(()),
            },
            () = member.raw.more_than(member.seen()) => false,
        };
        let started = Instant::now();
        if commit {
            member.agent.update()?;
        }
        member.step().await?;
        let now = epoch_of(&member);
        if now != epoch {
            epoch = now;
            if let Some(epoch) = now {
                let apply = started.elapsed();
                // The harness may have stopped listening; that ends this member too.
                if moved
                    .send(Moved {
                        member: index,
                        epoch,
                        apply,
                    })
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
    }
}

/// Per round: the commit latency and the median receiver's time to apply the commit.
struct Round {
    latency: f64,
    receiver_apply: f64,
}

async fn measure(
    size: usize,
    online: usize,
    delay: Duration,
    commits: usize,
) -> anyhow::Result<Vec<Round>> {
    let users: Vec<String> = (0..size).map(|i| format!("user-{i}")).collect();
    let mut first = MlsMember::new(&users[0])?;
    first.create_group(GROUP_ID)?;
    let mut others = users[1..]
        .iter()
        .map(|u| MlsMember::new(u))
        .collect::<Result<Vec<_>, _>>()?;
    let packages = others
        .iter()
        .map(MlsMember::key_package)
        .collect::<Result<Vec<_>, _>>()?;
    let (_, welcome) = first.add(&packages)?;
    first.confirm_commit()?;
    for member in &mut others {
        member.join_welcome(&welcome)?;
    }

    // Every member online from one address: room and per-address connection limits sized
    // to the group.
    let relay = TestRelay::with_limits(Limits {
        max_members_per_room: size.max(64),
        max_connections_per_ip: (2 * size).max(64),
        ..Limits::default().unlimited_rates()
    })
    .await?;
    let roster = roster(&users);
    let way = Impairment {
        loss: 0.0,
        delay,
        jitter: Duration::ZERO,
    };
    let mut proxies = Vec::new();
    let mut members = Vec::new();
    // Long quiet: nobody removes the members still coming online.
    let config = AgentConfig::default().rejoin_quiet(Duration::from_secs(3600));
    for (i, member) in std::iter::once(first)
        .chain(others)
        .take(online)
        .enumerate()
    {
        let proxy = ImpairProxy::start(relay.relay.local_addr(), way, way, i as u64).await?;
        let ticket = relay.ticket("app-a", &users[i], "latency", Grants::all());
        let raw = Raw::join_via(&relay.relay, proxy.addr(), &ticket).await?;
        let mut agent = WireAgent::new(raw, MlsAgent::with_member(member, GROUP_ID, config));
        agent
            .agent
            .handle_joined(agent.raw.member, &roster, Instant::now());
        // One at a time: the first offers the group, the others find it at their position.
        while !agent.agent.is_ready() {
            agent.step().await?;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        proxies.push(proxy);
        members.push(agent);
    }

    let members_online = members.len();
    let mut epochs: Vec<u64> = members
        .iter()
        .map(|m| epoch_of(m).context("a member is not ready"))
        .collect::<anyhow::Result<_>>()?;
    let (moved_tx, mut moved_rx) = mpsc::unbounded_channel();
    let mut orders = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, member) in members.into_iter().enumerate() {
        let (order_tx, order_rx) = mpsc::unbounded_channel();
        orders.push(order_tx);
        tasks.spawn(run_member(index, member, order_rx, moved_tx.clone()));
    }
    drop(moved_tx);

    let mut rounds = Vec::new();
    for round in 0..commits {
        let committer = round % members_online;
        let target = epochs[committer] + 1;
        let started = Instant::now();
        orders[committer]
            .send(())
            .ok()
            .context("the committer's task ended")?;
        let mut applies = Vec::new();
        while epochs.iter().any(|&epoch| epoch < target) {
            let next = tokio::time::timeout(Duration::from_secs(120), moved_rx.recv())
                .await
                .with_context(|| {
                    format!("round {round}: not every member reached epoch {target}")
                })?;
            let Some(moved) = next else {
                // Every task ended: one of them failed; its error says why.
                while let Some(result) = tasks.join_next().await {
                    result??;
                }
                anyhow::bail!("round {round}: every member task ended");
            };
            epochs[moved.member] = moved.epoch;
            if moved.member != committer {
                applies.push(ms(moved.apply));
            }
        }
        let latency = ms(started.elapsed());
        applies.sort_by(f64::total_cmp);
        rounds.push(Round {
            latency,
            receiver_apply: percentile(&applies, 0.5),
        });
        // Let the committer's group info and any stragglers settle between rounds.
        tokio::time::sleep(delay * 4).await;
    }
    drop(orders);
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    drop(proxies);
    Ok(rounds)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: run in release with --ignored (see the module docs)"]
async fn mls_commit_latency_over_an_impaired_network() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::var("SEALROOM_MLS_LATENCY")
        .unwrap_or_else(|_| "10 100".into())
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let delay_ms: u64 = std::env::var("SEALROOM_MLS_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let commits: usize = std::env::var("SEALROOM_MLS_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let online: Option<usize> = std::env::var("SEALROOM_MLS_ONLINE")
        .ok()
        .and_then(|v| v.parse().ok());
    for size in sizes {
        let online = online.unwrap_or(size).clamp(2, size);
        let rounds = measure(size, online, Duration::from_millis(delay_ms), commits).await?;
        let mut latency: Vec<f64> = rounds.iter().map(|r| r.latency).collect();
        let mut apply: Vec<f64> = rounds.iter().map(|r| r.receiver_apply).collect();
        latency.sort_by(f64::total_cmp);
        apply.sort_by(f64::total_cmp);
        println!(
            "members {size} ({online} online), one-way delay {delay_ms} ms, {} commits: latency p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms; one receiver's apply (median per round) p50 {:.2} ms, min {:.2} ms, max {:.2} ms",
            rounds.len(),
            percentile(&latency, 0.5),
            percentile(&latency, 0.99),
            latency[0],
            latency[latency.len() - 1],
            percentile(&apply, 0.5),
            apply[0],
            apply[apply.len() - 1],
        );
    }
    Ok(())
}
