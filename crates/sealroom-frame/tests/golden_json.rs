//! Golden encodings for implementations in other languages (the TypeScript client in `web/`
//! reads them): control messages, media envelopes, stream framing and refused inputs with
//! the error each must give, written by this crate's encoders into
//! `tests/data/golden-wire.json`.
//!
//! The file is committed. This test fails when it is stale (a codec changed, or a variant was
//! added); `SEALROOM_BLESS=1 cargo test -p sealroom-frame --test golden_json` writes it anew,
//! and then the other languages' tests say whether they still agree.

use bytes::{Bytes, BytesMut};
use sealroom_frame::control::{
    ControlError, ControlMessage, ErrorCode, JoinOptions, LeaveReason, MemberInfo, MlsRefusal,
    SessionLimits, TrackInfo,
};
use sealroom_frame::envelope::{DecodeError, Envelope, Flags, Frame, MediaKind};
use sealroom_frame::stream::{DeframeError, Deframer, write_len_prefix};
use serde_json::{Value, json};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden-wire.json");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn control_samples() -> Vec<ControlMessage> {
    let audio = TrackInfo {
        track: 1,
        kind: MediaKind::Audio,
    };
    let video = TrackInfo {
        track: u32::MAX,
        kind: MediaKind::Video,
    };
    let data = TrackInfo {
        track: 300,
        kind: MediaKind::Data,
    };
    let mut samples = vec![
        ControlMessage::Join {
            ticket: "eyJhbGciOiJIUzI1NiJ9.e30.sig".into(),
            client_name: "sealroom-web".into(),
            client_version: "0.1.0".into(),
            options: JoinOptions {
                auto_subscribe: true,
                room: None,
            },
        },
        ControlMessage::Join {
            ticket: "t".repeat(200),
            client_name: "ブラウザ".into(),
            client_version: String::new(),
            options: JoinOptions {
                auto_subscribe: false,
                room: Some("room-é".into()),
            },
        },
        ControlMessage::Joined {
            member: 7,
            roster: vec![
                MemberInfo {
                    member: 1,
                    user: "alice".into(),
                    tracks: vec![audio, video, data],
                },
                MemberInfo {
                    member: 128,
                    user: String::new(),
                    tracks: Vec::new(),
                },
            ],
            limits: SessionLimits {
                max_frame_len: 262_144,
                data_messages_per_sec: 30,
                data_bytes_per_sec: 16_384,
                ticket_expires_in_secs: u64::MAX,
            },
        },
        ControlMessage::MemberJoined(MemberInfo {
            member: u32::MAX,
            user: "bob".into(),
            tracks: vec![data],
        }),
        ControlMessage::TrackPublished {
            member: 16_384,
            track: video,
        },
        ControlMessage::TrackUnpublished {
            member: 1,
            track: 2,
        },
        ControlMessage::Subscribe {
            member: 3,
            track: 4,
        },
        ControlMessage::Unsubscribe {
            member: 5,
            track: 6,
        },
        ControlMessage::KeyframeRequest {
            member: 127,
            track: 2_097_152,
        },
        ControlMessage::RefreshTicket {
            ticket: "fresh".into(),
        },
        ControlMessage::TicketRefreshed {
            expires_in_secs: 3600,
        },
        ControlMessage::Leave,
        ControlMessage::GoAway {
            code: ErrorCode::ShuttingDown,
            reconnect_after_ms: 1000,
        },
        ControlMessage::MlsSync,
        ControlMessage::MlsState {
            position: 0,
            group_info: None,
        },
        ControlMessage::MlsState {
            position: 300,
            group_info: Some(vec![0, 1, 0xff]),
        },
        ControlMessage::MlsPublish {
            position: 1,
            group_info: vec![0xaa; 130],
        },
        ControlMessage::MlsCommit {
            position: u64::MAX,
            commit: vec![1, 2, 3],
            group_info: Vec::new(),
        },
        ControlMessage::MlsCommitted {
            member: 7,
            position: 2,
            commit: vec![9],
        },
        ControlMessage::MlsAccepted { position: 3 },
        ControlMessage::Redirect {
            address: "10.0.0.2:4433".into(),
        },
        ControlMessage::MlsGroupInfoPart {
            bytes: vec![0x01, 0xfe, 0x80],
        },
    ];
    for reason in [
        MlsRefusal::Stale,
        MlsRefusal::Exists,
        MlsRefusal::NoGroup,
        MlsRefusal::TooLarge,
        MlsRefusal::Empty,
    ] {
        samples.push(ControlMessage::MlsRefused {
            position: 4,
            reason,
        });
    }
    samples.push(ControlMessage::RecorderPresent { member: 300 });
    for (member, reason) in [
        LeaveReason::Left,
        LeaveReason::TimedOut,
        LeaveReason::Kicked,
        LeaveReason::Replaced,
        LeaveReason::RoomDismissed,
        LeaveReason::TicketExpired,
        LeaveReason::Removed,
        LeaveReason::ShuttingDown,
    ]
    .into_iter()
    .enumerate()
    {
        samples.push(ControlMessage::MemberLeft {
            member: u32::try_from(member * 100).expect("small"),
            reason,
        });
    }
    for code in ErrorCode::ALL {
        samples.push(ControlMessage::Error {
            code,
            message: code.label().into(),
        });
    }
    samples
}

