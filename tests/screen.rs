//! Screen sharing in real calls under Xvfb: a test X client puts a known picture on the screen (glyph
//! rows like text, 1-pixel lines, colour blocks), one engine shares it, and what the other engine
//! decodes must match a screenshot of the screen (ImageMagick's `import`, not our capture code).
//! In the same call: camera → screen → camera → one window → the window closes → back to the camera,
//! on the same track, the call never renegotiated. Screenshots go to test-artifacts/.

mod common;

use common::desktop::{screenshot, start_xvfb};
use common::xpicture::{known_picture, psnr_against_screenshot, text_area, Painter, NOTES_ACCENT};
use common::*;
use peercall::call::{CallState, Command, Engine};
use peercall::media::devices::{CameraSettings, MediaDevices, Selection};
use peercall::media::frame::RgbaFrame;
use peercall::media::pattern::read_stamp;
use peercall::media::screen::{Display, ScreenId};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const SCREEN: (usize, usize) = (1280, 800);
const NOTES: &str = "Peercall test notes";
const NOTES_AT: (i16, i16) = (820, 470);
const NOTES_SIZE: (u16, u16) = (400, 260);

/// The whole screen at PSNR over, and its text area. Measured here (H.264, openh264 screen mode at
/// its 2.3 Mbit/s start for 1280x800@15, 2 s after the switch): whole screen 30.9–31.6 dB, text area
/// 27.5–28.4 dB over 5 runs; the shared window 33–35 dB. The bounds leave ~3 dB for a slower machine
/// (fewer refinement frames); a wrong or stale picture (the camera's, or the screen before the
/// window) scores under 12 dB.
const MIN_SCREEN_DB: f64 = 27.0;
const MIN_TEXT_DB: f64 = 24.0;

/// A test desktop: Xvfb with a full-screen window of the known picture and a named window over it.
struct Desktop {
    _xvfb: common::desktop::Reaped,
    display: String,
    painter: Painter,
    notes: u32,
}

fn desktop() -> Desktop {
    let (xvfb, display) = start_xvfb(&format!("{}x{}x24", SCREEN.0, SCREEN.1));
    let painter = Painter::connect(&display);
    let background = known_picture(SCREEN.0, SCREEN.1, 1, [0, 200, 200]);
    painter.window("Peercall test desktop", (0, 0), (SCREEN.0 as u16, SCREEN.1 as u16), &background);
    let notes_picture = known_picture(NOTES_SIZE.0.into(), NOTES_SIZE.1.into(), 2, NOTES_ACCENT);
    let notes = painter.window(NOTES, NOTES_AT, NOTES_SIZE, &notes_picture);
    Desktop { _xvfb: xvfb, display, painter, notes }
}

/// Waits until bob's newest picture satisfies `pred`.
async fn wait_picture(engine: &Engine, what: &str, pred: impl Fn(&RgbaFrame) -> bool) -> RgbaFrame {
    let mut video = engine.remote_video();
    within(15, what, async {
        loop {
            if let Some(frame) = video.borrow_and_update().clone().filter(|f| pred(f)) {
                return frame;
            }
            video.changed().await.expect("engine alive");
        }
    })
    .await
}

fn decoded(engine: &Engine) -> u64 {
    engine.counters().borrow().as_ref().map_or(0, |c| c.frames_decoded.load(Ordering::Relaxed))
}

/// Alice, sending from `devices`, calls Bob, who answers by himself.
async fn call(url: &str, devices: &MediaDevices) -> (Engine, Engine) {
    let (alice, bob) = alice_with_devices_and_bob(url, devices).await;
    alice.send(Command::Call("bob".into()));
    (alice, bob)
}

