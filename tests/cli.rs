//! The `peercall` binary's command line: a bad `--video-file` is refused, with the file and what is
//! wrong, before anything starts (no signaling, no call, exit status 1).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A file under the test build's scratch space.
fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, bytes).expect("scratch file written");
    path
}

/// Runs `peercall --headless` with a server nothing answers on (a started engine would retry it
/// for ever), and returns its exit status, stdout and stderr; fails if it is still running after 20 s.
fn headless(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_peercall"))
        .args(["--headless", "--server", "ws://127.0.0.1:9/", "--bind", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("peercall starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("peercall {args:?} still runs after 20 s: {}", String::from_utf8_lossy(&out.stdout));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_video_file_is_refused_before_anything_starts() {
    let mut truncated = b"YUV4MPEG2 W64 H48 F30:1\nFRAME\n".to_vec();
    truncated.extend(std::iter::repeat_n(128u8, 1000));
    let cases = [
        (Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-clip.y4m"), "No such file"),
        (
            scratch_file("clip-444.y4m", b"YUV4MPEG2 W64 H48 F30:1 C444\nFRAME\n"),
            "colour space C444 is not 4:2:0",
        ),
        (scratch_file("clip-cut.y4m", &truncated), "frame 0 is cut off: 1000 of 4608 bytes"),
        (scratch_file("clip-header.y4m", b"YUV4MPEG2 W64"), "header line is cut off"),
    ];
    for (path, why) in cases {
        let path = path.to_string_lossy();
        let (status, stdout, stderr) = headless(&["--video-file", &path]);
        assert_eq!(status.code(), Some(1), "{path}: {stderr}");
        assert!(
            stderr.contains(&format!("peercall: video file {path}: ")) && stderr.contains(why),
            "{path}: {stderr}"
        );
        assert!(
            !stdout.contains("signaling"),
            "{path}: nothing may start before the file is checked: {stdout}"
        );
    }
}

#[test]
fn a_video_file_and_a_scene_together_are_refused() {
    let (status, _, stderr) = headless(&["--video-file", "x.y4m", "--video-scene", "camera"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}
