//! The source traits: where outgoing video and audio come from.
//!
//! A source blocks until its next frame is due (a camera waits for the device, the synthetic ones sleep
//! to their clock), so each runs on its own thread and the engine never polls.

use super::frame::I420Frame;

/// Something that produces video frames: the synthetic pattern here, a camera in the devices module.
pub trait VideoSource: Send + 'static {
    /// Blocks until the next frame is captured and returns it; `None` when the source has ended.
    fn next_frame(&mut self) -> Option<I420Frame>;
    /// Frames per second the source aims for (the encoder's rate control uses it).
    fn fps(&self) -> u32;
    /// A short description for people ("synthetic test pattern", a camera's name).
    fn describe(&self) -> String;
}

/// Something that produces audio: mono 48 kHz, 20 ms (960 samples) per call.
pub trait AudioSource: Send + 'static {
    /// Blocks until the next 20 ms are captured and writes them into `out` (960 samples);
    /// `false` when the source has ended.
    fn next_chunk(&mut self, out: &mut [i16]) -> bool;
    /// A short description for people.
    fn describe(&self) -> String;
}

/// Sleeps until `deadline`, then moves it one `period` on; if the caller fell more than a period
/// behind, the schedule restarts from now rather than bursting to catch up.
pub(crate) fn pace(deadline: &mut std::time::Instant, period: std::time::Duration) {
    let now = std::time::Instant::now();
    if *deadline > now {
        std::thread::sleep(*deadline - now);
        *deadline += period;
    } else if now - *deadline > period {
        *deadline = now + period;
    } else {
        *deadline += period;
    }
}

/// Makes a fresh video source for each call (a call's media thread owns its source).
pub type VideoSourceFactory = std::sync::Arc<dyn Fn() -> Box<dyn VideoSource> + Send + Sync>;
/// Makes a fresh audio source for each call.
pub type AudioSourceFactory = std::sync::Arc<dyn Fn() -> Box<dyn AudioSource> + Send + Sync>;
