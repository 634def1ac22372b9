//! Generated round trips: `decode(encode(x)) == x` for envelopes and control messages, the
//! deframer under random chunking agreeing with a one-shot reading, and arbitrary bytes
//! never panicking and decoding only from their one canonical encoding.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use sealroom_frame::control::{
    ControlMessage, ErrorCode, JoinOptions, LeaveReason, MemberInfo, SessionLimits, TrackInfo,
};
use sealroom_frame::envelope::{DecodeError, Envelope, Flags, Frame, FrameRef, MediaKind};
use sealroom_frame::stream::{DeframeError, Deframer, MAX_PREFIX_LEN, write_frame};

fn kind() -> impl Strategy<Value = MediaKind> {
    prop_oneof![
        Just(MediaKind::Audio),
        Just(MediaKind::Video),
        Just(MediaKind::Data)
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        kind(),
        0u8..16,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(
            |(kind, bits, sender, track, group, seq, timestamp_us)| Envelope {
                kind,
                flags: Flags::from_bits(bits).unwrap_or_default(),
                sender,
                track,
                group,
                seq,
                timestamp_us,
            },
        )
}

fn track_info() -> impl Strategy<Value = TrackInfo> {
    (any::<u32>(), kind()).prop_map(|(track, kind)| TrackInfo { track, kind })
}

fn member_info() -> impl Strategy<Value = MemberInfo> {
    (any::<u32>(), ".{0,24}", vec(track_info(), 0..4)).prop_map(|(member, user, tracks)| {
        MemberInfo {
            member,
            user,
            tracks,
        }
    })
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(&ErrorCode::ALL[..])
}

fn leave_reason() -> impl Strategy<Value = LeaveReason> {
    proptest::sample::select(vec![
        LeaveReason::Left,
        LeaveReason::TimedOut,
        LeaveReason::Kicked,
        LeaveReason::Replaced,
        LeaveReason::RoomDismissed,
        LeaveReason::TicketExpired,
        LeaveReason::Removed,
        LeaveReason::ShuttingDown,
    ])
}

fn control_message() -> impl Strategy<Value = ControlMessage> {
    let limits = (any::<u32>(), any::<u32>(), any::<u32>(), any::<u64>()).prop_map(
        |(max_frame_len, data_messages_per_sec, data_bytes_per_sec, ticket_expires_in_secs)| {
            SessionLimits {
                max_frame_len,
                data_messages_per_sec,
                data_bytes_per_sec,
                ticket_expires_in_secs,
            }
        },
    );
    let member_track = (any::<u32>(), any::<u32>());
    prop_oneof![
        (
            ".{0,64}",
            ".{0,16}",
            ".{0,16}",
            any::<bool>(),
            proptest::option::of(".{0,16}")
        )
            .prop_map(
                |(ticket, client_name, client_version, auto_subscribe, room)| {
                    ControlMessage::Join {
                        ticket,
                        client_name,
                        client_version,
                        options: JoinOptions {
                            auto_subscribe,
                            room,
                        },
                    }
                }
            ),
        (any::<u32>(), vec(member_info(), 0..4), limits).prop_map(|(member, roster, limits)| {
            ControlMessage::Joined {
                member,
                roster,
                limits,
            }
        }),
        member_info().prop_map(ControlMessage::MemberJoined),
        (any::<u32>(), leave_reason())
            .prop_map(|(member, reason)| ControlMessage::MemberLeft { member, reason }),
        (any::<u32>(), track_info())
            .prop_map(|(member, track)| ControlMessage::TrackPublished { member, track }),
        member_track.prop_map(|(member, track)| ControlMessage::TrackUnpublished { member, track }),
        member_track.prop_map(|(member, track)| ControlMessage::Subscribe { member, track }),
        member_track.prop_map(|(member, track)| ControlMessage::Unsubscribe { member, track }),
        member_track.prop_map(|(member, track)| ControlMessage::KeyframeRequest { member, track }),
        ".{0,64}".prop_map(|ticket| ControlMessage::RefreshTicket { ticket }),
        any::<u64>()
            .prop_map(|expires_in_secs| ControlMessage::TicketRefreshed { expires_in_secs }),
        Just(ControlMessage::Leave),
        (error_code(), ".{0,32}")
            .prop_map(|(code, message)| ControlMessage::Error { code, message }),
        (error_code(), any::<u32>()).prop_map(|(code, reconnect_after_ms)| {
            ControlMessage::GoAway {
                code,
                reconnect_after_ms,
            }
        }),
        any::<u32>().prop_map(|member| ControlMessage::RecorderPresent { member }),
    ]
}

/// Cut `wire` into pieces at the given (sorted, deduplicated) cut points.
fn chunks(wire: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut points: Vec<usize> = cuts.iter().map(|&c| c % (wire.len() + 1)).collect();
    points.push(0);
    points.push(wire.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .filter_map(|w| wire.get(w[0]..w[1]))
        .map(Bytes::copy_from_slice)
        .collect()
}

/// Feed the pieces one at a time, draining after each, as a transport loop does.
fn deframe(max: usize, pieces: Vec<Bytes>) -> (Vec<Bytes>, Result<(), DeframeError>) {
    let mut deframer = Deframer::new(max);
    let mut frames = Vec::new();
    for piece in pieces {
        deframer.push(piece);
        loop {
            match deframer.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(err) => return (frames, Err(err)),
            }
        }
        // After "need more" the deframer holds less than one maximal frame and prefix.
        assert!(deframer.buffered_len() < max + MAX_PREFIX_LEN);
    }
    (frames, deframer.finish())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn envelope_round_trips(envelope in envelope(), payload in vec(any::<u8>(), 0..2048)) {
        let frame = Frame { envelope, payload: Bytes::from(payload) };
        let mut wire = Vec::new();
        frame.encode(&mut wire).expect("encodable");
        prop_assert_eq!(wire.len(), frame.encoded_len());
        prop_assert_eq!(&wire[..Envelope::METADATA_LEN], &envelope.metadata()[..]);
        let wire = Bytes::from(wire);
        prop_assert_eq!(Frame::decode(&wire), Ok(frame.clone()));
        prop_assert_eq!(
            FrameRef::decode(&wire),
            Ok(FrameRef { envelope, payload: &frame.payload })
        );
        prop_assert_eq!(
            Envelope::decode_header(&wire),
            Ok((envelope, frame.payload.len()))
        );
    }

    #[test]
    fn envelope_decode_of_any_bytes_is_canonical(input in vec(any::<u8>(), 0..96)) {
        if let Ok(frame) = FrameRef::decode(&input) {
            let mut wire = Vec::new();
            Frame { envelope: frame.envelope, payload: Bytes::copy_from_slice(frame.payload) }
                .encode(&mut wire)
                .expect("encodable");
            prop_assert_eq!(wire, input);
        }
    }

    #[test]
    fn envelope_limit_is_exact(payload_len in 0usize..512, limit in 0usize..512) {
        let mut wire = Vec::new();
        Envelope {
            kind: MediaKind::Data,
            flags: Flags::empty(),
            sender: 1,
            track: 1,
            group: 0,
            seq: 0,
            timestamp_us: 0,
        }
        .encode_header(payload_len, &mut wire)
        .expect("encodable");
        wire.resize(Envelope::HEADER_LEN + payload_len, 0);
        let result = FrameRef::decode_with_limit(&wire, limit);
        if payload_len <= limit {
            prop_assert!(result.is_ok());
        } else {
            prop_assert_eq!(result, Err(DecodeError::Oversize { len: payload_len, max: limit }));
        }
    }

    #[test]
    fn control_round_trips(message in control_message()) {
        let bytes = message.to_bytes().expect("encodable");
        prop_assert_eq!(message.encoded_len(), Ok(bytes.len()));
        let mut buf = Vec::new();
        message.encode(&mut buf).expect("encodable");
        prop_assert_eq!(&buf[..], &bytes[..]);
        prop_assert_eq!(ControlMessage::decode(&bytes), Ok(message));
    }

    #[test]
    fn control_decode_of_any_bytes_is_canonical(input in vec(any::<u8>(), 0..64)) {
        if let Ok(message) = ControlMessage::decode(&input) {
            prop_assert_eq!(message.to_bytes(), Ok(Bytes::copy_from_slice(&input)));
        }
    }

    #[test]
    fn control_decode_of_mutated_messages_is_canonical(
        message in control_message(),
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = message.to_bytes().expect("encodable").to_vec();
        let at = at % bytes.len();
        bytes[at] = byte;
        if let Ok(decoded) = ControlMessage::decode(&bytes) {
            prop_assert_eq!(decoded.to_bytes(), Ok(Bytes::copy_from_slice(&bytes)));
        }
    }

    #[test]
    fn deframer_under_random_chunking_returns_every_frame(
        payloads in vec(vec(any::<u8>(), 0..400), 0..12),
        cuts in vec(any::<usize>(), 0..24),
    ) {
        let mut wire = Vec::new();
        for payload in &payloads {
            write_frame(payload, &mut wire);
        }
        let (frames, end) = deframe(400, chunks(&wire, &cuts));
        prop_assert_eq!(end, Ok(()));
        prop_assert_eq!(frames, payloads);
    }

    #[test]
    fn deframer_under_random_chunking_agrees_with_one_shot(
        wire in vec(any::<u8>(), 0..512),
        cuts in vec(any::<usize>(), 0..24),
        max in 0usize..300,
    ) {
        let one_shot = deframe(max, vec![Bytes::copy_from_slice(&wire)]);
        let chunked = deframe(max, chunks(&wire, &cuts));
        prop_assert_eq!(chunked, one_shot);
    }

    #[test]
    fn deframer_refuses_a_frame_over_the_limit(
        before in vec(vec(any::<u8>(), 0..100), 0..4),
        len in 1usize..300,
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let max = len - 1;
        let mut wire = Vec::new();
        for payload in &before {
            write_frame(&payload[..payload.len().min(max)], &mut wire);
        }
        write_frame(&vec![0; len], &mut wire);
        let (frames, end) = deframe(max, chunks(&wire, &cuts));
        prop_assert_eq!(frames.len(), before.len());
        prop_assert_eq!(end, Err(DeframeError::Oversize { len: len as u64, max }));
    }
}
