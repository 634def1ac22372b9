//! The room layer as members use it: sealers, openers, replay windows, rotation.

use std::time::{Duration, Instant};

use sealroom_crypto::{
    Backend, CipherSuite, KeySchedule, OpenError, Opener, OpenerConfig, RoomSecret, Sealer,
    SealerConfig,
};
use sealroom_frame::{Envelope, Flags, MediaKind};

fn envelope(sender: u32, seq: u32) -> Envelope {
    Envelope {
        kind: MediaKind::Video,
        flags: Flags::GROUP_START,
        sender,
        track: 2,
        group: 9,
        seq,
        timestamp_us: 123_456,
    }
}

fn room(suite: CipherSuite) -> (KeySchedule, KeySchedule) {
    let secret = RoomSecret::generate();
    let copy = RoomSecret::from_bytes(*secret.expose());
    (
        KeySchedule::new(&secret, suite),
        KeySchedule::new(&copy, suite),
    )
}

fn seal(sealer: &mut Sealer, env: &Envelope, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    sealer
        .seal(&env.metadata(), payload, &mut out)
        .expect("seal");
    out
}

fn open(opener: &mut Opener, env: &Envelope, sframe: &[u8]) -> Result<Vec<u8>, OpenError> {
    let mut out = Vec::new();
    let opened = opener.open(&env.metadata(), sframe, &mut out)?;
    Ok(out[opened.plaintext].to_vec())
}

#[test]
fn every_suite_and_backend_pair_interoperates() {
    let secret = RoomSecret::generate();
    for suite in CipherSuite::ALL {
        for &seal_backend in Backend::all() {
            for &open_backend in Backend::all() {
                let tx = KeySchedule::with_backend(&secret, suite, seal_backend);
                let rx = KeySchedule::with_backend(&secret, suite, open_backend);
                let mut sealer = tx.sealer(0);
                let mut opener = rx.opener(0, OpenerConfig::default());
                for seq in 0..20 {
                    let env = envelope(1, seq);
                    let payload = vec![seq as u8; 100 * seq as usize];
                    let wire = seal(&mut sealer, &env, &payload);
                    assert_eq!(open(&mut opener, &env, &wire), Ok(payload));
                }
            }
        }
    }
}

#[test]
fn sealed_len_predicts_the_output() {
    let (tx, _) = room(CipherSuite::default());
    let mut sealer = tx.sealer(0);
    for len in [0, 1, 160, 1200] {
        let expected = sealer.sealed_len(len);
        let wire = seal(&mut sealer, &envelope(1, 0), &vec![0; len]);
        assert_eq!(wire.len(), expected);
    }
}

#[test]
fn in_place_round_trip_with_an_envelope_in_front() {
    let (tx, rx) = room(CipherSuite::default());
    let mut sealer = tx.sealer(0);
    let mut opener = rx.opener(0, OpenerConfig::default());
    let env = envelope(4, 1);
    let headroom = Envelope::HEADER_LEN + sealroom_crypto::SframeHeader::MAX_LEN;
    let mut buf = bytes::BytesMut::with_capacity(headroom + 1200 + 16);
    buf.resize(headroom, 0);
    buf.extend_from_slice(&[0x5a; 1200]);
    let start = sealer
        .seal_in_place(&env.metadata(), &mut buf, headroom)
        .expect("seal");
    assert!(start >= Envelope::HEADER_LEN);
    let mut sframe = buf.split_off(start);
    let opened = opener
        .open_in_place(&env.metadata(), &mut sframe)
        .expect("open");
    assert_eq!(&sframe[opened.plaintext], &[0x5a; 1200][..]);
}

#[test]
fn replays_are_refused_and_reordering_inside_the_window_is_not() {
    let (tx, rx) = room(CipherSuite::default());
    let mut sealer = tx.sealer(0);
    let mut opener = rx.opener(0, OpenerConfig::default());
    let env = envelope(1, 0);
    let frames: Vec<Vec<u8>> = (0..10).map(|i| seal(&mut sealer, &env, &[i])).collect();
    for i in [3, 0, 9, 1, 2, 8, 4, 5, 7, 6] {
        assert_eq!(open(&mut opener, &env, &frames[i]), Ok(vec![i as u8]));
    }
    for frame in &frames {
        assert_eq!(open(&mut opener, &env, frame), Err(OpenError::Replayed));
    }
    // Far behind the window.
    let old = frames[0].clone();
    for _ in 0..sealroom_crypto::REPLAY_WINDOW {
        let frame = seal(&mut sealer, &env, b"x");
        open(&mut opener, &env, &frame).expect("fresh frame");
    }
    assert_eq!(open(&mut opener, &env, &old), Err(OpenError::TooOld));
}

