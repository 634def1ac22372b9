//! The one seam between SFrame and the libraries that implement AES, GCM, HMAC and HKDF.
//!
//! Everything above this module speaks in suites, nonces and byte slices; everything
//! below it is either RustCrypto (pure Rust) or aws-lc-rs (assembly, behind the `aws-lc`
//! feature). Both implement the same five suites bit for bit; the test suite runs every
//! RFC 9605 vector through each.

use aes::cipher::{InnerIvInit, StreamCipher};
use aes_gcm::{AeadInOut, KeyInit};
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use sealroom_frame::Envelope;
use sealroom_frame::sframe::{EncodedHeader, SframeHeader};

use crate::suite::{CipherSuite, Hash, MAX_TAG_LEN, NONCE_LEN};

/// Which cryptographic library does the work.
///
/// Both backends produce identical bytes; they differ in speed and portability.
/// [`Backend::default`] is [`Backend::AwsLc`] when the `aws-lc` feature is on (it is by
/// default) and [`Backend::RustCrypto`] otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Backend {
    /// RustCrypto's `aes-gcm`, `aes`, `ctr`, `hmac`, `hkdf` and `sha2`: pure Rust, builds
    /// everywhere including wasm32.
    #[cfg_attr(not(feature = "aws-lc"), default)]
    RustCrypto,
    /// aws-lc-rs: AWS-LC's assembly AES-GCM, several times faster on x86-64 and aarch64;
    /// the same library rustls uses for QUIC here.
    #[cfg(feature = "aws-lc")]
    #[default]
    AwsLc,
}

impl Backend {
    /// Every backend compiled into this build.
    pub fn all() -> &'static [Self] {
        #[cfg(feature = "aws-lc")]
        {
            &[Self::RustCrypto, Self::AwsLc]
        }
        #[cfg(not(feature = "aws-lc"))]
        {
            &[Self::RustCrypto]
        }
    }
}

/// The backend refused an operation that valid sizes never make it refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused;

/// Longest hash output (SHA-512).
pub(crate) const MAX_HASH_LEN: usize = 64;

/// An HKDF pseudorandom key, zeroized on drop.
#[derive(Clone)]
pub(crate) struct Prk {
    bytes: Zeroizing<[u8; MAX_HASH_LEN]>,
    len: usize,
}

impl Prk {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&self.bytes[..])
    }
}

fn hash_len(hash: Hash) -> usize {
    match hash {
        Hash::Sha256 => 32,
        Hash::Sha512 => 64,
    }
}

/// HKDF-Extract(salt, ikm) with `hash`.
pub(crate) fn hkdf_extract(backend: Backend, hash: Hash, salt: &[u8], ikm: &[u8]) -> Prk {
    let len = hash_len(hash);
    let mut bytes = Zeroizing::new([0u8; MAX_HASH_LEN]);
    match backend {
        Backend::RustCrypto => match hash {
            Hash::Sha256 => {
                let (prk, _) = hkdf::Hkdf::<Sha256>::extract(Some(salt), ikm);
                bytes[..len].copy_from_slice(&prk);
            }
            Hash::Sha512 => {
                let (prk, _) = hkdf::Hkdf::<Sha512>::extract(Some(salt), ikm);
                bytes[..len].copy_from_slice(&prk);
            }
        },
        #[cfg(feature = "aws-lc")]
        Backend::AwsLc => {
            // HKDF-Extract is HMAC(salt, ikm) by definition (RFC 5869 section 2.2).
            let alg = match hash {
                Hash::Sha256 => aws_lc_rs::hmac::HMAC_SHA256,
                Hash::Sha512 => aws_lc_rs::hmac::HMAC_SHA512,
            };
            let key = aws_lc_rs::hmac::Key::new(alg, salt);
            let tag = aws_lc_rs::hmac::sign(&key, ikm);
            bytes[..len].copy_from_slice(tag.as_ref());
        }
    }
    Prk { bytes, len }
}

