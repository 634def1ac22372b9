//! RFC 9605 SFrame for sealroom: end-to-end keys a relay never holds.
//!
//! Every member of a room holds the same [`RoomSecret`], handed out by the application
//! (never by the relay). A [`KeySchedule`] turns it into per-epoch, per-session SFrame
//! keys. A [`Sealer`] seals one sending session's frames; an [`Opener`] opens everyone
//! else's, keeping a replay window per sender. The SFrame bytes are
//! `header(KID, CTR) || ciphertext || tag` exactly as RFC 9605 lays them out, with the
//! sealroom envelope's [`metadata`](sealroom_frame::Envelope::metadata) authenticated
//! beside the header, so a relay that alters any envelope field makes the frame fail to
//! open.
//!
//! ```
//! use sealroom_crypto::{CipherSuite, KeySchedule, OpenerConfig, RoomSecret};
//! use sealroom_frame::{Envelope, Flags, MediaKind};
//!
//! // The application gives every member the same secret.
//! let secret = RoomSecret::generate();
//! let alice = KeySchedule::new(&secret, CipherSuite::default());
//! let bob = KeySchedule::new(&RoomSecret::from_bytes(*secret.expose()), CipherSuite::default());
//!
//! let envelope = Envelope {
//!     kind: MediaKind::Audio,
//!     flags: Flags::empty(),
//!     sender: 7,
//!     track: 1,
//!     group: 0,
//!     seq: 0,
//!     timestamp_us: 1_000,
//! };
//!
//! // Alice seals a frame.
//! let mut sealer = alice.sealer(0);
//! let mut wire = Vec::new();
//! sealer.seal(&envelope.metadata(), b"opus frame", &mut wire)?;
//!
//! // Bob opens it in place; a replay of the same bytes is refused.
//! let mut opener = bob.opener(0, OpenerConfig::default());
//! let mut copy = wire.clone();
//! let opened = opener.open_in_place(&envelope.metadata(), &mut copy)?;
//! assert_eq!(&copy[opened.plaintext], b"opus frame");
//! assert_eq!(opened.kid, sealer.kid());
//! assert!(opener.open_in_place(&envelope.metadata(), &mut wire.clone()).is_err());
//!
//! // A relay that rewrites the sender id breaks authentication.
//! let forged = Envelope { sender: 8, ..envelope };
//! let mut sealed_again = Vec::new();
//! sealer.seal(&envelope.metadata(), b"next", &mut sealed_again)?;
//! assert_eq!(
//!     opener.open_in_place(&forged.metadata(), &mut sealed_again),
//!     Err(sealroom_crypto::OpenError::AuthenticationFailed),
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layers
//!
//! - The plain RFC 9605 layer: [`KeyContext`] derives the key and salt for a KID from a
//!   base key and seals or opens with a caller-chosen CTR, for all five
//!   [`CipherSuite`]s. It passes every RFC 9605 test vector on both backends.
//! - The room layer: [`KeySchedule`], [`Sealer`] and [`Opener`]: KIDs that name an epoch
//!   and a sender-chosen random session, monotonic CTRs with a usage limit, replay
//!   windows, epoch rotation with a grace period. `docs/SECURITY.md` has the threat
//!   model and the argument that no honest sender ever reuses a (key, nonce).
//!
//! # Backends and the default feature
//!
//! Two libraries sit behind one internal seam ([`Backend`]): RustCrypto (pure Rust,
//! always compiled) and aws-lc-rs (feature `aws-lc`). The `aws-lc` feature is on by
//! default because AES-GCM is where a media client spends its crypto time and aws-lc-rs
//! does it several times faster on the CPUs sealroom runs on (its AVX-512/VAES code
//! paths; in this crate's benches about 2-3x RustCrypto at 1200-byte frames and more at
//! 64 KiB), and because the QUIC stack (rustls) already links aws-lc-rs, so the default
//! adds no new C code to a sealroom client. Build with `default-features = false` for a
//! pure-Rust crate, for example on the way to wasm32 (the C library does not build
//! there; `rand`'s entropy source must then be configured for the target). The bytes on
//! the wire are identical either way, and the tests run every RFC 9605 vector through
//! both backends.
//!
//! # Hygiene
//!
//! Every secret lives in a type that zeroizes on drop ([`RoomSecret`], [`KeySchedule`],
//! [`KeyContext`] and the sealer and opener built on them; aws-lc-rs cleanses its own key
//! schedules when they are freed). No `Debug` implementation prints key bytes. A failed
//! open leaves no unauthenticated plaintext behind.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod backend;
mod buffer;
mod context;
mod error;
mod opener;
mod schedule;
mod sealer;
mod suite;

pub use backend::Backend;
pub use buffer::{FrameBuffer, SliceBuffer};
pub use context::{KeyContext, MAX_PLAINTEXT_LEN};
pub use error::{OpenError, SealError};
pub use opener::{Opened, Opener, OpenerConfig, REPLAY_WINDOW, ReplayWindow};
pub use schedule::{
    EPOCH_BITS, KeySchedule, ROOM_SECRET_LEN, RoomSecret, SESSION_BITS, kid_epoch_bits,
    kid_session, make_kid,
};
pub use sealer::{MAX_USAGE_BLOCKS, Sealer, SealerConfig};
pub use sealroom_frame::sframe::{HeaderError, SframeHeader};
pub use suite::CipherSuite;
