//! A real browser driven line by line: headless Chromium (playwright-core, tests/browser/driver.mjs)
//! or Firefox ESR (puppeteer-core over WebDriver BiDi, tests/browser/firefox.mjs), both speaking the
//! protocol in tests/browser/commands.mjs, each with any number of pages.

use super::testnet::Namespace;
use super::within;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use peercall::media::frame::RgbaFrame;
use peercall::media::pattern::{psnr_luma, read_stamp, render, Stamp};
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

const DRIVERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");

/// One browser process and its driver.
pub struct Browser {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// Why the Firefox tests can't run here, if they can't.
pub fn firefox_unavailable() -> Option<String> {
    if !Path::new("/usr/bin/firefox-esr").exists() {
        return Some("Firefox ESR is missing: run `make test-deps` (scripts/install-deps.sh test)".into());
    }
    if !Path::new(&format!("{DRIVERS}/node_modules/puppeteer-core")).exists() {
        return Some("puppeteer-core is missing: run `make test-deps` (scripts/install-deps.sh test)".into());
    }
    None
}

/// A canvas grab of a page's video against our pattern redrawn for the stamp it carries (luma PSNR).
/// Measured here with the engine sending 640x480: 62–65 dB in Chromium (H.264 and VP8) and in
/// Firefox (VP8): the browsers decode the flat pattern almost losslessly and convert colours as we
/// do. The pattern one frame later (bars scroll 4 px, the square moves 6 px) scores 18–22 dB against
/// the same grab, and H.264 shown with the wrong colour matrix (untagged, before the encoder said
/// BT.601) scored 28 dB: 40 dB passes every right frame with 20 dB to spare and fails both of those.
pub const MIN_GRAB_PSNR_DB: f64 = 40.0;

/// Why the Chromium tests can't run here, if they can't.
pub fn chromium_unavailable() -> Option<String> {
    if !Path::new("/usr/bin/chromium").exists()
        || !Path::new(&format!("{DRIVERS}/node_modules/playwright-core")).exists()
    {
        return Some(
            "Chromium or playwright-core is missing: run `make test-deps` (scripts/install-deps.sh test)"
                .into(),
        );
    }
    None
}

impl Browser {
    /// Headless Chromium in this process's network namespace.
    pub async fn chromium() -> Browser {
        assert!(chromium_unavailable().is_none(), "{}", chromium_unavailable().unwrap_or_default());
        Self::spawn(tokio::process::Command::new("node"), "driver.mjs", &[])
    }

    /// Headless Chromium inside `ns`, for pages from `origin` (plain http on a TEST-NET address is
    /// not a secure context, and getUserMedia wants one); it is up once this returns.
    pub async fn chromium_in(ns: &Namespace, origin: &str) -> Browser {
        assert!(chromium_unavailable().is_none(), "{}", chromium_unavailable().unwrap_or_default());
        let flag = format!("--unsafely-treat-insecure-origin-as-secure={origin}");
        let mut browser = Self::spawn(ns.tokio_command("node"), "driver.mjs", &[&flag]);
        browser.wait_up().await;
        browser
    }

    /// Headless Firefox ESR inside `ns` (see [`firefox_unavailable`]); it is up once this returns.
    pub async fn firefox(ns: &Namespace) -> Browser {
        let mut browser = Self::spawn(ns.tokio_command("node"), "firefox.mjs", &[]);
        browser.wait_up().await;
        browser
    }

    /// Launching takes seconds; a first command that answers says the browser is up.
    async fn wait_up(&mut self) {
        let answer = self.send("stats none", 60).await;
        assert!(answer["error"].as_str().is_some_and(|e| e.contains("no page")), "driver answered {answer}");
    }

    fn spawn(mut node: tokio::process::Command, script: &str, flags: &[&str]) -> Browser {
        let mut child = node
            .arg(script)
            .args(flags)
            .current_dir(DRIVERS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts (install it with `make test-deps`)");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Browser { _child: child, stdin, stdout }
    }

    async fn send(&mut self, line: &str, secs: u64) -> Value {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.expect("driver alive");
        let answer = within(secs, &format!("the browser to do `{line}`"), self.stdout.next_line())
            .await
            .expect("driver output")
            .expect("driver answered");
        serde_json::from_str(&answer).expect("driver speaks JSON")
    }

    /// Runs one command; fails the test if the driver reports an error.
    pub async fn cmd(&mut self, line: &str) -> Value {
        let value = self.send(line, 30).await;
        assert_eq!(value["ok"], true, "`{line}` failed: {value}");
        value
    }

    /// The page's call statistics.
    pub async fn stats(&mut self, page: &str) -> Value {
        self.cmd(&format!("stats {page}")).await
    }

    /// The page's remote `<video>` as drawn into a canvas (the next frame the browser presents).
    pub async fn grab(&mut self, page: &str) -> RgbaFrame {
        let answer = self.cmd(&format!("grab {page}")).await;
        let size = |key: &str| answer[key].as_u64().unwrap_or(0) as usize;
        let (width, height) = (size("width"), size("height"));
        let pixels = BASE64.decode(answer["rgba"].as_str().unwrap_or_default()).expect("the grab is base64");
        assert_eq!(pixels.len(), width * height * 4, "a grab of {width}x{height} holds RGBA for each pixel");
        RgbaFrame::new(width, height, pixels, Duration::ZERO)
    }

    /// Grabs the page's video twice and checks each grab is our stamped pattern (the stamp reads,
    /// the picture matches the pattern redrawn for that stamp to better than [`MIN_GRAB_PSNR_DB`]) and that
    /// the second is a later frame. Returns the PSNRs of the two grabs and, for scale, that of the
    /// first grab against the pattern one frame later (what a wrong frame scores).
    pub async fn shows_our_pattern(&mut self, page: &str) -> [f64; 3] {
        let mut seen = Vec::new();
        let mut neighbour = 0.0;
        for _ in 0..2 {
            let frame = self.grab(page).await;
            let stamp = read_stamp(&frame)
                .unwrap_or_else(|| panic!("{page}: no stamp in a {}x{} grab", frame.width, frame.height));
            let psnr = psnr_luma(&frame, &render(stamp, frame.width, frame.height));
            assert!(
                psnr > MIN_GRAB_PSNR_DB,
                "{page}: frame {} is {psnr:.1} dB from the pattern",
                stamp.frame_no
            );
            if seen.is_empty() {
                let next = Stamp { frame_no: stamp.frame_no + 1, ..stamp };
                neighbour = psnr_luma(&frame, &render(next, frame.width, frame.height));
            }
            seen.push((stamp.frame_no, psnr));
        }
        assert!(seen[0].0 < seen[1].0, "{page}: the frame numbers of two grabs rise: {seen:?}");
        [seen[0].1, seen[1].1, neighbour]
    }

    /// Waits until `page` has decoded more than `frames` video frames and received some audio.
    pub async fn wait_decoding(&mut self, page: &str, frames: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.stats(page).await;
            // Firefox reports no audio samples, only packets.
            let audio = s["audioSamples"].as_u64().unwrap_or(0).max(s["audioPackets"].as_u64().unwrap_or(0));
            if s["framesDecoded"].as_u64().unwrap_or(0) > frames && audio > 0 {
                return s;
            }
            assert!(Instant::now() < deadline, "{page} does not decode: {s}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `page` is out of its call.
    pub async fn wait_call_ended(&mut self, page: &str) -> Duration {
        let started = Instant::now();
        loop {
            if self.stats(page).await["inCall"] == false {
                return started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(5), "{page} is still in the call");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
