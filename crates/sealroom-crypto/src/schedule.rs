//! The room key schedule: from the room secret to epoch secrets to per-session base keys.
//!
//! ```text
//! room_prk     = HKDF-Extract(salt = "sealroom 1.0 room", ikm = room secret)        SHA-256
//! epoch_secret = HKDF-Expand(room_prk, "sealroom 1.0 epoch " || suite(2) || epoch(8), 32)
//! base_key     = HKDF-Expand(epoch_secret, "sealroom 1.0 sender " || kid(8), 32)
//! key, salt    = RFC 9605 derive_key_salt(kid, base_key)
//! ```
//!
//! A KID is 64 bits: the low [`EPOCH_BITS`] bits are the epoch modulo 16, the high 60 bits
//! a sending-session id the sender draws at random itself. The argument that no honest
//! sender ever reuses a (key, nonce) is in `docs/SECURITY.md`.

use zeroize::Zeroizing;

use crate::backend::{Backend, Prk, hkdf_expand, hkdf_extract};
use crate::context::KeyContext;
use crate::opener::{Opener, OpenerConfig};
use crate::sealer::{Sealer, SealerConfig};
use crate::suite::{CipherSuite, Hash};

/// Length of a room secret in bytes.
pub const ROOM_SECRET_LEN: usize = 32;

/// Bits of the KID that carry the epoch (modulo 2^4 = 16).
pub const EPOCH_BITS: u32 = 4;

/// Bits of the KID that carry the sender's random session id.
pub const SESSION_BITS: u32 = 64 - EPOCH_BITS;

const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;

const ROOM_SALT: &[u8] = b"sealroom 1.0 room";
const EPOCH_LABEL: &[u8] = b"sealroom 1.0 epoch ";
const SENDER_LABEL: &[u8] = b"sealroom 1.0 sender ";

/// The secret every member of a room holds: 32 random bytes the application distributes
/// out of band (the relay never sees it). Zeroized on drop; `Debug` prints no bytes.
#[derive(Clone)]
pub struct RoomSecret(Zeroizing<[u8; ROOM_SECRET_LEN]>);

