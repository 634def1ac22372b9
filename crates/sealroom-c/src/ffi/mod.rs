//! The C entry points and the unsafe code they need, and nothing else: turning C pointers
//! into slices and handles, writing outputs, and keeping panics from unwinding into C.
//! Each function converts its arguments and calls the safe operation in `ops`.
//!
//! What every entry point relies on, and its header comment tells the caller: a pointer
//! with a length is null only when the length is 0, and is valid for that many bytes for
//! the whole call; input and output buffers do not overlap (checked: overlapping ones are
//! refused); a handle is one its `*_new` made and its `*_free` has not released, used by
//! one thread at a time.

#![allow(unsafe_code)]

pub(crate) mod context;
pub(crate) mod room;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;

use crate::ops::Result;
use crate::status::SealroomStatus;

/// Run `body` and turn its result, or a panic, into a status code: nothing unwinds into C.
fn guard(body: impl FnOnce() -> Result<()>) -> SealroomStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SealroomStatus::Ok,
        Ok(Err(status)) => status,
        Err(_) => SealroomStatus::Internal,
    }
}

/// Lengths past `isize::MAX` cannot describe one allocation (`slice::from_raw_parts`
/// requires it).
fn check_len(len: usize) -> Result<()> {
    if len > isize::MAX as usize {
        return Err(SealroomStatus::InvalidArgument);
    }
    Ok(())
}

/// Borrow `len` bytes at `ptr` for the call.
///
/// # Safety
/// When `len > 0`, `ptr` is null or valid for reads of `len` bytes, and nothing writes
/// them during the call.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(SealroomStatus::NullPointer);
    }
    check_len(len)?;
    // SAFETY: non-null, in bounds of one allocation by the caller's promise, length at
    // most isize::MAX; u8 has no alignment or validity requirement.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrow `len` bytes at `ptr` mutably for the call.
///
/// # Safety
/// When `len > 0`, `ptr` is null or valid for reads and writes of `len` bytes, and
/// nothing else reads or writes them during the call.
unsafe fn bytes_mut<'a>(ptr: *mut u8, len: usize) -> Result<&'a mut [u8]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(SealroomStatus::NullPointer);
    }
    check_len(len)?;
    // SAFETY: as in `bytes`, and the caller promises exclusive access for the call
    // (overlap with the other buffers of the call is checked by `disjoint` first).
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Refuse an output buffer that overlaps an input one, before either is borrowed (an
/// overlap would alias a shared and a mutable borrow).
fn disjoint(input: *const u8, input_len: usize, output: *mut u8, output_len: usize) -> Result<()> {
    let (a, b) = (input as usize, output as usize);
    let a_end = a.saturating_add(input_len);
    let b_end = b.saturating_add(output_len);
    if input_len > 0 && output_len > 0 && a < b_end && b < a_end {
        return Err(SealroomStatus::InvalidArgument);
    }
    Ok(())
}

/// The buffers of a copying seal or open: `metadata` and `input` (plaintext or SFrame)
/// to read, `out` to write; refused when `out` overlaps either input.
///
/// # Safety
/// Each pointer is null or valid for its length as [`bytes`] and [`bytes_mut`] require.
unsafe fn copy_buffers<'a>(
    metadata: (*const u8, usize),
    input: (*const u8, usize),
    out: (*mut u8, usize),
) -> Result<(&'a [u8], &'a [u8], &'a mut [u8])> {
    disjoint(metadata.0, metadata.1, out.0, out.1)?;
    disjoint(input.0, input.1, out.0, out.1)?;
    // SAFETY: each buffer is valid for its length by the caller's promise, and the output
    // overlaps neither input (checked above).
    unsafe {
        Ok((
            bytes(metadata.0, metadata.1)?,
            bytes(input.0, input.1)?,
            bytes_mut(out.0, out.1)?,
        ))
    }
}

