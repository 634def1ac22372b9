// The envelope, stream framing and control message codecs against the golden bytes the
// Rust encoders write (crates/sealroom-frame/tests/data/golden-wire.json), and against
// random input: every decoder either decodes or throws its typed error, never anything else.
import assert from "node:assert/strict";
import { test } from "node:test";

import fc from "fast-check";

import { fromHex, toHex } from "../src/bytes.js";
import {
  type ControlMessage,
  ERROR_CODES,
  LEAVE_REASONS,
  MESSAGE_TYPES,
  MLS_REFUSALS,
  type MemberInfo,
  type TrackInfo,
  decodeControl,
  encodeControl,
} from "../src/control.js";
import {
  type Envelope,
  HEADER_LEN,
  type MediaKind,
  decodeFrame,
  encodeFrame,
  metadata,
  writeFrameHeader,
  writeMetadata,
} from "../src/envelope.js";
import { ControlError, DeframeError, EnvelopeError, HeaderError } from "../src/errors.js";
import { decodeHeader, encodeHeader } from "../src/sframe.js";
import { Deframer, lenPrefix } from "../src/stream.js";
import { big, readJson } from "./util.js";

const golden = readJson("crates/sealroom-frame/tests/data/golden-wire.json");

const snake = (name: string) => name.replace(/[A-Z]/g, (c, at) => (at ? "_" : "") + c.toLowerCase());

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

const track = (t: Json): TrackInfo => ({ track: t.track, kind: snake(t.kind) as MediaKind });
const member = (m: Json): MemberInfo => ({ member: m.member, user: m.user, tracks: m.tracks.map(track) });

/** serde's JSON of a `ControlMessage` as this package's message. */
function fromSerde(value: Json): ControlMessage {
  if (typeof value === "string") return { type: snake(value) } as ControlMessage;
  const [name, f] = Object.entries(value)[0] as [string, Json];
  const type = snake(name);
  switch (type) {
    case "join":
      return {
        type,
        ticket: f.ticket,
        clientName: f.client_name,
        clientVersion: f.client_version,
        options: { autoSubscribe: f.options.auto_subscribe, room: f.options.room },
      };
    case "joined":
      return {
        type,
        member: f.member,
        roster: f.roster.map(member),
        limits: {
          maxFrameLen: f.limits.max_frame_len,
          dataMessagesPerSec: f.limits.data_messages_per_sec,
          dataBytesPerSec: f.limits.data_bytes_per_sec,
          ticketExpiresInSecs: big(f.limits.ticket_expires_in_secs),
        },
      };
    case "member_joined":
      return { type, info: member(f) };
    case "member_left":
      return { type, member: f.member, reason: snake(f.reason) as ControlMessage & never };
    case "track_published":
      return { type, member: f.member, track: track(f.track) };
    case "refresh_ticket":
      return { type, ticket: f.ticket };
    case "ticket_refreshed":
      return { type, expiresInSecs: big(f.expires_in_secs) };
    case "error":
      return { type, code: snake(f.code) as never, message: f.message };
    case "go_away":
      return { type, code: snake(f.code) as never, reconnectAfterMs: f.reconnect_after_ms };
    case "mls_state":
      return { type, position: big(f.position), groupInfo: f.group_info === null ? null : Uint8Array.from(f.group_info) };
    case "mls_publish":
      return { type, position: big(f.position), groupInfo: Uint8Array.from(f.group_info) };
    case "mls_commit":
      return { type, position: big(f.position), commit: Uint8Array.from(f.commit), groupInfo: Uint8Array.from(f.group_info) };
    case "mls_committed":
      return { type, member: f.member, position: big(f.position), commit: Uint8Array.from(f.commit) };
    case "mls_accepted":
      return { type, position: big(f.position) };
    case "mls_refused":
      return { type, position: big(f.position), reason: snake(f.reason) as never };
    case "recorder_present":
      return { type, member: f.member };
    case "redirect":
      return { type, address: f.address };
    case "mls_group_info_part":
      return { type, bytes: Uint8Array.from(f.bytes) };
    default:
      return { type, member: f.member, track: f.track } as ControlMessage;
  }
}

test("every golden control message encodes to the Rust bytes and decodes back", () => {
  const seen = new Set<string>();
  for (const row of golden.control) {
    const message = fromSerde(row.message);
    seen.add(message.type);
    assert.equal(toHex(encodeControl(message)), row.hex, JSON.stringify(row.message));
    assert.deepEqual(decodeControl(fromHex(row.hex)), message);
  }
  assert.equal(seen.size, MESSAGE_TYPES.length, "one of each message type");
});

