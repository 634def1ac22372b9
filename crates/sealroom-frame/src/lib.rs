//! Every byte layout that crosses the wire between sealroom clients and relays.
//!
//! This crate has no I/O and no cryptography. It owns:
//!
//! - [`envelope`]: the media envelope the relay may read (kind, sender, track, group,
//!   sequence, flags, capture time) around an opaque sealed payload, decoded without
//!   copying the payload;
//! - [`sframe`]: the SFrame header codec of RFC 9605 section 4.3 (KID and CTR);
//! - [`control`]: the versioned control messages of the control stream;
//! - [`stream`]: length-prefixed framing of messages laid back to back on a QUIC stream,
//!   with an incremental decoder.
//!
//! The byte diagrams live in `docs/PROTOCOL.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::cast_possible_truncation)]

pub mod control;
pub mod envelope;
pub mod sframe;
pub mod stream;

pub use control::{ControlError, ControlMessage, ErrorCode, LeaveReason};
pub use envelope::{DecodeError, Envelope, Flags, Frame, FrameRef, MediaKind, MemberId, TrackId};
pub use stream::{DeframeError, Deframer, write_frame, write_len_prefix};
