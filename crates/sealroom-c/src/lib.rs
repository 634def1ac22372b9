//! A C API over `sealroom-crypto`, for media pipelines that carry frames themselves
//! (GStreamer and FFmpeg filters, WebRTC insertable-streams style transforms) and only
//! need sealroom's keys and RFC 9605 SFrame sealing.
//!
//! The header is `include/sealroom.h`, generated from this crate by cbindgen (the
//! `header` test regenerates it and fails when the committed copy is stale). The build
//! line, an example and the rules a C caller follows are in `docs/BINDINGS.md`.
//!
//! # Shape
//!
//! - Four opaque handles, each made by one `*_new` and released by its own `*_free`:
//!   `SealroomKeySchedule` (from the 32-byte room secret), `SealroomSealer` (one sending
//!   session), `SealroomOpener` (every sender's keys and replay windows for one
//!   receiver), and `SealroomKeyContext` (the plain RFC 9605 layer: a base key, a KID and
//!   caller-chosen counters, for interoperating with other SFrame implementations).
//! - Every byte buffer belongs to the caller: seal and open write into the buffer they
//!   are given, in place or to a second buffer, and never allocate memory for the caller
//!   to free. The only memory the library allocates is inside the handles (an opener's
//!   table grows when a new sender first authenticates, up to its bound).
//! - Every function returns a `SealroomStatus` code and writes its outputs only on
//!   success. Nothing unwinds into C: each entry point catches a panic and returns
//!   `SEALROOM_STATUS_INTERNAL`.
//!
//! The unsafe code that turns C pointers into slices lives in `src/ffi/` and nowhere
//! else; the operations themselves (`src/ops.rs`) are safe Rust.

mod ffi;
mod ops;
mod status;

use sealroom_crypto::{KeyContext, KeySchedule, Opener, Sealer};

pub use ffi::context::{
    sealroom_key_context_free, sealroom_key_context_new, sealroom_key_context_open,
    sealroom_key_context_open_in_place, sealroom_key_context_seal, sealroom_key_context_sealed_len,
    sealroom_key_schedule_key_context,
};
pub use ffi::room::{
    sealroom_key_schedule_free, sealroom_key_schedule_new, sealroom_opener_free,
    sealroom_opener_handle_timeout, sealroom_opener_new, sealroom_opener_open,
    sealroom_opener_open_in_place, sealroom_opener_rotate, sealroom_sealer_free,
    sealroom_sealer_kid, sealroom_sealer_new, sealroom_sealer_rekey, sealroom_sealer_rotate,
    sealroom_sealer_seal, sealroom_sealer_seal_in_place, sealroom_sealer_sealed_len,
    sealroom_status_message,
};
pub use status::SealroomStatus;

/// Length of a room secret in bytes.
pub const SEALROOM_ROOM_SECRET_LEN: usize = 32;
/// Longest SFrame header (KID and counter) in bytes: the headroom to leave before a
/// plaintext sealed in place.
pub const SEALROOM_MAX_HEADER_LEN: usize = 17;
/// Longest authentication tag of any suite in bytes: the room to leave after a
/// plaintext sealed in place.
pub const SEALROOM_MAX_TAG_LEN: usize = 16;
/// Longest plaintext one frame may carry (1 GiB).
pub const SEALROOM_MAX_PLAINTEXT_LEN: usize = 1 << 30;
/// The cipher suite sealroom uses on the wire: `AES_128_GCM_SHA256_128`.
pub const SEALROOM_SUITE_AES_128_GCM_SHA256_128: u16 = 4;

const _: () = assert!(SEALROOM_ROOM_SECRET_LEN == sealroom_crypto::ROOM_SECRET_LEN);
const _: () = assert!(SEALROOM_MAX_HEADER_LEN == sealroom_crypto::SframeHeader::MAX_LEN);
const _: () = assert!(SEALROOM_MAX_PLAINTEXT_LEN == sealroom_crypto::MAX_PLAINTEXT_LEN);

/// The keys of one room for one cipher suite, derived from the room secret. Make it with
/// `sealroom_key_schedule_new`, release it with `sealroom_key_schedule_free`.
pub struct SealroomKeySchedule(KeySchedule);

/// Seals the frames of one sending session: its own random KID, a counter that never
/// repeats, a key usage limit. Use one per published track, from one thread at a time.
pub struct SealroomSealer(Sealer);

/// Opens every sender's frames for one receiver, with a replay window per sender. Use
/// it from one thread at a time.
pub struct SealroomOpener(Opener);

/// The plain RFC 9605 layer: the key and salt of one KID derived from a base key. The
/// caller picks every counter and must never seal two frames with the same one.
pub struct SealroomKeyContext(KeyContext);

/// Settings of an opener; zero in a field keeps its default.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SealroomOpenerConfig {
    /// Most sending sessions held at once (default 1024).
    pub max_senders: u32,
    /// How long after `sealroom_opener_rotate` the previous epoch still opens, in
    /// milliseconds (default 10000).
    pub grace_ms: u32,
}

/// What an open call reports about an authentic frame.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealroomOpened {
    /// The KID the frame was sealed under.
    pub kid: u64,
    /// The epoch of the KID (for a key context: the KID's low four bits).
    pub epoch: u64,
    /// The sender's random session id (the KID without its epoch bits).
    pub session: u64,
    /// The frame's counter.
    pub ctr: u64,
    /// Where the plaintext starts in the buffer written (0 when opened to a buffer; after
    /// the header when opened in place).
    pub plaintext_at: usize,
    /// Length of the plaintext.
    pub plaintext_len: usize,
}
