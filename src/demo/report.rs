//! The demo's verdict: what was meant, accepted, delivered and dropped by kind, the
//! per-member table, and which of it counts as a failure.

use std::collections::{BTreeMap, HashMap};

use sealroom_client::MemberId;
use sealroom_relay::DropReason;

use super::Member;
use super::traffic::{KIND_NAMES, Sent};

/// Only a full send queue is a real-time drop; every other refusal is a fault.
pub(super) fn is_realtime_drop(label: &str) -> bool {
    label == "queue full"
}

/// Relay drops that real-time media may have under load; every other reason means the
/// relay refused what was sent, which the demo counts as a failure.
pub(super) fn is_realtime_relay_drop(reason: DropReason) -> bool {
    matches!(
        reason,
        DropReason::QueueFull
            | DropReason::StaleGroup
            | DropReason::LateGroup
            | DropReason::TooManyStreams
            | DropReason::ReceiverGone
    )
}

/// Print what was meant, accepted, delivered and dropped by kind, and the relay's drops by
/// reason; return the faults: anything refused, or a kind of which nothing arrived.
/// `sent` is each member's publisher account, `delivered` what each member opened by kind.
pub(super) fn account(
    sent: &[Sent],
    delivered: &[[u64; 3]],
    relay_dropped: &[(DropReason, u64)],
) -> Vec<String> {
    let receivers = sent.len().saturating_sub(1) as u64;
    let mut faults = Vec::new();
    println!(
        "{:<6} {:>13} {:>10} {:>18} {:>10} {:>10} {:>8}",
        "frames", "meant to send", "accepted", "not accepted", "expected", "delivered", "missing"
    );
    for (index, name) in KIND_NAMES.iter().enumerate() {
        let meant: u64 = sent.iter().map(|s| s.meant[index]).sum();
        let accepted: u64 = sent.iter().map(|s| s.accepted[index]).sum();
        let mut not_accepted: BTreeMap<&str, u64> = BTreeMap::new();
        for member in sent {
            for ((kind, reason), n) in &member.not_accepted {
                if *kind == index {
                    *not_accepted.entry(reason).or_default() += n;
                }
            }
        }
        let delivered: u64 = delivered.iter().map(|d| d[index]).sum();
        let expected = accepted * receivers;
        let missing = expected.saturating_sub(delivered);
        let why = if not_accepted.is_empty() {
            String::from("0")
        } else {
            not_accepted
                .iter()
                .map(|(reason, n)| format!("{n} {reason}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{name:<6} {meant:>13} {accepted:>10} {why:>18} {expected:>10} {delivered:>10} {missing:>8}"
        );
        for (reason, n) in &not_accepted {
            if !is_realtime_drop(reason) {
                faults.push(format!("{n} {name} frames refused by the client: {reason}"));
            }
        }
        if meant > 0 && receivers > 0 && delivered == 0 {
            faults.push(format!(
                "no {name} frame was delivered (of {meant} meant to send)"
            ));
        }
    }
    let (realtime, refused): (Vec<_>, Vec<_>) = relay_dropped
        .iter()
        .partition(|(reason, _)| is_realtime_relay_drop(*reason));
    let list = |drops: &[&(DropReason, u64)]| {
        drops
            .iter()
            .map(|(reason, n)| format!("{} {n}", reason.label()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if relay_dropped.is_empty() {
        println!("relay drops: none");
    } else {
        if !realtime.is_empty() {
            println!(
                "relay drops of real-time media (allowed): {}",
                list(&realtime)
            );
        }
        if !refused.is_empty() {
            println!("relay refusals: {}", list(&refused));
            faults.push(format!("the relay refused frames: {}", list(&refused)));
        }
    }
    println!();
    faults
}

pub(super) struct Failures {
    pub(super) open_failures: u64,
    pub(super) lost: u64,
}

/// Print the per-member table; return the totals that decide the exit status.
pub(super) fn report(members: &mut [Member]) -> Failures {
    let expected: HashMap<MemberId, u64> = members
        .iter()
        .map(|m| (m.room.member_id(), m.sent.accepted[2]))
        .collect();
    println!();
    println!(
        "{:<10} {:>4} {:>8} {:>9} {:>8} {:>15} {:>16} {:>8} {:>8}",
        "member",
        "id",
        "sent",
        "received",
        "opened",
        "failed to open",
        "reliable lost",
        "p50 ms",
        "p99 ms"
    );
    let mut totals = Failures {
        open_failures: 0,
        lost: 0,
    };
    for member in members.iter_mut() {
        let me = member.room.member_id();
        let sent = member.room.stats().frames_sent;
        let mut tally = member.tally.lock().unwrap_or_else(|p| p.into_inner());
        let lost: u64 = expected
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, sent)| {
                sent.saturating_sub(tally.chat_in_order.get(id).copied().unwrap_or(0))
            })
            .sum::<u64>()
            + tally.chat_disorder;
        tally.latencies_us.sort_unstable();
        let p50 = percentile_ms(&tally.latencies_us, 50);
        let p99 = percentile_ms(&tally.latencies_us, 99);
        println!(
            "{:<10} {:>4} {:>8} {:>9} {:>8} {:>15} {:>16} {:>8.2} {:>8.2}",
            member.name, me, sent, tally.received, tally.opened, tally.failed, lost, p50, p99
        );
        totals.open_failures += tally.failed;
        totals.lost += lost;
    }
    println!();
    totals
}

/// The `pct` percentile of sorted microsecond samples, in milliseconds.
pub(super) fn percentile_ms(sorted_us: &[u64], pct: usize) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = (sorted_us.len() * pct)
        .div_ceil(100)
        .clamp(1, sorted_us.len());
    sorted_us
        .get(rank - 1)
        .map_or(0.0, |us| *us as f64 / 1000.0)
}

pub(super) fn human_bytes(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealroom_client::{MediaKind, PublishError};

    fn sent(kind: MediaKind, ok: u64, refused: &[PublishError]) -> Sent {
        let mut sent = Sent::default();
        for _ in 0..ok {
            sent.record(kind, Ok(()));
        }
        for err in refused {
            sent.record(kind, Err(err.clone()));
        }
        sent
    }

    #[test]
    fn the_verdict_counts_refusals_and_missing_kinds() {
        // Everything accepted and delivered: no fault, whatever real-time drops the relay had.
        let ok = [
            sent(MediaKind::Video, 10, &[]),
            sent(MediaKind::Video, 10, &[]),
        ];
        let faults = account(
            &ok,
            &[[0, 10, 0], [0, 10, 0]],
            &[(DropReason::StaleGroup, 3)],
        );
        assert!(faults.is_empty(), "{faults:?}");
        // A full queue is a real-time drop; a frame too large is refused: a fault.
        let refused = [
            sent(
                MediaKind::Video,
                0,
                &[
                    PublishError::TooLarge { len: 9, max: 1 },
                    PublishError::QueueFull,
                ],
            ),
            sent(MediaKind::Video, 0, &[]),
        ];
        let faults = account(&refused, &[[0; 3], [0; 3]], &[]);
        assert!(faults.iter().any(|f| f.contains("too large")), "{faults:?}");
        assert!(
            !faults.iter().any(|f| f.contains("queue full")),
            "{faults:?}"
        );
        assert!(
            faults.iter().any(|f| f.contains("no video frame")),
            "{faults:?}"
        );
        // The relay refusing frames (its rate limit) is a fault named by reason.
        let faults = account(
            &ok,
            &[[0, 10, 0], [0, 10, 0]],
            &[(DropReason::RateLimited, 5)],
        );
        assert!(
            faults.iter().any(|f| f.contains("rate_limited 5")),
            "{faults:?}"
        );
    }

    #[test]
    fn percentiles_pick_ranks() {
        let samples: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&samples, 50), 50.0);
        assert_eq!(percentile_ms(&samples, 99), 99.0);
        assert_eq!(percentile_ms(&[], 99), 0.0);
    }
}
