//! Heap allocations per egress frame on the relay's whole forwarding path (the room core,
//! quinn's datagram queue and packet building, the socket), beside a bare-quinn fan-out
//! measured the same way in the same run.
//!
//! The server under test (the relay, then the baseline) runs on a current-thread runtime on
//! the bench's main thread, and its allocations are counted on that thread only
//! (`allocation_counter::measure`); the publisher and the receivers run on a runtime of
//! their own threads, so their allocations are not counted. One publisher sends an
//! audio-sized datagram (160-byte payload in an envelope) every 20 ms to N receivers.
//! `crates/sealroom-relay/benches/room.rs` counts the room core alone (zero per frame);
//! this bench adds everything below it.
//!
//! ```text
//! cargo bench -p sealroom-relay --bench egress_alloc      # N = 50, three 5 s windows each
//! ```
//!
//! Without `--bench` (as `cargo test --benches` runs it) it makes one short pass with three
//! receivers, to show the bench still works; its figures mean nothing.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use sealroom_frame::envelope::{Envelope, Flags, MediaKind};
use sealroom_relay::Limits;
use sealroom_test_support::raw::{Raw, frame};
use sealroom_test_support::tls::pinned_client_config;
use sealroom_test_support::wire;
use tokio::runtime::Runtime;

const PAYLOAD: usize = 160;
const INTERVAL: Duration = Duration::from_millis(20);

struct Shape {
    receivers: usize,
    warmup: Duration,
    window: Duration,
    windows: usize,
}

/// What one measured window counted on the server's thread.
struct Window {
    egress_frames: u64,
    allocations: u64,
    bytes: u64,
}

impl Window {
    fn per_frame(&self) -> (f64, f64) {
        let frames = self.egress_frames.max(1) as f64;
        (self.allocations as f64 / frames, self.bytes as f64 / frames)
    }
}

/// Drive `server` (the runtime whose tasks are the server) for `window`, counting what
/// its thread allocates.
fn measured(server: &Runtime, window: Duration) -> allocation_counter::AllocationInfo {
    allocation_counter::measure(|| drive(server, window))
}

/// Run the server's tasks for `duration`.
fn drive(server: &Runtime, duration: Duration) {
    server.block_on(async move { tokio::time::sleep(duration).await });
}

/// Send one datagram every 20 ms on `conn` until `stop`; `make(seq)` builds it.
fn spawn_sender(
    members: &Runtime,
    conn: quinn::Connection,
    stop: Arc<AtomicBool>,
    make: impl Fn(u32) -> Bytes + Send + 'static,
) {
    members.spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        let mut seq = 0u32;
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let _ = conn.send_datagram(make(seq));
            seq = seq.wrapping_add(1);
        }
    });
}

fn relay_windows(
    server: &Runtime,
    members: &Runtime,
    shape: &Shape,
) -> anyhow::Result<Vec<Window>> {
    let relay = server.block_on(wire::relay_with(Limits::default().unlimited_rates()));
    let (addr, cert) = (relay.local_addr(), relay.cert_der());
    let receivers = shape.receivers;
    let joining = members.spawn(async move {
        let publisher = Raw::join_at(
            &cert,
            addr,
            &wire::ticket(wire::APP_A, "publisher", "alloc"),
        )
        .await?;
        let mut joined = Vec::with_capacity(receivers);
        for i in 0..receivers {
            let ticket = wire::ticket(wire::APP_A, &format!("receiver-{i}"), "alloc");
            joined.push(Raw::join_at(&cert, addr, &ticket).await?);
        }
        anyhow::Ok((publisher, joined))
    });
    // The relay answers the joins while this thread drives it.
    let (publisher, joined) = server.block_on(joining)??;
    let stop = Arc::new(AtomicBool::new(false));
    let sender = publisher.member;
    spawn_sender(
        members,
        publisher.conn.clone(),
        Arc::clone(&stop),
        move |seq| {
            let envelope = Envelope {
                kind: MediaKind::Audio,
                flags: Flags::empty(),
                sender,
                track: 1,
                group: 0,
                seq,
                timestamp_us: 0,
            };
            frame(envelope, &[0x5a; PAYLOAD])
        },
    );
    drive(server, shape.warmup);
    let mut windows = Vec::new();
    for _ in 0..shape.windows {
        let before = relay.stats().audio.frames_forwarded;
        let info = measured(server, shape.window);
        let after = relay.stats().audio.frames_forwarded;
        windows.push(Window {
            egress_frames: after - before,
            allocations: info.count_total,
            bytes: info.bytes_total,
        });
    }
    stop.store(true, Ordering::Relaxed);
    drop((publisher, joined));
    server.block_on(relay.shutdown());
    Ok(windows)
}

