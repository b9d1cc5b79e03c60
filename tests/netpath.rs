//! Calls over emulated internet paths (issue 12): `peercall --headless` ↔ `peercall --headless`
//! through `peercall::link_emulator` (two namespaces joined by TUN devices: delay, jitter,
//! reordering, random and bursty loss, an outage, a bottleneck), ~12 s each, real engines, and the
//! receivers' `summary:` figures checked: pictures arrive with intact stamps, in order, the frame
//! number advances, and fps / freezes / latency / size stay within what today's code reliably does.
//!
//! The bounds are today's, from measured runs (noted beside each; debug build, a shared 2-core
//! machine at load 7–9), with room for that machine's spread: they catch a regression, not a miss
//! of issue 12's targets, and tighten as loss recovery improves. `net-bench` prints the figures.
//!
//! Needs root and `/dev/net/tun` (otherwise each test says why and passes without running). One
//! call at a time: two calls coding video at once on 2 cores would measure each other.

use peercall::call::quality::QualitySummary;
use peercall::link_emulator::cases::{self, LinkCase};
use peercall::link_emulator::headless_call::{self, CallPlan, CallRun, Programs};
use peercall::link_emulator::{self, DirectionCounters};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

static SERIAL: Mutex<()> = Mutex::new(());

/// Seconds in each call.
const SECONDS: f64 = 12.0;

/// What a receiver must at least do on a link.
struct Bounds {
    /// Pictures a second, at least.
    fps: f64,
    /// Freezes, at most.
    freezes: u64,
    /// The longest freeze, ms, at most.
    longest_freeze_ms: f64,
    /// Glass-to-glass p95, ms, at most.
    g2g_p95_ms: f64,
    /// Share of pictures at 640x480, at least.
    size_held: f64,
    /// How far the frame number must advance, as a share of 30 a second.
    advance: f64,
    /// Click to the caller's first picture, ms, at most.
    setup_ms: f64,
    /// Share of pictures without an intact stamp, at most.
    unstamped: f64,
}

