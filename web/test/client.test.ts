// The room client against an in-memory relay: join, publish and receive every kind, frames
// that do not open, typed refusals, reconnecting after the relay goes away.
import assert from "node:assert/strict";
import { test } from "node:test";

import { JoinError, type ReceivedFrame, Room, type RoomEvents } from "../src/client.js";
import { FakeRelay } from "./fakerelay.js";

const SECRET = new Uint8Array(32).fill(42);

function join(relay: FakeRelay, user: string, secret = SECRET, ticket = `ok:${user}`): Promise<Room> {
  return Room.join({
    url: "https://relay.test/sealroom",
    ticket,
    roomSecret: secret,
    transport: relay.factory,
    reconnect: { initialDelayMs: 5, maxDelayMs: 20, maxAttempts: 50 },
  });
}

/** The next `type` event of `room`, or a failure after a while. */
function next<K extends keyof RoomEvents>(room: Room, type: K, pick: (e: RoomEvents[K]) => boolean = () => true): Promise<RoomEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} event`)), 5000);
    const off = room.on(type, (e) => {
      if (!pick(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

function collect(room: Room, n: number): Promise<ReceivedFrame[]> {
  const frames: ReceivedFrame[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${frames.length} of ${n} frames`)), 5000);
    room.on("frame", (f) => {
      frames.push(f);
      if (frames.length === n) {
        clearTimeout(timer);
        resolve(frames);
      }
    });
  });
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

test("two members exchange audio, video and chat, sealed end to end", async () => {
  const relay = new FakeRelay();
  const alice = await join(relay, "alice");
  const joined = next(alice, "member-joined");
  const bob = await join(relay, "bob");
  assert.equal((await joined).user, "bob");
  assert.equal(bob.roster.get(alice.member)?.user, "alice");

  const received = collect(bob, 6);
  const audio = await alice.publishAudio();
  const video = await alice.publishVideo();
  const chat = await alice.publishData();
  await audio.send(new Uint8Array(100).fill(1));
  await audio.send(new Uint8Array(3000).fill(2)); // over the datagram budget: a stream
  await video.send("keyframe MARKER", { keyframe: true });
  await video.send("delta MARKER");
  await chat.send("hello MARKER");
  await chat.send("second MARKER");
  const frames = await received;
  assert.deepEqual(
    frames.filter((f) => f.kind === "data").map((f) => text(f.payload)),
    ["hello MARKER", "second MARKER"],
  );
  assert.deepEqual(
    frames.filter((f) => f.kind === "video").map((f) => [text(f.payload), f.envelope.group, f.envelope.seq]),
    [
      ["keyframe MARKER", 0, 0],
      ["delta MARKER", 0, 1],
    ],
  );
  assert.deepEqual(frames.filter((f) => f.kind === "audio").map((f) => f.payload.length).sort((a, b) => a - b), [100, 3000]);
  assert.ok(frames.every((f) => f.member === alice.member));
  assert.equal(bob.memberStats().get(alice.member)?.framesOpened, 6);
  assert.equal(bob.memberStats().get(alice.member)?.openFailures, 0);
  // The relay saw every frame and never a plaintext marker.
  const marker = new TextEncoder().encode("MARKER");
  for (const bytes of relay.tapped) {
    const hit = bytes.some((_, i) => marker.every((m, j) => bytes[i + j] === m));
    assert.ok(!hit, "plaintext reached the relay");
  }
  await alice.leave();
  await bob.leave();
});

test("a member with another room secret hears could-not-open, the others go on", async () => {
  const relay = new FakeRelay();
  const alice = await join(relay, "alice");
  const bob = await join(relay, "bob");
  const other = new Uint8Array(32).fill(7);
  const eve = await join(relay, "eve", other);
  const failure = next(eve, "could-not-open");
  const received = next(bob, "frame");
  const chat = await alice.publishData();
  await chat.send("for members only");
  const f = await failure;
  assert.equal(f.member, alice.member);
  assert.equal(f.reason, "authentication_failed");
  assert.equal(text((await received).payload), "for members only");
  assert.equal(eve.memberStats().get(alice.member)?.openFailures, 1);
  for (const r of [alice, bob, eve]) await r.leave();
});

test("messages sent just before leaving reach the others", async () => {
  const relay = new FakeRelay();
  const alice = await join(relay, "alice");
  const bob = await join(relay, "bob");
  const chat = await alice.publishData();
  const sent = Array.from({ length: 20 }, (_, i) => `message ${i}`);
  const received = collect(bob, sent.length);
  const left = next(bob, "member-left");
  // Not awaited: the messages are still being sealed when leave starts. (The frames and
  // member-left travel on different streams: either may be seen first.)
  for (const m of sent) void chat.send(m);
  await alice.leave();
  assert.deepEqual((await received).map((f) => text(f.payload)), sent);
  assert.equal((await left).member, alice.member);
  await bob.leave();
});

