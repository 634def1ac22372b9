//! SFrame header decoding never panics; a decoded header re-encodes (both encoders) to
//! exactly the bytes it was read from, so every header has one encoding.
//!
//! Shared by the fuzz target of the same name and by the corpus replay test
//! (`tests/fuzz_corpus.rs` in the root workspace), so both check exactly the same.

use sealroom_frame::sframe::{HeaderError, SframeHeader};

/// The check the fuzz target runs on every input.
pub fn run(data: &[u8]) {
    match SframeHeader::decode(data) {
        Ok((header, used)) => {
            assert!((1..=SframeHeader::MAX_LEN).contains(&used));
            assert_eq!(header.encoded_len(), used);
            let array = header.encode_array();
            assert_eq!(Some(array.as_bytes()), data.get(..used));
            let mut wire = Vec::new();
            header.encode(&mut wire);
            assert_eq!(wire, array.as_bytes());
        }
        Err(HeaderError::Truncated { needed, have }) => {
            assert_eq!(have, data.len());
            assert!(needed > have);
        }
        // NonMinimalKid, NonMinimalCtr (the enum is non-exhaustive).
        Err(_) => {}
    }
}
