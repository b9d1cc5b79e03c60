//! One Peercall ↔ Peercall call through an emulated link, with the `peercall --headless` binaries:
//! the signaling server and the caller (alice) in namespace A, the callee (bob, auto-answer) in B, so
//! media and bob's signaling cross the link. Returns both sides' `summary:` figures and the link's
//! counters. `net-bench` and `tests/netpath.rs` run their calls with it.
//!
//! Every wait is bounded: a call that does not come up, or a peer that does not finish, is an error
//! with what the peers printed, and the processes are killed when it returns.

use super::cases::LinkCase;
use super::{Direction, Link, LinkConfig, LinkCounters, LinkError};
use crate::call::quality::QualitySummary;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
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
    /// Everything the caller printed.
    pub caller_lines: Vec<String>,
    /// Everything the callee printed.
    pub callee_lines: Vec<String>,
}

/// A peer process and the lines it printed so far.
struct Peer {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Peer {
    fn start(link: &Link, a_side: bool, program: &Path, args: &[String]) -> Result<Peer, String> {
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
        let who = format!(
            "{} {}",
            if a_side { "A" } else { "B" },
            program.file_name().unwrap_or_default().to_string_lossy()
        );
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

/// Makes a link for `case` (namespaces tagged `tag`), places the call and measures it.
pub fn run(tag: &str, case: &LinkCase, programs: &Programs, plan: &CallPlan) -> Result<CallRun, String> {
    let link =
        Link::new(tag, LinkConfig::symmetric(case.path.clone())).map_err(|e: LinkError| e.to_string())?;
    let server_addr = format!("{}:6503", link.a().addr());
    let url = format!("ws://{server_addr}/");
    let mut server = Peer::start(&link, true, &programs.server, &args(&["--listen", &server_addr], &[]))?;
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = vec!["--video".to_owned(), plan.video.clone()];
    extra.extend(plan.peer_args.iter().cloned());
    let bob_bind = format!("{}:0", link.b().addr());
    let bob_args =
        ["--headless", "--name", "bob", "--auto-answer", "--once", "--server", &url, "--bind", &bob_bind];
    let mut bob = Peer::start(&link, false, &programs.peercall, &args(&bob_args, &extra))?;
    if !bob.wait_for("logged in as bob", Duration::from_secs(15)) {
        let _ = server.wait_for_exit(Duration::ZERO);
        return Err(format!("bob did not log in: {:#?}\nserver: {:#?}", bob.seen, server.seen));
    }
    let alice_bind = format!("{}:0", link.a().addr());
    let duration = format!("{}", plan.seconds);
    let alice_args = [
        "--headless",
        "--name",
        "alice",
        "--call",
        "bob",
        "--duration",
        &duration,
        "--server",
        &url,
        "--bind",
        &alice_bind,
    ];
    let mut alice = Peer::start(&link, true, &programs.peercall, &args(&alice_args, &extra))?;
    if !alice.wait_for("video in: first picture", plan.setup_limit) {
        let _ = bob.wait_for_exit(Duration::ZERO);
        return Err(format!(
            "no picture at the caller within {:?}: alice {:#?}\nbob {:#?}",
            plan.setup_limit, alice.seen, bob.seen
        ));
    }
    if case.from_first_picture {
        for direction in [Direction::AToB, Direction::BToA] {
            link.set(direction, case.path.clone()).map_err(|e| e.to_string())?;
        }
    }
    if let Some(outage) = case.outage {
        std::thread::sleep(outage.after);
        for direction in [Direction::AToB, Direction::BToA] {
            let path = case.path.clone().outage(Duration::ZERO, outage.length);
            link.set(direction, path).map_err(|e| e.to_string())?;
        }
    }
    // The caller hangs up after its duration (counted from "in call", a little before the first
    // picture) and exits; the callee exits when told.
    let limit = Duration::from_secs_f64(plan.seconds + 20.0);
    let alice_done = alice.wait_for_exit(limit);
    let bob_done = bob.wait_for_exit(Duration::from_secs(10));
    let counters = link.counters();
    let run = || -> Result<CallRun, String> {
        Ok(CallRun {
            caller: alice.summary().map_err(|e| format!("alice: {e}"))?,
            callee: bob.summary().map_err(|e| format!("bob: {e}"))?,
            counters,
            caller_lines: alice.seen.clone(),
            callee_lines: bob.seen.clone(),
        })
    };
    match run() {
        Ok(r) => Ok(r),
        Err(e) => Err(format!("{e}\n(alice finished: {alice_done}, bob finished: {bob_done})")),
    }
}
