//! A process (often inside a network namespace) whose stdout lines are kept with the time each
//! arrived: the headless `peercall` binary and the server, read by the tests through what they print.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A process in a namespace whose stdout lines are kept, each with the time it arrived.
pub struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Proc {
    pub fn start(ns: &str, program: &str, args: &[&str]) -> Proc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("process starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().expect("lines").push((Instant::now(), line));
            }
        });
        Proc { child, lines }
    }

    /// Sends SIGINT, as Ctrl-C would (`ip netns exec` execs the program, so the child is it).
    pub fn interrupt(&self) {
        // SAFETY: kill has no memory preconditions; the pid is our own child's, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
    }

    /// Every line so far (for failure messages).
    pub fn all_lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").iter().map(|(_, l)| l.clone()).collect()
    }

    pub fn lines_since(&self, t: Instant) -> Vec<String> {
        self.lines.lock().expect("lines").iter().filter(|(at, _)| *at >= t).map(|(_, l)| l.clone()).collect()
    }

    /// When the first line holding `needle` arrived, if one did.
    pub fn first_seen(&self, needle: &str) -> Option<Instant> {
        self.lines.lock().expect("lines").iter().find(|(_, l)| l.contains(needle)).map(|(at, _)| *at)
    }

    pub fn saw(&self, needle: &str) -> bool {
        self.lines.lock().expect("lines").iter().any(|(_, l)| l.contains(needle))
    }

    pub fn wait_for_quietly(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.saw(needle) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// For async tests: waits (without blocking a runtime thread) for a line holding `needle`, and
    /// returns when it arrived; fails the test with everything printed so far if none comes in `limit`.
    pub async fn line_at(&self, needle: &str, limit: Duration) -> Instant {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = self.first_seen(needle) {
                return at;
            }
            assert!(Instant::now() < deadline, "no `{needle}` within {limit:?}: {:#?}", self.all_lines());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn wait_for(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.saw(needle) {
            assert!(Instant::now() < deadline, "no `{needle}` within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
