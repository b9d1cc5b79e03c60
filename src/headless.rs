//! The headless front end: places or takes one call with the engine and prints what happens, one
//! line per event and a stats line a second, and at each call's end one `summary:` line of the
//! receiver's figures ([`crate::call::quality`]). Bots, tests and benchmarks use the engine the same way.

use crate::call::quality::{CallQuality, Expected, ShownFrame};
use crate::call::{CallState, Command, Counters, Engine, EngineConfig, Event};
use crate::media::devices::{DeviceChoice, MediaDevices, PacedPlayout, Speaker};
use crate::media::frame::{now_us, RgbaFrame};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// What the headless run should do.
#[derive(Clone, Debug)]
pub struct HeadlessPlan {
    /// Call this user once they are online.
    pub call: Option<String>,
    /// Hang up after this long in a call (and exit); `None` runs until Ctrl-C.
    pub duration: Option<Duration>,
    /// Exit when the first call ends.
    pub exit_after_call: bool,
    /// Play the far side's audio on a speaker: `Some(None)` the default one, `Some(Some(id))` that one.
    pub speaker: Option<Option<String>>,
    /// The camera and microphone the config's sources come from, to print which is in use and why.
    pub devices: Option<MediaDevices>,
    /// What the far side is taken to send (size and rate), for the summary's freeze threshold and
    /// "size held"; peers of a benchmark send what we send.
    pub expected: Expected,
}

/// One call's figures while it runs: what [`CallQuality`] needs from the engine besides pictures.
struct Measured {
    quality: CallQuality,
    counters: Option<Arc<Counters>>,
    rtx: Option<u64>,
}

impl Measured {
    fn new(expected: Expected) -> Measured {
        Measured { quality: CallQuality::new(expected), counters: None, rtx: None }
    }

    /// Prints the `summary:` line: the call's receiver figures up to now.
    fn print(&self) {
        let bytes = self.counters.as_ref().map_or(0, |c| c.video_bytes_received.load(Ordering::Relaxed));
        println!("summary: {}", self.quality.summary(now_us(), bytes, self.rtx));
    }
}

/// Runs the engine headless until Ctrl-C, or until the planned call is over.
pub async fn run(config: EngineConfig, plan: HeadlessPlan) -> anyhow::Result<()> {
    let engine = Engine::start(config);
    let mut events = engine.subscribe();
    let mut frames = engine.frames_shown();
    // The call being measured, from the click (or the ring) to its summary.
    let mut measured: Option<Measured> = None;
    print_first_pictures(engine.remote_video());
    if let Some(devices) = &plan.devices {
        print_device_changes(devices.video_status());
        print_device_changes(devices.audio_status());
        print_screen_changes(devices.screen_status());
    }
    // Kept alive for the run; a speaker that cannot open is said once and the call goes on silent.
    let speaker = plan.speaker.as_ref().and_then(|id| {
        // What the speaker plays is the echo canceller's reference (when a microphone is used).
        let reference = plan.devices.as_ref().map(|d| d.processing().reference().clone());
        match Speaker::play_with_reference(id.as_deref(), engine.remote_audio(), reference) {
            Ok(s) => {
                println!("speaker: {} ({:?})", s.name(), s.format());
                Some(s)
            }
            Err(e) => {
                println!("speaker: {e}; the far side's audio is not played");
                None
            }
        }
    });
    // With no speaker, the far side's audio still goes through a playout buffer at the real-time
    // pace, so the figures say what a listener would hear.
    let _playout = if speaker.is_none() { start_paced_playout(&engine) } else { None };
    let mut dialled = false;
    let mut hang_up_at: Option<tokio::time::Instant> = None;
    loop {
        let hang_up = async {
            match hang_up_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                println!("interrupted: hanging up");
                // Returns once the hang-up has gone out and the server connection is closed.
                engine.shutdown().await;
                return Ok(());
            }
            _ = hang_up => {
                println!("duration reached: hanging up");
                if let Some(m) = measured.take() {
                    m.print();
                }
                engine.send(Command::HangUp);
                hang_up_at = None;
                continue;
            }
            frame = frames.recv() => {
                match frame {
                    Ok(frame) => note_frame(&mut measured, &frame),
                    Err(RecvError::Lagged(n)) => println!("(skipped {n} pictures in the figures)"),
                    Err(RecvError::Closed) => {}
                }
                continue;
            }
            event = events.recv() => event,
        };
        let event = match event {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                println!("(skipped {n} events)");
                continue;
            }
            Err(RecvError::Closed) => return Ok(()),
        };
        print_event(&event);
        match &event {
            Event::UserList(users) => {
                if let Some(target) = plan.call.as_ref().filter(|t| !dialled && users.contains(t)) {
                    dialled = true;
                    println!("calling {target}");
                    let mut m = Measured::new(plan.expected);
                    m.quality.clicked(now_us());
                    measured = Some(m);
                    engine.send(Command::Call(target.clone()));
                }
            }
            Event::IncomingCall { .. } => measured = Some(Measured::new(plan.expected)),
            Event::Stats(stats) => {
                if let Some(m) = measured.as_mut() {
                    m.quality.second(stats);
                    m.rtx = (stats.rtx_received > 0).then_some(stats.rtx_bytes_received);
                }
            }
            Event::CallState(CallState::InCall { .. }) => {
                let m = measured.get_or_insert_with(|| Measured::new(plan.expected));
                m.counters = engine.counters().borrow().clone();
                if let Some(d) = plan.duration {
                    hang_up_at = Some(tokio::time::Instant::now() + d);
                }
            }
            Event::CallEnded { .. } => {
                if let Some(m) = measured.take() {
                    m.print();
                }
                if plan.exit_after_call {
                    engine.shutdown().await;
                    return Ok(());
                }
            }
            _ => {}
        }
    }
}

