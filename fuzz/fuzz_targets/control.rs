//! Control message decoding never panics, and whatever decodes re-encodes to exactly its
//! input and decodes again to the same message (`decode(encode(x)) == x`).
#![no_main]

#[path = "../checks/control.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::run(data));
