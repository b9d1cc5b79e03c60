// Drives headless Chromium for tests/browser.rs: one command per stdin line, one JSON answer per
// stdout line. Commands: open ID URL | click-user ID NAME | hangup ID | stats ID | closed ID | quit.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const flags = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
  // The engine under test listens on 127.0.0.1 only; without this Chromium skips loopback candidates.
  "--allow-loopback-in-peer-connection",
  "--autoplay-policy=no-user-gesture-required",
];
const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "peercall-chromium-")), {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: flags,
});
const pages = new Map();
const reply = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

async function stats(page) {
  return page.evaluate(async () => {
    const pc = window.peercall.pc();
    const out = { inCall: !!pc, framesDecoded: 0, framesPerSecond: 0, width: 0, height: 0,
                  audioSamples: 0, framesSent: 0, ice: pc ? pc.iceConnectionState : "none", codec: "" };
    if (!pc) return out;
    const report = await pc.getStats();
    const codecs = {};
    report.forEach((s) => { if (s.type === "codec") codecs[s.id] = s.mimeType; });
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        out.framesDecoded = s.framesDecoded || 0; out.framesPerSecond = s.framesPerSecond || 0;
        out.width = s.frameWidth || 0; out.height = s.frameHeight || 0; out.codec = codecs[s.codecId] || "";
      }
      if (s.type === "inbound-rtp" && s.kind === "audio") out.audioSamples = s.totalSamplesReceived || 0;
      if (s.type === "outbound-rtp" && s.kind === "video") out.framesSent = s.framesSent || 0;
    });
    return out;
  });
}

for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, id, ...rest] = line.trim().split(" ");
  try {
    if (cmd === "quit") { await context.close(); reply({ ok: true }); process.exit(0); }
    if (cmd === "open") {
      const page = await context.newPage();
      page.on("console", (m) => { if (m.type() === "error") process.stderr.write(`[${id}] ${m.text()}\n`); });
      await page.goto(rest[0]);
      await page.waitForFunction(() => /Signaling connected/.test(document.getElementById("status").textContent));
      pages.set(id, page);
      reply({ ok: true });
    } else if (cmd === "click-user") {
      const page = pages.get(id);
      const name = rest.join(" ");
      await page.locator("#users li", { hasText: name }).first().click();
      reply({ ok: true });
    } else if (cmd === "hangup") {
      await pages.get(id).click("#hangup");
      reply({ ok: true });
    } else if (cmd === "stats") {
      reply({ ok: true, ...(await stats(pages.get(id))) });
    } else if (cmd === "users") {
      const users = await pages.get(id).locator("#users li").allTextContents();
      reply({ ok: true, users });
    } else {
      reply({ ok: false, error: `unknown command ${cmd}` });
    }
  } catch (e) {
    reply({ ok: false, error: String(e) });
  }
}
