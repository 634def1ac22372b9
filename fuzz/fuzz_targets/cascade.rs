//! A peer node's cascade stream (framing, `Hello`, events) never panics the reader, and
//! whatever decodes round-trips.
#![no_main]

#[path = "../checks/cascade.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
