//! The one-loop forwarder: the baseline's forwarding (same hello, datagram to datagram, each
//! incoming stream copied onto one new stream per subscriber, newer streams at higher
//! priority, a copy more than 1 MiB behind reset) with the relay's transport parameters and
//! socket, but driven by one loop over `quinn-proto` instead of quinn's task per connection.
//!
//! It measures the lever below quinn's API before the relay is moved onto it: with quinn,
//! a fan-out to N subscribers wakes N connection tasks, each of which takes its
//! connection's lock, builds one packet and makes one `sendmsg`; every ACK goes from the
//! endpoint task to its connection's task through a channel and a wake-up. Here one loop
//! owns every connection: it reads what the socket holds (`recvmmsg`, GRO), hands each
//! packet straight to its connection, runs the forwarding, then builds the packets of every
//! connection that has something to send and gives them to the kernel together
//! (`sendmmsg` over connections with `--engine-batch`, else one `sendmsg` per transmit as
//! quinn does). No task, channel, lock or async timer per connection: one timer heap.
//!
//! Flushing adds no timer: the packets of one turn of the loop (one socket read's worth of
//! input and what it caused) go out at the end of that turn.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, sendmmsg};
use quinn::udp::{RecvMeta, Transmit as UdpTransmit, UdpSockRef, UdpSocketState};
use quinn_proto::{
    ConnectionHandle, DatagramEvent, Dir, EcnCodepoint, Endpoint, EndpointConfig, Event,
    StreamEvent, StreamId, VarInt,
};
use sealroom_relay::Limits;
use tokio::io::Interest;

use super::forwarder::{self, HELLO_LEN};
use super::net;

/// Bytes queued towards one subscriber's copy of one stream before that copy is reset (the
/// relay's default video group queue, as the baseline).
const STREAM_QUEUE_BYTES: usize = 1024 * 1024;
/// Buffers handed to one `recvmmsg`.
const RECV_BUFFERS: usize = 32;
/// Bytes per receive buffer: a GRO batch is at most 64 KiB.
const RECV_BUFFER_BYTES: usize = 64 * 1024;
/// Segments per GSO transmit (quinn's own bound).
const MAX_SEGMENTS: usize = 10;
/// Transmits one connection may build per turn before the others get theirs (quinn's
/// driver yields after 20 datagrams too).
const MAX_TRANSMITS_PER_TURN: usize = 20;
/// Bytes read from an incoming stream at once.
const READ_CHUNK: usize = 64 * 1024;

/// How the one-loop forwarder runs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    /// Gather the packets of one turn into `sendmmsg` calls.
    pub(crate) batch: bool,
    /// Sleep this long after a turn that sent packets.
    pub(crate) coalesce: Duration,
    /// Above 0: the ACK-frequency extension's ack-eliciting threshold asked of every peer.
    pub(crate) ack_threshold: u32,
}

