//! The sending side: one [`Sealer`] per sending session, with its own random KID, a
//! monotonic CTR and a key usage limit.

use std::ops::Range;

use sealroom_frame::sframe::SframeHeader;

use crate::buffer::FrameBuffer;
use crate::context::KeyContext;
use crate::error::SealError;
use crate::schedule::{KeySchedule, SESSION_BITS, make_kid};

/// The default and largest per-key usage limit, in AES blocks: 2^36.
///
/// The CFRG AEAD limits draft (draft-irtf-cfrg-aead-limits, section 5.1.1) bounds the
/// confidentiality advantage against AES-GCM by `(s + q + 1)^2 / 2^129`, with `s` the
/// plaintext blocks and `q` the messages sealed under one key. Keeping `s + q` at or below
/// 2^36 holds that advantage at or below 2^-57, the target the draft and QUIC (RFC 9001
/// section 6.6) use; the same figure bounds the AES-CTR keystream of the CTR+HMAC suites.
/// It is about a terabyte of media per key: a sender meets it only after days of video.
pub const MAX_USAGE_BLOCKS: u64 = 1 << 36;

/// Settings of a [`Sealer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealerConfig {
    usage_limit: u64,
}

impl Default for SealerConfig {
    fn default() -> Self {
        Self {
            usage_limit: MAX_USAGE_BLOCKS,
        }
    }
}

impl SealerConfig {
    /// Lower the per-key usage limit (AES blocks plus one per frame); values above
    /// [`MAX_USAGE_BLOCKS`] are clamped to it.
    #[must_use]
    pub fn usage_limit(mut self, blocks: u64) -> Self {
        self.usage_limit = blocks.min(MAX_USAGE_BLOCKS);
        self
    }
}

/// Seals the frames of one sending session.
///
/// Each sealer draws its own random 60-bit session id when it is created and whenever it
/// rekeys or rotates, so its KID, and therefore its key, is its own: no member id a relay
/// hands out, no rejoin and no re-creation of the room can make two sealers share a key
/// except by a random collision (bounded in `docs/SECURITY.md`). Within one key the CTR
/// only counts up and the sealer refuses with [`SealError::RotationRequired`] before the
/// usage limit, so no (key, nonce) pair is ever used twice.
///
/// Use one sealer per published track (sealing takes `&mut self`); each is a separate
/// sending session with its own KID.
pub struct Sealer {
    schedule: KeySchedule,
    config: SealerConfig,
    epoch: u64,
    ctx: KeyContext,
    next_ctr: u64,
    used: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("suite", &self.schedule.suite())
            .field("epoch", &self.epoch)
            .field("kid", &format_args!("{:#x}", self.ctx.kid()))
            .field("next_ctr", &self.next_ctr)
            .finish_non_exhaustive()
    }
}

fn fresh_session() -> u64 {
    rand::random::<u64>() >> (64 - SESSION_BITS)
}

impl Sealer {
    /// A sealer for a new sending session in `epoch`, with a fresh random session id.
    pub fn new(schedule: &KeySchedule, epoch: u64, config: SealerConfig) -> Self {
        Self::with_session(schedule, epoch, config, fresh_session())
    }

    /// A sealer with a caller-chosen session id instead of a random one, for
    /// reproducible fuzzing and cross-implementation tests.
    ///
    /// Dangerous: two sealers with the same room secret, suite, epoch and session id share
    /// a key and start at the same CTR, so they reuse nonces, which breaks AES-GCM's
    /// confidentiality and integrity. Never use it for frames that leave the process.
    pub fn dangerous_with_session(
        schedule: &KeySchedule,
        epoch: u64,
        config: SealerConfig,
        session: u64,
    ) -> Self {
        Self::with_session(schedule, epoch, config, session)
    }

    pub(crate) fn with_session(
        schedule: &KeySchedule,
        epoch: u64,
        config: SealerConfig,
        session: u64,
    ) -> Self {
        let kid = make_kid(epoch, session);
        Self {
            schedule: schedule.clone(),
            config,
            epoch,
            ctx: schedule.key_context(epoch, kid),
            next_ctr: 0,
            used: 0,
        }
    }

    /// The KID frames are sealed under now.
    pub fn kid(&self) -> u64 {
        self.ctx.kid()
    }

    /// The epoch frames are sealed in now.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The CTR the next frame will carry.
    pub fn next_ctr(&self) -> u64 {
        self.next_ctr
    }

