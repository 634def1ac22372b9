//! The demo's call-quality table: what each member's client reports about the call
//! (`Room::stats`), printed before the members leave.

use sealroom_client::{MediaKind, RoomStats};

/// Print one line per member: the verdict, the connection's round-trip time and packet
/// loss, and over the tracks it receives the frame rate, the frames lost and the largest
/// jitter.
pub(crate) fn print<'a>(members: impl IntoIterator<Item = (&'a str, RoomStats)>) {
    println!();
    println!(
        "{:<10} {:>7} {:>8} {:>9} {:>11} {:>11} {:>10} {:>10} {:>8}",
        "quality",
        "verdict",
        "rtt ms",
        "cwnd KiB",
        "pkts lost",
        "recv fps",
        "frames lost",
        "jitter ms",
        "forged"
    );
    for (name, stats) in members {
        let quality = &stats.quality;
        let (rtt_ms, cwnd_kib, lost_packets) = quality.connection.map_or((f64::NAN, 0, 0), |c| {
            (c.rtt.as_secs_f64() * 1e3, c.cwnd / 1024, c.lost_packets)
        });
        let fps: f64 = quality.received.iter().map(|t| t.frames_per_sec).sum();
        let lost: u64 = quality.received.iter().map(|t| t.lost).sum();
        let jitter_ms = quality
            .received
            .iter()
            .filter(|t| t.kind == MediaKind::Audio)
            .map(|t| t.jitter.as_secs_f64() * 1e3)
            .fold(0.0, f64::max);
        let forged: u64 = quality.forgeries.iter().map(|f| f.failures).sum();
        println!(
            "{name:<10} {:>7} {rtt_ms:>8.2} {cwnd_kib:>9} {lost_packets:>11} {fps:>11.1} {lost:>10} {jitter_ms:>10.2} {forged:>8}",
            quality.verdict.as_str(),
        );
    }
}
