//! The archive format: round trips, the examples docs/RECORDING.md gives, and segments
//! that are cut short, damaged or hostile.

use bytes::{BufMut, Bytes};
use sealroom_frame::control::{ControlMessage, LeaveReason, MemberInfo};
use sealroom_frame::envelope::{Envelope, Flags, Frame, MediaKind};

use super::reader::SegmentError;
use super::record::RECORD_OVERHEAD;
use super::segment::{HEADER_LEN, SealedSegment};
use super::*;

const T0: u64 = 1_800_000_000_000_000;

fn header() -> SegmentHeader {
    SegmentHeader {
        recording: [0xab; 16],
        session: 2,
        index: 7,
        created_us: T0,
    }
}

fn sealed_frame(sender: u32, seq: u32, payload: &[u8]) -> Bytes {
    let frame = Frame {
        envelope: Envelope {
            kind: MediaKind::Audio,
            flags: Flags::empty(),
            sender,
            track: 1,
            group: 0,
            seq,
            timestamp_us: T0 + u64::from(seq),
        },
        payload: Bytes::copy_from_slice(payload),
    };
    let mut out = Vec::new();
    frame.encode(&mut out).expect("encodes");
    Bytes::from(out)
}

fn sample_records() -> Vec<Record> {
    vec![
        Record::Joined {
            at_us: T0,
            member: 9,
            rejoin: false,
        },
        Record::Control {
            at_us: T0 + 1,
            message: ControlMessage::MemberJoined(MemberInfo {
                member: 1,
                user: "alice".into(),
                tracks: Vec::new(),
            }),
        },
        Record::frame(T0 + 2, sealed_frame(1, 0, b"sealed-0")).expect("frame"),
        Record::frame(T0 + 3, sealed_frame(1, 1, b"sealed-1")).expect("frame"),
        Record::Loss {
            at_us: T0 + 4,
            kind: LossKind::Disconnected,
            from_us: T0 + 3,
            to_us: T0 + 4,
            count: 0,
            detail: "relay restarted".into(),
        },
        Record::Control {
            at_us: T0 + 5,
            message: ControlMessage::MemberLeft {
                member: 1,
                reason: LeaveReason::Left,
            },
        },
    ]
}

