//! Simulated clients on raw quinn, speaking the sealroom wire format directly (the relay
//! cannot tell them from the client library): no SFrame sealing and no event plumbing, so the
//! load generator spends its CPU on QUIC and stays out of the way of the process measured.
//!
//! Every payload starts with its send time (nanoseconds on this process's monotonic clock)
//! and a sequence number; receivers turn the send time into a latency.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use quinn::VarInt;
use sealroom_frame::control::{ControlMessage, JoinOptions, MAX_CONTROL_LEN};
use sealroom_frame::envelope::{Envelope, Flags, MemberId};
use sealroom_frame::stream::{self, Deframer};
use sealroom_frame::transport::StreamType;
use sealroom_relay::{Grants, TicketClaims};
use tokio::sync::watch;

use super::shape::{Shape, Transport};

/// Nanoseconds since the first call, on the monotonic clock every task of this process shares.
pub(crate) fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Largest frame a simulated receiver accepts on a stream.
const MAX_FRAME: usize = 1024 * 1024;

/// Bytes of a payload the generator uses: send time and sequence number.
const STAMP_LEN: usize = 16;

/// How a simulated client enters a room on the server under test.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// A sealroom relay: `Join` with a ticket minted for the app.
    Relay {
        /// App id.
        app: String,
        /// Ticket key id.
        kid: String,
        /// Ticket secret.
        secret: Vec<u8>,
    },
    /// The bare forwarder: a five-byte hello (role, room number).
    Forwarder,
}

/// A simulated client's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Receives.
    Subscriber,
    /// Sends.
    Publisher,
}

/// Counters every task adds to, read by the progress line.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub(crate) frames_sent: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) frames_received: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) errors: AtomicU64,
}

/// What simulated clients share.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) server: SocketAddr,
    pub(crate) client_config: quinn::ClientConfig,
    pub(crate) socket_buffer: usize,
    /// How long every packet a client sends waits before it leaves (`--rtt-ms`).
    pub(crate) rtt: Duration,
    pub(crate) entry: Entry,
    pub(crate) live: Arc<Live>,
}

/// The measured window: frames sent inside it count for latency and loss, frames arriving
/// inside it count for rates. Nanoseconds on [`now_ns`]'s clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl Window {
    fn contains(&self, t: u64) -> bool {
        (self.start..self.end).contains(&t)
    }
}

/// One simulated client's connection, joined.
#[derive(Debug)]
pub(crate) struct Session {
    /// Its own endpoint when it has one (closing it frees the socket).
    endpoint: Option<quinn::Endpoint>,
    pub(crate) conn: quinn::Connection,
    /// Held so the control stream stays open (finishing it means leaving).
    _control: quinn::SendStream,
    /// The member id the relay assigned (1 for the forwarder).
    pub(crate) member: MemberId,
}

