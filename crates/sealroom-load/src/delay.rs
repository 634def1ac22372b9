//! A round-trip time between the simulated clients and the server under test, on loopback:
//! every packet a client sends waits a fixed delay before it leaves (`--rtt-ms`). Loopback's
//! RTT is tens of microseconds, and QUIC behaves differently at a real path's RTT: a receiver
//! asked for fewer ACKs waits up to about one RTT (quinn caps the delay it asks for at the
//! larger of the RTT and 25 ms), so the ACK-frequency lever can only be measured with one.
//!
//! The delay is on the clients' sends only, so the server's packets reach a client at once
//! and the client's reply (an ACK, a frame) arrives one delay later: a round trip of the
//! delay, seen alike by the relay, the baseline and the one-loop forwarder. The line keeps
//! its packets in order (every packet waits the same delay) and holds at most
//! [`MAX_HELD_PACKETS`] of them; a packet past that is dropped and counted, as a full
//! link's queue would, and the count is printed at the end of the run.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Packets one client's delay line holds at most (a video publisher at 2.5 MB/s holds about
/// 110 packets per 60 ms of delay).
pub(crate) const MAX_HELD_PACKETS: usize = 8192;

/// Packets every delay line of this process dropped because it was full.
pub(crate) static DROPPED: AtomicU64 = AtomicU64::new(0);

/// One packet waiting for its time.
struct Held {
    due: Instant,
    destination: SocketAddr,
    ecn: Option<EcnCodepoint>,
    contents: Vec<u8>,
    segment_size: Option<usize>,
    src_ip: Option<IpAddr>,
}

/// A client socket whose sends leave `delay` after quinn hands them over.
pub(crate) struct DelaySocket {
    inner: Arc<dyn AsyncUdpSocket>,
    delay: Duration,
    line: Mutex<VecDeque<Held>>,
    ready: Notify,
}

impl fmt::Debug for DelaySocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelaySocket")
            .field("delay", &self.delay)
            .finish_non_exhaustive()
    }
}

impl DelaySocket {
    /// Wrap `inner` and start the task that sends what waited long enough; the task ends
    /// when quinn drops the socket.
    pub(crate) fn start(inner: Arc<dyn AsyncUdpSocket>, delay: Duration) -> Arc<Self> {
        let socket = Arc::new(Self {
            inner,
            delay,
            line: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
        });
        tokio::spawn(send_when_due(Arc::downgrade(&socket)));
        socket
    }

    fn line(&self) -> std::sync::MutexGuard<'_, VecDeque<Held>> {
        self.line
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Send each held packet of `socket` at its time, in order.
async fn send_when_due(socket: std::sync::Weak<DelaySocket>) {
    let mut poller = None;
    loop {
        let Some(live) = socket.upgrade() else { return };
        let head = live.line().front().map(|held| held.due);
        match head {
            None => {
                let notified = live.ready.notified();
                // Checked again after registering, so a packet queued in between is seen.
                if live.line().is_empty() {
                    // Wake up now and then to notice that quinn dropped the socket.
                    let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
                }
                continue;
            }
            Some(due) if due > Instant::now() => {
                drop(live);
                tokio::time::sleep_until(due).await;
                continue;
            }
            Some(_) => {}
        }
        let Some(held) = live.line().pop_front() else {
            continue;
        };
        let transmit = Transmit {
            destination: held.destination,
            ecn: held.ecn,
            contents: &held.contents,
            segment_size: held.segment_size,
            src_ip: held.src_ip,
        };
        loop {
            match live.inner.try_send(&transmit) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let poller =
                        poller.get_or_insert_with(|| Arc::clone(&live.inner).create_io_poller());
                    if std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                // Sent, or refused by the kernel (QUIC's loss recovery deals with that, as
                // with quinn's own socket).
                _ => break,
            }
        }
    }
}

impl AsyncUdpSocket for DelaySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        // Queuing never blocks: quinn's sends are always accepted (or dropped when the
        // line is full), so the inner socket's writability is the delay task's business.
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let mut line = self.line();
        if line.len() >= MAX_HELD_PACKETS {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let was_empty = line.is_empty();
        line.push_back(Held {
            due: Instant::now() + self.delay,
            destination: transmit.destination,
            ecn: transmit.ecn,
            contents: transmit.contents.to_vec(),
            segment_size: transmit.segment_size,
            src_ip: transmit.src_ip,
        });
        drop(line);
        if was_empty {
            self.ready.notify_one();
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

/// The poller of a socket whose sends never block.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, UdpSocket};

    use super::*;

    /// Packets leave in order, none before its delay, all of them.
    #[tokio::test]
    async fn packets_leave_in_order_after_the_delay() {
        let receiver = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let to = receiver.local_addr().unwrap();
        let std_socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let runtime = quinn::default_runtime().unwrap();
        let inner = runtime.wrap_udp_socket(std_socket).unwrap();
        let delay = Duration::from_millis(40);
        let socket = DelaySocket::start(inner, delay);
        let start = std::time::Instant::now();
        for i in 0u8..20 {
            let contents = [i; 100];
            socket
                .try_send(&Transmit {
                    destination: to,
                    ecn: None,
                    contents: &contents,
                    segment_size: None,
                    src_ip: None,
                })
                .unwrap();
        }
        let mut buf = [0u8; 200];
        for i in 0u8..20 {
            let (len, _) = receiver.recv_from(&mut buf).await.unwrap();
            assert!(start.elapsed() >= delay, "packet {i} left before its delay");
            assert_eq!(&buf[..len], &[i; 100][..], "packet {i} out of order");
        }
    }
}
