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
    /// What the pictures show, for the encoder's tuning: camera-like video unless said otherwise.
    fn content(&self) -> VideoContent {
        VideoContent::Camera
    }
}

/// What a video source's pictures hold, which decides how they are encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VideoContent {
    /// Camera or camera-like video: motion matters, rate control holds the frame rate.
    #[default]
    Camera,
    /// A shared screen: text and fine lines matter; resolution is held and the frame rate may fall.
    Screen,
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

/// Which synthetic video a call sends (`--video-scene`, `--video-file`), and what stands in for a
/// missing camera.
#[derive(Clone, Debug, Default)]
pub enum SyntheticVideo {
    /// The stamped test pattern: cheap to draw and to encode (~160 kbit/s at 640x480@30).
    #[default]
    Pattern,
    /// The stamped camera-like scene: texture, motion and noise at a webcam's bitrate.
    Scene,
    /// A checked Y4M clip, looped at its own size and rate.
    File(std::sync::Arc<super::y4m::Y4mClip>),
}

impl SyntheticVideo {
    /// A source of this kind at `width`×`height` and `fps` (a clip keeps its own).
    pub fn source(&self, width: usize, height: usize, fps: u32) -> Box<dyn VideoSource> {
        match self {
            SyntheticVideo::Pattern => Box::new(super::pattern::PatternSource::new(width, height, fps)),
            SyntheticVideo::Scene => Box::new(super::scene::SceneSource::new(width, height, fps)),
            SyntheticVideo::File(clip) => Box::new(super::y4m::Y4mSource::new(clip.clone())),
        }
    }

    /// A factory making a fresh such source for each call.
    pub fn factory(&self, width: usize, height: usize, fps: u32) -> VideoSourceFactory {
        let kind = self.clone();
        std::sync::Arc::new(move || kind.source(width, height, fps))
    }

    /// What people call it, as the device pickers and notices do.
    pub fn name(&self) -> &'static str {
        match self {
            SyntheticVideo::Pattern => "test pattern",
            SyntheticVideo::Scene => "camera-like test scene",
            SyntheticVideo::File(_) => "video file",
        }
    }
}
