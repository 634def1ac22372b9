//! The plain RFC 9605 layer: a key context for one KID, and sealing and opening with it.

use std::ops::Range;

use sealroom_frame::sframe::{EncodedHeader, SframeHeader};
use zeroize::{Zeroize, Zeroizing};

use crate::backend::{AadParts, Backend, Cipher, hkdf_expand, hkdf_extract};
use crate::buffer::FrameBuffer;
use crate::error::{OpenError, SealError};
use crate::suite::{CipherSuite, MAX_KEY_LEN, MAX_TAG_LEN, NONCE_LEN};

/// Longest plaintext one frame may carry (1 GiB). Media frames are far smaller; the
/// bound keeps every suite inside its per-message limits.
pub const MAX_PLAINTEXT_LEN: usize = 1 << 30;

/// Label prefixes of RFC 9605 section 4.4.2, trailing space included.
const KEY_LABEL: &[u8] = b"SFrame 1.0 Secret key ";
const SALT_LABEL: &[u8] = b"SFrame 1.0 Secret salt ";

/// The SFrame key and salt for one KID under one cipher suite (RFC 9605 section 4.4.2),
/// with the AEAD key schedule precomputed.
///
/// This is the plain RFC layer: the caller picks every CTR and must never seal two frames
/// with the same CTR under one context. [`Sealer`](crate::Sealer) and
/// [`Opener`](crate::Opener) do that bookkeeping; use this type directly to interoperate
/// with other SFrame implementations.
///
/// `Debug` shows the suite, KID and backend, never key bytes; key material is zeroized
/// on drop.
pub struct KeyContext {
    suite: CipherSuite,
    kid: u64,
    backend: Backend,
    cipher: Cipher,
    salt: Zeroizing<[u8; NONCE_LEN]>,
    #[cfg(test)]
    pub(crate) test_key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for KeyContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyContext")
            .field("suite", &self.suite)
            .field("kid", &self.kid)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// The `sframe_key_label` or `sframe_salt_label` of RFC 9605: prefix, KID as 8 bytes,
/// suite as 2 bytes, all big-endian.
fn label_tail(kid: u64, suite: CipherSuite) -> [u8; 10] {
    let mut tail = [0u8; 10];
    tail[..8].copy_from_slice(&kid.to_be_bytes());
    tail[8..].copy_from_slice(&suite.id().to_be_bytes());
    tail
}

impl KeyContext {
    /// Derive the key context for `kid` from `base_key` with the default backend
    /// (`derive_key_salt` of RFC 9605 section 4.4.2).
    pub fn derive(suite: CipherSuite, kid: u64, base_key: &[u8]) -> Self {
        Self::derive_with(Backend::default(), suite, kid, base_key)
    }

    /// Derive the key context for `kid` from `base_key` with a chosen backend.
    pub fn derive_with(backend: Backend, suite: CipherSuite, kid: u64, base_key: &[u8]) -> Self {
        let hash = suite.hash();
        let secret = hkdf_extract(backend, hash, b"", base_key);
        let tail = label_tail(kid, suite);
        let mut key = Zeroizing::new([0u8; MAX_KEY_LEN]);
        let key = &mut key[..suite.key_len()];
        hkdf_expand(backend, hash, secret.as_bytes(), &[KEY_LABEL, &tail], key);
        let mut salt = Zeroizing::new([0u8; NONCE_LEN]);
        hkdf_expand(
            backend,
            hash,
            secret.as_bytes(),
            &[SALT_LABEL, &tail],
            &mut salt[..],
        );
        let cipher = Cipher::new(backend, suite, key);
        let ctx = Self {
            suite,
            kid,
            backend,
            cipher,
            salt,
            #[cfg(test)]
            test_key: Zeroizing::new(key.to_vec()),
        };
        key.zeroize();
        ctx
    }

    /// The cipher suite.
    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    /// The KID this context seals under and accepts.
    pub fn kid(&self) -> u64 {
        self.kid
    }

    /// The backend doing the work.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The nonce for `ctr`: the salt XOR the CTR as a 12-byte big-endian integer.
    pub(crate) fn nonce(&self, ctr: u64) -> [u8; NONCE_LEN] {
        let mut nonce = *self.salt;
        for (n, c) in nonce[NONCE_LEN - 8..].iter_mut().zip(ctr.to_be_bytes()) {
            *n ^= c;
        }
        nonce
    }

    /// Length of the SFrame ciphertext of a `plaintext_len`-byte frame sealed with `ctr`:
    /// header, ciphertext and tag.
    pub fn sealed_len(&self, ctr: u64, plaintext_len: usize) -> usize {
        SframeHeader::new(self.kid, ctr).encoded_len() + plaintext_len + self.suite.tag_len()
    }