#[cfg(feature = "aws-lc")]
struct OkmLen(usize);

#[cfg(feature = "aws-lc")]
impl aws_lc_rs::hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand(prk, info, out.len()) with `hash`, where `info` is the concatenation of
/// `info_parts`. `out.len()` must be at most 255 hash lengths (ours are at most 64 bytes).
pub(crate) fn hkdf_expand(
    backend: Backend,
    hash: Hash,
    prk: &[u8],
    info_parts: &[&[u8]],
    out: &mut [u8],
) {
    let done = match backend {
        Backend::RustCrypto => match hash {
            Hash::Sha256 => hkdf::Hkdf::<Sha256>::from_prk(prk)
                .ok()
                .and_then(|hk| hk.expand_multi_info(info_parts, out).ok()),
            Hash::Sha512 => hkdf::Hkdf::<Sha512>::from_prk(prk)
                .ok()
                .and_then(|hk| hk.expand_multi_info(info_parts, out).ok()),
        },
        #[cfg(feature = "aws-lc")]
        Backend::AwsLc => {
            let alg = match hash {
                Hash::Sha256 => aws_lc_rs::hkdf::HKDF_SHA256,
                Hash::Sha512 => aws_lc_rs::hkdf::HKDF_SHA512,
            };
            let prk = aws_lc_rs::hkdf::Prk::new_less_safe(alg, prk);
            let len = OkmLen(out.len());
            prk.expand(info_parts, len)
                .ok()
                .and_then(|okm| okm.fill(out).ok())
        }
    };
    // Lengths are constants of this crate (a PRK of the hash length, outputs of at most
    // 64 bytes), so neither library can refuse; a refusal would leave a predictable key.
    assert!(
        done.is_some(),
        "hkdf-expand refused constant, valid lengths"
    );
}

type HmacSha256 = Hmac<Sha256>;
type AesCtr = ctr::Ctr32BE<aes::Aes128>;
type AesCtrCore = ctr::CtrCore<aes::Aes128, ctr::flavors::Ctr32BE>;

/// A keyed AEAD for one suite: the precomputed key schedules, ready to seal and open.
pub(crate) enum Cipher {
    RustGcm128(Box<aes_gcm::Aes128Gcm>),
    RustGcm256(Box<aes_gcm::Aes256Gcm>),
    RustCtrHmac {
        aes: Box<aes::Aes128>,
        mac: Box<HmacSha256>,
        tag_len: usize,
    },
    #[cfg(feature = "aws-lc")]
    AwsGcm(aws_lc_rs::aead::LessSafeKey),
    #[cfg(feature = "aws-lc")]
    AwsCtrHmac {
        aes: Box<aws_lc_rs::cipher::EncryptingKey>,
        mac: Box<aws_lc_rs::hmac::Key>,
        tag_len: usize,
    },
}

/// The two parts of an SFrame AAD: the encoded header, then the metadata.
#[derive(Clone, Copy)]
pub(crate) struct AadParts<'a> {
    header: &'a [u8],
    /// The header zero-padded to its maximum length, when the caller has it that way:
    /// lets the AAD be assembled with fixed-size moves.
    padded: Option<&'a [u8; SframeHeader::MAX_LEN]>,
    metadata: &'a [u8],
}

impl<'a> AadParts<'a> {
    pub(crate) fn new(header: &'a EncodedHeader, metadata: &'a [u8]) -> Self {
        Self {
            header: header.as_bytes(),
            padded: Some(header.as_array()),
            metadata,
        }
    }

    #[cfg(test)]
    fn raw(header: &'a [u8], metadata: &'a [u8]) -> Self {
        Self {
            header,
            padded: None,
            metadata,
        }
    }

    fn len(&self) -> usize {
        self.header.len() + self.metadata.len()
    }