test("refused control messages give the Rust decoder's error", () => {
  for (const row of golden.control_refusals) {
    const bytes =
      typeof row.hex === "string"
        ? fromHex(row.hex)
        : Uint8Array.from({ length: row.hex.len }, (_, i) =>
            i < row.hex.prefix.length / 2 ? fromHex(row.hex.prefix)[i]! : 0x61,
          );
    assert.throws(
      () => decodeControl(bytes),
      (err: unknown) => err instanceof ControlError && err.kind === row.error,
      row.what,
    );
  }
});

test("golden envelopes encode and decode, with their metadata", () => {
  for (const row of golden.envelopes) {
    const envelope: Envelope = {
      kind: row.kind,
      flags: row.flags,
      sender: row.sender,
      track: row.track,
      group: row.group,
      seq: row.seq,
      timestampUs: big(row.timestamp_us),
    };
    assert.equal(toHex(encodeFrame(envelope, fromHex(row.payload))), row.hex);
    assert.equal(toHex(metadata(envelope)), row.metadata);
    const frame = decodeFrame(fromHex(row.hex));
    assert.deepEqual(frame.envelope, envelope);
    assert.equal(toHex(frame.payload), row.payload);
  }
  for (const row of golden.envelope_refusals) {
    assert.throws(
      () => decodeFrame(fromHex(row.hex)),
      (err: unknown) => err instanceof EnvelopeError && err.kind === row.error,
      row.what,
    );
  }
});

test("golden length prefixes, and refused framing", () => {
  for (const row of golden.framing) assert.equal(toHex(lenPrefix(row.len)), row.prefix);
  for (const row of golden.framing_refusals) {
    const deframer = new Deframer(row.max);
    deframer.push(fromHex(row.hex));
    const step = () => (row.at === "finish" ? (deframer.next(), deframer.finish()) : deframer.next());
    assert.throws(step, (err: unknown) => err instanceof DeframeError && err.kind === row.error, row.what);
  }
});

// Random input: decode or a typed error, never another exception.
const bytes = fc.uint8Array({ maxLength: 300 });

test("random bytes never break the control decoder", () => {
  fc.assert(
    fc.property(bytes, (input) => {
      try {
        const message = decodeControl(Uint8Array.of(1, ...input));
        // What decodes re-encodes to the same bytes: one encoding per message.
        assert.equal(toHex(encodeControl(message)), toHex(Uint8Array.of(1, ...input)));
      } catch (err) {
        if (!(err instanceof ControlError)) throw err;
      }
    }),
    { numRuns: 3000 },
  );
});

test("random bytes never break the envelope, header or stream decoders", () => {
  fc.assert(
    fc.property(bytes, fc.integer({ min: 1, max: 400 }), (input, chunk) => {
      for (const [decode, type] of [
        [() => decodeFrame(input), EnvelopeError],
        [() => decodeHeader(input), HeaderError],
      ] as const) {
        try {
          decode();
        } catch (err) {
          if (!(err instanceof type)) throw err;
        }
      }
      const deframer = new Deframer(64);
      try {
        for (let at = 0; at < input.length; at += chunk) {
          deframer.push(input.subarray(at, at + chunk));
          while (deframer.next() !== null);
        }
        deframer.finish();
      } catch (err) {
        if (!(err instanceof DeframeError)) throw err;
      }
    }),
    { numRuns: 3000 },
  );
});

