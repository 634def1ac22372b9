//! QUIC plumbing of the load generator: the certificate the servers under test present, the
//! client configuration that trusts it, and one UDP socket per simulated client with its
//! buffers set (a shared socket overflows its receive buffer and ruins the figures).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use socket2::{Domain, Protocol, Socket, Type};

use sealroom_frame::ALPN;

use crate::delay::DelaySocket;

/// The servers' certificate, written as PEM files both servers load.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) cert_path: PathBuf,
    pub(crate) key_path: PathBuf,
    cert_der: CertificateDer<'static>,
}

impl Identity {
    /// A fresh self-signed certificate for `localhost` and `127.0.0.1`, written into `dir`.
    pub(crate) fn generate(dir: &Path) -> anyhow::Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .context("cannot generate a certificate")?;
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        std::fs::write(&cert_path, certified.cert.pem())
            .with_context(|| format!("cannot write {}", cert_path.display()))?;
        std::fs::write(&key_path, certified.signing_key.serialize_pem())
            .with_context(|| format!("cannot write {}", key_path.display()))?;
        Ok(Self {
            cert_path,
            key_path,
            cert_der: certified.cert.der().clone(),
        })
    }

    /// The certificate's and the key's paths, as the servers' command lines take them.
    pub(crate) fn paths(&self) -> anyhow::Result<(&str, &str)> {
        let cert = self.cert_path.to_str().context("non-UTF-8 output path")?;
        let key = self.key_path.to_str().context("non-UTF-8 output path")?;
        Ok((cert, key))
    }

    /// SHA-256 of the certificate, for clients that pin it.
    pub(crate) fn cert_sha256(&self) -> [u8; 32] {
        sealroom_client::cert_sha256(&self.cert_der)
    }

    /// The quinn client configuration trusting only this certificate.
    pub(crate) fn client_config(&self) -> anyhow::Result<quinn::ClientConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone())?;
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(tls)?;
        Ok(quinn::ClientConfig::new(Arc::new(crypto)))
    }
}

/// A server configuration from PEM files, with the relay's transport parameters.
pub(crate) fn server_config(
    cert: &Path,
    key: &Path,
    transport: quinn::TransportConfig,
) -> anyhow::Result<quinn::ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// A UDP socket on `addr` with receive and send buffers of `buffer` bytes (the kernel caps
/// them at `net.core.rmem_max` / `wmem_max`); returns the socket and the sizes granted.
pub(crate) fn udp_socket(
    addr: SocketAddr,
    buffer: usize,
) -> anyhow::Result<(UdpSocket, usize, usize)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if buffer > 0 {
        // Best effort: a smaller grant is reported, not fatal.
        let _ = socket.set_recv_buffer_size(buffer);
        let _ = socket.set_send_buffer_size(buffer);
    }
    socket.bind(&addr.into())?;
    let recv = socket.recv_buffer_size()?;
    let send = socket.send_buffer_size()?;
    Ok((socket.into(), recv, send))
}

/// A client endpoint on its own loopback socket; with a non-zero `delay` every packet it
/// sends waits that long first (a round-trip time, see [`crate::delay`]).
pub(crate) fn client_endpoint(
    config: &quinn::ClientConfig,
    buffer: usize,
    delay: Duration,
) -> anyhow::Result<quinn::Endpoint> {
    let (socket, _, _) = udp_socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), buffer)?;
    let runtime = quinn::default_runtime().context("no async runtime for quinn")?;
    let socket = runtime.wrap_udp_socket(socket)?;
    let socket: Arc<dyn quinn::AsyncUdpSocket> = if delay.is_zero() {
        socket
    } else {
        DelaySocket::start(socket, delay)
    };
    let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        None,
        socket,
        runtime,
    )?;
    endpoint.set_default_client_config(config.clone());
    Ok(endpoint)
}