    /// Run `f` on `header || metadata` laid out contiguously: on the stack when it is
    /// small, as it always is for sealroom's 28-byte envelope metadata, else on the heap.
    fn with_contiguous<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        const STACK: usize = 64;
        let header_len = self.header.len();
        let len = self.len();
        if len > STACK {
            let mut aad = Vec::with_capacity(len);
            aad.extend_from_slice(self.header);
            aad.extend_from_slice(self.metadata);
            return f(&aad);
        }
        let mut aad = [0u8; STACK];
        match self.padded {
            Some(padded) => aad[..SframeHeader::MAX_LEN].copy_from_slice(padded),
            None => aad[..header_len].copy_from_slice(self.header),
        }
        // Fixed-size move for the envelope metadata; it overwrites the header's padding.
        match <&[u8; Envelope::METADATA_LEN]>::try_from(self.metadata) {
            Ok(meta) => aad[header_len..header_len + Envelope::METADATA_LEN].copy_from_slice(meta),
            Err(_) => aad[header_len..len].copy_from_slice(self.metadata),
        }
        f(&aad[..len])
    }
}

/// The CTR initial counter block of RFC 9605 section 4.5.1: the nonce then four zero bytes.
fn ctr_iv(nonce: &[u8; NONCE_LEN]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..NONCE_LEN].copy_from_slice(nonce);
    iv
}

/// The fixed-size prefix of the HMAC input of RFC 9605 section 4.5.1:
/// `len(aad) || len(ct) || Nt` as 8-byte big-endian integers, then the nonce.
fn mac_prefix(aad_len: usize, ct_len: usize, tag_len: usize, nonce: &[u8; NONCE_LEN]) -> [u8; 36] {
    let mut prefix = [0u8; 36];
    prefix[..8].copy_from_slice(&(aad_len as u64).to_be_bytes());
    prefix[8..16].copy_from_slice(&(ct_len as u64).to_be_bytes());
    prefix[16..24].copy_from_slice(&(tag_len as u64).to_be_bytes());
    prefix[24..].copy_from_slice(nonce);
    prefix
}

impl Cipher {
    /// Key the suite's AEAD with `key` (exactly `suite.key_len()` bytes).
    pub(crate) fn new(backend: Backend, suite: CipherSuite, key: &[u8]) -> Self {
        debug_assert_eq!(key.len(), suite.key_len());
        match backend {
            Backend::RustCrypto => Self::new_rust(suite, key),
            #[cfg(feature = "aws-lc")]
            Backend::AwsLc => Self::new_aws(suite, key),
        }
    }

    fn new_rust(suite: CipherSuite, key: &[u8]) -> Self {
        const LEN: &str = "key length is the suite's Nk";
        match suite {
            CipherSuite::Aes128GcmSha256 => Self::RustGcm128(Box::new(
                aes_gcm::Aes128Gcm::new_from_slice(key).expect(LEN),
            )),
            CipherSuite::Aes256GcmSha512 => Self::RustGcm256(Box::new(
                aes_gcm::Aes256Gcm::new_from_slice(key).expect(LEN),
            )),
            CipherSuite::Aes128CtrHmacSha256Tag80
            | CipherSuite::Aes128CtrHmacSha256Tag64
            | CipherSuite::Aes128CtrHmacSha256Tag32 => {
                let (enc, auth) = key.split_at(16);
                Self::RustCtrHmac {
                    aes: Box::new(aes::Aes128::new_from_slice(enc).expect(LEN)),
                    mac: Box::new(
                        <HmacSha256 as KeyInit>::new_from_slice(auth).expect("hmac takes any key"),
                    ),
                    tag_len: suite.tag_len(),
                }
            }
        }
    }

