//! Cameras: enumerate with nokhwa, open the mode nearest the wanted size and rate, capture on a
//! thread of the camera's own, convert to I420 there, and hand the newest frame to the encoder.
//!
//! The hand-off is a one-frame slot, not a queue: when the encoder is behind, a newer frame
//! replaces the unread one (counted as dropped), so what goes out is always the freshest picture
//! and latency never builds up. The capture loop is written against [`RawCapture`], so the same
//! thread, conversion and slot run behind a real camera and behind the benchmark's synthetic one.

use super::convert::{Converter, PixelFormat};
use super::DeviceError;
use crate::media::frame::I420Frame;
use crate::media::source::VideoSource;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// No frame for this long means the camera stopped (unplugged, or the driver hung).
const STALL: Duration = Duration::from_secs(2);
/// Torn frames in a row before the camera counts as failed (one now and then is normal on USB).
const MAX_BAD_FRAMES: u32 = 30;

/// A camera as a picker shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraInfo {
    /// What to store in settings and open by (the system's index, e.g. `0` for /dev/video0).
    pub id: String,
    /// A name for people.
    pub name: String,
}

/// What to ask a camera for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CameraSettings {
    /// Wanted width in pixels.
    pub width: u32,
    /// Wanted height in pixels.
    pub height: u32,
    /// Wanted frames per second.
    pub fps: u32,
}

impl Default for CameraSettings {
    /// 1280x720 at 30 fps: what a call looks good at and a USB webcam can deliver.
    fn default() -> Self {
        Self { width: 1280, height: 720, fps: 30 }
    }
}

/// One way a camera can deliver frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Pixel layout.
    pub format: PixelFormat,
}

/// The cameras the system has; empty (never an error, never a panic) when there are none.
pub fn list_cameras() -> Vec<CameraInfo> {
    // Enumeration goes through platform drivers; a driver that panics must not take the app with it.
    let found = std::panic::catch_unwind(|| nokhwa::query(ApiBackend::Auto));
    match found {
        Ok(Ok(cams)) => {
            cams.into_iter().map(|c| CameraInfo { id: c.index().to_string(), name: c.human_name() }).collect()
        }
        Ok(Err(e)) => {
            tracing::debug!(%e, "no cameras listed");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!("camera enumeration panicked; treating it as no camera");
            Vec::new()
        }
    }
}

/// Picks the mode nearest `want` among those we can convert: size closest to the wanted one (by
/// pixel count, then by shape), then a rate of at least the wanted one, then the cheaper format
/// (raw YUV needs no JPEG decode). Returns `None` if no mode is usable.
pub fn pick_mode(modes: &[Mode], want: CameraSettings) -> Option<Mode> {
    let want_pixels = (want.width as i64) * (want.height as i64);
    modes.iter().copied().min_by_key(|m| {
        let pixels = m.width as i64 * m.height as i64;
        // A mode below the wanted rate is judged worse than one a size step away: a 10 fps 720p
        // (raw YUYV over USB 2) looks worse in a call than 30 fps from MJPEG.
        let slow = (m.fps < want.fps) as u8;
        let size_gap = (pixels - want_pixels).abs();
        let shape_gap =
            (m.width as i64 - want.width as i64).abs() + (m.height as i64 - want.height as i64).abs();
        let fps_gap = (m.fps as i64 - want.fps as i64).abs();
        let cost = match m.format {
            PixelFormat::Nv12 | PixelFormat::Yuyv => 0,
            PixelFormat::Gray => 1,
            PixelFormat::Rgb | PixelFormat::Bgr | PixelFormat::Rgba => 2,
            PixelFormat::Mjpeg => 3,
        };
        (slow, size_gap, shape_gap, fps_gap, cost)
    })
}

/// A frame as a capture hands it over, before conversion.
pub struct RawFrame<'a> {
    /// The bytes (a whole JPEG for MJPEG).
    pub data: &'a [u8],
    /// When the device delivered it.
    pub captured: Instant,
}

/// Something that delivers raw frames in one [`Mode`]: a camera, or a synthetic stand-in for
/// benchmarks. Lives on the capture thread only.
pub trait RawCapture {
    /// Blocks for the next frame.
    fn grab(&mut self) -> Result<RawFrame<'_>, String>;
}

