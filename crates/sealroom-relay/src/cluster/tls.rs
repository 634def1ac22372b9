//! TLS and transport settings of node links: a self-signed certificate per node, ALPN
//! [`LINK_ALPN`], TLS 1.3 only, and a client side that takes any certificate because the
//! link is authenticated by the cluster secret bound to the session (see `auth.rs`), never by
//! the certificate.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::wire::LINK_ALPN;
use crate::config::Limits;
use crate::tls::StartError;

/// The name in every node's link certificate (and the SNI a dialer sends).
pub(crate) const LINK_SERVER_NAME: &str = "sealroom-node";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The transport of a link: the members' settings, with a shorter idle timeout (a dead
/// node is noticed within `idle`) and no media stream before the link is authenticated.
fn link_transport(limits: &Limits, idle: Duration) -> TransportConfig {
    let mut transport = crate::tls::transport_config(limits);
    let idle = IdleTimeout::try_from(idle.max(Duration::from_millis(200)))
        .unwrap_or(IdleTimeout::from(VarInt::from_u32(5_000)));
    transport.max_idle_timeout(Some(idle));
    transport.keep_alive_interval(Some(Duration::from_millis(250)));
    transport
}

pub(crate) fn server_config(
    limits: &Limits,
    idle: Duration,
) -> Result<quinn::ServerConfig, StartError> {
    let certified = rcgen::generate_simple_self_signed(vec![LINK_SERVER_NAME.to_owned()])
        .map_err(|err| StartError::SelfSigned(err.to_string()))?;
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|err| StartError::Tls(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key.into())
        .map_err(|err| StartError::Tls(err.to_string()))?;
    tls.alpn_protocols = vec![LINK_ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls).map_err(|err| StartError::Tls(err.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = link_transport(limits, idle);
    transport.max_concurrent_uni_streams(VarInt::from_u32(0));
    config.transport_config(Arc::new(transport));
    config.max_incoming(64);
    Ok(config)
}

pub(crate) fn client_config(
    limits: &Limits,
    idle: Duration,
) -> Result<quinn::ClientConfig, StartError> {
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|err| StartError::Tls(err.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SessionBound(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![LINK_ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|err| StartError::Tls(err.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(link_transport(limits, idle)));
    Ok(config)
}

/// Takes any certificate (the link is authenticated by the session-bound proofs), but
/// still checks that the peer holds the key of the certificate it shows.
#[derive(Debug)]
struct SessionBound(Arc<CryptoProvider>);

impl ServerCertVerifier for SessionBound {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
