//! A UDP impairment proxy: loss, delay and jitter on the path between one client and a
//! relay, for tests that check what the client and the relay report against what was
//! injected.
//!
//! The kernels the tests run on do not always have the `netem` queueing discipline (nor
//! the right to make network namespaces), so the impairment is done here, in user space:
//! the client talks to the proxy's address, the proxy to the relay. Each datagram, in each
//! direction on its own, is dropped with probability `loss`, else sent on after
//! `delay` plus a uniform random extra delay in `[0, jitter]`. Like netem with jitter,
//! datagrams may overtake each other. The random generator is seeded, so a test draws the
//! same losses every run (the timing, on a shared machine, still varies).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What happens to datagrams going one way.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// Probability that a datagram is dropped (0.0 to 1.0).
    pub loss: f64,
    /// Fixed delay added to every datagram.
    pub delay: Duration,
    /// Upper bound of a uniform random extra delay.
    pub jitter: Duration,
}

/// Datagrams counted by the proxy, one way.
#[derive(Debug, Default)]
pub struct Counts {
    /// Datagrams that arrived at the proxy.
    pub seen: AtomicU64,
    /// Datagrams the proxy dropped.
    pub dropped: AtomicU64,
}

/// A running proxy; dropping it stops it.
#[derive(Debug)]
pub struct ImpairProxy {
    addr: SocketAddr,
    /// Client to relay.
    pub up: Arc<Counts>,
    /// Relay to client.
    pub down: Arc<Counts>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ImpairProxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// SplitMix64: small, seeded, good enough to draw losses and delays.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl ImpairProxy {
    /// A proxy on 127.0.0.1 in front of `relay`, for one client: `up` applies to the
    /// client's datagrams, `down` to the relay's. `seed` fixes the random draws.
    ///
    /// # Errors
    /// When a socket cannot be bound.
    pub async fn start(
        relay: SocketAddr,
        up: Impairment,
        down: Impairment,
        seed: u64,
    ) -> std::io::Result<Self> {
        let front = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?);
        let back = Arc::new(UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?);
        back.connect(relay).await?;
        let addr = front.local_addr()?;
        let (client_tx, client_rx) = tokio::sync::watch::channel(None::<SocketAddr>);
        let up_counts = Arc::new(Counts::default());
        let down_counts = Arc::new(Counts::default());

        let upward = tokio::spawn({
            let (front, back, counts) = (front.clone(), back.clone(), up_counts.clone());
            async move {
                let mut rng = Rng(seed);
                let mut buf = vec![0u8; 65_536];
                while let Ok((len, from)) = front.recv_from(&mut buf).await {
                    client_tx.send_if_modified(|known| {
                        let changed = *known != Some(from);
                        *known = Some(from);
                        changed
                    });
                    let datagram = buf[..len].to_vec();
                    let back = back.clone();
                    forward(&mut rng, up, &counts, datagram, move |d| async move {
                        let _ = back.send(&d).await;
                    });
                }
            }
        });
        let downward = tokio::spawn({
            let counts = down_counts.clone();
            async move {
                let mut rng = Rng(seed ^ 0x5EED_D0E5_0000_0001);
                let mut buf = vec![0u8; 65_536];
                while let Ok(len) = back.recv(&mut buf).await {
                    let Some(client) = *client_rx.borrow() else {
                        continue;
                    };
                    let datagram = buf[..len].to_vec();
                    let front = front.clone();
                    forward(&mut rng, down, &counts, datagram, move |d| async move {
                        let _ = front.send_to(&d, client).await;
                    });
                }
            }
        });
        Ok(Self {
            addr,
            up: up_counts,
            down: down_counts,
            tasks: vec![upward, downward],
        })
    }

    /// The address the client connects to instead of the relay's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Drop the datagram or send it after its delay.
fn forward<F, Fut>(
    rng: &mut Rng,
    impairment: Impairment,
    counts: &Counts,
    datagram: Vec<u8>,
    send: F,
) where
    F: FnOnce(Vec<u8>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    counts.seen.fetch_add(1, Ordering::Relaxed);
    if rng.unit() < impairment.loss {
        counts.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let wait = impairment.delay + impairment.jitter.mul_f64(rng.unit());
    let at = tokio::time::Instant::now() + wait;
    tokio::spawn(async move {
        tokio::time::sleep_until(at).await;
        send(datagram).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_uniform_enough_to_draw_losses() {
        let mut rng = Rng(7);
        let n = 100_000;
        let below: usize = (0..n).filter(|_| rng.unit() < 0.1).count();
        let fraction = below as f64 / f64::from(n);
        assert!((fraction - 0.1).abs() < 0.005, "{fraction}");
        let mut same = Rng(7);
        let mut again = Rng(7);
        assert_eq!(same.next_u64(), again.next_u64(), "seeded");
    }

    #[tokio::test]
    async fn datagrams_are_dropped_as_configured_and_the_rest_arrive() -> anyhow::Result<()> {
        let echo = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let echo_addr = echo.local_addr()?;
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok((len, from)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&buf[..len], from).await;
            }
        });
        let lossy = Impairment {
            loss: 0.5,
            ..Impairment::default()
        };
        let proxy = ImpairProxy::start(echo_addr, lossy, Impairment::default(), 1).await?;
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        client.connect(proxy.addr()).await?;
        for i in 0..200u8 {
            client.send(&[i]).await?;
        }
        crate::poll_until(
            "the proxy has seen every datagram",
            || proxy.up.seen.load(Ordering::Relaxed) == 200,
            || format!("{:?}", proxy.up),
        )
        .await?;
        let dropped = proxy.up.dropped.load(Ordering::Relaxed);
        assert!((60..=140).contains(&dropped), "{dropped} of 200 at p = 0.5");
        // Every datagram not dropped comes back.
        let mut buf = [0u8; 64];
        for _ in 0..200 - dropped {
            tokio::time::timeout(crate::SAFETY, client.recv(&mut buf)).await??;
        }
        Ok(())
    }
}
