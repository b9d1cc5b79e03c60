// Drives headless Chromium for tests/browser.rs and tests/firefox.rs over the line protocol in commands.mjs.
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
  // The test's own (e.g. --unsafely-treat-insecure-origin-as-secure=ORIGIN for a page on a TEST-NET address).
  ...process.argv.slice(2),
];
const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "peercall-chromium-")), {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: flags,
});
await serve({ newPage: () => context.newPage(), close: () => context.close() });
