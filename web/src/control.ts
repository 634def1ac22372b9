/**
 * Control messages: `01 || postcard(ControlMessage)`, as `sealroom_frame::control` and
 * docs/PROTOCOL.md ("Control messages"). postcard writes integers as LEB128 varints, an enum
 * variant as its declaration index (a varint), strings and lists behind a varint length,
 * an option as a `00`/`01` tag. Decoding is strict: every message has one encoding.
 */

import { ControlError } from "./errors.js";
import type { MediaKind } from "./envelope.js";
import { frameBytes } from "./stream.js";

/** The control message version byte. */
export const CONTROL_VERSION = 1;
/** Largest encoded control message (64 KiB). */
export const MAX_CONTROL_LEN = 64 * 1024;

/** Error codes in wire order; each also names the metrics label the relay uses. */
export const ERROR_CODES = [
  "bad_signature",
  "expired",
  "not_yet_valid",
  "wrong_room",
  "unknown_app",
  "room_full",
  "too_many_rooms",
  "not_permitted",
  "frame_too_large",
  "rate_limited",
  "replaced",
  "kicked",
  "room_dismissed",
  "ticket_expired",
  "shutting_down",
  "slow_consumer",
  "protocol_violation",
  "bad_ticket",
  "internal",
  "overloaded",
] as const;
/** A refusal or warning the relay (or a member) names. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** The QUIC / WebTransport close code of `code` (its wire index + 1; 0 is a normal close). */
export function closeCode(code: ErrorCode): number {
  return ERROR_CODES.indexOf(code) + 1;
}

/** The error code a close code carries, if any. */
export function errorCodeOfClose(close: number): ErrorCode | undefined {
  return ERROR_CODES[close - 1];
}

/** What a code means for the session that hears it (`ErrorCode` in the Rust crate). */
export function sessionEnds(code: ErrorCode): boolean {
  return [
    "replaced",
    "kicked",
    "room_dismissed",
    "ticket_expired",
    "slow_consumer",
    "protocol_violation",
    "shutting_down",
    "internal",
  ].includes(code);
}

/** Whether a new connection after `code` may succeed (the client retries with backoff). */
export function mayRetry(code: ErrorCode): boolean {
  return ["rate_limited", "shutting_down", "internal", "overloaded"].includes(code);
}

/** Why a member left, in wire order. */
export const LEAVE_REASONS = [
  "left",
  "timed_out",
  "kicked",
  "replaced",
  "room_dismissed",
  "ticket_expired",
  "removed",
  "shutting_down",
] as const;
export type LeaveReason = (typeof LEAVE_REASONS)[number];

const MEDIA_KINDS: readonly MediaKind[] = ["audio", "video", "data"];

export interface TrackInfo {
  track: number;
  kind: MediaKind;
}
export interface MemberInfo {
  member: number;
  user: string;
  tracks: TrackInfo[];
}
export interface JoinOptions {
  autoSubscribe: boolean;
  /** The room the client means to enter (`null`: whatever the ticket names). */
  room: string | null;
}
export interface SessionLimits {
  maxFrameLen: number;
  dataMessagesPerSec: number;
  dataBytesPerSec: number;
  ticketExpiresInSecs: bigint;
}

/** Every control message, by wire index. */
export type ControlMessage =
  | {
      type: "join";
      ticket: string;
      clientName: string;
      clientVersion: string;
      options: JoinOptions;
    }
  | { type: "joined"; member: number; roster: MemberInfo[]; limits: SessionLimits }
  | { type: "member_joined"; info: MemberInfo }
  | { type: "member_left"; member: number; reason: LeaveReason }
  | { type: "track_published"; member: number; track: TrackInfo }
  | { type: "track_unpublished"; member: number; track: number }
  | { type: "subscribe"; member: number; track: number }
  | { type: "unsubscribe"; member: number; track: number }
  | { type: "keyframe_request"; member: number; track: number }
  | { type: "refresh_ticket"; ticket: string }
  | { type: "ticket_refreshed"; expiresInSecs: bigint }
  | { type: "leave" }
  | { type: "error"; code: ErrorCode; message: string }
  | { type: "go_away"; code: ErrorCode; reconnectAfterMs: number }
  | { type: "mls_sync" }
  | { type: "mls_state"; position: bigint; groupInfo: Uint8Array | null }
  | { type: "mls_publish"; position: bigint; groupInfo: Uint8Array }
  | { type: "mls_commit"; position: bigint; commit: Uint8Array; groupInfo: Uint8Array }
  | { type: "mls_committed"; member: number; position: bigint; commit: Uint8Array }
  | { type: "mls_accepted"; position: bigint }
  | { type: "mls_refused"; position: bigint; reason: MlsRefusal }
  | { type: "recorder_present"; member: number }
  /** Wire index 22: join at `address` (`host:port`, another node of the cluster) instead. */
  | { type: "redirect"; address: string }
  /** Wire index 23: a leading piece of a group info too large for one message (docs/MLS.md). */
  | { type: "mls_group_info_part"; bytes: Uint8Array };

