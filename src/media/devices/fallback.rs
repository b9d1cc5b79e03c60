//! The user's device choice turned into the engine's sources, with the synthetic pattern and tone
//! standing in when a device is missing, fails to open, or vanishes mid-call, and a notice in words
//! saying which source is in use and why.
//!
//! [`MediaDevices`] hands the engine source factories ([`MediaDevices::video_factory`],
//! [`MediaDevices::audio_factory`]); each call gets a
//! source that holds the chosen device. Choosing another device during a call
//! ([`MediaDevices::set_camera`], [`MediaDevices::set_microphone`]) needs no engine command and no
//! renegotiation: the running source notices the change at its next frame and reopens. The window
//! (or CLI) watches [`MediaDevices::video_status`] / [`MediaDevices::audio_status`] for the notice.
//! Sharing a screen or window ([`MediaDevices::share_screen`]) works the same way: the call's video
//! source switches from the camera to the shared picture at its next frame and back on
//! [`MediaDevices::stop_sharing`], or by itself (with a notice in [`MediaDevices::screen_status`])
//! when the shared window closes or the screen cannot be captured.
//! Devices open at a call's first frame, on the media threads: the engine makes sources on its
//! driver task, which must not wait the better part of a second for a camera.

use super::camera::{list_cameras, Camera, CameraSettings};
use super::clock::DeviceClock;
use super::microphone::Microphone;
use super::{list_microphones, DeviceError};
use crate::media::frame::I420Frame;
use crate::media::pattern::PatternSource;
use crate::media::processing::{MicProcessing, ProcessingControl, Switches};
use crate::media::screen::source::SHARING_FPS;
use crate::media::screen::{Display, ScreenError, ScreenId, ScreenSource, ScreenTarget};
use crate::media::source::{
    AudioSource, AudioSourceFactory, SyntheticVideo, VideoContent, VideoSource, VideoSourceFactory,
};
use crate::media::tone::ToneSource;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Which device the user wants, as settings store it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Selection {
    /// The system's default (the first camera; the default microphone).
    #[default]
    Default,
    /// A device by its id (from [`list_cameras`] or [`list_microphones`]).
    Device(String),
    /// The synthetic pattern or tone, on purpose.
    Synthetic,
}

/// Camera or microphone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// Video.
    Camera,
    /// Audio.
    Microphone,
}

/// Which source is in use, and why, for the window's notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceChoice {
    /// Camera or microphone.
    pub kind: DeviceKind,
    /// The source, as it describes itself ("camera \"HD Webcam\" 1280x720@30", "synthetic 440 Hz tone").
    pub source: String,
    /// The synthetic pattern or tone is in use.
    pub synthetic: bool,
    /// Why the synthetic source is in use when the user did not ask for it, in words.
    pub notice: Option<String>,
}

/// Whether a screen is being shared, and what happened to the last attempt, for the window's
/// "you are sharing" line and its notices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScreenShare {
    /// What is shared now (by the running call), `None` when the camera goes out.
    pub sharing: Option<ScreenTarget>,
    /// Asked for, not yet started (no call yet, or the call's next frame will start it).
    pub requested: Option<ScreenId>,
    /// Why sharing stopped or could not start, in words ("the shared window \"notes\" closed:
    /// back to the camera").
    pub notice: Option<String>,
}

/// An open sound capture: its audio, why it stopped, and its clock. A [`Microphone`], or a scripted
/// one in tests.
pub trait AudioCapture: AudioSource {
    /// Why it stopped delivering, once it has.
    fn failure(&self) -> Option<String>;
    /// When it captured which sample, if it keeps a clock.
    fn clock(&self) -> Option<DeviceClock>;
}

impl AudioCapture for Microphone {
    fn failure(&self) -> Option<String> {
        Microphone::failure(self).map(str::to_owned)
    }

    fn clock(&self) -> Option<DeviceClock> {
        Some(Microphone::clock(self))
    }
}

/// Opens a microphone for a selection (`None`: the default); swapped out in tests for a scripted one.
pub type MicrophoneOpener =
    Arc<dyn Fn(Option<&str>) -> Result<Box<dyn AudioCapture>, DeviceError> + Send + Sync>;

/// Opens a camera for a selection; swapped out in tests and benchmarks for a scripted camera.
pub type CameraOpener =
    Arc<dyn Fn(Option<&str>, CameraSettings) -> Result<Camera, DeviceError> + Send + Sync>;

