//! Attacks on a relay node from outside, for measuring what the relay does under them.
//!
//! Starts `target/release/sealroom relay` as a separate process (build it first with
//! `cargo build --release`) with its defaults, one app and a fresh certificate, runs one
//! attack while honest members keep joining, and prints the honest join success rate, the
//! relay's resident memory and CPU time, and what it refused and counted (from its
//! `/metrics`). Linux only (loopback source addresses, `/proc`).
//!
//! ```sh
//! cargo build --release
//! cargo run --release --example attack -- spoof 4000     # spoofed Initials per second
//! cargo run --release --example attack -- slow-headers 2000
//! cargo run --release --example attack -- join-storm 900
//! cargo run --release --example attack -- forged 50000
//! ```

#[path = "../tests/hostile_members/spoof.rs"]
#[allow(dead_code)]
mod spoof;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use sealroom_client::{Client, ClientConfig, RoomSecret, Trust};
use sealroom_frame::envelope::{Envelope, Flags, MediaKind};
use sealroom_relay::{Grants, TicketClaims, mint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const APP: &str = "attack";
const KID: &str = "k1";
const SECRET: &str = "attack-example-ticket-secret-0001";
const QUIC: u16 = 47433;
const HTTP: u16 = 49433;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ticket(user: &str, room: &str) -> String {
    let claims = TicketClaims::new(APP, user, room, unix_now(), 3600, Grants::all());
    mint(&claims, KID, SECRET.as_bytes()).expect("mint")
}

/// The relay process and its certificate pin.
struct Node {
    child: Child,
    pin: [u8; 32],
    quic: SocketAddr,
    http: SocketAddr,
}

impl Node {
    async fn start(dir: &std::path::Path) -> anyhow::Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, certified.cert.pem())?;
        std::fs::write(&key, certified.signing_key.serialize_pem())?;
        let pin = sealroom_client::cert_sha256(certified.cert.der());
        let quic = SocketAddr::from((Ipv4Addr::LOCALHOST, QUIC));
        let http = SocketAddr::from((Ipv4Addr::LOCALHOST, HTTP));
        let child = Command::new("target/release/sealroom")
            .args(["relay", "--log-filter", "warn"])
            .arg("--listen")
            .arg(quic.to_string())
            .arg("--internal-listen")
            .arg(http.to_string())
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--app")
            .arg(format!("{APP}:{KID}:{SECRET}"))
            .spawn()
            .context("run target/release/sealroom (cargo build --release first)")?;
        let node = Self {
            child,
            pin,
            quic,
            http,
        };
        for _ in 0..100 {
            if node.get("/health").await.is_ok() {
                return Ok(node);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the relay never answered /health");
    }

    async fn get(&self, path: &str) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(self.http).await?;
        let head = format!("GET {path} HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await?;
        if !raw.starts_with("HTTP/1.1 200") {
            bail!("not 200: {}", raw.lines().next().unwrap_or(""));
        }
        Ok(raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default())
    }

    /// Resident memory now and at its peak (KiB), and CPU seconds used, of the relay.
    fn usage(&self) -> (u64, u64, f64) {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| -> f64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
        // utime and stime are fields 14 and 15 of /proc/pid/stat (11 and 12 after the name).
        let cpu = (ticks(11) + ticks(12)) / 100.0;
        (field("VmRSS:"), field("VmHWM:"), cpu)
    }

    /// The relay's counters worth reporting.
    async fn counters(&self) -> String {
        let body = self.get("/metrics").await.unwrap_or_default();
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.ends_with(" 0"))
            .filter(|l| {
                [
                    "handshakes",
                    "joins_total",
                    "violations",
                    "dropped",
                    "half_open",
                    "sla_joins",
                ]
                .iter()
                .any(|k| l.contains(k))
            })
            .collect::<Vec<_>>()
            .join("\n    ")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn honest_join(node: &Node, user: &str, room: &str) -> bool {
    let Ok(client) = Client::new(ClientConfig::new(Trust::Pinned(node.pin))) else {
        return false;
    };
    let joined = tokio::time::timeout(
        Duration::from_secs(15),
        client.join(
            node.quic,
            "localhost",
            ticket(user, room),
            &RoomSecret::generate(),
        ),
    )
    .await;
    match joined {
        Ok(Ok((room, _events))) => {
            room.leave().await;
            true
        }
        _ => false,
    }
}

/// Honest joins, one after another, until `stop`; returns (joined, attempts).
async fn honest_joins(node: &Node, stop: &AtomicBool) -> (u64, u64) {
    let (mut joined, mut attempts) = (0, 0);
    while !stop.load(Ordering::Relaxed) || attempts == 0 {
        let i = attempts;
        if honest_join(node, &format!("honest-{i}"), &format!("room-{}", i % 20)).await {
            joined += 1;
        }
        attempts += 1;
    }
    (joined, attempts)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let attack = args.next().unwrap_or_default();
    let amount: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("sealroom-attack-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let node = Node::start(&dir).await?;
    let (rss0, _, cpu0) = node.usage();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (joined, attempts, detail) = match attack.as_str() {
        "spoof" => {
            let sent = Arc::new(AtomicU64::new(0));
            let flood = spoof::flood(node.quic, amount, 50, Arc::clone(&stop), Arc::clone(&sent));
            tokio::time::sleep(Duration::from_secs(2)).await;
            let stopper = {
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    stop.store(true, Ordering::Relaxed);
                })
            };
            let (joined, attempts) = honest_joins(&node, &stop).await;
            stopper.await?;
            flood.join().expect("flood thread")?;
            let n = sent.load(Ordering::Relaxed);
            let rate = n as f64 / started.elapsed().as_secs_f64();
            (
                joined,
                attempts,
                format!("{n} spoofed Initials, {rate:.0}/s from 50 addresses"),
            )
        }
        "slow-headers" => {
            let mut held = Vec::new();
            for _ in 0..amount {
                if let Ok(mut s) = TcpStream::connect(node.http).await {
                    let _ = s
                        .write_all(b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
                        .await;
                    held.push(s);
                }
            }
            let mut ok = 0;
            let checks = 50;
            for _ in 0..checks {
                if node.get("/health").await.is_ok() {
                    ok += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let (joined, attempts) = {
                stop.store(true, Ordering::Relaxed);
                honest_joins(&node, &stop).await
            };
            let mut closed = 0;
            for mut s in held {
                let mut buf = [0u8; 64];
                if matches!(
                    tokio::time::timeout(Duration::from_millis(10), s.read(&mut buf)).await,
                    Ok(Ok(0) | Err(_))
                ) {
                    closed += 1;
                }
            }
            (
                joined,
                attempts,
                format!(
                    "{amount} slow-header connections; /health answered {ok}/{checks}; {closed} of them closed by the relay"
                ),
            )
        }
        "join-storm" => {
            let storm = {
                let stop = Arc::clone(&stop);
                let quic = node.quic;
                let pin = node.pin;
                tokio::spawn(async move {
                    let stolen = ticket("mallory", "storm");
                    let mut sent = 0u64;
                    let mut tasks = Vec::new();
                    while sent < amount && !stop.load(Ordering::Relaxed) {
                        let stolen = stolen.clone();
                        tasks.push(tokio::spawn(async move {
                            let config = ClientConfig::new(Trust::Pinned(pin))
                                .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 0)))
                                .reconnect_attempts(0);
                            if let Ok(client) = Client::new(config) {
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(5),
                                    client.join(quic, "localhost", stolen, &RoomSecret::generate()),
                                )
                                .await;
                            }
                        }));
                        sent += 1;
                        if tasks.len() >= 64 {
                            for t in tasks.drain(..) {
                                let _ = t.await;
                            }
                        }
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                    stop.store(true, Ordering::Relaxed);
                    sent
                })
            };
            let (joined, attempts) = honest_joins(&node, &stop).await;
            let sent = storm.await?;
            (
                joined,
                attempts,
                format!("{sent} joins with one ticket from 127.0.0.2"),
            )
        }
        "forged" => {
            let client =
                Client::new(ClientConfig::new(Trust::Pinned(node.pin)).reconnect_attempts(0))?;
            let (mallory, _events) = client
                .join(
                    node.quic,
                    "localhost",
                    ticket("mallory", "forged"),
                    &RoomSecret::generate(),
                )
                .await?;
            let flood = {
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    let mut sent = 0u64;
                    for seq in 0..amount {
                        let envelope = Envelope {
                            kind: MediaKind::Audio,
                            flags: Flags::empty(),
                            sender: mallory.member_id().wrapping_add(1),
                            track: 1,
                            group: 0,
                            seq: seq as u32,
                            timestamp_us: 0,
                        };
                        if mallory
                            .dangerous()
                            .send_frame_as(envelope, b"forged")
                            .await
                            .is_err()
                        {
                            break;
                        }
                        sent += 1;
                        if sent.is_multiple_of(20) {
                            // Pace the flood (about 20 000 a second at most) so that the
                            // client's own datagram buffer does not drop it before it
                            // leaves the host.
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    stop.store(true, Ordering::Relaxed);
                    (sent, mallory)
                })
            };
            let (joined, attempts) = honest_joins(&node, &stop).await;
            let (sent, mallory) = flood.await?;
            // Let the last datagrams land before reading the counters.
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(mallory);
            (
                joined,
                attempts,
                format!("{sent} of {amount} forged datagrams sent before the sender was cut off"),
            )
        }
        _ => bail!("attacks: spoof N | slow-headers N | join-storm N | forged N"),
    };
    let (rss, hwm, cpu) = node.usage();
    let elapsed = started.elapsed().as_secs_f64();
    println!("attack {attack}: {detail}");
    println!(
        "  honest joins during the attack: {joined}/{attempts} ({:.1} %)",
        joined as f64 * 100.0 / attempts.max(1) as f64
    );
    println!(
        "  relay RSS {rss0} KiB before, {rss} KiB after, peak {hwm} KiB; CPU {:.1} s over {elapsed:.1} s ({:.0} % of one core)",
        cpu - cpu0,
        (cpu - cpu0) * 100.0 / elapsed
    );
    println!("  relay counters:\n    {}", node.counters().await);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
