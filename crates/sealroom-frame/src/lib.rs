//! Every byte layout that crosses the wire between sealroom clients and relays.
//!
//! This crate has no I/O and no cryptography. It owns:
//!
//! - [`envelope`]: the media envelope the relay may read (kind, sender, track, group,
//!   sequence, flags, capture time) around an opaque sealed payload, decoded without
//!   copying the payload;
//! - [`sframe`]: the SFrame header codec of RFC 9605 section 4.3 (KID and CTR);
//! - [`control`]: the versioned control messages of the control stream, and what each
//!   [`ErrorCode`] means for a session (its name, whether it ends the session, whether a
//!   reconnect may succeed);
//! - [`stream`]: length-prefixed framing of messages laid back to back on a QUIC stream,
//!   with an incremental decoder;
//! - [`transport`]: the names on a QUIC connection: the [`ALPN`] id, the [`StreamType`]
//!   byte that opens a unidirectional stream, and the [`StreamCode`]s streams are reset or
//!   stopped with.
//!
//! The byte diagrams live in `docs/PROTOCOL.md`.
//!
//! # A media frame from sender to receiver
//!
//! A publisher encodes a frame (its payload already sealed by sealroom-crypto, with
//! [`Envelope::metadata`] as the SFrame metadata) and frames it on a QUIC stream:
//!
//! ```
//! use bytes::Bytes;
//! use sealroom_frame::envelope::{Envelope, Flags, Frame, MediaKind};
//! use sealroom_frame::stream::{Deframer, write_frame};
//!
//! let frame = Frame {
//!     envelope: Envelope {
//!         kind: MediaKind::Video,
//!         flags: Flags::GROUP_START,
//!         sender: 7,
//!         track: 2,
//!         group: 42,
//!         seq: 0,
//!         timestamp_us: 1_700_000_000_000_000,
//!     },
//!     payload: Bytes::from_static(b"sealed bytes"),
//! };
//! let mut encoded = Vec::new();
//! frame.encode(&mut encoded)?;
//! let mut stream = Vec::new();
//! write_frame(&encoded, &mut stream);
//!
//! // The receiver (relay or member) gets the stream in arbitrary pieces, asks the
//! // deframer for whole frames, and decodes each without copying its payload.
//! let mut deframer = Deframer::new(64 * 1024);
//! let mut received = Vec::new();
//! for piece in stream.chunks(5) {
//!     deframer.push(Bytes::copy_from_slice(piece));
//!     while let Some(bytes) = deframer.next_frame()? {
//!         received.push(Frame::decode(&bytes)?);
//!     }
//! }
//! deframer.finish()?;
//! assert_eq!(received, [frame]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Control messages travel the same way on the control stream:
//!
//! ```
//! use bytes::Bytes;
//! use sealroom_frame::control::{ControlMessage, JoinOptions, MAX_CONTROL_LEN};
//! use sealroom_frame::stream::Deframer;
//!
//! let join = ControlMessage::Join {
//!     ticket: "eyJ...".into(),
//!     client_name: "my-app".into(),
//!     client_version: "1.0".into(),
//!     options: JoinOptions { auto_subscribe: true, room: None },
//! };
//! let mut wire = Vec::new();
//! join.encode_framed(&mut wire)?;
//!
//! let mut deframer = Deframer::new(MAX_CONTROL_LEN);
//! deframer.push(Bytes::from(wire));
//! let bytes = deframer.next_frame()?.expect("one whole message");
//! assert_eq!(ControlMessage::decode(&bytes)?, join);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::cast_possible_truncation)]

pub mod control;
pub mod envelope;
pub mod quality;
pub mod sframe;
pub mod stream;
pub mod transport;

#[cfg(test)]
mod golden;

pub use control::{ControlError, ControlMessage, ErrorCode, LeaveReason};
pub use envelope::{DecodeError, Envelope, Flags, Frame, FrameRef, MediaKind, MemberId, TrackId};
pub use stream::{DeframeError, Deframer, write_frame, write_len_prefix};
pub use transport::{ALPN, StreamCode, StreamType};