    #[cfg(feature = "aws-lc")]
    fn new_aws(suite: CipherSuite, key: &[u8]) -> Self {
        use aws_lc_rs::{aead, cipher, hmac};
        const LEN: &str = "key length is the suite's Nk";
        match suite {
            CipherSuite::Aes128GcmSha256 => Self::AwsGcm(aead::LessSafeKey::new(
                aead::UnboundKey::new(&aead::AES_128_GCM, key).expect(LEN),
            )),
            CipherSuite::Aes256GcmSha512 => Self::AwsGcm(aead::LessSafeKey::new(
                aead::UnboundKey::new(&aead::AES_256_GCM, key).expect(LEN),
            )),
            CipherSuite::Aes128CtrHmacSha256Tag80
            | CipherSuite::Aes128CtrHmacSha256Tag64
            | CipherSuite::Aes128CtrHmacSha256Tag32 => {
                let (enc, auth) = key.split_at(16);
                let unbound = cipher::UnboundCipherKey::new(&cipher::AES_128, enc).expect(LEN);
                Self::AwsCtrHmac {
                    aes: Box::new(
                        cipher::EncryptingKey::ctr(unbound).expect("aes-128 supports ctr"),
                    ),
                    mac: Box::new(hmac::Key::new(hmac::HMAC_SHA256, auth)),
                    tag_len: suite.tag_len(),
                }
            }
        }
    }

    /// Truncated HMAC tag over `prefix || header || metadata || ct` (RFC 9605 4.5.1).
    fn ctr_hmac_tag(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: AadParts<'_>,
        ct: &[u8],
        tag_len: usize,
    ) -> Zeroizing<[u8; 32]> {
        let (header, metadata) = (aad.header, aad.metadata);
        let prefix = mac_prefix(aad.len(), ct.len(), tag_len, nonce);
        let mut full = Zeroizing::new([0u8; 32]);
        match self {
            Self::RustCtrHmac { mac, .. } => {
                let mut mac = HmacSha256::clone(mac);
                mac.update(&prefix);
                mac.update(header);
                mac.update(metadata);
                mac.update(ct);
                full.copy_from_slice(&mac.finalize().into_bytes());
            }
            #[cfg(feature = "aws-lc")]
            Self::AwsCtrHmac { mac, .. } => {
                let mut ctx = aws_lc_rs::hmac::Context::with_key(mac);
                ctx.update(&prefix);
                ctx.update(header);
                ctx.update(metadata);
                ctx.update(ct);
                full.copy_from_slice(ctx.sign().as_ref());
            }
            _ => {}
        }
        full
    }

    /// Apply the AES-CTR keystream for `nonce` to `in_out` (encrypts and decrypts).
    fn ctr_apply(&self, nonce: &[u8; NONCE_LEN], in_out: &mut [u8]) -> Result<(), Refused> {
        let iv = ctr_iv(nonce);
        match self {
            Self::RustCtrHmac { aes, .. } => {
                let core = AesCtrCore::inner_iv_init(aes::Aes128::clone(aes), &iv.into());
                let mut ctr = AesCtr::from_core(core);
                ctr.apply_keystream(in_out);
                Ok(())
            }
            #[cfg(feature = "aws-lc")]
            Self::AwsCtrHmac { aes, .. } => {
                use aws_lc_rs::cipher::EncryptionContext;
                use aws_lc_rs::iv::FixedLength;
                aes.less_safe_encrypt(in_out, EncryptionContext::Iv128(FixedLength::from(iv)))
                    .map(|_| ())
                    .map_err(|_| Refused)
            }
            _ => Err(Refused),
        }
    }

