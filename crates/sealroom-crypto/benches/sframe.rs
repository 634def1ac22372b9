//! Seal+open cost of sealroom's SFrame against its baselines, measured in the same run:
//!
//! - `raw_aead`: the bare AEAD of the same backend on the same buffer (AES-GCM, or
//!   AES-CTR then HMAC-SHA256 for the CTR suites), with an AAD as long as ours;
//! - `sframe_crate`: the `sframe` crate (ring backend, GCM suites only) sealing and opening
//!   the same payload with the same metadata;
//! - `sealroom`: `Sealer::seal_in_place` then `Opener::open_in_place`, replay window and
//!   key lookup included, on a buffer whose plaintext has the raw AEAD's alignment.
//!
//! After the criterion groups, a paired report (filter `paired`) times batches of
//! sealroom and each baseline back to back in alternating order and prints the median
//! ratio: the figure to quote on a shared, noisy machine.
//!
//! Quote ratios of medians from one run; the machine is shared.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};

use sealroom_crypto::{
    Backend, CipherSuite, KeyContext, KeySchedule, OpenerConfig, RoomSecret, make_kid,
};

const SIZES: [usize; 5] = [64, 160, 1200, 16384, 65536];
const METADATA: [u8; 28] = [0x11; 28];
/// Header length of a sealroom frame with a 60-bit session id and a small CTR.
const RAW_AAD_LEN: usize = 28 + 11;

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::RustCrypto => "rustcrypto",
        #[allow(unreachable_patterns)]
        _ => "aws-lc",
    }
}

/// The bare AEAD of one backend, keyed once, sealing and opening in place.
enum Raw {
    RustGcm(Box<aes_gcm::Aes128Gcm>),
    RustCtrHmac(Box<aes::Aes128>, Box<hmac::Hmac<sha2::Sha256>>),
    AwsGcm(aws_lc_rs::aead::LessSafeKey),
    AwsCtrHmac(
        Box<aws_lc_rs::cipher::EncryptingKey>,
        Box<aws_lc_rs::hmac::Key>,
    ),
}

impl Raw {
    fn new(backend: Backend, suite: CipherSuite) -> Self {
        use aes_gcm::KeyInit;
        let key = [0x42u8; 48];
        match (backend, suite.is_ctr_hmac()) {
            (Backend::RustCrypto, false) => Self::RustGcm(Box::new(
                aes_gcm::Aes128Gcm::new_from_slice(&key[..16]).expect("key"),
            )),
            (Backend::RustCrypto, true) => Self::RustCtrHmac(
                Box::new(aes::Aes128::new_from_slice(&key[..16]).expect("key")),
                Box::new(
                    <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key[16..]).expect("key"),
                ),
            ),
            (_, false) => Self::AwsGcm(aws_lc_rs::aead::LessSafeKey::new(
                aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_128_GCM, &key[..16])
                    .expect("key"),
            )),
            (_, true) => Self::AwsCtrHmac(
                Box::new(
                    aws_lc_rs::cipher::EncryptingKey::ctr(
                        aws_lc_rs::cipher::UnboundCipherKey::new(
                            &aws_lc_rs::cipher::AES_128,
                            &key[..16],
                        )
                        .expect("key"),
                    )
                    .expect("ctr"),
                ),
                Box::new(aws_lc_rs::hmac::Key::new(
                    aws_lc_rs::hmac::HMAC_SHA256,
                    &key[16..],
                )),
            ),
        }
    }

    fn seal_open(&self, nonce: [u8; 12], aad: &[u8], buf: &mut [u8]) {
        use aes_gcm::AeadInOut;
        match self {
            Self::RustGcm(aead) => {
                let tag = aead
                    .encrypt_inout_detached(&nonce.into(), aad, (&mut *buf).into())
                    .expect("seal");
                aead.decrypt_inout_detached(&nonce.into(), aad, buf.into(), &tag)
                    .expect("open");
            }
            Self::AwsGcm(key) => {
                use aws_lc_rs::aead::{Aad, Nonce};
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        buf,
                    )
                    .expect("seal");
                key.open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(aad),
                    tag.as_ref(),
                    buf,
                )
                .expect("open");
            }
            Self::RustCtrHmac(aes, mac) => {
                use aes::cipher::{InnerIvInit, StreamCipher};
                use hmac::Mac;
                let mut iv = [0u8; 16];
                iv[..12].copy_from_slice(&nonce);
                let crypt = |buf: &mut [u8]| {
                    let core = ctr::CtrCore::<aes::Aes128, ctr::flavors::Ctr32BE>::inner_iv_init(
                        aes::Aes128::clone(aes),
                        &iv.into(),
                    );
                    ctr::Ctr32BE::<aes::Aes128>::from_core(core).apply_keystream(buf);
                };
                let tag = |buf: &[u8]| {
                    let mut m = hmac::Hmac::<sha2::Sha256>::clone(mac);
                    m.update(&[0u8; 36]);
                    m.update(aad);
                    m.update(buf);
                    m.finalize().into_bytes()
                };
                crypt(buf);
                let t = tag(buf);
                let check = tag(buf);
                assert!(t[..10] == check[..10]);
                crypt(buf);
            }
            Self::AwsCtrHmac(aes, key) => {
                use aws_lc_rs::cipher::EncryptionContext;
                use aws_lc_rs::iv::FixedLength;
                let mut iv = [0u8; 16];
                iv[..12].copy_from_slice(&nonce);
                let crypt = |buf: &mut [u8]| {
                    aes.less_safe_encrypt(buf, EncryptionContext::Iv128(FixedLength::from(iv)))
                        .expect("ctr");
                };
                let tag = |buf: &[u8]| {
                    let mut ctx = aws_lc_rs::hmac::Context::with_key(key);
                    ctx.update(&[0u8; 36]);
                    ctx.update(aad);
                    ctx.update(buf);
                    ctx.sign()
                };
                crypt(buf);
                let t = tag(buf);
                let check = tag(buf);
                assert!(t.as_ref()[..10] == check.as_ref()[..10]);
                crypt(buf);
            }
        }
    }
}

