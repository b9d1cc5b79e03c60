//! `net-bench`: a Peercall ↔ Peercall headless call through each emulated link of issue 12
//! (`peercall::link_emulator`: two network namespaces joined by TUN devices), one at a time, and one
//! markdown table row per link of what the caller received: setup (click → first picture), fps,
//! freezes, glass-to-glass latency, bitrate, RTT, retransmissions, and what the link dropped.
//!
//! Run as root: `cargo build --release --bins && sudo target/release/net-bench` (`--seconds`,
//! `--links clean,bursty`, `--peer-args "--video-scene camera"`). It uses the `peercall` and
//! `peercall-server` binaries next to itself. It never fails on a figure; a call that does not come
//! up is reported in its row and the bench goes on.
//!
//! `--suite cc` measures congestion control instead (issue 13's links: narrow, step, drop, rampup;
//! the camera-like source unless `--peer-args` says otherwise): per link, the video share of the
//! link in each phase, the round trip against the path's base, freezes, the time back to 80 % of the
//! rate after the link returns, and the picture size and frame rate over time. Its shared links
//! (twocalls: two calls on 1 Mbit/s; tcp: a call beside a TCP bulk flow on 2 Mbit/s, the system's
//! TCP; tcpcubic: the same beside CUBIC) get a table of their own: each call's share of the link,
//! the TCP flow's, and each call's round trip and freezes.

use clap::Parser;
use peercall::call::quality::QualitySummary;
use peercall::link_emulator::cases::{self, LinkCase, Sharing};
use peercall::link_emulator::headless_call::{self, CallPlan, CallRun, Programs, SharedRun};
use peercall::link_emulator::{self, DirectionCounters};
use std::time::Duration;