/// Opens a capture on the capture thread (a nokhwa camera must stay on the thread that opened it).
pub type CaptureOpener = Box<dyn FnOnce() -> Result<(Box<dyn RawCapture>, Mode), DeviceError> + Send>;

/// Counters of one camera.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CameraStats {
    /// Frames converted and put in the slot.
    pub captured: u64,
    /// Frames replaced unread because the encoder was behind.
    pub dropped: u64,
    /// Frames that could not be converted (torn, broken JPEG).
    pub bad: u64,
    /// Mean conversion time per frame, in microseconds.
    pub convert_us_mean: f64,
    /// Mean time from the device delivering a frame to the encoder taking it, in microseconds.
    pub handoff_us_mean: f64,
}

#[derive(Default)]
struct SlotState {
    latest: Option<(I420Frame, Instant)>,
    /// Why capture ended.
    ended: Option<String>,
    captured: u64,
    dropped: u64,
    bad: u64,
    convert_us_total: u64,
    handoff_us_total: u64,
    taken: u64,
}

struct Slot {
    state: Mutex<SlotState>,
    cond: Condvar,
}

/// An open camera; a [`VideoSource`].
pub struct Camera {
    slot: Arc<Slot>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    name: String,
    mode: Mode,
    failure: Option<String>,
}

impl Camera {
    /// Opens the camera `id` (`None`: the first one) at the mode nearest `want`.
    pub fn open(id: Option<&str>, want: CameraSettings) -> Result<Self, DeviceError> {
        let cameras = list_cameras();
        let info = match id {
            None => cameras.into_iter().next().ok_or(DeviceError::NoDevice("camera"))?,
            Some(id) => cameras
                .into_iter()
                .find(|c| c.id == id || c.name == id)
                .ok_or_else(|| DeviceError::NotFound { kind: "camera", name: id.to_owned() })?,
        };
        let index = match info.id.parse::<u32>() {
            Ok(n) => CameraIndex::Index(n),
            Err(_) => CameraIndex::String(info.id.clone()),
        };
        let opener: CaptureOpener = Box::new(move || {
            let (capture, mode) = NokhwaCapture::open(index, want)?;
            Ok((Box::new(capture) as Box<dyn RawCapture>, mode))
        });
        Self::start(info.name, opener)
    }

