//! Firefox as a tested peer: Debian's Firefox ESR, headless, driven by puppeteer-core over WebDriver
//! BiDi (tests/browser/firefox.mjs), on the page our real `peercall-server` serves, calling and
//! called by the headless `peercall` binary, another Firefox and Chromium.
//!
//! Firefox gathers no ICE candidates in a namespace with only `lo`, so each side runs in its own
//! namespace on a TEST-NET veth link with a default route into it (tests/common/testnet.rs): the
//! server and the Firefox under test in `a`, its peers (engine, second Firefox, Chromium) in `b`.
//! One test, one set of browsers: launching them takes seconds, the calls between them less.
//! Needs root, `ip`, Firefox ESR, Chromium and the drivers (`make test-deps`); without them the
//! test says why and passes without running.

mod common;

use common::browser::{chromium_unavailable, firefox_unavailable, Browser};
use common::process::Proc;
use common::testnet::{self, Namespace, TestNet};
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

/// The figures of an engine stats line this test checks.
#[derive(Debug)]
struct EngineStats {
    fps_in: f64,
    size_in: Option<(u64, u64)>,
    codecs: String,
}

/// `stats: out .. | in 30 fps 700 kbit/s 640x480 | ... | codec out VP8 in VP8` → its figures.
fn engine_stats(line: &str) -> Option<EngineStats> {
    let rest = line.strip_prefix("stats: ")?;
    let inbound: Vec<&str> = rest.split(" | in ").nth(1)?.split(" | ").next()?.split_whitespace().collect();
    let size_in = inbound.get(4).and_then(|s| {
        let (w, h) = s.split_once('x')?;
        Some((w.parse().ok()?, h.parse().ok()?))
    });
    Some(EngineStats {
        fps_in: inbound.first()?.parse().ok()?,
        size_in,
        // Up to the next field: the loss-recovery figures follow the codecs.
        codecs: rest.split(" | codec ").nth(1)?.split(" | ").next()?.to_owned(),
    })
}

/// Waits for an engine stats line showing video coming in at the size `page` sends (Firefox starts
/// at 320x240 from its 640x480 camera and steps up as its bandwidth estimate grows, so each stats
/// line, one a second, is compared with the page's stats taken as it arrives); returns its figures.
async fn engine_receives_the_page(engine: &Proc, browser: &mut Browser, page: &str) -> EngineStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let since = Instant::now();
        let fresh = loop {
            if let Some(s) = engine.lines_since(since).iter().find_map(|l| engine_stats(l)) {
                break s;
            }
            assert!(since.elapsed() < Duration::from_secs(3), "no stats line: {:#?}", engine.all_lines());
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let s = browser.stats(page).await;
        let sent = (s["sendWidth"].as_u64().unwrap_or(0), s["sendHeight"].as_u64().unwrap_or(0));
        if fresh.fps_in > 0.0 && fresh.size_in == Some(sent) {
            return fresh;
        }
        assert!(Instant::now() < deadline, "the engine does not receive {page}'s {sent:?} video: {fresh:?}");
    }
}

