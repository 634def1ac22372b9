// The room key schedule against the vectors sealroom-crypto generates: the same keys, and
// frames sealed here equal to frames sealed in Rust, byte for byte, and opened both ways.
import assert from "node:assert/strict";
import { test } from "node:test";

import { fromHex, toHex } from "../src/bytes.js";
import { decodeFrame, encodeFrame, metadata, type MediaKind } from "../src/envelope.js";
import { OpenError, SealError } from "../src/errors.js";
import { KeySchedule, REPLAY_WINDOW, ReplayWindow, makeKid } from "../src/schedule.js";
import { decodeHeader, suite } from "../src/sframe.js";
import { big, readJson } from "./util.js";

const vectors = readJson("crates/sealroom-crypto/tests/data/room-key-schedule.json");

test("the schedule covers all five suites", () => {
  const suites = new Set(vectors.cases.map((c: { cipher_suite: number }) => c.cipher_suite));
  assert.deepEqual([...suites].sort(), [1, 2, 3, 4, 5]);
});

test("room secret to base key, byte for byte", async () => {
  for (const c of vectors.cases) {
    const schedule = await KeySchedule.create(fromHex(c.room_secret), suite(c.cipher_suite));
    assert.equal(toHex(schedule.prk), c.room_prk);
    const kid = big(c.kid);
    assert.equal(makeKid(big(c.epoch), big(c.session)), kid);
    assert.equal(toHex(await schedule.epochSecret(big(c.epoch))), c.epoch_secret);
    assert.equal(toHex(await schedule.baseKey(big(c.epoch), kid)), c.base_key);
  }
});

test("frames sealed in the page equal the frames Rust sealed, and open", async () => {
  let frames = 0;
  for (const c of vectors.cases) {
    const schedule = await KeySchedule.create(fromHex(c.room_secret), suite(c.cipher_suite));
    const sealer = await schedule.sealer(big(c.epoch), big(c.session));
    for (const f of c.frames) {
      // One opener per frame: the vectors' CTRs jump (65536, then 2), which a single
      // replay window would rightly call too old.
      const opener = schedule.opener(big(c.epoch));
      const envelope = {
        kind: f.kind as MediaKind,
        flags: f.flags,
        sender: f.sender,
        track: f.track,
        group: f.group,
        seq: f.seq,
        timestampUs: big(f.timestamp_us),
      };
      assert.equal(toHex(metadata(envelope)), f.metadata);
      const sealed = await sealer.sealWithCtrForTests(big(f.ctr), metadata(envelope), fromHex(f.plaintext));
      assert.equal(toHex(sealed), f.sealed);
      assert.equal(toHex(encodeFrame(envelope, sealed)), f.wire);
      // Rust's wire bytes open in the page.
      const wire = decodeFrame(fromHex(f.wire));
      assert.deepEqual(wire.envelope, envelope);
      const opened = await opener.open(metadata(wire.envelope), wire.payload);
      assert.equal(toHex(opened), f.plaintext);
      // Opening the same frame again is a replay.
      await assert.rejects(opener.open(metadata(wire.envelope), wire.payload), (e: unknown) =>
        e instanceof OpenError && e.kind === "replayed",
      );
      frames++;
    }
  }
  assert.ok(frames >= 20, `${frames} frames`);
});

test("another room secret cannot open a frame, nor an altered envelope", async () => {
  const c = vectors.cases[0];
  const f = c.frames[0];
  const wire = decodeFrame(fromHex(f.wire));
  const other = fromHex(c.room_secret);
  other[0]! ^= 1;
  const wrong = (await KeySchedule.create(other, suite(c.cipher_suite))).opener(big(c.epoch));
  await assert.rejects(wrong.open(metadata(wire.envelope), wire.payload), (e: unknown) =>
    e instanceof OpenError && e.kind === "authentication_failed",
  );
  const right = (await KeySchedule.create(fromHex(c.room_secret), suite(c.cipher_suite))).opener(big(c.epoch));
  const moved = { ...wire.envelope, track: wire.envelope.track + 1 };
  await assert.rejects(right.open(metadata(moved), wire.payload), OpenError);
});

test("a sealer's frames open in order and its KID carries the epoch", async () => {
  const schedule = await KeySchedule.create(new Uint8Array(32).fill(7));
  const sealer = await schedule.sealer(3n);
  assert.equal(sealer.kid & 0xfn, 3n);
  const opener = schedule.opener(3n);
  const envelope = { kind: "audio" as const, flags: 0, sender: 1, track: 1, group: 0, seq: 0, timestampUs: 0n };
  for (let i = 0; i < 5; i++) {
    const text = new TextEncoder().encode(`frame ${i}`);
    const sealed = await sealer.seal(metadata(envelope), text);
    assert.deepEqual(await opener.open(metadata(envelope), sealed), text);
  }
  const stranger = await schedule.sealer(9n);
  const sealed = await stranger.seal(metadata(envelope), new Uint8Array(3));
  await assert.rejects(opener.open(metadata(envelope), sealed), (e: unknown) =>
    e instanceof OpenError && e.kind === "unknown_kid",
  );
});

