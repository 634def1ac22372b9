//! Commit latency over a network (a measurement, ignored in ordinary runs): every member
//! on its own QUIC connection through an impairment proxy with a fixed one-way delay;
//! one member commits an update, and the time from sending the commit until every member
//! holds the new epoch's keys (so opens its frames) is taken, over repeated commits.
//!
//! ```text
//! SEALROOM_MLS_LATENCY="10 100 500" SEALROOM_MLS_DELAY_MS=20 \
//!   cargo test --release --test e2e mls_latency -- --ignored --nocapture
//! ```
//!
//! The group is built out of band (one member adds the others, each enters from the
//! Welcome), then every member comes online and the first offers the group to the relay.
//! The proxies' delay applies each way: the commit reaches a receiver after twice the
//! delay (committer to relay, relay to receiver). One task steps every member in turn, so
//! the receivers apply the commit one after another on this machine, not in parallel as
//! on their own devices: the figure is the network path plus the committer's CPU plus
//! the sum of the receivers' CPU, an upper bound of what a group spread over devices sees.

use std::time::{Duration, Instant};

use sealroom_mls::{AgentConfig, MlsAgent, MlsMember};
use sealroom_relay::{Grants, Limits};
use sealroom_test_support::impair::{ImpairProxy, Impairment};
use sealroom_test_support::raw::Raw;

use crate::mls_large::{WireAgent, roster};
use crate::support::TestRelay;

const GROUP_ID: &[u8] = b"sealroom";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn measure(size: usize, delay: Duration, commits: usize) -> anyhow::Result<Vec<f64>> {
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

    let relay = TestRelay::with_limits(Limits::default().unlimited_rates()).await?;
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
    for (i, member) in std::iter::once(first).chain(others).enumerate() {
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
    let mut samples = Vec::new();
    for round in 0..commits {
        let committer = round % members.len();
        let epoch = members[committer].agent.member().epoch().unwrap_or(0);
        let started = Instant::now();
        members[committer].agent.update()?;
        loop {
            for member in &mut members {
                member.step().await?;
            }
            if members.iter().all(|m| {
                m.agent.is_ready() && m.agent.epoch_keys().is_ok_and(|k| k.epoch() == epoch + 1)
            }) {
                break;
            }
            tokio::task::yield_now().await;
        }
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    drop(proxies);
    Ok(samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    for size in sizes {
        let mut samples = measure(size, Duration::from_millis(delay_ms), commits).await?;
        samples.sort_by(f64::total_cmp);
        println!(
            "members {size}, one-way delay {delay_ms} ms, {} commits: p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
            samples.len(),
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            samples[0],
            samples[samples.len() - 1],
        );
    }
    Ok(())
}