    /// Append the SFrame ciphertext of `plaintext` (header, ciphertext, tag) to `out`,
    /// authenticating `metadata` with it. Returns the range of `out` it occupies.
    ///
    /// The caller must never use one `ctr` twice with this context.
    ///
    /// # Errors
    /// [`SealError::TooLong`] past [`MAX_PLAINTEXT_LEN`]; [`SealError::Backend`] never
    /// for valid sizes. On error `out` is left as it was.
    pub fn seal<B: FrameBuffer>(
        &self,
        ctr: u64,
        metadata: &[u8],
        plaintext: &[u8],
        out: &mut B,
    ) -> Result<Range<usize>, SealError> {
        check_len(plaintext.len())?;
        let start = out.len();
        let header = SframeHeader::new(self.kid, ctr).encode_array();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(plaintext);
        let end = self.seal_tail(ctr, metadata, out, start, &header)?;
        Ok(start..end)
    }

    /// Seal in place: the plaintext is `buf[plaintext_at..]`; the header is written just
    /// before it (so at least the header length of headroom must precede it, at most
    /// [`SframeHeader::MAX_LEN`] bytes), the plaintext is encrypted where it lies and the
    /// tag appended. Returns the offset where the SFrame ciphertext starts; it ends at the
    /// end of `buf`. Bytes before that offset are untouched.
    ///
    /// The caller must never use one `ctr` twice with this context.
    ///
    /// # Errors
    /// [`SealError::NoHeadroom`], [`SealError::OutOfBounds`], [`SealError::TooLong`],
    /// with `buf` unchanged; [`SealError::Backend`] never for valid sizes (it leaves the
    /// header slot and the plaintext zeroed).
    pub fn seal_in_place<B: FrameBuffer>(
        &self,
        ctr: u64,
        metadata: &[u8],
        buf: &mut B,
        plaintext_at: usize,
    ) -> Result<usize, SealError> {
        let len = buf.len();
        if plaintext_at > len {
            return Err(SealError::OutOfBounds {
                at: plaintext_at,
                len,
            });
        }
        check_len(len - plaintext_at)?;
        let header = SframeHeader::new(self.kid, ctr).encode_array();
        let Some(start) = plaintext_at.checked_sub(header.len()) else {
            return Err(SealError::NoHeadroom {
                needed: header.len(),
                have: plaintext_at,
            });
        };
        self.seal_encoded(ctr, &header, metadata, buf, start)
    }

    /// Seal `buf[start + header.len()..]` in place after writing `header` (the encoding
    /// of this context's KID and `ctr`) at `start`; the caller has checked the bounds.
    /// Returns `start`.
    pub(crate) fn seal_encoded<B: FrameBuffer>(
        &self,
        ctr: u64,
        header: &EncodedHeader,
        metadata: &[u8],
        buf: &mut B,
        start: usize,
    ) -> Result<usize, SealError> {
        let end = start + header.len();
        let slot = &mut buf.as_mut_slice()[start..end];
        slot.copy_from_slice(header.as_bytes());
        match self.seal_tail(ctr, metadata, buf, start, header) {
            Ok(_) => Ok(start),
            Err(err) => {
                buf.as_mut_slice()[start..end].zeroize();
                Err(err)
            }
        }
    }

    /// `buf[start..]` holds `header` then plaintext: encrypt the
    /// plaintext, append the tag, return the new end. On error, overwrite what was
    /// encrypted with zeros and append nothing.
    fn seal_tail<B: FrameBuffer>(
        &self,
        ctr: u64,
        metadata: &[u8],
        buf: &mut B,
        start: usize,
        header: &EncodedHeader,
    ) -> Result<usize, SealError> {
        let tag_len = self.suite.tag_len();
        let nonce = self.nonce(ctr);
        let mut tag = [0u8; MAX_TAG_LEN];
        let tag = &mut tag[..tag_len];
        let body = &mut buf.as_mut_slice()[start + header.len()..];
        let aad = AadParts::new(header, metadata);
        if self.cipher.seal(&nonce, aad, body, tag).is_err() {
            body.zeroize();
            return Err(SealError::Backend);
        }
        buf.extend_from_slice(tag);
        Ok(buf.len())
    }

    /// Open an SFrame ciphertext in place: check the header names this context's KID,
    /// verify the tag over header, `metadata` and ciphertext, and decrypt where it lies.
    /// Returns the header and the range of `sframe` holding the plaintext.
    ///
    /// # Errors
    /// [`OpenError::Malformed`] for a bad header or fewer bytes than header + tag;
    /// [`OpenError::AuthenticationFailed`] for anything else that is wrong, including a
    /// KID other than this context's. On error the ciphertext bytes are overwritten with
    /// zeros, so no unauthenticated plaintext is ever left behind.
    pub fn open_in_place(
        &self,
        metadata: &[u8],
        sframe: &mut [u8],
    ) -> Result<(SframeHeader, Range<usize>), OpenError> {
        let (header, header_len) = parse(self.suite, sframe)?;
        if header.kid != self.kid {
            return Err(OpenError::AuthenticationFailed);
        }
        let body = &mut sframe[header_len..];
        let plain = self.open_body(&header, metadata, body)?;
        Ok((header, header_len..header_len + plain))
    }

