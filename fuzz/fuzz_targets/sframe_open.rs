//! Opening arbitrary bytes with a fixed key store never panics and never yields plaintext
//! for bytes that were not sealed: every successful open must be byte for byte one of the
//! frames sealed below, and yield exactly its plaintext.
//!
//! Input: byte 0 picks the suite (low 3 bits, mod 5) and the mode (high bit). Mode 0 opens
//! the rest as `metadata length (1 byte) || metadata || sframe`. Mode 1 takes a sealed
//! frame (byte 1 picks it) and applies the remaining bytes as (offset, xor) patches to its
//! metadata and SFrame bytes, or truncates it.
#![no_main]

#[path = "../checks/sframe_open.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
