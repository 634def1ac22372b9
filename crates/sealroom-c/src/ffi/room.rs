//! Entry points of the room layer: status messages, key schedules, sealers and openers.

use std::ffi::c_char;
use std::time::Instant;

use super::{
    bytes, copy_buffers, free_handle, guard, handle, handle_mut, in_place_buffers, into_handle,
    out_ptr, read_into, write,
};
use crate::status::SealroomStatus;
use crate::{
    SealroomKeySchedule, SealroomOpened, SealroomOpener, SealroomOpenerConfig, SealroomSealer, ops,
};

/// A sentence saying what `status` means and what to do: a static NUL-terminated string
/// the caller must not free. An unknown code gets a sentence saying so.
#[unsafe(no_mangle)]
pub extern "C" fn sealroom_status_message(status: i32) -> *const c_char {
    let text = SealroomStatus::from_code(status)
        .map_or("unknown sealroom status code\0", SealroomStatus::message);
    text.as_ptr().cast()
}

/// Derive a room's key schedule from its 32-byte secret for cipher suite `suite` (1 to 5;
/// sealroom uses `SEALROOM_SUITE_AES_128_GCM_SHA256_128`). On success `*out` holds a new
/// handle; release it with `sealroom_key_schedule_free`. The library keeps no pointer to
/// `secret`: zero your copy when you no longer need it.
///
/// # Safety
/// `secret` is valid for reads of `secret_len` bytes; `out` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_key_schedule_new(
    secret: *const u8,
    secret_len: usize,
    suite: u16,
    out: *mut *mut SealroomKeySchedule,
) -> SealroomStatus {
    guard(|| {
        let out = out_ptr(out)?;
        // SAFETY: the caller promises `secret_len` readable bytes.
        let secret = unsafe { bytes(secret, secret_len) }?;
        let schedule = ops::schedule(secret, suite)?;
        // SAFETY: `out` is valid for one write by the caller's promise.
        unsafe { write(out, into_handle(SealroomKeySchedule(schedule))) };
        Ok(())
    })
}

/// Release a key schedule (null is ignored); its key material is zeroed. Sealers and
/// openers made from it stay usable.
///
/// # Safety
/// `schedule` is null or a live handle that is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_key_schedule_free(schedule: *mut SealroomKeySchedule) {
    // SAFETY: forwarded from the caller's promise.
    unsafe { free_handle(schedule) }
}

/// A sealer for a new sending session in `epoch`, with a fresh random session id (so a
/// KID and key of its own). Release it with `sealroom_sealer_free`.
///
/// # Safety
/// `schedule` is a live handle; `out` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_sealer_new(
    schedule: *const SealroomKeySchedule,
    epoch: u64,
    out: *mut *mut SealroomSealer,
) -> SealroomStatus {
    // SAFETY: a live handle and an output valid for one write, by the caller's promise.
    unsafe {
        read_into(schedule, out, |schedule| {
            into_handle(SealroomSealer(schedule.0.sealer(epoch)))
        })
    }
}

/// Release a sealer (null is ignored); its key material is zeroed.
///
/// # Safety
/// `sealer` is null or a live handle that is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_sealer_free(sealer: *mut SealroomSealer) {
    // SAFETY: forwarded from the caller's promise.
    unsafe { free_handle(sealer) }
}

/// The KID the sealer seals under now.
///
/// # Safety
/// `sealer` is a live handle; `kid` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_sealer_kid(
    sealer: *const SealroomSealer,
    kid: *mut u64,
) -> SealroomStatus {
    // SAFETY: a live handle and an output valid for one write, by the caller's promise.
    unsafe { read_into(sealer, kid, |sealer| sealer.0.kid()) }
}

/// The length of the SFrame the next seal of a `plaintext_len`-byte frame produces:
/// header, ciphertext and tag. At most `plaintext_len + SEALROOM_MAX_HEADER_LEN +
/// SEALROOM_MAX_TAG_LEN`.
///
/// # Safety
/// `sealer` is a live handle; `sealed_len` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_sealer_sealed_len(
    sealer: *const SealroomSealer,
    plaintext_len: usize,
    sealed_len: *mut usize,
) -> SealroomStatus {
    // SAFETY: a live handle and an output valid for one write, by the caller's promise.
    unsafe {
        read_into(sealer, sealed_len, |sealer| {
            sealer.0.sealed_len(plaintext_len)
        })
    }
}