test("the replay window takes each CTR once, in any order within the window", () => {
  const w = new ReplayWindow();
  const kind = (ctr: bigint) => {
    try {
      w.check(ctr);
      return "ok";
    } catch (err) {
      return (err as OpenError).kind;
    }
  };
  for (const ctr of [5n, 3n, 4n, 0n, 1000n, 6n]) {
    assert.equal(kind(ctr), "ok", `${ctr}`);
    w.set(ctr);
    assert.equal(kind(ctr), "replayed", `${ctr} again`);
  }
  assert.equal(kind(2n), "ok");
  w.set(1100n);
  assert.equal(kind(1000n), "replayed");
  assert.equal(kind(1100n - REPLAY_WINDOW), "too_old");
  assert.equal(kind(1100n - REPLAY_WINDOW + 1n), "ok");
  w.set(1_000_000n);
  assert.equal(kind(1100n), "too_old");
  assert.equal(kind(999_999n), "ok");
  assert.equal(kind(1_000_000n), "replayed");
});

test("the replay window agrees with a plain model on random CTR sequences", async () => {
  const fc = (await import("fast-check")).default;
  // Random CTRs, and walks that mostly move on a little (the window's ring wraps many times).
  const random = fc.array(fc.bigInt({ min: 0n, max: 3000n }), { maxLength: 300 });
  const walk = fc.array(fc.integer({ min: -40, max: 60 }), { maxLength: 600 }).map((steps) => {
    let at = 0n;
    return steps.map((d) => (at = at + BigInt(d) < 0n ? 0n : at + BigInt(d)));
  });
  fc.assert(
    fc.property(fc.oneof(random, walk), (ctrs) => {
      const w = new ReplayWindow();
      const seen = new Set<bigint>();
      let highest = -1n;
      for (const ctr of ctrs) {
        const expected = highest >= 0n && ctr + REPLAY_WINDOW <= highest ? "too_old" : seen.has(ctr) ? "replayed" : "ok";
        let got = "ok";
        try {
          w.check(ctr);
        } catch (err) {
          got = (err as OpenError).kind;
        }
        assert.equal(got, expected, `${ctr} after ${[...seen]}`);
        if (got === "ok") {
          w.set(ctr);
          seen.add(ctr);
          if (ctr > highest) highest = ctr;
        }
      }
    }),
    { numRuns: 500 },
  );
});

test("a sealer's counter carries past 32 bits and stops at the last 64-bit CTR", async () => {
  const schedule = await KeySchedule.create(new Uint8Array(32).fill(9));
  const sealer = await schedule.sealer(0n, 5n);
  const md = new Uint8Array(28);
  const ctrOf = (sealed: Uint8Array) => decodeHeader(sealed)[0].ctr;
  sealer.setNextCtrForTests(0xffffffffn);
  assert.equal(ctrOf(await sealer.seal(md, new Uint8Array(1))), 0xffffffffn);
  assert.equal(ctrOf(await sealer.seal(md, new Uint8Array(1))), 0x100000000n);
  sealer.setNextCtrForTests(0xfffffffffffffffen);
  const last = await sealer.seal(md, new Uint8Array(1));
  assert.equal(ctrOf(last), 0xfffffffffffffffen);
  await assert.rejects(sealer.seal(md, new Uint8Array(1)), (err: unknown) => err instanceof SealError && err.kind === "rotation_required");
  // The frames at the top of the range open as well.
  assert.equal((await schedule.opener(0n).open(md, last)).length, 1);
});

test("frames sealed and opened concurrently on all five suites each open to their own plaintext", async () => {
  // The key contexts reuse nonce and AAD buffers between frames: frames in flight at once
  // must not see each other's.
  for (const id of [1, 2, 3, 4, 5]) {
    const schedule = await KeySchedule.create(new Uint8Array(32).fill(id), suite(id));
    const sealer = await schedule.sealer(0n);
    const opener = schedule.opener(0n);
    const frames = Array.from({ length: 40 }, (_, i) => ({
      md: metadata({ kind: "audio", flags: 0, sender: 1, track: 1, group: 0, seq: i, timestampUs: BigInt(i) }),
      pt: new Uint8Array(10 + i).fill(i),
    }));
    // CTRs 0-39 cross the one-byte header boundary (CTR 8) while in flight.
    const sealed = await Promise.all(frames.map((f) => sealer.seal(f.md, f.pt)));
    const opened = await Promise.all(sealed.map((s, i) => opener.open(frames[i]!.md, s)));
    opened.forEach((pt, i) => assert.equal(toHex(pt), toHex(frames[i]!.pt), `suite ${id} frame ${i}`));
  }
});
