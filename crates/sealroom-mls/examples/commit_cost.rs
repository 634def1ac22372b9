//! Commit cost and newcomer time of the MLS mode, in memory (no network), for groups of
//! several sizes; the figures in `docs/PERFORMANCE.md` come from it.
//!
//! ```text
//! cargo run --release -p sealroom-mls --example commit_cost -- 10 100 500
//! ```
//!
//! For each size it builds the group by external joins (the way members join), keeping
//! a sample of members up to date, then measures over several rounds: the CPU time a
//! committer spends on a removal commit, the CPU time one receiver spends applying it
//! (median over the sample), the size of the commit and of the group info the relay
//! keeps, and the time a newcomer needs from the relay's group info to its first frame
//! opened by a member (its external commit, one member applying it, one seal and open).

use std::time::{Duration, Instant};

use sealroom_mls::{MlsMember, MlsOpener, MlsOpenerConfig};

const SAMPLE: usize = 8;
const ROUNDS: usize = 7;

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn spread(values: &[Duration]) -> (Duration, Duration) {
    let min = values.iter().min().copied().unwrap_or_default();
    let max = values.iter().max().copied().unwrap_or_default();
    (min, max)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        vec![10, 100]
    } else {
        sizes
    };
    println!(
        "| members | commit bytes | group info bytes | committer CPU ms (median, min-max) | receiver CPU ms (median, min-max) | newcomer to first frame ms (median, min-max) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        // Members 0..SAMPLE follow every commit; the others join and then stand still.
        let mut sample: Vec<MlsMember> = vec![MlsMember::new("user-0")?];
        let mut info = sample[0].create_group(b"bench")?;
        for i in 1..n {
            let mut joiner = MlsMember::new(&format!("user-{i}"))?;
            let commit = joiner.join_external(&info)?;
            joiner.confirm_commit()?;
            for member in &mut sample {
                member.handle_commit(&commit.commit)?;
            }
            info = commit.group_info;
            if sample.len() < SAMPLE {
                sample.push(joiner);
            }
        }
        let (mut committer, mut receiver, mut newcomer) = (Vec::new(), Vec::new(), Vec::new());
        let (mut commit_len, mut info_len) = (0, info.len());
        for round in 0..ROUNDS {
            // A removal of the highest leaf (a departed member), committed by member 0.
            let leaf = sample[0]
                .members()
                .iter()
                .map(|m| m.leaf)
                .max()
                .unwrap_or(0);
            let start = Instant::now();
            let commit = sample[0].remove(&[leaf])?;
            sample[0].confirm_commit()?;
            committer.push(start.elapsed());
            commit_len = commit.commit.len();
            info_len = commit.group_info.len();
            let mut applied = Vec::new();
            for member in &mut sample[1..] {
                let start = Instant::now();
                member.handle_commit(&commit.commit)?;
                applied.push(start.elapsed());
            }
            receiver.push(median(applied));
            // A newcomer joins from that group info and its first frame is opened.
            let start = Instant::now();
            let mut fresh = MlsMember::new(&format!("newcomer-{round}"))?;
            let join = fresh.join_external(&commit.group_info)?;
            fresh.confirm_commit()?;
            sample[0].handle_commit(&join.commit)?;
            let keys = fresh.epoch_keys()?;
            let mut sealer = keys
                .sealer(fresh.leaf_index().unwrap_or(0), 0)
                .ok_or_else(|| anyhow::anyhow!("leaf fits"))?;
            let mut frame = Vec::new();
            sealer.seal(b"envelope", b"first frame", &mut frame)?;
            let mut opener = MlsOpener::new(sample[0].epoch_keys()?, MlsOpenerConfig::default());
            opener.open(b"envelope", &frame, &mut Vec::new())?;
            newcomer.push(start.elapsed());
            for member in &mut sample[1..] {
                member.handle_commit(&join.commit)?;
            }
        }
        let show = |values: &[Duration]| {
            let (min, max) = spread(values);
            format!(
                "{:.2} ({:.2}-{:.2})",
                ms(median(values.to_vec())),
                ms(min),
                ms(max)
            )
        };
        println!(
            "| {n} | {commit_len} | {info_len} | {} | {} | {} |",
            show(&committer),
            show(&receiver),
            show(&newcomer)
        );
    }
    Ok(())
}