/// Measures Peercall calls over emulated network paths.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Seconds in each call.
    #[arg(long, default_value_t = 45.0)]
    seconds: f64,
    /// The links to measure, by name (default: all): clean, reorder5, bursty, jitter30, loss10,
    /// outage, rate300k; with `--suite cc`: narrow, step, drop, rampup, twocalls, tcp, tcpcubic.
    #[arg(long, value_delimiter = ',')]
    links: Vec<String>,
    /// Synthetic video both peers send.
    #[arg(long, default_value = "640x480@30")]
    video: String,
    /// More arguments for both peers, split at spaces (e.g. "--video-scene camera").
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    peer_args: String,
    /// Which links: `loss` (issue 12's) or `cc` (issue 13's congestion-control links).
    #[arg(long, default_value = "loss")]
    suite: String,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("net-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The binaries next to this one.
fn programs() -> Result<Programs, String> {
    let exe = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    let dir = exe.parent().ok_or("the bench has no folder")?;
    let programs = Programs { peercall: dir.join("peercall"), server: dir.join("peercall-server") };
    for p in [&programs.peercall, &programs.server] {
        if !p.exists() {
            return Err(format!(
                "{} is missing: build every binary (`cargo build --release --bins`)",
                p.display()
            ));
        }
    }
    Ok(programs)
}

fn run(args: Args) -> Result<(), String> {
    if let Some(why) = link_emulator::unavailable() {
        return Err(format!("the link emulator can't run here: {why}"));
    }
    let programs = programs()?;
    if args.suite == "cc" {
        return congestion_suite(&args, &programs);
    }
    // The outage comes a third into the call, so there is as much call after it as before.
    let all = cases::issue_12(Duration::from_secs_f64(args.seconds / 3.0));
    let picked = if args.links.is_empty() { all } else { cases::pick(all, &args.links)? };
    let plan = CallPlan {
        seconds: args.seconds,
        video: args.video.clone(),
        peer_args: args.peer_args.split_whitespace().map(str::to_owned).collect(),
        setup_limit: Duration::from_secs(20),
    };
    let mut rows = Vec::new();
    for (i, case) in picked.iter().enumerate() {
        eprintln!("[{}/{}] {} ({} s)...", i + 1, picked.len(), case.label, args.seconds);
        let row = match headless_call::run("nb", case, &programs, &plan) {
            Ok(run) => {
                let row = row(case, &run);
                eprintln!("{row}");
                row
            }
            Err(e) => {
                eprintln!("{e}");
                format!("| {} | call failed: {} |", case.label, e.lines().next().unwrap_or(""))
            }
        };
        rows.push(row);
    }
    let peer_args =
        if args.peer_args.is_empty() { String::new() } else { format!(", peers: {}", args.peer_args) };
    println!("\n{} s a call, {}{peer_args}; what the caller received:\n", args.seconds, args.video);
    println!(
        "| link (each way) | setup (ms) | fps | freezes | longest freeze (ms) | frozen (s) | g2g p50 / p95 (ms) \
         | kbit/s | RTT p50 / p95 (ms) | RTX kB | size held | callee: fps / freezes | link drops A→B / B→A |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!(
        "\nRTX kB: retransmissions the caller received on the RTX stream (`-`: none came). \
         Drops: r random, b burst, q queue, o outage."
    );
    Ok(())
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

fn drops(d: &DirectionCounters) -> String {
    let p = &d.path;
    let parts: Vec<String> =
        [("r", p.random_loss), ("b", p.burst_loss), ("q", p.queue_overflow), ("o", p.outage)]
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{n}{k}"))
            .collect();
    if parts.is_empty() {
        "0".to_owned()
    } else {
        format!("{} of {}", parts.join(" "), p.offered)
    }
}

fn row(case: &LinkCase, run: &CallRun) -> String {
    let s: &QualitySummary = &run.caller;
    format!(
        "| {} | {} | {:.1} | {} | {:.0} | {:.2} | {} / {} | {:.0} | {} / {} | {} | {} | {:.1} / {} | {} / {} |",
        case.label,
        opt(s.setup_ms, 0),
        s.fps,
        s.freezes,
        s.longest_freeze_ms,
        s.frozen_ms / 1000.0,
        opt(s.g2g_p50_ms, 0),
        opt(s.g2g_p95_ms, 0),
        s.kbps,
        opt(s.rtt_p50_ms, 0),
        opt(s.rtt_p95_ms, 0),
        opt(s.rtx_kb, 0),
        s.size_held.map_or_else(|| "-".to_owned(), |h| format!("{:.0} %", h * 100.0)),
        run.callee.fps,
        run.callee.freezes,
        drops(&run.counters.a_to_b),
        drops(&run.counters.b_to_a),
    )
}

/// Issue 13's links, one row each. Phases are a third of the call (the step and the drop come at a
/// third and end at two thirds).
fn congestion_suite(args: &Args, programs: &Programs) -> Result<(), String> {
    use peercall::link_emulator::timeline::Timeline;
    let phase = Duration::from_secs_f64(args.seconds / 3.0);
    let all = cases::issue_13(phase);
    let picked = if args.links.is_empty() { all } else { cases::pick(all, &args.links)? };
    let peer_args = if args.peer_args.is_empty() { "--video-scene camera" } else { &args.peer_args };
    let plan = CallPlan {
        seconds: args.seconds,
        video: args.video.clone(),
        peer_args: peer_args.split_whitespace().map(str::to_owned).collect(),
        setup_limit: Duration::from_secs(20),
    };
    let p = phase.as_secs() as usize;
    let end = args.seconds as usize;
    let mut rows = Vec::new();
    let mut shared_rows = Vec::new();
    for (i, case) in picked.iter().enumerate() {
        eprintln!("[{}/{}] {} ({} s)...", i + 1, picked.len(), case.label, args.seconds);
        if case.sharing != Sharing::Alone {
            let row = match headless_call::run_shared("nb", case, programs, &plan) {
                Ok(run) => sharing_row(case, &run),
                Err(e) => format!("| {} | call failed: {} |", case.label, e.lines().next().unwrap_or("")),
            };
            eprintln!("{row}");
            shared_rows.push(row);
            continue;
        }
        let row = match headless_call::run("nb", case, programs, &plan) {
            Ok(run) => {
                let t = Timeline::from_lines(&run.callee_lines);
                eprintln!("{t}");
                eprintln!("{}", link_seconds(&run.link_seconds));
                let kbps_at = |s: usize| {
                    cases::rate_at(case, Duration::from_secs(s as u64)).unwrap_or(0) as f64 / 1000.0
                };
                // The picture's share of the link, and all the link carried A→B (audio, repairs,
                // headers too) after it.
                let use_of = |from: usize, to: usize| {
                    let video = t.kbps_in(from, to) / kbps_at(from).max(1.0) * 100.0;
                    // To the second before the hang-up at most: the counters stop with the call.
                    let to = to.min(run.link_seconds.len().saturating_sub(2));
                    let link = run.link_use(from, to, kbps_at(from) * 1000.0);
                    format!(
                        "{video:.0} % ({})",
                        link.map_or("-".to_owned(), |l| format!("{:.0} %", l * 100.0))
                    )
                };
                let (p50, p95) = t.rtt(2, end);
                let changes = !case.path.schedule.is_empty();
                let (uses, back) = if changes {
                    let before = t.kbps_in(p / 2, p);
                    let back = t
                        .seconds_to_reach(2 * p, 0.8 * before)
                        .map_or("never".to_owned(), |s| format!("{s} s"));
                    (
                        format!(
                            "{} / {} / {}",
                            use_of(p / 2, p),
                            use_of(p + 2, 2 * p),
                            use_of(2 * p + 3, end)
                        ),
                        back,
                    )
                } else {
                    (use_of(3, end), "-".to_owned())
                };
                let s = &run.callee;
                format!(
                    "| {} | {uses} | {} / {} | {} | {:.0} | {back} | {:.1} | {} | {} |",
                    case.label,
                    opt(p50, 0),
                    opt(p95, 0),
                    s.freezes,
                    s.longest_freeze_ms,
                    s.fps,
                    t.pictures((end / 6).max(1)),
                    drops(&run.counters.a_to_b),
                )
            }
            Err(e) => format!("| {} | call failed: {} |", case.label, e.lines().next().unwrap_or("")),
        };
        eprintln!("{row}");
        rows.push(row);
    }
    println!(
        "\n{} s a call, {}, peers: {peer_args}; what the callee received of the caller's video:\n",
        args.seconds, args.video
    );
    println!("| link (each way) | video share of the link (link used) (before / low / after) | RTT p50 / p95 (ms) | freezes | longest freeze (ms) | back to 80 % | fps | picture over time | link drops A→B |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!("\nVideo share: received video payload over the link's rate. Link used: every IP byte the link carried A→B (video, audio, repairs, RTCP, ICE, headers) over its rate.");
    if !shared_rows.is_empty() {
        println!("\nShared links, from {SHARED_SETTLE} s after everything started (the last call's first picture, or the TCP flow's connection):\n");
        println!("| link (each way) | video share of the link (each call) | calls' link use | TCP goodput share | RTT p50 / p95 (ms, each call) | freezes / longest (ms, each callee) | fps (each callee) | link drops A→B |");
        println!("|---|---|---|---|---|---|---|---|");
        for row in shared_rows {
            println!("{row}");
        }
        println!("\nCalls' link use: every IP byte but TCP's the link carried A→B (each call's video, audio, repairs, RTCP, headers) over its rate, over the first call's span.");
    }
    Ok(())
}

/// Seconds a shared link's traffic runs before its use is measured.
const SHARED_SETTLE: usize = 5;

/// A row of a case whose call shares the link with another call or a TCP flow.
fn sharing_row(case: &LinkCase, run: &SharedRun) -> String {
    use peercall::link_emulator::timeline::Timeline;
    for (i, call) in run.calls.iter().enumerate() {
        eprintln!("call {}:\n{}", i + 1, Timeline::from_lines(&call.callee_lines));
    }
    let Some(shares) = run.shares(case, SHARED_SETTLE) else {
        return format!("| {} | the calls did not overlap {SHARED_SETTLE} s |", case.label);
    };
    let each = |f: &dyn Fn(usize) -> String| (0..run.calls.len()).map(f).collect::<Vec<_>>().join(" / ");
    let c = &shares.calls;
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |",
        case.label,
        each(&|i| format!("{:.0} %", c[i].share * 100.0)),
        shares.calls_link_use.map_or_else(|| "-".to_owned(), |u| format!("{:.0} %", u * 100.0)),
        shares.tcp_share().map_or_else(|| "-".to_owned(), |s| format!("{:.0} %", s * 100.0)),
        each(&|i| format!("{} / {}", opt(c[i].rtt_p50_ms, 0), opt(c[i].rtt_p95_ms, 0))),
        each(&|i| format!("{} / {:.0}", run.calls[i].callee.freezes, run.calls[i].callee.longest_freeze_ms)),
        each(&|i| format!("{:.1}", run.calls[i].callee.fps)),
        drops(&run.calls[0].counters.a_to_b),
    )
}

/// The link A→B each second from the caller's first picture: what it carried (kbit/s), the mean
/// wait in its bottleneck's queue and the forwarder's mean lateness (ms): the queue the call's
/// controller should read, to set beside what it did read.
fn link_seconds(seconds: &[peercall::link_emulator::LinkCounters]) -> String {
    let per: Vec<_> = seconds.windows(2).map(|w| w[1].a_to_b.since(&w[0].a_to_b, 1.0)).collect();
    let list = |f: fn(&peercall::link_emulator::PathSecond) -> f64| {
        per.iter().map(|p| format!("{:.0}", f(p))).collect::<Vec<_>>().join(" ")
    };
    format!(
        "link A->B a second: kbit/s [{}]\n  queue ms [{}]\n  forwarder late ms [{}]",
        list(|p| p.kbps),
        list(|p| p.queue_ms),
        list(|p| p.late_ms)
    )
}