/// Serve until standard input closes.
pub(crate) async fn serve(cert: &Path, key: &Path, options: Options) -> anyhow::Result<()> {
    let Options {
        batch,
        coalesce,
        ack_threshold,
    } = options;
    let limits = Limits::default();
    let mut transport = sealroom_relay::transport_config(&limits);
    if ack_threshold > 0 {
        // Ask every peer to acknowledge only after this many ack-eliciting packets or the
        // relay's default `max_ack_delay_ms`, whichever comes first (quinn caps the delay
        // at the larger of the RTT and 25 ms), as the relay asks.
        let mut ack = quinn_proto::AckFrequencyConfig::default();
        ack.ack_eliciting_threshold(VarInt::from_u32(ack_threshold))
            .max_ack_delay(Some(Duration::from_millis(limits.max_ack_delay_ms)));
        transport.ack_frequency_config(Some(ack));
    }
    let config = net::server_config(cert, key, transport)?;
    let (socket, _, _) = sealroom_relay::udp_socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    socket.set_nonblocking(true)?;
    let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
    let socket = tokio::net::UdpSocket::from_std(socket)?;
    println!("sealroom-load engine (one loop over quinn-proto, batch {batch})");
    println!("  listen:      {}", socket.local_addr()?);
    let mut gone = forwarder::stdin_closed();
    let endpoint = Endpoint::new(
        Arc::new(EndpointConfig::default()),
        Some(Arc::new(config)),
        !state.may_fragment(),
        None,
    );
    let mut engine = Engine {
        endpoint,
        conns: Vec::new(),
        rooms: HashMap::new(),
        next_priority: 0,
        timers: BinaryHeap::new(),
        dirty: Vec::new(),
        out: Outbox::new(batch),
        scratch: Vec::with_capacity(MAX_SEGMENTS * 1500),
        read: Vec::new(),
        max_segments: state.max_gso_segments().clamp(1, MAX_SEGMENTS),
    };
    let mut recv_bufs = vec![0u8; RECV_BUFFERS * RECV_BUFFER_BYTES];
    let mut slices: Vec<IoSliceMut<'_>> = recv_bufs
        .chunks_mut(RECV_BUFFER_BYTES)
        .map(IoSliceMut::new)
        .collect();
    let mut metas = vec![RecvMeta::default(); RECV_BUFFERS];
    let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    loop {
        let deadline = engine.next_deadline();
        if deadline != armed {
            if let Some(at) = deadline {
                sleep.as_mut().reset(tokio::time::Instant::from_std(at));
            }
            armed = deadline;
        }
        if engine.dirty.is_empty() {
            tokio::select! {
                biased;
                _ = gone.recv() => break,
                ready = socket.readable() => ready?,
                () = &mut sleep, if armed.is_some() => armed = None,
            }
        } else {
            // Connections with more to send than one turn allows go on after whatever
            // else is ready.
            tokio::task::yield_now().await;
        }
        // Everything the socket holds now.
        loop {
            let read = socket.try_io(Interest::READABLE, || {
                state.recv(UdpSockRef::from(&socket), &mut slices, &mut metas)
            });
            let count = match read {
                Ok(count) => count,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset => continue,
                Err(err) => return Err(err).context("receive failed"),
            };
            let now = Instant::now();
            for (meta, buf) in metas.iter().zip(slices.iter()).take(count) {
                let data = &buf[..meta.len];
                let stride = meta.stride.max(1);
                for segment in data.chunks(stride) {
                    engine.handle_packet(now, meta, segment);
                }
            }
        }
        let now = Instant::now();
        engine.fire_timers(now);
        engine.run_turn(now);
        let sent = engine.out.flush(&socket, &state).await?;
        if sent > 0 && !coalesce.is_zero() {
            // What was just sent will be acknowledged by many receivers within a short
            // while: let those acknowledgements gather in the socket and read them in one
            // turn instead of waking once for each.
            std::thread::sleep(coalesce);
        }
        for ch in std::mem::take(&mut engine.out.more) {
            engine.mark(ch);
        }
    }
    Ok(())
}

/// What a connection said it is, in its hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Unknown,
    Publisher(u32),
    Subscriber(u32),
}

/// A subscriber's copy of one of a publisher's incoming streams.
#[derive(Debug, Clone, Copy)]
struct Replica {
    subscriber: usize,
    stream: StreamId,
}

/// What waits to be written on one of a subscriber's outgoing streams.
#[derive(Debug, Default)]
struct Pending {
    chunks: VecDeque<Bytes>,
    bytes: usize,
    finish: bool,
}

struct Conn {
    inner: quinn_proto::Connection,
    role: Role,
    control: Option<StreamId>,
    hello: Vec<u8>,
    /// The deadline pushed on the timer heap for it, if any.
    timeout: Option<Instant>,
    dirty: bool,
    /// On a publisher: each incoming stream's copies.
    copies: HashMap<StreamId, Vec<Replica>>,
    /// On a subscriber: bytes waiting per outgoing stream.
    pending: HashMap<StreamId, Pending>,
}