const u32 = fc.nat({ max: 0xffffffff });
const u64 = fc.bigInt({ min: 0n, max: 0xffffffffffffffffn });
const kind = fc.constantFrom<MediaKind>("audio", "video", "data");
const trackArb = fc.record({ track: u32, kind });
const memberArb = fc.record({ member: u32, user: fc.string({ unit: "grapheme", maxLength: 20 }), tracks: fc.array(trackArb, { maxLength: 4 }) });
const code = fc.constantFrom(...ERROR_CODES);
const message: fc.Arbitrary<ControlMessage> = fc.oneof(
  fc.record({
    type: fc.constant("join" as const),
    ticket: fc.string({ maxLength: 200 }),
    clientName: fc.string({ unit: "grapheme" }),
    clientVersion: fc.string(),
    options: fc.record({ autoSubscribe: fc.boolean(), room: fc.option(fc.string(), { nil: null }) }),
  }),
  fc.record({
    type: fc.constant("joined" as const),
    member: u32,
    roster: fc.array(memberArb, { maxLength: 3 }),
    limits: fc.record({ maxFrameLen: u32, dataMessagesPerSec: u32, dataBytesPerSec: u32, ticketExpiresInSecs: u64 }),
  }),
  fc.record({ type: fc.constant("member_joined" as const), info: memberArb }),
  fc.record({ type: fc.constant("member_left" as const), member: u32, reason: fc.constantFrom(...LEAVE_REASONS) }),
  fc.record({ type: fc.constant("track_published" as const), member: u32, track: trackArb }),
  fc.record({
    type: fc.constantFrom("track_unpublished" as const, "subscribe" as const, "unsubscribe" as const, "keyframe_request" as const),
    member: u32,
    track: u32,
  }),
  fc.record({ type: fc.constant("refresh_ticket" as const), ticket: fc.string() }),
  fc.record({ type: fc.constant("ticket_refreshed" as const), expiresInSecs: u64 }),
  fc.constant({ type: "leave" as const }),
  fc.record({ type: fc.constant("error" as const), code, message: fc.string() }),
  fc.record({ type: fc.constant("go_away" as const), code, reconnectAfterMs: u32 }),
  fc.constant({ type: "mls_sync" as const }),
  fc.record({ type: fc.constant("mls_state" as const), position: u64, groupInfo: fc.option(fc.uint8Array({ maxLength: 64 }), { nil: null }) }),
  fc.record({ type: fc.constant("mls_publish" as const), position: u64, groupInfo: fc.uint8Array({ maxLength: 64 }) }),
  fc.record({ type: fc.constant("mls_commit" as const), position: u64, commit: fc.uint8Array({ maxLength: 64 }), groupInfo: fc.uint8Array({ maxLength: 64 }) }),
  fc.record({ type: fc.constant("mls_committed" as const), member: u32, position: u64, commit: fc.uint8Array({ maxLength: 64 }) }),
  fc.record({ type: fc.constant("mls_accepted" as const), position: u64 }),
  fc.record({ type: fc.constant("mls_refused" as const), position: u64, reason: fc.constantFrom(...MLS_REFUSALS) }),
  fc.record({ type: fc.constant("recorder_present" as const), member: u32 }),
  fc.record({ type: fc.constant("redirect" as const), address: fc.string() }),
  fc.record({ type: fc.constant("mls_group_info_part" as const), bytes: fc.uint8Array({ maxLength: 64 }) }),
);

test("every control message round-trips", () => {
  fc.assert(
    fc.property(message, (m) => {
      assert.deepEqual(decodeControl(encodeControl(m)), structuredClone(m));
    }),
    { numRuns: 2000 },
  );
});

test("envelopes, headers and framed streams round-trip in any pieces", () => {
  const envelope = fc.record({ kind, flags: fc.nat({ max: 15 }), sender: u32, track: u32, group: u32, seq: u32, timestampUs: u64 });
  fc.assert(
    fc.property(envelope, fc.uint8Array({ maxLength: 200 }), u64, u64, fc.integer({ min: 1, max: 50 }), (e, payload, kid, ctr, chunk) => {
      const wire = encodeFrame(e, payload);
      // Built in place (as the client sends): the same bytes and the same metadata.
      const inPlace = new Uint8Array(HEADER_LEN + payload.length);
      inPlace.set(payload, HEADER_LEN);
      writeFrameHeader(inPlace, e);
      assert.deepEqual(inPlace, wire);
      assert.deepEqual(writeMetadata(new Uint8Array(HEADER_LEN).fill(0xee), e), metadata(e));
      assert.deepEqual(metadata(e), wire.subarray(0, 28));
      const frame = decodeFrame(wire);
      assert.deepEqual(frame.envelope, structuredClone(e));
      assert.deepEqual(frame.payload, payload);
      const header = encodeHeader({ kid, ctr });
      assert.deepEqual(decodeHeader(header)[0], { kid, ctr });
      const stream = Uint8Array.of(...lenPrefix(wire.length), ...wire, ...lenPrefix(payload.length), ...payload);
      const deframer = new Deframer(1 << 20);
      const out: Uint8Array[] = [];
      for (let at = 0; at < stream.length; at += chunk) {
        deframer.push(stream.subarray(at, at + chunk));
        for (let f = deframer.next(); f !== null; f = deframer.next()) out.push(f.slice());
      }
      deframer.finish();
      assert.deepEqual(out, [wire, payload]);
    }),
    { numRuns: 1000 },
  );
});
