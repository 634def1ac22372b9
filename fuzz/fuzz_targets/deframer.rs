//! The deframer never panics; fed the stream in arbitrary chunks it returns the same frames
//! and the same end (error or clean finish) as when fed the stream in one piece; no frame
//! exceeds the limit; after "need more" it holds less than the limit plus a prefix; and the
//! frames re-framed give back the stream they came from (one encoding per stream).
#![no_main]

#[path = "../checks/deframer.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