fn camera_devices(display: Display) -> MediaDevices {
    // The camera is the 320x240 pattern (this machine has none): its stamp tells it apart.
    MediaDevices::new(
        Selection::Synthetic,
        Selection::Synthetic,
        CameraSettings { width: 320, height: 240, fps: 30 },
    )
    .with_display(display)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_screen_and_window_reach_the_far_side_and_the_camera_comes_back() {
    let desk = desktop();
    let devices = camera_devices(Display::X11(desk.display.clone()));
    let targets = devices.list_screens().expect("the Xvfb screen lists");
    assert_eq!(targets[0].name, "Screen 1 (1280x800)", "{targets:?}");
    let notes = targets.iter().find(|t| t.name == NOTES).expect("the named test window is listed");
    assert_eq!((notes.id, notes.width, notes.height), (ScreenId::Window(desk.notes), 400, 260));

    let (_server, url) = start_server().await;
    devices.share_screen(ScreenId::Screen(0));
    let (alice, bob) = call(&url, &devices).await;
    wait_state(&alice, "the call", |s| matches!(s, CallState::InCall { .. })).await;
    let full = |f: &RgbaFrame| (f.width, f.height) == SCREEN;
    wait_picture(&bob, "the shared screen at full size", full).await;
    let counters = bob.counters().borrow().clone().expect("bob's call counters");
    // Screen content is still: the pictures after the keyframe refine it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frame = wait_picture(&bob, "the shared screen", full).await;
    let shot = screenshot(&desk.display, "screen-share-screen.png");
    let whole = psnr_against_screenshot(&frame, &shot, (0, 0), (0, 0, SCREEN.0, SCREEN.1));
    // The notes window covers the bottom right; the text area is the desktop's, above it.
    let text = psnr_against_screenshot(&frame, &shot, (0, 0), text_area(SCREEN.0, SCREEN.1));
    eprintln!("shared screen at the far side: {whole:.1} dB whole, {text:.1} dB text area");
    assert!(whole > MIN_SCREEN_DB && text > MIN_TEXT_DB, "screen {whole:.1} dB, text {text:.1} dB");
    let status = devices.screen_status().borrow().clone();
    assert_eq!(status.sharing.map(|t| t.name).as_deref(), Some("Screen 1 (1280x800)"));

    // Stop: the camera (the stamped pattern) comes back on the same call.
    devices.stop_sharing();
    let camera = wait_picture(&bob, "the camera again", |f| (f.width, f.height) == (320, 240)).await;
    assert!(read_stamp(&camera).is_some(), "the far side shows the camera's stamped pattern");

    // One window: only it, at its own size.
    devices.share_screen(ScreenId::Window(desk.notes));
    let at_size = |f: &RgbaFrame| (f.width, f.height) == (400, 260);
    wait_picture(&bob, "the shared window", at_size).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let frame = wait_picture(&bob, "the shared window", at_size).await;
    let shot = screenshot(&desk.display, "screen-share-window.png");
    let origin = (NOTES_AT.0 as u32, NOTES_AT.1 as u32);
    let window = psnr_against_screenshot(&frame, &shot, origin, (0, 0, 400, 260));
    let window_text = psnr_against_screenshot(&frame, &shot, origin, text_area(400, 260));
    let elsewhere = psnr_against_screenshot(&frame, &shot, (0, 0), (0, 0, 400, 260));
    eprintln!("shared window: {window:.1} dB ({window_text:.1} dB text); against the screen's corner {elsewhere:.1} dB");
    assert!(
        window > MIN_SCREEN_DB && window_text > MIN_TEXT_DB,
        "window {window:.1} dB, text {window_text:.1} dB"
    );
    assert!(elsewhere < window - 6.0, "the window, not another part of the screen: {elsewhere:.1} dB");

    // The window closes: back to the camera, with a notice, and the call goes on.
    let before = decoded(&bob);
    let mut status = devices.screen_status();
    desk.painter.close(desk.notes);
    let notice = within(10, "the notice", async {
        loop {
            if let Some(n) = status.borrow_and_update().notice.clone() {
                return n;
            }
            status.changed().await.expect("devices alive");
        }
    })
    .await;
    assert_eq!(notice, format!("the shared window \"{NOTES}\" closed: back to the camera"));
    let camera =
        wait_picture(&bob, "the camera after the window closed", |f| (f.width, f.height) == (320, 240)).await;
    assert!(read_stamp(&camera).is_some());
    wait_frames(&bob, before + 15).await;
    assert!(matches!(alice.state().borrow().clone(), CallState::InCall { .. }));
    let same_call = bob.counters().borrow().clone().expect("still in the call");
    assert!(Arc::ptr_eq(&counters, &same_call), "one call throughout: no new call, no renegotiation");
    assert!(counters.keyframes_decoded.load(Ordering::Relaxed) >= 4, "a keyframe with each new source");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_display_is_said_in_words_and_the_camera_goes_on() {
    let devices = camera_devices(Display::None);
    let (_server, url) = start_server().await;
    devices.share_screen(ScreenId::Screen(0));
    let (alice, bob) = call(&url, &devices).await;
    let camera = wait_picture(&bob, "the camera", |f| (f.width, f.height) == (320, 240)).await;
    assert!(read_stamp(&camera).is_some());
    let status = devices.screen_status().borrow().clone();
    assert_eq!(
        status.notice.as_deref(),
        Some(
            "could not share screen:0: no display to share: this session has no X11 or Wayland display \
             (DISPLAY and WAYLAND_DISPLAY are unset); the camera goes on"
        ),
        "{status:?}"
    );
    assert!(status.sharing.is_none());
    assert!(matches!(alice.state().borrow().clone(), CallState::InCall { .. }));
}
