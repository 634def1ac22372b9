//! Mutual authentication of node links with the cluster secret.
//!
//! Each side proves it knows the secret with an HMAC-SHA256 over a value both ends of this
//! very QUIC connection derive from its TLS session (a keying-material exporter, RFC 5705 /
//! RFC 8446 section 7.5), its role and its node index. A machine in the middle holds two
//! TLS sessions with different exporters, so a proof it relays from one is worthless on the
//! other; a node without the secret cannot make one. The certificates therefore need no
//! authority: each node presents a self-signed one and the proofs authenticate the link.

use aws_lc_rs::hmac;

/// The exporter label both ends use.
pub(crate) const EXPORTER_LABEL: &[u8] = b"EXPORTER-sealroom-cascade";

/// Bytes taken from the exporter.
pub(crate) const EXPORTER_LEN: usize = 32;

/// An HMAC-SHA256 tag.
pub(crate) type Proof = [u8; 32];

/// Which end of the link a proof speaks for, so a proof cannot be reflected back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The node that dialled.
    Dialer,
    /// The node that accepted.
    Acceptor,
}

impl Role {
    const fn byte(self) -> u8 {
        match self {
            Self::Dialer => b'd',
            Self::Acceptor => b'a',
        }
    }
}

fn message(role: Role, node: u16, exporter: &[u8; EXPORTER_LEN]) -> Vec<u8> {
    let mut message = Vec::with_capacity(24 + EXPORTER_LEN);
    message.extend_from_slice(b"sealroom cascade v1");
    message.push(role.byte());
    message.extend_from_slice(&node.to_be_bytes());
    message.extend_from_slice(exporter);
    message
}

/// The proof `node`, acting as `role` on the session with `exporter`, sends.
pub(crate) fn prove(secret: &[u8], role: Role, node: u16, exporter: &[u8; EXPORTER_LEN]) -> Proof {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, &message(role, node, exporter));
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Whether `proof` is what a holder of `secret` sends as `role` and `node` (compared in
/// constant time).
pub(crate) fn verify(
    secret: &[u8],
    role: Role,
    node: u16,
    exporter: &[u8; EXPORTER_LEN],
    proof: &Proof,
) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, &message(role, node, exporter), proof).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a cluster secret of some length";

    #[test]
    fn a_proof_holds_for_its_secret_role_node_and_session_only() {
        let exporter = [7u8; EXPORTER_LEN];
        let proof = prove(SECRET, Role::Dialer, 3, &exporter);
        assert!(verify(SECRET, Role::Dialer, 3, &exporter, &proof));
        assert!(!verify(
            b"another secret!!",
            Role::Dialer,
            3,
            &exporter,
            &proof
        ));
        assert!(!verify(SECRET, Role::Acceptor, 3, &exporter, &proof));
        assert!(!verify(SECRET, Role::Dialer, 4, &exporter, &proof));
        assert!(!verify(
            SECRET,
            Role::Dialer,
            3,
            &[8u8; EXPORTER_LEN],
            &proof
        ));
    }
}
