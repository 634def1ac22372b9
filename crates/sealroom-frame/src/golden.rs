//! Golden wire tests: every variant of every enum that crosses the wire, pinned to its
//! number.
//!
//! postcard writes an enum variant as its declaration index, so moving a variant changes
//! the wire without changing a line of codec code. Each table below is an exhaustive
//! `match` with literal numbers: a new variant does not compile until it has a row, and a
//! reordered one fails the test. A new variant goes at the end of its enum and gets the next
//! number here (and, for a control message, a sample in [`one_of_each_message`]).

use crate::control::{
    ControlMessage, ErrorCode, JoinOptions, LeaveReason, MemberInfo, MlsRefusal, SessionLimits,
    TrackInfo,
};
use crate::envelope::MediaKind;
use crate::transport::{ALPN, StreamCode, StreamType};

/// The wire index of each control message.
const fn message_index(message: &ControlMessage) -> u8 {
    match message {
        ControlMessage::Join { .. } => 0,
        ControlMessage::Joined { .. } => 1,
        ControlMessage::MemberJoined(_) => 2,
        ControlMessage::MemberLeft { .. } => 3,
        ControlMessage::TrackPublished { .. } => 4,
        ControlMessage::TrackUnpublished { .. } => 5,
        ControlMessage::Subscribe { .. } => 6,
        ControlMessage::Unsubscribe { .. } => 7,
        ControlMessage::KeyframeRequest { .. } => 8,
        ControlMessage::RefreshTicket { .. } => 9,
        ControlMessage::TicketRefreshed { .. } => 10,
        ControlMessage::Leave => 11,
        ControlMessage::Error { .. } => 12,
        ControlMessage::GoAway { .. } => 13,
        ControlMessage::MlsSync => 14,
        ControlMessage::MlsState { .. } => 15,
        ControlMessage::MlsPublish { .. } => 16,
        ControlMessage::MlsCommit { .. } => 17,
        ControlMessage::MlsCommitted { .. } => 18,
        ControlMessage::MlsAccepted { .. } => 19,
        ControlMessage::MlsRefused { .. } => 20,
        ControlMessage::RecorderPresent { .. } => 21,
        ControlMessage::Redirect { .. } => 22,
        ControlMessage::MlsGroupInfoPart { .. } => 23,
    }
}

/// The wire index of each MLS refusal.
const fn mls_refusal_index(reason: MlsRefusal) -> u8 {
    match reason {
        MlsRefusal::Stale => 0,
        MlsRefusal::Exists => 1,
        MlsRefusal::NoGroup => 2,
        MlsRefusal::TooLarge => 3,
        MlsRefusal::Empty => 4,
    }
}

const MLS_REFUSALS: [MlsRefusal; 5] = [
    MlsRefusal::Stale,
    MlsRefusal::Exists,
    MlsRefusal::NoGroup,
    MlsRefusal::TooLarge,
    MlsRefusal::Empty,
];

/// The wire index and the stable label of each error code.
const fn error_code_row(code: ErrorCode) -> (u8, &'static str) {
    match code {
        ErrorCode::BadSignature => (0, "bad_signature"),
        ErrorCode::Expired => (1, "expired"),
        ErrorCode::NotYetValid => (2, "not_yet_valid"),
        ErrorCode::WrongRoom => (3, "wrong_room"),
        ErrorCode::UnknownApp => (4, "unknown_app"),
        ErrorCode::RoomFull => (5, "room_full"),
        ErrorCode::TooManyRooms => (6, "too_many_rooms"),
        ErrorCode::NotPermitted => (7, "not_permitted"),
        ErrorCode::FrameTooLarge => (8, "frame_too_large"),
        ErrorCode::RateLimited => (9, "rate_limited"),
        ErrorCode::Replaced => (10, "replaced"),
        ErrorCode::Kicked => (11, "kicked"),
        ErrorCode::RoomDismissed => (12, "room_dismissed"),
        ErrorCode::TicketExpired => (13, "ticket_expired"),
        ErrorCode::ShuttingDown => (14, "shutting_down"),
        ErrorCode::SlowConsumer => (15, "slow_consumer"),
        ErrorCode::ProtocolViolation => (16, "protocol_violation"),
        ErrorCode::BadTicket => (17, "bad_ticket"),
        ErrorCode::Internal => (18, "internal"),
        ErrorCode::Overloaded => (19, "overloaded"),
    }
}

