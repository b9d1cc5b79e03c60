//! The headless front end: places or takes one call with the engine and prints what happens, one
//! line per event and a stats line a second. Bots, tests and benchmarks use the engine the same way.

use crate::call::{CallState, Command, Engine, EngineConfig, Event};
use crate::media::devices::{DeviceChoice, MediaDevices, Speaker};
use crate::media::frame::RgbaFrame;
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
}

/// Runs the engine headless until Ctrl-C, or until the planned call is over.
pub async fn run(config: EngineConfig, plan: HeadlessPlan) -> anyhow::Result<()> {
    let engine = Engine::start(config);
    let mut events = engine.subscribe();
    print_first_pictures(engine.remote_video());
    if let Some(devices) = &plan.devices {
        print_device_changes(devices.video_status());
        print_device_changes(devices.audio_status());
    }
    // Kept alive for the run; a speaker that cannot open is said once and the call goes on silent.
    let _speaker =
        plan.speaker.as_ref().and_then(|id| match Speaker::play(id.as_deref(), engine.remote_audio()) {
            Ok(s) => {
                println!("speaker: {} ({:?})", s.name(), s.format());
                Some(s)
            }
            Err(e) => {
                println!("speaker: {e}; the far side's audio is not played");
                None
            }
        });
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
                engine.send(Command::HangUp);
                hang_up_at = None;
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
                    engine.send(Command::Call(target.clone()));
                }
            }
            Event::CallState(CallState::InCall { .. }) => {
                if let Some(d) = plan.duration {
                    hang_up_at = Some(tokio::time::Instant::now() + d);
                }
            }
            Event::CallEnded { .. } if plan.exit_after_call => {
                engine.shutdown().await;
                return Ok(());
            }
            _ => {}
        }
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