#[test]
fn forged_frames_neither_poison_windows_nor_create_senders() {
    let (tx, rx) = room(CipherSuite::default());
    let mut sealer = tx.sealer(0);
    let mut opener = rx.opener(0, OpenerConfig::default());
    let env = envelope(1, 0);
    let first = seal(&mut sealer, &env, b"first");
    assert!(open(&mut opener, &env, &first).is_ok());
    assert_eq!(opener.sender_count(), 1);

    // A relay forges a frame under the live KID with a CTR far ahead and garbage body.
    let forged_header = sealroom_crypto::SframeHeader::new(sealer.kid(), 1 << 40).encode_array();
    let mut forged = forged_header.as_bytes().to_vec();
    forged.extend_from_slice(&[0u8; 64]);
    assert_eq!(
        open(&mut opener, &env, &forged),
        Err(OpenError::AuthenticationFailed)
    );
    // The window did not move: the next honest frame still opens.
    let second = seal(&mut sealer, &env, b"second");
    assert_eq!(open(&mut opener, &env, &second), Ok(b"second".to_vec()));

    // Unknown KIDs of the current epoch are derived, fail, and leave nothing behind.
    for session in 1..100u64 {
        let kid = sealroom_crypto::make_kid(0, session);
        let mut forged = sealroom_crypto::SframeHeader::new(kid, 0)
            .encode_array()
            .as_bytes()
            .to_vec();
        forged.extend_from_slice(&[7u8; 32]);
        assert_eq!(
            open(&mut opener, &env, &forged),
            Err(OpenError::AuthenticationFailed)
        );
    }
    assert_eq!(opener.sender_count(), 1);

    // A frame from someone with another room secret fails the same way.
    let (stranger, _) = room(CipherSuite::default());
    let alien = seal(&mut stranger.sealer(0), &env, b"alien");
    assert_eq!(
        open(&mut opener, &env, &alien),
        Err(OpenError::AuthenticationFailed)
    );
}

#[test]
fn altering_any_envelope_field_breaks_authentication() {
    let (tx, rx) = room(CipherSuite::default());
    let mut sealer = tx.sealer(0);
    let mut opener = rx.opener(0, OpenerConfig::default());
    let env = envelope(1, 5);
    let altered = [
        Envelope {
            kind: MediaKind::Audio,
            ..env
        },
        Envelope {
            flags: Flags::DISCARDABLE,
            ..env
        },
        Envelope { sender: 2, ..env },
        Envelope { track: 3, ..env },
        Envelope { group: 10, ..env },
        Envelope { seq: 6, ..env },
        Envelope {
            timestamp_us: 0,
            ..env
        },
    ];
    let wire = seal(&mut sealer, &env, b"payload");
    for other in altered {
        assert_eq!(
            open(&mut opener, &other, &wire),
            Err(OpenError::AuthenticationFailed)
        );
    }
    assert_eq!(open(&mut opener, &env, &wire), Ok(b"payload".to_vec()));
}

