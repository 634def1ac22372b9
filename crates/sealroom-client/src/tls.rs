//! TLS for the QUIC connection to the relay: ALPN `sealroom/1`, TLS 1.3 only, and the
//! relay's identity checked by a certificate pin or by the system roots.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sealroom_frame::transport::ALPN;
use sha2::{Digest, Sha256};

use crate::config::Trust;

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// rustls refused the configuration or the platform verifier could not start.
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// QUIC refused the rustls configuration: it needs TLS 1.3 with an initial cipher
    /// suite (`TLS13_AES_128_GCM_SHA256`).
    #[error("quic tls configuration: no initial cipher suite found")]
    NoInitialCipherSuite,
}

/// The hash of the last certificate a pinned client refused, so that a failed handshake
/// can say which certificate the relay presented (the TLS error itself carries only an
/// alert code). One client has one pin; if it talks to several relays, a mismatch names
/// the latest refused certificate.
#[derive(Debug, Clone, Default)]
pub(crate) struct RefusedCert(Arc<Mutex<Option<[u8; 32]>>>);

impl RefusedCert {
    fn record(&self, hash: [u8; 32]) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hash);
    }

    /// The last refused certificate's hash, if any.
    pub(crate) fn last(&self) -> Option<[u8; 32]> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The quinn client configuration for `trust`, and where a pin mismatch is recorded.
pub(crate) fn quic_client_config(
    trust: &Trust,
) -> Result<(quinn::crypto::rustls::QuicClientConfig, RefusedCert), TlsSetupError> {
    let refused = RefusedCert::default();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let verifier: Arc<dyn ServerCertVerifier> = match trust {
        Trust::Pinned(pin) => Arc::new(PinnedCert {
            pin: *pin,
            provider,
            refused: refused.clone(),
        }),
        Trust::SystemRoots => Arc::new(rustls_platform_verifier::Verifier::new(provider)?),
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok((
        quinn::crypto::rustls::QuicClientConfig::try_from(config)
            .map_err(|_| TlsSetupError::NoInitialCipherSuite)?,
        refused,
    ))
}

/// SHA-256 of a certificate's DER encoding, the value a [`Trust::Pinned`] pin holds.
pub fn cert_sha256(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

/// Accepts exactly one leaf certificate, named by the SHA-256 of its DER; the handshake
/// signature is still verified against that certificate's key, so only the holder of the
/// pinned certificate's private key passes.
#[derive(Debug)]
struct PinnedCert {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
    refused: RefusedCert,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = cert_sha256(end_entity.as_ref());
        if presented == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            self.refused.record(presented);
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_accepts_only_the_pinned_certificate() {
        let verifier = PinnedCert {
            pin: cert_sha256(b"certificate one"),
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            refused: RefusedCert::default(),
        };
        let name = ServerName::try_from("localhost").expect("valid name");
        let now = UnixTime::now();
        let one = CertificateDer::from(b"certificate one".to_vec());
        let two = CertificateDer::from(b"certificate two".to_vec());
        assert!(
            verifier
                .verify_server_cert(&one, &[], &name, &[], now)
                .is_ok()
        );
        assert_eq!(verifier.refused.last(), None);
        assert!(
            verifier
                .verify_server_cert(&two, &[], &name, &[], now)
                .is_err()
        );
        assert_eq!(
            verifier.refused.last(),
            Some(cert_sha256(b"certificate two"))
        );
    }

    #[test]
    fn a_pin_builds_a_quic_config_without_any_system_roots() {
        // System roots are not asserted: a minimal machine may have no CA store, in which
        // case `Client::new` reports a TLS error rather than trusting nothing silently.
        assert!(quic_client_config(&Trust::Pinned([7; 32])).is_ok());
    }
}
