//! The ring of an incoming call: `assets/ring.wav` looped on the default speaker through cpal.
//! Without a speaker (a server, a CI box) the window says so once and rings silently.

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use std::sync::Arc;

/// The ring: a 16-bit PCM WAV, built into the binary so an installed app needs no asset path.
const RING_WAV: &[u8] = include_bytes!("../../assets/ring.wav");
/// Silence between two rings, in seconds.
const PAUSE_S: f32 = 1.5;

/// Starts and stops the ring.
pub struct Ringer {
    /// The decoded ring, mono samples in [-1, 1], and their rate.
    sound: Option<(Arc<[f32]>, u32)>,
    /// The playing stream; dropping it stops the sound.
    stream: Option<cpal::Stream>,
    /// Why we can't ring aloud, said once.
    pub notice: Option<String>,
    failed: bool,
}

impl Ringer {
    /// Decodes the built-in ring; the speaker is opened only when a call rings.
    pub fn new() -> Self {
        match decode_wav(RING_WAV) {
            Some(sound) => Self { sound: Some(sound), stream: None, notice: None, failed: false },
            None => Self {
                sound: None,
                stream: None,
                notice: Some("the ring sound is damaged: calls ring silently".into()),
                failed: true,
            },
        }
    }

    /// Rings while `on`; cheap to call every frame.
    pub fn set(&mut self, on: bool) {
        if !on {
            self.stream = None;
            return;
        }
        if self.stream.is_some() || self.failed {
            return;
        }
        let Some((samples, rate)) = self.sound.clone() else { return };
        match open_stream(samples, rate) {
            Ok(stream) => self.stream = Some(stream),
            Err(why) => {
                // Don't retry every frame: one short sentence in the window, the detail in the log.
                tracing::info!(%why, "no ring sound");
                self.failed = true;
                self.notice = Some("no speaker available: incoming calls ring silently".into());
            }
        }
    }
}

fn open_stream(samples: Arc<[f32]>, rate: u32) -> Result<cpal::Stream, String> {
    let device = cpal::default_host().default_output_device().ok_or("no speaker found")?;
    let supported =
        device.default_output_config().map_err(|e| format!("the speaker has no usable format ({e})"))?;
    let config = supported.config();
    let channels = config.channels as usize;
    // Nearest-sample resampling: a ring needs no better, and it costs nothing.
    let step = rate as f64 / config.sample_rate as f64;
    let period = samples.len() as f64 + PAUSE_S as f64 * rate as f64;
    let mut pos = 0.0f64;
    let mut next = move || {
        let s = samples.get(pos as usize).copied().unwrap_or(0.0);
        pos = (pos + step) % period;
        s
    };
    let on_error = |e| tracing::warn!(%e, "the ring stopped");
    let stream = match supported.sample_format() {
        cpal::SampleFormat::F32 => device.build_output_stream(
            config,
            move |out: &mut [f32], _: &cpal::OutputCallbackInfo| {
                for frame in out.chunks_mut(channels) {
                    frame.fill(next());
                }
            },
            on_error,
            None,
        ),
        cpal::SampleFormat::I16 => device.build_output_stream(
            config,
            move |out: &mut [i16], _: &cpal::OutputCallbackInfo| {
                for frame in out.chunks_mut(channels) {
                    frame.fill((next() * i16::MAX as f32) as i16);
                }
            },
            on_error,
            None,
        ),
        other => return Err(format!("the speaker wants {other:?} samples, which the ring does not play")),
    }
    .map_err(|e| format!("could not open the speaker ({e})"))?;
    stream.play().map_err(|e| format!("could not start the speaker ({e})"))?;
    Ok(stream)
}

/// Reads a PCM 16-bit WAV into mono samples and their rate; `None` if it is not one.
fn decode_wav(bytes: &[u8]) -> Option<(Arc<[f32]>, u32)> {
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let (mut channels, mut rate, mut data) = (0usize, 0u32, None);
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
        let body = bytes.get(at + 8..at + 8 + len)?;
        match id {
            b"fmt " => {
                let format = u16::from_le_bytes(body.get(0..2)?.try_into().ok()?);
                let bits = u16::from_le_bytes(body.get(14..16)?.try_into().ok()?);
                if format != 1 || bits != 16 {
                    return None;
                }
                channels = u16::from_le_bytes(body.get(2..4)?.try_into().ok()?) as usize;
                rate = u32::from_le_bytes(body.get(4..8)?.try_into().ok()?);
            }
            b"data" => data = Some(body),
            _ => {}
        }
        at += 8 + len + len % 2;
    }
    let data = data?;
    if channels == 0 || rate == 0 {
        return None;
    }
    let samples = data
        .chunks_exact(2 * channels)
        .map(|frame| i16::from_le_bytes([frame[0], frame[1]]) as f32 / 32768.0)
        .collect();
    Some((samples, rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_ring_decodes() {
        let (samples, rate) = decode_wav(RING_WAV).expect("assets/ring.wav is 16-bit PCM");
        assert_eq!(rate, 48_000);
        let secs = samples.len() as f32 / rate as f32;
        assert!((0.5..3.0).contains(&secs), "ring lasts {secs} s");
        assert!(samples.iter().any(|s| s.abs() > 0.1), "the ring is audible");
    }

    #[test]
    fn not_a_wav_is_refused() {
        assert!(decode_wav(b"RIFF0000WAVEjunk").is_none());
        assert!(decode_wav(b"").is_none());
    }
}
