//! SFrame keys of one MLS epoch, and the sealer and opener built on them.
//!
//! ```text
//! base_key         = MLS-Exporter("SFrame 1.0 Base Key", "", 32)       once per epoch
//! KID              = context || leaf index || epoch bits                (crate::kid)
//! key, salt        = RFC 9605 derive_key_salt(KID, base_key)            per sending session
//! ```
//!
//! Every member of an epoch exports the same base key, and the KID (which names the
//! sender's leaf and its context id) enters the key derivation, so each sending session
//! has its own key and salt. A member removed by a commit never learns the exporter
//! secret of the epochs after it (RFC 9420), so it can derive none of their keys.

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use sealroom_crypto::{
    CipherSuite, FrameBuffer, KeyContext, MAX_USAGE_BLOCKS, OpenError, ReplayWindow, SealError,
    SframeHeader,
};
use zeroize::Zeroizing;

use crate::kid::{EPOCH_BITS, MlsKid};

/// The exporter label of RFC 9605 section 5.2.
pub const EXPORTER_LABEL: &str = "SFrame 1.0 Base Key";

/// Length of the exported base key (the hash length of SHA-256).
pub const BASE_KEY_LEN: usize = 32;

/// The SFrame cipher suite of the MLS mode: AES-128-GCM with SHA-256 and a 128-bit tag,
/// matching the MLS ciphersuite MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519.
pub const SUITE: CipherSuite = CipherSuite::Aes128GcmSha256;

/// The base key of one epoch, exported from the MLS group. Zeroized on drop; `Debug`
/// shows the epoch only.
#[derive(Clone)]
pub struct EpochKeys {
    epoch: u64,
    base_key: Zeroizing<[u8; BASE_KEY_LEN]>,
}

impl std::fmt::Debug for EpochKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochKeys")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl EpochKeys {
    /// Wrap the exporter output of `epoch`.
    pub fn from_exported(epoch: u64, base_key: [u8; BASE_KEY_LEN]) -> Self {
        Self {
            epoch,
            base_key: Zeroizing::new(base_key),
        }
    }

    /// The MLS epoch these keys belong to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The base key bytes, for tests that prove they never leave the member (a relay tap
    /// that must not contain them). Never send or log them.
    pub fn dangerous_base_key(&self) -> &[u8] {
        &self.base_key[..]
    }

    /// The SFrame key context of `kid` under this epoch's base key.
    pub fn key_context(&self, kid: MlsKid) -> KeyContext {
        KeyContext::derive(SUITE, kid.to_u64(), &self.base_key[..])
    }

    /// A sealer for `leaf`'s sending session `context` in this epoch, or `None` when the
    /// leaf or context do not fit the KID.
    ///
    /// Two sealers with the same (epoch, leaf, context) share a key and would reuse
    /// nonces: a member must use each context id once per epoch (the client numbers its
    /// tracks).
    pub fn sealer(&self, leaf: u32, context: u64) -> Option<MlsSealer> {
        let kid = MlsKid::new(self.epoch, leaf, context)?;
        Some(MlsSealer {
            epoch: self.epoch,
            ctx: self.key_context(kid),
            next_ctr: 0,
            used: 0,
        })
    }
}

/// Seals one sending session's frames under an epoch key: the CTR counts up from 0 and
/// sealing stops before the key's usage limit.
pub struct MlsSealer {
    epoch: u64,
    ctx: KeyContext,
    next_ctr: u64,
    used: u64,
}

impl std::fmt::Debug for MlsSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlsSealer")
            .field("epoch", &self.epoch)
            .field("kid", &format_args!("{:#x}", self.ctx.kid()))
            .field("next_ctr", &self.next_ctr)
            .finish_non_exhaustive()
    }
}

impl MlsSealer {
    /// The epoch this sealer seals in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The KID of every frame it seals.
    pub fn kid(&self) -> u64 {
        self.ctx.kid()
    }

