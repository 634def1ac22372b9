//! The blind recorder of sealroom rooms.
//!
//! A recorder joins a room with a ticket that carries the `record` grant. The relay sends
//! it every track of every member, present and future, refuses anything it publishes and
//! tells every member a recorder is present. The recorder never holds the room secret:
//! it stores each frame exactly as it crossed the wire (the envelope and the SFrame
//! ciphertext) with its arrival time, plus the room's membership events, and the customer
//! opens the recording later, offline, with the secret they already hold.
//!
//! This crate is the node side of recording and links no content cryptography (CI checks
//! it with `scripts/check-relay-deps sealroom-record`):
//!
//! - [`member`]: the blind member, a room session that hands out sealed frames and
//!   membership events and reconnects on its own.
//!
//! `docs/RECORDING.md` describes the recorder, its archive format and its bounds.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod archive;
pub mod member;
pub mod recorder;
mod spool;
pub mod storage;

pub use member::{
    BlindConfig, BlindEnd, BlindError, BlindEvent, BlindEvents, BlindMember, BlindStats,
    SealedFrame, TicketSource,
};
pub use recorder::{
    Recorder, RecorderConfig, RecorderError, RecorderEvent, RecorderStats, RecordingSummary,
};
pub use sealroom_tls::{PinParseError, TlsSetupError, Trust};
pub use storage::{Storage, StorageConfig, StorageError};