fn control_rows() -> Vec<Value> {
    control_samples()
        .iter()
        .map(|message| {
            let bytes = message.to_bytes().expect("encodes");
            json!({ "message": message, "hex": hex(&bytes) })
        })
        .collect()
}

fn control_error_label(err: &ControlError) -> &'static str {
    match err {
        ControlError::Empty => "empty",
        ControlError::UnknownVersion(_) => "unknown_version",
        ControlError::TooLarge { .. } => "too_large",
        ControlError::Malformed(_) => "malformed",
        ControlError::TrailingBytes(_) => "trailing_bytes",
        ControlError::NonCanonical => "non_canonical",
        _ => "other",
    }
}

fn control_refusals() -> Vec<Value> {
    let mut too_large = vec![0x01, 0x09];
    too_large.extend(std::iter::repeat_n(0x61, 70_000));
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("another version", vec![0x02, 0x0b]),
        ("a variant nobody declared", vec![0x01, 0x7f]),
        ("a bytes after Leave", vec![0x01, 0x0b, 0x00]),
        ("an over-long varint for Leave", vec![0x01, 0x8b, 0x00]),
        ("an over-long member id", vec![0x01, 0x06, 0x81, 0x00, 0x01]),
        ("a cut-short Subscribe", vec![0x01, 0x06, 0x03]),
        (
            "a bool that is 2",
            vec![0x01, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00],
        ),
        (
            "an option tag that is 2",
            vec![0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02],
        ),
        ("invalid UTF-8", vec![0x01, 0x09, 0x02, 0xc3, 0x28]),
        (
            "a string longer than the input",
            vec![0x01, 0x09, 0x05, 0x61],
        ),
        (
            "an error code nobody declared",
            vec![0x01, 0x0c, 0x7f, 0x00],
        ),
        (
            "a leave reason nobody declared",
            vec![0x01, 0x03, 0x01, 0x7f],
        ),
        (
            "a media kind nobody declared",
            vec![0x01, 0x04, 0x01, 0x01, 0x03],
        ),
        (
            "a varint over u32",
            vec![0x01, 0x06, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00],
        ),
        ("over 64 KiB", too_large),
    ];
    inputs
        .into_iter()
        .map(|(what, bytes)| {
            let err = ControlMessage::decode(&bytes).expect_err(what);
            let label = control_error_label(&err);
            let shown = if bytes.len() > 64 {
                json!({ "prefix": hex(&bytes[..2]), "fill": "61", "len": bytes.len() })
            } else {
                json!(hex(&bytes))
            };
            json!({ "what": what, "hex": shown, "error": label })
        })
        .collect()
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
        MediaKind::Data => "data",
    }
}

fn envelope_rows() -> Vec<Value> {
    let samples = [
        (
            Envelope {
                kind: MediaKind::Video,
                flags: Flags::GROUP_START,
                sender: 7,
                track: 2,
                group: 42,
                seq: 0,
                timestamp_us: 1_700_000_000_000_000,
            },
            vec![0xde, 0xad, 0xbe, 0xef],
        ),
        (
            Envelope {
                kind: MediaKind::Audio,
                flags: Flags::DISCARDABLE,
                sender: u32::MAX,
                track: 0,
                group: 0,
                seq: u32::MAX,
                timestamp_us: u64::MAX,
            },
            Vec::new(),
        ),
        (
            Envelope {
                kind: MediaKind::Data,
                flags: Flags::UNRELIABLE | Flags::END_OF_GROUP,
                sender: 1,
                track: 9,
                group: 3,
                seq: 12,
                timestamp_us: 1,
            },
            b"hello".to_vec(),
        ),
    ];
    samples
        .into_iter()
        .map(|(envelope, payload)| {
            let frame = Frame {
                envelope,
                payload: Bytes::from(payload.clone()),
            };
            let mut buf = BytesMut::new();
            frame.encode(&mut buf).expect("encodes");
            json!({
                "kind": kind_name(envelope.kind),
                "flags": envelope.flags.bits(),
                "sender": envelope.sender,
                "track": envelope.track,
                "group": envelope.group,
                "seq": envelope.seq,
                "timestamp_us": envelope.timestamp_us,
                "payload": hex(&payload),
                "metadata": hex(&envelope.metadata()),
                "hex": hex(&buf),
            })
        })
        .collect()
}

fn envelope_error_label(err: &DecodeError) -> &'static str {
    match err {
        DecodeError::Truncated { .. } => "truncated",
        DecodeError::UnknownVersion(_) => "unknown_version",
        DecodeError::UnknownKind(_) => "unknown_kind",
        DecodeError::UnknownFlags(_) => "unknown_flags",
        DecodeError::Reserved(_) => "reserved",
        DecodeError::Oversize { .. } => "oversize",
        DecodeError::TrailingBytes(_) => "trailing_bytes",
        _ => "other",
    }
}

