//! [`ScreenSource`]: a shared screen or window as a video source. A thread of its own grabs and
//! converts at the sharing rate and leaves only the newest picture in a one-slot mailbox: when the
//! encoder is slower than the capture (1080p on a busy machine), older pictures are dropped, never
//! queued, so what the far side sees is at most one frame old.

use super::{Capturer, Display, ScreenError, ScreenId};
use crate::media::frame::I420Frame;
use crate::media::source::{pace, VideoContent, VideoSource};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Pictures a second captured while sharing: screen content changes in steps (typing, scrolling, a
/// slide), so 15 is plenty.
pub const SHARING_FPS: u32 = 15;

#[derive(Default)]
struct Mailbox {
    frame: Option<I420Frame>,
    failure: Option<ScreenError>,
    stop: bool,
    figures: CaptureFigures,
}

/// What the capture thread has done so far, for figures and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CaptureFigures {
    /// Pictures grabbed and converted.
    pub captured: u64,
    /// Of those, replaced in the mailbox before the encoder took them.
    pub dropped: u64,
    /// Time spent grabbing (X server round trip and copy), µs in all.
    pub grab_us: u64,
    /// Time spent converting BGRA → I420 (and scaling), µs in all.
    pub convert_us: u64,
}

struct Shared {
    mailbox: Mutex<Mailbox>,
    ready: Condvar,
}

/// A screen or window, captured on its own thread.
pub struct ScreenSource {
    shared: Arc<Shared>,
    name: String,
    fps: u32,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ScreenSource {
    /// Shares `id` of `display` at `fps`: opens it now (so a wrong id or a refusal is an error here)
    /// and starts capturing.
    pub fn open(display: &Display, id: ScreenId, fps: u32) -> Result<Self, ScreenError> {
        let capturer = display.open(id)?;
        Self::start(capturer, fps)
    }

    /// Captures from `capturer` at `fps` on a new thread.
    pub fn start(mut capturer: Box<dyn Capturer>, fps: u32) -> Result<Self, ScreenError> {
        let fps = fps.max(1);
        let name = capturer.target().name.clone();
        let shared = Arc::new(Shared { mailbox: Mutex::default(), ready: Condvar::new() });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("screen-capture".into())
            .spawn(move || capture_loop(capturer.as_mut(), fps, &thread_shared))
            .map_err(|e| ScreenError::Capture(format!("no capture thread: {e}")))?;
        Ok(Self { shared, name, fps, thread: Some(thread) })
    }

    /// Why capture stopped (the window closed, the display went), once it has.
    pub fn failure(&self) -> Option<ScreenError> {
        self.shared.mailbox.lock().ok().and_then(|m| m.failure.clone())
    }

    /// What the capture thread has done so far.
    pub fn figures(&self) -> CaptureFigures {
        self.shared.mailbox.lock().map(|m| m.figures).unwrap_or_default()
    }

    /// What is shared, as the target is named ("Screen 1 (1280x800)", a window's title).
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn capture_loop(capturer: &mut dyn Capturer, fps: u32, shared: &Shared) {
    let period = Duration::from_secs(1) / fps;
    let mut deadline = Instant::now();
    loop {
        if shared.mailbox.lock().map_or(true, |m| m.stop) {
            return;
        }
        let started = Instant::now();
        let grabbed = capturer.grab();
        let grab_us = started.elapsed().as_micros() as u64;
        let converted = grabbed.and_then(|image| image.to_i420().map_err(ScreenError::Capture));
        let convert_us = started.elapsed().as_micros() as u64 - grab_us;
        let Ok(mut mailbox) = shared.mailbox.lock() else { return };
        match converted {
            Ok(frame) => {
                let figures = &mut mailbox.figures;
                figures.captured += 1;
                figures.grab_us += grab_us;
                figures.convert_us += convert_us;
                if mailbox.frame.replace(frame).is_some() {
                    mailbox.figures.dropped += 1;
                }
            }
            Err(e) => {
                tracing::info!(%e, "screen capture ended");
                mailbox.failure = Some(e);
                shared.ready.notify_all();
                return;
            }
        }
        drop(mailbox);
        shared.ready.notify_all();
        pace(&mut deadline, period);
    }
}

impl VideoSource for ScreenSource {
    /// The newest picture, waiting for one if the mailbox is empty; `None` once capture has failed
    /// ([`failure`](Self::failure) says why).
    fn next_frame(&mut self) -> Option<I420Frame> {
        let mut mailbox = self.shared.mailbox.lock().ok()?;
        loop {
            if let Some(frame) = mailbox.frame.take() {
                return Some(frame);
            }
            if mailbox.failure.is_some() || mailbox.stop {
                return None;
            }
            mailbox = self.shared.ready.wait_timeout(mailbox, Duration::from_millis(500)).ok()?.0;
        }
    }

    fn fps(&self) -> u32 {
        self.fps
    }

    fn describe(&self) -> String {
        format!("shared screen \"{}\"", self.name)
    }

    fn content(&self) -> VideoContent {
        VideoContent::Screen
    }
}

impl Drop for ScreenSource {
    fn drop(&mut self) {
        if let Ok(mut m) = self.shared.mailbox.lock() {
            m.stop = true;
        }
        self.shared.ready.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BgraImage, ScreenTarget};
    use super::*;

    /// A capturer that takes `grab_ms` a picture, numbers its pictures in the first pixel's blue,
    /// and reports the window closed after `pictures`.
    struct Scripted {
        target: ScreenTarget,
        grab_ms: u64,
        pictures: u8,
        made: u8,
    }

    impl Capturer for Scripted {
        fn target(&self) -> &ScreenTarget {
            &self.target
        }

        fn grab(&mut self) -> Result<BgraImage, ScreenError> {
            std::thread::sleep(Duration::from_millis(self.grab_ms));
            if self.made == self.pictures {
                return Err(ScreenError::Gone("the shared window \"notes\" closed".into()));
            }
            self.made += 1;
            let v = self.made * 20;
            Ok(BgraImage::filled(64, 32, [v, v, v, 0]))
        }
    }

    fn scripted(grab_ms: u64, pictures: u8) -> Box<dyn Capturer> {
        let target = ScreenTarget { id: ScreenId::Window(7), name: "notes".into(), width: 64, height: 32 };
        Box::new(Scripted { target, grab_ms, pictures, made: 0 })
    }

    #[test]
    fn a_slow_reader_gets_the_newest_picture_and_older_ones_are_dropped() {
        let mut source = ScreenSource::start(scripted(1, 12), 100).expect("starts");
        assert_eq!(source.content(), VideoContent::Screen);
        let first = source.next_frame().expect("a picture");
        assert_eq!((first.width, first.height), (64, 32));
        // The encoder is busy for 60 ms: several pictures arrive meanwhile, only the last is kept.
        std::thread::sleep(Duration::from_millis(60));
        let later = source.next_frame().expect("a picture");
        let figures = source.figures();
        assert!(figures.dropped >= 2, "{figures:?}");
        assert!(
            later.data[0] > first.data[0] + 40,
            "the newest, not the next: {} after {}",
            later.data[0],
            first.data[0]
        );
    }

    #[test]
    fn a_closed_window_ends_the_source_with_the_reason() {
        let mut source = ScreenSource::start(scripted(1, 3), 200).expect("starts");
        let mut frames = 0;
        while source.next_frame().is_some() {
            frames += 1;
        }
        assert!((1..=3).contains(&frames), "{frames}");
        assert_eq!(source.failure(), Some(ScreenError::Gone("the shared window \"notes\" closed".into())));
        assert_eq!(source.describe(), "shared screen \"notes\"");
    }
}