/// The bare-quinn fan-out: every datagram from the first connection goes to every other,
/// with the relay's transport parameters and socket, and nothing else.
async fn bare_fanout(
    endpoint: quinn::Endpoint,
    receivers: usize,
    counted: Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<()> {
    let publisher = endpoint.accept().await.context("no publisher")?.await?;
    let mut subscribers = Vec::with_capacity(receivers);
    for _ in 0..receivers {
        subscribers.push(endpoint.accept().await.context("no receiver")?.await?);
    }
    while let Ok(bytes) = publisher.read_datagram().await {
        for subscriber in &subscribers {
            if subscriber.send_datagram(bytes.clone()).is_ok() {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

fn baseline_windows(
    server: &Runtime,
    members: &Runtime,
    shape: &Shape,
) -> anyhow::Result<Vec<Window>> {
    let limits = Limits::default();
    let names = vec!["localhost".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    let cert_der = certified.cert.der().to_vec();
    let key_der =
        rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    // The relay's TLS: TLS 1.3 with the sealroom ALPN (QUIC clients insist on an ALPN).
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(cert_der.clone())],
            key_der,
        )?;
    tls.alpn_protocols = vec![sealroom_frame::ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(tls)?,
    ));
    config.transport_config(Arc::new(sealroom_relay::transport_config(&limits)));
    let (socket, _, _) = sealroom_relay::udp_socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let endpoint = server.block_on(async {
        let runtime = quinn::default_runtime().context("no runtime")?;
        anyhow::Ok(quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(config),
            socket,
            runtime,
        )?)
    })?;
    let addr = endpoint.local_addr()?;
    let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let fanout = server.spawn(bare_fanout(
        endpoint.clone(),
        shape.receivers,
        Arc::clone(&counted),
    ));
    let receivers = shape.receivers;
    let connecting = members.spawn(async move {
        let client_config = pinned_client_config(&cert_der, quinn::TransportConfig::default())?;
        let mut conns = Vec::with_capacity(receivers + 1);
        for _ in 0..=receivers {
            let mut client = quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
            client.set_default_client_config(client_config.clone());
            let conn = client.connect(addr, "localhost")?.await?;
            // Receivers read and drop what arrives; the publisher's reads find nothing.
            let reader = conn.clone();
            tokio::spawn(async move { while reader.read_datagram().await.is_ok() {} });
            conns.push((client, conn));
            // One at a time, so the server takes the first as the publisher.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::Ok(conns)
    });
    let conns = server.block_on(connecting)??;
    let stop = Arc::new(AtomicBool::new(false));
    let payload = Bytes::from(vec![0x5a; PAYLOAD + 32]);
    spawn_sender(members, conns[0].1.clone(), Arc::clone(&stop), move |_| {
        payload.clone()
    });
    drive(server, shape.warmup);
    let mut windows = Vec::new();
    for _ in 0..shape.windows {
        let before = counted.load(Ordering::Relaxed);
        let info = measured(server, shape.window);
        let after = counted.load(Ordering::Relaxed);
        windows.push(Window {
            egress_frames: after - before,
            allocations: info.count_total,
            bytes: info.bytes_total,
        });
    }
    stop.store(true, Ordering::Relaxed);
    endpoint.close(0u32.into(), b"done");
    drop(conns);
    fanout.abort();
    Ok(windows)
}

fn median(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

fn main() -> anyhow::Result<()> {
    let full = std::env::args().any(|arg| arg == "--bench");
    let shape = if full {
        Shape {
            receivers: 50,
            warmup: Duration::from_secs(2),
            window: Duration::from_secs(5),
            windows: 3,
        }
    } else {
        Shape {
            receivers: 3,
            warmup: Duration::from_millis(200),
            window: Duration::from_millis(300),
            windows: 1,
        }
    };
    let members = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("members")
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for (name, windows) in [
        (
            "relay",
            relay_windows(&server_runtime()?, &members, &shape)?,
        ),
        (
            "bare quinn",
            baseline_windows(&server_runtime()?, &members, &shape)?,
        ),
    ] {
        let frames: u64 = windows.iter().map(|w| w.egress_frames).sum();
        anyhow::ensure!(
            frames > 0,
            "{name}: no frame was forwarded in the measured windows"
        );
        let (allocs, bytes): (Vec<f64>, Vec<f64>) = windows.iter().map(Window::per_frame).unzip();
        rows.push((name, frames, median(allocs), median(bytes)));
    }
    println!(
        "egress_alloc: N={} receivers, 160-byte audio every 20 ms, {} window(s) of {:?}; heap allocations on the server's thread per egress frame, median (min-max)",
        shape.receivers, shape.windows, shape.window
    );
    for (name, frames, (a, a_min, a_max), (b, b_min, b_max)) in &rows {
        println!(
            "  {name:<10} {frames:>7} egress frames   {a:.3} allocations ({a_min:.3}-{a_max:.3})   {b:.1} bytes ({b_min:.1}-{b_max:.1})"
        );
    }
    let ratio = rows[0].2.0 / rows[1].2.0.max(f64::MIN_POSITIVE);
    println!("  relay / bare quinn, allocations per egress frame: {ratio:.2}");
    Ok(())
}

fn server_runtime() -> anyhow::Result<Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