/// Seal `plaintext` into `out` (from its first byte), authenticating `metadata` with it
/// (for sealroom frames, the envelope's 28 metadata bytes; for your own transport,
/// whatever both ends agree on, possibly nothing). `*out_len` receives the SFrame length.
/// `out` must hold `sealroom_sealer_sealed_len` bytes; otherwise
/// `SEALROOM_STATUS_BUFFER_TOO_SMALL` and no counter is used.
///
/// # Safety
/// `sealer` is a live handle; each pointer is valid for its length (null only with
/// length 0); `out` does not overlap the inputs; `out_len` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_sealer_seal(
    sealer: *mut SealroomSealer,
    metadata: *const u8,
    metadata_len: usize,
    plaintext: *const u8,
    plaintext_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> SealroomStatus {
    guard(|| {
        let out_len = out_ptr(out_len)?;
        // SAFETY: a live handle by the caller's promise.
        let sealer = unsafe { handle_mut(sealer) }?;
        // SAFETY: each buffer is valid for its length by the caller's promise.
        let (metadata, plaintext, out) = unsafe {
            copy_buffers(
                (metadata, metadata_len),
                (plaintext, plaintext_len),
                (out, out_cap),
            )
        }?;
        let len = ops::seal(&mut sealer.0, metadata, plaintext, out)?;
        // SAFETY: valid for one write by the caller's promise.
        unsafe { write(out_len, len) };
        Ok(())
    })
}

/// Seal in place: the plaintext is `buf[plaintext_at .. plaintext_at + plaintext_len]`.
/// The SFrame header is written just before it (leave `SEALROOM_MAX_HEADER_LEN` bytes of
/// headroom) and the tag just after it (leave `SEALROOM_MAX_TAG_LEN` bytes within
/// `buf_cap`). `*sframe_at` and `*sframe_len` receive where the SFrame starts in `buf`
/// and its length. Bytes outside it are untouched.
///
/// # Safety
/// `sealer` is a live handle; `buf` is valid for reads and writes of `buf_cap` bytes;
/// `metadata` is valid for `metadata_len` bytes and does not overlap `buf`; `sframe_at`
/// and `sframe_len` are valid for one write each.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_sealer_seal_in_place(
    sealer: *mut SealroomSealer,
    metadata: *const u8,
    metadata_len: usize,
    buf: *mut u8,
    buf_cap: usize,
    plaintext_at: usize,
    plaintext_len: usize,
    sframe_at: *mut usize,
    sframe_len: *mut usize,
) -> SealroomStatus {
    guard(|| {
        let sframe_at = out_ptr(sframe_at)?;
        let sframe_len = out_ptr(sframe_len)?;
        // SAFETY: a live handle by the caller's promise.
        let sealer = unsafe { handle_mut(sealer) }?;
        // SAFETY: each buffer is valid for its length by the caller's promise.
        let (metadata, buf) =
            unsafe { in_place_buffers((metadata, metadata_len), (buf, buf_cap)) }?;
        let (at, len) =
            ops::seal_in_place(&mut sealer.0, metadata, buf, plaintext_at, plaintext_len)?;
        // SAFETY: each valid for one write by the caller's promise.
        unsafe {
            write(sframe_at, at);
            write(sframe_len, len);
        }
        Ok(())
    })
}

/// Start a new sending session in the same epoch (a fresh random KID and key, counter at
/// zero): the answer to `SEALROOM_STATUS_ROTATION_REQUIRED`.
///
/// # Safety
/// `sealer` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_sealer_rekey(sealer: *mut SealroomSealer) -> SealroomStatus {
    guard(|| {
        // SAFETY: a live handle by the caller's promise.
        unsafe { handle_mut(sealer) }?.0.rekey();
        Ok(())
    })
}

/// Move the sealer to `epoch` with a fresh random KID and key.
///
/// # Safety
/// `sealer` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_sealer_rotate(
    sealer: *mut SealroomSealer,
    epoch: u64,
) -> SealroomStatus {
    guard(|| {
        // SAFETY: a live handle by the caller's promise.
        unsafe { handle_mut(sealer) }?.0.rotate(epoch);
        Ok(())
    })
}

