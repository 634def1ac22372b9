//! The deframer never panics; fed the stream in arbitrary chunks it returns the same frames
//! and the same end (error or clean finish) as when fed the stream in one piece; no frame
//! exceeds the limit; after "need more" it holds less than the limit plus a prefix; and the
//! frames re-framed give back the stream they came from (one encoding per stream).
//!
//! Shared by the fuzz target of the same name and by the corpus replay test
//! (`tests/fuzz_corpus.rs` in the root workspace), so both check exactly the same.

use bytes::Bytes;
use sealroom_frame::stream::{DeframeError, Deframer, MAX_PREFIX_LEN, write_frame};

fn deframe(max: usize, pieces: &[Bytes]) -> (Vec<Bytes>, Result<(), DeframeError>) {
    let mut deframer = Deframer::new(max);
    let mut frames = Vec::new();
    for piece in pieces {
        deframer.push(piece.clone());
        loop {
            match deframer.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= max);
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(err) => {
                    assert_eq!(deframer.next_frame(), Err(err), "errors are final");
                    return (frames, Err(err));
                }
            }
        }
        assert!(deframer.buffered_len() < max + MAX_PREFIX_LEN);
    }
    (frames, deframer.finish())
}

/// The check the fuzz target runs on every input: the bytes are turned into the
/// target's input exactly as `libfuzzer-sys` does (`arbitrary_take_rest`), and
/// bytes too short for it are skipped.
pub fn run(bytes: &[u8]) {
    use arbitrary::{Arbitrary, Unstructured};
    if bytes.len() < <(u16, Vec<u8>, &[u8]) as Arbitrary<'_>>::size_hint(0).0 {
        return;
    }
    let Ok(input) =
        <(u16, Vec<u8>, &[u8]) as Arbitrary<'_>>::arbitrary_take_rest(Unstructured::new(bytes))
    else {
        return;
    };
    let (max, cuts, stream) = input;
    let max = usize::from(max);
    let whole = Bytes::copy_from_slice(stream);

    let mut pieces = Vec::new();
    let mut rest = whole.clone();
    for cut in cuts {
        if rest.is_empty() {
            break;
        }
        let at = usize::from(cut).min(rest.len());
        pieces.push(rest.split_to(at));
    }
    pieces.push(rest);

    let one_shot = deframe(max, std::slice::from_ref(&whole));
    let chunked = deframe(max, &pieces);
    assert_eq!(chunked, one_shot);

    let (frames, end) = one_shot;
    let mut reframed = Vec::new();
    for frame in &frames {
        write_frame(frame, &mut reframed);
    }
    match end {
        Ok(()) => assert_eq!(reframed, stream),
        Err(_) => assert!(stream.starts_with(&reframed)),
    }
}
