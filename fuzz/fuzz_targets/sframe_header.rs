//! SFrame header decoding never panics; a decoded header re-encodes (both encoders) to
//! exactly the bytes it was read from, so every header has one encoding.
#![no_main]

#[path = "../checks/sframe_header.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