/// An opener for `epoch` (it also accepts the next epoch, for senders that rotate
/// first). `config` may be null for the defaults. Release it with `sealroom_opener_free`.
///
/// # Safety
/// `schedule` is a live handle; `config` is null or valid for one read; `out` is valid
/// for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_opener_new(
    schedule: *const SealroomKeySchedule,
    epoch: u64,
    config: *const SealroomOpenerConfig,
    out: *mut *mut SealroomOpener,
) -> SealroomStatus {
    guard(|| {
        let out = out_ptr(out)?;
        // SAFETY: a live handle by the caller's promise.
        let schedule = unsafe { handle(schedule) }?;
        // SAFETY: null or valid for one read by the caller's promise; the struct is plain
        // integers, so any bytes are a valid value.
        let config = unsafe { config.as_ref() };
        let opener = SealroomOpener(ops::opener(&schedule.0, epoch, config));
        // SAFETY: `out` is valid for one write by the caller's promise.
        unsafe { write(out, into_handle(opener)) };
        Ok(())
    })
}

/// Release an opener (null is ignored); every key it holds is zeroed.
///
/// # Safety
/// `opener` is null or a live handle that is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_opener_free(opener: *mut SealroomOpener) {
    // SAFETY: forwarded from the caller's promise.
    unsafe { free_handle(opener) }
}

/// Open `sframe` into `out` (the plaintext starts at `out[0]`), authenticating `metadata`
/// as the sender did. `out` needs the SFrame's length less its header (`sframe_len`
/// always suffices). On success `*opened` says who sealed it and where the plaintext is;
/// on any error nothing of the frame is left in `out` and the replay window is unchanged.
///
/// # Safety
/// `opener` is a live handle; each buffer is valid for its length (null only with length
/// 0); `out` overlaps neither input; `opened` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_opener_open(
    opener: *mut SealroomOpener,
    metadata: *const u8,
    metadata_len: usize,
    sframe: *const u8,
    sframe_len: usize,
    out: *mut u8,
    out_cap: usize,
    opened: *mut SealroomOpened,
) -> SealroomStatus {
    guard(|| {
        let opened = out_ptr(opened)?;
        // SAFETY: a live handle by the caller's promise.
        let opener = unsafe { handle_mut(opener) }?;
        // SAFETY: each buffer is valid for its length by the caller's promise.
        let (metadata, sframe, out) = unsafe {
            copy_buffers(
                (metadata, metadata_len),
                (sframe, sframe_len),
                (out, out_cap),
            )
        }?;
        let result = ops::open(&mut opener.0, metadata, sframe, out)?;
        // SAFETY: valid for one write by the caller's promise.
        unsafe { write(opened, result) };
        Ok(())
    })
}

/// Open `sframe` where it lies: on success the plaintext is
/// `sframe[opened->plaintext_at ..][.. opened->plaintext_len]`; on any error the
/// ciphertext is zeroed or untouched, never left as unauthenticated plaintext.
///
/// # Safety
/// `opener` is a live handle; `sframe` is valid for reads and writes of `sframe_len`
/// bytes; `metadata` is valid for `metadata_len` bytes and does not overlap it; `opened`
/// is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_opener_open_in_place(
    opener: *mut SealroomOpener,
    metadata: *const u8,
    metadata_len: usize,
    sframe: *mut u8,
    sframe_len: usize,
    opened: *mut SealroomOpened,
) -> SealroomStatus {
    guard(|| {
        let opened = out_ptr(opened)?;
        // SAFETY: a live handle by the caller's promise.
        let opener = unsafe { handle_mut(opener) }?;
        // SAFETY: each buffer is valid for its length by the caller's promise.
        let (metadata, sframe) =
            unsafe { in_place_buffers((metadata, metadata_len), (sframe, sframe_len)) }?;
        let result = ops::open_in_place(&mut opener.0, metadata, sframe)?;
        // SAFETY: valid for one write by the caller's promise.
        unsafe { write(opened, result) };
        Ok(())
    })
}

/// Move the opener to `epoch` now: the epoch it held keeps opening for the grace period
/// (`SealroomOpenerConfig.grace_ms`), until `sealroom_opener_handle_timeout` sees it over.
///
/// # Safety
/// `opener` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_opener_rotate(
    opener: *mut SealroomOpener,
    epoch: u64,
) -> SealroomStatus {
    guard(|| {
        // SAFETY: a live handle by the caller's promise.
        unsafe { handle_mut(opener) }?
            .0
            .rotate(epoch, Instant::now());
        Ok(())
    })
}

/// Drop the previous epoch's keys if its grace period is over (by the monotonic clock).
/// Call it now and then (every second is plenty) after a rotation.
///
/// # Safety
/// `opener` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_opener_handle_timeout(
    opener: *mut SealroomOpener,
) -> SealroomStatus {
    guard(|| {
        // SAFETY: a live handle by the caller's promise.
        unsafe { handle_mut(opener) }?
            .0
            .handle_timeout(Instant::now());
        Ok(())
    })
}
