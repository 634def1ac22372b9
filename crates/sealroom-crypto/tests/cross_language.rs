//! Cross-language vectors of the room key schedule: `tests/data/room-key-schedule.json`.
//!
//! Every other implementation of sealroom (the TypeScript client, the bindings) checks
//! itself against this file: from a room secret, through the epoch secret and a sender's
//! base key, to the exact bytes of sealed frames and the envelopes that carry them, for all
//! five cipher suites. The file is generated here and committed. This test fails when the
//! committed file differs from what the crate computes; run it with
//! `SEALROOM_WRITE_VECTORS=1` to write the file anew after a deliberate change of the
//! schedule (which is a wire break: say so in docs/PROTOCOL.md).
//!
//! The intermediate secrets are computed here with plain HKDF, independently of the crate's
//! schedule, so the file also checks that the crate does what `schedule.rs` documents.

use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use sealroom_crypto::{CipherSuite, KeyContext, KeySchedule, RoomSecret, make_kid};
use sealroom_frame::{Envelope, Flags, MediaKind};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/room-key-schedule.json"
);

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct File {
    description: String,
    cases: Vec<Case>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Case {
    cipher_suite: u16,
    room_secret: String,
    /// `HKDF-Extract(salt = "sealroom 1.0 room", ikm = room_secret)`, SHA-256.
    room_prk: String,
    epoch: u64,
    session: u64,
    /// `session << 4 | epoch % 16`.
    kid: u64,
    /// `HKDF-Expand(room_prk, "sealroom 1.0 epoch " || suite(2) || epoch(8), 32)`.
    epoch_secret: String,
    /// `HKDF-Expand(epoch_secret, "sealroom 1.0 sender " || kid(8), 32)`; from here on
    /// RFC 9605 section 4.4.2 derives the SFrame key and salt.
    base_key: String,
    frames: Vec<SealedFrame>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct SealedFrame {
    kind: String,
    flags: u8,
    sender: u32,
    track: u32,
    group: u32,
    seq: u32,
    timestamp_us: u64,
    ctr: u64,
    plaintext: String,
    /// The 28 bytes authenticated beside the SFrame header (`Envelope::metadata`).
    metadata: String,
    /// The SFrame bytes: header, ciphertext, tag.
    sealed: String,
    /// The whole frame as it travels: the 32-byte envelope header, then `sealed`.
    wire: String,
}

fn hkdf_expand(prk: &[u8], info: &[&[u8]]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::from_prk(prk).expect("a 32-byte prk");
    let mut out = [0u8; 32];
    hk.expand_multi_info(info, &mut out).expect("32 bytes fit");
    out
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
        MediaKind::Data => "data",
    }
}

fn envelopes(epoch: u64) -> Vec<(Envelope, u64, Vec<u8>)> {
    let base = 1_700_000_000_000_000 + epoch * 1_000;
    let audio = Envelope {
        kind: MediaKind::Audio,
        flags: Flags::UNRELIABLE,
        sender: 7,
        track: 1,
        group: 0,
        seq: 41,
        timestamp_us: base,
    };
    let video = Envelope {
        kind: MediaKind::Video,
        flags: Flags::GROUP_START,
        sender: 7,
        track: 2,
        group: 3,
        seq: 0,
        timestamp_us: base + 20_000,
    };
    let data = Envelope {
        kind: MediaKind::Data,
        flags: Flags::empty(),
        sender: 0x0102_0304,
        track: 0xffff_fffe,
        group: 0,
        seq: 0xffff_ffff,
        timestamp_us: u64::MAX,
    };
    let video_payload: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
    vec![
        (audio, 0, b"sealroom audio frame".to_vec()),
        (video, 1, video_payload),
        (
            data,
            0x1_0000,
            b"{\"chat\":\"hello from the vectors\"}".to_vec(),
        ),
        (Envelope { seq: 42, ..audio }, 2, Vec::new()),
    ]
}

fn case(suite: CipherSuite, secret_seed: u8, epoch: u64, session: u64) -> Case {
    let secret_bytes: [u8; 32] =
        std::array::from_fn(|i| secret_seed.wrapping_add((i as u8).wrapping_mul(13)));
    let secret = RoomSecret::from_bytes(secret_bytes);
    let kid = make_kid(epoch, session);

    let (room_prk, _) = Hkdf::<Sha256>::extract(Some(b"sealroom 1.0 room"), &secret_bytes);
    let mut epoch_info = [0u8; 10];
    epoch_info[..2].copy_from_slice(&suite.id().to_be_bytes());
    epoch_info[2..].copy_from_slice(&epoch.to_be_bytes());
    let epoch_secret = hkdf_expand(&room_prk, &[b"sealroom 1.0 epoch ", &epoch_info]);
    let base_key = hkdf_expand(
        &epoch_secret,
        &[b"sealroom 1.0 sender ", &kid.to_be_bytes()],
    );

    let schedule = KeySchedule::new(&secret, suite);
    let from_schedule = schedule.key_context(epoch, kid);
    let from_base_key = KeyContext::derive(suite, kid, &base_key);

    let frames = envelopes(epoch)
        .into_iter()
        .map(|(envelope, ctr, plaintext)| {
            let metadata = envelope.metadata();
            let mut sealed = Vec::new();
            from_schedule
                .seal(ctr, &metadata, &plaintext, &mut sealed)
                .expect("seal");
            let mut independent = Vec::new();
            from_base_key
                .seal(ctr, &metadata, &plaintext, &mut independent)
                .expect("seal");
            assert_eq!(
                sealed, independent,
                "the schedule must derive the base key schedule.rs documents"
            );
            let mut wire = Vec::new();
            envelope
                .encode_header(sealed.len(), &mut wire)
                .expect("header");
            wire.extend_from_slice(&sealed);
            SealedFrame {
                kind: kind_name(envelope.kind).to_owned(),
                flags: envelope.flags.bits(),
                sender: envelope.sender,
                track: envelope.track,
                group: envelope.group,
                seq: envelope.seq,
                timestamp_us: envelope.timestamp_us,
                ctr,
                plaintext: hex::encode(&plaintext),
                metadata: hex::encode(metadata),
                sealed: hex::encode(&sealed),
                wire: hex::encode(&wire),
            }
        })
        .collect();

    Case {
        cipher_suite: suite.id(),
        room_secret: hex::encode(secret_bytes),
        room_prk: hex::encode(room_prk),
        epoch,
        session,
        kid,
        epoch_secret: hex::encode(epoch_secret),
        base_key: hex::encode(base_key),
        frames,
    }
}

fn computed() -> File {
    let mut cases = Vec::new();
    for (i, suite) in CipherSuite::ALL.into_iter().enumerate() {
        let seed = 0x10 * (i as u8 + 1);
        cases.push(case(suite, seed, 0, 1));
        // Epoch 17 wraps the KID's four epoch bits to 1; a large session id makes the
        // SFrame header's KID long.
        cases.push(case(suite, seed, 17, 0x0abc_def0_1234_5678));
    }
    File {
        description: "sealroom room key schedule: room secret -> room_prk -> epoch secret -> \
                      base key (then RFC 9605 section 4.4.2) -> sealed frames and their \
                      envelopes. Generated by crates/sealroom-crypto/tests/cross_language.rs; \
                      all byte strings are lowercase hex."
            .to_owned(),
        cases,
    }
}

#[test]
fn the_committed_vectors_match_the_crate() {
    let computed = computed();
    if std::env::var_os("SEALROOM_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&computed).expect("serialize") + "\n";
        std::fs::write(PATH, text).expect("write the vector file");
    }
    let text = std::fs::read_to_string(PATH).expect(
        "tests/data/room-key-schedule.json is missing: run this test with SEALROOM_WRITE_VECTORS=1",
    );
    let committed: File = serde_json::from_str(&text).expect("the vector file parses");
    assert_eq!(
        committed, computed,
        "the committed cross-language vectors differ from what the crate derives; if the \
         schedule changed on purpose, regenerate them with SEALROOM_WRITE_VECTORS=1"
    );
}

#[test]
fn every_committed_frame_opens_through_the_room_layer() {
    let text = std::fs::read_to_string(PATH).expect("vector file");
    let file: File = serde_json::from_str(&text).expect("parses");
    let mut opened = 0;
    for case in &file.cases {
        let suite = CipherSuite::from_id(case.cipher_suite).expect("known suite");
        let secret: [u8; 32] = hex::decode(&case.room_secret)
            .expect("hex")
            .try_into()
            .expect("32 bytes");
        let schedule = KeySchedule::new(&RoomSecret::from_bytes(secret), suite);
        let ctx = schedule.key_context(case.epoch, case.kid);
        for frame in &case.frames {
            let metadata = hex::decode(&frame.metadata).expect("hex");
            let mut sealed = hex::decode(&frame.sealed).expect("hex");
            let (_, range) = ctx.open_in_place(&metadata, &mut sealed).expect("opens");
            assert_eq!(hex::encode(&sealed[range]), frame.plaintext);
            // One flipped bit of the authenticated metadata must make it fail.
            let mut tampered = metadata.clone();
            tampered[4] ^= 1;
            let mut sealed = hex::decode(&frame.sealed).expect("hex");
            assert!(ctx.open_in_place(&tampered, &mut sealed).is_err());
            opened += 1;
        }
    }
    assert_eq!(
        opened,
        5 * 2 * 4,
        "every suite, two epochs, four frames each"
    );
}
