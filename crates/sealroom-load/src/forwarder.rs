//! The bare-quinn baseline: a forwarder with no rooms, no envelopes, no tickets and no
//! limits, which pushes the bytes a publisher sends to every subscriber of the same room
//! number with the same QUIC mapping as the relay (datagram to datagram, each incoming
//! stream copied chunk by chunk onto one outgoing stream per subscriber, newer streams at
//! higher priority) and the relay's transport parameters. What the relay costs beyond it is
//! the price of rooms, admission, envelopes, limits and metrics.
//!
//! It binds its UDP socket with the relay's own function (same buffer sizes) and uses the
//! relay's transport parameters.
//!
//! Run as a separate process by `sealroom-load --baseline` (`sealroom-load --serve-forwarder`)
//! so its CPU and memory are read from `/proc` exactly as the relay's are. It exits when its
//! standard input closes (when the load generator goes away).

use std::collections::HashMap;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use quinn::VarInt;
use sealroom_relay::Limits;
use tokio::sync::mpsc;

use super::net;

/// Bytes queued towards one subscriber's copy of one stream before that copy is reset (the
/// relay's default video group queue).
const STREAM_QUEUE_BYTES: usize = 1024 * 1024;

#[derive(Default)]
struct Rooms {
    subscribers: Mutex<HashMap<u32, Vec<quinn::Connection>>>,
    next_priority: AtomicI32,
}

impl Rooms {
    fn subscribers(&self, room: u32) -> Vec<quinn::Connection> {
        self.subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&room)
            .cloned()
            .unwrap_or_default()
    }
}

/// Serve until standard input closes.
pub(crate) async fn serve(cert: &Path, key: &Path) -> anyhow::Result<()> {
    let limits = Limits::default();
    let config = net::server_config(cert, key, sealroom_relay::transport_config(&limits))?;
    // The relay's socket, bound the relay's way (same buffer sizes).
    let (socket, _, _) = sealroom_relay::udp_socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    let runtime = quinn::default_runtime().context("no async runtime for quinn")?;
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        runtime,
    )?;
    println!("sealroom-load forwarder (bare quinn baseline)");
    println!("  listen:      {}", endpoint.local_addr()?);
    let mut gone = stdin_closed();
    let rooms = Arc::new(Rooms::default());
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let rooms = Arc::clone(&rooms);
                tokio::spawn(async move {
                    if let Err(err) = connection(rooms, incoming).await {
                        tracing::debug!(%err, "forwarder connection ended");
                    }
                });
            }
            _ = gone.recv() => break,
        }
    }
    endpoint.close(VarInt::from_u32(0), b"done");
    Ok(())
}

/// Resolves when standard input closes (the load generator that started this server is
/// gone).
pub(crate) fn stdin_closed() -> mpsc::Receiver<()> {
    let (gone_tx, gone) = mpsc::channel::<()>(1);
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        let _ = gone_tx.blocking_send(());
    });
    gone
}

/// Bytes of a client's hello on its control stream: 1 for a publisher (anything else for a
/// subscriber), then the room number (big-endian u32). The server answers one byte.
pub(crate) const HELLO_LEN: usize = 5;

/// Whether the hello's sender publishes, and its room.
pub(crate) fn parse_hello(hello: [u8; HELLO_LEN]) -> (bool, u32) {
    let [role, room @ ..] = hello;
    (role == 1, u32::from_be_bytes(room))
}

async fn connection(rooms: Arc<Rooms>, incoming: quinn::Incoming) -> anyhow::Result<()> {
    let conn = incoming.await?;
    let (mut send, mut recv) = conn.accept_bi().await?;
    let mut hello = [0u8; HELLO_LEN];
    recv.read_exact(&mut hello).await?;
    let (publisher, room) = parse_hello(hello);
    if !publisher {
        rooms
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(room)
            .or_default()
            .push(conn.clone());
    }
    send.write_all(&[1]).await?;
    if !publisher {
        let reason = conn.closed().await;
        let mut subscribers = rooms
            .subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(list) = subscribers.get_mut(&room) {
            list.retain(|c| c.stable_id() != conn.stable_id());
        }
        drop(send);
        return Err(reason.into());
    }
    let datagrams = {
        let conn = conn.clone();
        let rooms = Arc::clone(&rooms);
        async move {
            while let Ok(bytes) = conn.read_datagram().await {
                for subscriber in rooms.subscribers(room) {
                    let _ = subscriber.send_datagram(bytes.clone());
                }
            }
        }
    };
    let streams = async {
        while let Ok(recv) = conn.accept_uni().await {
            tokio::spawn(copy_stream(Arc::clone(&rooms), room, recv));
        }
    };
    tokio::join!(datagrams, streams);
    drop(send);
    Ok(())
}

/// One subscriber's copy of an incoming stream.
struct Copy {
    tx: mpsc::UnboundedSender<Bytes>,
    /// Bytes queued and not yet written.
    queued: Arc<AtomicUsize>,
    /// Set when the subscriber fell behind: the copy is reset.
    stale: Arc<AtomicBool>,
}

/// Copy one incoming stream onto a new stream to every subscriber of the room.
async fn copy_stream(rooms: Arc<Rooms>, room: u32, mut recv: quinn::RecvStream) {
    let priority = rooms.next_priority.fetch_add(1, Ordering::Relaxed);
    let mut copies: Vec<Copy> = rooms
        .subscribers(room)
        .into_iter()
        .map(|subscriber| {
            let (tx, rx) = mpsc::unbounded_channel();
            let copy = Copy {
                tx,
                queued: Arc::new(AtomicUsize::new(0)),
                stale: Arc::new(AtomicBool::new(false)),
            };
            tokio::spawn(write_copy(
                subscriber,
                priority,
                rx,
                Arc::clone(&copy.queued),
                Arc::clone(&copy.stale),
            ));
            copy
        })
        .collect();
    while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
        let len = chunk.bytes.len();
        // A subscriber whose copy holds too much is behind on this stream: its copy is
        // reset, as the relay resets a stale group.
        copies.retain(|copy| {
            let queued = copy.queued.fetch_add(len, Ordering::Relaxed) + len;
            if queued > STREAM_QUEUE_BYTES || copy.tx.send(chunk.bytes.clone()).is_err() {
                copy.stale.store(true, Ordering::Relaxed);
                return false;
            }
            true
        });
    }
}

async fn write_copy(
    subscriber: quinn::Connection,
    priority: i32,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
    stale: Arc<AtomicBool>,
) {
    let Ok(mut send) = subscriber.open_uni().await else {
        return;
    };
    let _ = send.set_priority(priority);
    while let Some(chunk) = rx.recv().await {
        if stale.load(Ordering::Relaxed) {
            break;
        }
        let len = chunk.len();
        if send.write_chunk(chunk).await.is_err() {
            return;
        }
        queued.fetch_sub(len, Ordering::Relaxed);
    }
    if stale.load(Ordering::Relaxed) {
        let _ = send.reset(VarInt::from_u32(
            sealroom_frame::StreamCode::StaleGroup.code(),
        ));
    } else {
        let _ = send.finish();
    }
}