    /// Length of the SFrame ciphertext the next frame of `plaintext_len` bytes will have
    /// (header, ciphertext and tag): what an envelope's payload length must say.
    pub fn sealed_len(&self, plaintext_len: usize) -> usize {
        self.ctx.sealed_len(self.next_ctr, plaintext_len)
    }

    /// Headroom [`Self::seal_in_place`] needs before the plaintext for the next frame.
    pub fn header_len(&self) -> usize {
        SframeHeader::new(self.ctx.kid(), self.next_ctr).encoded_len()
    }

    /// Take the next CTR for a `plaintext_len`-byte frame, or refuse at the usage limit.
    /// The CTR is consumed even if sealing later fails, so it is never reused.
    fn take_ctr(&mut self, plaintext_len: usize) -> Result<u64, SealError> {
        let blocks = (plaintext_len as u64).div_ceil(16) + 1;
        let used = self.used.saturating_add(blocks);
        if used > self.config.usage_limit || self.next_ctr == u64::MAX {
            return Err(SealError::RotationRequired);
        }
        self.used = used;
        let ctr = self.next_ctr;
        self.next_ctr += 1;
        Ok(ctr)
    }

    /// Append the SFrame ciphertext of `plaintext` to `out`, authenticating `metadata`
    /// (for sealroom frames: `Envelope::metadata()`). Returns the range of `out` written.
    ///
    /// # Errors
    /// [`SealError::RotationRequired`] at the usage limit (nothing written);
    /// [`SealError::TooLong`] for plaintexts over [`MAX_PLAINTEXT_LEN`](crate::MAX_PLAINTEXT_LEN).
    pub fn seal<B: FrameBuffer>(
        &mut self,
        metadata: &[u8],
        plaintext: &[u8],
        out: &mut B,
    ) -> Result<Range<usize>, SealError> {
        if plaintext.len() > crate::MAX_PLAINTEXT_LEN {
            return Err(SealError::TooLong {
                len: plaintext.len(),
                max: crate::MAX_PLAINTEXT_LEN,
            });
        }
        let ctr = self.take_ctr(plaintext.len())?;
        self.ctx.seal(ctr, metadata, plaintext, out)
    }

    /// Seal `buf[plaintext_at..]` in place: the header goes just before the plaintext
    /// (keep [`SframeHeader::MAX_LEN`] bytes of headroom, or [`Self::header_len`]), the
    /// tag is appended. Returns the offset where the SFrame ciphertext starts; it runs to
    /// the end of `buf`. No allocation when `buf` has capacity for the tag.
    ///
    /// # Errors
    /// [`SealError::RotationRequired`] at the usage limit; [`SealError::NoHeadroom`],
    /// [`SealError::OutOfBounds`], [`SealError::TooLong`] for bad arguments. Nothing is
    /// changed in `buf` on these errors.
    pub fn seal_in_place<B: FrameBuffer>(
        &mut self,
        metadata: &[u8],
        buf: &mut B,
        plaintext_at: usize,
    ) -> Result<usize, SealError> {
        let len = buf.len();
        let Some(plaintext_len) = len.checked_sub(plaintext_at) else {
            return Err(SealError::OutOfBounds {
                at: plaintext_at,
                len,
            });
        };
        let header = SframeHeader::new(self.ctx.kid(), self.next_ctr).encode_array();
        let Some(start) = plaintext_at.checked_sub(header.len()) else {
            return Err(SealError::NoHeadroom {
                needed: header.len(),
                have: plaintext_at,
            });
        };
        if plaintext_len > crate::MAX_PLAINTEXT_LEN {
            return Err(SealError::TooLong {
                len: plaintext_len,
                max: crate::MAX_PLAINTEXT_LEN,
            });
        }
        let ctr = self.take_ctr(plaintext_len)?;
        self.ctx.seal_encoded(ctr, &header, metadata, buf, start)
    }

    /// Start a new sending session in the same epoch: a fresh random session id, so a new
    /// KID and key, and the CTR back at zero. The answer to
    /// [`SealError::RotationRequired`].
    pub fn rekey(&mut self) {
        self.move_to(self.epoch);
    }

    /// Move to `epoch` with a fresh random session id (a new KID and key, CTR at zero).
    pub fn rotate(&mut self, epoch: u64) {
        self.move_to(epoch);
    }