fn envelope_refusals() -> Vec<Value> {
    let good = unhex("0101010000000007000000020000000000000000000000000000000000000001aa");
    let mut inputs: Vec<(&str, Vec<u8>)> = vec![("cut inside the header", good[..20].to_vec())];
    let mut edit = |what: &'static str, at: usize, byte: u8| {
        let mut bytes = good.clone();
        bytes[at] = byte;
        inputs.push((what, bytes));
    };
    edit("version 2", 0, 0x02);
    edit("kind 3", 1, 0x03);
    edit("flag bit 4", 2, 0x10);
    edit("reserved byte 1", 3, 0x01);
    edit("a payload length of 2 with 1 byte", 31, 0x02);
    edit("a payload length over 16 MiB", 28, 0x02);
    let mut trailing = good.clone();
    trailing.push(0);
    inputs.push(("a byte after the payload", trailing));
    inputs
        .into_iter()
        .map(|(what, bytes)| {
            let err = Frame::decode(&Bytes::from(bytes.clone())).expect_err(what);
            json!({ "what": what, "hex": hex(&bytes), "error": envelope_error_label(&err) })
        })
        .collect()
}

fn framing_rows() -> Vec<Value> {
    [0usize, 1, 63, 64, 1200, 16_383, 16_384, 1_073_741_823]
        .into_iter()
        .map(|len| {
            let mut buf = BytesMut::new();
            write_len_prefix(len, &mut buf);
            json!({ "len": len, "prefix": hex(&buf) })
        })
        .collect()
}

fn framing_refusals() -> Vec<Value> {
    let inputs: Vec<(&str, Vec<u8>, usize)> = vec![
        ("5 in the two-byte form", vec![0x40, 0x05], 1024),
        (
            "63 in the four-byte form",
            vec![0x80, 0x00, 0x00, 0x3f],
            1024,
        ),
        ("2000 with a limit of 1024", vec![0x47, 0xd0], 1024),
    ];
    let mut rows: Vec<Value> = inputs
        .into_iter()
        .map(|(what, bytes, max)| {
            let mut deframer = Deframer::new(max);
            deframer.push(Bytes::from(bytes.clone()));
            let err = deframer.next_frame().expect_err(what);
            let label = match err {
                DeframeError::Oversize { .. } => "oversize",
                DeframeError::NonMinimalPrefix { .. } => "non_minimal_prefix",
                DeframeError::Truncated { .. } => "truncated",
                _ => "other",
            };
            json!({ "what": what, "hex": hex(&bytes), "max": max, "error": label, "at": "next" })
        })
        .collect();
    let mut deframer = Deframer::new(1024);
    deframer.push(Bytes::from_static(&[0x05, 0x01, 0x02]));
    assert!(matches!(deframer.next_frame(), Ok(None)));
    assert!(matches!(
        deframer.finish(),
        Err(DeframeError::Truncated { .. })
    ));
    rows.push(json!({
        "what": "a stream ending inside a frame",
        "hex": "050102",
        "max": 1024,
        "error": "truncated",
        "at": "finish",
    }));
    rows
}

fn golden() -> String {
    let value = json!({
        "description": "Golden encodings of sealroom's wire formats, written by crates/sealroom-frame/tests/golden_json.rs (SEALROOM_BLESS=1 to rewrite). Control messages are given as serde's JSON of ControlMessage. Byte strings are lowercase hex.",
        "control": control_rows(),
        "control_refusals": control_refusals(),
        "envelopes": envelope_rows(),
        "envelope_refusals": envelope_refusals(),
        "framing": framing_rows(),
        "framing_refusals": framing_refusals(),
    });
    let mut text = serde_json::to_string_pretty(&value).expect("serializes");
    text.push('\n');
    text
}

#[test]
fn the_committed_golden_file_is_what_the_encoders_write() {
    let fresh = golden();
    if std::env::var_os("SEALROOM_BLESS").is_some() {
        std::fs::write(PATH, &fresh).expect("write the golden file");
        return;
    }
    let committed = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        committed == fresh,
        "{PATH} is stale: run `SEALROOM_BLESS=1 cargo test -p sealroom-frame --test golden_json`, \
         commit it, and run the web/ tests (`cd web && npm test`)"
    );
}

#[test]
fn every_golden_control_row_decodes_to_its_message() {
    for message in control_samples() {
        let bytes = message.to_bytes().expect("encodes");
        assert_eq!(ControlMessage::decode(&bytes).expect("decodes"), message);
    }
}

#[test]
fn the_golden_file_has_every_control_message() {
    // Another language learns a message only from this file: a variant missing here would
    // go untested there.
    let mut indices: Vec<u8> = control_samples()
        .iter()
        .map(|message| message.to_bytes().expect("encodes")[1])
        .collect();
    indices.sort_unstable();
    indices.dedup();
    let count = u8::try_from(indices.len()).expect("few messages");
    assert_eq!(
        indices,
        (0..count).collect::<Vec<_>>(),
        "one sample or more of each"
    );
    assert!(
        ControlMessage::decode(&[sealroom_frame::control::CONTROL_VERSION, count]).is_err(),
        "a message past the samples exists: add a sample of it"
    );
}