struct Wanted {
    selection: Mutex<Selection>,
    /// Bumped on every change, so a running source sees it with one atomic load a frame.
    generation: AtomicU64,
}

impl Wanted {
    fn new(selection: Selection) -> Self {
        Self { selection: Mutex::new(selection), generation: AtomicU64::new(0) }
    }

    fn get(&self) -> (Selection, u64) {
        let generation = self.generation.load(Ordering::Acquire);
        let selection = self.selection.lock().map(|s| s.clone()).unwrap_or_default();
        (selection, generation)
    }

    fn set(&self, selection: Selection) {
        if let Ok(mut s) = self.selection.lock() {
            *s = selection;
        }
        self.bump();
    }

    /// A running source reopens at its next frame.
    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

struct Shared {
    camera: Wanted,
    microphone: Wanted,
    camera_settings: CameraSettings,
    open_camera: CameraOpener,
    open_microphone: Mutex<MicrophoneOpener>,
    /// Frequency of the stand-in tone (f64 bits).
    tone_hz: AtomicU64,
    /// What video stands in for a camera (the pattern unless set).
    stand_in: Mutex<SyntheticVideo>,
    video_status: watch::Sender<DeviceChoice>,
    audio_status: watch::Sender<DeviceChoice>,
    /// The open microphone's clock, for latency measurements.
    microphone_clock: Mutex<Option<DeviceClock>>,
    /// The display screens are shared from.
    display: Mutex<Display>,
    /// The screen or window to share instead of the camera; changes bump the camera's generation.
    screen: Mutex<Option<ScreenId>>,
    screen_status: watch::Sender<ScreenShare>,
    /// The microphone's echo cancellation, noise suppression and gain control (the tone bypasses it).
    processing: ProcessingControl,
}

/// The devices a user picked, with fallbacks; cheap to clone (one shared state).
#[derive(Clone)]
pub struct MediaDevices {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MediaDevices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaDevices")
            .field("camera", &self.camera())
            .field("microphone", &self.microphone())
            .field("video", &*self.shared.video_status.borrow())
            .field("audio", &*self.shared.audio_status.borrow())
            .finish()
    }
}

impl MediaDevices {
    /// Devices per `camera` and `microphone` selections, cameras asked for `settings`.
    pub fn new(camera: Selection, microphone: Selection, settings: CameraSettings) -> Self {
        Self::with_camera_opener(camera, microphone, settings, Arc::new(Camera::open))
    }

    /// As [`new`](Self::new), opening cameras with `open_camera` (tests script a camera that fails).
    pub fn with_camera_opener(
        camera: Selection,
        microphone: Selection,
        settings: CameraSettings,
        open_camera: CameraOpener,
    ) -> Self {
        let video = initial_choice(DeviceKind::Camera, &camera, list_cameras().is_empty());
        let audio = initial_choice(DeviceKind::Microphone, &microphone, list_microphones().is_empty());
        Self {
            shared: Arc::new(Shared {
                camera: Wanted::new(camera),
                microphone: Wanted::new(microphone),
                camera_settings: settings,
                open_camera,
                open_microphone: Mutex::new(Arc::new(|id| {
                    Microphone::open(id).map(|m| Box::new(m) as Box<dyn AudioCapture>)
                })),
                tone_hz: AtomicU64::new(440f64.to_bits()),
                stand_in: Mutex::new(SyntheticVideo::Pattern),
                video_status: watch::channel(video).0,
                audio_status: watch::channel(audio).0,
                microphone_clock: Mutex::new(None),
                display: Mutex::new(Display::detect()),
                screen: Mutex::new(None),
                screen_status: watch::channel(ScreenShare::default()).0,
                processing: ProcessingControl::new(Switches::default()),
            }),
        }
    }

    /// The stand-in tone's frequency (440 Hz unless set), from the next call or fallback on.
    pub fn with_tone(self, hz: f64) -> Self {
        self.shared.tone_hz.store(hz.to_bits(), Ordering::Relaxed);
        self
    }

    /// The video standing in for a camera (the test pattern unless set: the camera-like scene, or a
    /// clip), from the next call or fallback on.
    pub fn with_video_stand_in(self, video: SyntheticVideo) -> Self {
        if let Ok(mut v) = self.shared.stand_in.lock() {
            *v = video;
        }
        self
    }

