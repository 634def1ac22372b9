//! Sends of many connections in one system call.
//!
//! quinn drives each connection on its own task and hands every packet it builds to the
//! endpoint's socket at once (`AsyncUdpSocket::try_send`), so a fan-out of one audio frame to
//! 50 receivers costs 50 `sendmsg` calls. [`BatchSocket`] sits between quinn and the UDP
//! socket: a single-packet send to an IPv4 destination is copied into a bounded batch and
//! returns at once; the batch goes to the kernel in one `sendmmsg` (through `nix`, no
//! `unsafe` here) when the tasks that the same wake-up made ready have run. Everything else
//! (several packets for one destination, which quinn already sends with GSO in one call,
//! IPv6) passes through to quinn's own socket, after the batch so that order is kept.
//!
//! Flush bound: a packet waits at most until the runtime has polled the tasks that were
//! ready when it was queued (the flusher yields once, which puts it behind them), or until
//! the batch holds `send_batch_packets` packets, whichever comes first; there is no timer.
//! The batch holds at most `send_batch_packets` packets (`Limits::send_batch_packets`);
//! while the kernel's send buffer is full, sends report `WouldBlock` to quinn, which waits
//! for the socket to become writable exactly as with its own socket.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, sendmmsg};
use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::Notify;

/// Packets in one batch at most, whatever the configuration asks (the kernel's own bound on
/// one `sendmmsg` is 1024).
pub(crate) const MAX_BATCH_PACKETS: usize = 1024;

/// The largest packet a batch takes; larger ones pass through (quinn never builds one on
/// a path whose MTU it has not probed, and 1500 bytes is Ethernet's).
const MAX_PACKET: usize = 1500;

/// The relay's QUIC endpoint on `socket`: with batches of `batch_packets` packets when that
/// is more than one, else on quinn's own socket.
pub(crate) fn endpoint(
    socket: std::net::UdpSocket,
    server_config: quinn::ServerConfig,
    runtime: Arc<dyn quinn::Runtime>,
    batch_packets: usize,
) -> io::Result<quinn::Endpoint> {
    let config = quinn::EndpointConfig::default();
    if batch_packets > 1 {
        let socket = BatchSocket::new(socket, &*runtime, batch_packets)?;
        quinn::Endpoint::new_with_abstract_socket(config, Some(server_config), socket, runtime)
    } else {
        quinn::Endpoint::new(config, Some(server_config), socket, runtime)
    }
}

/// A UDP socket for a quinn endpoint that gathers the single-packet sends of many
/// connections into one `sendmmsg`. See the module documentation for the flush bound.
pub(crate) struct BatchSocket {
    /// quinn's own socket for the runtime: receives (with `recvmmsg` and GRO), multi-packet
    /// sends (GSO) and the writability poller.
    inner: Arc<dyn AsyncUdpSocket>,
    /// The same socket, for the batched system call.
    fd: std::net::UdpSocket,
    /// The socket's local IPv4 address when it is bound to one: the source of packets for
    /// which quinn names none.
    local_v4: Option<Ipv4Addr>,
    batch: Mutex<Batch>,
    flush: Arc<Notify>,
    capacity: usize,
}

/// Packets waiting for the next `sendmmsg`, their bytes back to back.
struct Batch {
    bytes: Vec<u8>,
    packets: Vec<Queued>,
    /// The flusher task exits when it sees this (the socket is being dropped).
    closed: bool,
}

/// One queued packet.
#[derive(Clone, Copy)]
struct Queued {
    destination: SocketAddrV4,
    /// IP type-of-service byte: the ECN codepoint quinn asked for.
    tos: u8,
    source: Ipv4Addr,
    start: usize,
    len: usize,
}

/// What a flush left behind.
#[derive(Debug, PartialEq, Eq)]
enum Flushed {
    /// The batch is empty.
    All,
    /// The kernel's send buffer is full; the rest waits for writability.
    Blocked,
}