/// The buffers of an in-place seal or open: `metadata` to read and `buf` to rewrite;
/// refused when they overlap.
///
/// # Safety
/// Each pointer is null or valid for its length as [`bytes`] and [`bytes_mut`] require.
unsafe fn in_place_buffers<'a>(
    metadata: (*const u8, usize),
    buf: (*mut u8, usize),
) -> Result<(&'a [u8], &'a mut [u8])> {
    disjoint(metadata.0, metadata.1, buf.0, buf.1)?;
    // SAFETY: each buffer is valid for its length by the caller's promise, and they do not
    // overlap (checked above).
    unsafe { Ok((bytes(metadata.0, metadata.1)?, bytes_mut(buf.0, buf.1)?)) }
}

/// A non-null output pointer, checked before any work so a null one costs nothing (a
/// sealer's counter is not used up by a call that cannot report its result).
fn out_ptr<T>(ptr: *mut T) -> Result<NonNull<T>> {
    NonNull::new(ptr).ok_or(SealroomStatus::NullPointer)
}

/// Write `value` through an output pointer.
///
/// # Safety
/// `ptr` is valid for a write of one `T` (alignment included).
unsafe fn write<T>(ptr: NonNull<T>, value: T) {
    // SAFETY: non-null by construction; valid and aligned by the caller's promise. The
    // old value is not read or dropped (outputs are plain data or handle pointers).
    unsafe { ptr.as_ptr().write(value) }
}

/// Borrow a handle for the call.
///
/// # Safety
/// `ptr` is null or a live handle of this type that nothing else uses during the call.
unsafe fn handle<'a, T>(ptr: *const T) -> Result<&'a T> {
    // SAFETY: a live handle is a `Box<T>` turned into a pointer by `into_handle`.
    unsafe { ptr.as_ref() }.ok_or(SealroomStatus::NullPointer)
}

/// The shape of every getter: borrow the handle, compute a value from it, write the value
/// through the output pointer (checked first).
///
/// # Safety
/// `ptr` as [`handle`]; `out` is valid for a write of one `U`.
unsafe fn read_into<T, U>(
    ptr: *const T,
    out: *mut U,
    read: impl FnOnce(&T) -> U,
) -> SealroomStatus {
    guard(|| {
        let out = out_ptr(out)?;
        // SAFETY: a live handle by the caller's promise.
        let value = read(unsafe { handle(ptr) }?);
        // SAFETY: valid for one write by the caller's promise.
        unsafe { write(out, value) };
        Ok(())
    })
}

/// Borrow a handle mutably for the call.
///
/// # Safety
/// As [`handle`], and nothing else reads it during the call.
unsafe fn handle_mut<'a, T>(ptr: *mut T) -> Result<&'a mut T> {
    // SAFETY: a live handle is a `Box<T>` turned into a pointer by `into_handle`, used
    // by one thread at a time by the caller's promise.
    unsafe { ptr.as_mut() }.ok_or(SealroomStatus::NullPointer)
}

/// Hand a new handle to C.
fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Release a handle (null is ignored). Dropping it zeroizes its key material.
///
/// # Safety
/// `ptr` is null or a live handle of this type that is not used again.
unsafe fn free_handle<T>(ptr: *mut T) {
    if ptr.is_null() {
        return;
    }
    // Dropping key material cannot panic, but the promise is cheap to keep anyway.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: made by `into_handle` (Box::into_raw) and released once, by the
        // caller's promise.
        drop(unsafe { Box::from_raw(ptr) });
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_internal_status_instead_of_unwinding() {
        let status = guard(|| panic!("a bug inside the library"));
        assert_eq!(status, SealroomStatus::Internal);
        assert_eq!(
            guard(|| Err(SealroomStatus::Replayed)),
            SealroomStatus::Replayed
        );
        assert_eq!(guard(|| Ok(())), SealroomStatus::Ok);
    }

    #[test]
    fn overlapping_buffers_are_refused_and_adjacent_ones_accepted() {
        let mut buf = [0u8; 64];
        let base = buf.as_mut_ptr();
        let at = |offset: usize| base.wrapping_add(offset);
        assert_eq!(
            disjoint(at(0), 32, at(16), 32),
            Err(SealroomStatus::InvalidArgument)
        );
        assert_eq!(
            disjoint(at(16), 32, at(0), 32),
            Err(SealroomStatus::InvalidArgument)
        );
        assert_eq!(disjoint(at(0), 32, at(32), 32), Ok(()));
        assert_eq!(disjoint(at(0), 0, at(0), 32), Ok(()));
    }
}
