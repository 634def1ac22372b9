//! What a load run reports: the figures of one run, the table on stdout, the JSON file and
//! the latency plot.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;

use super::proc::UdpCounters;
use super::shape::Shape;

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Latency {
    pub(crate) samples: u64,
    pub(crate) p50_us: f64,
    pub(crate) p90_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) max_us: f64,
    pub(crate) mean_us: f64,
}

impl Latency {
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            samples: histogram.len(),
            p50_us: us(histogram.value_at_quantile(0.50)),
            p90_us: us(histogram.value_at_quantile(0.90)),
            p99_us: us(histogram.value_at_quantile(0.99)),
            p999_us: us(histogram.value_at_quantile(0.999)),
            max_us: us(histogram.max()),
            mean_us: histogram.mean() / 1000.0,
        }
    }
}

/// The figures of one throughput run against one server.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunReport {
    /// `relay` or `baseline`.
    pub(crate) server: &'static str,
    pub(crate) shape: Shape,
    pub(crate) rooms: usize,
    pub(crate) subscribers_per_room: usize,
    pub(crate) window_secs: f64,
    /// Worker threads of the server's runtime (0: one per core).
    pub(crate) server_threads: usize,
    /// The relay's `send_batch_packets` when the run set it (`None`: the relay's default,
    /// or the baseline, which sends as stock quinn does).
    pub(crate) send_batch_packets: Option<usize>,
    /// `[limits]` settings given to the relay with `--relay-limit` (empty for the others).
    pub(crate) relay_limits: Vec<String>,
    /// Round-trip time the simulated clients added, milliseconds (`--rtt-ms`).
    pub(crate) client_rtt_ms: u64,
    /// Client packets the RTT line dropped because it was full (0 when the run is sound).
    pub(crate) client_packets_dropped_by_rtt_line: u64,
    pub(crate) ingress_mbit_s: f64,
    pub(crate) egress_mbit_s: f64,
    pub(crate) ingress_frames_s: f64,
    /// Frames delivered to subscribers per second (the server's egress frames).
    pub(crate) egress_frames_s: f64,
    /// Server CPU over the window, percent of one core.
    pub(crate) server_cpu_percent: f64,
    pub(crate) server_cpu_us_per_egress_frame: f64,
    /// Times the server's threads slept and woke, per egress frame (each wake-up is a
    /// context switch, which on a virtual machine costs several microseconds).
    pub(crate) server_wakeups_per_egress_frame: f64,
    pub(crate) server_cpu_percent_per_100mbit_egress: f64,
    /// Egress the server would sustain with one core at this cost per byte.
    pub(crate) egress_mbit_s_per_core: f64,
    pub(crate) server_peak_rss_bytes: u64,
    pub(crate) server_rss_bytes: u64,
    pub(crate) latency: Latency,
    /// Frames sent in the window times subscribers.
    pub(crate) frames_expected: u64,
    pub(crate) frames_received: u64,
    pub(crate) frames_lost: u64,
    pub(crate) loss_percent: f64,
    /// The relay's own drop counters over the window, by reason.
    pub(crate) server_dropped: BTreeMap<String, u64>,
    /// Frames publishers could not send at all.
    pub(crate) send_failures: u64,
    /// CPU of this load generator over the window, percent of one core.
    pub(crate) generator_cpu_percent: f64,
    /// CPU every other process on the machine used over the window, percent of one core (a
    /// busy machine delays the server and the generator and inflates latency).
    pub(crate) others_cpu_percent: f64,
    /// Kernel UDP buffer errors over the window (whole machine).
    pub(crate) udp: UdpCounters,
    /// UDP buffers the kernel grants the server's socket (the relay's request, made here).
    pub(crate) server_socket_recv_buffer: usize,
    pub(crate) server_socket_send_buffer: usize,
    pub(crate) client_socket_recv_buffer: usize,
    pub(crate) client_socket_send_buffer: usize,
    /// The relay's own hand-over delay (its metrics), over the window.
    pub(crate) relay_handover: Option<Handover>,
    /// The join storm beside the shape (`--join-storm`), over the window.
    pub(crate) join_storm: Option<crate::storm::StormReport>,
    /// What the subscribers' QUIC connections counted over the whole run.
    pub(crate) subscriber_quic: QuicCounts,
    /// Latency at percentiles, for plotting: (percentile, microseconds).
    #[serde(skip)]
    pub(crate) curve: Vec<(f64, f64)>,
}

