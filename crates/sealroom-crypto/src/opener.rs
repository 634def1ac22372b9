//! The receiving side: one [`Opener`] per receiving member, holding a bounded table of
//! sender keys with a replay window each, and the epochs it accepts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::buffer::FrameBuffer;
use crate::context::{KeyContext, parse};
use crate::error::OpenError;
use crate::schedule::{EPOCH_BITS, KeySchedule, kid_epoch_bits, kid_session};

/// Frames a replay window spans: a CTR this far or further behind the highest CTR opened
/// under a KID is [`OpenError::TooOld`].
pub const REPLAY_WINDOW: u64 = 1024;

const WINDOW_WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// Settings of an [`Opener`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenerConfig {
    max_senders: usize,
    grace: Duration,
}

impl Default for OpenerConfig {
    fn default() -> Self {
        Self {
            max_senders: 1024,
            grace: Duration::from_secs(10),
        }
    }
}

impl OpenerConfig {
    /// Most sending sessions whose keys and replay windows are held at once (default
    /// 1024, at least 1). When a new session authenticates beyond it, the least recently
    /// used one is retired: its later frames are refused as [`OpenError::TooOld`]. Set it
    /// above the number of tracks that can be live at once in a room.
    #[must_use]
    pub fn max_senders(mut self, max: usize) -> Self {
        self.max_senders = max.max(1);
        self
    }

    /// How long after [`Opener::rotate`] frames of the previous epoch still open
    /// (default 10 s).
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

/// What [`Opener::open`] and [`Opener::open_in_place`] return for an authentic frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The KID the frame was sealed under.
    pub kid: u64,
    /// The epoch the KID belongs to.
    pub epoch: u64,
    /// The sender's random session id (the KID without its epoch bits).
    pub session: u64,
    /// The frame's CTR.
    pub ctr: u64,
    /// Where the plaintext lies in the buffer.
    pub plaintext: Range<usize>,
}

/// Which CTRs of one KID have been opened, within [`REPLAY_WINDOW`] of the highest.
///
/// Public so that other key managers (the MLS mode) keep the same replay rule as the
/// [`Opener`]: [`Self::check`] before opening, [`Self::accept`] only after the frame
/// authenticated.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    highest: u64,
    bits: [u64; WINDOW_WORDS],
}

impl ReplayWindow {
    /// A window whose first authenticated frame carried `ctr`.
    pub fn new(ctr: u64) -> Self {
        let mut window = Self {
            highest: ctr,
            bits: [0; WINDOW_WORDS],
        };
        window.set(ctr);
        window
    }

    fn slot(ctr: u64) -> (usize, u64) {
        let index = ctr % REPLAY_WINDOW;
        ((index / 64) as usize, 1 << (index % 64))
    }

    fn set(&mut self, ctr: u64) {
        let (word, bit) = Self::slot(ctr);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= bit;
        }
    }

    fn is_set(&self, ctr: u64) -> bool {
        let (word, bit) = Self::slot(ctr);
        self.bits.get(word).is_some_and(|w| w & bit != 0)
    }

    /// Whether a frame with `ctr` may still be opened.
    ///
    /// # Errors
    /// [`OpenError::TooOld`] for a CTR [`REPLAY_WINDOW`] or more behind the highest,
    /// [`OpenError::Replayed`] for one already opened.
    pub fn check(&self, ctr: u64) -> Result<(), OpenError> {
        if ctr > self.highest {
            return Ok(());
        }
        if self.highest - ctr >= REPLAY_WINDOW {
            return Err(OpenError::TooOld);
        }
        if self.is_set(ctr) {
            return Err(OpenError::Replayed);
        }
        Ok(())
    }

    /// Record an authenticated `ctr` that passed [`Self::check`].
    pub fn accept(&mut self, ctr: u64) {
        if ctr > self.highest {
            let advance = ctr - self.highest;
            if advance >= REPLAY_WINDOW {
                self.bits = [0; WINDOW_WORDS];
            } else {
                for skipped in self.highest + 1..ctr {
                    let (word, bit) = Self::slot(skipped);
                    if let Some(w) = self.bits.get_mut(word) {
                        *w &= !bit;
                    }
                }
            }
            self.highest = ctr;
        }
        self.set(ctr);
    }
}

/// Hashes KIDs for the sender table: a multiply-rotate keyed with random per-opener
/// constants. Honest KIDs are already random; the keys keep a member who crafts KIDs from
/// aiming them at one bucket, and the table is bounded by `max_senders` regardless.
/// SipHash would cost a measurable share of opening a small frame.
#[derive(Clone, Copy)]
struct KidHasherBuilder {
    k0: u64,
    k1: u64,
}

impl KidHasherBuilder {
    fn random() -> Self {
        Self {
            k0: rand::random(),
            k1: rand::random::<u64>() | 1,
        }
    }
}

