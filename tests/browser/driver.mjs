// Drives headless Chromium for tests/browser.rs over the line protocol in commands.mjs.
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "./commands.mjs";

const flags = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
  // The engine under test listens on 127.0.0.1 only; without this Chromium skips loopback candidates.
  "--allow-loopback-in-peer-connection",
  "--autoplay-policy=no-user-gesture-required",
  // Extra flags from the test, space-separated: e.g. treating a TEST-NET http origin as secure.
  ...(process.env.CHROMIUM_FLAGS || "").split(" ").filter((f) => f),
];
const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "peercall-chromium-")), {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: flags,
});
await serve({ newPage: () => context.newPage(), close: () => context.close() });
