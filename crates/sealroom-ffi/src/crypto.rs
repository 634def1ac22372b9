//! Sealing and opening frames directly, for apps that carry frames over their own
//! transport: the room key schedule, sealers, openers, and RFC 9605's own layer.

#![allow(unsafe_code)] // UniFFI's export macros expand to unsafe extern functions.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use sealroom_crypto::{CipherSuite, OpenerConfig, ROOM_SECRET_LEN, RoomSecret};

use crate::error::{KeyMaterialError, OpenError, SealError};

fn suite(id: u16) -> Result<CipherSuite, KeyMaterialError> {
    CipherSuite::from_id(id).ok_or(KeyMaterialError::UnknownSuite { id })
}

/// A poisoned lock only means another call panicked (and raised) mid-way; the sealer's
/// and opener's state stays consistent at every step, so keep using it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn room_secret(bytes: &[u8]) -> Option<RoomSecret> {
    let bytes: [u8; ROOM_SECRET_LEN] = bytes.try_into().ok()?;
    Some(RoomSecret::from_bytes(bytes))
}

/// The keys of one room for one cipher suite, derived from the 32-byte room secret.
#[derive(Debug, uniffi::Object)]
pub struct KeySchedule(sealroom_crypto::KeySchedule);

#[uniffi::export]
impl KeySchedule {
    /// The schedule of `room_secret` (32 bytes) for cipher suite `suite` (1 to 5; sealroom
    /// uses 4, AES-128-GCM).
    ///
    /// # Errors
    /// [`KeyMaterialError`] for a secret that is not 32 bytes or an unknown suite.
    #[uniffi::constructor]
    pub fn new(room_secret: Vec<u8>, suite_id: u16) -> Result<Arc<Self>, KeyMaterialError> {
        let suite = suite(suite_id)?;
        let secret = self::room_secret(&room_secret).ok_or(KeyMaterialError::InvalidSecret {
            len: room_secret.len() as u64,
        })?;
        Ok(Arc::new(Self(sealroom_crypto::KeySchedule::new(
            &secret, suite,
        ))))
    }

    /// A sealer for a new sending session in `epoch` (a fresh random KID and key).
    pub fn sealer(&self, epoch: u64) -> Arc<Sealer> {
        Arc::new(Sealer(Mutex::new(self.0.sealer(epoch))))
    }

    /// An opener for `epoch` (and the next one), with a replay window per sender.
    pub fn opener(&self, epoch: u64) -> Arc<Opener> {
        Arc::new(Opener(Mutex::new(
            self.0.opener(epoch, OpenerConfig::default()),
        )))
    }

    /// The key context the schedule gives `kid` in `epoch` (for checking the schedule
    /// against other implementations).
    pub fn key_context(&self, epoch: u64, kid: u64) -> Arc<KeyContext> {
        Arc::new(KeyContext(self.0.key_context(epoch, kid)))
    }
}

/// Seals one sending session's frames: its own random KID, a counter that never repeats.
#[derive(Debug, uniffi::Object)]
pub struct Sealer(Mutex<sealroom_crypto::Sealer>);

#[uniffi::export]
impl Sealer {
    /// Seal `plaintext`, authenticating `metadata` with it; returns the SFrame bytes
    /// (header, ciphertext, tag).
    ///
    /// # Errors
    /// [`SealError::RotationRequired`] at the key's usage limit.
    pub fn seal(&self, metadata: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut sealer = lock(&self.0);
        let mut out = Vec::with_capacity(sealer.sealed_len(plaintext.len()));
        sealer.seal(metadata, plaintext, &mut out)?;
        Ok(out)
    }

    /// The KID frames are sealed under now.
    pub fn kid(&self) -> u64 {
        lock(&self.0).kid()
    }

    /// The counter the next frame will carry.
    pub fn next_ctr(&self) -> u64 {
        lock(&self.0).next_ctr()
    }

    /// Start a new sending session in the same epoch (new KID and key).
    pub fn rekey(&self) {
        lock(&self.0).rekey();
    }