impl Conn {
    /// Put connection `ch` (this one) on the list of those to drive this turn, once.
    fn mark(&mut self, ch: usize, dirty: &mut Vec<usize>) {
        if !self.dirty {
            self.dirty = true;
            dirty.push(ch);
        }
    }
}

struct Engine {
    endpoint: Endpoint,
    conns: Vec<Option<Conn>>,
    rooms: HashMap<u32, Vec<usize>>,
    next_priority: i32,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    dirty: Vec<usize>,
    out: Outbox,
    scratch: Vec<u8>,
    /// The chunks one read of a stream took, kept for their allocation.
    read: Vec<Bytes>,
    max_segments: usize,
}

impl Engine {
    fn next_deadline(&mut self) -> Option<Instant> {
        // Drop entries that no longer match their connection's deadline.
        while let Some(Reverse((at, ch))) = self.timers.peek().copied() {
            let live = self
                .conns
                .get(ch)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.timeout == Some(at));
            if live {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    fn mark(&mut self, ch: usize) {
        if let Some(Some(conn)) = self.conns.get_mut(ch) {
            conn.mark(ch, &mut self.dirty);
        }
    }

    fn handle_packet(&mut self, now: Instant, meta: &RecvMeta, segment: &[u8]) {
        let ecn = meta.ecn.and_then(|e| EcnCodepoint::from_bits(e as u8));
        self.scratch.clear();
        let event = self.endpoint.handle(
            now,
            meta.addr,
            meta.dst_ip,
            ecn,
            BytesMut::from(segment),
            &mut self.scratch,
        );
        match event {
            Some(DatagramEvent::ConnectionEvent(ch, event)) => {
                if let Some(Some(conn)) = self.conns.get_mut(ch.0) {
                    conn.inner.handle_event(event);
                    conn.mark(ch.0, &mut self.dirty);
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                self.scratch.clear();
                match self.endpoint.accept(incoming, now, &mut self.scratch, None) {
                    Ok((ch, inner)) => {
                        if self.conns.len() <= ch.0 {
                            self.conns.resize_with(ch.0 + 1, || None);
                        }
                        self.conns[ch.0] = Some(Conn {
                            inner,
                            role: Role::Unknown,
                            control: None,
                            hello: Vec::new(),
                            timeout: None,
                            dirty: false,
                            copies: HashMap::new(),
                            pending: HashMap::new(),
                        });
                        self.mark(ch.0);
                    }
                    Err(err) => {
                        if let Some(t) = err.response {
                            self.out.push(&t, &self.scratch[..t.size]);
                        }
                    }
                }
            }
            Some(DatagramEvent::Response(t)) => self.out.push(&t, &self.scratch[..t.size]),
            None => {}
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, ch))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(Some(conn)) = self.conns.get_mut(ch)
                && conn.timeout == Some(at)
            {
                conn.timeout = None;
                conn.inner.handle_timeout(now);
                self.mark(ch);
            }
        }
    }

    /// Run the application side of every connection that changed (which may change
    /// others: a fan-out), then build and queue their packets.
    fn run_turn(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.dirty.len() {
            let ch = self.dirty[i];
            self.app_events(ch);
            i += 1;
        }
        let dirty = std::mem::take(&mut self.dirty);
        for &ch in &dirty {
            self.drive(ch, now);
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    fn app_events(&mut self, ch: usize) {
        loop {
            let Some(Some(conn)) = self.conns.get_mut(ch) else {
                return;
            };
            let Some(event) = conn.inner.poll() else {
                return;
            };
            match event {
                Event::Stream(StreamEvent::Opened { dir: Dir::Bi }) => {
                    if let Some(id) = conn.inner.streams().accept(Dir::Bi) {
                        conn.control.get_or_insert(id);
                        self.read_hello(ch);
                    }
                }
                Event::Stream(StreamEvent::Opened { dir: Dir::Uni }) => {
                    let mut opened = Vec::new();
                    while let Some(id) = conn.inner.streams().accept(Dir::Uni) {
                        opened.push(id);
                    }
                    for id in opened {
                        self.open_copies(ch, id);
                        self.read_stream(ch, id);
                    }
                }
                Event::Stream(StreamEvent::Readable { id }) => {
                    if Some(id) == conn.control {
                        self.read_hello(ch);
                    } else {
                        self.read_stream(ch, id);
                    }
                }
                Event::Stream(StreamEvent::Writable { id }) => self.write_pending(ch, id),
                Event::Stream(StreamEvent::Stopped { id, .. }) => {
                    conn.pending.remove(&id);
                }
                Event::DatagramReceived => self.fan_out_datagrams(ch),
                Event::ConnectionLost { .. } => self.leave(ch),
                Event::HandshakeDataReady
                | Event::Connected
                | Event::DatagramsUnblocked
                | Event::Stream(StreamEvent::Finished { .. } | StreamEvent::Available { .. }) => {}
            }
        }
    }

    fn read_hello(&mut self, ch: usize) {
        let Some(Some(conn)) = self.conns.get_mut(ch) else {
            return;
        };
        let Some(id) = conn.control else { return };
        if conn.role != Role::Unknown {
            return;
        }
        let mut stream = conn.inner.recv_stream(id);
        if let Ok(mut chunks) = stream.read(true) {
            while conn.hello.len() < HELLO_LEN {
                match chunks.next(HELLO_LEN - conn.hello.len()) {
                    Ok(Some(chunk)) => conn.hello.extend_from_slice(&chunk.bytes),
                    _ => break,
                }
            }
            let _ = chunks.finalize();
        }
        let Ok(hello) = <[u8; HELLO_LEN]>::try_from(conn.hello.as_slice()) else {
            return;
        };
        let (publisher, room) = forwarder::parse_hello(hello);
        let _ = conn.inner.send_stream(id).write(&[1]);
        if publisher {
            conn.role = Role::Publisher(room);
        } else {
            conn.role = Role::Subscriber(room);
            self.rooms.entry(room).or_default().push(ch);
        }
    }

    /// A connection is gone: out of its room, and the copies of its streams end (as the
    /// baseline's copies end when their source stream fails).
    fn leave(&mut self, ch: usize) {
        let Some(Some(conn)) = self.conns.get_mut(ch) else {
            return;
        };
        let copies = std::mem::take(&mut conn.copies);
        if let Role::Subscriber(room) = conn.role
            && let Some(list) = self.rooms.get_mut(&room)
        {
            list.retain(|&c| c != ch);
        }
        for replica in copies.into_values().flatten() {
            if let Some(Some(s)) = self.conns.get_mut(replica.subscriber)
                && let Some(pending) = s.pending.get_mut(&replica.stream)
            {
                pending.finish = true;
            }
            self.write_pending(replica.subscriber, replica.stream);
        }
    }

    fn fan_out_datagrams(&mut self, ch: usize) {
        let Some(Some(conn)) = self.conns.get_mut(ch) else {
            return;
        };
        let Role::Publisher(room) = conn.role else {
            // Datagrams of anyone else are read and dropped.
            while conn.inner.datagrams().recv().is_some() {}
            return;
        };
        while let Some(datagram) = self.conns[ch]
            .as_mut()
            .and_then(|c| c.inner.datagrams().recv())
        {
            let Some(subscribers) = self.rooms.get(&room) else {
                continue;
            };
            for &sub in subscribers {
                if let Some(Some(s)) = self.conns.get_mut(sub) {
                    let _ = s.inner.datagrams().send(datagram.clone(), true);
                    s.mark(sub, &mut self.dirty);
                }
            }
        }
    }

    fn open_copies(&mut self, ch: usize, id: StreamId) {
        let Some(Some(conn)) = self.conns.get(ch) else {
            return;
        };
        let Role::Publisher(room) = conn.role else {
            return;
        };
        let priority = self.next_priority;
        self.next_priority = self.next_priority.wrapping_add(1);
        let mut copies = Vec::new();
        for &sub in self.rooms.get(&room).map_or(&[][..], Vec::as_slice) {
            let Some(Some(s)) = self.conns.get_mut(sub) else {
                continue;
            };
            let Some(stream) = s.inner.streams().open(Dir::Uni) else {
                continue;
            };
            let _ = s.inner.send_stream(stream).set_priority(priority);
            s.pending.insert(stream, Pending::default());
            copies.push(Replica {
                subscriber: sub,
                stream,
            });
        }
        if let Some(Some(conn)) = self.conns.get_mut(ch) {
            conn.copies.insert(id, copies);
        }
    }

    fn read_stream(&mut self, ch: usize, id: StreamId) {
        let mut read = std::mem::take(&mut self.read);
        let mut ended = false;
        let copies = {
            let Some(Some(conn)) = self.conns.get_mut(ch) else {
                return;
            };
            let mut stream = conn.inner.recv_stream(id);
            let Ok(mut chunks) = stream.read(true) else {
                return;
            };
            loop {
                match chunks.next(READ_CHUNK) {
                    Ok(Some(chunk)) => read.push(chunk.bytes),
                    Err(quinn_proto::ReadError::Blocked) => break,
                    Ok(None) | Err(quinn_proto::ReadError::Reset(_)) => {
                        ended = true;
                        break;
                    }
                }
            }
            if chunks.finalize().should_transmit() {
                conn.mark(ch, &mut self.dirty);
            }
            // Taken out while the subscribers' sides are written; put back unless ended.
            conn.copies.remove(&id)
        };
        let Some(mut copies) = copies else {
            // Not a stream the forwarder copies (none opened for it).
            read.clear();
            self.read = read;
            return;
        };
        let mut i = 0;
        while let Some(&copy) = copies.get(i) {
            let mut stale = false;
            if let Some(Some(s)) = self.conns.get_mut(copy.subscriber)
                && let Some(pending) = s.pending.get_mut(&copy.stream)
            {
                for chunk in &read {
                    pending.bytes += chunk.len();
                    pending.chunks.push_back(chunk.clone());
                }
                if pending.bytes > STREAM_QUEUE_BYTES {
                    // Behind on this stream: its copy is reset, as the relay resets a stale
                    // group.
                    s.pending.remove(&copy.stream);
                    let _ = s.inner.send_stream(copy.stream).reset(VarInt::from_u32(
                        sealroom_frame::StreamCode::StaleGroup.code(),
                    ));
                    stale = true;
                } else if ended {
                    pending.finish = true;
                }
                self.write_pending(copy.subscriber, copy.stream);
            }
            if stale {
                copies.swap_remove(i);
            } else {
                i += 1;
            }
        }
        if !ended && let Some(Some(conn)) = self.conns.get_mut(ch) {
            conn.copies.insert(id, copies);
        }
        read.clear();
        self.read = read;
    }

    /// Write what waits on a subscriber's stream, as far as QUIC takes it.
    fn write_pending(&mut self, ch: usize, id: StreamId) {
        let Some(Some(s)) = self.conns.get_mut(ch) else {
            return;
        };
        let Some(pending) = s.pending.get_mut(&id) else {
            return;
        };
        if !pending.chunks.is_empty() {
            // Handed over without a copy, as quinn's `write_chunk` does.
            match s
                .inner
                .send_stream(id)
                .write_chunks(pending.chunks.make_contiguous())
            {
                Ok(written) => {
                    pending.bytes -= written.bytes;
                    pending.chunks.drain(..written.chunks);
                }
                Err(quinn_proto::WriteError::Blocked) => {}
                Err(_) => {
                    s.pending.remove(&id);
                    return;
                }
            }
        }
        if pending.chunks.is_empty() && pending.finish {
            let _ = s.inner.send_stream(id).finish();
            s.pending.remove(&id);
        }
        s.mark(ch, &mut self.dirty);
    }

    /// Pass on endpoint events, queue the connection's packets, rearm its timer, and forget
    /// it once drained.
    fn drive(&mut self, ch: usize, now: Instant) {
        let Some(Some(conn)) = self.conns.get_mut(ch) else {
            return;
        };
        conn.dirty = false;
        while let Some(event) = conn.inner.poll_endpoint_events() {
            if let Some(back) = self.endpoint.handle_event(ConnectionHandle(ch), event) {
                conn.inner.handle_event(back);
            }
        }
        let mut transmits = 0;
        while transmits < MAX_TRANSMITS_PER_TURN {
            self.scratch.clear();
            let Some(t) = conn
                .inner
                .poll_transmit(now, self.max_segments, &mut self.scratch)
            else {
                break;
            };
            transmits += t.segment_size.map_or(1, |s| t.size.div_ceil(s));
            self.out.push(&t, &self.scratch[..t.size]);
        }
        if transmits >= MAX_TRANSMITS_PER_TURN {
            // More to send: come back next turn, after the others.
            self.out.more.push(ch);
        }
        let timeout = conn.inner.poll_timeout();
        if timeout != conn.timeout {
            conn.timeout = timeout;
            if let Some(at) = timeout {
                self.timers.push(Reverse((at, ch)));
            }
        }
        if conn.inner.is_drained() {
            self.leave(ch);
            self.conns[ch] = None;
        }
    }
}

/// One packet (or GSO train) waiting in the outbox.
#[derive(Debug, Clone, Copy)]
struct Queued {
    destination: SocketAddr,
    ecn: Option<EcnCodepoint>,
    segment_size: Option<usize>,
    start: usize,
    len: usize,
}

impl Queued {
    /// One datagram to an IPv4 address: it can go in a `sendmmsg` run.
    fn batchable(&self) -> bool {
        self.segment_size.is_none_or(|s| self.len <= s)
            && matches!(self.destination, SocketAddr::V4(_))
    }
}

/// The packets of one turn, sent at its end.
struct Outbox {
    batch: bool,
    bytes: Vec<u8>,
    packets: Vec<Queued>,
    /// Connections with more to send than one turn allows.
    more: Vec<usize>,
}

impl Outbox {
    fn new(batch: bool) -> Self {
        Self {
            batch,
            bytes: Vec::with_capacity(1 << 20),
            packets: Vec::with_capacity(1024),
            more: Vec::new(),
        }
    }

    fn push(&mut self, t: &quinn_proto::Transmit, contents: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(contents);
        self.packets.push(Queued {
            destination: t.destination,
            ecn: t.ecn,
            segment_size: t.segment_size,
            start,
            len: contents.len(),
        });
    }

    async fn flush(
        &mut self,
        socket: &tokio::net::UdpSocket,
        state: &UdpSocketState,
    ) -> anyhow::Result<usize> {
        let mut done = 0;
        while done < self.packets.len() {
            let first = self.packets[done];
            let run = if self.batch {
                self.packets[done..]
                    .iter()
                    .take_while(|p| p.batchable())
                    .count()
            } else {
                0
            };
            let sent = if run > 1 {
                let packets = &self.packets[done..done + run];
                let bytes = &self.bytes;
                socket.try_io(Interest::WRITABLE, || send_many(socket, packets, bytes))
            } else {
                let transmit = UdpTransmit {
                    destination: first.destination,
                    ecn: first
                        .ecn
                        .and_then(|e| quinn::udp::EcnCodepoint::from_bits(e as u8)),
                    contents: &self.bytes[first.start..first.start + first.len],
                    segment_size: first.segment_size,
                    src_ip: None,
                };
                socket
                    .try_io(Interest::WRITABLE, || {
                        state.try_send(UdpSockRef::from(socket), &transmit)
                    })
                    .map(|()| 1)
            };
            match sent {
                Ok(0) => socket.writable().await?,
                Ok(n) => done += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    socket.writable().await?;
                }
                // Refused (an unreachable destination): dropped, as quinn's socket does;
                // loss recovery resends.
                Err(_) => done += 1,
            }
        }
        let sent = self.packets.len();
        self.packets.clear();
        self.bytes.clear();
        Ok(sent)
    }
}

/// One `sendmmsg` over packets to IPv4 destinations; how many the kernel took.
fn send_many(
    socket: &tokio::net::UdpSocket,
    packets: &[Queued],
    bytes: &[u8],
) -> io::Result<usize> {
    let slices: Vec<[IoSlice<'_>; 1]> = packets
        .iter()
        .map(|p| [IoSlice::new(&bytes[p.start..p.start + p.len])])
        .collect();
    let addrs: Vec<Option<SockaddrIn>> = packets
        .iter()
        .map(|p| match p.destination {
            SocketAddr::V4(a) => Some(SockaddrIn::from(a)),
            // Never: a run holds batchable packets only.
            SocketAddr::V6(_) => None,
        })
        .collect();
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(packets.len(), None);
    let results = sendmmsg(
        socket.as_raw_fd(),
        &mut headers,
        slices.iter(),
        &addrs,
        [],
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    Ok(results.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound() -> tokio::net::UdpSocket {
        let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        socket.set_nonblocking(true).expect("nonblocking");
        tokio::net::UdpSocket::from_std(socket).expect("tokio socket")
    }

    fn transmit(to: SocketAddr, size: usize) -> quinn_proto::Transmit {
        quinn_proto::Transmit {
            destination: to,
            ecn: None,
            size,
            segment_size: None,
            src_ip: None,
        }
    }

    /// Every packet of a turn reaches its destination, in the order queued for each, with
    /// the batch (`sendmmsg`) and without it (one send each).
    #[tokio::test]
    async fn a_turn_reaches_every_destination_in_order() {
        for batch in [false, true] {
            let sender = bound();
            let state = UdpSocketState::new(UdpSockRef::from(&sender)).expect("state");
            let receivers = [bound(), bound(), bound()];
            let mut out = Outbox::new(batch);
            for round in 0u8..4 {
                for (i, receiver) in receivers.iter().enumerate() {
                    let to = receiver.local_addr().expect("addr");
                    let payload = [round, i as u8, 7, 7];
                    out.push(&transmit(to, payload.len()), &payload);
                }
            }
            let sent = out.flush(&sender, &state).await.expect("flush");
            assert_eq!(sent, 12, "batch {batch}");
            assert!(out.packets.is_empty() && out.bytes.is_empty());
            for (i, receiver) in receivers.iter().enumerate() {
                for round in 0u8..4 {
                    let mut buf = [0u8; 16];
                    let n = tokio::time::timeout(Duration::from_secs(5), receiver.recv(&mut buf))
                        .await
                        .expect("a packet in time")
                        .expect("recv");
                    assert_eq!(&buf[..n], &[round, i as u8, 7, 7], "batch {batch}");
                }
            }
        }
    }

    /// A GSO train queued between single packets is sent whole, after the packets before it.
    #[tokio::test]
    async fn a_segmented_transmit_is_sent_whole_between_batched_packets() {
        let sender = bound();
        let state = UdpSocketState::new(UdpSockRef::from(&sender)).expect("state");
        let receiver = bound();
        let to = receiver.local_addr().expect("addr");
        let mut out = Outbox::new(true);
        out.push(&transmit(to, 3), &[1, 1, 1]);
        let mut train = transmit(to, 8);
        train.segment_size = Some(4);
        out.push(&train, &[2, 2, 2, 2, 3, 3, 3, 3]);
        out.push(&transmit(to, 3), &[4, 4, 4]);
        out.flush(&sender, &state).await.expect("flush");
        // The train arrives as two datagrams where the kernel segments it (GSO), as one
        // where it cannot; either way the bytes come in the order queued.
        let mut flat = Vec::new();
        while flat.len() < 14 {
            let mut buf = [0u8; 16];
            let n = tokio::time::timeout(Duration::from_secs(5), receiver.recv(&mut buf))
                .await
                .expect("a packet in time")
                .expect("recv");
            flat.extend_from_slice(&buf[..n]);
        }
        assert_eq!(flat, [1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4]);
    }
}
