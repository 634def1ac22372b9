//! The five SFrame cipher suites of RFC 9605 section 4.5 and their sizes.

/// An SFrame cipher suite (RFC 9605 section 4.5): the AEAD and the hash for HKDF.
///
/// The default, [`CipherSuite::Aes128GcmSha256`], is the suite sealroom uses on the wire:
/// a full 128-bit tag and AES-128, which every modern CPU accelerates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u16)]
#[non_exhaustive]
pub enum CipherSuite {
    /// `AES_128_CTR_HMAC_SHA256_80` (0x0001): AES-128-CTR with an HMAC-SHA256 tag cut to 80 bits.
    Aes128CtrHmacSha256Tag80 = 1,
    /// `AES_128_CTR_HMAC_SHA256_64` (0x0002): as above with a 64-bit tag.
    Aes128CtrHmacSha256Tag64 = 2,
    /// `AES_128_CTR_HMAC_SHA256_32` (0x0003): as above with a 32-bit tag; a forger
    /// succeeds with probability 2^-32 per attempt, so keep it for links that need it.
    Aes128CtrHmacSha256Tag32 = 3,
    /// `AES_128_GCM_SHA256_128` (0x0004): AES-128-GCM with a 128-bit tag; the default.
    #[default]
    Aes128GcmSha256 = 4,
    /// `AES_256_GCM_SHA512_128` (0x0005): AES-256-GCM with a 128-bit tag, HKDF-SHA512.
    Aes256GcmSha512 = 5,
}

/// The hash function a suite uses for HKDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha256,
    Sha512,
}

impl CipherSuite {
    /// All five suites in identifier order.
    pub const ALL: [Self; 5] = [
        Self::Aes128CtrHmacSha256Tag80,
        Self::Aes128CtrHmacSha256Tag64,
        Self::Aes128CtrHmacSha256Tag32,
        Self::Aes128GcmSha256,
        Self::Aes256GcmSha512,
    ];

    /// The suite's two-byte identifier from the IANA registry.
    pub const fn id(self) -> u16 {
        self as u16
    }

    /// The suite with identifier `id`, if it is one of the five.
    pub const fn from_id(id: u16) -> Option<Self> {
        match id {
            1 => Some(Self::Aes128CtrHmacSha256Tag80),
            2 => Some(Self::Aes128CtrHmacSha256Tag64),
            3 => Some(Self::Aes128CtrHmacSha256Tag32),
            4 => Some(Self::Aes128GcmSha256),
            5 => Some(Self::Aes256GcmSha512),
            _ => None,
        }
    }

    /// `Nk`: the length of the derived `sframe_key` in bytes (for the CTR+HMAC suites the
    /// 16-byte encryption key followed by the 32-byte authentication key).
    pub const fn key_len(self) -> usize {
        match self {
            Self::Aes128CtrHmacSha256Tag80
            | Self::Aes128CtrHmacSha256Tag64
            | Self::Aes128CtrHmacSha256Tag32 => 48,
            Self::Aes128GcmSha256 => 16,
            Self::Aes256GcmSha512 => 32,
        }
    }

    /// `Nn`: the nonce (and salt) length in bytes, 12 for every suite.
    pub const fn nonce_len(self) -> usize {
        NONCE_LEN
    }

    /// `Nt`: the authentication tag length in bytes.
    pub const fn tag_len(self) -> usize {
        match self {
            Self::Aes128CtrHmacSha256Tag80 => 10,
            Self::Aes128CtrHmacSha256Tag64 => 8,
            Self::Aes128CtrHmacSha256Tag32 => 4,
            Self::Aes128GcmSha256 | Self::Aes256GcmSha512 => 16,
        }
    }

    /// Whether the suite is one of the AES-CTR with truncated HMAC suites (RFC 9605
    /// section 4.5.1).
    pub const fn is_ctr_hmac(self) -> bool {
        matches!(
            self,
            Self::Aes128CtrHmacSha256Tag80
                | Self::Aes128CtrHmacSha256Tag64
                | Self::Aes128CtrHmacSha256Tag32
        )
    }

    pub(crate) const fn hash(self) -> Hash {
        match self {
            Self::Aes256GcmSha512 => Hash::Sha512,
            _ => Hash::Sha256,
        }
    }
}

/// Nonce and salt length of every SFrame suite.
pub(crate) const NONCE_LEN: usize = 12;
/// Longest `sframe_key` of any suite.
pub(crate) const MAX_KEY_LEN: usize = 48;
/// Longest tag of any suite.
pub(crate) const MAX_TAG_LEN: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_refused() {
        for suite in CipherSuite::ALL {
            assert_eq!(CipherSuite::from_id(suite.id()), Some(suite));
        }
        assert_eq!(CipherSuite::from_id(0), None);
        assert_eq!(CipherSuite::from_id(6), None);
        assert_eq!(CipherSuite::default().id(), 4);
    }

    #[test]
    fn sizes_fit_the_fixed_buffers() {
        for suite in CipherSuite::ALL {
            assert!(suite.key_len() <= MAX_KEY_LEN);
            assert!(suite.tag_len() <= MAX_TAG_LEN);
        }
    }
}