impl BatchSocket {
    /// Wrap `socket` (already bound) for quinn on the current tokio runtime, with batches
    /// of at most `max_packets` packets. Spawns the flusher task.
    pub(crate) fn new(
        socket: std::net::UdpSocket,
        runtime: &dyn quinn::Runtime,
        max_packets: usize,
    ) -> io::Result<Arc<Self>> {
        let fd = socket.try_clone()?;
        let local_v4 = match socket.local_addr()? {
            SocketAddr::V4(addr) if !addr.ip().is_unspecified() => Some(*addr.ip()),
            _ => None,
        };
        let inner = runtime.wrap_udp_socket(socket)?;
        let capacity = max_packets.clamp(1, MAX_BATCH_PACKETS);
        let socket = Arc::new(Self {
            inner,
            fd,
            local_v4,
            batch: Mutex::new(Batch {
                bytes: Vec::with_capacity(capacity * MAX_PACKET),
                packets: Vec::with_capacity(capacity),
                closed: false,
            }),
            flush: Arc::new(Notify::new()),
            capacity,
        });
        tokio::spawn(run_flusher(
            Arc::downgrade(&socket),
            Arc::clone(&socket.flush),
            Arc::clone(&socket.inner),
        ));
        Ok(socket)
    }

    /// The packet as a batch entry, or `None` when it must pass through.
    fn batchable(&self, transmit: &Transmit<'_>) -> Option<(SocketAddrV4, u8, Ipv4Addr)> {
        let SocketAddr::V4(destination) = transmit.destination else {
            return None;
        };
        let single = transmit
            .segment_size
            .is_none_or(|size| transmit.contents.len() <= size);
        if !single || transmit.contents.len() > MAX_PACKET || transmit.contents.is_empty() {
            return None;
        }
        let source = match (transmit.src_ip, self.local_v4) {
            (Some(IpAddr::V4(ip)), _) => ip,
            (None, Some(ip)) => ip,
            (Some(IpAddr::V6(_)), _) | (None, None) => return None,
        };
        let tos = transmit.ecn.map_or(0, |ecn| ecn as u8);
        Some((destination, tos, source))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Batch> {
        // A panic while holding the lock cannot leave the batch inconsistent in a way that
        // matters: at worst packets are lost, which QUIC recovers.
        self.batch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Send what is queued. Called by the flusher and when a batch is full.
    fn flush(&self) -> Flushed {
        let mut batch = self.lock();
        self.flush_locked(&mut batch)
    }

    fn flush_locked(&self, batch: &mut Batch) -> Flushed {
        let Batch { bytes, packets, .. } = batch;
        let mut done = 0;
        let mut outcome = Flushed::All;
        while done < packets.len() {
            // One system call per run of packets with the same control messages.
            let first = packets[done];
            let run = packets[done..]
                .iter()
                .take_while(|p| p.tos == first.tos && p.source == first.source)
                .count();
            let run_packets = &packets[done..done + run];
            let slices: Vec<[IoSlice<'_>; 1]> = run_packets
                .iter()
                .map(|p| [IoSlice::new(&bytes[p.start..p.start + p.len])])
                .collect();
            let addrs: Vec<Option<SockaddrIn>> = run_packets
                .iter()
                .map(|p| Some(SockaddrIn::from(p.destination)))
                .collect();
            let info = nix::libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: nix::libc::in_addr {
                    s_addr: u32::from(first.source).to_be(),
                },
                ipi_addr: nix::libc::in_addr { s_addr: 0 },
            };
            // Every message carries the same two control messages (type of service and
            // source address), so each one's control buffer is filled exactly. The headers
            // hold raw pointers (not `Send`), so they live for one call: a few allocations
            // per batch, none per packet.
            let mut headers = MultiHeaders::<SockaddrIn>::preallocate(
                run,
                Some(nix::cmsg_space!(u8, nix::libc::in_pktinfo)),
            );
            let tos = first.tos;
            let cmsgs = [
                ControlMessage::Ipv4Tos(&tos),
                ControlMessage::Ipv4PacketInfo(&info),
            ];
            let result = sendmmsg(
                self.fd.as_raw_fd(),
                &mut headers,
                slices.iter(),
                &addrs,
                cmsgs,
                MsgFlags::empty(),
            );
            match result {
                Ok(results) => {
                    let sent = results.count();
                    if sent == 0 {
                        outcome = Flushed::Blocked;
                        break;
                    }
                    done += sent;
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    // Offer the packet to quinn's own socket: the runtime learns from its
                    // `WouldBlock` that the socket is not writable, so the flusher's wait
                    // for writability really waits instead of spinning.
                    let transmit = Transmit {
                        destination: SocketAddr::V4(first.destination),
                        ecn: ecn_of(first.tos),
                        contents: &bytes[first.start..first.start + first.len],
                        segment_size: None,
                        src_ip: Some(IpAddr::V4(first.source)),
                    };
                    match self.inner.try_send(&transmit) {
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                            outcome = Flushed::Blocked;
                            break;
                        }
                        // Sent, or refused and dropped as quinn's socket does.
                        _ => done += 1,
                    }
                }
                Err(err) => {
                    // The first packet of the run was refused (an unreachable destination,
                    // say): like quinn's own socket, drop that packet, let QUIC's loss
                    // recovery deal with it, and send the rest.
                    tracing::debug!(%err, destination = %first.destination, "batched send failed");
                    done += 1;
                }
            }
        }
        if done == packets.len() {
            packets.clear();
            bytes.clear();
        } else if done > 0 {
            let offset = packets[done].start;
            packets.drain(..done);
            bytes.drain(..offset);
            for packet in packets.iter_mut() {
                packet.start -= offset;
            }
        }
        outcome
    }
}

/// The ECN codepoint of a type-of-service byte the batch stored.
fn ecn_of(tos: u8) -> Option<EcnCodepoint> {
    match tos & 0b11 {
        0b10 => Some(EcnCodepoint::Ect0),
        0b01 => Some(EcnCodepoint::Ect1),
        0b11 => Some(EcnCodepoint::Ce),
        _ => None,
    }
}

/// Sends the batch once the tasks ready with it have run; waits for writability when the
/// kernel's buffer is full. Ends when the socket is dropped.
async fn run_flusher(
    socket: Weak<BatchSocket>,
    flush: Arc<Notify>,
    inner: Arc<dyn AsyncUdpSocket>,
) {
    let mut writable = inner.create_io_poller();
    loop {
        flush.notified().await;
        // Behind the other connections the same fan-out woke, so that their packets join
        // this batch.
        tokio::task::yield_now().await;
        loop {
            let Some(socket) = socket.upgrade() else {
                return;
            };
            if socket.lock().closed {
                return;
            }
            if socket.flush() == Flushed::All {
                break;
            }
            drop(socket);
            if std::future::poll_fn(|cx| writable.as_mut().poll_writable(cx))
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

impl Drop for BatchSocket {
    fn drop(&mut self) {
        self.lock().closed = true;
        self.flush.notify_one();
    }
}

impl fmt::Debug for BatchSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchSocket")
            .field("inner", &self.inner)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl AsyncUdpSocket for BatchSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Arc::clone(&self.inner).create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let Some((destination, tos, source)) = self.batchable(transmit) else {
            // Keep the order of this connection's packets: what is queued goes first.
            let mut batch = self.lock();
            if !batch.packets.is_empty() && self.flush_locked(&mut batch) == Flushed::Blocked {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            drop(batch);
            return self.inner.try_send(transmit);
        };
        let mut batch = self.lock();
        if batch.packets.len() >= self.capacity && self.flush_locked(&mut batch) == Flushed::Blocked
        {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let was_empty = batch.packets.is_empty();
        let start = batch.bytes.len();
        batch.bytes.extend_from_slice(transmit.contents);
        batch.packets.push(Queued {
            destination,
            tos,
            source,
            start,
            len: transmit.contents.len(),
        });
        drop(batch);
        if was_empty {
            self.flush.notify_one();
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound() -> std::net::UdpSocket {
        std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind")
    }

    fn transmit<'a>(to: SocketAddr, contents: &'a [u8], ecn: Option<EcnCodepoint>) -> Transmit<'a> {
        Transmit {
            destination: to,
            ecn,
            contents,
            segment_size: None,
            src_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        }
    }

    /// Packets of several "connections" queued in one pass arrive, whole and each at its
    /// own destination, once the flusher has run; ECN marks are kept.
    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_reaches_every_destination() {
        let runtime = quinn::default_runtime().expect("runtime");
        let socket = BatchSocket::new(bound(), &*runtime, 64).expect("socket");
        let receivers: Vec<_> = (0..5).map(|_| bound()).collect();
        for (i, receiver) in receivers.iter().enumerate() {
            let to = receiver.local_addr().expect("addr");
            let ecn = (i % 2 == 0).then_some(EcnCodepoint::Ect0);
            let body = vec![u8::try_from(i).expect("small"); 100 + i];
            socket.try_send(&transmit(to, &body, ecn)).expect("queued");
        }
        assert_eq!(
            socket.lock().packets.len(),
            5,
            "nothing sent before the flush"
        );
        for receiver in &receivers {
            receiver
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .expect("timeout");
        }
        // Let the flusher run.
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        for (i, receiver) in receivers.iter().enumerate() {
            let mut buf = [0u8; 2048];
            let (len, from) = receiver.recv_from(&mut buf).expect("packet arrived");
            assert_eq!(len, 100 + i);
            assert!(buf[..len].iter().all(|&b| usize::from(b) == i));
            assert_eq!(from, socket.local_addr().expect("addr"));
        }
        assert!(socket.lock().packets.is_empty());
    }

    /// The type-of-service byte stored for a packet gives back the codepoint quinn asked for.
    #[test]
    fn ecn_survives_the_batch() {
        for ecn in [
            None,
            Some(EcnCodepoint::Ect0),
            Some(EcnCodepoint::Ect1),
            Some(EcnCodepoint::Ce),
        ] {
            assert_eq!(ecn_of(ecn.map_or(0, |ecn| ecn as u8)), ecn);
        }
    }

    /// A full batch is sent at once rather than growing: the batch never holds more than
    /// its configured number of packets.
    #[tokio::test(flavor = "current_thread")]
    async fn a_full_batch_is_flushed_inline() {
        let runtime = quinn::default_runtime().expect("runtime");
        let socket = BatchSocket::new(bound(), &*runtime, 4).expect("socket");
        let receiver = bound();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let to = receiver.local_addr().expect("addr");
        for n in 0..10u8 {
            socket
                .try_send(&transmit(to, &[n; 50], None))
                .expect("sent");
            assert!(socket.lock().packets.len() <= 4);
        }
        // Without yielding to the flusher, the first 8 are already out, in order.
        for n in 0..8u8 {
            let mut buf = [0u8; 100];
            let (len, _) = receiver.recv_from(&mut buf).expect("packet arrived");
            assert_eq!(&buf[..len], &[n; 50]);
        }
    }

    /// A send quinn segments (several packets for one destination) passes through after
    /// what is queued, so one connection's packets keep their order.
    #[tokio::test(flavor = "current_thread")]
    async fn a_segmented_send_passes_through_after_the_batch() {
        let runtime = quinn::default_runtime().expect("runtime");
        let socket = BatchSocket::new(bound(), &*runtime, 64).expect("socket");
        let receiver = bound();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let to = receiver.local_addr().expect("addr");
        socket
            .try_send(&transmit(to, &[1; 40], None))
            .expect("queued");
        let big = [2u8; 80];
        let segmented = Transmit {
            segment_size: Some(40),
            ..transmit(to, &big, None)
        };
        // quinn's own socket reports `WouldBlock` until the runtime has seen it writable;
        // quinn then waits on the poller, as here.
        let mut poller = Arc::clone(&socket).create_io_poller();
        loop {
            match socket.try_send(&segmented) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx))
                        .await
                        .expect("writable");
                }
                result => break result.expect("sent"),
            }
        }
        let mut buf = [0u8; 200];
        let (len, _) = receiver.recv_from(&mut buf).expect("first packet");
        assert_eq!(&buf[..len], &[1; 40], "the queued packet went first");
    }
}
