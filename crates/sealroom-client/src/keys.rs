//! The room's keys as the client uses them: a sealer per published track and one opener
//! for everyone else's frames. A thin layer over sealroom-crypto that lays the envelope in
//! front of the SFrame ciphertext and authenticates the envelope's metadata as SFrame AAD.
//!
//! The key schedule and every sealer live as long as the room session, not as long as a
//! connection, so a reconnect never restarts a counter under an old key: each sealer has
//! its own random session KID (sealroom-crypto's nonce argument in `docs/SECURITY.md`).

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use sealroom_crypto::{
    CipherSuite, KeySchedule, OpenError, Opener, OpenerConfig, RoomSecret, Sealer,
};
use sealroom_frame::envelope::Envelope;

use crate::error::PublishError;
use crate::mls::{MlsKeys, MlsTrackSealer};

/// The epoch every member seals in until rotation is wired up.
const EPOCH: u64 = 0;

/// Largest SFrame overhead of the default suite: header (config byte, KID and CTR of up to
/// 8 bytes each) and a 16-byte tag.
pub(crate) const MAX_SFRAME_OVERHEAD: usize = 1 + 8 + 8 + 16;

/// Encoded length of a frame whose plaintext is `plaintext_len` bytes, at most.
pub(crate) fn sealed_frame_len(plaintext_len: usize) -> usize {
    Envelope::HEADER_LEN + MAX_SFRAME_OVERHEAD + plaintext_len
}

/// The keys of one room session: from the room secret, or from the MLS group.
// One per room session, built once and never moved on a hot path: boxing the larger
// variant would only add an indirection to every open.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Keys {
    /// Keys from the room secret the application handed out.
    Room {
        /// The room's key schedule.
        schedule: KeySchedule,
        /// Opens everyone else's frames.
        opener: Mutex<Opener>,
    },
    /// Keys from the MLS group's epochs.
    Mls(Arc<MlsKeys>),
}

impl Keys {
    /// Keys derived from the room secret; `max_senders` bounds the sending sessions
    /// (tracks of all members) the opener holds.
    pub(crate) fn new(secret: &RoomSecret, max_senders: usize) -> Self {
        let schedule = KeySchedule::new(secret, CipherSuite::default());
        let opener = schedule.opener(EPOCH, OpenerConfig::default().max_senders(max_senders));
        Self::Room {
            schedule,
            opener: Mutex::new(opener),
        }
    }

    /// The room's cipher suite.
    pub(crate) fn suite(&self) -> CipherSuite {
        match self {
            Self::Room { schedule, .. } => schedule.suite(),
            Self::Mls(_) => sealroom_mls::SUITE,
        }
    }

    /// The MLS state, in the MLS mode.
    pub(crate) fn mls(&self) -> Option<&Arc<MlsKeys>> {
        match self {
            Self::Room { .. } => None,
            Self::Mls(mls) => Some(mls),
        }
    }

    /// A sealer for a new sending session (one per published track).
    pub(crate) fn sealer(&self) -> TrackSealer {
        match self {
            Self::Room { schedule, .. } => TrackSealer(Sealing::Room(schedule.sealer(EPOCH))),
            Self::Mls(mls) => TrackSealer(Sealing::Mls(mls.sealer())),
        }
    }

    /// Open a received frame's SFrame payload, authenticating `envelope`.
    pub(crate) fn open(&self, envelope: &Envelope, payload: &[u8]) -> Result<Bytes, OpenError> {
        let opener = match self {
            Self::Room { opener, .. } => opener,
            Self::Mls(mls) => return mls.open(envelope, payload),
        };
        let mut out = BytesMut::with_capacity(payload.len());
        opener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .open(&envelope.metadata(), payload, &mut out)?;
        Ok(out.freeze())
    }
}

enum Sealing {
    Room(Sealer),
    Mls(MlsTrackSealer),
}

/// The sealing state of one sending session.
pub(crate) struct TrackSealer(Sealing);

impl TrackSealer {
    /// Seal `plaintext` with `envelope` as metadata; returns the encoded frame (envelope
    /// header, then the SFrame ciphertext).
    pub(crate) fn seal(
        &mut self,
        envelope: &Envelope,
        plaintext: &[u8],
    ) -> Result<Bytes, PublishError> {
        let sealer = match &mut self.0 {
            Sealing::Room(sealer) => sealer,
            Sealing::Mls(mls) => {
                let sealer = mls.current().ok_or(PublishError::NoGroupKeys)?;
                let sealed_len = sealer.sealed_len(plaintext.len());
                let mut out = header(envelope, sealed_len)?;
                sealer
                    .seal(&envelope.metadata(), plaintext, &mut out)
                    .map_err(PublishError::Seal)?;
                return Ok(out.freeze());
            }
        };
        let sealed_len = sealer.sealed_len(plaintext.len());
        let mut out = header(envelope, sealed_len)?;
        if let Err(err) = sealer.seal(&envelope.metadata(), plaintext, &mut out) {
            if err == sealroom_crypto::SealError::RotationRequired {
                // A fresh random session id: a new key, the counter back at zero.
                sealer.rekey();
            }
            return Err(PublishError::Seal(err));
        }
        Ok(out.freeze())
    }
}

/// A buffer holding `envelope`'s header for a `sealed_len`-byte SFrame payload.
fn header(envelope: &Envelope, sealed_len: usize) -> Result<BytesMut, PublishError> {
    let mut out = BytesMut::with_capacity(Envelope::HEADER_LEN + sealed_len);
    envelope
        .encode_header(sealed_len, &mut out)
        .map_err(|err| PublishError::TooLarge {
            len: Envelope::HEADER_LEN + sealed_len,
            max: match err {
                sealroom_frame::DecodeError::Oversize { max, .. } => max,
                _ => 0,
            },
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use sealroom_frame::envelope::{Flags, Frame, MediaKind};

    use super::*;

    fn envelope(sender: u32) -> Envelope {
        Envelope {
            kind: MediaKind::Data,
            flags: Flags::empty(),
            sender,
            track: 1,
            group: 0,
            seq: 0,
            timestamp_us: 5,
        }
    }

    #[test]
    fn sealed_frames_open_for_members_with_the_same_secret_only() {
        let secret = RoomSecret::generate();
        let alice = Keys::new(&secret, 16);
        let bob = Keys::new(&secret, 16);
        let eve = Keys::new(&RoomSecret::generate(), 16);
        let mut sealer = alice.sealer();
        let wire = sealer.seal(&envelope(3), b"hello").expect("sealed");
        assert!(wire.len() <= sealed_frame_len(5));
        let frame = Frame::decode(&wire).expect("well-formed frame");
        assert_eq!(frame.envelope, envelope(3));
        let opened = bob.open(&frame.envelope, &frame.payload).expect("opens");
        assert_eq!(&opened[..], b"hello");
        assert_eq!(
            eve.open(&frame.envelope, &frame.payload),
            Err(OpenError::AuthenticationFailed)
        );
        assert_eq!(
            bob.open(&frame.envelope, &frame.payload),
            Err(OpenError::Replayed)
        );
    }

    #[test]
    fn an_altered_envelope_does_not_open() {
        let secret = RoomSecret::generate();
        let alice = Keys::new(&secret, 16);
        let bob = Keys::new(&secret, 16);
        let wire = alice.sealer().seal(&envelope(3), b"hello").expect("sealed");
        let frame = Frame::decode(&wire).expect("well-formed frame");
        assert_eq!(
            bob.open(&envelope(4), &frame.payload),
            Err(OpenError::AuthenticationFailed)
        );
    }
}
