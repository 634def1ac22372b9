//! Envelope decoding never panics, the owned and borrowed decoders agree, a decoded frame
//! re-encodes to exactly its input (one encoding per frame), its payload is a slice of the
//! input, and a payload limit refuses exactly the frames above it.
#![no_main]

#[path = "../checks/envelope.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