impl Session {
    /// Connect on `endpoint` (or on a fresh endpoint of its own) and enter room `room` as
    /// client number `index` of it.
    pub(crate) async fn enter(
        ctx: &Ctx,
        endpoint: Option<&quinn::Endpoint>,
        room: usize,
        index: usize,
        role: Role,
    ) -> anyhow::Result<Self> {
        let own = match endpoint {
            Some(_) => None,
            None => Some(super::net::client_endpoint(
                &ctx.client_config,
                ctx.socket_buffer,
                ctx.rtt,
            )?),
        };
        let endpoint = endpoint.or(own.as_ref()).context("no endpoint")?;
        let conn = endpoint
            .connect(ctx.server, "localhost")?
            .await
            .context("QUIC handshake failed")?;
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .context("cannot open the control stream")?;
        let member = match &ctx.entry {
            Entry::Relay { app, kid, secret } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let claims = TicketClaims::new(
                    app.clone(),
                    format!("load-{room}-{index}"),
                    format!("room-{room}"),
                    now.saturating_sub(60),
                    24 * 3600,
                    Grants::all(),
                );
                let ticket = sealroom_relay::mint(&claims, kid, secret)?;
                let join = ControlMessage::Join {
                    ticket,
                    client_name: "sealroom-load".to_owned(),
                    client_version: env!("CARGO_PKG_VERSION").to_owned(),
                    options: JoinOptions {
                        auto_subscribe: true,
                        room: None,
                    },
                };
                let mut buf = BytesMut::new();
                join.encode_framed(&mut buf)?;
                send.write_all(&buf).await?;
                let mut deframer = Deframer::new(MAX_CONTROL_LEN);
                let member = loop {
                    match next_control(&mut recv, &mut deframer).await? {
                        ControlMessage::Joined { member, .. } => break member,
                        ControlMessage::Error { code, message } => {
                            bail!("join refused: {code:?}: {message}")
                        }
                        _ => {}
                    }
                };
                tokio::spawn(drain_control(recv, deframer, Arc::clone(&ctx.live)));
                member
            }
            Entry::Forwarder => {
                let mut hello = [0u8; 5];
                hello[0] = u8::from(role == Role::Publisher);
                hello[1..].copy_from_slice(&u32::try_from(room)?.to_be_bytes());
                send.write_all(&hello).await?;
                let mut ack = [0u8; 1];
                recv.read_exact(&mut ack)
                    .await
                    .context("no answer from the forwarder")?;
                tokio::spawn(async move {
                    let mut recv = recv;
                    while let Ok(Some(_)) = recv.read_chunk(4096, true).await {}
                });
                1
            }
        };
        Ok(Self {
            endpoint: own,
            conn,
            _control: send,
            member,
        })
    }

    /// Close the connection (and the endpoint, if it is its own).
    pub(crate) fn close(&self) {
        self.conn.close(VarInt::from_u32(0), b"done");
        if let Some(endpoint) = &self.endpoint {
            endpoint.close(VarInt::from_u32(0), b"done");
        }
    }
}

async fn next_control(
    recv: &mut quinn::RecvStream,
    deframer: &mut Deframer,
) -> anyhow::Result<ControlMessage> {
    loop {
        if let Some(bytes) = deframer.next_frame()? {
            return Ok(ControlMessage::decode(&bytes)?);
        }
        match recv.read_chunk(MAX_CONTROL_LEN, true).await? {
            Some(chunk) => deframer.push(chunk.bytes),
            None => bail!("the control stream ended before Joined"),
        }
    }
}