    /// Encrypt `in_out` in place and write the tag into `tag` (exactly the suite's `Nt`
    /// bytes). The AAD is `header || metadata`.
    pub(crate) fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: AadParts<'_>,
        in_out: &mut [u8],
        tag: &mut [u8],
    ) -> Result<(), Refused> {
        match self {
            Self::RustGcm128(aead) => aad.with_contiguous(|aad| {
                let t = aead
                    .encrypt_inout_detached(&(*nonce).into(), aad, in_out.into())
                    .map_err(|_| Refused)?;
                copy_tag(tag, &t)
            }),
            Self::RustGcm256(aead) => aad.with_contiguous(|aad| {
                let t = aead
                    .encrypt_inout_detached(&(*nonce).into(), aad, in_out.into())
                    .map_err(|_| Refused)?;
                copy_tag(tag, &t)
            }),
            #[cfg(feature = "aws-lc")]
            Self::AwsGcm(key) => aad.with_contiguous(|aad| {
                use aws_lc_rs::aead::{Aad, Nonce};
                let t = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(*nonce),
                        Aad::from(aad),
                        in_out,
                    )
                    .map_err(|_| Refused)?;
                copy_tag(tag, t.as_ref())
            }),
            Self::RustCtrHmac { tag_len, .. } => {
                self.ctr_apply(nonce, in_out)?;
                let full = self.ctr_hmac_tag(nonce, aad, in_out, *tag_len);
                copy_tag(tag, full.get(..*tag_len).ok_or(Refused)?)
            }
            #[cfg(feature = "aws-lc")]
            Self::AwsCtrHmac { tag_len, .. } => {
                self.ctr_apply(nonce, in_out)?;
                let full = self.ctr_hmac_tag(nonce, aad, in_out, *tag_len);
                copy_tag(tag, full.get(..*tag_len).ok_or(Refused)?)
            }
        }
    }

    /// Verify `tag` and decrypt `in_out` in place. On error `in_out` holds unspecified
    /// bytes and must not be used. The CTR+HMAC suites compare the tag in constant time
    /// before decrypting anything.
    pub(crate) fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: AadParts<'_>,
        in_out: &mut [u8],
        tag: &[u8],
    ) -> Result<(), Refused> {
        match self {
            Self::RustGcm128(aead) => aad.with_contiguous(|aad| {
                let tag = <&[u8; MAX_TAG_LEN]>::try_from(tag).map_err(|_| Refused)?;
                aead.decrypt_inout_detached(&(*nonce).into(), aad, in_out.into(), &(*tag).into())
                    .map_err(|_| Refused)
            }),
            Self::RustGcm256(aead) => aad.with_contiguous(|aad| {
                let tag = <&[u8; MAX_TAG_LEN]>::try_from(tag).map_err(|_| Refused)?;
                aead.decrypt_inout_detached(&(*nonce).into(), aad, in_out.into(), &(*tag).into())
                    .map_err(|_| Refused)
            }),
            #[cfg(feature = "aws-lc")]
            Self::AwsGcm(key) => aad.with_contiguous(|aad| {
                use aws_lc_rs::aead::{Aad, Nonce};
                key.open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(*nonce),
                    Aad::from(aad),
                    tag,
                    in_out,
                )
                .map(|_| ())
                .map_err(|_| Refused)
            }),
            Self::RustCtrHmac { tag_len, .. } => {
                self.ctr_hmac_verify(nonce, aad, in_out, tag, *tag_len)?;
                self.ctr_apply(nonce, in_out)
            }
            #[cfg(feature = "aws-lc")]
            Self::AwsCtrHmac { tag_len, .. } => {
                self.ctr_hmac_verify(nonce, aad, in_out, tag, *tag_len)?;
                self.ctr_apply(nonce, in_out)
            }
        }
    }

    fn ctr_hmac_verify(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: AadParts<'_>,
        ct: &[u8],
        tag: &[u8],
        tag_len: usize,
    ) -> Result<(), Refused> {
        let full = self.ctr_hmac_tag(nonce, aad, ct, tag_len);
        let expected = full.get(..tag_len).ok_or(Refused)?;
        if tag.len() == tag_len && bool::from(expected.ct_eq(tag)) {
            Ok(())
        } else {
            Err(Refused)
        }
    }
}