    /// Shares screens from `display` (the one `DISPLAY` / `WAYLAND_DISPLAY` name unless set: tests
    /// give their own Xvfb).
    pub fn with_display(self, display: Display) -> Self {
        if let Ok(mut d) = self.shared.display.lock() {
            *d = display;
        }
        self
    }

    /// The screens and windows that can be shared now, screens first; an error in words where there
    /// is no display, or only Wayland.
    pub fn list_screens(&self) -> Result<Vec<ScreenTarget>, ScreenError> {
        self.display().list()
    }

    /// The display screens are shared from.
    pub fn display(&self) -> Display {
        self.shared.display.lock().map(|d| d.clone()).unwrap_or(Display::None)
    }

    /// Shares `id` instead of the camera: a call in progress switches at its next frame (same track,
    /// no renegotiation); otherwise the next call starts with it. Where it cannot be captured, the
    /// camera goes on and [`screen_status`](Self::screen_status) says why.
    pub fn share_screen(&self, id: ScreenId) {
        if let Ok(mut s) = self.shared.screen.lock() {
            *s = Some(id);
        }
        self.shared.screen_status.send_modify(|s| {
            s.requested = Some(id);
            s.notice = None;
        });
        self.shared.camera.bump();
    }

    /// Back to the camera.
    pub fn stop_sharing(&self) {
        if let Ok(mut s) = self.shared.screen.lock() {
            *s = None;
        }
        self.shared.screen_status.send_replace(ScreenShare::default());
        self.shared.camera.bump();
    }

    /// What is shared (or asked for), and why sharing last stopped.
    pub fn screen_status(&self) -> watch::Receiver<ScreenShare> {
        self.shared.screen_status.subscribe()
    }

    /// Opens microphones with `open` from now on (tests script one that fails mid-call).
    pub fn with_microphone_opener(self, open: MicrophoneOpener) -> Self {
        if let Ok(mut o) = self.shared.open_microphone.lock() {
            *o = open;
        }
        self
    }

    /// The microphone's processing (echo cancellation, noise suppression, gain control; all on unless
    /// set): its switches, its level meter, and the echo reference the speaker plays into.
    pub fn processing(&self) -> &ProcessingControl {
        &self.shared.processing
    }

    /// Picks another camera; a call in progress switches at its next frame.
    pub fn set_camera(&self, selection: Selection) {
        self.shared.camera.set(selection);
    }

    /// Picks another microphone; a call in progress switches at its next 20 ms chunk.
    pub fn set_microphone(&self, selection: Selection) {
        self.shared.microphone.set(selection);
    }

    /// The camera selection now.
    pub fn camera(&self) -> Selection {
        self.shared.camera.get().0
    }

    /// The microphone selection now.
    pub fn microphone(&self) -> Selection {
        self.shared.microphone.get().0
    }

    /// Which video source is in use (or would be, between calls), and why.
    pub fn video_status(&self) -> watch::Receiver<DeviceChoice> {
        self.shared.video_status.subscribe()
    }

    /// Which audio source is in use (or would be, between calls), and why.
    pub fn audio_status(&self) -> watch::Receiver<DeviceChoice> {
        self.shared.audio_status.subscribe()
    }

    /// When the microphone in use captured which sample; `None` while no microphone is open.
    pub fn microphone_clock(&self) -> Option<DeviceClock> {
        self.shared.microphone_clock.lock().ok().and_then(|c| c.clone())
    }

    /// Makes a video source from these devices for each call (what the engine's config takes).
    pub fn video_factory(&self) -> VideoSourceFactory {
        let shared = self.shared.clone();
        Arc::new(move || Box::new(DeviceVideo::open(shared.clone())))
    }

    /// Makes an audio source from these devices for each call (what the engine's config takes).
    pub fn audio_factory(&self) -> AudioSourceFactory {
        let shared = self.shared.clone();
        Arc::new(move || Box::new(DeviceAudio::open(shared.clone())))
    }

    /// A video source for one call (what [`video_factory`](Self::video_factory)'s factory makes).
    pub fn video_source(&self) -> Box<dyn VideoSource> {
        Box::new(DeviceVideo::open(self.shared.clone()))
    }

    /// An audio source for one call (what [`audio_factory`](Self::audio_factory)'s factory makes).
    pub fn audio_source(&self) -> Box<dyn AudioSource> {
        Box::new(DeviceAudio::open(self.shared.clone()))
    }
}