    /// Length of the SFrame ciphertext of the next `plaintext_len`-byte frame.
    pub fn sealed_len(&self, plaintext_len: usize) -> usize {
        self.ctx.sealed_len(self.next_ctr, plaintext_len)
    }

    /// Append the SFrame ciphertext of `plaintext` to `out`, authenticating `metadata`.
    ///
    /// # Errors
    /// [`SealError::RotationRequired`] at the usage limit (take a sealer with another
    /// context id); the other [`SealError`]s as [`KeyContext::seal`].
    pub fn seal<B: FrameBuffer>(
        &mut self,
        metadata: &[u8],
        plaintext: &[u8],
        out: &mut B,
    ) -> Result<Range<usize>, SealError> {
        let blocks = (plaintext.len() as u64).div_ceil(16) + 1;
        let used = self.used.saturating_add(blocks);
        if used > MAX_USAGE_BLOCKS || self.next_ctr == u64::MAX {
            return Err(SealError::RotationRequired);
        }
        let ctr = self.next_ctr;
        // The CTR is consumed before sealing, so a failed seal never hands it out twice.
        self.next_ctr += 1;
        self.used = used;
        self.ctx.seal(ctr, metadata, plaintext, out)
    }
}

/// What [`MlsOpener::open`] returns for an authentic frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlsOpened {
    /// The epoch the frame was sealed in.
    pub epoch: u64,
    /// The sender's leaf index (authenticated: only holders of the epoch's base key can
    /// seal under it, see the limits in `docs/SECURITY.md`).
    pub leaf: u32,
    /// The sender's context id.
    pub context: u64,
    /// The frame's CTR.
    pub ctr: u64,
    /// Where the plaintext lies in the output buffer.
    pub plaintext: Range<usize>,
}

/// Settings of an [`MlsOpener`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlsOpenerConfig {
    grace: Duration,
    max_senders: usize,
}

impl Default for MlsOpenerConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(2),
            max_senders: 4096,
        }
    }
}

impl MlsOpenerConfig {
    /// How long after an epoch change frames of the previous epoch still open (default
    /// 2 s): frames in flight when the commit lands are not lost, and a removed member's
    /// last frames still open for that long.
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Most sending sessions held at once across the current and previous epoch
    /// (default 4096, at least 1). Past it, a new session does not open
    /// ([`OpenError::UnknownKid`]) until an epoch change frees the table.
    #[must_use]
    pub fn max_senders(mut self, max: usize) -> Self {
        self.max_senders = max.max(1);
        self
    }
}

struct Session {
    ctx: KeyContext,
    epoch: u64,
    window: ReplayWindow,
}

/// Opens every member's frames for one receiving member: the current epoch, and the
/// previous one until its grace period ends. No clock inside: time is an argument.
///
/// A session's key is derived the first time one of its frames authenticates and kept
/// with a replay window; nothing is stored for a frame that does not authenticate.
pub struct MlsOpener {
    config: MlsOpenerConfig,
    current: EpochKeys,
    previous: Option<(EpochKeys, Instant)>,
    sessions: HashMap<u64, Session>,
}