    fn move_to(&mut self, epoch: u64) {
        let next = Self::with_session(&self.schedule, epoch, self.config, fresh_session());
        *self = next;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::{Backend, CipherSuite, RoomSecret};

    fn schedule() -> KeySchedule {
        KeySchedule::with_backend(
            &RoomSecret::from_bytes([3; 32]),
            CipherSuite::Aes128GcmSha256,
            Backend::RustCrypto,
        )
    }

    /// (key, nonce) of every frame a sealer would seal for CTRs `0..frames`.
    fn key_nonces(sealer: &Sealer, frames: u64) -> Vec<(Vec<u8>, [u8; 12])> {
        (0..frames)
            .map(|ctr| (sealer.ctx.test_key.to_vec(), sealer.ctx.nonce(ctr)))
            .collect()
    }

    #[test]
    fn two_sessions_of_one_user_in_one_epoch_never_share_a_key_nonce() {
        // Same secret, same epoch, same user rejoining: the relay may even hand out the
        // same member id both times; nothing of it enters the KID or the key.
        let schedule = schedule();
        let first = schedule.sealer(5);
        let second = schedule.sealer(5);
        assert_ne!(first.kid(), second.kid());
        let a: HashSet<_> = key_nonces(&first, 1000).into_iter().collect();
        let b: HashSet<_> = key_nonces(&second, 1000).into_iter().collect();
        assert_eq!(a.len(), 1000);
        assert!(a.is_disjoint(&b));
    }

    #[test]
    fn many_sessions_and_a_recreated_room_get_distinct_keys() {
        let secret = RoomSecret::from_bytes([9; 32]);
        let mut kids = HashSet::new();
        let mut keys = HashSet::new();
        let mut salts = HashSet::new();
        // Three "room lifetimes" with the same secret, each with many joins.
        for _room in 0..3 {
            let schedule = KeySchedule::new(&secret, CipherSuite::Aes128GcmSha256);
            for _join in 0..700 {
                let sealer = schedule.sealer(0);
                assert!(kids.insert(sealer.kid()));
                assert!(keys.insert(sealer.ctx.test_key.to_vec()));
                assert!(salts.insert(sealer.ctx.nonce(0)));
            }
        }
    }

    #[test]
    fn ctr_is_monotonic_and_rekey_changes_the_key() {
        let schedule = schedule();
        let mut sealer = schedule.sealer(0);
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for _ in 0..100 {
            let ctr = sealer.next_ctr();
            let range = sealer.seal(b"meta", b"frame", &mut out).expect("seal");
            let (header, _) = SframeHeader::decode(&out[range]).expect("header");
            assert_eq!(header.ctr, ctr);
            assert!(seen.insert((header.kid, header.ctr)));
        }
        let old = (sealer.kid(), sealer.ctx.test_key.to_vec());
        sealer.rekey();
        assert_ne!(sealer.kid(), old.0);
        assert_ne!(sealer.ctx.test_key.to_vec(), old.1);
        assert_eq!(sealer.next_ctr(), 0);
        sealer.rotate(1);
        assert_eq!(sealer.epoch(), 1);
        assert_eq!(crate::kid_epoch_bits(sealer.kid()), 1);
    }

    #[test]
    fn usage_limit_refuses_instead_of_wrapping() {
        let schedule = schedule();
        // 10 frames of 16 bytes cost 2 blocks each.
        let mut sealer = Sealer::new(&schedule, 0, SealerConfig::default().usage_limit(20));
        let mut out = Vec::new();
        for _ in 0..10 {
            sealer
                .seal(b"", &[0; 16], &mut out)
                .expect("within the limit");
        }
        let len = out.len();
        assert_eq!(
            sealer.seal(b"", &[0; 16], &mut out),
            Err(SealError::RotationRequired)
        );
        assert_eq!(out.len(), len, "nothing written when refused");
        let mut buf = vec![0; 40];
        assert_eq!(
            sealer.seal_in_place(b"", &mut buf, 20),
            Err(SealError::RotationRequired)
        );
        sealer.rekey();
        sealer.seal(b"", &[0; 16], &mut out).expect("fresh key");
    }

    #[test]
    fn seal_in_place_checks_headroom_and_bounds() {
        let schedule = schedule();
        let mut sealer = schedule.sealer(0);
        let mut buf = vec![1u8; 10];
        let needed = sealer.header_len();
        assert_eq!(
            sealer.seal_in_place(b"", &mut buf, 2),
            Err(SealError::NoHeadroom { needed, have: 2 })
        );
        assert_eq!(
            sealer.seal_in_place(b"", &mut buf, 11),
            Err(SealError::OutOfBounds { at: 11, len: 10 })
        );
        assert_eq!(buf, vec![1u8; 10]);
        assert_eq!(sealer.next_ctr(), 0, "refused calls consume no ctr");
    }
}
