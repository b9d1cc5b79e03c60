//! Peercall ↔ Peercall calls through an emulated link, with the `peercall --headless` binaries:
//! the signaling server and the caller (alice) in namespace A, the callee (bob, auto-answer) in B, so
//! media and bob's signaling cross the link. Returns both sides' `summary:` figures and the link's
//! counters. `net-bench` and `tests/netpath.rs` run their calls with it. A case may share its link
//! ([`Sharing`]): with more calls (`alice1` → `bob1`, `alice2` → `bob2`, ... on the one server, all
//! callers in A) or with a TCP bulk flow A → B; [`run_shared`] places it all, [`run`] one call.
//!
//! Every wait is bounded: a call that does not come up, or a peer that does not finish, is an error
//! with what the peers printed, and the processes are killed when it returns.

use super::bulk::{BulkPlan, Goodput, TcpBulk};
use super::cases::{LinkCase, Sharing};
use super::timeline::Timeline;
use super::{Direction, Link, LinkConfig, LinkCounters, LinkError};
use crate::call::quality::QualitySummary;
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The programs a call runs.
#[derive(Clone, Debug)]
pub struct Programs {
    /// `peercall`.
    pub peercall: PathBuf,
    /// `peercall-server`.
    pub server: PathBuf,
}

/// How to place the call.
#[derive(Clone, Debug)]
pub struct CallPlan {
    /// Seconds in the call (the caller's `--duration`).
    pub seconds: f64,
    /// The synthetic video both send, `WIDTHxHEIGHT@FPS`.
    pub video: String,
    /// More arguments for both peers (e.g. `--video-scene camera`).
    pub peer_args: Vec<String>,
    /// How long the caller's first remote picture may take after the click.
    pub setup_limit: Duration,
}

/// What a call measured.
#[derive(Clone, Debug)]
pub struct CallRun {
    /// What the caller received (its setup figure is click → first picture).
    pub caller: QualitySummary,
    /// What the callee received.
    pub callee: QualitySummary,
    /// What the link did, A (caller) → B and back.
    pub counters: LinkCounters,
    /// The link's counters once a second from the first call's first picture (entry 0 at it).
    pub link_seconds: Vec<LinkCounters>,
    /// Everything the caller printed.
    pub caller_lines: Vec<String>,
    /// Everything the callee printed.
    pub callee_lines: Vec<String>,
    /// When the caller's first picture came, after the first call's (zero for it).
    pub first_picture_at: Duration,
}