/// A closed segment holding `records`, as bytes.
fn segment_bytes(records: &[Record]) -> (SealedSegment, Bytes) {
    let dir = std::env::temp_dir().join(format!(
        "sealroom-archive-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut writer = SegmentWriter::create(&dir, header()).expect("create");
    for (i, record) in records.iter().enumerate() {
        writer.append(record, T0 + i as u64).expect("append");
    }
    let sealed = writer.finish(T0 + 100).expect("finish");
    let bytes = Bytes::from(std::fs::read(&sealed.path).expect("read"));
    let _ = std::fs::remove_dir_all(&dir);
    (sealed, bytes)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn records_of(contents: &SegmentContents) -> Vec<Record> {
    contents.records.iter().map(|(_, r)| r.clone()).collect()
}

#[test]
fn a_closed_segment_reads_back_record_for_record() {
    let records = sample_records();
    let (sealed, bytes) = segment_bytes(&records);
    assert_eq!(
        sealed.records,
        records.len() as u64 + 1,
        "the End record counts"
    );
    assert_eq!(sealed.bytes, bytes.len() as u64);
    assert_eq!(sealed.header.object_name(), "segments/000002-000007.srs");
    let contents = read_segment("s", bytes);
    assert!(contents.complete);
    assert_eq!(contents.problems, Vec::new());
    assert_eq!(contents.header, Some(header()));
    assert_eq!(records_of(&contents), records);
}

#[test]
fn the_examples_in_recording_md_are_the_bytes_written() {
    assert_eq!(
        hex::encode(header().encode()),
        concat!(
            "5345414c5245430a",
            "01",
            "000000",
            "abababababababababababababababab",
            "00000002",
            "00000007",
            "0006651728988000"
        )
    );
    let mut out = Vec::new();
    Record::Joined {
        at_us: T0,
        member: 9,
        rejoin: true,
    }
    .encode(&mut out)
    .expect("encodes");
    assert_eq!(
        hex::encode(&out),
        concat!(
            "5352",
            "03",
            "00",
            "0000000d",
            "0006651728988000",
            "00000009",
            "01",
            "6e1078e1"
        )
    );
}

#[test]
fn a_segment_cut_anywhere_reads_up_to_its_last_complete_record() {
    let records = sample_records();
    let (_, bytes) = segment_bytes(&records);
    // Where each record ends.
    let full = read_segment("s", bytes.clone());
    let mut ends: Vec<usize> = full
        .records
        .iter()
        .skip(1)
        .map(|(o, _)| *o as usize)
        .collect();
    ends.push(bytes.len() - (RECORD_OVERHEAD + 16)); // before End
    for cut in 0..bytes.len() {
        let contents = read_segment("seg", bytes.slice(..cut));
        let complete_before = if cut < HEADER_LEN {
            0
        } else {
            ends.iter().filter(|end| **end <= cut).count()
        };
        assert_eq!(
            contents.records.len(),
            complete_before,
            "cut at {cut}: every complete record and no other"
        );
        assert_eq!(records_of(&contents), records[..complete_before]);
        assert!(!contents.complete);
        let last = contents.problems.last().expect("a cut is reported");
        assert_eq!(last.object, "seg");
        if cut >= HEADER_LEN {
            assert!(
                matches!(
                    last.error,
                    SegmentError::Truncated { .. } | SegmentError::Unfinished
                ),
                "cut at {cut}: {last}"
            );
            assert!(last.offset as usize <= cut);
        }
    }
}

#[test]
fn a_damaged_record_is_skipped_and_reading_resumes_at_the_next_one() {
    let records = sample_records();
    let (_, bytes) = segment_bytes(&records);
    let full = read_segment("s", bytes.clone());
    let third = full.records[2].0 as usize;
    // Flip one byte inside the third record's body: its CRC fails.
    let mut damaged = bytes.to_vec();
    damaged[third + 20] ^= 0x55;
    let contents = read_segment("seg-3", Bytes::from(damaged));
    let mut expected = records;
    expected.remove(2);
    assert_eq!(
        records_of(&contents),
        expected,
        "everything else still opens"
    );
    assert!(contents.complete);
    let problem = &contents.problems[0];
    assert_eq!(problem.offset as usize, third, "{problem}");
    assert!(
        problem
            .to_string()
            .starts_with(&format!("seg-3 at byte {third}: damaged"))
    );

    // A length blown up to far past the end: a damage, not a cut, as records follow.
    let mut damaged = bytes.to_vec();
    damaged[third + 4..third + 8].copy_from_slice(&0x00ff_ffffu32.to_be_bytes());
    let contents = read_segment("seg", Bytes::from(damaged));
    assert_eq!(records_of(&contents), expected);
    assert!(matches!(
        contents.problems[0].error,
        SegmentError::Damaged(_)
    ));
}

#[test]
fn hostile_headers_and_lengths_are_typed_problems() {
    let (_, bytes) = segment_bytes(&sample_records());
    let mut wrong_version = bytes.to_vec();
    wrong_version[8] = 2;
    let contents = read_segment("v2", Bytes::from(wrong_version));
    assert_eq!(
        contents.problems[0].error,
        SegmentError::UnsupportedVersion(2)
    );
    assert!(contents.records.is_empty());
    let contents = read_segment("junk", Bytes::from_static(b"GIF89a not a segment at all"));
    assert_eq!(contents.problems[0].error, SegmentError::BadMagic);

    // A record claiming a body over the limit, then garbage: nothing is allocated for it.
    let mut hostile = header().encode().to_vec();
    hostile.put_slice(b"SR\x01\x00");
    hostile.put_u32(u32::MAX);
    hostile.extend(std::iter::repeat_n(b'S', 4096));
    let contents = read_segment("huge", Bytes::from(hostile));
    assert!(contents.records.is_empty());
    assert!(matches!(
        contents.problems[0].error,
        SegmentError::DamagedToEnd(_)
    ));

    // Many markers with lengths that just fit cost bounded work and find nothing.
    let mut many = header().encode().to_vec();
    for _ in 0..20_000 {
        many.put_slice(b"SR\x01\x00\x00\x00\x10\x00");
    }
    let contents = read_segment("many", Bytes::from(many));
    assert!(contents.records.is_empty());
}

#[test]
fn unknown_record_types_are_skipped_and_reported() {
    let (_, bytes) = segment_bytes(&sample_records());
    let full = read_segment("s", bytes.clone());
    let second = full.records[1].0 as usize;
    let third = full.records[2].0 as usize;
    let mut future = bytes.to_vec();
    future[second + 2] = 0x7e;
    let crc = crc32fast::hash(&future[second..third - 4]);
    future[third - 4..third].copy_from_slice(&crc.to_be_bytes());
    let contents = read_segment("s", Bytes::from(future));
    assert_eq!(contents.records.len(), full.records.len() - 1);
    assert!(
        contents.complete,
        "the End count includes the skipped record"
    );
    assert!(matches!(
        contents.problems[0].error,
        SegmentError::BadRecord(RecordError::UnknownType(0x7e))
    ));
}

#[test]
fn manifests_round_trip_and_bad_ones_are_refused() {
    let mut manifest = Manifest::new(&[0xab; 16], "app", "room", T0);
    manifest.sessions.push(manifest::SessionEntry {
        session: 1,
        started_us: T0,
    });
    manifest.segments.push(SegmentEntry {
        name: "segments/000001-000001.srs".into(),
        session: 1,
        index: 1,
        first_us: T0,
        last_us: T0 + 5,
        records: 6,
        frames: 2,
        bytes: 300,
        complete: true,
    });
    let json = manifest.to_json();
    assert_eq!(Manifest::parse(&json), Ok(manifest.clone()));
    assert_eq!(manifest.next_session(), 2);
    let mut bad = manifest.clone();
    bad.segments[0].name = "segments/../../etc/passwd".into();
    assert!(matches!(
        Manifest::parse(&bad.to_json()),
        Err(ManifestError::BadSegmentName(_))
    ));
    let mut newer = manifest.clone();
    newer.version = 9;
    assert_eq!(
        Manifest::parse(&newer.to_json()),
        Err(ManifestError::UnsupportedVersion(9))
    );
    assert!(matches!(
        Manifest::parse(b"{\"format\": 1"),
        Err(ManifestError::Malformed(_))
    ));
}