/** Why the relay refused an MLS message, in wire order (docs/MLS.md). */
export const MLS_REFUSALS = ["stale", "exists", "no_group", "too_large", "empty"] as const;
export type MlsRefusal = (typeof MLS_REFUSALS)[number];

/** Message types in wire order. */
export const MESSAGE_TYPES = [
  "join",
  "joined",
  "member_joined",
  "member_left",
  "track_published",
  "track_unpublished",
  "subscribe",
  "unsubscribe",
  "keyframe_request",
  "refresh_ticket",
  "ticket_refreshed",
  "leave",
  "error",
  "go_away",
  "mls_sync",
  "mls_state",
  "mls_publish",
  "mls_commit",
  "mls_committed",
  "mls_accepted",
  "mls_refused",
  "recorder_present",
  // Wire index 22: it follows the MLS messages and recorder_present (14 to 21).
  "redirect",
  "mls_group_info_part",
] as const satisfies readonly ControlMessage["type"][];

const U32_MAX = 0xffffffff;
const U64_MAX = 0xffffffffffffffffn;

class Writer {
  private bytes: number[] = [];

  varint(value: bigint): void {
    let v = value;
    while (v >= 0x80n) {
      this.bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.bytes.push(Number(v));
  }
  u32(value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
      throw new RangeError(`${value} is not an unsigned 32-bit integer`);
    }
    this.varint(BigInt(value));
  }
  u64(value: bigint): void {
    if (value < 0n || value > U64_MAX) {
      throw new RangeError(`${value} is not an unsigned 64-bit integer`);
    }
    this.varint(value);
  }
  bool(value: boolean): void {
    this.bytes.push(value ? 1 : 0);
  }
  string(value: string): void {
    const utf8 = new TextEncoder().encode(value);
    this.varint(BigInt(utf8.length));
    for (const b of utf8) this.bytes.push(b);
  }
  index(value: number): void {
    this.varint(BigInt(value));
  }
  byteString(value: Uint8Array): void {
    this.varint(BigInt(value.length));
    for (const b of value) this.bytes.push(b);
  }
  kind(kind: MediaKind): void {
    this.index(MEDIA_KINDS.indexOf(kind));
  }
  track(track: TrackInfo): void {
    this.u32(track.track);
    this.kind(track.kind);
  }
  member(info: MemberInfo): void {
    this.u32(info.member);
    this.string(info.user);
    this.varint(BigInt(info.tracks.length));
    for (const track of info.tracks) this.track(track);
  }
  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

class Reader {
  at = 0;
  constructor(private readonly input: Uint8Array) {}

