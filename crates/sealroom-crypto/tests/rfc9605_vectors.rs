//! Every RFC 9605 SFrame test vector (appendix C.4), through the public API, on every
//! backend compiled in.

use serde::Deserialize;

use sealroom_crypto::{Backend, CipherSuite, KeyContext, OpenError, SframeHeader};

#[derive(Deserialize)]
struct Vectors {
    sframe: Vec<SframeVector>,
}

#[derive(Deserialize)]
struct SframeVector {
    cipher_suite: u16,
    kid: u64,
    ctr: u64,
    base_key: String,
    metadata: String,
    pt: String,
    ct: String,
}

fn vectors() -> Vec<SframeVector> {
    let text = include_str!("data/rfc9605-test-vectors.json");
    let parsed: Vectors = serde_json::from_str(text).expect("vector file parses");
    parsed.sframe
}

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).expect("hex")
}

struct Case {
    ctx: KeyContext,
    ctr: u64,
    metadata: Vec<u8>,
    pt: Vec<u8>,
    ct: Vec<u8>,
}

fn cases(backend: Backend) -> Vec<Case> {
    vectors()
        .into_iter()
        .map(|v| {
            let suite = CipherSuite::from_id(v.cipher_suite).expect("known suite");
            Case {
                ctx: KeyContext::derive_with(backend, suite, v.kid, &unhex(&v.base_key)),
                ctr: v.ctr,
                metadata: unhex(&v.metadata),
                pt: unhex(&v.pt),
                ct: unhex(&v.ct),
            }
        })
        .collect()
}

#[test]
fn there_is_one_vector_per_suite() {
    let mut suites: Vec<u16> = vectors().iter().map(|v| v.cipher_suite).collect();
    suites.sort_unstable();
    assert_eq!(suites, [1, 2, 3, 4, 5]);
}

#[test]
fn seal_produces_every_vector_on_every_backend() {
    for &backend in Backend::all() {
        for case in cases(backend) {
            let mut out = vec![0xee; 3];
            let range = case
                .ctx
                .seal(case.ctr, &case.metadata, &case.pt, &mut out)
                .expect("seal");
            assert_eq!(range, 3..3 + case.ct.len());
            assert_eq!(
                out[range],
                case.ct[..],
                "{backend:?} {:?}",
                case.ctx.suite()
            );
            assert_eq!(case.ctx.sealed_len(case.ctr, case.pt.len()), case.ct.len());
        }
    }
}

#[test]
fn seal_in_place_produces_every_vector_on_every_backend() {
    for &backend in Backend::all() {
        for case in cases(backend) {
            let headroom = SframeHeader::MAX_LEN;
            let mut buf = vec![0u8; headroom];
            buf.extend_from_slice(&case.pt);
            let start = case
                .ctx
                .seal_in_place(case.ctr, &case.metadata, &mut buf, headroom)
                .expect("seal");
            assert_eq!(
                buf[start..],
                case.ct[..],
                "{backend:?} {:?}",
                case.ctx.suite()
            );
        }
    }
}

#[test]
fn open_recovers_every_vector_on_every_backend() {
    for &backend in Backend::all() {
        for case in cases(backend) {
            let mut out = Vec::new();
            let (header, range) = case
                .ctx
                .open(&case.metadata, &case.ct, &mut out)
                .expect("open");
            assert_eq!(header.ctr, case.ctr);
            assert_eq!(out[range], case.pt[..]);

            let mut buf = case.ct.clone();
            let (_, range) = case
                .ctx
                .open_in_place(&case.metadata, &mut buf)
                .expect("open in place");
            assert_eq!(
                buf[range],
                case.pt[..],
                "{backend:?} {:?}",
                case.ctx.suite()
            );
        }
    }
}

#[test]
fn any_flipped_bit_fails_cleanly_and_leaves_no_plaintext() {
    for &backend in Backend::all() {
        for case in cases(backend) {
            for at in 0..case.ct.len() {
                let mut bad = case.ct.clone();
                bad[at] ^= 0x01;
                let mut out = vec![1, 2, 3];
                let err = case
                    .ctx
                    .open(&case.metadata, &bad, &mut out)
                    .expect_err("tampered frame must not open");
                assert!(
                    matches!(err, OpenError::AuthenticationFailed | OpenError::Malformed),
                    "{err:?}"
                );
                assert_eq!(out, [1, 2, 3]);
                let mut in_place = bad.clone();
                assert!(
                    case.ctx
                        .open_in_place(&case.metadata, &mut in_place)
                        .is_err()
                );
                let header_len = SframeHeader::decode(&case.ct).expect("header").1;
                assert!(
                    in_place[header_len..].iter().all(|&b| b == 0)
                        || in_place[header_len..] == bad[header_len..],
                    "failed open left decrypted bytes behind"
                );
            }
            let mut meta = case.metadata.clone();
            meta[0] ^= 0x80;
            assert_eq!(
                case.ctx.open(&meta, &case.ct, &mut Vec::new()),
                Err(OpenError::AuthenticationFailed)
            );
        }
    }
}

#[test]
fn frames_shorter_than_header_and_tag_are_malformed() {
    for &backend in Backend::all() {
        for case in cases(backend) {
            let header_len = SframeHeader::decode(&case.ct).expect("header").1;
            let min = header_len + case.ctx.suite().tag_len();
            for len in 0..min {
                assert_eq!(
                    case.ctx
                        .open(&case.metadata, &case.ct[..len], &mut Vec::new()),
                    Err(OpenError::Malformed),
                    "len {len}"
                );
            }
        }
    }
}

#[test]
fn both_backends_agree_beyond_the_vectors() {
    // Longer frames and CTRs that cross byte-length boundaries, checked across backends.
    let base_key = [0x42u8; 32];
    for suite in CipherSuite::ALL {
        let mut sealed: Vec<Vec<u8>> = Vec::new();
        for &backend in Backend::all() {
            let ctx = KeyContext::derive_with(backend, suite, 0x1234_5678_9abc, &base_key);
            let mut all = Vec::new();
            for (ctr, len) in [
                (0u64, 0usize),
                (7, 1),
                (8, 15),
                (255, 16),
                (256, 17),
                (u64::MAX, 4000),
            ] {
                let pt: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                ctx.seal(ctr, b"meta", &pt, &mut all).expect("seal");
            }
            sealed.push(all);
        }
        assert!(sealed.windows(2).all(|w| w[0] == w[1]), "{suite:?}");
    }
}
