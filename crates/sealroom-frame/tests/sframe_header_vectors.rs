//! The 289 SFrame header vectors of RFC 9605 (appendix C.1), from the published JSON.

use serde::Deserialize;

use sealroom_frame::sframe::{HeaderError, SframeHeader};

#[derive(Deserialize)]
struct Vectors {
    header: Vec<HeaderVector>,
}

#[derive(Deserialize)]
struct HeaderVector {
    kid: u64,
    ctr: u64,
    encoded: String,
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn vectors() -> Vec<HeaderVector> {
    let text = include_str!("data/rfc9605-test-vectors.json");
    let parsed: Vectors = serde_json::from_str(text).expect("vector file parses");
    parsed.header
}

#[test]
fn all_289_header_vectors_are_present() {
    assert_eq!(vectors().len(), 289);
}

#[test]
fn encode_matches_every_vector() {
    for v in vectors() {
        let expected = unhex(&v.encoded);
        let header = SframeHeader::new(v.kid, v.ctr);
        assert_eq!(
            header.encode_array().as_bytes(),
            expected.as_slice(),
            "kid {} ctr {}",
            v.kid,
            v.ctr
        );
        let mut buf = Vec::new();
        header.encode(&mut buf);
        assert_eq!(buf, expected, "kid {} ctr {}", v.kid, v.ctr);
        assert_eq!(header.encoded_len(), expected.len());
    }
}

#[test]
fn decode_matches_every_vector_with_and_without_a_payload() {
    for v in vectors() {
        let mut bytes = unhex(&v.encoded);
        let len = bytes.len();
        let expected = SframeHeader::new(v.kid, v.ctr);
        assert_eq!(SframeHeader::decode(&bytes), Ok((expected, len)));
        bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(SframeHeader::decode(&bytes), Ok((expected, len)));
    }
}

#[test]
fn every_truncated_vector_is_rejected() {
    for v in vectors() {
        let bytes = unhex(&v.encoded);
        for cut in 0..bytes.len() {
            match SframeHeader::decode(&bytes[..cut]) {
                Err(HeaderError::Truncated { have, needed }) => {
                    assert_eq!(have, cut);
                    assert!(needed > cut && needed <= bytes.len());
                }
                other => panic!("kid {} ctr {} cut {cut}: {other:?}", v.kid, v.ctr),
            }
        }
    }
}
