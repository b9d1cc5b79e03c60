//! Firefox as a tested peer: Debian's Firefox ESR, headless, driven by puppeteer-core over WebDriver
//! BiDi (tests/browser/firefox.mjs), on the page our real `peercall-server` serves.
//!
//! Firefox gathers no ICE candidates in a namespace with only `lo`, so each side runs in its own
//! namespace on a TEST-NET veth link with a default route into it (tests/common/testnet.rs).
//! Needs root, `ip`, Firefox ESR and puppeteer-core (`make test-deps`); without them the test says
//! why and passes without running.

mod common;

use common::browser::{firefox_unavailable, Browser};
use common::testnet::{self, TestNet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Port of the server inside its namespace (nothing else listens there).
const PORT: u16 = 8088;

/// `peercall-server` inside a namespace; killed on drop.
struct ServerProcess(Child);

impl ServerProcess {
    fn start(ns: &testnet::Namespace) -> ServerProcess {
        let mut child = ns
            .command(env!("CARGO_BIN_EXE_peercall-server"))
            .args(["--listen", &format!("{}:{PORT}", ns.addr)])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("peercall-server starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        // It says so once its socket is bound; the rest of its log is drained so it never blocks.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("listening") => break,
                Some(Ok(_)) => {}
                _ => panic!("peercall-server ended before it listened"),
            }
            assert!(Instant::now() < deadline, "peercall-server did not listen within 10 s");
        }
        std::thread::spawn(move || lines.for_each(drop));
        ServerProcess(child)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `m=video` line of an SDP and the video codecs it names (`a=rtpmap` lines of its section).
fn video_section(sdp: &str) -> (String, Vec<String>) {
    let mut m_line = String::new();
    let mut codecs = Vec::new();
    let mut in_video = false;
    for line in sdp.lines() {
        if line.starts_with("m=") {
            in_video = line.starts_with("m=video");
            if in_video {
                m_line = line.to_owned();
            }
        } else if in_video {
            if let Some(map) = line.strip_prefix("a=rtpmap:") {
                codecs.push(map.to_owned());
            }
        }
    }
    (m_line, codecs)
}

/// Firefox calls Firefox through our server and its page: both decode video, and the call runs on VP8
/// (an offline Firefox has no H.264); then Chromium calls Firefox, on VP8 too. Prints what each
/// browser offers and the setup times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_and_chromium_call_firefox_through_our_server() {
    if let Some(why) = testnet::unavailable().or_else(firefox_unavailable) {
        eprintln!("skipped: {why}");
        return;
    }
    // Declared first, dropped last: the browsers and the server leave the namespaces before they go.
    let net = TestNet::new("ff").expect("TEST-NET namespaces");
    let _server = ServerProcess::start(&net.a);
    let page = |name: &str, auto_answer: bool| {
        let extra = if auto_answer { "&autoanswer=1" } else { "" };
        format!("http://{}:{PORT}/?name={name}{extra}", net.a.addr)
    };
    let (mut alice, mut bob) = tokio::join!(Browser::firefox(&net.a), Browser::firefox(&net.b));
    alice.cmd(&format!("open alice {}", page("alice", false))).await;
    bob.cmd(&format!("open bob {}", page("bob", true))).await;

    let started = Instant::now();
    alice.cmd("click-user alice bob").await;
    let at_bob = bob.wait_decoding("bob", 0).await;
    let at_alice = alice.wait_decoding("alice", 0).await;
    let setup = started.elapsed();
    for (who, s) in [("bob", &at_bob), ("alice", &at_alice)] {
        assert_eq!(s["codec"], "video/VP8", "{who} decodes VP8: {s}");
    }
    let at_bob = bob.wait_decoding("bob", 30).await;
    let at_alice = alice.wait_decoding("alice", 30).await;

    let sdp = alice.cmd("sdp alice").await;
    let (m_line, codecs) = video_section(sdp["local"].as_str().unwrap_or_default());
    eprintln!("Firefox's offer: {m_line}");
    for codec in &codecs {
        eprintln!("  a=rtpmap:{codec}");
    }
    let fmtp: Vec<&str> =
        sdp["local"].as_str().unwrap_or_default().lines().filter(|l| l.starts_with("a=fmtp:")).collect();
    eprintln!("  {}", fmtp.join("\n  "));
    assert!(codecs.iter().any(|c| c.contains("VP8/90000")), "Firefox offers VP8: {codecs:?}");
    assert!(!codecs.iter().any(|c| c.contains("H264")), "offline Firefox has no H.264 plugin: {codecs:?}");
    eprintln!(
        "Firefox ↔ Firefox on TEST-NET: setup {:.0} ms (click to both decoding); {}x{} at bob, {}x{} at alice",
        setup.as_secs_f64() * 1000.0,
        at_bob["width"],
        at_bob["height"],
        at_alice["width"],
        at_alice["height"]
    );

    alice.cmd("hangup alice").await;
    let took = bob.wait_call_ended("bob").await;
    assert!(took < Duration::from_secs(2), "bob's page took {took:?} to end the call");

    // Chromium (in the other namespace) calls Firefox: it offers VP8 first, and the call runs on it.
    let origin = format!("http://{}:{PORT}", net.a.addr);
    let mut chromium = Browser::chromium_in(&net.b, &origin).await;
    alice.cmd(&format!("open ann {}", page("ann", true))).await;
    chromium.cmd(&format!("open carol {}", page("carol", false))).await;
    let started = Instant::now();
    chromium.cmd("click-user carol ann").await;
    let at_ann = alice.wait_decoding("ann", 30).await;
    let at_carol = chromium.wait_decoding("carol", 30).await;
    let setup = started.elapsed();
    assert_eq!(at_ann["codec"], "video/VP8", "Firefox decodes Chromium's VP8: {at_ann}");
    assert_eq!(at_carol["codec"], "video/VP8", "Chromium decodes Firefox's VP8: {at_carol}");
    let offer = chromium.cmd("sdp carol").await;
    let (m_line, codecs) = video_section(offer["local"].as_str().unwrap_or_default());
    assert!(codecs.first().is_some_and(|c| c.contains("VP8/90000")), "Chromium offers VP8 first: {codecs:?}");
    eprintln!("Chromium's offer: {m_line} (first: {})", codecs[0]);
    eprintln!(
        "Chromium → Firefox: click to 30 frames decoded on both sides in {:.0} ms",
        setup.as_secs_f64() * 1000.0
    );
    chromium.cmd("hangup carol").await;
    alice.wait_call_ended("ann").await;
    tokio::join!(alice.cmd("quit"), bob.cmd("quit"), chromium.cmd("quit"));
}
