//! The synthetic microphone: a steady sine tone, and a Goertzel detector to find it in received audio.

use super::frame::{AUDIO_FRAME_SAMPLES, AUDIO_RATE};
use super::source::{pace, AudioSource};
use std::time::{Duration, Instant};

/// A sine tone at a fixed frequency and level, paced in real time (20 ms per chunk).
pub struct ToneSource {
    frequency: f64,
    amplitude: f64,
    phase: f64,
    deadline: Instant,
}

impl ToneSource {
    /// A tone of `frequency` Hz at `amplitude` (0..=1 of full scale).
    pub fn new(frequency: f64, amplitude: f64) -> Self {
        Self { frequency, amplitude: amplitude.clamp(0.0, 1.0), phase: 0.0, deadline: Instant::now() }
    }

    /// Fills `out` with the next samples of the tone without waiting (for tests and benchmarks).
    pub fn fill(&mut self, out: &mut [i16]) {
        let step = std::f64::consts::TAU * self.frequency / AUDIO_RATE as f64;
        for s in out.iter_mut() {
            *s = (self.phase.sin() * self.amplitude * i16::MAX as f64) as i16;
            self.phase = (self.phase + step) % std::f64::consts::TAU;
        }
    }
}

impl AudioSource for ToneSource {
    fn next_chunk(&mut self, out: &mut [i16]) -> bool {
        pace(&mut self.deadline, Duration::from_millis(20));
        let n = AUDIO_FRAME_SAMPLES.min(out.len());
        self.fill(&mut out[..n]);
        true
    }

    fn describe(&self) -> String {
        format!("synthetic {} Hz tone", self.frequency)
    }
}

/// Power of `frequency` in `samples` (Goertzel), normalised so a full-scale sine gives ~0.25.
pub fn tone_power(samples: &[i16], frequency: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let coeff = 2.0 * (std::f64::consts::TAU * frequency / AUDIO_RATE as f64).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x as f64 / i16::MAX as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    power / (samples.len() as f64 * samples.len() as f64)
}

/// The frequency among `candidates` with the most power in `samples`.
pub fn dominant_frequency(samples: &[i16], candidates: impl IntoIterator<Item = f64>) -> Option<f64> {
    candidates
        .into_iter()
        .map(|f| (f, tone_power(samples, f)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(f, _)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goertzel_finds_the_tone() {
        let mut tone = ToneSource::new(880.0, 0.5);
        let mut buf = vec![0i16; 4800];
        tone.fill(&mut buf);
        let candidates = (2..40).map(|k| k as f64 * 110.0);
        assert_eq!(dominant_frequency(&buf, candidates), Some(880.0));
        assert!(tone_power(&buf, 880.0) > 100.0 * tone_power(&buf, 1000.0));
    }
}