#[test]
fn rotation_mid_stream_loses_nothing_in_grace_and_refuses_old_epoch_after() {
    let (tx, rx) = room(CipherSuite::default());
    let grace = Duration::from_secs(5);
    let t0 = Instant::now();
    let mut sealer = tx.sealer(0);
    let mut opener = rx.opener(0, OpenerConfig::default().grace(grace));
    let env = envelope(1, 0);

    // 50 frames in epoch 0, then the sender rotates and sends 50 in epoch 1.
    let mut epoch0: Vec<Vec<u8>> = (0..50).map(|_| seal(&mut sealer, &env, b"e0")).collect();
    sealer.rotate(1);
    let epoch1: Vec<Vec<u8>> = (0..50).map(|_| seal(&mut sealer, &env, b"e1")).collect();
    let late = epoch0.split_off(40);

    // The receiver has not rotated yet: epoch 0 and the next epoch both open.
    for frame in &epoch0 {
        assert_eq!(open(&mut opener, &env, frame), Ok(b"e0".to_vec()));
    }
    for frame in &epoch1[..25] {
        assert_eq!(open(&mut opener, &env, frame), Ok(b"e1".to_vec()));
    }
    // The receiver rotates; late epoch-0 frames arrive inside the grace period.
    opener.rotate(1, t0);
    assert_eq!(opener.poll_timeout(), Some(t0 + grace));
    opener.handle_timeout(t0 + grace - Duration::from_millis(1));
    for frame in &late[..5] {
        assert_eq!(open(&mut opener, &env, frame), Ok(b"e0".to_vec()));
    }
    for frame in &epoch1[25..] {
        assert_eq!(open(&mut opener, &env, frame), Ok(b"e1".to_vec()));
    }
    // After the grace period the old epoch is gone.
    opener.handle_timeout(t0 + grace);
    assert_eq!(opener.poll_timeout(), None);
    for frame in &late[5..] {
        assert_eq!(open(&mut opener, &env, frame), Err(OpenError::TooOld));
    }
    assert_eq!(opener.sender_count(), 1, "only the epoch-1 session is held");
}

#[test]
fn frames_from_an_epoch_ahead_are_unknown_until_the_receiver_rotates() {
    let (tx, rx) = room(CipherSuite::default());
    let mut sealer = tx.sealer(3);
    let mut opener = rx.opener(0, OpenerConfig::default());
    let env = envelope(1, 0);
    let wire = seal(&mut sealer, &env, b"future");
    assert_eq!(
        open(&mut opener, &env, &wire),
        Err(OpenError::UnknownKid(sealer.kid()))
    );
    opener.rotate(3, Instant::now());
    assert_eq!(open(&mut opener, &env, &wire), Ok(b"future".to_vec()));
}

#[test]
fn sender_table_is_bounded_and_retired_sessions_stay_refused() {
    let (tx, rx) = room(CipherSuite::default());
    let mut opener = rx.opener(0, OpenerConfig::default().max_senders(4));
    let env = envelope(1, 0);
    let mut sealers: Vec<Sealer> = (0..6).map(|_| tx.sealer(0)).collect();
    let firsts: Vec<Vec<u8>> = sealers.iter_mut().map(|s| seal(s, &env, b"hi")).collect();
    let seconds: Vec<Vec<u8>> = sealers
        .iter_mut()
        .map(|s| seal(s, &env, b"again"))
        .collect();
    for frame in &firsts {
        assert!(open(&mut opener, &env, frame).is_ok());
        assert!(opener.sender_count() <= 4);
    }
    // The two least recently used sessions were retired; replaying into them cannot
    // restart their replay windows.
    assert_eq!(open(&mut opener, &env, &firsts[0]), Err(OpenError::TooOld));
    assert_eq!(open(&mut opener, &env, &seconds[1]), Err(OpenError::TooOld));
    assert_eq!(open(&mut opener, &env, &seconds[5]), Ok(b"again".to_vec()));
}

#[test]
fn usage_limit_then_rekey_keeps_the_stream_open() {
    let (tx, rx) = room(CipherSuite::default());
    let mut sealer = Sealer::new(&tx, 0, SealerConfig::default().usage_limit(10));
    let mut opener = rx.opener(0, OpenerConfig::default());
    let env = envelope(1, 0);
    let mut opened = 0;
    for _ in 0..20 {
        let mut out = Vec::new();
        match sealer.seal(&env.metadata(), &[1; 32], &mut out) {
            Ok(_) => {}
            Err(sealroom_crypto::SealError::RotationRequired) => {
                sealer.rekey();
                sealer
                    .seal(&env.metadata(), &[1; 32], &mut out)
                    .expect("after rekey");
            }
            Err(other) => panic!("{other:?}"),
        }
        assert!(open(&mut opener, &env, &out).is_ok());
        opened += 1;
    }
    assert_eq!(opened, 20);
    assert!(opener.sender_count() > 1);
}
