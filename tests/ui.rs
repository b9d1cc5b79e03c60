//! The window as a person sees it: the real `peercall` binary in a real X server (Xvfb), joined to
//! the server it embeds; a headless engine calls it, it answers by itself, and a screenshot must show
//! the caller's moving pattern in the remote pane (stamp decoded from the screen's pixels, colour bars
//! where they belong) and the caller's row marked in the user list. Screenshots go to test-artifacts/.

mod common;

use common::desktop::{artifacts, free_port, loudest, screenshot, start_xvfb, wait_title, xdotool, Reaped};
use common::{wait_event, wait_state, wait_users, within};
use image::RgbaImage;
use peercall::call::{CallState, Command, EndReason, Engine, EngineConfig, Event};
use peercall::media::frame::RgbaFrame;
use peercall::media::pattern::read_stamp;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The pane behind the video (`views::palette::PANE`): how the test finds the video on screen.
const PANE: [u8; 3] = [18, 18, 22];
/// The fill of the call peer's row in the user list (`views::palette::PEER_ROW`).
const PEER_ROW: [u8; 3] = [21, 94, 53];
/// The window's title when it is in the lobby as "window" with no call.
const IDLE: &str = "Peercall \u{2014} window in lobby";
/// The caller's picture.
const VIDEO: (usize, usize, u32) = (1280, 720, 30);

/// Starts the app in the window as "window", joined to the server it embeds on `port`, with `extra`
/// flags. Its stdout lines (`--frame-stats`) are collected into the returned list.
fn start_app(display: &str, port: u16, extra: &[&str], log: &str) -> (Reaped, Arc<Mutex<Vec<String>>>) {
    let config_home = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ui-config-{port}"));
    let log = std::fs::File::create(artifacts().join(log)).expect("log file");
    let mut child = Process::new(env!("CARGO_BIN_EXE_peercall"))
        .args(["--name", "window", "--server", &format!("ws://127.0.0.1:{port}/"), "--join"])
        .args(["--bind", "127.0.0.1:0"])
        .args(extra)
        .env("DISPLAY", display)
        .env("XDG_CONFIG_HOME", &config_home)
        .env_remove("WAYLAND_DISPLAY")
        .env("RUST_LOG", "peercall=info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("the peercall binary starts");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().expect("piped stdout");
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().expect("lines lock").push(line);
        }
    });
    (Reaped(child), lines)
}

fn near(p: &image::Rgba<u8>, c: [u8; 3], tolerance: i32) -> bool {
    (0..3).all(|i| (p[i] as i32 - c[i] as i32).abs() <= tolerance)
}

