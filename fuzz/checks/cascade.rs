//! What a peer node sends on a link's cascade stream, read as the link reads it: the
//! stream framing, a `Hello` first, then cascade events. Decoding never panics, and
//! whatever decodes encodes again and decodes to the same value.
//!
//! Shared by the fuzz target of the same name and by the corpus replay test
//! (`tests/fuzz_corpus.rs` in the root workspace), so both check exactly the same.

use bytes::{Bytes, BytesMut};
use sealroom_frame::stream::Deframer;
use sealroom_relay::cluster::wire::{
    MAX_LINK_MESSAGE, decode_event, encode_event, hello_reencoded,
};

fn check_hello(body: &Bytes) {
    if let Ok(again) = hello_reencoded(body) {
        assert_eq!(
            hello_reencoded(&again).as_ref(),
            Ok(&again),
            "a decoded Hello encodes to itself"
        );
    }
}

fn check_event(body: &Bytes) {
    if let Ok(event) = decode_event(body) {
        let mut buf = BytesMut::new();
        encode_event(&event, &mut buf).expect("a decoded event encodes");
        let mut deframer = Deframer::new(MAX_LINK_MESSAGE);
        deframer.push(buf.freeze());
        let frame = deframer
            .next_frame()
            .expect("its framing is valid")
            .expect("one whole frame");
        assert_eq!(
            decode_event(&frame).as_ref(),
            Ok(&event),
            "decode(encode(x)) == x"
        );
    }
}

/// The check the fuzz target runs on every input.
pub fn run(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    // The bytes as one message body, so most inputs reach the decoders.
    check_hello(&bytes);
    check_event(&bytes);
    // The bytes as a stream: the framing, then a Hello and events, as a link reads them.
    let mut deframer = Deframer::new(MAX_LINK_MESSAGE);
    deframer.push(bytes);
    let mut first = true;
    while let Ok(Some(frame)) = deframer.next_frame() {
        if first {
            check_hello(&frame);
            first = false;
        } else {
            check_event(&frame);
        }
    }
}
