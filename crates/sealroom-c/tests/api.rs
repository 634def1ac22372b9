//! The C entry points called from Rust: frames sealed through the C API open with the
//! Rust crate and the other way round, with the same refusals. Calling C functions is
//! unsafe, so this test, like `src/ffi/`, allows it.

#![allow(unsafe_code)]

use std::ptr;

use sealroom_c::*;
use sealroom_crypto::{CipherSuite, KeySchedule, OpenError, OpenerConfig, RoomSecret};

const SECRET: [u8; 32] = [0x11; 32];

fn schedule_handle() -> *mut SealroomKeySchedule {
    let mut schedule = ptr::null_mut();
    // SAFETY: a 32-byte secret and a valid output pointer.
    let status = unsafe { sealroom_key_schedule_new(SECRET.as_ptr(), 32, 4, &mut schedule) };
    assert_eq!(status, SealroomStatus::Ok);
    schedule
}

#[test]
fn frames_cross_between_the_c_api_and_the_rust_crate() {
    let rust = KeySchedule::new(
        &RoomSecret::from_bytes(SECRET),
        CipherSuite::Aes128GcmSha256,
    );
    let schedule = schedule_handle();
    let (mut sealer, mut opener) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: live handles and valid output pointers throughout; buffers with their lengths.
    unsafe {
        assert_eq!(
            sealroom_sealer_new(schedule, 2, &mut sealer),
            SealroomStatus::Ok
        );
        assert_eq!(
            sealroom_opener_new(schedule, 2, ptr::null(), &mut opener),
            SealroomStatus::Ok
        );
        sealroom_key_schedule_free(schedule);
    }
    let metadata = b"envelope bytes";
    let payload = vec![0x42u8; 1200];

    // C seals, Rust opens.
    let mut sframe = vec![0u8; 1200 + SEALROOM_MAX_HEADER_LEN + SEALROOM_MAX_TAG_LEN];
    let mut len = 0;
    // SAFETY: as above.
    let status = unsafe {
        sealroom_sealer_seal(
            sealer,
            metadata.as_ptr(),
            metadata.len(),
            payload.as_ptr(),
            payload.len(),
            sframe.as_mut_ptr(),
            sframe.len(),
            &mut len,
        )
    };
    assert_eq!(status, SealroomStatus::Ok);
    let mut rust_opener = rust.opener(2, OpenerConfig::default());
    let mut plain = Vec::new();
    let opened = rust_opener
        .open(metadata, &sframe[..len], &mut plain)
        .expect("opens");
    assert_eq!(plain[opened.plaintext], payload[..]);
    assert_eq!(
        rust_opener.open(b"other metadata", &sframe[..len], &mut Vec::new()),
        Err(OpenError::Replayed),
        "the window is checked before the tag"
    );

    // Rust seals, C opens; a tampered copy is refused and leaves no plaintext.
    let mut rust_sealer = rust.sealer(2);
    let mut wire = Vec::new();
    rust_sealer
        .seal(metadata, &payload, &mut wire)
        .expect("seal");
    let mut tampered = wire.clone();
    tampered[5] ^= 1;
    let mut out = vec![0u8; wire.len()];
    let mut result = SealroomOpened::default();
    // SAFETY: as above.
    let (refused, accepted) = unsafe {
        let refused = sealroom_opener_open(
            opener,
            metadata.as_ptr(),
            metadata.len(),
            tampered.as_ptr(),
            tampered.len(),
            out.as_mut_ptr(),
            out.len(),
            &mut result,
        );
        let leftover = out.windows(16).any(|w| w == &payload[..16]);
        assert!(!leftover, "no unauthenticated plaintext after a refusal");
        let accepted = sealroom_opener_open(
            opener,
            metadata.as_ptr(),
            metadata.len(),
            wire.as_ptr(),
            wire.len(),
            out.as_mut_ptr(),
            out.len(),
            &mut result,
        );
        sealroom_sealer_free(sealer);
        sealroom_opener_free(opener);
        (refused, accepted)
    };
    assert_eq!(refused, SealroomStatus::AuthenticationFailed);
    assert_eq!(accepted, SealroomStatus::Ok);
    assert_eq!(result.kid, rust_sealer.kid());
    assert_eq!(out[..result.plaintext_len], payload[..]);
}