/// The relay's hand-over delay from its `forward_delay_seconds` histogram: arrival of a frame
/// to its hand-over to one receiver's QUIC connection.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Handover {
    pub(crate) mean_us: f64,
    /// Upper bound of the histogram bucket holding the median.
    pub(crate) p50_at_most_us: f64,
    /// Upper bound of the bucket holding the 99th percentile.
    pub(crate) p99_at_most_us: f64,
}

/// QUIC counters summed over the subscribers' connections (the server's packets as they
/// arrive, and the ACKs that go back to it), over the whole run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct QuicCounts {
    /// Media frames the subscribers received.
    pub(crate) frames_delivered: u64,
    /// UDP datagrams (QUIC packets) the subscribers received from the server.
    pub(crate) packets_received: u64,
    /// Receive system calls they took (fewer than packets with GRO).
    pub(crate) receive_syscalls: u64,
    /// ACK frames they sent back.
    pub(crate) acks_sent: u64,
    /// ACK_FREQUENCY frames the server sent them.
    pub(crate) ack_frequency_frames_received: u64,
}

impl QuicCounts {
    fn per_frame(&self, n: u64) -> f64 {
        n as f64 / self.frames_delivered.max(1) as f64
    }
}

/// The figures of a connection-scale run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScaleReport {
    pub(crate) members_requested: usize,
    pub(crate) members_joined: usize,
    pub(crate) join_failures: usize,
    pub(crate) members_per_room: usize,
    pub(crate) clients_per_socket: usize,
    pub(crate) join_secs: f64,
    pub(crate) joins_per_sec: f64,
    pub(crate) relay_rss_before_bytes: u64,
    pub(crate) relay_rss_after_bytes: u64,
    pub(crate) relay_peak_rss_bytes: u64,
    pub(crate) relay_rss_per_member_bytes: f64,
    pub(crate) relay_cpu_secs_joining: f64,
    pub(crate) relay_cpu_us_per_join: f64,
    pub(crate) relay_members_gauge: u64,
    pub(crate) first_error: Option<String>,
}

/// Everything a `sealroom-load` invocation writes to its JSON file.
#[derive(Debug, Serialize)]
pub(crate) struct Results {
    pub(crate) sealroom_version: &'static str,
    pub(crate) cores: usize,
    pub(crate) load_average_at_start: String,
    pub(crate) runs: Vec<RunReport>,
    /// relay / baseline, when both ran.
    pub(crate) ratios: Option<Ratios>,
    /// engine / baseline, when the one-loop forwarder ran too.
    pub(crate) engine_ratios: Option<Ratios>,
    pub(crate) scale: Option<ScaleReport>,
}

/// relay / baseline ratios.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Ratios {
    pub(crate) cpu_per_egress_frame: f64,
    pub(crate) cpu_percent_per_100mbit: f64,
    /// Relay egress per core over the baseline's (the target is at least 0.6).
    pub(crate) egress_per_core: f64,
    pub(crate) latency_p50: f64,
    pub(crate) latency_p99: f64,
    pub(crate) latency_p999: f64,
}