/// One seal+open of a `size`-byte frame, ready to run again and again.
type Op = Box<dyn FnMut()>;

/// The bare AEAD of `backend` sealing and opening in place.
fn raw_op(backend: Backend, suite: CipherSuite, size: usize) -> Op {
    let raw = Raw::new(backend, suite);
    let aad = [0x11u8; RAW_AAD_LEN];
    let mut buf = vec![0x5au8; size];
    let mut n = 0u64;
    Box::new(move || {
        n += 1;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&n.to_be_bytes());
        raw.seal_open(nonce, &aad, black_box(&mut buf));
    })
}

/// sealroom: `Sealer::seal_in_place` then `Opener::open_in_place` on one buffer.
fn sealroom_op(schedule: &KeySchedule, size: usize) -> Op {
    let mut sealer = schedule.sealer(0);
    let mut opener = schedule.opener(0, OpenerConfig::default());
    // Room for the envelope and the SFrame header in front, with the plaintext at the
    // same 16-byte alignment as the raw AEAD's buffer (a sealer's caller picks it).
    let headroom = 64;
    let mut buf = Vec::with_capacity(headroom + size + 16);
    buf.resize(headroom, 0);
    buf.extend_from_slice(&vec![0x5au8; size]);
    let tag_len = schedule.suite().tag_len();
    Box::new(move || {
        let start = sealer
            .seal_in_place(&METADATA, &mut buf, headroom)
            .expect("seal");
        let opened = opener
            .open_in_place(&METADATA, black_box(&mut buf[start..]))
            .expect("open");
        black_box(opened.plaintext);
        buf.truncate(buf.len() - tag_len);
    })
}

/// The `sframe` crate (ring backend, AES-128-GCM) sealing and opening the same frame.
fn sframe_crate_op(size: usize) -> Op {
    use sframe::frame::{EncryptedFrameView, MediaFrameView, MonotonicCounter};
    use sframe::key::{DecryptionKey, EncryptionKey};
    let suite = sframe::CipherSuite::AesGcm128Sha256;
    let enc = EncryptionKey::derive_from(suite, 0x0123_4567_89ab_cdefu64, [7u8; 32]).expect("key");
    let dec = DecryptionKey::derive_from(suite, 0x0123_4567_89ab_cdefu64, [7u8; 32]).expect("key");
    let mut counter = MonotonicCounter::new(u64::MAX);
    let payload = vec![0x5au8; size];
    let mut sealed = Vec::with_capacity(size + 128);
    let mut opened = Vec::with_capacity(size + 128);
    Box::new(move || {
        let frame =
            MediaFrameView::try_with_meta_data(&mut counter, &payload, &METADATA).expect("counter");
        let encrypted = frame.encrypt_into(&enc, &mut sealed).expect("seal");
        let view =
            EncryptedFrameView::try_with_meta_data(encrypted.sframe_cipher_text(), &METADATA)
                .expect("parse");
        let media = view.decrypt_into(&dec, &mut opened).expect("open");
        black_box(media.payload().len());
    })
}

const SUITES: [CipherSuite; 2] = [
    CipherSuite::Aes128GcmSha256,
    CipherSuite::Aes128CtrHmacSha256Tag80,
];

