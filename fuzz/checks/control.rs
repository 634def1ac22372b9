//! Control message decoding never panics, and whatever decodes re-encodes to exactly its
//! input and decodes again to the same message (`decode(encode(x)) == x`).
//!
//! Shared by the fuzz target of the same name and by the corpus replay test
//! (`tests/fuzz_corpus.rs` in the root workspace), so both check exactly the same.

use sealroom_frame::control::{CONTROL_VERSION, ControlMessage};

fn check(input: &[u8]) {
    if let Ok(message) = ControlMessage::decode(input) {
        let bytes = message.to_bytes().expect("a decoded message encodes");
        assert_eq!(&bytes[..], input);
        assert_eq!(message.encoded_len(), Ok(bytes.len()));
        assert_eq!(ControlMessage::decode(&bytes), Ok(message));
    }
}

/// The check the fuzz target runs on every input.
pub fn run(data: &[u8]) {
    check(data);
    // The same bytes as a body behind the right version byte, so most inputs reach the
    // body decoder.
    let mut versioned = Vec::with_capacity(data.len() + 1);
    versioned.push(CONTROL_VERSION);
    versioned.extend_from_slice(data);
    check(&versioned);
}