/// What the status says before any call, from enumeration alone.
fn initial_choice(kind: DeviceKind, selection: &Selection, none_found: bool) -> DeviceChoice {
    let (noun, stand_in) = words(kind);
    match selection {
        Selection::Synthetic => DeviceChoice { kind, source: stand_in.into(), synthetic: true, notice: None },
        _ if none_found => DeviceChoice {
            kind,
            source: stand_in.into(),
            synthetic: true,
            notice: Some(format!("no {noun} found: sending a {stand_in} instead")),
        },
        Selection::Device(id) => {
            DeviceChoice { kind, source: format!("{noun} {id}"), synthetic: false, notice: None }
        }
        Selection::Default => {
            DeviceChoice { kind, source: format!("default {noun}"), synthetic: false, notice: None }
        }
    }
}

fn words(kind: DeviceKind) -> (&'static str, &'static str) {
    match kind {
        DeviceKind::Camera => ("camera", "test pattern"),
        DeviceKind::Microphone => ("microphone", "test tone"),
    }
}

/// The notice for a fallback: the device's own words, then what we do about it.
fn fallback_notice(kind: DeviceKind, why: &str) -> String {
    let stand_in = words(kind).1;
    format!("{why}: sending a {stand_in} instead")
}

enum Video {
    Camera(Camera),
    /// A shared screen or window.
    Screen(ScreenSource),
    /// The synthetic stand-in (the pattern, the scene or a clip).
    StandIn(Box<dyn VideoSource>),
}

/// A call's video: the chosen camera, or the stand-in (the pattern unless set) in its place; reopens when the choice changes.
struct DeviceVideo {
    shared: Arc<Shared>,
    generation: u64,
    current: Video,
    /// The size and rate going out, so a stand-in matches them and the encoder need not restart.
    size: (usize, usize),
    fps: u32,
    /// A frame has gone out (the encoder's rate is fixed from then on).
    sent_any: bool,
}

impl DeviceVideo {
    /// A source that opens the device at its first frame: the engine makes sources on its driver
    /// task, and opening a camera can take the better part of a second, which belongs on the
    /// video thread. Until then the rate is the one asked for.
    fn open(shared: Arc<Shared>) -> Self {
        let settings = shared.camera_settings;
        Self {
            shared,
            // No generation is ever this, so the first frame opens the device.
            generation: u64::MAX,
            current: Video::StandIn(Box::new(PatternSource::new(1, 1, 1))),
            size: (settings.width as usize, settings.height as usize),
            fps: settings.fps,
            sent_any: false,
        }
    }

    /// Opens what the user chose: the shared screen if one is asked for, else the camera, falling
    /// back to the pattern (and saying why).
    fn reopen(&mut self) {
        let (selection, generation) = self.shared.camera.get();
        self.generation = generation;
        let screen = self.shared.screen.lock().ok().and_then(|s| *s);
        if let Some(id) = screen {
            let display = self.shared.display.lock().map(|d| d.clone()).unwrap_or(Display::None);
            match ScreenSource::open(&display, id, SHARING_FPS) {
                Ok(source) => {
                    let target = display.list().ok().and_then(|l| l.into_iter().find(|t| t.id == id));
                    self.shared.screen_status.send_replace(ScreenShare {
                        sharing: target,
                        requested: Some(id),
                        notice: None,
                    });
                    self.publish(source.describe(), false, None);
                    self.current = Video::Screen(source);
                    return;
                }
                Err(e) => self.end_sharing(format!("could not share {id}: {e}; the camera goes on")),
            }
        }
        let opened = match &selection {
            Selection::Synthetic => Err(None),
            Selection::Default => (self.shared.open_camera)(None, self.shared.camera_settings).map_err(Some),
            Selection::Device(id) => {
                (self.shared.open_camera)(Some(id), self.shared.camera_settings).map_err(Some)
            }
        };
        match opened {
            Ok(camera) => {
                let mode = camera.mode();
                // The encoder takes its rate from the source once, at the call's first frame; a
                // camera switched to later keeps that rate.
                if !self.sent_any {
                    self.fps = mode.fps.max(1);
                }
                self.size = ((mode.width as usize) & !1, (mode.height as usize) & !1);
                self.publish(camera.describe(), false, None);
                self.current = Video::Camera(camera);
            }
            Err(why) => {
                let notice = why.map(|e| fallback_notice(DeviceKind::Camera, &e.to_string()));
                self.use_pattern(notice);
            }
        }
    }