struct KidHasher {
    k0: u64,
    k1: u64,
    state: u64,
}

impl Hasher for KidHasher {
    fn finish(&self) -> u64 {
        let x = (self.state ^ self.k0).wrapping_mul(self.k1);
        (x ^ (x >> 29)).wrapping_mul(self.k1).rotate_left(23)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.state = (self.state.rotate_left(8) ^ u64::from(b)).wrapping_mul(self.k1);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.state ^= value;
    }
}

impl BuildHasher for KidHasherBuilder {
    type Hasher = KidHasher;

    fn build_hasher(&self) -> KidHasher {
        KidHasher {
            k0: self.k0,
            k1: self.k1,
            state: 0,
        }
    }
}

struct Sender {
    ctx: KeyContext,
    epoch: u64,
    window: ReplayWindow,
    last_used: u64,
}

/// Opens the frames of every sender in a room for one receiving member.
///
/// Keys are derived lazily from the room's [`KeySchedule`] the first time a KID of a
/// known epoch authenticates, and kept (with a replay window each) in a table bounded by
/// [`OpenerConfig::max_senders`]. Nothing about a frame is remembered unless it
/// authenticates, so forged frames cannot evict keys or poison replay windows.
///
/// Epochs: the opener accepts its current epoch, the next one (a sender that rotated
/// first), and after [`Opener::rotate`] the previous one until the grace period ends
/// ([`Opener::handle_timeout`]). There is no clock inside: time comes in as arguments.
pub struct Opener {
    schedule: KeySchedule,
    config: OpenerConfig,
    current: u64,
    previous: Option<(u64, Instant)>,
    senders: HashMap<u64, Sender, KidHasherBuilder>,
    retired: HashSet<u64, KidHasherBuilder>,
    retired_order: VecDeque<u64>,
    uses: u64,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("suite", &self.schedule.suite())
            .field("epoch", &self.current)
            .field("previous", &self.previous)
            .field("senders", &self.senders.len())
            .finish_non_exhaustive()
    }
}

/// How an epoch a KID names relates to what the opener holds.
enum EpochMatch {
    Known(u64),
    Expired,
    Future,
}

impl Opener {
    /// An opener for `epoch`.
    pub fn new(schedule: &KeySchedule, epoch: u64, config: OpenerConfig) -> Self {
        Self {
            schedule: schedule.clone(),
            config,
            current: epoch,
            previous: None,
            senders: HashMap::with_hasher(KidHasherBuilder::random()),
            retired: HashSet::with_hasher(KidHasherBuilder::random()),
            retired_order: VecDeque::new(),
            uses: 0,
        }
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.current
    }

    /// Sending sessions currently held.
    pub fn sender_count(&self) -> usize {
        self.senders.len()
    }

    fn classify(&self, kid: u64) -> EpochMatch {
        let bits = kid_epoch_bits(kid);
        let modulus = 1u64 << EPOCH_BITS;
        if bits == self.current % modulus {
            return EpochMatch::Known(self.current);
        }
        if let Some((previous, _)) = self.previous
            && bits == previous % modulus
        {
            return EpochMatch::Known(previous);
        }
        let next = self.current.wrapping_add(1);
        if bits == next % modulus {
            return EpochMatch::Known(next);
        }
        // Of the other 13 residues, the nearer half behind us are epochs we left.
        let behind = self.current.wrapping_sub(bits) % modulus;
        if behind <= modulus / 2 {
            EpochMatch::Expired
        } else {
            EpochMatch::Future
        }
    }

    /// Open `sframe` in place, authenticating `metadata` (for sealroom frames:
    /// `Envelope::metadata()` of the received envelope).
    ///
    /// # Errors
    /// [`OpenError`]: `Malformed` before any key is touched, `UnknownKid` for an epoch
    /// ahead of ours, `TooOld` and `Replayed` from the replay window or a retired
    /// session, `AuthenticationFailed` for anything forged or altered. On every error the
    /// ciphertext bytes are zeroed or untouched; unauthenticated plaintext never remains.
    pub fn open_in_place(
        &mut self,
        metadata: &[u8],
        sframe: &mut [u8],
    ) -> Result<Opened, OpenError> {
        let (header, header_len) = parse(self.schedule.suite(), sframe)?;
        let body = &mut sframe[header_len..];
        let (plain, epoch) = self.open_with(header.kid, header.ctr, |ctx| {
            ctx.open_body(&header, metadata, body)
        })?;
        Ok(opened(
            header.kid,
            epoch,
            header.ctr,
            header_len..header_len + plain,
        ))
    }