/// Read and discard what the relay sends on the control stream (roster changes, track
/// announcements), so its control queue towards this client never fills.
async fn drain_control(mut recv: quinn::RecvStream, mut deframer: Deframer, live: Arc<Live>) {
    loop {
        loop {
            match deframer.next_frame() {
                Ok(Some(bytes)) => {
                    if let Ok(ControlMessage::Error { .. }) = ControlMessage::decode(&bytes) {
                        live.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        match recv.read_chunk(MAX_CONTROL_LEN, true).await {
            Ok(Some(chunk)) => deframer.push(chunk.bytes),
            _ => return,
        }
    }
}

/// What one subscriber measured.
#[derive(Debug)]
pub(crate) struct Recorder {
    window: Window,
    /// Latency of frames sent inside the window, nanoseconds.
    pub(crate) latency: Histogram<u64>,
    /// Frames sent inside the window that arrived.
    pub(crate) received_of_window: u64,
    /// Frames that arrived inside the window.
    pub(crate) arrivals: u64,
    /// Bytes (envelope and payload) of the frames that arrived inside the window.
    pub(crate) arrival_bytes: u64,
}

impl Recorder {
    pub(crate) fn new(window: Window) -> anyhow::Result<Self> {
        Ok(Self {
            window,
            latency: Histogram::new_with_bounds(1_000, 120_000_000_000, 3)?,
            received_of_window: 0,
            arrivals: 0,
            arrival_bytes: 0,
        })
    }

    fn record(&mut self, frame: &[u8], now: u64) {
        let Some(stamp) = frame
            .get(Envelope::HEADER_LEN..Envelope::HEADER_LEN + 8)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
        else {
            return;
        };
        let sent = u64::from_be_bytes(stamp);
        if self.window.contains(now) {
            self.arrivals += 1;
            self.arrival_bytes += frame.len() as u64;
        }
        if self.window.contains(sent) {
            self.received_of_window += 1;
            self.latency
                .saturating_record(now.saturating_sub(sent).max(1_000));
        }
    }
}

/// Receive on `session` until the connection ends, recording into `recorder`.
pub(crate) fn subscribe(session: &Session, recorder: Arc<Mutex<Recorder>>, live: Arc<Live>) {
    let conn = session.conn.clone();
    let datagrams = Arc::clone(&recorder);
    let datagram_live = Arc::clone(&live);
    tokio::spawn(async move {
        while let Ok(bytes) = conn.read_datagram().await {
            let now = now_ns();
            datagram_live
                .frames_received
                .fetch_add(1, Ordering::Relaxed);
            datagram_live
                .bytes_received
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            lock(&datagrams).record(&bytes, now);
        }
    });
    let conn = session.conn.clone();
    tokio::spawn(async move {
        while let Ok(recv) = conn.accept_uni().await {
            tokio::spawn(read_stream(recv, Arc::clone(&recorder), Arc::clone(&live)));
        }
    });
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn read_stream(mut recv: quinn::RecvStream, recorder: Arc<Mutex<Recorder>>, live: Arc<Live>) {
    let mut deframer = Deframer::new(MAX_FRAME);
    let mut typed = false;
    loop {
        let mut chunk = match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => chunk.bytes,
            // Finished, reset (a stale group) or the connection ended.
            _ => return,
        };
        if !typed {
            if chunk.is_empty() {
                continue;
            }
            if chunk[0] != StreamType::Media.byte() {
                return;
            }
            chunk = chunk.slice(1..);
            typed = true;
        }
        deframer.push(chunk);
        let now = now_ns();
        let mut recorder = lock(&recorder);
        loop {
            match deframer.next_frame() {
                Ok(Some(frame)) => {
                    live.frames_received.fetch_add(1, Ordering::Relaxed);
                    live.bytes_received
                        .fetch_add(frame.len() as u64, Ordering::Relaxed);
                    recorder.record(&frame, now);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

/// What one publisher sent.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Sent {
    /// Frames sent inside the window.
    pub(crate) frames: u64,
    /// Their bytes (envelope and payload).
    pub(crate) bytes: u64,
    /// Frames that could not be sent at all.
    pub(crate) failed: u64,
}

/// Send `shape` on `session` until `stop` turns true; the first frame goes out after
/// `offset` (publishers of different rooms are spread over one frame period).
pub(crate) async fn publish(
    session: Arc<Session>,
    shape: Shape,
    window: Window,
    offset: Duration,
    mut stop: watch::Receiver<bool>,
    live: Arc<Live>,
) -> Sent {
    let mut sent = Sent::default();
    let start = tokio::time::Instant::now() + offset;
    let mut ticks = tokio::time::interval_at(start, shape.period());
    let mut group_stream: Option<quinn::SendStream> = None;
    let mut reliable: Option<quinn::SendStream> = None;
    let mut seq: u64 = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        let (group, in_group) = match shape.group_len {
            0 => (0, u32::try_from(seq).unwrap_or(u32::MAX)),
            len => {
                let len = u64::from(len);
                (
                    u32::try_from(seq / len).unwrap_or(u32::MAX),
                    u32::try_from(seq % len).unwrap_or(0),
                )
            }
        };
        let mut flags = Flags::empty();
        if shape.group_len > 0 {
            if in_group == 0 {
                flags = flags | Flags::GROUP_START;
            }
            if in_group + 1 == shape.group_len {
                flags = flags | Flags::END_OF_GROUP;
            }
        }
        let now = now_ns();
        let envelope = Envelope {
            kind: shape.kind,
            flags,
            sender: session.member,
            track: 1,
            group,
            seq: in_group,
            timestamp_us: now / 1000,
        };
        let first_on_stream = match shape.transport {
            Transport::Datagram => false,
            Transport::StreamPerGroup => in_group == 0 || group_stream.is_none(),
            Transport::Stream => reliable.is_none(),
        };
        let frame = encode(
            &envelope,
            shape.payload_len,
            now,
            seq,
            shape.transport,
            first_on_stream,
        );
        let ok = match shape.transport {
            Transport::Datagram => session.conn.send_datagram(frame).is_ok(),
            Transport::StreamPerGroup => {
                if first_on_stream {
                    if let Some(mut old) = group_stream.take() {
                        let _ = old.finish();
                    }
                    group_stream =
                        open(&session.conn, i32::try_from(group).unwrap_or(i32::MAX)).await;
                }
                let ok = write(group_stream.as_mut(), frame).await;
                if flags.contains(Flags::END_OF_GROUP)
                    && let Some(mut stream) = group_stream.take()
                {
                    let _ = stream.finish();
                }
                ok
            }
            Transport::Stream => {
                if first_on_stream {
                    reliable = open(&session.conn, 0).await;
                }
                write(reliable.as_mut(), frame).await
            }
        };
        let len = shape.frame_len() as u64;
        if ok {
            live.frames_sent.fetch_add(1, Ordering::Relaxed);
            live.bytes_sent.fetch_add(len, Ordering::Relaxed);
            if window.contains(now) {
                sent.frames += 1;
                sent.bytes += len;
            }
        } else {
            sent.failed += 1;
            live.errors.fetch_add(1, Ordering::Relaxed);
        }
        seq += 1;
    }
    for stream in [group_stream, reliable].iter_mut().flatten() {
        let _ = stream.finish();
    }
    sent
}

async fn open(conn: &quinn::Connection, priority: i32) -> Option<quinn::SendStream> {
    let stream = conn.open_uni().await.ok()?;
    let _ = stream.set_priority(priority);
    Some(stream)
}

async fn write(stream: Option<&mut quinn::SendStream>, bytes: Bytes) -> bool {
    match stream {
        Some(stream) => stream.write_chunk(bytes).await.is_ok(),
        None => false,
    }
}

/// One frame as it goes on the wire: alone (a datagram) or length-prefixed (on a stream,
/// after the stream type byte when it is the stream's first).
fn encode(
    envelope: &Envelope,
    payload_len: usize,
    now: u64,
    seq: u64,
    transport: Transport,
    first_on_stream: bool,
) -> Bytes {
    let payload_len = payload_len.max(STAMP_LEN);
    let frame_len = Envelope::HEADER_LEN + payload_len;
    let mut buf = BytesMut::with_capacity(frame_len + 1 + stream::MAX_PREFIX_LEN);
    if transport != Transport::Datagram {
        if first_on_stream {
            buf.put_u8(StreamType::Media.byte());
        }
        stream::write_len_prefix(frame_len, &mut buf);
    }
    // The payload length is far below the envelope's limit.
    let _ = envelope.encode_header(payload_len, &mut buf);
    buf.put_u64(now);
    buf.put_u64(seq);
    buf.put_bytes(0x5a, payload_len - STAMP_LEN);
    buf.freeze()
}

/// The measured window of a run that starts now: `warmup`, then `measured`.
pub(crate) fn measured_window(warmup: Duration, measured: Duration) -> anyhow::Result<Window> {
    let start = now_ns();
    Ok(Window {
        start: start + u64::try_from(warmup.as_nanos())?,
        end: start + u64::try_from((warmup + measured).as_nanos())?,
    })
}

/// One recorder per subscriber, each fed what its session receives within `window`.
pub(crate) fn record(
    subscribers: &[Session],
    window: Window,
    live: &Arc<Live>,
) -> anyhow::Result<Vec<Arc<Mutex<Recorder>>>> {
    subscribers
        .iter()
        .map(|session| {
            let recorder = Arc::new(Mutex::new(Recorder::new(window)?));
            subscribe(session, Arc::clone(&recorder), Arc::clone(live));
            anyhow::Ok(recorder)
        })
        .collect()
}
