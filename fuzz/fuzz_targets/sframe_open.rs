//! Placeholder until the crypto engineer's target lands (opening garbage must fail
//! cleanly): for now only the envelope and SFrame header in front of a ciphertext are
//! parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealroom_frame::envelope::FrameRef;
use sealroom_frame::sframe::SframeHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = FrameRef::decode(data) {
        let _ = SframeHeader::decode(frame.payload);
    }
});
