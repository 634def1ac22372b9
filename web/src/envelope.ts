/**
 * The media envelope: the 32 bytes in front of every sealed frame that the relay may read
 * (kind, sender, track, group, sequence, flags, capture time, payload length). Layout and
 * rules as `sealroom_frame::envelope` and docs/PROTOCOL.md ("Media envelope").
 */

import { EnvelopeError } from "./errors.js";

/** The envelope version this package speaks. */
export const ENVELOPE_VERSION = 1;
/** Bytes of the envelope header. */
export const HEADER_LEN = 32;
/** Bytes of the metadata (the header less the payload length) that SFrame authenticates. */
export const METADATA_LEN = 28;
/** Largest payload an envelope may declare (16 MiB). */
export const MAX_PAYLOAD_LEN = 16 * 1024 * 1024;

/** What a frame carries. */
export type MediaKind = "audio" | "video" | "data";

const KINDS: readonly MediaKind[] = ["audio", "video", "data"];

/** The byte of `kind` in the envelope. */
export function kindByte(kind: MediaKind): number {
  return KINDS.indexOf(kind);
}

/** Flag bits of an envelope. */
export const Flags = {
  /** The first frame of a group: a keyframe. */
  GROUP_START: 0x01,
  /** A frame a receiver may drop without breaking the group. */
  DISCARDABLE: 0x02,
  /** The last frame of its group. */
  END_OF_GROUP: 0x04,
  /** Data only: send as a datagram, unreliably. */
  UNRELIABLE: 0x08,
} as const;

const KNOWN_FLAGS = 0x0f;

/** The envelope fields. Ids are unsigned 32-bit; the capture time is microseconds. */
export interface Envelope {
  kind: MediaKind;
  flags: number;
  sender: number;
  track: number;
  group: number;
  seq: number;
  timestampUs: bigint;
}

/** A decoded frame: its envelope and the sealed payload (a view of the input, not a copy). */
export interface Frame {
  envelope: Envelope;
  payload: Uint8Array;
}

function checkU32(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`${name} ${value} is not an unsigned 32-bit integer`);
  }
}

function writeHeader(view: DataView, envelope: Envelope, payloadLen: number): void {
  checkU32("sender", envelope.sender);
  checkU32("track", envelope.track);
  checkU32("group", envelope.group);
  checkU32("seq", envelope.seq);
  if ((envelope.flags & ~KNOWN_FLAGS) !== 0 || envelope.flags < 0) {
    throw new RangeError(`unknown flag bits ${envelope.flags}`);
  }
  if (envelope.timestampUs < 0n || envelope.timestampUs > 0xffffffffffffffffn) {
    throw new RangeError("timestampUs is not an unsigned 64-bit integer");
  }
  view.setUint8(0, ENVELOPE_VERSION);
  view.setUint8(1, kindByte(envelope.kind));
  view.setUint8(2, envelope.flags);
  view.setUint8(3, 0);
  view.setUint32(4, envelope.sender);
  view.setUint32(8, envelope.track);
  view.setUint32(12, envelope.group);
  view.setUint32(16, envelope.seq);
  view.setBigUint64(20, envelope.timestampUs);
  view.setUint32(28, payloadLen);
}

/** The 28 bytes SFrame authenticates with the payload (`Envelope::metadata`). */
export function metadata(envelope: Envelope): Uint8Array {
  const out = new Uint8Array(HEADER_LEN);
  writeHeader(new DataView(out.buffer), envelope, 0);
  return out.subarray(0, METADATA_LEN);
}

/**
 * Write the 28 metadata bytes of `envelope` into `out` (at least 32 bytes; the 4 after
 * them are overwritten) and return a view of them: {@link metadata} without a new array.
 */
export function writeMetadata(out: Uint8Array, envelope: Envelope): Uint8Array {
  writeHeader(new DataView(out.buffer, out.byteOffset, HEADER_LEN), envelope, 0);
  return out.subarray(0, METADATA_LEN);
}

/**
 * Complete a frame in place: `frame` holds the payload from byte 32 on, and this writes the
 * header of `envelope` in front of it (what {@link encodeFrame} makes, without copying the
 * payload). Throws `RangeError` for a field out of range or a frame too short or too long.
 */
export function writeFrameHeader(frame: Uint8Array, envelope: Envelope): void {
  const payloadLen = frame.length - HEADER_LEN;
  if (payloadLen < 0 || payloadLen > MAX_PAYLOAD_LEN) {
    throw new RangeError(`a frame of ${frame.length} bytes has no room for a header and a payload of at most ${MAX_PAYLOAD_LEN}`);
  }
  writeHeader(new DataView(frame.buffer, frame.byteOffset, HEADER_LEN), envelope, payloadLen);
}

/** Header and payload in a new array. Throws `RangeError` for a field out of range. */
export function encodeFrame(envelope: Envelope, payload: Uint8Array): Uint8Array {
  if (payload.length > MAX_PAYLOAD_LEN) {
    throw new RangeError(`payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD_LEN}`);
  }
  const out = new Uint8Array(HEADER_LEN + payload.length);
  writeHeader(new DataView(out.buffer), envelope, payload.length);
  out.set(payload, HEADER_LEN);
  return out;
}

/**
 * Decode one whole frame; the payload is a view of `input`. Throws {@link EnvelopeError}
 * naming the first problem, in the order the Rust decoder checks.
 */
export function decodeFrame(input: Uint8Array, maxPayload: number = MAX_PAYLOAD_LEN): Frame {
  if (input.length < HEADER_LEN) {
    throw new EnvelopeError(
      "truncated",
      `truncated frame: need ${HEADER_LEN} bytes, have ${input.length}`,
    );
  }
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
  const version = view.getUint8(0);
  if (version !== ENVELOPE_VERSION) {
    throw new EnvelopeError("unknown_version", `unknown envelope version ${version}`);
  }
  const kind = KINDS[view.getUint8(1)];
  if (kind === undefined) {
    throw new EnvelopeError("unknown_kind", `unknown media kind ${view.getUint8(1)}`);
  }
  const flags = view.getUint8(2);
  if ((flags & ~KNOWN_FLAGS) !== 0) {
    throw new EnvelopeError("unknown_flags", `unknown flag bits ${flags}`);
  }
  if (view.getUint8(3) !== 0) {
    throw new EnvelopeError("reserved", `reserved byte is ${view.getUint8(3)}, must be 0`);
  }
  const len = view.getUint32(28);
  const max = Math.min(maxPayload, MAX_PAYLOAD_LEN);
  if (len > max) {
    throw new EnvelopeError("oversize", `payload length ${len} exceeds the limit ${max}`);
  }
  if (input.length < HEADER_LEN + len) {
    throw new EnvelopeError(
      "truncated",
      `truncated frame: need ${HEADER_LEN + len} bytes, have ${input.length}`,
    );
  }
  if (input.length > HEADER_LEN + len) {
    throw new EnvelopeError(
      "trailing_bytes",
      `${input.length - HEADER_LEN - len} trailing bytes after the payload`,
    );
  }
  return {
    envelope: {
      kind,
      flags,
      sender: view.getUint32(4),
      track: view.getUint32(8),
      group: view.getUint32(12),
      seq: view.getUint32(16),
      timestampUs: view.getBigUint64(20),
    },
    payload: input.subarray(HEADER_LEN, HEADER_LEN + len),
  };
}