impl Ratios {
    pub(crate) fn of(relay: &RunReport, baseline: &RunReport) -> Self {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        Self {
            cpu_per_egress_frame: ratio(
                relay.server_cpu_us_per_egress_frame,
                baseline.server_cpu_us_per_egress_frame,
            ),
            cpu_percent_per_100mbit: ratio(
                relay.server_cpu_percent_per_100mbit_egress,
                baseline.server_cpu_percent_per_100mbit_egress,
            ),
            egress_per_core: ratio(
                relay.egress_mbit_s_per_core,
                baseline.egress_mbit_s_per_core,
            ),
            latency_p50: ratio(relay.latency.p50_us, baseline.latency.p50_us),
            latency_p99: ratio(relay.latency.p99_us, baseline.latency.p99_us),
            latency_p999: ratio(relay.latency.p999_us, baseline.latency.p999_us),
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The table of throughput runs (one column per run, plus ratios).
pub(crate) fn table(runs: &[RunReport], ratios: Option<&Ratios>) -> String {
    let mut rows: Vec<(&str, Vec<String>, Option<String>)> = Vec::new();
    let col = |f: &dyn Fn(&RunReport) -> String| runs.iter().map(f).collect::<Vec<_>>();
    let r = |x: f64| Some(format!("{x:.2}"));
    rows.push((
        "ingress Mbit/s",
        col(&|r| format!("{:.2}", r.ingress_mbit_s)),
        None,
    ));
    rows.push((
        "egress Mbit/s",
        col(&|r| format!("{:.2}", r.egress_mbit_s)),
        None,
    ));
    rows.push((
        "frames forwarded/s",
        col(&|r| format!("{:.0}", r.egress_frames_s)),
        None,
    ));
    rows.push((
        "server CPU % of a core",
        col(&|r| format!("{:.1}", r.server_cpu_percent)),
        None,
    ));
    rows.push((
        "CPU us per egress frame",
        col(&|r| format!("{:.2}", r.server_cpu_us_per_egress_frame)),
        ratios.and_then(|x| r(x.cpu_per_egress_frame)),
    ));
    rows.push((
        "server wake-ups per egress frame",
        col(&|r| format!("{:.3}", r.server_wakeups_per_egress_frame)),
        None,
    ));
    rows.push((
        "CPU % per 100 Mbit/s egress",
        col(&|r| format!("{:.2}", r.server_cpu_percent_per_100mbit_egress)),
        ratios.and_then(|x| r(x.cpu_percent_per_100mbit)),
    ));
    rows.push((
        "egress Mbit/s per core",
        col(&|r| format!("{:.0}", r.egress_mbit_s_per_core)),
        ratios.and_then(|x| r(x.egress_per_core)),
    ));
    rows.push((
        "server peak RSS",
        col(&|r| mib(r.server_peak_rss_bytes)),
        None,
    ));
    rows.push((
        "latency p50 ms",
        col(&|r| format!("{:.3}", r.latency.p50_us / 1000.0)),
        ratios.and_then(|x| r(x.latency_p50)),
    ));
    rows.push((
        "relay hand-over mean/p50/p99 us",
        col(&|r| match r.relay_handover {
            Some(h) => format!(
                "{:.0} / <={:.0} / <={:.0}",
                h.mean_us, h.p50_at_most_us, h.p99_at_most_us
            ),
            None => "-".to_owned(),
        }),
        None,
    ));
    if runs.iter().any(|r| r.join_storm.is_some()) {
        rows.push((
            "join storm joins/s (failed)",
            col(&|r| match &r.join_storm {
                Some(s) => format!(
                    "{:.0} of {:.0} ({})",
                    s.joins_per_sec, s.joins_per_sec_requested, s.failures
                ),
                None => "-".to_owned(),
            }),
            None,
        ));
    }
    rows.push((
        "latency p90 ms",
        col(&|r| format!("{:.3}", r.latency.p90_us / 1000.0)),
        None,
    ));
    rows.push((
        "latency p99 ms",
        col(&|r| format!("{:.3}", r.latency.p99_us / 1000.0)),
        ratios.and_then(|x| r(x.latency_p99)),
    ));
    rows.push((
        "latency p999 ms",
        col(&|r| format!("{:.3}", r.latency.p999_us / 1000.0)),
        ratios.and_then(|x| r(x.latency_p999)),
    ));
    rows.push((
        "latency max ms",
        col(&|r| format!("{:.3}", r.latency.max_us / 1000.0)),
        None,
    ));
    rows.push((
        "frames lost (of expected)",
        col(&|r| {
            format!(
                "{} of {} ({:.3}%)",
                r.frames_lost, r.frames_expected, r.loss_percent
            )
        }),
        None,
    ));
    rows.push((
        "server drops",
        col(&|r| {
            if r.server_dropped.is_empty() {
                "0".to_owned()
            } else {
                r.server_dropped
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }),
        None,
    ));
    rows.push((
        "packets per egress frame",
        col(&|r| {
            format!(
                "{:.2}",
                r.subscriber_quic
                    .per_frame(r.subscriber_quic.packets_received)
            )
        }),
        None,
    ));
    rows.push((
        "ACKs per egress frame",
        col(&|r| {
            format!(
                "{:.2}",
                r.subscriber_quic.per_frame(r.subscriber_quic.acks_sent)
            )
        }),
        None,
    ));
    rows.push((
        "UDP buffer errors (rcv/snd)",
        col(&|r| format!("{}/{}", r.udp.rcvbuf_errors, r.udp.sndbuf_errors)),
        None,
    ));
    rows.push((
        "generator CPU % of a core",
        col(&|r| format!("{:.1}", r.generator_cpu_percent)),
        None,
    ));
    rows.push((
        "other processes CPU % of a core",
        col(&|r| format!("{:.1}", r.others_cpu_percent)),
        None,
    ));
    let label_w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let mut widths: Vec<usize> = runs.iter().map(|r| r.server.len()).collect();
    for (_, cells, _) in &rows {
        for (w, cell) in widths.iter_mut().zip(cells) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let _ = write!(out, "{:label_w$}", "");
    for (run, w) in runs.iter().zip(&widths) {
        let _ = write!(out, "  {:>w$}", run.server);
    }
    if ratios.is_some() {
        let _ = write!(out, "  {:>14}", "relay/baseline");
    }
    out.push('\n');
    for (label, cells, ratio) in rows {
        let _ = write!(out, "{label:label_w$}");
        for (cell, w) in cells.iter().zip(&widths) {
            let _ = write!(out, "  {cell:>w$}");
        }
        if ratios.is_some() {
            let _ = write!(out, "  {:>14}", ratio.unwrap_or_default());
        }
        out.push('\n');
    }
    out
}

/// The connection-scale figures as lines.
pub(crate) fn scale_table(scale: &ScaleReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "members joined        {} of {} ({} failed), {} per room, {} per client socket",
        scale.members_joined,
        scale.members_requested,
        scale.join_failures,
        scale.members_per_room,
        scale.clients_per_socket
    );
    let _ = writeln!(
        out,
        "join rate             {:.0} joins/s ({:.1} s)",
        scale.joins_per_sec, scale.join_secs
    );
    let _ = writeln!(
        out,
        "relay RSS             {} before, {} after, peak {}",
        mib(scale.relay_rss_before_bytes),
        mib(scale.relay_rss_after_bytes),
        mib(scale.relay_peak_rss_bytes)
    );
    let _ = writeln!(
        out,
        "relay RSS per member  {:.1} KiB",
        scale.relay_rss_per_member_bytes / 1024.0
    );
    let _ = writeln!(
        out,
        "relay CPU per join    {:.0} us ({:.1} s of CPU while joining)",
        scale.relay_cpu_us_per_join, scale.relay_cpu_secs_joining
    );
    let _ = writeln!(out, "relay members gauge   {}", scale.relay_members_gauge);
    if let Some(err) = &scale.first_error {
        let _ = writeln!(out, "first join error      {err}");
    }
    out
}

/// Latency at percentiles from 0 to 99.99: x is `-log10(1 - q)` (0 = p0, 2 = p99, 4 = p99.99).
pub(crate) fn curve(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    (0..=400)
        .map(|i| {
            let x = f64::from(i) / 100.0;
            let q = 1.0 - 10f64.powf(-x);
            (x, histogram.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect()
}

/// Plot latency against percentile for every run, as SVG.
pub(crate) fn plot(runs: &[RunReport], title: &str, path: &Path) -> anyhow::Result<()> {
    let max_ms = runs
        .iter()
        .flat_map(|r| r.curve.iter().map(|(_, us)| us / 1000.0))
        .fold(0.0f64, f64::max)
        .max(0.01)
        * 1.1;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..4f64, 0f64..max_ms)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(9)
        .x_label_formatter(&|x| {
            let q = 100.0 * (1.0 - 10f64.powf(-x));
            if *x < 1.5 {
                format!("{q:.0}")
            } else {
                let digits = (x.ceil() as usize).saturating_sub(2);
                format!("{q:.digits$}")
            }
        })
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let colors = [RED, BLUE, GREEN, MAGENTA];
    for (run, color) in runs.iter().zip(colors.iter().cycle()) {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                run.curve.iter().map(|(x, us)| (*x, us / 1000.0)),
                &color,
            ))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(format!(
                "{} (p50 {:.3} ms, p99 {:.3} ms)",
                run.server,
                run.latency.p50_us / 1000.0,
                run.latency.p99_us / 1000.0
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