/// The wire index of each leave reason.
const fn leave_reason_index(reason: LeaveReason) -> u8 {
    match reason {
        LeaveReason::Left => 0,
        LeaveReason::TimedOut => 1,
        LeaveReason::Kicked => 2,
        LeaveReason::Replaced => 3,
        LeaveReason::RoomDismissed => 4,
        LeaveReason::TicketExpired => 5,
        LeaveReason::Removed => 6,
        LeaveReason::ShuttingDown => 7,
    }
}

/// Every leave reason (the enum has no `ALL`: only this test needs one).
const LEAVE_REASONS: [LeaveReason; 8] = [
    LeaveReason::Left,
    LeaveReason::TimedOut,
    LeaveReason::Kicked,
    LeaveReason::Replaced,
    LeaveReason::RoomDismissed,
    LeaveReason::TicketExpired,
    LeaveReason::Removed,
    LeaveReason::ShuttingDown,
];

/// The index of each media kind inside control messages (postcard, declaration order) and
/// its byte in the envelope header.
const fn media_kind_row(kind: MediaKind) -> (u8, u8) {
    match kind {
        MediaKind::Audio => (0, 0x00),
        MediaKind::Video => (1, 0x01),
        MediaKind::Data => (2, 0x02),
    }
}

const MEDIA_KINDS: [MediaKind; 3] = [MediaKind::Audio, MediaKind::Video, MediaKind::Data];

/// The first byte of a stream of each type.
const fn stream_type_byte(kind: StreamType) -> u8 {
    match kind {
        StreamType::Media => 0x01,
    }
}

/// The QUIC application error code of each stream reset/stop reason.
const fn stream_code_value(code: StreamCode) -> u32 {
    match code {
        StreamCode::StaleGroup => 0x01,
        StreamCode::GroupReset => 0x02,
        StreamCode::Refused => 0x03,
    }
}

/// One control message of every variant.
fn one_of_each_message() -> Vec<ControlMessage> {
    let track = TrackInfo {
        track: 1,
        kind: MediaKind::Audio,
    };
    vec![
        ControlMessage::Join {
            ticket: "t".into(),
            client_name: "c".into(),
            client_version: "v".into(),
            options: JoinOptions::default(),
        },
        ControlMessage::Joined {
            member: 1,
            roster: Vec::new(),
            limits: SessionLimits {
                max_frame_len: 1,
                data_messages_per_sec: 1,
                data_bytes_per_sec: 1,
                ticket_expires_in_secs: 1,
            },
        },
        ControlMessage::MemberJoined(MemberInfo {
            member: 1,
            user: "u".into(),
            tracks: vec![track],
        }),
        ControlMessage::MemberLeft {
            member: 1,
            reason: LeaveReason::Left,
        },
        ControlMessage::TrackPublished { member: 1, track },
        ControlMessage::TrackUnpublished {
            member: 1,
            track: 1,
        },
        ControlMessage::Subscribe {
            member: 1,
            track: 1,
        },
        ControlMessage::Unsubscribe {
            member: 1,
            track: 1,
        },
        ControlMessage::KeyframeRequest {
            member: 1,
            track: 1,
        },
        ControlMessage::RefreshTicket { ticket: "t".into() },
        ControlMessage::TicketRefreshed { expires_in_secs: 1 },
        ControlMessage::Leave,
        ControlMessage::Error {
            code: ErrorCode::Internal,
            message: String::new(),
        },
        ControlMessage::GoAway {
            code: ErrorCode::ShuttingDown,
            reconnect_after_ms: 1,
        },
        ControlMessage::MlsSync,
        ControlMessage::MlsState {
            position: 1,
            group_info: Some(vec![1]),
        },
        ControlMessage::MlsPublish {
            position: 1,
            group_info: vec![1],
        },
        ControlMessage::MlsCommit {
            position: 1,
            commit: vec![1],
            group_info: vec![1],
        },
        ControlMessage::MlsCommitted {
            member: 1,
            position: 1,
            commit: vec![1],
        },
        ControlMessage::MlsAccepted { position: 1 },
        ControlMessage::MlsRefused {
            position: 1,
            reason: MlsRefusal::Stale,
        },
        ControlMessage::RecorderPresent { member: 1 },
        ControlMessage::Redirect {
            address: "h:1".into(),
        },
        ControlMessage::MlsGroupInfoPart { bytes: vec![1] },
    ]
}