impl RoomSecret {
    /// Draw a fresh secret from the operating system's CSPRNG (through `rand`'s thread
    /// generator, which is seeded and reseeded from it).
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; ROOM_SECRET_LEN]);
        rand::fill(&mut bytes[..]);
        Self(bytes)
    }

    /// Wrap secret bytes received from the application. The caller should zeroize its
    /// own copy.
    pub fn from_bytes(bytes: [u8; ROOM_SECRET_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes, for handing them to other members through the application's
    /// own secure channel. Never log or send them to a relay.
    pub fn expose(&self) -> &[u8; ROOM_SECRET_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for RoomSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomSecret(..)")
    }
}

/// Build a KID from an epoch and a session id (only the low [`SESSION_BITS`] bits of
/// `session` are used).
pub fn make_kid(epoch: u64, session: u64) -> u64 {
    (session << EPOCH_BITS) | (epoch & EPOCH_MASK)
}

/// The epoch bits of a KID (the epoch modulo 16).
pub fn kid_epoch_bits(kid: u64) -> u64 {
    kid & EPOCH_MASK
}

/// The sending-session id of a KID.
pub fn kid_session(kid: u64) -> u64 {
    kid >> EPOCH_BITS
}

/// Derives everything a room's members need from the room secret: sealers, openers and,
/// for interoperability and tests, raw key contexts. Cheap to clone; holds only the
/// extracted room key (zeroized on drop), never prints it.
#[derive(Clone)]
pub struct KeySchedule {
    suite: CipherSuite,
    backend: Backend,
    room_prk: Prk,
}

impl std::fmt::Debug for KeySchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySchedule")
            .field("suite", &self.suite)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl KeySchedule {
    /// The schedule of `secret` for `suite` with the default backend.
    pub fn new(secret: &RoomSecret, suite: CipherSuite) -> Self {
        Self::with_backend(secret, suite, Backend::default())
    }

    /// The schedule of `secret` for `suite` with a chosen backend. Every backend derives
    /// the same keys.
    pub fn with_backend(secret: &RoomSecret, suite: CipherSuite, backend: Backend) -> Self {
        let room_prk = hkdf_extract(backend, Hash::Sha256, ROOM_SALT, &secret.0[..]);
        Self {
            suite,
            backend,
            room_prk,
        }
    }

    /// The cipher suite.
    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The key context of `kid` in `epoch`. The KID's epoch bits should equal
    /// `epoch % 16`; [`Sealer`] and [`Opener`] guarantee that, this function does not.
    pub fn key_context(&self, epoch: u64, kid: u64) -> KeyContext {
        let mut epoch_info = [0u8; 10];
        epoch_info[..2].copy_from_slice(&self.suite.id().to_be_bytes());
        epoch_info[2..].copy_from_slice(&epoch.to_be_bytes());
        let mut epoch_secret = Zeroizing::new([0u8; 32]);
        hkdf_expand(
            self.backend,
            Hash::Sha256,
            self.room_prk.as_bytes(),
            &[EPOCH_LABEL, &epoch_info],
            &mut epoch_secret[..],
        );
        let mut base_key = Zeroizing::new([0u8; 32]);
        hkdf_expand(
            self.backend,
            Hash::Sha256,
            &epoch_secret[..],
            &[SENDER_LABEL, &kid.to_be_bytes()],
            &mut base_key[..],
        );
        KeyContext::derive_with(self.backend, self.suite, kid, &base_key[..])
    }

    /// A sealer for a new sending session in `epoch`, with a fresh random session id.
    pub fn sealer(&self, epoch: u64) -> Sealer {
        Sealer::new(self, epoch, SealerConfig::default())
    }

    /// An opener that accepts frames of `epoch` (and of the next one, for senders that
    /// rotate before it does).
    pub fn opener(&self, epoch: u64, config: OpenerConfig) -> Opener {
        Opener::new(self, epoch, config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_layout_round_trips() {
        let session = 0x0abc_def0_1234_5678;
        for epoch in [0, 1, 15, 16, 17, u64::MAX] {
            let kid = make_kid(epoch, session);
            assert_eq!(kid_epoch_bits(kid), epoch % 16);
            assert_eq!(kid_session(kid), session);
        }
    }

    #[test]
    fn keys_depend_on_secret_suite_epoch_and_kid_but_not_on_backend() {
        let secret = RoomSecret::from_bytes([7; 32]);
        let other = RoomSecret::from_bytes([8; 32]);
        let suite = CipherSuite::Aes128GcmSha256;
        let base = KeySchedule::with_backend(&secret, suite, Backend::RustCrypto);
        let key = |s: &KeySchedule, epoch, kid| s.key_context(epoch, kid).test_key.to_vec();
        let reference = key(&base, 3, make_kid(3, 42));
        for &backend in Backend::all() {
            let same = KeySchedule::with_backend(&secret, suite, backend);
            assert_eq!(key(&same, 3, make_kid(3, 42)), reference);
        }
        assert_ne!(
            key(&base, 19, make_kid(19, 42)),
            reference,
            "epoch 19 = 3 mod 16"
        );
        assert_ne!(key(&base, 3, make_kid(3, 43)), reference);
        let other = KeySchedule::with_backend(&other, suite, Backend::RustCrypto);
        assert_ne!(key(&other, 3, make_kid(3, 42)), reference);
        let suite5 =
            KeySchedule::with_backend(&secret, CipherSuite::Aes256GcmSha512, Backend::RustCrypto);
        assert_ne!(key(&suite5, 3, make_kid(3, 42))[..16], reference[..]);
    }

    #[test]
    fn debug_never_prints_secret_bytes() {
        let secret = RoomSecret::from_bytes([0xa5; 32]);
        let schedule = KeySchedule::new(&secret, CipherSuite::default());
        let ctx = schedule.key_context(0, make_kid(0, 1));
        let texts = [
            format!("{secret:?}"),
            format!("{schedule:?}"),
            format!("{ctx:?}"),
            format!("{:?}", schedule.sealer(0)),
            format!("{:?}", schedule.opener(0, OpenerConfig::default())),
        ];
        let key_hex: String = ctx.test_key.iter().map(|b| format!("{b:02x}")).collect();
        let key_dec = format!("{:?}", &ctx.test_key[..4]);
        for text in texts {
            assert!(!text.contains("165, 165, 165"), "{text}");
            assert!(!text.to_lowercase().contains("a5a5a5a5"), "{text}");
            assert!(!text.contains(&key_hex[..8]), "{text}");
            assert!(!text.contains(&key_dec[1..key_dec.len() - 1]), "{text}");
        }
    }
}
