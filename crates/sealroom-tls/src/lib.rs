//! TLS for the QUIC connection from a sealroom client (a member or the blind recorder) to a
//! relay: ALPN `sealroom/1`, TLS 1.3 only, and the relay's identity checked by a certificate
//! pin or by the system roots.
//!
//! Transport security only: nothing here touches frame content, so crates that must hold no
//! content key (the recorder) can link it.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sealroom_frame::transport::ALPN;
use sha2::{Digest, Sha256};

/// How a client decides that it is talking to the right relay.
#[derive(Clone, PartialEq, Eq)]
pub enum Trust {
    /// Accept exactly the relay certificate whose DER encoding has this SHA-256 hash.
    ///
    /// For development relays with self-signed certificates: `sealroom relay` prints the
    /// hash. The server name is not checked; the pin is the whole identity.
    Pinned([u8; 32]),
    /// Verify the relay certificate chain against the operating system's trust store and
    /// the server name given when connecting. Building the configuration fails with a TLS
    /// error on a machine with no trusted roots.
    SystemRoots,
}

impl Trust {
    /// A pin given as 64 hexadecimal digits (the form `sealroom relay` prints; colons and
    /// spaces between the digits are allowed).
    ///
    /// # Errors
    /// [`PinParseError`] when the text is not exactly 32 bytes of hex.
    pub fn pinned_hex(hex_digits: &str) -> Result<Self, PinParseError> {
        let digits: String = hex_digits
            .chars()
            .filter(|c| !matches!(c, ':' | ' '))
            .collect();
        let mut pin = [0u8; 32];
        hex::decode_to_slice(digits, &mut pin).map_err(|_| PinParseError)?;
        Ok(Self::Pinned(pin))
    }
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pinned(pin) => write!(f, "Pinned({})", hex::encode(pin)),
            Self::SystemRoots => f.write_str("SystemRoots"),
        }
    }
}

/// The text given as a certificate pin is not 64 hexadecimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a certificate pin is 64 hexadecimal digits (the SHA-256 of the certificate, as `sealroom relay` prints it)"
)]
pub struct PinParseError;

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
/// alert code). One configuration has one pin; if it talks to several relays, a mismatch
/// names the latest refused certificate.
#[derive(Debug, Clone, Default)]
pub struct RefusedCert(Arc<Mutex<Option<[u8; 32]>>>);

impl RefusedCert {
    fn record(&self, hash: [u8; 32]) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hash);
    }

    /// The last refused certificate's hash, if any.
    pub fn last(&self) -> Option<[u8; 32]> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The quinn client configuration for `trust` (ALPN `sealroom/1`, TLS 1.3 only), and where
/// a pin mismatch is recorded.
///
/// # Errors
/// [`TlsSetupError`] when rustls or the platform verifier refuses the configuration.
pub fn quic_client_config(
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
    fn pin_accepts_only_the_pinned_certificate_and_names_the_refused_one() {
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
        // case building the configuration reports a TLS error rather than trusting nothing.
        assert!(quic_client_config(&Trust::Pinned([7; 32])).is_ok());
    }

    #[test]
    fn pin_parses_from_hex_with_separators() {
        let text = "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:\
                    00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff";
        let Ok(Trust::Pinned(pin)) = Trust::pinned_hex(text) else {
            panic!("pin did not parse");
        };
        assert_eq!(pin[1], 0x11);
        assert_eq!(pin[31], 0xff);
        assert_eq!(
            format!("{:?}", Trust::Pinned(pin)),
            format!("Pinned({})", hex::encode(pin))
        );
    }

    #[test]
    fn pin_of_wrong_length_or_digits_is_refused() {
        assert_eq!(Trust::pinned_hex("abcd"), Err(PinParseError));
        assert_eq!(Trust::pinned_hex(&"zz".repeat(32)), Err(PinParseError));
    }
}