    /// Starts the capture thread over any [`RawCapture`]; returns once it is open.
    pub fn start(name: String, opener: CaptureOpener) -> Result<Self, DeviceError> {
        let slot = Arc::new(Slot { state: Mutex::new(SlotState::default()), cond: Condvar::new() });
        let stop = Arc::new(AtomicBool::new(false));
        let (opened_tx, opened_rx) = mpsc::channel();
        let (thread_slot, thread_stop) = (slot.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("camera".into())
            .spawn(move || {
                let (mut capture, mode) = match opener() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                let _ = opened_tx.send(Ok(mode));
                let why = capture_loop(capture.as_mut(), mode, &thread_slot, &thread_stop);
                if let Ok(mut s) = thread_slot.state.lock() {
                    s.ended = Some(why);
                }
                thread_slot.cond.notify_all();
            })
            .map_err(|e| DeviceError::Thread("camera", e))?;
        let mode = opened_rx.recv().map_err(|_| DeviceError::Failed {
            kind: "camera",
            detail: "its thread ended while opening".into(),
        })??;
        tracing::info!(%name, ?mode, "camera open");
        Ok(Self { slot, stop, thread: Some(thread), name, mode, failure: None })
    }

    /// The mode the camera delivers.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Why the camera stopped delivering, once it has.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Captured, dropped and broken frames, and the per-frame times.
    pub fn stats(&self) -> CameraStats {
        let Ok(s) = self.slot.state.lock() else { return CameraStats::default() };
        let per = |total: u64, n: u64| if n == 0 { 0.0 } else { total as f64 / n as f64 };
        CameraStats {
            captured: s.captured,
            dropped: s.dropped,
            bad: s.bad,
            convert_us_mean: per(s.convert_us_total, s.captured),
            handoff_us_mean: per(s.handoff_us_total, s.taken),
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl VideoSource for Camera {
    fn next_frame(&mut self) -> Option<I420Frame> {
        if self.failure.is_some() {
            return None;
        }
        let state = self.slot.state.lock().ok()?;
        let waited =
            self.slot.cond.wait_timeout_while(state, STALL, |s| s.latest.is_none() && s.ended.is_none());
        let Ok((mut state, timeout)) = waited else {
            self.failure = Some("the camera's frame slot broke".into());
            return None;
        };
        if let Some((frame, captured)) = state.latest.take() {
            state.handoff_us_total += captured.elapsed().as_micros() as u64;
            state.taken += 1;
            return Some(frame);
        }
        self.failure = Some(match state.ended.take() {
            Some(why) => why,
            None if timeout.timed_out() => format!("the camera \"{}\" stopped sending pictures", self.name),
            None => "the camera stopped".into(),
        });
        None
    }

    fn fps(&self) -> u32 {
        self.mode.fps.max(1)
    }

    fn describe(&self) -> String {
        format!(
            "camera \"{}\" {}x{}@{} {:?}",
            self.name, self.mode.width, self.mode.height, self.mode.fps, self.mode.format
        )
    }
}

/// Grabs, converts and publishes frames until stopped or the capture fails; returns why it ended.
fn capture_loop(capture: &mut dyn RawCapture, mode: Mode, slot: &Slot, stop: &AtomicBool) -> String {
    let mut converter = Converter::new();
    let mut bad_in_a_row = 0;
    while !stop.load(Ordering::Relaxed) {
        let raw = match capture.grab() {
            Ok(raw) => raw,
            Err(e) => return format!("the camera stopped: {e}"),
        };
        let captured = raw.captured;
        let started = Instant::now();
        let converted = converter.to_i420(mode.format, raw.data, mode.width as usize, mode.height as usize);
        let convert_us = started.elapsed().as_micros() as u64;
        let Ok(mut s) = slot.state.lock() else { return "the camera's frame slot broke".into() };
        match converted {
            Ok(frame) => {
                bad_in_a_row = 0;
                s.captured += 1;
                s.convert_us_total += convert_us;
                if s.latest.replace((frame, captured)).is_some() {
                    s.dropped += 1;
                }
            }
            Err(e) => {
                s.bad += 1;
                bad_in_a_row += 1;
                tracing::debug!(%e, "camera frame skipped");
                if bad_in_a_row >= MAX_BAD_FRAMES {
                    return format!("the camera sends only broken pictures ({e})");
                }
                continue;
            }
        }
        drop(s);
        slot.cond.notify_all();
    }
    "the camera was closed".into()
}

/// A nokhwa camera as a [`RawCapture`].
struct NokhwaCapture {
    camera: nokhwa::Camera,
    /// The last frame's bytes (nokhwa lends them only until the next call).
    buffer: Vec<u8>,
}

fn pixel_format(f: FrameFormat) -> PixelFormat {
    match f {
        FrameFormat::MJPEG => PixelFormat::Mjpeg,
        FrameFormat::YUYV => PixelFormat::Yuyv,
        FrameFormat::NV12 => PixelFormat::Nv12,
        FrameFormat::GRAY => PixelFormat::Gray,
        FrameFormat::RAWRGB => PixelFormat::Rgb,
        FrameFormat::RAWBGR => PixelFormat::Bgr,
    }
}

/// Every format nokhwa can name; all of them convert.
const ALL_FORMATS: [FrameFormat; 6] = [
    FrameFormat::MJPEG,
    FrameFormat::YUYV,
    FrameFormat::NV12,
    FrameFormat::GRAY,
    FrameFormat::RAWRGB,
    FrameFormat::RAWBGR,
];

/// Words for a nokhwa error, with the fix where we know it.
fn camera_error(e: nokhwa::NokhwaError) -> DeviceError {
    let detail = e.to_string();
    let lower = detail.to_lowercase();
    if lower.contains("busy") {
        DeviceError::Busy("camera")
    } else if lower.contains("permission") || lower.contains("denied") {
        DeviceError::Permission("camera")
    } else {
        DeviceError::Failed { kind: "camera", detail }
    }
}

impl NokhwaCapture {
    fn open(index: CameraIndex, want: CameraSettings) -> Result<(Self, Mode), DeviceError> {
        let any = RequestedFormat::with_formats(RequestedFormatType::None, &ALL_FORMATS);
        let mut camera = nokhwa::Camera::new(index, any).map_err(camera_error)?;
        let formats = camera.compatible_camera_formats().map_err(camera_error)?;
        let modes: Vec<Mode> = formats
            .iter()
            .map(|f| Mode {
                width: f.width(),
                height: f.height(),
                fps: f.frame_rate(),
                format: pixel_format(f.format()),
            })
            .collect();
        let mode = pick_mode(&modes, want).ok_or_else(|| DeviceError::NoFormat {
            kind: "camera",
            detail: format!("{} modes, none usable", formats.len()),
        })?;
        let chosen = CameraFormat::new_from(mode.width, mode.height, to_frame_format(mode.format), mode.fps);
        camera
            .set_camera_requset(RequestedFormat::with_formats(
                RequestedFormatType::Exact(chosen),
                &ALL_FORMATS,
            ))
            .map_err(camera_error)?;
        camera.open_stream().map_err(camera_error)?;
        Ok((Self { camera, buffer: Vec::new() }, mode))
    }
}

fn to_frame_format(f: PixelFormat) -> FrameFormat {
    match f {
        PixelFormat::Mjpeg => FrameFormat::MJPEG,
        PixelFormat::Yuyv => FrameFormat::YUYV,
        PixelFormat::Nv12 => FrameFormat::NV12,
        PixelFormat::Gray => FrameFormat::GRAY,
        PixelFormat::Rgb | PixelFormat::Rgba => FrameFormat::RAWRGB,
        PixelFormat::Bgr => FrameFormat::RAWBGR,
    }
}

impl RawCapture for NokhwaCapture {
    fn grab(&mut self) -> Result<RawFrame<'_>, String> {
        let raw = self.camera.frame_raw().map_err(|e| e.to_string())?;
        let captured = Instant::now();
        self.buffer.clear();
        self.buffer.extend_from_slice(&raw);
        Ok(RawFrame { data: &self.buffer, captured })
    }
}

impl Drop for NokhwaCapture {
    fn drop(&mut self) {
        let _ = self.camera.stop_stream();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(width: u32, height: u32, fps: u32, format: PixelFormat) -> Mode {
        Mode { width, height, fps, format }
    }

    #[test]
    fn picks_720p30_and_prefers_a_full_rate_over_raw_yuv() {
        let want = CameraSettings::default();
        let modes = [
            m(640, 480, 30, PixelFormat::Yuyv),
            m(1280, 720, 10, PixelFormat::Yuyv),
            m(1280, 720, 30, PixelFormat::Mjpeg),
            m(1920, 1080, 30, PixelFormat::Mjpeg),
        ];
        assert_eq!(pick_mode(&modes, want), Some(m(1280, 720, 30, PixelFormat::Mjpeg)));
        // The same size and rate in raw YUV is cheaper than decoding JPEG.
        let modes = [m(1280, 720, 30, PixelFormat::Mjpeg), m(1280, 720, 30, PixelFormat::Nv12)];
        assert_eq!(pick_mode(&modes, want), Some(m(1280, 720, 30, PixelFormat::Nv12)));
        // Only small modes: the nearest one.
        let modes = [m(320, 240, 30, PixelFormat::Yuyv), m(640, 480, 30, PixelFormat::Yuyv)];
        assert_eq!(pick_mode(&modes, want), Some(m(640, 480, 30, PixelFormat::Yuyv)));
        assert_eq!(pick_mode(&[], want), None);
    }

    #[test]
    fn no_camera_lists_empty_and_opening_says_so() {
        // This machine (and CI) has no camera; on one with a camera the list is simply not empty.
        if list_cameras().is_empty() {
            let err = Camera::open(None, CameraSettings::default()).err().expect("no camera to open");
            assert_eq!(err.to_string(), "no camera found");
            let err = Camera::open(Some("7"), CameraSettings::default()).err().expect("no camera 7");
            assert!(err.to_string().contains("is not connected"), "{err}");
        }
    }
}
