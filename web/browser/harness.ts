// What the browser tests share: the `sealroom demo --web` process and a headless Chromium
// from Debian (never a downloaded one), started with the flags this machine needs.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { type Browser, type BrowserContext, type Page, chromium } from "playwright-core";

/** The `sealroom` executable: `SEALROOM_BIN`, or the workspace's debug build. */
export const SEALROOM_BIN =
  process.env.SEALROOM_BIN ?? new URL("../../../target/debug/sealroom", import.meta.url).pathname;
/** Debian's Chromium. */
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** A running demo: its page URL and its process. */
export interface Demo {
  url: string;
  process: ChildProcess;
  output: string[];
  stop(): Promise<void>;
}

/** Start `sealroom demo --web` on a free port and wait for the URL it prints. */
export function startDemo(extra: string[] = []): Promise<Demo> {
  const child = spawn(SEALROOM_BIN, ["demo", "--web", "--web-port", "0", ...extra], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no URL from the demo:\n${output.join("")}`)), 30_000);
    const onData = (chunk: Buffer) => {
      output.push(chunk.toString());
      const match = /open (http:\/\/127\.0\.0\.1:\d+\/)/.exec(output.join(""));
      if (match) {
        clearTimeout(timer);
        resolve({
          url: match[1]!,
          process: child,
          output,
          stop: () =>
            new Promise((done) => {
              if (child.exitCode !== null) return done();
              child.once("exit", () => done());
              child.kill("SIGINT");
            }),
        });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => reject(new Error(`the demo exited (${code}):\n${output.join("")}`)));
  });
}

/** Headless Chromium with a fresh profile. Never `--disable-quic`: it turns WebTransport off. */
export async function launch(): Promise<{ browser: BrowserContext; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), "sealroom-chromium-"));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return {
    browser,
    close: async () => {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type DemoState = any;

/** The page's `window.sealroomDemo`, as plain data. */
export async function demoState(page: Page): Promise<DemoState> {
  return page.evaluate(() => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const s = (window as any).sealroomDemo;
    return JSON.parse(JSON.stringify({ ...s, room: undefined, say: undefined }, (_k, v) => (typeof v === "bigint" ? Number(v) : v)));
  });
}

/** Wait until `check` holds for the page's state (polling), or fail naming `what`. */
export async function until(page: Page, what: string, check: (s: DemoState) => boolean, timeoutMs = 60_000): Promise<DemoState> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await demoState(page);
    if (check(s)) return s;
    if (Date.now() > deadline) throw new Error(`never saw ${what}: ${JSON.stringify(s).slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export type { Browser, Page };
