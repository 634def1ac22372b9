// Takes the README's screenshot of the demo: two pages in a room with the Rust member.
// Run: npm run build && node dist/browser/screenshot.js ../docs/web-demo.png
import { launch, startDemo, until } from "./harness.js";

const out = process.argv[2] ?? "web-demo.png";
const demo = await startDemo();
const chromium = await launch();
try {
  const alice = await chromium.browser.newPage();
  await alice.setViewportSize({ width: 1100, height: 560 });
  const bob = await chromium.browser.newPage();
  await alice.goto(`${demo.url}?user=alice`);
  await bob.goto(`${demo.url}?user=bob`);
  const b = await until(bob, "bob joined", (s) => s.joined);
  await bob.evaluate(() => (window as never as { sealroomDemo: { say(t: string): Promise<void> } }).sealroomDemo.say("hi alice, this is sealed in my page"));
  await until(alice, "bob's video", (s) => (s.members[b.member]?.video.frames ?? 0) > 40 && s.chat.length >= 2);
  await alice.screenshot({ path: out, type: "png" });
  console.log(`wrote ${out}`);
} finally {
  await chromium.close();
  await demo.stop();
}
