//! A quinn client configuration that trusts exactly one relay certificate and speaks the
//! sealroom ALPN, for raw wire clients.

use std::sync::Arc;

use quinn::crypto::rustls::QuicClientConfig;

/// A client configuration trusting only `cert_der` (TLS 1.3, the sealroom ALPN) with
/// `transport`.
pub fn pinned_client_config(
    cert_der: &[u8],
    transport: quinn::TransportConfig,
) -> anyhow::Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(cert_der.to_vec()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![sealroom_frame::ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}
