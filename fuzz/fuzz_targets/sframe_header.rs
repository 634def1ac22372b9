//! SFrame header decoding never panics; a decoded header re-encodes (both encoders) to
//! exactly the bytes it was read from, so every header has one encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_frame::sframe::{HeaderError, SframeHeader};

fuzz_target!(|data: &[u8]| {
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
});
