//! Real devices: cameras (nokhwa), microphones and speakers (cpal), and the synthetic stand-ins
//! that take their place when a device is missing or vanishes.
//!
//! # Layout
//! - `convert`: camera pixel formats (YUYV, NV12, RGB, MJPEG...) to the I420 the encoder wants.
//! - `camera`: enumerate and open a camera; capture on its own thread; a [`VideoSource`].
//! - `microphone`: cpal input at the device's own rate and format, resampled to 48 kHz mono 20 ms
//!   chunks; an [`AudioSource`].
//! - `clock`: which sample a device moved when; pacing for devices that run faster than real time.
//! - `resample`: device rate ↔ 48 kHz (rubato).
//! - `jitter`: the playback buffer that smooths arrival and conceals gaps.
//! - `speaker`: cpal output fed from the engine's decoded audio through the jitter buffer; tells the
//!   echo reference (`media::processing`) what it hands the device.
//! - `paced`: the same playout without a device, at the real-time pace (headless figures).
//! - `fallback`: [`MediaDevices`], the user's device choice turned into the engine's source factories,
//!   falling back to the pattern and tone with a notice in words, and switching devices mid-call; a
//!   microphone's chunks go through the audio processing, the tone's do not.
//!
//! [`VideoSource`]: crate::media::source::VideoSource
//! [`AudioSource`]: crate::media::source::AudioSource

pub mod camera;
pub mod clock;
pub mod convert;
pub mod fallback;
pub mod jitter;
pub mod microphone;
pub mod paced;
pub mod resample;
pub mod speaker;

pub use camera::{list_cameras, Camera, CameraInfo, CameraSettings};
pub use fallback::{AudioCapture, DeviceChoice, DeviceKind, MediaDevices, ScreenShare, Selection};
pub use microphone::Microphone;
pub use paced::{PacedPlayout, PlayoutLevel};
pub use speaker::Speaker;

use cpal::traits::{DeviceTrait, HostTrait};

/// Why a device could not be used, in words that say what to do.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// There is no device of this kind at all.
    #[error("no {0} found")]
    NoDevice(&'static str),
    /// The chosen device is not (or no longer) there.
    #[error("the {kind} \"{name}\" is not connected: plug it in or pick another {kind}")]
    NotFound {
        /// "camera", "microphone" or "speaker".
        kind: &'static str,
        /// The id or name asked for.
        name: String,
    },
    /// The device is gone or the audio system has none by that name.
    #[error("the {0} is not available (unplugged?): connect one or pick another {0}")]
    Unavailable(&'static str),
    /// Another program holds the device.
    #[error("{0} busy: close the other app or pick another {0}")]
    Busy(&'static str),
    /// The system refused access.
    #[error("no permission to use the {0}: allow access in the system settings")]
    Permission(&'static str),
    /// The device offers nothing we can use.
    #[error("the {kind} offers no usable format ({detail})")]
    NoFormat {
        /// "camera", "microphone" or "speaker".
        kind: &'static str,
        /// What it offers, or the driver's words.
        detail: String,
    },
    /// Anything else the driver said.
    #[error("the {kind} failed: {detail}")]
    Failed {
        /// "camera", "microphone" or "speaker".
        kind: &'static str,
        /// The driver's words.
        detail: String,
    },
    /// A thread for the device could not be started.
    #[error("could not start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
}

impl DeviceError {
    /// Maps a cpal error to words for `kind` ("microphone" or "speaker").
    fn from_cpal(kind: &'static str, e: &cpal::Error) -> Self {
        match e.kind() {
            cpal::ErrorKind::DeviceBusy => DeviceError::Busy(kind),
            cpal::ErrorKind::PermissionDenied => DeviceError::Permission(kind),
            cpal::ErrorKind::DeviceNotAvailable | cpal::ErrorKind::HostUnavailable => {
                DeviceError::Unavailable(kind)
            }
            cpal::ErrorKind::UnsupportedConfig => DeviceError::NoFormat { kind, detail: e.to_string() },
            _ => DeviceError::Failed { kind, detail: e.to_string() },
        }
    }
}

/// An audio device as a picker shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioDeviceInfo {
    /// Stable id to store in settings and open by (cpal's `host:device`, e.g. `alsa:default`).
    pub id: String,
    /// A name for people.
    pub name: String,
}

/// The microphones cpal sees; empty (never an error) when there are none or no audio system.
pub fn list_microphones() -> Vec<AudioDeviceInfo> {
    list_audio(true)
}

/// The speakers cpal sees; empty (never an error) when there are none or no audio system.
pub fn list_speakers() -> Vec<AudioDeviceInfo> {
    list_audio(false)
}

fn list_audio(input: bool) -> Vec<AudioDeviceInfo> {
    let host = cpal::default_host();
    let devices = if input { host.input_devices() } else { host.output_devices() };
    let Ok(devices) = devices else { return Vec::new() };
    devices
        .filter_map(|d| {
            let id = d.id().ok()?.to_string();
            let name = d.description().map(|desc| desc.name().to_owned()).unwrap_or_else(|_| id.clone());
            Some(AudioDeviceInfo { id, name })
        })
        .collect()
}

/// Finds an audio device by id (`None`: the system default).
fn open_audio_device(input: bool, id: Option<&str>) -> Result<cpal::Device, DeviceError> {
    let kind = if input { "microphone" } else { "speaker" };
    let host = cpal::default_host();
    match id {
        None => {
            let device = if input { host.default_input_device() } else { host.default_output_device() };
            device.ok_or(DeviceError::NoDevice(kind))
        }
        Some(id) => {
            let not_found = || DeviceError::NotFound { kind, name: id.to_owned() };
            let parsed: cpal::DeviceId = id.parse().map_err(|_| not_found())?;
            host.device_by_id(&parsed).ok_or_else(not_found)
        }
    }
}

/// Runs a cpal stream on a thread of its own (cpal streams may not move between threads on every
/// platform): `build` opens it there, then `while_playing` runs, and the stream closes when it
/// returns. Returns once the stream plays, or with the error that kept it from playing.
fn spawn_stream_thread(
    kind: &'static str,
    build: impl FnOnce() -> Result<cpal::Stream, DeviceError> + Send + 'static,
    while_playing: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, DeviceError> {
    use cpal::traits::StreamTrait;
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(kind.into())
        .spawn(move || {
            let playing = build().and_then(|stream| {
                stream.play().map_err(|e| DeviceError::Failed { kind, detail: e.to_string() })?;
                Ok(stream)
            });
            match playing {
                Ok(stream) => {
                    let _ = opened_tx.send(Ok(()));
                    while_playing();
                    drop(stream);
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            }
        })
        .map_err(|e| DeviceError::Thread(kind, e))?;
    opened_rx
        .recv()
        .map_err(|_| DeviceError::Failed { kind, detail: "its thread ended while opening".into() })??;
    Ok(thread)
}