    /// Sharing is over (it failed, or the shared window went): the camera is wanted again.
    fn end_sharing(&mut self, notice: String) {
        tracing::warn!(%notice, "screen sharing ended");
        if let Ok(mut s) = self.shared.screen.lock() {
            *s = None;
        }
        self.shared.screen_status.send_replace(ScreenShare {
            sharing: None,
            requested: None,
            notice: Some(notice),
        });
    }

    fn use_pattern(&mut self, notice: Option<String>) {
        let stand_in = self.shared.stand_in.lock().map(|v| v.clone()).unwrap_or_default();
        let source = stand_in.source(self.size.0, self.size.1, self.fps);
        if let Some(n) = &notice {
            tracing::warn!(notice = %n, "video falls back to the {}", stand_in.name());
        }
        self.publish(source.describe(), true, notice);
        self.current = Video::StandIn(source);
    }

    fn publish(&self, source: String, synthetic: bool, notice: Option<String>) {
        self.shared.video_status.send_replace(DeviceChoice {
            kind: DeviceKind::Camera,
            source,
            synthetic,
            notice,
        });
    }
}

impl VideoSource for DeviceVideo {
    fn next_frame(&mut self) -> Option<I420Frame> {
        if self.shared.camera.generation.load(Ordering::Acquire) != self.generation {
            self.reopen();
        }
        self.sent_any = true;
        let why = match &mut self.current {
            Video::StandIn(p) => return p.next_frame(),
            Video::Screen(s) => match s.next_frame() {
                Some(f) => return Some(f),
                None => {
                    // The window closed or the screen went: back to the camera, with a notice.
                    let why =
                        s.failure().map_or_else(|| "screen capture stopped".to_owned(), |e| e.to_string());
                    self.end_sharing(format!("{why}: back to the camera"));
                    self.reopen();
                    return match &mut self.current {
                        Video::Screen(_) => None,
                        Video::Camera(c) => c.next_frame(),
                        Video::StandIn(p) => p.next_frame(),
                    };
                }
            },
            Video::Camera(c) => match c.next_frame() {
                Some(f) => {
                    // A stand-in takes this size, so the encoder goes on unchanged.
                    self.size = (f.width, f.height);
                    return Some(f);
                }
                None => c.failure().unwrap_or("the camera stopped").to_owned(),
            },
        };
        // The camera is gone mid-call: the call goes on with the pattern, and the user is told.
        let notice = fallback_notice(DeviceKind::Camera, &why);
        self.use_pattern(Some(notice));
        match &mut self.current {
            Video::StandIn(p) => p.next_frame(),
            Video::Camera(_) | Video::Screen(_) => None,
        }
    }

    fn fps(&self) -> u32 {
        match &self.current {
            Video::Screen(s) => s.fps(),
            _ => self.fps,
        }
    }

    fn describe(&self) -> String {
        match &self.current {
            Video::Camera(c) => c.describe(),
            Video::Screen(s) => s.describe(),
            Video::StandIn(p) => p.describe(),
        }
    }

    fn content(&self) -> VideoContent {
        match &self.current {
            Video::Screen(_) => VideoContent::Screen,
            _ => VideoContent::Camera,
        }
    }
}

enum Audio {
    Microphone(Box<dyn AudioCapture>),
    Tone(ToneSource),
}

/// A call's audio: the chosen microphone, or the tone in its place; reopens when the choice changes.
struct DeviceAudio {
    shared: Arc<Shared>,
    generation: u64,
    current: Audio,
    /// Between the microphone and the encoder; kept across microphone switches (the canceller
    /// re-adapts to the new echo path as it does to any jump).
    processing: MicProcessing,
}

impl DeviceAudio {
    fn open(shared: Arc<Shared>) -> Self {
        let tone = ToneSource::new(f64::from_bits(shared.tone_hz.load(Ordering::Relaxed)), 0.25);
        let processing = MicProcessing::new(&shared.processing);
        // As for video: the device opens at the first chunk, on the audio thread.
        Self { shared, generation: u64::MAX, current: Audio::Tone(tone), processing }
    }

