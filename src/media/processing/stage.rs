//! The processing chain on 10 ms frames at 48 kHz mono: high-pass, echo cancellation (with a
//! delay-agnostic estimator: the render-to-capture delay of real devices is unknown and drifts),
//! noise suppression, gain control, voice detection — WebRTC's audio processing module through
//! `webrtc-audio-processing` (Debian's libwebrtc-audio-processing 0.3). Chosen over `aec3` and
//! `nnnoiseless` on `aec-bench`'s figures (README, Figures). Pure: frames in, frames out, no devices.

use serde::{Deserialize, Serialize};
use webrtc_audio_processing as apm;

/// Samples in one 10 ms frame at 48 kHz: the unit every stage takes.
pub const FRAME: usize = 480;

/// Which parts of the stage run; all on unless the user turns them off (settings, `--no-aec`...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Switches {
    /// Echo cancellation: the far side's voice from our speaker taken out of our microphone.
    pub echo_cancellation: bool,
    /// Noise suppression: steady noise (fans, traffic) turned down.
    pub noise_suppression: bool,
    /// Automatic gain control: a quiet or loud voice levelled.
    pub gain_control: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Self { echo_cancellation: true, noise_suppression: true, gain_control: true }
    }
}

impl Switches {
    /// Everything off: the microphone goes out as captured.
    pub const OFF: Switches =
        Switches { echo_cancellation: false, noise_suppression: false, gain_control: false };

    /// Nothing to do: the stage is bypassed.
    pub fn all_off(&self) -> bool {
        *self == Self::OFF
    }
}

/// Why the stage failed, in words.
#[derive(Debug, thiserror::Error)]
#[error("audio processing failed: {0}")]
pub struct StageError(String);

/// The chain for one call. Feed the far end with [`render`](Self::render) as it is played and the
/// microphone with [`capture`](Self::capture); the order between them may jitter (the canceller's
/// delay estimator absorbs it).
pub struct Stage {
    processor: apm::Processor,
    switches: Switches,
    render: Vec<f32>,
}

impl Stage {
    /// A fresh chain doing what `switches` say.
    pub fn new(switches: Switches) -> Result<Self, StageError> {
        let init = apm::InitializationConfig {
            num_capture_channels: 1,
            num_render_channels: 1,
            ..Default::default()
        };
        let mut processor = apm::Processor::new(&init).map_err(|e| StageError(e.to_string()))?;
        processor.set_config(apm::Config {
            echo_cancellation: switches.echo_cancellation.then_some(apm::EchoCancellation {
                suppression_level: apm::EchoCancellationSuppressionLevel::High,
                // Echo tails of up to ~500 ms (the default filter covers 64 ms of room).
                enable_extended_filter: true,
                // Estimates the delay from the signals: device latencies are unknown and drift.
                enable_delay_agnostic: true,
                stream_delay_ms: None,
            }),
            noise_suppression: switches
                .noise_suppression
                .then_some(apm::NoiseSuppression { suppression_level: apm::NoiseSuppressionLevel::High }),
            gain_control: switches.gain_control.then_some(apm::GainControl {
                mode: apm::GainControlMode::AdaptiveDigital,
                // WebRTC's defaults: speech levelled to −3 dBFS peak-ish with up to 9 dB of gain.
                target_level_dbfs: 3,
                compression_gain_db: 9,
                enable_limiter: true,
            }),
            voice_detection: Some(apm::VoiceDetection {
                detection_likelihood: apm::VoiceDetectionLikelihood::Moderate,
            }),
            enable_high_pass_filter: !switches.all_off(),
            ..Default::default()
        });
        Ok(Self { processor, switches, render: vec![0.0; FRAME] })
    }

    /// What this chain does.
    pub fn switches(&self) -> Switches {
        self.switches
    }

    /// One 10 ms frame of what the speaker plays (±1.0 full scale).
    pub fn render(&mut self, frame: &[f32]) -> Result<(), StageError> {
        if !self.switches.echo_cancellation {
            return Ok(());
        }
        if frame.len() != FRAME {
            return Err(StageError(format!("a render frame of {} samples, not {FRAME}", frame.len())));
        }
        // The module may rewrite the render frame (it does not with our config): give it a copy.
        self.render.copy_from_slice(frame);
        self.processor.process_render_frame(&mut self.render).map_err(|e| StageError(e.to_string()))
    }

    /// One 10 ms microphone frame (±1.0), processed in place.
    pub fn capture(&mut self, frame: &mut [f32]) -> Result<(), StageError> {
        if frame.len() != FRAME {
            return Err(StageError(format!("a capture frame of {} samples, not {FRAME}", frame.len())));
        }
        self.processor.process_capture_frame(frame).map_err(|e| StageError(e.to_string()))
    }

    /// Whether the last captured frame held a voice (WebRTC's voice detector).
    pub fn voice(&self) -> bool {
        self.processor.get_stats().has_voice.unwrap_or(false)
    }
}
