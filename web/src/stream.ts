/**
 * Stream framing: frames laid back to back behind a QUIC variable-length length prefix, in
 * its shortest form only (docs/PROTOCOL.md, "Stream framing"; `sealroom_frame::stream`).
 */

import { DeframeError } from "./errors.js";

/** The first byte of every media stream (`StreamType::Media`). */
export const MEDIA_STREAM_TYPE = 0x01;

/** Largest value a QUIC varint holds. */
export const MAX_VARINT = 2 ** 62 - 1;

/** Bytes the prefix of a `len`-byte frame takes: 1, 2, 4 or 8. */
export function prefixLen(len: number): number {
  if (len < 2 ** 6) return 1;
  if (len < 2 ** 14) return 2;
  if (len < 2 ** 30) return 4;
  return 8;
}

/** The length prefix of a `len`-byte frame. */
export function lenPrefix(len: number): Uint8Array {
  if (!Number.isSafeInteger(len) || len < 0) throw new RangeError(`bad frame length ${len}`);
  const size = prefixLen(len);
  const out = new Uint8Array(size);
  let v = BigInt(len);
  for (let i = size - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  out[0]! |= [0x00, 0x40, 0x80, 0xc0][Math.log2(size)]!;
  return out;
}

/** `payload` behind its length prefix, in a new array. */
export function frameBytes(payload: Uint8Array): Uint8Array {
  const prefix = lenPrefix(payload.length);
  const out = new Uint8Array(prefix.length + payload.length);
  out.set(prefix);
  out.set(payload, prefix.length);
  return out;
}

/**
 * Splits a stream's bytes, arriving in any pieces, into its frames. Refuses a prefix that
 * declares more than `maxFrameLen` as soon as the prefix is complete, before buffering the
 * frame; every error is final for the stream.
 */
export class Deframer {
  readonly maxFrameLen: number;
  private buffer: Uint8Array = new Uint8Array(0);
  private failed: DeframeError | null = null;

  constructor(maxFrameLen: number) {
    this.maxFrameLen = maxFrameLen;
  }

  /** Bytes held: an incomplete frame and its prefix. */
  get bufferedLen(): number {
    return this.buffer.length;
  }

  /** Take in the next piece of the stream. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.buffer.length === 0) {
      this.buffer = chunk;
      return;
    }
    const joined = new Uint8Array(this.buffer.length + chunk.length);
    joined.set(this.buffer);
    joined.set(chunk, this.buffer.length);
    this.buffer = joined;
  }

  /** The next whole frame (a view of the received bytes), or `null` when more is needed. */
  next(): Uint8Array | null {
    if (this.failed) throw this.failed;
    const first = this.buffer[0];
    if (first === undefined) return null;
    const size = 1 << (first >> 6);
    if (this.buffer.length < size) return null;
    let len = BigInt(first & 0x3f);
    for (let i = 1; i < size; i++) len = (len << 8n) | BigInt(this.buffer[i]!);
    if (prefixLen(Number(len)) !== size) {
      this.failed = new DeframeError(
        "non_minimal_prefix",
        `length prefix ${len} is not minimally encoded`,
      );
      throw this.failed;
    }
    if (len > BigInt(this.maxFrameLen)) {
      this.failed = new DeframeError(
        "oversize",
        `frame of ${len} bytes exceeds the limit ${this.maxFrameLen}`,
      );
      throw this.failed;
    }
    const end = size + Number(len);
    if (this.buffer.length < end) return null;
    const frame = this.buffer.subarray(size, end);
    this.buffer = this.buffer.subarray(end);
    return frame;
  }

  /** The stream ended: throws `truncated` when it ended inside a frame. */
  finish(): void {
    if (this.failed) throw this.failed;
    if (this.buffer.length > 0) {
      this.failed = new DeframeError(
        "truncated",
        `stream ended inside a frame: ${this.buffer.length} bytes of an incomplete frame`,
      );
      throw this.failed;
    }
  }
}
