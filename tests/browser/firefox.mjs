// Drives Debian's Firefox ESR, headless, for the Firefox tests over the line protocol in commands.mjs.
// puppeteer-core speaks WebDriver BiDi to it (no geckodriver) and never downloads a browser.
// Firefox must run where it can gather ICE candidates: not in a namespace with only `lo` (it finds
// none there, whatever its prefs); tests/common/testnet.rs makes a TEST-NET link with a default route.
import puppeteer from "puppeteer-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "./commands.mjs";

const prefs = {
  // A synthetic camera and microphone, no permission prompt.
  "media.navigator.streams.fake": true,
  "media.navigator.permission.disabled": true,
  // The test page is plain http on a TEST-NET address, not a secure context: allow getUserMedia.
  "media.devices.insecure.enabled": true,
  "media.getusermedia.insecure.enabled": true,
  // Real host addresses in candidates rather than mDNS names (nothing resolves .local here).
  "media.peerconnection.ice.obfuscate_host_addresses": false,
  "media.autoplay.default": 0,
  // Offline and quiet: no plugin downloads (OpenH264 from Cisco), updates, telemetry or probes.
  "media.gmp-manager.url": "",
  "media.gmp-gmpopenh264.autoupdate": false,
  "app.update.enabled": false,
  "app.update.auto": false,
  "extensions.update.enabled": false,
  "datareporting.policy.dataSubmissionEnabled": false,
  "datareporting.healthreport.uploadEnabled": false,
  "toolkit.telemetry.enabled": false,
  "browser.safebrowsing.malware.enabled": false,
  "browser.safebrowsing.phishing.enabled": false,
  "browser.safebrowsing.downloads.enabled": false,
  "network.captive-portal-service.enabled": false,
  "network.connectivity-service.enabled": false,
  "services.settings.server": "",
  "browser.region.network.url": "",
  "browser.shell.checkDefaultBrowser": false,
};
const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: process.env.FIREFOX || "/usr/bin/firefox-esr",
  headless: true,
  userDataDir: mkdtempSync(join(tmpdir(), "peercall-firefox-")),
  extraPrefsFirefox: prefs,
});
await serve({ newPage: () => browser.newPage(), close: () => browser.close() });