  private malformed(what: string): never {
    throw new ControlError("malformed", `malformed control message: ${what}`);
  }
  byte(): number {
    const b = this.input[this.at];
    if (b === undefined) this.malformed("unexpected end of input");
    this.at++;
    return b;
  }
  /** A postcard varint of at most `maxBytes` bytes whose last byte is at most `lastMax`. */
  private varint(maxBytes: number, lastMax: number): bigint {
    let out = 0n;
    for (let i = 0; i < maxBytes; i++) {
      const b = this.byte();
      out |= BigInt(b & 0x7f) << BigInt(7 * i);
      if ((b & 0x80) === 0) {
        if (i === maxBytes - 1 && b > lastMax) this.malformed("bad varint");
        return out;
      }
    }
    this.malformed("bad varint");
  }
  u32(): number {
    return Number(this.varint(5, 0x0f));
  }
  u64(): bigint {
    return this.varint(10, 0x01);
  }
  len(): number {
    const len = this.varint(10, 0x01);
    if (len > BigInt(this.input.length - this.at)) this.malformed("length beyond the input");
    return Number(len);
  }
  bool(): boolean {
    const b = this.byte();
    if (b > 1) this.malformed(`bool ${b}`);
    return b === 1;
  }
  string(): string {
    const len = this.len();
    const bytes = this.input.subarray(this.at, this.at + len);
    this.at += len;
    try {
      return utf8.decode(bytes);
    } catch {
      this.malformed("invalid utf-8");
    }
  }
  byteString(): Uint8Array {
    const len = this.len();
    const bytes = this.input.slice(this.at, this.at + len);
    this.at += len;
    return bytes;
  }
  option<T>(read: () => T): T | null {
    const tag = this.byte();
    if (tag > 1) this.malformed(`option tag ${tag}`);
    return tag === 1 ? read() : null;
  }
  list<T>(read: () => T): T[] {
    const count = this.len();
    const out: T[] = [];
    for (let i = 0; i < count; i++) out.push(read());
    return out;
  }
  pick<T>(table: readonly T[], what: string): T {
    const index = this.varint(5, 0x0f);
    const value = index < BigInt(table.length) ? table[Number(index)] : undefined;
    if (value === undefined) this.malformed(`unknown ${what} ${index}`);
    return value;
  }
  track(): TrackInfo {
    return { track: this.u32(), kind: this.pick(MEDIA_KINDS, "media kind") };
  }
  member(): MemberInfo {
    return { member: this.u32(), user: this.string(), tracks: this.list(() => this.track()) };
  }
  get rest(): number {
    return this.input.length - this.at;
  }
}

function writeBody(w: Writer, m: ControlMessage): void {
  w.index(MESSAGE_TYPES.indexOf(m.type));
  switch (m.type) {
    case "join":
      w.string(m.ticket);
      w.string(m.clientName);
      w.string(m.clientVersion);
      w.bool(m.options.autoSubscribe);
      if (m.options.room === null) {
        w.bool(false);
      } else {
        w.bool(true);
        w.string(m.options.room);
      }
      return;
    case "joined":
      w.u32(m.member);
      w.varint(BigInt(m.roster.length));
      for (const info of m.roster) w.member(info);
      w.u32(m.limits.maxFrameLen);
      w.u32(m.limits.dataMessagesPerSec);
      w.u32(m.limits.dataBytesPerSec);
      w.u64(m.limits.ticketExpiresInSecs);
      return;
    case "member_joined":
      w.member(m.info);
      return;
    case "member_left":
      w.u32(m.member);
      w.index(LEAVE_REASONS.indexOf(m.reason));
      return;
    case "track_published":
      w.u32(m.member);
      w.track(m.track);
      return;
    case "track_unpublished":
    case "subscribe":
    case "unsubscribe":
    case "keyframe_request":
      w.u32(m.member);
      w.u32(m.track);
      return;
    case "refresh_ticket":
      w.string(m.ticket);
      return;
    case "ticket_refreshed":
      w.u64(m.expiresInSecs);
      return;
    case "leave":
      return;
    case "error":
      w.index(ERROR_CODES.indexOf(m.code));
      w.string(m.message);
      return;
    case "go_away":
      w.index(ERROR_CODES.indexOf(m.code));
      w.u32(m.reconnectAfterMs);
      return;
    case "mls_sync":
      return;
    case "mls_state":
      w.u64(m.position);
      if (m.groupInfo === null) {
        w.bool(false);
      } else {
        w.bool(true);
        w.byteString(m.groupInfo);
      }
      return;
    case "mls_publish":
      w.u64(m.position);
      w.byteString(m.groupInfo);
      return;
    case "mls_commit":
      w.u64(m.position);
      w.byteString(m.commit);
      w.byteString(m.groupInfo);
      return;
    case "mls_committed":
      w.u32(m.member);
      w.u64(m.position);
      w.byteString(m.commit);
      return;
    case "mls_accepted":
      w.u64(m.position);
      return;
    case "mls_refused":
      w.u64(m.position);
      w.index(MLS_REFUSALS.indexOf(m.reason));
      return;
    case "recorder_present":
      w.u32(m.member);
      return;
    case "redirect":
      w.string(m.address);
      return;
    case "mls_group_info_part":
      w.byteString(m.bytes);
      return;
  }
}

function readBody(r: Reader): ControlMessage {
  const type = r.pick(MESSAGE_TYPES, "message");
  switch (type) {
    case "join":
      return {
        type,
        ticket: r.string(),
        clientName: r.string(),
        clientVersion: r.string(),
        options: { autoSubscribe: r.bool(), room: r.option(() => r.string()) },
      };
    case "joined":
      return {
        type,
        member: r.u32(),
        roster: r.list(() => r.member()),
        limits: {
          maxFrameLen: r.u32(),
          dataMessagesPerSec: r.u32(),
          dataBytesPerSec: r.u32(),
          ticketExpiresInSecs: r.u64(),
        },
      };
    case "member_joined":
      return { type, info: r.member() };
    case "member_left":
      return { type, member: r.u32(), reason: r.pick(LEAVE_REASONS, "leave reason") };
    case "track_published":
      return { type, member: r.u32(), track: r.track() };
    case "track_unpublished":
    case "subscribe":
    case "unsubscribe":
    case "keyframe_request":
      return { type, member: r.u32(), track: r.u32() };
    case "refresh_ticket":
      return { type, ticket: r.string() };
    case "ticket_refreshed":
      return { type, expiresInSecs: r.u64() };
    case "leave":
      return { type };
    case "error":
      return { type, code: r.pick(ERROR_CODES, "error code"), message: r.string() };
    case "go_away":
      return { type, code: r.pick(ERROR_CODES, "error code"), reconnectAfterMs: r.u32() };
    case "mls_sync":
      return { type };
    case "mls_state":
      return { type, position: r.u64(), groupInfo: r.option(() => r.byteString()) };
    case "mls_publish":
      return { type, position: r.u64(), groupInfo: r.byteString() };
    case "mls_commit":
      return { type, position: r.u64(), commit: r.byteString(), groupInfo: r.byteString() };
    case "mls_committed":
      return { type, member: r.u32(), position: r.u64(), commit: r.byteString() };
    case "mls_accepted":
      return { type, position: r.u64() };
    case "mls_refused":
      return { type, position: r.u64(), reason: r.pick(MLS_REFUSALS, "mls refusal") };
    case "recorder_present":
      return { type, member: r.u32() };
    case "redirect":
      return { type, address: r.string() };
    case "mls_group_info_part":
      return { type, bytes: r.byteString() };
  }
}

/**
 * Version byte and body in a new array. Throws `RangeError` for a field out of range and
 * {@link ControlError} `too_large` past {@link MAX_CONTROL_LEN}.
 */
export function encodeControl(message: ControlMessage): Uint8Array {
  const w = new Writer();
  w.index(CONTROL_VERSION);
  writeBody(w, message);
  const out = w.finish();
  if (out.length > MAX_CONTROL_LEN) {
    throw new ControlError(
      "too_large",
      `control message of ${out.length} bytes exceeds the limit ${MAX_CONTROL_LEN}`,
    );
  }
  return out;
}

/** The message behind its stream length prefix, ready for the control stream. */
export function encodeControlFramed(message: ControlMessage): Uint8Array {
  return frameBytes(encodeControl(message));
}

/** Decode exactly one message; throws {@link ControlError} naming the first problem. */
export function decodeControl(input: Uint8Array): ControlMessage {
  if (input.length > MAX_CONTROL_LEN) {
    throw new ControlError(
      "too_large",
      `control message of ${input.length} bytes exceeds the limit ${MAX_CONTROL_LEN}`,
    );
  }
  const version = input[0];
  if (version === undefined) throw new ControlError("empty", "empty control message");
  if (version !== CONTROL_VERSION) {
    throw new ControlError("unknown_version", `unknown control message version ${version}`);
  }
  const r = new Reader(input.subarray(1));
  const message = readBody(r);
  if (r.rest > 0) {
    throw new ControlError("trailing_bytes", `${r.rest} trailing bytes after the control message`);
  }
  // Over-long varints decode; re-encoding pins every message to one encoding.
  const w = new Writer();
  w.index(CONTROL_VERSION);
  writeBody(w, message);
  const canonical = w.finish();
  if (canonical.length !== input.length || canonical.some((b, i) => b !== input[i])) {
    throw new ControlError("non_canonical", "control message is not canonically encoded");
  }
  return message;
}
