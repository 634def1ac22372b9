//! Opening arbitrary bytes with a fixed key store never panics and never yields plaintext
//! for bytes that were not sealed: every successful open must be byte for byte one of the
//! frames sealed below, and yield exactly its plaintext.
//!
//! Input: byte 0 picks the suite (low 3 bits, mod 5) and the mode (high bit). Mode 0 opens
//! the rest as `metadata length (1 byte) || metadata || sframe`. Mode 1 takes a sealed
//! frame (byte 1 picks it) and applies the remaining bytes as (offset, xor) patches to its
//! metadata and SFrame bytes, or truncates it.
//!
//! Shared by the fuzz target of the same name and by the corpus replay test
//! (`tests/fuzz_corpus.rs` in the root workspace), so both check exactly the same.

use std::sync::OnceLock;

use sealroom_crypto::{CipherSuite, KeySchedule, OpenerConfig, RoomSecret, Sealer, SealerConfig};

struct Sealed {
    metadata: Vec<u8>,
    sframe: Vec<u8>,
    plaintext: Vec<u8>,
}

struct Suite {
    schedule: KeySchedule,
    sealed: Vec<Sealed>,
}

fn fixture() -> &'static [Suite] {
    static FIXTURE: OnceLock<Vec<Suite>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let secret = RoomSecret::from_bytes([0x5e; 32]);
        CipherSuite::ALL
            .iter()
            .map(|&suite| {
                let schedule = KeySchedule::new(&secret, suite);
                let mut sealed = Vec::new();
                for (epoch, session) in [(0u64, 1u64), (0, 0x0fff_ffff_ffff_ffff), (1, 7)] {
                    let mut sealer = Sealer::dangerous_with_session(
                        &schedule,
                        epoch,
                        SealerConfig::default(),
                        session,
                    );
                    for len in [0usize, 1, 15, 16, 17, 100] {
                        let metadata: Vec<u8> = (0..28).map(|i| (i * 3 + len) as u8).collect();
                        let plaintext: Vec<u8> = (0..len).map(|i| (i * 11 + 1) as u8).collect();
                        let mut sframe = Vec::new();
                        sealer
                            .seal(&metadata, &plaintext, &mut sframe)
                            .expect("seal");
                        sealed.push(Sealed {
                            metadata,
                            sframe,
                            plaintext,
                        });
                    }
                }
                Suite { schedule, sealed }
            })
            .collect()
    })
}

fn check(suite: &Suite, metadata: &[u8], sframe: &[u8]) {
    let mut opener = suite.schedule.opener(0, OpenerConfig::default());
    let mut out = vec![0xaa; 3];
    match opener.open(metadata, sframe, &mut out) {
        Ok(opened) => {
            let Some(origin) = suite
                .sealed
                .iter()
                .find(|s| s.metadata == metadata && s.sframe == sframe)
            else {
                panic!("opened bytes that were never sealed");
            };
            assert_eq!(&out[opened.plaintext], &origin.plaintext[..]);
            assert_eq!(&out[..3], &[0xaa; 3]);
        }
        Err(_) => assert_eq!(out, [0xaa; 3]),
    }

    let mut opener = suite.schedule.opener(0, OpenerConfig::default());
    let mut buf = sframe.to_vec();
    if let Ok(opened) = opener.open_in_place(metadata, &mut buf) {
        let Some(origin) = suite
            .sealed
            .iter()
            .find(|s| s.metadata == metadata && s.sframe == sframe)
        else {
            panic!("opened in place bytes that were never sealed");
        };
        assert_eq!(&buf[opened.plaintext], &origin.plaintext[..]);
    }
}

/// The check the fuzz target runs on every input.
pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let suites = fixture();
    let Some(suite) = suites.get(usize::from(selector & 0x07) % suites.len()) else {
        return;
    };
    if selector & 0x80 == 0 {
        let Some((&meta_len, rest)) = rest.split_first() else {
            return;
        };
        let split = usize::from(meta_len).min(rest.len());
        let (metadata, sframe) = rest.split_at(split);
        check(suite, metadata, sframe);
    } else {
        let Some((&pick, patches)) = rest.split_first() else {
            return;
        };
        let Some(origin) = suite.sealed.get(usize::from(pick) % suite.sealed.len()) else {
            return;
        };
        let mut metadata = origin.metadata.clone();
        let mut sframe = origin.sframe.clone();
        for patch in patches.chunks(3) {
            match *patch {
                [0xff, at, _] => sframe.truncate(usize::from(at)),
                [hi, lo, xor] => {
                    let at = usize::from(u16::from_be_bytes([hi, lo]));
                    let total = metadata.len() + sframe.len();
                    if total == 0 {
                        continue;
                    }
                    let at = at % total;
                    if let Some(b) = metadata.get_mut(at) {
                        *b ^= xor;
                    } else if let Some(b) = sframe.get_mut(at - metadata.len()) {
                        *b ^= xor;
                    }
                }
                _ => sframe.extend_from_slice(patch),
            }
        }
        check(suite, &metadata, &sframe);
    }
}
