//! A flood of spoofed QUIC handshakes: real, well-formed client Initials (built by
//! quinn-proto, each with a fresh connection id and TLS ClientHello) sent from many
//! loopback source addresses (Linux routes all of 127.0.0.0/8 to loopback and lets a socket
//! bind any of them) by a sender that never answers, like an attacker spoofing sources.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use quinn::crypto::rustls::QuicClientConfig;

/// Sends spoofed Initials towards one relay.
pub(crate) struct Spoofer {
    endpoint: quinn_proto::Endpoint,
    config: quinn_proto::ClientConfig,
    sockets: Vec<UdpSocket>,
    buf: Vec<u8>,
    sent: u64,
}

impl Spoofer {
    /// A spoofer sending from `sources` addresses 127.(1..).x.y.
    pub(crate) fn new(sources: usize) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify))
            .with_no_client_auth();
        tls.alpn_protocols = vec![sealroom_frame::ALPN.to_vec()];
        let config = quinn_proto::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
        let mut sockets = Vec::with_capacity(sources);
        for i in 0..sources {
            let ip = Ipv4Addr::new(127, 10 + (i / 250) as u8, (i % 250) as u8 + 1, 7);
            let socket = UdpSocket::bind(SocketAddr::from((ip, 0)))
                .with_context(|| format!("bind {ip} (Linux loopback)"))?;
            sockets.push(socket);
        }
        Ok(Self {
            endpoint: Self::fresh_endpoint(),
            config,
            sockets,
            buf: Vec::with_capacity(1500),
            sent: 0,
        })
    }

    fn fresh_endpoint() -> quinn_proto::Endpoint {
        quinn_proto::Endpoint::new(
            Arc::new(quinn_proto::EndpointConfig::default()),
            None,
            false,
            None,
        )
    }

    /// Send one spoofed Initial to `target`.
    pub(crate) fn send(&mut self, target: SocketAddr) -> anyhow::Result<()> {
        if self.sent % 2000 == 1999 {
            // The sans-I/O endpoint remembers every connection it started; start afresh.
            self.endpoint = Self::fresh_endpoint();
        }
        let now = Instant::now();
        let (_, mut conn) = self
            .endpoint
            .connect(now, self.config.clone(), target, "localhost")
            .context("connect")?;
        self.buf.clear();
        if let Some(transmit) = conn.poll_transmit(now, 1, &mut self.buf) {
            let socket = &self.sockets[(self.sent as usize) % self.sockets.len()];
            // A full socket buffer just loses the packet, as on a real network.
            let _ = socket.send_to(&self.buf[..transmit.size], target);
        }
        self.sent += 1;
        Ok(())
    }

    /// Initials sent.
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }
}

/// Flood `target` at about `per_sec` Initials per second from `sources` addresses on a
/// thread of its own until `stop` is set; returns how many were sent.
pub(crate) fn flood(
    target: SocketAddr,
    per_sec: u64,
    sources: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    std::thread::spawn(move || {
        let mut spoofer = Spoofer::new(sources)?;
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let due = start.elapsed().as_secs_f64() * per_sec as f64;
            if (spoofer.sent() as f64) < due {
                spoofer.send(target)?;
                sent.store(spoofer.sent(), Ordering::Relaxed);
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        Ok(())
    })
}

/// The spoofer never finishes a handshake, so it never needs to check the certificate.
#[derive(Debug)]
struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
