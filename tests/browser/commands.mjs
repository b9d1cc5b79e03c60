// The line protocol both browser drivers speak (driver.mjs for Chromium, firefox.mjs for Firefox):
// one command per stdin line, one JSON answer per stdout line. Commands:
//   open ID URL | click-user ID NAME | hangup ID | stats ID | grab ID | users ID | sdp ID | quit
// Everything here uses only what Playwright's and Puppeteer's pages share (goto, evaluate,
// waitForFunction, click, console events), so the two drivers differ only in how they launch.
import { createInterface } from "node:readline";

const reply = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

// The page's call as getStats sees it. Firefox has no totalSamplesReceived for audio, so audio
// packets are counted as well.
function stats(page) {
  return page.evaluate(async () => {
    const pc = window.peercall.pc();
    const out = { inCall: !!pc, framesDecoded: 0, framesPerSecond: 0, width: 0, height: 0, audioSamples: 0,
                  audioPackets: 0, framesSent: 0, ice: pc ? pc.iceConnectionState : "none", codec: "", sendCodec: "",
                  // What the page's camera gives.
                  localWidth: document.getElementById("local_video").videoWidth,
                  localHeight: document.getElementById("local_video").videoHeight };
    if (!pc) return out;
    // Firefox's getStats can stay pending for good when the far side hangs up while it runs (the
    // page closes the connection under it): give up after a second and say whether a call is left.
    const report = await Promise.race([pc.getStats(), new Promise((r) => setTimeout(() => r(null), 1000))]);
    if (!report) return { ...out, inCall: !!window.peercall.pc(), statsTimedOut: true };
    const codecs = {};
    report.forEach((s) => { if (s.type === "codec") codecs[s.id] = s.mimeType; });
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        out.framesDecoded = s.framesDecoded || 0; out.framesPerSecond = s.framesPerSecond || 0;
        out.width = s.frameWidth || 0; out.height = s.frameHeight || 0; out.codec = codecs[s.codecId] || "";
        // Loss recovery as the browser saw it: what it asked for again, what came back as RTX, and
        // the freezes it counted (Chromium; absent fields stay 0).
        out.nackSent = s.nackCount || 0; out.rtxReceived = s.retransmittedPacketsReceived || 0;
        out.packetsLost = s.packetsLost || 0; out.freezes = s.freezeCount || 0;
        out.freezeSeconds = s.totalFreezesDuration || 0;
      }
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        out.audioSamples = s.totalSamplesReceived || 0; out.audioPackets = s.packetsReceived || 0;
      }
      if (s.type === "outbound-rtp" && s.kind === "video") {
        out.framesSent = s.framesSent || 0; out.sendCodec = codecs[s.codecId] || "";
        // The size the browser encodes at: it may send less than the camera gives (it starts low).
        out.sendWidth = s.frameWidth || 0; out.sendHeight = s.frameHeight || 0;
        out.nackReceived = s.nackCount || 0; out.rtxSent = s.retransmittedPacketsSent || 0;
      }
    });
    return out;
  });
}

// The page's remote <video> as the user sees it: drawn into a canvas, returned as RGBA (base64) with
// its size. Waits for the next presented frame where the browser says when that is
// (requestVideoFrameCallback), so two grabs in a row are two different pictures.
function grab(page) {
  return page.evaluate(async () => {
    const video = document.getElementById("received_video");
    for (let i = 0; i < 100 && !(video.videoWidth > 0 && video.readyState >= 2); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!(video.videoWidth > 0)) throw new Error("the remote video shows nothing");
    if (video.requestVideoFrameCallback) {
      await Promise.race([new Promise((r) => video.requestVideoFrameCallback(() => r())),
                          new Promise((r) => setTimeout(r, 500))]);
    }
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth; canvas.height = video.videoHeight;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(video, 0, 0);
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    // btoa wants a binary string; build it in chunks (one fromCharCode call can't take a whole frame).
    let binary = "";
    for (let i = 0; i < data.length; i += 0x8000) binary += String.fromCharCode.apply(null, data.subarray(i, i + 0x8000));
    return { width: canvas.width, height: canvas.height, rgba: btoa(binary) };
  });
}

// Clicks the user list entry holding NAME once it is there (the list arrives over the WebSocket).
function clickUser(page, name) {
  return page.evaluate(async (name) => {
    for (let i = 0; i < 200; i++) {
      const li = [...document.querySelectorAll("#users li")].find((l) => l.textContent.includes(name));
      if (li) { li.click(); return; }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no user ${name} in the list`);
  }, name);
}

// Serves the protocol until `quit`: `newPage()` makes a page, `close()` ends the browser.
export async function serve({ newPage, close }) {
  const pages = new Map();
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, id, ...rest] = line.trim().split(" ");
    try {
      const page = pages.get(id);
      if (cmd === "quit") { await close(); reply({ ok: true }); process.exit(0); }
      if (cmd === "open") {
        const fresh = await newPage();
        fresh.on("console", (m) => { if (m.type() === "error") process.stderr.write(`[${id}] ${m.text()}\n`); });
        await fresh.goto(rest[0]);
        await fresh.waitForFunction(() => /Signaling connected/.test(document.getElementById("status").textContent));
        pages.set(id, fresh);
        reply({ ok: true });
      } else if (!page) {
        reply({ ok: false, error: `no page ${id} (or unknown command ${cmd})` });
      } else if (cmd === "click-user") {
        await clickUser(page, rest.join(" "));
        reply({ ok: true });
      } else if (cmd === "hangup") {
        await page.click("#hangup");
        reply({ ok: true });
      } else if (cmd === "stats") {
        reply({ ok: true, ...(await stats(page)) });
      } else if (cmd === "grab") {
        reply({ ok: true, ...(await grab(page)) });
      } else if (cmd === "users") {
        const users = await page.evaluate(() => [...document.querySelectorAll("#users li")].map((l) => l.textContent));
        reply({ ok: true, users });
      } else if (cmd === "sdp") {
        const sdp = await page.evaluate(() => {
          const pc = window.peercall.pc();
          return { local: pc?.localDescription?.sdp || "", remote: pc?.remoteDescription?.sdp || "" };
        });
        reply({ ok: true, ...sdp });
      } else {
        reply({ ok: false, error: `unknown command ${cmd}` });
      }
    } catch (e) {
      reply({ ok: false, error: String(e) });
    }
  }
}