impl std::fmt::Debug for MlsOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlsOpener")
            .field("epoch", &self.current.epoch)
            .field("previous", &self.previous.as_ref().map(|(k, _)| k.epoch))
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl MlsOpener {
    /// An opener for the epoch of `keys`.
    pub fn new(keys: EpochKeys, config: MlsOpenerConfig) -> Self {
        Self {
            config,
            current: keys,
            previous: None,
            sessions: HashMap::new(),
        }
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.current.epoch
    }

    /// The previous epoch while it still opens.
    pub fn previous_epoch(&self) -> Option<u64> {
        self.previous.as_ref().map(|(keys, _)| keys.epoch)
    }

    /// Move to a new epoch at `now`: the current one keeps opening until
    /// `now + grace`, anything older stops at once.
    pub fn rotate(&mut self, keys: EpochKeys, now: Instant) {
        if keys.epoch == self.current.epoch {
            return;
        }
        let old = std::mem::replace(&mut self.current, keys);
        self.previous = Some((old, now + self.config.grace));
        self.retain_known();
    }

    /// Stop opening the previous epoch if its grace period has ended by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, deadline)) = &self.previous
            && now >= *deadline
        {
            self.previous = None;
            self.retain_known();
        }
    }

    /// When [`Self::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.previous.as_ref().map(|(_, deadline)| *deadline)
    }

    fn retain_known(&mut self) {
        let current = self.current.epoch;
        let previous = self.previous_epoch();
        self.sessions
            .retain(|_, s| s.epoch == current || Some(s.epoch) == previous);
    }

    fn keys_for(&self, kid: MlsKid) -> Result<&EpochKeys, OpenError> {
        let modulus = 1u64 << EPOCH_BITS;
        let bits = u64::from(kid.epoch_bits);
        if self.current.epoch % modulus == bits {
            return Ok(&self.current);
        }
        if let Some((keys, _)) = &self.previous
            && keys.epoch % modulus == bits
        {
            return Ok(keys);
        }
        if self.current.epoch.wrapping_add(1) % modulus == bits {
            // A sender already on the next epoch: the commit has not reached us yet.
            return Err(OpenError::UnknownKid(kid.to_u64()));
        }
        Err(OpenError::TooOld)
    }

    /// Open `sframe`, authenticating `metadata`, and append the plaintext to `out`.
    ///
    /// # Errors
    /// [`OpenError::Malformed`] for a bad header, [`OpenError::UnknownKid`] for the next
    /// epoch (the caller may hold the frame until the commit arrives) or a full session
    /// table, [`OpenError::TooOld`] for an epoch no longer held or a CTR behind the
    /// window, [`OpenError::Replayed`], and [`OpenError::AuthenticationFailed`] for
    /// anything forged, altered or sealed under a key this member does not hold. `out`
    /// keeps its length on error.
    pub fn open<B: FrameBuffer>(
        &mut self,
        metadata: &[u8],
        sframe: &[u8],
        out: &mut B,
    ) -> Result<MlsOpened, OpenError> {
        let (header, _) = SframeHeader::decode(sframe).map_err(|_| OpenError::Malformed)?;
        let kid = MlsKid::from_u64(header.kid);
        if let Some(session) = self.sessions.get_mut(&header.kid) {
            session.window.check(header.ctr)?;
            let (_, plaintext) = session.ctx.open(metadata, sframe, out)?;
            session.window.accept(header.ctr);
            return Ok(opened(kid, session.epoch, header.ctr, plaintext));
        }
        let keys = self.keys_for(kid)?;
        let epoch = keys.epoch;
        if self.sessions.len() >= self.config.max_senders {
            return Err(OpenError::UnknownKid(header.kid));
        }
        let ctx = keys.key_context(kid);
        let (_, plaintext) = ctx.open(metadata, sframe, out)?;
        self.sessions.insert(
            header.kid,
            Session {
                ctx,
                epoch,
                window: ReplayWindow::new(header.ctr),
            },
        );
        Ok(opened(kid, epoch, header.ctr, plaintext))
    }
}

