//! Criterion benches of the wire format: envelope decode and encode (time per frame), and
//! deframing throughput over a stream of mixed frames.
//!
//! Each group runs its baseline in the same run, so the figure to quote is a ratio:
//! - decode against copying the payload out (what a decoder that copies would at least pay),
//!   and beside the borrowing decoder (the difference is the buffer's reference count);
//! - encode against copying the already encoded bytes into the output buffer;
//! - deframing against copying the whole stream once into one buffer.

use std::hint::black_box;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sealroom_frame::envelope::{Envelope, Flags, Frame, FrameRef, MediaKind};
use sealroom_frame::stream::{Deframer, write_frame};

/// Payload sizes: tiny data message, one 20 ms Opus frame, one packet of video, a large
/// video frame, the largest reliable data message.
const SIZES: [usize; 5] = [64, 160, 1200, 16 * 1024, 64 * 1024];

fn frame(kind: MediaKind, seq: u32, payload_len: usize) -> Frame {
    Frame {
        envelope: Envelope {
            kind,
            flags: Flags::GROUP_START,
            sender: 17,
            track: 2,
            group: 1000,
            seq,
            timestamp_us: 1_700_000_000_000_000,
        },
        payload: Bytes::from(vec![0x5a; payload_len]),
    }
}

fn encoded(frame: &Frame) -> Vec<u8> {
    let mut wire = Vec::with_capacity(frame.encoded_len());
    frame
        .encode(&mut wire)
        .expect("bench frames are within limits");
    wire
}

/// A reference-counted buffer as the transport hands it over (see tests/zero_alloc.rs).
fn shared(bytes: Vec<u8>) -> Bytes {
    Bytes::from_owner(bytes)
}

fn envelope_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope_decode");
    for size in SIZES {
        let input = shared(encoded(&frame(MediaKind::Video, 1, size)));
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::new("decode", size), &input, |b, input| {
            b.iter(|| Frame::decode(black_box(input)));
        });
        // The same parse borrowing the payload: the difference to `decode` is the
        // reference count of the shared buffer.
        group.bench_with_input(
            BenchmarkId::new("decode_borrowed", size),
            &input,
            |b, input| {
                b.iter(|| FrameRef::decode(black_box(input)).map(|frame| frame.payload.len()));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("copy_payload_baseline", size),
            &input,
            |b, input| {
                b.iter(|| Bytes::copy_from_slice(&black_box(input)[Envelope::HEADER_LEN..]));
            },
        );
    }
    group.finish();
}

fn envelope_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope_encode");
    for size in SIZES {
        let frame = frame(MediaKind::Video, 1, size);
        let wire = encoded(&frame);
        let mut out = Vec::with_capacity(wire.len());
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::new("encode", size), &frame, |b, frame| {
            b.iter(|| {
                out.clear();
                black_box(frame)
                    .encode(&mut out)
                    .expect("bench frames are within limits");
                black_box(out.len())
            });
        });
        group.bench_with_input(
            BenchmarkId::new("copy_encoded_baseline", size),
            &wire,
            |b, wire| {
                b.iter(|| {
                    out.clear();
                    out.put_slice(black_box(wire));
                    black_box(out.len())
                });
            },
        );
    }
    group.finish();
}

/// A stream as a publisher with audio, video and data sends it: per 64 KiB video keyframe,
/// a few 16 KiB and 1200-byte video frames, many 160-byte audio frames and 64-byte data
/// messages.
fn mixed_stream() -> (Vec<u8>, usize) {
    let pattern: [(MediaKind, usize, usize); 5] = [
        (MediaKind::Video, 64 * 1024, 1),
        (MediaKind::Video, 16 * 1024, 4),
        (MediaKind::Video, 1200, 20),
        (MediaKind::Audio, 160, 50),
        (MediaKind::Data, 64, 25),
    ];
    let mut stream = Vec::new();
    let mut frames = 0;
    for (kind, len, count) in pattern {
        for seq in 0..count {
            let seq = u32::try_from(seq).unwrap_or(u32::MAX);
            write_frame(&encoded(&frame(kind, seq, len)), &mut stream);
            frames += 1;
        }
    }
    (stream, frames)
}

fn deframe(c: &mut Criterion) {
    let mut group = c.benchmark_group("deframe_mixed_stream");
    let (stream, frames) = mixed_stream();
    group.throughput(Throughput::Bytes(stream.len() as u64));
    // The parameter is the size of the chunks the transport returns from the stream.
    for chunk_len in SIZES {
        let chunks: Vec<Bytes> = stream
            .chunks(chunk_len)
            .map(|chunk| shared(chunk.to_vec()))
            .collect();
        group.bench_with_input(
            BenchmarkId::new("deframe_and_decode", chunk_len),
            &chunks,
            |b, chunks| {
                b.iter(|| {
                    let mut deframer = Deframer::new(128 * 1024);
                    let mut seen = 0;
                    for chunk in chunks {
                        deframer.push(chunk.clone());
                        while let Ok(Some(bytes)) = deframer.next_frame() {
                            if Frame::decode(&bytes).is_ok() {
                                seen += 1;
                            }
                        }
                    }
                    assert_eq!(seen, frames);
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("copy_stream_baseline", chunk_len),
            &chunks,
            |b, chunks| {
                let mut out = Vec::with_capacity(stream.len());
                b.iter(|| {
                    out.clear();
                    for chunk in chunks {
                        out.extend_from_slice(black_box(chunk));
                    }
                    black_box(out.len())
                });
            },
        );
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = envelope_decode, envelope_encode, deframe
}
criterion_main!(benches);