    /// Open `sframe`, appending the plaintext to `out`.
    ///
    /// # Errors
    /// As [`Self::open_in_place`]; `out` keeps its old length on error.
    pub fn open<B: FrameBuffer>(
        &mut self,
        metadata: &[u8],
        sframe: &[u8],
        out: &mut B,
    ) -> Result<Opened, OpenError> {
        let (header, header_len) = parse(self.schedule.suite(), sframe)?;
        let body = &sframe[header_len..];
        let (plain, epoch) = self.open_with(header.kid, header.ctr, |ctx| {
            ctx.open_copy(&header, metadata, body, out)
        })?;
        Ok(opened(header.kid, epoch, header.ctr, plain))
    }

    /// Find or derive the key for `kid`, check the replay window, run `open`, and only
    /// if it authenticates record the CTR (and a newly derived key). Returns `open`'s
    /// result and the KID's epoch.
    fn open_with<T>(
        &mut self,
        kid: u64,
        ctr: u64,
        open: impl FnOnce(&KeyContext) -> Result<T, OpenError>,
    ) -> Result<(T, u64), OpenError> {
        let epoch = match self.classify(kid) {
            EpochMatch::Known(epoch) => epoch,
            EpochMatch::Expired => return Err(OpenError::TooOld),
            EpochMatch::Future => return Err(OpenError::UnknownKid(kid)),
        };
        self.uses += 1;
        let uses = self.uses;
        if let Some(sender) = self.senders.get_mut(&kid) {
            sender.window.check(ctr)?;
            let out = open(&sender.ctx)?;
            sender.window.accept(ctr);
            sender.last_used = uses;
            return Ok((out, sender.epoch));
        }
        if self.retired.contains(&kid) {
            return Err(OpenError::TooOld);
        }
        let ctx = self.schedule.key_context(epoch, kid);
        let out = open(&ctx)?;
        self.insert(
            kid,
            Sender {
                ctx,
                epoch,
                window: ReplayWindow::new(ctr),
                last_used: uses,
            },
        );
        Ok((out, epoch))
    }

    fn insert(&mut self, kid: u64, sender: Sender) {
        if self.senders.len() >= self.config.max_senders {
            let oldest = self
                .senders
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(&kid, _)| kid);
            if let Some(oldest) = oldest {
                self.senders.remove(&oldest);
                self.retire(oldest);
            }
        }
        self.senders.insert(kid, sender);
    }

    fn retire(&mut self, kid: u64) {
        // Remember four times as many retired sessions as live ones.
        let cap = self.config.max_senders.saturating_mul(4);
        if self.retired.insert(kid) {
            self.retired_order.push_back(kid);
        }
        while self.retired_order.len() > cap {
            if let Some(old) = self.retired_order.pop_front() {
                self.retired.remove(&old);
            }
        }
    }

    /// Move to `epoch` at `now`: the current epoch becomes the previous one and keeps
    /// opening until `now + grace`; an older previous epoch is dropped at once.
    pub fn rotate(&mut self, epoch: u64, now: Instant) {
        if epoch == self.current {
            return;
        }
        self.previous = Some((self.current, now + self.config.grace));
        self.current = epoch;
        self.drop_unaccepted();
    }

    /// Drop the previous epoch if its grace period has ended by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, deadline)) = self.previous
            && now >= deadline
        {
            self.previous = None;
            self.drop_unaccepted();
        }
    }

    /// When [`Self::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.previous.map(|(_, deadline)| deadline)
    }

    fn drop_unaccepted(&mut self) {
        let current = self.current;
        let next = current.wrapping_add(1);
        let previous = self.previous.map(|(epoch, _)| epoch);
        self.senders
            .retain(|_, s| s.epoch == current || s.epoch == next || Some(s.epoch) == previous);
    }
}

fn opened(kid: u64, epoch: u64, ctr: u64, plaintext: Range<usize>) -> Opened {
    Opened {
        kid,
        epoch,
        session: kid_session(kid),
        ctr,
        plaintext,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_accepts_reordering_and_refuses_replays_and_stale_ctrs() {
        let mut w = ReplayWindow::new(10);
        assert_eq!(w.check(10), Err(OpenError::Replayed));
        assert_eq!(w.check(9), Ok(()));
        w.accept(9);
        assert_eq!(w.check(9), Err(OpenError::Replayed));
        w.accept(2000);
        assert_eq!(w.check(2000 - REPLAY_WINDOW), Err(OpenError::TooOld));
        assert_eq!(w.check(2000 - REPLAY_WINDOW + 1), Ok(()));
        assert_eq!(w.check(1500), Ok(()), "skipped ctrs are not marked seen");
        w.accept(1500);
        assert_eq!(w.check(1500), Err(OpenError::Replayed));
        w.accept(2001);
        assert_eq!(w.check(1500), Err(OpenError::Replayed));
        // Advancing by less than a window clears exactly the skipped slots.
        w.accept(2001 + 700);
        assert_eq!(w.check(2001 + 699), Ok(()));
        assert_eq!(w.check(2001), Err(OpenError::Replayed));
    }
}
