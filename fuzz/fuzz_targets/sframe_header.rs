//! Placeholder until the crypto engineer's target lands: SFrame header decoding never
//! panics and a decoded header re-encodes to the bytes it was read from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_frame::sframe::SframeHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, used)) = SframeHeader::decode(data) {
        let mut wire = Vec::new();
        header.encode(&mut wire);
        assert_eq!(Some(&wire[..]), data.get(..used));
    }
});
