//! Entry points of the plain RFC 9605 layer: key contexts from a base key (or from the
//! room schedule), sealing with caller-chosen counters, opening.

use sealroom_crypto::KeyContext;

use super::{
    bytes, copy_buffers, free_handle, guard, handle, in_place_buffers, into_handle, out_ptr,
    read_into, write,
};
use crate::status::SealroomStatus;
use crate::{SealroomKeyContext, SealroomKeySchedule, SealroomOpened, ops};

/// Derive the SFrame key and salt for `kid` from `base_key` under `suite` (RFC 9605
/// section 4.4.2). Release the handle with `sealroom_key_context_free`.
///
/// # Safety
/// `base_key` is valid for reads of `base_key_len` bytes; `out` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_key_context_new(
    suite: u16,
    kid: u64,
    base_key: *const u8,
    base_key_len: usize,
    out: *mut *mut SealroomKeyContext,
) -> SealroomStatus {
    guard(|| {
        let out = out_ptr(out)?;
        let suite = ops::suite(suite)?;
        // SAFETY: the caller promises `base_key_len` readable bytes.
        let base_key = unsafe { bytes(base_key, base_key_len) }?;
        let ctx = SealroomKeyContext(KeyContext::derive(suite, kid, base_key));
        // SAFETY: `out` is valid for one write by the caller's promise.
        unsafe { write(out, into_handle(ctx)) };
        Ok(())
    })
}

/// The key context the room schedule gives `kid` in `epoch`: the keys a sealer of that
/// KID uses, for checking the schedule against other implementations.
///
/// # Safety
/// `schedule` is a live handle; `out` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_key_schedule_key_context(
    schedule: *const SealroomKeySchedule,
    epoch: u64,
    kid: u64,
    out: *mut *mut SealroomKeyContext,
) -> SealroomStatus {
    // SAFETY: a live handle and an output valid for one write, by the caller's promise.
    unsafe {
        read_into(schedule, out, |schedule| {
            into_handle(SealroomKeyContext(schedule.0.key_context(epoch, kid)))
        })
    }
}

/// Release a key context (null is ignored); its key material is zeroed.
///
/// # Safety
/// `ctx` is null or a live handle that is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_key_context_free(ctx: *mut SealroomKeyContext) {
    // SAFETY: forwarded from the caller's promise.
    unsafe { free_handle(ctx) }
}

/// The SFrame length of a `plaintext_len`-byte frame sealed with counter `ctr`.
///
/// # Safety
/// `ctx` is a live handle; `sealed_len` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_key_context_sealed_len(
    ctx: *const SealroomKeyContext,
    ctr: u64,
    plaintext_len: usize,
    sealed_len: *mut usize,
) -> SealroomStatus {
    // SAFETY: a live handle and an output valid for one write, by the caller's promise.
    unsafe { read_into(ctx, sealed_len, |ctx| ctx.0.sealed_len(ctr, plaintext_len)) }
}

/// Seal `plaintext` with counter `ctr` into `out`, authenticating `metadata`;
/// `*out_len` receives the SFrame length. Never use one counter twice with one context.
///
/// # Safety
/// `ctx` is a live handle; each buffer is valid for its length (null only with length
/// 0); `out` overlaps neither input; `out_len` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_key_context_seal(
    ctx: *const SealroomKeyContext,
    ctr: u64,
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
        let ctx = unsafe { handle(ctx) }?;
        // SAFETY: each buffer is valid for its length by the caller's promise.
        let (metadata, plaintext, out) = unsafe {
            copy_buffers(
                (metadata, metadata_len),
                (plaintext, plaintext_len),
                (out, out_cap),
            )
        }?;
        let len = ops::context_seal(&ctx.0, ctr, metadata, plaintext, out)?;
        // SAFETY: valid for one write by the caller's promise.
        unsafe { write(out_len, len) };
        Ok(())
    })
}

/// Open `sframe` into `out` with this context (a KID other than the context's is
/// `SEALROOM_STATUS_AUTHENTICATION_FAILED`). No replay window at this layer.
///
/// # Safety
/// `ctx` is a live handle; each buffer is valid for its length (null only with length
/// 0); `out` overlaps neither input; `opened` is valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_key_context_open(
    ctx: *const SealroomKeyContext,
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
        let ctx = unsafe { handle(ctx) }?;
        // SAFETY: each buffer is valid for its length by the caller's promise.
        let (metadata, sframe, out) = unsafe {
            copy_buffers(
                (metadata, metadata_len),
                (sframe, sframe_len),
                (out, out_cap),
            )
        }?;
        let result = ops::context_open(&ctx.0, metadata, sframe, out)?;
        // SAFETY: valid for one write by the caller's promise.
        unsafe { write(opened, result) };
        Ok(())
    })
}

/// Open `sframe` where it lies with this context; the plaintext is
/// `sframe[opened->plaintext_at ..][.. opened->plaintext_len]`.
///
/// # Safety
/// `ctx` is a live handle; `sframe` is valid for reads and writes of `sframe_len` bytes;
/// `metadata` is valid for `metadata_len` bytes and does not overlap it; `opened` is
/// valid for one write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sealroom_key_context_open_in_place(
    ctx: *const SealroomKeyContext,
    metadata: *const u8,
    metadata_len: usize,
    sframe: *mut u8,
    sframe_len: usize,
    opened: *mut SealroomOpened,
) -> SealroomStatus {
    guard(|| {
        let opened = out_ptr(opened)?;
        // SAFETY: a live handle by the caller's promise.
        let ctx = unsafe { handle(ctx) }?;
        // SAFETY: each buffer is valid for its length by the caller's promise.
        let (metadata, sframe) =
            unsafe { in_place_buffers((metadata, metadata_len), (sframe, sframe_len)) }?;
        let result = ops::context_open_in_place(&ctx.0, metadata, sframe)?;
        // SAFETY: valid for one write by the caller's promise.
        unsafe { write(opened, result) };
        Ok(())
    })
}