    fn reopen(&mut self) {
        let (selection, generation) = self.shared.microphone.get();
        self.generation = generation;
        let open = self.shared.open_microphone.lock().map(|o| o.clone());
        let opened = match (&selection, open) {
            (Selection::Synthetic, _) => Err(None),
            (_, Err(_)) => {
                Err(Some(DeviceError::Failed { kind: "microphone", detail: "its opener broke".into() }))
            }
            (Selection::Default, Ok(open)) => open(None).map_err(Some),
            (Selection::Device(id), Ok(open)) => open(Some(id)).map_err(Some),
        };
        match opened {
            Ok(mic) => {
                if let Ok(mut c) = self.shared.microphone_clock.lock() {
                    *c = mic.clock();
                }
                self.publish(mic.describe(), false, None);
                self.current = Audio::Microphone(mic);
            }
            Err(why) => {
                let notice = why.map(|e| fallback_notice(DeviceKind::Microphone, &e.to_string()));
                self.use_tone(notice);
            }
        }
    }

    fn use_tone(&mut self, notice: Option<String>) {
        let tone = ToneSource::new(f64::from_bits(self.shared.tone_hz.load(Ordering::Relaxed)), 0.25);
        if let Some(n) = &notice {
            tracing::warn!(notice = %n, "audio falls back to the test tone");
        }
        self.publish(tone.describe(), true, notice);
        self.current = Audio::Tone(tone);
    }

    fn publish(&self, source: String, synthetic: bool, notice: Option<String>) {
        self.shared.audio_status.send_replace(DeviceChoice {
            kind: DeviceKind::Microphone,
            source,
            synthetic,
            notice,
        });
    }
}

impl AudioSource for DeviceAudio {
    fn next_chunk(&mut self, out: &mut [i16]) -> bool {
        if self.shared.microphone.generation.load(Ordering::Acquire) != self.generation {
            self.reopen();
        }
        let why = match &mut self.current {
            Audio::Tone(t) => {
                // The synthetic tone has no echo in it: it bypasses the stage.
                self.processing.skip();
                return t.next_chunk(out);
            }
            Audio::Microphone(m) => {
                if m.next_chunk(out) {
                    self.processing.process(out);
                    return true;
                }
                m.failure().unwrap_or_else(|| "the microphone stopped".to_owned())
            }
        };
        self.use_tone(Some(fallback_notice(DeviceKind::Microphone, &why)));
        self.processing.skip();
        match &mut self.current {
            Audio::Tone(t) => t.next_chunk(out),
            Audio::Microphone(_) => false,
        }
    }

    fn describe(&self) -> String {
        match &self.current {
            Audio::Microphone(m) => m.describe(),
            Audio::Tone(t) => t.describe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A microphone that hears a steady 1 kHz tone, as fast as asked.
    struct ToneMic(ToneSource);

    impl AudioSource for ToneMic {
        fn next_chunk(&mut self, out: &mut [i16]) -> bool {
            for (i, s) in out.iter_mut().enumerate() {
                *s = ((i as f64 * std::f64::consts::TAU * 1000.0 / 48_000.0).sin() * 8000.0) as i16;
            }
            true
        }
        fn describe(&self) -> String {
            self.0.describe()
        }
    }

    impl AudioCapture for ToneMic {
        fn failure(&self) -> Option<String> {
            None
        }
        fn clock(&self) -> Option<DeviceClock> {
            None
        }
    }

    #[test]
    fn the_tone_bypasses_the_processing_and_a_microphone_goes_through_it() {
        let devices =
            MediaDevices::new(Selection::Synthetic, Selection::Synthetic, CameraSettings::default())
                .with_tone(440.0);
        let mut source = devices.audio_source();
        let mut tone = ToneSource::new(440.0, 0.25);
        let (mut got, mut want) = (vec![0i16; 960], vec![0i16; 960]);
        for _ in 0..5 {
            assert!(source.next_chunk(&mut got) && tone.next_chunk(&mut want));
            assert_eq!(got, want, "the stand-in tone goes out untouched");
        }
        assert!(devices.processing().level_dbfs() <= crate::media::processing::chain::SILENCE_DBFS);

        devices.set_microphone(Selection::Default);
        let devices = devices.with_microphone_opener(Arc::new(|_| {
            Ok(Box::new(ToneMic(ToneSource::new(1000.0, 0.25))) as Box<dyn AudioCapture>)
        }));
        let mut source = devices.audio_source();
        let mut mic = ToneMic(ToneSource::new(1000.0, 0.25));
        let mut changed = 0;
        for _ in 0..100 {
            assert!(source.next_chunk(&mut got) && mic.next_chunk(&mut want));
            changed += usize::from(got != want);
        }
        // The high-pass filter and the suppressor touch every chunk of a microphone.
        assert!(changed > 90, "{changed} of 100 chunks processed");
        assert!(devices.processing().level_dbfs() > -60.0, "the meter moves");
    }
}
