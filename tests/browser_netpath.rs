//! Chromium and the engine over an emulated lossy internet path (issue 12): loss recovery works
//! with a browser both ways — the engine asks Chromium for lost packets (NACK) and Chromium answers
//! with RTX that fills the holes, Chromium asks the engine and gets RTX back — and the picture
//! Chromium shows is still our pattern. The server and the engine sit in namespace A, Chromium in B,
//! 25 ms each way with bursty loss (Gilbert-Elliott, ~3 % in bursts of ~3; `peercall::link_emulator`).
//! (On the 5 % random-loss link the engine's loss-based rate controller — issue 13 replaces it —
//! read a report over 10 % as congestion and halved the picture for good, which hides the stamp.)
//!
//! Needs root and `/dev/net/tun` (otherwise it says why and passes without running) and Chromium
//! (`make test-deps`; a missing browser is a failure, as in `browser.rs`).

mod common;

use common::browser::{chromium_unavailable, Browser};
use common::process::Proc;
use common::testnet::Namespace;
use peercall::call::quality::QualitySummary;
use peercall::link_emulator::{self, cases, Link, LinkConfig};
use std::time::{Duration, Instant};

/// Port of the server inside namespace A.
const PORT: u16 = 6507;

/// The loss-recovery figures of an engine stats line: `rtx sent P pkts K kB | rtx in N repaired M`.
fn rtx_figures(line: &str) -> Option<(u64, u64)> {
    let after =
        |key: &str| -> Option<u64> { line.split(key).nth(1)?.split_whitespace().next()?.parse().ok() };
    Some((after("| rtx sent ")?, after(" repaired ")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_and_the_engine_repair_loss_with_rtx_both_ways() {
    if let Some(why) = link_emulator::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    if let Some(missing) = chromium_unavailable() {
        panic!("{missing}");
    }
    let case = cases::pick(cases::issue_12(Duration::from_secs(4)), &["bursty".to_owned()])
        .expect("the bursty loss case")
        .remove(0);
    // Declared first, dropped last: the processes leave the namespaces before they go.
    let link = Link::new("bn", LinkConfig::symmetric(case.path.clone())).expect("the emulated link");
    let (a, b) = (link.a(), link.b());
    let ns_b = Namespace { name: b.namespace().to_owned(), addr: b.addr() };
    let listen = format!("{}:{PORT}", a.addr());
    let _server = Proc::start(a.namespace(), env!("CARGO_BIN_EXE_peercall-server"), &["--listen", &listen]);
    let origin = format!("http://{listen}");
    let ws = format!("ws://{listen}/");
    let bind = format!("{}:0", a.addr());
    let robot = Proc::start(
        a.namespace(),
        env!("CARGO_BIN_EXE_peercall"),
        &[
            "--headless",
            "--name",
            "robot",
            "--auto-answer",
            "--server",
            &ws,
            "--bind",
            &bind,
            "--video",
            "320x240@30",
        ],
    );
    robot.wait_for("logged in as robot", Duration::from_secs(15));
    let mut chrome = Browser::chromium_in(&ns_b, &origin).await;
    chrome.cmd(&format!("open chrome {origin}/?name=chrome")).await;
    let clicked = Instant::now();
    chrome.cmd("click-user chrome robot").await;
    robot.wait_for("video in: first picture", Duration::from_secs(20));
    let setup = clicked.elapsed();
    chrome.wait_decoding("chrome", 30).await;

    // 12 s of call over the lossy path.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let page = chrome.stats("chrome").await;
    // Content: what Chromium shows is our pattern (PSNR against it redrawn for the stamp it
    // carries), after all that loss. The stamp reads at the size it was drawn, so the picture must
    // arrive whole: the engine sends 320x240 (on a loaded machine its 640x480 sometimes dropped to
    // half size for good under the loss-based rate controller that issue 13 replaces), and a
    // picture shrunk for a while gets 15 s to come back. The link's loss is seeded: the same packets
    // go missing each run, 6-10 of Chromium's and 11-16 of ours in the runs so far.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = chrome.stats("chrome").await;
        if s["width"].as_u64() == Some(320) {
            break;
        }
        let (w, h) = (&s["width"], &s["height"]);
        assert!(Instant::now() < deadline, "Chromium's picture stayed at {w}x{h} for 15 s: {s}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let psnr = chrome.shows_our_pattern("chrome").await;
    let last_stats =
        robot.all_lines().into_iter().rev().find(|l| l.starts_with("stats: ")).unwrap_or_default();
    let (rtx_sent, repaired) =
        rtx_figures(&last_stats).unwrap_or_else(|| panic!("no rtx figures in {last_stats}"));
    chrome.cmd("hangup chrome").await;
    robot.wait_for("summary: ", Duration::from_secs(10));
    let summary_line = robot.all_lines().into_iter().find(|l| l.starts_with("summary: ")).unwrap_or_default();
    let at_engine = QualitySummary::parse(&summary_line).unwrap_or_else(|e| panic!("{e}: {summary_line}"));
    let n = |key: &str| page[key].as_f64().unwrap_or(0.0);
    eprintln!(
        "{}: setup (click → engine's first picture) {:.0} ms\n  engine receives: {at_engine}\n  \
         engine: rtx sent {rtx_sent} packets, Chromium's RTX filled {repaired} holes\n  Chromium: \
         NACKed {} packets, got {} back as RTX, lost {}, {} freezes ({:.2} s), {}x{} {} fps\n  \
         Chromium's picture vs our pattern: {:.1} dB",
        case.label,
        setup.as_secs_f64() * 1000.0,
        n("nackSent"),
        n("rtxReceived"),
        n("packetsLost"),
        n("freezes"),
        n("freezeSeconds"),
        n("width"),
        n("height"),
        n("framesPerSecond"),
        psnr[0],
    );
    // The engine → Chromium direction: Chromium asked, and we retransmitted (as RTX: Chromium
    // counts it received as a retransmission).
    assert!(n("nackSent") > 0.0, "5 % loss and Chromium never asked for a packet: {page}");
    assert!(rtx_sent > 0, "Chromium asked and the engine sent nothing again: {last_stats}");
    assert!(n("rtxReceived") > 0.0, "Chromium received no RTX from the engine: {page}");
    // Chromium → engine: the engine asked, Chromium answered with RTX, and it filled holes.
    assert!(repaired > 0, "no hole of Chromium's stream repaired by its RTX: {last_stats}");
    // Measured (load ~9, four runs): the engine showed 19.3-20.0 fps of Chromium's 640x480 (its fake
    // camera sends ~20), 1-3 freezes in 13 s, the longest 154-435 ms (Chromium counted 0-1 of ours); the
    // bounds allow a loaded machine's spread, and fail when repairs stop (a keyframe recovery per
    // lost packet: freezes of 300 ms and more, several a second).
    assert!(at_engine.fps >= 10.0, "the engine's picture from Chromium: {at_engine}");
    assert!(
        at_engine.freezes <= 12 && at_engine.longest_freeze_ms <= 1000.0,
        "the engine's picture from Chromium froze: {at_engine}"
    );
    chrome.cmd("quit").await;
}