fn copy_tag(out: &mut [u8], tag: &[u8]) -> Result<(), Refused> {
    if out.len() != tag.len() {
        return Err(Refused);
    }
    out.copy_from_slice(tag);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct Vectors {
        aes_ctr_hmac: Vec<V>,
    }

    #[derive(Deserialize)]
    struct V {
        cipher_suite: u16,
        key: String,
        nonce: String,
        aad: String,
        pt: String,
        ct: String,
    }

    fn unhex(text: &str) -> Vec<u8> {
        hex::decode(text).expect("hex")
    }

    #[test]
    fn aes_ctr_hmac_vectors_on_every_backend() {
        let text = include_str!("../tests/data/rfc9605-test-vectors.json");
        let vectors: Vectors = serde_json::from_str(text).expect("parses");
        assert_eq!(vectors.aes_ctr_hmac.len(), 3);
        for &backend in Backend::all() {
            for v in &vectors.aes_ctr_hmac {
                let suite = CipherSuite::from_id(v.cipher_suite).expect("suite");
                let cipher = Cipher::new(backend, suite, &unhex(&v.key));
                let nonce: [u8; NONCE_LEN] = unhex(&v.nonce).try_into().expect("12 bytes");
                let aad = unhex(&v.aad);
                let expected = unhex(&v.ct);
                let mut body = unhex(&v.pt);
                let mut tag = vec![0u8; suite.tag_len()];
                // The AAD may be split anywhere between header and metadata.
                let (head, meta) = aad.split_at(aad.len() / 3);
                cipher
                    .seal(&nonce, AadParts::raw(head, meta), &mut body, &mut tag)
                    .expect("seal");
                assert_eq!(
                    [body.clone(), tag.clone()].concat(),
                    expected,
                    "{backend:?}"
                );
                cipher
                    .open(&nonce, AadParts::raw(&aad, b""), &mut body, &tag)
                    .expect("open");
                assert_eq!(body, unhex(&v.pt));
                let last = tag.len() - 1;
                tag[last] ^= 1;
                assert_eq!(
                    cipher.open(&nonce, AadParts::raw(&aad, b""), &mut body, &tag),
                    Err(Refused)
                );
            }
        }
    }

    #[test]
    fn padded_and_plain_aad_assembly_agree() {
        for kid in [0u64, 8, 1 << 40, u64::MAX] {
            for ctr in [0u64, 300, u64::MAX] {
                let header = SframeHeader::new(kid, ctr).encode_array();
                for meta_len in [0usize, 1, 28, 29, 47, 48, 100] {
                    let metadata = vec![0x3c; meta_len];
                    let fast = AadParts::new(&header, &metadata).with_contiguous(<[u8]>::to_vec);
                    let plain =
                        AadParts::raw(header.as_bytes(), &metadata).with_contiguous(<[u8]>::to_vec);
                    assert_eq!(fast, plain);
                    assert_eq!(fast, [header.as_bytes(), &metadata].concat());
                }
            }
        }
    }

    #[test]
    fn long_metadata_takes_the_heap_path_and_still_authenticates() {
        for &backend in Backend::all() {
            for suite in CipherSuite::ALL {
                let cipher = Cipher::new(backend, suite, &vec![1u8; suite.key_len()]);
                let metadata = vec![9u8; 300];
                let mut body = b"payload".to_vec();
                let mut tag = vec![0u8; suite.tag_len()];
                cipher
                    .seal(
                        &[0; 12],
                        AadParts::raw(b"h", &metadata),
                        &mut body,
                        &mut tag,
                    )
                    .expect("seal");
                let mut other = metadata.clone();
                other[299] = 0;
                let mut copy = body.clone();
                assert!(
                    cipher
                        .open(&[0; 12], AadParts::raw(b"h", &other), &mut copy, &tag)
                        .is_err()
                );
                cipher
                    .open(&[0; 12], AadParts::raw(b"h", &metadata), &mut body, &tag)
                    .expect("open");
                assert_eq!(body, b"payload");
            }
        }
    }
}
