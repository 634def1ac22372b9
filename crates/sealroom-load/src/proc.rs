//! The processes under test: starting the relay (or the bare forwarder) as a child of this
//! tool, reading its CPU time and memory from `/proc`, and scraping its metrics.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A child process killed when dropped, with the addresses it printed at start.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    /// The QUIC address it listens on.
    pub(crate) listen: SocketAddr,
    /// Its internal HTTP listener (the relay's metrics), if it has one.
    pub(crate) internal: Option<SocketAddr>,
}

impl Server {
    /// Run `exe` with `args`, its stderr going to `log`, and wait for the
    /// `listen:` line of its banner (and `internal:` when `expect_internal`).
    /// `threads` (when not 0) sets its runtime's worker threads.
    pub(crate) fn spawn(
        exe: &Path,
        args: &[&str],
        log: &Path,
        expect_internal: bool,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = Command::new(exe);
        if threads > 0 {
            command.env("TOKIO_WORKER_THREADS", threads.to_string());
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let stdout = child.stdout.take().context("no stdout of the child")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut listen = None;
        let mut internal = None;
        let banner = (|| -> anyhow::Result<()> {
            for line in lines.by_ref() {
                let line = line.context("cannot read the server's banner")?;
                let line = line.trim();
                if let Some(addr) = line.strip_prefix("listen:") {
                    listen = Some(addr.trim().parse::<SocketAddr>()?);
                } else if let Some(addr) = line.strip_prefix("internal:") {
                    let addr = addr.trim().trim_start_matches("http://");
                    internal = Some(addr.parse::<SocketAddr>()?);
                }
                if listen.is_some() && (internal.is_some() || !expect_internal) {
                    return Ok(());
                }
            }
            bail!(
                "the server exited before printing its address (see {})",
                log.display()
            )
        })();
        let mut server = Self {
            child,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            internal,
        };
        banner?;
        server.listen = listen.context("no listen address")?;
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(server)
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A snapshot of its CPU time and memory.
    pub(crate) fn sample(&self) -> anyhow::Result<ProcSample> {
        ProcSample::read_pid(self.pid())
    }

    /// Stop it (its measurements are taken).
    pub(crate) fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// CPU time and memory of one process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcSample {
    /// User plus system CPU time, seconds.
    pub(crate) cpu_secs: f64,
    /// Resident set size, bytes.
    pub(crate) rss: u64,
    /// Peak resident set size, bytes.
    pub(crate) hwm: u64,
    /// Times the process's threads went to sleep waiting for something (voluntary context
    /// switches, summed over threads): its wake-ups.
    pub(crate) sleeps: u64,
}

impl ProcSample {
    /// This process.
    pub(crate) fn own() -> anyhow::Result<Self> {
        Self::read("/proc/self")
    }

    /// Process `pid`.
    pub(crate) fn read_pid(pid: u32) -> anyhow::Result<Self> {
        Self::read(&format!("/proc/{pid}"))
    }

    fn read(dir: &str) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string(format!("{dir}/stat"))
            .with_context(|| format!("cannot read {dir}/stat"))?;
        // Fields after the command name (which may hold spaces) start at field 3.
        let after = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .context("unexpected /proc stat format")?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15, i.e. 11 and 12 after the command name.
        let ticks = |i: usize| -> anyhow::Result<u64> {
            Ok(fields.get(i).context("short /proc stat")?.parse::<u64>()?)
        };
        let cpu_ticks = ticks(11)? + ticks(12)?;
        let status = std::fs::read_to_string(format!("{dir}/status"))
            .with_context(|| format!("cannot read {dir}/status"))?;
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        // Per-thread scheduler statistics count nanoseconds; the tick counts of `stat` move in
        // 10 ms steps, too coarse for a light load over a few seconds.
        let cpu_secs = scheduled_secs(dir).unwrap_or(cpu_ticks as f64 / clock_ticks_per_sec());
        Ok(Self {
            cpu_secs,
            rss: kib("VmRSS:"),
            hwm: kib("VmHWM:"),
            sleeps: voluntary_switches(dir),
        })
    }
}

/// Sum over the process's threads of the time they ran, from `task/*/schedstat` (first
/// field, nanoseconds). Threads that ended are missing, which is fine for servers whose
/// threads live as long as they do.
fn scheduled_secs(dir: &str) -> Option<f64> {
    let mut total: u64 = 0;
    for task in std::fs::read_dir(format!("{dir}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let Ok(text) = std::fs::read_to_string(path) else {
            // The thread ended between the listing and the read.
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total as f64 / 1e9)
}

/// Sum over the process's threads of `voluntary_ctxt_switches` (each is one sleep and the
/// wake-up that ends it).
fn voluntary_switches(dir: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("{dir}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// `sysconf(_SC_CLK_TCK)` without unsafe code: ask `getconf`, default to Linux's 100.
fn clock_ticks_per_sec() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// The kernel's UDP counters (all sockets of the machine): datagrams dropped because a
/// receive buffer was full, and sends that failed for a full send buffer.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct UdpCounters {
    /// `RcvbufErrors`.
    pub(crate) rcvbuf_errors: u64,
    /// `SndbufErrors`.
    pub(crate) sndbuf_errors: u64,
}

impl UdpCounters {
    pub(crate) fn read() -> Self {
        let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") else {
            return Self::default();
        };
        let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            return Self::default();
        };
        let get = |key: &str| {
            names
                .split_whitespace()
                .position(|n| n == key)
                .and_then(|i| values.split_whitespace().nth(i))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Self {
            rcvbuf_errors: get("RcvbufErrors"),
            sndbuf_errors: get("SndbufErrors"),
        }
    }

    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(earlier.rcvbuf_errors),
            sndbuf_errors: self.sndbuf_errors.saturating_sub(earlier.sndbuf_errors),
        }
    }
}

/// GET `/metrics` from the relay's internal listener (plain HTTP/1.1 on loopback).
pub(crate) async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut body = Vec::new();
        stream.read_to_end(&mut body).await?;
        anyhow::Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .context("metrics scrape timed out")?
}

/// Sum of the samples of a metric family in Prometheus text (any labels).
pub(crate) fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// The non-zero samples of a labelled counter family, as (label value, count).
pub(crate) fn metric_by_label(text: &str, name: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.split_once("} ")?;
            let label = labels.split_once('"')?.1.split_once('"')?.0.to_owned();
            let value = value.trim().parse::<f64>().ok()? as u64;
            (value > 0).then_some((label, value))
        })
        .collect()
}

/// The whole machine's CPU time from `/proc/stat`: busy and total jiffies over all cores.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MachineCpu {
    busy: u64,
    total: u64,
}

impl MachineCpu {
    pub(crate) fn read() -> Self {
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
            return Self::default();
        };
        let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
            return Self::default();
        };
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user)
        let total: u64 = fields.iter().take(8).sum();
        let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
        Self {
            busy: total.saturating_sub(idle),
            total,
        }
    }

    /// Busy share of the machine between `earlier` and now, in cores (0 to the core count).
    pub(crate) fn busy_cores_since(self, earlier: Self, cores: usize) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.busy.saturating_sub(earlier.busy) as f64 / total as f64 * cores as f64
    }
}