/// A peer process and the lines it printed so far.
struct Peer {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Peer {
    /// Starts `program` in A or B; `name` labels its traced lines.
    fn start(link: &Link, a_side: bool, name: &str, program: &Path, args: &[String]) -> Result<Peer, String> {
        let end = if a_side { link.a() } else { link.b() };
        // PEERCALL_TRACE_PEERS=1 prints every peer's lines timed (ms since the first peer started)
        // and passes PEERCALL_PEER_LOG (a RUST_LOG filter) to the peers, their logs on stderr:
        // where a call's setup or a freeze spends its time.
        let trace = std::env::var_os("PEERCALL_TRACE_PEERS").is_some();
        let log = std::env::var("PEERCALL_PEER_LOG").ok().filter(|_| trace);
        let mut child = end
            .command(&program.to_string_lossy())
            .args(args)
            .env("RUST_LOG", log.as_deref().unwrap_or("warn"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if log.is_some() { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .map_err(|e| format!("starting {}: {e}", program.display()))?;
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().ok_or("no stdout")?;
        let who = format!("{} {name}", if a_side { "A" } else { "B" });
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if trace {
                    eprintln!("[{:>6} ms] {who}: {line}", trace_clock().elapsed().as_millis());
                }
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Peer { child, lines, seen: Vec::new() })
    }

    /// Waits until a line holding `needle` comes (true) or `limit` passes or the output ends (false).
    fn wait_for(&mut self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        if self.seen.iter().any(|l| l.contains(needle)) {
            return true;
        }
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return true;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// Waits for the process to end by itself (its output closes) for at most `limit`.
    fn wait_for_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => return true,
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
    }

    fn summary(&self) -> Result<QualitySummary, String> {
        let line = self
            .seen
            .iter()
            .find(|l| l.starts_with("summary: "))
            .ok_or_else(|| format!("no summary line in {:#?}", self.seen))?;
        QualitySummary::parse(line).map_err(|e| format!("{e}: {line}"))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The clock of the peers' traced lines: started by the first line traced.
fn trace_clock() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn args(list: &[&str], extra: &[String]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).chain(extra.iter().cloned()).collect()
}

/// Makes a link for `case` (namespaces tagged `tag`), places the call and measures it; a case that
/// shares its link ([`Sharing`]) is placed whole, and this returns its first call.
pub fn run(tag: &str, case: &LinkCase, programs: &Programs, plan: &CallPlan) -> Result<CallRun, String> {
    let mut shared = run_shared(tag, case, programs, plan)?;
    Ok(shared.calls.swap_remove(0))
}

/// What a case's calls and its TCP flow measured ([`run_shared`]).
#[derive(Clone, Debug)]
pub struct SharedRun {
    /// Each call, in the order placed (call `i` is `alice{i+1}` → `bob{i+1}`; a lone call's peers
    /// are `alice` and `bob`).
    pub calls: Vec<CallRun>,
    /// What the TCP flow delivered, for a [`Sharing::TcpBulk`] case.
    pub tcp: Option<Goodput>,
}

impl CallRun {
    /// What the link carried A→B over seconds `from..to` from the first call's first picture, as a
    /// share of its rate `bps` (0–1): every packet's IP bytes the bottleneck took, whoever sent it
    /// (video, audio, repairs, RTCP, ICE, and their headers), so this is the link's use where the
    /// timeline's video share is the picture's. `None` when the samples do not reach `to`.
    pub fn link_use(&self, from: usize, to: usize, bps: f64) -> Option<f64> {
        link_use(&self.link_seconds, from, to, bps)
    }
}

impl SharedRun {
    /// Each call's callee's timeline (what its caller sent over A→B), from its first picture.
    pub fn callee_timelines(&self) -> Vec<Timeline> {
        self.calls.iter().map(|c| Timeline::from_lines(&c.callee_lines)).collect()
    }

    /// The seconds when every call was up, from `settle` s after the last call's first picture to
    /// the first call's end (less its last second, the hang-up): one span per call in its own
    /// callee's timeline (`None` if the calls did not overlap that long).
    pub fn overlap(&self, settle: usize) -> Option<Vec<Range<usize>>> {
        let offsets: Vec<usize> =
            self.calls.iter().map(|c| c.first_picture_at.as_secs_f64().round() as usize).collect();
        let lens: Vec<usize> = self.callee_timelines().iter().map(|t| t.seconds.len()).collect();
        overlap(&offsets, &lens, settle)
    }
}

/// One call's use of a shared link over the span [`SharedRun::shares`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct CallShare {
    /// The seconds measured, in the call's callee's timeline.
    pub span: Range<usize>,
    /// The caller's video the callee received, kbit/s (payload; audio and headers come on top).
    pub kbps: f64,
    /// The same as a share of the link's rate (0–1).
    pub share: f64,
    /// The callee's round trip over the span, p50 and p95, ms.
    pub rtt_p50_ms: Option<f64>,
    /// See `rtt_p50_ms`.
    pub rtt_p95_ms: Option<f64>,
}

/// How a shared case's link was used while everything on it ran.
#[derive(Clone, Debug, PartialEq)]
pub struct Shares {
    /// The link's rate at the call's start, kbit/s.
    pub link_kbps: f64,
    /// Each call's.
    pub calls: Vec<CallShare>,
    /// The TCP flow's seconds measured (its own, from its connection) and its goodput, kbit/s.
    pub tcp: Option<(Range<usize>, f64)>,
    /// Every IP byte but TCP's the link carried A→B over the first call's span, over its rate
    /// (0–1): the calls' video, audio, repairs, RTCP and headers. Beside a TCP flow, the call's
    /// own use of the link, where `calls[0].share` is its picture's.
    pub calls_link_use: Option<f64>,
}

impl Shares {
    /// The TCP flow's goodput as a share of the link (0–1).
    pub fn tcp_share(&self) -> Option<f64> {
        self.tcp.as_ref().map(|(_, kbps)| kbps / self.link_kbps.max(1.0))
    }
}

impl SharedRun {
    /// The link's use once everything on it has run `settle` seconds: for more calls, over their
    /// [overlap](Self::overlap); beside a TCP flow, over the flow's seconds from `settle` on; a lone
    /// call from `settle` to its last second. `None` when that span is empty.
    pub fn shares(&self, case: &LinkCase, settle: usize) -> Option<Shares> {
        let link_kbps = super::cases::rate_at(case, Duration::ZERO)? as f64 / 1000.0;
        let timelines = self.callee_timelines();
        let (spans, tcp) = match (case.sharing, &self.tcp) {
            (Sharing::TcpBulk { after, length, .. }, Some(flow)) => {
                let (after, length) = (after.as_secs() as usize, length.as_secs() as usize);
                let span = settle..length.min(flow.bytes_per_second.len());
                let kbps = flow.kbps(span.start, span.end);
                (std::iter::once(after + settle..after + length).collect(), Some((span, kbps)))
            }
            (Sharing::TcpBulk { .. }, None) => return None,
            (Sharing::Calls { .. }, _) => (self.overlap(settle)?, None),
            (Sharing::Alone, _) => {
                (std::iter::once(settle..timelines.first()?.seconds.len().checked_sub(1)?).collect(), None)
            }
        };
        // The link's samples count from the first call's first picture, as its callee's timeline does.
        let calls_link_use = spans.first().and_then(|span| {
            let link_bps = link_kbps * 1000.0;
            link_use_of(&self.calls.first()?.link_seconds, span.start, span.end, link_bps, non_tcp_bytes)
        });
        let calls = spans
            .into_iter()
            .zip(&timelines)
            .map(|(span, t)| {
                let kbps = t.kbps_in(span.start, span.end);
                let (rtt_p50_ms, rtt_p95_ms) = t.rtt(span.start, span.end);
                CallShare { share: kbps / link_kbps.max(1.0), kbps, rtt_p50_ms, rtt_p95_ms, span }
            })
            .collect();
        Some(Shares { link_kbps, calls, tcp, calls_link_use })
    }
}

fn link_use(seconds: &[LinkCounters], from: usize, to: usize, bps: f64) -> Option<f64> {
    link_use_of(seconds, from, to, bps, |c| c.delivered_bytes)
}

/// The bytes a path delivered that were not TCP's: on a call's link, the calls' own.
fn non_tcp_bytes(c: &super::model::Counters) -> u64 {
    c.delivered_bytes.saturating_sub(c.delivered_tcp_bytes)
}

/// [`link_use`] of the A→B bytes `counted` picks from the path's counters.
fn link_use_of(
    seconds: &[LinkCounters],
    from: usize,
    to: usize,
    bps: f64,
    counted: impl Fn(&super::model::Counters) -> u64,
) -> Option<f64> {
    let bytes = |s: usize| seconds.get(s).map(|c| counted(&c.a_to_b.path));
    let carried = bytes(to)?.checked_sub(bytes(from)?)?;
    (to > from && bps > 0.0).then(|| carried as f64 * 8.0 / (bps * (to - from) as f64))
}

/// The common span of timelines that start `offsets[i]` seconds into the first one and are
/// `lens[i]` seconds long, from `settle` after the last start to a second before the first end.
fn overlap(offsets: &[usize], lens: &[usize], settle: usize) -> Option<Vec<Range<usize>>> {
    let from = offsets.iter().max()? + settle;
    let to = offsets.iter().zip(lens).map(|(o, l)| o + l).min()?.checked_sub(1)?;
    (from < to).then(|| offsets.iter().map(|o| from - o..to - o).collect())
}

/// Names of call `i` of `n`: `alice`/`bob` alone, `alice1`/`bob1`, `alice2`/`bob2`... with others.
fn names(i: usize, n: usize) -> (String, String) {
    if n == 1 {
        ("alice".into(), "bob".into())
    } else {
        (format!("alice{}", i + 1), format!("bob{}", i + 1))
    }
}

/// The shortest call a later caller of a shared case is given.
const LATER_CALL_MIN_SECONDS: f64 = 5.0;

/// Makes a link for `case`, places its calls (one server, every caller in A, every callee in B; the
/// next call `stagger` after the previous one's first picture, each later one hanging up with the
/// first) and its TCP flow, and measures them. Each call is `plan`'s.
pub fn run_shared(
    tag: &str,
    case: &LinkCase,
    programs: &Programs,
    plan: &CallPlan,
) -> Result<SharedRun, String> {
    let (calls, stagger) = match case.sharing {
        Sharing::Calls { calls, stagger } => (calls.max(1), stagger),
        Sharing::Alone | Sharing::TcpBulk { .. } => (1, Duration::ZERO),
    };
    let link =
        Link::new(tag, LinkConfig::symmetric(case.path.clone())).map_err(|e: LinkError| e.to_string())?;
    let server_addr = format!("{}:6503", link.a().addr());
    let url = format!("ws://{server_addr}/");
    let mut server = Peer::start(
        &link,
        true,
        "peercall-server",
        &programs.server,
        &args(&["--listen", &server_addr], &[]),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = vec!["--video".to_owned(), plan.video.clone()];
    extra.extend(plan.peer_args.iter().cloned());
    // Every callee logs in first.
    let bob_bind = format!("{}:0", link.b().addr());
    let mut bobs = Vec::with_capacity(calls);
    for i in 0..calls {
        let (_, bob) = names(i, calls);
        let bob_args =
            ["--headless", "--name", &bob, "--auto-answer", "--once", "--server", &url, "--bind", &bob_bind];
        bobs.push(Peer::start(&link, false, &bob, &programs.peercall, &args(&bob_args, &extra))?);
        let peer = bobs.last_mut().ok_or("no callee")?;
        if !peer.wait_for(&format!("logged in as {bob}"), Duration::from_secs(15)) {
            let _ = server.wait_for_exit(Duration::ZERO);
            return Err(format!("{bob} did not log in: {:#?}\nserver: {:#?}", peer.seen, server.seen));
        }
    }
    let alice_bind = format!("{}:0", link.a().addr());
    let mut alices: Vec<(Peer, f64)> = Vec::with_capacity(calls);
    let mut first_pictures: Vec<Instant> = Vec::with_capacity(calls);
    let first_click = Instant::now();
    for (i, callee) in bobs.iter_mut().enumerate() {
        if i > 0 {
            std::thread::sleep(stagger);
        }
        let (alice, bob) = names(i, calls);
        // A later call hangs up about when the first does (durations count from "in call").
        let seconds = match i {
            0 => plan.seconds,
            _ => (plan.seconds - first_click.elapsed().as_secs_f64()).max(LATER_CALL_MIN_SECONDS),
        };
        let duration = format!("{seconds:.1}");
        let alice_args = [
            "--headless",
            "--name",
            &alice,
            "--call",
            &bob,
            "--duration",
            &duration,
            "--server",
            &url,
            "--bind",
            &alice_bind,
        ];
        alices.push((
            Peer::start(&link, true, &alice, &programs.peercall, &args(&alice_args, &extra))?,
            seconds,
        ));
        let (peer, _) = alices.last_mut().ok_or("no caller")?;
        if !peer.wait_for("video in: first picture", plan.setup_limit) {
            let _ = callee.wait_for_exit(Duration::ZERO);
            return Err(format!(
                "no picture at {alice} within {:?}: {alice} {:#?}\n{bob} {:#?}",
                plan.setup_limit, peer.seen, callee.seen
            ));
        }
        first_pictures.push(Instant::now());
        if i == 0 && case.from_first_picture {
            for direction in [Direction::AToB, Direction::BToA] {
                link.set(direction, case.path.clone()).map_err(|e| e.to_string())?;
            }
        }
    }
    let first_picture = first_pictures[0];
    let tcp = match case.sharing {
        Sharing::TcpBulk { after, length, congestion } => {
            let start_after = after.saturating_sub(first_picture.elapsed());
            let plan = BulkPlan { start_after, length, port: 0, congestion };
            Some(TcpBulk::between(link.a(), link.b(), plan).map_err(|e| format!("the TCP flow: {e}"))?)
        }
        Sharing::Alone | Sharing::Calls { .. } => None,
    };
    if let Some(outage) = case.outage {
        std::thread::sleep(outage.after.saturating_sub(first_picture.elapsed()));
        for direction in [Direction::AToB, Direction::BToA] {
            let path = case.path.clone().outage(Duration::ZERO, outage.length);
            link.set(direction, path).map_err(|e| e.to_string())?;
        }
    }
    // Each caller hangs up after its duration (counted from "in call", a little before the first
    // picture) and exits; the callees exit when told. Meanwhile the link's counters are read once
    // a second, on the first picture's beat.
    let done = AtomicBool::new(false);
    let (alices_done, bobs_done, link_seconds) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| sample_every_second(&link, first_picture, &done));
        let alices_done: Vec<bool> = alices
            .iter_mut()
            .map(|(peer, seconds)| peer.wait_for_exit(Duration::from_secs_f64(*seconds + 20.0)))
            .collect();
        let bobs_done: Vec<bool> =
            bobs.iter_mut().map(|peer| peer.wait_for_exit(Duration::from_secs(10))).collect();
        done.store(true, Ordering::Relaxed);
        (alices_done, bobs_done, sampler.join().unwrap_or_default())
    });
    let tcp = match tcp {
        Some(flow) => Some(flow.finish().map_err(|e| format!("the TCP flow: {e}"))?),
        None => None,
    };
    let counters = link.counters();
    let mut runs = Vec::with_capacity(calls);
    for (i, ((alice, bob), at)) in alices.iter().zip(&bobs).zip(&first_pictures).enumerate() {
        let (a, b) = names(i, calls);
        let run = || -> Result<CallRun, String> {
            Ok(CallRun {
                caller: alice.0.summary().map_err(|e| format!("{a}: {e}"))?,
                callee: bob.summary().map_err(|e| format!("{b}: {e}"))?,
                counters,
                link_seconds: link_seconds.clone(),
                caller_lines: alice.0.seen.clone(),
                callee_lines: bob.seen.clone(),
                first_picture_at: at.duration_since(first_picture),
            })
        };
        runs.push(run().map_err(|e| {
            format!("{e}\n({a} finished: {}, {b} finished: {})", alices_done[i], bobs_done[i])
        })?);
    }
    Ok(SharedRun { calls: runs, tcp })
}

/// `link`'s counters at `start` and each whole second after it, until `done`.
fn sample_every_second(link: &Link, start: Instant, done: &AtomicBool) -> Vec<LinkCounters> {
    let mut seconds = Vec::new();
    while !done.load(Ordering::Relaxed) {
        let next = start + Duration::from_secs(seconds.len() as u64);
        match next.checked_duration_since(Instant::now()) {
            // Short naps, so the end is not held up by a second.
            Some(wait) => std::thread::sleep(wait.min(Duration::from_millis(50))),
            None => seconds.push(link.counters()),
        }
    }
    seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_named_alone_and_numbered_when_shared() {
        assert_eq!(names(0, 1), ("alice".into(), "bob".into()));
        assert_eq!(names(1, 2), ("alice2".into(), "bob2".into()));
    }

    #[test]
    fn the_overlap_is_the_span_every_call_was_up_and_settled() {
        // Call 2's first picture 7 s into call 1 (30 s of it); call 2 lasts 24 s: up to second 31.
        assert_eq!(overlap(&[0, 7], &[30, 24], 5), Some(vec![12..29, 5..22]));
        assert_eq!(overlap(&[0], &[20], 3), Some(std::iter::once(3..19).collect()));
        assert_eq!(overlap(&[0, 18], &[20, 20], 3), None, "too short");
        assert_eq!(overlap(&[], &[], 3), None);
    }

    #[test]
    fn the_link_use_is_what_it_carried_over_its_rate() {
        let at = |bytes: u64| {
            let mut c = LinkCounters::default();
            c.a_to_b.path.delivered_bytes = bytes;
            c
        };
        // 0, 30 kB, 60 kB, 97.5 kB: 37.5 kB a second is all of 300 kbit/s.
        let seconds = [at(0), at(30_000), at(60_000), at(97_500)];
        assert_eq!(link_use(&seconds, 0, 2, 300_000.0), Some(0.8));
        assert_eq!(link_use(&seconds, 2, 3, 300_000.0), Some(1.0));
        assert_eq!(link_use(&seconds, 2, 4, 300_000.0), None, "not sampled that far");
        assert_eq!(link_use(&seconds, 2, 2, 300_000.0), None, "an empty span");
    }

    #[test]
    fn the_calls_link_use_leaves_tcp_out() {
        let at = |bytes: u64, tcp: u64| {
            let mut c = LinkCounters::default();
            c.a_to_b.path.delivered_bytes = bytes;
            c.a_to_b.path.delivered_tcp_bytes = tcp;
            c
        };
        // 250 kB a second, of which TCP 175: the calls' 75 kB is 30 % of 2 Mbit/s.
        let seconds = [at(0, 0), at(250_000, 175_000), at(500_000, 350_000)];
        assert_eq!(link_use_of(&seconds, 0, 2, 2_000_000.0, non_tcp_bytes), Some(0.3));
        assert_eq!(link_use(&seconds, 0, 2, 2_000_000.0), Some(1.0));
    }
}