fn seal_open(c: &mut Criterion) {
    let secret = RoomSecret::from_bytes([7; 32]);
    for &backend in Backend::all() {
        for suite in SUITES {
            let mut group = c.benchmark_group(format!(
                "seal_open/{}/suite{}",
                backend_name(backend),
                suite.id()
            ));
            let schedule = KeySchedule::with_backend(&secret, suite, backend);
            for size in SIZES {
                group.throughput(Throughput::Bytes(size as u64));
                let mut ops: Vec<(&str, Op)> = vec![
                    ("raw_aead", raw_op(backend, suite, size)),
                    ("sealroom", sealroom_op(&schedule, size)),
                ];
                if !suite.is_ctr_hmac() {
                    ops.push(("sframe_crate", sframe_crate_op(size)));
                }
                for (name, mut op) in ops {
                    group.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                        b.iter(&mut op);
                    });
                }
            }
            group.finish();
        }
    }
}

/// Median over rounds of (time of ours / time of the baseline), each round timing a
/// batch of each back to back in alternating order, so load that changes over
/// milliseconds (a shared machine) hits both sides of every ratio alike.
fn paired_ratio(ours: &mut Op, base: &mut Op, batch: u32, rounds: usize) -> f64 {
    let time = |op: &mut Op| {
        let start = Instant::now();
        for _ in 0..batch {
            op();
        }
        start.elapsed().as_secs_f64()
    };
    for _ in 0..batch {
        ours();
        base();
    }
    let mut ratios: Vec<f64> = (0..rounds)
        .map(|round| {
            if round % 2 == 0 {
                let b = time(base);
                time(ours) / b
            } else {
                let o = time(ours);
                o / time(base)
            }
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

/// The figures to quote: paired medians of sealroom over the raw AEAD and over the
/// `sframe` crate, per backend, suite and size. Runs under `cargo bench` unless a filter
/// excludes "paired".
fn paired_report() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; without it (`cargo test --bench`, criterion's test
    // mode) or when listing, the timed report has nothing to do.
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test" || a == "--list") {
        return;
    }
    // A filter of "paired" or "paired/<backend>/<suite>" (a prefix) selects this report.
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let wanted = |name: &str| {
        filters.is_empty()
            || filters
                .iter()
                .any(|f| "paired".contains(f.as_str()) || name.starts_with(f.as_str()))
    };
    if !filters.is_empty()
        && !filters
            .iter()
            .any(|f| f.starts_with("paired") || "paired".contains(f.as_str()))
    {
        return;
    }
    let secret = RoomSecret::from_bytes([7; 32]);
    println!("paired seal+open ratios (median of 201 interleaved rounds):");
    for &backend in Backend::all() {
        for suite in SUITES {
            let schedule = KeySchedule::with_backend(&secret, suite, backend);
            for size in SIZES {
                let name = format!(
                    "paired/{}/suite{}/{size}",
                    backend_name(backend),
                    suite.id()
                );
                if !wanted(&name) {
                    continue;
                }
                let batch = (64 * 1024 / size.max(256)).clamp(4, 256) as u32;
                let mut ours = sealroom_op(&schedule, size);
                let mut raw = raw_op(backend, suite, size);
                let over_raw = paired_ratio(&mut ours, &mut raw, batch, 201);
                let over_sframe = if suite.is_ctr_hmac() {
                    "   n/a (no CTR suites with ring)".to_string()
                } else {
                    let mut other = sframe_crate_op(size);
                    format!("{:6.3}", paired_ratio(&mut ours, &mut other, batch, 201))
                };
                println!(
                    "{name}: sealroom/raw_aead {over_raw:6.3}  sealroom/sframe_crate {over_sframe}"
                );
            }
        }
    }
}

fn key_derivation(c: &mut Criterion) {
    let secret = RoomSecret::from_bytes([7; 32]);
    let mut group = c.benchmark_group("key_derivation");
    for &backend in Backend::all() {
        let name = backend_name(backend);
        for suite in [
            CipherSuite::Aes128GcmSha256,
            CipherSuite::Aes128CtrHmacSha256Tag80,
        ] {
            let schedule = KeySchedule::with_backend(&secret, suite, backend);
            let mut session = 0u64;
            group.bench_function(format!("room_schedule/{name}/suite{}", suite.id()), |b| {
                b.iter(|| {
                    session += 1;
                    black_box(schedule.key_context(0, make_kid(0, session)))
                });
            });
            group.bench_function(format!("rfc9605_only/{name}/suite{}", suite.id()), |b| {
                b.iter(|| black_box(KeyContext::derive_with(backend, suite, 42, &[7u8; 32])));
            });
        }
    }
    group.bench_function("sframe_crate/suite4", |b| {
        b.iter(|| {
            black_box(
                sframe::key::EncryptionKey::derive_from(
                    sframe::CipherSuite::AesGcm128Sha256,
                    42u64,
                    [7u8; 32],
                )
                .expect("key"),
            )
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = seal_open, key_derivation
}
fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    paired_report();
}