test("a refused join rejects with the relay's typed reason", async () => {
  const relay = new FakeRelay();
  await assert.rejects(join(relay, "late", SECRET, "expired"), (e: unknown) => e instanceof JoinError && e.kind === "expired");
  await assert.rejects(join(relay, "forger", SECRET, "forged"), (e: unknown) => e instanceof JoinError && e.kind === "bad_signature");
  relay.up = false;
  await assert.rejects(join(relay, "nobody"), (e: unknown) => e instanceof JoinError && e.kind === "transport");
});

test("a refusal whose text was lost still rejects with its typed reason, from the close code", async () => {
  const relay = new FakeRelay();
  relay.dropRefusalText = true;
  await assert.rejects(join(relay, "late", SECRET, "expired"), (e: unknown) => e instanceof JoinError && e.kind === "expired");
  await assert.rejects(join(relay, "forger", SECRET, "forged"), (e: unknown) => e instanceof JoinError && e.kind === "bad_signature");
});

test("a join follows the cluster's redirect to another node, and gives up after too many", async () => {
  const loaded = new FakeRelay();
  const spare = new FakeRelay();
  loaded.redirectTo = "spare.test:4433";
  const urls: string[] = [];
  const byHost = (url: string) => {
    urls.push(url);
    return (new URL(url).host === "spare.test:4433" ? spare : loaded).factory();
  };
  const options = { ticket: "ok:alice", roomSecret: SECRET, transport: byHost };
  const alice = await Room.join({ ...options, url: "https://loaded.test:4433/sealroom" });
  assert.deepEqual(urls, ["https://loaded.test:4433/sealroom", "https://spare.test:4433/sealroom"]);
  assert.equal(alice.url, "https://spare.test:4433/sealroom");
  assert.equal([...spare.sessions].filter((s) => s.member !== 0).length, 1, "alice is on the spare node");
  // A node that sends every join back to itself: followed three times, then refused.
  spare.redirectTo = "spare.test:4433";
  urls.length = 0;
  await assert.rejects(
    Room.join({ ...options, url: "https://spare.test:4433/sealroom" }),
    (e: unknown) => e instanceof JoinError && e.kind === "redirected",
  );
  assert.equal(urls.length, 4);
  await alice.leave();
});

for (const how of ["connection", "capsule"] as const) test(`a member reconnects after the relay restarts (closed by ${how}) and its frames keep opening`, async () => {
  const relay = new FakeRelay();
  const alice = await join(relay, "alice");
  const bob = await join(relay, "bob");
  const chat = await alice.publishData();
  const first = next(bob, "frame");
  await chat.send("before");
  assert.equal(text((await first).payload), "before");

  const disconnected = next(alice, "disconnected");
  const reconnectedA = next(alice, "reconnected");
  const reconnectedB = next(bob, "reconnected");
  relay.up = false;
  relay.restart(how);
  const lost = await disconnected;
  // Without a capsule the code is the one the control stream's Error carried.
  assert.equal(lost.code, "shutting_down");
  assert.ok(lost.willReconnect);
  await new Promise((r) => setTimeout(r, 30));
  relay.up = true;
  await reconnectedA;
  await reconnectedB;
  const after = next(bob, "frame", (f) => text(f.payload) === "after");
  await chat.send("after");
  const f = await after;
  // The same sealer goes on: its CTR did not restart under the same key.
  assert.equal(f.member, alice.member);
  assert.ok(f.envelope.seq > 0);
  assert.equal(bob.memberStats().get(f.member)?.openFailures ?? 0, 0);
  await alice.leave();
  await bob.leave();
});

test("a reconnect asks refresh for a fresh ticket first", async () => {
  const relay = new FakeRelay();
  let refreshed = 0;
  const carol = await Room.join({
    url: "https://relay.test/sealroom",
    ticket: "ok:carol",
    roomSecret: SECRET,
    transport: relay.factory,
    reconnect: { initialDelayMs: 5, maxDelayMs: 20, maxAttempts: 50 },
    refresh: async () => {
      refreshed++;
      return { ticket: "ok:carol-again" };
    },
  });
  const back = next(carol, "reconnected");
  relay.restart();
  await back;
  assert.ok(refreshed >= 1);
  assert.ok([...relay.sessions].some((s) => s.user === "carol-again"));
  await carol.leave();
});
