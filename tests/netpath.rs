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
use std::sync::Mutex;
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
    let run =
        headless_call::run("np", &case, &programs, &plan).unwrap_or_else(|e| panic!("{}: {e}", case.label));
    let drops = |d: &DirectionCounters| d.path.dropped();
    eprintln!(
        "{}: link dropped {} A→B, {} B→A\n  caller: {}\n  callee: {}",
        case.label,
        drops(&run.counters.a_to_b),
        drops(&run.counters.b_to_a),
        run.caller,
        run.callee
    );
    for (who, s, lines) in
        [("caller", &run.caller, &run.caller_lines), ("callee", &run.callee, &run.callee_lines)]
    {
        check(&format!("{}, {who}", case.label), s, &bounds, lines);
    }
    Some(run)
}

fn check(what: &str, s: &QualitySummary, b: &Bounds, lines: &[String]) {
    let fail = |why: String| -> ! { panic!("{what}: {why}\n{s}\n{lines:#?}") };
    // Content: every picture carries an intact stamp (a damaged or foreign picture would not), they
    // come in order, and the frame number advances with the call.
    if s.frames == 0 || s.stamped == 0 {
        fail("no pictures".into());
    }
    if s.unstamped > s.frames / 50 {
        fail(format!("{} of {} pictures without an intact stamp", s.unstamped, s.frames));
    }
    if s.backwards > 0 {
        fail(format!("{} pictures out of order", s.backwards));
    }
    let advanced = s.last_frame_no.unwrap_or(0) as f64;
    if advanced < s.seconds * 30.0 * 0.5 {
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
    // Measured 382–2009 ms from the click to the caller's first picture.
    if s.setup_ms.is_some_and(|ms| ms > 5000.0) {
        fail(format!("setup took {:?} ms (at most 5000)", s.setup_ms));
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
        Bounds { fps: 20.0, freezes: 10, longest_freeze_ms: 800.0, g2g_p95_ms: 1000.0, size_held: 0.95 },
    );
}

#[test]
fn jitter_with_reordering_and_5_percent_loss() {
    // 28.4-30.1 fps, 1-3 freezes, longest 188-365 ms, p95 194-207 ms (50 ms + one repair round of
    // playout delay), size 100 %.
    call_over(
        "reorder5",
        Bounds { fps: 22.0, freezes: 6, longest_freeze_ms: 800.0, g2g_p95_ms: 450.0, size_held: 0.9 },
    );
}

#[test]
fn bursty_loss() {
    // 29.8-30.0 fps, 0-1 freeze (162 ms), p95 50-58 ms, size 100 %.
    call_over(
        "bursty",
        Bounds { fps: 24.0, freezes: 4, longest_freeze_ms: 600.0, g2g_p95_ms: 300.0, size_held: 0.9 },
    );
}

#[test]
fn heavy_jitter_without_reordering() {
    // 30.0 fps, no freeze, p95 90-91 ms (the playout clock covers the jitter), size 100 %.
    call_over(
        "jitter30",
        Bounds { fps: 24.0, freezes: 3, longest_freeze_ms: 500.0, g2g_p95_ms: 300.0, size_held: 0.95 },
    );
}

#[test]
fn jitter_with_reordering_and_10_percent_loss() {
    // 28.7-29.7 fps, 1 freeze (272 / 542 ms), p95 329-338 ms, size 100 %; with one repair round
    // instead of two: 24 fps, 5-6 freezes of ~700 ms.
    call_over(
        "loss10",
        Bounds { fps: 20.0, freezes: 6, longest_freeze_ms: 1200.0, g2g_p95_ms: 600.0, size_held: 0.9 },
    );
}

#[test]
fn a_three_second_outage() {
    // 20.8-20.9 fps, one freeze of 3.70 / 3.74 s (the outage and the way back), p95 48-54 ms,
    // size 100 %; the link dropped 244-259 packets each way in the outage.
    let Some(run) = call_over(
        "outage",
        Bounds { fps: 14.0, freezes: 4, longest_freeze_ms: 6000.0, g2g_p95_ms: 300.0, size_held: 0.95 },
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
        Bounds { fps: 24.0, freezes: 3, longest_freeze_ms: 600.0, g2g_p95_ms: 400.0, size_held: 0.9 },
    );
}
