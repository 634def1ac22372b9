//! The relay's TLS identity and the quinn server configuration built on it.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sealroom_frame::transport::ALPN;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Limits, TlsConfig};
use crate::transport::webtransport::{Flavour, H3_UNI_STREAMS, WEB_ALPN};

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The self-signed certificate could not be generated.
    #[error("could not generate a self-signed certificate: {0}")]
    SelfSigned(String),
    /// The certificate or key file could not be read or parsed.
    #[error("could not load {path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls or quinn refused the TLS configuration.
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    /// The UDP socket could not be bound.
    #[error("could not bind the QUIC endpoint: {0}")]
    Bind(#[from] std::io::Error),
    /// A limit is out of its range.
    #[error("invalid limits: {0}")]
    Limits(String),
}

/// A certificate chain and its key.
pub(crate) struct Identity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl Identity {
    pub(crate) fn load(tls: &TlsConfig) -> Result<Self, StartError> {
        match tls {
            TlsConfig::SelfSigned { names } => Self::self_signed(names),
            TlsConfig::Files { cert, key } => {
                let pem_error =
                    |path: &std::path::Path, err: &dyn std::fmt::Display| StartError::Pem {
                        path: path.display().to_string(),
                        reason: err.to_string(),
                    };
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|err| pem_error(cert, &err))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|err| pem_error(cert, &err))?;
                if chain.is_empty() {
                    return Err(pem_error(cert, &"no certificate in the file"));
                }
                let key = PrivateKeyDer::from_pem_file(key).map_err(|err| pem_error(key, &err))?;
                Ok(Self { chain, key })
            }
        }
    }

    /// The parameters and key of a generated certificate (see [`Self::self_signed`]).
    fn generate(names: &[String]) -> Result<(rcgen::Certificate, rcgen::KeyPair), StartError> {
        let failed = |err: rcgen::Error| StartError::SelfSigned(err.to_string());
        let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(failed)?;
        let now = time::OffsetDateTime::now_utc();
        // An hour of slack for a client clock a little behind; the whole period stays
        // under the browsers' 14 days.
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + SELF_SIGNED_VALIDITY;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
        let cert = params.self_signed(&key).map_err(failed)?;
        Ok((cert, key))
    }

    /// A fresh ECDSA P-256 certificate for `names`, valid from an hour ago for
    /// [`SELF_SIGNED_VALIDITY`]: what a browser accepts through `serverCertificateHashes`
    /// (ECDSA, at most 14 days in all).
    fn self_signed(names: &[String]) -> Result<Self, StartError> {
        let (cert, key) = Self::generate(names)?;
        Ok(Self {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        })
    }

    /// DER of the leaf certificate.
    pub(crate) fn leaf_der(&self) -> Vec<u8> {
        self.chain.first().map(|c| c.to_vec()).unwrap_or_default()
    }
}

