//! Decoding allocates nothing and copies no payload: the relay's receive path (deframe a
//! stream chunk, decode each envelope) runs on reference-counted slices of the buffer the
//! transport handed over.
//!
//! The counting allocator sees every thread of the process, so this file runs without the
//! libtest harness (`harness = false` in Cargo.toml): nothing else runs while it counts.

use std::alloc::System;
use std::ops::Range;

use bytes::Bytes;
use sealroom_frame::envelope::{Envelope, Flags, Frame, FrameRef, MediaKind};
use sealroom_frame::stream::{Deframer, write_frame};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const ROUNDS: usize = 1000;

fn frame(seq: u32, payload_len: usize) -> Frame {
    Frame {
        envelope: Envelope {
            kind: MediaKind::Video,
            flags: Flags::GROUP_START,
            sender: 3,
            track: 1,
            group: 9,
            seq,
            timestamp_us: 123_456_789,
        },
        payload: Bytes::from(vec![0xa5; payload_len]),
    }
}

/// Input as the transport delivers it: a `Bytes` that is already reference-counted, so
/// slicing it only bumps the count. `Bytes::from_owner` makes one (allocating its shared
/// header here, once). A `Bytes` made from a `Vec` or `Box<[u8]>` is "promotable" instead:
/// it has no shared header yet and its first clone or slice allocates one; so is the
/// `freeze` of a `BytesMut` that was never split. That allocation belongs to the
/// conversion, not to the decoder, and is kept out of the count. (quinn hands out chunks
/// split off its receive buffer, which are of the shared kind.)
fn transport_bytes(bytes: &[u8]) -> Bytes {
    Bytes::from_owner(bytes.to_vec())
}

fn within(range: &Range<*const u8>, slice: &[u8]) -> bool {
    let inner = slice.as_ptr_range();
    range.start <= inner.start && inner.end <= range.end
}

fn envelope_decode_allocates_nothing() {
    for payload_len in [0, 64, 1200, 65_536] {
        let mut wire = Vec::new();
        frame(1, payload_len).encode(&mut wire).expect("encodable");
        let input = transport_bytes(&wire);
        let range = input.as_ptr_range();

        let region = Region::new(GLOBAL);
        for _ in 0..ROUNDS {
            let decoded = Frame::decode(&input).expect("valid frame");
            assert!(within(&range, &decoded.payload), "payload copied");
            assert_eq!(decoded.payload.len(), payload_len);
            let borrowed = FrameRef::decode(&input).expect("valid frame");
            assert!(within(&range, borrowed.payload), "payload copied");
        }
        let change = region.change();
        assert_eq!(
            (change.allocations, change.reallocations),
            (0, 0),
            "{ROUNDS} decodes of a {payload_len}-byte frame allocated"
        );
        // The payload points just past the header of the same allocation.
        let decoded = Frame::decode(&input).expect("valid frame");
        assert_eq!(
            decoded.payload.as_ptr(),
            input[Envelope::HEADER_LEN..].as_ptr()
        );
    }
}

fn deframe_then_decode_allocates_nothing() {
    // One stream chunk holding frames of mixed sizes, as one QUIC read might return.
    let sizes = [0, 64, 160, 1200, 16_384, 160, 64];
    let mut wire = Vec::new();
    for (seq, &len) in (0u32..).zip(&sizes) {
        let mut encoded = Vec::new();
        frame(seq, len).encode(&mut encoded).expect("encodable");
        write_frame(&encoded, &mut wire);
    }
    let chunk = transport_bytes(&wire);
    let range = chunk.as_ptr_range();
    let mut deframer = Deframer::new(64 * 1024);
    // The deframer's queue allocates its slots on the first push; that is per stream, not
    // per frame, so it happens before counting.
    deframer.push(chunk);
    let mut frames = 0;
    let mut seen = Vec::with_capacity(sizes.len());

    let region = Region::new(GLOBAL);
    while let Some(bytes) = deframer.next_frame().expect("valid stream") {
        let decoded = Frame::decode(&bytes).expect("valid frame");
        assert!(within(&range, &bytes), "frame copied");
        assert!(within(&range, &decoded.payload), "payload copied");
        seen.push((decoded.envelope.seq, decoded.payload.len()));
        frames += 1;
    }
    let change = region.change();
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "deframing and decoding {frames} frames allocated"
    );
    let expected: Vec<(u32, usize)> = (0u32..).zip(sizes).collect();
    assert_eq!(seen, expected);
    assert_eq!(deframer.finish(), Ok(()));
}

fn deframer_allocates_nothing_ahead_of_the_data() {
    // A peer declares a maximal frame and sends a few bytes of it in two pieces: the
    // deframer must stage what arrived, not reserve what was promised.
    let max = 1 << 20;
    let mut wire = Vec::new();
    sealroom_frame::stream::write_len_prefix(max, &mut wire);
    wire.extend_from_slice(&[0u8; 16]);
    let (first, second) = wire.split_at(3);
    let (first, second) = (transport_bytes(first), transport_bytes(second));
    let mut deframer = Deframer::new(max);

    let region = Region::new(GLOBAL);
    deframer.push(first);
    deframer.push(second);
    assert_eq!(deframer.next_frame(), Ok(None));
    let change = region.change();
    assert!(
        change.bytes_allocated < 1024,
        "{} bytes allocated for {} bytes received",
        change.bytes_allocated,
        wire.len()
    );
    assert_eq!(deframer.buffered_len(), wire.len());
}

fn main() {
    let checks: [(&str, fn()); 3] = [
        (
            "envelope_decode_allocates_nothing",
            envelope_decode_allocates_nothing,
        ),
        (
            "deframe_then_decode_allocates_nothing",
            deframe_then_decode_allocates_nothing,
        ),
        (
            "deframer_allocates_nothing_ahead_of_the_data",
            deframer_allocates_nothing_ahead_of_the_data,
        ),
    ];
    // The few libtest arguments test runners pass: `--list` (cargo-nextest reads the
    // `name: test` lines), `--exact`, and names to filter on; no check is ignored.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |wanted: &str| args.iter().any(|arg| arg == wanted);
    let mut filters = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if matches!(
            arg.as_str(),
            "--format" | "--color" | "--test-threads" | "--skip" | "--logfile"
        ) {
            rest.next();
        } else if !arg.starts_with('-') {
            filters.push(arg.as_str());
        }
    }
    let exact = flag("--exact");
    let selected: Vec<_> = checks
        .iter()
        .filter(|(name, _)| {
            filters.is_empty()
                || filters
                    .iter()
                    .any(|f| if exact { name == f } else { name.contains(f) })
        })
        .collect();
    if flag("--list") {
        if !flag("--ignored") {
            for (name, _) in &selected {
                println!("{name}: test");
            }
        }
        return;
    }
    if flag("--ignored") {
        return;
    }
    for (name, check) in &selected {
        check();
        println!("test {name} ... ok");
    }
    println!("zero_alloc: {} passed, 0 failed", selected.len());
}