fn postcard_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("a fieldless enum encodes")
}

/// Whether postcard refuses `index` as a variant of `T`: nothing is declared past the
/// table's last row.
fn refused_as<T: serde::de::DeserializeOwned>(index: usize) -> bool {
    let index = u8::try_from(index).expect("tables stay under 128 rows");
    assert!(index < 0x80, "a one-byte varint");
    postcard::from_bytes::<T>(&[index]).is_err()
}

#[test]
fn control_messages_keep_their_wire_index() {
    let messages = one_of_each_message();
    for (position, message) in messages.iter().enumerate() {
        let bytes = message.to_bytes().expect("encodes");
        let index = message_index(message);
        assert_eq!(
            usize::from(index),
            position,
            "one sample per message, in index order"
        );
        assert_eq!(bytes[0], crate::control::CONTROL_VERSION);
        assert_eq!(bytes[1], index, "{message:?} moved on the wire");
    }
    // A message declared past the last row would decode; it must not exist.
    let past = u8::try_from(messages.len()).expect("few messages");
    assert!(ControlMessage::decode(&[crate::control::CONTROL_VERSION, past]).is_err());
}

#[test]
fn recorder_present_is_pinned_to_its_bytes() {
    // docs/PROTOCOL.md gives this example.
    let message = ControlMessage::RecorderPresent { member: 300 };
    let bytes = message.to_bytes().expect("encodes");
    assert_eq!(&bytes[..], &[0x01, 0x15, 0xac, 0x02]);
    assert_eq!(ControlMessage::decode(&bytes), Ok(message));
}

#[test]
fn error_codes_keep_their_wire_index_close_code_and_label() {
    for (position, code) in ErrorCode::ALL.into_iter().enumerate() {
        let (index, label) = error_code_row(code);
        assert_eq!(
            usize::from(index),
            position,
            "ErrorCode::ALL is in wire order"
        );
        assert_eq!(code.index(), position);
        assert_eq!(postcard_bytes(&code), [index], "{code:?} moved on the wire");
        assert_eq!(code.close_code(), u32::from(index) + 1);
        assert_eq!(code.label(), label, "{code:?} was renamed");
    }
    assert!(
        refused_as::<ErrorCode>(ErrorCode::ALL.len()),
        "ErrorCode::ALL misses a code"
    );
}

#[test]
fn mls_refusals_keep_their_wire_index_and_mls_messages_their_bytes() {
    for (position, reason) in MLS_REFUSALS.into_iter().enumerate() {
        let index = mls_refusal_index(reason);
        assert_eq!(usize::from(index), position);
        assert_eq!(
            postcard_bytes(&reason),
            [index],
            "{reason:?} moved on the wire"
        );
    }
    assert!(refused_as::<MlsRefusal>(MLS_REFUSALS.len()));
    // Opaque MLS bytes are a varint length and the bytes, nothing else.
    let commit = ControlMessage::MlsCommit {
        position: 300,
        commit: vec![0xaa, 0xbb],
        group_info: vec![0xcc],
    };
    assert_eq!(
        commit.to_bytes().expect("encodes")[..],
        [0x01, 17, 0xac, 0x02, 2, 0xaa, 0xbb, 1, 0xcc]
    );
    let state = ControlMessage::MlsState {
        position: 0,
        group_info: None,
    };
    assert_eq!(state.to_bytes().expect("encodes")[..], [0x01, 15, 0, 0]);
    let part = ControlMessage::MlsGroupInfoPart {
        bytes: vec![0xdd, 0xee],
    };
    assert_eq!(
        part.to_bytes().expect("encodes")[..],
        [0x01, 23, 2, 0xdd, 0xee]
    );
}