/// A certificate and key like the ones a relay generates (ECDSA P-256, valid for
/// [`SELF_SIGNED_VALIDITY`]), as PEM text (certificate, private key), for a process that
/// restarts its relay with the same identity (`TlsConfig::Files`), as `sealroom demo --web`
/// does.
///
/// # Errors
/// [`StartError::SelfSigned`] when it cannot be generated.
pub fn self_signed_pem(names: &[String]) -> Result<(String, String), StartError> {
    let (cert, key) = Identity::generate(names)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// How long a generated (self-signed) certificate is valid after it is made. Browsers accept
/// a certificate pinned by its hash only when its whole validity is at most 14 days; with
/// the hour of slack before it, this is 13 days and an hour.
pub const SELF_SIGNED_VALIDITY: time::Duration = time::Duration::days(13);

/// A generated certificate is replaced this long after it was made: two days before it
/// expires, so a client that fetched the hash just before keeps a working pin for a while.
pub(crate) const SELF_SIGNED_ROTATE_AFTER: Duration = Duration::from_secs(11 * 24 * 3600);

/// The certificate the endpoint presents, and what it takes to make a new one.
pub(crate) struct Certificate {
    pub(crate) tls: TlsConfig,
    pub(crate) limits: Limits,
    pub(crate) der: RwLock<Vec<u8>>,
}

impl Certificate {
    pub(crate) fn der(&self) -> Vec<u8> {
        self.der
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Make a new identity and have `endpoint` present it to new connections; open
    /// connections keep theirs.
    pub(crate) fn rotate(&self, endpoint: &quinn::Endpoint) -> Result<[u8; 32], StartError> {
        let identity = Identity::load(&self.tls)?;
        let der = identity.leaf_der();
        endpoint.set_server_config(Some(server_config(identity, &self.limits)?));
        let hash = sha256(&der);
        *self
            .der
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = der;
        Ok(hash)
    }
}

pub(crate) fn sha256(der: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Replace a generated certificate before it expires, for as long as the relay runs.
pub(crate) async fn rotate_certificates(certificate: Arc<Certificate>, endpoint: quinn::Endpoint) {
    loop {
        tokio::time::sleep(SELF_SIGNED_ROTATE_AFTER).await;
        match certificate.rotate(&endpoint) {
            Ok(hash) => tracing::info!(
                cert_sha256 = %hex(&hash),
                "certificate rotated: new clients (and browsers' serverCertificateHashes) pin this hash"
            ),
            Err(err) => tracing::error!(%err, "could not rotate the certificate; it will expire"),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The quinn server configuration: TLS 1.3 only, ALPN `sealroom/1` for native clients and
/// `h3` for WebTransport (browsers), transport tuned to the limits.
pub(crate) fn server_config(
    identity: Identity,
    limits: &Limits,
) -> Result<quinn::ServerConfig, StartError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|err| StartError::Tls(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .map_err(|err| StartError::Tls(err.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec(), WEB_ALPN.to_vec()];
    tls.max_early_data_size = 0;
    // No session resumption: without 0-RTT it would only save a signature, and a browser that
    // resumes checks the new connection's stream limits against the old one's raised ones
    // (a connection starts with no media stream before `Join`), refusing the handshake.
    tls.send_tls13_tickets = 0;
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    let crypto = QuicServerConfig::try_from(tls).map_err(|err| StartError::Tls(err.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(pre_join_transport_config(limits)));
    // Handshakes not yet decided by the gate: the accept loop decides each at once, so a
    // short queue with little buffered data each is enough, and bounds what a flood holds.
    config.max_incoming(MAX_INCOMING);
    config.incoming_buffer_size(16 * 1024);
    config.incoming_buffer_size_total(MAX_INCOMING as u64 * 16 * 1024 / 4);
    Ok(config)
}

/// Handshakes quinn queues before the accept loop has decided them.
const MAX_INCOMING: usize = 1024;

/// The transport parameters a connection starts with, before it has joined: only the three
/// unidirectional streams HTTP/3 needs (browsers refuse a server that grants fewer, and the
/// parameters are sent before the ALPN says which protocol the connection speaks; the relay
/// reads no media stream before `Join`), and the whole connection may have at
/// most `pre_join_window_bytes` unread (enough for the largest `Join`). [`grant_joined`]
/// raises both once it joins.
fn pre_join_transport_config(limits: &Limits) -> TransportConfig {
    let mut transport = transport_config(limits);
    transport.ack_frequency_config(ack_frequency(limits));
    transport.max_concurrent_uni_streams(VarInt::from_u32(H3_UNI_STREAMS));
    // The connection window bounds every stream together; the per-stream window stays
    // a member's, since quinn cannot raise it for streams opened later.
    transport.receive_window(VarInt::from_u32(limits.pre_join_window_bytes));
    transport
}

/// What the relay asks of its clients' ACKs (`ack_eliciting_threshold`,
/// `max_ack_delay_ms`), or `None` to ask nothing. Not part of [`transport_config`], so that
/// the load generator's bare-quinn baseline stays stock quinn.
fn ack_frequency(limits: &Limits) -> Option<quinn::AckFrequencyConfig> {
    if limits.ack_eliciting_threshold == 0 {
        return None;
    }
    let mut config = quinn::AckFrequencyConfig::default();
    config
        .ack_eliciting_threshold(VarInt::from_u32(limits.ack_eliciting_threshold))
        .max_ack_delay(Some(Duration::from_millis(limits.max_ack_delay_ms)));
    Some(config)
}

/// `conn` has joined: grant it the stream credit of a member (and, for a WebTransport
/// session, HTTP/3's own streams on top).
pub(crate) fn grant_joined(conn: &quinn::Connection, limits: &Limits, flavour: Flavour) {
    conn.set_max_concurrent_uni_streams(VarInt::from_u32(
        limits
            .max_incoming_streams
            .saturating_add(flavour.extra_uni_streams()),
    ));
    conn.set_receive_window(VarInt::from_u32(connection_window(limits)));
}

/// The per-stream receive window of a member: a frame may be up to `max_frame_len` on a
/// stream; leave room for a few.
fn stream_window(limits: &Limits) -> u32 {
    let frame = u32::try_from(limits.max_frame_len).unwrap_or(u32::MAX);
    frame.saturating_mul(2).max(256 * 1024)
}

/// The connection receive window of a member.
fn connection_window(limits: &Limits) -> u32 {
    stream_window(limits).saturating_mul(8)
}

/// Transport parameters for relay connections (public so that the load generator's bare
/// quinn baseline runs with exactly the same ones).
pub fn transport_config(limits: &Limits) -> TransportConfig {
    let mut transport = TransportConfig::default();
    // One bidirectional stream: the control stream the client opens.
    transport.max_concurrent_bidi_streams(VarInt::from_u32(1));
    transport.max_concurrent_uni_streams(VarInt::from_u32(limits.max_incoming_streams));
    let idle = IdleTimeout::try_from(limits.idle_timeout().max(Duration::from_millis(100)))
        .unwrap_or(IdleTimeout::from(VarInt::from_u32(30_000)));
    transport.max_idle_timeout(Some(idle));
    if limits.keep_alive_ms > 0 {
        transport.keep_alive_interval(Some(limits.keep_alive()));
    }
    transport.stream_receive_window(VarInt::from_u32(stream_window(limits)));
    transport.receive_window(VarInt::from_u32(connection_window(limits)));
    // Outgoing: unacknowledged bytes per connection; the relay's own queues hold the rest,
    // where they are bounded and their drops counted.
    transport.send_window(4 * 1024 * 1024);
    transport.datagram_receive_buffer_size(Some(256 * 1024));
    transport.datagram_send_buffer_size(64 * 1024);
    transport
}

/// Receive and send buffer the relay asks for on its UDP socket. The kernel's default (about
/// 200 KiB) overflows under bursts of fan-out and ACKs; the kernel caps the request at
/// `net.core.rmem_max` / `wmem_max` (raise those on a busy node) and doubles it.
pub const UDP_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// A UDP socket bound to `listen` with [`UDP_SOCKET_BUFFER`] buffers (best effort: a smaller
/// grant is not an error). Returns the socket and the receive and send buffer sizes the
/// kernel granted. Public so that the load generator's bare quinn baseline binds exactly the
/// same way.
///
/// # Errors
/// The socket cannot be created or bound.
pub fn udp_socket(listen: SocketAddr) -> std::io::Result<(std::net::UdpSocket, usize, usize)> {
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    let _ = socket.set_recv_buffer_size(UDP_SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_SOCKET_BUFFER);
    socket.bind(&listen.into())?;
    let recv = socket.recv_buffer_size()?;
    let send = socket.send_buffer_size()?;
    Ok((socket.into(), recv, send))
}