/// Places the call of link `name`, prints both receivers' figures and checks them against `bounds`;
/// returns the run for a test's own checks.
fn call_over(name: &str, bounds: Bounds) -> Option<CallRun> {
    if let Some(why) = link_emulator::unavailable() {
        eprintln!("skipped: {why}");
        return None;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // The outage comes 4 s after the caller's first picture, leaving ~7 s of call after it.
    let case: LinkCase = cases::pick(cases::issue_12(Duration::from_secs(4)), &[name.to_owned()])
        .expect("a case of issue 12")
        .remove(0);
    let programs = Programs {
        peercall: env!("CARGO_BIN_EXE_peercall").into(),
        server: env!("CARGO_BIN_EXE_peercall-server").into(),
    };
    let plan = CallPlan {
        seconds: SECONDS,
        video: "640x480@30".into(),
        peer_args: Vec::new(),
        setup_limit: Duration::from_secs(20),
    };
    let run = place("np", &case, &programs, &plan);
    check_both(&case, &run, &bounds);
    Some(run)
}

/// Places the call and prints both receivers' figures.
fn place(tag: &str, case: &LinkCase, programs: &Programs, plan: &CallPlan) -> CallRun {
    let run = headless_call::run(tag, case, programs, plan).unwrap_or_else(|e| panic!("{}: {e}", case.label));
    let drops = |d: &DirectionCounters| d.path.dropped();
    eprintln!(
        "{}: link dropped {} A→B, {} B→A\n  caller: {}\n  callee: {}",
        case.label,
        drops(&run.counters.a_to_b),
        drops(&run.counters.b_to_a),
        run.caller,
        run.callee
    );
    run
}

/// Checks both receivers' figures against `bounds`.
fn check_both(case: &LinkCase, run: &CallRun, bounds: &Bounds) {
    for (who, s, lines) in
        [("caller", &run.caller, &run.caller_lines), ("callee", &run.callee, &run.callee_lines)]
    {
        check(&format!("{}, {who}", case.label), s, bounds, lines);
    }
}

fn check(what: &str, s: &QualitySummary, b: &Bounds, lines: &[String]) {
    let fail = |why: String| -> ! { panic!("{what}: {why}\n{s}\n{lines:#?}") };
    // Content: every picture carries an intact stamp (a damaged or foreign picture would not), they
    // come in order, and the frame number advances with the call.
    if s.frames == 0 || s.stamped == 0 {
        fail("no pictures".into());
    }
    if s.unstamped as f64 > s.frames as f64 * b.unstamped {
        fail(format!("{} of {} pictures without an intact stamp", s.unstamped, s.frames));
    }
    if s.backwards > 0 {
        fail(format!("{} pictures out of order", s.backwards));
    }
    let advanced = s.last_frame_no.unwrap_or(0) as f64;
    if advanced < s.seconds * 30.0 * b.advance {
        fail(format!("the frame number reached {advanced} in {:.1} s", s.seconds));
    }
    if s.fps < b.fps {
        fail(format!("{:.1} fps (at least {})", s.fps, b.fps));
    }
    if s.freezes > b.freezes || s.longest_freeze_ms > b.longest_freeze_ms {
        fail(format!(
            "{} freezes, longest {:.0} ms (at most {} and {} ms)",
            s.freezes, s.longest_freeze_ms, b.freezes, b.longest_freeze_ms
        ));
    }
    match s.g2g_p95_ms {
        Some(p95) if p95 <= b.g2g_p95_ms => {}
        other => fail(format!("glass-to-glass p95 {other:?} ms (at most {})", b.g2g_p95_ms)),
    }
    // The far side's audio played through the paced playout: its buffer stayed under its 300 ms cap
    // and the 60 ms of headroom above it (measured p95 50-100 ms; dry 0-4 times in 12 s).
    match s.audio_p95_ms {
        Some(p95) if p95 <= 360.0 => {}
        other => fail(format!("audio playout depth p95 {other:?} ms (at most 360)")),
    }
    // Measured 382–2009 ms from the click to the caller's first picture on issue 12's links.
    if s.setup_ms.is_some_and(|ms| ms > b.setup_ms) {
        fail(format!("setup took {:?} ms (at most {})", s.setup_ms, b.setup_ms));
    }
    if s.size_held.unwrap_or(0.0) < b.size_held {
        fail(format!("picture at 640x480 {:?} of the time (at least {})", s.size_held, b.size_held));
    }
}

// Measured (caller / callee, two runs each, debug build, load 6-8 from other builds on the 2 cores),
// with the playout clock, two repair rounds and RTX; the bounds leave about twice the measured
// spread, so a regression of the recovery (keyframe recoveries instead of repairs, frames shown
// as they come instead of at pace) fails them. `net-bench` prints the 45 s figures (README).

#[test]
fn a_clean_25_ms_link() {
    // 30.0-30.1 fps, no freeze, g2g p95 55-57 ms, 640x480 throughout; but in a full test run at
    // load 9-11 (three other builds) 26.8 / 27.8 fps, 7 / 6 freezes of up to 358 ms and p95 724 /
    // 579 ms, with RTT p95 324 ms on a 50 ms path: the CPU starved, not the link. The bounds take
    // that machine; the lossy links below are where recovery shows.
    call_over(
        "clean",
        Bounds {
            fps: 20.0,
            freezes: 10,
            longest_freeze_ms: 800.0,
            g2g_p95_ms: 1000.0,
            size_held: 0.95,
            advance: 0.5,
            setup_ms: 5000.0,
            unstamped: 0.02,
        },
    );
}

#[test]
fn jitter_with_reordering_and_5_percent_loss() {
    // 28.4-30.1 fps, 1-3 freezes, longest 188-365 ms, p95 194-207 ms (50 ms + one repair round of
    // playout delay), size 100 %.
    call_over(
        "reorder5",
        Bounds {
            fps: 22.0,
            freezes: 6,
            longest_freeze_ms: 800.0,
            g2g_p95_ms: 450.0,
            size_held: 0.9,
            advance: 0.5,
            setup_ms: 5000.0,
            unstamped: 0.02,
        },
    );
}

#[test]
fn bursty_loss() {
    // 29.8-30.0 fps, 0-1 freeze (162 ms), p95 50-58 ms, size 100 %.
    call_over(
        "bursty",
        Bounds {
            fps: 24.0,
            freezes: 4,
            longest_freeze_ms: 600.0,
            g2g_p95_ms: 300.0,
            size_held: 0.9,
            advance: 0.5,
            setup_ms: 5000.0,
            unstamped: 0.02,
        },
    );
}

#[test]
fn heavy_jitter_without_reordering() {
    // 30.0 fps, no freeze, p95 90-91 ms (the playout clock covers the jitter), size 100 %.
    call_over(
        "jitter30",
        Bounds {
            fps: 24.0,
            freezes: 3,
            longest_freeze_ms: 500.0,
            g2g_p95_ms: 300.0,
            size_held: 0.95,
            advance: 0.5,
            setup_ms: 5000.0,
            unstamped: 0.02,
        },
    );
}

#[test]
fn jitter_with_reordering_and_10_percent_loss() {
    // 28.7-29.7 fps, 1 freeze (272 / 542 ms), p95 329-338 ms, size 100 %; with one repair round
    // instead of two: 24 fps, 5-6 freezes of ~700 ms. After the merge with congestion control:
    // 26.4-29.0 fps, 1-5 freezes of up to 773 ms, p95 258-280 ms.
    call_over(
        "loss10",
        Bounds {
            fps: 20.0,
            freezes: 6,
            longest_freeze_ms: 1200.0,
            g2g_p95_ms: 600.0,
            // With issue 13's estimator the sender halves the picture for a while on this link:
            // 640x480 held 0.84-0.89 of the time in three runs after the merge (1.0 before it).
            size_held: 0.7,
            advance: 0.5,
            // 1.0-2.8 s mostly; once in ~7 runs (session 11) 5.5 s: rtc-dtls retransmits a lost
            // flight after a fixed 1 s (no shorter first timer from the round trip, as libwebrtc
            // has), and here each of the handshake's four flights is lost 10 % of the time each way.
            setup_ms: 8000.0,
            unstamped: 0.02,
        },
    );
}

#[test]
fn setup_finishes_through_20_percent_loss() {
    // Every handshake flight has a fair chance of being lost here (20 % each way on UDP, the
    // signaling's TCP clean: see the case). Measured: 12 of 12 calls set up, the first picture
    // 1.7-3.9 s after dialling. Not the regression test of the rtc-dtls patch (patches/; that is
    // tests/dtls_retransmit.rs): with the signaling spared, the deadlock it fixes came too rarely to
    // tell apart here (unpatched: 9 of 9 at 20 %, 8 of 9 at 30 %, where the patched crate also lost
    // 1 of 9 to DTLS's fixed 1 s retransmission of multi-datagram flights).
    if let Some(why) = link_emulator::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let case = cases::setup_under_heavy_loss();
    let programs = Programs {
        peercall: env!("CARGO_BIN_EXE_peercall").into(),
        server: env!("CARGO_BIN_EXE_peercall-server").into(),
    };
    let plan = CallPlan {
        seconds: 3.0,
        video: "320x240@15".into(),
        peer_args: Vec::new(),
        setup_limit: Duration::from_secs(20),
    };
    // What is checked is setup: a call that fails says "call failed: could not connect", and one
    // that works reaches "in call". Pictures at 20 % loss are a quality matter (a keyframe may take
    // longer than a 3 s call to get through whole, and a hang-up may be late), so where pictures
    // arrived they must be intact and in order, but a call without one does not fail here.
    let setup_failed = |text: &str| text.contains("call failed:");
    let in_call = |text: &str| text.contains("call: in call with");
    let mut failed = Vec::new();
    for attempt in 1..=3 {
        match headless_call::run("np", &case, &programs, &plan) {
            Ok(run) => {
                let (caller, callee) = (run.caller_lines.join("\n"), run.callee_lines.join("\n"));
                if setup_failed(&caller) || setup_failed(&callee) || !in_call(&caller) || !in_call(&callee) {
                    failed.push(format!("attempt {attempt}: setup did not finish:\n{caller}\n{callee}"));
                }
                for (who, s) in [("caller", &run.caller), ("callee", &run.callee)] {
                    eprintln!("attempt {attempt}, {who}: {s}");
                    if s.unstamped > 0 || s.backwards > 0 {
                        failed.push(format!("attempt {attempt}, {who}: damaged or out of order: {s}"));
                    }
                }
            }
            // No picture or no summary in time; the message carries the peers' lines, which say
            // whether setup finished.
            Err(e) if in_call(&e) && !setup_failed(&e) => eprintln!("attempt {attempt}: in call, but: {e}"),
            Err(e) => failed.push(format!("attempt {attempt}: {e}")),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 3 calls through 20 % loss failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn a_three_second_outage() {
    // 20.8-20.9 fps, one freeze of 3.70 / 3.74 s (the outage and the way back), p95 48-54 ms,
    // size 100 %; the link dropped 244-259 packets each way in the outage.
    let Some(run) = call_over(
        "outage",
        Bounds {
            fps: 14.0,
            freezes: 4,
            longest_freeze_ms: 6000.0,
            g2g_p95_ms: 300.0,
            size_held: 0.95,
            advance: 0.5,
            setup_ms: 5000.0,
            unstamped: 0.02,
        },
    ) else {
        return;
    };
    let c = &run.counters;
    assert!(c.a_to_b.path.outage > 0 && c.b_to_a.path.outage > 0, "the outage happened: {c:?}");
    for s in [&run.caller, &run.callee] {
        // It fell in the call and was seen: the call came back from it (the checks above).
        assert!(s.longest_freeze_ms >= 2500.0, "the 3 s outage froze the picture: {s}");
    }
}

#[test]
fn a_300_kbit_s_link() {
    // 30.1 fps, no freeze, p95 77-79 ms, RTT p95 89-107 ms, size 100 %; the pattern's ~160 kbit/s
    // of video never filled the queue (0 drops). (The camera-like scene does: issue 13.)
    call_over(
        "rate300k",
        Bounds {
            fps: 24.0,
            freezes: 3,
            longest_freeze_ms: 600.0,
            g2g_p95_ms: 400.0,
            size_held: 0.9,
            advance: 0.5,
            setup_ms: 5000.0,
            unstamped: 0.02,
        },
    );
}

// ---- Congestion control (issue 13): the camera-like source over narrow and changing links. ----
// Each call prints the callee's second-by-second figures (what the caller sent it over A→B:
// received kbit/s, the caller's target and estimate are on the caller's own lines) and checks the
// content as above, plus the link's use and the standing queue (RTT against the path's base).

use peercall::link_emulator::timeline::Timeline;

/// What a call of issue 13's link `name` (its phases `phase` long) with the camera-like source needs,
/// `seconds` a call, and the lock that keeps it alone on the machine; `None` (said why) where the
/// link emulator can't run.
fn cc_setup(
    name: &str,
    phase: Duration,
    seconds: f64,
) -> Option<(MutexGuard<'static, ()>, LinkCase, Programs, CallPlan)> {
    if let Some(why) = link_emulator::unavailable() {
        eprintln!("skipped: {why}");
        return None;
    }
    let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let case = cases::pick(cases::issue_13(phase), &[name.to_owned()]).expect("a case of issue 13").remove(0);
    let programs = Programs {
        peercall: env!("CARGO_BIN_EXE_peercall").into(),
        server: env!("CARGO_BIN_EXE_peercall-server").into(),
    };
    let plan = CallPlan {
        seconds,
        video: "640x480@30".into(),
        peer_args: vec!["--video-scene".into(), "camera".into()],
        setup_limit: Duration::from_secs(20),
    };
    Some((serial, case, programs, plan))
}

/// A call of issue 13's link `name` (its phases `phase` long) with the camera-like source, `seconds`
/// long; prints both receivers' figures and timelines and returns the run with the callee's and the
/// caller's timelines (the callee's is what the caller's congestion control delivered).
fn cc_call(
    name: &str,
    phase: Duration,
    seconds: f64,
    bounds: Bounds,
) -> Option<(CallRun, Timeline, Timeline)> {
    let (_serial, case, programs, plan) = cc_setup(name, phase, seconds)?;
    let run = place("cc", &case, &programs, &plan);
    let callee = Timeline::from_lines(&run.callee_lines);
    let caller = Timeline::from_lines(&run.caller_lines);
    // The timelines print first: a failed check then comes after what explains it.
    eprintln!(
        "{}: callee's seconds (the caller's video):\n{callee}  caller's seconds:\n{caller}",
        case.label
    );
    check_both(&case, &run, &bounds);
    Some((run, callee, caller))
}

/// Video kbit/s received in `from..to` as a share of `link_kbps`; prints and returns it.
fn share(what: &str, t: &Timeline, from: usize, to: usize, link_kbps: f64) -> f64 {
    let kbps = t.kbps_in(from, to);
    let (p50, p95) = t.rtt(from, to);
    eprintln!(
        "{what}: seconds {from}..{to}: video {kbps:.0} kbit/s = {:.0} % of {link_kbps:.0}; RTT p50 {p50:?} p95 {p95:?} ms; pictures {}",
        kbps / link_kbps * 100.0,
        t.pictures(3)
    );
    kbps / link_kbps
}

// Measured (debug build, the 2-core machine at load 10-12 from other builds, two runs each; the
// caller / callee figures): the camera scene comes at 6-16 of its 30 fps there (the peers' CPU), so
// frame-rate and freeze bounds are loose; the link's use, the round trip and the recovery are what
// congestion control decides. Before it (loss-only control, the encoder starting at 922 kbit/s)
// the narrow call did not show a first picture within 20 s (`net-bench --links rate300k
// --peer-args "--video-scene camera"`, main at fadff42).

#[test]
fn cc_a_narrow_link_with_the_camera_scene() {
    // 8.3-8.4 / 6.2-6.3 fps, 19-42 freezes, longest 0.8-2.4 s, g2g p95 410-533 ms, setup 4.7-5.8 s
    // (a 640x480 keyframe through 300 kbit/s), RTT p95 256-500 ms (base 50), link drops 0-38.
    let bounds = Bounds {
        fps: 3.0,
        freezes: 80,
        // Session 12: no freeze in four net-bench runs since the first keyframe is weighed
        // against the start's target (0.8-1.6 s before, the step to 320x240 after it).
        longest_freeze_ms: 3000.0,
        g2g_p95_ms: 1500.0,
        size_held: 0.0,
        advance: 0.2,
        setup_ms: 10_000.0,
        unstamped: 0.02,
    };
    let Some((run, callee, _caller)) = cc_call("narrow", Duration::from_secs(10), 20.0, bounds) else {
        return;
    };
    // Video alone (audio takes ~50 kbit/s more of it): 39-62 % of the link; 60-67 % since the
    // drain cut and the kept ceiling (session 10).
    let used = share("narrow", &callee, 5, 20, 300.0);
    assert!(used > 0.25, "the narrow link carried {:.0} % video", used * 100.0);
    // All it carried A→B (audio, repairs, headers too), to the second before the hang-up: 88-95 %
    // (net-bench and this test, session 10; net-bench: 81-87 % with the ladder's fix alone, the
    // estimate's sawtooth still cutting it to 60-100 kbit/s every 6 s). The bound leaves a loaded
    // machine room.
    let link = run.link_use(5, 18, 300_000.0).expect("the link's counters through second 18");
    eprintln!("narrow: the link carried {:.0} % of its rate A→B", link * 100.0);
    assert!(link > 0.7, "the narrow link carried {:.0} % of its rate", link * 100.0);
    // The standing queue: a 300 ms drop-tail queue full all the time reads as RTT ≥ 350 ms, both
    // ways ≥ 650 ms. Measured: 256-580 ms in session 7 (load 10-12), 210-270 ms in session 10,
    // 112-146 ms with the trendline (session 12, net-bench).
    let p95 = run.callee.rtt_p95_ms.unwrap_or(f64::MAX);
    assert!(p95 < 450.0, "RTT p95 {p95} ms");
}

/// Bounds for the changing links: content and a call that keeps going; their own checks follow.
const CHANGING: Bounds = Bounds {
    fps: 3.0,
    freezes: 100,
    longest_freeze_ms: 12_000.0,
    g2g_p95_ms: 3000.0,
    size_held: 0.0,
    advance: 0.2,
    setup_ms: 10_000.0,
    // At 160x120 under 60 kbit/s the codec blurs the stamp's 4-pixel blocks: 12 of 497 pictures in
    // one run of the deep drop (0-1 in three others).
    unstamped: 0.05,
};

#[test]
fn cc_a_step_down_to_600_kbit_s_and_back() {
    // 2.5 Mbit/s for 10 s, 600 kbit/s for 10 s, 2.5 Mbit/s again, 50 ms each way. Measured: 7.1-9.8
    // fps, longest freeze 0.9-8.5 s, RTT max in the low phase 241-636 ms (base 100), back to 80 % of
    // the rate before the step 1-6 s after the link returned.
    let Some((_run, callee, _caller)) = cc_call("step", Duration::from_secs(10), 32.0, CHANGING) else {
        return;
    };
    let before = callee.kbps_in(5, 10);
    share("step: before", &callee, 5, 10, 2500.0);
    share("step: low", &callee, 12, 20, 600.0);
    let low_rtt = callee.rtt_max(12, 20).unwrap_or(f64::MAX);
    eprintln!("step: RTT max in the low phase {low_rtt:.0} ms");
    assert!(low_rtt < 1200.0, "the low phase's round trip reached {low_rtt} ms");
    let back = callee.seconds_to_reach(20, 0.8 * before);
    eprintln!("step: back to 80 % of {before:.0} kbit/s {back:?} s after the rate returned");
    assert!(back.is_some_and(|s| s <= 9), "not back to 80 % of {before:.0} kbit/s: {back:?}");
    share("step: after", &callee, 25, 32, 2500.0);
}

#[test]
fn cc_a_deep_drop_to_120_kbit_s_and_back() {
    // 2.5 Mbit/s, 120 kbit/s from 8 s to 16 s, 2.5 Mbit/s again. Measured (five runs): longest
    // freeze 3.8-9.3 s (Chromium 4.1 s; before the pacer discarded stale retransmissions, 17.9 s:
    // 400 kB of them queued at 60 kbit/s), back to 80 % of the rate before 6-8 s after the link
    // returned, twice not within the 9 s left of a 26 s call (the ladder climbs a rung a second from
    // 160x120): the call is 30 s. After the merge with issue 12's receive side the playout target
    // sat at its 400 ms cap through the drop and ~20 s after it (g2g p50 ~460 ms, p95 0.5-7.1 s,
    // longest freeze 6.6-14.7 s). With the playout level following the standing queue, the pacer
    // shedding retransmissions past its budget and frames dropped behind the pacer counting as
    // link-limited (two runs): g2g p50 156-167 ms, p95 295-362 ms, longest freeze 3.2-12.4 s (the
    // keyframes of the drop still do not arrive whole: see issue 13's note), back to 80 % in 8-10 s.
    // CI then caught a run at g2g p95 7.6 s: the receiver waited out a run of damaged frames one
    // after another (800 ms each). With the assembler timing holes from when they show and jumping
    // to whole keyframes, the pacer discarding whole frames (and a backlog left by the fall of the
    // target) with the sender making a keyframe at once, PLIs answered once per round trip, and
    // audio's share taken off the video target (six runs): longest freeze 3.1-5.1 s, g2g p95
    // 185-716 ms. With a keyframe superseding what waits in the pacer, the ladder stepping down at
    // once when the target falls away, and the drain cut (session 10, four runs): longest freeze
    // 2.4-3.5 s, back to 80 % 5-7 s after the link returned; with a fresh encoder at each new size
    // (five runs): 1.8-3.8 s, back in 5-6 s. Bounds: a freeze of 9 s (the old
    // 6.6-14.7 s fail it mostly; a CI machine is slower), glass-to-glass p95 1.5 s (~2x the worst
    // run: a playout held at its cap fails it).
    let bounds = Bounds { longest_freeze_ms: 9_000.0, g2g_p95_ms: 1_500.0, ..CHANGING };
    // Back to 80 % 7-12 s after the link returns (session 7, five runs; the climb is 25 % a second
    // from ~100 kbit/s, no probing yet): the call runs 33 s so that 14 s fit after 16 s, and the
    // bound is 14 s, catching a call that does not come back.
    let Some((run, callee, _caller)) = cc_call("drop", Duration::from_secs(8), 33.0, bounds) else {
        return;
    };
    let before = callee.kbps_in(3, 8);
    share("drop: low", &callee, 9, 16, 120.0);
    let back = callee.seconds_to_reach(16, 0.8 * before);
    eprintln!(
        "drop: longest freeze {:.0} ms; back to 80 % of {before:.0} kbit/s {back:?} s after the rate returned",
        run.callee.longest_freeze_ms
    );
    assert!(back.is_some_and(|s| s <= 14), "not back to 80 % of {before:.0} kbit/s: {back:?}");
}

#[test]
fn cc_ramp_up_on_2_5_mbit_s() {
    // Measured: 80 % of the source's rate 2 s after the first picture (both runs), 640x480 throughout,
    // RTT p95 70-88 ms (base 50), 13-16 fps. Since the call's first keyframe is weighed against the
    // 300 kbit/s start (`Ladder::fit_first_keyframe`: the camera's is too big for it), the first
    // second is 320x240 until the doubling estimate clears 640x480's need: 640x480 0.85 of the time
    // with the climb held 1 s, 0.898-0.906 with 0.5 s.
    let bounds = Bounds { size_held: 0.8, ..CHANGING };
    let Some((_run, callee, caller)) = cc_call("rampup", Duration::from_secs(10), 12.0, bounds) else {
        return;
    };
    // The camera scene's natural rate at 640x480@30 is ~920 kbit/s (`EncoderSettings::for_size`).
    let reached = callee.seconds_to_reach(0, 0.8 * 920.0);
    let targets: Vec<u32> = caller.seconds.iter().map(|s| s.target_kbps.unwrap_or(0.0) as u32).collect();
    eprintln!("rampup: 80 % of the source's 920 kbit/s after {reached:?} s; caller's targets: {targets:?}");
    share("rampup", &callee, 5, 12, 2500.0);
    assert!(reached.is_some_and(|s| s <= 5), "80 % of the source's rate not within 5 s: {reached:?}");
}

// ---- Sharing the link (issue 13): a second call, a TCP bulk flow. ----

use peercall::link_emulator::headless_call::{SharedRun, Shares};

/// Places issue 13's shared case `name` (phases of 10 s: the second call or the TCP flow from 5 s
/// after the first picture) with the camera-like source, `seconds` a call; prints every call's
/// figures and timelines and the link's use over the span measured (from `settle` s after everything
/// started), checks each call's content against `bounds`, and returns the run and its shares.
fn cc_shared(name: &str, seconds: f64, settle: usize, bounds: Bounds) -> Option<(SharedRun, Shares)> {
    let (_serial, case, programs, plan) = cc_setup(name, Duration::from_secs(10), seconds)?;
    let run = headless_call::run_shared("cc", &case, &programs, &plan)
        .unwrap_or_else(|e| panic!("{}: {e}", case.label));
    let drops = |d: &DirectionCounters| d.path.dropped();
    let c = &run.calls[0].counters;
    eprintln!("{}: link dropped {} A→B, {} B→A", case.label, drops(&c.a_to_b), drops(&c.b_to_a));
    for (i, call) in run.calls.iter().enumerate() {
        eprintln!(
            "call {} (first picture {:.1} s after call 1's):\n  caller: {}\n  callee: {}\n  callee's seconds (the caller's video):\n{}  caller's seconds:\n{}",
            i + 1,
            call.first_picture_at.as_secs_f64(),
            call.caller,
            call.callee,
            Timeline::from_lines(&call.callee_lines),
            Timeline::from_lines(&call.caller_lines)
        );
    }
    let shares = run.shares(&case, settle).unwrap_or_else(|| panic!("{}: nothing to measure", case.label));
    for (i, s) in shares.calls.iter().enumerate() {
        eprintln!(
            "{name}: call {}: seconds {:?}: video {:.0} kbit/s = {:.0} % of {:.0}; RTT p50 {:?} p95 {:?} ms",
            i + 1,
            s.span,
            s.kbps,
            s.share * 100.0,
            shares.link_kbps,
            s.rtt_p50_ms,
            s.rtt_p95_ms
        );
    }
    if let (Some((span, kbps)), Some(flow)) = (&shares.tcp, &run.tcp) {
        eprintln!(
            "{name}: TCP: seconds {span:?} of its own: {kbps:.0} kbit/s = {:.0} % of the link; {} kB sent, {} kB received; kbit/s a second: {:?}",
            kbps / shares.link_kbps * 100.0,
            flow.sent / 1000,
            flow.received() / 1000,
            flow.kbps_series()
        );
    }
    for (i, call) in run.calls.iter().enumerate() {
        let label = format!("{} (call {})", case.label, i + 1);
        check(&format!("{label}, caller"), &call.caller, &bounds, &call.caller_lines);
        check(&format!("{label}, callee"), &call.callee, &bounds, &call.callee_lines);
    }
    Some((run, shares))
}

/// Two calls on one link: the larger video share at most this many times the smaller. Measured
/// (four runs): 34/25, 47/24, 39/26, 37/12 % (the first call placed holds more; issue 13's target
/// is 40-60 % each, not met yet), so up to 3.2x; 22/34, 40/33, 24/37, 25/38, 23/44 and 48/14 % in
/// session 10 (up to 3.4x). Bounded at 6x, each at least 5 %: they catch a call starved outright,
/// the figures are printed.
const TWOCALLS_RATIO: f64 = 6.0;
/// Beside a TCP bulk flow (BBR, this kernel's default) the call's video keeps at least this share
/// of the link. Measured: 2-9 % before the estimator told another flow's queue from its own (it cut
/// for the queue TCP kept, and TCP took each cut's room down to the call's floor); since then 13-33 %
/// here (24, 9, 21, 22, 18, 33, and after the episode stopped ending at each dip of BBR's queue 13,
/// 22, 24), 15-30 % in net-bench, all the call's packets 18-41 % (issue 13's target: 30 %), RTT p95
/// 235-335 ms; since a cut is given a second to show (`FOREIGN_SETTLE`) 35 and 25 % here, 26-38 %
/// in net-bench (all its packets 31-45 %). Bounded under that spread: it catches a call cut to its
/// floor again.
const TCP_CALL_SHARE: f64 = 0.08;

#[test]
fn cc_two_calls_share_a_1_mbit_s_link() {
    // 1 Mbit/s, 25 ms, 300 ms queue; the second call 5 s after the first one's first picture.
    let bounds = Bounds { ..CHANGING };
    let Some((_run, shares)) = cc_shared("twocalls", 30.0, 5, bounds) else {
        return;
    };
    let each: Vec<f64> = shares.calls.iter().map(|c| c.share).collect();
    eprintln!("twocalls: shares {each:?}, together {:.0} %", each.iter().sum::<f64>() * 100.0);
    // Neither call starves the other: each carries at least 5 % of the link's video, and the
    // larger share is at most TWOCALLS_RATIO times the smaller.
    let (lo, hi) = each.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    assert!(lo >= 0.05, "a call kept {:.0} % of the link", lo * 100.0);
    assert!(hi <= lo * TWOCALLS_RATIO, "shares {each:?}");
}

#[test]
fn cc_a_call_beside_a_tcp_bulk_flow() {
    // 2 Mbit/s, 25 ms, 300 ms queue; TCP A→B from 5 s after the first picture, for 15 s.
    let bounds = Bounds { ..CHANGING };
    let Some((_run, shares)) = cc_shared("tcp", 25.0, 3, bounds) else {
        return;
    };
    let call = &shares.calls[0];
    let tcp = shares.tcp_share().unwrap_or(0.0);
    eprintln!(
        "tcp: the call's video {:.0} % (all its packets {}), TCP {:.0} % of the link",
        call.share * 100.0,
        shares.calls_link_use.map_or_else(|| "-".to_owned(), |u| format!("{:.0} %", u * 100.0)),
        tcp * 100.0
    );
    assert!(call.share >= TCP_CALL_SHARE, "the call kept {:.0} % of the link beside TCP", call.share * 100.0);
    assert!(tcp > 0.1, "the TCP flow carried {:.0} % of the link", tcp * 100.0);
}