#[test]
fn leave_reasons_keep_their_wire_index() {
    for (position, reason) in LEAVE_REASONS.into_iter().enumerate() {
        let index = leave_reason_index(reason);
        assert_eq!(usize::from(index), position);
        assert_eq!(
            postcard_bytes(&reason),
            [index],
            "{reason:?} moved on the wire"
        );
    }
    assert!(refused_as::<LeaveReason>(LEAVE_REASONS.len()));
}

#[test]
fn media_kinds_keep_their_index_and_envelope_byte() {
    for (position, kind) in MEDIA_KINDS.into_iter().enumerate() {
        let (index, byte) = media_kind_row(kind);
        assert_eq!(usize::from(index), position);
        assert_eq!(postcard_bytes(&kind), [index], "{kind:?} moved on the wire");
        assert_eq!(kind as u8, byte);
        assert_eq!(MediaKind::from_u8(byte), Ok(kind));
    }
    assert!(refused_as::<MediaKind>(MEDIA_KINDS.len()));
}

#[test]
fn alpn_stream_types_and_stream_codes_are_pinned() {
    assert_eq!(ALPN, b"sealroom/1");
    for kind in StreamType::ALL {
        let byte = stream_type_byte(kind);
        assert_eq!(kind.byte(), byte);
        assert_eq!(StreamType::from_byte(byte), Some(kind));
    }
    let known: Vec<u8> = StreamType::ALL.map(stream_type_byte).to_vec();
    for byte in 0..=u8::MAX {
        assert_eq!(
            StreamType::from_byte(byte).is_some(),
            known.contains(&byte),
            "byte {byte:#04x}"
        );
    }
    for code in StreamCode::ALL {
        let value = stream_code_value(code);
        assert_eq!(code.code(), value);
        assert_eq!(StreamCode::from_code(u64::from(value)), Some(code));
    }
    let known: Vec<u32> = StreamCode::ALL.map(stream_code_value).to_vec();
    for value in 0..=0xff_u32 {
        assert_eq!(
            StreamCode::from_code(u64::from(value)).is_some(),
            known.contains(&value),
            "code {value:#04x}"
        );
    }
}

#[test]
fn error_code_labels_are_unique_snake_case() {
    let mut labels: Vec<&str> = ErrorCode::ALL.iter().map(|code| code.label()).collect();
    for label in &labels {
        assert!(
            label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{label}"
        );
    }
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), ErrorCode::ALL.len());
}

#[test]
fn codes_that_end_a_session_and_codes_worth_a_reconnect() {
    let ending: Vec<ErrorCode> = ErrorCode::ALL
        .into_iter()
        .filter(|code| code.ends_session())
        .collect();
    assert_eq!(
        ending,
        [
            ErrorCode::Replaced,
            ErrorCode::Kicked,
            ErrorCode::RoomDismissed,
            ErrorCode::TicketExpired,
            ErrorCode::ShuttingDown,
            ErrorCode::SlowConsumer,
            ErrorCode::ProtocolViolation,
            ErrorCode::Internal,
        ]
    );
    let recoverable: Vec<ErrorCode> = ErrorCode::ALL
        .into_iter()
        .filter(|code| code.is_recoverable())
        .collect();
    assert_eq!(
        recoverable,
        [
            ErrorCode::RateLimited,
            ErrorCode::ShuttingDown,
            ErrorCode::Internal,
            ErrorCode::Overloaded,
        ]
    );
}
