/**
 * Typed errors for everything a peer can send. Every decoder throws one of these (never a
 * bare `Error`, never a `RangeError` from an out-of-bounds read), with a `kind` that names
 * the problem in the same words as the Rust crates (`sealroom-frame`, `sealroom-crypto`).
 */

/** Why an envelope frame did not decode (`sealroom_frame::envelope::DecodeError`). */
export type EnvelopeErrorKind =
  | "truncated"
  | "unknown_version"
  | "unknown_kind"
  | "unknown_flags"
  | "reserved"
  | "oversize"
  | "trailing_bytes";

/** Why a control message did not decode (`sealroom_frame::control::ControlError`). */
export type ControlErrorKind =
  | "empty"
  | "unknown_version"
  | "too_large"
  | "malformed"
  | "trailing_bytes"
  | "non_canonical";

/** Why a framed stream broke (`sealroom_frame::stream::DeframeError`). */
export type DeframeErrorKind = "oversize" | "non_minimal_prefix" | "truncated";

/** Why an SFrame header did not decode (`sealroom_frame::sframe::HeaderError`). */
export type HeaderErrorKind = "truncated" | "non_minimal_kid" | "non_minimal_ctr";

/** Why a frame could not be opened (`sealroom_crypto::OpenError`). */
export type OpenErrorKind =
  | "unknown_kid"
  | "replayed"
  | "too_old"
  | "authentication_failed"
  | "malformed";

/** Why a frame could not be sealed (`sealroom_crypto::SealError`). */
export type SealErrorKind = "rotation_required" | "too_long";

/** The base of every error this package throws for bad input. */
export class SealroomError<K extends string = string> extends Error {
  readonly kind: K;
  constructor(kind: K, message: string) {
    super(message);
    this.kind = kind;
    this.name = new.target.name;
  }
}

/** An envelope frame that does not decode. */
export class EnvelopeError extends SealroomError<EnvelopeErrorKind> {}
/** A control message that does not decode. */
export class ControlError extends SealroomError<ControlErrorKind> {}
/** A broken length-prefixed stream; final for the stream. */
export class DeframeError extends SealroomError<DeframeErrorKind> {}
/** An SFrame header that does not decode. */
export class HeaderError extends SealroomError<HeaderErrorKind> {}
/** A frame that could not be opened: wrong key, altered bytes, replay. */
export class OpenError extends SealroomError<OpenErrorKind> {}
/** A frame that could not be sealed. */
export class SealError extends SealroomError<SealErrorKind> {}
