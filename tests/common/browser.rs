//! A real browser driven line by line: headless Chromium (playwright-core, tests/browser/driver.mjs)
//! or Firefox ESR (puppeteer-core over WebDriver BiDi, tests/browser/firefox.mjs), both speaking the
//! protocol in tests/browser/commands.mjs, each with any number of pages.

use super::testnet::Namespace;
use super::within;
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

impl Browser {
    /// Headless Chromium in this process's network namespace.
    pub async fn chromium() -> Browser {
        assert!(
            Path::new("/usr/bin/chromium").exists()
                && Path::new(&format!("{DRIVERS}/node_modules/playwright-core")).exists(),
            "Chromium or playwright-core is missing: run `make test-deps` (scripts/install-deps.sh test)"
        );
        Self::spawn(tokio::process::Command::new("node"), "driver.mjs")
    }

    /// Headless Chromium inside `ns`, serving pages from `origin` (`http://192.0.2.1:8088`), which it
    /// is told to treat as a secure context (getUserMedia needs one).
    pub async fn chromium_in(ns: &Namespace, origin: &str) -> Browser {
        let mut node = ns.tokio_command("node");
        node.env("CHROMIUM_FLAGS", format!("--unsafely-treat-insecure-origin-as-secure={origin}"));
        Self::spawn(node, "driver.mjs").up().await
    }

    /// Headless Firefox ESR inside `ns` (see [`firefox_unavailable`]); it is up once this returns.
    pub async fn firefox(ns: &Namespace) -> Browser {
        Self::spawn(ns.tokio_command("node"), "firefox.mjs").up().await
    }

    /// Waits until the browser has launched (seconds): the driver answers only then.
    async fn up(mut self) -> Browser {
        let answer = self.send("stats none", 60).await;
        assert!(answer["error"].as_str().is_some_and(|e| e.contains("no page")), "driver answered {answer}");
        self
    }

    fn spawn(mut node: tokio::process::Command, script: &str) -> Browser {
        let mut child = node
            .arg(script)
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