/// Plays the remote audio into nothing at the real-time pace, its depth and dry runs into the
/// current call's counters (so into the stats and summary lines).
fn start_paced_playout(engine: &Engine) -> Option<PacedPlayout> {
    let counters = engine.counters();
    let report = move |level: crate::media::devices::PlayoutLevel| {
        if let Some(c) = counters.borrow().as_ref() {
            // 0 stands for "no playout running": a dry buffer is a depth of 1 µs.
            c.audio_playout_us.store(((level.depth_ms * 1000.0) as u64).max(1), Ordering::Relaxed);
            c.audio_underruns.store(level.stats.underruns, Ordering::Relaxed);
        }
    };
    match PacedPlayout::start(engine.remote_audio(), report) {
        Ok(p) => Some(p),
        Err(e) => {
            println!("audio playout: could not start ({e}); its figures are missing");
            None
        }
    }
}

/// Counts a shown picture into the call being measured, if one is (after its summary, the pictures
/// until the hang-up takes effect are not).
fn note_frame(measured: &mut Option<Measured>, frame: &ShownFrame) {
    if let Some(m) = measured.as_mut() {
        m.quality.frame(frame);
    }
}

/// Prints which source a device slot uses, now and whenever it changes (with the reason for a fallback).
fn print_device_changes(mut status: tokio::sync::watch::Receiver<DeviceChoice>) {
    tokio::spawn(async move {
        loop {
            let choice = status.borrow_and_update().clone();
            match &choice.notice {
                Some(notice) => println!("{:?}: {} ({notice})", choice.kind, choice.source),
                None => println!("{:?}: {}", choice.kind, choice.source),
            }
            if status.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Prints what is shared, whenever it changes, and why sharing stopped or could not start.
fn print_screen_changes(mut status: tokio::sync::watch::Receiver<crate::media::devices::ScreenShare>) {
    tokio::spawn(async move {
        while status.changed().await.is_ok() {
            let share = status.borrow_and_update().clone();
            if let Some(target) = &share.sharing {
                println!("sharing: {} {} ({}x{})", target.id, target.name, target.width, target.height);
            }
            if let Some(notice) = &share.notice {
                println!("sharing stopped: {notice}");
            }
        }
    });
}

/// Prints a line when a call's first remote picture is decoded: the stats line comes once a second,
/// too coarse to time call setup by (tests and scripts take this line's arrival as "video is up").
fn print_first_pictures(mut video: tokio::sync::watch::Receiver<Option<RgbaFrame>>) {
    tokio::spawn(async move {
        // The slot is emptied when a call begins and when it ends, so None → Some is a call's first picture.
        let mut showing = false;
        while video.changed().await.is_ok() {
            let size = video.borrow_and_update().as_ref().map(|f| (f.width, f.height));
            match size {
                Some((w, h)) if !showing => {
                    println!("video in: first picture {w}x{h}");
                    showing = true;
                }
                None => showing = false,
                Some(_) => {}
            }
        }
    });
}

fn print_event(event: &Event) {
    match event {
        Event::SignalingConnected { id } => println!("signaling connected (id {id})"),
        Event::Registered { name } => println!("logged in as {name}"),
        Event::SignalingLost { reason, retry_in } => {
            println!("signaling lost: {reason}; reconnecting in {:.1} s", retry_in.as_secs_f64())
        }
        Event::UserList(users) => println!("online: {}", users.join(", ")),
        Event::Chat { from, text } => println!("<{from}> {text}"),
        Event::IncomingCall { from } => println!("incoming call from {from}"),
        Event::CallState(state) => println!("call: {state}"),
        Event::Ice(state) => println!("ice: {state}"),
        Event::CallEnded { peer, reason } => println!("call with {peer} ended: {reason}"),
        Event::Stats(stats) => println!("stats: {stats}"),
        Event::Error(text) => println!("error: {text}"),
    }
}