/// The headless engine in `ns`, binding that namespace's address, with the test pattern at 640x480.
fn engine(ns: &Namespace, server: &str, name: &str, role: &[&str]) -> Proc {
    let bind = format!("{}:0", ns.addr);
    let mut args =
        vec!["--headless", "--name", name, "--server", server, "--bind", &bind, "--video", "640x480@30"];
    args.extend_from_slice(role);
    Proc::start(&ns.name, env!("CARGO_BIN_EXE_peercall"), &args)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Checks the page sends and receives VP8 and prints what it receives.
async fn page_on_vp8(browser: &mut Browser, page: &str) -> serde_json::Value {
    let s = browser.wait_decoding(page, 0).await;
    assert_eq!(s["codec"], "video/VP8", "{page} decodes VP8: {s}");
    assert_eq!(s["sendCodec"], "video/VP8", "{page} sends VP8: {s}");
    s
}

/// Firefox and the headless engine call each other through our server and its page, and Firefox
/// calls Firefox and Chromium and is called by Chromium: every call runs on VP8 (an offline Firefox
/// has no H.264), content is checked on both sides where we know it (our pattern), hang-ups from
/// each side end the call on the other. Prints setup times (click to the far side's first picture).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_calls_and_is_called_through_our_server() {
    // Only what a test cannot install (root, namespaces) skips; a missing browser or driver is a
    // failure that says what to install, as `browser.rs` does, so no run loses Firefox silently.
    if let Some(why) = testnet::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    if let Some(missing) = firefox_unavailable().or_else(chromium_unavailable) {
        panic!("{missing}");
    }
    let test_started = Instant::now();
    // Declared first, dropped last: the browsers and the server leave the namespaces before they go.
    let net = TestNet::new("ff").expect("TEST-NET namespaces");
    let _server = ServerProcess::start(&net.a);
    let origin = format!("http://{}:{PORT}", net.a.addr);
    let ws = format!("ws://{}:{PORT}/", net.a.addr);
    let page = |name: &str, auto_answer: bool| {
        let extra = if auto_answer { "&autoanswer=1" } else { "" };
        format!("{origin}/?name={name}{extra}")
    };
    let (mut fox, mut fox2, mut chrome) = tokio::join!(
        Browser::firefox(&net.a),
        Browser::firefox(&net.b),
        Browser::chromium_in(&net.b, &origin)
    );
    let launched = test_started.elapsed();
    let opens = ["fox", "fox2", "chrome"].map(|name| format!("open {name} {}", page(name, true)));
    tokio::join!(fox.cmd(&opens[0]), fox2.cmd(&opens[1]), chrome.cmd(&opens[2]));
    let mut figures = Vec::new();

    // 1. The engine calls Firefox (which answers by itself, as MDN's page does). The engine offers
    //    H.264 then VP8; Firefox answers VP8 only, so the engine switches its track and renegotiates.
    let bot = engine(&net.b, &ws, "bot", &["--call", "fox"]);
    let dialled = bot.line_at("calling fox", Duration::from_secs(10)).await;
    let at_page = fox.wait_decoding("fox", 0).await;
    let setup_to_page = dialled.elapsed();
    let first_picture = bot.line_at("video in: first picture", Duration::from_secs(10)).await;
    page_on_vp8(&mut fox, "fox").await;
    assert_eq!((at_page["width"].as_u64(), at_page["height"].as_u64()), (Some(640), Some(480)), "{at_page}");
    let at_page = fox.wait_decoding("fox", 30).await;
    let psnr_firefox = fox.shows_our_pattern("fox").await;
    let audio = |s: &serde_json::Value| s["audioPackets"].as_u64().unwrap_or(0);
    let now = fox.stats("fox").await;
    assert!(audio(&now) > audio(&at_page), "Firefox keeps receiving our audio: {now}");
    let at_engine = engine_receives_the_page(&bot, &mut fox, "fox").await;
    assert_eq!(at_engine.codecs, "out VP8 in VP8", "{at_engine:?}");
    figures.push(("engine → Firefox", setup_to_page, first_picture.duration_since(dialled)));

    // Hang-up from the engine (Ctrl-C: it hangs up, then exits) ends the page's call.
    bot.interrupt();
    fox.wait_call_ended("fox").await;
    assert!(bot.saw("interrupted: hanging up"), "{:#?}", bot.all_lines());

    // 2. Firefox calls the engine, which answers by itself in the caller's order: VP8 both ways.
    let robot = engine(&net.b, &ws, "robot", &["--auto-answer"]);
    robot.line_at("logged in as robot", Duration::from_secs(10)).await;
    let clicked = Instant::now();
    fox.cmd("click-user fox robot").await;
    let first_picture = robot.line_at("video in: first picture", Duration::from_secs(15)).await;
    let setup_to_engine = first_picture.duration_since(clicked);
    page_on_vp8(&mut fox, "fox").await;
    let setup_to_page = clicked.elapsed();
    let at_engine = engine_receives_the_page(&robot, &mut fox, "fox").await;
    assert_eq!(at_engine.codecs, "out VP8 in VP8", "the callee follows Firefox's order: {at_engine:?}");
    fox.wait_decoding("fox", 30).await;
    let psnr_answering = fox.shows_our_pattern("fox").await;
    figures.push(("Firefox → engine", setup_to_engine, setup_to_page));

    // Hang-up from the page ends the engine's call.
    fox.cmd("hangup fox").await;
    robot.line_at("call with fox ended", Duration::from_secs(5)).await;
    fox.wait_call_ended("fox").await;
    drop(robot);

    // 3. Firefox calls Firefox in the other namespace.
    let clicked = Instant::now();
    fox.cmd("click-user fox fox2").await;
    let at_fox2 = page_on_vp8(&mut fox2, "fox2").await;
    let setup_to_fox2 = clicked.elapsed();
    page_on_vp8(&mut fox, "fox").await;
    figures.push(("Firefox → Firefox", setup_to_fox2, clicked.elapsed()));
    fox2.wait_decoding("fox2", 30).await;
    fox.wait_decoding("fox", 30).await;
    print_offer(&mut fox).await;
    eprintln!("Firefox → Firefox: {}x{} at the callee", at_fox2["width"], at_fox2["height"]);
    fox.cmd("hangup fox").await;
    let took = fox2.wait_call_ended("fox2").await;
    assert!(took < Duration::from_secs(2), "fox2's page took {took:?} to end the call");
    fox2.cmd("quit").await;

    // 4. Firefox calls Chromium, then Chromium calls Firefox: VP8 both times (Firefox has nothing
    //    else in common with Chromium offline, and Chromium puts VP8 first).
    for (caller, callee) in [("fox", "chrome"), ("chrome", "fox")] {
        let (from, to) = if caller == "fox" { (&mut fox, &mut chrome) } else { (&mut chrome, &mut fox) };
        let clicked = Instant::now();
        from.cmd(&format!("click-user {caller} {callee}")).await;
        page_on_vp8(to, callee).await;
        let setup_to_callee = clicked.elapsed();
        page_on_vp8(from, caller).await;
        to.wait_decoding(callee, 30).await;
        from.wait_decoding(caller, 30).await;
        let what = if caller == "fox" { "Firefox → Chromium" } else { "Chromium → Firefox" };
        figures.push((what, setup_to_callee, clicked.elapsed()));
        from.cmd(&format!("hangup {caller}")).await;
        to.wait_call_ended(callee).await;
    }

    eprintln!("\n| call (all VP8) | setup: click → callee's first picture | → caller's first picture |");
    eprintln!("|---|---|---|");
    for (what, to_callee, to_caller) in &figures {
        eprintln!("| {what} | {} | {} |", ms(*to_callee), ms(*to_caller));
    }
    eprintln!(
        "grabs of the engine's pattern in Firefox: {:.1} / {:.1} dB (engine calling), {:.1} / {:.1} dB \
         (engine answering); the next frame's pattern scores {:.1} / {:.1} dB against them",
        psnr_firefox[0],
        psnr_firefox[1],
        psnr_answering[0],
        psnr_answering[1],
        psnr_firefox[2],
        psnr_answering[2]
    );
    eprintln!("browsers launched in {}; test took {}", ms(launched), ms(test_started.elapsed()));
    tokio::join!(fox.cmd("quit"), chrome.cmd("quit"));
}

/// Prints the video section of Firefox's offer, and checks it has VP8 and no H.264.
async fn print_offer(fox: &mut Browser) {
    let sdp = fox.cmd("sdp fox").await;
    let local = sdp["local"].as_str().unwrap_or_default();
    let (m_line, codecs) = video_section(local);
    eprintln!("Firefox's offer: {m_line}");
    for codec in &codecs {
        eprintln!("  a=rtpmap:{codec}");
    }
    assert!(codecs.iter().any(|c| c.contains("VP8/90000")), "Firefox offers VP8: {codecs:?}");
    assert!(!codecs.iter().any(|c| c.contains("H264")), "offline Firefox has no H.264 plugin: {codecs:?}");
}
