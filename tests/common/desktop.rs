//! Helpers for the tests that drive a real window: a virtual X server, child processes reaped however
//! a test ends, typing and clicking with xdotool, and screenshots into test-artifacts/.

use image::RgbaImage;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

/// A child process that is stopped when the test ends, however it ends.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // SIGTERM first: Xvfb then removes its /tmp/.X<n>-lock, which SIGKILL would leave behind
        // (and after enough runs no display number would be free).
        // SAFETY: kill(2) on our own child's pid; it has no memory-safety preconditions.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where tests leave screenshots, logs and figures for people to look at.
pub fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("test-artifacts/ can be created");
    dir
}

/// Runs `scripts/install-deps.sh test` when `program` is missing, so a bare machine can run the test.
pub fn ensure_tool(program: &str, probe: &[&str]) {
    if Process::new(program).args(probe).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-deps.sh");
    let ok = Process::new("bash").arg(script).arg("test").status().is_ok_and(|s| s.success());
    assert!(ok, "{program} is missing and scripts/install-deps.sh test could not install it");
}

/// Starts Xvfb on a free display with a screen of `size` ("1600x1000x24"), installing it first when
/// it is missing.
pub fn start_xvfb(size: &str) -> (Reaped, String) {
    ensure_tool("Xvfb", &["-help"]);
    for n in 90..140 {
        if Path::new(&format!("/tmp/.X{n}-lock")).exists()
            || Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
        {
            continue;
        }
        let display = format!(":{n}");
        let child = Process::new("Xvfb")
            .args([&display, "-screen", "0", size, "-nolisten", "tcp", "-noreset"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb starts");
        let xvfb = Reaped(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                return (xvfb, display);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Xvfb on {display} did not come up in 10 s");
    }
    panic!("no free X display between :90 and :139");
}

/// A TCP port nothing listens on now (the app's embedded server takes it).
pub fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    socket.local_addr().expect("its address").port()
}

/// Waits until something accepts connections on `port` (the window's embedded server).
pub async fn wait_listening(port: u16, secs: u64) {
    super::within(secs, "the window's built-in server to listen", async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Types and clicks into the window as a person would (XTEST).
pub fn xdotool(display: &str, args: &[&str]) {
    let ok = Process::new("xdotool").args(args).env("DISPLAY", display).status().is_ok_and(|s| s.success());
    assert!(ok, "xdotool {args:?} failed (scripts/install-deps.sh test installs it)");
}

/// A screenshot of the whole screen, saved as test-artifacts/`name`.
pub fn screenshot(display: &str, name: &str) -> RgbaImage {
    let path = artifacts().join(name);
    let ok = Process::new("import")
        .args(["-window", "root"])
        .arg(&path)
        .env("DISPLAY", display)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ImageMagick's import took no screenshot");
    image::open(&path).expect("the screenshot decodes").to_rgba8()
}

/// The window's title (`_NET_WM_NAME`), which the app keeps as "Peercall — <me> in <room> — <call>".
pub fn window_title(display: &str) -> Option<String> {
    let tree = Process::new("xwininfo").args(["-root", "-tree"]).env("DISPLAY", display).output().ok()?;
    let tree = String::from_utf8_lossy(&tree.stdout);
    let id = tree
        .lines()
        .find(|l| l.contains("\"peercall\")") && l.contains("Peercall"))?
        .split_whitespace()
        .next()?;
    let prop =
        Process::new("xprop").args(["-id", id, "_NET_WM_NAME"]).env("DISPLAY", display).output().ok()?;
    let prop = String::from_utf8_lossy(&prop.stdout);
    Some(prop.split_once(" = ")?.1.trim().trim_matches('"').to_owned())
}

/// Waits for the window's title to satisfy `pred`; returns it.
pub async fn wait_title(display: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    super::within(20, what, async {
        loop {
            if let Some(title) = window_title(display).filter(|t| pred(t)) {
                return title;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

/// The loudest sample in the next `chunks` 20 ms chunks of received audio (the newest ones, if more
/// are queued than fit).
pub async fn loudest(
    audio: &mut tokio::sync::broadcast::Receiver<peercall::media::frame::AudioChunk>,
    chunks: usize,
) -> i32 {
    let mut peak = 0;
    for _ in 0..chunks {
        let chunk = super::within(5, "remote audio", async {
            loop {
                match audio.recv().await {
                    Ok(chunk) => return chunk,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(e) => panic!("audio stream ended: {e}"),
                }
            }
        })
        .await;
        peak = chunk.iter().map(|s| (*s as i32).abs()).max().unwrap_or(0).max(peak);
    }
    peak
}
