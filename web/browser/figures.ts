// The browser figures of docs/PERFORMANCE.md, measured on this machine:
// 1. `crypto`: seal + open of a 1200-byte frame with the TypeScript client in Chromium,
//    against raw WebCrypto AES-GCM encrypt + decrypt of the same bytes, in alternating
//    rounds (the page is served by a small loopback server here: no relay needed);
// 2. `latency`: end-to-end latency browser -> relay -> browser (capture time in the sender's
//    page to the frame opened in the receiver's), then native -> native with `sealroom demo`,
//    repeated, each run reporting p50/p99 and the load average it ran at.
// Run: node dist/browser/figures.js [crypto|latency|all] [runs]
// (a release relay: SEALROOM_BIN=../target/release/sealroom).
import { spawnSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { type Server, createServer } from "node:http";
import { loadavg } from "node:os";
import { join } from "node:path";

import type { CDPSession } from "playwright-core";

import { SEALROOM_BIN, demoState, launch, startDemo, until } from "./harness.js";

const ROUNDS = 15;
const PER_ROUND = 2000;
const LATENCY_SECS = 20;

const what = process.argv[2] ?? "all";
const runs = Number(process.argv[3] ?? (what === "latency" ? 3 : 1));

function stats(values: number[]): { min: number; median: number; max: number } {
  const s = [...values].sort((a, b) => a - b);
  return { min: s[0]!, median: s[Math.floor(s.length / 2)]!, max: s[s.length - 1]! };
}

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function load(): string {
  return loadavg()
    .map((l) => l.toFixed(1))
    .join(" ");
}

/** A loopback server of the built client (`dist/src`) under `/client/`, and a blank page. */
async function serveClient(): Promise<{ url: string; server: Server }> {
  const root = new URL("../src/", import.meta.url).pathname;
  const server = createServer((req, res) => {
    const name = /^\/client\/([a-z]+\.js)$/.exec(req.url ?? "")?.[1];
    if (!name) {
      res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>figures</title>");
      return;
    }
    readFile(join(root, name)).then(
      (body) => res.writeHead(200, { "content-type": "text/javascript" }).end(body),
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return { url: `http://127.0.0.1:${address.port}/`, server };
}

/** CPU seconds the renderer's main thread (where the page's script runs) has used so far:
 * Chromium's own counter, through the DevTools protocol. WebCrypto's work on its own
 * threads is not in it; the wall time has it. */
async function mainThreadCpu(cdp: CDPSession): Promise<number> {
  const { metrics } = (await cdp.send("Performance.getMetrics")) as { metrics: { name: string; value: number }[] };
  return metrics.find((m) => m.name === "ThreadTime")?.value ?? NaN;
}

async function cryptoFigures(): Promise<void> {
  const { url, server } = await serveClient();
  const chromium = await launch();
  try {
    const page = await chromium.browser.newPage();
    await page.goto(url);
    const cdp = await chromium.browser.newCDPSession(page);
    await cdp.send("Performance.enable", { timeDomain: "threadTicks" });
    const names = await page.evaluate(async () => {
      const m = await import("/client/index.js" as string);
      const schedule = await m.KeySchedule.create(new Uint8Array(32).fill(1));
      const sealer = await schedule.sealer(0n);
      const opener = schedule.opener(0n);
      const ctx = await schedule.keyContext(0n, sealer.kid);
      const md = m.metadata({ kind: "video", flags: 0, sender: 1, track: 1, group: 0, seq: 0, timestampUs: 0n });
      const pt = new Uint8Array(1200).fill(7);
      const subtle = crypto.subtle;
      const keyBytes = new Uint8Array(16).fill(3);
      const key = await subtle.importKey("raw", keyBytes, "AES-GCM", false, ["encrypt", "decrypt"]);
      const aead = await m.Aead.import(m.suite(4), keyBytes);
      const aad = new Uint8Array(md.length + 10);
      let counter = 0;
      let ctr = 0n;
      const iv = () => {
        const nonce = new Uint8Array(12);
        new DataView(nonce.buffer).setUint32(8, counter++);
        return nonce;
      };
      // Raw WebCrypto; the client's AEAD alone; one key context (header, nonce, AAD); the
      // whole client (sealer and opener: KID lookup, replay window).
      const steps: Record<string, () => Promise<unknown>> = {
        raw: async () => {
          const n = iv();
          const ct = await subtle.encrypt({ name: "AES-GCM", iv: n, additionalData: aad }, key, pt);
          await subtle.decrypt({ name: "AES-GCM", iv: n, additionalData: aad }, key, ct);
        },
        aead: async () => {
          const n = iv();
          await aead.decrypt(n, aad, await aead.encrypt(n, aad, pt));
        },
        context: async () => {
          const sealed = await ctx.seal(ctr++, md, pt);
          const [h, l] = m.decodeHeader(sealed);
          await ctx.open(h, l, sealed, md);
        },
        client: async () => {
          await opener.open(md, await sealer.seal(md, pt));
        },
      };
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      (window as any).figureSteps = steps;
      return Object.keys(steps);
    });
    const time = (name: string, n: number) =>
      page.evaluate(
        async ({ name, n }) => {
          // eslint-disable-next-line @typescript-eslint/no-explicit-any
          const f = (window as any).figureSteps[name] as () => Promise<unknown>;
          const t = performance.now();
          for (let i = 0; i < n; i++) await f();
          return ((performance.now() - t) / n) * 1000;
        },
        { name, n },
      );
    for (const name of names) await time(name, 300);
    // Per round and step: wall microseconds per frame, and main-thread CPU microseconds
    // per frame (far less disturbed by other processes on a shared machine).
    const rounds: Record<string, { wall: number; cpu: number }>[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const round: (typeof rounds)[number] = {};
      // Rotate the order from round to round.
      for (let i = 0; i < names.length; i++) {
        const name = names[(i + r) % names.length]!;
        const before = await mainThreadCpu(cdp);
        const wall = await time(name, PER_ROUND);
        const cpu = ((await mainThreadCpu(cdp)) - before) * 1e6 / PER_ROUND;
        round[name] = { wall, cpu };
      }
      rounds.push(round);
    }
    console.log(
      `seal+open 1200 B in Chromium, ${ROUNDS} rounds of ${PER_ROUND} frames; us per frame and ratio to raw, median (min-max) over rounds; load average ${load()}:`,
    );
    console.log(`  step     wall                 ratio              main-thread CPU      ratio`);
    const cell = (st: { min: number; median: number; max: number }, digits: number) =>
      `${st.median.toFixed(digits)} (${st.min.toFixed(digits)}-${st.max.toFixed(digits)})`;
    for (const name of ["raw", "aead", "context", "client"]) {
      const col = (k: "wall" | "cpu") => [
        cell(stats(rounds.map((r) => r[name]![k])), 1),
        cell(stats(rounds.map((r) => r[name]![k] / r.raw![k])), 2),
      ];
      const [wall, wallRatio] = col("wall");
      const [cpu, cpuRatio] = col("cpu");
      console.log(`  ${name.padEnd(8)} ${wall!.padEnd(20)} ${wallRatio!.padEnd(18)} ${cpu!.padEnd(20)} ${cpuRatio}`);
    }
    await page.close();
  } finally {
    await chromium.close();
    server.close();
  }
}

async function browserLatency(): Promise<void> {
  const demo = await startDemo(["--no-rust-member"]);
  const chromium = await launch();
  try {
    const alice = await chromium.browser.newPage();
    const bob = await chromium.browser.newPage();
    await alice.goto(`${demo.url}?user=alice`);
    await bob.goto(`${demo.url}?user=bob`);
    const a = await until(alice, "alice joined", (s) => s.joined);
    const b = await until(bob, "bob joined", (s) => s.joined);
    await new Promise((r) => setTimeout(r, LATENCY_SECS * 1000));
    const sa = await demoState(alice);
    const sb = await demoState(bob);
    const latencies = [...(sa.members[b.member]?.latencies ?? []), ...(sb.members[a.member]?.latencies ?? [])];
    const opened = (sa.members[b.member]?.opened ?? 0) + (sb.members[a.member]?.opened ?? 0);
    const failures = (sa.members[b.member]?.failures ?? 0) + (sb.members[a.member]?.failures ?? 0);
    console.log(
      `browser -> relay -> browser, ${LATENCY_SECS} s of VP8 + Opus + chat both ways: ${opened} frames opened, ${failures} failures; ` +
        `latency p50 ${percentile(latencies, 50).toFixed(2)} ms, p99 ${percentile(latencies, 99).toFixed(2)} ms (last ${latencies.length} frames; load average ${load()})`,
    );
  } finally {
    await chromium.close();
    await demo.stop();
  }
}

function nativeLatency(): void {
  const native = spawnSync(SEALROOM_BIN, ["demo", "--members", "2", "--duration", String(LATENCY_SECS)], {
    encoding: "utf8",
  });
  const rows = native.stdout.split("\n").filter((l) => /^member-\d+\s+\d+\s/.test(l));
  console.log(
    `native -> relay -> native (sealroom demo --members 2 --duration ${LATENCY_SECS}), p50/p99 ms per member (load average ${load()}):`,
  );
  for (const row of rows) console.log(`  ${row.trim()}`);
}

console.log(`sealroom: ${SEALROOM_BIN}`);
for (let run = 1; run <= runs; run++) {
  if (runs > 1) console.log(`--- run ${run} of ${runs}`);
  if (what === "crypto" || what === "all") await cryptoFigures();
  if (what === "latency" || what === "all") {
    await browserLatency();
    nativeLatency();
  }
}