    /// Open an SFrame ciphertext, appending the plaintext to `out`. Returns the header
    /// and the range of `out` holding the plaintext.
    ///
    /// # Errors
    /// As [`Self::open_in_place`]; on error `out` is left at its old length.
    pub fn open<B: FrameBuffer>(
        &self,
        metadata: &[u8],
        sframe: &[u8],
        out: &mut B,
    ) -> Result<(SframeHeader, Range<usize>), OpenError> {
        let (header, header_len) = parse(self.suite, sframe)?;
        if header.kid != self.kid {
            return Err(OpenError::AuthenticationFailed);
        }
        let plain = self.open_copy(&header, metadata, &sframe[header_len..], out)?;
        Ok((header, plain))
    }

    /// Copy `body` (ciphertext || tag) to the end of `out` and open it there; returns the
    /// plaintext range in `out`.
    pub(crate) fn open_copy<B: FrameBuffer>(
        &self,
        header: &SframeHeader,
        metadata: &[u8],
        body: &[u8],
        out: &mut B,
    ) -> Result<Range<usize>, OpenError> {
        let start = out.len();
        out.extend_from_slice(body);
        match self.open_body(header, metadata, &mut out.as_mut_slice()[start..]) {
            Ok(plain) => {
                out.resize_zeroed(start + plain);
                Ok(start..start + plain)
            }
            Err(err) => {
                out.resize_zeroed(start);
                Err(err)
            }
        }
    }

    /// Verify and decrypt `body` (ciphertext || tag, at least a tag long) in place;
    /// returns the plaintext length. Zeroes `body` on failure.
    ///
    /// The AAD uses `header` re-encoded rather than the received bytes: the codec accepts
    /// only minimal encodings, so the two are identical (the header fuzz target and the
    /// RFC vectors check that), and the re-encoding is a fixed-size array.
    pub(crate) fn open_body(
        &self,
        header: &SframeHeader,
        metadata: &[u8],
        body: &mut [u8],
    ) -> Result<usize, OpenError> {
        let ctr = header.ctr;
        let header = header.encode_array();
        let Some(ct_len) = body.len().checked_sub(self.suite.tag_len()) else {
            return Err(OpenError::Malformed);
        };
        let (ct, tag) = body.split_at_mut(ct_len);
        let nonce = self.nonce(ctr);
        match self
            .cipher
            .open(&nonce, AadParts::new(&header, metadata), ct, tag)
        {
            Ok(()) => Ok(ct_len),
            Err(_) => {
                body.zeroize();
                Err(OpenError::AuthenticationFailed)
            }
        }
    }
}

fn check_len(len: usize) -> Result<(), SealError> {
    if len > MAX_PLAINTEXT_LEN {
        return Err(SealError::TooLong {
            len,
            max: MAX_PLAINTEXT_LEN,
        });
    }
    Ok(())
}

/// Decode the header and check there is room for at least a tag after it.
pub(crate) fn parse(suite: CipherSuite, sframe: &[u8]) -> Result<(SframeHeader, usize), OpenError> {
    let (header, header_len) = SframeHeader::decode(sframe).map_err(|_| OpenError::Malformed)?;
    if sframe.len() < header_len + suite.tag_len() {
        return Err(OpenError::Malformed);
    }
    Ok((header, header_len))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::backend::hkdf_extract;

    #[derive(Deserialize)]
    struct Vectors {
        sframe: Vec<V>,
    }

    #[derive(Deserialize)]
    struct V {
        cipher_suite: u16,
        kid: u64,
        ctr: u64,
        base_key: String,
        sframe_key_label: String,
        sframe_salt_label: String,
        sframe_secret: String,
        sframe_key: String,
        sframe_salt: String,
        nonce: String,
    }

    fn unhex(text: &str) -> Vec<u8> {
        hex::decode(text).expect("hex")
    }

    #[test]
    fn intermediate_values_match_every_vector_on_every_backend() {
        let text = include_str!("../tests/data/rfc9605-test-vectors.json");
        let vectors: Vectors = serde_json::from_str(text).expect("parses");
        let mut checked = 0;
        for &backend in Backend::all() {
            for v in &vectors.sframe {
                let suite = CipherSuite::from_id(v.cipher_suite).expect("suite");
                let tail = label_tail(v.kid, suite);
                assert_eq!([KEY_LABEL, &tail].concat(), unhex(&v.sframe_key_label));
                assert_eq!([SALT_LABEL, &tail].concat(), unhex(&v.sframe_salt_label));
                let secret = hkdf_extract(backend, suite.hash(), b"", &unhex(&v.base_key));
                assert_eq!(secret.as_bytes(), unhex(&v.sframe_secret));
                let ctx = KeyContext::derive_with(backend, suite, v.kid, &unhex(&v.base_key));
                assert_eq!(ctx.test_key.to_vec(), unhex(&v.sframe_key));
                assert_eq!(ctx.salt.to_vec(), unhex(&v.sframe_salt));
                assert_eq!(ctx.nonce(v.ctr).to_vec(), unhex(&v.nonce));
                checked += 1;
            }
        }
        assert_eq!(checked, 5 * Backend::all().len());
    }
}