    /// Move to `epoch` with a new KID and key.
    pub fn rotate(&self, epoch: u64) {
        lock(&self.0).rotate(epoch);
    }
}

/// What opening an authentic frame gives.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Opened {
    /// The KID it was sealed under.
    pub kid: u64,
    /// The KID's epoch (for a key context: its low four bits).
    pub epoch: u64,
    /// The sender's session id (the KID without its epoch bits).
    pub session: u64,
    /// The frame's counter.
    pub ctr: u64,
    /// The plaintext.
    pub plaintext: Vec<u8>,
}

/// Opens every sender's frames for one receiver, refusing replays.
#[derive(Debug, uniffi::Object)]
pub struct Opener(Mutex<sealroom_crypto::Opener>);

#[uniffi::export]
impl Opener {
    /// Open `sframe`, authenticating `metadata` as the sender did.
    ///
    /// # Errors
    /// [`OpenError`]; nothing of a refused frame is returned, and it does not move the
    /// replay window.
    pub fn open(&self, metadata: &[u8], sframe: &[u8]) -> Result<Opened, OpenError> {
        let mut sframe = sframe.to_vec();
        let opened = lock(&self.0).open_in_place(metadata, &mut sframe)?;
        Ok(Opened {
            kid: opened.kid,
            epoch: opened.epoch,
            session: opened.session,
            ctr: opened.ctr,
            plaintext: sframe
                .get(opened.plaintext)
                .map(<[u8]>::to_vec)
                .unwrap_or_default(),
        })
    }

    /// Move to `epoch` now; the previous epoch keeps opening for the grace period (10 s).
    pub fn rotate(&self, epoch: u64) {
        lock(&self.0).rotate(epoch, Instant::now());
    }

    /// Drop the previous epoch's keys once its grace period is over.
    pub fn handle_timeout(&self) {
        lock(&self.0).handle_timeout(Instant::now());
    }
}

/// RFC 9605's own layer: the key and salt of one KID derived from a base key; the caller
/// picks every counter and must never seal two frames with the same one.
#[derive(Debug, uniffi::Object)]
pub struct KeyContext(sealroom_crypto::KeyContext);

#[uniffi::export]
impl KeyContext {
    /// Derive the context of `kid` from `base_key` under suite `suite_id` (1 to 5).
    ///
    /// # Errors
    /// [`KeyMaterialError::UnknownSuite`].
    #[uniffi::constructor]
    pub fn new(suite_id: u16, kid: u64, base_key: Vec<u8>) -> Result<Arc<Self>, KeyMaterialError> {
        let suite = suite(suite_id)?;
        Ok(Arc::new(Self(sealroom_crypto::KeyContext::derive(
            suite, kid, &base_key,
        ))))
    }

    /// Seal `plaintext` with counter `ctr`, authenticating `metadata`.
    ///
    /// # Errors
    /// [`SealError::TooLong`].
    pub fn seal(&self, ctr: u64, metadata: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut out = Vec::with_capacity(self.0.sealed_len(ctr, plaintext.len()));
        self.0.seal(ctr, metadata, plaintext, &mut out)?;
        Ok(out)
    }

    /// Open `sframe` (its KID must be this context's), authenticating `metadata`.
    ///
    /// # Errors
    /// [`OpenError::AuthenticationFailed`] or [`OpenError::Malformed`].
    pub fn open(&self, metadata: &[u8], sframe: &[u8]) -> Result<Opened, OpenError> {
        let mut sframe = sframe.to_vec();
        let (header, plaintext) = self.0.open_in_place(metadata, &mut sframe)?;
        Ok(Opened {
            kid: header.kid,
            epoch: sealroom_crypto::kid_epoch_bits(header.kid),
            session: sealroom_crypto::kid_session(header.kid),
            ctr: header.ctr,
            plaintext: sframe
                .get(plaintext)
                .map(<[u8]>::to_vec)
                .unwrap_or_default(),
        })
    }
}
