//! Envelope decoding never panics, the owned and borrowed decoders agree, a decoded frame
//! re-encodes to exactly its input (one encoding per frame), its payload is a slice of the
//! input, and a payload limit refuses exactly the frames above it.
//!
//! Shared by the fuzz target of the same name and by the corpus replay test
//! (`tests/fuzz_corpus.rs` in the root workspace), so both check exactly the same.

use bytes::Bytes;
use sealroom_frame::envelope::{DecodeError, Envelope, Frame, FrameRef};

/// The check the fuzz target runs on every input.
pub fn run(data: &[u8]) {
    let input = Bytes::copy_from_slice(data);
    let owned = Frame::decode(&input);
    let borrowed = FrameRef::decode(data);
    match (&owned, &borrowed) {
        (Ok(frame), Ok(frame_ref)) => {
            assert_eq!(frame.envelope, frame_ref.envelope);
            assert_eq!(&frame.payload[..], frame_ref.payload);
            assert!(
                input.as_ptr_range().contains(&frame.payload.as_ptr()) || frame.payload.is_empty()
            );
            let mut wire = Vec::new();
            frame.encode(&mut wire).expect("a decoded frame encodes");
            assert_eq!(wire, data);
            assert_eq!(
                &frame.envelope.metadata()[..],
                &data[..Envelope::METADATA_LEN]
            );

            // A limit derived from the input: just below, at and above the payload length.
            let len = frame.payload.len();
            assert_eq!(
                FrameRef::decode_with_limit(data, len.wrapping_sub(1)),
                if len == 0 {
                    Ok(*frame_ref)
                } else {
                    Err(DecodeError::Oversize { len, max: len - 1 })
                }
            );
            assert_eq!(FrameRef::decode_with_limit(data, len), Ok(*frame_ref));
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("owned and borrowed decoders disagree: {owned:?} vs {borrowed:?}"),
    }
}
