//! Carries the engine's output to the UI thread without it ever waiting: a task forwards events into
//! a std channel and wakes the window; new pictures only wake it (the UI takes the latest one itself).

use crate::call::{Engine, EngineError, Event};
use eframe::egui;
use std::sync::mpsc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::oneshot;

/// How soon after an event or a new picture the window repaints.
const WAKE_DELAY: Duration = Duration::from_millis(1);

/// The UI's end of the bridge. Dropping it stops the forwarding task.
pub struct Bridge {
    /// Engine events, in order; drained once per frame.
    pub events: mpsc::Receiver<Event>,
    _stop: oneshot::Sender<()>,
}

/// Starts forwarding `engine`'s events and picture changes to `ctx`.
pub fn start(rt: &Handle, engine: &Engine, ctx: egui::Context) -> Bridge {
    let (tx, events) = mpsc::channel();
    let (stop_tx, mut stop) = oneshot::channel::<()>();
    let mut engine_events = engine.subscribe();
    let mut remote = engine.remote_video();
    let mut local = engine.local_video();
    rt.spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stop => return,
                event = engine_events.recv() => match event {
                    Ok(event) => {
                        if tx.send(event).is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        let _ = tx.send(Event::Error(EngineError::MissedEvents(n)));
                    }
                    Err(RecvError::Closed) => return,
                },
                changed = remote.changed() => if changed.is_err() { return },
                changed = local.changed() => if changed.is_err() { return },
            }
            // Not `request_repaint()`: egui answers that with two passes ("to let things settle"),
            // which would draw every video frame twice. A non-zero delay asks for exactly one.
            ctx.request_repaint_after(WAKE_DELAY);
        }
    });
    Bridge { events, _stop: stop_tx }
}
