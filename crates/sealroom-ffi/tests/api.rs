//! The exported API called from Rust, as the generated bindings call it: sealing objects
//! interoperate with the crypto crate, errors carry their typed causes, minted tickets
//! verify the way a relay verifies them.

use std::time::{SystemTime, UNIX_EPOCH};

use sealroom_ffi::{Grants, KeyMaterialError, KeySchedule, OpenError, mint_ticket};

#[test]
fn frames_sealed_through_the_bindings_open_with_the_crypto_crate_and_back() {
    let secret = [9u8; 32];
    let bindings = KeySchedule::new(secret.to_vec(), 4).expect("schedule");
    let crate_schedule = sealroom_crypto::KeySchedule::new(
        &sealroom_crypto::RoomSecret::from_bytes(secret),
        sealroom_crypto::CipherSuite::Aes128GcmSha256,
    );
    let sealer = bindings.sealer(3);
    let sealed = sealer.seal(b"meta", b"payload").expect("seal");
    let mut opener = crate_schedule.opener(3, sealroom_crypto::OpenerConfig::default());
    let mut out = Vec::new();
    let opened = opener.open(b"meta", &sealed, &mut out).expect("opens");
    assert_eq!(&out[opened.plaintext], b"payload");
    assert_eq!(opened.kid, sealer.kid());

    let mut crate_sealer = crate_schedule.sealer(3);
    let mut wire = Vec::new();
    crate_sealer
        .seal(b"meta", b"back", &mut wire)
        .expect("seal");
    let ours = bindings.opener(3);
    assert_eq!(ours.open(b"meta", &wire).expect("opens").plaintext, b"back");
    assert!(matches!(
        ours.open(b"meta", &wire),
        Err(OpenError::Replayed)
    ));
    assert!(matches!(
        ours.open(b"other", &sealed),
        Err(OpenError::AuthenticationFailed)
    ));
}

#[test]
fn bad_key_material_is_a_typed_error() {
    assert!(matches!(
        KeySchedule::new(vec![0; 31], 4),
        Err(KeyMaterialError::InvalidSecret { len: 31 })
    ));
    assert!(matches!(
        KeySchedule::new(vec![0; 32], 6),
        Err(KeyMaterialError::UnknownSuite { id: 6 })
    ));
}

#[test]
fn minted_tickets_verify_as_the_relay_verifies_them() {
    let grants = Grants {
        publish_audio: true,
        publish_video: false,
        publish_data: true,
        subscribe: true,
        record: false,
    };
    let secret = b"an app secret of thirty-two bytes!".to_vec();
    let ticket = mint_ticket(
        "app".into(),
        "ada".into(),
        "lab".into(),
        "k1".into(),
        secret.clone(),
        60,
        grants,
    )
    .expect("mint");
    let verifier = sealroom_ticket::TicketVerifier::new(
        &[sealroom_ticket::AppConfig::new("app", "k1", secret)],
        0,
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = verifier.verify(&ticket, now).expect("verifies");
    assert_eq!((claims.user.as_str(), claims.room.as_str()), ("ada", "lab"));
    assert!(!claims.grants.publish_video && claims.grants.publish_audio);
    assert!(
        mint_ticket(
            "app".into(),
            "ada".into(),
            "lab".into(),
            "k1".into(),
            vec![],
            60,
            grants
        )
        .is_err()
    );
}