fn opened(kid: MlsKid, epoch: u64, ctr: u64, plaintext: Range<usize>) -> MlsOpened {
    MlsOpened {
        epoch,
        leaf: kid.leaf,
        context: kid.context,
        ctr,
        plaintext,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(epoch: u64, byte: u8) -> EpochKeys {
        EpochKeys::from_exported(epoch, [byte; BASE_KEY_LEN])
    }

    #[test]
    fn frames_open_in_their_epoch_and_the_previous_one_only_during_grace() {
        let start = Instant::now();
        let config = MlsOpenerConfig::default().grace(Duration::from_secs(2));
        let mut opener = MlsOpener::new(keys(5, 1), config);
        let mut old = keys(5, 1).sealer(3, 0).expect("fits");
        let mut new = keys(6, 2).sealer(3, 0).expect("fits");
        let seal = |s: &mut MlsSealer, text: &[u8]| {
            let mut out = Vec::new();
            s.seal(b"meta", text, &mut out).expect("sealed");
            out
        };
        let early_new = seal(&mut new, b"next epoch");
        let mut out = Vec::new();
        assert_eq!(
            opener.open(b"meta", &early_new, &mut out),
            Err(OpenError::UnknownKid(new.kid()))
        );
        let opened = opener
            .open(b"meta", &seal(&mut old, b"five"), &mut out)
            .expect("opens");
        assert_eq!((opened.epoch, opened.leaf), (5, 3));
        assert_eq!(&out[opened.plaintext], b"five");

        opener.rotate(keys(6, 2), start);
        assert!(opener.open(b"meta", &early_new, &mut Vec::new()).is_ok());
        assert!(
            opener
                .open(b"meta", &seal(&mut old, b"late"), &mut Vec::new())
                .is_ok()
        );
        opener.handle_timeout(start + Duration::from_secs(2));
        assert_eq!(opener.previous_epoch(), None);
        assert_eq!(
            opener.open(b"meta", &seal(&mut old, b"too late"), &mut Vec::new()),
            Err(OpenError::TooOld)
        );
    }

    #[test]
    fn another_base_key_or_metadata_does_not_open_and_replays_are_refused() {
        let mut sealer = keys(1, 9).sealer(0, 4).expect("fits");
        let mut frame = Vec::new();
        sealer.seal(b"meta", b"secret", &mut frame).expect("sealed");
        let mut stranger = MlsOpener::new(keys(1, 8), MlsOpenerConfig::default());
        let mut out = Vec::new();
        assert_eq!(
            stranger.open(b"meta", &frame, &mut out),
            Err(OpenError::AuthenticationFailed)
        );
        assert!(out.is_empty());
        let mut member = MlsOpener::new(keys(1, 9), MlsOpenerConfig::default());
        assert_eq!(
            member.open(b"other", &frame, &mut out),
            Err(OpenError::AuthenticationFailed)
        );
        assert!(member.open(b"meta", &frame, &mut out).is_ok());
        assert_eq!(
            member.open(b"meta", &frame, &mut out),
            Err(OpenError::Replayed)
        );
    }

    #[test]
    fn each_leaf_and_context_has_its_own_key() {
        let epoch = keys(2, 4);
        let kids = [(0, 0), (1, 0), (0, 1), (1, 1)];
        let mut frames = Vec::new();
        for (leaf, context) in kids {
            let mut sealer = epoch.sealer(leaf, context).expect("fits");
            let mut out = Vec::new();
            sealer.seal(b"m", b"same text", &mut out).expect("sealed");
            frames.push(out);
        }
        // Same plaintext, same CTR 0: distinct keys give distinct ciphertexts.
        for (i, a) in frames.iter().enumerate() {
            for b in &frames[i + 1..] {
                assert_ne!(a[a.len() - 25..], b[b.len() - 25..]);
            }
        }
        assert!(epoch.sealer(crate::kid::MAX_LEAF + 1, 0).is_none());
    }

    #[test]
    fn the_session_table_is_bounded() {
        let epoch = keys(0, 1);
        let mut opener = MlsOpener::new(epoch.clone(), MlsOpenerConfig::default().max_senders(2));
        let mut results = Vec::new();
        for leaf in 0..3 {
            let mut out = Vec::new();
            let mut sealer = epoch.sealer(leaf, 0).expect("fits");
            sealer.seal(b"m", b"x", &mut out).expect("sealed");
            results.push(opener.open(b"m", &out, &mut Vec::new()).is_ok());
        }
        assert_eq!(results, [true, true, false]);
    }
}