/// The bounding box of the video pane's background colour: the pane (x0, y0, x1, y1).
fn find_pane(img: &RgbaImage) -> (u32, u32, u32, u32) {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in img.enumerate_pixels() {
        if near(p, PANE, 0) {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    assert!(x1 > x0 + 200 && y1 > y0 + 150, "no video pane on screen");
    (x0, y0, x1 + 1, y1 + 1)
}

/// The video's rect inside the pane, as the app fits it (aspect kept, centred).
fn video_rect(pane: (u32, u32, u32, u32), w: usize, h: usize) -> (f32, f32, f32) {
    let (pw, ph) = ((pane.2 - pane.0) as f32, (pane.3 - pane.1) as f32);
    let scale = (pw / w as f32).min(ph / h as f32);
    let left = pane.0 as f32 + (pw - w as f32 * scale) / 2.0;
    let top = pane.1 as f32 + (ph - h as f32 * scale) / 2.0;
    (left, top, scale)
}

/// The screen's picture of the video, sampled back to the video's own size.
fn grab_video(img: &RgbaImage, rect: (f32, f32, f32), w: usize, h: usize) -> RgbaFrame {
    let (left, top, scale) = rect;
    let mut pixels = Vec::with_capacity(w * h * 4);
    for y in 0..h {
        for x in 0..w {
            let sx = (left + (x as f32 + 0.5) * scale) as u32;
            let sy = (top + (y as f32 + 0.5) * scale) as u32;
            pixels.extend_from_slice(&img.get_pixel(sx.min(img.width() - 1), sy.min(img.height() - 1)).0);
        }
    }
    RgbaFrame {
        width: w,
        height: h,
        pixels: pixels.into(),
        keyframe: false,
        decoded_at_us: 0,
        decode_time: Duration::ZERO,
    }
}

/// How many of the pattern's seven coloured 75% bars appear along a row of the video.
fn bars_on_row(frame: &RgbaFrame, y: usize) -> usize {
    const BARS: [[u8; 3]; 7] =
        [[191, 191, 191], [191, 191, 0], [0, 191, 191], [0, 191, 0], [191, 0, 191], [191, 0, 0], [0, 0, 191]];
    BARS.iter()
        .filter(|bar| {
            (0..frame.width).any(|x| {
                let i = (y * frame.width + x) * 4;
                (0..3).all(|c| (frame.pixels[i + c] as i32 - bar[c] as i32).abs() <= 40)
            })
        })
        .count()
}

fn peer_row_pixels(img: &RgbaImage, x_end: u32, y0: u32, y1: u32) -> usize {
    (y0..y1)
        .flat_map(|y| (0..x_end).map(move |x| (x, y)))
        .filter(|&(x, y)| near(img.get_pixel(x, y), PEER_ROW, 3))
        .count()
}

/// CPU seconds a process (or, with `/task/<tid>`, one of its threads) has used, user + system.
fn cpu_seconds(proc_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{proc_path}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// A headless caller on the window's embedded server, once both are in the room.
async fn join_caller(port: u16, display: &str) -> Engine {
    let url = format!("ws://127.0.0.1:{port}/");
    let mut config = EngineConfig::new("caller", &url).with_pattern(VIDEO.0, VIDEO.1, VIDEO.2);
    config.peer.bind_addrs = vec!["127.0.0.1:0".to_owned()];
    let caller = within(20, "the embedded server to accept a client", async {
        let caller = Engine::start(config);
        wait_users(&caller, &["caller", "window"]).await;
        caller
    })
    .await;
    wait_title(display, "the window to register", |t| t == IDLE).await;
    caller
}

/// Presses Esc in the window; returns why the caller's call ended.
async fn press_escape(
    display: &str,
    caller_events: &mut tokio::sync::broadcast::Receiver<Event>,
) -> EndReason {
    xdotool(display, &["key", "Escape"]);
    common::wait_ended(caller_events, "the call to end").await
}

/// The two window tests share the machine's two cores: one at a time, so the figures mean something.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enter_sends_chat_esc_declines_and_a_click_calls() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (_xvfb, display) = start_xvfb("1600x1000x24");
    let port = free_port();
    let (_app, _) = start_app(&display, port, &["--video", "320x240@15"], "ui-app-prompt.log");
    let caller = join_caller(port, &display).await;
    let mut events = caller.subscribe();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Without a window manager nobody gives the window the keyboard: take it, as a click would.
    xdotool(&display, &["search", "--class", "peercall", "windowfocus", "--sync"]);
    // Click into the chat line (bottom of the left column of the 1120x720 window), type, press Enter.
    xdotool(&display, &["mousemove", "120", "670", "click", "1"]);
    xdotool(&display, &["type", "--delay", "20", "hello from the window"]);
    xdotool(&display, &["key", "Return"]);
    let chat = wait_event(&mut events, "the window's chat line", |e| match e {
        Event::Chat { from, text } if from == "window" => Some(text.clone()),
        _ => None,
    })
    .await;
    assert_eq!(chat, "hello from the window");

    // A call rings with a prompt (no auto-answer); Esc declines it and the caller is told.
    caller.send(Command::Call("window".into()));
    wait_title(&display, "the prompt", |t| t.ends_with("caller is calling")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    screenshot(&display, "ui-incoming-call.png");
    assert_eq!(press_escape(&display, &mut events).await, EndReason::Declined);
    wait_title(&display, "the window back to idle", |t| t == IDLE).await;

    // A click on the caller's name (the second row of the user list) calls it; the caller declines
    // and the window goes back to idle (its status line says "caller declined the call").
    xdotool(&display, &["mousemove", "100", "126", "click", "1"]);
    wait_state(
        &caller,
        "the window's call to ring",
        |s| matches!(s, CallState::Ringing { peer } if peer == "window"),
    )
    .await;
    wait_title(&display, "the window calling", |t| t.ends_with("calling caller")).await;
    caller.send(Command::Decline);
    wait_title(&display, "the window back to idle", |t| t == IDLE).await;
    screenshot(&display, "ui-declined.png");
    caller.send(Command::Shutdown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_is_used_and_a_taken_name_is_shown() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // A server already answers on the port (as a second window's would): the app uses it instead of
    // embedding its own, and "window" is taken there.
    let (_server, url) = common::start_server().await;
    let port: u16 = url.trim_end_matches('/').rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let first = Engine::start(common::config("window", &url));
    wait_users(&first, &["window"]).await;
    let (_xvfb, display) = start_xvfb("1600x1000x24");
    let (_app, _) = start_app(&display, port, &["--video", "320x240@15"], "ui-app-name.log");
    // The title may show the name asked for until the server's answer renames it: wait for the rename
    // (a window that kept "window" never gets there, and the wait fails).
    let title = wait_title(&display, "the window to register under another name", |t| {
        t.starts_with("Peercall \u{2014} window") && !t.starts_with("Peercall \u{2014} window in ")
    })
    .await;
    let given = title.trim_start_matches("Peercall \u{2014} ").trim_end_matches(" in lobby").to_owned();
    assert_ne!(given, "window", "the server gave the window another name");
    wait_users(&first, &["window", &given]).await;
    screenshot(&display, "ui-name-taken.png");
    let log = std::fs::read_to_string(artifacts().join("ui-app-name.log")).unwrap_or_default();
    assert!(!log.contains("serving the built-in signaling server"), "no second server was started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_answers_and_shows_the_callers_picture() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (_xvfb, display) = start_xvfb("1600x1000x24");
    let port = free_port();
    let flags = ["--auto-answer", "--video", "1280x720@30", "--frame-stats"];
    let (app, stats_lines) = start_app(&display, port, &flags, "ui-app.log");
    let pid = app.0.id();
    // The app serves the signaling server itself: a headless caller joins it.
    let caller = join_caller(port, &display).await;
    // Let the window draw the new user list before the "before" picture.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = screenshot(&display, "ui-before-call.png");

    caller.send(Command::Call("window".into()));
    wait_state(&caller, "the window to answer", |s| matches!(s, CallState::InCall { .. })).await;
    let title =
        wait_title(&display, "the window's title to show the call", |t| t.contains("in call with caller"))
            .await;
    assert_eq!(title, format!("{IDLE} \u{2014} in call with caller"));

    // Frames flow for a while; then look at the screen.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The main thread is the UI thread (eframe runs on it).
    let (whole, ui_thread) = (pid.to_string(), format!("{pid}/task/{pid}"));
    let (cpu_start, ui_start, measured_from) = (cpu_seconds(&whole), cpu_seconds(&ui_thread), Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let secs = measured_from.elapsed().as_secs_f64();
    let cpu = cpu_start.zip(cpu_seconds(&whole)).map(|(a, b)| (b - a) / secs);
    let ui_cpu = ui_start.zip(cpu_seconds(&ui_thread)).map(|(a, b)| (b - a) / secs);
    let rss = rss_kib(pid);
    let img = screenshot(&display, "ui-in-call.png");
    let pane = find_pane(&img);
    let rect = video_rect(pane, VIDEO.0, VIDEO.1);
    let video = grab_video(&img, rect, VIDEO.0, VIDEO.1);
    image::save_buffer(
        artifacts().join("ui-remote-pane.png"),
        &video.pixels,
        VIDEO.0 as u32,
        VIDEO.1 as u32,
        image::ExtendedColorType::Rgba8,
    )
    .expect("pane crop saved");

    // The remote pane shows the caller's pattern: its stamp decodes from the screen, and its colour
    // bars run across the middle of the picture.
    let stamp = read_stamp(&video).expect("the caller's stamp reads from the window's remote pane");
    assert!(stamp.frame_no > 30, "a moving picture: frame {} shown after 6 s", stamp.frame_no);
    let bars = bars_on_row(&video, VIDEO.1 / 2);
    assert!(bars >= 6, "{bars} of 7 colour bars across the remote pane");

    // The user list marks the caller's row as the call's peer (it was not marked before the call).
    let (row_before, row_now) =
        (peer_row_pixels(&before, pane.0, pane.1, pane.3), peer_row_pixels(&img, pane.0, pane.1, pane.3));
    assert!(row_before == 0 && row_now > 1000, "caller's row marked: {row_before} -> {row_now} pixels");

    // Figures for docs/figures-window.md.
    let lines = stats_lines.lock().expect("lines lock").clone();
    let last = lines.iter().rev().find(|l| l.starts_with("frame-stats")).cloned().unwrap_or_default();
    let figures = format!(
        "720p call under Xvfb: {last}; app RSS {} MiB; app CPU {} s/s, UI thread {} s/s; \
         stamp frame {} read from the screen\n",
        rss.map(|k| format!("{:.0}", k as f64 / 1024.0)).unwrap_or_else(|| "?".into()),
        cpu.map(|c| format!("{c:.2}")).unwrap_or_else(|| "?".into()),
        ui_cpu.map(|c| format!("{c:.2}")).unwrap_or_else(|| "?".into()),
        stamp.frame_no
    );
    print!("{figures}");
    std::fs::write(artifacts().join("ui-figures.txt"), figures).expect("figures saved");

    // M mutes the window's microphone: the caller hears its tone, then silence.
    let mut audio = caller.remote_audio();
    assert!(loudest(&mut audio, 10).await > 1000, "the window's tone reaches the caller");
    xdotool(&display, &["search", "--class", "peercall", "windowfocus", "--sync"]);
    xdotool(&display, &["key", "m"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    audio = audio.resubscribe(); // only what comes from now on
    assert!(loudest(&mut audio, 10).await < 100, "after M the caller hears silence");

    // Esc hangs up: the caller is told, and the window goes back to idle.
    let mut events = caller.subscribe();
    assert_eq!(press_escape(&display, &mut events).await, EndReason::RemoteHungUp);
    wait_title(&display, "the window to see the hang-up", |t| t == IDLE).await;
    screenshot(&display, "ui-after-call.png");
    caller.send(Command::Shutdown);
}

/// The picker's thumbnail of the notes window: the densest patch of its magenta block left of
/// `x_end` (the app window; the real notes window is to its right).
fn magenta_patch(img: &RgbaImage, x_end: u32) -> Option<(u32, u32)> {
    // Tight: the caller's pattern has a 75 % magenta bar (191, 0, 191) in the video pane.
    let magenta = |x: u32, y: u32| near(img.get_pixel(x, y), common::xpicture::NOTES_ACCENT, 12);
    let mut best = (0, None);
    for y in (6..img.height() - 6).step_by(2) {
        for x in (6..x_end.min(img.width() - 6)).step_by(2) {
            if !magenta(x, y) {
                continue;
            }
            let around = (y - 6..y + 6).flat_map(|v| (x - 6..x + 6).map(move |u| (u, v)));
            let count = around.filter(|&(u, v)| magenta(u, v)).count();
            if count > best.0 {
                best = (count, Some((x, y)));
            }
        }
    }
    best.1.filter(|_| best.0 > 60)
}

/// Runs of the red fill (Hang Up, Stop sharing) along row `y` between `x0` and `x1`.
fn red_buttons(img: &RgbaImage, y: u32, x0: u32, x1: u32) -> Vec<(u32, u32)> {
    const RED: [u8; 3] = [220, 38, 38];
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for x in x0..x1 {
        if near(img.get_pixel(x, y), RED, 6) {
            match runs.last_mut() {
                Some(run) if run.1 + 1 == x => run.1 = x,
                _ => runs.push((x, x)),
            }
        }
    }
    runs.into_iter().filter(|(a, b)| b - a > 40).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_picker_shares_the_chosen_window_only_and_stop_returns_to_the_camera() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (_xvfb, display) = start_xvfb("1600x1000x24");
    // A named window right of where the app's window opens (1120x720 at the top left).
    let painter = common::xpicture::Painter::connect(&display);
    let notes_picture = common::xpicture::known_picture(400, 260, 2, common::xpicture::NOTES_ACCENT);
    painter.window("Peercall test notes", (1160, 700), (400, 260), &notes_picture);
    let port = free_port();
    let (_app, _lines) =
        start_app(&display, port, &["--auto-answer", "--video", "640x480@30"], "ui-share.log");
    let caller = join_caller(port, &display).await;
    caller.send(Command::Call("window".into()));
    wait_state(&caller, "the window to answer", |s| matches!(s, CallState::InCall { .. })).await;
    let mut video = caller.remote_video();
    let wait_size = |w: usize, h: usize, what: &'static str| {
        let mut video = video.clone();
        async move {
            within(15, what, async {
                loop {
                    if let Some(f) =
                        video.borrow_and_update().clone().filter(|f| (f.width, f.height) == (w, h))
                    {
                        return f;
                    }
                    video.changed().await.expect("caller alive");
                }
            })
            .await
        }
    };
    wait_size(640, 480, "the window's camera (pattern)").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let in_call = screenshot(&display, "ui-share-in-call.png");
    let pane = find_pane(&in_call);
    let controls_y = pane.3 + 6 + 15;
    assert_eq!(red_buttons(&in_call, controls_y, pane.0, pane.2).len(), 1, "Hang Up only, before sharing");

    // S opens the picker (the Share screen button does the same); the notes window's thumbnail is
    // found by its magenta block and clicked.
    xdotool(&display, &["search", "--class", "peercall", "windowfocus", "--sync"]);
    xdotool(&display, &["key", "s"]);
    // The picker grabs a thumbnail of each screen and window, then fades in.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let picker = screenshot(&display, "ui-share-picker.png");
    let (x, y) = magenta_patch(&picker, 1120).expect("the picker shows the notes window's thumbnail");
    xdotool(&display, &["mousemove", &x.to_string(), &y.to_string(), "click", "1"]);

    // The caller now receives the window alone, at its own size, matching the screen.
    wait_size(400, 260, "the shared window at the caller").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let frame = wait_size(400, 260, "the shared window at the caller").await;
    let sharing = screenshot(&display, "ui-sharing.png");
    let psnr = common::xpicture::psnr_against_screenshot(&frame, &sharing, (1160, 700), (0, 0, 400, 260));
    // Measured 33–35 dB (see tests/screen.rs); a wrong picture scores under 12.
    assert!(psnr > 27.0, "the caller sees the notes window: {psnr:.1} dB");
    let red = red_buttons(&sharing, controls_y, pane.0, pane.2);
    assert_eq!(red.len(), 2, "Hang Up and Stop sharing while sharing: {red:?}");

    // Stop sharing: the caller gets the window's camera back, in the same call.
    let stop = red[1];
    xdotool(
        &display,
        &["mousemove", &((stop.0 + stop.1) / 2).to_string(), &controls_y.to_string(), "click", "1"],
    );
    let camera = wait_size(640, 480, "the camera after Stop").await;
    assert!(read_stamp(&camera).is_some(), "the window's stamped pattern again");
    assert!(matches!(caller.state().borrow().clone(), CallState::InCall { .. }));
    video.borrow_and_update();
    screenshot(&display, "ui-share-stopped.png");
    caller.send(Command::Shutdown);
}
