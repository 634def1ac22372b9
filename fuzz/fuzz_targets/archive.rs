//! The archive reader never panics on any bytes; every record it keeps lies inside the
//! object, in order, and re-encodes to exactly the bytes it was read from; every problem
//! names an offset inside the object.
#![no_main]

#[path = "../checks/archive.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
